/* html_int.h — what html.c, html_text.c and html_link.c share. Private to the HTML
 * analysis. */
#ifndef MX_HTML_INT_H
#define MX_HTML_INT_H

#include "html.h"

#include <stdbool.h>
#include <stddef.h>

/* A growing NUL-terminated buffer (aborts when out of memory). */
struct html_buf { char *p; size_t n, cap; };

void html_put(struct html_buf *b, const char *s, size_t n);
/* cp as UTF-8 (U+FFFD for NUL, surrogates and out-of-range values). */
void html_put_utf8(struct html_buf *b, unsigned long cp);
/* Decodes the entities of s[0..n) into out (HTML::Parser's decode_entities; attr: the
 * rules for attribute values). */
void html_decode(const char *s, size_t n, struct html_buf *out, bool attr);
/* SA's name_to_rgb: a colour name or value as "#rrggbb" in out; false (out "invalid")
 * when it is not one. */
bool html_name_to_rgb(const char *in, char out[16]);
/* SA's parse_css_background: the colour of a CSS background value, if any. */
bool html_css_background(const char *v, char out[16]);

/* ---- the parser (html.c), shared with html_link.c */

struct html_style {
	char tag[16];
	char fg[16], bg[16];
	double size;
	char display[16], visibility[16];
};

#define HTML_MAX_LIST    4096       /* comments, titles, anchors kept */

struct html_state {
	struct html_result *r;
	void (*uri_cb)(const char *, size_t, void *);
	void *uri_arg;
	char *base_href;               /* <base href>, made a directory URL; NULL */
	struct html_style *st; size_t nst, capst;
	double basefont;
	double tags, elements, tags_seen, elements_seen, closed_extra, obfuscation;
	bool seen_tags, seen_elements, seen_tags_seen, seen_elements_seen, seen_obf;
	/* display text: pieces with whitespace / invisible flags */
	struct html_buf text;          /* all pieces joined */
	const size_t *run_at;          /* html_run's input not rendered yet starts here (NULL */
	size_t run_len;                /* outside it), of run_len octets: text grows to fit it */
	size_t last_start;             /* where the last piece begins */
	bool have_last, last_ws, last_invis;
	char **backhair; size_t nbackhair;
	int title_index;
	bool in_anchor_text;
	const char *cur_tag;           /* the tag html_uri reads (push_uri's type) */
};

struct html_attr { char name[32]; char *value; };

/* The value of attribute name (lower case), NULL when absent. */
const char *html_attr(const struct html_attr *a, size_t n, const char *name);
/* html_link.c: SA's html_uri, the links a start tag carries (to h->uri_cb). */
void html_uri(struct html_state *h, const char *tag, struct html_attr *a, size_t na);
/* An <a>'s href as SA's html_uri leaves it (WORD/href taking over, byte order marks out);
 * malloc'd, NULL when there is none. */
char *html_href(const struct html_attr *a, size_t na);

#endif
