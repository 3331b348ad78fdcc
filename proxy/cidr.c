/* cidr.c — CIDR list files (see cidr.h). */
#include "cidr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIDR_TOKEN_MAX 64   /* longer than any address or prefix ("ffff:...:ffff/128" is 43) */

static bool cidr_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Appends c to l, growing l->v (capacity *cap) by doubling. 0 or -1 (out of memory). */
static int cidr_append(struct cfg_cidrlist *l, size_t *cap, const struct cfg_cidr *c)
{
	if (l->n == *cap) {
		size_t ncap = *cap * 2 + 16;
		struct cfg_cidr *v = realloc(l->v, ncap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		*cap = ncap;
	}
	l->v[l->n++] = *c;
	return 0;
}

/* One line s[0..n) (no '\n'): 1 when it held an entry (stored in *out), 0 when blank or a
 * comment, -1 when bad (*why, *col, tok filled). */
static int cidr_line(const char *s, size_t n, struct cfg_cidr *out, const char **why, size_t *col,
		     char tok[CIDR_TOKEN_MAX + 1])
{
	const char *hash = memchr(s, '#', n), *nul;
	size_t b = 0, e, t;

	if (hash != NULL)
		n = (size_t)(hash - s);
	while (b < n && cidr_is_blank(s[b]))
		b++;
	if (b == n)
		return 0;
	for (e = b; e < n && !cidr_is_blank(s[e]); e++)
		;
	t = e - b < CIDR_TOKEN_MAX ? e - b : CIDR_TOKEN_MAX;
	memcpy(tok, s + b, t);
	tok[t] = '\0';
	*col = b + 1;
	if ((nul = memchr(s + b, '\0', n - b)) != NULL) {
		*why = "a NUL byte";
		*col = (size_t)(nul - s) + 1;
		return -1;
	}
	if (e - b >= CIDR_TOKEN_MAX) {
		*why = "too long for an address or prefix";
		return -1;
	}
	if (cfg_parse_cidr(tok, out) < 0) {
		*why = "expected an address or prefix like 192.0.2.0/24 or 2001:db8::/32";
		return -1;
	}
	while (e < n && cidr_is_blank(s[e]))
		e++;
	if (e < n) {
		/* "10.0.0.0/8 OK" (a Postfix cidr: table's result) or two on a line: refused, so
		 * a table meant for something else is not half read */
		*col = e + 1;
		t = n - e < CIDR_TOKEN_MAX ? n - e : CIDR_TOKEN_MAX;
		memcpy(tok, s + e, t);
		tok[t] = '\0';
		*why = "one address or prefix per line (a '#' starts a comment)";
		return -1;
	}
	return 1;
}

int cidr_text_parse(const char *text, size_t len, struct cfg_cidrlist *l, cidr_error_cb bad,
		    void *arg)
{
	size_t cap = l->n, lineno = 0, pos = 0;
	int nbad = 0;

	l->sorted = false;   /* appended to: no longer in cfg_cidrlist_sort's order */

	while (pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos, col = 0;
		char tok[CIDR_TOKEN_MAX + 1];
		const char *why = NULL;
		struct cfg_cidr c;
		int r;

		lineno++;
		pos += n + (nl != NULL);
		r = cidr_line(s, n, &c, &why, &col, tok);
		if (r > 0 && cidr_append(l, &cap, &c) < 0)
			return -1;
		if (r < 0) {
			if (bad != NULL)
				bad(arg, lineno, col, why, tok);
			if (nbad < 0x7fffffff)
				nbad++;
		}
	}
	return nbad;
}

char *cidr_file_read(const char *path, size_t *len, const char **errstr)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;
	size_t got = 0;

	if (f == NULL) {
		*errstr = strerror(errno);
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		*errstr = "not a regular file";
		goto fail;
	}
	if ((unsigned long long)st.st_size > CIDR_FILE_MAX) {
		*errstr = "larger than 16M";
		goto fail;
	}
	/* one octet more than the size: a file that grew while read is caught, not cut */
	buf = malloc((size_t)st.st_size + 2);
	if (buf == NULL) {
		*errstr = "out of memory";
		goto fail;
	}
	got = fread(buf, 1, (size_t)st.st_size + 1, f);
	if (ferror(f)) {
		*errstr = strerror(errno ? errno : EIO);
		goto fail;
	}
	if (got > (size_t)st.st_size) {
		*errstr = "changed while read";
		goto fail;
	}
	buf[got] = '\0';
	fclose(f);
	*len = got;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}
