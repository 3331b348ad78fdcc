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

/* A tag whose value comes from the message's header view (addhdr_tag_from_message): its
 * text as written between the underscores ("HEADER(From:addr)", "RELAYSTRUSTED") and its
 * value (malloc'd; "" when the message has none). */
struct addhdr_mtag { char *tag; char *value; };

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
	const char *summary;        /* _SUMMARY_ (addhdr_summary_add), NULL: "" */
	const char *preview;        /* _PREVIEW_ (addhdr_preview), NULL: written as is */
	const char *contact;        /* _CONTACTADDRESS_ (report_contact), NULL: SA's default */
	time_t now;                 /* _DATE_ */
	const char *subversion;     /* _SUBVERSION_ */
	const struct addhdr_mtag *mtags;  /* the header view's tags (addhdr_mtags_collect) */
	size_t nmtags;
};

/* Is TAG (its name, n bytes) one whose value the message's header view gives: HEADER,
 * RELAYSTRUSTED, RELAYSUNTRUSTED, RELAYSINTERNAL, RELAYSEXTERNAL, LASTEXTERNALIP,
 * LASTEXTERNALRDNS, LASTEXTERNALHELO? */
bool addhdr_tag_from_message(const char *tag, size_t n);

/* Appends to *v (*n entries, malloc'd) each tag of tmpl addhdr_tag_from_message names that
 * *v does not hold yet, its value NULL for the caller to fill. */
void addhdr_mtags_collect(const char *tmpl, struct addhdr_mtag **v, size_t *n);
/* Releases v[0..n) and v. */
void addhdr_mtags_free(struct addhdr_mtag *v, size_t n);

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

/* The tags of tmpl addhdr_expand leaves as written ("_LANGUAGES_, _REMOTEHOSTNAME_"), into
 * buf (cut to len - 1); returns how many. */
size_t addhdr_unknown_tags(const char *tmpl, char *buf, size_t len);

/* Appends one hit's lines of _REPORT_ to *buf (malloc'd, *len its length; NULL at first):
 * "* SCORE RULE AREA" and the description wrapped at 75 columns (report_wrap_width) with
 * "*      " before each continuation, as PerMsgStatus::check_cleanup writes them. area:
 * "BODY: ", "RAW: ", "URI: ", "FULL: " or "". */
void addhdr_report_add(char **buf, size_t *len, double score, const char *rule,
    const char *area, const char *desc);

/* Appends one hit's lines of _SUMMARY_ (the report_safe report's table) to *buf as
 * PerMsgStatus::_build_summary writes them: "SCORE RULE-PADDED-TO-22 AREA" and the
 * description wrapped at 75 columns with 28 blanks before each continuation. */
void addhdr_summary_add(char **buf, size_t *len, double score, const char *rule,
    const char *area, const char *desc);

/* _PREVIEW_ (PerMsgStatus::get_content_preview) of the body text lines v[0..n) (the body
 * rules' view without the Subject line first, each line without its "\n"): the first three
 * lines up to 200 characters, tidied, wrapped at 75 columns. malloc'd. */
char *addhdr_preview(const char *const *v, const size_t *lens, size_t n);

/* report_safe 1 or 2: what SpamAssassin's rewrite_report_safe reads (Conf.pm's settings as
 * the rule files leave them). */
struct addhdr_safe {
	long mode;                  /* report_safe: 0, 1 (message/rfc822) or 2 (text/plain) */
	char *report;               /* report_template: each report line and its "\n" */
	char *unsafe_report;        /* unsafe_report_template, the same */
	char *contact;              /* report_contact, NULL: "the administrator of that system" */
	char *hostname;             /* report_hostname (_HOSTNAME_), NULL: mxgate's hostname */
	char *charset;              /* report_charset, NULL: "UTF-8" */
	char **copy; size_t ncopy;  /* report_safe_copy_headers */
	char *rewrite_from;         /* rewrite_header From STRING ("()" made "[]"), NULL: none */
	char *rewrite_to;           /* rewrite_header To STRING, the same */
};

/* rewrite_header's tags, expanded (addhdr_expand), for the wrapper; NULL: none. */
struct addhdr_rewrite { const char *subject, *from, *to; };

/* The message spamd's rewrite_report_safe makes of the spam message msg (len octets, its
 * line ending CRLF when its first or last line has one, as SpamAssassin's Message.pm
 * decides): the header block in SpamAssassin's order (received first, the report_safe_copy
 * Received fields, then the message's From To Cc Subject Date Message-Id as written (the
 * last of each), `added` (the X-Spam-* fields, "Name: value\n" lines), the other
 * report_safe_copy_headers fields, MIME-Version, Content-Type), a blank line and the
 * multipart body: the report (report, and unsafe_report after it when the message is not
 * text/plain) and the original message intact, as message/rfc822 (1) or text/plain (2).
 * rw: rewrite_header's tags (NULL: none): the Subject's in front of it, From's and To's
 * as a comment "\t(TAG)" at the end of the field (a CRLF message's too, before its CR,
 * where SpamAssassin's $ leaves a bare CR); received: the
 * "Received: ..." field written first ("\n"-ended lines); t, rnd: the boundary's two
 * numbers (time, random). Returns the message (malloc'd, *out_len octets). */
char *addhdr_safe_build(const struct addhdr_safe *c, const char *msg, size_t len,
    const char *report, const char *unsafe_report, const char *added,
    const struct addhdr_rewrite *rw, const char *received, unsigned long t, unsigned long rnd,
    size_t *out_len);

/* addhdr_safe_build for a message that is not in one piece, without a copy of it: msg (len
 * octets: its header block, blank line included, or all of it) followed by body (body_len
 * octets; NULL: none) is the original. The new message is out->head, msg, body, out->tail
 * (both malloc'd: addhdr_safe_parts_free); head holds the new header block, its blank line
 * and the body up to the original. */
struct addhdr_safe_parts { char *head, *tail; size_t head_len, tail_len; };
void addhdr_safe_build_parts(const struct addhdr_safe *c, const char *msg, size_t len,
    const char *body, size_t body_len, const char *report, const char *unsafe_report,
    const char *added, const struct addhdr_rewrite *rw, const char *received, unsigned long t,
    unsigned long rnd, struct addhdr_safe_parts *out);
void addhdr_safe_parts_free(struct addhdr_safe_parts *p);

/* Releases what c holds (not c). */
void addhdr_safe_clear(struct addhdr_safe *c);
/* A deep copy of c into *to. */
void addhdr_safe_copy(struct addhdr_safe *to, const struct addhdr_safe *c);

/* SpamAssassin's Util::wrap(s, prefix, first, width, 0, break): after_comma false breaks at
 * each white-space character (its default \s), true after white space or a comma (the
 * headers' "(?<=[\s,])"). malloc'd. */
char *addhdr_wrap(const char *s, const char *prefix, const char *first, size_t width,
    bool after_comma);

#endif
