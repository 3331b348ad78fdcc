/* local_table.c — the sharded in-process key table, see local_table.h. */
#include "local_table.h"

#include "proxy/siphash.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/log.h"
#include "store_stats.h"

#define LT_SHARDS 16u
#define LT_SWEEP_NS (5ull * 1000000000ull)   /* sweep a shard for idle keys at most every 5 s */
#define LT_EVICT_SCAN 8u                     /* entries examined to pick an eviction victim */
#define LT_LOG_EVERY_NS (60ull * 1000000000ull) /* evictions are logged once a minute */
#define LT_WIDE_SWEEP_NS 1000000000ull       /* before a live record goes: every shard's idle
                                                records, at most once a second a table */
#define LT_EVICT_TRIES 64u                   /* a full table's add tries this many evictions
                                                (no yield: its shard's lock is held, on a
                                                worker's loop) before going over by one */

struct lt_entry {
	struct lt_entry *next;
	uint64_t hash;
	struct local_rec rec;
	char key[];
};

struct lt_shard {                  /* one cache line apart: no false sharing between shards */
	_Alignas(64) pthread_mutex_t mu;
	struct lt_entry **buckets;
	size_t nbuckets;     /* power of two */
	size_t n;
	size_t npinned;      /* of n, records with pins > 0 */
	size_t cursor;       /* eviction scan position */
	uint64_t next_sweep;
	atomic_ullong min_exp; /* no unpinned record here expires before this (a lower bound,
	                        * exact after a sweep; UINT64_MAX: none): read without the lock */
};

struct local_table {
	struct lt_shard shards[LT_SHARDS];
	size_t max_keys;
	atomic_size_t count;           /* keys in all shards: the bound is on the whole table */
	atomic_size_t pinned;          /* of count, records with pins > 0 */
	atomic_ullong next_wide_sweep; /* the caller's clock: lt_sweep_wide's rate limit */
	char name[32];                 /* for the log line; "" = evictions are not logged */
	struct store_stats *stats;     /* mxgate_store_evictions_total{store="local:NAME"} */
	atomic_ullong evicted;
	atomic_ullong last_log_ns;     /* CLOCK_MONOTONIC */
};

struct local_table *local_table_new(size_t max_keys)
{
	struct local_table *t;
	size_t per, nb;

	if (max_keys < LT_SHARDS)
		max_keys = LT_SHARDS;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->max_keys = max_keys;
	atomic_init(&t->count, 0);
	atomic_init(&t->pinned, 0);
	atomic_init(&t->next_wide_sweep, 0);
	per = (max_keys + LT_SHARDS - 1) / LT_SHARDS;
	for (nb = 16; nb < per && nb < (1u << 20); nb <<= 1)
		;
	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *sh = &t->shards[i];

		pthread_mutex_init(&sh->mu, NULL);
		atomic_init(&sh->min_exp, UINT64_MAX);
		sh->nbuckets = nb;
		sh->buckets = calloc(nb, sizeof(*sh->buckets));
		if (sh->buckets == NULL)
			goto fail;
	}
	return t;
fail:
	local_table_free(t);
	return NULL;
}

void local_table_free(struct local_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *sh = &t->shards[i];

		for (size_t b = 0; sh->buckets && b < sh->nbuckets; b++) {
			struct lt_entry *e = sh->buckets[b], *nx;

			for (; e; e = nx) {
				nx = e->next;
				free(e);
			}
		}
		free(sh->buckets);
		pthread_mutex_destroy(&sh->mu);
	}
	free(t);
}

static pthread_once_t lt_shared_once = PTHREAD_ONCE_INIT;
static struct local_table *lt_shared;
static size_t lt_shared_max;

/* Creates the process-wide table (pthread_once body). */
static void lt_shared_init(void)
{
	lt_shared = local_table_new(lt_shared_max);
}

struct local_table *local_table_shared(size_t max_keys)
{
	/* The first caller's size wins; written before pthread_once publishes it. */
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&mu);
	if (lt_shared_max == 0)
		lt_shared_max = max_keys ? max_keys : 100000;
	pthread_mutex_unlock(&mu);
	pthread_once(&lt_shared_once, lt_shared_init);
	return lt_shared;
}

size_t local_table_count(struct local_table *t)
{
	return atomic_load(&t->count);
}

/* A record without pins whose expiry passed carries no state. */
static inline bool lt_rec_is_idle(const struct local_rec *r, uint64_t now)
{
	return r->pins == 0 && r->expires_ns <= now;
}

/* Removes idle entries of one shard (lock held). */
static size_t lt_shard_sweep(struct local_table *t, struct lt_shard *sh, uint64_t now)
{
	size_t dropped = 0;
	uint64_t min_exp = UINT64_MAX;

	for (size_t b = 0; b < sh->nbuckets; b++) {
		struct lt_entry **pp = &sh->buckets[b];

		while (*pp) {
			struct lt_entry *e = *pp;

			if (lt_rec_is_idle(&e->rec, now)) {
				*pp = e->next;
				free(e);
				dropped++;
			} else {
				if (e->rec.pins == 0 && e->rec.expires_ns < min_exp)
					min_exp = e->rec.expires_ns;
				pp = &e->next;
			}
		}
	}
	atomic_store(&sh->min_exp, min_exp);
	sh->n -= dropped;
	atomic_fetch_sub(&t->count, dropped);
	sh->next_sweep = now + LT_SWEEP_NS;
	return dropped;
}

void local_table_set_name(struct local_table *t, const char *name)
{
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "");
	t->stats = name ? store_stats_get("local", name) : NULL;
}

uint64_t local_table_evicted(struct local_table *t)
{
	return atomic_load(&t->evicted);
}

/* The local_table_full line an eviction made due, written by local_table_update once it
 * holds no shard lock (lt_log_due_write): the thread's own, as the update is. */
static _Thread_local struct { struct local_table *t; unsigned long long total; } lt_log_due;

static void lt_log_due_write(void)
{
	struct local_table *t = lt_log_due.t;

	if (t == NULL)
		return;
	lt_log_due.t = NULL;
	log_event(LOG_LVL_WARNING, NULL, "event=local_table_full table=%s max_keys=%zu evicted=%llu "
	    "reason=\"evicting the records closest to expiring\"", t->name, t->max_keys,
	    lt_log_due.total);
}

/* Counts one eviction; a named table logs them at most once a minute: the line is made due
 * here (shard locks are held, two of them when the record is another shard's) and written
 * after they are released. */
static void lt_note_evict(struct local_table *t)
{
	uint64_t total = atomic_fetch_add(&t->evicted, 1) + 1, now;
	unsigned long long last;
	struct timespec ts;

	store_stats_add_evicted(t->stats, 1);
	if (t->name[0] == '\0')
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	last = atomic_load(&t->last_log_ns);
	if (last != 0 && now - last < LT_LOG_EVERY_NS)
		return;
	if (!atomic_compare_exchange_strong(&t->last_log_ns, &last, now))
		return;
	lt_log_due.t = t;
	lt_log_due.total = total;
}

/* The link to the entry sh would give up (lock held): the earliest expiry among the next
 * LT_EVICT_SCAN entries from the cursor, an unpinned record before any pinned one; while the
 * shard holds an unpinned record the scan goes on until it meets one (pinned records are held
 * slots, as many as the connections holding them). NULL when the shard is empty, or holds
 * only pinned records and pinned is false. */
static struct lt_entry **lt_shard_victim(struct lt_shard *sh, bool pinned)
{
	struct lt_entry **victim = NULL;
	bool unpinned_here = sh->n > sh->npinned;
	size_t seen = 0;

	if (!unpinned_here && (!pinned || sh->n == 0))
		return NULL;
	for (size_t steps = 0; steps < sh->nbuckets; steps++) {
		if (seen >= LT_EVICT_SCAN && victim != NULL &&
		    ((*victim)->rec.pins == 0 || !unpinned_here))
			break;
		for (struct lt_entry **pp = &sh->buckets[sh->cursor]; *pp; pp = &(*pp)->next, seen++) {
			const struct local_rec *r = &(*pp)->rec;

			if (victim == NULL || (r->pins == 0 && (*victim)->rec.pins > 0) ||
			    ((r->pins == 0) == ((*victim)->rec.pins == 0) &&
			    r->expires_ns < (*victim)->rec.expires_ns))
				victim = pp;
		}
		sh->cursor = (sh->cursor + 1) & (sh->nbuckets - 1);
	}
	return victim;
}

/* Drops *pp from sh to make room (lock held); a live record is counted as evicted. */
static void lt_shard_drop(struct local_table *t, struct lt_shard *sh, struct lt_entry **pp,
    uint64_t now)
{
	struct lt_entry *e = *pp;
	bool live = !lt_rec_is_idle(&e->rec, now);

	if (e->rec.pins > 0) {
		sh->npinned--;
		atomic_fetch_sub(&t->pinned, 1);
	}
	*pp = e->next;
	free(e);
	sh->n--;
	atomic_fetch_sub(&t->count, 1);
	if (live)
		lt_note_evict(t);
}

/* Before a live record goes: drops the idle records of sh (lock held) and of every other
 * shard whose lock is free at once, visiting only shards whose earliest unpinned expiry
 * (min_exp) has passed, at most once per LT_WIDE_SWEEP_NS for the table (one caller claims
 * it), and after a pass that dropped nothing not again for LT_SWEEP_NS (min_exp is a lower
 * bound: a record evicted or renewed leaves it early until the shard's next sweep). A shard
 * sweeps itself only when a key is added to it, at most every 5 s: without this a full table
 * gave up a waiting greylist triplet while other shards held records long expired; with every
 * shard swept each second a flood of live records paid O(max_keys) a second for sweeps that
 * found nothing (0.4 s of each second at 4 M keys: the review's finding). Returns how many
 * were dropped. */
static size_t lt_sweep_wide(struct local_table *t, struct lt_shard *sh, uint64_t now)
{
	unsigned long long due = atomic_load(&t->next_wide_sweep);
	size_t n = 0;

	if (now < due || !atomic_compare_exchange_strong(&t->next_wide_sweep, &due,
	    now + LT_WIDE_SWEEP_NS))
		return 0;
	if (atomic_load(&sh->min_exp) <= now)
		n = lt_shard_sweep(t, sh, now);
	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *o = &t->shards[i];

		if (o == sh || atomic_load(&o->min_exp) > now || pthread_mutex_trylock(&o->mu) != 0)
			continue;
		n += lt_shard_sweep(t, o, now);
		pthread_mutex_unlock(&o->mu);
	}
	if (n == 0)
		atomic_store(&t->next_wide_sweep, now + LT_SWEEP_NS);
	return n;
}

/* Evicts a record of the first other shard whose lock is free at once (trylock: shard locks
 * are never waited for in pairs) that has one to give (pinned: pinned ones too). */
static bool lt_evict_elsewhere(struct local_table *t, struct lt_shard *sh, uint64_t now,
    bool pinned)
{
	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *o = &t->shards[i];
		struct lt_entry **v;

		if (o == sh || pthread_mutex_trylock(&o->mu) != 0)
			continue;
		v = lt_shard_victim(o, pinned);
		if (v != NULL)
			lt_shard_drop(t, o, v, now);
		pthread_mutex_unlock(&o->mu);
		if (v != NULL)
			return true;
	}
	return false;
}

/* Makes room for one key in a full table (sh's lock held), in this order: an idle record sh's
 * scan meets; every shard's idle records (lt_sweep_wide, rate limited); the idlest unpinned
 * record of sh, else of another shard; a pinned record only when no unpinned one is left in
 * the table. The bound is the whole table's, not a shard's: with 16 shards of max_keys/16 a
 * small table evicted long before it was full (64 keys: 4 a shard, so about 20 keys already
 * put 5 in some shard). False when nothing could be evicted at the moment: the unpinned
 * records left are in shards busy at the moment, or the slots are being filled by other adds
 * (lt_slot_take tries again). */
static bool lt_evict_one(struct local_table *t, struct lt_shard *sh, uint64_t now)
{
	struct lt_entry **v = lt_shard_victim(sh, false);

	if (v != NULL && lt_rec_is_idle(&(*v)->rec, now)) {
		lt_shard_drop(t, sh, v, now);
		return true;
	}
	if (lt_sweep_wide(t, sh, now) > 0) {
		if (atomic_load(&t->count) < t->max_keys)
			return true;
		v = lt_shard_victim(sh, false);        /* the sweep may have freed *v */
	}
	if (v != NULL) {
		lt_shard_drop(t, sh, v, now);
		return true;
	}
	if (lt_evict_elsewhere(t, sh, now, false))
		return true;
	if (atomic_load(&t->pinned) < atomic_load(&t->count))
		return false;
	v = lt_shard_victim(sh, true);
	if (v != NULL) {
		lt_shard_drop(t, sh, v, now);
		return true;
	}
	return lt_evict_elsewhere(t, sh, now, true);
}

/* Takes one slot of the table's bound for a key about to be added to sh (its lock held): the
 * count goes up only from below max_keys (compare-and-swap), a full table evicting first, so
 * adds at the same moment never pass the bound. On the code before each add checked the count
 * and added to it later: 4 threads adding to a table of 64 held 65-78 keys. When nothing can
 * be evicted (the records left are in shards busy at the moment, or slots other adds are
 * filling) it tries again at once, LT_EVICT_TRIES times; then it goes over by one rather
 * than wait under its shard's lock (a review measured 1,000 yields there at 2.5 s on a busy
 * CPU): the count may pass max_keys by at most the adds in that state at once, and the next
 * full add evicts it back. The caller gives the slot back (lt_slot_give) when its add fails. */
static void lt_slot_take(struct local_table *t, struct lt_shard *sh, uint64_t now)
{
	size_t n = atomic_load(&t->count);
	unsigned tries = 0;

	for (;;) {
		if (n < t->max_keys) {
			if (atomic_compare_exchange_weak(&t->count, &n, n + 1))
				return;
			continue;               /* n is the count the exchange met */
		}
		if (!lt_evict_one(t, sh, now)) {
			if (++tries >= LT_EVICT_TRIES) {
				atomic_fetch_add(&t->count, 1);
				return;
			}
		}
		n = atomic_load(&t->count);
	}
}

static void lt_slot_give(struct local_table *t)
{
	atomic_fetch_sub(&t->count, 1);
}

/* The link pointing at key's entry in its bucket (lock held): *result is NULL when absent. */
static struct lt_entry **lt_shard_find(struct lt_shard *sh, const char *key, uint64_t h)
{
	struct lt_entry **pp = &sh->buckets[(size_t)(h >> 8) & (sh->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

/* Adds a zeroed entry for key (lock held); NULL when out of memory. */
static struct lt_entry *lt_shard_add(struct local_table *t, struct lt_shard *sh,
    const char *key, uint64_t h, uint64_t now)
{
	struct lt_entry *e;
	size_t len, b = (size_t)(h >> 8) & (sh->nbuckets - 1);

	/* Sweeps are O(shard) so at most one per LT_SWEEP_NS; in between a full table evicts. */
	if (now >= sh->next_sweep)
		lt_shard_sweep(t, sh, now);
	lt_slot_take(t, sh, now);
	len = strlen(key);
	e = calloc(1, sizeof(*e) + len + 1);
	if (e == NULL) {
		lt_slot_give(t);
		return NULL;
	}
	memcpy(e->key, key, len + 1);
	e->hash = h;
	e->next = sh->buckets[b];
	sh->buckets[b] = e;
	sh->n++;                 /* t->count: counted by lt_slot_take */
	return e;
}

int local_table_update(struct local_table *t, const char *key, uint64_t now_ns, bool create,
    local_table_fn fn, void *arg)
{
	/* keyed (siphash.h): a client chooses the keys (its address, sender, recipient) */
	uint64_t h = siphash_str(key);
	struct lt_shard *sh = &t->shards[h & (LT_SHARDS - 1)];   /* the bucket uses higher bits;
	                                                          * local_table_shard_of too */
	struct lt_entry **pp, *e;
	bool exists, was_pinned;
	int rc;

	pthread_mutex_lock(&sh->mu);
	pp = lt_shard_find(sh, key, h);
	e = *pp;
	/* An idle record is as good as absent (it may not have been swept yet). */
	exists = e != NULL && !lt_rec_is_idle(&e->rec, now_ns);
	if (!exists && !create) {
		pthread_mutex_unlock(&sh->mu);
		return -1;
	}
	if (e == NULL) {
		e = lt_shard_add(t, sh, key, h, now_ns);
		if (e == NULL) {
			pthread_mutex_unlock(&sh->mu);
			lt_log_due_write();
			return -1;
		}
		pp = NULL;          /* the add may have swept: find the link again if needed */
	} else if (!exists) {
		memset(&e->rec, 0, sizeof(e->rec));
	}
	was_pinned = e->rec.pins > 0;
	rc = fn(&e->rec, exists, now_ns, arg);
	if (was_pinned != (e->rec.pins > 0)) {
		if (was_pinned) {
			sh->npinned--;
			atomic_fetch_sub(&t->pinned, 1);
		} else {
			sh->npinned++;
			atomic_fetch_add(&t->pinned, 1);
		}
	}
	if (lt_rec_is_idle(&e->rec, now_ns)) {
		if (pp == NULL)
			pp = lt_shard_find(sh, key, h);
		if (*pp == e) {
			*pp = e->next;
			free(e);
			sh->n--;
			atomic_fetch_sub(&t->count, 1);
		}
	} else if (e->rec.pins == 0 && e->rec.expires_ns < atomic_load(&sh->min_exp)) {
		atomic_store(&sh->min_exp, e->rec.expires_ns);   /* only this shard's lock writes it */
	}
	pthread_mutex_unlock(&sh->mu);
	lt_log_due_write();                 /* an eviction's local_table_full, no lock held */
	return rc;
}

void local_table_foreach(struct local_table *t, uint64_t now_ns, local_table_each_fn fn, void *arg)
{
	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *sh = &t->shards[i];
		bool go = true;

		pthread_mutex_lock(&sh->mu);
		for (size_t b = 0; go && b < sh->nbuckets; b++)
			for (struct lt_entry *e = sh->buckets[b]; go && e; e = e->next)
				if (!lt_rec_is_idle(&e->rec, now_ns))
					go = fn(e->key, &e->rec, arg);
		pthread_mutex_unlock(&sh->mu);
		if (!go)
			return;
	}
}

size_t local_table_expire(struct local_table *t, uint64_t now_ns)
{
	size_t n = 0;

	for (size_t i = 0; i < LT_SHARDS; i++) {
		pthread_mutex_lock(&t->shards[i].mu);
		n += lt_shard_sweep(t, &t->shards[i], now_ns);
		pthread_mutex_unlock(&t->shards[i].mu);
	}
	return n;
}

size_t local_table_size(struct local_table *t)
{
	size_t n = 0;

	for (size_t i = 0; i < LT_SHARDS; i++) {
		pthread_mutex_lock(&t->shards[i].mu);
		n += t->shards[i].n;
		pthread_mutex_unlock(&t->shards[i].mu);
	}
	return n;
}

size_t local_table_longest_chain(struct local_table *t)
{
	size_t most = 0;

	for (size_t i = 0; i < LT_SHARDS; i++) {
		struct lt_shard *sh = &t->shards[i];

		pthread_mutex_lock(&sh->mu);
		for (size_t b = 0; b < sh->nbuckets; b++) {
			size_t n = 0;

			for (const struct lt_entry *e = sh->buckets[b]; e != NULL; e = e->next)
				n++;
			if (n > most)
				most = n;
		}
		pthread_mutex_unlock(&sh->mu);
	}
	return most;
}

unsigned local_table_shard_of(const char *key)
{
	return (unsigned)(siphash_str(key) & (LT_SHARDS - 1));
}
