/* cfg.c — the table-driven YAML configuration engine (see cfg.h).
 *
 * The engine walks a `struct cfg_table` over a libfyaml mapping, fills a C struct, applies
 * defaults (parsed from .defval text by the same parsers), checks bounds, required keys and
 * unknown keys, runs each table's validate hook, and collects every error as
 *     FILE:LINE:COL: key.path: reason
 * Errors are sorted by position and printed once the whole file has been walked. Reading
 * the text into a YAML document is cfg_load.c. */
#include "cfg_parse.h"
#include "cidr.h"
#include "listfile.h"

#include <libfyaml.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_MAX_ERRORS      200                  /* errors kept; the rest are counted */

/* ---------------------------------------------------------------- error reporting */

/* Position of node n: its own token, else its first scalar descendant, else the key it
 * belongs to. 1-based; 0:0 when nothing is known. */
static void cfg_node_position(struct cfg_parse *p, struct fy_node *n, int *line, int *col)
{
	*line = 0;
	*col = 0;
	for (int pass = 0; pass < 2; pass++) {
		struct fy_node *cur = pass == 0 ? n : p->key;
		int guard = 0;
		while (cur && guard++ < 256) {
			struct fy_token *t = fy_node_get_scalar_token(cur);
			if (t) {
				const struct fy_mark *m = fy_token_start_mark(t);
				if (m && m->line >= 0) {
					enum fy_node_style st = fy_node_get_style(cur);
					*line = m->line + 1;
					*col = m->column + 1;
					/* a quoted scalar's token starts after the quote: point at it */
					if ((st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED) && *col > 1)
						(*col)--;
					return;
				}
			}
			if (fy_node_is_mapping(cur)) {
				void *it = NULL;
				struct fy_node_pair *pr = fy_node_mapping_iterate(cur, &it);
				cur = pr ? fy_node_pair_key(pr) : NULL;
			} else if (fy_node_is_sequence(cur)) {
				void *it = NULL;
				cur = fy_node_sequence_iterate(cur, &it);
			} else {
				cur = NULL;
			}
		}
	}
	*line = 1; /* nothing known (an empty file): the top of the file */
	*col = 1;
}

void cfg_error_add(struct cfg_parse *p, int line, int col, const char *text)
{
	if (p->nerr >= CFG_MAX_ERRORS) {
		p->dropped++;
		return;
	}
	if (p->nerr == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct cfg_err *v = realloc(p->errs, cap * sizeof(*v));
		if (!v) {
			p->dropped++;
			return;
		}
		p->errs = v;
		p->cap = cap;
	}
	/* one error per line: values echoed back are escaped (C-style) */
	size_t n = 0;
	char *copy = malloc(strlen(text) * 4 + 1);
	if (!copy) {
		p->dropped++;
		return;
	}
	for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
		if (*t >= 0x20 && *t != 0x7f) {
			copy[n++] = (char)*t;
		} else if (*t == '\n' || *t == '\r' || *t == '\t') {
			copy[n++] = '\\';
			copy[n++] = *t == '\n' ? 'n' : *t == '\r' ? 'r' : 't';
		} else {
			n += (size_t)sprintf(copy + n, "\\x%02x", *t);
		}
	}
	copy[n] = '\0';
	p->errs[p->nerr] = (struct cfg_err){ .line = line, .col = col, .seq = (unsigned)p->nerr,
					     .text = copy };
	p->nerr++;
}

static int cfg_verror(struct cfg_parse *p, struct fy_node *n, const char *fmt, va_list ap)
{
	char reason[512], line[1800];
	int l = 0, c = 0;
	vsnprintf(reason, sizeof(reason), fmt, ap);
	if (!p->in_default)
		cfg_node_position(p, n, &l, &c);
	const char *where = p->pathlen ? p->path : "";
	const char *sep = p->pathlen ? ": " : "";
	if (p->in_default)
		snprintf(line, sizeof(line), "%s:%d:%d: %s%sbuilt-in default: %s", p->file, l, c,
			 where, sep, reason);
	else
		snprintf(line, sizeof(line), "%s:%d:%d: %s%s%s", p->file, l, c, where, sep, reason);
	cfg_error_add(p, l, c, line);
	return -1;
}

int cfg_error(struct cfg_parse *p, struct fy_node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Appends ".key" (or "key" at the root) to the path; returns the old length for path_pop. */
size_t cfg_path_push_key(struct cfg_parse *p, const char *key, size_t keylen)
{
	size_t old = p->pathlen;
	int n = snprintf(p->path + p->pathlen, sizeof(p->path) - p->pathlen, "%s%.*s",
			 p->pathlen ? "." : "", (int)keylen, key);
	if (n > 0)
		p->pathlen = p->pathlen + (size_t)n < sizeof(p->path) ? p->pathlen + (size_t)n
								     : sizeof(p->path) - 1;
	return old;
}

size_t cfg_path_push_index(struct cfg_parse *p, size_t i)
{
	size_t old = p->pathlen;
	int n = snprintf(p->path + p->pathlen, sizeof(p->path) - p->pathlen, "[%zu]", i);
	if (n > 0)
		p->pathlen = p->pathlen + (size_t)n < sizeof(p->path) ? p->pathlen + (size_t)n
								     : sizeof(p->path) - 1;
	return old;
}

void cfg_path_pop(struct cfg_parse *p, size_t old)
{
	p->pathlen = old;
	p->path[old] = '\0';
}

/* Scalar text of n (not NUL-terminated) or NULL when n is not a scalar. */
static const char *cfg_node_text(struct fy_node *n, size_t *len)
{
	if (!n || !fy_node_is_scalar(n))
		return NULL;
	const char *s = fy_node_get_scalar(n, len);
	if (!s) {
		*len = 0;
		return "";
	}
	return s;
}

static bool cfg_key_equals(struct fy_node *k, const char *key)
{
	size_t len;
	const char *s = cfg_node_text(k, &len);
	return s && strlen(key) == len && memcmp(s, key, len) == 0;
}

/* Pair of mapping n whose key is `key`, or NULL. */
struct fy_node_pair *cfg_map_pair(struct fy_node *n, const char *key)
{
	if (!n || !fy_node_is_mapping(n))
		return NULL;
	void *it = NULL;
	struct fy_node_pair *pr;
	while ((pr = fy_node_mapping_iterate(n, &it)))
		if (cfg_key_equals(fy_node_pair_key(pr), key))
			return pr;
	return NULL;
}

/* Item i of a sequence node (or n itself for i == 0 when n is a lone scalar). */
struct fy_node *cfg_seq_item(struct fy_node *n, size_t i)
{
	if (!n)
		return NULL;
	if (!fy_node_is_sequence(n))
		return i == 0 ? n : NULL;
	void *it = NULL;
	struct fy_node *c;
	size_t k = 0;
	while ((c = fy_node_sequence_iterate(n, &it)))
		if (k++ == i)
			return c;
	return NULL;
}

int cfg_error_key(struct cfg_parse *p, struct fy_node *section, const char *key, long index,
		  const char *fmt, ...)
{
	struct fy_node_pair *pr = cfg_map_pair(section, key);
	struct fy_node *val = pr ? fy_node_pair_value(pr) : NULL;
	struct fy_node *saved_key = p->key;
	struct fy_node *at = val;
	if (pr)
		p->key = fy_node_pair_key(pr);
	size_t old = cfg_path_push_key(p, key, strlen(key));
	if (index >= 0) {
		cfg_path_push_index(p, (size_t)index);
		struct fy_node *item = cfg_seq_item(val, (size_t)index);
		if (item)
			at = item;
	}
	va_list ap;
	va_start(ap, fmt);
	cfg_verror(p, at ? at : section, fmt, ap);
	va_end(ap);
	cfg_path_pop(p, old);
	p->key = saved_key;
	return -1;
}

char *cfg_file_line_item(char *line, ssize_t len)
{
	char *s = line, *e = line + len, *hash = memchr(line, '#', (size_t)len);

	if (hash != NULL)
		e = hash;
	while (s < e && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	if (s == e)
		return NULL;
	*e = '\0';
	return s;
}

int cfg_read_list_file(struct cfg_parse *p, struct fy_node *section, const char *key, size_t index,
		       const char *path, cfg_file_item_fn add, void *arg)
{
	/* cidr_file_read's rules: a regular file of at most CIDR_FILE_MAX octets (or /dev/null,
	 * empty); a device or a FIFO could block or never end (file:/dev/zero grew one line
	 * past 2 GiB: fuzz_config, session 28) */
	const char *errstr = NULL, *why, *text;
	size_t len = 0, lineno = 0;
	struct listfile *f = listfile_get(path, &errstr);   /* kept when unchanged (listfile.h) */
	char *buf, *line, *end, *s;
	int rc = 0;

	if (f == NULL)
		return cfg_error_key(p, section, key, (long)index, "cannot read %s: %s", path,
				     errstr ? errstr : "?");
	/* a copy: the items are cut in place (NUL-terminated for add), the kept text stays */
	text = listfile_text(f, &len);
	buf = malloc(len + 1);
	if (buf == NULL) {
		listfile_release(f);
		return cfg_error_key(p, section, key, (long)index, "cannot read %s: out of memory", path);
	}
	memcpy(buf, text, len + 1);
	listfile_release(f);
	for (line = buf; rc == 0 && line < buf + len; line = end + 1) {
		lineno++;
		end = memchr(line, '\n', (size_t)(buf + len - line));
		if (end == NULL)
			end = buf + len;	/* the last line without its newline; buf[len] is NUL */
		if ((s = cfg_file_line_item(line, end - line)) == NULL)
			continue;
		if ((why = add(arg, s)) != NULL)
			rc = cfg_error_key(p, section, key, (long)index, "%s:%zu: \"%.100s\": %s",
					   path, lineno, s, why);
	}
	free(buf);
	return rc;
}

/* ---------------------------------------------------------------- the generic engine */

/* Iterates n as a list: the items of a sequence, or n itself once when it is a lone value. */
static struct fy_node *cfg_list_next(struct fy_node *n, void **iter, bool *done)
{
	if (*done || !n)
		return NULL;
	if (fy_node_is_sequence(n)) {
		struct fy_node *c = fy_node_sequence_iterate(n, iter);
		if (!c)
			*done = true;
		return c;
	}
	*done = true;
	return n;
}

bool cfg_node_is_null(struct fy_node *n)
{
	if (!n)
		return true;
	if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN)
		return false;
	size_t len;
	const char *s = cfg_node_text(n, &len);
	return len == 0 || (len == 1 && s[0] == '~') ||
	       (len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
			     memcmp(s, "NULL", 4) == 0));
}

const char *cfg_node_kind(struct fy_node *n)
{
	if (!n)
		return "nothing";
	if (fy_node_is_mapping(n))
		return "a mapping";
	if (fy_node_is_sequence(n))
		return "a list";
	return "a scalar";
}

/* Copies the scalar text of n into buf as a C string, for the numeric parsers. */
int cfg_node_cstr(struct cfg_parse *p, struct fy_node *n, const char *what, char *buf,
			 size_t bufsz)
{
	size_t len;
	const char *s = cfg_node_text(n, &len);
	if (!s)
		return cfg_error(p, n, "expected %s, got %s", what, cfg_node_kind(n));
	if (len >= bufsz || memchr(s, '\0', len))
		return cfg_error(p, n, "expected %s, got a %zu-byte value", what, len);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

/* Formats a bound of field f's type for messages and docs. */
void cfg_format_bound(const struct cfg_field *f, double v, char *buf, size_t sz)
{
	if (f->type == CFG_DURATION)
		cfg_format_duration((uint64_t)v, buf, sz);
	else if (f->type == CFG_SIZE)
		cfg_format_size((uint64_t)v, buf, sz);
	else
		snprintf(buf, sz, "%.15g", v);
}

static int cfg_check_bounds(struct cfg_parse *p, const struct cfg_field *f, struct fy_node *n,
			    double v, const char *text)
{
	if (!cfg_has_bounds(f) || (v >= f->min && v <= f->max))
		return 0;
	char lo[64], hi[64];
	cfg_format_bound(f, f->min, lo, sizeof(lo));
	cfg_format_bound(f, f->max, hi, sizeof(hi));
	return cfg_error(p, n, "must be between %s and %s, got %s", lo, hi, text);
}

static int cfg_enum_index(const char *const *choices, const char *s)
{
	for (int i = 0; choices && choices[i]; i++)
		if (strcasecmp(choices[i], s) == 0)
			return i;
	return -1;
}

static void cfg_enum_list(const char *const *choices, char *buf, size_t sz)
{
	size_t off = 0;
	buf[0] = '\0';
	for (int i = 0; choices && choices[i] && off < sz; i++) {
		int k = snprintf(buf + off, sz - off, "%s%s", i ? ", " : "", choices[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
}

/* Parses a scalar-typed value from text s (node n for positions; may be NULL). */
static int cfg_parse_scalar_text(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, const char *s, void *dst)
{
	switch (f->type) {
	case CFG_BOOL: {
		bool b;
		if (cfg_parse_bool(s, &b) < 0)
			return cfg_error(p, n, "expected true or false, got \"%s\"", s);
		*(bool *)dst = b;
		return 0;
	}
	case CFG_INT: {
		long v;
		if (cfg_parse_long(s, &v) < 0)
			return cfg_error(p, n, "expected an integer, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(long *)dst = v;
		return 0;
	}
	case CFG_DOUBLE: {
		double v;
		if (cfg_parse_double(s, &v) < 0)
			return cfg_error(p, n, "expected a number, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, v, s) < 0)
			return -1;
		*(double *)dst = v;
		return 0;
	}
	case CFG_SIZE: {
		uint64_t v;
		if (cfg_parse_size(s, &v) < 0)
			return cfg_error(p, n, "expected a size like 512, 64K, 50M or 1G, got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(uint64_t *)dst = v;
		return 0;
	}
	case CFG_DURATION: {
		uint64_t v;
		if (cfg_parse_duration(s, &v) < 0)
			return cfg_error(p, n, "expected a duration like 250ms, 30s, 5m, 1h or 2d, "
					 "got \"%s\"", s);
		if (cfg_check_bounds(p, f, n, (double)v, s) < 0)
			return -1;
		*(uint64_t *)dst = v;
		return 0;
	}
	case CFG_ENUM: {
		int i = cfg_enum_index(f->choices, s);
		if (i < 0) {
			char list[256];
			cfg_enum_list(f->choices, list, sizeof(list));
			return cfg_error(p, n, "expected one of %s, got \"%s\"", list, s);
		}
		*(int *)dst = i;
		return 0;
	}
	case CFG_RATE: {
		struct cfg_rate r;
		if (cfg_parse_rate(s, &r) < 0)
			return cfg_error(p, n, "expected a rate like 30/60s, 1000/1h or 10/m, got \"%s\"",
					 s);
		*(struct cfg_rate *)dst = r;
		return 0;
	}
	case CFG_STRING: {
		char *copy = strdup(s);
		if (!copy)
			return cfg_error(p, n, "out of memory");
		free(*(char **)dst);
		*(char **)dst = copy;
		return 0;
	}
	default:
		return cfg_error(p, n, "internal: not a scalar type");
	}
}

static bool cfg_type_is_scalar(enum cfg_type t)
{
	return t == CFG_BOOL || t == CFG_INT || t == CFG_DOUBLE || t == CFG_SIZE ||
	       t == CFG_DURATION || t == CFG_STRING || t == CFG_ENUM || t == CFG_RATE;
}

static const char *cfg_type_noun(const struct cfg_field *f)
{
	switch (f->type) {
	case CFG_BOOL: return "true or false";
	case CFG_INT: return "an integer";
	case CFG_DOUBLE: return "a number";
	case CFG_SIZE: return "a size";
	case CFG_DURATION: return "a duration";
	case CFG_STRING: return "a string";
	case CFG_ENUM: return "one of the listed words";
	case CFG_RATE: return "a rate";
	case CFG_STRLIST: return "a list of strings";
	case CFG_STRUCT: return "a mapping";
	case CFG_STRUCT_LIST: return "a list";
	case CFG_CIDRLIST: return "a list of addresses/prefixes";
	case CFG_CUSTOM: return "a value";
	}
	return "a value";
}

static int cfg_parse_scalar_node(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, void *dst)
{
	if (f->type == CFG_STRING) {
		size_t len;
		const char *s = cfg_node_text(n, &len);
		if (!s)
			return cfg_error(p, n, "expected a string, got %s", cfg_node_kind(n));
		if (memchr(s, '\0', len))
			return cfg_error(p, n, "NUL byte in a string");
		char *copy = strndup(s, len);
		if (!copy)
			return cfg_error(p, n, "out of memory");
		free(*(char **)dst);
		*(char **)dst = copy;
		return 0;
	}
	char buf[CFG_SCALAR_MAX];
	if (cfg_node_cstr(p, n, cfg_type_noun(f), buf, sizeof(buf)) < 0)
		return -1;
	return cfg_parse_scalar_text(p, f, n, buf, dst);
}

/* Item count of n seen as a list: a sequence's length, 1 for a lone non-null value. */
static size_t cfg_list_count(struct fy_node *n)
{
	if (cfg_node_is_null(n))
		return 0;
	if (fy_node_is_sequence(n)) {
		int c = fy_node_sequence_item_count(n);
		return c > 0 ? (size_t)c : 0;
	}
	return 1;
}

static int cfg_parse_strlist(struct cfg_parse *p, struct fy_node *n, struct cfg_strlist *l)
{
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
	if (cnt == 0)
		return 0;
	l->v = calloc(cnt, sizeof(char *));
	if (!l->v)
		return cfg_error(p, n, "out of memory");
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		size_t old = cfg_path_push_index(p, i);
		size_t len;
		const char *s = cfg_node_text(it, &len);
		if (!s || memchr(s, '\0', len)) {
			rc = cfg_error(p, it, "expected a string, got %s", cfg_node_kind(it));
		} else {
			l->v[l->n] = strndup(s, len);
			if (!l->v[l->n])
				rc = cfg_error(p, it, "out of memory");
			else
				l->n++;
		}
		cfg_path_pop(p, old);
	}
	return rc;
}

/* What cidr_text_parse reports for one bad line of a `file:` entry: the error line names
 * the file's own position (FILE:LINE:COL of the bad text) and sorts at the list item's. */
struct cfg_cidrfile_ctx {
	struct cfg_parse *p;
	const char *path;
	int line, col;     /* the list item's position in the YAML file */
};

static void cfg_cidrfile_bad_cb(void *arg, size_t line, size_t col, const char *reason,
				const char *text)
{
	struct cfg_cidrfile_ctx *x = arg;
	struct cfg_parse *p = x->p;
	char msg[1800];

	snprintf(msg, sizeof(msg), "%s:%zu:%zu: %s%s%s, got \"%s\"", x->path, line, col,
		 p->pathlen ? p->path : "", p->pathlen ? ": " : "", reason, text);
	cfg_error_add(p, x->line, x->col, msg);
}

/* Appends c to l (one more item). 0 or -1 (out of memory). */
static int cfg_cidrlist_add(struct cfg_cidrlist *l, const struct cfg_cidr *c)
{
	struct cfg_cidr *v = realloc(l->v, (l->n + 1) * sizeof(*v));

	if (!v)
		return -1;
	l->v = v;
	l->v[l->n++] = *c;
	l->sorted = false;
	return 0;
}

/* Appends the CIDRs of the `file:` item it (path, its text f) to l: those kept with f when
 * an earlier load parsed the same text, else parsed now (each bad line an error at its
 * FILE:LINE:COL) and, when all are good, kept with f for the next load. 0 or -1. */
static int cfg_cidrlist_add_file(struct cfg_parse *p, struct fy_node *it, const char *path,
				 struct listfile *f, struct cfg_cidrlist *l)
{
	struct cfg_cidrfile_ctx x = { p, path, 0, 0 };
	struct cfg_cidrlist one = { NULL, 0, false };
	const struct cfg_cidr *kept;
	const char *text;
	size_t n, len;
	int r;

	if (!listfile_cidrs(f, &kept, &n)) {
		text = listfile_text(f, &len);
		cfg_node_position(p, it, &x.line, &x.col);
		r = cidr_text_parse(text, len, &one, cfg_cidrfile_bad_cb, &x);
		if (r != 0) {
			free(one.v);
			return r < 0 ? cfg_error(p, it, "out of memory") : -1;
		}
		cfg_cidrlist_sort(&one);
		listfile_keep_cidrs(f, one.v, one.n);
		/* this parse, not a kept copy the mmap could not make (an empty list else) */
		kept = one.v;
		n = one.n;
	}
	if (n == 0) {
		free(one.v);
		return 0;
	}
	struct cfg_cidr *v = realloc(l->v, (l->n + n) * sizeof(*v));
	if (!v) {
		free(one.v);
		return cfg_error(p, it, "out of memory");
	}
	memcpy(v + l->n, kept, n * sizeof(*v));
	free(one.v);
	l->sorted = l->n == 0;   /* the kept run is in order: alone, the list needs no sort */
	l->v = v;
	l->n += n;
	return 0;
}

/* A list of CIDRs: each item an address or prefix, or "file:PATH" (proxy/cidr.h: one per
 * line, '#' comments), read now — so SIGHUP, which loads a fresh config, re-reads it, and a
 * bad file then keeps the running config. */
static int cfg_parse_cidrlist(struct cfg_parse *p, struct fy_node *n, struct cfg_cidrlist *l)
{
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	free(l->v);
	l->v = NULL;
	l->n = 0;
	l->sorted = false;
	if (cnt == 0)
		return 0;
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		size_t old = cfg_path_push_index(p, i);
		char buf[4096 + 8];
		struct cfg_cidr c;
		if (cfg_node_cstr(p, it, "an address or prefix", buf, sizeof(buf)) < 0) {
			rc = -1;
		} else if (strncmp(buf, "file:", 5) == 0) {
			const char *err = NULL;
			struct listfile *f = buf[5] ? listfile_get(buf + 5, &err) : NULL;
			if (!buf[5])
				rc = cfg_error(p, it, "file: needs a path");
			else if (!f)
				rc = cfg_error(p, it, "cannot read %s: %s", buf + 5, err);
			else if (cfg_cidrlist_add_file(p, it, buf + 5, f, l) < 0)
				rc = -1;
			listfile_release(f);
		} else if (strlen(buf) >= CFG_SCALAR_MAX || cfg_parse_cidr(buf, &c) < 0) {
			rc = cfg_error(p, it, "expected an address or prefix like 192.0.2.0/24, "
				       "2001:db8::/32 or file:PATH, got \"%.200s\"", buf);
		} else if (cfg_cidrlist_add(l, &c) < 0) {
			rc = cfg_error(p, it, "out of memory");
		}
		cfg_path_pop(p, old);
	}
	if (!l->sorted)
		cfg_cidrlist_sort(l);   /* a match is then a binary search per prefix length */
	return rc;
}

static int cfg_parse_struct_list(struct cfg_parse *p, const struct cfg_field *f,
				 struct fy_node *n, struct cfg_list *l)
{
	const struct cfg_table *sub = f->sub;
	size_t cnt = cfg_list_count(n);
	int rc = 0;
	if (!sub || !sub->fields)
		return cfg_error(p, n, "internal: list without an item table");
	if (l->v) {
		for (size_t i = 0; i < l->n; i++)
			cfg_table_free(sub, (char *)l->v + i * sub->size);
		free(l->v);
	}
	l->v = NULL;
	l->n = 0;
	if (cnt == 0)
		return 0;
	l->v = calloc(cnt, sub->size);
	if (!l->v)
		return cfg_error(p, n, "out of memory");
	l->n = cnt; /* all zeroed, so cfg_table_free is safe on any of them */
	void *iter = NULL;
	bool done = false;
	for (size_t i = 0; i < cnt; i++) {
		struct fy_node *it = cfg_list_next(n, &iter, &done);
		void *item = (char *)l->v + i * sub->size;
		size_t old = cfg_path_push_index(p, i);
		if (it && fy_node_is_scalar(it) && !cfg_node_is_null(it) && sub->fields[0].key &&
		    sub->fields[0].type == CFG_STRING) {
			/* a plain string item sets the element's first key: `- smtp://h:25` */
			size_t o2 = cfg_path_push_key(p, sub->fields[0].key, strlen(sub->fields[0].key));
			int r = cfg_parse_scalar_node(p, &sub->fields[0],
						      it, (char *)item + sub->fields[0].offset);
			cfg_path_pop(p, o2);
			if (r < 0) {
				rc = -1;
			} else {
				/* the rest take their defaults; validate sees the scalar node */
				p->in_item = true;
				if (cfg_table_walk(p, sub, it, item, true) < 0)
					rc = -1;
			}
		} else {
			p->in_item = true;
			if (cfg_table_walk(p, sub, cfg_node_is_null(it) ? NULL : it, item, false) < 0)
				rc = -1;
		}
		cfg_path_pop(p, old);
	}
	return rc;
}

/* Builds a small YAML document from a .defval text (for list and custom defaults). */
static struct fy_document *cfg_default_doc(const char *text)
{
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET };
	return fy_document_build_from_string(&pc, text, strlen(text));
}

static int cfg_parse_field(struct cfg_parse *p, const struct cfg_field *f, struct fy_node *n,
			   void *dst)
{
	switch (f->type) {
	case CFG_STRLIST:
		return cfg_parse_strlist(p, n, dst);
	case CFG_CIDRLIST:
		return cfg_parse_cidrlist(p, n, dst);
	case CFG_STRUCT:
		return cfg_table_walk(p, f->sub, cfg_node_is_null(n) ? NULL : n, dst, false);
	case CFG_STRUCT_LIST:
		return cfg_parse_struct_list(p, f, n, dst);
	case CFG_CUSTOM:
		return f->custom ? f->custom(p, n, dst) : 0;
	default:
		return cfg_parse_scalar_node(p, f, n, dst);
	}
}

/* The key is absent (or null): required check, then the default. */
static int cfg_apply_default(struct cfg_parse *p, const struct cfg_field *f,
			     struct fy_node *section, void *dst)
{
	if (f->flags & CFG_REQUIRED)
		return cfg_error(p, section, "missing required key");
	if (f->type == CFG_STRUCT)
		return cfg_table_walk(p, f->sub, NULL, dst, false);
	if (f->type == CFG_CUSTOM)
		return f->custom ? f->custom(p, NULL, dst) : 0;
	if (!f->defval)
		return 0;
	int rc;
	bool saved = p->in_default;
	p->in_default = true;
	if (cfg_type_is_scalar(f->type)) {
		rc = cfg_parse_scalar_text(p, f, NULL, f->defval, dst);
	} else {
		struct fy_document *d = cfg_default_doc(f->defval);
		if (!d)
			rc = cfg_error(p, NULL, "cannot parse \"%s\"", f->defval);
		else
			rc = cfg_parse_field(p, f, fy_document_root(d), dst);
		fy_document_destroy(d);
	}
	p->in_default = saved;
	return rc;
}

static const struct cfg_field *cfg_table_find(const struct cfg_table *t, const char *key,
					      size_t len)
{
	for (const struct cfg_field *f = t->fields; f && f->key; f++)
		if (strlen(f->key) == len && memcmp(f->key, key, len) == 0)
			return f;
	return NULL;
}

/* Edit distance of two short strings, capped, for "did you mean" hints. */
static int cfg_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	int row[64];
	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int prev = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cur = row[j];
			int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
			int v = prev + cost;
			if (row[j] + 1 < v)
				v = row[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			row[j] = v;
			prev = cur;
		}
	}
	return row[lb];
}

/* Names operators bring from the tools they know, and mxgate's key for the same thing: a
 * foreign name no edit distance leads to ("whitelist" is far from "allow"). The first of
 * `ours` the section has is named; a name no section of ours has stays a bare error. */
struct cfg_foreign { const char *name, *from, *ours[3]; };
static const struct cfg_foreign cfg_foreign_names[] = {
	{ "whitelist", "postgrey/Haraka/rspamd", { "allow", "allow_names" } },
	{ "whitelists", "postgrey/Haraka/rspamd", { "allow", "allow_names" } },
	{ "white_list", "postgrey/Haraka/rspamd", { "allow" } },
	{ "allowlist", "Postfix/rspamd", { "allow" } },
	{ "allow_list", "Postfix/rspamd", { "allow" } },
	{ "whitelist_clients", "postgrey", { "allow_names", "allow" } },
	{ "whitelist_clients_file", "postgrey", { "allow_names_file" } },
	{ "whitelist_ip", "rspamd", { "allow" } },
	{ "whitelisted_ip", "rspamd", { "allow" } },
	{ "whitelist_ips", "rspamd", { "allow" } },
	{ "nospamd", "OpenBSD spamd", { "allow" } },
	{ "blacklist", "postgrey/Haraka/rspamd", { "deny" } },
	{ "black_list", "Haraka", { "deny" } },
	{ "blocklist", "rspamd", { "deny" } },
	{ "denylist", "Postfix", { "deny" } },
	{ "deny_list", "Postfix", { "deny" } },
	{ "auto_whitelist_clients", "postgrey", { "auto_allow_clients" } },
	{ "awl", "postgrey", { "auto_allow_clients" } },
	{ "max_age", "postgrey", { "expire" } },
	{ "passtime", "OpenBSD spamd", { "delay" } },
	{ "greyexp", "OpenBSD spamd", { "retry_window" } },
	{ "whiteexp", "OpenBSD spamd", { "expire" } },
	{ "ipv4cidr", "postgrey", { "prefix_v4" } },
	{ "ipv6cidr", "postgrey", { "prefix_v6" } },
	{ "ipv4_mask", "rspamd", { "prefix_v4" } },
	{ "ipv6_mask", "rspamd", { "prefix_v6" } },
	{ "postgrey", "the greylisting policy server", { "greylist" } },
	{ "greylisting", "Haraka/rspamd", { "greylist" } },
	{ "postscreen_dnsbl_sites", "Postfix", { "lists" } },
	{ "postscreen_dnsbl_threshold", "Postfix", { "threshold" } },
	{ "postscreen_dnsbl_whitelist_threshold", "Postfix", { "allow_threshold" } },
	{ "postscreen_dnsbl_allowlist_threshold", "Postfix", { "allow_threshold" } },
	{ "postscreen_dnsbl_action", "Postfix", { "action" } },
	{ "postscreen_dnsbl_ttl", "Postfix", { "pass_ttl" } },
	{ "postscreen_dnsbl_min_ttl", "Postfix", { "pass_min_ttl" } },
	{ "postscreen_dnsbl_timeout", "Postfix", { "timeout" } },
	{ "postscreen_greet_wait", "Postfix", { "delay" } },
	{ "postscreen_greet_action", "Postfix", { "action" } },
	{ "postscreen_greet_ttl", "Postfix", { "pass_ttl" } },
	{ "postscreen_pipelining_action", "Postfix", { "pipelining_action" } },
	{ "postscreen_bare_newline_action", "Postfix", { "bare_newline_action" } },
	{ "postscreen_non_smtp_command_action", "Postfix", { "non_smtp_command_action" } },
	{ "postscreen_access_list", "Postfix", { "allow" } },
	{ "postscreen_dnsbl_reply_map", "Postfix", { "reply_name" } },
};

/* The foreign entry for key whose mxgate key t has (*ours), or NULL. Case and '-' for '_'
 * do not matter (postgrey's --auto-whitelist-clients). */
static const struct cfg_foreign *cfg_foreign_key(const struct cfg_table *t, const char *key,
						 size_t len, const char **ours)
{
	char norm[64];
	size_t i = 0;

	while (len > 0 && *key == '-') {    /* a command-line option pasted as is */
		key++;
		len--;
	}
	if (len == 0 || len >= sizeof(norm))
		return NULL;
	for (i = 0; i < len; i++)
		norm[i] = key[i] == '-' ? '_' : (char)tolower((unsigned char)key[i]);
	norm[len] = '\0';
	for (size_t f = 0; f < sizeof(cfg_foreign_names) / sizeof(cfg_foreign_names[0]); f++) {
		const struct cfg_foreign *e = &cfg_foreign_names[f];

		if (strcmp(e->name, norm) != 0)
			continue;
		for (size_t j = 0; j < 3 && e->ours[j]; j++)
			if (cfg_table_find(t, e->ours[j], strlen(e->ours[j]))) {
				*ours = e->ours[j];
				return e;
			}
	}
	return NULL;
}

static int cfg_unknown_key(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *k,
			   const char *key, size_t len)
{
	const char *best = NULL;
	int bestd = 3;
	const char *ours = NULL;
	const struct cfg_foreign *fe = cfg_foreign_key(t, key, len, &ours);

	if (fe) {
		size_t old = cfg_path_push_key(p, key, len);

		cfg_error(p, k, "unknown key (%s's name: mxgate calls it \"%s\")", fe->from, ours);
		cfg_path_pop(p, old);
		return -1;
	}
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		int d = cfg_distance(key, len, f->key);
		if (d < bestd && (size_t)d * 3 <= len) { /* "dns" is not a typo of "tls" */
			bestd = d;
			best = f->key;
		}
	}
	size_t old = cfg_path_push_key(p, key, len);
	if (best)
		cfg_error(p, k, "unknown key (did you mean \"%s\"?)", best);
	else
		cfg_error(p, k, "unknown key");
	cfg_path_pop(p, old);
	return -1;
}

/* Fills obj from mapping n (NULL = absent: defaults only) by table t. scalar_ok: n may be a
 * lone scalar whose value the caller already stored in the first field (list items). */
int cfg_parse_section(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n, void *obj)
{
	return cfg_table_walk(p, t, cfg_node_is_null(n) ? NULL : n, obj, false);
}

int cfg_table_walk(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n,
		   void *obj, bool scalar_ok)
{
	int rc = 0;
	size_t errs_before = p->nerr + p->dropped;
	bool scalar_item = scalar_ok && n && fy_node_is_scalar(n) && !cfg_node_is_null(n);
	bool is_item = p->in_item;
	/* a missing key is reported at the section's own key ("backends:"), or at the item */
	struct fy_node *missing_at = !is_item && p->key ? p->key : n;
	p->in_item = false;

	if (!t || !t->fields)
		return cfg_error(p, n, "internal: section without a table");
	if (n && !fy_node_is_mapping(n) && !scalar_item)
		return cfg_error(p, n, "expected a mapping, got %s", cfg_node_kind(n));
	if (n && fy_node_is_mapping(n)) {
		void *it = NULL;
		struct fy_node_pair *pr;
		while ((pr = fy_node_mapping_iterate(n, &it))) {
			struct fy_node *k = fy_node_pair_key(pr);
			size_t len;
			const char *key = cfg_node_text(k, &len);
			if (!key || cfg_node_is_null(k)) {
				rc = cfg_error(p, k ? k : n, "keys must be plain strings");
				continue;
			}
			if (!cfg_table_find(t, key, len) && !(t->flags & CFG_TABLE_OTHER_KEYS))
				rc = cfg_unknown_key(p, t, k, key, len);
		}
	}
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		void *dst = (char *)obj + f->offset;
		struct fy_node_pair *pr = scalar_item ? NULL : cfg_map_pair(n, f->key);
		struct fy_node *v = pr ? fy_node_pair_value(pr) : NULL;
		struct fy_node *saved_key = p->key;
		bool saved_written = p->key_written;
		size_t old = cfg_path_push_key(p, f->key, strlen(f->key));
		if (pr)
			p->key = fy_node_pair_key(pr);
		p->key_written = pr != NULL;
		int r;
		if (scalar_item && f == t->fields)
			r = 0; /* already set from the lone scalar */
		else if (cfg_node_is_null(v))
			r = cfg_apply_default(p, f, pr ? p->key : missing_at, dst);
		else
			r = cfg_parse_field(p, f, v, dst);
		if (r == 0 && pr && (f->flags & CFG_REQUIRED) &&
		    (f->type == CFG_STRUCT_LIST || f->type == CFG_STRLIST || f->type == CFG_CIDRLIST) &&
		    cfg_list_count(v) == 0)
			r = cfg_error(p, v, "must not be empty");
		if (r < 0)
			rc = -1;
		cfg_path_pop(p, old);
		p->key = saved_key;
		p->key_written = saved_written;
	}
	/* cross-field checks only when the fields themselves were fine (a module's hook may
	 * rely on its REQUIRED keys being set), unless the hook is written to cope */
	if (t->validate &&
	    (p->nerr + p->dropped == errs_before || (t->flags & CFG_TABLE_VALIDATE_ALWAYS)))
		if (t->validate(p, n, obj) < 0)
			rc = -1;
	return rc;
}

bool cfg_section_written(const struct cfg_parse *p)
{
	return p && p->key_written;
}

void cfg_table_free(const struct cfg_table *t, void *obj)
{
	if (!t || !obj)
		return;
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		void *dst = (char *)obj + f->offset;
		switch (f->type) {
		case CFG_STRING:
			free(*(char **)dst);
			*(char **)dst = NULL;
			break;
		case CFG_STRLIST: {
			struct cfg_strlist *l = dst;
			for (size_t i = 0; i < l->n; i++)
				free(l->v[i]);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CFG_CIDRLIST: {
			struct cfg_cidrlist *l = dst;
			free(l->v);
			l->v = NULL;
			l->n = 0;
			l->sorted = false;
			break;
		}
		case CFG_STRUCT:
			cfg_table_free(f->sub, dst);
			break;
		case CFG_STRUCT_LIST: {
			struct cfg_list *l = dst;
			for (size_t i = 0; l->v && i < l->n; i++)
				cfg_table_free(f->sub, (char *)l->v + i * f->sub->size);
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case CFG_CUSTOM:
			if (f->free_custom)
				f->free_custom(dst);
			break;
		default:
			break;
		}
	}
}

/* ---------------------------------------------------------------- printing the errors */

static int cfg_err_cmp(const void *a, const void *b)
{
	const struct cfg_err *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void cfg_parse_finish(struct cfg_parse *p, FILE *err)
{
	if (p->nerr)
		qsort(p->errs, p->nerr, sizeof(*p->errs), cfg_err_cmp);
	for (size_t i = 0; i < p->nerr; i++) {
		if (err)
			fprintf(err, "%s\n", p->errs[i].text);
		free(p->errs[i].text);
	}
	if (err && p->dropped)
		fprintf(err, "%s: %zu more errors not shown\n", p->file, p->dropped);
	free(p->errs);
	p->errs = NULL;
	p->nerr = p->cap = 0;
}

/* ---------------------------------------------------------------- table self-check */

static int cfg_selfcheck_walk(struct cfg_parse *p, const struct cfg_table *t, int depth)
{
	int rc = 0;
	if (!t || !t->fields)
		return cfg_error(p, NULL, "table without fields");
	if (depth > 16)
		return cfg_error(p, NULL, "tables nested too deep (a cycle?)");
	/* room for every field even when an offset is wrong, so the probe itself stays safe */
	size_t room = t->size + 1;
	for (const struct cfg_field *f = t->fields; f->key; f++) {
		size_t end = f->offset + (f->type == CFG_STRUCT && f->sub ? f->sub->size : 64);
		if (end > room)
			room = end;
	}
	void *obj = calloc(1, room);
	if (!obj)
		return cfg_error(p, NULL, "out of memory");
	for (const struct cfg_field *f = t->fields; f->key; f++) {
		size_t old = cfg_path_push_key(p, f->key, strlen(f->key));
		for (const struct cfg_field *g = t->fields; g < f; g++)
			if (strcmp(g->key, f->key) == 0)
				rc = cfg_error(p, NULL, "key listed twice");
		if (f->offset >= t->size)
			rc = cfg_error(p, NULL, "offset %zu outside the %zu-byte struct", f->offset, t->size);
		if (f->type == CFG_ENUM && (!f->choices || !f->choices[0]))
			rc = cfg_error(p, NULL, "enum without choices");
		if ((f->type == CFG_STRUCT || f->type == CFG_STRUCT_LIST) && !f->sub)
			rc = cfg_error(p, NULL, "section without a .sub table");
		if (f->type == CFG_CUSTOM && !f->custom)
			rc = cfg_error(p, NULL, "custom field without .custom");
		if (cfg_has_bounds(f) && f->min > f->max)
			rc = cfg_error(p, NULL, "min > max");
		if ((f->flags & CFG_REQUIRED) && f->defval)
			rc = cfg_error(p, NULL, "required key with a default");
		if (!f->doc || !f->doc[0])
			rc = cfg_error(p, NULL, "no doc line");
		if (f->offset < t->size && f->type != CFG_CUSTOM && f->type != CFG_STRUCT &&
		    f->defval && !(f->flags & CFG_REQUIRED)) {
			/* the default must parse (and fit the bounds) through the same parsers */
			size_t before = p->nerr;
			cfg_apply_default(p, f, NULL, (char *)obj + f->offset);
			if (p->nerr != before)
				rc = -1;
		}
		if ((f->type == CFG_STRUCT || f->type == CFG_STRUCT_LIST || f->type == CFG_CUSTOM) && f->sub)
			if (cfg_selfcheck_walk(p, f->sub, depth + 1) < 0)
				rc = -1;
		cfg_path_pop(p, old);
	}
	cfg_table_free(t, obj);
	free(obj);
	return rc;
}

int cfg_table_selfcheck(const struct cfg_table *t, void *err_fp)
{
	struct cfg_parse p = { .file = t && t->name ? t->name : "<table>" };
	cfg_selfcheck_walk(&p, t, 0);
	int rc = (p.nerr || p.dropped) ? -1 : 0;
	cfg_parse_finish(&p, err_fp);
	return rc;
}
