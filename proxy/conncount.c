/* conncount.c — a small open-addressing table of IP -> open connections, under a mutex.
 *
 * A client's home slot is a keyed hash (siphash.h: SipHash under the process's secret), not
 * one anyone can compute: with a public hash, a client could pick 64 addresses whose homes
 * fill the probe window of its own and then be admitted uncounted, past its per-IP limit.
 * Admissions left uncounted (the window really crowded) are counted and logged. */
#include "conncount.h"
#include "log.h"
#include "netaddr.h"
#include "siphash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

static struct siphash_key cc_secret;    /* the process's, or conncount_set_key's */
static pthread_once_t cc_once = PTHREAD_ONCE_INIT;
static atomic_ulong cc_uncounted;
static atomic_llong cc_logged_at;       /* s, the last event=conncount_crowded */

static void cc_key_make(void)
{
	cc_secret = *siphash_process_key();
}

void conncount_set_key(uint64_t k0, uint64_t k1)
{
	pthread_once(&cc_once, cc_key_make);
	pthread_mutex_lock(&cc_lock);
	cc_secret.k0 = k0;
	cc_secret.k1 = k1;
	pthread_mutex_unlock(&cc_lock);
}

/* The keyed hash of the 16-byte key (under cc_lock: conncount_set_key may change it). */
static uint32_t cc_hash(const uint8_t key[16])
{
	uint64_t m = siphash13(&cc_secret, key, 16);

	return (uint32_t)(m ^ m >> 32);
}

uint32_t conncount_home(const struct sockaddr *sa, long prefix_v6)
{
	uint8_t key[16];
	uint32_t h;

	pthread_once(&cc_once, cc_key_make);
	netaddr_client_key16(sa, (int)prefix_v6, key);
	pthread_mutex_lock(&cc_lock);
	h = cc_hash(key) & (CONNCOUNT_SLOTS - 1);
	pthread_mutex_unlock(&cc_lock);
	return h;
}

unsigned long conncount_uncounted(void)
{
	return atomic_load(&cc_uncounted);
}

/* An admission left uncounted: counted, and logged at most once a minute. */
static void cc_note_uncounted(const struct sockaddr *sa)
{
	unsigned long n = atomic_fetch_add(&cc_uncounted, 1) + 1;
	long long now = (long long)time(NULL), last = atomic_load(&cc_logged_at);
	char ip[NETADDR_PREFIX_STRLEN];

	if (now - last < 60 || !atomic_compare_exchange_strong(&cc_logged_at, &last, now))
		return;
	if (netaddr_prefix_string(sa, 32, 128, ip, sizeof(ip)) < 0)
		snprintf(ip, sizeof(ip), "-");
	log_event(LOG_LVL_WARNING, NULL, "event=conncount_crowded client=%s uncounted=%lu "
	    "reason=\"per-IP table window full: admitted without a per-IP count\"", ip, n);
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

	pthread_once(&cc_once, cc_key_make);
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
	if (r == CONNCOUNT_UNCOUNTED)
		cc_note_uncounted(sa);
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

static atomic_long cc_fd_cap;
void conncount_set_fd_cap(long cap) { atomic_store(&cc_fd_cap, cap > 0 ? cap : 0); }
long conncount_fd_cap(void) { return atomic_load(&cc_fd_cap); }
