/* charset.c — SpamAssassin's charset normalization and header decoding; see charset.h.
 * Charset names are resolved as Perl's Encode::Alias resolves them (the rules that matter
 * for mail), to the encodings Encode ships, and decoded with iconv. */
#include "charset.h"
#include "proxy/growbuf.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cbuf { char *p; size_t n, cap; };

static void cb_put(struct cbuf *b, const char *s, size_t n)
{
	growbuf_append(&b->p, &b->n, &b->cap, 64, s, n);
}

size_t charset_utf8_encode(uint32_t cp, char u[4])
{
	if (cp < 0x80) {
		u[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	u[0] = (char)(0xf0 | (cp >> 18));
	u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	u[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static void cb_cp(struct cbuf *b, uint32_t cp)
{
	char u[4];

	cb_put(b, u, charset_utf8_encode(cp, u));
}

/* One UTF-8 character at s: its length (0: malformed, overlong, surrogate, over U+10FFFF)
 * and code point. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t len;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool charset_has_wide(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0xc4 && (unsigned char)s[i] < 0xf5)
			return true;
	return false;
}

char *charset_to_latin1(const char *s, size_t n, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	struct cbuf out = { 0 };

	cb_put(&out, "", 0);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = utf8_char(p + i, n - i, &cp);
		char ch;

		if (l > 1 && cp <= 0xff) {
			ch = (char)cp;
			cb_put(&out, &ch, 1);
			i += l;
		} else {
			cb_put(&out, s + i, l ? l : 1);
			i += l ? l : 1;
		}
	}
	*outlen = out.n;
	return out.p;
}

size_t charset_to_latin1_inplace(char *s, size_t n)
{
	unsigned char *p = (unsigned char *)s;
	size_t o = 0;

	/* what charset_to_latin1 writes, over the text it reads: every character is written
	 * in at most the octets it was read from, so o never passes i */
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = utf8_char(p + i, n - i, &cp);

		if (l > 1 && cp <= 0xff) {
			p[o++] = (unsigned char)cp;
			i += l;
		} else {
			for (size_t k = l ? l : 1; k > 0; k--)
				p[o++] = p[i++];
		}
	}
	return o;
}

bool charset_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = utf8_char(p + i, n - i, &cp);

		/* Encode's strict UTF-8 refuses noncharacters too */
		if (l == 0 || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
			return false;
		i += l;
	}
	return true;
}

size_t charset_space_len(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t l;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return (p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r')) ? 1 : 0;
	l = utf8_char(p, n, &cp);
	if (l && (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
	    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000))
		return l;
	return 0;
}

size_t charset_utf8_chars(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t k = 0;

	for (size_t i = 0; i < n; k++) {
		uint32_t cp;
		size_t l = utf8_char(p + i, n - i, &cp);

		i += l ? l : 1;
	}
	return k;
}

size_t charset_utf8_offset(const char *s, size_t n, size_t k)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n && k--) {
		uint32_t cp;
		size_t l = utf8_char(p + i, n - i, &cp);

		i += l ? l : 1;
	}
	return i < n ? i : n;
}

/* ---------------------------------------------------------------- names */

/* Encode's Windows-1252 table for 0x80..0x9F (0: not defined). */
static const uint16_t cp1252_hi[32] = {
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
	0x2039, 0x0152, 0, 0x017d, 0, 0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013,
	0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178
};

/* Windows-1252 decoding: strict (undefined bytes fail) or with U+FFFD for them. */
static bool cp1252_decode(const unsigned char *s, size_t n, bool strict, struct cbuf *out)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t cp = s[i];

		if (cp >= 0x80 && cp < 0xa0) {
			cp = cp1252_hi[cp - 0x80];
			if (cp == 0) {
				if (strict)
					return false;
				cp = 0xfffd;
			}
		}
		cb_cp(out, cp);
	}
	return true;
}

static bool lcmatch_num(const char *s, const char *prefix, const char **rest)
{
	size_t l = strlen(prefix);

	if (strncmp(s, prefix, l) != 0)
		return false;
	*rest = s + l;
	return true;
}

static bool all_digits(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	return n >= min && n <= max && strspn(s, "0123456789") == n;
}

/* The iconv name of the Encode encoding a declared charset name resolves to; NULL when
 * Perl's Encode does not know it. out is a buffer of 32 bytes. */
static const char *charset_iconv_name(const char *declared, char out[32])
{
	char n[64], *p;
	const char *r;
	size_t l = strlen(declared);

	if (l == 0 || l >= sizeof(n))
		return NULL;
	for (size_t i = 0; i <= l; i++)
		n[i] = (char)tolower((unsigned char)declared[i]);
	/* ^([^\s_]+)[\s_]+([^\s_]*)$ -> $1-$2 */
	p = strpbrk(n, " \t_");
	if (p && p > n) {
		char *q = p;

		while (*q == ' ' || *q == '\t' || *q == '_')
			q++;
		if (!strpbrk(q, " \t_")) {
			memmove(p + 1, q, strlen(q) + 1);
			*p = '-';
		}
	}
	if (strcmp(n, "utf-8") == 0 || strcmp(n, "utf8") == 0 || strcmp(n, "utf-8-strict") == 0 ||
	    strcmp(n, "cp65001") == 0)
		return "UTF-8";
	if (strcmp(n, "utf-7") == 0 || strcmp(n, "utf7") == 0 || strcmp(n, "cp65000") == 0)
		return "UTF-7";
	if (strcmp(n, "utf-16") == 0 || strcmp(n, "utf16") == 0)
		return "UTF-16";
	if (strcmp(n, "utf-16be") == 0 || strcmp(n, "utf-16-be") == 0 || strcmp(n, "utf16be") == 0)
		return "UTF-16BE";
	if (strcmp(n, "utf-16le") == 0 || strcmp(n, "utf-16-le") == 0 || strcmp(n, "utf16le") == 0)
		return "UTF-16LE";
	if (strcmp(n, "utf-32") == 0 || strcmp(n, "utf32") == 0)
		return "UTF-32";
	if (strcmp(n, "ascii") == 0 || strcmp(n, "us-ascii") == 0 || strcmp(n, "usascii") == 0 ||
	    strcmp(n, "c") == 0 || strcmp(n, "ansi-x3.4-1968") == 0 || strcmp(n, "ansi_x3.4-1968") == 0 ||
	    strcmp(n, "646") == 0 || strcmp(n, "iso646-us") == 0 || strcmp(n, "iso-646-us") == 0 ||
	    strcmp(n, "iso646") == 0)
		return "ASCII";
	/* ISO-8859-N, iso8859N, iso_8859-N, latinN */
	if (lcmatch_num(n, "iso-8859-", &r) || lcmatch_num(n, "iso8859-", &r) ||
	    lcmatch_num(n, "iso_8859-", &r) || lcmatch_num(n, "8859-", &r) ||
	    lcmatch_num(n, "iso8859", &r)) {
		int v = all_digits(r, 1, 2) ? atoi(r) : 0;

		if ((v >= 1 && v <= 11) || (v >= 13 && v <= 16)) {
			snprintf(out, 32, "ISO-8859-%d", v);
			return out;
		}
		return NULL;
	}
	if (lcmatch_num(n, "latin", &r) || lcmatch_num(n, "iso-latin-", &r) ||
	    lcmatch_num(n, "latin-", &r)) {
		static const int l2i[] = { 0, 1, 2, 3, 4, 9, 10, 13, 14, 15, 16 };
		int v = all_digits(r, 1, 2) ? atoi(r) : 0;

		if (v >= 1 && v <= 10) {
			snprintf(out, 32, "ISO-8859-%d", l2i[v]);
			return out;
		}
		return NULL;
	}
	if (strcmp(n, "tis-620") == 0 || strcmp(n, "tis620") == 0 || strcmp(n, "thai") == 0)
		return "ISO-8859-11";
	if (strcmp(n, "cyrillic") == 0)
		return "ISO-8859-5";
	if (strcmp(n, "greek") == 0)
		return "ISO-8859-7";
	if (strcmp(n, "hebrew") == 0)
		return "ISO-8859-8";
	if (strcmp(n, "arabic") == 0)
		return "ISO-8859-6";
	/* (cp|ibm|ms|windows)[-_ ]?NNNN */
	{
		static const char *const pre[] = { "windows-", "windows", "cp-", "cp", "ibm-", "ibm",
			"ms-", "ms", "x-windows-", NULL };

		for (int i = 0; pre[i]; i++)
			if (lcmatch_num(n, pre[i], &r) && all_digits(r, 2, 4)) {
				static const int known[] = { 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257,
					1258, 874, 932, 936, 949, 950, 437, 737, 775, 850, 852, 855, 857, 858,
					860, 861, 862, 863, 864, 865, 866, 869, 0 };
				int v = atoi(r);

				for (int k = 0; known[k]; k++)
					if (known[k] == v) {
						snprintf(out, 32, "CP%d", v);
						return out;
					}
				return NULL;
			}
	}
	if (strncmp(n, "koi8", 4) == 0) {
		const char *q = n + 4;

		while (*q == '-' || *q == '_' || *q == ' ')
			q++;
		if (strcmp(q, "r") == 0)
			return "KOI8-R";
		if (strcmp(q, "u") == 0)
			return "KOI8-U";
		return NULL;
	}
	if (strcmp(n, "gbk") == 0 || strcmp(n, "cp936") == 0)
		return "CP936";
	if (strstr(n, "gb2312") || strstr(n, "gb-2312") || (strstr(n, "euc") && strstr(n, "cn")))
		return "EUC-CN";
	if ((strstr(n, "euc") && strstr(n, "jp")) || strcmp(n, "ujis") == 0)
		return "EUC-JP";
	if ((strncmp(n, "shift", 5) == 0 && strlen(n) >= 3 && strcmp(n + strlen(n) - 3, "jis") == 0) ||
	    strcmp(n, "sjis") == 0 || strcmp(n, "x-sjis") == 0)
		return "SHIFT_JIS";
	if (strcmp(n, "windows-31j") == 0)
		return "CP932";
	if (strcmp(n, "iso-2022-jp") == 0)
		return "ISO-2022-JP";
	if (strcmp(n, "iso-2022-jp-1") == 0)
		return "ISO-2022-JP-1";
	if (strcmp(n, "iso-2022-kr") == 0)
		return "ISO-2022-KR";
	if (strstr(n, "euc") && strstr(n, "kr"))
		return "EUC-KR";
	if (strcmp(n, "ks_c_5601-1987") == 0 || strcmp(n, "ks-c-5601-1987") == 0 ||
	    strcmp(n, "uhc") == 0 || strcmp(n, "x-uhc") == 0 || strcmp(n, "windows-949") == 0)
		return "CP949";
	if (strcmp(n, "big5") == 0 || strcmp(n, "big-5") == 0 || strcmp(n, "big5-eten") == 0 ||
	    strcmp(n, "big5eten") == 0 || strcmp(n, "big5-et") == 0 || strcmp(n, "tca-big5") == 0)
		return "BIG5";
	if (strcmp(n, "big5-hkscs") == 0 || strcmp(n, "big5hkscs") == 0 || strcmp(n, "big5-hk") == 0 ||
	    strcmp(n, "hkscs-big5") == 0)
		return "BIG5-HKSCS";
	if (strcmp(n, "johab") == 0)
		return "JOHAB";
	if (strcmp(n, "macintosh") == 0 || strcmp(n, "macroman") == 0 || strcmp(n, "mac-roman") == 0 ||
	    strcmp(n, "x-mac-roman") == 0)
		return "MACINTOSH";
	if (strcmp(n, "viscii") == 0)
		return "VISCII";
	return NULL;
}

/* ---------------------------------------------------------------- decoding */

/* The converters of the last 8 names iconv knew, and the last 16 names it did not: an
 * encoded word naming an unknown charset (a message may repeat one a thousand times, fuzz
 * inputs are full of them) costs an iconv_open once, not once a word. Per thread. */
#define CONV_NAME_MAX 64                /* longer: no charset iconv knows, not asked */
struct conv_slot { char name[CONV_NAME_MAX]; iconv_t cd; };
static __thread struct conv_slot conv_cache[8];
static __thread unsigned conv_next;
/* Names iconv refused with EINVAL, each answered from here CONV_UNKNOWN_USES times before
 * iconv is asked again: glibc says EINVAL too when a charset's module fails to load for a
 * passing reason (no descriptor, no memory: a connection flood), and a name kept for ever
 * would decode a known charset as Windows-1252 for the life of the thread. */
#define CONV_UNKNOWN_USES 1024u
struct conv_unknown_slot { char name[CONV_NAME_MAX]; unsigned uses; };
static __thread struct conv_unknown_slot conv_unknown[16];
static __thread unsigned conv_unknown_next;

/* The thread's converters are closed when it exits (a rules thread stopped by a reload, or a
 * pool shrinking): before, each exit left up to 8 open, their buffers lost. */
static pthread_key_t conv_key;
static bool conv_key_ok;
static pthread_once_t conv_key_once = PTHREAD_ONCE_INIT;

static void conv_close_all(void *cache)
{
	struct conv_slot *c = cache;

	for (int i = 0; i < 8; i++)
		if (c[i].name[0]) {
			iconv_close(c[i].cd);
			c[i].name[0] = '\0';
		}
}

static void conv_key_make(void)
{
	conv_key_ok = pthread_key_create(&conv_key, conv_close_all) == 0;
}

/* A converter from name to UTF-8 in its initial state, borrowed until this thread's next
 * call; (iconv_t)-1 when iconv does not know name. */
static iconv_t conv_get(const char *name)
{
	struct conv_slot *s;
	size_t nl = strlen(name);
	iconv_t cd;

	if (nl >= CONV_NAME_MAX)
		return (iconv_t)-1;
	for (int i = 0; i < 8; i++)
		if (conv_cache[i].name[0] && strcmp(conv_cache[i].name, name) == 0) {
			iconv(conv_cache[i].cd, NULL, NULL, NULL, NULL);
			return conv_cache[i].cd;
		}
	for (int i = 0; i < 16; i++) {
		struct conv_unknown_slot *u = &conv_unknown[i];

		if (u->name[0] && strcmp(u->name, name) == 0) {
			if (++u->uses < CONV_UNKNOWN_USES)
				return (iconv_t)-1;
			u->name[0] = '\0';     /* ask iconv again */
			break;
		}
	}
	cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1) {
		if (errno == EINVAL) {  /* unknown (or a module that failed to load: see above) */
			struct conv_unknown_slot *u = &conv_unknown[conv_unknown_next++ % 16];

			memcpy(u->name, name, nl + 1);
			u->uses = 0;
		}
		return cd;
	}
	if (conv_next == 0) {           /* the thread's first converter: closed at its exit */
		pthread_once(&conv_key_once, conv_key_make);
		if (conv_key_ok)
			pthread_setspecific(conv_key, conv_cache);
	}
	s = &conv_cache[conv_next++ % 8];
	if (s->name[0])
		iconv_close(s->cd);
	s->cd = cd;
	memcpy(s->name, name, nl + 1);
	return cd;
}

/* Decodes with iconv: strict (any invalid or incomplete sequence fails) or lenient
 * (U+FFFD for each bad byte). */
static bool conv_decode(const char *name, const char *s, size_t n, bool strict, struct cbuf *out)
{
	iconv_t cd = conv_get(name);
	char *in = (char *)s;
	size_t left = n;

	if (cd == (iconv_t)-1)
		return false;
	while (left) {
		char buf[4096], *o = buf;
		size_t ol = sizeof(buf);
		size_t rc = iconv(cd, &in, &left, &o, &ol);

		cb_put(out, buf, sizeof(buf) - ol);
		if (rc != (size_t)-1)
			continue;
		if (errno == E2BIG)
			continue;
		if (strict)
			return false;
		cb_cp(out, 0xfffd);     /* EILSEQ, EINVAL: skip a byte */
		in++;
		left--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	{
		char buf[64], *o = buf;
		size_t ol = sizeof(buf);

		iconv(cd, NULL, NULL, &o, &ol);
		cb_put(out, buf, sizeof(buf) - ol);
	}
	return true;
}

static bool name_is(const char *d, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (strcasecmp(d, names[i]) == 0)
			return true;
	return false;
}

/* The declared names _normalize trusts for all-ASCII text. */
static bool declared_ascii_family(const char *d, bool extended)
{
	static const char *const ascii[] = { "us-ascii", "ascii", "ansi_x3.4-1986", "ansi x3.4-1986",
		"ansix3.4-1986", "ansi_x3.4-1968", "ansi x3.4-1968", "ansix3.4-1968", "iso646-us", NULL };
	const char *p;
	size_t l;

	if (name_is(d, ascii))
		return true;
	if (!extended)
		return false;
	/* ISO[ -]?8859(-\d{1,2})? | Windows-\d{4} | UTF-?8 | (KOI8|EUC)-[A-Z]{1,2} | Big5 | GBK |
	 * GB[ -]?18030(-20\d\d)? */
	if (strncasecmp(d, "iso", 3) == 0) {
		p = d + 3;
		if (*p == ' ' || *p == '-')
			p++;
		if (strncmp(p, "8859", 4) == 0) {
			p += 4;
			if (*p == '\0')
				return true;
			if (*p == '-' && all_digits(p + 1, 1, 2))
				return true;
		}
		return false;
	}
	if (strncasecmp(d, "windows-", 8) == 0)
		return all_digits(d + 8, 4, 4);
	if (strcasecmp(d, "utf-8") == 0 || strcasecmp(d, "utf8") == 0 || strcasecmp(d, "big5") == 0 ||
	    strcasecmp(d, "gbk") == 0)
		return true;
	if (strncasecmp(d, "koi8-", 5) == 0 || strncasecmp(d, "euc-", 4) == 0) {
		p = d + (d[0] == 'k' || d[0] == 'K' ? 5 : 4);
		l = strlen(p);
		if (l < 1 || l > 2)
			return false;
		for (size_t i = 0; i < l; i++)
			if (!isalpha((unsigned char)p[i]))
				return false;
		return true;
	}
	if (strncasecmp(d, "gb", 2) == 0) {
		p = d + 2;
		if (*p == ' ' || *p == '-')
			p++;
		if (strncmp(p, "18030", 5) != 0)
			return false;
		p += 5;
		return *p == '\0' || (p[0] == '-' && p[1] == '2' && p[2] == '0' && all_digits(p + 3, 2, 2));
	}
	return false;
}

/* _normalize; see charset.h. The input itself when the result is its octets: ASCII in an
 * ASCII family charset, valid UTF-8, or ASCII nothing decoded. */
const char *charset_normalize_view(const char *s, size_t n, const char *declared, bool insist,
    size_t *outlen, bool *decoded, char **owned)
{
	const unsigned char *u = (const unsigned char *)s;
	struct cbuf out = { 0 };
	size_t high = 0;
	bool ok = false, tried_utf8 = false, dummy;

	if (decoded == NULL)
		decoded = &dummy;
	*decoded = true;
	*owned = NULL;
	*outlen = n;

	if (declared == NULL || declared[0] == '\0')
		declared = "us-ascii";
	for (size_t i = 0; i < n; i++)
		high += u[i] >= 0x80;
	if (!high && declared_ascii_family(declared, true)) {
		*decoded = false;
		return s;
	}
	if (high && !insist) {
		if (charset_utf8_valid(s, n))
			return s;
		tried_utf8 = true;
	}
	cb_put(&out, "", 0);
	if (strcasecmp(declared, "us-ascii") == 0 || strcasecmp(declared, "ascii") == 0) {
		if (insist)
			ok = conv_decode("ASCII", s, n, false, &out);
	} else if (strncasecmp(declared, "utf-16", 6) == 0 || strncasecmp(declared, "utf16", 5) == 0 ||
	    strncasecmp(declared, "utf 16", 6) == 0) {
		ok = conv_decode(declared, s, n, !insist, &out);
	} else {
		static const char *const latin1[] = { "iso-8859-1", "iso8859-1", "windows-1252",
			"cp1252", NULL };
		char nb[32];
		const char *name;

		if (name_is(declared, latin1)) {
			ok = cp1252_decode(u, n, !insist, &out);
		} else if ((strcasecmp(declared, "utf-8") == 0 || strcasecmp(declared, "utf8") == 0)) {
			if (!tried_utf8) {
				if (!insist && charset_utf8_valid(s, n)) {
					free(out.p);
					return s;
				}
				ok = insist && conv_decode("UTF-8", s, n, false, &out);
			}
		} else if ((name = charset_iconv_name(declared, nb)) != NULL) {
			ok = conv_decode(name, s, n, !insist, &out);
		}
		if (!ok)
			out.n = 0;
	}
	if (!ok && !high) {
		free(out.p);
		*decoded = false;
		return s;
	} else if (!ok) {
		/* ASCII with NBSP, SHY, some Windows-1252 punctuation and Latin-1 letters */
		/* SA first tries Windows-1252 when the text is ASCII plus NBSP, SHY, some of its
		 * punctuation and Latin-1 letters (which cannot fail), then (no Encode::Detect)
		 * Windows-1252 as the last resort, undefined bytes as U+FFFD: the same result */
		out.n = 0;
		cp1252_decode(u, n, false, &out);
	}
	out.p[out.n] = '\0';
	*outlen = out.n;
	*owned = out.p;
	return out.p;
}

char *charset_normalize(const char *s, size_t n, const char *declared, bool insist,
    size_t *outlen, bool *decoded)
{
	char *own, *c;
	const char *t = charset_normalize_view(s, n, declared, insist, outlen, decoded, &own);

	if (own)
		return own;
	c = malloc(*outlen + 1);
	if (c == NULL)
		abort();
	memcpy(c, t, *outlen);
	c[*outlen] = '\0';
	return c;
}

/* ---------------------------------------------------------------- headers */

/* Util::base64_decode / qp_decode for an encoded word (samsg.c has the body versions). */
static void word_decode(char enc, const char *s, size_t n, struct cbuf *out)
{
	if (enc == 'b' || enc == 'B') {
		static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		unsigned char *v = malloc(n + 1);
		size_t k = 0, end;
		bool clean = true;
		uint32_t acc = 0;
		int bits = 0;

		if (v == NULL)
			abort();
		for (size_t i = 0; i < n; i++) {
			const char *q;

			if (isspace((unsigned char)s[i]))
				continue;
			if (s[i] == '=') {
				v[k++] = 64;
				continue;
			}
			q = s[i] ? strchr(al, s[i]) : NULL;
			if (q == NULL) {
				clean = false;
				continue;
			}
			v[k++] = (unsigned char)(q - al);
		}
		clean = clean && k % 4 == 0 && k >= 2;
		end = k;
		while (end && v[end - 1] == 64)
			end--;
		for (size_t i = 0; i < end; i++) {
			acc = (acc << 6) | (v[i] == 64 ? (clean ? 0u : 63u) : v[i]);
			bits += 6;
			if (bits >= 8) {
				char ch;

				bits -= 8;
				ch = (char)((acc >> bits) & 0xff);
				cb_put(out, &ch, 1);
			}
		}
		free(v);
		return;
	}
	/* Q: '_' is a space (=20), then qp_decode (no line breaks in a header) */
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_') {
			cb_put(out, " ", 1);
		} else if (s[i] == '=' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			char hx[3] = { s[i + 1], s[i + 2], 0 }, ch = (char)strtol(hx, NULL, 16);

			cb_put(out, &ch, 1);
			i += 2;
		} else {
			cb_put(out, s + i, 1);
		}
	}
}

/* An encoded word at s: =?charset?[bq]?text?= ; its length, 0 when there is none. */
static size_t encoded_word(const char *s, const char **cs, size_t *csl, char *enc,
    const char **txt, size_t *txtl)
{
	const char *p = s + 2, *q;

	if (s[0] != '=' || s[1] != '?')
		return 0;
	q = p;
	while (isalnum((unsigned char)*q) || *q == '*' || *q == '_' || *q == '-')
		q++;
	if (q == p || q[0] != '?' || !strchr("bBqQ", q[1]) || q[1] == '\0' || q[2] != '?')
		return 0;
	*cs = p;
	*csl = (size_t)(q - p);
	*enc = q[1];
	p = q + 3;
	q = strchr(p, '?');
	if (q == NULL || q[1] != '=')
		return 0;
	*txt = p;
	*txtl = (size_t)(q - p);
	return (size_t)(q + 2 - s);
}

char *charset_decode_header(const char *value, const char *name)
{
	struct cbuf b = { 0 }, res = { 0 };
	char *body;
	size_t bl, n;
	bool high = false;

	if (value == NULL || value[0] == '\0')
		return strdup("");
	/* s/\n[ \t]/\n /g; s/\r?\n//g */
	for (const char *p = value; *p; p++) {
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n')
			continue;
		cb_put(&b, p, 1);
		high = high || (unsigned char)*p >= 0x80;
	}
	cb_put(&b, "", 0);
	body = b.p;
	bl = b.n;
	if (high) {
		char *u;

		charset_normalize_view(body, bl, "UTF-8", false, &n, NULL, &u);
		if (u) {
			free(body);
			body = u;
			bl = n;
		}
	}
	{
		static const char *const raw[] = { "received", "message-id", "resent-message-id", "date",
			"resent-date", "mime-version", "references", "in-reply-to", NULL };

		if (name_is(name, raw) || strncasecmp(name, "list-", 5) == 0 || !strstr(body, "=?"))
			return body;
	}
	/* sections: encoded words (white space between two of them dropped) and the rest;
	 * neighbours of the same charset merged before transcoding */
	{
		struct sect { struct cbuf s; char cs[64]; } *v = NULL;
		size_t nv = 0, vcap = 0;
		const char *p = body;

		while (*p) {
			const char *cs, *txt;
			char enc = 0, csn[64] = "";
			size_t csl, txtl, wl = encoded_word(p, &cs, &csl, &enc, &txt, &txtl);
			struct cbuf piece = { 0 };

			if (wl) {
				snprintf(csn, sizeof(csn), "%.*s", (int)csl, cs);
				for (char *c = csn; *c; c++)
					*c = (char)tolower((unsigned char)*c);
				word_decode(enc, txt, txtl, &piece);
				p += wl;
				/* white space up to the next encoded word is dropped */
				{
					const char *q = p, *c2, *t2;
					size_t l1, l2;
					char e2;

					while (*q == ' ' || *q == '\t')
						q++;
					if (q > p && encoded_word(q, &c2, &l1, &e2, &t2, &l2))
						p = q;
				}
			} else {
				size_t l = *p == '=' ? 1 : strcspn(p, "=");

				cb_put(&piece, p, l);
				p += l;
			}
			if (nv && strcmp(v[nv - 1].cs, csn) == 0) {
				cb_put(&v[nv - 1].s, piece.p ? piece.p : "", piece.n);
				free(piece.p);
			} else {
				if (nv == vcap) {   /* doubling: a header of 20,000 pieces, few reallocs */
					vcap = vcap ? vcap * 2 : 16;
					v = realloc(v, vcap * sizeof(*v));
					if (v == NULL)
						abort();
				}
				v[nv].s = piece;
				snprintf(v[nv].cs, sizeof(v[nv].cs), "%s", csn);
				nv++;
			}
		}
		cb_put(&res, "", 0);
		for (size_t i = 0; i < nv; i++) {
			const char *s = v[i].s.p ? v[i].s.p : "";

			if (v[i].cs[0] == '\0') {
				cb_put(&res, s, v[i].s.n);
			} else {
				char *star = strchr(v[i].cs, '*'), *own;
				const char *t;
				size_t tl;

				if (star)
					*star = '\0';
				t = charset_normalize_view(s, v[i].s.n, v[i].cs, true, &tl, NULL, &own);
				cb_put(&res, t, tl);
				free(own);
			}
			free(v[i].s.p);
		}
		free(v);
	}
	free(body);
	return res.p;
}
