/* proxyproto.c — HAProxy PROXY protocol v1/v2 header parser and v2 builder, following
 * HAProxy's doc/proxy-protocol.txt. No I/O. */
#include "proxyproto.h"
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* proxy-protocol.txt 2.1: the longest v1 line incl. CRLF */
#define PP1_MAX 107
/* 2.2: 16-byte fixed header; we accept at most 536 bytes in all (addresses + TLVs) */
#define PP2_HDR 16
#define PP2_MAX 536

static const uint8_t pp2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};
static const char pp1_sig[] = "PROXY ";
/* 2.2: TLV types read here */
#define PP2_TYPE_CRC32C 0x03

/* Parses a decimal port "0".."65535" of n octets. 0 or -1. */
static int
pp_parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    if (n > 1 && s[0] == '0')
        return -1;                      /* strict: no leading zeros */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Parses an address token of n octets for family af into ss (port set later). 0 or -1. */
static int
pp_parse_addr(const char *s, size_t n, int af, struct sockaddr_storage *ss)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        return inet_pton(AF_INET, tmp, &sin->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, tmp, &sin6->sin6_addr) == 1 ? 0 : -1;
}

static void
pp_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN[ ...]\r\n". */
static enum proxy_result
pp_parse_v1(const uint8_t *buf, size_t len, struct proxy_info *out, size_t *consumed,
            const char **errstr)
{
    const char *s = (const char *)buf;
    size_t lim = len < PP1_MAX ? len : PP1_MAX;
    size_t eol = 0;
    while (eol < lim && s[eol] != '\n')
        eol++;
    if (eol == lim) {
        if (len >= PP1_MAX) {
            *errstr = "PROXY v1 line too long";
            return PROXY_ERROR;
        }
        /* garbage already visible makes waiting pointless */
        for (size_t i = 0; i < lim; i++) {
            unsigned char c = (unsigned char)s[i];
            if ((c < 0x20 && c != '\r') || c >= 0x7f || (c == '\r' && i + 1 < lim)) {
                *errstr = "PROXY v1 header contains invalid characters";
                return PROXY_ERROR;
            }
        }
        return PROXY_NEED_MORE;
    }
    if (eol == 0 || s[eol - 1] != '\r') {
        *errstr = "PROXY v1 line not ended by CRLF";
        return PROXY_ERROR;
    }
    size_t n = eol - 1;                 /* line without CRLF */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f) {
            *errstr = "PROXY v1 header contains invalid characters";
            return PROXY_ERROR;
        }
    }
    /* split into space-separated tokens; exactly one space between them */
    const char *tok[7];
    size_t tlen[7];
    size_t ntok = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == ' ') {
            if (ntok == 7) {
                ntok++;
                break;
            }
            tok[ntok] = s + start;
            tlen[ntok] = i - start;
            ntok++;
            start = i + 1;
        }
    }
    memset(out, 0, sizeof(*out));
    out->version = 1;
    if (ntok >= 2 && tlen[1] == 7 && memcmp(tok[1], "UNKNOWN", 7) == 0) {
        /* 2.1: the rest of an UNKNOWN line is ignored */
        out->local = true;
        *consumed = eol + 1;
        return PROXY_DONE;
    }
    if (ntok != 6) {
        *errstr = "PROXY v1 header has a wrong number of fields";
        return PROXY_ERROR;
    }
    for (size_t i = 0; i < ntok; i++) {
        if (tlen[i] == 0) {
            *errstr = "PROXY v1 header has an empty field";
            return PROXY_ERROR;
        }
    }
    int af;
    if (tlen[1] == 4 && memcmp(tok[1], "TCP4", 4) == 0)
        af = AF_INET;
    else if (tlen[1] == 4 && memcmp(tok[1], "TCP6", 4) == 0)
        af = AF_INET6;
    else {
        *errstr = "PROXY v1 unknown protocol";
        return PROXY_ERROR;
    }
    uint16_t sport, dport;
    if (pp_parse_addr(tok[2], tlen[2], af, &out->src) != 0 ||
        pp_parse_addr(tok[3], tlen[3], af, &out->dst) != 0) {
        *errstr = "PROXY v1 bad address";
        return PROXY_ERROR;
    }
    if (pp_parse_port(tok[4], tlen[4], &sport) != 0 || pp_parse_port(tok[5], tlen[5], &dport) != 0) {
        *errstr = "PROXY v1 bad port";
        return PROXY_ERROR;
    }
    pp_set_port(&out->src, sport);
    pp_set_port(&out->dst, dport);
    *consumed = eol + 1;
    return PROXY_DONE;
}

/* 2.2.3: CRC32c (Castagnoli, RFC 4960 appendix B: reflected polynomial 0x82F63B78), fed
 * in pieces; start with crc = 0xFFFFFFFF, finish by inverting it. The header is at most
 * PP2_MAX octets, so bit by bit costs nothing worth a table. */
static uint32_t
pp_crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

/* Checks the PP2_TYPE_CRC32C TLV whose value starts at val (4 octets) in the header
 * buf[0..total): the CRC32c of the header with that value zeroed must equal it. 0 or -1. */
static int
pp_crc32c_check(const uint8_t *buf, size_t total, const uint8_t *val)
{
    static const uint8_t zero[4];
    size_t off = (size_t)(val - buf);
    uint32_t want = ((uint32_t)val[0] << 24) | ((uint32_t)val[1] << 16) | ((uint32_t)val[2] << 8) | val[3];
    uint32_t crc = pp_crc32c_update(0xFFFFFFFFu, buf, off);

    crc = pp_crc32c_update(crc, zero, sizeof(zero));
    crc = pp_crc32c_update(crc, val + 4, total - off - 4);
    return (crc ^ 0xFFFFFFFFu) == want ? 0 : -1;
}

/* v2: binary header, 2.2 of proxy-protocol.txt. buf holds at least the 12-byte signature. */
static enum proxy_result
pp_parse_v2(const uint8_t *buf, size_t len, struct proxy_info *out, size_t *consumed,
            const char **errstr)
{
    if (len < PP2_HDR)
        return PROXY_NEED_MORE;
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
    uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0f;
    size_t hlen = ((size_t)buf[14] << 8) | buf[15];
    if (ver != 2) {
        *errstr = "PROXY v2 bad version";
        return PROXY_ERROR;
    }
    if (cmd > 1) {
        *errstr = "PROXY v2 bad command";
        return PROXY_ERROR;
    }
    if (fam > 3 || proto > 2) {
        *errstr = "PROXY v2 bad family or protocol";
        return PROXY_ERROR;
    }
    if (PP2_HDR + hlen > PP2_MAX) {
        *errstr = "PROXY v2 header too long";
        return PROXY_ERROR;
    }
    size_t alen = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
    if (hlen < alen) {
        *errstr = "PROXY v2 length too short for the address family";
        return PROXY_ERROR;
    }
    if (len < PP2_HDR + hlen)
        return PROXY_NEED_MORE;

    /* 2.2.7: TLVs fill the rest of the block exactly */
    const uint8_t *t = buf + PP2_HDR + alen, *end = buf + PP2_HDR + hlen;
    while (t < end) {
        if (end - t < 3) {
            *errstr = "PROXY v2 truncated TLV";
            return PROXY_ERROR;
        }
        size_t tl = ((size_t)t[1] << 8) | t[2];
        if ((size_t)(end - t - 3) < tl) {
            *errstr = "PROXY v2 TLV overruns the header";
            return PROXY_ERROR;
        }
        /* 2.2.3: a checksum present is verified (HAProxy's accept-proxy drops the
         * connection on a mismatch, as the spec's "invalid connection"): a header damaged
         * or forged on the way names no client. Other TLVs are skipped (2.2). */
        if (t[0] == PP2_TYPE_CRC32C) {
            if (tl != 4) {
                *errstr = "PROXY v2 CRC32C TLV is not 4 octets";
                return PROXY_ERROR;
            }
            if (pp_crc32c_check(buf, PP2_HDR + hlen, t + 3) != 0) {
                *errstr = "PROXY v2 CRC32C mismatch";
                return PROXY_ERROR;
            }
        }
        t += 3 + tl;
    }

    memset(out, 0, sizeof(*out));
    out->version = 2;
    *consumed = PP2_HDR + hlen;
    /* LOCAL, UNSPEC, UNIX or DGRAM: keep the socket's own addresses */
    if (cmd == 0 || fam == 0 || fam == 3 || proto != 1) {
        out->local = true;
        out->cmd_local = cmd == 0;
        return PROXY_DONE;
    }
    const uint8_t *a = buf + PP2_HDR;
    if (fam == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);     /* network order on both sides */
        memcpy(&d->sin_port, a + 10, 2);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    }
    return PROXY_DONE;
}

/* See proxyproto.h. */
enum proxy_result
proxyproto_parse(const uint8_t *buf, size_t len, struct proxy_info *out, size_t *consumed,
                 const char **errstr)
{
    static const char *unused;
    if (errstr == NULL)
        errstr = &unused;
    *errstr = NULL;
    if (len == 0)
        return PROXY_NEED_MORE;
    size_t n1 = sizeof(pp1_sig) - 1;
    size_t m = len < n1 ? len : n1;
    if (memcmp(buf, pp1_sig, m) == 0)
        return m < n1 ? PROXY_NEED_MORE : pp_parse_v1(buf, len, out, consumed, errstr);
    m = len < sizeof(pp2_sig) ? len : sizeof(pp2_sig);
    if (memcmp(buf, pp2_sig, m) == 0)
        return m < sizeof(pp2_sig) ? PROXY_NEED_MORE : pp_parse_v2(buf, len, out, consumed, errstr);
    *errstr = "not a PROXY protocol header";
    return PROXY_ERROR;
}

/* The IPv4 address of a v4-mapped IPv6 one (::ffff:a.b.c.d) into out, port kept. */
static bool
pp_v4mapped(const struct sockaddr_in6 *a, struct sockaddr_in *out)
{
    struct netaddr na;

    if (netaddr_from_sockaddr((const struct sockaddr *)a, &na) != 0 || na.family != AF_INET)
        return false;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = a->sin6_port;
    memcpy(&out->sin_addr, na.b, 4);
    return true;
}

/* See proxyproto.h. */
size_t
proxyproto_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
                    size_t cap)
{
    if (src == NULL || dst == NULL || src->sa_family != dst->sa_family)
        return 0;
    size_t alen;
    uint8_t fam;
    struct sockaddr_in s4, d4;
    if (src->sa_family == AF_INET6 && pp_v4mapped((const struct sockaddr_in6 *)src, &s4) &&
        pp_v4mapped((const struct sockaddr_in6 *)dst, &d4)) {
        /* RFC 4291 2.5.5.2: an IPv4 client, as HAProxy's dual-stack `bind :::25` names
         * one. Sent as TCP over IPv4: an IPv4-only receiver (Postfix with inet_protocols
         * = ipv4) answers a TCP6 header "421 Server local error". */
        src = (const struct sockaddr *)&s4;
        dst = (const struct sockaddr *)&d4;
    }
    if (src->sa_family == AF_INET) {
        alen = 12;
        fam = 0x11;                     /* TCP over IPv4 */
    } else if (src->sa_family == AF_INET6) {
        alen = 36;
        fam = 0x21;                     /* TCP over IPv6 */
    } else {
        return 0;
    }
    if (cap < PP2_HDR + alen)
        return 0;
    memcpy(out, pp2_sig, sizeof(pp2_sig));
    out[12] = 0x21;                     /* version 2, command PROXY */
    out[13] = fam;
    out[14] = 0;
    out[15] = (uint8_t)alen;
    uint8_t *a = out + PP2_HDR;
    if (fam == 0x11) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
        memcpy(a, &s->sin_addr, 4);
        memcpy(a + 4, &d->sin_addr, 4);
        memcpy(a + 8, &s->sin_port, 2);
        memcpy(a + 10, &d->sin_port, 2);
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
        const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;
        memcpy(a, &s->sin6_addr, 16);
        memcpy(a + 16, &d->sin6_addr, 16);
        memcpy(a + 32, &s->sin6_port, 2);
        memcpy(a + 34, &d->sin6_port, 2);
    }
    return PP2_HDR + alen;
}

size_t
proxyproto_build_v2_local(uint8_t *out, size_t cap)
{
    if (cap < PP2_HDR)
        return 0;
    memcpy(out, pp2_sig, sizeof(pp2_sig));
    out[12] = 0x20;                     /* version 2, command LOCAL */
    out[13] = 0x00;                     /* AF_UNSPEC, UNSPEC */
    out[14] = 0;
    out[15] = 0;
    return PP2_HDR;
}
