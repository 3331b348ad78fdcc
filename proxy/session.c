/* session.c — the SMTP session state machine (RFC 5321 server side).
 *
 * One `enum session_state`, changed only by session_enter_state(). Each command runs
 * check (syntax and state, synchronous) -> filter (the module chain for the stage, async)
 * -> apply (relay to the backend where needed, reply). While a command is in flight the
 * session is "busy": input is held (pipelining keeps its order) and reading pauses.
 *
 * Ownership: the session owns its handles, buffers, TLS state, transaction, relay and the
 * module contexts in env. It is freed in the last handle's close callback, after the chain
 * released its calls and the relay was dropped. */
#include "session.h"
#include "backend.h"
#include "chain.h"
#include "config.h"
#include "conncount.h"
#include "dataparse.h"
#include "domain.h"
#include "headers.h"
#include "hook.h"
#include "linebuf.h"
#include "log.h"
#include "maildir.h"
#include "msgbuf.h"
#include "opstats.h"
#include "proxyproto.h"
#include "relay.h"
#include "smtp_cmd.h"
#include "tls.h"
#include "worker.h"
#include "counters.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum session_state {
	SESSION_PROXY = 0,     /* waiting for the PROXY header */
	SESSION_CONNECT,       /* connect chain and/or pregreet wait; greeting not yet sent */
	SESSION_COMMAND,       /* reading commands */
	SESSION_BUSY,          /* a command is in flight */
	SESSION_DATA,          /* reading the message */
	SESSION_TLS,           /* TLS handshake after STARTTLS */
	SESSION_CLOSING,
};

static const char *const session_state_names[] = {
	"proxy", "connect", "command", "busy", "data", "tls", "closing",
};

#define SESSION_MAX_PENDING_INPUT (256 * 1024)  /* pipelined bytes held while busy */
#define SESSION_PROXY_MAX 600
#define SESSION_MAX_QUEUED_OUTPUT (64 * 1024)      /* replies the client has not read */

struct session {
	struct session *next, *prev;      /* worker's list */
	struct worker *w;
	struct worker_gen *wg;
	const struct mx_config *cfg;
	const struct listen_config *lc;
	uv_tcp_t tcp;
	uv_timer_t timer;                 /* protocol timeouts, pregreet wait */
	uv_timer_t chain_timer;           /* module timeouts (the chain's) */
	int open_handles;
	int pending;                      /* async work outside the loop (maildir writes) */
	char id[20];
	enum session_state state;
	bool reading, counted_ip, greeted, pregreet_wait, connect_chain_done, pregreet_hit;
	bool quit_after_flush, eof, drain, write_failed, out_blocked;
	bool conn_rejected;               /* connect-stage reject, answered at MAIL */
	struct verdict conn_verdict;
	int refused_code;                 /* the refusal the client got at connect (0 none), */
	char refused_reason[48];          /* for the session outcome */
	int errors;
	unsigned long ncommands, nmessages;
	struct linebuf lb;
	char *in;                         /* held input */
	size_t inlen, incap;
	struct strbuf out;                /* replies not yet written */
	int writes_inflight;
	struct tlsconn *tls;
	struct hook_env env;
	struct chain chain;
	bool chain_running;
	uint32_t tarpit_ms;               /* hold the next replies this long (a filter's delay) */
	/* the command in flight */
	enum smtp_verb verb;
	char *arg_copy;
	/* transaction */
	struct relay *relay;
	struct backend *backend;
	int route;                        /* pool route id of the transaction */
	uint64_t tried;                   /* backends tried for this message (bit per index) */
	int attempts;
	char *mail_line;                  /* MAIL command for the backend */
	char *pending_rcpt;               /* RCPT address in flight */
	char *pending_rcpt_params;
	struct msgbuf *msg;
	struct dataparse dp;
	bool msg_too_big, msg_write_error;
	uint64_t msg_size;
	struct strbuf prefix;             /* Received + edited header block */
	size_t body_off;
	/* establishing a backend transaction (open, MAIL, replay RCPTs) */
	void (*est_done)(struct session *s, int code, const char *text);
	size_t est_rcpt;
	/* LMTP partial results */
	int *lmtp_ok;                     /* per env.rcpts: 1 delivered, -1 permanently failed */
	char backend_qid[64];
	uint64_t started_ms;
	uint64_t data_deadline_at;        /* loop ms by which the DATA phase must end */
};

static void session_process(struct session *s);
static void session_close(struct session *s, const char *reason);
static void session_flush(struct session *s);
static void session_resume(struct session *s);
static void session_txn_reset(struct session *s, bool relay_reusable);
static void session_start_connect(struct session *s);

/* ---- state and replies ------------------------------------------------------------- */

static void session_enter_state(struct session *s, enum session_state st)
{
	if (log_is_debug())
		log_event(LOG_LVL_DEBUG, s->id, "event=state from=%s to=%s", session_state_names[s->state],
		    session_state_names[st]);
	s->state = st;
}

/* Appends one reply line (CRLF added). Counts reply classes. */
static void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_reply(struct session *s, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	/* Never let a CR or LF inside a reply text split it. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\r' || line[i] == '\n')
			line[i] = ' ';
	if (n >= 4 && line[3] != '-')
		counter_count_reply(atoi(line));
	line[n++] = '\r';
	line[n++] = '\n';
	strbuf_append(&s->out, line, (size_t)n);
}

/* A reply from a backend or a filter: "CODE TEXT" where text may hold several lines
 * ("250-a\r\n250 b") or just "5.7.1 words". Passes multi-line replies through with the
 * given code on each line. */
static void session_reply_text(struct session *s, int code, const char *text)
{
	const char *p = text && *text ? text : "Error";
	char line[1024];

	while (*p) {
		const char *e = strstr(p, "\r\n");
		size_t n = e ? (size_t)(e - p) : strlen(p);
		/* Drop a leading "NNN " or "NNN-" the backend already put there. */
		if (n >= 4 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
		    isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-')) {
			p += 4;
			n -= 4;
		}
		if (n > sizeof(line) - 1)
			n = sizeof(line) - 1;
		memcpy(line, p, n);
		line[n] = '\0';
		session_reply(s, "%d%c%s", code, e ? '-' : ' ', line);
		if (!e)
			break;
		p = e + 2;
	}
}

/* A client error: counted; past limits.max_errors the session ends. */
static void session_error(struct session *s)
{
	counter_inc(COUNTER_PROTOCOL_ERRORS);
	if (++s->errors >= s->cfg->limits.max_errors) {
		session_reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
		log_event(LOG_LVL_INFO, s->id, "event=disconnect reason=too_many_errors client=%s errors=%d",
		    s->env.client_ip, s->errors);
		s->quit_after_flush = true;
	}
}

/* Replies with a filter's refusal and logs it; returns the code sent. */
static int session_reply_verdict(struct session *s, const struct verdict *v, const char *stage)
{
	int code = v->code;

	if (code == 0)
		code = v->action == VERDICT_TEMPFAIL ? 451 : 550;
	if (v->action == VERDICT_TEMPFAIL && code / 100 != 4)
		code = 451;
	if (v->action == VERDICT_REJECT && code / 100 != 5)
		code = 550;
	if (v->reply[0])
		session_reply_text(s, code, v->reply);
	else
		session_reply(s, "%d %s", code, code / 100 == 4 ? "4.7.1 Try again later" : "5.7.1 Rejected");
	log_event(LOG_LVL_INFO, s->id, "event=%s stage=%s reason=%s client=%s code=%d reply=\"%.200s\"",
	    v->action == VERDICT_TEMPFAIL ? "tempfail" : "reject", stage, v->reason[0] ? v->reason : "filter",
	    s->env.client_ip, code, v->reply);
	opstats_note_refusal(s->w->index, s->env.client_ip, stage, v->reason, code / 100 == 4);
	return code;
}

/* ---- output ------------------------------------------------------------------------ */

struct session_wreq { uv_write_t req; struct session *s; char data[]; };

static void session_write_cb(uv_write_t *req, int status)
{
	struct session_wreq *w = (struct session_wreq *)req;
	struct session *s = w->s;

	free(w);
	s->writes_inflight--;
	if (status < 0)
		s->write_failed = true;
	/* A client that does not read its replies is not read either (bounded memory);
	 * once they drain, carry on. */
	if (s->out_blocked && uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) < SESSION_MAX_QUEUED_OUTPUT / 2 &&
	    s->state != SESSION_CLOSING) {
		s->out_blocked = false;
		if (s->state == SESSION_COMMAND || s->state == SESSION_DATA)
			session_process(s);
	}
	if (s->state == SESSION_CLOSING && s->writes_inflight == 0)
		session_close(s, NULL);
}

static int session_write_raw(struct session *s, const char *data, size_t len)
{
	struct session_wreq *w;
	uv_buf_t b;

	if (s->write_failed || uv_is_closing((uv_handle_t *)&s->tcp))
		return -1;
	/* Straight into the kernel when nothing is queued: saves the request and libuv's
	 * epoll re-registration after every write; only the rest is queued. */
	if (s->writes_inflight == 0) {
		b = uv_buf_init((char *)data, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		if (n == (int)len)
			return 0;
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if (n != UV_EAGAIN) {
			s->write_failed = true;
			return -1;
		}
	}
	w = malloc(sizeof(*w) + len);
	if (w == NULL)
		return -1;
	memcpy(w->data, data, len);
	w->s = s;
	b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, session_write_cb) != 0) {
		free(w);
		s->write_failed = true;
		return -1;
	}
	s->writes_inflight++;
	return 0;
}

static int session_tls_cipher_cb(void *arg, const char *data, size_t len)
{
	return session_write_raw(arg, data, len);
}

static void session_flush(struct session *s)
{
	if (s->out.len == 0)
		return;
	if (s->tls)
		tlsconn_write(s->tls, s->out.v, s->out.len);
	else
		session_write_raw(s, s->out.v, s->out.len);
	s->out.len = 0;
	if (s->quit_after_flush && s->state != SESSION_CLOSING)
		session_close(s, NULL);
}

/* ---- timers ------------------------------------------------------------------------ */

static void session_timeout_cb(uv_timer_t *t);

static void session_arm(struct session *s, uint64_t ms)
{
	s->timer.data = s;
	uv_timer_start(&s->timer, session_timeout_cb, ms ? ms : 300000, 0);
}

/* In DATA the timer fires at whichever comes first: data_timeout since the last read (as
 * Postfix), or the whole-DATA deadline set when 354 went out, so a client trickling a byte
 * at a time cannot hold the session for ever. */
static void session_arm_data(struct session *s)
{
	uint64_t now = uv_now(&s->w->loop);
	uint64_t left = s->data_deadline_at > now ? s->data_deadline_at - now : 1;

	session_arm(s, left < s->cfg->limits.data_timeout ? left : s->cfg->limits.data_timeout);
}

static void session_greet(struct session *s);

static void session_timeout_cb(uv_timer_t *t)
{
	struct session *s = t->data;

	switch (s->state) {
	case SESSION_CONNECT:
		/* Pregreet wait over. */
		s->pregreet_wait = false;
		if (s->connect_chain_done)
			session_greet(s);
		return;
	case SESSION_BUSY:
		return;
	default:
		break;
	}
	counter_inc(COUNTER_SESSIONS_TIMEOUT);
	log_event(LOG_LVL_INFO, s->id, "event=timeout state=%s client=%s", session_state_names[s->state],
	    s->env.client_ip);
	if (s->state != SESSION_PROXY && s->state != SESSION_TLS)
		session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
	s->quit_after_flush = true;
	session_flush(s);
	if (s->state != SESSION_CLOSING)
		session_close(s, "timeout");
}

/* ---- closing ----------------------------------------------------------------------- */

static void session_free(struct session *s)
{
	struct worker_gen *wg = s->wg;

	chain_release(&s->chain);
	hook_env_free_outputs(&s->env);
	free(s->env.mail_from);
	free(s->env.mail_params);
	for (size_t i = 0; i < s->env.nrcpts; i++) {
		free(s->env.rcpts[i].addr);
		free(s->env.rcpts[i].params);
	}
	free(s->env.rcpts);
	msgbuf_free(s->msg);
	strbuf_free(&s->prefix);
	strbuf_free(&s->out);
	linebuf_free(&s->lb);
	tlsconn_free(s->tls);
	free(s->in);
	free(s->mail_line);
	free(s->pending_rcpt);
	free(s->pending_rcpt_params);
	free(s->arg_copy);
	free(s->lmtp_ok);
	if (s->counted_ip)
		conncount_release((const struct sockaddr *)&s->env.client);
	conncount_total_add(-1);
	counter_add(COUNTER_SESSIONS_ACTIVE, -1);
	if (s->prev)
		s->prev->next = s->next;
	else
		s->w->session_list = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->w->sessions--;
	free(s);
	worker_gen_session_release(wg);
}

static void session_handle_closed_cb(uv_handle_t *h)
{
	struct session *s = h->data;

	if (--s->open_handles == 0 && s->pending == 0)
		session_free(s);
}

/* The chain timer's data belongs to the chain; find the session by position. */
static void session_chain_timer_closed_cb(uv_handle_t *h)
{
	struct session *s = (struct session *)(void *)((char *)h - offsetof(struct session, chain_timer));

	if (--s->open_handles == 0 && s->pending == 0)
		session_free(s);
}

static void session_close_chain_cb(void *arg, const struct verdict *v)
{
	(void)arg;
	(void)v;
}

static void session_close(struct session *s, const char *reason)
{
	if (s->state == SESSION_CLOSING && (reason != NULL || uv_is_closing((uv_handle_t *)&s->tcp)))
		return;
	if (s->state != SESSION_CLOSING) {
		unsigned long ms = (unsigned long)(uv_now(&s->w->loop) - s->started_ms);
		log_event(LOG_LVL_INFO, s->id, "event=disconnect client=%s commands=%lu messages=%lu errors=%d ms=%lu%s%s",
		    s->env.client_ip, s->ncommands, s->nmessages, s->errors, ms, reason ? " reason=" : "",
		    reason ? reason : "");
		session_enter_state(s, SESSION_CLOSING);
		if (s->relay) {
			relay_abort(s->relay);
			s->relay = NULL;
		}
		if (s->reading) {
			uv_read_stop((uv_stream_t *)&s->tcp);
			s->reading = false;
		}
		uv_timer_stop(&s->timer);
		uv_timer_stop(&s->chain_timer);
		/* Every module hears how the session ended (an open transaction: abandoned). */
		chain_session_end(&s->chain, s->refused_code, s->refused_code ? HOOK_CONNECT : HOOK_CLOSE,
		    s->refused_reason);
		/* Modules hear of the end (advisory: they release for good in session_free). */
		if (!s->chain_running && s->connect_chain_done && chain_wants(s->chain.mods, HOOK_CLOSE))
			chain_run(&s->chain, HOOK_CLOSE, session_close_chain_cb, s);
		session_flush(s);
	}
	if (s->writes_inflight > 0 && !s->write_failed) {
		/* The last replies are still going out; close from the write callback. Bound it. */
		s->timer.data = s;
		uv_timer_start(&s->timer, session_timeout_cb, 5000, 0);
		return;
	}
	if (!uv_is_closing((uv_handle_t *)&s->tcp)) {
		uv_close((uv_handle_t *)&s->chain_timer, session_chain_timer_closed_cb);
		uv_close((uv_handle_t *)&s->timer, session_handle_closed_cb);
		uv_close((uv_handle_t *)&s->tcp, session_handle_closed_cb);
	}
}

/* ---- input ------------------------------------------------------------------------- */

static void session_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)hint;
	buf->base = s->w->readbuf;
	buf->len = sizeof(s->w->readbuf);
}

static int session_hold_input(struct session *s, const char *data, size_t len)
{
	if (s->inlen + len > SESSION_MAX_PENDING_INPUT)
		return -1;
	if (s->inlen + len > s->incap) {
		size_t cap = s->incap ? s->incap : 1024;
		while (cap < s->inlen + len)
			cap *= 2;
		char *n = realloc(s->in, cap);
		if (n == NULL)
			return -1;
		s->in = n;
		s->incap = cap;
	}
	memcpy(s->in + s->inlen, data, len);
	s->inlen += len;
	return 0;
}

static void session_pause(struct session *s)
{
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
}

static void session_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void session_unpause(struct session *s)
{
	if (!s->reading && s->state != SESSION_CLOSING && !s->eof) {
		uv_read_start((uv_stream_t *)&s->tcp, session_alloc_cb, session_read_cb);
		s->reading = true;
	}
}

/* Plaintext from the client (after TLS). Held when the session cannot take it now. */
static int session_on_plain(void *arg, const char *data, size_t len)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return -1;
	if (s->state == SESSION_CONNECT && s->pregreet_wait && !s->greeted) {
		if (!s->pregreet_hit) {
			s->pregreet_hit = true;
			counter_inc(COUNTER_PREGREET);
			log_event(LOG_LVL_INFO, s->id, "event=pregreet client=%s bytes=%zu", s->env.client_ip, len);
		}
	}
	if (session_hold_input(s, data, len) != 0) {
		session_reply(s, "421 4.7.0 %s Error: too much pipelined input", s->cfg->hostname);
		s->quit_after_flush = true;
		session_flush(s);
		return -1;
	}
	if (s->state == SESSION_COMMAND || s->state == SESSION_DATA)
		session_process(s);
	else if (s->inlen > 16384)
		session_pause(s);	/* busy: let TCP push back */
	return 0;
}

static void session_tls_established_cb(void *arg)
{
	struct session *s = arg;

	s->env.tls = true;
	snprintf(s->env.tls_version, sizeof(s->env.tls_version), "%s", tlsconn_version(s->tls));
	snprintf(s->env.tls_cipher, sizeof(s->env.tls_cipher), "%s", tlsconn_cipher(s->tls));
	counter_inc(COUNTER_TLS_SESSIONS);
	log_event(LOG_LVL_INFO, s->id, "event=tls version=%s cipher=%s", s->env.tls_version, s->env.tls_cipher);
	if (!s->greeted) {
		/* Implicit TLS: the session starts now. */
		session_start_connect(s);
		return;
	}
	session_enter_state(s, SESSION_COMMAND);
	session_arm(s, s->cfg->limits.command_timeout);
}

static void session_start_connect(struct session *s);

static const struct tlsconn_ops session_tls_ops = {
	.on_plain = session_on_plain,
	.on_cipher = session_tls_cipher_cb,
	.on_established = session_tls_established_cb,
};

static void session_start_connect(struct session *s);

/* The PROXY header: the first bytes on a proxy_protocol listener. */
static void session_on_proxy_bytes(struct session *s, const char *data, size_t len)
{
	struct proxy_info pi;
	size_t used = 0;
	const char *err = NULL;

	if (session_hold_input(s, data, len) != 0 || s->inlen > SESSION_PROXY_MAX) {
		session_close(s, "proxy_header_too_long");
		return;
	}
	enum proxy_result r = proxyproto_parse((const uint8_t *)s->in, s->inlen, &pi, &used, &err);
	if (r == PROXY_NEED_MORE)
		return;
	if (r == PROXY_ERROR) {
		counter_inc(COUNTER_PROXY_REFUSED);
		log_event(LOG_LVL_WARNING, s->id, "event=proxy_error peer=%s reason=\"%s\"", s->env.client_ip,
		    err ? err : "bad header");
		session_close(s, "proxy_error");
		return;
	}
	memmove(s->in, s->in + used, s->inlen - used);
	s->inlen -= used;
	if (!pi.local) {
		memcpy(&s->env.client, &pi.src, sizeof(pi.src));
		memcpy(&s->env.local, &pi.dst, sizeof(pi.dst));
	}
	session_start_connect(s);
}

static void session_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct session *s = st->data;

	if (n == 0)
		return;
	if (n < 0) {
		s->eof = true;
		s->reading = false;
		uv_read_stop(st);
		/* A client that half-closed after sending its last command (the final dot, say)
		 * may still read the reply: finish the command in flight, then close. */
		if (n == UV_EOF && s->state == SESSION_BUSY)
			return;
		/* A client gone mid-transaction: nothing was acknowledged, nothing is lost. */
		session_close(s, n == UV_EOF ? "client_closed" : uv_strerror((int)n));
		return;
	}
	if (s->state == SESSION_PROXY) {
		session_on_proxy_bytes(s, buf->base, (size_t)n);
		return;
	}
	if (s->tls) {
		int rc = tlsconn_feed(s->tls, buf->base, (size_t)n);
		if (rc < 0) {
			counter_inc(COUNTER_TLS_FAILURES);
			log_event(LOG_LVL_INFO, s->id, "event=tls_error client=%s reason=\"%s\"", s->env.client_ip,
			    tlsconn_error(s->tls) ? tlsconn_error(s->tls) : "");
			s->write_failed = false;
			session_close(s, "tls_error");
		}
		return;
	}
	session_on_plain(s, buf->base, (size_t)n);
}

/* ---- the transaction --------------------------------------------------------------- */

static void session_env_clear_txn(struct session *s)
{
	free(s->env.mail_from);
	s->env.mail_from = NULL;
	free(s->env.mail_params);
	s->env.mail_params = NULL;
	for (size_t i = 0; i < s->env.nrcpts; i++) {
		free(s->env.rcpts[i].addr);
		free(s->env.rcpts[i].params);
	}
	free(s->env.rcpts);
	s->env.rcpts = NULL;
	s->env.nrcpts = 0;
	s->env.cur_rcpt = NULL;
	s->env.msg = NULL;
	s->env.queue_id[0] = '\0';
	hook_env_reset_txn(&s->env);
}

/* Ends the transaction (an outcome not reported yet is reported as abandoned: RSET, HELO,
 * STARTTLS, a new MAIL) and releases it. */
static void session_txn_reset(struct session *s, bool relay_reusable)
{
	chain_txn_abandon(&s->chain);
	if (s->relay) {
		relay_release(s->relay, relay_reusable);
		s->relay = NULL;
	}
	s->backend = NULL;
	s->route = 0;
	s->tried = 0;
	s->attempts = 0;
	free(s->mail_line);
	s->mail_line = NULL;
	msgbuf_free(s->msg);
	s->msg = NULL;
	strbuf_free(&s->prefix);
	free(s->lmtp_ok);
	s->lmtp_ok = NULL;
	s->msg_too_big = s->msg_write_error = false;
	s->msg_size = 0;
	s->backend_qid[0] = '\0';
	session_env_clear_txn(s);
	s->env.txn_symbols_start = s->env.nsymbols;
}

static void session_make_queue_id(struct session *s)
{
	static const char alphabet[] = "0123456789BCDFGHJKLMNPQRSTVWXYZ";
	uint64_t x = ((uint64_t)time(NULL) << 20) ^ ((uint64_t)s->w->index << 60) ^ (++s->w->session_seq * 2654435761ULL);
	char *q = s->env.queue_id;

	for (int i = 0; i < 12; i++) {
		q[i] = alphabet[x % 31];
		x /= 31;
		if (x == 0)
			x = (uint64_t)rand() + 7;
	}
	q[12] = '\0';
}

static const char *session_domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

/* Builds the MAIL command for the backend from the envelope and what it supports. */
static void session_build_mail_line(struct session *s)
{
	struct strbuf b = { 0 };
	const char *from = s->env.new_mail_from ? s->env.new_mail_from : s->env.mail_from;

	strbuf_printf(&b, "MAIL FROM:<%s>", from ? from : "");
	if (s->env.mail_params && *s->env.mail_params) {
		/* Pass on what we advertised (SIZE, BODY, SMTPUTF8) when the backend has it. */
		char *copy = strdup(s->env.mail_params), *save = NULL;
		for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
			if ((strncasecmp(t, "SIZE=", 5) == 0 && relay_has_ext(s->relay, "SIZE")) ||
			    (strncasecmp(t, "BODY=", 5) == 0 && relay_has_ext(s->relay, "8BITMIME")) ||
			    (strcasecmp(t, "SMTPUTF8") == 0 && relay_has_ext(s->relay, "SMTPUTF8")))
				strbuf_printf(&b, " %s", t);
		}
		free(copy);
	}
	free(s->mail_line);
	s->mail_line = b.v;
}

/* Establishing: pick, open, MAIL, replay accepted RCPTs, with failover. Calls est_done
 * with 250 when s->relay is ready for more, or the failure (code 0 = nothing answered). */
static void session_est_next(struct session *s);

static void session_est_fail(struct session *s, int code, const char *text, bool backend_fault)
{
	struct backend *b = s->backend;

	if (b && b->index < 64)
		s->tried |= 1ULL << b->index;
	if (s->relay) {
		relay_abort(s->relay);
		s->relay = NULL;
	}
	s->backend = NULL;
	if (backend_fault && s->attempts < s->cfg->backends.max_attempts) {
		session_est_next(s);
		return;
	}
	s->est_done(s, code, text);
}

static void session_est_rcpt_cb(void *arg, int code, const char *text)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return;
	if (code / 100 != 2) {
		/* A recipient accepted before is refused on replay: this backend is no good
		 * for the transaction; another may be. */
		log_event(LOG_LVL_INFO, s->id, "event=replay_refused backend=%s rcpt=<%s> code=%d",
		    relay_backend(s->relay) ? relay_backend(s->relay)->url : "?", s->env.rcpts[s->est_rcpt].addr, code);
		session_est_fail(s, code ? code : 451, text, true);
		return;
	}
	s->est_rcpt++;
	session_est_next(s);
}

static void session_est_mail_cb(void *arg, int code, const char *text)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return;
	if (code / 100 == 5) {
		s->est_done(s, code, text);	/* the sender is refused: a verdict, not a fault */
		return;
	}
	if (code == 0 && relay_text_is_stale(text)) {
		s->attempts--;
		s->backend = NULL;
		session_est_next(s);
		return;
	}
	if (code / 100 != 2) {
		session_est_fail(s, code, text, true);
		return;
	}
	s->est_rcpt = 0;
	session_est_next(s);
}

static void session_est_open_cb(void *arg, struct relay *r, int code, const char *text)
{
	struct session *s = arg;

	s->pending--;	/* the open was pending work: the session waited for it */
	if (s->state == SESSION_CLOSING) {
		if (r)
			relay_release(r, true);
		if (s->open_handles == 0 && s->pending == 0)
			session_free(s);
		return;
	}
	if (r == NULL) {
		if (relay_text_is_stale(text)) {
			/* A pooled connection the backend had dropped: not the backend's fault, and
			 * not an attempt. Open another. */
			s->attempts--;
			s->backend = NULL;
			session_est_next(s);
			return;
		}
		session_est_fail(s, code, text, true);
		return;
	}
	s->relay = r;
	relay_set_owner(r, &s->relay);
	if (s->env.mail_params && strcasestr(s->env.mail_params, "SMTPUTF8") && !relay_has_ext(r, "SMTPUTF8")) {
		/* RFC 6531 3.4: an internationalised transaction needs a server that takes it. */
		relay_release(r, true);
		s->relay = NULL;
		s->est_done(s, 553, "5.6.7 SMTPUTF8 is not supported by the destination");
		return;
	}
	session_build_mail_line(s);
	relay_command(r, s->mail_line, session_est_mail_cb, s);
}

static void session_est_next(struct session *s)
{
	if (s->relay == NULL) {
		struct backend *b;
		const char *dom = s->env.nrcpts ? session_domain_of(s->env.rcpts[0].addr) :
		    s->pending_rcpt ? session_domain_of(s->pending_rcpt) : NULL;

		b = pool_pick_backend(s->wg->shared->pool, s->route ? dom : NULL, s->env.client_ip, s->tried);
		if (b == NULL) {
			s->est_done(s, 0, "no backend available");
			return;
		}
		s->attempts++;
		s->backend = b;
		if (b->kind == BACKEND_MAILDIR) {
			/* Written at end of data; nothing to open. */
			s->est_done(s, 250, "2.0.0 Ok");
			return;
		}
		s->pending++;
		relay_open(s->w, b, &s->env, session_est_open_cb, s);
		return;
	}
	if (s->est_rcpt < s->env.nrcpts) {
		char line[1100];
		snprintf(line, sizeof(line), "RCPT TO:<%s>%s%s", s->env.rcpts[s->est_rcpt].addr,
		    s->env.rcpts[s->est_rcpt].params && *s->env.rcpts[s->est_rcpt].params ? " " : "",
		    s->env.rcpts[s->est_rcpt].params ? s->env.rcpts[s->est_rcpt].params : "");
		relay_command(s->relay, line, session_est_rcpt_cb, s);
		return;
	}
	s->est_done(s, 250, "2.1.0 Ok");
}

static void session_establish(struct session *s, void (*done)(struct session *, int, const char *))
{
	s->est_done = done;
	s->est_rcpt = 0;
	session_est_next(s);
}

/* ---- command completion ------------------------------------------------------------ */

static void session_tarpit_cb(uv_timer_t *t)
{
	struct session *s = t->data;

	session_resume(s);
}

/* The command in flight is answered: flush and carry on with held input. A filter's
 * tarpit delay holds the reply (and everything after it) first. */
static void session_resume(struct session *s)
{
	if (s->state == SESSION_CLOSING)
		return;
	if (s->tarpit_ms) {
		uint32_t ms = s->tarpit_ms;
		s->tarpit_ms = 0;
		log_event(LOG_LVL_DEBUG, s->id, "event=tarpit ms=%u", ms);
		s->timer.data = s;
		uv_timer_start(&s->timer, session_tarpit_cb, ms, 0);
		return;
	}
	if (s->state == SESSION_BUSY)
		session_enter_state(s, SESSION_COMMAND);
	if (s->state == SESSION_CONNECT)
		return;
	session_process(s);
}

/* Every stage's chain callback starts here: the chain is done, a filter's tarpit delay
 * is noted, and false means the session closed meanwhile (nothing more to do). */
static bool session_chain_returned(struct session *s, const struct verdict *v)
{
	s->chain_running = false;
	if (v->delay_ms)
		s->tarpit_ms = v->delay_ms > 600000 ? 600000 : v->delay_ms;
	return s->state != SESSION_CLOSING;
}

/* A backend step failed: the backend's own reply, or 451 when none answered. */
static void session_reply_backend_failure(struct session *s, const char *stage, int code, const char *text)
{
	if (code == 0) {
		session_reply(s, "451 4.4.1 Service temporarily unavailable, try again later");
		log_event(LOG_LVL_WARNING, s->id, "event=tempfail stage=%s reason=no_backend detail=\"%s\"", stage, text);
		opstats_note_refusal(s->w->index, s->env.client_ip, stage, "no_backend", true);
	} else {
		session_reply_text(s, code, text);
	}
}

/* ---- HELO / EHLO ------------------------------------------------------------------- */

static bool session_tls_offered(const struct session *s)
{
	return s->lc->tls == LISTEN_TLS_STARTTLS && s->wg->shared->tls_server && !s->tls;
}

static void session_helo_apply(struct session *s)
{
	if (s->verb == SMTP_EHLO) {
		session_reply(s, "250-%s", s->cfg->hostname);
		session_reply(s, "250-PIPELINING");
		session_reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->limits.max_message_size);
		if (session_tls_offered(s))
			session_reply(s, "250-STARTTLS");
		session_reply(s, "250-ENHANCEDSTATUSCODES");
		session_reply(s, "250-8BITMIME");
		session_reply(s, "250-SMTPUTF8");
		session_reply(s, "250 DSN");
	} else {
		session_reply(s, "250 %s", s->cfg->hostname);
	}
}

static void session_helo_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (!session_chain_returned(s, v))
		return;
	if (v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL) {
		session_reply_verdict(s, v, "helo");
		s->env.helo[0] = '\0';
		session_error(s);
	} else {
		session_helo_apply(s);
	}
	session_resume(s);
}

/* ---- MAIL -------------------------------------------------------------------------- */

static void session_mail_est_cb(struct session *s, int code, const char *text)
{
	if (code / 100 == 2) {
		session_reply(s, "250 2.1.0 Ok");
	} else {
		session_reply_backend_failure(s, "mail", code, text);
		chain_txn_end(&s->chain, code ? code : 451, HOOK_MAIL, "backend");
		session_txn_reset(s, false);
		session_error(s);
	}
	session_resume(s);
}

static void session_mail_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (!session_chain_returned(s, v))
		return;
	if (v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL) {
		chain_txn_end(&s->chain, session_reply_verdict(s, v, "mail"), HOOK_MAIL, v->reason);
		session_txn_reset(s, true);
		session_error(s);
		session_resume(s);
		return;
	}
	if (s->wg->shared->pool->nroutes > 0) {
		/* Routing depends on the recipient: the backend is chosen at the first RCPT. */
		session_reply(s, "250 2.1.0 Ok");
		session_resume(s);
		return;
	}
	session_establish(s, session_mail_est_cb);
}

/* ---- RCPT -------------------------------------------------------------------------- */

static void session_rcpt_add(struct session *s)
{
	struct rcpt *n = realloc(s->env.rcpts, (s->env.nrcpts + 1) * sizeof(*n));

	if (n == NULL)
		abort();
	s->env.rcpts = n;
	n[s->env.nrcpts].addr = s->pending_rcpt;
	n[s->env.nrcpts].params = s->pending_rcpt_params;
	n[s->env.nrcpts].status = 250;
	s->env.nrcpts++;
	s->pending_rcpt = s->pending_rcpt_params = NULL;
}

static void session_rcpt_done(struct session *s)
{
	free(s->pending_rcpt);
	free(s->pending_rcpt_params);
	s->pending_rcpt = s->pending_rcpt_params = NULL;
	s->env.cur_rcpt = NULL;
	session_resume(s);
}

static void session_rcpt_reply_cb(void *arg, int code, const char *text);

static void session_rcpt_send(struct session *s)
{
	char line[1100];

	if (s->backend && s->backend->kind == BACKEND_MAILDIR) {
		session_reply(s, "250 2.1.5 Ok");
		session_rcpt_add(s);
		session_rcpt_done(s);
		return;
	}
	snprintf(line, sizeof(line), "RCPT TO:<%s>%s%s", s->pending_rcpt,
	    *s->pending_rcpt_params ? " " : "", s->pending_rcpt_params);
	relay_command(s->relay, line, session_rcpt_reply_cb, s);
}

static void session_rcpt_est_cb(struct session *s, int code, const char *text)
{
	if (code / 100 == 2) {
		session_rcpt_send(s);
		return;
	}
	session_reply_backend_failure(s, "rcpt", code, text);
	session_error(s);
	session_rcpt_done(s);
}

static void session_rcpt_reply_cb(void *arg, int code, const char *text)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return;
	if (code == 0 || code == 421) {
		/* The backend went away mid-transaction: fail over, replaying what it had. */
		if (s->relay) {
			relay_abort(s->relay);
			s->relay = NULL;
		}
		if (s->backend && s->backend->index < 64)
			s->tried |= 1ULL << s->backend->index;
		s->backend = NULL;
		if (s->attempts < s->cfg->backends.max_attempts) {
			session_establish(s, session_rcpt_est_cb);
			return;
		}
		session_reply(s, "451 4.4.1 Service temporarily unavailable, try again later");
		session_rcpt_done(s);
		return;
	}
	session_reply_text(s, code, text);
	if (code / 100 == 2) {
		counter_inc(COUNTER_RECIPIENTS_ACCEPTED);
		session_rcpt_add(s);
	} else {
		counter_inc(COUNTER_RECIPIENTS_REJECTED);
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=rcpt reason=backend rcpt=<%s> code=%d client=%s",
		    s->pending_rcpt, code, s->env.client_ip);
		opstats_note_refusal(s->w->index, s->env.client_ip, "rcpt", "backend", code / 100 == 4);
		session_error(s);
	}
	session_rcpt_done(s);
}

static void session_rcpt_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (!session_chain_returned(s, v))
		return;
	if (v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL) {
		session_reply_verdict(s, v, "rcpt");
		session_error(s);
		session_rcpt_done(s);
		return;
	}
	if (s->relay == NULL && (s->backend == NULL || s->backend->kind != BACKEND_MAILDIR)) {
		/* First recipient with routes, or the backend was lost: establish now. */
		if (s->backend && s->backend->index < 64)
			s->tried |= 1ULL << s->backend->index;
		s->backend = NULL;
		if (s->env.nrcpts == 0)
			s->route = pool_route_for(s->wg->shared->pool, session_domain_of(s->pending_rcpt));
		session_establish(s, session_rcpt_est_cb);
		return;
	}
	if (s->wg->shared->pool->nroutes > 0 &&
	    pool_route_for(s->wg->shared->pool, session_domain_of(s->pending_rcpt)) != s->route) {
		session_reply(s, "452 4.5.3 Recipients for this destination go in a separate transaction");
		session_rcpt_done(s);
		return;
	}
	session_rcpt_send(s);
}

/* ---- DATA and end of data ---------------------------------------------------------- */

static int session_data_out(void *arg, const char *data, size_t len)
{
	struct session *s = arg;

	s->msg_size += len;
	if (s->msg_too_big || s->msg_write_error)
		return 0;
	if (s->msg_size > s->cfg->limits.max_message_size) {
		s->msg_too_big = true;
		return 0;
	}
	if (msgbuf_append(s->msg, data, len) != 0)
		s->msg_write_error = true;
	return 0;
}

static void session_data_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (!session_chain_returned(s, v))
		return;
	if (v->action == VERDICT_REJECT || v->action == VERDICT_TEMPFAIL) {
		chain_txn_end(&s->chain, session_reply_verdict(s, v, "data"), HOOK_DATA, v->reason);
		session_txn_reset(s, true);
		session_error(s);
		session_resume(s);
		return;
	}
	s->msg = msgbuf_new((size_t)s->cfg->limits.memory_threshold, s->cfg->limits.spool_dir);
	if (s->msg == NULL) {
		session_reply(s, "451 4.3.0 Error: cannot hold the message");
		chain_txn_end(&s->chain, 451, HOOK_DATA, "spool");
		session_txn_reset(s, true);
		session_resume(s);
		return;
	}
	dataparse_init(&s->dp, s->cfg->limits.bare_lf == BARE_LF_NORMALIZE ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	session_enter_state(s, SESSION_DATA);
	s->data_deadline_at = uv_now(&s->w->loop) + s->cfg->limits.data_deadline;
	session_arm_data(s);
	session_flush(s);
	session_process(s);
}

static void session_message_done(struct session *s, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ends the message with a reply (reason: a log word for the outcome, may be NULL), tells the
 * modules the outcome and resets the transaction. */
static void session_message_done(struct session *s, int code, const char *reason, const char *fmt, ...)
{
	char text[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	session_reply(s, "%d %s", code, text);
	chain_txn_end(&s->chain, code, HOOK_EOM, reason);
	switch (code / 100) {
	case 2: counter_inc(COUNTER_MESSAGES_DELIVERED); break;
	case 4: counter_inc(COUNTER_MESSAGES_TEMPFAILED); break;
	default: counter_inc(COUNTER_MESSAGES_REJECTED); break;
	}
	session_txn_reset(s, code / 100 == 2);
	session_resume(s);
}

static void session_deliver(struct session *s);

/* Which text of a backend's 250 names its queue id: "... queued as X". */
static void session_note_backend_qid(struct session *s, const char *text)
{
	const char *q = text ? strstr(text, "queued as ") : NULL;
	size_t n = 0;

	s->backend_qid[0] = '\0';
	if (q == NULL)
		return;
	q += 10;
	while (q[n] && q[n] != ' ' && q[n] != '\r' && n < sizeof(s->backend_qid) - 1)
		n++;
	memcpy(s->backend_qid, q, n);
	s->backend_qid[n] = '\0';
}

static void session_delivered(struct session *s, const char *backend_url)
{
	s->nmessages++;
	counter_add(COUNTER_BYTES_DELIVERED, (long)s->msg_size);
	log_event(LOG_LVL_INFO, s->id, "event=delivered queue_id=%s backend=%s backend_queue_id=%s from=<%s> rcpts=%zu size=%llu client=%s score=%.1f",
	    s->env.queue_id, backend_url, s->backend_qid[0] ? s->backend_qid : "-",
	    s->env.mail_from ? s->env.mail_from : "", s->env.nrcpts, (unsigned long long)s->msg_size,
	    s->env.client_ip, s->env.score);
	session_message_done(s, 250, NULL, "2.0.0 Ok: queued as %s", s->env.queue_id);
}

/* The message could not be handed to any backend: a 4xx, the client retries. */
static void session_deliver_tempfail(struct session *s, const char *why)
{
	log_event(LOG_LVL_WARNING, s->id, "event=tempfail stage=data reason=no_backend queue_id=%s detail=\"%s\"",
	    s->env.queue_id, why ? why : "");
	opstats_note_refusal(s->w->index, s->env.client_ip, "data", "no_backend", true);
	session_message_done(s, 451, "no_backend", "4.4.1 Message not accepted by any backend, try again later");
}

static void session_maildir_cb(void *arg, int status, const char *qid, const char *err)
{
	struct session *s = arg;

	/* The write ran in the thread pool; the session waited for it (pending). */
	s->pending--;
	if (s->state == SESSION_CLOSING) {
		if (s->open_handles == 0 && s->pending == 0)
			session_free(s);
		return;
	}
	if (status != 0) {
		if (s->backend == NULL) {	/* the quarantine store */
			session_deliver_tempfail(s, err);
			return;
		}
		backend_report_failure(s->wg->shared->pool, s->backend, err);
		if (s->backend->index < 64)
			s->tried |= 1ULL << s->backend->index;
		s->backend = NULL;
		if (s->attempts >= s->cfg->backends.max_attempts) {
			session_deliver_tempfail(s, err);
			return;
		}
		counter_inc(COUNTER_BACKEND_FAILOVERS);
		session_deliver(s);
		return;
	}
	if (s->backend)
		backend_report_success(s->wg->shared->pool, s->backend);
	snprintf(s->backend_qid, sizeof(s->backend_qid), "%s", qid);
	session_delivered(s, s->backend ? s->backend->url : "maildir");
}

static void session_data_reply_cb(void *arg, int n, const int *codes, const char *const *texts)
{
	struct session *s = arg;
	int ok = 0, perm = 0, temp = 0;

	if (s->state == SESSION_CLOSING)
		return;
	for (int i = 0; i < n; i++) {
		if (codes[i] / 100 == 2)
			ok++;
		else if (codes[i] / 100 == 5)
			perm++;
		else
			temp++;
	}
	const char *url = s->backend ? s->backend->url : "?";
	if (temp == 0 && ok > 0) {
		session_note_backend_qid(s, texts[0]);
		if (perm)
			log_event(LOG_LVL_WARNING, s->id, "event=partial_reject backend=%s rejected=%d accepted=%d",
			    url, perm, ok);
		session_delivered(s, url);
		return;
	}
	if (temp == 0 && perm > 0) {
		/* The backend refused the message for good: its verdict goes to the client. */
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=data reason=backend backend=%s code=%d reply=\"%.200s\"",
		    url, codes[0], texts[0] ? texts[0] : "");
		opstats_note_refusal(s->w->index, s->env.client_ip, "data", "backend", false);
		session_reply_text(s, codes[0], texts[0]);
		chain_txn_end(&s->chain, codes[0], HOOK_EOM, "backend");
		counter_inc(COUNTER_MESSAGES_REJECTED);
		session_txn_reset(s, true);
		session_resume(s);
		return;
	}
	/* A temporary failure or a lost connection before the final 250: replay elsewhere. */
	log_event(LOG_LVL_INFO, s->id, "event=backend_tempfail backend=%s code=%d reply=\"%.200s\" attempt=%d",
	    url, codes[0], texts[0] ? texts[0] : "", s->attempts);
	if (ok > 0) {
		/* LMTP: some recipients already have it; the client's retry may duplicate for
		 * them, which is better than losing the others. */
		log_event(LOG_LVL_WARNING, s->id, "event=lmtp_partial backend=%s delivered=%d tempfailed=%d", url, ok, temp);
	}
	if (s->relay) {
		relay_abort(s->relay);
		s->relay = NULL;
	}
	if (s->backend && s->backend->index < 64)
		s->tried |= 1ULL << s->backend->index;
	s->backend = NULL;
	if (s->attempts >= s->cfg->backends.max_attempts) {
		session_deliver_tempfail(s, "all attempts failed");
		return;
	}
	counter_inc(COUNTER_BACKEND_FAILOVERS);
	session_deliver(s);
}

static void session_deliver_est_cb(struct session *s, int code, const char *text)
{
	if (code / 100 != 2) {
		if (code / 100 == 5) {
			session_reply_text(s, code, text);
			chain_txn_end(&s->chain, code, HOOK_EOM, "backend");
			counter_inc(COUNTER_MESSAGES_REJECTED);
			session_txn_reset(s, false);
			session_resume(s);
			return;
		}
		session_deliver_tempfail(s, text);
		return;
	}
	session_deliver(s);
}

/* Sends the held message to the current backend, establishing one first if needed. */
static void session_deliver(struct session *s)
{
	size_t len;
	const char *data;
	struct msgbuf *body = s->env.new_body ? s->env.new_body : s->msg;

	if (s->backend == NULL || (s->relay == NULL && s->backend->kind != BACKEND_MAILDIR)) {
		/* No connection (or it died between commands): replay on another backend. */
		if (s->backend && s->backend->index < 64)
			s->tried |= 1ULL << s->backend->index;
		s->backend = NULL;
		session_establish(s, session_deliver_est_cb);
		return;
	}
	if (s->backend->kind == BACKEND_MAILDIR) {
		size_t off = s->env.new_body ? 0 : s->body_off;
		if (maildir_deliver(&s->w->loop, s->backend->path, s->prefix.v, s->prefix.len, body, off,
		    session_maildir_cb, s) != 0)
			session_deliver_tempfail(s, "maildir write could not start");
		else
			s->pending++;
		return;
	}
	data = msgbuf_data(body, &len);
	if (data == NULL) {
		session_deliver_tempfail(s, "message unreadable");
		return;
	}
	size_t off = s->env.new_body ? 0 : s->body_off;
	relay_send_message(s->relay, s->prefix.v, s->prefix.len, data + off, len - off, (int)s->env.nrcpts,
	    session_data_reply_cb, s);
}

/* Applies the EOM verdict's envelope and header changes, builds the outgoing header. */
static bool session_prepare_message(struct session *s)
{
	size_t len, hlen;
	const char *data = msgbuf_data(s->msg, &len);
	char with[16];
	bool envelope_changed = false;

	if (data == NULL)
		return false;
	hlen = msgbuf_header_len(s->msg);
	snprintf(with, sizeof(with), "%s%s", s->env.esmtp ? "ESMTP" : "SMTP", s->env.tls ? "S" : "");
	strbuf_free(&s->prefix);
	headers_build_received(&s->prefix, &s->env, s->cfg->hostname, with);
	headers_apply_edits(data, hlen, s->env.hdr_edits, s->env.nhdr_edits, &s->prefix);
	s->body_off = hlen;
	/* Envelope changes from filters: apply to the envelope and start a fresh backend
	 * transaction with it. */
	for (size_t i = 0; i < s->env.ndel_rcpts; i++) {
		for (size_t j = 0; j < s->env.nrcpts; j++) {
			if (strcasecmp(s->env.rcpts[j].addr, s->env.del_rcpts[i]) == 0) {
				free(s->env.rcpts[j].addr);
				free(s->env.rcpts[j].params);
				memmove(&s->env.rcpts[j], &s->env.rcpts[j + 1], (s->env.nrcpts - j - 1) * sizeof(struct rcpt));
				s->env.nrcpts--;
				envelope_changed = true;
				break;
			}
		}
	}
	for (size_t i = 0; i < s->env.nadd_rcpts; i++) {
		s->pending_rcpt = strdup(s->env.add_rcpts[i].addr);
		s->pending_rcpt_params = strdup(s->env.add_rcpts[i].params ? s->env.add_rcpts[i].params : "");
		session_rcpt_add(s);
		envelope_changed = true;
	}
	if (s->env.new_mail_from) {
		free(s->env.mail_from);
		s->env.mail_from = strdup(s->env.new_mail_from);
		envelope_changed = true;
	}
	if (envelope_changed && s->relay) {
		relay_release(s->relay, false);
		s->relay = NULL;
		s->backend = NULL;
	}
	return true;
}

static void session_quarantine(struct session *s)
{
	struct backend qb;
	const char *err = NULL;

	if (s->cfg->quarantine == NULL || backend_parse_url(s->cfg->quarantine, &qb, &err) != 0 ||
	    qb.kind != BACKEND_MAILDIR) {
		log_event(LOG_LVL_WARNING, s->id, "event=quarantine_unavailable queue_id=%s", s->env.queue_id);
		session_message_done(s, 451, "quarantine", "4.3.0 Message held for review could not be stored, try again later");
		return;
	}
	if (s->relay) {
		relay_release(s->relay, true);
		s->relay = NULL;
	}
	static __thread char qpath[1024];
	snprintf(qpath, sizeof(qpath), "%s", s->cfg->quarantine + 8);
	s->backend = NULL;
	counter_inc(COUNTER_MESSAGES_QUARANTINED);
	log_event(LOG_LVL_INFO, s->id, "event=quarantine queue_id=%s reason=\"%s\"", s->env.queue_id,
	    s->env.quarantine_reason);
	struct msgbuf *body = s->env.new_body ? s->env.new_body : s->msg;
	if (maildir_deliver(&s->w->loop, qpath, s->prefix.v, s->prefix.len, body,
	    s->env.new_body ? 0 : s->body_off, session_maildir_cb, s) != 0)
		session_deliver_tempfail(s, "quarantine write could not start");
	else
		s->pending++;
}

static void session_eom_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (!session_chain_returned(s, v))
		return;
	if (s->env.flags & HOOK_FLAG_VIRUS)
		counter_inc(COUNTER_VIRUSES_FOUND);
	switch (v->action) {
	case VERDICT_REJECT:
	case VERDICT_TEMPFAIL:
		chain_txn_end(&s->chain, session_reply_verdict(s, v, "data"), HOOK_EOM, v->reason);
		counter_inc(v->action == VERDICT_REJECT ? COUNTER_MESSAGES_REJECTED : COUNTER_MESSAGES_TEMPFAILED);
		session_txn_reset(s, true);
		session_resume(s);
		return;
	case VERDICT_DISCARD:
		log_event(LOG_LVL_INFO, s->id, "event=discard queue_id=%s reason=%s from=<%s> client=%s",
		    s->env.queue_id, v->reason[0] ? v->reason : "filter", s->env.mail_from ? s->env.mail_from : "",
		    s->env.client_ip);
		counter_inc(COUNTER_MESSAGES_DISCARDED);
		session_reply(s, "250 2.0.0 Ok: queued as %s", s->env.queue_id);
		s->env.flags |= HOOK_FLAG_DISCARDED;
		chain_txn_end(&s->chain, 250, HOOK_EOM, v->reason[0] ? v->reason : "filter");
		session_txn_reset(s, true);
		session_resume(s);
		return;
	default:
		break;
	}
	if (v->action == VERDICT_QUARANTINE) {
		s->env.flags |= HOOK_FLAG_QUARANTINED;
		if (v->reply[0] && !s->env.quarantine_reason[0])
			snprintf(s->env.quarantine_reason, sizeof(s->env.quarantine_reason), "%.255s", v->reply);
		/* The reason goes in a header of the stored copy (inside the header block). */
		hook_env_add_header(&s->env, "X-Mxgate-Quarantine", s->env.quarantine_reason[0] ?
		    s->env.quarantine_reason : "quarantined by filter");
	}
	if (!session_prepare_message(s)) {
		session_message_done(s, 451, "unreadable", "4.3.0 Error: message unreadable, try again later");
		return;
	}
	if (v->action == VERDICT_QUARANTINE) {
		session_quarantine(s);
		return;
	}
	session_deliver(s);
}

static void session_data_end(struct session *s)
{
	session_enter_state(s, SESSION_BUSY);
	uv_timer_stop(&s->timer);
	counter_inc(COUNTER_MESSAGES_RECEIVED);
	counter_add(COUNTER_BYTES_RECEIVED, (long)s->msg_size);
	if (s->dp.bad_line_ending)
		counter_inc(COUNTER_BARE_LF);
	if (s->msg_too_big) {
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=data reason=size size=%llu client=%s",
		    (unsigned long long)s->msg_size, s->env.client_ip);
		opstats_note_refusal(s->w->index, s->env.client_ip, "data", "size", false);
		session_message_done(s, 552, "size", "5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (s->dp.bad_line_ending && s->cfg->limits.bare_lf == BARE_LF_REJECT) {
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=data reason=bare_lf client=%s", s->env.client_ip);
		opstats_note_refusal(s->w->index, s->env.client_ip, "data", "bare_lf", false);
		session_message_done(s, 550, "bare_lf", "5.6.0 Message contains bare CR or LF line endings, not allowed");
		return;
	}
	if (s->dp.nul_seen && s->cfg->limits.nul == NUL_REJECT) {
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=data reason=nul nuls=%llu client=%s",
		    (unsigned long long)s->dp.nuls, s->env.client_ip);
		session_message_done(s, 554, "nul", "5.6.0 Message contains NUL characters, not allowed");
		return;
	}
	if (s->dp.nul_seen)
		log_event(LOG_LVL_INFO, s->id, "event=nul_stripped nuls=%llu client=%s",
		    (unsigned long long)s->dp.nuls, s->env.client_ip);
	if (s->msg_write_error) {
		session_message_done(s, 451, "spool", "4.3.0 Error: could not store the message, try again later");
		return;
	}
	s->env.msg = s->msg;
	s->chain_running = true;
	chain_run(&s->chain, HOOK_EOM, session_eom_chain_cb, s);
}

/* ---- command dispatch -------------------------------------------------------------- */

/* MAIL/RCPT parameters must be ones we announced (RFC 5321 4.1.1.11): false after
 * replying 555 to the first one that is not. */
static bool session_params_ok(struct session *s, const struct smtp_cmd *cmd, const char *const *allowed)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		size_t k = 0;
		while (allowed[k] && strcasecmp(allowed[k], cmd->params[i].key) != 0)
			k++;
		if (allowed[k] == NULL) {
			session_reply(s, "555 5.5.4 Unsupported option: %.64s", cmd->params[i].key);
			session_error(s);
			return false;
		}
	}
	return true;
}

/* RCPT checks that need no backend: a non-ASCII address only in an SMTPUTF8 transaction
 * (RFC 6531 3.4), and every domain the address names in accept_domains (domain.c). False
 * after replying. */
static bool session_rcpt_allowed(struct session *s, const struct smtp_cmd *cmd)
{
	char denied[256];
	const char *err = smtp_cmd_check_utf8(cmd, strcasestr(s->env.mail_params, "SMTPUTF8") != NULL);

	if (err == NULL && (s->cfg->accept_set == NULL ||
	    domain_set_accepts_address(s->cfg->accept_set, cmd->addr, denied, sizeof(denied))))
		return true;
	if (err == NULL) {
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=rcpt reason=relay_denied rcpt=<%s> domain=%s client=%s",
		    cmd->addr, denied, s->env.client_ip);
		counter_inc(COUNTER_RECIPIENTS_REJECTED);
		err = "550 5.7.1 relaying denied";
	}
	session_reply(s, "%s", err);
	session_error(s);
	return false;
}

/* Starts a stage's chain; the callback continues the command (at once when no module
 * wants the stage: chain_run then completes synchronously). */
static void session_run_chain(struct session *s, enum hook_stage st, chain_done_fn cb)
{
	s->tarpit_ms = 0;
	session_enter_state(s, SESSION_BUSY);
	uv_timer_stop(&s->timer);
	s->chain_running = true;
	chain_run(&s->chain, st, cb, s);
}

static void session_cmd_line(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	const char *err = NULL;

	s->ncommands++;
	if (smtp_cmd_parse(line, len, &cmd, &err) != 0) {
		if (cmd.verb == SMTP_HTTP) {
			log_event(LOG_LVL_INFO, s->id, "event=non_smtp client=%s", s->env.client_ip);
			hook_env_add_symbol(&s->env, "NON_SMTP_COMMAND", 5.0, "HTTP or proxy command sent to SMTP");
			session_reply(s, "421 4.7.0 %s Error: non-SMTP command", s->cfg->hostname);
			s->quit_after_flush = true;
			return;
		}
		session_reply(s, "%s", err ? err : "500 5.5.2 Syntax error");
		session_error(s);
		return;
	}
	s->verb = cmd.verb;
	switch (cmd.verb) {
	case SMTP_HTTP:
		log_event(LOG_LVL_INFO, s->id, "event=non_smtp client=%s", s->env.client_ip);
		session_reply(s, "421 4.7.0 %s Error: non-SMTP command", s->cfg->hostname);
		s->quit_after_flush = true;
		return;
	case SMTP_HELO:
	case SMTP_EHLO:
		if (cmd.arg[0] == '\0') {
			session_reply(s, "501 5.5.4 Syntax: %s hostname", cmd.verb == SMTP_EHLO ? "EHLO" : "HELO");
			session_error(s);
			return;
		}
		session_txn_reset(s, true);
		snprintf(s->env.helo, sizeof(s->env.helo), "%s", cmd.arg);
		s->env.esmtp = cmd.verb == SMTP_EHLO;
		if (chain_wants(s->chain.mods, HOOK_HELO)) {
			session_run_chain(s, HOOK_HELO, session_helo_chain_cb);
			return;
		}
		session_helo_apply(s);
		return;
	case SMTP_MAIL:
		if (s->env.helo[0] == '\0') {
			session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
			session_error(s);
			return;
		}
		if (s->env.mail_from) {
			session_reply(s, "503 5.5.1 Error: nested MAIL command");
			session_error(s);
			return;
		}
		if (s->drain) {
			session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
			s->quit_after_flush = true;
			return;
		}
		if (s->conn_rejected) {
			session_reply_verdict(s, &s->conn_verdict, "connect");
			session_error(s);
			return;
		}
		if (cmd.size > s->cfg->limits.max_message_size) {
			session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
			session_error(s);
			return;
		}
		if (!session_params_ok(s, &cmd, (const char *const[]){ "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", NULL }))
			return;
		session_txn_reset(s, true);
		s->env.mail_from = strdup(cmd.addr);
		s->env.mail_params = strdup(cmd.params_raw);
		session_make_queue_id(s);
		chain_txn_begin(&s->chain);
		session_run_chain(s, HOOK_MAIL, session_mail_chain_cb);
		return;
	case SMTP_RCPT:
		if (s->env.mail_from == NULL) {
			session_reply(s, "503 5.5.1 Error: need MAIL command");
			session_error(s);
			return;
		}
		if ((long)s->env.nrcpts >= s->cfg->limits.max_recipients) {
			session_reply(s, "452 4.5.3 Error: too many recipients");
			return;
		}
		if (!session_params_ok(s, &cmd, (const char *const[]){ "NOTIFY", "ORCPT", NULL }))
			return;
		if (cmd.addr[0] == '\0') {
			session_reply(s, "501 5.1.3 Bad recipient address syntax");
			session_error(s);
			return;
		}
		if (!session_rcpt_allowed(s, &cmd))
			return;
		free(s->pending_rcpt);
		free(s->pending_rcpt_params);
		s->pending_rcpt = strdup(cmd.addr);
		s->pending_rcpt_params = strdup(cmd.params_raw);
		s->env.cur_rcpt = s->pending_rcpt;
		s->env.cur_rcpt_params = s->pending_rcpt_params;
		session_run_chain(s, HOOK_RCPT, session_rcpt_chain_cb);
		return;
	case SMTP_DATA:
		if (s->env.mail_from == NULL) {
			session_reply(s, "503 5.5.1 Error: need MAIL command");
			session_error(s);
			return;
		}
		if (s->env.nrcpts == 0) {
			session_reply(s, "554 5.5.1 Error: no valid recipients");
			session_error(s);
			return;
		}
		if (cmd.arg[0]) {
			session_reply(s, "501 5.5.4 Syntax: DATA");
			session_error(s);
			return;
		}
		session_run_chain(s, HOOK_DATA, session_data_chain_cb);
		return;
	case SMTP_RSET:
		session_txn_reset(s, true);
		session_reply(s, "250 2.0.0 Ok");
		return;
	case SMTP_NOOP:
		session_reply(s, "250 2.0.0 Ok");
		return;
	case SMTP_QUIT:
		session_reply(s, "221 2.0.0 Bye");
		s->quit_after_flush = true;
		return;
	case SMTP_VRFY:
		session_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
		return;
	case SMTP_EXPN:
		session_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	case SMTP_HELP:
		session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s",
		    session_tls_offered(s) ? " STARTTLS" : "");
		return;
	case SMTP_STARTTLS:
		if (!session_tls_offered(s)) {
			session_reply(s, s->tls ? "503 5.5.1 Error: TLS already active" : "502 5.5.1 Error: command not implemented");
			session_error(s);
			return;
		}
		if (cmd.arg[0]) {
			session_reply(s, "501 5.5.4 Syntax: STARTTLS");
			return;
		}
		/* RFC 3207 / CVE-2011-0411: anything pipelined after STARTTLS is plaintext an
		 * attacker could have injected; it is discarded, never read as a command. */
		if (s->inlen || linebuf_pending(&s->lb)) {
			log_event(LOG_LVL_WARNING, s->id, "event=starttls_injection client=%s bytes=%zu", s->env.client_ip,
			    s->inlen + linebuf_pending(&s->lb));
			hook_env_add_symbol(&s->env, "STARTTLS_PIPELINED", 3.0, "plaintext pipelined after STARTTLS");
			s->inlen = 0;
			linebuf_clear(&s->lb);
		}
		session_reply(s, "220 2.0.0 Ready to start TLS");
		session_flush(s);
		s->tls = tlsconn_new(s->wg->shared->tls_server, true, NULL, &session_tls_ops, s);
		if (s->tls == NULL) {
			session_close(s, "tls_setup_failed");
			return;
		}
		/* RFC 3207 4.2: forget everything learned before TLS. */
		session_txn_reset(s, true);
		s->env.helo[0] = '\0';
		s->env.esmtp = false;
		session_enter_state(s, SESSION_TLS);
		session_arm(s, s->cfg->limits.command_timeout);
		return;
	case SMTP_AUTH:
		session_reply(s, "503 5.5.1 Error: authentication not enabled");
		session_error(s);
		return;
	case SMTP_BDAT:
		session_reply(s, "502 5.5.1 Error: command not implemented");
		session_error(s);
		return;
	case SMTP_XCLIENT:
		session_reply(s, "550 5.7.0 Error: insufficient authorization");
		session_error(s);
		return;
	default:
		session_reply(s, "500 5.5.2 Error: command not recognized");
		session_error(s);
		return;
	}
}

/* Works through held input until it runs out or a command goes async. */
static void session_process(struct session *s)
{
	size_t pos = 0;

	while (pos < s->inlen && !s->quit_after_flush) {
		if (s->state == SESSION_COMMAND &&
		    uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) > SESSION_MAX_QUEUED_OUTPUT) {
			s->out_blocked = true;
			break;
		}
		if (s->state == SESSION_DATA) {
			int done = 0;
			ssize_t used = dataparse_feed(&s->dp, s->in + pos, s->inlen - pos, session_data_out, s, &done);
			if (used < 0)
				used = (ssize_t)(s->inlen - pos);
			pos += (size_t)used;
			if (done) {
				/* End-of-data processing may resume the session (and reach this loop
				 * again) synchronously: hand it a compacted buffer. */
				memmove(s->in, s->in + pos, s->inlen - pos);
				s->inlen -= pos;
				pos = 0;
				session_data_end(s);
				continue;
			}
			break;
		}
		if (s->state != SESSION_COMMAND)
			break;
		struct linebuf_line line;
		size_t used = 0;
		if (!linebuf_feed(&s->lb, s->in + pos, s->inlen - pos, &used, &line)) {
			pos += used;
			break;
		}
		pos += used;
		if (line.too_long) {
			session_reply(s, "500 5.5.2 Error: line too long");
			session_error(s);
			continue;
		}
		if (line.bare_lf && !hook_env_find_symbol(&s->env, "BARE_LF_COMMAND"))
			hook_env_add_symbol(&s->env, "BARE_LF_COMMAND", 1.0, "command line ended by a bare LF");
		if (!s->env.esmtp && pos < s->inlen && !hook_env_find_symbol(&s->env, "PIPELINING_UNANNOUNCED"))
			hook_env_add_symbol(&s->env, "PIPELINING_UNANNOUNCED", 1.0, "pipelined commands without EHLO");
		/* The line may point into s->in; copy before anything can reallocate it. */
		char linecopy[1100];
		size_t ll = line.len < sizeof(linecopy) - 1 ? line.len : sizeof(linecopy) - 1;
		memcpy(linecopy, line.data, ll);
		linecopy[ll] = '\0';
		/* STARTTLS checks s->inlen for injected plaintext: expose only what follows. */
		memmove(s->in, s->in + pos, s->inlen - pos);
		s->inlen -= pos;
		pos = 0;
		session_cmd_line(s, linecopy, ll);
		if (s->state == SESSION_TLS) {
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
	session_flush(s);
	if (s->state == SESSION_CLOSING)
		return;
	if (s->eof && (s->state == SESSION_COMMAND || s->state == SESSION_DATA)) {
		/* The client half-closed: everything it sent is answered. */
		session_close(s, "client_closed");
		return;
	}
	if (s->state == SESSION_COMMAND) {
		if (s->drain && s->env.mail_from == NULL) {
			session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			return;
		}
		/* The timeout runs from the start of a line: a client trickling one byte at a time
		 * does not reset it (slowloris). */
		if (linebuf_pending(&s->lb) == 0 || !uv_is_active((uv_handle_t *)&s->timer))
			session_arm(s, s->cfg->limits.command_timeout);
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

/* Remembers the refusal the client got at connect, for the session outcome at close. */
static void session_note_refusal(struct session *s, int code, const char *reason)
{
	if (s->refused_code)
		return;
	s->refused_code = code;
	snprintf(s->refused_reason, sizeof(s->refused_reason), "%s", reason);
}

static void session_greet(struct session *s)
{
	if (s->greeted || s->state == SESSION_CLOSING)
		return;
	s->greeted = true;
	if (s->pregreet_hit) {
		const struct pregreet_config *pg = &s->cfg->pregreet;
		hook_env_add_symbol(&s->env, "PREGREET", pg->score, "talked before the greeting");
		if (pg->action == PREGREET_REJECT && !s->conn_rejected) {
			s->conn_rejected = true;
			verdict_set(&s->conn_verdict, VERDICT_REJECT, 550, "pregreet",
			    "5.5.1 Protocol error: talking before the greeting");
			session_note_refusal(s, 550, "pregreet");
		} else if (pg->action == PREGREET_TEMPFAIL && !s->conn_rejected) {
			s->conn_rejected = true;
			verdict_set(&s->conn_verdict, VERDICT_TEMPFAIL, 450, "pregreet",
			    "4.5.1 Protocol error: talking before the greeting");
			session_note_refusal(s, 450, "pregreet");
		} else if (pg->action == PREGREET_DROP) {
			session_note_refusal(s, 521, "pregreet");
			session_reply(s, "521 5.5.1 %s Protocol error", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			return;
		}
		/* The early bytes were a command the client sent blind: discard them so the
		 * session continues in step with what the client reads next. */
	}
	session_reply(s, "220 %s ESMTP mxgate", s->cfg->hostname);
	session_enter_state(s, SESSION_COMMAND);
	session_process(s);
}

static void session_connect_chain_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	s->chain_running = false;
	if (s->state == SESSION_CLOSING)
		return;
	s->connect_chain_done = true;
	if (v->action == VERDICT_TEMPFAIL) {
		int code = v->code / 100 == 4 ? v->code : 421;
		session_note_refusal(s, code, v->reason[0] ? v->reason : "filter");
		session_reply_text(s, code, v->reply[0] ? v->reply : "4.7.0 Service temporarily unavailable");
		log_event(LOG_LVL_INFO, s->id, "event=tempfail stage=connect reason=%s client=%s",
		    v->reason[0] ? v->reason : "filter", s->env.client_ip);
		opstats_note_refusal(s->w->index, s->env.client_ip, "connect", v->reason, true);
		s->quit_after_flush = true;
		session_flush(s);
		return;
	}
	if (v->action == VERDICT_REJECT) {
		/* Postscreen-style: greet, then refuse every MAIL with the reason (the
		 * client's sender is logged, and clients retry less than after a 554 banner). */
		s->conn_rejected = true;
		s->conn_verdict = *v;
		session_note_refusal(s, v->code / 100 == 5 ? v->code : 550, v->reason[0] ? v->reason : "filter");
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=connect reason=%s client=%s reply=\"%.200s\"",
		    v->reason[0] ? v->reason : "filter", s->env.client_ip, v->reply);
		opstats_note_refusal(s->w->index, s->env.client_ip, "connect", v->reason, false);
	}
	if (s->pregreet_wait) {
		/* The pregreet timer greets. */
		s->timer.data = s;
		return;
	}
	session_greet(s);
}

static void session_start_connect(struct session *s)
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
	enum conncount_result cc = conncount_acquire((const struct sockaddr *)&s->env.client,
	    s->cfg->limits.max_connections_per_ip);
	if (cc == CONNCOUNT_REFUSED) {
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=connect reason=max_connections_per_ip client=%s",
		    s->env.client_ip);
		session_note_refusal(s, 421, "max_connections_per_ip");
		opstats_note_refusal(s->w->index, s->env.client_ip, "connect", "max_connections_per_ip", true);
		counter_inc(COUNTER_SESSIONS_REJECTED_LIMIT);
		session_reply(s, "421 4.7.0 %s Error: too many connections from %s", s->cfg->hostname, s->env.client_ip);
		s->quit_after_flush = true;
		session_flush(s);
		return;
	}
	s->counted_ip = cc == CONNCOUNT_COUNTED;
	/* Near the connection limit, clients known to be good keep being served while unknown
	 * ones are turned away first: a module that knows (reputation) does it at connect. */
	s->env.overloaded = conncount_total() > s->cfg->limits.max_connections * 9 / 10;
	log_event(LOG_LVL_INFO, s->id, "event=connect client=%s port=%d tls=%s", s->env.client_ip,
	    s->env.client_port, s->tls ? "implicit" : "no");
	opstats_note_session(s->w->index, s->env.client_ip);
	session_enter_state(s, SESSION_CONNECT);
	if (pg->delay > 0) {
		/* Postscreen's teaser: a multi-line greeting start, then silence; a client that
		 * speaks before the final 220 line talks before the greeting. */
		s->pregreet_wait = true;
		session_reply(s, "220-%s ESMTP", s->cfg->hostname);
		session_flush(s);
		session_arm(s, pg->delay);
	}
	session_unpause(s);
	s->chain_running = true;
	chain_run(&s->chain, HOOK_CONNECT, session_connect_chain_cb, s);
}

void session_accept(struct worker *w, uv_stream_t *server, const struct listen_config *lc)
{
	struct session *s = calloc(1, sizeof(*s));
	int len;

	if (s == NULL)
		return;
	s->w = w;
	s->wg = w->gen;
	s->wg->sessions++;
	s->cfg = s->wg->shared->cfg;
	s->lc = lc;
	uv_tcp_init(&w->loop, &s->tcp);
	uv_timer_init(&w->loop, &s->timer);
	uv_timer_init(&w->loop, &s->chain_timer);
	s->tcp.data = s;
	s->timer.data = s;
	s->open_handles = 3;
	s->started_ms = uv_now(&w->loop);
	w->sessions++;
	s->next = w->session_list;
	if (s->next)
		s->next->prev = s;
	w->session_list = s;
	conncount_total_add(1);
	counter_inc(COUNTER_SESSIONS_TOTAL);
	counter_add(COUNTER_SESSIONS_ACTIVE, 1);
	snprintf(s->id, sizeof(s->id), "%02x%06llx", (unsigned)w->index & 0xff,
	    (unsigned long long)(++w->session_seq & 0xffffff));
	s->env.session_id = s->id;
	s->env.loop = &w->loop;
	s->env.cfg = s->cfg;
	s->env.worker = w->index;
	linebuf_init(&s->lb, (size_t)s->cfg->limits.max_line_length);
	chain_init(&s->chain, &s->wg->mods, &s->env, &s->chain_timer);
	if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
		session_close(s, "accept_failed");
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);
	len = sizeof(s->env.client);
	uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&s->env.client, &len);
	len = sizeof(s->env.local);
	uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&s->env.local, &len);
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "?");
	if (s->env.client.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&s->env.client)->sin_addr, s->env.client_ip, sizeof(s->env.client_ip));
	else if (s->env.client.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&s->env.client)->sin6_addr, s->env.client_ip, sizeof(s->env.client_ip));

	if (conncount_total() > s->cfg->limits.max_connections || atomic_load(&w->stop)) {
		counter_inc(COUNTER_SESSIONS_REJECTED_LIMIT);
		log_event(LOG_LVL_INFO, s->id, "event=reject stage=connect reason=max_connections client=%s", s->env.client_ip);
		session_note_refusal(s, 421, "max_connections");
		opstats_note_refusal(w->index, s->env.client_ip, "connect", "max_connections", true);
		session_reply(s, "421 4.7.0 %s Error: too many connections, try again later", s->cfg->hostname);
		s->quit_after_flush = true;
		session_flush(s);
		return;
	}
	if (lc->proxy_protocol) {
		if (!cfg_cidrlist_match(&s->cfg->trusted_proxies, (const struct sockaddr *)&s->env.client)) {
			counter_inc(COUNTER_PROXY_REFUSED);
			log_event(LOG_LVL_WARNING, s->id, "event=proxy_refused peer=%s reason=untrusted", s->env.client_ip);
			session_close(s, "proxy_untrusted");
			return;
		}
		session_enter_state(s, SESSION_PROXY);
		session_arm(s, 10000);
		session_unpause(s);
		return;
	}
	if (lc->tls == LISTEN_TLS_IMPLICIT) {
		if (s->wg->shared->tls_server == NULL) {
			session_close(s, "no_tls_context");
			return;
		}
		s->tls = tlsconn_new(s->wg->shared->tls_server, true, NULL, &session_tls_ops, s);
		if (s->tls == NULL) {
			session_close(s, "tls_setup_failed");
			return;
		}
		session_enter_state(s, SESSION_TLS);
		session_arm(s, s->cfg->limits.command_timeout);
		session_unpause(s);
		return;
	}
	session_start_connect(s);
}

void session_drain_all(struct worker *w, int force)
{
	struct session *s = w->session_list, *next;

	for (; s; s = next) {
		next = s->next;
		s->drain = true;
		if (s->state == SESSION_CLOSING)
			continue;
		if (force || ((s->state == SESSION_COMMAND || s->state == SESSION_PROXY || s->state == SESSION_CONNECT) &&
		    s->env.mail_from == NULL)) {
			if (s->state != SESSION_PROXY)
				session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			if (s->state != SESSION_CLOSING)
				session_close(s, "shutdown");
		}
	}
}
