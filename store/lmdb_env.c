/* lmdb_env.c — the process's one list of open LMDB environments, see lmdb_env.h. */
#include "lmdb_env.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proxy/metrics.h"

/* The list's lock is never held across a call that may wait on another process or the disk:
 * an entry's opener (mkdir, mdb_env_open, the database handle) and its closer (the sync, the
 * close) work with it released, the entry marked busy; an open of the same directory waits
 * on lmdb_envs_cv until it is not. A lookup of another directory (a loop's lmdb_env_find, a
 * close) never waits for them. */
static pthread_mutex_t lmdb_envs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lmdb_envs_cv = PTHREAD_COND_INITIALIZER;
static struct lmdb_env *lmdb_envs;
static pthread_once_t lmdb_envs_metrics_once = PTHREAD_ONCE_INIT;

/* The map gauges' collector (arg: 0 the bytes in use, 1 map_size): one sample per open
 * environment, labelled store="lmdb:DIR" as its log lines are. A scrape never waits for the
 * list: while an open holds it (mdb_env_open may wait on another process's lock), the
 * samples are left out of that scrape. Reads the meta pages only: no transaction, no lock. */
static void lmdb_envs_collect(void *arg, struct metrics_out *out)
{
	bool size = arg != NULL;

	if (pthread_mutex_trylock(&lmdb_envs_mu) != 0)
		return;
	for (struct lmdb_env *e = lmdb_envs; e; e = e->next) {
		MDB_stat ms;
		MDB_envinfo mi;
		char label[320];

		if (e->refs == 0 || !e->ready || mdb_env_stat(e->env, &ms) != 0 ||
		    mdb_env_info(e->env, &mi) != 0)
			continue;
		snprintf(label, sizeof(label), "lmdb:%s", e->dir);
		metrics_out_sample(out, "store", label, size ? (double)mi.me_mapsize :
		    (double)(((uint64_t)mi.me_last_pgno + 1) * ms.ms_psize));
	}
	pthread_mutex_unlock(&lmdb_envs_mu);
}

static void lmdb_envs_metrics_register(void)
{
	metrics_register_family("store_map_used_bytes",
	    "bytes of an LMDB map in use (its pages up to the highest, every user of the directory together); MDB_MAP_FULL when it reaches store_map_size_bytes",
	    "gauge", lmdb_envs_collect, NULL);
	metrics_register_family("store_map_size_bytes",
	    "an LMDB map's size (map_size of its first opener): the most it can hold",
	    "gauge", lmdb_envs_collect, (void *)1);
}

/* mkdir -p; 0 or -1 with errno. */
static int lmdb_mkdir_p(const char *dir)
{
	char *d = strdup(dir);
	int rc = 0;

	if (d == NULL)
		return -1;
	for (char *p = d + 1; ; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(d, 0750) < 0 && errno != EEXIST) {
			rc = -1;
			break;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	free(d);
	return rc;
}

/* lmdb_envs_mu not held, e busy in the list (lmdb_env_release said so): joins its idle
 * threads, syncs and closes the environment, then takes e out of the list (an open of the
 * same directory waited for that: one environment per directory) and frees it. */
static void lmdb_env_free(struct lmdb_env *e)
{
	struct lmdb_env **pp;

	lmdb_wthr_destroy(&e->wt);
	lmdb_rtx_free(e->rtx);
	if (e->env) {
		mdb_env_sync(e->env, 1);
		mdb_env_close(e->env);
	}
	pthread_mutex_lock(&lmdb_envs_mu);
	for (pp = &lmdb_envs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	pthread_cond_broadcast(&lmdb_envs_cv);
	pthread_mutex_unlock(&lmdb_envs_mu);
	for (int i = 0; i < LMDB_ENV_USERS; i++)
		free(e->state[i]);
	free(e->dir);
	free(e);
}

/* lmdb_envs_mu held, e->refs == 0, e in the list: stops its threads. true: they are idle,
 * e is marked busy and the caller frees it (lmdb_env_free) once it has released the list's
 * lock; false: one is inside LMDB (it starts a closer when it comes out), e stays closing. */
static bool lmdb_env_release(struct lmdb_env *e)
{
	if (!lmdb_wthr_stop(&e->wt) || (e->rtx && !lmdb_rtx_stop(e->rtx)))
		return false;             /* closing, in the list */
	e->busy = true;
	return true;
}

/* The closer the writer starts when it comes out of LMDB and finds e closing (on a thread of
 * its own: it joins the writer). */
static void lmdb_env_writer_out_cb(void *arg)
{
	struct lmdb_env *e = arg;
	bool gone;

	pthread_mutex_lock(&lmdb_envs_mu);
	lmdb_wthr_closer_ran(&e->wt);
	gone = e->refs == 0 && lmdb_env_release(e);
	pthread_mutex_unlock(&lmdb_envs_mu);
	if (gone)
		lmdb_env_free(e);
}

/* The read pool's idle callback: its thread came out of LMDB and found e closing. */
static void lmdb_env_rtx_out_cb(void *arg)
{
	struct lmdb_env *e = arg;
	bool gone;

	pthread_mutex_lock(&lmdb_envs_mu);
	lmdb_rtx_idle_seen(e->rtx);
	gone = e->refs == 0 && lmdb_env_release(e);
	pthread_mutex_unlock(&lmdb_envs_mu);
	if (gone)
		lmdb_env_free(e);
}

/* The unnamed database's handle, in a read transaction: it needs no write lock, which
 * another process may hold for as long as it likes; the read transaction waits at most
 * LMDB_RTX_WAIT_MS for the reader table (logged by the pool). The caller sets e->ready, under
 * the list's lock. */
static enum lmdb_env_step lmdb_env_dbi(struct lmdb_env *e, enum lmdb_rtx_user user, int *rc,
    char *why, size_t cap)
{
	MDB_txn *txn;
	int r;

	if (lmdb_rtx_begin(e->rtx, user, &txn) < 0) {
		snprintf(why, cap, "no read transaction (the reader table is locked by "
		    "another process, or full)");
		return LMDB_ENV_READ;
	}
	r = mdb_dbi_open(txn, NULL, 0, &e->dbi);
	lmdb_rtx_end(e->rtx, txn);
	if (r != 0) {
		*rc = r;
		snprintf(why, cap, "%s", mdb_strerror(r));
		return LMDB_ENV_DBI;
	}
	return LMDB_ENV_OK;
}

/* The opener's steps, lmdb_envs_mu not held (e busy: no one else touches it): mkdir,
 * mdb_env_open (which may wait without a bound for another process's lock on lock.mdb), the
 * read pool, the database handle. */
static enum lmdb_env_step lmdb_env_setup(struct lmdb_env *e, const char *dir, uint64_t map_size,
    enum lmdb_rtx_user user, int *rc, char *why, size_t cap)
{
	int r;

	if (lmdb_mkdir_p(dir) < 0) {
		*rc = errno;
		snprintf(why, cap, "mkdir: %s", strerror(*rc));
		return LMDB_ENV_MKDIR;
	}
	if ((r = mdb_env_create(&e->env)) != 0 ||
	    (r = mdb_env_set_mapsize(e->env, map_size)) != 0 ||
	    (r = mdb_env_set_maxreaders(e->env, 1022)) != 0 ||
	    /* NOSYNC: the OS writes the map back; a crash of the process loses nothing
	     * committed, a power loss the last seconds. NOTLS: any thread (a loop or the
	     * pool) reads. */
	    (r = mdb_env_open(e->env, dir, MDB_NOTLS | MDB_NOSYNC, 0640)) != 0) {
		*rc = r;
		snprintf(why, cap, "%s", mdb_strerror(r));
		return LMDB_ENV_OPEN;
	}
	if ((e->rtx = lmdb_rtx_new(e->env, e->dir, lmdb_env_rtx_out_cb, e)) == NULL) {
		snprintf(why, cap, "out of memory");
		return LMDB_ENV_POOL;
	}
	e->max_key = (size_t)mdb_env_get_maxkeysize(e->env);
	return lmdb_env_dbi(e, user, rc, why, cap);
}

enum lmdb_env_step lmdb_env_open(const char *dir, uint64_t map_size, enum lmdb_rtx_user user,
    size_t state_size, struct lmdb_env **out, int *rc, char *why, size_t cap)
{
	enum lmdb_env_step step;
	struct lmdb_env *e;
	bool gone;

	*out = NULL;
	*rc = 0;
	pthread_mutex_lock(&lmdb_envs_mu);
again:
	for (e = lmdb_envs; e; e = e->next)
		if (strcmp(e->dir, dir) == 0) {
			if (e->busy) {            /* being opened or closed: its outcome first */
				pthread_cond_wait(&lmdb_envs_cv, &lmdb_envs_mu);
				goto again;
			}
			if (e->refs++ == 0) {     /* closing: taken back */
				lmdb_wthr_resume(&e->wt);
				lmdb_rtx_resume(e->rtx);
			}
			/* a closing e taken back may not have come as far as its database handle:
			 * a read bounded by LMDB_RTX_WAIT_MS, under the lock (rare) */
			if (!e->ready && (step = lmdb_env_dbi(e, user, rc, why, cap)) != LMDB_ENV_OK)
				goto fail;
			e->ready = true;
			goto ready;
		}
	e = calloc(1, sizeof(*e));
	if (e == NULL || (e->dir = strdup(dir)) == NULL) {
		free(e);
		pthread_mutex_unlock(&lmdb_envs_mu);
		snprintf(why, cap, "out of memory");
		return LMDB_ENV_MEMORY;
	}
	if (lmdb_wthr_init(&e->wt, lmdb_env_writer_out_cb, e) < 0) {
		free(e->dir);
		free(e);
		pthread_mutex_unlock(&lmdb_envs_mu);
		snprintf(why, cap, "mutex or condition variable");
		return LMDB_ENV_THREAD;
	}
	/* in the list from here on, busy while its opener works without the list's lock (an
	 * open of dir waits, a lookup of another directory does not); a failure below releases
	 * it like a close */
	e->next = lmdb_envs;
	lmdb_envs = e;
	e->refs = 1;
	e->busy = true;
	pthread_mutex_unlock(&lmdb_envs_mu);
	step = lmdb_env_setup(e, dir, map_size, user, rc, why, cap);
	pthread_mutex_lock(&lmdb_envs_mu);
	e->busy = false;
	pthread_cond_broadcast(&lmdb_envs_cv);
	if (step != LMDB_ENV_OK)
		goto fail;
	e->ready = true;
	pthread_once(&lmdb_envs_metrics_once, lmdb_envs_metrics_register);
ready:
	if (e->state[user] == NULL && (e->state[user] = calloc(1, state_size ? state_size : 1)) == NULL) {
		snprintf(why, cap, "out of memory");
		step = LMDB_ENV_MEMORY;
		goto fail;
	}
	pthread_mutex_unlock(&lmdb_envs_mu);
	*out = e;
	return LMDB_ENV_OK;
fail:
	gone = --e->refs == 0 && lmdb_env_release(e);
	pthread_mutex_unlock(&lmdb_envs_mu);
	if (gone)
		lmdb_env_free(e);
	return step;
}

struct lmdb_env *lmdb_env_find(const char *dir, enum lmdb_rtx_user user)
{
	struct lmdb_env *e;

	pthread_mutex_lock(&lmdb_envs_mu);
	for (e = lmdb_envs; e; e = e->next)
		if (strcmp(e->dir, dir) == 0)
			break;
	/* closing, or not opened by this user: only an open would make it usable */
	if (e != NULL && (e->refs == 0 || !e->ready || e->state[user] == NULL))
		e = NULL;
	if (e != NULL)
		e->refs++;
	pthread_mutex_unlock(&lmdb_envs_mu);
	return e;
}

void lmdb_env_ref(struct lmdb_env *e)
{
	pthread_mutex_lock(&lmdb_envs_mu);
	e->refs++;
	pthread_mutex_unlock(&lmdb_envs_mu);
}

/* lmdb_env_close_async's thread: the sync and the close. */
static void lmdb_env_free_cb(void *arg)
{
	lmdb_env_free(arg);
}

void lmdb_env_close_async(struct lmdb_env *e)
{
	bool gone;

	if (e == NULL)
		return;
	pthread_mutex_lock(&lmdb_envs_mu);
	gone = --e->refs == 0 && lmdb_env_release(e);
	pthread_mutex_unlock(&lmdb_envs_mu);
	/* no thread (logged): here, as lmdb_env_close does */
	if (gone && lmdb_rtx_detach_call(lmdb_env_free_cb, e) < 0)
		lmdb_env_free(e);
}

void lmdb_env_close(struct lmdb_env *e)
{
	bool gone;

	if (e == NULL)
		return;
	pthread_mutex_lock(&lmdb_envs_mu);
	gone = --e->refs == 0 && lmdb_env_release(e);
	pthread_mutex_unlock(&lmdb_envs_mu);
	if (gone)
		lmdb_env_free(e);        /* the sync and the close: the list's lock released */
}
