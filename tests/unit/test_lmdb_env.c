/* test_lmdb_env.c — the process's list of LMDB environments (store/lmdb_env.c) while an open
 * waits on another process: mdb_env_open waits without a bound for the fcntl lock on byte 0
 * of lock.mdb while another process holds it exclusively (here a child of the test,
 * lmdb_peer.h's LMDB_PEER_EXCL; in life a process stopped inside its own open). The
 * list's lock was held across that open, so every lookup and close of any other directory —
 * a control verb's lmdb_env_find on the main loop, a worker's close — waited as long. Now
 * the entry is busy and the lock released: others go on; a second open of the same
 * directory waits for the first and shares its environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/lmdb_env.h"
#include "lmdb_peer.h"

struct dir { char path[64]; };

static void dir_make(struct dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/mxgate-lmdbenv-XXXXXX");
	assert_non_null(mkdtemp(d->path));
}

static void dir_remove(struct dir *d)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
	assert_int_equal(system(cmd), 0);
}

static struct lmdb_env *env_open(const char *dir)
{
	struct lmdb_env *e = NULL;
	char why[160];
	int rc;

	if (lmdb_env_open(dir, 16u << 20, LMDB_RTX_STORE, 8, &e, &rc, why, sizeof(why)) != LMDB_ENV_OK) {
		fprintf(stderr, "open %s: %s (%d)\n", dir, why, rc);
		return NULL;
	}
	return e;
}

struct opener {
	pthread_t t;
	const char *dir;
	struct lmdb_env *e;
};

static void *opener_cb(void *arg)
{
	struct opener *o = arg;

	o->e = env_open(o->dir);
	return NULL;
}

/* The other thread's work while the open waits: a lookup of an open directory, a lookup of
 * the waiting one, an open and the last close of a third. */
struct others {
	pthread_t t;
	const char *open_dir, *stuck_dir, *new_dir;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	bool found_open, found_stuck, opened_new;
};

static void *others_cb(void *arg)
{
	struct others *o = arg;
	struct lmdb_env *e = lmdb_env_find(o->open_dir, LMDB_RTX_STORE);
	struct lmdb_env *s = lmdb_env_find(o->stuck_dir, LMDB_RTX_STORE);
	struct lmdb_env *n = env_open(o->new_dir);

	o->found_open = e != NULL;
	o->found_stuck = s != NULL;
	o->opened_new = n != NULL;
	lmdb_env_close(e);
	lmdb_env_close(s);
	lmdb_env_close(n);               /* the last reference: sync and close */
	pthread_mutex_lock(&o->mu);
	o->done = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static void test_open_waiting_leaves_others(void **state)
{
	struct dir a, b, c;
	struct lmdb_env *eb;
	struct opener o1 = { 0 }, o2 = { 0 };
	struct others ot = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct timespec until;
	pthread_condattr_t ca;
	int release;
	pid_t pid;
	bool answered;

	(void)state;
	alarm(90);                       /* the test's own bound, beyond the waits below */
	dir_make(&a);
	dir_make(&b);
	dir_make(&c);
	eb = env_open(b.path);
	assert_non_null(eb);
	pid = lmdb_peer_start(a.path, LMDB_PEER_EXCL, &release);

	/* the open of a waits for the child's lock, inside mdb_env_open (its lock file open) */
	o1.dir = a.path;
	assert_int_equal(pthread_create(&o1.t, NULL, opener_cb, &o1), 0);
	for (int i = 0; i < 2000 && lmdb_peer_lock_fds(a.path) < 1; i++)
		usleep(10 * 1000);
	assert_int_equal(lmdb_peer_lock_fds(a.path), 1);
	/* a second open of a: waits for the first, then shares its environment */
	o2.dir = a.path;
	assert_int_equal(pthread_create(&o2.t, NULL, opener_cb, &o2), 0);

	/* another thread's lookups and an open/close elsewhere complete meanwhile (on main's
	 * code they waited for the list's lock, held by the open of a: for ever) */
	ot.open_dir = b.path;
	ot.stuck_dir = a.path;
	ot.new_dir = c.path;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ot.cv, &ca);
	pthread_condattr_destroy(&ca);
	assert_int_equal(pthread_create(&ot.t, NULL, others_cb, &ot), 0);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&ot.mu);
	while (!ot.done && pthread_cond_timedwait(&ot.cv, &ot.mu, &until) != ETIMEDOUT)
		;
	answered = ot.done;
	pthread_mutex_unlock(&ot.mu);

	/* the child lets go: both opens of a complete */
	lmdb_peer_end(pid, release, false);
	pthread_join(o1.t, NULL);
	pthread_join(o2.t, NULL);
	pthread_join(ot.t, NULL);
	assert_true(answered);           /* seen: no answer within 30 s on main's lmdb_env.c */
	assert_true(ot.found_open);
	assert_false(ot.found_stuck);    /* not open yet: a lookup does not wait for it */
	assert_true(ot.opened_new);
	assert_non_null(o1.e);
	assert_ptr_equal(o1.e, o2.e);    /* one environment per directory */
	assert_int_equal(lmdb_peer_lock_fds(a.path), 1);
	lmdb_env_close(o1.e);
	lmdb_env_close(o2.e);
	assert_int_equal(lmdb_peer_lock_fds(a.path), 0);
	assert_int_equal(lmdb_peer_lock_fds(c.path), 0);
	lmdb_env_close(eb);
	pthread_cond_destroy(&ot.cv);
	dir_remove(&a);
	dir_remove(&b);
	dir_remove(&c);
	alarm(0);
}

/* Open, close, open again of one directory from two threads: no second environment, and
 * one that is closing is never handed out (the close's sync runs without the list's lock). */
static void *churn_cb(void *arg)
{
	const char *dir = arg;

	for (int i = 0; i < 200; i++) {
		struct lmdb_env *e = env_open(dir);

		if (e == NULL || lmdb_peer_lock_fds(dir) != 1)
			return (void *)1;
		lmdb_env_close(e);
	}
	return NULL;
}

static void test_open_close_churn(void **state)
{
	struct dir d;
	pthread_t t[2];
	void *r[2];

	(void)state;
	alarm(90);
	dir_make(&d);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn_cb, d.path), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], &r[i]);
	assert_null(r[0]);
	assert_null(r[1]);
	assert_int_equal(lmdb_peer_lock_fds(d.path), 0);
	dir_remove(&d);
	alarm(0);
}

/* One directory shared by the pass caches' store and the classifier (greylist, reputation
 * and bayes may name the same one): a reload or a shutdown that drops one user's references
 * leaves the environment to the other, which goes on writing and reading in it; the last
 * reference closes it, once. Under ASan (MX_SANITIZED): no use after free, no double close. */
static void test_shared_users(void **state)
{
	struct dir d;
	struct lmdb_env *st1, *st2, *bayes = NULL, *found;
	MDB_txn *txn;
	MDB_val k = { 3, "key" }, v = { 5, "value" }, got;
	char why[160];
	int rc;

	(void)state;
	alarm(60);
	dir_make(&d);
	assert_non_null(st1 = env_open(d.path));            /* greylist's store */
	assert_non_null(st2 = env_open(d.path));            /* reputation's: the same one */
	assert_ptr_equal(st1, st2);
	assert_int_equal(lmdb_env_open(d.path, 16u << 20, LMDB_RTX_BAYES, 16, &bayes, &rc, why, sizeof(why)),
	    LMDB_ENV_OK);
	assert_ptr_equal(bayes, st1);
	/* a reload without greylist and reputation: the store's references go, one off a loop */
	lmdb_env_close(st1);
	lmdb_env_close_async(st2);
	/* the classifier's environment is still open and usable */
	assert_int_equal(lmdb_peer_lock_fds(d.path), 1);
	assert_int_equal(mdb_txn_begin(bayes->env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, bayes->dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(mdb_txn_begin(bayes->env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_get(txn, bayes->dbi, &k, &got), 0);
	assert_int_equal(got.mv_size, 5);
	mdb_txn_abort(txn);
	/* a control verb's lookup finds it while the classifier holds it, and lets it go */
	found = lmdb_env_find(d.path, LMDB_RTX_BAYES);
	assert_ptr_equal(found, bayes);
	lmdb_env_close_async(found);
	assert_int_equal(lmdb_peer_lock_fds(d.path), 1);
	/* the shutdown: the last reference closes it (the sync and close on the caller) */
	lmdb_env_close(bayes);
	assert_null(lmdb_env_find(d.path, LMDB_RTX_BAYES));
	assert_int_equal(lmdb_peer_lock_fds(d.path), 0);
	dir_remove(&d);
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_waiting_leaves_others),
		cmocka_unit_test(test_open_close_churn),
		cmocka_unit_test(test_shared_users),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
