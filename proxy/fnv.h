/* FNV-1a, 64 bits: the hash of mxgate's in-memory tables (keys are short; no seed needed).
 * Not for anything an attacker can aim at unless the table bounds its probes. */
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
