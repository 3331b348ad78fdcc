/* test_proxyproto.c — PROXY v1/v2: valid, truncated (every prefix needs more), garbage,
 * and v2 headers from proxyproto_build_v2 parsed back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "proxyproto.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

struct pp_row {
    const char *label;
    const char *in;
    size_t len;                 /* 0: strlen */
    enum proxy_result want;
    size_t consumed;            /* when DONE */
    int local;
    const char *src;            /* "addr port" when not local */
    const char *dst;
    size_t pad;                 /* zero octets appended after the literal */
};

static const struct pp_row pp_rows[] = {
    { "v1 TCP4", "PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\nEHLO", 0, PROXY_DONE, 44, 0, "192.0.2.1 40000", "198.51.100.2 25" },
    { "v1 TCP6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", 0, PROXY_DONE, 36, 0, "2001:db8::1 1", "::1 65535" },
    { "v1 UNKNOWN", "PROXY UNKNOWN\r\n", 0, PROXY_DONE, 15, 1 },
    { "v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0, PROXY_DONE, 59, 1 },
    { "v1 truncated", "PROXY TCP4 192.0.2.1 198.51.100.2 40000 2", 0, PROXY_NEED_MORE },
    { "v1 truncated before LF", "PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r", 0, PROXY_NEED_MORE },
    { "v1 prefix", "PRO", 0, PROXY_NEED_MORE },
    { "v1 LF without CR", "PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\n", 0, PROXY_ERROR },
    { "v1 CR not followed by LF", "PROXY TCP4 1.2.3.4\rx", 0, PROXY_ERROR },
    { "v1 two spaces", "PROXY TCP4  192.0.2.1 198.51.100.2 40000 25\r\n", 0, PROXY_ERROR },
    { "v1 missing port", "PROXY TCP4 192.0.2.1 198.51.100.2 40000\r\n", 0, PROXY_ERROR },
    { "v1 extra field", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", 0, PROXY_ERROR },
    { "v1 port too big", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", 0, PROXY_ERROR },
    { "v1 port leading zero", "PROXY TCP4 192.0.2.1 198.51.100.2 025 25\r\n", 0, PROXY_ERROR },
    { "v1 port not a number", "PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n", 0, PROXY_ERROR },
    { "v1 IPv6 for TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", 0, PROXY_ERROR },
    { "v1 IPv4 for TCP6", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", 0, PROXY_ERROR },
    { "v1 bad address", "PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", 0, PROXY_ERROR },
    { "v1 unknown protocol", "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", 0, PROXY_ERROR },
    { "v1 lower case", "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", 0, PROXY_ERROR },
    { "v1 NUL inside", "PROXY TCP4 192.0.2.1\0", 21, PROXY_ERROR },
    { "v1 line too long", "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0, PROXY_ERROR },
    { "SMTP instead of PROXY", "EHLO x\r\n", 0, PROXY_ERROR },
    { "TLS hello instead of PROXY", "\x16\x03\x01\x02\x00", 5, PROXY_ERROR },
    { "v2 signature prefix", SIG, 8, PROXY_NEED_MORE },
    { "v2 signature only", SIG, 12, PROXY_NEED_MORE },
    { "v2 bad signature", "\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c", 16, PROXY_ERROR },
    { "v2 PROXY TCP4", SIG "\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\x9c\x40\x00\x19" "EHLO", 32, PROXY_DONE, 28, 0, "192.0.2.1 40000", "198.51.100.2 25" },
    { "v2 LOCAL", SIG "\x20\x00\x00\x00", 16, PROXY_DONE, 16, 1 },
    { "v2 LOCAL with addresses", SIG "\x20\x11\x00\x0c" "AAAABBBBCCDD", 28, PROXY_DONE, 28, 1 },
    { "v2 UNIX stream is local", SIG "\x21\x31\x00\xd8", 16, PROXY_DONE, 232, 1, NULL, NULL, 216 },
    { "v2 TCP4 over DGRAM is local", SIG "\x21\x12\x00\x0c" "AAAABBBBCCDD", 28, PROXY_DONE, 28, 1 },
    { "v2 UNSPEC is local", SIG "\x21\x00\x00\x00", 16, PROXY_DONE, 16, 1 },
    { "v2 truncated addresses", SIG "\x21\x11\x00\x0c\xc0\x00\x02", 19, PROXY_NEED_MORE },
    { "v2 version 1", SIG "\x11\x11\x00\x0c", 16, PROXY_ERROR },
    { "v2 command 2", SIG "\x22\x11\x00\x0c", 16, PROXY_ERROR },
    { "v2 family 4", SIG "\x21\x41\x00\x0c", 16, PROXY_ERROR },
    { "v2 protocol 3", SIG "\x21\x13\x00\x0c", 16, PROXY_ERROR },
    { "v2 length too short for INET", SIG "\x21\x11\x00\x0b", 16, PROXY_ERROR },
    { "v2 length too short for INET6", SIG "\x21\x21\x00\x0c", 16, PROXY_ERROR },
    { "v2 length over 520", SIG "\x21\x11\x02\x09", 16, PROXY_ERROR },
    { "v2 TCP4 with a TLV", SIG "\x21\x11\x00\x13" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x04\x00\x04" "abcd", 35, PROXY_DONE, 35, 0, "127.0.0.1 1", "127.0.0.2 2" },
    { "v2 TLV overruns", SIG "\x21\x11\x00\x13" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x04\x00\x05" "abcd", 35, PROXY_ERROR },
    /* 2.2.3 PP2_TYPE_CRC32C: the checksum of the whole header with its own field zeroed;
     * HAProxy's accept-proxy drops the connection when it does not match */
    { "v2 CRC32C right", SIG "\x21\x11\x00\x13" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x03\x00\x04" "\xba\x84\x11\x57", 35, PROXY_DONE, 35, 0, "127.0.0.1 1", "127.0.0.2 2" },
    { "v2 CRC32C after a NOOP TLV", SIG "\x21\x11\x00\x17" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x04\x00\x01" "A" "\x03\x00\x04" "\x83\xf3\xe1\xff", 39, PROXY_DONE, 39, 0, "127.0.0.1 1", "127.0.0.2 2" },
    { "v2 CRC32C wrong", SIG "\x21\x11\x00\x13" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x03\x00\x04" "\xba\x84\x11\x56", 35, PROXY_ERROR },
    { "v2 CRC32C of an address changed", SIG "\x21\x11\x00\x13" "\x7f\0\0\x09\x7f\0\0\x02\0\x01\0\x02" "\x03\x00\x04" "\xba\x84\x11\x57", 35, PROXY_ERROR },
    { "v2 CRC32C zero (not computed)", SIG "\x21\x11\x00\x13" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x03\x00\x04" "\0\0\0\0", 35, PROXY_ERROR },
    { "v2 CRC32C of 3 octets", SIG "\x21\x11\x00\x12" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x03\x00\x03" "\xba\x84\x11", 34, PROXY_ERROR },
    { "v2 LOCAL with a wrong CRC32C", SIG "\x20\x00\x00\x07" "\x03\x00\x04" "\x01\x02\x03\x04", 23, PROXY_ERROR },
    { "v2 truncated TLV header", SIG "\x21\x11\x00\x0e" "\x7f\0\0\x01\x7f\0\0\x02\0\x01\0\x02" "\x04\x00", 30, PROXY_ERROR },
};

static void
render_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        snprintf(out, cap, "%s %u", a, ntohs(s->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        snprintf(out, cap, "%s %u", a, ntohs(s->sin6_port));
    } else {
        snprintf(out, cap, "family %d", ss->ss_family);
    }
}

static void
test_rows(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(pp_rows) / sizeof(pp_rows[0]); r++) {
        const struct pp_row *row = &pp_rows[r];
        size_t lit = row->len ? row->len : strlen(row->in);
        size_t len = lit + row->pad;
        uint8_t *buf = calloc(1, len);  /* exact size: ASan catches over-reads */
        memcpy(buf, row->in, lit);
        struct proxy_info info;
        size_t consumed = 0;
        const char *err = NULL;
        enum proxy_result res = proxyproto_parse(buf, len, &info, &consumed, &err);
        if (res != row->want)
            fail_msg("%s: result %d (%s)", row->label, res, err ? err : "");
        if (res == PROXY_ERROR && err == NULL)
            fail_msg("%s: no errstr", row->label);
        if (res == PROXY_DONE) {
            if (consumed != row->consumed)
                fail_msg("%s: consumed %zu", row->label, consumed);
            if ((int)info.local != row->local)
                fail_msg("%s: local %d", row->label, info.local);
            if (!row->local) {
                char s[80], d[80];
                render_addr(&info.src, s, sizeof(s));
                render_addr(&info.dst, d, sizeof(d));
                if (strcmp(s, row->src) != 0 || strcmp(d, row->dst) != 0)
                    fail_msg("%s: src '%s' dst '%s'", row->label, s, d);
            }
            /* every strict prefix of a complete header asks for more */
            for (size_t n = 1; n < consumed; n++) {
                if (proxyproto_parse(buf, n, &info, &consumed, &err) != PROXY_NEED_MORE)
                    fail_msg("%s: prefix of %zu did not need more", row->label, n);
            }
        }
        free(buf);
    }
}

static void
test_build_roundtrip(void **state)
{
    (void)state;
    struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in d4 = { .sin_family = AF_INET, .sin_port = htons(25) };
    inet_pton(AF_INET, "198.18.0.9", &s4.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
    uint8_t out[128];
    struct proxy_info info;
    size_t consumed;
    const char *err;
    char s[80], d[80];

    size_t n = proxyproto_build_v2((struct sockaddr *)&s4, (struct sockaddr *)&d4, out, sizeof(out));
    assert_int_equal(n, 28);
    assert_int_equal(proxyproto_parse(out, n, &info, &consumed, &err), PROXY_DONE);
    assert_int_equal(consumed, 28);
    assert_int_equal(info.version, 2);
    assert_false(info.local);
    render_addr(&info.src, s, sizeof(s));
    render_addr(&info.dst, d, sizeof(d));
    assert_string_equal(s, "198.18.0.9 40000");
    assert_string_equal(d, "127.0.0.1 25");
    assert_int_equal(proxyproto_build_v2((struct sockaddr *)&s4, (struct sockaddr *)&d4, out, 27), 0);

    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
    struct sockaddr_in6 d6 = { .sin6_family = AF_INET6, .sin6_port = htons(65535) };
    inet_pton(AF_INET6, "2001:db8::9", &s6.sin6_addr);
    inet_pton(AF_INET6, "::1", &d6.sin6_addr);
    n = proxyproto_build_v2((struct sockaddr *)&s6, (struct sockaddr *)&d6, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_int_equal(proxyproto_parse(out, n, &info, &consumed, &err), PROXY_DONE);
    render_addr(&info.src, s, sizeof(s));
    render_addr(&info.dst, d, sizeof(d));
    assert_string_equal(s, "2001:db8::9 1");
    assert_string_equal(d, "::1 65535");
    assert_int_equal(proxyproto_build_v2((struct sockaddr *)&s6, (struct sockaddr *)&d6, out, 51), 0);

    /* v4-mapped on both sides (a PROXY header from HAProxy's dual-stack `bind :::25` names
     * an IPv4 client so): sent as TCP over IPv4, which an IPv4-only receiver takes (Postfix
     * with inet_protocols = ipv4 answers a TCP6 header 421) */
    inet_pton(AF_INET6, "::ffff:198.18.0.9", &s6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &d6.sin6_addr);
    s6.sin6_port = htons(40000);
    d6.sin6_port = htons(25);
    n = proxyproto_build_v2((struct sockaddr *)&s6, (struct sockaddr *)&d6, out, sizeof(out));
    assert_int_equal(n, 28);
    assert_int_equal(out[13], 0x11);
    assert_int_equal(proxyproto_parse(out, n, &info, &consumed, &err), PROXY_DONE);
    render_addr(&info.src, s, sizeof(s));
    render_addr(&info.dst, d, sizeof(d));
    assert_string_equal(s, "198.18.0.9 40000");
    assert_string_equal(d, "127.0.0.1 25");
    /* one side mapped, the other a real IPv6 address: stays TCP over IPv6 */
    inet_pton(AF_INET6, "2001:db8::1", &d6.sin6_addr);
    n = proxyproto_build_v2((struct sockaddr *)&s6, (struct sockaddr *)&d6, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_int_equal(out[13], 0x21);

    /* families differ */
    assert_int_equal(proxyproto_build_v2((struct sockaddr *)&s4, (struct sockaddr *)&d6, out, sizeof(out)), 0);

    /* LOCAL (the health probes' header): parsed back as local, nothing after it eaten */
    n = proxyproto_build_v2_local(out, sizeof(out));
    assert_int_equal(n, 16);
    memcpy(out + n, "220 x\r\n", 7);
    assert_int_equal(proxyproto_parse(out, n + 7, &info, &consumed, &err), PROXY_DONE);
    assert_int_equal(consumed, 16);
    assert_int_equal(info.version, 2);
    assert_true(info.local);
    assert_true(info.cmd_local);
    assert_int_equal(proxyproto_build_v2_local(out, 15), 0);
}

/* cmd_local is the v2 LOCAL command alone (a balancer's health check): a v2 PROXY of an
 * unspecified or UNIX family and a v1 UNKNOWN line keep the socket's addresses too, but
 * relay a client. */
static void
test_cmd_local(void **state)
{
    (void)state;
    static const struct { const char *in; size_t len; bool cmd_local; } rows[] = {
        { SIG "\x20\x00\x00\x00", 16, true },
        { SIG "\x20\x11\x00\x0c" "AAAABBBBCCDD", 28, true },
        { SIG "\x21\x00\x00\x00", 16, false },
        { SIG "\x21\x12\x00\x0c" "AAAABBBBCCDD", 28, false },
        { "PROXY UNKNOWN\r\n", 15, false },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct proxy_info info;
        size_t consumed;
        const char *err;
        assert_int_equal(proxyproto_parse((const uint8_t *)rows[i].in, rows[i].len, &info, &consumed, &err),
                         PROXY_DONE);
        assert_true(info.local);
        assert_int_equal(info.cmd_local, rows[i].cmd_local);
    }
}

/* A v2 header at the 536-octet bound with TLVs is fine, beyond is an error. */
static void
test_v2_bounds(void **state)
{
    (void)state;
    uint8_t buf[600];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, SIG, 12);
    buf[12] = 0x21;
    buf[13] = 0x11;
    size_t hlen = 520;
    buf[14] = (uint8_t)(hlen >> 8);
    buf[15] = (uint8_t)hlen;
    /* one NOOP TLV (type 0x04) filling 520 - 12 - 3 octets */
    size_t tl = hlen - 12 - 3;
    buf[28] = 0x04;
    buf[29] = (uint8_t)(tl >> 8);
    buf[30] = (uint8_t)tl;
    struct proxy_info info;
    size_t consumed;
    const char *err;
    assert_int_equal(proxyproto_parse(buf, 535, &info, &consumed, &err), PROXY_NEED_MORE);
    assert_int_equal(proxyproto_parse(buf, 536, &info, &consumed, &err), PROXY_DONE);
    assert_int_equal(consumed, 536);
    buf[15] = (uint8_t)(hlen + 1);
    buf[30] = (uint8_t)(tl + 1);
    assert_int_equal(proxyproto_parse(buf, sizeof(buf), &info, &consumed, &err), PROXY_ERROR);
    assert_int_equal(proxyproto_parse(buf, 0, &info, &consumed, &err), PROXY_NEED_MORE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_build_roundtrip),
        cmocka_unit_test(test_v2_bounds),
        cmocka_unit_test(test_cmd_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
