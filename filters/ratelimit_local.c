/* ratelimit_local.c — GCRA and concurrency in the local table, see ratelimit_local.h. */
#include "ratelimit_local.h"

#include <stddef.h>

struct rl_gcra_arg {
	const struct gcra_limit *l;
	uint64_t cost;
	struct gcra_result *out;
};

/* One GCRA decision on a record (under its shard lock); a denied cell consumes nothing. */
static int rl_gcra_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct rl_gcra_arg *a = arg;
	int rc = gcra_check(a->l, rec->expires_ns, now_ns, a->cost, a->out);

	if (rc == 0 && a->out->allowed)
		rec->expires_ns = a->out->new_tat;
	return rc;
}

static int rl_refund_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct rl_gcra_arg *a = arg;

	if (exists)
		rec->expires_ns = gcra_refund(a->l, rec->expires_ns, now_ns, a->cost);
	return 0;       /* a TAT at or before now leaves the record idle: dropped */
}

void ratelimit_local_refund(struct local_table *t, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns)
{
	struct rl_gcra_arg a = { l, cost, NULL };

	if (l == NULL || l->count == 0 || l->period_ns == 0)
		return;
	local_table_update(t, key, now_ns, false, rl_refund_fn, &a);
}

int ratelimit_local_gcra(struct local_table *t, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns, struct gcra_result *out)
{
	struct rl_gcra_arg a = { l, cost, out };

	if (l == NULL || l->count == 0 || l->period_ns == 0)
		return -1;
	if (local_table_update(t, key, now_ns, true, rl_gcra_fn, &a) == 0)
		return 0;
	/* Out of memory: decide as for a fresh key rather than failing the client. */
	return gcra_check(l, 0, now_ns, cost, out);
}

/* Takes a slot when one is free: 1, or 0 at max. */
static int rl_acquire_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	const uint64_t *max = arg;

	if (rec->pins >= *max)
		return 0;
	rec->pins++;
	return 1;
}

int ratelimit_local_acquire(struct local_table *t, const char *key, uint64_t max,
    uint64_t now_ns)
{
	return local_table_update(t, key, now_ns, true, rl_acquire_fn, &max);
}

/* Gives a slot back. */
static int rl_release_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	if (rec->pins > 0)
		rec->pins--;
	return 0;
}

void ratelimit_local_release(struct local_table *t, const char *key, uint64_t now_ns)
{
	local_table_update(t, key, now_ns, false, rl_release_fn, NULL);
}

/* Reads the slot count. */
static int rl_current_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	*(uint64_t *)arg = rec->pins;
	return 0;
}

uint64_t ratelimit_local_current(struct local_table *t, const char *key, uint64_t now_ns)
{
	uint64_t v = 0;

	local_table_update(t, key, now_ns, false, rl_current_fn, &v);
	return v;
}

struct rl_mark_arg { uint64_t keep_ns, wall_us; };

static int rl_mark_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	const struct rl_mark_arg *a = arg;

	rec->expires_ns = now_ns + a->keep_ns;
	rec->val = a->wall_us;
	return 0;
}

void ratelimit_local_reset_mark(struct local_table *t, const char *mark_key, uint64_t keep_ns,
    uint64_t wall_us, uint64_t now_ns)
{
	struct rl_mark_arg a = { keep_ns, wall_us };

	if (t)
		local_table_update(t, mark_key, now_ns, true, rl_mark_fn, &a);
}

static int rl_mark_read_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	*(uint64_t *)arg = exists ? rec->val : 0;
	return 0;
}

uint64_t ratelimit_local_reset_at(struct local_table *t, const char *mark_key, uint64_t now_ns)
{
	uint64_t v = 0;

	if (t)
		local_table_update(t, mark_key, now_ns, false, rl_mark_read_fn, &v);
	return v;
}
