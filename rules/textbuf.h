/* textbuf.h — growing the rules engine's big text buffers (the HTML rendering, the body
 * and rawbody lines) to what they can reach, not by doubling past it. */
#ifndef MX_TEXTBUF_H
#define MX_TEXTBUF_H

#include <stddef.h>

/* Grows *buf (capacity *cap, first the first capacity) to hold at least need octets:
 * by doubling, but to limit instead when need fits in it and doubling would pass it (limit:
 * what the caller knows the buffer can reach at most; 0 when it knows nothing). A limit
 * that turns out short costs another growth, never a wrong size: the result always holds
 * need. Aborts when memory runs out, as the engine's buffers always did. */
void textbuf_grow_within(char **buf, size_t *cap, size_t first, size_t need, size_t limit);

#endif
