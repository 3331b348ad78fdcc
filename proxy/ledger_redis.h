/* ledger_redis.h — the delivery ledger (ledger.h) kept in Redis
 * (backends.retry_ledger.store: redis://host:port/db): shared by every mxgate node that names
 * the server, so a client's retry that a load balancer sends to another node still finds the
 * recipients a backend took on the first. The memory ledger stays in front of it (the same
 * process's retry, max_entries, event=ledger_evict); each key added there is also written
 * here, and a key the memory ledger lacks is looked up here.
 *
 * A record: key "mxledger:" and the 64 hex digits of the ledger key (ledger_pair_key's marks
 * too); value the LMDB store's record (ledger_store.h: a version octet and the expiry, wall
 * ms). Redis's own expiry (PX: the ledger's ttl) removes it; SET NX: a live record keeps its
 * first expiry, as in memory. A write waits in the store's queue through an outage and is
 * sent when Redis is back (store/redis.h: redis_store_write), so a resent record may live up
 * to that outage longer than its ttl.
 *
 * Reads are asynchronous on the worker's loop (store/redis.h: one connection per worker,
 * every request bounded by backends.retry_ledger.timeout, a store that is down fails at
 * once): one MGET for the pair marks of a message's recipients, a second for the digest
 * keys only where a mark is held. One Redis server (not Redis Cluster: MGET names keys of
 * any slot). Not thread-safe: one per loop. */
#ifndef MX_LEDGER_REDIS_H
#define MX_LEDGER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ledger.h"

struct mx_config;
struct ledger_redis;

#define LEDGER_REDIS_PREFIX "mxledger:"
#define LEDGER_REDIS_KEY_LEN (sizeof(LEDGER_REDIS_PREFIX) - 1 + 2 * LEDGER_KEY_LEN)

/* The Redis key of a ledger key: "mxledger:" and its 64 lowercase hex digits, NUL-terminated;
 * returns its length (LEDGER_REDIS_KEY_LEN). */
size_t ledger_redis_key(char out[LEDGER_REDIS_KEY_LEN + 1], const uint8_t key[LEDGER_KEY_LEN]);

/* The Redis URL of cfg's ledger (borrowed from cfg), or NULL (memory, LMDB, or the ledger
 * off). */
const char *ledger_redis_url(const struct mx_config *cfg);
/* A store on loop for cfg's ledger, connecting at once, or NULL when the ledger is not in
 * Redis (or out of memory: event=ledger_store_error logged). worker is for log lines. Free
 * with ledger_redis_free (the loop must run on: store/redis.h). */
struct ledger_redis *ledger_redis_new(const struct mx_config *cfg, uv_loop_t *loop, int worker);
/* NULL is a no-op. Lookups outstanding get their callback with status -1 and reason
 * "retired" first (the store went, Redis did not fail: ledger_store_note it not). */
void ledger_redis_free(struct ledger_redis *lr);
/* The server as logged ("redis://host:port/db": no password). */
const char *ledger_redis_name(const struct ledger_redis *lr);

/* The answer of a lookup: status 0 with held[i] for keys[i] (a record is there), or -1 with
 * reason ("timeout": no reply in time or the connection broke; "error_reply", "reply": a
 * reply not of this form; "retired": ledger_redis_free came first, no fault of Redis's) and
 * held NULL. Borrowed: valid during the call. Called on the loop
 * thread, once, never from inside ledger_redis_lookup. */
typedef void (*ledger_redis_cb)(void *arg, int status, const char *reason, const bool *held);

/* Looks the n keys (1..LEDGER_REDIS_LOOKUP_MAX) up in one round trip (MGET). 0: cb will be
 * called; -1: the store is down or the send failed (*reason says which: "store_down",
 * "out_of_memory", "too_many_keys"): cb will not be called (deliver as without a ledger).
 * Before the store's very first connection is up (a start, a reload's new generation) the
 * lookup waits behind it, bounded by the timeout, as greylisting's requests do: refusing
 * then sent a retry's recipients a second copy with a false store_down.
 * The bound is store/redis.c's largest reply array (RS_REPLY_MAX_ELEMENTS): a larger MGET's
 * reply would be refused and the connection dropped for every request on it. */
#define LEDGER_REDIS_LOOKUP_MAX 65536
int ledger_redis_lookup(struct ledger_redis *lr, const uint8_t (*keys)[LEDGER_KEY_LEN], size_t n,
    ledger_redis_cb cb, void *arg, const char **reason);

/* Writes the n keys with the expiry now_ms + ttl (wall ms; PX ttl, NX: a live record keeps
 * its own) as one write that survives an outage in the store's queue; event=ledger_stored
 * store=URL queue_id=ID keys=rcpts once Redis applied it, a failure noted as
 * ledger_store_note's. 0, or -1 (the queue full, out of memory: noted, the keys dropped). */
int ledger_redis_add(struct ledger_redis *lr, const uint8_t (*keys)[LEDGER_KEY_LEN], size_t n,
    uint64_t now_ms, uint64_t ttl, const char *queue_id, size_t rcpts);

#endif
