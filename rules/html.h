/* html.h — SpamAssassin's analysis of an HTML part (Mail::SpamAssassin::HTML 4.0.1 over
 * HTML::Parser): tag counts and balance, text style (colours, sizes) with low-contrast and
 * invisible text, images and their area, comments, titles, anchors, obfuscation and
 * "back hair" between tags, the rendered text. What the HTML evals (eval_html.c) test.
 * Bounded and free of I/O. */
#ifndef MX_HTML_H
#define MX_HTML_H

#include <stdbool.h>
#include <stddef.h>

struct html_count { char *tag; int n; };

struct html_result {
	/* flags set while parsing (put_results x => 1) */
	bool font_low_contrast, font_invalid_color, font_face_bad, form_action_mailto, embeds;
	bool uri_truncated, iframe;
	double length;                   /* bytes of HTML source */
	double image_area, max_size, min_size;
	/* ratios, each defined only when its counts exist */
	bool has_tags, has_elements, has_seen, has_obfuscation, has_backhair;
	double closed_extra_ratio, bad_tag_ratio, non_element_ratio, obfuscation_ratio;
	size_t backhair_count;
	struct html_count *inside; size_t ninside;   /* open - close, per tag seen */
	char **comment; size_t ncomment;
	char **title; size_t ntitle;
	char **anchor; size_t nanchor;           /* the text of each <a> ... */
	char **anchor_href;                      /* ... and its href ("" when none) */
	char **link_uri, **link_type; size_t nlink;  /* push_uri: each link target and the
	                                              * tag that carried it (SA's types) */
	char *charsets;                  /* from <meta http-equiv=Content-Type>; NULL */
	/* rendering */
	char *rendered; size_t rendered_len;
	bool wide;                       /* Perl would hold the rendered text as characters */
	double html_length, non_space_len;
};

/* Analyses len bytes of HTML, UTF-8 text (as SA's normalize_charset has it). Fills *r (free with html_result_free). uri_cb (may be NULL)
 * gets each link target SA collects (href, src, action, background, meta refresh ...). */
void html_analyze(const char *text, size_t len, struct html_result *r,
    void (*uri_cb)(const char *uri, size_t len, void *arg), void *arg);
void html_result_free(struct html_result *r);

/* r->inside[tag] or NULL when the tag never appeared. */
const struct html_count *html_inside(const struct html_result *r, const char *tag);

#endif
