/* lr_cv.c — online logistic regression on binary hashed byte 4-grams (the TREC spam track's
 * filters: Goodman & Yih 2006, Cormack & Lynam 2007, Sculley & Wachman 2007) over a
 * labelled list of messages, for bench/lr_cv.py (which builds and drives it; Python alone
 * took a millisecond a message for the weight updates, this takes microseconds).
 *
 *   lr_cv [-b BYTES] [-r RATE] [-p PASSES] [-t TONE] [-n bin|sqrt] [-H] [-Z] [-S] LIST
 *
 * LIST: one message a line, "FOLD Y PATH" (Y 1 spam, 0 ham; FOLD -1: always learned, never
 * scored; FOLD k >= 0: scored by a model that learned, in the order of LIST, every line of
 * another fold). Features: every overlapping 4-byte string of the first BYTES (2500) bytes
 * of the file as it is, hashed into 2^20 buckets, present or not; the vector scaled by
 * 1/sqrt(count) with -n sqrt (the default), left binary with -n bin. Learning, per message:
 * z = w . x, p = 1 / (1 + e^-z), w += RATE (y - p) x, PASSES times over the training lines;
 * -t TONE: only when y = 1 and z < TONE or y = 0 and z > -TONE (train on or near error).
 * -H: the BYTES start after the header (the first empty line): the body alone, to see
 * what the headers' bytes contribute.
 * -Z: runs of four or more 'z' or 'y' (the public corpus's anonymised recipient, "zzzz@"
 * in spam-1, "yyyy@" elsewhere: an artefact of its editing) become "xxxx" first, to see
 * how much of the ranking is that artefact.
 * -S (a stream): fold k is scored by the model that learned fold -1 (PASSES passes) and the
 * folds before k (one pass each, after they were scored). Prints "PATH Z" per scored line. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HBITS 20

struct msg { int fold, y; char *path; uint32_t *f; size_t n; };

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int body_only, mask_anon;

/* -Z: "zzzz..." and "yyyy..." (4 or more) -> "xxxx..." in place */
static void anon_mask(unsigned char *b, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t j = i;

		if (b[i] == 'z' || b[i] == 'y')
			while (j < len && b[j] == b[i])
				j++;
		if (j - i >= 4)
			memset(b + i, 'x', j - i);
		i = j > i ? j : i + 1;
	}
}

static void features(struct msg *m, size_t nbytes)
{
	FILE *fp = fopen(m->path, "rb");
	unsigned char *b = malloc(nbytes);
	size_t len, i, k = 0;

	if (fp == NULL || b == NULL) {
		perror(m->path);
		exit(1);
	}
	if (body_only) {
		int c, prev = '\n';

		while ((c = getc(fp)) != EOF) {
			if (c == '\r')
				continue;
			if (c == '\n' && prev == '\n')
				break;
			prev = c;
		}
	}
	len = fread(b, 1, nbytes, fp);
	fclose(fp);
	if (mask_anon)
		anon_mask(b, len);
	m->f = malloc((len > 3 ? len - 3 : 1) * sizeof(*m->f));
	if (m->f == NULL)
		abort();
	for (i = 0; i + 3 < len; i++) {
		uint32_t g = (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16 |
			     (uint32_t)b[i + 3] << 24;
		m->f[k++] = (uint32_t)(g * 2654435761u) >> (32 - HBITS);
	}
	qsort(m->f, k, sizeof(*m->f), cmp_u32);
	m->n = 0;
	for (i = 0; i < k; i++)
		if (m->n == 0 || m->f[m->n - 1] != m->f[i])
			m->f[m->n++] = m->f[i];
	free(b);
}

static double rate = 0.5, tone;
static int sqrt_norm = 1;

static double score(const double *w, const struct msg *m)
{
	double s = 0;

	for (size_t i = 0; i < m->n; i++)
		s += w[m->f[i]];
	return sqrt_norm && m->n ? s / sqrt((double)m->n) : s;
}

static void learn(double *w, const struct msg *m)
{
	double z = score(w, m), v, d;

	if (tone > 0 && ((m->y && z >= tone) || (!m->y && z <= -tone)))
		return;
	v = sqrt_norm && m->n ? 1.0 / sqrt((double)m->n) : 1.0;
	d = rate * (m->y - 1.0 / (1.0 + exp(-z))) * v;
	for (size_t i = 0; i < m->n; i++)
		w[m->f[i]] += d;
}

int main(int argc, char **argv)
{
	size_t nbytes = 2500, n = 0, cap = 0;
	int passes = 1, stream = 0, c, maxfold = -1;
	struct msg *v = NULL;
	char line[4096];
	double *w;
	FILE *fp;

	while ((c = getopt(argc, argv, "b:r:p:t:n:HZS")) != -1) {
		switch (c) {
		case 'b': nbytes = (size_t)atol(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'p': passes = atoi(optarg); break;
		case 't': tone = atof(optarg); break;
		case 'n': sqrt_norm = strcmp(optarg, "bin") != 0; break;
		case 'H': body_only = 1; break;
		case 'Z': mask_anon = 1; break;
		case 'S': stream = 1; break;
		default: return 2;
		}
	}
	if (optind + 1 != argc || (fp = fopen(argv[optind], "r")) == NULL) {
		fprintf(stderr, "usage: lr_cv [-b BYTES] [-r RATE] [-p PASSES] [-t TONE] "
				"[-n bin|sqrt] [-H] [-Z] [-S] LIST\n");
		return 2;
	}
	while (fgets(line, sizeof(line), fp)) {
		char path[4000];
		int fold, y;

		if (sscanf(line, "%d %d %3999s", &fold, &y, path) != 3)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((v = realloc(v, cap * sizeof(*v))) == NULL)
				abort();
		}
		v[n] = (struct msg){ .fold = fold, .y = y, .path = strdup(path) };
		features(&v[n], nbytes);
		if (fold > maxfold)
			maxfold = fold;
		n++;
	}
	fclose(fp);
	if ((w = malloc(sizeof(*w) << HBITS)) == NULL)
		abort();
	if (stream) {
		memset(w, 0, sizeof(*w) << HBITS);
		for (int p = 0; p < passes; p++)
			for (size_t i = 0; i < n; i++)
				if (v[i].fold < 0)
					learn(w, &v[i]);
		for (int k = 0; k <= maxfold; k++) {
			for (size_t i = 0; i < n; i++)
				if (v[i].fold == k)
					printf("%s %.9g\n", v[i].path, score(w, &v[i]));
			for (size_t i = 0; i < n; i++)
				if (v[i].fold == k)
					learn(w, &v[i]);
		}
		goto out;
	}
	for (int k = 0; k <= maxfold; k++) {
		memset(w, 0, sizeof(*w) << HBITS);
		for (int p = 0; p < passes; p++)
			for (size_t i = 0; i < n; i++)
				if (v[i].fold != k)
					learn(w, &v[i]);
		for (size_t i = 0; i < n; i++)
			if (v[i].fold == k)
				printf("%s %.9g\n", v[i].path, score(w, &v[i]));
	}
out:
	for (size_t i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].f);
	}
	free(v);
	free(w);
	return 0;
}
