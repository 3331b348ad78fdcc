/* uri_find.c — a message's URI list as SpamAssassin 4.0.1 keeps it: the text URI finder
 * of PerMsgStatus (_process_text_uri_list over _tbirdurire), add_uri_detail_list, and the
 * link targets of HTML (HTML.pm's canon_uri, push_uri and target_uri); see uri.h. */
#include "uri_int.h"

#include "charset.h"
#include "match.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- the detail list */

static struct uri_detail *uri_detail_slot(struct uri_details *d, const char *raw)
{
	struct uri_detail *u;

	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->v[i].raw, raw) == 0)
			return &d->v[i];
	if (d->n >= URI_MAX_DETAILS)
		return NULL;
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 16;

		d->v = realloc(d->v, nc * sizeof(*d->v));
		if (d->v == NULL)
			abort();
		d->cap = nc;
	}
	u = &d->v[d->n++];
	memset(u, 0, sizeof(*u));
	u->raw = uri_strndup(raw, strlen(raw));
	u->cleaned.max = u->hosts.max = u->types.max = u->anchor_text.max = 256;
	return u;
}

struct uri_detail *uri_details_find(struct uri_details *d, const char *raw)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->v[i].raw, raw) == 0)
			return &d->v[i];
	return NULL;
}

/* add_uri_detail_list; types: the types to merge in (NULL-terminated, may be NULL) */
static void uri_detail_add(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, const char *uri, bool html, bool valid_domain,
    const char *const *types)
{
	struct uri_list cleaned = { .max = 256 }, hosts = { .max = 256 };
	struct uri_detail *u;
	char host[256];

	uri_canonicalize(uc, ms, uri, &cleaned);
	for (size_t i = 0; i < cleaned.n; i++) {
		if (strlen(cleaned.v[i]) > URI_MAX_LENGTH) {
			d->truncated = true;
			cleaned.v[i][URI_MAX_LENGTH] = '\0';
		}
		if (uri_to_host(uc, cleaned.v[i], host, sizeof(host)))
			uri_list_add(&hosts, host);
	}
	if (cleaned.n && !(valid_domain && hosts.n == 0) && (u = uri_detail_slot(d, uri)) != NULL) {
		for (size_t i = 0; i < cleaned.n; i++) {
			uri_list_add(&u->cleaned, cleaned.v[i]);
			uri_list_add(&d->all, cleaned.v[i]);
		}
		for (size_t i = 0; i < hosts.n; i++)
			uri_list_add(&u->hosts, hosts.v[i]);
		if (html)
			u->html = true;
		else
			u->parsed = true;
		for (size_t i = 0; types && types[i]; i++)
			uri_list_add(&u->types, types[i]);
	}
	uri_list_free(&cleaned);
	uri_list_free(&hosts);
}

void uri_details_html(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, const char *uri)
{
	uri_detail_add(uc, ms, d, uri, true, false, NULL);
}

void uri_details_dkim(const struct uri_conf *uc, struct uri_details *d, const char *uri)
{
	char host[256], *cut = NULL;
	struct uri_detail *u;

	if (strlen(uri) > URI_MAX_LENGTH) {        /* MAX_URI_LENGTH, for the host only */
		d->truncated = true;
		cut = uri_strndup(uri, URI_MAX_LENGTH);
	}
	if (uri_to_host(uc, cut ? cut : uri, host, sizeof(host)) &&
	    (u = uri_detail_slot(d, uri)) != NULL) {
		uri_list_add(&u->hosts, host);
		uri_list_add(&u->types, "domainkeys");
		uri_list_add(&u->types, "nocanon");
		uri_list_add(&u->types, "noclean");
	}
	free(cut);
}

/* s/^(?:skype|e?-?mail)?:+//i */
static const char *uri_strip_mail_prefix(const char *s)
{
	static const char *const pre[] = { "skype", "e-mail", "email", "-mail", "mail", "", NULL };

	for (int i = 0; pre[i]; i++) {
		size_t l = strlen(pre[i]);

		if (strncasecmp(s, pre[i], l) == 0 && s[l] == ':') {
			s += l;
			while (*s == ':')
				s++;
			return s;
		}
	}
	return s;
}

/* One raw URI the text finder matched: SA's checks, then add_uri_detail_list. */
static void uri_text_one(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, char *raw, int type, const char *schost)
{
	size_t n = strlen(raw), open = strcspn(raw, "(");
	char *uri;
	/* SA's types: parsed; schemeless without a scheme; unlinked when only the dot made
	 * it a URI (no MUA links it) */
	const char *types[4] = { "parsed", NULL, NULL, NULL };

	/* s/(^[^(]*)\).*$/$1/: cut at the last ')' before any '(' */
	for (size_t k = open; k-- > 0;)
		if (raw[k] == ')') {
			raw[k] = '\0';
			n = k;
			break;
		}
	while (n && strchr("-~!@#^&*()_+=:;'?,.", raw[n - 1]))
		raw[--n] = '\0';
	if (uri_list_has(&d->seen, raw, n))
		return;
	uri_list_push(&d->seen, raw, n);
	if (type == 2 && !strchr(raw, '@'))
		return;
	if (schost && !uri_fqdn_valid(schost))
		return;
	if ((raw[0] == 'c' || raw[0] == 'C' || raw[0] == 'm' || raw[0] == 'M') &&
	    (raw[1] == 'i' || raw[1] == 'I') && (raw[2] == 'd' || raw[2] == 'D') && raw[3] == ':')
		return;
	{
		/* ^\w+:/{0,2}$ */
		size_t k = 0;

		while (uri_is_word((unsigned char)raw[k]))
			k++;
		if (k && raw[k] == ':') {
			size_t s = k + 1;

			while (raw[s] == '/' && s < k + 3)
				s++;
			if (raw[s] == '\0')
				return;
		}
	}
	if (!(strncasecmp(raw, "http:", 5) == 0 || strncasecmp(raw, "https:", 6) == 0 ||
	    strncasecmp(raw, "ftp:", 4) == 0 || strncasecmp(raw, "mailto:", 7) == 0)) {
		const char *at = strchr(raw, '@'), *sl = strchr(raw, '/');
		bool www = strncasecmp(raw, "www", 3) == 0;

		if (www) {
			size_t k = 3;

			while (k < 5 && isdigit((unsigned char)raw[k]))
				k++;
			www = raw[k] == '.';
		}
		if (strncasecmp(raw, "ftp.", 4) == 0) {
			uri = uri_strcat3("ftp://", raw, "");
		} else if (www) {
			uri = uri_strcat3("http://", raw, "");
		} else if (sl && at && sl[1] && strchr(sl + 2, '@')) {
			uri = uri_strcat3("http://", raw, "");
		} else if (at) {
			const char *dot = at[1] ? strchr(at + 2, '.') : NULL;

			if (dot == NULL || strstr(raw, "&nbsp;"))
				return;
			uri = uri_strcat3("mailto:", uri_strip_mail_prefix(raw), "");
		} else {
			if (!strchr(raw, '.'))
				return;
			uri = uri_strcat3("http://", raw, "");
			types[2] = "unlinked";
		}
		types[1] = "schemeless";
	} else {
		uri = uri_strndup(raw, n);
	}
	if (strncasecmp(uri, "mailto:", 7) == 0) {
		char *at, host[512];
		size_t hl;

		if (uri_has_pct(uri)) {
			char *e = uri_url_encode(uri);

			free(uri);
			uri = e;
		}
		at = strchr(uri, '@');
		if (at == NULL) {
			free(uri);
			return;
		}
		hl = strcspn(at + 1, "?&>");
		snprintf(host, sizeof(host), "%.*s", (int)(hl < sizeof(host) ? hl : sizeof(host) - 1),
		    at + 1);
		hl = strlen(host);
		while (hl >= 3 && strcmp(host + hl - 3, "%20") == 0)
			host[hl -= 3] = '\0';
		if (!uri_domain_valid(uc, host)) {
			free(uri);
			return;
		}
	}
	uri_detail_add(uc, ms, d, uri, false, true, types);
	free(uri);
}

void uri_details_text(const struct uri_conf *uc, struct match_scratch *ms,
    struct uri_details *d, const char *text, size_t len)
{
	size_t pos = 0, ov[10];

	if (uc == NULL || uc->tbird == NULL)
		return;
	d->seen.max = URI_MAX_DETAILS;
	while (pos < len && match_re_groups(uc->tbird, text, len, pos, ms, ov, 5) == 1) {
		int type = ov[2] != SIZE_MAX ? 1 : ov[4] != SIZE_MAX ? 2 : 3;
		size_t gs = ov[2 * type], ge = ov[2 * type + 1];
		char *raw, *schost = NULL;

		pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
		if (gs == SIZE_MAX)
			continue;
		raw = uri_strndup(text + gs, ge - gs);
		if (type == 3 && ov[8] != SIZE_MAX)
			schost = uri_strndup(text + ov[8], ov[9] - ov[8]);
		uri_text_one(uc, ms, d, raw, type, schost);
		free(raw);
		free(schost);
	}
}

void uri_details_free(struct uri_details *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].raw);
		uri_list_free(&d->v[i].cleaned);
		uri_list_free(&d->v[i].hosts);
		uri_list_free(&d->v[i].types);
		uri_list_free(&d->v[i].anchor_text);
	}
	free(d->v);
	uri_list_free(&d->all);
	uri_list_free(&d->seen);
	memset(d, 0, sizeof(*d));
}

/* ---------------------------------------------------------------- HTML link targets */

struct uri_parts {
	char *scheme, *authority, *path, *query, *fragment;   /* NULL: undefined */
};

/* ^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))? */
static void uri_parse(const char *u, struct uri_parts *p)
{
	size_t k = strcspn(u, ":/?#");

	memset(p, 0, sizeof(*p));
	if (k > 0 && u[k] == ':') {
		p->scheme = uri_strndup(u, k);
		u += k + 1;
	}
	if (u[0] == '/' && u[1] == '/') {
		k = strcspn(u + 2, "/?#");
		p->authority = uri_strndup(u + 2, k);
		u += 2 + k;
	}
	k = strcspn(u, "?#");
	p->path = uri_strndup(u, k);
	u += k;
	if (*u == '?') {
		k = strcspn(u + 1, "#");
		p->query = uri_strndup(u + 1, k);
		u += 1 + k;
	}
	if (*u == '#')
		p->fragment = uri_strndup(u + 1, strcspn(u + 1, "\n"));
}

static void uri_parts_free(struct uri_parts *p)
{
	free(p->scheme);
	free(p->authority);
	free(p->path);
	free(p->query);
	free(p->fragment);
}

/* _remove_dot_segments (while ($input) stops at "0" too, as Perl's truth does) */
static char *uri_dot_segments(const char *in0)
{
	struct uri_buf out = { 0 };
	char *in = uri_strndup(in0, strlen(in0));
	size_t n = strlen(in);

	uri_buf_put(&out, "", 0);
	if (strncmp(in, "../", 3) == 0) {
		memmove(in, in + 2, n - 1);
		n -= 2;
	} else if (strncmp(in, "./", 2) == 0) {
		memmove(in, in + 1, n);
		n -= 1;
	}
	while (n && !(n == 1 && in[0] == '0')) {
		if (in[0] == '/' && in[1] == '.' && (in[2] == '\0' || in[2] == '/')) {
			size_t drop = in[2] == '/' ? 2 : 1;

			memmove(in + 1, in + 1 + drop, n - drop);
			n -= drop;
		} else if (in[0] == '/' && in[1] == '.' && in[2] == '.' && (in[3] == '\0' || in[3] == '/')) {
			size_t drop = in[3] == '/' ? 3 : 2;
			char *sl;

			memmove(in + 1, in + 1 + drop, n - drop);
			n -= drop;
			/* s@/?[^/]*$@@ */
			sl = strrchr(out.p, '/');
			out.n = sl ? (size_t)(sl - out.p) : 0;
			out.p[out.n] = '\0';
		} else {
			size_t l = (in[0] == '/') + strcspn(in + (in[0] == '/'), "/");

			uri_buf_put(&out, in, l);
			memmove(in, in + l, n - l + 1);
			n -= l;
		}
	}
	free(in);
	return out.p;
}

/* _merge_uri */
static char *uri_merge(const char *base_auth, const char *base_path, const char *rpath)
{
	if (base_auth && (base_path == NULL || base_path[0] == '\0'))
		return uri_strcat3("/", rpath, "");
	if (base_path && strchr(base_path, '/')) {
		size_t l = (size_t)(strrchr(base_path, '/') - base_path) + 1;
		char *b = uri_strndup(base_path, l), *r = uri_strcat3(b, rpath, "");

		free(b);
		return r;
	}
	return uri_strcat3("", rpath, "");
}

char *uri_target(const char *base, const char *r0)
{
	struct uri_parts r, b;
	struct uri_buf out = { 0 };
	char *scheme = NULL, *auth = NULL, *path = NULL, *query = NULL;
	bool has_scheme, has_auth, has_query;

	uri_parse(r0, &r);
	uri_parse(base ? base : "", &b);
	if (r.scheme && b.scheme && strcmp(r.scheme, b.scheme) == 0) {
		free(r.scheme);
		r.scheme = NULL;
	}
	if (r.scheme) {
		scheme = r.scheme;
		auth = r.authority;
		path = uri_dot_segments(r.path);
		query = r.query;
	} else {
		if (r.authority) {
			auth = r.authority;
			path = uri_dot_segments(r.path);
			query = r.query;
		} else {
			if (r.path[0] == '\0') {
				path = uri_strndup(b.path, strlen(b.path));
				query = r.query ? r.query : b.query;
			} else {
				if (r.path[0] == '/') {
					path = uri_dot_segments(r.path);
				} else {
					char *m = uri_merge(b.authority, b.path, r.path);

					path = uri_dot_segments(m);
					free(m);
				}
				query = r.query;
			}
			auth = b.authority;
		}
		scheme = b.scheme;
	}
	has_scheme = scheme && scheme[0];
	has_auth = auth != NULL;
	has_query = query != NULL;
	uri_buf_put(&out, "", 0);
	if (has_scheme) {
		uri_buf_str(&out, scheme);
		uri_buf_put(&out, ":", 1);
	} else if (has_auth) {
		if (strncasecmp(auth, "www", 3) == 0 && auth[3 + strspn(auth + 3, "0123456789")] == '.')
			uri_buf_str(&out, "http:");
		else if (strncasecmp(auth, "ftp", 3) == 0 &&
		    auth[3 + strspn(auth + 3, "0123456789")] == '.')
			uri_buf_str(&out, "ftp:");
	}
	if (has_auth) {
		uri_buf_str(&out, "//");
		uri_buf_str(&out, auth);
	}
	uri_buf_str(&out, path);
	if (has_query) {
		uri_buf_put(&out, "?", 1);
		uri_buf_str(&out, query);
	}
	if (r.fragment) {
		uri_buf_put(&out, "#", 1);
		uri_buf_str(&out, r.fragment);
	}
	free(path);
	uri_parts_free(&r);
	uri_parts_free(&b);
	return out.p;
}

/* Perl's [\s\xA0] at the start (end) of a UTF-8 text: its length there. */
static size_t uri_space_at(const char *s, size_t n)
{
	size_t l = charset_space_len(s, n);

	if (l == 0 && n && (unsigned char)s[0] == 0xa0)
		l = 1;
	return l;
}

static size_t uri_space_before(const char *s, size_t n)
{
	for (size_t l = 1; l <= 3 && l <= n; l++)
		if (uri_space_at(s + n - l, l) == l)
			return l;
	return 0;
}

char *uri_html_canon(const char *attr, bool *truncated)
{
	size_t n, l;

	if (attr == NULL)
		return NULL;
	n = strlen(attr);
	while (n && (l = uri_space_at(attr, n)) != 0) {
		attr += l;
		n -= l;
	}
	while (n && (l = uri_space_before(attr, n)) != 0)
		n -= l;
	if (charset_utf8_chars(attr, n) > URI_MAX_LENGTH) {
		*truncated = true;
		n = charset_utf8_offset(attr, n, URI_MAX_LENGTH);
	}
	return uri_strndup(attr, n);
}

char *uri_html_target(const char *base, const char *attr, bool *truncated)
{
	char *u = uri_html_canon(attr, truncated), *t;

	if (u == NULL || u[0] == '\0') {
		free(u);
		return NULL;
	}
	{
		static const char *const keep[] = { "data:", "mailto:", "file:", "cid:", "tel:", NULL };

		for (int i = 0; keep[i]; i++)
			if (strncasecmp(u, keep[i], strlen(keep[i])) == 0)
				return u;
	}
	t = uri_target(base ? base : "", u);
	free(u);
	if (t[0] == '\0') {
		free(t);
		return NULL;
	}
	return t;
}
