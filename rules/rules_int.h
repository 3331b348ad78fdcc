/* rules_int.h — what the files of the rules engine share (not for callers outside rules/):
 * the compiled set, the per-thread scratch with the message views, and the helpers that
 * build them. rules.c (hook module, generations), rules_compile.c (loading, compiling),
 * rules_view.c (headers, body, URIs of a message), rules_scan.c (running the rules). */
#ifndef MX_RULES_INT_H
#define MX_RULES_INT_H

#include "addhdr.h"
#include "rules.h"
#include "eval.h"
#include "match.h"
#include "meta.h"

#include <stdatomic.h>
#include <time.h>

#define RULES_MAX_LINES  20000        /* body/rawbody lines examined per message */
#define RULES_LINE_SPLIT 2048         /* SA splits long paragraphs near this size */
#define RULES_MAX_MULTI  1000         /* hit count cap for tflags multiple */
#define RULES_BUDGET_MS  5000         /* per message: rules left after this do not run */

struct rules_rule {
	char *name;
	enum rule_kind kind;
	double score;                /* score set 0 (no Bayes, no network tests) */
	double score_bayes;          /* score set 2, when the classifier is available */
	char *desc;
	unsigned tflags;
	int maxhits;
	int priority;
	enum rule_action action;
	bool active;                 /* runnable (or a symbol) */
	bool scoring;                /* reported as a hit: not __, score or action set */
	bool has_score;
	/* regex kinds */
	struct match_re *re;
	bool unset_known, unset_hit;  /* header rules: the result when the header is unset */
	bool negate;
	/* SA 4's capture rules: a named group (?<NAME>...) of a match sets the tag NAME; a
	 * template rule (%{NAME} in its regex) runs with the tag's values in its place */
	bool capture;
	char *tmpl_tag;              /* template: the tag SA replaces (the last %{NAME}) */
	char *hdr;
	char *hdr_req;                       /* with its selectors: what get() is asked */
	enum rule_hdr_sel sel;
	char *if_unset;
	/* meta */
	struct meta_expr *meta;
	/* envelope */
	enum rule_env_field env_field;
	struct cfg_cidr cidr;
	/* eval */
	struct eval_call *ev;
	char *eval_fn;               /* an eval mxgate does not implement (unknown) */
	bool unknown;                /* SA runs it, mxgate cannot: metas see [0, 1] */
	_Atomic uint64_t hits;
};

/* An eval function the rule files use that mxgate does not implement. */
struct rules_missing { char *fn; size_t rules, metas; };

struct rules_set {
	struct rules_rule *r; size_t n, cap;
	size_t *kind_idx[RULE_NKINDS]; size_t nkind[RULE_NKINDS];
	unsigned eval_needs;                 /* EVAL_NEED_* of every eval rule, or'ed */
	bool uses_bayes;                     /* a check_bayes rule runs: classify first */
	size_t *tmpl; size_t ntmpl;          /* template rules, decided after the regexes */
	size_t *meta_order; size_t nmeta;
	size_t nmeta_loops; const char *meta_loop;  /* metas dropped for a dependency loop; one */
	/* body, rawbody, uri prefilters: published once built (maybe by a background thread,
	 * as vectorscan needs seconds for the stock SA rules); NULL = PCRE2 only for now */
	_Atomic(struct match_multi *) pre[RULE_NKINDS];
	struct match_multi *pending[RULE_NKINDS];
	atomic_size_t prefiltered;
	struct rules_stats st;
	struct rule_src *src;                    /* for name lookup during compile */
	size_t *evals; size_t nevals;            /* eval rules mxgate runs */
	struct eval_conf *conf;                  /* what they read */
	struct rules_missing *missing; size_t nmissing;
	char *ignored_list;                  /* rule_src_ignored_list, for -t */
	char **ignore_hdrs; size_t nignore_hdrs;  /* bayes_ignore_header, for the classifier */
	char *rewrite_subject;                   /* rewrite_header Subject STRING, or NULL */
	struct addhdr_spec *hdrs[2]; size_t nhdrs[2];   /* add_header lists: [0] ham, [1] spam */
	struct addhdr_safe safe;                 /* report_safe and its report templates */
	atomic_int refs;
};

/* A growing NUL-terminated byte buffer. */
struct rules_buf { char *p; size_t n, cap; };

/* A text of lines joined by '\n'; off[i] = start offset, line i ends before the next
 * start - 1 (or at n). At most RULES_MAX_LINES lines and UINT32_MAX octets (the views'
 * texts are a few MB: RULES_MAX_TEXT). room: what the text can reach at most, as far as
 * the builder knows (0: nothing known), so that b grows to it, not by doubling past it. */
struct rules_lines { struct rules_buf b; uint32_t *off; size_t nlines, cap, room; };

struct rules_hfield {
	const char *name; size_t nlen;   /* the key before ':', trailing blanks off */
	const char *raw; size_t rlen;    /* after the ':' to the end of the field, as received */
	const char *field; size_t flen;  /* the whole field as received */
	char *saraw;                     /* lazily: SA's raw value (CRLF as LF) */
	char *unfolded;                  /* lazily: unfolded, trimmed */
	char *decoded;                   /* lazily: and decoded (charset.c) */
};
struct rules_scratch {
	struct match_scratch *ms;
	struct timespec deadline;
	bool over_budget;
	bool prefilter;
	const struct bayes_result *bayes;    /* the classifier's verdict for the next scan */
	const struct match_multi *prepared[RULE_NKINDS];
	double *values;  size_t nvalues;
	uint8_t *cand;   size_t ncand;
	struct rules_hfield *h; size_t nh, hcap;
	bool hcrlf;                          /* SA's line ending is CRLF */
	size_t hstart, hend;                 /* the header block (mbox line and blank line out) */
	struct rules_lines body, rawbody, uris;
	struct rules_buf tmp, allhdr;
	bool allhdr_done;
	double *hi;                     /* upper bounds of values (unknown rules) */
	uint8_t *skipped;               /* per rule: not run, the time budget was spent */
	struct rules_tag { char *name; struct rules_buf v; size_t n; } *tags;
	size_t ntags, tagcap;           /* captured tags of this message: values '\0'-ended */
	struct rules_buf capbuf;        /* the running rule's captures: name\0value\0 ... */
	size_t ncap;
	struct eval_msg *em;            /* per-message eval state */
	struct eval_ctx ctx;            /* what evals and header views get */
};

char *rules_xstrdup(const char *s);
void rules_opts_from_config(const struct mx_config *cfg, struct rules_opts *o);
struct rules_set *rules_set_ref(struct rules_set *rs);

void rules_buf_put(struct rules_buf *b, const char *s, size_t n);
void rules_lines_add(struct rules_lines *l, const char *s, size_t n);
void rules_lines_reset(struct rules_lines *l);
void rules_lines_free(struct rules_lines *l);
void rules_lines_swap(struct rules_lines *a, struct rules_lines *b);

static inline void rules_line_at(const struct rules_lines *l, size_t i, const char **s,
    size_t *n)
{
	size_t e = i + 1 < l->nlines ? l->off[i + 1] - 1 : l->b.n;

	*s = l->b.p + l->off[i];
	*n = e - l->off[i];
}

/* Message views (rules_hdr.c, rules_view.c). */
void rules_scratch_clear_headers(struct rules_scratch *sc);
size_t rules_parse_headers(struct rules_scratch *sc, const char *m, size_t len);
const char *rules_hfield_raw(struct rules_scratch *sc, struct rules_hfield *f);
const char *rules_hfield_unfolded(struct rules_scratch *sc, struct rules_hfield *f);
const char *rules_hfield_decoded(struct rules_scratch *sc, struct rules_hfield *f);
bool rules_name_is(const struct rules_hfield *f, const char *name);
bool rules_header_value(struct rules_scratch *sc, const char *request, const char **val,
    size_t *vlen);
void rules_build_body(struct rules_scratch *sc, const char *msg, size_t len, bool want_uri);
/* The value of a tag over the header view of the message sc scanned last (rules_set_scan;
 * valid while its message and envelope are): tag is its text between the underscores
 * ("HEADER(From:addr)", "RELAYSTRUSTED", "LASTEXTERNALIP" ...: addhdr_tag_from_message),
 * the value SpamAssassin's PerMsgStatus gives it. malloc'd, "" when the message has none. */
char *rules_message_tag(struct rules_scratch *sc, const char *tag);

#endif
