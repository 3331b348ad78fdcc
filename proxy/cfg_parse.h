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
	bool key_written;        /* that value's key is in the file (a `key:` with no value too) */
	bool in_default;         /* parsing a .defval text: errors are table bugs */
	bool in_item;            /* the next cfg_table_walk is for a list item */
	struct cfg_err *errs;
	size_t nerr, cap;
	size_t dropped;
};

/* The positions of every key and list item under root (NULL: none), for cfg_marks_where
 * (cfg_marks.c); NULL when out of memory. file: the name the messages give. */
struct cfg_marks *cfg_marks_build(const char *file, struct fy_node *root);

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
