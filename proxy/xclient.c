/* xclient.c — XCLIENT's attribute=value list (Postfix's XCLIENT_README), see xclient.h. */
#include "xclient.h"
#include "domain.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define XCLIENT_VALUE_MAX 255   /* Postfix: "attribute value too long" past it */

static int xclient_error(char *reply, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int xclient_error(char *reply, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, cap, fmt, ap);
	va_end(ap);
	return -1;
}

/* v as an error reply shows it: at most 64 octets, each outside printable ASCII as '?' (a
 * TAB passes the command parser; a decoded value may hold any octet but control ones). */
static const char *xclient_show(const char *v, char *out, size_t cap)
{
	size_t n = 0;

	for (; v[n] && n < 64 && n + 1 < cap; n++)
		out[n] = (unsigned char)v[n] >= 0x20 && (unsigned char)v[n] < 0x7f ? v[n] : '?';
	out[n] = '\0';
	return out;
}

static int xclient_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')       /* not xtext's, but harmless: Postfix takes it too */
		return c - 'a' + 10;
	return -1;
}

/* xtext (RFC 3461 4) v[0..n) decoded into out (room for n + 1): printable ASCII but '+',
 * and "+XX" for any octet. A decoded control octet (or NUL) is refused: the values end up
 * in log lines, headers and commands to the backends. 0, or -1 when malformed. */
static int xclient_xtext(const char *v, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '+') {
			int h, l;
			if (i + 2 >= n || (h = xclient_hex(v[i + 1])) < 0 || (l = xclient_hex(v[i + 2])) < 0)
				return -1;
			c = (unsigned char)(h << 4 | l);
			i += 2;
			if (c < 0x20 || c == 0x7f)
				return -1;
		} else if (c < 0x21 || c > 0x7e) {
			return -1;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static bool xclient_is_unavailable(const char *v)
{
	return strcasecmp(v, "[UNAVAILABLE]") == 0;
}

/* ADDR / DESTADDR: IPv4, "IPV6:" + IPv6, or a bare IPv6 address (nginx's addr_text). */
static int xclient_addr(const char *v, struct sockaddr_storage *ss)
{
	struct in6_addr a6;
	struct in_addr a4;

	memset(ss, 0, sizeof(*ss));
	if (strncasecmp(v, "IPV6:", 5) == 0)
		v += 5;
	else if (inet_pton(AF_INET, v, &a4) == 1)
		goto v4;
	if (inet_pton(AF_INET6, v, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		/* the IPv4 client, as a v4-mapped PROXY source is (proxyproto.c) */
		memcpy(&a4, &a6.s6_addr[12], 4);
		goto v4;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	s6->sin6_family = AF_INET6;
	s6->sin6_addr = a6;
	return 0;
v4:;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_addr = a4;
	return 0;
}

/* PORT / DESTPORT: 1 to 5 digits, at most 65535; [UNAVAILABLE] is 0. */
static int xclient_port(const char *v)
{
	long p = 0;
	size_t n = strlen(v);

	if (xclient_is_unavailable(v))
		return 0;
	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		p = p * 10 + (v[i] - '0');
	}
	return p > 65535 ? -1 : (int)p;
}

/* NAME / REVERSE_NAME: a host name (domain.c's Domain syntax, ASCII, no address literal),
 * or [UNAVAILABLE] / [TEMPUNAVAIL]. */
static int xclient_name(const char *v, char *out, size_t cap, int *status)
{
	bool utf8 = false;
	size_t n = strlen(v);

	out[0] = '\0';
	if (xclient_is_unavailable(v)) {
		*status = XCLIENT_NAME_UNAVAILABLE;
		return 0;
	}
	if (strcasecmp(v, "[TEMPUNAVAIL]") == 0) {
		*status = XCLIENT_NAME_TEMPUNAVAIL;
		return 0;
	}
	if (n == 0 || n >= cap || v[0] == '[' || domain_check(v, n, &utf8) != DOMAIN_OK || utf8)
		return -1;
	memcpy(out, v, n + 1);
	*status = XCLIENT_NAME_OK;
	return 0;
}

int xclient_parse(const char *arg, struct xclient_attrs *x, char *reply, size_t cap)
{
	const char *p = arg;

	memset(x, 0, sizeof(*x));
	x->esmtp = true;
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return xclient_error(reply, cap, "501 5.5.4 Syntax: XCLIENT attribute=value...");
	while (*p) {
		char name[16], raw[XCLIENT_VALUE_MAX + 1], val[XCLIENT_VALUE_MAX + 1], shown[65];
		size_t len = strcspn(p, " "), nlen;
		const char *eq = memchr(p, '=', len);

		if (eq == NULL || eq + 1 == p + len)
			return xclient_error(reply, cap, "501 5.5.4 Error: attribute=value expected");
		nlen = (size_t)(eq - p);
		if (len - nlen - 1 > XCLIENT_VALUE_MAX)
			return xclient_error(reply, cap, "501 5.5.4 Error: attribute value too long");
		memcpy(raw, eq + 1, len - nlen - 1);
		raw[len - nlen - 1] = '\0';
		if (nlen >= sizeof(name) || nlen == 0)
			return xclient_error(reply, cap, "501 5.5.4 Bad XCLIENT attribute name: %s", nlen ? xclient_show(p, shown, 33) : "\"\"");
		memcpy(name, p, nlen);
		name[nlen] = '\0';
		if (xclient_xtext(raw, strlen(raw), val) != 0)
			return xclient_error(reply, cap, "501 5.5.4 Error: malformed value: %s", xclient_show(raw, shown, sizeof(shown)));
		if (strcasecmp(name, "ADDR") == 0) {
			x->has |= XCLIENT_ADDR;
			x->addr_unavailable = xclient_is_unavailable(val);
			if (!x->addr_unavailable && xclient_addr(val, &x->addr) != 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad ADDR syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "PORT") == 0) {
			x->has |= XCLIENT_PORT;
			if ((x->port = xclient_port(val)) < 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad PORT syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "NAME") == 0) {
			x->has |= XCLIENT_NAME;
			if (xclient_name(val, x->name, sizeof(x->name), &x->name_status) != 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad NAME syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "REVERSE_NAME") == 0) {
			x->has |= XCLIENT_REVERSE_NAME;
			if (xclient_name(val, x->reverse_name, sizeof(x->reverse_name), &x->reverse_name_status) != 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad REVERSE_NAME syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "HELO") == 0) {
			x->has |= XCLIENT_HELO;
			/* a space (+20) would split the name where it is written again: Postfix
			 * neuters such octets to '?' */
			for (char *c = val; *c; c++)
				if (*c == ' ')
					*c = '?';
			snprintf(x->helo, sizeof(x->helo), "%s", xclient_is_unavailable(val) ? "" : val);
		} else if (strcasecmp(name, "PROTO") == 0) {
			x->has |= XCLIENT_PROTO;
			if (strcasecmp(val, "ESMTP") == 0)
				x->esmtp = true;
			else if (strcasecmp(val, "SMTP") == 0)
				x->esmtp = false;
			else
				return xclient_error(reply, cap, "501 5.5.4 Bad PROTO syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "LOGIN") == 0) {
			x->has |= XCLIENT_LOGIN;
			snprintf(x->login, sizeof(x->login), "%s", xclient_is_unavailable(val) ? "" : val);
		} else if (strcasecmp(name, "DESTADDR") == 0) {
			x->has |= XCLIENT_DESTADDR;
			x->destaddr_unavailable = xclient_is_unavailable(val);
			if (!x->destaddr_unavailable && xclient_addr(val, &x->destaddr) != 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad DESTADDR syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else if (strcasecmp(name, "DESTPORT") == 0) {
			x->has |= XCLIENT_DESTPORT;
			if ((x->destport = xclient_port(val)) < 0)
				return xclient_error(reply, cap, "501 5.5.4 Bad DESTPORT syntax: %s", xclient_show(val, shown, sizeof(shown)));
		} else {
			return xclient_error(reply, cap, "501 5.5.4 Bad XCLIENT attribute name: %s", xclient_show(name, shown, sizeof(shown)));
		}
		p += len;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* ---- the other way: mxgate's own XCLIENT to a backend (relay.c) ---------------------- */

/* The attributes relay.c's relay_build_xclient sends, in its order, and what a retry after a 501 may
 * send as "[UNAVAILABLE]" (Postfix 3.7's smtpd xclient_cmd takes it for each but PROTO, which
 * is always SMTP or ESMTP here). kind: an address, a host name (Postfix checks both names'
 * syntax alike); client: a name the client or its DNS chose (its HELO, its PTR), suspect
 * when a 501 names no attribute. An address goes only when named (Exim's XCLIENT takes
 * ADDR=[UNAVAILABLE] as no address at all, its mark of a local submission); PORT and
 * DESTPORT are digits mxgate writes; LOGIN Postfix does not check, so only a reply naming
 * it drops it (without it no permit_sasl_authenticated: a refusal, the safe side). */
enum xclient_kind { XCLIENT_KIND_OTHER = 0, XCLIENT_KIND_ADDR, XCLIENT_KIND_HOST };

static const struct xclient_out_attr {
	const char *name;
	bool unavail;
	enum xclient_kind kind;
	bool client;
} xclient_out_attrs[] = {
	{ "NAME", true, XCLIENT_KIND_HOST, true }, { "REVERSE_NAME", true, XCLIENT_KIND_HOST, true },
	{ "ADDR", true, XCLIENT_KIND_ADDR, false }, { "PORT", true, XCLIENT_KIND_OTHER, false },
	{ "DESTADDR", true, XCLIENT_KIND_ADDR, false }, { "DESTPORT", true, XCLIENT_KIND_OTHER, false },
	{ "PROTO", false, XCLIENT_KIND_OTHER, false }, { "HELO", true, XCLIENT_KIND_OTHER, true },
	{ "LOGIN", true, XCLIENT_KIND_OTHER, false },
};
#define XCLIENT_OUT_ATTRS (sizeof(xclient_out_attrs) / sizeof(xclient_out_attrs[0]))

/* The index in xclient_out_attrs of the attribute named s[0..n), -1 for none. */
static int xclient_out_find(const char *s, size_t n)
{
	for (size_t i = 0; i < XCLIENT_OUT_ATTRS; i++)
		if (strlen(xclient_out_attrs[i].name) == n && memcmp(xclient_out_attrs[i].name, s, n) == 0)
			return (int)i;
	return -1;
}

/* The attribute a 501's text blames (an index in xclient_out_attrs): Postfix's "501 5.5.4 Bad ADDR
 * syntax: IPV6:..." names the first it cannot take and stops there; the first upper-case
 * attribute name followed by " syntax" (the value it echoes comes after it). -1: the text
 * names none ("Error: attribute value too long", another server's wording). */
static int xclient_blamed(const char *text)
{
	for (const char *p = text; *p; p++) {
		if (p != text && p[-1] != ' ')
			continue;
		size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
		int i = n > 0 && strncasecmp(p + n, " syntax", 7) == 0 ? xclient_out_find(p, n) : -1;
		if (i >= 0)
			return i;
	}
	return -1;
}

/* A value that names something: neither empty nor "[UNAVAILABLE]" / "[TEMPUNAVAIL]". */
static bool xclient_out_known(const char *v, size_t vlen)
{
	return vlen > 0 && !(vlen == 13 && (memcmp(v, "[UNAVAILABLE]", 13) == 0 ||
	    memcmp(v, "[TEMPUNAVAIL]", 13) == 0));
}

/* See xclient.h. Postfix stops at the first attribute it cannot take: the one the reply names
 * goes with those it would refuse next for the same reason: for an address every address of
 * its family (with inet_protocols = ipv4 an IPv6 client's ADDR, then the IPv6 listener's
 * DESTADDR), for a host name the other one of the same value (NAME, then REVERSE_NAME); when
 * it names none, every client name (NAME, REVERSE_NAME, HELO). A value already
 * "[UNAVAILABLE]" or "[TEMPUNAVAIL]" stays, and one the reply blames tells nothing of its
 * siblings; no attribute is left out (without ADDR mxgate's own address would stand for the
 * client). */
int xclient_mark_unavailable(const char *line, const char *text, char *out, size_t cap, char *names,
    size_t ncap)
{
	struct { const char *v; size_t vlen; int idx; } tok[XCLIENT_OUT_ATTRS];
	const char *p = strncmp(line, "XCLIENT ", 8) == 0 ? line + 7 : NULL, *bv = NULL;
	size_t ntok = 0, o, no = 0, bvlen = 0;
	int blamed = xclient_blamed(text), changed = 0;
	enum xclient_kind bkind = blamed >= 0 ? xclient_out_attrs[blamed].kind : XCLIENT_KIND_OTHER;

	if (cap == 0 || ncap == 0)
		return 0;
	out[0] = names[0] = '\0';
	for (; p != NULL && *p == ' '; ntok++) {
		size_t len = strcspn(++p, " ");
		const char *eq = memchr(p, '=', len);

		if (ntok == XCLIENT_OUT_ATTRS || eq == NULL || (tok[ntok].idx = xclient_out_find(p, (size_t)(eq - p))) < 0)
			return 0;	/* not a line relay.c made */
		tok[ntok].v = eq + 1;
		tok[ntok].vlen = len - (size_t)(eq - p) - 1;
		if (tok[ntok].idx == blamed) {
			bv = tok[ntok].v;
			bvlen = tok[ntok].vlen;
		}
		p += len;
	}
	if (bv != NULL && !xclient_out_known(bv, bvlen))
		bv = NULL;	/* "Bad ADDR syntax" for an [UNAVAILABLE]: no family to follow */
	bool bv6 = bv != NULL && bvlen > 5 && strncmp(bv, "IPV6:", 5) == 0;

	o = (size_t)snprintf(out, cap, "XCLIENT");
	for (size_t i = 0; i < ntok && o < cap; i++) {
		const struct xclient_out_attr *a = &xclient_out_attrs[tok[i].idx];
		const char *v = tok[i].v;
		size_t vlen = tok[i].vlen;
		bool v6 = vlen > 5 && strncmp(v, "IPV6:", 5) == 0;
		bool known = xclient_out_known(v, vlen);
		bool drop;

		if (blamed < 0)
			drop = a->client;
		else
			drop = tok[i].idx == blamed || (bv != NULL && a->kind == bkind && (
			    (bkind == XCLIENT_KIND_ADDR && v6 == bv6) ||
			    (bkind == XCLIENT_KIND_HOST && vlen == bvlen && memcmp(v, bv, vlen) == 0)));
		if (!drop || !a->unavail || !known) {
			o += (size_t)snprintf(out + o, cap - o, " %s=%.*s", a->name, (int)vlen, v);
			continue;
		}
		o += (size_t)snprintf(out + o, cap - o, " %s=[UNAVAILABLE]", a->name);
		if (no < ncap)
			no += (size_t)snprintf(names + no, ncap - no, "%s%s", changed ? "," : "", a->name);
		changed++;
	}
	if (o >= cap || no >= ncap)
		return 0;
	return changed;
}
