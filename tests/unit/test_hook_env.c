/* test_hook_env.c — proxy/hook.c: the hook_env output helpers (symbols and the score sum,
 * header edits, envelope changes, body replacement), hook_env_reset_txn (session symbols
 * kept, transaction outputs and flags dropped), hook_env_free_outputs, verdict_set, stage
 * names and the module registry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/headers.h"
#include "proxy/hook.h"
#include "proxy/msgbuf.h"

static double symbol_sum(const struct hook_env *env)
{
	double s = 0;
	for (size_t i = 0; i < env->nsymbols; i++)
		s += env->symbols[i].score;
	return s;
}

/* ------------------------------------------------------------ symbols */

static void test_symbols(void **state)
{
	struct hook_env env;
	char name[200], desc[32];

	(void)state;
	memset(&env, 0, sizeof(env));
	snprintf(name, sizeof(name), "DNSBL_BL_TEST");
	snprintf(desc, sizeof(desc), "listed in bl.test");
	hook_env_add_symbol(&env, name, 3.5, desc);
	/* the helper copied: the caller's buffers may change */
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	memset(desc, 0, sizeof(desc));
	hook_env_add_symbol(&env, "SPF_FAIL", 1.25, NULL);
	hook_env_add_symbol(&env, "NEGATIVE", -2.0, "whitelisted");
	/* a name longer than the field is truncated, not overrun */
	hook_env_add_symbol(&env, name, 0, NULL);
	assert_int_equal(env.nsymbols, 4);
	assert_string_equal(env.symbols[0].name, "DNSBL_BL_TEST");
	assert_string_equal(env.symbols[0].desc, "listed in bl.test");
	assert_null(env.symbols[1].desc);
	assert_int_equal(strlen(env.symbols[3].name), sizeof(env.symbols[3].name) - 1);
	assert_true(env.score == 3.5 + 1.25 - 2.0);
	const struct hook_symbol *s = hook_env_find_symbol(&env, "SPF_FAIL");
	assert_non_null(s);
	assert_true(s->score == 1.25);
	assert_null(hook_env_find_symbol(&env, "spf_fail"));     /* names are case-sensitive */
	assert_null(hook_env_find_symbol(&env, "SPF"));
	assert_null(hook_env_find_symbol(&env, "MISSING"));
	/* the same symbol twice: both count, find returns the first */
	hook_env_add_symbol(&env, "SPF_FAIL", 2.0, NULL);
	assert_int_equal(env.nsymbols, 5);
	assert_true(hook_env_find_symbol(&env, "SPF_FAIL")->score == 1.25);
	assert_true(env.score == symbol_sum(&env));
	hook_env_free_outputs(&env);
	assert_int_equal(env.nsymbols, 0);
	assert_null(env.symbols);
	assert_true(env.score == 0);
	assert_null(hook_env_find_symbol(&env, "SPF_FAIL"));
}

/* Many symbols: the array grows (ASan checks every access). */
static void test_symbols_many(void **state)
{
	struct hook_env env;
	char name[32];

	(void)state;
	memset(&env, 0, sizeof(env));
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "SYM_%d", i);
		hook_env_add_symbol(&env, name, 1, i % 2 ? "odd" : NULL);
	}
	assert_int_equal(env.nsymbols, 1000);
	assert_true(env.score == 1000);
	assert_non_null(hook_env_find_symbol(&env, "SYM_999"));
	hook_env_free_outputs(&env);
}

/* ------------------------------------------------------------ reset_txn */

static void test_reset_txn_keeps_session_symbols(void **state)
{
	struct hook_env env;

	(void)state;
	memset(&env, 0, sizeof(env));
	/* connect/helo stage: session symbols */
	hook_env_add_symbol(&env, "RDNS_NONE", 1, "no PTR");
	hook_env_add_symbol(&env, "HELO_BARE_IP", 2, NULL);
	/* the session starts a transaction at MAIL */
	env.txn_symbols_start = env.nsymbols;
	hook_env_add_symbol(&env, "SPF_FAIL", 4, "spf");
	hook_env_add_symbol(&env, "BAYES_99", 8, NULL);
	assert_true(env.score == 15);
	hook_env_reset_txn(&env);
	assert_int_equal(env.nsymbols, 2);
	assert_true(env.score == 3);
	assert_non_null(hook_env_find_symbol(&env, "RDNS_NONE"));
	assert_string_equal(hook_env_find_symbol(&env, "RDNS_NONE")->desc, "no PTR");
	assert_null(hook_env_find_symbol(&env, "SPF_FAIL"));
	assert_null(hook_env_find_symbol(&env, "BAYES_99"));
	/* a second transaction */
	env.txn_symbols_start = env.nsymbols;
	hook_env_add_symbol(&env, "X", 16, "x");
	assert_true(env.score == 19);
	hook_env_reset_txn(&env);
	assert_int_equal(env.nsymbols, 2);
	assert_true(env.score == 3);
	/* reset with no transaction symbols: nothing changes */
	env.txn_symbols_start = env.nsymbols;
	hook_env_reset_txn(&env);
	assert_int_equal(env.nsymbols, 2);
	assert_true(env.score == 3);
	hook_env_free_outputs(&env);
	assert_int_equal(env.txn_symbols_start, 0);
}

/* hook_env_truncate_symbols: what a repeated EHLO does to the earlier HELO's symbols. */
static void test_truncate_symbols(void **state)
{
	struct hook_env env;

	(void)state;
	memset(&env, 0, sizeof(env));
	hook_env_add_symbol(&env, "RDNS_NONE", 1, "no PTR");
	hook_env_add_symbol(&env, "HELO_BARE_IP", 2, "helo");
	hook_env_add_symbol(&env, "SPF_FAIL", 4, NULL);
	env.txn_symbols_start = 3;
	hook_env_truncate_symbols(&env, 5);          /* beyond the end: nothing */
	assert_int_equal(env.nsymbols, 3);
	assert_true(env.score == 7);
	hook_env_truncate_symbols(&env, 1);
	assert_int_equal(env.nsymbols, 1);
	assert_int_equal(env.txn_symbols_start, 1);  /* never past the end */
	assert_true(env.score == 1);
	assert_null(hook_env_find_symbol(&env, "HELO_BARE_IP"));
	hook_env_free_outputs(&env);
}

/* After a reset the score should be exactly the sum of the remaining symbols: the rules
 * compare it with thresholds. Subtracting the dropped scores accumulates rounding error
 * (0.1 + 0.2 - 0.2 != 0.1), more with every message of a long session. */
static void test_reset_txn_score_exact(void **state)
{
	struct hook_env env;

	(void)state;
	memset(&env, 0, sizeof(env));
	hook_env_add_symbol(&env, "SESSION", 0.1, NULL);
	env.txn_symbols_start = env.nsymbols;
	hook_env_add_symbol(&env, "TXN", 0.2, NULL);
	hook_env_reset_txn(&env);
	double one = env.score;
	for (int i = 0; i < 1000; i++) {
		env.txn_symbols_start = env.nsymbols;
		hook_env_add_symbol(&env, "A", 0.7, NULL);
		hook_env_add_symbol(&env, "B", 1.3, NULL);
		hook_env_add_symbol(&env, "C", -0.35, NULL);
		hook_env_reset_txn(&env);
	}
	double many = env.score;
	hook_env_free_outputs(&env);
	if (one != 0.1 || many != 0.1)
		fail_msg("score after reset %.17g / after 1000 messages %.17g, want 0.1", one, many);
}

/* ------------------------------------------------------------ header edits */

struct hrow { const char *label; enum hdr_edit_op op; const char *name, *value; int index; };

static void test_header_edits_copy(void **state)
{
	struct hook_env env;
	char n[32], v[32];

	(void)state;
	memset(&env, 0, sizeof(env));
	snprintf(n, sizeof(n), "X-Add");
	snprintf(v, sizeof(v), "added");
	hook_env_add_header(&env, n, v);
	snprintf(n, sizeof(n), "X-Ins");
	snprintf(v, sizeof(v), "inserted");
	hook_env_insert_header(&env, 2, n, v);
	snprintf(n, sizeof(n), "Subject");
	snprintf(v, sizeof(v), "changed");
	hook_env_change_header(&env, n, 3, v);
	hook_env_change_header(&env, n, 1, NULL);
	snprintf(n, sizeof(n), "X-Del");
	hook_env_delete_headers(&env, n);
	/* scribble over the callers' buffers: the edits kept copies */
	memset(n, '#', sizeof(n) - 1);
	memset(v, '#', sizeof(v) - 1);
	static const struct hrow want[] = {
		{ "add", HDR_ADD, "X-Add", "added", 0 },
		{ "insert", HDR_INSERT, "X-Ins", "inserted", 2 },
		{ "change", HDR_CHANGE, "Subject", "changed", 3 },
		{ "change to NULL (delete)", HDR_CHANGE, "Subject", NULL, 1 },
		{ "delete all", HDR_DELETE_ALL, "X-Del", NULL, 0 },
	};
	assert_int_equal(env.nhdr_edits, 5);
	for (size_t i = 0; i < 5; i++) {
		const struct hdr_edit *e = &env.hdr_edits[i];
		if (e->op != want[i].op || strcmp(e->name, want[i].name) != 0 ||
		    (want[i].value == NULL) != (e->value == NULL) ||
		    (e->value && strcmp(e->value, want[i].value) != 0) ||
		    (want[i].op == HDR_INSERT || want[i].op == HDR_CHANGE ? e->index != want[i].index : false))
			fail_msg("edit %zu (%s): op %d name %s value %s index %d", i, want[i].label, e->op, e->name,
			    e->value ? e->value : "NULL", e->index);
	}
	/* the edits, applied to a header block */
	struct strbuf out = { 0 };
	const char *in = "A: 1\r\nB: 2\r\nSubject: s\r\nX-Del: d\r\n\r\n";
	headers_apply_edits(in, strlen(in), env.hdr_edits, env.nhdr_edits, &out);
	assert_string_equal(out.v, "A: 1\r\nB: 2\r\nX-Ins: inserted\r\nX-Add: added\r\nSubject: changed\r\n\r\n");
	strbuf_free(&out);
	/* reset drops them (ASan: the copies are freed) */
	hook_env_reset_txn(&env);
	assert_int_equal(env.nhdr_edits, 0);
	assert_null(env.hdr_edits);
	hook_env_free_outputs(&env);
}

/* ------------------------------------------------------------ envelope and body */

static void test_envelope_changes(void **state)
{
	struct hook_env env;
	char a[64];

	(void)state;
	memset(&env, 0, sizeof(env));
	snprintf(a, sizeof(a), "first@example.org");
	hook_env_set_sender(&env, a);
	snprintf(a, sizeof(a), "second@example.org");
	hook_env_set_sender(&env, a);          /* replaces (ASan: the first is freed) */
	a[0] = '#';
	assert_string_equal(env.new_mail_from, "second@example.org");
	hook_env_set_sender(&env, "");         /* the null sender */
	assert_string_equal(env.new_mail_from, "");

	snprintf(a, sizeof(a), "added@example.org");
	hook_env_add_rcpt(&env, a, NULL);
	hook_env_add_rcpt(&env, "notify@example.org", "NOTIFY=NEVER");
	a[0] = '#';
	assert_int_equal(env.nadd_rcpts, 2);
	assert_string_equal(env.add_rcpts[0].addr, "added@example.org");
	assert_string_equal(env.add_rcpts[0].params, "");
	assert_int_equal(env.add_rcpts[0].status, 0);
	assert_string_equal(env.add_rcpts[1].params, "NOTIFY=NEVER");

	snprintf(a, sizeof(a), "gone@example.org");
	hook_env_del_rcpt(&env, a);
	hook_env_del_rcpt(&env, "also-gone@example.org");
	a[0] = '#';
	assert_int_equal(env.ndel_rcpts, 2);
	assert_string_equal(env.del_rcpts[0], "gone@example.org");

	struct msgbuf *b1 = msgbuf_new(1 << 16, NULL), *b2 = msgbuf_new(1 << 16, NULL);
	assert_non_null(b1);
	assert_non_null(b2);
	msgbuf_append(b1, "one\r\n", 5);
	msgbuf_append(b2, "two\r\n", 5);
	hook_env_replace_body(&env, b1);
	hook_env_replace_body(&env, b2);       /* b1 freed by the env */
	assert_ptr_equal(env.new_body, b2);
	hook_env_replace_body(&env, NULL);     /* b2 freed, no body change any more */
	assert_null(env.new_body);
	hook_env_replace_body(&env, msgbuf_new(1 << 16, NULL));
	snprintf(env.quarantine_reason, sizeof(env.quarantine_reason), "virus");
	env.flags = HOOK_FLAG_VIRUS | HOOK_FLAG_QUARANTINED;
	env.overloaded = true;

	hook_env_reset_txn(&env);
	assert_null(env.new_mail_from);
	assert_null(env.add_rcpts);
	assert_int_equal(env.nadd_rcpts, 0);
	assert_null(env.del_rcpts);
	assert_int_equal(env.ndel_rcpts, 0);
	assert_null(env.new_body);
	assert_string_equal(env.quarantine_reason, "");
	assert_int_equal(env.flags, 0);        /* the transaction's flags go with it */
	assert_true(env.overloaded);           /* the session's state stays */
	/* reset and free on an empty env, twice */
	hook_env_reset_txn(&env);
	hook_env_free_outputs(&env);
	hook_env_free_outputs(&env);
}

/* free_outputs releases the session's symbols and the transaction's outputs together. */
static void test_free_outputs_everything(void **state)
{
	struct hook_env env;

	(void)state;
	memset(&env, 0, sizeof(env));
	hook_env_add_symbol(&env, "S", 1, "session");
	env.txn_symbols_start = 1;
	hook_env_add_symbol(&env, "T", 2, "txn");
	hook_env_add_header(&env, "X", "v");
	hook_env_set_sender(&env, "a@b");
	hook_env_add_rcpt(&env, "c@d", "");
	hook_env_del_rcpt(&env, "e@f");
	hook_env_replace_body(&env, msgbuf_new(1024, NULL));
	hook_env_free_outputs(&env);   /* ASan: nothing leaks */
	assert_int_equal(env.nsymbols, 0);
	assert_int_equal(env.nhdr_edits, 0);
	assert_null(env.new_body);
	assert_true(env.score == 0);
}

/* ------------------------------------------------------------ verdict_set */

static void test_verdict_set(void **state)
{
	struct verdict v;
	char longtext[1000];

	(void)state;
	memset(&v, 0xa5, sizeof(v));
	verdict_set(&v, VERDICT_REJECT, 550, "dnsbl", "5.7.1 listed in %s", "bl.test");
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.reason, "dnsbl");
	assert_string_equal(v.reply, "5.7.1 listed in bl.test");
	assert_int_equal(v.delay_ms, 0);       /* everything else cleared */

	memset(&v, 0xa5, sizeof(v));
	verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	assert_int_equal(v.action, VERDICT_CONTINUE);
	assert_string_equal(v.reason, "");
	assert_string_equal(v.reply, "");
	assert_int_equal(v.delay_ms, 0);

	/* over-long reason and reply are truncated, NUL-terminated */
	memset(longtext, 'r', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	verdict_set(&v, VERDICT_TEMPFAIL, 451, longtext, "%s", longtext);
	assert_int_equal(strlen(v.reason), sizeof(v.reason) - 1);
	assert_int_equal(strlen(v.reply), sizeof(v.reply) - 1);
}

/* ------------------------------------------------------------ stage names */

static void test_stage_names(void **state)
{
	static const char *const want[HOOK_NSTAGES] = { "connect", "helo", "mail", "rcpt", "data",
		"eom", "close" };

	(void)state;
	for (int i = 0; i < HOOK_NSTAGES; i++)
		assert_string_equal(hook_stage_name((enum hook_stage)i), want[i]);
	assert_string_equal(hook_stage_name(HOOK_NSTAGES), "?");
	assert_string_equal(hook_stage_name((enum hook_stage)-1), "?");
}

/* ------------------------------------------------------------ the registry */

static void test_registry(void **state)
{
	size_t scorers = 0;

	(void)state;
	assert_true(hook_nmodules > 0);
	assert_null(hook_modules[hook_nmodules]);
	for (size_t i = 0; i < hook_nmodules; i++) {
		const struct hook_module *m = hook_modules[i];
		assert_non_null(m);
		assert_non_null(m->name);
		assert_non_null(m->run);
		assert_non_null(m->worker_init);
		assert_non_null(m->stages);
		/* plugin entries come from hook_plugin_entries, not the registry */
		assert_false(m->flags & HOOK_MODULE_CONTENT);
		if (m->flags & HOOK_MODULE_SCORER)
			scorers++;
		for (size_t j = 0; j < i; j++)
			if (strcmp(hook_modules[j]->name, m->name) == 0)
				fail_msg("module name \"%s\" twice", m->name);
	}
	/* the rules engine sums every symbol: the scorer, put last by the chain */
	assert_int_equal(scorers, 1);
	for (size_t i = 0; i < hook_nmodules; i++)
		if (strcmp(hook_modules[i]->name, "rules") == 0)
			assert_true(hook_modules[i]->flags & HOOK_MODULE_SCORER);
	/* the plugin adapter: one shared content module, one entry per `plugins:` entry */
	assert_non_null(hook_plugin_entries.module);
	assert_true(hook_plugin_entries.module->flags & HOOK_MODULE_CONTENT);
	assert_non_null(hook_plugin_entries.module->run);
	assert_non_null(hook_plugin_entries.module->cancel);
	assert_non_null(hook_plugin_entries.count);
	assert_non_null(hook_plugin_entries.instance_init);
	assert_int_equal(hook_plugin_entries.count(NULL), 0);
}

/* The one bound on every filter's recipient changes: limits.max_recipients added (the next
 * refused, add_rcpts_over set, nothing kept), twice that deleted; the transaction's reset
 * clears both; no config, no bound. */
static void test_rcpt_bound(void **state)
{
	static struct mx_config cfg;
	struct hook_env env;

	(void)state;
	memset(&env, 0, sizeof(env));
	cfg.limits.max_recipients = 3;
	env.cfg = &cfg;
	for (int i = 0; i < 3; i++)
		assert_int_equal(hook_env_add_rcpt(&env, "a@example.org", NULL), 0);
	assert_false(env.add_rcpts_over);
	assert_int_equal(hook_env_add_rcpt(&env, "d@example.org", NULL), -1);
	assert_true(env.add_rcpts_over);
	assert_int_equal(env.nadd_rcpts, 3);
	for (int i = 0; i < 6; i++)
		assert_int_equal(hook_env_del_rcpt(&env, "x@example.org"), 0);
	assert_false(env.del_rcpts_over);
	assert_int_equal(hook_env_del_rcpt(&env, "x@example.org"), -1);
	assert_true(env.del_rcpts_over);
	assert_int_equal(env.ndel_rcpts, 6);
	hook_env_reset_txn(&env);
	assert_false(env.add_rcpts_over);
	assert_false(env.del_rcpts_over);
	assert_int_equal(hook_env_add_rcpt(&env, "a@example.org", NULL), 0);
	env.cfg = NULL;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(hook_env_add_rcpt(&env, "b@example.org", NULL), 0);
	hook_env_free_outputs(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_symbols_many),
		cmocka_unit_test(test_reset_txn_keeps_session_symbols),
		cmocka_unit_test(test_reset_txn_score_exact),
		cmocka_unit_test(test_truncate_symbols),
		cmocka_unit_test(test_header_edits_copy),
		cmocka_unit_test(test_envelope_changes),
		cmocka_unit_test(test_rcpt_bound),
		cmocka_unit_test(test_free_outputs_everything),
		cmocka_unit_test(test_verdict_set),
		cmocka_unit_test(test_stage_names),
		cmocka_unit_test(test_registry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
