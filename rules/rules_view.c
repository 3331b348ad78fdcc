/* rules_view.c — what rules see of a message: the header fields (unfolded, RFC 2047
 * decoded, :addr/:name selectors, SpamAssassin's pseudo-headers), the rendered body in
 * paragraphs, the decoded raw body in lines, the URIs, and MIME part headers; plus the
 * per-thread scratch holding them. See docs/rules.md "What body, rawbody and uri rules see". */
#include "rules_int.h"
#include "proxy/growbuf.h"

#include "charset.h"

#include "eval_int.h"
#include "html.h"
#include "samsg.h"
#include "textbuf.h"
#include "uri.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- buffers */

void rules_buf_put(struct rules_buf *b, const char *s, size_t n)
{
	growbuf_append(&b->p, &b->n, &b->cap, 1024, s, n);
}

/* The offsets grow by doubling up to RULES_MAX_LINES, the text by doubling within
 * l->room (textbuf_grow_within): both did by doubling alone, up to twice what they held at
 * the peak of a message of many parts (the body and rawbody lines, 2.10 MB each for 1.8 MB
 * of text) or of many short lines (the offsets: 8 octets each, 32768 for 20000 lines). */
void rules_lines_add(struct rules_lines *l, const char *s, size_t n)
{
	size_t need = l->b.n + (l->nlines ? 1 : 0) + n + 1;

	if (l->nlines >= RULES_MAX_LINES || need > UINT32_MAX)
		return;
	if (l->nlines == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;

		if (nc > RULES_MAX_LINES)
			nc = RULES_MAX_LINES;
		l->off = realloc(l->off, nc * sizeof(*l->off));
		if (l->off == NULL)
			abort();
		l->cap = nc;
	}
	if (need > l->b.cap)
		textbuf_grow_within(&l->b.p, &l->b.cap, 1024, need, l->room);
	if (l->nlines)
		l->b.p[l->b.n++] = '\n';
	l->off[l->nlines++] = (uint32_t)l->b.n;
	memcpy(l->b.p + l->b.n, s, n);
	l->b.n += n;
	l->b.p[l->b.n] = '\0';
}

void rules_lines_reset(struct rules_lines *l)
{
	l->b.n = 0;
	if (l->b.p)
		l->b.p[0] = '\0';
	l->nlines = 0;
}

void rules_lines_swap(struct rules_lines *a, struct rules_lines *b)
{
	struct rules_lines t = *a;

	*a = *b;
	*b = t;
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
	sc->skipped = calloc(rs->n + 1, 1);
	sc->nvalues = rs->n;
	sc->cand = calloc(maxk, 1);
	sc->ncand = maxk;
	sc->em = eval_msg_new();
	if (sc->values == NULL || sc->hi == NULL || sc->skipped == NULL || sc->cand == NULL ||
	    sc->em == NULL)
		goto fail;
	return sc;
fail:
	rules_scratch_free(sc);
	return NULL;
}

void rules_scratch_clear_headers(struct rules_scratch *sc)
{
	for (size_t i = 0; i < sc->nh; i++) {
		free(sc->h[i].saraw);
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
	free(sc->skipped);
	free(sc->cand);
	eval_msg_free(sc->em);
	rules_scratch_clear_headers(sc);
	free(sc->h);
	rules_lines_free(&sc->body);
	rules_lines_free(&sc->rawbody);
	rules_lines_free(&sc->uris);
	free(sc->tmp.p);
	free(sc->allhdr.p);
	for (size_t i = 0; i < sc->tagcap; i++) {
		free(sc->tags[i].name);
		free(sc->tags[i].v.p);
	}
	free(sc->tags);
	free(sc->capbuf.p);
	free(sc);
}

void rules_scratch_set_prefilter(struct rules_scratch *sc, bool on) { sc->prefilter = on; }
void rules_scratch_set_bayes(struct rules_scratch *sc, const struct bayes_result *r)
{
	sc->bayes = r;
}

/* ---------------------------------------------------------------- body views */

#define RULES_MAX_TEXT (4u << 20)      /* decoded text examined per message */

/* SA's split_into_array_of_short_lines on one paragraph: pieces of at most 2048 bytes,
 * cut after the last space before the limit. */
static size_t rules_body_cut(const char *s)
{
	size_t k = RULES_LINE_SPLIT + 1;     /* rindex(' ', 2048) + 1 */

	while (k > 0 && s[k - 1] != ' ')
		k--;
	return k ? k : RULES_LINE_SPLIT;
}

static void rules_body_add_line(struct rules_lines *l, const char *s, size_t n)
{
	while (n > RULES_LINE_SPLIT) {
		size_t k = rules_body_cut(s);

		rules_lines_add(l, s, k);
		s += k;
		n -= k;
	}
	rules_lines_add(l, s, n);
}

/* The rendered text of all parts, as SA's get_rendered_body_text_array: each run
 * \n+\s*\n+ becomes a line break, every other whitespace run one space (white space as
 * Perl's \s on Unicode text: U+00A0 and the like too); then lines (their "\n" kept) of
 * at most 2048 bytes. Fed in pieces (the parts' texts where they are, the blank lines
 * between them): the text joined whole was a copy of every part's rendering beside the
 * renderings, the body lines and the rawbody lines, the peak of a message of many HTML
 * parts. A piece never ends inside a character of the joined text (the parts are joined
 * by "\n"), so the pieces cut into the same lines as the whole. */
static size_t rules_ascii_space(const char *s, size_t n)
{
	return n && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')) ? 1 : 0;
}

struct rules_text {
	struct rules_lines *l;
	struct rules_buf *tmp;           /* the paragraph being joined */
	size_t (*space)(const char *, size_t);
	bool run;                        /* inside a whitespace run, which may go on in the next piece */
	bool pre, post;                  /* white space before its first \n, after its last */
	size_t nls;                      /* its \n */
};

static void rules_text_begin(struct rules_text *bt, struct rules_lines *l, struct rules_buf *tmp,
    bool wide)
{
	memset(bt, 0, sizeof(*bt));
	bt->l = l;
	bt->tmp = tmp;
	bt->space = wide ? charset_space_len : rules_ascii_space;
	tmp->n = 0;
	rules_buf_put(tmp, "", 0);
}

/* The lines of the paragraph being joined cut from its start while more than
 * RULES_LINE_SPLIT octets are left (each cut reads the 2049 octets at its start only, and
 * the paragraph only grows: the lines cut from the whole), once it holds RULES_TEXT_HOLD
 * octets: a paragraph of many parts' renderings (joined by single line breaks) was held
 * whole beside its body lines, a copy of the message's text at the peak. */
#define RULES_TEXT_HOLD (64u << 10)

static void rules_text_spill(struct rules_text *bt)
{
	struct rules_buf *b = bt->tmp;
	size_t off = 0, k;

	if (b->n <= RULES_TEXT_HOLD)
		return;
	while (b->n - off > RULES_LINE_SPLIT) {
		k = rules_body_cut(b->p + off);
		rules_lines_add(bt->l, b->p + off, k);
		off += k;
	}
	memmove(b->p, b->p + off, b->n - off);
	b->n -= off;
	b->p[b->n] = '\0';
}

static void rules_text_paragraph(struct rules_text *bt)
{
	rules_body_add_line(bt->l, bt->tmp->p, bt->tmp->n);
	bt->tmp->n = 0;
	rules_buf_put(bt->tmp, "", 0);
}

/* The whitespace run just ended: the part before its first \n is a space; from the first
 * to the last \n (two at least) a line break; after the last \n a space. */
static void rules_text_end_run(struct rules_text *bt)
{
	bt->run = false;
	if (bt->nls >= 2) {
		if (bt->pre)
			rules_buf_put(bt->tmp, " ", 1);
		rules_buf_put(bt->tmp, "\n", 1);
		rules_text_paragraph(bt);
		if (bt->post)
			rules_buf_put(bt->tmp, " ", 1);
	} else {
		rules_buf_put(bt->tmp, " ", 1);
	}
}

static void rules_text_feed(struct rules_text *bt, const char *t, size_t n)
{
	size_t i = 0, j, sl;

	while (i < n) {
		if (bt->run) {
			if ((sl = bt->space(t + i, n - i)) != 0) {
				if (t[i] == '\n') {
					bt->nls++;
					bt->post = false;
				} else if (bt->nls == 0) {
					bt->pre = true;
				} else {
					bt->post = true;
				}
				i += sl;
				continue;
			}
			rules_text_end_run(bt);
		}
		if (t[i] == '\0') {
			/* SA marks paragraphs with NUL, then turns every NUL into a line break */
			rules_buf_put(bt->tmp, "\n", 1);
			rules_text_paragraph(bt);
			i++;
		} else if (bt->space(t + i, n - i) == 0) {
			j = i + 1;
			while (j < n && t[j] != '\0' && bt->space(t + j, n - j) == 0)
				j++;
			rules_buf_put(bt->tmp, t + i, j - i);
			rules_text_spill(bt);
			i = j;
		} else {
			bt->run = true;
			bt->pre = bt->post = false;
			bt->nls = 0;
		}
	}
}

static void rules_text_end(struct rules_text *bt)
{
	if (bt->run)
		rules_text_end_run(bt);
	if (bt->tmp->n)
		rules_body_add_line(bt->l, bt->tmp->p, bt->tmp->n);
}

/* SA's split_into_array_of_short_paragraphs: a decoded part as one piece, or pieces of
 * 2048-4096 bytes ending at a line break, a '>' or a space. */
static void rules_rawbody_add(struct rules_lines *l, const char *t, size_t n)
{
	size_t ofs = 0;

	if (n <= RULES_LINE_SPLIT) {
		rules_lines_add(l, t, n);
		return;
	}
	while (n - ofs > 2 * RULES_LINE_SPLIT) {
		const char *seps = "\n> ";
		size_t j = 0;
		bool found = false;

		for (int k = 0; seps[k] && !found; k++) {
			const char *q = memchr(t + ofs + RULES_LINE_SPLIT, seps[k],
			    n - ofs - RULES_LINE_SPLIT);

			if (q && (size_t)(q - t) - ofs + 1 <= 2 * RULES_LINE_SPLIT) {
				j = (size_t)(q - t);
				found = true;
			}
		}
		if (!found)
			j = ofs + RULES_LINE_SPLIT;
		rules_lines_add(l, t + ofs, j - ofs + 1);
		ofs = j + 1;
	}
	if (ofs < n)
		rules_lines_add(l, t + ofs, n - ofs);
}

static bool rules_type_is_html(const struct samsg_part *p)
{
	size_t l = p->name ? strlen(p->name) : 0;

	return strcmp(p->type, "text/html") == 0 || (l > 4 && (strcasecmp(p->name + l - 4, ".htm") == 0 ||
	    strcasecmp(p->name + l - 5, ".html") == 0 || strcasecmp(p->name + l - 5, ".shtm") == 0 ||
	    (l > 6 && strcasecmp(p->name + l - 6, ".shtml") == 0)));
}

/* type is prefix followed by a non-word character: SA's m{^(?:text|message)\b} */
static bool rules_type_prefix(const char *type, const char *prefix)
{
	size_t l = strlen(prefix);

	return strncmp(type, prefix, l) == 0 && !(isalnum((unsigned char)type[l]) || type[l] == '_');
}

#define RULES_BODY_SCAN 50000         /* body_part_scan_size (characters) */
#define RULES_RAWBODY_SCAN 500000     /* rawbody_part_scan_size (bytes) */

/* How much of a part SA scans: all of it up to scan (characters when chars, else bytes),
 * else up to a line break within 1 KiB after the limit, else (rawbody) a '>', else a space,
 * else the limit. Returns the length in bytes. */
static size_t rules_scan_cut(const char *s, size_t n, size_t scan, bool gt, bool chars)
{
	size_t lim = chars ? charset_utf8_offset(s, n, scan) : (scan < n ? scan : n);
	const char *seps = gt ? "\n> " : "\n ";

	if (lim >= n)
		return n;
	for (const char *sp = seps; *sp; sp++) {
		const char *q = memchr(s + lim, *sp, n - lim);

		if (q) {
			size_t within = chars ? charset_utf8_chars(s + lim, (size_t)(q - s) - lim) :
			    (size_t)(q - s) - lim;

			if (within <= 1024)
				return (size_t)(q - s) + 1;
		}
	}
	return lim;
}

/* What the rawbody text of the leaves order[0..no) of m can reach: each textual part's
 * octets as received (decoding makes them no longer: base64, quoted-printable, CRLF to LF)
 * up to what rules_scan_cut keeps of it, a '\n' between its lines (pieces of 2049 octets
 * and more), RULES_MAX_TEXT in all. The rawbody lines' text grows to it, not by doubling
 * past it: up to twice the text of a message of many parts, or of one big part
 * (500000 octets kept: a buffer of 958464 after a small message's). */
static size_t rules_rawbody_room(const struct samsg *m, const size_t *order, size_t no)
{
	size_t room = 64, text = 0;

	for (size_t oi = 0; oi < no && text < RULES_MAX_TEXT; oi++) {
		const struct samsg_part *p = &m->parts[order[oi]];
		size_t n = 0;

		if (!(rules_type_is_html(p) || rules_type_prefix(p->type, "text") ||
		    rules_type_prefix(p->type, "message")) || strcmp(p->type, "text/calendar") == 0)
			continue;
		for (size_t k = 0; k < p->nraw; k++)
			n += p->raw[k].n;
		if (n > RULES_RAWBODY_SCAN + 1025)
			n = RULES_RAWBODY_SCAN + 1025;
		if (n > RULES_MAX_TEXT - text)
			n = RULES_MAX_TEXT - text;
		text += n;
		room += n + n / RULES_LINE_SPLIT + 1;
	}
	return room;
}

/* The body views, SpamAssassin's way (its MIME tree, its HTML renderer, bytes as decoded,
 * no charset conversion): body (Subject, then the rendered text parts), rawbody (decoded
 * text parts in pieces), URIs, and the MIME part headers for mimeheader rules. */
void rules_build_body(struct rules_scratch *sc, const char *msg, size_t len,
    bool want_uri)
{
	const struct samsg *m = eval_samsg(&sc->ctx);
	struct rules_buf text = { 0 }, conv = { 0 };
	struct rules_text bt;
	struct rules_piece { const char *p; size_t off, n; } *pc;  /* p NULL: in text at off */
	const char *subj[64];
	size_t nsubj, total = 0, *order, *stack, no = 0, ns = 0, npc = 0, joined = 0;
	bool wide = false;

	(void)msg;
	rules_lines_reset(&sc->body);
	rules_lines_reset(&sc->rawbody);
	rules_lines_reset(&sc->uris);
	sc->body.room = 0;
	/* SA puts the (last) Subject first */
	nsubj = eval_get_all(&sc->ctx, "Subject", subj, 64);
	if (nsubj) {
		const char *s = subj[nsubj - 1];
		size_t sl = strlen(s);

		rules_body_add_line(&sc->body, s, sl);      /* with its "\n" */
	} else {
		rules_lines_add(&sc->body, "\n", 1);
	}
	/* the leaves in tree order (find_parts(qr/./, 1)) */
	order = malloc((m->nparts + 1) * sizeof(*order));
	stack = malloc((m->nparts + 1) * sizeof(*stack));
	pc = malloc((2 * m->nparts + 1) * sizeof(*pc));
	if (order == NULL || stack == NULL || pc == NULL)
		abort();
	if (m->nparts)
		stack[ns++] = 0;
	while (ns) {
		const struct samsg_part *p = &m->parts[stack[--ns]];

		if (p->nkids == 0)
			order[no++] = (size_t)(p - m->parts);
		for (size_t k = p->nkids; k-- > 0;)
			stack[ns++] = (size_t)p->kids[k];
	}
	sc->rawbody.room = rules_rawbody_room(m, order, no);
	for (size_t oi = 0; oi < no; oi++) {
		size_t i = order[oi];
		const struct samsg_part *p = &m->parts[i];
		bool html, textual, plain;
		const struct html_result *hr;
		size_t dl;
		const char *d;
		char *own;

		/* a blank line between parts, whatever they are */
		if (joined) {
			pc[npc++] = (struct rules_piece){ "\n", 0, 1 };
			joined++;
		}
		html = rules_type_is_html(p);
		plain = !html && strcmp(p->type, "text/plain") == 0;
		textual = html || rules_type_prefix(p->type, "text") || rules_type_prefix(p->type, "message");
		if (!textual || total >= RULES_MAX_TEXT)
			continue;
		/* where the part's octets are when there is nothing to decode: not a copy of
		 * the part (up to rules.max_size) beside the parse's */
		d = samsg_body(p, &dl, &own);
		/* HTMLEval's analysis of an HTML part made from this decoded copy when it is not
		 * made yet: an encoded part was decoded twice, for it and for the views */
		hr = html ? eval_html_part_body(&sc->ctx, i, d, dl) : NULL;
		if (dl > RULES_MAX_TEXT - total)
			dl = RULES_MAX_TEXT - total;
		total += dl;
		if (strcmp(p->type, "text/calendar") != 0)
			rules_rawbody_add(&sc->rawbody, d, rules_scan_cut(d, dl, RULES_RAWBODY_SCAN, true, false));
		if (html && dl) {
			if (hr) {
				/* the rendering HTMLEval keeps (until the message's eval state goes) */
				size_t cut = rules_scan_cut(hr->rendered, hr->rendered_len, RULES_BODY_SCAN,
				    false, true);

				pc[npc++] = (struct rules_piece){ hr->rendered, 0, cut };
				joined += cut;
				wide = wide || hr->wide;
			}
		} else if (html || plain) {
			size_t ul, cut;
			bool dec;
			char *uown;
			/* the part itself when it is ASCII or valid UTF-8: not copied */
			const char *u = charset_normalize_view(d, dl, p->charset, false, &ul, &dec, &uown);

			cut = rules_scan_cut(u, ul, RULES_BODY_SCAN, false, true);
			if (uown == NULL && own == NULL) {
				/* where the parse has it, until the message's eval state goes */
				pc[npc++] = (struct rules_piece){ u, 0, cut };
			} else {
				pc[npc++] = (struct rules_piece){ NULL, text.n, cut };
				rules_buf_put(&text, u, cut);
			}
			joined += cut;
			wide = wide || dec;
			free(uown);
		}
		free(own);
	}
	free(order);
	free(stack);
	/* Perl joins the parts into one string: a character string when one part is, its
	 * characters then encoded as UTF-8; else bytes (entities up to U+00FF one byte each),
	 * white space then only ASCII's */
	/* the body text is the pieces with their white space runs made shorter (a run of
	 * line breaks one line break, else one space), a '\n' between its lines (a paragraph,
	 * or up to 2048 octets of one) */
	sc->body.room = sc->body.b.n + joined + joined / 1024 + 64;
	rules_text_begin(&bt, &sc->body, &sc->tmp, wide);
	for (size_t k = 0; k < npc; k++) {
		const char *t = pc[k].p ? pc[k].p : text.p + pc[k].off;
		size_t n = pc[k].n;

		if (!wide && pc[k].p == NULL) {
			/* over the copy itself */
			n = charset_to_latin1_inplace(text.p + pc[k].off, n);
		} else if (!wide) {
			size_t h = 0;

			while (h < n && (unsigned char)t[h] < 0x80)
				h++;
			if (h < n) {
				/* a copy of one part's text at most (RULES_BODY_SCAN characters) */
				conv.n = 0;
				rules_buf_put(&conv, t, n);
				n = charset_to_latin1_inplace(conv.p, n);
				t = conv.p;
			}
		}
		rules_text_feed(&bt, t, n);
	}
	rules_text_end(&bt);
	free(pc);
	free(conv.p);
	free(text.p);
	if (want_uri) {
		const struct uri_details *d = eval_uri_details(&sc->ctx);

		for (size_t i = 0; i < d->all.n; i++)
			rules_lines_add(&sc->uris, d->all.v[i], strlen(d->all.v[i]));
	}
	/* mimeheader rules: each part's headers (the message itself first), the last value
	 * of each name, as SA's find_parts(qr/./) with get_header() and raw_header() */
	sc->allhdr.n = 0;
	rules_buf_put(&sc->allhdr, "", 0);
	for (size_t i = 0; i < m->nparts; i++) {
		const struct samsg_part *p = &m->parts[i];

		rules_buf_put(&sc->allhdr, "\0\0\0", 3);     /* a part begins: empty entry */
		for (size_t k = 0; k < p->nhdrs; k++) {
			bool later = false;

			for (size_t j = k + 1; j < p->nhdrs && !later; j++)
				later = strcasecmp(p->hdrs[j].name, p->hdrs[k].name) == 0;
			/* an empty name (a line that starts with a NUL octet) would read as the end
			 * of the part's entries; no rule names such a field */
			if (later || p->hdrs[k].name[0] == '\0')
				continue;
			rules_buf_put(&sc->allhdr, p->hdrs[k].name, strlen(p->hdrs[k].name));
			rules_buf_put(&sc->allhdr, "\0", 1);
			rules_buf_put(&sc->allhdr, p->hdrs[k].value, strlen(p->hdrs[k].value));
			rules_buf_put(&sc->allhdr, "\n\0", 2);
			rules_buf_put(&sc->allhdr, p->hdrs[k].raw, strlen(p->hdrs[k].raw));
			rules_buf_put(&sc->allhdr, "\0", 1);
		}
	}
}
