/* relay.c — the backend side: one SMTP/LMTP client connection per struct relay. */
#include "relay.h"
#include "backend.h"
#include "bdat.h"
#include "config.h"
#include "dataparse.h"
#include "growbuf.h"
#include "gwrefuse.h"
#include "headers.h"
#include "hook.h"
#include "log.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "relay_timer.h"
#include "smtp_reply.h"
#include "stream.h"
#include "tls.h"
#include "worker.h"
#include "xclient.h"
#include "counters.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#ifdef __linux__
#include <linux/sockios.h>	/* SIOCOUTQ */
#endif

enum relay_state {
	RELAY_CONNECTING = 0,
	RELAY_GREETING,
	RELAY_EHLO,
	RELAY_STARTTLS,
	RELAY_TLS_HANDSHAKE,
	RELAY_EHLO_TLS,
	RELAY_XCLIENT,
	RELAY_EHLO_XCLIENT,
	RELAY_READY,       /* in a session, no command outstanding */
	RELAY_COMMAND,     /* awaiting a command's reply */
	RELAY_DATA_354,
	RELAY_DATA_SEND,   /* streaming the message */
	RELAY_DATA_FINAL,  /* awaiting the final reply(ies) */
	RELAY_RSET,
	RELAY_IDLE,        /* on the worker's idle list */
	RELAY_QUIT,
	RELAY_CLOSED,
};

#define RELAY_MAX_IDLE_PER_WORKER 256
#define RELAY_IDLE_MS 30000
#define RELAY_STALE_TEXT "stale pooled connection"

#define RELAY_XCLIENT_MAX 3400

struct relay {
	struct relay *next_idle;
	/* The session the connection last served, while that session lasts (its hook_env, a key
	 * only, never followed): parked, the connection waits for that session's next
	 * transaction first (relay_take_idle); extra: parked beyond pool_size for it
	 * (relay_park), until it ends (relay_session_end) */
	const void *sess;
	bool extra;
	bool resetting;               /* on w->resetting: its RSET in flight, kept for sess */
	bool rset_deferred;           /* on w->resetting, behind proxy_v2: a transaction its
	                                 session gave up, the RSET not sent yet: sent when the
	                                 session's next transaction comes (relay_open_as), QUIT
	                                 instead when the session ends (relay_session_end) */
	/* sess's next transaction, come before the RSET's reply (relay_open_as): it takes the
	 * connection on 250 (relay_reuse), else a fresh one (relay_waiter_fresh) */
	relay_open_fn wait_cb;
	void *wait_arg;
	const struct hook_env *wait_env;
	struct worker *w;
	struct shared_gen *gen;       /* ref held: pool, config */
	struct backend *b;
	union {                       /* the connection, used as a uv_stream_t everywhere */
		uv_tcp_t tcp;
		uv_pipe_t pipe;       /* lmtp:unix:/path */
	};
	uv_timer_t timer;
	uint64_t due;                 /* loop time the current step runs out; 0: none (relay_arm) */
	const char *due_limit;        /* the config key of that bound (backend_error's limit=) */
	const char *fail_limit;       /* the bound a failure in progress is for (relay_timeout_cb) */
	uint64_t timer_at;          /* when the libuv timer fires (loop time), 0: not running */
	/* a message's transfer (relay_data_watch): octets ever written to the stream, how many of
	 * them the backend had taken at the last look, and the message's end (data_deadline) */
	uint64_t wq_in, wq_out, data_end, wq_msg;   /* wq_msg: wq_in when the message began */
	size_t addr_i;                /* which of b->addrs the connection is to */
	struct sockaddr_storage addr; /* that address (b's set may change meanwhile: backendres.h) */
	socklen_t addrlen;            /* 0: a unix socket */
	unsigned addr_gen;            /* b->addr_gen when it was taken */
	size_t addr_tries;            /* addresses this open tried before addr_i */
	int open_handles;
	enum relay_state state;
	bool in_session, failed, counted_active;
	struct smtp_caps caps;        /* the EHLO keywords, XCLIENT's attributes */
	struct smtp_reply_reader rd;  /* the backend's replies, read */
	/* callbacks: one open or message step at a time (arg), or commands in flight */
	relay_open_fn open_cb;
	relay_data_fn data_cb;
	void *arg;
	struct relay_pending *fifo;   /* replies awaited, in the order the commands went out */
	size_t fifo_head, fifo_len, fifo_cap;
	struct strbuf outq;           /* command lines queued, not yet written (relay_flush) */
	bool data_queued;             /* a DATA sent ahead (relay_queue_data) awaits its reply */
	bool data_open;               /* ... and got 354: the backend reads a message now */
	bool msg_waiting;             /* relay_send_message came before that reply */
	bool data_ahead;              /* that DATA was sent ahead and is not claimed yet */
	int data_refused;             /* that DATA was refused before the message came: the code */
	char *data_refused_text;      /* ... and its text, the message's reply (relay_send_message) */
	size_t data_refused_cap;
	/* commands sent ahead for the owner's next transaction (relay_queue_ahead), in order:
	 * the first ahead_claimed have an owner, the first ahead_answered a reply; the first
	 * ahead_done were handed over (or dropped) */
	struct relay_ahead *ahead;
	size_t ahead_n, ahead_claimed, ahead_answered, ahead_done;
	/* message streaming */
	const char *prefix, *body;
	size_t prefix_len, body_len, off;
	struct dotstuff ds;
	bool body_wire;               /* the body goes as it is (relay_send_message) */
	bool bdat;                    /* the message goes as one "BDAT <n> LAST" chunk */
	struct bdat_crlf crlf;
	char lead[48];                /* the BDAT line, written with the first content */
	int nrcpt, nreplies;
	int *codes;
	char **texts;                 /* nrcpt of them; reply_cap allocated (kept per message) */
	int reply_cap;
	char text0[256];              /* the first reply's text when it fits (no strdup per message) */
	char *chunk;
	size_t chunk_len;
	/* TLS to the backend */
	struct tlsconn *tls;
	const struct hook_env *open_env; /* while opening: the client to announce */
	bool reused_fresh;               /* taken from the idle list, no reply seen since */
	bool local_error;                /* the connection could not be made for want of
	                                    descriptors or memory: no fault of the backend */
	bool gw_refused;                 /* its greeting refused the gateway: counted as that
	                                    (gwrefuse_report), not again as a failure */
	bool xclient_again;              /* the XCLIENT in flight re-announces a pooled connection */
	bool xclient_retried;            /* ... is the one retry after a 501 (relay_xclient_retry) */
	bool clean;                      /* no transaction open (after the final reply or RSET) */
	struct relay **owner;            /* the session's pointer to us, cleared when we close */
	char sid[24];                    /* the session served, for its log lines ("" when idle) */
	/* Cold: written when the connection opens or announces a client (6.7 KB), kept behind
	 * the fields a pipelined message writes (the due time, the state, the FIFO and ahead
	 * indexes, the message's pointers and replies) */
	uv_connect_t conn_req;
	/* the XCLIENT identity last announced, and the one to announce: NAME, REVERSE_NAME, HELO
	 * and LOGIN of up to 255 octets each, xtext-encoded (up to 3 characters an octet),
	 * never cut (a LOGIN cut short would name another user) */
	char ident[RELAY_XCLIENT_MAX];
	char pending_ident[RELAY_XCLIENT_MAX];
	char helo[256];
	uint8_t proxy_hdr[64];           /* client_identity proxy_v2: the header sent (relay_open_at) */
	size_t proxy_len;
};

/* The id this relay's log lines carry: the session it serves (NULL: none, logged "-"). */
static const char *relay_log_id(const struct relay *r)
{
	return r->sid[0] ? r->sid : NULL;
}

static void relay_set_sid(struct relay *r, const struct hook_env *env)
{
	snprintf(r->sid, sizeof(r->sid), "%s", env && env->session_id ? env->session_id : "");
}

/* A command whose reply is awaited (cb NULL: cancelled, the reply is read and dropped;
 * ahead: its reply goes to the next entry of the ahead list instead). */
struct relay_pending { relay_reply_fn cb; void *arg; bool data, ahead; };

/* A command sent ahead: its line (to match the owner's command against), its owner once
 * claimed, its reply once read. The two strings live in buffers the slot keeps from one
 * message to the next (relay_ahead_keep), freed with the relay. */
struct relay_ahead {
	char *line, *text;
	size_t line_cap, text_cap;
	bool has_text;
	relay_reply_fn cb;
	void *arg;
	int code;
};

#define RELAY_AHEAD_MAX 16
_Static_assert(sizeof(struct relay_ahead) == 64, "a slot of the ahead list is one cache line");

/* Copies s[0..len) and a NUL into *buf (capacity *cap), growing it when needed. */
static void relay_ahead_keep(char **buf, size_t *cap, const char *s, size_t len)
{
	if (len + 1 > *cap)
		growbuf_grow(buf, cap, 64, len + 1);
	memcpy(*buf, s, len);
	(*buf)[len] = '\0';
}

static void relay_on_reply(struct relay *r, int code, const char *text, size_t len);
static void relay_unsolicited(struct relay *r, int code, const char *text);
static void relay_fail(struct relay *r, const char *why);
static void relay_fail_protocol(struct relay *r, const char *why);
static void relay_next_address(struct relay *r, const char *why, const char *limit);
static void relay_close(struct relay *r);
static int relay_max_idle(const struct relay *r);
static void relay_park(struct relay *r);
static void relay_ahead_clear(struct relay *r);
static void relay_ahead_deliver(struct relay *r);

static const struct backends_config *relay_cfg(const struct relay *r)
{
	return backend_config(r->b, &r->gen->cfg->backends);	/* the server's own timeouts */
}

struct backend *relay_backend(const struct relay *r) { return r->b; }
bool relay_is_lmtp(const struct relay *r) { return r->b->kind == BACKEND_LMTP; }
bool relay_sent_bdat(const struct relay *r) { return r != NULL && r->bdat; }

bool relay_offers(const struct relay *r, enum relay_ext ext)
{
	return (r->caps.bits & (unsigned)ext) != 0;
}

_Static_assert((unsigned)RELAY_EXT_PIPELINING == SMTP_CAP_PIPELINING && (unsigned)RELAY_EXT_SIZE == SMTP_CAP_SIZE &&
    (unsigned)RELAY_EXT_8BITMIME == SMTP_CAP_8BITMIME && (unsigned)RELAY_EXT_SMTPUTF8 == SMTP_CAP_SMTPUTF8 &&
    (unsigned)RELAY_EXT_DSN == SMTP_CAP_DSN && (unsigned)RELAY_EXT_CHUNKING == SMTP_CAP_CHUNKING,
    "relay_ext bits are the caps bits");

/* line is "DATA" in any case (commands sent ahead are compared with it per message). */
static inline bool relay_line_is_data(const char *line)
{
	return (line[0] | 0x20) == 'd' && (line[1] | 0x20) == 'a' && (line[2] | 0x20) == 't' &&
	    (line[3] | 0x20) == 'a' && line[4] == '\0';
}

/* ---- writing ----------------------------------------------------------------------- */

struct relay_wreq { uv_write_t req; char data[]; };

static void relay_write_cb(uv_write_t *req, int status)
{
	free(req);
	(void)status;	/* errors surface on the read side or as a timeout */
}

static void relay_pump(struct relay *r);
static void relay_arm(struct relay *r, uint64_t ms, const char *limit);

static void relay_write_data_cb(uv_write_t *req, int status)
{
	struct relay *r = req->data;

	free(req);
	if (r == NULL || r->state != RELAY_DATA_SEND)
		return;
	if (status < 0) {
		relay_fail(r, uv_strerror(status));
		return;
	}
	/* The backend took what was queued: progress, data_timeout again from now (a large
	 * message to a slow reader is not cut at a fixed time after its DATA). */
	relay_arm(r, relay_cfg(r)->data_timeout, "data_timeout");
	relay_pump(r);
}

/* Queues bytes on the TCP stream (already encrypted when TLS is on). */
static int relay_write_raw(struct relay *r, const char *data, size_t len, bool pump)
{
	struct relay_wreq *w;
	uv_buf_t buf;

	if (r->state == RELAY_CLOSED)
		return -1;
	r->wq_in += len;
	if (!pump && uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp) == 0) {
		/* Straight into the kernel when nothing is queued. */
		int rc = stream_try_write((uv_stream_t *)&r->tcp, &data, &len);
		if (rc != 0)
			return rc > 0 ? 0 : -1;
	}
	w = malloc(sizeof(*w) + len);
	if (w == NULL)
		return -1;
	memcpy(w->data, data, len);
	buf = uv_buf_init(w->data, (unsigned)len);
	w->req.data = pump ? r : NULL;
	if (uv_write(&w->req, (uv_stream_t *)&r->tcp, &buf, 1, pump ? relay_write_data_cb : relay_write_cb) != 0) {
		free(w);
		return -1;
	}
	return 0;
}

/* The same for bufs[0..nb) in one writev (relay_pump: the message's body from where it
 * is, between the encoded header block and the dot). What the kernel does not take now is
 * copied into one request. */
static int relay_write_rawv(struct relay *r, const uv_buf_t *bufs, unsigned nb)
{
	struct relay_wreq *w;
	size_t total = 0, sent = 0, at = 0;
	uv_buf_t buf;

	if (r->state == RELAY_CLOSED)
		return -1;
	for (unsigned i = 0; i < nb; i++)
		total += bufs[i].len;
	r->wq_in += total;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp) == 0) {
		int n = uv_try_write((uv_stream_t *)&r->tcp, bufs, nb);
		if (n < 0 && n != UV_EAGAIN)
			return -1;
		sent = n > 0 ? (size_t)n : 0;
		if (sent == total)
			return 0;
	}
	w = malloc(sizeof(*w) + total - sent);
	if (w == NULL)
		return -1;
	for (unsigned i = 0; i < nb; i++) {
		size_t l = bufs[i].len, skip = sent > l ? l : sent;
		memcpy(w->data + at, bufs[i].base + skip, l - skip);
		at += l - skip;
		sent -= skip;
	}
	buf = uv_buf_init(w->data, (unsigned)at);
	w->req.data = NULL;
	if (uv_write(&w->req, (uv_stream_t *)&r->tcp, &buf, 1, relay_write_cb) != 0) {
		free(w);
		return -1;
	}
	return 0;
}

static int relay_tls_cipher_cb(void *arg, const char *data, size_t len)
{
	struct relay *r = arg;
	return relay_write_raw(r, data, len, false);
}

static int relay_write(struct relay *r, const char *data, size_t len)
{
	if (r->tls)
		return tlsconn_write(r->tls, data, len);
	return relay_write_raw(r, data, len, false);
}

static void relay_send_line(struct relay *r, const char *line)
{
	char buf[RELAY_XCLIENT_MAX + 2];   /* the longest line: XCLIENT; commands are <= 1000 */
	size_t n = strlen(line);

	if (n > sizeof(buf) - 3)
		n = sizeof(buf) - 3;
	memcpy(buf, line, n);
	buf[n++] = '\r';
	buf[n++] = '\n';
	if (log_is_debug()) {
		char lv[1200];
		log_event(LOG_LVL_DEBUG, relay_log_id(r), "event=relay_send backend=%s line=%s", r->b->url,
		    log_valn(lv, sizeof(lv), buf, n - 2));
	}
	if (relay_write(r, buf, n) != 0) {
		relay_fail(r, "write failed");
		return;
	}
	relay_arm(r, relay_cfg(r)->reply_timeout, "reply_timeout");
}

/* ---- timers and closing ------------------------------------------------------------ */

static void relay_timeout_cb(uv_timer_t *t);

/* How often the timer looks at a message's write queue while octets wait in it: 1/8 of
 * data_timeout (relay_timer_tick). */
static uint64_t relay_data_tick(const struct relay *r)
{
	return relay_timer_tick(relay_cfg(r)->data_timeout);
}

/* Octets written to the backend it has not taken yet: libuv's write queue and, on Linux,
 * what its kernel holds unacknowledged (SIOCOUTQ; a send buffer autotuned to megabytes holds
 * most of a large message). A system call: asked only by the timer (relay_data_watch). */
static size_t relay_unacked(struct relay *r)
{
	size_t n = uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp);
#ifdef SIOCOUTQ
	uv_os_fd_t fd;
	int q = 0;

	if (uv_fileno((uv_handle_t *)&r->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &q) == 0 && q > 0)
		n += (size_t)q;
#endif
	return n;
}

/* A message's transfer (RELAY_DATA_SEND, and RELAY_DATA_FINAL while octets are still on
 * their way): progress restarts data_timeout, as Postfix's smtp_data_xfer_timeout is a stall
 * timeout per write. Over plain TCP the rest of a message goes to libuv in one request, and
 * the kernel takes megabytes of it at once, so no callback says the backend took a part:
 * while octets are unacknowledged the timer looks every relay_data_tick at how many have
 * gone (wq_in less relay_unacked) and any taken since the last look start data_timeout
 * again from now. Once all are taken the reply to the dot gets data_timeout from then
 * (Postfix's smtp_data_done_timeout; "then" within one tick of the last octet taken).
 * backends.data_deadline (data_end) stands behind it: a backend taking an octet every tick
 * never holds the session past it. Called when the timer fires in those states (now: the
 * loop's time); returns true when the timer runs again (the step goes on), false when the
 * step's time is up. */
static bool relay_data_watch(struct relay *r, uint64_t now)
{
	uint64_t next = relay_timer_watch(now, relay_cfg(r)->data_timeout, r->data_end, r->wq_in,
	    relay_unacked(r), &r->wq_out, &r->due);

	if (next == 0)
		return false;
	uv_timer_start(&r->timer, relay_timeout_cb, next - now, 0);
	r->timer_at = next;
	return true;
}

/* Octets of the message wait (libuv's queue holds some, or the message was larger than a
 * send buffer surely takes at once): the timer looks within a tick (relay_data_watch). A
 * small message costs no system call and no timer restart: it counts as taken when it was
 * written, and its reply gets data_timeout from then. */
static void relay_data_look_soon(struct relay *r)
{
	uint64_t next = uv_now(r->timer.loop) + relay_data_tick(r);

	if (uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp) == 0 && r->wq_in - r->wq_msg <= 65536) {
		r->wq_out = r->wq_in;	/* taken as it was written: no progress to see later */
		return;
	}
	if (!relay_timer_needs_start(r->timer_at, next))
		return;
	uv_timer_start(&r->timer, relay_timeout_cb, next - uv_now(r->timer.loop), 0);
	r->timer_at = next;
}

/* The message step starts (the 354, or the BDAT going out): data_timeout from now,
 * data_deadline behind it; what the backend took so far counts as taken. */
static void relay_data_start(struct relay *r)
{
	r->wq_msg = r->wq_in;
	r->wq_out = r->wq_in - uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp);
	r->data_end = uv_now(r->timer.loop) + relay_cfg(r)->data_deadline;
	relay_arm(r, relay_cfg(r)->data_timeout, "data_timeout");
}

static void relay_timeout_cb(uv_timer_t *t)
{
	struct relay *r = t->data;
	uint64_t now = uv_now(t->loop);

	r->timer_at = 0;	/* fired: no longer running */
	if (r->due == 0)
		return;		/* disarmed since: the step was answered in time */
	if ((r->state == RELAY_DATA_SEND || r->state == RELAY_DATA_FINAL) && relay_data_watch(r, now))
		return;
	if (now < r->due) {
		/* armed again later since it was started: wait for the rest */
		uv_timer_start(&r->timer, relay_timeout_cb, r->due - now, 0);
		r->timer_at = r->due;
		return;
	}
	r->due = 0;
	if (r->state == RELAY_IDLE) {
		/* Idle too long: say goodbye. */
		relay_close(r);
		return;
	}
	if ((r->state == RELAY_DATA_SEND || r->state == RELAY_DATA_FINAL) && r->data_end != 0 && now >= r->data_end) {
		r->fail_limit = "data_deadline";
		relay_fail(r, "data_deadline");
		return;
	}
	r->fail_limit = r->due_limit;
	relay_fail(r, "timeout");
}

/* The current step (a reply awaited, the message being sent, the idle time) runs out in ms
 * (0: 60 s). The deadline is r->due; the libuv timer is restarted only when it would fire
 * after it. A timer due earlier is left running and starts itself again for the rest when
 * it fires (relay_timeout_cb): a step answered in time then costs no timer restart (they
 * were about five heap operations per pipelined message). */
static void relay_arm(struct relay *r, uint64_t ms, const char *limit)
{
	uv_loop_t *loop = r->timer.loop;

	if (ms == 0)
		ms = 60000;
	r->due = uv_now(loop) + ms;
	r->due_limit = limit;   /* the due time's bound, whether or not the timer restarts */
	if (!relay_timer_needs_start(r->timer_at, r->due))
		return;		/* running, due no later (uv_is_active, uv_timer_get_due_in: as known) */
	uv_timer_start(&r->timer, relay_timeout_cb, ms, 0);
	r->timer_at = r->due;
}

/* No step waits any more: the timer, if it is running, fires to no effect (relay_arm). */
static inline void relay_disarm(struct relay *r)
{
	r->due = 0;
}

/* The final replies' texts: freed, but for text0 which stays for the next message. */
static void relay_texts_clear(struct relay *r)
{
	for (int i = 0; r->texts != NULL && i < r->reply_cap; i++) {
		if (r->texts[i] != r->text0)
			free(r->texts[i]);
		r->texts[i] = NULL;
	}
}

static void relay_handle_closed_cb(uv_handle_t *h)
{
	struct relay *r = h->data;

	if (--r->open_handles > 0)
		return;
	tlsconn_free(r->tls);
	smtp_reply_free(&r->rd);
	strbuf_free(&r->outq);
	relay_ahead_clear(r);
	for (size_t i = 0; r->ahead != NULL && i < RELAY_AHEAD_MAX; i++) {
		free(r->ahead[i].line);
		free(r->ahead[i].text);
	}
	free(r->ahead);
	free(r->fifo);
	free(r->data_refused_text);
	relay_texts_clear(r);
	free(r->codes);
	free(r->texts);
	shared_gen_unref(r->gen);
	free(r);
}

static struct relay *relay_idle_pop(struct worker *w, struct relay **pp);

static void relay_unlink_idle(struct relay *r)
{
	struct relay **pp = &r->w->idle;

	while (*pp) {
		if (*pp == r) {
			relay_idle_pop(r->w, pp);
			break;
		}
		pp = &(*pp)->next_idle;
	}
	r->next_idle = NULL;
}

/* Takes r off w->resetting (relay_release) if it is there. */
static void relay_unlink_resetting(struct relay *r)
{
	if (!r->resetting)
		return;
	for (struct relay **pp = &r->w->resetting; *pp; pp = &(*pp)->next_idle) {
		if (*pp == r) {
			*pp = r->next_idle;
			break;
		}
	}
	r->next_idle = NULL;
	r->resetting = false;
}

static void relay_waiter_fresh(struct relay *r);

static void relay_close(struct relay *r)
{
	if (r->state == RELAY_CLOSED)
		return;
	if (r->state == RELAY_IDLE)
		relay_unlink_idle(r);
	relay_unlink_resetting(r);
	if (r->counted_active) {
		backend_active_add(r->b, -1);
		r->counted_active = false;
	}
	/* The owner must not use us after this (the memory goes in the close callback). */
	if (r->owner) {
		*r->owner = NULL;
		r->owner = NULL;
	}
	r->state = RELAY_CLOSED;
	r->open_cb = NULL;
	r->data_cb = NULL;
	r->fifo_len = 0;
	uv_timer_stop(&r->timer);
	r->timer_at = 0;
	uv_close((uv_handle_t *)&r->timer, relay_handle_closed_cb);
	uv_close((uv_handle_t *)&r->tcp, relay_handle_closed_cb);
	/* a transaction waiting for the RSET's reply (the reply_timeout ran out, the backend
	 * went): a fresh connection */
	relay_waiter_fresh(r);
}

/* Opportunistic TLS (RFC 7435) whose handshake failed (the backend closed, sent no TLS,
 * or offers only versions we refuse): as Postfix's smtp client with security level "may",
 * the message goes in clear text on a new connection instead of waiting for ever. The
 * backend is not at fault (health probes try STARTTLS only under require_tls) and this was not an attempt:
 * the connection counts as stale, and for RELAY_TLS_FALLBACK_MS no connection to the
 * backend tries STARTTLS again. */
enum { RELAY_TLS_FALLBACK_MS = 10 * 60 * 1000 };

static void relay_tls_fallback(struct relay *r, const char *why)
{
	const char *err = r->tls ? tlsconn_error(r->tls) : "";

	atomic_store(&r->b->tls_fallback_until, (long long)(uv_hrtime() / 1000000) + RELAY_TLS_FALLBACK_MS);
	log_event(LOG_LVL_WARNING, relay_log_id(r), "event=backend_tls_failed backend=%s reason=\"%.150s\" fallback=plaintext",
	    r->b->url, err && *err ? err : why);
	r->reused_fresh = true;
}

static bool relay_tls_wanted(const struct relay *r)
{
	const struct backends_config *bc = &r->gen->cfg->backends;

	return (r->caps.bits & SMTP_CAP_STARTTLS) && (bc->starttls || bc->require_tls) && r->gen->tls_client &&
	    (bc->require_tls || (long long)(uv_hrtime() / 1000000) >= atomic_load(&r->b->tls_fallback_until));
}

/* Whether r's address left its backend's set since r was connected (a re-resolution:
 * backendres.h): an idle connection to it is closed rather than reused. */
static bool relay_addr_vanished(struct relay *r)
{
	unsigned gen = atomic_load(&r->b->addr_gen);

	if (r->addrlen == 0 || gen == r->addr_gen)
		return false;
	if (!backend_addr_is_current(r->b, &r->addr, r->addrlen))
		return true;
	r->addr_gen = gen;	/* still in the set: not looked at again until the next change */
	return false;
}

/* Closes every connection to b on w's idle list (vanished_only: those whose address left
 * b's set, see above): one of them broke the protocol at reuse,
 * so the owner's retry must not take the next (each would fail the same way, one
 * transaction using up the pool: one pooled failure per backend per transaction, then a
 * fresh connection, which is an attempt). */
static void relay_drop_idle_of(struct worker *w, struct backend *b, bool vanished_only)
{
	struct relay **pp = &w->idle;
	unsigned n = 0;

	while (*pp) {
		struct relay *q = *pp;
		if (q->b != b || (vanished_only && !relay_addr_vanished(q))) {
			pp = &q->next_idle;
			continue;
		}
		relay_close(q);	/* unlinks q: *pp is the next one now */
		n++;
	}
	if (n > 0)
		log_event(LOG_LVL_INFO, NULL, "event=backend_pool_dropped backend=%s connections=%u reason=\"%s\"",
		    b->url, n, vanished_only ? "address no longer resolved" : "protocol error at reuse");
}

/* An LMTP server's connection failed (dropped, timed out, broke the protocol) after it had
 * answered some of the recipients after the dot (RFC 2033 4.2: one reply each, in order):
 * those replies are theirs, kept; the recipients not answered yet get code 0 and text (the
 * failure). A 250 already read means that recipient has the message: reported as one, it is
 * never sent again (smtp_tx replays only the ones still owed). r is closed (its memory lives
 * until the close callback): the texts borrowed for the call are taken back after it. */
static void relay_fail_partial(struct relay *r, relay_data_fn dcb, void *arg, const char *text)
{
	for (int i = r->nreplies; i < r->nrcpt; i++) {
		r->codes[i] = 0;
		r->texts[i] = (char *)text;	/* borrowed: not freed by relay_texts_clear */
	}
	dcb(arg, r->nrcpt, r->codes, (const char *const *)r->texts);
	for (int i = r->nreplies; i < r->nrcpt; i++)
		r->texts[i] = NULL;
}

/* A failure while a callback is outstanding: report code 0 and close. protocol: the
 * backend sent what is no reply (relay_on_plain), its fault even where a failure is
 * otherwise stale (below). */
static void relay_fail_as(struct relay *r, const char *why, bool protocol)
{
	enum relay_state st = r->state;
	relay_open_fn ocb = r->open_cb;
	relay_reply_fn rcb = NULL;
	relay_data_fn dcb = r->data_cb;
	const char *limit = r->fail_limit;	/* a timeout's bound: logged as limit= */
	bool msg_waiting = r->msg_waiting;
	void *arg = r->arg, *rarg = NULL;
	char text[480];

	r->fail_limit = NULL;
	if (st == RELAY_CLOSED)
		return;
	/* Commands in flight: the first one still wanted hears of the failure; the ones queued
	 * behind it get no callback (their owner gives the connection up on code 0). Commands
	 * sent ahead went out before any queued since, so a claimed one comes first. */
	for (size_t i = r->ahead_done; i < r->ahead_claimed && rcb == NULL; i++) {
		rcb = r->ahead[i].cb;
		rarg = r->ahead[i].arg;
	}
	for (size_t i = 0; i < r->fifo_len && rcb == NULL; i++) {
		rcb = r->fifo[(r->fifo_head + i) % r->fifo_cap].cb;
		rarg = r->fifo[(r->fifo_head + i) % r->fifo_cap].arg;
	}
	/* Commands sent ahead with a message's dot and not one answered when the connection
	 * goes: the backend may end a connection after a message, as it may drop an idle one
	 * (relay_text_is_stale: the owner retries on a fresh connection, no backend fault). */
	if (st == RELAY_CONNECTING && r->b->naddrs > 0)
		backend_addr_result_gen(r->b, r->addr_i, r->addr_gen, false, (long long)(uv_hrtime() / 1000000));
	if (st == RELAY_CONNECTING && r->addr_tries + 1 < r->b->naddrs && ocb) {
		relay_next_address(r, why, limit);
		return;
	}
	if (st == RELAY_TLS_HANDSHAKE && !r->gen->cfg->backends.require_tls)
		relay_tls_fallback(r, why);
	bool stale = r->reused_fresh || (st == RELAY_COMMAND && r->ahead_n > 0 && r->ahead_answered == 0);
	if (stale && protocol) {
		/* A pooled connection's first reply (or the first to commands sent ahead) broke
		 * the protocol: the backend was there and answered wrong, which is its fault as on
		 * a new connection (logged as such, counted), not a connection it had dropped. The
		 * owner still tries a fresh connection as for a stale one (not an attempt): what
		 * the pooled connection was left in may be the trouble; a fresh one that fails
		 * the same way is an attempt (not stale: not reused). */
		snprintf(text, sizeof(text), "backend %.300s: %s (on a " RELAY_STALE_TEXT ")", r->b->url, why);
	} else {
		if (stale)
			why = RELAY_STALE_TEXT;	/* the backend dropped a pooled connection: not a fault */
		snprintf(text, sizeof(text), "backend %s: %s", r->b->url, why);
	}
	/* a connection dropped while idle (a transaction given up whose RSET waits: as idle)
	 * or being closed is no failure; one that broke the protocol there is
	 * (relay_unsolicited) */
	if ((!stale || protocol) && !r->local_error && !r->gw_refused && !r->rset_deferred &&
	    (protocol || (st != RELAY_IDLE && st != RELAY_QUIT && st != RELAY_RSET))) {
		backend_report_failure(r->gen->pool, r->b, why);
		counter_inc(COUNTER_BACKEND_FAILURES);
	}
	log_event(LOG_LVL_INFO, relay_log_id(r), "event=backend_error backend=%s state=%d reason=\"%s\"%s%s%s", r->b->url, st,
	    why, !(stale && protocol) ? "" : r->reused_fresh ? " pooled=reused retry=fresh" :
	    " sent_ahead=unanswered retry=fresh", limit ? " limit=" : "", limit ? limit : "");
	relay_close(r);
	if (stale && protocol)
		relay_drop_idle_of(r->w, r->b, false);
	if (st <= RELAY_EHLO_XCLIENT && ocb) {
		ocb(arg, NULL, 0, text);
	} else if (st == RELAY_COMMAND && msg_waiting && dcb) {
		int code = 0;
		const char *t = text;
		dcb(arg, 1, &code, &t);
	} else if ((st == RELAY_COMMAND || st == RELAY_READY) && rcb) {
		rcb(rarg, 0, text);
	} else if (st == RELAY_DATA_FINAL && dcb && r->nreplies > 0) {
		relay_fail_partial(r, dcb, arg, text);
	} else if ((st == RELAY_DATA_354 || st == RELAY_DATA_SEND || st == RELAY_DATA_FINAL) && dcb) {
		int code = 0;
		const char *t = text;
		dcb(arg, 1, &code, &t);
	}
}

static void relay_fail(struct relay *r, const char *why)
{
	relay_fail_as(r, why, false);
}

static void relay_fail_protocol(struct relay *r, const char *why)
{
	relay_fail_as(r, why, true);
}

/* ---- reading ----------------------------------------------------------------------- */

static void relay_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct relay *r = h->data;

	(void)hint;
	buf->base = r->w->readbuf;
	buf->len = sizeof(r->w->readbuf);
}

/* Plain bytes from the backend: its replies (smtp_reply.h reads them; RFC 5321 4.2). A
 * reply that breaks the protocol (a line past 1,023 octets, no code, a code changing within
 * a multi-line reply, ...) is the backend's fault, never a reply: cut off or mixed, its
 * code would be taken for an answer it did not give. */
static int relay_on_plain(void *arg, const char *data, size_t len)
{
	struct relay *r = arg;

	while (len > 0 && r->state != RELAY_CLOSED) {
		struct smtp_reply rep;
		size_t used = 0;
		int rc = smtp_reply_feed(&r->rd, data, len, &used, &rep);
		if (rc < 0) {
			relay_fail_protocol(r, smtp_reply_strerror(rc));
			return -1;
		}
		if (rc == 0)
			break;
		data += used;
		len -= used;
		if (log_is_debug()) {
			char tv[300];
			log_event(LOG_LVL_DEBUG, relay_log_id(r), "event=relay_reply backend=%s reply=%s", r->b->url,
			    log_val(tv, sizeof(tv), rep.text));
		}
		/* rep.text lives in the reader until the next feed: callbacks get it for the
		 * call's duration only */
		relay_on_reply(r, rep.code, rep.text, rep.len);
		if (r->state == RELAY_TLS_HANDSHAKE && len > 0) {
			/* RFC 3207 5: what came in clear behind the 220 to STARTTLS is no part of
			 * the TLS session (the server cannot have answered our ClientHello yet):
			 * dropped, as the health probe drops it, never read as a reply to a command
			 * sent under TLS (CVE-2011-0411's injection, seen from the client). */
			smtp_reply_reset(&r->rd);
			break;
		}
	}
	return r->state == RELAY_CLOSED ? -1 : 0;
}

/* The backend sends no more (EOF, a read error, or its TLS close_notify). */
static void relay_on_eof(struct relay *r, ssize_t n)
{
	if (r->state == RELAY_IDLE || r->state == RELAY_QUIT || r->state == RELAY_RSET)
		relay_close(r);
	else
		relay_fail(r, n == UV_EOF ? "connection closed" : uv_strerror((int)n));
}

static void relay_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct relay *r = s->data;

	(void)buf;
	if (n == 0)
		return;
	if (n < 0) {
		relay_on_eof(r, n);
		return;
	}
	/* (on an idle connection too: what the backend says there is read as a reply, and
	 * logged and judged by relay_unsolicited) */
	if (r->tls) {
		int rc = tlsconn_feed(r->tls, buf->base, (size_t)n);
		if (rc < 0) {
			relay_fail(r, tlsconn_error(r->tls)[0] ? tlsconn_error(r->tls) : "TLS error");
		} else if (rc == 1 && r->state != RELAY_CLOSED) {
			/* The backend's close_notify: it sends nothing more. Answer it, then as on EOF. */
			tlsconn_shutdown(r->tls);
			relay_on_eof(r, UV_EOF);
		}
	} else {
		relay_on_plain(r, buf->base, (size_t)n);
	}
	/* A line begun on an idle connection: never handed to the next session, whose first
	 * reply it would prefix */
	if (r->state == RELAY_IDLE && smtp_reply_pending(&r->rd) > 0)
		relay_unsolicited(r, 0, "(a line without its end)");
}

/* ---- the handshake ----------------------------------------------------------------- */

static void relay_parse_caps(struct relay *r, const char *text)
{
	smtp_caps_parse(text, &r->caps);
}

static void relay_send_ehlo(struct relay *r, enum relay_state next)
{
	char line[300];

	/* We introduce ourselves; after XCLIENT (or behind PROXY v2) the client's own HELO
	 * name stands in for it, as if the client had connected directly. */
	bool as_client = next == RELAY_EHLO_XCLIENT ||
	    r->gen->cfg->backends.client_identity == IDENTITY_PROXY_V2;
	r->state = next;
	snprintf(line, sizeof(line), "%s %s", r->b->kind == BACKEND_LMTP ? "LHLO" : "EHLO",
	    as_client && r->helo[0] ? r->helo : r->gen->cfg->hostname);
	relay_send_line(r, line);
}

/* The longest XCLIENT attribute value Postfix takes, as sent (xtext-encoded): measured with
 * Postfix 3.7, a longer one is "501 5.5.4 Error: attribute value too long", counted before
 * decoding (255 '+' of a HELO are 765 octets sent). The line stays far below smtpd's
 * line_length_limit (2,048) then: eight attributes, about 1,250 octets. */
#define RELAY_XCLIENT_VALUE_MAX 255

/* RFC 3461 xtext, as XCLIENT wants its values; a value whose encoding would pass
 * RELAY_XCLIENT_VALUE_MAX is "[UNAVAILABLE]" instead, never cut (a LOGIN cut short would name
 * another user; a refused XCLIENT would fail every message of the client, and the
 * attribute is one the client chose: its HELO, its AUTH name, its PTR). */
static void relay_xtext(char *out, size_t cap, const char *in)
{
	size_t o = 0;

	for (; *in && o + 4 < cap; in++) {
		unsigned char c = (unsigned char)*in;
		if (c < 33 || c > 126 || c == '+' || c == '=')
			o += (size_t)snprintf(out + o, cap - o, "+%02X", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	if (o > RELAY_XCLIENT_VALUE_MAX)
		snprintf(out, cap, "[UNAVAILABLE]");
}

static bool relay_xclient_has(const struct relay *r, const char *attr)
{
	return smtp_caps_xclient_has(&r->caps, attr);
}

/* A client name as Postfix's XCLIENT takes it (XCLIENT_README): the name when known,
 * "[TEMPUNAVAIL]" after a temporary DNS failure (the backend answers 4xx where a missing
 * name matters), else "[UNAVAILABLE]". */
static const char *relay_xclient_name(const char *name, int status)
{
	if (status == HOOK_NAME_OK && name[0])
		return name;
	return status == HOOK_NAME_TEMP ? "[TEMPUNAVAIL]" : "[UNAVAILABLE]";
}

/* " NAME=addr" for an XCLIENT line into out (cap octets; snprintf's count): Postfix
 * XCLIENT's form, IPv6 as IPV6:addr, a v4-mapped address as its IPv4 one. */
static size_t relay_xclient_addr(char *out, size_t cap, const char *name, const struct sockaddr_storage *sa)
{
	char ip[NETADDR_STRLEN];
	int fam = netaddr_sockaddr_string((const struct sockaddr *)sa, ip, sizeof(ip));

	return (size_t)snprintf(out, cap, " %s=%s%s", name, fam == AF_INET6 ? "IPV6:" : "",
	    fam < 0 ? "[UNAVAILABLE]" : ip);
}

/* Builds the XCLIENT line for env into r->pending_ident. */
static void relay_build_xclient(struct relay *r, const struct hook_env *env)
{
	char v[3 * 255 + 8];       /* relay_xtext keeps room for one more escape and the NUL */
	size_t o = 0;
	char *out = r->pending_ident;
	size_t cap = sizeof(r->pending_ident);

	o += (size_t)snprintf(out + o, cap - o, "XCLIENT");
	if (relay_xclient_has(r, "NAME")) {
		relay_xtext(v, sizeof(v), relay_xclient_name(env->client_name, env->client_name_status));
		o += (size_t)snprintf(out + o, cap - o, " NAME=%s", v);
	}
	if (relay_xclient_has(r, "REVERSE_NAME")) {
		relay_xtext(v, sizeof(v), relay_xclient_name(env->client_ptr, env->client_ptr_status));
		o += (size_t)snprintf(out + o, cap - o, " REVERSE_NAME=%s", v);
	}
	if (relay_xclient_has(r, "ADDR"))
		o += relay_xclient_addr(out + o, cap - o, "ADDR", &env->client);
	if (relay_xclient_has(r, "PORT"))
		o += (size_t)snprintf(out + o, cap - o, " PORT=%d", env->client_port);
	/* Postfix 3.7: the address and port the client reached (the listener's, or the PROXY
	 * header's / a front end's DESTADDR), so the backend can tell submission from 25 */
	if (relay_xclient_has(r, "DESTADDR"))
		o += relay_xclient_addr(out + o, cap - o, "DESTADDR", &env->local);
	if (relay_xclient_has(r, "DESTPORT"))
		o += (size_t)snprintf(out + o, cap - o, " DESTPORT=%d",
		    netaddr_sockaddr_port((const struct sockaddr *)&env->local));
	if (relay_xclient_has(r, "PROTO"))
		o += (size_t)snprintf(out + o, cap - o, " PROTO=%s", env->esmtp ? "ESMTP" : "SMTP");
	if (relay_xclient_has(r, "HELO") && env->helo[0]) {
		relay_xtext(v, sizeof(v), env->helo);
		o += (size_t)snprintf(out + o, cap - o, " HELO=%s", v);
	}
	/* The SMTP AUTH user (the backend's permit_sasl_authenticated), "[UNAVAILABLE]" for a
	 * session without one: a pooled connection re-announced after an authenticated session
	 * must not keep that user. */
	if (relay_xclient_has(r, "LOGIN")) {
		relay_xtext(v, sizeof(v), env->auth_user ? env->auth_user : "[UNAVAILABLE]");
		o += (size_t)snprintf(out + o, cap - o, " LOGIN=%s", v);
	}
	if (o >= cap)
		out[cap - 1] = '\0';
}

/* After a 501 to r's XCLIENT (text its reply), not yet retried: sends it once more with what
 * the reply blames as "[UNAVAILABLE]" (xclient_mark_unavailable) and returns true, the next
 * reply deciding as this one would have; false when there is nothing to change. Postfix keeps
 * the attributes before the one it refused and still authorizes mxgate (it does so anew only
 * after an XCLIENT it took): the whole line again sets them all. A 501 is permanent for the
 * client (its IPv6 address to a Postfix with inet_protocols = ipv4, a PTR name Postfix finds
 * bad): a 451 would fail every message of it until its queue gives up. Its address unknown,
 * Postfix matches it against no network (mynetworks: relay only to its own domains). */
static bool relay_xclient_retry(struct relay *r, const char *text)
{
	char line[RELAY_XCLIENT_MAX], names[96], rv[160];

	if (xclient_mark_unavailable(r->pending_ident, text, line, sizeof(line), names, sizeof(names)) == 0)
		return false;
	log_event(LOG_LVL_WARNING, relay_log_id(r), "event=xclient_refused backend=%s reply=%s action=retry attrs=%s",
	    r->b->url, log_val(rv, sizeof(rv), text), names);
	r->xclient_retried = true;
	relay_send_line(r, line);
	return true;
}

static void relay_ready(struct relay *r)
{
	relay_open_fn cb = r->open_cb;

	r->state = RELAY_READY;
	r->clean = true;
	r->open_cb = NULL;
	r->open_env = NULL;
	relay_disarm(r);
	if (cb)
		cb(r->arg, r, 250, "ready");
}

/* The backend refused the gateway itself at stage ("ehlo", "starttls", "xclient"; code and
 * text its reply, code 0 for none): logged and held as any such refusal (gwrefuse_report,
 * counted as that, not again as a failure), the connection failed with why: the owner tries
 * the next server, the client gets 451 when none is left. r is closed on return. */
static void relay_gateway_refused(struct relay *r, const char *stage, int code, const char *text, const char *why)
{
	gwrefuse_report(r->gen->pool, r->b, relay_log_id(r), stage, code, text, NULL);
	r->gw_refused = true;
	relay_fail(r, why);
}

/* Whether XCLIENT must reach r's server (client_identity xclient, backends.require_xclient,
 * an smtp:// server): one that offers none or refuses it would get every message as from
 * mxgate's own address, which Postfix's permit_mynetworks relays with no client check and
 * its logs and rate limits see as one client. LMTP servers are left out, as the health
 * probe's backend_no_xclient warning leaves them (the final delivery, not a relay). */
static bool relay_xclient_required(const struct relay *r)
{
	const struct backends_config *bc = &r->gen->cfg->backends;

	return bc->client_identity == IDENTITY_XCLIENT && bc->require_xclient && r->b->kind == BACKEND_SMTP;
}

/* After EHLO (first, after TLS or after XCLIENT): announce identity or finish. */
static void relay_after_ehlo(struct relay *r)
{
	if (!(r->caps.bits & SMTP_CAP_XCLIENT) && relay_xclient_required(r)) {
		relay_gateway_refused(r, "xclient", 0, "(no XCLIENT in the EHLO reply)",
		    "XCLIENT not offered (backends.require_xclient)");
		return;
	}
	if (r->gen->cfg->backends.client_identity == IDENTITY_XCLIENT && (r->caps.bits & SMTP_CAP_XCLIENT) &&
	    r->pending_ident[0] && strcmp(r->pending_ident, r->ident) != 0) {
		r->state = RELAY_XCLIENT;
		relay_send_line(r, r->pending_ident);
		return;
	}
	relay_ready(r);
}

static void relay_tls_established_cb(void *arg)
{
	struct relay *r = arg;

	relay_send_ehlo(r, RELAY_EHLO_TLS);
}

static const struct tlsconn_ops relay_tls_ops = {
	.on_plain = relay_on_plain,
	.on_cipher = relay_tls_cipher_cb,
	.on_established = relay_tls_established_cb,
};

static void relay_handshake_reply(struct relay *r, int code, const char *text)
{
	switch (r->state) {
	case RELAY_GREETING:
		/* A 5xx greeting refuses the connecting host before any command: mxgate's address
		 * unless the PROXY header named the client's (then it is the client's refusal). */
		if (code / 100 == 5 && r->gen->cfg->backends.client_identity != IDENTITY_PROXY_V2) {
			gwrefuse_report(r->gen->pool, r->b, relay_log_id(r), "greeting", code, text, NULL);
			r->gw_refused = true;
		}
		if (code != 220) {
			relay_fail(r, "greeting refused");
			return;
		}
		relay_send_ehlo(r, RELAY_EHLO);
		return;
	case RELAY_EHLO:
	case RELAY_EHLO_TLS:
	case RELAY_EHLO_XCLIENT:
		/* A 5xx to mxgate's own EHLO (its hostname, from its address) refuses the gateway;
		 * the one after XCLIENT, or behind PROXY v2, names the client's HELO: the client's */
		if (code / 100 == 5 && r->state != RELAY_EHLO_XCLIENT &&
		    r->gen->cfg->backends.client_identity != IDENTITY_PROXY_V2) {
			relay_gateway_refused(r, "ehlo", code, text, "EHLO refused");
			return;
		}
		if (code != 250) {
			relay_fail(r, "EHLO refused");
			return;
		}
		relay_parse_caps(r, text);
		/* EHLO answered: now the XCLIENT attributes are known. */
		if ((r->state == RELAY_EHLO || r->state == RELAY_EHLO_TLS) && r->open_env &&
		    (r->caps.bits & SMTP_CAP_XCLIENT) && r->gen->cfg->backends.client_identity == IDENTITY_XCLIENT)
			relay_build_xclient(r, r->open_env);
		if (r->state == RELAY_EHLO && relay_tls_wanted(r)) {
			r->state = RELAY_STARTTLS;
			relay_send_line(r, "STARTTLS");
			return;
		}
		if (r->state == RELAY_EHLO && r->gen->cfg->backends.require_tls) {
			relay_fail(r, "STARTTLS not offered (backends.require_tls)");
			return;
		}
		if (r->state == RELAY_EHLO_XCLIENT) {
			relay_ready(r);
			return;
		}
		relay_after_ehlo(r);
		return;
	case RELAY_STARTTLS:
		if (code / 100 == 5 && r->gen->cfg->backends.require_tls) {
			/* mxgate may send only over TLS and the server will not take its STARTTLS */
			relay_gateway_refused(r, "starttls", code, text, "STARTTLS refused (backends.require_tls)");
			return;
		}
		if (code != 220 && r->gen->cfg->backends.require_tls) {
			relay_fail(r, "STARTTLS refused (backends.require_tls)");
			return;
		}
		if (code != 220) {
			/* Opportunistic: carry on in clear text. */
			relay_after_ehlo(r);
			return;
		}
		r->tls = tlsconn_new(r->gen->tls_client, false, r->b->host, &relay_tls_ops, r);
		if (r->tls != NULL && r->gen->cfg->backends.tls_verify &&
		    tlsconn_set_verify_name(r->tls, r->b->verify_name ? r->b->verify_name : r->b->host) != 0) {
			relay_fail(r, "TLS: no name to verify the certificate against (backends.tls_verify)");
			return;
		}
		if (r->tls == NULL || tlsconn_start(r->tls) != 0) {
			relay_fail(r, "TLS setup failed");
			return;
		}
		r->state = RELAY_TLS_HANDSHAKE;
		relay_arm(r, relay_cfg(r)->reply_timeout, "reply_timeout");
		return;
	case RELAY_XCLIENT: {
		bool again = r->xclient_again, retried = r->xclient_retried;

		r->xclient_again = false;
		r->xclient_retried = false;
		/* A 501 refuses an attribute's syntax: the client's, once more without it, on a pooled
		 * connection too: the whole line again sets every attribute (Postfix kept those
		 * before the one it refused, and still authorizes mxgate, the announced client
		 * only after an XCLIENT it takes). A new connection instead would cost one per
		 * message of such a client (an IPv6 one to a Postfix with inet_protocols = ipv4),
		 * and Postfix refuses the same attribute there anyway. */
		if (code == 501 && !retried && relay_xclient_retry(r, text)) {
			r->xclient_again = again;
			return;
		}
		/* Postfix answers 220 (a new greeting); some sinks answer 250. */
		if (code != 220 && code != 250 && again) {
			/* A second XCLIENT on a pooled connection refused: Postfix checks it against
			 * the client the first one announced (550 5.7.0 insufficient authorization),
			 * or the retry above was refused too. Never carry on under the other client's
			 * identity (a 501 may have set some attributes): drop the connection as stale
			 * (the session opens another, not counted as an attempt). A refusal of the
			 * command itself, or a 501 to the retry too (the attributes it blamed were
			 * marked unknown: a server that answers 501 to any second XCLIENT), says the
			 * backend takes one XCLIENT per connection: then reuse only same-client ones,
			 * not pay a pooled connection and two round trips per message for ever. A
			 * first 501 alone is the client's attributes. */
			char rv[160];

			if (code != 501 || retried) {
				atomic_store(&r->b->xclient_once, 1);
				log_event(LOG_LVL_INFO, relay_log_id(r), "event=xclient_once backend=%s reply=%s", r->b->url,
				    log_val(rv, sizeof(rv), text));
			}
			r->reused_fresh = true;
			relay_fail(r, "XCLIENT refused on a pooled connection");
			return;
		}
		if (code != 220 && code != 250 && relay_xclient_required(r)) {
			/* Postfix's 550 5.7.0 "insufficient authorization" and the like: the
			 * gateway's (a 4xx: a failure of the server, as to any command). A 501, to
			 * the retry too, refuses an attribute's syntax: the client's (its HELO, its
			 * PTR, its AUTH name), never a reason to hold the server out for every other
			 * client: this message fails here (no fault of the server), the client gets 4xx. */
			if (code == 501) {
				char rv[160];

				log_event(LOG_LVL_WARNING, relay_log_id(r), "event=xclient_refused backend=%s reply=%s action=tempfail",
				    r->b->url, log_val(rv, sizeof(rv), text));
				r->local_error = true;
				relay_fail(r, "XCLIENT attributes refused (backends.require_xclient)");
			} else if (code / 100 == 5) {
				relay_gateway_refused(r, "xclient", code, text, "XCLIENT refused (backends.require_xclient)");
			} else {
				relay_fail(r, "XCLIENT refused");
			}
			return;
		}
		if (code != 220 && code != 250) {
			/* The backend refused our identity: it still works, without it
			 * (backends.require_xclient: false). */
			char rv[160];

			log_event(LOG_LVL_WARNING, relay_log_id(r), "event=xclient_refused backend=%s reply=%s", r->b->url,
			    log_val(rv, sizeof(rv), text));
			snprintf(r->ident, sizeof(r->ident), "%s", r->pending_ident);
			relay_ready(r);
			return;
		}
		snprintf(r->ident, sizeof(r->ident), "%s", r->pending_ident);
		relay_send_ehlo(r, RELAY_EHLO_XCLIENT);
		return;
	}
	default:
		return;
	}
}

static void relay_connect_cb(uv_connect_t *req, int status)
{
	struct relay *r = req->data;

	if (r->state == RELAY_CLOSED)
		return;
	if (status < 0) {
		relay_fail(r, uv_strerror(status));
		return;
	}
	if (r->b->naddrs > 0)
		backend_addr_result_gen(r->b, r->addr_i, r->addr_gen, true, (long long)(uv_hrtime() / 1000000));
	r->state = RELAY_GREETING;
	/* The greeting is still within connect_timeout (armed by relay_open): a backend that
	 * accepts and never greets (every smtpd busy) is given up on as one that never
	 * accepts, not after reply_timeout. */
	uv_read_start((uv_stream_t *)&r->tcp, relay_alloc_cb, relay_read_cb);
}

/* ---- the public steps -------------------------------------------------------------- */

/* Whether idle connection r may carry env's session. With XCLIENT, a connection speaks for
 * the client it last announced: another client needs a new XCLIENT, which Postfix refuses
 * (after the first it authorizes the announced client, not us, and stops offering XCLIENT
 * in its EHLO reply). Such a connection is reused only for the same client: never may a
 * message go on under the previous client's name. */
static size_t relay_proxy_header(const struct hook_env *env, uint8_t *out, size_t cap);

static bool relay_idle_fits(struct relay *r, const struct hook_env *env)
{
	if (r->gen->cfg->backends.client_identity == IDENTITY_PROXY_V2) {
		/* The PROXY header sent first names one client connection for the connection's
		 * life: only that session's, the header it would send the same (not a later session
		 * whose hook_env took the ended one's address) */
		uint8_t hdr[sizeof(r->proxy_hdr)];
		size_t n = r->sess == env ? relay_proxy_header(env, hdr, sizeof(hdr)) : 0;
		return n > 0 && n == r->proxy_len && memcmp(hdr, r->proxy_hdr, n) == 0;
	}
	if (r->gen->cfg->backends.client_identity != IDENTITY_XCLIENT || r->ident[0] == '\0')
		return true;
	relay_build_xclient(r, env);
	if (strcmp(r->pending_ident, r->ident) == 0)
		return true;
	return (r->caps.bits & SMTP_CAP_XCLIENT) && !atomic_load(&r->b->xclient_once);
}

/* Takes *pp off w's idle list and returns it. */
static struct relay *relay_idle_pop(struct worker *w, struct relay **pp)
{
	struct relay *r = *pp;

	*pp = r->next_idle;
	r->next_idle = NULL;
	w->nidle--;
	if (r->extra) {
		w->nidle_extra--;
		r->extra = false;
	}
	return r;
}

/* An idle connection to b of generation g that fits env (see above), or NULL: the one env's
 * session gave back, when there is one (announced for that client already, and kept for it:
 * relay_park); else one no connected session gave back; else another session's (whose next
 * transaction then takes another or opens one). The first walk compares pointers only.
 * Behind proxy_v2 only the session's own (relay_idle_fits). */
static struct relay *relay_take_idle(struct worker *w, struct backend *b, struct shared_gen *g,
    const struct hook_env *env)
{
	struct relay **pp, **other = NULL;

	for (pp = &w->idle; *pp; pp = &(*pp)->next_idle) {
		struct relay *r = *pp;
		if (r->sess == env && r->b == b && r->gen == g && relay_idle_fits(r, env))
			return relay_idle_pop(w, pp);
	}
	if (g->cfg->backends.client_identity == IDENTITY_PROXY_V2)
		return NULL;
	for (pp = &w->idle; *pp; pp = &(*pp)->next_idle) {
		struct relay *r = *pp;
		if (r->b == b && r->gen == g && (r->sess == NULL || other == NULL) && relay_idle_fits(r, env)) {
			if (r->sess == NULL)
				return relay_idle_pop(w, pp);
			other = pp;
		}
	}
	return other ? relay_idle_pop(w, other) : NULL;
}

static void relay_open_at(struct worker *w, struct backend *b, struct shared_gen *g,
    const struct hook_env *env, relay_open_fn cb, void *arg, size_t ai, size_t tries);

/* env's session's connection to b of generation g whose RSET is in flight (relay_release),
 * no transaction waiting for it yet, or NULL. */
static struct relay *relay_resetting_of(struct worker *w, struct backend *b, struct shared_gen *g,
    const struct hook_env *env)
{
	for (struct relay *r = w->resetting; r; r = r->next_idle)
		if (r->sess == env && r->b == b && r->gen == g && r->wait_cb == NULL && relay_idle_fits(r, env))
			return r;
	return NULL;
}

/* Connection r, no transaction open, carries env's next one: announced for env when it
 * speaks for another identity, then cb(arg, r, ...). pooled: taken from the idle list (its
 * first reply may show the backend dropped it: stale); else it just answered the RSET its
 * session's transaction waited for. */
static void relay_reuse(struct relay *r, const struct hook_env *env, bool pooled, relay_open_fn cb, void *arg)
{
	const struct backends_config *bc = &r->gen->cfg->backends;

	counter_inc(COUNTER_BACKEND_CONNECTIONS_REUSED);
	relay_set_sid(r, env);
	r->sess = env;
	r->reused_fresh = pooled;
	r->open_cb = cb;
	r->arg = arg;
	r->in_session = true;
	r->counted_active = true;
	backend_active_add(r->b, 1);
	snprintf(r->helo, sizeof(r->helo), "%s", env->helo[0] ? env->helo : r->gen->cfg->hostname);
	if (bc->client_identity == IDENTITY_XCLIENT && (r->caps.bits & SMTP_CAP_XCLIENT)) {
		if (r->ident[0] == '\0')	/* else relay_idle_fits built it for env */
			relay_build_xclient(r, env);
		if (strcmp(r->pending_ident, r->ident) != 0) {
			r->state = RELAY_XCLIENT;
			r->xclient_again = true;
			relay_send_line(r, r->pending_ident);
			return;
		}
	}
	relay_ready(r);
}

/* The transaction waiting for r's RSET reply (relay_open_as), if any, gets a fresh
 * connection, as it would have had r not been its session's: the RSET was refused, timed
 * out, or the backend went. */
static void relay_waiter_fresh(struct relay *r)
{
	relay_open_fn cb = r->wait_cb;
	struct shared_gen *g = r->gen;

	if (cb == NULL)
		return;
	r->wait_cb = NULL;
	shared_gen_ref(g);	/* r's may go with it */
	relay_open_at(r->w, r->b, g, r->wait_env, cb, r->wait_arg,
	    backend_addr_first(r->b, (long long)(uv_hrtime() / 1000000)), 0);
	shared_gen_unref(g);
}

/* The connection to one address of b's host name could not be made (refused, unreachable,
 * no answer within connect_timeout): the next address is tried, as Postfix's smtp client
 * tries each address of a destination. Not a failure of the server yet: that is when the
 * last address fails (relay_fail). */
static void relay_next_address(struct relay *r, const char *why, const char *limit)
{
	struct worker *w = r->w;
	struct backend *b = r->b;
	struct shared_gen *g = r->gen;
	const struct hook_env *env = r->open_env;
	relay_open_fn ocb = r->open_cb;
	void *arg = r->arg;
	size_t n = b->naddrs;
	size_t next = n ? (r->addr_i + 1) % n : 0, tries = r->addr_tries + 1;
	char a1[INET6_ADDRSTRLEN + 8], a2[INET6_ADDRSTRLEN + 8];
	struct sockaddr_storage nsa;
	socklen_t nlen;

	struct netaddr na;
	if (netaddr_from_sockaddr((const struct sockaddr *)&r->addr, &na) != 0 ||
	    netaddr_to_string(&na, a1, sizeof(a1)) != 0)
		snprintf(a1, sizeof(a1), "?");
	if (!backend_addr_get(b, next, &nsa, &nlen) || netaddr_from_sockaddr((const struct sockaddr *)&nsa, &na) != 0 ||
	    netaddr_to_string(&na, a2, sizeof(a2)) != 0)
		snprintf(a2, sizeof(a2), "?");
	log_event(LOG_LVL_INFO, relay_log_id(r), "event=backend_address_failed backend=%s address=%s reason=\"%s\" next=%s%s%s",
	    b->url, a1, why, a2, limit ? " limit=" : "", limit ? limit : "");
	shared_gen_ref(g);	/* relay_close drops r's */
	r->open_cb = NULL;
	relay_close(r);
	relay_open_at(w, b, g, env, ocb, arg, next, tries);
	shared_gen_unref(g);
}

static void relay_open_as(struct worker *w, struct backend *b, const struct hook_env *env, bool idle_ok,
    relay_open_fn cb, void *arg)
{
	/* The generation b belongs to (a session begun before a reload picks from its own
	 * pool): the connection holds it, so b outlives the connection parked idle. */
	struct shared_gen *g = b->pool && b->pool->gen ? b->pool->gen : w->gen->shared;
	struct relay *r;

	if (b->kind == BACKEND_MAILDIR) {
		cb(arg, NULL, 0, "maildir backends are written directly");
		return;
	}
	if (idle_ok && (r = relay_resetting_of(w, b, g, env)) != NULL) {
		/* env's own connection, its RSET in flight: the transaction waits for the reply
		 * (bounded by reply_timeout) rather than announce the client on another or open one */
		log_event(LOG_LVL_DEBUG, env->session_id, "event=backend_rset_wait backend=%s", b->url);
		r->wait_cb = cb;
		r->wait_arg = arg;
		r->wait_env = env;
		if (r->rset_deferred) {
			r->rset_deferred = false;
			r->state = RELAY_RSET;
			relay_send_line(r, "RSET");
		}
		return;
	}
	if (idle_ok)
		relay_drop_idle_of(w, b, true);
	if (idle_ok && (r = relay_take_idle(w, b, g, env)) != NULL) {
		relay_reuse(r, env, true, cb, arg);
		return;
	}
	/* the address that last worked, passing over one that just failed (backend.h) */
	relay_open_at(w, b, g, env, cb, arg, backend_addr_first(b, (long long)(uv_hrtime() / 1000000)), 0);
}

void relay_open(struct worker *w, struct backend *b, const struct hook_env *env, relay_open_fn cb, void *arg)
{
	relay_open_as(w, b, env, true, cb, arg);
}

void relay_open_fresh(struct worker *w, struct backend *b, const struct hook_env *env, relay_open_fn cb, void *arg)
{
	relay_open_as(w, b, env, false, cb, arg);
}

/* The PROXY v2 header naming env's client and the address it connected to, into out[0..cap):
 * its length, or 0 when it cannot be built. A client and a local address of different
 * families (a front end's XCLIENT naming an IPv6 client on an IPv4 listener) are both
 * written as IPv6, the IPv4 one v4-mapped (RFC 4291 2.5.5.2: the same address), since the
 * header holds one family. */
static size_t relay_proxy_header(const struct hook_env *env, uint8_t *out, size_t cap)
{
	struct sockaddr_storage c = env->client, l = env->local;

	if (c.ss_family != l.ss_family) {
		struct sockaddr_storage *v4 = c.ss_family == AF_INET ? &c : l.ss_family == AF_INET ? &l : NULL;
		const struct sockaddr_storage *v6 = v4 == &c ? &l : &c;
		if (v4 != NULL && v6->ss_family == AF_INET6) {
			struct sockaddr_in a = *(const struct sockaddr_in *)v4;
			struct sockaddr_in6 m;
			memset(&m, 0, sizeof(m));
			m.sin6_family = AF_INET6;
			m.sin6_port = a.sin_port;
			m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
			memcpy(&m.sin6_addr.s6_addr[12], &a.sin_addr, 4);
			memset(v4, 0, sizeof(*v4));
			memcpy(v4, &m, sizeof(m));
		}
	}
	return proxyproto_build_v2((const struct sockaddr *)&c, (const struct sockaddr *)&l, out, cap);
}

/* A new connection to b's address ai, tries addresses already tried for this open. */
static void relay_open_at(struct worker *w, struct backend *b, struct shared_gen *g,
    const struct hook_env *env, relay_open_fn cb, void *arg, size_t ai, size_t tries)
{
	const struct backends_config *bc = &g->cfg->backends;
	uint8_t hdr[64];
	size_t hdr_len = 0;

	if (bc->client_identity == IDENTITY_PROXY_V2 && (hdr_len = relay_proxy_header(env, hdr, sizeof(hdr))) == 0) {
		/* Without its header the backend would take mxgate for the client (its
		 * address checks, its logs): no connection, the open fails (the owner tries
		 * another backend, then answers 4xx); no fault of the backend's. */
		char text[400];
		log_event(LOG_LVL_WARNING, env->session_id, "event=proxy_header_failed backend=%s client_family=%d local_family=%d",
		    b->url, env->client.ss_family, env->local.ss_family);
		snprintf(text, sizeof(text), "backend %s: the client cannot be named in a PROXY v2 header", b->url);
		cb(arg, NULL, 0, text);
		return;
	}
	struct relay *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		cb(arg, NULL, 0, "out of memory");
		return;
	}
	counter_inc(COUNTER_BACKEND_CONNECTS);
	relay_set_sid(r, env);
	r->sess = env;
	r->w = w;
	r->gen = g;
	shared_gen_ref(g);
	r->b = b;
	r->open_cb = cb;
	r->arg = arg;
	r->in_session = true;
	smtp_reply_init(&r->rd, 0);
	snprintf(r->helo, sizeof(r->helo), "%s", env->helo[0] ? env->helo : g->cfg->hostname);
	bool unix_sock = b->sa.ss_family == AF_UNIX;
	if (unix_sock)
		uv_pipe_init(&w->loop, &r->pipe, 0);
	else
		uv_tcp_init(&w->loop, &r->tcp);
	uv_timer_init(&w->loop, &r->timer);
	r->tcp.data = r;	/* the handle's data, whichever member */
	r->timer.data = r;
	r->open_handles = 2;
	r->state = RELAY_CONNECTING;
	r->counted_active = true;
	backend_active_add(b, 1);
	r->conn_req.data = r;
	int rc = 0;
	if (unix_sock) {
		/* uv_tcp_connect refuses an AF_UNIX address (EINVAL): a pipe handle; a failure to
		 * connect comes through relay_connect_cb */
		uv_pipe_connect(&r->conn_req, &r->pipe, ((const struct sockaddr_un *)&b->sa)->sun_path,
		    relay_connect_cb);
	} else {
		uv_tcp_nodelay(&r->tcp, 1);
		r->addr_gen = atomic_load(&b->addr_gen);
		r->addr_i = ai < b->naddrs ? ai : 0;
		r->addr_tries = tries;
		if (!backend_addr_get(b, r->addr_i, &r->addr, &r->addrlen)) {
			memcpy(&r->addr, &b->sa, sizeof(r->addr));
			r->addrlen = b->salen;
		}
		rc = uv_tcp_connect(&r->conn_req, &r->tcp, (const struct sockaddr *)&r->addr, relay_connect_cb);
	}
	if (rc != 0) {
		r->local_error = backend_err_is_local(rc);
		relay_fail(r, uv_strerror(rc));
		return;
	}
	relay_arm(r, relay_cfg(r)->connect_timeout, "connect_timeout");
	r->open_env = env;
	if (hdr_len > 0) {
		/* kept: the connection serves this client only (relay_idle_fits) */
		memcpy(r->proxy_hdr, hdr, hdr_len);	/* sizeof(hdr) == sizeof(r->proxy_hdr) */
		r->proxy_len = hdr_len;
		/* the header goes first on the wire, queued before anything else */
		relay_write_raw(r, (const char *)hdr, hdr_len, false);
	}
}

bool relay_text_is_stale(const char *text)
{
	return text && strstr(text, RELAY_STALE_TEXT) != NULL;
}

/* A reply to no command, on a pooled connection (idle) or one a session holds between
 * commands (ready): the connection is dropped (what else did the backend answer?), and the
 * reason logged with what it said. A 421 is the server closing (RFC 5321 3.8: it may say so
 * at any time, as Postfix's smtpd at its idle timeout): logged, no fault. Anything else
 * breaks the protocol: the backend's failure, counted as a protocol error on use is
 * (relay_fail_as). */
static void relay_unsolicited(struct relay *r, int code, const char *text)
{
	char tv[240];
	bool closing = code == 421;

	log_event(LOG_LVL_INFO, relay_log_id(r), "event=backend_unsolicited backend=%s state=%s code=%d reply=%s%s",
	    r->b->url, r->state == RELAY_IDLE ? "idle" : "ready", code, log_val(tv, sizeof(tv), text),
	    closing ? " fault=no" : " fault=protocol");
	if (!closing) {
		backend_report_failure(r->gen->pool, r->b, "unsolicited reply");
		counter_inc(COUNTER_BACKEND_FAILURES);
	}
	relay_close(r);
}

/* text: the reply's lines (smtp_reply.h), len octets, text[len] a NUL (the reader shows a
 * NUL the backend sent inside as '?', so len is the text's strlen). */
static void relay_on_reply(struct relay *r, int code, const char *text, size_t len)
{
	bool fresh = r->reused_fresh;	/* a pooled connection's first reply since its reuse */

	r->reused_fresh = false;
	switch (r->state) {
	case RELAY_GREETING:
	case RELAY_EHLO:
	case RELAY_EHLO_TLS:
	case RELAY_EHLO_XCLIENT:
	case RELAY_STARTTLS:
	case RELAY_XCLIENT:
		relay_handshake_reply(r, code, text);
		return;
	case RELAY_COMMAND: {
		/* RFC 2920: the replies come in the order the commands went out. */
		struct relay_pending p = r->fifo[r->fifo_head];
		r->fifo_head = (r->fifo_head + 1) % r->fifo_cap;
		if (--r->fifo_len == 0) {
			r->state = RELAY_READY;
			relay_disarm(r);
		} else {
			relay_arm(r, relay_cfg(r)->reply_timeout, "reply_timeout");
		}
		if (p.ahead) {
			/* A command sent ahead: its reply is kept for its owner (relay_ahead_deliver). */
			struct relay_ahead *a = &r->ahead[r->ahead_answered++];
			a->code = code;
			relay_ahead_keep(&a->text, &a->text_cap, text, len);
			a->has_text = true;
		}
		if (p.data) {
			r->data_queued = false;
			if (r->msg_waiting) {
				if (p.ahead) {
					/* The message took that DATA over (relay_send_message): no owner
					 * hears its reply. */
					r->ahead[r->ahead_answered - 1].cb = NULL;
					relay_ahead_deliver(r);
				}
				/* The message waits for this DATA: on as if relay_send_message had
				 * sent it (354: stream it; anything else: the message's reply). */
				r->msg_waiting = false;
				r->state = RELAY_DATA_354;
				relay_on_reply(r, code, text, len);
				return;
			}
			r->data_open = code == 354;
			if (code != 354 && code != 421 && !p.ahead) {
				/* Refused before the message came (a lock-step client's early DATA
				 * answered while it sends the content): the transaction is over there,
				 * and this is the message's reply when it comes, with no DATA again. */
				r->data_refused = code;
				relay_ahead_keep(&r->data_refused_text, &r->data_refused_cap, text, len);
			}
		}
		if (code == 421) {
			/* The backend is closing on us: report, then close (the commands queued
			 * behind get no callback). Trouble with the server, as 421 to DATA
			 * (backend.h); not on a pooled connection's first reply, which may be
			 * the idle timeout of a live server (relay_fail's stale). */
			if (!fresh)
				backend_report_failure(r->gen->pool, r->b, "421 to a command");
			if (p.ahead)
				relay_ahead_deliver(r);
			else if (p.cb)
				p.cb(p.arg, code, text);
			if (r->state != RELAY_CLOSED)
				relay_close(r);
			return;
		}
		if (p.ahead)
			relay_ahead_deliver(r);
		else if (p.cb)
			p.cb(p.arg, code, text);
		return;
	}
	case RELAY_DATA_354:
		if (code != 354 && code < 400) {
			/* RFC 5321 4.3.2: DATA is answered 354 or refused (4xx, 5xx). A 2xx here is
			 * no message's reply (the server never had it: a reply said twice, one out
			 * of turn): taken as the message's 250, the client would hear "queued" for
			 * a message no server holds. A protocol error: replayed or 4xx. */
			relay_fail_protocol(r, "reply to DATA neither 354 nor a refusal");
			return;
		}
		if (code != 354) {
			relay_data_fn cb = r->data_cb;
			r->data_cb = NULL;
			r->state = RELAY_READY;
			relay_disarm(r);
			/* 4xx to DATA is about this message (Postfix: smtp_mesg_fail, no throttle);
			 * 421 closes the session: trouble with the server (backend.h) */
			if (code == 421)
				backend_report_failure(r->gen->pool, r->b, "421 to DATA");
			else if (code >= 400 && code < 500)
				backend_report_deferral(r->b);
			if (cb)
				cb(r->arg, 1, &code, &text);
			return;
		}
		r->state = RELAY_DATA_SEND;
		dotstuff_init(&r->ds);
		r->off = 0;
		/* the message's time from now on (it was the DATA command's reply_timeout) */
		relay_data_start(r);
		relay_pump(r);
		return;
	case RELAY_DATA_SEND:
		/* A reply while we are still sending: the backend gave up (e.g. 552). */
		relay_fail(r, "reply before end of data");
		return;
	case RELAY_DATA_FINAL: {
		r->codes[r->nreplies] = code;
		if (r->nreplies == 0 && len < sizeof(r->text0)) {
			memcpy(r->text0, text, len + 1);
			r->texts[0] = r->text0;
		} else {
			r->texts[r->nreplies] = strdup(text);
		}
		r->nreplies++;
		if (r->nreplies < r->nrcpt) {
			relay_arm(r, relay_cfg(r)->data_timeout, "data_timeout");
			return;
		}
		relay_data_fn cb = r->data_cb;
		r->data_cb = NULL;
		if (r->fifo_len > 0) {
			/* Commands went out behind the dot (relay_queue_ahead): their replies follow. */
			r->state = RELAY_COMMAND;
			relay_arm(r, relay_cfg(r)->reply_timeout, "reply_timeout");
		} else {
			r->state = RELAY_READY;
			/* RFC 5321 4.1.1.4: the reply to the dot ends the transaction */
			r->clean = r->ahead_n == 0;
			relay_disarm(r);
		}
		bool any_ok = false, closing = false;
		for (int i = 0; i < r->nrcpt; i++) {
			any_ok |= r->codes[i] / 100 == 2;
			closing |= r->codes[i] == 421;
		}
		if (closing)
			backend_report_failure(r->gen->pool, r->b, "421 after data");
		else if (any_ok)
			backend_report_success(r->gen->pool, r->b);
		else if (code / 100 == 4)
			backend_report_deferral(r->b);	/* the message's, not the server's (backend.h) */
		if (cb)
			cb(r->arg, r->nrcpt, r->codes, (const char *const *)r->texts);
		relay_texts_clear(r);
		return;
	}
	case RELAY_RSET:
		relay_disarm(r);
		relay_unlink_resetting(r);
		if (code != 250) {
			relay_waiter_fresh(r);
			r->state = RELAY_QUIT;
			relay_send_line(r, "QUIT");
			return;
		}
		r->clean = true;
		if (r->wait_cb != NULL) {
			/* the session's next transaction waited for it (relay_open_as) */
			relay_open_fn cb = r->wait_cb;
			r->wait_cb = NULL;
			relay_reuse(r, r->wait_env, false, cb, r->wait_arg);
			return;
		}
		relay_park(r);
		return;
	case RELAY_QUIT:
		relay_close(r);
		return;
	default:
		/* Unexpected reply (idle, or between commands): one being opened fails, so its
		 * owner hears of it (a close alone would leave it waiting for ever) */
		if (r->open_cb)
			relay_fail_protocol(r, "unexpected reply");
		else
			relay_unsolicited(r, code, text);
		return;
	}
}

/* A connection with no transaction open goes on the worker's idle list, or says QUIT when
 * the worker drains, a newer config generation is in force or the list is full: pool_size
 * connections per server (relay_max_idle), and beyond that, one given back by a session
 * still connected (r->sess), kept for that session's next transaction (lock-step clients
 * side by side each hold one between their messages: with more of them than pool_size, the
 * pool would QUIT some at every round and open them again) until the session ends
 * (relay_session_end), RELAY_MAX_IDLE_PER_WORKER idle connections in all. */
static void relay_park(struct relay *r)
{
	struct worker *w = r->w;
	bool v2 = r->gen->cfg->backends.client_identity == IDENTITY_PROXY_V2;
	/* behind proxy_v2 the connection is its session's alone: never in the pool proper */
	bool full = v2 || w->nidle - w->nidle_extra >= relay_max_idle(r);

	r->data_refused = 0;
	if (atomic_load(&w->stop) || w->gen == NULL || r->gen != w->gen->shared || w->nidle >= RELAY_MAX_IDLE_PER_WORKER ||
	    (full && r->sess == NULL)) {
		r->state = RELAY_QUIT;
		relay_send_line(r, "QUIT");
		return;
	}
	r->state = RELAY_IDLE;
	r->reused_fresh = false;	/* (taken and given back unused: no longer "fresh" from the pool) */
	r->next_idle = w->idle;
	w->idle = r;
	w->nidle++;
	r->extra = full;
	w->nidle_extra += full;
	relay_arm(r, RELAY_IDLE_MS, NULL);
}

void relay_session_end(struct worker *w, const struct hook_env *env)
{
	struct relay **pp = w ? &w->resetting : NULL;

	/* an RSET in flight: parked as any once its reply is in */
	while (pp && *pp) {
		struct relay *r = *pp;
		if (r->sess == env) {
			r->sess = NULL;
			*pp = r->next_idle;
			r->next_idle = NULL;
			r->resetting = false;
			if (r->rset_deferred) {
				/* the transaction given up ends with the session: QUIT, no RSET */
				r->rset_deferred = false;
				r->state = RELAY_QUIT;
				relay_send_line(r, "QUIT");
			}
		} else {
			pp = &r->next_idle;
		}
	}
	pp = w ? &w->idle : NULL;
	while (pp && *pp) {
		struct relay *r = *pp;
		if (r->sess != env) {
			pp = &r->next_idle;
			continue;
		}
		r->sess = NULL;
		if (r->extra && r->gen->cfg->backends.client_identity != IDENTITY_PROXY_V2 &&
		    w->nidle - w->nidle_extra < relay_max_idle(r)) {
			r->extra = false;	/* room in the pool now: it stays, as any pooled one */
			w->nidle_extra--;
		}
		if (!r->extra) {
			pp = &r->next_idle;
			continue;
		}
		relay_idle_pop(w, pp);
		r->state = RELAY_QUIT;
		relay_send_line(r, "QUIT");
	}
}

static int relay_max_idle(const struct relay *r)
{
	long per = r->gen->cfg->backends.pool_size;
	size_t n = r->gen->pool->nservers + r->gen->pool->nextra;

	return (int)(per * (long)n < RELAY_MAX_IDLE_PER_WORKER ? per * (long)n : RELAY_MAX_IDLE_PER_WORKER);
}

/* Appends p to the FIFO of replies awaited. */
static void relay_fifo_push(struct relay *r, struct relay_pending p)
{
	if (r->fifo_len == r->fifo_cap) {
		/* Grow the ring, unrolled into the new array from the head. */
		size_t cap = r->fifo_cap ? r->fifo_cap * 2 : 8;
		struct relay_pending *f = malloc(cap * sizeof(*f));
		if (f == NULL)
			abort();
		for (size_t i = 0; i < r->fifo_len; i++)
			f[i] = r->fifo[(r->fifo_head + i) % r->fifo_cap];
		free(r->fifo);
		r->fifo = f;
		r->fifo_cap = cap;
		r->fifo_head = 0;
	}
	r->fifo[(r->fifo_head + r->fifo_len) % r->fifo_cap] = p;
	r->fifo_len++;
}

/* Appends one command line of n octets (cut at 1024) and its CRLF to the output queue. */
static void relay_outq_line(struct relay *r, const char *line, size_t n)
{
	if (n > 1024)
		n = 1024;
	if (log_is_debug()) {
		char lv[1100];
		log_event(LOG_LVL_DEBUG, relay_log_id(r), "event=relay_send backend=%s line=%s", r->b->url,
		    log_valn(lv, sizeof(lv), line, n));
	}
	strbuf_append(&r->outq, line, n);
	strbuf_append(&r->outq, "\r\n", 2);
	r->clean = false;
}

/* ---- commands sent ahead ---------------------------------------------------------- */

static void relay_ahead_clear(struct relay *r)
{
	for (size_t i = 0; i < r->ahead_n; i++)
		r->ahead[i].has_text = false;
	r->ahead_n = r->ahead_claimed = r->ahead_answered = r->ahead_done = 0;
	r->data_ahead = false;
}

/* Hands the replies of claimed commands sent ahead to their owners, in order. A callback
 * may claim more, or close the relay. */
static void relay_ahead_deliver(struct relay *r)
{
	while (r->state != RELAY_CLOSED && r->ahead_done < r->ahead_n && r->ahead_done < r->ahead_claimed &&
	    r->ahead_done < r->ahead_answered) {
		struct relay_ahead *a = &r->ahead[r->ahead_done++];
		const char *text = a->has_text ? a->text : "";

		a->has_text = false;
		if (a->cb)
			a->cb(a->arg, a->code, text);
	}
	if (r->state != RELAY_CLOSED && r->ahead_n && r->ahead_done == r->ahead_n)
		relay_ahead_clear(r);
}

bool relay_can_ahead(const struct relay *r)
{
	return r->state == RELAY_READY && r->data_open && !r->data_queued && r->fifo_len == 0 && r->ahead_n == 0 &&
	    (r->caps.bits & SMTP_CAP_PIPELINING) && !(r->caps.bits & SMTP_CAP_CHUNKING) && r->b->kind != BACKEND_LMTP;
}

void relay_queue_ahead(struct relay *r, const char *line, size_t n)
{
	if (r->state == RELAY_CLOSED || r->ahead_n == RELAY_AHEAD_MAX)
		return;
	if (r->ahead == NULL) {
		/* each slot in one cache line of its own: a slot is 64 octets (held below) */
		if ((r->ahead = aligned_alloc(64, RELAY_AHEAD_MAX * sizeof(*r->ahead))) == NULL)
			abort();
		memset(r->ahead, 0, RELAY_AHEAD_MAX * sizeof(*r->ahead));
	}
	struct relay_ahead *a = &r->ahead[r->ahead_n];
	a->cb = NULL;
	a->arg = NULL;
	a->code = 0;
	a->has_text = false;
	relay_ahead_keep(&a->line, &a->line_cap, line, n);
	r->ahead_n++;
	/* Queued like any command, but the state stays: the message goes out first and the
	 * lines with its last chunk (relay_pump). */
	bool data = relay_line_is_data(line);
	relay_fifo_push(r, (struct relay_pending){ NULL, NULL, data, true });
	relay_outq_line(r, line, n);
	if (data) {
		r->data_queued = true;
		r->data_ahead = true;
	}
}

const char *relay_ahead_next(const struct relay *r)
{
	return r->ahead_claimed < r->ahead_n ? r->ahead[r->ahead_claimed].line : NULL;
}

bool relay_ahead_match(const struct relay *r, const char *const *lines, size_t n)
{
	for (size_t i = 0; i < n && r->ahead_claimed + i < r->ahead_n; i++)
		if (strcmp(lines[i], r->ahead[r->ahead_claimed + i].line) != 0)
			return false;
	return true;
}

/* The next command sent ahead is line's: cb(arg) hears its reply (at relay_flush if it
 * is in already). */
static void relay_ahead_claim(struct relay *r, relay_reply_fn cb, void *arg)
{
	struct relay_ahead *a = &r->ahead[r->ahead_claimed++];

	a->cb = cb;
	a->arg = arg;
	if (relay_line_is_data(a->line))
		r->data_ahead = false;
}

void relay_take_data_ahead(struct relay *r)
{
	if (relay_ahead_next(r) && relay_line_is_data(relay_ahead_next(r))) {
		relay_ahead_claim(r, NULL, NULL);
		relay_ahead_deliver(r);	/* done with the list when its reply is in */
	}
}

void relay_queue(struct relay *r, const char *line, relay_reply_fn cb, void *arg)
{
	bool misplaced = r->data_open;	/* the backend would read it as message content */

	r->data_refused = 0;	/* a command after a refused DATA: the message will not come */

	if (r->state == RELAY_CLOSED)
		return;
	if (relay_ahead_next(r) && (cb != NULL || arg != NULL)) {
		if (strcmp(relay_ahead_next(r), line) == 0) {
			/* Sent already: the owner takes that command over. */
			relay_ahead_claim(r, cb, arg);
			return;
		}
		/* Out of step with what went ahead (the owner checks relay_ahead_match first):
		 * the connection is of no use any more; not the backend's fault. */
		relay_cancel(r);
		r->reused_fresh = true;
		relay_fail(r, "a command out of step with the commands sent ahead");
		if (cb)
			cb(arg, 0, "backend: " RELAY_STALE_TEXT);
		return;
	}
	relay_fifo_push(r, (struct relay_pending){ cb, arg, false, false });
	if (misplaced) {
		/* A command while the backend reads a message (an owner's mistake): the
		 * connection is dropped, the command's callback hears of it. */
		r->state = RELAY_COMMAND;
		relay_fail(r, "a command while the backend reads a message");
		return;
	}
	relay_outq_line(r, line, strlen(line));
	r->state = RELAY_COMMAND;
}

void relay_queue_data(struct relay *r, relay_reply_fn cb, void *arg)
{
	const char *next = relay_ahead_next(r);

	if (next && relay_line_is_data(next)) {
		relay_ahead_claim(r, cb, arg);
		return;
	}
	relay_queue(r, "DATA", cb, arg);
	if (r->state == RELAY_CLOSED)
		return;
	r->fifo[(r->fifo_head + r->fifo_len - 1) % r->fifo_cap].data = true;
	r->data_queued = true;
}

bool relay_can_data(const struct relay *r)
{
	return r->state == RELAY_READY && !r->clean && r->fifo_len == 0 && !r->data_queued && !r->data_open &&
	    r->ahead_n == 0 && !(r->caps.bits & SMTP_CAP_CHUNKING);
}

bool relay_data_pending(const struct relay *r)
{
	/* A DATA sent ahead and not claimed: the owner's commands are matched against it. */
	return (r->data_queued || r->data_open) && !r->data_ahead;
}

void relay_data_abandon(struct relay *r)
{
	if (!r->data_open)
		return;
	/* RFC 2920 3.1: DATA got 354 although no recipient was accepted: a lone "." ends
	 * it (the backend refuses the empty transaction); its reply is dropped. */
	r->data_open = false;
	relay_queue(r, ".", NULL, NULL);
	relay_flush(r);
}

void relay_flush(struct relay *r)
{
	if (r->state == RELAY_CLOSED)
		return;
	if (r->outq.len) {
		int rc = relay_write(r, r->outq.v, r->outq.len);
		r->outq.len = 0;
		if (rc != 0) {
			relay_fail(r, "write failed");
			return;
		}
		relay_arm(r, relay_cfg(r)->reply_timeout, "reply_timeout");
	}
	relay_ahead_deliver(r);	/* replies to commands sent ahead that were in before the claim */
}

void relay_cancel(struct relay *r)
{
	for (size_t i = 0; i < r->fifo_len; i++)
		r->fifo[(r->fifo_head + i) % r->fifo_cap].cb = NULL;
	for (size_t i = r->ahead_done; i < r->ahead_claimed; i++)
		r->ahead[i].cb = NULL;
}

void relay_command(struct relay *r, const char *line, relay_reply_fn cb, void *arg)
{
	relay_queue(r, line, cb, arg);
	relay_flush(r);
}

/* Output of the dot-stuffer: into the current chunk. */
static int relay_chunk_out(void *arg, const char *data, size_t len)
{
	struct relay *r = arg;

	memcpy(r->chunk + r->chunk_len, data, len);
	r->chunk_len += len;
	return 0;
}

#define RELAY_CHUNK_IN 32768
#define RELAY_CHUNK_OUT (RELAY_CHUNK_IN * 2 + 64)   /* worst case: every octet a bare LF,
                                                      * plus the lead line and the end */

/* Streams prefix + body, dot-stuffed, with backpressure on the socket's write queue. */
static void relay_pump(struct relay *r)
{
	char chunk[RELAY_CHUNK_OUT];
	size_t total = r->prefix_len + r->body_len;

	while (r->state == RELAY_DATA_SEND) {
		/* the body's last piece in wire form, written from where it is (no TLS) */
		const char *wire = NULL;
		size_t wire_len = 0, split = 0;
		if (uv_stream_get_write_queue_size((uv_stream_t *)&r->tcp) > 256 * 1024) {
			/* Resume from the write callback of the last queued chunk. */
			struct relay_wreq *w = malloc(sizeof(*w));
			uv_buf_t b = uv_buf_init((char *)"", 0);
			if (w == NULL || (w->req.data = r, uv_write(&w->req, (uv_stream_t *)&r->tcp, &b, 1,
			    relay_write_data_cb)) != 0) {
				free(w);
				relay_fail(r, "write failed");
				return;
			}
			relay_data_look_soon(r);	/* progress inside the queue too */
			return;
		}
		r->chunk = chunk;
		r->chunk_len = 0;
		if (r->lead[0]) {
			/* The BDAT line goes out in the same write as the first content. */
			relay_chunk_out(r, r->lead, strlen(r->lead));
			r->lead[0] = '\0';
		}
		/* The header block and the body in one write when they fit (one chunk). */
		for (size_t room = RELAY_CHUNK_IN; r->off < total && room > 0;) {
			size_t n;
			const char *src;
			if (r->off < r->prefix_len) {
				src = r->prefix + r->off;
				n = r->prefix_len - r->off;
			} else {
				src = r->body + (r->off - r->prefix_len);
				n = total - r->off;
			}
			if (n > room)
				n = room;
			if (r->off == r->prefix_len && r->body_wire && !(r->ds.at_line_start && !r->ds.last_cr))
				r->body_wire = false;	/* the prefix left a line open: encode */
			if (r->bdat) {
				bdat_crlf_encode(&r->crlf, src, n, relay_chunk_out, r);
			} else if (r->body_wire && r->off >= r->prefix_len) {
				/* already in wire form: no decoding, no re-stuffing; each piece of
				 * the body goes from the message buffer itself (writev: the chunk
				 * before it, the piece, the dot after the last), copied only when
				 * the kernel does not take it now (relay_write_rawv). A piece ends
				 * the chunk: room or the body runs out with it. */
				if (r->tls == NULL) {
					wire = src;
					wire_len = n;
					split = r->chunk_len;
				} else {
					relay_chunk_out(r, src, n);
				}
				r->ds.at_line_start = src[n - 1] == '\n';
				r->ds.last_cr = false;
			} else {
				dotstuff_encode(&r->ds, src, n, relay_chunk_out, r);
			}
			r->off += n;
			room -= n;
		}
		bool last = r->off >= total;
		if (last && r->bdat)
			bdat_crlf_finish(&r->crlf, relay_chunk_out, r);
		else if (last)
			dotstuff_finish(&r->ds, relay_chunk_out, r);
		if (last && r->outq.len && r->outq.len <= sizeof(chunk) - r->chunk_len) {
			/* Commands sent ahead (relay_queue_ahead) go in the same write as the dot. */
			relay_chunk_out(r, r->outq.v, r->outq.len);
			r->outq.len = 0;
		}
		if (wire != NULL) {
			uv_buf_t b[3] = { uv_buf_init(chunk, (unsigned)split), uv_buf_init((char *)wire, (unsigned)wire_len),
			    uv_buf_init(chunk + split, (unsigned)(r->chunk_len - split)) };
			if (relay_write_rawv(r, b, 3) != 0) {
				relay_fail(r, "write failed");
				return;
			}
		} else if (r->chunk_len && relay_write(r, chunk, r->chunk_len) != 0) {
			relay_fail(r, "write failed");
			return;
		}
		if (last && r->outq.len && relay_write(r, r->outq.v, r->outq.len) != 0) {
			r->outq.len = 0;
			relay_fail(r, "write failed");
			return;
		}
		if (last)
			r->outq.len = 0;
		if (last) {
			/* the reply's data_timeout runs once the queue is written (relay_data_watch) */
			r->state = RELAY_DATA_FINAL;
			relay_arm(r, relay_cfg(r)->data_timeout, "data_timeout");
			relay_data_look_soon(r);
			return;
		}
	}
}

void relay_send_message(struct relay *r, const char *prefix, size_t prefix_len, const char *body,
    size_t len, bool body_wire, int nrcpt, relay_data_fn cb, void *arg)
{
	r->prefix = prefix;
	r->prefix_len = prefix_len;
	r->body = body;
	r->body_len = len;
	r->body_wire = body_wire;
	r->data_cb = cb;
	r->arg = arg;
	relay_texts_clear(r);
	r->nrcpt = r->b->kind == BACKEND_LMTP ? (nrcpt > 0 ? (nrcpt > RELAY_LMTP_MAX_RCPT ? RELAY_LMTP_MAX_RCPT : nrcpt) : 1) : 1;
	r->nreplies = 0;
	if (r->nrcpt > r->reply_cap) {
		/* kept from one message to the next: allocated again only for more recipients */
		free(r->codes);
		free(r->texts);
		r->codes = calloc((size_t)r->nrcpt, sizeof(int));
		r->texts = calloc((size_t)r->nrcpt, sizeof(char *));
		r->reply_cap = r->codes && r->texts ? r->nrcpt : 0;
		if (r->reply_cap == 0) {
			free(r->codes);
			free(r->texts);
			r->codes = NULL;
			r->texts = NULL;
			relay_fail(r, "out of memory");
			return;
		}
	} else {
		memset(r->codes, 0, (size_t)r->nrcpt * sizeof(int));
	}
	r->clean = false;
	r->bdat = false;
	relay_take_data_ahead(r);
	if (r->data_refused) {
		/* DATA went early and was refused: that is the message's reply, as when the
		 * message waits for it (msg_waiting); no DATA again for the same answer. */
		int code = r->data_refused;

		r->data_refused = 0;
		r->state = RELAY_DATA_354;
		relay_on_reply(r, code, r->data_refused_text, strlen(r->data_refused_text));
		return;
	}
	if (r->data_open) {
		/* DATA went ahead with the last RCPT and got its 354: stream now. */
		r->data_open = false;
		r->state = RELAY_DATA_SEND;
		dotstuff_init(&r->ds);
		r->off = 0;
		relay_data_start(r);
		relay_pump(r);
		return;
	}
	if (r->data_queued) {
		/* ... and its reply is still on the way: the message waits for it. */
		r->msg_waiting = true;
		return;
	}
	r->bdat = (r->caps.bits & SMTP_CAP_CHUNKING) != 0;
	if (r->bdat) {
		/* RFC 3030: the content goes as one last chunk of its exact (normalised) size,
		 * no 354 to wait for, nothing to stuff: a dot inside means nothing. */
		snprintf(r->lead, sizeof(r->lead), "BDAT %llu LAST\r\n",
		    (unsigned long long)bdat_crlf_length(prefix, prefix_len, body, len));
		if (log_is_debug()) {
			char lv[1100];
			log_event(LOG_LVL_DEBUG, relay_log_id(r), "event=relay_send backend=%s line=%s", r->b->url,
			    log_valn(lv, sizeof(lv), r->lead, strlen(r->lead) - 2));
		}
		bdat_crlf_init(&r->crlf);
		r->off = 0;
		r->state = RELAY_DATA_SEND;
		relay_data_start(r);
		relay_pump(r);
		return;
	}
	r->state = RELAY_DATA_354;
	relay_send_line(r, "DATA");
}

void relay_set_owner(struct relay *r, struct relay **owner)
{
	r->owner = owner;
}

void relay_release(struct relay *r, bool reusable)
{
	/* kept for its session only when a session gives it back (not an open that completed
	 * after the session ended: no owner) */
	r->sess = r->owner ? r->sess : NULL;
	r->owner = NULL;
	r->sid[0] = '\0';
	if (r->state == RELAY_CLOSED)
		return;
	r->open_cb = NULL;
	r->data_cb = NULL;
	relay_cancel(r);
	/* Commands sent ahead and not taken over: unanswered ones keep the state busy (closed
	 * below), answered ones opened a transaction that the RSET below ends. */
	relay_ahead_clear(r);
	r->in_session = false;
	if (r->counted_active) {
		backend_active_add(r->b, -1);
		r->counted_active = false;
	}
	if (r->state != RELAY_READY || r->data_open) {
		/* Replies outstanding, or a DATA open at the backend (only a close aborts it
		 * without delivering): not reusable. */
		relay_close(r);
		return;
	}
	/* Behind proxy_v2 kept for its session only (relay_park), while that lasts: no other
	 * session can take it */
	bool pv2 = r->gen->cfg->backends.client_identity == IDENTITY_PROXY_V2;
	if (reusable && r->gen->cfg->backends.pool_size > 0 && (!pv2 || r->sess != NULL)) {
		if (r->clean) {
			/* The last transaction ended with its final reply: no RSET needed. */
			relay_disarm(r);
			relay_park(r);
			return;
		}
		/* Kept for the session once the reply is in (relay_park); relay_session_end
		 * finds it on w->resetting should the session end before. */
		if (r->sess != NULL) {
			r->next_idle = r->w->resetting;
			r->w->resetting = r;
			r->resetting = true;
		}
		if (pv2) {
			/* A client's RSET and the session's end (QUIT, a drop) both come here; an
			 * RSET now would tell a callout's backend its MAIL, RCPT, QUIT was a reset
			 * (Exim logs "incomplete transaction (QUIT)" for it). The session's next
			 * transaction sends it (relay_open_as), its end QUIT (relay_session_end). */
			relay_disarm(r);
			r->rset_deferred = true;
			return;
		}
		r->state = RELAY_RSET;
		relay_send_line(r, "RSET");
		return;
	}
	r->state = RELAY_QUIT;
	relay_send_line(r, "QUIT");
}

void relay_abort(struct relay *r)
{
	if (r == NULL)
		return;
	r->owner = NULL;
	r->in_session = false;
	relay_close(r);
}

void relay_sweep_vanished(struct worker *w)
{
	struct relay *q;

	/* each drop closes at least one (q) and leaves none of q->b's that vanished */
	do {
		for (q = w->idle; q != NULL && !relay_addr_vanished(q); q = q->next_idle)
			;
		if (q != NULL)
			relay_drop_idle_of(w, q->b, true);
	} while (q != NULL);
}

void relay_close_idle(struct worker *w)
{
	while (w->idle) {
		struct relay *r = w->idle;
		relay_unlink_idle(r);
		r->state = RELAY_QUIT;
		relay_send_line(r, "QUIT");
	}
}
