/* received.h — the relay path of a message as SpamAssassin sees it: each Received header
 * parsed into a relay (ip, rdns, helo, by, ident, envelope-from, id, auth), then split into
 * trusted/untrusted and internal/external relays by trusted_networks/internal_networks
 * (or SA's inference when neither is configured). Feeds the X-Spam-Relays-* pseudo-headers,
 * ALL_TRUSTED and the other relay evals, EnvelopeFrom.
 *
 * The Received formats follow Mail::SpamAssassin::Message::Metadata::Received (SA 4.0.1):
 * dozens of MTA dialects; each parse is a fixed list of bounded regexes. No I/O. */
#ifndef MX_RECEIVED_H
#define MX_RECEIVED_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/config.h"

struct match_scratch;

struct rcvd_relay {
	/* NUL-terminated, "" when unknown; ip/rdns/helo/by/ident have SA's invalid
	 * characters replaced with '!' */
	char ip[64], rdns[256], helo[256], by[256], ident[128], envfrom[256], id[128], auth[160];
	bool has_envfrom;
	bool ip_private;
	bool no_reverse_dns;        /* the MTA looks rDNS up and found none */
	bool rdns_not_in_headers;   /* nothing recorded */
	bool trusted, internal, msa;
	char *as_string;            /* "[ ip=... rdns=... helo=... by=... ident=... envfrom=...
	                             * intl=0|1 id=... auth=... msa=0|1 ]" (malloc'd) */
};

/* Where the networks come from: config (rules.trusted_networks ...) plus the rule files'
 * trusted_networks/internal_networks/msa_networks lines. */
struct rcvd_conf {
	struct cfg_cidrlist trusted, internal, msa;
	bool trusted_set, internal_set;      /* configured at all (SA: else inferred) */
};

struct rcvd_info {
	struct rcvd_relay *v; size_t n, cap;             /* every parsed relay, newest first */
	struct rcvd_relay **trusted, **untrusted, **internal, **external;
	size_t ntrusted, nuntrusted, ninternal, nexternal;
	size_t nunparseable;
	int last_trusted_relay_index, last_internal_relay_index;
	char *trusted_str, *untrusted_str, *internal_str, *external_str;   /* X-Spam-Relays-* */
};

/* Parses one Received value (unfolded) into *out. Returns 1 (a relay), 0 (a header SA
 * skips: local handovers, fetchmail ...; *fetcher set for a POP/IMAP fetch marker) or -1
 * (unparseable). */
int received_parse_line(const char *line, struct rcvd_relay *out, bool *fetcher,
    struct match_scratch *ms);

/* Builds ri from the Received values (newest first) and the values of the originating-IP
 * headers (originating_ip_headers: X-Originating-IP ...), after client (the relay mxgate
 * itself saw, may be NULL). Release with received_info_free. */
void received_info_build(struct rcvd_info *ri, const char *const *rcvd, size_t nrcvd,
    const char *const *orig_ip_values, size_t norig, const struct rcvd_relay *client,
    const struct rcvd_conf *conf, struct match_scratch *ms);
void received_info_free(struct rcvd_info *ri);

/* Fills a relay from what mxgate knows of its client (as SA would parse mxgate's own
 * Received header), its envelope sender kept as envfrom. */
void received_client_relay(struct rcvd_relay *r, const char *ip, const char *rdns,
    const char *helo, const char *by, const char *mail_from);

/* SA's IP_PRIVATE: 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16, 100.64/10, IPv6
 * loopback, link-local and v4-mapped private addresses. */
bool received_ip_is_private(const char *ip);

#endif
