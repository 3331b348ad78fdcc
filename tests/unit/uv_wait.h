/* uv_wait.h — unit tests that drive a libuv loop: run it until a condition holds. */
#ifndef MX_TEST_UV_WAIT_H
#define MX_TEST_UV_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct uv_waiter {
	bool (*cond)(void *);
	void *arg;
	uint64_t deadline;
	bool met;
};

static inline void uv_waiter_cb(uv_timer_t *t)
{
	struct uv_waiter *w = t->data;

	if (w->cond(w->arg)) {
		w->met = true;
		uv_stop(t->loop);
	} else if (uv_now(t->loop) >= w->deadline) {
		uv_stop(t->loop);
	}
}

/* Runs loop until cond(arg) holds (checked every 2 ms) or max_ms pass: a bound for a stuck
 * test, not a timing assertion. Returns whether it held. */
static inline bool run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, uint64_t max_ms)
{
	uv_timer_t t;
	struct uv_waiter w = { cond, arg, 0, false };

	uv_update_time(loop);
	w.deadline = uv_now(loop) + max_ms;
	uv_timer_init(loop, &t);
	t.data = &w;
	uv_timer_start(&t, uv_waiter_cb, 0, 2);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return w.met;
}

static inline void uv_guard_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Runs loop until *count >= want or max_ms pass (a guard timer keeps uv_run from blocking
 * when nothing else is pending); for callbacks that count their calls. */
static inline void run_until_count(uv_loop_t *loop, const int *count, int want, uint64_t max_ms)
{
	uv_timer_t guard;
	int fired = 0;

	uv_timer_init(loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, uv_guard_cb, max_ms, 0);
	while (*count < want && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

#endif
