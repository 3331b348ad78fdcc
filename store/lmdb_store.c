/* lmdb_store.c — shared LMDB environments and per-worker write-behind, see lmdb_store.h. */
#include "lmdb_store.h"

#include "proxy/fnv.h"
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/log.h"
#include "lmdb_env.h"
#include "store_stats.h"

#define LS_MAX_SWEEPS 16                 /* distinct swept prefixes per environment */
#define LS_PREFIX_MAX 32
#define LS_DEFAULT_MAP (256ull << 20)
#define LS_DEFAULT_FLUSH_MS 500
#define LS_DEFAULT_MAX_QUEUED 100000
#define LS_DEFAULT_SWEEP_MS (3600ull * 1000)
#define LS_LOG_EVERY_MS 60000

/* ---- environments -----------------------------------------------------------------------
 * The environment of a directory is the process's one (lmdb_env.h: shared by path with every
 * other user, the classifier's too, reference counted; reads from its lmdb_rtx pool, which
 * never waits for the reader table's lock: a worker loop reads inline). A struct lmdb_store
 * is this module's state of an environment (its slot there), shared by every writer on it.
 *
 * Writes of the writers on a loop go through the environment's writer thread (lmdb_wthr.h:
 * the one thread that waits for LMDB's write lock while another process holds it); a writer
 * has at most one batch there, and what it queues meanwhile is bounded (max_queued: then
 * dropped and counted). */

struct ls_sweep { char prefix[LS_PREFIX_MAX]; uint64_t last_ms; };
struct lw_batch;

struct lmdb_store {
	struct lmdb_env *e;             /* the environment (e->state[LMDB_RTX_STORE] is this) */
	struct log_rated err_rated;     /* write errors (a full map): logged once a minute */
	/* When each prefix was last swept. Only touched inside a write transaction: LMDB's
	 * writer lock is the lock. */
	struct ls_sweep sweeps[LS_MAX_SWEEPS];
	int nsweeps;
	/* Records the map held when it was last found full or near full (0: never): writers
	 * with a rank keep the count below it (atomic: read before a write transaction). */
	uint64_t evict_at;
	struct log_rated evict_rated;   /* evictions: logged once a minute */
};

/* Wall clock in ms: records are compared across restarts and nodes. */
static uint64_t ls_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Below this much free space a failed write is put down to a full file system. */
#define LS_LOW_SPACE (1u << 20)

/* The reason an LMDB call failed with rc, in words an operator acts on. LMDB turns a
 * short write (what a file system that fills up mid-write gives) into EIO: when the
 * file system holding dir has (almost) no room left, that EIO is a full disk. */
static const char *ls_reason(const char *dir, int rc, char *buf, size_t cap)
{
	struct statvfs vfs;

	if (rc == MDB_MAP_FULL)
		return "no space left in the map: map_size reached (MDB_MAP_FULL)";
	if (rc == ENOSPC || rc == EDQUOT ||
	    (rc == EIO && statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < LS_LOW_SPACE)) {
		snprintf(buf, cap, "no space left on device (%s)", mdb_strerror(rc));
		return buf;
	}
	return mdb_strerror(rc);
}

/* Logs a write error at most once a minute per environment (any thread). */
static void ls_log_error(struct lmdb_store *st, const char *module, int rc)
{
	char why[128];
	bool now;

	log_rated_note(&st->err_rated, LS_LOG_EVERY_MS, &now);
	if (!now)
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=lmdb_error store=lmdb:%s module=%s reason=\"%s\"%s",
	    st->e->dir, module, ls_reason(st->e->dir, rc, why, sizeof(why)),
	    rc == MDB_MAP_FULL ? " hint=raise_map_size" : "");
}

struct lmdb_store *lmdb_store_open_why(const char *dir, uint64_t map_size, char *why, size_t cap)
{
	struct lmdb_store *st;
	struct lmdb_env *e;
	enum lmdb_env_step step;
	char stepwhy[160], full[128];
	const char *reason;
	int rc;

	if (why != NULL && cap > 0)
		why[0] = '\0';
	if (dir == NULL || dir[0] == '\0')
		return NULL;
	step = lmdb_env_open(dir, map_size ? map_size : LS_DEFAULT_MAP, LMDB_RTX_STORE,
	    sizeof(*st), &e, &rc, stepwhy, sizeof(stepwhy));
	if (step != LMDB_ENV_OK) {
		reason = step == LMDB_ENV_OPEN ? ls_reason(dir, rc, full, sizeof(full)) : stepwhy;
		/* out of memory and no thread as before unlogged; the read pool logs its own */
		if (step == LMDB_ENV_MKDIR || step == LMDB_ENV_OPEN || step == LMDB_ENV_DBI)
			log_event(LOG_LVL_ERROR, NULL, "event=lmdb_error store=lmdb:%s reason=\"%s\"",
			    dir, reason);
		if (why != NULL && cap > 0)
			snprintf(why, cap, "%s", reason);
		return NULL;
	}
	st = e->state[LMDB_RTX_STORE];
	st->e = e;
	return st;
}

struct lmdb_store *lmdb_store_open(const char *dir, uint64_t map_size)
{
	return lmdb_store_open_why(dir, map_size, NULL, 0);
}

struct lmdb_store *lmdb_store_open_existing(const char *dir)
{
	struct lmdb_env *e = dir != NULL ? lmdb_env_find(dir, LMDB_RTX_STORE) : NULL;

	return e != NULL ? e->state[LMDB_RTX_STORE] : NULL;
}

void lmdb_store_close(struct lmdb_store *st)
{
	if (st != NULL)
		lmdb_env_close(st->e);
}

void lmdb_store_close_async(struct lmdb_store *st)
{
	if (st != NULL)
		lmdb_env_close_async(st->e);
}

const char *lmdb_store_path(const struct lmdb_store *st)
{
	return st->e->dir;
}

size_t lmdb_store_max_key(const struct lmdb_store *st)
{
	return st->e->max_key;
}

int lmdb_store_usage(struct lmdb_store *st, uint64_t *records, uint64_t *bytes_used,
    uint64_t *map_size)
{
	MDB_stat ms;
	MDB_envinfo mi;

	if (mdb_env_stat(st->e->env, &ms) != 0 || mdb_env_info(st->e->env, &mi) != 0)
		return -1;
	if (records)
		*records = ms.ms_entries;
	if (bytes_used)
		*bytes_used = ((uint64_t)mi.me_last_pgno + 1) * ms.ms_psize;
	if (map_size)
		*map_size = mi.me_mapsize;
	return 0;
}

/* ---- reads -------------------------------------------------------------------------------- */

int lmdb_store_get(struct lmdb_store *st, const void *key, size_t klen, void *val, size_t cap,
    size_t *len)
{
	MDB_txn *txn;
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	if (klen == 0 || klen > st->e->max_key)
		return 0;            /* such a key can never have been written */
	if (lmdb_rtx_begin(st->e->rtx, LMDB_RTX_STORE, &txn) < 0)
		return -1;
	rc = mdb_get(txn, st->e->dbi, &k, &v);
	if (rc == 0) {
		memcpy(val, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
		*len = v.mv_size;
	}
	lmdb_rtx_end(st->e->rtx, txn);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : -1;
}

int lmdb_store_foreach(struct lmdb_store *st, const char *prefix, lmdb_store_each_fn fn, void *arg)
{
	size_t plen = strlen(prefix);
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)prefix }, v;
	int rc;

	if (plen == 0 || lmdb_rtx_begin(st->e->rtx, LMDB_RTX_STORE, &txn) < 0)
		return -1;
	if (mdb_cursor_open(txn, st->e->dbi, &cur) != 0) {
		lmdb_rtx_end(st->e->rtx, txn);
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0 ||
		    !fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size))
			break;
	mdb_cursor_close(cur);
	lmdb_rtx_end(st->e->rtx, txn);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

int lmdb_store_get_many(struct lmdb_store *st, const struct lmdb_key *keys, size_t n,
    lmdb_store_value_fn fn, void *arg)
{
	MDB_txn *txn;
	int rc = 0;

	if (lmdb_rtx_begin(st->e->rtx, LMDB_RTX_STORE, &txn) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { keys[i].len, (void *)keys[i].data }, v;

		if (keys[i].len == 0 || keys[i].len > st->e->max_key)
			rc = MDB_NOTFOUND;
		else
			rc = mdb_get(txn, st->e->dbi, &k, &v);
		if (rc == MDB_NOTFOUND)
			fn(arg, i, NULL, 0);
		else if (rc == 0)
			fn(arg, i, v.mv_data, v.mv_size);
		else
			break;
	}
	lmdb_rtx_end(st->e->rtx, txn);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

/* ---- queued updates ----------------------------------------------------------------------- */

enum lw_kind { LW_PUT = 0, LW_DEL, LW_MERGE };

struct lw_op {
	uint64_t hash;               /* of the key, to skip most comparisons in lmdb_writer_get */
	size_t off;                  /* key, then value, in the queue's data */
	uint32_t klen, vlen;
	uint8_t kind;                /* enum lw_kind */
};

struct lw_queue {
	struct lw_op *ops;
	size_t n, cap;
	char *data;
	size_t used, dcap;
};

struct lw_waiter {
	struct lw_waiter *next;
	lmdb_writer_done_cb done;
	void *arg;
};

struct lw_batch {                    /* one flush handed to the store's writer thread */
	struct lmdb_wjob job;            /* in the thread's queue (first: lw_batch_job_run) */
	struct lw_batch *next;           /* in w->done */
	struct lmdb_writer *w;
	struct lw_queue q;
	struct lw_waiter *waiters;       /* told when this batch is applied */
	int status;                      /* 0 or -1, set by the writer thread */
};

struct lmdb_writer {
	struct lmdb_store *st;
	uv_loop_t *loop;                 /* NULL: synchronous */
	uv_timer_t timer;
	bool timer_open, closing;
	struct lw_queue q;               /* the next batch */
	struct lw_waiter *waiters;       /* flushes waiting for q */
	struct lw_batch *cur;            /* with the writer thread (at most one: keeps the order) */
	bool flush_wanted;
	uv_async_t async;                /* the writer thread applied a batch: w->done */
	bool async_open;
	pthread_mutex_t mu;              /* the fields below, closing */
	struct lw_batch *done;           /* applied, for the loop (lw_async_cb) */
	int inflight;                    /* batches handed to the writer thread, not done */
	bool loop_gone;                  /* closing: the timer and the async handle closed */
	/* copied configuration: a batch may outlive the caller's config */
	char name[32];
	char prefixes[4][LS_PREFIX_MAX];
	int nprefixes;
	lmdb_merge_fn merge;
	lmdb_expired_fn expired;
	lmdb_rank_fn rank;
	uint64_t grown;                  /* records this writer added since its last eviction
	                                  * (writer thread; one batch at a time) */
	uint64_t sweep_interval, flush_interval;
	size_t max_queued;
	void *ctx;
	struct lmdb_writer_stats stats;
	struct store_stats *sstats;      /* the process-wide drop metric of this user */
	struct log_rated drop_rated;     /* dropped updates: logged once a minute */
	bool close_async;                /* its store reference dropped off the thread that
	                                  * frees it (lmdb_store_apply_start_on's: the loop) */
};

/* Counts a batch of n updates, no longer waiting (the queued gauge); a failed one's are
 * lost: the drop metric. */
static void lw_count_batch(struct lmdb_writer *w, int status, size_t n)
{
	store_stats_add_queued(w->sstats, -(long)n);
	w->stats.batches++;
	if (status < 0) {
		w->stats.failed++;
		store_stats_add_dropped(w->sstats, n);
	}
}

static void lw_queue_free(struct lw_queue *q)
{
	free(q->ops);
	free(q->data);
	memset(q, 0, sizeof(*q));
}

/* Appends one op (data copied); 0 or -1 (out of memory). */
static int lw_queue_add(struct lw_queue *q, enum lw_kind kind, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	struct lw_op *op;

	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct lw_op *ops = realloc(q->ops, cap * sizeof(*ops));

		if (ops == NULL)
			return -1;
		q->ops = ops;
		q->cap = cap;
	}
	if (q->used + klen + vlen > q->dcap) {
		size_t dcap = q->dcap ? q->dcap : 4096;
		char *d;

		while (q->used + klen + vlen > dcap)
			dcap *= 2;
		if ((d = realloc(q->data, dcap)) == NULL)
			return -1;
		q->data = d;
		q->dcap = dcap;
	}
	op = &q->ops[q->n++];
	op->hash = fnv1a64(key, klen);
	op->off = q->used;
	op->klen = (uint32_t)klen;
	op->vlen = (uint32_t)vlen;
	op->kind = (uint8_t)kind;
	memcpy(q->data + q->used, key, klen);
	if (vlen)
		memcpy(q->data + q->used + klen, val, vlen);
	q->used += klen + vlen;
	return 0;
}

/* Drops the records of one prefix the writer's rule calls expired (inside a write txn). */
static void lw_sweep_prefix(struct lmdb_writer *w, MDB_txn *txn, const char *prefix,
    uint64_t now_ms)
{
	struct lmdb_store *st = w->st;
	size_t plen = strlen(prefix);
	MDB_cursor *cur;
	MDB_val k = { plen, (void *)prefix }, v;
	int rc;

	if (mdb_cursor_open(txn, st->e->dbi, &cur) != 0)
		return;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		/* after a delete the cursor already stands on the next record: MDB_NEXT
		 * returns it (LMDB keeps C_DEL for exactly this loop) */
		if (w->expired(k.mv_data, k.mv_size, v.mv_data, v.mv_size, now_ms, w->ctx))
			mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
}

/* About every sweep_interval per prefix and environment, sweeps the writer's prefixes (inside
 * a write txn, so the stamps need no other lock). */
static void lw_sweep(struct lmdb_writer *w, MDB_txn *txn, uint64_t now_ms)
{
	struct lmdb_store *st = w->st;

	for (int i = 0; i < w->nprefixes; i++) {
		struct ls_sweep *s = NULL;

		for (int j = 0; j < st->nsweeps; j++)
			if (strcmp(st->sweeps[j].prefix, w->prefixes[i]) == 0)
				s = &st->sweeps[j];
		if (s == NULL) {
			if (st->nsweeps == LS_MAX_SWEEPS)
				continue;
			s = &st->sweeps[st->nsweeps++];
			snprintf(s->prefix, sizeof(s->prefix), "%s", w->prefixes[i]);
			s->last_ms = 0;
		}
		if (s->last_ms != 0 && now_ms - s->last_ms < w->sweep_interval && now_ms >= s->last_ms)
			continue;
		s->last_ms = now_ms;
		lw_sweep_prefix(w, txn, w->prefixes[i], now_ms);
	}
}

/* ---- eviction (a map near full) ----------------------------------------------------------
 * LMDB copies every page it changes, so a delete needs free pages too: the stalest records are
 * deleted in small transactions (each changes at most about 1/64 of the map's pages), whose
 * commits give the old pages back to the free list for the next one. */

#define LS_EVICT_BUCKETS 1024

/* Pages of the map in use (the tree and the free list's own pages) and the map's pages, in
 * txn. 0 or -1. */
static int ls_pages(struct lmdb_store *st, MDB_txn *txn, uint64_t *used, uint64_t *total,
    uint64_t *entries)
{
	MDB_stat ms, fs;
	MDB_envinfo mi;

	if (mdb_stat(txn, st->e->dbi, &ms) != 0 || mdb_stat(txn, 0 /* FREE_DBI */, &fs) != 0 ||
	    mdb_env_info(st->e->env, &mi) != 0 || ms.ms_psize == 0)
		return -1;
	*used = ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages + fs.ms_branch_pages +
	    fs.ms_leaf_pages + fs.ms_overflow_pages + 2;
	*total = mi.me_mapsize / ms.ms_psize;
	*entries = ms.ms_entries;
	return 0;
}

struct ls_scan {
	uint64_t n, min, max;
	uint64_t hist[LS_EVICT_BUCKETS];
};

static size_t ls_bucket(const struct ls_scan *sc, uint64_t rank)
{
	if (sc->max <= sc->min || rank <= sc->min)
		return 0;
	return (size_t)((double)(rank - sc->min) / ((double)(sc->max - sc->min) + 1.0) *
	    LS_EVICT_BUCKETS);
}

/* One pass over the writer's records in txn: with hist false their count and rank range,
 * else the histogram of ranks. 0 or -1. */
static int ls_scan_ranks(struct lmdb_writer *w, MDB_txn *txn, struct ls_scan *sc, bool hist)
{
	for (int i = 0; i < w->nprefixes; i++) {
		const char *prefix = w->prefixes[i];
		size_t plen = strlen(prefix);
		MDB_cursor *cur;
		MDB_val k = { plen, (void *)prefix }, v;
		int rc;

		if (mdb_cursor_open(txn, w->st->e->dbi, &cur) != 0)
			return -1;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
		    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint64_t r;

			if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
				break;
			r = w->rank(k.mv_data, k.mv_size, v.mv_data, v.mv_size, w->ctx);
			if (hist) {
				sc->hist[ls_bucket(sc, r)]++;
				continue;
			}
			if (sc->n == 0 || r < sc->min)
				sc->min = r;
			if (sc->n == 0 || r > sc->max)
				sc->max = r;
			sc->n++;
		}
		mdb_cursor_close(cur);
	}
	return 0;
}

/* Deletes up to want of the writer's records ranked below bucket cut (all of them) or in it
 * (as many as still wanted), in transactions of at most chunk deletions; *txnp is the open
 * write transaction (committed and replaced along the way; NULL after a failure). Returns
 * how many were deleted, *pending of them in *txnp (not committed yet); *rcp the LMDB
 * error, 0 when none. */
static uint64_t ls_evict_delete(struct lmdb_writer *w, MDB_txn **txnp, const struct ls_scan *sc,
    size_t cut, uint64_t in_cut, uint64_t chunk, uint64_t *pending, int *rcp)
{
	struct lmdb_store *st = w->st;
	uint64_t deleted = 0, in_txn = 0;
	unsigned char resume[512];
	int rc = 0;

	for (int i = 0; i < w->nprefixes && *txnp; i++) {
		const char *prefix = w->prefixes[i];
		size_t plen = strlen(prefix), rlen = plen;
		MDB_cursor *cur;
		MDB_val k, v;

		memcpy(resume, prefix, plen);
	again:
		if ((rc = mdb_cursor_open(*txnp, st->e->dbi, &cur)) != 0)
			break;
		k.mv_size = rlen;
		k.mv_data = resume;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
		    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			size_t b;

			if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
				break;
			b = ls_bucket(sc, w->rank(k.mv_data, k.mv_size, v.mv_data, v.mv_size, w->ctx));
			if (b > cut || (b == cut && in_cut == 0))
				continue;
			if (in_txn == chunk) {
				/* commit what is deleted; go on from this key in a new transaction */
				rlen = k.mv_size <= sizeof(resume) ? k.mv_size : sizeof(resume);
				memcpy(resume, k.mv_data, rlen);
				mdb_cursor_close(cur);
				in_txn = 0;
				if ((rc = mdb_txn_commit(*txnp)) != 0) {
					*txnp = NULL;
					*rcp = rc;
					*pending = 0;
					return deleted - chunk;     /* that chunk is not gone */
				}
				if ((rc = mdb_txn_begin(st->e->env, NULL, 0, txnp)) != 0) {
					*txnp = NULL;
					*rcp = rc;
					*pending = 0;
					return deleted;
				}
				goto again;
			}
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			if (b == cut)
				in_cut--;
			deleted++;
			in_txn++;
		}
		mdb_cursor_close(cur);
		if (rc != 0 && rc != MDB_NOTFOUND)
			break;
		rc = 0;
	}
	*rcp = rc == MDB_NOTFOUND ? 0 : rc;
	*pending = in_txn;
	return deleted;
}

/* Evicts (HIGH - LOW) / HIGH of the writer's records, the stalest, when the map is at least
 * LMDB_STORE_EVICT_HIGH % in use or holds as many records as when it was last found full
 * (or always, with forced: a batch met MDB_MAP_FULL). Runs in transactions of its own,
 * before the batch's. Returns how many were evicted, or -1 (an LMDB error: logged). Pool
 * thread, like lw_apply. */
static long lw_evict(struct lmdb_writer *w, bool forced)
{
	struct lmdb_store *st = w->st;
	uint64_t used, total, entries, want, deleted, pending = 0, chunk, acc = 0, in_cut = 0;
	uint64_t at = __atomic_load_n(&st->evict_at, __ATOMIC_RELAXED);
	bool by_pages;
	struct ls_scan *sc;
	MDB_txn *txn;
	size_t cut;
	int rc;

	if (w->rank == NULL || w->nprefixes == 0)
		return 0;
	/* the check, in a read transaction: most batches stop here */
	if (lmdb_rtx_begin(st->e->rtx, LMDB_RTX_STORE, &txn) < 0)
		return 0;                   /* logged by the read pool; the batch goes on */
	rc = ls_pages(st, txn, &used, &total, &entries);
	lmdb_rtx_end(st->e->rtx, txn);
	if (rc < 0 || entries == 0)
		return 0;
	by_pages = used * 100 >= total * LMDB_STORE_EVICT_HIGH;
	/* a writer that added nothing since its last eviction is not the one filling the map:
	 * it leaves the room to be made by the one that is. Deleting records frees room inside
	 * pages rather than pages (a page is merged only below a quarter full): after an
	 * eviction the pages in use stay at the high water, so once the map was found full or
	 * near full the record count it held then is the mark, not the pages in use — else
	 * every batch that adds a record evicts another sixth of them. */
	if (!forced && (w->grown == 0 || (at == 0 ? !by_pages : entries < at)))
		return 0;
	if (at == 0 || (forced && entries < at))
		__atomic_store_n(&st->evict_at, entries, __ATOMIC_RELAXED);
	if ((sc = calloc(1, sizeof(*sc))) == NULL)
		return 0;
	if ((rc = mdb_txn_begin(st->e->env, NULL, 0, &txn)) != 0) {
		free(sc);
		goto fail;
	}
	if (ls_scan_ranks(w, txn, sc, false) < 0 || sc->n == 0 ||
	    ls_scan_ranks(w, txn, sc, true) < 0) {
		mdb_txn_abort(txn);
		free(sc);
		return 0;
	}
	/* (HIGH - LOW) / HIGH of our records: the stalest (at least one when a batch failed) */
	want = sc->n * (LMDB_STORE_EVICT_HIGH - LMDB_STORE_EVICT_LOW) / LMDB_STORE_EVICT_HIGH;
	if (want == 0 && forced)
		want = 1;
	w->grown = 0;
	if (want == 0) {
		mdb_txn_abort(txn);
		free(sc);
		return 0;
	}
	for (cut = 0; cut < LS_EVICT_BUCKETS - 1 && acc + sc->hist[cut] < want; cut++)
		acc += sc->hist[cut];
	in_cut = want - acc;
	chunk = total / 64 > 1 ? total / 64 : 1;
	deleted = ls_evict_delete(w, &txn, sc, cut, in_cut, chunk, &pending, &rc);
	if (txn != NULL) {
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc != 0)
			deleted -= pending;
	}
	if (deleted) {
		bool now;

		w->stats.evicted += deleted;
		store_stats_add_evicted(w->sstats, deleted);
		log_rated_note(&st->evict_rated, LS_LOG_EVERY_MS, &now);
		if (now)
			log_event(LOG_LVL_WARNING, NULL, "event=lmdb_evict store=lmdb:%s module=%s "
			    "evicted=%llu total=%llu remaining=%llu records=%llu used_pct=%llu reason=%s "
			    "hint=raise_map_size", st->e->dir, w->name, (unsigned long long)deleted,
			    (unsigned long long)w->stats.evicted, (unsigned long long)(sc->n - deleted),
			    (unsigned long long)(entries - deleted), (unsigned long long)(used * 100 / total),
			    forced ? "map_full" : at == 0 ? "high_water" : "record_mark");
	}
	free(sc);
	if (rc == 0 || deleted > 0)
		return (long)deleted;      /* some room made: the batch tries again */
fail:
	ls_log_error(st, w->name, rc);
	return -1;
}

/* Applies ops [lo, hi) of q in one write transaction, then the sweep when asked. 0 or the
 * LMDB error (nothing applied). */
static int lw_apply_txn(struct lmdb_writer *w, const struct lw_queue *q, size_t lo, size_t hi,
    uint64_t now, bool sweep)
{
	struct lmdb_store *st = w->st;
	uint64_t grown = 0;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(st->e->env, NULL, 0, &txn)) != 0)
		return rc;
	for (size_t i = lo; i < hi; i++) {
		const struct lw_op *op = &q->ops[i];
		MDB_val k = { op->klen, q->data + op->off };
		MDB_val v = { op->vlen, q->data + op->off + op->klen };

		if (op->kind == LW_MERGE) {
			unsigned char out[LMDB_STORE_VALUE_MAX];
			MDB_val cur;
			long n;

			rc = mdb_get(txn, st->e->dbi, &k, &cur);
			if (rc != 0 && rc != MDB_NOTFOUND)
				goto fail_txn;
			n = w->merge(rc == 0 ? cur.mv_data : NULL, rc == 0 ? cur.mv_size : 0, v.mv_data,
			    v.mv_size, out, sizeof(out), now, w->ctx);
			if (n < 0 || (n == 0 && rc == MDB_NOTFOUND)) {
				rc = 0;
				continue;
			}
			if (n == 0) {
				rc = mdb_del(txn, st->e->dbi, &k, NULL);
			} else {
				grown += rc == MDB_NOTFOUND;
				v.mv_size = (size_t)n > sizeof(out) ? sizeof(out) : (size_t)n;
				v.mv_data = out;
				rc = mdb_put(txn, st->e->dbi, &k, &v, 0);
			}
		} else if (op->kind == LW_DEL) {
			rc = mdb_del(txn, st->e->dbi, &k, NULL);
		} else {
			/* a new record or a new value: NOOVERWRITE tells which, then overwrite (its
			 * MDB_KEYEXIST points the data at the existing item: put from a copy) */
			MDB_val nv = v;

			rc = mdb_put(txn, st->e->dbi, &k, &nv, w->rank ? MDB_NOOVERWRITE : 0);
			if (rc == MDB_KEYEXIST)
				rc = mdb_put(txn, st->e->dbi, &k, &v, 0);
			else
				grown += rc == 0 && w->rank;
		}
		if (rc != 0 && rc != MDB_NOTFOUND)
			goto fail_txn;
	}
	if (sweep && w->expired && w->nprefixes)
		lw_sweep(w, txn, now);
	if ((rc = mdb_txn_commit(txn)) == 0)
		w->grown += grown;
	return rc;
fail_txn:
	mdb_txn_abort(txn);
	return rc;
}

/* Applies ops [lo, hi): one transaction; after a MDB_MAP_FULL (a writer with a rank) the
 * stalest records go and it tries again, and a part that still does not fit with nothing
 * of ours left to evict (one batch larger than the room there is) is applied in two halves,
 * each making room from what the one before it wrote. 0 or the LMDB error (then the ops of
 * the failing part and after it were not applied). */
static int lw_apply_range(struct lmdb_writer *w, const struct lw_queue *q, size_t lo, size_t hi,
    uint64_t now, bool sweep)
{
	int rc = MDB_MAP_FULL;

	for (int tries = 0; tries < 4; tries++) {
		long evicted;

		if ((rc = lw_apply_txn(w, q, lo, hi, now, sweep)) == 0)
			return 0;
		if (rc != MDB_MAP_FULL || w->rank == NULL)
			return rc;
		if (tries > 0 && hi - lo >= 2)
			break;                  /* made room once and still too big: halves */
		if ((evicted = lw_evict(w, true)) < 0)
			return rc;
		if (evicted == 0 && hi - lo < 2)
			return rc;
		if (evicted == 0)
			break;
	}
	if (rc != MDB_MAP_FULL || hi - lo < 2)
		return rc;
	size_t mid = lo + (hi - lo) / 2;

	if ((rc = lw_apply_range(w, q, lo, mid, now, false)) != 0)
		return rc;
	return lw_apply_range(w, q, mid, hi, now, sweep);
}

/* Applies q (any thread): in one write transaction, unless a full map makes it split (see
 * lw_apply_range). 0, or -1 (logged; not applied, or only in part). A writer with a rank
 * first makes room in a map near full. */
static int lw_apply(struct lmdb_writer *w, const struct lw_queue *q)
{
	int rc;

	lw_evict(w, false);
	if ((rc = lw_apply_range(w, q, 0, q->n, ls_wall_ms(), true)) == 0)
		return 0;
	ls_log_error(w->st, w->name, rc);
	return -1;
}

/* Calls and frees a list of waiters. */
static void lw_waiters_done(struct lw_waiter *l, int status)
{
	while (l) {
		struct lw_waiter *nx = l->next;

		if (l->done)
			l->done(l->arg, status);
		free(l);
		l = nx;
	}
}

/* ---- the writer --------------------------------------------------------------------------- */

struct lmdb_writer *lmdb_writer_new(struct lmdb_store *st, uv_loop_t *loop,
    const struct lmdb_writer_config *cfg)
{
	struct lmdb_writer *w;

	if (st == NULL || cfg == NULL)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	if (cfg->ctx_len) {
		if (cfg->ctx == NULL || (w->ctx = malloc(cfg->ctx_len)) == NULL) {
			free(w);
			return NULL;
		}
		memcpy(w->ctx, cfg->ctx, cfg->ctx_len);
	}
	for (int i = 0; cfg->sweep_prefixes && cfg->sweep_prefixes[i]; i++) {
		if (i >= 4 || strlen(cfg->sweep_prefixes[i]) >= LS_PREFIX_MAX ||
		    cfg->sweep_prefixes[i][0] == '\0') {
			free(w->ctx);
			free(w);
			return NULL;
		}
		snprintf(w->prefixes[i], sizeof(w->prefixes[i]), "%s", cfg->sweep_prefixes[i]);
		w->nprefixes = i + 1;
	}
	snprintf(w->name, sizeof(w->name), "%s", cfg->name ? cfg->name : "?");
	w->sstats = store_stats_get("lmdb", w->name);
	w->merge = cfg->merge;
	w->expired = cfg->expired;
	w->rank = cfg->rank;
	w->sweep_interval = cfg->sweep_interval ? cfg->sweep_interval : LS_DEFAULT_SWEEP_MS;
	w->flush_interval = cfg->flush_interval ? cfg->flush_interval : LS_DEFAULT_FLUSH_MS;
	w->max_queued = cfg->max_queued ? cfg->max_queued : LS_DEFAULT_MAX_QUEUED;
	pthread_mutex_init(&w->mu, NULL);
	lmdb_env_ref(st->e);
	w->st = st;
	w->loop = loop;
	return w;
}

/* Batches handed to a writer thread and not done yet, in the process (the exit waits). */
static atomic_long ls_pending;
static pthread_once_t ls_exit_once = PTHREAD_ONCE_INIT;

static void lw_batch_run(struct lw_batch *b);

/* The writer thread's job: applies one batch (lw_batch_run may drop a reference on st: see
 * lmdb_env.c's release). */
static void lw_batch_job_run(struct lmdb_wjob *j)
{
	lw_batch_run((struct lw_batch *)j);
	atomic_fetch_sub(&ls_pending, 1);
}

/* At exit: the batches still with a writer thread (the workers' last ones) are written,
 * waiting at most LS_EXIT_WAIT_MS for a write lock another process holds. */
#define LS_EXIT_WAIT_MS 5000

bool lmdb_store_wait_written(unsigned ms)
{
	for (unsigned i = 0; i < ms / 5 && atomic_load(&ls_pending) > 0; i++)
		usleep(5000);
	return atomic_load(&ls_pending) == 0;
}

static void ls_exit_wait(void)
{
	if (!lmdb_store_wait_written(LS_EXIT_WAIT_MS))
		log_event(LOG_LVL_WARNING, NULL, "event=lmdb_error reason=\"write lock still held "
		    "after %d ms at exit: %ld batches not written\"", LS_EXIT_WAIT_MS,
		    (long)atomic_load(&ls_pending));
}

static void ls_exit_register(void)
{
	atexit(ls_exit_wait);
}

/* Hands b to st's writer thread (started on first use). 0, or -1 (no thread). */
static int ls_submit(struct lmdb_store *st, struct lw_batch *b)
{
	pthread_once(&ls_exit_once, ls_exit_register);
	b->job.run = lw_batch_job_run;
	pthread_mutex_lock(&st->e->wt.mu);
	if (lmdb_wthr_queue_locked(&st->e->wt, &b->job) < 0) {
		pthread_mutex_unlock(&st->e->wt.mu);
		log_event(LOG_LVL_WARNING, NULL, "event=lmdb_error store=lmdb:%s "
		    "reason=\"cannot start the writer thread\"", st->e->dir);
		return -1;
	}
	atomic_fetch_add(&ls_pending, 1);
	pthread_mutex_unlock(&st->e->wt.mu);
	return 0;
}

/* Starts the flush timer and the completion handle on first use (a writer made on the main
 * thread for a worker loop must not touch that loop before the worker runs it). */
static void lw_timer_cb(uv_timer_t *t);
static void lw_async_cb(uv_async_t *a);

static void lw_arm_timer(struct lmdb_writer *w)
{
	if (w->loop == NULL || w->timer_open || w->closing)
		return;
	uv_timer_init(w->loop, &w->timer);
	w->timer.data = w;
	w->timer_open = true;
	uv_timer_start(&w->timer, lw_timer_cb, w->flush_interval, w->flush_interval);
	/* The batching timer does not keep a draining loop alive. */
	uv_unref((uv_handle_t *)&w->timer);
	if (uv_async_init(w->loop, &w->async, lw_async_cb) == 0) {
		w->async.data = w;
		w->async_open = true;
		uv_unref((uv_handle_t *)&w->async);
	}
}

/* Frees a writer: its queue, its copy of the config, its store reference. */
static void lw_destroy(struct lmdb_writer *w)
{
	lw_queue_free(&w->q);
	pthread_mutex_destroy(&w->mu);
	if (w->close_async)
		lmdb_store_close_async(w->st);
	else
		lmdb_store_close(w->st);
	free(w->ctx);
	free(w);
}

/* Writer thread: applies b; an open writer's loop is told (lw_async_cb), a closing one's
 * waiters are told from here, and its last batch frees it. */
static void lw_batch_run(struct lw_batch *b)
{
	struct lmdb_writer *w = b->w;
	int status = lw_apply(w, &b->q);
	bool last;

	pthread_mutex_lock(&w->mu);
	b->status = status;
	w->inflight--;
	if (!w->closing) {
		/* the send under the lock: lmdb_writer_free closes the handle only after it set
		 * closing under it */
		b->next = w->done;
		w->done = b;
		uv_async_send(&w->async);
		pthread_mutex_unlock(&w->mu);
		return;
	}
	last = w->inflight == 0 && w->loop_gone;
	pthread_mutex_unlock(&w->mu);
	lw_count_batch(w, status, b->q.n);
	lw_waiters_done(b->waiters, status);
	lw_queue_free(&b->q);
	free(b);
	if (last)
		lw_destroy(w);
}

static void lw_start(struct lmdb_writer *w);

/* Loop thread: b (w->cur) is applied. */
static void lw_after(struct lmdb_writer *w, struct lw_batch *b)
{
	struct lw_waiter *waiters = b->waiters;
	int st = b->status;

	w->cur = NULL;
	lw_count_batch(w, st, b->q.n);
	lw_queue_free(&b->q);
	free(b);
	/* a flush asked while this batch was with the writer thread goes now, not at the next
	 * tick */
	if (w->q.n && (w->flush_wanted || w->waiters) && !w->closing)
		lw_start(w);
	/* last: a waiter may free the writer */
	lw_waiters_done(waiters, st);
}

static void lw_async_cb(uv_async_t *a)
{
	struct lmdb_writer *w = a->data;
	struct lw_batch *b;

	pthread_mutex_lock(&w->mu);
	b = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->mu);
	if (b)                          /* one at a time: at most one */
		lw_after(w, b);
}

/* A batch of q and its waiters (q and the waiters are the batch's now); NULL: out of memory. */
static struct lw_batch *lw_take(struct lmdb_writer *w)
{
	struct lw_batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->w = w;
	b->q = w->q;
	b->waiters = w->waiters;
	memset(&w->q, 0, sizeof(w->q));
	w->waiters = NULL;
	w->flush_wanted = false;
	return b;
}

/* Hands b to the writer thread: 0, or -1 (no thread; b is still the caller's). */
static int lw_hand(struct lmdb_writer *w, struct lw_batch *b)
{
	pthread_mutex_lock(&w->mu);
	w->inflight++;
	pthread_mutex_unlock(&w->mu);
	if (ls_submit(w->st, b) == 0)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->inflight--;
	pthread_mutex_unlock(&w->mu);
	return -1;
}

/* Applies b here and now (no writer thread) and frees it. */
static void lw_apply_here(struct lmdb_writer *w, struct lw_batch *b)
{
	b->status = lw_apply(w, &b->q);
	lw_count_batch(w, b->status, b->q.n);
	lw_waiters_done(b->waiters, b->status);
	lw_queue_free(&b->q);
	free(b);
}

/* Hands q and its waiters to the writer thread (loop set, nothing in flight). */
static void lw_start(struct lmdb_writer *w)
{
	struct lw_batch *b = lw_take(w);

	if (b == NULL)
		return;                 /* the next tick tries again */
	if (w->async_open && lw_hand(w, b) == 0) {
		w->cur = b;
		return;
	}
	lw_apply_here(w, b);            /* no handle or no thread: here, as a tool does */
}

/* Applies q here and now (no loop). */
static int lw_apply_sync(struct lmdb_writer *w)
{
	struct lw_waiter *waiters = w->waiters;
	int status = 0;

	w->waiters = NULL;
	w->flush_wanted = false;
	if (w->q.n) {
		status = lw_apply(w, &w->q);
		lw_count_batch(w, status, w->q.n);
	}
	lw_queue_free(&w->q);
	lw_waiters_done(waiters, status);
	return status;
}

static void lw_timer_cb(uv_timer_t *t)
{
	struct lmdb_writer *w = t->data;

	if (w->cur == NULL && w->q.n)
		lw_start(w);
}

/* A closing writer's handles are closed: it is freed now, unless the writer thread still has
 * a batch of it (its last frees it then). */
static void lw_loop_done(struct lmdb_writer *w)
{
	bool last;

	pthread_mutex_lock(&w->mu);
	w->loop_gone = true;
	last = w->inflight == 0;
	pthread_mutex_unlock(&w->mu);
	if (last)
		lw_destroy(w);
}

static void lw_handle_close_cb(uv_handle_t *h)
{
	struct lmdb_writer *w = h->data;

	if (h == (uv_handle_t *)&w->timer)
		w->timer_open = false;
	else
		w->async_open = false;
	if (!w->timer_open && !w->async_open)
		lw_loop_done(w);
}

void lmdb_writer_free(struct lmdb_writer *w)
{
	struct lw_batch *b;

	if (w == NULL || w->closing)
		return;
	if (w->loop == NULL) {
		w->closing = true;
		lw_apply_sync(w);
		lw_destroy(w);
		return;
	}
	/* Never waits for the write lock: what is still queued goes to the writer thread after
	 * the batch it has (one queue: the order of updates holds), and the writer is freed
	 * once its handles are closed and the thread is done with its batches. */
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	b = w->done;                    /* applied; its completion not seen yet */
	w->done = NULL;
	pthread_mutex_unlock(&w->mu);
	if (b)
		lw_after(w, b);         /* w->closing: lw_after starts nothing */
	if (w->q.n) {
		if ((b = lw_take(w)) == NULL)
			lw_apply_sync(w);       /* out of memory: here, as a tool does */
		else if (lw_hand(w, b) < 0)
			lw_apply_here(w, b);
	} else {
		lw_waiters_done(w->waiters, 0);
		w->waiters = NULL;
	}
	if (w->timer_open) {
		uv_timer_stop(&w->timer);
		uv_close((uv_handle_t *)&w->timer, lw_handle_close_cb);
	}
	if (w->async_open)
		uv_close((uv_handle_t *)&w->async, lw_handle_close_cb);
	if (!w->timer_open && !w->async_open)
		lw_loop_done(w);        /* never armed: no handle to close */
}

/* Logs dropped updates at most once a minute per writer. */
static void lw_log_drop(struct lmdb_writer *w)
{
	bool now;

	log_rated_note(&w->drop_rated, LS_LOG_EVERY_MS, &now);
	if (!now)
		return;
	log_event(LOG_LVL_WARNING, NULL,
	    "event=lmdb_queue_full store=lmdb:%s module=%s queued=%zu dropped=%llu", w->st->e->dir,
	    w->name, w->q.n, (unsigned long long)w->stats.dropped);
}

/* Queues one update; see lmdb_writer_put. */
static int lw_queue(struct lmdb_writer *w, enum lw_kind kind, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	if (w->closing || klen == 0 || klen > w->st->e->max_key || vlen > LMDB_STORE_VALUE_MAX ||
	    (kind == LW_MERGE && w->merge == NULL))
		return -1;
	if (w->q.n >= w->max_queued) {
		if (w->loop == NULL) {
			lw_apply_sync(w);       /* a tool: write what it has and go on */
		} else {
			w->stats.dropped++;     /* the write lock is held: drop rather than grow */
			store_stats_add_dropped(w->sstats, 1);
			lw_log_drop(w);
			return -1;
		}
	}
	if (lw_queue_add(&w->q, kind, key, klen, val, vlen) < 0)
		return -1;
	w->stats.queued++;
	store_stats_add_queued(w->sstats, 1);
	lw_arm_timer(w);
	return 0;
}

int lmdb_writer_put(struct lmdb_writer *w, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	if (vlen == 0)
		return lw_queue(w, LW_DEL, key, klen, NULL, 0);
	return lw_queue(w, LW_PUT, key, klen, val, vlen);
}

int lmdb_writer_del(struct lmdb_writer *w, const void *key, size_t klen)
{
	return lw_queue(w, LW_DEL, key, klen, NULL, 0);
}

int lmdb_writer_merge(struct lmdb_writer *w, const void *key, size_t klen, const void *operand,
    size_t oplen)
{
	return lw_queue(w, LW_MERGE, key, klen, operand, oplen);
}

/* The index of the newest put/delete of key in q, or -1 (none). */
static long lw_queue_find(const struct lw_queue *q, const void *key, size_t klen, uint64_t h)
{
	for (size_t i = q->n; i-- > 0;) {
		const struct lw_op *op = &q->ops[i];

		if (op->hash == h && op->klen == klen && op->kind != LW_MERGE &&
		    memcmp(q->data + op->off, key, klen) == 0)
			return (long)i;
	}
	return -1;
}

/* True when q holds a merge of key from index from on. */
static bool lw_queue_has_merge(const struct lw_queue *q, size_t from, const void *key, size_t klen,
    uint64_t h)
{
	for (size_t i = from; i < q->n; i++) {
		const struct lw_op *op = &q->ops[i];

		if (op->kind == LW_MERGE && op->hash == h && op->klen == klen &&
		    memcmp(q->data + op->off, key, klen) == 0)
			return true;
	}
	return false;
}

/* A record as lmdb_writer_get builds it: its bytes (at most LMDB_STORE_VALUE_MAX kept), or
 * absent (!found); out is a merge's room. */
struct lw_seen {
	unsigned char v[LMDB_STORE_VALUE_MAX], out[LMDB_STORE_VALUE_MAX];
	size_t len;
	bool found;
};

/* Runs the merges of key queued in q from index from on, in their order, on r. */
static void lw_queue_merges(const struct lmdb_writer *w, const struct lw_queue *q, size_t from,
    const void *key, size_t klen, uint64_t h, uint64_t now, struct lw_seen *r)
{
	for (size_t i = from; i < q->n; i++) {
		const struct lw_op *op = &q->ops[i];
		long n;

		if (op->kind != LW_MERGE || op->hash != h || op->klen != klen ||
		    memcmp(q->data + op->off, key, klen) != 0)
			continue;
		n = w->merge(r->found ? r->v : NULL, r->found ? r->len : 0, q->data + op->off + op->klen,
		    op->vlen, r->out, sizeof(r->out), now, w->ctx);
		if (n < 0 || (n == 0 && !r->found))
			continue;       /* left as it is, as the batch does */
		r->found = n > 0;
		r->len = (size_t)n > sizeof(r->out) ? sizeof(r->out) : (size_t)n;
		memcpy(r->v, r->out, r->len);
	}
}

/* The newest put/delete of key: w's queue first, then the batch with the writer thread (newer
 * than the map: the thread only reads it), else the map; then, with merged, the merges
 * queued after it, the batch's before the queue's (a writer without a merge function has
 * none queued). */
static int lw_get(struct lmdb_writer *w, const void *key, size_t klen, void *val, size_t cap,
    size_t *len, bool merged)
{
	uint64_t h = fnv1a64(key, klen), now;
	long iq = lw_queue_find(&w->q, key, klen, h), ic = -1, bi = iq;
	const struct lw_queue *bq = iq >= 0 ? &w->q : NULL;
	struct lw_seen *r;
	bool merges;
	int rc;

	if (iq < 0 && w->cur && (ic = lw_queue_find(&w->cur->q, key, klen, h)) >= 0) {
		bq = &w->cur->q;
		bi = ic;
	}
	merges = merged && w->merge != NULL && (lw_queue_has_merge(&w->q, (size_t)(iq + 1), key, klen, h) ||
	    (iq < 0 && w->cur && lw_queue_has_merge(&w->cur->q, (size_t)(ic + 1), key, klen, h)));
	if (!merges) {
		const struct lw_op *op;

		if (bq == NULL)
			return lmdb_store_get(w->st, key, klen, val, cap, len);
		op = &bq->ops[bi];
		if (op->kind == LW_DEL)
			return 0;
		memcpy(val, bq->data + op->off + op->klen, op->vlen < cap ? op->vlen : cap);
		*len = op->vlen;
		return 1;
	}
	if ((r = malloc(sizeof(*r))) == NULL)
		return -1;
	if (bq != NULL) {
		const struct lw_op *op = &bq->ops[bi];

		r->found = op->kind == LW_PUT;
		r->len = r->found ? op->vlen : 0;
		memcpy(r->v, bq->data + op->off + op->klen, r->len);
	} else if ((rc = lmdb_store_get(w->st, key, klen, r->v, sizeof(r->v), &r->len)) < 0) {
		free(r);
		return -1;
	} else {
		r->found = rc == 1;
		if (r->len > sizeof(r->v))
			r->len = sizeof(r->v);
	}
	now = ls_wall_ms();
	if (iq < 0 && w->cur)
		lw_queue_merges(w, &w->cur->q, (size_t)(ic + 1), key, klen, h, now, r);
	lw_queue_merges(w, &w->q, (size_t)(iq + 1), key, klen, h, now, r);
	rc = r->found ? 1 : 0;
	if (r->found) {
		memcpy(val, r->v, r->len < cap ? r->len : cap);
		*len = r->len;
	}
	free(r);
	return rc;
}

int lmdb_writer_get(struct lmdb_writer *w, const void *key, size_t klen, void *val, size_t cap,
    size_t *len)
{
	return lw_get(w, key, klen, val, cap, len, false);
}

int lmdb_writer_get_merged(struct lmdb_writer *w, const void *key, size_t klen, void *val,
    size_t cap, size_t *len)
{
	return lw_get(w, key, klen, val, cap, len, true);
}

int lmdb_writer_flush(struct lmdb_writer *w, lmdb_writer_done_cb done, void *arg)
{
	struct lw_waiter *wt = NULL;

	if (w->q.n == 0 && w->cur == NULL)
		return 1;
	if (done && (wt = calloc(1, sizeof(*wt))) == NULL)
		return -1;
	if (wt) {
		wt->done = done;
		wt->arg = arg;
	}
	if (w->loop == NULL) {
		if (wt) {
			wt->next = w->waiters;
			w->waiters = wt;
		}
		lw_apply_sync(w);
		return 0;
	}
	if (w->q.n == 0) {
		/* nothing new: the caller waits for the batch with the writer thread */
		if (wt) {
			wt->next = w->cur->waiters;
			w->cur->waiters = wt;
		}
		return 0;
	}
	if (wt) {
		wt->next = w->waiters;
		w->waiters = wt;
	}
	if (w->cur == NULL)
		lw_start(w);
	else
		w->flush_wanted = true;
	return 0;
}

void lmdb_writer_stats(const struct lmdb_writer *w, struct lmdb_writer_stats *out)
{
	*out = w->stats;
}

/* The merge of lmdb_store_apply's writers: a change's operand is queued after its merge
 * function (struct lmdb_store_change.merge), so one batch may hold changes of several. */
static long ls_change_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	lmdb_merge_fn fn;

	(void)ctx;
	if (oplen < sizeof(fn))
		return -1;
	memcpy(&fn, operand, sizeof(fn));
	return fn(cur, curlen, (const char *)operand + sizeof(fn), oplen - sizeof(fn), out, cap,
	    now_ms, NULL);
}

/* Queues ch in w (made with ls_change_merge): a put, a delete, or its merge. 0 or -1. */
static int ls_change_queue(struct lmdb_writer *w, const struct lmdb_store_change *ch)
{
	unsigned char op[LMDB_STORE_VALUE_MAX];
	lmdb_merge_fn fn = ch->merge;

	if (fn == NULL)
		return ch->vlen ? lmdb_writer_put(w, ch->key, strlen(ch->key), ch->val, ch->vlen) :
		    lmdb_writer_del(w, ch->key, strlen(ch->key));
	if (ch->vlen > sizeof(op) - sizeof(fn))
		return -1;
	memcpy(op, &fn, sizeof(fn));
	if (ch->vlen)
		memcpy(op + sizeof(fn), ch->val, ch->vlen);
	return lmdb_writer_merge(w, ch->key, strlen(ch->key), op, sizeof(fn) + ch->vlen);
}

/* See lmdb_store.h. */
int lmdb_store_apply(const char *dir, uint64_t map_size, const char *name,
    const struct lmdb_store_change *ch, size_t n)
{
	struct lmdb_store *st = lmdb_store_open(dir, map_size);
	struct lmdb_writer_config wc = { .merge = ls_change_merge, .name = name };
	struct lmdb_writer *w = st ? lmdb_writer_new(st, NULL, &wc) : NULL;
	struct lmdb_writer_stats ws;
	int rc = 0;

	if (w == NULL) {
		lmdb_store_close(st);
		return st ? LMDB_APPLY_NO_MEMORY : LMDB_APPLY_NO_MAP;
	}
	for (size_t i = 0; i < n; i++)
		if (ls_change_queue(w, &ch[i]) < 0)
			rc = LMDB_APPLY_FAILED;
	if (lmdb_writer_flush(w, NULL, NULL) < 0)
		rc = LMDB_APPLY_FAILED;
	lmdb_writer_stats(w, &ws);
	if (ws.failed)
		rc = LMDB_APPLY_FAILED;
	lmdb_writer_free(w);
	lmdb_store_close(st);
	return rc;
}

/* lmdb_store_apply_start's call: its timer (the bound, then the deferred end) and the writer;
 * refs: the timer's handle and the writer's flush callback, the last one frees. */
struct ls_apply {
	uv_timer_t timer;
	struct lmdb_writer *w;
	lmdb_store_apply_fn done;
	void *arg;
	int rc;                         /* the batch's status, once written */
	bool written, answered;         /* loop thread only, but for written with the writer gone */
	atomic_int refs;
};

static void ls_apply_unref(struct ls_apply *a)
{
	if (atomic_fetch_sub(&a->refs, 1) == 1)
		free(a);
}

static void ls_apply_closed_cb(uv_handle_t *h)
{
	ls_apply_unref(h->data);
}

/* The timer: the bound ran out (not written: the verb is answered, the writer freed, its
 * batch left to the writer thread), or the batch was written (the answer, then the writer
 * freed here, outside its own callback). */
static void ls_apply_timer_cb(uv_timer_t *t)
{
	struct ls_apply *a = t->data;
	struct lmdb_writer *w = a->w;

	if (!a->answered) {
		a->answered = true;
		a->done(a->arg, a->written ? a->rc : LMDB_APPLY_TIMEOUT);
	}
	a->w = NULL;
	uv_close((uv_handle_t *)&a->timer, ls_apply_closed_cb);
	/* not written yet: the flush callback comes later, from the writer thread (its ref) */
	lmdb_writer_free(w);
}

/* The writer's flush callback: on the loop's thread while the writer lives, or on the
 * writer thread once it was freed at the timeout (then only the ref is dropped). */
static void ls_apply_written_cb(void *arg, int status)
{
	struct ls_apply *a = arg;

	if (a->w != NULL) {
		a->written = true;
		a->rc = status == 0 ? 0 : LMDB_APPLY_FAILED;
		uv_timer_start(&a->timer, ls_apply_timer_cb, 0, 0);
	}
	ls_apply_unref(a);
}

/* See lmdb_store.h. */
int lmdb_store_apply_start(uv_loop_t *loop, const char *dir, uint64_t map_size, const char *name,
    const struct lmdb_store_change *ch, size_t n, uint64_t timeout_ms, lmdb_store_apply_fn done,
    void *arg)
{
	/* the environment open here, never one opened on loop */
	struct lmdb_store *st = lmdb_store_open_existing(dir);
	int rc = lmdb_store_apply_start_on(loop, st, name, ch, n, timeout_ms, done, arg);

	(void)map_size;
	lmdb_store_close_async(st);     /* the writer holds its own reference */
	return rc;
}

/* See lmdb_store.h. */
int lmdb_store_apply_start_on(uv_loop_t *loop, struct lmdb_store *st, const char *name,
    const struct lmdb_store_change *ch, size_t n, uint64_t timeout_ms, lmdb_store_apply_fn done,
    void *arg)
{
	struct lmdb_writer_config wc = { .merge = ls_change_merge, .name = name };
	struct ls_apply *a = st ? calloc(1, sizeof(*a)) : NULL;
	int rc;

	if (a == NULL || (a->w = lmdb_writer_new(st, loop, &wc)) == NULL) {
		free(a);
		return st ? LMDB_APPLY_NO_MEMORY : LMDB_APPLY_NO_MAP;
	}
	a->w->close_async = true;      /* freed on loop: a last reference closed off it */
	a->done = done;
	a->arg = arg;
	for (size_t i = 0; i < n; i++)
		if (ls_change_queue(a->w, &ch[i]) < 0) {
			lmdb_writer_free(a->w); /* nothing flushed: no callback */
			free(a);
			return LMDB_APPLY_FAILED;
		}
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	atomic_init(&a->refs, 2);
	rc = lmdb_writer_flush(a->w, ls_apply_written_cb, a);
	if (rc != 0) {
		/* 1: nothing to write (n 0), answered at once; -1: out of memory */
		atomic_store(&a->refs, 1);
		a->written = true;
		a->rc = rc > 0 ? 0 : LMDB_APPLY_FAILED;
		uv_timer_start(&a->timer, ls_apply_timer_cb, 0, 0);
		return 0;
	}
	uv_timer_start(&a->timer, ls_apply_timer_cb, timeout_ms, 0);
	return 0;
}

/* ---- an open off the loop (lmdb_store_open_start) ---------------------------------------- */

struct ls_open {
	pthread_mutex_t mu;             /* finished, abandoned, st, refs */
	uv_async_t async;               /* the thread's open returned */
	uv_timer_t timer;               /* the bound */
	char *dir;
	uint64_t map_size;
	struct lmdb_store *st;          /* the thread's result, until handed over */
	bool finished;                  /* the thread's open returned */
	bool abandoned;                 /* answered: the thread closes what it opens late */
	int refs;                       /* the thread's, the two handles' */
	lmdb_store_open_fn done;
	void *arg;
};

static void ls_open_unref(struct ls_open *o)
{
	int left;

	pthread_mutex_lock(&o->mu);
	left = --o->refs;
	pthread_mutex_unlock(&o->mu);
	if (left > 0)
		return;
	pthread_mutex_destroy(&o->mu);
	free(o->dir);
	free(o);
}

static void ls_open_closed_cb(uv_handle_t *h)
{
	ls_open_unref(h->data);
}

/* The loop's thread: the open's answer (the thread's store, or NULL at the bound), once. */
static void ls_open_answer(struct ls_open *o)
{
	struct lmdb_store *st;
	bool timed_out;

	pthread_mutex_lock(&o->mu);
	if (o->abandoned) {
		pthread_mutex_unlock(&o->mu);
		return;
	}
	o->abandoned = true;            /* no uv_async_send after this: the handle closes */
	st = o->st;
	o->st = NULL;
	timed_out = !o->finished;
	pthread_mutex_unlock(&o->mu);
	uv_close((uv_handle_t *)&o->async, ls_open_closed_cb);
	uv_close((uv_handle_t *)&o->timer, ls_open_closed_cb);
	o->done(o->arg, st, timed_out);
}

static void ls_open_async_cb(uv_async_t *a)
{
	ls_open_answer(a->data);
}

static void ls_open_timer_cb(uv_timer_t *t)
{
	ls_open_answer(t->data);
}

/* The detached thread: mkdir and mdb_env_open, which may wait for another process's lock. */
static void ls_open_thread(void *arg)
{
	struct ls_open *o = arg;
	struct lmdb_store *st = lmdb_store_open(o->dir, o->map_size);

	pthread_mutex_lock(&o->mu);
	if (!o->abandoned) {
		o->st = st;
		st = NULL;
		o->finished = true;
		uv_async_send(&o->async);
	}
	pthread_mutex_unlock(&o->mu);
	lmdb_store_close(st);           /* answered already (the bound): not wanted */
	ls_open_unref(o);
}

/* See lmdb_store.h. */
int lmdb_store_open_start(uv_loop_t *loop, const char *dir, uint64_t map_size, uint64_t timeout_ms,
    lmdb_store_open_fn done, void *arg)
{
	struct ls_open *o = calloc(1, sizeof(*o));

	if (o == NULL || (o->dir = strdup(dir)) == NULL || pthread_mutex_init(&o->mu, NULL) != 0) {
		if (o)
			free(o->dir);
		free(o);
		return -1;
	}
	o->map_size = map_size;
	o->done = done;
	o->arg = arg;
	if (uv_async_init(loop, &o->async, ls_open_async_cb) != 0) {
		pthread_mutex_destroy(&o->mu);
		free(o->dir);
		free(o);
		return -1;
	}
	o->async.data = o;
	uv_timer_init(loop, &o->timer);
	o->timer.data = o;
	o->refs = 3;
	if (lmdb_rtx_detach_call(ls_open_thread, o) < 0) {
		o->refs = 2;                /* no thread: answered NULL on the loop, at once */
		o->finished = true;
		uv_timer_start(&o->timer, ls_open_timer_cb, 0, 0);
		return 0;
	}
	uv_timer_start(&o->timer, ls_open_timer_cb, timeout_ms, 0);
	return 0;
}
