/* lmdb_env.h — the process's one list of open LMDB environments, for store/lmdb_store.c (the
 * pass caches, reputation, greylist) and rules/bayes_db.c (the classifier).
 *
 * LMDB allows one environment per directory and process: a second one on the same files is
 * what it forbids (closing either drops the other's fcntl locks on lock.mdb). So every user
 * opens a directory here, by path, and shares the environment, reference counted: the
 * memory map, the unnamed database (each user keeps its records under its own key prefixes),
 * the read transactions (an lmdb_rtx pool) and the writer thread (lmdb_wthr, the one thread
 * that waits for LMDB's write lock). The first opener's map_size wins.
 *
 * Closing: an environment whose last reference goes while one of its threads is inside LMDB
 * (the writer waiting for the write lock, the read pool's thread for the reader table's)
 * stays in the list, closing, until that thread comes out and a closer frees it; an open of
 * the directory meanwhile takes it back.
 *
 * The list's lock is never held across mkdir, mdb_env_open (which waits without a bound for
 * another process's lock on lock.mdb) or a close's sync: a lookup or a close of another
 * directory (a loop's control verb, a scrape) does not wait behind them. */
#ifndef MX_LMDB_ENV_H
#define MX_LMDB_ENV_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lmdb_rtx.h"
#include "lmdb_wthr.h"

#define LMDB_ENV_USERS LMDB_RTX_USERS    /* enum lmdb_rtx_user's values */

struct lmdb_env {
	char *dir;                       /* as opened (for logs) */
	MDB_env *env;
	MDB_dbi dbi;                     /* the unnamed database */
	struct lmdb_rtx *rtx;            /* read transactions; a failed begin is logged as its
	                                  * caller's (event=lmdb_error or bayes_error) */
	struct lmdb_wthr wt;             /* the writer thread */
	size_t max_key;                  /* the longest key the environment accepts */
	/* Each user's own state of the environment (zeroed, made by its first open here,
	 * freed with the environment): lmdb_store.c's sweeps and evictions, bayes_db.c's
	 * wait for the write lock. */
	void *state[LMDB_ENV_USERS];
	/* the list's */
	struct lmdb_env *next;
	int refs;                        /* 0: closing */
	bool ready;                      /* opened (the database handle too) */
	bool busy;                       /* its opener (mkdir, mdb_env_open) or its closer (the
	                                  * sync, the close) works on it without the list's lock:
	                                  * an open of the directory waits, nothing else does */
};

/* Why an open failed: the step (the return value of lmdb_env_open). */
enum lmdb_env_step {
	LMDB_ENV_OK = 0,
	LMDB_ENV_MEMORY,                 /* out of memory (the list entry, a user's state) */
	LMDB_ENV_THREAD,                 /* the writer's mutex or condition variable */
	LMDB_ENV_MKDIR,                  /* rc: errno */
	LMDB_ENV_OPEN,                   /* mdb_env_create ... mdb_env_open; rc: LMDB's or errno */
	LMDB_ENV_POOL,                   /* the read pool (out of memory or no thread) */
	LMDB_ENV_READ,                   /* no read transaction (the pool logged it) */
	LMDB_ENV_DBI,                    /* mdb_dbi_open; rc: LMDB's */
};

/* Opens dir (making it, mode 0750) or takes one more reference to the environment this
 * process has open there. map_size: bytes, for a new environment. user: whose state slot to
 * make (state_size bytes, zeroed) if the environment has none yet, and whose event the
 * read the open needs logs when it fails. LMDB_ENV_OK with *out set, or the failed step
 * with *rc (the errno or LMDB code; 0 when the step has none) and why (the reason in words,
 * without the directory). Nothing is logged here: the caller reports. Thread-safe. */
enum lmdb_env_step lmdb_env_open(const char *dir, uint64_t map_size, enum lmdb_rtx_user user,
    size_t state_size, struct lmdb_env **out, int *rc, char *why, size_t cap);
/* One more reference to the environment this process has open at dir, made there by user's
 * open (its state slot is set), or NULL when it has none (or it is closing): no file system
 * or LMDB call, so a loop may ask (it takes the list's lock, as a close does). */
struct lmdb_env *lmdb_env_find(const char *dir, enum lmdb_rtx_user user);
/* One more reference to an open environment. */
void lmdb_env_ref(struct lmdb_env *e);
/* Drops a reference; the last one syncs and closes the environment (when its threads are
 * out of LMDB). NULL is a no-op. */
void lmdb_env_close(struct lmdb_env *e);
/* The same for a loop's thread (a control verb on the main loop, a writer freed there): the
 * last reference's sync and close (mdb_env_sync waits for the disk) run on a thread of their
 * own, as a closer's do; the entry stays in the list, busy, until they are done (an open of
 * the directory meanwhile waits for them, a lookup finds none). NULL is a no-op. */
void lmdb_env_close_async(struct lmdb_env *e);

#endif
