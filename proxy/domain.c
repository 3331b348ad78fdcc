/* domain.c — domain syntax (RFC 5321 4.1.2, 4.1.3; RFC 6531 3.3), the normal form, and
 * the pattern set shared by routes and accept_domains. No I/O. */
#include "domain.h"
#include "siphash.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- syntax --------------------------------------------------------------------------- */

static inline bool domain_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* See domain.h (RFC 3629 4). */
size_t domain_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;          /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f;          /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;          /* <= U+10FFFF */
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* See domain.h. */
bool domain_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t k = domain_utf8_seq(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* RFC 5321 4.1.3 address-literal: "[" IPv4 "]", "[IPv6:" IPv6 "]", or a
 * General-address-literal "[" Ldh-str ":" 1*dcontent "]" (well-formed but unsupported). */
static enum domain_syntax domain_check_literal(const char *d, size_t n)
{
	char buf[64];
	unsigned char tmp[16];
	const char *in = d + 1;
	size_t len;

	if (n < 3 || d[n - 1] != ']')
		return DOMAIN_BAD;
	len = n - 2;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		/* dcontent = %d33-90 / %d94-126 */
		if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']')
			return DOMAIN_BAD;
	}
	if (len >= 5 && strncasecmp(in, "IPv6:", 5) == 0) {
		if (len - 5 >= sizeof(buf))
			return DOMAIN_BAD;
		memcpy(buf, in + 5, len - 5);
		buf[len - 5] = '\0';
		return inet_pton(AF_INET6, buf, tmp) == 1 ? DOMAIN_OK : DOMAIN_BAD;
	}
	if (len < sizeof(buf)) {
		memcpy(buf, in, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET, buf, tmp) == 1)
			return DOMAIN_OK;
	}
	/* General-address-literal: Standardized-tag ":" 1*dcontent */
	const char *colon = memchr(in, ':', len);
	if (colon == NULL || colon == in || colon == in + len - 1)
		return DOMAIN_BAD;
	for (const char *p = in; p < colon; p++)
		if (!domain_is_alnum((unsigned char)*p) && *p != '-')
			return DOMAIN_BAD;
	if (colon[-1] == '-')
		return DOMAIN_BAD;
	return DOMAIN_LITERAL_UNSUPPORTED;
}

/* See domain.h: the general path, every form the syntax allows. */
enum domain_syntax domain_check_general(const char *d, size_t n, bool *utf8)
{
	size_t label = 0;
	bool eight = false;

	if (utf8 != NULL)
		*utf8 = false;
	if (n == 0)
		return DOMAIN_BAD;
	if (d[0] == '[')
		return n > DOMAIN_MAX ? DOMAIN_TOO_LONG : domain_check_literal(d, n);
	if (n > 1 && d[n - 1] == '.')
		n--;                    /* one trailing root dot */
	if (n > DOMAIN_MAX)
		return DOMAIN_TOO_LONG;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)d[i] : '.';

		if (c == '.') {
			/* sub-domain = Let-dig [Ldh-str]: not empty, no hyphen at either end */
			if (label == 0 || d[i - 1] == '-')
				return DOMAIN_BAD;
			if (label > DOMAIN_MAX_LABEL)
				return DOMAIN_TOO_LONG;
			label = 0;
			continue;
		}
		if (c >= 0x80) {
			size_t k = domain_utf8_seq((const unsigned char *)d + i, n - i);
			if (k == 0)
				return DOMAIN_BAD;
			eight = true;
			label += k;
			i += k - 1;
			continue;
		}
		if (label == 0 && c == '-')
			return DOMAIN_BAD;
		if (!domain_is_alnum(c) && c != '-' && c != '_')
			return DOMAIN_BAD;
		label++;
	}
	if (utf8 != NULL)
		*utf8 = eight;
	return DOMAIN_OK;
}

/* Octets of an ASCII label (letter, digit, '-', '_'): 1. */
static const unsigned char domain_label_octet[256] = {
	['-'] = 1, ['_'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
	['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* The usual name only: ASCII labels of 1..63 octets from the table above, one dot between
 * labels, no hyphen at either end of a label, no trailing dot, 1..255 octets. True when
 * d[0..n) is one, i.e. when domain_check_general would return DOMAIN_OK with *utf8 false;
 * false says nothing (the general path decides). A label's octets four at a time (one
 * test for four table loads), one test per label. */
static bool domain_check_fast(const char *d, size_t n)
{
	const unsigned char *p = (const unsigned char *)d, *end = p + n, *label = p;
	const unsigned char *t = domain_label_octet;

	if (n == 0 || n > DOMAIN_MAX)
		return false;
	for (;;) {
		while (end - p >= 4 && (t[p[0]] & t[p[1]] & t[p[2]] & t[p[3]]))
			p += 4;
		while (p < end && t[*p])
			p++;
		/* p: the end, a dot, or an octet the general path judges */
		if (p == label || p - label > DOMAIN_MAX_LABEL || *label == '-' || p[-1] == '-')
			return false;       /* also a trailing dot: the general path drops it */
		if (p == end)
			return true;
		if (*p != '.')
			return false;
		label = ++p;
	}
}

/* See domain.h. */
enum domain_syntax domain_check(const char *d, size_t n, bool *utf8)
{
	if (domain_check_fast(d, n)) {
		if (utf8 != NULL)
			*utf8 = false;
		return DOMAIN_OK;
	}
	return domain_check_general(d, n, utf8);
}

/* ---- normal form ---------------------------------------------------------------------- */

/* An IPv6 literal "[IPv6:...]" (any case) in its one text form, "[ipv6:" RFC 5952 "]", so
 * that every spelling of one address compares equal. Returns the length, 0 when d is not
 * such a literal, -1 when out is too small. */
static int domain_normalize_ipv6(const char *d, size_t n, char *out, size_t cap)
{
	char addr[64], text[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (n < 8 || n - 7 >= sizeof(addr) || d[0] != '[' || d[n - 1] != ']' || strncasecmp(d + 1, "ipv6:", 5) != 0)
		return 0;
	memcpy(addr, d + 6, n - 7);
	addr[n - 7] = '\0';
	if (inet_pton(AF_INET6, addr, &a) != 1 || inet_ntop(AF_INET6, &a, text, sizeof(text)) == NULL)
		return 0;
	int k = snprintf(out, cap, "[ipv6:%s]", text);
	return k > 0 && (size_t)k < cap ? k : -1;
}

/* A name holding U-labels (out, n octets, ASCII already folded) as its A-labels, UTS #46
 * non-transitional mapping (Unicode case folded, NFC), as Postfix looks names up
 * (midna_domain_to_ascii): "B\xc3\x9cCHER.example" and "xn--bcher-kva.example" are then the
 * same name. A name libidn2 does not take (not valid IDNA) stays as it is, compared octet
 * by octet. A root dot spelt as one UTS #46 maps to '.' ("\xe3\x80\x82", U+3002) goes as
 * "." does, unless one went already (rooted: "x.." stays apart from "x"). Returns the length
 * of out, or -1 for a name that maps to nothing at all. */
static int domain_normalize_idn(char *out, size_t n, size_t cap, bool rooted)
{
	char *ascii = NULL;
	int rc = idn2_to_ascii_8z(out, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	size_t k = rc == IDN2_OK && ascii != NULL ? strlen(ascii) : 0;

	if (rc == IDN2_OK && ascii != NULL && k == 0) {
		/* valid IDNA that maps to nothing (U+180B alone): no name, as "" is none */
		idn2_free(ascii);
		return -1;
	}
	if (!rooted && k > 1 && ascii[k - 1] == '.')
		k--;
	if (k > 0 && k <= DOMAIN_MAX && k < cap) {
		for (size_t i = 0; i < k; i++)
			out[i] = (char)(ascii[i] >= 'A' && ascii[i] <= 'Z' ? ascii[i] + 32 : ascii[i]);
		out[k] = '\0';
		n = k;
	}
	idn2_free(ascii);
	return (int)n;
}

/* See domain.h. */
int domain_normalize(const char *d, size_t n, char *out, size_t cap)
{
	int k;
	bool rooted = n > 1 && d[n - 1] == '.';

	if (rooted)
		n--;
	if (n == 0 || n > DOMAIN_MAX || n + 1 > cap || memchr(d, '\0', n) != NULL)
		return -1;
	if ((k = domain_normalize_ipv6(d, n, out, cap)) != 0)
		return k;
	bool eight = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		eight |= c >= 0x80;
	}
	out[n] = '\0';
	return eight ? domain_normalize_idn(out, n, cap, rooted) : (int)n;
}

/* See domain.h. */
bool domain_equal(const char *a, const char *b)
{
	char x[DOMAIN_MAX + 1], y[DOMAIN_MAX + 1];

	if (a == NULL || b == NULL)
		return false;
	return domain_normalize(a, strlen(a), x, sizeof(x)) >= 0 &&
	    domain_normalize(b, strlen(b), y, sizeof(y)) >= 0 && strcmp(x, y) == 0;
}

/* See domain.h. */
const char *domain_of_address(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	return at ? at + 1 : NULL;
}

/* The length of the label separator at d[0..n): 1 for '.', 3 for the full stops UTS #46
 * maps to it (U+3002, U+FF0E, U+FF61, as domain_normalize reads them), else 0. */
static size_t domain_dot_len(const char *d, size_t n)
{
	static const char *const dots[] = { "\xe3\x80\x82", "\xef\xbc\x8e", "\xef\xbd\xa1" };

	if (n >= 1 && d[0] == '.')
		return 1;
	for (size_t i = 0; n >= 3 && i < sizeof(dots) / sizeof(dots[0]); i++)
		if (memcmp(d, dots[i], 3) == 0)
			return 3;
	return 0;
}

/* See domain.h. */
bool domain_address_is_fqdn(const char *addr)
{
	const char *d = domain_of_address(addr);
	size_t n;

	if (d == NULL || d[0] == '[')
		return true;
	n = strlen(d);
	/* a trailing root dot is no label separator */
	if (n >= 1 && d[n - 1] == '.')
		n--;
	else if (n >= 3 && domain_dot_len(d + n - 3, 3) == 3)
		n -= 3;
	for (size_t i = 0; i < n; i++)
		if (domain_dot_len(d + i, n - i) > 0)
			return i > 0;
	return false;
}

/* ---- the set: open addressing over normalised names ----------------------------------- */

struct domain_table {
	char **slot;            /* NULL = empty */
	size_t cap;             /* power of two */
	size_t n;
};

struct domain_set {
	struct domain_table exact;      /* "example.org", "[192.0.2.1]" */
	struct domain_table below;      /* "*.example.org" stored as "example.org" */
};

/* Keyed (siphash.h): the names come from lists an operator may take from others (a
 * community list of throwaway domains anyone can add to) and are looked up with a client's
 * domain; with a public hash, names made to share a home slot would make one long run. */
static uint64_t domain_hash(const char *s, size_t n)
{
	return siphash_mem(s, n);
}

/* The slot holding s[0..n) or the empty slot where it would go. t->cap > 0. */
static size_t domain_table_find(const struct domain_table *t, const char *s, size_t n)
{
	size_t i = (size_t)domain_hash(s, n) & (t->cap - 1);

	while (t->slot[i] != NULL && (strlen(t->slot[i]) != n || memcmp(t->slot[i], s, n) != 0))
		i = (i + 1) & (t->cap - 1);
	return i;
}

/* The longest probe a lookup of a name t holds takes (slots looked at). */
static size_t domain_table_longest_probe(const struct domain_table *t)
{
	size_t most = 0;

	for (size_t i = 0; i < t->cap; i++) {
		if (t->slot[i] == NULL)
			continue;
		size_t home = (size_t)domain_hash(t->slot[i], strlen(t->slot[i])) & (t->cap - 1);
		size_t probe = ((i - home) & (t->cap - 1)) + 1;

		if (probe > most)
			most = probe;
	}
	return most;
}

size_t domain_set_longest_probe(const struct domain_set *s)
{
	size_t a = domain_table_longest_probe(&s->exact), b = domain_table_longest_probe(&s->below);

	return a > b ? a : b;
}

static bool domain_table_has(const struct domain_table *t, const char *s, size_t n)
{
	return t->cap > 0 && t->slot[domain_table_find(t, s, n)] != NULL;
}

static int domain_table_grow(struct domain_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 16;
	struct domain_table nt = { calloc(cap, sizeof(char *)), cap, 0 };

	if (nt.slot == NULL)
		return -1;
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slot[i] == NULL)
			continue;
		nt.slot[domain_table_find(&nt, t->slot[i], strlen(t->slot[i]))] = t->slot[i];
		nt.n++;
	}
	free(t->slot);
	*t = nt;
	return 0;
}

/* Adds a copy of s; 0, or -1 out of memory. */
static int domain_table_add(struct domain_table *t, const char *s)
{
	size_t n = strlen(s), i;

	if (domain_table_has(t, s, n))
		return 0;
	if ((t->n + 1) * 2 > t->cap && domain_table_grow(t) != 0)
		return -1;
	i = domain_table_find(t, s, n);
	if ((t->slot[i] = strdup(s)) == NULL)
		return -1;
	t->n++;
	return 0;
}

static void domain_table_free(struct domain_table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->slot[i]);
	free(t->slot);
}

/* See domain.h. */
struct domain_set *domain_set_new(void)
{
	return calloc(1, sizeof(struct domain_set));
}

/* See domain.h. */
void domain_set_free(struct domain_set *s)
{
	if (s == NULL)
		return;
	domain_table_free(&s->exact);
	domain_table_free(&s->below);
	free(s);
}

/* Splits pattern into (wildcard?, normal form); NULL or the reason it is not a pattern. */
static const char *domain_pattern_parse(const char *pattern, bool *wild, char *norm, size_t cap)
{
	const char *p = pattern;
	size_t n = strlen(pattern);
	enum domain_syntax syn;

	*wild = false;
	if (n == 1 && p[0] == '*')
		return "\"*\" would accept every domain: leave the list empty for that";
	if (n >= 2 && p[0] == '*' && p[1] == '.') {
		*wild = true;
		p += 2;
		n -= 2;
	}
	syn = domain_check(p, n, NULL);
	if (syn == DOMAIN_LITERAL_UNSUPPORTED || (syn == DOMAIN_OK && *wild && p[0] == '['))
		return "only IPv4 and IPv6 address literals are supported, without wildcards";
	if (syn == DOMAIN_TOO_LONG)
		return "longer than 255 octets or a label longer than 63";
	/* (a name whose A-label form is the root alone, "\xe3\x80\x82", is no domain: as ".") */
	if (syn != DOMAIN_OK || domain_normalize(p, n, norm, cap) < 0 || strcmp(norm, ".") == 0)
		return strchr(pattern, '*') ? "a wildcard is \"*.\" followed by a domain" :
		    "not a domain name or address literal";
	return NULL;
}

/* See domain.h. */
const char *domain_pattern_check(const char *pattern)
{
	char norm[DOMAIN_MAX + 1];
	bool wild;

	return domain_pattern_parse(pattern, &wild, norm, sizeof(norm));
}

/* See domain.h. */
int domain_set_add(struct domain_set *s, const char *pattern, const char **err)
{
	char norm[DOMAIN_MAX + 1];
	bool wild;

	*err = domain_pattern_parse(pattern, &wild, norm, sizeof(norm));
	if (*err != NULL)
		return -1;
	if (domain_table_add(wild ? &s->below : &s->exact, norm) != 0) {
		*err = "out of memory";
		return -1;
	}
	return 0;
}

/* See domain.h. */
size_t domain_set_count(const struct domain_set *s)
{
	return s ? s->exact.n + s->below.n : 0;
}

/* See domain.h. */
int domain_set_each(const struct domain_set *s, int (*fn)(void *arg, const char *name, bool below), void *arg)
{
	int rc;

	for (size_t i = 0; s != NULL && i < s->exact.cap; i++)
		if (s->exact.slot[i] != NULL && (rc = fn(arg, s->exact.slot[i], false)) != 0)
			return rc;
	for (size_t i = 0; s != NULL && i < s->below.cap; i++)
		if (s->below.slot[i] != NULL && (rc = fn(arg, s->below.slot[i], true)) != 0)
			return rc;
	return 0;
}

/* See domain.h. */
bool domain_set_match(const struct domain_set *s, const char *domain)
{
	char norm[DOMAIN_MAX + 1];
	int n;

	if (s == NULL || domain == NULL)
		return false;
	n = domain_normalize(domain, strlen(domain), norm, sizeof(norm));
	if (n < 0)
		return false;
	if (domain_table_has(&s->exact, norm, (size_t)n))
		return true;
	if (norm[0] == '[' || s->below.n == 0)
		return false;
	/* "*.example.org" matches when a proper suffix after a dot is "example.org" */
	for (int i = 0; i < n; i++)
		if (norm[i] == '.' && domain_table_has(&s->below, norm + i + 1, (size_t)(n - i - 1)))
			return true;
	return false;
}

/* See domain.h. */
bool domain_set_covers(const struct domain_set *s, const char *pattern)
{
	char norm[DOMAIN_MAX + 1];
	size_t n;
	bool wild;

	if (s == NULL || pattern == NULL || domain_pattern_parse(pattern, &wild, norm, sizeof(norm)) != NULL)
		return false;
	if (!wild)
		return domain_set_match(s, norm);
	/* every name below norm: "*.norm" itself, or a wildcard of a parent of norm */
	n = strlen(norm);
	if (domain_table_has(&s->below, norm, n))
		return true;
	for (size_t i = 0; i < n; i++)
		if (norm[i] == '.' && domain_table_has(&s->below, norm + i + 1, n - i - 1))
			return true;
	return false;
}

/* One destination of an address: in the set, else copied to denied. */
static bool domain_set_accepts_one(const struct domain_set *s, const char *d, size_t n,
    char *denied, size_t cap)
{
	char buf[DOMAIN_MAX + 2];

	if (n > 0 && n <= DOMAIN_MAX + 1) {
		memcpy(buf, d, n);
		buf[n] = '\0';
		if (domain_set_match(s, buf))
			return true;
	}
	if (denied != NULL && cap > 0) {
		size_t k = n < cap - 1 ? n : cap - 1;
		memcpy(denied, d, k);
		denied[k] = '\0';
	}
	return false;
}

/* See domain.h. */
bool domain_set_accepts_address(const struct domain_set *s, const char *addr, char *denied,
    size_t cap)
{
	char local[300];
	const char *at = domain_of_address(addr);
	size_t ln = 0;

	if (denied != NULL && cap > 0)
		denied[0] = '\0';
	if (at == NULL)
		return true;                    /* "Postmaster" */
	if (!domain_set_accepts_one(s, at, strlen(at), denied, cap))
		return false;
	if ((size_t)(at - 1 - addr) >= sizeof(local))
		return false;           /* longer than any path (256): not looked into, refused */
	/* The local part with the quotes and quoting backslashes taken away. */
	for (const char *p = addr; p < at - 1; p++) {
		if (*p == '"')
			continue;
		if (*p == '\\' && p + 1 < at - 1)
			p++;
		local[ln++] = *p;
	}
	local[ln] = '\0';
	/* Every segment after an '@' or '%', and every one before a '!', is a hop some MTA may
	 * still route by ("a%b%c@local" goes to c, then b). */
	for (size_t i = 0, start = 0; i <= ln; i++) {
		char c = i < ln ? local[i] : '\0';

		if (c != '@' && c != '%' && c != '!' && c != '\0')
			continue;
		bool after_op = start > 0 && (local[start - 1] == '@' || local[start - 1] == '%');
		if ((after_op || c == '!') &&
		    !domain_set_accepts_one(s, local + start, i - start, denied, cap))
			return false;
		start = i + 1;
	}
	return true;
}

bool domain_address_listed(char *const *items, size_t n, const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at ? (size_t)(at - addr) : strlen(addr);

	for (size_t i = 0; i < n; i++) {
		const char *item = items[i], *iat = strrchr(item, '@');
		size_t ilen = iat ? (size_t)(iat - item) : strlen(item);

		if (ilen != llen || strncasecmp(item, addr, llen) != 0)
			continue;
		if (iat == NULL || (at != NULL && domain_equal(iat + 1, at + 1)))
			return true;
	}
	return false;
}
