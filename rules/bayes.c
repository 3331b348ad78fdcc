/* bayes.c — the learning classifier: probabilities, combining, learning, symbols and the
 * `rules.bayes` config table. See bayes.h and docs/classifier.md. */
#include "bayes.h"

#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "store/store.h"

/* SpamAssassin's Bayes constants (Bayes/CombineChi.pm, Plugin/Bayes.pm) */
#define BAYES_FW_X         0.538      /* Robinson's x: the prior for a rare token */
#define BAYES_FW_S         0.030      /* Robinson's s: strength of that prior */
#define BAYES_MIN_STRENGTH 0.346      /* |p - 0.5| below this: the token is ignored */
#define BAYES_NSIG         150        /* strongest tokens combined */
/* combine: odds (chosen by 5-fold cross-validation inside each training half of the public
 * corpus, docs/classifier.md): the odds of the two tails are tempered by this power ... */
#define BAYES_ODDS_POWER   0.2
/* ... and evidence both ways (the weaker side's, in nats) pulls p towards 0.5: 63 % of the
 * way at this many nats */
#define BAYES_MIXED_NATS   160.0
#define BAYES_TOUCH_AGE    86400u     /* tokens used by a scan get a new atime after a day */
#define BAYES_EXPIRE_EVERY 86400u     /* age-based expiry at most once a day */

struct bayes {
	atomic_int refs;
	struct bayes_config cfg;          /* copy; store string owned */
	struct bayes_db *db;
	struct bayes_token_opts topts;
	atomic_uint last_expire;          /* seconds */
	atomic_flag expiring;
};

/* Process-wide counters for the metrics endpoint (bayes_foreach_counter). */
static atomic_ulong bayes_n_scanned, bayes_n_abstained, bayes_n_errors, bayes_n_learned_spam,
    bayes_n_learned_ham, bayes_n_already;

static const struct { const char *name, *help; atomic_ulong *v; } bayes_counters[] = {
	{ "bayes_scanned_total", "messages the classifier gave a BAYES_xx symbol", &bayes_n_scanned },
	{ "bayes_abstained_total", "messages it did not classify (untrained, no known tokens)",
	  &bayes_n_abstained },
	{ "bayes_errors_total", "store errors while classifying or learning", &bayes_n_errors },
	{ "bayes_learned_spam_total", "messages learned (or moved) as spam by this process",
	  &bayes_n_learned_spam },
	{ "bayes_learned_ham_total", "messages learned (or moved) as ham by this process",
	  &bayes_n_learned_ham },
	{ "bayes_learned_already_total", "learn requests for a message already learned so (autolearn: as either class)",
	  &bayes_n_already },
};

void bayes_foreach_counter(void (*cb)(const char *name, const char *help, uint64_t v,
    void *arg), void *arg)
{
	for (size_t i = 0; i < sizeof(bayes_counters) / sizeof(bayes_counters[0]); i++)
		cb(bayes_counters[i].name, bayes_counters[i].help, atomic_load(bayes_counters[i].v), arg);
}

static uint32_t bayes_now(void)
{
	return (uint32_t)time(NULL);
}

struct bayes *bayes_open(const struct bayes_config *c, char *err, size_t errlen)
{
	struct bayes *b = calloc(1, sizeof(*b));
	struct bayes_db_options o = { 0 };

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->cfg = *c;
	b->cfg.store = strdup(c->store ? c->store : "memory");
	/* the classifier may outlive its config generation: keep our own copy */
	b->cfg.learn_from.v = NULL;
	b->cfg.learn_from.n = 0;
	if (c->learn_from.n && (b->cfg.learn_from.v = malloc(c->learn_from.n *
	    sizeof(*c->learn_from.v))) != NULL) {
		memcpy(b->cfg.learn_from.v, c->learn_from.v, c->learn_from.n * sizeof(*c->learn_from.v));
		b->cfg.learn_from.n = c->learn_from.n;
	}
	if (b->cfg.store == NULL) {
		free(b->cfg.learn_from.v);
		free(b);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	o.map_size = c->map_size;
	o.timeout_ms = c->timeout;
	o.quiet = c->one_shot;
	o.ttl_s = (uint32_t)(c->expire_after / 1000);
	b->db = bayes_db_open(b->cfg.store, &o, err, errlen);
	if (b->db == NULL) {
		free(b->cfg.learn_from.v);
		free(b->cfg.store);
		free(b);
		return NULL;
	}
	b->topts.pairs = c->tokens == BAYES_TOKENS_OSB;
	atomic_init(&b->refs, 1);
	atomic_flag_clear(&b->expiring);
	return b;
}

struct bayes *bayes_ref(struct bayes *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
	return b;
}

static void bayes_gen_forget(struct bayes *b);

void bayes_free(struct bayes *b)
{
	if (b == NULL || atomic_fetch_sub(&b->refs, 1) > 1)
		return;
	bayes_gen_forget(b);
	bayes_db_close(b->db);
	bayes_ignore_headers_free(&b->topts);
	free(b->cfg.learn_from.v);
	free(b->cfg.store);
	free(b);
}

void bayes_ignore_headers_set(struct bayes_token_opts *o, const char *const *names, size_t n)
{
	bayes_ignore_headers_free(o);
	if (n == 0)
		return;
	if ((o->ignore = calloc(n, sizeof(char *))) == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((o->ignore[i] = strdup(names[i])) == NULL)
			abort();
	o->nignore = n;
}

void bayes_ignore_headers_free(struct bayes_token_opts *o)
{
	for (size_t i = 0; i < o->nignore; i++)
		free(o->ignore[i]);
	free(o->ignore);
	o->ignore = NULL;
	o->nignore = 0;
}

void bayes_ignore_headers_load(struct bayes *b, const char *const *names, size_t n)
{
	bayes_ignore_headers_set(&b->topts, names, n);
}

const struct bayes_config *bayes_get_config(const struct bayes *b) { return &b->cfg; }

int bayes_check(struct bayes *b, char *err, size_t errlen)
{
	return bayes_db_check(b->db, err, errlen);
}

/* ---------------------------------------------------------------- the maths */

double bayes_token_prob(uint32_t s, uint32_t n, uint64_t ns, uint64_t nn)
{
	double p, robn;

	if ((s == 0 && n == 0) || ns == 0 || nn == 0)
		return -1;
	/* p(w) = (s/ns) / (s/ns + n/nn), then Robinson's f(w) pulls rare tokens to x */
	p = ((double)s * (double)nn) / ((double)n * (double)ns + (double)s * (double)nn);
	robn = (double)s + (double)n;
	return (BAYES_FW_S * BAYES_FW_X + robn * p) / (BAYES_FW_S + robn);
}

double bayes_chi2q(double x2, size_t halfv)
{
	double m = x2 / 2.0, sum, term;

	sum = term = exp(-m);
	for (size_t i = 1; i < halfv; i++) {
		term *= m / (double)i;
		sum += term;
	}
	return sum < 1.0 ? sum : 1.0;
}

/* ln(ns/(ns+nn) * prod(1 - p)) and ln(nn/(ns+nn) * prod(p)): the products SpamAssassin's
 * CombineChi feeds to chi-square, kept in range by taking mantissa and exponent apart. */
static void bayes_log_products(const double *probs, size_t n, uint64_t ns, uint64_t nn,
    double *ls, double *lh)
{
	double S = (double)ns / (double)(ns + nn), H = (double)nn / (double)(ns + nn);
	int se = 0, he = 0;

	for (size_t i = 0; i < n; i++) {
		int e;

		S *= 1.0 - probs[i];
		H *= probs[i];
		if (S < 1e-200) {
			S = frexp(S, &e);
			se += e;
		}
		if (H < 1e-200) {
			H = frexp(H, &e);
			he += e;
		}
	}
	*ls = log(S) + se * M_LN2;
	*lh = log(H) + he * M_LN2;
}

double bayes_combine_chi(const double *probs, size_t n, uint64_t ns, uint64_t nn)
{
	double S, H;

	if (n == 0 || ns + nn == 0)
		return 0.5;
	bayes_log_products(probs, n, ns, nn, &S, &H);
	S = 1.0 - bayes_chi2q(-2.0 * S, n);
	H = 1.0 - bayes_chi2q(-2.0 * H, n);
	return ((S - H) + 1.0) / 2.0;
}

double bayes_log_chi2q(double x2, size_t halfv)
{
	double m = x2 / 2.0, lm, t, mx, sum = 0;

	if (m <= 0)
		return 0;
	/* ln sum_{i<halfv} e^-m m^i / i!, largest term factored out (it may be far below
	 * DBL_MIN: the point of working in logs) */
	lm = log(m);
	mx = t = -m;
	for (size_t i = 1; i < halfv; i++) {
		t += lm - log((double)i);
		if (t > mx)
			mx = t;
	}
	t = -m;
	sum = exp(t - mx);
	for (size_t i = 1; i < halfv; i++) {
		t += lm - log((double)i);
		sum += exp(t - mx);
	}
	t = mx + log(sum);
	return t < 0 ? t : 0;
}

double bayes_combine_odds(const double *probs, size_t n, uint64_t ns, uint64_t nn)
{
	double ls, lh, lsq, lhq, e, u, p;

	if (n == 0 || ns + nn == 0)
		return 0.5;
	bayes_log_products(probs, n, ns, nn, &ls, &lh);
	/* the chi-square tails SpamAssassin compares, in logs: lsq is small (very negative)
	 * when the tokens are spammy, lhq when they are hammy */
	lsq = bayes_log_chi2q(-2.0 * ls, n);
	lhq = bayes_log_chi2q(-2.0 * lh, n);
	/* their odds, tempered: 1 / (1 + (sq / hq)^power), without SA's saturation at 0.5
	 * once both tails are tiny */
	e = BAYES_ODDS_POWER * (lsq - lhq);
	p = 1.0 / (1.0 + exp(e > 700 ? 700 : e));
	/* evidence both ways pulls towards 0.5, as SA's output does: mail that carries strong
	 * ham and strong spam tokens is what the learned mail does not cover */
	e = -lsq < -lhq ? -lsq : -lhq;
	u = 1.0 - exp(-e / BAYES_MIXED_NATS);
	return 0.5 * u + (1.0 - u) * p;
}

/* ---------------------------------------------------------------- classifying */

bool bayes_is_trained(const struct bayes *b, const struct bayes_totals *t)
{
	return t->nspam >= (uint64_t)(b->cfg.min_spam > 0 ? b->cfg.min_spam : 1) &&
	    t->nham >= (uint64_t)(b->cfg.min_ham > 0 ? b->cfg.min_ham : 1);
}

struct bayes_sig { double p, strength; };

static int bayes_sig_cmp(const void *a, const void *b)
{
	double x = ((const struct bayes_sig *)a)->strength;
	double y = ((const struct bayes_sig *)b)->strength;

	return x < y ? 1 : x > y ? -1 : 0;
}

int bayes_classify(struct bayes *b, const char *msg, size_t len, struct bayes_result *r)
{
	struct bayes_tokens tk;
	struct bayes_counts *c = NULL;
	struct bayes_sig *sig = NULL;
	struct bayes_totals t;
	double probs[BAYES_NSIG];
	uint64_t *touch = NULL;
	size_t ns = 0, nt = 0, np = 0;
	uint32_t now = bayes_now();
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->why = "untrained";
	/* the totals first: an untrained classifier costs one small read */
	if (bayes_totals(b, &t) < 0) {
		r->why = "store_error";
		atomic_fetch_add(&bayes_n_errors, 1);
		return -1;
	}
	if (!bayes_is_trained(b, &t)) {
		atomic_fetch_add(&bayes_n_abstained, 1);
		return 0;
	}
	r->available = true;
	bayes_tokenize(msg, len, &b->topts, &tk);
	r->ntokens = (uint32_t)tk.n;
	if (tk.n == 0) {
		r->why = "no_tokens";
		goto out;
	}
	c = calloc(tk.n, sizeof(*c));
	sig = calloc(tk.n, sizeof(*sig));
	touch = calloc(tk.n, sizeof(*touch));
	if (c == NULL || sig == NULL || touch == NULL) {
		r->why = "store_error";
		rc = -1;
		goto out;
	}
	/* one batched read of every token (and the totals, consistent with them) */
	if (bayes_db_lookup(b->db, tk.v, tk.n, c, &t) < 0) {
		r->why = "store_error";
		rc = -1;
		goto out;
	}
	for (size_t i = 0; i < tk.n; i++) {
		double p = bayes_token_prob(c[i].spam, c[i].ham, t.nspam, t.nham);

		if (p < 0)
			continue;
		r->nknown++;
		if (fabs(p - 0.5) < BAYES_MIN_STRENGTH)
			continue;
		sig[ns].p = p;
		sig[ns].strength = fabs(p - 0.5);
		ns++;
		if (c[i].atime + BAYES_TOUCH_AGE < now)
			touch[nt++] = tk.v[i];
	}
	if (ns == 0) {
		r->why = "no_tokens";
		goto out;
	}
	qsort(sig, ns, sizeof(*sig), bayes_sig_cmp);
	for (size_t i = 0; i < ns && np < BAYES_NSIG; i++)
		probs[np++] = sig[i].p;
	r->prob = b->cfg.combine == BAYES_COMBINE_CHI ?
	    bayes_combine_chi(probs, np, t.nspam, t.nham) :
	    bayes_combine_odds(probs, np, t.nspam, t.nham);
	r->nused = (uint32_t)np;
	r->scanned = true;
	r->why = NULL;
	/* tokens in use stay young (expiry drops the unused); at most one write a day each */
	if (nt)
		bayes_db_touch(b->db, touch, nt, now);
out:
	atomic_fetch_add(r->scanned ? &bayes_n_scanned : rc < 0 ? &bayes_n_errors :
	    &bayes_n_abstained, 1);
	free(c);
	free(sig);
	free(touch);
	bayes_tokens_free(&tk);
	return rc;
}

int bayes_classify_skip(struct bayes *b, struct bayes_result *r, const char *why)
{
	struct bayes_totals t;

	memset(r, 0, sizeof(*r));
	r->why = why;
	if (bayes_totals(b, &t) < 0) {
		r->why = "store_error";
		atomic_fetch_add(&bayes_n_errors, 1);
		return -1;
	}
	r->available = bayes_is_trained(b, &t);
	atomic_fetch_add(&bayes_n_abstained, 1);
	return 0;
}

bool bayes_check_range(const struct bayes_result *r, double lo, double hi)
{
	return r->scanned && (lo == 0 || r->prob > lo) && r->prob <= hi;
}

/* SpamAssassin's 23_bayes.cf ranges and 50_scores.cf score set 2 */
static const struct {
	const char *name;
	double lo, hi, score;
	const char *desc;
} bayes_syms[] = {
	{ "BAYES_00", 0.00, 0.01, -1.5, "Bayes spam probability is 0 to 1%" },
	{ "BAYES_05", 0.01, 0.05, -0.3, "Bayes spam probability is 1 to 5%" },
	{ "BAYES_20", 0.05, 0.20, -0.001, "Bayes spam probability is 5 to 20%" },
	{ "BAYES_40", 0.20, 0.40, -0.001, "Bayes spam probability is 20 to 40%" },
	{ "BAYES_50", 0.40, 0.60, 2.0, "Bayes spam probability is 40 to 60%" },
	{ "BAYES_60", 0.60, 0.80, 2.5, "Bayes spam probability is 60 to 80%" },
	{ "BAYES_80", 0.80, 0.95, 2.7, "Bayes spam probability is 80 to 95%" },
	{ "BAYES_95", 0.95, 0.99, 3.2, "Bayes spam probability is 95 to 99%" },
	{ "BAYES_99", 0.99, 1.00, 3.8, "Bayes spam probability is 99 to 100%" },
	{ "BAYES_999", 0.999, 1.00, 0.2, "Bayes spam probability is 99.9 to 100%" },
};

size_t bayes_symbols(const struct bayes_result *r, const char *names[2], double scores[2],
    const char *descs[2])
{
	size_t k = 0;

	for (size_t i = 0; i < sizeof(bayes_syms) / sizeof(bayes_syms[0]) && k < 2; i++)
		if (bayes_check_range(r, bayes_syms[i].lo, bayes_syms[i].hi)) {
			names[k] = bayes_syms[i].name;
			scores[k] = bayes_syms[i].score;
			descs[k] = bayes_syms[i].desc;
			k++;
		}
	return k;
}

bool bayes_is_symbol(const char *name)
{
	for (size_t i = 0; i < sizeof(bayes_syms) / sizeof(bayes_syms[0]); i++)
		if (strcmp(name, bayes_syms[i].name) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- learning */

static void bayes_sha1(const void *p, size_t n, uint8_t id[BAYES_ID_LEN])
{
	unsigned int l = 0;
	unsigned char md[EVP_MAX_MD_SIZE];

	if (EVP_Digest(p, n, md, &l, EVP_sha1(), NULL) != 1 || l < BAYES_ID_LEN)
		memset(md, 0, sizeof(md));
	memcpy(id, md, BAYES_ID_LEN);
}

void bayes_message_id(const char *msg, size_t len, uint8_t id[BAYES_ID_LEN])
{
	size_t i = 0;

	if (len > 5 && strncmp(msg, "From ", 5) == 0) {
		const char *nl = memchr(msg, '\n', len);

		i = nl ? (size_t)(nl - msg) + 1 : len;
	}
	while (i < len) {
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - msg) : len;

		if (e == i || (e == i + 1 && msg[i] == '\r')) {
			i = e + 1;
			break;       /* end of the header: the body follows */
		}
		if (e - i > 11 && strncasecmp(msg + i, "Message-ID:", 11) == 0) {
			size_t s = i + 11, f = e;

			while (s < f && isspace((unsigned char)msg[s]))
				s++;
			while (f > s && isspace((unsigned char)msg[f - 1]))
				f--;
			if (f > s) {
				char buf[1024];
				int n = snprintf(buf, sizeof(buf), "mid:%.*s", (int)(f - s), msg + s);

				bayes_sha1(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, id);
				return;
			}
		}
		i = e + 1;
	}
	if (i > len)
		i = len;
	bayes_sha1(msg + i, len - i, id);
}

int bayes_totals(struct bayes *b, struct bayes_totals *t)
{
	memset(t, 0, sizeof(*t));
	return bayes_db_totals(b->db, t);
}

/* Expiry after learning: the size bound at once, the age limit once a day. */
static void bayes_maybe_expire(struct bayes *b, uint32_t now)
{
	struct bayes_totals t;
	uint64_t removed = 0;
	bool over, aged;
	uint32_t age_s = (uint32_t)(b->cfg.expire_after / 1000);

	if (bayes_totals(b, &t) < 0)
		return;
	over = b->cfg.max_tokens > 0 && t.ntokens > (uint64_t)b->cfg.max_tokens;
	aged = age_s > 0 && now >= atomic_load(&b->last_expire) + BAYES_EXPIRE_EVERY;
	if (!over && !aged)
		return;
	if (atomic_flag_test_and_set(&b->expiring))
		return;              /* another thread is at it */
	atomic_store(&b->last_expire, now);
	if (bayes_db_expire(b->db, (uint64_t)(b->cfg.max_tokens > 0 ? b->cfg.max_tokens : 0),
	    age_s, now, &removed) == 0 && removed)
		log_event(LOG_LVL_INFO, NULL, "event=bayes_expire store=%s removed=%llu",
		    bayes_db_kind(b->db), (unsigned long long)removed);
	atomic_flag_clear(&b->expiring);
}

static int bayes_learn_msg(struct bayes *b, const char *msg, size_t len, enum bayes_class cls,
    bool relearn, enum bayes_learn_result *res)
{
	struct bayes_tokens tk;
	uint8_t id[BAYES_ID_LEN];
	uint32_t now = bayes_now();
	enum bayes_learn_result dummy;
	int rc;

	if (res == NULL)
		res = &dummy;
	bayes_message_id(msg, len, id);
	bayes_tokenize(msg, len, &b->topts, &tk);
	rc = relearn ? bayes_db_learn(b->db, id, cls, tk.v, tk.n, now, res) :
	    bayes_db_learn_once(b->db, id, cls, tk.v, tk.n, now, res);
	bayes_tokens_free(&tk);
	if (rc < 0)
		atomic_fetch_add(&bayes_n_errors, 1);
	else if (*res == BAYES_ALREADY || *res == BAYES_OPPOSITE)
		atomic_fetch_add(&bayes_n_already, 1);
	else
		atomic_fetch_add(cls == BAYES_SPAM ? &bayes_n_learned_spam : &bayes_n_learned_ham, 1);
	if (rc == 0 && (*res == BAYES_LEARNED || *res == BAYES_MOVED))
		bayes_maybe_expire(b, now);
	return rc;
}

int bayes_learn(struct bayes *b, const char *msg, size_t len, enum bayes_class cls,
    enum bayes_learn_result *res)
{
	return bayes_learn_msg(b, msg, len, cls, true, res);
}

int bayes_learn_once(struct bayes *b, const char *msg, size_t len, enum bayes_class cls,
    enum bayes_learn_result *res)
{
	return bayes_learn_msg(b, msg, len, cls, false, res);
}

/* ---------------------------------------------------------------- the daemon's */

static atomic_uint bayes_learns_busy;

/* libuv reads UV_THREADPOOL_SIZE as it starts the pool (proxy/main.c sets 16 unless the
 * environment says otherwise): 4 when unset or not a number, at most 1024 */
static unsigned bayes_learn_share(void)
{
	const char *s = getenv("UV_THREADPOOL_SIZE");
	long n = s ? strtol(s, NULL, 10) : 0;

	if (n <= 0)
		n = 4;
	if (n > 1024)
		n = 1024;
	return n >= 8 ? (unsigned)(n / 4) : 1;
}

bool bayes_learn_enter(unsigned *busy, unsigned *share)
{
	unsigned max = bayes_learn_share(), cur = atomic_load(&bayes_learns_busy);

	do {
		if (cur >= max) {
			if (busy)
				*busy = cur;
			if (share)
				*share = max;
			return false;
		}
	} while (!atomic_compare_exchange_weak(&bayes_learns_busy, &cur, cur + 1));
	return true;
}

void bayes_learn_leave(void)
{
	atomic_fetch_sub(&bayes_learns_busy, 1);
}

static pthread_mutex_t bayes_cur_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bayes *bayes_cur;

/* One classifier per generation: (section's load number -> classifier), no reference held
 * here; an entry goes when its classifier's last reference does. Not keyed by the section's
 * address alone: a classifier outlives its config (a check waiting for a silent store, a
 * POST /learn or mxgatectl learn holding bayes_current), the retired config is freed, and
 * the next reload's config may be allocated at the same address: that generation's workers
 * then took the old classifier, with the old store and options. The number (c->serial) is
 * given to each load by the table's validate hook and never reused. */
static pthread_mutex_t bayes_gen_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { const struct bayes_config *c; uint64_t serial; struct bayes *b; } bayes_gens[16];
static atomic_uint_fast64_t bayes_config_serials;

static void bayes_gen_forget(struct bayes *b)
{
	pthread_mutex_lock(&bayes_gen_mu);
	for (size_t i = 0; i < sizeof(bayes_gens) / sizeof(bayes_gens[0]); i++)
		if (bayes_gens[i].b == b) {
			bayes_gens[i].b = NULL;
			bayes_gens[i].c = NULL;
			bayes_gens[i].serial = 0;
		}
	pthread_mutex_unlock(&bayes_gen_mu);
}

struct bayes *bayes_acquire(const struct bayes_config *c, const char *const *ignore,
    size_t nignore, char *err, size_t errlen)
{
	struct bayes *b = NULL;

	pthread_mutex_lock(&bayes_gen_mu);
	for (size_t i = 0; i < sizeof(bayes_gens) / sizeof(bayes_gens[0]); i++)
		if (bayes_gens[i].c == c && bayes_gens[i].serial == c->serial && bayes_gens[i].b &&
		    atomic_fetch_add(&bayes_gens[i].b->refs, 1) > 0) {
			b = bayes_gens[i].b;
			break;
		}
	pthread_mutex_unlock(&bayes_gen_mu);
	if (b)
		return b;
	b = bayes_open(c, err, errlen);
	if (b == NULL)
		return NULL;
	bayes_ignore_headers_load(b, ignore, nignore);    /* before anyone else sees b */
	pthread_mutex_lock(&bayes_gen_mu);
	for (size_t i = 0; i < sizeof(bayes_gens) / sizeof(bayes_gens[0]); i++)
		if (bayes_gens[i].b == NULL) {
			bayes_gens[i].c = c;
			bayes_gens[i].serial = c->serial;
			bayes_gens[i].b = b;
			break;
		}
	pthread_mutex_unlock(&bayes_gen_mu);
	bayes_set_current(b);
	return b;
}

struct bayes *bayes_current(void)
{
	struct bayes *b;

	pthread_mutex_lock(&bayes_cur_mu);
	b = bayes_ref(bayes_cur);
	pthread_mutex_unlock(&bayes_cur_mu);
	return b;
}

void bayes_set_current(struct bayes *b)
{
	struct bayes *old;

	pthread_mutex_lock(&bayes_cur_mu);
	old = bayes_cur;
	bayes_cur = bayes_ref(b);
	pthread_mutex_unlock(&bayes_cur_mu);
	bayes_free(old);
}

/* ---------------------------------------------------------------- config */

static const char *const bayes_tokens_choices[] = { "sa", "osb", NULL };
static const char *const bayes_combine_choices[] = { "odds", "chi", NULL };

static int bayes_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct bayes_config *c = obj;

	c->serial = atomic_fetch_add(&bayes_config_serials, 1) + 1;   /* bayes_acquire's key */
	if (!c->enabled)
		return 0;
	if (c->store == NULL || (strncmp(c->store, "lmdb:", 5) != 0 &&
	    !store_spec_is_redis(c->store) && strcmp(c->store, "memory") != 0))
		return cfg_error_key(p, n, "store", -1, "must be \"lmdb:/dir\", \"redis://host:port\", \"redis-sentinel://host:port[,...]/master[/db]\" or memory");
	if (strncmp(c->store, "lmdb:", 5) == 0 && c->store[5] != '/')
		return cfg_error_key(p, n, "store", -1, "lmdb: needs an absolute directory");
	if (c->autolearn && c->autolearn_ham >= c->autolearn_spam)
		return cfg_error(p, n, "autolearn_ham must be below autolearn_spam");
	return 0;
}

static const struct cfg_field bayes_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct bayes_config, enabled), "false",
	  .doc = "classify every message with the learning classifier (BAYES_xx symbols)" },
	{ "store", CFG_STRING, offsetof(struct bayes_config, store),
	  "lmdb:/var/lib/mxgate/bayes",
	  .doc = "token store: lmdb:/dir (this host; a directory of its own, not one of reputation, greylist or a pass_store) or redis://host:port[/db] | redis-sentinel://host:port[,...]/master[/db] (a cluster)" },
	{ "min_spam", CFG_INT, offsetof(struct bayes_config, min_spam), "200", 1, 1000000000,
	  .doc = "spam messages learned before the classifier speaks (SA: bayes_min_spam_num)" },
	{ "min_ham", CFG_INT, offsetof(struct bayes_config, min_ham), "200", 1, 1000000000,
	  .doc = "ham messages learned before the classifier speaks (SA: bayes_min_ham_num)" },
	{ "tokens", CFG_ENUM, offsetof(struct bayes_config, tokens), "sa",
	  .choices = bayes_tokens_choices,
	  .doc = "sa: SpamAssassin's tokens; osb: plus pairs of adjacent words (bigger store)" },
	{ "combine", CFG_ENUM, offsetof(struct bayes_config, combine), "odds",
	  .choices = bayes_combine_choices,
	  .doc = "odds: tempered odds of SA's two chi-square tails (no saturation at 0.5); chi: SA's output" },
	{ "autolearn", CFG_BOOL, offsetof(struct bayes_config, autolearn), "false",
	  .doc = "learn from confident verdicts of the other tests (never the classifier's own)" },
	{ "autolearn_on_error", CFG_BOOL, offsetof(struct bayes_config, autolearn_on_error), "false",
	  .doc = "autolearn only what the classifier did not already put in BAYES_99 / BAYES_00 (SA: bayes_auto_learn_on_error)" },
	{ "autolearn_spam", CFG_DOUBLE, offsetof(struct bayes_config, autolearn_spam), "12",
	  -1000, 100000, .doc = "score (set 0, no classifier) at or above which spam with 3 header and 3 body points is learned" },
	{ "autolearn_ham", CFG_DOUBLE, offsetof(struct bayes_config, autolearn_ham), "0.1",
	  -1000, 100000, .doc = "score (set 0, no classifier) below which mail is learned as ham" },
	{ "max_tokens", CFG_INT, offsetof(struct bayes_config, max_tokens), "1000000", 0,
	  1000000000, .doc = "size bound: past it the least recently used tokens go (to 3/4)" },
	{ "expire_after", CFG_DURATION, offsetof(struct bayes_config, expire_after), "0",
	  .doc = "tokens unused this long are dropped (Redis: key TTL); 0 = only the size bound" },
	{ "map_size", CFG_SIZE, offsetof(struct bayes_config, map_size), "512M",
	  .doc = "LMDB map size (the store's largest size on disk)" },
	{ "timeout", CFG_DURATION, offsetof(struct bayes_config, timeout), "2s", 100, 300000,
	  .doc = "Redis connect and request timeout (a failed lookup: no BAYES symbol); LMDB: "
	  "the longest wait for the store's write lock (learning, autolearn)" },
	{ "max_learn_size", CFG_SIZE, offsetof(struct bayes_config, max_learn_size), "10M",
	  .doc = "largest message `learn` and POST /learn/{spam,ham} accept" },
	{ "learn_from", CFG_CIDRLIST, offsetof(struct bayes_config, learn_from),
	  "[127.0.0.0/8, \"::1\"]",
	  .doc = "clients allowed to POST /learn/spam|ham on metrics.listen" },
	{ .key = NULL }
};

const struct cfg_table bayes_config_table = {
	"rules.bayes", sizeof(struct bayes_config), bayes_fields, bayes_config_validate
};
