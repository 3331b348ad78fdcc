/* bayes_db_int.h — what the classifier's stores implement (bayes_db.c: memory and LMDB,
 * bayes_redis.c: Redis). Private to rules/bayes_db*.c and rules/bayes_redis.c. */
#ifndef MX_BAYES_DB_INT_H
#define MX_BAYES_DB_INT_H

#include "bayes_db.h"

struct bayes_db_ops {
	const char *kind;
	int (*lookup)(void *h, const uint64_t *keys, size_t n, struct bayes_counts *out,
	    struct bayes_totals *tot);
	/* relearn false: a message learned as the other class stays (BAYES_OPPOSITE) */
	int (*learn)(void *h, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
	    const uint64_t *keys, size_t n, uint32_t now, bool relearn,
	    enum bayes_learn_result *res);
	int (*touch)(void *h, const uint64_t *keys, size_t n, uint32_t now);
	int (*expire)(void *h, uint64_t max_tokens, uint32_t max_age_s, uint32_t now,
	    uint64_t *removed);
	void (*close)(void *h);
	/* Whether the store answers (may be NULL: it does once opened). 0, or -1 with err. */
	int (*check)(void *h, char *err, size_t errlen);
};

struct bayes_db { const struct bayes_db_ops *ops; void *h; };

/* Redis (bayes_redis.c): h for url, or NULL with err. */
void *bayes_redis_open(const char *url, const struct bayes_db_options *o, char *err,
    size_t errlen);
extern const struct bayes_db_ops bayes_redis_ops;
/* Tests: the clock of the Redis store's back-off (ms, monotonic); NULL: the real one. */
void bayes_redis_set_clock(uint64_t (*now_ms)(void));
/* Tests: how many calls wait, now, for a first connect's outcome (all Redis stores). */
int bayes_redis_waiting(void);

#endif
