/* test_charset.c — rules/charset.c: what decoding a header costs in iconv_open calls (the
 * executable's iconv_open is wrapped and counted), whatever the charset an encoded word
 * names; in reallocs (wrapped too) for many encoded words; and that a thread's converters
 * are closed when it exits (iconv_close wrapped and counted). */
#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "rules/charset.h"

static unsigned opens;
static const char *fail_once;    /* a name whose next open fails EINVAL (a module not loaded) */

iconv_t __real_iconv_open(const char *to, const char *from);
iconv_t __wrap_iconv_open(const char *to, const char *from)
{
	opens++;
	if (fail_once && strcasecmp(from, fail_once) == 0) {
		fail_once = NULL;
		errno = EINVAL;
		return (iconv_t)-1;
	}
	return __real_iconv_open(to, from);
}

static unsigned closes;

int __real_iconv_close(iconv_t cd);
int __wrap_iconv_close(iconv_t cd)
{
	closes++;
	return __real_iconv_close(cd);
}

static bool counting;
static size_t regrows;          /* reallocs of a block (not realloc(NULL, n)) while counting */

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
	if (counting && p != NULL)
		regrows++;
	return __real_realloc(p, n);
}

/* A Subject of n encoded words naming charset, each followed by plain text (so that no two
 * are merged into one piece: each is transcoded on its own, as SpamAssassin does). */
static char *words(const char *charset, const char *text, int n)
{
	size_t cap = (size_t)n * (strlen(charset) + strlen(text) + 16) + 1, o = 0;
	char *v = malloc(cap);

	assert_non_null(v);
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(v + o, cap - o, "=?%s?Q?%s?= x ", charset, text);
	return v;
}

static void decode_counted(const char *label, const char *charset, const char *text, int n,
    unsigned max_opens, const char *want_prefix)
{
	char *v = words(charset, text, n), *d;

	opens = 0;
	d = charset_decode_header(v, "Subject");
	assert_non_null(d);
	if (opens > max_opens)
		fail_msg("%s: %d encoded words in %s cost %u iconv_open calls (at most %u)", label, n,
		    charset, opens, max_opens);
	if (strncmp(d, want_prefix, strlen(want_prefix)) != 0)
		fail_msg("%s: decoded \"%.40s...\", not \"%s...\"", label, d, want_prefix);
	free(d);
	free(v);
}

/* Before session 35, a name iconv does not know was not cached: every word opened again. */
static void test_unknown_charset_opened_once(void **state)
{
	(void)state;
	/* UTF-16 names go to iconv as they are written; this one iconv does not know: each
	 * word is left as its decoded octets (ASCII here) */
	decode_counted("unknown charset", "utf-16-nosuch", "a", 1000, 1, "a x a x a x ");
	/* a later message naming it again: one open at most (a name refused is asked again
	 * after 1,024 uses) */
	decode_counted("unknown charset, again", "utf-16-nosuch", "a", 1000, 1, "a x a x ");
	decode_counted("unknown charset, a third time", "utf-16-nosuch", "a", 1000, 1, "a x ");
}

/* glibc says EINVAL too when a known charset's module fails to load (no descriptor left in a
 * connection flood): the refusal is not kept for ever. The merged cache of session 35 decoded
 * ISO-8859-2 as Windows-1252 from then on (the review's finding): =B1 is a-ogonek, not the
 * plus-minus sign. */
static void test_passing_refusal_not_kept(void **state)
{
	char *v, *d;
	size_t dl;

	(void)state;

	fail_once = "iso-8859-4";
	decode_counted("a refused open", "iso-8859-4", "=B1", 1, 1, "");
	/* kept for 1,024 uses (a header decodes a bounded number of words: two of them)... */
	decode_counted("refused, kept", "iso-8859-4", "=B1", 1000, 0, "");
	/* ... then asked again (one open): the later words are ISO-8859-4's a-ogonek */
	v = words("iso-8859-4", "=B1", 1000);
	opens = 0;
	d = charset_decode_header(v, "Subject");
	assert_non_null(d);
	assert_int_equal(opens, 1);
	dl = strlen(d);
	assert_true(dl > 8);
	if (strstr(d + dl - 8, "\xc4\x85 x") == NULL)
		fail_msg("the last word decoded \"%s\", not a-ogonek", d + dl - 8);
	free(d);
	free(v);
}

static void test_known_charset_opened_once(void **state)
{
	(void)state;
	/* =E9 is e acute in ISO-8859-2 (an ASCII word would need no converter) */
	decode_counted("ISO-8859-2", "iso-8859-2", "=E9", 1000, 1, "\xc3\xa9 x \xc3\xa9 x ");
	decode_counted("ISO-8859-2, again", "iso-8859-2", "=E9", 1000, 0, "\xc3\xa9 x ");
}

/* 16 unknown names are kept; a 17th pushes the oldest out (bounded): then that one is
 * asked again, once. */
static void test_unknown_cache_bounded(void **state)
{
	char name[40];

	(void)state;
	for (int k = 0; k < 17; k++) {
		snprintf(name, sizeof(name), "utf-16-none%d", k);
		decode_counted("distinct unknown names", name, "a", 10, 1, "a x ");
	}
	decode_counted("the 17th, again", name, "a", 10, 0, "a x ");
	decode_counted("the first, pushed out", "utf-16-none0", "a", 10, 1, "a x ");
}

/* The longest name an encoded word gives (63 octets) is kept whole: a 32-octet slot (before
 * session 35) cut it, and it never matched again. */
static void test_long_name_cached(void **state)
{
	char name[64];

	(void)state;
	memset(name, 'x', sizeof(name));
	memcpy(name, "utf-16-", 7);
	name[63] = '\0';
	decode_counted("a 63-octet name", name, "a", 100, 1, "a x ");
	decode_counted("a 63-octet name, again", name, "a", 100, 0, "a x ");
}

/* 10,000 encoded words, each followed by plain text: 20,000 pieces, whose array grew one
 * piece a time (20,000 reallocs, each copying the array when it moved). Now it doubles. */
static void test_many_words_few_reallocs(void **state)
{
	char *v = words("iso-8859-2", "=E9", 10000), *d;

	(void)state;
	regrows = 0;
	counting = true;
	d = charset_decode_header(v, "Subject");
	counting = false;
	print_message("10,000 encoded words: %zu reallocs of a block\n", regrows);
	assert_non_null(d);
	assert_int_equal(strncmp(d, "\xc3\xa9 x \xc3\xa9 x ", 10), 0);
	if (regrows > 100)
		fail_msg("%zu reallocs for 20,000 pieces: the array grows by one", regrows);
	free(d);
	free(v);
}

static void *decode_thread(void *arg)
{
	char *v = words((const char *)arg, "=E9", 3), *d = charset_decode_header(v, "Subject");

	free(d);
	free(v);
	return NULL;
}

/* A thread that opened converters (a rules thread) closes them when it exits: before, each
 * exit left them open for the life of the process. */
static void test_thread_exit_closes(void **state)
{
	pthread_t t;

	(void)state;
	opens = 0;
	closes = 0;
	assert_int_equal(pthread_create(&t, NULL, decode_thread, (void *)"iso-8859-3"), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(opens, 1);
	assert_int_equal(closes, 1);
	/* two threads, one converter each */
	opens = 0;
	closes = 0;
	assert_int_equal(pthread_create(&t, NULL, decode_thread, (void *)"iso-8859-3"), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, decode_thread, (void *)"iso-8859-5"), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(opens, 2);
	assert_int_equal(closes, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_charset_opened_once),
		cmocka_unit_test(test_known_charset_opened_once),
		cmocka_unit_test(test_unknown_cache_bounded),
		cmocka_unit_test(test_long_name_cached),
		cmocka_unit_test(test_passing_refusal_not_kept),
		cmocka_unit_test(test_many_words_few_reallocs),
		cmocka_unit_test(test_thread_exit_closes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
