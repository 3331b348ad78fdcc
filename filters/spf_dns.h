/* spf_dns.h — a libspf2 DNS layer that asks the resolvers of `dns.resolvers`.
 *
 * libspf2's own layer ("resolv") asks the nameservers of /etc/resolv.conf on port 53, so an
 * operator's `dns.resolvers: ["127.0.0.1:5353"]` reached DKIM, DMARC and the DNS lists but not
 * SPF. This layer sends each lookup to the configured servers (IPv4 or IPv6, any port) itself: UDP,
 * then TCP when the answer is truncated, every wait bounded by the lookup's time (not glibc's
 * res_nquery, whose TCP fallback waits for ever on a server that does not answer). Blocking,
 * as libspf2 expects; SPF checks run in the libuv thread pool. Each call is self-contained
 * and thread-safe. A name that cannot be asked (a label over 63 octets, over 253 characters:
 * a macro expansion, say) is answered as NXDOMAIN without a query. */
#ifndef MX_SPF_DNS_H
#define MX_SPF_DNS_H

#include <netinet/in.h>	/* before spf2/spf.h, which does not include it */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <spf2/spf.h>

#include "proxy/cfg.h"

/* A layer asking the servers in resolvers ("ip", "ip:port", "[ipv6]", "[ipv6]:port" or a
 * bare IPv6 address, as dns.c takes them; at most 3 are used, as glibc allows), or
 * resolv.conf's IPv4 servers when resolvers is NULL or empty, with timeout_ms per lookup
 * (all tries and servers) and tries rounds. Returns NULL when no server is usable: the
 * caller then keeps libspf2's resolv layer. The layer is freed by SPF_dns_free (its destroy
 * callback), with the server that owns it. */
/* One server of dns.resolvers into *ss (port 53 when none is given); 0, or -1 when s is not
 * one of the forms above. */
int spf_dns_parse_server(const char *s, struct sockaddr_storage *ss, socklen_t *len);

struct dns_cache;
/* cache: the answers mxgate's resolvers cached (dns_cache_for), read before asking: a name
 * the FCrDNS test or the sender-domain check asked is not asked again; and what this layer
 * asks itself is stored there as the resolvers store theirs (negative_ttl_ms and max_ttl_ms:
 * dns.negative_ttl, dns.max_ttl), so the next message from the domain, on any worker, does
 * not ask again (NULL: none). */
SPF_dns_server_t *spf_dns_layer_new(const struct cfg_strlist *resolvers, uint64_t timeout_ms,
    int tries, struct dns_cache *cache, uint64_t negative_ttl_ms, uint64_t max_ttl_ms);

/* Bounds every lookup of the check about to run on this thread: none goes on more than
 * ms_from_now from now (the check's own time limit, after which nobody waits for it); 0
 * lifts the bound. */
void spf_dns_check_deadline(uint64_t ms_from_now);

/* The records of type in ans (len octets), the reply to a query for domain whose rcode was
 * NOERROR, as libspf2 takes them (owned by layer, which may be a bare struct): the records of
 * that type in the answer section (a CNAME chain before them skipped), TXT character-strings
 * joined, a malformed record skipped; NO_DATA when none, TRY_AGAIN when the message does not
 * parse. NULL on no memory. Does no I/O; safe on any input (fuzz_dns_answer). */
SPF_dns_rr_t *spf_dns_reply_read(SPF_dns_server_t *layer, const char *domain, ns_type type,
    const unsigned char *ans, int len);

/* A pass-through layer above below that counts, per thread, the lookups of a, mx, ptr and
 * exists that found no record ("void lookups", RFC 7208 4.6.4). spf_dns_void_reset() before
 * a check, spf_dns_void_count() after it: more than 2 is permerror. NULL on no memory (below
 * is then still the caller's). */
SPF_dns_server_t *spf_dns_void_layer_new(SPF_dns_server_t *below);
void spf_dns_void_reset(void);
int spf_dns_void_count(void);

/* libspf2 compiles a record's mechanisms into 511 octets (SPF_MAX_MECH_LEN) and drops every
 * mechanism past that without an error: about 63 ip4 terms or 25 ip6 terms, after which the
 * record ends early (no -all: neutral). spf_dns_size_terms() counts a record's mechanisms as
 * libspf2's compiler sees them (terms split at spaces, redirect= counted as a mechanism as
 * libspf2 does); -1 when txt is not an SPF record. *redirect tells whether it has redirect=. */
int spf_dns_size_terms(const char *txt, bool *redirect);

/* A pass-through layer above below (the top one, over the static records) that compiles
 * every SPF record it passes up with srv (set by spf_dns_size_layer_server) and notes, per
 * thread, the first one libspf2 cut short. spf_dns_void_reset() clears the note as well;
 * spf_dns_size_cut() after the check: true with the record's name (and whether a cut record
 * had redirect=) when one was seen. */
SPF_dns_server_t *spf_dns_size_layer_new(SPF_dns_server_t *below);
/* The mechanisms libspf2 keeps of SPF record txt compiled with srv (*terms: the text's);
 * -1 when it is no SPF record or does not compile without errors. */
int spf_dns_size_kept(SPF_server_t *srv, const char *txt, int *terms, bool *redirect);
void spf_dns_size_layer_server(SPF_dns_server_t *layer, SPF_server_t *srv);
bool spf_dns_size_cut(char *name, size_t namesz, bool *redirect);

#endif
