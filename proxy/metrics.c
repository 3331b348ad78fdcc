/* metrics.c — Prometheus text format (version 0.0.4) over a minimal HTTP/1.0 server.
 *
 * The server reads one request head (bounded), answers it, half-closes and waits for the
 * client to close (so unread bytes never turn our close into a reset that truncates the
 * response). One timer per connection bounds each phase, as nginx's client_header_timeout,
 * client_body_timeout and send_timeout do: the head within 5 s of the accept, however it
 * trickles in (a client that sends nothing or drips a header costs 5 s); a POST body 30 s
 * between two reads (an mbox of megabytes uploaded slowly is not cut; its size is bounded
 * by the handler's max_body) and an hour in all, as limits.data_timeout and data_deadline
 * bound a message; the handler's answer at most 10 minutes (its own bounds end it first:
 * the store's timeout); the answer's write and the client's close 5 s. A POST body is held
 * as a message is (msgbuf.c: in memory up to limits.memory_threshold and within
 * limits.memory_budget, in limits.spool_dir past them) and handed to its handler pinned,
 * no copy. */
#include "metrics.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acceptor.h"
#include "backend.h"
#include "conncount.h"
#include "msgbuf.h"
#include "counters.h"
#include "log.h"
#include "netaddr.h"
#include "opstats.h"

#ifndef MX_VERSION
#define MX_VERSION "unknown"
#endif

enum {
	METRICS_MAX_REQUEST = 4096,   /* request head, bytes */
	METRICS_HEAD_MS = 5000,       /* accept to the end of the head; the answer's write and close */
	METRICS_BODY_IDLE_MS = 30000, /* between two reads of a POST body */
	METRICS_BODY_DEADLINE_MS = 3600000, /* the whole POST body, from the end of its head */
	METRICS_HANDLER_MS = 600000,  /* a POST handler's answer: a backstop, the handler's own bounds come first */
	METRICS_SPARE_MIN = 8192,     /* the least free space of a POST body's buffer read into */
	METRICS_READ_BUF = 65536,     /* the listener's read buffer: a POST body's other reads */
	METRICS_MAX_CONNS = 64,
	METRICS_MAX_REGS = 64,
};

/* ------------------------------------------------------------ text building */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_reserve(struct sbuf *sb, size_t more)
{
	if (sb->oom || sb->len + more + 1 <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 4096;
	while (cap < sb->len + more + 1)
		cap *= 2;
	char *p = realloc(sb->p, cap);
	if (!p) {
		sb->oom = true;
		return;
	}
	sb->p = p;
	sb->cap = cap;
}

static void sb_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	sb_reserve(sb, 128);
	if (sb->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sb->cap - sb->len) {
		sb_reserve(sb, (size_t)n);
		if (sb->oom)
			return;
		va_start(ap, fmt);
		vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
	}
	sb->len += (size_t)n;
}

/* HELP text escaping: backslash and newline. Label values also escape double quotes. */
static void sb_escaped(struct sbuf *sb, const char *s, bool quote)
{
	for (; s && *s; s++) {
		sb_reserve(sb, 2);
		if (sb->oom)
			return;
		if (*s == '\\') {
			sb->p[sb->len++] = '\\';
			sb->p[sb->len++] = '\\';
		} else if (*s == '\n') {
			sb->p[sb->len++] = '\\';
			sb->p[sb->len++] = 'n';
		} else if (quote && *s == '"') {
			sb->p[sb->len++] = '\\';
			sb->p[sb->len++] = '"';
		} else {
			sb->p[sb->len++] = *s;
		}
	}
	if (!sb->oom)
		sb->p[sb->len] = '\0';
}

static void sb_header(struct sbuf *sb, const char *name, const char *help, const char *type)
{
	sb_printf(sb, "# HELP mxgate_%s ", name);
	sb_escaped(sb, help, false);
	sb_printf(sb, "\n# TYPE mxgate_%s %s\n", name, type);
}

/* Sample values: integers print exactly, others with enough digits; NaN/Inf as the format
 * spells them. */
static void sb_value(struct sbuf *sb, double v)
{
	if (isnan(v))
		sb_printf(sb, "NaN\n");
	else if (isinf(v))
		sb_printf(sb, "%sInf\n", v > 0 ? "+" : "-");
	else if (v == floor(v) && fabs(v) < 9e15)
		sb_printf(sb, "%lld\n", (long long)v);
	else
		sb_printf(sb, "%.9g\n", v);
}

static void sb_sample(struct sbuf *sb, const char *name, const char *label, const char *lvalue, double v)
{
	sb_printf(sb, "mxgate_%s", name);
	if (label && *label) {
		sb_printf(sb, "{%s=\"", label);
		sb_escaped(sb, lvalue ? lvalue : "", true);
		sb_printf(sb, "\"}");
	}
	sb_printf(sb, " ");
	sb_value(sb, v);
}

/* ------------------------------------------------------------ registry */

enum backend_series {
	SERIES_UP = 0, SERIES_DRAINED, SERIES_LATENCY, SERIES_ACTIVE, SERIES_FAILS, SERIES_DELIVERED, SERIES_FAILED,
	SERIES__COUNT
};

static const struct { const char *name, *help, *type; } backend_series[SERIES__COUNT] = {
	[SERIES_UP] = { "backend_up", "1 if the backend is healthy (probes and deliveries), 0 if marked down.", "gauge" },
	[SERIES_DRAINED] = { "backend_drained",
	    "1 while the backend is drained (mxgatectl drain: no new transaction goes to it).", "gauge" },
	[SERIES_LATENCY] = { "backend_latency_seconds",
	    "Duration of the last successful health check (connect to EHLO reply).", "gauge" },
	[SERIES_ACTIVE] = { "backend_active_connections", "Connections to the backend in use.", "gauge" },
	[SERIES_FAILS] = { "backend_consecutive_failures",
	    "Consecutive failures (deliveries and health checks).", "gauge" },
	[SERIES_DELIVERED] = { "backend_delivered_total", "Messages the backend accepted.", "counter" },
	[SERIES_FAILED] = { "backend_failed_total", "Delivery attempts to the backend that failed.", "counter" },
};


struct metrics_reg {
	char name[96];
	char help[256];
	char type[8];
	long (*get)(void);
	void (*collect)(void *arg, struct metrics_out *out);
	void *arg;
};

struct metrics_out {
	struct sbuf *sb;
	const char *name;
};

static struct metrics_reg metrics_regs[METRICS_MAX_REGS];
static size_t metrics_nregs;
static pthread_mutex_t metrics_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static double metrics_start_time;

static bool metrics_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) >= sizeof metrics_regs[0].name)
		return false;
	for (const char *p = name; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
		if (!alpha && !(p > name && *p >= '0' && *p <= '9'))
			return false;
	}
	return true;
}

static bool metrics_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* true if name is one of the built-in families (a second HELP/TYPE for it would make the
 * exposition invalid). */
#define METRICS_REFUSAL_EVENTS "refusal_events_total"

static bool metrics_name_builtin(const char *name)
{
	if (strcmp(name, "build_info") == 0 || strcmp(name, "start_time_seconds") == 0 ||
	    strcmp(name, COUNTER_CONN_REFUSED_NAME) == 0 || strcmp(name, "backend_probe_failures_total") == 0 ||
	    strcmp(name, METRICS_REFUSAL_EVENTS) == 0)
		return true;
	for (int c = 0; c < COUNTER__COUNT; c++)
		if (strcmp(name, counter_name((enum counter)c)) == 0)
			return true;
	for (int s = 0; s < SERIES__COUNT; s++)
		if (strcmp(name, backend_series[s].name) == 0)
			return true;
	return false;
}

/* Adds or replaces a registration. Caller holds no lock. */
static int metrics_reg_put(const struct metrics_reg *r)
{
	int rc = -1;
	pthread_mutex_lock(&metrics_reg_lock);
	for (size_t i = 0; i < metrics_nregs; i++) {
		if (strcmp(metrics_regs[i].name, r->name) == 0) {
			metrics_regs[i] = *r;
			rc = 0;
			goto out;
		}
	}
	if (metrics_nregs < METRICS_MAX_REGS) {
		metrics_regs[metrics_nregs++] = *r;
		rc = 0;
	}
out:
	pthread_mutex_unlock(&metrics_reg_lock);
	return rc;
}

/* See metrics.h. */
int metrics_register(const char *name, const char *help, long (*get)(void))
{
	struct metrics_reg r = { 0 };
	if (!metrics_name_ok(name) || metrics_name_builtin(name) || !get)
		return -1;
	snprintf(r.name, sizeof r.name, "%s", name);
	snprintf(r.help, sizeof r.help, "%s", help ? help : "");
	snprintf(r.type, sizeof r.type, "%s", metrics_ends_with(name, "_total") ? "counter" : "gauge");
	r.get = get;
	return metrics_reg_put(&r);
}

/* See metrics.h. */
int metrics_register_family(const char *name, const char *help, const char *type,
    void (*collect)(void *arg, struct metrics_out *out), void *arg)
{
	struct metrics_reg r = { 0 };
	if (!metrics_name_ok(name) || metrics_name_builtin(name) || !collect || !type ||
	    (strcmp(type, "counter") != 0 && strcmp(type, "gauge") != 0))
		return -1;
	snprintf(r.name, sizeof r.name, "%s", name);
	snprintf(r.help, sizeof r.help, "%s", help ? help : "");
	snprintf(r.type, sizeof r.type, "%s", type);
	r.collect = collect;
	r.arg = arg;
	return metrics_reg_put(&r);
}

/* See metrics.h. */
void metrics_unregister(const char *name)
{
	if (!name)
		return;
	pthread_mutex_lock(&metrics_reg_lock);
	for (size_t i = 0; i < metrics_nregs; i++) {
		if (strcmp(metrics_regs[i].name, name) == 0) {
			memmove(&metrics_regs[i], &metrics_regs[i + 1], (metrics_nregs - i - 1) * sizeof metrics_regs[0]);
			metrics_nregs--;
			break;
		}
	}
	pthread_mutex_unlock(&metrics_reg_lock);
}

/* See metrics.h. */
void metrics_out_sample(struct metrics_out *out, const char *label, const char *label_value, double v)
{
	if (out && out->sb)
		sb_sample(out->sb, out->name, label, label_value, v);
}

/* ------------------------------------------------------------ rendering */

static double metrics_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double backend_series_value(struct backend *b, enum backend_series s)
{
	switch (s) {
	case SERIES_UP: return backend_is_up(b) ? 1 : 0;
	case SERIES_DRAINED: return backend_is_drained(b) ? 1 : 0;
	case SERIES_LATENCY: return (double)atomic_load(&backend_health(b)->latency_us) / 1e6;
	case SERIES_ACTIVE: return backend_active_all(b);
	case SERIES_FAILS: return atomic_load(&backend_health(b)->fails);
	case SERIES_DELIVERED: return (double)backend_delivered(b);
	case SERIES_FAILED: return (double)backend_failed(b);
	default: return 0;
	}
}

/* Every event=reject / event=tempfail line written so far, by event, stage and reason
 * (opstats_refusal): the count of a key is the number of its lines. */
static void metrics_render_refusal_events(struct sbuf *sb)
{
	struct opstats_event_row *rows = malloc(OPSTATS_EVENT_ROWS * sizeof(*rows));
	size_t n = rows ? opstats_refusal_events(rows, OPSTATS_EVENT_ROWS) : 0;

	sb_header(sb, METRICS_REFUSAL_EVENTS, "Refusals as the log shows them: event=reject and event=tempfail "
	    "lines by event, stage and reason (the decisions once each are refusals_total and tempfails_total).",
	    "counter");
	for (size_t i = 0; i < n; i++) {
		sb_printf(sb, "mxgate_" METRICS_REFUSAL_EVENTS "{event=\"%s\",stage=\"", rows[i].tempfail ? "tempfail" : "reject");
		sb_escaped(sb, rows[i].stage, true);
		sb_printf(sb, "\",reason=\"");
		sb_escaped(sb, rows[i].reason, true);
		sb_printf(sb, "\"} ");
		sb_value(sb, (double)rows[i].count);
	}
	if (rows == NULL)
		sb->oom = true;      /* no partial family: the scrape fails as on any shortage */
	free(rows);
}

static void metrics_render_pool(struct sbuf *sb, struct pool *pool)
{
	size_t n = pool->nservers + pool->nextra;
	if (n == 0)
		return;
	sb_header(sb, "backend_probe_failures_total", "Health probes of the backend that failed, by the step "
	    "they failed at (connect, greeting, ehlo, starttls, tls, maildir).", "counter");
	for (size_t i = 0; i < n; i++) {
		struct backend *b = i < pool->nservers ? &pool->servers[i] : &pool->extra[i - pool->nservers];
		for (int s = 0; s < BACKEND_PROBE__COUNT; s++) {
			sb_printf(sb, "mxgate_backend_probe_failures_total{backend=\"");
			sb_escaped(sb, b->url ? b->url : b->host, true);
			sb_printf(sb, "\",stage=\"%s\"} ", backend_probe_step_name(s));
			sb_value(sb, (double)atomic_load(&backend_health(b)->probe_fails[s]));
		}
	}
	for (int s = 0; s < SERIES__COUNT; s++) {
		sb_header(sb, backend_series[s].name, backend_series[s].help, backend_series[s].type);
		for (size_t i = 0; i < n; i++) {
			struct backend *b = i < pool->nservers ? &pool->servers[i] : &pool->extra[i - pool->nservers];
			sb_sample(sb, backend_series[s].name, "backend", b->url ? b->url : b->host,
			    backend_series_value(b, (enum backend_series)s));
		}
	}
}

/* See metrics.h. */
char *metrics_render(struct pool *pool, size_t *len)
{
	struct sbuf sb = { 0 };

	if (metrics_start_time == 0)
		metrics_start_time = metrics_now();
	sb_header(&sb, "build_info", "Version of the running mxgate.", "gauge");
	sb_sample(&sb, "build_info", "version", MX_VERSION, 1);
	sb_header(&sb, "start_time_seconds", "Start time of the metrics endpoint, Unix seconds.", "gauge");
	sb_sample(&sb, "start_time_seconds", NULL, NULL, floor(metrics_start_time));
	for (int c = 0; c < COUNTER__COUNT; c++) {
		const char *name = counter_name((enum counter)c);
		sb_header(&sb, name, counter_help((enum counter)c), counter_is_gauge((enum counter)c) ? "gauge" : "counter");
		sb_sample(&sb, name, NULL, NULL, (double)counter_get((enum counter)c));
	}
	sb_header(&sb, COUNTER_CONN_REFUSED_NAME,
	    "Client connections turned away before a session served them, by reason.", "counter");
	for (int r = 0; r < CONN_REFUSED__COUNT; r++)
		sb_sample(&sb, COUNTER_CONN_REFUSED_NAME, "reason", counter_conn_refused_reason((enum conn_refusal)r),
		    (double)counter_conn_refused_get((enum conn_refusal)r));
	metrics_render_refusal_events(&sb);
	sb_header(&sb, "connections_uncounted_total", "Clients admitted without a per-IP count: their "
	    "slot window was full (max_connections_per_ip not applied to them; event=conncount_crowded).", "counter");
	sb_sample(&sb, "connections_uncounted_total", NULL, NULL, (double)conncount_uncounted());
	sb_header(&sb, "message_memory_bytes", "Message bytes held in memory now, all sessions and "
	    "POST /learn bodies together (limits.memory_budget bounds it; the rest is in limits.spool_dir).", "gauge");
	sb_sample(&sb, "message_memory_bytes", NULL, NULL, (double)msgbuf_mem_in_use());
	if (pool)
		metrics_render_pool(&sb, pool);

	pthread_mutex_lock(&metrics_reg_lock);
	for (size_t i = 0; i < metrics_nregs; i++) {
		struct metrics_reg *r = &metrics_regs[i];
		sb_header(&sb, r->name, r->help, r->type);
		if (r->get) {
			sb_sample(&sb, r->name, NULL, NULL, (double)r->get());
		} else {
			struct metrics_out out = { &sb, r->name };
			r->collect(r->arg, &out);
		}
	}
	pthread_mutex_unlock(&metrics_reg_lock);

	if (sb.oom || !sb.p) {
		free(sb.p);
		return NULL;
	}
	if (len)
		*len = sb.len;
	return sb.p;
}

/* ------------------------------------------------------------ HTTP */

struct metrics_conn {
	struct metrics *m;
	struct metrics_conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t sh;
	int open_handles;
	bool closing;
	bool responded;
	bool writing;                 /* the response write is in flight */
	bool peer_eof;                /* the client half-closed before the write finished */
	char *resp;
	size_t len;
	char req[METRICS_MAX_REQUEST + 1];  /* + the terminator */
	/* a POST to a registered handler: the body being collected, then the pending reply */
	const struct metrics_post_reg *post;
	struct msgbuf *body;          /* what arrived of it (msgbuf.h: memory, then spool_dir) */
	size_t body_want;
	struct metrics_post_reply *reply;
	char post_path[256];          /* its request target */
	uint64_t body_deadline;       /* uv_now() past which the body is given up */
};

/* Outlives its connection: the handler answers once, maybe after the client went away. */
struct metrics_post_reply { struct metrics_conn *c; };

struct metrics_post_reg {
	char prefix[64];
	size_t max_body;
	metrics_post_fn fn;
	metrics_post_check_fn check;  /* may be NULL */
	void *arg;
};

static struct metrics_post_reg metrics_posts[4];
static int metrics_nposts;

int metrics_register_post(const char *prefix, size_t max_body, metrics_post_fn fn, void *arg)
{
	struct metrics_post_reg *r = NULL;

	for (int i = 0; i < metrics_nposts; i++)
		if (strcmp(metrics_posts[i].prefix, prefix) == 0)
			r = &metrics_posts[i];
	if (r == NULL) {
		if (metrics_nposts >= (int)(sizeof(metrics_posts) / sizeof(metrics_posts[0])) ||
		    strlen(prefix) >= sizeof(r->prefix))
			return -1;
		r = &metrics_posts[metrics_nposts++];
	}
	snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
	r->max_body = max_body;
	r->fn = fn;
	r->arg = arg;
	return 0;
}

/* See metrics.h. */
int metrics_set_post_check(const char *prefix, metrics_post_check_fn check)
{
	for (int i = 0; i < metrics_nposts; i++)
		if (strcmp(metrics_posts[i].prefix, prefix) == 0) {
			metrics_posts[i].check = check;
			return 0;
		}
	return -1;
}

struct metrics {
	uv_loop_t *loop;
	struct acceptor acceptor;     /* the listening socket (acceptor.h: no uv_listen) */
	struct pool *(*get_pool)(void);
	struct metrics_conn *conns;
	int nconns;
	bool server_open;
	bool stopping;
	char addr[128];
	/* where a POST body is read when not straight into its buffer (metrics_alloc_cb): one
	 * for the listener, its reads all on the loop thread, each taken before the next */
	char readbuf[METRICS_READ_BUF];
};

/* Where POST bodies are held (metrics_set_spool); the config's defaults until set. */
static size_t metrics_spool_threshold = 256 * 1024;
static char *metrics_spool_dir;

/* See metrics.h. */
void metrics_set_spool(size_t threshold, const char *dir)
{
	char *d = dir ? strdup(dir) : NULL;

	if (dir && !d)
		return;               /* out of memory: the last one stays */
	free(metrics_spool_dir);
	metrics_spool_dir = d;
	metrics_spool_threshold = threshold;
}

static void metrics_maybe_free(struct metrics *m)
{
	if (m->stopping && !m->server_open && m->nconns == 0)
		free(m);
}

static void metrics_conn_closed_cb(uv_handle_t *h)
{
	struct metrics_conn *c = h->data;
	struct metrics *m = c->m;

	if (--c->open_handles > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	m->nconns--;
	if (c->reply)
		c->reply->c = NULL;       /* the handler still owes its answer: nobody hears it */
	msgbuf_free(c->body);
	free(c->resp);
	free(c);
	metrics_maybe_free(m);
}

static void metrics_conn_close(struct metrics_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, metrics_conn_closed_cb);
	uv_close((uv_handle_t *)&c->timer, metrics_conn_closed_cb);
}

static void metrics_timeout_cb(uv_timer_t *t)
{
	metrics_conn_close(t->data);
}

static void metrics_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct metrics_conn *c = req->data;
	/* Now wait for the client's EOF (read_cb) or the timer. */
	if (status < 0)
		metrics_conn_close(c);
}

static void metrics_write_cb(uv_write_t *req, int status)
{
	struct metrics_conn *c = req->data;
	c->writing = false;
	if (c->closing)
		return;
	if (status < 0 || c->peer_eof) {
		metrics_conn_close(c);
		return;
	}
	c->sh.data = c;
	if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, metrics_shutdown_cb) != 0)
		metrics_conn_close(c);
}

/* Queues the response: status line, headers and body (may be NULL). Takes body. */
static void metrics_respond(struct metrics_conn *c, int code, const char *reason,
    const char *ctype, char *body, size_t body_len, bool head_only)
{
	char head[256];
	int hn = snprintf(head, sizeof head,
	    "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
	    code, reason, ctype, body_len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
	size_t total = (size_t)hn + (head_only ? 0 : body_len);

	c->responded = true;
	c->resp = malloc(total);
	if (!c->resp) {
		free(body);
		metrics_conn_close(c);
		return;
	}
	memcpy(c->resp, head, (size_t)hn);
	if (!head_only && body_len)
		memcpy(c->resp + hn, body, body_len);
	free(body);
	uv_buf_t buf = uv_buf_init(c->resp, (unsigned)total);
	c->wr.data = c;
	/* the answer's write and the client's close: a short bound again, whatever came before */
	uv_timer_start(&c->timer, metrics_timeout_cb, METRICS_HEAD_MS, 0);
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, metrics_write_cb) != 0)
		metrics_conn_close(c);
	else
		c->writing = true;
}

static void metrics_respond_text(struct metrics_conn *c, int code, const char *reason, bool head_only)
{
	char *body = malloc(64);
	size_t n = 0;
	if (body)
		n = (size_t)snprintf(body, 64, "%d %s\n", code, reason);
	metrics_respond(c, code, reason, "text/plain; charset=utf-8", body, n, head_only);
}

/* The reason phrase of a handler's status. */
static const char *metrics_reason(int code)
{
	return code == 200 ? "OK" : code == 400 ? "Bad Request" : code == 403 ? "Forbidden" :
	    code == 404 ? "Not Found" : code == 413 ? "Payload Too Large" :
	    code == 503 ? "Service Unavailable" : "Error";
}

void metrics_post_reply(struct metrics_post_reply *r, int code, const char *text)
{
	struct metrics_conn *c = r->c;

	free(r);
	if (c == NULL || c->closing)
		return;
	c->reply = NULL;
	{
		size_t n = strlen(text);
		char *body = malloc(n + 1);

		if (body)
			memcpy(body, text, n + 1);
		metrics_respond(c, code, metrics_reason(code), "text/plain; charset=utf-8",
		    body, body ? n : 0, false);
	}
}

static void metrics_continue_rest_cb(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

/* s[0..n) equals the lowercase name, any case. */
static bool metrics_name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* See metrics.h. */
int metrics_post_head_parse(const char *buf, size_t len, struct metrics_post_head *h)
{
	size_t end = 0, i, t, cls = 0;

	memset(h, 0, sizeof(*h));
	if (len < 5 || memcmp(buf, "POST ", 5) != 0)
		return 0;
	/* The head ends at the first empty line (CRLF CRLF, or bare LF LF). */
	for (i = 1; i < len && !end; i++)
		if (buf[i] == '\n' && (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
			end = i + 1;
	if (!end)
		return 0;
	for (t = 5; t < end && buf[t] == ' '; t++)
		;
	/* the target: visible ASCII up to the blank before the version (RFC 9112 3.2) */
	for (i = t; i < end && (unsigned char)buf[i] > ' ' && (unsigned char)buf[i] < 0x7f; i++)
		;
	if (i == t || i - t >= sizeof(h->path) || buf[i] != ' ')
		return 0;
	memcpy(h->path, buf + t, i - t);
	h->path[i - t] = '\0';
	h->head_len = end;
	h->status = 411;
	/* The header lines: name ":" OWS value OWS (RFC 9112 5); the request line first. */
	for (i = (const char *)memchr(buf, '\n', end) - buf + 1; i < end; ) {
		const char *line = buf + i, *nl = memchr(line, '\n', end - i), *colon;
		size_t ll = (size_t)(nl - line), vs, ve;

		i += ll + 1;
		if (ll && line[ll - 1] == '\r')
			ll--;
		if ((colon = memchr(line, ':', ll)) == NULL)
			continue;
		vs = (size_t)(colon - line) + 1;
		ve = ll;
		while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
			vs++;
		while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		if (metrics_name_is(line, (size_t)(colon - line), "content-length")) {
			unsigned long long v = 0;
			size_t k;

			for (k = vs; k < ve && line[k] >= '0' && line[k] <= '9'; k++)
				v = k - vs < 18 ? v * 10 + (unsigned long long)(line[k] - '0') : ULLONG_MAX;
			if (k == vs || k != ve || (cls++ && v != h->want)) {
				h->status = 400;
				return 1;
			}
			h->want = v;
		} else if (metrics_name_is(line, (size_t)(colon - line), "transfer-encoding")) {
			h->status = 501;
			return 1;
		} else if (metrics_name_is(line, (size_t)(colon - line), "expect")) {
			h->expect_continue = ve - vs == 12 && strncasecmp(line + vs, "100-continue", 12) == 0;
		}
	}
	if (cls)
		h->status = 0;
	return 1;
}

/* "Expect: 100-continue" in a POST head we take (RFC 9110 10.1.1): the interim 100 before
 * the body, or the client (curl, for a body over 1 KiB) waits a second before sending it.
 * Not when the body already follows the head. 25 octets on a socket nothing else was
 * written to yet: uv_try_write; should none go, the client sends the body after its own
 * wait, as without it; should only part go, the rest is queued (ahead of the reply). */
static void metrics_post_continue(struct metrics_conn *c, const struct metrics_post_head *h)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	uv_buf_t buf = uv_buf_init((char *)cont, sizeof(cont) - 1);

	if (!h->expect_continue || c->len > h->head_len || c->body_want == 0)
		return;
	int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
	if (n > 0 && (size_t)n < buf.len) {
		uv_write_t *req = malloc(sizeof(*req));
		uv_buf_t rest = uv_buf_init((char *)cont + n, (unsigned)(buf.len - (size_t)n));
		if (req && uv_write(req, (uv_stream_t *)&c->tcp, &rest, 1, metrics_continue_rest_cb) != 0)
			free(req);
	}
}

/* A POST body that cannot be held: 503, as the listener answers when it runs out of
 * descriptors, the client told to come back, logged. reason: spool_space (at the head: the
 * announced body goes past memory_threshold and would take half or more of spool_dir's
 * free space, avail octets; Postfix's rule, as MAIL SIZE= meets it) or spool (what arrived
 * could not be written: spool_dir full, removed, unwritable; err its errno, 0 for out of
 * memory). */
static void metrics_post_refuse(struct metrics_conn *c, const char *reason, int err, uint64_t avail)
{
	const char *dir = metrics_spool_dir ? metrics_spool_dir : "/tmp";
	const char *detail = avail != UINT64_MAX ? "insufficient space" : err ? strerror(err) : "out of memory";
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	char ip[64], dv[300], dt[80], text[400], *body;

	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0 ||
	    netaddr_sockaddr_string((const struct sockaddr *)&ss, ip, sizeof(ip)) < 0)
		snprintf(ip, sizeof(ip), "-");
	if (avail != UINT64_MAX)
		log_event(LOG_LVL_WARNING, NULL, "event=metrics_refused listen=%s client=%s reason=%s status=503 "
		    "path=%s size=%zu avail=%llu dir=%s", c->m->addr, ip, reason, c->post_path, c->body_want,
		    (unsigned long long)avail, log_val(dv, sizeof(dv), dir));
	else
		log_event(LOG_LVL_WARNING, NULL, "event=metrics_refused listen=%s client=%s reason=%s status=503 "
		    "path=%s size=%zu received=%zu dir=%s detail=%s", c->m->addr, ip, reason, c->post_path,
		    c->body_want, c->body ? msgbuf_len(c->body) : 0, log_val(dv, sizeof(dv), dir),
		    log_val(dt, sizeof(dt), detail));
	snprintf(text, sizeof(text), "cannot hold the body (limits.spool_dir %s: %s), try again later\n", dir, detail);
	msgbuf_free(c->body);         /* nothing of it is used: its memory and file go now */
	c->body = NULL;
	body = strdup(text);
	metrics_respond(c, 503, metrics_reason(503), "text/plain; charset=utf-8", body, body ? strlen(body) : 0, false);
}

/* A complete POST head for a registered prefix: the handler and the body's length (the
 * head is c->req[0..*head_len)). 0 = not such a request (metrics_parse_request answers it),
 * 1 = ours, -1 = ours but malformed or too big (answered here). */
static int metrics_post_start(struct metrics_conn *c, size_t *head_len)
{
	struct metrics_post_head h;

	if (metrics_post_head_parse(c->req, c->len, &h) != 1)
		return 0;
	for (int i = 0; i < metrics_nposts; i++) {
		const struct metrics_post_reg *r = &metrics_posts[i];

		if (strncmp(h.path, r->prefix, strlen(r->prefix)) != 0)
			continue;
		/* the handler's refusal first: a client it would not serve learns nothing more
		 * from us, not even the size limit (413) or what its head lacked */
		if (r->check) {
			struct sockaddr_storage ss;
			int sl = sizeof(ss), code;
			const char *text = NULL;

			memset(&ss, 0, sizeof(ss));
			uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl);
			if ((code = r->check(r->arg, h.path, (const struct sockaddr *)&ss, &text)) != 0) {
				char *body = text ? strdup(text) : NULL;

				metrics_respond(c, code, metrics_reason(code), "text/plain; charset=utf-8",
				    body, body ? strlen(body) : 0, false);
				return -1;
			}
		}
		if (h.status) {
			metrics_respond_text(c, h.status, h.status == 411 ? "Length Required" : h.status == 501 ?
			    "Not Implemented" : "Bad Request", false);
			return -1;
		}
		if (h.want > r->max_body) {
			metrics_respond_text(c, 413, "Payload Too Large", false);
			return -1;
		}
		c->body_want = (size_t)h.want;
		snprintf(c->post_path, sizeof(c->post_path), "%s", h.path);
		{
			uint64_t avail;

			if (h.want > metrics_spool_threshold &&
			    !msgbuf_spool_fits(metrics_spool_dir, h.want, &avail)) {
				metrics_post_refuse(c, "spool_space", 0, avail);
				return -1;
			}
		}
		/* no message memory yet: an announced length costs only what arrives */
		if ((c->body = msgbuf_new(metrics_spool_threshold, metrics_spool_dir)) == NULL) {
			metrics_post_refuse(c, "spool", 0, UINT64_MAX);
			return -1;
		}
		c->post = r;
		metrics_post_continue(c, &h);
		*head_len = h.head_len;
		return 1;
	}
	return 0;
}

/* Appends body bytes (those read into the buffer's own free space, metrics_alloc_cb, are
 * taken where they are); with the whole body, hands it to the handler, pinned. */
static void metrics_post_feed(struct metrics_conn *c, const char *p, size_t n)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	struct msgbuf_pin *pin;
	const char *body;
	size_t len;

	if (n > c->body_want - msgbuf_len(c->body))
		n = c->body_want - msgbuf_len(c->body);
	if (msgbuf_append(c->body, p, n) != 0) {
		/* past memory_threshold or the budget it spills, so this is the spool failing
		 * (full, removed, unwritable) or memory running out: nothing of it is learned */
		metrics_post_refuse(c, "spool", msgbuf_error(c->body), UINT64_MAX);
		return;
	}
	if (msgbuf_len(c->body) < c->body_want) {
		/* the body's bound is between reads (nginx's client_body_timeout), from the end
		 * of the head on: a big body sent slowly but steadily is not cut; one that stops
		 * is, and one trickled just inside it meets the deadline */
		uint64_t now = uv_now(c->m->loop), left;

		if (c->body_deadline == 0)
			c->body_deadline = now + METRICS_BODY_DEADLINE_MS;
		left = c->body_deadline > now ? c->body_deadline - now : 0;
		uv_timer_start(&c->timer, metrics_timeout_cb,
		    left < METRICS_BODY_IDLE_MS ? left : METRICS_BODY_IDLE_MS, 0);
		return;
	}
	/* the handler reads the bytes as they are now, wherever they are (memory, the
	 * spool file's mapping): the pin keeps them, counted in the budget while in memory,
	 * after the buffer is gone */
	if ((pin = msgbuf_pin(c->body, &body, &len)) == NULL) {
		metrics_post_refuse(c, "spool", errno, UINT64_MAX);
		return;
	}
	msgbuf_free(c->body);
	c->body = NULL;
	/* the handler answers within its own bounds (a learn: the store's timeout); this
	 * one only keeps a handler that never answered from holding the connection */
	uv_timer_start(&c->timer, metrics_timeout_cb, METRICS_HANDLER_MS, 0);
	c->reply = calloc(1, sizeof(*c->reply));
	if (c->reply == NULL) {
		msgbuf_unpin(pin);
		metrics_respond_text(c, 500, "Internal Server Error", false);
		return;
	}
	c->reply->c = c;
	c->responded = true;          /* no more request parsing; the reply comes later */
	memset(&ss, 0, sizeof(ss));
	uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl);
	c->post->fn(c->post->arg, c->m->loop, c->post_path, pin, body, len, (const struct sockaddr *)&ss, c->reply);
}

/* See metrics.h. */
int metrics_parse_request(const char *buf, size_t len, bool *head_only)
{
	return metrics_parse_request_path(buf, len, head_only, NULL, 0);
}

/* See metrics.h. */
int metrics_parse_request_path(const char *buf, size_t len, bool *head_only, char *path, size_t pathsz)
{
	char method[16], target[1024], version[16];
	char line[METRICS_MAX_REQUEST + 1];
	size_t end = 0;

	*head_only = false;
	/* The head ends at the first empty line (CRLF CRLF, or bare LF LF). */
	for (size_t i = 1; i < len && !end; i++)
		if (buf[i] == '\n' && (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
			end = i + 1;
	if (!end)
		return len >= METRICS_MAX_REQUEST ? 431 : 0;
	const char *eol = memchr(buf, '\n', end);
	size_t linelen = (size_t)(eol - buf);
	if (linelen > METRICS_MAX_REQUEST)
		return 431;
	memcpy(line, buf, linelen);
	line[linelen] = '\0';
	if (linelen && line[linelen - 1] == '\r')
		line[linelen - 1] = '\0';
	if (strlen(line) != strcspn(line, "\r") ||
	    sscanf(line, "%15s %1023s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/", 5) != 0)
		return 400;
	bool head = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head)
		return 405;
	*head_only = head;
	char *q = strchr(target, '?');
	if (q)
		*q = '\0';
	/* the absolute form (RFC 9112 3.2.2), as sent through a proxy: the path after the
	 * authority ("" when there is none: a 404) */
	char *t = target;
	if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
		t = strchr(t + (t[4] == ':' ? 7 : 8), '/');
		if (t == NULL)
			t = target + strlen(target);
	}
	if (path && pathsz)
		snprintf(path, pathsz, "%s", t);
	return strcmp(t, "/metrics") == 0 ? 200 : 404;
}

static metrics_route_fn metrics_router;

/* See metrics.h. */
void metrics_set_router(metrics_route_fn route)
{
	metrics_router = route;
}

/* Offers a 404 path to the router; true when it answered. */
static bool metrics_route(struct metrics_conn *c, bool head)
{
	char path[1024];
	const char *ctype = "text/plain; charset=utf-8";
	char *body = NULL;
	size_t len = 0;
	int code = 200;
	bool h;

	if (metrics_router == NULL || metrics_parse_request_path(c->req, c->len, &h, path, sizeof path) != 404 ||
	    metrics_router(path, &code, &ctype, &body, &len) != 0)
		return false;
	metrics_respond(c, code, code == 200 ? "OK" : code == 503 ? "Service Unavailable" : "Error", ctype,
	    body, len, head);
	return true;
}

/* Answers a complete request head classified as status. */
static void metrics_handle_request(struct metrics_conn *c, int status, bool head)
{
	switch (status) {
	case 200: break;
	case 404:
		if (metrics_route(c, head))
			return;
		metrics_respond_text(c, 404, "Not Found", head);
		return;
	case 405: metrics_respond_text(c, 405, "Method Not Allowed", false); return;
	case 431: metrics_respond_text(c, 431, "Request Header Fields Too Large", false); return;
	default: metrics_respond_text(c, 400, "Bad Request", false); return;
	}
	size_t len = 0;
	char *body = metrics_render(c->m->get_pool ? c->m->get_pool() : NULL, &len);
	if (!body) {
		metrics_respond_text(c, 500, "Internal Server Error", head);
		return;
	}
	metrics_respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len, head);
}

static void metrics_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct metrics_conn *c = h->data;
	if (c->post && !c->responded) {
		/* a POST body (not yet whole), never read past its end: straight into its
		 * buffer's free space while it is in memory and has room (grown for it at the
		 * body's start, as a session reads a message), msgbuf_append then copies nothing;
		 * else the listener's read buffer, appended from there (spilled past the
		 * threshold or the budget) */
		size_t left = c->body_want - msgbuf_len(c->body), avail = 0;
		char *spare = left ? msgbuf_spare(c->body, left < METRICS_SPARE_MIN ? left : METRICS_SPARE_MIN,
		    msgbuf_len(c->body) == 0, &avail) : NULL;

		if (spare == NULL) {
			spare = c->m->readbuf;
			avail = sizeof(c->m->readbuf);
		}
		*buf = uv_buf_init(spare, (unsigned)(left && left < avail ? left : avail));
		return;
	}
	if (c->responded) {
		/* Draining after the response: reuse the request buffer. */
		*buf = uv_buf_init(c->req, sizeof c->req);
		return;
	}
	/* one octet kept for the terminator the head's string searches need */
	*buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - 1 - c->len));
}

static void metrics_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct metrics_conn *c = s->data;

	if (c->closing)
		return;
	if (nread < 0) {
		/* A client that half-closes right after its request still gets the answer. */
		if (c->writing && nread == UV_EOF)
			c->peer_eof = true;
		else
			metrics_conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (c->post && !c->responded) {
		metrics_post_feed(c, buf->base, (size_t)nread);
		return;
	}
	if (c->responded)
		return;
	c->len += (size_t)nread;
	c->req[c->len] = '\0';
	{
		size_t head_len = 0;
		int pr = metrics_post_start(c, &head_len);

		if (pr < 0)
			return;
		if (pr > 0) {
			metrics_post_feed(c, c->req + head_len, c->len - head_len);
			return;
		}
	}
	bool head = false;
	int status = metrics_parse_request(c->req, c->len, &head);
	if (status != 0)
		metrics_handle_request(c, status, head);
}

static void metrics_accepted(struct acceptor *a, int fd, void *ldata)
{
	struct metrics *m = a->data;
	struct metrics_conn *c;

	(void)ldata;
	if (m->stopping || (c = calloc(1, sizeof *c)) == NULL) {
		close(fd);
		return;
	}
	c->m = m;
	uv_tcp_init(m->loop, &c->tcp);
	uv_timer_init(m->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	m->nconns++;
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd);                /* not taken by a failed uv_tcp_open */
		metrics_conn_close(c);
		return;
	}
	if (m->nconns > METRICS_MAX_CONNS) {
		metrics_conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, metrics_timeout_cb, METRICS_HEAD_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, metrics_alloc_cb, metrics_read_cb) != 0)
		metrics_conn_close(c);
}

/* No descriptor left: the client accepted with the acceptor's reserve gets a 503 at once. */
static void metrics_refuse(struct acceptor *a, int fd, const char *ip, void *ldata)
{
	static const char resp[] = "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 35\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
	    "no file descriptor left, try again\n";
	struct metrics *m = a->data;

	(void)ldata;
	acceptor_answer(fd, resp, sizeof(resp) - 1);
	counter_inc(COUNTER_OPERATOR_REFUSED);
	log_event(LOG_LVL_WARNING, NULL, "event=metrics_refused listen=%s client=%s reason=fd_limit status=503",
	    m->addr, ip);
}

static void metrics_accept_paused(struct acceptor *a, int err, void *ldata)
{
	struct metrics *m = a->data;

	(void)ldata;
	log_event(LOG_LVL_WARNING, NULL, "event=accept_paused listener=metrics listen=%s reason=\"%s\" retry_ms=%d",
	    m->addr, strerror(err), ACCEPTOR_RETRY_MS);
}

static void metrics_server_closed(struct acceptor *a);

static const struct acceptor_ops metrics_acceptor_ops = {
	.accepted = metrics_accepted,
	.refuse = metrics_refuse,
	.paused = metrics_accept_paused,
	.closed = metrics_server_closed,
};

/* Parses "host:port", "[v6]:port", ":port" or "port" into ss. 0 or -1. */
static int metrics_parse_addr(const char *addr, struct sockaddr_storage *ss)
{
	char host[128] = "";
	const char *port;
	struct addrinfo hints = { .ai_flags = AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM }, *res = NULL;

	if (!addr || !*addr)
		return -1;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof host)
			return -1;
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		host[end - addr - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (colon) {
			if ((size_t)(colon - addr) >= sizeof host)
				return -1;
			memcpy(host, addr, (size_t)(colon - addr));
			host[colon - addr] = '\0';
			port = colon + 1;
		} else {
			port = addr;
		}
	}
	if (!*port || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
		return -1;
	if (!*host || strcmp(host, "*") == 0)
		snprintf(host, sizeof host, "0.0.0.0");
	/* Numeric in practice; a name is resolved once at start-up (blocking is fine there). */
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void metrics_server_closed(struct acceptor *a)
{
	struct metrics *m = a->data;
	m->server_open = false;
	metrics_maybe_free(m);
}

/* A listening, non-blocking TCP socket on ss (what uv_tcp_bind and uv_listen did: with
 * SO_REUSEADDR), or a libuv error. */
static int metrics_listen_fd(const struct sockaddr_storage *ss)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, e;
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (fd < 0)
		return uv_translate_sys_error(errno);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) == 0 && listen(fd, 64) == 0)
		return fd;
	e = errno;
	close(fd);
	return uv_translate_sys_error(e);
}

/* See metrics.h. */
struct metrics *metrics_start(uv_loop_t *loop, const char *listen_addr, struct pool *(*get_pool)(void))
{
	struct sockaddr_storage ss = { 0 };
	struct metrics *m;
	int r;

	if (!loop || metrics_parse_addr(listen_addr, &ss) != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=metrics_error listen=%s reason=\"bad address\"",
		    listen_addr ? listen_addr : "");
		return NULL;
	}
	m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->loop = loop;
	m->get_pool = get_pool;
	snprintf(m->addr, sizeof m->addr, "%s", listen_addr);
	if (metrics_start_time == 0)
		metrics_start_time = metrics_now();
	int fd = metrics_listen_fd(&ss);
	if (fd < 0) {
		r = fd;
		free(m);
		goto fail_log;
	}
	if (acceptor_init(&m->acceptor, loop, &metrics_acceptor_ops, m) != 0) {
		r = uv_translate_sys_error(errno);
		close(fd);
		free(m);
		goto fail_log;
	}
	m->server_open = true;
	if (acceptor_add(&m->acceptor, fd, NULL) != 0) {
		r = UV_ENOMEM;
		m->stopping = true;
		acceptor_close(&m->acceptor);
		goto fail_log;
	}
	acceptor_start(&m->acceptor);
	log_event(LOG_LVL_INFO, NULL, "event=metrics_listen listen=%s port=%d", listen_addr, metrics_port(m));
	return m;
fail_log:
	log_event(LOG_LVL_ERROR, NULL, "event=metrics_error listen=%s reason=%s", listen_addr, uv_err_name(r));
	return NULL;
}

/* See metrics.h. */
int metrics_port(const struct metrics *m)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (!m || getsockname(acceptor_fd(&m->acceptor, 0), (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* See metrics.h. */
void metrics_stop(struct metrics *m)
{
	if (!m || m->stopping)
		return;
	m->stopping = true;
	for (struct metrics_conn *c = m->conns; c; c = c->next)
		metrics_conn_close(c);
	acceptor_close(&m->acceptor);
}
