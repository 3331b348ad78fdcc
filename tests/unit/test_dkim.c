/* test_dkim.c — the verifier against messages signed by dkimpy (tests/data/dkim, made by
 * make_fixtures.py): RSA relaxed and simple, Ed25519 (RFC 8463), l=, two signatures one
 * bad, x= expiry, tampered body / header, missing / revoked / small keys, key record
 * rules, signature field rules, the bounds (signatures, header fields), and a body fed one
 * byte at a time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "filters/dkim.h"
#include "dkim_fixture.h"

#define NOW 1800000000LL   /* after every fixture's t= */

/* The key record for a DNS name, as the fixtures publish them: selector "bad" carries
 * rsa2's key, "revoked" an empty p=, "missing" nothing. */
static void key_for_name(const char *name, const struct dkim_limits *lim, struct dkim_key *k)
{
	char file[64], *txt;
	size_t len;
	const char *dot = strchr(name, '.');

	memset(k, 0, sizeof(*k));
	if (strncmp(name, "missing.", 8) == 0) {
		dkim_key_set_error(k, DKIM_RESULT_PERMERROR, "no key");
		return;
	}
	if (strncmp(name, "revoked.", 8) == 0) {
		dkim_key_parse("v=DKIM1; p=", 11, lim, k);
		return;
	}
	snprintf(file, sizeof(file), "%.*s.txt", (int)(dot - name), name);
	if (strncmp(name, "bad.", 4) == 0)
		snprintf(file, sizeof(file), "rsa2.txt");
	txt = fixture_slurp(file, &len);
	dkim_key_parse(txt, len, lim, k);
	free(txt);
}

struct run {
	enum dkim_result r[8];
	const char *reason[8];
	char d[8][256];
	size_t n;
};

/* Verifies msg[0..len) with every signature's key from the fixtures; step > 0 feeds the
 * body in slices of that size. */
static void verify_buf(const char *msg, size_t len, const struct dkim_limits *lim, long long now,
    size_t step, struct run *out)
{
	struct dkim_msg *m = dkim_msg_new(lim);
	const char *sep = strstr(msg, "\r\n\r\n");
	size_t hl = sep ? (size_t)(sep - msg) + 4 : len;

	memset(out, 0, sizeof(*out));
	assert_non_null(m);
	assert_int_equal(dkim_msg_set_headers(m, msg, hl), 0);
	if (step == 0)
		dkim_msg_feed_body(m, msg + hl, len - hl);
	else
		for (size_t o = hl; o < len; o += step)
			dkim_msg_feed_body(m, msg + o, len - o < step ? len - o : step);
	dkim_msg_end_body(m);
	for (size_t i = 0; i < dkim_msg_nsigs(m) && out->n < 8; i++) {
		struct dkim_sig *s = dkim_msg_sig(m, i);
		struct dkim_key k;
		char name[300];

		if (s->kind != DKIM_SIG_DKIM)
			continue;
		if (s->result == DKIM_RESULT_NONE) {
			assert_int_equal(dkim_sig_key_name(s, name, sizeof(name)), 0);
			key_for_name(name, lim, &k);
			dkim_msg_verify(m, s, &k, now);
			dkim_key_clear(&k);
		}
		out->r[out->n] = s->result;
		out->reason[out->n] = s->reason;
		snprintf(out->d[out->n], sizeof(out->d[0]), "%s", s->d);
		out->n++;
	}
	dkim_msg_free(m);
}

static void verify_file(const char *file, long long now, struct run *out)
{
	struct dkim_limits lim;
	size_t len;
	char *msg = fixture_slurp(file, &len);

	dkim_limits_default(&lim);
	verify_buf(msg, len, &lim, now, 0, out);
	free(msg);
}

static void expect1(const char *label, const struct run *r, enum dkim_result want)
{
	if (r->n != 1)
		fail_msg("%s: %zu signatures", label, r->n);
	if (r->r[0] != want)
		fail_msg("%s: %s (%s), want %s", label, dkim_result_name(r->r[0]),
		    r->reason[0] ? r->reason[0] : "", dkim_result_name(want));
}

static void test_fixtures_pass(void **state)
{
	static const char *files[] = { "rsa-relaxed.eml", "rsa-simple.eml", "ed25519.eml", "length.eml" };
	struct run r;

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		verify_file(files[i], NOW, &r);
		expect1(files[i], &r, DKIM_RESULT_PASS);
		assert_string_equal(r.d[0], "example.org");
	}
}

static void test_body_fed_in_slices(void **state)
{
	struct dkim_limits lim;
	size_t len;
	char *msg = fixture_slurp("rsa-simple.eml", &len);
	struct run r;

	(void)state;
	dkim_limits_default(&lim);
	for (size_t step = 1; step <= 7; step += 3) {
		verify_buf(msg, len, &lim, NOW, step, &r);
		expect1("sliced body", &r, DKIM_RESULT_PASS);
	}
	free(msg);
}

static void test_tampering(void **state)
{
	static const struct { const char *label, *file, *from, *to; enum dkim_result want; const char *reason; } rows[] = {
		{ "body changed", "rsa-relaxed.eml", "Hello Bob", "Hello Eve", DKIM_RESULT_FAIL, "body hash did not verify" },
		{ "signed header changed", "rsa-relaxed.eml", "Subject:  A  test", "Subject:  A  fest", DKIM_RESULT_FAIL, "signature did not verify" },
		{ "relaxed survives re-spacing", "rsa-relaxed.eml", "Subject:  A  test", "Subject: A test", DKIM_RESULT_PASS, NULL },
		{ "simple does not", "rsa-simple.eml", "Subject:  A  test", "Subject: A test", DKIM_RESULT_FAIL, "signature did not verify" },
		{ "relaxed body survives trailing spaces", "rsa-relaxed.eml", "Hello Bob,  \r\n", "Hello Bob,\r\n", DKIM_RESULT_PASS, NULL },
		{ "ed25519 body changed", "ed25519.eml", "runs of spaces", "runs of places", DKIM_RESULT_FAIL, "body hash did not verify" },
		{ "unsigned header may change", "rsa-relaxed.eml", "Received: from client.example", "Received: from other.example", DKIM_RESULT_PASS, NULL },
		{ "l=: text appended to the body still passes", "length.eml", "\r\n\r\n\r\n", "\r\n\r\nAPPENDED by a list footer\r\n", DKIM_RESULT_PASS, NULL },
		{ "l=: text inside the counted part fails", "length.eml", "Hello Bob", "Hello Eve", DKIM_RESULT_FAIL, "body hash did not verify" },
		{ "added second From is caught", "rsa-relaxed.eml", "To: bob@example.net", "From: mallory@evil.example\r\nTo: bob@example.net", DKIM_RESULT_FAIL, "signature did not verify" },
		{ "revoked key", "rsa-relaxed.eml", "s=rsa;", "s=revoked;", DKIM_RESULT_PERMERROR, "key revoked" },
		{ "missing key", "rsa-relaxed.eml", "s=rsa;", "s=missing;", DKIM_RESULT_PERMERROR, "no key" },
		{ "key of another algorithm", "ed25519.eml", "s=ed;", "s=rsa;", DKIM_RESULT_PERMERROR, "key type does not match a=" },
		{ "rsa-sha1 refused", "rsa-relaxed.eml", "a=rsa-sha256", "a=rsa-sha1", DKIM_RESULT_PERMERROR, "rsa-sha1 not accepted (RFC 8301)" },
		{ "unknown algorithm", "rsa-relaxed.eml", "a=rsa-sha256", "a=rsa-md5", DKIM_RESULT_NEUTRAL, "unknown algorithm" },
		{ "wrong version", "rsa-relaxed.eml", "v=1;", "v=2;", DKIM_RESULT_NEUTRAL, "signature version" },
		{ "i= outside d=", "rsa-relaxed.eml", "i=@example.org", "i=@example.com", DKIM_RESULT_PERMERROR, "i= not within d=" },
		{ "q= other than dns/txt", "rsa-relaxed.eml", "q=dns/txt", "q=http", DKIM_RESULT_PERMERROR, "q= without dns/txt" },
		{ "broken tag list", "rsa-relaxed.eml", "q=dns/txt;", "q=dns/txt;;", DKIM_RESULT_NEUTRAL, "signature syntax" },
	};
	struct dkim_limits lim;
	struct run r;

	(void)state;
	dkim_limits_default(&lim);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len;
		char *orig = fixture_slurp(rows[i].file, &len);
		char *msg = fixture_edit(orig, rows[i].from, rows[i].to, &len);
		free(orig);

		verify_buf(msg, len, &lim, NOW, 0, &r);
		expect1(rows[i].label, &r, rows[i].want);
		if (rows[i].reason && (r.reason[0] == NULL || strcmp(r.reason[0], rows[i].reason) != 0))
			fail_msg("%s: reason \"%s\"", rows[i].label, r.reason[0] ? r.reason[0] : "(null)");
		free(msg);
	}
}

/* alg_known (the A-R's header.a): set only when a= names an algorithm of enum dkim_alg. */
static void test_alg_known(void **state)
{
	static const struct { const char *a; bool known; enum dkim_alg alg; } rows[] = {
		{ "a=rsa-sha256;", true, DKIM_ALG_RSA_SHA256 },
		{ "a=ed25519-sha256;", true, DKIM_ALG_ED25519_SHA256 },
		{ "a=rsa-sha1;", true, DKIM_ALG_RSA_SHA1 },
		{ "a=rsa-md5;", false, DKIM_ALG_RSA_SHA256 },
		{ "", false, DKIM_ALG_RSA_SHA256 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct dkim_sig sig;
		char v[256];

		snprintf(v, sizeof(v), "v=1; %s c=relaxed/relaxed; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA",
		    rows[i].a);
		dkim_sig_parse(DKIM_SIG_DKIM, v, strlen(v), &sig);
		if (sig.alg_known != rows[i].known || (rows[i].known && sig.alg != rows[i].alg))
			fail_msg("\"%s\": alg_known %d alg %d", rows[i].a, sig.alg_known, (int)sig.alg);
		dkim_sig_clear(&sig);
	}
}

static void test_two_signatures_one_bad(void **state)
{
	struct run r;

	(void)state;
	verify_file("two.eml", NOW, &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.r[0], DKIM_RESULT_FAIL);	/* selector "bad": another key */
	assert_int_equal(r.r[1], DKIM_RESULT_PASS);
}

static void test_expiry(void **state)
{
	struct run r;

	(void)state;
	/* t=1700000000 x=1700003600; clock skew 300 s */
	verify_file("expiring.eml", 1700000100, &r);
	expect1("inside the window", &r, DKIM_RESULT_PASS);
	verify_file("expiring.eml", 1700003600 + 299, &r);
	expect1("within the skew", &r, DKIM_RESULT_PASS);
	verify_file("expiring.eml", 1700003600 + 301, &r);
	expect1("expired", &r, DKIM_RESULT_PERMERROR);
	assert_string_equal(r.reason[0], "signature expired");
	verify_file("expiring.eml", 1700000000 - 400, &r);
	expect1("from the future", &r, DKIM_RESULT_PERMERROR);
}

static void test_limits(void **state)
{
	struct dkim_limits lim;
	size_t len;
	char *msg = fixture_slurp("two.eml", &len);
	struct dkim_msg *m;
	struct run r;

	(void)state;
	dkim_limits_default(&lim);
	lim.max_signatures = 1;
	m = dkim_msg_new(&lim);
	assert_int_equal(dkim_msg_set_headers(m, msg, (size_t)(strstr(msg, "\r\n\r\n") - msg) + 4), 0);
	assert_int_equal(dkim_msg_nsigs(m), 1);
	assert_int_equal(dkim_msg_sigs_skipped(m), 1);
	dkim_msg_free(m);
	/* more header fields than the bound: nothing can be verified */
	dkim_limits_default(&lim);
	lim.max_headers = 3;
	verify_buf(msg, len, &lim, NOW, 0, &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.r[1], DKIM_RESULT_PERMERROR);
	assert_string_equal(r.reason[1], "too many header fields");
	free(msg);
}

static void test_key_records(void **state)
{
	static const struct { const char *label, *txt; enum dkim_result want; const char *reason; } rows[] = {
		{ "revoked", "v=DKIM1; k=rsa; p=", DKIM_RESULT_PERMERROR, "key revoked" },
		{ "no p=", "v=DKIM1; k=rsa", DKIM_RESULT_PERMERROR, "key record without p=" },
		{ "v= not first", "k=rsa; v=DKIM1; p=AAAA", DKIM_RESULT_PERMERROR, "key record version" },
		{ "v= wrong", "v=DKIM2; p=AAAA", DKIM_RESULT_PERMERROR, "key record version" },
		{ "unknown k=", "v=DKIM1; k=dsa; p=AAAA", DKIM_RESULT_PERMERROR, "unknown key type" },
		{ "h= without sha256", "v=DKIM1; h=sha1; p=AAAA", DKIM_RESULT_PERMERROR, "key does not allow sha256" },
		{ "s= not email", "v=DKIM1; s=tlsrpt; p=AAAA", DKIM_RESULT_PERMERROR, "key not for email" },
		{ "p= not base64", "v=DKIM1; p=!!!!", DKIM_RESULT_PERMERROR, "key p= not base64" },
		{ "p= not a key", "v=DKIM1; p=AAAAAAAA", DKIM_RESULT_PERMERROR, "key p= not a public key" },
		{ "ed25519 wrong size", "v=DKIM1; k=ed25519; p=AAAAAAAA", DKIM_RESULT_PERMERROR, "ed25519 key size" },
		{ "syntax", "v=DKIM1; p", DKIM_RESULT_PERMERROR, "key record syntax" },
		{ "ed25519 ok", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", DKIM_RESULT_PASS, NULL },
	};
	struct dkim_limits lim;
	struct dkim_key k;
	size_t len;
	char *txt;

	(void)state;
	dkim_limits_default(&lim);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		dkim_key_parse(rows[i].txt, strlen(rows[i].txt), &lim, &k);
		if (k.result != rows[i].want || (rows[i].reason && strcmp(k.reason, rows[i].reason) != 0))
			fail_msg("%s: %s (%s)", rows[i].label, dkim_result_name(k.result), k.reason ? k.reason : "");
		dkim_key_clear(&k);
	}
	txt = fixture_slurp("small.txt", &len);
	assert_int_equal(dkim_key_parse(txt, len, &lim, &k), DKIM_RESULT_PERMERROR);
	assert_string_equal(k.reason, "key too small");
	dkim_key_clear(&k);
	free(txt);
	txt = fixture_slurp("rsa.txt", &len);
	assert_int_equal(dkim_key_parse(txt, len, &lim, &k), DKIM_RESULT_PASS);
	assert_int_equal(k.bits, 2048);
	assert_false(k.testing);
	dkim_key_clear(&k);
	lim.max_rsa_bits = 1024;
	assert_int_equal(dkim_key_parse(txt, len, &lim, &k), DKIM_RESULT_PERMERROR);
	assert_string_equal(k.reason, "key too large");
	dkim_key_clear(&k);
	free(txt);
	{
		const char *t = "v=DKIM1; t=y:s:x; s=email:*; h=sha1:sha256; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

		assert_int_equal(dkim_key_parse(t, strlen(t), &lim, &k), DKIM_RESULT_PASS);
		assert_true(k.testing);
		assert_true(k.strict);
		dkim_key_clear(&k);
	}
}

/* An RSA key of 16384 bits (max_key_bits allows it): its SubjectPublicKeyInfo is 2086
 * octets, more than the 2048 the parser decoded into, so it read "not base64". The modulus
 * need not be a real one to be parsed: 2^16383 + an odd tail. */
static void test_key_16384(void **state)
{
	static const unsigned char pre[] = {
		0x30, 0x82, 0x08, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
		0x01, 0x01, 0x01, 0x05, 0x00, 0x03, 0x82, 0x08, 0x0f, 0x00, 0x30, 0x82, 0x08, 0x0a,
		0x02, 0x82, 0x08, 0x01, 0x00,
	};
	static const unsigned char post[] = { 0x02, 0x03, 0x01, 0x00, 0x01 };
	unsigned char der[sizeof(pre) + 2048 + sizeof(post)];
	char txt[32 + 4 * (sizeof(der) + 2) / 3];
	struct dkim_limits lim;
	struct dkim_key k;
	int n;

	(void)state;
	memset(der, 0, sizeof(der));
	memcpy(der, pre, sizeof(pre));
	der[sizeof(pre)] = 0x80;
	der[sizeof(pre) + 2047] = 0x11;
	memcpy(der + sizeof(pre) + 2048, post, sizeof(post));
	n = snprintf(txt, sizeof(txt), "v=DKIM1; k=rsa; p=");
	EVP_EncodeBlock((unsigned char *)txt + n, der, (int)sizeof(der));
	dkim_limits_default(&lim);
	lim.max_rsa_bits = 16384;
	assert_int_equal(dkim_key_parse(txt, strlen(txt), &lim, &k), DKIM_RESULT_PASS);
	assert_int_equal(k.bits, 16384);
	dkim_key_clear(&k);
	lim.max_rsa_bits = 8192;
	assert_int_equal(dkim_key_parse(txt, strlen(txt), &lim, &k), DKIM_RESULT_PERMERROR);
	assert_string_equal(k.reason, "key too large");
	dkim_key_clear(&k);
}

static void test_misc(void **state)
{
	struct dkim_sig s;
	char name[300];
	const char *v = " v=1; a=ed25519-sha256; c=relaxed; d=Example.ORG.; s=sel; h=from; "
	    "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==; l=10; t=5; x=9";

	(void)state;
	dkim_sig_parse(DKIM_SIG_DKIM, v, strlen(v), &s);
	assert_int_equal(s.result, DKIM_RESULT_NONE);
	assert_string_equal(s.d, "example.org");
	assert_int_equal(s.hcanon, DKIM_CANON_RELAXED);
	assert_int_equal(s.bcanon, DKIM_CANON_SIMPLE);	/* c=relaxed alone: body simple */
	assert_true(s.has_l && s.l == 10);
	assert_string_equal(s.b_prefix, "dGVzdA==");
	assert_int_equal(dkim_sig_key_name(&s, name, sizeof(name)), 0);
	assert_string_equal(name, "sel._domainkey.example.org");
	dkim_sig_clear(&s);
	v = "v=1; a=rsa-sha256; d=example.org; s=sel; h=to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==";
	dkim_sig_parse(DKIM_SIG_DKIM, v, strlen(v), &s);
	assert_int_equal(s.result, DKIM_RESULT_PERMERROR);
	assert_string_equal(s.reason, "From not signed");
	dkim_sig_clear(&s);
	v = "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==; t=10; x=9";
	dkim_sig_parse(DKIM_SIG_DKIM, v, strlen(v), &s);
	assert_int_equal(s.result, DKIM_RESULT_PERMERROR);
	assert_string_equal(s.reason, "x= before t=");
	dkim_sig_clear(&s);
	assert_true(dkim_domain_within("mail.example.org", "example.org"));
	assert_true(dkim_domain_within("EXAMPLE.org", "example.ORG"));
	assert_false(dkim_domain_within("badexample.org", "example.org"));
	assert_false(dkim_domain_within("org", "example.org"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_pass),
		cmocka_unit_test(test_body_fed_in_slices),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_alg_known),
		cmocka_unit_test(test_two_signatures_one_bad),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_key_records),
		cmocka_unit_test(test_key_16384),
		cmocka_unit_test(test_misc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
