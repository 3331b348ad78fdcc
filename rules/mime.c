/* mime.c — GMime-based decoding of text parts plus an HTML renderer; see mime.h. */
#include "mime.h"
#include "proxy/growbuf.h"

#include "charset.h"

#include <ctype.h>
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void mime_init_once(void)
{
	g_mime_init();
}

struct mime_walk {
	struct mime_result *r;
	struct mime_limits lim;
	size_t text_total;
	size_t parts_cap, hdrs_cap;
};

static void *mime_grow(void *v, size_t *cap, size_t need, size_t size)
{
	void *p;
	size_t nc;

	if (need <= *cap)
		return v;
	nc = *cap ? *cap * 2 : 8;
	while (nc < need)
		nc *= 2;
	p = realloc(v, nc * size);
	if (p == NULL)
		abort();
	*cap = nc;
	return p;
}

static char *mime_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL)
		abort();
	return d;
}

static void mime_collect_headers(struct mime_walk *w, GMimeObject *obj)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	int n = hl ? g_mime_header_list_get_count(hl) : 0;

	for (int i = 0; i < n && w->r->nhdrs < 4096; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *v = g_mime_header_get_raw_value(h);
		struct mime_header *mh;

		w->r->hdrs = mime_grow(w->r->hdrs, &w->hdrs_cap, w->r->nhdrs + 1, sizeof(*mh));
		mh = &w->r->hdrs[w->r->nhdrs++];
		mh->name = mime_xstrdup(g_mime_header_get_name(h));
		mh->value = mime_xstrdup(v);
	}
}

static void mime_add_text(struct mime_walk *w, GMimeTextPart *tp, bool html)
{
	char *t = g_mime_text_part_get_text(tp);
	size_t len;
	struct mime_text *mt;

	if (t == NULL)
		return;
	len = strlen(t);
	if (w->text_total + len > w->lim.max_text) {
		len = w->lim.max_text - w->text_total;
		w->r->truncated = true;
	}
	w->text_total += len;
	w->r->parts = mime_grow(w->r->parts, &w->parts_cap, w->r->nparts + 1, sizeof(*mt));
	mt = &w->r->parts[w->r->nparts++];
	/* GMime's string is kept (cut where the limit cuts), not copied: it held a second
	 * copy of the part's text for a moment */
	t[len] = '\0';
	mt->text = t;
	mt->len = len;
	mt->html = html;
}

static void mime_walk_object(struct mime_walk *w, GMimeObject *obj, size_t depth, bool top)
{
	if (obj == NULL)
		return;
	if (depth > w->lim.max_depth || w->r->nleaves >= w->lim.max_parts) {
		w->r->truncated = true;
		return;
	}
	if (!top)
		mime_collect_headers(w, obj);
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)obj);

		if (m)
			mime_walk_object(w, g_mime_message_get_mime_part(m), depth + 1, false);
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = (GMimeMultipart *)obj;
		int n = g_mime_multipart_get_count(mp);

		for (int i = 0; i < n; i++)
			mime_walk_object(w, g_mime_multipart_get_part(mp, i), depth + 1, false);
		return;
	}
	w->r->nleaves++;
	if (GMIME_IS_TEXT_PART(obj)) {
		GMimeContentType *ct = g_mime_object_get_content_type(obj);
		const char *sub = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;
		bool html = sub && strcasecmp(sub, "html") == 0;

		if (w->text_total < w->lim.max_text)
			mime_add_text(w, (GMimeTextPart *)obj, html);
		else
			w->r->truncated = true;
	}
}

/* Parses msg with GMime and collects the text parts; see mime.h. */
int mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
    struct mime_result *out)
{
	struct mime_walk w = { .r = out };
	int rc = -1;
	GByteArray *ba;
	GMimeStream *st;
	GMimeParser *parser;
	GMimeMessage *m;

	memset(out, 0, sizeof(*out));
	pthread_once(&mime_once, mime_init_once);
	w.lim.max_parts = lim && lim->max_parts ? lim->max_parts : 256;
	w.lim.max_depth = lim && lim->max_depth ? lim->max_depth : 16;
	w.lim.max_text = lim && lim->max_text ? lim->max_text : 2u << 20;
	/* GMime reads msg where it is: a byte array over it that the stream does not own
	 * (the parser only reads, so msg stays as it was; the parts' contents are pieces of
	 * the stream, GMime's persistent parse). g_mime_stream_mem_new_with_buffer copied the
	 * whole message first. The array's own struct is freed after the last reader. */
	if (len > G_MAXUINT)
		return -1;             /* a GByteArray's length is a guint */
	ba = g_byte_array_new_take((guint8 *)(uintptr_t)msg, len);
	st = g_mime_stream_mem_new_with_byte_array(ba);
	if (st == NULL) {
		g_byte_array_free(ba, FALSE);
		return -1;
	}
	g_mime_stream_mem_set_owner((GMimeStreamMem *)st, FALSE);
	parser = g_mime_parser_new_with_stream(st);
	g_object_unref(st);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	if (m != NULL) {
		mime_walk_object(&w, g_mime_message_get_mime_part(m), 0, true);
		g_object_unref(m);
		rc = 0;
	}
	g_byte_array_free(ba, FALSE);
	return rc;
}

void mime_result_free(struct mime_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nparts; i++)
		g_free(r->parts[i].text);
	free(r->parts);
	for (size_t i = 0; i < r->nhdrs; i++) {
		free(r->hdrs[i].name);
		free(r->hdrs[i].value);
	}
	free(r->hdrs);
	memset(r, 0, sizeof(*r));
}

char *mime_decode_header(const char *value)
{
	char *g, *d;

	pthread_once(&mime_once, mime_init_once);
	g = g_mime_utils_header_decode_text(NULL, value);
	d = mime_xstrdup(g ? g : value);
	g_free(g);
	return d;
}

/* ---------------------------------------------------------------- HTML rendering */

struct mime_buf { char *p; size_t n, cap; };

static void mime_put(struct mime_buf *b, const char *s, size_t n)
{
	growbuf_append(&b->p, &b->n, &b->cap, 256, s, n);
}

static void mime_put_utf8(struct mime_buf *b, unsigned long cp)
{
	char u[4];

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	mime_put(b, u, charset_utf8_encode((uint32_t)cp, u));
}

static const struct { const char *name; unsigned cp; } mime_entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "nbsp", 0xa0 }, { "copy", 0xa9 }, { "reg", 0xae }, { "euro", 0x20ac },
	{ "pound", 0xa3 }, { "trade", 0x2122 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
	{ "hellip", 0x2026 }, { "laquo", 0xab }, { "raquo", 0xbb }, { "shy", 0xad },
	{ NULL, 0 }
};

/* Decodes the entity at s (after '&'); returns bytes consumed (0 = not an entity). */
static size_t mime_entity(const char *s, size_t n, struct mime_buf *b)
{
	size_t i = 0;

	if (n > 1 && s[0] == '#') {
		unsigned long cp = 0;
		bool hex = n > 2 && (s[1] == 'x' || s[1] == 'X');

		i = hex ? 2 : 1;
		while (i < n && i < 10 && (hex ? isxdigit((unsigned char)s[i]) :
		    isdigit((unsigned char)s[i]))) {
			int c = (unsigned char)s[i];

			cp = cp * (hex ? 16 : 10) + (unsigned long)(isdigit(c) ? c - '0' :
			    (tolower(c) - 'a' + 10));
			i++;
		}
		if (i == (hex ? 2u : 1u))
			return 0;
		mime_put_utf8(b, cp);
		return i < n && s[i] == ';' ? i + 1 : i;
	}
	for (int k = 0; mime_entities[k].name; k++) {
		size_t l = strlen(mime_entities[k].name);

		if (l <= n && strncasecmp(s, mime_entities[k].name, l) == 0) {
			mime_put_utf8(b, mime_entities[k].cp);
			return l < n && s[l] == ';' ? l + 1 : l;
		}
	}
	return 0;
}

static bool mime_tag_is(const char *name, size_t nl, const char *w)
{
	return strlen(w) == nl && strncasecmp(name, w, nl) == 0;
}

static const char *const mime_block_tags[] = {
	"br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
	"blockquote", "pre", "hr", "title", "td", "th", "dd", "dt", "center", "section",
	"article", "header", "footer", "form", "body", "html", NULL
};

/* Extracts attribute values that carry links from a tag body. */
static void mime_tag_uris(const char *t, size_t n,
    void (*uri_cb)(const char *, size_t, void *), void *arg)
{
	size_t i = 0;

	while (i < n) {
		size_t ns, ne, vs, ve;

		while (i < n && (isspace((unsigned char)t[i]) || t[i] == '/'))
			i++;
		ns = i;
		while (i < n && !isspace((unsigned char)t[i]) && t[i] != '=' && t[i] != '/')
			i++;
		ne = i;
		while (i < n && isspace((unsigned char)t[i]))
			i++;
		if (i >= n || t[i] != '=') {
			if (i == ns)
				i++;
			continue;
		}
		i++;
		while (i < n && isspace((unsigned char)t[i]))
			i++;
		if (i < n && (t[i] == '"' || t[i] == '\'')) {
			char q = t[i++];

			vs = i;
			while (i < n && t[i] != q)
				i++;
			ve = i;
			if (i < n)
				i++;
		} else {
			vs = i;
			while (i < n && !isspace((unsigned char)t[i]))
				i++;
			ve = i;
		}
		if (mime_tag_is(t + ns, ne - ns, "href") || mime_tag_is(t + ns, ne - ns, "src") ||
		    mime_tag_is(t + ns, ne - ns, "action") ||
		    mime_tag_is(t + ns, ne - ns, "background")) {
			/* skip leading blanks inside the quotes */
			while (vs < ve && isspace((unsigned char)t[vs]))
				vs++;
			if (ve > vs)
				uri_cb(t + vs, ve - vs, arg);
		}
	}
}

char *mime_html_to_text(const char *h, size_t n, size_t *outlen,
    void (*uri_cb)(const char *, size_t, void *), void *arg)
{
	struct mime_buf b = { 0 };
	size_t i = 0;
	const char *skip_until = NULL;   /* "</script" or "</style" */

	mime_put(&b, "", 0);
	while (i < n) {
		char c = h[i];

		if (skip_until) {
			size_t sl = strlen(skip_until);

			if (c == '<' && i + sl <= n && strncasecmp(h + i, skip_until, sl) == 0)
				skip_until = NULL;
			else {
				i++;
				continue;
			}
		}
		if (c == '<') {
			size_t j, ns, ne;
			bool close = false;

			if (i + 3 < n && strncmp(h + i, "<!--", 4) == 0) {
				const char *e = NULL;

				for (j = i + 4; j + 2 < n; j++)
					if (h[j] == '-' && h[j + 1] == '-' && h[j + 2] == '>') {
						e = h + j;
						break;
					}
				i = e ? (size_t)(e - h) + 3 : n;
				continue;
			}
			j = i + 1;
			if (j < n && h[j] == '/') {
				close = true;
				j++;
			}
			if (j >= n || !(isalpha((unsigned char)h[j]) || h[j] == '!' || h[j] == '?')) {
				mime_put(&b, "<", 1);   /* a bare '<' is text */
				i++;
				continue;
			}
			ns = j;
			while (j < n && (isalnum((unsigned char)h[j]) || h[j] == '!' || h[j] == '?'))
				j++;
			ne = j;
			while (j < n && h[j] != '>')
				j++;
			if (uri_cb && !close)
				mime_tag_uris(h + ne, j - ne, uri_cb, arg);
			if (!close && mime_tag_is(h + ns, ne - ns, "script"))
				skip_until = "</script";
			else if (!close && mime_tag_is(h + ns, ne - ns, "style"))
				skip_until = "</style";
			for (int k = 0; mime_block_tags[k]; k++)
				if (mime_tag_is(h + ns, ne - ns, mime_block_tags[k])) {
					mime_put(&b, "\n", 1);
					break;
				}
			if (mime_tag_is(h + ns, ne - ns, "p") && !close)
				mime_put(&b, "\n", 1);
			i = j < n ? j + 1 : n;
			continue;
		}
		if (c == '&') {
			size_t used = mime_entity(h + i + 1, n - i - 1, &b);

			if (used) {
				i += used + 1;
				continue;
			}
		}
		mime_put(&b, &c, 1);
		i++;
	}
	*outlen = b.n;
	return b.p;
}
