/* netaddr.h — client addresses the way every check keys and compares them: one canonical form
 * per address (an IPv4 client seen through a dual-stack socket arrives as the v4-mapped IPv6
 * address ::ffff:a.b.c.d and is the IPv4 address a.b.c.d here, so it never has two
 * identities), networks by prefix length (/24, /64 ...), text, CIDR parsing and matching.
 * Pure: no I/O, no allocation; usable from any thread. One process-wide setting: the NAT64
 * prefixes whose addresses carry an IPv4 client (netaddr_nat64_set, at start). */
#ifndef MX_NETADDR_H
#define MX_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETADDR_STRLEN 46           /* text of an address incl. NUL (INET6_ADDRSTRLEN) */
#define NETADDR_PREFIX_STRLEN 50    /* text of a network, "…/128", incl. NUL */

struct netaddr {
	int family;                 /* AF_INET or AF_INET6 (never a v4-mapped AF_INET6) */
	uint8_t b[16];              /* network byte order; AF_INET uses b[0..3], the rest is 0 */
};

/* The canonical address of sa (AF_INET, or AF_INET6 with v4-mapped unwrapped). 0, or -1 for
 * NULL or another family. */
int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* The address a client is looked up in DNS lists and keyed in limits by: the canonical one,
 * and an IPv6 address that carries an IPv4 client is that IPv4 address (netaddr_unwrap_v4).
 * Logs, XCLIENT / PROXY to backends and the address lists of the configuration keep the
 * canonical address. 0, or -1 for NULL or another family. */
int netaddr_client_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* An IPv6 a that embeds an IPv4 client becomes that IPv4 address: an address under one of the
 * NAT64 prefixes in force (netaddr_nat64_set; the default is the well-known prefix 64:ff9b::/96,
 * RFC 6052 2.1) whose bits 64-71 are zero, IPv4-translated ::ffff:0:a.b.c.d (RFC 2765 2.1) and
 * IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1; not ::, ::1, nor a last 32 bits in 0.0.0.0/8).
 * True when a changed. */
bool netaddr_unwrap_v4(struct netaddr *a);

/* ---- NAT64 prefixes (RFC 6052) ------------------------------------------------------------ */

#define NETADDR_NAT64_MAX 16        /* prefixes in a table (config nat64_prefixes) */
/* NAT64 prefixes, none overlapping another: what an IPv6-only host behind a NAT64 or SIIT
 * translator sees of an IPv4 client is the client's address under one of them. */
struct netaddr_nat64 {
	size_t n;
	struct netaddr_nat64_prefix {
		uint8_t b[12];      /* the prefix's first len / 8 octets, the rest zero */
		uint8_t len;        /* 32, 40, 48, 56, 64 or 96 (RFC 6052 2.2) */
	} v[NETADDR_NAT64_MAX];
};
/* t holds the well-known prefix 64:ff9b::/96 alone (the default). */
void netaddr_nat64_default(struct netaddr_nat64 *t);
/* Adds net/prefix (as netaddr_parse_cidr gives it) to t. 0, or -1 with the reason in why
 * (whylen octets): not IPv6, a length RFC 6052 2.2 has not (32, 40, 48, 56, 64, 96), bits
 * 64-71 not zero in a /96, the same as or overlapping an entry already in t, t full. */
int netaddr_nat64_add(struct netaddr_nat64 *t, const struct netaddr *net, int prefix, char *why,
    size_t whylen);
/* The IPv4 address in a (16 IPv6 octets) as RFC 6052 2.2 places it behind a prefix of len
 * bits (32, 40, 48, 56, 64, 96): the 32 bits after the prefix, bits 64-71 (the "u" octet)
 * skipped. Whether a is under the prefix is not checked. False (v4 untouched) for another
 * len, or when a's bits 64-71 are not zero (RFC 6052 2.2: then it is no IPv4-embedded
 * address). */
bool netaddr_nat64_extract(const uint8_t a[16], int len, uint8_t v4[4]);
bool netaddr_nat64_equal(const struct netaddr_nat64 *a, const struct netaddr_nat64 *b);
/* The table netaddr_unwrap_v4 (and so every netaddr_client_* function) uses, process-wide:
 * copied; NULL = the default. Not synchronised: set it before other threads read it (the
 * daemon sets it at start only, so a client keyed at connect has the same key at its close). */
void netaddr_nat64_set(const struct netaddr_nat64 *t);
const struct netaddr_nat64 *netaddr_nat64_get(void);
/* Parses "198.18.0.1", "2001:db8::1" or "::ffff:198.18.0.1" (-> IPv4). 0 or -1. */
int netaddr_from_string(const char *s, struct netaddr *out);
/* "198.18.0.1", "2001:db8::1" (RFC 5952 form, as inet_ntop). 0, or -1 when it does not fit. */
int netaddr_to_string(const struct netaddr *a, char *out, size_t outlen);

/* 32 or 128: the bits of the address's family. */
static inline int netaddr_bits(const struct netaddr *a) { return a->family == AF_INET6 ? 128 : 32; }
/* Clears the bits after the first prefix ones (prefix clamped to 0 .. netaddr_bits). */
void netaddr_mask(struct netaddr *a, int prefix);
/* True when a and net have the same family and their first prefix bits are equal. */
bool netaddr_in_prefix(const struct netaddr *a, const struct netaddr *net, int prefix);
bool netaddr_equal(const struct netaddr *a, const struct netaddr *b);
/* 16 bytes naming a in one space for both families: IPv4 as ::ffff:a.b.c.d (table keys). */
void netaddr_key16(const struct netaddr *a, uint8_t out[16]);

/* Parses a CIDR: "10.0.0.0/8", "192.0.2.1" (= /32), "2001:db8::/32", "::1" (= /128); a
 * v4-mapped network of at least /96 ("::ffff:10.0.0.0/104") becomes IPv4 (10.0.0.0/8). Host
 * bits beyond the prefix are cleared; surrounding blanks are ignored. 0 or -1. */
int netaddr_parse_cidr(const char *s, struct netaddr *net, int *prefix);

/* ---- straight from a sockaddr (what the filters hold) ------------------------------------ */

/* An address in text (IPv4 or IPv6; no port) into ss, as a session's client would be held.
 * 0 or -1. */
int netaddr_sockaddr_from_string(const char *s, struct sockaddr_storage *ss);
/* The text of sa's canonical address; returns its family (AF_INET / AF_INET6), or -1 with
 * out set to "" (another family, buffer too small). */
int netaddr_sockaddr_string(const struct sockaddr *sa, char *out, size_t outlen);
/* sa's port (host order); 0 for another family. */
int netaddr_sockaddr_port(const struct sockaddr *sa);
/* The network of sa as text, "198.18.7.0/24" or "2001:db8:1:2::/64", for the prefix length
 * of its family (clamped; sa as netaddr_client_from_sockaddr sees it). 0, or -1 (another family, buffer too small). */
int netaddr_prefix_string(const struct sockaddr *sa, int prefix_v4, int prefix_v6, char *out,
    size_t outlen);
/* The client as a key (limits.client_ipv6_prefix): an IPv4 client (or v4-mapped, or one
 * netaddr_client_from_sockaddr unwraps) is its address, "198.18.7.7"; an IPv6 one its network for prefix_v6, "2001:db8:1:2::/64", or its
 * address when prefix_v6 is 128. Returns the family, or -1 with out "" (another family,
 * buffer too small). */
int netaddr_client_string(const struct sockaddr *sa, int prefix_v6, char *out, size_t outlen);
/* The same as 16 bytes (netaddr_key16 of the address, masked to prefix_v6 for IPv6); all
 * zero for another family. */
void netaddr_client_key16(const struct sockaddr *sa, int prefix_v6, uint8_t out[16]);

#endif
