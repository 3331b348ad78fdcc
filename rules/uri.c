/* uri.c — URL extraction for uri rules; see uri.h. */
#include "uri.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_MAX_LEN 2048

static bool uri_has(const struct uri_list *l, const char *s, size_t n)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i]) == n && memcmp(l->v[i], s, n) == 0)
			return true;
	return false;
}

static void uri_push(struct uri_list *l, const char *prefix, const char *s, size_t n)
{
	size_t pl = strlen(prefix);
	size_t max = l->max ? l->max : 1000;
	char *d;

	if (l->n >= max || n == 0 || n > URI_MAX_LEN)
		return;
	d = malloc(pl + n + 1);
	if (d == NULL)
		abort();
	memcpy(d, prefix, pl);
	memcpy(d + pl, s, n);
	d[pl + n] = '\0';
	if (uri_has(l, d, pl + n)) {
		free(d);
		return;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, nc * sizeof(char *));

		if (v == NULL)
			abort();
		l->v = v;
		l->cap = nc;
	}
	l->v[l->n++] = d;
}

static bool uri_char(int c)
{
	return c > 0x20 && c != '<' && c != '>' && c != '"' && c != '\'' && c != '`' &&
	    c != 0x7f && c != '{' && c != '}' && c != '|' && c != '\\' && c != '^';
}

/* Trims what usually ends a sentence rather than a URL. */
static size_t uri_trim(const char *s, size_t n)
{
	while (n > 0 && strchr(".,;:!?)]'\"", s[n - 1]))
		n--;
	return n;
}

void uri_add(struct uri_list *l, const char *uri, size_t len)
{
	while (len && isspace((unsigned char)*uri)) {
		uri++;
		len--;
	}
	while (len && isspace((unsigned char)uri[len - 1]))
		len--;
	if (len == 0 || uri[0] == '#')
		return;
	if (len > 4 && strncasecmp(uri, "www.", 4) == 0)
		uri_push(l, "http://", uri, len);
	else
		uri_push(l, "", uri, len);
}

static bool uri_scheme_at(const char *s, size_t n, size_t *slen)
{
	static const char *const schemes[] = { "http://", "https://", "ftp://", "mailto:", NULL };

	for (int i = 0; schemes[i]; i++) {
		size_t k = strlen(schemes[i]);

		if (n >= k && strncasecmp(s, schemes[i], k) == 0) {
			*slen = k;
			return true;
		}
	}
	return false;
}

void uri_extract_text(struct uri_list *l, const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t sl, j;
		bool boundary = i == 0 || !isalnum((unsigned char)t[i - 1]);

		if (!boundary)
			continue;
		if (uri_scheme_at(t + i, n - i, &sl)) {
			for (j = i + sl; j < n && uri_char((unsigned char)t[j]); j++)
				;
			j = i + uri_trim(t + i, j - i);
			if (j > i + sl)
				uri_push(l, "", t + i, j - i);
			i = j;
		} else if (n - i > 4 && strncasecmp(t + i, "www.", 4) == 0 &&
		    isalnum((unsigned char)t[i + 4])) {
			for (j = i; j < n && uri_char((unsigned char)t[j]); j++)
				;
			j = i + uri_trim(t + i, j - i);
			uri_push(l, "http://", t + i, j - i);
			i = j;
		}
	}
	/* bare addresses: local@domain.tld as mailto: */
	for (size_t i = 0; i < n; i++) {
		size_t b, e;

		if (t[i] != '@' || i == 0)
			continue;
		b = i;
		while (b > 0 && (isalnum((unsigned char)t[b - 1]) || strchr("._%+-", t[b - 1])))
			b--;
		e = i + 1;
		while (e < n && (isalnum((unsigned char)t[e]) || t[e] == '.' || t[e] == '-'))
			e++;
		e = i + 1 + uri_trim(t + i + 1, e - i - 1);
		if (b < i && e > i + 1 && memchr(t + i + 1, '.', e - i - 1) &&
		    !(b >= 7 && strncasecmp(t + b - 7, "mailto:", 7) == 0))
			uri_push(l, "mailto:", t + b, e - b);
	}
}

void uri_list_free(struct uri_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}
