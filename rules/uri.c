/* uri.c — SpamAssassin's URI finding and cleaning; see uri.h. Perl sources followed:
 * PerMsgStatus.pm (_tbirdurire, _process_text_uri_list, add_uri_detail_list), Util.pm
 * (uri_list_canonicalize, url_encode, decode_ulong_to_ip, is_fqdn_valid),
 * RegistryBoundaries.pm (uri_to_domain, is_domain_valid) of 4.0.1, without an IDN library
 * (host names are only lower-cased, as SA does then). The per-message list, the text
 * finder and HTML link targets are in uri_find.c. */
#include "uri_int.h"
#include "proxy/growbuf.h"

#include "match.h"
#include "rule_parse.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_MAX_CANON 64             /* URIs one canonicalization may queue */

/* ---------------------------------------------------------------- lists, buffers */

bool uri_list_has(const struct uri_list *l, const char *s, size_t n)
{
	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->v[i], s, n) == 0 && l->v[i][n] == '\0')
			return true;
	return false;
}

void uri_list_push(struct uri_list *l, const char *s, size_t n)
{
	char *d;

	if (l->n >= (l->max ? l->max : 4096) || uri_list_has(l, s, n))
		return;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		char **v = realloc(l->v, nc * sizeof(char *));

		if (v == NULL)
			abort();
		l->v = v;
		l->cap = nc;
	}
	d = malloc(n + 1);
	if (d == NULL)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	l->v[l->n++] = d;
}

void uri_list_free(struct uri_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void uri_list_add(struct uri_list *l, const char *s)
{
	uri_list_push(l, s, strlen(s));
}

void uri_buf_put(struct uri_buf *b, const char *s, size_t n)
{
	growbuf_append(&b->p, &b->n, &b->cap, 64, s, n);
}

void uri_buf_str(struct uri_buf *b, const char *s)
{
	uri_buf_put(b, s, strlen(s));
}

char *uri_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *uri_strcat3(const char *a, const char *b, const char *c)
{
	struct uri_buf u = { 0 };

	uri_buf_str(&u, a);
	uri_buf_str(&u, b);
	uri_buf_str(&u, c);
	return u.p;
}

bool uri_is_word(unsigned char c)
{
	return isalnum(c) || c == '_';
}

/* ---------------------------------------------------------------- configuration */

static int uri_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The character classes of _tbirdurire. */
#define U_START   "><\"'`,{\\[(|\\s\\x1b\\xa0"
#define U_END     "><\"`}\\]{\\[|\\s\\x1b\\xa0"
#define U_EMAIL   U_END ",('\\x80-\\xff"
#define U_PLUSAT  U_EMAIL "@"
#define U_SCSTART "!\"#$&'()*+,/:;<=>?@\\[\\\\\\]^`{|}~\\s\\x1b\\xa0"

static struct match_re *uri_tbird_compile(struct uri_conf *uc)
{
	struct uri_buf t = { 0 }, re = { 0 };
	struct match_re *r = NULL;
	char err[256];

	if (uc->ntld == 0) {
		uri_buf_str(&t, "no_tlds_defined");
	} else {
		uri_buf_str(&t, "(?<![a-zA-Z0-9-])(?:");
		for (size_t i = 0; i < uc->ntld; i++) {
			if (i)
				uri_buf_put(&t, "|", 1);
			for (const char *p = uc->tld[i]; *p; p++) {
				if (!isalnum((unsigned char)*p))
					uri_buf_put(&t, "\\", 1);
				uri_buf_put(&t, p, 1);
			}
		}
		uri_buf_str(&t, ")(?!(?:[a-zA-Z0-9-]|\\.[a-zA-Z0-9]))");
	}
	uri_buf_str(&re, "(?:\\b|(?<=\\x1b\\(.)|(?<=[" U_START "]))(?:"
	    "(?:((?:(?:https?|ftp)://|(?:www\\d{0,2}|ftp)\\.)[^" U_END "]{1,2048})"
	    "(?=(?:[" U_END "]|\\z)))|"
	    "(?:((?:mailto:[^" U_EMAIL "]{1,2048}|[^" U_PLUSAT "]{1,251}@[^" U_EMAIL "]{1,251}))"
	    "(?=(?:[" U_EMAIL "]|\\z)))|"
	    "(?:(?:^|(?<=[" U_SCSTART "]))(([a-z\\d][a-z\\d._-]{0,251}\\.");
	uri_buf_put(&re, t.p, t.n);
	uri_buf_str(&re, ")\\.?(?::\\d{1,5})?(?:/[^" U_END "]{1,2048})?)(?=(?:[" U_END "]|\\z))))");
	if (match_re_compile(re.p, RULE_RE_I, &r, err, sizeof(err)) < 0)
		r = NULL;
	/* FreeMail's email_regex, and its "<address>" / "address wrote:" strip pattern */
	{
		struct uri_buf e = { 0 }, st = { 0 };

		uri_buf_str(&e, "(?=.{0,64}\\@)(?<![a-z0-9!#\\$%&'*+\\/=?^_`{|}~-])"
		    "([a-z0-9!#\\$%&'*+\\/=?^_`{|}~-]+(?:\\.[a-z0-9!#\\$%&'*+\\/=?^_`{|}~-]+)*\\@"
		    "(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\\.){1,4}");
		uri_buf_put(&e, t.p, t.n);
		uri_buf_str(&e, ")");
		uri_buf_str(&st, "<?(?<!mailto:)");
		uri_buf_put(&st, e.p, e.n);
		uri_buf_str(&st, "(?:>|\\s{1,10}(?!(?:fa(?:x|csi)|tel|phone|e?-?mail))[a-z]{2,11}:)");
		if (match_re_compile(e.p, RULE_RE_I, &uc->email, err, sizeof(err)) < 0)
			uc->email = NULL;
		if (match_re_compile(st.p, RULE_RE_I, &uc->email_strip, err,
		    sizeof(err)) < 0)
			uc->email_strip = NULL;
		free(e.p);
		free(st.p);
	}
	free(t.p);
	free(re.p);
	return r;
}

struct uri_conf *uri_conf_new(const char *const *tlds, size_t ntlds,
    const char *const *redirectors, size_t nredirectors)
{
	struct uri_conf *uc = calloc(1, sizeof(*uc));
	size_t cap = 0;

	if (uc == NULL)
		abort();
	for (size_t i = 0; i < ntlds; i++)
		for (const char *p = tlds[i]; *p;) {
			size_t n;

			while (*p == ' ' || *p == '\t')
				p++;
			n = strcspn(p, " \t");
			if (n == 0)
				break;
			if (uc->ntld == cap) {
				cap = cap ? cap * 2 : 256;
				uc->tld = realloc(uc->tld, cap * sizeof(char *));
				if (uc->tld == NULL)
					abort();
			}
			uc->tld[uc->ntld] = uri_strndup(p, n);
			for (char *q = uc->tld[uc->ntld]; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			uc->ntld++;
			p += n;
		}
	if (uc->ntld > 1)
		qsort(uc->tld, uc->ntld, sizeof(char *), uri_strcmp);
	/* duplicates out */
	if (uc->ntld > 1) {
		size_t k = 1;

		for (size_t i = 1; i < uc->ntld; i++) {
			if (strcmp(uc->tld[i], uc->tld[k - 1]) == 0)
				free(uc->tld[i]);
			else
				uc->tld[k++] = uc->tld[i];
		}
		uc->ntld = k;
	}
	uc->tbird = uri_tbird_compile(uc);
	for (size_t i = 0; i < nredirectors; i++) {
		const char *p = redirectors[i], *why = NULL;
		char *re = NULL, err[256];
		unsigned fl = 0;
		struct match_re *r = NULL;

		while (*p == ' ' || *p == '\t')
			p++;
		if (rule_parse_regex(&p, &re, &fl, &why) == 0 &&
		    match_re_compile(re, fl, &r, err, sizeof(err)) == 0) {
			uc->redir = realloc(uc->redir, (uc->nredir + 1) * sizeof(*uc->redir));
			if (uc->redir == NULL)
				abort();
			uc->redir[uc->nredir++] = r;
		}
		free(re);
	}
	return uc;
}

void uri_conf_free(struct uri_conf *uc)
{
	if (uc == NULL)
		return;
	for (size_t i = 0; i < uc->ntld; i++)
		free(uc->tld[i]);
	free(uc->tld);
	match_re_free(uc->tbird);
	match_re_free(uc->email);
	match_re_free(uc->email_strip);
	for (size_t i = 0; i < uc->nredir; i++)
		match_re_free(uc->redir[i]);
	free(uc->redir);
	free(uc);
}

const struct match_re *uri_conf_email_re(const struct uri_conf *uc, bool strip)
{
	return uc ? (strip ? uc->email_strip : uc->email) : NULL;
}

size_t uri_conf_ntlds(const struct uri_conf *uc)
{
	return uc ? uc->ntld : 0;
}

static bool uri_is_tld(const struct uri_conf *uc, const char *s)
{
	size_t lo = 0, hi = uc->ntld;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s, uc->tld[mid]);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

bool uri_domain_valid(const struct uri_conf *uc, const char *dom)
{
	char lc[256];
	const char *dot;
	size_t n = strlen(dom);

	if (n >= sizeof(lc) || strpbrk(dom, " \t\n\r\f\v"))
		return false;
	for (size_t i = 0; i <= n; i++)
		lc[i] = (char)tolower((unsigned char)dom[i]);
	dot = strrchr(lc, '.');
	if (dot == NULL || dot[1] == '\0')
		return false;
	if (uc && uc->ntld)
		return uri_is_tld(uc, dot + 1);
	/* rule files without util_rb_tld: a last label of two or more letters */
	if (dot == lc || strlen(dot + 1) < 2)
		return false;
	for (const char *p = dot + 1; *p; p++)
		if (!isalpha((unsigned char)*p) && *p != '-')
			return false;
	return true;
}

bool uri_fqdn_valid(const char *host)
{
	char h[256];
	size_t n = strlen(host), labels = 0, cnt;
	const char *p;

	while (n && host[n - 1] == '.')
		n--;
	if (n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		h[i] = (char)tolower((unsigned char)host[i]);
	h[n] = '\0';
	for (size_t i = 0; i <= n; i++)
		labels += i == n || h[i] == '.';
	if (labels < 2)
		return false;
	cnt = labels;
	for (p = h;; cnt--) {
		size_t l = strcspn(p, ".");

		if (l < 1 || l > 63)
			return false;
		for (size_t i = 0; i < l; i++)
			if (!(isalnum((unsigned char)p[i]) || p[i] == '_' || (p[i] == '-' && i && i + 1 < l)))
				return false;
		if (cnt <= 2 && memchr(p, '_', l))
			return false;
		if (!p[l])
			break;
		p += l + 1;
	}
	return true;
}

/* ---------------------------------------------------------------- Util helpers */

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

static bool is_pct(const char *s)
{
	return s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2]);
}

bool uri_has_pct(const char *s)
{
	for (; *s; s++)
		if (is_pct(s))
			return true;
	return false;
}

/* Util::url_encode in scalar context: decodes %XX of printable ASCII other than space and
 * %7f; encodes controls, 8-bit bytes, '"', '%', '<', '>' that stand alone. */
char *uri_url_encode(const char *s)
{
	struct uri_buf b = { 0 };

	uri_buf_put(&b, "", 0);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (is_pct(s)) {
			char x0 = s[1], x1 = s[2];
			bool keep = (x0 == '2' && x1 == '0') || (x0 == '7' && tolower((unsigned char)x1) == 'f') ||
			    strchr("0189abcdefABCDEF", x0);

			if (keep) {
				uri_buf_put(&b, s, 3);
			} else {
				char ch = (char)(hexval((unsigned char)x0) * 16 + hexval((unsigned char)x1));

				uri_buf_put(&b, &ch, 1);
			}
			s += 2;
		} else if (c <= 0x20 || c >= 0x7f || c == '"' || c == '%' || c == '<' || c == '>') {
			char e[4];

			snprintf(e, sizeof(e), "%%%02x", c);
			uri_buf_put(&b, e, 3);
		} else {
			uri_buf_put(&b, s, 1);
		}
	}
	return b.p;
}

/* decode_ulong_to_ip: the first four bytes of the hex digits of v. */
static void uri_ulong_to_ip(unsigned long long v, char out[20])
{
	char hex[24];
	unsigned char b[4] = { 0, 0, 0, 0 };

	snprintf(hex, sizeof(hex), "%08llx", v);
	for (int i = 0; i < 8; i++)
		b[i / 2] = (unsigned char)(b[i / 2] | (hexval((unsigned char)hex[i]) << (i % 2 ? 0 : 4)));
	snprintf(out, 20, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
}

static bool uri_is_ipv4(const char *s)
{
	/* SA's IS_IPV4_ADDRESS: four octets 0-255 without leading zeros */
	for (int part = 0; part < 4; part++) {
		int v = 0, d = 0;

		while (isdigit((unsigned char)s[d]) && d < 4)
			v = v * 10 + (s[d++] - '0');
		if (d == 0 || d > 3 || v > 255 || (d > 1 && s[0] == '0'))
			return false;
		s += d;
		if (part < 3 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* ---------------------------------------------------------------- uri_to_domain */

bool uri_to_host(const struct uri_conf *uc, const char *uri, char *host, size_t hostlen)
{
	char *u = uri_strndup(uri, strlen(uri)), *h;
	bool ok = false;

	for (char *p = u; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (strncmp(u, "javascript:", 11) == 0 || strncmp(u, "cid:", 4) == 0 ||
	    strncmp(u, "file:", 5) == 0)
		goto out;
	if (strncmp(u, "mailto:", 7) == 0) {
		char *at;

		h = u + 7;
		h[strcspn(h, "?")] = '\0';
		at = strchr(h, '@');
		if (at == NULL || strchr(at + 1, '@'))
			goto out;
		h = strrchr(h, '@') + 1;
	} else {
		char *p = u, *at;
		size_t n;

		while (isalpha((unsigned char)*p))
			p++;
		if (p > u && *p == ':') {
			p++;
			for (int k = 0; k < 2 && *p == '/'; k++)
				p++;
			h = p;
		} else {
			h = u;
		}
		h[strcspn(h, "/?#")] = '\0';
		if ((at = strrchr(h, '@')) != NULL)
			h = at + 1;
		n = strlen(h);
		while (n && isdigit((unsigned char)h[n - 1]))
			n--;
		if (n && h[n - 1] == ':')
			h[n - 1] = '\0';
	}
	for (const char *p = h; *p; p++)
		if (p[0] == '%' && ((p[1] == '2' && strchr("123456789abcdef", p[2]) && p[2]) ||
		    (p[1] >= '3' && p[1] <= '6' && isxdigit((unsigned char)p[2])) ||
		    (p[1] == '7' && p[2] && strchr("0123456789abcde", p[2]))))
			goto out;
	if (!uri_is_ipv4(h) && !(uri_fqdn_valid(h) && uri_domain_valid(uc, h)))
		goto out;
	if (strlen(h) < hostlen) {
		strcpy(host, h);
		ok = true;
	}
out:
	free(u);
	return ok;
}

/* ---------------------------------------------------------------- canonicalization */

/* The octet rewrites of the dotted-IP case on one chunk (its dot included): 0x hex to
 * decimal, s/^0+([1-3][0-7]{0,2}|[4-7][0-7]?)\b/oct/, s/^0+//. */
static void uri_octet(const char *s, size_t n, struct uri_buf *out)
{
	char t[96];
	size_t z = 0;

	if (n > 40)
		n = 40;
	memcpy(t, s, n);
	t[n] = '\0';
	if (t[0] == '0' && (t[1] == 'x' || t[1] == 'X') && isxdigit((unsigned char)t[2])) {
		unsigned long long v = 0;
		size_t e = 2;
		char rest[64];

		while (isxdigit((unsigned char)t[e]))
			v = v * 16 + (unsigned)hexval((unsigned char)t[e++]);
		snprintf(rest, sizeof(rest), "%s", t + e);
		snprintf(t, sizeof(t), "%llu%s", v, rest);
	}
	while (t[z] == '0')
		z++;
	if (z && t[z] >= '1' && t[z] <= '7') {
		size_t maxl = t[z] <= '3' ? 3 : 2;

		for (size_t l = maxl; l >= 1; l--) {
			bool oct = true;

			for (size_t i = 0; i < l && oct; i++)
				oct = t[z + i] >= '0' && t[z + i] <= '7';
			if (oct && !uri_is_word((unsigned char)t[z + l])) {
				char rest[64], num[8];

				snprintf(num, sizeof(num), "%.*s", (int)l, t + z);
				snprintf(rest, sizeof(rest), "%s", t + z + l);
				snprintf(t, sizeof(t), "%lu%s", strtoul(num, NULL, 8), rest);
				break;
			}
		}
	}
	z = 0;
	while (t[z] == '0')
		z++;
	uri_buf_str(out, t + z);
}

/* Matches host against the dotted four-part IP form (decimal or 0x hex parts). */
static bool uri_ip_form(const char *h, size_t ends[4])
{
	const char *p = h;

	for (int i = 0; i < 4; i++) {
		const char *q = p;

		if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X') && isxdigit((unsigned char)q[2])) {
			q += 2;
			while (isxdigit((unsigned char)*q))
				q++;
		} else if (isdigit((unsigned char)*q)) {
			while (isdigit((unsigned char)*q))
				q++;
		} else {
			return false;
		}
		if (i < 3) {
			if (*q != '.')
				return false;
			q++;
		}
		ends[i] = (size_t)(q - h);
		p = q;
	}
	return *p == '\0';
}

/* One of uri_list_canonicalize's entity passes over s: 0 decimal &#0*(33..126);, 1 hex
 * &#x0*(21..29|30..6f|70..7e); (lower-case x), 2 the full stops &#x2e; &#12290; ... (any
 * case) as '.'. */
static char *uri_ent_pass(const char *s, int pass)
{
	static const char *const dots[] = { "x2e;", "12290;", "x3002;", "65294;", "xff0e;",
		"65377;", "xff61;", NULL };
	struct uri_buf o = { 0 };

	uri_buf_put(&o, "", 0);
	while (*s) {
		if (s[0] == '&' && s[1] == '#') {
			const char *q = s + 2;

			if (pass == 2) {
				bool done = false;

				for (int i = 0; dots[i] && !done; i++)
					if (strncasecmp(q, dots[i], strlen(dots[i])) == 0) {
						uri_buf_put(&o, ".", 1);
						s = q + strlen(dots[i]);
						done = true;
					}
				if (done)
					continue;
			} else if (pass == 1 ? *q == 'x' : true) {
				const char *d;
				size_t nd;

				if (pass == 1)
					q++;
				while (*q == '0')
					q++;
				d = q;
				while (pass == 1 ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q))
					q++;
				nd = (size_t)(q - d);
				if (*q == ';' && (pass == 1 ? nd == 2 : nd == 2 || nd == 3)) {
					unsigned long v = strtoul(d, NULL, pass == 1 ? 16 : 10);
					bool ok = pass == 1 ? ((v >= 0x21 && v <= 0x29) || (v >= 0x30 && v <= 0x7e &&
					    !(v >= 0x70 && (d[1] == 'f' || d[1] == 'F')))) : (v >= 33 && v <= 126);

					if (ok) {
						char ch = (char)v;

						uri_buf_put(&o, &ch, 1);
						s = q + 1;
						continue;
					}
				}
			}
		}
		uri_buf_put(&o, s, 1);
		s++;
	}
	return o.p;
}

/* One URI through the body of uri_list_canonicalize's loop. */
static void uri_canon_one(const struct uri_conf *uc, struct match_scratch *ms, size_t idx,
    struct uri_list *uris, struct uri_list *nuris)
{
	struct uri_buf b = { 0 };
	const char *in = uris->v[idx];
	char *uri, *nuri, *t;
	size_t n;

	/* no newlines, CRs, leading or trailing white space (in the list itself: Perl's
	 * foreach aliases the element) */
	for (const char *p = in; *p; p++)
		if (*p != '\n')
			uri_buf_put(&b, p, 1);
	uri_buf_put(&b, "", 0);
	t = b.p;
	while (isspace((unsigned char)*t))
		t++;
	n = strlen(t);
	while (n && isspace((unsigned char)t[n - 1]))
		n--;
	uri = malloc(n + 1);
	if (uri == NULL)
		abort();
	{
		size_t k = 0;

		for (size_t i = 0; i < n; i++)
			if (t[i] != '\r')
				uri[k++] = t[i];
		uri[k] = '\0';
	}
	free(b.p);
	n = strlen(uri);
	free(uris->v[idx]);
	uris->v[idx] = uri_strndup(uri, n);
	if (n <= 1 || uri[0] == '#' || uri[0] == '?' || uri[0] == '&' ||
	    (uri[0] == '/' && uri[1] != '/'))
		goto done;
	/* e-mail addresses */
	if (strncasecmp(uri, "mailto:", 7) == 0 || memchr(uri, '@', strcspn(uri, ":"))) {
		const char *at = strchr(uri, '@');
		size_t q;

		if (at && at > uri) {
			/* ^([^\@]+\@[^?]+)\? */
			q = strcspn(at + 1, "?");
			if (at[1 + q] == '?' && q > 0 && strcspn(uri, "@") == (size_t)(at - uri))
				uri_list_push(nuris, uri, (size_t)(at - uri) + 1 + q);
			/* ^([^\@]+\@[^?&]+)\& */
			q = strcspn(at + 1, "?&");
			if (at[1 + q] == '&' && q > 0)
				uri_list_push(nuris, uri, (size_t)(at - uri) + 1 + q);
		}
		if (strstr(uri, "%20")) {
			/* ^(?:mailto:)?(?:\%20)*([^\@]+\@[^?&%]+) */
			const char *p = uri;

			if (strncasecmp(p, "mailto:", 7) == 0)
				p += 7;
			while (strncmp(p, "%20", 3) == 0)
				p += 3;
			at = strchr(p, '@');
			if (at && at > p && (q = strcspn(at + 1, "?&%")) > 0) {
				char *m = uri_strndup(p, (size_t)(at - p) + 1 + q);
				char *mm = uri_strcat3("mailto:", m, "");

				uri_list_add(nuris, mm);
				free(m);
				free(mm);
			}
		}
		{
			/* ^[^?&]*<([^\@>]+\@[^>]+)>: the last '<' before any ? or & that fits */
			size_t pre = strcspn(uri, "?&");

			for (size_t k = pre; k-- > 0;) {
				const char *a = uri + k + 1, *e;
				size_t l1;

				if (uri[k] != '<')
					continue;
				l1 = strcspn(a, "@>");
				if (l1 > 0 && a[l1] == '@' && (e = strchr(a + l1 + 1, '>')) != NULL &&
				    e > a + l1 + 1) {
					char *m = uri_strndup(a, (size_t)(e - a)), *mm = uri_strcat3("mailto:", m, "");

					uri_list_add(nuris, mm);
					free(m);
					free(mm);
					break;
				}
			}
		}
		goto done;
	}
	/* backslashes are slashes; http:www -> http://www */
	b = (struct uri_buf){ 0 };
	t = uri_strndup(uri, n);
	for (char *p = t; *p; p++)
		if (*p == '\\')
			*p = '/';
	if (strncasecmp(t, "http", 4) == 0 && (t[4] == ':' || ((t[4] == 's' || t[4] == 'S') &&
	    t[5] == ':'))) {
		size_t sl = t[4] == ':' ? 5 : 6, k = sl;

		for (int i = 0; i < 2 && t[k] == '/'; i++)
			k++;
		uri_buf_put(&b, t, sl);
		uri_buf_str(&b, "//");
		uri_buf_str(&b, t + k);
	} else {
		uri_buf_str(&b, t);
	}
	free(t);
	nuri = b.p;
	if (uri_has_pct(nuri)) {
		char *d = uri_url_encode(nuri);

		free(nuri);
		nuri = d;
	}
	{
		/* ^[-_a-z0-9]+: or else a scheme is added */
		size_t k = 0;

		while (isalnum((unsigned char)nuri[k]) || nuri[k] == '-' || nuri[k] == '_')
			k++;
		if (!(k > 0 && nuri[k] == ':')) {
			char *d = uri_strcat3(strncmp(nuri, "ftp.", 4) == 0 ? "ftp://" : "http://", nuri, "");

			free(nuri);
			nuri = d;
		}
	}
	/* http://host?x -> http://host/?x */
	if (strncasecmp(nuri, "http://", 7) == 0 || strncasecmp(nuri, "https://", 8) == 0) {
		size_t s = nuri[4] == ':' ? 7 : 8, e = s + strcspn(nuri + s, "/?#");

		if (e > s && (nuri[e] == '?' || nuri[e] == '#')) {
			char *d = malloc(strlen(nuri) + 2);

			if (d == NULL)
				abort();
			memcpy(d, nuri, e);
			d[e] = '/';
			strcpy(d + e + 1, nuri + e);
			free(nuri);
			nuri = d;
		}
	}
	/* &#NN; and &#xNN; of printable ASCII, then Unicode full stops: three passes */
	if (strstr(nuri, "&#")) {
		char *t1 = uri_ent_pass(nuri, 0), *t2 = uri_ent_pass(t1, 1), *t3 = uri_ent_pass(t2, 2);

		free(nuri);
		free(t1);
		free(t2);
		nuri = t3;
	}
	if (strcmp(nuri, uri) != 0)
		uri_list_add(nuris, nuri);
	/* ^(https?://)([^\@/?#]*\@)?([^/?#:]+)((?::(\d*))?.*)$ */
	if (strncasecmp(nuri, "http://", 7) == 0 || strncasecmp(nuri, "https://", 8) == 0) {
		size_t pl = nuri[4] == ':' ? 7 : 8, a = pl, hs, he;
		char proto[9], *host, *rest, *nhost;
		const char *auth = "";
		char authbuf[2] = "";
		size_t k;
		bool port_given = false, http;
		char port[16] = "";

		memcpy(proto, nuri, pl);
		proto[pl] = '\0';
		http = strcmp(proto, "http://") == 0;
		k = a + strcspn(nuri + a, "@/?#");
		if (nuri[k] == '@') {
			hs = k + 1;
			authbuf[0] = '@';
			auth = authbuf;
		} else {
			hs = a;
		}
		he = hs + strcspn(nuri + hs, "/?#:");
		if (he == hs)
			goto free_nuri;
		host = uri_strndup(nuri + hs, he - hs);
		rest = uri_strndup(nuri + he, strlen(nuri + he));
		if (rest[0] == ':') {
			size_t d = strspn(rest + 1, "0123456789");

			port_given = d > 0;         /* ":" alone leaves the port empty: the default */
			snprintf(port, sizeof(port), "%.*s", (int)(d < 15 ? d : 15), rest + 1);
		}
		if (!port_given) {
			strcpy(port, http ? "80" : "443");
		} else {
			const char *dp = http ? ":80" : ":443";
			size_t dl = strlen(dp);

			if (strncmp(rest, dp, dl) == 0 && !uri_is_word((unsigned char)rest[dl])) {
				char *v = uri_strcat3(proto, host, rest + dl);

				uri_list_add(nuris, v);
				free(v);
			}
		}
		nhost = uri_strndup(host, strlen(host));
		for (char *p = nhost; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		/* control characters out of the host */
		if (strpbrk(host, "\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12"
		    "\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")) {
			size_t w = 0;

			for (size_t i = 0; host[i]; i++)
				if ((unsigned char)host[i] > 0x20)
					host[w++] = host[i];
			host[w] = '\0';
			{
				char *v = uri_strcat3(proto, host, rest);

				uri_list_add(nuris, v);
				free(v);
			}
		}
		/* redirectors: the first pattern that matches, else any http URL in the rest */
		{
			char *whole = uri_strcat3(proto, host, rest);
			bool found = false;
			size_t ov[4];

			for (size_t i = 0; i < (uc ? uc->nredir : 0) && !found; i++) {
				if (match_re_groups(uc->redir[i], whole, strlen(whole), 0, ms, ov, 2) != 1)
					continue;
				if (ov[2] == SIZE_MAX || !memchr(whole + ov[2], '.', ov[3] - ov[2]))
					continue;
				uri_list_push(uris, whole + ov[2], ov[3] - ov[2]);
				found = true;
			}
			if (!found) {
				/* (https?:/{0,2}[^&#]+): the first "http:" or "https:" followed by text */
				for (const char *p = strcasestr(rest, "http"); p; p = strcasestr(p + 1, "http")) {
					const char *q = p + 4;
					size_t l;

					if (*q == 's' || *q == 'S')
						q++;
					if (*q != ':')
						continue;
					q++;
					l = strcspn(q, "&#");
					if (l == 0)
						continue;
					if (memchr(q, '.', l))
						uri_list_push(uris, p, (size_t)(q - p) + l);
					break;
				}
			}
			free(whole);
		}
		(void)auth;
		/* a user name in the host, trailing punctuation */
		{
			char *at = strchr(host, '@');

			if (at && at > host) {
				memmove(host, at + 1, strlen(at + 1) + 1);
				{
					char *v = uri_strcat3(proto, host, rest);

					uri_list_add(nuris, v);
					free(v);
				}
			}
		}
		{
			size_t l = strlen(host);

			if (l && !isalnum((unsigned char)host[l - 1])) {
				while (l && !isalnum((unsigned char)host[l - 1]))
					l--;
				host[l] = '\0';
				{
					char *v = uri_strcat3(proto, host, rest);

					uri_list_add(nuris, v);
					free(v);
				}
			}
		}
		/* hosts that are IP addresses in disguise */
		{
			size_t ends[4];
			char ipbuf[20];

			if (uri_ip_form(host, ends)) {
				struct uri_buf o = { 0 };
				size_t st = 0;

				uri_buf_str(&o, proto);
				for (int i = 0; i < 4; i++) {
					uri_octet(host + st, ends[i] - st, &o);
					st = ends[i];
				}
				uri_buf_str(&o, rest);
				uri_list_add(nuris, o.p);
				free(o.p);
			} else if (host[0] == '0' && (host[1] == 'x' || host[1] == 'X') && host[2] &&
			    strspn(host + 2, "0123456789abcdefABCDEF") == strlen(host + 2)) {
				size_t l = strlen(host + 2);
				const char *last = host + 2 + (l > 8 ? l - 8 : 0);

				uri_ulong_to_ip(strtoull(last, NULL, 16), ipbuf);
				{
					char *v = uri_strcat3(proto, ipbuf, rest);

					uri_list_add(nuris, v);
					free(v);
				}
			} else if (host[0] && strspn(host, "0123456789") == strlen(host)) {
				uri_ulong_to_ip(strtoull(host, NULL, 10), ipbuf);
				{
					char *v = uri_strcat3(proto, ipbuf, rest);

					uri_list_add(nuris, v);
					free(v);
				}
			} else if (http && !auth[0] && strcmp(nhost, "localhost") != 0 &&
			    strcmp(port, "80") == 0) {
				/* http://foobar -> http://www.foobar.com, as Firefox did */
				const char *w = strncmp(nhost, "www.", 4) == 0 ? nhost + 4 : nhost;

				if (*w && !strchr(w, '.') && !uri_domain_valid(uc, nhost)) {
					struct uri_buf o = { 0 };

					uri_buf_str(&o, proto);
					uri_buf_str(&o, "www.");
					uri_buf_str(&o, w);
					uri_buf_str(&o, ".com");
					uri_buf_str(&o, rest);
					uri_list_add(nuris, o.p);
					free(o.p);
				}
			}
		}
		free(nhost);
		free(host);
		free(rest);
	}
free_nuri:
	free(nuri);
done:
	free(uri);
}

void uri_canonicalize(const struct uri_conf *uc, struct match_scratch *ms, const char *uri,
    struct uri_list *out)
{
	struct uri_list uris = { .max = URI_MAX_CANON }, nuris = { .max = URI_MAX_CANON };

	uri_list_add(&uris, uri);
	/* the loop also runs over what redirectors add to the list */
	for (size_t i = 0; i < uris.n; i++)
		uri_canon_one(uc, ms, i, &uris, &nuris);
	for (size_t i = 0; i < uris.n; i++)
		uri_list_add(out, uris.v[i]);
	for (size_t i = 0; i < nuris.n; i++)
		uri_list_add(out, nuris.v[i]);
	uri_list_free(&uris);
	uri_list_free(&nuris);
}
