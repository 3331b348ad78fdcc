/* tls.c — OpenSSL 3.0 over an in-memory BIO of our own.
 *
 * The BIO reads straight from the buffer the caller passes to tlsconn_feed (no copy; only
 * bytes left unread when on_plain pauses are kept) and writes into a small coalescing
 * buffer that is handed to ops.on_cipher after every step and freed once drained. Unlike
 * OpenSSL's memory BIOs, which keep their peak capacity, an idle connection holds no I/O
 * buffers at all (SSL_MODE_RELEASE_BUFFERS does the same for OpenSSL's record buffers).
 * Nothing here blocks or touches a socket, so the same code serves the SMTP server side
 * (STARTTLS / implicit TLS) and the backend client side. */
#include "tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	atomic_int refs;
	SSL_CTX **sni;               /* server: contexts of the certificates chosen by SNI */
	size_t nsni;
	int ccert;                   /* enum tls_ccert: client certificates asked for */
};

/* A server connection's client certificate, made once the handshake is done, only when a
 * certificate was asked for (a connection that asks for none carries none of this). */
struct tlsconn_peer {
	int state;                   /* enum tlsconn_peer_cert */
	char subject[128], issuer[128];
	char fingerprint[96];        /* SHA-256, "AB:CD:..." */
	char verify_error[120];
};

struct tlsconn {
	struct tls_ctx *ctx;
	SSL *ssl;
	struct tlsconn_ops ops;
	void *arg;
	bool server;
	bool established;
	bool failed;                 /* a fatal error happened: every later call fails */
	bool peer_closed;            /* close_notify read */
	bool shut;                   /* close_notify sent */
	bool send_failed;            /* on_cipher refused or the write buffer could not grow */
	bool sni_set;                /* client side: a server name is in the ClientHello */
	char *pend;                  /* plaintext written before the handshake completed */
	size_t pend_len, pend_cap;
	const char *in;              /* ciphertext being fed: the caller's buffer or rest */
	size_t in_len;
	char *rest;                  /* fed but unread (on_plain paused) */
	size_t rest_len;
	char *wbuf;                  /* ciphertext OpenSSL wrote, not yet given to on_cipher */
	size_t wlen, wcap;
	int verify_err;              /* the first X509_V_ERR_* of the client certificate (ask) */
	struct tlsconn_peer *peer;   /* server side, a certificate asked for: after the handshake */
	char err[200];
};

/* Largest plaintext handed to SSL_write at once: bounds how much ciphertext piles up in
 * the write buffer before it is drained (a 50 MB message must not be encrypted into one buffer). */
enum { TLS_WRITE_CHUNK = 64 * 1024, TLS_IO_BUF = 16 * 1024 };

/* ------------------------------------------------------------ the BIO */

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

/* OpenSSL reads ciphertext: from what tlsconn_feed is feeding, else "retry later". */
static int tls_bio_read_cb(BIO *b, char *out, int outl)
{
	struct tlsconn *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (!t || t->in_len == 0 || outl <= 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = t->in_len < (size_t)outl ? t->in_len : (size_t)outl;
	memcpy(out, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (int)n;
}

/* OpenSSL writes ciphertext: collect it; tlsconn_flush_cipher hands it on. */
static int tls_bio_write_cb(BIO *b, const char *data, int len)
{
	struct tlsconn *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (!t || len < 0)
		return -1;
	if (t->wlen + (size_t)len > t->wcap) {
		size_t cap = t->wcap ? t->wcap : 2048;
		while (cap < t->wlen + (size_t)len)
			cap *= 2;
		char *p = realloc(t->wbuf, cap);
		if (!p) {
			t->send_failed = true;
			return -1;
		}
		t->wbuf = p;
		t->wcap = cap;
	}
	memcpy(t->wbuf + t->wlen, data, (size_t)len);
	t->wlen += (size_t)len;
	return len;
}

static long tls_bio_ctrl_cb(BIO *b, int cmd, long num, void *ptr)
{
	struct tlsconn *t = BIO_get_data(b);
	(void)num; (void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return t ? (long)t->in_len : 0;
	case BIO_CTRL_WPENDING:
		return t ? (long)t->wlen : 0;
	default:
		return 0;
	}
}

static int tls_bio_create_cb(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_bio_init_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mxgate tlsconn");
	if (!m)
		return;
	BIO_meth_set_read(m, tls_bio_read_cb);
	BIO_meth_set_write(m, tls_bio_write_cb);
	BIO_meth_set_ctrl(m, tls_bio_ctrl_cb);
	BIO_meth_set_create(m, tls_bio_create_cb);
	tls_bio_method = m;
}

/* Formats "what: <OpenSSL reason>" into buf and empties this thread's error queue. */
static void tls_format_error(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	if (e) {
		char reason[160];
		ERR_error_string_n(e, reason, sizeof reason);
		snprintf(buf, len, "%s: %s", what, reason);
	} else {
		snprintf(buf, len, "%s", what);
	}
	ERR_clear_error();
}

/* Common options for both sides: no compression (CRIME), no renegotiation, small memory
 * footprint for idle connections. */
static void tls_ctx_set_common(SSL_CTX *c)
{
	SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_clear_options(c, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
}

static struct tls_ctx *tls_ctx_wrap(SSL_CTX *c, char *err, size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(err, errlen, "out of memory");
		SSL_CTX_free(c);
		return NULL;
	}
	t->ssl_ctx = c;
	atomic_init(&t->refs, 1);
	return t;
}

/* See tls.h. */
/* Loads one certificate chain and its key into c; what: "" or "second " for err. */
static int tls_ctx_load_pair(SSL_CTX *c, const char *cert, const char *key, const char *what,
    char *err, size_t errlen)
{
	char w[300];

	if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
		snprintf(w, sizeof w, "%scertificate %s", what, cert);
		tls_format_error(err, errlen, w);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(w, sizeof w, "%skey %s", what, key);
		tls_format_error(err, errlen, w);
		return -1;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		snprintf(w, sizeof w, "%skey does not match %scertificate", what, what);
		tls_format_error(err, errlen, w);
		return -1;
	}
	return 0;
}

/* A server SSL_CTX with cert/key (and cert2/key2); NULL with err. */
static SSL_CTX *tls_server_ssl_ctx(const char *cert, const char *key, const char *cert2,
    const char *key2, int min_tls13, const char *ciphers, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "mxgate";
	SSL_CTX *c = NULL;

	ERR_clear_error();
	if (!cert || !*cert || !key || !*key) {
		snprintf(err, errlen, "tls: certificate and key are required");
		return NULL;
	}
	c = SSL_CTX_new(TLS_server_method());
	if (!c) {
		tls_format_error(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	tls_ctx_set_common(c);
	SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Built-in DH groups sized to the key, so TLS 1.2 clients without ECDHE still get
	 * forward secrecy. */
	SSL_CTX_set_dh_auto(c, 1);
	if (!SSL_CTX_set_min_proto_version(c, min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION)) {
		tls_format_error(err, errlen, "min version");
		goto fail;
	}
	if (ciphers && *ciphers && !SSL_CTX_set_cipher_list(c, ciphers)) {
		tls_format_error(err, errlen, "ciphers");
		goto fail;
	}
	if (tls_ctx_load_pair(c, cert, key, "", err, errlen) != 0)
		goto fail;
	if (cert2 && *cert2 && key2 && *key2) {
		/* OpenSSL keeps one certificate per key type: a second of the same type would
		 * replace the first */
		int t1 = EVP_PKEY_get_base_id(SSL_CTX_get0_privatekey(c));

		if (tls_ctx_load_pair(c, cert2, key2, "second ", err, errlen) != 0)
			goto fail;
		if (EVP_PKEY_get_base_id(SSL_CTX_get0_privatekey(c)) == t1) {
			snprintf(err, errlen, "second certificate %s: its key is of the same type as the "
			    "first's (the second pair is for another key type, such as ECDSA beside RSA)", cert2);
			goto fail;
		}
	}
	/* Resumption: a server-side session cache (needs an id context) plus one stateless
	 * ticket per TLS 1.3 handshake rather than the default two. */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
	SSL_CTX_set_num_tickets(c, 1);
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

struct tls_ctx *tls_ctx_new_server(const char *cert, const char *key, const char *cert2,
    const char *key2, int min_tls13, const char *ciphers, char *err, size_t errlen)
{
	SSL_CTX *c = tls_server_ssl_ctx(cert, key, cert2, key2, min_tls13, ciphers, err, errlen);

	return c ? tls_ctx_wrap(c, err, errlen) : NULL;
}

/* The client's SNI picks the first added certificate whose names (subjectAltName DNS
 * entries, wildcards included; the CN without them) match it; else the default stays. */
static int tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctx *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL || *name == '\0')
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < t->nsni; i++) {
		X509 *x = SSL_CTX_get0_certificate(t->sni[i]);

		if (x && X509_check_host(x, name, strlen(name), 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, t->sni[i]);
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* See tls.h. */
int tls_ctx_add_sni(struct tls_ctx *t, const char *cert, const char *key, const char *cert2,
    const char *key2, int min_tls13, const char *ciphers, char *err, size_t errlen)
{
	SSL_CTX *c = tls_server_ssl_ctx(cert, key, cert2, key2, min_tls13, ciphers, err, errlen);
	SSL_CTX **v;

	if (c == NULL)
		return -1;
	v = realloc(t->sni, (t->nsni + 1) * sizeof(*v));
	if (v == NULL) {
		SSL_CTX_free(c);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->sni = v;
	t->sni[t->nsni++] = c;
	SSL_CTX_set_tlsext_servername_callback(t->ssl_ctx, tls_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(t->ssl_ctx, t);
	return 0;
}

/* TLS_CCERT_ASK: a certificate that does not verify is noted (its first error), never
 * fatal; the connection's peer state says "unverified". */
static int tls_verify_ask_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tlsconn *t = ssl ? SSL_get_app_data(ssl) : NULL;

	if (!ok && t && t->verify_err == 0)
		t->verify_err = X509_STORE_CTX_get_error(xs);
	return 1;
}

/* Client certificates on one SSL_CTX (see tls_ctx_set_client_verify). */
static int tls_ssl_ctx_client_verify(SSL_CTX *c, int mode, const char *cafile, char *err, size_t errlen)
{
	/* the mode is part of the session id context: a session resumed under another mode
	 * (a reload that turns "ask" into "require") is refused */
	static const unsigned char sid_ask[] = "mxgate/ask", sid_req[] = "mxgate/require";

	if (cafile && *cafile) {
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(c, cafile, NULL) != 1) {
			char w[300];

			snprintf(w, sizeof w, "client_ca_file %s", cafile);
			tls_format_error(err, errlen, w);
			return -1;
		}
		/* the CA names in the CertificateRequest: a client with several certificates
		 * sends the one they issued */
		names = SSL_load_client_CA_file(cafile);
		if (names)
			SSL_CTX_set_client_CA_list(c, names);
		ERR_clear_error();
	}
	if (mode == TLS_CCERT_REQUIRE) {
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_session_id_context(c, sid_req, sizeof sid_req - 1);
	} else {
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER, tls_verify_ask_cb);
		SSL_CTX_set_session_id_context(c, sid_ask, sizeof sid_ask - 1);
	}
	return 0;
}

/* See tls.h. */
int tls_ctx_set_client_verify(struct tls_ctx *t, int mode, const char *cafile, char *err, size_t errlen)
{
	ERR_clear_error();
	if (mode == TLS_CCERT_NONE)
		return 0;
	if (mode == TLS_CCERT_REQUIRE && (cafile == NULL || *cafile == '\0')) {
		snprintf(err, errlen, "client_ca_file: required to require client certificates");
		return -1;
	}
	if (tls_ssl_ctx_client_verify(t->ssl_ctx, mode, cafile, err, errlen) != 0)
		return -1;
	/* after SNI picked another context OpenSSL verifies with that one's store */
	for (size_t i = 0; i < t->nsni; i++)
		if (tls_ssl_ctx_client_verify(t->sni[i], mode, cafile, err, errlen) != 0)
			return -1;
	t->ccert = mode;
	return 0;
}

/* TLS 1.3 suites on one SSL_CTX, every name checked (see tls_ctx_set_ciphersuites). */
static int tls_ssl_ctx_ciphersuites(SSL_CTX *c, const char *suites, char *err, size_t errlen)
{
	STACK_OF(SSL_CIPHER) *sk;
	const char *p = suites;

	if (!SSL_CTX_set_ciphersuites(c, suites)) {
		tls_format_error(err, errlen, "ciphersuites");
		return -1;
	}
	sk = SSL_CTX_get_ciphers(c);
	while (*p) {
		size_t n = strcspn(p, ":");
		bool known = false;

		for (int i = 0; n > 0 && !known && i < sk_SSL_CIPHER_num(sk); i++) {
			const char *name = SSL_CIPHER_standard_name(sk_SSL_CIPHER_value(sk, i));

			known = name && strlen(name) == n && memcmp(name, p, n) == 0 &&
			    strcmp(SSL_CIPHER_get_version(sk_SSL_CIPHER_value(sk, i)), "TLSv1.3") == 0;
		}
		if (n > 0 && !known) {
			snprintf(err, errlen, "ciphersuites: %.*s is not a TLS 1.3 cipher suite OpenSSL offers "
			    "(TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, ...)",
			    (int)(n < 100 ? n : 100), p);
			return -1;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	return 0;
}

/* See tls.h. */
int tls_ctx_set_ciphersuites(struct tls_ctx *t, const char *suites, char *err, size_t errlen)
{
	ERR_clear_error();
	if (suites == NULL || *suites == '\0')
		return 0;
	if (tls_ssl_ctx_ciphersuites(t->ssl_ctx, suites, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < t->nsni; i++)
		if (tls_ssl_ctx_ciphersuites(t->sni[i], suites, err, errlen) != 0)
			return -1;
	return 0;
}

/* A client context, TLS 1.2 and up, with the given verify mode; NULL with err set. */
static SSL_CTX *tls_client_ssl_ctx(int verify, char *err, size_t errlen)
{
	SSL_CTX *c;

	ERR_clear_error();
	c = SSL_CTX_new(TLS_client_method());
	if (!c) {
		tls_format_error(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	tls_ctx_set_common(c);
	SSL_CTX_set_verify(c, verify, NULL);
	if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION)) {
		tls_format_error(err, errlen, "min version");
		SSL_CTX_free(c);
		return NULL;
	}
	return c;
}

/* See tls.h. */
struct tls_ctx *tls_ctx_new_client(char *err, size_t errlen)
{
	/* Opportunistic STARTTLS (RFC 3207 / RFC 7435): encrypt, do not authenticate. */
	SSL_CTX *c = tls_client_ssl_ctx(SSL_VERIFY_NONE, err, errlen);

	return c ? tls_ctx_wrap(c, err, errlen) : NULL;
}

struct tls_ctx *tls_ctx_new_client_verify(const char *cafile, char *err, size_t errlen)
{
	/* Postfix's levels verify/secure, HAProxy's `verify required`: the handshake fails
	 * unless the chain leads to a trusted CA; the name is checked per connection
	 * (tlsconn_set_verify_name). */
	SSL_CTX *c = tls_client_ssl_ctx(SSL_VERIFY_PEER, err, errlen);

	if (c == NULL)
		return NULL;
	if (cafile && *cafile) {
		if (SSL_CTX_load_verify_locations(c, cafile, NULL) != 1) {
			char what[300];
			snprintf(what, sizeof what, "cannot load CA file %.250s", cafile);
			tls_format_error(err, errlen, what);
			SSL_CTX_free(c);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(c) != 1) {
		tls_format_error(err, errlen, "cannot load the system's CA certificates");
		SSL_CTX_free(c);
		return NULL;
	}
	return tls_ctx_wrap(c, err, errlen);
}

static bool tls_sni_name(const char *in, char *out, size_t outlen);

int tlsconn_set_verify_name(struct tlsconn *t, const char *name)
{
	char host[256];
	size_t n;

	if (!t || !name || !*name)
		return -1;
	/* "[v6]" and "host:port" as the URL has them: the bare name or address */
	if (name[0] == '[') {
		const char *e = strchr(name, ']');
		n = e ? (size_t)(e - name - 1) : 0;
		if (n == 0 || n >= sizeof host)
			return -1;
		memcpy(host, name + 1, n);
	} else {
		const char *c = strchr(name, ':');
		n = c && !strchr(c + 1, ':') ? (size_t)(c - name) : strlen(name);
		if (n == 0 || n >= sizeof host)
			return -1;
		memcpy(host, name, n);
	}
	host[n] = '\0';
	/* A server addressed by IP (no SNI from tlsconn_new) and verified against a name: send
	 * that name, as a client that connected to it by name would, so a server holding several
	 * certificates (Exchange Online's *.mail.protection.outlook.com among others) picks the
	 * one the check wants. A name already sent stays. */
	char sni[256];
	if (!t->server && !t->sni_set && tls_sni_name(host, sni, sizeof sni))
		t->sni_set = SSL_set_tlsext_host_name(t->ssl, sni) == 1;
	X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
	/* an address literal is matched against the certificate's IP entries, a name
	 * against its DNS names (wildcards in the left-most label only) */
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1)
		return 0;
	ERR_clear_error();
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return SSL_set1_host(t->ssl, host) == 1 ? 0 : -1;
}

void tls_ctx_ref(struct tls_ctx *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
}

void tls_ctx_unref(struct tls_ctx *c)
{
	if (!c)
		return;
	if (atomic_fetch_sub(&c->refs, 1) == 1) {
		for (size_t i = 0; i < c->nsni; i++)
			SSL_CTX_free(c->sni[i]);
		free(c->sni);
		SSL_CTX_free(c->ssl_ctx);
		free(c);
	}
}

/* RFC 6066 3: SNI carries a DNS host name, never an address literal. Accepts "host",
 * "host:port" (a backend's host field) and strips the port; rejects IPv4/IPv6 literals
 * ("[v6]:port" included) and anything that is not LDH + dots. true if out holds a name. */
static bool tls_sni_name(const char *in, char *out, size_t outlen)
{
	unsigned char tmp[16];
	size_t n;

	if (!in || !*in || in[0] == '[')
		return false;
	const char *colon = strchr(in, ':');
	if (colon && strchr(colon + 1, ':'))
		return false;   /* more than one colon: an IPv6 literal */
	n = colon ? (size_t)(colon - in) : strlen(in);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, in, n);
	out[n] = '\0';
	if (strspn(out, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != n)
		return false;
	if (inet_pton(AF_INET, out, tmp) == 1)
		return false;
	return true;
}

/* See tls.h. */
struct tlsconn *tlsconn_new(struct tls_ctx *ctx, bool server, const char *sni,
    const struct tlsconn_ops *ops, void *arg)
{
	struct tlsconn *t;

	if (!ctx || !ops || !ops->on_plain || !ops->on_cipher)
		return NULL;
	t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	ERR_clear_error();
	t->ops = *ops;
	t->arg = arg;
	t->server = server;
	t->ssl = SSL_new(ctx->ssl_ctx);
	if (!t->ssl)
		goto fail;
	pthread_once(&tls_bio_once, tls_bio_init_method);
	BIO *bio = tls_bio_method ? BIO_new(tls_bio_method) : NULL;
	if (!bio)
		goto fail;
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio);   /* one reference, now owned by ssl */
	SSL_set_app_data(t->ssl, t);     /* tls_verify_ask_cb */
	if (server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		char name[256];
		if (tls_sni_name(sni, name, sizeof name))
			t->sni_set = SSL_set_tlsext_host_name(t->ssl, name) == 1;
	}
	tls_ctx_ref(ctx);
	t->ctx = ctx;
	return t;
fail:
	SSL_free(t->ssl);
	ERR_clear_error();
	free(t);
	return NULL;
}

void tlsconn_free(struct tlsconn *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);   /* frees the BIO */
	tls_ctx_unref(t->ctx);
	free(t->pend);
	free(t->rest);
	free(t->wbuf);
	free(t->peer);
	free(t);
}

/* Marks t failed with reason what (+ OpenSSL's). Always returns -1. */
static int tlsconn_fail(struct tlsconn *t, const char *what)
{
	long vr = !t->server && t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;

	if (!t->failed && vr != X509_V_OK) {
		/* the certificate was refused (tls_ctx_new_client_verify): say why */
		snprintf(t->err, sizeof t->err, "%s: certificate verify failed: %s", what,
		    X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else if (!t->failed)
		tls_format_error(t->err, sizeof t->err, what);
	else
		ERR_clear_error();
	t->failed = true;
	return -1;
}

/* Hands every byte OpenSSL queued for the peer to on_cipher. 0 or -1. */
static int tlsconn_flush_cipher(struct tlsconn *t)
{
	if (t->send_failed) {
		t->failed = true;
		snprintf(t->err, sizeof t->err, "out of memory for ciphertext");
		return -1;
	}
	if (t->wlen == 0)
		return 0;
	size_t n = t->wlen;
	t->wlen = 0;
	if (t->ops.on_cipher(t->arg, t->wbuf, n) < 0) {
		t->failed = true;
		snprintf(t->err, sizeof t->err, "send refused by caller");
		return -1;
	}
	return 0;
}

/* At the end of every public call: an idle connection keeps no write buffer. */
static void tlsconn_trim(struct tlsconn *t)
{
	if (t->wlen == 0 && t->wbuf) {
		free(t->wbuf);
		t->wbuf = NULL;
		t->wcap = 0;
	}
}

/* Queues plaintext written before the handshake (or while OpenSSL wants to read). */
static int tlsconn_queue_plain(struct tlsconn *t, const char *data, size_t len)
{
	if (t->pend_len + len > t->pend_cap) {
		size_t cap = t->pend_cap ? t->pend_cap : 1024;
		while (cap < t->pend_len + len)
			cap *= 2;
		char *p = realloc(t->pend, cap);
		if (!p) {
			t->failed = true;
			snprintf(t->err, sizeof t->err, "out of memory");
			return -1;
		}
		t->pend = p;
		t->pend_cap = cap;
	}
	memcpy(t->pend + t->pend_len, data, len);
	t->pend_len += len;
	return 0;
}

/* Encrypts data in chunks, draining ciphertext after each. A write OpenSSL cannot take
 * now (it wants to read first) is queued and retried after the next feed. 0 or -1. */
static int tlsconn_encrypt(struct tlsconn *t, const char *data, size_t len)
{
	while (len > 0) {
		int chunk = len > TLS_WRITE_CHUNK ? TLS_WRITE_CHUNK : (int)len;
		ERR_clear_error();
		int n = SSL_write(t->ssl, data, chunk);
		if (n <= 0) {
			int e = SSL_get_error(t->ssl, n);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				if (tlsconn_flush_cipher(t) < 0)
					return -1;
				return tlsconn_queue_plain(t, data, len);
			}
			tlsconn_fail(t, "write");
			tlsconn_flush_cipher(t);
			return -1;
		}
		data += n;
		len -= (size_t)n;
		if (tlsconn_flush_cipher(t) < 0)
			return -1;
	}
	return 0;
}

/* Sends what was queued by tlsconn_queue_plain. 0 or -1. */
static int tlsconn_flush_plain(struct tlsconn *t)
{
	if (!t->pend_len)
		return 0;
	/* Detach the queue first: tlsconn_encrypt may queue a remainder again. */
	char *p = t->pend;
	size_t len = t->pend_len;
	t->pend = NULL;
	t->pend_len = t->pend_cap = 0;
	int r = tlsconn_encrypt(t, p, len);
	free(p);
	return r;
}

/* One name's common name into out: printable ASCII, '?' for anything else and for the
 * characters that would end a log value or a Received comment; "" when there is none. */
static void tls_name_cn(const X509_NAME *name, char *out, size_t outlen)
{
	int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	unsigned char *u = NULL;
	int n;
	size_t o = 0;

	out[0] = '\0';
	if (i < 0)
		return;
	n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	for (int k = 0; k < n && o + 1 < outlen; k++) {
		unsigned char c = u[k];

		out[o++] = c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '(' || c == ')' ? '?' : (char)c;
	}
	out[o] = '\0';
	OPENSSL_free(u);
}

/* After a server handshake that asked for a certificate: what came (see tls.h). */
static void tlsconn_note_peer(struct tlsconn *t)
{
	struct tlsconn_peer *p = calloc(1, sizeof *p);
	X509 *x = SSL_get0_peer_certificate(t->ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	long vr;

	if (p == NULL)
		return;   /* out of memory: the connection reads as "none sent" */
	t->peer = p;
	if (x == NULL) {
		p->state = TLSCONN_CERT_NONE;
		return;
	}
	tls_name_cn(X509_get_subject_name(x), p->subject, sizeof p->subject);
	tls_name_cn(X509_get_issuer_name(x), p->issuer, sizeof p->issuer);
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
		for (unsigned int i = 0; i < mdlen && i * 3 + 3 <= sizeof p->fingerprint; i++)
			snprintf(p->fingerprint + i * 3, 4, i + 1 < mdlen ? "%02X:" : "%02X", md[i]);
	/* a resumed session keeps its first handshake's result (no callback ran) */
	vr = SSL_get_verify_result(t->ssl);
	if (t->verify_err == 0 && vr == X509_V_OK) {
		p->state = TLSCONN_CERT_VERIFIED;
		return;
	}
	p->state = TLSCONN_CERT_UNVERIFIED;
	snprintf(p->verify_error, sizeof p->verify_error, "%s",
	    X509_verify_cert_error_string(t->verify_err ? t->verify_err : vr));
	ERR_clear_error();
}

/* Advances the handshake and then reads application data until OpenSSL needs more input,
 * on_plain asks to stop, or the peer closed. Returns 0, 1 (close_notify) or -1. */
static int tlsconn_drive(struct tlsconn *t)
{
	char buf[TLS_IO_BUF];

	if (!t->established) {
		ERR_clear_error();
		int r = SSL_do_handshake(t->ssl);
		if (r != 1) {
			int e = SSL_get_error(t->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				return tlsconn_flush_cipher(t);
			}
			tlsconn_fail(t, "handshake");
			tlsconn_flush_cipher(t);   /* the alert, best effort */
			return -1;
		}
		t->established = true;
		if (t->server && t->ctx->ccert != TLS_CCERT_NONE)
			tlsconn_note_peer(t);
		/* Data written before the handshake goes out first, then the caller hears. */
		if (tlsconn_flush_cipher(t) < 0 || tlsconn_flush_plain(t) < 0)
			return -1;
		if (t->ops.on_established)
			t->ops.on_established(t->arg);
		if (t->failed)
			return -1;
	} else if (t->pend_len && tlsconn_flush_plain(t) < 0) {
		return -1;
	}

	for (;;) {
		ERR_clear_error();
		int n = SSL_read(t->ssl, buf, sizeof buf);
		if (n > 0) {
			if (t->ops.on_plain(t->arg, buf, (size_t)n) < 0)
				return t->failed ? -1 : tlsconn_flush_cipher(t);
			if (t->failed)
				return -1;
			continue;
		}
		int e = SSL_get_error(t->ssl, n);
		switch (e) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			ERR_clear_error();
			/* SSL_read may have produced output (TLS 1.3 KeyUpdate, refusals). */
			return tlsconn_flush_cipher(t);
		case SSL_ERROR_ZERO_RETURN:
			ERR_clear_error();
			t->peer_closed = true;
			return tlsconn_flush_cipher(t) < 0 ? -1 : 1;
		default:
			tlsconn_fail(t, "read");
			tlsconn_flush_cipher(t);
			return -1;
		}
	}
}

/* See tls.h. */
int tlsconn_start(struct tlsconn *t)
{
	if (!t || t->failed)
		return -1;
	if (t->server || t->established)
		return 0;
	int r = tlsconn_drive(t) < 0 ? -1 : 0;
	tlsconn_trim(t);
	return r;
}

/* See tls.h. */
int tlsconn_feed(struct tlsconn *t, const char *in, size_t len)
{
	int r;

	if (!t || t->failed)
		return -1;
	if (t->peer_closed)
		return 1;   /* anything after close_notify is ignored */
	if (!in)
		len = 0;
	if (t->rest_len) {
		/* Bytes left over from a paused feed come first. */
		if (len) {
			char *p = realloc(t->rest, t->rest_len + len);
			if (!p) {
				t->failed = true;
				snprintf(t->err, sizeof t->err, "out of memory");
				return -1;
			}
			memcpy(p + t->rest_len, in, len);
			t->rest = p;
			t->rest_len += len;
		}
		t->in = t->rest;
		t->in_len = t->rest_len;
	} else {
		t->in = in;
		t->in_len = len;
	}
	r = tlsconn_drive(t);
	/* Keep what OpenSSL did not read (on_plain paused): the caller's buffer goes away. */
	if (t->in_len && r == 0) {
		if (t->rest && t->in >= t->rest && t->in < t->rest + t->rest_len) {
			memmove(t->rest, t->in, t->in_len);
		} else {
			char *p = malloc(t->in_len);
			if (!p) {
				t->failed = true;
				snprintf(t->err, sizeof t->err, "out of memory");
				r = -1;
			} else {
				free(t->rest);
				memcpy(p, t->in, t->in_len);
				t->rest = p;
			}
		}
		t->rest_len = r == 0 ? t->in_len : 0;
	} else {
		t->rest_len = 0;
	}
	if (t->rest_len == 0) {
		free(t->rest);
		t->rest = NULL;
	}
	t->in = NULL;
	t->in_len = 0;
	tlsconn_trim(t);
	return r;
}

/* See tls.h. */
int tlsconn_write(struct tlsconn *t, const char *data, size_t len)
{
	int r;

	if (!t || t->failed)
		return -1;
	if (t->shut) {
		snprintf(t->err, sizeof t->err, "write after shutdown");
		return -1;
	}
	if (len == 0)
		return 0;
	/* Keep order: anything queued earlier must go first. */
	if (!t->established || t->pend_len)
		return tlsconn_queue_plain(t, data, len);
	r = tlsconn_encrypt(t, data, len);
	tlsconn_trim(t);
	return r;
}

/* See tls.h. */
void tlsconn_shutdown(struct tlsconn *t)
{
	if (!t || t->failed || t->shut)
		return;
	t->shut = true;
	if (!t->established)
		return;
	if (t->pend_len)
		tlsconn_flush_plain(t);
	ERR_clear_error();
	SSL_shutdown(t->ssl);   /* 0: sent ours, not waiting for theirs */
	ERR_clear_error();
	tlsconn_flush_cipher(t);
	tlsconn_trim(t);
}

bool tlsconn_is_established(const struct tlsconn *t)
{
	return t && t->established;
}

const char *tlsconn_version(const struct tlsconn *t)
{
	if (!t || !t->established)
		return "";
	return SSL_get_version(t->ssl);
}

const char *tlsconn_cipher(const struct tlsconn *t)
{
	const SSL_CIPHER *c;
	if (!t || !t->established || !(c = SSL_get_current_cipher(t->ssl)))
		return "";
	return SSL_CIPHER_get_name(c);
}

int tlsconn_cipher_bits(const struct tlsconn *t)
{
	const SSL_CIPHER *c;
	if (!t || !t->established || !(c = SSL_get_current_cipher(t->ssl)))
		return 0;
	return SSL_CIPHER_get_bits(c, NULL);
}

const char *tlsconn_sni(const struct tlsconn *t)
{
	const char *n;
	if (!t || !t->established || !(n = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name)))
		return "";
	return n;
}

int tlsconn_peer_cert(const struct tlsconn *t)
{
	return t && t->peer ? t->peer->state : TLSCONN_CERT_NOT_ASKED;
}

const char *tlsconn_peer_subject(const struct tlsconn *t)
{
	return t && t->peer ? t->peer->subject : "";
}

const char *tlsconn_peer_issuer(const struct tlsconn *t)
{
	return t && t->peer ? t->peer->issuer : "";
}

const char *tlsconn_peer_fingerprint(const struct tlsconn *t)
{
	return t && t->peer ? t->peer->fingerprint : "";
}

const char *tlsconn_peer_verify_error(const struct tlsconn *t)
{
	return t && t->peer ? t->peer->verify_error : "";
}

/* See tls.h. A struct tls_session is an SSL_SESSION. */
int tlsconn_set_session(struct tlsconn *t, struct tls_session *s)
{
	if (!t || !s || t->server || t->established)
		return -1;
	ERR_clear_error();
	if (SSL_set_session(t->ssl, (SSL_SESSION *)s) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* See tls.h. */
struct tls_session *tlsconn_take_session(struct tlsconn *t)
{
	SSL_SESSION *s;

	if (!t || t->server || !t->established || t->failed)
		return NULL;
	tlsconn_shutdown(t);
	s = SSL_get1_session(t->ssl);
	if (s && !SSL_SESSION_is_resumable(s)) {
		SSL_SESSION_free(s);
		s = NULL;
	}
	return (struct tls_session *)s;
}

bool tlsconn_session_reused(const struct tlsconn *t)
{
	return t && t->established && SSL_session_reused(t->ssl) == 1;
}

void tls_session_free(struct tls_session *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}

const char *tlsconn_error(const struct tlsconn *t)
{
	return t ? t->err : "";
}
