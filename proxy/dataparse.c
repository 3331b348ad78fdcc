/* dataparse.c — DATA phase decoder (RFC 5321 4.1.1.4, 4.5.2) hardened against SMTP
 * smuggling, and the dot-stuffing encoder for the relay. No I/O. */
#include "dataparse.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Decoder states. "Line start" is strong after a real CRLF (or DATA's own CRLF) and weak
 * after a bare CR or LF: only a strong ".\r\n" ends the data, and a weak "." line is never
 * turned into a lone "." of content. */
enum dataparse_state {
    DP_START = 0,   /* at a line start */
    DP_DOT,         /* "." at line start */
    DP_DOT_CR,      /* ".\r" at line start */
    DP_DOTDOT,      /* ".." at line start */
    DP_DOTDOT_CR,   /* "..\r" at line start */
    DP_MID,         /* inside a line */
    DP_MID_CR,      /* inside a line, after CR */
    DP_DONE,        /* end of data seen */
};

bool dataparse_force_scalar;
bool dataparse_force_sse2;

/* See dataparse.h. The portable form: one octet at a time. */
size_t
dataparse_scan_scalar(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= DATAPARSE_SCAN_MAX)
            return i;
    return n;
}

#if defined(__SSE2__)
/* 16 octets at a time, two blocks per turn: an octet c is <= 13 exactly when
 * min(c, 13) == c (unsigned); SSE2 is part of every x86-64. The tail goes the scalar way. */
static inline size_t
dataparse_scan_sse2(const char *s, size_t n)
{
    const __m128i lim = _mm_set1_epi8(DATAPARSE_SCAN_MAX);
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i cx = _mm_cmpeq_epi8(_mm_min_epu8(x, lim), x);
        __m128i cy = _mm_cmpeq_epi8(_mm_min_epu8(y, lim), y);
        if (_mm_movemask_epi8(_mm_or_si128(cx, cy)) != 0) {
            unsigned m = (unsigned)_mm_movemask_epi8(cx) | (unsigned)_mm_movemask_epi8(cy) << 16;
            return i + (size_t)__builtin_ctz(m);
        }
    }
    if (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, lim), x));
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
    return i + dataparse_scan_scalar(s + i, n - i);
}
#define DATAPARSE_SCAN_FAST dataparse_scan_sse2
#else
#define DATAPARSE_SCAN_FAST dataparse_scan_scalar
#endif

#if defined(__SSE2__)
/* Octets <= DATAPARSE_SCAN_MAX in one 16-octet piece, as bits. */
static inline unsigned
dataparse_ctl16(__m128i x, __m128i lim)
{
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, lim), x));
}

/* The fast path across lines: from in[k], a line start that is not ".", CR, LF or NUL, the
 * end of the longest run of whole lines that the per-line loop of dataparse_feed would take
 * as they stand (each line ends in CRLF and holds no other CR, LF or NUL; the next one does
 * not start with "."; an empty line is one). 64 octets a turn: the octets <= 13 as bits
 * (MASK64(p), one per octet of in[p..p+64)), then a look at each such octet only: a CR
 * followed by LF ends a line (both bits go; a LF that is the next block's first octet is
 * known by its place, right before `start`), TAB and the other controls but NUL are
 * content, anything else stops the run where its line starts. A line that starts with LF
 * or NUL stops at that octet's bit, so only "." needs a look at each line start. No line
 * is scanned twice. The blocks end 2 octets short of len (the CR's LF and the next line's
 * first octet are always in[] to read); the per-line loop does the rest. The body of
 * dataparse_lines_sse2 and dataparse_lines_avx2, which differ only in how the bits are
 * made. */
#define DATAPARSE_LINES_BODY(MASK64)                                                            \
    const char *start = in + k;     /* where the run ends so far: a line start */             \
                                                                                                \
    if (len < 66)                                                                               \
        return k;                                                                               \
    for (const char *bp = start, *last = in + len - 66; bp <= last; bp += 64) {                 \
        uint64_t m = MASK64(bp);                                                                \
        while (m != 0) {                                                                        \
            const char *p = bp + (unsigned)__builtin_ctzll(m);                                  \
            m &= m - 1;                                                                         \
            if (*p != '\r') {                                                                   \
                if (p + 1 == start)                                                             \
                    continue;       /* the LF of a CRLF that straddled the blocks */            \
                if (*p == '\n' || *p == '\0')                                                   \
                    goto out;       /* bare LF, NUL */                                          \
                continue;           /* TAB and the other controls are content */                \
            }                                                                                   \
            if (p[1] != '\n')                                                                   \
                goto out;           /* bare CR */                                               \
            m &= m - 1;             /* its LF (0 when the LF is in the next block) */           \
            start = p + 2;                                                                      \
            if (*start == '.')                                                                  \
                goto out;           /* the next line is not one for the fast path */            \
        }                                                                                       \
    }                                                                                           \
out:                                                                                            \
    return (size_t)(start - in)

/* The octets <= 13 of s[0..64) as bits, 16 at a time. */
static inline uint64_t
dataparse_ctl64_sse2(const char *s)
{
    const __m128i lim = _mm_set1_epi8(DATAPARSE_SCAN_MAX);
    const __m128i *v = (const __m128i *)(const void *)s;
    __m128i x0 = _mm_loadu_si128(v), x1 = _mm_loadu_si128(v + 1);
    __m128i x2 = _mm_loadu_si128(v + 2), x3 = _mm_loadu_si128(v + 3);
    return (uint64_t)dataparse_ctl16(x0, lim) | (uint64_t)dataparse_ctl16(x1, lim) << 16 |
           (uint64_t)dataparse_ctl16(x2, lim) << 32 | (uint64_t)dataparse_ctl16(x3, lim) << 48;
}

static size_t
dataparse_lines_sse2(const char *in, size_t k, size_t len)
{
    DATAPARSE_LINES_BODY(dataparse_ctl64_sse2);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define DATAPARSE_HAVE_AVX2 1
/* The same bits 32 at a time (AVX2: most x86-64 since 2013; used only where the CPU says
 * it has it and BMI1 too, dataparse_lines: every CPU with AVX2 has BMI1, whose tzcnt and
 * blsr the per-line steps use). */
__attribute__((target("avx2,bmi"))) static inline uint64_t
dataparse_ctl64_avx2(const char *s)
{
    const __m256i lim = _mm256_set1_epi8(DATAPARSE_SCAN_MAX);
    const __m256i *v = (const __m256i *)(const void *)s;
    __m256i x0 = _mm256_loadu_si256(v), x1 = _mm256_loadu_si256(v + 1);
    uint32_t m0 = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(x0, lim), x0));
    uint32_t m1 = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(x1, lim), x1));
    return (uint64_t)m0 | (uint64_t)m1 << 32;
}

__attribute__((target("avx2,bmi"))) static size_t
dataparse_lines_avx2(const char *in, size_t k, size_t len)
{
    DATAPARSE_LINES_BODY(dataparse_ctl64_avx2);
}
#endif

/* The block path of dataparse_feed: AVX2 where the CPU has it (and dataparse_force_sse2 is
 * not set), SSE2 otherwise; the two give the same bits. */
static inline size_t
dataparse_lines(const char *in, size_t k, size_t len)
{
#if defined(DATAPARSE_HAVE_AVX2)
    static int avx2 = -1;
    if (avx2 < 0)
        avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") ? 1 : 0;
    if (avx2 && !dataparse_force_sse2)
        return dataparse_lines_avx2(in, k, len);
#endif
    return dataparse_lines_sse2(in, k, len);
}
#endif

/* See dataparse.h. */
size_t
dataparse_scan(const char *s, size_t n)
{
    return DATAPARSE_SCAN_FAST(s, n);
}

/* Prepares p for a new message; the first line starts strong (DATA's CRLF precedes it). */
void
dataparse_init(struct dataparse *p, enum data_bare_lf policy)
{
    memset(p, 0, sizeof(*p));
    p->state = DP_START;
    p->policy = policy;
}

/* Passes content octets (never CR or LF) to out and keeps the counters. */
static int
dataparse_emit(struct dataparse *p, const char *data, size_t n, dataparse_out_fn out, void *arg)
{
    if (n == 0)
        return 0;
    p->bytes += n;
    return out(arg, data, n);
}

/* Ends the current content line with CRLF. */
static int
dataparse_emit_eol(struct dataparse *p, dataparse_out_fn out, void *arg)
{
    p->bytes += 2;
    return out(arg, "\r\n", 2);
}

/* A line ended by a bare CR or LF: both policies write CRLF (the content stays CRLF-clean
 * and safe to re-stuff); REJECT only differs in that the session refuses the message. */
static int
dataparse_bare_eol(struct dataparse *p, dataparse_out_fn out, void *arg)
{
    p->bad_line_ending = true;
    p->restuff = true;
    p->weak = true;
    p->state = DP_START;
    return dataparse_emit_eol(p, out, arg);
}

/* A NUL octet: never passed on (RFC 5321 2.3.8 allows none in text; a backend may end a
 * line or the string there), only noted; the session rejects or accepts per limits.nul. */
static void
dataparse_nul(struct dataparse *p)
{
    p->nul_seen = true;
    p->restuff = true;          /* the next octet may be a "." starting the line */
    p->nuls++;
}

/* A dot line ("." or "..") that must not become a lone "." of content: written as "..". */
static int
dataparse_emit_dotdot(struct dataparse *p, dataparse_out_fn out, void *arg)
{
    p->restuff = true;
    return dataparse_emit(p, "..", 2, out, arg);
}

/* The index of the first CR, LF or NUL in in[j..len), or len (a TAB is content). */
static inline size_t
dataparse_line_end(const char *in, size_t j, size_t len, bool scalar)
{
    for (;;) {
        j += scalar ? dataparse_scan_scalar(in + j, len - j) : DATAPARSE_SCAN_FAST(in + j, len - j);
        if (j >= len || in[j] == '\r' || in[j] == '\n' || in[j] == '\0')
            return j;
        j++;
    }
}

static inline bool
dataparse_is_plain_octet(char c)
{
    return c != '.' && c != '\r' && c != '\n' && c != '\0';
}

/* dataparse_feed's fast path: from the line start i (in[i] plain), the end of the run of
 * whole CRLF lines, each with no other CR, LF or NUL and none starting with "." or CR;
 * i when the first line is not one. */
static size_t
dataparse_clean_lines(const char *in, size_t i, size_t len, bool scalar)
{
    size_t k = i;
#if defined(__SSE2__)
    if (!scalar)    /* whole lines across blocks first; the loop below takes the rest */
        k = dataparse_lines(in, i, len);
#endif
    while (k < len && dataparse_is_plain_octet(in[k])) {
        size_t j = dataparse_line_end(in, k, len, scalar);
        if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n')
            break;
        k = j + 2;
    }
    return k;
}

/* See dataparse.h. */
bool
dataparse_takes_clean(const struct dataparse *p)
{
    return p->state == DP_START || p->state == DP_MID;
}

/* See dataparse.h. What dataparse_feed would pass to out unchanged, and no further: the
 * rest of the current line when it ends in CRLF, whole clean lines (the fast path's run),
 * then the start of a line up to its first CR, LF or NUL (DP_MID, as the state machine's
 * DP_START -> DP_MID step leaves it). The same counters and states as dataparse_feed. */
size_t
dataparse_take_clean(struct dataparse *p, const char *in, size_t len)
{
    bool scalar = dataparse_force_scalar;
    size_t k = 0;

    if (p->state == DP_MID && len > 0) {
        size_t j = dataparse_line_end(in, 0, len, scalar);
        if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n') {
            p->bytes += j;      /* the line goes on: its content up to there */
            return j;
        }
        k = j + 2;              /* DP_MID_CR's LF: the line ends strong */
        p->weak = false;
        p->state = DP_START;
    }
    if (p->state == DP_START && k < len && dataparse_is_plain_octet(in[k])) {
        size_t i = k;
        k = dataparse_clean_lines(in, i, len, scalar);
        if (k > i)
            p->weak = false;
        if (k < len && dataparse_is_plain_octet(in[k])) {
            /* a line that does not end (cleanly) here: its plain start */
            k = dataparse_line_end(in, k, len, scalar);
            p->state = DP_MID;
        }
    }
    p->bytes += k;
    return k;
}

/* See dataparse.h. Works byte by byte through the state machine, but copies runs of plain
 * line content straight from `in`. */
ssize_t
dataparse_feed(struct dataparse *p, const char *in, size_t len, dataparse_out_fn out,
               void *arg, int *done)
{
    size_t i = 0;
    bool scalar = dataparse_force_scalar;

    *done = 0;
    if (p->state == DP_DONE) {
        *done = 1;
        return 0;
    }
    while (i < len) {
        char c = in[i];
        if (p->state == DP_START && c != '.' && c != '\r' && c != '\n' && c != '\0') {
            /* Fast path: a run of whole CRLF lines, each with no other CR, LF or NUL and
             * none starting with "." or CR, is content as it stands: one out() call, one
             * scan per line for its first control octet (dataparse_scan). Anything else
             * goes the slow way below. */
            size_t k = dataparse_clean_lines(in, i, len, scalar);
            if (k > i) {
                p->bytes += k - i;
                p->weak = false;
                if (out(arg, in + i, k - i) != 0)
                    return -1;
                i = k;
                continue;
            }
        }
        switch (p->state) {
        case DP_START:
            if (c == '.') {
                p->state = DP_DOT;
                i++;
            } else if (c == '\0') {
                /* dropped, and the line no longer starts here: "\0.\r\n" is content */
                dataparse_nul(p);
                i++;
                p->state = DP_MID;
            } else if (c == '\r') {
                p->state = DP_MID_CR;
                i++;
            } else if (c == '\n') {
                i++;
                if (dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            } else {
                p->state = DP_MID;
            }
            break;
        case DP_DOT:
            if (c == '.') {
                p->state = DP_DOTDOT;
                i++;
            } else if (c == '\0') {
                /* the stuffing dot is deleted as before any other octet; the NUL too */
                dataparse_nul(p);
                i++;
                p->state = DP_MID;
            } else if (c == '\r') {
                p->state = DP_DOT_CR;
                i++;
            } else if (c == '\n') {
                /* ".\n": not an end, and not a lone "." either */
                i++;
                if (dataparse_emit_dotdot(p, out, arg) != 0 || dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            } else {
                /* RFC 5321 4.5.2: the leading period is deleted */
                p->state = DP_MID;
            }
            break;
        case DP_DOT_CR:
            if (c == '\n') {
                i++;
                if (!p->weak) {
                    /* <CRLF>.<CRLF>: the one true end */
                    p->state = DP_DONE;
                    *done = 1;
                    return (ssize_t)i;
                }
                /* a weak ".\r\n" (after a bare CR/LF) is content, never an end */
                if (dataparse_emit_dotdot(p, out, arg) != 0 || dataparse_emit_eol(p, out, arg) != 0)
                    return -1;
                p->weak = false;
                p->state = DP_START;
            } else {
                /* ".\r" + something: a bare CR ends a "." line; c is looked at again */
                if (dataparse_emit_dotdot(p, out, arg) != 0 || dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            }
            break;
        case DP_DOTDOT:
            if (c == '\r') {
                p->state = DP_DOTDOT_CR;
                i++;
            } else if (c == '\n') {
                i++;
                if (dataparse_emit_dotdot(p, out, arg) != 0 || dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            } else {
                /* "..x" -> ".x" */
                p->restuff = true;
                if (dataparse_emit(p, ".", 1, out, arg) != 0)
                    return -1;
                p->state = DP_MID;
            }
            break;
        case DP_DOTDOT_CR:
            if (c == '\n') {
                i++;
                /* "..\r\n" at a strong start is a line holding one "." — legitimate */
                p->restuff = true;
                int rc = p->weak ? dataparse_emit_dotdot(p, out, arg)
                                 : dataparse_emit(p, ".", 1, out, arg);
                if (rc != 0 || dataparse_emit_eol(p, out, arg) != 0)
                    return -1;
                p->weak = false;
                p->state = DP_START;
            } else {
                if (dataparse_emit_dotdot(p, out, arg) != 0 || dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            }
            break;
        case DP_MID: {
            size_t j = i;
            while (j < len && in[j] != '\r' && in[j] != '\n' && in[j] != '\0')
                j++;
            if (dataparse_emit(p, in + i, j - i, out, arg) != 0)
                return -1;
            i = j;
            if (i < len) {
                if (in[i] == '\0') {
                    dataparse_nul(p);
                    i++;
                } else if (in[i] == '\r') {
                    p->state = DP_MID_CR;
                    i++;
                } else {
                    i++;
                    if (dataparse_bare_eol(p, out, arg) != 0)
                        return -1;
                }
            }
            break;
        }
        case DP_MID_CR:
            if (c == '\n') {
                i++;
                if (dataparse_emit_eol(p, out, arg) != 0)
                    return -1;
                p->weak = false;
                p->state = DP_START;
            } else {
                /* bare CR; c is looked at again at the (weak) line start */
                if (dataparse_bare_eol(p, out, arg) != 0)
                    return -1;
            }
            break;
        case DP_DONE:
        default:
            /* Unreachable: the loop runs in the seven states above only. p->state is
             * DP_START after dataparse_init; every assignment in this file is one of the
             * seven but DP_DONE's, which is followed by its return (DP_DOT_CR), and the
             * entry test returns on DP_DONE before the loop. dataparse_take_clean sets
             * DP_START and DP_MID only, and no other file writes the field. (This arm once
             * ended the data, as if <CRLF>.<CRLF> had been seen: a broken state would have
             * accepted a cut message; now it stops the process.) */
            abort();
        }
    }
    return (ssize_t)i;
}

/* Prepares d for a new message: the content starts at a line start. */
void
dotstuff_init(struct dotstuff *d)
{
    d->at_line_start = true;
    d->last_cr = false;
}

/* See dataparse.h. Any CR or LF not part of a CRLF pair is written as CRLF, so a backend
 * can never see a line ending we did not stuff after. */
int
dotstuff_encode(struct dotstuff *d, const char *in, size_t len, dataparse_out_fn out, void *arg)
{
    size_t i = 0;
    while (i < len) {
        if (!d->last_cr && d->at_line_start && in[i] != '.') {
            /* Fast path: a run of whole, well-formed CRLF lines none of which starts with
             * "." goes out in one piece: the block path over 64 octets a turn, then one
             * scan per line for its first octet <= 13 (dataparse_scan; TAB and the other
             * controls are content) instead of a byte loop. A lone CR or LF goes the slow
             * way below. */
            bool scalar = dataparse_force_scalar;
            size_t k = i;
#if defined(__SSE2__)
            /* whole lines across blocks first (the decoder's block path: its lines are a
             * subset of these, it stops at a NUL too); the loop below takes the rest */
            if (!scalar)
                k = dataparse_lines(in, i, len);
#endif
            while (k < len && in[k] != '.') {
                size_t j = k;
                for (;;) {      /* the line's first CR or LF */
                    j += scalar ? dataparse_scan_scalar(in + j, len - j) : DATAPARSE_SCAN_FAST(in + j, len - j);
                    if (j >= len || in[j] == '\r' || in[j] == '\n')
                        break;
                    j++;
                }
                if (j + 1 >= len || in[j] != '\r' || in[j + 1] != '\n')
                    break;
                k = j + 2;
            }
            if (k > i) {
                if (out(arg, in + i, k - i) != 0)
                    return -1;
                i = k;
                continue;
            }
        }
        if (d->last_cr) {
            d->last_cr = false;
            d->at_line_start = true;
            if (out(arg, "\r\n", 2) != 0)
                return -1;
            if (in[i] == '\n') {
                i++;
                continue;
            }
        }
        if (d->at_line_start && in[i] == '.') {
            /* RFC 5321 4.5.2: a line starting with "." gets one more */
            if (out(arg, ".", 1) != 0)
                return -1;
        }
        size_t j = i;
        while (j < len && in[j] != '\r' && in[j] != '\n')
            j++;
        if (j > i) {
            if (out(arg, in + i, j - i) != 0)
                return -1;
            d->at_line_start = false;
        }
        i = j;
        if (i < len) {
            if (in[i] == '\r') {
                d->last_cr = true;
            } else {
                if (out(arg, "\r\n", 2) != 0)
                    return -1;
                d->at_line_start = true;
            }
            i++;
        }
    }
    return 0;
}

/* See dataparse.h. */
int
dotstuff_finish(struct dotstuff *d, dataparse_out_fn out, void *arg)
{
    if (d->last_cr || !d->at_line_start) {
        if (out(arg, "\r\n", 2) != 0)
            return -1;
    }
    d->last_cr = false;
    d->at_line_start = true;
    return out(arg, ".\r\n", 3);
}
