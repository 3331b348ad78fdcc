/* test_domain.c — the domain syntax check, the normal form, the pattern set that routes and
 * accept_domains share, and the open-relay battery (nmap smtp-open-relay, Metasploit
 * smtp_relay and the classic forms) through the real RCPT parser and the relay check; names
 * made to collide under a public hash spread over the set's slots anyway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "collide_fixture.h"
#include "config_fixture.h"
#include "backend.h"
#include "config.h"
#include "hook.h"
#include "filters/ratelimit.h"
#include "domain.h"
#include "smtp_cmd.h"

struct syntax_row {
	const char *label;
	const char *d;
	enum domain_syntax want;
	bool utf8;
};

static const struct syntax_row syntax_rows[] = {
	{ "plain", "example.org", DOMAIN_OK },
	{ "single label", "localhost", DOMAIN_OK },
	{ "digits", "123.example", DOMAIN_OK },
	{ "upper case", "EXAMPLE.Org", DOMAIN_OK },
	{ "trailing root dot", "example.org.", DOMAIN_OK },
	{ "two trailing dots", "example.org..", DOMAIN_BAD },
	{ "only a dot", ".", DOMAIN_BAD },
	{ "empty", "", DOMAIN_BAD },
	{ "leading dot", ".example.org", DOMAIN_BAD },
	{ "empty label", "a..b", DOMAIN_BAD },
	{ "leading hyphen", "-a.b", DOMAIN_BAD },
	{ "trailing hyphen", "a-.b", DOMAIN_BAD },
	{ "inner hyphens", "a--b.c", DOMAIN_OK },
	{ "underscore", "_dmarc.example.org", DOMAIN_OK },
	{ "space", "a b.c", DOMAIN_BAD },
	{ "percent", "a%b.c", DOMAIN_BAD },
	{ "at", "a@b.c", DOMAIN_BAD },
	{ "wildcard is not a name", "*.example.org", DOMAIN_BAD },
	{ "U-label", "b\xc3\xbc" "cher.example", DOMAIN_OK, true },
	{ "bad UTF-8", "b\xc3.example", DOMAIN_BAD },
	{ "label of 63",
	  "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc.org", DOMAIN_OK },
	{ "label of 64",
	  "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd.org", DOMAIN_TOO_LONG },
	{ "IPv4 literal", "[192.0.2.1]", DOMAIN_OK },
	{ "IPv6 literal", "[IPv6:2001:db8::1]", DOMAIN_OK },
	{ "IPv6 v4-mapped literal", "[IPv6:::ffff:192.0.2.1]", DOMAIN_OK },
	{ "bad IPv4 literal", "[192.0.2.256]", DOMAIN_BAD },
	{ "name in brackets", "[example.org]", DOMAIN_BAD },
	{ "general literal", "[x400:anything]", DOMAIN_LITERAL_UNSUPPORTED },
	{ "IPv6 without tag", "[::1]", DOMAIN_BAD },
	{ "IPv6 without tag, tag-like", "[2001:db8::1]", DOMAIN_LITERAL_UNSUPPORTED },
	{ "unclosed literal", "[192.0.2.1", DOMAIN_BAD },
	{ "nested bracket", "[[192.0.2.1]]", DOMAIN_BAD },
	{ "literal with space", "[192.0.2.1 ]", DOMAIN_BAD },
};

static void test_syntax(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(syntax_rows) / sizeof(syntax_rows[0]); i++) {
		const struct syntax_row *r = &syntax_rows[i];
		bool utf8 = !r->utf8;
		enum domain_syntax got = domain_check(r->d, strlen(r->d), &utf8);

		if (got != r->want)
			fail_msg("%s: got %d want %d", r->label, got, r->want);
		if (got == DOMAIN_OK && utf8 != r->utf8)
			fail_msg("%s: utf8 %d", r->label, utf8);
		utf8 = !r->utf8;
		got = domain_check_general(r->d, strlen(r->d), &utf8);
		if (got != r->want || (got == DOMAIN_OK && utf8 != r->utf8))
			fail_msg("%s: general path got %d (utf8 %d)", r->label, got, utf8);
	}
	/* 255 octets pass, 256 do not */
	char d[300];
	memset(d, 'a', sizeof(d));
	for (size_t i = 50; i < 250; i += 51)
		d[i] = '.';
	assert_int_equal(domain_check(d, 255, NULL), DOMAIN_OK);
	assert_int_equal(domain_check(d, 256, NULL), DOMAIN_TOO_LONG);
	/* with its root dot a 255-octet name is 256 octets long and still fine */
	d[255] = '.';
	assert_int_equal(domain_check(d, 256, NULL), DOMAIN_OK);
}

/* domain_check (fast path for the usual ASCII name, else the general path) and
 * domain_check_general agree on the result and on *utf8. */
static void check_same(const char *d, size_t n)
{
	bool u1 = true, u2 = false;
	enum domain_syntax a = domain_check(d, n, &u1), b = domain_check_general(d, n, &u2);

	if (a != b || (a == DOMAIN_OK && u1 != u2))
		fail_msg("\"%.*s\" (%zu): fast %d/%d general %d/%d", (int)n, d, n, a, u1, b, u2);
}

static void test_fast_path_same(void **state)
{
	(void)state;
	static const char alpha[] = { 'a', 'Z', '9', '-', '_', '.', '[', ']', ' ', '\xc3', '\xa9' };
	const size_t na = sizeof(alpha);
	char buf[600];

	/* every string of up to 6 octets over alpha, alone and inside a longer name */
	for (size_t len = 0; len <= 6; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= na;
		for (size_t k = 0; k < total; k++) {
			size_t v = k;
			for (size_t i = 0; i < len; i++, v /= na)
				buf[3 + i] = alpha[v % na];
			memcpy(buf, "ab.", 3);
			memcpy(buf + 3 + len, ".cd", 3);
			check_same(buf + 3, len);
			check_same(buf, len + 3);
			check_same(buf + 3, len + 3);
			check_same(buf, len + 6);
		}
	}
	/* label lengths 62..64 at each place, hyphens at a label's ends, whole names of
	 * 254..256 octets with and without a root dot */
	for (size_t lab = 61; lab <= 65; lab++)
		for (int where = 0; where < 3; where++)
			for (int hy = 0; hy < 3; hy++) {
				size_t n = 0;
				for (int l = 0; l < 3; l++) {
					size_t m = l == where ? lab : 3;
					memset(buf + n, 'x', m);
					if (l == where && hy == 1)
						buf[n] = '-';
					if (l == where && hy == 2)
						buf[n + m - 1] = '-';
					n += m;
					buf[n++] = '.';
				}
				check_same(buf, n - 1);
				check_same(buf, n);
			}
	for (size_t n = 250; n <= 258; n++)
		for (size_t dot = 1; dot < 64; dot += 7) {
			memset(buf, 'q', n);
			for (size_t i = dot; i + 1 < n; i += dot + 1)
				buf[i] = '.';
			check_same(buf, n);
			buf[n - 1] = '.';
			check_same(buf, n);
		}
}

static void test_normalize(void **state)
{
	(void)state;
	char out[DOMAIN_MAX + 1];

	assert_int_equal(domain_normalize("Example.ORG.", 12, out, sizeof(out)), 11);
	assert_string_equal(out, "example.org");
	/* U-labels as A-labels, Unicode case folded (UTS #46), as Postfix compares them */
	assert_int_equal(domain_normalize("B\xc3\x9c" "CHER.example", 15, out, sizeof(out)), 21);
	assert_string_equal(out, "xn--bcher-kva.example");
	assert_int_equal(domain_normalize("XN--BCHER-KVA.Example", 21, out, sizeof(out)), 21);
	assert_string_equal(out, "xn--bcher-kva.example");
	/* not valid IDNA (a lone combining mark starts the label): the octets as they are */
	assert_int_equal(domain_normalize("\xcc\x81" "x.example", 11, out, sizeof(out)), 11);
	assert_string_equal(out, "\xcc\x81" "x.example");
	assert_int_equal(domain_normalize(".", 1, out, sizeof(out)), 1);   /* the root stays "." */
	assert_int_equal(domain_normalize("", 0, out, sizeof(out)), -1);
	assert_int_equal(domain_normalize("a\0b", 3, out, sizeof(out)), -1);
	assert_int_equal(domain_normalize("example.org", 11, out, 11), -1);   /* no room for NUL */
	assert_true(domain_equal("LOCAL.test.", "local.TEST"));
	assert_false(domain_equal("local.test..", "local.test"));
	assert_true(domain_equal("xn--bcher-kva.example", "b\xc3\xbc" "cher.example"));
	/* a root dot spelt as U+3002, which UTS #46 maps to '.', goes as "." does, once */
	assert_true(domain_equal("b\xc3\xbc" "cher.example\xe3\x80\x82", "xn--bcher-kva.example"));
	assert_true(domain_equal("b\xc3\xbc" "cher.example\xe3\x80\x82", "b\xc3\xbc" "cher.example."));
	assert_false(domain_equal("b\xc3\xbc" "cher.example.\xe3\x80\x82", "b\xc3\xbc" "cher.example"));
	assert_false(domain_equal("b\xc3\xbc" "cher.example\xe3\x80\x82.", "b\xc3\xbc" "cher.example"));
	assert_int_equal(domain_normalize("[IPv6:2001:DB8:0:0::1]", 22, out, sizeof(out)), 18);
	assert_string_equal(out, "[ipv6:2001:db8::1]");
	assert_true(domain_equal("[IPv6:0:0:0:0:0:ffff:c000:201]", "[ipv6:::ffff:192.0.2.1]"));
	assert_string_equal(domain_of_address("\"a@b\"@c.test"), "c.test");
	assert_null(domain_of_address("Postmaster"));
}

/* reject_non_fqdn_sender / _recipient's test (session 22) */
static void test_address_is_fqdn(void **state)
{
	static const struct { const char *addr; bool want; } rows[] = {
		{ "a@example.org", true },
		{ "a@example.org.", true },
		{ "\"u@x\"@example.test", true },
		{ "a@[192.0.2.1]", true },
		{ "a@[IPv6:2001:db8::1]", true },
		{ "Postmaster", true },
		{ "a@localname", false },
		{ "a@localname.", false },
		{ "\"u@x.y\"@localname", false },
		{ "a@b\xc3\xbc" "cher", false },
		{ "a@b\xc3\xbc" "cher.example", true },
		{ "a@b\xc3\xbc" "cher\xe3\x80\x82" "example", true },   /* U+3002, a full stop in UTS #46 */
		{ "a@localname\xe3\x80\x82", false },                   /* ... as a root dot */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (domain_address_is_fqdn(rows[i].addr) != rows[i].want)
			fail_msg("%s: want %d", rows[i].addr, rows[i].want);
}

struct match_row {
	const char *label;
	const char *domain;
	bool want;
};

static void test_set(void **state)
{
	(void)state;
	const char *err = NULL;
	struct domain_set *s = domain_set_new();
	static const char *const patterns[] = { "Local.Test", "*.sub.example", "[192.0.2.1]",
		"[IPv6:2001:DB8::1]", "b\xc3\xbc" "cher.example", "local.test." };

	assert_non_null(s);
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
		if (domain_set_add(s, patterns[i], &err) != 0)
			fail_msg("add %s: %s", patterns[i], err);
	assert_int_equal(domain_set_count(s), 5);   /* local.test once */

	static const struct match_row rows[] = {
		{ "exact", "local.test", true },
		{ "case", "LOCAL.TEST", true },
		{ "one trailing dot", "local.test.", true },
		{ "two trailing dots", "local.test..", false },
		{ "subdomain of exact", "a.local.test", false },
		{ "suffix without dot", "xlocal.test", false },
		{ "longer name", "local.test.other", false },
		{ "wildcard one level", "a.sub.example", true },
		{ "wildcard deep", "x.y.SUB.example.", true },
		{ "wildcard not the apex", "sub.example", false },
		{ "wildcard no dot boundary", "asub.example", false },
		{ "IPv4 literal", "[192.0.2.1]", true },
		{ "other literal", "[192.0.2.2]", false },
		{ "IPv6 literal any case", "[ipv6:2001:db8::1]", true },
		/* one address, any text form (RFC 5952 is only a recommendation) */
		{ "IPv6 literal uncompressed", "[IPv6:2001:db8:0:0:0:0:0:1]", true },
		{ "IPv6 literal leading zeros", "[IPv6:2001:0db8::0001]", true },
		{ "IPv6 literal dotted tail", "[IPv6:2001:db8::0.0.0.1]", true },
		{ "IPv6 other address", "[IPv6:2001:db8::2]", false },
		{ "U-label exact octets", "b\xc3\xbc" "cher.example", true },
		{ "U-label upper case", "B\xc3\x9c" "CHER.EXAMPLE", true },
		{ "its A-label", "xn--bcher-kva.example", true },
		{ "another A-label", "xn--bcher-kvb.example", false },
		{ "empty", "", false },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (domain_set_match(s, rows[i].domain) != rows[i].want)
			fail_msg("%s: %s", rows[i].label, rows[i].domain);
	assert_false(domain_set_match(s, NULL));
	assert_false(domain_set_match(NULL, "local.test"));

	static const char *const bad[] = { "*", "*.", "**.example", "a.*.example", "*example.org",
		"*.[192.0.2.1]", "[x400:y]", "exa mple.org", "", "user@example.org", "-a.example",
		".", "*..", "\xe3\x80\x82", "*.\xe3\x80\x82" /* the root, its dot spelt as U+3002 */,
		"\xe1\xa0\x8b", "*.\xe1\xa0\x8b" /* U+180B alone, which UTS #46 maps to nothing */ };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (domain_set_add(s, bad[i], &err) == 0 || err == NULL)
			fail_msg("pattern \"%s\" was taken", bad[i]);
	}
	assert_int_equal(domain_set_count(s), 5);
	domain_set_free(s);
	domain_set_free(NULL);
}

static void test_set_grows(void **state)
{
	(void)state;
	const char *err;
	char name[64];
	struct domain_set *s = domain_set_new();

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), i % 2 ? "d%d.example" : "*.w%d.example", i);
		assert_int_equal(domain_set_add(s, name, &err), 0);
	}
	assert_int_equal(domain_set_count(s), 5000);
	assert_true(domain_set_match(s, "D4999.Example"));
	assert_true(domain_set_match(s, "x.w4998.example"));
	assert_false(domain_set_match(s, "w4998.example"));
	assert_false(domain_set_match(s, "d4998.example"));
	domain_set_free(s);
}

/* The set's old slot hash: FNV-1a of the normal form, folded. */
static uint64_t set_fnv(const char *name)
{
	uint64_t h = fnv1a64_str(name);

	return h ^ (h >> 29);
}

/* 1,000 names in a list (one anyone may add to: throwaway domains) that all had one home slot
 * of the set's 2,048 under its old public hash: a lookup of a client's domain walked them
 * all. Keyed, the longest probe stays short; every name still matches. */
static void test_set_forged(void **state)
{
	enum { N = 1000 };
	static char names[N][COLLIDE_NAME_MAX];
	struct domain_set *s = domain_set_new();
	const char *err;

	(void)state;
	assert_int_equal(collide_find(names, N, "n%u.flood.example", set_fnv, 2047), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(domain_set_add(s, names[i], &err), 0);
	assert_int_equal(domain_set_count(s), N);
	assert_in_range(domain_set_longest_probe(s), 1, 100);   /* linear probing: 40 in 1 of 3,000 */
	assert_true(domain_set_match(s, names[N - 1]));
	assert_false(domain_set_match(s, "absent.flood.example"));
	domain_set_free(s);
}

/* domain_set_each: every pattern once, in its normal form, "*." as below; a non-zero
 * return stops the walk and is returned. */
struct each_seen {
	char names[8][64];
	bool below[8];
	int n, stop_at;
};

static int each_cb(void *arg, const char *name, bool below)
{
	struct each_seen *e = arg;

	if (e->n == e->stop_at)
		return 7;
	assert_true(e->n < 8);
	snprintf(e->names[e->n], sizeof(e->names[0]), "%s", name);
	e->below[e->n++] = below;
	return 0;
}

static void test_set_each(void **state)
{
	(void)state;
	static const char *const pats[] = { "A.Example.", "*.B.example", "[192.0.2.1]", "a.example", NULL };
	const char *err;
	struct domain_set *s = domain_set_new();
	struct each_seen e = { .n = 0, .stop_at = -1 };
	int exact = 0, below = 0;

	for (int i = 0; pats[i]; i++)
		assert_int_equal(domain_set_add(s, pats[i], &err), 0);
	assert_int_equal(domain_set_each(s, each_cb, &e), 0);
	assert_int_equal(e.n, 3);
	for (int i = 0; i < e.n; i++) {
		if (e.below[i]) {
			assert_string_equal(e.names[i], "b.example");
			below++;
		} else {
			assert_true(strcmp(e.names[i], "a.example") == 0 || strcmp(e.names[i], "[192.0.2.1]") == 0);
			exact++;
		}
	}
	assert_int_equal(exact, 2);
	assert_int_equal(below, 1);
	e = (struct each_seen){ .n = 0, .stop_at = 1 };
	assert_int_equal(domain_set_each(s, each_cb, &e), 7);
	assert_int_equal(e.n, 1);
	e = (struct each_seen){ .n = 0, .stop_at = -1 };
	assert_int_equal(domain_set_each(NULL, each_cb, &e), 0);
	assert_int_equal(e.n, 0);
	domain_set_free(s);
}

/* ---- the open-relay battery ------------------------------------------------------------
 * accept_domains: [local.test, "*.hosted.test"]; mxgate's own names: mx.local.test,
 * [192.0.2.10]. Every row is a RCPT TO path as a relay tester sends it; the outcome is
 * what mxgate does before any backend sees it: refused by the parser (a 5xx), denied by the
 * relay check (550 5.7.1), or accepted. */
enum relay_outcome { RELAY_PARSE_5XX = 0, RELAY_DENIED, RELAY_ACCEPTED };

struct relay_row {
	const char *label;
	const char *path;
	enum relay_outcome want;
};

static const struct relay_row relay_rows[] = {
	/* nmap smtp-open-relay */
	{ "nmap: external", "<relaytest@other.test>", RELAY_DENIED },
	{ "nmap: %-hack at literal", "<relaytest%other.test@[192.0.2.10]>", RELAY_DENIED },
	{ "nmap: %-hack at our name", "<relaytest%other.test@mx.local.test>", RELAY_DENIED },
	{ "nmap: quoted external, no domain", "<\"relaytest@other.test\">", RELAY_PARSE_5XX },
	{ "nmap: quoted %-hack, no domain", "<\"relaytest%other.test\">", RELAY_PARSE_5XX },
	{ "nmap: double @ at literal", "<relaytest@other.test@[192.0.2.10]>", RELAY_PARSE_5XX },
	{ "nmap: quoted @ at literal", "<\"relaytest@other.test\"@[192.0.2.10]>", RELAY_DENIED },
	{ "nmap: double @ at our name", "<relaytest@other.test@mx.local.test>", RELAY_PARSE_5XX },
	{ "nmap: source route via literal", "<@[192.0.2.10]:relaytest@other.test>", RELAY_DENIED },
	{ "nmap: source route via our name", "<@mx.local.test:relaytest@other.test>", RELAY_DENIED },
	{ "nmap: bang path, no domain", "<other.test!relaytest>", RELAY_PARSE_5XX },
	{ "nmap: bang path at literal", "<other.test!relaytest@[192.0.2.10]>", RELAY_DENIED },
	{ "nmap: bang path at our name", "<other.test!relaytest@mx.local.test>", RELAY_DENIED },
	/* the same aimed at an accepted domain */
	{ "%-hack at accepted domain", "<user%other.test@local.test>", RELAY_DENIED },
	{ "%-hack chain", "<user%other.test%local.test@local.test>", RELAY_DENIED },
	{ "%-hack to accepted", "<user%local.test@local.test>", RELAY_ACCEPTED },
	{ "quoted @ at accepted", "<\"user@other.test\"@local.test>", RELAY_DENIED },
	{ "quoted %-hack at accepted", "<\"user%other.test\"@local.test>", RELAY_DENIED },
	{ "quoted bang at accepted", "<\"other.test!user\"@local.test>", RELAY_DENIED },
	{ "quoted-pair @ at accepted", "<\"user\\@other.test\"@local.test>", RELAY_DENIED },
	{ "bang at accepted", "<other.test!user@local.test>", RELAY_DENIED },
	{ "double @ at accepted", "<user@other.test@local.test>", RELAY_PARSE_5XX },
	{ "source route to accepted", "<@other.test:user@local.test>", RELAY_ACCEPTED },
	{ "source route chain out", "<@local.test,@mx.local.test:user@other.test>", RELAY_DENIED },
	{ "literal not listed", "<user@[192.0.2.10]>", RELAY_DENIED },
	{ "literal of another host", "<user@[198.51.100.7]>", RELAY_DENIED },
	{ "name as literal", "<user@[other.test]>", RELAY_PARSE_5XX },
	{ "general literal", "<user@[x400:other]>", RELAY_PARSE_5XX },
	{ "IPv6 literal", "<user@[IPv6:2001:db8::1]>", RELAY_DENIED },
	/* the domain comparison itself */
	{ "accepted", "<user@local.test>", RELAY_ACCEPTED },
	{ "accepted, upper case", "<user@LOCAL.TEST>", RELAY_ACCEPTED },
	{ "accepted, trailing dot", "<user@local.test.>", RELAY_ACCEPTED },
	{ "two trailing dots", "<user@local.test..>", RELAY_PARSE_5XX },
	{ "suffix trick", "<user@local.test.other.test>", RELAY_DENIED },
	{ "prefix trick", "<user@evillocal.test>", RELAY_DENIED },
	{ "subdomain of exact entry", "<user@sub.local.test>", RELAY_DENIED },
	{ "wildcard", "<user@a.b.hosted.test>", RELAY_ACCEPTED },
	{ "wildcard apex", "<user@hosted.test>", RELAY_DENIED },
	{ "Postmaster", "<Postmaster>", RELAY_ACCEPTED },
	{ "postmaster at other", "<postmaster@other.test>", RELAY_DENIED },
	{ "8-bit domain outside", "<user@\xc3\xa9vil.test>", RELAY_DENIED },
	{ "NUL injection", "<user@local.test\0@other.test>", RELAY_PARSE_5XX },
	{ "space before other", "<user@local.test >", RELAY_PARSE_5XX },
	{ "comment form", "<user@local.test(other.test)>", RELAY_PARSE_5XX },
	{ "CR inside", "<user@local.test\r@other.test>", RELAY_PARSE_5XX },
	{ "two paths", "<user@local.test> <user@other.test>", RELAY_PARSE_5XX },
};

static void test_open_relay_battery(void **state)
{
	(void)state;
	const char *err;
	struct domain_set *s = domain_set_new();
	struct smtp_cmd *cmd = malloc(sizeof(*cmd));

	assert_int_equal(domain_set_add(s, "local.test", &err), 0);
	assert_int_equal(domain_set_add(s, "*.hosted.test", &err), 0);
	for (size_t i = 0; i < sizeof(relay_rows) / sizeof(relay_rows[0]); i++) {
		const struct relay_row *r = &relay_rows[i];
		char line[600];
		const char *reply = NULL;
		char denied[DOMAIN_MAX + 1];
		enum relay_outcome got;
		/* the path may hold a NUL: build the line by length */
		size_t plen = strlen(r->path);
		if (strcmp(r->label, "NUL injection") == 0)
			plen = sizeof("<user@local.test\0@other.test>") - 1;
		memcpy(line, "RCPT TO:", 8);
		memcpy(line + 8, r->path, plen);

		if (smtp_cmd_parse(line, 8 + plen, cmd, &reply) != 0) {
			got = RELAY_PARSE_5XX;
			if (reply == NULL || reply[0] != '5')
				fail_msg("%s: parse error without a 5xx", r->label);
		} else {
			got = domain_set_accepts_address(s, cmd->addr, denied, sizeof(denied)) ?
			    RELAY_ACCEPTED : RELAY_DENIED;
			if (got == RELAY_DENIED && denied[0] == '\0')
				fail_msg("%s: denied without naming the domain", r->label);
		}
		if (got != r->want)
			fail_msg("%s: %s -> outcome %d, want %d", r->label, r->path, got, r->want);
	}
	free(cmd);
	domain_set_free(s);
}

static void test_accepts_address_names_domain(void **state)
{
	(void)state;
	const char *err;
	char denied[8];
	struct domain_set *s = domain_set_new();

	assert_int_equal(domain_set_add(s, "local.test", &err), 0);
	assert_false(domain_set_accepts_address(s, "a%far.away.test@local.test", denied, sizeof(denied)));
	assert_string_equal(denied, "far.awa");   /* truncated to the buffer */
	assert_true(domain_set_accepts_address(s, "a@Local.Test.", denied, sizeof(denied)));
	assert_string_equal(denied, "");
	assert_false(domain_set_accepts_address(s, "a%@local.test", NULL, 0));   /* empty hop */
	domain_set_free(s);
}

/* ---- accept_domains in the config ---------------------------------------------------- */

#define BASE "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"

static void test_config_accept_domains(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	char path[] = "/tmp/test_domain_XXXXXX", text[1024];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	/* absent: every domain, and -t warns */
	assert_int_equal(config_fixture_load(BASE, &cfg, &errs), 0);
	assert_null(cfg->accept_set);
	free(errs);
	errs = NULL;
	{
		size_t len = 0;
		FILE *w = open_memstream(&errs, &len);
		assert_int_equal(config_warnings(cfg, w), 1);
		fclose(w);
		assert_non_null(strstr(errs, "accept_domains is empty"));
		free(errs);
		errs = NULL;
	}
	config_free(cfg);

	/* a list and a file */
	fputs("# hosted domains\nHosted.Test.\n\n  *.clients.test   # every client\n", f);
	fclose(f);
	snprintf(text, sizeof(text), BASE "accept_domains: [local.test, \"file:%s\"]\n", path);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), 0);
	free(errs);
	errs = NULL;
	assert_non_null(cfg->accept_set);
	assert_int_equal(domain_set_count(cfg->accept_set), 3);
	assert_true(domain_set_accepts_address(cfg->accept_set, "a@hosted.test", NULL, 0));
	assert_true(domain_set_accepts_address(cfg->accept_set, "a@x.clients.test", NULL, 0));
	assert_false(domain_set_accepts_address(cfg->accept_set, "a@other.test", NULL, 0));
	{
		size_t len = 0;
		FILE *w = open_memstream(&errs, &len);
		assert_int_equal(config_warnings(cfg, w), 0);
		fclose(w);
		free(errs);
		errs = NULL;
	}
	config_free(cfg);

	/* a bad line in the file names the file and line, at the item */
	f = fopen(path, "w");
	fputs("ok.test\nbad domain.test\n", f);
	fclose(f);
	cfg = NULL;
	assert_int_equal(config_fixture_load(text, &cfg, &errs), -1);
	assert_null(cfg);
	if (strstr(errs, "t.yaml:3:") == NULL || strstr(errs, "accept_domains[1]") == NULL ||
	    strstr(errs, ":2: \"bad domain.test\"") == NULL)
		fail_msg("errors: %s", errs);
	free(errs);
	errs = NULL;

	/* a missing file, a bad pattern, "*", a file naming nothing */
	unlink(path);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), -1);
	assert_non_null(strstr(errs, "cannot read"));
	free(errs);
	errs = NULL;
	assert_int_equal(config_fixture_load(BASE "accept_domains: [\"*\"]\n", &cfg, &errs), -1);
	assert_non_null(strstr(errs, "accept_domains[0]"));
	free(errs);
	errs = NULL;
	assert_int_equal(config_fixture_load(BASE "accept_domains: [\"a.*.test\"]\n", &cfg, &errs), -1);
	free(errs);
	errs = NULL;
	f = fopen(path, "w");
	fputs("# nothing yet\n", f);
	fclose(f);
	snprintf(text, sizeof(text), BASE "accept_domains: \"file:%s\"\n", path);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), -1);
	assert_non_null(strstr(errs, "name no domain"));
	free(errs);
	unlink(path);
}

static void test_config_route_domains(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL;

	assert_int_equal(config_fixture_load("listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:2526\"]\n"
	    "  routes: [{ domains: [\"ok.test\", \"*.x.*\"], servers: [\"smtp://127.0.0.1:2527\"] }]\n",
	    &cfg, &errs), -1);
	if (strstr(errs, "backends.routes[0].domains[1]") == NULL)
		fail_msg("errors: %s", errs);
	free(errs);
	errs = NULL;

	/* routes compare in the normal form: the trailing-dot bypass is gone */
	const char *err = NULL;
	assert_int_equal(config_fixture_load("listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:2526\"]\n"
	    "  routes:\n    - { domains: [Local.Test], servers: [\"smtp://127.0.0.1:2527\"] }\n"
	    "    - { domains: [\"*.sub.test\"], servers: [\"smtp://127.0.0.1:2528\"] }\n",
	    &cfg, &errs), 0);
	free(errs);
	struct pool *p = pool_new(cfg, &err);
	assert_non_null(p);
	assert_int_equal(pool_route_for(p, "local.test"), 1);
	assert_int_equal(pool_route_for(p, "local.test."), 1);
	assert_int_equal(pool_route_for(p, "LOCAL.TEST."), 1);
	assert_int_equal(pool_route_for(p, "local.test.."), 0);
	assert_int_equal(pool_route_for(p, "a.b.Sub.Test."), 2);
	assert_int_equal(pool_route_for(p, "sub.test"), 0);
	assert_int_equal(pool_route_for(p, "other.test"), 0);
	assert_int_equal(pool_route_for(p, NULL), 0);
	pool_free(p);
	config_free(cfg);
}

/* A route whose domain an earlier route already matches wholly never gets that domain's
 * mail (the first matching route wins): -t says so, per domain; a more specific entry
 * before a wildcard, or the same names in one route, is no warning. */
static void test_config_route_shadowed(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	size_t len = 0;
	FILE *w;
	const char *err = NULL;

	/* domain_set_covers: a pattern wholly inside the set */
	struct domain_set *s = domain_set_new();
	assert_int_equal(domain_set_add(s, "*.hosting.test", &err), 0);
	assert_int_equal(domain_set_add(s, "Exact.Test.", &err), 0);
	assert_true(domain_set_covers(s, "special.hosting.test"));
	assert_true(domain_set_covers(s, "*.special.hosting.test"));
	assert_true(domain_set_covers(s, "*.hosting.test"));
	assert_true(domain_set_covers(s, "EXACT.test"));
	assert_false(domain_set_covers(s, "hosting.test"));
	assert_false(domain_set_covers(s, "*.exact.test"));
	assert_false(domain_set_covers(s, "*.test"));
	assert_false(domain_set_covers(s, "other.test"));
	assert_false(domain_set_covers(s, "bad domain"));
	assert_false(domain_set_covers(NULL, "exact.test"));
	domain_set_free(s);

	assert_int_equal(config_fixture_load("listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:2526\"]\n"
	    "  routes:\n"
	    "    - { domains: [\"*.hosting.test\", a.test], servers: [\"smtp://127.0.0.1:2527\"] }\n"
	    "    - { domains: [mine.test, Special.Hosting.Test., \"*.x.hosting.test\", A.TEST], servers: [\"smtp://127.0.0.1:2528\"] }\n"
	    "    - { domains: [\"*.y.test\", mine.test, hosting.test], servers: [\"smtp://127.0.0.1:2529\"] }\n"
	    "accept_domains: [\"*.test\"]\n",
	    &cfg, &errs), 0);
	free(errs);
	errs = NULL;
	w = open_memstream(&errs, &len);
	assert_int_equal(config_warnings(cfg, w), 4);
	fclose(w);
	if (strstr(errs, "backends.routes[1].domains[1]: \"Special.Hosting.Test.\" is matched by routes[0] first") == NULL ||
	    strstr(errs, "backends.routes[1].domains[2]: \"*.x.hosting.test\" is matched by routes[0]") == NULL ||
	    strstr(errs, "backends.routes[1].domains[3]: \"A.TEST\" is matched by routes[0]") == NULL ||
	    strstr(errs, "backends.routes[2].domains[1]: \"mine.test\" is matched by routes[1]") == NULL ||
	    strstr(errs, "domains[0]") != NULL || strstr(errs, "routes[2].domains[2]") != NULL)
		fail_msg("warnings: %s", errs);
	free(errs);
	/* and it is so: those domains go to the first route */
	struct pool *p = pool_new(cfg, &err);
	assert_non_null(p);
	assert_int_equal(pool_route_for(p, "special.hosting.test"), 1);
	assert_int_equal(pool_route_for(p, "mine.test"), 2);
	assert_int_equal(pool_route_for(p, "hosting.test"), 3);
	pool_free(p);
	config_free(cfg);
}

/* backends.routes[].domains takes "file:PATH" items as accept_domains does: read at load
 * (so on every SIGHUP), one pattern a line, "#" comments; a bad line is an error at the
 * item naming the file's line. Until session 25 a file: item was "not a domain name". */
static void test_config_route_file(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL, text[1024];
	char path[] = "/tmp/test_domain_route_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	const char *err = NULL;
	size_t len = 0;

	fputs("# cluster B\nCust1.Example.\r\n\n  *.wild.test   # every subdomain\n", f);
	fclose(f);
	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:2526\"]\n"
	    "  routes:\n    - { domains: [\"file:%s\", other.test], servers: [\"smtp://127.0.0.1:2527\"] }\n"
	    "    - { domains: [vip.wild.test, cust2.example], servers: [\"smtp://127.0.0.1:2528\"] }\n", path);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), 0);
	free(errs);
	errs = NULL;
	struct pool *p = pool_new(cfg, &err);
	assert_non_null(p);
	assert_int_equal(pool_route_for(p, "cust1.example"), 1);
	assert_int_equal(pool_route_for(p, "CUST1.EXAMPLE."), 1);
	assert_int_equal(pool_route_for(p, "a.b.wild.test"), 1);
	assert_int_equal(pool_route_for(p, "other.test"), 1);
	assert_int_equal(pool_route_for(p, "wild.test"), 0);
	assert_int_equal(pool_route_for(p, "cust2.example"), 2);
	assert_int_equal(pool_route_for(p, "vip.wild.test"), 1);
	/* and -t names the later name the file's wildcard takes */
	FILE *w = open_memstream(&errs, &len);
	assert_int_equal(config_warnings(cfg, w), 2);	/* that one, and accept_domains empty */
	fclose(w);
	if (strstr(errs, "backends.routes[1].domains[0]: \"vip.wild.test\" is matched by routes[0]") == NULL)
		fail_msg("warnings: %s", errs);
	free(errs);
	errs = NULL;
	pool_free(p);
	config_free(cfg);

	/* a bad line: the item, the file and its line */
	f = fopen(path, "w");
	fputs("ok.test\nbad domain.test\n", f);
	fclose(f);
	cfg = NULL;
	assert_int_equal(config_fixture_load(text, &cfg, &errs), -1);
	assert_null(cfg);
	if (strstr(errs, "backends.routes[0].domains[0]") == NULL || strstr(errs, ":2: \"bad domain.test\"") == NULL)
		fail_msg("errors: %s", errs);
	free(errs);
	errs = NULL;
	/* a file that cannot be read */
	unlink(path);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), -1);
	if (strstr(errs, "backends.routes[0].domains[0]") == NULL || strstr(errs, "cannot read") == NULL)
		fail_msg("errors: %s", errs);
	free(errs);
}

/* -t's shadowed-route warning reads a later route's file: items too, naming the file's line:
 * a customer listed in cluster B's file under a wildcard of cluster A's route goes to A.
 * Until session 26 only inline items were looked at (0 warnings here). Bounded: 10 names per
 * item, then one line saying how many more. */
static void test_config_route_file_shadowed(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL, text[2048];
	char a[] = "/tmp/test_domain_shadow_a_XXXXXX", b[] = "/tmp/test_domain_shadow_b_XXXXXX";
	char c[] = "/tmp/test_domain_shadow_c_XXXXXX";
	FILE *f, *w;
	const char *err = NULL;
	size_t len = 0;

	f = fdopen(mkstemp(a), "w");
	fputs("dup.example\n", f);
	fclose(f);
	f = fdopen(mkstemp(b), "w");
	fputs("# cluster B\nfree.example\n  Special.Hosting.Test.  # moved here\n\n*.x.hosting.test\nDUP.example\n", f);
	fclose(f);
	f = fdopen(mkstemp(c), "w");
	for (int i = 0; i < 15; i++)
		fprintf(f, "c%d.hosting.test\n", i);
	fclose(f);
	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:2526\"]\n"
	    "  routes:\n    - { domains: [\"*.hosting.test\", \"file:%s\"], servers: [\"smtp://127.0.0.1:2527\"] }\n"
	    "    - { domains: [own.test, \"file:%s\"], servers: [\"smtp://127.0.0.1:2528\"] }\n"
	    "    - { domains: [\"file:%s\"], servers: [\"smtp://127.0.0.1:2529\"] }\n"
	    "accept_domains: [\"*.test\", \"*.example\"]\n", a, b, c);
	assert_int_equal(config_fixture_load(text, &cfg, &errs), 0);
	free(errs);
	errs = NULL;
	w = open_memstream(&errs, &len);
	assert_int_equal(config_warnings(cfg, w), 3 + 15);
	fclose(w);
	char want[3][512];
	snprintf(want[0], sizeof(want[0]), "backends.routes[1].domains[1]: %s:3: \"Special.Hosting.Test.\" is matched by routes[0] first", b);
	snprintf(want[1], sizeof(want[1]), "backends.routes[1].domains[1]: %s:5: \"*.x.hosting.test\" is matched by routes[0] first", b);
	snprintf(want[2], sizeof(want[2]), "backends.routes[1].domains[1]: %s:6: \"DUP.example\" is matched by routes[0] first", b);
	for (int i = 0; i < 3; i++)
		if (strstr(errs, want[i]) == NULL)
			fail_msg("want %s in warnings: %s", want[i], errs);
	if (strstr(errs, "free.example") != NULL || strstr(errs, "own.test") != NULL)
		fail_msg("a name no earlier route takes is not named: %s", errs);
	/* the third route's file: 15 names taken by routes[0]'s wildcard, 10 named, then a count */
	snprintf(want[0], sizeof(want[0]), "backends.routes[2].domains[0]: %s:10: \"c9.hosting.test\" is matched by routes[0]", c);
	snprintf(want[1], sizeof(want[1]), "backends.routes[2].domains[0]: %s: 5 more names are matched by an earlier route", c);
	if (strstr(errs, want[0]) == NULL || strstr(errs, want[1]) == NULL || strstr(errs, "c10.hosting.test") != NULL)
		fail_msg("the bound: %s", errs);
	free(errs);
	/* and it is so: those names go to the first route */
	struct pool *p = pool_new(cfg, &err);
	assert_non_null(p);
	assert_int_equal(pool_route_for(p, "special.hosting.test"), 1);
	assert_int_equal(pool_route_for(p, "dup.example"), 1);
	assert_int_equal(pool_route_for(p, "free.example"), 2);
	pool_free(p);
	config_free(cfg);
	unlink(a);
	unlink(b);
	unlink(c);
}

/* Every place a domain is compared uses the normal form: the rate limiter's keys too. */
static void test_ratelimit_keys(void **state)
{
	(void)state;
	struct ratelimit_rule_config r;
	struct hook_env env;
	char a[300], b[300];

	memset(&r, 0, sizeof(r));
	memset(&env, 0, sizeof(env));
	r.key = RATELIMIT_KEY_SENDER_DOMAIN;
	env.mail_from = "a@Example.ORG.";
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, a, sizeof(a)), 0);
	env.mail_from = "b@example.org";
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, b, sizeof(b)), 0);
	assert_string_equal(a, "example.org");
	assert_string_equal(b, "example.org");
	r.key = RATELIMIT_KEY_RECIPIENT;
	assert_int_equal(ratelimit_key_value(&r, &env, "User@Local.Test.", a, sizeof(a)), 0);
	assert_int_equal(ratelimit_key_value(&r, &env, "user@local.test", b, sizeof(b)), 0);
	assert_string_equal(a, b);
	r.key = RATELIMIT_KEY_SENDER;
	env.mail_from = "x@Example.ORG.";
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, a, sizeof(a)), 0);
	assert_string_equal(a, "x@example.org");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_fast_path_same),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_address_is_fqdn),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_set_grows),
		cmocka_unit_test(test_set_forged),
		cmocka_unit_test(test_open_relay_battery),
		cmocka_unit_test(test_accepts_address_names_domain),
		cmocka_unit_test(test_config_accept_domains),
		cmocka_unit_test(test_config_route_domains),
		cmocka_unit_test(test_config_route_shadowed),
		cmocka_unit_test(test_config_route_file),
		cmocka_unit_test(test_config_route_file_shadowed),
		cmocka_unit_test(test_ratelimit_keys),
		cmocka_unit_test(test_set_each),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
