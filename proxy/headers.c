/* headers.c — Received: and header edits. */
#include "headers.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void strbuf_append(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *v = realloc(b->v, cap);
		if (v == NULL)
			abort();
		b->v = v;
		b->cap = cap;
	}
	memcpy(b->v + b->len, s, n);
	b->len += n;
	b->v[b->len] = '\0';
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		strbuf_append(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	strbuf_append(b, big, (size_t)n);
	free(big);
}

void strbuf_free(struct strbuf *b)
{
	free(b->v);
	b->v = NULL;
	b->len = b->cap = 0;
}

void headers_append_field(struct strbuf *out, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	const char *p = value ? value : "";

	strbuf_append(out, name, strlen(name));
	strbuf_append(out, ": ", 2);
	/* Copy words; fold before a word that would pass column 78 (RFC 5322 2.1.1). A value
	 * that already contains folding keeps it; a bare CR or LF is never emitted. */
	while (*p) {
		const char *w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		size_t wl = (size_t)(p - w);
		if (wl) {
			if (col + wl > 78 && col > strlen(name) + 2) {
				strbuf_append(out, "\r\n\t", 3);
				col = 1;
			}
			strbuf_append(out, w, wl);
			col += wl;
		}
		int sep = 0;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			if (*p == ' ' || *p == '\t')
				sep = 1;
			p++;
		}
		if (sep && *p) {
			strbuf_append(out, " ", 1);
			col++;
		}
	}
	strbuf_append(out, "\r\n", 2);
}

void headers_build_received(struct strbuf *out, const struct hook_env *env, const char *hostname,
    const char *with)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	strbuf_printf(out, "Received: from %s (%s [%s])\r\n\tby %s (mxgate) with %s id %s",
	    env->helo[0] ? env->helo : "unknown", env->client_name[0] ? env->client_name : "unknown",
	    env->client_ip, hostname, with, env->queue_id);
	if (env->tls)
		strbuf_printf(out, "\r\n\t(using %s with cipher %s)", env->tls_version, env->tls_cipher);
	if (env->nrcpts == 1)
		strbuf_printf(out, "\r\n\tfor <%s>", env->rcpts[0].addr);
	strbuf_printf(out, "; %s\r\n", date);
}

/* One header field: [start, end) in the block, name length. */
struct hfield { size_t start, end, namelen; bool deleted; const char *newval; };

static size_t headers_split(const char *h, size_t len, struct hfield **out, size_t *body_sep)
{
	size_t n = 0, cap = 0, i = 0;
	struct hfield *v = NULL;

	*body_sep = len;
	while (i < len) {
		if (h[i] == '\r' && i + 1 < len && h[i + 1] == '\n') {
			*body_sep = i;	/* the empty line */
			break;
		}
		if (h[i] == '\n') {
			*body_sep = i;
			break;
		}
		size_t s = i;
		/* A field runs to the CRLF not followed by WSP. */
		for (;;) {
			const char *nl = memchr(h + i, '\n', len - i);
			i = nl ? (size_t)(nl - h) + 1 : len;
			if (i >= len || (h[i] != ' ' && h[i] != '\t'))
				break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			struct hfield *nv = realloc(v, cap * sizeof(*v));
			if (nv == NULL)
				abort();
			v = nv;
		}
		const char *colon = memchr(h + s, ':', i - s);
		v[n].start = s;
		v[n].end = i;
		v[n].namelen = colon ? (size_t)(colon - (h + s)) : 0;
		v[n].deleted = false;
		v[n].newval = NULL;
		n++;
	}
	*out = v;
	return n;
}

static bool hfield_is(const char *h, const struct hfield *f, const char *name)
{
	size_t nl = strlen(name);
	size_t fl = f->namelen;

	while (fl > 0 && (h[f->start + fl - 1] == ' ' || h[f->start + fl - 1] == '\t'))
		fl--;
	return fl == nl && strncasecmp(h + f->start, name, nl) == 0;
}

int headers_apply_edits(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out)
{
	struct hfield *f = NULL;
	size_t nf, sep;
	struct strbuf added = { 0 };
	/* Inserted fields: kept as (position, text) pairs; position = index among originals. */
	struct ins { size_t at; char *text; } *ins = NULL;
	size_t nins = 0;

	if (n == 0) {
		strbuf_append(out, hdr, len);
		return 0;
	}
	nf = headers_split(hdr, len, &f, &sep);
	for (size_t k = 0; k < n; k++) {
		const struct hdr_edit *x = &e[k];
		switch (x->op) {
		case HDR_ADD:
			headers_append_field(&added, x->name, x->value);
			break;
		case HDR_INSERT: {
			struct strbuf t = { 0 };
			headers_append_field(&t, x->name, x->value);
			ins = realloc(ins, (nins + 1) * sizeof(*ins));
			if (ins == NULL)
				abort();
			ins[nins].at = x->index < 0 ? 0 : (size_t)x->index;
			ins[nins].text = t.v;
			nins++;
			break;
		}
		case HDR_CHANGE: {
			int seen = 0;
			for (size_t i = 0; i < nf; i++) {
				if (f[i].deleted || !hfield_is(hdr, &f[i], x->name))
					continue;
				if (++seen == (x->index > 0 ? x->index : 1)) {
					if (x->value == NULL)
						f[i].deleted = true;
					else
						f[i].newval = x->value;
					break;
				}
			}
			/* Changing a header that is not there adds it (milter semantics). */
			if (seen < (x->index > 0 ? x->index : 1) && x->value)
				headers_append_field(&added, x->name, x->value);
			break;
		}
		case HDR_DELETE_ALL:
			for (size_t i = 0; i < nf; i++)
				if (hfield_is(hdr, &f[i], x->name))
					f[i].deleted = true;
			break;
		}
	}
	for (size_t i = 0; i <= nf; i++) {
		for (size_t k = 0; k < nins; k++)
			if (ins[k].at == i || (i == nf && ins[k].at > nf))
				strbuf_append(out, ins[k].text, strlen(ins[k].text));
		if (i == nf)
			break;
		if (f[i].deleted)
			continue;
		if (f[i].newval) {
			char name[256];
			size_t nl = f[i].namelen < sizeof(name) - 1 ? f[i].namelen : sizeof(name) - 1;
			memcpy(name, hdr + f[i].start, nl);
			name[nl] = '\0';
			headers_append_field(out, name, f[i].newval);
			continue;
		}
		strbuf_append(out, hdr + f[i].start, f[i].end - f[i].start);
	}
	if (added.len)
		strbuf_append(out, added.v, added.len);
	strbuf_append(out, hdr + sep, len - sep);
	strbuf_free(&added);
	for (size_t k = 0; k < nins; k++)
		free(ins[k].text);
	free(ins);
	free(f);
	return 0;
}
