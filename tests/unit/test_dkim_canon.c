/* test_dkim_canon.c — RFC 6376 3.4 canonicalisation: header fields simple / relaxed, the
 * body machine (the RFC's 3.4.6 example, empty bodies, trailing lines, l= limits) and the
 * promise that any slicing of the input gives the same bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dkim_canon.h"

static void test_header_table(void **state)
{
	static const struct { const char *label; enum dkim_canon c; const char *in, *want; } rows[] = {
		{ "simple keeps everything", DKIM_CANON_SIMPLE, "SubJect :  a\r\n\tb ", "SubJect :  a\r\n\tb " },
		{ "relaxed lowercases the name", DKIM_CANON_RELAXED, "SubJect: x", "subject:x" },
		{ "relaxed: WSP before the colon", DKIM_CANON_RELAXED, "Subject \t: x", "subject:x" },
		{ "relaxed unfolds", DKIM_CANON_RELAXED, "Subject: a\r\n\tb", "subject:a b" },
		{ "relaxed collapses runs", DKIM_CANON_RELAXED, "Subject: a  \t b", "subject:a b" },
		{ "relaxed trims the ends", DKIM_CANON_RELAXED, "Subject:  \t a b \t ", "subject:a b" },
		{ "relaxed empty value", DKIM_CANON_RELAXED, "X-Empty:   ", "x-empty:" },
		{ "RFC 6376 3.4.6 A", DKIM_CANON_RELAXED, "A: X", "a:X" },
		{ "RFC 6376 3.4.6 B", DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  ", "b:Y Z" },
		{ "fold at the start", DKIM_CANON_RELAXED, "To:\r\n bob@example.net", "to:bob@example.net" },
	};
	char out[128];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t n = dkim_canon_header(rows[i].c, rows[i].in, strlen(rows[i].in), out);

		out[n] = '\0';
		if (strcmp(out, rows[i].want) != 0)
			fail_msg("%s: \"%s\" want \"%s\"", rows[i].label, out, rows[i].want);
	}
}

struct acc { char buf[4096]; size_t n; };

static void acc_cb(void *arg, const void *p, size_t n)
{
	struct acc *a = arg;

	assert_true(a->n + n < sizeof(a->buf));
	memcpy(a->buf + a->n, p, n);
	a->n += n;
}

/* Canonicalises in one piece, then in every two-way split and byte by byte. */
static void canon_all_ways(enum dkim_canon c, uint64_t limit, const char *in, const char *want,
    const char *label)
{
	size_t len = strlen(in);
	struct dkim_body_canon b;
	struct acc a;

	for (size_t split = 0; split <= len + 1; split++) {
		memset(&a, 0, sizeof(a));
		dkim_body_canon_init(&b, c, limit, acc_cb, &a);
		if (split <= len) {
			dkim_body_canon_feed(&b, in, split);
			dkim_body_canon_feed(&b, in + split, len - split);
		} else {
			for (size_t i = 0; i < len; i++)
				dkim_body_canon_feed(&b, in + i, 1);
		}
		dkim_body_canon_end(&b);
		if (a.n != strlen(want) || memcmp(a.buf, want, a.n) != 0)
			fail_msg("%s (split %zu): got \"%.*s\" want \"%s\"", label, split, (int)a.n, a.buf, want);
	}
}

static void test_body_table(void **state)
{
	static const struct { const char *label; enum dkim_canon c; uint64_t limit; const char *in, *want; } rows[] = {
		{ "RFC 3.4.6 simple", DKIM_CANON_SIMPLE, UINT64_MAX,
		  " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n" },
		{ "RFC 3.4.6 relaxed", DKIM_CANON_RELAXED, UINT64_MAX,
		  " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },
		{ "simple empty body is CRLF", DKIM_CANON_SIMPLE, UINT64_MAX, "", "\r\n" },
		{ "relaxed empty body is empty", DKIM_CANON_RELAXED, UINT64_MAX, "", "" },
		{ "simple only blank lines", DKIM_CANON_SIMPLE, UINT64_MAX, "\r\n\r\n", "\r\n" },
		{ "relaxed only blank lines", DKIM_CANON_RELAXED, UINT64_MAX, "\r\n \r\n\t\r\n", "" },
		{ "no final CRLF gets one (simple)", DKIM_CANON_SIMPLE, UINT64_MAX, "abc", "abc\r\n" },
		{ "no final CRLF gets one (relaxed)", DKIM_CANON_RELAXED, UINT64_MAX, "abc  ", "abc\r\n" },
		{ "inner blank lines stay", DKIM_CANON_RELAXED, UINT64_MAX, "a\r\n  \r\nb\r\n", "a\r\n\r\nb\r\n" },
		{ "leading WSP becomes one SP", DKIM_CANON_RELAXED, UINT64_MAX, "\t\t x\r\n", " x\r\n" },
		{ "lone CR is content", DKIM_CANON_SIMPLE, UINT64_MAX, "a\rb\r\n", "a\rb\r\n" },
		{ "trailing lone CR", DKIM_CANON_SIMPLE, UINT64_MAX, "a\r", "a\r\r\n" },
		{ "bare LF ends a line", DKIM_CANON_SIMPLE, UINT64_MAX, "a\nb\n\n", "a\r\nb\r\n" },
		{ "l= cuts the stream", DKIM_CANON_SIMPLE, 3, "abcdef\r\n", "abc" },
		{ "l= zero", DKIM_CANON_RELAXED, 0, "abc\r\n", "" },
		{ "l= past the end takes it all", DKIM_CANON_SIMPLE, 100, "abc\r\n", "abc\r\n" },
		{ "l= inside held blank lines", DKIM_CANON_SIMPLE, 6, "ab\r\n\r\ncd\r\n", "ab\r\n\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		canon_all_ways(rows[i].c, rows[i].limit, rows[i].in, rows[i].want, rows[i].label);
}

static void count_cb(void *arg, const void *p, size_t n)
{
	(void)p;
	*(uint64_t *)arg += n;
}

static void test_body_large_and_counts(void **state)
{
	/* a body larger than the internal batch, and many trailing blank lines */
	size_t n = 3 * 4096 + 17, o = 0, lfs = 0;
	char *in = malloc(n + 2000 * 2 + 1);
	struct dkim_body_canon b;
	uint64_t got = 0;

	(void)state;
	assert_non_null(in);
	for (size_t i = 0; i < n; i++) {
		lfs += i % 70 == 69;
		in[o++] = (i % 70 == 69) ? '\n' : 'x';
	}
	for (int i = 0; i < 2000; i++) {
		in[o++] = '\r';
		in[o++] = '\n';
	}
	dkim_body_canon_init(&b, DKIM_CANON_RELAXED, UINT64_MAX, count_cb, &got);
	dkim_body_canon_feed(&b, in, o);
	dkim_body_canon_end(&b);
	/* every LF became CRLF, the last line got its CRLF, the blank lines went */
	assert_true(got == b.passed);
	assert_true(in[n - 1] != '\n');
	assert_true(got == n + lfs + 2);
	dkim_body_canon_init(&b, DKIM_CANON_SIMPLE, 10, count_cb, &got);
	got = 0;
	dkim_body_canon_feed(&b, in, o);
	dkim_body_canon_end(&b);
	assert_true(got == 10);
	assert_true(b.total > 10);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_table),
		cmocka_unit_test(test_body_table),
		cmocka_unit_test(test_body_large_and_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
