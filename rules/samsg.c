/* samsg.c — SpamAssassin's MIME parse of a message; see samsg.h. */
#include "samsg.h"

#include "charset.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SAMSG_MAX_PARTS   1000
#define SAMSG_SUBPARSE    20
#define SAMSG_MAX_LINE    2048          /* SA's MAX_BODY_LINE_LENGTH */
#define SAMSG_MAX_KEY     256           /* SA's MAX_HEADER_KEY_LENGTH */
#define SAMSG_MAX_VALUE   65536         /* SA's MAX_HEADER_VALUE_LENGTH */
#define SAMSG_NESTED_FACTOR 2           /* decoded nested messages: at most twice the
                                         * message (samsg_nested_fits) */

static void *samsg_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

/* arr (n elements of size octets held, *cap room) with room for one more, its room doubled
 * from 8 when full: a message of many parts, boundaries or kept buffers costs a few
 * reallocs, not one each (each copying the array when it moved). */
static void *samsg_room(void *arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return arr;
	*cap = *cap ? *cap * 2 : 8;
	return samsg_xrealloc(arr, *cap * size);
}

static char *samsg_strndup(const char *s, size_t n)
{
	char *d = samsg_xrealloc(NULL, n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* Keeps a buffer alive until samsg_free. */
static char *samsg_keep(struct samsg *m, char *b)
{
	m->bufs = samsg_room(m->bufs, &m->bufcap, m->nbufs, sizeof(*m->bufs));
	m->bufs[m->nbufs++] = b;
	return b;
}

/* ---------------------------------------------------------------- content type */

static bool samsg_ci_word_at(const char *s, const char *w)
{
	return strncasecmp(s, w, strlen(w)) == 0;
}

/* \bNAME\s*=\s*["']?(.*?)["']?(?:;|$) — the value of a parameter. */
static char *samsg_param(const char *ct, const char *pname)
{
	size_t pl = strlen(pname);

	for (const char *p = ct; *p; p++) {
		const char *v, *e;

		if (p > ct && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
			continue;
		if (!samsg_ci_word_at(p, pname))
			continue;
		v = p + pl;
		while (isspace((unsigned char)*v))
			v++;
		if (*v != '=')
			continue;
		v++;
		while (isspace((unsigned char)*v))
			v++;
		if (*v == '"' || *v == '\'')
			v++;
		e = v;
		while (*e && *e != ';')
			e++;
		/* lazy (.*?) then an optional quote before ; or end */
		if (e > v && (e[-1] == '"' || e[-1] == '\''))
			e--;
		return samsg_strndup(v, (size_t)(e - v));
	}
	return NULL;
}

char *samsg_parse_content_type(const char *ct, char **boundary, char **charset, char **name,
    bool *missing)
{
	const char *s;
	char *t, *o;
	size_t n;
	bool miss = false;

	if (ct == NULL || *ct == '\0') {
		miss = true;
		ct = "text/plain; charset=us-ascii";
	}
	if (boundary) {
		*boundary = NULL;
		for (const char *p = ct; *p; p++) {
			const char *v, *e;

			if ((p > ct && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) ||
			    !samsg_ci_word_at(p, "boundary"))
				continue;
			v = p + 8;
			while (isspace((unsigned char)*v))
				v++;
			if (*v != '=')
				continue;
			v++;
			while (isspace((unsigned char)*v))
				v++;
			if (*v == '"') {
				e = v + 1;
				while (*e && *e != '"')
					e++;
				if (e == v + 1)
					continue;
			} else {
				e = v;
				while (*e && !isspace((unsigned char)*e) && *e != '"' && *e != ';')
					e++;
				if (e == v || (*e && !isspace((unsigned char)*e) && *e != ';'))
					continue;
			}
			/* tr/"//d */
			t = samsg_xrealloc(NULL, (size_t)(e - v) + 1);
			o = t;
			for (const char *q = v; q < e; q++)
				if (*q != '"')
					*o++ = *q;
			*o = '\0';
			*boundary = t;
			break;
		}
	}
	if (charset)
		*charset = samsg_param(ct, "charset");
	if (name) {
		*name = samsg_param(ct, "filename");
		if (*name == NULL)
			*name = samsg_param(ct, "name");
	}
	s = ct;
	while (isspace((unsigned char)*s))
		s++;
	n = strcspn(s, ";");
	t = samsg_strndup(s, n);
	/* only something/something */
	{
		char *slash = strchr(t, '/');
		size_t k;

		if (slash) {
			k = (size_t)(slash - t) + 1;
			while (t[k] && t[k] != '/' && !isspace((unsigned char)t[k]))
				k++;
			t[k] = '\0';
		}
	}
	for (o = t; *o; o++)
		*o = (char)tolower((unsigned char)*o);
	if (!t[0])
		miss = true;
	if (!t[0] || (strncmp(t, "text", 4) == 0 && !isalnum((unsigned char)t[4]) &&
	    t[4] != '_' && strcmp(t, "text/x-vcard") != 0 && strcmp(t, "text/calendar") != 0 &&
	    strcmp(t, "text/html") != 0)) {
		free(t);
		t = samsg_strndup("text/plain", 10);
	}
	/* strip inappropriate characters */
	o = t;
	for (const char *q = t; *q; q++) {
		unsigned char ch = (unsigned char)*q;

		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '(' || ch == ')' || ch == ',' ||
		    (ch >= ':' && ch <= '?') || ch == '@' || (ch >= '[' && ch <= ']'))
			continue;
		*o++ = (char)ch;
	}
	*o = '\0';
	if (missing)
		*missing = miss;
	return t;
}

/* ---------------------------------------------------------------- parts */

static int samsg_new_part(struct samsg *m, int parent, int depth)
{
	struct samsg_part *p;

	if (m->nparts == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->parts = samsg_xrealloc(m->parts, m->cap * sizeof(*m->parts));
	}
	p = &m->parts[m->nparts];
	memset(p, 0, sizeof(*p));
	p->parent = parent;
	p->depth = depth;
	p->type = samsg_strndup("text/plain", 10);
	if (parent >= 0) {
		struct samsg_part *q = &m->parts[parent];

		q->kids = samsg_room(q->kids, &q->kidcap, q->nkids, sizeof(*q->kids));
		q->kids[q->nkids++] = (int)m->nparts;
	}
	return (int)m->nparts++;
}

static bool samsg_has_high(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* Adds a header to a part: value unfolded (\n + blanks = one space), trimmed, decoded. */
static void samsg_add_header(struct samsg_part *p, const char *key, size_t kl, const char *val,
    size_t vl)
{
	char *v = samsg_xrealloc(NULL, vl + 1);
	size_t o = 0;

	for (size_t i = 0; i < vl; i++) {
		if (val[i] == '\r' && i + 1 < vl && val[i + 1] == '\n')
			continue;
		if (val[i] == '\n') {
			while (i + 1 < vl && (val[i + 1] == ' ' || val[i + 1] == '\t'))
				i++;
			v[o++] = ' ';
			continue;
		}
		v[o++] = val[i];
	}
	while (o && isspace((unsigned char)v[o - 1]))
		o--;
	v[o] = '\0';
	{
		size_t b = 0;

		while (v[b] && isspace((unsigned char)v[b]))
			b++;
		memmove(v, v + b, o - b + 1);
	}
	if (p->nhdrs == p->hdrcap) {   /* doubling: a message of many headers is not quadratic */
		p->hdrcap = p->hdrcap ? p->hdrcap * 2 : 2;   /* a MIME part has one or two */
		p->hdrs = samsg_xrealloc(p->hdrs, p->hdrcap * sizeof(*p->hdrs));
	}
	p->hdrs[p->nhdrs].name = samsg_strndup(key, kl);
	{
		char *r = samsg_xrealloc(NULL, vl + 1);
		size_t ro = 0;

		for (size_t i = 0; i < vl; i++)
			if (!(val[i] == '\r' && i + 1 < vl && val[i + 1] == '\n'))
				r[ro++] = val[i];
		r[ro] = '\0';
		p->hdrs[p->nhdrs].raw = r;
	}
	/* Node::header: _decode_header (UTF-8, RFC 2047) on the unfolded value */
	if (strstr(v, "=?") || samsg_has_high(v)) {
		char *d = charset_decode_header(v, p->hdrs[p->nhdrs].name);

		free(v);
		v = d;
	}
	p->hdrs[p->nhdrs].value = v;
	p->nhdrs++;
}

const char *samsg_header(const struct samsg_part *p, const char *name)
{
	const char *v = "";

	for (size_t i = 0; i < p->nhdrs; i++)
		if (strcasecmp(p->hdrs[i].name, name) == 0)
			v = p->hdrs[i].value;
	return v;
}

static bool samsg_is_hdr_line(const struct samsg_line *l, bool allow_blank_before_colon)
{
	size_t i = 0;

	while (i < l->n && (unsigned char)l->p[i] >= 0x21 && (unsigned char)l->p[i] <= 0x7e &&
	    l->p[i] != ':')
		i++;
	if (i == 0)
		return false;
	if (allow_blank_before_colon)
		while (i < l->n && (l->p[i] == ' ' || l->p[i] == '\t'))
			i++;
	return i < l->n && l->p[i] == ':';
}

static bool samsg_blank_line(const struct samsg_line *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (!isspace((unsigned char)l->p[i]))
			return false;
	return true;
}

/* ^--BOUNDARY(--)?\s*$ : 0 no, 1 a boundary, 2 the closing one */
static int samsg_boundary_line(const struct samsg_line *l, const char *b)
{
	size_t bl = strlen(b), i;

	if (l->n < 2 + bl || l->p[0] != '-' || l->p[1] != '-' || memcmp(l->p + 2, b, bl) != 0)
		return 0;
	i = 2 + bl;
	if (i + 1 < l->n + 0 && l->p[i] == '-' && l->p[i + 1] == '-') {
		size_t j = i + 2;

		while (j < l->n && isspace((unsigned char)l->p[j]))
			j++;
		if (j == l->n)
			return 2;
	}
	while (i < l->n && isspace((unsigned char)l->p[i]))
		i++;
	return i == l->n ? 1 : 0;
}

static int *samsg_bstate(struct samsg *m, const char *b)
{
	for (size_t i = 0; i < m->nbstate; i++)
		if (strcmp(m->bstate[i].b, b) == 0)
			return &m->bstate[i].state;
	m->bstate = samsg_room(m->bstate, &m->bstatecap, m->nbstate, sizeof(*m->bstate));
	m->bstate[m->nbstate].b = samsg_strndup(b, strlen(b));
	m->bstate[m->nbstate].state = 0;
	return &m->bstate[m->nbstate++].state;
}

struct samsg_job { int part; char *boundary; struct samsg_line *lines; size_t n; int subparse; };
struct samsg_queue { struct samsg_job *v; size_t head, n, cap; };

static bool pushed_last(const struct samsg_queue *q, int part)
{
	return q->n && q->v[q->n - 1].part == part;
}

static void samsg_push(struct samsg_queue *q, int part, const char *boundary,
    struct samsg_line *lines, size_t n, int subparse)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->v = samsg_xrealloc(q->v, q->cap * sizeof(*q->v));
	}
	q->v[q->n].part = part;
	q->v[q->n].boundary = boundary ? samsg_strndup(boundary, strlen(boundary)) : NULL;
	q->v[q->n].lines = lines;
	q->v[q->n].n = n;
	q->v[q->n].subparse = subparse;
	q->n++;
}

/* Splits text into lines ("\n" kept); with CRLF endings, "\r\n" becomes "\n" first.
 * borrow: text is NUL-terminated at len and lives until samsg_free (a nested message's
 * decoded text, kept): without CRLF endings the lines point into it, no copy (the copy
 * would be the same octets). Otherwise the lines point into a copy kept in m. */
static struct samsg_line *samsg_split(struct samsg *m, const char *text, size_t len, size_t *n,
    bool *crlf, bool borrow)
{
	const char *first_nl = memchr(text, '\n', len), *b;
	size_t o = 0, cap = 1, k = 0, start = 0;
	struct samsg_line *v;

	*crlf = (first_nl && first_nl > text && first_nl[-1] == '\r') ||
	    (len >= 2 && text[len - 1] == '\n' && text[len - 2] == '\r');
	if (borrow && !*crlf && !m->copy) {
		b = text;
		o = len;
	} else {
		char *c = samsg_keep(m, samsg_xrealloc(NULL, len + 1));

		for (size_t i = 0; i < len; i++) {
			if (*crlf && text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
				continue;
			c[o++] = text[i];
		}
		c[o] = '\0';
		b = c;
	}
	/* as many lines as the text has (its line breaks, and a last line without one): the
	 * array grown by doubling held up to twice them, at the parse's peak on a message of
	 * many short lines */
	for (const char *q = b; (q = memchr(q, '\n', o - (size_t)(q - b))) != NULL; q++)
		cap++;
	v = samsg_xrealloc(NULL, cap * sizeof(*v));
	for (size_t i = 0; i <= o; i++) {
		if (i == o || b[i] == '\n') {
			size_t e = i < o ? i + 1 : i;

			if (e > start) {
				v[k].p = b + start;
				v[k].n = e - start;
				k++;
			}
			start = e;
		}
	}
	*n = k;
	return v;
}

/* SA's Message->new: the header block of a message (or of a message/rfc822 part) into
 * part, and the body lines after it (blank-line runs over 20 cut). Returns the body. */
static struct samsg_line *samsg_read_message(struct samsg *m, int part, const char *text,
    size_t len, size_t *nbody, bool top)
{
	bool crlf;
	size_t n, i = 0, errors = 0, hstart = SIZE_MAX, hend = 0;
	/* the message's own text is the caller's (a pinned buffer, CRLF): copied; a nested
	 * message's is m's (kept) */
	struct samsg_line *lines = samsg_split(m, text, len, &n, &crlf, !top), *body;
	struct samsg_part *p = &m->parts[part];
	const char *hb = NULL;

	(void)crlf;
	if (n && strncmp(lines[0].p, "From ", 5) == 0 && lines[0].n > 5 && lines[0].p[5] != ':')
		i = 1;                 /* mbox separator */
	for (;; i++) {
		bool eof = i >= n;
		const struct samsg_line *cur = eof ? NULL : &lines[i];

		if (!eof && cur->n && (cur->p[0] == ' ' || cur->p[0] == '\t')) {
			if (hstart == SIZE_MAX)
				hstart = i;        /* a header starting with a continuation */
			hend = i + 1;
			continue;
		}
		if (hstart != SIZE_MAX) {
			/* the previous field: key before the first ':', value after */
			const char *s = lines[hstart].p;
			size_t tl = (size_t)(lines[hend - 1].p + lines[hend - 1].n - s);
			const char *colon = memchr(s, ':', tl);

			if (colon) {
				size_t kl = (size_t)(colon - s), vl = tl - kl - 1;

				while (kl && (s[kl - 1] == ' ' || s[kl - 1] == '\t'))
					kl--;
				if (kl > SAMSG_MAX_KEY) {
					kl = SAMSG_MAX_KEY;
					m->truncated_header = true;
				}
				if (vl > SAMSG_MAX_VALUE) {
					vl = SAMSG_MAX_VALUE;
					m->truncated_header = true;
				}
				samsg_add_header(p, s, kl, colon + 1, vl);
			}
			hstart = SIZE_MAX;
		}
		if (eof || (cur->n == 1 && cur->p[0] == '\n')) {
			if (eof && top)
				m->missing_head_body_separator = true;
			if (!eof)
				i++;
			break;
		}
		if (cur->n >= 2 && cur->p[0] == '-' && cur->p[1] == '-') {
			if (top)
				m->missing_head_body_separator = true;
			break;
		}
		if (!samsg_is_hdr_line(cur, true) && ++errors > 3) {
			if (top)
				m->missing_head_body_separator = true;
			break;
		}
		hstart = i;
		hend = i + 1;
	}
	(void)hb;
	if (top)
		m->head_lines = i;
	/* body lines; a run of more than 20 blank lines keeps its first and last 19 (a run
	 * at the very start of the body: its first two and last 19), as SA's splice does.
	 * They are moved down over the lines in place (a body line never goes after the line
	 * it was: k >= i + *nbody), not copied: the copy and the lines were both held at the
	 * parse's peak. */
	body = lines;
	*nbody = 0;
	for (size_t k = i; k < n;) {
		size_t e = k, len, head;

		if (!samsg_blank_line(&lines[k])) {
			body[(*nbody)++] = lines[k++];
			continue;
		}
		while (e < n && samsg_blank_line(&lines[e]))
			e++;
		len = e - k;
		head = k == i ? 2 : 1;
		for (size_t j = k; j < e; j++)
			if (len <= 19 + head || j < k + head || j >= e - 19)
				body[(*nbody)++] = lines[j];
		k = e;
	}
	return samsg_xrealloc(body, (*nbody + 2) * sizeof(*body));
}

static void samsg_set_type(struct samsg *m, int part, char **boundary)
{
	struct samsg_part *p = &m->parts[part];

	free(p->type);
	free(p->charset);
	free(p->name);
	free(p->boundary);
	p->type = samsg_parse_content_type(samsg_header(p, "Content-Type")[0] ?
	    samsg_header(p, "Content-Type") : NULL, &p->boundary, &p->charset, &p->name,
	    &p->ct_missing);
	if (boundary)
		*boundary = p->boundary;
}

static int samsg_b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : c == '=' ? 64 : -1;
}

/* Util::base64_decode: white space out; a clean text of whole quads goes to MIME::Base64
 * with '=' runs before the end read as 'A', anything else through SA's uudecode fallback
 * (other characters dropped, inner '=' worth 63). Both end up as the bit stream of the
 * digits before the final '=' run, cut to whole bytes. */
static size_t samsg_b64(const char *in, size_t n, char *out)
{
	unsigned char *v = samsg_xrealloc(NULL, n + 1);
	size_t k = 0, end, o = 0;
	bool clean = true;
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		int x;

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
			continue;
		x = samsg_b64val(c);
		if (x < 0) {
			clean = false;
			continue;
		}
		v[k++] = (unsigned char)x;
	}
	clean = clean && k % 4 == 0 && k >= 2;
	end = k;
	while (end && v[end - 1] == 64)
		end--;
	for (size_t i = 0; i < end; i++) {
		acc = (acc << 6) | (v[i] == 64 ? (clean ? 0u : 63u) : v[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	free(v);
	return o;
}

/* Util::qp_decode, its three substitutions in turn: white space before line ends out,
 * soft breaks out, then =XX decoded (so "==\n3D" is "="). */
static size_t samsg_qp(const char *s, size_t n, char *out)
{
	size_t o = 0, w = 0;

	for (size_t k = 0; k < n; k++) {
		if (s[k] == ' ' || s[k] == '\t') {
			size_t e = k;

			while (e < n && (s[e] == ' ' || s[e] == '\t'))
				e++;
			if (!(e < n && (s[e] == '\n' || (s[e] == '\r' && e + 1 < n && s[e + 1] == '\n')))) {
				memcpy(out + o, s + k, e - k);
				o += e - k;
			}
			k = e - 1;
			continue;
		}
		out[o++] = s[k];
	}
	for (size_t k = 0; k < o; k++) {
		if (out[k] == '=' && k + 1 < o && (out[k + 1] == '\n' ||
		    (out[k + 1] == '\r' && k + 2 < o && out[k + 2] == '\n'))) {
			k += out[k + 1] == '\n' ? 1 : 2;
			continue;
		}
		out[w++] = out[k];
	}
	o = w;
	w = 0;
	for (size_t k = 0; k < o; k++) {
		if (out[k] == '=' && k + 2 < o && isxdigit((unsigned char)out[k + 1]) &&
		    isxdigit((unsigned char)out[k + 2])) {
			char hx[3] = { out[k + 1], out[k + 2], 0 };

			out[w++] = (char)strtol(hx, NULL, 16);
			k += 2;
			continue;
		}
		out[w++] = out[k];
	}
	return w;
}

/* CRLF -> LF in place. */
static size_t samsg_crlf(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		s[o++] = s[i];
	}
	return o;
}

/* Message::Node::decode: by the exact Content-Transfer-Encoding. */
char *samsg_decode(const struct samsg_part *p, size_t *outlen)
{
	const char *cte = samsg_header(p, "Content-Transfer-Encoding");
	size_t total = 0, o = 0;
	char *raw, *out;

	for (size_t i = 0; i < p->nraw; i++)
		total += p->raw[i].n;
	raw = samsg_xrealloc(NULL, total + 1);
	for (size_t i = 0; i < p->nraw; i++) {
		memcpy(raw + o, p->raw[i].p, p->raw[i].n);
		o += p->raw[i].n;
	}
	raw[o] = '\0';
	if (strcasecmp(cte, "base64") == 0) {
		out = samsg_xrealloc(NULL, total + 1);
		o = samsg_b64(raw, total, out);
		if (strncasecmp(p->type, "text", 4) == 0 || strncasecmp(p->type, "message", 7) == 0) {
			/* ^(?:text|message)\b/ */
			size_t l = strncasecmp(p->type, "text", 4) == 0 ? 4 : 7;

			if (p->type[l] == '/')
				o = samsg_crlf(out, o);
		}
		free(raw);
	} else if (strcasecmp(cte, "quoted-printable") == 0) {
		out = samsg_xrealloc(NULL, total + 1);
		o = samsg_crlf(out, samsg_qp(raw, total, out));
		free(raw);
	} else {
		out = raw;
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

/* Are a leaf's decoded octets its raw lines as they lie (nothing to decode, the lines one
 * run of octets in the parse)? Then *t, *len are that run. */
static bool samsg_body_in_place(const struct samsg_part *p, const char **t, size_t *len)
{
	const char *cte = samsg_header(p, "Content-Transfer-Encoding");
	const char *start = NULL, *end = NULL;

	if (strcasecmp(cte, "base64") == 0 || strcasecmp(cte, "quoted-printable") == 0)
		return false;
	for (size_t i = 0; i < p->nraw; i++) {
		if (p->raw[i].n == 0)
			continue;
		if (start == NULL)
			start = p->raw[i].p;
		else if (p->raw[i].p != end)
			return false;  /* blank lines cut out between them */
		end = p->raw[i].p + p->raw[i].n;
	}
	*len = start ? (size_t)(end - start) : 0;
	*t = start ? start : "";
	return true;
}

/* A leaf's body as samsg_decode gives it; see samsg.h. */
const char *samsg_body(const struct samsg_part *p, size_t *len, char **owned)
{
	const char *t;

	*owned = NULL;
	if (samsg_body_in_place(p, &t, len))
		return t;
	*owned = samsg_decode(p, len);
	return *owned;
}

/* May the nested message in part p be decoded and parsed? Its decoded text is kept until
 * samsg_free, and each level holds the levels inside it: quoted-printable (or base64)
 * levels one inside the other held about 20 decoded copies of the message. Levels read in
 * place cost nothing; a decoded one costs its raw octets (what the decode can give at
 * most), counted before decoding, and the parse decodes SAMSG_NESTED_FACTOR times the
 * message at most. SpamAssassin has no such bound (its subparse is 20 levels, each
 * decoded whole); a level over it stays a leaf with its raw lines, as SA leaves the level
 * past its 20th: only crafted mail (more nested text than the message holds twice over)
 * scores otherwise. The same decision in both parses (the copying one decodes every
 * level, in place or not), so their trees stay equal. */
static bool samsg_nested_fits(struct samsg *m, const struct samsg_part *p)
{
	const char *t;
	size_t len, cost = 0;

	if (samsg_body_in_place(p, &t, &len))
		return true;
	for (size_t i = 0; i < p->nraw; i++)
		cost += p->raw[i].n;
	if (cost > m->nested_cap - m->nested_bytes) {
		m->nested_limit_exceeded = true;
		return false;
	}
	m->nested_bytes += cost;
	return true;
}

/* A message/rfc822 part's text for parsing in m: samsg_body, what it decoded kept in m.
 * Valid until samsg_free, *len octets. Each nested level decoded whole and then copied
 * again by the split held up to 2 x 20 levels of a message's size per scan. */
static const char *samsg_view(struct samsg *m, const struct samsg_part *p, size_t *len)
{
	char *own;
	const char *t;

	if (m->copy)
		return samsg_keep(m, samsg_decode(p, len));
	t = samsg_body(p, len, &own);
	if (own)
		samsg_keep(m, own);
	return t;
}

/* Keeps lines, cutting those over SA's MAX_BODY_LINE_LENGTH into pieces. */
static void samsg_leaf_push(struct samsg *m, struct samsg_line **arr, size_t *n, size_t *cap,
    struct samsg_line l)
{
	(void)m;
	while (l.n > SAMSG_MAX_LINE) {
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 32;
			*arr = samsg_xrealloc(*arr, *cap * sizeof(**arr));
		}
		(*arr)[*n].p = l.p;
		(*arr)[*n].n = SAMSG_MAX_LINE;      /* SA appends "\n"; length counts +1 */
		(*n)++;
		l.p += SAMSG_MAX_LINE;
		l.n -= SAMSG_MAX_LINE;
	}
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		*arr = samsg_xrealloc(*arr, *cap * sizeof(**arr));
	}
	(*arr)[(*n)++] = l;
}

/* Frees what a part owns (its headers, raw lines, kids and attributes), not the part. */
static void samsg_part_free(struct samsg_part *p)
{
	for (size_t k = 0; k < p->nhdrs; k++) {
		free(p->hdrs[k].name);
		free(p->hdrs[k].value);
		free(p->hdrs[k].raw);
	}
	free(p->hdrs);
	free(p->raw);
	free(p->kids);
	free(p->type);
	free(p->boundary);
	free(p->charset);
	free(p->name);
}

/* Removes the newest part (a part begun but never finished, as SA drops its Node). */
static void samsg_drop_last(struct samsg *m)
{
	struct samsg_part *p = &m->parts[m->nparts - 1];

	if (p->parent >= 0)
		m->parts[p->parent].nkids--;
	samsg_part_free(p);
	m->nparts--;
}

static void samsg_parse_multipart(struct samsg *m, struct samsg_queue *q, struct samsg_job *j)
{
	struct samsg_line *body = j->lines;
	size_t n = j->n, start = 0, line_count;
	const char *b = j->boundary;
	int subparse = j->subparse - 1, part = -1, partcnt = 0;
	bool nested = false, in_body = false;
	size_t hstart = SIZE_MAX, hend = 0;
	struct samsg_line *arr = NULL;
	size_t narr = 0, carr = 0;

	/* the preamble: up to the first boundary */
	for (size_t i = 0; i < n; i++)
		if (samsg_boundary_line(&body[i], b) == 1) {
			*samsg_bstate(m, b) = 1;
			if (i + 1 < n && !samsg_is_hdr_line(&body[i + 1], false))
				m->missing_mime_headers = true;
			start = i + 1;
			break;
		}
	part = samsg_new_part(m, j->part, m->parts[j->part].depth + 1);
	line_count = n - start;
	for (size_t i = start; i < n; i++) {
		struct samsg_line *l = &body[i];
		int bl = samsg_boundary_line(l, b);
		bool end = bl != 0, last = bl == 2;

		if (end && nested) {
			end = false;
			if (last)
				nested = false;
		}
		if (--line_count == 0 || end) {
			struct samsg_part *pp;
			char *pb;

			if (!end) {
				samsg_leaf_push(m, &arr, &narr, &carr, *l);
			} else if (narr) {
				/* the line break before the boundary belongs to it */
				struct samsg_line *t = &arr[narr - 1];

				if (t->n && t->p[t->n - 1] == '\n')
					t->n--;
				if (t->n == 0)
					narr--;
			}
			if (hstart != SIZE_MAX && !in_body) {
				/* headers only, no body: SA keeps the last header in $header unused */
			}
			samsg_set_type(m, part, &pb);
			pp = &m->parts[part];
			if (pp->ct_missing && strcmp(m->parts[j->part].type, "multipart/digest") == 0) {
				free(pp->type);
				pp->type = samsg_strndup("message/rfc822", 14);
			}
			samsg_push(q, part, pb ? pb : b, arr, narr, subparse);
			arr = NULL;
			narr = carr = 0;
			if (last) {
				(*samsg_bstate(m, b))--;
				break;
			} else if (line_count && !samsg_is_hdr_line(&body[n - line_count], false)) {
				m->missing_mime_headers = true;
			}
			if (++partcnt == SAMSG_MAX_PARTS || m->nparts >= SAMSG_MAX_PARTS) {
				m->mimepart_limit_exceeded = true;
				return;
			}
			in_body = false;
			hstart = SIZE_MAX;
			if (line_count == 0)
				break;         /* no part begins after the last line */
			part = samsg_new_part(m, j->part, m->parts[j->part].depth + 1);
			continue;
		}
		if (!in_body) {
			if (samsg_is_hdr_line(l, true)) {
				if (hstart != SIZE_MAX) {
					const char *s = body[hstart].p;
					size_t tl = (size_t)(body[hend - 1].p + body[hend - 1].n - s);
					const char *colon = memchr(s, ':', tl);
					size_t kl = (size_t)(colon - s);
					const char *v = colon + 1;

					while (v < s + tl && isspace((unsigned char)*v))
						v++;
					samsg_add_header(&m->parts[part], s, kl, v, (size_t)(s + tl - v));
				}
				hstart = i;
				hend = i + 1;
				continue;
			}
			if (l->n && (l->p[0] == ' ' || l->p[0] == '\t') && hstart != SIZE_MAX) {
				hend = i + 1;
				continue;
			}
			if (hstart != SIZE_MAX) {
				const char *s = body[hstart].p;
				size_t tl = (size_t)(body[hend - 1].p + body[hend - 1].n - s);
				const char *colon = memchr(s, ':', tl);
				size_t kl = (size_t)(colon - s);
				const char *v = colon + 1;

				while (v < s + tl && isspace((unsigned char)*v))
					v++;
				samsg_add_header(&m->parts[part], s, kl, v, (size_t)(s + tl - v));
				if (kl == 12 && strncasecmp(s, "content-type", 12) == 0) {
					char *nb = NULL, *t;

					t = samsg_parse_content_type(samsg_header(&m->parts[part],
					    "Content-Type"), &nb, NULL, NULL, NULL);
					if (nb && strcmp(nb, b) == 0)
						nested = true;
					free(nb);
					free(t);
				}
				hstart = SIZE_MAX;
			}
			in_body = true;
			if (l->n == 1 || (l->n == 2 && l->p[0] == '\r'))
				continue;
			m->missing_mime_head_body_separator = true;
		}
		samsg_leaf_push(m, &arr, &narr, &carr, *l);
	}
	free(arr);
	if (part >= 0 && (size_t)part == m->nparts - 1 && m->parts[part].raw == NULL &&
	    !m->parts[part].nkids && !pushed_last(q, part))
		samsg_drop_last(m);
	/* text after the closing boundary */
	for (; line_count > 0; line_count--) {
		const struct samsg_line *l = &body[n - line_count];

		for (size_t k = 0; k < l->n; k++)
			if (!isspace((unsigned char)l->p[k]) && l->p[k] != '.') {
				m->mime_epilogue_exists = true;
				return;
			}
	}
}

static void samsg_parse_as(struct samsg *m, const char *msg, size_t len, bool copy)
{
	struct samsg_queue q = { 0 };
	struct samsg_line *body;
	size_t nbody;
	char *b = NULL;
	int top;

	memset(m, 0, sizeof(*m));
	m->copy = copy;
	m->nested_cap = len > SIZE_MAX / SAMSG_NESTED_FACTOR ? SIZE_MAX : len * SAMSG_NESTED_FACTOR;
	top = samsg_new_part(m, -1, 0);
	body = samsg_read_message(m, top, msg, len, &nbody, true);
	samsg_set_type(m, top, &b);
	/* a multipart body not starting with its boundary gets a blank line first */
	if (strncmp(m->parts[top].type, "multipart/", 10) == 0 && nbody > 1 &&
	    !samsg_blank_line(&body[0]) && (b == NULL || !(body[0].n >= 2 + strlen(b) &&
	    body[0].p[0] == '-' && body[0].p[1] == '-' && memcmp(body[0].p + 2, b, strlen(b)) == 0))) {
		static const char nl[] = "\n";

		body = samsg_xrealloc(body, (nbody + 1) * sizeof(*body));
		memmove(body + 1, body, nbody * sizeof(*body));
		body[0].p = nl;
		body[0].n = 1;
		nbody++;
	}
	samsg_push(&q, top, b, body, nbody, SAMSG_SUBPARSE);
	while (q.head < q.n) {
		struct samsg_job j = q.v[q.head++];
		struct samsg_part *p = &m->parts[j.part];

		if (strncmp(p->type, "multipart/", 10) == 0 && j.boundary && j.subparse > 0) {
			samsg_parse_multipart(m, &q, &j);
			free(j.lines);
		} else {
			/* a leaf: its lines as they are. _parse_normal: a multipart type with no
			 * boundary is malformed, read as text/plain */
			if (!p->ct_missing && strncmp(p->type, "multipart/", 10) == 0 && !j.boundary) {
				free(p->type);
				p->type = samsg_strndup("text/plain", 10);
			}
			p->raw = j.lines;
			p->nraw = j.n;
			if (strncmp(p->type, "message/", 8) == 0 && strcmp(p->type, "message/partial") &&
			    j.subparse > 0 && (strcmp(p->type, "message/rfc822") == 0 ||
			    strcmp(p->type, "message/global") == 0) && m->nparts < SAMSG_MAX_PARTS &&
			    samsg_nested_fits(m, p)) {
				size_t dl, nb2;
				const char *d = samsg_view(m, p, &dl);

				if (dl) {
					int sub = samsg_new_part(m, j.part, p->depth + 1);
					struct samsg_line *b2 = samsg_read_message(m, sub, d, dl, &nb2, false);
					char *bb = NULL;

					samsg_set_type(m, sub, &bb);
					samsg_push(&q, sub, bb, b2, nb2, j.subparse - 1);
					p = &m->parts[j.part];
					free(p->raw);       /* SA deletes the raw of a parsed message */
					p->raw = NULL;
					p->nraw = 0;
				}
			}
		}
		free(j.boundary);
	}
	for (size_t i = q.head; i < q.n; i++) {
		free(q.v[i].boundary);
		free(q.v[i].lines);
	}
	free(q.v);
	for (size_t i = 0; i < m->nbstate; i++)
		if (m->bstate[i].state != 0)
			m->mime_missing_boundary = true;
}

void samsg_parse(struct samsg *m, const char *msg, size_t len)
{
	samsg_parse_as(m, msg, len, false);
}

void samsg_parse_copying(struct samsg *m, const char *msg, size_t len)
{
	samsg_parse_as(m, msg, len, true);
}

void samsg_free(struct samsg *m)
{
	for (size_t i = 0; i < m->nparts; i++)
		samsg_part_free(&m->parts[i]);
	free(m->parts);
	for (size_t i = 0; i < m->nbufs; i++)
		free(m->bufs[i]);
	free(m->bufs);
	for (size_t i = 0; i < m->nbstate; i++)
		free(m->bstate[i].b);
	free(m->bstate);
	memset(m, 0, sizeof(*m));
}
