/* test_conncount.c — proxy/conncount.c: per-IP connection limits, IPv4 and v4-mapped IPv6
 * as one client, release, many distinct clients, a crowded probe window, threads, and the
 * process total.
 *
 * The table is process-wide: every test releases what it acquired, and checks that it did. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "proxy/conncount.h"
#include "addr_fixture.h"

/* "1.2.3.4" or "2001:db8::1" (any port) into a sockaddr of the right family. */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss, const char *ip, int port)
{
	*ss = sockaddr_of_port(ip, (uint16_t)port);
	return (const struct sockaddr *)ss;
}

static bool acq(const char *ip, long per_ip)
{
	struct sockaddr_storage ss;
	return conncount_acquire(sa_of(&ss, ip, 40000), per_ip, 128);
}

static void rel(const char *ip)
{
	struct sockaddr_storage ss;
	conncount_release(sa_of(&ss, ip, 40001), 128);
}

/* Asserts the client holds no count: with limit 1 one acquire passes, the next is refused. */
static void assert_empty(const char *ip)
{
	if (!acq(ip, 1))
		fail_msg("%s still counted", ip);
	if (acq(ip, 1)) {
		rel(ip);
		rel(ip);
		fail_msg("%s: limit 1 not enforced", ip);
	}
	rel(ip);
}

/* ------------------------------------------------------------ rows: one client's sequence */

enum step_op { ACQ = 0, REL, END };
struct step { enum step_op op; const char *ip; long per_ip; bool want; };
struct crow { const char *label; struct step s[12]; const char *clean[3]; };

static const struct crow crows[] = {
	{ "limit 2: third refused, a release makes room",
	  { { ACQ, "192.0.2.1", 2, true }, { ACQ, "192.0.2.1", 2, true }, { ACQ, "192.0.2.1", 2, false },
	    { ACQ, "192.0.2.1", 2, false }, { REL, "192.0.2.1" }, { ACQ, "192.0.2.1", 2, true },
	    { ACQ, "192.0.2.1", 2, false }, { REL, "192.0.2.1" }, { REL, "192.0.2.1" }, { END } },
	  { "192.0.2.1" } },
	{ "limit 1",
	  { { ACQ, "192.0.2.2", 1, true }, { ACQ, "192.0.2.2", 1, false }, { REL, "192.0.2.2" },
	    { ACQ, "192.0.2.2", 1, true }, { REL, "192.0.2.2" }, { END } },
	  { "192.0.2.2" } },
	{ "limit 0 is unlimited",
	  { { ACQ, "192.0.2.3", 0, true }, { ACQ, "192.0.2.3", 0, true }, { ACQ, "192.0.2.3", 0, true },
	    { REL, "192.0.2.3" }, { REL, "192.0.2.3" }, { REL, "192.0.2.3" }, { END } },
	  { "192.0.2.3" } },
	{ "a negative limit is unlimited",
	  { { ACQ, "192.0.2.4", -1, true }, { ACQ, "192.0.2.4", -1, true }, { REL, "192.0.2.4" },
	    { REL, "192.0.2.4" }, { END } },
	  { "192.0.2.4" } },
	{ "connections counted without limit still count against a later limit",
	  { { ACQ, "192.0.2.5", 0, true }, { ACQ, "192.0.2.5", 0, true }, { ACQ, "192.0.2.5", 2, false },
	    { REL, "192.0.2.5" }, { ACQ, "192.0.2.5", 2, true }, { REL, "192.0.2.5" }, { REL, "192.0.2.5" }, { END } },
	  { "192.0.2.5" } },
	{ "IPv4 and v4-mapped IPv6 are the same client",
	  { { ACQ, "198.51.100.7", 2, true }, { ACQ, "::ffff:198.51.100.7", 2, true },
	    { ACQ, "198.51.100.7", 2, false }, { ACQ, "::ffff:198.51.100.7", 2, false },
	    { REL, "::ffff:198.51.100.7" }, { ACQ, "198.51.100.7", 2, true },
	    { REL, "198.51.100.7" }, { REL, "198.51.100.7" }, { END } },
	  { "198.51.100.7", "::ffff:198.51.100.7" } },
	/* session 24: an IPv6 address that carries an IPv4 client (netaddr_client_from_sockaddr)
	 * is that client, as v4-mapped is; until then each form was another client */
	{ "IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) forms are the IPv4 client",
	  { { ACQ, "198.51.100.8", 3, true }, { ACQ, "::198.51.100.8", 3, true },
	    { ACQ, "64:ff9b::198.51.100.8", 3, true }, { ACQ, "198.51.100.8", 3, false },
	    { ACQ, "64:ff9b::198.51.100.8", 3, false }, { REL, "198.51.100.8" }, { REL, "::198.51.100.8" },
	    { REL, "64:ff9b::198.51.100.8" }, { ACQ, "64:ff9b:1::198.51.100.8", 1, true },
	    { ACQ, "64:ff9b:1::198.51.100.8", 1, false }, { REL, "64:ff9b:1::198.51.100.8" }, { END } },
	  { "198.51.100.8", "::198.51.100.8", "64:ff9b::198.51.100.8" } },
	{ "neighbouring addresses are other clients",
	  { { ACQ, "203.0.113.1", 1, true }, { ACQ, "203.0.113.2", 1, true }, { ACQ, "2001:db8::1", 1, true },
	    { ACQ, "2001:db8::2", 1, true }, { REL, "203.0.113.1" }, { REL, "203.0.113.2" },
	    { REL, "2001:db8::1" }, { REL, "2001:db8::2" }, { END } },
	  { "203.0.113.1", "2001:db8::1" } },
	{ "IPv6 limit",
	  { { ACQ, "2001:db8::77", 2, true }, { ACQ, "2001:db8::77", 2, true }, { ACQ, "2001:db8::77", 2, false },
	    { REL, "2001:db8::77" }, { REL, "2001:db8::77" }, { END } },
	  { "2001:db8::77" } },
	{ "releasing more than acquired does not go below zero",
	  { { REL, "192.0.2.9" }, { REL, "192.0.2.9" }, { ACQ, "192.0.2.9", 1, true }, { ACQ, "192.0.2.9", 1, false },
	    { REL, "192.0.2.9" }, { REL, "192.0.2.9" }, { END } },
	  { "192.0.2.9" } },
	{ "releasing a client never seen is a no-op",
	  { { REL, "10.99.99.99" }, { REL, "2001:db8:dead::1" }, { END } },
	  { "10.99.99.99", "2001:db8:dead::1" } },
};

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(crows) / sizeof(crows[0]); i++) {
		const struct crow *r = &crows[i];
		for (size_t k = 0; r->s[k].op != END; k++) {
			const struct step *s = &r->s[k];
			if (s->op == REL) {
				rel(s->ip);
				continue;
			}
			bool got = acq(s->ip, s->per_ip);
			if (got != s->want)
				fail_msg("row \"%s\", step %zu: acquire %s limit %ld = %d, want %d", r->label, k, s->ip,
				    s->per_ip, got, s->want);
		}
		for (size_t k = 0; k < 3 && r->clean[k]; k++)
			assert_empty(r->clean[k]);
	}
}

/* The port is not part of the client. */
static void test_ports_ignored(void **state)
{
	struct sockaddr_storage a, b;

	(void)state;
	assert_true(conncount_acquire(sa_of(&a, "192.0.2.50", 1111), 1, 128));
	assert_false(conncount_acquire(sa_of(&b, "192.0.2.50", 2222), 1, 128));
	conncount_release(sa_of(&b, "192.0.2.50", 3333), 128);
	assert_empty("192.0.2.50");
}

/* A non-IP peer (unix socket listener): counted under one key, never crashes. */
static void test_unix_peer(void **state)
{
	struct sockaddr_un un;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_true(conncount_acquire((struct sockaddr *)&un, 0, 128));
	conncount_release((struct sockaddr *)&un, 128);
}

/* ------------------------------------------------------------ many clients */

static void ip4(char *buf, size_t cap, uint32_t n)
{
	snprintf(buf, cap, "%u.%u.%u.%u", n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255);
}

static void test_many_distinct(void **state)
{
	enum { N = 20000 };
	char ip[64];
	int refused = 0, admitted_twice = 0;

	(void)state;
	for (uint32_t i = 0; i < N; i++) {
		if (i % 2)
			snprintf(ip, sizeof(ip), "2001:db8:%x::%x", i >> 8, i);
		else
			ip4(ip, sizeof(ip), i * 2654435761u);
		if (!acq(ip, 1))
			refused++;
	}
	/* every client has its own count: the second connection of each is refused */
	for (uint32_t i = 0; i < N; i++) {
		if (i % 2)
			snprintf(ip, sizeof(ip), "2001:db8:%x::%x", i >> 8, i);
		else
			ip4(ip, sizeof(ip), i * 2654435761u);
		if (acq(ip, 1)) {
			admitted_twice++;
			rel(ip);
		}
	}
	for (uint32_t i = 0; i < N; i++) {
		if (i % 2)
			snprintf(ip, sizeof(ip), "2001:db8:%x::%x", i >> 8, i);
		else
			ip4(ip, sizeof(ip), i * 2654435761u);
		rel(ip);
	}
	assert_int_equal(refused, 0);
	assert_int_equal(admitted_twice, 0);
	/* all released: a sample is empty again */
	for (uint32_t i = 0; i < N; i += 997) {
		ip4(ip, sizeof(ip), i * 2654435761u);
		assert_empty(ip);
	}
}

/* ------------------------------------------------------------ a crowded probe window */

/* A client's home slot, through the table's own (keyed) hash. */
static uint32_t home_slot(uint32_t v4)
{
	struct sockaddr_storage ss;
	char ip[20];

	snprintf(ip, sizeof(ip), "%u.%u.%u.%u", v4 >> 24, (v4 >> 16) & 255, (v4 >> 8) & 255, v4 & 255);
	return conncount_home(sa_of(&ss, ip, 1), 128);
}

/* The unkeyed FNV-1a home slot the table used before (what anyone could compute). */
static uint32_t fnv_home(uint32_t v4)
{
	uint8_t key[16] = { 0 };
	uint32_t h = 2166136261u;

	key[10] = key[11] = 0xff;
	key[12] = (uint8_t)(v4 >> 24);
	key[13] = (uint8_t)(v4 >> 16);
	key[14] = (uint8_t)(v4 >> 8);
	key[15] = (uint8_t)v4;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h & 65535;
}

/* Finds n addresses in 172.16.0.0/12 and up whose home slot is the one of the first. */
static void find_colliding(char ips[][20], int n)
{
	uint32_t base = 0xac100000u, target = home_slot(base);
	int k = 0;

	for (uint32_t a = base; k < n && a < base + (64u << 20); a++) {
		if (home_slot(a) != target)
			continue;
		snprintf(ips[k], 20, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
		k++;
	}
	if (k < n)
		fail_msg("found only %d colliding addresses", k);
}

/* The home slot is keyed: 64 addresses that share an unkeyed FNV home (what a client could
 * compute to crowd its own window) spread over the table; another key, other homes. */
static void test_keyed_home(void **state)
{
	uint32_t base = 0xac100000u, target = fnv_home(base), same = 0, n = 0;
	uint32_t homes[64];

	(void)state;
	for (uint32_t a = base + 1; n < 64; a++)
		if (fnv_home(a) == target)
			homes[n++] = a;
	for (uint32_t i = 0; i < n; i++)
		same += home_slot(homes[i]) == home_slot(base);
	assert_true(same < 4);
	uint32_t with_a[64], moved = 0;

	conncount_set_key(1, 2);
	for (uint32_t i = 0; i < 64; i++)
		with_a[i] = home_slot(base + i);
	assert_int_equal(home_slot(base), with_a[0]);   /* stable under one key */
	conncount_set_key(3, 4);
	for (uint32_t i = 0; i < 64; i++)
		moved += home_slot(base + i) != with_a[i];
	assert_true(moved > 56);
	conncount_set_key(1, 2);
}

/* 64 clients fill the probe window of a 65th: conncount fails open for it (documented:
 * "table crowded: do not refuse for our own bookkeeping"), counts that, and recovers when
 * room frees. */
static void test_crowded_window(void **state)
{
	static char ips[66][20];
	unsigned long before = conncount_uncounted();

	(void)state;
	find_colliding(ips, 66);
	for (int i = 0; i < 64; i++)
		assert_true(acq(ips[i], 1));
	/* each of the 64 is still limited */
	assert_false(acq(ips[0], 1));
	assert_false(acq(ips[63], 1));
	/* the 65th is admitted without being counted: its limit is not enforced */
	assert_true(acq(ips[64], 1));
	assert_true(acq(ips[64], 1));
	assert_int_equal(conncount_uncounted(), before + 2);    /* counted as such */
	rel(ips[64]);
	rel(ips[64]);
	/* room again: the 65th is counted and limited */
	rel(ips[10]);
	assert_true(acq(ips[65], 1));
	assert_false(acq(ips[65], 1));
	rel(ips[65]);
	for (int i = 0; i < 64; i++)
		if (i != 10)
			rel(ips[i]);
	for (int i = 0; i < 66; i++)
		assert_empty(ips[i]);
}

/* A connection admitted uncounted while the window was crowded must not release a count
 * that belongs to a connection admitted after room freed (acquire says which it was). */
static void test_crowded_release_mismatch(void **state)
{
	static char ips[65][20];
	struct sockaddr_storage ss;

	(void)state;
	find_colliding(ips, 65);
	for (int i = 0; i < 64; i++)
		assert_true(acq(ips[i], 1));
	enum conncount_result a = conncount_acquire(sa_of(&ss, ips[64], 40000), 1, 128);
	assert_int_equal(a, CONNCOUNT_UNCOUNTED);   /* connection A: admitted, not counted */
	rel(ips[0]);                                /* room frees */
	enum conncount_result b = conncount_acquire(sa_of(&ss, ips[64], 40000), 1, 128);
	assert_int_equal(b, CONNCOUNT_COUNTED);     /* connection B: counted */
	if (a == CONNCOUNT_COUNTED)                 /* A closes: releases only what it counted */
		rel(ips[64]);
	bool third = acq(ips[64], 1);               /* B is still open: limit 1 must refuse */
	if (third)
		rel(ips[64]);
	rel(ips[64]);
	for (int i = 1; i < 64; i++)
		rel(ips[i]);
	if (third)
		fail_msg("a second connection admitted while one is open (limit 1)");
}

/* ------------------------------------------------------------ threads and the total */

static void *hammer(void *arg)
{
	const char *ip = arg;
	struct sockaddr_storage ss;
	const struct sockaddr *sa = sa_of(&ss, ip, 1);

	for (int i = 0; i < 20000; i++) {
		if (conncount_acquire(sa, 0, 128))
			conncount_release(sa, 128);
		conncount_total_add(1);
		conncount_total_add(-1);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t t[4];
	static const char *ips[4] = { "192.0.2.200", "::ffff:192.0.2.200", "192.0.2.201", "2001:db8::200" };
	long before = conncount_total();

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)ips[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(conncount_total(), before);
	for (int i = 0; i < 4; i++)
		assert_empty(ips[i]);
}

static void test_total(void **state)
{
	long base = conncount_total();

	(void)state;
	assert_int_equal(conncount_total_add(1), base + 1);
	assert_int_equal(conncount_total_add(1), base + 2);
	assert_int_equal(conncount_total(), base + 2);
	assert_int_equal(conncount_total_add(-2), base);
	assert_int_equal(conncount_total_add(0), base);
}

/* limits.client_ipv6_prefix: with 64 the addresses of one /64 are one client (their
 * count is shared), another /64 is another; IPv4 is per address whatever the prefix; a
 * release with the same prefix gives the slot back. */
static void test_ipv6_prefix(void **state)
{
	struct sockaddr_storage a, b, c, d, e;

	(void)state;
	assert_int_equal(conncount_acquire(sa_of(&a, "2001:db8:5:1::1", 1), 2, 64), CONNCOUNT_COUNTED);
	assert_int_equal(conncount_acquire(sa_of(&b, "2001:db8:5:1:ffff::2", 2), 2, 64), CONNCOUNT_COUNTED);
	assert_int_equal(conncount_acquire(sa_of(&c, "2001:db8:5:1::3", 3), 2, 64), CONNCOUNT_REFUSED);
	assert_int_equal(conncount_acquire(sa_of(&d, "2001:db8:5:2::1", 4), 2, 64), CONNCOUNT_COUNTED);
	/* per address (128): the third address of the /64 is a client of its own */
	assert_int_equal(conncount_acquire(sa_of(&c, "2001:db8:5:1::3", 3), 2, 128), CONNCOUNT_COUNTED);
	conncount_release(sa_of(&c, "2001:db8:5:1::3", 3), 128);
	/* IPv4 is never grouped */
	assert_int_equal(conncount_acquire(sa_of(&e, "192.0.2.77", 5), 1, 64), CONNCOUNT_COUNTED);
	assert_int_equal(conncount_acquire(sa_of(&e, "192.0.2.78", 5), 1, 64), CONNCOUNT_COUNTED);
	conncount_release(sa_of(&e, "192.0.2.77", 5), 64);
	conncount_release(sa_of(&e, "192.0.2.78", 5), 64);
	conncount_release(sa_of(&a, "2001:db8:5:1::1", 1), 64);
	assert_int_equal(conncount_acquire(sa_of(&c, "2001:db8:5:1::3", 3), 2, 64), CONNCOUNT_COUNTED);
	conncount_release(sa_of(&b, "2001:db8:5:1:ffff::2", 2), 64);
	conncount_release(sa_of(&c, "2001:db8:5:1::3", 3), 64);
	conncount_release(sa_of(&d, "2001:db8:5:2::1", 4), 64);
	assert_empty("2001:db8:5:1::9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_ipv6_prefix),
		cmocka_unit_test(test_ports_ignored),
		cmocka_unit_test(test_unix_peer),
		cmocka_unit_test(test_many_distinct),
		cmocka_unit_test(test_keyed_home),
		cmocka_unit_test(test_crowded_window),
		cmocka_unit_test(test_crowded_release_mismatch),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_total),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
