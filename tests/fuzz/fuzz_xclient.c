/* fuzz_xclient.c — XCLIENT's attribute list (proxy/xclient.c): any argument text parses or
 * fails with a 501 5.5.4 reply; what parses holds no control octet or NUL in its strings,
 * NUL-terminated in their fields, a NAME that is a host name, ports within 0..65535, an
 * address of family IPv4 or IPv6 (a v4-mapped one as IPv4); and parsing is deterministic. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xclient.h"

static void
clean(const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);

    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            abort();
}

static void
family(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return;
    if (ss->ss_family != AF_INET6 ||
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arg = malloc(size + 1), reply[256], reply2[256];
    struct xclient_attrs *x = malloc(sizeof(*x)), *y = malloc(sizeof(*y));

    memcpy(arg, data, size);
    arg[size] = '\0';   /* the session hands a NUL-terminated line (no NUL inside) */
    reply[0] = reply2[0] = '\0';
    int rc = xclient_parse(arg, x, reply, sizeof(reply));
    int rc2 = xclient_parse(arg, y, reply2, sizeof(reply2));
    if (rc != rc2 || strcmp(reply, reply2) != 0)
        abort();
    if (rc != 0) {
        if (rc != -1 || strncmp(reply, "501 5.5.4 ", 10) != 0)
            abort();
        clean(reply, sizeof(reply));
    } else {
        if (x->has == 0 || (x->has & ~0x1ffu))
            abort();
        clean(x->name, sizeof(x->name));
        clean(x->reverse_name, sizeof(x->reverse_name));
        clean(x->helo, sizeof(x->helo));
        clean(x->login, sizeof(x->login));
        if (strchr(x->helo, ' ') != NULL)
            abort();
        if ((x->name[0] && x->name_status != XCLIENT_NAME_OK) || x->name_status > XCLIENT_NAME_TEMPUNAVAIL)
            abort();
        if (x->port < 0 || x->port > 65535 || x->destport < 0 || x->destport > 65535)
            abort();
        if ((x->has & XCLIENT_ADDR) && !x->addr_unavailable)
            family(&x->addr);
        if ((x->has & XCLIENT_DESTADDR) && !x->destaddr_unavailable)
            family(&x->destaddr);
        if (memcmp(x, y, sizeof(*x)) != 0)
            abort();
    }
    free(arg);
    free(x);
    free(y);
    return 0;
}
