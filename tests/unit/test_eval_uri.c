/* test_eval_uri.c — SpamAssassin's URI handling (rules/uri.c, rules/uri_find.c): the text
 * URI finder, uri_list_canonicalize, HTML's target_uri, uri_to_domain's host, and uri rules
 * and URI-host lists over messages. The expected values were produced by SpamAssassin 4.0.1
 * itself (Util::uri_list_canonicalize, HTML::target_uri, PerMsgStatus::get_uri_list), with
 * its stock TLD list and redirector patterns. */
#include "eval_testlib.h"

#include "rules/match.h"
#include "rules/uri.h"

struct canon_case { const char *uri, *want; };
struct target_case { const char *base, *rel, *want; };
struct text_case { const char *text, *want; };

static const struct canon_case canon_cases[] = {
	{ "http://www.example.com?x=1",
	  "http://www.example.com/?x=1 http://www.example.com?x=1" },
	{ "http:www.example.com/a",
	  "http://www.example.com/a http:www.example.com/a" },
	{ "HTTP://Example.COM:80/x",
	  "HTTP://Example.COM:80/x" },
	{ "https://a.example.com:443/",
	  "https://a.example.com/ https://a.example.com:443/" },
	{ "http://%77%77%77.example.com/%7Euser/%20x",
	  "http://%77%77%77.example.com/%7Euser/%20x http://www.example.com/~user/%20x" },
	{ "http://user:pw@www.example.com/",
	  "http://user:pw@www.example.com/" },
	{ "http://www.example.com./",
	  "http://www.example.com./ http://www.example.com/" },
	{ "http://0x7f.0x0.0x0.0x1/",
	  "http://0x7f.0x0.0x0.0x1/ http://127...1/" },
	{ "http://0177.0.0.01/",
	  "http://0177.0.0.01/ http://127...1/" },
	{ "http://2130706433/",
	  "http://127.0.0.1/ http://2130706433/" },
	{ "http://0x7f000001/",
	  "http://0x7f000001/ http://127.0.0.1/" },
	{ "http://foobar/",
	  "http://foobar/ http://www.foobar.com/" },
	{ "http://www.google.com/url?sa=t&q=http://evil.example.net/x&usg=1",
	  "http://evil.example.net/x http://www.google.com/url?sa=t&q=http://evil.example.net/x&usg=1" },
	{ "http://redir.example.com/r?u=http://target.example.org/p&z=1",
	  "http://redir.example.com/r?u=http://target.example.org/p&z=1 http://target.example.org/p" },
	{ "mailto:joe@example.com?subject=hi",
	  "mailto:joe@example.com mailto:joe@example.com?subject=hi" },
	{ "mailto:%20joe@example.com",
	  "mailto:%20joe@example.com mailto:joe@example.com" },
	{ "joe@example.com&x",
	  "joe@example.com joe@example.com&x" },
	{ "www.example.com",
	  "http://www.example.com www.example.com" },
	{ "ftp.example.com/pub",
	  "ftp.example.com/pub ftp://ftp.example.com/pub" },
	{ "http://ex&#97;mple.com/&#x41;&#x2e;",
	  "http://ex&#97;mple.com/&#x41;&#x2e; http://ex&/#97;mple.com/A. http://ex/#97;mple.com/A. http://www.ex&.com/#97;mple.com/A." },
	{ "http://a.b.example.com\\path\\x",
	  "http://a.b.example.com/path/x http://a.b.example.com\\path\\x" },
	{ "http://www.example.com#frag",
	  "http://www.example.com#frag http://www.example.com/#frag" },
	{ "http://[::1]/x",
	  "http://::1]/x http://[::1]/x http://www.[.com::1]/x" },
	{ "http://1.2.3.4:8080/",
	  "http://1.2.3.4:8080/" },
};
static const struct target_case target_cases[] = {
	{ "http://a.example.com/b/c/d.html", "../x", "http://a.example.com/b/x" },
	{ "http://a.example.com/b/", "./y/../z", "http://a.example.com/b/z" },
	{ "", "www.example.com/x", "www.example.com/x" },
	{ "http://a.example.com/b", "?q=1", "http://a.example.com/b?q=1" },
	{ "http://a.example.com/b/c", "//other.example.org/p", "http://other.example.org/p" },
	{ "", "/x/./y/../z", "/x/z" },
	{ "http://a.example.com", "x", "http://a.example.com/x" },
	{ "", "HTTP://a.example.com/../b", "HTTP://a.example.com/b" },
	{ "http://a.example.com/b/", "mailto:x@y.com", "mailto:x@y.com" },
};
static const struct text_case text_cases[] = {
	{ "see www.example.com/x. and (http://a.example.org/p) ok",
	  "http://a.example.org/p http://www.example.com/x" },
	{ "mail joe@example.com, or mailto:ann@example.net?subject=x today",
	  "mailto:ann@example.net mailto:ann@example.net?subject=x mailto:joe@example.com" },
	{ "visit promo.example.click/deal or foo.bar.invalidtld now",
	  "http://promo.example.click/deal" },
	{ "Benefits.Click here and http://x.example.com/a)b and 1.2.3.4/y",
	  "http://Benefits.Click http://x.example.com/a" },
	{ "bogus vi@gra and mail:bob@example.org and cid:img001.png@01D4.E345",
	  "mailto:bob@example.org" },
	{ "http:// alone, ftp.example.net/pub/file.tgz, www2.example.com",
	  "ftp://ftp.example.net/pub/file.tgz http://www2.example.com" },
	{ "url with <http://in.brackets.example.com/q?a=1&b=2> and 'http://quoted.example.org'",
	  "http://in.brackets.example.com/q?a=1&b=2 http://quoted.example.org" },
};

static const char *const test_tlds[] = { "com net org click" };
static const char *const test_redirectors[] = {
	"m'^https?:/*(?:\\w+\\.)?google(?:\\.\\w{2,3}){1,2}/url\\?.*?(?<=[?&])q=(.*?)(?:$|[&\\#])'i",
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The list sorted and joined with spaces, as the Perl side printed it. */
static void joined(const struct uri_list *l, char *out, size_t outlen)
{
	char **v = malloc((l->n + 1) * sizeof(char *));
	size_t o = 0;

	assert_non_null(v);
	memcpy(v, l->v, l->n * sizeof(char *));
	qsort(v, l->n, sizeof(char *), cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++)
		o += (size_t)snprintf(out + o, o < outlen ? outlen - o : 0, "%s%s", i ? " " : "", v[i]);
	free(v);
}

static void test_canonicalize(void **state)
{
	struct uri_conf *uc = uri_conf_new(test_tlds, 1, test_redirectors, 1);
	struct match_scratch *ms = match_scratch_new();
	char got[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(canon_cases) / sizeof(canon_cases[0]); i++) {
		struct uri_list out = { 0 };

		uri_canonicalize(uc, ms, canon_cases[i].uri, &out);
		joined(&out, got, sizeof(got));
		if (strcmp(got, canon_cases[i].want) != 0) {
			print_error("%s:\n  got  %s\n  want %s\n", canon_cases[i].uri, got,
			    canon_cases[i].want);
			fail();
		}
		uri_list_free(&out);
	}
	match_scratch_free(ms);
	uri_conf_free(uc);
}

static void test_target(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]); i++) {
		char *t = uri_target(target_cases[i].base, target_cases[i].rel);

		if (strcmp(t, target_cases[i].want) != 0) {
			print_error("%s + %s: got %s, want %s\n", target_cases[i].base,
			    target_cases[i].rel, t, target_cases[i].want);
			fail();
		}
		free(t);
	}
}

static void test_text_finder(void **state)
{
	struct uri_conf *uc = uri_conf_new(test_tlds, 1, test_redirectors, 1);
	struct match_scratch *ms = match_scratch_new();
	char got[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
		struct uri_details d = { 0 };

		uri_details_text(uc, ms, &d, text_cases[i].text, strlen(text_cases[i].text));
		joined(&d.all, got, sizeof(got));
		if (strcmp(got, text_cases[i].want) != 0) {
			print_error("%s:\n  got  %s\n  want %s\n", text_cases[i].text, got,
			    text_cases[i].want);
			fail();
		}
		uri_details_free(&d);
	}
	match_scratch_free(ms);
	uri_conf_free(uc);
}

static void test_hosts(void **state)
{
	static const struct { const char *uri, *host; } cases[] = {
		{ "http://User@WWW.Example.COM:8080/x?y", "www.example.com" },
		{ "mailto:joe@Example.ORG?subject=x", "example.org" },
		{ "https://1.2.3.4/", "1.2.3.4" },
		{ "http://01.2.3.4/", NULL },             /* not an IP, not a valid domain */
		{ "http://www.example.invalidtld/", NULL },
		{ "http://www.ex%61mple.com/", NULL },      /* undecoded: the decoded variant counts */
		{ "javascript:alert(1)", NULL },
		{ "mailto:a@b@example.com", NULL },
	};
	struct uri_conf *uc = uri_conf_new(test_tlds, 1, NULL, 0);
	char h[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool ok = uri_to_host(uc, cases[i].uri, h, sizeof(h));

		if (ok != (cases[i].host != NULL) || (ok && strcmp(h, cases[i].host) != 0)) {
			print_error("%s: got %s\n", cases[i].uri, ok ? h : "(none)");
			fail();
		}
	}
	assert_true(uri_fqdn_valid("a-b.example.com"));
	assert_false(uri_fqdn_valid("-ab.example.com"));
	assert_false(uri_fqdn_valid("a_b.com"));
	assert_true(uri_fqdn_valid("a_b.example.com"));
	assert_false(uri_fqdn_valid("localhost"));
	uri_conf_free(uc);
}

/* uri rules see the cleaned variants; HTML links are resolved against <base href>. */
static const char uri_rules[] =
    "util_rb_tld com net org\n"
    "uri URI_DECODED m{^http://www\\.example\\.com/~user}\n"
    "uri URI_BASE m{^http://base\\.example\\.org/dir/page\\.html$}\n"
    "uri URI_REDIR_TARGET m{^http://evil\\.example\\.net/}\n"
    "uri URI_SCHEMELESS m{^http://shop\\.example\\.com/deal$}\n"
    "uri URI_IP m{^http://127\\.0\\.0\\.1/}\n";

static const struct et_case uri_msgs[] = {
	{ "percent-encoded host and path",
	  "From: a@example.org\nSubject: x\n\nsee http://%77%77%77.example.com/%7Euser/\n",
	  "URI_DECODED", "URI_BASE" },
	{ "a relative link under <base href>",
	  "From: a@example.org\nSubject: x\nContent-Type: text/html\n\n<html><head>"
	  "<base href=\"http://base.example.org/dir/index.html\"></head><body>"
	  "<a href=\"page.html\">here</a></body></html>\n",
	  "URI_BASE", "URI_DECODED" },
	{ "a redirector's target",
	  "From: a@example.org\nSubject: x\n\nhttp://redir.example.com/r?u=http://evil.example.net/x&z=1\n",
	  "URI_REDIR_TARGET", NULL },
	{ "a schemeless host with a valid TLD, a decimal IP",
	  "From: a@example.org\nSubject: x\n\ngo to shop.example.com/deal or http://2130706433/\n",
	  "URI_SCHEMELESS,URI_IP", NULL },
};

static void test_uri_rules(void **state)
{
	(void)state;
	et_run_cases(uri_rules, uri_msgs, sizeof(uri_msgs) / sizeof(uri_msgs[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonicalize),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_text_finder),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_uri_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
