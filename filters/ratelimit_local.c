/* ratelimit_local.c — sharded in-process store, see ratelimit_local.h. */
#include "ratelimit_local.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RL_SHARDS 16u
#define RL_SWEEP_NS (5ull * 1000000000ull)   /* sweep a shard for idle keys at most every 5 s */
#define RL_EVICT_SCAN 8u                     /* entries examined to pick an eviction victim */

struct rl_entry {
	struct rl_entry *next;
	uint64_t hash;
	uint64_t tat;        /* GCRA: theoretical arrival time, ns */
	uint64_t conc;       /* concurrency counter; an entry with conc > 0 is never idle */
	uint64_t aux;        /* ratelimit_local_update's payload */
	char key[];
};

struct rl_shard {                  /* one cache line apart: no false sharing between shards */
	_Alignas(64) pthread_mutex_t mu;
	struct rl_entry **buckets;
	size_t nbuckets;     /* power of two */
	size_t n, max;
	size_t cursor;       /* eviction scan position */
	uint64_t next_sweep;
};

struct ratelimit_local {
	struct rl_shard shards[RL_SHARDS];
};

/* FNV-1a 64: keys are short; distribution is good enough and it needs no seed handling. */
static uint64_t rl_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

struct ratelimit_local *ratelimit_local_new(size_t max_keys)
{
	struct ratelimit_local *s;
	size_t per, nb;

	if (max_keys < RL_SHARDS)
		max_keys = RL_SHARDS;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	per = (max_keys + RL_SHARDS - 1) / RL_SHARDS;
	for (nb = 16; nb < per && nb < (1u << 20); nb <<= 1)
		;
	for (size_t i = 0; i < RL_SHARDS; i++) {
		struct rl_shard *sh = &s->shards[i];

		pthread_mutex_init(&sh->mu, NULL);
		sh->max = per;
		sh->nbuckets = nb;
		sh->buckets = calloc(nb, sizeof(*sh->buckets));
		if (sh->buckets == NULL)
			goto fail;
	}
	return s;
fail:
	ratelimit_local_free(s);
	return NULL;
}

void ratelimit_local_free(struct ratelimit_local *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < RL_SHARDS; i++) {
		struct rl_shard *sh = &s->shards[i];

		for (size_t b = 0; sh->buckets && b < sh->nbuckets; b++) {
			struct rl_entry *e = sh->buckets[b], *nx;

			for (; e; e = nx) {
				nx = e->next;
				free(e);
			}
		}
		free(sh->buckets);
		pthread_mutex_destroy(&sh->mu);
	}
	free(s);
}

static pthread_once_t rl_global_once = PTHREAD_ONCE_INIT;
static struct ratelimit_local *rl_global;
static size_t rl_global_max;

/* Creates the process-wide table (pthread_once body). */
static void rl_global_init(void)
{
	rl_global = ratelimit_local_new(rl_global_max);
}

struct ratelimit_local *ratelimit_local_global(size_t max_keys)
{
	/* The first caller's size wins; written before pthread_once publishes it. */
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&mu);
	if (rl_global_max == 0)
		rl_global_max = max_keys ? max_keys : 100000;
	pthread_mutex_unlock(&mu);
	pthread_once(&rl_global_once, rl_global_init);
	return rl_global;
}

/* An entry without a held slot whose bucket is full again carries no state. */
static inline bool rl_entry_is_idle(const struct rl_entry *e, uint64_t now)
{
	return e->conc == 0 && gcra_is_idle(e->tat, now);
}

/* Removes idle entries of one shard (lock held). */
static size_t rl_shard_sweep(struct rl_shard *sh, uint64_t now)
{
	size_t dropped = 0;

	for (size_t b = 0; b < sh->nbuckets; b++) {
		struct rl_entry **pp = &sh->buckets[b];

		while (*pp) {
			struct rl_entry *e = *pp;

			if (rl_entry_is_idle(e, now)) {
				*pp = e->next;
				free(e);
				dropped++;
			} else {
				pp = &e->next;
			}
		}
	}
	sh->n -= dropped;
	sh->next_sweep = now + RL_SWEEP_NS;
	return dropped;
}

/* Evicts the entry with the earliest TAT among the next few entries from the cursor,
 * preferring entries without a concurrency count (lock held, shard full of live keys). */
static void rl_shard_evict(struct rl_shard *sh)
{
	struct rl_entry **victim = NULL, *e;
	size_t seen = 0, steps = 0;

	while (seen < RL_EVICT_SCAN && steps < sh->nbuckets) {
		struct rl_entry **pp = &sh->buckets[sh->cursor];

		for (; *pp && seen < RL_EVICT_SCAN; pp = &(*pp)->next, seen++) {
			e = *pp;
			if (victim == NULL || (e->conc == 0 && (*victim)->conc > 0) ||
			    ((e->conc == 0) == ((*victim)->conc == 0) && e->tat < (*victim)->tat))
				victim = pp;
		}
		sh->cursor = (sh->cursor + 1) & (sh->nbuckets - 1);
		steps++;
	}
	if (victim == NULL)
		return;
	e = *victim;
	*victim = e->next;
	free(e);
	sh->n--;
}

/* Finds key in its shard (lock held); creates it when create is set. NULL when absent (or
 * allocation failed). */
static struct rl_entry *rl_shard_get(struct rl_shard *sh, const char *key, uint64_t h,
    uint64_t now, bool create)
{
	struct rl_entry *e;
	size_t len, b = (size_t)(h >> 8) & (sh->nbuckets - 1);

	for (e = sh->buckets[b]; e; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	if (!create)
		return NULL;
	/* Sweeps are O(shard) so at most one per RL_SWEEP_NS; in between a full shard evicts. */
	if (now >= sh->next_sweep)
		rl_shard_sweep(sh, now);
	while (sh->n >= sh->max)
		rl_shard_evict(sh);
	len = strlen(key);
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return NULL;
	memcpy(e->key, key, len + 1);
	e->hash = h;
	e->tat = 0;
	e->conc = 0;
	e->aux = 0;
	e->next = sh->buckets[b];
	sh->buckets[b] = e;
	sh->n++;
	return e;
}

/* The shard a key hash lives in (low bits; the bucket uses higher ones). */
static inline struct rl_shard *rl_shard_of(struct ratelimit_local *s, uint64_t h)
{
	return &s->shards[h & (RL_SHARDS - 1)];
}

int ratelimit_local_gcra(struct ratelimit_local *s, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns, struct gcra_result *out)
{
	uint64_t h = rl_hash(key);
	struct rl_shard *sh = rl_shard_of(s, h);
	struct rl_entry *e;
	int rc;

	pthread_mutex_lock(&sh->mu);
	e = rl_shard_get(sh, key, h, now_ns, true);
	if (e == NULL) {
		/* Out of memory: decide as for a fresh key rather than failing the client. */
		rc = gcra_check(l, 0, now_ns, cost, out);
	} else {
		rc = gcra_check(l, e->tat, now_ns, cost, out);
		if (rc == 0 && out->allowed)
			e->tat = out->new_tat;
	}
	pthread_mutex_unlock(&sh->mu);
	return rc;
}

int ratelimit_local_acquire(struct ratelimit_local *s, const char *key, uint64_t max,
    uint64_t now_ns)
{
	uint64_t h = rl_hash(key);
	struct rl_shard *sh = rl_shard_of(s, h);
	struct rl_entry *e;
	int rc;

	pthread_mutex_lock(&sh->mu);
	e = rl_shard_get(sh, key, h, now_ns, true);
	if (e == NULL)
		rc = -1;
	else if (e->conc >= max)
		rc = 0;
	else {
		e->conc++;
		rc = 1;
	}
	pthread_mutex_unlock(&sh->mu);
	return rc;
}

void ratelimit_local_release(struct ratelimit_local *s, const char *key)
{
	uint64_t h = rl_hash(key);
	struct rl_shard *sh = rl_shard_of(s, h);
	struct rl_entry *e;

	pthread_mutex_lock(&sh->mu);
	e = rl_shard_get(sh, key, h, 0, false);
	if (e && e->conc > 0)
		e->conc--;
	pthread_mutex_unlock(&sh->mu);
}

uint64_t ratelimit_local_current(struct ratelimit_local *s, const char *key)
{
	uint64_t h = rl_hash(key), v;
	struct rl_shard *sh = rl_shard_of(s, h);
	struct rl_entry *e;

	pthread_mutex_lock(&sh->mu);
	e = rl_shard_get(sh, key, h, 0, false);
	v = e ? e->conc : 0;
	pthread_mutex_unlock(&sh->mu);
	return v;
}

int ratelimit_local_update(struct ratelimit_local *s, const char *key, uint64_t now_ns,
    int (*fn)(bool exists, uint64_t *expiry_ns, uint64_t *aux, void *arg), void *arg)
{
	uint64_t h = rl_hash(key);
	struct rl_shard *sh = rl_shard_of(s, h);
	struct rl_entry *e;
	bool exists;
	int rc;

	pthread_mutex_lock(&sh->mu);
	e = rl_shard_get(sh, key, h, now_ns, false);
	/* An expired entry is as good as absent (it may not have been swept yet). */
	exists = e != NULL && !rl_entry_is_idle(e, now_ns);
	if (e == NULL)
		e = rl_shard_get(sh, key, h, now_ns, true);
	if (e == NULL) {
		pthread_mutex_unlock(&sh->mu);
		return -1;
	}
	if (!exists) {
		e->tat = 0;
		e->aux = 0;
	}
	rc = fn(exists, &e->tat, &e->aux, arg);
	pthread_mutex_unlock(&sh->mu);
	return rc;
}

size_t ratelimit_local_expire(struct ratelimit_local *s, uint64_t now_ns)
{
	size_t n = 0;

	for (size_t i = 0; i < RL_SHARDS; i++) {
		pthread_mutex_lock(&s->shards[i].mu);
		n += rl_shard_sweep(&s->shards[i], now_ns);
		pthread_mutex_unlock(&s->shards[i].mu);
	}
	return n;
}

size_t ratelimit_local_size(struct ratelimit_local *s)
{
	size_t n = 0;

	for (size_t i = 0; i < RL_SHARDS; i++) {
		pthread_mutex_lock(&s->shards[i].mu);
		n += s->shards[i].n;
		pthread_mutex_unlock(&s->shards[i].mu);
	}
	return n;
}
