/* ledger.c — the delivery ledger (ledger.h): a hash table of SHA-256 keys with their
 * expiry, chained per bucket, and a list in the order they came (the oldest first: the one
 * expired or evicted first). */
#include "ledger.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "siphash.h"

struct ledger_entry {
	uint8_t key[LEDGER_KEY_LEN];
	uint64_t expires;
	uint64_t pair;                       /* ledger_pair of its sender and recipient */
	struct ledger_entry *chain;          /* next in its bucket */
	struct ledger_entry *older, *newer;  /* the arrival order */
};

struct ledger {
	pthread_mutex_t lock;
	struct ledger_entry **buckets;
	size_t nbuckets;                     /* a power of two */
	struct ledger_entry *oldest, *newest;
	atomic_size_t count;
	atomic_uint pairs[1u << 16];         /* entries by ledger_pair_slot of their pair */
};

#define LEDGER_BUCKETS_MIN 64

static void ledger_drop_oldest(struct ledger *l);

struct ledger *ledger_new(void)
{
	struct ledger *l = calloc(1, sizeof(*l));

	if (l == NULL)
		abort();
	pthread_mutex_init(&l->lock, NULL);
	l->nbuckets = LEDGER_BUCKETS_MIN;
	l->buckets = calloc(l->nbuckets, sizeof(*l->buckets));
	if (l->buckets == NULL)
		abort();
	return l;
}

void ledger_free(struct ledger *l)
{
	if (l == NULL)
		return;
	for (struct ledger_entry *e = l->oldest, *n; e != NULL; e = n) {
		n = e->newer;
		free(e);
	}
	free(l->buckets);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void ledger_clear(struct ledger *l)
{
	pthread_mutex_lock(&l->lock);
	while (l->oldest != NULL)
		ledger_drop_oldest(l);
	pthread_mutex_unlock(&l->lock);
}

static pthread_once_t ledger_once = PTHREAD_ONCE_INIT;
static struct ledger *ledger_proc;

static void ledger_process_init(void)
{
	ledger_proc = ledger_new();
}

struct ledger *ledger_process(void)
{
	pthread_once(&ledger_once, ledger_process_init);
	return ledger_proc;
}

void ledger_digest(uint8_t out[LEDGER_KEY_LEN], const char *data, size_t len)
{
	if (SHA256((const unsigned char *)data, len, out) == NULL)
		abort();
}

void ledger_key(uint8_t key[LEDGER_KEY_LEN], const uint8_t digest[LEDGER_KEY_LEN], const char *from,
    const char *rcpt)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (from == NULL)
		from = "";
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		abort();
	/* each string with its NUL: ("ab", "c") and ("a", "bc") are two keys */
	EVP_DigestUpdate(md, digest, LEDGER_KEY_LEN);
	EVP_DigestUpdate(md, from, strlen(from) + 1);
	EVP_DigestUpdate(md, rcpt, strlen(rcpt) + 1);
	EVP_DigestFinal_ex(md, key, NULL);
	EVP_MD_CTX_free(md);
}

uint64_t ledger_pair(const char *from, const char *rcpt)
{
	uint64_t h = fnv1a64_str(from ? from : "");

	h = (h ^ 0) * FNV1A64_PRIME;   /* the NUL between: ("ab", "c") is not ("a", "bc") */
	for (const char *p = rcpt; *p; p++)
		h = (h ^ (unsigned char)*p) * FNV1A64_PRIME;
	return h;
}

void ledger_pair_key(uint8_t key[LEDGER_KEY_LEN], uint64_t pair)
{
	memset(key, 0, LEDGER_KEY_LEN);
	memcpy(key, "PAIR", 4);
	for (int i = 0; i < 8; i++)
		key[LEDGER_KEY_LEN - 1 - i] = (uint8_t)(pair >> (8 * i));
}

/* The pair's counter: keyed (siphash.h), as the pair is FNV-1a of a sender and a recipient
 * the client chose, stable because it is stored (ledger_pair_key); with its low bits as the
 * slot, a client could make every pair it sends share the slot of one it wants hashed. */
static size_t ledger_pair_slot(uint64_t pair)
{
	return (size_t)siphash_mem(&pair, sizeof(pair)) & 0xffff;
}

bool ledger_may_hold(const struct ledger *l, uint64_t pair)
{
	return atomic_load_explicit(&l->pairs[ledger_pair_slot(pair)], memory_order_relaxed) != 0;
}

size_t ledger_count(const struct ledger *l)
{
	return atomic_load_explicit(&l->count, memory_order_relaxed);
}

/* The key's bucket: keyed (siphash.h). SHA-256 spreads keys evenly, but it is public: a
 * client can try senders, recipients or octets until 2^k of its keys share their low k bits
 * and one chain. */
static size_t ledger_bucket(const struct ledger *l, const uint8_t key[LEDGER_KEY_LEN])
{
	return (size_t)siphash_mem(key, LEDGER_KEY_LEN) & (l->nbuckets - 1);
}

size_t ledger_longest_chain(struct ledger *l)
{
	size_t most = 0;

	pthread_mutex_lock(&l->lock);
	for (size_t b = 0; b < l->nbuckets; b++) {
		size_t n = 0;

		for (const struct ledger_entry *e = l->buckets[b]; e != NULL; e = e->chain)
			n++;
		if (n > most)
			most = n;
	}
	pthread_mutex_unlock(&l->lock);
	return most;
}

static struct ledger_entry *ledger_find(const struct ledger *l, const uint8_t key[LEDGER_KEY_LEN])
{
	for (struct ledger_entry *e = l->buckets[ledger_bucket(l, key)]; e != NULL; e = e->chain)
		if (memcmp(e->key, key, LEDGER_KEY_LEN) == 0)
			return e;
	return NULL;
}

/* Takes the oldest entry out and frees it. Under the lock, the ledger not empty. */
static void ledger_drop_oldest(struct ledger *l)
{
	struct ledger_entry *e = l->oldest, **pp = &l->buckets[ledger_bucket(l, e->key)];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	atomic_fetch_sub_explicit(&l->pairs[ledger_pair_slot(e->pair)], 1, memory_order_relaxed);
	l->oldest = e->newer;
	if (l->oldest)
		l->oldest->older = NULL;
	else
		l->newest = NULL;
	free(e);
	atomic_fetch_sub_explicit(&l->count, 1, memory_order_relaxed);
}

/* Drops the expired entries at the old end (a ttl changed by a reload may leave a younger
 * expired one behind an older live one: ledger_has checks each one's own expiry). */
static void ledger_purge(struct ledger *l, uint64_t now)
{
	while (l->oldest != NULL && l->oldest->expires <= now)
		ledger_drop_oldest(l);
}

/* Doubles the buckets when the entries outnumber them. Under the lock. */
static void ledger_grow(struct ledger *l)
{
	size_t n = l->nbuckets * 2;
	struct ledger_entry **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;		/* longer chains, still correct */
	free(l->buckets);
	l->buckets = b;
	l->nbuckets = n;
	for (struct ledger_entry *e = l->oldest; e != NULL; e = e->newer) {
		size_t i = ledger_bucket(l, e->key);

		e->chain = b[i];
		b[i] = e;
	}
}

bool ledger_has(struct ledger *l, const uint8_t key[LEDGER_KEY_LEN], uint64_t now)
{
	bool hit;

	if (ledger_count(l) == 0)
		return false;
	pthread_mutex_lock(&l->lock);
	ledger_purge(l, now);
	const struct ledger_entry *e = ledger_find(l, key);
	hit = e != NULL && e->expires > now;
	pthread_mutex_unlock(&l->lock);
	return hit;
}

size_t ledger_add(struct ledger *l, const uint8_t key[LEDGER_KEY_LEN], uint64_t pair, uint64_t now,
    uint64_t ttl, size_t max_entries)
{
	size_t evicted = 0;

	if (max_entries == 0)
		max_entries = 1;
	pthread_mutex_lock(&l->lock);
	ledger_purge(l, now);
	struct ledger_entry *e = ledger_find(l, key);
	if (e != NULL && e->expires > now) {
		pthread_mutex_unlock(&l->lock);
		return 0;
	}
	if (e != NULL && e != l->newest) {
		/* expired, still held behind a live older one (a ttl shortened by a reload lets a
		 * younger one expire first): it moves to the new end, as a new entry would */
		if (e->older)
			e->older->newer = e->newer;
		else
			l->oldest = e->newer;
		e->newer->older = e->older;
		e->older = l->newest;
		e->newer = NULL;
		l->newest->newer = e;
		l->newest = e;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			abort();
		memcpy(e->key, key, LEDGER_KEY_LEN);
		e->pair = pair;
		atomic_fetch_add_explicit(&l->pairs[ledger_pair_slot(pair)], 1, memory_order_relaxed);
		e->older = l->newest;
		if (l->newest)
			l->newest->newer = e;
		else
			l->oldest = e;
		l->newest = e;
		size_t i = ledger_bucket(l, key);
		e->chain = l->buckets[i];
		l->buckets[i] = e;
		atomic_fetch_add_explicit(&l->count, 1, memory_order_relaxed);
	}
	e->expires = now + ttl;
	while (ledger_count(l) > max_entries) {
		ledger_drop_oldest(l);
		evicted++;
	}
	if (ledger_count(l) > l->nbuckets)
		ledger_grow(l);
	pthread_mutex_unlock(&l->lock);
	return evicted;
}
