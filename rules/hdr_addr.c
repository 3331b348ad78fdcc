/* hdr_addr.c — addresses and display names of an address header, as SpamAssassin 4.0.1's
 * internal parser finds them (Util::_parse_header_addresses: one relaxed regex eaten off
 * the front of the field, phrases unquoted, comments dropped, a phrase that is an address
 * taken as one, and a last search for <address> in what is left). What :addr and :name
 * give (rules_hdr.c). Email::Address::XS, which SA also consults for lists the internal
 * parser seems to miss entries of, is not emulated. */
#include "eval_int.h"

#include "charset.h"
#include "uri.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define QS "\"(?:|(?:[^\"\\\\]++|\\\\.)*+)\""
#define MAILRE "(?:" QS "|[^@\\s<>()\\[\\],:;]+)@(?:[^\"\\s<>()\\[\\],:;]+|\\[[\\d:.]+\\])"
#define PHRASE "(?:" QS "|[^\",;<]++)+"

static struct eval_rx addr_re = {
	"^\\s*(?:(?:(" PHRASE ")\\s*)?<\\s*([^>@]*\\S+|\\s*)\\s*>"
	"(?:\\s*<\\s*(?:(?:" QS ")?\\S+|\\s*)\\s*>)*"
	"|(?:(" MAILRE ")|(" PHRASE ")))"
	"(?:\\s*\\(((?:|(?:[^()\\\\]++|\\\\.)*+))\\))?\\s*(?:[,;]|\\z)",
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

size_t hdr_parse_addresses(struct eval_ctx *c, const char *str, struct hdr_address *out,
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
