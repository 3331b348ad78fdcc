/* test_log.c — values of key=value log lines (log_val, log_valn, log_addr), the
 * one-line guarantee of log_event (control octets escaped in place), and the rate-limited
 * counting of log_rated_note. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static void test_values(void **state)
{
	const struct { const char *label, *in, *val, *addr; } rows[] = {
		{ "plain", "a@b.example", "a@b.example", "<a@b.example>" },
		{ "empty", "", "\"\"", "<>" },
		{ "blank", "a b", "\"a b\"", "\"<a b>\"" },
		{ "quoted local part", "\"a b=c\\\"d\"@x.example", "\"\\\"a b=c\\\\\\\"d\\\"@x.example\"",
		  "\"<\\\"a b=c\\\\\\\"d\\\"@x.example>\"" },
		{ "equals alone stays plain", "k=v", "k=v", "<k=v>" },
		{ "controls", "a\r\nb\tc\x01", "\"a\\r\\nb\\tc\\x01\"", "\"<a\\r\\nb\\tc\\x01>\"" },
		{ "UTF-8 stays", "j\xc3\xb6rg@b.example", "j\xc3\xb6rg@b.example", "<j\xc3\xb6rg@b.example>" },
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (strcmp(log_val(buf, sizeof(buf), rows[i].in), rows[i].val) != 0)
			fail_msg("row \"%s\": log_val gave %s, want %s", rows[i].label, buf, rows[i].val);
		if (strcmp(log_addr(buf, sizeof(buf), rows[i].in), rows[i].addr) != 0)
			fail_msg("row \"%s\": log_addr gave %s, want %s", rows[i].label, buf, rows[i].addr);
	}
	assert_string_equal(log_val(buf, sizeof(buf), NULL), "\"\"");
	assert_string_equal(log_addr(buf, sizeof(buf), NULL), "<>");
	assert_string_equal(log_valn(buf, sizeof(buf), "MAIL FROM:<a@b>\r\n", 15), "\"MAIL FROM:<a@b>\"");
}

/* Cut to fit: always a closed quoted string within cap, whatever the input. */
static void test_cut(void **state)
{
	char in[300], buf[64];

	(void)state;
	for (size_t cap = 16; cap <= sizeof(buf); cap++) {
		for (int kind = 0; kind < 3; kind++) {
			memset(in, kind == 0 ? 'x' : kind == 1 ? '"' : '\n', sizeof(in) - 1);
			in[sizeof(in) - 1] = '\0';
			in[0] = ' ';
			log_val(buf, cap, in);
			size_t n = strlen(buf);
			assert_true(n < cap);
			assert_true(n >= 5 && buf[0] == '"' && buf[n - 1] == '"');
			assert_memory_equal(buf + n - 4, "...\"", 4);
		}
	}
}

/* log_event writes one line whatever the text holds. */
static void test_one_line(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", line[8192];
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;
	int lines = 0;
	static char big[3000];

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	log_event(LOG_LVL_INFO, "0a0b0c", "event=test reply=\"250-a\r\n250 b\"");
	memset(big, '\n', sizeof(big) - 1);
	log_event(LOG_LVL_INFO, "0a0b0c", "event=test2 v=%s", big);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		lines++;
		assert_non_null(strstr(line, " 0a0b0c event=test"));
	}
	fclose(f);
	unlink(path);
	assert_int_equal(lines, 2);
}

/* log_rated_note: every note counted, the first logged, the next ones not until every_ms
 * passed, then one again; two causes apart. */
static void test_rated(void **state)
{
	static struct log_rated a, b;
	bool now = false;
	struct timespec pause = { 0, 60 * 1000000L };

	(void)state;
	assert_int_equal(log_rated_note(&a, 50, &now), 1);
	assert_true(now);
	for (unsigned long long i = 2; i <= 100; i++) {
		assert_int_equal(log_rated_note(&a, 50, &now), i);
		assert_false(now);
	}
	assert_int_equal(log_rated_note(&b, 50, &now), 1);
	assert_true(now);       /* another cause: its own first line */
	nanosleep(&pause, NULL);
	assert_int_equal(log_rated_note(&a, 50, &now), 101);
	assert_true(now);
	assert_int_equal(log_rated_note(&a, 50, &now), 102);
	assert_false(now);
	assert_int_equal(atomic_load(&a.count), 102);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_rated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
