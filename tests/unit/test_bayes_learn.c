/* test_bayes_learn.c — `mxgate learn`'s input side (rules/bayes_learn.c) into a memory
 * store: mbox files split where SpamAssassin's ArchiveIterator splits them (a From_ line
 * with a date, with or without a blank line before it; a body paragraph starting "From "
 * is not a separator), CRLF mbox files, a last message without a newline, empty files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/bayes.h"
#include "rules/bayes_learn.h"

static struct bayes *open_memory(void)
{
	struct bayes_config c = { .enabled = true, .store = "memory", .min_spam = 1,
		.min_ham = 1 };
	char err[128];
	struct bayes *b = bayes_open(&c, err, sizeof(err));

	assert_non_null(b);
	return b;
}

/* Learns buf as spam into a fresh store; the counts. */
static struct bayes_learn_counts learn_buf(const char *buf)
{
	struct bayes *b = open_memory();
	struct bayes_learn_counts n = { 0 };

	bayes_learn_buffer(b, BAYES_SPAM, buf, strlen(buf), 0, "test", NULL, &n);
	bayes_free(b);
	return n;
}

#define FROM1 "From sender@example.org  Mon Jan  1 00:00:01 2024\n"
#define FROM2 "From other@example.org Tue Jan  2 10:00:00 2024\n"
#define MSG(id, body) "From: a@example.org\nSubject: s\nMessage-ID: <" id "@t>\n\n" body

static void test_mbox_split(void **state)
{
	struct bayes_learn_counts n;

	/* the plain case: blank line, From_ line */
	n = learn_buf(FROM1 MSG("a", "one\n\n") FROM2 MSG("b", "two\n"));
	assert_int_equal(n.learned, 2);
	/* a paragraph starting "From " (an mbox writer that did not quote it) is body text */
	n = learn_buf(FROM1 MSG("c", "Hello\n\nFrom the desk of Dr. Smith\nmoney\n\n")
	    FROM2 MSG("d", "two\n"));
	assert_int_equal(n.learned, 2);
	assert_int_equal(n.errors, 0);
	/* no blank line before the next From_ line: SpamAssassin splits there too */
	n = learn_buf(FROM1 MSG("e", "five\n") FROM2 MSG("f", "six\n"));
	assert_int_equal(n.learned, 2);
	/* the last message without a final newline */
	n = learn_buf(FROM1 MSG("g", "seven\n\n") FROM2 MSG("h", "eight, no newline"));
	assert_int_equal(n.learned, 2);
	/* CRLF line ends */
	n = learn_buf("From x@example.org  Mon Jan  1 00:00:01 2024\r\nFrom: a@example.org\r\n"
	    "Message-ID: <i@t>\r\n\r\nnine\r\n\r\nFrom y@example.org  Mon Jan  1 00:00:02 2024\r\n"
	    "From: a@example.org\r\nMessage-ID: <j@t>\r\n\r\nten");
	assert_int_equal(n.learned, 2);
	/* one message with a From_ line, and one without */
	n = learn_buf(FROM1 MSG("k", "eleven\n"));
	assert_int_equal(n.learned, 1);
	n = learn_buf(MSG("l", "twelve\nFrom me to you\n"));
	assert_int_equal(n.learned, 1);
	/* nothing */
	n = learn_buf("");
	assert_int_equal(n.learned + n.already + n.errors, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mbox_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
