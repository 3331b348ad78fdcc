/* relay_timer.c — the relay's timer arithmetic; see relay_timer.h. */
#include "relay_timer.h"

/* See relay_timer.h. */
uint64_t relay_timer_tick(uint64_t data_timeout_ms)
{
	uint64_t t = (data_timeout_ms ? data_timeout_ms : 60000) / 8;

	return t > 10 ? t : 10;
}

/* See relay_timer.h. */
uint64_t relay_timer_watch(uint64_t now, uint64_t data_timeout_ms, uint64_t data_end,
    uint64_t wq_in, uint64_t unacked, uint64_t *wq_out, uint64_t *due)
{
	uint64_t t = data_timeout_ms ? data_timeout_ms : 60000, out = wq_in - unacked, next;

	if (out > *wq_out) {
		*wq_out = out;          /* progress since the last look */
		if (*due < now + t)
			*due = now + t;
	}
	if (data_end != 0 && *due > data_end)
		*due = data_end;
	if (now >= *due)
		return 0;
	next = *due;
	if (unacked > 0 && now + relay_timer_tick(data_timeout_ms) < next)
		next = now + relay_timer_tick(data_timeout_ms);
	return next;
}
