/* cfg.h — the declarative YAML table engine: what a module needs to describe its config
 * section, and the loader that fills a C struct from a table.
 *
 * Every module describes its section as a `struct cfg_table` (key, type, default, bounds,
 * one-line doc). The engine (cfg.c) walks a table over a libfyaml mapping, fills the struct,
 * applies defaults (parsed from .defval text by the value parsers of cfg_value.h), checks
 * bounds, required keys and unknown keys (with a "did you mean" hint), runs each table's
 * validate hook, and collects every error as
 *     FILE:LINE:COL: key.path: reason
 * sorted by position and printed once the whole file has been walked.
 *
 * A module's header includes this one for the types of its config struct; the daemon's
 * `struct mx_config` and its sections are in config.h, the list of modules in modules.def. */
#ifndef MX_CFG_H
#define MX_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cfg_value.h"

struct fy_node;
struct fy_node_pair;
struct cfg_parse;

enum cfg_type {
	CFG_BOOL = 0,     /* bool */
	CFG_INT,          /* long, bounds min..max */
	CFG_DOUBLE,       /* double, bounds min..max */
	CFG_SIZE,         /* uint64_t bytes; "50M", "4K", "1G", plain number */
	CFG_DURATION,     /* uint64_t milliseconds; "300s", "5m", "1h", "250ms", plain number = s */
	CFG_STRING,       /* char * (malloc'd, NULL when unset and no default) */
	CFG_ENUM,         /* int index into .choices */
	CFG_RATE,         /* struct cfg_rate; "30/60s", "1000/1h" */
	CFG_STRLIST,      /* struct cfg_strlist; a YAML sequence of scalars (a lone scalar = 1 item) */
	CFG_STRUCT,       /* nested mapping described by .sub, stored inline at offset */
	CFG_STRUCT_LIST,  /* struct cfg_list of items of .sub->size each, described by .sub */
	CFG_CIDRLIST,     /* struct cfg_cidrlist; ["127.0.0.0/8", "::1"] */
	CFG_CUSTOM,       /* .custom parses the node into dst */
};

#define CFG_REQUIRED 0x1u  /* error when the key is missing */

struct cfg_strlist { char **v; size_t n; };
struct cfg_list { void *v; size_t n; };   /* v: n items of the element table's size */

struct cfg_field {
	const char *key;
	enum cfg_type type;
	size_t offset;              /* offsetof(struct ..., member) */
	const char *defval;         /* default as YAML-ish text, parsed like a value; NULL = none */
	double min, max;            /* bounds for INT/DOUBLE/SIZE/DURATION (ignored if min == max);
	                             * SIZE in bytes, DURATION in milliseconds */
	const char *const *choices; /* CFG_ENUM: NULL-terminated names */
	const struct cfg_table *sub;/* CFG_STRUCT / CFG_STRUCT_LIST */
	/* CFG_CUSTOM: parse n (may be NULL when the key is absent) into dst; 0 or -1 after
	 * cfg_error(). free_custom releases what it allocated (may be NULL). A CFG_CUSTOM
	 * field may set .sub to a table of CFG_STRUCT fields, the alternative tables its value
	 * is checked against (with cfg_parse_section): they are documented ("KEY (VARIANT)")
	 * and self-checked like sections. */
	int (*custom)(struct cfg_parse *p, struct fy_node *n, void *dst);
	void (*free_custom)(void *dst);
	unsigned flags;
	const char *doc;            /* one line for docs/config.md */
};

/* cfg_table.flags */
#define CFG_TABLE_VALIDATE_ALWAYS 0x1u  /* run validate even after errors in the fields
                                         * (a hook written to cope: the daemon's top table) */
#define CFG_TABLE_OTHER_KEYS      0x2u  /* keys the table does not name are ignored, not
                                         * errors (a tool reading one section of the
                                         * daemon's file: mxgatectl's control.socket) */

/* Engine rules worth knowing when writing a table:
 *  - an absent key (or `key:` / `~` / null) takes .defval, parsed like a value; REQUIRED
 *    keys error instead; a REQUIRED list must have at least one item;
 *  - where a list is expected, a lone value is a list of one; in a CFG_STRUCT_LIST whose
 *    first field is a CFG_STRING, a plain scalar item sets that first field (the rest take
 *    defaults) and the table's validate then gets the scalar node as n;
 *  - validate runs only when the table's own fields (and sub-tables) parsed without error
 *    (unless CFG_TABLE_VALIDATE_ALWAYS), so REQUIRED strings are non-NULL there; n may be
 *    NULL (section absent). */
struct cfg_table {
	const char *name;            /* for docs */
	size_t size;                 /* sizeof the struct it fills */
	const struct cfg_field *fields; /* terminated by { .key = NULL } */
	/* Optional cross-field check after all fields parsed; report with cfg_error(). */
	int (*validate)(struct cfg_parse *p, struct fy_node *n, void *obj);
	unsigned flags;              /* CFG_TABLE_* */
};

/* Reports an error at node n (or the section when n is NULL) for the current key path.
 * Always returns -1 so callers can `return cfg_error(...)`. */
int cfg_error(struct cfg_parse *p, struct fy_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like cfg_error() for the key `key` of mapping `section` (a validate hook's n): the path
 * gets ".key" (and "[index]" when index >= 0) and the position is that value's (or the
 * item's). Always returns -1. */
int cfg_error_key(struct cfg_parse *p, struct fy_node *section, const char *key, long index,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A "file:PATH" list item: each line, '#' comments and surrounding white space cut, blank
 * lines skipped, handed to add(arg, item), which returns NULL or why it refuses the item
 * (static text). The first refusal or a read error is reported at the list item key[index]
 * as PATH:LINE. Read when the config loads, so SIGHUP re-reads it. 0, or -1 after reporting. */
typedef const char *(*cfg_file_item_fn)(void *arg, const char *item);
/* One line of such a file (len octets, from getline): its item, white space trimmed,
 * NUL-terminated in place; NULL for a blank or comment line. */
char *cfg_file_line_item(char *line, ssize_t len);
int cfg_read_list_file(struct cfg_parse *p, struct fy_node *section, const char *key, size_t index,
		       const char *path, cfg_file_item_fn add, void *arg);

/* Releases everything a table filled in obj (not obj itself). */
void cfg_table_free(const struct cfg_table *t, void *obj);

/* Generic loader: parses YAML `text` (len bytes; text NULL = read the file `name`) into obj
 * (zeroed by the caller, sizeof t->size) by table t. name is used in error lines. 0, or -1
 * after printing every error to err_fp (FILE *, may be NULL); obj may then be partially
 * filled: release with cfg_table_free either way. */
/* The YAML probe's process (`mxgate --yaml-probe`, started by cfg_table_load for a file):
 * parses its stdin as the daemon would and exits 0 if libfyaml returned. */
int cfg_probe_main(void);
/* mxgate's main: probe files in that process (else in a plain fork). */
void cfg_probe_use_exec(void);
/* The probes cfg_table_load started so far: a file's text the last probe finished on (a
 * reload with the YAML unchanged, only list files edited) is not probed again. */
unsigned long cfg_probe_runs(void);

int cfg_table_load(const char *name, const char *text, size_t len, const struct cfg_table *t,
		   void *obj, void *err_fp);

/* The position of every key and list item of a loaded file, kept past the load for the
 * checks made on the filled struct afterwards (mxgate -t, the start: a store it cannot
 * open, a directory it cannot write), so that their messages read FILE:LINE:COL as the
 * loader's own (cfg_marks.c). */
struct cfg_marks;
/* cfg_table_load that also keeps, into *marks (on success; NULL when out of memory; free
 * with cfg_marks_free), where every key and list item of the file is: a scalar value's
 * position, a section's, a list's or a null value's key ("tls:"), an item's own (a mapping
 * item's first key). marks NULL: none kept. */
int cfg_table_load_marked(const char *name, const char *text, size_t len, const struct cfg_table *t,
			  void *obj, void *err_fp, struct cfg_marks **marks);
/* "FILE:LINE:COL" of key (a path as messages name it: "tls.sni[1].key",
 * "backends.routes[2].domains[0]") into buf (cap octets), returned: where it is in the
 * file, else its nearest enclosing key or item that is (an absent key: its section's key;
 * a list of one written as a lone value: that value), else (no part of key in the file, m
 * NULL) FILE:1:1, the top of the file. file: when m is NULL. */
const char *cfg_marks_where(const struct cfg_marks *m, const char *file, const char *key, char *buf,
			    size_t cap);
/* Whether key (a path as for cfg_marks_where) is itself in the file m was kept from: false for
 * an absent key (a default) and for m NULL. */
bool cfg_marks_has(const struct cfg_marks *m, const char *key);
/* How many keys and items m keeps, and (bytes not NULL) the octets it holds. */
size_t cfg_marks_count(const struct cfg_marks *m, size_t *bytes);
void cfg_marks_free(struct cfg_marks *m);

/* Checks a table tree for programming errors (every default parses and fits its bounds,
 * enums have choices, sections have tables, offsets fit, keys unique, docs present).
 * 0, or -1 after printing the problems to err_fp. For unit tests. */
int cfg_table_selfcheck(const struct cfg_table *t, void *err_fp);

/* ---------------------------------------------------------------- for hooks and custom fields
 * Node helpers for validate hooks and CFG_CUSTOM parsers. Nodes are borrowed from the
 * document being loaded and valid during the call only. */

/* For CFG_CUSTOM parsers: fills obj (zeroed, t->size bytes) from mapping n (NULL = absent:
 * defaults only) by table t, reporting errors under the current key path like a section.
 * 0 or -1. Release with cfg_table_free(t, obj). */
int cfg_parse_section(struct cfg_parse *p, const struct cfg_table *t, struct fy_node *n, void *obj);
/* In a table's validate hook: whether the section's own key is in the file. A section
 * written with no value (`dkim:` alone, `~`, `null`) reaches the hook with n == NULL just as
 * an absent one does; this tells the two apart. */
bool cfg_section_written(const struct cfg_parse *p);
/* The pair of mapping n whose key is `key`; NULL when there is none or n is not a mapping. */
struct fy_node_pair *cfg_map_pair(struct fy_node *n, const char *key);
/* Item i of sequence n (or n itself for i == 0 when it is a lone value), or NULL. */
struct fy_node *cfg_seq_item(struct fy_node *n, size_t i);
/* True for no node and for a plain empty, `~` or `null` scalar. */
bool cfg_node_is_null(struct fy_node *n);
/* Copies scalar n into buf as a C string for the value parsers. 0, or -1 after cfg_error()
 * ("expected <what>, got ...") when n is not a scalar, does not fit or holds a NUL. */
int cfg_node_cstr(struct cfg_parse *p, struct fy_node *n, const char *what, char *buf,
		  size_t bufsz);
/* The key path of the errors reported next: push ".key" (or "key" at the root) or "[i]";
 * both return the old length to hand back to cfg_path_pop. */
size_t cfg_path_push_key(struct cfg_parse *p, const char *key, size_t keylen);
size_t cfg_path_push_index(struct cfg_parse *p, size_t i);
void cfg_path_pop(struct cfg_parse *p, size_t old);

/* ---------------------------------------------------------------- for reference generators */

static inline bool cfg_has_bounds(const struct cfg_field *f)
{
	return f->min != f->max;
}
/* Formats a bound of field f's type as written in a config: "30s", "50M", "1000". */
void cfg_format_bound(const struct cfg_field *f, double v, char *buf, size_t sz);

/* One key as a reference shows it, whatever the output format. Valid during the call. */
struct cfg_docs_key {
	const struct cfg_field *field;  /* key, choices, doc */
	const char *section;            /* path of its section: "" (top), "backends.servers[]" */
	const char *type;               /* "integer", "size", "list of sections", ...; NULL for
	                                 * an enum: the type is the list field->choices */
	bool required;
	const char *defval;             /* as written in the table; NULL = none (or required) */
	bool bounded;                   /* lo..hi apply (numbers, sizes, durations) */
	char lo[64], hi[64];            /* bounds as written in a config: "100ms", "1G" */
};
struct cfg_docs_visitor {
	/* A section starts: path as in cfg_docs_key.section. */
	void (*section)(void *arg, const char *path, const struct cfg_table *t);
	void (*key)(void *arg, const struct cfg_docs_key *k);
};
/* Visits table t and every sub-table in reference order: a section, its keys in table
 * order, then its sub-sections (depth first, in the order of their keys). */
void cfg_docs_walk(const struct cfg_table *t, const struct cfg_docs_visitor *v, void *arg);
/* The type word of a key ("bool", "duration", "list of CIDRs"); NULL for CFG_ENUM. */
const char *cfg_docs_type_name(enum cfg_type t);

#endif
