/* fuzz_proxyproto.c — PROXY v1/v2 parser: bounded answers, prefixes need more, and a
 * parsed v2 PROXY header rebuilt by proxyproto_build_v2 parses to the same addresses (a
 * v4-mapped pair to its IPv4 form). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "proxyproto.h"

static bool
is_v4mapped(const struct sockaddr_storage *ss)
{
    static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return ss->ss_family == AF_INET6 &&
           memcmp(((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr, pfx, sizeof(pfx)) == 0;
}

/* back is the IPv4 form of the v4-mapped address a, port included. */
static bool
same_v4(const struct sockaddr_storage *a, const struct sockaddr_storage *back)
{
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in *b4 = (const struct sockaddr_in *)back;
    return back->ss_family == AF_INET && b4->sin_port == a6->sin6_port &&
           memcmp(&b4->sin_addr, a6->sin6_addr.s6_addr + 12, 4) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any over-read */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct proxy_info info;
    size_t consumed = 0;
    const char *err = NULL;
    enum proxy_result r = proxyproto_parse(buf, size, &info, &consumed, &err);
    switch (r) {
    case PROXY_NEED_MORE:
        if (size >= 536)
            abort();
        break;
    case PROXY_ERROR:
        if (err == NULL)
            abort();
        break;
    case PROXY_DONE: {
        if (consumed == 0 || consumed > size || consumed > 536)
            abort();
        if (info.version == 1 && consumed > 107)
            abort();
        for (size_t n = 0; n < consumed; n++) {
            struct proxy_info tmp;
            size_t c2;
            if (proxyproto_parse(buf, n, &tmp, &c2, &err) != PROXY_NEED_MORE)
                abort();
        }
        if (!info.local) {
            int f = info.src.ss_family;
            if ((f != AF_INET && f != AF_INET6) || info.dst.ss_family != f)
                abort();
            uint8_t out[64];
            size_t n = proxyproto_build_v2((struct sockaddr *)&info.src,
                                           (struct sockaddr *)&info.dst, out, sizeof(out));
            struct proxy_info back;
            size_t c2;
            if (n == 0 || proxyproto_parse(out, n, &back, &c2, &err) != PROXY_DONE || c2 != n)
                abort();
            /* the same addresses; a v4-mapped pair comes back as its IPv4 addresses */
            bool mapped = is_v4mapped(&info.src) && is_v4mapped(&info.dst);
            if (mapped ? !same_v4(&info.src, &back.src) || !same_v4(&info.dst, &back.dst)
                       : memcmp(&back.src, &info.src, sizeof(back.src)) != 0 ||
                         memcmp(&back.dst, &info.dst, sizeof(back.dst)) != 0)
                abort();
        }
        break;
    }
    default:
        abort();
    }
    free(buf);
    return 0;
}
