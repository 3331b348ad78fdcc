/* redis_rcpt_plugin.c — an asynchronous per-recipient check, as a Haraka hook_rcpt plugin
 * that asks Redis, built as redis_rcpt_plugin.so.
 *
 * For each recipient it sends `GET <prefix><recipient>` (the address lowercased): a value
 * lets it through, nil refuses it (550 5.1.1), no answer within `timeout_ms` defers it with
 * its own text (451 4.4.3, as a Haraka plugin's next(DENYSOFT, msg) from its own timer), and
 * a Redis that cannot be reached or closes the connection is MXGATE_ERROR (the entry's
 * on_error). Options (strings): `redis` (IPv4 HOST:PORT, default 127.0.0.1:6379), `prefix`
 * (default "rcpt:"), `timeout_ms` (default 2000; keep it below the entry's `timeout`).
 *
 * What it shows: one connection per instance, i.e. per worker (init gets the worker's
 * loop), opened at the first call and again after a failure, closed in fini(); requests
 * pipelined on it (Redis answers in order: each answer is the oldest request's); every call
 * answered exactly once though three things may answer it — Redis, the plugin's own timer
 * and the host's cancel() — because whoever answers takes the call out of the request
 * first; and a connection that stalls is given up as a whole: its requests are answered
 * and it is closed, so no answer for one request can come late and be taken for another's.
 * It links against nothing of mxgate: only plugin.h and libuv. */
#include "plugin.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rr;

/* One GET in flight. c is NULL once the call was answered (or cancelled): the request then
 * only waits for its answer, to keep the order. */
struct rr_req {
	struct rr_req *next;
	struct rr *rr;
	struct mxgate_call *c;
	uv_timer_t *timer;            /* the plugin's own timeout; freed in its close callback */
};

struct rr {
	const struct mxgate_host *host;
	uv_loop_t *loop;
	struct sockaddr_in addr;
	char prefix[64];
	uint64_t timeout_ms;
	uv_tcp_t *tcp;                /* NULL when not connected; freed in its close callback */
	struct rr_req *head, *tail;   /* oldest first */
	char buf[4096];               /* answers read, not yet matched */
	size_t len;
};

static void rr_handle_free_cb(uv_handle_t *h)
{
	free(h);
}

static int rr_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    void **instance, char *err, size_t errlen)
{
	struct rr *rr = calloc(1, sizeof(*rr));
	char hostport[128] = "127.0.0.1:6379", *colon;

	if (rr == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rr->host = host;
	rr->loop = args->loop;
	rr->timeout_ms = 2000;
	snprintf(rr->prefix, sizeof(rr->prefix), "rcpt:");
	for (size_t i = 0; i < args->noptions; i++) {
		const char *k = args->options[i].key, *v = args->options[i].value;
		char *end;

		if (strcmp(k, "redis") == 0)
			snprintf(hostport, sizeof(hostport), "%s", v);
		else if (strcmp(k, "prefix") == 0)
			snprintf(rr->prefix, sizeof(rr->prefix), "%s", v);
		else if (strcmp(k, "timeout_ms") == 0) {
			rr->timeout_ms = strtoull(v, &end, 10);
			if (*v == '\0' || *end != '\0' || rr->timeout_ms == 0 || rr->timeout_ms >= args->timeout_ms) {
				snprintf(err, errlen, "timeout_ms: want milliseconds, above 0 and below the entry's "
				    "timeout (%llu)", (unsigned long long)args->timeout_ms);
				goto fail;
			}
		} else {
			snprintf(err, errlen, "unknown option `%s` (redis_rcpt knows redis, prefix, timeout_ms)", k);
			goto fail;
		}
	}
	colon = strrchr(hostport, ':');
	if (colon == NULL || (*colon = '\0', uv_ip4_addr(hostport, atoi(colon + 1), &rr->addr)) != 0 ||
	    atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535) {
		snprintf(err, errlen, "redis: want an IPv4 HOST:PORT");
		goto fail;
	}
	*instance = rr;
	return 0;
fail:
	free(rr);
	return -1;
}

/* Takes the call out of q and answers it (nothing when it was answered already). */
static void rr_answer(struct rr_req *q, enum mxgate_action a, int code, const char *reply, const char *reason)
{
	struct mxgate_call *c = q->c;

	q->c = NULL;
	uv_timer_stop(q->timer);
	if (c)
		q->rr->host->done(c, a, code, reply, reason);
}

static void rr_req_free(struct rr_req *q)
{
	uv_close((uv_handle_t *)q->timer, rr_handle_free_cb);
	free(q);
}

/* Gives the connection up: every request waiting on it is answered (a, reason) and freed,
 * and it is closed. */
static void rr_reset(struct rr *rr, enum mxgate_action a, int code, const char *reply, const char *reason)
{
	struct rr_req *q, *list = rr->head;

	/* Taken off the instance first: done() may run the session's next command at once (a
	 * pipelined RCPT), whose request goes to a new connection and a new queue. */
	rr->head = rr->tail = NULL;
	rr->len = 0;
	if (rr->tcp) {
		uv_close((uv_handle_t *)rr->tcp, rr_handle_free_cb);
		rr->tcp = NULL;
	}
	while ((q = list) != NULL) {
		list = q->next;
		rr_answer(q, a, code, reply, reason);
		rr_req_free(q);
	}
}

static void rr_fini(void *instance)
{
	struct rr *rr = instance;

	/* Every session of this instance has ended: no call is left to answer. */
	rr_reset(rr, MXGATE_ERROR, 0, NULL, NULL);
	free(rr);
}

static void rr_timeout_cb(uv_timer_t *t)
{
	struct rr_req *q = t->data;

	/* Redis did not answer in time: the connection is stuck, not just this request (q is
	 * among those answered, and freed), and a late answer must not be taken for the next
	 * request's. */
	rr_reset(q->rr, MXGATE_TEMPFAIL, 451, "4.4.3 Recipient check timed out, try again later", "redis-timeout");
}

/* Matches complete answers in rr->buf to the oldest requests. false: the stream is not
 * Redis's (the caller resets the connection). */
static bool rr_parse(struct rr *rr)
{
	for (;;) {
		char *eol = memchr(rr->buf, '\n', rr->len);
		size_t used;
		bool found;
		struct rr_req *q;

		if (eol == NULL)
			return rr->len < sizeof(rr->buf);
		if (rr->buf[0] == '$') {
			long n = strtol(rr->buf + 1, NULL, 10);

			if (n < 0) {
				found = false;
				used = (size_t)(eol - rr->buf) + 1;
			} else {
				used = (size_t)(eol - rr->buf) + 1 + (size_t)n + 2;
				if (n > (long)sizeof(rr->buf) - 32)
					return false;   /* a value this plugin never stores */
				if (used > rr->len)
					return true;    /* the rest is still to come */
				found = true;
			}
		} else if (rr->buf[0] == '-' || rr->buf[0] == '+' || rr->buf[0] == ':') {
			return false;   /* an error (a wrong type, a password wanted): not an answer to GET */
		} else {
			return false;
		}
		q = rr->head;
		if (q == NULL)
			return false;   /* an answer nobody asked for */
		/* Consumed before it is answered: done() may run the next command at once, which
		 * may queue a request or reset the connection. */
		rr->head = q->next;
		if (rr->head == NULL)
			rr->tail = NULL;
		memmove(rr->buf, rr->buf + used, rr->len - used);
		rr->len -= used;
		if (found)
			rr_answer(q, MXGATE_CONTINUE, 0, NULL, NULL);
		else
			rr_answer(q, MXGATE_REJECT, 550, "5.1.1 No such user here", "redis-unknown");
		rr_req_free(q);
	}
}

static void rr_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct rr *rr = h->data;

	(void)suggested;
	b->base = rr->buf + rr->len;
	b->len = sizeof(rr->buf) - rr->len;
}

static void rr_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct rr *rr = s->data;

	(void)b;
	if (n == 0)
		return;
	if (n < 0)
		return rr_reset(rr, MXGATE_ERROR, 0, NULL, "redis-closed");
	rr->len += (size_t)n;
	if (!rr_parse(rr))
		rr_reset(rr, MXGATE_ERROR, 0, NULL, "redis-protocol");
}

static void rr_connect_cb(uv_connect_t *req, int status)
{
	struct rr *rr = req->data;
	uv_tcp_t *tcp = (uv_tcp_t *)req->handle;

	free(req);
	if (status == UV_ECANCELED || tcp != rr->tcp)
		return;   /* closed meanwhile (a reset, fini) */
	if (status < 0)
		return rr_reset(rr, MXGATE_ERROR, 0, NULL, "redis-unreachable");
	uv_read_start((uv_stream_t *)tcp, rr_alloc_cb, rr_read_cb);
}

static void rr_write_cb(uv_write_t *w, int status)
{
	free(w->data);
	free(w);
	(void)status;   /* a failed write shows as a read error or the timeout */
}

static void rr_on_rcpt(void *instance, struct mxgate_call *c)
{
	struct rr *rr = instance;
	const struct mxgate_host *host = rr->host;
	const char *rcpt = host->get(c, MXGATE_RCPT);
	struct rr_req *q;
	uv_write_t *w;
	uv_buf_t b;
	char *cmd, key[600];
	int n;

	if (rcpt == NULL || strlen(rcpt) + strlen(rr->prefix) >= sizeof(key))
		return host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	n = snprintf(key, sizeof(key), "%s%s", rr->prefix, rcpt);
	for (char *p = key + strlen(rr->prefix); *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (rr->tcp == NULL) {
		uv_connect_t *req = malloc(sizeof(*req));

		rr->tcp = malloc(sizeof(*rr->tcp));
		if (req == NULL || rr->tcp == NULL) {
			free(req);
			free(rr->tcp);
			rr->tcp = NULL;
			return host->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
		}
		uv_tcp_init(rr->loop, rr->tcp);
		rr->tcp->data = rr;
		req->data = rr;
		if (uv_tcp_connect(req, rr->tcp, (const struct sockaddr *)&rr->addr, rr_connect_cb) != 0) {
			free(req);
			rr_reset(rr, MXGATE_ERROR, 0, NULL, "redis-unreachable");
			return host->done(c, MXGATE_ERROR, 0, NULL, "redis-unreachable");
		}
	}
	q = calloc(1, sizeof(*q));
	cmd = malloc((size_t)n + 64);
	w = malloc(sizeof(*w));
	if (q == NULL || cmd == NULL || w == NULL || (q->timer = malloc(sizeof(*q->timer))) == NULL) {
		if (q)
			free(q->timer);
		free(q);
		free(cmd);
		free(w);
		return host->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
	}
	q->rr = rr;
	q->c = c;
	uv_timer_init(rr->loop, q->timer);
	q->timer->data = q;
	uv_timer_start(q->timer, rr_timeout_cb, rr->timeout_ms, 0);
	if (rr->tail)
		rr->tail->next = q;
	else
		rr->head = q;
	rr->tail = q;
	n = snprintf(cmd, (size_t)n + 64, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", n, key);
	w->data = cmd;
	b = uv_buf_init(cmd, (unsigned)n);
	if (uv_write(w, (uv_stream_t *)rr->tcp, &b, 1, rr_write_cb) != 0) {
		free(cmd);
		free(w);
		rr_reset(rr, MXGATE_ERROR, 0, NULL, "redis-write");
	}
}

/* The host gave up on c (its timeout, the client gone): c is never answered; the request
 * stays for Redis's answer, to keep the order. */
static void rr_cancel(void *instance, struct mxgate_call *c)
{
	struct rr *rr = instance;

	for (struct rr_req *q = rr->head; q; q = q->next)
		if (q->c == c) {
			q->c = NULL;
			uv_timer_stop(q->timer);
		}
}

const struct mxgate_plugin mxgate_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.desc_size = MXGATE_DESC_SIZE,
	.name = "redis_rcpt",
	.init = rr_init,
	.fini = rr_fini,
	.on_rcpt = rr_on_rcpt,
	.cancel = rr_cancel,
};
