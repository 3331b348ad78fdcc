/* bayes_db.h — storage of the classifier: per token (spam count, ham count, atime), the
 * totals (messages learned as spam and as ham, tokens held), and a seen-db of learned
 * messages (id -> class), so learning a message twice is a no-op and learning it as the
 * other class moves it.
 *
 * Three stores behind one small interface:
 *   "memory"            this process only (tests)
 *   "lmdb:/dir"         this host (default); one environment per directory and process,
 *                       any thread; other processes (`mxgate learn`) may use it at once
 *   "redis://host:port[/db]"  every node of a cluster learns into and reads from one store
 * Every call is synchronous and thread-safe: the daemon calls them from libuv's thread pool
 * (never from an event loop), the `learn` command from its main thread. Redis calls have a
 * timeout. Opening a Redis store connects nothing (a worker's loop opens it): its first call
 * does, and after a failed connect the calls fail at once until the next try (a back-off,
 * rules/bayes_redis.c); bayes_db_check asks it. */
#ifndef MX_BAYES_DB_H
#define MX_BAYES_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAYES_ID_LEN 20              /* seen-db key: SHA-1 of the message's identity */

enum bayes_class { BAYES_SPAM = 0, BAYES_HAM = 1 };

enum bayes_learn_result {
	BAYES_LEARNED = 0,               /* new: counts added */
	BAYES_ALREADY,                   /* learned before as this class: nothing changed */
	BAYES_MOVED,                     /* learned before as the other class: moved */
	BAYES_OPPOSITE,                  /* learned before as the other class and left there
	                                  * (bayes_db_learn_once) */
};

struct bayes_counts { uint32_t spam, ham, atime; };
struct bayes_totals { uint64_t nspam, nham, ntokens; };

struct bayes_db;

struct bayes_db_options {
	uint64_t map_size;               /* LMDB map size (0 = 512 MiB) */
	uint64_t timeout_ms;             /* Redis: connect and each request; LMDB: the longest
	                                  * wait for the write lock (0 = 2000) */
	uint32_t ttl_s;                  /* Redis: tokens and seen ids expire after (0 = never) */
	const char *prefix;              /* Redis key prefix (NULL = "mxbayes:") */
	bool quiet;                      /* Redis: no log line for a failed connect (a one-shot
	                                  * command reports the error itself) */
};

/* Opens the store spec names (see above). NULL with a reason in err on failure. Thread-safe;
 * an LMDB directory already open in this process is shared (reference counted). */
struct bayes_db *bayes_db_open(const char *spec, const struct bayes_db_options *o,
    char *err, size_t errlen);
/* Whether the store answers: Redis connects (or takes a pooled connection), within the
 * back-off of a store that is down; the others are there once opened. 0, or -1 with the
 * reason in err. Blocks up to the store's connect: not on an event loop. */
int bayes_db_check(struct bayes_db *db, char *err, size_t errlen);
/* Drops the handle (the last reference to an LMDB environment syncs and closes it). NULL ok. */
void bayes_db_close(struct bayes_db *db);
/* "memory", "lmdb" or "redis" (for logs). */
const char *bayes_db_kind(const struct bayes_db *db);

/* One consistent read of the totals and of n tokens (out[i] all 0 when unknown). 0 or -1. */
int bayes_db_lookup(struct bayes_db *db, const uint64_t *keys, size_t n,
    struct bayes_counts *out, struct bayes_totals *tot);
int bayes_db_totals(struct bayes_db *db, struct bayes_totals *tot);

/* Learns the message id (keys: its n unique tokens) as cls, atomically with the seen-db:
 * already learned as cls -> BAYES_ALREADY, nothing changes; learned as the other class ->
 * its counts move (BAYES_MOVED). now: seconds since the epoch (token atime). 0 or -1. */
int bayes_db_learn(struct bayes_db *db, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
    const uint64_t *keys, size_t n, uint32_t now, enum bayes_learn_result *res);
/* The same for a message never learned before: one learned as the other class is left as
 * it is (BAYES_OPPOSITE), atomically with the check — SpamAssassin's no_relearn, which its
 * autolearn uses (bug 3704: a message learned by hand as spam must not be autolearned as
 * ham, nor the reverse). 0 or -1. */
int bayes_db_learn_once(struct bayes_db *db, const uint8_t id[BAYES_ID_LEN],
    enum bayes_class cls, const uint64_t *keys, size_t n, uint32_t now,
    enum bayes_learn_result *res);

/* Sets the atime of n tokens that exist to now (tokens a scan used stay young). 0 or -1. */
int bayes_db_touch(struct bayes_db *db, const uint64_t *keys, size_t n, uint32_t now);

/* Expiry, like SpamAssassin's bayes_expiry: drops tokens not used for max_age_s (0 = no age
 * limit) and, when more than max_tokens remain (0 = no bound), the oldest until 3/4 of
 * max_tokens are left. *removed (may be NULL) counts them. Redis: no-op (tokens carry a TTL
 * there). 0 or -1. */
int bayes_db_expire(struct bayes_db *db, uint64_t max_tokens, uint32_t max_age_s,
    uint32_t now, uint64_t *removed);

/* The atime below which tokens go so that keep of the n atimes remain (0 when n <= keep),
 * and in *ties how many of the tokens at that atime go too (tokens learned in the same
 * second); shared by the stores, public for tests. atimes is reordered. */
uint32_t bayes_db_expire_cutoff(uint32_t *atimes, size_t n, uint64_t keep, size_t *ties);

#endif
