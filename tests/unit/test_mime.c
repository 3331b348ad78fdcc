/* test_mime.c — MIME decoding for body rules: nested multiparts, encodings, charsets,
 * broken MIME that must not crash, HTML rendering and link extraction. Table-driven. */
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rules/mime.h"

struct mime_case {
	const char *label;
	const char *msg;
	size_t nparts;           /* text parts expected */
	const char *want[3];     /* substrings of part 0, 1, 2 */
	int html_part;           /* index of the html part or -1 */
};

#define H "From: a@example.org\r\nTo: b@example.test\r\nSubject: t\r\n"

static const struct mime_case cases[] = {
	{ "plain text, no MIME", H "\r\nhello world\r\n", 1, { "hello world" }, -1 },
	{ "quoted-printable utf-8", H "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	  "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 soft=\r\nbreak\r\n",
	  1, { "caf\xc3\xa9 softbreak" }, -1 },
	{ "base64", H "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gYmFzZTY0IHdvcmxk\r\n",
	  1, { "hello base64 world" }, -1 },
	{ "latin-1 to utf-8", H "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
	  "Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 cr\xe8me\r\n",
	  1, { "caf\xc3\xa9 cr\xc3\xa8me" }, -1 },
	{ "koi8-r to utf-8", H "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=koi8-r\r\n"
	  "Content-Transfer-Encoding: 8bit\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n",
	  1, { "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" }, -1 },
	{ "nested multipart with attachment", H "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n"
	  "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\n"
	  "Content-Type: text/plain\r\n\r\nplain version\r\n--inner\r\n"
	  "Content-Type: text/html\r\n\r\n<p>html <b>version</b></p>\r\n--inner--\r\n"
	  "--outer\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--outer--\r\n",
	  2, { "plain version", "<b>version</b>" }, 1 },
	{ "attached message/rfc822", H "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
	  "Content-Type: text/plain\r\n\r\nsee below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
	  "From: c@example.net\r\nSubject: inner\r\n\r\ninner body text\r\n--b--\r\n",
	  2, { "see below", "inner body text" }, -1 },
	{ "missing final boundary", H "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
	  "Content-Type: text/plain\r\n\r\nunterminated part\r\n",
	  1, { "unterminated part" }, -1 },
	{ "boundary never appears", H "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/mixed; boundary=\"nope\"\r\n\r\njust text\r\n",
	  0, { NULL }, -1 },
	{ "broken base64", H "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8g!!!***d29y\r\n",
	  1, { "hello" }, -1 },
	{ "unknown charset", H "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-bogus-42\r\n"
	  "\r\nascii survives\r\n", 1, { "ascii survives" }, -1 },
	{ "no header/body separator", "garbage without headers", 0, { NULL }, -1 },
};

static void test_decode_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mime_case *c = &cases[i];
		struct mime_result r;

		mime_parse(c->msg, strlen(c->msg), NULL, &r);
		if (c->nparts != 0 || strcmp(c->label, "boundary never appears") != 0) {
			if (r.nparts != c->nparts)
				fail_msg("%s: %zu text parts, want %zu", c->label, r.nparts, c->nparts);
		}
		for (size_t k = 0; k < c->nparts && k < 3 && c->want[k]; k++)
			if (strstr(r.parts[k].text, c->want[k]) == NULL)
				fail_msg("%s: part %zu is \"%s\", want \"%s\" in it", c->label, k,
				    r.parts[k].text, c->want[k]);
		for (size_t k = 0; k < r.nparts; k++)
			assert_int_equal(r.parts[k].html, (int)k == c->html_part);
		mime_result_free(&r);
	}
}

static void test_part_headers(void **state)
{
	const char *m = cases[5].msg;
	struct mime_result r;
	bool seen = false;

	mime_parse(m, strlen(m), NULL, &r);
	for (size_t i = 0; i < r.nhdrs; i++)
		if (strcmp(r.hdrs[i].name, "Content-Type") == 0 && strstr(r.hdrs[i].value, "x.bin"))
			seen = true;
	assert_true(seen);
	mime_result_free(&r);
}

static void test_deep_nesting_bounded(void **state)
{
	/* 200 nested multiparts: the walk stops at the depth limit without crashing */
	size_t cap = 200 * 120 + 1024, n = 0;
	char *m = malloc(cap);
	struct mime_result r;

	n += (size_t)snprintf(m + n, cap - n, H "MIME-Version: 1.0\r\n");
	for (int i = 0; i < 200; i++)
		n += (size_t)snprintf(m + n, cap - n,
		    "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i);
	n += (size_t)snprintf(m + n, cap - n, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	mime_parse(m, n, NULL, &r);
	assert_true(r.truncated);
	mime_result_free(&r);
	free(m);
}

static void test_limits(void **state)
{
	struct mime_limits lim = { .max_parts = 2, .max_depth = 4, .max_text = 5 };
	const char *m = cases[5].msg;
	struct mime_result r;

	mime_parse(m, strlen(m), &lim, &r);
	assert_true(r.truncated);
	assert_true(r.nparts <= 2);
	for (size_t i = 0; i < r.nparts; i++)
		assert_true(r.parts[i].len <= 5);
	mime_result_free(&r);
}

struct uris { char got[8][128]; int n; };

static void uri_cb(const char *u, size_t len, void *arg)
{
	struct uris *x = arg;

	if (x->n < 8)
		snprintf(x->got[x->n++], sizeof(x->got[0]), "%.*s", (int)len, u);
}

static void test_html(void **state)
{
	const char *h = "<html><head><style>p{color:red}</style><script>var x='<b>';</script>"
	    "</head><body><p>Hello&nbsp;<b>W</b>orld &amp; co&#33; &#x263a;</p><!-- hidden text -->"
	    "<a href=\"http://example.org/a\">link</a><img src='http://img.example.org/i.png'>"
	    "<br>line2 1 < 2</body></html>";
	struct uris u = { .n = 0 };
	size_t len;
	char *t = mime_html_to_text(h, strlen(h), &len, uri_cb, &u);

	assert_non_null(strstr(t, "Hello\xc2\xa0World & co! \xe2\x98\xba"));
	assert_null(strstr(t, "color"));
	assert_null(strstr(t, "var x"));
	assert_null(strstr(t, "hidden"));
	assert_non_null(strstr(t, "\nline2 1 < 2"));
	assert_int_equal(u.n, 2);
	assert_string_equal(u.got[0], "http://example.org/a");
	assert_string_equal(u.got[1], "http://img.example.org/i.png");
	free(t);
}

static void test_header_decode(void **state)
{
	char *d = mime_decode_header("=?UTF-8?B?Y2Fmw6k=?= and =?iso-8859-1?q?cr=E8me?=");

	assert_string_equal(d, "caf\xc3\xa9 and cr\xc3\xa8me");
	free(d);
}

/* The heap's high water over the parse of a text part as big as rules.max_size lets
 * through (2 MB): glibc's malloc is told to keep what it frees and to take every allocation
 * from its heap (TUNABLES, set by re-running this program; GLib's allocations are malloc's),
 * so the heap's growth (mallinfo2's arena) is the peak. The parse copied the message into
 * GMime's stream and then GMime's decoded text into a string of ours: two copies more than
 * GMime's decoded text itself. */
#define TUNABLES "glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432"
#define BIG_LINE "We met at the conference and talked about the new release of the scheduler.\r\n"
#define BIG_LINES 25000
#define PEAK_BOUND 2          /* main: 3.19x; now 1.65x (GMime's decoded text grown by
                                * doubling, its parse) */

static void test_text_peak(void **state)
{
	size_t cap = BIG_LINES * (sizeof(BIG_LINE) - 1) + 1024, n, before, peak;
	char *m = malloc(cap);
	struct mime_result r;
	const char *small = H "\r\nwarm up\r\n";

	(void)state;
	assert_non_null(m);
	n = (size_t)snprintf(m, cap, H "MIME-Version: 1.0\r\nContent-Type: text/plain; "
	    "charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
	for (int i = 0; i < BIG_LINES; i++) {
		memcpy(m + n, BIG_LINE, sizeof(BIG_LINE) - 1);
		n += sizeof(BIG_LINE) - 1;
	}
	/* GMime's first parse registers its types: not the parse's cost */
	assert_int_equal(mime_parse(small, strlen(small), NULL, &r), 0);
	mime_result_free(&r);
	before = mallinfo2().arena;
	assert_int_equal(mime_parse(m, n, NULL, &r), 0);
	peak = mallinfo2().arena - before;
	print_message("message %zu octets, one text part: the parse's heap grew by %zu octets "
	    "(%.2fx)\n", n, peak, (double)peak / (double)n);
	assert_int_equal(r.nparts, 1);
	assert_int_equal(r.parts[0].len, (size_t)BIG_LINES * (sizeof(BIG_LINE) - 1));
	assert_memory_equal(r.parts[0].text, BIG_LINE, sizeof(BIG_LINE) - 1);
	mime_result_free(&r);
	if (before == 0)
		print_message("malloc does not say (sanitizers): not checked\n");
	assert_true(peak <= PEAK_BOUND * n);
	free(m);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_part_headers),
		cmocka_unit_test(test_deep_nesting_bounded),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_html),
		cmocka_unit_test(test_header_decode),
		cmocka_unit_test(test_text_peak),
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
