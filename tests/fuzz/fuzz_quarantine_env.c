/* fuzz_quarantine_env.c — the quarantine file's envelope block (quarantine.c), as `quarantine
 * list|show|release` read it from any file in the maildir: spans stay inside the input and
 * inside the block; read in pieces (a prefix without eof, then more) the answer is 0 until
 * the block is complete and then the same as on the whole input; a block the writer
 * (maildir_quarantine_fields) makes from the parsed envelope parses back to it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "hook.h"
#include "maildir.h"
#include "quarantine.h"

static void check_span(struct quarantine_span s, size_t end)
{
    if (s.off > end || s.len > end - s.off)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct quarantine_envelope e, p, b;
    const char *buf = (const char *)data;
    int r = quarantine_envelope_parse(buf, size, true, &e);

    if (r == 0 || (r < 0 && e.err == NULL))
        abort();
    if (r < 0)
        return 0;
    if (e.end > size || e.nrcpts == 0 || e.nrcpts > QUARANTINE_RCPTS_MAX || e.id.len == 0 ||
        e.id.len > QUARANTINE_ID_MAX)
        abort();
    check_span(e.sender, e.end);
    check_span(e.id, e.end);
    check_span(e.reason, e.end);
    for (size_t i = 0; i < e.nrcpts; i++)
        check_span(e.rcpts[i], e.end);
    /* resumable: every prefix short of the block asks for more (or is refused: a prefix may
     * stop where a field is already wrong only if the whole is too) */
    for (size_t cut = 0; cut < e.end; cut += 1 + cut / 4) {
        int pr = quarantine_envelope_parse(buf, cut, false, &p);
        if (pr != 0)
            abort();
    }
    if (quarantine_envelope_parse(buf, e.end, false, &p) != 0)
        abort();   /* without eof the ID field might go on in the next line */
    for (size_t i = 0; i < e.nrcpts; i++)
        for (size_t k = 0; k < e.rcpts[i].len; k++)
            if ((unsigned char)buf[e.rcpts[i].off + k] < 0x20 || buf[e.rcpts[i].off + k] == 0x7f)
                abort();   /* never a control octet: it would reach RCPT TO:<...> */
    /* round trip through the writer when the addresses have no octet it would change */
    struct rcpt *rc = calloc(e.nrcpts, sizeof(*rc));
    char *sender = strndup(buf + e.sender.off, e.sender.len);
    char *id = strndup(buf + e.id.off, e.id.len);
    bool clean = rc && sender && id && strlen(sender) == e.sender.len && strlen(id) == e.id.len;
    for (size_t i = 0; clean && i < e.nrcpts; i++) {
        rc[i].addr = strndup(buf + e.rcpts[i].off, e.rcpts[i].len);
        clean = rc[i].addr && strlen(rc[i].addr) == e.rcpts[i].len;
        for (const char *c = rc[i].addr; clean && *c; c++)
            clean = (unsigned char)*c >= 0x20 && *c != 0x7f && *c != ',' && *c != ' ' && *c != '\t';
    }
    for (const char *c = sender; clean && *c; c++)
        clean = (unsigned char)*c >= 0x20 && *c != 0x7f && *c != ' ' && *c != ',' && *c != '\t';
    for (const char *c = id; clean && *c; c++)
        clean = (unsigned char)*c > 0x20 && *c != 0x7f && *c != ',';
    if (clean) {
        struct strbuf w = { 0 };
        maildir_quarantine_fields(&w, sender, rc, e.nrcpts, id, NULL);
        if (quarantine_envelope_parse(w.v, w.len, true, &b) != 1 || b.nrcpts != e.nrcpts ||
            b.sender.len != e.sender.len || memcmp(w.v + b.sender.off, sender, e.sender.len) != 0 ||
            b.id.len != e.id.len || memcmp(w.v + b.id.off, id, e.id.len) != 0 || b.end != w.len)
            abort();
        for (size_t i = 0; i < e.nrcpts; i++)
            if (b.rcpts[i].len != e.rcpts[i].len || memcmp(w.v + b.rcpts[i].off, rc[i].addr, b.rcpts[i].len) != 0)
                abort();
        strbuf_free(&w);
    }
    for (size_t i = 0; rc && i < e.nrcpts; i++)
        free(rc[i].addr);
    free(rc);
    free(sender);
    free(id);
    return 0;
}
