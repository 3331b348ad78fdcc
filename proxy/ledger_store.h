/* ledger_store.h — the delivery ledger (ledger.h) kept in an LMDB directory
 * (backends.retry_ledger.store: lmdb:/dir): it survives a restart of mxgate (a deploy, a
 * crash) and is shared by every process on the host that names the directory. The memory
 * ledger stays in front of it (the same process's retry, max_entries, event=ledger_evict);
 * each key added there is also written here, and a key the memory ledger lacks is looked
 * up here.
 *
 * A record: key "ledger:" and the 32 octets of the ledger key; value one version octet (1)
 * and the expiry, wall-clock milliseconds, 8 octets big-endian (ledger_record_*). The
 * expiry is checked on read and the writer's sweep drops expired records (about once an
 * hour); a map near full evicts the ones that expire first. A key held already keeps its
 * first expiry (the merge leaves a live record as it is), as in memory.
 *
 * Reads are inline from the memory map (lmdb_store.h: no lock, no I/O wait on the loop);
 * writes go through the worker's lmdb_writer (its own thread waits for LMDB's write lock). */
#ifndef MX_LEDGER_STORE_H
#define MX_LEDGER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ledger.h"

struct lmdb_writer;
struct mx_config;

#define LEDGER_RECORD_LEN 9
#define LEDGER_RECORD_VERSION 1
#define LEDGER_STORE_PREFIX "ledger:"
#define LEDGER_STORE_KEY_LEN (sizeof(LEDGER_STORE_PREFIX) - 1 + LEDGER_KEY_LEN)

/* The record of an entry that expires at expires_ms (wall clock). */
void ledger_record_encode(uint8_t out[LEDGER_RECORD_LEN], uint64_t expires_ms);
/* 0 with *expires_ms set, or -1 for a value that is no record of this version (a wrong
 * length, another version): the caller treats it as absent. */
int ledger_record_decode(const void *val, size_t len, uint64_t *expires_ms);
/* The store's key of a ledger key: "ledger:" and its 32 octets; returns its length. */
size_t ledger_store_key(uint8_t out[LEDGER_STORE_KEY_LEN], const uint8_t key[LEDGER_KEY_LEN]);

/* The LMDB directory of cfg's ledger, or NULL (memory, or the ledger off). */
const char *ledger_store_dir(const struct mx_config *cfg);
/* A writer on loop for cfg's ledger directory (the generation opened it at start or reload:
 * only a reference is taken here, nothing opened), or NULL when the ledger is in memory
 * (or the store is not open: logged). Free with lmdb_writer_free. */
struct lmdb_writer *ledger_store_writer_new(const struct mx_config *cfg, uv_loop_t *loop);

/* Whether key is held and not expired at now_ms (wall clock): 1, 0, or -1 (the store failed:
 * the caller delivers as if it were not held — a possible duplicate, never a loss). */
int ledger_store_has(struct lmdb_writer *wr, const uint8_t key[LEDGER_KEY_LEN], uint64_t now_ms);
/* Queues key until now_ms + ttl (a live record keeps its expiry). 0, or -1 (the writer's
 * queue full or out of memory: the update is dropped and counted by the store). */
int ledger_store_add(struct lmdb_writer *wr, const uint8_t key[LEDGER_KEY_LEN], uint64_t now_ms,
    uint64_t ttl);

/* Hands what the worker's writer has queued to its thread now (an add is rare: a partial
 * delivery), so the record is there for another process before the writer's next tick;
 * event=ledger_stored store=lmdb:DIR queue_id=ID keys=N once it is committed, a failure
 * noted as ledger_store_note's. */
void ledger_store_commit(struct lmdb_writer *wr, const char *dir, const char *queue_id, size_t n);

/* An add's write in flight, for its event=ledger_stored: store as logged (ledger_store_note),
 * the message's queue id (NULL or "": "-"), n its recipients. NULL when out of memory. */
struct ledger_store_write;
struct ledger_store_write *ledger_store_write_new(const char *store, const char *queue_id, size_t n);
/* The write w (a struct ledger_store_write) ended, status 0 when the store applied it: noted
 * as ledger_store_note's (write_failed), event=ledger_stored store=STORE queue_id=ID keys=N
 * when applied; frees w. The done callback of an LMDB flush or a Redis write. */
void ledger_store_written(void *w, int status);

/* A store failure (ok false) or success (ok true) of a lookup or an add: the first failure
 * after a success logs event=ledger_store_error store=STORE reason=WHAT action=deliver once
 * (the outage), the first success after it event=ledger_store_ok. store: as logged
 * ("lmdb:/dir", a Redis URL without its password: ledger_redis.h). Any thread. */
void ledger_store_note(const char *store, bool ok, const char *what);

#endif
