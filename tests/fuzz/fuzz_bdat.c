/* fuzz_bdat.c — the CHUNKING framing driven like a session would: the input is a client
 * stream of command lines (parsed by smtp_cmd_parse) and chunk octets; MAIL, RCPT and RSET
 * lines between chunks change the envelope bdat_begin is told of (a stream starts as after
 * MAIL and one RCPT), MAIL and RSET start over, and chunks after a LAST are driven too
 * (refused); a BDAT line refused ends the stream as session.c's one 421 ends the session,
 * the parser naming its verb whatever else is wrong. Checks, for the transaction the
 * stream ends in: the same result however the stream is split, consumption within what
 * was offered, content free of NULs and bare line endings (BINARYMIME aside), never more
 * content than accepted chunk octets allow, the relay's re-stuffed DATA form ending only
 * at its terminator, and its BDAT form (bdat_crlf) exactly as long as announced with CRLF
 * lines only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "bdat.h"
#include "dataparse.h"
#include "smtp_cmd.h"

#include "fuzz_sink.h"

struct run { struct sink content; uint64_t accepted; int verdicts[64]; size_t nv; bool complete; };

/* Plays the stream in pieces of `step` octets. */
static void play(const char *in, size_t len, size_t step, bool binary, uint64_t max, struct run *r)
{
    struct bdat b;
    struct smtp_cmd *cmd = malloc(sizeof(*cmd));
    size_t pos = 0;

    bdat_init(&b, max, 2 * max, binary);
    bool have_mail = true;
    size_t nrcpts = 1;

    memset(r, 0, sizeof(*r));
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        if (nl == NULL)
            break;
        size_t ll = (size_t)(nl - (in + pos));
        if (ll > 0 && in[pos + ll - 1] == '\r')
            ll--;
        const char *reply, *line = in + pos;
        int rc = smtp_cmd_parse(line, ll, cmd, &reply);
        pos = (size_t)(nl - in) + 1;
        /* a BDAT line refused ("BDAT" then a space, a TAB or nothing: no size, a bad one,
         * a bad keyword, a NUL, a control, too long): session.c answers one 421 and ends
         * the session there, the chunk's end being unknown. The parser must name the verb
         * whatever else is wrong, or session.c would read the chunk as commands (until
         * session 23 "BDAT<TAB>..." was an unknown verb). */
        if (rc != 0 && ll >= 4 && strncasecmp(line, "BDAT", 4) == 0 &&
            (ll == 4 || line[4] == ' ' || line[4] == '\t')) {
            if (cmd->verb != SMTP_BDAT)
                abort();
            break;
        }
        if (rc != 0)
            continue;
        /* between chunks, as session.c: MAIL starts a transaction (bdat_init), RCPT adds a
         * recipient, RSET ends it (no MAIL: every chunk refused, read and thrown away) */
        if (cmd->verb == SMTP_MAIL || cmd->verb == SMTP_RSET) {
            bdat_init(&b, max, 2 * max, binary);
            have_mail = cmd->verb == SMTP_MAIL;
            nrcpts = 0;
            r->content.len = 0;
            r->accepted = 0;
            r->complete = false;
            continue;
        }
        if (cmd->verb == SMTP_RCPT && have_mail)
            nrcpts++;
        if (cmd->verb != SMTP_BDAT)
            continue;
        enum bdat_verdict v = bdat_begin(&b, cmd->size, cmd->last, have_mail, nrcpts);
        if (r->nv < 64)
            r->verdicts[r->nv++] = v;
        if (v == BDAT_TOO_BIG_CLOSE)
            break;
        if (v == BDAT_ACCEPT)
            r->accepted += cmd->size;
        int done = 0;
        while (!done) {
            size_t n = len - pos < step ? len - pos : step;
            ssize_t k = bdat_feed(&b, in + pos, n, sink_cb, &r->content, &done);
            if (k < 0 || (size_t)k > n || (!done && (size_t)k != n))
                abort();
            pos += (size_t)k;
            if (!done && pos == len)
                break;          /* the stream ends inside the chunk */
        }
        r->complete = b.complete;
    }
    free(cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool binary = data[0] & 1;
    uint64_t max = 16 + (uint64_t)(data[0] >> 1) * 8;
    size_t step = (size_t)data[1] % 17 + 1;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    struct run a, b;
    play(in, len, len ? len : 1, binary, max, &a);
    play(in, len, step, binary, max, &b);
    if (a.content.len != b.content.len || (a.content.len && memcmp(a.content.buf, b.content.buf, a.content.len)) ||
        a.nv != b.nv || memcmp(a.verdicts, b.verdicts, sizeof(int) * a.nv) != 0 || a.complete != b.complete)
        abort();
    /* normalisation at most doubles (LF -> CRLF); binary passes as is */
    if (binary ? a.content.len > a.accepted : a.content.len > 2 * a.accepted)
        abort();
    if (!binary) {
        for (size_t i = 0; i < a.content.len; i++) {
            char c = a.content.buf[i];
            if (c == '\0' || (c == '\r' && (i + 1 >= a.content.len || a.content.buf[i + 1] != '\n')) ||
                (c == '\n' && (i == 0 || a.content.buf[i - 1] != '\r')))
                abort();
        }
        if (a.complete) {
            struct sink w = { 0 };
            struct dotstuff d;
            dotstuff_init(&d);
            if (dotstuff_encode(&d, a.content.buf ? a.content.buf : "", a.content.len, sink_cb, &w) != 0 ||
                dotstuff_finish(&d, sink_cb, &w) != 0)
                abort();
            for (size_t k = 0, start = 0; k + 1 < w.len; k++)
                if (w.buf[k] == '\r' && w.buf[k + 1] == '\n') {
                    if (k - start == 1 && w.buf[start] == '.' && k + 2 != w.len)
                        abort();
                    start = k + 2;
                }
            free(w.buf);
        }
    }
    /* The way out as one BDAT chunk (relay.c): whatever the content (binary or a plugin's),
     * fed in pieces of `step`, the octets written are exactly the length announced, and
     * every line ends in CRLF. */
    {
        struct sink o = { 0 };
        struct bdat_crlf c;
        const char *src = a.content.buf ? a.content.buf : in;
        size_t n = a.content.buf ? a.content.len : len;
        bdat_crlf_init(&c);
        for (size_t off = 0; off < n; off += step)
            if (bdat_crlf_encode(&c, src + off, n - off < step ? n - off : step, sink_cb, &o) != 0)
                abort();
        if (bdat_crlf_finish(&c, sink_cb, &o) != 0 || o.len != bdat_crlf_length(src, n / 2, src + n / 2, n - n / 2))
            abort();
        for (size_t i = 0; i < o.len; i++)
            if ((o.buf[i] == '\r' && (i + 1 >= o.len || o.buf[i + 1] != '\n')) ||
                (o.buf[i] == '\n' && (i == 0 || o.buf[i - 1] != '\r')))
                abort();
        if (o.len && (o.len < 2 || o.buf[o.len - 1] != '\n'))
            abort();
        free(o.buf);
    }
    free(a.content.buf);
    free(b.content.buf);
    return 0;
}
