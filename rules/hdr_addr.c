/* hdr_addr.c — addresses and display names of an address header, as SpamAssassin 4.0.1's
 * internal parser finds them (Util::_parse_header_addresses: one relaxed regex eaten off
 * the front of the field, phrases unquoted, comments dropped, a phrase that is an address
 * taken as one, and a last search for <address> in what is left), with SA's fall-back to
 * Email::Address::XS (Dovecot's lenient parser, approximated here) when the internal one
 * finds nothing, fewer entries than commas, or nested comments. What :addr and :name give
 * (rules_hdr.c). */
#include "eval_int.h"

#include "charset.h"
#include "uri.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A quoted string; "(?:|(?:...)*+)" as SA writes it matched "" two ways (the empty
 * alternative, the possessive loop taken no times), and a phrase of k empty quoted strings
 * not followed by <...> then backtracked over 2^k readings into PCRE2's match limit: the
 * field parsed as nothing. The loop alone matches the same strings, one way. */
#define QS "\"(?:[^\"\\\\]++|\\\\.)*+\""
#define MAILRE "(?:" QS "|[^@\\s<>()\\[\\],:;]+)@(?:[^\"\\s<>()\\[\\],:;]+|\\[[\\d:.]+\\])"
#define PHRASE "(?:" QS "|[^\",;<]++)+"

static struct eval_rx addr_re = {
	"^\\s*(?:(?:(" PHRASE ")\\s*)?<\\s*([^>@]*\\S+|\\s*)\\s*>"
	"(?:\\s*<\\s*(?:(?:" QS ")?\\S+|\\s*)\\s*>)*"
	"|(?:(" MAILRE ")|(" PHRASE ")))"
	"(?:\\s*\\(((?:[^()\\\\]++|\\\\.)*+)\\))?\\s*(?:[,;]|\\z)",
	RULE_RE_I | RULE_RE_S, NULL
};
static struct eval_rx mail_full = { "^" MAILRE "$", RULE_RE_I, NULL };
static struct eval_rx mail_angle = { "<(" MAILRE ")>", RULE_RE_I | RULE_RE_S, NULL };
static struct eval_rx group_re = { "^[^\"()<>]+:\\s*(.*?)\\s*(?:;.*)?", RULE_RE_S, NULL };

static char *addr_dup(struct eval_ctx *c, const char *s, const size_t *ov, int g)
{
	if (ov[2 * g] == SIZE_MAX)
		return NULL;
	return eval_strndup(c, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
}

/* s/\((?:|(?:[^()\\]++|\\.)*+)\)//gs: comments without nesting out */
static char *addr_drop_comments(struct eval_ctx *c, const char *s)
{
	size_t n = strlen(s), o = 0;
	char *d = eval_alloc(c, n + 1);

	for (size_t i = 0; i < n;) {
		if (s[i] == '(') {
			size_t j = i + 1;
			bool ok = false;

			while (j < n) {
				if (s[j] == '\\' && j + 1 < n) {
					j += 2;
					continue;
				}
				if (s[j] == '(')
					break;
				if (s[j] == ')') {
					ok = true;
					break;
				}
				j++;
			}
			if (ok) {
				i = j + 1;
				continue;
			}
		}
		d[o++] = s[i++];
	}
	d[o] = '\0';
	return d;
}

/* _valid_parsed_address */
static bool addr_valid(const char *a)
{
	size_t q = 0;

	if (a == NULL || strncmp(a, "\"\"@", 3) == 0)
		return false;
	for (const char *p = a; *p; p++)
		q += *p == '"';
	return q != 1;
}

/* s/^(([^\@]*)\@([^\@]*)).*$/$1/: the address up to a second '@'; *host set */
static char *addr_cut(struct eval_ctx *c, const char *a, const char **host)
{
	const char *at = strchr(a, '@'), *e;

	if (at == NULL) {
		*host = NULL;
		return (char *)a;
	}
	e = strchr(at + 1, '@');
	if (e == NULL)
		e = a + strlen(a);
	*host = eval_strndup(c, at + 1, (size_t)(e - at - 1));
	return eval_strndup(c, a, (size_t)(e - a));
}

/* The phrase's quoted strings unescaped, its unquoted parts without comments. */
static char *addr_phrase(struct eval_ctx *c, const char *ph)
{
	struct rules_buf b = { 0 };
	char *r;

	rules_buf_put(&b, "", 0);
	for (size_t i = 0, n = strlen(ph); i < n;) {
		if (ph[i] == '"') {
			size_t j = i + 1;

			while (j < n && ph[j] != '"')
				j += ph[j] == '\\' && j + 1 < n ? 2 : 1;
			if (j < n) {
				/* s/\\(?!\\)//g; s/\\\\/\\/g */
				for (size_t k = i + 1; k < j; k++) {
					if (ph[k] == '\\' && !(k + 1 < j && ph[k + 1] == '\\'))
						continue;
					if (ph[k] == '\\' && k + 1 < j && ph[k + 1] == '\\') {
						rules_buf_put(&b, "\\", 1);
						k++;
						continue;
					}
					rules_buf_put(&b, ph + k, 1);
				}
				i = j + 1;
				continue;
			}
			i++;              /* an unbalanced quote is skipped */
			continue;
		}
		{
			size_t j = i;
			char *u, *nc;

			while (j < n && ph[j] != '"')
				j++;
			u = eval_strndup(c, ph + i, j - i);
			nc = addr_drop_comments(c, u);
			rules_buf_put(&b, nc, strlen(nc));
			i = j;
		}
	}
	r = eval_strndup(c, b.p, b.n);
	free(b.p);
	return r;
}

static bool addr_host_valid(const char *host)
{
	return host && uri_fqdn_valid(host);
}

/* ---------------------------------------------------------------- the XS fall-back */

/* an atom character of RFC 5322 */
static bool xs_atext(unsigned char ch)
{
	return ch > ' ' && ch < 0x7f ? !strchr("()<>@,;:\\\".[]", ch) : ch >= 0x80;
}

static const char *xs_skip_cfws(const char *p, const char *e, struct rules_buf *comment)
{
	for (;;) {
		while (p < e && isspace((unsigned char)*p))
			p++;
		if (p < e && *p == '(') {
			int depth = 0;
			const char *b = p + 1;

			for (; p < e; p++) {
				if (*p == '\\' && p + 1 < e) {
					p++;
					continue;
				}
				if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0)
					break;
			}
			if (comment && comment->n == 0 && p > b)
				rules_buf_put(comment, b, (size_t)(p - b));
			if (p < e)
				p++;
			continue;
		}
		return p;
	}
}

/* a word (atom or quoted string) into out; NULL when there is none */
static const char *xs_word(const char *p, const char *e, struct rules_buf *out)
{
	if (p < e && *p == '"') {
		for (p++; p < e && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < e)
				p++;
			rules_buf_put(out, p, 1);
		}
		return p < e ? p + 1 : p;
	}
	if (p >= e || !xs_atext((unsigned char)*p))
		return NULL;
	while (p < e && xs_atext((unsigned char)*p))
		rules_buf_put(out, p++, 1);
	return p;
}

/* addr-spec: local-part [ "@" domain ] */
static void xs_addrspec(struct eval_ctx *c, const char *p, const char *e, const char **user,
    const char **host, struct rules_buf *comment)
{
	struct rules_buf lp = { 0 }, dom = { 0 };
	const char *q;

	*user = *host = NULL;
	p = xs_skip_cfws(p, e, comment);
	while ((q = xs_word(p, e, &lp)) != NULL) {
		p = xs_skip_cfws(q, e, comment);
		if (p < e && *p == '.') {
			rules_buf_put(&lp, ".", 1);
			p = xs_skip_cfws(p + 1, e, comment);
			continue;
		}
		break;
	}
	if (lp.n)
		*user = eval_strndup(c, lp.p, lp.n);
	if (lp.n && p < e && *p == '@') {
		p = xs_skip_cfws(p + 1, e, comment);
		if (p < e && *p == '[') {
			const char *rb = memchr(p, ']', (size_t)(e - p));

			if (rb)
				rules_buf_put(&dom, p, (size_t)(rb - p) + 1);
		} else {
			while ((q = xs_word(p, e, &dom)) != NULL) {
				p = xs_skip_cfws(q, e, comment);
				if (p < e && *p == '.') {
					rules_buf_put(&dom, ".", 1);
					p = xs_skip_cfws(p + 1, e, comment);
					continue;
				}
				break;
			}
		}
		if (dom.n)
			*host = eval_strndup(c, dom.p, dom.n);
	}
	free(lp.p);
	free(dom.p);
}

static size_t xs_parse(struct eval_ctx *c, const char *str, struct hdr_address *out, size_t max)
{
	size_t n = 0, len = strlen(str);
	char *s = eval_alloc(c, len + 1), *w = s;
	const char *p, *end;

	/* escaped backslashes out */
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '\\' && i + 1 < len && str[i + 1] == '\\') {
			i++;
			continue;
		}
		*w++ = str[i];
	}
	*w = '\0';
	end = w;
	for (p = s; p < end && n < max;) {
		const char *b = p, *lt = NULL, *colon = NULL;
		int depth = 0;
		bool quote = false, angle = false;
		struct rules_buf phrase = { 0 }, comment = { 0 };
		const char *user = NULL, *host = NULL;

		/* one element: up to a comma outside quotes, comments, <> and [] */
		for (; p < end; p++) {
			if (*p == '\\' && p + 1 < end) {
				p++;
				continue;
			}
			if (quote) {
				quote = *p != '"';
				continue;
			}
			if (*p == '"' && !depth)
				quote = true;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && depth)
				depth--;
			else if (!depth && *p == '<' && !lt) {
				lt = p;
				angle = true;
			} else if (!depth && *p == '>')
				angle = false;
			else if (!depth && !angle && *p == ':' && !lt && !colon)
				colon = p;
			else if (!depth && !angle && (*p == ',' || *p == ';'))
				break;
		}
		if (colon && !lt)
			b = colon + 1;           /* a group's name */
		if (lt) {
			const char *q = xs_skip_cfws(b, lt, &comment), *gt;

			while (q < lt) {
				const char *r = xs_word(q, lt, &phrase);

				if (r == NULL) {
					rules_buf_put(&phrase, q, 1);
					r = q + 1;
				}
				q = xs_skip_cfws(r, lt, &comment);
				if (q < lt)
					rules_buf_put(&phrase, " ", 1);
			}
			gt = memchr(lt, '>', (size_t)(p - lt));
			xs_addrspec(c, lt + 1, gt ? gt : p, &user, &host, &comment);
		} else {
			xs_addrspec(c, b, p, &user, &host, &comment);
		}
		if (user || host || phrase.n) {
			struct hdr_address *a = &out[n++];

			a->phrase = phrase.n ? eval_strndup(c, phrase.p, phrase.n) : NULL;
			a->address = user && host ? eval_strndup(c, "", 0) : NULL;
			if (a->address) {
				size_t ul = strlen(user), hl = strlen(host);
				char *ad = eval_alloc(c, ul + hl + 2);

				memcpy(ad, user, ul);
				ad[ul] = '@';
				memcpy(ad + ul + 1, host, hl + 1);
				a->address = ad;
			}
			/* SA's post-processing: a phrase that is an address, the comment as the
			 * phrase, and the whole input when nothing was found */
			if (!a->address && !user && !comment.n && a->phrase && addr_valid(a->phrase)) {
				const char *at = strchr(a->phrase, '@');

				if (at && at > a->phrase && at[1] && !strchr(at + 1, '@') &&
				    !strpbrk(a->phrase, " \t") && uri_fqdn_valid(at + 1)) {
					a->address = a->phrase;
					a->phrase = NULL;
				}
			}
			if (!a->phrase && comment.n)
				a->phrase = eval_strndup(c, comment.p, comment.n);
			if (!a->phrase && !a->address)
				a->phrase = str;
		}
		free(phrase.p);
		free(comment.p);
		if (p < end)
			p++;
	}
	return n;
}

static size_t hdr_parse_internal(struct eval_ctx *c, const char *str, struct hdr_address *out,
    size_t max)
{
	size_t n = 0, len, ov[12];
	char *s, *w;

	if (str == NULL)
		return 0;
	/* trailing white space out, escaped backslashes out */
	len = strlen(str);
	while (len && isspace((unsigned char)str[len - 1]))
		len--;
	s = eval_alloc(c, len + 1);
	w = s;
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '\\' && i + 1 < len && str[i + 1] == '\\') {
			i++;
			continue;
		}
		*w++ = str[i];
	}
	*w = '\0';
	/* a group "name: a, b;" is its addresses */
	if (eval_rx_groups(c, &group_re, s, strlen(s), ov, 2)) {
		s = eval_strndup(c, s + ov[1], strlen(s + ov[1]));   /* its lazy $1 is empty */
	}
	{
		bool any = false;

		for (const char *p = s; *p && !any; p++)
			any = !isspace((unsigned char)*p);
		if (!any)
			return 0;
	}
	while (n < max && *s && eval_rx_groups(c, &addr_re, s, strlen(s), ov, 6)) {
		char *phrase = addr_dup(c, s, ov, 1), *address = addr_dup(c, s, ov, 2);
		char *comment = addr_dup(c, s, ov, 5);
		const char *host = NULL;

		if (phrase == NULL)
			phrase = addr_dup(c, s, ov, 4);
		if (address != NULL) {
			address = addr_drop_comments(c, address);
			if (!eval_rx_str(c, &mail_full, address))
				address = NULL;
		} else {
			address = addr_dup(c, s, ov, 3);
		}
		if (!addr_valid(address))
			address = NULL;
		if (phrase) {
			phrase = addr_phrase(c, phrase);
			if (address == NULL && eval_rx_str(c, &mail_full, phrase) && addr_valid(phrase)) {
				const char *at = strchr(phrase, '@'), *e;
				char *h;

				e = at ? strchr(at + 1, '@') : NULL;
				h = at ? eval_strndup(c, at + 1, e ? (size_t)(e - at - 1) : strlen(at + 1)) : NULL;
				if (h && addr_host_valid(h)) {
					address = phrase;
					phrase = NULL;
				}
			}
			if (phrase && ((address && strcmp(phrase, address) == 0) || phrase[0] == '\0'))
				phrase = NULL;
		}
		if (phrase == NULL && comment)
			phrase = comment;
		if (address)
			address = addr_cut(c, address, &host);
		(void)host;
		out[n].phrase = phrase;
		out[n].address = address;
		n++;
		if (ov[1] == 0)
			break;
		s += ov[1];
	}
	/* what is left: <address> anywhere */
	if (strchr(s, '@')) {
		size_t off = 0;

		while (n < max && off < strlen(s) &&
		    match_re_groups(eval_rx_get(&mail_angle), s, strlen(s), off, c->ms, ov, 2) == 1) {
			char *a = eval_strndup(c, s + ov[2], ov[3] - ov[2]);
			const char *host;

			off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
			if (!addr_valid(a))
				continue;
			out[n].phrase = NULL;
			out[n].address = addr_cut(c, a, &host);
			n++;
		}
	}
	return n;
}

size_t hdr_parse_addresses(struct eval_ctx *c, const char *str, struct hdr_address *out,
    size_t max)
{
	size_t n, commas = 0, parens = 0;

	if (str == NULL)
		return 0;
	{
		bool any = false;

		for (const char *p = str; *p && !any; p++)
			any = !isspace((unsigned char)*p);
		if (!any)
			return 0;
	}
	n = hdr_parse_internal(c, str, out, max);
	for (const char *p = str; *p; p++) {
		commas += *p == ',';
		parens += *p == '(';
	}
	if (n == 0 || parens >= 2 || n < commas + 1) {
		struct hdr_address xs[64];
		size_t nx = xs_parse(c, str, xs, max < 64 ? max : 64);

		if (nx > n || parens >= 2) {
			memcpy(out, xs, nx * sizeof(*xs));
			return nx;
		}
	}
	return n;
}
