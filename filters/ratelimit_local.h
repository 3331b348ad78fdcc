/* ratelimit_local.h — rate-limit checks in the in-process table (store/local_table.h): GCRA
 * timestamps and concurrency counters, shared by all worker threads. Used directly for
 * `ratelimit.store: local` and as the fallback while Redis is down.
 *
 * A key's record: expires_ns = the GCRA theoretical arrival time (the bucket is full again
 * then, so the key is idle), pins = concurrency slots held. */
#ifndef MX_RATELIMIT_LOCAL_H
#define MX_RATELIMIT_LOCAL_H

#include <stdint.h>

#include "gcra.h"
#include "store/local_table.h"

/* GCRA check-and-update of `key` at now_ns. Returns 0 with *out filled, or -1 (invalid
 * limit). Out of memory decides as for a fresh key (fail open). Thread-safe. */
int ratelimit_local_gcra(struct local_table *t, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns, struct gcra_result *out);

/* Gives back a charge of cost that ratelimit_local_gcra admitted for key (gcra_refund): the
 * command it was for was refused after all. No-op for an unknown or idle key. */
void ratelimit_local_refund(struct local_table *t, const char *key, const struct gcra_limit *l,
    uint64_t cost, uint64_t now_ns);

/* A reset of a bucket by the control verb, kept in the same table under mark_key (the
 * RATELIMIT_RESET_PREFIX form of its key) for keep_ns: wall_us, the wall-clock time of the
 * reset. ratelimit_local_reset_at reads it back (0: no reset kept). A refund of a charge
 * made at or before it is dropped: the reset emptied that charge with the bucket. */
void ratelimit_local_reset_mark(struct local_table *t, const char *mark_key, uint64_t keep_ns,
    uint64_t wall_us, uint64_t now_ns);
uint64_t ratelimit_local_reset_at(struct local_table *t, const char *mark_key, uint64_t now_ns);

/* Concurrency: increments key's counter when below max and returns 1; returns 0 (nothing
 * changed) when the counter is already at max; -1 on allocation failure. */
int ratelimit_local_acquire(struct local_table *t, const char *key, uint64_t max,
    uint64_t now_ns);
/* Decrements key's counter; no-op for an unknown key or one at 0. */
void ratelimit_local_release(struct local_table *t, const char *key, uint64_t now_ns);
/* Current concurrency counter of key (0 when unknown). */
uint64_t ratelimit_local_current(struct local_table *t, const char *key, uint64_t now_ns);

#endif
