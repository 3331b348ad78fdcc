/* senderdom.h — the sender's domain must resolve (Postfix's reject_unknown_sender_domain,
 * Haraka's mail_from.is_resolvable), at MAIL FROM.
 *
 * The domain of MAIL FROM (not the null sender, not an address literal, not one of
 * accept_domains: Postfix skips its final destinations) is normalised (domain.c: case, one
 * trailing dot, U-labels as A-labels) and looked up on the worker's c-ares resolver
 * (filters/dns.c: cached, each query bounded by its timeout): MX first; NODATA (or a failed
 * MX query) asks A and AAAA at once. The outcome is one of enum senderdom_result: a symbol
 * with a score, and with `action: reject` a reply: the domain not found (NXDOMAIN, or NODATA
 * for MX, A and AAAA) -> `unknown_code` x.1.8 (450 by default, Postfix's
 * unknown_address_reject_code); a null MX (RFC 7505) -> 550 5.7.27; with `check_mx_hosts`,
 * a domain whose MX hosts (or, without MX, its own addresses) have no public address ->
 * `unknown_code` x.1.8. A DNS failure or timeout with nothing found is `on_error`: 451 4.4.3
 * (tempfail) or on (accept). Authenticated clients, those in `allow` and (skip_allowed)
 * those allow-listed by reputation or the DNS lists (REP_ALLOW, DNSBL_ALLOW) are not
 * checked. */
#ifndef MX_SENDERDOM_H
#define MX_SENDERDOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/dns.h"
#include "proxy/cfg.h"

enum senderdom_action { SENDERDOM_ACTION_REJECT = 0, SENDERDOM_ACTION_SCORE };
enum senderdom_on_error { SENDERDOM_ON_ERROR_TEMPFAIL = 0, SENDERDOM_ON_ERROR_ACCEPT };

struct senderdom_scores_config {
	double unknown, null_mx, bad_mx, temperror;
};

struct senderdom_config {
	bool enabled;
	int action;                 /* enum senderdom_action */
	long unknown_code;          /* 4xx or 5xx: not found, bad MX */
	bool check_mx_hosts;        /* the MX hosts (or implicit MX) need a public address */
	int on_error;               /* enum senderdom_on_error */
	uint64_t timeout;           /* ms per query; 0 = dns.timeout */
	struct cfg_cidrlist allow;  /* clients not checked */
	bool skip_allowed;          /* not for clients with REP_ALLOW or DNSBL_ALLOW */
	struct senderdom_scores_config scores;
};
extern const struct cfg_table senderdom_config_table;

enum senderdom_result {
	SENDERDOM_OK = 0,       /* an MX, or without one an A or AAAA record */
	SENDERDOM_UNKNOWN,      /* NXDOMAIN, or NODATA for MX, A and AAAA */
	SENDERDOM_NULL_MX,      /* RFC 7505: the only MX is "0 ." */
	SENDERDOM_BAD_MX,       /* check_mx_hosts: no MX host (implicit MX: no address of the
	                         * domain) with a public address */
	SENDERDOM_TEMPERROR,    /* a DNS failure or timeout, and nothing found that decides */
	SENDERDOM_PENDING,      /* more answers are needed */
};
/* "ok", "unknown", "null_mx", "bad_mx", "temperror" ("pending"). */
const char *senderdom_result_name(enum senderdom_result r);

/* Where a check stands. */
enum senderdom_phase {
	SENDERDOM_PHASE_MX = 0,     /* the MX answer is in (mx, null_mx, hosts) */
	SENDERDOM_PHASE_ADDR,       /* the domain's own A and AAAA are asked (no usable MX) */
	SENDERDOM_PHASE_HOSTS,      /* the MX hosts' A and AAAA are asked (check_mx_hosts) */
};

/* What is known of a sender domain; the address counts are of the queries of the phase. */
struct senderdom_facts {
	enum senderdom_phase phase;
	enum dns_status mx;         /* the MX query's status */
	bool null_mx;               /* every MX record is the root, "." (RFC 7505) */
	size_t hosts;               /* MX host names to look up (not ".", not an address) */
	unsigned pending;           /* address queries not answered yet */
	unsigned found_public;      /* address answers holding a public address */
	unsigned found_private;     /* ... holding only loopback/private/unusable ones */
	unsigned temp;              /* ... that failed (SERVFAIL, timeout, error) */
	unsigned none;              /* ... NXDOMAIN or NODATA */
};

/* The decision table: the result for f, or SENDERDOM_PENDING with *next the phase whose
 * queries to start (the same phase: wait for the pending ones). check_mx_hosts: the
 * addresses must be public ones. Pure. */
enum senderdom_result senderdom_decide(const struct senderdom_facts *f, bool check_mx_hosts,
    enum senderdom_phase *next);

/* True when the textual address can receive mail from the Internet: not loopback,
 * unspecified, RFC 1918 / RFC 6598 / ULA private, link-local, multicast or broadcast. */
bool senderdom_addr_is_public(const char *ip);

/* Splits an MX answer item "PREFERENCE NAME" (dns.h): *pref and name (cap octets, "." for
 * the root). 0, or -1 when malformed. */
int senderdom_mx_item(const char *item, unsigned *pref, char *name, size_t cap);

/* The MX hosts looked up with check_mx_hosts, lowest preference first (Postfix's
 * smtp_mx_address_limit is 5 too). */
#define SENDERDOM_MX_HOSTS_MAX 5

struct hook_module;
extern const struct hook_module senderdom_module;
/* Registers mxgate_sender_domain_checks_total{result}. */
void senderdom_metrics(void);

#endif
