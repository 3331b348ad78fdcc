/* rules_view.c — what rules see of a message: the header fields (unfolded, RFC 2047
 * decoded, :addr/:name selectors, SpamAssassin's pseudo-headers), the rendered body in
 * paragraphs, the decoded raw body in lines, the URIs, and MIME part headers; plus the
 * per-thread scratch holding them. See docs/rules.md "What body, rawbody and uri rules see". */
#include "rules_int.h"

#include "mime.h"
#include "uri.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- buffers */

void rules_buf_put(struct rules_buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 1024;

		while (b->n + n + 1 > nc)
			nc *= 2;
		b->p = realloc(b->p, nc);
		if (b->p == NULL)
			abort();
		b->cap = nc;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

void rules_lines_add(struct rules_lines *l, const char *s, size_t n)
{
	if (l->nlines >= RULES_MAX_LINES)
		return;
	if (l->nlines == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;

		l->off = realloc(l->off, nc * sizeof(size_t));
		if (l->off == NULL)
			abort();
		l->cap = nc;
	}
	if (l->nlines)
		rules_buf_put(&l->b, "\n", 1);
	l->off[l->nlines++] = l->b.n;
	rules_buf_put(&l->b, s, n);
}

void rules_lines_reset(struct rules_lines *l)
{
	l->b.n = 0;
	if (l->b.p)
		l->b.p[0] = '\0';
	l->nlines = 0;
}

void rules_lines_free(struct rules_lines *l)
{
	free(l->b.p);
	free(l->off);
}


/* ---------------------------------------------------------------- scratch */

struct rules_scratch *rules_scratch_new(const struct rules_set *rs)
{
	struct rules_scratch *sc = calloc(1, sizeof(*sc));
	size_t maxk = 1;

	if (sc == NULL)
		return NULL;
	sc->prefilter = true;
	sc->ms = match_scratch_new();
	if (sc->ms == NULL)
		goto fail;
	for (int k = 0; k < RULE_NKINDS; k++) {
		if (rs->nkind[k] > maxk)
			maxk = rs->nkind[k];
	}
	sc->values = calloc(rs->n + 1, sizeof(double));
	sc->hi = calloc(rs->n + 1, sizeof(double));
	sc->nvalues = rs->n;
	sc->cand = calloc(maxk, 1);
	sc->ncand = maxk;
	sc->em = eval_msg_new();
	if (sc->values == NULL || sc->hi == NULL || sc->cand == NULL || sc->em == NULL)
		goto fail;
	return sc;
fail:
	rules_scratch_free(sc);
	return NULL;
}

void rules_scratch_clear_headers(struct rules_scratch *sc)
{
	for (size_t i = 0; i < sc->nh; i++) {
		free(sc->h[i].unfolded);
		free(sc->h[i].decoded);
	}
	sc->nh = 0;
}

void rules_scratch_free(struct rules_scratch *sc)
{
	if (sc == NULL)
		return;
	match_scratch_free(sc->ms);
	free(sc->values);
	free(sc->hi);
	free(sc->cand);
	eval_msg_free(sc->em);
	rules_scratch_clear_headers(sc);
	free(sc->h);
	rules_lines_free(&sc->body);
	rules_lines_free(&sc->rawbody);
	rules_lines_free(&sc->uris);
	free(sc->tmp.p);
	free(sc->allhdr.p);
	free(sc);
}

void rules_scratch_set_prefilter(struct rules_scratch *sc, bool on) { sc->prefilter = on; }

/* ---------------------------------------------------------------- body views */

/* Adds text as SA's rendered body: paragraphs (split at blank lines) with whitespace runs
 * collapsed to one space, long paragraphs split near RULES_LINE_SPLIT at a space. */
static void rules_body_add_text(struct rules_lines *l, struct rules_buf *tmp, const char *t,
    size_t n)
{
	size_t i = 0;

	while (i < n) {
		bool sp = false;
		int nl = 0;

		tmp->n = 0;
		rules_buf_put(tmp, "", 0);
		for (; i < n; i++) {
			char c = t[i];

			if (c == '\n') {
				nl++;
				sp = true;
				continue;
			}
			if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
				sp = true;
				continue;
			}
			if (nl >= 2 && tmp->n > 0)
				break;      /* blank line: paragraph ends */
			nl = 0;
			if (sp && tmp->n > 0)
				rules_buf_put(tmp, " ", 1);
			sp = false;
			rules_buf_put(tmp, &c, 1);
			if (tmp->n >= RULES_LINE_SPLIT && (i + 1 >= n || isspace((unsigned char)t[i + 1]))) {
				i++;
				break;
			}
		}
		if (tmp->n)
			rules_lines_add(l, tmp->p, tmp->n);
	}
}

static void rules_rawbody_add(struct rules_lines *l, const char *t, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *nl = memchr(t + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - t) : n, le = e;

		if (le > i && t[le - 1] == '\r')
			le--;
		rules_lines_add(l, t + i, le - i);
		i = e + 1;
	}
}

static void rules_uri_cb(const char *uri, size_t len, void *arg)
{
	uri_add(arg, uri, len);
}

/* Decodes the body once per message into body/rawbody/uri lines. */
void rules_build_body(struct rules_scratch *sc, const char *msg, size_t len,
    bool want_uri)
{
	struct mime_result mr;
	struct uri_list ul = { .max = 1000 };

	rules_lines_reset(&sc->body);
	rules_lines_reset(&sc->rawbody);
	rules_lines_reset(&sc->uris);
	/* SA puts the Subject first in the body text */
	for (size_t i = 0; i < sc->nh; i++)
		if (rules_name_is(&sc->h[i], "Subject")) {
			const char *s = rules_hfield_decoded(&sc->h[i]);

			rules_body_add_text(&sc->body, &sc->tmp, s, strlen(s));
			break;
		}
	mime_parse(msg, len, NULL, &mr);
	for (size_t p = 0; p < mr.nparts; p++) {
		struct mime_text *t = &mr.parts[p];

		rules_rawbody_add(&sc->rawbody, t->text, t->len);
		if (t->html) {
			size_t rl;
			char *r = mime_html_to_text(t->text, t->len, &rl, want_uri ? rules_uri_cb :
			    NULL, &ul);

			rules_body_add_text(&sc->body, &sc->tmp, r, rl);
			if (want_uri)
				uri_extract_text(&ul, r, rl);
			free(r);
		} else {
			rules_body_add_text(&sc->body, &sc->tmp, t->text, t->len);
			if (want_uri)
				uri_extract_text(&ul, t->text, t->len);
		}
	}
	for (size_t i = 0; i < ul.n; i++)
		rules_lines_add(&sc->uris, ul.v[i], strlen(ul.v[i]));
	uri_list_free(&ul);
	/* mimeheader rules see part headers; keep them in the result's lifetime */
	sc->allhdr.n = 0;
	rules_buf_put(&sc->allhdr, "", 0);
	for (size_t i = 0; i < mr.nhdrs; i++) {
		rules_buf_put(&sc->allhdr, mr.hdrs[i].name, strlen(mr.hdrs[i].name));
		rules_buf_put(&sc->allhdr, "\0", 1);
		rules_buf_put(&sc->allhdr, mr.hdrs[i].value, strlen(mr.hdrs[i].value));
		rules_buf_put(&sc->allhdr, "\0", 1);
	}
	mime_result_free(&mr);
}
