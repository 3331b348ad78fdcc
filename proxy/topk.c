/* topk.c — Space-Saving heavy hitters in a fixed table (see topk.h). Linear scans: with 64
 * entries a scan is a few cache lines, cheaper than keeping a heap and a hash in step. */
#include "topk.h"

#include <stdlib.h>
#include <string.h>

void topk_init(struct topk *t)
{
	memset(t, 0, sizeof(*t));
}

static void topk_put(struct topk *t, const char *key, uint64_t n, uint64_t err)
{
	size_t min = 0;

	for (size_t i = 0; i < t->n; i++) {
		if (strncmp(t->e[i].key, key, TOPK_KEY_MAX - 1) == 0) {
			t->e[i].count += n;
			t->e[i].error += err;
			return;
		}
		if (t->e[i].count < t->e[min].count)
			min = i;
	}
	if (t->n < TOPK_CAP) {
		min = t->n++;
		t->e[min].count = 0;
		t->e[min].error = 0;
	} else {
		/* Evict the smallest; the newcomer may have been seen up to that many times. */
		t->e[min].error = t->e[min].count;
	}
	memset(t->e[min].key, 0, sizeof(t->e[min].key));
	strncpy(t->e[min].key, key, TOPK_KEY_MAX - 1);
	t->e[min].count += n;
	t->e[min].error += err;
}

void topk_add(struct topk *t, const char *key, uint64_t n)
{
	if (key == NULL || *key == '\0' || n == 0)
		return;
	t->total += n;
	topk_put(t, key, n, 0);
}

void topk_merge(struct topk *dst, const struct topk *src)
{
	dst->total += src->total;
	for (size_t i = 0; i < src->n; i++)
		topk_put(dst, src->e[i].key, src->e[i].count, src->e[i].error);
}

static int topk_cmp(const void *a, const void *b)
{
	const struct topk_entry *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->key, y->key);
}

size_t topk_sorted(const struct topk *t, struct topk_entry *out, size_t max)
{
	struct topk_entry tmp[TOPK_CAP];
	size_t n = t->n;

	memcpy(tmp, t->e, n * sizeof(tmp[0]));
	qsort(tmp, n, sizeof(tmp[0]), topk_cmp);
	if (n > max)
		n = max;
	memcpy(out, tmp, n * sizeof(tmp[0]));
	return n;
}
