/* eval_int.h — what the eval families (rules/eval_*.c) share: the settings of a rule set
 * they read, the per-message state, small helpers, and every eval function (the one
 * registration table in eval.c names them). Not for use outside rules/. */
#ifndef MX_EVAL_INT_H
#define MX_EVAL_INT_H

#include "eval.h"
#include "match.h"
#include "received.h"
#include "rules_int.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* A set of lower-case strings (domains, names); exact lookups. */
struct eval_strset { char **v; size_t n, cap; bool sorted; };
void eval_strset_add(struct eval_strset *s, const char *str, size_t len);
void eval_strset_finish(struct eval_strset *s);          /* sorts; call before lookups */
bool eval_strset_has(const struct eval_strset *s, const char *str, size_t len);
void eval_strset_free(struct eval_strset *s);

/* A list from the rule files: key is the directive; name the (NAME) of enlist_addrlist /
 * enlist_uri_host ("" otherwise); v the entries (for *_from_rcvd: address, domain pairs). */
struct eval_list { char *key, *name; char **v; size_t n; };

/* Settings of a rule set the evals read: the trust path (config and rule files), and
 * lists from the rule files (freemail_domains, util_rb_*tld, ...). Read-only once built. */
struct eval_conf {
	struct rcvd_conf rcvd;
	char **orig_ip_headers; size_t norig;      /* originating_ip_headers */
	bool client_relay;                          /* mxgate's client is the newest relay */
	char *hostname;                             /* "by" of that relay */
	struct eval_strset freemail;                /* freemail_domains without wildcards */
	struct match_re *freemail_re;               /* \@(?:wildcard|...)$, or NULL */
	struct eval_strset freemail_welcome;        /* freemail_welcomelist / whitelist */
	struct eval_strset tld2, tld3;              /* util_rb_2tld, util_rb_3tld */
	struct uri_conf *uri;                       /* util_rb_tld, redirector_pattern */
	char *envelope_sender_header;               /* NULL: SA's heuristics */
	struct eval_list *lists; size_t nlists;     /* welcomelist_from, enlist_addrlist ... */
	bool ok_locales_all;
	bool dkim_uris;                             /* parse_dkim_uris (default 1) */
};

struct rule_src;
struct rules_opts;
/* Builds the settings from the rule files' lines and the config; never NULL. */
struct eval_conf *eval_conf_new(const struct rule_src *src, const struct rules_opts *o);
void eval_conf_free(struct eval_conf *c);
/* SA's RegistryBoundaries is_domain_valid (uri_domain_valid with the set's TLDs). */
bool eval_domain_valid(const struct eval_conf *c, const char *d);

/* Per-message state: an arena for strings handed out, and each family's analysis, made
 * on first use. */
struct eval_chunk;
struct eval_mime;
struct eval_html;
#define EVAL_HDR_CACHE 1024          /* slots at most; a power of two */
#define EVAL_HDR_CACHE_FIRST 64      /* slots at first; doubled when half are taken */
struct eval_hdr_cache {
	const char *req; uint32_t hash, gen; const char **v; size_t n;
	const char *joined; size_t jlen;  /* lazily: the values as a header rule sees them */
};
struct eval_msg {
	struct eval_chunk *chunks;
	uint32_t gen;                                 /* bumped per message: cache validity */
	struct eval_hdr_cache *hcache;                /* SA's get() results, by request: */
	size_t hslots;                                /* slots (0: none yet), as many as needed */
	bool rcvd_done; struct rcvd_info rcvd;
	size_t hused;                                 /* hcache slots of this message */
	int rcvd_offset;                              /* 1 when mxgate's client relay leads */
	bool envfrom_done; const char *envfrom;       /* NULL: undefined */
	/* eval_header.c */
	int date_state; double date_diff, date_header_time; bool have_date;
	int recip_state; bool tocc_sorted; double tocc_similar;
	int hotmail_state; bool hotmail_forged, hotmail_none;
	/* eval_mime.c, eval_html.c */
	struct eval_mime *mime;
	struct eval_html *html;
	void *images;                                 /* eval_list.c */
	struct uri_details *uris;                     /* eval_list.c */
	/* eval_misc.c: FreeMail's _parse_body, and whether it changed the body view */
	bool fm_done, fm_skip, fm_mutated; const char **fm_list; size_t fm_n;
};

/* The relays of the message (built on first use) and SA's EnvelopeFrom ("" none). */
const struct rcvd_info *eval_relays(struct eval_ctx *c);
const char *eval_envelope_from(struct eval_ctx *c);

/* A regex compiled once for the life of the process (built-in patterns of the evals);
 * aborts on a bad pattern. Flags as in rule_parse.h (RULE_RE_*). Thread-safe. */
struct eval_rx { const char *re; unsigned flags; struct match_re *compiled; };
bool eval_rx_match(struct eval_ctx *c, struct eval_rx *rx, const char *s, size_t len);
/* The same with groups (see match_re_groups). */
bool eval_rx_groups(struct eval_ctx *c, struct eval_rx *rx, const char *s, size_t len,
    size_t *ov, int nov);
static inline bool eval_rx_str(struct eval_ctx *c, struct eval_rx *rx, const char *s)
{
	return eval_rx_match(c, rx, s, strlen(s));
}

/* hdr_addr.c: SA's Util::parse_header_addresses (its internal parser) on a raw field value:
 * each entry's display name ("phrase", NULL when none) and address (NULL when none). */
struct hdr_address { const char *phrase, *address; };
size_t hdr_parse_addresses(struct eval_ctx *c, const char *str, struct hdr_address *out,
    size_t max);
/* The compiled pattern of an eval_rx (compiling it on first use). */
const struct match_re *eval_rx_get(struct eval_rx *rx);

/* A regex built from message data (SA's \Q$var\E patterns): compiled, matched once,
 * freed; false when it does not compile. Callers refuse data containing "\E". */
bool eval_dyn_match(struct eval_ctx *c, const char *pat, unsigned flags, const char *s);

/* SA's RegistryBoundaries::trim_domain: the registered domain of a host name (util_rb_2tld,
 * util_rb_3tld and the US state domains), lower case. Lives until the scan ends. */
const char *eval_registered_domain(struct eval_ctx *c, const char *host);

/* SA's Util::parse_rfc822_date: seconds since the epoch, or NAN when unparseable. */
double eval_parse_date(struct eval_ctx *c, const char *s);


/* FreeMail: is this (lower-case) address at a free mail provider? */
bool eval_is_freemail(struct eval_ctx *c, const char *email);
/* URIDetail's uri_detail definition, compiled (eval_list.c) */
int eval_prepare_uri_detail(struct eval_call *call, const char **err);
void eval_release_uri_detail(struct eval_call *call);
/* prepare/release for evals whose last argument is an optional regex */
int eval_prepare_regex_arg(struct eval_call *call, const char **err);
void eval_release_regex_arg(struct eval_call *call);

/* Releases what the MIME / HTML analyses hold outside the arena (NULL: nothing). */
void eval_mime_free(struct eval_mime *mm);
void eval_html_free(struct eval_html *eh);
/* The message's MIME tree as SpamAssassin parses it (samsg.h), made on first use. */
struct samsg;
const struct samsg *eval_samsg(struct eval_ctx *c);
int eval_prepare_html_text_match(struct eval_call *call, const char **err);
/* The HTML analysis of samsg part i (NULL when it is no HTML part), and the link targets
 * of all HTML parts; made on first use. */
struct html_result;
struct uri_list;
const struct html_result *eval_html_part(struct eval_ctx *c, size_t part);
/* The same, the analysis (when not made yet) made from body: the part's body as
 * samsg_body gives it (len octets), which the caller has decoded already; borrowed for
 * the call. */
const struct html_result *eval_html_part_body(struct eval_ctx *c, size_t part, const char *body,
    size_t len);
const struct uri_list *eval_html_uris(struct eval_ctx *c);
/* _process_html_uri_list's types and anchor texts: each HTML link's tag added to the types
 * of its entry in d, each <a>'s text to the anchor texts of the entry its href keys (once
 * each), and "parsed" to an HTML entry left without a type (add_uri_detail_list's default). */
struct uri_details;
void eval_html_uri_info(struct eval_ctx *c, struct uri_details *d);
/* Whether uri is the href of an <a> tag of an HTML part (SA's uri detail type "a"; <form
 * action>, <img src> ... have their own types). */
bool eval_html_is_anchor(struct eval_ctx *c, const char *uri);
/* The message's URIs as SA's get_uri_detail_list has them (made on first use: the
 * rendered body's text URIs, then the HTML links); released by eval_msg_reset. */
struct uri_details;
const struct uri_details *eval_uri_details(struct eval_ctx *c);
void eval_uri_details_free(struct uri_details *d);

/* ---- the eval functions, by family */
#define EVAL_FN(name) double name(struct eval_ctx *c, const struct eval_call *call)

/* eval_trust.c (RelayEval, trust) */
EVAL_FN(eval_check_all_trusted);
EVAL_FN(eval_check_no_relays);
EVAL_FN(eval_check_relays_unparseable);
EVAL_FN(eval_check_for_sender_no_reverse);
EVAL_FN(eval_check_for_from_domain_in_received_headers);
EVAL_FN(eval_check_for_forged_received_trail);
EVAL_FN(eval_check_for_no_rdns_dotcom_helo);
EVAL_FN(eval_helo_ip_mismatch);
EVAL_FN(eval_check_for_numeric_helo);
EVAL_FN(eval_check_for_illegal_ip);
EVAL_FN(eval_check_for_forged_received_ip_helo);
EVAL_FN(eval_check_mailfrom_matches_rcvd);

/* eval_list.c (WLBLEval, WelcomeListSubject, VBounce, ImageInfo, URIEval, HTTPSMismatch,
 * DKIM without DNS) */
EVAL_FN(eval_check_from_in_blocklist);
EVAL_FN(eval_check_from_in_welcomelist);
EVAL_FN(eval_check_from_in_default_welcomelist);
EVAL_FN(eval_check_from_in_list);
EVAL_FN(eval_check_replyto_in_list);
EVAL_FN(eval_check_to_in_blocklist);
EVAL_FN(eval_check_to_in_welcomelist);
EVAL_FN(eval_check_to_in_more_spam);
EVAL_FN(eval_check_to_in_all_spam);
EVAL_FN(eval_check_subject_in_welcomelist);
EVAL_FN(eval_check_subject_in_blocklist);
EVAL_FN(eval_have_any_bounce_relays);
EVAL_FN(eval_check_welcomelist_bounce_relays);
EVAL_FN(eval_check_uri_host_listed);
EVAL_FN(eval_check_uri_detail);
EVAL_FN(eval_check_uri_host_in_blocklist);
EVAL_FN(eval_check_uri_host_in_welcomelist);
EVAL_FN(eval_check_uri_truncated);
EVAL_FN(eval_check_https_http_mismatch);
EVAL_FN(eval_dkim_offline);
EVAL_FN(eval_image_count);
EVAL_FN(eval_pixel_coverage);
EVAL_FN(eval_image_to_text_ratio);
/* all_from_addrs(): the sender addresses, lower case, deduplicated */
size_t eval_all_from_addrs(struct eval_ctx *c, const char **out, size_t max);

/* eval_misc.c (FreeMail, check_bayes) */
EVAL_FN(eval_check_freemail_header);
EVAL_FN(eval_check_freemail_from);
EVAL_FN(eval_check_freemail_replyto);
EVAL_FN(eval_check_freemail_body);
EVAL_FN(eval_check_bayes);            /* Bayes: the classifier's verdict */

/* eval_mime.c (MIMEEval, BodyEval) */
EVAL_FN(eval_check_for_mime);
EVAL_FN(eval_check_for_mime_html);
EVAL_FN(eval_check_for_mime_html_only);
EVAL_FN(eval_check_mime_multipart_ratio);
EVAL_FN(eval_check_for_ascii_text_illegal);
EVAL_FN(eval_check_abundant_unicode_ratio);
EVAL_FN(eval_check_qp_ratio);
EVAL_FN(eval_check_msg_parse_flags);
EVAL_FN(eval_check_ma_non_text);
EVAL_FN(eval_check_base64_length);
EVAL_FN(eval_check_for_uppercase);
EVAL_FN(eval_check_body_8bits);
EVAL_FN(eval_check_for_faraway_charset);
EVAL_FN(eval_check_blank_line_ratio);
EVAL_FN(eval_tvd_vertical_words);
EVAL_FN(eval_check_body_length);
EVAL_FN(eval_multipart_alternative_difference);
EVAL_FN(eval_multipart_alternative_difference_count);
EVAL_FN(eval_check_stock_info);

/* eval_html.c (HTMLEval) */
EVAL_FN(eval_html_tag_balance);
EVAL_FN(eval_html_image_only);
EVAL_FN(eval_html_image_ratio);
EVAL_FN(eval_html_charset_faraway);
EVAL_FN(eval_html_tag_exists);
EVAL_FN(eval_html_test);
EVAL_FN(eval_html_eval);
EVAL_FN(eval_html_range);
EVAL_FN(eval_html_text_match);
EVAL_FN(eval_html_title_subject_ratio);
EVAL_FN(eval_check_iframe_src);

/* eval_header.c (HeaderEval) */
EVAL_FN(eval_check_for_fake_aol_relay_in_rcvd);
EVAL_FN(eval_check_for_faraway_charset_in_headers);
EVAL_FN(eval_check_for_unique_subject_id);
EVAL_FN(eval_check_illegal_chars);
EVAL_FN(eval_check_for_forged_hotmail_received_headers);
EVAL_FN(eval_check_for_no_hotmail_received_headers);
EVAL_FN(eval_check_for_msn_groups_headers);
EVAL_FN(eval_check_for_forged_eudoramail_received_headers);
EVAL_FN(eval_check_for_forged_yahoo_received_headers);
EVAL_FN(eval_check_for_forged_juno_received_headers);
EVAL_FN(eval_check_for_forged_gmail_received_headers);
EVAL_FN(eval_check_for_matching_env_and_hdr_from);
EVAL_FN(eval_sorted_recipients);
EVAL_FN(eval_similar_recipients);
EVAL_FN(eval_check_for_missing_to_header);
EVAL_FN(eval_check_for_forged_gw05_received_headers);
EVAL_FN(eval_check_for_shifted_date);
EVAL_FN(eval_subject_is_all_caps);
EVAL_FN(eval_check_for_to_in_subject);
EVAL_FN(eval_check_outlook_message_id);
EVAL_FN(eval_check_messageid_not_usable);
EVAL_FN(eval_check_header_count_range);
EVAL_FN(eval_check_unresolved_template);
EVAL_FN(eval_check_ratware_name_id);
EVAL_FN(eval_check_ratware_envelope_from);
EVAL_FN(eval_gated_through_received_hdr_remover);
EVAL_FN(eval_received_within_months);
EVAL_FN(eval_check_equal_from_domains);

#endif
