/* session.c — the SMTP session state machine (RFC 5321 server side) and its command table.
 *
 * One `enum session_state` (session_int.h), changed only by session_enter_state(). Each
 * command is one row of session_cmds[]: check (syntax and state, synchronous) -> stage
 * (the module chain, async) -> apply (the verdict: relay to the backend where needed,
 * reply). While a command is in flight the session is busy: input is held (pipelining
 * keeps its order) and reading pauses when too much is held. Every stage's chain ends in
 * one place, session_stage_done_cb(), which hands the verdict to the row's apply.
 *
 * The client's socket, TLS and timers are session_io.c; the backend side of the
 * transaction is smtp_tx.c. */
#include "session_int.h"
#include "auth.h"
#include "sasl.h"
#include "bypass.h"
#include "backend.h"
#include "config.h"
#include "conncount.h"
#include "counters.h"
#include "domain.h"
#include "dsnparam.h"
#include "log.h"
#include "msgbuf.h"
#include "opstats.h"
#include "ownfields.h"
#include "worker.h"
#include "xclient.h"

#include <errno.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SESSION_MAX_TARPIT_MS 600000

/* ---- states ------------------------------------------------------------------------ */

static const char *const session_state_names[SESSION_NSTATES] = {
	[SESSION_NEW] = "new", [SESSION_PROXY] = "proxy", [SESSION_TLS] = "tls",
	[SESSION_CONNECT] = "connect", [SESSION_PREGREET] = "pregreet", [SESSION_COMMAND] = "command",
	[SESSION_REJECTED] = "rejected", [SESSION_BUSY] = "busy", [SESSION_DATA] = "data",
	[SESSION_STARTTLS] = "starttls", [SESSION_AUTH] = "auth", [SESSION_CLOSING] = "closing",
};

const char *session_state_name(enum session_state st)
{
	return st < SESSION_NSTATES ? session_state_names[st] : "?";
}

void session_enter_state(struct session *s, enum session_state st)
{
	if (log_is_debug())
		log_event(LOG_LVL_DEBUG, s->id, "event=state from=%s to=%s", session_state_name(s->state),
		    session_state_name(st));
	s->state = st;
}

bool session_takes_commands(const struct session *s)
{
	return s->state == SESSION_COMMAND || s->state == SESSION_REJECTED || s->state == SESSION_AUTH;
}

void session_enter_idle(struct session *s)
{
	session_enter_state(s, s->conn_verdict.action != VERDICT_CONTINUE ? SESSION_REJECTED : SESSION_COMMAND);
}

/* after-220 protocol tests (session_protocol_fail) */
enum { PT_PIPELINING, PT_BARE_NEWLINE, PT_NON_SMTP };
static bool session_protocol_fail(struct session *s, int test);

/* ---- replies ----------------------------------------------------------------------- */

#define SESSION_REPLY_MAX 1097     /* octets of one reply line, CRLF aside */

/* Appends head[0..hn) then text[0..n) (together at most SESSION_REPLY_MAX) as one reply
 * line, built in place in s->out (no copy on the stack: a reply on the hot path touches
 * no stack area of a kilobyte, issue 10 §5): CR and LF inside are blanked so a reply text
 * never splits, CRLF is added, classes are counted. */
static void session_reply_put(struct session *s, const char *head, size_t hn, const char *text, size_t n)
{
	size_t len = hn + n;

	if (s->out.len + len + 3 > s->out.cap)
		growbuf_grow(&s->out.v, &s->out.cap, 256, s->out.len + len + 3);
	char *line = s->out.v + s->out.len;
	memcpy(line, head, hn);
	memcpy(line + hn, text, n);
	for (char *p = memchr(line, '\r', len); p != NULL; p = memchr(p, '\r', len - (size_t)(p - line)))
		*p = ' ';
	for (char *p = memchr(line, '\n', len); p != NULL; p = memchr(p, '\n', len - (size_t)(p - line)))
		*p = ' ';
	if (len >= 4 && line[3] != '-') {
		/* the reply code: three digits and a space as a rule (atoi otherwise) */
		bool d3 = isdigit((unsigned char)line[0]) && isdigit((unsigned char)line[1]) &&
		    isdigit((unsigned char)line[2]) && !isdigit((unsigned char)line[3]);
		counter_count_reply(d3 ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : atoi(line));
	}
	memcpy(line + len, "\r\n", 3);
	s->out.len += len + 2;
}

void session_reply(struct session *s, const char *fmt, ...)
{
	char line[SESSION_REPLY_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	session_reply_put(s, "", 0, line, (size_t)n < SESSION_REPLY_MAX ? (size_t)n : SESSION_REPLY_MAX);
}

/* One complete reply line as it is ("250 2.0.0 Ok"); no formatting on the hot path. */
static void session_reply_line(struct session *s, const char *text)
{
	size_t n = strlen(text);

	session_reply_put(s, "", 0, text, n < SESSION_REPLY_MAX ? n : SESSION_REPLY_MAX);
}

/* A reply from a backend or a filter: "CODE TEXT" where text may hold several lines
 * ("250-a\r\n250 b") or just "5.7.1 words". Passes multi-line replies through with the
 * given code on each line. line_len > 0: text is one line of that many octets with no CR,
 * LF or NUL (smtp_tx_result.line_len: its producer knows), taken without a scan; 0: the
 * text is scanned for its lines. */
static void session_reply_text(struct session *s, int code, const char *text, size_t line_len)
{
	const char *p = text && *text ? text : "Error";

	if (code < 100 || code > 999)
		code = code < 100 ? 451 : 554;    /* never: codes are the backend's or ours */
	if (p != text)
		line_len = 0;
	while (*p) {
		/* as a rule the line holds no CR or LF but its CRLF: then it goes to s->out as it
		 * is (nothing to blank); otherwise through session_reply_put */
		size_t n = line_len > 0 ? line_len : strcspn(p, "\r\n");
		line_len = 0;
		const char *e = p[n] == '\0' ? NULL : p + n;
		bool clean = e == NULL || (e[0] == '\r' && e[1] == '\n');

		if (!clean) {
			e = strstr(p, "\r\n");
			n = e ? (size_t)(e - p) : strlen(p);
		}
		/* Drop a leading "NNN " or "NNN-" the backend already put there. */
		if (n >= 4 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
		    isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-')) {
			p += 4;
			n -= 4;
		}
		if (n > 1023)
			n = 1023;
		const char head[4] = { (char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10),
			e ? '-' : ' ' };
		if (clean) {
			if (!e)
				counter_count_reply(code);
			/* "NNN " text CRLF in one append's room (the code and CRLF as stores) */
			if (s->out.len + n + 7 > s->out.cap)
				growbuf_grow(&s->out.v, &s->out.cap, 256, s->out.len + n + 7);
			char *o = s->out.v + s->out.len;
			memcpy(o, head, 4);
			memcpy(o + 4, p, n);
			memcpy(o + 4 + n, "\r\n", 3);
			s->out.len += n + 6;
		} else {
			session_reply_put(s, head, 4, p, n);
		}
		if (!e)
			break;
		p = e + 2;
	}
}

/* A client error: counted; past limits.max_errors the session ends. */
void session_error(struct session *s)
{
	counter_inc(COUNTER_PROTOCOL_ERRORS);
	if (++s->errors >= s->cfg->limits.max_errors) {
		session_reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
		/* Named on the session's one disconnect line, with its figures (session_close) */
		s->quit_reason = "too_many_errors";
		s->quit_after_flush = true;
	}
}

/* A refusal's line, counted (opstats_refusal: the one place a refusal is logged): r's id,
 * worker and client are s's; r->level 0 is info. */
void session_refusal_log(const struct session *s, struct opstats_refusal *r, const char *fmt, ...)
{
	char rest[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	r->worker = s->w ? s->w->index : 0;
	r->id = s->id;
	r->client_ip = s->env.client_ip;
	opstats_refusal(r, "%s", rest);
}

/* A refusal's count toward limits.max_errors. A deferral every well-behaved client gets
 * (greylisting's 451, not_an_error) is no error for one message's worth of recipients
 * (limits.max_recipients) since the last delivered message; past that each one is: before,
 * none ever was, and a client looping EHLO (or RSET), MAIL and new recipients made a
 * triplet per RCPT for as long as the session lasted, evicting the first attempts of
 * the senders waiting out their delay (Postfix counts every 4xx a policy server's
 * greylisting gives toward smtpd_hard_error_limit). */
static void session_refusal_count(struct session *s, const struct verdict *v)
{
	if (!v->not_an_error || ++s->deferrals > s->cfg->limits.max_recipients)
		session_error(s);
}

/* Replies with v's refusal and logs it; counted (opstats) unless it repeats a refusal decided
 * and counted before (a connect-stage refusal given again at each MAIL). */
/* The code a refusing verdict is answered with after the greeting: its own when of its
 * class, else 451 (tempfail) or 550 (reject). */
static int session_verdict_code(const struct verdict *v)
{
	int code = v->code;

	if (code == 0)
		code = v->action == VERDICT_TEMPFAIL ? 451 : 550;
	if (v->action == VERDICT_TEMPFAIL && code / 100 != 4)
		code = 451;
	if (v->action == VERDICT_REJECT && code / 100 != 5)
		code = 550;
	return code;
}

/* The reply text a refusing verdict is answered with after the greeting (code from
 * session_verdict_code): its own, or the default of its class. */
static const char *session_verdict_text(const struct verdict *v, int code)
{
	return v->reply[0] ? v->reply : code / 100 == 4 ? "4.7.1 Try again later" : "5.7.1 Rejected";
}

static int session_reply_verdict_as(struct session *s, const struct verdict *v, const char *stage, bool count)
{
	int code = session_verdict_code(v);
	const char *text = session_verdict_text(v, code);
	char rv[300];

	if (code == 421)   /* "closing transmission channel" (RFC 5321 4.2.2): a milter's 421 */
		s->quit_after_flush = true;
	session_reply_text(s, code, text, 0);
	session_refusal_log(s, &(struct opstats_refusal){ .stage = stage, .reason = v->reason,
	    .tempfail = v->action == VERDICT_TEMPFAIL, .code = code, .repeat = !count },
	    "%s%sclient=%s code=%d reply=%s", v->log_extra, v->log_extra[0] ? " " : "", s->env.client_ip, code,
	    log_val(rv, sizeof(rv), text));
	return code;
}

static int session_reply_verdict(struct session *s, const struct verdict *v, const char *stage)
{
	return session_reply_verdict_as(s, v, stage, true);
}

static bool session_verdict_refuses(const struct verdict *v)
{
	return v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL;
}

/* ---- exempt_recipients (RFC 5321 4.5.1, RFC 2142) -----------------------------------
 * A connect refusal that judged who the client is (a DNS list, its reputation, a rate
 * limit's reject: reason) is held to RCPT when exempt_recipients lists anyone: the
 * exempt recipients take the mail, every other RCPT gets the refusal (Postfix's
 * check_recipient_access before reject_rbl_client, with smtpd_delay_reject). */
static bool session_exempt_reason(const struct session *s, const char *reason)
{
	return s->cfg->exempt_recipients.n > 0 && (strcmp(reason, "dnsbl") == 0 ||
	    strcmp(reason, "reputation") == 0 || strcmp(reason, "ratelimit") == 0);
}

/* The client failed a test of its SMTP software with a refusing action (talked before the
 * greeting, pipelined unannounced, a bare LF): a bot, no person asking for a delisting. */
static bool session_failed_protocol(const struct session *s)
{
	const struct pregreet_config *pg = &s->cfg->pregreet;

	return (s->pregreet_hit && (pg->action == PREGREET_REJECT || pg->action == PREGREET_TEMPFAIL)) ||
	    ((s->protocol_failed & (1u << PT_PIPELINING)) && pg->pipelining_action == PROTOCOL_ENFORCE) ||
	    ((s->protocol_failed & (1u << PT_BARE_NEWLINE)) && pg->bare_newline_action == PROTOCOL_ENFORCE);
}

/* s's connect refusal is held to RCPT (MAIL goes on). */
static bool session_exempt_holds(const struct session *s)
{
	return s->conn_verdict.action != VERDICT_CONTINUE && session_exempt_reason(s, s->conn_verdict.reason) &&
	    !session_failed_protocol(s);
}

/* addr (a recipient's path, "Postmaster" alone too) is in exempt_recipients: an item with
 * an @ is the whole address, one without a local part of any domain. Local parts compare
 * case-insensitively, domains as accept_domains compares them (domain_equal: case, one
 * trailing root dot, U-labels), so "abuse@Example.ORG." is abuse@example.org. */
static bool session_rcpt_is_exempt(const struct session *s, const char *addr)
{
	return domain_address_listed(s->cfg->exempt_recipients.v, s->cfg->exempt_recipients.n, addr);
}

void session_note_refusal(struct session *s, int code, const char *reason)
{
	if (s->refused_code)
		return;
	s->refused_code = code;
	snprintf(s->refused_reason, sizeof(s->refused_reason), "%s", reason);
}

void session_refuse_early(struct session *s, const char *reason)
{
	session_note_refusal(s, 421, reason);
	counter_inc(COUNTER_SESSIONS_REJECTED_LIMIT);
	s->quit_after_flush = true;
	session_flush(s);
}

/* A command out of order (a RCPT before MAIL, a DATA before any accepted RCPT, a BDAT with no
 * transaction) answered with reply: a client error every time (session_error: counted in
 * protocol_errors_total, and limits.max_errors ends the session), logged and counted as a
 * refusal, reason=bad_sequence, only the first time in the session: a client that sends a
 * million of them writes one line. stage: the command's verb ("rcpt"). */
static void session_bad_sequence_log(struct session *s, const char *verb, const char *reply)
{
	char stage[16], rv[300];
	size_t i;

	if (s->bad_sequence++ > 0)
		return;
	for (i = 0; verb[i] && i < sizeof(stage) - 1; i++)
		stage[i] = (char)tolower((unsigned char)verb[i]);
	stage[i] = '\0';
	session_refusal_log(s, &(struct opstats_refusal){ .stage = stage, .reason = "bad_sequence",
	    .tempfail = reply[0] == '4', .code = atoi(reply) }, "client=%s code=%d reply=%s", s->env.client_ip, atoi(reply),
	    log_val(rv, sizeof(rv), strlen(reply) > 4 ? reply + 4 : reply));
}

/* A MAIL or RCPT line the parser refused (an unbalanced or malformed path, 501 5.1.7 / 5.1.3;
 * a non-ASCII sender without SMTPUTF8, 553 5.6.7; a control octet): logged and counted as the
 * checks' refusals are (session_check_logged), without the address there is none of. */
static void session_syntax_log(struct session *s, enum smtp_verb verb, const char *reply)
{
	char rv[300];

	session_refusal_log(s, &(struct opstats_refusal){ .stage = verb == SMTP_MAIL ? "mail" : "rcpt",
	    .reason = strncmp(reply, "553 5.6.7", 9) == 0 ? "utf8" : "syntax", .code = atoi(reply) },
	    "client=%s code=%d reply=%s", s->env.client_ip, atoi(reply),
	    log_val(rv, sizeof(rv), strlen(reply) > 4 ? reply + 4 : reply));
}

/* ---- commands in flight ------------------------------------------------------------ */

/* A symbol about the client's behaviour that the session itself adds (outside a filter
 * stage). Outside a transaction it belongs to the session, as a connect or HELO stage's
 * symbols do (chain.c): the transaction resets (the HELO/EHLO itself, MAIL, RSET, after a
 * message) keep it, so the rules engine sees it for every message. */
static void session_add_symbol(struct session *s, const char *name, double score, const char *desc)
{
	hook_env_add_symbol(&s->env, name, score, desc);
	if (s->env.mail_from == NULL)
		s->env.txn_symbols_start = s->env.nsymbols;
}

/* Ends the transaction (an outcome not reported yet is reported as abandoned: RSET, HELO,
 * STARTTLS, a new MAIL) and releases it. */
static void session_txn_reset(struct session *s, bool relay_reusable)
{
	s->rcpt_overshoot = 0;
	chain_txn_abandon(&s->chain);
	smtp_tx_reset(&s->tx, relay_reusable);
}

/* A filter refused the transaction at stage st (name: for the log): its refusal is the
 * reply and the transaction's outcome; the transaction ends. */
static void session_txn_refused(struct session *s, const struct verdict *v, const char *name, enum hook_stage st)
{
	chain_txn_end(&s->chain, session_reply_verdict(s, v, name), st, v->reason);
	session_txn_reset(s, true);
}

/* The command in flight is answered: flush and carry on with held input. A filter's
 * tarpit delay holds the reply (and everything after it) first. */
void session_resume(struct session *s)
{
	if (s->state == SESSION_CLOSING)
		return;
	if (s->tarpit_ms) {
		uint32_t ms = s->tarpit_ms;
		s->tarpit_ms = 0;
		log_event(LOG_LVL_DEBUG, s->id, "event=tarpit ms=%u", ms);
		session_arm_tarpit(s, ms);
		return;
	}
	if (s->state == SESSION_BUSY)
		session_enter_idle(s);
	if (s->state == SESSION_CONNECT || s->state == SESSION_PREGREET)
		return;
	session_process(s);
}

/* When the command went async (busy) the session carries on; a command answered at once
 * lets the input loop go on by itself. */
void session_cmd_done(struct session *s)
{
	if (s->state == SESSION_BUSY)
		session_resume(s);
}

/* Every stage's chain ends here: a filter's tarpit delay is noted, and the verdict goes to
 * the apply of the command (or stage) in flight, unless the session closed meanwhile. */
static void session_stage_done_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (v->delay_ms)
		s->tarpit_ms = v->delay_ms > SESSION_MAX_TARPIT_MS ? SESSION_MAX_TARPIT_MS : v->delay_ms;
	if (s->state == SESSION_CLOSING)
		return;
	s->cmd->apply(s, v);
}

/* Runs c's stage in the busy state (chain_run may complete synchronously). */
/* A client refused at connect (its MAIL gets the refusal) is not judged again by its HELO
 * name: the filters would only refuse it a second time (a milter down at connect, with
 * `on_error: reject`, then again at HELO), and a refused HELO would turn the refusal of
 * every MAIL into "send HELO first". Where AUTH may lift the refusal the stage runs, so an
 * authenticated session has been through it. */
static bool session_stage_moot(const struct session *s, const struct session_cmd *c)
{
	return c->stage == HOOK_HELO && s->conn_verdict.action != VERDICT_CONTINUE && !auth_may_lift(s);
}

static void session_run_stage(struct session *s, const struct session_cmd *c)
{
	s->cmd = c;
	session_enter_state(s, SESSION_BUSY);
	session_disarm(s);
	chain_run(&s->chain, c->stage, session_stage_done_cb, s);
}

/* ---- checks ------------------------------------------------------------------------ */

static enum session_check session_check_reply(char *reply, size_t cap, enum session_check r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum session_check session_check_reply(char *reply, size_t cap, enum session_check r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, cap, fmt, ap);
	va_end(ap);
	return r;
}

/* A MAIL or RCPT check's refusal in reply (set), logged once unless quiet (the look-ahead,
 * session_next_group, asks the same checks of commands it will meet again): event=reject
 * for a 5xx, event=tempfail for a 4xx, stage=mail|rcpt, the check's reason, the address
 * (from= or rcpt=), client=, code= and reply= (the text after the code, as
 * session_reply_verdict's lines). Returns r. */
static enum session_check session_check_logged(const struct session *s, const struct smtp_cmd *cmd, bool quiet,
    const char *reason, enum session_check r, const char *reply)
{
	bool mail = cmd->verb == SMTP_MAIL;
	char av[600], rv[600];

	if (!quiet)
		session_refusal_log(s, &(struct opstats_refusal){ .stage = mail ? "mail" : "rcpt", .reason = reason,
		    .tempfail = reply[0] == '4', .code = atoi(reply) },
		    "%s=%s client=%s code=%d reply=%s", mail ? "from" : "rcpt",
		    log_addr(av, sizeof(av), cmd->addr), s->env.client_ip, atoi(reply),
		    log_val(rv, sizeof(rv), strlen(reply) > 4 ? reply + 4 : reply));
	return r;
}

static enum session_check session_check_refuse(const struct session *s, const struct smtp_cmd *cmd, bool quiet,
    const char *reason, char *reply, size_t cap, enum session_check r, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static enum session_check session_check_refuse(const struct session *s, const struct smtp_cmd *cmd, bool quiet,
    const char *reason, char *reply, size_t cap, enum session_check r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, cap, fmt, ap);
	va_end(ap);
	return session_check_logged(s, cmd, quiet, reason, r, reply);
}

static bool session_tls_offered(const struct session *s)
{
	return s->lc->tls == LISTEN_TLS_STARTTLS && s->wg->shared->tls_server && !s->tls;
}

/* MAIL/RCPT parameters must be ones we announced (RFC 5321 4.1.1.11). */
static enum session_check session_check_params(const struct smtp_cmd *cmd, const char *const *allowed, char *reply,
    size_t cap)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		size_t k = 0;
		while (allowed[k] && strcasecmp(allowed[k], cmd->params[i].key) != 0)
			k++;
		if (allowed[k] == NULL)
			return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "555 5.5.4 Unsupported option: %.64s",
			    cmd->params[i].key);
	}
	return SESSION_CHECK_OK;
}

static enum session_check session_check_helo(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	if (cmd->arg[0] == '\0')
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "501 5.5.4 Syntax: %s hostname",
		    cmd->verb == SMTP_EHLO ? "EHLO" : "HELO");
	return SESSION_CHECK_OK;
}

/* The listener's require_tls as the session's configuration generation has it: a reload
 * applies it to the sessions begun after it (a policy, not part of the socket; Postfix's
 * smtpd_tls_security_level = encrypt takes effect at `postfix reload`). The listener is the
 * one of the same address and TLS mode; s->lc (made at start) otherwise. */
static bool session_require_tls(const struct session *s)
{
	for (size_t i = 0; i < s->cfg->listen.n; i++) {
		const struct listen_config *l = &((const struct listen_config *)s->cfg->listen.v)[i];

		if (l->address && s->lc->address && strcmp(l->address, s->lc->address) == 0 && l->tls == s->lc->tls)
			return l->require_tls;
	}
	return s->lc->require_tls;
}

/* MAIL's checks; each refusal is logged once (session_check_logged) unless quiet: nothing is
 * logged nor counted (a look ahead, session_next_group). */
static enum session_check session_check_mail_in(const struct session *s, const struct smtp_cmd *cmd, bool quiet,
    char *reply, size_t cap)
{
	static const char *const params[] = { "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", NULL };
	/* with AUTH offered, its MAIL parameter too (RFC 4954 5; checked and dropped: auth.c) */
	static const char *const params_auth[] = { "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", NULL };
	bool auth_param;
	const char *err;

	if (s->drain)
		return session_check_refuse(s, cmd, quiet, "draining", reply, cap, SESSION_CHECK_CLOSE,
		    "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
	/* limits.max_mail_commands: transactions (each with the sender's DNS lookups) without
	 * a delivered message; a client at the bound is closed, not answered 5xx again and again */
	if (s->mails >= s->cfg->limits.max_mail_commands)
		return session_check_refuse(s, cmd, quiet, "too_many_transactions", reply, cap, SESSION_CHECK_CLOSE,
		    "421 4.7.0 %s Error: too many transactions without a delivered message, closing", s->cfg->hostname);
	if (session_require_tls(s) && !s->tls)
		return session_check_refuse(s, cmd, quiet, "tls_required", reply, cap, SESSION_CHECK_ERROR,
		    "530 5.7.0 Must issue a STARTTLS command first");
	if (auth_is_required(s))
		return session_check_refuse(s, cmd, quiet, "auth_required", reply, cap, SESSION_CHECK_ERROR,
		    "530 5.7.0 Authentication required");
	if (s->state == SESSION_REJECTED && !session_exempt_holds(s))
		return SESSION_CHECK_REFUSED;	/* logged at connect */
	if (cmd->size > s->cfg->limits.max_message_size)
		return session_check_refuse(s, cmd, quiet, "size", reply, cap, SESSION_CHECK_ERROR,
		    "552 5.3.4 Message size exceeds fixed limit");
	uint64_t avail;
	if (cmd->size > s->cfg->limits.memory_threshold &&
	    !msgbuf_spool_fits(s->cfg->limits.spool_dir, cmd->size, &avail)) {
		static const char spool_full[] = "4.3.1 Insufficient system storage";
		/* SIZE= says the message goes to spool_dir and would take more than half of
		 * its free space: 452 now (RFC 1870 6.2, Postfix's queue check) rather than
		 * after the client sent it all for nothing */
		if (!quiet) {
			counter_inc(COUNTER_SPOOL_ERRORS);
			session_refusal_log(s, &(struct opstats_refusal){ .stage = "mail", .reason = "spool_space",
			    .tempfail = true, .code = 452, .level = LOG_LVL_WARNING },
			    "size=%llu avail=%llu dir=%s client=%s code=452 reply=\"%s\"",
			    (unsigned long long)cmd->size, (unsigned long long)avail,
			    s->cfg->limits.spool_dir ? s->cfg->limits.spool_dir : "/tmp", s->env.client_ip, spool_full);
		}
		return session_check_reply(reply, cap, SESSION_CHECK_REPLY, "452 %s", spool_full);
	}
	/* BINARYMIME is not announced (RFC 3030 3): DATA would then be allowed, the content
	 * is normalised like any other, and the backends were never asked whether they take it */
	if (cmd->body == SMTP_BODY_BINARYMIME)
		return session_check_refuse(s, cmd, quiet, "param", reply, cap, SESSION_CHECK_ERROR,
		    "555 5.5.4 Unsupported option: BODY=BINARYMIME");
	if (auth_check_mail_param(s, cmd, &auth_param, reply, cap) != SESSION_CHECK_OK)
		return session_check_logged(s, cmd, quiet, "param", SESSION_CHECK_ERROR, reply);
	if (session_check_params(cmd, auth_param ? params_auth : params, reply, cap) != SESSION_CHECK_OK)
		return session_check_logged(s, cmd, quiet, "param", SESSION_CHECK_ERROR, reply);
	if ((err = dsnparam_check_mail(cmd)) != NULL)
		return session_check_refuse(s, cmd, quiet, "param", reply, cap, SESSION_CHECK_ERROR, "%s", err);
	/* reject_non_fqdn_sender: a well-formed address (RFC 5321 4.1.2) no reply can reach;
	 * Postfix's code (non_fqdn_reject_code), RFC 5321 has none of its own */
	if (s->cfg->reject_non_fqdn_sender && cmd->addr[0] && !domain_address_is_fqdn(cmd->addr))
		return session_check_refuse(s, cmd, quiet, "non_fqdn_sender", reply, cap, SESSION_CHECK_ERROR,
		    "504 5.5.2 Sender address rejected: need fully-qualified address");
	return SESSION_CHECK_OK;
}

static enum session_check session_check_mail(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	return session_check_mail_in(s, cmd, false, reply, cap);
}

/* RCPT checks that need no backend: a non-ASCII address only in an SMTPUTF8 transaction
 * (RFC 6531 3.4), and every domain the address names in accept_domains (domain.c) unless
 * the client authenticated (SMTP AUTH: its users send anywhere, as Postfix's
 * permit_sasl_authenticated before reject_unauth_destination) or its address is in
 * relay_networks (Postfix's permit_mynetworks, Haraka's relay_acl_allow; the address is the
 * real client's once PROXY or XCLIENT named it). A recipient let through that way is logged
 * with the reason (event=relay relay=auth|network). quiet: nothing is logged nor counted (a
 * look ahead, session_next_group). */
static enum session_check session_check_rcpt_allowed(const struct session *s, const struct smtp_cmd *cmd,
    const char *mail_params, bool quiet, char *reply, size_t cap)
{
	char denied[256];
	const char *err = smtp_cmd_check_utf8(cmd, mail_params[0] != '\0' && strcasestr(mail_params, "SMTPUTF8") != NULL);
	const char *why = NULL;

	if (err)
		return session_check_refuse(s, cmd, quiet, "utf8", reply, cap, SESSION_CHECK_ERROR, "%s", err);
	/* reject_non_fqdn_recipient, before accept_domains (as Postfix's restriction stands
	 * before reject_unauth_destination): the reason the client can act on */
	if (s->cfg->reject_non_fqdn_recipient && !domain_address_is_fqdn(cmd->addr)) {
		return session_check_refuse(s, cmd, quiet, "non_fqdn_recipient", reply, cap, SESSION_CHECK_ERROR,
		    "504 5.5.2 Recipient address rejected: need fully-qualified address");
	}
	if (s->cfg->accept_set == NULL ||
	    domain_set_accepts_address(s->cfg->accept_set, cmd->addr, denied, sizeof(denied)))
		return SESSION_CHECK_OK;
	if (s->env.auth_user != NULL)
		why = "auth";
	else if (s->cfg->relay_networks.n &&
	    cfg_cidrlist_match(&s->cfg->relay_networks, (const struct sockaddr *)&s->env.client))
		why = "network";
	if (quiet)
		return why ? SESSION_CHECK_OK : session_check_reply(reply, cap, SESSION_CHECK_ERROR,
		    "550 5.7.1 relaying denied");
	char rv[600], dv[300];
	if (why) {
		log_event(LOG_LVL_INFO, s->id, "event=relay rcpt=%s domain=%s relay=%s client=%s",
		    log_addr(rv, sizeof(rv), cmd->addr), log_val(dv, sizeof(dv), denied), why, s->env.client_ip);
		return SESSION_CHECK_OK;
	}
	/* the form of every MAIL/RCPT refusal (session_check_logged), the denied domain added */
	session_refusal_log(s, &(struct opstats_refusal){ .stage = "rcpt", .reason = "relay_denied", .code = 550 },
	    "rcpt=%s domain=%s client=%s code=550 reply=\"5.7.1 relaying denied\"", log_addr(rv, sizeof(rv), cmd->addr),
	    log_val(dv, sizeof(dv), denied), s->env.client_ip);
	return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "550 5.7.1 relaying denied");
}

/* RCPT's checks in a transaction from sender (without <>), of sender parameters mail_params,
 * with nrcpts recipients, the first of them first (NULL when none); each refusal is logged
 * once unless quiet (as MAIL's). */
static enum session_check session_check_rcpt_in(const struct session *s, const struct smtp_cmd *cmd, size_t nrcpts,
    const char *sender, const char *first, const char *mail_params, bool quiet, char *reply, size_t cap)
{
	static const char *const params[] = { "NOTIFY", "ORCPT", NULL };
	enum session_check r;
	const char *err;

	if ((long)nrcpts >= s->cfg->limits.max_recipients)
		return session_check_refuse(s, cmd, quiet, "too_many_recipients", reply, cap, SESSION_CHECK_REPLY,
		    "452 4.5.3 Error: too many recipients");
	if ((r = session_check_params(cmd, params, reply, cap)) != SESSION_CHECK_OK)
		return session_check_logged(s, cmd, quiet, "param", r, reply);
	if ((err = dsnparam_check_rcpt(cmd)) != NULL)
		return session_check_refuse(s, cmd, quiet, "param", reply, cap, SESSION_CHECK_ERROR, "%s", err);
	if (cmd->addr[0] == '\0')
		return session_check_refuse(s, cmd, quiet, "syntax", reply, cap, SESSION_CHECK_ERROR,
		    "501 5.1.3 Bad recipient address syntax");
	r = session_check_rcpt_allowed(s, cmd, mail_params, quiet, reply, cap);
	if (r != SESSION_CHECK_OK)
		return r;
	/* deny_senders: this recipient's own deny list, for it alone */
	if (bypass_denies(s->cfg->deny_senders.v, s->cfg->deny_senders.n, sender, cmd->addr))
		return session_check_refuse(s, cmd, quiet, "sender_denied", reply, cap, SESSION_CHECK_ERROR,
		    "550 5.7.1 Sender address rejected: refused by the recipient's policy");
	/* a connect refusal held to here (exempt_recipients): given unless addr is exempt */
	if (s->conn_verdict.action != VERDICT_CONTINUE &&
	    (!session_exempt_holds(s) || !session_rcpt_is_exempt(s, cmd->addr)))
		return SESSION_CHECK_REFUSED;
	/* bypass_mixed: split: one kind of recipient per transaction (as the routes' 452), so a
	 * message check's verdict never falls on a recipient that bypasses it. Not a client
	 * error: it sends that recipient again in a transaction of its own. */
	if (chain_bypass_splits(&s->chain, sender, first, cmd->addr))
		return session_check_refuse(s, cmd, quiet, "bypass_split", reply, cap, SESSION_CHECK_REPLY,
		    "452 4.5.3 Recipients with other content checks go in a separate transaction");
	if (s->conn_verdict.action == VERDICT_CONTINUE)
		return SESSION_CHECK_OK;
	if (!quiet) {
		char av[600];
		log_event(LOG_LVL_INFO, s->id, "event=exempt_recipient rcpt=%s held=%s %s%sclient=%s",
		    log_addr(av, sizeof(av), cmd->addr), s->conn_verdict.reason, s->conn_verdict.log_extra,
		    s->conn_verdict.log_extra[0] ? " " : "", s->env.client_ip);
	}
	return SESSION_CHECK_OK;
}

static enum session_check session_check_rcpt(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	return session_check_rcpt_in(s, cmd, s->env.nrcpts, s->env.mail_from,
	    s->env.nrcpts && s->env.rcpts ? s->env.rcpts[0].addr : NULL, s->env.mail_params, false, reply, cap);
}

/* The session's refusal stands for this transaction: it was set after MAIL (an enforced
 * protocol test that failed on a later command) and no exempt_recipients hold keeps it at
 * RCPT. A recipient taken before it was set carries no message: DATA and BDAT are refused
 * as every RCPT since (postscreen never lets such a client reach DATA). */
static bool session_refusal_stands(const struct session *s)
{
	return s->conn_verdict.action != VERDICT_CONTINUE && !session_exempt_holds(s);
}

static enum session_check session_check_data(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	if (cmd->arg[0])
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "501 5.5.4 Syntax: DATA");
	if (bdat_in_use(&s->bdat))	/* RFC 3030 2: never both in one transaction */
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "503 5.5.1 Error: BDAT and DATA cannot be mixed");
	if (session_refusal_stands(s))
		return SESSION_CHECK_REFUSED;
	return SESSION_CHECK_OK;
}

static enum session_check session_check_starttls(const struct session *s, const struct smtp_cmd *cmd, char *reply,
    size_t cap)
{
	if (!session_tls_offered(s))
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "%s",
		    s->tls ? "503 5.5.1 Error: TLS already active" : "502 5.5.1 Error: command not implemented");
	if (cmd->arg[0])
		return session_check_reply(reply, cap, SESSION_CHECK_REPLY, "501 5.5.4 Syntax: STARTTLS");
	return SESSION_CHECK_OK;
}

/* AUTH (auth.c): offered, not yet done, no transaction, a mechanism we offer. */
static enum session_check session_check_auth(const struct session *s, const struct smtp_cmd *cmd, char *reply,
    size_t cap)
{
	return (enum session_check)auth_cmd_check(s, cmd, reply, cap);
}

/* ---- HELO / EHLO ------------------------------------------------------------------- */

static void session_start_helo(struct session *s, const struct smtp_cmd *cmd)
{
	snprintf(s->env.helo, sizeof(s->env.helo), "%s", cmd->arg);
	s->env.esmtp = cmd->verb == SMTP_EHLO;
}

static void session_apply_helo(struct session *s, const struct verdict *v)
{
	static const struct verdict waits = { .action = VERDICT_CONTINUE };

	/* On a listener offering AUTH a refusal of the HELO name waits for MAIL, where AUTH
	 * lifts it as it lifts one at connect: a MUA names itself as it can ("laptop", the
	 * address literal of its NAT). Unless it sheds load: then it closes at once. */
	if (session_verdict_refuses(v) && auth_may_lift(s) && s->env.auth_user == NULL &&
	    s->conn_verdict.action == VERDICT_CONTINUE) {
		if (session_connect_refusal(s, v)) {
			s->env.helo[0] = '\0';
			session_flush(s);
			return;
		}
		v = &waits;     /* the EHLO is answered; session_resume enters the refused state */
	}
	if (session_verdict_refuses(v)) {
		session_reply_verdict(s, v, "helo");
		s->env.helo[0] = '\0';
		session_error(s);
	} else if (s->cmd->verb == SMTP_EHLO) {
		session_reply(s, "250-%s", s->cfg->hostname);
		session_reply_line(s, "250-PIPELINING");
		session_reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->limits.max_message_size);
		if (session_tls_offered(s))
			session_reply_line(s, "250-STARTTLS");
		if (auth_is_offered(s))
			session_reply(s, "250-AUTH %s", auth_mechanisms(s));
		if (session_xclient_offered(s))
			session_reply_line(s, "250-XCLIENT " XCLIENT_EHLO_ATTRS);
		session_reply_line(s, "250-ENHANCEDSTATUSCODES");
		session_reply_line(s, "250-8BITMIME");
		session_reply_line(s, "250-CHUNKING");
		session_reply_line(s, "250-SMTPUTF8");
		session_reply_line(s, "250 DSN");
	} else {
		session_reply(s, "250 %s", s->cfg->hostname);
	}
	/* A second EHLO resets the transaction as RSET does, and counts as RSET does: before,
	 * a client looping EHLO, MAIL, RCPT went round max_junk_commands without end */
	if (!session_verdict_refuses(v)) {
		if (s->helo_given && ++s->junk > s->cfg->limits.max_junk_commands)
			session_error(s);
		s->helo_given = true;
	}
	session_cmd_done(s);
}

/* ---- MAIL -------------------------------------------------------------------------- */

static void session_start_mail(struct session *s, const struct smtp_cmd *cmd)
{
	uint64_t max = s->cfg->limits.max_message_size;

	s->mails++;     /* limits.max_mail_commands */
	smtp_tx_begin(&s->tx, cmd->addr, cmd->params_raw);
	chain_txn_begin(&s->chain);
	/* A refused chunk of any size is read and thrown away, as Postfix does (the session
	 * stays in step): discarding holds no memory, and limits.data_timeout between reads
	 * and limits.data_deadline for the chunk bound the time it takes. */
	bdat_init(&s->bdat, max, UINT64_MAX, false);
}

static void session_mail_tx_cb(void *arg, const struct smtp_tx_result *r)
{
	struct session *s = arg;

	session_reply_text(s, r->code, r->text, r->line_len);
	if (r->code / 100 != 2) {
		chain_txn_end(&s->chain, r->code, HOOK_MAIL, r->reason);
		session_txn_reset(s, r->reusable);
		session_error(s);
	}
	session_cmd_done(s);
}

static void session_apply_mail(struct session *s, const struct verdict *v)
{
	if (session_verdict_refuses(v)) {
		session_txn_refused(s, v, "mail", HOOK_MAIL);
		session_error(s);
		session_cmd_done(s);
		return;
	}
	/* A client that sent more behind MAIL (pipelining) is not waiting for this reply:
	 * the backend gets MAIL with the first RCPT, in one write (smtp_tx.h). */
	s->tx.mail_deferrable = s->inlen > 0;
	smtp_tx_mail(&s->tx, session_mail_tx_cb, s);
}

/* ---- RCPT -------------------------------------------------------------------------- */

/* p[0..4) is "DATA" in any case (strncasecmp's answer for these letters, without a call). */
static inline bool session_is_data(const char *p)
{
	return (p[0] | 0x20) == 'd' && (p[1] | 0x20) == 'a' && (p[2] | 0x20) == 't' && (p[3] | 0x20) == 'a';
}

static void session_start_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	smtp_tx_set_rcpt(&s->tx, cmd->addr, cmd->params_raw);
}

static void session_rcpt_tx_cb(void *arg, const struct smtp_tx_result *r)
{
	struct session *s = arg;

	session_reply_text(s, r->code, r->text, r->line_len);
	if (r->client_error)
		session_error(s);
	session_cmd_done(s);
}

/* Whether the backend may have DATA before the client's message is judged: no module
 * takes part in the end-of-data stage and no discard or quarantine decided earlier waits
 * there (a pure relay). Else a refusal at the end of data (a verdict filters give often)
 * would cost the backend connection: only a close aborts an open DATA. The lock-step path
 * (session_apply_data) and the pipelined one (data_follows, session_next_group) alike. */
static bool session_data_early_ok(const struct session *s)
{
	return !chain_wants(s->chain.mods, HOOK_EOM) && s->chain.txn_pending == NULL;
}

static void session_apply_rcpt(struct session *s, const struct verdict *v)
{
	if (session_verdict_refuses(v)) {
		session_reply_verdict(s, v, "rcpt");
		opstats_note_rcpt(s->w->index, s->env.mail_from, s->env.cur_rcpt, false);
		counter_inc(COUNTER_RECIPIENTS_REJECTED);
		session_refusal_count(s, v);
		smtp_tx_drop_rcpt(&s->tx);
		session_cmd_done(s);
		return;
	}
	/* The client sent DATA right behind (pipelining): the backend may get it with this
	 * RCPT (smtp_tx.h). As for a lock-step client (session_apply_data), only when no
	 * module judges the end of data and no discard or quarantine waits for it: a message
	 * refused there would cost the backend connection (only a close aborts an open DATA). */
	s->tx.data_follows = s->inlen >= 5 && session_is_data(s->in) && (s->in[4] == '\r' || s->in[4] == '\n') &&
	    session_data_early_ok(s);
	smtp_tx_rcpt(&s->tx, session_rcpt_tx_cb, s);
}

/* ---- DATA and end of data ---------------------------------------------------------- */

#define SESSION_NEXT_MAX_RCPTS 8

/* The commands of a group parsed by the look-ahead, kept so that the command table does
 * not parse them again (smtp_cmd_parse is pure: the same line gives the same result).
 * Taken in order only; any other line empties it. Allocated with a session's first
 * group (SESSION_MEMO_MAX entries: MAIL and the first RCPT), kept with the session. The
 * look-ahead parses into the entries themselves and the command table reads them where
 * they are: an entry stays as it is until the next group's look-ahead (session_next_group,
 * at the end of a message), which is after the command that took it has been started. */
#define SESSION_MEMO_MAX 2
#define SESSION_MEMO_LINE 256
/* Each cmd starts a cache line (the memo is allocated 64-aligned): the fields the parse
 * writes for every command are in the command's first 64 octets (smtp_cmd.h). */
struct session_memo {
	struct {
		_Alignas(64) struct smtp_cmd cmd;
		size_t len;
		char line[SESSION_MEMO_LINE];
	} e[SESSION_MEMO_MAX];
	size_t n, next;
};

/* Where the look-ahead parses line k of a group (entries go in order from 0; k == 0 starts
 * a new group): the memo's entry k, or NULL when it cannot be kept (then: the caller's
 * own storage, and the command is parsed again when its turn comes). */
static struct smtp_cmd *session_memo_slot(struct session *s, size_t k, size_t len)
{
	if (k == 0 && s->memo != NULL)
		s->memo->n = s->memo->next = 0;
	if (k >= SESSION_MEMO_MAX || len > SESSION_MEMO_LINE)
		return NULL;
	if (s->memo == NULL) {
		if ((s->memo = aligned_alloc(_Alignof(struct session_memo), sizeof(*s->memo))) == NULL)
			return NULL;	/* no memo: the commands are parsed again, that is all */
		s->memo->n = s->memo->next = 0;
	}
	return s->memo->n == k ? &s->memo->e[k].cmd : NULL;
}

/* Entry k (its cmd parsed from line[0..len) by the caller) is kept. */
static void session_memo_keep(struct session *s, size_t k, const char *line, size_t len)
{
	s->memo->e[k].len = len;
	memcpy(s->memo->e[k].line, line, len);
	s->memo->n = k + 1;
}

/* The memo's next entry when it is line[0..len)'s (valid until the next group's
 * look-ahead, see struct session_memo); NULL (and the memo emptied) otherwise. */
static const struct smtp_cmd *session_memo_take(struct session *s, const char *line, size_t len)
{
	struct session_memo *m = s->memo;

	if (m == NULL || m->next >= m->n)
		return NULL;
	if (m->e[m->next].len != len || memcmp(m->e[m->next].line, line, len) != 0) {
		m->n = m->next = 0;
		return NULL;
	}
	return &m->e[m->next++].cmd;
}

/* The next complete command line held at s->in + *off (CRLF-terminated, no other CR or LF,
 * shorter than a command may be), parsed and kept as the memo's entry k when it can be
 * (else into *scratch); its parse, or NULL when there is none. */
static const struct smtp_cmd *session_next_line(struct session *s, size_t *off, struct smtp_cmd *scratch, size_t k)
{
	const char *p = s->in + *off, *err = NULL;
	const char *nl = memchr(p, '\n', s->inlen - *off);
	struct smtp_cmd *cmd;
	size_t len;

	if (nl == NULL || nl == p || nl[-1] != '\r' || (len = (size_t)(nl - 1 - p)) > 990 || memchr(p, '\r', len))
		return NULL;
	*off += len + 2;
	cmd = session_memo_slot(s, k, len);
	if (smtp_cmd_parse(p, len, cmd ? cmd : scratch, &err) != 0)
		return NULL;
	if (cmd == NULL)
		return scratch;
	session_memo_keep(s, k, p, len);
	return cmd;
}

/* RFC 2920: a pipelining client's next transaction is often held already when a message
 * ends (MAIL, RCPT..., DATA behind the final dot). When the session is sure to send those
 * very commands to the backend next (each passes its checks as things will stand then, no
 * module judges MAIL, RCPT or DATA, nothing delays or ends the session), the transaction
 * gets them to go ahead with the dot (smtp_tx_set_next): one backend round trip per
 * message instead of two. The commands themselves still run through the command table
 * later, in order; a difference found then costs a fresh backend connection, nothing else. */
static void session_next_group(struct session *s)
{
	struct smtp_cmd scratch_mail, scratch;
	const struct smtp_cmd *mail, *cmd;
	char reply[1024];
	char arena[2048];	/* the recipients' addresses and parameters, NUL-terminated */
	const char *rcpts[SESSION_NEXT_MAX_RCPTS], *rparams[SESSION_NEXT_MAX_RCPTS];
	size_t off = 0, n = 0, used = 0;
	bool data = false;

	if (s->inlen == 0 || linebuf_pending(&s->lb) || s->quit_after_flush || s->tarpit_ms || s->drain ||
	    !s->env.esmtp || s->env.helo[0] == '\0' || s->conn_verdict.action != VERDICT_CONTINUE ||
	    !chain_settled(&s->chain, HOOK_MAIL) || !chain_settled(&s->chain, HOOK_RCPT) ||
	    !chain_settled(&s->chain, HOOK_DATA))
		return;
	if ((mail = session_next_line(s, &off, &scratch_mail, 0)) == NULL || mail->verb != SMTP_MAIL ||
	    session_check_mail_in(s, mail, true, reply, sizeof(reply)) != SESSION_CHECK_OK)
		return;
	while (n < SESSION_NEXT_MAX_RCPTS) {
		/* DATA goes too when it is the line right behind the last RCPT, as
		 * session_apply_rcpt will find it (data_follows). */
		if (n > 0 && s->inlen - off >= 6 && session_is_data(s->in + off) && s->in[off + 4] == '\r' &&
		    s->in[off + 5] == '\n') {
			/* (the next transaction starts with no discard or quarantine pending) */
			data = !chain_wants(s->chain.mods, HOOK_EOM);
			break;
		}
		if ((cmd = session_next_line(s, &off, &scratch, n + 1)) == NULL || cmd->verb != SMTP_RCPT ||
		    session_check_rcpt_in(s, cmd, n, mail->addr, n ? rcpts[0] : NULL, mail->params_raw, true, reply,
		    sizeof(reply)) != SESSION_CHECK_OK)
			break;	/* the group ends before it */
		if (cmd != &scratch) {
			/* the memo's entry: it stays until the next look-ahead */
			rcpts[n] = cmd->addr;
			rparams[n] = cmd->params_raw;
			n++;
			continue;
		}
		size_t la = strlen(cmd->addr) + 1, lp = strlen(cmd->params_raw) + 1;
		if (used + la + lp > sizeof(arena))
			break;	/* the group ends before it (recipients of this size are rare) */
		rcpts[n] = memcpy(arena + used, cmd->addr, la);
		rparams[n] = memcpy(arena + used + la, cmd->params_raw, lp);
		used += la + lp;
		n++;
	}
	if (n > 0)
		smtp_tx_set_next(&s->tx, mail->addr, mail->params_raw, rcpts, rparams, n, data);
}

static void session_apply_data(struct session *s, const struct verdict *v)
{
	if (session_verdict_refuses(v)) {
		session_txn_refused(s, v, "data", HOOK_DATA);
		session_refusal_count(s, v);    /* greylisting the null sender at DATA */
		session_cmd_done(s);
		return;
	}
	if (smtp_tx_data_open(&s->tx) != 0) {
		session_reply_line(s, "451 4.3.0 Error: cannot hold the message");
		chain_txn_end(&s->chain, 451, HOOK_DATA, "spool");
		session_txn_reset(s, true);
		session_cmd_done(s);
		return;
	}
	dataparse_init(&s->dp, s->cfg->limits.bare_lf == BARE_LF_NORMALIZE ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT);
	/* A lock-step client (its DATA did not go with the last RCPT): DATA goes to the backend
	 * now, its 354 comes while the client sends the content, and the end of data costs one
	 * backend round trip, not two. Only when no module judges the end of data and no
	 * discard or quarantine waits for it there: a message refused after this costs the
	 * backend connection (only a close aborts an open DATA), which only the client's own
	 * faults do then (size, NUL, bare LF, leaving). docs/performance.md weighs it. */
	if (session_data_early_ok(s))
		smtp_tx_data_early(&s->tx);
	session_reply_line(s, "354 End data with <CR><LF>.<CR><LF>");
	session_enter_state(s, SESSION_DATA);
	s->data_deadline_at = uv_now(&s->w->loop) + s->cfg->limits.data_deadline;
	session_arm_data(s);
	session_flush(s);
	session_process(s);
}

/* Ends the message with a reply (reason: a log word for the outcome, may be NULL), tells the
 * modules the outcome and resets the transaction (its connection pooled when reusable). */
static void session_message_done_n(struct session *s, int code, const char *text, size_t line_len,
    const char *reason, bool reusable)
{
	session_reply_text(s, code, text, line_len);
	chain_txn_end(&s->chain, code, HOOK_EOM, reason);
	switch (code / 100) {
	case 2:
		counter_inc(COUNTER_MESSAGES_DELIVERED);
		opstats_note_message(s->w->index, s->env.mail_from, s->env.rcpts, s->env.nrcpts, OPS_MSG_DELIVERED);
		break;
	case 4: counter_inc(COUNTER_MESSAGES_TEMPFAILED); break;
	default: counter_inc(COUNTER_MESSAGES_REJECTED); break;
	}
	session_txn_reset(s, reusable);
	session_cmd_done(s);
}

static void session_message_done(struct session *s, int code, const char *text, const char *reason, bool reusable)
{
	session_message_done_n(s, code, text, 0, reason, reusable);
}

/* A message the client got 250 for (delivered, or discarded by a filter: to the client the
 * same): counted, and the client is forgiven its errors and junk commands so far (Postfix's
 * smtpd_hard_error_limit counts errors "without delivering mail", and its cleanup reports a
 * discarded message as received). */
static void session_message_accepted(struct session *s)
{
	s->nmessages++;
	s->mails = 0;
	/* as a rule 0 already: not written then, their line stays clean (session_int.h) */
	if (s->errors)
		s->errors = 0;
	if (s->junk)
		s->junk = 0;
	if (s->deferrals)
		s->deferrals = 0;
}
_Static_assert(offsetof(struct session, mails) % 16 == 0 &&
    offsetof(struct session, nmessages) == offsetof(struct session, mails) + 8, "mails, nmessages: 16 octets");

static void session_message_tx_cb(void *arg, const struct smtp_tx_result *r)
{
	struct session *s = arg;

	if (r->code / 100 == 2)
		session_message_accepted(s);
	session_message_done_n(s, r->code, r->text, r->line_len, r->reason, r->reusable);
}

static void session_apply_eom(struct session *s, const struct verdict *v)
{
	if (s->env.flags & HOOK_FLAG_VIRUS)
		counter_inc(COUNTER_VIRUSES_FOUND);
	if (s->env.flags & HOOK_FLAG_SPAM) {
		counter_inc(COUNTER_SPAM_FOUND);
		opstats_note_message(s->w->index, s->env.mail_from, s->env.rcpts, s->env.nrcpts, OPS_MSG_SPAM);
	}
	switch (v->action) {
	case VERDICT_REJECT:
	case VERDICT_TEMPFAIL:
		counter_inc(v->action == VERDICT_REJECT ? COUNTER_MESSAGES_REJECTED : COUNTER_MESSAGES_TEMPFAILED);
		session_txn_refused(s, v, "data", HOOK_EOM);
		session_cmd_done(s);
		return;
	case VERDICT_DISCARD: {
		char fv[600];
		log_event(LOG_LVL_INFO, s->id, "event=discard queue_id=%s reason=%s from=%s client=%s",
		    s->env.queue_id, v->reason[0] ? v->reason : "filter", log_addr(fv, sizeof(fv), s->env.mail_from),
		    s->env.client_ip);
	}
		counter_inc(COUNTER_MESSAGES_DISCARDED);
		session_message_accepted(s);
		session_reply(s, "250 2.0.0 Ok: queued as %s", s->env.queue_id);
		s->env.flags |= HOOK_FLAG_DISCARDED;
		chain_txn_end(&s->chain, 250, HOOK_EOM, v->reason[0] ? v->reason : "filter");
		session_txn_reset(s, true);
		session_cmd_done(s);
		return;
	case VERDICT_QUARANTINE:
		s->env.flags |= HOOK_FLAG_QUARANTINED;
		if (v->reply[0] && !s->env.quarantine_reason[0])
			snprintf(s->env.quarantine_reason, sizeof(s->env.quarantine_reason), "%.255s", v->reply);
		/* The reason goes in a header of the stored copy (inside the header block; a
		 * sender's own is left out: ownfields.h). */
		hook_env_add_header(&s->env, OWNFIELD_QUARANTINE, s->env.quarantine_reason[0] ?
		    s->env.quarantine_reason : "quarantined by filter");
		break;
	default:
		break;
	}
	if (v->action != VERDICT_QUARANTINE)
		session_next_group(s);
	smtp_tx_deliver(&s->tx, v->action == VERDICT_QUARANTINE, session_message_tx_cb, s);
}

/* The end of data is a stage of its own, not a command. */
static const struct session_cmd session_eom_step = {
	.verb = SMTP_DATA, .stage = HOOK_EOM, .apply = session_apply_eom,
};

/* The final dot: refusals that need no module, then the end-of-data stage. */
static void session_data_end(struct session *s)
{
	session_enter_state(s, SESSION_BUSY);
	session_disarm(s);
	counter_inc(COUNTER_MESSAGES_RECEIVED);
	counter_add(COUNTER_BYTES_RECEIVED, (long)smtp_tx_msg_size(&s->tx));
	/* DATA's content with no line to stuff again is its own wire form (relay_send_message) */
	s->tx.body_wire = !s->bdat_chunk && !s->dp.restuff;
	s->tx.client_bdat = s->bdat_chunk;
	if (s->bdat_chunk) {
		/* BDAT LAST: the chunks' content checks count as DATA's. */
		s->bdat_chunk = false;
		s->dp.bad_line_ending = s->bdat.bad_line_ending;
		s->dp.nul_seen = s->bdat.nul_seen;
		s->dp.nuls = s->bdat.nuls;
	}
	if (s->dp.bad_line_ending)
		counter_inc(COUNTER_BARE_LF);
	/* the lines end in code= and reply= as every refusal's (the reply's text is ours: no
	 * escaping needed, quoted as log_val would) */
	if (smtp_tx_msg_state(&s->tx) == SMTP_TX_MSG_TOO_BIG) {
		static const char reply[] = "5.3.4 Message size exceeds fixed limit";
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "data", .reason = "size", .code = 552 },
		    "size=%llu client=%s code=552 reply=\"%s\"", (unsigned long long)smtp_tx_msg_size(&s->tx),
		    s->env.client_ip, reply);
		session_message_done(s, 552, reply, "size", false);
		return;
	}
	if (s->dp.bad_line_ending && s->cfg->limits.bare_lf == BARE_LF_REJECT) {
		static const char reply[] = "5.6.0 Message contains bare CR or LF line endings, not allowed";
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "data", .reason = "bare_lf", .code = 550 },
		    "client=%s code=550 reply=\"%s\"", s->env.client_ip, reply);
		session_message_done(s, 550, reply, "bare_lf", false);
		return;
	}
	if (s->dp.nul_seen && s->cfg->limits.nul == NUL_REJECT) {
		static const char reply[] = "5.6.0 Message contains NUL characters, not allowed";
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "data", .reason = "nul", .code = 554 },
		    "nuls=%llu client=%s code=554 reply=\"%s\"", (unsigned long long)s->dp.nuls, s->env.client_ip, reply);
		session_message_done(s, 554, reply, "nul", false);
		return;
	}
	if (s->dp.nul_seen)
		log_event(LOG_LVL_INFO, s->id, "event=nul_stripped nuls=%llu client=%s",
		    (unsigned long long)s->dp.nuls, s->env.client_ip);
	/* before the spool check: the filters' view of a message with a sender's owned field
	 * is a copy, which may fail as the spool does */
	smtp_tx_data_end(&s->tx);
	if (smtp_tx_msg_state(&s->tx) == SMTP_TX_MSG_WRITE_ERROR) {
		/* The message could not be held (limits.spool_dir full, removed, unwritable; out
		 * of memory): never relayed in part. A full file system is RFC 5321's 452
		 * "insufficient system storage", RFC 3463's X.3.1 (Postfix's words too). */
		int err = smtp_tx_msg_error(&s->tx);
		bool full = err == ENOSPC || err == EDQUOT;
		int code = full ? 452 : 451;
		const char *reply = full ? "4.3.1 Insufficient system storage, try again later" :
		    "4.3.0 Error: could not store the message, try again later";

		counter_inc(COUNTER_SPOOL_ERRORS);
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "data", .reason = "spool", .tempfail = true,
		    .code = code, .level = LOG_LVL_WARNING }, "detail=\"%s\" dir=%s size=%llu client=%s code=%d reply=\"%s\"",
		    err ? strerror(err) : "out of memory", s->cfg->limits.spool_dir ? s->cfg->limits.spool_dir : "/tmp",
		    (unsigned long long)smtp_tx_msg_size(&s->tx), s->env.client_ip, code, reply);
		session_message_done(s, code, reply, "spool", false);
		return;
	}
	s->cmd = &session_eom_step;
	chain_run(&s->chain, HOOK_EOM, session_stage_done_cb, s);
}

/* ---- BDAT (RFC 3030) ---------------------------------------------------------------- */

/* The chunk's octets follow the command at once: whatever the verdict, they are read (into
 * the message, or thrown away) before the next command, so no chunk content is ever taken
 * for a command. */
static void session_start_bdat(struct session *s, const struct smtp_cmd *cmd)
{
	s->bdat_chunk_size = cmd->size;
	s->bdat_verdict = bdat_begin(&s->bdat, cmd->size, cmd->last, s->env.mail_from != NULL, s->env.nrcpts);
}

static void session_bdat_chunk_end(struct session *s);

/* Reads the chunk in the data state (a refusal is answered already). */
static void session_bdat_read(struct session *s)
{
	int done = 0;

	s->bdat_chunk = true;
	session_enter_state(s, SESSION_DATA);
	if (s->bdat.remaining == 0) {
		/* "BDAT 0 LAST": complete with no octet to read */
		bdat_feed(&s->bdat, "", 0, smtp_tx_data_append, &s->tx, &done);
		session_bdat_chunk_end(s);
		return;
	}
	session_arm_data(s);
	session_flush(s);
	session_process(s);
}

/* The chunk was read: a refused one leaves the session idle (answered before), an accepted
 * one is acknowledged, the LAST one ends the message like DATA's dot. */
static void session_bdat_chunk_end(struct session *s)
{
	if (s->bdat.discarding) {
		s->bdat_chunk = false;
		session_enter_idle(s);
		return;
	}
	if (!s->bdat.last) {
		s->bdat_chunk = false;
		session_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat_chunk_size);
		session_enter_idle(s);
		return;
	}
	session_data_end(s);
}

/* The DATA stage's verdict for the first chunk of a message (filters that judge at DATA
 * judge a BDAT transaction there too). */
static void session_apply_bdat_data(struct session *s, const struct verdict *v)
{
	if (session_verdict_refuses(v)) {
		session_txn_refused(s, v, "data", HOOK_DATA);
		session_refusal_count(s, v);
		s->bdat.discarding = true;
		s->bdat.failed = true;
	} else if (smtp_tx_data_open(&s->tx) != 0) {
		session_reply_line(s, "451 4.3.0 Error: cannot hold the message");
		chain_txn_end(&s->chain, 451, HOOK_DATA, "spool");
		session_txn_reset(s, true);
		s->bdat.discarding = true;
		s->bdat.failed = true;
	} else {
		dataparse_init(&s->dp, DATA_BARE_LF_REJECT);	/* only its counters are used */
		s->data_deadline_at = uv_now(&s->w->loop) + s->cfg->limits.data_deadline;
	}
	session_bdat_read(s);
}

static const struct session_cmd session_bdat_data_step = {
	.verb = SMTP_BDAT, .stage = HOOK_DATA, .apply = session_apply_bdat_data,
};

static void session_apply_bdat(struct session *s, const struct verdict *v)
{
	const char *refusal = bdat_reply(s->bdat_verdict);

	(void)v;
	if (refusal) {
		char rv[300];

		if (s->bdat_verdict == BDAT_NO_MAIL || s->bdat_verdict == BDAT_NO_RCPT)
			session_bad_sequence_log(s, "bdat", refusal);
		else
			session_refusal_log(s, &(struct opstats_refusal){ .stage = "bdat", .reason =
			    s->bdat_verdict == BDAT_AFTER_FAILURE ? "after_failure" : "size", .code = atoi(refusal) },
			    "size=%llu client=%s code=%d reply=%s", (unsigned long long)s->bdat_chunk_size,
			    s->env.client_ip, atoi(refusal), log_val(rv, sizeof(rv), refusal + 4));
		session_reply_line(s, refusal);
		session_error(s);
		/* the chunk is read under the data timers: its own deadline (none may be set
		 * yet: a refusal before any chunk was taken) */
		s->data_deadline_at = uv_now(&s->w->loop) + s->cfg->limits.data_deadline;
		if (s->bdat_verdict == BDAT_TOO_BIG_CLOSE) {
			/* too large to read just to throw away: the stream cannot be kept */
			s->quit_after_flush = true;
			return;
		}
		session_bdat_read(s);
		return;
	}
	if (session_refusal_stands(s)) {
		/* as DATA (session_check_data): the chunk is read and thrown away, and the rest of
		 * the transaction with it (RFC 3030 2) */
		session_reply_verdict_as(s, &s->conn_verdict, "bdat", false);
		session_error(s);
		s->bdat.discarding = true;
		s->bdat.failed = true;
		s->data_deadline_at = uv_now(&s->w->loop) + s->cfg->limits.data_deadline;
		session_bdat_read(s);
		return;
	}
	if (s->tx.msg == NULL) {
		/* The message's first chunk: the DATA stage first (input is held meanwhile). */
		s->tarpit_ms = 0;
		session_run_stage(s, &session_bdat_data_step);
		return;
	}
	session_bdat_read(s);
}

/* ---- STARTTLS and HELP ------------------------------------------------------------- */

static void session_apply_starttls(struct session *s, const struct verdict *v)
{
	/* RFC 3207 / CVE-2011-0411: anything pipelined after STARTTLS is plaintext an
	 * attacker could have injected; it is discarded, never read as a command. */
	if (s->inlen || linebuf_pending(&s->lb)) {
		log_event(LOG_LVL_WARNING, s->id, "event=starttls_injection client=%s bytes=%zu", s->env.client_ip,
		    s->inlen + linebuf_pending(&s->lb));
		session_add_symbol(s, "STARTTLS_PIPELINED", 3.0, "plaintext pipelined after STARTTLS");
		s->inlen = 0;
		linebuf_clear(&s->lb);
	}
	session_reply_line(s, "220 2.0.0 Ready to start TLS");
	session_flush(s);
	if (session_start_tls(s) != 0) {
		session_close(s, "tls_setup_failed");
		return;
	}
	/* RFC 3207 4.2: forget everything learned before TLS. */
	session_txn_reset(s, true);
	auth_session_reset(s);
	s->env.helo[0] = '\0';
	s->helo_given = false;
	s->env.esmtp = false;
	session_enter_state(s, SESSION_STARTTLS);
	session_arm(s, s->cfg->limits.command_timeout, "command_timeout");
}

static void session_apply_help(struct session *s, const struct verdict *v);

/* ---- the command table ------------------------------------------------------------- */

/* In the order HELP names them. A new verb is a row here plus its check/start/apply. */
static const struct session_cmd session_cmds[] = {
	{ .verb = SMTP_EHLO, .flags = CMD_HELP | CMD_RESETS_TXN, .check = session_check_helo,
	  .start = session_start_helo, .stage = HOOK_HELO, .apply = session_apply_helo },
	{ .verb = SMTP_HELO, .flags = CMD_HELP | CMD_RESETS_TXN, .check = session_check_helo,
	  .start = session_start_helo, .stage = HOOK_HELO, .apply = session_apply_helo },
	{ .verb = SMTP_MAIL, .flags = CMD_HELP | CMD_NEEDS_HELO | CMD_NO_MAIL | CMD_RESETS_TXN | CMD_BUSY,
	  .check = session_check_mail, .start = session_start_mail, .stage = HOOK_MAIL, .apply = session_apply_mail },
	{ .verb = SMTP_RCPT, .flags = CMD_HELP | CMD_NEEDS_MAIL | CMD_BUSY, .check = session_check_rcpt,
	  .start = session_start_rcpt, .stage = HOOK_RCPT, .apply = session_apply_rcpt },
	{ .verb = SMTP_DATA, .flags = CMD_HELP | CMD_NEEDS_MAIL | CMD_NEEDS_RCPT | CMD_BUSY, .check = session_check_data,
	  .stage = HOOK_DATA, .apply = session_apply_data },
	{ .verb = SMTP_RSET, .flags = CMD_HELP | CMD_RESETS_TXN | CMD_JUNK, .stage = SESSION_NO_STAGE, .reply = "250 2.0.0 Ok" },
	{ .verb = SMTP_NOOP, .flags = CMD_HELP | CMD_JUNK, .stage = SESSION_NO_STAGE, .reply = "250 2.0.0 Ok" },
	/* QUIT ends an open transaction as RSET does (a callout: MAIL, RCPT, QUIT): its backend
	 * connection gets RSET and is pooled, or QUIT, instead of a close the backend logs as
	 * a lost connection */
	{ .verb = SMTP_QUIT, .flags = CMD_HELP | CMD_QUIT | CMD_RESETS_TXN, .stage = SESSION_NO_STAGE,
	  .reply = "221 2.0.0 Bye" },
	{ .verb = SMTP_VRFY, .flags = CMD_HELP | CMD_JUNK, .stage = SESSION_NO_STAGE,
	  .reply = "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery" },
	{ .verb = SMTP_HELP, .flags = CMD_HELP | CMD_JUNK, .stage = SESSION_NO_STAGE, .apply = session_apply_help },
	{ .verb = SMTP_STARTTLS, .flags = CMD_HELP | CMD_TLS_OFFER, .check = session_check_starttls,
	  .stage = SESSION_NO_STAGE, .apply = session_apply_starttls },
	/* junk as VRFY, its twin: a 502 for ever was a command with no bound at all */
	{ .verb = SMTP_EXPN, .flags = CMD_JUNK, .stage = SESSION_NO_STAGE,
	  .reply = "502 5.5.1 Error: command not implemented" },
	{ .verb = SMTP_AUTH, .flags = CMD_HELP | CMD_AUTH_OFFER | CMD_NEEDS_HELO, .check = session_check_auth, .start = auth_cmd_start,
	  .stage = SESSION_NO_STAGE, .apply = auth_cmd_apply },
	{ .verb = SMTP_BDAT, .flags = CMD_HELP, .stage = SESSION_NO_STAGE, .start = session_start_bdat, .apply = session_apply_bdat },
	{ .verb = SMTP_XCLIENT, .check = session_xclient_check, .start = session_xclient_start,
	  .stage = SESSION_NO_STAGE, .apply = session_xclient_apply },
};

static const struct session_cmd session_cmd_unknown = {
	.verb = SMTP_UNKNOWN, .stage = SESSION_NO_STAGE, .refuse = "500 5.5.2 Error: command not recognized",
};

/* session_cmds by verb (the first row of a verb), made from the table at load time: a
 * command's row without a walk over the rows before it (three to five a message). */
static const struct session_cmd *session_cmd_by_verb[SMTP_HTTP + 1];

__attribute__((constructor)) static void session_cmd_index(void)
{
	for (size_t i = sizeof(session_cmds) / sizeof(session_cmds[0]); i-- > 0;)
		if ((unsigned)session_cmds[i].verb <= SMTP_HTTP)
			session_cmd_by_verb[session_cmds[i].verb] = &session_cmds[i];
}

const struct session_cmd *session_cmd_find(enum smtp_verb verb)
{
	const struct session_cmd *c = (unsigned)verb <= SMTP_HTTP ? session_cmd_by_verb[verb] : NULL;

	return c ? c : &session_cmd_unknown;
}

/* HELP names the verbs the session takes now, as EHLO announces their extensions on this
 * listener: STARTTLS while it is offered, AUTH while EHLO offers it (never on a listener
 * without submission or auth), BDAT always (CHUNKING). */
static void session_apply_help(struct session *s, const struct verdict *v)
{
	char line[256];
	size_t n = (size_t)snprintf(line, sizeof(line), "214 2.0.0 Commands:");

	for (size_t i = 0; i < sizeof(session_cmds) / sizeof(session_cmds[0]) && n < sizeof(line); i++) {
		const struct session_cmd *c = &session_cmds[i];
		if ((c->flags & CMD_HELP) && (!(c->flags & CMD_TLS_OFFER) || session_tls_offered(s)) &&
		    (!(c->flags & CMD_AUTH_OFFER) || auth_is_offered(s)))
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", smtp_verb_name(c->verb));
	}
	session_reply_line(s, line);
}

/* The command-order refusal of c's flags for s as it is now (RFC 5321 4.1.4: 503, and 554 for
 * DATA with no recipient, 3.3), or NULL. */
static const char *session_cmd_sequence_error(const struct session *s, const struct session_cmd *c)
{
	if ((c->flags & CMD_NEEDS_HELO) && s->env.helo[0] == '\0')
		return "503 5.5.1 Error: send HELO/EHLO first";
	if ((c->flags & CMD_NO_MAIL) && s->env.mail_from)
		return "503 5.5.1 Error: nested MAIL command";
	if ((c->flags & CMD_NEEDS_MAIL) && s->env.mail_from == NULL)
		return "503 5.5.1 Error: need MAIL command";
	if ((c->flags & CMD_NEEDS_RCPT) && s->env.nrcpts == 0)
		return "554 5.5.1 Error: no valid recipients";
	return NULL;
}

/* The checks of c for s: the flags' (in this order), then the row's own. */
static enum session_check session_cmd_check_row(const struct session *s, const struct session_cmd *c,
    const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	const char *seq;

	if (c->refuse)
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "%s", c->refuse);
	if ((seq = session_cmd_sequence_error(s, c)) != NULL)
		return session_check_reply(reply, cap, SESSION_CHECK_ERROR, "%s", seq);
	return c->check ? c->check(s, cmd, reply, cap) : SESSION_CHECK_OK;
}

enum session_check session_cmd_check(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	reply[0] = '\0';
	return session_cmd_check_row(s, session_cmd_find(cmd->verb), cmd, reply, cap);
}

/* A non-SMTP command (an HTTP verb, a TLS record), whatever the action: logged with what
 * was sent (its first 100 octets) and the command before it, as postscreen's "NON-SMTP
 * COMMAND from [ip]:port after CONNECT: GET / HTTP/1.0". */
static void session_non_smtp_log(struct session *s, const char *line, size_t len)
{
	char cv[420];

	log_event(LOG_LVL_INFO, s->id, "event=non_smtp client=%s after=%s command=%s", s->env.client_ip,
	    s->cmd == NULL || s->cmd->verb == SMTP_UNKNOWN ? "CONNECT" : smtp_verb_name(s->cmd->verb),
	    log_valn(cv, sizeof(cv), line, len > 100 ? 100 : len));
}

/* Under non_smtp_command_action drop: 421 and the connection closes once it is out. */
static void session_non_smtp_drop(struct session *s, const char *line, size_t len)
{
	session_non_smtp_log(s, line, len);
	session_protocol_fail(s, PT_NON_SMTP);
	session_reply(s, "421 4.7.0 %s Error: non-SMTP command", s->cfg->hostname);
	s->quit_after_flush = true;
}

/* ---- a front end's own mail -------------------------------------------------------------
 * A front end in xclient_hosts is greeted without its connect stage (session_start_connect):
 * it is not the client, the client its XCLIENT names is judged. One that sends MAIL without
 * an XCLIENT mails as itself, and is judged now, as any client is at connect: its connect
 * stage runs first (chain_run_cut: the entries it cut), and its verdict is this MAIL's
 * (a refusal, as a connect refusal is given at MAIL, unless the front end authenticated
 * before: AUTH lifts it; exempt_recipients holds it to RCPT; a rate limit's 421 closes). */
static const struct session_cmd session_front_end_lifted_step;
static const struct session_cmd session_front_end_exempt_step;

static void session_apply_front_end_connect(struct session *s, const struct verdict *v)
{
	if (session_connect_refusal(s, v)) {
		session_txn_reset(s, true);
		session_flush(s);
		return;
	}
	/* A front end that authenticated first (AUTH, then MAIL as itself) has the refusal
	 * lifted as any client's is after AUTH (auth_dovecot_cb; it was judged only now, after
	 * its AUTH): the modules the refusal cut off then see the connect, and a refusal of
	 * theirs stands, as after AUTH (auth_connect_done_cb). */
	if (s->cmd != &session_front_end_lifted_step && auth_lift_connect_refusal(s)) {
		s->cmd = &session_front_end_lifted_step;
		chain_run_cut(&s->chain, session_stage_done_cb, s);
		return;
	}
	/* A refusal held to RCPT (exempt_recipients), as at a client's connect
	 * (session_apply_connect): the entries it cut off see the connect first, a refusal of
	 * theirs stands; then this MAIL goes on. */
	if (s->cmd != &session_front_end_exempt_step && s->cmd != &session_front_end_lifted_step &&
	    session_exempt_holds(s)) {
		s->cmd = &session_front_end_exempt_step;
		chain_run_cut(&s->chain, session_stage_done_cb, s);
		return;
	}
	if (s->conn_verdict.action != VERDICT_CONTINUE && !session_exempt_holds(s)) {
		session_txn_reset(s, true);
		session_reply_verdict_as(s, &s->conn_verdict, "mail", false);
		session_error(s);
		session_cmd_done(s);
		return;
	}
	session_run_stage(s, session_cmd_find(SMTP_MAIL));
}

static const struct session_cmd session_front_end_connect_step = {
	.verb = SMTP_MAIL, .stage = HOOK_CONNECT, .apply = session_apply_front_end_connect,
};
static const struct session_cmd session_front_end_lifted_step = {
	.verb = SMTP_MAIL, .stage = HOOK_CONNECT, .apply = session_apply_front_end_connect,
};
static const struct session_cmd session_front_end_exempt_step = {
	.verb = SMTP_MAIL, .stage = HOOK_CONNECT, .apply = session_apply_front_end_connect,
};

static void session_run_front_end_connect(struct session *s)
{
	s->connect_deferred = false;
	log_event(LOG_LVL_INFO, s->id, "event=connect_judged reason=mail_without_xclient client=%s",
	    s->env.client_ip);
	s->cmd = &session_front_end_connect_step;
	session_enter_state(s, SESSION_BUSY);
	session_disarm(s);
	chain_run_cut(&s->chain, session_stage_done_cb, s);
}

/* One command line: parse, the row's check, then its stage and apply. */
static void session_cmd_line(struct session *s, const char *line, size_t len)
{
	static const struct verdict go_on = { .action = VERDICT_CONTINUE };
	const struct session_cmd *c;
	struct smtp_cmd parsed;
	/* the look-ahead's parse where it is, valid up to c->start (session_memo_take) */
	const struct smtp_cmd *cmd = NULL;
	const char *err = NULL;
	char reply[1024];

	s->ncommands++;
	if (len + 2 > (size_t)s->cfg->limits.max_line_length) {
		/* an AUTH line past the parser's 1000 octets, let through by the reader (auth_long_line) */
		auth_long_cmd(&parsed, (char *)line);
		cmd = &parsed;
	} else {
		cmd = session_memo_take(s, line, len);
	}
	if (cmd == NULL) {
		if (smtp_cmd_parse(line, len, &parsed, &err) != 0) {
			/* An HTTP verb, or a first word not starting with a letter (JSON, a Redis or
			 * SOCKS probe, binary junk): postscreen's and smtpd's forbidden-commands
			 * default, CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}, which smtpd matches
			 * against the first word: white space before it is no sign of a non-SMTP
			 * client (" NOOP" is a plain 500, Postfix even runs it) */
			size_t w = 0;

			while (w < len && (line[w] == ' ' || line[w] == '\t'))
				w++;
			bool non_smtp = parsed.verb == SMTP_HTTP || (w < len && !isalpha((unsigned char)line[w]));

			if (non_smtp && s->cfg->pregreet.non_smtp_command_action == PROTOCOL_DROP) {
				session_non_smtp_drop(s, line, len);
				return;
			}
			if (non_smtp) {
				session_non_smtp_log(s, line, len);
				session_protocol_fail(s, PT_NON_SMTP);  /* then answered as a bad command */
			}
			if (parsed.verb == SMTP_BDAT) {
				/* Without a size the chunk's end is unknown: what follows could be read as
				 * commands. End the session, with one reply to the one command (RFC 5321
				 * 4.2; until session 22 a 501 and an unasked 421 after it, two replies a
				 * pipelining client pairs with two commands): 421, the one code RFC 5321
				 * 3.8 closes with (Postfix's 521 is RFC 7504's "does not accept mail"),
				 * X.5.4 as the 501 had it. */
				session_reply(s, "421 4.5.4 %s Syntax: BDAT chunk-size [LAST], closing", s->cfg->hostname);
				session_refusal_log(s, &(struct opstats_refusal){ .stage = "bdat", .reason = "syntax",
				    .tempfail = true, .code = 421 }, "client=%s code=421 reply=\"4.5.4 Syntax: BDAT "
				    "chunk-size [LAST], closing\"", s->env.client_ip);
				s->quit_after_flush = true;
				return;
			}
			session_reply_line(s, err ? err : "500 5.5.2 Syntax error");
			if (err && (parsed.verb == SMTP_MAIL || parsed.verb == SMTP_RCPT))
				session_syntax_log(s, parsed.verb, err);
			session_error(s);
			return;
		}
		cmd = &parsed;
	}
	c = session_cmd_find(cmd->verb);
	enum session_check checked = session_cmd_check_row(s, c, cmd, reply, sizeof(reply));
	/* a recipient refused here (in a transaction: a RCPT out of order is no recipient's);
	 * mxgate_recipients_rejected_total counts every RCPT refused, here, by a filter
	 * (session_apply_rcpt) and by the backend (smtp_tx) */
	if (checked != SESSION_CHECK_OK && cmd->verb == SMTP_RCPT) {
		opstats_note_rcpt(s->w->index, s->env.mail_from, cmd->addr, false);
		counter_inc(COUNTER_RECIPIENTS_REJECTED);
	}
	switch (checked) {
	case SESSION_CHECK_OK:
		break;
	case SESSION_CHECK_REPLY:
		session_reply_line(s, reply);
		/* smtpd_recipient_overshoot_limit: past it each 452 for too many recipients is
		 * an error too */
		if (cmd->verb == SMTP_RCPT && (long)s->env.nrcpts >= s->cfg->limits.max_recipients &&
		    ++s->rcpt_overshoot > s->cfg->limits.max_recipient_overshoot)
			session_error(s);
		return;
	case SESSION_CHECK_ERROR:
		session_reply_line(s, reply);
		/* out of order: the flags' refusals, and a row's own 503 (RFC 5321 4.2.3, "bad
		 * sequence of commands": AUTH when authenticated, XCLIENT in a transaction, DATA
		 * after BDAT, STARTTLS twice) */
		if (!c->refuse && (session_cmd_sequence_error(s, c) != NULL || strncmp(reply, "503 ", 4) == 0))
			session_bad_sequence_log(s, smtp_verb_name(cmd->verb), reply);
		session_error(s);
		return;
	case SESSION_CHECK_CLOSE:
		session_reply_line(s, reply);
		s->quit_after_flush = true;
		return;
	case SESSION_CHECK_REFUSED:
		/* the refusal decided (logged, counted) at connect, given at MAIL (at RCPT when
		 * exempt_recipients holds it there) */
		session_reply_verdict_as(s, &s->conn_verdict, cmd->verb == SMTP_RCPT ? "rcpt" :
		    cmd->verb == SMTP_DATA ? "data" : "mail", false);
		session_error(s);
		return;
	}
	if (c->flags & CMD_RESETS_TXN)
		session_txn_reset(s, true);
	if (c->start)
		c->start(s, cmd);
	if (s->connect_deferred && cmd->verb == SMTP_MAIL) {
		s->tarpit_ms = 0;
		session_run_front_end_connect(s);
		return;
	}
	if (c->stage != SESSION_NO_STAGE && !session_stage_moot(s, c) &&
	    ((c->flags & CMD_BUSY) || chain_wants(s->chain.mods, c->stage))) {
		s->tarpit_ms = 0;
		session_run_stage(s, c);
		return;
	}
	/* Nothing to wait for: answered now, the input loop goes on. */
	s->cmd = c;
	if (c->apply) {
		c->apply(s, &go_on);
	} else {
		session_reply_line(s, c->reply);
		if (c->flags & CMD_QUIT)
			s->quit_after_flush = true;
	}
	/* smtpd_junk_command_limit: past it a NOOP (RSET, VRFY, HELP) is still answered, and
	 * is an error: a client cannot hold the session with them for ever */
	if ((c->flags & CMD_JUNK) && ++s->junk > s->cfg->limits.max_junk_commands)
		session_error(s);
}

/* ---- input ------------------------------------------------------------------------- */

/* The header block is complete: modules start their lookups while the body arrives
 * (the same read may have ended the message too). */
static void session_data_headers(struct session *s)
{
	const char *hdr;
	size_t hlen;

	if (smtp_tx_headers_take(&s->tx, &hdr, &hlen))
		chain_headers(&s->chain, hdr, hlen);
}

/* See session_int.h. */
size_t session_data_input(struct session *s, const char *in, size_t n, int *done)
{
	ssize_t used = s->bdat_chunk ? bdat_feed(&s->bdat, in, n, smtp_tx_data_append, &s->tx, done) :
	    dataparse_feed(&s->dp, in, n, smtp_tx_data_append, &s->tx, done);

	if (used < 0)
		used = (ssize_t)n;
	session_data_headers(s);
	return (size_t)used;
}

/* See session_int.h. */
size_t session_data_take_clean(struct session *s, const char *in, size_t n)
{
	size_t k = s->bdat_chunk ? 0 : dataparse_take_clean(&s->dp, in, n);

	if (k > 0) {
		smtp_tx_data_append(&s->tx, in, k);
		session_data_headers(s);
	}
	return k;
}

/* See session_int.h. */
void session_data_input_end(struct session *s)
{
	if (s->bdat_chunk)
		session_bdat_chunk_end(s);
	else
		session_data_end(s);
}

/* ---- after-220 protocol tests (postscreen's deep tests) ------------------------------ */

/* Test `test` failed: its action (pregreet.*_action), once per session. True when the
 * session ends (drop: 521 and close). */
static bool session_protocol_fail(struct session *s, int test)
{
	static const char *const names[] = { "pipelining", "bare_newline", "non_smtp_command" };
	static const char *const syms[] = { "PIPELINING_UNANNOUNCED", "BARE_LF_COMMAND", "NON_SMTP_COMMAND" };
	static const double scores[] = { 1.0, 1.0, 5.0 };
	static const char *const descs[] = { "pipelined commands without EHLO", "command line ended by a bare LF",
		"HTTP or proxy command sent to SMTP" };
	static const char *const acts[] = { "score", "enforce", "drop", "ignore" };
	const struct pregreet_config *pg = &s->cfg->pregreet;
	int action = test == PT_PIPELINING ? pg->pipelining_action :
	    test == PT_BARE_NEWLINE ? pg->bare_newline_action : pg->non_smtp_command_action;

	if (s->protocol_failed & (1u << test))
		return false;
	s->protocol_failed |= 1u << test;
	if (action < PROTOCOL_SCORE || action > PROTOCOL_IGNORE)
		action = PROTOCOL_SCORE;
	log_event(LOG_LVL_INFO, s->id, "event=protocol_test test=%s client=%s action=%s", names[test],
	    s->env.client_ip, acts[action]);
	if (action == PROTOCOL_IGNORE)
		return false;
	session_add_symbol(s, syms[test], scores[test], descs[test]);
	if (action == PROTOCOL_ENFORCE && s->conn_verdict.action == VERDICT_CONTINUE) {
		verdict_set(&s->conn_verdict, VERDICT_REJECT, 550, names[test], "5.5.1 Protocol error");
		session_note_refusal(s, 550, names[test]);
		if (s->state == SESSION_COMMAND)
			session_enter_state(s, SESSION_REJECTED);
	} else if (action == PROTOCOL_DROP && test != PT_NON_SMTP) {
		session_note_refusal(s, 521, names[test]);
		session_reply(s, "521 5.5.1 %s Protocol error", s->cfg->hostname);
		s->quit_after_flush = true;
		return true;
	}
	return false;
}

void session_process(struct session *s)
{
	size_t pos = 0;

	while (pos < s->inlen && !s->quit_after_flush) {
		if (session_takes_commands(s) &&
		    uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) > SESSION_MAX_QUEUED_OUTPUT) {
			s->out_blocked = true;
			break;
		}
		if (s->state == SESSION_DATA) {
			int done = 0;

			pos += session_data_input(s, s->in + pos, s->inlen - pos, &done);
			if (done) {
				/* End-of-data processing may resume the session (and reach this loop
				 * again) synchronously: hand it a compacted buffer. */
				memmove(s->in, s->in + pos, s->inlen - pos);
				s->inlen -= pos;
				pos = 0;
				session_data_input_end(s);
				continue;
			}
			break;
		}
		if (!session_takes_commands(s))
			break;
		/* A TLS record where a command line starts (a ClientHello without STARTTLS) holds
		 * no line end to wait for, as a rule: dropped as its first octets arrive. */
		if (s->state != SESSION_AUTH && linebuf_pending(&s->lb) == 0 &&
		    s->cfg->pregreet.non_smtp_command_action == PROTOCOL_DROP &&
		    smtp_cmd_tls_record(s->in + pos, s->inlen - pos) == 1) {
			s->ncommands++;
			session_non_smtp_drop(s, s->in + pos, s->inlen - pos);
			pos = s->inlen;
			break;
		}
		struct linebuf_line line;
		size_t used = 0;
		if (!linebuf_feed(&s->lb, s->in + pos, s->inlen - pos, &used, &line)) {
			pos += used;
			break;
		}
		pos += used;
		if (s->state == SESSION_AUTH && line.too_long) {
			auth_session_line(s, "", 0, true);
			continue;
		}
		/* the reader takes longer lines for AUTH (auth_line_cap): other commands not */
		if (s->state != SESSION_AUTH && line.len + 2 > (size_t)s->cfg->limits.max_line_length &&
		    !auth_long_line(s, line.data, line.len))
			line.too_long = true;
		if (line.too_long) {
			session_reply_line(s, "500 5.5.2 Error: line too long");
			session_error(s);
			continue;
		}
		if ((line.bare_lf && session_protocol_fail(s, PT_BARE_NEWLINE)) ||
		    (!s->env.esmtp && pos < s->inlen && session_protocol_fail(s, PT_PIPELINING)))
			break;          /* drop: 521, closing */
		/* The line may point into s->in; copy before anything can reallocate it. A command
		 * line fits the stack copy; a longer AUTH line or response (up to SASL_MAX_LINE) is
		 * copied to the heap: a pipelined batch answered at once recurses through here once
		 * a command, and 12 KB a level would overflow the stack. */
		char linecopy[1024 + 64], *lc = linecopy;
		size_t ll = line.len;
		if (ll >= sizeof(linecopy) && (lc = malloc(ll + 1)) == NULL) {
			if (s->state == SESSION_AUTH) {
				auth_session_line(s, "", 0, true);
			} else {
				session_reply_line(s, "500 5.5.2 Error: line too long");
				session_error(s);
			}
			continue;
		}
		memcpy(lc, line.data, ll);
		lc[ll] = '\0';
		/* STARTTLS checks s->inlen for injected plaintext: expose only what follows. */
		memmove(s->in, s->in + pos, s->inlen - pos);
		s->inlen -= pos;
		pos = 0;
		if (s->state == SESSION_AUTH) {
			auth_session_line(s, lc, ll, false);
			explicit_bzero(lc, ll);   /* credentials */
		} else {
			session_cmd_line(s, lc, ll);
		}
		if (lc != linecopy) {
			explicit_bzero(lc, ll);   /* an AUTH line's initial response */
			free(lc);
		}
		if (s->state == SESSION_STARTTLS) {
			s->inlen = 0;
			break;
		}
	}
	if (pos) {
		memmove(s->in, s->in + pos, s->inlen - pos);
		s->inlen -= pos;
	}
	if (s->state == SESSION_CLOSING)
		return;
	/* RFC 2920 3.2: while a command is in flight and the client's next pipelined commands
	 * wait behind it, the replies so far are held and go out with the next ones (the input
	 * runs out, or the message's 354, and they are flushed). */
	/* A filter's tarpit armed by a refusal given at once (a verdict decided synchronously,
	 * reply written, session_resume holding the rest) holds that reply too: it goes out
	 * when the tarpit ends (session_tarpit_cb -> session_resume -> here again). */
	if ((s->state != SESSION_BUSY || s->inlen == 0 || s->quit_after_flush) &&
	    !(s->timer_tarpit && uv_is_active((uv_handle_t *)&s->timer)))
		session_flush(s);
	if (s->state == SESSION_CLOSING)
		return;
	if (s->eof && (session_takes_commands(s) || s->state == SESSION_DATA)) {
		/* The client half-closed: everything it sent is answered. */
		session_close(s, "client_closed");
		return;
	}
	if (session_takes_commands(s)) {
		if (s->drain && s->env.mail_from == NULL) {
			session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			return;
		}
		/* The timeout runs from the start of a line: a client trickling one byte at a time
		 * does not reset it (slowloris). */
		if (linebuf_pending(&s->lb) == 0 || !session_timer_running(s))
			session_arm_command(s);
		if (s->out_blocked)
			session_pause(s);
		else
			session_unpause(s);
	} else if (s->state == SESSION_DATA) {
		session_arm_data(s);
		session_unpause(s);
	}
}

/* ---- connect and greeting ---------------------------------------------------------- */

static void session_greet(struct session *s);

/* XCLIENT HELO=: the name is judged by the HELO stage as an EHLO's would be, before the
 * greeting; a refused name is forgotten (the client must send EHLO, which is judged as
 * ever) and the greeting goes out all the same. */
static void session_xclient_helo_done(struct session *s, const struct verdict *v)
{
	if (session_verdict_refuses(v)) {
		char hv[300];

		log_event(LOG_LVL_INFO, s->id, "event=xclient_helo_refused helo=%s reason=%s client=%s",
		    log_val(hv, sizeof(hv), s->env.helo), v->reason[0] ? v->reason : "filter", s->env.client_ip);
		s->env.helo[0] = '\0';
		s->env.esmtp = false;
	}
	session_greet(s);
}

static const struct session_cmd session_xclient_helo_step = {
	.verb = SMTP_XCLIENT, .stage = HOOK_HELO, .apply = session_xclient_helo_done,
};

static void session_greet(struct session *s)
{
	if (s->state != SESSION_CONNECT && s->state != SESSION_PREGREET)
		return;
	if (s->xclient_helo_pending) {
		s->xclient_helo_pending = false;
		if (s->conn_verdict.action == VERDICT_CONTINUE && chain_wants(s->chain.mods, HOOK_HELO)) {
			s->cmd = &session_xclient_helo_step;
			chain_run(&s->chain, HOOK_HELO, session_stage_done_cb, s);
			return;
		}
	}
	if (s->pregreet_hit) {
		const struct pregreet_config *pg = &s->cfg->pregreet;
		bool refused = s->conn_verdict.action != VERDICT_CONTINUE;

		session_add_symbol(s, "PREGREET", pg->score, "talked before the greeting");
		if (pg->action == PREGREET_REJECT && !refused) {
			verdict_set(&s->conn_verdict, VERDICT_REJECT, 550, "pregreet",
			    "5.5.1 Protocol error: talking before the greeting");
			session_note_refusal(s, 550, "pregreet");
		} else if (pg->action == PREGREET_TEMPFAIL && !refused) {
			verdict_set(&s->conn_verdict, VERDICT_TEMPFAIL, 450, "pregreet",
			    "4.5.1 Protocol error: talking before the greeting");
			session_note_refusal(s, 450, "pregreet");
		} else if (pg->action == PREGREET_DROP) {
			session_note_refusal(s, 521, "pregreet");
			/* The teaser began a 220 reply, and every line of one reply has one code
			 * (RFC 5321 4.2.1): it ends as 220, and the 521 is a reply of its own, as
			 * for a DNS list's drop (postscreen sends the 521 inside its teaser). */
			if (s->teaser_sent)
				session_reply(s, "220 %s ESMTP mxgate", s->cfg->hostname);
			session_reply(s, "521 5.5.1 %s Protocol error", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			return;
		}
		/* The early bytes were a command the client sent blind: discard them so the
		 * session continues in step with what the client reads next. */
	} else if (s->teaser_sent && s->pregreet_waited) {
		/* kept quiet for the whole delay: passed (postscreen_greet_ttl); the pregreet
		 * module writes it to pregreet.pass_store */
		pregreet_pass_note(s->env.client_ip, s->cfg->pregreet.pass_ttl, uv_hrtime());
		if (s->env.pregreet_pass == HOOK_PREGREET_TESTING)
			s->env.pregreet_pass = HOOK_PREGREET_PASSED;
	}
	session_reply(s, "220 %s ESMTP mxgate", s->cfg->hostname);
	session_enter_idle(s);
	session_process(s);
}

void session_pregreet_over(struct session *s)
{
	s->pregreet_waited = true;
	session_greet(s);
}

bool session_connect_refusal(struct session *s, const struct verdict *v)
{
	/* A tempfail judging the client (a DNS list, its reputation) waits for MAIL, like a
	 * reject, where AUTH can lift it; one shedding load (overload, a connection rate)
	 * closes at once everywhere. */
	bool may_wait = (auth_may_lift(s) || session_exempt_reason(s, v->reason)) &&
	    strcmp(v->reason, "overload") != 0 && strcmp(v->reason, "ratelimit") != 0;

	/* A drop (a DNS list's action drop, postscreen's PSC_DROP_SESSION_STATE): 521 in place
	 * of the greeting (RFC 7504 3) and the connection closed; where AUTH may lift the
	 * refusal it waits for MAIL as a 550 instead. */
	bool drop = v->action == VERDICT_REJECT && v->code == 521;

	if ((v->action == VERDICT_TEMPFAIL && !may_wait) || (drop && !auth_may_lift(s))) {
		/* In place of the greeting only 421 means "try later" (RFC 5321 3.1, 4.2.3):
		 * a filter's 450/451 (a milter's on_error, a DNS list) becomes 421. */
		int code = drop ? 521 : 421;
		/* After the teaser the greeting is a 220 reply already, and every line of one
		 * reply has one code (RFC 5321 4.2.1): it ends as 220, and the 421 follows at
		 * once as the answer to whatever the client sends first (3.8). */
		if (s->teaser_sent)
			session_reply(s, "220 %s ESMTP mxgate", s->cfg->hostname);
		session_note_refusal(s, code, v->reason[0] ? v->reason : "filter");
		const char *text = v->reply[0] ? v->reply : drop ? "5.7.1 Service unavailable" :
		    "4.7.0 Service temporarily unavailable";
		char rv[300];

		session_reply_text(s, code, text, 0);
		/* code and reply as on every refusal's line: what the client was told */
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = v->reason,
		    .tempfail = !drop, .code = code }, "%s%sclient=%s code=%d reply=%s", v->log_extra,
		    v->log_extra[0] ? " " : "", s->env.client_ip, code, log_val(rv, sizeof(rv), text));
		s->quit_after_flush = true;
		return true;
	}
	if (v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL) {
		/* Postscreen-style: greet, then refuse every MAIL with the reason (the
		 * client's sender is logged, and clients retry less than after a 554 banner). */
		bool temp = v->action == VERDICT_TEMPFAIL;

		s->conn_verdict = *v;
		if (drop)
			s->conn_verdict.code = 550;     /* refused at MAIL: no greeting to replace */
		if (temp && v->code == 421 && session_exempt_reason(s, v->reason))
			s->conn_verdict.code = 450;     /* held to RCPT: a 421 there would close */
		/* code and reply as the refusal's lines at MAIL (session_reply_verdict_as) will
		 * give them: what the client will be told (before, no code and an empty reply when
		 * the verdict had none, and the MAIL line said 550); the session's outcome records
		 * the same code (until session 32: 450 for a tempfail without one, heard as 451,
		 * and 421 for one held to RCPT, heard as 450) */
		int code = session_verdict_code(&s->conn_verdict);
		char rv[300];

		session_note_refusal(s, code, v->reason[0] ? v->reason : "filter");
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = v->reason,
		    .tempfail = temp, .code = code }, "%s%sclient=%s code=%d reply=%s", v->log_extra,
		    v->log_extra[0] ? " " : "", s->env.client_ip, code,
		    log_val(rv, sizeof(rv), session_verdict_text(&s->conn_verdict, code)));
	}
	return false;
}

static const struct session_cmd session_connect_lifted_step;
static const struct session_cmd session_connect_exempt_step;

static void session_send_teaser(struct session *s);

static void session_apply_connect(struct session *s, const struct verdict *v)
{
	/* A delay asked for at connect (a tarpit: reputation's delay action, a rate limit's)
	 * holds the greeting, together with what is left of the pregreet delay. */
	uint64_t hold = s->tarpit_ms;

	s->tarpit_ms = 0;
	if (session_connect_refusal(s, v)) {
		session_flush(s);
		return;
	}
	/* A client a front end named by XCLIENT as authenticated (LOGIN=, nginx's smtp_auth; or
	 * the front end's own AUTH, which XCLIENT without LOGIN keeps, as in Postfix) has its
	 * refusal lifted as after AUTH (auth_dovecot_cb) where AUTH may lift one: the modules
	 * the refusal cut off then see the connect, and a refusal of theirs stands. */
	if (s->xclient_seen && s->cmd != &session_connect_lifted_step && auth_lift_connect_refusal(s)) {
		s->tarpit_ms = hold;
		s->cmd = &session_connect_lifted_step;
		chain_run_cut(&s->chain, session_stage_done_cb, s);
		return;
	}
	/* A refusal held to RCPT (exempt_recipients): the entries it cut off (a milter) see the
	 * connect now, as after a lifted refusal, so an exempt recipient's message is judged
	 * by all of them; a refusal of theirs stands in its place. */
	if (s->cmd != &session_connect_exempt_step && s->cmd != &session_connect_lifted_step &&
	    session_exempt_holds(s)) {
		s->tarpit_ms = hold;
		s->cmd = &session_connect_exempt_step;
		chain_run_cut(&s->chain, session_stage_done_cb, s);
		return;
	}
	if (v->action == VERDICT_ACCEPT && (s->teaser_sent || s->teaser_held) && s->state == SESSION_CONNECT) {
		/* Allow-listed at connect (reputation.allow, the DNS lists' allow_threshold): the
		 * pregreet test ends, as postscreen's access list and dnsbl whitelist threshold
		 * let a client skip it; what it said early is not held against it. */
		uv_timer_stop(&s->timer);
		if (s->pregreet_hit)
			log_event(LOG_LVL_INFO, s->id, "event=pregreet_skipped reason=allow_listed client=%s",
			    s->env.client_ip);
		s->pregreet_hit = false;
	} else if (s->env.pregreet_pass == HOOK_PREGREET_KNOWN && (s->teaser_sent || s->teaser_held) &&
	    s->state == SESSION_CONNECT && !s->pregreet_hit && !s->pregreet_waited) {
		/* pregreet.pass_store knows the client passed (a restart, another node): the
		 * delay ends with the connect stage, as if this process had known it at connect.
		 * One that already talked after the teaser failed the test all the same. */
		uv_timer_stop(&s->timer);
		log_event(LOG_LVL_INFO, s->id, "event=pregreet_skipped reason=pass_store client=%s",
		    s->env.client_ip);
	}
	if (uv_is_active((uv_handle_t *)&s->timer) && uv_timer_get_due_in(&s->timer) > hold)
		hold = 0;       /* the pregreet delay still runs longer */
	if (hold) {
		log_event(LOG_LVL_DEBUG, s->id, "event=tarpit ms=%llu stage=connect", (unsigned long long)hold);
		session_arm(s, hold, NULL);
	}
	if (uv_is_active((uv_handle_t *)&s->timer)) {
		/* The pregreet delay or the tarpit still runs: its end greets. */
		session_enter_state(s, SESSION_PREGREET);
		session_send_teaser(s);   /* held while the stage ran (chain_teaser_waits) */
		return;
	}
	session_greet(s);
}

/* The pregreet teaser held by session_start_connect goes out now, after the connect stage's
 * synchronous part: the stage still running (a DNS list's query) or ended without a greeting
 * (the pregreet delay holds it). Not after a refusal that closes (the 421 alone) nor after a
 * greeting already sent (an allow-listed client: no test, no teaser). The memory of a
 * session closed meanwhile goes in its close callbacks, a loop iteration later. */
static void session_send_teaser(struct session *s)
{
	/* a rate limit in Redis answers later: its 421 comes alone too (HOOK_MODULE_BEFORE_TEASER) */
	if (!s->teaser_held || chain_teaser_waits(&s->chain))
		return;
	s->teaser_held = false;
	if ((s->state != SESSION_CONNECT && s->state != SESSION_PREGREET) || s->quit_after_flush)
		return;
	session_reply(s, "220-%s ESMTP", s->cfg->hostname);
	s->teaser_sent = true;
	session_flush(s);
}

/* The connect stage went on after an asynchronous answer (chain_on_progress). */
static void session_connect_progress_cb(void *arg)
{
	session_send_teaser(arg);
}

/* The connect stage is a stage of its own, not a command. */
static const struct session_cmd session_connect_step = {
	.verb = SMTP_UNKNOWN, .stage = HOOK_CONNECT, .apply = session_apply_connect,
};
static const struct session_cmd session_connect_lifted_step = {
	.verb = SMTP_UNKNOWN, .stage = HOOK_CONNECT, .apply = session_apply_connect,
};
static const struct session_cmd session_connect_exempt_step = {
	.verb = SMTP_UNKNOWN, .stage = HOOK_CONNECT, .apply = session_apply_connect,
};

void session_start_connect(struct session *s)
{
	const struct pregreet_config *pg = &s->cfg->pregreet;

	s->env.client_port = 0;
	if (s->env.client.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&s->env.client;
		inet_ntop(AF_INET, &a->sin_addr, s->env.client_ip, sizeof(s->env.client_ip));
		s->env.client_port = ntohs(a->sin_port);
	} else if (s->env.client.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->env.client;
		inet_ntop(AF_INET6, &a->sin6_addr, s->env.client_ip, sizeof(s->env.client_ip));
		s->env.client_port = ntohs(a->sin6_port);
		if (strncmp(s->env.client_ip, "::ffff:", 7) == 0 && strchr(s->env.client_ip, '.'))
			memmove(s->env.client_ip, s->env.client_ip + 7, strlen(s->env.client_ip + 7) + 1);
	}
	session_xclient_note_peer(s);
	/* In the connect states the timer is the pregreet delay only (the PROXY header's or
	 * the TLS handshake's timeout ends here). */
	uv_timer_stop(&s->timer);
	/* limits.connection_limit_exceptions: counted, never capped (per_ip 0) */
	enum conncount_result cc = conncount_acquire((const struct sockaddr *)&s->env.client,
	    cfg_cidrlist_match(&s->cfg->limits.connection_limit_exceptions,
	    (const struct sockaddr *)&s->env.client) ? 0 : s->cfg->limits.max_connections_per_ip,
	    s->cfg->limits.client_ipv6_prefix);
	if (cc == CONNCOUNT_REFUSED) {
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = "max_connections_per_ip",
		    .code = 421 }, "client=%s", s->env.client_ip);
		session_reply(s, "421 4.7.0 %s Error: too many connections from %s", s->cfg->hostname, s->env.client_ip);
		counter_conn_refused(CONN_REFUSED_MAX_CONNECTIONS_PER_IP);
		session_refuse_early(s, "max_connections_per_ip");
		return;
	}
	s->counted_ip = cc == CONNCOUNT_COUNTED;
	/* Near the connection limit, clients known to be good keep being served while unknown
	 * ones are turned away first: a module that knows (reputation) does it at connect. */
	s->env.overloaded = conncount_total() > s->cfg->limits.max_connections * 9 / 10;
	/* A balancer's health check (PROXY v2 LOCAL) comes every `inter`: logged at debug and
	 * kept out of the top clients, as HAProxy's dontlognull keeps such connections out of
	 * its log; session_close logs its end at debug too unless it carried mail. */
	log_event(s->lb_check ? LOG_LVL_DEBUG : LOG_LVL_INFO, s->id, "event=connect client=%s port=%d tls=%s",
	    s->env.client_ip, s->env.client_port, s->tls ? "implicit" : "no");
	if (s->env.tls)
		session_log_tls(s);
	if (!s->lb_check)
		opstats_note_session(s->w->index, s->env.client_ip);
	session_enter_state(s, SESSION_CONNECT);
	if (s->xclient_allowed && !s->xclient_seen) {
		/* A front end in xclient_hosts is not the client (Postfix leaves such a peer out of
		 * its connection count and rate limits, and judges the client XCLIENT names): its
		 * own address is neither looked up in the DNS lists, counted by the rate limits nor
		 * scored, and it is greeted at once. The connect stage runs for the client its
		 * XCLIENT names, or for the front end itself at a MAIL sent without one. */
		log_event(LOG_LVL_DEBUG, s->id, "event=connect_deferred reason=xclient_hosts client=%s",
		    s->env.client_ip);
		s->connect_deferred = true;
		chain_cut_connect(&s->chain);
		session_unpause(s);
		session_greet(s);
		return;
	}
	s->env.pregreet_pass = HOOK_PREGREET_NONE;
	if (pg->delay > 0 && !s->lc->submission && pg->pass_ttl > 0 &&
	    pregreet_pass_known(s->env.client_ip, uv_hrtime())) {
		log_event(LOG_LVL_INFO, s->id, "event=pregreet_skipped reason=pass_cache client=%s",
		    s->env.client_ip);
	} else if (pg->delay > 0 && !s->lc->submission && pg->pass_ttl > 0 && !s->lb_check &&
	    !s->xclient_seen && pregreet_store_known_now(s->chain.mods, s->env.client_ip)) {
		/* an LMDB pass_store answers at once: a pass noted before a restart (or by another
		 * process on this host) is as good as this process's own */
		log_event(LOG_LVL_INFO, s->id, "event=pregreet_skipped reason=pass_store client=%s",
		    s->env.client_ip);
	} else if (pg->delay > 0 && !s->lc->submission && s->lb_check) {
		/* The load balancer's own health check (HAProxy's option smtpchk with
		 * check-send-proxy) reads the first line and wants "220 ": the teaser would take
		 * the whole listener out of its rotation. It relays no client to test. Debug:
		 * one line per check, every `inter`. */
		log_event(LOG_LVL_DEBUG, s->id, "event=pregreet_skipped reason=proxy_local client=%s",
		    s->env.client_ip);
	} else if (pg->delay > 0 && !s->lc->submission && s->xclient_seen) {
		/* After its XCLIENT a front end in xclient_hosts (nginx's mail module) speaks for
		 * the client: no client to test (the front end itself was greeted at once). */
		log_event(LOG_LVL_DEBUG, s->id, "event=pregreet_skipped reason=xclient client=%s", s->env.client_ip);
	} else if (pg->delay > 0 && !s->lc->submission) {
		/* Postscreen's teaser: a multi-line greeting start, then silence; a client that
		 * speaks before the final 220 line talks before the greeting. Not on a submission
		 * listener: the site's own users (postscreen sits on port 25 only).
		 * The teaser itself waits for what the connect stage decides at once (a rate limit
		 * with the local store, any check that answers without a lookup): a client refused
		 * there hears only the 421, as from postscreen and anvil, not a whole greeting. */
		s->teaser_held = true;
		/* the pregreet module asks pregreet.pass_store meanwhile (the connect stage) */
		s->env.pregreet_pass = HOOK_PREGREET_TESTING;
		session_arm(s, pg->delay, NULL);
		/* what came in the PROXY header's segment was sent before any greeting too */
		if (s->inlen > 0)
			session_note_pregreet(s, s->in, s->inlen);
	}
	session_unpause(s);
	s->cmd = &session_connect_step;
	chain_on_progress(&s->chain, session_connect_progress_cb);
	chain_run(&s->chain, HOOK_CONNECT, session_stage_done_cb, s);
	session_send_teaser(s);
}

/* ---- drain ------------------------------------------------------------------------- */

void session_drain_all(struct worker *w, int force)
{
	struct session *s = w->session_list, *next;

	for (; s; s = next) {
		next = s->next;
		s->drain = true;
		if (s->state == SESSION_CLOSING)
			continue;
		if (force || ((session_takes_commands(s) || s->state == SESSION_PROXY || s->state == SESSION_CONNECT ||
		    s->state == SESSION_PREGREET) && s->env.mail_from == NULL)) {
			/* After the pregreet teaser the greeting is a 220 reply already: it ends as one,
			 * and the 421 follows as a reply of its own (RFC 5321 4.2.1, 3.8). */
			if ((s->state == SESSION_CONNECT || s->state == SESSION_PREGREET) && s->teaser_sent)
				session_reply(s, "220 %s ESMTP mxgate", s->cfg->hostname);
			if (s->state != SESSION_PROXY)
				session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			if (s->state != SESSION_CLOSING)
				session_close(s, "shutdown");
		}
	}
}
