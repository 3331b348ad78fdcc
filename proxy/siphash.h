/* siphash.h — the keyed hash of mxgate's in-memory tables whose keys a peer can choose
 * (a HELO name, a sender or recipient, a DNS name in a message): SipHash-1-3 under one
 * secret per process, drawn from getrandom() at first use. With a public hash (fnv.h) a
 * client can compute thousands of keys that share a bucket and turn every lookup into a
 * walk of one long chain on the event loop; without the key it cannot.
 *
 * Hashes differ from one process (and one start) to the next: never store one or send it to
 * another process. A hash that is stored or shared (a key in a store, a tag the workers
 * agree on, rendezvous hashing across hosts) stays FNV-1a (fnv.h) and says so where used. */
#ifndef MX_SIPHASH_H
#define MX_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct siphash_key {
	uint64_t k0, k1;
};

/* SipHash-1-3 (one compression round per 8 octets, three finalisation rounds: the
 * hash-table variant Rust and CPython use) of p[0..n) under k. */
uint64_t siphash13(const struct siphash_key *k, const void *p, size_t n);
/* The process's secret: drawn at the first call (any thread), the same for every call
 * after. The pointer stays valid for the life of the process. */
const struct siphash_key *siphash_process_key(void);
/* p[0..n), and the NUL-terminated s, under the process's secret. */
uint64_t siphash_mem(const void *p, size_t n);
uint64_t siphash_str(const char *s);

#endif
