/* quarantine_index.c — name -> X-Quarantine-ID of the held files (see quarantine_index.h):
 * an open-addressed hash table (FNV-1a, linear probing, at most half full); a sweep rebuilds
 * it from the entries still seen (no tombstones). */
#include "quarantine_index.h"

#include "fnv.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct quarantine_index_entry {
	char *name;                          /* NULL: a free slot */
	uint64_t ino;
	uint32_t gen;
	char id[QUARANTINE_ID_MAX + 1];
};

struct quarantine_index {
	struct quarantine_index_entry *slots;
	size_t cap, n;                       /* cap a power of two */
	uint32_t gen;
};

/* The slot of name, or the free slot where it would go. */
static struct quarantine_index_entry *quarantine_index_slot(struct quarantine_index_entry *slots, size_t cap,
    const char *name)
{
	size_t i = (size_t)fnv1a64_str(name) & (cap - 1);

	while (slots[i].name && strcmp(slots[i].name, name) != 0)
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

struct quarantine_index *quarantine_index_new(void)
{
	struct quarantine_index *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->cap = 64;
	x->slots = calloc(x->cap, sizeof(*x->slots));
	if (x->slots == NULL) {
		free(x);
		return NULL;
	}
	return x;
}

void quarantine_index_free(struct quarantine_index *x)
{
	if (x == NULL)
		return;
	for (size_t i = 0; i < x->cap; i++)
		free(x->slots[i].name);
	free(x->slots);
	free(x);
}

void quarantine_index_begin(struct quarantine_index *x)
{
	x->gen++;
}

bool quarantine_index_get(struct quarantine_index *x, const char *name, uint64_t ino, char *id)
{
	struct quarantine_index_entry *e = quarantine_index_slot(x->slots, x->cap, name);

	if (e->name == NULL || e->ino != ino)
		return false;
	e->gen = x->gen;
	memcpy(id, e->id, sizeof(e->id));
	return true;
}

/* Moves the entries seen in this walk (all with keep_all) into a table of cap slots. */
static int quarantine_index_rehash(struct quarantine_index *x, size_t cap, bool keep_all)
{
	struct quarantine_index_entry *slots = calloc(cap, sizeof(*slots));
	size_t n = 0;

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < x->cap; i++) {
		struct quarantine_index_entry *e = &x->slots[i];
		if (e->name == NULL)
			continue;
		if (!keep_all && e->gen != x->gen) {
			free(e->name);
			continue;
		}
		*quarantine_index_slot(slots, cap, e->name) = *e;
		n++;
	}
	free(x->slots);
	x->slots = slots;
	x->cap = cap;
	x->n = n;
	return 0;
}

int quarantine_index_put(struct quarantine_index *x, const char *name, uint64_t ino, const char *id)
{
	struct quarantine_index_entry *e;

	if ((x->n + 1) * 2 > x->cap && quarantine_index_rehash(x, x->cap * 2, true) != 0)
		return -1;
	e = quarantine_index_slot(x->slots, x->cap, name);
	if (e->name == NULL) {
		if ((e->name = strdup(name)) == NULL)
			return -1;
		x->n++;
	}
	e->ino = ino;
	e->gen = x->gen;
	size_t k = strlen(id) < QUARANTINE_ID_MAX ? strlen(id) : QUARANTINE_ID_MAX;
	memcpy(e->id, id, k);
	e->id[k] = '\0';
	return 0;
}

void quarantine_index_sweep(struct quarantine_index *x)
{
	size_t live = 0, cap = x->cap;

	for (size_t i = 0; i < x->cap; i++)
		live += x->slots[i].name && x->slots[i].gen == x->gen;
	if (live == x->n)
		return;
	while (cap > 64 && live * 4 < cap)   /* shrink as files go */
		cap /= 2;
	/* out of memory: the gone names stay (harmless: a hit is verified against the file),
	 * a later sweep drops them */
	(void)quarantine_index_rehash(x, cap, false);
}

size_t quarantine_index_count(const struct quarantine_index *x)
{
	return x->n;
}
