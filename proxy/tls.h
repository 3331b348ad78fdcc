/* tls.h — TLS over memory BIOs (OpenSSL 3.0). No I/O of its own: the caller feeds
 * ciphertext read from the socket and sends what on_cipher hands it.
 *
 * A struct tls_ctx (an SSL_CTX) is built once per config generation and shared by every
 * session of every worker (atomic refcount). A struct tlsconn is one connection's state and
 * belongs to one thread. Callbacks must not free the tlsconn they are called from. */
#ifndef MX_TLS_H
#define MX_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct tls_ctx;

/* Server context from PEM files (cert may hold the chain). TLS 1.2+ (1.3+ if min_tls13);
 * ciphers: an OpenSSL cipher list for TLS 1.2 (NULL = OpenSSL's default). Renegotiation
 * and compression off, server-side session cache on. Returns a context holding one
 * reference, or NULL with the reason (including OpenSSL's) in err. cert2/key2 (NULL: none):
 * a second pair of another key type (ECDSA beside RSA): OpenSSL sends the one the client's
 * signature algorithms allow; err then starts "second certificate"/"second key" when it is
 * the second pair that failed. */
struct tls_ctx *tls_ctx_new_server(const char *cert, const char *key, const char *cert2,
    const char *key2, int min_tls13, const char *ciphers, char *err, size_t errlen);
/* Adds to server context t a certificate (and an optional second of another key type) that
 * a client's SNI chooses when it matches the certificate's names (X509_check_host: the
 * subjectAltName DNS entries, wildcards included); the first match wins, no match or no SNI
 * keeps t's own. Same settings as t. Before t is shared; -1 with err. */
int tls_ctx_add_sni(struct tls_ctx *t, const char *cert, const char *key, const char *cert2,
    const char *key2, int min_tls13, const char *ciphers, char *err, size_t errlen);
/* Client certificates on server context t and its SNI contexts (Postfix's smtpd_tls_ask_ccert
 * / smtpd_tls_req_ccert / smtpd_tls_CAfile): mode TLS_CCERT_NONE asks for none; ASK asks,
 * verifies what comes against cafile (may be NULL: nothing verifies) and lets the handshake
 * finish either way; REQUIRE fails the handshake without a certificate that verifies against
 * cafile (required then). The CA names of cafile are sent in the request. Call after the
 * SNI contexts were added and before t is shared; -1 with err. */
enum tls_ccert { TLS_CCERT_NONE = 0, TLS_CCERT_ASK, TLS_CCERT_REQUIRE };
int tls_ctx_set_client_verify(struct tls_ctx *t, int mode, const char *cafile, char *err, size_t errlen);
/* TLS 1.3 cipher suites on server context t and its SNI contexts (OpenSSL's
 * SSL_CTX_set_ciphersuites: names such as TLS_AES_128_GCM_SHA256, ':'-separated, in the
 * server's order of preference); NULL or "" keeps OpenSSL's default. Stricter than OpenSSL,
 * which skips a name it does not know while one other is known: every name must be one.
 * Before t is shared; -1 with err (starting "ciphersuites"). */
int tls_ctx_set_ciphersuites(struct tls_ctx *t, const char *suites, char *err, size_t errlen);
/* Client context for STARTTLS to backends: opportunistic, TLS 1.2+, no verification. */
struct tls_ctx *tls_ctx_new_client(char *err, size_t errlen);
/* Client context that verifies the backend's certificate (backends.tls_verify): the chain
 * must lead to a CA of cafile (PEM; NULL or "": the system's), TLS 1.2+. NULL with err when
 * the CA file cannot be loaded. */
struct tls_ctx *tls_ctx_new_client_verify(const char *cafile, char *err, size_t errlen);
void tls_ctx_ref(struct tls_ctx *c);
/* Drops one reference; frees on the last. NULL is a no-op. */
void tls_ctx_unref(struct tls_ctx *c);

struct tlsconn;
struct tlsconn_ops {
	/* Decrypted application bytes (in order). Return 0, or -1 to stop feeding: the rest
	 * stays buffered and a later tlsconn_feed (len may be 0) resumes. */
	int (*on_plain)(void *arg, const char *data, size_t len);
	/* Ciphertext to send to the peer (the caller copies/queues it). Return 0 or -1
	 * (-1 makes the current tlsconn_* call fail). */
	int (*on_cipher)(void *arg, const char *data, size_t len);
	/* Handshake finished (called once). May be NULL. */
	void (*on_established)(void *arg);
};

/* A connection using ctx (takes its own reference). server: accept side; sni: the name
 * a client sends (may be NULL; "host:port" is accepted and the port dropped; address
 * literals are not sent, per RFC 6066 3). ops is copied. Returns NULL on allocation failure. */
struct tlsconn *tlsconn_new(struct tls_ctx *ctx, bool server, const char *sni,
    const struct tlsconn_ops *ops, void *arg);
void tlsconn_free(struct tlsconn *t);  /* NULL ok */
/* Client side, before tlsconn_start, on a context that verifies: the certificate must name
 * name (a host name: a DNS subjectAltName, or the CN without one; an address literal,
 * bracketed or not: an IP subjectAltName; ":port" is dropped). A host name is also sent as
 * SNI when tlsconn_new sent none (the server was addressed by IP). 0 or -1. */
int tlsconn_set_verify_name(struct tlsconn *t, const char *name);
/* Client side: emits the ClientHello via on_cipher. 0 or -1. */
int tlsconn_start(struct tlsconn *t);
/* Ciphertext from the network: drives the handshake, calls on_plain for data and
 * on_cipher for anything to send back. Returns 0, -1 on a fatal TLS error (reason via
 * tlsconn_error; any alert was already passed to on_cipher; every later call fails too),
 * or 1 once the peer's close_notify has been read. */
int tlsconn_feed(struct tlsconn *t, const char *in, size_t len);
/* Plaintext to send: encrypts and emits via on_cipher. Before the handshake completes the
 * data is buffered and flushed right after it. 0 or -1. */
int tlsconn_write(struct tlsconn *t, const char *data, size_t len);
/* Sends close_notify via on_cipher (once). */
void tlsconn_shutdown(struct tlsconn *t);
bool tlsconn_is_established(const struct tlsconn *t);
/* Negotiated protocol ("TLSv1.3"), cipher ("TLS_AES_256_GCM_SHA384") and its secret bits;
 * "" / 0 before the handshake. Strings are static or live as long as t. */
const char *tlsconn_version(const struct tlsconn *t);
const char *tlsconn_cipher(const struct tlsconn *t);
int tlsconn_cipher_bits(const struct tlsconn *t);
/* The server name (SNI) the client asked for, "" if none or before the handshake. On a
 * client connection: the name that was sent. Valid as long as t. */
const char *tlsconn_sni(const struct tlsconn *t);
/* The client's certificate on a server connection, after the handshake (a resumed session
 * keeps the first handshake's): the state, and for a certificate that came its subject's and
 * issuer's common names (printable ASCII; '?' for anything else, '"', '\\', '(' and ')'
 * included, so they fit a log value or a Received comment; "" when there is no CN), its
 * SHA-256 fingerprint ("AB:CD:...", 95 characters, as Postfix's smtpd_tls_fingerprint_digest
 * = sha256 prints it) and, when it did not verify, OpenSSL's reason. Strings live as long as t. */
enum tlsconn_peer_cert {
	TLSCONN_CERT_NOT_ASKED = 0,   /* no certificate was asked for (or no TLS yet) */
	TLSCONN_CERT_NONE,            /* asked for, none was sent */
	TLSCONN_CERT_UNVERIFIED,      /* sent, did not verify against the CA file */
	TLSCONN_CERT_VERIFIED,        /* sent and verified */
};
int tlsconn_peer_cert(const struct tlsconn *t);
const char *tlsconn_peer_subject(const struct tlsconn *t);
const char *tlsconn_peer_issuer(const struct tlsconn *t);
const char *tlsconn_peer_fingerprint(const struct tlsconn *t);
const char *tlsconn_peer_verify_error(const struct tlsconn *t);
/* ---- client session resumption (RFC 8446 2.2: a TLS 1.3 ticket; RFC 5077 / a session id
 * in TLS 1.2) ----------------------------------------------------------------------------
 * A session a later connection to the same server, with the same context, server name and
 * name to verify, may resume: the server's certificate is not sent again, its ECDHE share
 * is (OpenSSL offers psk_dhe_ke only). Opaque, owned by whoever took it. */
struct tls_session;
/* Client side, before tlsconn_start: offers s for resumption (t takes its own reference).
 * A server that does not take it (another process, new ticket keys, an expired ticket)
 * does a full handshake, its certificate verified as for any other. 0 or -1. */
int tlsconn_set_session(struct tlsconn *t, struct tls_session *s);
/* Client side, once the handshake is done and (TLS 1.3) the server's tickets were read:
 * the session to offer next time, the caller's to free with tls_session_free; NULL when
 * there is none that can be resumed. Sends close_notify first (tlsconn_shutdown): OpenSSL
 * takes a session out of use when its connection ends without one. */
struct tls_session *tlsconn_take_session(struct tlsconn *t);
/* The handshake resumed a session (no certificate was sent). */
bool tlsconn_session_reused(const struct tlsconn *t);
void tls_session_free(struct tls_session *s);   /* NULL ok */

/* Last fatal error ("" if none). Valid as long as t. */
const char *tlsconn_error(const struct tlsconn *t);

#endif
