/* eval.c — the registration table of eval functions, their argument parsing, and what
 * the families share (per-message arena, string sets, built-in regexes, SA's date parser).
 * See eval.h. */
#include "eval_int.h"

#include "uri.h"

#include <ctype.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EV(name, fn, lo, hi, needs) { name, fn, lo, hi, needs, NULL, NULL }
#define EVRE(name, fn, lo, hi, needs) { name, fn, lo, hi, needs, eval_prepare_regex_arg, \
	eval_release_regex_arg }

/* Every eval mxgate implements: SA's function name, ours, argument count, views needed.
 * Sorted by name (eval_find searches it). */
static const struct eval_def eval_table[] = {
	EV("check_abundant_unicode_ratio", eval_check_abundant_unicode_ratio, 1, 1, EVAL_NEED_MIME),
	EV("check_all_trusted", eval_check_all_trusted, 0, 0, 0),
	EV("check_arc_signed", eval_dkim_offline, 0, 8, 0),
	EV("check_arc_valid", eval_dkim_offline, 0, 8, 0),
	EV("check_base64_length", eval_check_base64_length, 1, 2, EVAL_NEED_MIME),
	EV("check_bayes", eval_check_bayes, 1, 2, 0),
	EV("check_blank_line_ratio", eval_check_blank_line_ratio, 2, 3, EVAL_NEED_BODY),
	EV("check_body_8bits", eval_check_body_8bits, 0, 0, EVAL_NEED_BODY),
	EV("check_body_length", eval_check_body_length, 1, 1, EVAL_NEED_BODY),
	EV("check_dkim_adsp", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_dependable", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_signall", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_signed", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_signsome", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_testing", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_valid", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_valid_author_sig", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_valid_envelopefrom", eval_dkim_offline, 0, 8, 0),
	EV("check_dkim_verified", eval_dkim_offline, 0, 8, 0),
	EV("check_equal_from_domains", eval_check_equal_from_domains, 0, 0, 0),
	EV("check_for_ascii_text_illegal", eval_check_for_ascii_text_illegal, 0, 0, EVAL_NEED_MIME),
	EV("check_for_fake_aol_relay_in_rcvd", eval_check_for_fake_aol_relay_in_rcvd, 0, 0, 0),
	EV("check_for_faraway_charset", eval_check_for_faraway_charset, 0, 0, EVAL_NEED_BODY),
	EV("check_for_faraway_charset_in_headers", eval_check_for_faraway_charset_in_headers, 0, 0, 0),
	EV("check_for_forged_eudoramail_received_headers",
	    eval_check_for_forged_eudoramail_received_headers, 0, 0, 0),
	EV("check_for_forged_gmail_received_headers", eval_check_for_forged_gmail_received_headers,
	    0, 0, 0),
	EV("check_for_forged_gw05_received_headers", eval_check_for_forged_gw05_received_headers,
	    0, 0, 0),
	EV("check_for_forged_hotmail_received_headers",
	    eval_check_for_forged_hotmail_received_headers, 0, 0, 0),
	EV("check_for_forged_juno_received_headers", eval_check_for_forged_juno_received_headers,
	    0, 0, 0),
	EV("check_for_forged_received_ip_helo", eval_check_for_forged_received_ip_helo, 0, 0, 0),
	EV("check_for_forged_received_trail", eval_check_for_forged_received_trail, 0, 0, 0),
	EV("check_for_forged_yahoo_received_headers", eval_check_for_forged_yahoo_received_headers,
	    0, 0, 0),
	EV("check_for_from_domain_in_received_headers",
	    eval_check_for_from_domain_in_received_headers, 2, 2, 0),
	EV("check_for_illegal_ip", eval_check_for_illegal_ip, 0, 0, 0),
	EV("check_for_matching_env_and_hdr_from", eval_check_for_matching_env_and_hdr_from, 0, 0, 0),
	EV("check_for_mime", eval_check_for_mime, 1, 1, EVAL_NEED_MIME),
	EV("check_for_mime_html", eval_check_for_mime_html, 0, 0, EVAL_NEED_MIME),
	EV("check_for_mime_html_only", eval_check_for_mime_html_only, 0, 0, EVAL_NEED_MIME),
	EV("check_for_missing_to_header", eval_check_for_missing_to_header, 0, 0, 0),
	EV("check_for_msn_groups_headers", eval_check_for_msn_groups_headers, 0, 0, 0),
	EV("check_for_no_hotmail_received_headers", eval_check_for_no_hotmail_received_headers,
	    0, 0, 0),
	EV("check_for_no_rdns_dotcom_helo", eval_check_for_no_rdns_dotcom_helo, 0, 0, 0),
	EV("check_for_numeric_helo", eval_check_for_numeric_helo, 0, 0, 0),
	EV("check_for_sender_no_reverse", eval_check_for_sender_no_reverse, 0, 0, 0),
	EV("check_for_shifted_date", eval_check_for_shifted_date, 2, 2, 0),
	EV("check_for_to_in_subject", eval_check_for_to_in_subject, 1, 1, 0),
	EV("check_for_unique_subject_id", eval_check_for_unique_subject_id, 0, 0, 0),
	EV("check_for_uppercase", eval_check_for_uppercase, 2, 2, EVAL_NEED_BODY | EVAL_NEED_MIME),
	EVRE("check_freemail_body", eval_check_freemail_body, 0, 1, EVAL_NEED_BODY),
	EVRE("check_freemail_from", eval_check_freemail_from, 0, 1, 0),
	EVRE("check_freemail_header", eval_check_freemail_header, 1, 2, 0),
	EV("check_freemail_replyto", eval_check_freemail_replyto, 0, 1, EVAL_NEED_BODY),
	EV("check_from_in_blacklist", eval_check_from_in_blocklist, 0, 0, 0),
	EV("check_from_in_blocklist", eval_check_from_in_blocklist, 0, 0, 0),
	EV("check_from_in_default_welcomelist", eval_check_from_in_default_welcomelist, 0, 0, 0),
	EV("check_from_in_default_whitelist", eval_check_from_in_default_welcomelist, 0, 0, 0),
	EV("check_from_in_list", eval_check_from_in_list, 1, 1, 0),
	EV("check_from_in_welcomelist", eval_check_from_in_welcomelist, 0, 0, 0),
	EV("check_from_in_whitelist", eval_check_from_in_welcomelist, 0, 0, 0),
	EV("check_header_count_range", eval_check_header_count_range, 3, 3, 0),
	EV("check_https_http_mismatch", eval_check_https_http_mismatch, 0, 2, EVAL_NEED_HTML),
	EV("check_iframe_src", eval_check_iframe_src, 0, 0, EVAL_NEED_HTML),
	EV("check_illegal_chars", eval_check_illegal_chars, 3, 3, 0),
	EV("check_ma_non_text", eval_check_ma_non_text, 0, 0, EVAL_NEED_MIME),
	EV("check_mailfrom_matches_rcvd", eval_check_mailfrom_matches_rcvd, 0, 0, 0),
	EV("check_messageid_not_usable", eval_check_messageid_not_usable, 0, 0, 0),
	EV("check_mime_multipart_ratio", eval_check_mime_multipart_ratio, 2, 2, EVAL_NEED_MIME),
	EV("check_msg_parse_flags", eval_check_msg_parse_flags, 1, 2, EVAL_NEED_MIME),
	EV("check_no_relays", eval_check_no_relays, 0, 0, 0),
	EV("check_outlook_message_id", eval_check_outlook_message_id, 0, 0, 0),
	EV("check_qp_ratio", eval_check_qp_ratio, 1, 1, EVAL_NEED_MIME),
	EV("check_ratware_envelope_from", eval_check_ratware_envelope_from, 0, 0, 0),
	EV("check_ratware_name_id", eval_check_ratware_name_id, 0, 0, 0),
	EV("check_relays_unparseable", eval_check_relays_unparseable, 0, 0, 0),
	EV("check_replyto_in_list", eval_check_replyto_in_list, 1, 1, 0),
	EV("check_stock_info", eval_check_stock_info, 1, 1, EVAL_NEED_MIME),
	EV("check_subject_in_blacklist", eval_check_subject_in_blocklist, 0, 0, 0),
	EV("check_subject_in_blocklist", eval_check_subject_in_blocklist, 0, 0, 0),
	EV("check_subject_in_welcomelist", eval_check_subject_in_welcomelist, 0, 0, 0),
	EV("check_subject_in_whitelist", eval_check_subject_in_welcomelist, 0, 0, 0),
	EV("check_to_in_all_spam", eval_check_to_in_all_spam, 0, 0, 0),
	EV("check_to_in_blacklist", eval_check_to_in_blocklist, 0, 0, 0),
	EV("check_to_in_blocklist", eval_check_to_in_blocklist, 0, 0, 0),
	EV("check_to_in_more_spam", eval_check_to_in_more_spam, 0, 0, 0),
	EV("check_to_in_welcomelist", eval_check_to_in_welcomelist, 0, 0, 0),
	EV("check_to_in_whitelist", eval_check_to_in_welcomelist, 0, 0, 0),
	EV("check_unresolved_template", eval_check_unresolved_template, 0, 0, 0),
	{ "check_uri_detail", eval_check_uri_detail, 1, 1, EVAL_NEED_URI,
	    eval_prepare_uri_detail, eval_release_uri_detail },
	EV("check_uri_host_in_blacklist", eval_check_uri_host_in_blocklist, 0, 0, EVAL_NEED_URI),
	EV("check_uri_host_in_blocklist", eval_check_uri_host_in_blocklist, 0, 0, EVAL_NEED_URI),
	EV("check_uri_host_in_welcomelist", eval_check_uri_host_in_welcomelist, 0, 0, EVAL_NEED_URI),
	EV("check_uri_host_in_whitelist", eval_check_uri_host_in_welcomelist, 0, 0, EVAL_NEED_URI),
	EV("check_uri_host_listed", eval_check_uri_host_listed, 1, 1, EVAL_NEED_URI),
	EV("check_uri_truncated", eval_check_uri_truncated, 0, 0, EVAL_NEED_HTML),
	EV("check_welcomelist_bounce_relays", eval_check_welcomelist_bounce_relays, 0, 0, 0),
	EV("check_whitelist_bounce_relays", eval_check_welcomelist_bounce_relays, 0, 0, 0),
	EV("gated_through_received_hdr_remover", eval_gated_through_received_hdr_remover, 0, 0, 0),
	EV("have_any_bounce_relays", eval_have_any_bounce_relays, 0, 0, 0),
	EV("helo_ip_mismatch", eval_helo_ip_mismatch, 0, 0, 0),
	EV("html_charset_faraway", eval_html_charset_faraway, 0, 0, EVAL_NEED_HTML),
	EV("html_eval", eval_html_eval, 2, 2, EVAL_NEED_HTML),
	EV("html_image_only", eval_html_image_only, 2, 2, EVAL_NEED_HTML),
	EV("html_image_ratio", eval_html_image_ratio, 2, 2, EVAL_NEED_HTML),
	EV("html_range", eval_html_range, 2, 3, EVAL_NEED_HTML),
	EV("html_tag_balance", eval_html_tag_balance, 2, 2, EVAL_NEED_HTML),
	EV("html_tag_exists", eval_html_tag_exists, 1, 1, EVAL_NEED_HTML),
	EV("html_test", eval_html_test, 1, 1, EVAL_NEED_HTML),
	{ "html_text_match", eval_html_text_match, 2, 2, EVAL_NEED_HTML,
	    eval_prepare_html_text_match, eval_release_regex_arg },
	EV("html_title_subject_ratio", eval_html_title_subject_ratio, 1, 1, EVAL_NEED_HTML),
	EV("image_count", eval_image_count, 2, 3, EVAL_NEED_MIME),
	EV("image_to_text_ratio", eval_image_to_text_ratio, 3, 3, EVAL_NEED_BODY | EVAL_NEED_MIME),
	EV("multipart_alternative_difference", eval_multipart_alternative_difference, 2, 2,
	    EVAL_NEED_HTML),
	EV("multipart_alternative_difference_count", eval_multipart_alternative_difference_count,
	    2, 2, EVAL_NEED_HTML),
	EV("pixel_coverage", eval_pixel_coverage, 2, 3, EVAL_NEED_MIME),
	EV("received_within_months", eval_received_within_months, 2, 2, 0),
	EV("similar_recipients", eval_similar_recipients, 2, 2, 0),
	EV("sorted_recipients", eval_sorted_recipients, 0, 0, 0),
	EV("subject_is_all_caps", eval_subject_is_all_caps, 0, 0, 0),
	EV("tvd_vertical_words", eval_tvd_vertical_words, 2, 2, EVAL_NEED_BODY),
};

#define EVAL_NDEFS (sizeof(eval_table) / sizeof(eval_table[0]))

const struct eval_def *eval_find(const char *name)
{
	size_t lo = 0, hi = EVAL_NDEFS;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, eval_table[mid].name);

		if (c == 0)
			return &eval_table[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

bool eval_domain_valid(const struct eval_conf *c, const char *d)
{
	return uri_domain_valid(c->uri, d);
}

const struct eval_def *eval_def_at(size_t i)
{
	return i < EVAL_NDEFS ? &eval_table[i] : NULL;
}

/* One argument of a Perl list: 'single' (only \\ and \' escape), "double" (backslash
 * escapes a character), or a bare word/number. Advances *pp past it and the comma. */
static int eval_arg_next(const char **pp, char **out, const char **err)
{
	const char *p = *pp;
	size_t cap = strlen(p) + 1, n = 0;
	char *d = malloc(cap);

	if (d == NULL)
		abort();
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\'' || *p == '"') {
		char q = *p++;

		for (; *p && *p != q; p++) {
			if (*p == '\\' && p[1] && (q == '"' || p[1] == '\\' || p[1] == '\''))
				p++;
			d[n++] = *p;
		}
		if (*p != q) {
			free(d);
			*err = "unterminated string in eval arguments";
			return -1;
		}
		p++;
	} else {
		const char *b = p;

		while (*p && *p != ',')
			p++;
		while (p > b && (p[-1] == ' ' || p[-1] == '\t'))
			p--;
		memcpy(d, b, (size_t)(p - b));
		n = (size_t)(p - b);
		while (*p == ' ' || *p == '\t')
			p++;
	}
	d[n] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == ',')
		p++;
	else if (*p != '\0') {
		free(d);
		*err = "expected ',' between eval arguments";
		return -1;
	}
	*pp = p;
	*out = d;
	return 0;
}

int eval_call_new(const struct eval_def *def, const char *args, struct eval_call **out,
    const char **err)
{
	struct eval_call *c = calloc(1, sizeof(*c));
	const char *p = args ? args : "";

	*out = NULL;
	if (c == NULL)
		abort();
	c->def = def;
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p) {
		char *a, *end;

		if (c->nargs == EVAL_MAX_ARGS) {
			*err = "too many eval arguments";
			goto fail;
		}
		if (eval_arg_next(&p, &a, err) < 0)
			goto fail;
		c->arg[c->nargs] = a;
		c->num[c->nargs] = strtod(a, &end);
		if (end == a || *end != '\0')
			c->num[c->nargs] = NAN;
		c->nargs++;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (c->nargs < def->min_args || c->nargs > def->max_args) {
		*err = "wrong number of eval arguments";
		goto fail;
	}
	if (def->prepare && def->prepare(c, err) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	eval_call_free(c);
	return -1;
}

void eval_call_free(struct eval_call *call)
{
	if (call == NULL)
		return;
	if (call->def && call->def->release)
		call->def->release(call);
	for (int i = 0; i < call->nargs; i++)
		free(call->arg[i]);
	free(call);
}

/* ---------------------------------------------------------------- per message */

struct eval_chunk { struct eval_chunk *next; size_t used, cap; char data[]; };

void *eval_alloc(struct eval_ctx *c, size_t n)
{
	struct eval_msg *m = c->m;
	struct eval_chunk *k = m->chunks;
	void *d;

	n = (n + 7) & ~(size_t)7;
	if (k == NULL || k->cap - k->used < n) {
		size_t cap = n > 16384 ? n : 16384;

		k = malloc(sizeof(*k) + cap);
		if (k == NULL)
			abort();
		k->used = 0;
		k->cap = cap;
		k->next = m->chunks;
		m->chunks = k;
	}
	d = k->data + k->used;
	k->used += n;
	return d;
}

char *eval_strndup(struct eval_ctx *c, const char *s, size_t n)
{
	char *d = eval_alloc(c, n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

struct eval_msg *eval_msg_new(void)
{
	struct eval_msg *m = calloc(1, sizeof(struct eval_msg));

	if (m)
		m->gen = 1;
	return m;
}

/* Ready for the next message: the first arena chunk is kept (most messages fit in it),
 * cached get() results expire with the generation. */
void eval_msg_reset(struct eval_msg *m)
{
	struct eval_chunk *k = m->chunks, *keep = NULL;
	uint32_t gen = m->gen;

	eval_html_free(m->html);        /* these live in the arena: before the chunks go */
	eval_uri_details_free(m->uris);
	eval_mime_free(m->mime);
	while (k) {
		struct eval_chunk *n = k->next;

		if (n == NULL && k->cap == 16384) {
			keep = k;
			keep->used = 0;
		} else {
			free(k);
		}
		k = n;
	}
	if (m->rcvd_done)
		received_info_free(&m->rcvd);
	memset((char *)m + offsetof(struct eval_msg, rcvd_done), 0,
	    sizeof(*m) - offsetof(struct eval_msg, rcvd_done));
	m->chunks = keep;
	m->gen = gen + 1;
	if (m->gen == 0) {                 /* wrapped: old entries must not look current */
		memset(m->hcache, 0, m->hslots * sizeof(*m->hcache));
		m->gen = 1;
	}
}

void eval_msg_free(struct eval_msg *m)
{
	if (m == NULL)
		return;
	eval_msg_reset(m);
	free(m->chunks);                   /* the chunk reset keeps for the next message */
	free(m->hcache);
	free(m);
}

/* ---------------------------------------------------------------- string sets */

static int eval_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void eval_strset_add(struct eval_strset *s, const char *str, size_t len)
{
	char *d;

	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, nc * sizeof(char *));

		if (v == NULL)
			abort();
		s->v = v;
		s->cap = nc;
	}
	d = malloc(len + 1);
	if (d == NULL)
		abort();
	for (size_t i = 0; i < len; i++)
		d[i] = (char)tolower((unsigned char)str[i]);
	d[len] = '\0';
	s->v[s->n++] = d;
	s->sorted = false;
}

void eval_strset_finish(struct eval_strset *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(char *), eval_str_cmp);
	s->sorted = true;
}

bool eval_strset_has(const struct eval_strset *s, const char *str, size_t len)
{
	char key[512];
	size_t lo = 0, hi = s->n;

	if (len >= sizeof(key))
		return false;
	for (size_t i = 0; i < len; i++)
		key[i] = (char)tolower((unsigned char)str[i]);
	key[len] = '\0';
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(key, s->v[mid]);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

void eval_strset_free(struct eval_strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- built-in regexes */

static pthread_mutex_t eval_rx_lock = PTHREAD_MUTEX_INITIALIZER;

const struct match_re *eval_rx_get(struct eval_rx *rx)
{
	struct match_re *r = __atomic_load_n(&rx->compiled, __ATOMIC_ACQUIRE);

	if (r == NULL) {
		pthread_mutex_lock(&eval_rx_lock);
		r = rx->compiled;
		if (r == NULL) {
			char err[200];

			if (match_re_compile(rx->re, rx->flags, &r, err, sizeof(err)) < 0) {
				fprintf(stderr, "eval: bad built-in pattern %s: %s\n", rx->re, err);
				abort();
			}
			__atomic_store_n(&rx->compiled, r, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&eval_rx_lock);
	}
	return r;
}

bool eval_rx_match(struct eval_ctx *c, struct eval_rx *rx, const char *s, size_t len)
{
	return match_re_exec(eval_rx_get(rx), s ? s : "", s ? len : 0, c->ms, 1) > 0;
}

bool eval_rx_groups(struct eval_ctx *c, struct eval_rx *rx, const char *s, size_t len,
    size_t *ov, int nov)
{
	return match_re_groups(eval_rx_get(rx), s ? s : "", s ? len : 0, 0, c->ms, ov, nov) > 0;
}

bool eval_dyn_match(struct eval_ctx *c, const char *pat, unsigned flags, const char *s)
{
	struct match_re *r = NULL;
	char err[160];
	bool hit;

	/* built from this message's fields and matched once: no JIT */
	if (match_re_compile(pat, flags | MATCH_NO_JIT, &r, err, sizeof(err)) < 0)
		return false;
	hit = match_re_exec(r, s ? s : "", s ? strlen(s) : 0, c->ms, 1) > 0;
	match_re_free(r);
	return hit;
}

/* ---------------------------------------------------------------- dates */

static const struct { const char *name; int off; } eval_tz[] = {
	{ "UT", 0 }, { "UTC", 0 }, { "NDT", -230 }, { "AST", -400 }, { "ADT", -300 },
	{ "NST", -330 }, { "EST", -500 }, { "EDT", -400 }, { "CST", -600 }, { "CDT", -500 },
	{ "MST", -700 }, { "MDT", -600 }, { "PST", -800 }, { "PDT", -700 }, { "HST", -1000 },
	{ "AKST", -900 }, { "AKDT", -800 }, { "HADT", -900 }, { "HAST", -1000 }, { "GMT", 0 },
	{ "BST", 100 }, { "IST", 100 }, { "WET", 0 }, { "WEST", 100 }, { "CET", 100 },
	{ "CEST", 200 }, { "EET", 200 }, { "EEST", 300 }, { "MSK", 300 }, { "MSD", 400 },
	{ "MET", 100 }, { "MEZ", 100 }, { "MEST", 200 }, { "MESZ", 200 }, { "BRST", -200 },
	{ "BRT", -300 }, { "AEST", 1000 }, { "AEDT", 1100 }, { "ACST", 930 }, { "ACDT", 1030 },
	{ "AWST", 800 }, { "NZST", 1200 }, { "NZDT", 1300 }, { "JST", 900 }, { "KST", 900 },
	{ "HKT", 800 }, { "SGT", 800 }, { "PHT", 800 }, { "IDT", 300 }, { NULL, 0 }
};

static const char *const eval_months[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
	"aug", "sep", "oct", "nov", "dec" };

static long eval_month(const char *s)
{
	for (int i = 0; i < 12; i++)
		if (strncasecmp(s, eval_months[i], 3) == 0)
			return i + 1;
	return 0;
}

#define EVAL_MON "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
static struct eval_rx eval_rx_d1 = { " (\\d+) " EVAL_MON " (\\d{4}) ", RULE_RE_I, NULL };
static struct eval_rx eval_rx_d2 = { " " EVAL_MON " +(\\d+) \\d+:\\d+:\\d+ (\\d{4}) ", RULE_RE_I, NULL };
static struct eval_rx eval_rx_d3 = { " (\\d+) " EVAL_MON " (\\d{2,3}) ", RULE_RE_I, NULL };
static struct eval_rx eval_rx_time = { " (\\d?\\d):(\\d\\d)(:(\\d\\d))? ", 0, NULL };
static struct eval_rx eval_rx_tz1 = { " ([-+]\\d{4}) ", 0, NULL };
static struct eval_rx eval_rx_tz2 = { "\\b([A-Z]{2,4}(?:-DST)?)\\b", 0, NULL };

/* SA's s/RE/ /: the match becomes one space. */
static void eval_date_cut(char *buf, const size_t *ov)
{
	buf[ov[0]] = ' ';
	memmove(buf + ov[0] + 1, buf + ov[1], strlen(buf + ov[1]) + 1);
}

static long eval_date_num(const char *buf, const size_t *ov, int g, size_t *len)
{
	char t[16];
	size_t n;

	if (ov[2 * g] == SIZE_MAX)
		return 0;
	n = ov[2 * g + 1] - ov[2 * g];
	if (len)
		*len = n;
	if (n >= sizeof(t))
		n = sizeof(t) - 1;
	memcpy(t, buf + ov[2 * g], n);
	t[n] = '\0';
	return strtol(t, NULL, 10);
}

double eval_parse_date(struct eval_ctx *c, const char *date)
{
	size_t dl = strlen(date);
	char *buf = eval_alloc(c, dl + 4);
	size_t o = 0, ov[10], ylen = 0;
	long yyyy = 0, dd = 0, mon = 0, hh = 0, mm = 0, ss = 0;
	int tz = 0;
	struct tm tm;
	time_t t;

	/* SA: $_ = " $date "; commas and the blanks after them, and blank runs, become one
	 * space */
	buf[o++] = ' ';
	for (const char *p = date; *p; p++) {
		char ch = *p == ',' ? ' ' : *p;

		if (*p == ',')
			while (p[1] == ' ')
				p++;
		if (isspace((unsigned char)ch)) {
			if (buf[o - 1] != ' ')
				buf[o++] = ' ';
			continue;
		}
		buf[o++] = ch;
	}
	if (buf[o - 1] != ' ')
		buf[o++] = ' ';
	buf[o] = '\0';
	if (eval_rx_groups(c, &eval_rx_d1, buf, strlen(buf), ov, 5)) {
		dd = eval_date_num(buf, ov, 1, NULL);
		mon = eval_month(buf + ov[4]);
		yyyy = eval_date_num(buf, ov, 3, &ylen);
	} else if (eval_rx_groups(c, &eval_rx_d2, buf, strlen(buf), ov, 5)) {
		mon = eval_month(buf + ov[2]);
		dd = eval_date_num(buf, ov, 2, NULL);
		yyyy = eval_date_num(buf, ov, 3, &ylen);
	} else if (eval_rx_groups(c, &eval_rx_d3, buf, strlen(buf), ov, 5)) {
		dd = eval_date_num(buf, ov, 1, NULL);
		mon = eval_month(buf + ov[4]);
		yyyy = eval_date_num(buf, ov, 3, &ylen);
	} else {
		return NAN;
	}
	eval_date_cut(buf, ov);
	if (ylen == 2 && yyyy < 50)
		yyyy += 2000;
	else if (ylen != 4)
		yyyy += 1900;
	if (eval_rx_groups(c, &eval_rx_time, buf, strlen(buf), ov, 5)) {
		hh = eval_date_num(buf, ov, 1, NULL);
		mm = eval_date_num(buf, ov, 2, NULL);
		ss = eval_date_num(buf, ov, 4, NULL);
		eval_date_cut(buf, ov);
	}
	if (eval_rx_groups(c, &eval_rx_tz1, buf, strlen(buf), ov, 5)) {
		long v = strtol(buf + ov[2] + 1, NULL, 10);

		tz = buf[ov[2]] == '-' ? -(int)v : (int)v;
	} else if (eval_rx_groups(c, &eval_rx_tz2, buf, strlen(buf), ov, 5)) {
		size_t k = ov[3] - ov[2];

		for (int z = 0; eval_tz[z].name; z++)
			if (strlen(eval_tz[z].name) == k && strncmp(eval_tz[z].name, buf + ov[2], k) == 0) {
				tz = eval_tz[z].off;
				break;
			}
	}
	if (ss > 59)
		ss = 59;
	if (mm > 59)
		mm = 59;
	if (hh > 23)
		hh = 23;
	{
		long max_dd = 31;

		if (mon == 4 || mon == 6 || mon == 9 || mon == 11)
			max_dd = 30;
		else if (mon == 2)
			max_dd = (!(yyyy % 4) && ((yyyy % 100) || !(yyyy % 400))) ? 29 : 28;
		if (dd > max_dd) {
			dd = 1;
			if (++mon > 12) {
				mon = 1;
				yyyy++;
			}
		}
	}
	if (yyyy > 2037)
		yyyy = 2037;
	else if (yyyy < 1970)
		yyyy = 1970;
	if (dd < 1)
		return NAN;         /* timegm would croak on day 0 */
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)yyyy - 1900;
	tm.tm_mon = (int)mon - 1;
	tm.tm_mday = (int)dd;
	tm.tm_hour = (int)hh;
	tm.tm_min = (int)mm;
	tm.tm_sec = (int)ss;
	t = timegm(&tm);
	{
		long off = ((labs(tz) / 100) * 60 + labs(tz) % 100) * 60;

		if (tz < 0)
			t += off;
		else if (t < off)
			t = 0;
		else
			t -= off;
	}
	return (double)t;
}

/* ---------------------------------------------------------------- settings */

/* Appends the CIDRs of a trusted_networks-style value (words; "!" exclusions and bad words
 * skipped) to l; l is left unsorted (eval_conf_new sorts it once every setting is in). */
static void eval_cidrs_add(struct cfg_cidrlist *l, const char *words)
{
	char buf[256];

	while (*words) {
		size_t n;
		struct cfg_cidr cc;

		while (*words == ' ' || *words == '\t')
			words++;
		n = strcspn(words, " \t");
		if (n == 0)
			break;
		if (n < sizeof(buf) && words[0] != '!') {      /* exclusions are not supported */
			memcpy(buf, words, n);
			buf[n] = '\0';
			if (cfg_parse_cidr(buf, &cc) == 0) {
				struct cfg_cidr *v = realloc(l->v, (l->n + 1) * sizeof(*v));

				if (v == NULL)
					abort();
				l->v = v;
				l->v[l->n++] = cc;
				l->sorted = false;
			}
		}
		words += n;
	}
}

static void eval_cidrs_copy(struct cfg_cidrlist *dst, const struct cfg_cidrlist *src)
{
	if (src == NULL || src->n == 0)
		return;
	dst->v = realloc(dst->v, (dst->n + src->n) * sizeof(*dst->v));
	if (dst->v == NULL)
		abort();
	memcpy(dst->v + dst->n, src->v, src->n * sizeof(*dst->v));
	dst->n += src->n;
	dst->sorted = false;
}

/* Adds each word; with wild, words with * or ? go there as regex alternatives (SA's
 * freemail wildcards: * is [^.]*, ? any character). */
static void eval_words_add(struct eval_strset *set, struct rules_buf *wild, const char *words)
{
	while (*words) {
		size_t n;

		while (*words == ' ' || *words == '\t')
			words++;
		n = strcspn(words, " \t");
		if (n == 0)
			break;
		if (wild && strcspn(words, "*?") < n) {
			if (strspn(words, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789.*?-") >= n) {
				if (wild->n)
					rules_buf_put(wild, "|", 1);
				for (size_t i = 0; i < n; i++) {
					char ch = (char)tolower((unsigned char)words[i]);

					if (ch == '.')
						rules_buf_put(wild, "\\.", 2);
					else if (ch == '?')
						rules_buf_put(wild, ".", 1);
					else if (ch == '*')
						rules_buf_put(wild, "[^.]*", 5);
					else
						rules_buf_put(wild, &ch, 1);
				}
			}
		} else {
			eval_strset_add(set, words, n);
		}
		words += n;
	}
}

/* A list line: "(NAME) a b c" for enlist_*, else "a b c". */
static void eval_list_add(struct eval_conf *c, const char *key, const char *v)
{
	struct eval_list *l;
	const char *name = "", *ne = "";

	if (strncmp(key, "enlist_", 7) == 0 || strcmp(key, "delist_uri_host") == 0) {
		if (*v != '(' || (ne = strchr(v, ')')) == NULL)
			return;
		name = v + 1;
		v = ne + 1;
	}
	c->lists = realloc(c->lists, (c->nlists + 1) * sizeof(*c->lists));
	if (c->lists == NULL)
		abort();
	l = &c->lists[c->nlists++];
	memset(l, 0, sizeof(*l));
	l->key = rules_xstrdup(strcmp(key, "delist_uri_host") == 0 ? "delist_uri_host" : key);
	l->name = malloc((size_t)(ne - name) + 1);
	if (l->name == NULL)
		abort();
	memcpy(l->name, name, (size_t)(ne - name));
	l->name[ne - name] = '\0';
	while (*v) {
		size_t n;

		while (*v == ' ' || *v == '\t')
			v++;
		n = strcspn(v, " \t");
		if (n == 0)
			break;
		l->v = realloc(l->v, (l->n + 1) * sizeof(char *));
		if (l->v == NULL)
			abort();
		l->v[l->n] = malloc(n + 1);
		if (l->v[l->n] == NULL)
			abort();
		for (size_t i = 0; i < n; i++)
			l->v[l->n][i] = (char)tolower((unsigned char)v[i]);
		l->v[l->n++][n] = '\0';
		v += n;
	}
}

/* SA's unwelcomelist_from ADDR... (remove_addrlist_value): each ADDR, as written, leaves
 * the lists named k1/k2 (one list under two names); pairs: the _from_rcvd lists, where an
 * entry is ADDR DOMAIN and every DOMAIN of ADDR goes. */
static void eval_list_remove(struct eval_conf *c, const char *k1, const char *k2,
    const char *words, bool pairs)
{
	while (*words) {
		size_t n;

		while (*words == ' ' || *words == '\t')
			words++;
		n = strcspn(words, " \t");
		if (n == 0)
			break;
		for (size_t i = 0; i < c->nlists; i++) {
			struct eval_list *l = &c->lists[i];
			size_t step = pairs ? 2 : 1, out = 0;

			if (strcmp(l->key, k1) != 0 && strcmp(l->key, k2) != 0)
				continue;
			for (size_t e = 0; e + step <= l->n; e += step) {
				if (strlen(l->v[e]) == n && strncasecmp(l->v[e], words, n) == 0) {
					for (size_t j = 0; j < step; j++)
						free(l->v[e + j]);
					continue;
				}
				for (size_t j = 0; j < step; j++)
					l->v[out++] = l->v[e + j];
			}
			for (size_t e = l->n - l->n % step; e < l->n; e++)
				l->v[out++] = l->v[e];           /* an odd last word stays */
			l->n = out;
		}
		words += n;
	}
}

struct eval_conf *eval_conf_new(const struct rule_src *src, const struct rules_opts *o)
{
	struct eval_conf *c = calloc(1, sizeof(*c));
	char **orig = NULL;
	size_t norig = 0;
	struct rules_buf wild = { 0 };
	const char **tlds = NULL, **redir = NULL;
	size_t ntlds = 0, nredir = 0;

	if (c == NULL)
		abort();
	c->client_relay = o ? o->client_relay : true;
	c->hostname = rules_xstrdup(o && o->hostname ? o->hostname : "localhost");
	c->dkim_uris = true;                        /* parse_dkim_uris default */
	if (o && o->trusted && o->trusted->n) {
		eval_cidrs_copy(&c->rcvd.trusted, o->trusted);
		c->rcvd.trusted_set = true;
	}
	if (o && o->internal && o->internal->n) {
		eval_cidrs_copy(&c->rcvd.internal, o->internal);
		c->rcvd.internal_set = true;
	}
	for (size_t i = 0; i < rule_src_nsettings(src); i++) {
		const char *k, *v;

		rule_src_setting(src, i, &k, &v);
		if (strcmp(k, "trusted_networks") == 0) {
			eval_cidrs_add(&c->rcvd.trusted, v);
			c->rcvd.trusted_set = true;
		} else if (strcmp(k, "internal_networks") == 0) {
			eval_cidrs_add(&c->rcvd.internal, v);
			c->rcvd.internal_set = true;
		} else if (strcmp(k, "msa_networks") == 0) {
			eval_cidrs_add(&c->rcvd.msa, v);
		} else if (strcmp(k, "clear_trusted_networks") == 0) {
			c->rcvd.trusted.n = 0;
			c->rcvd.trusted_set = false;
		} else if (strcmp(k, "clear_internal_networks") == 0) {
			c->rcvd.internal.n = 0;
			c->rcvd.internal_set = false;
		} else if (strcmp(k, "clear_msa_networks") == 0) {
			c->rcvd.msa.n = 0;
		} else if (strcmp(k, "originating_ip_headers") == 0) {
			const char *p = v;

			while (*p) {
				size_t n;

				while (*p == ' ' || *p == '\t')
					p++;
				n = strcspn(p, " \t");
				if (n == 0)
					break;
				orig = realloc(orig, (norig + 1) * sizeof(char *));
				if (orig == NULL)
					abort();
				orig[norig] = malloc(n + 1);
				if (orig[norig] == NULL)
					abort();
				memcpy(orig[norig], p, n);
				orig[norig++][n] = '\0';
				p += n;
			}
		} else if (strcmp(k, "clear_originating_ip_headers") == 0) {
			for (size_t j = 0; j < norig; j++)
				free(orig[j]);
			norig = 0;
		} else if (strcmp(k, "freemail_domains") == 0) {
			eval_words_add(&c->freemail, &wild, v);
		} else if (strcmp(k, "freemail_welcomelist") == 0 || strcmp(k, "freemail_whitelist") == 0) {
			eval_words_add(&c->freemail_welcome, NULL, v);
		} else if (strcmp(k, "util_rb_tld") == 0) {
			tlds = realloc(tlds, (ntlds + 1) * sizeof(*tlds));
			if (tlds == NULL)
				abort();
			tlds[ntlds++] = v;
		} else if (strcmp(k, "redirector_pattern") == 0) {
			redir = realloc(redir, (nredir + 1) * sizeof(*redir));
			if (redir == NULL)
				abort();
			redir[nredir++] = v;
		} else if (strcmp(k, "clear_util_rb") == 0) {
			ntlds = 0;
			eval_strset_free(&c->tld2);
			eval_strset_free(&c->tld3);
		} else if (strcmp(k, "util_rb_2tld") == 0) {
			eval_words_add(&c->tld2, NULL, v);
		} else if (strcmp(k, "util_rb_3tld") == 0) {
			eval_words_add(&c->tld3, NULL, v);
		} else if (strcmp(k, "envelope_sender_header") == 0) {
			free(c->envelope_sender_header);
			c->envelope_sender_header = rules_xstrdup(v);
		} else if (strcmp(k, "parse_dkim_uris") == 0) {
			/* SA's CONF_TYPE_BOOL: yes/1 or no/0, anything else an error (kept) */
			if (strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0)
				c->dkim_uris = true;
			else if (strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0)
				c->dkim_uris = false;
		} else if (strcmp(k, "unwelcomelist_from") == 0 || strcmp(k, "unwhitelist_from") == 0) {
			eval_list_remove(c, "welcomelist_from", "whitelist_from", v, false);
		} else if (strcmp(k, "unblocklist_from") == 0 || strcmp(k, "unblacklist_from") == 0) {
			eval_list_remove(c, "blocklist_from", "blacklist_from", v, false);
		} else if (strcmp(k, "unwelcomelist_from_rcvd") == 0 ||
		    strcmp(k, "unwhitelist_from_rcvd") == 0) {
			eval_list_remove(c, "welcomelist_from_rcvd", "whitelist_from_rcvd", v, true);
			eval_list_remove(c, "def_welcomelist_from_rcvd", "def_whitelist_from_rcvd", v,
			    true);
		} else if (strcmp(k, "ok_locales") == 0) {
			c->ok_locales_all = strstr(v, "all") != NULL;
		} else if (strstr(k, "list_uri_host") && strncmp(k, "enlist", 6) != 0 &&
		    strncmp(k, "delist", 6) != 0) {
			/* blocklist_uri_host H ... is enlist_uri_host (BLOCK) H ..., welcome: WELCOME */
			struct rules_buf b = { 0 };

			rules_buf_put(&b, k[0] == 'b' ? "(BLOCK) " : "(WELCOME) ",
			    k[0] == 'b' ? 8 : 10);
			rules_buf_put(&b, v, strlen(v));
			rules_buf_put(&b, "", 1);
			eval_list_add(c, "enlist_uri_host", b.p);
			free(b.p);
		} else {
			eval_list_add(c, k, v);
		}
	}
	c->orig_ip_headers = orig;
	c->norig = norig;
	/* Each Received hop is looked up in these (rules/received.c, rcvd_in_set): sorted, a
	 * lookup is a binary search per prefix length, as for the config's lists, not a walk of
	 * every entry (a site's trusted_networks of 1,000 prefixes, per hop and message). */
	cfg_cidrlist_sort(&c->rcvd.trusted);
	cfg_cidrlist_sort(&c->rcvd.internal);
	cfg_cidrlist_sort(&c->rcvd.msa);
	eval_strset_finish(&c->freemail);
	if (wild.n) {
		struct rules_buf re = { 0 };
		char err[160];

		rules_buf_put(&re, "\\@(?:", 5);
		rules_buf_put(&re, wild.p, wild.n);
		rules_buf_put(&re, ")$", 2);
		if (match_re_compile(re.p, 0, &c->freemail_re, err, sizeof(err)) < 0)
			c->freemail_re = NULL;
		free(re.p);
	}
	free(wild.p);
	eval_strset_finish(&c->freemail_welcome);
	eval_strset_finish(&c->tld2);
	eval_strset_finish(&c->tld3);
	c->uri = uri_conf_new(tlds, ntlds, redir, nredir);
	free(tlds);
	free(redir);
	return c;
}

void eval_conf_free(struct eval_conf *c)
{
	if (c == NULL)
		return;
	free(c->rcvd.trusted.v);
	free(c->rcvd.internal.v);
	free(c->rcvd.msa.v);
	for (size_t i = 0; i < c->norig; i++)
		free(c->orig_ip_headers[i]);
	free(c->orig_ip_headers);
	free(c->hostname);
	eval_strset_free(&c->freemail);
	match_re_free(c->freemail_re);
	eval_strset_free(&c->freemail_welcome);
	eval_strset_free(&c->tld2);
	eval_strset_free(&c->tld3);
	uri_conf_free(c->uri);
	free(c->envelope_sender_header);
	for (size_t i = 0; i < c->nlists; i++) {
		for (size_t k = 0; k < c->lists[i].n; k++)
			free(c->lists[i].v[k]);
		free(c->lists[i].v);
		free(c->lists[i].key);
		free(c->lists[i].name);
	}
	free(c->lists);
	free(c);
}

/* ---------------------------------------------------------------- registry boundaries */

static bool eval_us_state(const char *s, size_t n)
{
	static const char states[] = " ak al ar az ca co ct dc de fl ga gu hi ia id il in ks ky la "
	    "ma md me mi mn mo ms mt nc nd ne nh nj nm nv ny oh ok or pa pr ri sc sd tn tx ut va vi "
	    "vt wa wi wv wy ";
	char k[5];

	if (n != 2)
		return false;
	snprintf(k, sizeof(k), " %.2s ", s);
	return strstr(states, k) != NULL;
}

const char *eval_registered_domain(struct eval_ctx *c, const char *host)
{
	char *d = eval_strndup(c, host, strlen(host)), *o = d;
	const char *parts[64];
	size_t lens[64], np = 0, start = 0;

	/* lower case, dot runs squeezed, no leading or trailing dots */
	for (const char *p = host; *p; p++) {
		if (*p == '.' && (o == d || o[-1] == '.'))
			continue;
		*o++ = (char)tolower((unsigned char)*p);
	}
	*o = '\0';
	while (o > d && o[-1] == '.')
		*--o = '\0';
	if (*d == '\0')
		return d;
	for (char *p = d; np < 64;) {
		char *dot = strchr(p, '.');

		parts[np] = p;
		lens[np++] = dot ? (size_t)(dot - p) : strlen(p);
		if (!dot)
			break;
		p = dot + 1;
	}
	/* drop host labels until the rest is a TLD (2 or 3 level ones from util_rb_*) */
	while (np - start > 1) {
		size_t left = np - start;
		const char *rest = parts[start];

		if (left == 2 && eval_strset_has(&c->conf->tld2, rest, strlen(rest)))
			break;
		if (left == 3) {
			if (lens[start + 2] == 2 && strncmp(parts[start + 2], "us", 2) == 0) {
				if (eval_us_state(parts[start + 1], lens[start + 1]))
					break;
			} else if (eval_strset_has(&c->conf->tld3, rest, strlen(rest))) {
				break;
			}
		}
		if (left == 4 && lens[start + 3] == 2 && strncmp(parts[start + 3], "us", 2) == 0 &&
		    ((lens[start] == 3 && strncmp(parts[start], "pvt", 3) == 0 && lens[start + 1] == 3 &&
		    strncmp(parts[start + 1], "k12", 3) == 0) || (lens[start] == 2 &&
		    parts[start][0] == 'c' && (parts[start][1] == 'i' || parts[start][1] == 'o'))) &&
		    eval_us_state(parts[start + 2], lens[start + 2]))
			break;
		start++;
	}
	/* the last host label goes back onto the domain */
	if (start > 0)
		start--;
	return parts[start];
}
