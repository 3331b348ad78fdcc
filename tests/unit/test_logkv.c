/* test_logkv.c — a log line's key=value text back into fields (logkv_parse) and as one JSON
 * object (logkv_json, log.format: json), and log_event's JSON lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "logkv.h"

static char *json_of(const char *id, const char *text)
{
	struct strbuf b = { 0 };

	logkv_json(&b, "2026-12-07T02:30:00.000Z", "info", id, text, strlen(text));
	return b.v;
}

static void test_json_rows(void **state)
{
	const struct { const char *label, *id, *text, *json; } rows[] = {
		{ "plain fields, a number", "7f3a21", "event=reject stage=rcpt code=550 list=bl.test",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"7f3a21\","
		  "\"event\":\"reject\",\"stage\":\"rcpt\",\"code\":550,\"list\":\"bl.test\"}" },
		{ "process event: no session", "-", "event=reload ok=1",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"event\":\"reload\",\"ok\":\"1\"}" },
		{ "quoted value with escapes", "a", "event=x reason=\"a \\\"b\\\" \\\\ c\\r\\n\\t\\x01\"",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"reason\":\"a \\\"b\\\" \\\\ c\\r\\n\\t\\u0001\"}" },
		{ "quoted number stays a string", "a", "event=x n=\"12\"",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\",\"n\":\"12\"}" },
		{ "a peer's text that looks numeric", "a", "event=x helo=123 queue_id=0042 score=-2.5 lead=007",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"helo\":\"123\",\"queue_id\":\"0042\",\"score\":-2.5,\"lead\":\"007\"}" },
		{ "a number only for the numeric keys: an all-digit queue id stays a string", "a",
		  "event=delivered backend_queue_id=12345 size=300 latency_us=7",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"delivered\","
		  "\"backend_queue_id\":\"12345\",\"size\":300,\"latency_us\":7}" },
		{ "the number keys' first, last and middle (their table is searched: sorted)", "a",
		  "event=x accept_domains=1 workers=2 generation=3 waited_ms=4",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"accept_domains\":1,\"workers\":2,\"generation\":3,\"waited_ms\":4}" },
		{ "repeated key: an array", "a", "event=x rcpt=<a@b> n=1 rcpt=<c@d> rcpt=3",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"rcpt\":[\"<a@b>\",\"<c@d>\",\"3\"],\"n\":\"1\"}" },
		{ "field without a value", "a", "event=x empty= quoted=\"\"",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"empty\":\"\",\"quoted\":\"\"}" },
		{ "unquoted value with blanks (strerror)", "a", "event=x reason=Permission denied store=lmdb:/x",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"reason\":\"Permission denied\",\"store\":\"lmdb:/x\"}" },
		{ "words with no key", "a", "warning: a text event=x",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"unparsed\":\"warning: a text\"}" },
		{ "reserved names", "a", "event=x level=3 ts=now session=s",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"field_level\":\"3\",\"field_ts\":\"now\",\"field_session\":\"s\"}" },
		{ "quote cut at the end of the line", "a", "event=x reason=\"abc...",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"reason\":\"abc...\"}" },
		{ "escape of a stray octet", "a", "event=x v=\"j\\xf6rg\"",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"v\":\"j\xef\xbf\xbdrg\"}" },
		{ "address in quotes", "a", "event=x from=\"<\\\"a b\\\"@b.example>\"",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"from\":\"<\\\"a b\\\"@b.example>\"}" },
		{ "UTF-8 stays", "a", "event=x helo=j\xc3\xb6rg",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"helo\":\"j\xc3\xb6rg\"}" },
		{ "double blanks", "a", "event=x  a=1   size=2 ",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\",\"event\":\"x\","
		  "\"a\":\"1\",\"size\":2}" },
		{ "empty text", "a", "",
		  "{\"ts\":\"2026-12-07T02:30:00.000Z\",\"level\":\"info\",\"session\":\"a\"}" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *j = json_of(rows[i].id, rows[i].text);
		if (strcmp(j, rows[i].json) != 0)
			fail_msg("%s: got %s", rows[i].label, j);
		free(j);
	}
}

/* Every value log_val writes parses back to itself. */
static void test_roundtrip(void **state)
{
	const char *vals[] = { "a@b.example", "", "a b", "k=v", "a\r\nb\tc\x01", "\"q\" \\ x",
		"j\xc3\xb6rg", "x\"y", "=", "\"", "\\", "\\x41", "a  b" };

	(void)state;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char v[256], text[300], scratch[300];
		struct logkv_field f[4];
		const char *rest;
		size_t rl, n;

		snprintf(text, sizeof(text), "event=x k=%s z=1", log_val(v, sizeof(v), vals[i]));
		n = logkv_parse(text, strlen(text), f, 4, scratch, sizeof(scratch), &rest, &rl);
		assert_int_equal(n, 3);
		assert_null(rest);
		assert_int_equal(f[1].klen, 1);
		assert_memory_equal(f[1].key, "k", 1);
		if (f[1].vlen != strlen(vals[i]) || memcmp(f[1].val, vals[i], f[1].vlen) != 0)
			fail_msg("value %zu: %s came back as %.*s", i, text, (int)f[1].vlen, f[1].val);
		assert_int_equal(f[2].vlen, 1);
	}
}

/* Past LOGKV_MAX fields the rest of the text is kept, in "unparsed". */
static void test_many_fields(void **state)
{
	char text[LOGKV_MAX * 8 + 64], *j;
	size_t k = 0;

	(void)state;
	k += (size_t)sprintf(text, "event=many");
	for (int i = 0; i < LOGKV_MAX + 5; i++)
		k += (size_t)sprintf(text + k, " k%d=%d", i, i);
	j = json_of("a", text);
	assert_non_null(strstr(j, "\"k126\":\"126\","));
	assert_null(strstr(j, "\"k127\":"));
	assert_non_null(strstr(j, "\"unparsed\":\"k127=127 k128=128 k129=129 k130=130 k131=131 k132=132\"}"));
	free(j);
}

/* log_event with log.format json: one JSON object a line, the same fields. */
static void test_log_event_json(void **state)
{
	char path[] = "/tmp/test_logkv.XXXXXX", line[4096];
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	log_set_format(LOG_FORMAT_JSON);
	log_event(LOG_LVL_WARNING, "0a0b0c", "event=t entries=%d reason=%s", 7, "\"x\ny\"");
	log_event(LOG_LVL_INFO, NULL, "event=p");
	log_set_format(LOG_FORMAT_TEXT);
	log_event(LOG_LVL_INFO, NULL, "event=q");
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(line[0], '{');
	assert_non_null(strstr(line, "Z\",\"level\":\"warning\",\"session\":\"0a0b0c\",\"event\":\"t\",\"entries\":7,"
	    "\"reason\":\"x\\ny\"}\n"));
	assert_non_null(fgets(line, sizeof(line), f));
	assert_non_null(strstr(line, "Z\",\"level\":\"info\",\"event\":\"p\"}\n"));
	assert_non_null(fgets(line, sizeof(line), f));
	assert_non_null(strstr(line, "Z info - event=q\n"));
	assert_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_rows),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_many_fields),
		cmocka_unit_test(test_log_event_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
