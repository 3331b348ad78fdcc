/* html.c — SpamAssassin's HTML analysis; see html.h.
 *
 * The tokenizer follows HTML::Parser 3 as SpamAssassin drives it (start/end tags with
 * lower-cased names and entity-decoded attribute values, comments and declarations passed
 * whole, script/style/xmp/plaintext/textarea/title bodies as literal text); the handlers
 * follow Mail::SpamAssassin::HTML: tag counting, the text-style stack, display text with
 * its whitespace rules, and the results the HTMLEval tests read. */
#include "html.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTML_MAX_STYLE   512        /* text style stack depth */
#define HTML_MAX_LIST    4096       /* comments, titles, anchors kept */

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

static const struct { const char *name; unsigned rgb; } html_colors[] = {
	{ "aliceblue", 0xf0f8ff },
	{ "antiquewhite", 0xfaebd7 },
	{ "aqua", 0x00ffff },
	{ "aqua", 0x00ffff },
	{ "aquamarine", 0x7fffd4 },
	{ "azure", 0xf0ffff },
	{ "beige", 0xf5f5dc },
	{ "bisque", 0xffe4c4 },
	{ "black", 0x000000 },
	{ "black", 0x000000 },
	{ "blanchedalmond", 0xffebcd },
	{ "blue", 0x0000ff },
	{ "blue", 0x0000ff },
	{ "blueviolet", 0x8a2be2 },
	{ "brown", 0xa52a2a },
	{ "burlywood", 0xdeb887 },
	{ "cadetblue", 0x5f9ea0 },
	{ "chartreuse", 0x7fff00 },
	{ "chocolate", 0xd2691e },
	{ "coral", 0xff7f50 },
	{ "cornflowerblue", 0x6495ed },
	{ "cornsilk", 0xfff8dc },
	{ "crimson", 0xdc143c },
	{ "cyan", 0x00ffff },
	{ "darkblue", 0x00008b },
	{ "darkcyan", 0x008b8b },
	{ "darkgoldenrod", 0xb8860b },
	{ "darkgray", 0xa9a9a9 },
	{ "darkgreen", 0x006400 },
	{ "darkgrey", 0xa9a9a9 },
	{ "darkkhaki", 0xbdb76b },
	{ "darkmagenta", 0x8b008b },
	{ "darkolivegreen", 0x556b2f },
	{ "darkorange", 0xff8c00 },
	{ "darkorchid", 0x9932cc },
	{ "darkred", 0x8b0000 },
	{ "darksalmon", 0xe9967a },
	{ "darkseagreen", 0x8fbc8f },
	{ "darkslateblue", 0x483d8b },
	{ "darkslategray", 0x2f4f4f },
	{ "darkslategrey", 0x2f4f4f },
	{ "darkturquoise", 0x00ced1 },
	{ "darkviolet", 0x9400d3 },
	{ "deeppink", 0xff1493 },
	{ "deepskyblue", 0x00bfff },
	{ "dimgray", 0x696969 },
	{ "dimgrey", 0x696969 },
	{ "dodgerblue", 0x1e90ff },
	{ "firebrick", 0xb22222 },
	{ "floralwhite", 0xfffaf0 },
	{ "forestgreen", 0x228b22 },
	{ "fuchsia", 0xff00ff },
	{ "fuchsia", 0xff00ff },
	{ "gainsboro", 0xdcdcdc },
	{ "ghostwhite", 0xf8f8ff },
	{ "gold", 0xffd700 },
	{ "goldenrod", 0xdaa520 },
	{ "gray", 0x808080 },
	{ "gray", 0x808080 },
	{ "green", 0x008000 },
	{ "green", 0x008000 },
	{ "greenyellow", 0xadff2f },
	{ "grey", 0x808080 },
	{ "honeydew", 0xf0fff0 },
	{ "hotpink", 0xff69b4 },
	{ "indianred", 0xcd5c5c },
	{ "indigo", 0x4b0082 },
	{ "ivory", 0xfffff0 },
	{ "khaki", 0xf0e68c },
	{ "lavender", 0xe6e6fa },
	{ "lavenderblush", 0xfff0f5 },
	{ "lawngreen", 0x7cfc00 },
	{ "lemonchiffon", 0xfffacd },
	{ "lightblue", 0xadd8e6 },
	{ "lightcoral", 0xf08080 },
	{ "lightcyan", 0xe0ffff },
	{ "lightgoldenrodyellow", 0xfafad2 },
	{ "lightgray", 0xd3d3d3 },
	{ "lightgreen", 0x90ee90 },
	{ "lightgrey", 0xd3d3d3 },
	{ "lightpink", 0xffb6c1 },
	{ "lightsalmon", 0xffa07a },
	{ "lightseagreen", 0x20b2aa },
	{ "lightskyblue", 0x87cefa },
	{ "lightslategray", 0x778899 },
	{ "lightslategrey", 0x778899 },
	{ "lightsteelblue", 0xb0c4de },
	{ "lightyellow", 0xffffe0 },
	{ "lime", 0x00ff00 },
	{ "lime", 0x00ff00 },
	{ "limegreen", 0x32cd32 },
	{ "linen", 0xfaf0e6 },
	{ "magenta", 0xff00ff },
	{ "maroon", 0x800000 },
	{ "maroon", 0x800000 },
	{ "mediumaquamarine", 0x66cdaa },
	{ "mediumblue", 0x0000cd },
	{ "mediumorchid", 0xba55d3 },
	{ "mediumpurple", 0x9370db },
	{ "mediumseagreen", 0x3cb371 },
	{ "mediumslateblue", 0x7b68ee },
	{ "mediumspringgreen", 0x00fa9a },
	{ "mediumturquoise", 0x48d1cc },
	{ "mediumvioletred", 0xc71585 },
	{ "midnightblue", 0x191970 },
	{ "mintcream", 0xf5fffa },
	{ "mistyrose", 0xffe4e1 },
	{ "moccasin", 0xffe4b5 },
	{ "navajowhite", 0xffdead },
	{ "navy", 0x000080 },
	{ "navy", 0x000080 },
	{ "oldlace", 0xfdf5e6 },
	{ "olive", 0x808000 },
	{ "olive", 0x808000 },
	{ "olivedrab", 0x6b8e23 },
	{ "orange", 0xffa500 },
	{ "orangered", 0xff4500 },
	{ "orchid", 0xda70d6 },
	{ "palegoldenrod", 0xeee8aa },
	{ "palegreen", 0x98fb98 },
	{ "paleturquoise", 0xafeeee },
	{ "palevioletred", 0xdb7093 },
	{ "papayawhip", 0xffefd5 },
	{ "peachpuff", 0xffdab9 },
	{ "peru", 0xcd853f },
	{ "pink", 0xffc0cb },
	{ "plum", 0xdda0dd },
	{ "powderblue", 0xb0e0e6 },
	{ "purple", 0x800080 },
	{ "purple", 0x800080 },
	{ "red", 0xff0000 },
	{ "red", 0xff0000 },
	{ "rosybrown", 0xbc8f8f },
	{ "royalblue", 0x4169e1 },
	{ "saddlebrown", 0x8b4513 },
	{ "salmon", 0xfa8072 },
	{ "sandybrown", 0xf4a460 },
	{ "seagreen", 0x2e8b57 },
	{ "seashell", 0xfff5ee },
	{ "sienna", 0xa0522d },
	{ "silver", 0xc0c0c0 },
	{ "silver", 0xc0c0c0 },
	{ "skyblue", 0x87ceeb },
	{ "slateblue", 0x6a5acd },
	{ "slategray", 0x708090 },
	{ "slategrey", 0x708090 },
	{ "snow", 0xfffafa },
	{ "springgreen", 0x00ff7f },
	{ "steelblue", 0x4682b4 },
	{ "tan", 0xd2b48c },
	{ "teal", 0x008080 },
	{ "teal", 0x008080 },
	{ "thistle", 0xd8bfd8 },
	{ "tomato", 0xff6347 },
	{ "turquoise", 0x40e0d0 },
	{ "violet", 0xee82ee },
	{ "wheat", 0xf5deb3 },
	{ "white", 0xffffff },
	{ "white", 0xffffff },
	{ "whitesmoke", 0xf5f5f5 },
	{ "yellow", 0xffff00 },
	{ "yellow", 0xffff00 },
	{ "yellowgreen", 0x9acd32 },
	{ NULL, 0 }
};

/* HTML 4 Latin-1 entities, code points 160..255 in order */
static const char *const html_latin1[96] = {
	"nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy",
	"ordf", "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute",
	"micro", "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12",
	"frac34", "iquest", "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig",
	"Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml",
	"ETH", "Ntilde", "Ograve", "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash",
	"Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute",
	"acirc", "atilde", "auml", "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc",
	"euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde", "ograve", "oacute",
	"ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc", "uuml",
	"yacute", "thorn", "yuml"
};
static const struct { const char *name; unsigned cp; } html_entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "euro", 0x20ac }, { "trade", 0x2122 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
	{ "hellip", 0x2026 }, { "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "ldquo", 0x201c },
	{ "rdquo", 0x201d }, { "bull", 0x2022 }, { "sbquo", 0x201a }, { "bdquo", 0x201e },
	{ "dagger", 0x2020 }, { "Dagger", 0x2021 }, { "permil", 0x2030 }, { "lsaquo", 0x2039 },
	{ "rsaquo", 0x203a }, { "OElig", 0x152 }, { "oelig", 0x153 }, { "Scaron", 0x160 },
	{ "scaron", 0x161 }, { "Yuml", 0x178 }, { "fnof", 0x192 }, { "circ", 0x2c6 },
	{ "tilde", 0x2dc }, { "ensp", 0x2002 }, { "emsp", 0x2003 }, { "thinsp", 0x2009 },
	{ "zwnj", 0x200c }, { "zwj", 0x200d }, { "lrm", 0x200e }, { "rlm", 0x200f },
	{ NULL, 0 }
};

struct html_buf { char *p; size_t n, cap; };

static void html_put(struct html_buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;

		while (b->n + n + 1 > nc)
			nc *= 2;
		b->p = realloc(b->p, nc);
		if (b->p == NULL)
			abort();
		b->cap = nc;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void html_put_utf8(struct html_buf *b, unsigned long cp)
{
	char u[4];

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80) {
		u[0] = (char)cp;
		html_put(b, u, 1);
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		html_put(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		html_put(b, u, 3);
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		html_put(b, u, 4);
	}
}

/* Decodes entities of s[0..n) into out (HTML::Parser's decode_entities). */
static void html_decode(const char *s, size_t n, struct html_buf *out)
{
	size_t i = 0;

	while (i < n) {
		size_t k;

		if (s[i] != '&') {
			size_t j = i;

			while (j < n && s[j] != '&')
				j++;
			html_put(out, s + i, j - i);
			i = j;
			continue;
		}
		k = i + 1;
		if (k < n && s[k] == '#') {
			unsigned long cp = 0;
			bool hex = k + 1 < n && (s[k + 1] == 'x' || s[k + 1] == 'X');
			size_t d = k + (hex ? 2 : 1), e = d;

			while (e < n && e - d < 8 && (hex ? isxdigit((unsigned char)s[e]) :
			    isdigit((unsigned char)s[e]))) {
				int c = (unsigned char)s[e];

				cp = cp * (hex ? 16 : 10) + (unsigned long)(isdigit(c) ? c - '0' :
				    tolower(c) - 'a' + 10);
				e++;
			}
			if (e > d) {
				html_put_utf8(out, cp);
				i = e < n && s[e] == ';' ? e + 1 : e;
				continue;
			}
		} else {
			size_t e = k;
			unsigned long cp = 0;
			bool found = false;

			while (e < n && e - k < 10 && isalnum((unsigned char)s[e]))
				e++;
			for (size_t l = e - k; l > 0 && !found; l--) {
				for (int z = 0; z < 96 && !found; z++)
					if (strlen(html_latin1[z]) == l && strncmp(html_latin1[z], s + k, l) == 0) {
						cp = 160 + (unsigned long)z;
						found = true;
					}
				for (int z = 0; html_entities[z].name && !found; z++)
					if (strlen(html_entities[z].name) == l &&
					    strncmp(html_entities[z].name, s + k, l) == 0) {
						cp = html_entities[z].cp;
						found = true;
					}
				if (found) {
					html_put_utf8(out, cp);
					i = k + l < n && s[k + l] == ';' ? k + l + 1 : k + l;
				} else if (l == e - k) {
					/* only the full word may omit nothing; shorter prefixes need ';'
					 * to be absent too, as HTML::Parser accepts "&ampx" */
				}
			}
			if (found)
				continue;
		}
		html_put(out, "&", 1);
		i++;
	}
}

static bool html_in_list(const char *const *l, const char *tag)
{
	for (int i = 0; l[i]; i++)
		if (strcmp(l[i], tag) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- colours */

static bool html_name_to_rgb(const char *in, char out[16])
{
	char c[256], *s;
	size_t n;

	snprintf(c, sizeof(c), "%s", in);
	for (s = c; *s; s++)
		*s = (char)tolower((unsigned char)*s);
	s = c;
	while (isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	for (int i = 0; html_colors[i].name; i++)
		if (strcmp(html_colors[i].name, s) == 0) {
			snprintf(out, 16, "#%06x", html_colors[i].rgb);
			return true;
		}
	{
		bool hexonly = strspn(s, "#abcdef0123456789") == n;
		unsigned r, g, b;
		char pct;

		if (!hexonly && strstr(s, "rgb(") == NULL)
			goto invalid;
		if (sscanf(strstr(s, "rgb(") ? strstr(s, "rgb(") : "", "rgb(%u%%, %u%%, %u%c", &r, &g,
		    &b, &pct) == 4 && pct == '%') {
			snprintf(c, sizeof(c), "#%02x%02x%02x", (unsigned)(r / 100.0 * 255) & 0xff,
			    (unsigned)(g / 100.0 * 255) & 0xff, (unsigned)(b / 100.0 * 255) & 0xff);
			s = c;
			n = strlen(s);
		} else if (sscanf(strstr(s, "rgb(") ? strstr(s, "rgb(") : "", "rgb(%u, %u, %u", &r,
		    &g, &b) == 3) {
			char t2[32];

			snprintf(t2, sizeof(t2), "#%02x%02x%02x", r, g, b);
			snprintf(c, sizeof(c), "%s", t2);
			s = c;
			n = strlen(s);
		}
		if (s[0] == '#') {
			char h[16];
			size_t k = 0;

			for (size_t i = 0; i < n && k < 15; i++)
				if (isxdigit((unsigned char)s[i]))
					h[k++] = s[i];
			h[k] = '\0';
			if (k > 6)
				h[k = 6] = '\0';
			if (k > 3 && k < 6)
				h[k = 3] = '\0';
			while (k % 3) {
				h[k++] = '0';
				h[k] = '\0';
			}
			if (k == 3) {
				char t[7] = { h[0], h[0], h[1], h[1], h[2], h[2], 0 };

				memcpy(h, t, 7);
			}
			snprintf(out, 16, "#%.6s", h);
			return true;
		}
	}
invalid:
	strcpy(out, "invalid");
	return false;
}

/* ---------------------------------------------------------------- the parser state */

struct html_style {
	char tag[16];
	char fg[16], bg[16];
	double size;
	char display[16], visibility[16];
};

struct html_state {
	struct html_result *r;
	void (*uri_cb)(const char *, size_t, void *);
	void *uri_arg;
	struct html_style *st; size_t nst, capst;
	double basefont;
	double tags, elements, tags_seen, elements_seen, closed_extra, obfuscation;
	bool seen_tags, seen_elements, seen_tags_seen, seen_elements_seen, seen_obf;
	/* display text: pieces with whitespace / invisible flags */
	struct html_buf text;          /* all pieces joined */
	size_t last_start;             /* where the last piece begins */
	bool have_last, last_ws, last_invis;
	char **backhair; size_t nbackhair;
	int title_index;
	bool in_anchor_text;
};

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
		bool sp = false;

		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (html_is_ws(c) || (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0)) {
				if (c == 0xc2)
					i++;
				if (!sp)
					html_put(&t, " ", 1);
				sp = true;
				continue;
			}
			sp = false;
			html_put(&t, (const char *)&s[i], 1);
		}
		if (t.n && t.p[0] == ' ' && h->have_last && !invis && h->last_ws) {
			memmove(t.p, t.p + 1, t.n);
			t.n--;
		}
	}
	h->last_start = h->text.n;
	if (t.n)
		html_put(&h->text, t.p, t.n);
	else
		html_put(&h->text, "", 0);
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
	for (size_t i = 0; i < n && !nonws; i++)
		if (!html_is_ws((unsigned char)s[i]) &&
		    !((unsigned char)s[i] == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0))
			nonws = true;
		else if ((unsigned char)s[i] == 0xc2)
			i++;
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

struct html_attr { char name[32]; char *value; };

static const char *html_attr(const struct html_attr *a, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i].name, name) == 0)
			return a[i].value;
	return NULL;
}

static void html_close_tag(struct html_state *h, const char *tag)
{
	bool found = false;

	for (size_t i = 0; i < h->nst; i++)
		if (strcmp(h->st[i].tag, tag) == 0)
			found = true;
	if (!found)
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
	bool found = false;

	for (size_t i = 0; i < h->nst; i++)
		if (strcmp(h->st[i].tag, tag) == 0)
			found = true;
	if (!found)
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

/* SA's parse_css_background: the last layer's tokens; the first valid colour wins. */
static bool html_css_background(const char *v, char out[16])
{
	char tok[64][64];
	size_t nt = 0, tl = 0, layer_start = 0;
	int state = 0, stack[16], sp = 0;
	char t[64];

	for (const char *p = v;; p++) {
		char ch = *p;

		if (ch == '\0')
			break;
		if (state == 0) {
			if (ch == ' ' || ch == ',') {
				if (tl && nt < 64) {
					t[tl] = '\0';
					strcpy(tok[nt++], t);
				}
				tl = 0;
				if (ch == ',')
					layer_start = nt;
				continue;
			}
			if ((ch == '(' || ch == '"' || ch == '\'') && sp < 16) {
				stack[sp++] = state;
				state = ch == '(' ? 1 : ch == '"' ? 2 : 3;
			}
		} else if (state == 1) {
			if (ch == ')') {
				if (tl < 63)
					t[tl++] = ch;
				t[tl] = '\0';
				if (nt < 64)
					strcpy(tok[nt++], t);
				tl = 0;
				state = sp ? stack[--sp] : 0;
				continue;
			}
			if ((ch == '"' || ch == '\'') && sp < 16) {
				stack[sp++] = state;
				state = ch == '"' ? 2 : 3;
			}
		} else if ((state == 2 && ch == '"') || (state == 3 && ch == '\'')) {
			if (tl < 63)
				t[tl++] = ch;
			state = sp ? stack[--sp] : 0;
			continue;
		}
		if (tl < 63)
			t[tl++] = ch;
	}
	if (tl && nt < 64) {
		t[tl] = '\0';
		strcpy(tok[nt++], t);
	}
	for (size_t i = layer_start; i < nt; i++)
		if (html_name_to_rgb(tok[i], out))
			return true;
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
				h->basefont = atof(sz);
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
			if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]))
				nw.size = h->basefont + atof(p);
			else if (isdigit((unsigned char)*p))
				nw.size = atof(p);
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
	if (strcmp(tag, "a") == 0 && h->r->nanchor < HTML_MAX_LIST) {
		const char *href = html_attr(a, na, "href");
		size_t n = h->r->nanchor;

		while (href && isspace((unsigned char)*href))
			href++;
		h->r->anchor_href = realloc(h->r->anchor_href, (n + 1) * sizeof(char *));
		if (h->r->anchor_href == NULL)
			abort();
		h->r->anchor_href[n] = strdup(href ? href : "");
		if (h->r->anchor_href[n] == NULL)
			abort();
		html_list_add(&h->r->anchor, &h->r->nanchor, "", 0);
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

static void html_push_uri(struct html_state *h, const char *v)
{
	size_t n;

	if (v == NULL || h->uri_cb == NULL)
		return;
	while (isspace((unsigned char)*v) || ((unsigned char)v[0] == 0xc2 && (unsigned char)v[1] == 0xa0))
		v += (unsigned char)v[0] == 0xc2 ? 2 : 1;
	n = strlen(v);
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	if (n > 8192) {
		h->r->uri_truncated = true;
		n = 8192;
	}
	if (n)
		h->uri_cb(v, n, h->uri_arg);
}

/* SA's html_uri: the attributes of the tags that carry links. */
static void html_uri(struct html_state *h, const char *tag, struct html_attr *a, size_t na)
{
	if (!strcmp(tag, "body") || !strcmp(tag, "table") || !strcmp(tag, "tr") || !strcmp(tag, "td")) {
		html_push_uri(h, html_attr(a, na, "background"));
	} else if (!strcmp(tag, "a") || !strcmp(tag, "area") || !strcmp(tag, "link")) {
		const char *href = html_attr(a, na, "href");

		for (size_t i = 0; i < na && !href; i++) {
			const char *sl = strstr(a[i].name, "/href");

			if (sl && !sl[5] && sl > a[i].name)
				href = a[i].value;
		}
		html_push_uri(h, href);
		html_push_uri(h, html_attr(a, na, "data-saferedirecturl"));
	} else if (!strcmp(tag, "img") || !strcmp(tag, "frame") || !strcmp(tag, "iframe") ||
	    !strcmp(tag, "embed") || !strcmp(tag, "script") || !strcmp(tag, "bgsound")) {
		const char *src = html_attr(a, na, "src");

		for (size_t i = 0; i < na && !src; i++) {
			const char *sl = strstr(a[i].name, "/src");

			if (sl && !sl[4] && sl > a[i].name)
				src = a[i].value;
		}
		html_push_uri(h, src);
	} else if (!strcmp(tag, "form")) {
		html_push_uri(h, html_attr(a, na, "action"));
	} else if (!strcmp(tag, "base")) {
		html_push_uri(h, html_attr(a, na, "href"));
	} else if (!strcmp(tag, "meta")) {
		const char *he = html_attr(a, na, "http-equiv"), *c = html_attr(a, na, "content");
		const char *u;

		if (he && c && strcasestr(he, "refresh") && (u = strcasestr(c, "url")) != NULL) {
			const char *p = u + 3;
			char buf[2048];
			size_t l;

			while (isspace((unsigned char)*p))
				p++;
			if (*p == '=') {
				p++;
				while (isspace((unsigned char)*p))
					p++;
				l = strcspn(p, ";");
				while (l && isspace((unsigned char)p[l - 1]))
					l--;
				snprintf(buf, sizeof(buf), "%.*s", (int)l, p);
				html_push_uri(h, buf);
			}
		}
	}
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

			if (html_in_list(uri_tags, tag))
				html_uri(h, tag, a, na);
			html_tests(h, tag, a, na);
		}
	}
}

/* ---------------------------------------------------------------- tokenizer */

/* Parses the attributes of a start tag in s[0..n) (after the name). */
static size_t html_parse_attrs(const char *s, size_t n, struct html_attr *a, size_t max)
{
	size_t i = 0, na = 0;

	while (i < n && na < max) {
		size_t ns, ne;

		while (i < n && (isspace((unsigned char)s[i]) || s[i] == '/'))
			i++;
		if (i >= n)
			break;
		ns = i;
		while (i < n && !isspace((unsigned char)s[i]) && s[i] != '=' && s[i] != '>' &&
		    !(s[i] == '/' && i + 1 == n))
			i++;
		ne = i;
		if (ne == ns) {
			i++;
			continue;
		}
		snprintf(a[na].name, sizeof(a[na].name), "%.*s", (int)(ne - ns), s + ns);
		for (char *p = a[na].name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i < n && s[i] == '=') {
			struct html_buf v = { 0 };
			size_t vs, ve;

			i++;
			while (i < n && isspace((unsigned char)s[i]))
				i++;
			if (i < n && (s[i] == '"' || s[i] == '\'')) {
				char q = s[i++];

				vs = i;
				while (i < n && s[i] != q)
					i++;
				ve = i;
				if (i < n)
					i++;
			} else {
				vs = i;
				while (i < n && !isspace((unsigned char)s[i]))
					i++;
				ve = i;
			}
			html_decode(s + vs, ve - vs, &v);
			html_put(&v, "", 0);
			a[na].value = v.p;
		} else {
			a[na].value = strdup(a[na].name);      /* a boolean attribute */
			if (a[na].value == NULL)
				abort();
		}
		na++;
	}
	return na;
}

static void html_emit_text(struct html_state *h, const char *s, size_t n)
{
	struct html_buf d = { 0 };

	if (n == 0)
		return;
	html_decode(s, n, &d);
	if (d.n)
		html_text(h, d.p, d.n);
	free(d.p);
}

static void html_run(struct html_state *h, const char *s, size_t n)
{
	size_t i = 0, text_start = 0;
	const char *literal = NULL;       /* inside script/style...: the end tag awaited */

	while (i < n) {
		size_t j, ns, ne;
		bool end;
		char tag[64];

		if (s[i] != '<') {
			i++;
			continue;
		}
		if (literal) {
			size_t ll = strlen(literal);

			if (i + 2 + ll <= n && s[i + 1] == '/' && strncasecmp(s + i + 2, literal, ll) == 0 &&
			    (i + 2 + ll == n || !isalnum((unsigned char)s[i + 2 + ll]))) {
				html_emit_text(h, s + text_start, i - text_start);
				literal = NULL;
				text_start = i;
			} else {
				i++;
				continue;
			}
		}
		if (i + 3 < n && strncmp(s + i, "<!--", 4) == 0) {
			const char *e = NULL;

			for (j = i + 4; j + 2 < n; j++)
				if (s[j] == '-' && s[j + 1] == '-' && s[j + 2] == '>') {
					e = s + j;
					break;
				}
			if (e == NULL) {
				i++;
				continue;            /* an unterminated comment is text */
			}
			html_emit_text(h, s + text_start, i - text_start);
			html_list_add(&h->r->comment, &h->r->ncomment, s + i, (size_t)(e - s) + 3 - i);
			i = (size_t)(e - s) + 3;
			text_start = i;
			continue;
		}
		if (i + 1 < n && (s[i + 1] == '!' || s[i + 1] == '?')) {
			const char *gt = memchr(s + i, '>', n - i);
			size_t e;

			if (gt == NULL) {
				i++;
				continue;
			}
			e = (size_t)(gt - s) + 1;
			html_emit_text(h, s + text_start, i - text_start);
			if (s[i + 1] == '!' && e - i >= 9 && strncasecmp(s + i, "<!doctype", 9) == 0) {
				bool isnew;
				int *in = html_inside_slot(h, "!doctype", &isnew);

				h->elements++;
				h->tags++;
				h->seen_elements = h->seen_tags = true;
				if (in)
					*in = 0;
			} else if (s[i + 1] == '!' && e - i >= 9 && strncmp(s + i, "<![CDATA[", 9) == 0) {
				const char *ce = NULL;

				for (j = i + 9; j + 2 < n; j++)
					if (s[j] == ']' && s[j + 1] == ']' && s[j + 2] == '>') {
						ce = s + j;
						break;
					}
				if (ce) {
					html_emit_text(h, s + i + 9, (size_t)(ce - s) - i - 9);
					e = (size_t)(ce - s) + 3;
				}
			}
			i = e;
			text_start = i;
			continue;
		}
		j = i + 1;
		end = j < n && s[j] == '/';
		if (end)
			j++;
		if (j >= n || !isalpha((unsigned char)s[j])) {
			i++;
			continue;                  /* "<" not starting a tag is text */
		}
		ns = j;
		while (j < n && !isspace((unsigned char)s[j]) && s[j] != '>' && s[j] != '/')
			j++;
		ne = j;
		/* the end of the tag, quotes respected */
		{
			char q = 0;

			while (j < n && (q || s[j] != '>')) {
				if (q && s[j] == q)
					q = 0;
				else if (!q && !end && (s[j] == '"' || s[j] == '\'') && j > ne &&
				    (s[j - 1] == '=' || isspace((unsigned char)s[j - 1])))
					q = s[j];
				j++;
			}
			if (j >= n) {
				i++;
				continue;              /* no '>': text */
			}
		}
		html_emit_text(h, s + text_start, i - text_start);
		snprintf(tag, sizeof(tag), "%.*s", (int)(ne - ns), s + ns);
		for (char *p = tag; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (end) {
			html_tag(h, tag, NULL, 0, -1);
		} else {
			struct html_attr a[64];
			size_t na = html_parse_attrs(s + ne, j - ne, a, 64);

			html_tag(h, tag, a, na, 1);
			for (size_t k = 0; k < na; k++)
				free(a[k].value);
			if (strcmp(tag, "script") == 0 || strcmp(tag, "style") == 0 ||
			    strcmp(tag, "xmp") == 0 || strcmp(tag, "plaintext") == 0 ||
			    strcmp(tag, "textarea") == 0 || strcmp(tag, "title") == 0) {
				static const char *const lit[] = { "script", "style", "xmp", "plaintext",
					"textarea", "title", NULL };

				for (int k = 0; lit[k]; k++)
					if (strcmp(lit[k], tag) == 0)
						literal = lit[k];
			}
		}
		i = j + 1;
		text_start = i;
	}
	html_emit_text(h, s + text_start, n - text_start);
}

void html_analyze(const char *text, size_t len, struct html_result *r,
    void (*uri_cb)(const char *uri, size_t len, void *arg), void *arg)
{
	struct html_state h = { .r = r, .basefont = 3, .title_index = -1, .uri_cb = uri_cb,
		.uri_arg = arg };
	struct html_style def = { .tag = "default", .fg = "#000000", .bg = "#ffffff", .size = 3 };
	struct html_buf pre = { 0 };

	memset(r, 0, sizeof(*r));
	r->max_size = r->min_size = 3;
	r->length = (double)len;
	html_push_style(&h, &def);
	/* SA: &nbsp; becomes a space, <tag/> becomes <tag>, curly double quotes plain */
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '&' && i + 6 <= len && strncmp(text + i, "&nbsp;", 6) == 0) {
			html_put(&pre, " ", 1);
			i += 5;
			continue;
		}
		if ((unsigned char)text[i] == 0xe2 && i + 2 < len && (unsigned char)text[i + 1] == 0x80 &&
		    ((unsigned char)text[i + 2] == 0x9c || (unsigned char)text[i + 2] == 0x9d)) {
			html_put(&pre, "\"", 1);
			i += 2;
			continue;
		}
		if (text[i] == '<' && i + 1 < len && (isalnum((unsigned char)text[i + 1]) || text[i + 1] == '_')) {
			size_t j = i + 1, k;

			while (j < len && (isalnum((unsigned char)text[j]) || text[j] == '_'))
				j++;
			k = j;
			while (k < len && isspace((unsigned char)text[k]))
				k++;
			if (k + 1 < len && text[k] == '/' && text[k + 1] == '>') {
				html_put(&pre, text + i, j - i);
				html_put(&pre, ">", 1);
				i = k + 1;
				continue;
			}
		}
		html_put(&pre, text + i, 1);
	}
	html_run(&h, pre.p ? pre.p : "", pre.n);
	free(pre.p);
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
	free(h.st);
	r->rendered = h.text.p ? h.text.p : strdup("");
	r->rendered_len = h.text.n;
	r->html_length = (double)h.text.n;
	{
		size_t sp = 0;

		for (size_t i = 0; i < h.text.n; i++)
			if (h.text.p[i] == ' ' || h.text.p[i] == '\t' || h.text.p[i] == '\n' ||
			    h.text.p[i] == '\r' || h.text.p[i] == 0x0b)
				sp++;
		r->non_space_len = (double)(h.text.n - sp);
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
	free(r->charsets);
	free(r->rendered);
	memset(r, 0, sizeof(*r));
}
