/* test_ledger_redis.c — the delivery ledger's Redis keys (ledger_redis.c): "mxledger:" and
 * the ledger key in 64 lowercase hex digits (a digest's key, a pair's mark), and which configs
 * keep the ledger in Redis (ledger_redis_url). The lookups and writes against a real Redis:
 * tests/integration/test_ledger_redis.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config.h"
#include "ledger.h"
#include "ledger_redis.h"

static void test_key(void **state)
{
	(void)state;
	uint8_t key[LEDGER_KEY_LEN];
	char out[LEDGER_REDIS_KEY_LEN + 1];

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 17);
	assert_int_equal(ledger_redis_key(out, key), 9 + 64);
	assert_string_equal(out, "mxledger:0011223344556677"
	    "8899aabbccddeeff102132435465768798a9bacbdcedfe0f");
	/* a pair's mark: "PAIR", 20 zero octets, the pair big-endian */
	ledger_pair_key(key, 0x0102030405060708ull);
	ledger_redis_key(out, key);
	assert_string_equal(out, "mxledger:50414952" "0000000000000000000000000000000000000000"
	    "0102030405060708");
}

static void test_url(void **state)
{
	(void)state;
	static struct mx_config cfg;
	const struct { const char *store; long max_entries; bool redis; } rows[] = {
		{ "redis://127.0.0.1:6379/2", 100, true },
		{ "redis://:secret@127.0.0.1", 100, true },
		{ "redis://127.0.0.1:6379/2", 0, false },      /* the ledger off */
		{ "memory", 100, false },
		{ "lmdb:/var/lib/mxgate/ledger", 100, false },
		{ NULL, 100, false },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		cfg.backends.retry_ledger.store = (char *)rows[i].store;
		cfg.backends.retry_ledger.max_entries = rows[i].max_entries;
		const char *u = ledger_redis_url(&cfg);
		if (rows[i].redis)
			assert_string_equal(u, rows[i].store);
		else
			assert_null(u);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_url),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
