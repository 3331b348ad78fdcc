/* gcra.h — the generic cell rate algorithm (a token bucket in one timestamp), pure math.
 *
 * A limit of `count` per `period` lets a burst of `count` cells through at once and then one
 * cell every period/count. State is one number, the theoretical arrival time (TAT) in
 * nanoseconds; a key whose TAT is in the past is indistinguishable from a fresh one, so idle
 * keys can be dropped. No clock is read here: callers pass `now`, tests inject it. */
#ifndef MX_GCRA_H
#define MX_GCRA_H

#include <stdbool.h>
#include <stdint.h>

struct gcra_limit {
	uint64_t count;      /* cells per period, >= 1 */
	uint64_t period_ns;  /* >= 1 */
};

struct gcra_result {
	bool allowed;
	uint64_t new_tat;     /* allowed: the TAT to store; denied: the unchanged TAT */
	uint64_t retry_ns;    /* denied: wait this long before the same cost would pass */
	uint64_t remaining;   /* cells of cost 1 still available right after this decision */
};

/* Time that `cost` cells occupy: cost * period / count, rounded down (never more than the
 * period for cost <= count, so a full burst of `count` always fits). */
uint64_t gcra_increment(const struct gcra_limit *l, uint64_t cost);

/* Decides whether `cost` cells may pass at `now` for a key whose stored TAT is `tat` (0 for a
 * new key). A cost above count is clamped to count: such a request passes only when the
 * bucket is full and then empties it. Denied requests consume nothing. Pure; returns 0, or
 * -1 when the limit is invalid (count or period 0). */
int gcra_check(const struct gcra_limit *l, uint64_t tat, uint64_t now, uint64_t cost,
    struct gcra_result *out);

/* Gives back a charge of cost (capped at the limit, as gcra_check caps it) that an admitted
 * cell made: the TAT moves back by its increment, never before now (which would lend a
 * burst). Returns the new TAT; <= now means the key carries nothing any more. */
uint64_t gcra_refund(const struct gcra_limit *l, uint64_t tat, uint64_t now, uint64_t cost);

/* True when a stored TAT carries no information any more at `now` (bucket full again). */
static inline bool gcra_is_idle(uint64_t tat, uint64_t now) { return tat <= now; }

#endif
