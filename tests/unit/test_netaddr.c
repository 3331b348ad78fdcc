/* test_netaddr.c — canonical addresses: IPv4, IPv6 and v4-mapped IPv6 from a sockaddr and from
 * text, prefixes at /0, /32, /128 and lengths that end inside a byte, CIDR parsing and
 * matching, the 16-byte table key, NAT64 prefixes of every RFC 6052 length. Table-driven, one labelled row per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/netaddr.h"
#include "addr_fixture.h"

struct text_case { const char *label, *in; int family; const char *text; };

static const struct text_case text_cases[] = {
	{ "IPv4", "198.18.7.7", AF_INET, "198.18.7.7" },
	{ "IPv4 zero", "0.0.0.0", AF_INET, "0.0.0.0" },
	{ "IPv4 broadcast", "255.255.255.255", AF_INET, "255.255.255.255" },
	{ "IPv6", "2001:db8::1", AF_INET6, "2001:db8::1" },
	{ "IPv6 long form shortened", "2001:0db8:0000:0000:0000:0000:0000:0001", AF_INET6, "2001:db8::1" },
	{ "IPv6 loopback", "::1", AF_INET6, "::1" },
	{ "v4-mapped is IPv4", "::ffff:198.18.7.7", AF_INET, "198.18.7.7" },
	{ "v4-mapped in hex is IPv4", "::ffff:c612:707", AF_INET, "198.18.7.7" },
	{ "v4-compatible (deprecated) stays IPv6", "::198.18.7.7", AF_INET6, "::198.18.7.7" },
	{ "NAT64 prefix stays IPv6", "64:ff9b::198.18.7.7", AF_INET6, "64:ff9b::c612:707" },
};

static void test_text(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
		const struct text_case *c = &text_cases[i];
		struct sockaddr_storage ss = sockaddr_of(c->in);
		struct netaddr a, b;
		char out[NETADDR_STRLEN];

		if (netaddr_from_string(c->in, &a) != 0 || a.family != c->family)
			fail_msg("%s: from_string family %d", c->label, a.family);
		if (netaddr_from_sockaddr((struct sockaddr *)&ss, &b) != 0 || !netaddr_equal(&a, &b))
			fail_msg("%s: sockaddr and text disagree", c->label);
		assert_int_equal(netaddr_to_string(&a, out, sizeof(out)), 0);
		if (strcmp(out, c->text) != 0)
			fail_msg("%s: text %s, want %s", c->label, out, c->text);
		if (netaddr_sockaddr_string((struct sockaddr *)&ss, out, sizeof(out)) != c->family ||
		    strcmp(out, c->text) != 0)
			fail_msg("%s: sockaddr_string %s", c->label, out);
	}
}

static void test_bad_input(void **state)
{
	static const char *const bad[] = { "", "198.18.7", "198.18.7.256", "2001:db8:::1", "host",
		"198.18.7.7 ", "::ffff:1.2.3.4.5" };
	struct sockaddr_storage ss;
	struct netaddr a;
	char small[8];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (netaddr_from_string(bad[i], &a) != -1)
			fail_msg("'%s' was accepted", bad[i]);
	assert_int_equal(netaddr_from_string(NULL, &a), -1);
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&ss, &a), -1);
	assert_int_equal(netaddr_from_sockaddr(NULL, &a), -1);
	assert_int_equal(netaddr_sockaddr_string((struct sockaddr *)&ss, small, sizeof(small)), -1);
	assert_string_equal(small, "");
	/* a buffer too small is an error, never a truncated address */
	ss = sockaddr_of("198.18.7.7");
	assert_int_equal(netaddr_sockaddr_string((struct sockaddr *)&ss, small, sizeof(small)), -1);
	assert_string_equal(small, "");
	assert_int_equal(netaddr_prefix_string((struct sockaddr *)&ss, 24, 64, small, sizeof(small)), -1);
}

struct prefix_case { const char *label, *ip; int p4, p6; const char *want; };

static const struct prefix_case prefix_cases[] = {
	{ "IPv4 /24", "198.18.7.7", 24, 64, "198.18.7.0/24" },
	{ "IPv4 /32 keeps the host", "198.18.7.7", 32, 64, "198.18.7.7/32" },
	{ "IPv4 /0", "198.18.7.7", 0, 64, "0.0.0.0/0" },
	{ "IPv4 /13 ends inside a byte", "198.18.7.7", 13, 64, "198.16.0.0/13" },
	{ "IPv4 /31", "198.18.7.7", 31, 64, "198.18.7.6/31" },
	{ "IPv4 /1", "198.18.7.7", 1, 64, "128.0.0.0/1" },
	{ "IPv4 above 32 clamps", "198.18.7.7", 40, 64, "198.18.7.7/32" },
	{ "IPv4 negative clamps to /0", "198.18.7.7", -3, 64, "0.0.0.0/0" },
	{ "IPv6 /64", "2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64" },
	{ "IPv6 /128 keeps the host", "2001:db8:1:2:3:4:5:6", 24, 128, "2001:db8:1:2:3:4:5:6/128" },
	{ "IPv6 /0", "2001:db8::1", 24, 0, "::/0" },
	{ "IPv6 /57 ends inside a byte", "2001:db8:1:2ff::1", 24, 57, "2001:db8:1:280::/57" },
	{ "IPv6 /48", "2001:db8:1:2::1", 24, 48, "2001:db8:1::/48" },
	{ "IPv6 above 128 clamps", "2001:db8::1", 24, 200, "2001:db8::1/128" },
	{ "v4-mapped uses the IPv4 prefix", "::ffff:198.18.7.7", 24, 64, "198.18.7.0/24" },
	{ "v4-mapped at /32", "::ffff:198.18.7.7", 32, 128, "198.18.7.7/32" },
	{ "v4-mapped at /0", "::ffff:198.18.7.7", 0, 0, "0.0.0.0/0" },
};

static void test_prefix_string(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(prefix_cases) / sizeof(prefix_cases[0]); i++) {
		const struct prefix_case *c = &prefix_cases[i];
		struct sockaddr_storage ss = sockaddr_of(c->ip);
		char out[NETADDR_PREFIX_STRLEN];

		if (netaddr_prefix_string((struct sockaddr *)&ss, c->p4, c->p6, out, sizeof(out)) != 0)
			fail_msg("%s: failed", c->label);
		if (strcmp(out, c->want) != 0)
			fail_msg("%s: %s, want %s", c->label, out, c->want);
	}
}

struct cidr_case { const char *label, *cidr; int rc; const char *net; int prefix; };

static const struct cidr_case cidr_cases[] = {
	{ "IPv4 network", "10.0.0.0/8", 0, "10.0.0.0", 8 },
	{ "IPv4 host bits cleared", "10.1.2.3/8", 0, "10.0.0.0", 8 },
	{ "IPv4 host = /32", "192.0.2.1", 0, "192.0.2.1", 32 },
	{ "IPv4 /0", "0.0.0.0/0", 0, "0.0.0.0", 0 },
	{ "IPv4 odd length", "198.18.255.1/15", 0, "198.18.0.0", 15 },
	{ "IPv6 network", "2001:db8::/32", 0, "2001:db8::", 32 },
	{ "IPv6 host = /128", "::1", 0, "::1", 128 },
	{ "IPv6 odd length", "2001:db8:ffff::/33", 0, "2001:db8:8000::", 33 },
	{ "v4-mapped /104 is IPv4 /8", "::ffff:10.0.0.0/104", 0, "10.0.0.0", 8 },
	{ "v4-mapped host is IPv4 /32", "::ffff:192.0.2.1", 0, "192.0.2.1", 32 },
	{ "v4-mapped /96 is IPv4 /0", "::ffff:0.0.0.0/96", 0, "0.0.0.0", 0 },
	{ "v4-mapped wider than /96 stays IPv6", "::ffff:0.0.0.0/80", 0, "::", 80 },
	{ "blanks around", "  10.0.0.0/8\t", 0, "10.0.0.0", 8 },
	{ "IPv4 prefix too long", "10.0.0.0/33", -1, NULL, 0 },
	{ "IPv6 prefix too long", "::/129", -1, NULL, 0 },
	{ "negative prefix", "10.0.0.0/-1", -1, NULL, 0 },
	{ "empty prefix", "10.0.0.0/", -1, NULL, 0 },
	{ "junk after prefix", "10.0.0.0/8x", -1, NULL, 0 },
	{ "not an address", "example.org/8", -1, NULL, 0 },
	{ "empty", "", -1, NULL, 0 },
};

static void test_parse_cidr(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]); i++) {
		const struct cidr_case *c = &cidr_cases[i];
		struct netaddr net;
		char out[NETADDR_STRLEN];
		int p = -1, rc = netaddr_parse_cidr(c->cidr, &net, &p);

		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d", c->label, rc, c->rc);
		if (rc != 0)
			continue;
		assert_int_equal(netaddr_to_string(&net, out, sizeof(out)), 0);
		if (strcmp(out, c->net) != 0 || p != c->prefix)
			fail_msg("%s: %s/%d, want %s/%d", c->label, out, p, c->net, c->prefix);
	}
}

struct match_case { const char *label, *ip, *cidr; bool match; };

static const struct match_case match_cases[] = {
	{ "IPv4 inside", "10.1.2.3", "10.0.0.0/8", true },
	{ "IPv4 outside", "11.1.2.3", "10.0.0.0/8", false },
	{ "IPv4 /32 exact", "192.0.2.1", "192.0.2.1", true },
	{ "IPv4 /32 neighbour", "192.0.2.2", "192.0.2.1", false },
	{ "IPv4 /0 matches every IPv4", "203.0.113.9", "0.0.0.0/0", true },
	{ "IPv4 odd length edge in", "198.19.255.255", "198.18.0.0/15", true },
	{ "IPv4 odd length edge out", "198.20.0.0", "198.18.0.0/15", false },
	{ "v4-mapped client in an IPv4 list", "::ffff:10.1.2.3", "10.0.0.0/8", true },
	{ "IPv4 client in a v4-mapped list", "10.1.2.3", "::ffff:10.0.0.0/104", true },
	{ "IPv6 inside", "2001:db8:5::1", "2001:db8::/32", true },
	{ "IPv6 outside", "2001:db9::1", "2001:db8::/32", false },
	{ "IPv6 /128 exact", "::1", "::1", true },
	{ "IPv6 /0 matches every IPv6", "2001:db8::1", "::/0", true },
	{ "IPv6 /0 does not match IPv4", "10.1.2.3", "::/0", false },
	{ "IPv4 /0 does not match IPv6", "2001:db8::1", "0.0.0.0/0", false },
	{ "IPv6 odd length edge in", "2001:db8:7fff::1", "2001:db8::/33", true },
	{ "IPv6 odd length edge out", "2001:db8:8000::1", "2001:db8::/33", false },
};

static void test_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *c = &match_cases[i];
		struct sockaddr_storage ss = sockaddr_of(c->ip);
		struct netaddr a, net;
		int p;

		assert_int_equal(netaddr_parse_cidr(c->cidr, &net, &p), 0);
		assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&ss, &a), 0);
		if (netaddr_in_prefix(&a, &net, p) != c->match)
			fail_msg("%s: %s in %s, want %d", c->label, c->ip, c->cidr, c->match);
	}
}

static void test_key16(void **state)
{
	struct sockaddr_storage v4 = sockaddr_of("198.18.7.7"), mapped = sockaddr_of("::ffff:198.18.7.7"),
	    v6 = sockaddr_of("2001:db8::1");
	struct netaddr a;
	uint8_t k1[16], k2[16], k3[16];
	static const uint8_t want[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 7, 7 };

	(void)state;
	netaddr_from_sockaddr((struct sockaddr *)&v4, &a);
	netaddr_key16(&a, k1);
	netaddr_from_sockaddr((struct sockaddr *)&mapped, &a);
	netaddr_key16(&a, k2);
	netaddr_from_sockaddr((struct sockaddr *)&v6, &a);
	netaddr_key16(&a, k3);
	assert_memory_equal(k1, want, 16);
	assert_memory_equal(k1, k2, 16);        /* one client, one key, whatever the socket */
	assert_memory_equal(k3, ((struct sockaddr_in6 *)&v6)->sin6_addr.s6_addr, 16);
}

/* An IPv6 client carrying an IPv4 one is keyed and looked up as that IPv4 address; every
 * other IPv6 address (and the canonical form) is left alone. */
static void test_client_unwrap(void **state)
{
	static const struct { const char *label, *ip, *want; } rows[] = {
		{ "NAT64 well-known prefix", "64:ff9b::198.18.7.7", "198.18.7.7" },
		{ "IPv4-translated", "::ffff:0:198.18.7.7", "198.18.7.7" },
		{ "IPv4-compatible", "::198.18.7.7", "198.18.7.7" },
		{ "v4-mapped", "::ffff:198.18.7.7", "198.18.7.7" },
		{ "IPv4", "198.18.7.7", "198.18.7.7" },
		{ "loopback ::1 stays IPv6", "::1", "::1" },
		{ "unspecified :: stays IPv6", "::", "::" },
		{ "compat in 0.0.0.0/8 stays IPv6", "::0.255.0.1", "::0.255.0.1" },
		{ "NAT64 /96 only: a /95 neighbour stays IPv6", "64:ff9b::1:c612:707", "64:ff9b::1:c612:707" },
		{ "local-use 64:ff9b:1::/48 stays IPv6", "64:ff9b:1::c612:707", "64:ff9b:1::c612:707" },
		{ "other IPv6", "2001:db8::c612:707", "2001:db8::c612:707" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(rows[i].ip);
		struct netaddr a;
		char out[NETADDR_STRLEN], key[NETADDR_PREFIX_STRLEN], net[NETADDR_PREFIX_STRLEN];

		if (netaddr_client_from_sockaddr((struct sockaddr *)&ss, &a) != 0 ||
		    netaddr_to_string(&a, out, sizeof(out)) != 0 || strcmp(out, rows[i].want) != 0)
			fail_msg("%s: %s, want %s", rows[i].label, out, rows[i].want);
		/* the limit keys see the same client */
		if (netaddr_client_string((struct sockaddr *)&ss, 64, key, sizeof(key)) < 0)
			fail_msg("%s: no client key", rows[i].label);
		if (a.family == AF_INET && strcmp(key, rows[i].want) != 0)
			fail_msg("%s: client key %s, want %s", rows[i].label, key, rows[i].want);
		if (a.family == AF_INET &&
		    (netaddr_prefix_string((struct sockaddr *)&ss, 24, 64, net, sizeof(net)) != 0 ||
		    strcmp(net, "198.18.7.0/24") != 0))
			fail_msg("%s: network %s, want 198.18.7.0/24", rows[i].label, net);
	}
	/* the canonical form (logs, XCLIENT, address lists) keeps the NAT64 address */
	struct sockaddr_storage ss = sockaddr_of("64:ff9b::198.18.7.7");
	struct netaddr a;
	uint8_t k1[16], k2[16];

	netaddr_from_sockaddr((struct sockaddr *)&ss, &a);
	assert_int_equal(a.family, AF_INET6);
	ss = sockaddr_of("198.18.7.7");
	netaddr_client_key16((struct sockaddr *)&ss, 64, k1);
	ss = sockaddr_of("64:ff9b::198.18.7.7");
	netaddr_client_key16((struct sockaddr *)&ss, 64, k2);
	assert_memory_equal(k1, k2, 16);
}

/* Builds a table from CIDR texts; fails the test on a refused one. */
static void nat64_table(struct netaddr_nat64 *t, const char *const *cidrs, size_t n)
{
	char why[128];

	t->n = 0;
	for (size_t i = 0; i < n; i++) {
		struct netaddr net;
		int len;

		if (netaddr_parse_cidr(cidrs[i], &net, &len) != 0 || netaddr_nat64_add(t, &net, len, why, sizeof(why)) != 0)
			fail_msg("nat64 table: %s refused: %s", cidrs[i], why);
	}
}

/* RFC 6052 2.4's table: 192.0.2.33 behind a prefix of each length 2.2 allows, extracted back
 * from the IPv6 address of the RFC's example (the u octet, bits 64-71, skipped), and as a
 * client: keyed, looked up and limited as 192.0.2.33. */
static void test_nat64_rfc6052_examples(void **state)
{
	static const struct { const char *label, *prefix, *ip6; } rows[] = {
		{ "/32", "2001:db8::/32", "2001:db8:c000:221::" },
		{ "/40", "2001:db8:100::/40", "2001:db8:1c0:2:21::" },
		{ "/48", "2001:db8:122::/48", "2001:db8:122:c000:2:2100::" },
		{ "/56", "2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::" },
		{ "/64", "2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0" },
		{ "/96", "2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33" },
		{ "/96 well-known", "64:ff9b::/96", "64:ff9b::192.0.2.33" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct netaddr_nat64 t;
		struct sockaddr_storage ss = sockaddr_of(rows[i].ip6);
		struct netaddr a;
		uint8_t v4[4], want[4] = { 192, 0, 2, 33 };
		char out[NETADDR_STRLEN], key[NETADDR_PREFIX_STRLEN];
		int len = atoi(strrchr(rows[i].prefix, '/') + 1);

		if (!netaddr_nat64_extract(((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr, len, v4) ||
		    memcmp(v4, want, 4) != 0)
			fail_msg("%s: extract %u.%u.%u.%u", rows[i].label, v4[0], v4[1], v4[2], v4[3]);
		nat64_table(&t, &rows[i].prefix, 1);
		netaddr_nat64_set(&t);
		if (netaddr_client_from_sockaddr((struct sockaddr *)&ss, &a) != 0 ||
		    netaddr_to_string(&a, out, sizeof(out)) != 0 || strcmp(out, "192.0.2.33") != 0)
			fail_msg("%s: client %s, want 192.0.2.33", rows[i].label, out);
		if (netaddr_client_string((struct sockaddr *)&ss, 64, key, sizeof(key)) < 0 ||
		    strcmp(key, "192.0.2.33") != 0)
			fail_msg("%s: client key %s", rows[i].label, key);
		/* the canonical form (logs, XCLIENT, address lists) keeps the IPv6 address */
		netaddr_from_sockaddr((struct sockaddr *)&ss, &a);
		if (a.family != AF_INET6)
			fail_msg("%s: the canonical form changed", rows[i].label);
		/* the same address with the u octet set is no IPv4-embedded address (RFC 6052 2.2) */
		if (len != 96) {
			struct sockaddr_storage u = ss;

			((struct sockaddr_in6 *)&u)->sin6_addr.s6_addr[8] = 1;
			if (netaddr_client_from_sockaddr((struct sockaddr *)&u, &a) != 0 || a.family != AF_INET6)
				fail_msg("%s: u octet set, unwrapped", rows[i].label);
		}
	}
	netaddr_nat64_set(NULL);
}

/* Several prefixes at once; the default; an empty table; what stays IPv6. */
static void test_nat64_table(void **state)
{
	static const char *const prefixes[] = { "64:ff9b::/96", "64:ff9b:1::/48", "2001:db8:100::/40" };
	static const struct { const char *label, *ip, *want; } rows[] = {
		{ "well-known", "64:ff9b::198.18.7.7", "198.18.7.7" },
		{ "RFC 8215 local-use /48", "64:ff9b:1:c612:7:700::", "198.18.7.7" },
		{ "RFC 8215 /48, suffix bits set (SHOULD be zero): still the IPv4 octets", "64:ff9b:1:c612:7:7ff:1:1", "198.18.7.7" },
		{ "/40", "2001:db8:1c6:1207:7::", "198.18.7.7" },
		{ "/48 with the u octet set stays IPv6", "64:ff9b:1:c612:107:700::", "64:ff9b:1:c612:107:700::" },
		{ "beside the /48 stays IPv6", "64:ff9b:2:c612:7:700::", "64:ff9b:2:c612:7:700::" },
		{ "beside the /40 stays IPv6", "2001:db8:2c6:1207:7::", "2001:db8:2c6:1207:7::" },
		{ "IPv4-translated whatever the table", "::ffff:0:198.18.7.7", "198.18.7.7" },
		{ "other IPv6", "2001:db9::1", "2001:db9::1" },
	};
	struct netaddr_nat64 t, d;
	struct netaddr a;
	char out[NETADDR_STRLEN];

	(void)state;
	nat64_table(&t, prefixes, 3);
	netaddr_nat64_set(&t);
	assert_true(netaddr_nat64_equal(netaddr_nat64_get(), &t));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(rows[i].ip);

		if (netaddr_client_from_sockaddr((struct sockaddr *)&ss, &a) != 0 ||
		    netaddr_to_string(&a, out, sizeof(out)) != 0 || strcmp(out, rows[i].want) != 0)
			fail_msg("%s: %s, want %s", rows[i].label, out, rows[i].want);
	}
	/* an empty table: the well-known prefix is an IPv6 network like another */
	t.n = 0;
	netaddr_nat64_set(&t);
	struct sockaddr_storage ss = sockaddr_of("64:ff9b::198.18.7.7");

	assert_int_equal(netaddr_client_from_sockaddr((struct sockaddr *)&ss, &a), 0);
	assert_int_equal(a.family, AF_INET6);
	/* NULL: the default, the well-known prefix alone */
	netaddr_nat64_set(NULL);
	netaddr_nat64_default(&d);
	assert_true(netaddr_nat64_equal(netaddr_nat64_get(), &d));
	assert_int_equal(d.n, 1);
	assert_int_equal(netaddr_client_from_sockaddr((struct sockaddr *)&ss, &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_false(netaddr_nat64_equal(&d, &t));
}

/* What a table refuses, each with its reason. */
static void test_nat64_add_refused(void **state)
{
	static const struct { const char *label, *cidr, *why; } rows[] = {
		{ "IPv4", "192.0.2.0/24", "not an IPv6 prefix" },
		{ "v4-mapped /96 (IPv4)", "::ffff:0.0.0.0/96", "not an IPv6 prefix" },
		{ "a length 6052 has not: /33", "2001:db8::/33", "not /33" },
		{ "/128", "2001:db8::1", "not /128" },
		{ "/0", "::/0", "not /0" },
		{ "bits 64-71 set in a /96", "2001:db8:0:0:100::/96", "bits 64-71" },
		{ "IPv4-compatible ::/96", "::/96", "overlaps ::/64" },
		{ "IPv4-translated ::ffff:0:0:0/96", "::ffff:0:0:0/96", "overlaps ::/64" },
		{ "a /32 over them all", "::/32", "overlaps ::/64" },
		{ "the same as an entry", "64:ff9b::/96", "the same as item 0" },
		{ "inside an entry", "2001:db8:100:200::/64", "overlaps item 1" },
		{ "around an entry", "64:ff9b::/32", "overlaps item 0" },
	};
	static const char *const base[] = { "64:ff9b::/96", "2001:db8:100::/40" };

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct netaddr_nat64 t;
		struct netaddr net;
		char why[128] = "";
		int len;

		nat64_table(&t, base, 2);
		if (netaddr_parse_cidr(rows[i].cidr, &net, &len) != 0)
			fail_msg("%s: %s does not parse", rows[i].label, rows[i].cidr);
		if (netaddr_nat64_add(&t, &net, len, why, sizeof(why)) != -1 || strstr(why, rows[i].why) == NULL ||
		    t.n != 2)
			fail_msg("%s: %s: \"%s\", want \"%s\"", rows[i].label, rows[i].cidr, why, rows[i].why);
	}
	/* full at NETADDR_NAT64_MAX */
	struct netaddr_nat64 t = { 0 };
	char why[128] = "", cidr[64];
	struct netaddr net;
	int len;

	for (int i = 0; i <= NETADDR_NAT64_MAX; i++) {
		snprintf(cidr, sizeof(cidr), "2001:db8:%x::/48", i);
		assert_int_equal(netaddr_parse_cidr(cidr, &net, &len), 0);
		assert_int_equal(netaddr_nat64_add(&t, &net, len, why, sizeof(why)), i < NETADDR_NAT64_MAX ? 0 : -1);
	}
	assert_int_equal(t.n, NETADDR_NAT64_MAX);
	assert_non_null(strstr(why, "at most 16"));
	/* extract: another length, and the u octet, are refused */
	uint8_t a[16] = { 0 }, v4[4] = { 9, 9, 9, 9 };

	assert_false(netaddr_nat64_extract(a, 33, v4));
	a[8] = 1;
	assert_false(netaddr_nat64_extract(a, 64, v4));
	assert_int_equal(v4[0], 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_prefix_string),
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_key16),
		cmocka_unit_test(test_client_unwrap),
		cmocka_unit_test(test_nat64_rfc6052_examples),
		cmocka_unit_test(test_nat64_table),
		cmocka_unit_test(test_nat64_add_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
