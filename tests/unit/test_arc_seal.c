/* test_arc_seal.c — the ARC sealer (filters/arc_seal.c) over the dkimpy fixtures of
 * tests/data/dkim, each set checked with mxgate's own verifier (dkim.c / arc.c): i=1 cv=none
 * on an unsealed message, i=3 cv=pass on dkimpy's passing two-hop chain (every older seal and
 * signature still verifying), i=3 cv=fail sealing only its own set, no set after a chain that
 * ended with cv=fail or at the instance bounds, repeated fields in h= taken bottom up, the
 * arc= result read from an Authentication-Results value, and the key checks. The
 * independent check (dkimpy's arc_verify) is tests/integration/test_arc_seal.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/arc.h"
#include "filters/arc_seal.h"
#include "filters/dkim.h"
#include "proxy/headers.h"
#include "dkim_fixture.h"

#define NOW 1800000000LL
#define AR_PASS "mx.example.com; spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org; " \
	"arc=pass (i=2, sealed by example.net) header.oldest-pass=0 smtp.remote-ip=192.0.2.1"
#define AR_NONE "mx.example.com; spf=pass smtp.mailfrom=example.org; arc=none"
#define AR_FAIL "mx.example.com; spf=pass smtp.mailfrom=example.org; arc=fail (ARC-Seal did not verify)"

struct keys { struct dkim_key rsa, rsa2; };

static const struct dkim_key *key_cb(void *arg, const struct dkim_sig *sig)
{
	struct keys *k = arg;

	return strcmp(sig->s, "rsa2") == 0 ? &k->rsa2 : &k->rsa;
}

static char *fixture_path(const char *name)
{
	const char *dir = getenv("MX_SOURCE_DIR");
	char *p = malloc(1024);

	assert_non_null(p);
	snprintf(p, 1024, "%s/tests/data/dkim/%s", dir ? dir : MX_SOURCE_DIR, name);
	return p;
}

static void load_seal_key(struct arc_seal_key *k)
{
	char *path = fixture_path("rsa.private"), buf[256];
	const char *why = NULL;

	assert_int_equal(arc_seal_key_load(path, k, buf, sizeof(buf), &why), 0);
	assert_int_equal(k->bits, 2048);
	free(path);
}

static char *default_headers[] = { "from", "sender", "reply-to", "subject", "date", "message-id",
	"to", "cc", "mime-version", "content-type", "content-transfer-encoding", "in-reply-to",
	"references", "list-id" };

/* The body hash seal() hands to arc_seal_build (params.body_hash), or NULL. */
static const unsigned char *seal_body_hash;

/* Seals msg (header block up to the blank line, body after) with ar; returns the sealed
 * message (caller frees) or NULL when no set was added; *res says why. */
static char *seal(const char *msg, size_t len, const char *ar, struct arc_seal_result *res,
    char **headers, size_t nheaders)
{
	struct arc_seal_key k;
	struct arc_seal_params p;
	struct strbuf out = { 0 };
	const char *sep = strstr(msg, "\r\n\r\n");
	size_t hl = (size_t)(sep - msg) + 4;

	load_seal_key(&k);
	memset(&p, 0, sizeof(p));
	p.domain = "example.com";
	p.selector = "rsa";
	p.pkey = k.pkey;
	p.headers = headers ? headers : default_headers;
	p.nheaders = headers ? nheaders : sizeof(default_headers) / sizeof(default_headers[0]);
	p.max_instances = 16;
	p.now = NOW;
	p.body_hash = seal_body_hash;
	arc_seal_build(&p, ar, strlen(ar), msg, hl, msg + hl, len - hl, &out, res);
	arc_seal_key_free(&k);
	if (res->status != ARC_SEAL_SEALED) {
		assert_int_equal(out.len, 0);
		strbuf_free(&out);
		return NULL;
	}
	strbuf_append(&out, msg, len);
	return out.v;
}

/* mxgate's verifier over msg: the chain's result, *c filled. */
static enum arc_result verify(const char *msg, struct arc_chain *c)
{
	struct dkim_limits lim;
	struct keys k;
	struct dkim_msg *m;
	const char *sep = strstr(msg, "\r\n\r\n");
	size_t hl = (size_t)(sep - msg) + 4, len = strlen(msg), tl;
	char *t;

	dkim_limits_default(&lim);
	t = fixture_slurp("rsa.txt", &tl);
	assert_int_equal(dkim_key_parse(t, tl, &lim, &k.rsa), DKIM_RESULT_PASS);
	free(t);
	t = fixture_slurp("rsa2.txt", &tl);
	assert_int_equal(dkim_key_parse(t, tl, &lim, &k.rsa2), DKIM_RESULT_PASS);
	free(t);
	m = dkim_msg_new(&lim);
	assert_int_equal(dkim_msg_set_headers(m, msg, hl), 0);
	dkim_msg_feed_body(m, msg + hl, len - hl);
	dkim_msg_end_body(m);
	arc_chain_plan(m, c);
	arc_chain_finish(m, c, key_cb, &k, NOW);
	dkim_msg_free(m);
	dkim_key_clear(&k.rsa);
	dkim_key_clear(&k.rsa2);
	return c->result;
}

static void test_seal_first(void **state)
{
	size_t len;
	char *msg = fixture_slurp("base.eml", &len), *out;
	struct arc_seal_result res;
	struct arc_chain c;

	(void)state;
	out = seal(msg, len, AR_NONE, &res, NULL, 0);
	assert_non_null(out);
	assert_int_equal(res.instance, 1);
	assert_string_equal(res.cv, "none");
	assert_true(strncmp(out, "ARC-Seal: i=1; a=rsa-sha256; t=1800000000; cv=none;", 51) == 0);
	assert_non_null(strstr(out, "\r\nARC-Authentication-Results: i=1; mx.example.com; spf=pass"));
	assert_non_null(strstr(out, "c=relaxed/relaxed; d=example.com;"));
	assert_int_equal(verify(out, &c), ARC_RESULT_PASS);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.sealer, "example.com");
	free(out);
	free(msg);
}

static void test_seal_on_passing_chain(void **state)
{
	size_t len;
	char *msg = fixture_slurp("arc2.eml", &len), *out;
	struct arc_seal_result res;
	struct arc_chain c;

	(void)state;
	out = seal(msg, len, AR_PASS, &res, NULL, 0);
	assert_non_null(out);
	assert_int_equal(res.instance, 3);
	assert_string_equal(res.cv, "pass");
	assert_int_equal(verify(out, &c), ARC_RESULT_PASS);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.oldest_pass, 0);
	assert_string_equal(c.sealer, "example.com");
	free(out);
	free(msg);
}

/* The chain failed here: cv=fail, the seal over this set only; a verifier sees the chain
 * end (newest seal cv=fail), and the seal and signature themselves verify. */
static void test_seal_on_failed_chain(void **state)
{
	size_t len, tl;
	char *msg = fixture_slurp("arc2.eml", &len), *out, *t;
	struct arc_seal_result res;
	struct arc_chain c;
	struct dkim_limits lim;
	struct dkim_key key;
	struct dkim_msg *m;
	size_t fields[2], hl;

	(void)state;
	out = seal(msg, len, AR_FAIL, &res, NULL, 0);
	assert_non_null(out);
	assert_int_equal(res.instance, 3);
	assert_string_equal(res.cv, "fail");
	assert_int_equal(verify(out, &c), ARC_RESULT_FAIL);
	assert_string_equal(c.reason, "newest seal has cv=fail");
	/* the new set: fields 0 (AS), 1 (AMS), 2 (AAR) */
	dkim_limits_default(&lim);
	t = fixture_slurp("rsa.txt", &tl);
	assert_int_equal(dkim_key_parse(t, tl, &lim, &key), DKIM_RESULT_PASS);
	free(t);
	m = dkim_msg_new(&lim);
	hl = (size_t)(strstr(out, "\r\n\r\n") - out) + 4;
	assert_int_equal(dkim_msg_set_headers(m, out, hl), 0);
	dkim_msg_feed_body(m, out + hl, strlen(out) - hl);
	dkim_msg_end_body(m);
	for (size_t i = 0; i < dkim_msg_nsigs(m); i++) {
		struct dkim_sig *s = dkim_msg_sig(m, i);

		if (s->instance != 3)
			continue;
		if (s->kind == DKIM_SIG_ARC_MS) {
			assert_int_equal(dkim_msg_verify(m, s, &key, NOW), DKIM_RESULT_PASS);
		} else {
			fields[0] = 2;
			fields[1] = 1;
			assert_int_equal(s->cv, DKIM_CV_FAIL);
			assert_int_equal(dkim_msg_verify_seal(m, s, &key, fields, 2, NOW), DKIM_RESULT_PASS);
		}
	}
	dkim_msg_free(m);
	dkim_key_clear(&key);
	free(out);
	free(msg);
}

/* A chain that already ended (newest cv=fail) gets no set; nor a message without an arc
 * result, nor one whose chain is at the bounds. */
static void test_no_seal(void **state)
{
	size_t len, l2;
	char *msg = fixture_slurp("arc2.eml", &len), *ended, *out;
	struct arc_seal_result res;

	(void)state;
	ended = fixture_edit(msg, "ARC-Seal: i=2; cv=pass;", "ARC-Seal: i=2; cv=fail;", &l2);
	out = seal(ended, l2, AR_FAIL, &res, NULL, 0);
	assert_null(out);
	assert_int_equal(res.status, ARC_SEAL_SKIPPED);
	assert_string_equal(res.why, "the chain already ended with cv=fail");
	out = seal(msg, len, "mx.example.com; spf=pass smtp.mailfrom=example.org", &res, NULL, 0);
	assert_null(out);
	assert_int_equal(res.status, ARC_SEAL_SKIPPED);
	free(ended);
	ended = fixture_edit(msg, "ARC-Seal: i=2;", "ARC-Seal: i=50;", &l2);
	out = seal(ended, l2, AR_FAIL, &res, NULL, 0);
	assert_null(out);
	assert_string_equal(res.why, "the chain has 50 instances");
	free(ended);
	ended = fixture_edit(msg, "ARC-Seal: i=2;", "ARC-Seal: i=17;", &l2);
	out = seal(ended, l2, AR_FAIL, &res, NULL, 0);
	assert_null(out);
	assert_string_equal(res.why, "the chain is longer than arc.max_instances");
	free(ended);
	free(msg);
}

/* Repeated fields: h= names each occurrence, the verifier takes them bottom up; a field
 * added above later (a second Subject on top) breaks the signature only if it is signed. */
static void test_repeated_fields(void **state)
{
	size_t len, l2;
	char *msg = fixture_slurp("base.eml", &len), *two, *out, *hv;
	char *names[] = { "from", "subject", "received" };
	struct arc_seal_result res;
	struct arc_chain c;

	(void)state;
	two = fixture_edit(msg, "Subject:", "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "Received: from c by d; Mon, 1 Jan 2024 00:00:01 +0000\r\nSubject:", &l2);
	out = seal(two, l2, AR_NONE, &res, names, 3);
	assert_non_null(out);
	hv = strstr(out, " h=");
	assert_non_null(hv);
	if (strncmp(hv, " h=from:subject:received:received:received;", 43) != 0)
		fail_msg("h= is %.60s", hv);
	assert_int_equal(verify(out, &c), ARC_RESULT_PASS);
	free(out);
	free(two);
	free(msg);
}

static void test_ar_result(void **state)
{
	(void)state;
	assert_string_equal(arc_seal_ar_result(AR_PASS, strlen(AR_PASS)), "pass");
	assert_string_equal(arc_seal_ar_result(AR_NONE, strlen(AR_NONE)), "none");
	assert_string_equal(arc_seal_ar_result(AR_FAIL, strlen(AR_FAIL)), "fail");
	assert_string_equal(arc_seal_ar_result("h; arc = temperror", 18), "fail");
	assert_string_equal(arc_seal_ar_result("h; ARC=Pass", 11), "pass");
	assert_null(arc_seal_ar_result("h; spf=pass (; arc=pass)", 24));
	assert_null(arc_seal_ar_result("h; spf=pass x=\"; arc=pass\"", 26));
	assert_null(arc_seal_ar_result("h; arcx=pass", 12));
	assert_null(arc_seal_ar_result("arc=pass", 8));	/* the authserv-id, not a method */
	assert_null(arc_seal_ar_result("h; (((((", 8));
	assert_null(arc_seal_ar_result("", 0));
}

/* The verifier's relaxed body hash (dkim_msg_body_hash, what senderauth hands over in
 * env->body_hash) makes the very set the sealer makes by hashing the body itself; a hash
 * that is not the body's shows in bh= and the chain fails: the sealer takes it as given. */
static void test_shared_body_hash(void **state)
{
	struct dkim_limits lim;
	struct dkim_msg *m;
	struct arc_seal_result res;
	struct arc_chain c;
	unsigned char bh[32], zero[32] = { 0 };
	size_t len, hl;
	char *msg = fixture_slurp("rsa-relaxed.eml", &len), *own, *shared, *wrong;

	(void)state;
	hl = (size_t)(strstr(msg, "\r\n\r\n") - msg) + 4;
	dkim_limits_default(&lim);
	m = dkim_msg_new(&lim);
	assert_int_equal(dkim_msg_set_headers(m, msg, hl), 0);
	assert_false(dkim_msg_body_hash(m, DKIM_CANON_RELAXED, bh));	/* not before the end */
	dkim_msg_feed_body(m, msg + hl, len - hl);
	dkim_msg_end_body(m);
	assert_true(dkim_msg_body_hash(m, DKIM_CANON_RELAXED, bh));
	assert_false(dkim_msg_body_hash(m, DKIM_CANON_SIMPLE, zero));	/* no simple signature */
	dkim_msg_free(m);

	seal_body_hash = NULL;
	own = seal(msg, len, AR_NONE, &res, NULL, 0);
	assert_non_null(own);
	assert_false(res.body_hash_shared);
	seal_body_hash = bh;
	shared = seal(msg, len, AR_NONE, &res, NULL, 0);
	assert_non_null(shared);
	assert_true(res.body_hash_shared);
	assert_string_equal(own, shared);	/* RSA PKCS#1 v1.5 is deterministic */
	assert_int_equal(verify(shared, &c), ARC_RESULT_PASS);
	memset(zero, 0, sizeof(zero));
	seal_body_hash = zero;
	wrong = seal(msg, len, AR_NONE, &res, NULL, 0);
	seal_body_hash = NULL;
	assert_non_null(wrong);
	assert_non_null(strstr(wrong, "bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
	assert_int_equal(verify(wrong, &c), ARC_RESULT_FAIL);
	free(own);
	free(shared);
	free(wrong);
	free(msg);
}

/* l= or no relaxed signature: no whole-body relaxed hash to hand over. */
static void test_no_body_hash_to_share(void **state)
{
	static const char *const names[] = { "length.eml", "rsa-simple.eml", "base.eml" };
	unsigned char bh[32];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct dkim_limits lim;
		struct dkim_msg *m;
		size_t len, hl;
		char *msg = fixture_slurp(names[i], &len);

		hl = (size_t)(strstr(msg, "\r\n\r\n") - msg) + 4;
		dkim_limits_default(&lim);
		m = dkim_msg_new(&lim);
		assert_int_equal(dkim_msg_set_headers(m, msg, hl), 0);
		dkim_msg_feed_body(m, msg + hl, len - hl);
		dkim_msg_end_body(m);
		if (dkim_msg_body_hash(m, DKIM_CANON_RELAXED, bh))
			fail_msg("%s: a relaxed whole-body hash", names[i]);
		dkim_msg_free(m);
		free(msg);
	}
}

static void test_key_checks(void **state)
{
	struct arc_seal_key k;
	char buf[512], tmpl[] = "/tmp/test_arc_seal_XXXXXX", *path;
	const char *why;
	EVP_PKEY *ed;
	FILE *f;
	int fd;

	(void)state;
	path = fixture_path("small.private");
	assert_int_equal(arc_seal_key_load(path, &k, buf, sizeof(buf), &why), -1);
	assert_string_equal(why, "RSA key of 512 bits: at least 1024 (RFC 8301)");
	free(path);
	path = fixture_path("ed.private");
	assert_int_equal(arc_seal_key_load(path, &k, buf, sizeof(buf), &why), -1);
	assert_non_null(strstr(why, "not a PEM private key"));
	free(path);
	assert_int_equal(arc_seal_key_load("/nonexistent/key.pem", &k, buf, sizeof(buf), &why), -1);
	assert_string_equal(why, "cannot read /nonexistent/key.pem: No such file or directory");
	/* an Ed25519 PEM key: not RSA */
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(ed);
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_int_equal(PEM_write_PrivateKey(f, ed, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(ed);
	assert_int_equal(arc_seal_key_load(tmpl, &k, buf, sizeof(buf), &why), -1);
	assert_non_null(strstr(why, "not an RSA key"));
	unlink(tmpl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_first),
		cmocka_unit_test(test_seal_on_passing_chain),
		cmocka_unit_test(test_seal_on_failed_chain),
		cmocka_unit_test(test_no_seal),
		cmocka_unit_test(test_repeated_fields),
		cmocka_unit_test(test_ar_result),
		cmocka_unit_test(test_key_checks),
		cmocka_unit_test(test_shared_body_hash),
		cmocka_unit_test(test_no_body_hash_to_share),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
