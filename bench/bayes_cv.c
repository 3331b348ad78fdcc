/* bayes_cv.c — the classifier's maths and tokenizer over a labelled list of messages, in
 * memory, for cross-validation (bench/bayes_cv.py drives it; docs/classifier.md).
 *
 *   bayes_cv [-c odds|chi] [-p] [-i GLOB]... LIST
 *
 * LIST: one message a line, "FOLD CLASS PATH" (CLASS spam|ham; FOLD -1: always learned,
 * never scored; FOLD k >= 0: scored by a classifier that learned every line of another
 * fold). Each message is tokenized once (bayes_tokenize, the daemon's tokenizer; -p adds
 * word pairs; -i: the bayes_ignore_header lines of the rule files GLOB matches apply, as
 * in the daemon with those rules.files); then, for each fold k, the token counts of the other lines are summed and
 * every line of fold k is scored as bayes_classify does (Robinson's f(w), tokens with
 * |f - 0.5| >= 0.346, the 150 strongest, combined by bayes_combine_odds or _chi).
 * Prints "PATH PROB" per scored line (PROB -1: no significant token); with -r "PATH LSQ LHQ"
 * instead: the logs of the two chi-square tails bayes_combine_odds compares (for trying
 * other constants of the combining without scoring again).
 *
 *   bayes_cv -d MSG LIST
 *
 * learns every line of LIST and prints MSG's significant tokens (f(w), spam and ham
 * counts, the token) strongest first: what the diagnosis in docs/classifier.md reads.
 *
 *   bayes_cv [-i GLOB]... -t MSG
 *
 * prints every token of MSG (to compare with SpamAssassin's tokenizer). */
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

struct msg { int fold; int spam; char *path; struct bayes_tokens tk; };

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

int main(int argc, char **argv)
{
	const char *dump = NULL, *tokens_of = NULL;
	struct bayes_token_opts o = { 0 };
	char *globs[64];
	struct cfg_strlist files = { .v = globs };
	int chi = 0, raw = 0, opt, maxfold = -1;
	struct msg *m = NULL;
	size_t nm = 0, cap = 0;
	char line[8192];
	FILE *in;

	while ((opt = getopt(argc, argv, "c:pd:rt:i:")) != -1) {
		if (opt == 'i' && files.n < 64) {
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
		fprintf(stderr, "usage: bayes_cv [-c odds|chi] [-p] [-r] [-i GLOB]... LIST | -d MSG LIST "
		    "| -t MSG\n");
		return 2;
	}
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

		for (size_t i = 0; i < nm; i++)
			if (m[i].fold != k)
				learn(&t, &m[i], &ns, &nn);
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
				if (f >= 0 && fabs(f - 0.5) >= MIN_STRENGTH)
					pr[np++] = f;
			}
			qsort(pr, np, sizeof(*pr), cmp_strength);
			if (np > NSIG_TOKENS)
				np = NSIG_TOKENS;
			if (raw) {
				double ls = log((double)ns / (double)(ns + nn));
				double lh = log((double)nn / (double)(ns + nn));

				for (size_t j = 0; j < np; j++) {
					ls += log(1.0 - pr[j]);
					lh += log(pr[j]);
				}
				if (np)
					printf("%s %.6f %.6f\n", m[i].path, bayes_log_chi2q(-2.0 * ls, np),
					    bayes_log_chi2q(-2.0 * lh, np));
				else
					printf("%s none none\n", m[i].path);
				free(pr);
				continue;
			}
			if (np)
				p = chi ? bayes_combine_chi(pr, np, ns, nn) : bayes_combine_odds(pr, np, ns, nn);
			printf("%s %.6f\n", m[i].path, p);
			free(pr);
		}
		free(t.v);
	}
	return 0;
}
