/* spf.h — SPF (RFC 7208) with libspf2 at MAIL FROM.
 *
 * libspf2 resolves with a blocking resolver (filters/spf_dns.c: the servers of dns.resolvers,
 * any port; without them glibc's, resolv.conf on port 53), so each check runs in the libuv
 * thread pool (uv_queue_work) with a timeout; a late result is discarded. The
 * result becomes a symbol (SPF_PASS, SPF_FAIL, ...) with a configurable score whose
 * description is the domain checked; filters/senderauth.c turns it into the
 * `spf=<result> smtp.mailfrom=<domain>` part of the one Authentication-Results field it adds
 * at end of data (RFC 8601).
 * With reject_fail a `-all` fail is refused with 550 5.7.23. */
#ifndef MX_SPF_H
#define MX_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"

struct spf_scores_config {
	double pass, fail, softfail, neutral, none, temperror, permerror;
};

struct spf_config {
	bool enabled;
	bool reject_fail;
	bool tempfail_temperror;         /* 451 4.7.24 on temperror (default: score only) */
	bool helo;                       /* check the HELO identity when MAIL FROM is <> */
	bool helo_always;                /* also check the HELO identity beside MAIL FROM */
	bool reject_helo_fail;           /* 550 5.7.23 when the HELO identity fails */
	uint64_t timeout;                /* ms */
	struct spf_scores_config scores;
	struct spf_scores_config helo_scores;   /* SPF_HELO_<RESULT> */
	struct cfg_strlist records;      /* static "name TYPE data" records answered before DNS
	                                    (tests, overrides): "example.org TXT v=spf1 -all" */
};
extern const struct cfg_table spf_config_table;

enum spf_result {
	SPF_R_NONE = 0, SPF_R_NEUTRAL, SPF_R_PASS, SPF_R_FAIL, SPF_R_SOFTFAIL,
	SPF_R_TEMPERROR, SPF_R_PERMERROR,
};
/* RFC 8601 / RFC 7208 result word: "pass", "fail", "softfail", ... */
const char *spf_result_name(enum spf_result r);

/* One check's input and output, as run (blocking) in a worker thread. */
struct spf_check {
	char ip[46];
	char helo[256];
	char sender[512];        /* "" = null sender: the HELO identity is checked */
	bool check_helo;         /* also check the HELO identity into helo_result */
	bool helo_given;         /* helo_result is known already (the session's), not checked */
	enum spf_result result;
	enum spf_result helo_result;
	char explanation[256];   /* fail: the domain's explanation, may be "" */
};

struct spf_engine;
/* Creates an engine: libspf2 over the resolver (SPF_DNS_CACHE) with the static records of
 * cfg (may be NULL) in an in-memory zone above it. The resolver asks dc's resolvers (dc may
 * be NULL: resolv.conf's). With offline set, the zone is the only source: names not in it
 * do not exist (tests). NULL on failure. */
struct dns_config;
struct spf_engine *spf_engine_new(const struct cfg_strlist *records, bool offline,
    const struct dns_config *dc);
void spf_engine_free(struct spf_engine *e);
/* Adds a record "name TYPE data" (TYPE: TXT, A, AAAA, MX, PTR) to the engine's zone;
 * 0 or -1. Not thread-safe against running checks: call before use. */
int spf_engine_add_record(struct spf_engine *e, const char *rec);
/* Runs one check; blocks on DNS. Thread-safe. */
void spf_engine_check(struct spf_engine *e, struct spf_check *c);

/* The domain checked for sender ("" / no '@' -> helo). */
const char *spf_check_domain(const struct spf_check *c);

struct hook_module;
extern const struct hook_module spf_module;

/* What a worker of the module did (tests). */
struct spf_worker_stats {
	unsigned long helo_checks;   /* checks of the HELO identity beside MAIL FROM */
};
void spf_worker_get_stats(void *wstate, struct spf_worker_stats *st);

#endif
