/* linebuf.c — SMTP command line reader: fixed capacity, resumable, no I/O. */
#include "linebuf.h"

#include <stdlib.h>
#include <string.h>

/* RFC 5321 4.5.3.1.4: a command line is at least 512 octets incl. CRLF. */
#define LINEBUF_MIN_CAP 512

/* Prepares lb for lines of at most cap octets incl. CRLF. Allocates nothing. */
void
linebuf_init(struct linebuf *lb, size_t cap)
{
    memset(lb, 0, sizeof(*lb));
    lb->cap = cap < LINEBUF_MIN_CAP ? LINEBUF_MIN_CAP : cap;
}

/* Releases the partial-line storage. lb may be re-initialised afterwards. */
void
linebuf_free(struct linebuf *lb)
{
    if (lb == NULL)
        return;
    free(lb->buf);
    lb->buf = NULL;
    lb->len = 0;
    lb->discarding = false;
    lb->cr = false;
}

/* Drops any partial line; keeps the capacity. */
void
linebuf_clear(struct linebuf *lb)
{
    lb->len = 0;
    lb->discarding = false;
    lb->cr = false;
}

/* Octets of a partial line held (content plus a pending CR). An over-long line being
 * discarded counts as at least one byte, so callers see that data is pending. */
size_t
linebuf_pending(const struct linebuf *lb)
{
    size_t n = lb->len + (lb->cr ? 1 : 0);
    if (n == 0 && lb->discarding)
        n = 1;
    return n;
}

static bool
linebuf_is_idle(const struct linebuf *lb)
{
    return lb->len == 0 && !lb->cr && !lb->discarding;
}

/* Appends content octets to the partial line: keeps the first cap of them and marks the
 * line as discarding past that. Allocation failure also discards (reported as too long). */
static void
linebuf_append_data(struct linebuf *lb, const char *data, size_t n)
{
    if (n == 0 || lb->discarding)
        return;
    if (lb->buf == NULL) {
        lb->buf = malloc(lb->cap);
        if (lb->buf == NULL) {
            lb->discarding = true;
            return;
        }
    }
    size_t room = lb->cap - lb->len;
    if (n > room) {
        memcpy(lb->buf + lb->len, data, room);
        lb->len = lb->cap;
        lb->discarding = true;
        return;
    }
    memcpy(lb->buf + lb->len, data, n);
    lb->len += n;
}

/* Fills *line for a line of content clen octets at data; content over cap - 2 (room for
 * CRLF) is too long and truncated to cap octets. */
static void
linebuf_make_line(const struct linebuf *lb, const char *data, size_t clen, bool overflow,
                  bool bare_lf, struct linebuf_line *line)
{
    line->data = data;
    line->bare_lf = bare_lf;
    line->too_long = overflow || clen > lb->cap - 2;
    line->len = clen > lb->cap ? lb->cap : clen;
}

/* See linebuf.h. The common case (a whole line in `in`, nothing pending) is zero-copy. */
int
linebuf_feed(struct linebuf *lb, const char *in, size_t len, size_t *consumed,
             struct linebuf_line *line)
{
    if (linebuf_is_idle(lb) && lb->buf != NULL) {
        /* The previous line (if it came from buf) is no longer borrowed: give the memory
         * back so idle sessions hold nothing. */
        free(lb->buf);
        lb->buf = NULL;
    }
    const char *lf = len > 0 ? memchr(in, '\n', len) : NULL;
    if (lf == NULL) {
        if (len > 0) {
            if (lb->cr) {           /* the pending CR was not followed by LF: it is data */
                lb->cr = false;
                linebuf_append_data(lb, "\r", 1);
            }
            size_t n = len;
            if (in[len - 1] == '\r') {
                n--;
                lb->cr = true;
            }
            linebuf_append_data(lb, in, n);
        }
        *consumed = len;
        return 0;
    }

    size_t i = (size_t)(lf - in);
    *consumed = i + 1;
    if (linebuf_is_idle(lb)) {
        bool crlf = i > 0 && in[i - 1] == '\r';
        size_t clen = crlf ? i - 1 : i;
        linebuf_make_line(lb, in, clen, false, !crlf, line);
        return 1;
    }

    bool crlf;
    if (i == 0) {
        crlf = lb->cr;
    } else {
        if (lb->cr)
            linebuf_append_data(lb, "\r", 1);
        crlf = in[i - 1] == '\r';
        linebuf_append_data(lb, in, crlf ? i - 1 : i);
    }
    bool overflow = lb->discarding;
    /* On allocation failure buf may be NULL with len 0: an empty too-long line. */
    linebuf_make_line(lb, lb->buf != NULL ? lb->buf : "", lb->len, overflow, !crlf, line);
    lb->len = 0;
    lb->cr = false;
    lb->discarding = false;
    return 1;
}
