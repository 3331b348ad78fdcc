/* lmdb_wthr.c — the writer thread of an LMDB environment, see lmdb_wthr.h. */
#include "lmdb_wthr.h"

#include <time.h>

#include "lmdb_rtx.h"

int lmdb_wthr_init(struct lmdb_wthr *t, void (*closer)(void *), void *arg)
{
	pthread_condattr_t ca;

	*t = (struct lmdb_wthr){ .closer = closer, .arg = arg };
	if (pthread_mutex_init(&t->mu, NULL) != 0)
		return -1;
	/* monotonic: an owner's timed wait for its job does not move with the wall clock */
	if (pthread_condattr_init(&ca) != 0)
		goto fail;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&t->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	pthread_condattr_destroy(&ca);
	return 0;
fail:
	pthread_mutex_destroy(&t->mu);
	return -1;
}

void lmdb_wthr_destroy(struct lmdb_wthr *t)
{
	if (t->up)
		pthread_join(t->thr, NULL);     /* idle, told to stop: it ends at once */
	t->up = false;
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}

/* The thread: runs the queued jobs, oldest first — each waits for LMDB's write lock as long as
 * another process holds it. Ends when stopped with the queue empty; when lmdb_wthr_stop left
 * the closing to it, starts the owner's closer. */
static void *lmdb_wthr_main(void *arg)
{
	struct lmdb_wthr *t = arg;
	bool closer;

	pthread_mutex_lock(&t->mu);
	for (;;) {
		struct lmdb_wjob *j;

		while (t->head == NULL && !t->stop)
			pthread_cond_wait(&t->cv, &t->mu);
		if ((j = t->head) == NULL)
			break;
		if ((t->head = j->next) == NULL)
			t->tail = NULL;
		t->busy = true;
		pthread_mutex_unlock(&t->mu);
		j->run(j);                      /* may drop the owner's last reference: see stop */
		pthread_mutex_lock(&t->mu);
		t->busy = false;
		pthread_cond_broadcast(&t->cv);
	}
	t->exited = true;
	if ((closer = t->defer))
		t->closers++;
	t->defer = false;
	pthread_mutex_unlock(&t->mu);
	if (closer && lmdb_rtx_detach_call(t->closer, t->arg) < 0) {
		pthread_mutex_lock(&t->mu);
		t->closers--;                   /* left open (logged) until a reopen takes it back */
		pthread_mutex_unlock(&t->mu);
	}
	return NULL;
}

int lmdb_wthr_queue_locked(struct lmdb_wthr *t, struct lmdb_wjob *j)
{
	if (!t->up) {
		if (pthread_create(&t->thr, NULL, lmdb_wthr_main, t) != 0)
			return -1;
		t->up = true;
	}
	j->next = NULL;
	if (t->tail)
		t->tail->next = j;
	else
		t->head = j;
	t->tail = j;
	pthread_cond_broadcast(&t->cv);
	return 0;
}

bool lmdb_wthr_unqueue_locked(struct lmdb_wthr *t, struct lmdb_wjob *j)
{
	struct lmdb_wjob **pp, *prev = NULL;

	for (pp = &t->head; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			if (t->tail == j)
				t->tail = prev;
			return true;
		}
	return false;
}

bool lmdb_wthr_stop(struct lmdb_wthr *t)
{
	bool running, inside;

	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_broadcast(&t->cv);
	running = t->up && !t->exited;
	inside = (running && (t->busy || t->head)) || t->closers > 0;
	if (inside && running)
		t->defer = true;
	pthread_mutex_unlock(&t->mu);
	return !inside;
}

void lmdb_wthr_resume(struct lmdb_wthr *t)
{
	pthread_mutex_lock(&t->mu);
	t->stop = t->defer = false;
	if (t->exited) {                        /* ended: the next job starts another */
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thr, NULL);
		pthread_mutex_lock(&t->mu);
		t->up = t->exited = false;
	}
	pthread_mutex_unlock(&t->mu);
}

void lmdb_wthr_closer_ran(struct lmdb_wthr *t)
{
	pthread_mutex_lock(&t->mu);
	t->closers--;
	pthread_mutex_unlock(&t->mu);
}
