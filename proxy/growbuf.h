/* growbuf.h — growing a NUL-terminated byte buffer: the one append behind strbuf
 * (headers.h) and the rules engine's text buffers (html_buf, uri_buf, rules_buf, ...). */
#ifndef MX_GROWBUF_H
#define MX_GROWBUF_H

#include <stddef.h>
#include <string.h>

/* Grows *buf (doubling from first) to hold at least need octets; aborts when memory runs
 * out. growbuf_append's slow path. */
void growbuf_grow(char **buf, size_t *cap, size_t first, size_t need);

/* Appends s[0..n) at *len, growing *buf (doubling from first) so that a NUL always
 * follows the content; aborts when memory runs out, as the engine's buffers always did.
 * Inline: it runs a few dozen times per message (the Received field, the replies). */
static inline void growbuf_append(char **buf, size_t *len, size_t *cap, size_t first, const char *s, size_t n)
{
	if (*len + n + 1 > *cap)
		growbuf_grow(buf, cap, first, *len + n + 1);
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

#endif
