/* bayes_db.c — the classifier's stores: dispatch, the learning transaction every local store
 * shares, the in-memory store and the LMDB store. Redis is in bayes_redis.c. See bayes_db.h.
 *
 * LMDB layout (one unnamed database, keys under the classifier's own prefixes: the
 * environment is the process's one of the directory, store/lmdb_env.h):
 *   "bt:" + 8-byte big-endian token hash -> { u32 spam, u32 ham, u32 atime }
 *   "bs:" + 20-byte message id           -> { u8 class, u32 atime }
 *   "bm:totals"                          -> { u64 nspam, u64 nham, u64 ntokens } */
#include "bayes_db_int.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store/lmdb_env.h"
#include "store/store.h"

/* ---------------------------------------------------------------- shared */

/* A write transaction's primitives, for bayes_kv_learn. get: 1 found, 0 absent, -1 error. */
struct bayes_kv {
	int (*seen_get)(void *tx, const uint8_t *id, int *cls);
	int (*seen_put)(void *tx, const uint8_t *id, int cls, uint32_t now);
	int (*tok_get)(void *tx, uint64_t k, struct bayes_counts *c);
	int (*tok_put)(void *tx, uint64_t k, const struct bayes_counts *c);  /* 0,0: delete */
	int (*totals_get)(void *tx, struct bayes_totals *t);
	int (*totals_put)(void *tx, const struct bayes_totals *t);
};

static void bayes_count_add(struct bayes_counts *c, enum bayes_class cls, int d)
{
	uint32_t *v = cls == BAYES_SPAM ? &c->spam : &c->ham;

	if (d < 0)
		*v = *v > 0 ? *v - 1 : 0;
	else if (*v < UINT32_MAX)
		(*v)++;
}

/* Applies one learning inside an open write transaction (see bayes_db_learn; relearn
 * false: bayes_db_learn_once). */
static int bayes_kv_learn(const struct bayes_kv *kv, void *tx, const uint8_t *id,
    enum bayes_class cls, const uint64_t *keys, size_t n, uint32_t now, bool relearn,
    enum bayes_learn_result *res)
{
	struct bayes_totals t;
	int prev = -1, r;

	r = kv->seen_get(tx, id, &prev);
	if (r < 0)
		return -1;
	if (r == 1 && prev == (int)cls) {
		*res = BAYES_ALREADY;
		return 0;
	}
	if (r == 1 && !relearn) {
		*res = BAYES_OPPOSITE;
		return 0;
	}
	if (kv->totals_get(tx, &t) < 0)
		return -1;
	for (int pass = r == 1 ? 0 : 1; pass < 2; pass++) {
		enum bayes_class c = pass == 0 ? (enum bayes_class)prev : cls;
		int d = pass == 0 ? -1 : 1;

		for (size_t i = 0; i < n; i++) {
			struct bayes_counts tc;
			int f = kv->tok_get(tx, keys[i], &tc);

			if (f < 0)
				return -1;
			if (f == 0) {
				if (d < 0)
					continue;
				memset(&tc, 0, sizeof(tc));
				t.ntokens++;
			}
			bayes_count_add(&tc, c, d);
			if (d > 0)
				tc.atime = now;
			if (tc.spam == 0 && tc.ham == 0 && t.ntokens > 0)
				t.ntokens--;
			if (kv->tok_put(tx, keys[i], &tc) < 0)
				return -1;
		}
		if (c == BAYES_SPAM)
			t.nspam = d > 0 ? t.nspam + 1 : (t.nspam ? t.nspam - 1 : 0);
		else
			t.nham = d > 0 ? t.nham + 1 : (t.nham ? t.nham - 1 : 0);
	}
	if (kv->seen_put(tx, id, (int)cls, now) < 0 || kv->totals_put(tx, &t) < 0)
		return -1;
	*res = r == 1 ? BAYES_MOVED : BAYES_LEARNED;
	return 0;
}

static int bayes_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

uint32_t bayes_db_expire_cutoff(uint32_t *atimes, size_t n, uint64_t keep, size_t *ties)
{
	size_t go, lo;
	uint32_t v;

	*ties = 0;
	if (n <= keep)
		return 0;
	qsort(atimes, n, sizeof(uint32_t), bayes_u32_cmp);
	/* the n - keep oldest go: those older than the youngest of them (v), and as many of
	 * the tokens tied at v as that leaves — a bulk learn puts thousands of tokens in one
	 * second, and all of them going would empty the store */
	go = n - keep;
	v = atimes[go - 1];
	for (lo = go - 1; lo > 0 && atimes[lo - 1] == v; lo--)
		;
	if (go == n || atimes[go] != v)
		return v + 1;              /* every token at v goes */
	*ties = go - lo;
	return v;
}

/* The cutoff for an expiry pass, age first, then the size bound: tokens with an atime below
 * it go, and *ties of those at it. */
static uint32_t bayes_expire_limit(uint32_t *atimes, size_t n, uint64_t max_tokens,
    uint32_t max_age_s, uint32_t now, size_t *ties)
{
	uint32_t cut = max_age_s && now > max_age_s ? now - max_age_s : 0;

	*ties = 0;
	if (max_tokens && n > max_tokens) {
		size_t t;
		uint32_t c = bayes_db_expire_cutoff(atimes, n, max_tokens - max_tokens / 4, &t);

		if (c > cut) {
			cut = c;
			*ties = t;
		}
	}
	return cut;
}

/* Whether a token with atime a goes in an expiry pass (cut, *ties: bayes_expire_limit). */
static bool bayes_expire_goes(uint32_t a, uint32_t cut, size_t *ties)
{
	if (a < cut)
		return true;
	if (a == cut && *ties > 0) {
		(*ties)--;
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------- memory */

/* Open addressing, linear probing; key 0 = empty. Deleted tokens keep their slot with zero
 * counts (a test store does not need to shrink until an expiry rebuilds it). */
struct mem_slot { uint64_t key; struct bayes_counts c; };
struct mem_table { struct mem_slot *s; size_t cap, used; };

struct mem_db {
	pthread_mutex_t mu;
	struct mem_table tok, seen;
	struct bayes_totals t;
};

static struct mem_slot *mem_find(struct mem_table *tb, uint64_t key, bool create)
{
	if (create && (tb->used + 1) * 2 > tb->cap) {
		struct mem_table nt = { .cap = tb->cap ? tb->cap * 2 : 1024 };

		nt.s = calloc(nt.cap, sizeof(*nt.s));
		if (nt.s == NULL)
			return NULL;
		for (size_t i = 0; i < tb->cap; i++)
			if (tb->s[i].key) {
				size_t j = tb->s[i].key & (nt.cap - 1);

				while (nt.s[j].key)
					j = (j + 1) & (nt.cap - 1);
				nt.s[j] = tb->s[i];
				nt.used++;
			}
		free(tb->s);
		*tb = nt;
	}
	if (tb->cap == 0)
		return NULL;
	for (size_t j = key & (tb->cap - 1);; j = (j + 1) & (tb->cap - 1)) {
		if (tb->s[j].key == key)
			return &tb->s[j];
		if (tb->s[j].key == 0) {
			if (!create)
				return NULL;
			tb->s[j].key = key;
			memset(&tb->s[j].c, 0, sizeof(tb->s[j].c));
			tb->used++;
			return &tb->s[j];
		}
	}
}

static uint64_t mem_id_key(const uint8_t *id)
{
	uint64_t k;

	memcpy(&k, id, sizeof(k));
	return k ? k : 1;
}

static int mem_seen_get(void *tx, const uint8_t *id, int *cls)
{
	struct mem_slot *s = mem_find(&((struct mem_db *)tx)->seen, mem_id_key(id), false);

	if (s == NULL || s->c.spam == 0)
		return 0;
	*cls = (int)s->c.spam - 1;
	return 1;
}

static int mem_seen_put(void *tx, const uint8_t *id, int cls, uint32_t now)
{
	struct mem_slot *s = mem_find(&((struct mem_db *)tx)->seen, mem_id_key(id), true);

	if (s == NULL)
		return -1;
	s->c.spam = (uint32_t)cls + 1;
	s->c.atime = now;
	return 0;
}

static int mem_tok_get(void *tx, uint64_t k, struct bayes_counts *c)
{
	struct mem_slot *s = mem_find(&((struct mem_db *)tx)->tok, k, false);

	if (s == NULL || (s->c.spam == 0 && s->c.ham == 0))
		return 0;
	*c = s->c;
	return 1;
}

static int mem_tok_put(void *tx, uint64_t k, const struct bayes_counts *c)
{
	struct mem_slot *s = mem_find(&((struct mem_db *)tx)->tok, k, true);

	if (s == NULL)
		return -1;
	s->c = *c;
	return 0;
}

static int mem_totals_get(void *tx, struct bayes_totals *t)
{
	*t = ((struct mem_db *)tx)->t;
	return 0;
}

static int mem_totals_put(void *tx, const struct bayes_totals *t)
{
	((struct mem_db *)tx)->t = *t;
	return 0;
}

static const struct bayes_kv mem_kv = {
	mem_seen_get, mem_seen_put, mem_tok_get, mem_tok_put, mem_totals_get, mem_totals_put
};

static int mem_lookup(void *h, const uint64_t *keys, size_t n, struct bayes_counts *out,
    struct bayes_totals *tot)
{
	struct mem_db *m = h;

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < n; i++)
		if (mem_tok_get(m, keys[i], &out[i]) != 1)
			memset(&out[i], 0, sizeof(out[i]));
	if (tot)
		*tot = m->t;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int mem_learn(void *h, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
    const uint64_t *keys, size_t n, uint32_t now, bool relearn, enum bayes_learn_result *res)
{
	struct mem_db *m = h;
	int r;

	pthread_mutex_lock(&m->mu);
	r = bayes_kv_learn(&mem_kv, m, id, cls, keys, n, now, relearn, res);
	pthread_mutex_unlock(&m->mu);
	return r;
}

static int mem_touch(void *h, const uint64_t *keys, size_t n, uint32_t now)
{
	struct mem_db *m = h;

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < n; i++) {
		struct mem_slot *s = mem_find(&m->tok, keys[i], false);

		if (s && (s->c.spam || s->c.ham) && s->c.atime < now)
			s->c.atime = now;
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int mem_expire(void *h, uint64_t max_tokens, uint32_t max_age_s, uint32_t now,
    uint64_t *removed)
{
	struct mem_db *m = h;
	uint32_t *at, cut;
	size_t n = 0, ties;
	uint64_t gone = 0;
	struct mem_table nt = { 0 };

	pthread_mutex_lock(&m->mu);
	at = malloc((m->tok.used + 1) * sizeof(uint32_t));
	if (at == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -1;
	}
	for (size_t i = 0; i < m->tok.cap; i++)
		if (m->tok.s[i].key && (m->tok.s[i].c.spam || m->tok.s[i].c.ham))
			at[n++] = m->tok.s[i].c.atime;
	cut = bayes_expire_limit(at, n, max_tokens, max_age_s, now, &ties);
	free(at);
	for (size_t i = 0; i < m->tok.cap; i++) {
		struct mem_slot *s = &m->tok.s[i], *d;

		if (s->key == 0 || (s->c.spam == 0 && s->c.ham == 0))
			continue;
		if (bayes_expire_goes(s->c.atime, cut, &ties)) {
			gone++;
			continue;
		}
		d = mem_find(&nt, s->key, true);
		if (d == NULL) {
			free(nt.s);
			pthread_mutex_unlock(&m->mu);
			return -1;
		}
		d->c = s->c;
	}
	free(m->tok.s);
	m->tok = nt;
	m->t.ntokens = m->t.ntokens > gone ? m->t.ntokens - gone : 0;
	pthread_mutex_unlock(&m->mu);
	if (removed)
		*removed = gone;
	return 0;
}

static void mem_close(void *h)
{
	struct mem_db *m = h;

	pthread_mutex_destroy(&m->mu);
	free(m->tok.s);
	free(m->seen.s);
	free(m);
}

static const struct bayes_db_ops mem_ops = {
	"memory", mem_lookup, mem_learn, mem_touch, mem_expire, mem_close
};

/* ---------------------------------------------------------------- LMDB */

/* The directory's environment is the process's one (store/lmdb_env.h: shared by path with
 * every other user, a pass cache's too, reference counted; the classifier's records are
 * under its own key prefixes, above).
 *
 * Writes go through the environment's writer thread (store/lmdb_wthr.h: the one thread that
 * waits for LMDB's write lock while a `mxgate learn` stopped (^Z, a debugger) or stuck inside
 * its write transaction, or any other LMDB writer, holds it — else a pool thread, a message's
 * autolearn or a scan's atime refresh, or a learn would wait for ever). A caller waits for
 * its job at most `wait_ms` (the store's `timeout`) and fails with a logged reason if the
 * lock has not come by then (a job already running is waited for: it holds the lock and does
 * bounded work). Reads take their transactions from the environment's lmdb_rtx pool, which
 * never waits on the reader table's lock (lmdb_rtx.h). */

/* The classifier's state of an environment (its slot: e->state[LMDB_RTX_BAYES]). */
struct bayes_lmdb_state {
	uint64_t wait_ms;                /* longest wait for the write lock; under e->wt.mu */
};

static uint64_t *lmdb_wait_ms(struct lmdb_env *e)
{
	return &((struct bayes_lmdb_state *)e->state[LMDB_RTX_BAYES])->wait_ms;
}

static struct lmdb_env *lmdb_env_get(const char *dir, uint64_t map_size, uint64_t wait_ms,
    char *err, size_t errlen)
{
	struct lmdb_env *e;
	char why[160];
	int rc;

	switch (lmdb_env_open(dir, map_size ? map_size : 512u << 20, LMDB_RTX_BAYES,
	    sizeof(struct bayes_lmdb_state), &e, &rc, why, sizeof(why))) {
	case LMDB_ENV_OK:
		break;
	case LMDB_ENV_MEMORY:
		snprintf(err, errlen, "out of memory");
		return NULL;
	case LMDB_ENV_MKDIR:
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(rc));
		return NULL;
	default:
		snprintf(err, errlen, "lmdb %s: %s", dir, why);
		return NULL;
	}
	pthread_mutex_lock(&e->wt.mu);  /* the newest configuration's timeout */
	*lmdb_wait_ms(e) = wait_ms ? wait_ms : 2000;
	pthread_mutex_unlock(&e->wt.mu);
	return e;
}

struct lmdb_tx { struct lmdb_env *e; MDB_txn *txn; };

static void lmdb_tok_key(uint64_t k, uint8_t out[11])
{
	memcpy(out, "bt:", 3);
	for (int i = 0; i < 8; i++)
		out[3 + i] = (uint8_t)(k >> (56 - 8 * i));
}

static int lmdb_get(struct lmdb_tx *tx, const void *k, size_t kl, MDB_val *v)
{
	MDB_val key = { kl, (void *)k };
	int rc = mdb_get(tx->txn, tx->e->dbi, &key, v);

	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : -1;
}

static int lmdb_put(struct lmdb_tx *tx, const void *k, size_t kl, const void *v, size_t vl)
{
	MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
	int rc;

	if (vl == 0) {
		rc = mdb_del(tx->txn, tx->e->dbi, &key, NULL);
		return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
	}
	rc = mdb_put(tx->txn, tx->e->dbi, &key, &val, 0);
	if (rc != 0)
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s reason=\"%s\"%s",
		    tx->e->dir, mdb_strerror(rc), rc == MDB_MAP_FULL ? " hint=raise_map_size" : "");
	return rc == 0 ? 0 : -1;
}

static int lmdb_seen_get(void *txp, const uint8_t *id, int *cls)
{
	uint8_t k[3 + BAYES_ID_LEN];
	MDB_val v;
	int r;

	memcpy(k, "bs:", 3);
	memcpy(k + 3, id, BAYES_ID_LEN);
	r = lmdb_get(txp, k, sizeof(k), &v);
	if (r == 1)
		*cls = v.mv_size >= 1 ? ((const uint8_t *)v.mv_data)[0] : 0;
	return r;
}

static int lmdb_seen_put(void *txp, const uint8_t *id, int cls, uint32_t now)
{
	uint8_t k[3 + BAYES_ID_LEN], v[5];

	memcpy(k, "bs:", 3);
	memcpy(k + 3, id, BAYES_ID_LEN);
	v[0] = (uint8_t)cls;
	memcpy(v + 1, &now, 4);
	return lmdb_put(txp, k, sizeof(k), v, sizeof(v));
}

static int lmdb_tok_get(void *txp, uint64_t key, struct bayes_counts *c)
{
	uint8_t k[11];
	MDB_val v;
	int r;

	lmdb_tok_key(key, k);
	r = lmdb_get(txp, k, sizeof(k), &v);
	if (r == 1) {
		if (v.mv_size != sizeof(*c))
			return 0;
		memcpy(c, v.mv_data, sizeof(*c));
	}
	return r;
}

static int lmdb_tok_put(void *txp, uint64_t key, const struct bayes_counts *c)
{
	uint8_t k[11];

	lmdb_tok_key(key, k);
	return lmdb_put(txp, k, sizeof(k), c, c->spam || c->ham ? sizeof(*c) : 0);
}

static int lmdb_totals_get(void *txp, struct bayes_totals *t)
{
	MDB_val v;
	int r = lmdb_get(txp, "bm:totals", 9, &v);

	memset(t, 0, sizeof(*t));
	if (r == 1 && v.mv_size == sizeof(*t))
		memcpy(t, v.mv_data, sizeof(*t));
	return r < 0 ? -1 : 0;
}

static int lmdb_totals_put(void *txp, const struct bayes_totals *t)
{
	return lmdb_put(txp, "bm:totals", 9, t, sizeof(*t));
}

static const struct bayes_kv lmdb_kv = {
	lmdb_seen_get, lmdb_seen_put, lmdb_tok_get, lmdb_tok_put, lmdb_totals_get, lmdb_totals_put
};

static int lmdb_commit(struct lmdb_tx *tx, int r);

/* A write job: fn runs in a write transaction the writer thread begins for it (returns 0 or
 * -1: commit or abort). State under e->wt.mu. Made by lmdb_write; whoever leaves it last
 * frees it: the caller once it is DONE or taken back out of the queue, the thread when the
 * caller gave up while the thread waited for the lock for it (ABANDONED). */
enum lmdb_wjob_state { LMDB_WJOB_QUEUED = 0, LMDB_WJOB_RUNNING, LMDB_WJOB_DONE, LMDB_WJOB_ABANDONED };

struct lmdb_bjob {
	struct lmdb_wjob job;            /* first: lmdb_bjob_run */
	struct lmdb_env *e;
	int (*fn)(struct lmdb_tx *tx, void *arg);
	void *arg;                       /* the caller's: not touched once ABANDONED */
	enum lmdb_wjob_state state;
	int result;
};

/* On the writer thread: waits for LMDB's write lock (as long as it takes), then runs the
 * job's fn in the transaction and commits — unless its caller gave up meanwhile. */
static void lmdb_bjob_run(struct lmdb_wjob *wj)
{
	struct lmdb_bjob *j = (struct lmdb_bjob *)wj;
	struct lmdb_env *e = j->e;
	struct lmdb_tx tx = { e, NULL };
	int rc = mdb_txn_begin(e->env, NULL, 0, &tx.txn), result;

	pthread_mutex_lock(&e->wt.mu);
	if (j->state == LMDB_WJOB_ABANDONED) {
		pthread_mutex_unlock(&e->wt.mu);
		if (rc == 0)
			mdb_txn_abort(tx.txn);
		free(j);
		return;
	}
	j->state = LMDB_WJOB_RUNNING;
	pthread_mutex_unlock(&e->wt.mu);
	if (rc != 0) {
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s reason=\"%s\"",
		    e->dir, mdb_strerror(rc));
		result = -1;
	} else {
		result = lmdb_commit(&tx, j->fn(&tx, j->arg));
	}
	pthread_mutex_lock(&e->wt.mu);
	j->result = result;
	j->state = LMDB_WJOB_DONE;
	pthread_cond_broadcast(&e->wt.cv);
	pthread_mutex_unlock(&e->wt.mu);
}

/* Runs fn(tx, arg) in a write transaction of e, waiting at most its wait_ms for the write lock
 * (another process's or thread's transaction). Returns fn's result (and the commit's), or -1
 * with event=bayes_error when the lock did not come in time or the writer could not start.
 * optional: a write nothing depends on (a scan's atime refresh): it waits at most 100 ms and
 * a miss is logged at debug level only, so a lock held elsewhere neither slows every scan by
 * the timeout nor floods the log. */
#define LMDB_OPTIONAL_WAIT_MS 100

static int lmdb_write(struct lmdb_env *e, int (*fn)(struct lmdb_tx *, void *), void *arg,
    bool optional)
{
	struct lmdb_bjob *j = malloc(sizeof(*j));
	struct timespec dl;
	uint64_t wait_ms;
	int rc = 0, result;
	bool ours;

	if (j == NULL) {
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s "
		    "reason=\"out of memory\"", e->dir);
		return -1;
	}
	*j = (struct lmdb_bjob){ { NULL, lmdb_bjob_run }, e, fn, arg, LMDB_WJOB_QUEUED, -1 };
	pthread_mutex_lock(&e->wt.mu);
	if (lmdb_wthr_queue_locked(&e->wt, &j->job) < 0) {
		pthread_mutex_unlock(&e->wt.mu);
		free(j);
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s "
		    "reason=\"cannot start the writer thread\"", e->dir);
		return -1;
	}
	wait_ms = *lmdb_wait_ms(e);
	if (optional && wait_ms > LMDB_OPTIONAL_WAIT_MS)
		wait_ms = LMDB_OPTIONAL_WAIT_MS;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += (time_t)(wait_ms / 1000);
	dl.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	while (j->state == LMDB_WJOB_QUEUED && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&e->wt.cv, &e->wt.mu, &dl);
	if (j->state == LMDB_WJOB_QUEUED) {
		/* the lock is held elsewhere: take the job back out of the queue, or leave it to
		 * the thread that waits for the lock for it */
		if (!(ours = lmdb_wthr_unqueue_locked(&e->wt, &j->job)))
			j->state = LMDB_WJOB_ABANDONED;
		pthread_mutex_unlock(&e->wt.mu);
		if (ours)
			free(j);
		log_event(optional ? LOG_LVL_DEBUG : LOG_LVL_WARNING, NULL,
		    "event=bayes_error store=lmdb:%s reason=\"write lock still held after %llu ms "
		    "(another process or a long write)\"", e->dir, (unsigned long long)wait_ms);
		return -1;
	}
	while (j->state != LMDB_WJOB_DONE)   /* it holds the lock: bounded work */
		pthread_cond_wait(&e->wt.cv, &e->wt.mu);
	result = j->result;
	pthread_mutex_unlock(&e->wt.mu);
	free(j);
	return result;
}

static int lmdb_commit(struct lmdb_tx *tx, int r)
{
	int rc;

	if (r < 0) {
		mdb_txn_abort(tx->txn);
		return -1;
	}
	rc = mdb_txn_commit(tx->txn);
	if (rc != 0)
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s reason=\"%s\"",
		    tx->e->dir, mdb_strerror(rc));
	return rc == 0 ? 0 : -1;
}

static int lmdb_lookup(void *h, const uint64_t *keys, size_t n, struct bayes_counts *out,
    struct bayes_totals *tot)
{
	struct lmdb_env *e = h;
	struct lmdb_tx tx = { e, NULL };
	int r = 0;

	/* never waits for the reader table's lock: a scan abstains instead (lmdb_rtx.h) */
	if (lmdb_rtx_begin(e->rtx, LMDB_RTX_BAYES, &tx.txn) < 0)
		return -1;
	if (tot && lmdb_totals_get(&tx, tot) < 0)
		r = -1;
	for (size_t i = 0; i < n && r == 0; i++) {
		int f = lmdb_tok_get(&tx, keys[i], &out[i]);

		if (f < 0)
			r = -1;
		else if (f == 0)
			memset(&out[i], 0, sizeof(out[i]));
	}
	lmdb_rtx_end(e->rtx, tx.txn);
	return r;
}

struct lmdb_learn_args {
	const uint8_t *id;
	enum bayes_class cls;
	const uint64_t *keys;
	size_t n;
	uint32_t now;
	bool relearn;
	enum bayes_learn_result *res;
};

static int lmdb_learn_cb(struct lmdb_tx *tx, void *arg)
{
	struct lmdb_learn_args *a = arg;

	return bayes_kv_learn(&lmdb_kv, tx, a->id, a->cls, a->keys, a->n, a->now, a->relearn,
	    a->res);
}

static int lmdb_learn(void *h, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
    const uint64_t *keys, size_t n, uint32_t now, bool relearn, enum bayes_learn_result *res)
{
	struct lmdb_learn_args a = { id, cls, keys, n, now, relearn, res };

	return lmdb_write(h, lmdb_learn_cb, &a, false);
}

static int lmdb_touch_cb(struct lmdb_tx *tx, void *arg)
{
	struct lmdb_learn_args *a = arg;
	int r = 0;

	for (size_t i = 0; i < a->n && r == 0; i++) {
		struct bayes_counts c;

		if (lmdb_tok_get(tx, a->keys[i], &c) == 1 && c.atime < a->now) {
			c.atime = a->now;
			r = lmdb_tok_put(tx, a->keys[i], &c);
		}
	}
	return r;
}

static int lmdb_touch(void *h, const uint64_t *keys, size_t n, uint32_t now)
{
	struct lmdb_learn_args a = { NULL, BAYES_SPAM, keys, n, now, false, NULL };

	return lmdb_write(h, lmdb_touch_cb, &a, true);
}

/* Walks the "bt:" records; del: remove those with atime < cut, else collect atimes. */
static int lmdb_walk_tokens(struct lmdb_tx *tx, uint32_t cut, size_t ties, bool del,
    uint32_t **at, size_t *n, uint64_t *gone)
{
	MDB_cursor *cur;
	MDB_val k = { 3, (void *)"bt:" }, v;
	size_t cap = 0;
	int rc;

	if (mdb_cursor_open(tx->txn, tx->e->dbi, &cur) != 0)
		return -1;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct bayes_counts c;

		if (k.mv_size != 11 || memcmp(k.mv_data, "bt:", 3) != 0)
			break;
		if (v.mv_size != sizeof(c))
			continue;
		memcpy(&c, v.mv_data, sizeof(c));
		if (del) {
			if (bayes_expire_goes(c.atime, cut, &ties)) {
				if (mdb_cursor_del(cur, 0) != 0)
					break;
				(*gone)++;
			}
			continue;
		}
		if (*n == cap) {
			uint32_t *x;

			cap = cap ? cap * 2 : 4096;
			x = realloc(*at, cap * sizeof(uint32_t));
			if (x == NULL) {
				mdb_cursor_close(cur);
				return -1;
			}
			*at = x;
		}
		(*at)[(*n)++] = c.atime;
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

struct lmdb_expire_args {
	uint64_t max_tokens;
	uint32_t max_age_s, now;
	uint64_t gone;
};

static int lmdb_expire_cb(struct lmdb_tx *tx, void *arg)
{
	struct lmdb_expire_args *a = arg;
	struct bayes_totals t;
	uint32_t *at = NULL, cut;
	size_t n = 0, ties = 0;
	int r;

	r = lmdb_walk_tokens(tx, 0, 0, false, &at, &n, &a->gone);
	cut = r == 0 ? bayes_expire_limit(at, n, a->max_tokens, a->max_age_s, a->now, &ties) : 0;
	free(at);
	if (r == 0 && cut > 0)
		r = lmdb_walk_tokens(tx, cut, ties, true, NULL, NULL, &a->gone);
	if (r == 0 && (r = lmdb_totals_get(tx, &t)) == 0) {
		t.ntokens = n - a->gone;
		r = lmdb_totals_put(tx, &t);
	}
	return r;
}

static int lmdb_expire(void *h, uint64_t max_tokens, uint32_t max_age_s, uint32_t now,
    uint64_t *removed)
{
	struct lmdb_expire_args a = { max_tokens, max_age_s, now, 0 };
	int r = lmdb_write(h, lmdb_expire_cb, &a, false);

	if (removed)
		*removed = a.gone;
	return r;
}

static void lmdb_close(void *h)
{
	lmdb_env_close(h);
}

static const struct bayes_db_ops lmdb_ops = {
	"lmdb", lmdb_lookup, lmdb_learn, lmdb_touch, lmdb_expire, lmdb_close
};

/* ---------------------------------------------------------------- dispatch */

struct bayes_db *bayes_db_open(const char *spec, const struct bayes_db_options *o,
    char *err, size_t errlen)
{
	struct bayes_db_options def = { 0 };
	struct bayes_db *db = calloc(1, sizeof(*db));

	if (o == NULL)
		o = &def;
	if (db == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (spec == NULL || strcmp(spec, "memory") == 0) {
		struct mem_db *m = calloc(1, sizeof(*m));

		if (m == NULL)
			goto oom;
		pthread_mutex_init(&m->mu, NULL);
		db->ops = &mem_ops;
		db->h = m;
	} else if (strncmp(spec, "lmdb:", 5) == 0 && spec[5] != '\0') {
		db->ops = &lmdb_ops;
		db->h = lmdb_env_get(spec + 5, o->map_size, o->timeout_ms, err, errlen);
	} else if (store_spec_is_redis(spec)) {
		db->ops = &bayes_redis_ops;
		db->h = bayes_redis_open(spec, o, err, errlen);
	} else {
		snprintf(err, errlen, "store must be lmdb:/dir, redis://host:port or memory");
	}
	if (db->h == NULL) {
		free(db);
		return NULL;
	}
	return db;
oom:
	snprintf(err, errlen, "out of memory");
	free(db);
	return NULL;
}

void bayes_db_close(struct bayes_db *db)
{
	if (db == NULL)
		return;
	db->ops->close(db->h);
	free(db);
}

const char *bayes_db_kind(const struct bayes_db *db) { return db->ops->kind; }

int bayes_db_check(struct bayes_db *db, char *err, size_t errlen)
{
	return db->ops->check ? db->ops->check(db->h, err, errlen) : 0;
}

int bayes_db_lookup(struct bayes_db *db, const uint64_t *keys, size_t n,
    struct bayes_counts *out, struct bayes_totals *tot)
{
	return db->ops->lookup(db->h, keys, n, out, tot);
}

int bayes_db_totals(struct bayes_db *db, struct bayes_totals *tot)
{
	return db->ops->lookup(db->h, NULL, 0, NULL, tot);
}

int bayes_db_learn(struct bayes_db *db, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
    const uint64_t *keys, size_t n, uint32_t now, enum bayes_learn_result *res)
{
	enum bayes_learn_result dummy;

	return db->ops->learn(db->h, id, cls, keys, n, now, true, res ? res : &dummy);
}

int bayes_db_learn_once(struct bayes_db *db, const uint8_t id[BAYES_ID_LEN],
    enum bayes_class cls, const uint64_t *keys, size_t n, uint32_t now,
    enum bayes_learn_result *res)
{
	enum bayes_learn_result dummy;

	return db->ops->learn(db->h, id, cls, keys, n, now, false, res ? res : &dummy);
}

int bayes_db_touch(struct bayes_db *db, const uint64_t *keys, size_t n, uint32_t now)
{
	return n ? db->ops->touch(db->h, keys, n, now) : 0;
}

int bayes_db_expire(struct bayes_db *db, uint64_t max_tokens, uint32_t max_age_s,
    uint32_t now, uint64_t *removed)
{
	if (removed)
		*removed = 0;
	return db->ops->expire(db->h, max_tokens, max_age_s, now, removed);
}
