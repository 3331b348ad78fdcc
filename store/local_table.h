/* local_table.h — the in-process key table shared by every worker thread: a sharded hash
 * (one mutex per shard), bounded in size, idle records expiring by themselves.
 *
 * A record is three numbers the caller interprets (the rate limiter keeps a GCRA time and a
 * concurrency count in it, greylisting a first-seen time): `expires_ns` says until when the
 * record carries information, `pins` > 0 keeps it alive regardless (a held slot). A record
 * with pins == 0 and expires_ns <= now is idle: it is indistinguishable from an absent one,
 * dropped by sweeps (a shard's when a key is added to it, at most every 5 s; every shard's
 * when a full table would otherwise evict a live record, at most once a second) and first in
 * line when a full table must evict. Times are whatever monotonic clock the caller passes, the same for every key. */
#ifndef MX_LOCAL_TABLE_H
#define MX_LOCAL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct local_table;

struct local_rec {
	uint64_t expires_ns;        /* carries information until then */
	uint64_t pins;              /* > 0: never idle, evicted last */
	uint64_t val;               /* the caller's payload */
};

/* A table holding at most max_keys keys (>= 16) in all, threads adding at the same moment
 * included (see lt_slot_take for the one exception). NULL on allocation failure. */
struct local_table *local_table_new(size_t max_keys);
void local_table_free(struct local_table *t);   /* NULL is a no-op */

/* Names the table for its evictions (call once, before it is shared): each one is counted in
 * mxgate_store_evictions_total{store="local:NAME"} and logged at most once a minute,
 * `event=local_table_full table=NAME max_keys=N evicted=TOTAL` (warning). Unnamed tables
 * only count them (local_table_evicted). */
void local_table_set_name(struct local_table *t, const char *name);
/* Live records evicted to make room since the table was made. */
uint64_t local_table_evicted(struct local_table *t);
/* The keys held, with the slots being filled at this moment: at most max_keys, but for an
 * add that found nothing to evict (lt_slot_take: one over for each such add). A lock-free
 * read (a local_table_fn may call it). */
size_t local_table_count(struct local_table *t);

/* The process-wide table, created on first use with max_keys (later calls ignore the
 * argument; 0 = 100000). Never freed; NULL only when out of memory. Thread-safe. */
struct local_table *local_table_shared(size_t max_keys);

/* Called under the key's shard lock with its record: exists is false for a new or idle
 * record (then *rec is all zero). fn edits *rec; a record it leaves idle is dropped. It must
 * not call into the table. Its return value is passed through. */
typedef int (*local_table_fn)(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg);

/* Runs fn on key's record (any bytes up to NUL) at now_ns. With create, an absent key gets a
 * fresh record (a full table evicts the idlest of a few records first: fail open, never
 * block); without, fn is not called for an absent or idle key. Returns fn's value, or -1
 * when fn was not called (absent without create, or out of memory). Thread-safe. */
int local_table_update(struct local_table *t, const char *key, uint64_t now_ns, bool create,
    local_table_fn fn, void *arg);

/* Calls fn for each live record at now_ns, a shard at a time under its lock (fn must not call
 * into the table), until fn returns false. The key and record are valid during the call. */
typedef bool (*local_table_each_fn)(const char *key, const struct local_rec *rec, void *arg);
void local_table_foreach(struct local_table *t, uint64_t now_ns, local_table_each_fn fn, void *arg);

/* Drops every idle record at now_ns; returns how many were dropped. */
size_t local_table_expire(struct local_table *t, uint64_t now_ns);
/* Number of keys held. */
size_t local_table_size(struct local_table *t);
/* The most keys one bucket holds (tests: the buckets are keyed, proxy/siphash.h). */
size_t local_table_longest_chain(struct local_table *t);
/* The shard (0..15) holding key in this process (tests: to place keys in chosen shards). */
unsigned local_table_shard_of(const char *key);

#endif
