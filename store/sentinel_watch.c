/* sentinel_watch.c — a Redis store's `+switch-master` subscription, see sentinel_watch.h. */
#include "sentinel_watch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "proxy/log.h"

#define SW_BACKOFF_MIN_MS 1000u
#define SW_BACKOFF_MAX_MS 30000u
#define SW_UNPARSED_MAX (64u << 10)   /* a reply's octets not parsed yet, at most */
#define SW_CHANNEL "+switch-master"
/* A subscribed connection carries nothing until a failover: TCP keepalive finds a sentinel
 * gone without a reset (power loss, partition) in about SW_KA_IDLE + SW_KA_INTVL * SW_KA_CNT
 * seconds, then sw_lost tries the next one. */
#define SW_KA_IDLE 30
#define SW_KA_INTVL 10
#define SW_KA_CNT 3

/* IDLE: the back-off timer runs (or nothing: closing); RESOLVING: a job resolves the
 * sentinel's name; CONNECTING: TCP connect in progress; HANDSHAKE: AUTH and SUBSCRIBE sent,
 * the confirmation awaited; SUBSCRIBED: messages come. */
enum sw_state { SW_IDLE = 0, SW_RESOLVING, SW_CONNECTING, SW_HANDSHAKE, SW_SUBSCRIBED };

struct sw_conn {
	struct sentinel_watch *w;
	uv_poll_t poll;
	int fd;
	redisReader *reader;
	char out[1024];               /* AUTH and SUBSCRIBE, as RESP */
	size_t outlen, outoff;
	bool auth_pending;            /* the AUTH's reply comes first */
};

struct sentinel_watch {
	uv_loop_t *loop;
	struct redis_url spec;
	uint64_t timeout_ms;
	char store[REDIS_URL_SHOWN_MAX], module[32];
	int worker;
	sentinel_watch_switch_cb cb;
	void *arg;
	bool closing, timer_closed, resolving;
	enum sw_state state;
	int idx;                      /* the sentinel tried now */
	char name[300];               /* its "HOST:PORT" */
	uint64_t backoff_ms;
	bool last_bad;                /* the last connection ended on a bad reply: the next
	                               * confirmation does not reset the back-off */
	bool lost_logged;             /* the subscription's loss was logged (until the next) */
	uv_timer_t timer;             /* CONNECTING, HANDSHAKE: the deadline; IDLE: the retry */
	struct sw_conn *conn;         /* the live connection, or NULL */
	int nconns;                   /* connections not closed yet (their handles) */
	uint64_t connects, bad;
};

static void sw_attempt(struct sentinel_watch *w);

/* Letters, digits, '.', '-', '_', ':' only (a host name or an address literal). */
static bool sw_host_chars(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '_' ||
		    s[i] == ':'))
			return false;
	return true;
}

/* A port of 1..65535 written in decimal digits only. -1 when not. */
static int sw_port(const char *s, size_t len)
{
	long v = 0;

	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? (int)v : -1;
}

int sentinel_switch_parse(const char *msg, size_t len, const char *master, struct sentinel_switch *sw)
{
	const char *word[5];
	size_t wlen[5], i = 0;
	int n = 0;

	/* exactly five words, one space between (Sentinel writes "%s %s %d %s %d") */
	for (n = 0; n < 5; n++) {
		size_t start = i;

		if (n > 0) {
			if (i == len || msg[i] != ' ')
				return -1;
			start = ++i;    /* the space */
		}
		while (i < len && msg[i] != ' ')
			i++;
		if (i == start)
			return -1;
		word[n] = msg + start;
		wlen[n] = i - start;
	}
	if (i != len)
		return -1;
	for (int k = 0; k < 5; k++)
		if (memchr(word[k], '\0', wlen[k]) != NULL)
			return -1;
	if (wlen[1] >= sizeof(sw->old_host) || wlen[3] >= sizeof(sw->new_host) ||
	    !sw_host_chars(word[1], wlen[1]) || !sw_host_chars(word[3], wlen[3]) ||
	    sw_port(word[2], wlen[2]) < 0 || sw_port(word[4], wlen[4]) < 0)
		return -1;
	if (strlen(master) != wlen[0] || memcmp(master, word[0], wlen[0]) != 0)
		return 0;
	memcpy(sw->old_host, word[1], wlen[1]);
	sw->old_host[wlen[1]] = '\0';
	memcpy(sw->new_host, word[3], wlen[3]);
	sw->new_host[wlen[3]] = '\0';
	sw->old_port = sw_port(word[2], wlen[2]);
	sw->new_port = sw_port(word[4], wlen[4]);
	return 1;
}

/* ---- lifetime ---- */

static void sw_maybe_release(struct sentinel_watch *w)
{
	if (w->closing && w->timer_closed && w->nconns == 0 && !w->resolving)
		free(w);
}

static void sw_timer_close_cb(uv_handle_t *h)
{
	struct sentinel_watch *w = h->data;

	w->timer_closed = true;
	sw_maybe_release(w);
}

static void sw_conn_close_cb(uv_handle_t *h)
{
	struct sw_conn *c = h->data;
	struct sentinel_watch *w = c->w;

	close(c->fd);
	redisReaderFree(c->reader);
	free(c);
	w->nconns--;
	sw_maybe_release(w);
}

/* Closes the live connection (its memory goes in the close callback). */
static void sw_conn_close(struct sentinel_watch *w)
{
	struct sw_conn *c = w->conn;

	if (c == NULL)
		return;
	w->conn = NULL;
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, sw_conn_close_cb);
}

static void sw_timer_cb(uv_timer_t *t);
static void sw_poll_cb(uv_poll_t *h, int status, int events);

/* The subscription is lost or never came (reason; detail: a sentinel's reply text, or
 * NULL): logged once until the next confirmation, the next sentinel tried after back-off. */
static void sw_lost(struct sentinel_watch *w, const char *reason, bool bad, const char *detail)
{
	sw_conn_close(w);
	w->state = SW_IDLE;
	if (bad) {
		w->bad++;
		w->last_bad = true;
	}
	if (!w->lost_logged) {
		char rv[4 * 120 + 8];

		w->lost_logged = true;
		log_event(LOG_LVL_WARNING, NULL,
		    "event=redis_sentinel_lost store=%s worker=%d module=%s sentinel=%s reason=%s%s%s",
		    w->store, w->worker, w->module, w->name, reason, detail ? " reply=" : "",
		    detail ? log_valn(rv, sizeof(rv), detail, strnlen(detail, 120)) : "");
	}
	w->idx = (w->idx + 1) % w->spec.nsentinels;
	uv_timer_stop(&w->timer);
	uv_timer_start(&w->timer, sw_timer_cb, w->backoff_ms, 0);
	w->backoff_ms = w->backoff_ms * 2 > SW_BACKOFF_MAX_MS ? SW_BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void sw_timer_cb(uv_timer_t *t)
{
	struct sentinel_watch *w = t->data;

	if (w->closing)
		return;
	if (w->state == SW_CONNECTING || w->state == SW_HANDSHAKE)
		sw_lost(w, "timeout", false, NULL);
	else if (w->state == SW_IDLE)
		sw_attempt(w);
}

/* ---- replies ---- */

static bool sw_is_str(const redisReply *r, const char *s)
{
	return r->type == REDIS_REPLY_STRING && r->str && r->len == strlen(s) &&
	    memcmp(r->str, s, r->len) == 0;
}

/* One reply of the sentinel. 0, or -1 when the connection was closed for it. */
static int sw_reply(struct sentinel_watch *w, struct sw_conn *c, const redisReply *r)
{
	struct sentinel_switch sw;
	int rc;

	if (c->auth_pending) {
		/* a sentinel without requirepass refuses the AUTH: the SUBSCRIBE decides */
		c->auth_pending = false;
		if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
			return 0;
		sw_lost(w, "protocol", true, NULL);
		return -1;
	}
	if (w->state == SW_HANDSHAKE) {
		if (r->type == REDIS_REPLY_ERROR) {
			sw_lost(w, "refused", false, r->str);
			return -1;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
		    !sw_is_str(r->element[0], "subscribe") || !sw_is_str(r->element[1], SW_CHANNEL) ||
		    r->element[2]->type != REDIS_REPLY_INTEGER) {
			sw_lost(w, "protocol", true, NULL);
			return -1;
		}
		uv_timer_stop(&w->timer);
		w->state = SW_SUBSCRIBED;
		if (!w->last_bad)
			w->backoff_ms = SW_BACKOFF_MIN_MS;
		w->last_bad = false;
		w->lost_logged = false;
		log_event(LOG_LVL_INFO, NULL,
		    "event=redis_sentinel_subscribed store=%s worker=%d module=%s sentinel=%s",
		    w->store, w->worker, w->module, w->name);
		return 0;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !sw_is_str(r->element[0], "message") ||
	    !sw_is_str(r->element[1], SW_CHANNEL) || r->element[2]->type != REDIS_REPLY_STRING ||
	    (rc = sentinel_switch_parse(r->element[2]->str, r->element[2]->len, w->spec.master,
	    &sw)) < 0) {
		sw_lost(w, "protocol", true, NULL);
		return -1;
	}
	if (rc == 1 && w->cb)
		w->cb(w->arg, &sw, w->name);
	return 0;
}

/* Reads what the socket holds into the parser, then hands over each whole reply. */
static void sw_read(struct sentinel_watch *w, struct sw_conn *c)
{
	char buf[4096];
	ssize_t n = read(c->fd, buf, sizeof(buf));
	void *r;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		sw_lost(w, n == 0 ? "closed" : "connection_lost", false, NULL);
		return;
	}
	if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
		sw_lost(w, "out_of_memory", false, NULL);
		return;
	}
	for (;;) {
		r = NULL;
		if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
			/* not RESP, or over redis_reader_bound's sizes */
			sw_lost(w, "protocol", true, NULL);
			return;
		}
		if (r == NULL)
			break;
		if (sw_reply(w, c, r) < 0) {
			freeReplyObject(r);
			return;
		}
		freeReplyObject(r);
		if (w->closing || w->conn != c)
			return;
	}
	if (c->reader->len - c->reader->pos > SW_UNPARSED_MAX)
		sw_lost(w, "reply_too_large", true, NULL);
}

/* Writes what is left of the handshake; 0, or -1 when the connection was closed. */
static int sw_write(struct sentinel_watch *w, struct sw_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		if (n <= 0) {
			sw_lost(w, "connection_lost", false, NULL);
			return -1;
		}
		c->outoff += (size_t)n;
	}
	uv_poll_start(&c->poll, c->outoff < c->outlen ? UV_READABLE | UV_WRITABLE : UV_READABLE,
	    sw_poll_cb);
	return 0;
}

static void sw_poll_cb(uv_poll_t *h, int status, int events)
{
	struct sw_conn *c = h->data;
	struct sentinel_watch *w = c->w;

	if (w->closing || w->conn != c)
		return;
	if (w->state == SW_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (status < 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			sw_lost(w, "connect_failed", false, NULL);
			return;
		}
		if (!(events & UV_WRITABLE))
			return;
		w->connects++;
		w->state = SW_HANDSHAKE;
		events &= ~UV_WRITABLE;
		if (sw_write(w, c) < 0)
			return;
	}
	if (status < 0) {
		sw_lost(w, "connection_lost", false, NULL);
		return;
	}
	if (events & UV_WRITABLE) {
		if (sw_write(w, c) < 0)
			return;
	}
	if (events & UV_READABLE)
		sw_read(w, c);
}

/* ---- connecting ---- */

/* Appends one RESP command of argc words to c->out; -1 when it does not fit. */
static int sw_out_cmd(struct sw_conn *c, int argc, const char **argv)
{
	int n = snprintf(c->out + c->outlen, sizeof(c->out) - c->outlen, "*%d\r\n", argc);

	if (n < 0 || (size_t)n >= sizeof(c->out) - c->outlen)
		return -1;
	c->outlen += (size_t)n;
	for (int i = 0; i < argc; i++) {
		n = snprintf(c->out + c->outlen, sizeof(c->out) - c->outlen, "$%zu\r\n%s\r\n",
		    strlen(argv[i]), argv[i]);
		if (n < 0 || (size_t)n >= sizeof(c->out) - c->outlen)
			return -1;
		c->outlen += (size_t)n;
	}
	return 0;
}

/* The sentinel's deadline for a connect and its handshake. */
static uint64_t sw_deadline_ms(const struct sentinel_watch *w)
{
	return w->timeout_ms * 5 < 1000 ? 1000 : w->timeout_ms * 5;
}

static void sw_connect(struct sentinel_watch *w, const struct sockaddr *sa, socklen_t salen)
{
	struct sw_conn *c = calloc(1, sizeof(*c));
	const char *sub[2] = { "SUBSCRIBE", SW_CHANNEL };

	if (c == NULL) {
		sw_lost(w, "out_of_memory", false, NULL);
		return;
	}
	c->w = w;
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->reader = redisReaderCreate();
	if (c->fd < 0 || c->reader == NULL) {
		if (c->fd >= 0)
			close(c->fd);
		redisReaderFree(c->reader);
		free(c);
		sw_lost(w, "out_of_memory", false, NULL);
		return;
	}
	redis_reader_bound(c->reader);
	{
		int on = 1, idle = SW_KA_IDLE, intvl = SW_KA_INTVL, cnt = SW_KA_CNT;

		(void)setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	if (w->spec.password[0]) {
		const char *auth[3] = { "AUTH", w->spec.user[0] ? w->spec.user : w->spec.password,
		    w->spec.password };

		sw_out_cmd(c, w->spec.user[0] ? 3 : 2, auth);      /* 128 + 128 octets: fits */
		c->auth_pending = true;
	}
	sw_out_cmd(c, 2, sub);
	if (uv_poll_init_socket(w->loop, &c->poll, c->fd) != 0) {
		close(c->fd);
		redisReaderFree(c->reader);
		free(c);
		sw_lost(w, "attach_failed", false, NULL);
		return;
	}
	uv_unref((uv_handle_t *)&c->poll);   /* the watch keeps no draining loop alive */
	c->poll.data = c;
	w->conn = c;
	w->nconns++;
	w->state = SW_CONNECTING;
	uv_timer_stop(&w->timer);
	uv_timer_start(&w->timer, sw_timer_cb, sw_deadline_ms(w), 0);
	if (connect(c->fd, sa, salen) != 0 && errno != EINPROGRESS) {
		sw_lost(w, "connect_failed", false, NULL);
		return;
	}
	uv_poll_start(&c->poll, UV_WRITABLE, sw_poll_cb);
}

/* The sentinel's name, resolved on a thread of its own (redis_store_job_start). */
struct sw_resolve {
	struct sentinel_watch *w;
	char host[256];
	int port, rc;
	struct sockaddr_storage sa;
	socklen_t salen;
};

static void sw_resolve_work(void *arg)
{
	struct sw_resolve *j = arg;
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	j->rc = getaddrinfo(j->host, NULL, &hints, &res);
	if (j->rc == 0 && res && res->ai_addrlen <= sizeof(j->sa)) {
		memcpy(&j->sa, res->ai_addr, res->ai_addrlen);
		j->salen = res->ai_addrlen;
		if (j->sa.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&j->sa)->sin6_port = htons((uint16_t)j->port);
		else
			((struct sockaddr_in *)&j->sa)->sin_port = htons((uint16_t)j->port);
	} else {
		j->rc = -1;
	}
	if (res)
		freeaddrinfo(res);
}

static void sw_resolve_done(void *arg)
{
	struct sw_resolve *j = arg;
	struct sentinel_watch *w = j->w;

	w->resolving = false;
	if (w->closing) {
		free(j);
		sw_maybe_release(w);
		return;
	}
	if (j->rc != 0)
		sw_lost(w, "no_address", false, NULL);
	else
		sw_connect(w, (struct sockaddr *)&j->sa, j->salen);
	free(j);
}

/* Connects to the sentinel idx (an address literal at once, a name through a job). */
static void sw_attempt(struct sentinel_watch *w)
{
	const struct redis_addr *a = &w->spec.sentinels[w->idx];
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	struct sw_resolve *j;

	snprintf(w->name, sizeof(w->name), "%s%s%s:%d", strchr(a->host, ':') ? "[" : "", a->host,
	    strchr(a->host, ':') ? "]" : "", a->port);
	if (uv_ip4_addr(a->host, a->port, &s4) == 0) {
		sw_connect(w, (struct sockaddr *)&s4, sizeof(s4));
		return;
	}
	if (uv_ip6_addr(a->host, a->port, &s6) == 0) {
		sw_connect(w, (struct sockaddr *)&s6, sizeof(s6));
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		sw_lost(w, "out_of_memory", false, NULL);
		return;
	}
	j->w = w;
	snprintf(j->host, sizeof(j->host), "%s", a->host);
	j->port = a->port;
	w->state = SW_RESOLVING;
	w->resolving = true;
	if (redis_store_job_start(w->loop, sw_resolve_work, sw_resolve_done, j) < 0) {
		w->resolving = false;
		free(j);
		sw_lost(w, "no_thread", false, NULL);
	}
}

struct sentinel_watch *sentinel_watch_new(uv_loop_t *loop, const struct redis_url *u,
    uint64_t timeout_ms, const char *store, const char *module, int worker,
    sentinel_watch_switch_cb cb, void *arg)
{
	struct sentinel_watch *w;

	if (u == NULL || !u->sentinel || u->nsentinels < 1 || (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->loop = loop;
	w->spec = *u;
	w->timeout_ms = timeout_ms ? timeout_ms : 200;
	snprintf(w->store, sizeof(w->store), "%s", store ? store : "?");
	sentinel_watch_set_module(w, module);
	w->worker = worker;
	w->cb = cb;
	w->arg = arg;
	w->backoff_ms = SW_BACKOFF_MIN_MS;
	uv_timer_init(loop, &w->timer);
	uv_unref((uv_handle_t *)&w->timer);
	w->timer.data = w;
	sw_attempt(w);
	return w;
}

void sentinel_watch_set_module(struct sentinel_watch *w, const char *module)
{
	snprintf(w->module, sizeof(w->module), "%s", module ? module : "redis");
}

void sentinel_watch_free(struct sentinel_watch *w)
{
	if (w == NULL)
		return;
	w->closing = true;
	w->cb = NULL;
	sw_conn_close(w);
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, sw_timer_close_cb);
}

bool sentinel_watch_is_subscribed(const struct sentinel_watch *w)
{
	return w && w->state == SW_SUBSCRIBED;
}

void sentinel_watch_stats(const struct sentinel_watch *w, uint64_t *connects, uint64_t *bad_replies)
{
	if (connects)
		*connects = w->connects;
	if (bad_replies)
		*bad_replies = w->bad;
}
