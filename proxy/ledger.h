/* ledger.h — the delivery ledger: which recipients of which message a backend already said
 * 250 for, while the client was told 4xx (an LMTP server that took some recipients and
 * deferred the others, a replay that failed after a partial delivery). The client's retry
 * of the same message (the same octets, sender and recipient) finds them here and they are
 * not sent again (smtp_tx.c). One process-wide store in memory, shared by the workers
 * (mutex); entries live backends.retry_ledger.ttl, at most max_entries (the oldest go).
 * With backends.retry_ledger.store lmdb:/dir each entry is also kept in that directory
 * (ledger_store.h): a restart or another process on the host finds it there.
 *
 * A key is SHA-256 over the message digest (ledger_digest: the client's octets as received,
 * before mxgate's headers), the envelope sender and the recipient. Each entry also counts in
 * a fixed table by the hash of its (sender, recipient) pair alone: a message none of whose
 * pairs is there needs no digest (the steady state once the ledger holds anything). */
#ifndef MX_LEDGER_H
#define MX_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_KEY_LEN 32

struct ledger;

/* An empty ledger (abort()s when out of memory, as the daemon's allocations do). */
struct ledger *ledger_new(void);
/* ledger_free(NULL) is a no-op. */
void ledger_free(struct ledger *l);
/* The process's ledger, made on first use (any thread); never freed. */
struct ledger *ledger_process(void);

/* The message's digest: SHA-256 of data[0..len), the content as the client sent it (as held:
 * unstuffed, CRLF line ends, the same for DATA and BDAT). */
void ledger_digest(uint8_t out[LEDGER_KEY_LEN], const char *data, size_t len);
/* The key of (digest, from, rcpt); NULL from is the null sender "". */
void ledger_key(uint8_t key[LEDGER_KEY_LEN], const uint8_t digest[LEDGER_KEY_LEN], const char *from,
    const char *rcpt);

/* Forgets every entry (tests: the process's ledger between cases). */
void ledger_clear(struct ledger *l);

/* The (from, rcpt) pair's hash, for ledger_may_hold and ledger_add: cheap (FNV-1a), no digest;
 * unkeyed because it is stored (ledger_pair_key) and must be the same in every process. */
uint64_t ledger_pair(const char *from, const char *rcpt);
/* A key that marks the pair held, for a store other processes share (ledger_store.h): "PAIR",
 * 20 zero octets and the pair, big-endian. Another process looks it up before it hashes a
 * message, as ledger_may_hold in memory; a digest's key (SHA-256) is this only by a 2^-192
 * chance. */
void ledger_pair_key(uint8_t key[LEDGER_KEY_LEN], uint64_t pair);
/* False when no entry of the pair is held (then no digest needs computing for it); true when
 * one may be (a hash shared with another pair). Without the lock. */
bool ledger_may_hold(const struct ledger *l, uint64_t pair);

/* Entries held (expired ones not yet purged included); read without the lock: a quick "is
 * there anything at all" before a digest is computed. */
size_t ledger_count(const struct ledger *l);
/* The most entries one bucket holds (tests: the buckets are keyed, siphash.h). */
size_t ledger_longest_chain(struct ledger *l);
/* Whether key is held and not expired at now (milliseconds of any monotonic clock, the same
 * one the adds used). */
bool ledger_has(struct ledger *l, const uint8_t key[LEDGER_KEY_LEN], uint64_t now);
/* Holds key until now + ttl (ms); a key held already keeps its first expiry (a retry does not
 * extend it, as a queue's lifetime counts from the first arrival). Expired entries go first;
 * then, past max_entries (>= 1), the oldest: their number is returned (0: none evicted). */
size_t ledger_add(struct ledger *l, const uint8_t key[LEDGER_KEY_LEN], uint64_t pair, uint64_t now,
    uint64_t ttl, size_t max_entries);

#endif
