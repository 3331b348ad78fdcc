/* html.c — SpamAssassin's HTML analysis; see html.h.
 *
 * The tokenizer follows HTML::Parser 3 as SpamAssassin drives it (start/end tags with
 * lower-cased names and entity-decoded attribute values, comments and declarations passed
 * whole, script/style/xmp/iframe/textarea/title bodies as literal text, the rest after
 * <plaintext> too); the handlers
 * follow Mail::SpamAssassin::HTML: tag counting, the text-style stack, display text with
 * its whitespace rules, and the results the HTMLEval tests read. */
#include "html_int.h"

#include "charset.h"
#include "uri.h"
#include "textbuf.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTML_MAX_STYLE   512        /* text style stack depth */

static const char *const html_elements[] = {
	"a", "abbr", "acronym", "address", "applet", "area", "b", "base", "basefont", "bdo",
	"big", "blockquote", "body", "br", "button", "caption", "center", "cite", "code",
	"col", "colgroup", "dd", "del", "dfn", "dir", "div", "dl", "dt", "em", "fieldset",
	"font", "form", "frame", "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr",
	"html", "i", "iframe", "img", "input", "ins", "isindex", "kbd", "label", "legend",
	"li", "link", "map", "menu", "meta", "nobr", "noframes", "noscript", "object", "ol",
	"optgroup", "option", "p", "param", "pre", "q", "s", "samp", "script", "select",
	"small", "span", "strike", "strong", "style", "sub", "sup", "table", "tbody", "td",
	"textarea", "tfoot", "th", "thead", "title", "tr", "tt", "u", "ul", "var", "x-sigsep",
	"x-tab", NULL
};
static const char *const html_tricks[] = { "bgsound", "embed", "listing", "plaintext", "xmp",
	NULL };
static const char *const html_text_style_tags[] = { "body", "font", "table", "tr", "th",
	"td", "big", "small", "basefont", "marquee", "span", "p", "div", "a", NULL };
static const char *const html_ws_tags[] = { "br", "div", "li", "th", "td", "dt", "dd", "p",
	"hr", "blockquote", "pre", "embed", "listing", "plaintext", "xmp", "title", "h1", "h2",
	"h3", "h4", "h5", "h6", NULL };


static bool html_in_list(const char *const *l, const char *tag)
{
	for (int i = 0; l[i]; i++)
		if (strcmp(l[i], tag) == 0)
			return true;
	return false;
}


/* ---------------------------------------------------------------- the parser state */

static int *html_inside_slot(struct html_state *h, const char *tag, bool *isnew)
{
	struct html_result *r = h->r;

	for (size_t i = 0; i < r->ninside; i++)
		if (strcmp(r->inside[i].tag, tag) == 0) {
			*isnew = false;
			return &r->inside[i].n;
		}
	*isnew = true;
	if (r->ninside >= 4096)
		return NULL;
	r->inside = realloc(r->inside, (r->ninside + 1) * sizeof(*r->inside));
	if (r->inside == NULL)
		abort();
	r->inside[r->ninside].tag = strdup(tag);
	if (r->inside[r->ninside].tag == NULL)
		abort();
	r->inside[r->ninside].n = 0;
	return &r->inside[r->ninside++].n;
}

const struct html_count *html_inside(const struct html_result *r, const char *tag)
{
	for (size_t i = 0; i < r->ninside; i++)
		if (strcmp(r->inside[i].tag, tag) == 0)
			return &r->inside[i];
	return NULL;
}

static int html_inside_n(struct html_state *h, const char *tag)
{
	const struct html_count *c = html_inside(h->r, tag);

	return c ? c->n : 0;
}

static void html_list_add(char ***v, size_t *n, const char *s, size_t len)
{
	if (*n >= HTML_MAX_LIST)
		return;
	*v = realloc(*v, (*n + 1) * sizeof(char *));
	if (*v == NULL)
		abort();
	(*v)[*n] = malloc(len + 1);
	if ((*v)[*n] == NULL)
		abort();
	memcpy((*v)[*n], s, len);
	(*v)[*n][len] = '\0';
	(*n)++;
}

static void html_list_append(char **v, size_t n, const char *s, size_t len)
{
	size_t l;

	if (n == 0)
		return;
	l = strlen(v[n - 1]);
	v[n - 1] = realloc(v[n - 1], l + len + 1);
	if (v[n - 1] == NULL)
		abort();
	memcpy(v[n - 1] + l, s, len);
	v[n - 1][l + len] = '\0';
}

static struct html_style *html_top(struct html_state *h)
{
	return &h->st[h->nst - 1];
}

static void html_push_style(struct html_state *h, const struct html_style *s)
{
	if (h->nst >= HTML_MAX_STYLE)
		return;
	if (h->nst == h->capst) {
		h->capst = h->capst ? h->capst * 2 : 16;
		h->st = realloc(h->st, h->capst * sizeof(*h->st));
		if (h->st == NULL)
			abort();
	}
	h->st[h->nst++] = *s;
}

/* ---------------------------------------------------------------- display text */

static bool html_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == 0x0b;
}

/* Perl's "\xc2\xa0" on a character string: U+00C2 U+00A0, in UTF-8 c3 82 c2 a0 */
static bool html_is_nbsp2(const char *s, size_t n)
{
	return n >= 4 && (unsigned char)s[0] == 0xc3 && (unsigned char)s[1] == 0x82 &&
	    (unsigned char)s[2] == 0xc2 && (unsigned char)s[3] == 0xa0;
}

/* Appends s[0..n) to the rendering, NUL-terminated. Its buffer grows by doubling, but to
 * no more than the rendering can reach: the input left to render (from html_run's
 * text_start) never renders longer than it is (an entity to at most its own length in
 * UTF-8, a tag to at most two line breaks, a run of white space to one space), so the
 * rendering ends within what is rendered now plus that. A rendering that grew by
 * doubling held up to twice its text at the one-HTML-part peak. Should that bound not
 * hold, the buffer grows by doubling past it, as before. */
static void html_render_put(struct html_state *h, const char *s, size_t n)
{
	struct html_buf *b = &h->text;
	size_t need = b->n + n + 1;

	if (need > b->cap)
		textbuf_grow_within(&b->p, &b->cap, 256, need, h->run_at && *h->run_at <= h->run_len ?
		    b->n + (h->run_len - *h->run_at) + 1 : 0);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void html_display(struct html_state *h, const char *s, size_t n, bool ws, bool invis)
{
	struct html_buf t = { 0 };

	if (ws) {
		/* a whitespace piece trims one trailing space of a visible text piece */
		if (h->have_last && !h->last_ws && !h->last_invis && h->text.n > h->last_start &&
		    h->text.p[h->text.n - 1] == ' ')
			h->text.p[--h->text.n] = '\0';
		html_put(&t, s, n);
	} else {
		/* s/[ \t\n\r\f\x0b]+|\xc2\xa0/ /gs: a run of blanks is one space, and so is each
		 * U+00C2 U+00A0 pair, the two not merged */
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (html_is_ws(c)) {
				while (i + 1 < n && html_is_ws((unsigned char)s[i + 1]))
					i++;
				html_put(&t, " ", 1);
				continue;
			}
			if (html_is_nbsp2(s + i, n - i)) {
				i += 3;
				html_put(&t, " ", 1);
				continue;
			}
			html_put(&t, (const char *)&s[i], 1);
		}
		if (t.n && t.p[0] == ' ' && h->have_last && !invis && h->last_ws) {
			memmove(t.p, t.p + 1, t.n);
			t.n--;
		}
	}
	h->last_start = h->text.n;
	html_render_put(h, t.p ? t.p : "", t.n);
	h->have_last = true;
	h->last_ws = ws;
	h->last_invis = invis;
	free(t.p);
}

/* SA's html_font_invisible: low contrast, invalid colours, tiny or hidden text. */
static bool html_invisible(struct html_state *h)
{
	const struct html_style *s = html_top(h);
	size_t lf = strlen(s->fg), lb = strlen(s->bg);
	unsigned r1, g1, b1, r2, g2, b2;

	if (strcmp(s->fg + (lf > 6 ? lf - 6 : 0), s->bg + (lb > 6 ? lb - 6 : 0)) == 0) {
		h->r->font_low_contrast = true;
		return true;
	}
	if (sscanf(s->fg[0] == '#' ? s->fg + 1 : s->fg, "%2x%2x%2x", &r1, &g1, &b1) == 3 &&
	    strlen(s->fg[0] == '#' ? s->fg + 1 : s->fg) == 6 &&
	    sscanf(s->bg[0] == '#' ? s->bg + 1 : s->bg, "%2x%2x%2x", &r2, &g2, &b2) == 3 &&
	    strlen(s->bg[0] == '#' ? s->bg + 1 : s->bg) == 6) {
		double r = (double)r1 - r2, g = (double)g1 - g2, b = (double)b1 - b2;
		double d = sqrt(pow(0.2126 * r, 2) + pow(0.7152 * g, 2) + pow(0.0722 * b, 2));

		if (d < 12) {
			h->r->font_low_contrast = true;
			return true;
		}
	}
	if (strcmp(s->fg, "invalid") == 0 || strcmp(s->bg, "invalid") == 0) {
		h->r->font_invalid_color = true;
		return true;
	}
	if (s->size <= 1)
		return true;
	if (strcasecmp(s->display, "none") == 0 || strcasecmp(s->visibility, "hidden") == 0)
		return true;
	return false;
}

static bool html_wordish(unsigned char c)
{
	/* [^\s\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e] */
	return !(isspace(c) || (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
	    (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e));
}

static void html_text(struct html_state *h, const char *s, size_t n)
{
	bool nonws = false, invis = false;

	if (html_inside_n(h, "script") > 0)
		return;
	if (html_inside_n(h, "style") > 0)
		return;
	if (html_inside_n(h, "a") > 0)
		html_list_append(h->r->anchor, h->r->nanchor, s, n);
	if (html_inside_n(h, "title") > 0 && h->title_index >= 0)
		html_list_append(h->r->title, h->r->ntitle, s, n);
	/* anything left once (?:[ \t\n\r\f\x0b]|\xc2\xa0) is gone: Perl's "\xc2\xa0" is the
	 * two characters U+00C2 U+00A0, UTF-8 c3 82 c2 a0 here */
	for (size_t i = 0; i < n && !nonws; i++)
		if (html_is_ws((unsigned char)s[i]))
			continue;
		else if (html_is_nbsp2(s + i, n - i))
			i += 3;
		else
			nonws = true;
	if (nonws)
		invis = html_invisible(h);
	if (h->have_last && n) {
		const char *lp = h->text.p + h->last_start;
		size_t ll = h->text.n - h->last_start;

		if (ll && html_wordish((unsigned char)s[0]) && html_wordish((unsigned char)lp[ll - 1])) {
			h->obfuscation++;
			h->seen_obf = true;
		}
		/* "back hair": a short word cut by a tag: \b(\w{1,7})\z then ^(\w{1,7})\b */
		{
			size_t a = 0, b = 0;

			while (a < ll && a < 8 && html_wordish((unsigned char)lp[ll - 1 - a]))
				a++;
			while (b < n && b < 8 && html_wordish((unsigned char)s[b]))
				b++;
			if (a >= 1 && a <= 7 && b >= 1 && b <= 7) {
				char key[16];
				bool dup = false;

				snprintf(key, sizeof(key), "%zu_%zu", a, b);
				for (size_t k = 0; k < h->nbackhair && !dup; k++)
					dup = strcmp(h->backhair[k], key) == 0;
				if (!dup)
					html_list_add(&h->backhair, &h->nbackhair, key, strlen(key));
				h->r->has_backhair = true;
			}
		}
	}
	html_display(h, s, n, false, invis);
}

/* ---------------------------------------------------------------- tags */

const char *html_attr(const struct html_attr *a, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i].name, name) == 0)
			return a[i].value;
	return NULL;
}

static bool html_stack_has(const struct html_state *h, const char *tag)
{
	for (size_t i = 0; i < h->nst; i++)
		if (strcmp(h->st[i].tag, tag) == 0)
			return true;
	return false;
}

static void html_close_tag(struct html_state *h, const char *tag)
{
	if (!html_stack_has(h, tag))
		return;
	while (h->nst > 0) {
		bool last = strcmp(h->st[h->nst - 1].tag, tag) == 0;

		h->nst--;
		if (last)
			break;
	}
}

static void html_close_table_tag(struct html_state *h, const char *tag)
{
	if (!html_stack_has(h, tag))
		return;
	while (h->nst > 0) {
		const char *top = h->st[h->nst - 1].tag;

		if ((strcmp(tag, "td") == 0 && (strcmp(top, "font") == 0 || strcmp(top, "td") == 0)) ||
		    (strcmp(tag, "tr") == 0 && (strcmp(top, "font") == 0 || strcmp(top, "td") == 0 ||
		    strcmp(top, "tr") == 0)))
			h->nst--;
		else
			break;
	}
}

static bool html_ok_attr(const char *tag, const char *name)
{
	static const struct { const char *tag; const char *names; } ok[] = {
		{ "basefont", " color face size " }, { "body", " text bgcolor link alink vlink background " },
		{ "font", " color face size " }, { "marquee", " bgcolor background " },
		{ "table", " bgcolor style " }, { "td", " bgcolor style " }, { "th", " bgcolor style " },
		{ "tr", " bgcolor style " }, { "span", " style " }, { "p", " style " },
		{ "div", " style " }, { "a", " style " }, { NULL, NULL }
	};
	char w[40];

	snprintf(w, sizeof(w), " %s ", name);
	for (int i = 0; ok[i].tag; i++)
		if (strcmp(ok[i].tag, tag) == 0)
			return strstr(ok[i].names, w) != NULL;
	return false;
}


static void html_text_style(struct html_state *h, const char *tag0, struct html_attr *a,
    size_t na, int num)
{
	const char *tag = strcmp(tag0, "th") == 0 ? "td" : tag0;
	struct html_style nw;

	if (num != 1) {
		if (strcmp(tag, "body") != 0)
			html_close_tag(h, tag);
		return;
	}
	if (strcmp(tag, "basefont") == 0) {
		const char *sz = html_attr(a, na, "size");

		if (sz) {
			while (isspace((unsigned char)*sz))
				sz++;
			if (isdigit((unsigned char)*sz)) {
				h->basefont = (double)strtol(sz, NULL, 10);   /* \d+: "1.5" is 1 */
				return;
			}
		}
	}
	if (strcmp(tag, "td") == 0 || strcmp(tag, "tr") == 0)
		html_close_table_tag(h, tag);
	nw = *html_top(h);
	snprintf(nw.tag, sizeof(nw.tag), "%s", tag);
	if (strcmp(tag, "big") == 0 || strcmp(tag, "small") == 0) {
		nw.size += strcmp(tag, "big") == 0 ? 1 : -1;
		html_push_style(h, &nw);
		return;
	}
	for (size_t i = 0; i < na; i++) {
		const char *name = a[i].name, *v = a[i].value;

		if (!html_ok_attr(tag, name))
			continue;
		if (strcmp(name, "text") == 0 || strcmp(name, "color") == 0) {
			html_name_to_rgb(v, nw.fg);
		} else if (strcmp(name, "size") == 0) {
			const char *p = v;

			while (isspace((unsigned char)*p))
				p++;
			/* [+-]\d+ relative, \d+ absolute: integers only ("1.5" is 1) */
			if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]))
				nw.size = h->basefont + (double)strtol(p, NULL, 10);
			else if (isdigit((unsigned char)*p))
				nw.size = (double)strtol(p, NULL, 10);
		} else if (strcmp(name, "style") == 0) {
			char *st = strdup(v), *save = NULL;

			if (st == NULL)
				abort();
			for (char *part = strtok_r(st, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
				char *p = part, *colon, *val, *e;
				bool bgp = false;

				while (isspace((unsigned char)*p))
					p++;
				if (strncasecmp(p, "background-", 11) == 0 && strncasecmp(p + 11, "color", 5) == 0) {
					bgp = true;
					p += 11;
				}
				colon = p + 5;
				if (strncasecmp(p, "color", 5) == 0 && *colon == ':') {
					char lv[128], *q;

					val = colon + 1;
					while (isspace((unsigned char)*val))
						val++;
					e = val + strlen(val);
					while (e > val && isspace((unsigned char)e[-1]))
						e--;
					snprintf(lv, sizeof(lv), "%.*s", (int)(e - val), val);
					for (q = lv; *q; q++)
						*q = (char)tolower((unsigned char)*q);
					if ((q = strstr(lv, "!")) != NULL && strstr(q, "important")) {
						while (q > lv && isspace((unsigned char)q[-1]))
							q--;
						*q = '\0';
					}
					if (!*lv)
						continue;
					if (strstr(lv, "rgb")) {
						int rgb[3] = { 0, 0, 0 }, k = 0;
						char *d = lv;

						while (*d && k < 3) {
							if (isdigit((unsigned char)*d)) {
								long x = strtol(d, &d, 10);

								rgb[k++] = x > 255 ? 255 : (int)x;
								continue;
							}
							if (*d == ',' && (d == lv || !isdigit((unsigned char)d[-1])))
								k++;
							d++;
						}
						snprintf(bgp ? nw.bg : nw.fg, 16, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
					} else if (strcmp(lv, "inherit") == 0) {
					} else if (strcmp(lv, "transparent") == 0) {
						strcpy(bgp ? nw.bg : nw.fg, "transparent");
					} else {
						html_name_to_rgb(lv, bgp ? nw.bg : nw.fg);
					}
					continue;
				}
				if (bgp)
					p -= 11;
				if (strncmp(p, "background:", 11) == 0) {
					char lv[256], c16[16];

					val = p + 11;
					while (isspace((unsigned char)*val))
						val++;
					snprintf(lv, sizeof(lv), "%s", val);
					for (char *q = lv; *q; q++)
						*q = (char)tolower((unsigned char)*q);
					e = lv + strlen(lv);
					while (e > lv && isspace((unsigned char)e[-1]))
						*--e = '\0';
					if (html_css_background(lv, c16))
						strcpy(nw.bg, c16);
					continue;
				}
				{
					/* ([a-z_-]+)\s*:\s*(\S.*?)\s*$ : display and visibility matter */
					char *q = p;

					while (isalpha((unsigned char)*q) || *q == '_' || *q == '-')
						q++;
					if (q == p)
						continue;
					colon = q;
					while (isspace((unsigned char)*colon))
						colon++;
					if (*colon != ':')
						continue;
					val = colon + 1;
					while (isspace((unsigned char)*val))
						val++;
					e = val + strlen(val);
					while (e > val && isspace((unsigned char)e[-1]))
						e--;
					if (e == val)
						continue;
					if (q - p == 7 && strncasecmp(p, "display", 7) == 0)
						snprintf(nw.display, sizeof(nw.display), "%.*s", (int)(e - val), val);
					else if (q - p == 10 && strncasecmp(p, "visibility", 10) == 0)
						snprintf(nw.visibility, sizeof(nw.visibility), "%.*s", (int)(e - val), val);
				}
			}
			free(st);
			if (strcmp(nw.bg, "transparent") == 0)
				strcpy(nw.bg, html_top(h)->bg);
			if (strcmp(nw.fg, "transparent") == 0)
				strcpy(nw.fg, nw.bg);
		}
		/* bgcolor: SA rewrites the attribute but never uses it for the style */
		if (nw.size > h->r->max_size)
			h->r->max_size = nw.size;
		else if (nw.size < h->r->min_size)
			h->r->min_size = nw.size;
	}
	html_push_style(h, &nw);
}

static void html_tests(struct html_state *h, const char *tag, struct html_attr *a, size_t na)
{
	const char *v;

	if (strcmp(tag, "font") == 0 && (v = html_attr(a, na, "face")) != NULL) {
		static const char *const ok = "";
		/* ^\s*["'.]?[a-z ][a-z -]*[a-z]\d?["']?(?:,\s*["']?[a-z][a-z -]*[a-z]\d?["']?)*;?$ */
		const char *p = v;
		bool good = true;

		(void)ok;
		while (isspace((unsigned char)*p))
			p++;
		for (int first = 1;; first = 0) {
			const char *b;

			if (!first) {
				if (*p != ',')
					break;
				p++;
				while (isspace((unsigned char)*p))
					p++;
				if (*p == '"' || *p == '\'')
					p++;
				if (!isalpha((unsigned char)*p)) {
					good = false;
					break;
				}
			} else {
				if (*p == '"' || *p == '\'' || *p == '.')
					p++;
				if (!(isalpha((unsigned char)*p) || *p == ' ')) {
					good = false;
					break;
				}
			}
			b = p;
			p++;
			while (isalpha((unsigned char)*p) || *p == ' ' || *p == '-')
				p++;
			/* the run must end in a letter: back off trailing blanks/dashes */
			while (p > b + 1 && !isalpha((unsigned char)p[-1]))
				p--;
			if (p < b + 2 || !isalpha((unsigned char)p[-1])) {
				good = false;
				break;
			}
			if (isdigit((unsigned char)*p))
				p++;
			if (*p == '"' || *p == '\'')
				p++;
			if (*p == ' ' || *p == '-') {
				good = false;        /* a blank or dash after the last letter */
				break;
			}
		}
		if (good && *p == ';')
			p++;
		if (!good || *p != '\0')
			h->r->font_face_bad = true;
	}
	if (strcmp(tag, "img") == 0 && html_inside_n(h, "a") > 0)
		html_list_append(h->r->anchor, h->r->nanchor, "<img>\n", 6);
	if (strcmp(tag, "img") == 0 && html_attr(a, na, "width") && html_attr(a, na, "height")) {
		const char *w = html_attr(a, na, "width"), *ht = html_attr(a, na, "height");
		double width = 0, height = 0;
		char *e;

		if (isdigit((unsigned char)*w)) {
			width = strtod(w, &e);
			if (*e == '%' && e[1] == '\0')
				width *= 8;
			else if (*e != '\0')
				width = 0;
		}
		if (isdigit((unsigned char)*ht)) {
			height = strtod(ht, &e);
			if (*e == '%' && e[1] == '\0')
				height *= 6;
			else if (*e != '\0')
				height = 0;
		}
		if (width <= 0)
			width = 200;
		if (height <= 0)
			height = 200;
		h->r->image_area += width * height;
	}
	if (strcmp(tag, "form") == 0 && (v = html_attr(a, na, "action")) != NULL &&
	    strcasestr(v, "mailto:"))
		h->r->form_action_mailto = true;
	if (strcmp(tag, "object") == 0 || strcmp(tag, "embed") == 0)
		h->r->embeds = true;
	if (strcmp(tag, "a") == 0) {
		/* SA keys the anchor's text by its href as written (canon_uri only, "" without
		 * one): that key is in the URI list too */
		char *href = html_href(a, na);
		char *c = href ? uri_html_canon(href, &h->r->uri_truncated) : strdup("");

		if (c == NULL)
			abort();
		if (h->uri_cb)
			h->uri_cb(c, strlen(c), h->uri_arg);
		if (h->r->nanchor < HTML_MAX_LIST) {
			size_t n = h->r->nanchor;

			h->r->anchor_href = realloc(h->r->anchor_href, (n + 1) * sizeof(char *));
			if (h->r->anchor_href == NULL)
				abort();
			h->r->anchor_href[n] = c;
			c = NULL;
			html_list_add(&h->r->anchor, &h->r->nanchor, "", 0);
		}
		free(c);
		free(href);
	}
	if (strcmp(tag, "title") == 0) {
		h->title_index++;
		html_list_add(&h->r->title, &h->r->ntitle, "", 0);
	}
	if (strcmp(tag, "meta") == 0 && (v = html_attr(a, na, "http-equiv")) != NULL &&
	    strcasestr(v, "content-type") && html_attr(a, na, "content")) {
		const char *c = strcasestr(html_attr(a, na, "content"), "charset");

		if (c) {
			c += 7;
			while (isspace((unsigned char)*c))
				c++;
			if (*c == '=') {
				size_t l;

				c++;
				while (isspace((unsigned char)*c))
					c++;
				if (*c == '"' || *c == '\'')
					c++;
				l = strcspn(c, "\"'");
				if (l) {
					size_t ol = h->r->charsets ? strlen(h->r->charsets) : 0;

					h->r->charsets = realloc(h->r->charsets, ol + l + 2);
					if (h->r->charsets == NULL)
						abort();
					if (ol)
						h->r->charsets[ol++] = ' ';
					memcpy(h->r->charsets + ol, c, l);
					h->r->charsets[ol + l] = '\0';
				}
			}
		}
	}
	if (strcmp(tag, "iframe") == 0 && html_attr(a, na, "src"))
		h->r->iframe = true;
}

static void html_tag(struct html_state *h, const char *tag, struct html_attr *a, size_t na,
    int num)
{
	bool el = html_in_list(html_elements, tag), isnew;
	bool ns = (tag[0] == 'o' && tag[1] == ':') || (tag[0] == 's' && tag[1] == 't' &&
	    isdigit((unsigned char)tag[2]));
	int *in;

	if (ns) {
		/* ^(?:o|st\d):[\w-]+/?$ */
		const char *p = strchr(tag, ':');

		ns = p && p[1];
		for (const char *q = p ? p + 1 : ""; *q && ns; q++)
			if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '-' || (*q == '/' && !q[1])))
				ns = false;
	}
	in = html_inside_slot(h, tag, &isnew);
	if (in == NULL)
		return;
	if (el || ns) {
		h->elements++;
		h->seen_elements = true;
		if (isnew) {
			h->elements_seen++;
			h->seen_elements_seen = true;
		}
	}
	h->tags++;
	h->seen_tags = true;
	if (isnew) {
		h->tags_seen++;
		h->seen_tags_seen = true;
	}
	*in += num;
	if (*in < 0) {
		*in = 0;
		h->closed_extra++;
	}
	if (ns)
		return;
	if (el || html_in_list(html_tricks, tag)) {
		if (html_in_list(html_text_style_tags, tag))
			html_text_style(h, tag, a, na, num);
		if (html_in_list(html_ws_tags, tag)) {
			if (strcmp(tag, "br") == 0 || strcmp(tag, "div") == 0)
				html_display(h, "\n", 1, true, false);
			else if (strcmp(tag, "li") == 0 || strcmp(tag, "th") == 0 || strcmp(tag, "td") == 0 ||
			    strcmp(tag, "dt") == 0 || strcmp(tag, "dd") == 0 || strcmp(tag, "embed") == 0 ||
			    (tag[0] == 'h' && isdigit((unsigned char)tag[1]) && !tag[2]))
				html_display(h, " ", 1, true, false);
			else
				html_display(h, "\n\n", 2, true, false);
		}
		if (num == 1) {
			static const char *const uri_tags[] = { "body", "table", "tr", "td", "a", "area",
				"link", "img", "frame", "iframe", "embed", "script", "form", "base",
				"bgsound", "meta", NULL };

			if (html_in_list(uri_tags, tag)) {
				html_uri(h, tag, a, na);
				h->cur_tag = NULL;
			}
			html_tests(h, tag, a, na);
		}
	}
}

/* ---------------------------------------------------------------- tokenizer */

/* Parses the attributes of a start tag in s[0..n) (after the name). */
/* HTML::Parser's attribute grammar over a start tag's text after its name: names are runs
 * of anything but white space, '=' and '>'; a value follows '=' (white space around it
 * allowed) and is quoted ('...' or "...", '>' inside kept) or runs to white space or '>'.
 * With a != NULL the attributes are stored (names lower-cased, values entity-decoded);
 * returns where the tag ends (its '>'), or n when it does not. */
static size_t html_scan_attrs(const char *s, size_t n, struct html_attr *a, size_t max,
    size_t *na)
{
	size_t i = 0;

	if (na)
		*na = 0;
	for (;;) {
		size_t ns, ne, vs = 0, ve = 0;
		bool has_value = false;

		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i >= n || s[i] == '>')
			return i;
		ns = i;
		while (i < n && !isspace((unsigned char)s[i]) && s[i] != '=' && s[i] != '>')
			i++;
		ne = i;
		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i < n && s[i] == '=') {
			i++;
			while (i < n && isspace((unsigned char)s[i]))
				i++;
			has_value = true;
			if (i < n && (s[i] == '"' || s[i] == '\'')) {
				const char *q = memchr(s + i + 1, s[i], n - i - 1);

				if (q == NULL)
					return n;            /* unterminated: no end of tag */
				vs = i + 1;
				ve = (size_t)(q - s);
				i = ve + 1;
			} else {
				vs = i;
				while (i < n && !isspace((unsigned char)s[i]) && s[i] != '>')
					i++;
				ve = i;
			}
		} else if (ne == ns) {
			i++;                         /* a stray character */
			continue;
		}
		if (a == NULL || ne == ns || *na >= max)
			continue;
		snprintf(a[*na].name, sizeof(a[*na].name), "%.*s", (int)(ne - ns), s + ns);
		for (char *p = a[*na].name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (has_value) {
			struct html_buf v = { 0 };

			html_decode(s + vs, ve - vs, &v, true);
			html_put(&v, "", 0);
			a[*na].value = v.p;
		} else {
			a[*na].value = strdup(a[*na].name);      /* a boolean attribute */
			if (a[*na].value == NULL)
				abort();
		}
		(*na)++;
	}
}

static void html_emit_text(struct html_state *h, const char *s, size_t n)
{
	struct html_buf d = { 0 };

	if (n == 0)
		return;
	html_decode(s, n, &d, false);
	if (d.n)
		html_text(h, d.p, d.n);
	free(d.p);
}

/* Does s (n bytes, "<!...") declare name ("<!DOCTYPE html>": any case, not followed by
 * a letter or digit)? */
static bool html_is_decl(const char *s, size_t n, const char *name)
{
	size_t l = strlen(name);

	return n >= 2 + l && strncasecmp(s + 2, name, l) == 0 &&
	    (n == 2 + l || !isalnum((unsigned char)s[2 + l]));
}

/* Where markup starting "<!" or "<?" at s[i] ends, HTML::Parser 3's way without
 * strict_comment: a comment "<!--" at the first "--", optional white space and ">" after
 * it, else at the first ">"; a DOCTYPE or ENTITY declaration at the first ">" outside
 * quotes; anything else ("<!x>", "<![CDATA[", "<?pi>") at the first ">". n (the rest is
 * the comment) when there is none. */
static size_t html_markup_end(const char *s, size_t n, size_t i)
{
	const char *gt;

	if (i + 3 < n && s[i + 1] == '!' && s[i + 2] == '-' && s[i + 3] == '-') {
		for (size_t j = i + 4; j + 1 < n; j++)
			if (s[j] == '-' && s[j + 1] == '-') {
				size_t k = j + 2;

				while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r' ||
				    s[k] == '\f'))
					k++;
				if (k < n && s[k] == '>')
					return k + 1;
			}
		gt = memchr(s + i + 4, '>', n - i - 4);
		return gt ? (size_t)(gt - s) + 1 : n;
	}
	if (s[i + 1] == '!' && (html_is_decl(s + i, n - i, "doctype") ||
	    html_is_decl(s + i, n - i, "entity"))) {
		char q = 0;

		for (size_t j = i + 2; j < n; j++) {
			if (q) {
				if (s[j] == q)
					q = 0;
			} else if (s[j] == '"' || s[j] == '\'') {
				q = s[j];
			} else if (s[j] == '>') {
				return j + 1;
			}
		}
		return n;
	}
	gt = i + 1 < n ? memchr(s + i + 1, '>', n - i - 1) : NULL;
	return gt ? (size_t)(gt - s) + 1 : n;
}

static void html_run(struct html_state *h, const char *s, size_t n)
{
	size_t i = 0, text_start = 0;
	const char *literal = NULL;       /* inside script/style...: the end tag awaited */

	/* what is left to render, for html_render_put (html_analyze clears it) */
	h->run_at = &text_start;
	h->run_len = n;
	while (i < n) {
		size_t j, ns, ne;
		bool end;
		char tag[64];

		if (s[i] != '<') {
			i++;
			continue;
		}
		if (literal) {
			/* the element ends at "</name" with white space and '>' only */
			size_t ll = strlen(literal), k = i + 2 + ll;

			while (k < n && isspace((unsigned char)s[k]))
				k++;
			if (i + 2 + ll <= n && s[i + 1] == '/' && strncasecmp(s + i + 2, literal, ll) == 0 &&
			    k < n && s[k] == '>') {
				/* title and textarea text has its entities decoded, the rest is CDATA */
				if (strcmp(literal, "title") == 0 || strcmp(literal, "textarea") == 0)
					html_emit_text(h, s + text_start, i - text_start);
				else if (i > text_start)
					html_text(h, s + text_start, i - text_start);
				literal = NULL;
				text_start = i;
			} else {
				i++;
				continue;
			}
		}
		if (i + 1 < n && (s[i + 1] == '!' || s[i + 1] == '?')) {
			size_t e = html_markup_end(s, n, i);

			html_emit_text(h, s + text_start, i - text_start);
			if (s[i + 1] == '!' && html_is_decl(s + i, e - i, "doctype")) {
				bool isnew;
				int *in = html_inside_slot(h, "!doctype", &isnew);

				h->elements++;
				h->tags++;
				h->seen_elements = h->seen_tags = true;
				if (in)
					*in = 0;
			} else if (s[i + 1] == '!' && (e == n || !html_is_decl(s + i, e - i, "entity"))) {
				html_list_add(&h->r->comment, &h->r->ncomment, s + i, e - i);
			} else if (s[i + 1] == '?' && e == n) {
				html_list_add(&h->r->comment, &h->r->ncomment, s + i, e - i);
			}
			i = e;
			text_start = i;
			continue;
		}
		j = i + 1;
		end = j < n && s[j] == '/';
		if (end)
			j++;
		if (end && (j >= n || isspace((unsigned char)s[j]) || s[j] == '>')) {
			/* "</ x>", "</>": a bogus comment up to the '>' */
			const char *gt = memchr(s + j, '>', n - j);
			size_t e = gt ? (size_t)(gt - s) + 1 : n;

			html_emit_text(h, s + text_start, i - text_start);
			html_list_add(&h->r->comment, &h->r->ncomment, s + i, e - i);
			i = text_start = e;
			continue;
		}
		if (j >= n || (!end && !isalpha((unsigned char)s[j]) && s[j] != '_' && s[j] != ':')) {
			/* "<" not starting a tag (a letter, '_' or ':' does) is text, but
			 * HTML::Parser starts a new text event there */
			html_emit_text(h, s + text_start, i - text_start);
			text_start = i;
			i++;
			continue;
		}
		/* the name: anything up to white space or '>' ("</=" ends a tag named "=") */
		ns = j;
		while (j < n && !isspace((unsigned char)s[j]) && s[j] != '>')
			j++;
		ne = j;
		if (end) {
			const char *gt = memchr(s + j, '>', n - j);

			j = gt ? (size_t)(gt - s) : n;
		} else {
			j = ne + html_scan_attrs(s + ne, n - ne, NULL, 0, NULL);
		}
		if (j >= n) {                  /* no '>': the rest is a comment (at eof) */
			html_emit_text(h, s + text_start, i - text_start);
			html_list_add(&h->r->comment, &h->r->ncomment, s + i, n - i);
			return;
		}
		html_emit_text(h, s + text_start, i - text_start);
		snprintf(tag, sizeof(tag), "%.*s", (int)(ne - ns), s + ns);
		for (char *p = tag; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (end) {
			html_tag(h, tag, NULL, 0, -1);
		} else {
			struct html_attr a[64];
			size_t na;

			html_scan_attrs(s + ne, j - ne, a, 64, &na);

			html_tag(h, tag, a, na, 1);
			for (size_t k = 0; k < na; k++)
				free(a[k].value);
			if (strcmp(tag, "plaintext") == 0) {
				/* HTML::Parser: everything after <plaintext> is its text */
				if (j + 1 < n)
					html_text(h, s + j + 1, n - j - 1);
				return;
			} else {
				/* HTML::Parser's literal elements: no markup inside */
				static const char *const lit[] = { "script", "style", "xmp", "iframe",
					"textarea", "title", NULL };

				for (int k = 0; lit[k]; k++)
					if (strcmp(lit[k], tag) == 0)
						literal = lit[k];
			}
		}
		i = j + 1;
		text_start = i;
	}
	if (literal && strcmp(literal, "title") != 0 && strcmp(literal, "textarea") != 0) {
		if (n > text_start)
			html_text(h, s + text_start, n - text_start);
	} else {
		/* the text at the very end comes in two events, split where its last run of
		 * white space starts (HTML::Parser keeps a word back until eof) */
		size_t e = n;

		while (e > text_start && !isspace((unsigned char)s[e - 1]))
			e--;
		while (e > text_start && isspace((unsigned char)s[e - 1]))
			e--;
		if (e > text_start && e < n) {
			html_emit_text(h, s + text_start, e - text_start);
			text_start = e;
		}
		html_emit_text(h, s + text_start, n - text_start);
	}
}

/* SA's substitutions before the parse, at text[i]: "&nbsp;" to a space, a curly double
 * quote (U+201C, U+201D) to a plain one, "<tag/>" (white space before the '/' or not) to
 * "<tag>". Returns the octets replaced (0: none applies here), sets *wrote to the octets
 * they become (fewer, always) and writes them at dst unless it is NULL. */
static size_t html_subst(const char *text, size_t len, size_t i, char *dst, size_t *wrote)
{
	if (text[i] == '&' && i + 6 <= len && memcmp(text + i, "&nbsp;", 6) == 0) {
		if (dst)
			dst[0] = ' ';
		*wrote = 1;
		return 6;
	}
	if ((unsigned char)text[i] == 0xe2 && i + 2 < len && (unsigned char)text[i + 1] == 0x80 &&
	    ((unsigned char)text[i + 2] == 0x9c || (unsigned char)text[i + 2] == 0x9d)) {
		if (dst)
			dst[0] = '"';
		*wrote = 1;
		return 3;
	}
	if (text[i] == '<' && i + 1 < len && (isalnum((unsigned char)text[i + 1]) || text[i + 1] == '_')) {
		size_t j = i + 1, k;

		while (j < len && (isalnum((unsigned char)text[j]) || text[j] == '_'))
			j++;
		k = j;
		while (k < len && isspace((unsigned char)text[k]))
			k++;
		if (k + 1 < len && text[k] == '/' && text[k + 1] == '>') {
			if (dst) {
				memcpy(dst, text + i, j - i);
				dst[j - i] = '>';
			}
			*wrote = j - i + 1;
			return k + 2 - i;
		}
	}
	return 0;
}

void html_analyze(const char *text, size_t len, struct html_result *r,
    void (*uri_cb)(const char *uri, size_t len, void *arg), void *arg)
{
	struct html_state h = { .r = r, .basefont = 3, .title_index = -1, .uri_cb = uri_cb,
		.uri_arg = arg };
	struct html_style def = { .tag = "default", .fg = "#000000", .bg = "#ffffff", .size = 3 };
	char *pre;
	size_t i = 0, o, wrote;

	memset(r, 0, sizeof(*r));
	r->max_size = r->min_size = 3;
	r->length = (double)charset_utf8_chars(text, len);   /* characters, as SA */
	html_push_style(&h, &def);
	/* SA: &nbsp; becomes a space, <tag/> becomes <tag>, curly double quotes plain; the
	 * part parsed where it is when there is none of them */
	while (i < len && html_subst(text, len, i, NULL, &wrote) == 0)
		i++;
	if (i == len) {
		html_run(&h, text ? text : "", len);
	} else {
		pre = malloc(len + 1);
		if (pre == NULL)
			abort();
		memcpy(pre, text, i);
		o = i;
		while (i < len) {
			size_t used = html_subst(text, len, i, pre + o, &wrote);

			if (used) {
				i += used;
				o += wrote;
			} else {
				pre[o++] = text[i++];
			}
		}
		pre[o] = '\0';
		html_run(&h, pre, o);
		free(pre);
	}
	h.run_at = NULL;                  /* html_run's, gone */
	/* results */
	if (h.seen_tags) {
		r->has_tags = true;
		r->closed_extra_ratio = h.closed_extra / h.tags;
		if (h.seen_elements) {
			r->has_elements = true;
			r->bad_tag_ratio = (h.tags - h.elements) / h.tags;
		}
		if (h.seen_obf) {
			r->has_obfuscation = true;
			r->obfuscation_ratio = h.obfuscation / h.tags;
		}
	}
	if (h.seen_elements_seen && h.seen_tags_seen) {
		r->has_seen = true;
		r->non_element_ratio = (h.tags_seen - h.elements_seen) / h.tags_seen;
	}
	r->backhair_count = h.nbackhair;
	for (size_t i = 0; i < h.nbackhair; i++)
		free(h.backhair[i]);
	free(h.backhair);
	free(h.base_href);
	free(h.st);
	/* the rendering kept at its size, not at its buffer's (grown by doubling, up to twice
	 * the text): it is kept until the message's scan ends, the body views built beside it */
	if (h.text.p && h.text.cap > h.text.n + 1) {
		char *fit = realloc(h.text.p, h.text.n + 1);

		if (fit)
			h.text.p = fit;
	}
	r->rendered = h.text.p ? h.text.p : strdup("");
	r->rendered_len = h.text.n;
	/* SA counts characters of the (UTF-8) rendered text, Unicode white space as space */
	r->html_length = (double)charset_utf8_chars(r->rendered, r->rendered_len);
	{
		size_t sp = 0;

		for (size_t i = 0; i < r->rendered_len;) {
			size_t l = charset_space_len(r->rendered + i, r->rendered_len - i);

			if (l) {
				sp++;
				i += l;
			} else {
				i++;
			}
		}
		r->non_space_len = r->html_length - (double)sp;
	}
}

void html_result_free(struct html_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ninside; i++)
		free(r->inside[i].tag);
	free(r->inside);
	for (size_t i = 0; i < r->ncomment; i++)
		free(r->comment[i]);
	free(r->comment);
	for (size_t i = 0; i < r->ntitle; i++)
		free(r->title[i]);
	free(r->title);
	for (size_t i = 0; i < r->nanchor; i++) {
		free(r->anchor[i]);
		free(r->anchor_href[i]);
	}
	free(r->anchor);
	free(r->anchor_href);
	for (size_t i = 0; i < r->nlink; i++) {
		free(r->link_uri[i]);
		free(r->link_type[i]);
	}
	free(r->link_uri);
	free(r->link_type);
	free(r->charsets);
	free(r->rendered);
	memset(r, 0, sizeof(*r));
}
