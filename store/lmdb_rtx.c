/* lmdb_rtx.c — kept LMDB read slots and a thread that makes new ones, see lmdb_rtx.h. */
#include "lmdb_rtx.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "proxy/log.h"

#define RTX_LOG_EVERY_MS 60000
/* How long a begin waits for the thread to be scheduled at all — to start, or to take the
 * request up — on a loaded machine: not the table's mutex, so not LMDB_RTX_WAIT_MS. */
#define RTX_SCHED_WAIT_MS 2000

/* Begins that waited for the thread (lmdb_rtx_waits): every pool's, for tests. */
static _Atomic uint64_t rtx_waits;

struct lmdb_rtx {
	MDB_env *env;
	const char *dir;
	lmdb_rtx_idle_cb idle;
	void *arg;
	pthread_mutex_t mu;              /* guards the fields below */
	pthread_cond_t cv;               /* want, stop, a slot made */
	MDB_txn **kept;                  /* reset transactions, each holding its slot */
	size_t nkept, cap;
	pthread_t thr;
	bool thr_up, stop, want;
	bool exited;                     /* the thread ended (stopped), not joined yet */
	bool busy;                       /* the thread is inside LMDB (or starting) */
	bool stuck;                      /* a begin gave up waiting for this attempt */
	unsigned idle_due;               /* idle callbacks started, lmdb_rtx_idle_seen not yet
	                                  * called by them: a count — a stop taken back by a
	                                  * resume and stopped again starts a second before the
	                                  * first has run, and the first must not free the pool
	                                  * the second will read */
	uint64_t busy_since;             /* monotonic ms, the thread's own: when it went in; 0
	                                  * while it has not run yet (started, not scheduled) */
	uint64_t made;                   /* attempts finished */
	int made_rc;                     /* the last one's LMDB result */
	struct log_rated rated[LMDB_RTX_USERS];  /* per caller: each its own event, its own rate */
};

static uint64_t rtx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void rtx_log(struct lmdb_rtx *r, enum lmdb_rtx_user user, const char *why, uint64_t ms)
{
	char reason[200];
	bool now;

	log_rated_note(&r->rated[user == LMDB_RTX_BAYES], RTX_LOG_EVERY_MS, &now);
	if (!now)
		return;
	if (ms)
		snprintf(reason, sizeof(reason), "%s for %llu ms (another process holds it): read "
		    "abstains", why, (unsigned long long)ms);
	else
		snprintf(reason, sizeof(reason), "%s: read abstains", why);
	/* the caller's own event, each written out (docs/operations.md's rows): an environment
	 * shared by the store and the classifier logs each one's failures as its own */
	if (user == LMDB_RTX_BAYES)
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=lmdb:%s reason=\"%s\"",
		    r->dir, reason);
	else
		log_event(LOG_LVL_WARNING, NULL, "event=lmdb_error store=lmdb:%s reason=\"%s\"",
		    r->dir, reason);
}

/* Clears the slots of dead processes; the thread's, it may wait for the table's mutex. */
static void rtx_clear_stale(struct lmdb_rtx *r)
{
	int dead = 0;

	if (mdb_reader_check(r->env, &dead) == 0 && dead > 0)
		log_event(LOG_LVL_INFO, NULL, "event=lmdb_readers_cleared store=lmdb:%s cleared=%d",
		    r->dir, dead);
}

struct rtx_call { void (*fn)(void *); void *arg; };

static void *rtx_call_cb(void *p)
{
	struct rtx_call c = *(struct rtx_call *)p;

	free(p);
	c.fn(c.arg);
	return NULL;
}

int lmdb_rtx_detach_call(void (*fn)(void *), void *arg)
{
	struct rtx_call *c = malloc(sizeof(*c));
	pthread_attr_t a;
	pthread_t t;
	int rc;

	if (c == NULL || pthread_attr_init(&a) != 0) {
		free(c);
		goto fail;
	}
	c->fn = fn;
	c->arg = arg;
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &a, rtx_call_cb, c);
	pthread_attr_destroy(&a);
	if (rc == 0)
		return 0;
	free(c);
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=lmdb_error reason=\"cannot start a thread to close "
	    "an environment: left open\"");
	return -1;
}

/* The pool's thread: clears stale slots, then makes a slot each time one is wanted. */
static void *rtx_thread_cb(void *arg)
{
	struct lmdb_rtx *r = arg;

	pthread_mutex_lock(&r->mu);
	r->busy_since = rtx_now_ms();    /* running: from here on, inside LMDB */
	pthread_mutex_unlock(&r->mu);
	rtx_clear_stale(r);
	pthread_mutex_lock(&r->mu);
	if (r->stop) {
		r->busy = false;
		if (lmdb_rtx_detach_call(r->idle, r->arg) == 0)
			r->idle_due++;
	}
	for (;;) {
		MDB_txn *txn = NULL;
		int rc;

		r->busy = false;
		while (!r->want && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop)
			break;
		r->busy = true;
		r->busy_since = rtx_now_ms();
		pthread_mutex_unlock(&r->mu);
		rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
		if (rc == MDB_READERS_FULL) {
			rtx_clear_stale(r);
			rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
		}
		if (rc == 0)
			mdb_txn_reset(txn);
		pthread_mutex_lock(&r->mu);
		r->want = false;
		r->stuck = false;
		r->made++;
		r->made_rc = rc;
		if (rc == 0) {
			if (r->nkept == r->cap) {
				size_t cap = r->cap ? r->cap * 2 : 16;
				MDB_txn **k = realloc(r->kept, cap * sizeof(*k));

				if (k != NULL) {
					r->kept = k;
					r->cap = cap;
				}
			}
			if (r->nkept < r->cap)
				r->kept[r->nkept++] = txn;
			else
				mdb_txn_abort(txn);
		}
		pthread_cond_broadcast(&r->cv);
		if (r->stop) {
			/* stopped while it was inside LMDB: the owner left the environment open
			 * for it; out now, and stopping at the top of the loop */
			r->busy = false;
			if (lmdb_rtx_detach_call(r->idle, r->arg) == 0)
				r->idle_due++;
		}
	}
	r->exited = true;
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct lmdb_rtx *lmdb_rtx_new(MDB_env *env, const char *dir, lmdb_rtx_idle_cb idle, void *arg)
{
	struct lmdb_rtx *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;

	if (r == NULL)
		return NULL;
	r->env = env;
	r->dir = dir;
	r->idle = idle;
	r->arg = arg;
	if (pthread_mutex_init(&r->mu, NULL) != 0) {
		free(r);
		return NULL;
	}
	if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&r->cv, &ca) != 0) {
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	r->busy = true;                  /* the stale slots are cleared first */
	r->busy_since = 0;
	if (pthread_create(&r->thr, NULL, rtx_thread_cb, r) != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	r->thr_up = true;
	return r;
}

int lmdb_rtx_begin(struct lmdb_rtx *r, enum lmdb_rtx_user user, MDB_txn **txn)
{
	struct timespec dl = { 0, 0 };
	uint64_t now, busy_ms = 0, t0 = rtx_now_ms();
	int rc = 0, wrc = 0;

	pthread_mutex_lock(&r->mu);
	while (r->nkept == 0) {
		uint64_t seen = r->made;
		/* the thread inside LMDB, by its own clock: not merely waiting to be scheduled */
		bool in = r->busy && r->busy_since != 0;

		now = rtx_now_ms();
		if (in && (r->stuck || now - r->busy_since >= LMDB_RTX_WAIT_MS)) {
			busy_ms = now - r->busy_since;   /* stuck: no wait at all */
			break;
		}
		if (wrc == ETIMEDOUT && (in ? now - r->busy_since < LMDB_RTX_WAIT_MS :
		    now - t0 < RTX_SCHED_WAIT_MS)) {
			/* the thread had not run when this begin started waiting, since it was
			 * started or asked (a loaded machine): the bound is for the table's mutex,
			 * counted from when the thread went in */
			wrc = 0;
			dl.tv_sec = dl.tv_nsec = 0;
		}
		if (wrc == ETIMEDOUT) {
			busy_ms = r->busy ? now - r->busy_since : LMDB_RTX_WAIT_MS;
			r->stuck = r->busy;      /* the next begins do not wait for it again */
			break;
		}
		if (!r->want) {
			r->want = true;
			pthread_cond_broadcast(&r->cv);
		}
		if (dl.tv_sec == 0 && dl.tv_nsec == 0) {
			clock_gettime(CLOCK_MONOTONIC, &dl);
			dl.tv_nsec += (long)LMDB_RTX_WAIT_MS * 1000000L;
			if (dl.tv_nsec >= 1000000000L) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000L;
			}
		}
		if (r->made == seen && r->nkept == 0 && wrc != ETIMEDOUT)
			atomic_fetch_add(&rtx_waits, 1);
		while (r->made == seen && r->nkept == 0 && wrc != ETIMEDOUT)
			wrc = pthread_cond_timedwait(&r->cv, &r->mu, &dl);
		if (r->nkept == 0 && r->made != seen && r->made_rc != 0) {
			rc = r->made_rc;         /* the table is full (after clearing), or worse */
			break;
		}
	}
	if (r->nkept == 0) {
		pthread_mutex_unlock(&r->mu);
		if (rc != 0)
			rtx_log(r, user, mdb_strerror(rc), 0);
		else
			rtx_log(r, user, "LMDB reader table locked", busy_ms);
		return -1;
	}
	*txn = r->kept[--r->nkept];
	pthread_mutex_unlock(&r->mu);
	if ((rc = mdb_txn_renew(*txn)) != 0) {
		mdb_txn_abort(*txn);
		rtx_log(r, user, mdb_strerror(rc), 0);
		return -1;
	}
	return 0;
}

uint64_t lmdb_rtx_waits(void)
{
	return atomic_load(&rtx_waits);
}

void lmdb_rtx_end(struct lmdb_rtx *r, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	pthread_mutex_lock(&r->mu);
	if (r->nkept < r->cap) {
		r->kept[r->nkept++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	if (txn)
		mdb_txn_abort(txn);      /* more at once than the thread made: not kept */
}

bool lmdb_rtx_stop(struct lmdb_rtx *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	if (r->busy || r->idle_due) {
		pthread_mutex_unlock(&r->mu);
		return false;
	}
	pthread_mutex_unlock(&r->mu);
	if (r->thr_up)
		pthread_join(r->thr, NULL);
	r->thr_up = false;
	return true;
}

void lmdb_rtx_idle_seen(struct lmdb_rtx *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->idle_due > 0)
		r->idle_due--;
	pthread_mutex_unlock(&r->mu);
}

int lmdb_rtx_resume(struct lmdb_rtx *r)
{
	bool exited;

	pthread_mutex_lock(&r->mu);
	r->stop = false;
	exited = r->exited;
	pthread_mutex_unlock(&r->mu);
	if (r->thr_up && exited)         /* it ended on its own after a stop: a new one */
		pthread_join(r->thr, NULL);
	else if (r->thr_up)
		return 0;
	r->thr_up = false;
	pthread_mutex_lock(&r->mu);
	r->exited = false;
	r->busy = true;
	r->busy_since = 0;
	pthread_mutex_unlock(&r->mu);
	if (pthread_create(&r->thr, NULL, rtx_thread_cb, r) != 0) {
		pthread_mutex_lock(&r->mu);
		r->busy = false;
		pthread_mutex_unlock(&r->mu);
		return -1;
	}
	r->thr_up = true;
	return 0;
}

void lmdb_rtx_free(struct lmdb_rtx *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nkept; i++)
		mdb_txn_abort(r->kept[i]);
	free(r->kept);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
