/* dnsbl.h — DNS block and allow lists with postscreen-style weighted scoring.
 *
 * At HOOK_CONNECT every IP list is queried in parallel; at HOOK_HELO / HOOK_MAIL the domain
 * lists are queried for the HELO name / the MAIL FROM domain. Each list whose answer passes
 * its code filter adds its weight (negative for allow lists) and a symbol DNSBL_<ZONE>;
 * when the sum reaches `threshold` the configured action fires. Error answers (outside
 * 127.0.0.0/8, 127.255.255.0/24), SERVFAIL and timeouts never count: they are logged and
 * counted per list. A client that passed is remembered for `pass_ttl`: in this process, and
 * with `pass_store` in LMDB or Redis as well (filters/passcache.h). */
#ifndef MX_DNSBL_H
#define MX_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"

enum dnsbl_list_type { DNSBL_TYPE_IP = 0, DNSBL_TYPE_DOMAIN };
/* delay: the listed client's reply (at connect, the greeting) is held `delay`, then it is
 * refused as with reject: spamd's tarpit for its blacklists, as reputation's deny_action. */
enum dnsbl_action { DNSBL_ACTION_REJECT = 0, DNSBL_ACTION_TEMPFAIL, DNSBL_ACTION_SCORE, DNSBL_ACTION_DROP,
	DNSBL_ACTION_DELAY };

struct dnsbl_list_config {
	char *zone;
	double weight;
	int type;                   /* enum dnsbl_list_type */
	struct cfg_strlist codes;   /* "127.0.0.2-127.0.0.11", "127.0.0.4", "0x04/bitmask"; empty = any 127/8 */
	char *reason;               /* reply template: {ip} {zone} {txt}; NULL = the TXT record */
	char *symbol;               /* symbol name; NULL = DNSBL_<ZONE> (of reply_name when set) */
	char *reply_name;           /* the list's name for the client and the mail (reply, {zone},
	                             * the symbol): hides a key in the zone; NULL = zone */
};

struct dnsbl_config {
	double threshold;
	double allow_threshold;     /* < 0: a connect sum at or below it allow-lists the client */
	int action;                 /* enum dnsbl_action */
	uint64_t delay;             /* ms action delay holds the reply (at most 10 min) */
	struct cfg_list lists;      /* struct dnsbl_list_config */
	uint64_t pass_ttl;          /* ms: the most a pass is remembered */
	uint64_t pass_min_ttl;      /* ms: the least, however short the answers' TTLs */
	char *pass_store;           /* "local", "lmdb:/dir" or a redis:// URL (filters/passcache.h) */
	uint64_t pass_store_timeout; /* ms: a Redis pass lookup's deadline */
	uint64_t timeout;           /* ms; 0 = dns.timeout */
	bool skip_private;          /* no lookups for loopback/private clients */
	long error_flag_after;      /* consecutive errors before a list is flagged in the log */
};
extern const struct cfg_table dnsbl_config_table;

/* The symbol of a client allow-listed by allow_threshold (greylisting skips it). */
#define DNSBL_ALLOW_SYMBOL "DNSBL_ALLOW"

/* ---- pure pieces, exposed for tests ------------------------------------------------ */

/* One compiled code filter entry. */
struct dnsbl_code {
	uint32_t lo, hi;
	uint32_t mask;             /* != 0: bitmask test */
	bool octets;               /* postscreen's pattern: each octet in its set */
	uint8_t set[4][32];        /* the allowed values of each octet, a bit each */
};

/* Parses one code filter entry: "127.0.0.2", "127.0.0.2-127.0.0.11", "127.0.1.0/24",
 * "0x04/bitmask" or "4/bitmask" (the last octet ANDed with the mask), or postscreen's
 * pattern, where an octet may be a set of values and ranges: "127.0.0.[2..11]",
 * "127.0.0.[17;18]", "127.0.[2..15].[1;3..4]". Returns 0 or -1. */
int dnsbl_code_parse(const char *s, struct dnsbl_code *out);
/* Does answer (host order) pass the filter? An empty filter accepts any listing answer. */
bool dnsbl_code_match(const struct dnsbl_code *codes, size_t n, uint32_t answer);

enum dnsbl_answer_class { DNSBL_ANSWER_LISTED = 0, DNSBL_ANSWER_FILTERED, DNSBL_ANSWER_ERROR };
/* Classifies one A answer: outside 127.0.0.0/8 or inside 127.255.255.0/24 -> ERROR
 * (refused query / public resolver); else LISTED when it passes the filter, FILTERED when not. */
enum dnsbl_answer_class dnsbl_answer_classify(const struct dnsbl_code *codes, size_t n,
    uint32_t answer);

/* Writes the symbol for zone: "DNSBL_" + upper-cased zone with non-alphanumerics as '_'. */
void dnsbl_symbol_name(const char *zone, char *out, size_t outlen);

/* Expands a reason template ({ip} {zone} {txt}) into out (truncating). */
void dnsbl_reason_format(const char *tmpl, const char *ip, const char *zone, const char *txt,
    char *out, size_t outlen);

/* Errors counted for zone since start, all workers together (metrics, tests). */
unsigned long dnsbl_list_errors(const char *zone);
/* Empties the pass cache (the control socket's `flush passcache`); returns how many
 * clients it held. */
size_t dnsbl_pass_cache_flush(void);
/* How many clients the pass cache holds (the control socket's `passcache`). */
size_t dnsbl_pass_cache_count(void);

/* The hook module (listed in proxy/modules.def). */
struct hook_module;
extern const struct hook_module dnsbl_module;

#endif
