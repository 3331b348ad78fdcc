/* spf_dns.h — a libspf2 DNS layer that asks the resolvers of `dns.resolvers`.
 *
 * libspf2's own layer ("resolv") asks the nameservers of /etc/resolv.conf on port 53, so an
 * operator's `dns.resolvers: ["127.0.0.1:5353"]` reached DKIM, DMARC and the DNS lists but not
 * SPF. This layer sends each lookup to the configured servers (IPv4, any port) through glibc's
 * res_nquery on a private resolver state: blocking, as libspf2 expects; SPF checks run in the
 * libuv thread pool. Each call is self-contained and thread-safe. */
#ifndef MX_SPF_DNS_H
#define MX_SPF_DNS_H

#include <netinet/in.h>	/* before spf2/spf.h, which does not include it */
#include <stdint.h>

#include <spf2/spf.h>

#include "proxy/cfg.h"

/* A layer asking the servers in resolvers ("ip" or "ip:port", IPv4; at most 3 are used, as
 * glibc allows) with timeout_ms per try and tries attempts. Returns NULL when no server in
 * the list is usable (an IPv6 one, say): the caller then keeps libspf2's resolv layer. The
 * layer is freed by SPF_dns_free (its destroy callback), with the server that owns it. */
SPF_dns_server_t *spf_dns_layer_new(const struct cfg_strlist *resolvers, uint64_t timeout_ms,
    int tries);

/* A pass-through layer above below that counts, per thread, the lookups of a, mx, ptr and
 * exists that found no record ("void lookups", RFC 7208 4.6.4). spf_dns_void_reset() before
 * a check, spf_dns_void_count() after it: more than 2 is permerror. NULL on no memory (below
 * is then still the caller's). */
SPF_dns_server_t *spf_dns_void_layer_new(SPF_dns_server_t *below);
void spf_dns_void_reset(void);
int spf_dns_void_count(void);

#endif
