/* rule_parse.h — the rule-file parser: SpamAssassin's common rule syntax plus mxgate's
 * `envelope` and `action` extensions. Bounded and free of I/O (the caller reads files and
 * feeds their text), so it can be unit-tested and fuzzed.
 *
 * A `struct rule_src` collects every rule definition of a generation; feeding several
 * files in order lets later `score`/`describe`/`tflags` lines override earlier ones as in
 * SpamAssassin. Errors read "FILE:LINE:COL: reason". */
#ifndef MX_RULE_PARSE_H
#define MX_RULE_PARSE_H

#include <stdbool.h>
#include <stddef.h>

enum rule_kind {
	RULE_HEADER = 0,   /* header NAME Hdr =~ /re/ | exists:Hdr */
	RULE_BODY,         /* rendered text, per paragraph */
	RULE_RAWBODY,      /* decoded text parts, unrendered, per line */
	RULE_FULL,         /* the whole raw message */
	RULE_URI,          /* each URL found in text and HTML parts */
	RULE_MIMEHEADER,   /* headers of each MIME part */
	RULE_META,         /* expression over other rules */
	RULE_ENVELOPE,     /* mxgate: helo | from | rcpt | ip =~ /re/, ip CIDR */
	RULE_SYMBOL,       /* no definition here: a symbol set by a filter/plugin */
	RULE_NKINDS
};

enum rule_hdr_sel {
	HDR_SEL_VALUE = 0, /* decoded value (RFC 2047), unfolded */
	HDR_SEL_RAW,       /* :raw */
	HDR_SEL_ADDR,      /* :addr */
	HDR_SEL_NAME,      /* :name */
	HDR_SEL_EXISTS,    /* exists:Name */
};

enum rule_env_field { ENV_HELO = 0, ENV_FROM, ENV_RCPT, ENV_IP, ENV_IP_CIDR, ENV_RDNS };

enum rule_skip {
	SKIP_NONE = 0,
	SKIP_EVAL,         /* eval: a function mxgate does not implement (rules/eval.c) */
	SKIP_NET,          /* tflags net: network tests off */
	SKIP_REGEX,        /* a Perl regex PCRE2 cannot compile */
	SKIP_ZERO,         /* score 0 disables a scoring rule */
	SKIP_META_DEP,     /* meta depending on a broken expression */
	SKIP_NREASONS
};

enum rule_action {
	RULE_ACT_NONE = 0, RULE_ACT_ACCEPT, RULE_ACT_TEMPFAIL, RULE_ACT_REJECT,
	RULE_ACT_DISCARD, RULE_ACT_QUARANTINE,
};

#define RULE_TF_NET      0x01u
#define RULE_TF_NICE     0x02u
#define RULE_TF_MULTIPLE 0x04u
#define RULE_TF_NOSCORE  0x08u   /* mxgate: a non-scoring test (like a __ rule) */
#define RULE_TF_LEARN    0x10u
#define RULE_TF_USERCONF 0x20u
#define RULE_TF_NOSUBJECT 0x40u  /* body rules: the Subject line (the first) not searched */
#define RULE_TF_NOAUTOLEARN 0x80u   /* left out of autolearn's points */
#define RULE_TF_AL_FORCE  0x100u   /* autolearn_force: no 3 header + 3 body points needed */
#define RULE_TF_AL_HEADER 0x200u   /* autolearn_header: its points count as header points */
#define RULE_TF_AL_BODY   0x400u   /* autolearn_body: ... as body points */

struct rule_def {
	char *name;
	enum rule_kind kind;
	char *re;            /* regex source (between delimiters), NULL for meta/exists/eval */
	unsigned re_flags;   /* RULE_RE_* */
	bool negate;         /* !~ */
	char *hdr;           /* header name (ALL, ToCc, MESSAGEID pseudo-headers kept verbatim) */
	char *hdr_req;       /* the name with its selectors as written ("From:name:raw") */
	enum rule_hdr_sel sel;
	char *if_unset;      /* [if-unset: X] or NULL */
	char *expr;          /* meta expression */
	char *eval_fn;       /* eval:NAME(ARGS): the function name, NULL for other rules */
	char *eval_args;     /* ... and the text between the parentheses ("" for none) */
	enum rule_env_field env_field;
	char *cidr;          /* ENV_IP_CIDR */
	double score;
	double score_bayes;  /* score set 2 (Bayes on, network off): the 3rd of 4 values */
	bool has_score;      /* a `score` line named it */
	bool defined;        /* a rule line (not only score/describe) */
	char *desc;
	unsigned tflags;
	int maxhits;
	int priority;        /* SA's priority: the order rules run in (lower first) */
	enum rule_action action;
	enum rule_skip skip;
	bool replace_tags;   /* named by replace_rules */
	char *re_compact;    /* ReplaceTags rules: the same with tags as subroutine calls, for
	                      * when re is too large for PCRE2 */
	char *file; int line, col;   /* where defined (for errors) */
};

#define RULE_RE_I 0x1u
#define RULE_RE_M 0x2u
#define RULE_RE_S 0x4u
#define RULE_RE_X 0x8u

struct rule_src;

/* An empty collection. NULL only on out-of-memory. */
struct rule_src *rule_src_new(void);
void rule_src_free(struct rule_src *s);

/* Declares which SpamAssassin plugins `ifplugin`/`plugin(...)` treat as loaded (NULL-
 * terminated; default: the plugins Debian's spamd loads whose regex rules we can run). */
void rule_src_set_plugins(struct rule_src *s, const char *const *names);

/* Parses one file's text (len bytes; NUL bytes are errors on their line). file names it
 * in errors. Work is linear in len; lines longer than 64 KiB are errors. Returns the
 * number of errors found in this text (0 = clean); each is kept, see rule_src_errors(). */
int rule_src_feed(struct rule_src *s, const char *file, const char *text, size_t len);

/* SpamAssassin's `include FILE`: the parser resolves FILE against the including file's
 * directory (an absolute path stays) and calls fn(s, path, file, line, col, arg) at that
 * point of the feed; fn reads the file (or a directory's *.cf) and feeds it, or reports
 * why not with rule_src_add_error. The parser stays free of I/O: without fn (the default)
 * an include line is an error. Includes nest at most 16 deep. */
typedef void (*rule_include_fn)(struct rule_src *s, const char *path, const char *file,
    int line, int col, void *arg);
void rule_src_set_include(struct rule_src *s, rule_include_fn fn, void *arg);

/* Resolves scores, replace_tags and meta references after the last feed. Call once. */
void rule_src_finish(struct rule_src *s);

/* The rules (definitions and score-only names), in definition order. Borrowed until
 * rule_src_free. */
size_t rule_src_count(const struct rule_src *s);
struct rule_def *rule_src_get(struct rule_src *s, size_t i);
/* Index of name or -1. */
long rule_src_find(const struct rule_src *s, const char *name);

/* Errors as "FILE:LINE:COL: reason" lines, borrowed. */
size_t rule_src_nerrors(const struct rule_src *s);
const char *rule_src_error(const struct rule_src *s, size_t i);
/* Warnings (not errors: the load is clean): SpamAssassin settings an operator expects to
 * act that mxgate reads but does not apply (rewrite_header From/To; required_score not 5),
 * as "FILE:LINE:COL: warning: reason" lines, borrowed. */
size_t rule_src_nwarnings(const struct rule_src *s);
const char *rule_src_warning(const struct rule_src *s, size_t i);

/* Adds an error (used by the compiler for regexes / meta expressions). */
void rule_src_add_error(struct rule_src *s, const char *file, int line, int col,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Counts: directives ignored (not rules), lines skipped by if/ifplugin. */
size_t rule_src_ignored(const struct rule_src *s);
/* The directives read and not applied (SA features mxgate does not run): "NAME N, ..." by
 * count then name, malloc'd; NULL when there are none. */
char *rule_src_ignored_list(const struct rule_src *s);

/* Settings lines the evals read (freemail_domains, trusted_networks, util_rb_2tld, ...), in
 * file order: key (the directive) and value (the rest of the line). Borrowed. */
size_t rule_src_nsettings(const struct rule_src *s);
void rule_src_setting(const struct rule_src *s, size_t i, const char **key, const char **value);

/* The header fields `bayes_ignore_header NAME...` lines name (SpamAssassin's: the classifier
 * does not tokenize them), from the lines the if/ifplugin blocks leave active: lower case,
 * once each, in file order: sets *n, returns the array (borrowed until rule_src_free). */
const char *const *rule_src_ignore_headers(const struct rule_src *s, size_t *n);
/* The STRING of the last `rewrite_header Subject STRING` (template tags unexpanded), NULL
 * when none or when a later one with no STRING removed it (SpamAssassin's Conf.pm). */
const char *rule_src_rewrite_subject(const struct rule_src *s);
/* The report_safe settings in effect (a deep copy into *out: addhdr_safe_clear it). */
struct addhdr_safe;
void rule_src_safe(const struct rule_src *s, struct addhdr_safe *out);

/* SpamAssassin's headers_spam (spam) or headers_ham list after the add_header,
 * remove_header and clear_headers lines read (10_default_prefs.cf's before them): sets *v,
 * returns the count (borrowed until rule_src_free). */
struct addhdr_spec;
size_t rule_src_headers(const struct rule_src *s, bool spam, const struct addhdr_spec **v);

/* Parses "/re/flags" or "m{re}flags" at *p. On success returns 0, sets *re (malloc'd),
 * *flags and advances *p past the flags. -1 with *err on a malformed regex. */
int rule_parse_regex(const char **p, char **re, unsigned *flags, const char **err);

#endif
