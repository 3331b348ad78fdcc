/* fuzz_dataparse.c — the DATA decoder: split-independence, the exact end of data, clean
 * CRLF content without NULs, and the stuffing round trip (encode then decode gives the content back and
 * a strict reader sees "." only as the final line); content with restuff false encodes to itself.
 * The decoder and the encoder with a sink that fails at a call chosen by the input (the
 * spool's write failing): -1 from that call, what went out before a prefix of the output;
 * the decoder fed again after its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "dataparse.h"

#include "fuzz_sink.h"

/* Returns bytes consumed; *done as from the parser. */
static size_t
decode_to(const char *in, size_t len, size_t step, enum data_bare_lf pol, dataparse_out_fn out,
          void *arg, int *done, struct dataparse *p)
{
    dataparse_init(p, pol);
    size_t pos = 0;
    *done = 0;
    while (pos < len && !*done) {
        size_t n = len - pos < step ? len - pos : step;
        ssize_t c = dataparse_feed(p, in + pos, n, out, arg, done);
        if (c < 0 || (size_t)c > n || (!*done && (size_t)c != n))
            abort();
        pos += (size_t)c;
    }
    return pos;
}

static size_t
decode(const char *in, size_t len, size_t step, enum data_bare_lf pol, struct sink *s,
       int *done, struct dataparse *p)
{
    return decode_to(in, len, step, pol, sink_cb, s, done, p);
}

/* A sink that fails (returns -1) on its fail_at-th call (0: never), counting its calls and
 * keeping what it took before: the session's spool write can fail on any call. */
struct fsink { struct sink s; unsigned long calls, fail_at; };

static int fsink_cb(void *arg, const char *data, size_t len)
{
    struct fsink *f = arg;
    if (++f->calls == f->fail_at)
        return -1;
    return sink_cb(&f->s, data, len);
}

/* The call to fail at, from the input's last two octets: 1..calls. */
static unsigned long
pick_call(const uint8_t *data, size_t size, unsigned long calls)
{
    unsigned v = data[size - 1] | (size > 1 ? (unsigned)data[size - 2] << 8 : 0u);
    return 1 + v % calls;
}

/* The decode of in split in steps with a sink that fails at its Nth call (N from the input;
 * the run that never fails made `calls` calls and wrote want[0..wantlen)): the feed that made
 * the Nth call returns -1, no feed before it failed, and what went out before is a prefix of
 * the content, the calls before N in the same order. */
static void
decode_failing(const uint8_t *data, size_t size, const char *in, size_t len, size_t step,
               enum data_bare_lf pol, unsigned long calls, const char *want, size_t wantlen)
{
    if (calls == 0)
        return;
    struct fsink f = { .fail_at = pick_call(data, size, calls) };
    struct dataparse p;
    int done = 0;
    ssize_t c = 0;
    dataparse_init(&p, pol);
    for (size_t pos = 0; pos < len && !done;) {
        size_t n = len - pos < step ? len - pos : step;
        c = dataparse_feed(&p, in + pos, n, fsink_cb, &f, &done);
        if (c < 0)
            break;
        if ((size_t)c > n || f.calls >= f.fail_at)
            abort();
        pos += (size_t)c;
    }
    if (c != -1 || f.calls != f.fail_at || f.s.len > wantlen ||
        (f.s.len && memcmp(f.s.buf, want, f.s.len) != 0))
        abort();
    free(f.s.buf);
}

/* The encoder over content in steps, then its end, with a sink failing at the Nth call:
 * the call that made it returns -1, what went out before is a prefix of the wire form. */
static void
encode_failing(const uint8_t *data, size_t size, const char *in, size_t len, size_t step,
               unsigned long calls, const char *want, size_t wantlen)
{
    if (calls == 0)
        return;
    struct fsink f = { .fail_at = pick_call(data, size, calls) };
    struct dotstuff d;
    int r = 0;
    dotstuff_init(&d);
    for (size_t pos = 0; pos < len && r == 0; pos += step) {
        size_t n = len - pos < step ? len - pos : step;
        r = dotstuff_encode(&d, in + pos, n, fsink_cb, &f);
    }
    if (r == 0)
        r = dotstuff_finish(&d, fsink_cb, &f);
    if (r != -1 || f.calls != f.fail_at || f.s.len > wantlen ||
        (f.s.len && memcmp(f.s.buf, want, f.s.len) != 0))
        abort();
    free(f.s.buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum data_bare_lf pol = data[0] & 1 ? DATA_BARE_LF_NORMALIZE : DATA_BARE_LF_REJECT;
    size_t step = (size_t)(data[0] >> 1) % 32 + 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;

    /* the SSE2 scan and the portable one agree (at the first offsets: every alignment) */
    for (size_t off = 0; off < len && off < 48; off++)
        if (dataparse_scan(in + off, len - off) != dataparse_scan_scalar(in + off, len - off))
            abort();

    struct sink a = { 0 }, b = { 0 }, w = { 0 }, c2 = { 0 }, sc = { 0 };
    struct dataparse pa, pb, p2, ps;
    int da, db, d2, ds_;
    size_t ua = decode(in, len, len ? len : 1, pol, &a, &da, &pa);
    size_t ub = decode(in, len, step, pol, &b, &db, &pb);
    /* fed again after its end, the parser takes nothing and says done */
    if (da) {
        struct sink z = { 0 };
        int dz = 0;
        if (dataparse_feed(&pa, in, len, sink_cb, &z, &dz) != 0 || dz != 1 || z.len != 0)
            abort();
    }
    /* the sink failing at one of its calls (the count from the same split, never failing) */
    {
        struct fsink cnt = { 0 };
        struct dataparse pc;
        int dc;
        decode_to(in, len, step, pol, fsink_cb, &cnt, &dc, &pc);
        if (cnt.s.len != b.len || (b.len && memcmp(cnt.s.buf, b.buf, b.len) != 0))
            abort();
        decode_failing(data, size, in, len, step, pol, cnt.calls, b.buf, b.len);
        free(cnt.s.buf);
    }
    if (ua != ub || da != db || a.len != b.len || (a.len && memcmp(a.buf, b.buf, a.len)) ||
        pa.bad_line_ending != pb.bad_line_ending || pa.bytes != a.len ||
        pa.nuls != pb.nuls)
        abort();
    /* the portable scan gives the same parse */
    dataparse_force_scalar = true;
    size_t us = decode(in, len, len ? len : 1, pol, &sc, &ds_, &ps);
    dataparse_force_scalar = false;
    if (us != ua || ds_ != da || sc.len != a.len || (a.len && memcmp(a.buf, sc.buf, a.len)) ||
        ps.bad_line_ending != pa.bad_line_ending || ps.nuls != pa.nuls ||
        ps.restuff != pa.restuff || ps.bytes != pa.bytes)
        abort();
    free(sc.buf);
    /* so does the SSE2 block path where the CPU would take AVX2's */
    struct sink s2 = { 0 };
    struct dataparse p5;
    int d5;
    dataparse_force_sse2 = true;
    size_t u5 = decode(in, len, len ? len : 1, pol, &s2, &d5, &p5);
    dataparse_force_sse2 = false;
    if (u5 != ua || d5 != da || s2.len != a.len || (a.len && memcmp(a.buf, s2.buf, a.len)) ||
        p5.bad_line_ending != pa.bad_line_ending || p5.nuls != pa.nuls ||
        p5.restuff != pa.restuff || p5.bytes != pa.bytes)
        abort();
    free(s2.buf);
    /* zero-copy input (session_on_content): each step-octet piece through
     * dataparse_take_clean (its prefix as it stands), the rest through dataparse_feed, gives
     * the same parse; what it takes is never changed by the parser */
    {
        struct sink t = { 0 };
        struct dataparse pt;
        int dt = 0;
        size_t pos = 0;
        dataparse_init(&pt, pol);
        while (pos < len && !dt) {
            size_t n = len - pos < step ? len - pos : step;
            size_t k = dataparse_takes_clean(&pt) ? dataparse_take_clean(&pt, in + pos, n) : 0;
            if (k > n || (k > 0 && sink_cb(&t, in + pos, k) != 0))
                abort();
            pos += k;
            if (k == n)
                continue;
            ssize_t c = dataparse_feed(&pt, in + pos, n - k, sink_cb, &t, &dt);
            if (c < 0 || (!dt && (size_t)c != n - k))
                abort();
            pos += (size_t)c;
        }
        if (pos != ua || dt != da || t.len != a.len || (a.len && memcmp(a.buf, t.buf, a.len)) ||
            pt.bad_line_ending != pa.bad_line_ending || pt.nuls != pa.nuls || pt.restuff != pa.restuff ||
            pt.bytes != pa.bytes || pt.state != pa.state || pt.weak != pa.weak)
            abort();
        free(t.buf);
    }
    /* NULs are counted and never passed on */
    size_t nuls = 0;
    for (size_t i = 0; i < ua; i++)
        nuls += in[i] == '\0';
    if (pa.nuls != nuls || pa.nul_seen != (nuls > 0) || (a.len && memchr(a.buf, '\0', a.len)))
        abort();

    /* the end is exactly the first <CRLF>.<CRLF>, counting DATA's own CRLF */
    char *pre = malloc(len + 2);
    memcpy(pre, "\r\n", 2);
    memcpy(pre + 2, in, len);
    char *e = memmem(pre, len + 2, "\r\n.\r\n", 5);
    if ((e != NULL) != (da == 1))
        abort();
    if (e != NULL && ua != (size_t)(e - pre) + 5 - 2)
        abort();
    free(pre);

    /* content: CRLF only */
    for (size_t i = 0; i < a.len; i++) {
        if (a.buf[i] == '\r' && (i + 1 >= a.len || a.buf[i + 1] != '\n'))
            abort();
        if (a.buf[i] == '\n' && (i == 0 || a.buf[i - 1] != '\r'))
            abort();
    }

    /* the encoder over the raw input (bare CR/LF, NULs, dots): its block path and its
     * per-line scan (dataparse_force_scalar) give the same octets */
    {
        struct sink e1 = { 0 }, e2 = { 0 };
        struct dotstuff d1, d2;
        dotstuff_init(&d1);
        dotstuff_init(&d2);
        if (dotstuff_encode(&d1, in, len, sink_cb, &e1) != 0)
            abort();
        dataparse_force_scalar = true;
        if (dotstuff_encode(&d2, in, len, sink_cb, &e2) != 0)
            abort();
        dataparse_force_scalar = false;
        if (dotstuff_finish(&d1, sink_cb, &e1) != 0 || dotstuff_finish(&d2, sink_cb, &e2) != 0 ||
            e1.len != e2.len || (e1.len && memcmp(e1.buf, e2.buf, e1.len) != 0))
            abort();
        /* the same in steps, then with the sink failing at one of its calls */
        struct fsink cnt = { 0 };
        struct dotstuff dc;
        dotstuff_init(&dc);
        for (size_t pos = 0; pos < len; pos += step) {
            size_t n = len - pos < step ? len - pos : step;
            if (dotstuff_encode(&dc, in + pos, n, fsink_cb, &cnt) != 0)
                abort();
        }
        if (dotstuff_finish(&dc, fsink_cb, &cnt) != 0 || cnt.s.len != e1.len ||
            (e1.len && memcmp(cnt.s.buf, e1.buf, e1.len) != 0))
            abort();
        encode_failing(data, size, in, len, step, cnt.calls, cnt.s.buf, cnt.s.len);
        free(cnt.s.buf);
        free(e1.buf);
        free(e2.buf);
    }
    /* re-stuff: a strict reader sees "." only as the last line */
    struct dotstuff ds;
    dotstuff_init(&ds);
    for (size_t pos = 0; pos < a.len; pos += step) {
        size_t n = a.len - pos < step ? a.len - pos : step;
        if (dotstuff_encode(&ds, a.buf + pos, n, sink_cb, &w) != 0)
            abort();
    }
    if (dotstuff_finish(&ds, sink_cb, &w) != 0)
        abort();
    size_t start = 0;
    for (size_t i = 0; i + 1 < w.len; i++) {
        if (w.buf[i] == '\r' && w.buf[i + 1] == '\n') {
            if (i - start == 1 && w.buf[start] == '.' && i + 2 != w.len)
                abort();
            start = i + 2;
        }
    }
    /* restuff false (same however split): the content is its own wire form, the relay
     * sends it unencoded (relay_pump), so encoding must give it back unchanged */
    if (pa.restuff != pb.restuff)
        abort();
    if (da && !pa.restuff &&
        (w.len != a.len + 3 || (a.len && memcmp(w.buf, a.buf, a.len) != 0) ||
         memcmp(w.buf + a.len, ".\r\n", 3) != 0))
        abort();
    /* and decodes to the same content */
    size_t u2 = decode(w.buf, w.len, step, DATA_BARE_LF_REJECT, &c2, &d2, &p2);
    if (!d2 || u2 != w.len || p2.bad_line_ending)
        abort();
    size_t want = a.len;
    if (a.len > 0 && !(a.len >= 2 && a.buf[a.len - 2] == '\r' && a.buf[a.len - 1] == '\n'))
        want += 2;
    if (c2.len != want || (a.len && memcmp(c2.buf, a.buf, a.len) != 0))
        abort();

    free(a.buf);
    free(b.buf);
    free(w.buf);
    free(c2.buf);
    return 0;
}
