/* jsonw.c — streaming JSON writer (see jsonw.h). */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void jsonw_init(struct jsonw *j, struct strbuf *b)
{
	memset(j, 0, sizeof(*j));
	j->b = b;
	j->first[0] = true;
}

/* Length of a valid UTF-8 sequence at s[0..n) (1..4), or 0 when invalid or cut by n. */
static size_t jsonw_utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
			return 0;	/* overlong, surrogates */
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

void jsonw_escapen(struct strbuf *b, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + len;

	while (s < end) {
		const unsigned char *run = s;
		while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
			s++;
		if (s > run)
			strbuf_append(b, (const char *)run, (size_t)(s - run));
		if (s == end)
			break;
		if (*s == '"' || *s == '\\') {
			char e[2] = { '\\', (char)*s };
			strbuf_append(b, e, 2);
			s++;
		} else if (*s < 0x20) {
			char e[8];
			const char *named = *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : *s == '\t' ? "\\t" : NULL;
			if (named)
				strbuf_append(b, named, 2);
			else {
				snprintf(e, sizeof(e), "\\u%04x", *s);
				strbuf_append(b, e, 6);
			}
			s++;
		} else {
			size_t n = jsonw_utf8_len(s, (size_t)(end - s));
			if (n == 0) {
				strbuf_append(b, "\xef\xbf\xbd", 3);
				s++;
			} else {
				strbuf_append(b, (const char *)s, n);
				s += n;
			}
		}
	}
}

void jsonw_escape(struct strbuf *b, const char *s)
{
	jsonw_escapen(b, s, strlen(s));
}

/* Comma and key before a value. */
static void jsonw_pre(struct jsonw *j, const char *key)
{
	if (!j->first[j->depth])
		strbuf_append(j->b, ",", 1);
	j->first[j->depth] = false;
	if (key) {
		strbuf_append(j->b, "\"", 1);
		jsonw_escape(j->b, key);
		strbuf_append(j->b, "\":", 2);
	}
}

static void jsonw_open(struct jsonw *j, const char *key, const char *brace)
{
	jsonw_pre(j, key);
	strbuf_append(j->b, brace, 1);
	if (j->depth < JSONW_DEPTH - 1)
		j->depth++;
	j->first[j->depth] = true;
	j->kind[j->depth] = brace[0];
}

void jsonw_obj(struct jsonw *j, const char *key) { jsonw_open(j, key, "{"); }
void jsonw_arr(struct jsonw *j, const char *key) { jsonw_open(j, key, "["); }

void jsonw_end(struct jsonw *j)
{
	if (j->depth == 0)
		return;
	strbuf_append(j->b, j->kind[j->depth] == '{' ? "}" : "]", 1);
	j->depth--;
}

void jsonw_str(struct jsonw *j, const char *key, const char *v)
{
	if (v == NULL) {
		jsonw_pre(j, key);
		strbuf_append(j->b, "null", 4);
		return;
	}
	jsonw_strn(j, key, v, strlen(v));
}

void jsonw_strn(struct jsonw *j, const char *key, const char *v, size_t len)
{
	jsonw_pre(j, key);
	strbuf_append(j->b, "\"", 1);
	jsonw_escapen(j->b, v, len);
	strbuf_append(j->b, "\"", 1);
}

void jsonw_raw(struct jsonw *j, const char *key, const char *v, size_t len)
{
	jsonw_pre(j, key);
	strbuf_append(j->b, v, len);
}

void jsonw_int(struct jsonw *j, const char *key, long long v)
{
	jsonw_pre(j, key);
	strbuf_printf(j->b, "%lld", v);
}

void jsonw_num(struct jsonw *j, const char *key, double v)
{
	jsonw_pre(j, key);
	if (isnan(v) || isinf(v))
		strbuf_append(j->b, "null", 4);
	else
		strbuf_printf(j->b, "%.6g", v);
}

void jsonw_bool(struct jsonw *j, const char *key, bool v)
{
	jsonw_pre(j, key);
	strbuf_append(j->b, v ? "true" : "false", v ? 4 : 5);
}
