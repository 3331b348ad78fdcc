/* test_dataparse.c — end of data, dot-unstuffing, smuggling, and the stuffing round trip.
 * Every row is fed whole, byte by byte and split at every position, in both policies; the
 * fast path for runs of clean lines against the byte-at-a-time path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dataparse.h"

struct sink {
    char *buf;
    size_t len, cap;
    int fail_after;     /* calls before out() fails; -1 never */
};

static int
sink_cb(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    if (s->fail_after == 0)
        return -1;
    if (s->fail_after > 0)
        s->fail_after--;
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
    return 0;
}

static void
sink_init(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    s->fail_after = -1;
    s->cap = 64;
    s->buf = calloc(1, s->cap);
}

/* Feeds in[] in pieces (step octets, or one split at `split` when step is 0) until done.
 * With take_clean, as the session does when it reads message content into the message
 * buffer (session_on_content): each piece first through dataparse_take_clean, its prefix
 * passed to the sink as it stands, the rest through dataparse_feed. Returns the total
 * consumed. */
static size_t
feed_pieces(struct dataparse *p, const char *in, size_t len, size_t step, size_t split,
            struct sink *s, int *done, bool take_clean)
{
    size_t pos = 0;
    *done = 0;
    while (pos < len && !*done) {
        size_t n = step ? step : (pos < split ? split - pos : len - pos);
        if (n > len - pos)
            n = len - pos;
        size_t k = 0;
        if (take_clean && dataparse_takes_clean(p)) {
            k = dataparse_take_clean(p, in + pos, n);
            assert_true(k <= n);
            if (k > 0)
                assert_int_equal(sink_cb(s, in + pos, k), 0);
        } else if (take_clean) {
            assert_int_equal(dataparse_take_clean(p, in + pos, n), 0);
        }
        pos += k;
        if (k == n)
            continue;
        ssize_t c = dataparse_feed(p, in + pos, n - k, sink_cb, s, done);
        assert_true(c >= 0);
        assert_true((size_t)c <= n - k);
        if (!*done)
            assert_int_equal((size_t)c, n - k);
        pos += (size_t)c;
    }
    return pos;
}

static size_t
feed_all(struct dataparse *p, const char *in, size_t len, size_t step, size_t split,
         struct sink *s, int *done)
{
    return feed_pieces(p, in, len, step, split, s, done, false);
}

/* No line of content is a lone "." unless allowed. */
static int
has_lone_dot_line(const char *c, size_t len)
{
    if (len >= 3 && memcmp(c, ".\r\n", 3) == 0)
        return 1;
    for (size_t i = 0; i + 5 <= len; i++)
        if (memcmp(c + i, "\r\n.\r\n", 5) == 0)
            return 1;
    return 0;
}

/* Only CRLF line endings in content. */
static int
is_crlf_clean(const char *c, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (c[i] == '\r' && (i + 1 >= len || c[i + 1] != '\n'))
            return 0;
        if (c[i] == '\n' && (i == 0 || c[i - 1] != '\r'))
            return 0;
    }
    return 1;
}

struct dp_row {
    const char *label;
    const char *in;         /* the wire after DATA's "354" */
    const char *content;    /* expected unstuffed content */
    int done;
    const char *rest;       /* bytes left after the end (pipelining), when done */
    int bad;                /* bad_line_ending */
};

#define END ".\r\n"     /* after a line that ended with CRLF */

static const struct dp_row dp_rows[] = {
    { "simple message", "Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", 1, "", 0 },
    { "empty message", ".\r\n", "", 1, "", 0 },
    { "pipelined command after end", "a\r\n.\r\nQUIT\r\n", "a\r\n", 1, "QUIT\r\n", 0 },
    { "dot-stuffed line", "..x\r\n.\r\n", ".x\r\n", 1, "", 0 },
    { "stuffed lone dot", "a\r\n..\r\n.\r\n", "a\r\n.\r\n", 1, "", 0 },
    { "triple dot", "...\r\n.\r\n", "..\r\n", 1, "", 0 },
    { "unstuffed dot line (lenient)", ".x\r\n.\r\n", "x\r\n", 1, "", 0 },
    { "dot inside line", "a.b\r\n.\r\n", "a.b\r\n", 1, "", 0 },
    { "not ended", "a\r\nb", "a\r\nb", 0, NULL, 0 },
    { "not ended: pending dot", "a\r\n.", "a\r\n", 0, NULL, 0 },
    { "not ended: pending dot CR", "a\r\n.\r", "a\r\n", 0, NULL, 0 },
    { "dot space is content", "a\r\n. \r\n.\r\n", "a\r\n \r\n", 1, "", 0 },
    /* smuggling: none of these may end the data or yield a lone "." line */
    { "smuggling LF.LF", "a\n.\nMAIL FROM:<x@y>\r\n" END, "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 1, "", 1 },
    { "smuggling CR.CR", "a\r.\rMAIL FROM:<x@y>\r\n" END, "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 1, "", 1 },
    { "smuggling LF.CRLF", "a\n.\r\nMAIL FROM:<x@y>\r\n" END, "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 1, "", 1 },
    { "smuggling CRLF.LF", "a\r\n.\nMAIL FROM:<x@y>\r\n" END, "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 1, "", 1 },
    { "smuggling CR.CRLF", "a\r.\r\nMAIL FROM:<x@y>\r\n" END, "a\r\n..\r\nMAIL FROM:<x@y>\r\n", 1, "", 1 },
    { "smuggling CRLF.CR", "a\r\n.\rMAIL\r\n" END, "a\r\n..\r\nMAIL\r\n", 1, "", 1 },
    { "smuggling LF..CRLF", "a\n..\r\nb\r\n" END, "a\r\n..\r\nb\r\n", 1, "", 1 },
    { "smuggling CRLF..LF", "a\r\n..\nb\r\n" END, "a\r\n..\r\nb\r\n", 1, "", 1 },
    { "smuggling CRLF..CR", "a\r\n..\rb\r\n" END, "a\r\n..\r\nb\r\n", 1, "", 1 },
    { "smuggling first line .LF", ".\nb\r\n" END, "..\r\nb\r\n", 1, "", 1 },
    /* CR CR LF . CR LF holds a genuine <CRLF>.<CRLF>: a strict server ends there too */
    { "CR CR LF then end", "a\r\r\n.\r\nb\r\n" END, "a\r\n\r\n", 1, "b\r\n" END, 1 },
    { "smuggling .CR CR LF", "a\r\n.\r\r\nb\r\n" END, "a\r\n..\r\n\r\nb\r\n", 1, "", 1 },
    { "smuggling LF then real end", "a\nb\r\n" END, "a\r\nb\r\n", 1, "", 1 },
    { "weak line then strong end", "a\n.\r\n.\r\n", "a\r\n..\r\n", 1, "", 1 },
    { "bare LF", "a\nb\r\n.\r\n", "a\r\nb\r\n", 1, "", 1 },
    { "bare CR", "a\rb\r\n.\r\n", "a\r\nb\r\n", 1, "", 1 },
    { "bare LF at start", "\n.\r\n.\r\n", "\r\n..\r\n", 1, "", 1 },
    { "weak stuffed dot", "a\n..x\r\n.\r\n", "a\r\n.x\r\n", 1, "", 1 },
    { "LF CR is bare then bare", "a\n\rb\r\n.\r\n", "a\r\n\r\nb\r\n", 1, "", 1 },
};

static void
check_row(const struct dp_row *row, enum data_bare_lf policy, size_t step, size_t split,
          const char *how)
{
    size_t len = strlen(row->in);
    struct dataparse p;
    struct sink s;
    int done;
    dataparse_init(&p, policy);
    sink_init(&s);
    size_t used = feed_all(&p, row->in, len, step, split, &s, &done);
    if (done != row->done)
        fail_msg("%s (%s): done %d", row->label, how, done);
    if (strlen(row->content) != s.len || memcmp(s.buf, row->content, s.len) != 0)
        fail_msg("%s (%s): content '%s'", row->label, how, s.buf);
    if (done && strcmp(row->in + used, row->rest) != 0)
        fail_msg("%s (%s): rest '%s'", row->label, how, row->in + used);
    if ((int)p.bad_line_ending != row->bad)
        fail_msg("%s (%s): bad_line_ending %d", row->label, how, p.bad_line_ending);
    if (p.bytes != s.len)
        fail_msg("%s (%s): bytes %llu", row->label, how, (unsigned long long)p.bytes);
    if (!is_crlf_clean(s.buf, s.len))
        fail_msg("%s (%s): content not CRLF-clean", row->label, how);
    if (row->bad && has_lone_dot_line(s.buf, s.len))
        fail_msg("%s (%s): lone dot line in content", row->label, how);
    free(s.buf);
}

static void
test_rows(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(dp_rows) / sizeof(dp_rows[0]); r++) {
        const struct dp_row *row = &dp_rows[r];
        size_t len = strlen(row->in);
        for (int pol = 0; pol < 2; pol++) {
            enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
            check_row(row, policy, len, 0, "whole");
            check_row(row, policy, 1, 0, "byte by byte");
            for (size_t sp = 1; sp < len; sp++)
                check_row(row, policy, 0, sp, "split");
        }
    }
}

static void
test_counters_and_errors(void **state)
{
    (void)state;
    struct dataparse p;
    struct sink s;
    int done;
    const char *in = "abc\r\nabcdefgh\r\n\r\nx\r\n.\r\n";
    dataparse_init(&p, DATA_BARE_LF_REJECT);
    sink_init(&s);
    assert_int_equal(dataparse_feed(&p, in, strlen(in), sink_cb, &s, &done), (ssize_t)strlen(in));
    assert_int_equal(done, 1);
    assert_int_equal(p.bytes, strlen(in) - 3);
    /* after the end, further input is not consumed */
    assert_int_equal(dataparse_feed(&p, "x", 1, sink_cb, &s, &done), 0);
    assert_int_equal(done, 1);
    free(s.buf);

    /* the sink failing stops the parser */
    dataparse_init(&p, DATA_BARE_LF_REJECT);
    sink_init(&s);
    s.fail_after = 1;
    assert_int_equal(dataparse_feed(&p, in, strlen(in), sink_cb, &s, &done), -1);
    free(s.buf);
}

/* NUL octets: dropped in every mode, noted, never an end of data or a lone "." line. The
 * input strings hold NULs, so they carry their length. */
struct nul_row {
    const char *label;
    const char *in;
    size_t len;
    const char *content;
    int done;
    size_t nuls;
};

#define NR(label, in, content, done, nuls) { label, in, sizeof(in) - 1, content, done, nuls }
static const struct nul_row nul_rows[] = {
    NR("NUL inside a line", "a\0b\r\n.\r\n", "ab\r\n", 1, 1),
    NR("NUL at line start", "\0a\r\n.\r\n", "a\r\n", 1, 1),
    NR("scanner: CRLF NUL . CRLF is no end", "a\r\n\0.\r\nMAIL FROM:<x@y>\r\n.\r\n",
       "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 1, 1),
    NR("first line NUL . CRLF", "\0.\r\nb\r\n.\r\n", ".\r\nb\r\n", 1, 1),
    NR("dot NUL CRLF", "a\r\n.\0\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 1, 1),
    NR("dot dot NUL", "..\0\r\n.\r\n", ".\r\n", 1, 1),
    NR("NUL before the end", "a\0\r\n.\r\n", "a\r\n", 1, 1),
    NR("NUL between CR and LF", "a\r\0\n.\r\n.\r\n", "a\r\n\r\n..\r\n", 1, 1),
    NR("run of NULs", "\0\0\0\r\n.\r\n", "\r\n", 1, 3),
    NR("NUL after the end is not read", "a\r\n.\r\n\0", "a\r\n", 1, 0),
    NR("only NULs, not ended", "\0\0", "", 0, 2),
};

static void
test_nul(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(nul_rows) / sizeof(nul_rows[0]); r++) {
        const struct nul_row *row = &nul_rows[r];
        for (size_t step = 1; step <= row->len; step++) {
            struct dataparse p;
            struct sink s;
            int done;
            dataparse_init(&p, DATA_BARE_LF_REJECT);
            sink_init(&s);
            feed_all(&p, row->in, row->len, step, 0, &s, &done);
            if (done != row->done)
                fail_msg("%s (step %zu): done %d", row->label, step, done);
            if (s.len != strlen(row->content) || memcmp(s.buf, row->content, s.len) != 0)
                fail_msg("%s (step %zu): content '%s'", row->label, step, s.buf);
            if (memchr(s.buf, '\0', s.len) != NULL)
                fail_msg("%s (step %zu): a NUL reached the output", row->label, step);
            if (p.nul_seen != (row->nuls > 0) || p.nuls != row->nuls)
                fail_msg("%s (step %zu): nuls %llu", row->label, step, (unsigned long long)p.nuls);
            if (p.bytes != s.len)
                fail_msg("%s (step %zu): bytes", row->label, step);
            /* what the backend gets: a strict reader ends only at the final dot */
            struct sink w;
            sink_init(&w);
            struct dotstuff d;
            dotstuff_init(&d);
            assert_int_equal(dotstuff_encode(&d, s.buf, s.len, sink_cb, &w), 0);
            assert_int_equal(dotstuff_finish(&d, sink_cb, &w), 0);
            for (size_t i = 0, start = 0; i + 1 < w.len; i++)
                if (w.buf[i] == '\r' && w.buf[i + 1] == '\n') {
                    if (i - start == 1 && w.buf[start] == '.' && i + 2 != w.len)
                        fail_msg("%s: the wire ends early", row->label);
                    start = i + 2;
                }
            free(w.buf);
            free(s.buf);
        }
    }
}

/* Stuffs content and terminates it. */
static void
encode(const char *c, size_t len, size_t step, struct sink *w)
{
    struct dotstuff d;
    dotstuff_init(&d);
    for (size_t pos = 0; pos < len; pos += step) {
        size_t n = len - pos < step ? len - pos : step;
        assert_int_equal(dotstuff_encode(&d, c + pos, n, sink_cb, w), 0);
    }
    assert_int_equal(dotstuff_finish(&d, sink_cb, w), 0);
}

/* A strict reader: splits wire at CRLF; the first "." line must be the last line. */
static void
check_strict_wire(const char *w, size_t len)
{
    assert_true(len >= 3);
    assert_true(is_crlf_clean(w, len));
    size_t start = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (w[i] == '\r' && w[i + 1] == '\n') {
            if (i - start == 1 && w[start] == '.')
                assert_int_equal(i + 2, len);
            start = i + 2;
        }
    }
    assert_memory_equal(w + len - 3, ".\r\n", 3);
    assert_true(len == 3 || (len >= 5 && memcmp(w + len - 5, "\r\n.\r\n", 5) == 0));
}

struct enc_row {
    const char *label;
    const char *content;
    const char *wire;
};

static const struct enc_row enc_rows[] = {
    { "empty", "", ".\r\n" },
    { "one line", "a\r\n", "a\r\n.\r\n" },
    { "no final CRLF", "a", "a\r\n.\r\n" },
    { "leading dot", ".a\r\n", "..a\r\n.\r\n" },
    { "lone dot line", "x\r\n.\r\ny\r\n", "x\r\n..\r\ny\r\n.\r\n" },
    { "bare LF normalised and stuffed", "x\n.\ny", "x\r\n..\r\ny\r\n.\r\n" },
    { "bare CR normalised and stuffed", "x\r.\ry", "x\r\n..\r\ny\r\n.\r\n" },
    { "ends with CR", "x\r", "x\r\n.\r\n" },
};

static void
test_encoder(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(enc_rows) / sizeof(enc_rows[0]); r++) {
        const struct enc_row *row = &enc_rows[r];
        size_t len = strlen(row->content);
        for (size_t step = 1; step <= (len ? len : 1); step++) {
            struct sink w;
            sink_init(&w);
            encode(row->content, len, step, &w);
            if (strcmp(w.buf, row->wire) != 0)
                fail_msg("%s (step %zu): wire '%s'", row->label, step, w.buf);
            check_strict_wire(w.buf, w.len);
            free(w.buf);
        }
    }
}

/* The number of strings of len octets over an alphabet of n. */
static size_t
words(size_t n, size_t len)
{
    size_t total = 1;
    for (size_t i = 0; i < len; i++)
        total *= n;
    return total;
}

/* The k-th of them into out. */
static void
word(char *out, const char *alpha, size_t n, size_t len, size_t k)
{
    for (size_t i = 0; i < len; i++) {
        out[i] = alpha[k % n];
        k /= n;
    }
}

/* Every string of up to 9 octets over {a . CR LF}: parse, re-stuff, parse again. */
static void
test_round_trip_exhaustive(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n' };
    char in[16];
    for (size_t len = 0; len <= 9; len++) {
        for (size_t k = 0; k < words(4, len); k++) {
            word(in, alpha, 4, len, k);
            struct dataparse p;
            struct sink c, w, c2;
            int done;
            dataparse_init(&p, DATA_BARE_LF_NORMALIZE);
            sink_init(&c);
            ssize_t used = dataparse_feed(&p, in, len, sink_cb, &c, &done);
            assert_true(used >= 0);
            assert_true(is_crlf_clean(c.buf, c.len));
            sink_init(&w);
            encode(c.buf, c.len, 3, &w);
            check_strict_wire(w.buf, w.len);
            struct dataparse p2;
            dataparse_init(&p2, DATA_BARE_LF_REJECT);
            sink_init(&c2);
            assert_int_equal(dataparse_feed(&p2, w.buf, w.len, sink_cb, &c2, &done), (ssize_t)w.len);
            assert_int_equal(done, 1);
            assert_false(p2.bad_line_ending);
            /* content without a final CRLF gets one from the encoder */
            size_t cl = c.len;
            if (cl > 0 && !(cl >= 2 && c.buf[cl - 2] == '\r' && c.buf[cl - 1] == '\n')) {
                assert_int_equal(c2.len, cl + 2);
            } else {
                assert_int_equal(c2.len, cl);
            }
            assert_memory_equal(c2.buf, c.buf, cl);
            free(c.buf);
            free(w.buf);
            free(c2.buf);
        }
    }
}

/* Two parses of the same input gave the same: consumed, end, content, counters, flags.
 * Frees both sinks. */
static void
assert_same_parse(const struct dataparse *a, const struct dataparse *b, struct sink *ca, struct sink *cb,
                  size_t ua, size_t ub, int da, int db)
{
    assert_int_equal(ua, ub);
    assert_int_equal(da, db);
    assert_int_equal(ca->len, cb->len);
    assert_memory_equal(ca->buf, cb->buf, ca->len);
    assert_int_equal(a->bytes, b->bytes);
    assert_int_equal(a->bad_line_ending, b->bad_line_ending);
    assert_int_equal(a->nuls, b->nuls);
    assert_int_equal(a->restuff, b->restuff);
    free(ca->buf);
    free(cb->buf);
}

/* Parses in[0..n) twice, fed in step-octet pieces (0: whole) with the scan each flag
 * says (dataparse_force_scalar), and checks the two agree. */
static void
parse_twice_same(enum data_bare_lf policy, const char *in, size_t n, size_t step_a, bool scalar_a, size_t step_b,
                 bool scalar_b)
{
    struct dataparse a, b;
    struct sink ca, cb;
    int da, db;
    bool was = dataparse_force_scalar;

    dataparse_init(&a, policy);
    dataparse_init(&b, policy);
    sink_init(&ca);
    sink_init(&cb);
    dataparse_force_scalar = scalar_a;
    size_t ua = feed_all(&a, in, n, step_a, n, &ca, &da);
    dataparse_force_scalar = scalar_b;
    size_t ub = feed_all(&b, in, n, step_b, n, &cb, &db);
    dataparse_force_scalar = was;
    assert_same_parse(&a, &b, &ca, &cb, ua, ub, da, db);
}

/* Whole runs of lines take a fast path: every string of up to 8 octets over {a . CR LF NUL},
 * behind a clean line so the fast path starts it, fed whole gives exactly what it gives fed
 * one octet at a time (content, consumed, end, counters). */
static void
test_fast_path_same(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n', '\0' };
    char in[32] = "xy\r\n";
    for (size_t len = 0; len <= 8; len++) {
        for (size_t k = 0; k < words(5, len); k++) {
            word(in + 4, alpha, 5, len, k);
            bool scalar = dataparse_force_scalar;
            parse_twice_same(DATA_BARE_LF_REJECT, in, 4 + len, 0, scalar, 1, scalar);
        }
    }
}

/* restuff false means the content is its own wire form: every string of up to 8 octets over
 * {a . CR LF NUL}, alone and behind a clean line, in both policies, fed whole and one octet
 * at a time (same flag both ways); whenever the flag is false, the encoder gives back the
 * content unchanged plus ".\r\n" (what the relay sends without encoding, relay_pump). */
static void
test_restuff_flag(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n', '\0' };
    char in[32] = "xy\r\n";
    size_t clean = 0;
    for (int pre = 0; pre <= 4; pre += 4) {
        for (size_t len = 0; len <= 8; len++) {
            for (size_t k = 0; k < words(5, len); k++) {
                word(in + pre, alpha, 5, len, k);
                for (int pol = 0; pol < 2; pol++) {
                    enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
                    struct dataparse a, b;
                    struct sink ca, cb, w;
                    int da, db;
                    dataparse_init(&a, policy);
                    dataparse_init(&b, policy);
                    sink_init(&ca);
                    sink_init(&cb);
                    feed_all(&a, in, (size_t)pre + len, 0, (size_t)pre + len, &ca, &da);
                    feed_all(&b, in, (size_t)pre + len, 1, 0, &cb, &db);
                    assert_int_equal(a.restuff, b.restuff);
                    if (da && !a.restuff) {
                        clean++;
                        sink_init(&w);
                        encode(ca.buf, ca.len, 3, &w);
                        assert_int_equal(w.len, ca.len + 3);
                        assert_memory_equal(w.buf, ca.buf, ca.len);
                        assert_memory_equal(w.buf + ca.len, ".\r\n", 3);
                        assert_false(a.bad_line_ending);
                        assert_false(a.nul_seen);
                        free(w.buf);
                    }
                    free(ca.buf);
                    free(cb.buf);
                }
            }
        }
    }
    assert_true(clean > 100);   /* the property was exercised */
}

/* dataparse_scan (SSE2 on x86-64) and dataparse_scan_scalar agree: every octet value at
 * every position of buffers up to 40 octets over three backgrounds (one just above the
 * limit, one with the high bit set, plain text), and the first of two. */
static void
test_scan_agree(void **state)
{
    (void)state;
    static const unsigned char bg[] = { 'a', DATAPARSE_SCAN_MAX + 1, 0xff };
    char buf[48];
    for (size_t b = 0; b < sizeof(bg); b++) {
        for (size_t n = 0; n <= 40; n++) {
            memset(buf, bg[b], sizeof(buf));
            assert_int_equal(dataparse_scan(buf, n), n);
            assert_int_equal(dataparse_scan_scalar(buf, n), n);
            for (size_t pos = 0; pos < n; pos++) {
                for (int v = 0; v < 256; v++) {
                    memset(buf, bg[b], sizeof(buf));
                    buf[pos] = (char)v;
                    size_t want = v <= DATAPARSE_SCAN_MAX ? pos : n;
                    assert_int_equal(dataparse_scan_scalar(buf, n), want);
                    assert_int_equal(dataparse_scan(buf, n), want);
                    if (pos + 1 < n) {
                        buf[n - 1] = '\0';
                        size_t want2 = v <= DATAPARSE_SCAN_MAX ? pos : n - 1;
                        assert_int_equal(dataparse_scan(buf, n), want2);
                        assert_int_equal(dataparse_scan_scalar(buf, n), want2);
                    }
                }
            }
        }
    }
}

/* The fast path's two scans give the same parse: every string of up to 6 octets over
 * {a . CR LF NUL TAB} in the middle of a 40-octet line (so the 16-octet blocks see it),
 * behind a clean line and before the end, both policies, fed whole and one octet at a
 * time, with dataparse_scan and with dataparse_scan_scalar. */
static void
test_scan_same_parse(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n', '\0', '\t' };
    char in[160];
    for (size_t len = 0; len <= 6; len++) {
        for (size_t k = 0; k < words(6, len); k++) {
            size_t n = 0;
            memset(in, 'x', 40);
            memcpy(in + 40, "\r\n", 2);
            n = 42;
            memset(in + n, 'y', 17);
            n += 17;
            word(in + n, alpha, 6, len, k);
            n += len;
            memset(in + n, 'z', 17);
            n += 17;
            memcpy(in + n, "\r\n.\r\n", 5);
            n += 5;
            for (int pol = 0; pol < 2; pol++) {
                enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
                for (size_t step = 0; step <= 1; step++)
                    parse_twice_same(policy, in, n, step, false, step, true);
            }
        }
    }
}

/* A run of short CRLF lines (lengths 0 to 9, some with a TAB), n octets, then the end. */
static size_t
short_lines(char *in, size_t n)
{
    size_t k = 0;
    for (size_t line = 0; k + 2 < n; line++) {
        size_t l = line % 10;
        for (size_t i = 0; i < l && k + 2 < n; i++)
            in[k++] = (line + i) % 7 == 3 ? '\t' : (char)('a' + (line + i) % 26);
        in[k++] = '\r';
        in[k++] = '\n';
    }
    memcpy(in + k, ".\r\n", 3);
    return k + 3;
}

/* The fast path across lines (64-octet blocks, several lines per block: dataparse_feed
 * without dataparse_force_scalar) gives the parse of the per-line one: every string of up
 * to 3 octets over {a . CR LF NUL TAB} written over a run of short lines at every offset
 * in it (at line starts, inside lines, over a CRLF, across the 64-octet blocks), both
 * policies, fed whole, and against the per-line scan fed one octet at a time at every
 * fifth offset. */
static void
test_lines_same_parse(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n', '\0', '\t' };
    char in[256];
    for (size_t len = 1; len <= 3; len++) {
        for (size_t k = 0; k < words(6, len); k++) {
            for (size_t at = 0; at + len <= 150; at++) {
                size_t n = short_lines(in, 200);
                word(in + at, alpha, 6, len, k);
                for (int pol = 0; pol < 2; pol++) {
                    enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
                    parse_twice_same(policy, in, n, 0, false, 0, true);
                    if (at % 5 == 0)
                        parse_twice_same(policy, in, n, 0, false, 1, true);
                }
            }
        }
    }
}

/* A pseudo-random buffer of 64 to 600 octets into in (640 octets): mostly lines of text with
 * now and then a ".", a bare CR or LF, a NUL, a TAB or an empty line. Returns its length. */
static size_t
random_lines(char *in, uint32_t *xp)
{
    static const char odd[] = { '.', '\r', '\n', '\0', '\t' };
    uint32_t x = *xp * 1103515245u + 12345u;
    size_t n = 64 + (x >> 8) % 537, k = 0;
    while (k < n) {
        x = x * 1103515245u + 12345u;
        uint32_t r = (x >> 8) % 100;
        if (r < 12 && k + 2 <= n) {
            in[k++] = '\r';
            in[k++] = '\n';
        } else if (r < 15) {
            in[k++] = odd[(x >> 20) % sizeof(odd)];
        } else {
            in[k++] = (char)('a' + (x >> 20) % 26);
        }
    }
    *xp = x;
    return n;
}

/* The same, over 4,000 pseudo-random buffers of 64 to 600 octets, mostly lines of text
 * with now and then a ".", a bare CR or LF, a NUL, a TAB or an empty line, fed whole and
 * split at a pseudo-random point, against the per-line scan fed whole. */
static void
test_lines_random(void **state)
{
    (void)state;
    char in[640];
    uint32_t x = 12345;
    for (int round = 0; round < 4000; round++) {
        size_t n = random_lines(in, &x);
        x = x * 1103515245u + 12345u;
        size_t split = (x >> 8) % (n + 1);
        for (int pol = 0; pol < 2; pol++) {
            enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
            parse_twice_same(policy, in, n, 0, false, 0, true);
            struct dataparse a, b;
            struct sink ca, cb;
            int da, db;
            dataparse_init(&a, policy);
            dataparse_init(&b, policy);
            sink_init(&ca);
            sink_init(&cb);
            bool was = dataparse_force_scalar;
            dataparse_force_scalar = false;
            size_t ua = feed_all(&a, in, n, 0, split, &ca, &da);
            dataparse_force_scalar = true;
            size_t ub = feed_all(&b, in, n, 0, n, &cb, &db);
            dataparse_force_scalar = was;
            assert_same_parse(&a, &b, &ca, &cb, ua, ub, da, db);
        }
    }
}

/* The encoder's block path against its per-line scan (dataparse_force_scalar): 4,000
 * pseudo-random buffers of 64 to 600 octets, mostly lines of text with now and then a ".",
 * a bare CR or LF, a NUL, a TAB, an empty line or a line starting with "." (so the block
 * path stops at each kind, in every place of a block), encoded whole and in two pieces
 * split at a pseudo-random point: the same octets out. */
static void
test_encode_paths_same(void **state)
{
    (void)state;
    static const char odd[] = { '.', '\r', '\n', '\0', '\t' };
    char in[640];
    uint32_t x = 54321;
    bool was = dataparse_force_scalar;
    for (int round = 0; round < 4000; round++) {
        x = x * 1103515245u + 12345u;
        size_t n = 64 + (x >> 8) % 537, k = 0;
        while (k < n) {
            x = x * 1103515245u + 12345u;
            uint32_t r = (x >> 8) % 100;
            if (r < 12 && k + 3 <= n) {
                in[k++] = '\r';
                in[k++] = '\n';
                if (r < 2)
                    in[k++] = '.';
            } else if (r < 14) {
                in[k++] = odd[(x >> 20) % sizeof(odd)];
            } else {
                in[k++] = (char)('a' + (x >> 20) % 26);
            }
        }
        x = x * 1103515245u + 12345u;
        size_t split = (x >> 8) % (n + 1);
        struct sink a, b, c;
        sink_init(&a);
        sink_init(&b);
        sink_init(&c);
        dataparse_force_scalar = false;
        encode(in, n, n, &a);
        encode(in, n, split ? split : 1, &c);
        dataparse_force_scalar = true;
        encode(in, n, n, &b);
        dataparse_force_scalar = was;
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.buf, b.buf, a.len);
        assert_int_equal(c.len, b.len);
        assert_memory_equal(c.buf, b.buf, c.len);
        free(a.buf);
        free(b.buf);
        free(c.buf);
    }
}

/* The reference parse of in[0..n): dataparse_feed, whole, with the portable scan (the
 * other tests show any split and scan give the same). */
struct ref_parse {
    struct dataparse p;
    struct sink c;
    size_t used;
    int done;
};

static void
ref_parse(struct ref_parse *r, enum data_bare_lf policy, const char *in, size_t n)
{
    bool was = dataparse_force_scalar;

    dataparse_init(&r->p, policy);
    sink_init(&r->c);
    dataparse_force_scalar = true;
    r->used = feed_all(&r->p, in, n, 0, n, &r->c, &r->done);
    dataparse_force_scalar = was;
}

/* in[0..n) through feed_pieces with take_clean (cut into step-octet pieces, or once at split) gives
 * the reference parse r: the same content, consumed, end, counters, flags and state. */
static void
take_clean_same(const struct ref_parse *r, enum data_bare_lf policy, const char *in, size_t n, size_t step,
                size_t split)
{
    struct dataparse a;
    struct sink ca;
    int da;

    dataparse_init(&a, policy);
    sink_init(&ca);
    size_t ua = feed_pieces(&a, in, n, step, split, &ca, &da, true);
    assert_int_equal(ua, r->used);
    assert_int_equal(da, r->done);
    assert_int_equal(ca.len, r->c.len);
    assert_memory_equal(ca.buf, r->c.buf, ca.len);
    assert_int_equal(a.bytes, r->p.bytes);
    assert_int_equal(a.bad_line_ending, r->p.bad_line_ending);
    assert_int_equal(a.nuls, r->p.nuls);
    assert_int_equal(a.restuff, r->p.restuff);
    assert_int_equal(a.state, r->p.state);
    assert_int_equal(a.weak, r->p.weak);
    free(ca.buf);
}

/* Zero-copy input (dataparse_take_clean, then dataparse_feed for the rest) parses as
 * dataparse_feed alone: every string of up to 5 octets over {a . CR LF NUL TAB} after a
 * clean line and before a line and the end, cut once at every place and in one-octet
 * pieces, both policies; and 3,000 pseudo-random buffers as in test_lines_random, cut at
 * three pseudo-random sizes; each against one reference parse (kept small: the unit tests
 * run under ASan too). take_clean never takes what the parser would change: a "." at a
 * line start, a bare CR or LF, a NUL. */
static void
test_take_clean_same(void **state)
{
    (void)state;
    static const char alpha[] = { 'a', '.', '\r', '\n', '\0', '\t' };
    char in[640];
    for (size_t len = 0; len <= 5; len++) {
        for (size_t k = 0; k < words(6, len); k++) {
            memcpy(in, "xy\r\n", 4);
            word(in + 4, alpha, 6, len, k);
            memcpy(in + 4 + len, "zz\r\n.\r\nQUIT\r\n", 14);
            size_t n = 4 + len + 14;
            for (int pol = 0; pol < 2; pol++) {
                enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
                struct ref_parse r;
                ref_parse(&r, policy, in, n);
                for (size_t split = 0; split <= n; split++)
                    take_clean_same(&r, policy, in, n, 0, split);
                take_clean_same(&r, policy, in, n, 1, n);
                free(r.c.buf);
            }
        }
    }
    uint32_t x = 777;
    for (int round = 0; round < 3000; round++) {
        size_t n = random_lines(in, &x);
        for (int pol = 0; pol < 2; pol++) {
            enum data_bare_lf policy = pol ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
            struct ref_parse r;
            ref_parse(&r, policy, in, n);
            x = x * 1103515245u + 12345u;
            take_clean_same(&r, policy, in, n, 0, (x >> 8) % (n + 1));
            take_clean_same(&r, policy, in, n, 1 + (x >> 8) % 97, 0);
            take_clean_same(&r, policy, in, n, 1 + (x >> 16) % 7, 0);
            free(r.c.buf);
        }
    }
}

static int
scalar_on(void **state)
{
    (void)state;
    dataparse_force_scalar = true;
    return 0;
}

static int
scalar_off(void **state)
{
    (void)state;
    dataparse_force_scalar = false;
    return 0;
}

static int
sse2_on(void **state)
{
    (void)state;
    dataparse_force_sse2 = true;
    return 0;
}

static int
sse2_off(void **state)
{
    (void)state;
    dataparse_force_sse2 = false;
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_counters_and_errors),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_encoder),
        cmocka_unit_test(test_round_trip_exhaustive),
        cmocka_unit_test(test_fast_path_same),
        cmocka_unit_test(test_restuff_flag),
        cmocka_unit_test(test_scan_agree),
        cmocka_unit_test(test_scan_same_parse),
        cmocka_unit_test(test_lines_same_parse),
        cmocka_unit_test(test_lines_random),
        cmocka_unit_test(test_encode_paths_same),
        cmocka_unit_test(test_take_clean_same),
    };
    /* the whole set with the block path the CPU allows (AVX2 on most x86-64), again with
     * SSE2's (dataparse_force_sse2), again with the portable scan (dataparse_force_scalar);
     * the tests that compare paths compare each with the portable one */
    int rc = cmocka_run_group_tests_name("dataparse", tests, NULL, NULL);
    rc += cmocka_run_group_tests_name("dataparse_sse2", tests, sse2_on, sse2_off);
    return rc + cmocka_run_group_tests_name("dataparse_scalar", tests, scalar_on, scalar_off);
}
