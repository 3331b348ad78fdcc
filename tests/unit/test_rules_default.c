/* test_rules_default.c — the default rule set (each rule hits its .hit message and misses
 * its .miss message under tests/data/rules/) and the engine's semantics: header
 * selectors, if-unset, envelope rules, symbols from other modules, immediate actions,
 * tflags multiple, hit counters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rules/rules.h"
#include "eval_testlib.h"

static bool has_hit(const struct rules_result *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].name, name) == 0)
			return true;
	return false;
}

static void test_default_rules(void **state)
{
	char path[1024];
	const char *glob1[1] = { path };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_stats st;
	DIR *d;
	struct dirent *e;
	int checked = 0;

	snprintf(path, sizeof(path), "%s/rules/default.rules", et_srcdir());
	assert_int_equal(rules_set_load(glob1, 1, &rs, stderr), 0);
	assert_non_null(rs);
	rules_set_get_stats(rs, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.skipped_total, 0);
	sc = rules_scratch_new(rs);
	snprintf(path, sizeof(path), "%s/tests/data/rules", et_srcdir());
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		char rule[300], file[1400], *dot;
		bool want_hit;
		size_t len = 0;
		char *msg;
		struct rules_result res;

		dot = strstr(e->d_name, ".hit.eml");
		want_hit = dot != NULL;
		if (!dot)
			dot = strstr(e->d_name, ".miss.eml");
		if (!dot)
			continue;
		snprintf(rule, sizeof(rule), "%.*s", (int)(dot - e->d_name), e->d_name);
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		msg = et_slurp(file, &len);
		assert_non_null(msg);
		rules_set_scan(rs, sc, msg, len, NULL, NULL, 0, &res);
		if (has_hit(&res, rule) != want_hit)
			fail_msg("%s: %s %s", e->d_name, rule, want_hit ? "did not hit" : "hit");
		rules_result_free(&res);
		free(msg);
		checked++;
	}
	closedir(d);
	assert_true(checked >= 20);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

struct sem_case {
	const char *label;
	const char *rule;        /* the rule text (named T) */
	const char *msg;
	bool hit;
};

#define M "From: \"Alice Q. Example\" <alice@example.org>\r\nTo: bob@example.test\r\n" \
	"Cc: carol@example.net\r\nSubject: =?UTF-8?B?Y2Fmw6k=?= menu\r\n" \
	"X-Mailer: Foo\r\nReceived: from a\r\nReceived: from b\r\n\r\nbody text here\r\n"

static const struct sem_case sem[] = {
	{ "decoded subject", "header T Subject =~ /^caf\\xc3\\xa9 menu$/", M, true },
	{ "raw subject", "header T Subject:raw =~ /=\\?UTF-8\\?B\\?/", M, true },
	{ ":addr", "header T From:addr =~ /^alice\\@example\\.org$/", M, true },
	{ ":name", "header T From:name =~ /^Alice Q\\. Example$/", M, true },
	{ "ToCc", "header T ToCc =~ /carol\\@/", M, true },
	{ "ALL", "header T ALL =~ /^X-Mailer: Foo$/m", M, true },
	{ "repeated headers joined", "header T Received =~ /from a\\nfrom b/", M, true },
	{ "exists", "header T exists:X-Mailer", M, true },
	{ "exists missing", "header T exists:X-Nope", M, false },
	{ "negated on missing header", "header T X-Nope !~ /x/", M, true },
	{ "if-unset", "header T X-Nope =~ /^dflt$/ [if-unset: dflt]", M, true },
	{ "case-insensitive name", "header T x-mailer =~ /Foo/", M, true },
	{ "body", "body T /body text/", M, true },
	{ "body sees the subject", "body T /caf\\xc3\\xa9 menu/", M, true },
	{ "body does not see headers", "body T /X-Mailer/", M, false },
	{ "rawbody", "rawbody T /^body text here$/", M, true },
	{ "full", "full T /X-Mailer: Foo\\r\\nReceived/", M, true },
	{ "uri from text", "uri T m{^http://www\\.example\\.com/x$}",
	  "Subject: x\r\n\r\nsee www.example.com/x.\r\n", true },
	{ "mailto from text", "uri T /^mailto:info\\@example\\.com$/",
	  "Subject: x\r\n\r\nwrite to info@example.com today\r\n", true },
	{ "paragraph joins lines", "body T /first line second line/",
	  "Subject: x\r\n\r\nfirst line\r\nsecond line\r\n\r\nthird\r\n", true },
	{ "paragraphs stay apart", "body T /second line third/",
	  "Subject: x\r\n\r\nfirst line\r\nsecond line\r\n\r\nthird\r\n", false },
	{ "meta over unknown symbol", "meta T !SOME_SYMBOL", M, true },
	{ "multiple counts", "body __C /o/\ntflags __C multiple maxhits=5\nmeta T __C >= 3",
	  "Subject: x\r\n\r\nfoo boo\r\n", true },
	{ "eval rules never hit", "header T eval:check_for_forged_received()\nmeta T2 T", M, false },
	{ "LF-only message", "header T Subject =~ /^hi$/", "Subject: hi\n\nbody\n", true },
};

static void test_semantics(void **state)
{
	for (size_t i = 0; i < sizeof(sem) / sizeof(sem[0]); i++) {
		const struct sem_case *c = &sem[i];
		struct rules_set *rs = NULL;
		struct rules_scratch *sc;
		struct rules_result res;
		char text[1024];

		snprintf(text, sizeof(text), "%s\nscore T 1\n", c->rule);
		if (rules_set_load_text("sem.cf", text, strlen(text), &rs, stderr) != 0)
			fail_msg("%s: rule did not load", c->label);
		sc = rules_scratch_new(rs);
		rules_set_scan(rs, sc, c->msg, strlen(c->msg), NULL, NULL, 0, &res);
		if (has_hit(&res, "T") != c->hit)
			fail_msg("%s: %s", c->label, c->hit ? "no hit" : "unexpected hit");
		rules_result_free(&res);
		rules_scratch_free(sc);
		rules_set_free(rs);
	}
}

static void test_envelope(void **state)
{
	const char *text =
	    "envelope E_HELO helo =~ /^\\[?\\d+\\.\\d+\\.\\d+\\.\\d+\\]?$/\nscore E_HELO 1\n"
	    "envelope E_FROM from =~ /\\@spam\\.test$/\nscore E_FROM 1\n"
	    "envelope E_RCPT rcpt =~ /^postmaster\\@/\nscore E_RCPT 1\n"
	    "envelope E_NET ip 198.18.0.0/15\nscore E_NET 1\n"
	    "envelope E_NET6 ip 2001:db8::/32\nscore E_NET6 1\n"
	    "envelope E_IPRE ip =~ /^198\\.18\\./\nscore E_IPRE 1\n";
	const char *rcpts[] = { "bob@example.test", "postmaster@example.test" };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct rules_envelope envl = { .helo = "[198.18.0.2]", .mail_from = "x@spam.test",
		.client_ip = "198.18.0.2", .rcpts = rcpts, .nrcpts = 2,
		.client = (struct sockaddr *)&sin };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;

	inet_pton(AF_INET, "198.18.0.2", &sin.sin_addr);
	assert_int_equal(rules_set_load_text("env.cf", text, strlen(text), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, M, strlen(M), &envl, NULL, 0, &res);
	assert_true(has_hit(&res, "E_HELO"));
	assert_true(has_hit(&res, "E_FROM"));
	assert_true(has_hit(&res, "E_RCPT"));
	assert_true(has_hit(&res, "E_NET"));
	assert_false(has_hit(&res, "E_NET6"));
	assert_true(has_hit(&res, "E_IPRE"));
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

static void test_symbols_and_actions(void **state)
{
	const char *text = "meta COMBO DNSBL_HIT && MX_SPAMMY\nscore COMBO 4\n"
	    "body MX_SPAMMY /body text/\nscore MX_SPAMMY 1\n"
	    "body MX_BAD /body text/\nscore MX_BAD 0.5\naction MX_BAD quarantine\n"
	    "body MX_WORSE /body/\nscore MX_WORSE 0.1\naction MX_WORSE reject\n";
	struct hook_env env = { 0 };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;

	hook_env_add_symbol(&env, "DNSBL_HIT", 3, "bl.test");
	assert_int_equal(rules_set_load_text("sym.cf", text, strlen(text), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, M, strlen(M), NULL, &env, 0, &res);
	assert_true(has_hit(&res, "COMBO"));
	assert_int_equal(res.action, RULE_ACT_REJECT);       /* the strongest immediate action */
	assert_string_equal(res.action_rule, "MX_WORSE");
	assert_true(res.score > 5.59 && res.score < 5.61);   /* 4 + 1 + 0.5 + 0.1 */
	rules_result_free(&res);
	/* without the symbol the meta does not fire */
	rules_set_scan(rs, sc, M, strlen(M), NULL, NULL, 0, &res);
	assert_false(has_hit(&res, "COMBO"));
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
	hook_env_free_outputs(&env);
}

static void test_max_size(void **state)
{
	const char *text = "body B /body text/\nheader H Subject =~ /menu/\n";
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;

	assert_int_equal(rules_set_load_text("sz.cf", text, strlen(text), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, M, strlen(M), NULL, NULL, 10, &res);
	assert_true(res.body_skipped);
	assert_true(has_hit(&res, "H"));
	assert_false(has_hit(&res, "B"));
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

/* Syntax errors are errors (the line left out, the rest loaded). A regex Perl rejects too is
 * one (SpamAssassin 4.0.1's lint: "invalid regexp", "eval (?{}) found"; spamd drops the
 * rule); one PCRE2 alone cannot take (a lookbehind of varying length, which Perl 5.36
 * compiles) is a warning and the rule is skipped as unknown. */
static void test_errors_reported(void **state)
{
	const char *text = "body A /ok/\nbody B /unterminated\nmeta C A &&\nbody D /(?{ perl })/\n"
	    "body E /foo(bar/\nbody F /[z-a]/\nbody G /a**/\nbody H /(?<=ab?)c/\n"
	    "body I /price {x/\nbody J /^{x}|a{2}{y|[{]/\nbody K /\\%{T}/\n";
	struct rules_set *rs = NULL;
	struct rules_stats st;
	char *buf = NULL;
	size_t blen = 0;
	FILE *err = open_memstream(&buf, &blen);

	assert_int_equal(rules_set_load_text("e.cf", text, strlen(text), &rs, err), 8);
	fclose(err);
	assert_non_null(strstr(buf, "e.cf:2:8: B: unterminated regex"));
	assert_non_null(strstr(buf, "e.cf:3:"));
	assert_non_null(strstr(buf, "e.cf:4:8: D: invalid regex, rule left out: "));
	assert_non_null(strstr(buf, "e.cf:5:8: E: invalid regex, rule left out: "));
	assert_non_null(strstr(buf, "e.cf:6:8: F: invalid regex, rule left out: "));
	assert_non_null(strstr(buf, "e.cf:7:8: G: invalid regex, rule left out: "));
	assert_non_null(strstr(buf, "e.cf:8:8: warning: H: skipped"));
	/* PCRE2 takes a "{" after an atom that starts no quantifier as a literal; Perl 5.36
	 * with SA's fatal warnings rejects it ("Unescaped left brace in regex is passed
	 * through"), SA's own escape for a template, \%{NAME}, included */
	assert_non_null(strstr(buf, "e.cf:9:8: I: invalid regex, rule left out: regex at offset 6: "
	    "unescaped left brace"));
	assert_null(strstr(buf, "J:"));
	assert_non_null(strstr(buf, "e.cf:11:8: K: invalid regex"));
	rules_set_get_stats(rs, &st);
	assert_int_equal(st.skipped[SKIP_REGEX], 1);
	assert_int_equal(st.compiled, 2);
	free(buf);
	rules_set_free(rs);
}

/* An enormous rule file: a chain of 150,000 metas, each over the next, the last over a body
 * rule. It loads (its order was computed by recursion, one stack frame per link: the
 * daemon crashed at start or reload) and the head of the chain hits. */
static void test_meta_chain(void **state)
{
	enum { N = 150000 };
	size_t cap = (size_t)N * 32 + 64, o = 0;
	char *text = malloc(cap);
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;

	assert_non_null(text);
	o += (size_t)snprintf(text + o, cap - o, "body C_BASE /body text/\nscore C_BASE 0.5\n");
	for (int i = 0; i < N; i++)
		o += (size_t)snprintf(text + o, cap - o, "meta __M%d __M%d\n", i, i + 1);
	o += (size_t)snprintf(text + o, cap - o, "meta __M%d C_BASE\nmeta M_HEAD __M0\n", N);
	assert_int_equal(rules_set_load_text("chain.cf", text, o, &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, M, strlen(M), NULL, NULL, 0, &res);
	assert_true(has_hit(&res, "C_BASE"));
	assert_true(has_hit(&res, "M_HEAD"));
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
	free(text);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* SpamAssassin's `include FILE` (relative to the including file's directory; a directory
 * includes its *.cf sorted; each file read once, so an include loop ends): the included
 * rules load at the include's place, so a later score overrides them and they override
 * earlier ones. It was counted as an ignored directive: the rules never ran. */
static void test_include(void **state)
{
	char dir[] = "/tmp/test_rules_incXXXXXX", sub[600], glob1[600], cmd[700];
	const char *globs[1] = { glob1 };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;
	struct rules_stats st;
	char *buf = NULL;
	size_t blen = 0;
	FILE *err;

	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_file(dir, "local.cf",
	    "score INC_A 1.5\n"                   /* overridden by the included file */
	    "include sub/a.inc\n"
	    "score INC_B 2.5\n"                   /* overrides the included file */
	    "include sub\n"                       /* the directory: c.cf, d.cf */
	    "include local.cf\n"                  /* a loop: read once */
	    "if (version >= 3.004000)\ninclude sub/e.inc\nendif\n"
	    "if (version < 3.0)\ninclude sub/never.inc\nendif\n"
	    "include  missing.inc\n");
	write_file(sub, "a.inc", "body INC_A /body text/\nscore INC_A 0.5\n"
	    "body INC_B /body text/\nscore INC_B 0.25\ninclude ../local.cf\n");
	write_file(sub, "c.cf", "body INC_C /body text/\nscore INC_C 0.125\n");
	write_file(sub, "d.cf", "meta INC_D INC_C && INC_A\nscore INC_D 0.0625\n");
	write_file(sub, "e.inc", "header INC_E Subject =~ /menu/\nscore INC_E 4\n");
	write_file(sub, "never.inc", "body INC_NEVER /body/\n");
	snprintf(glob1, sizeof(glob1), "%s/*.cf", dir);
	err = open_memstream(&buf, &blen);
	assert_int_equal(rules_set_load(globs, 1, &rs, err), 1);
	fclose(err);
	assert_non_null(strstr(buf, "local.cf:12:10: cannot read "));
	assert_non_null(strstr(buf, "missing.inc: No such file or directory"));
	rules_set_get_stats(rs, &st);
	assert_int_equal(st.files, 5);        /* local.cf, a.inc, c.cf, d.cf, e.inc: once each */
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, M, strlen(M), NULL, NULL, 0, &res);
	assert_true(has_hit(&res, "INC_A"));
	assert_true(has_hit(&res, "INC_B"));
	assert_true(has_hit(&res, "INC_C"));
	assert_true(has_hit(&res, "INC_D"));
	assert_true(has_hit(&res, "INC_E"));
	assert_false(has_hit(&res, "INC_NEVER"));
	/* 0.5 (the included score) + 2.5 + 0.125 + 0.0625 + 4 */
	assert_true(res.score > 7.18 && res.score < 7.19);
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
	free(buf);
	/* text fed without files: include is an error, not silently nothing */
	buf = NULL;
	err = open_memstream(&buf, &blen);
	assert_int_equal(rules_set_load_text("t.cf", "include x.cf\n", 13, &rs, err), 1);
	fclose(err);
	assert_non_null(strstr(buf, "t.cf:1:9: include: not available here"));
	rules_set_free(rs);
	free(buf);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* SpamAssassin settings a local.cf uses to act on spam are read but not applied: -t says so
 * (a warning, not an error), except for the stock default required_score 5. */
static void test_unapplied_settings_warned(void **state)
{
	const char *text = "required_score 8\nrewrite_header From *****SPAM*****\n"
	    "required_score 5.0\nrequired_hits 3\nreport_safe 0\nbody A /ok/\n"
	    "rewrite_header subject [SPAM _SCORE_]\n";
	struct rules_set *rs = NULL;
	char *buf = NULL;
	size_t blen = 0;
	FILE *err = open_memstream(&buf, &blen);

	assert_int_equal(rules_set_load_text("w.cf", text, strlen(text), &rs, err), 0);
	fclose(err);
	assert_non_null(strstr(buf, "w.cf:1:1: warning: required_score 8 is not applied"));
	assert_non_null(strstr(buf, "w.cf:2:1: warning: rewrite_header From is not applied"));
	assert_null(strstr(buf, "w.cf:3:"));
	assert_non_null(strstr(buf, "w.cf:4:1: warning: required_hits 3 is not applied"));
	assert_null(strstr(buf, "w.cf:5:"));
	/* rewrite_header Subject is applied (rules.c): kept, no warning */
	assert_null(strstr(buf, "w.cf:7:"));
	assert_string_equal(rules_set_rewrite_subject(rs), "[SPAM _SCORE_]");
	rules_set_free(rs);
	free(buf);
}

/* rewrite_header Subject as SpamAssassin's Conf.pm reads it: the last line wins, one with no
 * STRING removes the rewrite. */
static void test_rewrite_subject_setting(void **state)
{
	const char *text = "rewrite_header Subject *** one ***\nrewrite_header SUBJECT two\n";
	const char *off = "rewrite_header Subject x\nrewrite_header Subject\n";
	struct rules_set *rs = NULL;

	assert_int_equal(rules_set_load_text("s.cf", text, strlen(text), &rs, NULL), 0);
	assert_string_equal(rules_set_rewrite_subject(rs), "two");
	rules_set_free(rs);
	rs = NULL;
	assert_int_equal(rules_set_load_text("s.cf", off, strlen(off), &rs, NULL), 0);
	assert_null(rules_set_rewrite_subject(rs));
	rules_set_free(rs);
}

/* The per-message time budget covers `full` rules too: 3,000 full rules with no literal to
 * start from over a 1.5 MB message took 27 s of one core here (the budget is 5 s; the loop
 * over full rules never looked at it). The scan now stops, says over_budget, and the rules
 * it did not run are unknown: a meta negating one does not fire (SA would have run it). */
static void test_budget_full_rules(void **state)
{
	static const char *const words[] = { "alpha", "beta", "gamma", "delta", "eps", "zeta" };
	enum { NRULES = 3000, NLINES = 25000 };
	size_t cap = (size_t)NRULES * 64 + 256, o = 0, mcap = (size_t)NLINES * 80 + 64, mo = 0;
	char *text = malloc(cap), *msg = malloc(mcap);
	unsigned seed = 1;
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;

	assert_non_null(text);
	assert_non_null(msg);
	o += (size_t)snprintf(text + o, cap - o, "header __ALWAYS Subject =~ /full/\n"
	    "meta M_NOT_LAST !F_LAST && __ALWAYS\nscore M_NOT_LAST 1\n");
	for (int i = 0; i < NRULES; i++)
		o += (size_t)snprintf(text + o, cap - o, "full F%d /\\b\\w{3,}\\s\\w+\\d{3}q%d/\n",
		    i, i);
	o += (size_t)snprintf(text + o, cap - o, "full F_LAST /\\b\\w{3,}\\s\\w+\\d{3}qlast/\n");
	mo += (size_t)snprintf(msg, mcap, "Subject: full\r\nFrom: a@example.org\r\n\r\n");
	for (int l = 0; l < NLINES; l++) {
		for (int w = 0; w < 12; w++) {
			seed = seed * 1103515245u + 12345u;
			mo += (size_t)snprintf(msg + mo, mcap - mo, "%s%s", w ? " " : "",
			    words[(seed >> 16) % 6]);
		}
		mo += (size_t)snprintf(msg + mo, mcap - mo, "\r\n");
	}
	assert_int_equal(rules_set_load_text("budget.cf", text, o, &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_set_scan(rs, sc, msg, mo, NULL, NULL, 0, &res);
	assert_true(res.over_budget);
	assert_false(has_hit(&res, "M_NOT_LAST"));
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
	free(text);
	free(msg);
}

struct counts { uint64_t a, b; int n; };

static void count_cb(const char *name, uint64_t hits, void *arg)
{
	struct counts *c = arg;

	c->n++;
	if (strcmp(name, "CA") == 0)
		c->a = hits;
	if (strcmp(name, "CB") == 0)
		c->b = hits;
}

static void test_counters(void **state)
{
	const char *text = "body CA /body/\nbody CB /nomatch/\nbody __CC /body/\n";
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res;
	struct counts c = { 0 };

	assert_int_equal(rules_set_load_text("c.cf", text, strlen(text), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	for (int i = 0; i < 3; i++) {
		rules_set_scan(rs, sc, M, strlen(M), NULL, NULL, 0, &res);
		rules_result_free(&res);
	}
	rules_set_foreach_counter(rs, count_cb, &c);
	assert_int_equal(c.n, 2);             /* __ rules are not listed */
	assert_int_equal(c.a, 3);
	assert_int_equal(c.b, 0);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_rules),
		cmocka_unit_test(test_semantics),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_symbols_and_actions),
		cmocka_unit_test(test_max_size),
		cmocka_unit_test(test_errors_reported),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_meta_chain),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_unapplied_settings_warned),
		cmocka_unit_test(test_rewrite_subject_setting),
		cmocka_unit_test(test_budget_full_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
