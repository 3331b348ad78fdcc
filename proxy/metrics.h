/* metrics.h — Prometheus text exposition of the counters (counters.h), the backend pool's
 * state and whatever other modules register, served by a minimal HTTP/1.0 endpoint on the
 * main loop: GET /metrics -> 200, other paths 404, other methods 405. Requests are bounded
 * (4 KiB of header), connections time out after 5 s and at most 64 are open at once. */
#ifndef MX_METRICS_H
#define MX_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct pool;
struct metrics;

/* Listens on listen_addr ("127.0.0.1:9125", "[::1]:9125", ":9125" = all IPv4) on loop.
 * get_pool is called on each scrape (on loop's thread) for the current pool; it may be
 * NULL or return NULL (then no backend series). Returns NULL on a bad address or a bind
 * failure (logged as event=metrics_error). */
struct metrics *metrics_start(uv_loop_t *loop, const char *listen_addr, struct pool *(*get_pool)(void));
/* Stops listening and drops open connections; memory is freed in the close callbacks.
 * NULL ok. */
void metrics_stop(struct metrics *m);
/* The port actually bound (useful with port 0 in tests), or -1. */
int metrics_port(const struct metrics *m);

/* ------------------------------------------------------------ extension points */

/* A single value from another module: exposed as "mxgate_<name>" with HELP help and TYPE
 * counter (if name ends in "_total") or gauge. get is called on the main loop thread at
 * each scrape. name: [a-zA-Z_][a-zA-Z0-9_]*, not a built-in family. Registering an existing name replaces
 * it. Returns 0 or -1 (bad or built-in name, table full: 64 entries). Thread-safe. */
int metrics_register(const char *name, const char *help, long (*get)(void));

/* A labelled family, e.g. per-rule hits: at each scrape collect(arg, out) is called and
 * adds samples with metrics_out_sample(). type is "counter" or "gauge". Same name rules
 * as metrics_register; arg stays owned by the caller. */
struct metrics_out;
int metrics_register_family(const char *name, const char *help, const char *type,
    void (*collect)(void *arg, struct metrics_out *out), void *arg);
/* Adds one sample of the family being collected: mxgate_<name>{<label>="<value>"} v.
 * label may be NULL for an unlabelled sample; value is escaped as the format requires. */
void metrics_out_sample(struct metrics_out *out, const char *label, const char *label_value, double v);
/* Removes a registration (before the arg of a family goes away, e.g. on reload). */
void metrics_unregister(const char *name);

/* POST handlers (e.g. the classifier's POST /learn/spam): a POST whose path starts with
 * prefix and carries a Content-Length of at most max_body gets its body collected (bounded:
 * the head within 5 s of the accept, the body 30 s between reads and 1 h in all), then
 * fn(arg, loop, path, pin, body, len, client, reply) runs on the loop thread. The body is
 * held as a message is (msgbuf.h: in memory up to limits.memory_threshold and within
 * limits.memory_budget, in limits.spool_dir past them; metrics_set_spool), handed over
 * pinned: body[0..len) (not NUL-terminated) is readable from any thread until fn, which
 * owns pin, calls msgbuf_unpin(pin) on the loop thread. fn must call
 * metrics_post_reply(reply, ...) exactly once, now or later on the loop thread (the client
 * may be gone by then: the answer is dropped). Without a Content-Length: 411; bigger: 413
 * (both after the check below); a body that cannot be held (the spool full, removed,
 * unwritable): 503, logged event=metrics_refused. The body costs what arrives, not what
 * the head announces. Registering a prefix again replaces it. 0 or -1 (table full: 4
 * prefixes). Call before requests arrive. */
struct metrics_post_reply;
struct msgbuf_pin;
typedef void (*metrics_post_fn)(void *arg, uv_loop_t *loop, const char *path, struct msgbuf_pin *pin,
    const char *body, size_t len, const struct sockaddr *client, struct metrics_post_reply *reply);
int metrics_register_post(const char *prefix, size_t max_body, metrics_post_fn fn, void *arg);
void metrics_post_reply(struct metrics_post_reply *reply, int code, const char *text);
/* Where POST bodies are held (limits.memory_threshold and limits.spool_dir: NULL = /tmp,
 * copied), at start and on each reload; a body already being received keeps its own. Until
 * called: 256K and /tmp, the config's defaults. Loop thread. */
void metrics_set_spool(size_t threshold, const char *dir);
/* Optional, for a registered prefix: check(arg, path, client, &text) runs when the head is
 * complete, before any of the body is read and before the head's own errors (411, 400,
 * 501, 413: a refused client is not told the size limit); 0 lets the body be read,
 * else it is the status answered at once with *text (static) — so only a client the
 * handler would answer may hold the connection for the body's time (a 403 for one it
 * refuses costs what a GET does). 0 or -1 (prefix not registered). */
typedef int (*metrics_post_check_fn)(void *arg, const char *path, const struct sockaddr *client,
    const char **text);
int metrics_set_post_check(const char *prefix, metrics_post_check_fn check);

/* Renders the whole exposition text for pool (may be NULL) into a malloc'd,
 * NUL-terminated buffer (caller frees). Returns NULL on allocation failure. Used by the
 * endpoint; public for tests and for a future "stats" command. */
char *metrics_render(struct pool *pool, size_t *len);

/* The request parser (no I/O; public for tests and the fuzzer). Classifies the request head
 * in buf[0..len): 0 while incomplete (no empty line yet, under 4 KiB), else the status to
 * answer: 200 (GET or HEAD of /metrics, query ignored), 404 (other path), 405 (other
 * method), 400 (malformed request line), 431 (head too large). *head_only: HEAD. */
int metrics_parse_request(const char *buf, size_t len, bool *head_only);
/* The same, and copies the request target's path (query removed, NUL-terminated, cut at
 * pathsz - 1) to path when it is not NULL and the request line parsed. */
int metrics_parse_request_path(const char *buf, size_t len, bool *head_only, char *path, size_t pathsz);

/* A POST's head in buf[0..len) (need not be NUL-terminated), as the listener reads it
 * before it looks for a handler of the path (metrics_register_post). */
struct metrics_post_head {
	size_t head_len;             /* octets up to and including the empty line */
	char path[256];              /* the request target, as sent */
	int status;                  /* 0: the length is known; else the answer: 400 (a
	                              * Content-Length that is not 1*DIGIT between optional
	                              * blanks on its own line, or two that differ), 411 (none),
	                              * 501 (a Transfer-Encoding: chunked is not implemented) */
	unsigned long long want;     /* status 0: the body's length (ULLONG_MAX past 18 digits) */
	bool expect_continue;        /* "Expect: 100-continue" (RFC 9110 10.1.1) */
};
/* 1 with *h set when buf starts with a complete head of a POST whose request line names a
 * target ("POST /path HTTP/1.1": visible ASCII then a space; one of 256 octets or more is
 * none), else 0 (metrics_parse_request answers it). */
int metrics_post_head_parse(const char *buf, size_t len, struct metrics_post_head *h);

/* Other paths on the same listener (the status page, probes): for a GET or HEAD of a path
 * other than /metrics, route(path, ...) is called on the loop thread. It returns 0 with
 * the status code, a static content type and a malloc'd body (taken) of *len bytes, or -1
 * to let the server answer 404. NULL removes the router. */
typedef int (*metrics_route_fn)(const char *path, int *code, const char **ctype, char **body, size_t *len);
void metrics_set_router(metrics_route_fn route);

#endif
