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
