/* fuzz_gwrefuse.c — a backend's reply against the gateway-refusal patterns (gwrefuse.c): the
 * input is a reply code's pick, the reply text, then up to four patterns, NUL-separated;
 * patterns the config check refuses are left out (config_load refuses them). The answer
 * is NULL or one of the patterns (a built-in one or the operator's, the same pointer), NULL
 * for anything but a 5xx, the same on a second call; a text pattern matched is in the reply,
 * case ignored. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strcasestr */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "gwrefuse.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int codes[] = { 550, 530, 554, 551, 451, 421, 250, 500 };
    char *buf, *parts[5];
    size_t np = 0;
    const char *why;

    if (size < 1)
        return 0;
    int code = codes[data[0] % 8];
    buf = malloc(size);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    /* text, then patterns: NUL-separated pieces of what follows the code's octet */
    char *p = buf, *end = buf + size - 1;
    while (np < 5) {
        parts[np++] = p;
        char *z = memchr(p, '\0', (size_t)(end - p) + 1);
        if (z == NULL || z >= end)
            break;
        p = z + 1;
    }
    char *kept[4];
    struct cfg_strlist extra = { kept, 0 };
    for (size_t i = 1; i < np; i++)
        if (gwrefuse_check_pattern(parts[i], &why) == 0)
            kept[extra.n++] = parts[i];
        else if (why == NULL || why[0] == '\0')
            abort();
    const char *m = gwrefuse_match(code, parts[0], &extra);
    if (m != gwrefuse_match(code, parts[0], &extra))
        abort();
    if (m != NULL) {
        if (code / 100 != 5)
            abort();
        bool known = false;
        for (size_t i = 0; gwrefuse_builtin[i]; i++)
            known |= m == gwrefuse_builtin[i];
        for (size_t i = 0; i < extra.n; i++)
            known |= m == kept[i];
        if (!known)
            abort();
        /* a pattern that starts with a digit and a dot may be a code; any other is a text */
        if (!(m[0] >= '0' && m[0] <= '9' && m[1] == '.') && strcasestr(parts[0], m) == NULL)
            abort();
    }
    free(buf);
    return 0;
}
