/* collide_fixture.h — names made to collide under the unkeyed FNV-1a (proxy/fnv.h) that a
 * table hashed with before siphash.h: what a client can compute in a moment for a table of
 * 2^k buckets (about 2^k tries a name). Header-only (static), for the tests that check a
 * table whose keys a peer chooses spreads them anyway (its longest chain or probe stays
 * short). */
#ifndef COLLIDE_FIXTURE_H
#define COLLIDE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proxy/fnv.h"

#define COLLIDE_NAME_MAX 64

/* The hash the table used, of a name as the test formats it. */
typedef uint64_t (*collide_hash_fn)(const char *name);

/* Fills names[0..n) with fmt (one %u) for i = 0, 1, ... whose hash & mask equals the first
 * one's. Returns how many it found before 2^31 tries (n, unless mask is far too wide). */
static size_t collide_find(char (*names)[COLLIDE_NAME_MAX], size_t n, const char *fmt,
    collide_hash_fn hash, uint64_t mask)
{
	char name[COLLIDE_NAME_MAX];
	uint64_t target = 0;
	size_t k = 0;

	for (uint32_t i = 0; k < n && i < (1u << 31); i++) {
		snprintf(name, sizeof(name), fmt, i);
		uint64_t h = hash(name) & mask;

		if (k == 0)
			target = h;
		if (h != target)
			continue;
		snprintf(names[k++], COLLIDE_NAME_MAX, "%s", name);
	}
	return k;
}

#endif
