/* growbuf.h — growing a NUL-terminated byte buffer: the one append behind strbuf
 * (headers.h) and the rules engine's text buffers (html_buf, uri_buf, rules_buf, ...). */
#ifndef MX_GROWBUF_H
#define MX_GROWBUF_H

#include <stddef.h>

/* Appends s[0..n) at *len, growing *buf (doubling from first) so that a NUL always
 * follows the content; aborts when memory runs out, as the engine's buffers always did. */
void growbuf_append(char **buf, size_t *len, size_t *cap, size_t first, const char *s, size_t n);

#endif
