/* html_text.c — the text-level helpers of the HTML analysis (html.c): HTML::Parser's
 * entity decoding, and SpamAssassin's colour names and values (name_to_rgb, the CSS
 * background shorthand). */
#include "html_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void html_put(struct html_buf *b, const char *s, size_t n)
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

void html_put_utf8(struct html_buf *b, unsigned long cp)
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
void html_decode(const char *s, size_t n, struct html_buf *out)
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

/* ---------------------------------------------------------------- colours */

bool html_name_to_rgb(const char *in, char out[16])
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

/* SA's parse_css_background: the last layer's tokens; the first valid colour wins. */
bool html_css_background(const char *v, char out[16])
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
