/* test_authres.c — the Authentication-Results builder (RFC 8601 syntax: methods, comments,
 * properties, quoting) and the detection of fields that claim our authserv-id. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "filters/authres.h"

static void test_build(void **state)
{
	struct authres_builder b;
	char *v;

	(void)state;
	authres_begin(&b, "mx.example.test");
	authres_method(&b, "spf", "pass", NULL);
	authres_prop(&b, "smtp.mailfrom", "example.org");
	authres_method(&b, "dkim", "pass", "2048-bit key");
	authres_prop(&b, "header.d", "example.org");
	authres_prop(&b, "header.s", "sel");
	authres_prop(&b, "header.b", "a+b/c=d=");
	authres_method(&b, "dmarc", "fail", "p=reject (dis=none) \\x");
	authres_prop(&b, "header.from", "example.org");
	v = authres_finish(&b);
	assert_string_equal(v, "mx.example.test; spf=pass smtp.mailfrom=example.org; "
	    "dkim=pass (2048-bit key) header.d=example.org header.s=sel header.b=\"a+b/c=d=\"; "
	    "dmarc=fail (p=reject dis=none x) header.from=example.org");
	free(v);
	authres_begin(&b, "mx.example.test");
	v = authres_finish(&b);
	assert_string_equal(v, "mx.example.test; none");
	free(v);
}

static void test_quote(void **state)
{
	static const struct { const char *in, *want; } rows[] = {
		{ "example.org", "example.org" },
		{ "user@example.org", "user@example.org" },
		{ "a b", "\"a b\"" },
		{ "x\"y\\z", "\"x\\\"y\\\\z\"" },
		{ "semi;colon", "\"semi;colon\"" },
		{ "line\r\nbreak", "\"linebreak\"" },
		{ "", "\"\"" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		assert_int_equal(authres_quote_value(rows[i].in, out, sizeof(out)), 0);
		if (strcmp(out, rows[i].want) != 0)
			fail_msg("%s -> %s", rows[i].in, out);
	}
	assert_int_equal(authres_quote_value("a b c d e f", out, 6), -1);
}

static void test_is_ours(void **state)
{
	static const struct { const char *label, *v; bool want; } rows[] = {
		{ "plain", " mx.example.test; spf=pass", true },
		{ "case-insensitive", "MX.Example.Test; dkim=pass", true },
		{ "version after the id", "mx.example.test 1; spf=pass", true },
		{ "comment first", " (forged) mx.example.test; spf=pass", true },
		{ "nested comment", "(a (b) c)mx.example.test;none", true },
		{ "folded", "\r\n\tmx.example.test;\r\n spf=pass", true },
		{ "quoted", "\"mx.example.test\"; spf=pass", true },
		{ "absolute name (trailing dot)", " mx.example.test.; dkim=pass", true },
		{ "quoted absolute name", "\"MX.example.test.\"; dkim=pass", true },
		{ "two trailing dots", " mx.example.test..; dkim=pass", false },
		{ "someone else", " mx.example.net; spf=pass", false },
		{ "a longer name", " mx.example.test.evil; spf=pass", false },
		{ "a prefix", " mx.example.tes; spf=pass", false },
		{ "empty", "", false },
		{ "unterminated comment", "(mx.example.test", false },
		{ "unterminated quote", "\"mx.example.test", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (authres_is_ours(rows[i].v, strlen(rows[i].v), "mx.example.test") != rows[i].want)
			fail_msg("%s", rows[i].label);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_is_ours),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
