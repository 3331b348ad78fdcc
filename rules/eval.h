/* eval.h — SpamAssassin's eval tests (`header NAME eval:check_foo('a', 2)` in rule files)
 * implemented natively. One registration table (eval.c) maps each function name to its C
 * implementation, its argument count and the message views it needs; the functions live in
 * files by family: eval_header.c (HeaderEval), eval_trust.c (RelayEval and the trust path,
 * over received.c), eval_mime.c (MIMEEval, BodyEval over samsg.c), eval_html.c (HTMLEval over
 * html.c), eval_list.c (WLBLEval, URIEval, HTTPSMismatch, VBounce, ImageInfo, DKIM without
 * DNS), eval_misc.c (FreeMail, and Bayes's check_bayes over the learning classifier).
 *
 * A rule whose function is not in the table is skipped and counted by function name
 * (`mxgate -t`, the start-up log); metas over it treat its result as unknown (rules.c). */
#ifndef MX_EVAL_H
#define MX_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct rules_scratch;
struct rules_envelope;
struct match_scratch;
struct eval_conf;
struct eval_msg;
struct bayes_result;

#define EVAL_MAX_ARGS 8

/* The views an eval reads besides the headers; built once per message. */
#define EVAL_NEED_BODY  0x1u     /* decoded text parts, rendered body, raw body lines */
#define EVAL_NEED_MIME  0x2u     /* the MIME tree: every part's headers and raw body */
#define EVAL_NEED_HTML  0x4u     /* the HTML analysis (tags, ranges, colours, images) */
#define EVAL_NEED_URI   0x8u     /* URIs with their anchor text */

struct eval_call;
struct eval_ctx;

typedef double (*eval_fn)(struct eval_ctx *c, const struct eval_call *call);

struct eval_def {
	const char *name;
	eval_fn fn;
	unsigned char min_args, max_args;
	unsigned needs;                       /* EVAL_NEED_* */
	/* optional: checks/compiles the arguments once per rule; 0 or -1 with *err */
	int (*prepare)(struct eval_call *call, const char **err);
	void (*release)(struct eval_call *call);
};

/* One rule's call: the function and its parsed arguments. */
struct eval_call {
	const struct eval_def *def;
	int nargs;
	char *arg[EVAL_MAX_ARGS];             /* unquoted text */
	double num[EVAL_MAX_ARGS];            /* as a number; NAN for 'undef' and text */
	void *data;                           /* what def->prepare built */
};

/* The function named name, or NULL when mxgate does not implement it. */
const struct eval_def *eval_find(const char *name);
/* The i-th function of the table (sorted by name), NULL past the end (tests, listings). */
const struct eval_def *eval_def_at(size_t i);

/* Parses SA's argument list (the text between the parentheses: 'quoted', "quoted", bare
 * words and numbers, comma-separated) for def. Returns 0 and *out (free with
 * eval_call_free), or -1 with a static reason in *err. */
int eval_call_new(const struct eval_def *def, const char *args, struct eval_call **out,
    const char **err);
void eval_call_free(struct eval_call *call);

/* ---------------------------------------------------------------- per message */

/* What an eval function gets. Everything is borrowed for the scan of one message. */
struct eval_ctx {
	const char *msg; size_t len;          /* the whole message as received */
	const struct rules_envelope *envl;    /* may be NULL */
	struct rules_scratch *sc;             /* the message views (rules_view.c) */
	const struct eval_conf *conf;         /* settings of the rule set */
	struct eval_msg *m;                   /* analyses made on first use */
	struct match_scratch *ms;             /* for regexes */
	time_t now;
	int rule_kind;                        /* enum rule_kind of the rule being run */
	const struct bayes_result *bayes;     /* the classifier's verdict, NULL when off */
};

/* SpamAssassin's $pms->get(REQUEST) in scalar context: the values of every header field so
 * named, unfolded and RFC 2047-decoded, each ending in "\n", joined; "" when there is none.
 * Selectors :raw :addr :name :first :last and the pseudo-headers (ALL, ToCc, MESSAGEID,
 * EnvelopeFrom, X-Spam-Relays-*, ALL-TRUSTED ...) as in header rules. :addr and :name give
 * the first value without a newline. The string lives until the scan ends. */
const char *eval_get(struct eval_ctx *c, const char *request);
/* True when a header field so named exists (pseudo-headers: when non-empty). */
bool eval_exists(struct eval_ctx *c, const char *request);
/* Each value separately (list context), at most max; returns the count. */
size_t eval_get_all(struct eval_ctx *c, const char *request, const char **out, size_t max);

/* A copy of s (n bytes, NUL added) / n bytes of memory, living until the scan ends. */
char *eval_strndup(struct eval_ctx *c, const char *s, size_t n);
void *eval_alloc(struct eval_ctx *c, size_t n);

/* Per-message state (struct eval_msg) kept in the scratch: created empty, reset between
 * messages, freed with the scratch. */
struct eval_msg *eval_msg_new(void);
void eval_msg_reset(struct eval_msg *m);
void eval_msg_free(struct eval_msg *m);

#endif
