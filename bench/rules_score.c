/* rules_score.c — a small driver over the rules engine (not part of the daemon):
 *
 *   rules_score [-n N] [-t SECS] [-P] [-q] -r GLOB [-r GLOB ...] MSG...
 *
 * Loads the rule files, prints the load summary, then scores each message file and prints
 * "FILE score=S tests=A,B,..." (sorted). -n N repeats the scoring N times and prints the
 * rate (messages/s) on stderr; -t SECS repeats until SECS seconds of scoring; -P turns the vectorscan prefilter off; -q prints only the
 * rate. Built by bench/bench_rules.sh and tests/integration/test_rules_sa.py against
 * libmxcore.a. */
#include "rules/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t cap = 0, n = 0, r;

	if (f == NULL)
		return NULL;
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			b = realloc(b, cap);
			if (b == NULL)
				abort();
		}
		r = fread(b + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	fclose(f);
	*len = n;
	return b;
}

int main(int argc, char **argv)
{
	const char *globs[64];
	size_t nglobs = 0;
	int reps = 1, quiet = 0, noprefilter = 0, i;
	double secs = 0;
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_stats st;
	struct timespec t0, t1;
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
		else
			break;
	}
	if (nglobs == 0) {
		fprintf(stderr, "usage: %s [-n N] [-P] [-q] -r GLOB... MSG...\n", argv[0]);
		return 2;
	}
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
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (secs > 0)
		reps = 1 << 30;
	for (int r = 0; r < reps; r++) {
		if (secs > 0 && r > 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= secs)
				break;
		}
		for (int k = i; k < argc; k++) {
			size_t len;
			char *m = slurp(argv[k], &len);
			struct rules_result res;

			if (m == NULL) {
				fprintf(stderr, "%s: cannot read\n", argv[k]);
				return 1;
			}
			rules_set_scan(rs, sc, m, len, NULL, NULL, 0, &res);
			if (r == 0 && !quiet) {
				printf("%s score=%.1f tests=", argv[k], res.score);
				for (size_t h = 0; h < res.n; h++)
					printf("%s%s", h ? "," : "", res.v[h].name);
				printf("\n");
			}
			rules_result_free(&res);
			free(m);
			scored++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (reps > 1 || quiet) {
		double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

		fprintf(stderr, "scored %zu messages in %.3f s: %.1f msg/s\n", scored, s,
		    s > 0 ? scored / s : 0);
	}
	rules_scratch_free(sc);
	rules_set_free(rs);
	return 0;
}
