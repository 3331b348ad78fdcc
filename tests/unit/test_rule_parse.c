/* test_rule_parse.c — the rule-file parser: every directive, if/ifplugin blocks, and bad
 * lines reported as FILE:LINE:COL. Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/addhdr.h"
#include "rules/rule_parse.h"

static struct rule_src *parse(const char *text, int *nerr)
{
	struct rule_src *s = rule_src_new();

	assert_non_null(s);
	*nerr = rule_src_feed(s, "t.cf", text, strlen(text));
	rule_src_finish(s);
	return s;
}

static struct rule_def *get(struct rule_src *s, const char *name)
{
	long k = rule_src_find(s, name);

	assert_true(k >= 0);
	return rule_src_get(s, (size_t)k);
}

static void test_directives(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "header  H1  Subject =~ /viagra/i\n"
	    "header  H2  From:addr !~ m{\\@example\\.org$} [if-unset: none@none]\n"
	    "header  H3  exists:X-Mailer\n"
	    "header  H4  ALL =~ /^X-Foo:/m\n"
	    "header  H5  eval:check_for_faraway_charset_in_headers()\n"
	    "body    B1  /cheap \\#1 pills/   # a comment\n"
	    "rawbody R1  m!<script!i\n"
	    "full    F1  /^Received:/m\n"
	    "uri     U1  m{^https?://bit\\.ly/}i\n"
	    "mimeheader M1 Content-Type =~ /\\.exe/i\n"
	    "meta    META1 (H1 && !H3) || B1 + U1 >= 2\n"
	    "envelope E1 helo =~ /^localhost$/\n"
	    "header  N1  eval:check_rbl('zen', 'zen.spamhaus.org.')\n"
	    "tflags  N1  net\n"
	    "envelope E2 ip 198.18.0.0/15\n"
	    "score   H1  2.5\n"
	    "score   B1  1.0 2.0 3.0 4.0\n"
	    "describe H1 Subject talks about pills\n"
	    "tflags  U1  net\n"
	    "tflags  META1 multiple maxhits=3\n"
	    "action  B1  reject\n"
	    "lang de describe H1 Betreff\n"
	    "lang fr score H1 9\n"
	    "lang en score H1 8\n"
	    "lang de\n"
	    "report _SUMMARY_\n", &nerr);
	struct rule_def *d;

	assert_int_equal(nerr, 0);
	d = get(s, "H1");
	assert_int_equal(d->kind, RULE_HEADER);
	assert_string_equal(d->hdr, "Subject");
	assert_string_equal(d->re, "viagra");
	assert_true(d->re_flags & RULE_RE_I);
	assert_true(d->score == 2.5);
	assert_string_equal(d->desc, "Subject talks about pills");
	d = get(s, "H2");
	assert_int_equal(d->sel, HDR_SEL_ADDR);
	assert_true(d->negate);
	assert_string_equal(d->if_unset, "none@none");
	assert_string_equal(d->re, "\\@example\\.org$");
	d = get(s, "H3");
	assert_int_equal(d->sel, HDR_SEL_EXISTS);
	assert_string_equal(d->hdr, "X-Mailer");
	assert_true(get(s, "H4")->re_flags & RULE_RE_M);
	d = get(s, "H5");                /* the compiler decides whether it can run it */
	assert_int_equal(d->skip, SKIP_NONE);
	assert_string_equal(d->eval_fn, "check_for_faraway_charset_in_headers");
	assert_string_equal(d->eval_args, "");
	d = get(s, "B1");
	assert_int_equal(d->kind, RULE_BODY);
	assert_string_equal(d->re, "cheap #1 pills");       /* \# unescaped, comment gone */
	assert_true(d->score == 1.0);                        /* score set 0: the first value */
	assert_int_equal(d->action, RULE_ACT_REJECT);
	assert_int_equal(get(s, "R1")->kind, RULE_RAWBODY);
	assert_int_equal(get(s, "F1")->kind, RULE_FULL);
	d = get(s, "U1");
	assert_int_equal(d->kind, RULE_URI);
	assert_int_equal(d->skip, SKIP_NONE);               /* SA runs net-flagged regexes */
	assert_int_equal(get(s, "N1")->skip, SKIP_NET);     /* ... but not net evals */
	assert_int_equal(get(s, "M1")->kind, RULE_MIMEHEADER);
	d = get(s, "META1");
	assert_int_equal(d->kind, RULE_META);
	assert_string_equal(d->expr, "(H1 && !H3) || B1 + U1 >= 2");
	assert_true(d->tflags & RULE_TF_MULTIPLE);
	assert_int_equal(d->maxhits, 3);
	d = get(s, "E1");
	assert_int_equal(d->kind, RULE_ENVELOPE);
	assert_int_equal(d->env_field, ENV_HELO);
	d = get(s, "E2");
	assert_int_equal(d->env_field, ENV_IP_CIDR);
	assert_string_equal(d->cidr, "198.18.0.0/15");
	/* lang lines never apply (SpamAssassin in C.UTF-8) and are not "ignored"; report
	 * lines make report_safe's report template */
	assert_int_equal(rule_src_ignored(s), 0);
	assert_true(get(s, "H1")->score == 2.5);
	rule_src_free(s);
}

static void test_default_scores(void **state)
{
	int nerr;
	struct rule_src *s = parse("body A /a/\nbody __B /b/\nbody C /c/\ntflags C nice\n"
	    "score D 3\nbody E /e/\nscore E 0\n", &nerr);

	assert_int_equal(nerr, 0);
	assert_true(get(s, "A")->score == 1.0);
	assert_true(get(s, "__B")->score == 0);
	assert_true(get(s, "C")->score == -1.0);
	assert_false(get(s, "D")->defined);                  /* score only: a symbol */
	assert_int_equal(get(s, "D")->kind, RULE_SYMBOL);
	assert_true(get(s, "E")->score == 0);
	rule_src_free(s);
}

/* Rule names up to 100 characters, SpamAssassin's limit (63 before: a site's long local
 * rule names made the whole file an error). */
static void test_long_names(void **state)
{
	int nerr;
	char name[101], text[256];
	struct rule_src *s;

	memset(name, 'L', 100);
	name[100] = '\0';
	snprintf(text, sizeof(text), "body %s /x/\nscore %s 2.5\n", name, name);
	s = parse(text, &nerr);
	assert_int_equal(nerr, 0);
	assert_true(get(s, name)->score == 2.5);
	rule_src_free(s);
}

static void test_conditionals(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "ifplugin Mail::SpamAssassin::Plugin::MIMEHeader\nbody IN1 /a/\nendif\n"
	    "ifplugin Mail::SpamAssassin::Plugin::NotLoaded\nbody OUT1 /a/\n"
	    "  if (version >= 3.004000)\n  body OUT2 /a/\n  endif\nendif\n"
	    "if (version >= 3.004000)\nbody IN2 /a/\nendif\n"
	    "if (version >= 9.000000)\nbody OUT3 /a/\nelse\nbody IN3 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\nbody IN4 /a/\nendif\n"
	    "if !can(Mail::SpamAssassin::Conf::feature_bug6558_free)\nbody OUT4 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Conf::feature_not_in_sa)\nbody OUT7 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Plugin::ASN::has_check_asn)\nbody OUT8 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)\nbody IN6 /a/\nendif\n"
	    "if !plugin(Mail::SpamAssassin::Plugin::ReplaceTags)\nbody OUT5 /a/\nendif\n"
	    "if !((version >= 3.004000))\nbody OUT6 /a/\nendif\n"
	    "if (version >= 3.004000) && plugin(Mail::SpamAssassin::Plugin::DKIM)\nbody IN5 /a/\nendif\n",
	    &nerr);
	const char *in[] = { "IN1", "IN2", "IN3", "IN4", "IN5", "IN6" };
	const char *out[] = { "OUT1", "OUT2", "OUT3", "OUT4", "OUT5", "OUT6", "OUT7", "OUT8" };

	assert_int_equal(nerr, 0);
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		assert_true(rule_src_find(s, in[i]) >= 0);
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_true(rule_src_find(s, out[i]) < 0);
	rule_src_free(s);
}

/* SA's enable_compat X makes can(Mail::SpamAssassin::Conf::compat_X) true from that line on;
 * Debian's init.pre (read by spamd, not by a *.cf glob) enables welcomelist_blocklist, so the
 * stock 60_welcomelist*.cf define no USER_IN_WHITELIST-style metas, as with spamd */
static void test_enable_compat(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "if can(Mail::SpamAssassin::Conf::compat_welcomelist_blocklist)\nbody IN1 /a/\nendif\n"
	    "if !can(Mail::SpamAssassin::Conf::compat_welcomelist_blocklist)\nbody OUT1 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Conf::compat_site_flag)\nbody OUT2 /a/\nendif\n"
	    "enable_compat site_flag\n"
	    "if can(Mail::SpamAssassin::Conf::compat_site_flag)\nbody IN2 /a/\nendif\n"
	    "if can(Mail::SpamAssassin::Conf::compat_site)\nbody OUT3 /a/\nendif\n"
	    "enable_compat bad-name\n", &nerr);

	(void)state;
	assert_int_equal(nerr, 1);
	assert_non_null(strstr(rule_src_error(s, 0), "t.cf:17:15: enable_compat"));
	assert_true(rule_src_find(s, "IN1") >= 0);
	assert_true(rule_src_find(s, "IN2") >= 0);
	assert_true(rule_src_find(s, "OUT1") < 0);
	assert_true(rule_src_find(s, "OUT2") < 0);
	assert_true(rule_src_find(s, "OUT3") < 0);
	rule_src_free(s);
}

/* add_header / remove_header / clear_headers build SpamAssassin's two lists as Conf.pm does,
 * from 10_default_prefs.cf's (Checker-Version, Flag for spam, Level, Status) */
static void test_header_lists(void **state)
{
	int nerr;
	const struct addhdr_spec *h;
	struct rule_src *s = parse("remove_header ham Level\n", &nerr);

	(void)state;
	assert_int_equal(nerr, 0);
	assert_int_equal(rule_src_headers(s, true, &h), 4);
	assert_string_equal(h[1].name, "Flag");
	assert_string_equal(h[3].tmpl, "_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ "
	    "autolearn=_AUTOLEARN_ version=_VERSION_");
	assert_int_equal(rule_src_headers(s, false, &h), 2);
	assert_string_equal(h[1].name, "Status");
	rule_src_free(s);
	s = parse("clear_headers\nadd_header all Status x\n"
	    "add_header spam Foo \"a\\tb\\\\c\\qd\\n\"\nadd_header spam status y\n"
	    "remove_header ham STATUS\nremove_header all Checker-Version\n"
	    "add_header both X y\nremove_header all X y\nclear_headers now\nadd_header all X\n"
	    "add_header all Bad/Name y\n", &nerr);
	/* the last five: Conf.pm's "invalid value" */
	assert_int_equal(nerr, 5);
	assert_non_null(strstr(rule_src_error(s, 0), "t.cf:7:12: add_header: invalid value"));
	assert_non_null(strstr(rule_src_error(s, 2), "t.cf:9:15: clear_headers: invalid value"));
	assert_int_equal(rule_src_headers(s, true, &h), 3);
	assert_string_equal(h[0].name, "Checker-Version");   /* neither cleared nor removed */
	assert_string_equal(h[1].name, "Foo");
	assert_string_equal(h[1].tmpl, "a\tb\\cd\n");     /* \t, \\, \q dropped, \n */
	assert_string_equal(h[2].name, "status");            /* replaced, at the end */
	assert_string_equal(h[2].tmpl, "y");
	assert_int_equal(rule_src_headers(s, false, &h), 1);
	assert_string_equal(h[0].name, "Checker-Version");
	rule_src_free(s);
}

/* Directives mxgate reads and does not apply are listed by name and count (what -t prints),
 * the settings the evals read are not; uri_detail is a rule (check_uri_detail) */
static void test_ignored_directives(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "lang fr describe X y\nlang de describe X z\nadd_header all Checker x _LANGUAGES_\n"
	    "report_safe 0\nwhitelist_from a@b.example\ntrusted_networks 10.0.0.0/8\n"
	    "uri_detail LOC_UD type =~ /^a$/ raw =~ /x/\nscore LOC_UD 1\n"
	    "uri_detail LOC_UD2 raw =~ /it's\\/x/ host !~ /y/\n"
	    "uri_detail LOC_UD3 cleaned =~ m{x}\nreport_safe 2\nshortcircuit LOC_UD on\n", &nerr);
	char *list = rule_src_ignored_list(s);

	(void)state;
	/* uri_detail over raw/type/cleaned/text/host/domain is the eval check_uri_detail; m{...}
	 * SpamAssassin does not read: error */
	assert_int_equal(nerr, 1);
	assert_non_null(strstr(rule_src_error(s, 0), "t.cf:10:31: uri_detail LOC_UD3: bracket"));
	assert_non_null(list);
	/* add_header is applied (a tag mxgate does not expand is a warning at its line), and
	 * so are report_safe 0 and 2 (the last report_safe line); shortcircuit is not: listed
	 * and warned of */
	assert_string_equal(list, "shortcircuit 1");
	assert_int_equal(rule_src_nwarnings(s), 2);
	assert_non_null(strstr(rule_src_warning(s, 0), "t.cf:3:1: warning: add_header all Checker: "
	    "_LANGUAGES_ is not expanded by mxgate"));
	assert_non_null(strstr(rule_src_warning(s, 1), "t.cf:12:1: warning: shortcircuit LOC_UD on "
	    "is not applied"));

	assert_string_equal(get(s, "LOC_UD")->eval_fn, "check_uri_detail");
	assert_string_equal(get(s, "LOC_UD2")->eval_fn, "check_uri_detail");
	assert_string_equal(get(s, "LOC_UD2")->eval_args, "'raw =~ /it\\'s\\\\/x/ host !~ /y/'");
	assert_int_equal(get(s, "LOC_UD2")->kind, RULE_BODY);
	free(list);
	rule_src_free(s);
	s = parse("body A /a/\nwhitelist_from a@b.example\n", &nerr);
	assert_null(rule_src_ignored_list(s));
	rule_src_free(s);
	/* the stock 10_default_prefs.cf's report_safe 1, then a local.cf's 0: quiet */
	s = parse("report_safe 1\nreport_safe 0\n", &nerr);
	assert_int_equal(rule_src_nwarnings(s), 0);
	assert_null(rule_src_ignored_list(s));
	rule_src_free(s);
	/* loadplugin of a plugin Debian's spamd loads anyway: quiet; of another (its ifplugin
	 * blocks would apply in SpamAssassin, mxgate skips them): a warning */
	s = parse("loadplugin Mail::SpamAssassin::Plugin::URIDetail\n"
	    "loadplugin Mail::SpamAssassin::Plugin::Shortcircuit\n"
	    "ifplugin Mail::SpamAssassin::Plugin::Shortcircuit\nbody SC /x/\nendif\n", &nerr);
	assert_int_equal(nerr, 0);
	assert_int_equal(rule_src_nwarnings(s), 1);
	assert_non_null(strstr(rule_src_warning(s, 0), "t.cf:2:1: warning: loadplugin "
	    "Mail::SpamAssassin::Plugin::Shortcircuit: mxgate does not run this plugin"));
	assert_true(rule_src_find(s, "SC") < 0);
	rule_src_free(s);
}

/* A first word SpamAssassin does not know is an error at its line, as SA's lint says "failed
 * to parse line"; SA's own directives, its plugins' dynamic ones (bayes_stopword_xx,
 * hashbl_acl_NAME, freemail_domains) and any case are not */
static void test_unknown_directive(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "bodyy TYPO /x/\nwhitelist_form a@b.example\nreport_safe 0\n"
	    "bayes_stopword_en (?:the|and)\nhashbl_acl_freemail gmail.com\n"
	    "FREEMAIL_DOMAINS x.example\nRequired_Score 5\nbayes_stopword_english x\n"
	    "ifplugin Mail::SpamAssassin::Plugin::NotLoaded\nnot_a_directive x\nendif\n", &nerr);

	(void)state;
	assert_int_equal(nerr, 3);
	assert_string_equal(rule_src_error(s, 0), "t.cf:1:1: unknown directive 'bodyy'");
	assert_string_equal(rule_src_error(s, 1), "t.cf:2:1: unknown directive 'whitelist_form'");
	assert_string_equal(rule_src_error(s, 2),
	    "t.cf:8:1: unknown directive 'bayes_stopword_english'");
	assert_true(rule_src_find(s, "TYPO") < 0);
	rule_src_free(s);
}

/* [if-unset: X] as SpamAssassin reads it (s/\s+\[if-unset:\s+(.+)\]$//): a value of one
 * character or more after a space, kept as written; an empty one, none after the colon, the
 * tag glued to the regex or text after the ']' leave SA's regex invalid (lint error, the rule
 * dropped): errors here, where mxgate used to run the rule with an empty value */
static void test_if_unset_forms(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "header U_EMPTY X-None =~ /^$/ [if-unset: ]\n"
	    "header U_NOSPACE X-None =~ /^x$/ [if-unset:x]\n"
	    "header U_GLUED X-None =~ /^x$/[if-unset: x]\n"
	    "header U_AFTER X-None =~ /^x$/ [if-unset: x] more\n"
	    "header U_OK X-None =~ /^x $/ [if-unset:  x ]\n"
	    "header U_BLANK X-None =~ /^ $/ [if-unset:   ]\n", &nerr);

	(void)state;
	assert_int_equal(nerr, 4);
	assert_true(rule_src_find(s, "U_EMPTY") < 0 || !get(s, "U_EMPTY")->defined);
	assert_true(rule_src_find(s, "U_NOSPACE") < 0 || !get(s, "U_NOSPACE")->defined);
	assert_true(rule_src_find(s, "U_GLUED") < 0 || !get(s, "U_GLUED")->defined);
	assert_true(rule_src_find(s, "U_AFTER") < 0 || !get(s, "U_AFTER")->defined);
	assert_string_equal(get(s, "U_OK")->if_unset, "x ");
	assert_string_equal(get(s, "U_BLANK")->if_unset, " ");
	rule_src_free(s);
}

static void test_replace_tags(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "replace_tag A (?:[a4@])\nreplace_tag B (?:[b8])\nreplace_inter W1 \\W?\n"
	    "replace_post P2 {1,2}\n"
	    "body FUZZ /<inter W1><post P2><A><B>/i\nreplace_rules FUZZ\n", &nerr);

	assert_int_equal(nerr, 0);
	/* as SA: the empty piece before the first tag takes inter too */
	assert_string_equal(get(s, "FUZZ")->re, "\\W?(?:[a4@]){1,2}\\W?(?:[b8]){1,2}");
	rule_src_free(s);
}

/* A tag whose value holds itself eight times grows 8^6 times over six passes (a fuzzer's
 * find: minutes of copying); past the bound the rule keeps the compact form only. */
static void test_replace_tags_self(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "replace_tag A x<A><A><A><A><A><A><A><A>0123456789012345678901234567890123456789\n"
	    "body SELF /<A><A><A><A>/\nreplace_rules SELF\n", &nerr);
	const struct rule_def *d = get(s, "SELF");

	assert_int_equal(nerr, 0);
	assert_non_null(d->re_compact);
	assert_string_equal(d->re, d->re_compact);
	assert_non_null(strstr(d->re, "(?&_rt0)"));
	assert_true(strlen(d->re) < 4096);
	rule_src_free(s);
}

/* Markers with two-octet delimiters after a near miss ("<" before "<%"), and a marker whose
 * end is missing: the marker search (rule_find, memchr and memcmp) as memmem found them. */
static void test_replace_tags_delims(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "replace_start <%\nreplace_end %>\nreplace_tag A a\nreplace_post P {2}\n"
	    "body M /x<<%post P%><A>/\nreplace_rules M\n"
	    "body N /<%pre Q <A>/\nreplace_rules N\n", &nerr);

	assert_int_equal(nerr, 0);
	assert_string_equal(get(s, "M")->re, "x<a{2}");
	assert_string_equal(get(s, "N")->re, "<%pre Q a");
	rule_src_free(s);
}

struct bad_case { const char *label, *text, *where; };

static const struct bad_case bad_cases[] = {
	{ "unterminated regex", "body A /abc\n", "t.cf:1:8:" },
	{ "no regex delimiter", "body A abc\n", "t.cf:1:8:" },
	{ "unknown modifier", "\nbody A /abc/q\n", "t.cf:2:8:" },
	{ "header without operator", "header A Subject /x/\n", "t.cf:1:18:" },
	{ "bad header selector", "header A From:bogus =~ /x/\n", "t.cf:1:15:" },
	{ "trailing text", "body A /x/ junk\n", "t.cf:1:12:" },
	{ "bad score", "score A high\n", "t.cf:1:9:" },
	{ "three scores", "score A 1 2 3\n", "t.cf:1:14:" },
	{ "bad rule name", "body A$B /x/\n", "t.cf:1:6:" },
	{ "missing definition", "body A\n", "t.cf:1:7:" },
	{ "endif without if", "endif\n", "t.cf:1:1:" },
	{ "missing endif", "ifplugin X\nbody A /x/\n", "t.cf:2:1:" },
	/* SpamAssassin's Conf/Parser.pm: "missing 'ifplugin' condition", "must be standalone" */
	{ "rule name over 100 characters",
	  "body A2345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901 /x/\n",
	  "t.cf:1:6:" },
	{ "ifplugin without a plugin", "ifplugin\nbody A /x/\nendif\n", "t.cf:1:1:" },
	{ "if without a condition", "body A /x/\nif  \nendif\n", "t.cf:2:1:" },
	{ "else with text", "ifplugin X\nelse foo\nendif\n", "t.cf:2:6:" },
	{ "endif with text", "ifplugin X\nendif X\n", "t.cf:2:7:" },
	{ "bad if", "if (version >=\nendif\n", "t.cf:1:4:" },
	{ "bad action", "action A explode\n", "t.cf:1:10:" },
	{ "bad envelope field", "envelope A size =~ /x/\n", "t.cf:1:12:" },
	{ "NUL byte", "body A /x\0y/\n", "t.cf:1:1:" },
	{ "bayes_ignore_header without a name", "bayes_ignore_header  \n", "t.cf:1:20:" },
};

static void test_bad_lines(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct rule_src *s = rule_src_new();
		size_t len = strlen(c->text);
		int n;

		if (strcmp(c->label, "NUL byte") == 0)
			len = 14;
		n = rule_src_feed(s, "t.cf", c->text, len);
		if (n < 1 || strncmp(rule_src_error(s, 0), c->where, strlen(c->where)) != 0)
			fail_msg("%s: got %d errors, first \"%s\", want \"%s...\"", c->label, n,
			    n ? rule_src_error(s, 0) : "", c->where);
		rule_src_free(s);
	}
}

static void test_regex_syntax(void **state)
{
	const struct { const char *in; const char *re; unsigned flags; const char *rest; } t[] = {
		{ "/a\\/b/i rest", "a\\/b", RULE_RE_I, " rest" },
		{ "m{a{1,2}b}sx", "a{1,2}b", RULE_RE_S | RULE_RE_X, "" },
		{ "m!x!", "x", 0, "" },
		{ "m(a(b)c)m", "a(b)c", RULE_RE_M, "" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *p = t[i].in, *err = NULL;
		char *re = NULL;
		unsigned fl = 0;

		assert_int_equal(rule_parse_regex(&p, &re, &fl, &err), 0);
		assert_string_equal(re, t[i].re);
		assert_int_equal(fl, t[i].flags);
		assert_string_equal(p, t[i].rest);
		free(re);
	}
}

static void test_later_overrides(void **state)
{
	int nerr;
	struct rule_src *s = parse("body A /one/\nscore A 2\nbody A /two/\nscore A 3\n", &nerr);

	assert_int_equal(nerr, 0);
	assert_string_equal(get(s, "A")->re, "two");
	assert_true(get(s, "A")->score == 3);
	assert_int_equal(rule_src_count(s), 1);
	rule_src_free(s);
}

/* bayes_ignore_header is a directive like any: its lines in inactive if/ifplugin blocks
 * do not count, names are kept lower case and once, the first word is the name (the stock
 * rules' "x-purgate-eavas: clean"), a comment or another directive is no name. */
static void test_bayes_ignore_header(void **state)
{
	int nerr;
	struct rule_src *s = parse(
	    "bayes_ignore_header X-Foo\n"
	    "  bayes_ignore_header\tList-Id  \n"
	    "# bayes_ignore_header X-Commented\n"
	    "bayes_ignore_headers X-Other\n"
	    "bayes_ignore_header x-foo   # again, any case\n"
	    "BAYES_IGNORE_HEADER X-Upper-Directive\n"
	    "bayes_ignore_header X-A: clean\n"
	    "ifplugin Mail::SpamAssassin::Plugin::NotLoaded\nbayes_ignore_header X-Out1\nendif\n"
	    "if (version >= 9.000000)\nbayes_ignore_header X-Out2\nelse\n"
	    "bayes_ignore_header X-In-Else\nendif\n"
	    "ifplugin Mail::SpamAssassin::Plugin::MIMEHeader\nbayes_ignore_header X-In-Plugin\nendif\n"
	    "header X_FOO X-Foo =~ /a/\n", &nerr);
	const char *want[] = { "x-foo", "list-id", "x-upper-directive", "x-a:", "x-in-else",
	    "x-in-plugin" };
	size_t n;
	const char *const *v = rule_src_ignore_headers(s, &n);

	(void)state;
	/* bayes_ignore_headers is no SpamAssassin directive: an error at its line, as in SA */
	assert_int_equal(nerr, 1);
	assert_string_equal(rule_src_error(s, 0), "t.cf:4:1: unknown directive 'bayes_ignore_headers'");
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	assert_true(rule_src_find(s, "X_FOO") >= 0);
	rule_src_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directives),
		cmocka_unit_test(test_default_scores),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_conditionals),
		cmocka_unit_test(test_enable_compat),
		cmocka_unit_test(test_ignored_directives),
		cmocka_unit_test(test_header_lists),
		cmocka_unit_test(test_unknown_directive),
		cmocka_unit_test(test_if_unset_forms),
		cmocka_unit_test(test_replace_tags),
		cmocka_unit_test(test_replace_tags_self),
		cmocka_unit_test(test_replace_tags_delims),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_regex_syntax),
		cmocka_unit_test(test_later_overrides),
		cmocka_unit_test(test_bayes_ignore_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
