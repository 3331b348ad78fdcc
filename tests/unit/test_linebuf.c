/* test_linebuf.c — the command line reader: every row is fed whole, byte by byte and split
 * at every position, and must give the same lines each time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "linebuf.h"

/* Renders the lines produced by feeding in[] in pieces of at most `step` octets (or with one
 * split at `split` when step is 0) as "data[flags]\n" each. */
static void
render_lines(size_t cap, const char *in, size_t len, size_t step, size_t split, char *out,
             size_t outcap, size_t *pending)
{
    struct linebuf lb;
    linebuf_init(&lb, cap);
    size_t o = 0;
    size_t pos = 0;
    out[0] = '\0';
    while (pos < len) {
        size_t n = step ? step : (pos < split ? split - pos : len - pos);
        if (n > len - pos)
            n = len - pos;
        const char *p = in + pos;
        size_t left = n;
        while (left > 0) {
            size_t used = 0;
            struct linebuf_line line;
            int rc = linebuf_feed(&lb, p, left, &used, &line);
            assert_true(used <= left);
            if (rc == 1) {
                assert_true(used > 0);
                assert_true(line.len <= cap);
                assert_true(o + line.len + 16 < outcap);
                memcpy(out + o, line.data, line.len);
                o += line.len;
                o += (size_t)snprintf(out + o, outcap - o, "%s%s\n", line.bare_lf ? "[LF]" : "",
                                      line.too_long ? "[LONG]" : "");
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(used, left);
            }
            p += used;
            left -= used;
        }
        pos += n;
    }
    out[o] = '\0';
    *pending = linebuf_pending(&lb);
    linebuf_free(&lb);
}

struct lb_row {
    const char *label;
    const char *in;
    const char *expect;
    size_t pending;
};

static const struct lb_row lb_rows[] = {
    { "one CRLF line", "EHLO x\r\n", "EHLO x\n", 0 },
    { "two pipelined lines", "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
      "MAIL FROM:<a@b>\nRCPT TO:<c@d>\n", 0 },
    { "empty line", "\r\n", "\n", 0 },
    { "bare LF", "QUIT\n", "QUIT[LF]\n", 0 },
    { "empty bare LF", "\n", "[LF]\n", 0 },
    { "bare CR kept as data", "NO\rOP\r\n", "NO\rOP\n", 0 },
    { "CR CR LF: first CR is data", "NOOP\r\r\n", "NOOP\r\n", 0 },
    { "partial line pending", "EHLO x\r\nDATA", "EHLO x\n", 4 },
    { "pending CR counts", "EHLO\r", "", 5 },
    { "LF then CRLF", "A\nB\r\n", "A[LF]\nB\n", 0 },
    { "CRLF split across reads", "HELO a\r\nHELO b\r\n", "HELO a\nHELO b\n", 0 },
};

static void
test_rows(void **state)
{
    (void)state;
    char want[4096], got[4096];
    for (size_t r = 0; r < sizeof(lb_rows) / sizeof(lb_rows[0]); r++) {
        const struct lb_row *row = &lb_rows[r];
        size_t len = strlen(row->in), pend;
        snprintf(want, sizeof(want), "%s", row->expect);
        /* whole, byte by byte, and every two-way split */
        render_lines(512, row->in, len, len, 0, got, sizeof(got), &pend);
        if (strcmp(got, want) != 0 || pend != row->pending)
            fail_msg("%s (whole): got '%s' pending %zu", row->label, got, pend);
        render_lines(512, row->in, len, 1, 0, got, sizeof(got), &pend);
        if (strcmp(got, want) != 0 || pend != row->pending)
            fail_msg("%s (bytewise): got '%s' pending %zu", row->label, got, pend);
        for (size_t s = 1; s < len; s++) {
            render_lines(512, row->in, len, 0, s, got, sizeof(got), &pend);
            if (strcmp(got, want) != 0 || pend != row->pending)
                fail_msg("%s (split at %zu): got '%s'", row->label, s, got);
        }
    }
}

struct lim_row {
    const char *label;
    size_t content;     /* octets before the line ending */
    const char *ending;
    int too_long;
    int bare_lf;
};

static const struct lim_row lim_rows[] = {
    { "line exactly at the limit", 510, "\r\n", 0, 0 },
    { "one over the limit", 511, "\r\n", 1, 0 },
    { "far over the limit", 5000, "\r\n", 1, 0 },
    { "bare LF at the limit", 510, "\n", 0, 1 },
    { "bare LF over the limit", 511, "\n", 1, 1 },
    { "exactly cap octets of content", 512, "\r\n", 1, 0 },
};

static void
test_limits(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(lim_rows) / sizeof(lim_rows[0]); r++) {
        const struct lim_row *row = &lim_rows[r];
        size_t el = strlen(row->ending);
        size_t len = row->content + el + 6;
        char *in = malloc(len);
        for (size_t i = 0; i < row->content; i++)
            in[i] = (char)('a' + i % 26);
        memcpy(in + row->content, row->ending, el);
        memcpy(in + row->content + el, "QUIT\r\n", 6);
        size_t steps[] = { len, 1, 7, 300 };
        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
            struct linebuf lb;
            linebuf_init(&lb, 512);
            size_t pos = 0, nlines = 0;
            while (pos < len) {
                size_t n = steps[k] < len - pos ? steps[k] : len - pos;
                const char *p = in + pos;
                while (n > 0) {
                    size_t used;
                    struct linebuf_line line;
                    int rc = linebuf_feed(&lb, p, n, &used, &line);
                    if (rc == 1) {
                        if (nlines == 0) {
                            if ((int)line.too_long != row->too_long || (int)line.bare_lf != row->bare_lf)
                                fail_msg("%s (step %zu): too_long %d bare_lf %d", row->label,
                                         steps[k], line.too_long, line.bare_lf);
                            size_t want = row->content < 512 ? row->content : 512;
                            if (line.len != want || memcmp(line.data, in, want) != 0)
                                fail_msg("%s (step %zu): data len %zu", row->label, steps[k], line.len);
                        } else {
                            /* the reader recovers: the next line is intact */
                            assert_int_equal(line.len, 4);
                            assert_memory_equal(line.data, "QUIT", 4);
                            assert_false(line.too_long);
                        }
                        nlines++;
                    }
                    p += used;
                    n -= used;
                    pos += used;
                }
            }
            if (nlines != 2)
                fail_msg("%s (step %zu): %zu lines", row->label, steps[k], nlines);
            assert_int_equal(linebuf_pending(&lb), 0);
            linebuf_free(&lb);
        }
        free(in);
    }
}

/* Idle sessions hold no memory; a partial line allocates; clear drops it. */
static void
test_lazy_and_clear(void **state)
{
    (void)state;
    struct linebuf lb;
    linebuf_init(&lb, 100);             /* clamped to 512 */
    assert_int_equal(lb.cap, 512);
    size_t used;
    struct linebuf_line line;
    assert_int_equal(linebuf_feed(&lb, "NOOP\r\n", 6, &used, &line), 1);
    assert_null(lb.buf);
    assert_int_equal(linebuf_feed(&lb, "STARTTLS\r\nEHLO", 14, &used, &line), 1);
    assert_int_equal(used, 10);
    assert_int_equal(linebuf_feed(&lb, "STARTTLS\r\nEHLO" + used, 4, &used, &line), 0);
    /* "pipelined data after STARTTLS" */
    assert_int_equal(linebuf_pending(&lb), 4);
    assert_non_null(lb.buf);
    linebuf_clear(&lb);
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_int_equal(linebuf_feed(&lb, "X\r\n", 3, &used, &line), 1);
    assert_int_equal(line.len, 1);
    assert_int_equal(linebuf_feed(&lb, "", 0, &used, &line), 0);
    assert_int_equal(used, 0);
    linebuf_free(&lb);
    linebuf_free(&lb);                  /* twice is harmless */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_lazy_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
