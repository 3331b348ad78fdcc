/* rules_score.c — a small driver over the rules engine (not part of the daemon):
 *
 *   rules_score [-n N] [-t SECS] [-P] [-q] [-f LIST] [-b YAML] -r GLOB [-r GLOB ...] MSG...
 *
 * Loads the rule files, prints the load summary, then scores each message file and prints
 * "FILE score=S tests=A,B,..." (sorted). -n N repeats the scoring N times and prints the
 * rate (messages/s, and messages per CPU-second) on stderr; -t SECS repeats until SECS
 * seconds of scoring; -P turns the vectorscan prefilter off; -q prints only the rate; -f
 * LIST reads more message paths from LIST (one a line); -a adds " all=" with every rule
 * that hit, __ sub-rules included (to compare with SpamAssassin's own view); -b YAML turns
 * the classifier on with YAML as its `rules.bayes` section (e.g. `store: lmdb:DIR`): each
 * message is classified before its scan, as the daemon does (rules/rules.c), and the rate
 * includes it. Built by bench/bench_rules.sh, bench/bench_detection.py and
 * tests/integration/test_rules_sa.py against libmxcore.a. */
#include "bench/slurp.h"
#include "rules/bayes.h"
#include "rules/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_hit(const char *name, double value, void *arg)
{
	int *first = arg;

	printf("%s%s", *first ? "" : ",", name);
	if (value != value)
		printf("?");            /* unknown: depends on rules mxgate cannot run */
	else if (value != 1)
		printf("=%g", value);
	*first = 0;
}


/* Paths from argv[first..] plus the lines of list (may be NULL); *n set. */
static char **paths_collect(int argc, char **argv, int first, const char *list, size_t *n)
{
	size_t cap = (size_t)(argc - first) + 64, k = 0;
	char **v = malloc(cap * sizeof(char *));
	char line[4096];
	FILE *f;

	if (v == NULL)
		abort();
	for (int i = first; i < argc; i++)
		v[k++] = argv[i];
	if (list != NULL && (f = fopen(list, "r")) != NULL) {
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] == '\0')
				continue;
			if (k == cap) {
				cap *= 2;
				v = realloc(v, cap * sizeof(char *));
				if (v == NULL)
					abort();
			}
			v[k] = strdup(line);
			if (v[k] == NULL)
				abort();
			k++;
		}
		fclose(f);
	}
	*n = k;
	return v;
}

int main(int argc, char **argv)
{
	const char *globs[64];
	const char *list = NULL;
	const char *bayes_yaml = NULL;
	struct bayes_config bcfg = { 0 };
	struct bayes *bayes = NULL;
	char **paths;
	size_t npaths;
	size_t nglobs = 0;
	int reps = 1, quiet = 0, noprefilter = 0, all = 0, i;
	double secs = 0;
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_stats st;
	struct timespec t0, t1, c0, c1;
	size_t scored = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-r") == 0 && i + 1 < argc && nglobs < 64)
			globs[nglobs++] = argv[++i];
		else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (strcmp(argv[i], "-q") == 0)
			quiet = 1;
		else if (strcmp(argv[i], "-P") == 0)
			noprefilter = 1;
		else if (strcmp(argv[i], "-a") == 0)
			all = 1;
		else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc)
			list = argv[++i];
		else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
			bayes_yaml = argv[++i];
		else
			break;
	}
	if (nglobs == 0) {
		fprintf(stderr, "usage: %s [-n N] [-P] [-q] -r GLOB... MSG...\n", argv[0]);
		return 2;
	}
	paths = paths_collect(argc, argv, i, list, &npaths);
	rules_set_load(globs, nglobs, &rs, quiet ? NULL : stderr);
	if (rs == NULL)
		return 1;
	rules_set_get_stats(rs, &st);
	if (!quiet)
		rules_print_stats(&st, stderr);
	sc = rules_scratch_new(rs);
	if (sc == NULL)
		return 1;
	rules_scratch_set_prefilter(sc, !noprefilter);
	if (bayes_yaml != NULL) {
		char err[256] = "bad -b section";
		struct bayes_totals bt;

		if (cfg_table_load("-b", bayes_yaml, strlen(bayes_yaml), &bayes_config_table, &bcfg,
		    stderr) < 0 || (bayes = bayes_open(&bcfg, err, sizeof(err))) == NULL) {
			fprintf(stderr, "classifier: %s\n", err);
			return 1;
		}
		if (bayes_totals(bayes, &bt) < 0 || !bayes_is_trained(bayes, &bt)) {
			fprintf(stderr, "classifier: store not trained\n");
			return 1;
		}
		if (!quiet)
			fprintf(stderr, "classifier: %llu spam, %llu ham learned\n",
			    (unsigned long long)bt.nspam, (unsigned long long)bt.nham);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	if (secs > 0)
		reps = 1 << 30;
	for (int r = 0; r < reps; r++) {
		if (secs > 0 && r > 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= secs)
				break;
		}
		for (size_t k = 0; k < npaths; k++) {
			size_t len;
			char *m = slurp(paths[k], &len);
			struct rules_result res;
			struct bayes_result br;

			if (m == NULL) {
				fprintf(stderr, "%s: cannot read\n", paths[k]);
				return 1;
			}
			if (bayes != NULL) {   /* as rules_work_cb: classify, then scan */
				bayes_classify(bayes, m, len, &br);
				rules_scratch_set_bayes(sc, &br);
			}
			rules_set_scan(rs, sc, m, len, NULL, NULL, 0, &res);
			if (r == 0 && !quiet) {
				printf("%s score=%.3f tests=", paths[k], res.score);
				for (size_t h = 0; h < res.n; h++)
					printf("%s%s", h ? "," : "", res.v[h].name);
				if (all) {
					int first = 1;

					printf(" all=");
					rules_scratch_foreach_hit(rs, sc, print_hit, &first);
				}
				printf("\n");
			}
			rules_result_free(&res);
			free(m);
			scored++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	if (reps > 1 || quiet || list) {
		double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		double c = (double)(c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) / 1e9;

		fprintf(stderr, "scored %zu messages in %.3f s: %.1f msg/s (%.3f s of CPU: %.1f msg "
		    "per CPU-s)\n", scored, s, s > 0 ? scored / s : 0, c, c > 0 ? scored / c : 0);
	}
	for (size_t k = (size_t)(argc - i); k < npaths; k++)
		free(paths[k]);		/* the list's lines; argv's are not ours */
	free(paths);
	rules_scratch_free(sc);
	rules_set_free(rs);
	bayes_free(bayes);
	cfg_table_free(&bayes_config_table, &bcfg);
	return 0;
}
