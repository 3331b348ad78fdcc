/* dkim_canon.c — RFC 6376 3.4 canonicalisation. */
#include "filters/dkim_canon.h"

#include <string.h>

static bool canon_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

size_t dkim_canon_header(enum dkim_canon c, const char *field, size_t len, char *out)
{
	size_t i = 0, o = 0;
	bool pending_sp = false, any = false;
	const char *colon;

	if (c == DKIM_CANON_SIMPLE) {
		memcpy(out, field, len);
		return len;
	}
	/* RFC 6376 3.4.2: lowercase the name, drop WSP before the colon */
	colon = memchr(field, ':', len);
	if (colon == NULL)
		colon = field + len;
	for (; field + i < colon; i++) {
		char ch = field[i];

		if (canon_is_wsp(ch) || ch == '\r' || ch == '\n')
			continue;
		out[o++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	if (field + i == field + len)
		return o;
	out[o++] = ':';
	i++;
	/* unfold, collapse WSP runs, drop WSP after the colon and at the end of the value */
	for (; i < len; i++) {
		char ch = field[i];

		if (ch == '\r' || ch == '\n')
			continue;
		if (canon_is_wsp(ch)) {
			pending_sp = true;
			continue;
		}
		if (pending_sp && any)
			out[o++] = ' ';
		pending_sp = false;
		out[o++] = ch;
		any = true;
	}
	return o;
}

void dkim_body_canon_init(struct dkim_body_canon *b, enum dkim_canon c, uint64_t limit,
    dkim_body_sink sink, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->canon = c;
	b->limit = limit;
	b->sink = sink;
	b->sink_arg = arg;
}

/* A small batch between the per-byte machine and the sink. */
struct canon_out {
	struct dkim_body_canon *b;
	size_t n;
	char buf[4096];
};

static void canon_flush(struct canon_out *o)
{
	struct dkim_body_canon *b = o->b;
	uint64_t room = b->limit - b->passed;
	size_t take = (uint64_t)o->n < room ? o->n : (size_t)room;

	if (take > 0) {
		b->sink(b->sink_arg, o->buf, take);
		b->passed += take;
	}
	b->total += o->n;
	o->n = 0;
}

static inline void canon_put(struct canon_out *o, char c)
{
	if (o->n == sizeof(o->buf))
		canon_flush(o);
	o->buf[o->n++] = c;
}

/* Emits the line ends held back so far: content follows them, so they are not trailing. */
static void canon_put_pending(struct canon_out *o)
{
	struct dkim_body_canon *b = o->b;

	while (b->pending_crlf > 0) {
		/* past the limit nothing more reaches the sink: just count */
		if (b->passed + o->n >= b->limit && o->n == 0) {
			b->total += 2 * b->pending_crlf;
			b->pending_crlf = 0;
			break;
		}
		canon_put(o, '\r');
		canon_put(o, '\n');
		b->pending_crlf--;
	}
}

/* One content byte (not a line end). */
static inline void canon_content(struct canon_out *o, char c)
{
	struct dkim_body_canon *b = o->b;

	if (b->canon == DKIM_CANON_RELAXED && canon_is_wsp(c)) {
		b->pending_wsp = true;
		return;
	}
	if (b->pending_crlf > 0)
		canon_put_pending(o);
	if (b->pending_wsp) {
		canon_put(o, ' ');
		b->pending_wsp = false;
	}
	canon_put(o, c);
	b->nonempty = true;
}

static inline void canon_line_end(struct dkim_body_canon *b)
{
	b->pending_wsp = false;	/* relaxed: WSP at the end of a line goes */
	b->pending_crlf++;
}

void dkim_body_canon_feed(struct dkim_body_canon *b, const char *p, size_t n)
{
	struct canon_out o;

	if (b->done || n == 0)
		return;
	o.b = b;
	o.n = 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (b->saw_cr) {
			b->saw_cr = false;
			if (c == '\n') {
				canon_line_end(b);
				continue;
			}
			canon_content(&o, '\r');	/* a CR alone is content */
		}
		if (c == '\r')
			b->saw_cr = true;
		else if (c == '\n')
			canon_line_end(b);
		else
			canon_content(&o, c);
	}
	canon_flush(&o);
}

void dkim_body_canon_end(struct dkim_body_canon *b)
{
	struct canon_out o;

	if (b->done)
		return;
	o.b = b;
	o.n = 0;
	if (b->saw_cr) {
		b->saw_cr = false;
		canon_content(&o, '\r');
	}
	/* trailing empty lines are dropped (3.4.3, 3.4.4); the last line keeps one CRLF */
	b->pending_crlf = 0;
	b->pending_wsp = false;
	if (b->nonempty || b->canon == DKIM_CANON_SIMPLE) {
		/* simple: an empty body is a single CRLF (3.4.3); relaxed: empty stays empty */
		canon_put(&o, '\r');
		canon_put(&o, '\n');
	}
	canon_flush(&o);
	b->done = true;
}
