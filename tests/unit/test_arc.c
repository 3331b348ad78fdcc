/* test_arc.c — ARC chain validation (RFC 8617 5.2) over a two-hop chain sealed by dkimpy
 * (tests/data/dkim/arc2.eml): pass with oldest-pass, and each way a chain breaks — a
 * changed body, a changed AAR, a missing set, cv=fail, cv out of order, a duplicate
 * instance, a chain over the bound; no ARC at all is none. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/arc.h"
#include "filters/dkim.h"
#include "dkim_fixture.h"

struct keys { struct dkim_key rsa, rsa2; };

static const struct dkim_key *key_cb(void *arg, const struct dkim_sig *sig)
{
	struct keys *k = arg;

	return strcmp(sig->s, "rsa2") == 0 ? &k->rsa2 : &k->rsa;
}

static void load_keys(struct keys *k, const struct dkim_limits *lim)
{
	size_t len;
	char *t = fixture_slurp("rsa.txt", &len);

	assert_int_equal(dkim_key_parse(t, len, lim, &k->rsa), DKIM_RESULT_PASS);
	free(t);
	t = fixture_slurp("rsa2.txt", &len);
	assert_int_equal(dkim_key_parse(t, len, lim, &k->rsa2), DKIM_RESULT_PASS);
	free(t);
}

/* Runs the chain over msg; returns the result, fills *c. */
static enum arc_result run_chain(const char *msg, size_t len, struct arc_chain *c, size_t max_inst)
{
	struct dkim_limits lim;
	struct keys k;
	struct dkim_msg *m;
	const char *sep = strstr(msg, "\r\n\r\n");
	size_t hl = (size_t)(sep - msg) + 4;

	dkim_limits_default(&lim);
	if (max_inst)
		lim.max_arc_instances = max_inst;
	load_keys(&k, &lim);
	m = dkim_msg_new(&lim);
	assert_int_equal(dkim_msg_set_headers(m, msg, hl), 0);
	dkim_msg_feed_body(m, msg + hl, len - hl);
	dkim_msg_end_body(m);
	arc_chain_plan(m, c);
	if (!c->decided) {
		assert_int_equal(arc_chain_nsigs(c), 2 * c->n);
		for (size_t i = 0; i < arc_chain_nsigs(c); i++)
			assert_non_null(arc_chain_sig(c, i));
	}
	arc_chain_finish(m, c, key_cb, &k, 1800000000LL);
	dkim_msg_free(m);
	dkim_key_clear(&k.rsa);
	dkim_key_clear(&k.rsa2);
	return c->result;
}

static void test_chain_pass(void **state)
{
	size_t len;
	char *msg = fixture_slurp("arc2.eml", &len);
	struct arc_chain c;

	(void)state;
	assert_int_equal(run_chain(msg, len, &c, 0), ARC_RESULT_PASS);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.oldest_pass, 0);
	assert_string_equal(c.sealer, "example.net");
	free(msg);
}

static void test_chain_breaks(void **state)
{
	static const struct { const char *label, *from, *to; const char *reason; } rows[] = {
		{ "body changed after sealing", "Hello Bob", "Hello Eve", "newest ARC-Message-Signature did not verify" },
		{ "AAR(1) changed", "i=1; lists.example.com; dkim=pass", "i=1; lists.example.com; dkim=fail", "ARC-Seal did not verify" },
		{ "newest seal cv=fail", "i=2; cv=pass", "i=2; cv=fail", "newest seal has cv=fail" },
		{ "cv out of order", "i=1; cv=none", "i=1; cv=pass", "ARC seal cv= out of order" },
		{ "a missing set", "ARC-Authentication-Results: i=2;", "X-Old-AAR: i=2;", "incomplete ARC sets" },
		{ "duplicate instance", "ARC-Authentication-Results: i=2;", "ARC-Authentication-Results: i=1;", "duplicate ARC instance" },
		{ "AAR without i=", "ARC-Authentication-Results: i=2;", "ARC-Authentication-Results: x=2;", "ARC-Authentication-Results without i=" },
	};
	size_t len, elen;
	char *msg = fixture_slurp("arc2.eml", &len);
	struct arc_chain c;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *e = fixture_edit(msg, rows[i].from, rows[i].to, &elen);

		if (run_chain(e, elen, &c, 0) != ARC_RESULT_FAIL)
			fail_msg("%s: %s", rows[i].label, arc_result_name(c.result));
		if (c.reason == NULL || strcmp(c.reason, rows[i].reason) != 0)
			fail_msg("%s: reason \"%s\"", rows[i].label, c.reason ? c.reason : "(null)");
		free(e);
	}
	/* more sets than the bound */
	assert_int_equal(run_chain(msg, len, &c, 1), ARC_RESULT_FAIL);
	assert_string_equal(c.reason, "ARC chain longer than the limit");
	free(msg);
}

static void test_oldest_pass(void **state)
{
	/* One byte of AMS(1)'s b= flipped: AMS(2) still verifies and AMS(1) does not
	 * (oldest-pass 2); AS(2) covers AMS(1), so the chain itself fails. */
	size_t len, elen;
	char *msg = fixture_slurp("arc2.eml", &len);
	const char *ams1 = strstr(msg, "ARC-Message-Signature: i=1;");
	char *bpos, *e;
	struct arc_chain c;

	(void)state;
	assert_non_null(ams1);
	bpos = strstr(ams1, " b=");
	assert_non_null(bpos);
	e = strdup(msg);
	elen = len;
	e[bpos - msg + 5] = e[bpos - msg + 5] == 'A' ? 'B' : 'A';
	assert_int_equal(run_chain(e, elen, &c, 0), ARC_RESULT_FAIL);
	assert_int_equal(c.oldest_pass, 2);
	assert_string_equal(c.reason, "ARC-Seal did not verify");
	free(e);
	free(msg);
}

static void test_no_arc(void **state)
{
	size_t len;
	char *msg = fixture_slurp("rsa-relaxed.eml", &len);
	struct arc_chain c;

	(void)state;
	assert_int_equal(run_chain(msg, len, &c, 0), ARC_RESULT_NONE);
	assert_true(c.decided);
	free(msg);
}

static void test_aar_instance(void **state)
{
	static const struct { const char *in; unsigned want; } rows[] = {
		{ "i=1; mx.example; spf=pass", 1 },
		{ " i = 12 ; mx", 12 },
		{ "\r\n i=50;", 50 },
		{ "i=51; x", 0 },
		{ "i=0; x", 0 },
		{ "i=1 x", 0 },
		{ "x=1;", 0 },
		{ "i=;", 0 },
		{ "i=1234;", 0 },
		{ "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (arc_aar_instance(rows[i].in, strlen(rows[i].in)) != rows[i].want)
			fail_msg("\"%s\"", rows[i].in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain_pass),
		cmocka_unit_test(test_chain_breaks),
		cmocka_unit_test(test_oldest_pass),
		cmocka_unit_test(test_no_arc),
		cmocka_unit_test(test_aar_instance),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
