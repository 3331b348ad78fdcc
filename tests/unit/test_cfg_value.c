/* test_cfg_value.c — the configuration's value syntax (cfg_value.c): sizes, durations,
 * rates, CIDRs and their matching, booleans, numbers, backend URLs, listen addresses, and
 * the formatters. Table-driven: each row has a label printed when it fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_value.h"
#include "addr_fixture.h"

struct size_row { const char *label, *in; int rc; uint64_t out; };
static const struct size_row size_rows[] = {
	{ "plain bytes", "512", 0, 512 },
	{ "zero", "0", 0, 0 },
	{ "K", "4K", 0, 4096 },
	{ "lower k", "4k", 0, 4096 },
	{ "KB", "4KB", 0, 4096 },
	{ "kib with space", "4 KiB", 0, 4096 },
	{ "M", "50M", 0, 50ull << 20 },
	{ "MB lower", "50mb", 0, 50ull << 20 },
	{ "G", "1G", 0, 1ull << 30 },
	{ "T", "2T", 0, 2ull << 40 },
	{ "B suffix", "10B", 0, 10 },
	{ "surrounding blanks", " 8M ", 0, 8ull << 20 },
	{ "empty", "", -1, 0 },
	{ "unit only", "K", -1, 0 },
	{ "negative", "-1", -1, 0 },
	{ "fraction", "1.5M", -1, 0 },
	{ "unknown unit", "12X", -1, 0 },
	{ "double B", "1MBB", -1, 0 },
	{ "garbage after", "5M five", -1, 0 },
	{ "overflow digits", "99999999999999999999", -1, 0 },
	{ "overflow unit", "18446744073709551615G", -1, 0 },
	{ "max exact", "18446744073709551615", 0, UINT64_MAX },
};

static void test_parse_size(void **state)
{
	for (size_t i = 0; i < sizeof(size_rows) / sizeof(size_rows[0]); i++) {
		const struct size_row *r = &size_rows[i];
		uint64_t v = 12345;
		int rc = cfg_parse_size(r->in, &v);
		if (rc != r->rc || (rc == 0 && v != r->out))
			fail_msg("size row \"%s\" (%s): rc %d value %llu", r->label, r->in, rc,
				 (unsigned long long)v);
	}
	assert_int_equal(cfg_parse_size(NULL, &(uint64_t){ 0 }), -1);
}

struct dur_row { const char *label, *in; int rc; uint64_t ms; };
static const struct dur_row dur_rows[] = {
	{ "seconds", "300s", 0, 300000 },
	{ "minutes", "5m", 0, 300000 },
	{ "hour", "1h", 0, 3600000 },
	{ "milliseconds", "250ms", 0, 250 },
	{ "days", "2d", 0, 172800000 },
	{ "week", "1w", 0, 604800000 },
	{ "compound", "1h30m", 0, 5400000 },
	{ "compound spaced", "1m 30s", 0, 90000 },
	{ "plain number is seconds", "10", 0, 10000 },
	{ "zero", "0", 0, 0 },
	{ "upper case unit", "5S", 0, 5000 },
	{ "long unit", "2 minutes", 0, 120000 },
	{ "empty", "", -1, 0 },
	{ "unit only", "s", -1, 0 },
	{ "unknown unit", "5 parsecs", -1, 0 },
	{ "negative", "-1s", -1, 0 },
	{ "fraction", "1.5s", -1, 0 },
	{ "dangling number", "5m5", -1, 0 },
	{ "overflow", "99999999999999999999d", -1, 0 },
	{ "overflow multiply", "18446744073709551615w", -1, 0 },
	{ "plain overflow", "18446744073709551615", -1, 0 },
};

static void test_parse_duration(void **state)
{
	for (size_t i = 0; i < sizeof(dur_rows) / sizeof(dur_rows[0]); i++) {
		const struct dur_row *r = &dur_rows[i];
		uint64_t v = 777;
		int rc = cfg_parse_duration(r->in, &v);
		if (rc != r->rc || (rc == 0 && v != r->ms))
			fail_msg("duration row \"%s\" (%s): rc %d value %llu", r->label, r->in, rc,
				 (unsigned long long)v);
	}
}

struct rate_row { const char *label, *in; int rc; uint64_t count, period; };
static const struct rate_row rate_rows[] = {
	{ "per 60s", "30/60s", 0, 30, 60000 },
	{ "per hour", "1000/1h", 0, 1000, 3600000 },
	{ "bare unit", "10/m", 0, 10, 60000 },
	{ "bare unit seconds", "3/s", 0, 3, 1000 },
	{ "spaces", "5 / 2m", 0, 5, 120000 },
	{ "milliseconds", "1/250ms", 0, 1, 250 },
	{ "plain period seconds", "7/30", 0, 7, 30000 },
	{ "no slash", "30", -1, 0, 0 },
	{ "no count", "/60s", -1, 0, 0 },
	{ "zero count", "0/1m", -1, 0, 0 },
	{ "zero period", "10/0s", -1, 0, 0 },
	{ "bad unit", "10/x", -1, 0, 0 },
	{ "letters", "a/b", -1, 0, 0 },
	{ "empty", "", -1, 0, 0 },
	{ "trailing", "10/1m extra", -1, 0, 0 },
};

static void test_parse_rate(void **state)
{
	for (size_t i = 0; i < sizeof(rate_rows) / sizeof(rate_rows[0]); i++) {
		const struct rate_row *r = &rate_rows[i];
		struct cfg_rate v = { 0, 0 };
		int rc = cfg_parse_rate(r->in, &v);
		if (rc != r->rc || (rc == 0 && (v.count != r->count || v.period_ms != r->period)))
			fail_msg("rate row \"%s\" (%s): rc %d -> %llu/%llums", r->label, r->in, rc,
				 (unsigned long long)v.count, (unsigned long long)v.period_ms);
	}
}

struct bool_row { const char *in; int rc; bool out; };
static const struct bool_row bool_rows[] = {
	{ "true", 0, true }, { "TRUE", 0, true }, { "yes", 0, true }, { "on", 0, true },
	{ "false", 0, false }, { "No", 0, false }, { "off", 0, false }, { "0", 0, false },
	{ "maybe", -1, false }, { "", -1, false }, { "truee", -1, false },
};

static void test_parse_bool(void **state)
{
	for (size_t i = 0; i < sizeof(bool_rows) / sizeof(bool_rows[0]); i++) {
		bool b = !bool_rows[i].out;
		int rc = cfg_parse_bool(bool_rows[i].in, &b);
		if (rc != bool_rows[i].rc || (rc == 0 && b != bool_rows[i].out))
			fail_msg("bool row \"%s\": rc %d", bool_rows[i].in, rc);
	}
}

struct num_row { const char *label, *in; int rc; long l; int drc; double d; };
static const struct num_row num_rows[] = {
	{ "plain", "42", 0, 42, 0, 42 },
	{ "signs and blanks", " -7 ", 0, -7, 0, -7 },
	{ "plus", "+3", 0, 3, 0, 3 },
	{ "fraction", "2.5", -1, 0, 0, 2.5 },
	{ "exponent", "1e3", -1, 0, 0, 1000 },
	{ "empty", "", -1, 0, -1, 0 },
	{ "sign only", "-", -1, 0, -1, 0 },
	{ "trailing garbage", "12abc", -1, 0, -1, 0 },
	{ "long overflow", "99999999999999999999", -1, 0, 0, 1e20 },
	{ "not finite", "inf", -1, 0, -1, 0 },
	{ "nan", "nan", -1, 0, -1, 0 },
};

static void test_parse_numbers(void **state)
{
	for (size_t i = 0; i < sizeof(num_rows) / sizeof(num_rows[0]); i++) {
		const struct num_row *r = &num_rows[i];
		long l = 0;
		double d = 0;
		int rc = cfg_parse_long(r->in, &l);
		if (rc != r->rc || (rc == 0 && l != r->l))
			fail_msg("long row \"%s\": rc %d value %ld", r->label, rc, l);
		rc = cfg_parse_double(r->in, &d);
		if (rc != r->drc || (rc == 0 && d != r->d))
			fail_msg("double row \"%s\": rc %d value %g", r->label, rc, d);
	}
}

struct fmt_row { const char *label; int size; uint64_t v; const char *out; };
static const struct fmt_row fmt_rows[] = {
	{ "zero duration", 0, 0, "0s" },
	{ "milliseconds", 0, 250, "250ms" },
	{ "seconds", 0, 90000, "90s" },
	{ "minutes", 0, 300000, "5m" },
	{ "hours", 0, 7200000, "2h" },
	{ "days", 0, 172800000, "2d" },
	{ "odd milliseconds", 0, 1500, "1500ms" },
	{ "zero size", 1, 0, "0" },
	{ "bytes", 1, 1000, "1000" },
	{ "kibibytes", 1, 4096, "4K" },
	{ "mebibytes", 1, 50ull << 20, "50M" },
	{ "gibibytes", 1, 1ull << 30, "1G" },
	{ "tebibytes", 1, 2ull << 40, "2T" },
	{ "not a multiple", 1, 1025, "1025" },
};

/* The formatters are the parsers' inverse: what they print parses back to the value. */
static void test_format(void **state)
{
	for (size_t i = 0; i < sizeof(fmt_rows) / sizeof(fmt_rows[0]); i++) {
		const struct fmt_row *r = &fmt_rows[i];
		char buf[64];
		uint64_t back = UINT64_MAX;
		if (r->size) {
			cfg_format_size(r->v, buf, sizeof(buf));
			assert_int_equal(cfg_parse_size(buf, &back), 0);
		} else {
			cfg_format_duration(r->v, buf, sizeof(buf));
			assert_int_equal(cfg_parse_duration(buf, &back), 0);
		}
		if (strcmp(buf, r->out) != 0 || back != r->v)
			fail_msg("format row \"%s\": got \"%s\" (parses back to %llu)", r->label, buf,
				 (unsigned long long)back);
	}
}

struct cidr_row { const char *label, *in; int rc, family, prefix; const char *addr; };
static const struct cidr_row cidr_rows[] = {
	{ "v4 /8", "10.0.0.0/8", 0, AF_INET, 8, "10.0.0.0" },
	{ "bare v4 = /32", "192.0.2.1", 0, AF_INET, 32, "192.0.2.1" },
	{ "v4 host bits cleared", "10.1.2.3/8", 0, AF_INET, 8, "10.0.0.0" },
	{ "v4 /0", "0.0.0.0/0", 0, AF_INET, 0, "0.0.0.0" },
	{ "v4 odd prefix", "192.0.2.255/25", 0, AF_INET, 25, "192.0.2.128" },
	{ "v6 /32", "2001:db8::/32", 0, AF_INET6, 32, "2001:db8::" },
	{ "bare v6 = /128", "::1", 0, AF_INET6, 128, "::1" },
	{ "v4-mapped becomes v4", "::ffff:10.0.0.0/104", 0, AF_INET, 8, "10.0.0.0" },
	{ "bare v4-mapped", "::ffff:192.0.2.7", 0, AF_INET, 32, "192.0.2.7" },
	{ "v4 prefix too long", "10.0.0.0/33", -1, 0, 0, NULL },
	{ "v6 prefix too long", "::/129", -1, 0, 0, NULL },
	{ "short v4", "1.2.3", -1, 0, 0, NULL },
	{ "name", "localhost", -1, 0, 0, NULL },
	{ "empty prefix", "10.0.0.0/", -1, 0, 0, NULL },
	{ "negative prefix", "10.0.0.0/-1", -1, 0, 0, NULL },
	{ "prefix garbage", "10.0.0.0/8x", -1, 0, 0, NULL },
	{ "empty", "", -1, 0, 0, NULL },
};

static void test_parse_cidr(void **state)
{
	for (size_t i = 0; i < sizeof(cidr_rows) / sizeof(cidr_rows[0]); i++) {
		const struct cidr_row *r = &cidr_rows[i];
		struct cfg_cidr c;
		memset(&c, 0, sizeof(c));
		int rc = cfg_parse_cidr(r->in, &c);
		if (rc != r->rc)
			fail_msg("cidr row \"%s\" (%s): rc %d", r->label, r->in, rc);
		if (rc)
			continue;
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(c.family, c.addr, buf, sizeof(buf));
		if (c.family != r->family || c.prefix != r->prefix || strcmp(buf, r->addr) != 0)
			fail_msg("cidr row \"%s\": got %s/%d family %d", r->label, buf, c.prefix, c.family);
	}
}

struct match_row { const char *label, *addr; bool hit; };
static const struct match_row match_rows[] = {
	{ "inside v4 /8", "10.1.2.3", true },
	{ "outside v4 /8", "11.0.0.1", false },
	{ "v4-mapped client inside v4 /8", "::ffff:10.9.9.9", true },
	{ "v4-mapped client outside", "::ffff:11.9.9.9", false },
	{ "inside v6 /32", "2001:db8::5", true },
	{ "outside v6 /32", "2001:db9::", false },
	{ "exact host", "192.0.2.1", true },
	{ "next to host", "192.0.2.2", false },
	{ "/25 boundary in", "198.51.100.127", true },
	{ "/25 boundary out", "198.51.100.128", false },
	{ "v4-mapped entry matched by v4", "203.0.113.9", true },
	{ "v6 loopback", "::1", false },
};

static void test_cidr_match(void **state)
{
	const char *entries[] = { "10.0.0.0/8", "2001:db8::/32", "192.0.2.1", "198.51.100.0/25",
				  "::ffff:203.0.113.0/120" };
	struct cfg_cidr v[5];
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(cfg_parse_cidr(entries[i], &v[i]), 0);
	struct cfg_cidrlist l = { v, 5 };
	for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(match_rows[i].addr);
		if (cfg_cidrlist_match(&l, (struct sockaddr *)&ss) != match_rows[i].hit)
			fail_msg("match row \"%s\" (%s)", match_rows[i].label, match_rows[i].addr);
	}
	/* /0 v4 matches every v4 (and mapped) client but no v6 one */
	struct cfg_cidr all;
	assert_int_equal(cfg_parse_cidr("0.0.0.0/0", &all), 0);
	struct sockaddr_storage a = sockaddr_of("8.8.8.8"), b = sockaddr_of("::ffff:1.1.1.1"),
	    c = sockaddr_of("::2");
	assert_true(cfg_cidr_match(&all, (struct sockaddr *)&a));
	assert_true(cfg_cidr_match(&all, (struct sockaddr *)&b));
	assert_false(cfg_cidr_match(&all, (struct sockaddr *)&c));
	struct cfg_cidrlist empty = { NULL, 0 };
	assert_false(cfg_cidrlist_match(&empty, (struct sockaddr *)&a));
	assert_false(cfg_cidrlist_match(NULL, (struct sockaddr *)&a));
	assert_false(cfg_cidr_match(&all, NULL));
}

struct url_row { const char *label, *in; int rc, kind; const char *host; int port; const char *path; };
static const struct url_row url_rows[] = {
	{ "smtp", "smtp://127.0.0.1:2526", 0, CFG_BACKEND_SMTP, "127.0.0.1", 2526, "" },
	{ "smtp default port", "smtp://mx.example.test", 0, CFG_BACKEND_SMTP, "mx.example.test", 25, "" },
	{ "smtp trailing slash", "smtp://h:26/", 0, CFG_BACKEND_SMTP, "h", 26, "" },
	{ "smtp ipv6", "smtp://[::1]:2526", 0, CFG_BACKEND_SMTP, "::1", 2526, "" },
	{ "lmtp", "lmtp://127.0.0.1:2424", 0, CFG_BACKEND_LMTP, "127.0.0.1", 2424, "" },
	{ "lmtp default port", "LMTP://h", 0, CFG_BACKEND_LMTP, "h", 24, "" },
	{ "lmtp unix", "lmtp:unix:/run/dovecot/lmtp", 0, CFG_BACKEND_LMTP_UNIX, "", 0, "/run/dovecot/lmtp" },
	{ "maildir", "maildir:/var/spool/mxgate/Maildir", 0, CFG_BACKEND_MAILDIR, "", 0, "/var/spool/mxgate/Maildir" },
	{ "maildir relative", "maildir:./demo-maildir", 0, CFG_BACKEND_MAILDIR, "", 0, "./demo-maildir" },
	{ "unknown scheme", "ftp://h:21", -1, 0, NULL, 0, NULL },
	{ "no scheme", "127.0.0.1:25", -1, 0, NULL, 0, NULL },
	{ "empty", "", -1, 0, NULL, 0, NULL },
	{ "no host", "smtp://", -1, 0, NULL, 0, NULL },
	{ "no host with port", "smtp://:25", -1, 0, NULL, 0, NULL },
	{ "port zero", "smtp://h:0", -1, 0, NULL, 0, NULL },
	{ "port too big", "smtp://h:65536", -1, 0, NULL, 0, NULL },
	{ "port garbage", "smtp://h:2x", -1, 0, NULL, 0, NULL },
	{ "ipv6 without brackets", "smtp://::1:25", -1, 0, NULL, 0, NULL },
	{ "bad ipv6", "smtp://[zz]:25", -1, 0, NULL, 0, NULL },
	{ "path in smtp", "smtp://h:25/x", -1, 0, NULL, 0, NULL },
	{ "user in smtp", "smtp://u@h:25", -1, 0, NULL, 0, NULL },
	{ "maildir no path", "maildir:", -1, 0, NULL, 0, NULL },
	{ "bad host char", "smtp://h$st:25", -1, 0, NULL, 0, NULL },
};

static void test_parse_backend_url(void **state)
{
	for (size_t i = 0; i < sizeof(url_rows) / sizeof(url_rows[0]); i++) {
		const struct url_row *r = &url_rows[i];
		struct cfg_backend_url u;
		const char *err = NULL;
		int rc = cfg_parse_backend_url(r->in, &u, &err);
		if (rc != r->rc)
			fail_msg("url row \"%s\" (%s): rc %d", r->label, r->in, rc);
		if (rc) {
			if (!err || !*err)
				fail_msg("url row \"%s\": no errstr", r->label);
			continue;
		}
		if (u.kind != r->kind || strcmp(u.host, r->host) != 0 || u.port != r->port ||
		    strcmp(u.path, r->path) != 0)
			fail_msg("url row \"%s\": kind %d host %s port %d path %s", r->label, u.kind,
				 u.host, u.port, u.path);
	}
}

struct listen_row { const char *label, *in; int rc, family; const char *addr; int port; };
static const struct listen_row listen_rows[] = {
	{ "v4", "127.0.0.1:2525", 0, AF_INET, "127.0.0.1", 2525 },
	{ "v6", "[::1]:25", 0, AF_INET6, "::1", 25 },
	{ "any v6", "[::]:25", 0, AF_INET6, "::", 25 },
	{ "colon port = any v4", ":25", 0, AF_INET, "0.0.0.0", 25 },
	{ "star port = any v4", "*:26", 0, AF_INET, "0.0.0.0", 26 },
	{ "localhost", "localhost:2525", 0, AF_INET, "127.0.0.1", 2525 },
	{ "no port", "127.0.0.1", -1, 0, NULL, 0 },
	{ "port zero", "127.0.0.1:0", -1, 0, NULL, 0 },
	{ "dns name", "mx.example.test:25", -1, 0, NULL, 0 },
	{ "bare v6", "::1:25", -1, 0, NULL, 0 },
	{ "empty", "", -1, 0, NULL, 0 },
	{ "port only", "2525", -1, 0, NULL, 0 },
};

static void test_parse_listen_address(void **state)
{
	for (size_t i = 0; i < sizeof(listen_rows) / sizeof(listen_rows[0]); i++) {
		const struct listen_row *r = &listen_rows[i];
		struct sockaddr_storage ss;
		socklen_t len = 0;
		const char *err = NULL;
		int rc = cfg_parse_listen_address(r->in, &ss, &len, &err);
		if (rc != r->rc)
			fail_msg("listen row \"%s\" (%s): rc %d", r->label, r->in, rc);
		if (rc)
			continue;
		char buf[INET6_ADDRSTRLEN];
		int port;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
			port = ntohs(in->sin_port);
			assert_int_equal(len, sizeof(*in));
		} else {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
			port = ntohs(in6->sin6_port);
			assert_int_equal(len, sizeof(*in6));
		}
		if (ss.ss_family != r->family || strcmp(buf, r->addr) != 0 || port != r->port)
			fail_msg("listen row \"%s\": %s port %d", r->label, buf, port);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_rate),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_cidr_match),
		cmocka_unit_test(test_parse_backend_url),
		cmocka_unit_test(test_parse_listen_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
