/* test_local_table.c — the in-process key table (store/local_table.c): records created only
 * when asked, idle records as good as absent and dropped, pins keeping a record alive, the
 * size bound with eviction of the idlest, threads sharing one table, and keys made to collide
 * under a public hash spread over the shards and buckets anyway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "store/local_table.h"
#include "collide_fixture.h"

#define S 1000000000ull

struct set_arg { uint64_t expires, pins, val; bool saw_exists; struct local_rec seen; };

/* Records what it saw, then sets the record to the wanted state; returns 7. */
static int set_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct set_arg *a = arg;

	a->saw_exists = exists;
	a->seen = *rec;
	rec->expires_ns = a->expires;
	rec->pins = a->pins;
	rec->val = a->val;
	return 7;
}

static void test_update(void **state)
{
	struct local_table *t = local_table_new(100);
	struct set_arg a = { 10 * S, 0, 42 };

	(void)state;
	/* without create an absent key is not made and fn not called */
	assert_int_equal(local_table_update(t, "k", S, false, set_fn, &a), -1);
	assert_int_equal(local_table_size(t), 0);
	/* with create: a zeroed record, exists false; fn's value comes back */
	assert_int_equal(local_table_update(t, "k", S, true, set_fn, &a), 7);
	assert_false(a.saw_exists);
	assert_int_equal(a.seen.val, 0);
	assert_int_equal(local_table_size(t), 1);
	/* it is there until its expiry */
	a.val = 43;
	assert_int_equal(local_table_update(t, "k", 5 * S, false, set_fn, &a), 7);
	assert_true(a.saw_exists);
	assert_int_equal(a.seen.val, 42);
	/* past its expiry it is as good as absent: not seen without create, zeroed with */
	assert_int_equal(local_table_update(t, "k", 11 * S, false, set_fn, &a), -1);
	a.val = 44;
	a.expires = 20 * S;
	assert_int_equal(local_table_update(t, "k", 11 * S, true, set_fn, &a), 7);
	assert_false(a.saw_exists);
	assert_int_equal(a.seen.val, 0);
	/* fn leaving the record idle drops it at once */
	a.expires = 0;
	assert_int_equal(local_table_update(t, "k", 12 * S, false, set_fn, &a), 7);
	assert_int_equal(local_table_size(t), 0);
	local_table_free(t);
}

static void test_pins(void **state)
{
	struct local_table *t = local_table_new(100);
	struct set_arg a = { 0, 1, 1 };

	(void)state;
	/* a pinned record with no expiry lives until unpinned */
	assert_int_equal(local_table_update(t, "p", S, true, set_fn, &a), 7);
	assert_int_equal(local_table_expire(t, 1000 * S), 0);
	assert_int_equal(local_table_update(t, "p", 1000 * S, false, set_fn, &a), 7);
	assert_true(a.saw_exists);
	a.pins = 0;
	assert_int_equal(local_table_update(t, "p", 1000 * S, false, set_fn, &a), 7);
	assert_int_equal(local_table_size(t), 0);
	local_table_free(t);
}

static void test_expire(void **state)
{
	struct local_table *t = local_table_new(1000);
	char key[16];

	(void)state;
	for (int i = 0; i < 100; i++) {
		struct set_arg a = { (uint64_t)(i + 1) * S, 0, 0 };

		snprintf(key, sizeof(key), "e%d", i);
		assert_int_equal(local_table_update(t, key, 0, true, set_fn, &a), 7);
	}
	assert_int_equal(local_table_size(t), 100);
	assert_int_equal(local_table_expire(t, 50 * S), 50);   /* expiry <= now is idle */
	assert_int_equal(local_table_size(t), 50);
	assert_int_equal(local_table_expire(t, 1000 * S), 50);
	assert_int_equal(local_table_size(t), 0);
	local_table_free(t);
}

static bool count_fn(const char *key, const struct local_rec *rec, void *arg)
{
	size_t *n = arg;

	(void)key;
	(void)rec;
	return ++*n < 3;     /* stop after three */
}

static void test_foreach(void **state)
{
	/* live records only, and the walk stops when fn says so */
	struct local_table *t = local_table_new(100);
	struct set_arg live = { 10 * S, 0, 1 }, gone = { 2 * S, 0, 2 };
	size_t n = 0;

	(void)state;
	local_table_update(t, "a", S, true, set_fn, &live);
	local_table_update(t, "b", S, true, set_fn, &live);
	local_table_update(t, "c", S, true, set_fn, &gone);
	local_table_foreach(t, 5 * S, count_fn, &n);
	assert_int_equal(n, 2);
	local_table_update(t, "d", S, true, set_fn, &live);
	local_table_update(t, "e", S, true, set_fn, &live);
	n = 0;
	local_table_foreach(t, 5 * S, count_fn, &n);
	assert_int_equal(n, 3);
	local_table_free(t);
}

static void test_bounded(void **state)
{
	/* 10000 live keys into a 160-key table: it never grows past its bound; a pinned key
	 * is evicted last. */
	struct local_table *t = local_table_new(160);
	struct set_arg pin = { 0, 1, 99 };
	char key[32];

	(void)state;
	assert_int_equal(local_table_update(t, "pinned", S, true, set_fn, &pin), 7);
	for (int i = 0; i < 10000; i++) {
		struct set_arg a = { 3600 * S + (uint64_t)i, 0, 0 };

		snprintf(key, sizeof(key), "key-%d", i);
		assert_int_equal(local_table_update(t, key, S + (uint64_t)i, true, set_fn, &a), 7);
	}
	assert_true(local_table_size(t) <= 160);
	assert_true(local_table_size(t) >= 100);
	/* every key that went to make room is counted (the live ones: none expired) */
	assert_int_equal(local_table_evicted(t), 10001 - local_table_size(t));
	pin.pins = 1;
	assert_int_equal(local_table_update(t, "pinned", 2 * S, false, set_fn, &pin), 7);
	assert_int_equal(pin.seen.val, 99);
	local_table_free(t);
}

/* The bound is the table's: a 64-key table takes 64 keys without evicting one (its 16 shards
 * once held max_keys/16 each, so about 20 keys already evicted: greylist.max_keys 64 in
 * test_outside_adversary lost a waiting sender's first attempt to 21 triplets, now and then,
 * as the keyed hash fell), and the 65th evicts exactly one. */
static void test_bound_is_the_tables(void **state)
{
	struct local_table *t = local_table_new(64);
	char key[32];

	(void)state;
	for (int i = 0; i < 64; i++) {
		struct set_arg a = { 3600 * S, 0, (uint64_t)i };

		snprintf(key, sizeof(key), "triplet-%d", i);
		assert_int_equal(local_table_update(t, key, S, true, set_fn, &a), 7);
	}
	assert_int_equal(local_table_size(t), 64);
	assert_int_equal(local_table_evicted(t), 0);
	for (int i = 64; i < 200; i++) {
		struct set_arg a = { 3600 * S + (uint64_t)i, 0, (uint64_t)i };

		snprintf(key, sizeof(key), "triplet-%d", i);
		assert_int_equal(local_table_update(t, key, S, true, set_fn, &a), 7);
		assert_int_equal(local_table_size(t), 64);
		assert_int_equal(local_table_evicted(t), (uint64_t)(i - 63));
	}
	local_table_free(t);
}

/* The bound under contention: 4 threads adding distinct live keys to a 64-key table, each add
 * checks the table's count from inside the update (after its insert, under its shard lock) and
 * after it. On the code before the count went to 65-78: each add checked count < max_keys and
 * inserted later, so threads adding at the same moment all went in. */
#define BOUND_THREADS 4
#define BOUND_ADDS 20000

struct bound_th { struct local_table *t; int id; size_t most; int failed; };

static int bound_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct bound_th *h = arg;
	size_t n = local_table_count(h->t);

	(void)exists;
	(void)now_ns;
	if (n > h->most)
		h->most = n;
	rec->expires_ns = 3600 * S;
	return 7;
}

static void *bound_main(void *arg)
{
	struct bound_th *h = arg;
	char key[48];

	for (int i = 0; i < BOUND_ADDS; i++) {
		size_t n;

		snprintf(key, sizeof(key), "t%d-key-%d", h->id, i);
		if (local_table_update(h->t, key, S, true, bound_fn, h) != 7)
			h->failed++;
		n = local_table_count(h->t);
		if (n > h->most)
			h->most = n;
	}
	return NULL;
}

static void test_bound_exact_under_threads(void **state)
{
	struct local_table *t = local_table_new(64);
	pthread_t tid[BOUND_THREADS];
	struct bound_th h[BOUND_THREADS];

	(void)state;
	assert_non_null(t);
	for (int i = 0; i < BOUND_THREADS; i++) {
		h[i] = (struct bound_th){ t, i, 0, 0 };
		assert_int_equal(pthread_create(&tid[i], NULL, bound_main, &h[i]), 0);
	}
	for (int i = 0; i < BOUND_THREADS; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	for (int i = 0; i < BOUND_THREADS; i++) {
		if (h[i].most > 64)
			fail_msg("thread %d saw %zu keys in a table of 64", i, h[i].most);
		assert_int_equal(h[i].failed, 0);
	}
	assert_int_equal(local_table_size(t), 64);
	assert_int_equal(local_table_count(t), 64);
	local_table_free(t);
}

/* Writes into key a name of the form prefix-N that local_table_shard_of puts in shard
 * (in_shard) or out of it, N counting up from *n. */
static void key_in(char *key, size_t len, const char *prefix, int *n, unsigned shard, bool in_shard)
{
	do
		snprintf(key, len, "%s-%d", prefix, (*n)++);
	while ((local_table_shard_of(key) == shard) != in_shard);
}

/* A full table whose adding shard holds only live records, the other shards half expired
 * ones, not yet swept (a shard sweeps itself every 5 s at most): the add drops the expired
 * records and no live one. On the code before it evicted a live record of its own shard (a
 * waiting greylist triplet, a rate bucket) while 28 expired ones sat in the others. */
static void test_idle_elsewhere_before_live(void **state)
{
	struct local_table *t = local_table_new(64);
	char live[36][32], key[32];
	int n = 0, nlive = 0;
	unsigned a = local_table_shard_of("adding");

	(void)state;
	for (int i = 0; i < 64; i++) {
		/* 8 live keys in the adding shard, then the others alternately expiring at 2 s */
		bool in_a = i < 8, expires = !in_a && i % 2 == 0;
		struct set_arg r = { expires ? 2 * S : 3600 * S, 0, (uint64_t)i };

		key_in(key, sizeof(key), "rec", &n, a, in_a);
		assert_int_equal(local_table_update(t, key, S, true, set_fn, &r), 7);
		if (!expires)
			snprintf(live[nlive++], sizeof(live[0]), "%s", key);
	}
	assert_int_equal(nlive, 36);
	assert_int_equal(local_table_size(t), 64);
	struct set_arg add = { 3600 * S, 0, 1000 };

	assert_int_equal(local_table_update(t, "adding", 3 * S, true, set_fn, &add), 7);
	assert_int_equal(local_table_evicted(t), 0);
	for (int i = 0; i < nlive; i++) {
		struct set_arg keep = { 3600 * S, 0, 0 };

		assert_int_equal(local_table_update(t, live[i], 3 * S, false, set_fn, &keep), 7);
		assert_true(keep.saw_exists);
	}
	assert_int_equal(local_table_size(t), 37);
	local_table_free(t);
}

/* A pinned record (a held concurrency slot) alone in its shard, the table full of unpinned
 * live ones elsewhere: an add to its shard evicts an unpinned record, not the held slot (the
 * code before gave it up: it evicted in the adding shard whatever it held). With nothing but
 * pinned records the bound still holds: one of them goes. */
static void test_pinned_kept_while_unpinned_exist(void **state)
{
	struct local_table *t = local_table_new(64), *all = local_table_new(16);
	struct set_arg pin = { 0, 1, 99 };
	char key[32];
	int n = 0;
	unsigned a = local_table_shard_of("adding");

	(void)state;
	key_in(key, sizeof(key), "held", &n, a, true);
	assert_int_equal(local_table_update(t, key, S, true, set_fn, &pin), 7);
	for (int i = 1; i < 64; i++) {
		char other[32];
		struct set_arg r = { 3600 * S + (uint64_t)i, 0, (uint64_t)i };

		key_in(other, sizeof(other), "rec", &n, a, false);
		assert_int_equal(local_table_update(t, other, S, true, set_fn, &r), 7);
	}
	struct set_arg add = { 3600 * S, 0, 1000 };

	assert_int_equal(local_table_update(t, "adding", 2 * S, true, set_fn, &add), 7);
	assert_int_equal(local_table_size(t), 64);
	assert_int_equal(local_table_evicted(t), 1);
	assert_int_equal(local_table_update(t, key, 2 * S, false, set_fn, &pin), 7);
	assert_true(pin.saw_exists);
	assert_int_equal(pin.seen.val, 99);
	local_table_free(t);

	for (int i = 0; i < 17; i++) {
		struct set_arg p = { 0, 1, (uint64_t)i };

		snprintf(key, sizeof(key), "slot-%d", i);
		assert_int_equal(local_table_update(all, key, S, true, set_fn, &p), 7);
	}
	assert_int_equal(local_table_size(all), 16);
	assert_int_equal(local_table_evicted(all), 1);
	local_table_free(all);
}

/* 400 keys (a rate limit's per-address keys: the client picks its addresses from a /16, or
 * its senders) that shared a shard and a bucket under the table's old public hash (its low
 * 4 bits the shard, bits 8.. the bucket: 8,192 tries a key): no chain is long now. */
static void test_forged_keys(void **state)
{
	enum { N = 400 };
	static char keys[N][COLLIDE_NAME_MAX];
	struct local_table *t = local_table_new(16 * 512);     /* 512 buckets a shard */

	(void)state;
	assert_int_equal(collide_find(keys, N, "mxgate:rl:ip:198.18.%u", fnv1a64_str,
	    15 | (511u << 8)), N);
	for (int i = 0; i < N; i++) {
		struct set_arg a = { 3600 * S, 0, (uint64_t)i };

		assert_int_equal(local_table_update(t, keys[i], S, true, set_fn, &a), 7);
	}
	assert_int_equal(local_table_size(t), N);
	assert_in_range(local_table_longest_chain(t), 1, 16);
	local_table_free(t);
}

struct th { struct local_table *t; int id; };

static int incr_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	rec->pins = 1;        /* keep it */
	rec->val++;
	return 0;
}

static void *th_main(void *arg)
{
	struct th *h = arg;

	for (int i = 0; i < 20000; i++)
		local_table_update(h->t, i % 2 ? "shared" : (h->id ? "b" : "a"), S, true, incr_fn, NULL);
	return NULL;
}

static int read_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	*(uint64_t *)arg = rec->val;
	return 0;
}

static void test_threads(void **state)
{
	struct local_table *t = local_table_shared(1000);
	pthread_t tid[2];
	struct th h[2] = { { t, 0 }, { t, 1 } };
	uint64_t v = 0;

	(void)state;
	assert_non_null(t);
	assert_ptr_equal(local_table_shared(5), t);     /* one table per process */
	for (int i = 0; i < 2; i++)
		pthread_create(&tid[i], NULL, th_main, &h[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	assert_int_equal(local_table_update(t, "shared", S, false, read_fn, &v), 0);
	assert_int_equal(v, 20000);                     /* no lost update under the lock */
	assert_int_equal(local_table_update(t, "a", S, false, read_fn, &v), 0);
	assert_int_equal(v, 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_pins),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_bound_is_the_tables),
		cmocka_unit_test(test_bound_exact_under_threads),
		cmocka_unit_test(test_idle_elsewhere_before_live),
		cmocka_unit_test(test_pinned_kept_while_unpinned_exist),
		cmocka_unit_test(test_foreach),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_forged_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
