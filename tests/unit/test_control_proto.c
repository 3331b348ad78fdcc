/* test_control_proto.c — the control socket's request parser and reply-head parser:
 * words and options, split reads, bodies, limits, bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/control_proto.h"

/* Feeds text in chunks of step octets; returns the status of the last feed and the total used. */
static enum ctl_parse_status feed_steps(struct ctl_parser *p, const char *text, size_t len, size_t step,
    size_t *total)
{
	enum ctl_parse_status st = CTL_NEED_MORE;
	size_t off = 0;

	while (off < len) {
		size_t n = len - off < step ? len - off : step, used = 0;
		st = ctl_parser_feed(p, text + off, n, &used);
		off += used;
		if (st != CTL_NEED_MORE)
			break;
	}
	*total = off;
	return st;
}

static void test_table(void **state)
{
	static const struct {
		const char *label, *in;
		int status;            /* CTL_REQUEST / CTL_NEED_MORE / CTL_BAD */
		int argc;
		const char *argv0, *argv1;
		bool json;
	} rows[] = {
		{ "plain word", "status\n", CTL_REQUEST, 1, "status", NULL, false },
		{ "CRLF", "status\r\n", CTL_REQUEST, 1, "status", NULL, false },
		{ "two words, extra blanks", "  drain \t smtp://127.0.0.1:25  \n", CTL_REQUEST, 2, "drain", "smtp://127.0.0.1:25", false },
		{ "json anywhere", "top --json clients\n", CTL_REQUEST, 2, "top", "clients", true },
		{ "empty lines skipped", "\n\r\n\nbackends\n", CTL_REQUEST, 1, "backends", NULL, false },
		{ "incomplete", "stat", CTL_NEED_MORE, 0, NULL, NULL, false },
		{ "only options", "--json\n", CTL_BAD, 0, NULL, NULL, false },
		{ "unknown option", "status --yaml\n", CTL_BAD, 0, NULL, NULL, false },
		{ "NUL byte", "sta\0tus\n", CTL_BAD, 0, NULL, NULL, false },
		{ "high byte", "st\xc3\xa4tus\n", CTL_BAD, 0, NULL, NULL, false },
		{ "stray CR", "sta\rtus\n", CTL_BAD, 0, NULL, NULL, false },
		{ "two CRs", "status\r\r\n", CTL_BAD, 0, NULL, NULL, false },
		{ "bad length", "learn spam --length=x\n", CTL_BAD, 0, NULL, NULL, false },
		{ "negative length", "learn spam --length=-1\n", CTL_BAD, 0, NULL, NULL, false },
		{ "length too big", "learn spam --length=999999999999\n", CTL_BAD, 0, NULL, NULL, false },
		{ "length twice", "learn --length=1 --length=1\nx", CTL_BAD, 0, NULL, NULL, false },
		{ "zero length body", "learn ham --length=0\n", CTL_REQUEST, 2, "learn", "ham", false },
		{ "17 words", "a b c d e f g h i j k l m n o p q\n", CTL_BAD, 0, NULL, NULL, false },
		{ "16 words", "a b c d e f g h i j k l m n o p\n", CTL_REQUEST, 16, "a", "b", false },
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		size_t len = strlen(rows[r].in);
		if (strcmp(rows[r].label, "NUL byte") == 0)
			len = 8;
		for (size_t step = 1; step <= len; step = step * 2 + 1) {
			struct ctl_parser p;
			size_t used;
			ctl_parser_init(&p);
			enum ctl_parse_status st = feed_steps(&p, rows[r].in, len, step, &used);
			if ((int)st != rows[r].status)
				fail_msg("row \"%s\" step %zu: status %d, want %d (%s)", rows[r].label, step, st,
				    rows[r].status, p.err ? p.err : "");
			if (st == CTL_REQUEST) {
				if (p.req.argc != rows[r].argc || strcmp(p.req.argv[0], rows[r].argv0) != 0 ||
				    (rows[r].argv1 && strcmp(p.req.argv[1], rows[r].argv1) != 0) ||
				    p.req.json != rows[r].json)
					fail_msg("row \"%s\" step %zu: parsed wrong", rows[r].label, step);
				if (used != len)
					fail_msg("row \"%s\": used %zu of %zu", rows[r].label, used, len);
			}
			if (st == CTL_BAD && p.err == NULL)
				fail_msg("row \"%s\": no reason", rows[r].label);
			ctl_parser_reset(&p);
		}
	}
}

static void test_line_limit(void **state)
{
	char line[CTL_MAX_LINE + 2];
	struct ctl_parser p;
	size_t used;

	/* exactly at the limit: CTL_MAX_LINE octets including the LF */
	memset(line, 'a', CTL_MAX_LINE - 1);
	line[CTL_MAX_LINE - 1] = '\n';
	ctl_parser_init(&p);
	assert_int_equal(ctl_parser_feed(&p, line, CTL_MAX_LINE, &used), CTL_REQUEST);
	assert_int_equal(strlen(p.req.argv[0]), CTL_MAX_LINE - 1);
	ctl_parser_reset(&p);
	/* one over */
	memset(line, 'a', CTL_MAX_LINE);
	line[CTL_MAX_LINE] = '\n';
	assert_int_equal(ctl_parser_feed(&p, line, CTL_MAX_LINE + 1, &used), CTL_BAD);
	assert_string_equal(p.err, "line too long");
	/* stays bad */
	assert_int_equal(ctl_parser_feed(&p, "status\n", 7, &used), CTL_BAD);
	ctl_parser_reset(&p);
}

static void test_body_and_pipelining(void **state)
{
	const char in[] = "learn spam --length=11\nFrom: x\r\n\r\nstatus --json\n";
	struct ctl_parser p;
	size_t used, off = 0;

	for (size_t step = 1; step <= sizeof(in); step++) {
		ctl_parser_init(&p);
		off = 0;
		enum ctl_parse_status st = feed_steps(&p, in, sizeof(in) - 1, step, &used);
		assert_int_equal(st, CTL_REQUEST);
		assert_int_equal(p.req.argc, 2);
		assert_string_equal(p.req.argv[1], "spam");
		assert_int_equal(p.req.body_len, 11);
		assert_memory_equal(p.req.body, "From: x\r\n\r\n", 11);
		off = used;
		ctl_parser_reset(&p);
		st = feed_steps(&p, in + off, sizeof(in) - 1 - off, step, &used);
		assert_int_equal(st, CTL_REQUEST);
		assert_string_equal(p.req.argv[0], "status");
		assert_true(p.req.json);
		assert_null(p.req.body);
		assert_int_equal(off + used, sizeof(in) - 1);
		ctl_parser_reset(&p);
	}
	/* a request stays reported until reset */
	ctl_parser_init(&p);
	assert_int_equal(ctl_parser_feed(&p, "a\nb\n", 4, &used), CTL_REQUEST);
	assert_int_equal(used, 2);
	assert_int_equal(ctl_parser_feed(&p, "b\n", 2, &used), CTL_REQUEST);
	assert_int_equal(used, 0);
	assert_string_equal(p.req.argv[0], "a");
	ctl_parser_reset(&p);
}

static void test_reply_head(void **state)
{
	static const struct { const char *label, *in; int rc; bool ok; size_t len, head; } rows[] = {
		{ "ok", "OK 12\nhello", 1, true, 12, 6 },
		{ "err", "ERR 0\n", 1, false, 0, 6 },
		{ "incomplete", "OK 1", 0, false, 0, 0 },
		{ "no number", "OK \n", -1, false, 0, 0 },
		{ "lower case", "ok 1\n", -1, false, 0, 0 },
		{ "sign", "OK -1\n", -1, false, 0, 0 },
		{ "huge", "OK 99999999999999999999\n", -1, false, 0, 0 },
		{ "no LF within 32", "OK 1111111111111111111111111111111111", -1, false, 0, 0 },
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		bool ok = false;
		size_t len = 0, head = 0;
		int rc = ctl_reply_parse_head(rows[r].in, strlen(rows[r].in), &ok, &len, &head);
		if (rc != rows[r].rc || (rc == 1 && (ok != rows[r].ok || len != rows[r].len || head != rows[r].head)))
			fail_msg("row \"%s\": rc %d ok %d len %zu head %zu", rows[r].label, rc, ok, len, head);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_body_and_pipelining),
		cmocka_unit_test(test_reply_head),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
