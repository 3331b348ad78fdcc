/* test_gwrefuse.c — telling a backend's refusal of the gateway from a refusal of the message
 * (gwrefuse.c): the patterns built in (Exchange Online's 5.7.606-5.7.649, 5.7.57), an
 * operator's codes, ranges and texts, what is never matched (4xx, another code, a code
 * inside a longer one), and which patterns the config takes. Table-driven: each row has a
 * label printed when it fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "gwrefuse.h"

struct match_row {
	const char *label;
	int code;
	const char *text;
	const char *extra[4];   /* backends.gateway_refusals, NULL-terminated */
	const char *want;       /* the pattern matched, NULL: none */
};

static const struct match_row match_rows[] = {
	{ "Exchange Online banned sending IP, lowest", 550, "550 5.7.606 Access denied, banned sending IP [192.0.2.1]",
	  { NULL }, "5.7.606-5.7.649" },
	{ "Exchange Online banned sending IP, highest", 550, "550 5.7.649 Access denied, banned sending IP [192.0.2.1]",
	  { NULL }, "5.7.606-5.7.649" },
	{ "a code inside the range", 550, "550 5.7.620 Access denied", { NULL }, "5.7.606-5.7.649" },
	{ "just below the range", 550, "550 5.7.605 Access denied", { NULL }, NULL },
	{ "just above the range", 550, "550 5.7.650 Access denied", { NULL }, NULL },
	{ "submission endpoint", 530, "530 5.7.57 Client not authenticated to send anonymous mail during MAIL FROM",
	  { NULL }, "5.7.57" },
	{ "a longer code that starts alike", 530, "530 5.7.570 Something else", { NULL }, NULL },
	{ "code glued to a word", 550, "550 5.7.606x banned", { NULL }, NULL },
	{ "a code alone, no text after it", 550, "550 5.7.57", { NULL }, "5.7.57" },
	{ "a multi-line reply: its last line's code", 530,
	  "530-5.7.57 Client not authenticated\r\n530 5.7.57 to send anonymous mail", { NULL }, "5.7.57" },
	{ "the code without its reply code is no enhanced code", 550, "5.7.606 Access denied", { NULL }, NULL },
	{ "an enhanced code of another class than the reply's", 550, "550 4.7.606 Access denied", { NULL }, NULL },
	{ "a 4xx is a deferral already", 451, "451 4.7.606 Access denied", { NULL }, NULL },
	{ "a 4xx with the built-in's digits", 450, "450 5.7.606 Access denied", { NULL }, NULL },
	{ "user unknown: the message's", 550,
	  "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown", { NULL }, NULL },
	{ "Directory-Based Edge Blocking: the recipient's", 550,
	  "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", { NULL }, NULL },
	{ "no enhanced code, no pattern", 554, "554 Transaction failed", { NULL }, NULL },
	{ "an operator's text, case ignored", 554, "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied",
	  { "client HOST rejected", NULL }, "client HOST rejected" },
	{ "an operator's text not in the reply", 554, "554 5.7.1 <a@example.test>: Relay access denied",
	  { "Client host rejected", NULL }, NULL },
	{ "an operator's code", 550, "550 5.7.0 Error: insufficient authorization", { "5.7.0", NULL }, "5.7.0" },
	{ "an operator's code, another detail", 550, "550 5.7.1 Access denied", { "5.7.0", NULL }, NULL },
	{ "an operator's range", 554, "554 5.7.12 Sender was not authenticated", { "5.7.10-5.7.19", NULL },
	  "5.7.10-5.7.19" },
	{ "the second of the operator's", 550, "550 5.7.1 TLS required", { "5.7.0", "TLS required", NULL }, "TLS required" },
	{ "built in before the operator's", 550, "550 5.7.606 banned", { "banned", NULL }, "5.7.606-5.7.649" },
	{ "a pattern that reads as a code is one, not a prefix", 550, "550 5.7.51 no", { "5.7.5", NULL }, NULL },
	{ "a reply code alone is no enhanced code", 550, "550 banned", { "5.5.0", NULL }, NULL },
	{ "NULL text", 550, NULL, { "x", NULL }, NULL },
};

static void test_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
		const struct match_row *r = &match_rows[i];
		struct cfg_strlist extra = { (char **)r->extra, 0 };

		while (r->extra[extra.n])
			extra.n++;
		const char *got = gwrefuse_match(r->code, r->text, &extra);
		if ((got == NULL) != (r->want == NULL) || (got && strcmp(got, r->want) != 0))
			fail_msg("%s: got %s, want %s", r->label, got ? got : "(none)", r->want ? r->want : "(none)");
	}
}

static void test_match_no_extra(void **state)
{
	(void)state;
	assert_string_equal(gwrefuse_match(550, "550 5.7.606 banned", NULL), "5.7.606-5.7.649");
	assert_null(gwrefuse_match(550, "550 5.1.1 unknown", NULL));
}

struct pattern_row {
	const char *label, *pat;
	int want;   /* 0 or -1 */
};

static const struct pattern_row pattern_rows[] = {
	{ "a code", "5.7.57", 0 },
	{ "a range", "5.7.606-5.7.649", 0 },
	{ "a range of one code", "5.7.1-5.7.1", 0 },
	{ "a text", "Client host rejected", 0 },
	{ "a text that starts with a code", "5.7.1 Client host rejected", 0 },
	{ "four digits: a text", "5.7.1234", 0 },
	{ "empty", "", -1 },
	{ "class 4: never matched", "4.7.1", -1 },
	{ "class 2", "2.0.0", -1 },
	{ "a range across subjects", "5.7.606-5.8.1", -1 },
	{ "a range downwards", "5.7.649-5.7.606", -1 },
	{ "a range across classes", "4.7.1-5.7.1", -1 },
	{ "a range with no end", "5.7.1-", -1 },
	{ "a range ending in a word", "5.7.1-x", -1 },
};

static void test_check_pattern(void **state)
{
	char longpat[GWREFUSE_PATTERN_MAX + 2];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(pattern_rows) / sizeof(pattern_rows[0]); i++) {
		const struct pattern_row *r = &pattern_rows[i];
		why = NULL;
		int got = gwrefuse_check_pattern(r->pat, &why);
		if (got != r->want)
			fail_msg("%s (\"%s\"): got %d, want %d", r->label, r->pat, got, r->want);
		if (got != 0 && (why == NULL || why[0] == '\0'))
			fail_msg("%s: no reason", r->label);
	}
	memset(longpat, 'a', sizeof(longpat) - 1);
	longpat[GWREFUSE_PATTERN_MAX] = '\0';
	assert_int_equal(gwrefuse_check_pattern(longpat, &why), 0);
	longpat[GWREFUSE_PATTERN_MAX] = 'a';
	longpat[GWREFUSE_PATTERN_MAX + 1] = '\0';
	assert_int_equal(gwrefuse_check_pattern(longpat, &why), -1);
	/* the built-in ones pass the operator's check */
	for (size_t i = 0; gwrefuse_builtin[i]; i++)
		assert_int_equal(gwrefuse_check_pattern(gwrefuse_builtin[i], &why), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_match_no_extra),
		cmocka_unit_test(test_check_pattern),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
