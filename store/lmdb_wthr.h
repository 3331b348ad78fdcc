/* lmdb_wthr.h — the writer thread of an LMDB environment: runs the jobs queued to it, oldest
 * first, one at a time. Used by lmdb_store.c (the batches of the writers on a loop) and
 * bayes_db.c (learning, atime refreshes).
 *
 * LMDB's write lock is a mutex every process on the directory shares, and mdb_txn_begin()
 * waits on it without a bound: another process holding it (a stopped `mxgate learn`,
 * python3-lmdb, any LMDB tool) would otherwise hold whatever thread began the transaction —
 * a worker loop, a thread of libuv's pool (four, shared with the rules' scans, the
 * classifier, SPF). This thread is the one that waits; what its owner queues meanwhile is the
 * owner's to bound (lmdb_store: max_queued; bayes: each caller's wait).
 *
 * Closing: when the environment's last reference goes, its owner (under the lock of its list
 * of environments) calls lmdb_wthr_stop. An idle thread ends at once: the owner joins it in
 * lmdb_wthr_destroy. A thread inside a job, or with jobs queued, runs them all, ends, and
 * starts the owner's closer on a thread of its own (lmdb_rtx_detach_call): the closer calls
 * lmdb_wthr_closer_ran, takes the list's lock and finds it stopped. An open meanwhile takes
 * the environment back (lmdb_wthr_resume). */
#ifndef MX_LMDB_WTHR_H
#define MX_LMDB_WTHR_H

#include <pthread.h>
#include <stdbool.h>

struct lmdb_wjob {
	struct lmdb_wjob *next;                 /* the queue's */
	/* Runs on the writer thread, the mutex not held; the thread does not touch j after it
	 * returns (run may free it, or tell its owner, who frees it). */
	void (*run)(struct lmdb_wjob *j);
};

struct lmdb_wthr {
	/* The fields below. A job's owner may keep the state of its job under it too, and wait
	 * on cv (CLOCK_MONOTONIC) for it: cv is broadcast when a job is queued and after each
	 * job. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct lmdb_wjob *head, *tail;
	pthread_t thr;
	bool up;                                /* started, not joined */
	bool busy;                              /* running a job (inside LMDB) */
	bool stop;                              /* closing: end once the queue is empty */
	bool defer;                             /* lmdb_wthr_stop left the closing to the thread */
	bool exited;                            /* ended, not joined */
	int closers;                            /* closers the thread started, not yet run */
	void (*closer)(void *);
	void *arg;
};

/* The mutex and the condition variable; the thread starts with the first job. closer(arg):
 * see above. 0, or -1 (nothing to destroy). */
int lmdb_wthr_init(struct lmdb_wthr *t, void (*closer)(void *), void *arg);

/* After lmdb_wthr_stop returned true: joins the thread (if any) and destroys the mutex and
 * the condition variable. */
void lmdb_wthr_destroy(struct lmdb_wthr *t);

/* t->mu held: queues j (the thread's until its run is called), starting the thread on first
 * use. 0, or -1: no thread (j not queued; the caller logs it). */
int lmdb_wthr_queue_locked(struct lmdb_wthr *t, struct lmdb_wjob *j);

/* t->mu held: takes j back out of the queue. true: it was there (the caller's again); false:
 * the thread took it (its run is called, or was). */
bool lmdb_wthr_unqueue_locked(struct lmdb_wthr *t, struct lmdb_wjob *j);

/* The owner's list lock held, the last reference gone: tells the thread to stop. true: it is
 * idle (never started, ended, or waiting for work: it ends now) and no closer is pending —
 * the owner may destroy; false: it has jobs to finish or a closer to run, and the closer
 * comes. */
bool lmdb_wthr_stop(struct lmdb_wthr *t);

/* The owner's list lock held: undoes a stop (an open took the environment back). */
void lmdb_wthr_resume(struct lmdb_wthr *t);

/* The closer's first call, its owner's list lock held. */
void lmdb_wthr_closer_ran(struct lmdb_wthr *t);

#endif
