/* sasl_dovecot.h — the client side of Dovecot's authentication protocol (v1.x, as Postfix's
 * smtpd_sasl_type = dovecot speaks it), to check SMTP AUTH credentials against the same
 * passdb as IMAP.
 *
 * Two layers:
 *   - a parser for what the server sends (handshake: VERSION, MECH, SPID, CUID, COOKIE,
 *     DONE; replies: OK, CONT, FAIL), fed one line at a time, no I/O — unit-tested and fuzzed;
 *   - an asynchronous client on a libuv loop: one connection per worker to
 *     "unix:/run/dovecot/auth-client" or "inet:127.0.0.1:12345", opened on first use and
 *     again after a loss, requests multiplexed by id, each with a timeout.
 *
 *     struct sasl_dovecot *d = sasl_dovecot_new(loop, "unix:/run/dovecot/auth-client", 10000);
 *     struct sasl_dovecot_req *q = sasl_dovecot_auth(d, SASL_MECH_PLAIN, &info, b64, cb, arg);
 *     ...  cb(arg, res): res->status CONTINUE (send "334 " res->challenge, then
 *          sasl_dovecot_continue(q, answer)), or OK / FAIL / TEMPFAIL (q is gone after it)
 *     sasl_dovecot_cancel(q);    // the session ends first: cb never runs again
 *     sasl_dovecot_free(d);      // in worker_free: handles closed, memory freed on close
 *
 * TEMPFAIL covers everything that is not the service's verdict: no connection, a lost one,
 * a protocol error, the timeout, or Dovecot's own "temp" failure. The session answers
 * 454 4.7.0 to it (RFC 4954 6), 535 5.7.8 to FAIL. */
#ifndef MX_SASL_DOVECOT_H
#define MX_SASL_DOVECOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sasl.h"

#define SASL_DOVECOT_MAX_LINE 16384   /* the protocol's documented expectation */

/* ---- addresses ------------------------------------------------------------------------- */

struct sasl_dovecot_addr {
	bool unix_socket;
	char path[108];              /* unix: the socket path */
	char host[64];               /* inet: numeric IPv4 or IPv6 address */
	uint16_t port;
};
/* Parses "unix:/path" or "inet:host:port" ("inet:[::1]:port" for IPv6; numeric only).
 * 0, or -1 with *why (static). */
int sasl_dovecot_parse_addr(const char *s, struct sasl_dovecot_addr *out, const char **why);

/* ---- the parser ------------------------------------------------------------------------ */

enum sd_event {
	SD_EV_NONE = 0,     /* a handshake line taken in, nothing to report */
	SD_EV_READY,        /* DONE: the handshake is complete, requests may go */
	SD_EV_OK,           /* OK <id>: authenticated */
	SD_EV_CONT,         /* CONT <id> <base64>: a challenge */
	SD_EV_FAIL,         /* FAIL <id>: refused (temp set: the service's own trouble) */
	SD_EV_ERROR,        /* a protocol violation: drop the connection */
};

struct sd_parser {
	bool version_ok;             /* VERSION 1.x seen */
	bool ready;                  /* DONE seen */
	unsigned mechs;              /* bit (1u << enum sasl_mech) for each offered mechanism */
};

/* One reply, pointing into the line (valid until the next line is parsed). */
struct sd_reply {
	unsigned id;
	const char *data;            /* CONT: the base64 challenge ("" allowed) */
	size_t data_len;
	char user[SASL_MAX_FIELD + 1];   /* OK / FAIL user=, tab-unescaped; "" when absent */
	char reason[256];            /* FAIL reason=, tab-unescaped, for logs; "" when absent */
	bool temp;                   /* FAIL ... temp */
	const char *error;           /* SD_EV_ERROR: why (static) */
};

void sd_parser_init(struct sd_parser *p);
/* Parses one line (without its LF; a trailing CR is tolerated). Returns the event and fills
 * r for OK / CONT / FAIL / ERROR. Unknown handshake lines and optional parameters are
 * ignored, as the protocol asks; a reply before DONE, a major version other than 1, a line
 * over SASL_DOVECOT_MAX_LINE, a NUL, a missing or bad id are errors. */
enum sd_event sd_parse_line(struct sd_parser *p, const char *line, size_t len, struct sd_reply *r);

/* ---- the client ------------------------------------------------------------------------ */

enum sasl_dovecot_status {
	SASL_DOVECOT_OK = 0,
	SASL_DOVECOT_CONTINUE,
	SASL_DOVECOT_FAIL,
	SASL_DOVECOT_TEMPFAIL,
};

struct sasl_dovecot_result {
	enum sasl_dovecot_status status;
	const char *challenge;       /* CONTINUE: base64 to send as "334 <challenge>" */
	const char *user;            /* OK: the name Dovecot knows the user by; FAIL: if given */
	const char *reason;          /* FAIL / TEMPFAIL: for logs, never for the client */
};

/* What the request tells Dovecot about the session (Postfix sends the same). */
struct sasl_dovecot_info {
	const char *service;         /* "smtp" */
	const char *local_ip;        /* lip=, may be NULL */
	const char *remote_ip;       /* rip=, may be NULL */
	unsigned local_port, remote_port;  /* lport= / rport=, 0 = not sent */
	bool secured;                /* TLS (or a local connection): Dovecot allows plaintext */
};

typedef void (*sasl_dovecot_cb)(void *arg, const struct sasl_dovecot_result *res);

struct sasl_dovecot;
struct sasl_dovecot_req;

/* A client for address on loop; timeout_ms bounds each wait for the service: a request from
 * its start (connect and handshake included) and again from each continue(); the time a
 * challenge waits for the caller's answer is not counted (the session times its client). NULL on a bad address or out of memory. Loop thread only. */
struct sasl_dovecot *sasl_dovecot_new(uv_loop_t *loop, const char *address, uint64_t timeout_ms);
/* Cancels every request (no callback runs), closes the connection; memory is released in
 * the handles' close callbacks. NULL is a no-op. */
void sasl_dovecot_free(struct sasl_dovecot *d);

/* Starts an authentication. initial_b64: the client's initial response as sent (base64 or
 * "=" for empty), or NULL. cb runs for each challenge and once with the outcome; it may run
 * before this returns (a dead service: TEMPFAIL at once), in which case NULL is returned. */
struct sasl_dovecot_req *sasl_dovecot_auth(struct sasl_dovecot *d, enum sasl_mech mech,
    const struct sasl_dovecot_info *info, const char *initial_b64, sasl_dovecot_cb cb, void *arg);
/* Answers the last challenge with the client's base64 line. 0, or -1 when q is not waiting
 * for one (the outcome then still comes through cb). */
int sasl_dovecot_continue(struct sasl_dovecot_req *q, const char *response_b64);
/* Abandons q: cb never runs again; q must not be used. NULL is a no-op. */
void sasl_dovecot_cancel(struct sasl_dovecot_req *q);
/* Opens the connection now if there is none (and none failed a moment ago), so that the
 * mechanisms are known before the first client asks (EHLO). Loop thread only. */
void sasl_dovecot_prepare(struct sasl_dovecot *d);
/* The mechanisms the service offered in its last completed handshake: bit (1u << enum
 * sasl_mech) each; 0 while no handshake has completed yet. Kept across a lost connection. */
unsigned sasl_dovecot_mechs(const struct sasl_dovecot *d);
/* Requests in flight (tests). */
size_t sasl_dovecot_pending(const struct sasl_dovecot *d);

#endif
