/* mime.h — MIME decoding for body and uri rules.
 *
 * Uses GMime 3 (a maintained, well-fuzzed parser that already copes with nested
 * multiparts, message/rfc822, base64, quoted-printable, RFC 2047/2231 and charset
 * conversion to UTF-8): writing and hardening our own would add risk for no gain here,
 * because the message is already held in full at end of data. What is ours: limits on
 * parts, depth and decoded bytes (bounded work on hostile input), and a small HTML-to-text
 * renderer that also collects link targets. */
#ifndef MX_MIME_H
#define MX_MIME_H

#include <stdbool.h>
#include <stddef.h>

struct mime_text {
	char *text;      /* decoded to UTF-8, NUL-terminated (owned: GMime's string, g_free) */
	size_t len;
	bool html;       /* text/html */
};

struct mime_header { char *name; char *value; };   /* a MIME part's header, raw value */

struct mime_result {
	struct mime_text *parts; size_t nparts;    /* text parts, in document order */
	struct mime_header *hdrs; size_t nhdrs;    /* headers of every part but the top one */
	size_t nleaves;                            /* leaf parts seen (text or not) */
	bool truncated;                            /* a limit cut the work short */
};

struct mime_limits {
	size_t max_parts;        /* leaf parts examined (default 256) */
	size_t max_depth;        /* nesting (default 16) */
	size_t max_text;         /* decoded text bytes kept in all (default 2 MiB) */
};

/* Decodes msg (len bytes, a whole RFC 5322 message). lim may be NULL (defaults). Fills
 * *out (release with mime_result_free). Broken MIME yields whatever parts GMime can make
 * of it. Returns 0, or -1 when nothing could be parsed (*out is then empty but valid). */
int mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
    struct mime_result *out);
void mime_result_free(struct mime_result *r);

/* Renders HTML to text the way a reader sees it (tags dropped, block elements end lines,
 * script/style/comments skipped, entities decoded to UTF-8). When uri_cb is not NULL it
 * gets each href/src/action attribute value. Returns a malloc'd NUL-terminated string
 * (*outlen bytes). */
char *mime_html_to_text(const char *html, size_t len, size_t *outlen,
    void (*uri_cb)(const char *uri, size_t len, void *arg), void *arg);

/* Decodes RFC 2047 encoded-words in a header value to UTF-8 (malloc'd). */
char *mime_decode_header(const char *value);

#endif
