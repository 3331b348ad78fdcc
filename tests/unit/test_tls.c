/* test_tls.c — a server tlsconn and a client tlsconn wired to each other in memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "proxy/tls.h"

static char g_dir[] = "/tmp/mx_test_tls_XXXXXX";
static char g_cert[256], g_key[256];

struct bytes { char *p; size_t len, cap; };

static void bytes_add(struct bytes *b, const char *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

struct side {
	struct tlsconn *c;
	struct bytes out;       /* ciphertext for the peer */
	struct bytes plain;     /* plaintext received */
	int established;
	int stop_after;         /* on_plain returns -1 once this many bytes arrived (0 = never) */
	int refuse_cipher;
};

static int on_plain_cb(void *arg, const char *d, size_t n)
{
	struct side *s = arg;
	bytes_add(&s->plain, d, n);
	if (s->stop_after && s->plain.len >= (size_t)s->stop_after)
		return -1;
	return 0;
}

static int on_cipher_cb(void *arg, const char *d, size_t n)
{
	struct side *s = arg;
	if (s->refuse_cipher)
		return -1;
	bytes_add(&s->out, d, n);
	return 0;
}

static void on_established_cb(void *arg)
{
	struct side *s = arg;
	s->established++;
}

static const struct tlsconn_ops ops = { on_plain_cb, on_cipher_cb, on_established_cb };

/* Writes a fresh EC key and a self-signed certificate for "mx.test" into g_dir. */
static int make_cert(void)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;
	if (!pk || !x)
		return -1;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (!X509_sign(x, pk, EVP_sha256()))
		return -1;
	snprintf(g_cert, sizeof g_cert, "%s/cert.pem", g_dir);
	snprintf(g_key, sizeof g_key, "%s/key.pem", g_dir);
	f = fopen(g_cert, "w");
	if (!f) return -1;
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(g_key, "w");
	if (!f) return -1;
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
	return 0;
}

static int group_setup(void **state)
{
	if (!mkdtemp(g_dir))
		return -1;
	return make_cert();
}

static int group_teardown(void **state)
{
	unlink(g_cert);
	unlink(g_key);
	rmdir(g_dir);
	return 0;
}

struct pair {
	struct tls_ctx *sctx, *cctx;
	struct side s, c;
};

/* A pair whose server side is sctx (taken over: set it up first). */
static void pair_connect(struct pair *p, struct tls_ctx *sctx)
{
	char err[256] = "";
	memset(p, 0, sizeof *p);
	p->sctx = sctx;
	assert_non_null(p->sctx);
	p->cctx = tls_ctx_new_client(err, sizeof err);
	assert_non_null(p->cctx);
	p->s.c = tlsconn_new(p->sctx, true, NULL, &ops, &p->s);
	p->c.c = tlsconn_new(p->cctx, false, "mx.test", &ops, &p->c);
	assert_non_null(p->s.c);
	assert_non_null(p->c.c);
	/* The connections hold their own references. */
	tls_ctx_unref(p->sctx);
	tls_ctx_unref(p->cctx);
}

static void pair_init(struct pair *p, int min_tls13)
{
	char err[256] = "";
	pair_connect(p, tls_ctx_new_server(g_cert, g_key, NULL, NULL, min_tls13, NULL, err, sizeof err));
}

/* A pair whose server asks for client certificates in mode ccert (TLS_CCERT_*), with our
 * own self-signed certificate as the CA file. */
static void pair_init_ccert(struct pair *p, enum tls_ccert ccert)
{
	char err[256] = "";
	struct tls_ctx *sctx = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, NULL, err, sizeof err);

	assert_non_null(sctx);
	assert_int_equal(tls_ctx_set_client_verify(sctx, ccert, g_cert, err, sizeof err), 0);
	pair_connect(p, sctx);
}

static void pair_free(struct pair *p)
{
	tlsconn_free(p->s.c);
	tlsconn_free(p->c.c);
	free(p->s.out.p); free(p->s.plain.p);
	free(p->c.out.p); free(p->c.plain.p);
}

/* Moves ciphertext between the two sides until both are quiet. step: bytes per feed
 * (0 = everything at once). Returns the last non-zero feed result, 0 if all were 0. */
static int pump(struct pair *p, size_t step)
{
	int last = 0;
	for (int rounds = 0; rounds < 10000 && (p->s.out.len || p->c.out.len); rounds++) {
		struct side *from[2] = { &p->c, &p->s }, *to[2] = { &p->s, &p->c };
		for (int i = 0; i < 2; i++) {
			struct bytes b = from[i]->out;
			memset(&from[i]->out, 0, sizeof from[i]->out);
			size_t off = 0;
			while (off < b.len) {
				size_t n = step && step < b.len - off ? step : b.len - off;
				int r = tlsconn_feed(to[i]->c, b.p + off, n);
				if (r != 0)
					last = r;
				if (r < 0)
					break;
				off += n;
			}
			free(b.p);
		}
	}
	return last;
}

static void check_exchange(size_t step, int min_tls13)
{
	struct pair p;
	pair_init(&p, min_tls13);
	/* Written before the handshake: must be buffered and sent after it. */
	assert_int_equal(tlsconn_write(p.s.c, "220 mx.test ESMTP\r\n", 19), 0);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_true(p.c.out.len > 0);   /* ClientHello */
	assert_int_equal(pump(&p, step), 0);
	assert_int_equal(p.s.established, 1);
	assert_int_equal(p.c.established, 1);
	assert_true(tlsconn_is_established(p.s.c));
	assert_true(tlsconn_is_established(p.c.c));
	assert_string_equal(tlsconn_version(p.s.c), "TLSv1.3");
	assert_string_equal(tlsconn_version(p.c.c), "TLSv1.3");
	assert_true(strlen(tlsconn_cipher(p.s.c)) > 0);
	assert_true(tlsconn_cipher_bits(p.s.c) >= 128);
	assert_int_equal(p.c.plain.len, 19);
	assert_memory_equal(p.c.plain.p, "220 mx.test ESMTP\r\n", 19);

	assert_int_equal(tlsconn_write(p.c.c, "EHLO client.test\r\n", 18), 0);
	assert_int_equal(pump(&p, step), 0);
	assert_int_equal(p.s.plain.len, 18);
	assert_memory_equal(p.s.plain.p, "EHLO client.test\r\n", 18);

	/* Close: the server reads the client's close_notify and reports 1. */
	tlsconn_shutdown(p.c.c);
	assert_int_equal(pump(&p, step), 1);
	assert_int_equal(tlsconn_feed(p.s.c, "x", 1), 1);
	assert_int_equal(tlsconn_write(p.c.c, "x", 1), -1);   /* after shutdown */
	assert_int_equal(p.s.established, 1);
	pair_free(&p);
}

static void test_handshake_and_data(void **state) { check_exchange(0, 0); }
static void test_byte_by_byte(void **state) { check_exchange(1, 0); }
static void test_tls13_only(void **state) { check_exchange(7, 1); }

/* A client session taken after a handshake resumes on the next connection to the same
 * server context (TLS 1.3 ticket: no certificate sent); a server with new ticket keys (a
 * new context: a restart) refuses it and the handshake is a full one, whose session is
 * then the one to take. */
static void test_session_resume(void **state)
{
	char err[256] = "";
	struct tls_ctx *sctx = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, NULL, err, sizeof err);
	struct tls_ctx *sctx2 = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, NULL, err, sizeof err);
	struct tls_ctx *cctx = tls_ctx_new_client(err, sizeof err);
	struct tls_session *sess = NULL;
	const bool reused[] = { false, true, true, false, true };

	assert_non_null(sctx);
	assert_non_null(sctx2);
	assert_non_null(cctx);
	for (size_t i = 0; i < sizeof reused / sizeof reused[0]; i++) {
		struct pair p;

		memset(&p, 0, sizeof p);
		p.s.c = tlsconn_new(i < 3 ? sctx : sctx2, true, NULL, &ops, &p.s);
		p.c.c = tlsconn_new(cctx, false, "mx.test", &ops, &p.c);
		assert_non_null(p.s.c);
		assert_non_null(p.c.c);
		assert_null(tlsconn_take_session(p.c.c));   /* no handshake yet */
		if (sess)
			assert_int_equal(tlsconn_set_session(p.c.c, sess), 0);
		assert_int_equal(tlsconn_start(p.c.c), 0);
		assert_int_equal(tlsconn_write(p.s.c, "220 x\r\n", 7), 0);
		assert_int_equal(pump(&p, 0), 0);
		assert_int_equal(p.c.established, 1);
		assert_int_equal(p.c.plain.len, 7);
		if (tlsconn_session_reused(p.c.c) != reused[i])
			fail_msg("connection %zu: reused %d", i, (int)tlsconn_session_reused(p.c.c));
		assert_null(tlsconn_take_session(p.s.c));   /* a server has none to take */
		tls_session_free(sess);
		sess = tlsconn_take_session(p.c.c);
		assert_non_null(sess);
		pair_free(&p);
	}
	tls_session_free(sess);
	tls_session_free(NULL);
	tls_ctx_unref(sctx);
	tls_ctx_unref(sctx2);
	tls_ctx_unref(cctx);
}

static void test_large_data(void **state)
{
	struct pair p;
	size_t n = 3 * 1024 * 1024 + 17;
	char *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 131 + (i >> 9));
	pair_init(&p, 0);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_int_equal(pump(&p, 0), 0);
	assert_int_equal(tlsconn_write(p.c.c, big, n), 0);
	assert_int_equal(tlsconn_write(p.s.c, big, n), 0);
	assert_int_equal(pump(&p, 4000), 0);
	assert_int_equal(p.s.plain.len, n);
	assert_int_equal(p.c.plain.len, n);
	assert_memory_equal(p.s.plain.p, big, n);
	assert_memory_equal(p.c.plain.p, big, n);
	free(big);
	pair_free(&p);
}

static void test_pause_and_resume(void **state)
{
	struct pair p;
	pair_init(&p, 0);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_int_equal(pump(&p, 0), 0);
	/* Three records; the server stops after the first and resumes on feed(NULL, 0). */
	p.s.stop_after = 1;
	assert_int_equal(tlsconn_write(p.c.c, "AAAA", 4), 0);
	assert_int_equal(tlsconn_write(p.c.c, "BBBB", 4), 0);
	assert_int_equal(tlsconn_write(p.c.c, "CCCC", 4), 0);
	assert_int_equal(pump(&p, 0), 0);
	assert_int_equal(p.s.plain.len, 4);
	p.s.stop_after = 0;
	assert_int_equal(tlsconn_feed(p.s.c, NULL, 0), 0);
	assert_int_equal(p.s.plain.len, 12);
	assert_memory_equal(p.s.plain.p, "AAAABBBBCCCC", 12);

	/* Paused again, then more ciphertext arrives before the resume: order is kept. */
	p.s.stop_after = 16;
	assert_int_equal(tlsconn_write(p.c.c, "DDDD", 4), 0);
	assert_int_equal(tlsconn_write(p.c.c, "EEEE", 4), 0);
	assert_int_equal(pump(&p, 0), 0);
	assert_int_equal(p.s.plain.len, 16);
	assert_int_equal(tlsconn_write(p.c.c, "FFFF", 4), 0);
	assert_int_equal(pump(&p, 3), 0);   /* fed while paused: each feed stops again */
	p.s.stop_after = 0;
	assert_int_equal(tlsconn_feed(p.s.c, "", 0), 0);
	assert_int_equal(p.s.plain.len, 24);
	assert_memory_equal(p.s.plain.p, "AAAABBBBCCCCDDDDEEEEFFFF", 24);
	pair_free(&p);
}

static void test_garbage_before_handshake(void **state)
{
	static const struct { const char *label; const char *data; size_t len; } rows[] = {
		{ "plaintext SMTP", "EHLO x\r\n", 8 },
		{ "HTTP request", "GET / HTTP/1.0\r\n\r\n", 18 },
		{ "bad record type", "\x42\x03\x01\x00\x05hello", 10 },
		{ "zero bytes", "\0\0\0\0\0\0\0\0\0\0", 10 },
		{ "handshake record, bogus body", "\x16\x03\x01\x00\x04\xff\xff\xff\xff", 9 },
		{ "oversized record length", "\x16\x03\x01\xff\xff", 5 },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct pair p;
		pair_init(&p, 0);
		int r = tlsconn_feed(p.s.c, rows[i].data, rows[i].len);
		if (r != -1)
			fail_msg("row '%s': feed returned %d", rows[i].label, r);
		assert_true(strlen(tlsconn_error(p.s.c)) > 0);
		assert_int_equal(tlsconn_feed(p.s.c, "x", 1), -1);   /* stays failed */
		assert_int_equal(tlsconn_write(p.s.c, "x", 1), -1);
		assert_false(tlsconn_is_established(p.s.c));
		assert_string_equal(tlsconn_version(p.s.c), "");
		pair_free(&p);
	}
}

static void test_garbage_after_handshake(void **state)
{
	struct pair p;
	pair_init(&p, 0);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_int_equal(pump(&p, 0), 0);
	assert_int_equal(tlsconn_feed(p.s.c, "\x17\x03\x03\x00\x10" "0123456789abcdef", 21), -1);
	assert_true(strlen(tlsconn_error(p.s.c)) > 0);
	assert_true(p.s.out.len > 0);   /* an alert was sent */
	/* The client hears the alert and fails too. */
	assert_int_equal(pump(&p, 0), -1);
	pair_free(&p);
}

static void test_garbage_to_client(void **state)
{
	struct pair p;
	pair_init(&p, 0);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_int_equal(tlsconn_feed(p.c.c, "220 not tls\r\n", 13), -1);
	pair_free(&p);
}

static void test_cipher_refused(void **state)
{
	struct pair p;
	pair_init(&p, 0);
	p.c.refuse_cipher = 1;
	assert_int_equal(tlsconn_start(p.c.c), -1);
	assert_int_equal(tlsconn_feed(p.c.c, "", 0), -1);
	pair_free(&p);
}

static void test_sni(void **state)
{
	/* verify: the name given to tlsconn_set_verify_name (NULL: not called) */
	static const struct { const char *label; const char *sni; const char *verify; const char *seen; } rows[] = {
		{ "host name", "mx.test", NULL, "mx.test" },
		{ "host:port drops the port", "mx.example.org:2526", NULL, "mx.example.org" },
		{ "IPv4 literal with port", "127.0.0.1:2526", NULL, "" },
		{ "IPv4 literal", "127.0.0.1", NULL, "" },
		{ "IPv6 literal in brackets", "[::1]:25", NULL, "" },
		{ "bare IPv6 literal", "::1", NULL, "" },
		{ "no name", NULL, NULL, "" },
		{ "not a host name", "a b", NULL, "" },
		{ "IPv4 literal verified against a name: the name", "127.0.0.1:2526",
		  "tenant.mail.protection.outlook.test", "tenant.mail.protection.outlook.test" },
		{ "IPv6 literal verified against name:port: the name", "[::1]:25", "mx.test:25", "mx.test" },
		{ "a host name sent stays, verified against another", "mx.example.org", "mx.test", "mx.example.org" },
		{ "IPv4 literal verified against an address: none", "127.0.0.1", "127.0.0.1", "" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct pair p;
		char err[256];
		pair_init(&p, 0);
		tlsconn_free(p.c.c);
		struct tls_ctx *cctx = tls_ctx_new_client(err, sizeof err);
		p.c.c = tlsconn_new(cctx, false, rows[i].sni, &ops, &p.c);
		tls_ctx_unref(cctx);
		if (rows[i].verify)
			assert_int_equal(tlsconn_set_verify_name(p.c.c, rows[i].verify), 0);
		assert_int_equal(tlsconn_start(p.c.c), 0);
		assert_int_equal(pump(&p, 0), 0);
		assert_true(tlsconn_is_established(p.s.c));
		if (strcmp(tlsconn_sni(p.s.c), rows[i].seen) != 0)
			fail_msg("row '%s': server saw '%s'", rows[i].label, tlsconn_sni(p.s.c));
		pair_free(&p);
	}
}

/* Client certificates: none asked for, asked for and none sent (the backend client side has
 * none), required and none sent, and the settings refused. The certificate-bearing cases
 * run against real clients in tests/integration/test_tls_client_cert.py. */
static void test_client_verify(void **state)
{
	char err[256] = "";
	struct pair p;

	(void)state;
	/* not asked: nothing known */
	pair_init(&p, 0);
	tlsconn_start(p.c.c);
	pump(&p, 0);
	assert_true(tlsconn_is_established(p.s.c));
	assert_int_equal(tlsconn_peer_cert(p.s.c), TLSCONN_CERT_NOT_ASKED);
	assert_string_equal(tlsconn_peer_subject(p.s.c), "");
	assert_string_equal(tlsconn_peer_fingerprint(p.s.c), "");
	pair_free(&p);

	/* ask (the CA file is our own self-signed certificate): the client sends none */
	pair_init_ccert(&p, TLS_CCERT_ASK);
	tlsconn_start(p.c.c);
	pump(&p, 0);
	assert_true(tlsconn_is_established(p.s.c));
	assert_int_equal(tlsconn_peer_cert(p.s.c), TLSCONN_CERT_NONE);
	assert_string_equal(tlsconn_peer_issuer(p.s.c), "");
	assert_string_equal(tlsconn_peer_verify_error(p.s.c), "");
	pair_free(&p);

	/* require: the handshake fails without a certificate */
	pair_init_ccert(&p, TLS_CCERT_REQUIRE);
	tlsconn_start(p.c.c);
	assert_int_equal(pump(&p, 0), -1);
	assert_false(tlsconn_is_established(p.s.c));
	assert_non_null(strstr(tlsconn_error(p.s.c), "certificate"));
	pair_free(&p);

	/* refused settings */
	struct tls_ctx *c = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, NULL, err, sizeof err);
	assert_int_equal(tls_ctx_set_client_verify(c, TLS_CCERT_REQUIRE, NULL, err, sizeof err), -1);
	assert_true(strncmp(err, "client_ca_file", 14) == 0);
	assert_int_equal(tls_ctx_set_client_verify(c, TLS_CCERT_ASK, "/nonexistent/ca.pem", err, sizeof err), -1);
	assert_true(strncmp(err, "client_ca_file /nonexistent/ca.pem", 34) == 0);
	assert_int_equal(tls_ctx_set_client_verify(c, TLS_CCERT_NONE, "/nonexistent/ca.pem", err, sizeof err), 0);
	assert_int_equal(tls_ctx_set_client_verify(c, TLS_CCERT_ASK, NULL, err, sizeof err), 0);
	tls_ctx_unref(c);
}

static void test_bad_files(void **state)
{
	char err[256] = "";
	assert_null(tls_ctx_new_server("/nonexistent/cert.pem", g_key, NULL, NULL, 0, NULL, err, sizeof err));
	assert_non_null(strstr(err, "/nonexistent/cert.pem"));
	assert_null(tls_ctx_new_server(g_cert, "/nonexistent/key.pem", NULL, NULL, 0, NULL, err, sizeof err));
	assert_non_null(strstr(err, "key"));
	/* The certificate file is not a key. */
	assert_null(tls_ctx_new_server(g_cert, g_cert, NULL, NULL, 0, NULL, err, sizeof err));
	assert_null(tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, "NO-SUCH-CIPHER", err, sizeof err));
	assert_non_null(strstr(err, "ciphers"));
	assert_null(tls_ctx_new_server(NULL, NULL, NULL, NULL, 0, NULL, err, sizeof err));
	/* a second pair of the same key type would replace the first: refused */
	assert_null(tls_ctx_new_server(g_cert, g_key, g_cert, g_key, 0, NULL, err, sizeof err));
	assert_non_null(strstr(err, "second certificate"));
	assert_null(tls_ctx_new_server(g_cert, g_key, "/nonexistent/ec.pem", g_key, 0, NULL, err, sizeof err));
	assert_true(strncmp(err, "second certificate", 18) == 0);
	struct tls_ctx *c = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, "ECDHE+AESGCM", err, sizeof err);
	assert_non_null(c);
	tls_ctx_ref(c);
	tls_ctx_unref(c);
	tls_ctx_unref(c);
	tls_ctx_unref(NULL);
	tlsconn_free(NULL);
}

/* tls.ciphersuites: the TLS 1.3 suite negotiated is the one set; a name OpenSSL does not
 * offer is refused, even beside a known one (OpenSSL alone would skip it). */
static void test_ciphersuites(void **state)
{
	char err[256] = "";
	struct pair p;

	(void)state;
	struct tls_ctx *sctx = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 1, NULL, err, sizeof err);
	assert_non_null(sctx);
	assert_int_equal(tls_ctx_set_ciphersuites(sctx, "TLS_CHACHA20_POLY1305_SHA256", err, sizeof err), 0);
	pair_connect(&p, sctx);
	assert_int_equal(tlsconn_start(p.c.c), 0);
	assert_int_equal(pump(&p, 0), 0);
	assert_int_equal(p.s.established, 1);
	assert_string_equal(tlsconn_cipher(p.s.c), "TLS_CHACHA20_POLY1305_SHA256");
	pair_free(&p);

	struct tls_ctx *c = tls_ctx_new_server(g_cert, g_key, NULL, NULL, 0, NULL, err, sizeof err);
	assert_non_null(c);
	assert_int_equal(tls_ctx_set_ciphersuites(c, NULL, err, sizeof err), 0);
	assert_int_equal(tls_ctx_set_ciphersuites(c, "", err, sizeof err), 0);
	assert_int_equal(tls_ctx_set_ciphersuites(c, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", err, sizeof err), 0);
	assert_int_equal(tls_ctx_set_ciphersuites(c, "NO_SUCH_SUITE", err, sizeof err), -1);
	assert_true(strncmp(err, "ciphersuites", 12) == 0);
	assert_int_equal(tls_ctx_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_AES_128_GCM_SHA512", err, sizeof err), -1);
	assert_non_null(strstr(err, "TLS_AES_128_GCM_SHA512 is not"));
	/* a TLS 1.2 cipher is not a TLS 1.3 suite */
	assert_int_equal(tls_ctx_set_ciphersuites(c, "ECDHE-RSA-AES128-GCM-SHA256", err, sizeof err), -1);
	assert_int_equal(tls_ctx_set_ciphersuites(c, "tls_aes_128_gcm_sha256", err, sizeof err), -1);
	tls_ctx_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_tls13_only),
		cmocka_unit_test(test_large_data),
		cmocka_unit_test(test_pause_and_resume),
		cmocka_unit_test(test_garbage_before_handshake),
		cmocka_unit_test(test_garbage_after_handshake),
		cmocka_unit_test(test_garbage_to_client),
		cmocka_unit_test(test_cipher_refused),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_client_verify),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_ciphersuites),
		cmocka_unit_test(test_session_resume),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
