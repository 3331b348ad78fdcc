/* senderauth.h — sender authentication at end of data: DKIM (RFC 6376, RFC 8463), ARC
 * (RFC 8617), DMARC (RFC 7489) and the one Authentication-Results field (RFC 8601) that
 * carries them together with the SPF result filters/spf.c found at MAIL FROM.
 *
 * At HOOK_EOM the module indexes the header block, removes Authentication-Results fields
 * that claim our authserv-id (hostname), starts every key and DMARC lookup at once through
 * the worker's c-ares resolver and cache (filters/dns.c), hashes the body in slices on the
 * loop, and when the answers are in (or `dkim.timeout` has passed: missing answers are
 * temperror) verifies, applies the DMARC policy per `dmarc.action`, adds SpamAssassin's
 * symbols with scores and the header. The authenticated sender domain (the From domain's
 * organisational domain when a DKIM signature or SPF aligns with From) is published as the
 * symbol AUTH_DOMAIN (score 0, description = the domain) for ratelimit and reputation.
 *
 * Config sections `dkim:`, `arc:`, `dmarc:`. The Authentication-Results field is added
 * whenever SPF, DKIM or DMARC is on. No DMARC aggregate or failure reports are sent. */
#ifndef MX_SENDERAUTH_H
#define MX_SENDERAUTH_H

#include "filters/arc_seal.h"
#include "proxy/cfg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hook_env;
struct hook_module;

enum senderauth_on_error { SENDERAUTH_ON_ERROR_ACCEPT = 0, SENDERAUTH_ON_ERROR_TEMPFAIL,
	SENDERAUTH_ON_ERROR_REJECT };

struct dkim_scores_config { double is_signed, valid, valid_au, valid_ef, invalid; };
struct dkim_config {
	bool enabled;
	int action;                  /* enum dmarc_action: accepted, changes nothing (see the key) */
	uint64_t timeout;            /* ms: lookups + hashing of one message */
	int on_error;                /* enum senderauth_on_error: when the step cannot finish */
	long max_signatures;
	long max_headers;
	long min_key_bits, max_key_bits;
	uint64_t clock_skew;         /* ms */
	struct dkim_scores_config scores;
};
extern const struct cfg_table dkim_config_table;

struct arc_scores_config { double is_signed, valid, invalid; };
struct arc_config {
	bool enabled;
	int action;                    /* enum dmarc_action: accepted, changes nothing (see the key) */
	long max_instances;
	struct arc_scores_config scores;
	struct arc_seal_config seal;   /* sealing (filters/arc_seal.c) */
};
extern const struct cfg_table arc_config_table;

enum dmarc_action { DMARC_ACTION_HONOR = 0, DMARC_ACTION_LOG };
enum dmarc_on_temperror { DMARC_TEMPERROR_ACCEPT = 0, DMARC_TEMPERROR_TEMPFAIL,
	DMARC_TEMPERROR_POLICY };
struct dmarc_scores_config { double pass, reject, quarantine, none, missing; };
struct dmarc_config {
	bool enabled;
	int action;                        /* enum dmarc_action */
	int on_temperror;                  /* enum dmarc_on_temperror, with action honor */
	struct cfg_strlist override_domains;   /* From domains (and their subdomains) whose
	                                          policy is never enforced here */
	struct cfg_strlist trusted_arc_sealers; /* a passing ARC chain last sealed by one of
	                                          these overrides a DMARC failure */
	char *psl_file;                    /* Public Suffix List; NULL = libpsl's default */
	struct dmarc_scores_config scores;
};
extern const struct cfg_table dmarc_config_table;

extern const struct hook_module senderauth_module;

/* The authenticated sender domain of the current message (set at HOOK_EOM by this module:
 * DKIM- or SPF-aligned with From), or NULL. Borrowed from env's symbols. */
const char *senderauth_auth_domain(const struct hook_env *env);

#endif
