/* fuzz_sink.h — the growing buffer the message-path fuzzers collect output in: sink_cb has
 * the shape of dataparse_out_fn and bdat_out_fn (returns 0; aborts only as malloc would).
 * One definition for fuzz_dataparse, fuzz_bdat and fuzz_msgpath. */
#ifndef MX_FUZZ_SINK_H
#define MX_FUZZ_SINK_H

#include <stdlib.h>
#include <string.h>

struct sink { char *buf; size_t len, cap; };

static int sink_cb(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
        if (s->buf == NULL)
            abort();
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

#endif
