/* topk.h — a bounded "heavy hitters" table (the Space-Saving algorithm of Metwally, Agrawal
 * and El Abbadi, 2005): at most TOPK_CAP keys, each with a count and an error bound.
 *
 * A key that is counted but not in a full table replaces the entry with the smallest count
 * and inherits that count (+1) as its over-estimate, so every key whose true count exceeds
 * total/TOPK_CAP is guaranteed to be in the table. Fixed memory, no allocation, no locks:
 * one owner thread updates it; readers take a copy (topk_copy) under the owner's lock. */
#ifndef MX_TOPK_H
#define MX_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define TOPK_CAP 64
#define TOPK_KEY_MAX 64          /* bytes including the NUL; longer keys are truncated */

struct topk_entry {
	char key[TOPK_KEY_MAX];
	uint64_t count;              /* an upper bound of the true count */
	uint64_t error;              /* count - error is a lower bound */
};

struct topk {
	struct topk_entry e[TOPK_CAP];
	size_t n;
	uint64_t total;              /* everything counted, in or out of the table */
};

/* Zeroes t. */
void topk_init(struct topk *t);
/* Counts key (NUL-terminated, truncated to TOPK_KEY_MAX-1 bytes) by n (>= 1). NULL/"" ignored. */
void topk_add(struct topk *t, const char *key, uint64_t n);
/* Adds every entry of src into dst (merging per-thread tables; counts and errors add). */
void topk_merge(struct topk *dst, const struct topk *src);
/* Writes up to max entries of t into out, largest count first (ties by key). Returns the
 * number written. */
size_t topk_sorted(const struct topk *t, struct topk_entry *out, size_t max);

#endif
