/* lmdb_rtx.h — LMDB read transactions that never wait on another process's reader table.
 *
 * A read transaction needs a slot in the reader table of the environment's lock file. Taking
 * a new slot locks the table's mutex, which every process that opens the directory shares,
 * and mdb_txn_begin() waits on it without a bound: a process stopped (^Z, a debugger) or stuck
 * while it holds that mutex would stall every reader here — a scoring thread, a worker loop.
 * A table full of the stale slots of killed processes (a `mxgate learn` killed while it read)
 * fails every new read until something clears them.
 *
 * So slots are kept: a transaction that ends is reset (it keeps its slot) and the next begin
 * renews one of those, which takes no lock. A new slot is made by the pool's own thread; a
 * begin that needs one waits until that thread has been inside LMDB for LMDB_RTX_WAIT_MS
 * (counted by the thread's clock from when it went in: a thread not yet scheduled on a
 * loaded machine is waited for, up to 2 s), and not at all once it has been inside longer
 * than that (the mutex is held elsewhere): it fails, logged at most once a minute per pool,
 * and its caller abstains. The thread clears the slots of dead
 * processes (mdb_reader_check) when it starts and when the table is full. */
#ifndef MX_LMDB_RTX_H
#define MX_LMDB_RTX_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#define LMDB_RTX_WAIT_MS 100

struct lmdb_rtx;

/* Called on a thread of its own when the pool's thread comes out of LMDB after
 * lmdb_rtx_stop() returned false. It takes the owner's lock, calls lmdb_rtx_idle_seen, and
 * then the next lmdb_rtx_stop() succeeds once every callback started has called it (until
 * then it returns false: the owner must not free what the callbacks' argument points to; a
 * stop, a resume and a stop again while the thread is inside LMDB start two). */
typedef void (*lmdb_rtx_idle_cb)(void *arg);

/* Who reads: a failed begin is logged as the caller's, event=lmdb_error (store/) or
 * event=bayes_error (rules/bayes_db.c), whoever opened the shared environment first. */
enum lmdb_rtx_user { LMDB_RTX_STORE = 0, LMDB_RTX_BAYES };
#define LMDB_RTX_USERS 2

/* A pool for env (opened, MDB_NOTLS), named in logs as `store=lmdb:<dir>` (dir borrowed: it
 * outlives the pool). Starts its thread. NULL: out of memory or no thread. */
struct lmdb_rtx *lmdb_rtx_new(MDB_env *env, const char *dir, lmdb_rtx_idle_cb idle, void *arg);

/* A read transaction in *txn for user (whose event a failure is logged as: at most once a
 * minute per pool and user): 0, or -1 without waiting more than LMDB_RTX_WAIT_MS. Any
 * thread. End it with lmdb_rtx_end. */
int lmdb_rtx_begin(struct lmdb_rtx *r, enum lmdb_rtx_user user, MDB_txn **txn);
void lmdb_rtx_end(struct lmdb_rtx *r, MDB_txn *txn);
/* How many times a begin, of any pool in the process, waited for the pool's thread (a timed
 * wait on its condition): tests show a begin that failed at once, by no clock. */
uint64_t lmdb_rtx_waits(void);

/* Stops the pool's thread. true: stopped; the owner calls lmdb_rtx_free, then may close the
 * environment. false: the thread is inside LMDB (the reader table's mutex is held elsewhere);
 * it calls idle(arg) when it comes out, and the environment stays open until then. */
bool lmdb_rtx_stop(struct lmdb_rtx *r);
void lmdb_rtx_idle_seen(struct lmdb_rtx *r);
/* Undoes a stop (the owner opens the environment again): 0, or -1 (no thread: every read
 * that needs a new slot fails). */
int lmdb_rtx_resume(struct lmdb_rtx *r);
/* Runs fn(arg) on a detached thread of its own: 0, or -1 (logged). For an owner's thread that
 * comes out of LMDB and finds the environment closing: the closing joins it. */
int lmdb_rtx_detach_call(void (*fn)(void *), void *arg);
/* Ends the pool's kept transactions and frees it (after lmdb_rtx_stop returned true). NULL is
 * a no-op. */
void lmdb_rtx_free(struct lmdb_rtx *r);

#endif
