/* test_dns.c — names, cache (TTL expiry with injected time, LRU bound), negative TTLs from
 * raw replies, and the c-ares/libuv resolver against a fake server in the same loop:
 * answers, cache hits, NXDOMAIN, SERVFAIL, timeouts, cancellation, release with queries
 * in flight; names made to collide under a public hash spread over the cache's buckets and
 * the in-flight table's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "filters/dns.h"
#include "collide_fixture.h"
#include "fake_dns.h"
#include "uv_wait.h"

/* ---- names -------------------------------------------------------------------------- */

static void test_reverse_names(void **state)
{
	static const struct { const char *label, *ip, *zone, *want; } rows[] = {
		{ "IPv4 into a zone", "198.18.1.7", "bl.test", "7.1.18.198.bl.test" },
		{ "IPv4 without zone -> in-addr.arpa", "192.0.2.1", NULL, "1.2.0.192.in-addr.arpa" },
		{ "IPv4 zero octets", "10.0.0.0", "z", "0.0.0.10.z" },
		{ "v4-mapped IPv6 is IPv4", "::ffff:198.18.1.7", "bl.test", "7.1.18.198.bl.test" },
		{ "IPv6 nibbles", "2001:db8::1", "bl.test",
		  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test" },
		{ "IPv6 without zone -> ip6.arpa", "::1", "",
		  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa" },
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = dns_name_reverse_str(rows[i].ip, rows[i].zone, out, sizeof(out));

		if (rc != 0 || strcmp(out, rows[i].want) != 0)
			fail_msg("%s: got rc=%d \"%s\"", rows[i].label, rc, out);
	}
	/* a client carrying an IPv4 address is looked up as it (RFC 6052 2.1 NAT64 well-known
	 * prefix, IPv4-compatible); the PTR name of the address text stays IPv6 */
	static const char *const v4in6[] = { "64:ff9b::198.18.1.7", "::198.18.1.7", "::ffff:0:198.18.1.7" };
	for (size_t i = 0; i < sizeof(v4in6) / sizeof(v4in6[0]); i++) {
		struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6 };

		assert_int_equal(inet_pton(AF_INET6, v4in6[i], &sa6.sin6_addr), 1);
		if (dns_name_reverse((struct sockaddr *)&sa6, "bl.test", out, sizeof(out)) != 0 ||
		    strcmp(out, "7.1.18.198.bl.test") != 0)
			fail_msg("%s: \"%s\"", v4in6[i], out);
	}
	assert_int_equal(dns_name_reverse_str("64:ff9b::198.18.1.7", "z", out, sizeof(out)), 0);
	assert_string_equal(out, "7.0.1.0.2.1.6.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.z");
	assert_int_equal(dns_name_reverse_str("not an ip", "z", out, sizeof(out)), -1);
	assert_int_equal(dns_name_reverse_str("198.18.1.7", "bl.test", out, 10), -1);
	assert_int_equal(dns_name_reverse_str("2001:db8::1", "z", out, 40), -1);
}

/* ---- cache -------------------------------------------------------------------------- */

static struct dns_result mkres(enum dns_status st, uint32_t ttl, const char *a, const char *b)
{
	static char *v[2];
	struct dns_result r;

	memset(&r, 0, sizeof(r));
	r.status = st;
	r.ttl = ttl;
	v[0] = (char *)a;
	v[1] = (char *)b;
	r.v = v;
	r.n = a ? (b ? 2 : 1) : 0;
	return r;
}

static void test_cache_ttl(void **state)
{
	struct dns_cache *c = dns_cache_new(10);
	struct dns_result r = mkres(DNS_S_OK, 60, "127.0.0.2", "127.0.0.4"), *g;

	(void)state;
	dns_cache_put(c, DNS_T_A, "2.0.0.127.bl.test", &r, 1000);
	g = dns_cache_get(c, DNS_T_A, "2.0.0.127.BL.TEST.", 1000 + 59000);
	assert_non_null(g);	/* case and trailing dot do not matter */
	assert_int_equal(g->n, 2);
	assert_string_equal(g->v[1], "127.0.0.4");
	assert_int_equal(g->ttl, 1);
	assert_true(g->cached);
	dns_result_free(g);
	assert_null(dns_cache_get(c, DNS_T_TXT, "2.0.0.127.bl.test", 2000));	/* other type */
	assert_null(dns_cache_get(c, DNS_T_A, "2.0.0.127.bl.test", 1000 + 60000));	/* expired */
	assert_int_equal(dns_cache_count(c), 0);	/* and gone */

	r = mkres(DNS_S_NXDOMAIN, 30, NULL, NULL);
	dns_cache_put(c, DNS_T_A, "nx.test", &r, 0);
	g = dns_cache_get(c, DNS_T_A, "nx.test", 29999);
	assert_non_null(g);
	assert_int_equal(g->status, DNS_S_NXDOMAIN);
	assert_int_equal(g->n, 0);
	dns_result_free(g);

	r = mkres(DNS_S_OK, 0, "1.2.3.4", NULL);	/* TTL 0: not cached */
	dns_cache_put(c, DNS_T_A, "zero.test", &r, 0);
	assert_null(dns_cache_get(c, DNS_T_A, "zero.test", 0));
	dns_cache_free(c);
}

static void test_cache_bound(void **state)
{
	struct dns_cache *c = dns_cache_new(3);
	struct dns_result r = mkres(DNS_S_OK, 100, "127.0.0.2", NULL), *g;
	char name[32];

	(void)state;
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		dns_cache_put(c, DNS_T_A, name, &r, 0);
	}
	g = dns_cache_get(c, DNS_T_A, "n0.test", 1);	/* n0 becomes most recent */
	assert_non_null(g);
	dns_result_free(g);
	dns_cache_put(c, DNS_T_A, "n3.test", &r, 2);	/* evicts n1, the least recent */
	assert_int_equal(dns_cache_count(c), 3);
	assert_null(dns_cache_get(c, DNS_T_A, "n1.test", 3));
	g = dns_cache_get(c, DNS_T_A, "n0.test", 3);
	assert_non_null(g);
	dns_result_free(g);
	dns_cache_put(c, DNS_T_A, "n0.test", &r, 4);	/* replace, no growth */
	assert_int_equal(dns_cache_count(c), 3);
	dns_cache_free(c);

	c = dns_cache_new(0);	/* disabled */
	dns_cache_put(c, DNS_T_A, "n0.test", &r, 0);
	assert_null(dns_cache_get(c, DNS_T_A, "n0.test", 0));
	dns_cache_free(c);
	dns_cache_free(NULL);
}

/* The cache's bucket hash before siphash.h: FNV-1a of the key "<type>:<name>" (DNS_T_A). */
static uint64_t cache_fnv(const char *name)
{
	char key[COLLIDE_NAME_MAX + 2];

	snprintf(key, sizeof(key), "0:%s", name);
	return fnv1a64_str(key);
}

/* 1,000 names a client can put in its HELO, its sender or its message's URLs, all in one of
 * 1,024 buckets under the cache's old public hash: under the keyed one no chain is long. */
static void test_cache_collisions(void **state)
{
	enum { N = 1000 };
	static char names[N][COLLIDE_NAME_MAX];
	struct dns_cache *c = dns_cache_new(1024);     /* 1,024 buckets */
	struct dns_result r = mkres(DNS_S_OK, 100, "127.0.0.2", NULL), *g;

	(void)state;
	assert_int_equal(collide_find(names, N, "h%u.flood.test", cache_fnv, 1023), N);
	for (int i = 0; i < N; i++)
		dns_cache_put(c, DNS_T_A, names[i], &r, 0);
	assert_int_equal(dns_cache_count(c), N);
	assert_in_range(dns_cache_longest_chain(c), 1, 16);
	g = dns_cache_get(c, DNS_T_A, names[N - 1], 1);
	assert_non_null(g);
	dns_result_free(g);
	dns_cache_free(c);
}

/* ---- raw replies -------------------------------------------------------------------- */

static void test_negative_ttl(void **state)
{
	/* header: 1 question, 0 answers, 1 authority */
	static const unsigned char nx[] = {
		0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0,
		2, 'n', 'x', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
		0xc0, 15, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 29,
		2, 'n', 's', 0xc0, 15, 1, 'h', 0xc0, 15,
		0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 1, 0x2c,	/* MINIMUM 300 */
	};
	uint32_t ttl = 0;
	unsigned char buf[sizeof(nx)];

	(void)state;
	assert_int_equal(dns_reply_negative_ttl(nx, sizeof(nx), &ttl), 0);
	assert_int_equal(ttl, 300);	/* min(3600, 300) */
	memcpy(buf, nx, sizeof(nx));
	buf[31] = 0; buf[32] = 0; buf[33] = 0; buf[34] = 20;	/* SOA TTL 20 < MINIMUM */
	assert_int_equal(dns_reply_negative_ttl(buf, sizeof(buf), &ttl), 0);
	assert_int_equal(ttl, 20);
	for (size_t len = 0; len < sizeof(nx); len++)	/* every truncation fails cleanly */
		assert_int_equal(dns_reply_negative_ttl(nx, len, &ttl), -1);
	buf[9] = 0;	/* no authority */
	assert_int_equal(dns_reply_negative_ttl(buf, sizeof(buf), &ttl), -1);
	memcpy(buf, nx, sizeof(nx));
	buf[12] = 0x3f;	/* a label running past the end */
	assert_int_equal(dns_reply_negative_ttl(buf, sizeof(buf), &ttl), -1);
}

/* dns_cache_put_reply: a raw reply SPF's lookups asked themselves, stored as the resolvers
 * store theirs (TTLs bounded by negative_ttl and max_ttl, no SOA no negative entry). */
static void test_cache_put_reply(void **state)
{
	static const unsigned char nx[] = {	/* NXDOMAIN for nx.test A, SOA MINIMUM 300 */
		0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0,
		2, 'n', 'x', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
		0xc0, 15, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 29,
		2, 'n', 's', 0xc0, 15, 1, 'h', 0xc0, 15,
		0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 1, 0x2c,
	};
	static const unsigned char a[] = {	/* a.test A 198.18.1.9, TTL 7200 */
		0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'a', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
		0xc0, 12, 0, 1, 0, 1, 0, 0, 0x1c, 0x20, 0, 4, 198, 18, 1, 9,
	};
	struct dns_cache *c = dns_cache_new(10);
	unsigned char buf[sizeof(nx)];
	struct dns_result *g;

	(void)state;
	dns_cache_put_reply(c, DNS_T_A, "a.test", a, (int)sizeof(a), 300000, 3600000);
	g = dns_cache_get(c, DNS_T_A, "a.test", dns_cache_now_ms());
	assert_non_null(g);
	assert_int_equal(g->status, DNS_S_OK);
	assert_int_equal(g->n, 1);
	assert_string_equal(g->v[0], "198.18.1.9");
	assert_true(g->ttl <= 3600 && g->ttl > 3500);	/* max_ttl, not the record's 7200 */
	dns_result_free(g);
	dns_cache_put_reply(c, DNS_T_A, "nx.test", nx, (int)sizeof(nx), 60000, 3600000);
	g = dns_cache_get(c, DNS_T_A, "nx.test", dns_cache_now_ms());
	assert_non_null(g);
	assert_int_equal(g->status, DNS_S_NXDOMAIN);
	assert_true(g->ttl <= 60 && g->ttl > 0);	/* negative_ttl, not the SOA's 300 */
	dns_result_free(g);
	memcpy(buf, nx, sizeof(nx));
	buf[9] = 0;	/* no SOA: not cached */
	dns_cache_put_reply(c, DNS_T_A, "nosoa.test", buf, (int)sizeof(buf), 60000, 3600000);
	assert_null(dns_cache_get(c, DNS_T_A, "nosoa.test", dns_cache_now_ms()));
	memcpy(buf, nx, sizeof(nx));
	buf[3] = 0x82;	/* SERVFAIL: never */
	dns_cache_put_reply(c, DNS_T_A, "sf.test", buf, (int)sizeof(buf), 60000, 3600000);
	assert_null(dns_cache_get(c, DNS_T_A, "sf.test", dns_cache_now_ms()));
	for (size_t len = 0; len < sizeof(a); len++)	/* a truncated reply stores nothing */
		dns_cache_put_reply(c, DNS_T_A, "cut.test", a, (int)len, 60000, 3600000);
	assert_null(dns_cache_get(c, DNS_T_A, "cut.test", dns_cache_now_ms()));
	dns_cache_put_reply(NULL, DNS_T_A, "a.test", a, (int)sizeof(a), 60000, 3600000);
	dns_cache_free(c);
}

/* dns_msg_question: a message's header and question (dns.c matches the answers c-ares
 * takes, by id and question, to the queries it sent). */
static void test_msg_question(void **state)
{
	/* a SERVFAIL response to "Bl.Test. A": header, question */
	static const unsigned char sf[] = {
		0x12, 0x34, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0,
		2, 'B', 'l', 4, 'T', 'e', 's', 't', 0, 0, 1, 0, 1,
	};
	static const struct {
		const char *label; size_t at; unsigned char set; int want; bool response; unsigned rcode;
	} rows[] = {
		{ "SERVFAIL", 0, 0, 1, true, 2 },
		{ "REFUSED", 3, 0x85, 1, true, 5 },
		{ "NOTIMP", 3, 0x84, 1, true, 4 },
		{ "FORMERR", 3, 0x81, 1, true, 1 },
		{ "NOERROR", 3, 0x80, 1, true, 0 },
		{ "a query (QR clear)", 2, 0x01, 1, false, 2 },
		{ "two questions", 5, 2, 0, true, 2 },
		{ "no question", 5, 0, 0, true, 2 },
		{ "a label running past the end", 12, 0x3f, -1, true, 2 },
	};
	unsigned char buf[sizeof(sf)];
	char name[DNS_NAME_TEXT_MAX];
	struct dns_msg_head h;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		memcpy(buf, sf, sizeof(sf));
		if (rows[i].at)
			buf[rows[i].at] = rows[i].set;
		int rc = dns_msg_question(buf, sizeof(buf), name, sizeof(name), &h);
		if (rc != rows[i].want || (rc >= 0 && (h.response != rows[i].response || h.rcode != rows[i].rcode ||
		    h.id != 0x1234)))
			fail_msg("%s: got %d (response %d rcode %u id %#x), want %d", rows[i].label, rc,
			    h.response, h.rcode, h.id, rows[i].want);
	}
	assert_int_equal(dns_msg_question(sf, sizeof(sf), name, sizeof(name), &h), 1);
	assert_string_equal(name, "Bl.Test");
	assert_int_equal(h.qtype, 1);
	for (size_t len = 0; len < sizeof(sf); len++)	/* every cut: refused, never read past */
		assert_true(dns_msg_question(sf, len, name, sizeof(name), &h) < 0);
	assert_int_equal(dns_msg_question(sf, sizeof(sf), name, 4, &h), -1);	/* no room */
}

/* dns_frame_feed: a TCP stream of two messages (RFC 1035 4.2.2) fed whole, and in pieces
 * of every size, gives the same two messages; a message longer than DNS_FRAME_HEAD keeps
 * its head. */
static void test_frame_feed(void **state)
{
	static const unsigned char stream[] = {
		0, 5, 'h', 'e', 'l', 'l', 'o',
		0, 0,			/* an empty message */
		0, 3, 'a', 'b', 'c',
	};
	static const char *want[] = { "hello", "", "abc" };

	(void)state;
	for (size_t piece = 1; piece <= sizeof(stream); piece++) {
		struct dns_frame f;
		size_t got = 0;

		memset(&f, 0, sizeof(f));
		for (size_t off = 0; off < sizeof(stream); off += piece) {
			size_t n = sizeof(stream) - off < piece ? sizeof(stream) - off : piece;

			for (size_t used = 0; used < n;) {
				bool done;
				size_t u = dns_frame_feed(&f, stream + off + used, n - used, &done);

				assert_true(u > 0);
				used += u;
				if (!done)
					continue;
				assert_true(got < 3);
				assert_int_equal(f.have, strlen(want[got]));
				assert_memory_equal(f.head, want[got], f.have);
				got++;
			}
		}
		if (got != 3)
			fail_msg("pieces of %zu: %zu messages, want 3", piece, got);
	}

	/* a long message: its first DNS_FRAME_HEAD octets kept, the rest read past */
	size_t len = DNS_FRAME_HEAD + 100;
	unsigned char *big = calloc(1, len + 2);
	struct dns_frame f;
	bool done;

	assert_non_null(big);
	big[0] = (unsigned char)(len >> 8);
	big[1] = (unsigned char)len;
	big[2] = 0x42;
	memset(&f, 0, sizeof(f));
	assert_int_equal(dns_frame_feed(&f, big, len + 2, &done), len + 2);
	assert_true(done);
	assert_int_equal(f.have, DNS_FRAME_HEAD);
	assert_int_equal(f.head[0], 0x42);
	free(big);
}

/* Frees the answers of res and zeroes it. */
static void res_clear(struct dns_result *res)
{
	for (size_t i = 0; i < res->n; i++)
		free(res->v[i]);
	free(res->v);
	memset(res, 0, sizeof(*res));
}

typedef int (*names_reader)(const unsigned char *, size_t, struct dns_result *, size_t, size_t *);

/* Reads r[0..n) with read: the names want[0..nwant) in order and want_skipped skipped; then
 * every cut of r, each read cleanly or refused (ASan sees any read past it). */
static void expect_names(names_reader read, const unsigned char *r, size_t n, size_t want_skipped,
    const char *const *want, size_t nwant)
{
	struct dns_result res;
	size_t skipped = 0;

	memset(&res, 0, sizeof(res));
	assert_int_equal(read(r, n, &res, 16, &skipped), 0);
	assert_int_equal(skipped, want_skipped);
	assert_int_equal(res.n, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(res.v[i], want[i]);
	res_clear(&res);
	for (size_t len = 0; len < n; len++) {
		(void)read(r, len, &res, 16, NULL);
		res_clear(&res);
	}
	assert_int_equal(read(r, 11, &res, 16, NULL), -1);
	assert_int_equal(res.n, 0);
}

/* PTR answers read by our own scanner: malformed names skipped, good ones kept, other
 * owners ignored, CNAME followed, every truncation fails cleanly. */
static void test_ptr_names(void **state)
{
	/* question 1.2.test PTR; answers: "a b.x" (a space), "ok.x", a PTR of "other"
	 * (a wrong owner), CNAME -> c.test, then a PTR of c.test "c.x" */
	static const unsigned char r[] = {
		0x12, 0x34, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0,
		1, '1', 1, '2', 4, 't', 'e', 's', 't', 0, 0, 12, 0, 1,		/* 12..31 */
		0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 7, 3, 'a', ' ', 'b', 1, 'x', 0,
		0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 6, 2, 'o', 'k', 1, 'x', 0,
		5, 'o', 't', 'h', 'e', 'r', 0, 0, 12, 0, 1, 0, 0, 0, 60, 0, 5, 3, 'b', 'a', 'd', 0,
		0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, 'c', 0xc0, 16,
		1, 'c', 0xc0, 16, 0, 12, 0, 1, 0, 0, 0, 60, 0, 5, 1, 'c', 1, 'x', 0,
	};
	static const char *const want[] = { "ok.x", "c.x" };

	(void)state;
	expect_names(dns_reply_ptr_names, r, sizeof(r), 1, want, 2);
}

/* MX answers read by the same scanner: "PREFERENCE NAME", the null MX (RFC 7505) as
 * "0 .", a malformed exchange skipped, another owner's record ignored, every truncation
 * fails cleanly. */
static void test_mx_names(void **state)
{
	/* question d.test MX; answers: 10 mx.x, 0 . (the root), 20 "a b" (a space), an MX of
	 * "other" (a wrong owner), an MX whose RDATA is too short for its exchange */
	static const unsigned char r[] = {
		0x12, 0x34, 0x81, 0x80, 0, 1, 0, 4, 0, 0, 0, 0,
		1, 'd', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,				/* 12..23 */
		0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 8, 0, 10, 2, 'm', 'x', 1, 'x', 0,
		0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 3, 0, 0, 0,
		0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 7, 0, 20, 3, 'a', ' ', 'b', 0,
		5, 'o', 't', 'h', 'e', 'r', 0, 0, 15, 0, 1, 0, 0, 0, 60, 0, 3, 0, 5, 0,
	};
	static const unsigned char shortrd[] = {
		0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'd', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
		0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 2, 0, 10,
	};
	static const char *const want[] = { "10 mx.x", "0 ." };
	struct dns_result res;

	(void)state;
	expect_names(dns_reply_mx_names, r, sizeof(r), 1, want, 2);
	memset(&res, 0, sizeof(res));
	assert_int_equal(dns_reply_mx_names(shortrd, sizeof(shortrd), &res, 16, NULL), -1);
	assert_int_equal(res.n, 0);
	/* the PTR reader takes none of them */
	memset(&res, 0, sizeof(res));
	assert_int_equal(dns_reply_ptr_names(r, sizeof(r), &res, 16, NULL), 0);
	assert_int_equal(res.n, 0);
}

/* ---- resolver against the fake server ----------------------------------------------- */

static const struct fake_rr zone[] = {
	{ "7.1.18.198.bl.test", 1, "127.0.0.2", 300 },
	{ "7.1.18.198.bl.test", 16, "Listed in bl.test", 300 },
	{ "host.test", 1, "198.18.1.7", 300 },
	{ "host.test", 28, "2001:db8::7", 300 },
	{ "7.1.18.198.in-addr.arpa", 12, "host.test", 300 },
	{ "refused.bl.test", 1, "127.255.255.254", 300 },
};

struct got {
	int calls;
	struct dns_result r;
	char first[256];
};

static void got_cb(void *arg, const struct dns_result *res)
{
	struct got *g = arg;

	g->calls++;
	g->r = *res;
	g->r.v = NULL;
	snprintf(g->first, sizeof(g->first), "%s", res->n ? res->v[0] : "");
}

struct fixture {
	uv_loop_t loop;
	struct fake_dns fd;
	struct dns_resolver *r;
	struct dns_cache *cache;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char servers[64];

	uv_loop_init(&f->loop);
	assert_int_equal(fake_dns_start(&f->fd, &f->loop, zone, sizeof(zone) / sizeof(zone[0])), 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", f->fd.port);
	/* a timeout a loaded machine meets (a stall past 300 ms timed out queries the fake
	 * answers at once); the tests of a deadline give their queries one of their own */
	f->r = dns_resolver_new(&f->loop, servers, 30000, 2);
	assert_non_null(f->r);
	f->cache = dns_cache_new(100);
	dns_resolver_set_cache(f->r, f->cache);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dns_resolver_release(f->r);
	fake_dns_stop(&f->fd);
	uv_run(&f->loop, UV_RUN_DEFAULT);	/* close callbacks free everything */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	dns_cache_free(f->cache);
	free(f);
	return 0;
}

static void test_resolve_a_and_cache(void **state)
{
	struct fixture *f = *state;
	struct got g = { 0 };
	struct dns_query *q;

	q = dns_query_start(f->r, DNS_T_A, "7.1.18.198.bl.test", 0, got_cb, &g);
	assert_non_null(q);
	assert_int_equal(dns_resolver_pending(f->r), 1);
	run_until_count(&f->loop, &g.calls, 1, 2000);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.status, DNS_S_OK);
	assert_string_equal(g.first, "127.0.0.2");
	assert_int_equal(g.r.ttl, 300);
	assert_false(g.r.cached);
	assert_int_equal(f->fd.queries, 1);
	/* the second time comes from the cache, synchronously */
	q = dns_query_start(f->r, DNS_T_A, "7.1.18.198.BL.test", 0, got_cb, &g);
	assert_null(q);
	assert_int_equal(g.calls, 2);
	assert_true(g.r.cached);
	assert_string_equal(g.first, "127.0.0.2");
	assert_int_equal(f->fd.queries, 1);
}

static void test_resolve_types(void **state)
{
	struct fixture *f = *state;
	struct got t = { 0 }, p = { 0 }, a6 = { 0 };

	dns_query_start(f->r, DNS_T_TXT, "7.1.18.198.bl.test", 0, got_cb, &t);
	dns_query_start(f->r, DNS_T_PTR, "7.1.18.198.in-addr.arpa", 0, got_cb, &p);
	dns_query_start(f->r, DNS_T_AAAA, "host.test", 0, got_cb, &a6);
	run_until_count(&f->loop, &t.calls, 1, 2000);
	run_until_count(&f->loop, &p.calls, 1, 2000);
	run_until_count(&f->loop, &a6.calls, 1, 2000);
	assert_int_equal(t.r.status, DNS_S_OK);
	assert_string_equal(t.first, "Listed in bl.test");
	assert_int_equal(t.r.ttl, 300);
	assert_int_equal(p.r.status, DNS_S_OK);
	assert_string_equal(p.first, "host.test");
	assert_int_equal(a6.r.status, DNS_S_OK);
	assert_string_equal(a6.first, "2001:db8::7");
}

static void test_resolve_negative(void **state)
{
	struct fixture *f = *state;
	struct got nx = { 0 }, nodata = { 0 }, sf = { 0 };

	dns_query_start(f->r, DNS_T_A, "9.9.18.198.bl.test", 0, got_cb, &nx);
	dns_query_start(f->r, DNS_T_TXT, "host.test", 0, got_cb, &nodata);
	dns_query_start(f->r, DNS_T_A, "servfail.bl.test", 0, got_cb, &sf);
	run_until_count(&f->loop, &nx.calls, 1, 2000);
	run_until_count(&f->loop, &nodata.calls, 1, 2000);
	run_until_count(&f->loop, &sf.calls, 1, 2000);
	assert_int_equal(nx.r.status, DNS_S_NXDOMAIN);
	assert_int_equal(nx.r.ttl, 30);	/* the SOA's MINIMUM */
	assert_int_equal(nodata.r.status, DNS_S_NODATA);
	/* c-ares retries a SERVFAIL and then (1.18) reports it as ECONNREFUSED, as it does an
	 * ICMP refusal: dns.c saw the SERVFAIL answers and says servfail, not failed (a newer
	 * c-ares says SERVFAIL itself); at once, not a timeout */
	assert_int_equal(sf.r.status, DNS_S_SERVFAIL);
	/* NXDOMAIN is cached, SERVFAIL is not */
	nx.calls = 0;
	assert_null(dns_query_start(f->r, DNS_T_A, "9.9.18.198.bl.test", 0, got_cb, &nx));
	assert_int_equal(nx.calls, 1);
	assert_int_equal(nx.r.status, DNS_S_NXDOMAIN);
	assert_non_null(dns_query_start(f->r, DNS_T_A, "servfail.bl.test", 0, got_cb, &sf));
	run_until_count(&f->loop, &sf.calls, 2, 2000);
	/* an NXDOMAIN without an SOA is not cached (RFC 2308 5: it SHOULD NOT be) */
	struct got ns = { 0 };
	int before = f->fd.queries;

	assert_non_null(dns_query_start(f->r, DNS_T_A, "nosoa.bl.test", 0, got_cb, &ns));
	run_until_count(&f->loop, &ns.calls, 1, 2000);
	assert_int_equal(ns.r.status, DNS_S_NXDOMAIN);
	assert_int_equal(ns.r.ttl, 0);
	assert_non_null(dns_query_start(f->r, DNS_T_A, "nosoa.bl.test", 0, got_cb, &ns));
	run_until_count(&f->loop, &ns.calls, 2, 2000);
	assert_int_equal(ns.r.status, DNS_S_NXDOMAIN);
	assert_int_equal(f->fd.queries - before, 2);
}

static void test_resolve_timeout(void **state)
{
	struct fixture *f = *state;
	struct got g = { 0 }, g2 = { 0 };
	uint64_t t0 = uv_hrtime();
	double ms;

	dns_query_start(f->r, DNS_T_A, "drop.bl.test", 1000, got_cb, &g);
	dns_query_start(f->r, DNS_T_A, "drop.two.test", 100, got_cb, &g2);	/* own, shorter */
	run_until_count(&f->loop, &g2.calls, 1, 3000);
	assert_int_equal(g2.r.status, DNS_S_TIMEOUT);
	assert_int_equal(g.calls, 0);
	run_until_count(&f->loop, &g.calls, 1, 3000);
	ms = (double)(uv_hrtime() - t0) / 1e6;
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.status, DNS_S_TIMEOUT);
	/* not before its 1 s deadline (counted from before the start: load only makes it
	 * later); the deadline ended it, not c-ares (15 s a try here); no upper bound:
	 * run_until_count's is a hang guard. The 1 s is the margin of the order above: a stall
	 * longer than 0.9 s would expire both in one pass */
	assert_true(ms >= 950);
	assert_int_equal(dns_resolver_pending(f->r), 0);
	/* the loop still works afterwards and nothing fires twice */
	run_until_count(&f->loop, &g.calls, 2, 800);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g2.calls, 1);
}

static void test_cancel(void **state)
{
	struct fixture *f = *state;
	struct got g = { 0 }, other = { 0 };
	struct dns_query *q;

	q = dns_query_start(f->r, DNS_T_A, "host.test", 0, got_cb, &g);
	assert_non_null(q);
	dns_query_cancel(q);
	assert_int_equal(dns_resolver_pending(f->r), 0);
	q = dns_query_start(f->r, DNS_T_A, "drop.x.test", 0, got_cb, &g);
	dns_query_cancel(q);
	dns_query_start(f->r, DNS_T_A, "7.1.18.198.bl.test", 0, got_cb, &other);
	run_until_count(&f->loop, &other.calls, 1, 2000);
	run_until_count(&f->loop, &g.calls, 1, 600);	/* past the timeout: still nothing */
	assert_int_equal(g.calls, 0);
	dns_query_cancel(NULL);
}

/* The same question asked while it is on its way is not sent again: the followers get the
 * leader's answer, cancelling the leader or a follower leaves the others theirs, a follower's
 * own shorter time limit still holds, and releasing the resolver frees them unheard. */
static void test_coalesce(void **state)
{
	struct fixture *f = *state;
	struct got a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, e = { 0 };
	struct dns_query *qa, *qb, *qc, *qd;
	int before = f->fd.queries;

	qa = dns_query_start(f->r, DNS_T_A, "host.test", 0, got_cb, &a);
	qb = dns_query_start(f->r, DNS_T_A, "HOST.test", 0, got_cb, &b);
	qc = dns_query_start(f->r, DNS_T_A, "host.test", 0, got_cb, &c);
	assert_non_null(qa);
	assert_non_null(qb);
	assert_non_null(qc);
	assert_int_equal(dns_resolver_coalesced(f->r), 2);
	assert_int_equal(dns_resolver_pending(f->r), 3);
	dns_query_cancel(qa);      /* the leader goes: the followers still get the answer */
	dns_query_cancel(qb);
	run_until_count(&f->loop, &c.calls, 1, 2000);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.r.status, DNS_S_OK);
	assert_string_equal(c.first, "198.18.1.7");
	assert_int_equal(f->fd.queries - before, 1);
	assert_int_equal(dns_resolver_pending(f->r), 0);
	/* a follower with a shorter limit of its own times out at it, the leader later (its
	 * 10 s are the margin: a stall that long would expire both in one pass). Before, a
	 * follower did not arm the timer: it timed out with the next timer (the leader's
	 * deadline, c-ares' next try), here after 10 s, past run_until_count's guard */
	qd = dns_query_start(f->r, DNS_T_A, "drop.same.test", 10000, got_cb, &d);
	dns_query_start(f->r, DNS_T_A, "drop.same.test", 100, got_cb, &e);
	run_until_count(&f->loop, &e.calls, 1, 2000);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.r.status, DNS_S_TIMEOUT);
	assert_int_equal(d.calls, 0);
	dns_query_cancel(qd);
	/* pending followers when the last reference goes (teardown): freed, never called */
	dns_query_start(f->r, DNS_T_A, "drop.gone.test", 0, got_cb, &e);
	dns_query_start(f->r, DNS_T_A, "drop.gone.test", 0, got_cb, &e);
	assert_int_equal(dns_resolver_coalesced(f->r), 4);
}

/* The in-flight table's bucket hash before siphash.h: FNV-1a from the type (DNS_T_A), the
 * name case folded, modulo its 256 buckets. */
static uint64_t inflight_fnv(const char *name)
{
	uint64_t h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ (uint64_t)tolower(*p)) * 1099511628211ull;
	return h % 256;
}

/* 300 names never answered ("drop."), all in one of 256 buckets under the in-flight table's
 * old public hash, asked at once: each new question walked every one before it. */
static void test_inflight_collisions(void **state)
{
	enum { N = 300 };
	static char names[N][COLLIDE_NAME_MAX];
	struct fixture *f = *state;
	struct got g = { 0 };

	assert_int_equal(collide_find(names, N, "drop.h%u.flood.test", inflight_fnv, UINT64_MAX), N);
	for (int i = 0; i < N; i++)
		assert_non_null(dns_query_start(f->r, DNS_T_A, names[i], 0, got_cb, &g));
	assert_int_equal(dns_resolver_pending(f->r), N);
	assert_int_equal(dns_resolver_coalesced(f->r), 0);
	assert_in_range(dns_resolver_inflight_longest(f->r), 1, 16);
	assert_int_equal(g.calls, 0);      /* teardown's release: never called */
}

static void test_release_with_pending(void **state)
{
	uv_loop_t loop;
	struct fake_dns fd;
	struct dns_resolver *r;
	struct got g = { 0 };
	char servers[64];

	(void)state;
	uv_loop_init(&loop);
	fake_dns_start(&fd, &loop, zone, 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", fd.port);
	r = dns_resolver_new(&loop, servers, 500, 1);
	dns_query_start(r, DNS_T_A, "drop.a.test", 0, got_cb, &g);
	dns_query_start(r, DNS_T_A, "drop.b.test", 0, got_cb, &g);
	dns_resolver_release(r);	/* callbacks must not run */
	fake_dns_stop(&fd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(g.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unreachable_server(void **state)
{
	uv_loop_t loop;
	struct dns_resolver *r;
	struct got g = { 0 };

	(void)state;
	uv_loop_init(&loop);
	/* port 9 (discard) has no listener: ICMP refusal or silence, either way bounded (by the
	 * 400 ms deadline: test_resolve_timeout shows it ends a query; run_until_count's bound
	 * is a hang guard) */
	r = dns_resolver_new(&loop, "127.0.0.1:9", 400, 2);
	dns_query_start(r, DNS_T_A, "x.bl.test", 0, got_cb, &g);
	run_until_count(&loop, &g.calls, 1, 3000);
	assert_int_equal(g.calls, 1);
	/* refused (ICMP: FAILED, at once) or silence (TIMEOUT, at the deadline) */
	assert_true(g.r.status == DNS_S_FAILED || g.r.status == DNS_S_TIMEOUT);
	assert_int_equal(dns_resolver_pending(r), 0);
	dns_resolver_release(r);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* c-ares 1.18: a server that closes a TCP connection unanswered has every socket to it
 * reset, and a UDP query out to it at that moment ends with ECONNREFUSED: it is asked once
 * more (answered here), not delivered as failed, and well before a try's timeout. */
static void test_tcp_close_spares_others(void **state)
{
	static const struct fake_rr zone[] = { { "hold.a.test", 1, "127.0.0.9", 300 } };
	uv_loop_t loop;
	struct fake_dns fd;
	struct dns_resolver *r;
	struct got ga = { 0 }, gb = { 0 };
	char servers[64];

	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(fake_dns_start_tcp(&fd, &loop, zone, 1), 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", fd.port);
	r = dns_resolver_new(&loop, servers, 4000, 1);   /* one try (dns.tries: 1): c-ares 1.18 retries a reset query on a lone server while it has tries left */
	assert_non_null(r);
	dns_query_start(r, DNS_T_A, "hold.a.test", 0, got_cb, &ga);
	run_until_count(&loop, &fd.queries, 1, 1000);          /* out, held by the server */
	assert_int_equal(fd.queries, 1);
	dns_query_start(r, DNS_T_TXT, "tc.b.test", 0, got_cb, &gb);
	run_until_count(&loop, &fd.tcp_closed, 1, 1000);
	assert_int_equal(fd.tcp_closed, 1);
	run_until_count(&loop, &ga.calls, 1, 3000);
	assert_int_equal(ga.calls, 1);
	assert_int_equal(ga.r.status, DNS_S_OK);
	/* answered: asked once more at once (one try: c-ares would not ask again, and the 4 s
	 * deadline would have ended it as a timeout), not by a wall clock */
	assert_string_equal(ga.first, "127.0.0.9");
	run_until_count(&loop, &gb.calls, 1, 5000);
	assert_int_equal(gb.calls, 1);
	assert_true(gb.r.status != DNS_S_OK);               /* its TCP answer never came */
	assert_int_equal(fd.tcp_closed, 2);                 /* asked once more, not again and again */
	dns_resolver_release(r);
	fake_dns_stop(&fd);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	struct got g = { 0 };
	char longname[300];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(dns_query_start(f->r, DNS_T_A, "", 0, got_cb, &g));
	assert_int_equal(g.r.status, DNS_S_ERROR);
	/* names that cannot exist are answered NXDOMAIN at once, nothing asked */
	assert_null(dns_query_start(f->r, DNS_T_A, longname, 0, got_cb, &g));
	assert_int_equal(g.r.status, DNS_S_NXDOMAIN);
	longname[64] = '\0';
	assert_null(dns_query_start(f->r, DNS_T_TXT, longname, 0, got_cb, &g));
	assert_int_equal(g.r.status, DNS_S_NXDOMAIN);
	assert_null(dns_query_start(f->r, DNS_T_A, "a..test", 0, got_cb, &g));
	assert_int_equal(g.r.status, DNS_S_NXDOMAIN);
	assert_int_equal(f->fd.queries, 0);
	assert_null(dns_query_start(NULL, DNS_T_A, "x.test", 0, got_cb, &g));
	assert_int_equal(g.calls, 5);
	assert_int_equal(g.r.status, DNS_S_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reverse_names),
		cmocka_unit_test(test_cache_ttl),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_cache_collisions),
		cmocka_unit_test(test_negative_ttl),
		cmocka_unit_test(test_cache_put_reply),
		cmocka_unit_test(test_msg_question),
		cmocka_unit_test(test_frame_feed),
		cmocka_unit_test(test_ptr_names),
		cmocka_unit_test(test_mx_names),
		cmocka_unit_test_setup_teardown(test_resolve_a_and_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalesce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_collisions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test(test_release_with_pending),
		cmocka_unit_test(test_unreachable_server),
		cmocka_unit_test(test_tcp_close_spares_others),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
