/* test_lmdb_wthr.c — the writer thread of an LMDB environment (store/lmdb_wthr.c), without
 * LMDB: jobs run one at a time in the order queued; a stop with the thread idle lets the owner
 * destroy at once; a stop while a job runs (one that stands for a wait on LMDB's write lock)
 * leaves the queue to finish and the closer to come; a job taken back while still queued never
 * runs; a resume cancels the closer, or joins an ended thread so the next job starts
 * another. The owners' behaviour on a real lock: test_lmdb_store.c, test_bayes_db.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store/lmdb_wthr.h"

/* What the jobs did and the closer saw, under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ran[16], nran, closed;
static bool gate_open = true;           /* a job with gated waits until it opens */

struct job { struct lmdb_wjob wj; int id; bool gated; };

static void job_run(struct lmdb_wjob *wj)
{
	struct job *j = (struct job *)wj;

	pthread_mutex_lock(&mu);
	while (j->gated && !gate_open)
		pthread_cond_wait(&cv, &mu);
	ran[nran++] = j->id;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void closer_cb(void *arg)
{
	struct lmdb_wthr *t = arg;

	lmdb_wthr_closer_ran(t);
	pthread_mutex_lock(&mu);
	closed++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void reset(bool gate)
{
	pthread_mutex_lock(&mu);
	nran = closed = 0;
	gate_open = gate;
	pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
	pthread_mutex_lock(&mu);
	gate_open = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* Waits (at most 5 s) until *what reaches want; fails the test otherwise. */
static void wait_count(const int *what, int want)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&mu);
	while (*what < want)
		if (pthread_cond_timedwait(&cv, &mu, &dl) != 0)
			break;
	pthread_mutex_unlock(&mu);
	assert_int_equal(*what, want);
}

/* Waits (at most 5 s) until the thread is inside a job (busy) or out of every job, its
 * queue empty (idle). */
static void wait_busy(struct lmdb_wthr *t, bool busy)
{
	for (int i = 0; i < 5000; i++) {
		bool now;

		pthread_mutex_lock(&t->mu);
		now = busy ? t->busy : !t->busy && t->head == NULL;
		pthread_mutex_unlock(&t->mu);
		if (now)
			return;
		usleep(1000);
	}
	fail_msg("%s", busy ? "the thread never took the job" : "the thread never went idle");
}

static void queue(struct lmdb_wthr *t, struct job *j)
{
	pthread_mutex_lock(&t->mu);
	assert_int_equal(lmdb_wthr_queue_locked(t, &j->wj), 0);
	pthread_mutex_unlock(&t->mu);
}

static void test_order_and_idle_stop(void **state)
{
	struct lmdb_wthr t;
	struct job j[3];

	(void)state;
	reset(true);
	assert_int_equal(lmdb_wthr_init(&t, closer_cb, &t), 0);
	assert_true(lmdb_wthr_stop(&t));        /* never started: nothing to wait for */
	lmdb_wthr_resume(&t);
	for (int i = 0; i < 3; i++) {
		j[i] = (struct job){ { NULL, job_run }, i + 1, false };
		queue(&t, &j[i]);
	}
	wait_count(&nran, 3);
	assert_int_equal(ran[0], 1);
	assert_int_equal(ran[1], 2);
	assert_int_equal(ran[2], 3);
	wait_busy(&t, false);
	assert_true(lmdb_wthr_stop(&t));
	lmdb_wthr_destroy(&t);
	assert_int_equal(closed, 0);
}

/* A stop while a job runs: the queue still runs (oldest first), then the closer comes once,
 * and only then may the owner destroy. */
static void test_stop_while_busy(void **state)
{
	struct lmdb_wthr t;
	struct job a = { { NULL, job_run }, 1, true }, b = { { NULL, job_run }, 2, false };

	(void)state;
	reset(false);
	assert_int_equal(lmdb_wthr_init(&t, closer_cb, &t), 0);
	queue(&t, &a);
	wait_busy(&t, true);
	queue(&t, &b);
	assert_false(lmdb_wthr_stop(&t));       /* inside a job: the closing is the thread's */
	open_gate();
	wait_count(&closed, 1);
	assert_int_equal(nran, 2);
	assert_int_equal(ran[1], 2);
	assert_true(lmdb_wthr_stop(&t));        /* ended, closer ran */
	lmdb_wthr_destroy(&t);
	assert_int_equal(closed, 1);
}

/* A job still queued is taken back and never runs; the one the thread has is not. */
static void test_unqueue(void **state)
{
	struct lmdb_wthr t;
	struct job a = { { NULL, job_run }, 1, true }, b = { { NULL, job_run }, 2, false };

	(void)state;
	reset(false);
	assert_int_equal(lmdb_wthr_init(&t, closer_cb, &t), 0);
	queue(&t, &a);
	wait_busy(&t, true);
	queue(&t, &b);
	pthread_mutex_lock(&t.mu);
	assert_false(lmdb_wthr_unqueue_locked(&t, &a.wj));
	assert_true(lmdb_wthr_unqueue_locked(&t, &b.wj));
	assert_false(lmdb_wthr_unqueue_locked(&t, &b.wj));
	assert_null(t.head);
	assert_null(t.tail);
	pthread_mutex_unlock(&t.mu);
	open_gate();
	wait_count(&nran, 1);
	usleep(20000);
	assert_int_equal(nran, 1);
	assert_int_equal(ran[0], 1);
	wait_busy(&t, false);
	assert_true(lmdb_wthr_stop(&t));
	lmdb_wthr_destroy(&t);
}

/* Resumed (an open took the environment back) while its job runs: no closer, the thread goes
 * on; resumed after it ended: it is joined and the next job starts another. */
static void test_resume(void **state)
{
	struct lmdb_wthr t;
	struct job a = { { NULL, job_run }, 1, true }, b = { { NULL, job_run }, 2, false };
	struct job c = { { NULL, job_run }, 3, false };

	(void)state;
	reset(false);
	assert_int_equal(lmdb_wthr_init(&t, closer_cb, &t), 0);
	queue(&t, &a);
	wait_busy(&t, true);
	assert_false(lmdb_wthr_stop(&t));
	lmdb_wthr_resume(&t);
	open_gate();
	wait_count(&nran, 1);
	queue(&t, &b);                          /* the same thread: it did not end */
	wait_count(&nran, 2);
	usleep(20000);
	assert_int_equal(closed, 0);
	/* stopped idle: it ends by itself; resumed, then a job: a new thread runs it */
	wait_busy(&t, false);
	assert_true(lmdb_wthr_stop(&t));
	for (int i = 0; i < 1000; i++) {
		bool exited;

		pthread_mutex_lock(&t.mu);
		exited = t.exited;
		pthread_mutex_unlock(&t.mu);
		if (exited)
			break;
		usleep(1000);
	}
	assert_true(t.exited);
	lmdb_wthr_resume(&t);
	assert_false(t.up);
	queue(&t, &c);
	wait_count(&nran, 3);
	assert_int_equal(ran[2], 3);
	wait_busy(&t, false);
	assert_true(lmdb_wthr_stop(&t));
	lmdb_wthr_destroy(&t);
	assert_int_equal(closed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_idle_stop),
		cmocka_unit_test(test_stop_while_busy),
		cmocka_unit_test(test_unqueue),
		cmocka_unit_test(test_resume),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
