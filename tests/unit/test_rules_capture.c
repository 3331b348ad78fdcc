/* test_rules_capture.c — SpamAssassin 4's capture rules (Conf.pm "CAPTURING TAGS USING
 * REGEX NAMED CAPTURE GROUPS"): a regex rule's named group (?<NAME>...) sets the tag NAME;
 * a template rule (%{NAME} in its regex) runs with the tag's values in its place, and does
 * not run at all while the tag is unset. The stock rules use it: __GB_TO_ADDR captures
 * To:addr, and __GB_CUSTOM_HTM_URI0..2, __GB_DRUPAL_URI, T_GB_STORAGE_GOOGLE_EMAIL and
 * T_GB_YOUTUBE_EMAIL look for it in the URIs (phishing links that carry the recipient).
 *
 * SA 4.0.1 matches the filled-in pattern with /o (Plugin/Check.pm): Perl compiles it once
 * per process, so spamd matches every message with the values of the first message its
 * child ran the rule for (spamd-hits.tsv: hard-ham-1-00001 has its own To address in
 * "freemaillogin.asp?email=" and spamd did not hit GB_CUSTOM_HTM_URI; sa_oracle.pl over a
 * list hits only the messages sent to the first message's recipient). So with the tag set
 * the result is unknown to mxgate ("RULE?": a meta over it fires only when it would either
 * way); with the tag unset it is 0. Expectations checked against spamassassin 4.0.1
 * (MX_ET_DUMP, the same rules in a site directory). */
#include "eval_testlib.h"

#include <unistd.h>

static const char rules[] =
    "header __TO_ADDR To:addr =~ /(?<TO_ADDR>.*)/\n"
    "uri URI_TO_ADDR m;^https?://.{4,128}(?:\\#|\\?&e=)%{TO_ADDR};i\n"
    "meta NO_URI_TO_ADDR !URI_TO_ADDR\n"
    "body __HELLO_NAME /\\bHello,? (?<BODY_HELLO_NAME>\\w+)\\b/\n"
    "header HELLO_NAME_IN_FROM From =~ /\\b%{BODY_HELLO_NAME}\\b/i\n"
    "body __NAMES /\\bname=(?<NM>[a-z]+)/\n"
    "tflags __NAMES multiple\n"
    "header NAME_IN_SUBJECT Subject =~ /\\b%{NM}\\b/\n"
    "body __FIRST /\\bfirst=(?<T_ONE>\\w+)/\n"
    "body __SECOND /\\bsecond=(?<T_TWO>\\w+)/\n"
    "body TWO_TAGS /%{T_ONE} and %{T_TWO}/\n"
    "body OWN_TAG /score %{YESNO}/\n"
    "body ESCAPED_TAG /price \\%\\{T_ONE\\}/\n";

#define MSG(from, to, subj, body) "From: " from "\nTo: " to "\nSubject: " subj \
	"\nDate: Wed, 02 Dec 2026 10:00:00 +0000\nMessage-ID: <c1@example.org>\n\n" body "\n"

static const struct et_case cases[] = {
	{ "a To address: the template's result depends on SA's process, unknown",
	  MSG("x@example.org", "Alice <alice@example.net>", "hi",
	      "see https://files.example.com/doc.html#alice@example.net"),
	  "__TO_ADDR,URI_TO_ADDR?,NO_URI_TO_ADDR?,OWN_TAG?", "URI_TO_ADDR,NO_URI_TO_ADDR" },
	{ "no To address: the tag is unset, SA does not run the rule (a meta sees 0)",
	  MSG("x@example.org", "undisclosed-recipients:;", "hi",
	      "see https://files.example.com/doc.html#%{TO_ADDR}"),
	  "NO_URI_TO_ADDR", "URI_TO_ADDR,URI_TO_ADDR?" },
	{ "a body capture for a header rule: set",
	  MSG("Jones <jones@example.org>", "b@example.net", "hi", "Hello Jones, how are you?"),
	  "HELLO_NAME_IN_FROM?", "HELLO_NAME_IN_FROM" },
	{ "a body capture for a header rule: unset",
	  MSG("Jones <jones@example.org>", "b@example.net", "hi", "Good morning, how are you?"),
	  NULL, "HELLO_NAME_IN_FROM,HELLO_NAME_IN_FROM?" },
	{ "tflags multiple captures",
	  MSG("x@example.org", "b@example.net", "a note for eve", "name=bob\nname=eve\n"),
	  "NAME_IN_SUBJECT?", "NAME_IN_SUBJECT" },
	{ "an empty capture sets no tag",
	  MSG("x@example.org", "b@example.net", "a note for eve", "name=\n"),
	  NULL, "NAME_IN_SUBJECT,NAME_IN_SUBJECT?" },
	/* Conf::Parser::parse_captures keeps $1 of its s///g: only the last %{NAME} of a
	 * pattern is a template (the others stay literal text); it alone decides */
	{ "two tags in one pattern, the last one unset: not run",
	  MSG("x@example.org", "b@example.net", "hi", "first=mallory"),
	  NULL, "TWO_TAGS,TWO_TAGS?" },
	{ "two tags in one pattern, the last one set",
	  MSG("x@example.org", "b@example.net", "hi", "second=mallory"),
	  "TWO_TAGS?", "TWO_TAGS" },
	/* Conf.pm: "\%{NAME}" is no template but the literal text %{NAME}; as written there
	 * Perl rejects it (an unescaped "{", test_rules_default), "\%\{NAME\}" works in both */
	{ "an escaped template is literal text",
	  MSG("x@example.org", "b@example.net", "hi", "first=x price %{T_ONE}"),
	  "ESCAPED_TAG", "ESCAPED_TAG?" },
};

static void test_capture_rules(void **state)
{
	(void)state;
	et_run_cases(rules, cases, sizeof(cases) / sizeof(cases[0]));
}

/* The stock rules' own pair, when they are installed: __GB_TO_ADDR and the URI rules over
 * it (meta GB_CUSTOM_HTM_URI): unknown with a To address, 0 without one. */
static void test_capture_stock(void **state)
{
	const char *g[1] = { "/usr/share/spamassassin/*.cf" };
	struct rules_set *rs = NULL;
	struct et t = { 0 };
	static const char with_to[] = MSG("Microsoft 365 <no-reply@secure-login.example>",
	    "alice@example.net", "Your password expires today",
	    "Keep your password: https://storage.example.com/abc/index.html?email=alice@example.net");
	static const char without_to[] = MSG("Microsoft 365 <no-reply@secure-login.example>",
	    "undisclosed-recipients:;", "Your password expires today",
	    "Keep your password: https://storage.example.com/abc/index.html?email=alice@example.net");

	(void)state;
	if (access("/usr/share/spamassassin/72_active.cf", R_OK) != 0)
		skip();
	rules_set_load(g, 1, &rs, NULL);
	assert_non_null(rs);
	t.rs = rs;
	t.sc = rules_scratch_new(rs);
	assert_non_null(t.sc);
	et_scan(&t, with_to);
	assert_true(et_hit(&t, "__GB_TO_ADDR"));
	assert_true(et_hit(&t, "__GB_CUSTOM_HTM_URI2?"));
	assert_true(et_hit(&t, "GB_CUSTOM_HTM_URI?"));
	assert_false(et_hit(&t, "GB_CUSTOM_HTM_URI"));
	et_scan(&t, without_to);
	assert_false(et_hit(&t, "__GB_CUSTOM_HTM_URI2?"));
	assert_false(et_hit(&t, "GB_CUSTOM_HTM_URI?"));
	assert_false(et_hit(&t, "GB_CUSTOM_HTM_URI"));
	rules_scratch_free(t.sc);
	rules_set_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_rules),
		cmocka_unit_test(test_capture_stock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
