/* auth.h — the SMTP AUTH verb (RFC 4954) of the session: PLAIN and LOGIN, checked by
 * Dovecot's authentication service (sasl_dovecot.h), guarded against brute force
 * (auth_guard.h). Part of the session: session.c's command table has its row, the SASL
 * answers come in the session's `auth` state.
 *
 * Where AUTH is offered (EHLO "AUTH PLAIN LOGIN"): on a listener with `submission: true`
 * or `auth: true`, when `auth.dovecot` is set, and only over TLS unless
 * auth.allow_plaintext. On a submission listener MAIL before AUTH gets 530 5.7.0.
 *
 * Replies: 334 challenges from Dovecot, 235 2.7.0 success, 535 5.7.8 bad credentials (held
 * by the guard's delay), 501 5.0.0 cancelled by "*", 501 5.5.2 bad base64, 504 5.5.4 an
 * unknown mechanism, 538 5.7.11 AUTH without TLS, 454 4.7.0 the service cannot answer
 * (auth.on_error), 421 4.7.0 and close past auth.max_failures.
 *
 * Log lines (fail2ban: `failregex = event=auth_failed client=<HOST> `):
 *   ID event=auth client=IP user=U mech=PLAIN
 *   ID event=auth_failed client=IP user=U mech=PLAIN failures=N user_failures=M delay_ms=D
 *   ID event=auth_blocked client=IP user=U failures=N user_failures=M
 *   ID event=auth_error client=IP mech=PLAIN reason="..."
 * The user name is the one the client gave (or Dovecot's), with anything but printable
 * ASCII as '?'; never a password. */
#ifndef MX_AUTH_H
#define MX_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "auth_config.h"

struct session;
struct smtp_cmd;
struct mx_config;
struct verdict;

/* ---- per worker (one per config generation, worker.c) ----------------------------------- */

struct auth_worker;
/* NULL when cfg has no auth.dovecot (or out of memory: logged, AUTH then answers 454). */
struct auth_worker *auth_worker_new(const struct mx_config *cfg, uv_loop_t *loop, int worker);
/* Every session using it has ended. NULL is a no-op. */
void auth_worker_free(struct auth_worker *aw);

/* ---- the session's side ------------------------------------------------------------------ */

/* EHLO offers AUTH now (listener, TLS, not yet authenticated). */
bool auth_is_offered(const struct session *s);
/* The mechanisms EHLO announces after "AUTH ": those Dovecot's handshake offered of PLAIN
 * and LOGIN, as Postfix lists Dovecot's (both while not known yet, or if it offered
 * neither). Static string. Also opens the connection to Dovecot when there is none. */
const char *auth_mechanisms(const struct session *s);
/* The line reader's capacity for s (incl. CRLF): limits.max_line_length, or on a listener
 * offering AUTH an AUTH line of SASL_MAX_LINE octets (RFC 4954 4: a mechanism's longest
 * response must fit, as an initial response or a 334 answer). Other command lines are
 * still held to max_line_length by the session (auth_long_line). */
size_t auth_line_cap(const struct session *s);
/* True when line[0..len) (no CRLF), longer than limits.max_line_length, is still taken: an
 * AUTH command ("AUTH" SP ..., any case) on a listener offering AUTH, within SASL_MAX_LINE
 * with its CRLF, holding no control octet. The session then hands it to the AUTH row
 * without the command parser (whose lines end at 1000 octets): auth_long_cmd. */
bool auth_long_line(const struct session *s, const char *line, size_t len);
/* Fills cmd as the command parser would for such a line: verb SMTP_AUTH, arg pointing into
 * line (which must outlive cmd's use, NUL-terminated at len). */
void auth_long_cmd(struct smtp_cmd *cmd, char *line);
/* MAIL needs AUTH first (a submission listener, not authenticated). */
bool auth_is_required(const struct session *s);
/* The listener offers AUTH (submission or auth, with auth.dovecot): a refusal at connect
 * waits for MAIL there, so that AUTH can lift it (auth_session_lift_refusal). */
bool auth_may_lift(const struct session *s);

/* MAIL's AUTH= parameter (RFC 4954 5), where the listener offers AUTH: its value must be
 * xtext (RFC 3461 4), else reply gets 501 5.5.4 and SESSION_CHECK_ERROR is returned. It is
 * never passed on (the backend learns the user by XCLIENT LOGIN=): the same as AUTH=<>.
 * *offered says whether the listener takes the parameter at all (else it is unsupported). */
int auth_check_mail_param(const struct session *s, const struct smtp_cmd *cmd, bool *offered, char *reply,
    size_t cap);

/* The AUTH row of the command table: check (0 = SESSION_CHECK_OK ... as session_check),
 * start (records mechanism and initial response), apply (starts the exchange; the session
 * is busy until Dovecot answers, in the auth state while a 334 waits for the client). */
int auth_cmd_check(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap);
void auth_cmd_start(struct session *s, const struct smtp_cmd *cmd);
void auth_cmd_apply(struct session *s, const struct verdict *v);

/* A line from the client in the auth state (without CRLF; too_long: it did not fit). */
void auth_session_line(struct session *s, const char *line, size_t len, bool too_long);

/* AUTH succeeded while the connect stage's refusal stands (s->conn_verdict): lifts it, and
 * the session's outcome with it (s->refused_code: what the modules hear at close), until
 * auth_session_reset on a session that carries on (STARTTLS) puts both back. */
void auth_session_lift_refusal(struct session *s);
/* The session authenticated (SMTP AUTH) on a listener where AUTH lifts a refusal, and the
 * connect stage's refusal stands: logs event=auth_lifts_refusal, lifts it
 * (auth_session_lift_refusal) and returns true; else false, nothing done. The caller then
 * runs the connect stage of the modules the refusal cut off (chain_run_cut). */
bool auth_lift_connect_refusal(struct session *s);
/* STARTTLS (RFC 3207 4.2: forget what came before) and session close: an exchange in
 * flight is abandoned (no callback runs after this). */
void auth_session_reset(struct session *s);
/* session_free: releases the session's AUTH state. */
void auth_session_free(struct session *s);

#endif
