/* test_gcra.c — GCRA math with an injected clock: bursts, refill, exact boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "filters/gcra.h"

#define S 1000000000ull   /* one second in ns */

struct step { uint64_t at_ns; uint64_t cost; int allowed; uint64_t retry_ns; };

struct gcra_case {
	const char *label;
	uint64_t count, period_ns;
	struct step steps[40];
	size_t nsteps;
};

static const struct gcra_case cases[] = {
	{ "10/60s: burst of exactly 10 at t=0, 11th denied with 6 s to wait", 10, 60 * S, {
		{ 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 },
		{ 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 },
		{ 0, 1, 0, 6 * S } }, 11 },
	{ "10/60s: refill one cell per 6 s, boundary exact to the ns", 10, 60 * S, {
		{ 0, 10, 1, 0 }, { 6 * S - 1, 1, 0, 1 }, { 6 * S, 1, 1, 0 }, { 6 * S, 1, 0, 6 * S },
		{ 12 * S, 1, 1, 0 } }, 5 },
	{ "idle key is fresh again after a full period", 10, 60 * S, {
		{ 0, 10, 1, 0 }, { 60 * S, 10, 1, 0 }, { 60 * S, 1, 0, 6 * S } }, 3 },
	{ "denied requests consume nothing", 2, 10 * S, {
		{ 0, 2, 1, 0 }, { 1 * S, 1, 0, 4 * S }, { 2 * S, 1, 0, 3 * S }, { 5 * S, 1, 1, 0 } }, 4 },
	{ "cost above the limit passes only on a full bucket and empties it", 100, 10 * S, {
		{ 0, 1000, 1, 0 }, { 0, 1, 0, 100000000ull }, { 10 * S, 1000, 1, 0 } }, 3 },
	{ "non-integral interval 7/60s still lets 7 through at once", 7, 60 * S, {
		{ 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 },
		{ 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 0, 0 } }, 8 },
	{ "1/1s: strict one per second", 1, S, {
		{ 5 * S, 1, 1, 0 }, { 5 * S + S / 2, 1, 0, S / 2 }, { 6 * S, 1, 1, 0 } }, 3 },
	{ "bytes: 1M/1h charged by size", 1000000, 3600 * S, {
		{ 0, 600000, 1, 0 }, { 0, 400000, 1, 0 }, { 0, 1, 0, 3600 * S / 1000000 } }, 3 },
};

static void test_gcra_table(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct gcra_case *tc = &cases[c];
		struct gcra_limit l = { tc->count, tc->period_ns };
		uint64_t tat = 0;

		for (size_t i = 0; i < tc->nsteps; i++) {
			const struct step *st = &tc->steps[i];
			struct gcra_result r;

			assert_int_equal(gcra_check(&l, tat, st->at_ns, st->cost, &r), 0);
			if ((int)r.allowed != st->allowed)
				fail_msg("%s: step %zu: allowed=%d want %d", tc->label, i, r.allowed, st->allowed);
			if (!r.allowed && st->retry_ns && r.retry_ns != st->retry_ns)
				fail_msg("%s: step %zu: retry %llu want %llu", tc->label, i,
				    (unsigned long long)r.retry_ns, (unsigned long long)st->retry_ns);
			if (r.allowed)
				tat = r.new_tat;
			else
				assert_int_equal(r.new_tat, tat);
		}
	}
}

static void test_gcra_invalid(void **state)
{
	struct gcra_limit zero = { 0, S }, noperiod = { 1, 0 };
	struct gcra_result r;

	(void)state;
	assert_int_equal(gcra_check(&zero, 0, 0, 1, &r), -1);
	assert_int_equal(gcra_check(&noperiod, 0, 0, 1, &r), -1);
}

static void test_gcra_refund(void **state)
{
	/* 3/60s: two charges, one given back: two more fit, not three; a refund never moves the
	 * TAT before now (no extra burst), and an idle key stays idle. */
	struct gcra_limit l = { 3, 60 * S };
	struct gcra_result r;
	uint64_t now = 1000 * S, tat = 0;

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(gcra_check(&l, tat, now, 1, &r), 0);
		assert_true(r.allowed);
		tat = r.new_tat;
	}
	tat = gcra_refund(&l, tat, now, 1);
	assert_int_equal(tat, now + 20 * S);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(gcra_check(&l, tat, now, 1, &r), 0);
		assert_true(r.allowed);
		tat = r.new_tat;
	}
	assert_int_equal(gcra_check(&l, tat, now, 1, &r), 0);
	assert_false(r.allowed);
	assert_int_equal(gcra_refund(&l, now + 5 * S, now, 1), now);
	assert_int_equal(gcra_refund(&l, now - S, now, 1), now - S);
	/* a cost over the limit was charged as the limit: given back as the limit */
	assert_int_equal(gcra_refund(&l, now + 60 * S, now, 10), now);
}

static void test_gcra_remaining(void **state)
{
	struct gcra_limit l = { 10, 60 * S };
	struct gcra_result r;
	uint64_t tat = 0;

	(void)state;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(gcra_check(&l, tat, 1000 * S, 1, &r), 0);
		assert_true(r.allowed);
		assert_int_equal(r.remaining, (uint64_t)(9 - i));
		tat = r.new_tat;
	}
}

static void test_gcra_huge_values(void **state)
{
	/* 10G/1h bytes: cost * period overflows 64 bits without the 128-bit product. */
	struct gcra_limit l = { 10000000000ull, 3600 * S };
	struct gcra_result r;

	(void)state;
	assert_int_equal(gcra_check(&l, 0, 1, 5000000000ull, &r), 0);
	assert_true(r.allowed);
	assert_int_equal(r.new_tat, 1 + 1800 * S);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcra_table),
		cmocka_unit_test(test_gcra_invalid),
		cmocka_unit_test(test_gcra_remaining),
		cmocka_unit_test(test_gcra_refund),
		cmocka_unit_test(test_gcra_huge_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
