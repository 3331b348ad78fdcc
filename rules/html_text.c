/* html_text.c — the text-level helpers of the HTML analysis (html.c): HTML::Parser's
 * entity decoding, and SpamAssassin's colour names and values (name_to_rgb, the CSS
 * background shorthand). */
#include "html_int.h"
#include "proxy/growbuf.h"

#include "charset.h"

#include <ctype.h>
#include <stdint.h>
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

/* HTML::Entities' table: name, character, whether the name needs its ';' (the Latin-1
 * ones and amp, lt, gt, quot do not). Sorted by name (strcmp). */
static const struct html_entity { const char *name; unsigned cp; bool semi; } html_entities[] = {
	{ "AElig", 0xc6, 0 }, { "Aacute", 0xc1, 0 }, { "Acirc", 0xc2, 0 }, { "Agrave", 0xc0, 0 },
	{ "Alpha", 0x391, 1 }, { "Aring", 0xc5, 0 }, { "Atilde", 0xc3, 0 }, { "Auml", 0xc4, 0 },
	{ "Beta", 0x392, 1 }, { "Ccedil", 0xc7, 0 }, { "Chi", 0x3a7, 1 }, { "Dagger", 0x2021, 1 },
	{ "Delta", 0x394, 1 }, { "ETH", 0xd0, 0 }, { "Eacute", 0xc9, 0 }, { "Ecirc", 0xca, 0 },
	{ "Egrave", 0xc8, 0 }, { "Epsilon", 0x395, 1 }, { "Eta", 0x397, 1 }, { "Euml", 0xcb, 0 },
	{ "Gamma", 0x393, 1 }, { "Iacute", 0xcd, 0 }, { "Icirc", 0xce, 0 }, { "Igrave", 0xcc, 0 },
	{ "Iota", 0x399, 1 }, { "Iuml", 0xcf, 0 }, { "Kappa", 0x39a, 1 }, { "Lambda", 0x39b, 1 },
	{ "Mu", 0x39c, 1 }, { "Ntilde", 0xd1, 0 }, { "Nu", 0x39d, 1 }, { "OElig", 0x152, 1 },
	{ "Oacute", 0xd3, 0 }, { "Ocirc", 0xd4, 0 }, { "Ograve", 0xd2, 0 }, { "Omega", 0x3a9, 1 },
	{ "Omicron", 0x39f, 1 }, { "Oslash", 0xd8, 0 }, { "Otilde", 0xd5, 0 },
	{ "Ouml", 0xd6, 0 }, { "Phi", 0x3a6, 1 }, { "Pi", 0x3a0, 1 }, { "Prime", 0x2033, 1 },
	{ "Psi", 0x3a8, 1 }, { "Rho", 0x3a1, 1 }, { "Scaron", 0x160, 1 }, { "Sigma", 0x3a3, 1 },
	{ "THORN", 0xde, 0 }, { "Tau", 0x3a4, 1 }, { "Theta", 0x398, 1 }, { "Uacute", 0xda, 0 },
	{ "Ucirc", 0xdb, 0 }, { "Ugrave", 0xd9, 0 }, { "Upsilon", 0x3a5, 1 }, { "Uuml", 0xdc, 0 },
	{ "Xi", 0x39e, 1 }, { "Yacute", 0xdd, 0 }, { "Yuml", 0x178, 1 }, { "Zeta", 0x396, 1 },
	{ "aacute", 0xe1, 0 }, { "acirc", 0xe2, 0 }, { "acute", 0xb4, 0 }, { "aelig", 0xe6, 0 },
	{ "agrave", 0xe0, 0 }, { "alefsym", 0x2135, 1 }, { "alpha", 0x3b1, 1 },
	{ "amp", 0x26, 0 }, { "and", 0x2227, 1 }, { "ang", 0x2220, 1 }, { "apos", 0x27, 0 },
	{ "aring", 0xe5, 0 }, { "asymp", 0x2248, 1 }, { "atilde", 0xe3, 0 }, { "auml", 0xe4, 0 },
	{ "bdquo", 0x201e, 1 }, { "beta", 0x3b2, 1 }, { "brvbar", 0xa6, 0 },
	{ "bull", 0x2022, 1 }, { "cap", 0x2229, 1 }, { "ccedil", 0xe7, 0 }, { "cedil", 0xb8, 0 },
	{ "cent", 0xa2, 0 }, { "chi", 0x3c7, 1 }, { "circ", 0x2c6, 1 }, { "clubs", 0x2663, 1 },
	{ "cong", 0x2245, 1 }, { "copy", 0xa9, 0 }, { "crarr", 0x21b5, 1 }, { "cup", 0x222a, 1 },
	{ "curren", 0xa4, 0 }, { "dArr", 0x21d3, 1 }, { "dagger", 0x2020, 1 },
	{ "darr", 0x2193, 1 }, { "deg", 0xb0, 0 }, { "delta", 0x3b4, 1 }, { "diams", 0x2666, 1 },
	{ "divide", 0xf7, 0 }, { "eacute", 0xe9, 0 }, { "ecirc", 0xea, 0 }, { "egrave", 0xe8, 0 },
	{ "empty", 0x2205, 1 }, { "emsp", 0x2003, 1 }, { "ensp", 0x2002, 1 },
	{ "epsilon", 0x3b5, 1 }, { "equiv", 0x2261, 1 }, { "eta", 0x3b7, 1 }, { "eth", 0xf0, 0 },
	{ "euml", 0xeb, 0 }, { "euro", 0x20ac, 1 }, { "exist", 0x2203, 1 }, { "fnof", 0x192, 1 },
	{ "forall", 0x2200, 1 }, { "frac12", 0xbd, 0 }, { "frac14", 0xbc, 0 },
	{ "frac34", 0xbe, 0 }, { "frasl", 0x2044, 1 }, { "gamma", 0x3b3, 1 }, { "ge", 0x2265, 1 },
	{ "gt", 0x3e, 0 }, { "hArr", 0x21d4, 1 }, { "harr", 0x2194, 1 }, { "hearts", 0x2665, 1 },
	{ "hellip", 0x2026, 1 }, { "iacute", 0xed, 0 }, { "icirc", 0xee, 0 },
	{ "iexcl", 0xa1, 0 }, { "igrave", 0xec, 0 }, { "image", 0x2111, 1 },
	{ "infin", 0x221e, 1 }, { "int", 0x222b, 1 }, { "iota", 0x3b9, 1 }, { "iquest", 0xbf, 0 },
	{ "isin", 0x2208, 1 }, { "iuml", 0xef, 0 }, { "kappa", 0x3ba, 1 }, { "lArr", 0x21d0, 1 },
	{ "lambda", 0x3bb, 1 }, { "lang", 0x2329, 1 }, { "laquo", 0xab, 0 },
	{ "larr", 0x2190, 1 }, { "lceil", 0x2308, 1 }, { "ldquo", 0x201c, 1 },
	{ "le", 0x2264, 1 }, { "lfloor", 0x230a, 1 }, { "lowast", 0x2217, 1 },
	{ "loz", 0x25ca, 1 }, { "lrm", 0x200e, 1 }, { "lsaquo", 0x2039, 1 },
	{ "lsquo", 0x2018, 1 }, { "lt", 0x3c, 0 }, { "macr", 0xaf, 0 }, { "mdash", 0x2014, 1 },
	{ "micro", 0xb5, 0 }, { "middot", 0xb7, 0 }, { "minus", 0x2212, 1 }, { "mu", 0x3bc, 1 },
	{ "nabla", 0x2207, 1 }, { "nbsp", 0xa0, 0 }, { "ndash", 0x2013, 1 }, { "ne", 0x2260, 1 },
	{ "ni", 0x220b, 1 }, { "not", 0xac, 0 }, { "notin", 0x2209, 1 }, { "nsub", 0x2284, 1 },
	{ "ntilde", 0xf1, 0 }, { "nu", 0x3bd, 1 }, { "oacute", 0xf3, 0 }, { "ocirc", 0xf4, 0 },
	{ "oelig", 0x153, 1 }, { "ograve", 0xf2, 0 }, { "oline", 0x203e, 1 },
	{ "omega", 0x3c9, 1 }, { "omicron", 0x3bf, 1 }, { "oplus", 0x2295, 1 },
	{ "or", 0x2228, 1 }, { "ordf", 0xaa, 0 }, { "ordm", 0xba, 0 }, { "oslash", 0xf8, 0 },
	{ "otilde", 0xf5, 0 }, { "otimes", 0x2297, 1 }, { "ouml", 0xf6, 0 }, { "para", 0xb6, 0 },
	{ "part", 0x2202, 1 }, { "permil", 0x2030, 1 }, { "perp", 0x22a5, 1 },
	{ "phi", 0x3c6, 1 }, { "pi", 0x3c0, 1 }, { "piv", 0x3d6, 1 }, { "plusmn", 0xb1, 0 },
	{ "pound", 0xa3, 0 }, { "prime", 0x2032, 1 }, { "prod", 0x220f, 1 },
	{ "prop", 0x221d, 1 }, { "psi", 0x3c8, 1 }, { "quot", 0x22, 0 }, { "rArr", 0x21d2, 1 },
	{ "radic", 0x221a, 1 }, { "rang", 0x232a, 1 }, { "raquo", 0xbb, 0 },
	{ "rarr", 0x2192, 1 }, { "rceil", 0x2309, 1 }, { "rdquo", 0x201d, 1 },
	{ "real", 0x211c, 1 }, { "reg", 0xae, 0 }, { "rfloor", 0x230b, 1 }, { "rho", 0x3c1, 1 },
	{ "rlm", 0x200f, 1 }, { "rsaquo", 0x203a, 1 }, { "rsquo", 0x2019, 1 },
	{ "sbquo", 0x201a, 1 }, { "scaron", 0x161, 1 }, { "sdot", 0x22c5, 1 },
	{ "sect", 0xa7, 0 }, { "shy", 0xad, 0 }, { "sigma", 0x3c3, 1 }, { "sigmaf", 0x3c2, 1 },
	{ "sim", 0x223c, 1 }, { "spades", 0x2660, 1 }, { "sub", 0x2282, 1 },
	{ "sube", 0x2286, 1 }, { "sum", 0x2211, 1 }, { "sup1", 0xb9, 0 }, { "sup2", 0xb2, 0 },
	{ "sup3", 0xb3, 0 }, { "sup", 0x2283, 1 }, { "supe", 0x2287, 1 }, { "szlig", 0xdf, 0 },
	{ "tau", 0x3c4, 1 }, { "there4", 0x2234, 1 }, { "theta", 0x3b8, 1 },
	{ "thetasym", 0x3d1, 1 }, { "thinsp", 0x2009, 1 }, { "thorn", 0xfe, 0 },
	{ "tilde", 0x2dc, 1 }, { "times", 0xd7, 0 }, { "trade", 0x2122, 1 },
	{ "uArr", 0x21d1, 1 }, { "uacute", 0xfa, 0 }, { "uarr", 0x2191, 1 }, { "ucirc", 0xfb, 0 },
	{ "ugrave", 0xf9, 0 }, { "uml", 0xa8, 0 }, { "upsih", 0x3d2, 1 }, { "upsilon", 0x3c5, 1 },
	{ "uuml", 0xfc, 0 }, { "weierp", 0x2118, 1 }, { "xi", 0x3be, 1 }, { "yacute", 0xfd, 0 },
	{ "yen", 0xa5, 0 }, { "yuml", 0xff, 0 }, { "zeta", 0x3b6, 1 }, { "zwj", 0x200d, 1 },
	{ "zwnj", 0x200c, 1 }
};

#define HTML_NENT (sizeof(html_entities) / sizeof(html_entities[0]))

static const struct html_entity *html_entity_find(const char *s, size_t n)
{
	size_t lo = 0, hi = HTML_NENT;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strncmp(s, html_entities[mid].name, n);

		if (c == 0 && html_entities[mid].name[n] != '\0')
			c = -1;
		if (c == 0)
			return &html_entities[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void html_put(struct html_buf *b, const char *s, size_t n)
{
	growbuf_append(&b->p, &b->n, &b->cap, 256, s, n);
}

void html_put_utf8(struct html_buf *b, unsigned long cp)
{
	char u[4];

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	html_put(b, u, charset_utf8_encode((uint32_t)cp, u));
}

/* Decodes entities of s[0..n) into out, as HTML::Parser's decode_entities: &name; for any
 * entity, &name without ';' (or the longest such prefix of a longer word) for those that
 * allow it, &#N / &#xN with or without ';' for 1..U+10FFFF (surrogates as U+FFFD). In
 * attribute values (attr) a name without ';' must be the whole word ("&sectionid" stays). */
void html_decode(const char *s, size_t n, struct html_buf *out, bool attr)
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
			unsigned long long cp = 0;
			bool hex = k + 1 < n && (s[k + 1] == 'x' || s[k + 1] == 'X');
			size_t d = k + (hex ? 2 : 1), e = d;

			while (e < n && (hex ? isxdigit((unsigned char)s[e]) : isdigit((unsigned char)s[e]))) {
				int c = (unsigned char)s[e];

				if (cp <= 0x10ffff)
					cp = cp * (hex ? 16 : 10) + (unsigned)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
				e++;
			}
			if (e > d && cp >= 1 && cp <= 0x10ffff) {
				html_put_utf8(out, (unsigned long)cp);
				i = e < n && s[e] == ';' ? e + 1 : e;
				continue;
			}
		} else {
			size_t e = k;
			const struct html_entity *ent;

			while (e < n && isalnum((unsigned char)s[e]))
				e++;
			ent = e > k ? html_entity_find(s + k, e - k) : NULL;
			if (ent && (e < n && s[e] == ';')) {
				html_put_utf8(out, ent->cp);
				i = e + 1;
				continue;
			}
			/* no ';' after the word: the longest prefix that needs none (in an attribute
			 * value only the whole word) */
			for (size_t l = e - k; l > (attr ? e - k - 1 : 0); l--) {
				ent = html_entity_find(s + k, l);
				if (ent && !ent->semi) {
					html_put_utf8(out, ent->cp);
					i = k + l;
					break;
				}
				ent = NULL;
			}
			if (ent)
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
