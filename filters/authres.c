/* authres.c — RFC 8601 Authentication-Results. */
#include "filters/authres.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void ar_put(struct authres_builder *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;
		char *nv;

		while (ncap < b->len + n + 1)
			ncap *= 2;
		nv = realloc(b->v, ncap);
		if (nv == NULL) {
			b->oom = true;
			return;
		}
		b->v = nv;
		b->cap = ncap;
	}
	memcpy(b->v + b->len, s, n);
	b->len += n;
	b->v[b->len] = '\0';
}

static void ar_puts(struct authres_builder *b, const char *s)
{
	ar_put(b, s, strlen(s));
}

/* RFC 2045 token: printable ASCII except SP and tspecials */
static bool ar_is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

int authres_quote_value(const char *v, char *out, size_t cap)
{
	bool bare = *v != '\0';
	size_t o = 0;

	for (const char *p = v; *p && bare; p++)
		if (!ar_is_token_char((unsigned char)*p) && *p != '@')
			bare = false;
	if (bare) {
		if (strlen(v) + 1 > cap)
			return -1;
		memcpy(out, v, strlen(v) + 1);
		return 0;
	}
	if (cap < 3)
		return -1;
	out[o++] = '"';
	for (const char *p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 32 || c == 127)
			continue;	/* no controls, no line breaks */
		if (o + 4 > cap)
			return -1;
		if (c == '"' || c == '\\')
			out[o++] = '\\';
		out[o++] = (char)c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return 0;
}

void authres_begin(struct authres_builder *b, const char *authserv_id)
{
	char q[300];

	memset(b, 0, sizeof(*b));
	if (authres_quote_value(authserv_id && *authserv_id ? authserv_id : "localhost", q, sizeof(q)) != 0)
		snprintf(q, sizeof(q), "localhost");
	ar_puts(b, q);
}

void authres_method(struct authres_builder *b, const char *method, const char *result,
    const char *comment)
{
	ar_puts(b, "; ");
	ar_puts(b, method);
	ar_puts(b, "=");
	ar_puts(b, result);
	b->nmethods++;
	if (comment != NULL && *comment) {
		char c[200];
		size_t o = 0;

		/* a comment cannot nest or escape here: drop ( ) \ and controls */
		for (const char *p = comment; *p && o + 1 < sizeof(c); p++) {
			unsigned char ch = (unsigned char)*p;

			if (ch < 32 || ch == 127 || ch == '(' || ch == ')' || ch == '\\')
				continue;
			c[o++] = (char)ch;
		}
		c[o] = '\0';
		ar_puts(b, " (");
		ar_puts(b, c);
		ar_puts(b, ")");
	}
}

void authres_prop(struct authres_builder *b, const char *ptype_prop, const char *value)
{
	char q[600];

	if (value == NULL || authres_quote_value(value, q, sizeof(q)) != 0)
		return;
	ar_puts(b, " ");
	ar_puts(b, ptype_prop);
	ar_puts(b, "=");
	ar_puts(b, q);
}

char *authres_finish(struct authres_builder *b)
{
	char *v;

	if (b->nmethods == 0)
		ar_puts(b, "; none");
	if (b->oom) {
		authres_free(b);
		return NULL;
	}
	v = b->v;
	memset(b, 0, sizeof(*b));
	return v;
}

void authres_free(struct authres_builder *b)
{
	free(b->v);
	memset(b, 0, sizeof(*b));
}

bool authres_is_ours(const char *v, size_t len, const char *id)
{
	size_t i = 0, idl = strlen(id), o = 0;
	int depth = 0;
	char got[256];

	/* CFWS: whitespace, folding and (nested) comments */
	while (i < len) {
		char c = v[i];

		if (depth > 0) {
			if (c == '\\')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			i++;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
			continue;
		}
		if (c == '(') {
			depth = 1;
			i++;
			continue;
		}
		break;
	}
	if (i >= len)
		return false;
	if (v[i] == '"') {
		for (i++; i < len && v[i] != '"'; i++) {
			if (v[i] == '\\' && i + 1 < len)
				i++;
			if (o + 1 >= sizeof(got))
				return false;
			got[o++] = v[i];
		}
		if (i >= len)
			return false;
	} else {
		/* RFC 8601 2.2: authserv-id = value; a token ends at a tspecial or space */
		while (i < len && ar_is_token_char((unsigned char)v[i])) {
			if (o + 1 >= sizeof(got))
				return false;
			got[o++] = v[i++];
		}
	}
	/* "mx.example.test." is the same host as "mx.example.test": a reader that drops the
	 * root dot would trust such a field, so it is ours (forged) as well */
	if (o > 0 && got[o - 1] == '.')
		o--;
	if (idl > 0 && id[idl - 1] == '.')
		idl--;
	got[o] = '\0';
	return o == idl && strncasecmp(got, id, idl) == 0;
}
