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
	sc->nvalues = rs->n;
	sc->cand = calloc(maxk, 1);
	sc->ncand = maxk;
	if (sc->values == NULL || sc->cand == NULL)
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
	free(sc->cand);
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

/* ---------------------------------------------------------------- message views */

/* Splits the header block into fields. Returns the offset where the body starts. */
size_t rules_parse_headers(struct rules_scratch *sc, const char *m, size_t len)
{
	size_t i = 0;

	rules_scratch_clear_headers(sc);
	while (i < len) {
		size_t ls = i, colon, ve;

		if (m[i] == '\n')
			return i + 1;
		if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')
			return i + 2;
		/* one logical field: this line plus continuation lines */
		colon = i;
		while (colon < len && m[colon] != ':' && m[colon] != '\n')
			colon++;
		ve = colon;
		for (;;) {
			while (ve < len && m[ve] != '\n')
				ve++;
			if (ve + 1 < len && (m[ve + 1] == ' ' || m[ve + 1] == '\t')) {
				ve++;
				continue;
			}
			break;
		}
		i = ve < len ? ve + 1 : len;
		if (colon >= len || m[colon] != ':' || colon == ls) {
			if (ls == 0 && len >= 5 && strncmp(m, "From ", 5) == 0)
				continue;     /* mbox separator */
			continue;         /* not a header line: SA would end headers; keep going */
		}
		if (sc->nh == sc->hcap) {
			size_t nc = sc->hcap ? sc->hcap * 2 : 32;
			struct rules_hfield *h = realloc(sc->h, nc * sizeof(*h));

			if (h == NULL)
				abort();
			sc->h = h;
			sc->hcap = nc;
		}
		{
			struct rules_hfield *f = &sc->h[sc->nh++];
			size_t vs = colon + 1, e = ve;

			f->name = m + ls;
			f->nlen = colon - ls;
			while (f->nlen && (f->name[f->nlen - 1] == ' ' || f->name[f->nlen - 1] == '\t'))
				f->nlen--;
			while (vs < e && (m[vs] == ' ' || m[vs] == '\t'))
				vs++;
			while (e > vs && (m[e - 1] == '\r' || m[e - 1] == '\n'))
				e--;
			f->raw = m + vs;
			f->rlen = e > vs ? e - vs : 0;
			f->unfolded = NULL;
			f->decoded = NULL;
		}
		if (sc->nh >= 1000)
			break;
	}
	return len;
}

const char *rules_hfield_unfolded(struct rules_hfield *f)
{
	if (f->unfolded == NULL) {
		char *d = malloc(f->rlen + 1);
		size_t o = 0;

		if (d == NULL)
			abort();
		for (size_t i = 0; i < f->rlen; i++)
			if (f->raw[i] != '\r' && f->raw[i] != '\n')
				d[o++] = f->raw[i];
		d[o] = '\0';
		f->unfolded = d;
	}
	return f->unfolded;
}

const char *rules_hfield_decoded(struct rules_hfield *f)
{
	if (f->decoded == NULL) {
		const char *u = rules_hfield_unfolded(f);

		f->decoded = strstr(u, "=?") ? mime_decode_header(u) : rules_xstrdup(u);
	}
	return f->decoded;
}

bool rules_name_is(const struct rules_hfield *f, const char *name)
{
	size_t n = strlen(name);

	return f->nlen == n && strncasecmp(f->name, name, n) == 0;
}

/* :addr — the first address of a value: inside <>, else the first word with '@'. */
static void rules_sel_addr(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *gt;

	if (lt && (gt = strchr(lt, '>')) != NULL) {
		rules_buf_put(out, lt + 1, (size_t)(gt - lt - 1));
		return;
	}
	while (*v) {
		const char *b;

		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		b = v;
		while (*v && *v != ' ' && *v != '\t' && *v != ',')
			v++;
		if (memchr(b, '@', (size_t)(v - b)) || *v == '\0') {
			while (b < v && (*b == '(' || *b == '"'))
				b++;
			rules_buf_put(out, b, (size_t)(v - b));
			return;
		}
	}
}

/* :name — the display name: before <> (unquoted), else a (comment). */
static void rules_sel_name(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *b, *e;

	if (lt) {
		b = v;
		e = lt;
	} else if ((b = strchr(v, '(')) != NULL && (e = strchr(b, ')')) != NULL) {
		b++;
	} else {
		return;
	}
	while (b < e && (*b == ' ' || *b == '\t' || *b == '"'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '"'))
		e--;
	rules_buf_put(out, b, (size_t)(e - b));
}

/* Builds the value a header rule sees in sc->tmp; returns false when the header is unset. */
bool rules_header_value(struct rules_scratch *sc, const char *hdr,
    enum rule_hdr_sel sel, const struct rules_envelope *envl)
{
	const char *names[4] = { hdr, NULL, NULL, NULL };
	bool found = false;

	sc->tmp.n = 0;
	rules_buf_put(&sc->tmp, "", 0);
	if (strcmp(hdr, "ALL") == 0) {
		for (size_t i = 0; i < sc->nh; i++) {
			rules_buf_put(&sc->tmp, sc->h[i].name, sc->h[i].nlen);
			rules_buf_put(&sc->tmp, ": ", 2);
			if (sel == HDR_SEL_RAW)
				rules_buf_put(&sc->tmp, sc->h[i].raw, sc->h[i].rlen);
			else {
				const char *v = rules_hfield_decoded(&sc->h[i]);

				rules_buf_put(&sc->tmp, v, strlen(v));
			}
			rules_buf_put(&sc->tmp, "\n", 1);
		}
		return sc->nh > 0;
	}
	if (strcasecmp(hdr, "EnvelopeFrom") == 0) {
		if (envl == NULL || envl->mail_from == NULL)
			return false;
		rules_buf_put(&sc->tmp, envl->mail_from, strlen(envl->mail_from));
		return true;
	}
	if (strcmp(hdr, "ToCc") == 0) {
		names[0] = "To";
		names[1] = "Cc";
	} else if (strcmp(hdr, "MESSAGEID") == 0) {
		names[0] = "Message-Id";
		names[1] = "Resent-Message-Id";
		names[2] = "X-Message-Id";
	}
	for (size_t i = 0; i < sc->nh; i++) {
		const char *v;
		bool match = false;

		for (int k = 0; names[k]; k++)
			if (rules_name_is(&sc->h[i], names[k]))
				match = true;
		if (!match)
			continue;
		v = sel == HDR_SEL_RAW ? rules_hfield_unfolded(&sc->h[i]) :
		    rules_hfield_decoded(&sc->h[i]);
		if (sel == HDR_SEL_ADDR || sel == HDR_SEL_NAME) {
			/* SA: the first header's first address / name */
			if (found)
				continue;
			if (sel == HDR_SEL_ADDR)
				rules_sel_addr(v, &sc->tmp);
			else
				rules_sel_name(v, &sc->tmp);
			found = true;
			continue;
		}
		/* SA joins repeated headers; each value keeps its trailing newline */
		rules_buf_put(&sc->tmp, v, strlen(v));
		rules_buf_put(&sc->tmp, "\n", 1);
		found = true;
	}
	return found;
}

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
