/* eval_testlib.h — helpers for the eval unit tests (test_eval_*.c): load a rule text, scan a
 * crafted message, ask whether a rule (or __ sub-rule) hit. Header-only, static. */
#ifndef MX_EVAL_TESTLIB_H
#define MX_EVAL_TESTLIB_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rules/rules.h"

struct et { struct rules_set *rs; struct rules_scratch *sc; char hits[8192]; };

static inline struct et *et_load(const char *rules)
{
	struct et *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(rules_set_load_text("t.cf", rules, strlen(rules), &t->rs, stderr), 0);
	assert_non_null(t->rs);
	t->sc = rules_scratch_new(t->rs);
	assert_non_null(t->sc);
	return t;
}

static inline void et_free(struct et *t)
{
	rules_scratch_free(t->sc);
	rules_set_free(t->rs);
	free(t);
}

static inline void et_collect(const char *name, double value, void *arg)
{
	struct et *t = arg;
	size_t n = strlen(t->hits);

	if (value != value)
		snprintf(t->hits + n, sizeof(t->hits) - n, "%s?,", name);
	else
		snprintf(t->hits + n, sizeof(t->hits) - n, "%s,", name);
}

/* Scans msg (LF line ends are fine) with an optional envelope; the hits, comma-ended. */
static inline const char *et_scan_env(struct et *t, const char *msg,
    const struct rules_envelope *env)
{
	struct rules_result res;

	rules_set_scan(t->rs, t->sc, msg, strlen(msg), env, NULL, 0, &res);
	t->hits[0] = ',';
	t->hits[1] = '\0';
	rules_scratch_foreach_hit(t->rs, t->sc, et_collect, t);
	rules_result_free(&res);
	return t->hits;
}

static inline const char *et_scan(struct et *t, const char *msg)
{
	return et_scan_env(t, msg, NULL);
}

/* Did rule hit in the last scan? */
static inline bool et_hit(const struct et *t, const char *rule)
{
	char k[160];

	snprintf(k, sizeof(k), ",%s,", rule);
	return strstr(t->hits, k) != NULL;
}

/* A table row: a labelled message and the rules that must / must not hit. */
struct et_case {
	const char *label;
	const char *msg;
	const char *hit;      /* comma-separated, may be NULL */
	const char *miss;     /* comma-separated, may be NULL */
};

static inline void et_check_list(const struct et *t, const struct et_case *c, const char *list,
    bool want)
{
	char buf[512], *save = NULL;

	if (list == NULL)
		return;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *r = strtok_r(buf, ",", &save); r; r = strtok_r(NULL, ",", &save))
		if (et_hit(t, r) != want) {
			print_error("%s: %s %s (hits: %s)\n", c->label, r, want ? "did not hit" : "hit",
			    t->hits);
			fail();
		}
}

/* MX_ET_DUMP=DIR writes each case's message to DIR/<test>-<i>.eml (to run them through
 * SpamAssassin when writing a case: spamassassin -t -L < FILE). */
static inline void et_dump(const char *label, size_t i, const char *msg)
{
	const char *dir = getenv("MX_ET_DUMP");
	char path[1024];
	FILE *f;

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/%s-%02zu.eml", dir, label, i);
	if ((f = fopen(path, "w")) != NULL) {
		fputs(msg, f);
		fclose(f);
	}
}

static inline void et_run_cases_named(const char *name, const char *rules,
    const struct et_case *cases, size_t n)
{
	struct et *t = et_load(rules);

	for (size_t i = 0; i < n; i++) {
		et_dump(name, i, cases[i].msg);
		et_scan(t, cases[i].msg);
		et_check_list(t, &cases[i], cases[i].hit, true);
		et_check_list(t, &cases[i], cases[i].miss, false);
	}
	et_free(t);
}

#define et_run_cases(rules, cases, n) et_run_cases_named(__func__, rules, cases, n)

/* The source tree (MX_SOURCE_DIR: set by ctest, else the build's), for the data files of
 * corpus tests. */
static inline const char *et_srcdir(void)
{
	const char *d = getenv("MX_SOURCE_DIR");

#ifdef MX_SOURCE_DIR
	return d ? d : MX_SOURCE_DIR;
#else
	return d ? d : ".";
#endif
}

/* A whole file, NUL-terminated (len without it); NULL when it cannot be read. */
static inline char *et_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else if (buf) {
			buf[n] = '\0';
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

/* name is an item of list, a ",A,B," string. */
static inline bool et_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
		if (p > list && p[-1] == ',' && p[n] == ',')
			return true;
	return false;
}

#endif
