/* siphash.c — SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012) and the process's secret key, see siphash.h. */
#include "siphash.h"

#include <endian.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static struct siphash_key siphash_proc;
static pthread_once_t siphash_once = PTHREAD_ONCE_INIT;

static void siphash_key_make(void)
{
	uint64_t k[2] = { 0, 0 };

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
		struct timespec ts;     /* no entropy (never on Linux >= 3.17): still not fixed */

		clock_gettime(CLOCK_REALTIME, &ts);
		k[0] ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
		k[1] ^= (uint64_t)(uintptr_t)&ts ^ ((uint64_t)ts.tv_nsec << 32);
	}
	siphash_proc.k0 = k[0];
	siphash_proc.k1 = k[1];
}

const struct siphash_key *siphash_process_key(void)
{
	pthread_once(&siphash_once, siphash_key_make);
	return &siphash_proc;
}

static inline uint64_t siphash_rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPHASH_ROUND do { \
		v0 += v1; v1 = siphash_rotl(v1, 13); v1 ^= v0; v0 = siphash_rotl(v0, 32); \
		v2 += v3; v3 = siphash_rotl(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = siphash_rotl(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = siphash_rotl(v1, 17); v1 ^= v2; v2 = siphash_rotl(v2, 32); \
	} while (0)

uint64_t siphash13(const struct siphash_key *k, const void *p, size_t n)
{
	const unsigned char *b = p, *end = b + (n & ~(size_t)7);
	uint64_t v0 = k->k0 ^ 0x736f6d6570736575ull, v1 = k->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = k->k0 ^ 0x6c7967656e657261ull, v3 = k->k1 ^ 0x7465646279746573ull;
	uint64_t m;

	for (; b < end; b += 8) {
		memcpy(&m, b, 8);
		m = le64toh(m);
		v3 ^= m;
		SIPHASH_ROUND;
		v0 ^= m;
	}
	/* the last 0..7 octets, little-endian, the length's low octet on top */
	m = (uint64_t)n << 56;
	switch (n & 7) {
	case 7: m |= (uint64_t)b[6] << 48; /* fall through */
	case 6: m |= (uint64_t)b[5] << 40; /* fall through */
	case 5: m |= (uint64_t)b[4] << 32; /* fall through */
	case 4: m |= (uint64_t)b[3] << 24; /* fall through */
	case 3: m |= (uint64_t)b[2] << 16; /* fall through */
	case 2: m |= (uint64_t)b[1] << 8;  /* fall through */
	case 1: m |= (uint64_t)b[0]; break;
	default: break;
	}
	v3 ^= m;
	SIPHASH_ROUND;
	v0 ^= m;
	v2 ^= 0xff;
	SIPHASH_ROUND;
	SIPHASH_ROUND;
	SIPHASH_ROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t siphash_mem(const void *p, size_t n)
{
	return siphash13(siphash_process_key(), p, n);
}

uint64_t siphash_str(const char *s)
{
	return siphash13(siphash_process_key(), s, strlen(s));
}
