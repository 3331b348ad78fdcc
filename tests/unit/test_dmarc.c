/* test_dmarc.c — DMARC (RFC 7489): record parsing, organisational domains from Debian's
 * Public Suffix List (libpsl), relaxed / strict alignment, the From: domain, and the
 * decision: DKIM- or SPF-only alignment, no record, the organisational domain's record
 * with sp=, several records, DNS failure, pct sampling. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/dmarc.h"

static void test_record_parse(void **state)
{
	static const struct { const char *label, *txt; int rc; enum dmarc_policy p, sp; int pct; bool as, ds; } rows[] = {
		{ "minimal", "v=DMARC1; p=reject", DMARC_REC_OK, DMARC_POLICY_REJECT, DMARC_POLICY_UNSET, 100, false, false },
		{ "everything", "v=DMARC1;p=quarantine;sp=none;pct=25;adkim=s;aspf=s;rua=mailto:a@example.org",
		  DMARC_REC_OK, DMARC_POLICY_QUARANTINE, DMARC_POLICY_NONE, 25, true, true },
		{ "case-insensitive names and words", "v=DMARC1; P=Reject; SP=Quarantine", DMARC_REC_OK,
		  DMARC_POLICY_REJECT, DMARC_POLICY_QUARANTINE, 100, false, false },
		{ "not DMARC", "v=spf1 -all", DMARC_REC_NOT_DMARC, 0, 0, 100, false, false },
		{ "version not first", "p=reject; v=DMARC1", DMARC_REC_NOT_DMARC, 0, 0, 100, false, false },
		{ "version is exact", "v=dmarc1; p=reject", DMARC_REC_NOT_DMARC, 0, 0, 100, false, false },
		{ "no p, no rua: unusable", "v=DMARC1; sp=reject", DMARC_REC_INVALID, 0, 0, 100, false, false },
		{ "bad p with rua: p=none", "v=DMARC1; p=bogus; rua=mailto:x@example.org", DMARC_REC_OK,
		  DMARC_POLICY_NONE, DMARC_POLICY_UNSET, 100, false, false },
		{ "pct out of range ignored", "v=DMARC1; p=reject; pct=150", DMARC_REC_OK, DMARC_POLICY_REJECT,
		  DMARC_POLICY_UNSET, 100, false, false },
		{ "pct 0", "v=DMARC1; p=reject; pct=0", DMARC_REC_OK, DMARC_POLICY_REJECT, DMARC_POLICY_UNSET, 0, false, false },
		{ "unknown tags ignored", "v=DMARC1; p=none; foo=bar; fo=1", DMARC_REC_OK, DMARC_POLICY_NONE,
		  DMARC_POLICY_UNSET, 100, false, false },
		{ "broken list", "v=DMARC1; p=reject;; x", DMARC_REC_INVALID, 0, 0, 100, false, false },
	};
	struct dmarc_record r;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = dmarc_record_parse(rows[i].txt, strlen(rows[i].txt), &r);

		if (rc != rows[i].rc)
			fail_msg("%s: rc %d", rows[i].label, rc);
		if (rc != DMARC_REC_OK)
			continue;
		if (r.p != rows[i].p || r.sp != rows[i].sp || r.pct != rows[i].pct ||
		    r.aspf_strict != rows[i].as || r.adkim_strict != rows[i].ds)
			fail_msg("%s: p=%s sp=%s pct=%d", rows[i].label, dmarc_policy_name(r.p),
			    dmarc_policy_name(r.sp), r.pct);
	}
}

static void test_org_domain(void **state)
{
	static const struct { const char *in, *want; } rows[] = {
		{ "example.org", "example.org" },
		{ "mail.example.org", "example.org" },
		{ "a.b.c.example.co.uk", "example.co.uk" },
		{ "Example.CO.UK.", "example.co.uk" },
		{ "co.uk", "co.uk" },                 /* a public suffix stands for itself */
		{ "foo.github.io", "foo.github.io" }, /* private-section suffix */
		{ "x.test", "x.test" },
	};
	char out[256];

	(void)state;
	assert_int_equal(dmarc_psl_load(NULL), 0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		assert_int_equal(dmarc_org_domain(rows[i].in, out, sizeof(out)), 0);
		if (strcmp(out, rows[i].want) != 0)
			fail_msg("%s -> %s, want %s", rows[i].in, out, rows[i].want);
	}
	assert_true(dmarc_aligned("mail.example.org", "example.org", false));
	assert_false(dmarc_aligned("mail.example.org", "example.org", true));
	assert_true(dmarc_aligned("EXAMPLE.org", "example.ORG", true));
	assert_false(dmarc_aligned("a.co.uk", "b.co.uk", false));
	assert_false(dmarc_aligned("", "example.org", false));
}

static void test_from_domain(void **state)
{
	static const struct { const char *label, *in; int rc; const char *want; } rows[] = {
		{ "bare address", "alice@example.org", 0, "example.org" },
		{ "display name", " Alice Example <alice@Example.ORG>", 0, "example.org" },
		{ "quoted display name with @ and <>", " \"Bob <bob@evil.example>\" <bob@example.org>", 0, "example.org" },
		{ "comment", "alice@example.org (Alice, at example.com)", 0, "example.org" },
		{ "folded", "Alice\r\n <alice@example.org>", 0, "example.org" },
		{ "two in one domain", "a@example.org, b@example.org", 0, "example.org" },
		{ "two domains", "a@example.org, b@example.com", -2, NULL },
		{ "group", "friends: a@example.org, b@example.org;", 0, "example.org" },
		{ "no address", "undisclosed", -1, NULL },
		{ "empty", "", -1, NULL },
		{ "domain literal", "a@[192.0.2.1]", -1, NULL },
		{ "trailing dot", "a@example.org.", 0, "example.org" },
		{ "quoted local part with @", "\"a@b\"@example.org", 0, "example.org" },
		/* RFC 8616 5: a UTF-8 (SMTPUTF8) From domain is looked up by its A-labels */
		{ "IDN U-label", "A <a@b\xc3\xbc" "cher.example>", 0, "xn--bcher-kva.example" },
		{ "IDN U-label, upper case", "a@B\xc3\x9c" "CHER.Example", 0, "xn--bcher-kva.example" },
		{ "U-label and A-label: one domain", "a@b\xc3\xbc" "cher.example, b@XN--BCHER-KVA.example", 0,
		  "xn--bcher-kva.example" },
		{ "not UTF-8", "a@b\xfc" "cher.example", -1, NULL },
		/* U+037E (Greek question mark) is ';' after NFC: no host name (fuzz_dmarc, CI) */
		{ "U-label normalised to a non-LDH octet", "@t\xcd\xbe.rg", -1, NULL },
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = dmarc_from_domain(rows[i].in, strlen(rows[i].in), out, sizeof(out));

		if (rc != rows[i].rc)
			fail_msg("%s: rc %d", rows[i].label, rc);
		if (rc == 0 && strcmp(out, rows[i].want) != 0)
			fail_msg("%s: %s", rows[i].label, out);
	}
}

static void test_evaluate(void **state)
{
	static const char *rej[] = { "v=DMARC1; p=reject" };
	static const char *rej_strict[] = { "v=DMARC1; p=reject; adkim=s; aspf=s" };
	static const char *org_sp[] = { "v=DMARC1; p=reject; sp=quarantine" };
	static const char *two[] = { "v=DMARC1; p=reject", "v=DMARC1; p=none" };
	static const char *pct[] = { "v=DMARC1; p=reject; pct=30" };
	static const char *other[] = { "v=spf1 -all", "hello" };
	static const char *dk_sub[] = { "mail.example.org" };
	static const char *dk_other[] = { "example.com" };
	static const struct {
		const char *label, *from;
		enum dmarc_dns st_from; const char *const *txt_from; size_t n_from;
		enum dmarc_dns st_org; const char *const *txt_org; size_t n_org;
		const char *const *dkim; size_t ndkim; const char *spf; int roll;
		enum dmarc_result want; enum dmarc_policy policy, disp;
	} rows[] = {
		{ "DKIM aligned (relaxed, subdomain d=)", "example.org", DMARC_DNS_RECORDS, rej, 1, DMARC_DNS_NONE, NULL, 0,
		  dk_sub, 1, NULL, 0, DMARC_RESULT_PASS, DMARC_POLICY_REJECT, DMARC_POLICY_NONE },
		{ "DKIM not aligned under adkim=s", "example.org", DMARC_DNS_RECORDS, rej_strict, 1, DMARC_DNS_NONE, NULL, 0,
		  dk_sub, 1, NULL, 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT },
		{ "SPF-only alignment passes", "example.org", DMARC_DNS_RECORDS, rej, 1, DMARC_DNS_NONE, NULL, 0,
		  dk_other, 1, "bounces.example.org", 0, DMARC_RESULT_PASS, DMARC_POLICY_REJECT, DMARC_POLICY_NONE },
		{ "nothing aligned: reject", "example.org", DMARC_DNS_RECORDS, rej, 1, DMARC_DNS_NONE, NULL, 0,
		  dk_other, 1, "example.com", 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT },
		{ "no record anywhere", "example.org", DMARC_DNS_NONE, NULL, 0, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSET, DMARC_POLICY_UNSET },
		{ "only non-DMARC TXT", "example.org", DMARC_DNS_RECORDS, other, 2, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSET, DMARC_POLICY_UNSET },
		{ "subdomain takes the org's sp=", "news.example.org", DMARC_DNS_NONE, NULL, 0, DMARC_DNS_RECORDS, org_sp, 1,
		  NULL, 0, NULL, 0, DMARC_RESULT_FAIL, DMARC_POLICY_QUARANTINE, DMARC_POLICY_QUARANTINE },
		{ "the org itself takes p=", "example.org", DMARC_DNS_RECORDS, org_sp, 1, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT },
		{ "several records: no policy", "example.org", DMARC_DNS_RECORDS, two, 2, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_NONE, DMARC_POLICY_UNSET, DMARC_POLICY_UNSET },
		{ "DNS failure", "example.org", DMARC_DNS_TEMPFAIL, NULL, 0, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_TEMPERROR, DMARC_POLICY_UNSET, DMARC_POLICY_UNSET },
		{ "DNS failure at the org", "news.example.org", DMARC_DNS_NONE, NULL, 0, DMARC_DNS_TEMPFAIL, NULL, 0,
		  NULL, 0, NULL, 0, DMARC_RESULT_TEMPERROR, DMARC_POLICY_UNSET, DMARC_POLICY_UNSET },
		{ "pct=30, roll 29: sampled", "example.org", DMARC_DNS_RECORDS, pct, 1, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 29, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT },
		{ "pct=30, roll 30: one step milder", "example.org", DMARC_DNS_RECORDS, pct, 1, DMARC_DNS_NONE, NULL, 0,
		  NULL, 0, NULL, 30, DMARC_RESULT_FAIL, DMARC_POLICY_REJECT, DMARC_POLICY_QUARANTINE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct dmarc_input in;
		struct dmarc_outcome out;
		char org[256];

		memset(&in, 0, sizeof(in));
		assert_int_equal(dmarc_org_domain(rows[i].from, org, sizeof(org)), 0);
		in.from_domain = rows[i].from;
		in.org_domain = org;
		in.at_from.status = rows[i].st_from;
		in.at_from.txt = rows[i].txt_from;
		in.at_from.n = rows[i].n_from;
		in.at_org.status = rows[i].st_org;
		in.at_org.txt = rows[i].txt_org;
		in.at_org.n = rows[i].n_org;
		in.dkim_pass = rows[i].dkim;
		in.ndkim_pass = rows[i].ndkim;
		in.spf_domain = rows[i].spf;
		in.roll = rows[i].roll;
		dmarc_evaluate(&in, &out);
		if (out.result != rows[i].want || out.policy != rows[i].policy || out.disposition != rows[i].disp)
			fail_msg("%s: %s policy=%s disposition=%s (%s)", rows[i].label, dmarc_result_name(out.result),
			    dmarc_policy_name(out.policy), dmarc_policy_name(out.disposition),
			    out.reason ? out.reason : "");
	}
}

static void test_evaluate_details(void **state)
{
	static const char *rej[] = { "v=DMARC1; p=reject" };
	struct dmarc_input in;
	struct dmarc_outcome out;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.from_domain = "news.example.org";
	in.org_domain = "example.org";
	in.at_from.status = DMARC_DNS_NONE;
	in.at_org.status = DMARC_DNS_RECORDS;
	in.at_org.txt = rej;
	in.at_org.n = 1;
	in.spf_domain = "example.org";
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.result, DMARC_RESULT_PASS);
	assert_true(out.spf_aligned);
	assert_false(out.dkim_aligned);
	assert_string_equal(out.aligned_domain, "example.org");
	assert_string_equal(out.policy_domain, "example.org");
	assert_int_equal(out.policy, DMARC_POLICY_REJECT);	/* no sp=: p= covers subdomains */
	/* nothing aligned passed, but an aligned check failed for now: temperror, not fail */
	in.spf_domain = NULL;
	in.aligned_temperror = true;
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.result, DMARC_RESULT_TEMPERROR);
	/* with the disposition a failure would get: the caller defers where it would refuse */
	assert_int_equal(out.policy, DMARC_POLICY_REJECT);
	assert_int_equal(out.disposition, DMARC_POLICY_REJECT);
	in.from_domain = "";
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.result, DMARC_RESULT_PERMERROR);
}

/* RFC 9091: np= for a From domain that does not exist, found at the organisational domain */
static void test_np(void **state)
{
	static const char *org[] = { "v=DMARC1; p=reject; sp=none; np=quarantine" };
	struct dmarc_record r;
	struct dmarc_input in;
	struct dmarc_outcome out;

	(void)state;
	assert_int_equal(dmarc_record_parse(org[0], strlen(org[0]), &r), DMARC_REC_OK);
	assert_int_equal(r.np, DMARC_POLICY_QUARANTINE);
	memset(&in, 0, sizeof(in));
	in.from_domain = "ghost.example.org";
	in.org_domain = "example.org";
	in.at_from.status = DMARC_DNS_NONE;
	in.at_org.status = DMARC_DNS_RECORDS;
	in.at_org.txt = org;
	in.at_org.n = 1;
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.policy, DMARC_POLICY_NONE);	/* exists (or not known not to): sp= */
	in.from_nonexistent = true;
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.result, DMARC_RESULT_FAIL);
	assert_int_equal(out.policy, DMARC_POLICY_QUARANTINE);
	assert_int_equal(out.disposition, DMARC_POLICY_QUARANTINE);
	/* the From domain's own record: np= is not for it */
	in.at_from = in.at_org;
	dmarc_evaluate(&in, &out);
	assert_int_equal(out.policy, DMARC_POLICY_REJECT);
}

/* RFC 7489 6.6.1: every distinct usable domain of a From field, for a check of each */
static void test_from_domains(void **state)
{
	char doms[3][256];
	size_t n = 0;
	const char *v;

	(void)state;
	v = "Boss <boss@Rej.Example>, \"x@fake.example\" <eve@other.example>, undisclosed, b@rej.example";
	assert_int_equal(dmarc_from_domains(v, strlen(v), doms, 3, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(doms[0], "rej.example");
	assert_string_equal(doms[1], "other.example");
	v = "c@third.example, d@other.example";	/* a second field: appended, deduplicated */
	assert_int_equal(dmarc_from_domains(v, strlen(v), doms, 3, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(doms[2], "third.example");
	v = "e@fourth.example";
	assert_int_equal(dmarc_from_domains(v, strlen(v), doms, 3, &n), -1);
	assert_int_equal(n, 3);
	n = 0;
	v = "undisclosed-recipients:;";
	assert_int_equal(dmarc_from_domains(v, strlen(v), doms, 3, &n), 0);
	assert_int_equal(n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_parse),
		cmocka_unit_test(test_from_domains),
		cmocka_unit_test(test_np),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test(test_evaluate),
		cmocka_unit_test(test_evaluate_details),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
