/* redis.c — the Redis store: async hiredis on a libuv loop with per-request timeouts, see
 * redis.h. */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "proxy/log.h"

#define RS_MAX_SCRIPTS 8
#define RS_BACKOFF_MIN_MS 1000u
#define RS_BACKOFF_MAX_MS 30000u

enum rs_state { RS_DOWN = 0, RS_CONNECTING, RS_UP };

struct rs_script { const char *src; char sha[41]; };

struct redis_store {
	uv_loop_t *loop;
	char url[300];                /* for logs, without the password */
	char host[256];
	char password[128];
	int port, db, worker;
	uint64_t timeout_ms;
	redisAsyncContext *ac;        /* NULL when no connection (attempt) exists */
	enum rs_state state;
	bool down_logged;             /* an outage is in progress and was logged */
	bool closing;
	uint64_t backoff_ms;
	uv_timer_t timer;             /* CONNECTING: connect timeout; DOWN: retry */
	struct rs_script scripts[RS_MAX_SCRIPTS];
	int nscripts;
	uint64_t sent, timeouts, failfast;
	uint64_t last_write_err_ms;   /* write error replies are logged once a minute */
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
	int script;                   /* -1: plain command */
	int argc;
	char **argv;                  /* copies, for the EVAL fallback */
	size_t *argvlen;
};

/* Starts a non-blocking connect with a deadline; on immediate failure the store is down. */
static void rs_connect(struct redis_store *rs);

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
	if (events & UV_READABLE)
		redisAsyncHandleRead(e->ac);
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

int redis_store_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db,
    char *password, size_t pwlen)
{
	const char *p, *at, *end, *colon;
	size_t n;
	char *e;
	long v;

	if (url == NULL || strncmp(url, "redis://", 8) != 0)
		return -1;
	p = url + 8;
	*port = 6379;
	*db = 0;
	if (password && pwlen)
		password[0] = '\0';
	at = strchr(p, '@');
	if (at) {
		const char *pw = memchr(p, ':', (size_t)(at - p));

		pw = pw ? pw + 1 : p;
		n = (size_t)(at - pw);
		if (password == NULL || n >= pwlen)
			return -1;
		memcpy(password, pw, n);
		password[n] = '\0';
		p = at + 1;
	}
	end = p + strcspn(p, "/");
	if (*p == '[') {               /* [v6]:port */
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (rb == NULL)
			return -1;
		n = (size_t)(rb - p - 1);
		if (n == 0 || n >= hostlen)
			return -1;
		memcpy(host, p + 1, n);
		host[n] = '\0';
		colon = rb[1] == ':' ? rb + 1 : NULL;
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
		if (e != end || v < 1 || v > 65535)
			return -1;
		*port = (int)v;
	}
	if (*end == '/' && end[1]) {
		v = strtol(end + 1, &e, 10);
		if (*e || v < 0 || v > 1000000)
			return -1;
		*db = (int)v;
	}
	return 0;
}

struct redis_store *redis_store_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms,
    int worker)
{
	struct redis_store *rs = calloc(1, sizeof(*rs));

	if (rs == NULL)
		return NULL;
	if (redis_store_parse_url(url, rs->host, sizeof(rs->host), &rs->port, &rs->db,
	    rs->password, sizeof(rs->password)) < 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=redis_error store=%s reason=bad_url", url);
		free(rs);
		return NULL;
	}
	snprintf(rs->url, sizeof(rs->url), "redis://%s:%d/%d", rs->host, rs->port, rs->db);
	rs->loop = loop;
	rs->worker = worker;
	rs->timeout_ms = timeout_ms ? timeout_ms : 200;
	rs->backoff_ms = RS_BACKOFF_MIN_MS;
	uv_timer_init(loop, &rs->timer);
	uv_unref((uv_handle_t *)&rs->timer);
	rs->timer.data = rs;
	rs_connect(rs);
	return rs;
}

/* Last step of redis_store_free: the store memory goes with its timer. */
static void rs_timer_close_cb(uv_handle_t *h)
{
	free(h->data);
}

void redis_store_free(struct redis_store *rs)
{
	redisAsyncContext *ac;

	if (rs == NULL)
		return;
	rs->closing = true;
	ac = rs->ac;
	rs->ac = NULL;
	rs->state = RS_DOWN;
	if (ac)
		redisAsyncFree(ac);     /* pending callbacks get NULL replies now */
	uv_timer_stop(&rs->timer);
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
	if (rs->state == RS_UP && rs->ac) {
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

/* The store timer: a connect attempt that took too long is dropped; a down store reconnects. */
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
			    "event=redis_down store=%s worker=%d reason=connect_timeout", rs->url,
			    rs->worker);
		}
		if (ac)
			redisAsyncFree(ac);
		uv_timer_start(&rs->timer, rs_retry_cb, rs->backoff_ms, 0);
		rs->backoff_ms = rs->backoff_ms * 2 > RS_BACKOFF_MAX_MS ? RS_BACKOFF_MAX_MS :
		    rs->backoff_ms * 2;
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
		log_event(LOG_LVL_WARNING, NULL, "event=redis_down store=%s worker=%d reason=%s",
		    rs->url, rs->worker, reason);
	}
	if (ac)
		redisAsyncFree(ac);   /* deferred by hiredis when inside its callback */
	uv_timer_stop(&rs->timer);
	uv_timer_start(&rs->timer, rs_retry_cb, rs->backoff_ms, 0);
	rs->backoff_ms = rs->backoff_ms * 2 > RS_BACKOFF_MAX_MS ? RS_BACKOFF_MAX_MS :
	    rs->backoff_ms * 2;
}

/* hiredis connect result: up (send AUTH/SELECT/SCRIPT LOAD first) or down with a retry. */
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
	uv_timer_stop(&rs->timer);
	rs->state = RS_UP;
	rs->backoff_ms = RS_BACKOFF_MIN_MS;
	if (rs->password[0]) {
		const char *argv[2] = { "AUTH", rs->password };

		redisAsyncCommandArgv(rs->ac, NULL, NULL, 2, argv, NULL);
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
	if (rs->down_logged) {
		rs->down_logged = false;
		log_event(LOG_LVL_WARNING, NULL, "event=redis_up store=%s worker=%d", rs->url,
		    rs->worker);
	}
}

/* hiredis lost the connection (not one we dropped): down, retry later. */
static void rs_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_store *rs = ac->data;

	if (rs == NULL || rs->ac != ac)
		return;             /* we dropped it ourselves */
	rs->ac = NULL;          /* hiredis frees it after this callback */
	rs_fail(rs, status == REDIS_OK ? "closed" : "connection_lost");
}

/* Starts a non-blocking connect with a deadline; on immediate failure the store is down. */
static void rs_connect(struct redis_store *rs)
{
	redisAsyncContext *ac;
	uint64_t cto = rs->timeout_ms * 5 < 1000 ? 1000 : rs->timeout_ms * 5;

	ac = redisAsyncConnect(rs->host, rs->port);
	if (ac == NULL || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		rs_fail(rs, "connect_failed");
		return;
	}
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
	uv_timer_start(&rs->timer, rs_retry_cb, cto, 0);
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

/* Completes req once: the reply to its cb, or the write's outcome to its done. */
static void rs_req_complete(struct redis_req *req, const redisReply *reply)
{
	struct redis_store *rs = req->rs;
	bool ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;

	req->live = false;
	rs_req_close_timer(req);
	if (req->cb) {
		req->cb(req->arg, reply);
		return;
	}
	if (reply && reply->type == REDIS_REPLY_ERROR) {
		uint64_t now = uv_now(rs->loop);

		if (rs->last_write_err_ms == 0 || now - rs->last_write_err_ms >= 60000) {
			rs->last_write_err_ms = now;
			log_event(LOG_LVL_WARNING, NULL, "event=redis_error store=%s worker=%d reply=\"%.120s\"",
			    rs->url, rs->worker, reply->str ? reply->str : "");
		}
	}
	if (req->done)
		req->done(req->arg, ok ? 0 : -1);
}

/* hiredis reply (NULL when the connection went away): NOSCRIPT is retried once with EVAL,
 * anything else completes the request unless it timed out or was cancelled. */
static void rs_req_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_req *req = privdata;
	const redisReply *reply = r;

	req->in_hiredis = false;
	if (reply && reply->type == REDIS_REPLY_ERROR && req->script >= 0 && !req->retried &&
	    reply->str && strncmp(reply->str, "NOSCRIPT", 8) == 0 && req->live &&
	    !(ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))) {
		/* The server lost its script cache (restart, SCRIPT FLUSH): send the text. */
		struct redis_store *rs = req->rs;

		req->retried = true;
		req->argv[0] = "EVAL";
		req->argvlen[0] = 4;
		req->argv[1] = (char *)rs->scripts[req->script].src;
		req->argvlen[1] = strlen(req->argv[1]);
		if (redisAsyncCommandArgv(ac, rs_req_reply_cb, req, req->argc,
		    (const char **)req->argv, req->argvlen) == REDIS_OK) {
			req->in_hiredis = true;
			return;
		}
		reply = NULL;
	}
	if (req->live)
		rs_req_complete(req, reply);
	rs_req_release(req);
}

/* The request deadline: the caller learns now and the silent connection is dropped. */
static void rs_req_timeout_cb(uv_timer_t *t)
{
	struct redis_req *req = t->data;
	struct redis_store *rs = req->rs;

	rs->timeouts++;
	if (req->live)
		rs_req_complete(req, NULL);
	/* A silent server is as good as a dead one: drop it; pending replies become NULL. */
	rs_fail(rs, "timeout");
}

/* Copies argv into one allocation with the request and sends it; 0, or -1 (store down or
 * send failed; neither cb nor done called). A request with cb or done has a deadline. */
static int rs_send(struct redis_store *rs, int script, int argc, const char **argv,
    const size_t *argvlen, redis_store_reply_cb cb, redis_store_done_cb done, void *arg,
    struct redis_req **reqp)
{
	struct redis_req *req;
	size_t total = 0, *lens;
	char *p;

	if (reqp)
		*reqp = NULL;
	/* Requests queue behind the very first connect (no outage yet) but fail fast during an
	 * outage, so sessions never wait on a dead server. */
	if (rs->closing || rs->ac == NULL || !(rs->state == RS_UP ||
	    (rs->state == RS_CONNECTING && !rs->down_logged && !rs->password[0] && !rs->db))) {
		rs->failfast++;
		return -1;
	}
	for (int i = 0; i < argc; i++)
		total += argvlen ? argvlen[i] : strlen(argv[i]);
	req = calloc(1, sizeof(*req) + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + total);
	if (req == NULL)
		return -1;
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
	req->cb = cb;
	req->done = done;
	req->arg = arg;
	req->script = script;
	req->argc = argc;
	if (redisAsyncCommandArgv(rs->ac, rs_req_reply_cb, req, argc, (const char **)req->argv,
	    req->argvlen) != REDIS_OK) {
		free(req);
		rs->failfast++;
		return -1;
	}
	req->in_hiredis = true;
	rs->sent++;
	if (cb || done) {
		uv_timer_init(rs->loop, &req->timer);
		req->timer.data = req;
		req->timer_open = true;
		uv_timer_start(&req->timer, rs_req_timeout_cb, rs->timeout_ms, 0);
	}
	if (reqp)
		*reqp = cb ? req : NULL;
	return 0;
}

int redis_store_command(struct redis_store *rs, int argc, const char **argv,
    const size_t *argvlen, redis_store_reply_cb cb, void *arg, struct redis_req **reqp)
{
	return rs_send(rs, -1, argc, argv, argvlen, cb, NULL, arg, reqp);
}

/* EVALSHA sha nkeys keys... args... (script >= 0), or the plain command keys... args...
 * (script -1), sent with cb or done. */
static int rs_send_script(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_reply_cb cb,
    redis_store_done_cb done, void *arg, struct redis_req **reqp)
{
	const char *sv[32], **argv = sv;
	size_t svlen[32], *argvlen = svlen;
	char nk[16];
	int argc = 0, rc, n = nkeys + nargs, extra = script >= 0 ? 3 : 0;

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
	rc = rs_send(rs, script, argc, argv, argvlen, cb, done, arg, reqp);
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
	return rs_send_script(rs, script, nkeys, nargs, keys_then_args, lens, cb, NULL, arg, reqp);
}

int redis_store_write(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_done_cb done, void *arg)
{
	return rs_send_script(rs, script < 0 ? -1 : script, nkeys, nargs, keys_then_args, lens,
	    NULL, done, arg, NULL);
}

void redis_req_cancel(struct redis_req *req)
{
	if (req == NULL)
		return;
	req->live = false;
	rs_req_close_timer(req);
	rs_req_release(req);
}
