/* uri.h — a message's URIs as SpamAssassin 4.0.1 finds and cleans them: the text finder of
 * PerMsgStatus (_tbirdurire over the rendered body: scheme://..., www./ftp. hosts, bare
 * addresses, schemeless host names ending in a valid TLD), HTML's target_uri (links made
 * absolute against <base href>), Util::uri_list_canonicalize (decoded, de-obfuscated and
 * de-redirected variants: what uri rules match), RegistryBoundaries::uri_to_domain and
 * is_domain_valid (the hosts URI-host lists look at). No I/O. */
#ifndef MX_URI_H
#define MX_URI_H

#include <stdbool.h>
#include <stddef.h>

struct match_scratch;

/* A list of distinct strings (malloc'd), insertion order. */
struct uri_list { char **v; size_t n, cap; size_t max; };

/* Appends s[0..n) unless it is there already or the list holds max (0: 4096) entries. */
void uri_list_push(struct uri_list *l, const char *s, size_t n);
bool uri_list_has(const struct uri_list *l, const char *s, size_t n);
void uri_list_free(struct uri_list *l);

/* What the rule files configure: the valid TLDs (util_rb_tld) and redirector_pattern
 * regexes. Read-only once built; shared by threads. */
struct uri_conf;

/* tlds: words (util_rb_tld lines, space separated, any number of strings); redirectors:
 * "/re/flags" or "m'...'flags" strings. Patterns PCRE2 refuses are left out. Never NULL. */
struct uri_conf *uri_conf_new(const char *const *tlds, size_t ntlds,
    const char *const *redirectors, size_t nredirectors);
void uri_conf_free(struct uri_conf *uc);
/* FreeMail's email_regex (an address ending in a valid TLD, group 1), or with strip its
 * pattern for "<address>" and "address wrote:" that _parse_body blanks out. */
struct match_re;
const struct match_re *uri_conf_email_re(const struct uri_conf *uc, bool strip);
/* Number of valid TLDs (0: the rule files list none). */
size_t uri_conf_ntlds(const struct uri_conf *uc);

/* RegistryBoundaries::is_domain_valid: no white space, a dot, a last label in the TLDs
 * (with no TLDs configured: a last label of two or more letters; SA would refuse all). */
bool uri_domain_valid(const struct uri_conf *uc, const char *dom);
/* Util::is_fqdn_valid (ASCII): two or more labels of 1-63 [a-z0-9_-], no leading or
 * trailing '-', no '_' in the last two labels, 253 bytes at most. */
bool uri_fqdn_valid(const char *host);

/* The URIs of one message, as PerMsgStatus::get_uri_detail_list keeps them. */
struct uri_detail {
	char *raw;                 /* as found (text URIs with their scheme added) */
	struct uri_list cleaned;   /* canonicalized variants: what uri rules see */
	struct uri_list hosts;     /* host names of cleaned variants with a valid domain */
	struct uri_list types;     /* SA's types: the HTML tags that carry it (a, img, form,
	                            * ...), parsed, schemeless, unlinked, domainkeys ... */
	struct uri_list anchor_text;  /* the texts of the <a> elements keyed by it, once each */
	bool parsed, html;         /* found in the rendered text / in HTML */
};
struct uri_details {
	struct uri_detail *v; size_t n, cap;
	struct uri_list all;       /* every cleaned variant once: get_uri_list */
	bool truncated;            /* a cleaned URI was cut at 8192 bytes */
	struct uri_list seen;      /* raw text URIs handled already */
};

/* _process_text_uri_list for one piece of rendered text. */
void uri_details_text(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, const char *text, size_t len);
/* add_uri_detail_list(uri, {html}, 'html', 0) for a URI HTML parsing found (uri_html). */
void uri_details_html(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, const char *uri);
/* The entry of d whose raw text is raw, NULL when none; borrowed from d. */
struct uri_detail *uri_details_find(struct uri_details *d, const char *raw);
/* add_uri_detail_list("domainkeys:D", {domainkeys, nocanon, noclean}, .., 1) for the d= of
 * a DKIM signature: the URI as it is, kept only with a valid host, which the host lists
 * see; no uri rule sees it (not in cleaned, not in all). */
void uri_details_dkim(const struct uri_conf *uc, struct uri_details *d, const char *uri);
void uri_details_free(struct uri_details *d);

/* Util::uri_list_canonicalize of one URI: appends the variants to out. */
void uri_canonicalize(const struct uri_conf *uc, struct match_scratch *ms, const char *uri,
    struct uri_list *out);
/* RegistryBoundaries::uri_to_domain's host: the lower-cased host name of uri when it is
 * an IP address or a valid domain; false otherwise. */
bool uri_to_host(const struct uri_conf *uc, const char *uri, char *host, size_t hostlen);

/* HTML::target_uri: r made absolute against base (RFC 2396 resolution, SA's way);
 * malloc'd, "" when nothing is left. */
char *uri_target(const char *base, const char *r);
/* HTML.pm's canon_uri and push_uri: the link target a tag's attribute names, trimmed and
 * resolved against base (may be NULL); malloc'd, NULL when there is none. *truncated is
 * set when it was cut at 8192 bytes. */
char *uri_html_target(const char *base, const char *attr, bool *truncated);
/* canon_uri alone: attr trimmed of white space (NBSP too) and cut at 8192 characters;
 * malloc'd ("" possible), NULL when attr is. */
char *uri_html_canon(const char *attr, bool *truncated);

#endif
