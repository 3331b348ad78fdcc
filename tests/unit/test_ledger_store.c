/* test_ledger_store.c — the delivery ledger's LMDB records (ledger_store.c): the record's
 * encoding (a version octet and the expiry big-endian) and what does not decode, the key's
 * prefix, and a round trip through an LMDB directory with a writer of its own (no loop: the
 * batch is applied in the flush): a key held until its expiry (the clock injected to the
 * reads), a key added again keeping its first expiry, an expired one taking the new one, a
 * record another process would see after the writer is gone (a restart). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ledger.h"
#include "ledger_store.h"
#include "store/lmdb_store.h"

static void test_record_encoding(void **state)
{
	(void)state;
	uint8_t r[LEDGER_RECORD_LEN];
	uint64_t e = 0;

	ledger_record_encode(r, 0x0102030405060708ull);
	const uint8_t want[LEDGER_RECORD_LEN] = { 1, 1, 2, 3, 4, 5, 6, 7, 8 };
	assert_memory_equal(r, want, sizeof(want));
	assert_int_equal(ledger_record_decode(r, sizeof(r), &e), 0);
	assert_true(e == 0x0102030405060708ull);
	ledger_record_encode(r, UINT64_MAX);
	assert_int_equal(ledger_record_decode(r, sizeof(r), &e), 0);
	assert_true(e == UINT64_MAX);
	/* what is no record of this version: absent to the reader */
	assert_int_equal(ledger_record_decode(r, sizeof(r) - 1, &e), -1);
	assert_int_equal(ledger_record_decode(r, 0, &e), -1);
	assert_int_equal(ledger_record_decode(NULL, 0, &e), -1);
	uint8_t longer[LEDGER_RECORD_LEN + 1] = { 1 };
	assert_int_equal(ledger_record_decode(longer, sizeof(longer), &e), -1);
	r[0] = 2;
	assert_int_equal(ledger_record_decode(r, sizeof(r), &e), -1);
}

static void test_store_key(void **state)
{
	(void)state;
	uint8_t key[LEDGER_KEY_LEN], out[LEDGER_STORE_KEY_LEN];

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	assert_int_equal(ledger_store_key(out, key), 7 + LEDGER_KEY_LEN);
	assert_memory_equal(out, "ledger:", 7);
	assert_memory_equal(out + 7, key, LEDGER_KEY_LEN);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void key_of(uint8_t key[LEDGER_KEY_LEN], const char *msg, const char *rcpt)
{
	uint8_t d[LEDGER_KEY_LEN];

	ledger_digest(d, msg, strlen(msg));
	ledger_key(key, d, "s@example.org", rcpt);
}

static void test_lmdb_round_trip(void **state)
{
	(void)state;
	char dir[64], spec[80], cmd[96];
	static struct mx_config cfg;
	uint8_t k1[LEDGER_KEY_LEN], k2[LEDGER_KEY_LEN], k3[LEDGER_KEY_LEN];
	struct lmdb_store *st;
	struct lmdb_writer *wr;
	uint64_t now = wall_ms();

	snprintf(dir, sizeof(dir), "/tmp/mxgate-ledger-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "lmdb:%s", dir);
	cfg.backends.retry_ledger.max_entries = 10;
	cfg.backends.retry_ledger.store = "memory";
	assert_null(ledger_store_dir(&cfg));
	assert_null(ledger_store_writer_new(&cfg, NULL));     /* memory: no writer */
	cfg.backends.retry_ledger.store = spec;
	assert_string_equal(ledger_store_dir(&cfg), dir);
	cfg.backends.retry_ledger.max_entries = 0;
	assert_null(ledger_store_dir(&cfg));                  /* the ledger off */
	cfg.backends.retry_ledger.max_entries = 10;
	assert_null(ledger_store_writer_new(&cfg, NULL));     /* not open here: none opened */

	assert_non_null(st = lmdb_store_open(dir, 1 << 20));
	assert_non_null(wr = ledger_store_writer_new(&cfg, NULL));
	key_of(k1, "m\r\n", "r1@example.test");
	key_of(k2, "m\r\n", "r2@example.test");
	key_of(k3, "m!\r\n", "r1@example.test");
	assert_int_equal(ledger_store_has(wr, k1, now), 0);
	assert_int_equal(ledger_store_add(wr, k1, now, 1000), 0);
	assert_int_equal(ledger_store_add(wr, k2, now - 10000, 1000), 0);   /* expired already */
	assert_int_equal(lmdb_writer_flush(wr, NULL, NULL), 0);
	assert_int_equal(ledger_store_has(wr, k1, now), 1);
	assert_int_equal(ledger_store_has(wr, k1, now + 999), 1);   /* the last millisecond */
	assert_int_equal(ledger_store_has(wr, k1, now + 1000), 0);  /* expired */
	assert_int_equal(ledger_store_has(wr, k2, now), 0);
	assert_int_equal(ledger_store_has(wr, k3, now), 0);         /* another message */

	/* added again while live: the first expiry holds; an expired one takes the new one */
	assert_int_equal(ledger_store_add(wr, k1, now + 500, 1000), 0);
	assert_int_equal(ledger_store_add(wr, k2, now, 1000), 0);
	assert_int_equal(lmdb_writer_flush(wr, NULL, NULL), 0);
	assert_int_equal(ledger_store_has(wr, k1, now + 1200), 0);
	assert_int_equal(ledger_store_has(wr, k2, now + 500), 1);
	lmdb_writer_free(wr);
	lmdb_store_close(st);

	/* the directory opened again (a restart): the records are there */
	assert_non_null(st = lmdb_store_open(dir, 1 << 20));
	assert_non_null(wr = ledger_store_writer_new(&cfg, NULL));
	assert_int_equal(ledger_store_has(wr, k1, now), 1);
	assert_int_equal(ledger_store_has(wr, k2, now + 500), 1);
	lmdb_writer_free(wr);
	lmdb_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_encoding),
		cmocka_unit_test(test_store_key),
		cmocka_unit_test(test_lmdb_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
