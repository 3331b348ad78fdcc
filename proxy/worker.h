/* worker.h — event-loop threads. Each worker owns a libuv loop, accepts on its own
 * SO_REUSEPORT listening sockets, runs its sessions and keeps idle backend connections.
 *
 * Balance: the kernel's hash splits a few long-lived connections unevenly, so a worker that
 * accepts while it carries more than the least loaded worker hands the accepted descriptor
 * to that one (its hand-off queue, then its wakeup); the receiver runs the session. A
 * draining worker's queue is shut: the sender then keeps the connection.
 *
 * Config generations: the main thread loads a config into a `struct shared_gen` (config,
 * backend pool, TLS context; refcounted across workers). Each worker builds its own
 * `struct worker_gen` on its loop (module states); sessions hold the worker_gen they were
 * accepted under, so a reload never changes a running session. */
#ifndef MX_WORKER_H
#define MX_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "acceptor.h"
#include "chain.h"
#include "config.h"

struct mx_config;
struct pool;
struct tls_ctx;
struct relay;
struct session;
struct auth_worker;

struct shared_gen {
	atomic_int refs;
	struct mx_config *cfg;
	struct pool *pool;
	struct tls_ctx *tls_server;   /* NULL when no certificate configured */
	struct tls_ctx *tls_client;   /* STARTTLS to backends */
	/* The modules' required LMDB stores (config_lmdb_stores), opened when the generation is made:
	 * one that cannot open refuses the start or the reload, rather than a worker going on
	 * without the module. Held for the generation's life, so its workers' opens find them. */
	struct lmdb_store *stores[CONFIG_LMDB_STORES_MAX];
	size_t nstores;
	/* The classifier's lmdb:/dir store (rules.bayes.store), the same way: the workers'
	 * bayes_acquire then only takes a reference. NULL without one. */
	struct bayes_db *bayes_db;
	unsigned id;
	/* The modules configured but not running in some worker (chain_modules.failed, every
	 * worker's together), comma-separated; under a lock: shared_gen_failed. */
	char failed[128];
};
void shared_gen_ref(struct shared_gen *g);
void shared_gen_unref(struct shared_gen *g);
/* Copies g's failed modules into out (cap bytes; "" when none): true when there are any.
 * Any thread (the workers write them when they put g in force). */
bool shared_gen_failed(struct shared_gen *g, char *out, size_t cap);

struct worker;
struct worker_gen {
	struct shared_gen *shared;
	struct worker *worker;
	struct chain_modules mods;
	struct auth_worker *auth;     /* SMTP AUTH's Dovecot client and guard (auth.h), or NULL */
	struct lmdb_writer *ledger_wr; /* the delivery ledger's LMDB writer (ledger_store.h), or NULL */
	struct ledger_redis *ledger_rd; /* ... its Redis store (ledger_redis.h), or NULL */
	int sessions;                 /* sessions using this generation */
	bool retired;                 /* a newer one is current */
};

struct worker_handoff;

#define WORKER_MAX_LISTENERS 16
struct worker {
	int index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wakeup;            /* main -> worker: new generation / stop */
	struct worker_gen *gen;       /* current */
	struct shared_gen *pending;   /* handed over by main, taken on wakeup */
	atomic_int stop;              /* 1 = drain */
	atomic_int sweep;             /* 1 = close idle connections to vanished addresses */
	struct acceptor acceptor;     /* the listening sockets (acceptor.h) */
	bool listening;
	int sessions;                 /* all sessions on this worker */
	struct session *session_list; /* for drain */
	struct relay *idle;           /* idle backend connections (list) */
	int nidle;
	int nidle_extra;              /* of them, kept beyond pool_size for their sessions (relay.c) */
	struct relay *resetting;      /* connections whose RSET is in flight, kept for their sessions */
	uv_timer_t drain_timer;
	char readbuf[65536];          /* shared by every read on this loop */
	bool readbuf_busy;
	uint64_t session_seq;
	uint64_t accept_err_logged_ms;  /* the last event=accept_error (at most one a second) */
	uint64_t fd_low_logged_ms;      /* the last event=fd_low (at most one a second) */
	unsigned long accept_err_unlogged;  /* failures since */
	/* Read by the other workers: sessions plus connections queued to this one. */
	atomic_int load;
	struct worker *peers;         /* every worker (an array of npeers), this one included */
	int npeers;
	atomic_uint gen_id;           /* the generation it runs (event=reloaded, worker.c) */
	uv_mutex_t handoff_lock;      /* guards the three below */
	struct worker_handoff *handoff_head, *handoff_tail;
	bool handoff_open;            /* false once draining: no more hand-offs */
};

void worker_gen_session_release(struct worker_gen *wg);

struct listen_config;
/* accept(2) on a listener of w failed with the libuv error err and the kernel dropped the
 * connection (not for want of a descriptor: those are answered from the reserve, see
 * worker.c): counted as a connection refused (accept_error) and logged as
 * event=accept_error, at most once a second per worker. Worker's thread. */
void worker_note_accept_error(struct worker *w, const struct listen_config *lc, int err);
/* Main thread side. */
int worker_init(struct worker *w, int index, struct shared_gen *g, const int *fds,
    const struct listen_config *const *lcs, int n);
void worker_run(void *arg);
/* Lets the n workers of all hand connections to one another (before their threads start). */
void worker_set_peers(struct worker *all, int n);
/* A reload's generation id is about to be handed to the workers: event=reloaded
 * generation=id is logged once every worker runs it or a newer one (a test, or an operator,
 * that waits for the line finds every session accepted after it under that generation),
 * with the generation's accept_domains and backends.routes pattern counts (files read). */
void worker_note_reload(unsigned id, size_t accept_domains, size_t routes_domains);
/* Hands a new generation to w (takes its own reference). */
void worker_post_gen(struct worker *w, struct shared_gen *g);
/* Stop accepting, drain, end the loop. */
void worker_post_stop(struct worker *w);
/* Has w close its idle backend connections to an address that left (relay_sweep_vanished):
 * a backend's addresses changed (backendres.h). Main thread; not after worker_post_stop. */
void worker_post_sweep(struct worker *w);
#endif
