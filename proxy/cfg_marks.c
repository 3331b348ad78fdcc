/* cfg_marks.c — where every key and list item of a loaded config file is, kept past the
 * load (see cfg.h, cfg_table_load_marked) for the messages of the checks made on the filled
 * struct afterwards (mxgate -t, the start, a reload), which then read as the loader's own:
 * `FILE:LINE:COL: key: reason`.
 *
 * The YAML document is walked once after a good load, every mapping key and sequence item a
 * node of a tree: its parent's index, its key (text kept once per node in one buffer) or
 * item index, its position. 20 octets and the key's text per node, no path strings: a
 * config's node count is bounded by the loader (cfg_load.c, CFG_MAX_EXPANDED), so is this.
 * A lookup ("backends.routes[2].domains[0]") is a binary search per component over the
 * nodes sorted by (parent, key, index). */
#include "cfg_parse.h"

#include <libfyaml.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MARK_TOP   UINT32_MAX   /* parent of a top-level key */
#define CFG_MARK_ITEM  UINT32_MAX   /* .key of a list item */
#define CFG_MARK_DEPTH 1100         /* the loader refuses documents nested deeper */

struct cfg_mark {
	uint32_t parent;   /* the key or item it is in; CFG_MARK_TOP */
	uint32_t key;      /* a mapping key: offset of its text (NUL-terminated) in names;
	                    * CFG_MARK_ITEM for a list item */
	uint32_t index;    /* a list item: its index */
	uint32_t line, col;/* 1-based */
};

struct cfg_marks {
	char *file;
	struct cfg_mark *v;
	size_t n, cap;
	uint32_t *order;   /* the indexes of v by (parent, key text, items after keys, index) */
	char *names;       /* the keys' texts */
	size_t names_len, names_cap;
};

/* Position of scalar n (a quoted one at its quote, as cfg_error says); 0 when n has none. */
static int cfg_marks_scalar_pos(struct fy_node *n, uint32_t *line, uint32_t *col)
{
	struct fy_token *t = n && fy_node_is_scalar(n) ? fy_node_get_scalar_token(n) : NULL;
	const struct fy_mark *fm = t ? fy_token_start_mark(t) : NULL;
	enum fy_node_style st;

	if (fm == NULL || fm->line < 0 || fm->column < 0)
		return 0;
	st = fy_node_get_style(n);
	*line = (uint32_t)fm->line + 1;
	*col = (uint32_t)fm->column + 1;
	if ((st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED) && *col > 1)
		(*col)--;
	return 1;
}

/* Position of n: its own scalar's, else its first key's or first item's (a mapping item
 * "- name: a" is at "name"), as cfg_error places a message about n. 0 when none. */
static int cfg_marks_node_pos(struct fy_node *n, uint32_t *line, uint32_t *col)
{
	for (int guard = 0; n != NULL && guard < CFG_MARK_DEPTH; guard++) {
		void *it = NULL;

		if (fy_node_is_scalar(n))
			return cfg_marks_scalar_pos(n, line, col);
		if (fy_node_is_mapping(n)) {
			struct fy_node_pair *pr = fy_node_mapping_iterate(n, &it);

			n = pr ? fy_node_pair_key(pr) : NULL;
		} else if (fy_node_is_sequence(n)) {
			n = fy_node_sequence_iterate(n, &it);
		} else {
			n = NULL;
		}
	}
	return 0;
}

/* Appends one node; its index, or UINT32_MAX when out of memory. */
static uint32_t cfg_marks_add(struct cfg_marks *m, uint32_t parent, const char *key, size_t klen,
			      uint32_t index, uint32_t line, uint32_t col)
{
	struct cfg_mark *e;

	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct cfg_mark *v = m->n < UINT32_MAX - 1 ? realloc(m->v, cap * sizeof(*v)) : NULL;

		if (v == NULL)
			return UINT32_MAX;
		m->v = v;
		m->cap = cap;
	}
	e = &m->v[m->n];
	*e = (struct cfg_mark){ parent, CFG_MARK_ITEM, index, line, col };
	if (key != NULL) {
		if (m->names_cap - m->names_len < klen + 1) {
			size_t cap = (m->names_cap ? m->names_cap * 2 : 1024) + klen + 1;
			char *v = cap < UINT32_MAX ? realloc(m->names, cap) : NULL;

			if (v == NULL)
				return UINT32_MAX;
			m->names = v;
			m->names_cap = cap;
		}
		memcpy(m->names + m->names_len, key, klen);
		m->names[m->names_len + klen] = '\0';
		e->key = (uint32_t)m->names_len;
		m->names_len += klen + 1;
	}
	return (uint32_t)m->n++;
}

/* Marks the keys or items of n, each below self (CFG_MARK_TOP at the root); pos is self's
 * position, an item without one of its own takes it. 0 or -1 (out of memory). */
static int cfg_marks_walk(struct cfg_marks *m, struct fy_node *n, uint32_t self, uint32_t line,
			  uint32_t col, int depth)
{
	void *it = NULL;

	if (depth > CFG_MARK_DEPTH)
		return 0;
	if (n != NULL && fy_node_is_alias(n))
		n = fy_node_resolve_alias(n);
	if (n != NULL && fy_node_is_mapping(n)) {
		struct fy_node_pair *pr;

		while ((pr = fy_node_mapping_iterate(n, &it)) != NULL) {
			struct fy_node *k = fy_node_pair_key(pr), *v = fy_node_pair_value(pr);
			uint32_t l = line, c = col, at;
			size_t klen = 0;
			const char *key = k && fy_node_is_scalar(k) ? fy_node_get_scalar(k, &klen) : NULL;

			if (key == NULL || memchr(key, '\0', klen) != NULL)
				continue;	/* the loader refused it */
			/* a value's own position (a scalar's, as the loader's errors about it);
			 * a section, a list or a null at its key: "tls:" */
			if (cfg_node_is_null(v) || !fy_node_is_scalar(v) || !cfg_marks_scalar_pos(v, &l, &c))
				cfg_marks_scalar_pos(k, &l, &c);
			if ((at = cfg_marks_add(m, self, key, klen, 0, l, c)) == UINT32_MAX ||
			    cfg_marks_walk(m, v, at, l, c, depth + 1) < 0)
				return -1;
		}
	} else if (n != NULL && fy_node_is_sequence(n)) {
		struct fy_node *v;
		uint32_t i = 0;

		while ((v = fy_node_sequence_iterate(n, &it)) != NULL) {
			uint32_t l = line, c = col, at;

			cfg_marks_node_pos(v, &l, &c);
			if ((at = cfg_marks_add(m, self, NULL, 0, i++, l, c)) == UINT32_MAX ||
			    cfg_marks_walk(m, v, at, l, c, depth + 1) < 0)
				return -1;
		}
	}
	return 0;
}

/* Order of two nodes: parent, then keys (by text) before items (by index). */
static int cfg_marks_cmp(const void *a, const void *b, void *arg)
{
	const struct cfg_marks *m = arg;
	const struct cfg_mark *x = &m->v[*(const uint32_t *)a], *y = &m->v[*(const uint32_t *)b];

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	if ((x->key == CFG_MARK_ITEM) != (y->key == CFG_MARK_ITEM))
		return x->key == CFG_MARK_ITEM ? 1 : -1;
	if (x->key != CFG_MARK_ITEM)
		return strcmp(m->names + x->key, m->names + y->key);
	return x->index < y->index ? -1 : x->index > y->index;
}

/* See cfg_parse.h. */
struct cfg_marks *cfg_marks_build(const char *file, struct fy_node *root)
{
	struct cfg_marks *m = calloc(1, sizeof(*m));

	if (m == NULL || (m->file = strdup(file)) == NULL ||
	    cfg_marks_walk(m, root, CFG_MARK_TOP, 1, 1, 0) < 0 ||
	    (m->n > 0 && (m->order = malloc(m->n * sizeof(*m->order))) == NULL)) {
		cfg_marks_free(m);
		return NULL;
	}
	if (m->n > 0 && m->n < m->cap) {	/* kept for the config's life: no slack */
		struct cfg_mark *v = realloc(m->v, m->n * sizeof(*v));

		if (v != NULL) {
			m->v = v;
			m->cap = m->n;
		}
	}
	for (size_t i = 0; i < m->n; i++)
		m->order[i] = (uint32_t)i;
	qsort_r(m->order, m->n, sizeof(*m->order), cfg_marks_cmp, m);
	return m;
}

/* The node below parent named key[0..klen) (key NULL: item index), or UINT32_MAX. */
static uint32_t cfg_marks_find(const struct cfg_marks *m, uint32_t parent, const char *key, size_t klen,
			       uint32_t index)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct cfg_mark *e = &m->v[m->order[mid]];
		int c;

		if (e->parent != parent)
			c = e->parent < parent ? -1 : 1;
		else if ((e->key == CFG_MARK_ITEM) != (key == NULL))
			c = e->key == CFG_MARK_ITEM ? 1 : -1;
		else if (key != NULL) {
			const char *s = m->names + e->key;

			c = strncmp(s, key, klen);
			if (c == 0 && s[klen] != '\0')
				c = 1;
		} else
			c = e->index < index ? -1 : e->index > index;
		if (c == 0)
			return m->order[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return UINT32_MAX;
}

/* The node of key's path nearest to it that is in the file (CFG_MARK_TOP: none); *rest
 * (rest not NULL) is the part of key below it, "" when key itself is in the file. */
static uint32_t cfg_marks_nearest(const struct cfg_marks *m, const char *key, const char **rest)
{
	uint32_t at = CFG_MARK_TOP;
	const char *s = key, *below = key;

	while (m != NULL && s != NULL && *s != '\0') {
		uint32_t next;

		if (*s == '[') {
			char *end;
			unsigned long i = strtoul(s + 1, &end, 10);

			if (end == s + 1 || *end != ']' || i >= UINT32_MAX)
				break;
			next = cfg_marks_find(m, at, NULL, 0, (uint32_t)i);
			s = end + 1;
		} else {
			size_t n;

			if (*s == '.' && s != key)
				s++;
			n = strcspn(s, ".[");
			if (n == 0)
				break;
			next = cfg_marks_find(m, at, s, n, 0);
			s += n;
		}
		if (next == UINT32_MAX)
			break;
		at = next;
		below = s;
	}
	if (rest != NULL)
		*rest = below ? below : "";
	return at;
}

/* See cfg.h. */
bool cfg_marks_has(const struct cfg_marks *m, const char *key)
{
	const char *rest;

	return cfg_marks_nearest(m, key, &rest) != CFG_MARK_TOP && *rest == '\0';
}

/* See cfg.h. */
const char *cfg_marks_where(const struct cfg_marks *m, const char *file, const char *key, char *buf,
			    size_t cap)
{
	uint32_t line = 1, col = 1;	/* nothing of key in the file: the top of the file */
	/* the nearest node of key's path that is in the file: an absent key is at its
	 * section's key, a list of one written as a lone value is at that value */
	uint32_t at = cfg_marks_nearest(m, key, NULL);

	if (at != CFG_MARK_TOP) {
		line = m->v[at].line;
		col = m->v[at].col;
	}
	snprintf(buf, cap, "%s:%u:%u", m && m->file ? m->file : file ? file : "<config>", line, col);
	return buf;
}

/* See cfg.h. */
size_t cfg_marks_count(const struct cfg_marks *m, size_t *bytes)
{
	if (bytes != NULL)
		*bytes = m ? sizeof(*m) + m->cap * sizeof(*m->v) + m->n * sizeof(*m->order) + m->names_cap : 0;
	return m ? m->n : 0;
}

/* See cfg.h. */
void cfg_marks_free(struct cfg_marks *m)
{
	if (m == NULL)
		return;
	free(m->order);
	free(m->names);
	free(m->v);
	free(m->file);
	free(m);
}
