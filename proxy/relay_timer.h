/* relay_timer.h — the relay's timer arithmetic (proxy/relay.c), pure: loop times (ms) in,
 * deadlines out, no libuv, no I/O, so it is unit-tested (tests/unit/test_relay_timer.c). */
#ifndef MX_RELAY_TIMER_H
#define MX_RELAY_TIMER_H

#include <stdbool.h>
#include <stdint.h>

/* How often the timer looks at a message's write queue while octets wait in it, for
 * backends.data_timeout data_timeout_ms (0: 60 s): 1/8 of it, at least 10 ms. So a backend
 * that stops taking octets is cut off between data_timeout and 9/8 of it after the last
 * octet it took. */
uint64_t relay_timer_tick(uint64_t data_timeout_ms);

/* One look at a message's transfer at loop time now. wq_in: octets ever written to the
 * stream; unacked: those the backend has not taken yet (<= wq_in); *wq_out: taken at the
 * last look, raised to what is taken now; *due: the step's deadline, moved to now +
 * data_timeout when the backend took octets since the last look, never past data_end
 * (0: no deadline). Returns when the timer is to fire next (> now: within a tick while
 * octets are unacknowledged, else at *due), or 0 when the step's time is up (now >= *due). */
uint64_t relay_timer_watch(uint64_t now, uint64_t data_timeout_ms, uint64_t data_end,
    uint64_t wq_in, uint64_t unacked, uint64_t *wq_out, uint64_t *due);

/* Whether a timer running until timer_at (0: not running) must be started again for a
 * step due at due: only when it would fire after it (one that fires earlier starts itself
 * again for the rest). */
static inline bool relay_timer_needs_start(uint64_t timer_at, uint64_t due)
{
	return timer_at == 0 || timer_at > due;
}

#endif
