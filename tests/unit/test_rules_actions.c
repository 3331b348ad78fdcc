/* test_rules_actions.c — score to action mapping, per-rule immediate actions, and the
 * X-Spam-* header values in SpamAssassin's form. Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/actions.h"

struct act_case {
	const char *label;
	double add_header, tempfail, reject, score;
	enum rule_action immediate;
	enum verdict_action want;
	int code;
	const char *word;
	double quarantine;   /* 0 unless given: off */
	double greylist;     /* 0 unless given: off */
};

static const struct act_case cases[] = {
	{ "below everything", 5, 10, 15, 4.9, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "none" },
	{ "add_header at threshold", 5, 10, 15, 5.0, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "add_header" },
	{ "tempfail at threshold", 5, 10, 15, 10.0, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451, "tempfail" },
	{ "reject at threshold", 5, 10, 15, 15.0, RULE_ACT_NONE, VERDICT_REJECT, 550, "reject" },
	{ "reject wins over tempfail", 5, 10, 15, 1000, RULE_ACT_NONE, VERDICT_REJECT, 550, "reject" },
	{ "tempfail off", 5, 0, 15, 12, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "add_header" },
	{ "all off", 0, 0, 0, 99, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "none" },
	{ "negative score", 5, 10, 15, -3, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "none" },
	{ "immediate reject at score 0", 5, 10, 15, 0, RULE_ACT_REJECT, VERDICT_REJECT, 550, "reject" },
	{ "immediate tempfail", 5, 10, 15, 0, RULE_ACT_TEMPFAIL, VERDICT_TEMPFAIL, 451, "tempfail" },
	{ "immediate quarantine", 5, 10, 15, 0, RULE_ACT_QUARANTINE, VERDICT_QUARANTINE, 0, "quarantine" },
	{ "immediate discard", 5, 10, 15, 0, RULE_ACT_DISCARD, VERDICT_DISCARD, 0, "discard" },
	{ "accept beats the score", 5, 10, 15, 50, RULE_ACT_ACCEPT, VERDICT_CONTINUE, 0, "accept" },
	/* the quarantine threshold (amavis's kill_level with $spam_quarantine_to) */
	{ "quarantine at threshold", 5, 0, 15, 8, RULE_ACT_NONE, VERDICT_QUARANTINE, 0, "quarantine", 8 },
	{ "below quarantine", 5, 0, 15, 7.9, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "add_header", 8 },
	{ "reject wins over quarantine", 5, 0, 15, 15, RULE_ACT_NONE, VERDICT_REJECT, 550, "reject", 8 },
	{ "quarantine above a lower tempfail", 5, 6, 15, 9, RULE_ACT_NONE, VERDICT_QUARANTINE, 0,
	  "quarantine", 8 },
	{ "tempfail below quarantine", 5, 6, 15, 7, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451, "tempfail", 8 },
	{ "a higher tempfail wins above it", 5, 10, 15, 11, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451,
	  "tempfail", 8 },
	{ "quarantine below a higher tempfail", 5, 10, 15, 9, RULE_ACT_NONE, VERDICT_QUARANTINE, 0,
	  "quarantine", 8 },
	{ "quarantine at tempfail's level", 5, 8, 15, 8, RULE_ACT_NONE, VERDICT_QUARANTINE, 0,
	  "quarantine", 8 },
	{ "immediate tempfail beats the quarantine threshold", 5, 0, 15, 9, RULE_ACT_TEMPFAIL,
	  VERDICT_TEMPFAIL, 451, "tempfail", 8 },
	{ "accept beats the quarantine threshold", 5, 0, 15, 9, RULE_ACT_ACCEPT, VERDICT_CONTINUE, 0,
	  "accept", 8 },
	/* rules.actions.greylist (rspamd's greylist action): above add_header, below the rest */
	{ "greylist at threshold", 5, 10, 15, 4, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451, "greylist", 0, 4 },
	{ "below greylist", 5, 10, 15, 3.9, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "none", 0, 4 },
	{ "greylist wins over add_header", 5, 10, 15, 6, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451,
	  "greylist", 0, 4 },
	{ "greylist above add_header's threshold", 5, 10, 15, 5.5, RULE_ACT_NONE, VERDICT_CONTINUE, 0,
	  "add_header", 0, 6 },
	{ "tempfail wins over greylist", 5, 10, 15, 10, RULE_ACT_NONE, VERDICT_TEMPFAIL, 451,
	  "tempfail", 0, 4 },
	{ "quarantine wins over greylist", 5, 0, 15, 8, RULE_ACT_NONE, VERDICT_QUARANTINE, 0,
	  "quarantine", 8, 4 },
	{ "reject wins over greylist", 5, 0, 15, 15, RULE_ACT_NONE, VERDICT_REJECT, 550, "reject", 0, 4 },
	{ "greylist off", 5, 10, 15, 6, RULE_ACT_NONE, VERDICT_CONTINUE, 0, "add_header", 0, 0 },
	{ "accept beats greylist", 5, 10, 15, 6, RULE_ACT_ACCEPT, VERDICT_CONTINUE, 0, "accept", 0, 4 },
	{ "immediate tempfail is no greylist", 5, 10, 15, 6, RULE_ACT_TEMPFAIL, VERDICT_TEMPFAIL, 451,
	  "tempfail", 0, 4 },
};

static void test_decide_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct act_case *c = &cases[i];
		struct actions_thresholds t = { c->add_header, c->tempfail, c->reject, 5, c->quarantine,
			c->greylist };
		struct verdict v;
		const char *w = actions_decide(&t, c->score, c->immediate, "RULE", &v);

		if (v.action != c->want || strcmp(w, c->word) != 0 || v.code != c->code)
			fail_msg("%s: action %d code %d word %s", c->label, v.action, v.code, w);
	}
}

/* rules.recipient_actions: one message, several recipients' thresholds. The message takes
 * the mildest of their decisions (refused only when every policy refuses it), tags when
 * any would, and shows the lowest required=. */
struct rcpt_case {
	const char *label;
	double score;
	enum rule_action immediate;
	size_t n;
	struct actions_thresholds t[3];     /* add_header, tempfail, reject, required, quarantine */
	enum verdict_action want;
	int code;
	const char *word;
	double required;
};

static const struct rcpt_case rcpt_cases[] = {
	{ "one recipient: as actions_decide", 12, RULE_ACT_NONE, 1,
	  { { 5, 0, 10, 5, 0 } }, VERDICT_REJECT, 550, "reject", 5 },
	{ "reject 5 and reject 20 at 12: delivered, tagged", 12, RULE_ACT_NONE, 2,
	  { { 3, 0, 5, 3, 0 }, { 6, 0, 20, 6, 0 } }, VERDICT_CONTINUE, 0, "add_header", 3 },
	{ "reject 5 and reject 20 at 20: both refuse", 20, RULE_ACT_NONE, 2,
	  { { 3, 0, 5, 3, 0 }, { 6, 0, 20, 6, 0 } }, VERDICT_REJECT, 550, "reject", 3 },
	{ "the order of the recipients does not matter", 12, RULE_ACT_NONE, 2,
	  { { 6, 0, 20, 6, 0 }, { 3, 0, 5, 3, 0 } }, VERDICT_CONTINUE, 0, "add_header", 3 },
	{ "reject off for one: never refused by score", 1000, RULE_ACT_NONE, 2,
	  { { 5, 0, 10, 5, 0 }, { 5, 0, 0, 5, 0 } }, VERDICT_CONTINUE, 0, "add_header", 5 },
	{ "one rejects, one quarantines: quarantined", 15, RULE_ACT_NONE, 2,
	  { { 5, 0, 10, 5, 0 }, { 5, 0, 20, 5, 12 } }, VERDICT_QUARANTINE, 0, "quarantine", 5 },
	{ "one rejects, one tempfails: 451", 15, RULE_ACT_NONE, 2,
	  { { 5, 0, 10, 5, 0 }, { 5, 12, 0, 5, 0 } }, VERDICT_TEMPFAIL, 451, "tempfail", 5 },
	{ "one tempfails, one quarantines: quarantined (kept)", 15, RULE_ACT_NONE, 2,
	  { { 5, 12, 0, 5, 0 }, { 5, 0, 0, 5, 12 } }, VERDICT_QUARANTINE, 0, "quarantine", 5 },
	{ "one quarantines, one delivers: delivered", 15, RULE_ACT_NONE, 3,
	  { { 5, 0, 10, 5, 0 }, { 5, 0, 0, 5, 12 }, { 20, 0, 0, 20, 0 } },
	  VERDICT_CONTINUE, 0, "none", 5 },
	{ "tagging: the lowest add_header", 4, RULE_ACT_NONE, 2,
	  { { 8, 0, 10, 8, 0 }, { 3, 0, 20, 3, 0 } }, VERDICT_CONTINUE, 0, "add_header", 3 },
	{ "below every add_header: none, the lowest required", 2, RULE_ACT_NONE, 2,
	  { { 8, 0, 10, 8, 0 }, { 3, 0, 20, 3, 0 } }, VERDICT_CONTINUE, 0, "none", 3 },
	{ "a rule's action reject refuses for all", 0, RULE_ACT_REJECT, 2,
	  { { 5, 0, 10, 5, 0 }, { 5, 0, 0, 5, 0 } }, VERDICT_REJECT, 550, "reject", 5 },
	{ "a rule's action accept delivers for all", 50, RULE_ACT_ACCEPT, 2,
	  { { 5, 0, 10, 5, 0 }, { 5, 0, 10, 5, 0 } }, VERDICT_CONTINUE, 0, "accept", 5 },
	/* greylist: milder than quarantine, tempfail and reject; stronger than a delivery */
	{ "one greylists, one delivers: delivered", 6, RULE_ACT_NONE, 2,
	  { { 5, 0, 10, 5, 0, 4 }, { 5, 0, 10, 5, 0 } }, VERDICT_CONTINUE, 0, "add_header", 5 },
	{ "one greylists, one quarantines: greylisted", 9, RULE_ACT_NONE, 2,
	  { { 5, 0, 0, 5, 0, 4 }, { 5, 0, 0, 5, 8 } }, VERDICT_TEMPFAIL, 451, "greylist", 5 },
	{ "one greylists, one tempfails: greylisted", 9, RULE_ACT_NONE, 2,
	  { { 5, 0, 0, 5, 0, 4 }, { 5, 8, 0, 5, 0 } }, VERDICT_TEMPFAIL, 451, "greylist", 5 },
	{ "one greylists, one rejects: greylisted", 9, RULE_ACT_NONE, 2,
	  { { 5, 0, 0, 5, 0, 4 }, { 5, 0, 8, 5, 0 } }, VERDICT_TEMPFAIL, 451, "greylist", 5 },
};

static void test_decide_recipients(void **state)
{
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		struct verdict v;
		double req = -1;
		const char *w = actions_decide_recipients(c->t, c->n, c->score, c->immediate, "RULE", &v, &req);

		if (v.action != c->want || strcmp(w, c->word) != 0 || v.code != c->code || req != c->required)
			fail_msg("%s: action %d code %d word %s required %.1f", c->label, v.action, v.code, w, req);
	}
}

static void test_reject_reply(void **state)
{
	struct actions_thresholds t = { 5, 10, 15, 5 };
	struct verdict v;

	actions_decide(&t, 20, RULE_ACT_NONE, NULL, &v);
	assert_string_equal(v.reply, "5.7.1 spam message rejected");
	actions_decide(&t, 11, RULE_ACT_NONE, NULL, &v);
	assert_int_equal(strncmp(v.reply, "4.7.1 ", 6), 0);
	actions_decide(&t, 0, RULE_ACT_REJECT, "CLAM_VIRUS", &v);
	assert_non_null(strstr(v.reply, "CLAM_VIRUS"));
	t.greylist = 4;
	assert_string_equal(actions_decide(&t, 6, RULE_ACT_NONE, NULL, &v), "greylist");
	assert_string_equal(v.reply, "4.7.1 greylisted, try again later");
	assert_string_equal(v.reason, "greylist");
	assert_true(v.not_an_error);
}

static void test_status_form(void **state)
{
	const char *tests[] = { "RULE_A", "RULE_B" };
	char buf[512];

	actions_format_status(buf, sizeof(buf), 7.5, 5.0, tests, 2, NULL);
	assert_string_equal(buf, "Yes, score=7.5 required=5.0 tests=RULE_A,RULE_B");
	actions_format_status(buf, sizeof(buf), 4.96, 5.0, tests, 1, NULL);
	assert_string_equal(buf, "No, score=4.9 required=5.0 tests=RULE_A");   /* as SA shows it */
	actions_format_status(buf, sizeof(buf), 4.9996, 5.0, tests, 1, NULL);
	assert_string_equal(buf, "Yes, score=5.0 required=5.0 tests=RULE_A");  /* 3 decimals decide */
	/* SpamAssassin's sprintf("%2.1f") of -0.04 (NO_RECEIVED + NO_RELAYS: -0.002 alike) */
	actions_format_status(buf, sizeof(buf), -0.04, 5.0, NULL, 0, NULL);
	assert_string_equal(buf, "No, score=-0.0 required=5.0 tests=none");
	actions_format_status(buf, sizeof(buf), -0.0004, 5.0, NULL, 0, NULL);
	assert_string_equal(buf, "No, score=0.0 required=5.0 tests=none");
	/* Perl's sprintf("%2.1f", -2.25): C's rounding of the double, half to even here */
	actions_format_status(buf, sizeof(buf), -2.25, 5.0, tests, 0, NULL);
	assert_string_equal(buf, "No, score=-2.2 required=5.0 tests=none");
}

static void test_status_folding(void **state)
{
	const char *tests[] = { "DKIM_SIGNED", "DKIM_VALID", "DKIM_VALID_AU", "HTML_MESSAGE",
		"MIME_HTML_ONLY", "RCVD_IN_DNSWL_NONE", "SPF_HELO_NONE", "SPF_PASS", "URIBL_BLOCKED" };
	char buf[1024], *line, *save = NULL;

	actions_format_status(buf, sizeof(buf), 1.2, 5.0, tests, 9, NULL);
	/* folded after a comma with a tab continuation; no line longer than 79 columns (SA's
	 * Util::wrap, a tab counted as 8) */
	assert_non_null(strstr(buf, ",\n\t"));
	line = strtok_r(buf, "\n", &save);
	assert_true(strlen(line) + strlen("X-Spam-Status: ") <= 79);
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		assert_int_equal(line[0], '\t');
		assert_true(strlen(line) + 7 <= 79);
	}
	/* with the autolearn and version tail, broken where SpamAssassin 4.0.1's Util::wrap
	 * breaks the same text (after a space too; perl -MMail::SpamAssassin::Util, wrap(
	 * "X-Spam-Status!!" . $v, "\t", "", 79, 0, '(?<=[\s,])')) */
	actions_format_status(buf, sizeof(buf), 1.2, 5.0, tests, 9,
	    "autolearn=ham autolearn_force=yes (AL_A,AL_B) version=mxgate-0.1.0");
	assert_string_equal(buf, "No, score=1.2 required=5.0 tests=DKIM_SIGNED,DKIM_VALID,\n"
	    "\tDKIM_VALID_AU,HTML_MESSAGE,MIME_HTML_ONLY,RCVD_IN_DNSWL_NONE,\n"
	    "\tSPF_HELO_NONE,SPF_PASS,URIBL_BLOCKED autolearn=ham autolearn_force=yes\n"
	    "\t(AL_A,AL_B) version=mxgate-0.1.0");
	/* a buffer too small: truncated, still terminated */
	actions_format_status(buf, 20, 1.2, 5.0, tests, 9, "autolearn=no");
	assert_int_equal(strlen(buf), 19);
}

static void test_symbols(void **state)
{
	const char *names[] = { "A", "B" };
	double scores[] = { 2.5, -1 };
	char buf[256];

	actions_format_symbols(buf, sizeof(buf), names, scores, 2);
	assert_string_equal(buf, "A=2.500, B=-1.000");
}

/* Folded lines of X-Spam-Symbols end in the comma, with no space before the fold (a
 * line's trailing white space is what RFC 5322 3.2.2 says not to write), and stay within
 * 78 columns, for a list of more than 64 names too. */
static void test_symbols_folding(void **state)
{
	const char *names[100];
	double scores[100];
	char nm[100][24], buf[8192], *line, *save = NULL;
	size_t n = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		snprintf(nm[i], sizeof(nm[i]), "SOME_RULE_%d", i);
		names[i] = nm[i];
		scores[i] = i * 0.5;
	}
	actions_format_symbols(buf, sizeof(buf), names, scores, 100);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		size_t l = strlen(line);

		assert_true(l > 0 && line[l - 1] != ' ' && line[l - 1] != '\t');
		assert_true(l + (n ? 7 : 16) <= 78);
		assert_true(n == 0 || line[0] == '\t');
	}
	assert_true(n > 10);
}

/* rewrite_header Subject (SA's rewrite_no_report_safe): the tag before the value as received,
 * leading blanks dropped, folds and encoded words kept, a tag already there not doubled;
 * _SCORE_/_REQD_ as X-Spam-Status shows them, other tags as written. */
static void test_rewrite_subject(void **state)
{
	char *v;

	v = actions_rewrite_subject("*****SPAM*****", 7, 5, " hello");
	assert_string_equal(v, "*****SPAM***** hello");
	free(v);
	v = actions_rewrite_subject("[SPAM]", 7, 5, " =?UTF-8?B?w6Q=?=\r\n\tsecond");
	assert_string_equal(v, "[SPAM] =?UTF-8?B?w6Q=?=\r\n\tsecond");
	free(v);
	v = actions_rewrite_subject("[spam]", 7, 5, "\t[SPAM] again");
	assert_string_equal(v, "[spam] again");
	free(v);
	v = actions_rewrite_subject("[SPAM]", 7, 5, NULL);
	assert_string_equal(v, "[SPAM] ");
	free(v);
	/* 4.9996 rounds to 5.0 at 3 decimals: spam, shown as 5.0 (never "4.9 ... Yes") */
	v = actions_rewrite_subject("_SCORE_/_REQD_ _HITS_ _YESNOCAPS_ _X_\nend", 4.9996, 5, "s");
	assert_string_equal(v, "5.0/5.0 5.0 YES _X_ end s");
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide_table),
		cmocka_unit_test(test_decide_recipients),
		cmocka_unit_test(test_reject_reply),
		cmocka_unit_test(test_status_form),
		cmocka_unit_test(test_status_folding),
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_symbols_folding),
		cmocka_unit_test(test_rewrite_subject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
