/* store_stats.h — what the stores' write queues lost or hold, per user of a store, for the
 * metrics endpoint: `mxgate_store_writes_dropped_total{store="redis:reputation"}` (writes
 * given up: a full queue, retries exhausted, a shutdown during an outage, an LMDB batch that
 * failed), `mxgate_store_writes_queued{store=...}` (writes waiting for the store now) and
 * `mxgate_store_evictions_total{store=...}` (records a bounded store removed before their
 * time to make room: a full local table, an LMDB map near its size); for Redis stores also
 * `mxgate_store_reads_waited_total{store="redis:greylist"}` (reads that waited for the
 * store's first connect) and `mxgate_store_read_wait_timeouts_total{store=...}` (of those,
 * the ones whose deadline passed while they waited) and
 * `mxgate_store_sentinel_switches_total{store=...}` (failovers a redis-sentinel:// store
 * learned from a sentinel's +switch-master message).
 * The label is "<kind>:<name>" (kind "redis", "lmdb" or "local", name the module). The
 * families are registered with the metrics endpoint when the first slot is made.
 * Thread-safe. */
#ifndef MX_STORE_STATS_H
#define MX_STORE_STATS_H

#include <stdint.h>

struct store_stats;

/* The slot for kind and name (made on first use, kept for the life of the process: every
 * store and every reload of one user shares it). NULL when the table (32 slots) is full:
 * the other functions take NULL and do nothing. */
struct store_stats *store_stats_get(const char *kind, const char *name);
/* n more writes dropped. */
void store_stats_add_dropped(struct store_stats *s, uint64_t n);
/* n more records evicted. */
void store_stats_add_evicted(struct store_stats *s, uint64_t n);
/* n more reads waited for a first connect; n more of them timed out waiting. */
void store_stats_add_reads_waited(struct store_stats *s, uint64_t n);
void store_stats_add_read_wait_timeouts(struct store_stats *s, uint64_t n);
/* n more +switch-master messages for a store's master taken. */
void store_stats_add_sentinel_switches(struct store_stats *s, uint64_t n);
/* The queued gauge moves by delta. */
void store_stats_add_queued(struct store_stats *s, long delta);
/* Totals of one slot (0 for NULL), for tests and log lines. */
uint64_t store_stats_dropped(const struct store_stats *s);
long store_stats_queued(const struct store_stats *s);
uint64_t store_stats_evicted(const struct store_stats *s);
uint64_t store_stats_reads_waited(const struct store_stats *s);
uint64_t store_stats_read_wait_timeouts(const struct store_stats *s);
uint64_t store_stats_sentinel_switches(const struct store_stats *s);

#endif
