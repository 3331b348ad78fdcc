/* tls.c — OpenSSL 3.0 over a pair of memory BIOs.
 *
 * Network bytes go into rbio (tlsconn_feed); whatever OpenSSL writes into wbio is drained
 * to ops.on_cipher after every step. Nothing here blocks or touches a socket, so the same
 * code serves the SMTP server side (STARTTLS / implicit TLS) and the backend client side. */
#include "tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	atomic_int refs;
};

struct tlsconn {
	struct tls_ctx *ctx;
	SSL *ssl;
	BIO *rbio, *wbio;            /* owned by ssl */
	struct tlsconn_ops ops;
	void *arg;
	bool server;
	bool established;
	bool failed;                 /* a fatal error happened: every later call fails */
	bool peer_closed;            /* close_notify read */
	bool shut;                   /* close_notify sent */
	char *pend;                  /* plaintext written before the handshake completed */
	size_t pend_len, pend_cap;
	char err[200];
};

/* Largest plaintext handed to SSL_write at once: bounds how much ciphertext piles up in
 * wbio before it is drained (a 50 MB message must not be encrypted into one buffer). */
enum { TLS_WRITE_CHUNK = 64 * 1024, TLS_IO_BUF = 16 * 1024 };

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
struct tls_ctx *tls_ctx_new_server(const char *cert, const char *key, int min_tls13,
    const char *ciphers, char *err, size_t errlen)
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
	if (!SSL_CTX_set_min_proto_version(c, min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION)) {
		tls_format_error(err, errlen, "min version");
		goto fail;
	}
	if (ciphers && *ciphers && !SSL_CTX_set_cipher_list(c, ciphers)) {
		tls_format_error(err, errlen, "ciphers");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
		char what[300];
		snprintf(what, sizeof what, "certificate %s", cert);
		tls_format_error(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
		char what[300];
		snprintf(what, sizeof what, "key %s", key);
		tls_format_error(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		tls_format_error(err, errlen, "key does not match certificate");
		goto fail;
	}
	/* Resumption: a server-side session cache (needs an id context) plus one stateless
	 * ticket per TLS 1.3 handshake rather than the default two. */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
	SSL_CTX_set_num_tickets(c, 1);
	return tls_ctx_wrap(c, err, errlen);
fail:
	SSL_CTX_free(c);
	return NULL;
}

/* See tls.h. */
struct tls_ctx *tls_ctx_new_client(char *err, size_t errlen)
{
	SSL_CTX *c;

	ERR_clear_error();
	c = SSL_CTX_new(TLS_client_method());
	if (!c) {
		tls_format_error(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	tls_ctx_set_common(c);
	/* Opportunistic STARTTLS (RFC 3207 / RFC 7435): encrypt, do not authenticate. */
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	if (!SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION)) {
		tls_format_error(err, errlen, "min version");
		SSL_CTX_free(c);
		return NULL;
	}
	return tls_ctx_wrap(c, err, errlen);
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
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->rbio || !t->wbio) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		goto fail;
	}
	/* An empty BIO means "wait for more", not end of file. */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		char name[256];
		if (tls_sni_name(sni, name, sizeof name))
			SSL_set_tlsext_host_name(t->ssl, name);
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
	SSL_free(t->ssl);   /* frees both BIOs */
	tls_ctx_unref(t->ctx);
	free(t->pend);
	free(t);
}

/* Marks t failed with reason what (+ OpenSSL's). Always returns -1. */
static int tlsconn_fail(struct tlsconn *t, const char *what)
{
	if (!t->failed)
		tls_format_error(t->err, sizeof t->err, what);
	else
		ERR_clear_error();
	t->failed = true;
	return -1;
}

/* Hands every byte OpenSSL queued for the peer to on_cipher. 0 or -1. */
static int tlsconn_flush_cipher(struct tlsconn *t)
{
	char buf[TLS_IO_BUF];
	size_t pending;

	while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
		int n = BIO_read(t->wbio, buf, pending < sizeof buf ? (int)pending : (int)sizeof buf);
		if (n <= 0)
			return tlsconn_fail(t, "BIO_read");
		if (t->ops.on_cipher(t->arg, buf, (size_t)n) < 0) {
			t->failed = true;
			snprintf(t->err, sizeof t->err, "send refused by caller");
			return -1;
		}
	}
	return 0;
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
	return tlsconn_drive(t) < 0 ? -1 : 0;
}

/* See tls.h. */
int tlsconn_feed(struct tlsconn *t, const char *in, size_t len)
{
	if (!t || t->failed)
		return -1;
	if (t->peer_closed)
		return 1;   /* anything after close_notify is ignored */
	while (len > 0) {
		int chunk = len > INT_MAX / 2 ? INT_MAX / 2 : (int)len;
		int n = BIO_write(t->rbio, in, chunk);
		if (n <= 0)
			return tlsconn_fail(t, "BIO_write");
		in += n;
		len -= (size_t)n;
	}
	return tlsconn_drive(t);
}

/* See tls.h. */
int tlsconn_write(struct tlsconn *t, const char *data, size_t len)
{
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
	return tlsconn_encrypt(t, data, len);
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

const char *tlsconn_error(const struct tlsconn *t)
{
	return t ? t->err : "";
}
