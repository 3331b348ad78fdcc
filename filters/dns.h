/* dns.h — asynchronous DNS for the filters: c-ares driven from a libuv loop, a TTL cache
 * with a size bound shared by the process, and per-query cancellation.
 *
 * One resolver per (loop, config generation), shared by every module of that worker:
 *
 *     struct dns_resolver *r = dns_resolver_for_loop(loop, cfg);   // refcounted
 *     struct dns_query *q = dns_query_start(r, DNS_T_A, "2.0.0.127.bl.test", 0, my_cb, arg);
 *     ...  dns_query_cancel(q);            // when the session goes away: my_cb never runs
 *     dns_resolver_release(r);             // in worker_free
 *
 * Everything runs on the loop thread; no call blocks it. Queries for a (type, name) already
 * asked on that resolver and not answered yet (asked less than half the timeout ago) are not
 * sent again: they wait for that answer, each within its own time limit, so a thousand
 * sessions waiting on one slow name cost one query. */
#ifndef MX_DNS_H
#define MX_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proxy/cfg.h"

/* Config section `dns`. */
struct dns_config {
	struct cfg_strlist resolvers; /* "127.0.0.1:5353", "[::1]:53"; empty = /etc/resolv.conf */
	uint64_t timeout;             /* ms, whole query (all tries) */
	long tries;                   /* attempts per server */
	long cache_size;              /* entries, process-wide; 0 disables the cache */
	uint64_t negative_ttl;        /* ms, upper bound for caching NXDOMAIN/NODATA */
	uint64_t max_ttl;             /* ms, upper bound for any cached answer */
};
extern const struct cfg_table dns_config_table;

enum dns_type { DNS_T_A = 0, DNS_T_AAAA, DNS_T_TXT, DNS_T_PTR, DNS_T_MX, DNS_T_COUNT };

enum dns_status {
	DNS_S_OK = 0,     /* answers in r->v */
	DNS_S_NXDOMAIN,   /* name does not exist */
	DNS_S_NODATA,     /* name exists, no record of this type */
	DNS_S_SERVFAIL,   /* server failure or refused */
	DNS_S_TIMEOUT,    /* no answer in time */
	DNS_S_ERROR,      /* anything else: bad name, malformed reply, out of memory */
	DNS_S_FAILED,     /* every try failed at once: the servers unreachable (refused by
	                   * ICMP); a query a server answered SERVFAIL/REFUSED is SERVFAIL
	                   * (c-ares 1.18 ends both with ECONNREFUSED: dns.c tells them apart) */
};

/* A result as delivered to callbacks. Borrowed: valid only during the callback. */
struct dns_result {
	enum dns_status status;
	enum dns_type type;
	uint32_t ttl;      /* seconds (for negative answers: the negative TTL) */
	size_t n;          /* number of answers */
	char **v;          /* A/AAAA: textual addresses; TXT: one string per record (its
	                      character-strings concatenated); PTR: host names; MX:
	                      "PREFERENCE NAME" in the answer's order, the root as "."
	                      ("0 .": RFC 7505's null MX) */
	bool cached;       /* served from the cache */
};

struct mx_config;
struct dns_resolver;
struct dns_query;
struct dns_cache;

/* Returns the resolver of loop for cfg's `dns` section, creating it on first use, and takes
 * a reference (release with dns_resolver_release, on the loop thread). NULL on failure
 * (logged). Thread-safe; each loop must only use its own resolver. */
struct dns_resolver *dns_resolver_for_loop(uv_loop_t *loop, const struct mx_config *cfg);
/* Creates a private resolver (tests): servers "ip:port,..." or NULL for resolv.conf. */
struct dns_resolver *dns_resolver_new(uv_loop_t *loop, const char *servers, uint64_t timeout_ms,
    int tries);
/* Drops a reference; the last one cancels outstanding queries (no callbacks run), closes the
 * handles and frees the memory in their close callbacks. NULL is a no-op. */
void dns_resolver_release(struct dns_resolver *r);

/* Starts a query for name (without trailing dot) of type t. timeout_ms 0 = the resolver's.
 * cb runs exactly once on the loop thread unless the query is cancelled first; it may run
 * before this function returns (cache hit, immediate error) — then NULL is returned.
 * Otherwise the returned handle stays valid until cb has started or dns_query_cancel().
 * A name that cannot exist (over 253 characters, an empty label or one over 63 octets) is
 * answered DNS_S_NXDOMAIN at once, without a query; an empty name or no resolver is
 * DNS_S_ERROR. */
struct dns_query *dns_query_start(struct dns_resolver *r, enum dns_type t, const char *name,
    uint64_t timeout_ms, void (*cb)(void *arg, const struct dns_result *res), void *arg);
/* Cancels q: its callback will never run. q must not be used afterwards. NULL is a no-op. */
void dns_query_cancel(struct dns_query *q);

/* Makes r use cache c (borrowed; NULL = none). dns_resolver_for_loop uses the shared one. */
void dns_resolver_set_cache(struct dns_resolver *r, struct dns_cache *c);
/* Number of queries in flight on r (tests). */
size_t dns_resolver_pending(const struct dns_resolver *r);
/* Number of queries that joined one already asked for the same (type, name) instead of
 * asking again (tests, figures). */
size_t dns_resolver_coalesced(const struct dns_resolver *r);
/* The most queries one bucket of r's in-flight table holds (tests: a keyed hash spreads
 * names a client chose to collide). */
size_t dns_resolver_inflight_longest(const struct dns_resolver *r);

/* ---- names -------------------------------------------------------------------------- */

/* True when name[0..n) can be asked at all (RFC 1035 2.3.4: at most 253 characters as
 * text, labels of 1..63 octets, a trailing dot allowed); no other name can exist. */
bool dns_name_askable(const char *name, size_t n);

/* Writes the reversed form of sa's address followed by "." zone (zone NULL or "" gives the
 * in-addr.arpa / ip6.arpa name): 198.18.1.7 -> "7.1.18.198.bl.test", IPv6 -> 32 nibbles.
 * A v4-mapped IPv6 address is treated as IPv4, and so is one that carries an IPv4 client
 * (NAT64 64:ff9b::/96, IPv4-translated, IPv4-compatible: netaddr_client_from_sockaddr), so a
 * DNS list finds the IPv4 host behind it. Returns 0, or -1 when out is too small or the
 * family is unknown. */
int dns_name_reverse(const struct sockaddr *sa, const char *zone, char *out, size_t outlen);
/* Same for a textual address, v4-mapped only unwrapped (the PTR name of the address as it
 * is: rdns). */
int dns_name_reverse_str(const char *ip, const char *zone, char *out, size_t outlen);

/* ---- the cache (exposed for tests) -------------------------------------------------- */

struct dns_cache;
/* max entries; 0 makes every lookup miss. */
struct dns_cache *dns_cache_new(size_t max);
void dns_cache_free(struct dns_cache *c);
/* Stores a copy of r (status, answers, ttl) under (type, name) until now_ms + ttl. Evicts the
 * least recently used entry when full. */
void dns_cache_put(struct dns_cache *c, enum dns_type t, const char *name,
    const struct dns_result *r, uint64_t now_ms);
/* Looks (type, name) up at now_ms. On a hit returns a malloc'd result (free with
 * dns_result_free) whose ttl is what remains; NULL on a miss or an expired entry. */
struct dns_result *dns_cache_get(struct dns_cache *c, enum dns_type t, const char *name,
    uint64_t now_ms);
size_t dns_cache_count(struct dns_cache *c);
/* The most entries one bucket of c holds (tests: see dns_resolver_inflight_longest). */
size_t dns_cache_longest_chain(struct dns_cache *c);
void dns_result_free(struct dns_result *r);
/* The process-wide cache the resolvers use (created on first use with the bound given; a
 * later call with a different bound changes it). */
struct dns_cache *dns_cache_shared(size_t max);
/* The process-wide cache the resolvers made for dc use (dns_cache_shared with its bound;
 * NULL when dc's cache_size is 0; NULL dc: the default bound), and its clock (ms): a
 * lookup outside dns.c (SPF's, filters/spf_dns.c) reads the answers they cached. */
struct dns_cache *dns_cache_for(const struct dns_config *dc);
uint64_t dns_cache_now_ms(void);
/* Stores in c the raw reply abuf (alen) to a query for (t, name) that a lookup outside dns.c
 * asked itself (SPF's, filters/spf_dns.c) as the resolvers store theirs: an answer for its
 * records' smallest TTL, NXDOMAIN and NODATA for the SOA's negative TTL (not at all without
 * an SOA), at most negative_ttl_ms and max_ttl_ms (dns.negative_ttl, dns.max_ttl); any other
 * rcode, a malformed reply or c NULL: nothing. Thread-safe. */
void dns_cache_put_reply(struct dns_cache *c, enum dns_type t, const char *name,
    const unsigned char *abuf, int alen, uint64_t negative_ttl_ms, uint64_t max_ttl_ms);
/* Removes every entry of c; returns how many there were. Thread-safe. */
size_t dns_cache_clear(struct dns_cache *c);
/* Empties the process-wide cache if it exists (the control socket's `flush dns`); returns
 * the number of entries removed. */
size_t dns_cache_flush_shared(void);

/* Negative-caching TTL (RFC 2308 5): min(SOA TTL, SOA MINIMUM) of the SOA record in the
 * authority section of a raw reply. Returns 0 and *ttl, or -1 if none / malformed.
 * Bounded; does no I/O; safe on any input. */
int dns_reply_negative_ttl(const unsigned char *buf, size_t len, uint32_t *ttl);

/* Smallest TTL in the answer section of a raw reply: 0 and *ttl, or -1 (none / malformed).
 * Bounded; does no I/O; safe on any input. */
int dns_reply_answer_ttl(const unsigned char *buf, size_t len, uint32_t *ttl);

/* Longest name text dns_reply_ptr_names keeps, NUL included (RFC 1035: 255 octets on the
 * wire, at most 253 characters as text). */
#define DNS_NAME_TEXT_MAX 256

/* The PTR names of a raw reply to one question: records of class IN owned by the question's
 * name or by a CNAME target reached from it (others are ignored: a wrong qname), at most max
 * distinct names (case-insensitive), appended to res->v. A name holding an octet that no host
 * name has (a control, a space, DEL, non-ASCII, a '.' or '\\' inside a label) is skipped and
 * counted in *skipped (may be NULL). 0, or -1 when the reply is malformed (res may hold
 * names then). Bounded; does no I/O; safe on any input. */
int dns_reply_ptr_names(const unsigned char *buf, size_t len, struct dns_result *res,
    size_t max, size_t *skipped);

/* The same for MX records: each as "PREFERENCE NAME" (the root name, RFC 7505's null MX,
 * as "."), at most max distinct ones; an exchange holding an octet no host name has is
 * skipped and counted. 0, or -1 when the reply is malformed. Bounded; no I/O; safe on any
 * input (fuzz_dns_answer). */
int dns_reply_mx_names(const unsigned char *buf, size_t len, struct dns_result *res,
    size_t max, size_t *skipped);

/* The header and the question of a raw DNS message, a query or an answer. */
struct dns_msg_head {
	unsigned id;                /* the 16-bit id */
	bool response;              /* QR */
	unsigned rcode;             /* 0 NOERROR, 1 FORMERR, 2 SERVFAIL, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED */
	unsigned qtype;
};

/* Reads a message's header into *h and its one question's name into name (namelen octets,
 * as text, no trailing dot), its type into h->qtype: 1; 0 when it does not hold exactly one
 * question (h has the header); -1 when malformed. Bounded; does no I/O; safe on any input
 * (fuzz_dns_reply). */
int dns_msg_question(const unsigned char *buf, size_t len, char *name, size_t namelen,
    struct dns_msg_head *h);

/* The messages of a DNS-over-TCP stream (RFC 1035 4.2.2: each after a two-octet length),
 * read as they come in pieces of any size: zero it to start. */
#define DNS_FRAME_HEAD 512     /* the octets kept of each message: its header and question */
struct dns_frame {
	size_t len;                 /* the message's length, being read */
	unsigned lenhave;           /* octets of the length read (0-2) */
	size_t need;                /* octets of the message still to come */
	size_t have;                /* octets of it in head */
	unsigned char head[DNS_FRAME_HEAD];
};

/* Feeds n octets of the stream, up to the end of one message at most: the octets used (the
 * caller feeds the rest again). *done when a message ended: its first f->have octets (at
 * most DNS_FRAME_HEAD) in f->head. Bounded; does no I/O; safe on any input (fuzz_dns_reply). */
size_t dns_frame_feed(struct dns_frame *f, const unsigned char *p, size_t n, bool *done);

/* Fills res (zeroed by the caller, freed with its v) from a reply to a query of type t
 * whose rcode was NOERROR: A/AAAA as text, TXT records each as one string (its
 * character-strings joined), PTR names (dns_reply_ptr_names), MX records
 * (dns_reply_mx_names); *min_ttl the smallest answer
 * TTL of A/AAAA (0xffffffff otherwise). DNS_S_OK, DNS_S_NODATA, or an error for a malformed
 * reply. Does no I/O; safe on any input (fuzz_dns_answer). */
enum dns_status dns_reply_parse(enum dns_type t, const unsigned char *abuf, int alen,
    struct dns_result *res, uint32_t *min_ttl);

/* Textual name of a status ("ok", "nxdomain", "servfail", ...). */
const char *dns_status_name(enum dns_status s);

#endif
