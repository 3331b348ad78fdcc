/* fuzz_cidr.c — random bytes as a CIDR list file (cidr.c). Checks: every line is either
 * kept or reported (never both, never more than there are lines), a reported position is
 * inside its line, every kept entry is in normal form (IPv4 prefix <= 32, IPv6 <= 128, host
 * bits clear, no v4-mapped IPv6) and matches its own address and not the address past the
 * prefix's end, and appending to a list that already holds entries keeps them; the sorted
 * list (cfg_cidrlist_sort) matches as the walk of every entry does, for each entry's address
 * and its neighbours; without a callback the count and entries are the same, and an address
 * of no IP family matches no list (walked, sorted or empty). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

struct fz { const uint8_t *data; size_t size, bad; };

static void fz_bad_cb(void *arg, size_t line, size_t col, const char *reason, const char *text)
{
	struct fz *f = arg;
	size_t l = 1, start = 0, end;

	if (reason == NULL || text == NULL || strlen(text) > 64 || line == 0 || col == 0)
		abort();
	for (size_t i = 0; i < f->size && l < line; i++)
		if (f->data[i] == '\n') {
			l++;
			start = i + 1;
		}
	if (l != line)
		abort();
	for (end = start; end < f->size && f->data[end] != '\n'; end++)
		;
	if (start + col - 1 >= end)   /* the column points at an octet of the line */
		abort();
	f->bad++;
}

static void fz_check_entry(const struct cfg_cidr *c)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct sockaddr_storage ss;
	int bits = c->family == AF_INET ? 32 : 128;

	if ((c->family != AF_INET && c->family != AF_INET6) || c->prefix < 0 || c->prefix > bits)
		abort();
	if (c->family == AF_INET6 && c->prefix >= 96 && memcmp(c->addr, mapped, 12) == 0)
		abort();
	for (int b = c->prefix; b < bits; b++)
		if (c->addr[b / 8] & (0x80 >> (b % 8)))
			abort();
	memset(&ss, 0, sizeof(ss));
	if (c->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, c->addr, 4);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, c->addr, 16);
	}
	if (!cfg_cidr_match(c, (struct sockaddr *)&ss))
		abort();
	if (c->prefix > 0) {
		/* flip the last bit inside the prefix: outside it */
		uint8_t *p = c->family == AF_INET ? (uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr
						  : ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
		int b = c->prefix - 1;
		p[b / 8] ^= (uint8_t)(0x80 >> (b % 8));
		if (cfg_cidr_match(c, (struct sockaddr *)&ss))
			abort();
	}
}

/* The sorted copy answers as the walked list for each entry's address with its last prefix
 * bit and its first host bit flipped (inside, beside, and as a v4-mapped IPv6 address). */
static void fz_check_sorted(const struct cfg_cidrlist *l)
{
	struct cfg_cidrlist s = { malloc(l->n * sizeof(*l->v)), l->n, false };

	if (s.v == NULL)
		return;
	memcpy(s.v, l->v, l->n * sizeof(*l->v));
	cfg_cidrlist_sort(&s);
	for (size_t i = 0; i < l->n; i++) {
		const struct cfg_cidr *c = &l->v[i];
		int bits = c->family == AF_INET ? 32 : 128;

		for (int k = 0; k < 4; k++) {
			struct sockaddr_storage ss;
			uint8_t a[16];
			int flip = k == 1 ? c->prefix - 1 : k == 2 ? c->prefix : -1;

			memcpy(a, c->addr, 16);
			if (flip >= 0 && flip < bits)
				a[flip / 8] ^= (uint8_t)(0x80 >> (flip % 8));
			memset(&ss, 0, sizeof(ss));
			if (c->family == AF_INET && k == 3) {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
				s6->sin6_family = AF_INET6;
				s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
				memcpy(&s6->sin6_addr.s6_addr[12], a, 4);
			} else if (c->family == AF_INET) {
				struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
				s4->sin_family = AF_INET;
				memcpy(&s4->sin_addr, a, 4);
			} else {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
				s6->sin6_family = AF_INET6;
				memcpy(&s6->sin6_addr, a, 16);
			}
			if (cfg_cidrlist_match(l, (struct sockaddr *)&ss) !=
			    cfg_cidrlist_match(&s, (struct sockaddr *)&ss))
				abort();
		}
	}
	free(s.v);
}

/* The same text without a callback (cidr_file_read's callers may pass none) gives the same
 * count and the same entries; neither an empty list nor either list asked for an address of
 * no IP family (a Unix socket's peer) matches. */
static void fz_check_quiet(const uint8_t *data, size_t size, int want,
			   const struct cfg_cidrlist *with)
{
	struct cfg_cidrlist l = { NULL, 0 }, empty = { NULL, 0 };
	struct sockaddr_storage ss;

	if (cidr_text_parse((const char *)data, size, &l, NULL, NULL) != want)
		abort();
	if (l.n + 1 != with->n || (l.n && memcmp(l.v, with->v + 1, l.n * sizeof(*l.v)) != 0))
		abort();   /* with->v[0] is the inline entry before the file */
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	if (cfg_cidrlist_match(&empty, (struct sockaddr *)&ss) ||
	    cfg_cidrlist_match(&l, (struct sockaddr *)&ss) || cfg_cidrlist_match(NULL, NULL))
		abort();
	for (size_t i = 0; i < l.n; i++)
		if (cfg_cidr_match(&l.v[i], (struct sockaddr *)&ss))
			abort();
	cfg_cidrlist_sort(&l);
	if (l.n && cfg_cidrlist_match(&l, (struct sockaddr *)&ss))
		abort();
	free(l.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size, 0 };
	struct cfg_cidrlist l = { NULL, 0 };
	size_t lines = 0;
	int rc;

	/* one entry already there, as an inline item before a file: kept */
	l.v = malloc(sizeof(*l.v));
	if (l.v == NULL || cfg_parse_cidr("192.0.2.0/24", &l.v[0]) != 0)
		abort();
	l.n = 1;
	rc = cidr_text_parse((const char *)data, size, &l, fz_bad_cb, &f);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	lines += size > 0 && data[size - 1] != '\n';
	if (rc < 0) {
		free(l.v);
		return 0;
	}
	if ((size_t)rc != f.bad || l.n - 1 + f.bad > lines)
		abort();
	if (l.v[0].family != AF_INET || l.v[0].prefix != 24 || l.v[0].addr[0] != 192)
		abort();
	for (size_t i = 0; i < l.n; i++)
		fz_check_entry(&l.v[i]);
	if (l.sorted)
		abort();   /* appended to: the flag must be down */
	fz_check_sorted(&l);
	fz_check_quiet(data, size, rc, &l);
	free(l.v);
	return 0;
}
