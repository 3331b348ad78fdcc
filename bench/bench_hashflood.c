/* bench_hashflood.c — the DNS cache under names made to collide under FNV-1a, the public
 * hash its buckets used before proxy/siphash.h, beside as many ordinary names in the same
 * run; and the cost of a hash of a cache key, FNV-1a beside SipHash-1-3 (when the library
 * has it: -DHAVE_SIPHASH). Usage: bench_hashflood [names] ; one line per figure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "filters/dns.h"
#include "proxy/fnv.h"
#ifdef HAVE_SIPHASH
#include "proxy/siphash.h"
#endif

#define NAME_MAX_ 64

/* n names "f<i>.flood.test" whose cache key ("0:" name) shares its FNV-1a low bits (mask)
 * with the first one's: what a client computes in a moment. */
static void forge(char (*names)[NAME_MAX_], size_t n, uint64_t mask)
{
	char key[NAME_MAX_ + 2];
	uint64_t target = 0;
	size_t k = 0;

	for (uint32_t i = 0; k < n; i++) {
		snprintf(key, sizeof(key), "0:f%u.flood.test", i);
		uint64_t h = fnv1a64_str(key) & mask;

		if (k == 0)
			target = h;
		if (h == target)
			snprintf(names[k++], NAME_MAX_, "%s", key + 2);
	}
}

/* Puts every name, then gets each of them `rounds` times; ns per get. */
static double cache_run(char (*names)[NAME_MAX_], size_t n, int rounds)
{
	struct dns_cache *c = dns_cache_new(n);
	char *v[1] = { "127.0.0.2" };
	struct dns_result r = { .status = DNS_S_OK, .type = DNS_T_A, .ttl = 3600, .n = 1, .v = v };
	uint64_t t0, t1;
	size_t hits = 0;

	for (size_t i = 0; i < n; i++)
		dns_cache_put(c, DNS_T_A, names[i], &r, 0);
	t0 = uv_hrtime();
	for (int k = 0; k < rounds; k++)
		for (size_t i = 0; i < n; i++) {
			struct dns_result *g = dns_cache_get(c, DNS_T_A, names[i], 1);

			hits += g != NULL;
			dns_result_free(g);
		}
	t1 = uv_hrtime();
	if (hits != n * (size_t)rounds)
		fprintf(stderr, "bench_hashflood: %zu of %zu found\n", hits, n * (size_t)rounds);
	dns_cache_free(c);
	return (double)(t1 - t0) / ((double)n * rounds);
}

static volatile uint64_t sink;

/* ns per hash of keys like the cache's ("0:" a DNSBL name, 30 octets). */
static double hash_run(int which)
{
	static const char *const keys[4] = { "0:2.0.0.127.zen.spamhaus.org", "0:7.1.18.198.bl.test",
	    "0:mail-ed1-f54.google.com", "0:4.3.2.1.b.barracudacentral.org" };
	const int n = 4000000;
	uint64_t t0 = uv_hrtime(), h = 0;

	for (int i = 0; i < n; i++) {
		const char *k = keys[i & 3];
#ifdef HAVE_SIPHASH
		h += which ? siphash_str(k) : fnv1a64_str(k);
#else
		(void)which;
		h += fnv1a64_str(k);
#endif
	}
	sink = h;
	return (double)(uv_hrtime() - t0) / n;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4000;
	size_t nb = 1024;
	char (*forged)[NAME_MAX_] = calloc(n, NAME_MAX_), (*plain)[NAME_MAX_] = calloc(n, NAME_MAX_);
	int rounds = n > 2000 ? 3 : 20;

	if (forged == NULL || plain == NULL || n == 0)
		return 1;
	while (nb < n && nb < (1u << 22))    /* the cache's buckets for n entries */
		nb <<= 1;
	forge(forged, n, nb - 1);
	for (size_t i = 0; i < n; i++)
		snprintf(plain[i], NAME_MAX_, "p%zu.plain.test", i);
	/* each figure the better of three runs, alternating (a shared machine's load moves) */
	double best[4] = { 1e18, 1e18, 1e18, 1e18 };

	for (int k = 0; k < 3; k++) {
		double v[4] = { cache_run(plain, n, rounds), cache_run(forged, n, rounds), hash_run(0),
#ifdef HAVE_SIPHASH
		    hash_run(1)
#else
		    0
#endif
		};
		for (int j = 0; j < 4; j++)
			best[j] = v[j] < best[j] ? v[j] : best[j];
	}
	printf("dns cache get, %zu ordinary names:        %8.1f ns\n", n, best[0]);
	printf("dns cache get, %zu FNV-colliding names:   %8.1f ns\n", n, best[1]);
	printf("hash of a cache key, FNV-1a:              %8.1f ns\n", best[2]);
#ifdef HAVE_SIPHASH
	printf("hash of a cache key, SipHash-1-3 (keyed): %8.1f ns\n", best[3]);
#endif
	free(forged);
	free(plain);
	return 0;
}
