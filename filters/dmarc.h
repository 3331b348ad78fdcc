/* dmarc.h — DMARC (RFC 7489): record parsing, the organisational domain (Public Suffix
 * List through libpsl), identifier alignment and the policy decision with pct sampling.
 *
 * Pure apart from reading the PSL file once (dmarc_psl_load); no DNS: the caller queries
 * _dmarc.<From domain> and, when that has no record, _dmarc.<organisational domain>, and
 * hands the answers to dmarc_evaluate. No aggregate or failure reports are sent. */
#ifndef MX_DMARC_H
#define MX_DMARC_H

#include <stdbool.h>
#include <stddef.h>

enum dmarc_policy { DMARC_POLICY_UNSET = 0, DMARC_POLICY_NONE, DMARC_POLICY_QUARANTINE,
	DMARC_POLICY_REJECT };
const char *dmarc_policy_name(enum dmarc_policy p);

struct dmarc_record {
	enum dmarc_policy p, sp;       /* sp UNSET: p applies to subdomains */
	enum dmarc_policy np;          /* RFC 9091: non-existent subdomains; UNSET: sp, then p */
	bool adkim_strict, aspf_strict;
	int pct;                       /* 0..100 */
};

enum dmarc_parse_status {
	DMARC_REC_OK = 0,
	DMARC_REC_NOT_DMARC = -1,      /* does not start with v=DMARC1: not a DMARC record */
	DMARC_REC_INVALID = -2,        /* v=DMARC1 but unusable (no valid p=, no rua= to save it) */
};
/* Parses one TXT record (RFC 7489 6.3, 6.4). Tag names are case-insensitive; unknown
 * tags are ignored; a bad p= with a valid rua= counts as p=none (6.6.3). */
int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r);

/* The organisational domain (RFC 7489 3.2) of domain into out (lowercased): the registrable
 * domain per the PSL, or domain itself when it is a public suffix or unknown. 0 or -1. */
int dmarc_org_domain(const char *domain, char *out, size_t cap);
/* Loads the PSL from path (NULL = libpsl's built-in / system default); keeps the first
 * successful load process-wide. 0 or -1. Thread-safe. */
int dmarc_psl_load(const char *path);

/* Are a and b aligned (3.1): strict = equal, relaxed = same organisational domain. */
bool dmarc_aligned(const char *a, const char *b, bool strict);

/* The domain of an RFC 5322 From: field value into out (lowercased). Returns 0; -1 when
 * there is no usable address; -2 when it names several addresses in different domains. */
int dmarc_from_domain(const char *value, size_t len, char *out, size_t cap);

/* Every distinct usable domain of a From: field value (lowercased, A-labels), appended to
 * doms[*n..max) and counted in *n; mailboxes without a usable domain are skipped. For RFC
 * 7489 6.6.1's several authors: each domain is checked. 0, or -1 when there were more than
 * max distinct domains (doms holds the first max). */
int dmarc_from_domains(const char *value, size_t len, char (*doms)[256], size_t max, size_t *n);

enum dmarc_result { DMARC_RESULT_NONE = 0, DMARC_RESULT_PASS, DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR, DMARC_RESULT_PERMERROR };
const char *dmarc_result_name(enum dmarc_result r);

/* A DNS answer for one _dmarc name, as the caller got it. */
enum dmarc_dns { DMARC_DNS_RECORDS = 0, DMARC_DNS_NONE /* NXDOMAIN / NODATA */,
	DMARC_DNS_TEMPFAIL };
struct dmarc_answer {
	enum dmarc_dns status;
	const char *const *txt;        /* DMARC_DNS_RECORDS: the TXT strings */
	size_t n;
};

struct dmarc_input {
	const char *from_domain;       /* RFC5322.From domain */
	const char *org_domain;        /* its organisational domain */
	struct dmarc_answer at_from;   /* _dmarc.<from_domain> */
	struct dmarc_answer at_org;    /* _dmarc.<org_domain> (ignored when the same domain or
	                                  when at_from had a record) */
	const char *const *dkim_pass;  /* d= of the passing (non-testing) DKIM signatures */
	size_t ndkim_pass;
	const char *spf_domain;        /* the SPF-authenticated domain (MAIL FROM, or HELO for
	                                  the null sender) when SPF passed, else NULL */
	bool aligned_temperror;        /* an aligned DKIM signature or SPF check ended in a
	                                  temporary error: no pass becomes temperror, not fail */
	int roll;                      /* 0..99, uniform: the pct sample (6.6.4) */
	bool from_nonexistent;         /* the From domain is known not to exist (NXDOMAIN):
	                                  np= applies when the record is the organisational
	                                  domain's (RFC 9091) */
};

struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy;      /* the policy that applies (p, or sp for a subdomain) */
	enum dmarc_policy disposition; /* what to do after pct: NONE on pass; on a temperror
	                                  from an aligned check, what a failure would get */
	bool sampled_out;              /* pct moved the disposition one step down */
	bool no_record;                /* result NONE because no DMARC record exists */
	bool dkim_aligned, spf_aligned;
	char aligned_domain[254];      /* the DKIM d= or SPF domain that aligned, "" if none */
	char policy_domain[254];       /* where the record was found */
	struct dmarc_record rec;
	const char *reason;            /* static, for comments */
};

/* RFC 7489 6.6.3 / 6.6.4 with the answers the caller got. */
void dmarc_evaluate(const struct dmarc_input *in, struct dmarc_outcome *out);

#endif
