/* fuzz_linebuf.c — the line reader fed in chunks (size from the first byte) must give the
 * same lines as one buffer, never overrun cap and always make progress. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linebuf.h"

#define CAP 512

struct collected {
    char *buf;
    size_t len, cap;
};

static void
collect(struct collected *c, const struct linebuf_line *l)
{
    if (l->len > CAP || (l->len > CAP - 2 && !l->too_long))
        abort();
    if (c->len + l->len + 3 > c->cap) {   /* doubling: not one realloc per line */
        c->cap = (c->len + l->len + 3) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, l->data, l->len);
    c->len += l->len;
    c->buf[c->len++] = (char)(l->bare_lf ? 'L' : 'C');
    c->buf[c->len++] = (char)(l->too_long ? 'T' : 'n');
    c->buf[c->len++] = '\n';
}

static size_t
run(const uint8_t *data, size_t size, size_t step, struct collected *c)
{
    struct linebuf lb;
    linebuf_init(&lb, CAP);
    size_t pos = 0;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        const char *p = (const char *)data + pos;
        while (n > 0) {
            size_t used = 0;
            struct linebuf_line line;
            int rc = linebuf_feed(&lb, p, n, &used, &line);
            if (used > n || (rc == 1 && used == 0) || (rc == 0 && used != n))
                abort();
            if (rc == 1)
                collect(c, &line);
            p += used;
            n -= used;
            pos += used;
        }
    }
    size_t pending = linebuf_pending(&lb);
    linebuf_free(&lb);
    return pending;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    struct collected a = { 0 }, b = { 0 };
    size_t pa = run(data, size, size ? size : 1, &a);
    size_t pb = run(data, size, step, &b);
    if (a.len != b.len || (a.len && memcmp(a.buf, b.buf, a.len) != 0))
        abort();
    /* a partial line is the same regardless of the split, unless it overflowed */
    if (pa != pb && pa <= CAP && pb <= CAP)
        abort();
    free(a.buf);
    free(b.buf);
    return 0;
}
