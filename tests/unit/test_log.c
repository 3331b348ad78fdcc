/* test_log.c — values of key=value log lines (log_val, log_valn, log_addr), the
 * one-line guarantee of log_event (control octets escaped in place), and the rate-limited
 * counting of log_rated_note. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>
#include <math.h>
#include <sys/types.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

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
		{ "UTF-8 of three and four", "\xe2\x82\xac\xf0\x9f\x98\x80", "\xe2\x82\xac\xf0\x9f\x98\x80",
		  "<\xe2\x82\xac\xf0\x9f\x98\x80>" },
		{ "U+00A0 is no C1", "a\xc2\xa0" "b", "a\xc2\xa0" "b", "<a\xc2\xa0" "b>" },
		/* a terminal reads these as CSI (0x9b) and NEL: escaped, quoted */
		{ "raw C1", "a\x9b" "31mb", "\"a\\x9b31mb\"", "\"<a\\x9b31mb>\"" },
		{ "C1 in UTF-8", "a\xc2\x9b" "31m\xc2\x85", "\"a\\xc2\\x9b31m\\xc2\\x85\"",
		  "\"<a\\xc2\\x9b31m\\xc2\\x85>\"" },
		{ "latin-1", "j\xf6rg", "\"j\\xf6rg\"", "\"<j\\xf6rg>\"" },
		{ "cut sequence", "a\xe2\x82", "\"a\\xe2\\x82\"", "\"<a\\xe2\\x82>\"" },
		{ "overlong", "\xc0\xaf\xe0\x80\xaf", "\"\\xc0\\xaf\\xe0\\x80\\xaf\"",
		  "\"<\\xc0\\xaf\\xe0\\x80\\xaf>\"" },
		{ "surrogate", "\xed\xa0\x80", "\"\\xed\\xa0\\x80\"", "\"<\\xed\\xa0\\x80>\"" },
		{ "past U+10FFFF", "\xf4\x90\x80\x80", "\"\\xf4\\x90\\x80\\x80\"", "\"<\\xf4\\x90\\x80\\x80>\"" },
		{ "DEL and 0xff", "a\x7f\xff", "\"a\\x7f\\xff\"", "\"<a\\x7f\\xff>\"" },
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

/* Plain or quoted by the octet rule wherever the octet stands: every ASCII octet (and 0x80,
 * 0xff) at every place of 1-40 octet values of 'a', so the word-at-a-time pass of
 * log_plain_text (eight octets a turn, the tail by octets) sees it in each lane and in the
 * tail; a plain value comes back as it is. */
static void test_plain_places(void **state)
{
	char in[48], buf[256];

	(void)state;
	for (int c = 1; c < 256; c++) {
		if (c > 0x80 && c < 0xff)
			continue;
		bool plain = c > ' ' && c < 0x7f && c != '"' && c != '\\';
		for (size_t n = 1; n <= 40; n++) {
			for (size_t at = 0; at < n; at++) {
				memset(in, 'a', n);
				in[at] = (char)c;
				log_valn(buf, sizeof(buf), in, n);
				bool got = buf[0] != '"';
				if (got != plain || (plain && (strlen(buf) != n || memcmp(buf, in, n) != 0)))
					fail_msg("octet 0x%02x at %zu of %zu: %s", c, at, n, buf);
			}
		}
	}
}

/* A line's escaping wherever the octet stands: each control, DEL, a stray 0x80/0xff and a
 * UTF-8 sequence at every place of 1-100 octet lines of 'a' (the 32- and 8-octet passes and
 * the last-32 tail test see it in each lane), through log_escape_controls_fuzz: the octet
 * escaped in place (or the sequence kept), the rest as it was. */
static void test_escape_places(void **state)
{
	static const struct { const char *in, *out; } oct[] = {
		{ "\r", "\\r" }, { "\n", "\\n" }, { "\t", "\\t" }, { "\x01", "\\x01" },
		{ "\x1f", "\\x1f" }, { "\x7f", "\\x7f" }, { "\x80", "\\x80" }, { "\xff", "\\xff" },
		{ "\xc3\xb6", "\xc3\xb6" }, { "\xc2\x9b", "\\xc2\\x9b" }, { " ", " " }, { "~", "~" },
	};
	char line[512], want[512];

	(void)state;
	for (size_t o = 0; o < sizeof(oct) / sizeof(oct[0]); o++) {
		size_t ol = strlen(oct[o].in);
		for (size_t n = ol; n <= 100; n++) {
			for (size_t at = 0; at + ol <= n; at++) {
				memset(line, 'a', n);
				memcpy(line + at, oct[o].in, ol);
				line[n] = '\0';
				memset(want, 'a', at);
				snprintf(want + at, sizeof(want) - at, "%s%.*s", oct[o].out, (int)(n - at - ol), line + at + ol);
				log_escape_controls_fuzz(line, sizeof(line));
				if (strcmp(line, want) != 0)
					fail_msg("octets %zu at %zu of %zu: %s, want %s", o, at, n, line, want);
			}
		}
	}
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

/* Whatever the octets, the value is printable ASCII and well-formed UTF-8 past the C1
 * controls (what a terminal shows as text), within cap: 20,000 random values. */
static void test_random_octets(void **state)
{
	unsigned char in[64];
	char buf[48];
	unsigned int seed = 19;

	(void)state;
	for (int r = 0; r < 20000; r++) {
		size_t n = (size_t)(rand_r(&seed) % (int)sizeof(in));
		for (size_t i = 0; i < n; i++)
			in[i] = (unsigned char)(rand_r(&seed) % 4 == 0 ? 0x80 + rand_r(&seed) % 0x80 : rand_r(&seed) % 256);
		log_valn(buf, sizeof(buf), (const char *)in, n);
		const unsigned char *o = (const unsigned char *)buf;
		size_t len = strlen(buf);
		assert_true(len < sizeof(buf));
		for (size_t i = 0; i < len; i++) {
			if (o[i] >= 0x20 && o[i] < 0x7f)
				continue;
			/* two to four octets of one character, none of U+0080-U+009F */
			assert_true(o[i] >= 0xc2 && o[i] <= 0xf4 && !(o[i] == 0xc2 && o[i + 1] < 0xa0));
			size_t k = o[i] < 0xe0 ? 2 : o[i] < 0xf0 ? 3 : 4;
			for (size_t j = 1; j < k; j++)
				assert_true(i + j < len && o[i + j] >= 0x80 && o[i + j] <= 0xbf);
			i += k - 1;
		}
	}
}

/* Standard error goes to a new temporary file (path: its "/tmp/test_log.XXXXXX" name, made
 * here) until capture_end, which gives the file back open for reading from its start. */
static int capture_start(char *path, int *saved)
{
	int fd = mkstemp(path);

	*saved = dup(2);
	assert_true(fd >= 0 && *saved >= 0);
	dup2(fd, 2);
	return fd;
}

static FILE *capture_end(int fd, int saved)
{
	FILE *f;

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	return f;
}

/* log_event writes one line whatever the text holds. */
static void test_one_line(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", line[8192];
	int saved, fd = capture_start(path, &saved);
	FILE *f;
	int lines = 0;
	static char big[3000];

	(void)state;
	log_event(LOG_LVL_INFO, "0a0b0c", "event=test reply=\"250-a\r\n250 b\"");
	memset(big, '\n', sizeof(big) - 1);
	log_event(LOG_LVL_INFO, "0a0b0c", "event=test2 v=%s", big);
	/* a value not passed through log_val: C1 controls and invalid UTF-8 escaped in place */
	log_event(LOG_LVL_INFO, "0a0b0c", "event=test3 v=%s w=%s", "\xc2\x9b" "31m\x9b" "0m\xff", "j\xc3\xb6rg\xe2\x82");
	f = capture_end(fd, saved);
	while (fgets(line, sizeof(line), f)) {
		lines++;
		assert_non_null(strstr(line, " 0a0b0c event=test"));
		if (strstr(line, "event=test3 "))
			assert_non_null(strstr(line, "event=test3 v=\\xc2\\x9b31m\\x9b0m\\xff w=j\xc3\xb6rg\\xe2\\x82\n"));
	}
	fclose(f);
	unlink(path);
	assert_int_equal(lines, 3);
}

/* log_event's head as "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s " gives it, the time the
 * line's own (its second kept per thread: lines over three seconds must each name theirs), a
 * line too long for the room cut at 2,047 octets, the session id "-" when there is none. */
static void test_line_form(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", line[8192];
	int saved, fd = capture_start(path, &saved);
	struct timeval before[8], after[8];
	struct timespec pause = { 0, 400 * 1000000L };
	static char big[3000];
	FILE *f;
	int k = 0;

	(void)state;
	for (int i = 0; i < 8; i++) {
		gettimeofday(&before[i], NULL);
		log_event(LOG_LVL_WARNING, i == 3 ? NULL : "0a0b0c", "event=form n=%d", i);
		gettimeofday(&after[i], NULL);
		nanosleep(&pause, NULL);
	}
	memset(big, 'a', sizeof(big) - 1);
	log_event(LOG_LVL_ERROR, "0a0b0c", "event=big v=%s", big);
	f = capture_end(fd, saved);
	while (fgets(line, sizeof(line), f)) {
		struct tm tm = { 0 };
		int ms = -1, used = 0;
		char z = 0;

		if (k == 8) {
			assert_int_equal(strlen(line), 2047 + 1);
			assert_non_null(strstr(line, "Z error 0a0b0c event=big v=aaaa"));
			assert_int_equal(line[2047], '\n');
			k++;
			continue;
		}
		assert_true(k < 8);
		assert_int_equal(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c %n", &tm.tm_year, &tm.tm_mon,
		    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z, &used), 8);
		assert_int_equal(z, 'Z');
		assert_int_equal(used, 25);
		char want[64];
		snprintf(want, sizeof(want), "warning %s event=form n=%d\n", k == 3 ? "-" : "0a0b0c", k);
		assert_string_equal(line + used, want);
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		long long t = (long long)timegm(&tm) * 1000 + ms;
		assert_true(t >= (long long)before[k].tv_sec * 1000 + before[k].tv_usec / 1000);
		assert_true(t <= (long long)after[k].tv_sec * 1000 + after[k].tv_usec / 1000);
		k++;
	}
	fclose(f);
	unlink(path);
	assert_int_equal(k, 9);
}

/* log_event formats its text as vsnprintf does: its own conversions (%s, %d, %i, %u and
 * their l, ll, z, j lengths), the rest one at a time through snprintf and the unknown ones
 * (%p, '*') through vsnprintf; every row's text is compared whole with snprintf's, the last
 * one cut at the line's room. */
static void test_format_same(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", line[8192];
	int saved, fd = capture_start(path, &saved);
	static char want[16][3100];
	static char big[3000];
	const char *volatile none = NULL;
	size_t nw = 0, k = 0;
	FILE *f;

	(void)state;
	memset(big, 'b', sizeof(big) - 1);
#define ROW(...) do { \
		log_event(LOG_LVL_WARNING, "f0", __VA_ARGS__); \
		snprintf(want[nw++], sizeof(want[0]), __VA_ARGS__); \
	} while (0)
	ROW("event=a s=%s d=%d i=%i u=%u end", "x y", -5, INT_MIN, UINT_MAX);
	ROW("%ld %lu %lld %llu %zu %zd %jd %d", LONG_MIN, ULONG_MAX, LLONG_MIN, ULLONG_MAX, SIZE_MAX,
	    (ssize_t)-1, INTMAX_MIN, 0);
	ROW("score=%.1f %.1f %.1f %.1f %g %e", 0.0, -0.0, 12.35, -3.05, 1e300, 3.5);
	ROW("%.1f|%.1f|%.1f|%.1f|%.1f|%.1f|%.1f|%.1f|%.1f|%.1f|%.1f", -0.5, 2.5, -2.5, 0.25, 0.05, 1e20,
	    4503599627370495.5, (double)NAN, (double)-INFINITY, 7.0, -1e300);
	ROW("%02x %08llx %5d|%-5s|%.3s|%c|%%|%5.2f %hhu %hd %+d %X %o %lx", 10, 0xabcULL, 42, "ab", "abcdef",
	    'q', 2.5, 300, 70000, 7, 255, 8, 0xffffUL);
	ROW("null=%s %p %*d|%-*s|", none, (void *)0x1234, 5, 3, 4, "z");
	ROW("%f", 1e300);
	ROW("%% %s%%", "");
	ROW("no conversion at all");
	ROW("%s%d", big, 12345);
#undef ROW
	f = capture_end(fd, saved);
	while (fgets(line, sizeof(line), f)) {
		const char *body = strstr(line, " f0 ");
		assert_non_null(body);
		assert_true(k < nw);
		body += 4;
		size_t room = 2047 - (size_t)(body - line);
		if (strlen(want[k]) > room)
			want[k][room] = '\0';
		strcat(want[k], "\n");
		assert_string_equal(body, want[k]);
		k++;
	}
	fclose(f);
	unlink(path);
	assert_int_equal(k, nw);
}

/* log_rated_note: every note counted, the first logged, the next ones not until every_ms
 * passed, then one again; two causes apart. At given times (log_rated_note_at): it read the
 * clock and asserted that 100 notes fell within 50 ms of the first, and that the two notes
 * after a 60 ms sleep did too, which a test descheduled for 50 ms on a loaded machine fails
 * (shown with a clock that jumps 60 ms at each read: test_rated failed at the loop). */
static void test_rated(void **state)
{
	static struct log_rated a, b, c;
	bool now = false;

	(void)state;
	assert_int_equal(log_rated_note_at(&a, 50, 1000, &now), 1);
	assert_true(now);
	for (unsigned long long i = 2; i <= 100; i++) {
		assert_int_equal(log_rated_note_at(&a, 50, 1000 + i / 3, &now), i);
		assert_false(now);
	}
	assert_int_equal(log_rated_note_at(&b, 50, 1049, &now), 1);
	assert_true(now);       /* another cause: its own first line */
	assert_int_equal(log_rated_note_at(&a, 50, 1050, &now), 101);
	assert_true(now);       /* every_ms after the last logged one */
	assert_int_equal(log_rated_note_at(&a, 50, 1099, &now), 102);
	assert_false(now);
	assert_int_equal(log_rated_note_at(&a, 50, 1100, &now), 103);
	assert_true(now);
	assert_int_equal(atomic_load(&a.count), 103);
	assert_int_equal(atomic_load(&b.count), 1);

	/* the clock's own: the first note is logged, the next not within the hour */
	assert_int_equal(log_rated_note(&c, 3600000, &now), 1);
	assert_true(now);
	assert_int_equal(log_rated_note(&c, 3600000, &now), 2);
	assert_false(now);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_plain_places),
		cmocka_unit_test(test_escape_places),
		cmocka_unit_test(test_random_octets),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_line_form),
		cmocka_unit_test(test_format_same),
		cmocka_unit_test(test_rated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
