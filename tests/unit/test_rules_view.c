/* test_rules_view.c — rules/rules_view.c: what building a message's body views costs in
 * memory at its peak, for a message as big as rules.max_size lets through (2 MB).
 *
 * The peak of a scan is a moment: glibc's malloc is told to keep what it frees and to take
 * every allocation from its heap (GLIBC_TUNABLES, set by re-running this program), so the
 * heap's size (mallinfo2's arena) only grows: its growth over a scan is the scan's high
 * water. A small message first: the rule set's and the scratch's first allocations. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rules/rules.h"

#define TUNABLES "glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432"
#define LINE "We met at the conference and talked about the new release of the scheduler.\r\n"
#define NLINES 25000           /* about 2 MB */
#define HTML_LINE "<p>We met at the <b>conference</b> and talked about the scheduler.</p>\r\n"
#define HTML_PEAK_BOUND 12     /* quarters of the message: main 3.25x, now 2.84x (the peak is
                                * now the body views', no longer HTMLEval's copies) */
#define NPARTS 40              /* text/html parts of PART_LINES lines: about 2 MB */
#define PART_LINES 600         /* about 47 kB a part, its rendering under 50000 characters */
#define HTML_PARTS_PEAK_BOUND 10   /* quarters of the message: main 3.96x, now 2.36x */
#define SMALL_PARTS 999        /* text/html parts of a few octets: SAMSG_MAX_PARTS with the root */
#define SMALL_PARTS_PEAK_BOUND 100 /* times the message: main 1683x (103 MB), now none beyond
                                    * what the heap held free from the scans before */

static char *big_message_typed(size_t *len, const char *type, const char *line, const char *cte)
{
	size_t ll = strlen(line), cap = NLINES * ll + 1024, n;
	char *m = malloc(cap);

	assert_non_null(m);
	n = (size_t)snprintf(m, cap, "From: a@example.org\r\nTo: b@example.test\r\nSubject: notes\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: %s; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: %s\r\n\r\n", type, cte);
	for (int i = 0; i < NLINES; i++) {
		memcpy(m + n, line, ll);
		n += ll;
	}
	*len = n;
	return m;
}

static char *big_message(size_t *len, const char *cte)
{
	return big_message_typed(len, "text/plain", LINE, cte);
}

static size_t heap_size(void)
{
	return mallinfo2().arena;
}

#define HTML_SMALL "Subject: hi\r\nContent-Type: text/html\r\n\r\n<p>conference</p>\r\n"

/* Scans MSG after a warm-up scan of SMALL (so the scratch and the rule set's lazy parts are
 * made), both rules of one set; prints and returns how much the heap grew during MSG's scan.
 * Both rules hit, unless the 5 s budget of a scan ran out first (a slow sanitized build on a
 * busy machine): then the rules left are unknown, what is measured is still the peak of
 * everything the scan built. */
static size_t scan_peak(const char *msg, size_t len, const char *small, const char *what)
{
	static const char rules[] = "body NOTES /conference/\nrawbody RAW_NOTES /scheduler/\n";
	struct rules_set *rs;
	struct rules_scratch *sc;
	struct rules_result res;
	size_t before, peak;

	assert_int_equal(rules_set_load_text("t.cf", rules, strlen(rules), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	assert_non_null(sc);
	rules_set_scan(rs, sc, small, strlen(small), NULL, NULL, 0, &res);
	rules_result_free(&res);
	before = heap_size();
	rules_set_scan(rs, sc, msg, len, NULL, NULL, 0, &res);
	peak = heap_size() - before;
	print_message("message %zu octets, %s: the scan's heap grew by %zu octets (%.2fx)%s\n",
	    len, what, peak, (double)peak / (double)len,
	    res.over_budget ? ", over the scan budget" : "");
	if (!res.over_budget)
		assert_int_equal(res.n, 2);
	rules_result_free(&res);
	if (before == 0)
		print_message("malloc does not say (sanitizers): not checked\n");
	rules_scratch_free(sc);
	rules_set_free(rs);
	return peak;
}

/* One text/plain part without a transfer encoding: the views read its octets where the
 * parse has them; its decoded copy (the same octets) was a whole part more. */
static void test_body_peak(void **state)
{
	size_t len;
	char *msg = big_message(&len, "7bit");
	size_t peak = scan_peak(msg, len,
	    "Subject: hi\r\nContent-Type: text/plain\r\n\r\nconference\r\n", "one text part");

	(void)state;
	/* the parse's copy (CRLF as LF) and what the views are made with (session 24's main:
	 * 2.26x, with a decoded copy of the part besides; then 1.27x with the part normalized
	 * into a copy, ASCII as it was; now 0.18x: the heap held 3.2 MB free from the rule
	 * set's compilation when the scan began, the growth is the peak beyond that) */
	assert_true(peak <= len);
	free(msg);
}

/* One text/html part without a transfer encoding, ASCII: HTMLEval's analysis decoded it
 * (a copy of the part) and normalized that (another), beside the body views' reading of
 * it; now it reads the part where the parse has it, as the views do. */
static void test_html_peak(void **state)
{
	size_t len;
	char *msg = big_message_typed(&len, "text/html", HTML_LINE, "7bit");
	size_t peak = scan_peak(msg, len, HTML_SMALL, "one HTML part");

	(void)state;
	assert_true(peak <= HTML_PEAK_BOUND * len / 4);
	free(msg);
}

/* Many text/html parts of text, ASCII, each under body_part_scan_size: the body text joined
 * from their renderings is about the message's size (one HTML part gives at most 50000
 * characters of it). It was copied whole to turn it into a byte string (Latin-1); now it is
 * turned over itself. That copy did not set the peak: it replaced the text, which was freed,
 * before the body views were built, and the peak is while they are built (the body and
 * rawbody lines, the renderings HTMLEval keeps, the text they are made from): 3.96x with
 * the copy and without it. Now the body lines are cut from the renderings where HTMLEval
 * keeps them, piece by piece, and no joined text is made: 2.36x (the body and rawbody
 * lines, the renderings). This guards the peak of a message of many HTML parts. */
static void test_html_parts_peak(void **state)
{
	size_t ll = strlen(LINE), cap = NPARTS * (PART_LINES * ll + 128) + 1024, len, peak;
	char *msg = malloc(cap);

	(void)state;
	assert_non_null(msg);
	len = (size_t)snprintf(msg, cap, "From: a@example.org\r\nTo: b@example.test\r\n"
	    "Subject: notes\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
	    "\r\n");
	for (int i = 0; i < NPARTS; i++) {
		len += (size_t)snprintf(msg + len, cap - len, "--b\r\nContent-Type: text/html; "
		    "charset=us-ascii\r\n\r\n");
		for (int k = 0; k < PART_LINES; k++) {
			memcpy(msg + len, LINE, ll);
			len += ll;
		}
	}
	len += (size_t)snprintf(msg + len, cap - len, "--b--\r\n");
	peak = scan_peak(msg, len, HTML_SMALL, "many HTML parts");
	assert_true(peak <= HTML_PARTS_PEAK_BOUND * len / 4);
	free(msg);
}

/* As many text/html parts as a message may have, each a few octets: HTMLEval's analyses
 * (one struct html_result a part, 232 octets) were kept in an array grown by one for each
 * part, each growth a new copy in the message's arena, all kept until the scan's end: the
 * sum of the copies, about 116 MB for a message of 61 kB. Now the array is sized once, for
 * the message's HTML parts. */
static void test_many_html_parts_peak(void **state)
{
	size_t cap = SMALL_PARTS * 64 + 1024, len, peak;
	char *msg = malloc(cap);

	(void)state;
	assert_non_null(msg);
	len = (size_t)snprintf(msg, cap, "From: a@example.org\r\nTo: b@example.test\r\n"
	    "Subject: notes\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
	    "\r\n");
	for (int i = 0; i < SMALL_PARTS; i++)
		len += (size_t)snprintf(msg + len, cap - len, "--b\r\nContent-Type: text/html\r\n\r\n"
		    "<p>conference scheduler</p>\r\n");
	len += (size_t)snprintf(msg + len, cap - len, "--b--\r\n");
	peak = scan_peak(msg, len, HTML_SMALL, "many small HTML parts");
	assert_true(peak <= SMALL_PARTS_PEAK_BOUND * len);
	free(msg);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_peak),
		cmocka_unit_test(test_html_peak),
		cmocka_unit_test(test_html_parts_peak),
		cmocka_unit_test(test_many_html_parts_peak),
	};
	const char *t = getenv("GLIBC_TUNABLES");

	(void)argc;
	if (t == NULL || strcmp(t, TUNABLES) != 0) {
		/* malloc reads its tunables at start: run again with them */
		setenv("GLIBC_TUNABLES", TUNABLES, 1);
		execv("/proc/self/exe", argv);
		perror("execv /proc/self/exe");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
