/* test_eval_list.c — the list-driven evals (rules/eval_list.c): WLBLEval's welcome/block
 * lists of senders, recipients, subjects and URI hosts, enlist_addrlist and enlist_uri_host
 * lists, VBounce's bounce relays, ImageInfo's image counts and pixel coverage, URIEval's
 * truncated URIs, HTTPSMismatch, and the DKIM evals without DNS (never true). Also: the eval
 * table is sorted (eval_find searches it) and every eval the stock rules call exists. The
 * rule expectations were checked against spamassassin 4.0.1 (MX_ET_DUMP). */
#include "eval_testlib.h"

#include "rules/eval.h"

#include <unistd.h>

static const char rules[] =
    "header USER_IN_WELCOMELIST eval:check_from_in_welcomelist()\n"
    "header USER_IN_BLOCKLIST eval:check_from_in_blocklist()\n"
    "header USER_IN_BLOCKLIST_TO eval:check_to_in_blocklist()\n"
    "header SUBJECT_IN_WELCOMELIST eval:check_subject_in_welcomelist()\n"
    "header __FROM_ADDRLIST_PAYPAL eval:check_from_in_list('PAYPAL')\n"
    "body URI_HOST_IN_BLOCKLIST eval:check_uri_host_in_blocklist()\n"
    "body PDS_OTHER_BAD_TLD eval:check_uri_host_listed('SUSP_URI_NTLD')\n"
    "body HTTPS_HTTP_MISMATCH eval:check_https_http_mismatch('1','10')\n"
    "body __HAVE_BOUNCE_RELAYS eval:have_any_bounce_relays()\n"
    "body __GIF_ATTACH_1 eval:image_count('gif','1','1')\n"
    "body __PNG_ATTACH_1 eval:image_count('png','1','1')\n"
    "body __ONE_IMG eval:image_count('all',1,1)\n"
    "body __GIF_AREA_180K eval:pixel_coverage('gif','180000','475000')\n"
    "body __PNG_AREA_180K eval:pixel_coverage('png','180000','475000')\n"
    "header DKIM_SIGNED eval:check_dkim_signed()\n"
    "header DKIM_VALID eval:check_dkim_valid()\n"
    "welcomelist_from *@friends.example.org\n"
    "blocklist_from spammer@example.com\n"
    "blocklist_to victim@example.net\n"
    "welcomelist_subject [newsletter]*\n"
    "enlist_addrlist (PAYPAL) *@paypal.com *@*.paypal.com\n"
    "blocklist_uri_host bad.example bad.example.com\n"
    "enlist_uri_host (SUSP_URI_NTLD) click top\n"
    "welcomelist_bounce_relays mail.example.org\n"
    "util_rb_tld com net org click top\n";

#define HDRS(from, to, subj) "From: " from "\nTo: " to "\nSubject: " subj \
	"\nDate: Mon, 2 Sep 2002 10:00:00 +0000\nMessage-ID: <1@example.org>\nMIME-Version: 1.0\n"

#define GIF_300x250 "R0lGODlhLAH6AIAAAP///wAAACwAAAAAAQABAAACAkQBADs="
#define PNG_400x500 "iVBORw0KGgoAAAANSUhEUgAAAZAAAAH0CAIAAACcuOzXAAAAAElFTkSuQmCC"

#define IMAGES(parts) HDRS("a@example.org", "b@example.net", "pictures") \
	"Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\n" \
	"see the pictures\n" parts "--b1--\n"
#define GIF_PART "--b1\nContent-Type: image/gif; name=\"a.gif\"\n" \
	"Content-Transfer-Encoding: base64\n\n" GIF_300x250 "\n"
#define PNG_PART "--b1\nContent-Type: image/png; name=\"b.png\"\n" \
	"Content-Transfer-Encoding: base64\n\n" PNG_400x500 "\n"

#define HTML_LINK(text, href) HDRS("a@example.org", "b@example.net", "your bank") \
	"Content-Type: text/html\n\n<html><body><p>Log in at <a href=\"" href "\">" text \
	"</a> today.</p></body></html>\n"

static const struct et_case cases[] = {
	{ "a sender on the welcome list",
	  HDRS("Alice <alice@friends.example.org>", "b@example.net", "hi") "\nhello\n",
	  "USER_IN_WELCOMELIST", "USER_IN_BLOCKLIST,USER_IN_BLOCKLIST_TO" },
	{ "a sender on the block list, a recipient on the block list",
	  HDRS("spammer@example.com", "victim@example.net", "hi") "\nhello\n",
	  "USER_IN_BLOCKLIST,USER_IN_BLOCKLIST_TO", "USER_IN_WELCOMELIST" },
	{ "the block list matches the whole address",
	  HDRS("not-spammer@example.com", "b@example.net", "hi") "\nhello\n",
	  NULL, "USER_IN_BLOCKLIST" },
	{ "a subject on the welcome list",
	  HDRS("a@example.org", "b@example.net", "[newsletter] September") "\nhello\n",
	  "SUBJECT_IN_WELCOMELIST", NULL },
	{ "a PayPal sender, subdomain too",
	  HDRS("service@mail.paypal.com", "b@example.net", "account") "\nhello\n",
	  "__FROM_ADDRLIST_PAYPAL", NULL },
	{ "a look-alike is not on the list",
	  HDRS("service@paypal.com.example.org", "b@example.net", "account") "\nhello\n",
	  NULL, "__FROM_ADDRLIST_PAYPAL" },
	{ "URIs with a listed TLD, and a blocked host whose TLD is not one (SA skips it)",
	  HDRS("a@example.org", "b@example.net", "links") "\nsee http://www.bad.example/x and "
	  "http://promo.shop.click/y\n",
	  "PDS_OTHER_BAD_TLD", "URI_HOST_IN_BLOCKLIST" },
	{ "a blocked host",
	  HDRS("a@example.org", "b@example.net", "links") "\nsee http://www.bad.example.com/x\n",
	  "URI_HOST_IN_BLOCKLIST", "PDS_OTHER_BAD_TLD" },
	{ "ordinary URIs",
	  HDRS("a@example.org", "b@example.net", "links") "\nsee http://www.example.com/x\n",
	  NULL, "URI_HOST_IN_BLOCKLIST,PDS_OTHER_BAD_TLD" },
	{ "an https:// anchor text over an http link elsewhere",
	  HTML_LINK("https://www.mybank.com/login", "http://phish.example.net/login"),
	  "HTTPS_HTTP_MISMATCH", NULL },
	{ "an https:// anchor text over a link to the same domain",
	  HTML_LINK("https://www.mybank.com/login", "http://secure.mybank.com/login"),
	  NULL, "HTTPS_HTTP_MISMATCH" },
	{ "bounce relays are configured", HDRS("a@example.org", "b@example.net", "hi") "\nx\n",
	  "__HAVE_BOUNCE_RELAYS", NULL },
	{ "one GIF of 300x250",
	  IMAGES(GIF_PART), "__GIF_ATTACH_1,__ONE_IMG", "__PNG_ATTACH_1,__GIF_AREA_180K" },
	{ "a GIF and a PNG of 400x500",
	  IMAGES(GIF_PART PNG_PART), "__GIF_ATTACH_1,__PNG_ATTACH_1,__PNG_AREA_180K",
	  "__ONE_IMG,__GIF_AREA_180K" },
	/* _process_dkim_uri_list (parse_dkim_uris, default 1): each d= of a DKIM-Signature or
	 * DomainKey-Signature field is a URI host ("domainkeys:D") the host lists see, though
	 * no uri rule does */
	{ "a DKIM signing domain with a listed TLD, no link in the body",
	  "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mail.shop.top;\n"
	  "\ts=s1; h=from:to; bh=abc=; b=xyz\n"
	  HDRS("a@example.org", "b@example.net", "hi") "\nhello\n",
	  "PDS_OTHER_BAD_TLD", "URI_HOST_IN_BLOCKLIST" },
	{ "the second of two signatures, d= last and folded; a DomainKey-Signature",
	  "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x; b=y\n"
	  "DKIM-Signature: v=1; a=rsa-sha256; s=s2; h=from; bh=x; b=y; d=\n\tbad.example.com\n"
	  "DomainKey-Signature: a=rsa-sha1; d=promo.click; s=k; b=z\n"
	  HDRS("a@example.org", "b@example.net", "hi") "\nhello\n",
	  "URI_HOST_IN_BLOCKLIST,PDS_OTHER_BAD_TLD", NULL },
	{ "a signing domain with an invalid TLD is no host",
	  "DKIM-Signature: v=1; a=rsa-sha256; d=bad.example; s=s1; h=from; bh=x; b=y\n"
	  HDRS("a@example.org", "b@example.net", "hi") "\nhello\n",
	  NULL, "URI_HOST_IN_BLOCKLIST,PDS_OTHER_BAD_TLD" },
	{ "a DKIM signature is never valid without DNS",
	  "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x; b=y\n"
	  HDRS("a@example.org", "b@example.net", "hi") "\nhello\n",
	  NULL, "DKIM_SIGNED,DKIM_VALID" },
};

static void test_list_evals(void **state)
{
	(void)state;
	et_run_cases(rules, cases, sizeof(cases) / sizeof(cases[0]));
}

/* welcomelist_from_rcvd (whitelist_from_rcvd) and def_welcomelist_from_rcvd: the sender and
 * the first untrusted relay (rDNS name, [IP], [IP/len], classful [a.b]), or any trusted relay
 * when no untrusted one brought the message; unwelcomelist_from, unblocklist_from and
 * unwelcomelist_from_rcvd take entries back out. Each case as spamassassin 4.0.1 scores it
 * with the same lines in local.cf. */
#define RCVD_EXT "Received: from mail.good.example (mail.good.example [198.51.100.7])\n" \
	"\tby mx.local.example (Postfix) with ESMTP id ABC; Thu, 03 Dec 2026 07:00:00 +0000\n"
#define RCVD_INT "Received: from mx.corp.example (mx.corp.example [10.1.2.3])\n" \
	"\tby final.corp.example (Postfix) with ESMTP id D1; Thu, 03 Dec 2026 07:00:01 +0000\n"
#define RCVD_FORGED RCVD_INT "Received: from spam.bad.example (spam.bad.example " \
	"[203.0.113.5])\n\tby mx.corp.example (Postfix) with ESMTP id D0; " \
	"Thu, 03 Dec 2026 07:00:00 +0000\n"
#define RCVD_MSG(rcvd, from) rcvd HDRS(from, "b@example.test", "hello there") "\nhello\n"

static const char rcvd_rules[] =
    "header USER_IN_WELCOMELIST eval:check_from_in_welcomelist()\n"
    "header USER_IN_DEF_WELCOMELIST eval:check_from_in_default_welcomelist()\n"
    "header USER_IN_BLOCKLIST eval:check_from_in_blocklist()\n"
    "trusted_networks 10.1.0.0/16\n"
    "whitelist_from_rcvd rcvd@good.example good.example\n"
    "welcomelist_from_rcvd ip@good.example [198.51.100.0/24]\n"
    "welcomelist_from_rcvd ip4@good.example [198.51.100.7]\n"
    "welcomelist_from_rcvd cls@good.example [198.51]\n"
    "welcomelist_from_rcvd other@good.example [198.51.101.0/24]\n"
    "def_whitelist_from_rcvd *@corp.example corp.example\n"
    "whitelist_from *@gone.example\n"
    "unwhitelist_from *@gone.example\n"
    "blocklist_from *@unblocked.example\n"
    "unblocklist_from *@unblocked.example\n"
    "whitelist_from_rcvd unrcvd@good.example good.example\n"
    "unwhitelist_from_rcvd unrcvd@good.example\n"
    "Whitelist-From dash@good.example\n";

static const struct et_case rcvd_cases[] = {
	{ "whitelist_from_rcvd: the sender and the relay's rDNS",
	  RCVD_MSG(RCVD_EXT, "rcvd@good.example"), "USER_IN_WELCOMELIST", "USER_IN_DEF_WELCOMELIST" },
	{ "welcomelist_from_rcvd by [CIDR]", RCVD_MSG(RCVD_EXT, "ip@good.example"),
	  "USER_IN_WELCOMELIST", NULL },
	{ "welcomelist_from_rcvd by [IP]", RCVD_MSG(RCVD_EXT, "ip4@good.example"),
	  "USER_IN_WELCOMELIST", NULL },
	{ "welcomelist_from_rcvd by a classful [a.b]", RCVD_MSG(RCVD_EXT, "cls@good.example"),
	  "USER_IN_WELCOMELIST", NULL },
	{ "welcomelist_from_rcvd: another network", RCVD_MSG(RCVD_EXT, "other@good.example"),
	  NULL, "USER_IN_WELCOMELIST" },
	{ "whitelist_from_rcvd: the right sender through another relay",
	  RCVD_MSG(RCVD_FORGED, "rcvd@good.example"), NULL, "USER_IN_WELCOMELIST" },
	{ "def_whitelist_from_rcvd: a trusted relay matches when no untrusted one is there",
	  RCVD_MSG(RCVD_INT, "boss@corp.example"), "USER_IN_DEF_WELCOMELIST", NULL },
	{ "def_whitelist_from_rcvd: not a trusted relay when an untrusted one brought it "
	  "(SA bug 4425)", RCVD_MSG(RCVD_FORGED, "boss@corp.example"),
	  NULL, "USER_IN_DEF_WELCOMELIST,USER_IN_WELCOMELIST" },
	{ "unwhitelist_from", RCVD_MSG(RCVD_EXT, "x@gone.example"), NULL, "USER_IN_WELCOMELIST" },
	{ "unblocklist_from", RCVD_MSG(RCVD_EXT, "x@unblocked.example"), NULL, "USER_IN_BLOCKLIST" },
	{ "unwhitelist_from_rcvd", RCVD_MSG(RCVD_EXT, "unrcvd@good.example"),
	  NULL, "USER_IN_WELCOMELIST" },
	{ "Whitelist-From: SA reads a setting's name in any case, '-' for '_'",
	  RCVD_MSG(RCVD_EXT, "dash@good.example"), "USER_IN_WELCOMELIST", NULL },
};

static void test_from_rcvd_lists(void **state)
{
	(void)state;
	et_run_cases(rcvd_rules, rcvd_cases, sizeof(rcvd_cases) / sizeof(rcvd_cases[0]));
}

/* parse_dkim_uris 0 turns the signing domains off as URI hosts, as in SA */
static void test_parse_dkim_uris_off(void **state)
{
	struct et *t = et_load("body PDS_OTHER_BAD_TLD eval:check_uri_host_listed('SUSP_URI_NTLD')\n"
	    "enlist_uri_host (SUSP_URI_NTLD) top\nutil_rb_tld com top\nparse_dkim_uris 0\n");
	static const char msg[] = "DKIM-Signature: v=1; a=rsa-sha256; d=shop.top; s=s1; b=x\n"
	    HDRS("a@example.org", "b@example.net", "hi") "\nhello\n";

	(void)state;
	et_scan(t, msg);
	assert_false(et_hit(t, "PDS_OTHER_BAD_TLD"));
	et_free(t);
	t = et_load("body PDS_OTHER_BAD_TLD eval:check_uri_host_listed('SUSP_URI_NTLD')\n"
	    "enlist_uri_host (SUSP_URI_NTLD) top\nutil_rb_tld com top\nparse_dkim_uris 0\n"
	    "parse_dkim_uris yes\n");
	et_scan(t, msg);
	assert_true(et_hit(t, "PDS_OTHER_BAD_TLD"));
	et_free(t);
}

static void test_eval_table(void **state)
{
	const struct eval_def *d, *prev = NULL;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; (d = eval_def_at(i)) != NULL; i++, n++) {
		if (prev && strcmp(prev->name, d->name) >= 0) {
			print_error("eval table not sorted at %s, %s\n", prev->name, d->name);
			fail();
		}
		assert_ptr_equal(eval_find(d->name), d);
		assert_true(d->min_args <= d->max_args && d->max_args <= EVAL_MAX_ARGS);
		prev = d;
	}
	assert_true(n > 100);
	assert_null(eval_find("check_no_such_thing"));
}

/* check_bayes: SA's (min, max] ranges over the classifier's verdict, score set 2 once the
 * classifier is available, nothing while it is off or abstains. */
static void test_check_bayes(void **state)
{
	static const char rules[] =
	    "body BAYES_00 eval:check_bayes('0.00', '0.01')\n"
	    "body BAYES_50 eval:check_bayes('0.40', '0.60')\n"
	    "body BAYES_99 eval:check_bayes('0.99', '1.00')\n"
	    "body BAYES_999 eval:check_bayes('0.999', '1.00')\n"
	    "body T_OPEN eval:check_bayes('0.5')\n"
	    "meta BAYES_META BAYES_99 && !BAYES_00\n"
	    "score BAYES_00 0 0 -1.5 -1.9\nscore BAYES_50 0 0 2.0 0.8\n"
	    "score BAYES_99 0 0 3.8 3.5\nscore BAYES_999 0 0 0.2 0.2\n"
	    "score T_OPEN 0 0 1 1\nscore BAYES_META 0 0 0.5 0.5\n";
	static const char msg[] = "From: a@example.org\nSubject: hi\n\nhello\n";
	struct et *t = et_load(rules);
	struct rules_result res;
	struct bayes_result br = { .available = true, .scanned = true, .prob = 0.9995 };

	(void)state;
	/* classifier off: set 0, where every BAYES rule scores 0 and does not run */
	assert_string_equal(et_scan(t, msg), ",");
	rules_scratch_set_bayes(t->sc, &br);
	assert_string_equal(et_scan(t, msg), ",BAYES_99,BAYES_999,T_OPEN,BAYES_META,");
	rules_set_scan(t->rs, t->sc, msg, strlen(msg), NULL, NULL, 0, &res);
	assert_true(res.score > 5.49 && res.score < 5.51);   /* 3.8 + 0.2 + 1 + 0.5 */
	for (size_t i = 0; i < res.n; i++)
		assert_true(res.v[i].classifier == (strncmp(res.v[i].name, "BAYES_9", 7) == 0 ||
		    strcmp(res.v[i].name, "T_OPEN") == 0));
	rules_result_free(&res);
	br.prob = 0.0;                        /* min 0 includes 0 */
	assert_string_equal(et_scan(t, msg), ",BAYES_00,");
	br.prob = 0.6;                        /* max included, min excluded */
	assert_string_equal(et_scan(t, msg), ",BAYES_50,T_OPEN,");
	/* a message over max_size: body rules are skipped, but the classifier's verdict was
	 * computed (it bounds its own work) and its rules, body rules by SA's syntax, read
	 * nothing else: they hit */
	br.prob = 0.9995;
	rules_set_scan(t->rs, t->sc, msg, strlen(msg), NULL, NULL, 8, &res);
	assert_true(res.body_skipped);
	assert_int_equal(res.n, 4);
	assert_true(res.score > 5.49 && res.score < 5.51);
	rules_result_free(&res);
	br.scanned = false;                   /* abstained: no BAYES rule, still set 2 */
	assert_string_equal(et_scan(t, msg), ",");
	rules_scratch_set_bayes(t->sc, NULL);
	et_free(t);
}

/* With the stock rules installed: no eval is missing (rules_set_missing_evals). */
static void test_stock_evals_implemented(void **state)
{
	const char *g[1] = { "/usr/share/spamassassin/*.cf" };
	struct rules_set *rs = NULL;

	(void)state;
	if (access("/usr/share/spamassassin/50_scores.cf", R_OK) != 0)
		skip();
	rules_set_load_mode(g, 1, &rs, NULL, RULES_PREFILTER_NONE);
	assert_non_null(rs);
	{
		const char *fn = NULL;
		size_t r = 0, m = 0, n = rules_set_missing_evals(rs, 0, &fn, &r, &m);

		if (n)
			print_error("%zu evals missing, first %s (%zu rules)\n", n, fn, r);
		assert_int_equal(n, 0);
	}
	rules_set_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_evals),
		cmocka_unit_test(test_parse_dkim_uris_off),
		cmocka_unit_test(test_from_rcvd_lists),
		cmocka_unit_test(test_eval_table),
		cmocka_unit_test(test_check_bayes),
		cmocka_unit_test(test_stock_evals_implemented),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
