/* addhdr.h — SpamAssassin's `add_header` fields as spamd writes them (report_safe 0):
 * the template tags (Mail::SpamAssassin::Conf "TEMPLATE TAGS", PerMsgStatus::_replace_tags),
 * the folding (_process_header with fold_headers 1) and the RFC 2047 encoding of a line that
 * is not printable ASCII (mime_encode_header). Pure functions: unit-tested directly. */
#ifndef MX_ADDHDR_H
#define MX_ADDHDR_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* One add_header line: the field X-Spam-NAME and its template (Conf.pm's escapes done). */
struct addhdr_spec { char *name; char *tmpl; };

/* What a message's tags expand to. */
struct addhdr_vals {
	double score, required;
	const char *const *tests;   /* the tests hit, sorted, a tflags multiple one per hit */
	const double *test_scores;  /* each one's score (a hit's), for _TESTSSCORES_ */
	size_t ntests;
	const char *autolearn;      /* _AUTOLEARN_: "no autolearn_force=no", "disabled", ... */
	const char *version;        /* _VERSION_ */
	const char *hostname;       /* _HOSTNAME_ */
	double bayes;               /* _BAYES_: the classifier's probability, < 0 when none */
	const char *report;         /* _REPORT_'s text after its first "\n" (addhdr_report_add) */
	time_t now;                 /* _DATE_ */
};

/* _replace_tags: each _TAG_ or _TAG(ARG)_ mxgate knows becomes its value, any other stays
 * as written (SpamAssassin leaves a tag no one sets as written too). Returns a malloc'd
 * string. */
char *addhdr_expand(const char *tmpl, const struct addhdr_vals *v);

/* The value of the field X-Spam-NAME as spamd writes it: tags expanded, then folded (a
 * value with a line break: each run of white space holding one becomes "\n\t"; else
 * SpamAssassin's Util::wrap at 79 columns after white space or a comma), then each line
 * that is not printable ASCII RFC 2047-encoded. malloc'd. */
char *addhdr_value(const char *name, const char *tmpl, const struct addhdr_vals *v);

/* Is TAG (n bytes, without the underscores and any "(ARG)") one addhdr_expand expands? */
bool addhdr_tag_known(const char *tag, size_t n);

/* The tags of tmpl addhdr_expand leaves as written ("_PREVIEW_, _HEADER(From)_"), into
 * buf (cut to len - 1); returns how many. */
size_t addhdr_unknown_tags(const char *tmpl, char *buf, size_t len);

/* Appends one hit's lines of _REPORT_ to *buf (malloc'd, *len its length; NULL at first):
 * "* SCORE RULE AREA" and the description wrapped at 75 columns (report_wrap_width) with
 * "*      " before each continuation, as PerMsgStatus::check_cleanup writes them. area:
 * "BODY: ", "RAW: ", "URI: ", "FULL: " or "". */
void addhdr_report_add(char **buf, size_t *len, double score, const char *rule,
    const char *area, const char *desc);

/* SpamAssassin's Util::wrap(s, prefix, first, width, 0, break): after_comma false breaks at
 * each white-space character (its default \s), true after white space or a comma (the
 * headers' "(?<=[\s,])"). malloc'd. */
char *addhdr_wrap(const char *s, const char *prefix, const char *first, size_t width,
    bool after_comma);

#endif
