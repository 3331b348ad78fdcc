/* test_lmdb_rtx.c — the read-slot pool's idle callbacks (store/lmdb_rtx.c). A pool stopped
 * while its thread is inside LMDB (the reader table's mutex held by another process) leaves
 * the closing to an idle callback the thread starts when it comes out. A stop, a resume (the
 * environment opened again) and a stop again while a thread is inside LMDB start a second
 * callback before the first has run. The pool counted them as one flag: the first callback's
 * lmdb_rtx_idle_seen cleared it, its lmdb_rtx_stop said "stopped", its owner freed the pool
 * and the environment, and the second callback freed them again — a SIGSEGV in mdb_txn_abort
 * under lmdb_rtx_free (test_bayes_db's test_lmdb_reader_table_locked, a few runs in a hundred
 * under load; the exit without a cmocka line seen in session 21). Here the two callbacks are
 * held and let go one by one: only the last may see the pool stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/lmdb_rtx.h"
#pragma GCC diagnostic ignored "-Wunused-function"  /* lmdb_peer.h's other peers */
#include "lmdb_peer.h"

struct closers {
	struct lmdb_rtx *r;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started, go, ran, stopped, stopped_by;
};

/* The owner's idle callback (lmdb_env.c's lmdb_env_rtx_out_cb, without the free): held until
 * the test lets it go, in the order started. */
static void closer_cb(void *arg)
{
	struct closers *c = arg;
	bool stopped;
	int me;

	pthread_mutex_lock(&c->mu);
	me = ++c->started;
	pthread_cond_broadcast(&c->cv);
	while (c->go < me)
		pthread_cond_wait(&c->cv, &c->mu);
	lmdb_rtx_idle_seen(c->r);
	stopped = lmdb_rtx_stop(c->r);
	c->ran++;
	if (stopped) {
		c->stopped++;
		c->stopped_by = me;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Waits (bounded: 30 s, a failure, not a hang) until *v reaches want. */
static void closers_wait(struct closers *c, const int *v, int want)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 30;
	pthread_mutex_lock(&c->mu);
	while (*v < want && pthread_cond_timedwait(&c->cv, &c->mu, &dl) == 0)
		;
	assert_true(*v >= want);
	pthread_mutex_unlock(&c->mu);
}

/* Leaves the slots of a dead process in dir's reader table (a peer that took every slot,
 * killed): the next mdb_reader_check takes the table's mutex to clear them. */
static void stale_slots(const char *dir)
{
	int release;
	pid_t pid = lmdb_peer_start(dir, LMDB_PEER_READERS, &release);

	lmdb_peer_end(pid, release, true);
}

/* This process's thread count (/proc/self/status). */
static int threads_now(void)
{
	char line[128];
	FILE *f = fopen("/proc/self/status", "r");
	int n = -1;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* Waits (bounded) until the process has n threads: the pool's thread has ended. */
static void threads_wait(int n)
{
	for (int i = 0; i < 3000 && threads_now() != n; i++)
		usleep(10000);
	assert_int_equal(threads_now(), n);
}

static void test_two_idle_callbacks(void **state)
{
	char dir[64], cmd[96];
	struct closers c = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	MDB_env *env;
	int release, base;
	pid_t pid;

	(void)state;
	alarm(60);
	snprintf(dir, sizeof(dir), "/tmp/mxgate-lmdbrtx-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0640), 0);
	base = threads_now();

	/* the pool's thread starts by clearing stale slots; LMDB takes the reader table's
	 * mutex for that only when there is a slot of a dead process to clear: so there is
	 * one, and the mutex is held elsewhere; the thread waits there, inside LMDB, until it
	 * is let go (without the stale slot it went through at once, and whether it had seen
	 * the stop yet was a race: 8 failures in 20 runs under load) */
	stale_slots(dir);
	pid = lmdb_peer_start(dir, LMDB_PEER_RMUTEX, &release);
	assert_non_null(c.r = lmdb_rtx_new(env, dir, closer_cb, &c));
	assert_false(lmdb_rtx_stop(c.r));
	/* let go: it comes out, starts the first callback (held) and ends */
	lmdb_peer_end(pid, release, false);
	closers_wait(&c, &c.started, 1);
	threads_wait(base + 1);              /* the callback's thread, not the pool's */

	/* taken back (a new thread, inside LMDB again) and stopped again: a second callback */
	stale_slots(dir);
	pid = lmdb_peer_start(dir, LMDB_PEER_RMUTEX, &release);
	assert_int_equal(lmdb_rtx_resume(c.r), 0);
	assert_false(lmdb_rtx_stop(c.r));
	lmdb_peer_end(pid, release, false);
	closers_wait(&c, &c.started, 2);
	threads_wait(base + 2);

	/* the first callback runs: the second is still to come, the pool is not stopped for it */
	pthread_mutex_lock(&c.mu);
	c.go = 1;
	pthread_cond_broadcast(&c.cv);
	pthread_mutex_unlock(&c.mu);
	closers_wait(&c, &c.ran, 1);
	assert_int_equal(c.stopped, 0);
	/* the second: now it is */
	pthread_mutex_lock(&c.mu);
	c.go = 2;
	pthread_cond_broadcast(&c.cv);
	pthread_mutex_unlock(&c.mu);
	closers_wait(&c, &c.ran, 2);
	assert_int_equal(c.stopped, 1);
	assert_int_equal(c.stopped_by, 2);

	threads_wait(base);                  /* the callbacks' threads ended */
	lmdb_rtx_free(c.r);
	mdb_env_close(env);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_idle_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
