/* FNV-1a, 64 bits: an unkeyed hash, the same in every process and after every restart.
 * Anyone can compute it, so a client can make thousands of keys share its low bits: a table
 * whose keys a peer chooses uses siphash.h instead. FNV stays where the value must be stable
 * or is stored:
 *   ledger.c ledger_pair       the (sender, recipient) hash kept in the shared ledger store
 *                              (ledger_pair_key); its in-memory counter slot is keyed
 *   lmdb_store.c               a queued write's key hash, compared before the key (a list,
 *                              not a table index)
 *   listfile.c                 list files by path (the configuration's paths)
 *   quarantine_index.c         held files by name (names mxgate made)
 *   backend.c pool_hash        rendezvous hashing of the client address (its own copy: every
 *                              process and host picks the same backend for a client)
 *   dnsbl.c dnsbl_fnv          the pass cache's tag, the same in every worker
 *   rules/                     rule names, the bayes token hash (a stored key) */
#ifndef MXGATE_FNV_H
#define MXGATE_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A64_OFFSET 1469598103934665603ULL
#define FNV1A64_PRIME 1099511628211ULL

static inline uint64_t fnv1a64(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = FNV1A64_OFFSET;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV1A64_PRIME;
	return h;
}

static inline uint64_t fnv1a64_str(const char *s)
{
	uint64_t h = FNV1A64_OFFSET;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * FNV1A64_PRIME;
	return h;
}

#endif
