/* proxyproto.h — HAProxy PROXY protocol v1 (text) and v2 (binary) header parser/builder.
 * No I/O: the listener feeds the first bytes of a connection. */
#ifndef MX_PROXYPROTO_H
#define MX_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct proxy_info {
    int version;        /* 1 or 2 */
    bool local;         /* v2 LOCAL / v1 UNKNOWN / UNIX or DGRAM: keep the socket's own addresses */
    bool cmd_local;     /* v2 command LOCAL: the proxy's own connection (its health check), 2.2 */
    struct sockaddr_storage src, dst;   /* valid unless local */
};

enum proxy_result { PROXY_NEED_MORE = 0, PROXY_DONE, PROXY_ERROR };

/* Parses a header at the start of buf[0..len). PROXY_DONE: *consumed = header length
 * (bytes after it are SMTP). PROXY_NEED_MORE: not enough bytes yet (never beyond 536 bytes
 * for v2 with TLVs or 107 for v1 — past that it is PROXY_ERROR). PROXY_ERROR: *errstr
 * says why (static string); a v2 header whose CRC32C TLV does not match is one. */
enum proxy_result proxyproto_parse(const uint8_t *buf, size_t len, struct proxy_info *out,
                                   size_t *consumed, const char **errstr);
/* Builds a v2 PROXY (command PROXY, STREAM) header for src/dst (both AF_INET or both
 * AF_INET6; both v4-mapped IPv6 go as TCP over IPv4). Returns its length or 0 if cap is
 * too small / families differ. */
size_t proxyproto_build_v2(const struct sockaddr *src, const struct sockaddr *dst,
                           uint8_t *out, size_t cap);
/* Builds a v2 LOCAL header (no address: the receiver keeps the connection's own, as for
 * HAProxy's health checks). Returns its length (16) or 0 if cap is too small. */
size_t proxyproto_build_v2_local(uint8_t *out, size_t cap);

#endif
