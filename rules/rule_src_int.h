/* rule_src_int.h — what the rule-file parser's files share (not for callers outside
 * rules/): the rule collection, its helpers, the `if` evaluator. rule_parse.c reads lines
 * into definitions, rule_src.c keeps the collection (plugins, errors, settings, lookup,
 * ReplaceTags and finishing), rule_cond.c evaluates `if` expressions. */
#ifndef MX_RULE_SRC_INT_H
#define MX_RULE_SRC_INT_H

#include "addhdr.h"
#include "rule_parse.h"

#include <stdbool.h>
#include <stddef.h>

#define RULE_MAX_LINE   65536
#define RULE_MAX_DEPTH  64
#define RULE_MAX_RULES  200000
#define RULE_MAX_ERRORS 1000
#define RULE_MAX_IGNORE 4096   /* bayes_ignore_header names kept */
#define RULE_MAX_INCLUDE 16    /* include nesting */

struct rule_tag { char *name; char *value; int kind; /* 0 tag 1 pre 2 post 3 inter */ };

struct rule_setting { char *key, *value; };

struct rule_src {
	struct rule_def *v; size_t n, cap;
	struct rule_setting *settings; size_t nsettings, settings_cap;
	char **ignore_hdrs; size_t nignore_hdrs, ignore_hdrs_cap;   /* bayes_ignore_header */
	char *rewrite_subject;                /* rewrite_header Subject STRING; NULL = none */
	/* add_header / remove_header / clear_headers: SpamAssassin's headers_ham and
	 * headers_spam lists, from 10_default_prefs.cf's on */
	struct addhdr_spec *hdrs[2]; size_t nhdrs[2];   /* [0] ham, [1] spam */
	/* the last report_safe line: its value, file and line (NULL: none read) */
	long report_safe; char *report_safe_file; int report_safe_line;
	/* report, unsafe_report, report_contact, report_charset, report_safe_copy_headers
	 * (safe.mode unused: report_safe above) */
	struct addhdr_safe safe;
	long *index; size_t index_cap;        /* open addressing over v, -1 = empty */
	char **errors; size_t nerrors, errors_cap;
	char **warnings; size_t nwarnings, warnings_cap;   /* "FILE:LINE:COL: warning: ..." */
	size_t ignored;
	struct rule_ignored { char *name; size_t n; } *ign; size_t nign;   /* not applied, by name */
	char **plugins; size_t nplugins;
	char **compat; size_t ncompat;        /* enable_compat flags: can(Conf::compat_X) */
	struct rule_tag *tags; size_t ntags, tags_cap;
	char tag_start[8], tag_end[8];
	bool finished;
	rule_include_fn include_fn; void *include_arg; int include_depth;
	/* if-stack of the file being fed */
	bool cond[RULE_MAX_DEPTH]; int depth;
};

char *rule_strndup(const char *s, size_t n);
char *rule_strdup(const char *s);
void *rule_grow(void *v, size_t *cap, size_t need, size_t size);
bool rule_has_plugin(const struct rule_src *s, const char *name, size_t len);
bool rule_sa_can(const struct rule_src *s, const char *name, size_t len);
/* Is the word one of SpamAssassin 4.0.1's directives (any case, - for _)? */
bool rule_sa_directive_known(const char *w, size_t n);
/* enable_compat NAME: 0, or -1 when NAME is not SA's [A-Za-z0-9_]{1,128} */
int rule_enable_compat(struct rule_src *s, const char *name, size_t len);
/* Returns the rule named name (creating an empty, undefined one), NULL when full. */
struct rule_def *rule_get_or_add(struct rule_src *s, const char *name, size_t len);
/* Keeps a setting the evals read; false when key is none of those. */
bool rule_keep_setting(struct rule_src *s, const char *key, size_t kl, const char *value);
/* Counts a directive mxgate reads and does not apply (for -t's list). */
void rule_note_ignored(struct rule_src *s, const char *key, size_t kl);
void rule_src_add_warning(struct rule_src *s, const char *file, int line, int col,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A bayes_ignore_header name (len bytes): kept lower case, once. -1 when the list is full. */
int rule_add_ignore_header(struct rule_src *s, const char *name, size_t len);
void rule_add_tag(struct rule_src *s, int kind, const char *name, size_t nl, const char *value);
/* Sets the add_header lists to SpamAssassin's defaults (10_default_prefs.cf). */
void rule_src_default_headers(struct rule_src *s);
/* add_header WHICH NAME TEMPLATE (which: 1 ham, 2 spam, 3 all; tmpl with Conf.pm's escapes
 * done): the field goes to the end of the lists named, any field of that name (any case)
 * removed first. NULL tmpl: remove_header (X-Spam-Checker-Version stays). */
void rule_src_set_header(struct rule_src *s, int which, const char *name, size_t nl,
    const char *tmpl);
/* clear_headers: the lists emptied but for Checker-Version. */
void rule_src_clear_headers(struct rule_src *s);
/* SA's `if` expression: 1 true, 0 false, -1 syntax error. */
int rule_cond_eval(struct rule_src *s, const char *text);
const char *rule_skip_ws(const char *p);
bool rule_word_is(const char *p, const char *e, const char *w);

#endif
