/* redis.c — the Redis store: async hiredis on a libuv loop with per-request timeouts, see
 * redis.h. */
#include "redis.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "proxy/log.h"
#include "sentinel_watch.h"
#include "store_stats.h"

#define RS_MAX_SCRIPTS 8
#define RS_BACKOFF_MIN_MS 1000u
#define RS_BACKOFF_MAX_MS 30000u
#define RS_WQ_MAX 10000u                /* writes held per store (redis_store_set_queue_limit) */
#define RS_WQ_MAX_BYTES (16u << 20)     /* ... and their bytes */
#define RS_WQ_WINDOW 64u                /* writes sent and not answered, at most */
#define RS_WRITE_STRIKES 3u             /* deadlines a write may miss before it is given up */
#define RS_LOG_EVERY_MS 60000u
#define RS_REPLY_MAX_ELEMENTS 65536     /* of one reply array (SCAN COUNT 200, a script's) */
#define RS_REPLY_MAX_BYTES (8u << 20)   /* one bulk string; a reply's bytes not parsed yet */
#define RS_JOB_STEPS 8u                 /* a job's Redis work in all: 8 x its timeout ... */
#define RS_JOB_MIN_MS 2000u             /* ... at least 2 s (a greylist list's 1 s budget and a step) */

/* CONNECTING: TCP connect in progress; HANDSHAKE: connected, AUTH/SELECT/SCRIPT LOAD and a
 * PING sent, up once the PING is answered (a frozen server's kernel completes the TCP
 * handshake from its listen backlog: a connect alone says nothing); UP: answering. */
enum rs_state { RS_DOWN = 0, RS_CONNECTING, RS_HANDSHAKE, RS_UP };

struct rs_script { const char *src; char sha[41]; };

struct redis_store {
	uv_loop_t *loop;
	char url[REDIS_URL_SHOWN_MAX];  /* for logs, without the password */
	struct redis_url spec;        /* as configured: redis:// or redis-sentinel:// */
	bool resolving;               /* a Sentinel job asks for the master (rs_resolve_start) */
	bool resolved;                /* host:port is a Sentinel's fresh answer, not tried yet */
	bool unusable_seen;           /* a drop for READONLY/MASTERDOWN/LOADING since the last
	                               * good reply: a handshake alone does not reset the backoff
	                               * (a server whose ACL refuses ROLE: PING passes, the next
	                               * write is refused again) */
	char host[256];               /* the server (Sentinel: the master last named) */
	char user[128];               /* a Redis 6 ACL user (redis://USER:PASSWORD@...), or "" */
	char password[128];
	int port, db, worker;
	uint64_t timeout_ms;
	redisAsyncContext *ac;        /* NULL when no connection (attempt) exists */
	enum rs_state state;
	bool down_logged;             /* an outage is in progress and was logged */
	bool closing;
	uint64_t backoff_ms;
	uv_timer_t timer;             /* CONNECTING, HANDSHAKE: their deadline; DOWN: retry */
	struct rs_script scripts[RS_MAX_SCRIPTS];
	int nscripts;
	uint64_t sent, timeouts, failfast;
	struct log_rated write_err_rated; /* write error replies: logged once a minute */
	/* the write queue (redis_store_write): oldest first, sent while up, RS_WQ_WINDOW at a
	 * time; a write whose reply never came goes back in by its seq */
	char name[32];                /* its user, for logs and the metric label */
	struct store_stats *stats;
	struct redis_req *wq_head, *wq_tail;
	size_t wq_n, wq_bytes, wq_max;
	unsigned w_inflight;          /* writes hiredis holds */
	uint64_t w_seq, w_retried, w_dropped;
	struct log_rated drop_rated;  /* dropped writes: logged once a minute */
	struct redis_req *inflight;   /* every request hiredis holds (reads and writes) */
	struct redis_req *pend_head, *pend_tail; /* reads waiting for the first connect */
	size_t npend;
	uint64_t start_seq;           /* the last write issued before the connection came up (a
	                               * first connect, the end of an outage): a read while such
	                               * writes are still queued waits */
	bool timer_closed;
	struct redis_store *reg_next; /* the registry of open stores (siblings for a hand-over) */
	struct sentinel_watch *watch; /* redis-sentinel://: the +switch-master subscription */
	bool switch_reask;            /* a switch came while the sentinels were asked: again */
	uint64_t switches;            /* +switch-master messages for our master taken */
	redis_store_up_cb up_cb;      /* told at every connection that comes up */
	void *up_arg;
};

struct redis_req {
	struct redis_store *rs;
	uv_timer_t timer;
	bool live;                    /* false once completed, timed out or cancelled */
	redis_store_reply_cb cb;      /* the reply goes here ... */
	redis_store_done_cb done;     /* ... or only whether a write was applied */
	void *arg;
	bool in_hiredis;              /* hiredis still holds privdata = this */
	bool timer_open;
	bool retried;                 /* EVAL already sent after NOSCRIPT */
	bool write;                   /* from redis_store_write: queued, resent when lost */
	bool pending;                 /* a read waiting in rs->pend_head for the first connect */
	bool waited;                  /* sent after waiting: with what was left of its deadline */
	bool forgotten;               /* of a write sent: its keys were forgotten, never resent */
	int key_first, nkeys;         /* of a write: its keys are argv[key_first ...] */
	char nk[12];                  /* of a script write whose keys were cut: the new count */
	unsigned strikes;             /* of a write: its own deadline passed this often */
	uint64_t seq;                 /* of a write, of a read waiting for the first connect: its
	                               * place in the order of issue (rs_wq_pump) */
	size_t bytes;                 /* of its words */
	struct redis_req *next;       /* in the write queue */
	struct redis_req *iprev, *inext; /* in rs->inflight, or (pending) rs->pend_head */
	const char *src;              /* the script's text for the EVAL fallback, or NULL */
	int argc;
	char **argv;                  /* copies, for the EVAL fallback and resends */
	size_t *argvlen;
};

/* Starts a non-blocking connect with a deadline; on immediate failure the store is down. */
static void rs_connect(struct redis_store *rs);
static void rs_req_complete(struct redis_req *req, const redisReply *reply);
static struct redis_req *rs_wq_pop(struct redis_store *rs);
static void rs_wq_pump(struct redis_store *rs);
static void rs_write_orphan(struct redis_store *rs, struct redis_req *req);
static void rs_pending_fail(struct redis_store *rs);
static void rs_pending_unlink(struct redis_store *rs, struct redis_req *req);
static void rs_switch_cb(void *arg, const struct sentinel_switch *sw, const char *sentinel);
static void rs_resolve_start(struct redis_store *rs);

/* ---- bounded replies ------------------------------------------------------------------
 * hiredis takes a reply's size from the server: "*N" allocates N element pointers at once,
 * and "$N" buffers up to 512 MB before the string is made. A reader of ours refuses an
 * array of more than RS_REPLY_MAX_ELEMENTS and a string longer than RS_REPLY_MAX_BYTES (an
 * out-of-memory error: the connection is dropped), and an async connection holding more
 * than RS_REPLY_MAX_BYTES not parsed yet is dropped (redis_down reason=reply_too_large). */

static redisReplyObjectFunctions *rs_default_fns, rs_bounded_fns;
static pthread_once_t rs_fns_once = PTHREAD_ONCE_INIT;

static void *rs_create_string(const redisReadTask *t, char *str, size_t len)
{
	return len > RS_REPLY_MAX_BYTES ? NULL : rs_default_fns->createString(t, str, len);
}

static void *rs_create_array(const redisReadTask *t, int elements)
{
	return elements < 0 || elements > RS_REPLY_MAX_ELEMENTS ? NULL :
	    rs_default_fns->createArray(t, elements);
}

static void rs_fns_init(void)
{
	redisReader *r = redisReaderCreate();   /* hiredis's own functions: static, not freed */

	if (r == NULL)
		return;
	rs_default_fns = r->fn;
	redisReaderFree(r);
	rs_bounded_fns = *rs_default_fns;
	rs_bounded_fns.createString = rs_create_string;
	rs_bounded_fns.createArray = rs_create_array;
}

void redis_reader_bound(redisReader *r)
{
	pthread_once(&rs_fns_once, rs_fns_init);
	if (r && rs_default_fns)
		r->fn = &rs_bounded_fns;
}

void redis_store_bound_reader(redisContext *c)
{
	if (c)
		redis_reader_bound(c->reader);
}

/* ---- blocking connections: hiredis's redisGetReply, bounded -------------------------- */

static uint64_t rs_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int rs_sync_fail(redisContext *c, const char *why)
{
	c->err = REDIS_ERR_PROTOCOL;
	snprintf(c->errstr, sizeof(c->errstr), "%s", why);
	return REDIS_ERR;
}

/* A job's thread (redis_store_job_start): one deadline for all its Redis work, set by its
 * first redis_store_connect_sync (RS_JOB_STEPS x that timeout, at least RS_JOB_MIN_MS), so
 * a Redis answering each step just within the timeout cannot stretch a verb to steps x
 * timeout; rs_job_step names the command waited for. Other threads (the classifier's pool
 * jobs) have none. */
static _Thread_local bool rs_job_thread;
static _Thread_local uint64_t rs_job_deadline, rs_job_total_ms, rs_job_timeout_ms;
static _Thread_local char rs_job_step[16];

static void rs_job_step_set(const char *word, size_t len)
{
	size_t n = 0;

	while (n < len && n + 1 < sizeof(rs_job_step) && word[n] && word[n] != ' ')
		n++;
	memcpy(rs_job_step, word, n);
	rs_job_step[n] = '\0';
}

/* The job's deadline passed (now or during the wait): said with the step. REDIS_ERR. */
static int rs_sync_deadline_fail(redisContext *c)
{
	c->err = REDIS_ERR_IO;
	snprintf(c->errstr, sizeof(c->errstr), "no reply%s%s within the verb's deadline (%llu ms in "
	    "all: %u x the %llu ms timeout)", rs_job_step[0] ? " to " : "", rs_job_step,
	    (unsigned long long)rs_job_total_ms, RS_JOB_STEPS,
	    (unsigned long long)rs_job_timeout_ms);
	return REDIS_ERR;
}

/* The socket's waits cut to what is left of the job's deadline (the step's timeout when
 * less). -1 when nothing is left. */
static int rs_job_bound(redisContext *c, uint64_t limit)
{
	uint64_t now = rs_mono_ms(), left;
	struct timeval tv;

	if (rs_job_deadline == 0)
		return 0;
	if (now >= rs_job_deadline)
		return -1;
	left = rs_job_deadline - now;
	if (limit && limit <= left)
		left = limit;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000 * 1000);
	if (c->fd >= 0) {
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return 0;
}

static bool rs_job_passed(void)
{
	return rs_job_deadline && rs_mono_ms() >= rs_job_deadline;
}

/* A read or write that failed: one that ran out of the socket's timeout is said as such
 * (hiredis leaves strerror(EAGAIN), "Resource temporarily unavailable", which an operator
 * cannot read as "Redis did not answer"). REDIS_ERR. */
static int rs_sync_io_fail(redisContext *c, uint64_t limit)
{
	if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->err = REDIS_ERR_IO;
		snprintf(c->errstr, sizeof(c->errstr), "no reply within %llu ms (timeout)",
		    (unsigned long long)limit);
	}
	return REDIS_ERR;
}

int redis_store_sync_reply(redisContext *c, redisReply **reply)
{
	uint64_t t0 = rs_mono_ms(), limit = 0;
	void *aux = NULL;
	int wdone = 0;

	*reply = NULL;
	if (c->timeout)
		limit = (uint64_t)c->timeout->tv_sec * 1000 + (uint64_t)c->timeout->tv_usec / 1000;
	if (redisGetReplyFromReader(c, &aux) != REDIS_OK)
		return REDIS_ERR;
	if (aux == NULL) {
		if (rs_job_bound(c, limit) < 0)
			return rs_sync_deadline_fail(c);
		do {
			if (redisBufferWrite(c, &wdone) != REDIS_OK)
				return rs_job_passed() ? rs_sync_deadline_fail(c) : rs_sync_io_fail(c, limit);
		} while (!wdone);
	}
	while (aux == NULL) {
		/* each read waits at most the socket's timeout; the bounds are checked between */
		if (rs_job_bound(c, limit) < 0)
			return rs_sync_deadline_fail(c);
		if (redisBufferRead(c) != REDIS_OK)
			return rs_job_passed() ? rs_sync_deadline_fail(c) : rs_sync_io_fail(c, limit);
		if (c->reader->len - c->reader->pos > RS_REPLY_MAX_BYTES)
			return rs_sync_fail(c, "reply too large");
		if (redisGetReplyFromReader(c, &aux) != REDIS_OK)
			return REDIS_ERR;
		if (aux == NULL && limit && rs_mono_ms() - t0 > limit)
			return rs_sync_fail(c, "reply too slow");
	}
	*reply = aux;
	return REDIS_OK;
}

redisReply *redis_store_sync_command(redisContext *c, const char *fmt, ...)
{
	redisReply *r = NULL;
	va_list ap;
	int rc;

	rs_job_step_set(fmt, strlen(fmt));
	va_start(ap, fmt);
	rc = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK || redis_store_sync_reply(c, &r) != REDIS_OK)
		return NULL;
	return r;
}

redisReply *redis_store_sync_argv(redisContext *c, int argc, const char **argv,
    const size_t *argvlen)
{
	redisReply *r = NULL;

	if (argc > 0)
		rs_job_step_set(argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
	if (redisAppendCommandArgv(c, argc, argv, argvlen) != REDIS_OK ||
	    redis_store_sync_reply(c, &r) != REDIS_OK)
		return NULL;
	return r;
}

/* Whether an async connection holds more of a reply than a reply may be. */
static bool rs_reply_too_large(const redisAsyncContext *ac)
{
	return ac->c.reader && ac->c.reader->len - ac->c.reader->pos > RS_REPLY_MAX_BYTES;
}

static void rs_fail(struct redis_store *rs, const char *reason);

/* ---- the registry of open stores -----------------------------------------------------
 * When a store is freed (a reload made a new one, the module is going) while writes wait
 * for an outage to end, they are handed to a sibling: an open store on the same loop for
 * the same server, preferably of the same user. Only stores of the calling thread's loop
 * are ever picked, so the lock guards the list alone. */

static pthread_mutex_t rs_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct redis_store *rs_reg;

static void rs_registry_add(struct redis_store *rs)
{
	pthread_mutex_lock(&rs_reg_lock);
	rs->reg_next = rs_reg;
	rs_reg = rs;
	pthread_mutex_unlock(&rs_reg_lock);
}

static void rs_registry_del(struct redis_store *rs)
{
	pthread_mutex_lock(&rs_reg_lock);
	for (struct redis_store **pp = &rs_reg; *pp; pp = &(*pp)->reg_next)
		if (*pp == rs) {
			*pp = rs->reg_next;
			break;
		}
	pthread_mutex_unlock(&rs_reg_lock);
}

/* An open store on rs's loop for rs's server (same name first), or NULL. */
static struct redis_store *rs_registry_sibling(const struct redis_store *rs)
{
	struct redis_store *best = NULL;

	pthread_mutex_lock(&rs_reg_lock);
	for (struct redis_store *o = rs_reg; o; o = o->reg_next) {
		if (o == rs || o->closing || o->loop != rs->loop || strcmp(o->url, rs->url) != 0 ||
		    strcmp(o->user, rs->user) != 0 || strcmp(o->password, rs->password) != 0)
			continue;
		if (best == NULL || strcmp(o->name, rs->name) == 0)
			best = o;
	}
	pthread_mutex_unlock(&rs_reg_lock);
	return best;
}

/* ---- hiredis on libuv ---------------------------------------------------------------------
 * Our own adapter instead of hiredis/adapters/libuv.h (0.14), which ignores poll errors: a
 * refused connect or a reset socket then went unnoticed until a request timed out. Here a
 * poll error is handed to hiredis, which finds the socket error and fails the connect or
 * drops the connection at once. */

struct rs_ev {
	redisAsyncContext *ac;        /* NULL once hiredis cleaned up */
	uv_poll_t poll;
	int events;
};

/* Socket readiness (or a poll error) for hiredis; the context may vanish during a call. */
static void rs_ev_poll_cb(uv_poll_t *h, int status, int events)
{
	struct rs_ev *e = h->data;

	if (e->ac == NULL)
		return;
	if (status < 0) {
		/* libuv stopped the handle; hiredis reads SO_ERROR / the failing read. */
		if (!(e->ac->c.flags & REDIS_CONNECTED))
			redisAsyncHandleWrite(e->ac);
		else
			redisAsyncHandleRead(e->ac);
		return;
	}
	if (events & UV_READABLE) {
		redisAsyncHandleRead(e->ac);
		if (e->ac && e->ac->data && rs_reply_too_large(e->ac))
			rs_fail(e->ac->data, "reply_too_large");
	}
	if (e->ac && (events & UV_WRITABLE))
		redisAsyncHandleWrite(e->ac);
}

/* Re-arms the poll handle with the events hiredis currently wants. */
static void rs_ev_update(struct rs_ev *e)
{
	if (e->events)
		uv_poll_start(&e->poll, e->events, rs_ev_poll_cb);
	else
		uv_poll_stop(&e->poll);
}

static void rs_ev_add_read(void *d) { struct rs_ev *e = d; e->events |= UV_READABLE; rs_ev_update(e); }
static void rs_ev_del_read(void *d) { struct rs_ev *e = d; e->events &= ~UV_READABLE; rs_ev_update(e); }
static void rs_ev_add_write(void *d) { struct rs_ev *e = d; e->events |= UV_WRITABLE; rs_ev_update(e); }
static void rs_ev_del_write(void *d) { struct rs_ev *e = d; e->events &= ~UV_WRITABLE; rs_ev_update(e); }

/* Frees the adapter state once libuv is done with the handle. */
static void rs_ev_close_cb(uv_handle_t *h)
{
	free(h->data);
}

/* hiredis is freeing the context: forget it and close the poll handle. */
static void rs_ev_cleanup(void *d)
{
	struct rs_ev *e = d;

	e->ac = NULL;
	uv_close((uv_handle_t *)&e->poll, rs_ev_close_cb);
}

/* Hooks ac into loop; REDIS_OK, or REDIS_ERR (nothing attached, ac untouched). */
static int rs_ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct rs_ev *e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof(*e))) == NULL)
		return REDIS_ERR;
	if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
		free(e);
		return REDIS_ERR;
	}
	/* Neither the idle connection nor the reconnect timer keeps a draining loop alive
	 * (outstanding requests do, through their timers). */
	uv_unref((uv_handle_t *)&e->poll);
	e->ac = ac;
	e->poll.data = e;
	ac->ev.data = e;
	ac->ev.addRead = rs_ev_add_read;
	ac->ev.delRead = rs_ev_del_read;
	ac->ev.addWrite = rs_ev_add_write;
	ac->ev.delWrite = rs_ev_del_write;
	ac->ev.cleanup = rs_ev_cleanup;
	return REDIS_OK;
}

/* HOST[:PORT] or [V6][:PORT] from p to end into host and *port (defport when none). 0 or -1. */
static int rs_parse_hostport(const char *p, const char *end, char *host, size_t hostlen,
    int *port, int defport)
{
	const char *colon;
	size_t n;
	char *e;
	long v;

	*port = defport;
	if (p < end && *p == '[') {           /* [v6]:port */
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (rb == NULL)
			return -1;
		n = (size_t)(rb - p - 1);
		if (n == 0 || n >= hostlen)
			return -1;
		memcpy(host, p + 1, n);
		host[n] = '\0';
		if (rb + 1 != end && rb[1] != ':')
			return -1;
		colon = rb + 1 != end ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		n = (size_t)((colon ? colon : end) - p);
		if (n == 0 || n >= hostlen)
			return -1;
		memcpy(host, p, n);
		host[n] = '\0';
	}
	if (colon) {
		v = strtol(colon + 1, &e, 10);
		if (e != end || colon + 1 == end || v < 1 || v > 65535)
			return -1;
		*port = (int)v;
	}
	return 0;
}

/* A database number from p (the rest of the URL, after its '/'): "" is 0. 0 or -1. */
static int rs_parse_db(const char *p, int *db)
{
	char *e;
	long v;

	*db = 0;
	if (*p == '\0')
		return 0;
	v = strtol(p, &e, 10);
	if (*e || v < 0 || v > 1000000)
		return -1;
	*db = (int)v;
	return 0;
}

int redis_url_parse(const char *url, struct redis_url *u)
{
	const char *p, *at, *end;
	size_t n;

	memset(u, 0, sizeof(*u));
	if (url == NULL)
		return -1;
	if (strncmp(url, "redis://", 8) == 0) {
		p = url + 8;
	} else if (strncmp(url, "redis-sentinel://", 17) == 0) {
		p = url + 17;
		u->sentinel = true;
	} else {
		return -1;
	}
	at = strchr(p, '@');
	if (at) {                             /* [USER]:PASSWORD@ or PASSWORD@ */
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *pw = colon ? colon + 1 : p;

		n = (size_t)(at - pw);
		if (n >= sizeof(u->password))
			return -1;
		memcpy(u->password, pw, n);
		u->password[n] = '\0';
		if (colon && colon > p && (size_t)(colon - p) < sizeof(u->user)) {
			memcpy(u->user, p, (size_t)(colon - p));
			u->user[colon - p] = '\0';
		}
		p = at + 1;
	}
	end = p + strcspn(p, "/");
	if (!u->sentinel) {
		if (rs_parse_hostport(p, end, u->host, sizeof(u->host), &u->port, 6379) < 0)
			return -1;
		return *end == '/' ? rs_parse_db(end + 1, &u->db) : 0;
	}
	/* HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB] */
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		struct redis_addr *a;

		if (u->nsentinels >= REDIS_SENTINELS_MAX)
			return -1;
		a = &u->sentinels[u->nsentinels];
		if (rs_parse_hostport(p, stop, a->host, sizeof(a->host), &a->port, 26379) < 0)
			return -1;
		u->nsentinels++;
		p = comma ? comma + 1 : end;
		if (comma && p == end)
			return -1;                    /* a trailing comma */
	}
	if (u->nsentinels == 0 || *end != '/')
		return -1;
	p = end + 1;
	end = p + strcspn(p, "/");
	n = (size_t)(end - p);
	if (n == 0 || n >= sizeof(u->master))
		return -1;
	for (const char *c = p; c < end; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return -1;                    /* a name Sentinel's protocol can carry */
	memcpy(u->master, p, n);
	u->master[n] = '\0';
	return *end == '/' ? rs_parse_db(end + 1, &u->db) : 0;
}

void redis_url_shown(const struct redis_url *u, char *buf, size_t cap)
{
	size_t off;

	if (!u->sentinel) {
		snprintf(buf, cap, "redis://%s%s%s:%d/%d", strchr(u->host, ':') ? "[" : "", u->host,
		    strchr(u->host, ':') ? "]" : "", u->port, u->db);
		return;
	}
	off = (size_t)snprintf(buf, cap, "redis-sentinel://");
	for (int i = 0; i < u->nsentinels && off < cap; i++) {
		const struct redis_addr *a = &u->sentinels[i];

		off += (size_t)snprintf(buf + off, cap - off, "%s%s%s%s:%d", i ? "," : "",
		    strchr(a->host, ':') ? "[" : "", a->host, strchr(a->host, ':') ? "]" : "", a->port);
	}
	if (off < cap)
		snprintf(buf + off, cap - off, "/%s/%d", u->master, u->db);
}

int redis_store_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db,
    char *password, size_t pwlen)
{
	struct redis_url u;

	if (password && pwlen)
		password[0] = '\0';
	if (redis_url_parse(url, &u) < 0 || u.sentinel || strlen(u.host) >= hostlen ||
	    (u.password[0] && (password == NULL || strlen(u.password) >= pwlen)))
		return -1;
	snprintf(host, hostlen, "%s", u.host);
	*port = u.port;
	*db = u.db;
	if (password && pwlen)
		snprintf(password, pwlen, "%s", u.password);
	return 0;
}

bool redis_url_is_store(const char *spec)
{
	struct redis_url u;

	return redis_url_parse(spec, &u) == 0;
}

struct redis_store *redis_store_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms,
    int worker)
{
	struct redis_store *rs = calloc(1, sizeof(*rs));

	if (rs == NULL)
		return NULL;
	if (redis_url_parse(url, &rs->spec) < 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=redis_error store=? reason=bad_url");
		free(rs);
		return NULL;
	}
	/* The user (AUTH names it, else the password would go to the default user) */
	snprintf(rs->host, sizeof(rs->host), "%s", rs->spec.host);
	snprintf(rs->user, sizeof(rs->user), "%s", rs->spec.user);
	snprintf(rs->password, sizeof(rs->password), "%s", rs->spec.password);
	rs->port = rs->spec.port;
	rs->db = rs->spec.db;
	redis_url_shown(&rs->spec, rs->url, sizeof(rs->url));
	rs->loop = loop;
	rs->worker = worker;
	rs->timeout_ms = timeout_ms ? timeout_ms : 200;
	rs->backoff_ms = RS_BACKOFF_MIN_MS;
	rs->wq_max = RS_WQ_MAX;
	redis_store_set_name(rs, "redis");
	uv_timer_init(loop, &rs->timer);
	uv_unref((uv_handle_t *)&rs->timer);
	rs->timer.data = rs;
	rs_registry_add(rs);
	if (rs->spec.sentinel)
		rs->watch = sentinel_watch_new(loop, &rs->spec, rs->timeout_ms, rs->url, rs->name,
		    worker, rs_switch_cb, rs);
	rs_connect(rs);
	return rs;
}

/* ---- blocking work on a thread of its own (redis_store_job_start) ---- */

struct redis_job {
	uv_async_t async;               /* on the loop: work has returned */
	uv_thread_t thread;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

static void redis_job_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

/* The job's thread: nothing of j is touched after the send (the loop may free it). */
static void redis_job_main(void *p)
{
	struct redis_job *j = p;

	rs_job_thread = true;           /* its deadline starts at its first connect */
	rs_job_deadline = 0;
	j->work(j->arg);
	uv_async_send(&j->async);
}

static void redis_job_done_cb(uv_async_t *a)
{
	struct redis_job *j = a->data;

	uv_thread_join(&j->thread);     /* it has sent: only its return is left */
	j->done(j->arg);
	uv_close((uv_handle_t *)&j->async, redis_job_closed_cb);
}

int redis_store_job_start(uv_loop_t *loop, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct redis_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	if (uv_async_init(loop, &j->async, redis_job_done_cb) != 0) {
		free(j);
		return -1;
	}
	j->async.data = j;
	if (uv_thread_create(&j->thread, redis_job_main, j) != 0) {
		uv_close((uv_handle_t *)&j->async, redis_job_closed_cb);
		return -1;
	}
	return 0;
}

/* A Sentinel's answer goes into a log line and to a connect: a host name or an address
 * literal only (letters, digits, '.', '-', '_', ':'), nothing a peer could forge a key with. */
static bool rs_host_chars(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '_' ||
		    s[i] == ':'))
			return false;
	return true;
}

int redis_sentinel_ask(const struct redis_url *u, uint64_t timeout_ms, char *host, size_t hostlen,
    int *port, char *err, size_t errlen)
{
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000 * 1000) };

	snprintf(err, errlen, "no sentinel");
	for (int i = 0; i < u->nsentinels; i++) {
		const struct redis_addr *a = &u->sentinels[i];
		redisContext *c;
		redisReply *r;
		const char *why;
		char *e, auth_err[128];
		long v = 0;

		if (rs_job_passed()) {
			snprintf(err, errlen, "sentinel %s:%d: the verb's deadline (%llu ms) passed", a->host,
			    a->port, (unsigned long long)rs_job_total_ms);
			return -1;
		}
		c = redisConnectWithTimeout(a->host, a->port, tv);
		if (c == NULL || c->err) {
			snprintf(err, errlen, "sentinel %s:%d: %s", a->host, a->port,
			    c ? c->errstr : "out of memory");
			redisFree(c);
			continue;
		}
		redis_store_bound_reader(c);
		redisSetTimeout(c, tv);
		auth_err[0] = '\0';
		if (u->password[0]) {
			/* The URL's credentials are the sentinels' too (Lettuce's redis-sentinel://,
			 * redis-rb's default). A sentinel without requirepass refuses the AUTH: it is
			 * asked all the same, the refusal said only if it then wants one (NOAUTH). */
			const char *argv[3] = { "AUTH", u->user[0] ? u->user : u->password, u->password };

			r = redis_store_sync_argv(c, u->user[0] ? 3 : 2, argv, NULL);
			if (r && r->type == REDIS_REPLY_ERROR)
				snprintf(auth_err, sizeof(auth_err), "AUTH: %.100s", r->str ? r->str : "");
			if (r)
				freeReplyObject(r);
		}
		r = NULL;
		if (c->err == 0) {
			const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", u->master };

			r = redis_store_sync_argv(c, 3, argv, NULL);
		}
		if (r == NULL)
			why = c->errstr;
		else if (r->type == REDIS_REPLY_ERROR && auth_err[0] && r->str &&
		    strncmp(r->str, "NOAUTH", 6) == 0)
			why = auth_err;
		else if (r->type == REDIS_REPLY_ERROR)
			why = r->str;
		else if (r->type == REDIS_REPLY_NIL)
			why = "does not know the master name";
		else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len == 0 || r->element[0]->len >= hostlen ||
		    !rs_host_chars(r->element[0]->str, r->element[0]->len) ||
		    (v = strtol(r->element[1]->str, &e, 10)) < 1 || v > 65535 || *e != '\0')
			why = "not an address";
		else
			why = NULL;
		if (why == NULL) {
			memcpy(host, r->element[0]->str, r->element[0]->len);
			host[r->element[0]->len] = '\0';
			*port = (int)v;
		} else {
			snprintf(err, errlen, "sentinel %s:%d: %.120s", a->host, a->port, why);
		}
		if (r)
			freeReplyObject(r);
		redisFree(c);
		if (why == NULL)
			return 0;
	}
	return -1;
}

redisContext *redis_store_connect_sync(const char *url, uint64_t timeout_ms, char *err,
    size_t errlen)
{
	struct redis_url u;
	char *host = u.host, *user = u.user, *password = u.password;
	int port, db;
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000 * 1000) };
	redisContext *c;
	redisReply *rep = NULL;

	if (redis_url_parse(url, &u) < 0) {
		snprintf(err, errlen, "bad URL");
		return NULL;
	}
	port = u.port;
	db = u.db;
	if (rs_job_thread && rs_job_deadline == 0) {
		rs_job_timeout_ms = timeout_ms;
		rs_job_total_ms = timeout_ms * RS_JOB_STEPS > RS_JOB_MIN_MS ?
		    timeout_ms * RS_JOB_STEPS : RS_JOB_MIN_MS;
		rs_job_deadline = rs_mono_ms() + rs_job_total_ms;
	} else if (rs_job_deadline) {
		/* a second store of the same job: within what is left */
		uint64_t now = rs_mono_ms(), left = rs_job_deadline > now ? rs_job_deadline - now : 0;

		if (left == 0) {
			snprintf(err, errlen, "redis %s:%d: connect: the verb's deadline (%llu ms) passed",
			    host, port, (unsigned long long)rs_job_total_ms);
			return NULL;
		}
		if (left < timeout_ms) {
			tv.tv_sec = (time_t)(left / 1000);
			tv.tv_usec = (suseconds_t)(left % 1000 * 1000);
		}
	}
	if (u.sentinel) {
		/* the master Sentinel names now, each sentinel within the timeout */
		rs_job_step_set("SENTINEL", 8);
		if (redis_sentinel_ask(&u, timeout_ms, u.host, sizeof(u.host), &port, err, errlen) < 0)
			return NULL;
	}
	rs_job_step_set("connect", 7);
	c = redisConnectWithTimeout(host, port, tv);
	if (c == NULL || c->err) {
		snprintf(err, errlen, "redis %s:%d: %s", host, port, c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redis_store_bound_reader(c);
	redisSetTimeout(c, tv);
	if (password[0]) {
		const char *argv[3] = { "AUTH", user[0] ? user : password, password };

		rep = redis_store_sync_argv(c, user[0] ? 3 : 2, argv, NULL);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
			goto fail;
		freeReplyObject(rep);
	}
	if (db) {
		rep = redis_store_sync_command(c, "SELECT %d", db);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
			goto fail;
		freeReplyObject(rep);
	}
	return c;
fail:
	snprintf(err, errlen, "redis %s:%d: %s", host, port, rep && rep->str ? rep->str : c->errstr);
	if (rep)
		freeReplyObject(rep);
	redisFree(c);
	return NULL;
}

void redis_store_set_up_cb(struct redis_store *rs, redis_store_up_cb cb, void *arg)
{
	rs->up_cb = cb;
	rs->up_arg = arg;
}

void redis_store_set_name(struct redis_store *rs, const char *name)
{
	snprintf(rs->name, sizeof(rs->name), "%s", name);
	rs->stats = store_stats_get("redis", rs->name);
	if (rs->watch)
		sentinel_watch_set_module(rs->watch, rs->name);
}

void redis_store_set_queue_limit(struct redis_store *rs, size_t max_writes)
{
	rs->wq_max = max_writes;
}

/* The store memory goes once its timer is closed and hiredis let go of the connection. */
static void rs_maybe_release(struct redis_store *rs)
{
	if (rs->closing && rs->timer_closed && rs->ac == NULL && !rs->resolving)
		free(rs);
}

static void rs_timer_close_cb(uv_handle_t *h)
{
	struct redis_store *rs = h->data;

	rs->timer_closed = true;
	rs_maybe_release(rs);
}

void redis_store_free(struct redis_store *rs)
{
	redisAsyncContext *ac;
	struct redis_req *req, *next;

	if (rs == NULL)
		return;
	rs->closing = true;
	rs_registry_del(rs);
	sentinel_watch_free(rs->watch);     /* its memory goes on its own */
	rs->watch = NULL;
	uv_timer_stop(&rs->timer);
	/* The owner is going: reads still out learn NULL now, writes with a done callback
	 * learn -1 ("not known to be applied") and go on without it. */
	for (req = rs->inflight; req; req = next) {
		next = req->inext;
		if (!req->write && req->live) {
			rs_req_complete(req, NULL);
		} else if (req->write && req->done) {
			redis_store_done_cb done = req->done;

			req->done = NULL;
			done(req->arg, -1);
		}
	}
	rs_pending_fail(rs);
	/* Writes not sent yet go to a sibling store or are dropped (counted, logged). */
	while ((req = rs_wq_pop(rs)) != NULL)
		rs_write_orphan(rs, req);
	ac = rs->ac;
	if (ac && rs->state == RS_UP && rs->w_inflight > 0) {
		/* Writes in flight get their replies (no duplicate on the next store); hiredis
		 * then disconnects (rs_disconnect_cb). A silent server: their deadline. */
		redisAsyncDisconnect(ac);
	} else if (ac) {
		rs->ac = NULL;
		rs->state = RS_DOWN;
		redisAsyncFree(ac);     /* pending callbacks get NULL replies now */
	}
	uv_close((uv_handle_t *)&rs->timer, rs_timer_close_cb);
}

int redis_store_add_script(struct redis_store *rs, const char *lua)
{
	unsigned char md[SHA_DIGEST_LENGTH];
	struct rs_script *s;

	if (rs->nscripts >= RS_MAX_SCRIPTS)
		return -1;
	s = &rs->scripts[rs->nscripts];
	s->src = lua;
	/* EVALSHA names a script by the SHA-1 of its text (Redis EVALSHA docs). */
	SHA1((const unsigned char *)lua, strlen(lua), md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
	if ((rs->state == RS_UP || rs->state == RS_HANDSHAKE) && rs->ac) {
		const char *argv[3] = { "SCRIPT", "LOAD", lua };

		redisAsyncCommandArgv(rs->ac, NULL, NULL, 3, argv, NULL);
	}
	return rs->nscripts++;
}

bool redis_store_is_up(const struct redis_store *rs)
{
	return rs && rs->state == RS_UP;
}

const char *redis_store_url(const struct redis_store *rs)
{
	return rs->url;
}

void redis_store_stats(const struct redis_store *rs, uint64_t *sent, uint64_t *timeouts,
    uint64_t *failfast)
{
	if (sent)
		*sent = rs->sent;
	if (timeouts)
		*timeouts = rs->timeouts;
	if (failfast)
		*failfast = rs->failfast;
}

/* ---- connection state ---------------------------------------------------------------- */

/* How long a connect, and then its handshake, may take. */
static uint64_t rs_connect_deadline_ms(const struct redis_store *rs)
{
	return rs->timeout_ms * 5 < 1000 ? 1000 : rs->timeout_ms * 5;
}


/* The store timer: a connect attempt or handshake that took too long is dropped; a down
 * store reconnects. */
static void rs_retry_cb(uv_timer_t *t)
{
	struct redis_store *rs = t->data;

	if (rs->closing)
		return;
	if (rs->state == RS_CONNECTING) {
		/* Connect timed out: drop the attempt. */
		redisAsyncContext *ac = rs->ac;

		rs->ac = NULL;
		rs->state = RS_DOWN;
		if (!rs->down_logged) {
			rs->down_logged = true;
			log_event(LOG_LVL_WARNING, NULL,
			    "event=redis_down store=%s worker=%d module=%s reason=connect_timeout",
			    rs->url, rs->worker, rs->name);
		}
		if (ac)
			redisAsyncFree(ac);
		rs_pending_fail(rs);
		uv_timer_start(&rs->timer, rs_retry_cb, rs->backoff_ms, 0);
		rs->backoff_ms = rs->backoff_ms * 2 > RS_BACKOFF_MAX_MS ? RS_BACKOFF_MAX_MS :
		    rs->backoff_ms * 2;
		return;
	}
	if (rs->state == RS_HANDSHAKE) {
		rs_fail(rs, "handshake_timeout");   /* connected, but the PING got no answer */
		return;
	}
	if (rs->state == RS_DOWN)
		rs_connect(rs);
}

/* Marks the store down (once-per-outage log), drops the connection and schedules a retry.
 * Safe from any callback, including hiredis's own. */
static void rs_fail(struct redis_store *rs, const char *reason)
{
	redisAsyncContext *ac = rs->ac;

	if (rs->closing)
		return;
	rs->ac = NULL;
	rs->state = RS_DOWN;
	if (!rs->down_logged) {
		rs->down_logged = true;
		log_event(LOG_LVL_WARNING, NULL, "event=redis_down store=%s worker=%d module=%s reason=%s",
		    rs->url, rs->worker, rs->name, reason);
	}
	if (ac)
		redisAsyncFree(ac);   /* deferred by hiredis when inside its callback */
	uv_timer_stop(&rs->timer);
	uv_timer_start(&rs->timer, rs_retry_cb, rs->backoff_ms, 0);
	rs->backoff_ms = rs->backoff_ms * 2 > RS_BACKOFF_MAX_MS ? RS_BACKOFF_MAX_MS :
	    rs->backoff_ms * 2;
	rs_pending_fail(rs);    /* last: a read's callback may ask again (it fails fast now) */
}

/* Redis's error text for reply= of event=redis_error: its first 120 octets, escaped as every
 * value from a peer (log_valn: a '"' or '\\' of Redis's cannot end the quotes early). */
#define RS_LOG_REPLY_CAP (4 * 120 + 8)
static const char *rs_log_reply(char *buf, size_t cap, const redisReply *reply)
{
	size_t n = reply->str ? reply->len : 0;

	return log_valn(buf, cap, reply->str ? reply->str : "", n > 120 ? 120 : n);
}

/* Whether s (n octets) starts with the error code code: the word, then a space or the end. */
static bool rs_error_code_is(const char *s, size_t n, const char *code)
{
	size_t len = strlen(code);

	return n >= len && memcmp(s, code, len) == 0 && (n == len || s[len] == ' ');
}

/* Whether an error reply says that this server cannot serve the store now, whatever the
 * request: a replica (READONLY: a master demoted by a failover while our connection stayed
 * on it, its address now leading elsewhere), a replica cut off from its master (MASTERDOWN),
 * a server still loading its data (LOADING). A script's error carries the command's code
 * (Redis 7: "READONLY ... script: ..."; 6: "ERR Error running script ...: -READONLY ...").
 * The reason for event=redis_down, or NULL for any other reply. */
static const char *rs_reply_unusable(const redisReply *reply)
{
	static const struct { const char *code, *reason; } codes[] = {
		{ "READONLY", "readonly" }, { "MASTERDOWN", "masterdown" }, { "LOADING", "loading" },
	};
	static const char script[] = "ERR Error running script";
	const char *s;
	size_t n;

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR || reply->str == NULL)
		return NULL;
	s = reply->str;
	n = reply->len;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (rs_error_code_is(s, n, codes[i].code))
			return codes[i].reason;
		/* Redis 6's script error: the command's error after ": -" */
		if (n > sizeof(script) - 1 && memcmp(s, script, sizeof(script) - 1) == 0)
			for (size_t j = 0; j + 3 < n; j++)
				if (s[j] == ':' && s[j + 1] == ' ' && s[j + 2] == '-' &&
				    rs_error_code_is(s + j + 3, n - j - 3, codes[i].code))
					return codes[i].reason;
	}
	return NULL;
}

/* ROLE, sent before the handshake's PING: a replica (or a sentinel) takes none of the
 * store's writes, so it is no server to be up on: the store stays down (logged once an
 * outage) and tries again with backoff, until the address leads to a master or this one is
 * promoted. An error reply (an ACL user without ROLE, a proxy that does not know it) or any
 * other answer says nothing: the PING decides. */
static void rs_role_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_store *rs = ac->data;
	const redisReply *reply = r, *e;

	(void)privdata;
	if (rs == NULL || rs->ac != ac || rs->closing || rs->state != RS_HANDSHAKE)
		return;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
		return;
	e = reply->element[0];
	if ((e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) || e->str == NULL)
		return;
	if (e->len == 5 && memcmp(e->str, "slave", 5) == 0)
		rs_fail(rs, "replica");
	else if (e->len == 8 && memcmp(e->str, "sentinel", 8) == 0)
		rs_fail(rs, "sentinel");
}

/* The PING after a connect answered: the store is up (or, on an error reply such as NOAUTH
 * after a refused AUTH, down with a retry). */
static void rs_ping_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_store *rs = ac->data;
	redisReply *reply = r;

	(void)privdata;
	if (rs == NULL || rs->ac != ac || rs->closing || rs->state != RS_HANDSHAKE)
		return;             /* a connection we dropped: its callbacks get NULL */
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		if (reply) {
			char rv[RS_LOG_REPLY_CAP];

			log_event(LOG_LVL_WARNING, NULL, "event=redis_error store=%s worker=%d module=%s reply=%s",
			    rs->url, rs->worker, rs->name, rs_log_reply(rv, sizeof(rv), reply));
		}
		rs_fail(rs, rs_reply_unusable(reply) ? rs_reply_unusable(reply) : "handshake_failed");
		return;
	}
	uv_timer_stop(&rs->timer);
	rs->state = RS_UP;
	if (!rs->unusable_seen)
		rs->backoff_ms = RS_BACKOFF_MIN_MS;
	/* the writes issued before this connect came up (a first one's, an outage's) go before
	 * the reads issued after it: a read waits while one of them is still queued (until
	 * session 37 only after a first connect; after an outage a read overtook the writes
	 * behind the 64-write window, unit test_redis_outage_order) */
	rs->start_seq = rs->w_seq;
	if (rs->down_logged) {
		rs->down_logged = false;
		log_event(LOG_LVL_WARNING, NULL, "event=redis_up store=%s worker=%d module=%s queued=%zu",
		    rs->url, rs->worker, rs->name, rs->wq_n);
	}
	rs_wq_pump(rs);         /* what waited for the outage to end, after the scripts */
	if (rs->up_cb)
		rs->up_cb(rs->up_arg);  /* its writes queue behind what waited */
}

/* hiredis connect result: the handshake (AUTH/SELECT/SCRIPT LOAD, then a PING whose answer
 * makes the store up) or down with a retry. */
static void rs_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_store *rs = ac->data;

	if (rs == NULL || rs->ac != ac || rs->closing)
		return;
	if (status != REDIS_OK) {
		rs->ac = NULL;        /* hiredis frees a context whose connect failed */
		rs_fail(rs, "connect_failed");
		return;
	}
	rs->state = RS_HANDSHAKE;
	uv_timer_stop(&rs->timer);
	uv_timer_start(&rs->timer, rs_retry_cb, rs_connect_deadline_ms(rs), 0);
	if (rs->password[0]) {
		const char *argv[3] = { "AUTH", rs->user[0] ? rs->user : rs->password, rs->password };

		redisAsyncCommandArgv(rs->ac, NULL, NULL, rs->user[0] ? 3 : 2, argv, NULL);
	}
	if (rs->db) {
		char db[16];
		const char *argv[2] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", rs->db);
		redisAsyncCommandArgv(rs->ac, NULL, NULL, 2, argv, NULL);
	}
	for (int i = 0; i < rs->nscripts; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", rs->scripts[i].src };

		redisAsyncCommandArgv(rs->ac, NULL, NULL, 3, argv, NULL);
	}
	redisAsyncCommand(rs->ac, rs_role_cb, NULL, "ROLE");
	redisAsyncCommand(rs->ac, rs_ping_cb, NULL, "PING");
	/* the reads and writes that waited for this connect go once the PING is answered
	 * (rs_ping_cb), in the order they were issued */
}

/* hiredis lost the connection (not one we dropped): down, retry later. A closing store's
 * graceful disconnect ends here too: then the store may go. */
static void rs_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_store *rs = ac->data;

	if (rs == NULL || rs->ac != ac)
		return;             /* we dropped it ourselves */
	rs->ac = NULL;          /* hiredis frees it after this callback */
	if (rs->closing) {
		rs->state = RS_DOWN;
		rs_maybe_release(rs);
		return;
	}
	/* an out-of-memory error of the reader is a reply over the bounds (rs_create_array) */
	rs_fail(rs, status == REDIS_OK ? "closed" : ac->c.err == REDIS_ERR_OOM ? "reply_too_large" :
	    "connection_lost");
}

/* ---- Redis Sentinel: the master's address, asked on every (re)connect ----------------
 * A job on a thread of its own (redis_store_job_start: the loop never waits) asks the
 * sentinels in turn, each within the store's timeout; its answer is then connected to as a
 * redis:// server would be, and the handshake's ROLE refuses a replica (a Sentinel not yet
 * told of a failover). A connection lost, a READONLY reply, a replica: down, and the next
 * attempt asks again. The job reads only its own copy of the URL. */

struct rs_resolve {
	struct redis_store *rs;       /* touched on the loop only (done) */
	struct redis_url spec;
	uint64_t timeout_ms;
	char host[256];               /* the answer */
	char addr[64];                /* its address, resolved here: no DNS on the loop */
	int port, rc;
	char err[200];
};

static void rs_resolve_work(void *arg)
{
	struct rs_resolve *j = arg;

	struct addrinfo hints, *res = NULL;
	int e;

	j->rc = redis_sentinel_ask(&j->spec, j->timeout_ms, j->host, sizeof(j->host), &j->port,
	    j->err, sizeof(j->err));
	if (j->rc < 0)
		return;
	/* A Sentinel with announce-hostnames answers a name: redisAsyncConnect would resolve
	 * it with a blocking getaddrinfo on the worker's loop. Here it blocks only this job. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	e = getaddrinfo(j->host, NULL, &hints, &res);
	if (e != 0 || res == NULL || getnameinfo(res->ai_addr, res->ai_addrlen, j->addr,
	    sizeof(j->addr), NULL, 0, NI_NUMERICHOST) != 0) {
		snprintf(j->err, sizeof(j->err), "master %.100s: %s", j->host,
		    e != 0 ? gai_strerror(e) : "no address");
		j->rc = -1;
	}
	if (res)
		freeaddrinfo(res);
}

static void rs_resolve_done(void *arg)
{
	struct rs_resolve *j = arg;
	struct redis_store *rs = j->rs;

	rs->resolving = false;
	if (rs->closing) {
		free(j);
		rs_maybe_release(rs);
		return;
	}
	if (rs->switch_reask) {
		/* asked before a sentinel announced a failover: its answer may be the old master */
		rs->switch_reask = false;
		free(j);
		rs_resolve_start(rs);
		return;
	}
	if (j->rc < 0) {
		char ev[4 * 200 + 8];

		if (!rs->down_logged)   /* the why of the outage's one redis_down below */
			log_event(LOG_LVL_WARNING, NULL, "event=redis_error store=%s worker=%d module=%s reply=%s",
			    rs->url, rs->worker, rs->name, log_valn(ev, sizeof(ev), j->err, strlen(j->err)));
		free(j);
		rs_fail(rs, "no_master");
		return;
	}
	if (strcmp(rs->host, j->addr) != 0 || rs->port != j->port)
		log_event(LOG_LVL_INFO, NULL, "event=redis_master store=%s worker=%d module=%s master=%s:%d",
		    rs->url, rs->worker, rs->name, j->host, j->port);
	snprintf(rs->host, sizeof(rs->host), "%s", j->addr);
	rs->port = j->port;
	rs->resolved = true;
	free(j);
	rs_connect(rs);
}

/* Asks the sentinels (a job); the store stays down meanwhile. */
static void rs_resolve_start(struct redis_store *rs)
{
	struct rs_resolve *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		rs_fail(rs, "out_of_memory");
		return;
	}
	j->rs = rs;
	j->spec = rs->spec;
	j->timeout_ms = rs->timeout_ms;
	uv_timer_stop(&rs->timer);
	rs->resolving = true;
	if (redis_store_job_start(rs->loop, rs_resolve_work, rs_resolve_done, j) < 0) {
		rs->resolving = false;
		free(j);
		rs_fail(rs, "no_thread");
	}
}

/* A sentinel announced a failover of our master (+switch-master, sentinel_watch.h): counted,
 * logged, and unless the store is up on the new master already, the connection goes and the
 * sentinels are asked again at once (no back-off): the old master, still writable until
 * Sentinel reconfigures it, takes no more writes. Up, this is an outage as a lost connection
 * is (redis_down reason=sentinel_switch, reads fail fast until redis_up; reads and writes in
 * flight end as in any drop: a read NULL, a write queued again); during a first connect the
 * reads waiting for it go on waiting. */
static void rs_switch_cb(void *arg, const struct sentinel_switch *sw, const char *sentinel)
{
	struct redis_store *rs = arg;
	redisAsyncContext *ac;
	bool was_up;

	if (rs->closing)
		return;
	rs->switches++;
	store_stats_add_sentinel_switches(rs->stats, 1);
	log_event(LOG_LVL_WARNING, NULL,
	    "event=redis_switch store=%s worker=%d module=%s sentinel=%s from=%s:%d to=%s:%d",
	    rs->url, rs->worker, rs->name, sentinel, sw->old_host, sw->old_port, sw->new_host,
	    sw->new_port);
	if (rs->state == RS_UP && rs->port == sw->new_port && strcmp(rs->host, sw->new_host) == 0)
		return;                 /* there already (a READONLY got us there first) */
	if (rs->resolving) {
		rs->switch_reask = true;
		return;
	}
	was_up = rs->state == RS_UP;
	ac = rs->ac;
	rs->ac = NULL;
	rs->state = RS_DOWN;
	rs->resolved = false;
	uv_timer_stop(&rs->timer);
	if (was_up && !rs->down_logged) {
		rs->down_logged = true;
		log_event(LOG_LVL_WARNING, NULL,
		    "event=redis_down store=%s worker=%d module=%s reason=sentinel_switch",
		    rs->url, rs->worker, rs->name);
	}
	if (ac)
		redisAsyncFree(ac);     /* its requests' callbacks: a read NULL, a write queued */
	if (rs->down_logged)
		rs_pending_fail(rs);
	if (!rs->closing && rs->ac == NULL && !rs->resolving && rs->state == RS_DOWN)
		rs_connect(rs);
}

/* Starts a non-blocking connect with a deadline; on immediate failure the store is down.
 * A Sentinel store first asks for the master (rs_resolve_start, then here again). */
static void rs_connect(struct redis_store *rs)
{
	redisAsyncContext *ac;

	if (rs->spec.sentinel && !rs->resolved) {
		rs_resolve_start(rs);
		return;
	}
	rs->resolved = false;
	ac = redisAsyncConnect(rs->host, rs->port);
	if (ac == NULL || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		rs_fail(rs, "connect_failed");
		return;
	}
	redis_store_bound_reader(&ac->c);
	if (rs_ev_attach(ac, rs->loop) != REDIS_OK) {
		redisAsyncFree(ac);
		rs_fail(rs, "attach_failed");
		return;
	}
	ac->data = rs;
	redisAsyncSetConnectCallback(ac, rs_connect_cb);
	redisAsyncSetDisconnectCallback(ac, rs_disconnect_cb);
	rs->ac = ac;
	rs->state = RS_CONNECTING;
	uv_timer_stop(&rs->timer);
	uv_timer_start(&rs->timer, rs_retry_cb, rs_connect_deadline_ms(rs), 0);
}

/* ---- requests ------------------------------------------------------------------------ */

/* Frees req once neither hiredis nor its timer refers to it. */
static void rs_req_release(struct redis_req *req)
{
	if (!req->in_hiredis && !req->timer_open)
		free(req);
}

/* The request timer is closed; req may go now. */
static void rs_req_timer_close_cb(uv_handle_t *h)
{
	struct redis_req *req = h->data;

	req->timer_open = false;
	rs_req_release(req);
}

/* Stops and closes the request timer (idempotent). */
static void rs_req_close_timer(struct redis_req *req)
{
	if (req->timer_open && !uv_is_closing((uv_handle_t *)&req->timer)) {
		uv_timer_stop(&req->timer);
		uv_close((uv_handle_t *)&req->timer, rs_req_timer_close_cb);
	}
}

static void rs_inflight_add(struct redis_store *rs, struct redis_req *req)
{
	req->iprev = NULL;
	req->inext = rs->inflight;
	if (rs->inflight)
		rs->inflight->iprev = req;
	rs->inflight = req;
}

static void rs_inflight_del(struct redis_store *rs, struct redis_req *req)
{
	if (req->iprev)
		req->iprev->inext = req->inext;
	else if (rs->inflight == req)
		rs->inflight = req->inext;
	if (req->inext)
		req->inext->iprev = req->iprev;
	req->iprev = req->inext = NULL;
}

/* Logs an error reply to a write at most once a minute. */
static void rs_log_write_error(struct redis_store *rs, const redisReply *reply)
{
	bool now;

	log_rated_note(&rs->write_err_rated, RS_LOG_EVERY_MS, &now);
	if (now) {
		char rv[RS_LOG_REPLY_CAP];

		log_event(LOG_LVL_WARNING, NULL, "event=redis_error store=%s worker=%d module=%s reply=%s",
		    rs->url, rs->worker, rs->name, rs_log_reply(rv, sizeof(rv), reply));
	}
}

/* Completes a read once: its reply (NULL: none) to its cb. */
static void rs_req_complete(struct redis_req *req, const redisReply *reply)
{
	req->live = false;
	rs_req_close_timer(req);
	if (req->cb)
		req->cb(req->arg, reply);
}

/* A write is over: its outcome to done (when there is one), then it goes. */
static void rs_write_finish(struct redis_req *req, int status)
{
	redis_store_done_cb done = req->done;

	req->live = false;
	req->done = NULL;
	rs_req_close_timer(req);
	if (done)
		done(req->arg, status);
	rs_req_release(req);
}

/* Gives a write up: counted (the metric), logged once a minute, -1 to its done. */
static void rs_write_drop(struct redis_store *rs, struct redis_req *req, const char *why)
{
	bool now;

	rs->w_dropped++;
	store_stats_add_dropped(rs->stats, 1);
	log_rated_note(&rs->drop_rated, RS_LOG_EVERY_MS, &now);
	if (now)
		log_event(LOG_LVL_WARNING, NULL,
		    "event=redis_write_dropped store=%s worker=%d module=%s reason=%s queued=%zu dropped=%llu",
		    rs->url, rs->worker, rs->name, why, rs->wq_n, (unsigned long long)rs->w_dropped);
	rs_write_finish(req, -1);
}

/* Takes *pp (the write after prev, NULL for the head) out of the queue; returns it. */
static struct redis_req *rs_wq_unlink(struct redis_store *rs, struct redis_req **pp,
    struct redis_req *prev)
{
	struct redis_req *req = *pp;

	*pp = req->next;
	if (rs->wq_tail == req)
		rs->wq_tail = prev;
	req->next = NULL;
	rs->wq_n--;
	rs->wq_bytes -= req->bytes;
	store_stats_add_queued(rs->stats, -1);
	return req;
}

/* Takes the oldest waiting write out of the queue, or NULL. */
static struct redis_req *rs_wq_pop(struct redis_store *rs)
{
	return rs->wq_head ? rs_wq_unlink(rs, &rs->wq_head, NULL) : NULL;
}

/* Puts req into the queue by its seq (a resent write goes before the newer ones). */
static void rs_wq_insert(struct redis_store *rs, struct redis_req *req)
{
	struct redis_req **pp = &rs->wq_head;

	if (rs->wq_tail && rs->wq_tail->seq < req->seq)
		pp = &rs->wq_tail->next;     /* the usual case: the newest */
	else
		while (*pp && (*pp)->seq < req->seq)
			pp = &(*pp)->next;
	req->next = *pp;
	*pp = req;
	if (req->next == NULL)
		rs->wq_tail = req;
	rs->wq_n++;
	rs->wq_bytes += req->bytes;
	store_stats_add_queued(rs->stats, 1);
}

/* Whether one more write of bytes fits the bounds. */
static bool rs_wq_has_room(const struct redis_store *rs, size_t bytes)
{
	return rs->wq_n < rs->wq_max && rs->wq_bytes + bytes <= RS_WQ_MAX_BYTES;
}

/* The request deadline: a read learns now; a write is resent on the next connection. Either
 * way the silent connection is dropped (its other requests get NULL replies). */
static void rs_req_timeout_cb(uv_timer_t *t)
{
	struct redis_req *req = t->data;
	struct redis_store *rs = req->rs;
	redisAsyncContext *ac;

	if (req->pending) {
		/* still waiting for the first connect (a slow Sentinel, a slow connect): it
		 * learns now; the connect goes on under its own deadline */
		rs_pending_unlink(rs, req);
		rs->timeouts++;
		store_stats_add_read_wait_timeouts(rs->stats, 1);
		rs_req_complete(req, NULL);     /* its timer's close callback frees it */
		return;
	}
	/* libuv runs due timers before it polls for I/O: after a long loop iteration (a burst
	 * of accepts, a slow build) a deadline passes while the reply already waits in the
	 * socket. Read what is there first; only a request still unanswered has timed out. */
	if (req->in_hiredis && rs->ac && (rs->ac->c.flags & REDIS_CONNECTED)) {
		redisAsyncHandleRead(rs->ac);
		if (!req->in_hiredis)
			return;             /* answered (or the connection went): handled there */
	}
	rs->timeouts++;
	if (req->waited && !rs->closing) {
		/* Sent with what its wait for the first connect left (a few ms, maybe): its
		 * deadline says nothing of the server, whose handshake has its own. It fails; the
		 * reply, when it comes, is dropped. Dropping the connection for it took down a
		 * master answering normally right after a slow Sentinel ask. */
		if (req->live)
			rs_req_complete(req, NULL);
		return;
	}
	if (req->write)
		req->strikes++;
	else if (req->live)
		rs_req_complete(req, NULL);
	if (!rs->closing) {
		rs_fail(rs, "timeout");
		return;
	}
	/* A closing store waits for no silent server. */
	ac = rs->ac;
	rs->ac = NULL;
	rs->state = RS_DOWN;
	if (ac)
		redisAsyncFree(ac);
	rs_maybe_release(rs);
}

static void rs_req_reply_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Hands req to hiredis with its deadline; 0, or -1 (hiredis refused it: nothing changed). */
static int rs_req_send(struct redis_store *rs, struct redis_req *req)
{
	if (redisAsyncCommandArgv(rs->ac, rs_req_reply_cb, req, req->argc,
	    (const char **)req->argv, req->argvlen) != REDIS_OK)
		return -1;
	req->in_hiredis = true;
	rs_inflight_add(rs, req);
	rs->sent++;
	if (req->write)
		rs->w_inflight++;
	if (req->cb || req->done || req->write) {
		if (!req->timer_open) {
			uv_timer_init(rs->loop, &req->timer);
			req->timer.data = req;
			req->timer_open = true;
		}
		uv_timer_start(&req->timer, rs_req_timeout_cb, rs->timeout_ms, 0);
	}
	return 0;
}

static void rs_pending_send(struct redis_store *rs, struct redis_req *req);

/* Sends what waits while the store is up, in the order it was issued: the writes of the
 * queue, at most RS_WQ_WINDOW unanswered, and the reads that waited for the first connect
 * (rs_pending_add); a read issued after a write goes after it (a write then a read of one
 * key, issued during the first connect, reads what was written), so a read behind a write
 * the window holds back waits on, within its deadline. */
static void rs_wq_pump(struct redis_store *rs)
{
	struct redis_req *req;

	while (!rs->closing && rs->state == RS_UP && rs->ac) {
		req = rs->pend_head;
		if (req && (rs->wq_head == NULL || req->seq < rs->wq_head->seq)) {
			rs_pending_unlink(rs, req);
			rs_pending_send(rs, req);
			continue;
		}
		if (rs->wq_head == NULL || rs->w_inflight >= RS_WQ_WINDOW)
			break;
		req = rs_wq_pop(rs);
		if (rs_req_send(rs, req) < 0) {
			rs_wq_insert(rs, req);
			break;
		}
	}
}

/* ---- reads waiting for the first connect ----------------------------------------------
 * A store's very first connect (at start, after a reload: no outage yet) is waited for by
 * reads, as long as their own deadline (the store's timeout) and at most wq_max of them: a
 * redis-sentinel:// store's ask of its sentinels, a connect and, once connected, AUTH,
 * SELECT, the scripts, ROLE and the PING's answer. They then leave with the writes queued
 * meanwhile, in the order all were issued (rs_wq_pump); a read issued while some still wait
 * waits behind them. Counted in mxgate_store_reads_waited_total, and those whose deadline
 * passed while they waited in mxgate_store_read_wait_timeouts_total. During an outage reads
 * fail fast. */

static void rs_pending_unlink(struct redis_store *rs, struct redis_req *req)
{
	if (req->iprev)
		req->iprev->inext = req->inext;
	else
		rs->pend_head = req->inext;
	if (req->inext)
		req->inext->iprev = req->iprev;
	else
		rs->pend_tail = req->iprev;
	req->iprev = req->inext = NULL;
	req->pending = false;
	rs->npend--;
}

/* Whether a read now waits for the first connect rather than being sent or failing fast:
 * during it, and once up while reads of it still wait (it goes behind them). */
static bool rs_pending_wanted(const struct redis_store *rs)
{
	if (rs->closing || rs->npend >= rs->wq_max)
		return false;
	if (rs->state == RS_UP)
		return rs->pend_head != NULL ||
		    (rs->wq_head != NULL && rs->wq_head->seq <= rs->start_seq);
	return !rs->down_logged &&
	    (rs->resolving || rs->state == RS_CONNECTING || rs->state == RS_HANDSHAKE);
}

/* req (a read not sent) waits, its deadline running from now. */
static void rs_pending_add(struct redis_store *rs, struct redis_req *req)
{
	uv_timer_init(rs->loop, &req->timer);
	req->timer.data = req;
	req->timer_open = true;
	uv_timer_start(&req->timer, rs_req_timeout_cb, rs->timeout_ms, 0);
	req->pending = true;
	req->seq = ++rs->w_seq;         /* its place among the writes (rs_wq_pump) */
	store_stats_add_reads_waited(rs->stats, 1);
	req->inext = NULL;
	req->iprev = rs->pend_tail;
	if (rs->pend_tail)
		rs->pend_tail->inext = req;
	else
		rs->pend_head = req;
	rs->pend_tail = req;
	rs->npend++;
}

/* A read that waited (unlinked already) goes now, within what is left of its deadline. */
static void rs_pending_send(struct redis_store *rs, struct redis_req *req)
{
	uint64_t left = uv_timer_get_due_in(&req->timer);

	if (rs->ac == NULL || rs_req_send(rs, req) < 0) {
		rs->failfast++;
		rs_req_complete(req, NULL);
		return;
	}
	req->waited = true;
	if (req->cb)
		uv_timer_start(&req->timer, rs_req_timeout_cb, left ? left : 1, 0);
	else
		rs_req_close_timer(req);    /* fire and forget: no deadline, as sent at once */
}

/* The first connect failed (or the store is going): the waiting reads learn now. */
static void rs_pending_fail(struct redis_store *rs)
{
	struct redis_req *req;

	while ((req = rs->pend_head) != NULL) {
		rs_pending_unlink(rs, req);
		rs_req_complete(req, NULL);
	}
}

/* A write whose store is closing: to a sibling's queue (its timer is on the same loop), or
 * dropped. */
static void rs_write_orphan(struct redis_store *rs, struct redis_req *req)
{
	struct redis_store *sib = rs_registry_sibling(rs);

	if (sib == NULL || !rs_wq_has_room(sib, req->bytes)) {
		rs_write_drop(rs, req, sib ? "queue_full" : "store_closed");
		return;
	}
	req->rs = sib;
	req->seq = ++sib->w_seq;
	rs_wq_insert(sib, req);
	rs_wq_pump(sib);
}

/* The end of one send of a write: applied (0), refused by Redis (an error reply: -1, never
 * resent), or no reply (the connection went, a deadline passed): Redis may or may not have
 * applied it, so it is sent again on the next connection. A write that missed its own
 * deadline RS_WRITE_STRIKES times is given up (a server that chokes on it); the others that
 * lost their reply with the same connection are not charged for it. */
static void rs_write_reply(struct redis_store *rs, struct redis_req *req, const redisReply *reply)
{
	if (req->timer_open)
		uv_timer_stop(&req->timer);
	rs->w_inflight--;
	if (reply != NULL) {
		if (reply->type == REDIS_REPLY_ERROR)
			rs_log_write_error(rs, reply);
		rs_write_finish(req, reply->type == REDIS_REPLY_ERROR ? -1 : 0);
	} else if (req->forgotten) {
		rs_write_finish(req, -1);       /* its keys were deleted since: not sent again */
	} else if (req->strikes >= RS_WRITE_STRIKES) {
		rs_write_drop(rs, req, "no_reply");
	} else if (rs->closing) {
		rs_write_orphan(rs, req);
	} else if (!rs_wq_has_room(rs, req->bytes)) {
		rs_write_drop(rs, req, "queue_full");
	} else {
		rs->w_retried++;
		rs_wq_insert(rs, req);
	}
	rs_wq_pump(rs);
}

/* hiredis reply (NULL when the connection went away): NOSCRIPT is retried once with EVAL,
 * anything else completes the request unless it timed out or was cancelled. */
static void rs_req_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_req *req = privdata;
	struct redis_store *rs = req->rs;
	const redisReply *reply = r;
	const char *why;

	req->in_hiredis = false;
	rs_inflight_del(rs, req);
	if ((why = rs_reply_unusable(reply)) != NULL) {
		/* Not a refusal of this request: the server cannot serve the store now (a demoted
		 * master). Without a drop every later write would get the same answer for as long
		 * as the connection lasts. The connection goes (a reconnect reaches the new master
		 * when the address moved; ROLE keeps the store down while it leads to a replica),
		 * and this request is one whose reply never came: a read fails, a write is sent
		 * again on the next connection (a refused write was not applied). */
		rs->unusable_seen = true;
		if (req->write)
			req->strikes++;   /* refused for ever by a replica ROLE could not tell us of */
		if (rs->ac == ac)
			rs_fail(rs, why);
		reply = NULL;
	} else if (reply && reply->type != REDIS_REPLY_ERROR && rs->unusable_seen) {
		rs->unusable_seen = false;  /* a master again: the next outage starts its backoff low */
		rs->backoff_ms = RS_BACKOFF_MIN_MS;
	}
	if (reply && reply->type == REDIS_REPLY_ERROR && req->src && !req->retried &&
	    reply->str && strncmp(reply->str, "NOSCRIPT", 8) == 0 && req->live) {
		/* The server lost its script cache (restart, SCRIPT FLUSH): send the text. A
		 * connection on its way out takes nothing more: then it is as if no reply came
		 * (a write goes to the next connection), and so is a write whose keys were all
		 * deleted since it was first sent (redis_store_write_forget). */
		req->retried = true;
		req->argv[0] = "EVAL";
		req->argvlen[0] = 4;
		req->argv[1] = (char *)req->src;
		req->argvlen[1] = strlen(req->src);
		if (!req->forgotten && !(ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) &&
		    redisAsyncCommandArgv(ac, rs_req_reply_cb, req, req->argc,
		    (const char **)req->argv, req->argvlen) == REDIS_OK) {
			req->in_hiredis = true;
			rs_inflight_add(rs, req);
			return;
		}
		reply = NULL;
	}
	if (req->write) {
		rs_write_reply(rs, req, reply);
		return;
	}
	if (req->live)
		rs_req_complete(req, reply);
	rs_req_release(req);
}

/* A request holding copies of argv (one allocation), not sent yet, for arg (and src: the
 * script's text for the EVAL fallback, or NULL); NULL when out of memory. */
static struct redis_req *rs_req_new(struct redis_store *rs, const char *src, int argc,
    const char **argv, const size_t *argvlen, void *arg)
{
	struct redis_req *req;
	size_t total = 0, *lens;
	char *p;

	for (int i = 0; i < argc; i++)
		total += argvlen ? argvlen[i] : strlen(argv[i]);
	req = calloc(1, sizeof(*req) + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + total);
	if (req == NULL)
		return NULL;
	req->argv = (char **)(req + 1);
	lens = (size_t *)(req->argv + argc);
	req->argvlen = lens;
	p = (char *)(lens + argc);
	for (int i = 0; i < argc; i++) {
		lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
		memcpy(p, argv[i], lens[i]);
		req->argv[i] = p;
		p += lens[i];
	}
	req->rs = rs;
	req->live = true;
	req->argc = argc;
	req->bytes = total;
	req->src = src;
	req->arg = arg;
	return req;
}

/* A read (cb, or fire and forget without): sent now, or -1 at once during an outage. */
static int rs_send_read(struct redis_store *rs, const char *src, int argc, const char **argv,
    const size_t *argvlen, redis_store_reply_cb cb, void *arg, struct redis_req **reqp)
{
	struct redis_req *req;

	/* Requests wait for the very first connect (no outage yet: a Sentinel's answer, the
	 * connect, the handshake) but fail fast during an outage, so sessions never wait on a
	 * dead server. */
	bool wait = rs_pending_wanted(rs);

	if (!wait && (rs->closing || rs->ac == NULL || rs->state != RS_UP || rs->pend_head)) {
		rs->failfast++;
		return -1;
	}
	req = rs_req_new(rs, src, argc, argv, argvlen, arg);
	if (req == NULL)
		return -1;
	req->cb = cb;
	if (wait) {
		rs_pending_add(rs, req);
	} else if (rs_req_send(rs, req) < 0) {
		free(req);
		rs->failfast++;
		return -1;
	}
	if (reqp)
		*reqp = cb ? req : NULL;
	return 0;
}

/* A write: into the queue (bounded; -1 and counted when full), sent when the store is up. */
static int rs_send_write(struct redis_store *rs, const char *src, int argc, const char **argv,
    const size_t *argvlen, int key_first, int nkeys, redis_store_done_cb done, void *arg)
{
	struct redis_req *req;

	if (rs->closing)
		return -1;
	req = rs_req_new(rs, src, argc, argv, argvlen, arg);
	if (req == NULL)
		return -1;
	req->write = true;
	req->done = done;
	req->key_first = key_first;
	req->nkeys = nkeys;
	if (!rs_wq_has_room(rs, req->bytes)) {
		/* not rs_write_drop: done is never called from inside redis_store_write */
		req->done = NULL;
		rs_write_drop(rs, req, "queue_full");
		return -1;
	}
	req->seq = ++rs->w_seq;
	rs_wq_insert(rs, req);
	rs_wq_pump(rs);
	return 0;
}

int redis_store_command(struct redis_store *rs, int argc, const char **argv,
    const size_t *argvlen, redis_store_reply_cb cb, void *arg, struct redis_req **reqp)
{
	if (reqp)
		*reqp = NULL;
	return rs_send_read(rs, NULL, argc, argv, argvlen, cb, arg, reqp);
}

/* EVALSHA sha nkeys keys... args... (script >= 0), or the plain command keys... args...
 * (script -1), as a read (write false: cb) or a write (done). */
static int rs_send_script(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, bool write, redis_store_reply_cb cb,
    redis_store_done_cb done, void *arg, struct redis_req **reqp)
{
	const char *sv[32], **argv = sv;
	size_t svlen[32], *argvlen = svlen;
	char nk[16];
	int argc = 0, rc, n = nkeys + nargs, extra = script >= 0 ? 3 : 0;
	const char *src = script >= 0 && script < rs->nscripts ? rs->scripts[script].src : NULL;

	if (reqp)
		*reqp = NULL;
	if (script >= rs->nscripts || nkeys < 0 || nargs < 0 || n > 1000000 ||
	    (script < 0 && n == 0))
		return -1;
	if (n + extra > 32) {
		/* Many keys (a message's tokens): a heap argv for this call only. */
		argv = malloc((size_t)(n + extra) * sizeof(*argv));
		argvlen = malloc((size_t)(n + extra) * sizeof(*argvlen));
		if (argv == NULL || argvlen == NULL) {
			rc = -1;
			goto out;
		}
	}
	if (script >= 0) {
		snprintf(nk, sizeof(nk), "%d", nkeys);
		argv[argc] = "EVALSHA"; argvlen[argc++] = 7;
		argv[argc] = rs->scripts[script].sha; argvlen[argc++] = 40;
		argv[argc] = nk; argvlen[argc++] = strlen(nk);
	}
	for (int i = 0; i < n; i++) {
		argv[argc] = keys_then_args[i];
		argvlen[argc++] = lens ? lens[i] : strlen(keys_then_args[i]);
	}
	rc = write ? rs_send_write(rs, src, argc, argv, argvlen, extra, nkeys, done, arg) :
	    rs_send_read(rs, src, argc, argv, argvlen, cb, arg, reqp);
out:
	if (argv != sv)
		free(argv);
	if (argvlen != svlen)
		free(argvlen);
	return rc;
}

int redis_store_eval(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_reply_cb cb, void *arg,
    struct redis_req **reqp)
{
	if (script < 0) {
		if (reqp)
			*reqp = NULL;
		return -1;
	}
	return rs_send_script(rs, script, nkeys, nargs, keys_then_args, lens, false, cb, NULL, arg,
	    reqp);
}

int redis_store_write(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_done_cb done, void *arg)
{
	return rs_send_script(rs, script < 0 ? -1 : script, nkeys, nargs, keys_then_args, lens,
	    true, NULL, done, arg, NULL);
}

void redis_req_cancel(struct redis_req *req)
{
	if (req == NULL)
		return;
	if (req->pending)
		rs_pending_unlink(req->rs, req);
	req->live = false;
	rs_req_close_timer(req);
	rs_req_release(req);
}

void redis_store_write_stats(const struct redis_store *rs, size_t *queued, uint64_t *retried,
    uint64_t *dropped)
{
	if (queued)
		*queued = rs->wq_n;
	if (retried)
		*retried = rs->w_retried;
	if (dropped)
		*dropped = rs->w_dropped;
}

/* Takes key out of a write's copy: 0 it does not name key, 1 its other keys are left (a
 * script write loses that word and its key count), 2 nothing of it may go any more (a
 * script write left without keys, a plain command with key among any of its words). */
static int rs_write_cut_key(struct redis_req *req, const char *key, size_t klen)
{
	int hit = 0, end = req->key_first ? req->key_first + req->nkeys : req->argc;

	for (int i = req->key_first; i < end; ) {
		if (req->argvlen[i] != klen || memcmp(req->argv[i], key, klen) != 0) {
			i++;
			continue;
		}
		if (req->key_first == 0 || req->nkeys == 1)
			return 2;
		req->bytes -= req->argvlen[i];
		memmove(&req->argv[i], &req->argv[i + 1], (size_t)(req->argc - i - 1) * sizeof(*req->argv));
		memmove(&req->argvlen[i], &req->argvlen[i + 1],
		    (size_t)(req->argc - i - 1) * sizeof(*req->argvlen));
		req->argc--;
		req->nkeys--;
		end--;
		snprintf(req->nk, sizeof(req->nk), "%d", req->nkeys);
		req->argv[2] = req->nk;         /* EVALSHA sha nkeys ... */
		req->argvlen[2] = strlen(req->nk);
		hit = 1;
	}
	return hit;
}

size_t redis_store_write_forget(struct redis_store *rs, const char *key, size_t klen)
{
	struct redis_req **pp = &rs->wq_head, *req, *prev = NULL, *gone = NULL;
	size_t n = 0;

	while ((req = *pp) != NULL) {
		size_t bytes = req->bytes;
		int cut = rs_write_cut_key(req, key, klen);

		n += cut != 0;
		rs->wq_bytes -= bytes - req->bytes;
		if (cut != 2) {
			prev = req;
			pp = &req->next;
			continue;
		}
		req = rs_wq_unlink(rs, pp, prev);     /* never sent */
		req->next = gone;
		gone = req;
	}
	/* Sent and unanswered: hiredis has them in its buffer already, so the delete behind
	 * them on this connection comes after them; the copies kept for a resend lose key. */
	for (req = rs->inflight; req; req = req->inext) {
		int cut;

		if (!req->write || req->forgotten)
			continue;
		cut = rs_write_cut_key(req, key, klen);
		n += cut != 0;
		if (cut == 2)
			req->forgotten = true;
	}
	/* done last: a callback that writes again finds the queue whole */
	while ((req = gone) != NULL) {
		gone = req->next;
		req->next = NULL;
		rs_write_finish(req, -1);
	}
	return n;
}
