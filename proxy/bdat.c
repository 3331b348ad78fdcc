/* bdat.c — CHUNKING framing (RFC 3030 2, 4). No I/O. See bdat.h. */
#include "bdat.h"

#include <stdio.h>
#include <string.h>

/* See bdat.h. */
void bdat_init(struct bdat *b, uint64_t max_size, uint64_t discard_limit, bool binary)
{
	memset(b, 0, sizeof(*b));
	b->max_size = max_size;
	b->discard_limit = discard_limit ? discard_limit : max_size;
	b->binary = binary;
}

/* See bdat.h. */
const char *bdat_reply(enum bdat_verdict v)
{
	switch (v) {
	case BDAT_ACCEPT: return NULL;
	case BDAT_NO_MAIL: return "503 5.5.1 Error: need MAIL command";
	case BDAT_NO_RCPT: return "554 5.5.1 Error: no valid recipients";
	case BDAT_AFTER_FAILURE: return "554 5.5.0 Error: an earlier chunk was refused, send RSET";
	case BDAT_TOO_BIG: return "552 5.3.4 Message size exceeds fixed limit";
	case BDAT_TOO_BIG_CLOSE: return "552 5.3.4 Message size exceeds fixed limit";
	}
	return "554 5.5.0 Error";
}

/* See bdat.h. */
enum bdat_verdict bdat_begin(struct bdat *b, uint64_t size, bool last, bool have_mail,
    size_t nrcpts)
{
	enum bdat_verdict v = BDAT_ACCEPT;

	b->chunks++;
	b->remaining = size;
	b->last = last;
	b->discarding = true;
	if (!have_mail)
		v = BDAT_NO_MAIL;           /* no transaction: nothing to fail */
	else if (b->failed)
		v = BDAT_AFTER_FAILURE;     /* RFC 3030 2: chunks pipelined after a refused one */
	else if (nrcpts == 0)
		v = BDAT_NO_RCPT;
	else if (size > b->max_size || b->size + size > b->max_size)
		v = BDAT_TOO_BIG;
	if (have_mail)
		b->used = true;
	if (v == BDAT_TOO_BIG && size > b->discard_limit)
		v = BDAT_TOO_BIG_CLOSE;
	if (v != BDAT_ACCEPT) {
		if (have_mail)
			b->failed = true;
		return v;
	}
	b->discarding = false;
	return v;
}

/* CRLF normalisation, the one loop for the way in and the way out: every CR or LF that is
 * not part of a CRLF pair becomes CRLF. *cr_pending carries a CR held back across calls;
 * line_start (may be NULL) tracks whether the output ends a line; *bare (may be NULL) is set
 * when a bare CR or LF was normalised; nuls (may be NULL: they pass) counts NUL octets,
 * which are dropped. */
static int bdat_normalise(bool *cr_pending, bool *line_start, bool *bare, uint64_t *nuls, const char *in, size_t n,
    bdat_out_fn out, void *arg)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (*cr_pending) {
			*cr_pending = false;
			if (i > start && out(arg, in + start, i - start) != 0)
				return -1;
			if (out(arg, "\r\n", 2) != 0)
				return -1;
			if (line_start)
				*line_start = true;
			if (c == '\n') {
				/* the CR held back (maybe from the previous chunk) and this LF: CRLF */
				start = i + 1;
				continue;
			}
			/* a bare CR */
			if (bare)
				*bare = true;
			start = i;
		}
		if (c == '\r' || c == '\n' || (c == '\0' && nuls)) {
			if (i > start && out(arg, in + start, i - start) != 0)
				return -1;
			start = i + 1;
			if (c == '\r') {
				*cr_pending = true;
			} else if (c == '\n') {
				if (bare)
					*bare = true;
				if (out(arg, "\r\n", 2) != 0)
					return -1;
				if (line_start)
					*line_start = true;
			} else {
				(*nuls)++;
			}
			continue;
		}
		if (line_start)
			*line_start = false;
	}
	if (n > start && out(arg, in + start, n - start) != 0)
		return -1;
	return 0;
}

/* Passes content on (binary: as is; else CRLF-normalised, NUL-free). */
static int bdat_emit(struct bdat *b, const char *in, size_t n, bdat_out_fn out, void *arg)
{
	int rc;

	if (b->binary)
		return n ? out(arg, in, n) : 0;
	rc = bdat_normalise(&b->cr_pending, NULL, &b->bad_line_ending, &b->nuls, in, n, out, arg);
	b->nul_seen = b->nuls > 0;
	return rc;
}

/* See bdat.h. */
ssize_t bdat_feed(struct bdat *b, const char *in, size_t len, bdat_out_fn out, void *arg,
    int *done)
{
	size_t n = len < b->remaining ? len : (size_t)b->remaining;

	*done = 0;
	if (!b->discarding) {
		if (bdat_emit(b, in, n, out, arg) != 0)
			return -1;
		b->size += n;
	}
	b->remaining -= n;
	if (b->remaining == 0) {
		*done = 1;
		if (!b->discarding && b->last) {
			/* the message ends: a CR held back is a bare CR */
			if (b->cr_pending) {
				b->cr_pending = false;
				b->bad_line_ending = true;
				if (out(arg, "\r\n", 2) != 0)
					return -1;
			}
			b->complete = true;
		}
	}
	return (ssize_t)n;
}

/* ---- the way out ---------------------------------------------------------------------- */

/* See bdat.h. */
void bdat_crlf_init(struct bdat_crlf *c)
{
	c->last_cr = false;
	c->line_start = true;
}

/* See bdat.h. */
int bdat_crlf_encode(struct bdat_crlf *c, const char *in, size_t len, bdat_out_fn out, void *arg)
{
	return bdat_normalise(&c->last_cr, &c->line_start, NULL, NULL, in, len, out, arg);
}

/* See bdat.h. */
int bdat_crlf_finish(struct bdat_crlf *c, bdat_out_fn out, void *arg)
{
	if (c->last_cr || !c->line_start) {
		c->last_cr = false;
		c->line_start = true;
		return out(arg, "\r\n", 2);
	}
	return 0;
}

static int bdat_count_cb(void *arg, const char *data, size_t len)
{
	(void)data;
	*(uint64_t *)arg += len;
	return 0;
}

/* See bdat.h. */
uint64_t bdat_crlf_length(const char *a, size_t alen, const char *b, size_t blen)
{
	struct bdat_crlf c;
	uint64_t n = 0;

	bdat_crlf_init(&c);
	bdat_crlf_encode(&c, a, alen, bdat_count_cb, &n);
	bdat_crlf_encode(&c, b, blen, bdat_count_cb, &n);
	bdat_crlf_finish(&c, bdat_count_cb, &n);
	return n;
}

/* s holds word (lower case letters) in any case. */
static bool bdat_text_has(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (; *s; s++) {
		size_t i = 0;
		while (i < n && s[i] != '\0' && (s[i] | 0x20) == word[i])
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* The length of the enhanced status code text starts with (RFC 3463 2: class "." subject
 * "." detail, one to three digits each after the class, then a space or the end); 0 when
 * none. */
static size_t bdat_enhanced_len(const char *text)
{
	size_t e = 2;

	if (text[0] < '2' || text[0] > '5' || text[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (d < 3 && text[e + d] >= '0' && text[e + d] <= '9')
			d++;
		if (d == 0)
			return 0;
		e += d;
		if (part == 0 && text[e++] != '.')
			return 0;
	}
	return text[e] == '\0' || text[e] == ' ' || text[e] == '\r' ? e : 0;
}

/* See bdat.h. */
const char *bdat_reply_for_data(int code, const char *text, char *out, size_t cap)
{
	if (text == NULL || cap == 0 || (!bdat_text_has(text, "chunk") && !bdat_text_has(text, "bdat")))
		return text;
	/* the reply reader keeps the code on each line ("552 5.3.4 ...", "552-..."): past it */
	const char *t = text;
	if (t[0] >= '0' && t[0] <= '9' && t[1] >= '0' && t[1] <= '9' && t[2] >= '0' && t[2] <= '9' &&
	    (t[3] == ' ' || t[3] == '-'))
		t += 4;
	size_t e = bdat_enhanced_len(t);
	if (e && t[0] != '0' + code / 100 % 10)
		e = 0;          /* not of the reply's class: not its enhanced code */
	/* X.3.4, "Message too big for system" (RFC 3463 3.4) */
	bool size = e ? e == 5 && t[2] == '3' && t[4] == '4' : code == 552;
	const char *words = size ? "Message size exceeds fixed limit" : "Message not accepted";

	if (e)
		snprintf(out, cap, "%.*s %s", (int)e, t, words);
	else
		snprintf(out, cap, "%s", words);
	return out;
}
