/* rule_src.c — the collection of rule definitions of one generation: the plugins `ifplugin`
 * treats as loaded and SA's can() answers, errors, settings lines, lookup by name,
 * ReplaceTags and the finishing step. See rule_parse.h. */
#include "rule_src_int.h"

#include "proxy/fnv.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The SA plugins whose non-eval rules we run: those Debian's stock .pre files load. */
static const char *const rule_default_plugins[] = {
	"Mail::SpamAssassin::Plugin::URIDNSBL", "Mail::SpamAssassin::Plugin::SPF",
	"Mail::SpamAssassin::Plugin::Pyzor", "Mail::SpamAssassin::Plugin::Razor2",
	"Mail::SpamAssassin::Plugin::SpamCop", "Mail::SpamAssassin::Plugin::AutoLearnThreshold",
	"Mail::SpamAssassin::Plugin::WelcomeListSubject", "Mail::SpamAssassin::Plugin::MIMEHeader",
	"Mail::SpamAssassin::Plugin::ReplaceTags", "Mail::SpamAssassin::Plugin::DKIM",
	"Mail::SpamAssassin::Plugin::Check", "Mail::SpamAssassin::Plugin::HTTPSMismatch",
	"Mail::SpamAssassin::Plugin::URIDetail", "Mail::SpamAssassin::Plugin::Bayes",
	"Mail::SpamAssassin::Plugin::BodyEval", "Mail::SpamAssassin::Plugin::DNSEval",
	"Mail::SpamAssassin::Plugin::HTMLEval", "Mail::SpamAssassin::Plugin::HeaderEval",
	"Mail::SpamAssassin::Plugin::MIMEEval", "Mail::SpamAssassin::Plugin::RelayEval",
	"Mail::SpamAssassin::Plugin::URIEval", "Mail::SpamAssassin::Plugin::WLBLEval",
	"Mail::SpamAssassin::Plugin::VBounce", "Mail::SpamAssassin::Plugin::ImageInfo",
	"Mail::SpamAssassin::Plugin::FreeMail", "Mail::SpamAssassin::Plugin::AskDNS",
	"Mail::SpamAssassin::Plugin::HashBL", "Mail::SpamAssassin::Plugin::DMARC",
	NULL
};

/* What SpamAssassin 4.0.1's `can(Module::method)` / `has(...)` answer true for: the
 * feature flags of Mail::SpamAssassin::Conf, and the has_* methods of the plugins above
 * (a method of a plugin that is not loaded is false). Rules behind them may use evals
 * mxgate does not implement: those are then counted as such, never guessed. */
static const char *const rule_sa_methods[] = {
	"Mail::SpamAssassin::Conf::feature_originating_ip_headers",
	"Mail::SpamAssassin::Conf::feature_dns_local_ports_permit_avoid",
	"Mail::SpamAssassin::Conf::feature_bayes_auto_learn_on_error",
	"Mail::SpamAssassin::Conf::feature_uri_host_listed",
	"Mail::SpamAssassin::Conf::feature_yesno_takes_args",
	"Mail::SpamAssassin::Conf::feature_bug6558_free",
	"Mail::SpamAssassin::Conf::feature_edns",
	"Mail::SpamAssassin::Conf::feature_dns_query_restriction",
	"Mail::SpamAssassin::Conf::feature_registryboundaries",
	"Mail::SpamAssassin::Conf::feature_geodb",
	"Mail::SpamAssassin::Conf::feature_dns_block_rule",
	"Mail::SpamAssassin::Conf::feature_compile_regexp",
	"Mail::SpamAssassin::Conf::feature_meta_rules_matching",
	"Mail::SpamAssassin::Conf::feature_subjprefix",
	"Mail::SpamAssassin::Conf::feature_bayes_stopwords",
	"Mail::SpamAssassin::Conf::feature_get_host",
	"Mail::SpamAssassin::Conf::feature_blocklist_welcomelist",
	"Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
	"Mail::SpamAssassin::Conf::feature_header_address_parser",
	"Mail::SpamAssassin::Conf::feature_local_tests_only",
	"Mail::SpamAssassin::Conf::feature_header_first_last",
	"Mail::SpamAssassin::Conf::feature_header_match_many",
	"Mail::SpamAssassin::Conf::feature_capture_rules",
	"Mail::SpamAssassin::Conf::has_tflags_nosubject",
	"Mail::SpamAssassin::Conf::has_tflags_nolog",
	"Mail::SpamAssassin::Conf::perl_min_version_5010000",
	"Mail::SpamAssassin::Plugin::AskDNS::has_tag_header",
	"Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length",
	"Mail::SpamAssassin::Plugin::BodyEval::has_plaintext_body_sig_ratio",
	"Mail::SpamAssassin::Plugin::DKIM::has_arc",
	"Mail::SpamAssassin::Plugin::DNSEval::has_tflags_domains_only",
	"Mail::SpamAssassin::Plugin::DNSEval::has_tflags_ips_only",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre_num",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_emails",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_uris",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_ignore",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_regex",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_welcomelist",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_whitelist",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_tag",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_sha256",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_attachments",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_domain",
	"Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_domain_alias",
	"Mail::SpamAssassin::Plugin::MIMEEval::has_check_for_ascii_text_illegal",
	"Mail::SpamAssassin::Plugin::MIMEEval::has_check_abundant_unicode_ratio",
	"Mail::SpamAssassin::Plugin::MIMEEval::has_check_qp_ratio",
	"Mail::SpamAssassin::Plugin::MIMEHeader::has_all_header",
	"Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_range",
	"Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_concat",
	"Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_multiple",
	"Mail::SpamAssassin::Plugin::MIMEHeader::has_capture_rules",
	"Mail::SpamAssassin::Plugin::Pyzor::has_fork",
	"Mail::SpamAssassin::Plugin::Pyzor::has_perl",
	"Mail::SpamAssassin::Plugin::Razor2::has_fork",
	"Mail::SpamAssassin::Plugin::SPF::has_check_for_spf_errors",
	"Mail::SpamAssassin::Plugin::SPF::has_check_spf_skipped_noenvfrom",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_domains_only",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_subtest_for_ranges",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_for_a",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_a_ns",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_notrim",
	"Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_skip_mailto",
	"Mail::SpamAssassin::Plugin::URIDetail::has_host_key",
	NULL
};

char *rule_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *rule_strdup(const char *s) { return rule_strndup(s, strlen(s)); }

void *rule_grow(void *v, size_t *cap, size_t need, size_t size)
{
	size_t nc;
	void *p;

	if (need <= *cap)
		return v;
	nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	p = realloc(v, nc * size);
	if (p == NULL)
		abort();
	*cap = nc;
	return p;
}

/* Creates an empty collection with the default plugin set. */
struct rule_src *rule_src_new(void)
{
	struct rule_src *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	strcpy(s->tag_start, "<");
	strcpy(s->tag_end, ">");
	rule_src_set_plugins(s, rule_default_plugins);
	/* Debian's /etc/spamassassin/init.pre, which spamd reads and a rules.files glob of
	 * *.cf does not: its `enable_compat welcomelist_blocklist` makes the stock
	 * 60_welcomelist.cf score USER_IN_WELCOMELIST -100 with no USER_IN_WHITELIST meta */
	rule_enable_compat(s, "welcomelist_blocklist", 21);
	rule_src_default_headers(s);
	return s;
}

static void rule_free_headers(struct rule_src *s)
{
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < s->nhdrs[k]; i++) {
			free(s->hdrs[k][i].name);
			free(s->hdrs[k][i].tmpl);
		}
		free(s->hdrs[k]);
		s->hdrs[k] = NULL;
		s->nhdrs[k] = 0;
	}
}

void rule_src_default_headers(struct rule_src *s)
{
	rule_free_headers(s);
	rule_src_set_header(s, 3, "Checker-Version", 15,
	    "SpamAssassin _VERSION_ (_SUBVERSION_) on _HOSTNAME_");
	rule_src_set_header(s, 2, "Flag", 4, "_YESNOCAPS_");
	rule_src_set_header(s, 3, "Level", 5, "_STARS(*)_");
	rule_src_set_header(s, 3, "Status", 6, "_YESNO_, score=_SCORE_ required=_REQD_ "
	    "tests=_TESTS_ autolearn=_AUTOLEARN_ version=_VERSION_");
}

void rule_src_set_header(struct rule_src *s, int which, const char *name, size_t nl,
    const char *tmpl)
{
	if (tmpl == NULL && nl == 15 && memcmp(name, "Checker-Version", 15) == 0)
		return;         /* SA: not removable (case-sensitive) */
	for (int k = 0; k < 2; k++) {
		size_t o = 0;

		if (!(which & (1 << k)))
			continue;
		for (size_t i = 0; i < s->nhdrs[k]; i++) {
			struct addhdr_spec *h = &s->hdrs[k][i];

			if (strlen(h->name) == nl && strncasecmp(h->name, name, nl) == 0) {
				free(h->name);
				free(h->tmpl);
			} else {
				s->hdrs[k][o++] = *h;
			}
		}
		s->nhdrs[k] = o;
		if (tmpl == NULL)
			continue;
		if ((s->hdrs[k] = realloc(s->hdrs[k], (o + 1) * sizeof(*s->hdrs[k]))) == NULL)
			abort();
		s->hdrs[k][o].name = rule_strndup(name, nl);
		s->hdrs[k][o].tmpl = rule_strdup(tmpl);
		s->nhdrs[k]++;
	}
}

void rule_src_clear_headers(struct rule_src *s)
{
	char *cv = NULL;

	/* Conf.pm: the ham list's Checker-Version (the first of that name) stays, in both */
	for (size_t i = 0; i < s->nhdrs[0] && cv == NULL; i++)
		if (strcasecmp(s->hdrs[0][i].name, "Checker-Version") == 0)
			cv = rule_strdup(s->hdrs[0][i].tmpl);
	rule_free_headers(s);
	if (cv)
		rule_src_set_header(s, 3, "Checker-Version", 15, cv);
	free(cv);
}

size_t rule_src_headers(const struct rule_src *s, bool spam, const struct addhdr_spec **v)
{
	*v = s->hdrs[spam ? 1 : 0];
	return s->nhdrs[spam ? 1 : 0];
}

static void rule_def_clear(struct rule_def *d)
{
	free(d->name); free(d->re); free(d->hdr); free(d->hdr_req); free(d->if_unset); free(d->expr);
	free(d->cidr); free(d->desc); free(d->file); free(d->eval_fn); free(d->eval_args);
	free(d->re_compact);
}

void rule_src_free(struct rule_src *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		rule_def_clear(&s->v[i]);
	free(s->v);
	free(s->index);
	for (size_t i = 0; i < s->nerrors; i++)
		free(s->errors[i]);
	free(s->errors);
	for (size_t i = 0; i < s->nwarnings; i++)
		free(s->warnings[i]);
	free(s->warnings);
	for (size_t i = 0; i < s->nplugins; i++)
		free(s->plugins[i]);
	free(s->plugins);
	for (size_t i = 0; i < s->ncompat; i++)
		free(s->compat[i]);
	free(s->compat);
	for (size_t i = 0; i < s->nign; i++)
		free(s->ign[i].name);
	free(s->ign);
	for (size_t i = 0; i < s->ntags; i++) {
		free(s->tags[i].name);
		free(s->tags[i].value);
	}
	free(s->tags);
	for (size_t i = 0; i < s->nsettings; i++) {
		free(s->settings[i].key);
		free(s->settings[i].value);
	}
	free(s->settings);
	for (size_t i = 0; i < s->nignore_hdrs; i++)
		free(s->ignore_hdrs[i]);
	free(s->ignore_hdrs);
	free(s->rewrite_subject);
	free(s->report_safe_file);
	addhdr_safe_clear(&s->safe);
	rule_free_headers(s);
	free(s);
}

void rule_src_set_include(struct rule_src *s, rule_include_fn fn, void *arg)
{
	s->include_fn = fn;
	s->include_arg = arg;
}

/* Replaces the loaded-plugin list with names (NULL-terminated copy). */
void rule_src_set_plugins(struct rule_src *s, const char *const *names)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nplugins; i++)
		free(s->plugins[i]);
	free(s->plugins);
	while (names && names[n])
		n++;
	s->plugins = calloc(n ? n : 1, sizeof(char *));
	if (s->plugins == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		s->plugins[i] = rule_strdup(names[i]);
	s->nplugins = n;
}

bool rule_has_plugin(const struct rule_src *s, const char *name, size_t len)
{
	for (size_t i = 0; i < s->nplugins; i++)
		if (strlen(s->plugins[i]) == len && memcmp(s->plugins[i], name, len) == 0)
			return true;
	return false;
}

int rule_enable_compat(struct rule_src *s, const char *name, size_t len)
{
	char **v;

	if (len == 0 || len > 128)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '_')
			return -1;
	for (size_t i = 0; i < s->ncompat; i++)
		if (strlen(s->compat[i]) == len && memcmp(s->compat[i], name, len) == 0)
			return 0;
	v = realloc(s->compat, (s->ncompat + 1) * sizeof(*v));
	if (v == NULL)
		abort();
	s->compat = v;
	s->compat[s->ncompat++] = rule_strndup(name, len);
	return 0;
}

/* can(Module::method): a method SA 4.0.1 has, of Conf or of a loaded plugin; or
 * Conf::compat_X after `enable_compat X`. */
bool rule_sa_can(const struct rule_src *s, const char *name, size_t len)
{
	const char *sep = NULL;

	for (size_t i = 0; i + 1 < len; i++)
		if (name[i] == ':' && name[i + 1] == ':')
			sep = name + i;
	if (sep == NULL)
		return false;
	if (sep - name == 24 && strncmp(name, "Mail::SpamAssassin::Conf::compat_", 33) == 0) {
		for (size_t i = 0; i < s->ncompat; i++)
			if (strlen(s->compat[i]) == len - 33 &&
			    memcmp(s->compat[i], name + 33, len - 33) == 0)
				return true;
		return false;
	}
	if (!(sep - name == 24 && strncmp(name, "Mail::SpamAssassin::Conf", 24) == 0) &&
	    !rule_has_plugin(s, name, (size_t)(sep - name)))
		return false;
	for (size_t i = 0; rule_sa_methods[i]; i++)
		if (strlen(rule_sa_methods[i]) == len && memcmp(rule_sa_methods[i], name, len) == 0)
			return true;
	return false;
}

void rule_src_add_error(struct rule_src *s, const char *file, int line, int col,
    const char *fmt, ...)
{
	char msg[512], *e;
	va_list ap;
	int n;

	if (s->nerrors >= RULE_MAX_ERRORS) {
		s->nerrors++;	/* still counted */
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(NULL, 0, "%s:%d:%d: %s", file ? file : "-", line, col, msg);
	e = malloc((size_t)n + 1);
	if (e == NULL)
		abort();
	snprintf(e, (size_t)n + 1, "%s:%d:%d: %s", file ? file : "-", line, col, msg);
	s->errors = rule_grow(s->errors, &s->errors_cap, s->nerrors + 1, sizeof(char *));
	s->errors[s->nerrors++] = e;
}

void rule_src_add_warning(struct rule_src *s, const char *file, int line, int col,
    const char *fmt, ...)
{
	char msg[512], *e;
	va_list ap;
	int n;

	if (s->nwarnings >= RULE_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = snprintf(NULL, 0, "%s:%d:%d: warning: %s", file ? file : "-", line, col, msg);
	e = malloc((size_t)n + 1);
	if (e == NULL)
		abort();
	snprintf(e, (size_t)n + 1, "%s:%d:%d: warning: %s", file ? file : "-", line, col, msg);
	s->warnings = rule_grow(s->warnings, &s->warnings_cap, s->nwarnings + 1, sizeof(char *));
	s->warnings[s->nwarnings++] = e;
}

size_t rule_src_nwarnings(const struct rule_src *s) { return s->nwarnings; }
const char *rule_src_warning(const struct rule_src *s, size_t i) { return s->warnings[i]; }

size_t rule_src_nerrors(const struct rule_src *s)
{
	return s->nerrors < RULE_MAX_ERRORS ? s->nerrors : RULE_MAX_ERRORS;
}

const char *rule_src_error(const struct rule_src *s, size_t i) { return s->errors[i]; }
size_t rule_src_ignored(const struct rule_src *s) { return s->ignored; }
size_t rule_src_nsettings(const struct rule_src *s) { return s->nsettings; }

void rule_src_setting(const struct rule_src *s, size_t i, const char **key, const char **value)
{
	*key = s->settings[i].key;
	*value = s->settings[i].value;
}

/* Every directive SpamAssassin 4.0.1 knows (the settings and commands of Conf.pm and of all
 * its plugins, with their aliases, and those plugins' parse_config keys), sorted (C locale)
 * for bsearch: a line whose first word is none of these is SA's "failed to parse line". */
static const char *const rule_sa_directives[] = {
	"add_header", "adsp_override", "all_spam_to", "allow_user_rules",
	"always_trust_envelope_sender", "askdns", "asn_lookup", "asn_lookup_ipv6",
	"asn_prefer_geodb", "asn_prefix", "asn_use_dns", "asn_use_geodb",
	"authres_ignored_authserv", "authres_networks", "authres_trusted_authserv",
	"auto_welcomelist_db_modules", "auto_welcomelist_distinguish_signed",
	"auto_welcomelist_factor", "auto_welcomelist_factory", "auto_welcomelist_file_mode",
	"auto_welcomelist_ipv4_mask_len", "auto_welcomelist_ipv6_mask_len",
	"auto_welcomelist_path", "auto_whitelist_db_modules",
	"auto_whitelist_distinguish_signed", "auto_whitelist_factor", "auto_whitelist_factory",
	"auto_whitelist_file_mode", "auto_whitelist_ipv4_mask_len",
	"auto_whitelist_ipv6_mask_len", "auto_whitelist_path", "bayes_auto_expire",
	"bayes_auto_learn", "bayes_auto_learn_on_error", "bayes_auto_learn_threshold_nonspam",
	"bayes_auto_learn_threshold_spam", "bayes_expiry_max_db_size", "bayes_file_mode",
	"bayes_ignore_from", "bayes_ignore_header", "bayes_ignore_to", "bayes_journal_max_size",
	"bayes_learn_during_report", "bayes_learn_to_journal", "bayes_max_token_length",
	"bayes_min_ham_num", "bayes_min_spam_num", "bayes_path", "bayes_seen_ttl",
	"bayes_sql_dsn", "bayes_sql_override_username", "bayes_sql_password",
	"bayes_sql_username", "bayes_sql_username_authorized", "bayes_stopword_languages",
	"bayes_store_module", "bayes_token_sources", "bayes_token_ttl", "bayes_use_hapaxes",
	"blacklist_from", "blacklist_subject", "blacklist_to", "blacklist_uri_host",
	"blocklist_from", "blocklist_subject", "blocklist_to", "blocklist_uri_host", "body",
	"body_part_scan_size", "clear_asn_lookups", "clear_dns_query_restriction",
	"clear_dns_query_restrictions", "clear_dns_servers", "clear_headers",
	"clear_internal_networks", "clear_msa_networks", "clear_originating_ip_headers",
	"clear_report_template", "clear_trusted_networks", "clear_unsafe_report_template",
	"clear_uridnsbl_skip_domain", "clear_url_shortener", "clear_util_rb", "country_db_path",
	"country_db_type", "dcc_body_max", "dcc_dccifd_path", "dcc_fuz1_max", "dcc_fuz2_max",
	"dcc_home", "dcc_learn_score", "dcc_options", "dcc_path", "dcc_rep_percent",
	"dcc_timeout", "dccifd_options", "def_welcomelist_auth", "def_welcomelist_from_dkim",
	"def_welcomelist_from_rcvd", "def_welcomelist_from_spf", "def_whitelist_auth",
	"def_whitelist_from_dkim", "def_whitelist_from_rcvd", "def_whitelist_from_spf",
	"delist_uri_host", "describe", "descriptions", "dkim_minimum_key_bits", "dkim_timeout",
	"dmarc_save_reports", "dns_available", "dns_block_rule", "dns_block_time",
	"dns_local_ports_avoid", "dns_local_ports_none", "dns_local_ports_permit", "dns_options",
	"dns_query_restriction", "dns_server", "dns_test_interval", "do_not_use_mail_spf",
	"do_not_use_mail_spf_query", "else", "enable_compat", "endif", "enlist_addrlist",
	"enlist_uri_host", "envelope_sender_header", "extracttext_maxparts",
	"extracttext_timeout", "extracttext_use", "fns_add_addrlist", "fns_check",
	"fns_extrachars", "fns_ignore_dkim", "fns_ignore_headers", "fns_remove_addrlist",
	"fold_headers", "freemail_add_describe_email", "freemail_domains",
	"freemail_import_def_welcomelist_auth", "freemail_import_def_whitelist_auth",
	"freemail_import_welcomelist_auth", "freemail_import_whitelist_auth",
	"freemail_max_body_emails", "freemail_max_body_freemails", "freemail_skip_bulk_envfrom",
	"freemail_skip_when_over_max", "freemail_welcomelist", "freemail_whitelist", "full",
	"geodb_module", "geodb_options", "geodb_search_path", "hashbl_email_domain_alias",
	"hashbl_email_regex", "hashbl_email_welcomelist", "hashbl_email_whitelist",
	"hashbl_ignore", "header", "if", "ifplugin", "ignore_always_matching_regexps",
	"ignore_received_spf_header", "inactive_languages", "include", "internal_networks",
	"lang", "loadplugin", "lock_method", "max_short_url_redirections", "max_short_urls",
	"mbox_format_from_regex", "meta", "mimeheader", "more_spam_to", "msa_networks",
	"normalize_charset", "ok_languages", "ok_locales", "olemacro_download_marker",
	"olemacro_extended_scan", "olemacro_exts", "olemacro_macro_exts", "olemacro_max_file",
	"olemacro_num_mime", "olemacro_num_zip", "olemacro_prefer_contentdisposition",
	"olemacro_skip_ctypes", "olemacro_skip_exts", "olemacro_zip_depth", "olemacro_zips",
	"originating_ip_headers", "parse_dkim_uris", "phishing_openphish_feed",
	"phishing_phishstats_feed", "phishing_phishstats_minscore", "phishing_phishtank_feed",
	"phishing_uri_noparam", "priority", "pyzor_count_min", "pyzor_fork", "pyzor_max",
	"pyzor_options", "pyzor_path", "pyzor_perl", "pyzor_server_file", "pyzor_timeout",
	"pyzor_welcomelist_factor", "pyzor_welcomelist_min", "pyzor_whitelist_factor",
	"pyzor_whitelist_min", "rawbody", "rawbody_part_scan_size", "razor_config", "razor_fork",
	"razor_timeout", "rbl_headers", "rbl_timeout", "redirector_pattern", "remove_header",
	"replace_end", "replace_inter", "replace_post", "replace_pre", "replace_rules",
	"replace_start", "replace_tag", "report", "report_charset", "report_contact",
	"report_hostname", "report_safe", "report_safe_copy_headers", "report_template",
	"report_wrap_width", "require_version", "required_hits", "required_score",
	"resource_limit_cpu", "resource_limit_mem", "reuse", "rewrite_header",
	"run_reuse_tests_only", "score", "shortcircuit", "shortcircuit_ham_score",
	"shortcircuit_max_spam_score", "shortcircuit_min_ham_score", "shortcircuit_spam_score",
	"skip_rbl_checks", "skip_uribl_checks", "spamcop_from_address",
	"spamcop_max_report_size", "spamcop_relayhost", "spamcop_to_address", "spf_timeout",
	"subjprefix", "test", "textcat_acceptable_score", "textcat_max_languages",
	"textcat_max_ngrams", "textcat_optimal_ngrams", "tflags", "time_limit", "trigger_config",
	"trigger_ratio", "trigger_target", "trusted_networks", "tryplugin", "txrep_autolearn",
	"txrep_dilution_factor", "txrep_expiry_days", "txrep_factor", "txrep_factory",
	"txrep_ipv4_mask_len", "txrep_ipv6_mask_len", "txrep_learn_bonus", "txrep_learn_penalty",
	"txrep_report_details", "txrep_spf", "txrep_track_messages", "txrep_user2global_ratio",
	"txrep_weight_domain", "txrep_weight_email", "txrep_weight_email_ip",
	"txrep_weight_helo", "txrep_weight_ip", "txrep_welcomelist_out", "txrep_whitelist_out",
	"unblacklist_from", "unblocklist_from", "unsafe_report", "unsafe_report_template",
	"unwelcomelist_auth", "unwelcomelist_from", "unwelcomelist_from_dkim",
	"unwelcomelist_from_rcvd", "unwelcomelist_from_spf", "unwhitelist_auth",
	"unwhitelist_from", "unwhitelist_from_dkim", "unwhitelist_from_rcvd",
	"unwhitelist_from_spf", "uri", "uri_block_cc", "uri_block_cidr", "uri_block_cont",
	"uri_block_exclude", "uri_block_isp", "uri_country_db_isp_path", "uri_country_db_path",
	"uri_detail", "uri_host_lists", "uridnsbl", "uridnsbl_max_domains",
	"uridnsbl_skip_domain", "uridnsbl_skip_mailto", "uridnsbl_timeout", "uridnssub",
	"urifullnsrhsbl", "urifullnsrhssub", "urinsrhsbl", "urinsrhssub", "urirhsbl",
	"urirhssub", "url_shortener", "url_shortener_cache_autoclean", "url_shortener_cache_dsn",
	"url_shortener_cache_password", "url_shortener_cache_ttl", "url_shortener_cache_type",
	"url_shortener_cache_username", "url_shortener_get", "url_shortener_loginfo",
	"url_shortener_timeout", "url_shortener_user_agent", "use_auto_welcomelist",
	"use_auto_whitelist", "use_bayes", "use_bayes_rules", "use_dcc", "use_dcc_rep",
	"use_learner", "use_newest_received_spf_header", "use_pyzor", "use_razor2", "use_txrep",
	"user_awl_dsn", "user_awl_sql_override_username", "user_awl_sql_password",
	"user_awl_sql_table", "user_awl_sql_username", "user_scores_dsn",
	"user_scores_fallback_to_global", "user_scores_ldap_password",
	"user_scores_ldap_username", "user_scores_sql_custom_query", "user_scores_sql_password",
	"user_scores_sql_username", "util_rb_2tld", "util_rb_3tld", "util_rb_tld", "version_tag",
	"welcomelist_allows_relays", "welcomelist_auth", "welcomelist_bounce_relays",
	"welcomelist_from", "welcomelist_from_dkim", "welcomelist_from_rcvd",
	"welcomelist_from_spf", "welcomelist_subject", "welcomelist_to", "welcomelist_uri_host",
	"whitelist_allows_relays", "whitelist_auth", "whitelist_bounce_relays", "whitelist_from",
	"whitelist_from_dkim", "whitelist_from_rcvd", "whitelist_from_spf", "whitelist_subject",
	"whitelist_to", "whitelist_uri_host",
};

static int rule_dir_cmp(const void *k, const void *e)
{
	return strcmp(k, *(const char *const *)e);
}

bool rule_sa_directive_known(const char *w, size_t n)
{
	char k[64];

	if (n == 0 || n >= sizeof(k))
		return false;
	for (size_t i = 0; i < n; i++)            /* SA: lc $key; tr/-/_/ */
		k[i] = w[i] == '-' ? '_' : (char)tolower((unsigned char)w[i]);
	k[n] = '\0';
	if (n == 17 && strncmp(k, "bayes_stopword_", 15) == 0)   /* Bayes: _[a-z]{2} */
		return isalpha((unsigned char)k[15]) && isalpha((unsigned char)k[16]);
	if (n > 11 && n <= 43 && strncmp(k, "hashbl_acl_", 11) == 0) {  /* HashBL: [a-z0-9]{1,32} */
		for (size_t i = 11; i < n; i++)
			if (!isalnum((unsigned char)k[i]))
				return false;
		return true;
	}
	return bsearch(k, rule_sa_directives, sizeof(rule_sa_directives) /
	    sizeof(rule_sa_directives[0]), sizeof(char *), rule_dir_cmp) != NULL;
}

/* Settings the evals read (the rest configure SA features mxgate does not emulate). */
static const char *const rule_kept_settings[] = {
	"freemail_domains", "freemail_welcomelist", "freemail_whitelist", "trusted_networks",
	"internal_networks", "msa_networks", "clear_trusted_networks", "clear_internal_networks",
	"clear_msa_networks", "originating_ip_headers", "clear_originating_ip_headers",
	"util_rb_tld", "util_rb_2tld", "util_rb_3tld", "clear_util_rb", "envelope_sender_header",
	"ok_locales", "welcomelist_from", "whitelist_from", "blocklist_from", "blacklist_from",
	"welcomelist_to", "whitelist_to", "blocklist_to", "blacklist_to", "more_spam_to",
	"all_spam_to", "enlist_addrlist", "enlist_uri_host", "delist_uri_host",
	"welcomelist_subject", "whitelist_subject", "blocklist_subject", "blacklist_subject",
	"welcomelist_bounce_relays", "whitelist_bounce_relays", "welcomelist_from_rcvd",
	"whitelist_from_rcvd", "def_welcomelist_from_rcvd", "def_whitelist_from_rcvd",
	"blocklist_uri_host", "blacklist_uri_host", "welcomelist_uri_host", "whitelist_uri_host",
	"redirector_pattern", "parse_dkim_uris", "unwelcomelist_from", "unwhitelist_from",
	"unblocklist_from", "unblacklist_from", "unwelcomelist_from_rcvd", "unwhitelist_from_rcvd",
	NULL
};

/* SA's key matching: any case, '-' for '_' (Conf::Parser: lc $key; tr/-/_/) */
static bool rule_key_is(const char *name, const char *key, size_t kl)
{
	if (strlen(name) != kl)
		return false;
	for (size_t i = 0; i < kl; i++)
		if (name[i] != (key[i] == '-' ? '_' : tolower((unsigned char)key[i])))
			return false;
	return true;
}

bool rule_keep_setting(struct rule_src *s, const char *key, size_t kl, const char *value)
{
	for (size_t i = 0; rule_kept_settings[i]; i++)
		if (rule_key_is(rule_kept_settings[i], key, kl)) {
			s->settings = rule_grow(s->settings, &s->settings_cap, s->nsettings + 1,
			    sizeof(*s->settings));
			s->settings[s->nsettings].key = rule_strdup(rule_kept_settings[i]);
			s->settings[s->nsettings].value = rule_strdup(value);
			s->nsettings++;
			return true;
		}
	return false;
}

void rule_note_ignored(struct rule_src *s, const char *key, size_t kl)
{
	for (size_t i = 0; i < s->nign; i++)
		if (strlen(s->ign[i].name) == kl && memcmp(s->ign[i].name, key, kl) == 0) {
			s->ign[i].n++;
			return;
		}
	if (s->nign >= 256)          /* made-up names: counted in `ignored`, not listed */
		return;
	s->ign = realloc(s->ign, (s->nign + 1) * sizeof(*s->ign));
	if (s->ign == NULL)
		abort();
	s->ign[s->nign].name = rule_strndup(key, kl);
	s->ign[s->nign++].n = 1;
}

static int rule_ignored_cmp(const void *a, const void *b)
{
	const struct rule_ignored *x = a, *y = b;

	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->name, y->name);
}

char *rule_src_ignored_list(const struct rule_src *s)
{
	struct rule_ignored *v;
	size_t len = 1, o = 0;
	char *out;

	if (s->nign == 0)
		return NULL;
	v = malloc(s->nign * sizeof(*v));
	if (v == NULL)
		abort();
	memcpy(v, s->ign, s->nign * sizeof(*v));
	qsort(v, s->nign, sizeof(*v), rule_ignored_cmp);
	for (size_t i = 0; i < s->nign; i++)
		len += strlen(v[i].name) + 24;
	out = malloc(len);
	if (out == NULL)
		abort();
	out[0] = '\0';
	for (size_t i = 0; i < s->nign; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s %zu", i ? ", " : "", v[i].name, v[i].n);
	free(v);
	return out;
}
void rule_src_safe(const struct rule_src *s, struct addhdr_safe *out)
{
	addhdr_safe_copy(out, &s->safe);
	/* report_safe 1 or 2 applies only when a rule file says so (the stock
	 * 10_default_prefs.cf does): mxgate's own rules alone mark as report_safe 0 does */
	out->mode = s->report_safe_file ? s->report_safe : 0;
}

const char *rule_src_rewrite_subject(const struct rule_src *s)
{
	return s->rewrite_subject;
}

const char *const *rule_src_ignore_headers(const struct rule_src *s, size_t *n)
{
	*n = s->nignore_hdrs;
	return (const char *const *)s->ignore_hdrs;
}

int rule_add_ignore_header(struct rule_src *s, const char *name, size_t len)
{
	char *v = rule_strndup(name, len);

	for (char *p = v; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (size_t i = 0; i < s->nignore_hdrs; i++)
		if (strcmp(s->ignore_hdrs[i], v) == 0) {
			free(v);
			return 0;
		}
	if (s->nignore_hdrs >= RULE_MAX_IGNORE) {
		free(v);
		return -1;
	}
	s->ignore_hdrs = rule_grow(s->ignore_hdrs, &s->ignore_hdrs_cap, s->nignore_hdrs + 1,
	    sizeof(*s->ignore_hdrs));
	s->ignore_hdrs[s->nignore_hdrs++] = v;
	return 0;
}

size_t rule_src_count(const struct rule_src *s) { return s->n; }
struct rule_def *rule_src_get(struct rule_src *s, size_t i) { return &s->v[i]; }

long rule_src_find(const struct rule_src *s, const char *name)
{
	size_t mask, i;

	if (s->index_cap == 0)
		return -1;
	mask = s->index_cap - 1;
	for (i = fnv1a64_str(name) & mask;; i = (i + 1) & mask) {
		long k = s->index[i];

		if (k < 0)
			return -1;
		if (strcmp(s->v[k].name, name) == 0)
			return k;
	}
}

static void rule_index_insert(struct rule_src *s, long k)
{
	size_t mask = s->index_cap - 1, i;

	for (i = fnv1a64_str(s->v[k].name) & mask; s->index[i] >= 0; i = (i + 1) & mask)
		;
	s->index[i] = k;
}

struct rule_def *rule_get_or_add(struct rule_src *s, const char *name, size_t len)
{
	char tmp[256];
	long k;

	if (len >= sizeof(tmp))
		len = sizeof(tmp) - 1;
	memcpy(tmp, name, len);
	tmp[len] = '\0';
	k = rule_src_find(s, tmp);
	if (k >= 0)
		return &s->v[k];
	if (s->n >= RULE_MAX_RULES)
		return NULL;
	if ((s->n + 1) * 2 > s->index_cap) {
		size_t nc = s->index_cap ? s->index_cap * 2 : 1024;

		free(s->index);
		s->index = malloc(nc * sizeof(long));
		if (s->index == NULL)
			abort();
		memset(s->index, 0xff, nc * sizeof(long));
		s->index_cap = nc;
		for (size_t i = 0; i < s->n; i++)
			rule_index_insert(s, (long)i);
	}
	s->v = rule_grow(s->v, &s->cap, s->n + 1, sizeof(*s->v));
	memset(&s->v[s->n], 0, sizeof(s->v[0]));
	s->v[s->n].name = rule_strdup(tmp);
	s->v[s->n].score = 1.0;
	s->v[s->n].kind = RULE_SYMBOL;
	rule_index_insert(s, (long)s->n);
	return &s->v[s->n++];
}

void rule_add_tag(struct rule_src *s, int kind, const char *name, size_t nl,
    const char *value)
{
	for (size_t i = 0; i < s->ntags; i++)
		if (s->tags[i].kind == kind && strlen(s->tags[i].name) == nl &&
		    memcmp(s->tags[i].name, name, nl) == 0) {
			free(s->tags[i].value);
			s->tags[i].value = rule_strdup(value);
			return;
		}
	s->tags = rule_grow(s->tags, &s->tags_cap, s->ntags + 1, sizeof(*s->tags));
	s->tags[s->ntags].kind = kind;
	s->tags[s->ntags].name = rule_strndup(name, nl);
	s->tags[s->ntags].value = rule_strdup(value);
	s->ntags++;
}

/* ---------------------------------------------------------------- finishing */

static const struct rule_tag *rule_find_tag(const struct rule_src *s, int kind,
    const char *name, size_t nl)
{
	for (size_t i = 0; i < s->ntags; i++)
		if (s->tags[i].kind == kind && strlen(s->tags[i].name) == nl &&
		    memcmp(s->tags[i].name, name, nl) == 0)
			return &s->tags[i];
	return NULL;
}

/* A string being rebuilt. */
struct rule_sbuf { char *p; size_t n, cap; };

static void rule_sbuf_put(struct rule_sbuf *b, const char *s, size_t n)
{
	b->p = rule_grow(b->p, &b->cap, b->n + n + 1, 1);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* The first needle (nl octets) in [p, end), or NULL; memmem's answer. By memchr and memcmp,
 * not memmem: ASan's memmem interceptor checks the whole rest of the haystack on every call,
 * which made the marker scan below quadratic in the sanitized builds (half of fuzz_rule_parse's
 * time on expanded patterns); memchr's checks only what it read. */
static char *rule_find(char *p, const char *end, const char *needle, size_t nl)
{
	if (nl == 0)
		return p;
	while ((size_t)(end - p) >= nl) {
		p = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
		if (p == NULL)
			return NULL;
		if (memcmp(p, needle, nl) == 0)
			return p;
		p++;
	}
	return NULL;
}

/* Removes the first "<KIND NAME>" marker (start/end delimiters) from re; returns NAME
 * (malloc'd) or NULL. */
static char *rule_take_marker(const struct rule_src *s, char *re, const char *kind)
{
	size_t sl = strlen(s->tag_start), el = strlen(s->tag_end), kl = strlen(kind);
	char *end = re + strlen(re);

	/* a search over the known length: strstr in a loop is quadratic where the C library (or
	 * a sanitizer's interceptor) measures the rest of the string on every call */
	for (char *p = re; p < end && (p = rule_find(p, end, s->tag_start, sl)) != NULL; p++) {
		char *n = p + sl, *e;

		if ((size_t)(end - n) < kl + 1 || memcmp(n, kind, kl) != 0 || n[kl] != ' ')
			continue;
		e = rule_find(n + kl + 1, end, s->tag_end, el);   /* (.+?) */
		if (e == NULL || e == n + kl + 1)
			continue;
		{
			char *name = rule_strndup(n + kl + 1, (size_t)(e - n - kl - 1));

			memmove(p, e + el, strlen(e + el) + 1);
			return name;
		}
	}
	return NULL;
}

/* The plain expansion of one pattern stops here (the largest of the stock rules is 224 KiB);
 * past it the rule keeps only its compact form, whose size grows with the tags' sizes. */
#define RULE_TAGS_PLAIN_MAX (1024 * 1024)

/* ReplaceTags as SA 4.0.1 does it, pass after pass (at most 6) while a replacement brought
 * new tags: take the <pre X>, <post X>, <inter X> markers out; split at <...>; put pre
 * before and post after each tag, inter into each empty piece between tags; replace each
 * known tag by its value. Returns a malloc'd regex, or NULL
 * past RULE_TAGS_PLAIN_MAX when expanding in full (used NULL). */
static char *rule_replace_tags_mode(const struct rule_src *s, const char *re, bool *used,
    int depth);

/* The value of tag t for compact expansion: its own tags become subroutine calls too. */
static void rule_compact_value(const struct rule_src *s, size_t t, bool *used, char **defs,
    int depth)
{
	if (defs[t] != NULL || depth > 5)
		return;
	defs[t] = rule_strdup("");          /* guards against a tag that names itself */
	free(defs[t]);
	defs[t] = rule_replace_tags_mode(s, s->tags[t].value, used, depth + 1);
}

static char *rule_replace_tags(const struct rule_src *s, const char *re)
{
	return rule_replace_tags_mode(s, re, NULL, 0);
}

/* The same with every tag turned into a call of a group defined once at the end,
 * (?&_rtN) ... (?(DEFINE)(?<_rtN>VALUE)...): for patterns whose plain expansion is too
 * large for PCRE2 (fuzzy-letter tags repeated hundreds of times). Matches the same. */
char *rule_replace_tags_compact(const struct rule_src *s, const char *re)
{
	bool *used = calloc(s->ntags + 1, sizeof(bool));
	char **defs = calloc(s->ntags + 1, sizeof(char *));
	char *body = rule_replace_tags_mode(s, re, used, 0);
	struct rule_sbuf out = { 0 };
	bool more = true;

	if (used == NULL || defs == NULL)
		abort();
	while (more) {                        /* values may use further tags */
		more = false;
		for (size_t t = 0; t < s->ntags; t++)
			if (used[t] && defs[t] == NULL) {
				rule_compact_value(s, t, used, defs, 0);
				more = true;
			}
	}
	rule_sbuf_put(&out, body, strlen(body));
	rule_sbuf_put(&out, "(?(DEFINE)", 10);
	for (size_t t = 0; t < s->ntags; t++)
		if (defs[t]) {
			char name[32];

			snprintf(name, sizeof(name), "(?<_rt%zu>", t);
			rule_sbuf_put(&out, name, strlen(name));
			rule_sbuf_put(&out, defs[t], strlen(defs[t]));
			rule_sbuf_put(&out, ")", 1);
			free(defs[t]);
		}
	rule_sbuf_put(&out, ")", 1);
	free(body);
	free(defs);
	free(used);
	return out.p;
}

static char *rule_replace_tags_mode(const struct rule_src *s, const char *re, bool *used,
    int depth)
{
	char *cur = rule_strdup(re);
	bool again = true;

	(void)depth;
	for (int pass = 0; again && pass <= 5; pass++) {
		char *pre_n = rule_take_marker(s, cur, "pre");
		char *post_n = rule_take_marker(s, cur, "post");
		char *inter_n = rule_take_marker(s, cur, "inter");
		const struct rule_tag *pre = pre_n ? rule_find_tag(s, 1, pre_n, strlen(pre_n)) : NULL;
		const struct rule_tag *post = post_n ? rule_find_tag(s, 2, post_n, strlen(post_n)) : NULL;
		const struct rule_tag *inter = inter_n ? rule_find_tag(s, 3, inter_n,
		    strlen(inter_n)) : NULL;
		struct rule_sbuf out = { 0 };
		const char *p = cur;

		again = false;
		rule_sbuf_put(&out, "", 0);
		/* Perl's split /(<[^<>]+>)/: text, tag, text, tag ... (trailing empty text dropped) */
		for (;;) {
			const char *lt = p, *gt = NULL;

			while ((lt = strchr(lt, '<')) != NULL) {
				const char *q = lt + 1;

				while (*q && *q != '<' && *q != '>')
					q++;
				if (*q == '>' && q > lt + 1) {
					gt = q;
					break;
				}
				lt = *q == '<' ? q : (*q ? q + 1 : q);
				if (*lt == '\0') {
					lt = NULL;
					break;
				}
			}
			/* the text piece before the tag (empty pieces between tags take inter) */
			{
				size_t tl = lt ? (size_t)(lt - p) : strlen(p);

				if (tl == 0 && lt && inter)
					rule_sbuf_put(&out, inter->value, strlen(inter->value));
				else
					rule_sbuf_put(&out, p, tl);
			}
			if (lt == NULL)
				break;
			{
				size_t nl = (size_t)(gt - lt - 1);
				const struct rule_tag *t = rule_find_tag(s, 0, lt + 1, nl);

				if (pre)
					rule_sbuf_put(&out, pre->value, strlen(pre->value));
				if (t && used) {
					char call[32];

					snprintf(call, sizeof(call), "(?&_rt%zu)", (size_t)(t - s->tags));
					rule_sbuf_put(&out, call, strlen(call));
					used[t - s->tags] = true;
				} else if (t) {
					rule_sbuf_put(&out, t->value, strlen(t->value));
					if (strchr(t->value, '<') && strchr(strchr(t->value, '<'), '>'))
						again = true;
				} else {
					rule_sbuf_put(&out, lt, nl + 2);
				}
				if (post)
					rule_sbuf_put(&out, post->value, strlen(post->value));
			}
			p = gt + 1;
			if (used == NULL && out.n > RULE_TAGS_PLAIN_MAX)
				break;
		}
		free(pre_n);
		free(post_n);
		free(inter_n);
		free(cur);
		cur = out.p;
		if (used == NULL && out.n > RULE_TAGS_PLAIN_MAX) {
			free(cur);             /* a tag within itself grows it k^6 times */
			return NULL;
		}
	}
	return cur;
}

/* Applies replace_rules, and the SA defaults: __ rules and nice rules' scores. */
void rule_src_finish(struct rule_src *s)
{
	if (s->finished)
		return;
	s->finished = true;
	for (size_t i = 0; i < s->n; i++) {
		struct rule_def *d = &s->v[i];

		if (d->replace_tags && d->re) {
			char *r = rule_replace_tags(s, d->re);

			free(d->re_compact);
			d->re_compact = rule_replace_tags_compact(s, d->re);
			free(d->re);
			d->re = r != NULL ? r : rule_strdup(d->re_compact);
		}
		if (!d->has_score) {
			/* SA: 1.0, T_ (testing) rules 0.01, negative for nice rules */
			double def = strncmp(d->name, "T_", 2) == 0 ? 0.01 : 1.0;

			if (strncmp(d->name, "__", 2) == 0 || (d->tflags & RULE_TF_NOSCORE))
				d->score = 0;
			else if (d->tflags & RULE_TF_NICE)
				d->score = -def;
			else
				d->score = def;
			d->score_bayes = d->score;
		}
		/* SA skips net eval tests without network tests (score set 0); regex and meta
		 * rules flagged net still run there */
		if ((d->tflags & RULE_TF_NET) && d->skip == SKIP_NONE && d->eval_fn != NULL)
			d->skip = SKIP_NET;
	}
}

