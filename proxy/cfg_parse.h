/* cfg_parse.h — the table engine's private state, shared by cfg.c (walk, errors, self-check)
 * and cfg_load.c (text -> YAML document -> walk). Not for modules: they see struct cfg_parse
 * as an opaque handle through cfg.h. */
#ifndef MX_CFG_PARSE_H
#define MX_CFG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cfg.h"

struct cfg_err {
	int line, col;   /* 1-based; 0 when unknown */
	unsigned seq;    /* report order, to keep the sort stable */
	char *text;      /* the whole line without newline */
};

struct cfg_parse {
	const char *file;
	char path[1024];
	size_t pathlen;
	struct fy_node *key;     /* key node of the value being parsed: fallback position */
	bool in_default;         /* parsing a .defval text: errors are table bugs */
	bool in_item;            /* the next cfg_table_walk is for a list item */
	struct cfg_err *errs;
	size_t nerr, cap;
	size_t dropped;
	const char *const *mark_keys;  /* key paths whose positions are kept (NULL: none) */
	struct cfg_marks *marks;       /* where they go (cfg_table_load_marked) */
};

/* One kept position: a key path as messages name it ("tls.sni[1].key") and where its value
 * is (its section's when the key is absent: the default applies). */
struct cfg_mark {
	char *key;
	int line, col;
};
struct cfg_marks {
	char *file;
	struct cfg_mark *v;
	size_t n, cap;
};

/* Keeps the position of node n (NULL: unknown) under the current key path when that path
 * matches one of p->mark_keys ("[]" in a pattern matches any index). */
void cfg_mark_node(struct cfg_parse *p, struct fy_node *n);

/* Records one finished error line at line:col (1-based; 0:0 unknown), escaping control
 * characters; past CFG_MAX_ERRORS it is only counted. */
void cfg_error_add(struct cfg_parse *p, int line, int col, const char *text);
/* Sorts the errors by position, prints them to err (may be NULL) and releases them. */
void cfg_parse_finish(struct cfg_parse *p, FILE *err);
/* Fills obj from mapping n (NULL = absent: defaults only) by table t. scalar_ok: n may be a
 * lone scalar whose value the caller already stored in the first field (list items).
 * 0, or -1 after reporting. */
int cfg_table_walk(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n,
		   void *obj, bool scalar_ok);
/* "a mapping", "a list", "a scalar" or "nothing", for messages. */
const char *cfg_node_kind(struct fy_node *n);

#endif
