/* ratelimit_local.h — the in-process rate-limit store: a sharded hash table of GCRA
 * timestamps and concurrency counters, shared by all worker threads (one mutex per shard),
 * bounded in size, idle keys expiring by themselves.
 *
 * Used directly for `ratelimit.store: local` and as the fallback while Redis is down. */
#ifndef MX_RATELIMIT_LOCAL_H
#define MX_RATELIMIT_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gcra.h"

struct ratelimit_local;

/* A table holding at most max_keys keys (>= 16). NULL on allocation failure. */
struct ratelimit_local *ratelimit_local_new(size_t max_keys);
void ratelimit_local_free(struct ratelimit_local *s);   /* NULL is a no-op */

/* The process-wide table, created on first use with max_keys (later calls ignore the
 * argument). Never freed; NULL only when out of memory. Thread-safe. */
struct ratelimit_local *ratelimit_local_global(size_t max_keys);

/* GCRA check-and-update of `key` (any bytes up to NUL) at now_ns. Returns 0 with *out
 * filled, or -1 (invalid limit). Thread-safe. When the table is full the idlest key is
 * evicted (a key that is not idle may lose its state: fail open, never block). */
int ratelimit_local_gcra(struct ratelimit_local *s, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns, struct gcra_result *out);

/* Concurrency: increments key's counter when below max and returns 1; returns 0 (nothing
 * changed) when the counter is already at max; -1 on allocation failure. */
int ratelimit_local_acquire(struct ratelimit_local *s, const char *key, uint64_t max,
    uint64_t now_ns);
/* Decrements key's counter (dropping the key at 0); no-op for an unknown key. */
void ratelimit_local_release(struct ratelimit_local *s, const char *key);
/* Current concurrency counter of key (0 when unknown). */
uint64_t ratelimit_local_current(struct ratelimit_local *s, const char *key);

/* Generic slot for other filters (greylist): under the shard lock calls
 * fn(exists, &expiry_ns, &aux, arg); a key whose expiry_ns is <= now is idle and may be
 * dropped. fn's return value is returned; when fn leaves expiry_ns 0 the key is removed.
 * Returns -1 (fn not called) when out of memory. */
int ratelimit_local_update(struct ratelimit_local *s, const char *key, uint64_t now_ns,
    int (*fn)(bool exists, uint64_t *expiry_ns, uint64_t *aux, void *arg), void *arg);

/* Drops every idle key at now_ns; returns how many were dropped. */
size_t ratelimit_local_expire(struct ratelimit_local *s, uint64_t now_ns);
/* Number of keys held. */
size_t ratelimit_local_size(struct ratelimit_local *s);

#endif
