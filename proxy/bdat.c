/* bdat.c — CHUNKING framing (RFC 3030 2, 4). No I/O. See bdat.h. */
#include "bdat.h"

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

/* Passes content on (binary: as is; else CRLF-normalised, NUL-free). */
static int bdat_emit(struct bdat *b, const char *in, size_t n, bdat_out_fn out, void *arg)
{
	size_t start = 0;

	if (b->binary)
		return n ? out(arg, in, n) : 0;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (b->cr_pending) {
			b->cr_pending = false;
			if (c == '\n') {
				/* the CR held back (maybe from the previous chunk) and this LF: CRLF */
				if (i > start && out(arg, in + start, i - start) != 0)
					return -1;
				if (out(arg, "\r\n", 2) != 0)
					return -1;
				start = i + 1;
				continue;
			}
			/* a bare CR */
			b->bad_line_ending = true;
			if (i > start && out(arg, in + start, i - start) != 0)
				return -1;
			if (out(arg, "\r\n", 2) != 0)
				return -1;
			start = i;
		}
		if (c == '\r' || c == '\n' || c == '\0') {
			if (i > start && out(arg, in + start, i - start) != 0)
				return -1;
			start = i + 1;
			if (c == '\r') {
				b->cr_pending = true;
			} else if (c == '\n') {
				b->bad_line_ending = true;
				if (out(arg, "\r\n", 2) != 0)
					return -1;
			} else {
				b->nul_seen = true;
				b->nuls++;
			}
		}
	}
	if (n > start && out(arg, in + start, n - start) != 0)
		return -1;
	return 0;
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
