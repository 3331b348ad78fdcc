/* cfg_value.c — the configuration's value syntax: parsers from C strings (no YAML, no I/O)
 * and the CIDR matchers. See cfg_value.h. */
#include "cfg_value.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* ---------------------------------------------------------------- value parsers */

static const char *cfg_skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Reads an unsigned decimal integer; 0 and *end past it, -1 on no digits or overflow. */
static int cfg_read_u64(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *q = s;
	if (!isdigit((unsigned char)*q))
		return -1;
	while (isdigit((unsigned char)*q)) {
		unsigned d = (unsigned)(*q - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		q++;
	}
	*out = v;
	*end = q;
	return 0;
}

/* Sizes are binary: K = 1024. "512", "4K", "4k", "4KB", "4KiB", "50M", "1G", "1T", "10B". */
int cfg_parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	const char *q;
	if (!s)
		return -1;
	s = cfg_skip_space(s);
	if (cfg_read_u64(s, &v, &q) < 0)
		return -1;
	q = cfg_skip_space(q);
	switch (tolower((unsigned char)*q)) {
	case '\0': break;
	case 'b': mult = 1; q++; goto tail_done;
	case 'k': mult = 1ull << 10; q++; break;
	case 'm': mult = 1ull << 20; q++; break;
	case 'g': mult = 1ull << 30; q++; break;
	case 't': mult = 1ull << 40; q++; break;
	default: return -1;
	}
	if (mult != 1) {
		if (tolower((unsigned char)q[0]) == 'i' && tolower((unsigned char)q[1]) == 'b')
			q += 2;
		else if (tolower((unsigned char)q[0]) == 'b')
			q++;
	}
tail_done:
	q = cfg_skip_space(q);
	if (*q != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

/* Unit suffix of a duration at s: milliseconds per unit, and its length. 0 if none. */
static uint64_t cfg_duration_unit(const char *s, size_t *len)
{
	static const struct { const char *name; uint64_t ms; } units[] = {
		{ "ms", 1 }, { "msec", 1 },
		{ "s", 1000 }, { "sec", 1000 }, { "secs", 1000 }, { "second", 1000 }, { "seconds", 1000 },
		{ "m", 60000 }, { "min", 60000 }, { "mins", 60000 }, { "minute", 60000 }, { "minutes", 60000 },
		{ "h", 3600000 }, { "hour", 3600000 }, { "hours", 3600000 },
		{ "d", 86400000 }, { "day", 86400000 }, { "days", 86400000 },
		{ "w", 604800000 }, { "week", 604800000 }, { "weeks", 604800000 },
	};
	size_t n = 0;
	while (isalpha((unsigned char)s[n]))
		n++;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == n && strncasecmp(s, units[i].name, n) == 0) {
			*len = n;
			return units[i].ms;
		}
	return 0;
}

/* "300s", "5m", "1h", "250ms", "2d", "1h30m"; a plain number is seconds. Result in ms. */
int cfg_parse_duration(const char *s, uint64_t *out_ms)
{
	uint64_t total = 0;
	const char *q;
	if (!s)
		return -1;
	s = cfg_skip_space(s);
	uint64_t v;
	if (cfg_read_u64(s, &v, &q) < 0)
		return -1;
	q = cfg_skip_space(q);
	if (*q == '\0') {
		if (v > UINT64_MAX / 1000)
			return -1;
		*out_ms = v * 1000;
		return 0;
	}
	for (;;) {
		size_t ulen = 0;
		uint64_t unit = cfg_duration_unit(q, &ulen);
		if (!unit)
			return -1;
		if (v > (UINT64_MAX - total) / unit)
			return -1;
		total += v * unit;
		q = cfg_skip_space(q + ulen);
		if (*q == '\0')
			break;
		if (cfg_read_u64(q, &v, &q) < 0)
			return -1;
		q = cfg_skip_space(q);
	}
	*out_ms = total;
	return 0;
}

/* "30/60s", "1000/1h", "10/m" (per one minute), "5/2m". count >= 1, period > 0. */
int cfg_parse_rate(const char *s, struct cfg_rate *out)
{
	uint64_t count, period;
	const char *q;
	char buf[CFG_SCALAR_MAX];
	if (!s)
		return -1;
	s = cfg_skip_space(s);
	if (cfg_read_u64(s, &count, &q) < 0 || count == 0)
		return -1;
	q = cfg_skip_space(q);
	if (*q != '/')
		return -1;
	q = cfg_skip_space(q + 1);
	if (isalpha((unsigned char)*q)) {
		/* "10/m": a bare unit means one of it */
		if (snprintf(buf, sizeof(buf), "1%s", q) >= (int)sizeof(buf))
			return -1;
		q = buf;
	}
	if (cfg_parse_duration(q, &period) < 0 || period == 0)
		return -1;
	out->count = count;
	out->period_ms = period;
	return 0;
}

/* Rewrites a v4-mapped IPv6 cidr (::ffff:a.b.c.d/p, p >= 96) as IPv4. */
static void cfg_cidr_unmap(struct cfg_cidr *c)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (c->family != AF_INET6 || c->prefix < 96 || memcmp(c->addr, prefix, 12) != 0)
		return;
	uint8_t v4[4];
	memcpy(v4, c->addr + 12, 4);
	memset(c->addr, 0, sizeof(c->addr));
	memcpy(c->addr, v4, 4);
	c->family = AF_INET;
	c->prefix -= 96;
}

static void cfg_cidr_mask(struct cfg_cidr *c)
{
	int bytes = c->family == AF_INET ? 4 : 16;
	for (int i = 0; i < bytes; i++) {
		int bits = c->prefix - i * 8;
		if (bits >= 8)
			continue;
		c->addr[i] &= bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
	}
}

/* "10.0.0.0/8", "192.0.2.1" (= /32), "2001:db8::/32", "::1" (= /128), "::ffff:10.0.0.0/104"
 * (stored as 10.0.0.0/8). Host bits beyond the prefix are cleared. */
int cfg_parse_cidr(const char *s, struct cfg_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct cfg_cidr c;
	if (!s)
		return -1;
	s = cfg_skip_space(s);
	size_t len = strlen(s);
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(&c, 0, sizeof(c));
	char *slash = strchr(buf, '/');
	long prefix = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		if (!isdigit((unsigned char)slash[1]))
			return -1;
		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (errno || *end != '\0' || prefix < 0 || prefix > 128)
			return -1;
	}
	if (inet_pton(AF_INET, buf, c.addr) == 1) {
		c.family = AF_INET;
		if (prefix > 32)
			return -1;
		c.prefix = prefix < 0 ? 32 : (int)prefix;
	} else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
		c.family = AF_INET6;
		c.prefix = prefix < 0 ? 128 : (int)prefix;
	} else {
		return -1;
	}
	cfg_cidr_unmap(&c);
	cfg_cidr_mask(&c);
	*out = c;
	return 0;
}

/* Address bytes of sa as (family, 4 or 16 bytes); v4-mapped IPv6 comes back as IPv4. */
static int cfg_sockaddr_bytes(const struct sockaddr *sa, uint8_t addr[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (!sa)
		return -1;
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, mapped, 12) == 0) {
			memcpy(addr, a + 12, 4);
			return AF_INET;
		}
		memcpy(addr, a, 16);
		return AF_INET6;
	}
	return -1;
}

/* c against an address already in bytes (fam, a) as cfg_sockaddr_bytes gives them. */
static bool cfg_cidr_match_bytes(const struct cfg_cidr *c, int fam, const uint8_t a[16])
{
	if (fam != c->family)
		return false;
	int full = c->prefix / 8, rest = c->prefix % 8;
	if (memcmp(a, c->addr, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t m = (uint8_t)(0xff << (8 - rest));
		if ((a[full] & m) != (c->addr[full] & m))
			return false;
	}
	return true;
}

bool cfg_cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam = cfg_sockaddr_bytes(sa, a);
	return c && fam >= 0 && cfg_cidr_match_bytes(c, fam, a);
}

/* The sort order: family, prefix length, address (all 16 bytes: past a family's length they
 * are zero). */
static int cfg_cidr_cmp(const struct cfg_cidr *a, const struct cfg_cidr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->prefix != b->prefix)
		return a->prefix < b->prefix ? -1 : 1;
	return memcmp(a->addr, b->addr, sizeof(a->addr));
}

static int cfg_cidr_qsort_cmp(const void *a, const void *b)
{
	return cfg_cidr_cmp(a, b);
}

void cfg_cidrlist_sort(struct cfg_cidrlist *l)
{
	if (!l)
		return;
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(l->v[0]), cfg_cidr_qsort_cmp);
	l->sorted = true;
}

/* Sorted list: for each run of one family and prefix length, the address masked to that
 * length is looked up by binary search. */
static bool cfg_cidrlist_match_sorted(const struct cfg_cidrlist *l, int fam, const uint8_t a[16])
{
	size_t i = 0;

	while (i < l->n) {
		const struct cfg_cidr *r = &l->v[i];
		size_t lo = i + 1, hi = l->n;

		/* the run's end: the first entry after it in (family, prefix) order */
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct cfg_cidr *m = &l->v[mid];
			if (m->family == r->family && m->prefix == r->prefix)
				lo = mid + 1;
			else
				hi = mid;
		}
		size_t end = lo;
		if (r->family == fam) {
			struct cfg_cidr q = { .family = fam, .prefix = r->prefix };
			int full = r->prefix / 8, rest = r->prefix % 8;
			memcpy(q.addr, a, (size_t)full);
			if (rest)
				q.addr[full] = (uint8_t)(a[full] & (0xff << (8 - rest)));
			lo = i;
			hi = end;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				int c = cfg_cidr_cmp(&l->v[mid], &q);
				if (c == 0)
					return true;
				if (c < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
		}
		i = end;
	}
	return false;
}

bool cfg_cidrlist_match(const struct cfg_cidrlist *l, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;

	if (!l || l->n == 0 || (fam = cfg_sockaddr_bytes(sa, a)) < 0)
		return false;
	if (l->sorted)
		return cfg_cidrlist_match_sorted(l, fam, a);
	for (size_t i = 0; i < l->n; i++)
		if (cfg_cidr_match_bytes(&l->v[i], fam, a))
			return true;
	return false;
}

int cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "y", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "n", "0", NULL };
	if (!s)
		return -1;
	for (int i = 0; yes[i]; i++)
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
	for (int i = 0; no[i]; i++)
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	return -1;
}

/* Decimal integer with optional sign; no trailing garbage. */
int cfg_parse_long(const char *s, long *out)
{
	char *end;
	s = cfg_skip_space(s);
	if (!*s || !(isdigit((unsigned char)*s) || ((*s == '-' || *s == '+') &&
						     isdigit((unsigned char)s[1]))))
		return -1;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno)
		return -1;
	end = (char *)cfg_skip_space(end);
	if (*end)
		return -1;
	*out = v;
	return 0;
}

int cfg_parse_double(const char *s, double *out)
{
	char *end;
	s = cfg_skip_space(s);
	if (!*s)
		return -1;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -1;
	end = (char *)cfg_skip_space(end);
	if (*end)
		return -1;
	*out = v;
	return 0;
}

/* ---------------------------------------------------------------- backend URLs, addresses */

/* host[:port] where host is an IPv4 address, [IPv6] or a DNS name. */
static int cfg_parse_hostport(const char *s, char *host, size_t hostsz, int *port, int defport,
			      const char **errstr)
{
	const char *h = s, *colon;
	size_t hl;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close) {
			*errstr = "missing ']' after an IPv6 address";
			return -1;
		}
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] && !colon) {
			*errstr = "expected ':port' after ']'";
			return -1;
		}
		if (hl == 0 || hl >= hostsz) {
			*errstr = "bad IPv6 address";
			return -1;
		}
		memcpy(host, h, hl);
		host[hl] = '\0';
		struct in6_addr a6;
		if (inet_pton(AF_INET6, host, &a6) != 1) {
			*errstr = "bad IPv6 address";
			return -1;
		}
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon) {
			*errstr = "an IPv6 address needs brackets: [addr]:port";
			return -1;
		}
		hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl >= hostsz) {
			*errstr = "host name too long";
			return -1;
		}
		memcpy(host, s, hl);
		host[hl] = '\0';
		for (size_t i = 0; i < hl; i++)
			if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-' &&
			    host[i] != '_') {
				*errstr = "bad character in host name";
				return -1;
			}
	}
	if (colon) {
		long v;
		if (!isdigit((unsigned char)colon[1]) || cfg_parse_long(colon + 1, &v) < 0 || v < 1 ||
		    v > 65535) {
			*errstr = "port must be a number 1..65535";
			return -1;
		}
		*port = (int)v;
	} else {
		if (defport <= 0) {
			*errstr = "missing ':port'";
			return -1;
		}
		*port = defport;
	}
	return 0;
}

int cfg_parse_backend_url(const char *s, struct cfg_backend_url *out, const char **errstr)
{
	const char *dummy;
	if (!errstr)
		errstr = &dummy;
	memset(out, 0, sizeof(*out));
	if (!s || !*s) {
		*errstr = "empty backend URL";
		return -1;
	}
	const char *rest;
	int defport;
	if (strncasecmp(s, "smtp://", 7) == 0) {
		out->kind = CFG_BACKEND_SMTP;
		rest = s + 7;
		defport = 25;
	} else if (strncasecmp(s, "lmtp://", 7) == 0) {
		out->kind = CFG_BACKEND_LMTP;
		rest = s + 7;
		defport = 24;
	} else if (strncasecmp(s, "lmtp:unix:", 10) == 0 || strncasecmp(s, "maildir:", 8) == 0) {
		bool lmtp = tolower((unsigned char)s[0]) == 'l';
		out->kind = lmtp ? CFG_BACKEND_LMTP_UNIX : CFG_BACKEND_MAILDIR;
		rest = s + (lmtp ? 10 : 8);
		if (!*rest) {
			*errstr = "missing path";
			return -1;
		}
		if (strlen(rest) >= sizeof(out->path)) {
			*errstr = "path too long";
			return -1;
		}
		if (lmtp && strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			*errstr = "unix socket path too long";
			return -1;
		}
		strcpy(out->path, rest);
		return 0;
	} else {
		*errstr = "unknown scheme (expected smtp://host:port, lmtp://host:port, "
			  "lmtp:unix:/path or maildir:/path)";
		return -1;
	}
	size_t rl = strlen(rest);
	if (rl && rest[rl - 1] == '/')
		rl--; /* tolerate "smtp://host:25/" */
	char hp[300];
	if (rl == 0) {
		*errstr = "missing host";
		return -1;
	}
	if (rl >= sizeof(hp)) {
		*errstr = "host too long";
		return -1;
	}
	memcpy(hp, rest, rl);
	hp[rl] = '\0';
	if (strchr(hp, '/') || strchr(hp, '@') || strchr(hp, '?')) {
		*errstr = "unexpected path or user in URL";
		return -1;
	}
	int port;
	if (cfg_parse_hostport(hp, out->host, sizeof(out->host), &port, defport, errstr) < 0)
		return -1;
	if (!out->host[0]) {
		*errstr = "missing host";
		return -1;
	}
	out->port = (uint16_t)port;
	return 0;
}

int cfg_parse_listen_address(const char *s, struct sockaddr_storage *ss, socklen_t *len,
			     const char **errstr)
{
	char host[256];
	int port;
	const char *dummy;
	if (!errstr)
		errstr = &dummy;
	if (!s || !*s) {
		*errstr = "empty address";
		return -1;
	}
	if (*s == '*' && s[1] == ':')
		s++; /* "*:25" = ":25" */
	if (!strchr(s, ':')) {
		*errstr = "expected address:port, e.g. 127.0.0.1:2525, [::1]:25 or :25";
		return -1;
	}
	if (cfg_parse_hostport(s, host, sizeof(host), &port, 0, errstr) < 0)
		return -1;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (host[0] == '\0') {
		/* ":25" = every IPv4 address; "[::]:25" for IPv6 */
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		*len = sizeof(*in);
	} else if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof(*in);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
	} else if (strcasecmp(host, "localhost") == 0) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*in);
	} else {
		*errstr = "the address must be numeric (IPv4, [IPv6]) or localhost";
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- formatting */

void cfg_format_duration(uint64_t ms, char *buf, size_t sz)
{
	if (ms == 0)
		snprintf(buf, sz, "0s");
	else if (ms % 86400000 == 0)
		snprintf(buf, sz, "%llud", (unsigned long long)(ms / 86400000));
	else if (ms % 3600000 == 0)
		snprintf(buf, sz, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		snprintf(buf, sz, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, sz, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, sz, "%llums", (unsigned long long)ms);
}

void cfg_format_size(uint64_t v, char *buf, size_t sz)
{
	if (v && v % (1ull << 40) == 0)
		snprintf(buf, sz, "%lluT", (unsigned long long)(v >> 40));
	else if (v && v % (1ull << 30) == 0)
		snprintf(buf, sz, "%lluG", (unsigned long long)(v >> 30));
	else if (v && v % (1ull << 20) == 0)
		snprintf(buf, sz, "%lluM", (unsigned long long)(v >> 20));
	else if (v && v % (1ull << 10) == 0)
		snprintf(buf, sz, "%lluK", (unsigned long long)(v >> 10));
	else
		snprintf(buf, sz, "%llu", (unsigned long long)v);
}

