/* config.c — the table-driven YAML configuration engine and the daemon's core tables.
 *
 * The engine walks a `struct cfg_table` over a libfyaml mapping, fills a C struct, applies
 * defaults (parsed from .defval text by the same parsers), checks bounds, required keys and
 * unknown keys, runs each table's validate hook, and collects every error as
 *     FILE:LINE:COL: key.path: reason
 * Errors are sorted by position and printed once the whole file has been walked. */
#include "config.h"
#include "log.h"

#include <libfyaml.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <pwd.h>
#include <unistd.h>

#define CFG_MAX_FILE_SIZE   (16u * 1024 * 1024)  /* a config larger than this is a mistake */
#define CFG_MAX_EXPANDED    200000               /* nodes after alias expansion */
#define CFG_MAX_ERRORS      200                  /* errors kept; the rest are counted */
#define CFG_SCALAR_MAX      256                  /* longest number/size/duration text */
#define CFG_MAX_LISTENERS   16                   /* = WORKER_MAX_LISTENERS (proxy/worker.h) */

struct cfg_err {
	int line, col;   /* 1-based; 0 when unknown */
	unsigned seq;    /* report order, to keep the sort stable */
	char *text;      /* the whole line without newline */
};

struct cfg_parse {
	const char *file;
	char path[1024];
	size_t pathlen;
	struct fy_node *key;     /* key node of the value being parsed: fallback position */
	bool in_default;         /* parsing a .defval text: errors are table bugs */
	bool in_item;            /* the next cfg_table_walk is for a list item */
	struct cfg_err *errs;
	size_t nerr, cap;
	size_t dropped;
};

/* ---------------------------------------------------------------- error reporting */

/* Position of node n: its own token, else its first scalar descendant, else the key it
 * belongs to. 1-based; 0:0 when nothing is known. */
static void cfg_node_position(struct cfg_parse *p, struct fy_node *n, int *line, int *col)
{
	*line = 0;
	*col = 0;
	for (int pass = 0; pass < 2; pass++) {
		struct fy_node *cur = pass == 0 ? n : p->key;
		int guard = 0;
		while (cur && guard++ < 256) {
			struct fy_token *t = fy_node_get_scalar_token(cur);
			if (t) {
				const struct fy_mark *m = fy_token_start_mark(t);
				if (m && m->line >= 0) {
					enum fy_node_style st = fy_node_get_style(cur);
					*line = m->line + 1;
					*col = m->column + 1;
					/* a quoted scalar's token starts after the quote: point at it */
					if ((st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED) && *col > 1)
						(*col)--;
					return;
				}
			}
			if (fy_node_is_mapping(cur)) {
				void *it = NULL;
				struct fy_node_pair *pr = fy_node_mapping_iterate(cur, &it);
				cur = pr ? fy_node_pair_key(pr) : NULL;
			} else if (fy_node_is_sequence(cur)) {
				void *it = NULL;
				cur = fy_node_sequence_iterate(cur, &it);
			} else {
				cur = NULL;
			}
		}
	}
	*line = 1; /* nothing known (an empty file): the top of the file */
	*col = 1;
}

static void cfg_error_add(struct cfg_parse *p, int line, int col, const char *text)
{
	if (p->nerr >= CFG_MAX_ERRORS) {
		p->dropped++;
		return;
	}
	if (p->nerr == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct cfg_err *v = realloc(p->errs, cap * sizeof(*v));
		if (!v) {
			p->dropped++;
			return;
		}
		p->errs = v;
		p->cap = cap;
	}
	/* one error per line: values echoed back are escaped (C-style) */
	size_t n = 0;
	char *copy = malloc(strlen(text) * 4 + 1);
	if (!copy) {
		p->dropped++;
		return;
	}
	for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
		if (*t >= 0x20 && *t != 0x7f) {
			copy[n++] = (char)*t;
		} else if (*t == '\n' || *t == '\r' || *t == '\t') {
			copy[n++] = '\\';
			copy[n++] = *t == '\n' ? 'n' : *t == '\r' ? 'r' : 't';
		} else {
			n += (size_t)sprintf(copy + n, "\\x%02x", *t);
		}
	}
	copy[n] = '\0';
	p->errs[p->nerr] = (struct cfg_err){ .line = line, .col = col, .seq = (unsigned)p->nerr,
					     .text = copy };
	p->nerr++;
}

static int cfg_verror(struct cfg_parse *p, struct fy_node *n, const char *fmt, va_list ap)
{
	char reason[512], line[1800];
	int l = 0, c = 0;
	vsnprintf(reason, sizeof(reason), fmt, ap);
	if (!p->in_default)
		cfg_node_position(p, n, &l, &c);
	const char *where = p->pathlen ? p->path : "";
	const char *sep = p->pathlen ? ": " : "";
	if (p->in_default)
		snprintf(line, sizeof(line), "%s:%d:%d: %s%sbuilt-in default: %s", p->file, l, c,
			 where, sep, reason);
	else
		snprintf(line, sizeof(line), "%s:%d:%d: %s%s%s", p->file, l, c, where, sep, reason);
	cfg_error_add(p, l, c, line);
	return -1;
}

int cfg_error(struct cfg_parse *p, struct fy_node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Appends ".key" (or "key" at the root) to the path; returns the old length for path_pop. */
static size_t cfg_path_push_key(struct cfg_parse *p, const char *key, size_t keylen)
{
	size_t old = p->pathlen;
	int n = snprintf(p->path + p->pathlen, sizeof(p->path) - p->pathlen, "%s%.*s",
			 p->pathlen ? "." : "", (int)keylen, key);
	if (n > 0)
		p->pathlen = p->pathlen + (size_t)n < sizeof(p->path) ? p->pathlen + (size_t)n
								     : sizeof(p->path) - 1;
	return old;
}

static size_t cfg_path_push_index(struct cfg_parse *p, size_t i)
{
	size_t old = p->pathlen;
	int n = snprintf(p->path + p->pathlen, sizeof(p->path) - p->pathlen, "[%zu]", i);
	if (n > 0)
		p->pathlen = p->pathlen + (size_t)n < sizeof(p->path) ? p->pathlen + (size_t)n
								     : sizeof(p->path) - 1;
	return old;
}

static void cfg_path_pop(struct cfg_parse *p, size_t old)
{
	p->pathlen = old;
	p->path[old] = '\0';
}

/* Scalar text of n (not NUL-terminated) or NULL when n is not a scalar. */
static const char *cfg_node_text(struct fy_node *n, size_t *len)
{
	if (!n || !fy_node_is_scalar(n))
		return NULL;
	const char *s = fy_node_get_scalar(n, len);
	if (!s) {
		*len = 0;
		return "";
	}
	return s;
}

static bool cfg_key_equals(struct fy_node *k, const char *key)
{
	size_t len;
	const char *s = cfg_node_text(k, &len);
	return s && strlen(key) == len && memcmp(s, key, len) == 0;
}

/* Pair of mapping n whose key is `key`, or NULL. */
static struct fy_node_pair *cfg_map_pair(struct fy_node *n, const char *key)
{
	if (!n || !fy_node_is_mapping(n))
		return NULL;
	void *it = NULL;
	struct fy_node_pair *pr;
	while ((pr = fy_node_mapping_iterate(n, &it)))
		if (cfg_key_equals(fy_node_pair_key(pr), key))
			return pr;
	return NULL;
}

/* Item i of a sequence node (or n itself for i == 0 when n is a lone scalar). */
static struct fy_node *cfg_seq_item(struct fy_node *n, size_t i)
{
	if (!n)
		return NULL;
	if (!fy_node_is_sequence(n))
		return i == 0 ? n : NULL;
	void *it = NULL;
	struct fy_node *c;
	size_t k = 0;
	while ((c = fy_node_sequence_iterate(n, &it)))
		if (k++ == i)
			return c;
	return NULL;
}

int cfg_error_key(struct cfg_parse *p, struct fy_node *section, const char *key, long index,
		  const char *fmt, ...)
{
	struct fy_node_pair *pr = cfg_map_pair(section, key);
	struct fy_node *val = pr ? fy_node_pair_value(pr) : NULL;
	struct fy_node *saved_key = p->key;
	struct fy_node *at = val;
	if (pr)
		p->key = fy_node_pair_key(pr);
	size_t old = cfg_path_push_key(p, key, strlen(key));
	if (index >= 0) {
		cfg_path_push_index(p, (size_t)index);
		struct fy_node *item = cfg_seq_item(val, (size_t)index);
		if (item)
			at = item;
	}
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, at ? at : section, fmt, ap);
	va_end(ap);
	cfg_path_pop(p, old);
	p->key = saved_key;
	return -1;
}

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

bool cfg_cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam = cfg_sockaddr_bytes(sa, a);
	if (!c || fam != c->family)
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

bool cfg_cidrlist_match(const struct cfg_cidrlist *l, const struct sockaddr *sa)
{
	if (!l)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (cfg_cidr_match(&l->v[i], sa))
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
static int cfg_parse_long(const char *s, long *out)
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

static int cfg_parse_double(const char *s, double *out)
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

/* ---------------------------------------------------------------- the generic engine */

static int cfg_table_walk(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n,
			  void *obj, bool scalar_ok);

/* Iterates n as a list: the items of a sequence, or n itself once when it is a lone value. */
static struct fy_node *cfg_list_next(struct fy_node *n, void **iter, bool *done)
{
	if (*done || !n)
		return NULL;
	if (fy_node_is_sequence(n)) {
		struct fy_node *c = fy_node_sequence_iterate(n, iter);
		if (!c)
			*done = true;
		return c;
	}
	*done = true;
	return n;
}

static bool cfg_node_is_null(struct fy_node *n)
{
	if (!n)
		return true;
	if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN)
		return false;
	size_t len;
	const char *s = cfg_node_text(n, &len);
	return len == 0 || (len == 1 && s[0] == '~') ||
	       (len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
			     memcmp(s, "NULL", 4) == 0));
}

static const char *cfg_node_kind(struct fy_node *n)
{
	if (!n)
		return "nothing";
	if (fy_node_is_mapping(n))
		return "a mapping";
	if (fy_node_is_sequence(n))
		return "a list";
	return "a scalar";
}

/* Copies the scalar text of n into buf as a C string, for the numeric parsers. */
static int cfg_node_cstr(struct cfg_parse *p, struct fy_node *n, const char *what, char *buf,
			 size_t bufsz)
{
	size_t len;
	const char *s = cfg_node_text(n, &len);
	if (!s)
		return cfg_error(p, n, "expected %s, got %s", what, cfg_node_kind(n));
	if (len >= bufsz || memchr(s, '\0', len))
		return cfg_error(p, n, "expected %s, got a %zu-byte value", what, len);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

static void cfg_format_duration(uint64_t ms, char *buf, size_t sz)
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

static void cfg_format_size(uint64_t v, char *buf, size_t sz)
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

/* Formats a bound of field f's type for messages and docs. */
static void cfg_format_bound(const struct cfg_field *f, double v, char *buf, size_t sz)
{
	if (f->type == CFG_DURATION)
		cfg_format_duration((uint64_t)v, buf, sz);
	else if (f->type == CFG_SIZE)
		cfg_format_size((uint64_t)v, buf, sz);
	else
		snprintf(buf, sz, "%.15g", v);
}

static bool cfg_has_bounds(const struct cfg_field *f)
{
	return f->min != f->max;
}

static int cfg_check_bounds(struct cfg_parse *p, const struct cfg_field *f, struct fy_node *n,
			    double v, const char *text)
{
	if (!cfg_has_bounds(f) || (v >= f->min && v <= f->max))
		return 0;
	char lo[64], hi[64];
	cfg_format_bound(f, f->min, lo, sizeof(lo));
	cfg_format_bound(f, f->max, hi, sizeof(hi));
	return cfg_error(p, n, "must be between %s and %s, got %s", lo, hi, text);
}

static int cfg_enum_index(const char *const *choices, const char *s)
{
	for (int i = 0; choices && choices[i]; i++)
		if (strcasecmp(choices[i], s) == 0)
			return i;
	return -1;
}

static void cfg_enum_list(const char *const *choices, char *buf, size_t sz)
{
	size_t off = 0;
	buf[0] = '\0';
	for (int i = 0; choices && choices[i] && off < sz; i++) {
		int k = snprintf(buf + off, sz - off, "%s%s", i ? ", " : "", choices[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
}

/* Parses a scalar-typed value from text s (node n for positions; may be NULL). */
static int cfg_parse_scalar_text(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, const char *s, void *dst)
{
	switch (f->type) {
	case CFG_BOOL: {
		bool b;
		if (cfg_parse_bool(s, &b) < 0)
			return cfg_error(p, n, "expected true or false, got \"%s\"", s);
		*(bool *)dst = b;
		return 0;
	}
	case CFG_INT: {
		long v;
		if (cfg_parse_long(s, &v) < 0)
			return cfg_error(p, n, "expected an integer, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(long *)dst = v;
		return 0;
	}
	case CFG_DOUBLE: {
		double v;
		if (cfg_parse_double(s, &v) < 0)
			return cfg_error(p, n, "expected a number, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, v, s) < 0)
			return -1;
		*(double *)dst = v;
		return 0;
	}
	case CFG_SIZE: {
		uint64_t v;
		if (cfg_parse_size(s, &v) < 0)
			return cfg_error(p, n, "expected a size like 512, 64K, 50M or 1G, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(uint64_t *)dst = v;
		return 0;
	}
	case CFG_DURATION: {
		uint64_t v;
		if (cfg_parse_duration(s, &v) < 0)
			return cfg_error(p, n, "expected a duration like 250ms, 30s, 5m, 1h or 2d, "
					 "got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(uint64_t *)dst = v;
		return 0;
	}
	case CFG_ENUM: {
		int i = cfg_enum_index(f->choices, s);
		if (i < 0) {
			char list[256];
			cfg_enum_list(f->choices, list, sizeof(list));
			return cfg_error(p, n, "expected one of %s, got \"%s\"", list, s);
		}
		*(int *)dst = i;
		return 0;
	}
	case CFG_RATE: {
		struct cfg_rate r;
		if (cfg_parse_rate(s, &r) < 0)
			return cfg_error(p, n, "expected a rate like 30/60s, 1000/1h or 10/m, got \"%s\"",
					 s);
		*(struct cfg_rate *)dst = r;
		return 0;
	}
	case CFG_STRING: {
		char *copy = strdup(s);
		if (!copy)
			return cfg_error(p, n, "out of memory");
		free(*(char **)dst);
		*(char **)dst = copy;
		return 0;
	}
	default:
		return cfg_error(p, n, "internal: not a scalar type");
	}
}

static bool cfg_type_is_scalar(enum cfg_type t)
{
	return t == CFG_BOOL || t == CFG_INT || t == CFG_DOUBLE || t == CFG_SIZE ||
	       t == CFG_DURATION || t == CFG_STRING || t == CFG_ENUM || t == CFG_RATE;
}

static const char *cfg_type_noun(const struct cfg_field *f)
{
	switch (f->type) {
	case CFG_BOOL: return "true or false";
	case CFG_INT: return "an integer";
	case CFG_DOUBLE: return "a number";
	case CFG_SIZE: return "a size";
	case CFG_DURATION: return "a duration";
	case CFG_STRING: return "a string";
	case CFG_ENUM: return "one of the listed words";
	case CFG_RATE: return "a rate";
	case CFG_STRLIST: return "a list of strings";
	case CFG_STRUCT: return "a mapping";
	case CFG_STRUCT_LIST: return "a list";
	case CFG_CIDRLIST: return "a list of addresses/prefixes";
	case CFG_CUSTOM: return "a value";
	}
	return "a value";
}

static int cfg_parse_scalar_node(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, void *dst)
{
	if (f->type == CFG_STRING) {
		size_t len;
		const char *s = cfg_node_text(n, &len);
		if (!s)
			return cfg_error(p, n, "expected a string, got %s", cfg_node_kind(n));
		if (memchr(s, '\0', len))
			return cfg_error(p, n, "NUL byte in a string");
		char *copy = strndup(s, len);
		if (!copy)
			return cfg_error(p, n, "out of memory");
		free(*(char **)dst);
		*(char **)dst = copy;
		return 0;
	}
	char buf[CFG_SCALAR_MAX];
	if (cfg_node_cstr(p, n, cfg_type_noun(f), buf, sizeof(buf)) < 0)
		return -1;
	return cfg_parse_scalar_text(p, f, n, buf, dst);
}

/* Item count of n seen as a list: a sequence's length, 1 for a lone non-null value. */
static size_t cfg_list_count(struct fy_node *n)
{
	if (cfg_node_is_null(n))
		return 0;
	if (fy_node_is_sequence(n)) {
		int c = fy_node_sequence_item_count(n);
		return c > 0 ? (size_t)c : 0;
	}
	return 1;
}

static int cfg_parse_strlist(struct cfg_parse *p, struct fy_node *n, struct cfg_strlist *l)
{
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
	if (cnt == 0)
		return 0;
	l->v = calloc(cnt, sizeof(char *));
	if (!l->v)
		return cfg_error(p, n, "out of memory");
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		size_t old = cfg_path_push_index(p, i);
		size_t len;
		const char *s = cfg_node_text(it, &len);
		if (!s || memchr(s, '\0', len)) {
			rc = cfg_error(p, it, "expected a string, got %s", cfg_node_kind(it));
		} else {
			l->v[l->n] = strndup(s, len);
			if (!l->v[l->n])
				rc = cfg_error(p, it, "out of memory");
			else
				l->n++;
		}
		cfg_path_pop(p, old);
	}
	return rc;
}

static int cfg_parse_cidrlist(struct cfg_parse *p, struct fy_node *n, struct cfg_cidrlist *l)
{
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	free(l->v);
	l->v = NULL;
	l->n = 0;
	if (cnt == 0)
		return 0;
	l->v = calloc(cnt, sizeof(struct cfg_cidr));
	if (!l->v)
		return cfg_error(p, n, "out of memory");
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		size_t old = cfg_path_push_index(p, i);
		char buf[CFG_SCALAR_MAX];
		if (cfg_node_cstr(p, it, "an address or prefix", buf, sizeof(buf)) < 0) {
			rc = -1;
		} else if (cfg_parse_cidr(buf, &l->v[l->n]) < 0) {
			rc = cfg_error(p, it, "expected an address or prefix like 192.0.2.0/24 or "
				       "2001:db8::/32, got \"%s\"", buf);
		} else {
			l->n++;
		}
		cfg_path_pop(p, old);
	}
	return rc;
}

static int cfg_parse_struct_list(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, struct cfg_list *l)
{
	const struct cfg_table *sub = f->sub;
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	if (!sub || !sub->fields)
		return cfg_error(p, n, "internal: list without an item table");
	if (l->v) {
		for (size_t i = 0; i < l->n; i++)
			cfg_table_free(sub, (char *)l->v + i * sub->size);
		free(l->v);
	}
	l->v = NULL;
	l->n = 0;
	if (cnt == 0)
		return 0;
	l->v = calloc(cnt, sub->size);
	if (!l->v)
		return cfg_error(p, n, "out of memory");
	l->n = cnt; /* all zeroed, so cfg_table_free is safe on any of them */
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		void *item = (char *)l->v + i * sub->size;
		size_t old = cfg_path_push_index(p, i);
		if (it && fy_node_is_scalar(it) && !cfg_node_is_null(it) && sub->fields[0].key &&
		    sub->fields[0].type == CFG_STRING) {
			/* a plain string item sets the element's first key: `- smtp://h:25` */
			size_t o2 = cfg_path_push_key(p, sub->fields[0].key, strlen(sub->fields[0].key));
			int r = cfg_parse_scalar_node(p, &sub->fields[0],
						      it, (char *)item + sub->fields[0].offset);
			cfg_path_pop(p, o2);
			if (r < 0) {
				rc = -1;
			} else {
				/* the rest take their defaults; validate sees the scalar node */
				p->in_item = true;
				if (cfg_table_walk(p, sub, it, item, true) < 0)
					rc = -1;
			}
		} else {
			p->in_item = true;
			if (cfg_table_walk(p, sub, cfg_node_is_null(it) ? NULL : it, item, false) < 0)
				rc = -1;
		}
		cfg_path_pop(p, old);
	}
	return rc;
}

/* Builds a small YAML document from a .defval text (for list and custom defaults). */
static struct fy_document *cfg_default_doc(const char *text)
{
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET };
	return fy_document_build_from_string(&pc, text, strlen(text));
}

static int cfg_parse_field(struct cfg_parse *p, const struct cfg_field *f, struct fy_node *n,
			   void *dst)
{
	switch (f->type) {
	case CFG_STRLIST:
		return cfg_parse_strlist(p, n, dst);
	case CFG_CIDRLIST:
		return cfg_parse_cidrlist(p, n, dst);
	case CFG_STRUCT:
		return cfg_table_walk(p, f->sub, cfg_node_is_null(n) ? NULL : n, dst, false);
	case CFG_STRUCT_LIST:
		return cfg_parse_struct_list(p, f, n, dst);
	case CFG_CUSTOM:
		return f->custom ? f->custom(p, n, dst) : 0;
	default:
		return cfg_parse_scalar_node(p, f, n, dst);
	}
}

/* The key is absent (or null): required check, then the default. */
static int cfg_apply_default(struct cfg_parse *p, const struct cfg_field *f,
			     struct fy_node *section, void *dst)
{
	if (f->flags & CFG_REQUIRED)
		return cfg_error(p, section, "missing required key");
	if (f->type == CFG_STRUCT)
		return cfg_table_walk(p, f->sub, NULL, dst, false);
	if (f->type == CFG_CUSTOM)
		return f->custom ? f->custom(p, NULL, dst) : 0;
	if (!f->defval)
		return 0;
	int rc;
	bool saved = p->in_default;
	p->in_default = true;
	if (cfg_type_is_scalar(f->type)) {
		rc = cfg_parse_scalar_text(p, f, NULL, f->defval, dst);
	} else {
		struct fy_document *d = cfg_default_doc(f->defval);
		if (!d)
			rc = cfg_error(p, NULL, "cannot parse \"%s\"", f->defval);
		else
			rc = cfg_parse_field(p, f, fy_document_root(d), dst);
		fy_document_destroy(d);
	}
	p->in_default = saved;
	return rc;
}

static const struct cfg_field *cfg_table_find(const struct cfg_table *t, const char *key,
					      size_t len)
{
	for (const struct cfg_field *f = t->fields; f && f->key; f++)
		if (strlen(f->key) == len && memcmp(f->key, key, len) == 0)
			return f;
	return NULL;
}

/* Edit distance of two short strings, capped, for "did you mean" hints. */
static int cfg_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	int row[64];
	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int prev = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cur = row[j];
			int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
			int v = prev + cost;
			if (row[j] + 1 < v)
				v = row[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			row[j] = v;
			prev = cur;
		}
	}
	return row[lb];
}

static int cfg_unknown_key(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *k,
			   const char *key, size_t len)
{
	const char *best = NULL;
	int bestd = 3;
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		int d = cfg_distance(key, len, f->key);
		if (d < bestd && (size_t)d * 3 <= len) { /* "dns" is not a typo of "tls" */
			bestd = d;
			best = f->key;
		}
	}
	size_t old = cfg_path_push_key(p, key, len);
	if (best)
		cfg_error(p, k, "unknown key (did you mean \"%s\"?)", best);
	else
		cfg_error(p, k, "unknown key");
	cfg_path_pop(p, old);
	return -1;
}

/* Fills obj from mapping n (NULL = absent: defaults only) by table t. scalar_ok: n may be a
 * lone scalar whose value the caller already stored in the first field (list items). */
static int cfg_table_walk(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n,
			  void *obj, bool scalar_ok)
{
	int rc = 0;
	size_t errs_before = p->nerr + p->dropped;
	bool scalar_item = scalar_ok && n && fy_node_is_scalar(n) && !cfg_node_is_null(n);
	bool is_item = p->in_item;
	/* a missing key is reported at the section's own key ("backends:"), or at the item */
	struct fy_node *missing_at = !is_item && p->key ? p->key : n;
	p->in_item = false;

	if (!t || !t->fields)
		return cfg_error(p, n, "internal: section without a table");
	if (n && !fy_node_is_mapping(n) && !scalar_item)
		return cfg_error(p, n, "expected a mapping, got %s", cfg_node_kind(n));
	if (n && fy_node_is_mapping(n)) {
		void *it = NULL;
		struct fy_node_pair *pr;
		while ((pr = fy_node_mapping_iterate(n, &it))) {
			struct fy_node *k = fy_node_pair_key(pr);
			size_t len;
			const char *key = cfg_node_text(k, &len);
			if (!key || cfg_node_is_null(k)) {
				rc = cfg_error(p, k ? k : n, "keys must be plain strings");
				continue;
			}
			if (!cfg_table_find(t, key, len))
				rc = cfg_unknown_key(p, t, k, key, len);
		}
	}
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		void *dst = (char *)obj + f->offset;
		struct fy_node_pair *pr = scalar_item ? NULL : cfg_map_pair(n, f->key);
		struct fy_node *v = pr ? fy_node_pair_value(pr) : NULL;
		struct fy_node *saved_key = p->key;
		size_t old = cfg_path_push_key(p, f->key, strlen(f->key));
		if (pr)
			p->key = fy_node_pair_key(pr);
		int r;
		if (scalar_item && f == t->fields)
			r = 0; /* already set from the lone scalar */
		else if (cfg_node_is_null(v))
			r = cfg_apply_default(p, f, pr ? p->key : missing_at, dst);
		else
			r = cfg_parse_field(p, f, v, dst);
		if (r == 0 && pr && (f->flags & CFG_REQUIRED) &&
		    (f->type == CFG_STRUCT_LIST || f->type == CFG_STRLIST || f->type == CFG_CIDRLIST) &&
		    cfg_list_count(v) == 0)
			r = cfg_error(p, v, "must not be empty");
		if (r < 0)
			rc = -1;
		cfg_path_pop(p, old);
		p->key = saved_key;
	}
	/* cross-field checks only when the fields themselves were fine (a module's hook may
	 * rely on its REQUIRED keys being set); the top table's hook is written to cope */
	if (t->validate && (p->nerr + p->dropped == errs_before || t == &config_table))
		if (t->validate(p, n, obj) < 0)
			rc = -1;
	return rc;
}

void cfg_table_free(const struct cfg_table *t, void *obj)
{
	if (!t || !obj)
		return;
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		void *dst = (char *)obj + f->offset;
		switch (f->type) {
		case CFG_STRING:
			free(*(char **)dst);
			*(char **)dst = NULL;
			break;
		case CFG_STRLIST: {
			struct cfg_strlist *l = dst;
			for (size_t i = 0; i < l->n; i++)
				free(l->v[i]);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CFG_CIDRLIST: {
			struct cfg_cidrlist *l = dst;
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CFG_STRUCT:
			cfg_table_free(f->sub, dst);
			break;
		case CFG_STRUCT_LIST: {
			struct cfg_list *l = dst;
			for (size_t i = 0; l->v && i < l->n; i++)
				cfg_table_free(f->sub, (char *)l->v + i * f->sub->size);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CFG_CUSTOM:
			if (f->free_custom)
				f->free_custom(dst);
			break;
		default:
			break;
		}
	}
}

/* ---------------------------------------------------------------- loading */

/* Counts nodes with aliases expanded, up to *budget; -1 when the budget runs out (a
 * "billion laughs" document) or aliases nest too deep. */
static int cfg_expanded_size(struct fy_node *n, long *budget, int depth)
{
	if (!n)
		return 0;
	if (--*budget < 0 || depth > 1000)
		return -1;
	if (fy_node_is_alias(n)) {
		struct fy_node *t = fy_node_resolve_alias(n);
		return t ? cfg_expanded_size(t, budget, depth + 1) : 0;
	}
	if (fy_node_is_mapping(n)) {
		void *it = NULL;
		struct fy_node_pair *pr;
		while ((pr = fy_node_mapping_iterate(n, &it)))
			if (cfg_expanded_size(fy_node_pair_key(pr), budget, depth + 1) < 0 ||
			    cfg_expanded_size(fy_node_pair_value(pr), budget, depth + 1) < 0)
				return -1;
	} else if (fy_node_is_sequence(n)) {
		void *it = NULL;
		struct fy_node *c;
		while ((c = fy_node_sequence_iterate(n, &it)))
			if (cfg_expanded_size(c, budget, depth + 1) < 0)
				return -1;
	}
	return 0;
}

static int cfg_err_cmp(const void *a, const void *b)
{
	const struct cfg_err *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void cfg_parse_finish(struct cfg_parse *p, FILE *err)
{
	if (p->nerr)
		qsort(p->errs, p->nerr, sizeof(*p->errs), cfg_err_cmp);
	for (size_t i = 0; i < p->nerr; i++) {
		if (err)
			fprintf(err, "%s\n", p->errs[i].text);
		free(p->errs[i].text);
	}
	if (err && p->dropped)
		fprintf(err, "%s: %zu more errors not shown\n", p->file, p->dropped);
	free(p->errs);
	p->errs = NULL;
	p->nerr = p->cap = 0;
}

/* Reads a whole file (bounded); malloc'd NUL-terminated text, or NULL with errno. */
static char *cfg_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	for (;;) {
		if (cap - n < 4096) {
			if (cap >= CFG_MAX_FILE_SIZE) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				goto fail;
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				errno = EIO;
				goto fail;
			}
			break;
		}
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	{
		int e = errno;
		free(buf);
		fclose(f);
		errno = e;
	}
	return NULL;
}

/* YAML 1.2 5.1 c-printable over UTF-8: 0, or -1 with the 1-based line:col of the first bad
 * byte. Checked before libfyaml sees the text (0.7.12 can loop on invalid UTF-8). */
static int cfg_check_text(const char *text, size_t len, int *line, int *col, const char **why)
{
	const unsigned char *s = (const unsigned char *)text;
	int l = 1, c = 1;
	for (size_t i = 0; i < len;) {
		unsigned ch = s[i];
		size_t n = 1;
		uint32_t cp;
		if (ch < 0x80) {
			cp = ch;
		} else if (ch >= 0xc2 && ch <= 0xdf) {
			n = 2;
			cp = ch & 0x1f;
		} else if (ch >= 0xe0 && ch <= 0xef) {
			n = 3;
			cp = ch & 0x0f;
		} else if (ch >= 0xf0 && ch <= 0xf4) {
			n = 4;
			cp = ch & 0x07;
		} else {
			goto bad_utf8;
		}
		if (i + n > len)
			goto bad_utf8;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto bad_utf8;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			goto bad_utf8;
		if (!(cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 ||
		      (cp >= 0xa0 && cp <= 0xfffd) || cp >= 0x10000)) {
			*line = l;
			*col = c;
			*why = "control character not allowed in YAML";
			return -1;
		}
		if (cp == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
		i += n;
	}
	return 0;
bad_utf8:
	*line = l;
	*col = c;
	*why = "invalid UTF-8";
	return -1;
}

/* True when line `lineno` (1-based) of text holds an unquoted "[v6]:port", which YAML reads
 * as the start of a flow list: worth a hint next to libfyaml's message. */
static bool cfg_line_has_bare_ipv6(const char *text, size_t len, int lineno)
{
	const char *s = text, *end = text + len;
	for (int l = 1; l < lineno && s < end; l++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			return false;
		s = nl + 1;
	}
	for (; s < end && *s != '\n'; s++) {
		if (*s == '"' || *s == '\'')
			return false;
		if (*s != '[')
			continue;
		const char *q = s + 1;
		while (q < end && (isxdigit((unsigned char)*q) || *q == ':' || *q == '.'))
			q++;
		if (q + 1 < end && q > s + 1 && q[0] == ']' && q[1] == ':')
			return true;
	}
	return false;
}

int cfg_table_load(const char *name, const char *text, size_t len, const struct cfg_table *t,
		   void *obj, void *err_fp)
{
	FILE *err = err_fp;
	struct cfg_parse p = { .file = name ? name : "<config>" };
	struct fy_diag *diag = NULL;
	struct fy_document *doc = NULL;
	char *owned = NULL;
	int rc = -1;

	if (!text) {
		owned = cfg_read_file(name, &len);
		if (!owned) {
			if (err)
				fprintf(err, "%s: cannot read: %s\n", p.file, strerror(errno));
			return -1;
		}
		text = owned;
	}
	{
		int l, c;
		const char *why;
		if (cfg_check_text(text, len, &l, &c, &why) < 0) {
			char line[600];
			snprintf(line, sizeof(line), "%s:%d:%d: %s", p.file, l, c, why);
			cfg_error_add(&p, l, c, line);
			cfg_parse_finish(&p, err);
			goto out;
		}
	}
	struct fy_diag_cfg dc;
	fy_diag_cfg_default(&dc);
	dc.fp = NULL;
	dc.colorize = false;
	diag = fy_diag_create(&dc);
	if (!diag) {
		if (err)
			fprintf(err, "%s: out of memory\n", p.file);
		goto out;
	}
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = diag };
	doc = fy_document_build_from_string(&pc, len ? text : "", len);
	if (!doc || fy_diag_got_error(diag)) {
		void *it = NULL;
		struct fy_diag_error *e;
		bool any = false;
		char line[800];
		while ((e = fy_diag_errors_iterate(diag, &it))) {
			if (e->type < FYET_ERROR)
				continue;
			snprintf(line, sizeof(line), "%s:%d:%d: YAML syntax: %s%s", p.file, e->line,
				 e->column, e->msg ? e->msg : "error",
				 cfg_line_has_bare_ipv6(text, len, e->line)
					 ? " (quote bracketed IPv6 addresses: \"[::1]:25\")" : "");
			cfg_error_add(&p, e->line, e->column, line);
			any = true;
		}
		if (!any && doc) {
			snprintf(line, sizeof(line), "%s:1:1: YAML syntax error", p.file);
			cfg_error_add(&p, 1, 1, line);
			any = true;
		}
		if (any) {
			cfg_parse_finish(&p, err);
			goto out;
		}
		/* an empty file builds no document and reports nothing: an empty mapping */
	}
	struct fy_node *root = doc ? fy_document_root(doc) : NULL;
	long budget = CFG_MAX_EXPANDED;
	if (root && cfg_expanded_size(root, &budget, 0) < 0) {
		cfg_error(&p, root, "too many nodes after expanding aliases (limit %d)",
			  CFG_MAX_EXPANDED);
		cfg_parse_finish(&p, err);
		goto out;
	}
	if (doc && fy_document_resolve(doc) < 0) {
		cfg_error(&p, root, "cannot resolve anchors/aliases");
		cfg_parse_finish(&p, err);
		goto out;
	}
	root = doc ? fy_document_root(doc) : NULL;
	if (cfg_node_is_null(root))
		root = NULL;
	if (root && !fy_node_is_mapping(root)) {
		cfg_error(&p, root, "the file must be a YAML mapping (key: value lines), got %s",
			  cfg_node_kind(root));
		cfg_parse_finish(&p, err);
		goto out;
	}
	cfg_table_walk(&p, t, root, obj, false);
	rc = (p.nerr || p.dropped) ? -1 : 0;
	cfg_parse_finish(&p, err);
out:
	fy_document_destroy(doc);
	fy_diag_destroy(diag);
	free(owned);
	return rc;
}

static int config_load_any(const char *name, const char *text, size_t len,
			   struct mx_config **out, void *err_fp)
{
	*out = NULL;
	struct mx_config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		if (err_fp)
			fprintf(err_fp, "%s: out of memory\n", name);
		return -1;
	}
	if (cfg_table_load(name, text, len, &config_table, cfg, err_fp) < 0)
		goto fail;
	cfg->path = strdup(name);
	if (!cfg->path)
		goto fail;
	*out = cfg;
	return 0;
fail:
	config_free(cfg);
	return -1;
}

int config_load(const char *path, struct mx_config **out, void *err_fp)
{
	if (!path) {
		*out = NULL;
		return -1;
	}
	return config_load_any(path, NULL, 0, out, err_fp);
}

int config_load_string(const char *name, const char *text, size_t len, struct mx_config **out,
		       void *err_fp)
{
	if (!text) {
		*out = NULL;
		return -1;
	}
	return config_load_any(name ? name : "<string>", text, len, out, err_fp);
}

void config_free(struct mx_config *cfg)
{
	if (!cfg)
		return;
	cfg_table_free(&config_table, cfg);
	free(cfg->path);
	free(cfg);
}

int config_worker_count(const struct mx_config *cfg)
{
	long n = cfg ? cfg->workers : 0;
	if (n <= 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
	}
	return n > 64 ? 64 : (int)n;
}

/* ---------------------------------------------------------------- table self-check */

static int cfg_selfcheck_walk(struct cfg_parse *p, const struct cfg_table *t, int depth)
{
	int rc = 0;
	if (!t || !t->fields)
		return cfg_error(p, NULL, "table without fields");
	if (depth > 16)
		return cfg_error(p, NULL, "tables nested too deep (a cycle?)");
	/* room for every field even when an offset is wrong, so the probe itself stays safe */
	size_t room = t->size + 1;
	for (const struct cfg_field *f = t->fields; f->key; f++) {
		size_t end = f->offset + (f->type == CFG_STRUCT && f->sub ? f->sub->size : 64);
		if (end > room)
			room = end;
	}
	void *obj = calloc(1, room);
	if (!obj)
		return cfg_error(p, NULL, "out of memory");
	for (const struct cfg_field *f = t->fields; f->key; f++) {
		size_t old = cfg_path_push_key(p, f->key, strlen(f->key));
		for (const struct cfg_field *g = t->fields; g < f; g++)
			if (strcmp(g->key, f->key) == 0)
				rc = cfg_error(p, NULL, "key listed twice");
		if (f->offset >= t->size)
			rc = cfg_error(p, NULL, "offset %zu outside the %zu-byte struct", f->offset, t->size);
		if (f->type == CFG_ENUM && (!f->choices || !f->choices[0]))
			rc = cfg_error(p, NULL, "enum without choices");
		if ((f->type == CFG_STRUCT || f->type == CFG_STRUCT_LIST) && !f->sub)
			rc = cfg_error(p, NULL, "section without a .sub table");
		if (f->type == CFG_CUSTOM && !f->custom)
			rc = cfg_error(p, NULL, "custom field without .custom");
		if (cfg_has_bounds(f) && f->min > f->max)
			rc = cfg_error(p, NULL, "min > max");
		if ((f->flags & CFG_REQUIRED) && f->defval)
			rc = cfg_error(p, NULL, "required key with a default");
		if (!f->doc || !f->doc[0])
			rc = cfg_error(p, NULL, "no doc line");
		if (f->offset < t->size && f->type != CFG_CUSTOM && f->type != CFG_STRUCT &&
		    f->defval && !(f->flags & CFG_REQUIRED)) {
			/* the default must parse (and fit the bounds) through the same parsers */
			size_t before = p->nerr;
			cfg_apply_default(p, f, NULL, (char *)obj + f->offset);
			if (p->nerr != before)
				rc = -1;
		}
		if ((f->type == CFG_STRUCT || f->type == CFG_STRUCT_LIST) && f->sub)
			if (cfg_selfcheck_walk(p, f->sub, depth + 1) < 0)
				rc = -1;
		cfg_path_pop(p, old);
	}
	cfg_table_free(t, obj);
	free(obj);
	return rc;
}

int cfg_table_selfcheck(const struct cfg_table *t, void *err_fp)
{
	struct cfg_parse p = { .file = t && t->name ? t->name : "<table>" };
	cfg_selfcheck_walk(&p, t, 0);
	int rc = (p.nerr || p.dropped) ? -1 : 0;
	cfg_parse_finish(&p, err_fp);
	return rc;
}

/* ---------------------------------------------------------------- the core tables */

static const char *const listen_tls_choices[] = { "none", "starttls", "implicit", NULL };
static const char *const tls_version_choices[] = { "1.2", "1.3", NULL };
static const char *const bare_lf_choices[] = { "reject", "normalize", NULL };
static const char *const balance_choices[] = { "round_robin", "least_conn", "source_hash", NULL };
static const char *const identity_choices[] = { "none", "xclient", "proxy_v2", NULL };
static const char *const log_level_choices[] = { "debug", "info", "warning", "error", NULL };

#define S(x) ((double)(x) * 1000.0)   /* seconds -> ms for duration bounds */

static int listen_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct listen_config *l = obj;
	const char *err;
	if (!l->address)
		return 0;
	if (cfg_parse_listen_address(l->address, &l->sa, &l->salen, &err) < 0) {
		if (n && fy_node_is_scalar(n))
			return cfg_error(p, n, "%s", err);
		return cfg_error_key(p, n, "address", -1, "%s", err);
	}
	return 0;
}

static const struct cfg_field listen_fields[] = {
	{ "address", CFG_STRING, offsetof(struct listen_config, address), .flags = CFG_REQUIRED,
	  .doc = "address:port to listen on: 127.0.0.1:2525, [::1]:25, :25 (all IPv4), [::]:25 (all IPv6)" },
	{ "tls", CFG_ENUM, offsetof(struct listen_config, tls), "none", .choices = listen_tls_choices,
	  .doc = "none, starttls (offer STARTTLS) or implicit (TLS from the first byte, port 465)" },
	{ "proxy_protocol", CFG_BOOL, offsetof(struct listen_config, proxy_protocol), "false",
	  .doc = "expect a PROXY v1/v2 header, accepted only from trusted_proxies" },
	{ NULL }
};
static const struct cfg_table listen_table = {
	"listen", sizeof(struct listen_config), listen_fields, listen_validate
};

static int tls_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct tls_config *t = obj;
	int rc = 0;
	if (t->certificate && access(t->certificate, R_OK) != 0)
		rc = cfg_error_key(p, n, "certificate", -1, "cannot read %s: %s", t->certificate,
				   strerror(errno));
	if (t->key && access(t->key, R_OK) != 0)
		rc = cfg_error_key(p, n, "key", -1, "cannot read %s: %s", t->key, strerror(errno));
	if (t->certificate && !t->key)
		rc = cfg_error_key(p, n, "key", -1, "tls.certificate is set but tls.key is not");
	if (t->key && !t->certificate)
		rc = cfg_error_key(p, n, "certificate", -1, "tls.key is set but tls.certificate is not");
	return rc;
}

static const struct cfg_field tls_fields[] = {
	{ "certificate", CFG_STRING, offsetof(struct tls_config, certificate),
	  .doc = "PEM certificate chain for STARTTLS/implicit TLS listeners" },
	{ "key", CFG_STRING, offsetof(struct tls_config, key), .doc = "PEM private key" },
	{ "ciphers", CFG_STRING, offsetof(struct tls_config, ciphers),
	  .doc = "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)" },
	{ "min_version", CFG_ENUM, offsetof(struct tls_config, min_version), "1.2",
	  .choices = tls_version_choices, .doc = "lowest TLS version offered: 1.2 or 1.3" },
	{ NULL }
};
static const struct cfg_table tls_table = {
	"tls", sizeof(struct tls_config), tls_fields, tls_validate
};

static int limits_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct limits_config *l = obj;
	struct stat st;
	if (l->spool_dir && (stat(l->spool_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
		return cfg_error_key(p, n, "spool_dir", -1, "%s is not a directory", l->spool_dir);
	return 0;
}

static const struct cfg_field limits_fields[] = {
	{ "max_connections", CFG_INT, offsetof(struct limits_config, max_connections), "20000",
	  1, 10000000, .doc = "concurrent client connections, all workers together" },
	{ "max_connections_per_ip", CFG_INT, offsetof(struct limits_config, max_connections_per_ip),
	  "50", 1, 10000000, .doc = "concurrent connections from one client address" },
	{ "max_message_size", CFG_SIZE, offsetof(struct limits_config, max_message_size), "50M",
	  1024, (double)(1ull << 40), .doc = "largest message accepted (announced in EHLO SIZE)" },
	{ "max_recipients", CFG_INT, offsetof(struct limits_config, max_recipients), "100",
	  1, 100000, .doc = "RCPT TO per transaction; more get 452 4.5.3" },
	{ "command_timeout", CFG_DURATION, offsetof(struct limits_config, command_timeout), "300s",
	  S(1), S(86400), .doc = "idle time allowed between client commands" },
	{ "data_timeout", CFG_DURATION, offsetof(struct limits_config, data_timeout), "600s",
	  S(1), S(86400), .doc = "time allowed between DATA chunks from the client" },
	{ "data_deadline", CFG_DURATION, offsetof(struct limits_config, data_deadline), "1h",
	  S(1), S(86400), .doc = "the whole DATA phase, 354 to the final dot: a client trickling bytes is cut off (421 4.4.2); 1h passes a 50M message at 15 KB/s" },
	{ "drain_timeout", CFG_DURATION, offsetof(struct limits_config, drain_timeout), "30s",
	  0, S(86400), .doc = "on SIGTERM, how long sessions may finish before exit" },
	{ "bare_lf", CFG_ENUM, offsetof(struct limits_config, bare_lf), "reject",
	  .choices = bare_lf_choices, .doc = "a bare LF in DATA: reject the message or normalize it to CRLF" },
	{ "max_line_length", CFG_INT, offsetof(struct limits_config, max_line_length), "1000",
	  512, 65536, .doc = "longest command line incl. CRLF (RFC 5321 4.5.3.1.4: at least 512)" },
	{ "max_errors", CFG_INT, offsetof(struct limits_config, max_errors), "10", 1, 1000,
	  .doc = "protocol errors per session before 421 and disconnect" },
	{ "memory_threshold", CFG_SIZE, offsetof(struct limits_config, memory_threshold), "256K",
	  0, (double)(1ull << 30), .doc = "message bytes held in memory before spilling to spool_dir" },
	{ "spool_dir", CFG_STRING, offsetof(struct limits_config, spool_dir), "/tmp",
	  .doc = "directory for messages larger than memory_threshold (must exist)" },
	{ NULL }
};
static const struct cfg_table limits_table = {
	"limits", sizeof(struct limits_config), limits_fields, limits_validate
};

static const struct cfg_field health_fields[] = {
	{ "interval", CFG_DURATION, offsetof(struct health_check_config, interval), "5s",
	  100, S(3600), .doc = "time between probes of each backend" },
	{ "timeout", CFG_DURATION, offsetof(struct health_check_config, timeout), "3s",
	  100, S(3600), .doc = "a probe without a 220 greeting within this fails" },
	{ "fall", CFG_INT, offsetof(struct health_check_config, fall), "2", 1, 100,
	  .doc = "failed probes in a row before a backend is marked down" },
	{ "rise", CFG_INT, offsetof(struct health_check_config, rise), "2", 1, 100,
	  .doc = "good probes in a row before a down backend is used again" },
	{ NULL }
};
static const struct cfg_table health_table = {
	"backends.health_check", sizeof(struct health_check_config), health_fields, NULL
};

static int server_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct backend_server_config *s = obj;
	struct cfg_backend_url u;
	const char *err;
	if (s->address && cfg_parse_backend_url(s->address, &u, &err) < 0) {
		if (n && fy_node_is_scalar(n))
			return cfg_error(p, n, "%s: \"%s\"", err, s->address);
		return cfg_error_key(p, n, "address", -1, "%s: \"%s\"", err, s->address);
	}
	return 0;
}

static const struct cfg_field server_fields[] = {
	{ "address", CFG_STRING, offsetof(struct backend_server_config, address), .flags = CFG_REQUIRED,
	  .doc = "smtp://host:port, lmtp://host:port, lmtp:unix:/path or maildir:/path" },
	{ "weight", CFG_INT, offsetof(struct backend_server_config, weight), "1", 1, 1000,
	  .doc = "share of messages relative to the other servers" },
	{ NULL }
};
static const struct cfg_table server_table = {
	"backends.servers[]", sizeof(struct backend_server_config), server_fields, server_validate
};

static int route_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct backend_route_config *r = obj;
	struct cfg_backend_url u;
	const char *err;
	int rc = 0;
	for (size_t i = 0; i < r->servers.n; i++)
		if (cfg_parse_backend_url(r->servers.v[i], &u, &err) < 0)
			rc = cfg_error_key(p, n, "servers", (long)i, "%s: \"%s\"", err, r->servers.v[i]);
	for (size_t i = 0; i < r->domains.n; i++)
		if (!r->domains.v[i][0] || strchr(r->domains.v[i], '@') || strchr(r->domains.v[i], ' '))
			rc = cfg_error_key(p, n, "domains", (long)i, "not a domain: \"%s\"",
					   r->domains.v[i]);
	return rc;
}

static const struct cfg_field route_fields[] = {
	{ "domains", CFG_STRLIST, offsetof(struct backend_route_config, domains), .flags = CFG_REQUIRED,
	  .doc = "recipient domains sent to these servers instead of backends.servers" },
	{ "servers", CFG_STRLIST, offsetof(struct backend_route_config, servers), .flags = CFG_REQUIRED,
	  .doc = "backend URLs for those domains" },
	{ NULL }
};
static const struct cfg_table route_table = {
	"backends.routes[]", sizeof(struct backend_route_config), route_fields, route_validate
};

static const struct cfg_field backends_fields[] = {
	{ "balance", CFG_ENUM, offsetof(struct backends_config, balance), "round_robin",
	  .choices = balance_choices, .doc = "how a server is picked: round_robin, least_conn or source_hash (client address)" },
	{ "client_identity", CFG_ENUM, offsetof(struct backends_config, client_identity), "xclient",
	  .choices = identity_choices, .doc = "how the client's address reaches the backend: none, xclient or proxy_v2" },
	{ "health_check", CFG_STRUCT, offsetof(struct backends_config, health_check), .sub = &health_table,
	  .doc = "active probes of each server" },
	{ "servers", CFG_STRUCT_LIST, offsetof(struct backends_config, servers), .sub = &server_table,
	  .flags = CFG_REQUIRED, .doc = "the backend MTAs (a plain string item is its address)" },
	{ "routes", CFG_STRUCT_LIST, offsetof(struct backends_config, routes), .sub = &route_table,
	  .doc = "optional: recipient domain -> its own servers" },
	{ "connect_timeout", CFG_DURATION, offsetof(struct backends_config, connect_timeout), "10s",
	  100, S(3600), .doc = "TCP connect (and greeting) timeout" },
	{ "reply_timeout", CFG_DURATION, offsetof(struct backends_config, reply_timeout), "60s",
	  100, S(3600), .doc = "wait for each backend reply" },
	{ "data_timeout", CFG_DURATION, offsetof(struct backends_config, data_timeout), "300s",
	  100, S(86400), .doc = "wait for the reply after the final dot" },
	{ "max_attempts", CFG_INT, offsetof(struct backends_config, max_attempts), "3", 1, 100,
	  .doc = "servers tried for one message before the client gets 4xx" },
	{ "pool_size", CFG_INT, offsetof(struct backends_config, pool_size), "8", 0, 1000,
	  .doc = "idle connections kept per server per worker (0 = none)" },
	{ "starttls", CFG_BOOL, offsetof(struct backends_config, starttls), "true",
	  .doc = "use STARTTLS when a backend offers it" },
	{ NULL }
};
static const struct cfg_table backends_table = {
	"backends", sizeof(struct backends_config), backends_fields, NULL
};

static const struct cfg_field log_fields[] = {
	{ "level", CFG_ENUM, offsetof(struct log_config, level), "info", .choices = log_level_choices,
	  .doc = "debug, info, warning or error" },
	{ "syslog", CFG_BOOL, offsetof(struct log_config, syslog), "false",
	  .doc = "also log to syslog (facility mail)" },
	{ NULL }
};
static const struct cfg_table log_table = { "log", sizeof(struct log_config), log_fields, NULL };

static int metrics_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct metrics_config *m = obj;
	struct sockaddr_storage ss;
	socklen_t len;
	const char *err;
	if (m->listen && cfg_parse_listen_address(m->listen, &ss, &len, &err) < 0)
		return cfg_error_key(p, n, "listen", -1, "%s", err);
	return 0;
}

static const struct cfg_field metrics_fields[] = {
	{ "listen", CFG_STRING, offsetof(struct metrics_config, listen),
	  .doc = "address:port of the Prometheus /metrics endpoint (off when unset)" },
	{ NULL }
};
static const struct cfg_table metrics_table = {
	"metrics", sizeof(struct metrics_config), metrics_fields, metrics_validate
};

/* workers: auto (= 0, one per CPU) or 1..64 */
static int workers_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	long *w = dst;
	char buf[CFG_SCALAR_MAX];
	long v;
	if (!n) {
		*w = 0;
		return 0;
	}
	if (cfg_node_cstr(p, n, "auto or an integer", buf, sizeof(buf)) < 0)
		return -1;
	if (strcasecmp(buf, "auto") == 0) {
		*w = 0;
		return 0;
	}
	if (cfg_parse_long(buf, &v) < 0)
		return cfg_error(p, n, "expected auto or an integer, got \"%s\"", buf);
	if (v < 1 || v > 64)
		return cfg_error(p, n, "must be auto or between 1 and 64, got %s", buf);
	*w = v;
	return 0;
}

static int config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct mx_config *c = obj;
	int rc = 0;
	if (!c->hostname) {
		char h[256];
		if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
			snprintf(h, sizeof(h), "localhost");
		h[sizeof(h) - 1] = '\0';
		c->hostname = strdup(h);
		if (!c->hostname)
			return cfg_error(p, n, "out of memory");
	}
	/* it goes into the greeting and headers verbatim: no CR/LF or blanks (RFC 5321 4.1.2) */
	for (const char *h = c->hostname; *h; h++)
		if (!isalnum((unsigned char)*h) && !strchr("-._[]:", *h)) {
			rc = cfg_error_key(p, n, "hostname", -1, "not a host name: \"%s\"", c->hostname);
			break;
		}
	if (!c->hostname[0])
		rc = cfg_error_key(p, n, "hostname", -1, "must not be empty");
	if (c->user && !getpwnam(c->user))
		rc = cfg_error_key(p, n, "user", -1, "no such user: \"%s\"", c->user);
	/* the top-level `log_level:` wins over log.level; both end up equal */
	if (cfg_map_pair(n, "log_level") && !cfg_node_is_null(fy_node_pair_value(cfg_map_pair(n, "log_level"))))
		c->log.level = c->log_level;
	else
		c->log_level = c->log.level;
	/* the workers hold a fixed array of listeners (WORKER_MAX_LISTENERS in worker.h) */
	if (c->listen.n > CFG_MAX_LISTENERS)
		rc = cfg_error_key(p, n, "listen", CFG_MAX_LISTENERS, "at most %d listeners",
				   CFG_MAX_LISTENERS);
	const struct listen_config *ls = c->listen.v;
	for (size_t i = 0; i < c->listen.n; i++) {
		for (size_t k = 0; k < i; k++)
			if (ls[i].salen && ls[i].salen == ls[k].salen &&
			    memcmp(&ls[i].sa, &ls[k].sa, ls[i].salen) == 0) {
				rc = cfg_error_key(p, n, "listen", (long)i, "same address as listen[%zu]", k);
				break;
			}
		if (ls[i].tls == LISTEN_TLS_NONE)
			continue;
		if (!c->tls.certificate || !c->tls.key) {
			struct fy_node *item = cfg_seq_item(fy_node_pair_value(cfg_map_pair(n, "listen")), i);
			size_t old = cfg_path_push_key(p, "listen", 6);
			cfg_path_push_index(p, i);
			rc = cfg_error_key(p, item && fy_node_is_mapping(item) ? item : NULL, "tls", -1,
					   "a TLS listener needs tls.certificate and tls.key");
			cfg_path_pop(p, old);
		}
	}
	if (c->quarantine) {
		struct cfg_backend_url u;
		const char *err;
		if (cfg_parse_backend_url(c->quarantine, &u, &err) < 0)
			rc = cfg_error_key(p, n, "quarantine", -1, "%s: \"%s\"", err, c->quarantine);
	}
	return rc;
}

static const struct cfg_field config_fields[] = {
	{ "hostname", CFG_STRING, offsetof(struct mx_config, hostname),
	  .doc = "name in the greeting, EHLO reply and Received/Authentication-Results headers (default: the system host name)" },
	{ "workers", CFG_CUSTOM, offsetof(struct mx_config, workers), "auto", .custom = workers_parse,
	  .doc = "event-loop threads: auto (one per CPU) or 1..64" },
	{ "user", CFG_STRING, offsetof(struct mx_config, user),
	  .doc = "drop privileges to this user after binding (when started as root)" },
	{ "listen", CFG_STRUCT_LIST, offsetof(struct mx_config, listen), .sub = &listen_table,
	  .flags = CFG_REQUIRED, .doc = "listeners; a plain string item is its address" },
	{ "trusted_proxies", CFG_CIDRLIST, offsetof(struct mx_config, trusted_proxies),
	  "[127.0.0.0/8, \"::1\"]", .doc = "peers allowed to send PROXY headers and XCLIENT" },
	{ "tls", CFG_STRUCT, offsetof(struct mx_config, tls), .sub = &tls_table,
	  .doc = "certificate for STARTTLS/implicit TLS listeners" },
	{ "limits", CFG_STRUCT, offsetof(struct mx_config, limits), .sub = &limits_table,
	  .doc = "connection, size and time limits" },
	{ "backends", CFG_STRUCT, offsetof(struct mx_config, backends), .sub = &backends_table,
	  .doc = "the MTAs accepted mail is relayed to" },
	{ "log", CFG_STRUCT, offsetof(struct mx_config, log), .sub = &log_table, .doc = "logging" },
	{ "log_level", CFG_ENUM, offsetof(struct mx_config, log_level), .choices = log_level_choices,
	  .doc = "alias of log.level (wins when both are set)" },
	{ "metrics", CFG_STRUCT, offsetof(struct mx_config, metrics), .sub = &metrics_table,
	  .doc = "Prometheus metrics endpoint" },
	{ "quarantine", CFG_STRING, offsetof(struct mx_config, quarantine),
	  .doc = "backend URL quarantined messages go to, e.g. maildir:/var/spool/mxgate/quarantine (default: none)" },
	MX_CONFIG_MODULE_FIELDS
	{ NULL }
};

const struct cfg_table config_table = {
	"mxgate", sizeof(struct mx_config), config_fields, config_validate
};

/* ---------------------------------------------------------------- docs */

static const char *cfg_type_name(const struct cfg_field *f, char *buf, size_t sz)
{
	switch (f->type) {
	case CFG_BOOL: return "bool";
	case CFG_INT: return "integer";
	case CFG_DOUBLE: return "number";
	case CFG_SIZE: return "size";
	case CFG_DURATION: return "duration";
	case CFG_STRING: return "string";
	case CFG_ENUM: {
		char list[200];
		size_t off = 0;
		list[0] = '\0';
		for (int i = 0; f->choices && f->choices[i] && off < sizeof(list); i++) {
			int k = snprintf(list + off, sizeof(list) - off, "%s`%s`", i ? " \\| " : "",
					 f->choices[i]);
			if (k < 0)
				break;
			off += (size_t)k;
		}
		snprintf(buf, sz, "%s", list);
		return buf;
	}
	case CFG_RATE: return "rate";
	case CFG_STRLIST: return "list of strings";
	case CFG_STRUCT: return "section";
	case CFG_STRUCT_LIST: return "list of sections";
	case CFG_CIDRLIST: return "list of CIDRs";
	case CFG_CUSTOM: return "see description";
	}
	return "?";
}

/* Text for a Markdown table cell: `|` escaped, line breaks flattened. */
static void cfg_md_cell(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

static void cfg_docs_table(FILE *out, const struct cfg_table *t, const char *prefix)
{
	char type[256], lo[64], hi[64], bounds[160], path[256];
	fprintf(out, "\n### `%s`\n\n", prefix[0] ? prefix : "(top level)");
	fprintf(out, "| key | type | default | bounds | description |\n|---|---|---|---|---|\n");
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		bounds[0] = '\0';
		if (cfg_has_bounds(f) && (f->type == CFG_INT || f->type == CFG_DOUBLE ||
					  f->type == CFG_SIZE || f->type == CFG_DURATION)) {
			cfg_format_bound(f, f->min, lo, sizeof(lo));
			cfg_format_bound(f, f->max, hi, sizeof(hi));
			snprintf(bounds, sizeof(bounds), "%s .. %s", lo, hi);
		}
		fprintf(out, "| `%s` | %s | ", f->key, cfg_type_name(f, type, sizeof(type)));
		if (f->flags & CFG_REQUIRED) {
			fputs("**required**", out);
		} else if (f->defval) {
			fputc('`', out);
			cfg_md_cell(out, f->defval);
			fputc('`', out);
		}
		fprintf(out, " | %s | ", bounds);
		cfg_md_cell(out, f->doc);
		fputs(" |\n", out);
	}
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		if ((f->type != CFG_STRUCT && f->type != CFG_STRUCT_LIST) || !f->sub)
			continue;
		snprintf(path, sizeof(path), "%s%s%s%s", prefix, prefix[0] ? "." : "", f->key,
			 f->type == CFG_STRUCT_LIST ? "[]" : "");
		cfg_docs_table(out, f->sub, path);
	}
}

void config_write_docs(void *out_fp)
{
	FILE *out = out_fp;
	fprintf(out,
		"# mxgate configuration reference\n\n"
		"<!-- Generated from the tables in proxy/config.c (config_write_docs); regenerate with\n"
		"     `build/mxgate --dump-config-docs > docs/config.md`. Do not edit by hand. -->\n\n"
		"The configuration is one YAML file (`mxgate -c FILE`; `mxgate -t -c FILE` checks it).\n"
		"Every key has a default except `listen` and `backends.servers`. Unknown keys are errors.\n"
		"Errors are printed one per line as `FILE:LINE:COL: key.path: reason`, all of them, "
		"not just the first.\n\n"
		"## Value syntax\n\n"
		"- **bool**: `true`/`false`, `yes`/`no`, `on`/`off`.\n"
		"- **size**: bytes, with an optional binary suffix `K`, `M`, `G`, `T` (also `KB`, `KiB`; "
		"case-insensitive): `512`, `64K`, `50M`, `1G`.\n"
		"- **duration**: `250ms`, `30s`, `5m`, `1h`, `2d`, `1w`, combinations such as `1h30m`; a "
		"plain number is seconds. Duration bounds below are shown in the same units.\n"
		"- **rate**: `COUNT/DURATION`: `30/60s`, `1000/1h`; `10/m` means 10 per minute.\n"
		"- **CIDR**: `192.0.2.0/24`, `2001:db8::/32`; a bare address is a /32 or /128; an "
		"IPv4-mapped IPv6 client (`::ffff:192.0.2.1`) matches IPv4 entries.\n"
		"- **list**: a YAML sequence; a lone value where a list is expected is a list of one. In a "
		"list of sections, a plain string item sets the section's first key (`servers: "
		"[\"smtp://127.0.0.1:2526\"]`).\n"
		"- **backend URL**: `smtp://host[:port]` (default port 25), `lmtp://host[:port]` (24), "
		"`lmtp:unix:/path`, `maildir:/path` (a relative path is relative to mxgate's working "
		"directory). IPv6 hosts in brackets: `smtp://[::1]:2526`.\n"
		"- **listen address**: `127.0.0.1:2525`, `\"[::1]:25\"`, `:25` or `*:25` (every IPv4 "
		"address), `\"[::]:25\"` (every IPv6 address), `localhost:25`; numeric only, no DNS. "
		"Quote bracketed IPv6 addresses: unquoted, `[` starts a YAML list.\n"
		"- Anchors, aliases and merge keys (`<<: *base`) work.\n\n"
		"## Keys\n");
	cfg_docs_table(out, &config_table, "");
}
