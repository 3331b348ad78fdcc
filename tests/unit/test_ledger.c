/* test_ledger.c — the delivery ledger (ledger.c): a key held until its expiry (the clock is
 * the caller's: injected here, no sleeping), the oldest evicted past max_entries, a key added
 * again keeping its first expiry, keys that differ in one octet of the message, sender or
 * recipient, the table growing past its first buckets, and the pair table that spares a message the
 * digest when none of its (sender, recipient) pairs is held; keys and pairs made to collide
 * under a public hash spread over the buckets and the pair table anyway. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "collide_fixture.h"
#include "ledger.h"

#define TTL 1000u
#define PAIR 7u   /* the pair's hash where a case is not about it */

/* The key of (msg, from, rcpt); returns the pair's hash (ledger_pair). */
static uint64_t key_of(uint8_t key[LEDGER_KEY_LEN], const char *msg, const char *from, const char *rcpt)
{
	uint8_t d[LEDGER_KEY_LEN];

	ledger_digest(d, msg, strlen(msg));
	ledger_key(key, d, from, rcpt);
	return ledger_pair(from, rcpt);
}

static void test_expiry(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];

	key_of(k, "Subject: a\r\n\r\nbody\r\n", "s@example.org", "r1@example.test");
	assert_false(ledger_has(l, k, 0));
	assert_int_equal(ledger_add(l, k, PAIR, 100, TTL, 10), 0);
	assert_int_equal(ledger_count(l), 1);
	assert_true(ledger_has(l, k, 100));
	assert_true(ledger_has(l, k, 100 + TTL - 1));   /* the last millisecond */
	assert_false(ledger_has(l, k, 100 + TTL));      /* expired: gone */
	assert_int_equal(ledger_count(l), 0);
	ledger_free(l);
}

static void test_readd_keeps_first_expiry(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];

	key_of(k, "m\r\n", "s@example.org", "r1@example.test");
	ledger_add(l, k, PAIR, 0, TTL, 10);
	ledger_add(l, k, PAIR, 500, TTL, 10);                 /* a retry deferred again */
	assert_int_equal(ledger_count(l), 1);
	assert_false(ledger_has(l, k, TTL));            /* not extended to 1500 */
	/* once expired, an add holds it anew */
	ledger_add(l, k, PAIR, 2000, TTL, 10);
	assert_true(ledger_has(l, k, 2000 + TTL - 1));
	ledger_free(l);
}

/* The pair table: nothing held for a pair, no digest needed; held while its entry is. */
static void test_pairs(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];
	uint64_t p = key_of(k, "m\r\n", "s@example.org", "r1@example.test");

	assert_false(ledger_may_hold(l, p));
	ledger_add(l, k, p, 0, TTL, 10);
	assert_true(ledger_may_hold(l, p));
	/* other recipients: not held (one may share r1's slot, by a 2^-16 chance each) */
	int held = 0;
	for (int i = 2; i < 10; i++) {
		char r[32];

		snprintf(r, sizeof(r), "r%d@example.test", i);
		held += ledger_may_hold(l, ledger_pair("s@example.org", r));
	}
	assert_in_range(held, 0, 1);
	/* the pair is sender and recipient apart */
	assert_true(ledger_pair("ab", "c") != ledger_pair("a", "bc"));
	assert_true(ledger_pair(NULL, "r") == ledger_pair("", "r"));
	assert_false(ledger_has(l, k, TTL));   /* expired and purged */
	assert_false(ledger_may_hold(l, p));
	ledger_add(l, k, p, 0, TTL, 10);
	ledger_clear(l);
	assert_false(ledger_may_hold(l, p));
	ledger_free(l);
}

/* The pair hash of s@example.org and name (the slot it had was its low 16 bits). */
static uint64_t pair_of(const char *name)
{
	return ledger_pair("s@example.org", name);
}

/* Eight recipients whose pairs share the low 16 bits of a held one's (65,536 tries each):
 * their slot in the pair table is keyed, so they do not all pass for held (each one would
 * cost its message a digest). */
static void test_pairs_forged(void **state)
{
	enum { N = 9 };
	static char names[N][COLLIDE_NAME_MAX];
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];
	int held = 0;

	(void)state;
	assert_int_equal(collide_find(names, N, "r%u@example.test", pair_of, 0xffff), N);
	uint64_t p = key_of(k, "m\r\n", "s@example.org", names[0]);
	ledger_add(l, k, p, 0, TTL, 10);
	assert_true(ledger_may_hold(l, p));
	for (int i = 1; i < N; i++)
		held += ledger_may_hold(l, pair_of(names[i]));
	assert_in_range(held, 0, 1);
	ledger_free(l);
}

/* 2,000 keys whose first octets agree in their low 16 bits (a client tries senders,
 * recipients or message octets until SHA-256 gives it such keys: 65,536 tries a key): the
 * buckets are keyed, no chain is long, every key is found. */
static void test_buckets_forged(void **state)
{
	enum { N = 2000 };
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];
	uint32_t x = 12345;

	(void)state;
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < LEDGER_KEY_LEN; j++) {
			x = x * 1103515245u + 12345u;
			k[j] = (uint8_t)(x >> 16);
		}
		k[0] = k[1] = 0x5a;
		assert_int_equal(ledger_add(l, k, PAIR, 0, TTL, 100000), 0);
	}
	assert_int_equal(ledger_count(l), N);
	assert_in_range(ledger_longest_chain(l), 1, 16);
	assert_true(ledger_has(l, k, 1));
	ledger_free(l);
}

static void test_evict_oldest(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t k[5][LEDGER_KEY_LEN];
	char rcpt[32];

	for (int i = 0; i < 5; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%d@example.test", i);
		key_of(k[i], "m\r\n", "s@example.org", rcpt);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(ledger_add(l, k[i], PAIR, (uint64_t)i, TTL, 3), 0);
	assert_int_equal(ledger_add(l, k[3], PAIR, 3, TTL, 3), 1);   /* full: the oldest goes */
	assert_false(ledger_has(l, k[0], 3));
	assert_true(ledger_has(l, k[1], 3));
	assert_true(ledger_has(l, k[3], 3));
	/* a smaller bound (a reload) evicts down to it at the next add */
	assert_int_equal(ledger_add(l, k[4], PAIR, 4, TTL, 1), 3);
	assert_int_equal(ledger_count(l), 1);
	assert_true(ledger_has(l, k[4], 4));
	ledger_free(l);
}

/* A ttl shortened by a reload: a younger entry expires before an older one and, added
 * again, moves to the new end (the next eviction takes the older ones first). */
static void test_ttl_shortened(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t a[LEDGER_KEY_LEN], b[LEDGER_KEY_LEN], c[LEDGER_KEY_LEN], d[LEDGER_KEY_LEN];

	key_of(a, "m\r\n", "s@example.org", "a@example.test");
	key_of(b, "m\r\n", "s@example.org", "b@example.test");
	key_of(c, "m\r\n", "s@example.org", "c@example.test");
	key_of(d, "m\r\n", "s@example.org", "d@example.test");
	ledger_add(l, a, PAIR, 0, TTL, 10);
	ledger_add(l, b, PAIR, 1, 10, 10);        /* the shorter ttl */
	ledger_add(l, d, PAIR, 2, TTL, 10);
	assert_false(ledger_has(l, b, 20));      /* expired behind a (live) */
	assert_true(ledger_has(l, a, 20));
	assert_int_equal(ledger_count(l), 3);    /* not purged yet: a is older and live */
	assert_int_equal(ledger_add(l, b, PAIR, 20, TTL, 10), 0);
	assert_int_equal(ledger_count(l), 3);    /* the same entry, renewed */
	assert_true(ledger_has(l, b, 21));
	/* order now a, d, b: two evicted for c at max 2 are a and d */
	assert_int_equal(ledger_add(l, c, PAIR, 21, TTL, 2), 2);
	assert_false(ledger_has(l, a, 21));
	assert_false(ledger_has(l, d, 21));
	assert_true(ledger_has(l, b, 21));
	assert_true(ledger_has(l, c, 21));
	ledger_free(l);
}

struct key_row {
	const char *label;
	const char *msg, *from, *rcpt;
	bool same;   /* the same key as the base row's */
};

static const struct key_row key_rows[] = {
	{ "the same message, sender and recipient", "Subject: x\r\n\r\nHello.\r\n", "s@example.org", "r@example.test", true },
	{ "one octet of the body changed", "Subject: x\r\n\r\nHellp.\r\n", "s@example.org", "r@example.test", false },
	{ "one more octet", "Subject: x\r\n\r\nHello.\r\n\r\n", "s@example.org", "r@example.test", false },
	{ "another sender", "Subject: x\r\n\r\nHello.\r\n", "t@example.org", "r@example.test", false },
	{ "the null sender", "Subject: x\r\n\r\nHello.\r\n", "", "r@example.test", false },
	{ "another recipient", "Subject: x\r\n\r\nHello.\r\n", "s@example.org", "q@example.test", false },
	{ "sender and recipient octets moved across", "Subject: x\r\n\r\nHello.\r\n", "s@example.orgr", "@example.test", false },
};

static void test_keys(void **state)
{
	(void)state;
	uint8_t base[LEDGER_KEY_LEN], k[LEDGER_KEY_LEN];

	key_of(base, key_rows[0].msg, key_rows[0].from, key_rows[0].rcpt);
	for (size_t i = 0; i < sizeof(key_rows) / sizeof(key_rows[0]); i++) {
		const struct key_row *r = &key_rows[i];

		key_of(k, r->msg, r->from, r->rcpt);
		if ((memcmp(k, base, sizeof(k)) == 0) != r->same)
			fail_msg("row \"%s\": keys %s", r->label, r->same ? "differ" : "equal");
	}
	/* NULL sender is the null sender */
	uint8_t d[LEDGER_KEY_LEN], a[LEDGER_KEY_LEN], b[LEDGER_KEY_LEN];
	ledger_digest(d, "m\r\n", 3);
	ledger_key(a, d, NULL, "r@example.test");
	ledger_key(b, d, "", "r@example.test");
	assert_memory_equal(a, b, LEDGER_KEY_LEN);
}

/* The pair's mark in a shared store: its own fixed form, one per pair. */
static void test_pair_key(void **state)
{
	uint8_t a[LEDGER_KEY_LEN], b[LEDGER_KEY_LEN], d[LEDGER_KEY_LEN] = { 0 }, k[LEDGER_KEY_LEN];
	uint64_t p = ledger_pair("s@x.test", "r@y.test");

	(void)state;
	ledger_pair_key(a, p);
	assert_memory_equal(a, "PAIR", 4);
	for (int i = 4; i < LEDGER_KEY_LEN - 8; i++)
		assert_int_equal(a[i], 0);
	assert_int_equal(a[LEDGER_KEY_LEN - 1], (uint8_t)p);
	assert_int_equal(a[LEDGER_KEY_LEN - 8], (uint8_t)(p >> 56));
	ledger_pair_key(b, ledger_pair("s@x.test", "q@y.test"));
	assert_memory_not_equal(a, b, LEDGER_KEY_LEN);
	ledger_key(k, d, "s@x.test", "r@y.test");     /* a message's key is not the pair's mark */
	assert_memory_not_equal(a, k, LEDGER_KEY_LEN);
}

static void test_many(void **state)
{
	(void)state;
	struct ledger *l = ledger_new();
	uint8_t k[LEDGER_KEY_LEN];
	char rcpt[32];

	/* past the first buckets (they grow), every key found, and one never added not */
	for (int i = 0; i < 5000; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%d@example.test", i);
		key_of(k, "m\r\n", "s@example.org", rcpt);
		assert_int_equal(ledger_add(l, k, PAIR, 0, TTL, 100000), 0);
	}
	assert_int_equal(ledger_count(l), 5000);
	for (int i = 0; i < 5000; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%d@example.test", i);
		key_of(k, "m\r\n", "s@example.org", rcpt);
		if (!ledger_has(l, k, 1))
			fail_msg("key %d lost", i);
	}
	key_of(k, "m\r\n", "s@example.org", "nobody@example.test");
	assert_false(ledger_has(l, k, 1));
	/* all expire together */
	assert_false(ledger_has(l, k, TTL));
	assert_int_equal(ledger_count(l), 0);
	ledger_add(l, k, PAIR, 0, TTL, 10);
	ledger_clear(l);
	assert_int_equal(ledger_count(l), 0);
	assert_false(ledger_has(l, k, 0));
	ledger_free(l);
	ledger_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_readd_keeps_first_expiry),
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_pairs_forged),
		cmocka_unit_test(test_buckets_forged),
		cmocka_unit_test(test_evict_oldest),
		cmocka_unit_test(test_ttl_shortened),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_pair_key),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
