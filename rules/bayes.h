/* bayes.h — the learning classifier: SpamAssassin's Bayes (Robinson's f(w) per token,
 * Fisher/Robinson chi-square combining of the 150 strongest tokens) over the tokens of
 * bayes_token.c, stored by bayes_db.c (LMDB by default, Redis for a cluster), reported as
 * SpamAssassin's BAYES_00 .. BAYES_99 / BAYES_999 symbols so stock scores apply.
 *
 * Config: the `rules.bayes` section (bayes_config_table). Below min_spam / min_ham learned
 * messages the classifier abstains (no symbol). Classification and learning are
 * synchronous and thread-safe: the daemon runs them in libuv's thread pool with the rules
 * scan; `mxgate learn` on its main thread. See docs/classifier.md. */
#ifndef MX_BAYES_H
#define MX_BAYES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"

#include "rules/bayes_db.h"
#include "rules/bayes_token.h"

enum bayes_tokens_mode { BAYES_TOKENS_SA = 0, BAYES_TOKENS_OSB };
enum bayes_combine_mode { BAYES_COMBINE_ODDS = 0, BAYES_COMBINE_CHI };

struct bayes_config {
	bool enabled;
	char *store;                  /* "lmdb:/dir" | "redis://host:port[/db]" | "memory" */
	long min_spam, min_ham;       /* learned messages needed before it classifies */
	int tokens;                   /* enum bayes_tokens_mode */
	int combine;                  /* enum bayes_combine_mode */
	bool autolearn;
	bool autolearn_on_error;      /* only what the classifier got wrong (SA's ..._on_error) */
	double autolearn_spam;        /* score without the classifier's >= this: learn spam */
	double autolearn_ham;         /* <= this: learn ham */
	long max_tokens;              /* size bound (0 = none) */
	uint64_t expire_after;        /* ms: tokens unused this long go (0 = never) */
	uint64_t map_size;            /* LMDB map size */
	uint64_t timeout;             /* ms: Redis connect/request */
	uint64_t max_learn_size;      /* POST /learn body and learned files */
	struct cfg_cidrlist learn_from;  /* clients allowed to POST /learn on metrics.listen */
	bool one_shot;                /* not a key: a one-shot command's (`learn`): the store logs
	                               * no daemon line for a failed connect, the command says it */
	uint64_t serial;              /* not a key: this load's number, given by the table's
	                               * validate hook (bayes_acquire's generation key) */
};

extern const struct cfg_table bayes_config_table;

struct bayes;

/* A classifier on c's store (c is copied). NULL with a reason in err. A Redis store is not
 * connected to yet (bayes_check): this may run on an event loop. */
struct bayes *bayes_open(const struct bayes_config *c, char *err, size_t errlen);
/* Whether its store answers (Redis: connects now, within the store's back-off; a failed
 * connect is logged, event=bayes_error store=redis). 0, or -1 with the reason in err. Blocks
 * up to the store's connect bound: a pool thread's or `mxgate learn`'s call. */
int bayes_check(struct bayes *b, char *err, size_t errlen);
struct bayes *bayes_ref(struct bayes *b);
/* Drops a reference; the last closes the store. NULL ok. */
void bayes_free(struct bayes *b);

/* ---- classifying ---- */

struct bayes_result {
	bool available;               /* trained and readable: SA's score set 2 applies */
	bool scanned;                 /* prob is valid (else the classifier abstained) */
	double prob;                  /* spam probability 0..1 */
	uint32_t ntokens;             /* unique tokens of the message */
	uint32_t nknown;              /* of which the store knew */
	uint32_t nused;               /* significant tokens combined */
	const char *why;              /* when !scanned: "untrained", "no_tokens", "store_error",
	                               * "too_big" (over rules.max_size: not tokenized) */
};

/* Tokenizes msg, reads its tokens in one batched lookup and combines them. Returns 0 (see
 * r->scanned) or -1 (store error: r->why "store_error"). */
int bayes_classify(struct bayes *b, const char *msg, size_t len, struct bayes_result *r);

/* For a message not read (bigger than rules.max_size, whose body rules the BAYES_ ones are
 * do not run either): nothing tokenized, nothing learned; r->why is why, r->available
 * whether the classifier is trained (one small read, so the score set is the one of the
 * other messages). 0, or -1 on a store error (r->why "store_error"). */
int bayes_classify_skip(struct bayes *b, struct bayes_result *r, const char *why);

/* SpamAssassin's check_bayes(lo, hi): lo < prob <= hi (lo 0: 0 <= prob). */
bool bayes_check_range(const struct bayes_result *r, double lo, double hi);

/* The BAYES_xx symbols for r: at most two (BAYES_99 and BAYES_999 together), with
 * SpamAssassin's description and stock score (score set 2: Bayes on, network off) — the
 * score a rule file does not override. Returns the count written to names/scores/descs. */
size_t bayes_symbols(const struct bayes_result *r, const char *names[2], double scores[2],
    const char *descs[2]);
/* Whether name is one of the BAYES_xx symbols. */
bool bayes_is_symbol(const char *name);

/* The pieces, public for tests. Robinson's f(w) for a token seen s times in ns spam and n
 * times in nn ham messages; -1 when it carries no information. */
double bayes_token_prob(uint32_t s, uint32_t n, uint64_t ns, uint64_t nn);
/* Fisher/Robinson chi-square combining (SA's CombineChi): probs[0..n), priors ns/nn. */
double bayes_combine_chi(const double *probs, size_t n, uint64_t ns, uint64_t nn);
/* The odds combining (the default): the same chi-square tails sq (spam side) and hq (ham
 * side), compared in logs as tempered odds 1 / (1 + (sq / hq)^0.2), pulled towards 0.5 when
 * both sides carry evidence. SA's output for one-sided evidence, decisive where SA's
 * saturates at 0.5 (both tails below 1e-16). */
double bayes_combine_odds(const double *probs, size_t n, uint64_t ns, uint64_t nn);
/* Upper tail of chi-square with 2*halfv degrees of freedom at x2, and its logarithm
 * (finite where the tail itself is below DBL_MIN). */
double bayes_chi2q(double x2, size_t halfv);
double bayes_log_chi2q(double x2, size_t halfv);

/* ---- learning ---- */

/* The seen-db identity of a message: SHA-1 of its Message-ID, else of its body. */
void bayes_message_id(const char *msg, size_t len, uint8_t id[BAYES_ID_LEN]);

/* Learns msg as cls (see bayes_db_learn); runs expiry when the store grew past
 * max_tokens. 0 or -1. */
int bayes_learn(struct bayes *b, const char *msg, size_t len, enum bayes_class cls,
    enum bayes_learn_result *res);
/* What autolearn calls (SpamAssassin's no_relearn): as bayes_learn, but a message already
 * learned as the other class — by hand, or by autolearn before — is left there
 * (BAYES_OPPOSITE; bayes_db_learn_once). 0 or -1. */
int bayes_learn_once(struct bayes *b, const char *msg, size_t len, enum bayes_class cls,
    enum bayes_learn_result *res);

/* Totals of the store (for `learn` output and metrics). 0 or -1. */
int bayes_totals(struct bayes *b, struct bayes_totals *t);

/* Whether enough has been learned to classify (min_spam and min_ham), from totals. */
bool bayes_is_trained(const struct bayes *b, const struct bayes_totals *t);

/* What autolearn weighs (SpamAssassin's PerMsgStatus::_get_autolearn_points): the
 * message's points in score set 0 (the set without the classifier) with the classifier's
 * own rules (tflags learn, check_bayes), noautolearn and userconf rules left out; of those,
 * the header rules' and the body rules' (body, rawbody, uri; a meta splits its points by
 * the types of the rules it names); the classifier's own points (set in use); and whether a
 * rule with tflags autolearn_force hit. */
struct bayes_autolearn_points {
	double total, head, body;
	double learned;
	bool force;
	char force_names[256];        /* the autolearn_force rules hit, "A,B" (SA's
	                               * get_autolearn_force_names; names past 255 bytes left out) */
	bool said_spam, said_ham;     /* the classifier gave BAYES_99 / BAYES_00 */
};

/* Autolearn decision (SpamAssassin's Plugin/AutoLearnThreshold.pm): spam when total >=
 * autolearn_spam with at least 3 header and 3 body points (unless forced), the classifier
 * not saying ham (learned >= -1) and the message's verdict spam (is_spam); ham when total
 * < autolearn_ham, the classifier not saying spam (learned <= 1) and the verdict not
 * spam. The classifier's points only veto: a message it decided alone is never learned.
 * With autolearn_on_error, what the classifier already put in BAYES_99 (spam) or BAYES_00
 * (ham) is not learned again. Returns 1 (learn spam), 0 (learn ham) or -1 (do not learn). */
int bayes_autolearn_decide(const struct bayes_config *c, const struct bayes_autolearn_points *p,
    bool is_spam);

/* ---- the daemon's classifier ---- */

/* The classifier of the newest config generation that enabled one (set by the rules module
 * at worker start), with a reference, or NULL. For the metrics endpoint's POST /learn. */
struct bayes *bayes_current(void);
void bayes_set_current(struct bayes *b);

/* Learning's share of libuv's thread pool, which also scans every message: at most a
 * quarter of UV_THREADPOOL_SIZE (4 of mxgate's 16; at least 1) learn jobs at once — the
 * control verb, POST /learn and autolearn together — so a slow or silent Redis, which holds
 * a learn's thread for rules.bayes.timeout, never holds the scans. bayes_learn_enter takes
 * a place (true), or says false with how many hold one and the share (*busy, *share: may
 * be NULL): the caller refuses (busy) or skips (autolearn) rather than queue. Each true is
 * paired with one bayes_learn_leave, on any thread. */
bool bayes_learn_enter(unsigned *busy, unsigned *share);
void bayes_learn_leave(void);

/* The classifier for a config generation's section c (ignore: the nignore header fields its
 * rule files name on bayes_ignore_header lines, rules_set_ignore_headers; copied): opened
 * once per generation and shared by its workers (each acquire takes a reference; release
 * with bayes_free), and made bayes_current(). NULL with err when the store cannot be
 * opened. Called on a worker's loop: a Redis store is connected later, by the pool thread
 * that first uses it (bayes_check). */
struct bayes *bayes_acquire(const struct bayes_config *c, const char *const *ignore,
    size_t nignore, char *err, size_t errlen);
/* SpamAssassin's bayes_ignore_header: the header fields names[0..n) (lower case, as the
 * rule parser keeps them: rule_src_ignore_header) are not tokenized. bayes_acquire does it
 * for the daemon, `mxgate learn` for itself: learning and classifying must tokenize alike.
 * Before b is shared. */
void bayes_ignore_headers_load(struct bayes *b, const char *const *names, size_t n);
/* The same into tokenizer options o (copies; replaces what o had); free with
 * bayes_ignore_headers_free. */
void bayes_ignore_headers_set(struct bayes_token_opts *o, const char *const *names, size_t n);
void bayes_ignore_headers_free(struct bayes_token_opts *o);

const struct bayes_config *bayes_get_config(const struct bayes *b);

/* The process's counters: cb(name, help, value, arg) for each (scanned, abstained, errors,
 * learned spam/ham, already). Thread-safe. */
void bayes_foreach_counter(void (*cb)(const char *name, const char *help, uint64_t v,
    void *arg), void *arg);

#endif
