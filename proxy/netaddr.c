/* netaddr.c — canonical client addresses, prefixes and text, see netaddr.h. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 4291 2.5.5.2: ::ffff:0:0/96 holds the IPv4 addresses. */
static const uint8_t netaddr_v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Fills out from 16 IPv6 bytes, unwrapping a v4-mapped address. */
static void netaddr_set_v6(struct netaddr *out, const uint8_t b[16])
{
	memset(out, 0, sizeof(*out));
	if (memcmp(b, netaddr_v4mapped, 12) == 0) {
		out->family = AF_INET;
		memcpy(out->b, b + 12, 4);
		return;
	}
	out->family = AF_INET6;
	memcpy(out->b, b, 16);
}

int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		memset(out, 0, sizeof(*out));
		out->family = AF_INET;
		memcpy(out->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		netaddr_set_v6(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
		return 0;
	}
	return -1;
}

/* RFC 6052 2.1: the well-known prefix 64:ff9b::/96 alone. */
#define NETADDR_NAT64_WKP { 1, { { { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 }, 96 } } }
/* The NAT64 prefixes in force. */
static struct netaddr_nat64 netaddr_nat64_table = NETADDR_NAT64_WKP;

void netaddr_nat64_default(struct netaddr_nat64 *t)
{
	static const struct netaddr_nat64 wkp = NETADDR_NAT64_WKP;

	*t = wkp;
}

static bool netaddr_nat64_length_ok(int len)
{
	return len == 32 || len == 40 || len == 48 || len == 56 || len == 64 || len == 96;
}

int netaddr_nat64_add(struct netaddr_nat64 *t, const struct netaddr *net, int prefix, char *why,
    size_t whylen)
{
	if (net->family != AF_INET6) {
		snprintf(why, whylen, "not an IPv6 prefix");
		return -1;
	}
	if (!netaddr_nat64_length_ok(prefix)) {
		/* RFC 6052 2.2 */
		snprintf(why, whylen, "a NAT64 prefix is /32, /40, /48, /56, /64 or /96, not /%d", prefix);
		return -1;
	}
	/* ::/96, ::ffff:0:0/96 and ::ffff:0:0:0/96 have meanings of their own (all three begin
	 * with 64 zero bits; every table unwraps them) */
	static const uint8_t zero[8];

	if (memcmp(net->b, zero, (size_t)(prefix < 64 ? prefix : 64) / 8) == 0) {
		snprintf(why, whylen, "overlaps ::/64 (IPv4-compatible, -mapped and -translated addresses)");
		return -1;
	}
	if (prefix == 96 && net->b[8] != 0) {
		/* RFC 6052 2.2: bits 64 to 71 MUST be zero */
		snprintf(why, whylen, "bits 64-71 of a NAT64 prefix must be zero (RFC 6052 2.2)");
		return -1;
	}
	for (size_t i = 0; i < t->n; i++) {
		int shorter = t->v[i].len < prefix ? t->v[i].len : prefix;

		/* lengths are whole octets: the shorter prefix's octets decide */
		if (memcmp(t->v[i].b, net->b, (size_t)shorter / 8) == 0) {
			snprintf(why, whylen, "%s item %zu", t->v[i].len == prefix ? "the same as" : "overlaps", i);
			return -1;
		}
	}
	if (t->n >= NETADDR_NAT64_MAX) {
		snprintf(why, whylen, "at most %d NAT64 prefixes", NETADDR_NAT64_MAX);
		return -1;
	}
	memset(t->v[t->n].b, 0, sizeof(t->v[t->n].b));
	memcpy(t->v[t->n].b, net->b, (size_t)prefix / 8);
	t->v[t->n].len = (uint8_t)prefix;
	t->n++;
	return 0;
}

bool netaddr_nat64_extract(const uint8_t a[16], int len, uint8_t v4[4])
{
	if (!netaddr_nat64_length_ok(len) || a[8] != 0)
		return false;
	/* RFC 6052 2.2: the IPv4 octets follow the prefix, around octet 8 (bits 64-71) */
	for (size_t i = (size_t)len / 8, k = 0; k < 4; i++) {
		if (i != 8)
			v4[k++] = a[i];
	}
	return true;
}

bool netaddr_nat64_equal(const struct netaddr_nat64 *a, const struct netaddr_nat64 *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].len != b->v[i].len || memcmp(a->v[i].b, b->v[i].b, sizeof(a->v[i].b)) != 0)
			return false;
	return true;
}

void netaddr_nat64_set(const struct netaddr_nat64 *t)
{
	if (t == NULL)
		netaddr_nat64_default(&netaddr_nat64_table);
	else
		netaddr_nat64_table = *t;
}

const struct netaddr_nat64 *netaddr_nat64_get(void)
{
	return &netaddr_nat64_table;
}

/* The IPv4 address an IPv6 b carries under a NAT64 prefix in force, into v4. */
static bool netaddr_nat64_unwrap(const uint8_t b[16], uint8_t v4[4])
{
	const struct netaddr_nat64 *t = &netaddr_nat64_table;

	for (size_t i = 0; i < t->n; i++)
		if (memcmp(b, t->v[i].b, (size_t)t->v[i].len / 8) == 0)
			return netaddr_nat64_extract(b, t->v[i].len, v4);   /* none overlaps: the one */
	return false;
}

/* RFC 2765 2.1: IPv4-translated addresses, ::ffff:0:0/96. */
static const uint8_t netaddr_v4translated[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0 };
/* RFC 4291 2.5.5.1: IPv4-compatible addresses, ::/96 (deprecated). */
static const uint8_t netaddr_v4compat[12] = { 0 };

bool netaddr_unwrap_v4(struct netaddr *a)
{
	const uint8_t *b = a->b;
	uint8_t v4[4];

	if (a->family != AF_INET6)
		return false;
	if (netaddr_nat64_unwrap(b, v4)) {
		/* the IPv4 octets first: they may lie anywhere in b (RFC 6052 2.2) */
	} else if (memcmp(b, netaddr_v4translated, 12) == 0 ||
	    (memcmp(b, netaddr_v4compat, 12) == 0 && b[12] != 0)) {
		memcpy(v4, b + 12, 4);
	} else {
		return false;	/* ::, ::1: IPv6 loopback and unspecified, no IPv4 in them */
	}
	a->family = AF_INET;
	memcpy(a->b, v4, 4);
	memset(a->b + 4, 0, 12);
	return true;
}

int netaddr_client_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	if (netaddr_from_sockaddr(sa, out) < 0)
		return -1;
	netaddr_unwrap_v4(out);
	return 0;
}

int netaddr_from_string(const char *s, struct netaddr *out)
{
	uint8_t b[16];

	if (s == NULL)
		return -1;
	if (inet_pton(AF_INET, s, b) == 1) {
		memset(out, 0, sizeof(*out));
		out->family = AF_INET;
		memcpy(out->b, b, 4);
		return 0;
	}
	if (inet_pton(AF_INET6, s, b) == 1) {
		netaddr_set_v6(out, b);
		return 0;
	}
	return -1;
}

int netaddr_to_string(const struct netaddr *a, char *out, size_t outlen)
{
	char buf[NETADDR_STRLEN];
	size_t n;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if ((a->family != AF_INET && a->family != AF_INET6) ||
	    inet_ntop(a->family, a->b, buf, sizeof(buf)) == NULL)
		return -1;
	n = strlen(buf);
	if (n >= outlen)
		return -1;
	memcpy(out, buf, n + 1);
	return 0;
}

void netaddr_mask(struct netaddr *a, int prefix)
{
	int bits = netaddr_bits(a);

	if (prefix < 0)
		prefix = 0;
	for (int i = 0; i < bits / 8; i++) {
		int keep = prefix - i * 8;

		if (keep <= 0)
			a->b[i] = 0;
		else if (keep < 8)
			a->b[i] &= (uint8_t)(0xff << (8 - keep));
	}
}

bool netaddr_in_prefix(const struct netaddr *a, const struct netaddr *net, int prefix)
{
	int full, rest;

	if (a->family != net->family)
		return false;
	if (prefix < 0)
		prefix = 0;
	if (prefix > netaddr_bits(a))
		prefix = netaddr_bits(a);
	full = prefix / 8;
	rest = prefix % 8;
	if (memcmp(a->b, net->b, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t m = (uint8_t)(0xff << (8 - rest));

		return (a->b[full] & m) == (net->b[full] & m);
	}
	return true;
}

bool netaddr_equal(const struct netaddr *a, const struct netaddr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, 16) == 0;
}

void netaddr_key16(const struct netaddr *a, uint8_t out[16])
{
	if (a->family == AF_INET6) {
		memcpy(out, a->b, 16);
		return;
	}
	memcpy(out, netaddr_v4mapped, 12);
	memcpy(out + 12, a->b, 4);
}

int netaddr_parse_cidr(const char *s, struct netaddr *net, int *prefix)
{
	char buf[NETADDR_STRLEN + 8], *slash, *end;
	struct netaddr a;
	uint8_t b6[16];
	size_t len;
	long p = -1;
	bool mapped;

	if (s == NULL)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		if (!isdigit((unsigned char)slash[1]))
			return -1;
		errno = 0;
		p = strtol(slash + 1, &end, 10);
		if (errno || *end != '\0' || p < 0 || p > 128)
			return -1;
	}
	if (inet_pton(AF_INET, buf, b6) == 1) {
		if (p > 32)
			return -1;
		memset(&a, 0, sizeof(a));
		a.family = AF_INET;
		memcpy(a.b, b6, 4);
		if (p < 0)
			p = 32;
	} else if (inet_pton(AF_INET6, buf, b6) == 1) {
		if (p < 0)
			p = 128;
		mapped = memcmp(b6, netaddr_v4mapped, 12) == 0;
		if (mapped && p >= 96) {
			/* ::ffff:10.0.0.0/104 is 10.0.0.0/8 */
			netaddr_set_v6(&a, b6);
			p -= 96;
		} else {
			/* a network wider than /96 is not all IPv4: keep it as IPv6 */
			memset(&a, 0, sizeof(a));
			a.family = AF_INET6;
			memcpy(a.b, b6, 16);
		}
	} else {
		return -1;
	}
	netaddr_mask(&a, (int)p);
	*net = a;
	*prefix = (int)p;
	return 0;
}

int netaddr_sockaddr_from_string(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

int netaddr_sockaddr_string(const struct sockaddr *sa, char *out, size_t outlen)
{
	struct netaddr a;

	if (outlen)
		out[0] = '\0';
	if (netaddr_from_sockaddr(sa, &a) < 0 || netaddr_to_string(&a, out, outlen) < 0)
		return -1;
	return a.family;
}

int netaddr_sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

int netaddr_client_string(const struct sockaddr *sa, int prefix_v6, char *out, size_t outlen)
{
	struct netaddr a;

	if (outlen)
		out[0] = '\0';
	if (netaddr_client_from_sockaddr(sa, &a) < 0)
		return -1;
	if (a.family == AF_INET6 && prefix_v6 < 128)
		return netaddr_prefix_string(sa, 32, prefix_v6, out, outlen) < 0 ? -1 : AF_INET6;
	if (netaddr_to_string(&a, out, outlen) < 0)
		return -1;
	return a.family;
}

void netaddr_client_key16(const struct sockaddr *sa, int prefix_v6, uint8_t out[16])
{
	struct netaddr a;

	memset(out, 0, 16);
	if (netaddr_client_from_sockaddr(sa, &a) < 0)
		return;
	if (a.family == AF_INET6 && prefix_v6 < 128)
		netaddr_mask(&a, prefix_v6 < 0 ? 0 : prefix_v6);
	netaddr_key16(&a, out);
}

int netaddr_prefix_string(const struct sockaddr *sa, int prefix_v4, int prefix_v6, char *out,
    size_t outlen)
{
	struct netaddr a;
	char buf[NETADDR_STRLEN];
	int p, n;

	if (netaddr_client_from_sockaddr(sa, &a) < 0)
		return -1;
	p = a.family == AF_INET ? prefix_v4 : prefix_v6;
	p = p < 0 ? 0 : p > netaddr_bits(&a) ? netaddr_bits(&a) : p;
	netaddr_mask(&a, p);
	if (netaddr_to_string(&a, buf, sizeof(buf)) < 0)
		return -1;
	n = snprintf(out, outlen, "%s/%d", buf, p);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
