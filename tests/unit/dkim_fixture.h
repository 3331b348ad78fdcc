/* dkim_fixture.h — reading the signed fixtures of tests/data/dkim (made by dkimpy, see
 * make_fixtures.py) for test_dkim.c, test_arc.c and test_senderauth.c. Header-only (static inline),
 * included after cmocka.h. */
#ifndef DKIM_FIXTURE_H
#define DKIM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file tests/data/dkim/<name>, NUL-terminated (caller frees); *len its size. */
static inline char *fixture_slurp(const char *name, size_t *len)
{
	const char *dir = getenv("MX_SOURCE_DIR");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/tests/data/dkim/%s", dir ? dir : MX_SOURCE_DIR, name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A copy of msg with the first occurrence of from replaced by to (caller frees). */
static inline char *fixture_edit(const char *msg, const char *from, const char *to, size_t *len)
{
	const char *p = strstr(msg, from);
	size_t fl = strlen(from), tl = strlen(to), ml = strlen(msg);
	char *out;

	if (p == NULL)
		fail_msg("fixture lacks \"%s\"", from);
	out = malloc(ml - fl + tl + 1);
	assert_non_null(out);
	memcpy(out, msg, (size_t)(p - msg));
	memcpy(out + (p - msg), to, tl);
	memcpy(out + (p - msg) + tl, p + fl, ml - (size_t)(p - msg) - fl + 1);
	*len = ml - fl + tl;
	return out;
}

#endif
