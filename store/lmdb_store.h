/* lmdb_store.h — one LMDB environment per directory, shared by every module and worker that
 * names it (reputation, greylist ...): reads inline from the memory map on any thread, writes
 * queued per worker by an lmdb_writer and applied by the environment's own writer thread, one
 * write transaction per batch. That thread is the one that waits for LMDB's write lock when
 * another process holds it (a stopped `mxgate learn`, python3-lmdb, mdb_stat's tools): no
 * thread of libuv's pool and no worker loop ever does; a writer has at most one batch with
 * it, and updates queued meanwhile are bounded (max_queued), then dropped and counted.
 *
 * Keys are bytes (at most lmdb_store_max_key() long, 511 with Debian's liblmdb); each user
 * keeps its records under its own key prefixes ("ip:", "net:", "gl:" ...) in the one unnamed
 * database. A writer names its prefixes and may give a sweep rule: about once an hour (per
 * prefix and environment) one of its batches also drops the records the rule calls expired.
 *
 * A full map: a writer with a rank function keeps learning. It evicts (HIGH - LOW) / HIGH of
 * its own records, those with the lowest rank (the stalest), in small transactions of their
 * own before its batch, when it has added records since its last eviction and the pages in
 * use reach LMDB_STORE_EVICT_HIGH % of the map — until the map was first found full or near
 * full; from then on, when the map holds as many records as it did then (deleting frees
 * room inside pages, not pages: the pages in use stay high after an eviction; the record
 * count is the mark once known). A batch that still meets MDB_MAP_FULL makes room and tries
 * again, and one larger than the room there is is applied in halves. Each eviction is
 * counted (mxgate_store_evictions_total{store="lmdb:NAME"}) and logged at most once a minute
 * per environment (event=lmdb_evict store=lmdb:DIR module=NAME evicted=N total=N remaining=N
 * records=N used_pct=P reason=map_full|high_water|record_mark). Only its own records: another
 * user of the directory evicts its own when it adds. A writer without a rank fails its
 * batches with a full map as before (event=lmdb_error, the updates counted as dropped).
 *
 * Durability: the map is written back by the OS (MDB_NOSYNC): a process restart loses
 * nothing that was committed, a power loss at most the last seconds. What is still queued
 * in a writer when the daemon dies is lost; lmdb_writer_free() applies it first. */
#ifndef MX_LMDB_STORE_H
#define MX_LMDB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LMDB_STORE_VALUE_MAX 4096   /* the largest value a merge may produce */
#define LMDB_STORE_EVICT_HIGH 90    /* % of the map's pages in use that starts an eviction */
#define LMDB_STORE_EVICT_LOW 75     /* an eviction drops (HIGH - LOW) / HIGH of the records */

struct lmdb_store;
struct lmdb_writer;

/* ---- the environment ------------------------------------------------------------------ */

/* Opens (creating the directory) the database at dir, or takes one more reference to the
 * environment this process already has open there (LMDB allows one per process and file; the
 * first opener's map_size wins, 0 = 256 MiB). NULL on failure (logged, event=lmdb_error).
 * Thread-safe. */
struct lmdb_store *lmdb_store_open(const char *dir, uint64_t map_size);
/* The same, with the reason of a failure in words (why[0..cap), "" on success or when the
 * failure has none) for a caller that reports it beside the log line (the start's refusal). */
struct lmdb_store *lmdb_store_open_why(const char *dir, uint64_t map_size, char *why, size_t cap);
/* One more reference to the environment this process already has open at dir (a module's
 * store), or NULL when it has none: never makes the directory nor opens an environment (no
 * mkdir, no mdb_env_open, no new read slot), so the main loop's control verbs may call it
 * where lmdb_store_open could block. Close it with lmdb_store_close. */
struct lmdb_store *lmdb_store_open_existing(const char *dir);
/* Drops a reference; the last one syncs and closes the environment. NULL is a no-op. */
void lmdb_store_close(struct lmdb_store *st);
/* The same for a loop's thread (a control verb's reference): the last reference's sync and
 * close run on a thread of their own (mdb_env_sync waits for the disk), never on the loop.
 * NULL is a no-op. */
void lmdb_store_close_async(struct lmdb_store *st);
/* The directory, as given to lmdb_store_open (for logs). Borrowed, valid while open. */
const char *lmdb_store_path(const struct lmdb_store *st);
/* The longest key the environment accepts. */
size_t lmdb_store_max_key(const struct lmdb_store *st);
/* Records held and bytes of the map in use (for size bounds and metrics). 0 or -1. */
int lmdb_store_usage(struct lmdb_store *st, uint64_t *records, uint64_t *bytes_used,
    uint64_t *map_size);

/* ---- reads (any thread, inline: a lookup in the memory map) --------------------------- */

/* Copies key's value (at most cap bytes) into val and sets *len to its full length.
 * Returns 1 (found), 0 (absent) or -1 (error). */
int lmdb_store_get(struct lmdb_store *st, const void *key, size_t klen, void *val, size_t cap,
    size_t *len);

/* Calls fn for each record whose key starts with prefix, in key order, in one read snapshot,
 * until fn returns false; key and val are borrowed, valid during the call. 0 or -1. */
typedef bool (*lmdb_store_each_fn)(void *arg, const void *key, size_t klen, const void *val,
    size_t vlen);
int lmdb_store_foreach(struct lmdb_store *st, const char *prefix, lmdb_store_each_fn fn, void *arg);

struct lmdb_key { const void *data; size_t len; };

/* Called once per key of lmdb_store_get_many, in order: val is NULL (len 0) when the key is
 * absent; val is borrowed, valid only during the call. */
typedef void (*lmdb_store_value_fn)(void *arg, size_t i, const void *val, size_t len);

/* Looks up n keys in one read snapshot (one consistent view, one transaction): a message's
 * tokens, or an IP and its network. Returns 0 (fn called n times) or -1 (error; fn called for
 * none or only some). */
int lmdb_store_get_many(struct lmdb_store *st, const struct lmdb_key *keys, size_t n,
    lmdb_store_value_fn fn, void *arg);

/* ---- write-behind ------------------------------------------------------------------------ */

/* A merge: the new value of a record from its current one (cur NULL, curlen 0 when absent)
 * and a queued operand (a count to add, an outcome ...). Runs inside the batch's write
 * transaction, on the writer thread (or the caller's, when synchronous), and on the loop's
 * for lmdb_writer_get_merged (a pure function of its inputs): no loop calls, no locks of the
 * caller's. Writes at most cap (LMDB_STORE_VALUE_MAX) bytes to out; returns the
 * length, 0 to delete the record, or -1 to leave it as it is. now_ms: wall clock of the batch.
 * ctx: the writer's copy of lmdb_writer_config.ctx. */
typedef long (*lmdb_merge_fn)(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx);

/* A sweep rule: true when a record under the writer's prefix may be dropped at now_ms (its
 * expiry passed, its counts decayed to nothing ...). Same thread rules as a merge. */
typedef bool (*lmdb_expired_fn)(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx);

/* An eviction rank: records with the lowest rank go first when the map is near full (the
 * wall-clock ms of the record's last update, its expiry ...). Same thread rules as a merge. */
typedef uint64_t (*lmdb_rank_fn)(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx);

struct lmdb_writer_config {
	const char *const *sweep_prefixes; /* NULL-terminated (at most 4, each < 32 bytes): the
	                                    * key prefixes this writer owns and sweeps */
	lmdb_merge_fn merge;        /* for lmdb_writer_merge; NULL = merges are refused */
	lmdb_expired_fn expired;    /* sweep rule for those prefixes; NULL = no sweep */
	lmdb_rank_fn rank;          /* eviction order for those prefixes; NULL = never evicted */
	uint64_t sweep_interval;    /* ms between sweeps of a prefix in this environment; 0 = 1 h */
	const void *ctx;            /* copied (ctx_len bytes) into the writer: it may outlive */
	size_t ctx_len;             /*   the caller's config (a batch still being written) */
	uint64_t flush_interval;    /* ms between batches; 0 = 500 ms */
	size_t max_queued;          /* updates held between batches; more are dropped; 0 = 100000 */
	const char *name;           /* module name for logs ("reputation") */
};

/* A writer on loop (its owner's worker loop; the flush timer starts with the first update,
 * so a writer may be made on another thread before the loop runs). loop NULL: no writer
 * thread, no timer — updates wait for lmdb_writer_flush (or a full queue) and are applied in the calling
 * thread, for tools and the offline `learn` command. Takes a reference on st. NULL when out
 * of memory or cfg is invalid. Use a writer on one thread only (its loop's). */
struct lmdb_writer *lmdb_writer_new(struct lmdb_store *st, uv_loop_t *loop,
    const struct lmdb_writer_config *cfg);
/* On a loop: never waits. What is still queued goes to the writer thread as a last batch,
 * after the batch it has (the order of updates holds), and is written when LMDB's write lock
 * comes; the timer and the completion handle are closed (the loop must run on for their
 * close callbacks); memory and the store reference go once both are closed and the writer
 * thread is done with the writer's batches. Every pending flush callback is called (status 0
 * or -1): a batch's already applied now, from this call, the others later from the writer
 * thread (so a callback must be safe on any thread). At exit the process waits up to 5 s for
 * such last batches. Without a loop: applies what is queued here and now. NULL is a no-op. */
void lmdb_writer_free(struct lmdb_writer *w);

/* Waits (this thread, up to ms) until every batch handed to a writer thread in this process
 * is written (or failed): true, or false when one still waits for the write lock. */
bool lmdb_store_wait_written(unsigned ms);

/* Queues a put (vlen > 0; 0 is a delete) / delete / merge of key for the next batch; the data
 * is copied. 0, or -1 (key empty or longer than lmdb_store_max_key, value over
 * LMDB_STORE_VALUE_MAX, no merge function, out of memory, or the queue is full: the update is
 * dropped, counted (mxgate_store_writes_dropped_total{store="lmdb:NAME"}, with the updates of
 * a batch that failed) and logged once a minute, event=lmdb_queue_full). */
int lmdb_writer_put(struct lmdb_writer *w, const void *key, size_t klen, const void *val,
    size_t vlen);
int lmdb_writer_del(struct lmdb_writer *w, const void *key, size_t klen);
int lmdb_writer_merge(struct lmdb_writer *w, const void *key, size_t klen, const void *operand,
    size_t oplen);

/* Read-your-writes: the newest value this writer queued for key with put (or a delete: 0)
 * when there is one, else the map's (lmdb_store_get). Queued merges are not seen until their
 * batch is applied. Returns 1, 0 or -1 like lmdb_store_get. */
int lmdb_writer_get(struct lmdb_writer *w, const void *key, size_t klen, void *val, size_t cap,
    size_t *len);
/* The same with the merges of key queued after that value run on it in their order (here,
 * on the caller's thread, at the wall clock's now): what the batch will write unless another
 * writer or process changes the record first — a conditional write is seen by its own writer
 * at once, as a put is. Counts merged from several writers are better read with
 * lmdb_writer_get: every writer then sees them at once, when the batch is applied. */
int lmdb_writer_get_merged(struct lmdb_writer *w, const void *key, size_t klen, void *val,
    size_t cap, size_t *len);

/* status 0: every update queued before the flush is committed; -1: the batch failed (map
 * full, I/O error: logged) and was dropped. Called on the loop thread — or the writer thread
 * for a writer freed before its batch was applied (lmdb_writer_free). */
typedef void (*lmdb_writer_done_cb)(void *arg, int status);

/* Hands what is queued to the writer thread now instead of at the next tick; done (may be NULL) is
 * called once that batch (and any batch before it) is applied. Batches of one writer are
 * applied one at a time, in order. Returns 0 (done will be called later, never from inside
 * this call — except without a loop, where the batch is applied and done called before the
 * return), 1 (nothing queued or in flight: done is not called) or -1 (out of memory). */
int lmdb_writer_flush(struct lmdb_writer *w, lmdb_writer_done_cb done, void *arg);

struct lmdb_writer_stats {
	uint64_t queued;            /* updates accepted */
	uint64_t dropped;           /* refused because the queue was full */
	uint64_t batches, failed;   /* batches applied / failed */
	uint64_t evicted;           /* records this writer evicted (a map near full) */
};
void lmdb_writer_stats(const struct lmdb_writer *w, struct lmdb_writer_stats *out);

/* One change of a record: val (vlen octets) put under key, or with vlen 0 the key deleted;
 * with merge set, val (vlen octets, at most LMDB_STORE_VALUE_MAX - sizeof(merge)) is the
 * operand of merge, run on the record as it is inside the batch's write transaction (ctx
 * NULL): a change made on what the caller read earlier ("delete it if it is still what I
 * saw") that another process or writer changed meanwhile is decided on what is there then. */
struct lmdb_store_change {
	const char *key;            /* NUL-terminated */
	const void *val;
	size_t vlen;
	lmdb_merge_fn merge;        /* NULL: a put or a delete */
};

/* Applies ch[0..n) here and now, in one batch, with a writer of the call's own (no loop: the
 * batch is written in the call; it waits for LMDB's write lock as long as another process
 * holds it). The daemon's control verbs use lmdb_store_apply_start; this one is for the unit
 * tests and a tool that wants its change written before it goes on. dir and
 * map_size as lmdb_store_open, name labels the writer in the log. 0, or
 * LMDB_APPLY_NO_MAP (the map could not be opened), LMDB_APPLY_NO_MEMORY, or
 * LMDB_APPLY_FAILED (a change refused or the batch failed; logged by the store). */
enum { LMDB_APPLY_NO_MAP = -1, LMDB_APPLY_NO_MEMORY = -2, LMDB_APPLY_FAILED = -3,
       LMDB_APPLY_TIMEOUT = -4 };
int lmdb_store_apply(const char *dir, uint64_t map_size, const char *name,
    const struct lmdb_store_change *ch, size_t n);

/* The same without waiting on loop (the main loop: a control verb's change), on the
 * environment this process has open at dir (lmdb_store_open_existing): it opens none (mkdir
 * and mdb_env_open may wait without a bound for another process's lock on lock.mdb) —
 * LMDB_APPLY_NO_MAP when there is none (map_size is not used). The batch goes
 * to the directory's writer thread, which may wait for LMDB's write lock (another process
 * holding it: a stopped `mxgate learn`, any LMDB tool); done(arg, rc) is called once, on
 * loop's thread, never from inside this call: rc 0 when the batch is written,
 * LMDB_APPLY_FAILED, or LMDB_APPLY_TIMEOUT when it was not written within timeout_ms (it
 * stays with the writer thread and is written when the lock comes, or dropped at exit after
 * the 5 s lmdb_store_wait_written gives). Returns 0 (done will be called), or
 * LMDB_APPLY_NO_MAP / LMDB_APPLY_NO_MEMORY / LMDB_APPLY_FAILED (done is not called). The
 * call's writer drops its reference with lmdb_store_close_async: a last one is not synced
 * and closed on loop. */
typedef void (*lmdb_store_apply_fn)(void *arg, int rc);
enum { LMDB_APPLY_VERB_MS = 5000 };  /* how long a control verb waits for its change */
int lmdb_store_apply_start(uv_loop_t *loop, const char *dir, uint64_t map_size, const char *name,
    const struct lmdb_store_change *ch, size_t n, uint64_t timeout_ms, lmdb_store_apply_fn done,
    void *arg);
/* The same on a store the caller has open (st borrowed: the call takes its own reference),
 * e.g. from lmdb_store_open_existing: nothing is opened. Returns 0, LMDB_APPLY_NO_MEMORY or
 * LMDB_APPLY_FAILED (LMDB_APPLY_NO_MAP for st NULL). */
int lmdb_store_apply_start_on(uv_loop_t *loop, struct lmdb_store *st, const char *name,
    const struct lmdb_store_change *ch, size_t n, uint64_t timeout_ms, lmdb_store_apply_fn done,
    void *arg);

/* Opens dir (lmdb_store_open) on a thread of its own, not on loop: mkdir and mdb_env_open
 * wait without a bound while another process holds lock.mdb's lock. done(arg, st, timed_out)
 * is called once, on loop, after this returns: st the store (the caller's reference, close it
 * with lmdb_store_close), or NULL — the open failed (logged, event=lmdb_error), or it had not
 * returned within timeout_ms (timed_out: the thread closes what it opens late). 0, or -1 (out
 * of memory: done is not called). For a main loop's control verb that needs a store no
 * module has open here (the drain's end). */
typedef void (*lmdb_store_open_fn)(void *arg, struct lmdb_store *st, bool timed_out);
int lmdb_store_open_start(uv_loop_t *loop, const char *dir, uint64_t map_size, uint64_t timeout_ms,
    lmdb_store_open_fn done, void *arg);

#endif
