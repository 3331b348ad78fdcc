/* passcache.h — "this client passed, do not test it again" kept in a shared store: the
 * pregreet test's and the DNS lists' pass caches with `pass_store: lmdb:/dir` (this host,
 * survives a restart) or `redis://...` (every node), as Postfix's postscreen_cache_map.
 *
 * Each module keeps its process-wide in-memory cache (store `local`, the default) and, with
 * a store, consults it after that cache misses and writes every pass to both. A record is
 * the pass's payload (the DNS lists that hit) under the module's key prefix, kept as long as
 * the pass's TTL: Redis `SET key "NOTED_MS:PAYLOAD" PX ttl`; LMDB a record of its expiry and
 * noted time (wall clock ms) and the payload, swept once an hour.
 *
 * A lookup is bounded: LMDB reads inline from the map (lmdb_store_get: a new reader slot waits
 * at most LMDB_RTX_WAIT_MS), Redis with `pass_store_timeout`. Any failure — the store down,
 * a timeout, an error reply, a record that does not parse — is "not known": the test runs
 * again, never a pass by error; it is counted and logged at most once a minute per module,
 * `event=passcache_error module=NAME store=SPEC reason=WHY errors=N`.
 *
 * `flush passcache` forgets every pass noted before it (passcache_flush_all): the process's
 * own flush time, and a marker record `PREFIX#flushed` in each store (Redis: written by the
 * control verb at once, seen by every node; LMDB: written by the control verb too, through
 * the directory's writer thread, before it answers — passcache_flush_lmdb_start — and again
 * by each worker's writer at its next lookup). A record noted before the newest of them is
 * not known.
 *
 * Per worker and config generation (one loop, one thread): not thread-safe but for
 * passcache_flush_all. */
#ifndef MX_FILTERS_PASSCACHE_H
#define MX_FILTERS_PASSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PASSCACHE_VALUE_MAX 512      /* the largest payload */

/* The Redis and LMDB key prefixes; the key is prefix + the module's own key (the client). */
#define PASSCACHE_REDIS_PREFIX "mxgate:pass:"
#define PASSCACHE_LMDB_PREFIX "pass:"

struct passcache;
struct passcache_req;

/* True when spec is a form pass_store takes: "local", "lmdb:/dir" or a redis:// URL. */
bool passcache_spec_ok(const char *spec);
/* True when spec names a store beside this process's memory (lmdb or redis). */
bool passcache_spec_shared(const char *spec);

/* A store for module name ("pregreet" or "dnsbl": the key prefix's second part) on loop, or
 * NULL for "local" (nothing to do) and on failure (logged, event=module_error): the module
 * then keeps its in-memory cache only. timeout_ms bounds each Redis request. */
struct passcache *passcache_new(const char *spec, const char *name, uint64_t timeout_ms,
    uv_loop_t *loop, int worker);
/* Writes what is queued (LMDB) and drops the connection (Redis); outstanding lookups must be
 * cancelled first. NULL is a no-op. */
void passcache_free(struct passcache *pc);

/* True when passcache_lookup answers inline (LMDB): a caller may decide before anything else
 * happens. */
bool passcache_answers_inline(const struct passcache *pc);

/* The answer: known true with the payload (val, vlen: borrowed, valid during the call) and
 * the ms the pass has left; false when not known or on any failure (already counted and
 * logged). */
typedef void (*passcache_cb)(void *arg, bool known, const char *val, size_t vlen, uint64_t left_ms);

/* Looks key up. LMDB answers inline: cb is called before the return. Redis: cb is called
 * later on the loop, at most once, unless the request is cancelled (*reqp is then the
 * handle, valid until cb runs or passcache_cancel). Returns 0 when cb was or will be called,
 * -1 when not (store down, out of memory: counted, logged; the caller goes on "not known"). */
int passcache_lookup(struct passcache *pc, const char *key, passcache_cb cb, void *arg,
    struct passcache_req **reqp);
/* The caller loses interest: cb will not be called. NULL is a no-op. */
void passcache_cancel(struct passcache_req *req);

/* Notes a pass: key with payload val (vlen <= PASSCACHE_VALUE_MAX, may be 0) for ttl_ms
 * (>= 1000). Fire and forget: a write that fails is counted and logged, the pass is then
 * only remembered by the module's in-memory cache. */
void passcache_note(struct passcache *pc, const char *key, const void *val, size_t vlen,
    uint64_t ttl_ms);

/* `flush passcache`: every pass noted before now (wall clock) is forgotten by this process
 * at once; for each spec of specs[0..n) that is a Redis URL, the markers of both modules
 * are written with a connection of its own bounded by timeout_ms (the main loop's control
 * verb); an LMDB store gets its markers from its workers. Returns how many Redis stores
 * could not be marked (their names in err). */
int passcache_flush_all(const char *const *specs, size_t n, uint64_t timeout_ms, char *err,
    size_t errlen);

/* `flush passcache`'s LMDB side, durable before the verb answers: after
 * passcache_flush_all, the marker of module names[i] (the process's flush time) is written
 * into the LMDB store specs[i] names, for each i of [0..n) (n <= 8), by the directory's
 * writer thread (lmdb_store_apply_start_on, bounded by timeout_ms; its writer named
 * NAME_pass in logs and metrics), committed to the map — a process killed after the answer
 * (SIGKILL) comes back with them. Only a directory this process has open (a module's
 * store) is marked: the loop opens none (lmdb_store_open_existing); another one fails.
 * done(arg, failed, err) is called once, on loop's thread, never from inside this call,
 * when every store has answered: failed is how many directories could not be marked (each
 * once: their directories and why in err, valid during the call). Returns how many
 * directories are being marked: 0 when none is LMDB (done is not called). */
typedef void (*passcache_flush_done_fn)(void *arg, int failed, const char *err);
int passcache_flush_lmdb_start(uv_loop_t *loop, const char *const *specs,
    const char *const *names, size_t n, uint64_t timeout_ms, passcache_flush_done_fn done,
    void *arg);

/* Reads a Redis record, "NOTED_MS:PAYLOAD" (1 to 19 digits, then at most
 * PASSCACHE_VALUE_MAX octets): true with the noted time and the payload (pointing into s),
 * false for anything else. */
bool passcache_value_parse(const char *s, size_t len, uint64_t *noted, const char **val, size_t *vlen);

/* Writes a Redis record, "NOTED_MS:PAYLOAD", into out (cap octets, no NUL added): the
 * length, or 0 when noted has more than 19 digits (passcache_value_parse would refuse it),
 * vlen is over PASSCACHE_VALUE_MAX or cap is too small. passcache_value_parse reads back
 * exactly noted and val[0..vlen). */
size_t passcache_value_format(char *out, size_t cap, uint64_t noted, const void *val, size_t vlen);

/* This process's answers from the stores of module name ("pregreet" or "dnsbl"), every
 * worker and generation together, and its last flush (wall ms, 0: none): for the control
 * socket's `passcache` (no store is asked). Thread-safe. */
struct passcache_stats {
	unsigned long long hits;       /* a pass known */
	unsigned long long misses;     /* not known (none, expired, noted before a flush) */
	unsigned long long errors;     /* a lookup or a write failed (event=passcache_error) */
	uint64_t flushed_ms;
};
void passcache_stats(const char *name, struct passcache_stats *out);

/* What the control socket's `passcache` shows of module name's store spec, without asking
 * a Redis store: its kind ("local", "lmdb", "redis"), the spec as shown (a Redis URL
 * without its password), the key prefix ("" for local) and, for LMDB, the map's records and
 * bytes in use (every module's records in that directory: -1 when it cannot be read or
 * this process does not have it open — nothing is opened here: the main loop's verb). */
struct passcache_desc {
	const char *kind;
	char shown[300];
	char prefix[48];
	long long map_records, map_bytes;
};
void passcache_describe(const char *spec, const char *name, struct passcache_desc *d);

/* Wall-clock ms (records outlive the process). */
uint64_t passcache_wall_ms(void);

#endif
