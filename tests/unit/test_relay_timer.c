/* test_relay_timer.c — the relay's timer arithmetic (proxy/relay_timer.c): the tick, the
 * stall cut between data_timeout and 9/8 of it after the backend's last octet, progress
 * moving the deadline, data_deadline behind it, and when a running timer is restarted.
 * The simulations fire the timer exactly when it asked (the loop's own lateness is not
 * the arithmetic's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/relay_timer.h"

static void test_tick(void **state)
{
	static const struct { const char *label; uint64_t timeout, tick; } rows[] = {
		{ "0: the 60 s default, 7.5 s", 0, 7500 },
		{ "60 s: 7.5 s", 60000, 7500 },
		{ "8 s: 1 s", 8000, 1000 },
		{ "not a multiple of 8: rounded down", 1001, 125 },
		{ "80 ms: 10 ms, the floor exactly", 80, 10 },
		{ "40 ms: the 10 ms floor", 40, 10 },
		{ "1 ms: the 10 ms floor", 1, 10 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		print_message("%s\n", rows[i].label);
		assert_int_equal(relay_timer_tick(rows[i].timeout), rows[i].tick);
	}
}

/* A message of `size` octets written at time 0 (data_timeout T from 0, relay_data_start);
 * the backend takes `rate` octets per ms until `stop` (ms), then none. The timer fires
 * when relay_timer_watch asked; returns the time it says the step is up. */
static uint64_t sim_stall(uint64_t T, uint64_t data_end, uint64_t size, uint64_t rate,
    uint64_t stop, uint64_t *looks)
{
	uint64_t now = 0, due = T ? T : 60000, wq_out = 0, next;

	next = due < relay_timer_tick(T) ? due : relay_timer_tick(T);    /* relay_data_look_soon */

	*looks = 0;
	for (;;) {
		uint64_t taken;

		now = next;
		taken = (now < stop ? now : stop) * rate;
		if (taken > size)
			taken = size;
		++*looks;
		next = relay_timer_watch(now, T, data_end, size, size - taken, &wq_out, &due);
		if (next == 0)
			return now;
		assert_true(next > now);
		assert_true(next <= due);
		if (*looks > 100000)
			fail_msg("never cut");
	}
}

static void test_stall_cut_within_nine_eighths(void **state)
{
	static const struct { const char *label; uint64_t T, stop; } rows[] = {
		{ "stops at once: cut at data_timeout", 8000, 0 },
		{ "stops on a look (1 s ticks)", 8000, 3000 },
		{ "stops just after a look", 8000, 3001 },
		{ "stops just before a look", 8000, 3999 },
		{ "stops mid-tick", 8000, 3500 },
		{ "the 60 s default, stops after a minute", 0, 61234 },
		{ "10 ms floor: 40 ms timeout, stops at 17 ms", 40, 17 },
		{ "timeout not a multiple of 8", 1001, 2222 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t T = rows[i].T ? rows[i].T : 60000, looks;
		/* a message far larger than the backend takes before stop */
		uint64_t cut = sim_stall(rows[i].T, 0, 1ull << 40, 1, rows[i].stop, &looks);
		uint64_t tick = relay_timer_tick(rows[i].T);

		print_message("%s: last octet %llu ms, cut %llu ms (%llu looks)\n", rows[i].label,
		    (unsigned long long)rows[i].stop, (unsigned long long)cut, (unsigned long long)looks);
		assert_true(cut >= rows[i].stop + T);
		if (rows[i].stop == 0)
			assert_int_equal(cut, T);
		else
			assert_true(cut <= rows[i].stop + T + tick);     /* 9/8 of it (floor: + 10 ms) */
		/* the looks while octets wait: one a tick, no more */
		assert_true(looks <= cut / tick + 1);
	}
}

static void test_deadline_behind(void **state)
{
	uint64_t looks;

	(void)state;
	print_message("a backend always taking octets is cut at data_deadline\n");
	assert_int_equal(sim_stall(8000, 30000, 1ull << 40, 1, UINT64_MAX / 2, &looks), 30000);
	print_message("a deadline before data_timeout: cut at the deadline\n");
	assert_int_equal(sim_stall(8000, 5000, 1ull << 40, 1, UINT64_MAX / 2, &looks), 5000);
	print_message("stalled well before the deadline: data_timeout cuts first\n");
	assert_int_equal(sim_stall(8000, 3600000, 1ull << 40, 1, 0, &looks), 8000);
}

static void test_all_taken(void **state)
{
	uint64_t due = 8000, wq_out = 0;

	(void)state;
	print_message("all taken at a look: data_timeout from that look, no more ticks\n");
	assert_int_equal(relay_timer_watch(2000, 8000, 0, 5000, 0, &wq_out, &due), 10000);
	assert_int_equal(due, 10000);
	assert_int_equal(wq_out, 5000);
	print_message("no progress since: the same deadline, fired at it\n");
	assert_int_equal(relay_timer_watch(10000, 8000, 0, 5000, 0, &wq_out, &due), 0);
	assert_int_equal(due, 10000);

	print_message("octets wait, none taken: the next look a tick on, the deadline kept\n");
	due = 8000, wq_out = 0;
	assert_int_equal(relay_timer_watch(1000, 8000, 0, 5000, 5000, &wq_out, &due), 2000);
	assert_int_equal(due, 8000);
	print_message("a look within a tick of the deadline fires at the deadline\n");
	assert_int_equal(relay_timer_watch(7500, 8000, 0, 5000, 5000, &wq_out, &due), 8000);
	print_message("progress never moves a later deadline earlier (a reply's own time)\n");
	due = 50000, wq_out = 0;
	assert_int_equal(relay_timer_watch(1000, 8000, 0, 5000, 100, &wq_out, &due), 2000);
	assert_int_equal(due, 50000);
}

static void test_needs_start(void **state)
{
	(void)state;
	print_message("not running: started\n");
	assert_true(relay_timer_needs_start(0, 5000));
	print_message("running, fires before the step's due: left, it starts itself again\n");
	assert_false(relay_timer_needs_start(4000, 5000));
	print_message("running, fires exactly at due: left\n");
	assert_false(relay_timer_needs_start(5000, 5000));
	print_message("running, fires after due: started again\n");
	assert_true(relay_timer_needs_start(6000, 5000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tick),
		cmocka_unit_test(test_stall_cut_within_nine_eighths),
		cmocka_unit_test(test_deadline_behind),
		cmocka_unit_test(test_all_taken),
		cmocka_unit_test(test_needs_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
