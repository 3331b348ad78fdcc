/* linebuf.h — SMTP command line reader. Fixed capacity, CR/LF state kept across reads,
 * no I/O. The caller feeds whatever the socket delivered and gets complete lines back. */
#ifndef MX_LINEBUF_H
#define MX_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

struct linebuf {
    char *buf;          /* private: partial line kept between reads (lazy) */
    size_t len, cap;    /* private */
    bool discarding;    /* private: inside an over-long line, dropping until LF */
    bool cr;            /* private: last byte seen was CR */
};

struct linebuf_line {
    const char *data;   /* line content without the line ending */
    size_t len;
    bool bare_lf;       /* ended by LF without CR */
    bool too_long;      /* longer than cap: data holds the first cap bytes */
};

/* cap: max line length incl. CRLF (>= 512). buf is allocated lazily (only when a partial
 * line must be kept between reads) so 10,000 idle sessions cost nothing here. */
void linebuf_init(struct linebuf *lb, size_t cap);
/* Releases buf; lb is reusable after linebuf_init. */
void linebuf_free(struct linebuf *lb);
/* Scans in[0..len). Returns 1 and fills *line when a line completed (line->data valid until
 * the next linebuf_* call and while `in` is unchanged), with *consumed = bytes used from in
 * (call again with in + consumed for more lines); returns 0 when all of in was consumed
 * (kept for later) and no line completed. A bare CR not followed by LF is kept as data.
 * If memory for a partial line cannot be allocated the line is dropped and later reported
 * as too_long (the client gets a 500), never a crash. */
int linebuf_feed(struct linebuf *lb, const char *in, size_t len, size_t *consumed,
                 struct linebuf_line *line);
/* Bytes of a partial line held (for "pipelined data after STARTTLS" detection: also check
 * unconsumed input). */
size_t linebuf_pending(const struct linebuf *lb);
/* Drops any partial line. */
void linebuf_clear(struct linebuf *lb);

#endif
