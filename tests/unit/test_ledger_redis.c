/* test_ledger_redis.c — the delivery ledger's Redis keys (ledger_redis.c): "mxledger:" and
 * the ledger key in 64 lowercase hex digits (a digest's key, a pair's mark), and which configs
 * keep the ledger in Redis (ledger_redis_url). The lookups and writes against a real Redis:
 * tests/integration/test_ledger_redis.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

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

struct answer { int calls, status; char reason[32]; };

static void answer_cb(void *arg, int status, const char *reason, const bool *held)
{
	struct answer *a = arg;

	(void)held;
	a->calls++;
	a->status = status;
	snprintf(a->reason, sizeof(a->reason), "%s", reason ? reason : "");
}

/* A store freed with a lookup out (a generation's, retired): the lookup is answered once,
 * -1 with reason "retired" — not "timeout", which the caller logs as Redis's failure
 * (event=ledger_store_error). The "server" takes connections and never answers. */
static void test_free_with_lookup_out(void **state)
{
	(void)state;
	static struct mx_config cfg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char url[64];
	uv_loop_t loop;
	uint8_t key[1][LEDGER_KEY_LEN];
	struct answer a = { 0 };
	const char *reason = NULL;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%u/0", (unsigned)ntohs(sa.sin_port));
	cfg.backends.retry_ledger.store = url;
	cfg.backends.retry_ledger.max_entries = 100;
	cfg.backends.retry_ledger.timeout = 60000;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct ledger_redis *lr = ledger_redis_new(&cfg, &loop, 0);
	assert_non_null(lr);
	memset(key, 7, sizeof(key));
	assert_int_equal(ledger_redis_lookup(lr, (const uint8_t (*)[LEDGER_KEY_LEN])key, 1, answer_cb, &a, &reason), 0);
	for (int i = 0; i < 20; i++)     /* connected, the MGET sent: no answer comes */
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(a.calls, 0);
	ledger_redis_free(lr);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, -1);
	assert_string_equal(a.reason, "retired");
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_free_with_lookup_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
