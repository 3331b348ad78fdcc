/* cidr.c — CIDR list files (see cidr.h). */
#include "cidr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Is st the null device (/dev/null, or another node of it)? */
static bool cidr_is_null_device(const struct stat *st)
{
	struct stat nst;

	return S_ISCHR(st->st_mode) && stat("/dev/null", &nst) == 0 && S_ISCHR(nst.st_mode) &&
	    st->st_rdev == nst.st_rdev;
}

char *cidr_file_read(const char *path, size_t *len, const char **errstr)
{
	return cidr_file_read_stat(path, len, NULL, errstr);
}

char *cidr_file_read_stat(const char *path, size_t *len, struct stat *stp, const char **errstr)
{
	/* O_NONBLOCK: a FIFO is refused below, not waited on for a writer (the open would
	 * block the config load, at start or at a reload, for as long as none comes) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	char *buf = NULL;
	size_t got = 0, want;

	if (fd < 0) {
		*errstr = strerror(errno);
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		*errstr = strerror(errno);
		close(fd);
		return NULL;
	}
	if (stp != NULL)
		*stp = st;
	if (cidr_is_null_device(&st)) {
		/* `file:/dev/null`: how an operator empties a list without editing the config
		 * (as a Postfix lookup table or an rsync exclude file pointed at it); it reads as
		 * empty, and no other device is read (one could block or never end) */
		close(fd);
		if ((buf = malloc(1)) == NULL) {
			*errstr = "out of memory";
			return NULL;
		}
		buf[0] = '\0';
		*len = 0;
		return buf;
	}
	if (!S_ISREG(st.st_mode)) {
		*errstr = S_ISCHR(st.st_mode) ? "not a regular file (of the devices only /dev/null is read)" :
		    "not a regular file";
		close(fd);
		return NULL;
	}
	if ((unsigned long long)st.st_size > CIDR_FILE_MAX) {
		*errstr = "larger than 16M";
		goto fail;
	}
	/* one octet more than the size: a file that grew while read is caught, not cut; read(2)
	 * straight into the buffer, no stdio copy */
	want = (size_t)st.st_size + 1;
	buf = malloc(want + 1);
	if (buf == NULL) {
		*errstr = "out of memory";
		goto fail;
	}
	while (got < want) {
		ssize_t r = read(fd, buf + got, want - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*errstr = strerror(errno);
			goto fail;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got > (size_t)st.st_size) {
		*errstr = "changed while read";
		goto fail;
	}
	buf[got] = '\0';
	close(fd);
	*len = got;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}
