/* session_io.c — the client side of a session: accepting the socket, reading (the PROXY
 * header, TLS, plaintext held while the session is busy, pausing when too much is held),
 * writing replies (straight into the kernel, the rest queued; a client that does not read
 * its replies is not read either), the protocol timers, and closing.
 *
 * Ownership (libuv's rule): the session is freed in the last handle's close callback, once
 * the transaction has no work pending outside the loop (a relay open, a maildir write). */
#include "session_int.h"
#include "auth.h"
#include "config.h"
#include "conncount.h"
#include "counters.h"
#include "log.h"
#include "msgbuf.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "smtp_cmd.h"
#include "stream.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SESSION_MAX_PENDING_INPUT (256 * 1024)  /* pipelined bytes held while busy */
#define SESSION_PAUSE_HELD (16 * 1024)          /* held while busy: stop reading (TCP pushes back) */
#define SESSION_PROXY_MAX 600                   /* bytes of a PROXY header */
#define SESSION_CLOSE_LINGER_MS 5000            /* for the last replies to go out */

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
		if (session_takes_commands(s) || s->state == SESSION_DATA)
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
	/* Straight into the kernel when nothing is queued; only the rest is queued. */
	if (s->writes_inflight == 0) {
		int rc = stream_try_write((uv_stream_t *)&s->tcp, &data, &len);
		if (rc > 0)
			return 0;
		if (rc < 0) {
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

void session_flush(struct session *s)
{
	if (s->out.len == 0)
		return;
	if (s->tls)
		tlsconn_write(s->tls, s->out.v, s->out.len);
	else
		session_write_raw(s, s->out.v, s->out.len);
	s->out.len = 0;
	if (s->quit_after_flush && s->state != SESSION_CLOSING)
		session_close(s, s->quit_reason);
}

/* ---- timers ------------------------------------------------------------------------ */

static bool session_past_deadline(const struct session *s, uint64_t now);

static void session_timeout_cb(uv_timer_t *t)
{
	struct session *s = t->data;
	uint64_t now = uv_now(&s->w->loop);

	if (s->timer_due == 0)
		return;                 /* disarmed while the timer ran (session_disarm) */
	if (now < s->timer_due) {
		/* moved later since it was started (session_arm): run on for the rest */
		s->timer_fire = s->timer_due;
		uv_timer_start(&s->timer, session_timeout_cb, s->timer_due - now, 0);
		return;
	}
	s->timer_due = 0;
	switch (s->state) {
	case SESSION_CONNECT:
		/* The pregreet delay ended while the connect stage still runs: it greets. */
		s->pregreet_waited = true;
		return;
	case SESSION_BUSY:
		return;
	case SESSION_PREGREET:
		session_pregreet_over(s);
		return;
	case SESSION_CLOSING:
		/* The last replies did not go out within the linger: the client does not read
		 * them. Drop the connection; waiting on would hold the session (and a drain) for
		 * as long as the client cares to. */
		log_event(LOG_LVL_INFO, s->id, "event=drop reason=replies_unread client=%s", s->env.client_ip);
		s->write_failed = true;
		session_close(s, NULL);
		return;
	default:
		break;
	}
	counter_inc(COUNTER_SESSIONS_TIMEOUT);
	bool whole = session_past_deadline(s, now);
	const char *limit = whole ? "session_deadline" : s->timer_limit ? s->timer_limit : "command_timeout";
	log_event(LOG_LVL_INFO, s->id, "event=timeout state=%s client=%s limit=%s", session_state_name(s->state),
	    s->env.client_ip, limit);
	if (whole)
		session_reply(s, "421 4.4.2 %s Error: session time limit reached, reconnect to go on", s->cfg->hostname);
	else if (s->state != SESSION_PROXY && s->state != SESSION_TLS && s->state != SESSION_STARTTLS)
		session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
	s->quit_after_flush = true;
	session_flush(s);
	if (s->state != SESSION_CLOSING)
		session_close(s, "timeout");
}

void session_arm(struct session *s, uint64_t ms, const char *limit)
{
	if (ms == 0)
		ms = 300000;
	uint64_t due = uv_now(&s->w->loop) + ms;

	s->timer_limit = limit;     /* the bound due is, whether or not the timer restarts */

	/* The running timer fires at or before the new due time: note it, the callback
	 * starts the timer again for the rest (no heap removal and insertion per command). */
	s->timer_due = due;
	if (!s->timer_tarpit && s->timer_fire <= due && uv_is_active((uv_handle_t *)&s->timer))
		return;
	s->timer.data = s;
	s->timer_tarpit = false;
	s->timer_fire = due;
	uv_timer_start(&s->timer, session_timeout_cb, ms, 0);
}

void session_disarm(struct session *s)
{
	s->timer_due = 0;
}

bool session_timer_running(const struct session *s)
{
	return uv_is_active((const uv_handle_t *)&s->timer) && (s->timer_tarpit || s->timer_due != 0);
}

/* In DATA the timer fires at whichever comes first: data_timeout since the last read (as
 * Postfix), or the whole-DATA deadline set when 354 went out, so a client trickling a byte
 * at a time cannot hold the session for ever. */
void session_arm_data(struct session *s)
{
	uint64_t now = uv_now(&s->w->loop);
	uint64_t left = s->data_deadline_at > now ? s->data_deadline_at - now : 1;

	if (left < s->cfg->limits.data_timeout)
		session_arm(s, left, "data_deadline");
	else
		session_arm(s, s->cfg->limits.data_timeout, "data_timeout");
}

/* Between commands: limits.command_timeout, or what is left of the message's deadline
 * while a BDAT message is open (its first chunk taken, its LAST one not yet): the client
 * sends commands between the chunks, and one that sends one-octet chunks, each whole and
 * well inside command_timeout, would otherwise never reach the deadline its DATA twin has
 * (limits.data_deadline runs from the first chunk to the LAST one). */
void session_arm_command(struct session *s)
{
	uint64_t ms = s->cfg->limits.command_timeout;
	uint64_t now = uv_now(&s->w->loop);
	const char *limit = "command_timeout";

	if (s->env.mail_from != NULL && s->bdat.used && !s->bdat.complete && !s->bdat.failed) {
		uint64_t left = s->data_deadline_at > now ? s->data_deadline_at - now : 1;

		if (left < ms) {
			ms = left;
			limit = "data_deadline";
		}
	}
	if (s->env.mail_from == NULL) {
		/* limits.session_deadline: outside a transaction only, so a message under way
		 * is finished first (session_timeout_cb says which bound ended the session) */
		uint64_t end = s->started_ms + s->cfg->limits.session_deadline;
		uint64_t left = end > now ? end - now : 1;

		if (left < ms) {
			ms = left;
			limit = "session_deadline";
		}
	}
	session_arm(s, ms, limit);
}

/* Whether the session ran past limits.session_deadline outside a transaction (the timer
 * fired for that bound, not for command_timeout). */
static bool session_past_deadline(const struct session *s, uint64_t now)
{
	return session_takes_commands(s) && s->env.mail_from == NULL &&
	    now >= s->started_ms + s->cfg->limits.session_deadline;
}

static void session_tarpit_cb(uv_timer_t *t)
{
	session_resume(t->data);
}

void session_arm_tarpit(struct session *s, uint32_t ms)
{
	s->timer.data = s;
	s->timer_tarpit = true;
	uv_timer_start(&s->timer, session_tarpit_cb, ms, 0);
}

/* ---- closing ----------------------------------------------------------------------- */

static void session_free(struct session *s)
{
	struct worker_gen *wg = s->wg;

	auth_session_free(s);
	chain_release(&s->chain);
	hook_env_free_outputs(&s->env);
	smtp_tx_free(&s->tx);
	strbuf_free(&s->out);
	linebuf_free(&s->lb);
	free(s->memo);
	tlsconn_free(s->tls);
	free(s->in);
	counter_add(COUNTER_SESSIONS_ACTIVE, -1);
	if (s->prev)
		s->prev->next = s->next;
	else
		s->w->session_list = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (--s->w->sessions == 0)
		msgbuf_warm_release();	/* an idle worker keeps no message memory */
	atomic_fetch_sub(&s->w->load, 1);
	free(s);
	worker_gen_session_release(wg);
}

static void session_handle_closed_cb(uv_handle_t *h)
{
	struct session *s = h->data;

	if (--s->open_handles == 0 && smtp_tx_pending(&s->tx) == 0)
		session_free(s);
}

/* The chain timer's data belongs to the chain; find the session by position. */
static void session_chain_timer_closed_cb(uv_handle_t *h)
{
	struct session *s = (struct session *)(void *)((char *)h - offsetof(struct session, chain_timer));

	if (--s->open_handles == 0 && smtp_tx_pending(&s->tx) == 0)
		session_free(s);
}

/* The transaction's pending work ended after the close: the memory may go now. */
static void session_tx_drained_cb(void *arg)
{
	struct session *s = arg;

	if (s->open_handles == 0)
		session_free(s);
}

static void session_close_chain_cb(void *arg, const struct verdict *v)
{
	(void)arg;
	(void)v;
}

void session_close(struct session *s, const char *reason)
{
	if (s->state == SESSION_CLOSING && (reason != NULL || uv_is_closing((uv_handle_t *)&s->tcp)))
		return;
	if (s->state != SESSION_CLOSING) {
		unsigned long ms = (unsigned long)(uv_now(&s->w->loop) - s->started_ms);
		/* Modules that saw the connect stage through hear of the close. */
		bool connect_ran = s->state != SESSION_NEW && s->state != SESSION_PROXY && s->state != SESSION_TLS &&
		    !s->chain.running;

		/* A balancer's check: its own connection with a header (v2 LOCAL, v1 UNKNOWN, one
		 * naming itself) that carried no mail, or a trusted proxy that connected and hung
		 * up without a byte (a TCP check: an AWS NLB's, HAProxy's plain `check`). */
		bool quiet = (s->lb_check && s->nmessages == 0 && s->errors == 0) ||
		    (s->state == SESSION_PROXY && s->inlen == 0 && s->eof);

		log_event(quiet ? LOG_LVL_DEBUG : LOG_LVL_INFO, s->id,
		    "event=disconnect client=%s commands=%lu messages=%lu errors=%d ms=%lu%s%s",
		    s->env.client_ip, s->ncommands, s->nmessages, s->errors, ms, reason ? " reason=" : "",
		    reason ? reason : "");
		session_enter_state(s, SESSION_CLOSING);
		smtp_tx_close(&s->tx);
		auth_session_reset(s);      /* an AUTH exchange in flight: no callback after this */
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
		if (connect_ran && chain_wants(s->chain.mods, HOOK_CLOSE))
			chain_run(&s->chain, HOOK_CLOSE, session_close_chain_cb, s);
		session_flush(s);
		/* TLS: our close_notify follows the last replies (RFC 8446 6.1). */
		if (s->tls)
			tlsconn_shutdown(s->tls);
	}
	if (s->writes_inflight > 0 && !s->write_failed) {
		/* The last replies are still going out; close from the write callback. Bound it. */
		session_arm(s, SESSION_CLOSE_LINGER_MS, NULL);
		return;
	}
	if (!uv_is_closing((uv_handle_t *)&s->tcp)) {
		/* The connection ends here: its socket closes now (the memory goes in the close
		 * callbacks, an iteration or more later), so it stops counting against
		 * max_connections and max_connections_per_ip now. A client that saw the close
		 * and connects again is counted without this one. */
		if (s->counted_ip)
			conncount_release((const struct sockaddr *)&s->env.client,
			    s->cfg->limits.client_ipv6_prefix);   /* the session's generation: as acquired */
		s->counted_ip = false;
		conncount_total_add(-1);
		uv_close((uv_handle_t *)&s->chain_timer, session_chain_timer_closed_cb);
		uv_close((uv_handle_t *)&s->timer, session_handle_closed_cb);
		uv_close((uv_handle_t *)&s->tcp, session_handle_closed_cb);
	}
}

/* ---- input ------------------------------------------------------------------------- */

/* The least free space worth reading message content into (below it the read buffer) */
#define SESSION_SPARE_MIN 8192

/* Message content is read straight into the message buffer's free space when nothing is
 * held before it, the data parser is at or inside a plain line and the content is neither
 * TLS (decrypted elsewhere) nor BDAT: most of it is then its own unstuffed form and goes
 * into the message with no copy (session_on_content). At most the read buffer's size, so
 * whatever follows the clean part fits there. The message buffer is grown for it only at
 * the message's start: a large message's later reads would otherwise be as small as the
 * buffer's doubling steps (8, 16, 32 KiB ...), more reads than the 64 KiB read buffer
 * takes; they go to the read buffer until msgbuf_append's growth leaves room again. Else
 * the worker's read buffer. */
static void session_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct session *s = h->data;
	size_t avail = 0;
	char *spare = NULL;

	(void)hint;
	if (s->state == SESSION_DATA && s->inlen == 0 && !s->quit_after_flush && s->tls == NULL &&
	    !s->bdat_chunk && s->tx.msg != NULL && smtp_tx_msg_state(&s->tx) == SMTP_TX_MSG_OK &&
	    dataparse_takes_clean(&s->dp))
		spare = msgbuf_spare(s->tx.msg, SESSION_SPARE_MIN, msgbuf_len(s->tx.msg) == 0, &avail);
	if (spare != NULL) {
		buf->base = spare;
		buf->len = avail < sizeof(s->w->readbuf) ? avail : sizeof(s->w->readbuf);
		return;
	}
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

void session_pause(struct session *s)
{
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
}

static void session_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

void session_unpause(struct session *s)
{
	if (!s->reading && s->state != SESSION_CLOSING && !s->eof) {
		uv_read_start((uv_stream_t *)&s->tcp, session_alloc_cb, session_read_cb);
		s->reading = true;
	}
}

/* postscreen's "PREGREET 11 after 0.1 from [addr]:port: EHLO bot.example": how long after
 * the connection the client talked, and the start of what it sent (escaped). */
void session_note_pregreet(struct session *s, const char *data, size_t len)
{
	char dv[200];

	if (s->pregreet_hit)
		return;
	s->pregreet_hit = true;
	counter_inc(COUNTER_PREGREET);
	log_event(LOG_LVL_INFO, s->id, "event=pregreet client=%s port=%d bytes=%zu after_ms=%llu data=%s",
	    s->env.client_ip, s->env.client_port, len,
	    (unsigned long long)(uv_now(&s->w->loop) - s->started_ms),
	    log_valn(dv, sizeof(dv), data, len < 100 ? len : 100));
}

/* A TLS ClientHello before the greeting: nothing it says will be SMTP. The pregreet delay
 * (or a connect tarpit) ends, so the greeting goes out now or as the connect stage ends,
 * and the held record is dropped right after it (session_process). */
static void session_hello_early(struct session *s)
{
	s->pregreet_waited = true;
	if (s->state == SESSION_PREGREET) {
		session_pregreet_over(s);
		return;
	}
	uv_timer_stop(&s->timer);       /* CONNECT: its end greets at once */
	s->timer_due = 0;
}

/* Plaintext from the client (after TLS). Held when the session cannot take it now. */
static int session_on_plain(void *arg, const char *data, size_t len)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return -1;
	/* Talking before the greeting: anything after the teaser and before the final 220 line
	 * (the delay may have ended while the connect stage's lookups or a tarpit still hold
	 * the greeting). Without the test (no teaser) a client is only held. */
	if ((s->state == SESSION_PREGREET || s->state == SESSION_CONNECT) && s->teaser_sent)
		session_note_pregreet(s, data, len);
	if (s->state == SESSION_DATA && s->inlen == 0 && !s->quit_after_flush) {
		/* Message content with nothing held before it (the rule while a message comes
		 * in): the parser takes it from the read buffer, only what follows its end (the
		 * next commands) is held; then on as session_process would go. */
		int done = 0;
		size_t used = session_data_input(s, data, len, &done);

		data += used;
		len -= used;
		if (len > 0 && session_hold_input(s, data, len) != 0) {
			session_reply(s, "421 4.7.0 %s Error: too much pipelined input", s->cfg->hostname);
			s->quit_after_flush = true;
			session_flush(s);
			return -1;
		}
		if (done)
			session_data_input_end(s);
		session_process(s);
		return 0;
	}
	if (session_hold_input(s, data, len) != 0) {
		session_reply(s, "421 4.7.0 %s Error: too much pipelined input", s->cfg->hostname);
		s->quit_after_flush = true;
		session_flush(s);
		return -1;
	}
	if (session_takes_commands(s) || s->state == SESSION_DATA)
		session_process(s);
	else if ((s->state == SESSION_PREGREET || s->state == SESSION_CONNECT) &&
	    s->cfg->pregreet.non_smtp_command_action == PROTOCOL_DROP && smtp_cmd_tls_record(s->in, s->inlen) == 1)
		session_hello_early(s);
	else if (s->inlen > SESSION_PAUSE_HELD)
		session_pause(s);	/* busy: let TCP push back */
	return 0;
}

/* Message content read into the message buffer's free space (session_alloc_cb; the
 * session is as it was there). What is content as it stands is taken where it lies; the
 * rest (the end of data, the next commands, a line to unstuff or mend) may come out longer
 * than it went in, so it is copied to the read buffer and goes on as any read does. */
static void session_on_content(struct session *s, const char *data, size_t len)
{
	size_t k = session_data_take_clean(s, data, len);

	if (k == len) {
		session_process(s);	/* the data timer, as after any read */
		return;
	}
	memcpy(s->w->readbuf, data + k, len - k);
	session_on_plain(s, s->w->readbuf, len - k);
}

void session_log_tls(struct session *s)
{
	static const char *const cert_words[] = { "", "none", "unverified", "verified" };

	if (s->env.tls_cert == TLSCONN_CERT_NOT_ASKED)
		log_event(LOG_LVL_INFO, s->id, "event=tls version=%s cipher=%s", s->env.tls_version, s->env.tls_cipher);
	else if (s->env.tls_cert == TLSCONN_CERT_NONE)
		log_event(LOG_LVL_INFO, s->id, "event=tls version=%s cipher=%s client_cert=none", s->env.tls_version,
		    s->env.tls_cipher);
	else
		log_event(LOG_LVL_INFO, s->id, "event=tls version=%s cipher=%s client_cert=%s cert_subject=\"%s\" "
		    "cert_issuer=\"%s\" cert_fingerprint=%s%s%s%s", s->env.tls_version, s->env.tls_cipher,
		    cert_words[s->env.tls_cert & 3], s->env.tls_cert_subject, s->env.tls_cert_issuer,
		    s->env.tls_cert_fingerprint, s->env.tls_cert == TLSCONN_CERT_UNVERIFIED ? " verify_error=\"" : "",
		    s->env.tls_cert == TLSCONN_CERT_UNVERIFIED ? tlsconn_peer_verify_error(s->tls) : "",
		    s->env.tls_cert == TLSCONN_CERT_UNVERIFIED ? "\"" : "");
}

static void session_tls_established_cb(void *arg)
{
	struct session *s = arg;

	s->env.tls = true;
	snprintf(s->env.tls_version, sizeof(s->env.tls_version), "%s", tlsconn_version(s->tls));
	snprintf(s->env.tls_cipher, sizeof(s->env.tls_cipher), "%s", tlsconn_cipher(s->tls));
	s->env.tls_cipher_bits = tlsconn_cipher_bits(s->tls);
	s->env.tls_cert = tlsconn_peer_cert(s->tls);
	s->env.tls_cert_subject = tlsconn_peer_subject(s->tls);
	s->env.tls_cert_issuer = tlsconn_peer_issuer(s->tls);
	s->env.tls_cert_fingerprint = tlsconn_peer_fingerprint(s->tls);
	counter_inc(COUNTER_TLS_SESSIONS);
	if (s->state == SESSION_TLS) {
		/* Implicit TLS: the session starts now (its event=connect line, then event=tls). */
		session_start_connect(s);
		return;
	}
	session_log_tls(s);
	session_enter_idle(s);
	session_arm(s, s->cfg->limits.command_timeout, "command_timeout");
}

static const struct tlsconn_ops session_tls_ops = {
	.on_plain = session_on_plain,
	.on_cipher = session_tls_cipher_cb,
	.on_established = session_tls_established_cb,
};

int session_start_tls(struct session *s)
{
	s->tls = tlsconn_new(s->wg->shared->tls_server, true, NULL, &session_tls_ops, s);
	return s->tls ? 0 : -1;
}

static void session_feed_tls(struct session *s, const char *data, size_t n);

/* The client's first octets after the PROXY header, if any: implicit TLS (a ClientHello
 * may have come in the header's segment: it is the TLS connection's first input) or the
 * greeting. */
static void session_begin(struct session *s)
{
	if (s->lc->tls == LISTEN_TLS_IMPLICIT) {
		if (s->wg->shared->tls_server == NULL) {
			session_close(s, "no_tls_context");
			return;
		}
		if (session_start_tls(s) != 0) {
			session_close(s, "tls_setup_failed");
			return;
		}
		session_enter_state(s, SESSION_TLS);
		session_arm(s, s->cfg->limits.command_timeout, "command_timeout");
		session_unpause(s);
		if (s->inlen) {
			/* on_plain appends to s->in: feed a copy */
			size_t n = s->inlen;
			char *early = malloc(n);

			if (early == NULL) {
				session_close(s, "out_of_memory");
				return;
			}
			memcpy(early, s->in, n);
			s->inlen = 0;
			session_feed_tls(s, early, n);
			free(early);
		}
		return;
	}
	session_start_connect(s);
}

static unsigned session_port_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port) :
	    ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port) : 0;
}

/* Whether a PROXY header's source is the very connection it came on (address and port):
 * the balancer's own connection, as a v1 health check names it (proxy-protocol.txt 2.1: a
 * check SHOULD send the getsockname()/getpeername() pair). No relayed client has the
 * balancer's own address and port. */
static bool session_proxy_names_itself(const struct proxy_info *pi, const struct sockaddr_storage *peer)
{
	struct netaddr a, b;

	if (pi->local || netaddr_from_sockaddr((const struct sockaddr *)&pi->src, &a) != 0 ||
	    netaddr_from_sockaddr((const struct sockaddr *)peer, &b) != 0)
		return false;
	return netaddr_equal(&a, &b) && session_port_of(&pi->src) == session_port_of(peer);
}

/* The PROXY header: the first bytes on a proxy_protocol listener. */
static void session_on_proxy_bytes(struct session *s, const char *data, size_t len)
{
	struct proxy_info pi;
	size_t used = 0;
	const char *err = NULL;

	if (session_hold_input(s, data, len) != 0) {
		session_close(s, "proxy_header_too_long");
		return;
	}
	/* what follows the header (a ClientHello, pipelined commands) may come in its segment:
	 * only a header still incomplete past SESSION_PROXY_MAX is too long */
	enum proxy_result r = proxyproto_parse((const uint8_t *)s->in, s->inlen, &pi, &used, &err);
	if (r == PROXY_NEED_MORE) {
		if (s->inlen > SESSION_PROXY_MAX)
			session_close(s, "proxy_header_too_long");
		return;
	}
	if (r == PROXY_ERROR) {
		counter_inc(COUNTER_PROXY_REFUSED);
		log_event(LOG_LVL_WARNING, s->id, "event=proxy_error peer=%s reason=\"%s\"", s->env.client_ip,
		    err ? err : "bad header");
		session_close(s, "proxy_error");
		return;
	}
	memmove(s->in, s->in + used, s->inlen - used);
	s->inlen -= used;
	/* the balancer's own connection (its health check): a header with no client to name
	 * (v2 LOCAL, UNSPEC or AF_UNIX, v1 UNKNOWN: the session is the balancer's address, as a
	 * check is, so neither pregreet-tested nor logged at info), or a header naming the
	 * connection itself (v1 checks); read before env.client becomes the header's source */
	s->lb_check = pi.local || session_proxy_names_itself(&pi, &s->env.client);
	if (!pi.local) {
		memcpy(&s->env.client, &pi.src, sizeof(pi.src));
		memcpy(&s->env.local, &pi.dst, sizeof(pi.dst));
	}
	session_begin(s);
}

/* The client sends no more: a read error, EOF, or (over TLS) its close_notify. */
static void session_on_eof(struct session *s, ssize_t n)
{
	s->eof = true;
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
	if (s->state == SESSION_CLOSING)
		return;
	/* A client that half-closed after sending its last command (the final dot, say)
	 * may still read the reply: finish the command in flight, then close. */
	if (n == UV_EOF && s->state == SESSION_BUSY)
		return;
	/* A client gone mid-transaction: nothing was acknowledged, nothing is lost. */
	/* reason= is one token: libuv's error name (ECONNRESET), not its message's words */
	session_close(s, n == UV_EOF ? "client_closed" : uv_err_name((int)n));
}

/* Ciphertext from the client into the TLS connection. */
static void session_feed_tls(struct session *s, const char *data, size_t n)
{
	int rc = tlsconn_feed(s->tls, data, n);

	if (rc < 0) {
		counter_inc(COUNTER_TLS_FAILURES);
		log_event(LOG_LVL_INFO, s->id, "event=tls_error client=%s reason=\"%s\"", s->env.client_ip,
		    tlsconn_error(s->tls) ? tlsconn_error(s->tls) : "");
		s->write_failed = false;
		session_close(s, "tls_error");
	} else if (rc == 1) {
		/* close_notify: the client sends nothing more (it may still read). Like a
		 * plain EOF; session_close answers with ours after the last replies. */
		log_event(LOG_LVL_DEBUG, s->id, "event=tls_close_notify client=%s", s->env.client_ip);
		session_on_eof(s, UV_EOF);
	}
}

static void session_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct session *s = st->data;

	if (n == 0)
		return;
	if (n < 0) {
		session_on_eof(s, n);
		return;
	}
	if (s->state == SESSION_PROXY) {
		session_on_proxy_bytes(s, buf->base, (size_t)n);
		return;
	}
	if (s->tls) {
		session_feed_tls(s, buf->base, (size_t)n);
		return;
	}
	if (buf->base != s->w->readbuf) {
		session_on_content(s, buf->base, (size_t)n);
		return;
	}
	session_on_plain(s, buf->base, (size_t)n);
}

/* ---- accepting ----------------------------------------------------------------------- */

/* A session of w for a connection from listener lc, before it has its socket. NULL when out
 * of memory. w->load already counts it (the caller did). */
static struct session *session_new(struct worker *w, const struct listen_config *lc)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
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
	linebuf_init(&s->lb, auth_line_cap(s));   /* max_line_length, more for AUTH responses */
	chain_init(&s->chain, &s->wg->mods, &s->env, &s->chain_timer);
	smtp_tx_init(&s->tx, w, s->wg->shared->pool, &s->env, session_tx_drained_cb, s);
	return s;
}

/* Descriptors a new session leaves free under the live soft RLIMIT_NOFILE at least, or it
 * is refused: those kept aside at start (main.c's reserve) for the sessions already there
 * (their backend, filter and spool files), the metrics and control connections, probes. */
#define SESSION_FDS_HEADROOM 64

/* True when the descriptors are nearly gone, whatever took them: the limit lowered on the
 * live process (prlimit), a leak, a peer's slow close. The kernel hands out the lowest free
 * number (POSIX), so the session's descriptor n means 0..n-1 are all in use; the limit is
 * read each time (one getrlimit) because the start's budget (conncount_fd_cap) knows only
 * the limit of then. Warns at most once a second per worker (event=fd_low). */
static bool session_fds_low(struct session *s)
{
	uv_os_fd_t fd;
	struct rlimit rl;

	if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
	    rl.rlim_cur == RLIM_INFINITY || (rlim_t)fd + SESSION_FDS_HEADROOM < rl.rlim_cur)
		return false;
	uint64_t now = uv_now(&s->w->loop);
	if (s->w->fd_low_logged_ms == 0 || now - s->w->fd_low_logged_ms >= 1000) {
		log_event(LOG_LVL_WARNING, NULL, "event=fd_low nofile=%lu fd=%d worker=%d",
		    (unsigned long)rl.rlim_cur, (int)fd, s->w->index);
		s->w->fd_low_logged_ms = now ? now : 1;
	}
	return true;
}

/* Everything after the socket is the session's: addresses, limits, PROXY, greeting. */
static void session_start(struct session *s)
{
	struct worker *w = s->w;
	const struct listen_config *lc = s->lc;
	int len;

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

	if (atomic_load(&w->stop)) {
		/* accepted in the moment between SIGTERM and the listeners' close */
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = "draining", .code = 421 },
		    "client=%s", s->env.client_ip);
		session_reply(s, "421 4.3.2 %s Service shutting down, try again later", s->cfg->hostname);
		counter_conn_refused(CONN_REFUSED_DRAINING);
		session_refuse_early(s, "draining");
		return;
	}
	if (conncount_total() > s->cfg->limits.max_connections) {
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = "max_connections", .code = 421 },
		    "client=%s", s->env.client_ip);
		session_reply(s, "421 4.7.0 %s Error: too many connections, try again later", s->cfg->hostname);
		counter_conn_refused(CONN_REFUSED_MAX_CONNECTIONS);
		session_refuse_early(s, "max_connections");
		return;
	}
	long fd_cap = conncount_fd_cap();
	if ((fd_cap > 0 && conncount_total() > fd_cap) || session_fds_low(s)) {
		/* Past what the file descriptor limit holds (event=fd_limit at start), or the
		 * descriptors nearly gone now (event=fd_low): a 421 now rather than libuv closing
		 * the next clients unheard once they run out, and the sessions already there
		 * keep what they need. */
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "connect", .reason = "fd_limit", .code = 421 },
		    "client=%s", s->env.client_ip);
		session_reply(s, "421 4.7.0 %s Error: too many connections, try again later", s->cfg->hostname);
		counter_conn_refused(CONN_REFUSED_FD_LIMIT);
		session_refuse_early(s, "fd_limit");
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
		session_arm(s, s->cfg->limits.proxy_timeout, "proxy_timeout");
		session_unpause(s);
		return;
	}
	session_begin(s);
}

void session_accept_fd(struct worker *w, int fd, const struct listen_config *lc)
{
	struct session *s = session_new(w, lc);

	if (s == NULL) {
		close(fd);
		atomic_fetch_sub(&w->load, 1);
		return;
	}
	if (uv_tcp_open(&s->tcp, fd) != 0) {
		close(fd);
		session_close(s, "accept_failed");
		return;
	}
	session_start(s);
}
