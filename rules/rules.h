/* rules.h — the rules engine: compiled rule sets, message scanning, and the hook module
 * `rules_module` that scores each message at end of data (always the last module).
 *
 * A rule set is built once per config generation from `rules.files` (globs, each sorted)
 * and shared read-only by all workers; per-thread working memory lives in a
 * `struct rules_scratch`. See docs/rules.md for the language and the scoring. */
#ifndef MX_RULES_H
#define MX_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "proxy/cfg.h"
#include "proxy/hook.h"
#include "rules/bayes.h"
#include "rules/rule_parse.h"

enum rules_mode { RULES_MODE_ENFORCE = 0, RULES_MODE_LOG };

struct rules_actions_config { double add_header, tempfail, reject, quarantine, greylist; };

/* What a message in the greylist band gets when the greylist store cannot decide. */
enum rules_greylist_on_error { RULES_GREYLIST_DELIVER = 0, RULES_GREYLIST_TEMPFAIL };

struct rules_config {
	struct cfg_strlist files;            /* globs; empty = the module is off */
	struct rules_actions_config actions; /* thresholds; 0 = off (add_header default 5) */
	struct cfg_list recipient_actions;   /* struct recipient_actions_entry: some recipients'
	                                      * thresholds (rules/recipient_actions.h) */
	int mode;                            /* enum rules_mode */
	double required_score;               /* 0 = actions.add_header, else 5.0 */
	uint64_t max_size;                   /* bigger messages: header/envelope rules only */
	bool headers;                        /* add X-Spam-* to delivered mail */
	int greylist_on_error;               /* enum rules_greylist_on_error */
	uint64_t greylist_expire;            /* ms a message that passed greylisting by score
	                                      * stays passed (greylist_message_check) */
	struct cfg_cidrlist trusted_networks;  /* SpamAssassin's trusted_networks */
	struct cfg_cidrlist internal_networks; /* ... and internal_networks */
	bool client_relay;                   /* the SMTP client is the newest relay */
	struct bayes_config bayes;           /* the learning classifier (rules/bayes.h) */
};

extern const struct cfg_table rules_config_table;
extern const struct hook_module rules_module;

struct rules_set;
struct rules_rule;
struct rules_scratch;

struct rules_stats {
	size_t rules;                        /* rule definitions seen */
	size_t compiled;                     /* runnable rules */
	size_t skipped[SKIP_NREASONS];       /* by enum rule_skip */
	size_t skipped_total;
	size_t ignored;                      /* directives we do not emulate */
	size_t errors;
	size_t prefiltered;                  /* body/rawbody/uri regexes in the prefilter */
	size_t files;
};

/* Loads and compiles the files the globs name (each glob's matches sorted; a glob that
 * matches nothing is an error). Errors and skipped-regex warnings go to err (may be NULL)
 * as FILE:LINE:COL: reason. Returns the number of errors (0 = clean) and sets *out to the
 * compiled set even when some lines had errors (those rules are left out); *out is NULL
 * only when nothing could be built. Free with rules_set_free. */
int rules_set_load(const char *const *globs, size_t nglobs, struct rules_set **out, FILE *err);
/* How the vectorscan prefilter gets built: before returning (what rules_set_load does),
 * in a background thread (the set works with PCRE2 alone until it is published: the
 * daemon starts in well under a second), or not at all (`mxgate -t`). */
enum rules_prefilter_mode { RULES_PREFILTER_SYNC = 0, RULES_PREFILTER_ASYNC, RULES_PREFILTER_NONE };
int rules_set_load_mode(const char *const *globs, size_t nglobs, struct rules_set **out,
    FILE *err, enum rules_prefilter_mode pm);
/* What the config adds to a set: the trust path of SpamAssassin's relay evals. */
struct rules_opts {
	const struct cfg_cidrlist *trusted, *internal;  /* rules.trusted_networks ...; may be NULL */
	bool client_relay;        /* the SMTP client is the newest relay (mxgate is the MX) */
	const char *hostname;     /* the "by" of that relay */
	/* the config the rule files come from (may be NULL): a warning or error about a rule
	 * file then names the key that loaded it, "(rules.files[i] at FILE:LINE:COL)" */
	const struct mx_config *cfg;
};
/* rules_set_load_mode with options (NULL: no networks, client_relay, "localhost"). */
int rules_set_load_opts(const char *const *globs, size_t nglobs, struct rules_set **out,
    FILE *err, enum rules_prefilter_mode pm, const struct rules_opts *o);
/* The same from text (tests, fuzzing): name is the FILE in errors. */
int rules_set_load_text(const char *name, const char *text, size_t len,
    struct rules_set **out, FILE *err);
void rules_set_free(struct rules_set *rs);
/* The header fields the set's rule files name on bayes_ignore_header lines (lower case,
 * once each): what its classifier must not tokenize. Sets *names (borrowed while rs lives)
 * and returns their count. */
size_t rules_set_ignore_headers(const struct rules_set *rs, const char *const **names);
/* SpamAssassin's add_header list for spam (headers_spam) or ham after the rule files'
 * add_header, remove_header and clear_headers lines (10_default_prefs.cf's list before
 * them): sets *v (borrowed from the set), returns the count. */
struct addhdr_spec;
size_t rules_set_headers(const struct rules_set *rs, bool spam, const struct addhdr_spec **v);
/* The rule files' `rewrite_header Subject STRING` (tags unexpanded), or NULL. */
const char *rules_set_rewrite_subject(const struct rules_set *rs);
/* report_safe and its report settings (mode 0: spam is marked by its header fields). */
struct addhdr_safe;
const struct addhdr_safe *rules_set_safe(const struct rules_set *rs);
/* Reads and parses the files the globs name as rules_set_load does (the same if/ifplugin
 * blocks, FILE:LINE:COL errors written to err, which may be NULL) without compiling: for
 * the settings alone (`mxgate learn` and its bayes_ignore_header lines). NULL only on
 * out-of-memory; free with rule_src_free (rule_parse.h). */
struct rule_src *rules_src_read(const char *const *globs, size_t nglobs, FILE *err);
void rules_set_get_stats(const struct rules_set *rs, struct rules_stats *st);
/* Writes "rules: N compiled, M skipped (eval X, net Y, regex Z, zero-score W), ..." */
void rules_print_stats(const struct rules_stats *st, FILE *fp);
/* The eval functions the rule files use that mxgate does not implement: for i < the
 * returned count, *fn, the rules calling it and the metas that depend on those (metas
 * treat them as unknown: they fire only when the result does not depend on them). */
size_t rules_set_missing_evals(const struct rules_set *rs, size_t i, const char **fn,
    size_t *rules, size_t *metas);
/* Writes "rules: evals not implemented (N): fn (rules R, metas M), ..." when there are. */
void rules_print_missing_evals(const struct rules_set *rs, FILE *fp);
/* The rules whose `action` is quarantine: their count, and the first names comma-separated
 * in buf (",..." past 8). -t and the start-up log warn when no quarantine backend is set. */
size_t rules_set_quarantine_rules(const struct rules_set *rs, char *buf, size_t len);

/* The config check `mxgate -t` calls: loads cfg->rules.files, prints errors as
 * FILE:LINE:COL: reason and a summary line to err. Returns 0 (no errors) or -1. */
int rules_check_files(const struct mx_config *cfg, FILE *err);

/* Per-thread working memory for scanning with rs. */
struct rules_scratch *rules_scratch_new(const struct rules_set *rs);
void rules_scratch_free(struct rules_scratch *sc);
/* Turns the multi-pattern prefilter off (PCRE2 only) — for tests comparing the two. */
void rules_scratch_set_prefilter(struct rules_scratch *sc, bool on);
/* The classifier's verdict for the next scans (borrowed; NULL: classifier off): what
 * eval:check_bayes (the BAYES_xx rules) reads, and the score set: SpamAssassin's set 2 (the
 * 3rd of 4 `score` values) when r->available, else set 0 (the first). Rules whose score in
 * the set is 0 do not hit, as in SpamAssassin. */
void rules_scratch_set_bayes(struct rules_scratch *sc, const struct bayes_result *r);

/* The envelope as envelope rules see it; any member may be NULL/0. */
struct rules_envelope {
	const char *helo, *mail_from, *rdns, *client_ip;
	const char *const *rcpts; size_t nrcpts;
	const struct sockaddr *client;
};

struct rules_hit {
	const char *name;       /* borrowed from the set */
	double score;
	const char *desc;       /* may be NULL */
	enum rule_action action;
	int count;
	bool classifier;        /* a check_bayes rule (left out of autolearn's score) */
	const struct rules_rule *rule;  /* the rule (autolearn reads its type and set-0 score) */
};

struct rules_result {
	struct rules_hit *v; size_t n, cap;  /* scoring hits (no __ rules), sorted by name */
	double score;                        /* sum of v[].score */
	enum rule_action action;             /* strongest immediate action among the hits */
	const char *action_rule;
	bool body_skipped;                   /* too big: header/envelope rules only */
	bool over_budget;                    /* the 5 s per-message budget ran out */
};

/* SpamAssassin's autolearn points of a scan's hits v[0..n) of rs, added to *p (zero it
 * first): see struct bayes_autolearn_points (rules/bayes.h), rules/bayes_autolearn.c. */
struct bayes_autolearn_points;
void bayes_autolearn_points(const struct rules_set *rs, const struct rules_hit *v, size_t n,
    struct bayes_autolearn_points *p);

/* Runs every rule of rs over msg (len bytes, CRLF or LF lines). env (may be NULL) supplies
 * symbols set by other modules for meta rules. max_body: 0 = no limit. Fills *res (free
 * with rules_result_free). Returns 0. Increments the set's per-rule hit counters. */
int rules_set_scan(const struct rules_set *rs, struct rules_scratch *sc, const char *msg,
    size_t len, const struct rules_envelope *envl, const struct hook_env *env,
    size_t max_body, struct rules_result *res);
void rules_result_free(struct rules_result *res);
/* After a scan with sc: cb(name, value) for every rule that hit, __ sub-rules and
 * unscored ones included (tests and the benchmark compare them with SpamAssassin's), and
 * cb(name, NAN) for every rule whose result is unknown (it depends on rules mxgate cannot
 * run). */
void rules_scratch_foreach_hit(const struct rules_set *rs, const struct rules_scratch *sc,
    void (*cb)(const char *name, double value, void *arg), void *arg);

/* After a scan with sc: cb(line) for each piece of the view rules of kind (RULE_BODY,
 * RULE_RAWBODY, RULE_URI) matched — the benchmark and tests compare them with SA's. */
void rules_scratch_foreach_line(const struct rules_scratch *sc, enum rule_kind kind,
    void (*cb)(const char *line, size_t len, void *arg), void *arg);

/* Per-rule hit counters of the newest generation's set (for the metrics endpoint):
 * cb(name, hits, arg) for every runnable scoring rule. Thread-safe. */
typedef void (*rules_counter_cb)(const char *name, uint64_t hits, void *arg);
void rules_foreach_counter(rules_counter_cb cb, void *arg);
/* The same for one set. */
void rules_set_foreach_counter(const struct rules_set *rs, rules_counter_cb cb, void *arg);
/* A reload's new set starts each rule's hit count where the set before left the rule of the
 * same name (Prometheus counters never go back); hits the old set takes afterwards, from
 * messages scored by it while they finish, are not carried. */
void rules_set_carry_hits(struct rules_set *to, const struct rules_set *from);

#endif
