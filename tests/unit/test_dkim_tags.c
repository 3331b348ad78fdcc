/* test_dkim_tags.c — RFC 6376 3.2 tag-lists (DKIM-Signature, key records, ARC, DMARC share
 * it), base64 with FWS, the list walker and decimal values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/dkim_tags.h"

static void test_parse_table(void **state)
{
	static const struct { const char *label, *in; int rc; size_t n; const char *name2, *val2; } rows[] = {
		{ "plain", "v=1; a=rsa-sha256; d=example.org", DKIM_TAGS_OK, 3, "a", "rsa-sha256" },
		{ "trailing semicolon", "v=1; a=b;", DKIM_TAGS_OK, 2, "a", "b" },
		{ "trailing semicolon and space", "v=1; a=b; \r\n ", DKIM_TAGS_OK, 2, "a", "b" },
		{ "empty list", "", DKIM_TAGS_OK, 0, NULL, NULL },
		{ "only whitespace", " \t ", DKIM_TAGS_OK, 0, NULL, NULL },
		{ "folded value keeps inner FWS", "h=from : to;\r\n\tb=abc\r\n def", DKIM_TAGS_OK, 2, "b", "abc\r\n def" },
		{ "spaces around =", "v = 1 ;  a  =  x y  ", DKIM_TAGS_OK, 2, "a", "x y" },
		{ "empty value", "v=1; p=", DKIM_TAGS_OK, 2, "p", "" },
		{ "underscore and digits in names", "v=1; x_1=2", DKIM_TAGS_OK, 2, "x_1", "2" },
		{ "duplicate tag", "v=1; v=1", DKIM_TAGS_DUPLICATE, 1, NULL, NULL },
		{ "names are case-sensitive", "v=1; V=1", DKIM_TAGS_OK, 2, "V", "1" },
		{ "no equals", "v=1; a", DKIM_TAGS_SYNTAX, 1, NULL, NULL },
		{ "name starts with digit", "1v=1", DKIM_TAGS_SYNTAX, 0, NULL, NULL },
		{ "empty spec in the middle", "v=1;;a=b", DKIM_TAGS_SYNTAX, 1, NULL, NULL },
		{ "control byte in value", "v=1; a=b\x01" "c", DKIM_TAGS_SYNTAX, 1, NULL, NULL },
		{ "8-bit byte in value", "v=1; a=\xc3\xa9", DKIM_TAGS_SYNTAX, 1, NULL, NULL },
		{ "space inside a name", "v=1; a b=c", DKIM_TAGS_SYNTAX, 1, NULL, NULL },
	};
	struct dkim_tags t;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = dkim_tags_parse(rows[i].in, strlen(rows[i].in), &t);

		if (rc != rows[i].rc)
			fail_msg("%s: rc %d want %d", rows[i].label, rc, rows[i].rc);
		if (t.n != rows[i].n)
			fail_msg("%s: n %zu want %zu", rows[i].label, t.n, rows[i].n);
		if (rows[i].name2) {
			const struct dkim_tag *g = dkim_tags_find(&t, rows[i].name2);

			if (g == NULL || g->value_len != strlen(rows[i].val2) ||
			    memcmp(g->value, rows[i].val2, g->value_len) != 0)
				fail_msg("%s: tag %s value wrong", rows[i].label, rows[i].name2);
		}
	}
}

static void test_too_many_tags(void **state)
{
	char buf[1024];
	size_t o = 0;
	struct dkim_tags t;

	(void)state;
	for (int i = 0; i < DKIM_TAGS_MAX + 1; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "t%d=%d;", i, i);
	assert_int_equal(dkim_tags_parse(buf, o, &t), DKIM_TAGS_TOO_MANY);
	assert_int_equal(t.n, DKIM_TAGS_MAX);
}

static void test_after_eq_for_b_stripping(void **state)
{
	const char *s = "v=1; b= abc\r\n def ; bh=x";
	struct dkim_tags t;
	const struct dkim_tag *b;

	(void)state;
	assert_int_equal(dkim_tags_parse(s, strlen(s), &t), DKIM_TAGS_OK);
	b = dkim_tags_find(&t, "b");
	assert_non_null(b);
	assert_ptr_equal(b->after_eq, s + 7);
	assert_int_equal(b->value - s, 8);
	assert_int_equal(b->value_len, strlen("abc\r\n def"));
	assert_non_null(dkim_tags_find(&t, "bh"));
	assert_null(dkim_tags_find(&t, "x"));
}

static void test_base64(void **state)
{
	static const struct { const char *label, *in; long want; const char *out; } rows[] = {
		{ "plain", "aGVsbG8=", 5, "hello" },
		{ "no padding needed", "aGVs", 3, "hel" },
		{ "two pad", "aGk=", 2, "hi" },
		{ "one byte", "aA==", 1, "h" },
		{ "missing padding tolerated", "aGk", 2, "hi" },
		{ "folding whitespace inside", "aGVs\r\n bG8=", 5, "hello" },
		{ "empty", "", 0, "" },
		{ "bad char", "aG!s", -1, NULL },
		{ "data after padding", "aGk=aGk=", -1, NULL },
		{ "three pad", "a===", -1, NULL },
		{ "one stray char", "aGVsb", -1, NULL },
	};
	unsigned char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		long n = dkim_base64_decode(rows[i].in, strlen(rows[i].in), out, sizeof(out));

		if (n != rows[i].want)
			fail_msg("%s: %ld want %ld", rows[i].label, n, rows[i].want);
		if (n > 0 && memcmp(out, rows[i].out, (size_t)n) != 0)
			fail_msg("%s: bytes differ", rows[i].label);
	}
	assert_int_equal(dkim_base64_decode("aGVsbG8=", 8, out, 4), -1);	/* does not fit */
}

static int collect_cb(const char *item, size_t n, void *arg)
{
	char *acc = arg;

	strncat(acc, "[", 255 - strlen(acc));
	strncat(acc, item, n < 255 - strlen(acc) ? n : 255 - strlen(acc));
	strncat(acc, "]", 255 - strlen(acc));
	return 0;
}

static void test_each_and_uint(void **state)
{
	struct dkim_tags t;
	const char *s = "h=From : to:\r\n subject; l=1234; t=12345678901234567890; z=1x";
	char acc[256] = "";
	unsigned long long u;

	(void)state;
	assert_int_equal(dkim_tags_parse(s, strlen(s), &t), DKIM_TAGS_OK);
	assert_int_equal(dkim_tag_each(dkim_tags_find(&t, "h"), ':', 8, collect_cb, acc), 0);
	assert_string_equal(acc, "[From][to][subject]");
	assert_int_equal(dkim_tag_each(dkim_tags_find(&t, "h"), ':', 2, collect_cb, acc), -1);
	assert_int_equal(dkim_tag_uint(dkim_tags_find(&t, "l"), 18, &u), 0);
	assert_true(u == 1234);
	assert_int_equal(dkim_tag_uint(dkim_tags_find(&t, "t"), 18, &u), -1);	/* too long */
	assert_int_equal(dkim_tag_uint(dkim_tags_find(&t, "z"), 18, &u), -1);
	assert_true(dkim_tag_value_is(dkim_tags_find(&t, "l"), "1234", false));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_too_many_tags),
		cmocka_unit_test(test_after_eq_for_b_stripping),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_each_and_uint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
