/* test_cfg.c — the table engine (cfg.c, cfg_load.c, cfg_docs.c) on tables of its own:
 * defaults, values, list items, custom fields, validate hooks, error lines, the error cap,
 * the self-check and the reference walk. Table-driven: each row has a label printed when it
 * fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

struct err_row { const char *label, *text, *first; size_t lines; };

struct inner { char *name; double ratio; };
struct outer {
	struct cfg_rate rate;
	double factor;
	struct cfg_strlist tags;
	struct cfg_list items;  /* struct inner */
	char *custom;
	bool flag;
	uint64_t size;
};

static int validate_calls;
static int inner_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct inner *in = obj;
	validate_calls++;
	if (in->ratio > 0.5 && in->name && strcmp(in->name, "lo") == 0)
		return cfg_error_key(p, n, "ratio", -1, "a \"lo\" item needs ratio <= 0.5");
	return 0;
}
static const struct cfg_field inner_fields[] = {
	{ "name", CFG_STRING, offsetof(struct inner, name), .flags = CFG_REQUIRED, .doc = "n" },
	{ "ratio", CFG_DOUBLE, offsetof(struct inner, ratio), "0.25", 0, 1, .doc = "r" },
	{ NULL }
};
static const struct cfg_table inner_table = { "inner", sizeof(struct inner), inner_fields, inner_validate };

static int custom_calls_null;
static int custom_upper(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	if (!n) {
		custom_calls_null++;
		return 0;
	}
	size_t len;
	const char *s = fy_node_get_scalar(n, &len);
	if (!fy_node_is_scalar(n) || !s)
		return cfg_error(p, n, "expected a word");
	char *v = strndup(s, len);
	for (char *q = v; *q; q++)
		*q = (char)(*q >= 'a' && *q <= 'z' ? *q - 32 : *q);
	*(char **)dst = v;
	return 0;
}
static void custom_free(void *dst)
{
	free(*(char **)dst);
	*(char **)dst = NULL;
}
static const struct cfg_field outer_fields[] = {
	{ "rate", CFG_RATE, offsetof(struct outer, rate), "10/m", .doc = "r" },
	{ "factor", CFG_DOUBLE, offsetof(struct outer, factor), "1.5", -10, 10, .doc = "f" },
	{ "tags", CFG_STRLIST, offsetof(struct outer, tags), "[a, b]", .doc = "t" },
	{ "items", CFG_STRUCT_LIST, offsetof(struct outer, items), .sub = &inner_table, .doc = "i" },
	{ "custom", CFG_CUSTOM, offsetof(struct outer, custom), .custom = custom_upper,
	  .free_custom = custom_free, .doc = "c" },
	{ "flag", CFG_BOOL, offsetof(struct outer, flag), "yes", .doc = "b" },
	{ "size", CFG_SIZE, offsetof(struct outer, size), "4K", 1024, 8192, .doc = "s" },
	{ NULL }
};
static const struct cfg_table outer_table = { "outer", sizeof(struct outer), outer_fields, NULL };

static int load_outer(const char *text, struct outer *o, char **errs)
{
	size_t len = 0;
	FILE *f = open_memstream(errs, &len);
	memset(o, 0, sizeof(*o));
	int rc = cfg_table_load("o.yaml", text, strlen(text), &outer_table, o, f);
	fclose(f);
	return rc;
}

/* A file's text is probed (a second process parses it first: cfg_table_load) unless it is the
 * text the last probe finished on: a reload with the YAML unchanged starts no probe, an edit
 * (one byte, the same size) does, and so does going back to an earlier text. */
static void test_probe_once(void **state)
{
	static const char *const texts[] = { "flag: false\n", "flag: true\n", "flag: fals\n" };
	static const struct {
		const char *label;
		int text;
		unsigned long probes;   /* the probes this load starts */
	} rows[] = {
		{ "the first load", 0, 1 },
		{ "the same text: not probed", 0, 0 },
		{ "the same text again", 0, 0 },
		{ "edited, one byte, the same size", 1, 1 },
		{ "unchanged after the edit", 1, 0 },
		{ "back to the first text: probed", 0, 1 },
		{ "a text the load refuses: probed", 2, 1 },
		{ "refused again: the probe finished on it, not probed", 2, 0 },
	};
	char path[] = "/tmp/test_cfg_probe-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		FILE *f = fopen(path, "w");
		struct outer o;
		unsigned long before = cfg_probe_runs();

		assert_non_null(f);
		fputs(texts[rows[i].text], f);
		fclose(f);
		memset(&o, 0, sizeof(o));
		(void)cfg_table_load(path, NULL, 0, &outer_table, &o, NULL);
		cfg_table_free(&outer_table, &o);
		if (cfg_probe_runs() - before != rows[i].probes)
			fail_msg("%s: %lu probes, want %lu", rows[i].label, cfg_probe_runs() - before, rows[i].probes);
	}
	unlink(path);
}

/* The positions a load keeps for the checks made afterwards (cfg_table_load_marked), of
 * every key and item of the file: a value's, a list item's, an item's key, a section's (its
 * key), a custom field's, a lone value standing for a list of one, an absent key's (its
 * section's key, the item; the top of the file at the root), a key nothing of which is in
 * the file (FILE:1:1). Before session 34 a key not on a list chosen in advance was FILE:1:1
 * wherever it was. */
static void test_marks(void **state)
{
	static const char text[] =
	    "factor: 2\n"               /* 1 */
	    "tags:\n"                   /* 2 */
	    "  - x\n"                   /* 3 */
	    "  - \"y\"\n"               /* 4 */
	    "items:\n"                  /* 5 */
	    "  - name: a\n"             /* 6 */
	    "    ratio: 0.5\n"          /* 7 */
	    "  - name: b\n"             /* 8: ratio absent */
	    "  - {name: c, ratio: 0.1}\n" /* 9 */
	    "custom: word\n"            /* 10 */
	    "rate:\n"                   /* 11: null */
	    "flag: no\n";               /* 12 */
	const struct { const char *label, *key, *want; } rows[] = {
		{ "a scalar value", "factor", "o.yaml:1:9" },
		{ "a list item", "tags[0]", "o.yaml:3:5" },
		{ "a quoted list item: its quote", "tags[1]", "o.yaml:4:5" },
		{ "a list: its key", "tags", "o.yaml:2:1" },
		{ "an item's key", "items[0].ratio", "o.yaml:7:12" },
		{ "an item: its first key", "items[1]", "o.yaml:8:5" },
		{ "an item's absent key: the item", "items[1].ratio", "o.yaml:8:5" },
		{ "a flow item's key", "items[2].ratio", "o.yaml:9:22" },
		{ "an item past the end: the list", "items[7].ratio", "o.yaml:5:1" },
		{ "a custom field", "custom", "o.yaml:10:9" },
		{ "a null value: its key", "rate", "o.yaml:11:1" },
		{ "a bool", "flag", "o.yaml:12:7" },
		{ "a lone value as a list of one", "factor[0]", "o.yaml:1:9" },
		{ "an absent key at the root: the top", "size", "o.yaml:1:1" },
		{ "a key not in any table", "nothing.here[3]", "o.yaml:1:1" },
		{ "a malformed path: what parses", "items[x]", "o.yaml:5:1" },
	};
	struct cfg_marks *m = NULL;
	struct outer o;
	char buf[64];

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(cfg_table_load_marked("o.yaml", text, strlen(text), &outer_table, &o, NULL, &m), 0);
	assert_non_null(m);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		cfg_marks_where(m, "other.yaml", rows[i].key, buf, sizeof(buf));
		if (strcmp(buf, rows[i].want) != 0)
			fail_msg("%s: %s is at %s, want %s", rows[i].label, rows[i].key, buf, rows[i].want);
	}
	assert_string_equal(cfg_marks_where(NULL, "other.yaml", "factor", buf, sizeof(buf)), "other.yaml:1:1");
	/* cfg_marks_has: the key itself, not its section */
	assert_true(cfg_marks_has(m, "factor"));
	assert_true(cfg_marks_has(m, "items[0].ratio"));
	assert_true(cfg_marks_has(m, "items[2].ratio"));
	assert_true(cfg_marks_has(m, "rate"));
	assert_false(cfg_marks_has(m, "items[1].ratio"));
	assert_false(cfg_marks_has(m, "items[7]"));
	assert_false(cfg_marks_has(m, "size"));
	assert_false(cfg_marks_has(m, "factor[0]"));
	assert_false(cfg_marks_has(NULL, "factor"));
	cfg_marks_free(m);
	cfg_table_free(&outer_table, &o);
}

/* 10,000 list items: each kept (the route-shadow warnings name domains[9999]) and found. */
static void test_marks_many(void **state)
{
	struct { char *v; size_t len; } t = { NULL, 0 };
	struct cfg_marks *m = NULL;
	struct outer o;
	char key[32], buf[64], want[64];
	size_t bytes = 0;
	FILE *f;

	(void)state;
	f = open_memstream(&t.v, &t.len);
	assert_non_null(f);
	fputs("tags:\n", f);
	for (int i = 0; i < 10000; i++)
		fprintf(f, "  - t%d\n", i);
	fclose(f);
	memset(&o, 0, sizeof(o));
	assert_int_equal(cfg_table_load_marked("o.yaml", t.v, t.len, &outer_table, &o, NULL, &m), 0);
	assert_int_equal(cfg_marks_count(m, &bytes), 10001);
	assert_true(bytes < 10001 * 40);
	for (int i = 0; i < 10000; i += 999) {
		snprintf(want, sizeof(want), "o.yaml:%d:5", i + 2);
		snprintf(key, sizeof(key), "tags[%d]", i);
		assert_string_equal(cfg_marks_where(m, NULL, key, buf, sizeof(buf)), want);
	}
	cfg_marks_free(m);
	cfg_table_free(&outer_table, &o);
	free(t.v);
}

static void test_engine_defaults(void **state)
{
	struct outer o;
	char *errs;
	custom_calls_null = 0;
	assert_int_equal(load_outer("{}", &o, &errs), 0);
	assert_string_equal(errs, "");
	free(errs);
	assert_int_equal(o.rate.count, 10);
	assert_int_equal(o.rate.period_ms, 60000);
	assert_true(o.factor == 1.5);
	assert_int_equal(o.tags.n, 2);
	assert_string_equal(o.tags.v[1], "b");
	assert_int_equal(o.items.n, 0);
	assert_null(o.custom);
	assert_int_equal(custom_calls_null, 1);
	assert_true(o.flag);
	assert_int_equal(o.size, 4096);
	cfg_table_free(&outer_table, &o);
	assert_null(o.tags.v);
	cfg_table_free(&outer_table, &o); /* twice is harmless */
}

static void test_engine_values(void **state)
{
	struct outer o;
	char *errs;
	validate_calls = 0;
	int rc = load_outer("rate: 5/2s\nfactor: -2.5\ntags: solo\ncustom: abc\nflag: off\nsize: 8K\n"
			    "items:\n  - { name: x, ratio: 0.75 }\n  - y\n  - name: z\n", &o, &errs);
	if (rc)
		fail_msg("%s", errs);
	free(errs);
	assert_int_equal(o.rate.count, 5);
	assert_int_equal(o.rate.period_ms, 2000);
	assert_true(o.factor == -2.5);
	assert_int_equal(o.tags.n, 1);
	assert_string_equal(o.tags.v[0], "solo");
	assert_string_equal(o.custom, "ABC");
	assert_false(o.flag);
	assert_int_equal(o.size, 8192);
	assert_int_equal(o.items.n, 3);
	struct inner *in = o.items.v;
	assert_true(in[0].ratio == 0.75);
	assert_string_equal(in[1].name, "y");
	assert_true(in[1].ratio == 0.25);
	assert_string_equal(in[2].name, "z");
	assert_int_equal(validate_calls, 3);
	cfg_table_free(&outer_table, &o);
}

static const struct err_row engine_err_rows[] = {
	{ "double garbage", "factor: x1\n", "o.yaml:1:9: factor: expected a number, got \"x1\"\n", 1 },
	{ "double bounds", "factor: 11\n", "o.yaml:1:9: factor: must be between -10 and 10, got 11\n", 1 },
	{ "size bounds", "size: 1M\n", "o.yaml:1:7: size: must be between 1K and 8K, got 1M\n", 1 },
	{ "rate garbage", "rate: fast\n",
	  "o.yaml:1:7: rate: expected a rate like 30/60s, 1000/1h or 10/m, got \"fast\"\n", 1 },
	{ "strlist item not a string", "tags: [a, {b: 1}]\n",
	  "o.yaml:1:12: tags[1]: expected a string, got a mapping\n", 1 },
	{ "validate hook through cfg_error_key", "items: [{ name: lo, ratio: 0.9 }]\n",
	  "o.yaml:1:28: items[0].ratio: a \"lo\" item needs ratio <= 0.5\n", 1 },
	{ "nested required and unknown", "items:\n  - { nam: q }\n  - { name: ok }\n",
	  "o.yaml:2:7: items[0].nam: unknown key (did you mean \"name\"?)\n", 2 },
	{ "custom error", "custom: [1]\n", "o.yaml:1:10: custom: expected a word\n", 1 },
	{ "list item of the wrong kind", "items: [[1]]\n",
	  "o.yaml:1:10: items[0]: expected a mapping, got a list\n", 1 },
	{ "scalar root", "just words\n",
	  "o.yaml:1:1: the file must be a YAML mapping (key: value lines), got a scalar\n", 1 },
};

static void test_engine_errors(void **state)
{
	for (size_t i = 0; i < sizeof(engine_err_rows) / sizeof(engine_err_rows[0]); i++) {
		const struct err_row *r = &engine_err_rows[i];
		struct outer o;
		char *errs;
		int rc = load_outer(r->text, &o, &errs);
		if (rc != -1 || strncmp(errs, r->first, strlen(r->first)) != 0 ||
		    count_lines(errs) != r->lines)
			fail_msg("engine row \"%s\": rc %d, got\n%s\nwanted first line\n%s", r->label, rc,
				 errs, r->first);
		free(errs);
		cfg_table_free(&outer_table, &o); /* partial fills are released too */
	}
}

static void test_too_many_errors(void **state)
{
	char *text = malloc(64 * 400);
	size_t off = 0;
	for (int i = 0; i < 400; i++)
		off += (size_t)sprintf(text + off, "k%d: 1\n", i);
	struct outer o;
	char *errs;
	assert_int_equal(load_outer(text, &o, &errs), -1);
	assert_non_null(strstr(errs, "more errors not shown"));
	free(errs);
	free(text);
	cfg_table_free(&outer_table, &o);
}


static const struct cfg_field broken_fields[] = {
	{ "a", CFG_INT, 0, "lots", .doc = "bad default" },
	{ "b", CFG_INT, 0, "5", 10, 20, .doc = "default out of bounds" },
	{ "c", CFG_ENUM, 0, "x", .doc = "no choices" },
	{ "a", CFG_BOOL, 0, .doc = "twice" },
	{ "d", CFG_STRING, 64 },
	{ NULL }
};
static const struct cfg_table broken_table = { "broken", 16, broken_fields, NULL };

static void test_selfcheck_finds_bugs(void **state)
{
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);
	assert_int_equal(cfg_table_selfcheck(&broken_table, f), -1);
	fclose(f);
	assert_non_null(strstr(errs, "a: built-in default: expected an integer, got \"lots\""));
	assert_non_null(strstr(errs, "b: built-in default: must be between 10 and 20, got 5"));
	assert_non_null(strstr(errs, "c: enum without choices"));
	assert_non_null(strstr(errs, "a: key listed twice"));
	assert_non_null(strstr(errs, "d: offset 64 outside the 16-byte struct"));
	assert_non_null(strstr(errs, "d: no doc line"));
	free(errs);
}

/* A table's validate hook runs after errors in its fields only when it says it copes. */
struct pair { long a; long b; };
static int pair_validate_calls;
static int pair_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	pair_validate_calls++;
	return 0;
}
static const struct cfg_field pair_fields[] = {
	{ "a", CFG_INT, offsetof(struct pair, a), "1", 0, 10, .doc = "a" },
	{ "b", CFG_INT, offsetof(struct pair, b), "2", 0, 10, .doc = "b" },
	{ NULL }
};

static void test_validate_always(void **state)
{
	static const struct cfg_table strict = { "strict", sizeof(struct pair), pair_fields,
						 pair_validate };
	static const struct cfg_table always = { "always", sizeof(struct pair), pair_fields,
						 pair_validate, CFG_TABLE_VALIDATE_ALWAYS };
	const struct { const char *label; const struct cfg_table *t; const char *text; int rc, calls; }
	rows[] = {
		{ "fine, strict", &strict, "a: 3\n", 0, 1 },
		{ "fine, always", &always, "a: 3\n", 0, 1 },
		{ "field error, strict: hook skipped", &strict, "a: 30\n", -1, 0 },
		{ "field error, always: hook runs", &always, "a: 30\n", -1, 1 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct pair obj = { 0 };
		pair_validate_calls = 0;
		int rc = cfg_table_load("p.yaml", rows[i].text, strlen(rows[i].text), rows[i].t, &obj,
					NULL);
		if (rc != rows[i].rc || pair_validate_calls != rows[i].calls)
			fail_msg("row \"%s\": rc %d, %d validate calls", rows[i].label, rc,
				 pair_validate_calls);
		cfg_table_free(rows[i].t, &obj);
	}
}

/* CFG_TABLE_OTHER_KEYS: keys the table does not name are passed over (a tool reading one
 * section of the daemon's file); the named ones are still checked. */
static void test_other_keys(void **state)
{
	static const struct cfg_table strict = { "strict", sizeof(struct pair), pair_fields, NULL };
	static const struct cfg_table other = { "other", sizeof(struct pair), pair_fields, NULL,
						CFG_TABLE_OTHER_KEYS };
	const struct { const char *label; const struct cfg_table *t; const char *text; int rc; }
	rows[] = {
		{ "unknown key, strict: error", &strict, "a: 3\nzz: [1, {x: y}]\n", -1 },
		{ "unknown key, other keys: ignored", &other, "a: 3\nzz: [1, {x: y}]\n", 0 },
		{ "named key still checked", &other, "a: 30\nzz: 1\n", -1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct pair obj = { 0 };
		int rc = cfg_table_load("p.yaml", rows[i].text, strlen(rows[i].text), rows[i].t, &obj,
					NULL);
		if (rc != rows[i].rc)
			fail_msg("row \"%s\": rc %d", rows[i].label, rc);
		cfg_table_free(rows[i].t, &obj);
	}
}

/* cfg_section_written in a validate hook: a section written with no value (`s:`, `s: ~`)
 * reaches the hook as n == NULL like an absent one; the helper tells the two apart, also for
 * a section inside another that is written (where p->key alone would name the outer key). */
static int probe_seen; /* -1: hook not run; else cfg_section_written */
static int probe_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	(void)n;
	(void)obj;
	probe_seen = cfg_section_written(p);
	return 0;
}
static const struct cfg_table probe_table = { "probe", sizeof(struct pair), pair_fields,
					      probe_validate };
struct probe_mid { long x; struct pair s; };
static const struct cfg_field probe_mid_fields[] = {
	{ "x", CFG_INT, offsetof(struct probe_mid, x), "0", 0, 10, .doc = "x" },
	{ "s", CFG_STRUCT, offsetof(struct probe_mid, s), NULL, .sub = &probe_table, .doc = "s" },
	{ NULL }
};
static const struct cfg_table probe_mid_table = { "mid", sizeof(struct probe_mid),
						  probe_mid_fields, NULL };
struct probe_top { struct probe_mid mid; };
static const struct cfg_field probe_top_fields[] = {
	{ "mid", CFG_STRUCT, offsetof(struct probe_top, mid), NULL, .sub = &probe_mid_table,
	  .doc = "mid" },
	{ NULL }
};
static const struct cfg_table probe_top_table = { "top", sizeof(struct probe_top),
						  probe_top_fields, NULL };

static void test_section_written(void **state)
{
	const struct { const char *text; int seen; } rows[] = {
		{ "x: 1\n", 0 },
		{ "s:\n", 1 },
		{ "s: ~\n", 1 },
		{ "s: null\n", 1 },
		{ "s: {}\n", 1 },
		{ "s: { a: 3 }\n", 1 },
		{ "mid: { x: 1 }\n", 0 },
		{ "mid:\n", 0 },
		{ "mid: { s: }\n", 1 },
		{ "mid: { s: { b: 4 } }\n", 1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool top = strncmp(rows[i].text, "mid", 3) == 0;
		const struct cfg_table *t = top ? &probe_top_table : &probe_mid_table;
		struct probe_top obj;
		memset(&obj, 0, sizeof(obj));
		void *o = top ? (void *)&obj : (void *)&obj.mid;
		probe_seen = -1;
		int rc = cfg_table_load("p.yaml", rows[i].text, strlen(rows[i].text), t, o, NULL);
		if (rc != 0 || probe_seen != rows[i].seen)
			fail_msg("\"%s\": rc %d, cfg_section_written %d (want %d)", rows[i].text, rc,
				 probe_seen, rows[i].seen);
		cfg_table_free(t, o);
	}
}

/* An error about an absent key of a section written alone (`s:`, as `dmarc:` alone with no
 * psl_file: filters/senderauth.c's dmarc_config_validate, cfg_error_key(p, n, "psl_file") with
 * n NULL): FILE:LINE:COL of the section's own key, never 0:0 or the top of the file. (The
 * Public Suffix List of `dmarc:` alone cannot be made to fail in a test: libpsl falls back to
 * its built-in list.) */
static int psl_probe_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	(void)obj;
	return cfg_error_key(p, n, "psl_file", -1, "cannot load the Public Suffix List");
}
static const struct cfg_table psl_probe_table = { "psl", sizeof(struct pair), pair_fields,
						  psl_probe_validate };
struct psl_mid { long x; struct pair s; };
static const struct cfg_field psl_mid_fields[] = {
	{ "x", CFG_INT, offsetof(struct psl_mid, x), "0", 0, 10, .doc = "x" },
	{ "s", CFG_STRUCT, offsetof(struct psl_mid, s), NULL, .sub = &psl_probe_table, .doc = "s" },
	{ NULL }
};
static const struct cfg_table psl_mid_table = { "mid", sizeof(struct psl_mid), psl_mid_fields,
						NULL };

static void test_error_key_section_alone(void **state)
{
	const struct { const char *text, *want; } rows[] = {
		{ "x: 1\ns:\n", "p.yaml:2:1: s.psl_file: cannot load" },
		{ "x: 1\ns: ~\n", "p.yaml:2:1: s.psl_file: cannot load" },
		{ "x: 1\n\ns: {}\n", "p.yaml:3:1: s.psl_file: cannot load" },
		{ "x: 1\ns:\n  a: 3\n", "p.yaml:3:3: s.psl_file: cannot load" }, /* its first key */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct psl_mid obj;
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		int rc;

		memset(&obj, 0, sizeof(obj));
		assert_non_null(f);
		rc = cfg_table_load("p.yaml", rows[i].text, strlen(rows[i].text), &psl_mid_table, &obj, f);
		fclose(f);
		if (rc == 0 || buf == NULL || strstr(buf, rows[i].want) != buf)
			fail_msg("\"%s\": rc %d, \"%s\" (want it to start with \"%s\")", rows[i].text, rc,
				 buf ? buf : "", rows[i].want);
		free(buf);
		cfg_table_free(&psl_mid_table, &obj);
	}
}

/* The reference walk, format-neutral: sections depth first, keys with their type, default
 * and bounds worked out. Recorded as text, one line per call. */
static void walk_section(void *arg, const char *path, const struct cfg_table *t)
{
	FILE *f = arg;
	fprintf(f, "[%s] %s\n", path, t->name);
}

static void walk_key(void *arg, const struct cfg_docs_key *k)
{
	FILE *f = arg;
	fprintf(f, "%s%s%s %s%s default=%s", k->section, k->section[0] ? "." : "", k->field->key,
		k->type ? k->type : "enum", k->required ? " required" : "",
		k->defval ? k->defval : "-");
	if (k->bounded)
		fprintf(f, " %s..%s", k->lo, k->hi);
	fputc('\n', f);
}

static void test_docs_walk(void **state)
{
	static const struct cfg_docs_visitor v = { walk_section, walk_key };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cfg_docs_walk(&outer_table, &v, f);
	fclose(f);
	assert_string_equal(buf,
		"[] outer\n"
		"rate rate default=10/m\n"
		"factor number default=1.5 -10..10\n"
		"tags list of strings default=[a, b]\n"
		"items list of sections default=-\n"
		"custom see description default=-\n"
		"flag bool default=yes\n"
		"size size default=4K 1K..8K\n"
		"[items[]] inner\n"
		"items[].name string required default=-\n"
		"items[].ratio number default=0.25 0..1\n");
	free(buf);
	assert_null(cfg_docs_type_name(CFG_ENUM));
	assert_string_equal(cfg_docs_type_name(CFG_DURATION), "duration");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_defaults),
		cmocka_unit_test(test_marks),
		cmocka_unit_test(test_marks_many),
		cmocka_unit_test(test_engine_values),
		cmocka_unit_test(test_engine_errors),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_validate_always),
		cmocka_unit_test(test_section_written),
		cmocka_unit_test(test_error_key_section_alone),
		cmocka_unit_test(test_other_keys),
		cmocka_unit_test(test_selfcheck_finds_bugs),
		cmocka_unit_test(test_docs_walk),
		cmocka_unit_test(test_probe_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
