/* test_passcache.c — the pass store's LMDB side (filters/passcache.c) on a real directory:
 * a pass is known with its payload, an unknown or damaged record is not, a flush forgets
 * what was noted before it (in this process and, by its marker, in the next one), a pass
 * outlives its writer. The Redis side runs against a real redis-server in
 * tests/integration/test_passcache_store.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "filters/passcache.h"
#include "store/lmdb_store.h"
#include "store/store.h"

struct answer {
	int calls;
	bool known;
	char val[64];
	uint64_t left_ms;
};

static void answer_cb(void *arg, bool known, const char *val, size_t vlen, uint64_t left_ms)
{
	struct answer *a = arg;

	a->calls++;
	a->known = known;
	snprintf(a->val, sizeof(a->val), "%.*s", (int)vlen, val ? val : "");
	a->left_ms = left_ms;
}

/* Looks key up (LMDB answers inline); the answer. */
static struct answer ask(struct passcache *pc, const char *key)
{
	struct answer a = { 0 };
	struct passcache_req *req = (struct passcache_req *)1;

	assert_int_equal(passcache_lookup(pc, key, answer_cb, &a, &req), 0);
	assert_null(req);
	assert_int_equal(a.calls, 1);
	return a;
}

static char dir[] = "/tmp/test_passcache-XXXXXX";
static char spec[64];

static void run_loop_out(uv_loop_t *loop)
{
	/* the writers' timers close: let their close callbacks run */
	while (uv_run(loop, UV_RUN_NOWAIT) != 0)
		;
}

static void test_spec_forms(void **state)
{
	(void)state;
	assert_true(passcache_spec_ok(NULL));
	assert_true(passcache_spec_ok("local"));
	assert_true(passcache_spec_ok("lmdb:/var/lib/mxgate"));
	assert_true(passcache_spec_ok("redis://127.0.0.1:6379/2"));
	assert_false(passcache_spec_ok("lmdb:"));
	assert_false(passcache_spec_ok("memcache:127.0.0.1"));
	assert_false(passcache_spec_shared("local"));
	assert_false(passcache_spec_shared(NULL));
	assert_true(passcache_spec_shared("lmdb:/x"));
	assert_null(passcache_new("local", "pregreet", 100, NULL, 0));
}

static void test_value_parse(void **state)
{
	static const struct {
		const char *label, *in;
		bool ok;
		uint64_t noted;
		const char *val;
	} rows[] = {
		{ "a pass with hits", "1764900000000:0,3", true, 1764900000000ull, "0,3" },
		{ "a pass without payload", "5:", true, 5, "" },
		{ "a flush marker", "1764900000000:", true, 1764900000000ull, "" },
		{ "no colon", "1764900000000", false, 0, NULL },
		{ "no digits", ":0,3", false, 0, NULL },
		{ "empty", "", false, 0, NULL },
		{ "a letter in the time", "17a:0", false, 0, NULL },
		{ "19 digits (the most)", "9999999999999999999:x", true, 9999999999999999999ull, "x" },
		{ "20 digits: refused, never wrapped", "18446744073709551616:x", false, 0, NULL },
	};
	char big[PASSCACHE_VALUE_MAX + 8];
	uint64_t noted;
	const char *val;
	size_t vlen;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool ok = passcache_value_parse(rows[i].in, strlen(rows[i].in), &noted, &val, &vlen);

		if (ok != rows[i].ok)
			fail_msg("%s: %s", rows[i].label, ok ? "accepted" : "refused");
		if (ok) {
			assert_true(noted == rows[i].noted);
			assert_int_equal(vlen, strlen(rows[i].val));
			assert_memory_equal(val, rows[i].val, vlen);
		}
	}
	/* the writer: what it writes reads back; a time of 20 digits or a payload over the
	 * limit is not written */
	{
		char out[24 + PASSCACHE_VALUE_MAX];
		size_t n = passcache_value_format(out, sizeof(out), 1764900000000ull, "0,3", 3);

		assert_int_equal(n, 17);
		assert_memory_equal(out, "1764900000000:0,3", 17);
		assert_int_equal(passcache_value_format(out, 16, 1764900000000ull, "0,3", 3), 0);
		assert_int_equal(passcache_value_format(out, sizeof(out), 18446744073709551615ull, "", 0), 0);
		assert_int_equal(passcache_value_format(out, sizeof(out), 9999999999999999999ull, "", 0), 20);
		assert_int_equal(passcache_value_format(out, sizeof(out), 0, big, PASSCACHE_VALUE_MAX + 1), 0);
	}
	/* "a payload over PASSCACHE_VALUE_MAX" */
	memset(big, 'x', sizeof(big));
	memcpy(big, "1:", 2);
	assert_true(passcache_value_parse(big, 2 + PASSCACHE_VALUE_MAX, &noted, &val, &vlen));
	assert_false(passcache_value_parse(big, 3 + PASSCACHE_VALUE_MAX, &noted, &val, &vlen));
}

/* What `mxgatectl passcache` shows of a spec: a Redis URL without its password. */
static void test_describe(void **state)
{
	struct passcache_desc d;
	struct lmdb_store *st;
	char none[80];

	(void)state;
	passcache_describe("redis://:secret@127.0.0.1:6380/2", "dnsbl", &d);
	assert_string_equal(d.kind, "redis");
	assert_string_equal(d.shown, "redis://127.0.0.1:6380/2");
	assert_null(strstr(d.shown, "secret"));
	assert_string_equal(d.prefix, "mxgate:pass:dnsbl:");
	assert_true(d.map_records == -1);
	passcache_describe("local", "pregreet", &d);
	assert_string_equal(d.kind, "local");
	assert_string_equal(d.prefix, "");
	/* a directory this process does not have open: no map figures, and nothing is made or
	 * opened (the main loop's verb: before, it made the directory and opened a map) */
	snprintf(none, sizeof(none), "%s-none", spec);
	passcache_describe(none, "pregreet", &d);
	assert_string_equal(d.kind, "lmdb");
	assert_string_equal(d.shown, none);
	assert_string_equal(d.prefix, "pass:pregreet:");
	assert_true(d.map_records == -1 && d.map_bytes == -1);
	assert_int_equal(access(store_lmdb_dir(none), F_OK), -1);
	/* open (a module's store): its map's figures */
	st = lmdb_store_open(store_lmdb_dir(spec), 0);
	assert_non_null(st);
	passcache_describe(spec, "pregreet", &d);
	assert_true(d.map_records >= 0 && d.map_bytes > 0);
	lmdb_store_close(st);
}

static void test_lmdb_rows(void **state)
{
	uv_loop_t loop;
	struct passcache *pc, *pc2;
	struct answer a;
	struct lmdb_store_change bad = { "pass:dnsbl:198.18.0.9#1", "short", 5 };

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	/* "a damaged record is not known": written before any writer holds the directory */
	assert_int_equal(lmdb_store_apply(dir, 0, "test", &bad, 1), 0);

	pc = passcache_new(spec, "dnsbl", 100, &loop, 0);
	assert_non_null(pc);
	a = ask(pc, "198.18.0.9#1");
	assert_false(a.known);

	/* "an unknown client is not known" */
	a = ask(pc, "198.18.0.1#1");
	assert_false(a.known);

	/* "a pass noted is known at once (this writer's queue), with its payload and time left" */
	passcache_note(pc, "198.18.0.1#1", "0,3", 3, 60000);
	a = ask(pc, "198.18.0.1#1");
	assert_true(a.known);
	assert_string_equal(a.val, "0,3");
	assert_true(a.left_ms > 50000 && a.left_ms <= 60000);

	/* "a TTL under a second is not kept" */
	passcache_note(pc, "198.18.0.2#1", "", 0, 999);
	a = ask(pc, "198.18.0.2#1");
	assert_false(a.known);

	/* "a pass expires with its TTL" */
	passcache_note(pc, "198.18.0.4#1", "", 0, 1000);
	a = ask(pc, "198.18.0.4#1");
	assert_true(a.known && a.left_ms <= 1000);
	usleep(1100 * 1000);
	a = ask(pc, "198.18.0.4#1");
	assert_false(a.known);

	/* "another module's prefix is another key" */
	pc2 = passcache_new(spec, "pregreet", 100, &loop, 0);
	assert_non_null(pc2);
	a = ask(pc2, "198.18.0.1#1");
	assert_false(a.known);
	passcache_note(pc2, "198.18.0.5", "", 0, 60000);

	/* "a pass outlives its writer: a new one on the directory knows it" */
	passcache_free(pc);
	assert_true(lmdb_store_wait_written(5000));   /* its last batch, on the writer thread */
	pc = passcache_new(spec, "dnsbl", 100, &loop, 0);
	a = ask(pc, "198.18.0.1#1");
	assert_true(a.known);
	assert_string_equal(a.val, "0,3");

	/* "a flush forgets what was noted before it; a pass noted after is known" */
	usleep(2000);
	assert_int_equal(passcache_flush_all(NULL, 0, 100, NULL, 0), 0);
	a = ask(pc, "198.18.0.1#1");
	assert_false(a.known);
	a = ask(pc2, "198.18.0.5");
	assert_false(a.known);
	usleep(2000);
	passcache_note(pc, "198.18.0.3#1", "", 0, 60000);
	a = ask(pc, "198.18.0.3#1");
	assert_true(a.known);
	assert_string_equal(a.val, "");

	passcache_free(pc);
	passcache_free(pc2);
	run_loop_out(&loop);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_forms),
		cmocka_unit_test(test_value_parse),
		cmocka_unit_test(test_lmdb_rows),
		cmocka_unit_test(test_describe),
	};
	int rc;

	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(spec, sizeof(spec), "lmdb:%s", dir);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			rc = rc ? rc : 1;
	}
	return rc;
}
