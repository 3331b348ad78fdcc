/* conncount.c — a small open-addressing table of IP -> open connections, under a mutex. */
#include "conncount.h"
#include "netaddr.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define CONNCOUNT_SLOTS 65536   /* power of two; more distinct concurrent IPs than this share */

struct cc_slot { uint8_t key[16]; uint32_t count; };

static struct cc_slot cc_table[CONNCOUNT_SLOTS];
static pthread_mutex_t cc_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long cc_total;

/* The key: one per client whatever the socket (IPv4 and v4-mapped alike), an IPv6 client's
 * network of prefix_v6 (limits.client_ipv6_prefix); all zero for a family without an
 * address. */
static void cc_key(const struct sockaddr *sa, long prefix_v6, uint8_t key[16])
{
	netaddr_client_key16(sa, (int)prefix_v6, key);
}

static uint32_t cc_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

/* Linear probing; an entry with count 0 is free (deletions leave no tombstones because a
 * probe continues past zero-count slots only while they hold the same key). */
static struct cc_slot *cc_find(const uint8_t key[16], bool create)
{
	uint32_t h = cc_hash(key);
	struct cc_slot *empty = NULL;

	for (uint32_t i = 0; i < 64; i++) {
		struct cc_slot *s = &cc_table[(h + i) & (CONNCOUNT_SLOTS - 1)];
		if (s->count && memcmp(s->key, key, 16) == 0)
			return s;
		if (s->count == 0 && empty == NULL)
			empty = s;
	}
	if (create && empty) {
		memcpy(empty->key, key, 16);
		return empty;
	}
	return NULL;
}

enum conncount_result conncount_acquire(const struct sockaddr *sa, long per_ip, long prefix_v6)
{
	uint8_t key[16];
	enum conncount_result r;

	cc_key(sa, prefix_v6, key);
	pthread_mutex_lock(&cc_lock);
	struct cc_slot *s = cc_find(key, true);
	if (s == NULL) {
		r = CONNCOUNT_UNCOUNTED;	/* table crowded: do not refuse for our own bookkeeping */
	} else if (per_ip > 0 && s->count >= (uint32_t)per_ip) {
		r = CONNCOUNT_REFUSED;
	} else {
		s->count++;
		r = CONNCOUNT_COUNTED;
	}
	pthread_mutex_unlock(&cc_lock);
	return r;
}

void conncount_release(const struct sockaddr *sa, long prefix_v6)
{
	uint8_t key[16];

	cc_key(sa, prefix_v6, key);
	pthread_mutex_lock(&cc_lock);
	struct cc_slot *s = cc_find(key, false);
	if (s && s->count)
		s->count--;
	pthread_mutex_unlock(&cc_lock);
}

long conncount_total_add(long delta) { return atomic_fetch_add(&cc_total, delta) + delta; }
long conncount_total(void) { return atomic_load(&cc_total); }
