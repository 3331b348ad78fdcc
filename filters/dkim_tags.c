/* dkim_tags.c — RFC 6376 3.2 tag-lists and RFC 6376 2.4 base64 with FWS. */
#include "filters/dkim_tags.h"

#include <string.h>
#include <strings.h>

static bool tags_is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool tags_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool tags_is_namechar(char c)
{
	return tags_is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

/* RFC 6376 3.2: VALCHAR = %x21-3A / %x3C-7E */
static bool tags_is_valchar(char c)
{
	return (unsigned char)c >= 0x21 && (unsigned char)c <= 0x7e && c != ';';
}

int dkim_tags_parse(const char *s, size_t len, struct dkim_tags *out)
{
	size_t i = 0;

	out->n = 0;
	for (;;) {
		struct dkim_tag *t;
		size_t name_start, vstart, vend;

		while (i < len && tags_is_ws(s[i]))
			i++;
		if (i >= len)
			return DKIM_TAGS_OK;	/* empty list, or a trailing ";" */
		if (!tags_is_alpha(s[i]))
			return DKIM_TAGS_SYNTAX;
		name_start = i;
		while (i < len && tags_is_namechar(s[i]))
			i++;
		if (out->n >= DKIM_TAGS_MAX)
			return DKIM_TAGS_TOO_MANY;
		t = &out->v[out->n];
		t->name = s + name_start;
		t->name_len = i - name_start;
		while (i < len && tags_is_ws(s[i]))
			i++;
		if (i >= len || s[i] != '=')
			return DKIM_TAGS_SYNTAX;
		i++;
		t->after_eq = s + i;
		while (i < len && tags_is_ws(s[i]))
			i++;
		vstart = vend = i;
		while (i < len && s[i] != ';') {
			if (tags_is_valchar(s[i]))
				vend = i + 1;
			else if (!tags_is_ws(s[i]))
				return DKIM_TAGS_SYNTAX;
			i++;
		}
		t->value = s + vstart;
		t->value_len = vend - vstart;
		for (size_t k = 0; k < out->n; k++)
			if (out->v[k].name_len == t->name_len &&
			    memcmp(out->v[k].name, t->name, t->name_len) == 0)
				return DKIM_TAGS_DUPLICATE;
		out->n++;
		if (i >= len)
			return DKIM_TAGS_OK;
		i++;	/* ';' */
	}
}

const struct dkim_tag *dkim_tags_find(const struct dkim_tags *t, const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].name_len == nl && memcmp(t->v[i].name, name, nl) == 0)
			return &t->v[i];
	return NULL;
}

bool dkim_tag_value_is(const struct dkim_tag *t, const char *word, bool nocase)
{
	size_t wl = strlen(word);

	if (t == NULL || t->value_len != wl)
		return false;
	return nocase ? strncasecmp(t->value, word, wl) == 0 : memcmp(t->value, word, wl) == 0;
}

long dkim_tag_copy_nows(const struct dkim_tag *t, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return -1;
	for (size_t i = 0; i < t->value_len; i++) {
		if (tags_is_ws(t->value[i]))
			continue;
		if (o + 1 >= cap)
			return -1;
		out[o++] = t->value[i];
	}
	out[o] = '\0';
	return (long)o;
}

long dkim_tag_copy(const struct dkim_tag *t, char *out, size_t cap)
{
	if (t->value_len + 1 > cap)
		return -1;
	memcpy(out, t->value, t->value_len);
	out[t->value_len] = '\0';
	return (long)t->value_len;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long dkim_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
	unsigned long acc = 0;
	size_t o = 0, nchars = 0, pad = 0;

	for (size_t i = 0; i < len; i++) {
		int v;

		if (tags_is_ws(s[i]))
			continue;
		if (s[i] == '=') {
			pad++;
			if (pad > 2)
				return -1;
			continue;
		}
		if (pad > 0)
			return -1;	/* data after padding */
		v = b64_value(s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		nchars++;
		if (nchars % 4 == 0) {
			if (o + 3 > cap)
				return -1;
			out[o++] = (unsigned char)(acc >> 16);
			out[o++] = (unsigned char)(acc >> 8);
			out[o++] = (unsigned char)acc;
			acc = 0;
		}
	}
	switch (nchars % 4) {
	case 0:
		if (pad != 0)
			return -1;
		break;
	case 1:
		return -1;
	case 2:	/* 12 bits: one byte */
		if (pad != 0 && pad != 2)
			return -1;
		if (o + 1 > cap)
			return -1;
		out[o++] = (unsigned char)(acc >> 4);
		break;
	case 3:	/* 18 bits: two bytes */
		if (pad != 0 && pad != 1)
			return -1;
		if (o + 2 > cap)
			return -1;
		out[o++] = (unsigned char)(acc >> 10);
		out[o++] = (unsigned char)(acc >> 2);
		break;
	}
	return (long)o;
}

int dkim_tag_uint(const struct dkim_tag *t, unsigned max_digits, unsigned long long *out)
{
	unsigned long long v = 0;

	if (t == NULL || t->value_len == 0 || t->value_len > max_digits || max_digits > 19)
		return -1;
	for (size_t i = 0; i < t->value_len; i++) {
		if (t->value[i] < '0' || t->value[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(t->value[i] - '0');
	}
	*out = v;
	return 0;
}

int dkim_tag_each(const struct dkim_tag *t, char sep, size_t max,
    int (*each)(const char *item, size_t item_len, void *arg), void *arg)
{
	size_t i = 0, count = 0;

	if (t == NULL)
		return 0;
	while (i <= t->value_len) {
		size_t a = i, b;
		int rc;

		while (i < t->value_len && t->value[i] != sep)
			i++;
		b = i;
		while (a < b && tags_is_ws(t->value[a]))
			a++;
		while (b > a && tags_is_ws(t->value[b - 1]))
			b--;
		if (++count > max)
			return -1;
		rc = each(t->value + a, b - a, arg);
		if (rc != 0)
			return rc;
		i++;	/* past the separator (or past the end) */
	}
	return 0;
}
