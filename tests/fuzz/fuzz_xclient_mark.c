/* fuzz_xclient_mark.c — mxgate's own XCLIENT line rewritten after a backend's 501
 * (xclient_mark_unavailable, proxy/xclient.c). The input: two octets picking the room for the
 * line and for the names, then the 501's text, a newline, and the line. Whatever the input:
 * nothing is written past the room given (buffers of exactly that size), both results end in
 * a NUL; the count is 0..9 and the same on a second call. When it is not 0: the line once
 * more has the same attributes in the same order, each value the same or "[UNAVAILABLE]" in
 * place of a known one (never PROTO's), as many changed as counted, their names in the
 * names, comma-separated; and the line it wrote, given the same 501, changes nothing more
 * (relay.c retries once: a second 501 has nothing left to blame). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xclient.h"

#define LINE_MAX_OUT 3400   /* relay.c's RELAY_XCLIENT_MAX */

static bool
known(const char *v, size_t n)
{
    return n > 0 && !(n == 13 && (memcmp(v, "[UNAVAILABLE]", 13) == 0 || memcmp(v, "[TEMPUNAVAIL]", 13) == 0));
}

/* The next " NAME=value" token of s at *p: its name and value spans; false at the end. */
static bool
token(const char *s, size_t *p, const char **name, size_t *nlen, const char **val, size_t *vlen)
{
    if (s[*p] != ' ')
        return false;
    const char *t = s + *p + 1;
    size_t len = strcspn(t, " ");
    const char *eq = memchr(t, '=', len);

    if (eq == NULL)
        abort();    /* only lines of tokens are rewritten */
    *name = t;
    *nlen = (size_t)(eq - t);
    *val = eq + 1;
    *vlen = len - *nlen - 1;
    *p += 1 + len;
    return true;
}

static void
check(const char *line, const char *text, const char *out, const char *names, int n)
{
    size_t pi = strlen("XCLIENT"), po = pi, no = 0;
    const char *ln, *lv, *on, *ov;
    size_t lnl, lvl, onl, ovl;
    int changed = 0;
    char want[128];

    if (strncmp(out, "XCLIENT", 7) != 0)
        abort();
    if (strchr(line, ' ') != line + 7)
        abort();    /* the line's first word is XCLIENT's length: the tokens start alike */
    while (token(line, &pi, &ln, &lnl, &lv, &lvl)) {
        if (!token(out, &po, &on, &onl, &ov, &ovl) || lnl != onl || memcmp(ln, on, lnl) != 0)
            abort();
        if (lvl == ovl && memcmp(lv, ov, lvl) == 0)
            continue;
        if (ovl != 13 || memcmp(ov, "[UNAVAILABLE]", 13) != 0 || !known(lv, lvl) ||
            (lnl == 5 && memcmp(ln, "PROTO", 5) == 0))
            abort();
        no += (size_t)snprintf(want + no, sizeof(want) - no, "%s%.*s", changed ? "," : "", (int)lnl, ln);
        if (no >= sizeof(want))
            abort();
        changed++;
    }
    if (out[po] != '\0' || changed != n || strcmp(names, want) != 0)
        abort();
    (void)text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* the room: 0..254 octets, or the whole of relay.c's (255) */
    size_t cap = data[0] == 255 ? LINE_MAX_OUT : data[0];
    size_t ncap = data[1] == 255 ? 96 : data[1] % 128;
    char *buf = malloc(size - 1), *out = malloc(cap ? cap : 1), *out2 = malloc(cap ? cap : 1);
    char *names = malloc(ncap ? ncap : 1), *names2 = malloc(ncap ? ncap : 1);
    char *full = malloc(LINE_MAX_OUT), *fnames = malloc(96);

    memcpy(buf, data + 2, size - 2);
    buf[size - 2] = '\0';
    char *line = strchr(buf, '\n');
    const char *text = buf;
    if (line != NULL)
        *line++ = '\0';
    else
        line = buf + strlen(buf);

    int n = xclient_mark_unavailable(line, text, out, cap, names, ncap);
    int n2 = xclient_mark_unavailable(line, text, out2, cap, names2, ncap);
    if (n < 0 || n > 9 || n != n2)
        abort();
    if (cap > 0 && ncap > 0) {
        if (strnlen(out, cap) == cap || strnlen(names, ncap) == ncap || strcmp(out, out2) != 0 ||
            strcmp(names, names2) != 0)
            abort();
    }
    if (n > 0) {
        check(line, text, out, names, n);
        /* with all the room it is the same line; rewritten again, nothing more changes */
        if (xclient_mark_unavailable(line, text, full, LINE_MAX_OUT, fnames, 96) != n || strcmp(full, out) != 0)
            abort();
        if (xclient_mark_unavailable(out, text, out2, cap, names2, ncap) != 0)
            abort();
    }
    free(buf);
    free(out);
    free(out2);
    free(names);
    free(names2);
    free(full);
    free(fnames);
    return 0;
}
