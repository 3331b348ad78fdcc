/* eval_mime.c — SpamAssassin's MIMEEval and BodyEval tests: the MIME structure (samsg.c)
 * of a message — base64/QP parts and their oddities, HTML-only bodies, text/HTML
 * alternatives that say different things, parser flags — and body statistics (upper case,
 * blank lines, vertical words, stock tickers). Semantics of Mail::SpamAssassin::Plugin::
 * MIMEEval and BodyEval 4.0.1. */
#include "eval_int.h"

#include "charset.h"
#include "html.h"
#include "samsg.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What _check_attachments gathers, once per message. */
struct eval_mime {
	struct samsg msg;
	int base64_count, qp_count_parts, body_html_count, body_text_count, attachment;
	bool base64_encoded_text, bad_iso_charset, multipart_alternative, qp_long_line;
	double multipart_ratio, qp_ratio, text_unicode_ratio;
	double qp_count;
	int ascii_text_illegal;
	char *html_charsets;
	/* BodyEval caches */
	bool madiff_done; double madiff; size_t madiff_html, madiff_text;
	int base64_length;            /* -1 = not computed */
	int stock_info;               /* -1 = not computed */
	double uppercase;             /* -1 = not computed */
	double vertical;              /* -2 = not computed */
};

static const char *mime_lc(struct eval_ctx *c, const char *s)
{
	char *d = eval_strndup(c, s, strlen(s));

	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

static bool mime_is_ascii_charset(const char *cs)
{
	static const char *const names[] = { "us-ascii", "ansi_x3.4-1968", "iso-ir-6",
		"ansi_x3.4-1986", "iso_646.irv:1991", "ascii", "iso646-us", "us", "ibm367", "cp367",
		"csascii", NULL };

	for (int i = 0; names[i]; i++)
		if (strstr(cs, names[i]))
			return true;
	return false;
}

/* SA's _check_mime_header for one part. */
static void mime_part_header(struct eval_ctx *c, struct eval_mime *mm, const char *ctype,
    const char *cte, const char *cd, const char *charset)
{
	static struct eval_rx badiso = { "iso-\\S+-\\S+\\b", RULE_RE_I, NULL };
	static struct eval_rx goodiso = { "iso-(?:8859-\\d{1,2}|2022-(?:jp|kr))\\b", 0, NULL };

	if (strcmp(ctype, "text/html") == 0)
		mm->body_html_count++;
	else if (strncasecmp(ctype, "text", 4) == 0)
		mm->body_text_count++;
	if (strstr(cte, "base64"))
		mm->base64_count++;
	else if (strstr(cte, "quoted-printable"))
		mm->qp_count_parts++;
	if (cd[0] && strstr(cd, "attachment"))
		mm->attachment++;
	if (strncmp(ctype, "text", 4) == 0 && strstr(cte, "base64") &&
	    (!charset[0] || mime_is_ascii_charset(charset)) &&
	    !(cd[0] && (strncmp(cd, "attachment", 10) == 0 || strncmp(cd, "inline", 6) == 0)))
		mm->base64_encoded_text = true;
	if (eval_rx_str(c, &badiso, charset) && !eval_rx_str(c, &goodiso, charset))
		mm->bad_iso_charset = true;
	for (const char *p = charset; *p; p++)
		if (isalpha((unsigned char)*p)) {
			size_t l = mm->html_charsets ? strlen(mm->html_charsets) : 0;
			char *n = eval_alloc(c, l + strlen(charset) + 2);

			if (l) {
				memcpy(n, mm->html_charsets, l);
				n[l++] = ' ';
			}
			strcpy(n + l, charset);
			mm->html_charsets = n;
			break;
		}
}

/* =XX that is a printable the encoding did not need, per SA's count */
static size_t mime_qp_encoded(const char *s, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i + 2 < n; i++) {
		char a = s[i + 1], b = s[i + 2];
		bool hit = false;

		if (s[i] != '=')
			continue;
		if (a == '0' && b == '9')
			hit = true;
		else if (a == '3' && (isdigit((unsigned char)b) || b == 'A' || b == 'B' || b == 'C' ||
		    b == 'E' || b == 'F'))
			hit = true;
		else if ((a == '2' || a == '4' || a == '5' || a == '6') &&
		    (isdigit((unsigned char)b) || (b >= 'A' && b <= 'F')))
			hit = true;
		else if (a == '7' && (isdigit((unsigned char)b) || (b >= 'A' && b <= 'E')))
			hit = true;
		if (hit) {
			k++;
			i += 2;
		}
	}
	return k;
}

/* Pre-order walk of the tree (SA's find_parts(qr/./)). */
static size_t mime_preorder(const struct samsg *m, int i, int *out, size_t n)
{
	out[n++] = i;
	for (size_t k = 0; k < m->parts[i].nkids; k++)
		n = mime_preorder(m, m->parts[i].kids[k], out, n);
	return n;
}

static struct eval_mime *mime_get(struct eval_ctx *c)
{
	struct eval_mime *mm = c->m->mime;
	int *order, part = -1;
	size_t n;
	double qp_bytes = 0, qp_count = 0, normal = 0, unicode = 0;
	double *part_bytes;
	const char **part_type;

	if (mm)
		return mm;
	mm = eval_alloc(c, sizeof(*mm));
	memset(mm, 0, sizeof(*mm));
	c->m->mime = mm;
	mm->multipart_ratio = 1.0;
	mm->base64_length = -1;
	mm->stock_info = -1;
	mm->uppercase = -1;
	mm->vertical = -2;
	samsg_parse(&mm->msg, c->msg, c->len);
	order = eval_alloc(c, (mm->msg.nparts + 1) * sizeof(int));
	part_bytes = eval_alloc(c, (mm->msg.nparts + 1) * sizeof(double));
	part_type = eval_alloc(c, (mm->msg.nparts + 1) * sizeof(char *));
	n = mime_preorder(&mm->msg, 0, order, 0);
	for (size_t k = 0; k < n; k++) {
		const struct samsg_part *p = &mm->msg.parts[order[k]];
		char *b = NULL, *cs = NULL, *nm = NULL;
		char *t = samsg_parse_content_type(samsg_header(p, "Content-Type")[0] ?
		    samsg_header(p, "Content-Type") : NULL, &b, &cs, &nm, NULL);
		const char *ctype = eval_strndup(c, t, strlen(t));
		const char *cte = mime_lc(c, samsg_header(p, "Content-Transfer-Encoding"));
		const char *cd = mime_lc(c, samsg_header(p, "Content-Disposition"));
		const char *charset = cs ? mime_lc(c, cs) : "";
		bool cs_defined = cs != NULL;      /* charset="" is defined (and empty) */

		free(t);
		free(b);
		free(cs);
		free(nm);
		if (strcmp(ctype, "multipart/alternative") == 0)
			mm->multipart_alternative = true;
		mime_part_header(c, mm, ctype, cte, cd, charset);
		if (p->nkids)
			continue;
		part++;
		part_type[part] = ctype;
		part_bytes[part] = strstr(cd, "attachment") ? -1 : 0;
		for (size_t i = 0; i < p->nraw; i++) {
			const char *s = p->raw[i].p;
			size_t len = p->raw[i].n;

			if (mm->multipart_alternative && !strstr(cd, "attachment") &&
			    (strcmp(ctype, "text/plain") == 0 || strcmp(ctype, "text/html") == 0) &&
			    part_bytes[part] >= 0)
				part_bytes[part] += (double)len;
			if (strcmp(cte, "quoted-printable") == 0 && !(len >= 6 && strncmp(s, "SPAM: ", 6) == 0)) {
				if (len > 79)
					mm->qp_long_line = true;
				qp_bytes += (double)len;
				if (memchr(s, '=', len)) {
					size_t q = mime_qp_encoded(s, len);

					if (q) {
						/* trailing =09/=20 before the line end do not count */
						size_t e = len, t2 = 0;

						while (e && isspace((unsigned char)s[e - 1]))
							e--;
						while (e >= 3 && s[e - 3] == '=' && ((s[e - 2] == '0' && s[e - 1] == '9') ||
						    (s[e - 2] == '2' && s[e - 1] == '0'))) {
							e -= 3;
							t2++;
						}
						qp_count += (double)q - (double)t2;
					}
				}
			}
			if (strcmp(ctype, "text/plain") == 0 && (!cs_defined ||
			    strcmp(charset, "us-ascii") == 0)) {
				for (size_t k2 = 0; k2 < len; k2++) {
					unsigned char ch = (unsigned char)s[k2];

					if (ch == 0 || ch == '\r' || ch >= 0x80) {
						mm->ascii_text_illegal++;
						break;
					}
				}
			}
			if (strcmp(ctype, "text/plain") == 0 && (!cte[0] || strcmp(cte, "7bit") == 0 ||
			    strcmp(cte, "8bit") == 0)) {
				size_t subs = 0, kept = len;

				for (size_t k2 = 0; k2 + 7 < len + 0 && k2 + 8 <= len; k2++)
					if (s[k2] == '&' && s[k2 + 1] == '#' && s[k2 + 2] == 'x' &&
					    isxdigit((unsigned char)s[k2 + 3]) && !islower((unsigned char)s[k2 + 3]) &&
					    isxdigit((unsigned char)s[k2 + 4]) && !islower((unsigned char)s[k2 + 4]) &&
					    isxdigit((unsigned char)s[k2 + 5]) && !islower((unsigned char)s[k2 + 5]) &&
					    isxdigit((unsigned char)s[k2 + 6]) && !islower((unsigned char)s[k2 + 6]) &&
					    s[k2 + 7] == ';') {
						subs++;
						kept -= 8;
						k2 += 7;
					}
				normal += (double)kept;
				unicode += (double)subs;
			}
		}
	}
	if (qp_bytes) {
		mm->qp_ratio = qp_count / qp_bytes;
		mm->qp_count = qp_count;
	} else {
		mm->qp_count = mm->qp_count_parts;
	}
	if (normal)
		mm->text_unicode_ratio = unicode / normal;
	if (mm->multipart_alternative) {
		double text = -1, html = -1;

		for (int i = part; i >= 0; i--) {
			if (part_bytes[i] < 0)
				continue;
			if (html < 0 && strcmp(part_type[i], "text/html") == 0)
				html = part_bytes[i];
			else if (text < 0 && strcmp(part_type[i], "text/plain") == 0)
				text = part_bytes[i];
			if (html >= 0 && text >= 0)
				break;
		}
		if (text >= 0 && html > 0)
			mm->multipart_ratio = text / html;
	}
	return mm;
}

const struct samsg *eval_samsg(struct eval_ctx *c)
{
	return &mime_get(c)->msg;
}

void eval_mime_free(struct eval_mime *mm)
{
	if (mm)
		samsg_free(&mm->msg);
}

EVAL_FN(eval_check_for_mime)
{
	struct eval_mime *mm = mime_get(c);
	const char *t = call->arg[0];

	if (strcmp(t, "mime_base64_count") == 0) return mm->base64_count > 0;
	if (strcmp(t, "mime_base64_encoded_text") == 0) return mm->base64_encoded_text;
	if (strcmp(t, "mime_body_html_count") == 0) return mm->body_html_count > 0;
	if (strcmp(t, "mime_body_text_count") == 0) return mm->body_text_count > 0;
	if (strcmp(t, "mime_faraway_charset") == 0) return 0;     /* ok_locales all */
	if (strcmp(t, "mime_missing_boundary") == 0) return mm->msg.mime_missing_boundary;
	if (strcmp(t, "mime_multipart_alternative") == 0) return mm->multipart_alternative;
	if (strcmp(t, "mime_multipart_ratio") == 0) return mm->multipart_ratio != 0;
	if (strcmp(t, "mime_qp_count") == 0) return mm->qp_count != 0;
	if (strcmp(t, "mime_qp_long_line") == 0) return mm->qp_long_line;
	if (strcmp(t, "mime_qp_ratio") == 0) return mm->qp_ratio != 0;
	if (strcmp(t, "mime_ascii_text_illegal") == 0) return mm->ascii_text_illegal > 0;
	if (strcmp(t, "mime_text_unicode_ratio") == 0) return mm->text_unicode_ratio != 0;
	if (strcmp(t, "mime_bad_iso_charset") == 0) return mm->bad_iso_charset;
	if (strcmp(t, "mime_attachment") == 0) return mm->attachment > 0;
	return 0;      /* SA: a key never set (mimepart_limit_exceeded lives elsewhere) */
}

EVAL_FN(eval_check_for_mime_html)
{
	static struct eval_rx html = { "^text/html", RULE_RE_I, NULL };

	(void)call;
	if (eval_rx_str(c, &html, eval_get(c, "Content-Type")))
		return 1;
	return mime_get(c)->body_html_count > 0;
}

EVAL_FN(eval_check_for_mime_html_only)
{
	static struct eval_rx html = { "^text/html", RULE_RE_I, NULL };
	struct eval_mime *mm;

	(void)call;
	if (eval_rx_str(c, &html, eval_get(c, "Content-Type")))
		return 1;
	mm = mime_get(c);
	return mm->body_html_count > 0 && mm->body_text_count == 0;
}

EVAL_FN(eval_check_mime_multipart_ratio)
{
	struct eval_mime *mm = mime_get(c);

	return mm->multipart_ratio >= call->num[0] && mm->multipart_ratio < call->num[1];
}

EVAL_FN(eval_check_for_ascii_text_illegal)
{
	(void)call;
	return mime_get(c)->ascii_text_illegal > 0;
}

EVAL_FN(eval_check_abundant_unicode_ratio)
{
	/* SA's signature puts the body array first: the ratio is the only argument */
	const char *r = call->arg[call->nargs - 1];
	size_t i = 0, d = 0;

	while (isdigit((unsigned char)r[i]) && d < 3) {
		i++;
		d++;
	}
	if (r[i] != '.' || !isdigit((unsigned char)r[i + 1]))
		return 0;
	return mime_get(c)->text_unicode_ratio >= call->num[call->nargs - 1];
}

EVAL_FN(eval_check_qp_ratio)
{
	struct eval_mime *mm = mime_get(c);

	return mm->qp_ratio >= call->num[0];
}

EVAL_FN(eval_check_msg_parse_flags)
{
	struct eval_mime *mm = mime_get(c);
	const char *t = call->arg[call->nargs - 1];

	if (strcmp(t, "missing_head_body_separator") == 0) return mm->msg.missing_head_body_separator;
	if (strcmp(t, "missing_mime_head_body_separator") == 0)
		return mm->msg.missing_mime_head_body_separator;
	if (strcmp(t, "missing_mime_headers") == 0) return mm->msg.missing_mime_headers;
	if (strcmp(t, "mime_epilogue_exists") == 0) return mm->msg.mime_epilogue_exists;
	if (strcmp(t, "truncated_header") == 0) return mm->msg.truncated_header;
	if (strcmp(t, "mimepart_limit_exceeded") == 0) return mm->msg.mimepart_limit_exceeded;
	return 0;
}

EVAL_FN(eval_check_ma_non_text)
{
	struct eval_mime *mm = mime_get(c);
	int *order = eval_alloc(c, (mm->msg.nparts + 1) * sizeof(int));

	(void)call;
	for (size_t i = 0; i < mm->msg.nparts; i++) {
		const struct samsg_part *p = &mm->msg.parts[i];
		size_t n;

		if (strcmp(p->type, "multipart/alternative") != 0)
			continue;
		/* its leaves, the part itself excluded */
		n = mime_preorder(&mm->msg, (int)i, order, 0);
		for (size_t k = 1; k < n; k++) {
			const struct samsg_part *q = &mm->msg.parts[order[k]];

			if (q->nkids)
				continue;
			if (strcmp(q->type, "multipart/related") == 0 ||
			    strcmp(q->type, "application/rtf") == 0 || strncasecmp(q->type, "text/", 5) == 0)
				continue;
			return 1;
		}
	}
	return 0;
}

EVAL_FN(eval_check_base64_length)
{
	struct eval_mime *mm = mime_get(c);

	if (mm->base64_length < 0) {
		mm->base64_length = 0;
		for (size_t i = 0; i < mm->msg.nparts; i++) {
			const struct samsg_part *p = &mm->msg.parts[i];
			const char *cte = samsg_header(p, "Content-Transfer-Encoding");

			if (p->nkids || strcmp(p->type, "application/ics") == 0 || strcasecmp(cte, "base64") != 0)
				continue;
			for (size_t k = 0; k < p->nraw; k++)
				if ((int)p->raw[k].n > mm->base64_length)
					mm->base64_length = (int)p->raw[k].n;
		}
	}
	if (call->nargs > 1 && !isnan(call->num[1]) && mm->base64_length > call->num[1])
		return 0;
	return mm->base64_length >= call->num[0];
}

/* The rendered body lines (Subject first), as SA's body evals get them. */
static const struct rules_lines *mime_body(struct eval_ctx *c)
{
	return &c->sc->body;
}

EVAL_FN(eval_check_for_uppercase)
{
	static struct eval_rx two = { "\\S\\s+\\S", 0, NULL };
	static struct eval_rx b64 = { "^(?:[A-Za-z0-9+\\/=]{60,76} ){2}", 0, NULL };
	static struct eval_rx fpcs = { "^[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|"
		"windows-1251|georgianps|pt154|tis)[-_a-z0-9]*$", RULE_RE_I | RULE_RE_X, NULL };
	struct eval_mime *mm = mime_get(c);

	if (mm->uppercase < 0) {
		const struct rules_lines *body = mime_body(c);
		const char *ct = eval_get(c, "Content-Type"), *cs;
		double len = 0, lower = 0, upper = 0;
		bool fp = false;

		/* charsets likely to look like capitals: the message's, and every part's */
		if (ct[0]) {
			static struct eval_rx ctcs = { "charset=\"?'?([^\"'\\s;]+)", RULE_RE_I, NULL };
			size_t ov[4];

			if (eval_rx_groups(c, &ctcs, ct, strlen(ct), ov, 2))
				fp = eval_rx_str(c, &fpcs, eval_strndup(c, ct + ov[2], ov[3] - ov[2]));
		}
		for (cs = mm->html_charsets; cs && *cs && !fp;) {
			size_t n = strcspn(cs, " ");

			fp = eval_rx_str(c, &fpcs, eval_strndup(c, cs, n));
			cs += n;
			while (*cs == ' ')
				cs++;
		}
		mm->uppercase = 0;
		if (!fp) {
			for (size_t i = 0; i < body->nlines; i++) {
				const char *s;
				size_t n;

				rules_line_at(body, i, &s, &n);
				if (!eval_rx_match(c, &two, s, n) || eval_rx_match(c, &b64, s, n))
					continue;
				len += (double)n;
				for (size_t k = 0; k < n; k++) {
					if (islower((unsigned char)s[k]) || isdigit((unsigned char)s[k]))
						lower++;
					else if (isupper((unsigned char)s[k]))
						upper++;
				}
			}
			if (len >= 200 && upper + lower > 0)
				mm->uppercase = upper / (upper + lower) * 100;
		}
	}
	return mm->uppercase > call->num[0] && mm->uppercase <= call->num[1];
}

EVAL_FN(eval_check_body_8bits)
{
	(void)c;
	(void)call;
	return 0;        /* SA 4: only with the (unset) ok_locales restrictions */
}

EVAL_FN(eval_check_for_faraway_charset)
{
	(void)c;
	(void)call;
	return 0;        /* ok_locales all */
}

EVAL_FN(eval_check_blank_line_ratio)
{
	struct eval_mime *mm = mime_get(c);
	double minl = call->nargs > 2 && !isnan(call->num[2]) && call->num[2] >= 1 ? call->num[2] : 1;
	double nlines = 0, blank = 0, ratio;

	/* SA's decoded body text array (the decoded text parts in paragraphs), line by line */
	(void)mm;
	for (size_t i = 0; i < c->sc->rawbody.nlines; i++) {
		const char *s;
		size_t n;

		rules_line_at(&c->sc->rawbody, i, &s, &n);
		for (size_t a = 0; a < n;) {
			const char *e = memchr(s + a, '\n', n - a);
			size_t b = e ? (size_t)(e - s) + 1 : n;
			bool bl = true;

			for (size_t k = a; k < b && bl; k++)
				if (!isspace((unsigned char)s[k]))
					bl = false;
			nlines++;
			blank += bl;
			a = b;
		}
	}
	ratio = nlines < minl ? -1 : 100 * blank / nlines;
	return (call->num[0] == 0 && ratio <= call->num[1]) ||
	    (ratio > call->num[0] && ratio <= call->num[1]);
}

EVAL_FN(eval_tvd_vertical_words)
{
	struct eval_mime *mm = mime_get(c);
	double max = call->num[1] >= 100 ? 101 : call->num[1];

	if (mm->vertical < -1) {
		const struct rules_lines *body = mime_body(c);

		mm->vertical = -1;
		for (size_t i = 0; i < body->nlines; i++) {
			const char *s;
			size_t n, sp = 0;
			double pct;

			rules_line_at(body, i, &s, &n);
			if (n <= 5)
				continue;
			for (size_t k = 0; k < n; k++)
				sp += s[k] == ' ';
			if (sp > n - sp || n - sp == 0)
				pct = 100;
			else
				pct = (double)(int)(100.0 * (double)sp / (double)(n - sp));
			if (pct > mm->vertical)
				mm->vertical = pct;
		}
	}
	return mm->vertical >= call->num[0] && mm->vertical < max;
}

EVAL_FN(eval_check_body_length)
{
	const struct samsg *m = eval_samsg(c);
	size_t off = 0;

	/* SA: pristine_body_length, the bytes as received after the lines Message->new took
	 * for the header block (all of them: an empty body, 0 bytes) */
	for (size_t k = 0; k < m->head_lines && off < c->len; k++) {
		const char *nl = memchr(c->msg + off, '\n', c->len - off);

		off = nl ? (size_t)(nl - c->msg) + 1 : c->len;
	}
	return (double)(c->len - off) <= call->num[call->nargs - 1];
}

/* Counts words (whitespace-separated, with a \w character) of text into a small map. */
struct mime_words { char **w; size_t *n; size_t len, cap; };

/* Perl's \w on a character string, roughly: ASCII word characters, and characters above
 * U+00BF except general and CJK punctuation and U+FFFD. */
static bool mime_wide_word(const char *s, size_t l)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < l;) {
		uint32_t cp = u[i];
		size_t n = 1;

		if (cp >= 0xc0 && cp < 0xe0 && i + 1 < l) {
			cp = ((cp & 0x1fu) << 6) | (u[i + 1] & 0x3fu);
			n = 2;
		} else if (cp >= 0xe0 && cp < 0xf0 && i + 2 < l) {
			cp = ((cp & 0x0fu) << 12) | ((u[i + 1] & 0x3fu) << 6) | (u[i + 2] & 0x3fu);
			n = 3;
		} else if (cp >= 0xf0 && i + 3 < l) {
			cp = 0x10000;
			n = 4;
		}
		if (cp < 0x80 ? (isalnum((int)cp) || cp == '_') :
		    (cp >= 0xc0 && !(cp >= 0x2000 && cp <= 0x206f) && !(cp >= 0x3000 && cp <= 0x303f) &&
		    !(cp >= 0xff00 && cp <= 0xff0f) && cp != 0xfffd && cp != 0xd7 && cp != 0xf7))
			return true;
		i += n;
	}
	return false;
}

static void mime_words_add(struct mime_words *m, const char *s, size_t l, bool wide)
{
	bool word = false;

	for (size_t i = 0; i < l && !word; i++)
		word = isalnum((unsigned char)s[i]) || s[i] == '_';
	if (!word && wide)
		word = mime_wide_word(s, l);
	if (!word)
		return;
	for (size_t i = 0; i < m->len; i++)
		if (strlen(m->w[i]) == l && memcmp(m->w[i], s, l) == 0) {
			m->n[i]++;
			return;
		}
	if (m->len == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->w = realloc(m->w, m->cap * sizeof(char *));
		m->n = realloc(m->n, m->cap * sizeof(size_t));
		if (m->w == NULL || m->n == NULL)
			abort();
	}
	m->w[m->len] = strndup(s, l);
	if (m->w[m->len] == NULL)
		abort();
	m->n[m->len++] = 1;
}

/* split(/\s+/) and the words with a \w (Unicode semantics on a character string) */
static void mime_words_text(struct mime_words *m, const char *s, size_t l, bool wide)
{
	size_t i = 0, sp;

	while (i < l && m->len < 20000) {
		size_t j;

		while (i < l && (sp = wide ? charset_space_len(s + i, l - i) :
		    (isspace((unsigned char)s[i]) ? 1u : 0u)) != 0)
			i += sp;
		j = i;
		while (j < l && (wide ? charset_space_len(s + j, l - j) :
		    (isspace((unsigned char)s[j]) ? 1u : 0u)) == 0)
			j++;
		if (j > i)
			mime_words_add(m, s + i, j - i, wide);
		i = j;
	}
}

static void mime_words_free(struct mime_words *m)
{
	for (size_t i = 0; i < m->len; i++)
		free(m->w[i]);
	free(m->w);
	free(m->n);
	memset(m, 0, sizeof(*m));
}

/* BodyEval's _multipart_alternative_difference: how many words of the HTML alternative
 * the text one lacks, in percent (the most of all multipart/alternative parts). */
static void mime_madiff(struct eval_ctx *c, struct eval_mime *mm)
{
	const struct samsg *m = &mm->msg;
	int *order = eval_alloc(c, (m->nparts + 1) * sizeof(int));

	mm->madiff_done = true;
	mm->madiff = 0;
	mm->madiff_html = mm->madiff_text = 0;
	/* multipart/alternative holding just text/html and text/calendar: skipped */
	if (strcmp(m->parts[0].type, "multipart/alternative") == 0 && m->parts[0].nkids == 2 &&
	    !m->parts[m->parts[0].kids[0]].nkids && !m->parts[m->parts[0].kids[1]].nkids &&
	    strcmp(m->parts[m->parts[0].kids[0]].type, "text/html") == 0 &&
	    strcmp(m->parts[m->parts[0].kids[1]].type, "text/calendar") == 0)
		return;
	for (size_t i = 0; i < m->nparts; i++) {
		struct mime_words html = { 0 }, text = { 0 };
		size_t n, orig, left;

		if (strncmp(m->parts[i].type, "multipart/alternative", 21) != 0)
			continue;
		n = mime_preorder(m, (int)i, order, 0);
		for (size_t k = 1; k < n; k++) {
			const struct samsg_part *p = &m->parts[order[k]];
			const struct html_result *hr;

			if (strncmp(p->type, "text", 4) != 0 || p->nkids)
				continue;
			hr = eval_html_part(c, (size_t)order[k]);
			if (hr) {
				mime_words_text(&html, hr->rendered, hr->rendered_len, hr->wide);
				if (html.len == 0 && html_inside(hr, "img"))
					mime_words_add(&html, "\n_", 2, false);    /* SA's $html{"\n"} */
			} else if (strcmp(p->type, "text/plain") == 0) {
				/* rendered(): the text decoded to characters (normalize_charset) */
				size_t dl, ul;
				bool wide;
				char *own, *uown;
				const char *d = samsg_body(p, &dl, &own);
				const char *u = charset_normalize_view(d, dl, p->charset, false, &ul, &wide,
				    &uown);

				mime_words_text(&text, u, ul, wide);
				free(uown);
				free(own);
			}
		}
		orig = html.len;
		if (orig) {
			mm->madiff_html = orig;
			mm->madiff_text = text.len;
			left = orig;
			for (size_t a = 0; a < html.len; a++)
				for (size_t b = 0; b < text.len; b++)
					if (strcmp(html.w[a], text.w[b]) == 0) {
						if ((double)html.n[a] - (double)text.n[b] < 1)
							left--;
						break;
					}
			if ((double)left / (double)orig * 100 > mm->madiff)
				mm->madiff = (double)left / (double)orig * 100;
		}
		mime_words_free(&html);
		mime_words_free(&text);
	}
}

EVAL_FN(eval_multipart_alternative_difference)
{
	struct eval_mime *mm = mime_get(c);

	if (!mm->madiff_done)
		mime_madiff(c, mm);
	return (call->num[0] == 0 || mm->madiff > call->num[0]) &&
	    (isnan(call->num[1]) || mm->madiff <= call->num[1]);
}

EVAL_FN(eval_multipart_alternative_difference_count)
{
	struct eval_mime *mm = mime_get(c);

	if (!mm->madiff_done)
		mime_madiff(c, mm);
	if (!((double)mm->madiff_html > call->num[1]))
		return 0;
	return (double)mm->madiff_text / (double)mm->madiff_html > call->num[0];
}

/* BodyEval's check_stock_info: "Symbol:"-like labels of a stock tip in the first
 * text/plain part. */
EVAL_FN(eval_check_stock_info)
{
	static struct eval_rx label = { "^\\s*([^:\\s][^:\\n]{2,29})\\s*:\\s*\\S", RULE_RE_M, NULL };
	static struct eval_rx kw = { "(^trad(?:e|ing)date|company(?:name)?|s\\w?(?:t\\w?o\\w?c\\w?k|"
		"y\\w?m(?:\\w?b\\w?o\\w?l)?)|t(?:arget|icker)|(?:opening|current)p(?:rice)?|"
		"p(?:rojected|osition)|expectations|weeks?high|marketperformance|"
		"(?:year|week|month|day|price)(?:target|estimates?)|sector|r(?:ecommendation|ating))$",
		0, NULL };
	struct eval_mime *mm = mime_get(c);

	if (mm->stock_info < 0) {
		const struct samsg *m = &mm->msg;
		char seen[16][24];
		size_t nseen = 0;

		mm->stock_info = 0;
		for (size_t i = 0; i < m->nparts; i++) {
			const struct samsg_part *p = &m->parts[i];
			size_t dl, off = 0, ov[4];
			char *d;

			if (p->nkids || strcmp(p->type, "text/plain") != 0)
				continue;
			d = samsg_decode(p, &dl);
			while (off < dl && eval_rx_groups(c, &label, d + off, dl - off, ov, 2)) {
				char w[40];
				size_t o = 0, ov2[4];

				for (size_t k = ov[2]; k < ov[3] && o + 1 < sizeof(w); k++)
					if (isalpha((unsigned char)d[off + k]))
						w[o++] = (char)tolower((unsigned char)d[off + k]);
				w[o] = '\0';
				if (eval_rx_groups(c, &kw, w, o, ov2, 2)) {
					char key[24];
					bool dup = false;

					snprintf(key, sizeof(key), "%.*s", (int)(ov2[3] - ov2[2]), w + ov2[2]);
					for (size_t k = 0; k < nseen && !dup; k++)
						dup = strcmp(seen[k], key) == 0;
					if (!dup && nseen < 16)
						strcpy(seen[nseen++], key);
				}
				off += ov[1] > ov[0] ? ov[1] : ov[1] + 1;
			}
			free(d);
			break;              /* the first text/plain part only */
		}
		mm->stock_info = (int)nseen;
	}
	return call->num[0] == 0 || mm->stock_info >= call->num[0];
}
