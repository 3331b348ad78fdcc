/* fuzz_msgpath.c — differential: one message, every way through mxgate, the same octets at
 * the backend. The input is a prefix (what mxgate puts before the body: its Received field,
 * header edits) and a message M of any octets. M comes in as a client would send it:
 *   DATA: dot-stuffed (dotstuff_encode, as a client's encoder would) and read back by
 *         dataparse_feed in pieces, under both bare-LF policies;
 *   BDAT: in chunks of sizes drawn from the input (zero-sized ones too), each through
 *         bdat_begin and bdat_feed in pieces (BODY=BINARYMIME too).
 * Each content then goes out as relay.c sends it (relay_pump): by DATA (the prefix stuffed,
 * then the body stuffed, or as it is when the data parser said it is its own wire form and
 * the prefix ended a line), read by a strict RFC 5321 4.5.2 reader written here; and as one
 * BDAT LAST chunk (bdat_crlf), exactly as long as bdat_crlf_length announced.
 * Checks: the two ways in give the same content (DATA's with its final CRLF) and both are
 * M normalised by the reference below (every CR or LF not in a CRLF pair becomes CRLF, then
 * NULs go); the DATA wire ends only at its terminator; all ways out give the same message,
 * which is the reference normalisation of prefix + content (NULs kept: the way out passes
 * them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "bdat.h"
#include "dataparse.h"

#include "fuzz_sink.h"

static bool same(const struct sink *a, const struct sink *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

/* The reference normalisation, written plainly: a CR followed by LF is a line end, any
 * other CR or LF is one too (CRLF); drop_nul drops NUL octets afterwards (the way in),
 * final adds the CRLF a last line without one gets (the way out, DATA's content). */
static void ref_norm(const char *in, size_t len, bool drop_nul, bool final, struct sink *o)
{
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            sink_cb(o, "\r\n", 2);
            if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
                i++;
        } else if (!(drop_nul && in[i] == '\0')) {
            sink_cb(o, in + i, 1);
        }
    }
    if (final && o->len && !(o->len >= 2 && o->buf[o->len - 2] == '\r' && o->buf[o->len - 1] == '\n'))
        sink_cb(o, "\r\n", 2);
}

/* A strict backend (RFC 5321 4.5.2): CRLF lines only, "." alone ends the data and must be
 * the last line, a leading "." of any other line is removed. Aborts on any other wire. */
static void ref_unstuff(const struct sink *w, struct sink *o)
{
    size_t start = 0;
    for (size_t i = 0; i < w->len; i++) {
        if (w->buf[i] == '\n' || (w->buf[i] == '\r' && (i + 1 >= w->len || w->buf[i + 1] != '\n')))
            abort();                            /* a bare line end on the wire */
        if (w->buf[i] != '\r')
            continue;
        size_t ll = i - start;
        if (ll == 1 && w->buf[start] == '.') {
            if (i + 2 != w->len)
                abort();                        /* the data ended early */
            return;
        }
        const char *line = w->buf + start;
        if (ll > 0 && line[0] == '.') {
            line++;
            ll--;
        }
        sink_cb(o, line, ll);
        sink_cb(o, "\r\n", 2);
        start = i + 2;
        i++;
    }
    abort();                                    /* no terminator */
}

/* The way out by DATA as relay_pump writes it (relay.c): the prefix through the stuffer;
 * the body as it is when body_wire and the prefix ended a line, else stuffed too. */
static void out_data(const char *pre, size_t plen, const struct sink *body, bool body_wire, size_t step,
                     struct sink *w)
{
    struct dotstuff ds;
    dotstuff_init(&ds);
    for (size_t off = 0; off < plen; off += step)
        if (dotstuff_encode(&ds, pre + off, plen - off < step ? plen - off : step, sink_cb, w) != 0)
            abort();
    if (body_wire && !(ds.at_line_start && !ds.last_cr))
        body_wire = false;
    for (size_t off = 0; off < body->len; off += step) {
        size_t n = body->len - off < step ? body->len - off : step;
        if (body_wire) {
            sink_cb(w, body->buf + off, n);
            ds.at_line_start = body->buf[off + n - 1] == '\n';
            ds.last_cr = false;
        } else if (dotstuff_encode(&ds, body->buf + off, n, sink_cb, w) != 0) {
            abort();
        }
    }
    if (dotstuff_finish(&ds, sink_cb, w) != 0)
        abort();
}

/* The way out as one BDAT LAST chunk: what is written is exactly the length announced. */
static void out_bdat(const char *pre, size_t plen, const struct sink *body, size_t step, struct sink *o)
{
    struct bdat_crlf c;
    bdat_crlf_init(&c);
    for (size_t off = 0; off < plen; off += step)
        if (bdat_crlf_encode(&c, pre + off, plen - off < step ? plen - off : step, sink_cb, o) != 0)
            abort();
    for (size_t off = 0; off < body->len; off += step)
        if (bdat_crlf_encode(&c, body->buf + off, body->len - off < step ? body->len - off : step,
                             sink_cb, o) != 0)
            abort();
    if (bdat_crlf_finish(&c, sink_cb, o) != 0 ||
        o->len != bdat_crlf_length(pre, plen, body->buf ? body->buf : "", body->len))
        abort();
}

/* Every way out of one content; all must give want. */
static void check_out(const char *pre, size_t plen, const struct sink *body, bool body_wire, size_t step,
                      const struct sink *want)
{
    struct sink w = { 0 }, r = { 0 }, b = { 0 };
    out_data(pre, plen, body, body_wire, step, &w);
    ref_unstuff(&w, &r);
    out_bdat(pre, plen, body, step, &b);
    if (!same(&r, want) || !same(&b, want))
        abort();
    if (body_wire) {                            /* and stuffed anyway: the same */
        struct sink w2 = { 0 }, r2 = { 0 };
        out_data(pre, plen, body, false, step, &w2);
        ref_unstuff(&w2, &r2);
        if (!same(&r2, want))
            abort();
        free(w2.buf);
        free(r2.buf);
    }
    free(w.buf);
    free(r.buf);
    free(b.buf);
}

/* DATA in: the client's wire read in pieces of step; must end exactly at its end. */
static void in_data(const struct sink *wire, size_t step, enum data_bare_lf pol, struct sink *c,
                    struct dataparse *p)
{
    int done = 0;
    size_t pos = 0;
    dataparse_init(p, pol);
    while (pos < wire->len && !done) {
        size_t n = wire->len - pos < step ? wire->len - pos : step;
        ssize_t k = dataparse_feed(p, wire->buf + pos, n, sink_cb, c, &done);
        if (k < 0 || (size_t)k > n || (!done && (size_t)k != n))
            abort();
        pos += (size_t)k;
    }
    if (!done || pos != wire->len || p->bad_line_ending)
        abort();
}

/* BDAT in: M in chunks whose sizes come from seed, each fed in pieces of step. */
static void in_bdat(const char *m, size_t len, uint32_t seed, size_t step, bool binary, struct sink *c)
{
    struct bdat b;
    size_t pos = 0;
    bdat_init(&b, UINT64_MAX / 4, 0, binary);
    for (;;) {
        seed = seed * 1103515245u + 12345u;
        size_t want = (seed >> 16) % 4 == 0 ? 0 : (seed >> 8) % (2 * step + 8);
        if (want > len - pos)
            want = len - pos;
        bool last = pos + want == len && (seed >> 20) % 2 == 0;
        if (bdat_begin(&b, want, last, true, 1) != BDAT_ACCEPT)
            abort();
        int done = 0;
        size_t end = pos + want;
        while (!done) {
            size_t n = end - pos < step ? end - pos : step;
            ssize_t k = bdat_feed(&b, m + pos, n, sink_cb, c, &done);
            if (k < 0 || (size_t)k != n)
                abort();
            pos += (size_t)k;
        }
        if (last)
            break;
    }
    if (!b.complete || pos != len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t step = (size_t)data[0] % 23 + 1;
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[3] << 8;
    const char *in = (const char *)data + 4;
    size_t len = size - 4;
    size_t plen = len ? (size_t)data[2] % (len < 96 ? len + 1 : 97) : 0;
    const char *pre = in, *m = in + plen;
    size_t mlen = len - plen;

    /* the reference content: M normalised, NULs gone */
    struct sink ref = { 0 };
    ref_norm(m, mlen, true, false, &ref);

    /* DATA in, under both policies (the wire is clean: the same content, no finding) */
    struct sink wire = { 0 }, c1 = { 0 }, c1n = { 0 };
    struct dotstuff ds;
    struct dataparse p1, p1n;
    dotstuff_init(&ds);
    if (dotstuff_encode(&ds, m, mlen, sink_cb, &wire) != 0 || dotstuff_finish(&ds, sink_cb, &wire) != 0)
        abort();
    in_data(&wire, step, DATA_BARE_LF_REJECT, &c1, &p1);
    in_data(&wire, step, DATA_BARE_LF_NORMALIZE, &c1n, &p1n);
    if (!same(&c1, &c1n) || p1.restuff != p1n.restuff)
        abort();

    /* BDAT in */
    struct sink c2 = { 0 }, c2b = { 0 };
    in_bdat(m, mlen, seed, step, false, &c2);
    in_bdat(m, mlen, seed, step, true, &c2b);
    if (!same(&c2, &ref) || c2b.len != mlen || (mlen && memcmp(c2b.buf, m, mlen) != 0))
        abort();
    /* DATA's content is BDAT's with the CRLF that ends the data (when the last line had none) */
    {
        struct sink c2f = { 0 };
        ref_norm(c2.buf ? c2.buf : "", c2.len, false, true, &c2f);
        if (!same(&c1, &c2f)) {
            /* DATA's wire always ends its last line; BDAT's content ends where M does. The
             * one legitimate difference: M ends with a line of NULs only, which BDAT drops
             * whole and DATA leaves as an empty line. */
            size_t k = mlen;
            while (k > 0 && m[k - 1] == '\0')
                k--;
            bool nul_tail = k < mlen && (k == 0 || m[k - 1] == '\n' || m[k - 1] == '\r');
            struct sink e = { 0 };
            sink_cb(&e, c2f.buf ? c2f.buf : "", c2f.len);
            sink_cb(&e, "\r\n", 2);
            if (!nul_tail || !same(&c1, &e))
                abort();
            free(e.buf);
        }
        free(c2f.buf);
    }

    /* every way out of each content gives the prefix and that content, normalised */
    struct sink pc = { 0 }, want = { 0 };
    const struct sink *contents[3] = { &c1, &c2, &c2b };
    for (int i = 0; i < 3; i++) {
        pc.len = 0;
        want.len = 0;
        sink_cb(&pc, pre, plen);
        sink_cb(&pc, contents[i]->buf ? contents[i]->buf : "", contents[i]->len);
        ref_norm(pc.buf, pc.len, false, true, &want);
        check_out(pre, plen, contents[i], i == 0 && !p1.restuff, step, &want);
    }

    free(ref.buf);
    free(wire.buf);
    free(c1.buf);
    free(c1n.buf);
    free(c2.buf);
    free(c2b.buf);
    free(pc.buf);
    free(want.buf);
    return 0;
}
