/* fuzz_logkv.c — a log line's key=value text as log.format: json writes it (proxy/logkv.c).
 * Input: the text of a line (any octets).
 *
 * Oracle, written apart from the code:
 *  - logkv_json of the text is one JSON object (its own checker below: an object of strings,
 *    numbers and arrays of them; strings of well-formed UTF-8 with no raw control octet and
 *    only RFC 8259 7 escapes; no newline), whatever the text holds;
 *  - the input as a value: log_valn writes it (room for all of it, never cut) into
 *    `event=x k=VALUE z=1`, and logkv_parse gives back exactly the input as k's value, and
 *    z=1 after it (a value parses back to itself, blanks, quotes and escapes included). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "logkv.h"

/* Length of the well-formed UTF-8 sequence of 2..4 octets at s[0..n) (RFC 3629 4), 0 if none. */
static size_t fz_utf8(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t k;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return k;
}

static int fz_hexd(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A JSON string at s[*i]; aborts when it is none. */
static void fz_string(const unsigned char *s, size_t n, size_t *i)
{
	if (*i >= n || s[*i] != '"')
		abort();
	for ((*i)++; *i < n && s[*i] != '"'; ) {
		unsigned char c = s[*i];
		if (c < 0x20)
			abort();
		if (c == '\\') {
			if (*i + 1 >= n)
				abort();
			c = s[*i + 1];
			if (c == 'u') {
				if (*i + 5 >= n || !fz_hexd(s[*i + 2]) || !fz_hexd(s[*i + 3]) || !fz_hexd(s[*i + 4]) ||
				    !fz_hexd(s[*i + 5]))
					abort();
				*i += 6;
			} else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
				*i += 2;
			} else {
				abort();
			}
		} else if (c >= 0x80) {
			size_t k = fz_utf8(s + *i, n - *i);
			if (k == 0)
				abort();
			*i += k;
		} else {
			(*i)++;
		}
	}
	if (*i >= n)
		abort();
	(*i)++;
}

/* A JSON number (-?(0|[1-9][0-9]*)(.[0-9]+)?, the only form logkv writes) at s[*i]. */
static void fz_number(const unsigned char *s, size_t n, size_t *i)
{
	if (*i < n && s[*i] == '-')
		(*i)++;
	if (*i >= n || s[*i] < '0' || s[*i] > '9')
		abort();
	if (s[*i] == '0')
		(*i)++;
	else
		while (*i < n && s[*i] >= '0' && s[*i] <= '9')
			(*i)++;
	if (*i < n && s[*i] == '.') {
		(*i)++;
		if (*i >= n || s[*i] < '0' || s[*i] > '9')
			abort();
		while (*i < n && s[*i] >= '0' && s[*i] <= '9')
			(*i)++;
	}
}

static void fz_scalar(const unsigned char *s, size_t n, size_t *i)
{
	if (*i < n && s[*i] == '"')
		fz_string(s, n, i);
	else
		fz_number(s, n, i);
}

/* The whole of s[0..n) is one object of string keys and scalar or array-of-scalar values. */
static void fz_object(const unsigned char *s, size_t n)
{
	size_t i = 0;

	if (n < 2 || s[i++] != '{')
		abort();
	if (s[i] == '}')
		abort();                        /* ts and level are always there */
	for (;;) {
		fz_string(s, n, &i);
		if (i >= n || s[i++] != ':')
			abort();
		if (i < n && s[i] == '[') {
			i++;
			for (;;) {
				fz_scalar(s, n, &i);
				if (i < n && s[i] == ',') {
					i++;
					continue;
				}
				if (i >= n || s[i++] != ']')
					abort();
				break;
			}
		} else {
			fz_scalar(s, n, &i);
		}
		if (i < n && s[i] == ',') {
			i++;
			continue;
		}
		if (i >= n || s[i++] != '}' || i != n)
			abort();
		return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf b = { 0 };

	if (size > 8192)
		return 0;
	/* the text as a line's text */
	logkv_json(&b, "2026-12-07T00:00:00.000Z", "info", "0a0b0c", (const char *)data, size);
	if (b.v == NULL || memchr(b.v, '\n', b.len) != NULL || strlen(b.v) != b.len)
		abort();
	fz_object((const unsigned char *)b.v, b.len);
	strbuf_free(&b);

	/* the text as a value: it parses back to itself */
	size_t cap = 4 * size + 16, tl;
	char *v = malloc(cap), *text = malloc(cap + 32), *scratch = malloc(cap + 32);
	struct logkv_field f[4];
	const char *rest;
	size_t rl, n;

	if (v == NULL || text == NULL || scratch == NULL)
		abort();
	log_valn(v, cap, (const char *)data, size);
	tl = (size_t)snprintf(text, cap + 32, "event=x k=%s z=1", v);
	n = logkv_parse(text, tl, f, 4, scratch, cap + 32, &rest, &rl);
	if (n != 3 || rest != NULL || f[1].klen != 1 || f[1].key[0] != 'k')
		abort();
	if (f[1].vlen != size || (size > 0 && memcmp(f[1].val, data, size) != 0))
		abort();
	if (f[2].klen != 1 || f[2].key[0] != 'z' || f[2].vlen != 1 || f[2].val[0] != '1')
		abort();
	free(v);
	free(text);
	free(scratch);
	return 0;
}
