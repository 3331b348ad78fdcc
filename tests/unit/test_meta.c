/* test_meta.c — meta-rule expressions: boolean and arithmetic over rule hits, Perl
 * precedence, errors with columns. Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "rules/meta.h"

/* Names A..H map to ids 0..7; anything else fails to resolve. */
static int resolve_cb(const char *name, size_t len, void *arg)
{
	static const char *const names[] = { "A", "B", "C", "D", "__E", "F_1", "G", "H" };

	for (int i = 0; i < 8; i++)
		if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
			return i;
	return -1;
}

struct meta_case { const char *label, *expr; double want; };

/* values: A=1 B=0 C=1 D=0 __E=3 F_1=1 G=0 H=2 */
static const double values[8] = { 1, 0, 1, 0, 3, 1, 0, 2 };

static const struct meta_case cases[] = {
	{ "single", "A", 1 },
	{ "not", "!B", 1 },
	{ "and", "A && C", 1 },
	{ "and false", "A && B", 0 },
	{ "or", "B || C", 1 },
	{ "and binds tighter than or", "B && A || C", 1 },
	{ "parentheses", "(A && !B) || D", 1 },
	{ "nested negation", "!(A && !(B || C))", 1 },
	{ "sum threshold", "A + B + C >= 2", 1 },
	{ "sum threshold fails", "A + B + D > 1", 0 },
	{ "counts (tflags multiple)", "__E > 2", 1 },
	{ "arithmetic precedence", "A + H * 2 == 5", 1 },
	{ "division", "H / 2 == 1", 1 },
	{ "division by zero is 0", "A / B", 0 },
	{ "comparison chain with and", "H >= 2 && __E < 4", 1 },
	{ "not equal", "H != 2", 0 },
	{ "unary minus", "-H + 3 == 1", 1 },
	{ "numbers", "0.5 * 4 == 2", 1 },
	{ "underscore digit names", "F_1 && !G", 1 },
	{ "whitespace", "  ( A&&C )  ", 1 },
};

static void test_eval_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct meta_expr *e = NULL;
		const char *err = NULL;
		int col = 0;
		double v;

		if (meta_compile(cases[i].expr, resolve_cb, NULL, &e, &col, &err) != 0)
			fail_msg("%s: compile failed at %d: %s", cases[i].label, col, err);
		v = meta_eval(e, values);
		if ((v != 0) != (cases[i].want != 0))
			fail_msg("%s: \"%s\" = %g, want %g", cases[i].label, cases[i].expr, v,
			    cases[i].want);
		meta_free(e);
	}
}

struct bad_case { const char *label, *expr; int col; };

static const struct bad_case bad[] = {
	{ "unbalanced", "(A && B", 8 },
	{ "dangling operator", "A &&", 5 },
	{ "unknown name", "A && ZZZ", 6 },
	{ "junk after", "A B", 3 },
	{ "empty", "", 1 },
	{ "bad character", "A && $B", 6 },
};

static void test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct meta_expr *e = NULL;
		const char *err = NULL;
		int col = 0;

		if (meta_compile(bad[i].expr, resolve_cb, NULL, &e, &col, &err) == 0)
			fail_msg("%s: compiled", bad[i].label);
		assert_null(e);
		assert_non_null(err);
		if (col != bad[i].col)
			fail_msg("%s: column %d, want %d (%s)", bad[i].label, col, bad[i].col, err);
	}
}

static void test_deep_nesting_bounded(void **state)
{
	char buf[512];
	struct meta_expr *e = NULL;
	const char *err = NULL;
	int col = 0;

	memset(buf, '(', 200);
	strcpy(buf + 200, "A");
	assert_int_equal(meta_compile(buf, resolve_cb, NULL, &e, &col, &err), -1);
	assert_null(e);
}

static void test_deps(void **state)
{
	struct meta_expr *e = NULL;
	const char *err = NULL;
	const int *ids;
	int col = 0;

	assert_int_equal(meta_compile("A && (C || H)", resolve_cb, NULL, &e, &col, &err), 0);
	assert_int_equal(meta_deps(e, &ids), 3);
	assert_int_equal(ids[0], 0);
	assert_int_equal(ids[1], 2);
	assert_int_equal(ids[2], 7);
	meta_free(e);
}

/* Over ranges (rules mxgate cannot run are unknown: [0, 1]), a meta fires only when it
 * would whatever the unknowns are, and then it does fire. B is unknown here. */
struct range_case { const char *label, *expr; int want; };   /* 1 hits, 0 not, -1 unknown */

static const struct range_case range_cases[] = {
	{ "unknown alone", "B", -1 },
	{ "not unknown", "!B", -1 },
	{ "unknown or true", "B || A", 1 },
	{ "true or unknown", "A || B", 1 },
	{ "unknown or false", "B || D", -1 },
	{ "unknown and false", "B && D", 0 },
	{ "unknown and true", "B && A", -1 },
	{ "negated unknown and true", "!B && A", -1 },
	{ "not (unknown and false)", "!(B && D)", 1 },
	{ "not (unknown or true)", "!(B || A)", 0 },
	{ "(unknown or true) and true", "(B || A) && C", 1 },
	{ "unknown or a count", "B || __E", 1 },
	{ "(unknown or true) >= 1 is not certain", "(B || A) >= 1", -1 },
	{ "(unknown or true) > 0", "(B || A) > 0", 1 },
	{ "sum with unknown", "B + A + C >= 2", 1 },
	{ "sum needing unknown", "B + A >= 2", -1 },
};

static void test_eval_range_unknown(void **state)
{
	double lo[8], hi[8];

	for (int i = 0; i < 8; i++)
		lo[i] = hi[i] = values[i];
	lo[1] = 0;
	hi[1] = 1;
	for (size_t i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
		const struct range_case *c = &range_cases[i];
		struct meta_expr *e = NULL;
		const char *err = NULL;
		int col = 0, got;
		double l, h;

		if (meta_compile(c->expr, resolve_cb, NULL, &e, &col, &err) != 0)
			fail_msg("%s: compile failed at %d: %s", c->label, col, err);
		meta_eval_range(e, lo, hi, &l, &h);
		got = (l > 0 || h < 0) ? 1 : (l == 0 && h == 0) ? 0 : -1;
		if (got != c->want)
			fail_msg("%s: \"%s\" in [%g, %g]: %d, want %d", c->label, c->expr, l, h, got,
			    c->want);
		meta_free(e);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval_table),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_deep_nesting_bounded),
		cmocka_unit_test(test_deps),
		cmocka_unit_test(test_eval_range_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
