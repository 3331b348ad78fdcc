/* gcra.c — generic cell rate algorithm, see gcra.h. */
#include "gcra.h"

#include <stddef.h>

uint64_t gcra_increment(const struct gcra_limit *l, uint64_t cost)
{
	unsigned __int128 x;

	if (l->count == 0)
		return l->period_ns;
	/* 128-bit product: cost * period can exceed 2^64 for byte counts over long periods. */
	x = (unsigned __int128)cost * l->period_ns / l->count;
	return x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
}

uint64_t gcra_refund(const struct gcra_limit *l, uint64_t tat, uint64_t now, uint64_t cost)
{
	uint64_t inc;

	if (l == NULL || l->count == 0 || l->period_ns == 0 || tat <= now)
		return tat;
	if (cost > l->count)
		cost = l->count;
	inc = gcra_increment(l, cost);
	return tat - now > inc ? tat - inc : now;
}

int gcra_check(const struct gcra_limit *l, uint64_t tat, uint64_t now, uint64_t cost,
    struct gcra_result *out)
{
	uint64_t base, inc, new_tat, unit;

	if (l == NULL || out == NULL || l->count == 0 || l->period_ns == 0)
		return -1;
	if (cost > l->count)
		cost = l->count;
	base = tat > now ? tat : now;
	inc = gcra_increment(l, cost);
	new_tat = base + inc < base ? UINT64_MAX : base + inc;
	unit = gcra_increment(l, 1);
	/* Allowed while the new TAT stays within one period of now: that is a burst of exactly
	 * `count` cells from an idle key. */
	if (new_tat - now > l->period_ns) {
		out->allowed = false;
		out->new_tat = tat;
		out->retry_ns = new_tat - now - l->period_ns;
		out->remaining = 0;
		return 0;
	}
	out->allowed = true;
	out->new_tat = new_tat;
	out->retry_ns = 0;
	out->remaining = unit ? (l->period_ns - (new_tat - now)) / unit : 0;
	if (out->remaining > l->count)
		out->remaining = l->count;
	return 0;
}
