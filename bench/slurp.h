/* slurp.h — the bench tools' whole-file reader (bench/rules_score.c, bench/bayes_cv.c). */
#ifndef MX_BENCH_SLURP_H
#define MX_BENCH_SLURP_H

#include <stdio.h>
#include <stdlib.h>

/* The whole of path (malloc'ed, *len bytes), or NULL when it cannot be opened. */
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

#endif
