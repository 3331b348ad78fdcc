/* fuzz_quarantine_name.c — a held file's name as a lookup by ID reads it (quarantine_name_id,
 * proxy/quarantine.c) and the host part mxgate writes into it (maildir_host_part,
 * proxy/maildir.c). Oracles:
 *  - the input as a name (to its first NUL): an ID is found only as the last ",QID=" of the
 *    base name, up to ',' ':' or the end, 1..QUARANTINE_ID_MAX letters and digits (a
 *    reference scan from the end);
 *  - the input as "HOST\nID\nSUFFIX": the host part is at most MAILDIR_HOST_MAX octets, has no
 *    '/', ':' or ',', and is the host escaped (a reference), or its longest start of whole
 *    escapes within 55 octets, '-' and 8 hex digits when that is longer; a name made of it as
 *    maildir_make_name and maildir_deliver_tagged make one ("SEC.M..P..Q..HOST,QID=ID" and
 *    a reader's ":2,FLAGS") gives back exactly the ID (the letters and digits of the input's,
 *    cut to QUARANTINE_ID_MAX), and without the field no ID at all. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir.h"
#include "quarantine.h"

/* The reference: the last ",QID=" of the base name, scanned from the end. */
static bool ref_name_id(const char *name, char *id)
{
    const char *base = name, *f = NULL;
    size_t n = strlen(name), k = sizeof(MAILDIR_ID_FIELD) - 1;

    for (size_t i = n; i > 0; i--)
        if (name[i - 1] == '/') {
            base = name + i;
            break;
        }
    for (size_t i = strlen(base); i >= k && f == NULL; i--)
        if (memcmp(base + i - k, MAILDIR_ID_FIELD, k) == 0)
            f = base + i;
    if (f == NULL)
        return false;
    size_t len = 0;
    while (f[len] && f[len] != ',' && f[len] != ':')
        len++;
    if (len == 0 || len > QUARANTINE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = f[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
        id[i] = c;
    }
    id[len] = '\0';
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1), got[QUARANTINE_ID_MAX + 1], want[QUARANTINE_ID_MAX + 1];

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    /* the input as a name */
    bool g = quarantine_name_id(in, got), w = ref_name_id(in, want);
    if (g != w || (g && strcmp(got, want) != 0))
        abort();

    /* the input as HOST \n ID \n SUFFIX: a name as mxgate writes one */
    char *host = in, *idin = strchr(in, '\n'), *suffix = NULL;
    if (idin) {
        *idin++ = '\0';
        suffix = strchr(idin, '\n');
        if (suffix)
            *suffix++ = '\0';
    }
    char part[MAILDIR_HOST_MAX + 1];
    size_t n = maildir_host_part(host, part);
    if (n != strlen(part) || n > MAILDIR_HOST_MAX || n == 0 || strpbrk(part, "/:,") != NULL)
        abort();
    /* the reference escaping, and the largest whole-escape prefix of at most 55 octets */
    const char *h = *host ? host : "localhost";
    size_t hn = strnlen(h, 1024), full = 0, cut = 0;
    char *ref = malloc(4 * hn + 1);
    if (ref == NULL)
        abort();
    for (size_t i = 0; i < hn; i++) {
        if (h[i] == '/' || h[i] == ':' || h[i] == ',')
            full += (size_t)sprintf(ref + full, "\\%03o", (unsigned)(unsigned char)h[i]);
        else
            ref[full++] = h[i];
        if (full <= MAILDIR_HOST_MAX - 9)
            cut = full;
    }
    ref[full] = '\0';
    if (full <= MAILDIR_HOST_MAX) {
        if (n != full || strcmp(part, ref) != 0)
            abort();   /* whole: exactly the escaped host */
    } else if (n != cut + 9 || strncmp(part, ref, cut) != 0 || part[cut] != '-' ||
        strspn(part + cut + 1, "0123456789abcdef") != 8) {
        abort();   /* cut: its longest start of whole escapes, '-' and 8 hex digits */
    }
    free(ref);
    char id[QUARANTINE_ID_MAX + 1];
    size_t k = 0;
    for (const char *p = idin ? idin : ""; *p && k < QUARANTINE_ID_MAX; p++)
        if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
            id[k++] = *p;
    id[k] = '\0';
    /* a reader's flags: the suffix's octets that are not '/' (a name has none) nor NUL */
    char flags[40];
    size_t f = 0;
    for (const char *p = suffix ? suffix : ""; *p && f < sizeof flags - 1; p++)
        if (*p != '/')
            flags[f++] = *p;
    flags[f] = '\0';
    char name[512];
    snprintf(name, sizeof name, "cur/1796611975.M400412P9183Q1.%s%s%s%s%s", part, k ? MAILDIR_ID_FIELD : "", id,
        suffix ? ":2," : "", suffix ? flags : "");
    bool has = quarantine_name_id(name, got);
    /* ":2," and flags that make no field of their own (no ',' among them, nor "QID=" first) */
    if (suffix && strchr(flags, ',') == NULL && strncmp(flags, "QID=", 4) != 0) {
        /* flags without a field of their own: exactly the ID written, or none */
        if (has != (k > 0) || (has && strcmp(got, id) != 0))
            abort();
    } else if (!suffix && (has != (k > 0) || (has && strcmp(got, id) != 0)))
        abort();
    free(in);
    return 0;
}
