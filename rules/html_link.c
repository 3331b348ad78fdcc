/* html_link.c — the links of an HTML part, as Mail::SpamAssassin::HTML 4.0.1 collects
 * them (html_uri, push_uri): the attributes that carry them, <base href>, meta refresh,
 * each made absolute against the base (uri.h's target_uri). Part of html.c's analysis. */
#include "html_int.h"

#include "uri.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_wordc(unsigned char c)
{
	return isalnum(c) || c == '_';
}

static void html_push_uri(struct html_state *h, const char *v)
{
	char *t;

	if (v == NULL || h->uri_cb == NULL)
		return;
	t = uri_html_target(h->base_href, v, &h->r->uri_truncated);
	if (t) {
		h->uri_cb(t, strlen(t), h->uri_arg);
		if (h->cur_tag && h->r->nlink < HTML_MAX_LIST) {
			size_t n = h->r->nlink;

			h->r->link_uri = realloc(h->r->link_uri, (n + 1) * sizeof(char *));
			h->r->link_type = realloc(h->r->link_type, (n + 1) * sizeof(char *));
			if (h->r->link_uri == NULL || h->r->link_type == NULL)
				abort();
			h->r->link_uri[n] = t;
			h->r->link_type[n] = strdup(h->cur_tag);
			if (h->r->link_type[n] == NULL)
				abort();
			h->r->nlink++;
			return;
		}
	}
	free(t);
}

/* The value of attribute NAME as SA's html_uri leaves it: an attribute named WORD/NAME
 * (bad HTML) takes its place. */
static const char *html_attr_slashed(const struct html_attr *a, size_t na, const char *name)
{
	const char *v = NULL;
	size_t nl = strlen(name);

	for (size_t i = 0; i < na && !v; i++) {
		const char *k = a[i].name;

		for (const char *sl = strchr(k, '/'); sl && !v; sl = strchr(sl + 1, '/'))
			if (sl > k && is_wordc((unsigned char)sl[-1]) && strncmp(sl + 1, name, nl) == 0)
				v = a[i].value;
	}
	return v ? v : html_attr(a, na, name);
}

char *html_href(const struct html_attr *a, size_t na)
{
	const char *href = html_attr_slashed(a, na, "href");
	char *d, *w;

	if (href == NULL)
		return NULL;
	d = strdup(href);
	if (d == NULL)
		abort();
	/* the byte order mark out of the link */
	w = d;
	for (const char *p = href; *p;)
		if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		else
			*w++ = *p++;
	*w = '\0';
	return d;
}

/* <base href>: pushed like any link, then (an absolute http/ftp URL) the base of the
 * relative ones, its file name cut off and a '/' at the end. */
static void html_base(struct html_state *h, const char *href)
{
	const unsigned char *s = (const unsigned char *)href;
	size_t n, sch = 0;
	char *u;

	if (href == NULL || href[0] == '\0')
		return;
	while (*s && (isspace(*s) || *s == 0xa0))
		s++;
	n = strlen((const char *)s);
	while (n && (isspace(s[n - 1]) || s[n - 1] == 0xa0))
		n--;
	if (n > 8192)
		n = 8192;
	u = malloc(n + 2);
	if (u == NULL)
		abort();
	memcpy(u, s, n);
	u[n] = '\0';
	html_push_uri(h, u);
	if (strncasecmp(u, "http:", 5) == 0)
		sch = 5;
	else if (strncasecmp(u, "https:", 6) == 0)
		sch = 6;
	else if (strncasecmp(u, "ftp:", 4) == 0)
		sch = 4;
	if (sch) {
		/* s@^([a-z]+:/{0,2}[^/]+/.*?)[^/\.]+\.[^/\.]{2,4}$@$1@i */
		size_t k = sch, host, last;

		for (int i = 0; i < 2 && u[k] == '/'; i++)
			k++;
		host = k + strcspn(u + k, "/");
		if (host > k && u[host] == '/') {
			const char *sl = strrchr(u, '/');
			const char *fn = sl + 1, *dot = strrchr(fn, '.');

			last = strlen(fn);
			if (last && dot && dot > fn && strlen(dot + 1) >= 2 && strlen(dot + 1) <= 4 &&
			    strchr(fn, '.') == dot)
				*(char *)fn = '\0';
		}
		n = strlen(u);
		if (n == 0 || u[n - 1] != '/') {
			u[n] = '/';
			u[n + 1] = '\0';
		}
		free(h->base_href);
		h->base_href = u;
		return;
	}
	free(u);
}

/* <meta http-equiv=refresh content="N; url=...">: the link after the last "url=", up to a ";" */
static void html_meta_refresh(struct html_state *h, const char *c)
{
	const char *u = NULL;
	char *v;
	size_t l;

	for (const char *p = strcasestr(c, "url"); p; p = strcasestr(p + 1, "url")) {
		const char *q = p + 3;

		if (p > c && is_wordc((unsigned char)p[-1]))
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '=')
			u = q + 1;
	}
	if (u == NULL)
		return;
	while (isspace((unsigned char)*u))
		u++;
	l = strcspn(u, ";");
	if (u[l] == ';')
		while (l && isspace((unsigned char)u[l - 1]))
			l--;
	v = strndup(u, l);
	if (v == NULL)
		abort();
	html_push_uri(h, v);
	free(v);
}

/* SA's html_uri: the attributes of the tags that carry links. */
void html_uri(struct html_state *h, const char *tag, struct html_attr *a, size_t na)
{
	h->cur_tag = tag;      /* valid for this call: push_uri's type */
	if (!strcmp(tag, "body") || !strcmp(tag, "table") || !strcmp(tag, "tr") || !strcmp(tag, "td")) {
		html_push_uri(h, html_attr(a, na, "background"));
	} else if (!strcmp(tag, "a") || !strcmp(tag, "area") || !strcmp(tag, "link")) {
		char *href = html_href(a, na);

		html_push_uri(h, href);
		free(href);
		html_push_uri(h, html_attr(a, na, "data-saferedirecturl"));
	} else if (!strcmp(tag, "img") || !strcmp(tag, "frame") || !strcmp(tag, "iframe") ||
	    !strcmp(tag, "embed") || !strcmp(tag, "script") || !strcmp(tag, "bgsound")) {
		html_push_uri(h, html_attr_slashed(a, na, "src"));
	} else if (!strcmp(tag, "form")) {
		html_push_uri(h, html_attr(a, na, "action"));
	} else if (!strcmp(tag, "base")) {
		html_base(h, html_attr(a, na, "href"));
	} else if (!strcmp(tag, "meta")) {
		const char *he = html_attr(a, na, "http-equiv"), *c = html_attr(a, na, "content");

		if (he && c && strcasestr(he, "refresh"))
			html_meta_refresh(h, c);
	}
}
