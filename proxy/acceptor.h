/* acceptor.h — accepting connections on listening sockets without uv_listen, for the SMTP
 * workers, the metrics listener and the control socket alike.
 *
 * libuv 1.44's uv_listen meets EMFILE/ENFILE by accepting and closing waiting clients
 * unheard (its reserve descriptor), and once that is gone calls back with EMFILE in a loop
 * until a descriptor frees: a spin. An acceptor polls its sockets (uv_poll) and accept4()s
 * itself, at most ACCEPTOR_BATCH a wakeup. It keeps one descriptor aside (/dev/null): on
 * EMFILE/ENFILE it gives it up, accepts the client, lets the owner answer it (refuse: a 421,
 * an HTTP 503, an ERR line; nothing is read), closes it and reopens the reserve. With no
 * reserve (or on ENOBUFS/ENOMEM) it stops polling for ACCEPTOR_RETRY_MS at a time until
 * the reserve is back: clients wait in the backlog, nothing spins.
 *
 *     acceptor_init(&a, loop, &ops, owner);     (the reserve, the retry timer, libuv's own)
 *     acceptor_add(&a, fd, ldata);              (each listening, non-blocking socket)
 *     acceptor_start(&a);
 *     ...
 *     acceptor_close(&a);                        (the polls, their sockets, timer, reserve)
 *
 * One loop's thread. The struct is the owner's (embedded); it must stay until the loop has
 * run the close callbacks (acceptor_closed tells). */
#ifndef MXGATE_ACCEPTOR_H
#define MXGATE_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ACCEPTOR_MAX 16
#define ACCEPTOR_BATCH 64
#define ACCEPTOR_RETRY_MS 100

struct acceptor;

struct acceptor_ops {
	/* A connection accepted on the listener added with ldata; takes fd. */
	void (*accepted)(struct acceptor *a, int fd, void *ldata);
	/* A client accepted with the reserve (no descriptor left): answer it with one
	 * non-blocking send if anything; the acceptor closes fd after. ip: its address
	 * ("local" for a unix socket). Optional (NULL: closed unanswered). */
	void (*refuse)(struct acceptor *a, int fd, const char *ip, void *ldata);
	/* Accepting stops for ACCEPTOR_RETRY_MS (err: errno); called at most once a second,
	 * for the log. Optional. */
	void (*paused)(struct acceptor *a, int err, void *ldata);
	/* accept failed and the kernel dropped the connection (err: a libuv error), or the
	 * poll failed. Optional. */
	void (*error)(struct acceptor *a, int err, void *ldata);
	/* Every handle closed after acceptor_close. Optional. */
	void (*closed)(struct acceptor *a);
};

struct acceptor {
	uv_loop_t *loop;
	const struct acceptor_ops *ops;
	void *data;                   /* the owner's */
	uv_poll_t polls[ACCEPTOR_MAX];
	int fds[ACCEPTOR_MAX];        /* theirs; closed in their close callback */
	void *ldata[ACCEPTOR_MAX];
	int n;
	bool running;                 /* started, not closed */
	bool paused;                  /* polls stopped until timer (no reserve left) */
	bool closing;
	int reserve_fd;               /* kept aside to answer a client once none is left, or -1 */
	uv_timer_t timer;             /* retries the reserve and restarts the polls */
	uv_tcp_t uv_reserve;          /* never opened: makes libuv take its own descriptor at init */
	uint64_t paused_logged_ms;    /* the last paused callback (at most one a second) */
	int open_handles;
};

/* 0, or -1 (no reserve descriptor could be opened; nothing to close). */
int acceptor_init(struct acceptor *a, uv_loop_t *loop, const struct acceptor_ops *ops, void *data);
/* Adds a listening, non-blocking socket; the acceptor owns it from here (closed by
 * acceptor_close), also on failure (-1). */
int acceptor_add(struct acceptor *a, int fd, void *ldata);
void acceptor_start(struct acceptor *a);
/* Stops accepting and closes the polls, their sockets, the timer and the reserve. */
void acceptor_close(struct acceptor *a);
/* For a refuse callback: sends data to fd at once (non-blocking, what its buffer takes),
 * half-closes, and reads off what the client sent (bounded) so that the close is a FIN,
 * not a reset that could cost the client the answer. */
void acceptor_answer(int fd, const char *data, size_t len);
/* The i-th socket (-1 once closed). */
int acceptor_fd(const struct acceptor *a, int i);

#endif
