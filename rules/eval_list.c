/* eval_list.c — SpamAssassin's list-driven evals: WLBLEval (welcome/block lists of senders
 * and recipients, enlist_addrlist lists, URI host lists), WelcomeListSubject, VBounce's
 * bounce relays, ImageInfo (GIF/PNG/JPEG attachments: counts and pixel areas), URIEval and
 * HTTPSMismatch, and the DKIM tests, which SA answers with 0 when it has no DNS. */
#include "eval_int.h"

#include "html.h"
#include "rule_parse.h"
#include "samsg.h"
#include "uri.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- address lists */

/* SA's address globs: '*' any run, '?' one character, case-insensitive, anchored. */
static bool list_glob(const char *pat, const char *s)
{
	const char *star = NULL, *ss = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			ss = s;
		} else if (*pat == '?' || tolower((unsigned char)*pat) == tolower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++ss;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* Does any entry of the setting lines named key (for enlist_addrlist: of list name)
 * match addr? */
static bool list_has_addr(struct eval_ctx *c, const char *key, const char *list,
    const char *addr)
{
	const struct eval_conf *conf = c->conf;

	for (size_t i = 0; i < conf->nlists; i++) {
		const struct eval_list *l = &conf->lists[i];

		if (strcmp(l->key, key) != 0 || (list && strcmp(l->name, list) != 0))
			continue;
		for (size_t k = 0; k < l->n; k++)
			if (list_glob(l->v[k], addr))
				return true;
	}
	return false;
}

/* SA's all_to_addrs(): Resent-To/Cc when present, else To, Cc, Apparently-To, Delivered-To,
 * Envelope-Recipients, Apparently-Resent-To, X-Envelope-To, Envelope-To, X-Delivered-To,
 * X-Original-To, X-Rcpt-To, X-Real-To. */
static size_t list_all_to(struct eval_ctx *c, const char **out, size_t max)
{
	static const char *const resent[] = { "Resent-To:addr", "Resent-Cc:addr", NULL };
	static const char *const plain[] = { "To:addr", "Cc:addr", "Apparently-To:addr",
		"Delivered-To:addr", "Envelope-Recipients:addr", "Apparently-Resent-To:addr",
		"X-Envelope-To:addr", "Envelope-To:addr", "X-Delivered-To:addr", "X-Original-To:addr",
		"X-Rcpt-To:addr", "X-Real-To:addr", NULL };
	const char *const *reqs = eval_exists(c, "Resent-To") || eval_exists(c, "Resent-Cc") ?
	    resent : plain;
	size_t n = 0;

	for (int k = 0; reqs[k] && n < max; k++)
		n += eval_get_all(c, reqs[k], out + n, max - n);
	return n;
}

static bool list_from_in(struct eval_ctx *c, const char *key, const char *key2,
    const char *list)
{
	const char *v[64];
	size_t n = eval_all_from_addrs(c, v, 64);

	for (size_t i = 0; i < n; i++)
		if (list_has_addr(c, key, list, v[i]) || (key2 && list_has_addr(c, key2, list, v[i])))
			return true;
	return false;
}

static bool list_to_in(struct eval_ctx *c, const char *key, const char *key2)
{
	const char *v[128];
	size_t n = list_all_to(c, v, 128);

	for (size_t i = 0; i < n; i++)
		if (list_has_addr(c, key, NULL, v[i]) || (key2 && list_has_addr(c, key2, NULL, v[i])))
			return true;
	return false;
}

EVAL_FN(eval_check_from_in_blocklist)
{
	(void)call;
	return list_from_in(c, "blocklist_from", "blacklist_from", NULL);
}

static int list_from_rcvd(struct eval_ctx *c, const char *key, const char *key2);

/* welcomelist_from, then welcomelist_from_rcvd (SA's _check_from_in_welcomelist) */
EVAL_FN(eval_check_from_in_welcomelist)
{
	(void)call;
	return list_from_in(c, "welcomelist_from", "whitelist_from", NULL) ||
	    list_from_rcvd(c, "welcomelist_from_rcvd", "whitelist_from_rcvd") > 0;
}

/* Does a relay match a _from_rcvd entry's second word? "[IP]", "[IP/len]", "[a.b]" (a
 * classful prefix) or "[IPv6...]" against its address, else a name the relay's rDNS is or
 * ends in ("(?:^|\.)DOMAIN$"), as SA's _check_welcomelist_rcvd. */
static bool list_relay_matches(const struct rcvd_relay *rl, const char *dom)
{
	size_t dl = strlen(dom);

	if (dom[0] == '[') {
		const char *close = strchr(dom, ']');
		char wl[96];
		size_t n;
		struct cfg_cidr cc;
		struct sockaddr_storage ss;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		bool dotted_only = true;
		int dots = 0;

		if (close == NULL || rl->ip[0] == '\0')
			return false;
		n = (size_t)(close - dom - 1);
		if (close[1] != '\0' && (close[1] != '/' || strspn(close + 2, "0123456789") !=
		    strlen(close + 2) || close[2] == '\0' || strlen(close + 2) > 3))
			return false;
		if (n + strlen(close + 1) >= sizeof(wl))
			return false;
		memcpy(wl, dom + 1, n);
		strcpy(wl + n, close + 1);
		for (const char *p = wl; *p; p++) {
			if (*p == '.')
				dots++;
			else if (!isdigit((unsigned char)*p))
				dotted_only = false;
		}
		if (dotted_only && dots == 3)
			return strcmp(wl, rl->ip) == 0;           /* an IPv4 address: exactly */
		if (dotted_only) {                          /* a classful subnet: "a.b" */
			size_t wn = strlen(wl);

			while (wn && wl[wn - 1] == '.')
				wn--;
			return wn && strncmp(wl, rl->ip, wn) == 0 && rl->ip[wn] == '.';
		}
		if (cfg_parse_cidr(wl, &cc) != 0)
			return false;
		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, rl->ip, &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, rl->ip, &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
		else
			return false;
		return cfg_cidr_match(&cc, (struct sockaddr *)&ss);
	} else {
		size_t rl_len = strlen(rl->rdns);

		return rl_len >= dl && strcasecmp(rl->rdns + rl_len - dl, dom) == 0 &&
		    (rl_len == dl || rl->rdns[rl_len - dl - 1] == '.');
	}
}

/* (def_)welcomelist_from_rcvd ADDR DOMAIN: the sender matches and so does the first
 * untrusted relay, or with no untrusted relay any trusted one (SA bug 4425: never a trusted
 * relay when an untrusted one brought the message). 1 a match, -1 the address alone (SA's
 * possible forgery), 0 neither. */
static int list_from_rcvd(struct eval_ctx *c, const char *key, const char *key2)
{
	const struct eval_conf *conf = c->conf;
	const char *v[64];
	size_t n = eval_all_from_addrs(c, v, 64);
	const struct rcvd_info *ri = eval_relays(c);
	const struct rcvd_relay *const *relays;
	size_t nrelays;
	int found = 0;

	if (ri->nuntrusted) {
		relays = (const struct rcvd_relay *const *)ri->untrusted;
		nrelays = 1;
	} else {
		relays = (const struct rcvd_relay *const *)ri->trusted;
		nrelays = ri->ntrusted;
	}
	if (nrelays == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < conf->nlists; k++) {
			const struct eval_list *l = &conf->lists[k];

			if (strcmp(l->key, key) != 0 && (!key2 || strcmp(l->key, key2) != 0))
				continue;
			for (size_t e = 0; e + 1 < l->n; e += 2) {
				if (!list_glob(l->v[e], v[i]))
					continue;
				found = -1;
				for (size_t r = 0; r < nrelays; r++)
					if (list_relay_matches(relays[r], l->v[e + 1]))
						return 1;
			}
		}
	return found;
}

EVAL_FN(eval_check_from_in_default_welcomelist)
{
	(void)call;
	return list_from_rcvd(c, "def_welcomelist_from_rcvd", "def_whitelist_from_rcvd") > 0;
}

EVAL_FN(eval_check_from_in_list)
{
	return list_from_in(c, "enlist_addrlist", NULL, call->arg[0]);
}

EVAL_FN(eval_check_replyto_in_list)
{
	const char *r = eval_get(c, "Reply-To:addr");

	return r[0] && list_has_addr(c, "enlist_addrlist", call->arg[0], r);
}

EVAL_FN(eval_check_to_in_blocklist)
{
	(void)call;
	return list_to_in(c, "blocklist_to", "blacklist_to");
}

EVAL_FN(eval_check_to_in_welcomelist)
{
	(void)call;
	return list_to_in(c, "welcomelist_to", "whitelist_to");
}

EVAL_FN(eval_check_to_in_more_spam)
{
	(void)call;
	return list_to_in(c, "more_spam_to", NULL);
}

EVAL_FN(eval_check_to_in_all_spam)
{
	(void)call;
	return list_to_in(c, "all_spam_to", NULL);
}

/* WelcomeListSubject: the Subject matches a welcomelist_subject / blocklist_subject glob */
static bool list_subject(struct eval_ctx *c, const char *key, const char *key2)
{
	const char *s = eval_get(c, "Subject");
	size_t n = strlen(s);
	char *t = eval_strndup(c, s, n);

	if (n && t[n - 1] == '\n')
		t[n - 1] = '\0';
	return list_has_addr(c, key, NULL, t) || list_has_addr(c, key2, NULL, t);
}

EVAL_FN(eval_check_subject_in_welcomelist)
{
	(void)call;
	return list_subject(c, "welcomelist_subject", "whitelist_subject");
}

EVAL_FN(eval_check_subject_in_blocklist)
{
	(void)call;
	return list_subject(c, "blocklist_subject", "blacklist_subject");
}

/* VBounce: bounce relays are configured at all / one of them relayed this message */
EVAL_FN(eval_have_any_bounce_relays)
{
	(void)call;
	for (size_t i = 0; i < c->conf->nlists; i++)
		if (strcmp(c->conf->lists[i].key, "welcomelist_bounce_relays") == 0 ||
		    strcmp(c->conf->lists[i].key, "whitelist_bounce_relays") == 0)
			return 1;
	return 0;
}

EVAL_FN(eval_check_welcomelist_bounce_relays)
{
	const struct rcvd_info *ri;

	if (!eval_have_any_bounce_relays(c, call))
		return 0;
	ri = eval_relays(c);
	for (size_t i = 0; i < ri->n; i++)
		if (list_has_addr(c, "welcomelist_bounce_relays", NULL, ri->v[i].rdns) ||
		    list_has_addr(c, "whitelist_bounce_relays", NULL, ri->v[i].rdns))
			return 1;
	return 0;
}

/* ---------------------------------------------------------------- URI host lists */

static bool list_is_ipv4(const char *s)
{
	int a, b, cc, d;
	char tail;

	return sscanf(s, "%d.%d.%d.%d%c", &a, &b, &cc, &d, &tail) == 4;
}

const struct uri_details *eval_uri_details(struct eval_ctx *c)
{
	struct uri_details *d = c->m->uris;

	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		abort();
	d->all.max = 4096;
	c->m->uris = d;
	/* text URIs of the rendered body (Subject first), then the HTML links */
	for (size_t i = 0; i < c->sc->body.nlines; i++) {
		const char *s;
		size_t n;

		rules_line_at(&c->sc->body, i, &s, &n);
		uri_details_text(c->conf->uri, c->ms, d, s, n);
	}
	{
		const struct uri_list *hu = eval_html_uris(c);

		for (size_t i = 0; i < hu->n; i++)
			uri_details_html(c->conf->uri, c->ms, d, hu->v[i]);
		eval_html_uri_info(c, d);
	}
	/* _process_dkim_uri_list (parse_dkim_uris, on by default): "domainkeys:D" for each
	 * /\bd\s*=\s*([^;]+)/g of each DomainKey-Signature, then DKIM-Signature field, white
	 * space removed */
	for (int k = 0; k < 2 && c->conf->dkim_uris; k++) {
		static struct eval_rx rx_d = { "\\bd\\s*=\\s*([^;]+)", 0, NULL };
		const char *v[64];
		size_t n = eval_get_all(c, k ? "DKIM-Signature" : "DomainKey-Signature", v, 64);

		for (size_t i = 0; i < n; i++) {
			size_t len = strlen(v[i]), at = 0, ov[4];

			while (at < len && match_re_groups(eval_rx_get(&rx_d), v[i], len, at, c->ms, ov,
			    2) > 0) {
				struct rules_buf b = { 0 };

				rules_buf_put(&b, "domainkeys:", 11);
				for (size_t j = ov[2]; j < ov[3]; j++)
					if (!strchr(" \t\n\r\f\v", v[i][j]))
						rules_buf_put(&b, v[i] + j, 1);
				rules_buf_put(&b, "", 1);
				uri_details_dkim(c->conf->uri, d, b.p);
				free(b.p);
				at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
			}
		}
	}
	return d;
}

void eval_uri_details_free(struct uri_details *d)
{
	if (d) {
		uri_details_free(d);
		free(d);
	}
}

/* enlist_uri_host (NAME) hosts: the most specific entry of a URI host, its parents...
 * decides (WLBLEval's _check_uri_host_listed over the hosts of the URI list). */
static bool list_uri_listed(struct eval_ctx *c, const char *name)
{
	const struct uri_details *d;
	const struct eval_list *ls[64], **lv = ls;
	size_t nl = 0;
	bool hit = false;

	/* the lists in question, in config order, once (not per host and parent) */
	for (size_t k = 0; k < c->conf->nlists; k++) {
		const struct eval_list *l = &c->conf->lists[k];

		if (strcmp(l->key, "enlist_uri_host") != 0 || strcmp(l->name, name) != 0)
			continue;
		if (nl == sizeof(ls) / sizeof(ls[0]) && lv == ls) {
			lv = malloc(c->conf->nlists * sizeof(*lv));
			if (lv == NULL)
				abort();
			memcpy(lv, ls, sizeof(ls));
		}
		lv[nl++] = l;
	}
	if (nl == 0)
		return false;
	d = eval_uri_details(c);
	for (size_t i = 0; i < d->n && !hit; i++) {
		if (strncasecmp(d->v[i].raw, "mailto:", 7) == 0)
			continue;
		for (size_t j = 0; j < d->v[i].hosts.n && !hit; j++) {
			const char *h = d->v[i].hosts.v[j];
			int verdict = -1;

			for (const char *q = h; q && *q && verdict < 0;) {
				for (size_t k = 0; k < nl && verdict < 0; k++) {
					const struct eval_list *l = lv[k];

					for (size_t e = 0; e < l->n; e++) {
						const char *ent = l->v[e];
						bool neg = ent[0] == '!';

						if (strcasecmp(neg ? ent + 1 : ent, q) == 0) {
							verdict = neg ? 0 : 1;
							break;
						}
					}
				}
				if (list_is_ipv4(h))
					break;
				q = strchr(q, '.');
				if (q)
					q++;
			}
			hit = verdict == 1;
		}
	}
	if (lv != ls)
		free(lv);
	return hit;
}

EVAL_FN(eval_check_uri_host_listed)
{
	return list_uri_listed(c, call->arg[0]);
}

EVAL_FN(eval_check_uri_host_in_blocklist)
{
	(void)call;
	return list_uri_listed(c, "BLOCK");
}

EVAL_FN(eval_check_uri_host_in_welcomelist)
{
	(void)call;
	return list_uri_listed(c, "WELCOME");
}

/* ---------------------------------------------------------------- URIDetail */

/* uri_detail NAME KEY op /re/ ...: the definition (rule_parse.c checked it) compiled. */
enum { UD_RAW = 0, UD_CLEANED, UD_DOMAIN, UD_HOST, UD_TYPE, UD_TEXT };
struct uri_detail_crit { int key; bool neg; struct match_re *re; };
struct uri_detail_rule { size_t n; struct uri_detail_crit v[16]; };

void eval_release_uri_detail(struct eval_call *call)
{
	struct uri_detail_rule *r = call->data;

	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		match_re_free(r->v[i].re);
	free(r);
	call->data = NULL;
}

int eval_prepare_uri_detail(struct eval_call *call, const char **err)
{
	struct uri_detail_rule *r = calloc(1, sizeof(*r));
	const char *q = call->arg[0];
	char ebuf[160];

	if (r == NULL)
		abort();
	call->data = r;
	for (;;) {
		const char *k, *rerr = NULL;
		size_t kl;
		char *re = NULL;
		unsigned fl = 0;
		struct uri_detail_crit *cr;

		while (*q == ' ' || *q == '\t')
			q++;
		if (*q == '\0')
			break;
		if (r->n == sizeof(r->v) / sizeof(r->v[0])) {
			*err = "uri_detail: more than 16 criteria";
			return -1;
		}
		cr = &r->v[r->n];
		k = q;
		while (isalnum((unsigned char)*q) || *q == '_')
			q++;
		kl = (size_t)(q - k);
		cr->key = kl == 3 && strncasecmp(k, "raw", 3) == 0 ? UD_RAW :
		    kl == 7 && strncasecmp(k, "cleaned", 7) == 0 ? UD_CLEANED :
		    kl == 6 && strncasecmp(k, "domain", 6) == 0 ? UD_DOMAIN :
		    kl == 4 && strncasecmp(k, "host", 4) == 0 ? UD_HOST :
		    kl == 4 && strncasecmp(k, "type", 4) == 0 ? UD_TYPE :
		    kl == 4 && strncasecmp(k, "text", 4) == 0 ? UD_TEXT : -1;
		while (*q == ' ' || *q == '\t')
			q++;
		if (cr->key < 0 || !((q[0] == '=' || q[0] == '!') && q[1] == '~')) {
			*err = "uri_detail: expected raw|type|cleaned|text|domain|host =~ /regex/";
			return -1;
		}
		cr->neg = q[0] == '!';
		q += 2;
		while (*q == ' ' || *q == '\t')
			q++;
		if (rule_parse_regex(&q, &re, &fl, &rerr) < 0) {
			*err = "uri_detail: bad regex";
			return -1;
		}
		if (match_re_compile(re, fl, &cr->re, ebuf, sizeof(ebuf)) < 0) {
			free(re);
			*err = "uri_detail: regex PCRE2 cannot compile";
			return -1;
		}
		free(re);
		r->n++;
	}
	if (r->n == 0) {
		*err = "uri_detail: no criteria";
		return -1;
	}
	return 0;
}

static bool ud_test(struct eval_ctx *c, const struct uri_detail_crit *cr, const char *s)
{
	bool m = match_re_exec(cr->re, s, strlen(s), c->ms, 1) > 0;

	return cr->neg ? !m : m;
}

/* One of the strings of l meets the criterion (none: it fails, =~ or !~). */
static bool ud_any(struct eval_ctx *c, const struct uri_detail_crit *cr, const struct uri_list *l)
{
	for (size_t j = 0; j < l->n; j++)
		if (ud_test(c, cr, l->v[j]))
			return true;
	return false;
}

/* URIDetail's check_uri_detail: a URI of get_uri_detail_list for which every criterion
 * holds: raw its text as found, type any of its types (the HTML tags that carry it, parsed,
 * schemeless, ...), cleaned / host / domain any of its canonical variants, their host
 * names, their registered domains, text any of its anchor texts (a URI without any fails
 * that criterion, =~ or !~). */
EVAL_FN(eval_check_uri_detail)
{
	const struct uri_detail_rule *r = call->data;
	const struct uri_details *d = eval_uri_details(c);

	for (size_t i = 0; i < d->n; i++) {
		const struct uri_detail *u = &d->v[i];
		bool all = true;

		for (size_t k = 0; k < r->n && all; k++) {
			const struct uri_detail_crit *cr = &r->v[k];
			bool any = false;

			switch (cr->key) {
			case UD_RAW:
				any = ud_test(c, cr, u->raw);
				break;
			case UD_CLEANED:
				any = ud_any(c, cr, &u->cleaned);
				break;
			case UD_HOST:
				any = ud_any(c, cr, &u->hosts);
				break;
			case UD_TYPE:
				any = ud_any(c, cr, &u->types);
				break;
			case UD_TEXT:
				any = ud_any(c, cr, &u->anchor_text);
				break;
			default:                /* uri_to_domain: an IP address is its own */
				for (size_t j = 0; j < u->hosts.n && !any; j++) {
					const char *h = u->hosts.v[j];
					unsigned char ip[16];

					any = ud_test(c, cr, inet_pton(AF_INET, h, ip) == 1 ||
					    inet_pton(AF_INET6, h, ip) == 1 ? h :
					    eval_registered_domain(c, h));
				}
				break;
			}
			all = any;
		}
		if (all)
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- URIs in HTML */

EVAL_FN(eval_check_uri_truncated)
{
	const struct samsg *m = eval_samsg(c);

	(void)call;
	for (size_t i = 0; i < m->nparts; i++) {
		const struct html_result *h = eval_html_part(c, i);

		if (h && h->uri_truncated)
			return 1;
	}
	return eval_uri_details(c)->truncated;
}

/* HTTPSMismatch: an anchor whose text shows https://HOST while its href goes over http(s)
 * to another registered domain. */
EVAL_FN(eval_check_https_http_mismatch)
{
	const struct samsg *m = eval_samsg(c);
	double minanchors = call->nargs > 0 && call->num[0] > 0 ? call->num[0] : 1;

	for (size_t i = 0; i < m->nparts; i++) {
		const struct html_result *h = eval_html_part(c, i);
		size_t anchors = 0;
		bool hit = false;

		if (!h)
			continue;
		for (size_t a = 0; a < h->nanchor; a++) {
			const char *href = h->anchor_href[a], *host, *t;
			char hb[256];
			size_t hl;

			if (strncasecmp(href, "http://", 7) != 0 && strncasecmp(href, "https://", 8) != 0)
				continue;
			host = href + (href[4] == ':' ? 7 : 8);
			hl = strcspn(host, "/:?#");
			snprintf(hb, sizeof(hb), "%.*s", (int)hl, host);
			if (list_is_ipv4(hb) || !eval_domain_valid(c->conf, hb))
				continue;
			host = eval_registered_domain(c, hb);
			anchors++;
			t = strcasestr(h->anchor[a], "https://");
			if (t) {
				char tb[256];
				const char *th;

				t += 8;
				snprintf(tb, sizeof(tb), "%.*s", (int)strcspn(t, " \t\r\n/:?#"), t);
				th = tb;
				if (!list_is_ipv4(tb)) {
					th = eval_registered_domain(c, tb);
					if (!eval_domain_valid(c->conf, th))
						continue;
				}
				if (strcmp(host, th) != 0)
					hit = true;
			}
		}
		if (hit && anchors >= minanchors &&
		    (call->nargs < 2 || isnan(call->num[1]) || anchors < call->num[1]))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- DKIM without DNS */

/* SA's DKIM plugin verifies nothing when DNS is off (as here): every test is 0. mxgate's
 * own DKIM checks (dkim:) report through their own symbols. */
EVAL_FN(eval_dkim_offline)
{
	(void)c;
	(void)call;
	return 0;
}

/* ---------------------------------------------------------------- images */

struct list_images { bool done; double count[4], pc[4]; };   /* gif png jpeg all */

static int list_image_type(const char *t)
{
	if (strcmp(t, "gif") == 0) return 0;
	if (strcmp(t, "png") == 0) return 1;
	if (strcmp(t, "jpeg") == 0 || strcmp(t, "jpg") == 0) return 2;
	if (strcmp(t, "all") == 0) return 3;
	return -1;
}

static const struct list_images *list_images(struct eval_ctx *c)
{
	static struct list_images none;
	struct list_images *im = (struct list_images *)c->m->images;
	const struct samsg *m;

	if (im)
		return im;
	im = eval_alloc(c, sizeof(*im));
	memset(im, 0, sizeof(*im));
	c->m->images = im;
	m = eval_samsg(c);
	for (size_t i = 0; i < m->nparts; i++) {
		const struct samsg_part *p = &m->parts[i];
		int t;
		size_t dl;
		unsigned char *d;
		double w = 0, h = 0;

		if (p->nkids || strncmp(p->type, "image/", 6) != 0 ||
		    strcasecmp(samsg_header(p, "Content-Transfer-Encoding"), "base64") != 0)
			continue;
		t = list_image_type(p->type + 6);
		if (t < 0 || t == 3)
			continue;
		d = (unsigned char *)samsg_decode(p, &dl);
		if (t == 0 && dl >= 10 && memcmp(d, "GIF8", 4) == 0 && (d[4] == '7' || d[4] == '9') &&
		    d[5] == 'a') {
			w = d[6] | d[7] << 8;
			h = d[8] | d[9] << 8;
		} else if (t == 1 && dl >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
			for (size_t pos = 8; pos + 8 <= dl;) {
				unsigned long len = (unsigned long)d[pos] << 24 | d[pos + 1] << 16 |
				    d[pos + 2] << 8 | d[pos + 3];

				if (memcmp(d + pos + 4, "IEND", 4) == 0)
					break;
				pos += 8;
				if (memcmp(d + pos - 4, "IHDR", 4) == 0 && len == 13 && pos + 8 <= dl) {
					w = (double)((unsigned long)d[pos] << 24 | d[pos + 1] << 16 | d[pos + 2] << 8 | d[pos + 3]);
					h = (double)((unsigned long)d[pos + 4] << 24 | d[pos + 5] << 16 |
					    d[pos + 6] << 8 | d[pos + 7]);
					break;
				}
			}
		} else if (t == 2 && dl >= 2 && d[0] == 0xff && d[1] == 0xd8) {
			size_t pos = 2;

			while (pos + 4 <= dl) {
				unsigned mark = d[pos + 1], len = (unsigned)d[pos + 2] << 8 | d[pos + 3];

				if (d[pos] != 0xff || mark == 0xda || mark == 0xd9 || len < 2)
					break;
				pos += 4;
				if (((mark >= 0xc0 && mark <= 0xc3) || (mark >= 0xc5 && mark <= 0xc7) ||
				    (mark >= 0xc9 && mark <= 0xcb) || (mark >= 0xcd && mark <= 0xcf)) &&
				    pos + 5 <= dl) {
					h = d[pos + 1] << 8 | d[pos + 2];
					w = d[pos + 3] << 8 | d[pos + 4];
					break;
				}
				pos += len - 2;
			}
		}
		free(d);
		im->count[t]++;
		im->count[3]++;
		if (w > 0 && h > 0) {
			im->pc[t] += w * h;
			im->pc[3] += w * h;
		}
	}
	(void)none;
	return im;
}

/* SA's result_check: min <= value <= max (max optional; nomaxequal excludes max) */
static bool list_result_check(const struct eval_call *call, double v, bool nomaxequal)
{
	if (v < call->num[1])
		return false;
	if (call->nargs > 2 && !isnan(call->num[2]) && v > call->num[2])
		return false;
	if (nomaxequal && call->nargs > 2 && v == call->num[2])
		return false;
	return true;
}

EVAL_FN(eval_image_count)
{
	int t = list_image_type(call->arg[0]);

	return t >= 0 && list_result_check(call, list_images(c)->count[t], false);
}

EVAL_FN(eval_pixel_coverage)
{
	int t = list_image_type(call->arg[0]);

	return t >= 0 && list_result_check(call, list_images(c)->pc[t], false);
}

EVAL_FN(eval_image_to_text_ratio)
{
	int t = list_image_type(call->arg[0]);
	const struct rules_lines *text = c->rule_kind == RULE_RAWBODY ? &c->sc->rawbody :
	    &c->sc->body;
	double len = 0, pc;

	if (t < 0 || call->nargs < 3)
		return 0;
	for (size_t i = 0; i < text->nlines; i++) {
		const char *s;
		size_t n;

		rules_line_at(text, i, &s, &n);
		len += (double)n;
	}
	pc = list_images(c)->pc[t];
	if (len <= 0 || pc <= 0)
		return 0;
	return list_result_check(call, len / pc, true);
}
