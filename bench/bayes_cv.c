/* bayes_cv.c — the classifier's maths and tokenizer over a labelled list of messages, in
 * memory, for cross-validation (bench/bayes_cv.py drives it; docs/classifier.md).
 *
 *   bayes_cv [-c odds|chi] [-p] [-r] [-s CUT,...] [-n COUNT,...] [-w N [-O]] [-M BITS]
 *       [-F BITS] [-W 1] [-P] [-i GLOB]... LIST
 *
 * LIST: one message a line, "FOLD CLASS PATH" (CLASS spam|ham; FOLD -1: always learned,
 * never scored; FOLD k >= 0: scored by a classifier that learned every line of another
 * fold). Each message is tokenized once (bayes_tokenize, the daemon's tokenizer; -p adds
 * word pairs; -i: the bayes_ignore_header lines of the rule files GLOB matches apply, as
 * in the daemon with those rules.files); then, for each fold k, the token counts of the
 * other lines are summed and every line of fold k is scored as bayes_classify does
 * (Robinson's f(w), tokens with |f - 0.5| >= 0.346, the 150 strongest, combined by
 * bayes_combine_odds or _chi). Prints "PATH PROB" per scored line (PROB -1: no
 * significant token); with -r "PATH LSQ LHQ" instead: the logs of the two chi-square tails
 * bayes_combine_odds compares (for trying other constants of the combining without
 * scoring again). -P (prequential: a stream in batches): fold k is scored by a classifier
 * that learned the lines of fold -1 and of the folds before k only — what a site that
 * learns every message it receives knows when batch k arrives.
 *
 * Variants measured and not adopted (docs/classifier.md, "Tried and not adopted"):
 *   -s CUT,... -n COUNT,...  the token selection: the strength cut and the count of
 *                            strongest tokens (with several: "PATH CUT COUNT PROB" lines)
 *   -w N                     rspamd's OSB pairs over a window of N words (bayes_token.h);
 *                            -O with rspamd's per-distance weights (bayes_classify_token)
 *   -M BITS                  structural meta tokens (BAYES_META_* of bayes_token.h)
 *   -F BITS                  list footers left out or prefixed (BAYES_FOOTER_*)
 *   -W 1                     word salad: the share of a message's tokens the store has
 *                            seen at most once, as one more token
 *
 *   bayes_cv -d MSG LIST
 *
 * learns every line of LIST and prints MSG's significant tokens (f(w), spam and ham
 * counts, the token) strongest first: what the diagnosis in docs/classifier.md reads.
 *
 *   bayes_cv [-i GLOB]... [-M BITS] [-F BITS] [-w N] -t MSG
 *
 * prints every token of MSG (to compare with SpamAssassin's tokenizer).
 *
 *   bayes_cv -H RULEGLOB LIST
 *
 * scores every message of LIST with the rules RULEGLOB names (score set 2, no BAYES_xx
 * hit) and prints "PATH TESTS": mxgate's own rule hits, what bayes_cv.py adds the
 * classifier's BAYES_xx to when spamd's cache is absent. */
#include "bench/slurp.h"
#include "rules/bayes.h"
#include "rules/rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_STRENGTH 0.346
#define NSIG_TOKENS 150
#define MAX_SEL 32

struct msg { int fold; int spam; char *path; struct bayes_tokens tk; uint8_t *dist; };

/* -w N -O: each token's pair distance (0: not a pair; 1: "P:", 2..4: "P2:".."P4:"), for
 * rspamd's per-distance weights; tokens as bayes_tokenize gives them (sorted, unique). */
struct kt { uint64_t h; uint8_t d; };
struct kts { struct kt *v; size_t n, cap; };

static void kind_cb(const char *tok, size_t len, void *arg)
{
	struct kts *k = arg;
	uint8_t d = 0;

	if (len > 2 && tok[0] == 'P' && tok[1] == ':')
		d = 1;
	else if (len > 3 && tok[0] == 'P' && tok[1] >= '2' && tok[1] <= '4' && tok[2] == ':')
		d = (uint8_t)(tok[1] - '0');
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 1024;
		if ((k->v = realloc(k->v, k->cap * sizeof(*k->v))) == NULL)
			abort();
	}
	k->v[k->n].h = bayes_token_hash(tok, len);
	k->v[k->n++].d = d;
}

static int kt_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct kt *)a)->h, y = ((const struct kt *)b)->h;

	return x < y ? -1 : x > y;
}

static void tokenize_kinds(const char *text, size_t len, const struct bayes_token_opts *o,
    struct msg *m)
{
	struct kts k = { 0 };
	size_t u = 0;

	bayes_tokenize_cb(text, len, o, kind_cb, &k);
	qsort(k.v, k.n, sizeof(*k.v), kt_cmp);
	m->tk.v = malloc((k.n + 1) * sizeof(uint64_t));
	m->dist = malloc(k.n + 1);
	for (size_t i = 0; i < k.n; i++)
		if (u == 0 || m->tk.v[u - 1] != k.v[i].h) {
			m->tk.v[u] = k.v[i].h;
			m->dist[u++] = k.v[i].d;
		}
	m->tk.n = u < 20000 ? u : 20000;
	free(k.v);
}

/* rspamd's bayes_classify_token: the token's p pulled towards 0.5 by a weight of its
 * window distance (feature_weight 3125, 256, 27, 1 for distances 1..4). */
static double rspamd_weighted(uint32_t s, uint32_t n, uint64_t ns, uint64_t nn, int d)
{
	static const double fwt[] = { 0, 3125, 256, 27, 1 };
	double p = ((double)s * (double)nn) / ((double)n * (double)ns + (double)s * (double)nn);
	double tc = (double)s + (double)n, w = fwt[d] * tc / (1.0 + fwt[d] * tc);

	return (w * 0.5 + tc * p) / (w + tc);
}

/* token -> counts: open addressing, power-of-two size */
struct slot { uint64_t h; uint32_t s, n; };
struct table { struct slot *v; size_t cap, n; };

static struct slot *table_get(struct table *t, uint64_t h, int add)
{
	size_t i;

	if (add && (t->n + 1) * 2 > t->cap) {
		struct table nt = { .cap = t->cap ? t->cap * 2 : 1 << 16 };

		nt.v = calloc(nt.cap, sizeof(*nt.v));
		for (size_t k = 0; k < t->cap; k++)
			if (t->v[k].h) {
				struct slot *d = table_get(&nt, t->v[k].h, 1);

				*d = t->v[k];
			}
		nt.n = t->n;
		free(t->v);
		*t = nt;
	}
	if (t->cap == 0)
		return NULL;
	for (i = h & (t->cap - 1); t->v[i].h && t->v[i].h != h; i = (i + 1) & (t->cap - 1))
		;
	if (t->v[i].h == 0) {
		if (!add)
			return NULL;
		t->v[i].h = h;
		t->n++;
	}
	return &t->v[i];
}

/* Adds m's tokens to t's counts and m to the message totals. */
static void learn(struct table *t, const struct msg *m, uint64_t *ns, uint64_t *nn)
{
	*(m->spam ? ns : nn) += 1;
	for (size_t j = 0; j < m->tk.n; j++) {
		struct slot *s = table_get(t, m->tk.v[j], 1);

		if (m->spam)
			s->s++;
		else
			s->n++;
	}
}

static int cmp_strength(const void *a, const void *b)
{
	double x = fabs(*(const double *)a - 0.5), y = fabs(*(const double *)b - 0.5);

	return x < y ? 1 : x > y ? -1 : 0;
}


#define SALAD_BUCKETS 10

/* The bucket of the share of m's tokens seen at most `most` times in t (tenths). */
static size_t salad_bucket(struct table *t, const struct msg *m, uint32_t most)
{
	size_t rare = 0, b;

	if (m->tk.n == 0)
		return 0;
	for (size_t j = 0; j < m->tk.n; j++) {
		struct slot *s = table_get(t, m->tk.v[j], 0);

		if (s == NULL || s->s + s->n <= most)
			rare++;
	}
	b = rare * SALAD_BUCKETS / m->tk.n;
	return b < SALAD_BUCKETS ? b : SALAD_BUCKETS - 1;
}

struct dump { struct table *t; uint64_t ns, nn; FILE *out; };

static void print_cb(const char *tok, size_t len, void *arg)
{
	printf("%.*s\n", (int)len, tok);
	(void)arg;
}

static void dump_cb(const char *tok, size_t len, void *arg)
{
	struct dump *d = arg;
	struct slot *s = table_get(d->t, bayes_token_hash(tok, len), 0);
	double f;

	if (s == NULL)
		return;
	f = bayes_token_prob(s->s, s->n, d->ns, d->nn);
	if (f >= 0 && fabs(f - 0.5) >= MIN_STRENGTH)
		fprintf(d->out, "%.4f %u %u %.*s\n", f, s->s, s->n, (int)len, tok);
}

/* -H: each message of LIST scored by the rules of glob in score set 2 (the classifier
 * available, no BAYES_xx hit): "PATH TESTS" (comma-separated; "-" when none) — the rule
 * hits bayes_cv.py adds the classifier's BAYES_xx to, when spamd's cache is absent. */
static int rule_hits(const char *glob, FILE *in)
{
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct bayes_result br = { .available = true };
	char line[8192];

	if (rules_set_load(&glob, 1, &rs, NULL) < 0 || rs == NULL)
		return 1;
	if ((sc = rules_scratch_new(rs)) == NULL)
		return 1;
	rules_scratch_set_bayes(sc, &br);
	while (fgets(line, sizeof(line), in)) {
		char cls[16], path[4096];
		int fold;
		size_t len;
		char *text;
		struct rules_result res;

		if (sscanf(line, "%d %15s %4095s", &fold, cls, path) != 3)
			continue;
		if ((text = slurp(path, &len)) == NULL) {
			perror(path);
			return 1;
		}
		rules_set_scan(rs, sc, text, len, NULL, NULL, 0, &res);
		printf("%s ", path);
		for (size_t h = 0; h < res.n; h++)
			printf("%s%s", h ? "," : "", res.v[h].name);
		printf("%s\n", res.n ? "" : "-");
		rules_result_free(&res);
		free(text);
	}
	rules_scratch_free(sc);
	rules_set_free(rs);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dump = NULL, *tokens_of = NULL;
	struct bayes_token_opts o = { 0 };
	char *globs[64];
	struct cfg_strlist files = { .v = globs };
	int chi = 0, raw = 0, opt, maxfold = -1;
	double cuts[MAX_SEL] = { MIN_STRENGTH };
	size_t counts[MAX_SEL] = { NSIG_TOKENS }, ncuts = 1, ncounts = 1;
	const char *rules_glob = NULL;
	int salad = 0, rspamd_w = 0, prequential = 0;
	struct msg *m = NULL;
	size_t nm = 0, cap = 0;
	char line[8192];
	FILE *in;

	while ((opt = getopt(argc, argv, "c:pd:rt:i:s:n:H:M:w:F:W:OP")) != -1) {
		if (opt == 's' || opt == 'n') {
			char *q = optarg, *e;
			size_t k = 0;

			for (; *q && k < MAX_SEL; q = *e ? e + 1 : e, k++) {
				if (opt == 's')
					cuts[k] = strtod(q, &e);
				else
					counts[k] = (size_t)strtoul(q, &e, 10);
				if (e == q)
					return 2;
			}
			*(opt == 's' ? &ncuts : &ncounts) = k;
		} else if (opt == 'O') {
			rspamd_w = 1;
		} else if (opt == 'P') {
			prequential = 1;
		} else if (opt == 'W') {
			salad = atoi(optarg);
		} else if (opt == 'M') {
			o.meta = (int)strtol(optarg, NULL, 0);
		} else if (opt == 'w') {
			o.pairs = true;
			o.window = atoi(optarg);
		} else if (opt == 'F') {
			o.footer = (int)strtol(optarg, NULL, 0);
		} else if (opt == 'H') {
			rules_glob = optarg;
		} else if (opt == 'i' && files.n < 64) {
			files.v[files.n++] = optarg;
		} else if (opt == 't') {
			tokens_of = optarg;
		} else if (opt == 'r')
			raw = 1;
		else if (opt == 'd')
			dump = optarg;
		else if (opt == 'c')
			chi = strcmp(optarg, "chi") == 0;
		else if (opt == 'p')
			o.pairs = true;
		else
			return 2;
	}
	if (files.n) {
		/* the bayes_ignore_header lines, as the rule parser reads them (the daemon's) */
		struct rule_src *src = rules_src_read((const char *const *)files.v, files.n, stderr);
		size_t n = 0;
		const char *const *names = src ? rule_src_ignore_headers(src, &n) : NULL;

		bayes_ignore_headers_set(&o, names, n);
		rule_src_free(src);
	}
	if (tokens_of) {
		size_t len;
		char *text = slurp(tokens_of, &len);

		if (text == NULL)
			return 1;
		bayes_tokenize_cb(text, len, &o, print_cb, NULL);
		free(text);
		return 0;
	}
	if (optind >= argc || (in = fopen(argv[optind], "r")) == NULL) {
		fprintf(stderr, "usage: bayes_cv [-c odds|chi] [-p] [-r] [-s CUT,..] [-n COUNT,..] "
		    "[-w N [-O]] [-M BITS] [-F BITS] [-W 1] [-P] [-i GLOB]... LIST | -d MSG LIST | "
		    "-t MSG | -H RULEGLOB LIST\n");
		return 2;
	}
	if (rules_glob)
		return rule_hits(rules_glob, in);
	while (fgets(line, sizeof(line), in)) {
		char cls[16], path[4096];
		int fold;
		size_t len;
		char *text;

		if (sscanf(line, "%d %15s %4095s", &fold, cls, path) != 3)
			continue;
		if (nm == cap) {
			cap = cap ? cap * 2 : 1024;
			m = realloc(m, cap * sizeof(*m));
		}
		if ((text = slurp(path, &len)) == NULL) {
			perror(path);
			return 1;
		}
		m[nm].fold = fold;
		m[nm].spam = strcmp(cls, "spam") == 0;
		m[nm].path = strdup(path);
		m[nm].dist = NULL;
		if (rspamd_w)
			tokenize_kinds(text, len, &o, &m[nm]);
		else
			bayes_tokenize(text, len, &o, &m[nm].tk);
		free(text);
		if (fold > maxfold)
			maxfold = fold;
		nm++;
	}
	fclose(in);
	if (dump) {
		struct table t = { 0 };
		struct dump d = { .t = &t, .out = stdout };
		size_t len;
		char *text = slurp(dump, &len);

		for (size_t i = 0; i < nm; i++)
			learn(&t, &m[i], &d.ns, &d.nn);
		if (text == NULL)
			return 1;
		bayes_tokenize_cb(text, len, &o, dump_cb, &d);
		return 0;
	}
	for (int k = 0; k <= maxfold; k++) {
		struct table t = { 0 };
		uint64_t ns = 0, nn = 0;

		uint32_t ws_s[SALAD_BUCKETS] = { 0 }, ws_n[SALAD_BUCKETS] = { 0 };

		for (size_t i = 0; i < nm; i++)
			if (prequential ? m[i].fold < k : m[i].fold != k)
				learn(&t, &m[i], &ns, &nn);
		/* -W: word salad, the share of a message's tokens the rest of the store has seen at
		 * most once, as one more token (learned leave-one-out from the training lines) */
		for (size_t i = 0; salad && i < nm; i++)
			if (m[i].fold != k) {
				size_t b = salad_bucket(&t, &m[i], 2);

				if (m[i].spam)
					ws_s[b]++;
				else
					ws_n[b]++;
			}
		if (salad && k == 0)          /* what the word-salad token learned */
			for (size_t b = 0; b < SALAD_BUCKETS; b++)
				fprintf(stderr, "salad %zu/%d of the tokens rare: %u spam %u ham\n", b,
				    SALAD_BUCKETS, ws_s[b], ws_n[b]);
		for (size_t i = 0; i < nm; i++) {
			double *pr, p = -1;
			size_t np = 0;

			if (m[i].fold != k)
				continue;
			pr = malloc((m[i].tk.n + 1) * sizeof(*pr));
			for (size_t j = 0; j < m[i].tk.n; j++) {
				struct slot *s = table_get(&t, m[i].tk.v[j], 0);
				double f;

				if (s == NULL)
					continue;
				f = bayes_token_prob(s->s, s->n, ns, nn);
				if (f >= 0 && m[i].dist && m[i].dist[j])
					f = rspamd_weighted(s->s, s->n, ns, nn, m[i].dist[j]);
				if (f >= 0)
					pr[np++] = f;
			}
			if (salad) {
				size_t b = salad_bucket(&t, &m[i], 1);
				double f = bayes_token_prob(ws_s[b], ws_n[b], ns, nn);

				if (f >= 0)
					pr[np++] = f;
			}
			qsort(pr, np, sizeof(*pr), cmp_strength);
			for (size_t ci = 0; ci < ncuts; ci++)
				for (size_t ni = 0; ni < ncounts; ni++) {
					size_t use = 0;

					while (use < np && use < counts[ni] && fabs(pr[use] - 0.5) >= cuts[ci])
						use++;
					if (ncuts > 1 || ncounts > 1)
						printf("%s %.3f %zu ", m[i].path, cuts[ci], counts[ni]);
					else
						printf("%s ", m[i].path);
					if (raw) {
						double ls = log((double)ns / (double)(ns + nn));
						double lh = log((double)nn / (double)(ns + nn));

						for (size_t j = 0; j < use; j++) {
							ls += log(1.0 - pr[j]);
							lh += log(pr[j]);
						}
						if (use)
							printf("%.6f %.6f\n", bayes_log_chi2q(-2.0 * ls, use),
							    bayes_log_chi2q(-2.0 * lh, use));
						else
							printf("none none\n");
						continue;
					}
					p = -1;
					if (use)
						p = chi ? bayes_combine_chi(pr, use, ns, nn) :
						    bayes_combine_odds(pr, use, ns, nn);
					printf("%.6f\n", p);
				}
			free(pr);
		}
		free(t.v);
	}
	return 0;
}
