/* test_samsg.c — rules/samsg.c, SpamAssassin's MIME parse: what a parse keeps in memory
 * for nested messages (message/rfc822), and that parsing them where their octets are gives
 * the tree the copying parse gives; and that a part of many header fields, or a message of
 * many parts, costs few reallocs. */
#include <malloc.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rules/samsg.h"

#define LEVELS 19               /* + the innermost: 20 nested messages, SA's limit */
#define LINES 4000
#define LINE "The quarterly figures are attached; see the second table for detail.\r\n"

struct text { char *p; size_t n, cap; };

static void text_add(struct text *t, const char *s, size_t n)
{
	if (t->n + n + 1 > t->cap) {
		t->cap = (t->n + n + 1) * 2;
		t->p = realloc(t->p, t->cap);
		assert_non_null(t->p);
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	t->p[t->n] = '\0';
}

static void text_put(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

/* A message (CRLF, as a message buffer holds it) of LEVELS message/rfc822 parts one inside
 * the other around a text part of LINES lines; cte: their Content-Transfer-Encoding. */
static struct text nested_message(const char *cte)
{
	struct text t = { 0 };
	char h[160];

	text_put(&t, "From: a@example.org\r\nTo: b@example.test\r\nSubject: nested\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n");
	if (cte) {
		snprintf(h, sizeof(h), "Content-Transfer-Encoding: %s\r\n", cte);
		text_put(&t, h);
	}
	text_put(&t, "\r\n");
	for (int k = 1; k <= LEVELS; k++) {
		snprintf(h, sizeof(h), "Subject: level %d\r\nContent-Type: message/rfc822\r\n%s%s%s\r\n",
		    k, cte ? "Content-Transfer-Encoding: " : "", cte ? cte : "", cte ? "\r\n" : "");
		text_put(&t, h);
	}
	text_put(&t, "Subject: inner\r\nContent-Type: text/plain\r\n\r\n");
	for (int i = 0; i < LINES; i++)
		text_put(&t, LINE);
	return t;
}

/* The bytes malloc gave out and not taken back (glibc): on its heap, and mapped apart. */
static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* 20 nested messages without a transfer encoding: each was decoded (a copy of the rest of
 * the message) and split (another copy), both kept until samsg_free: about 40 times the
 * message held by one scan. Now the top copy only. */
static void test_nested_memory(void **state)
{
	struct text t = nested_message(NULL);
	struct samsg m;
	size_t before, held;
	const struct samsg_part *in;

	(void)state;
	before = heap_in_use();
	samsg_parse(&m, t.p, t.n);
	held = heap_in_use() - before;
	print_message("message %zu octets, 20 nested messages: the parse holds %zu octets (%.1fx)\n",
	    t.n, held, (double)held / (double)t.n);
	assert_int_equal(m.nparts, LEVELS + 2);
	in = &m.parts[m.nparts - 1];
	assert_string_equal(in->type, "text/plain");
	assert_string_equal(samsg_header(in, "Subject"), "inner");
	assert_int_equal(in->depth, LEVELS + 1);
	assert_int_equal(in->nraw, LINES);
	for (size_t i = 0; i < in->nraw; i++) {
		assert_int_equal(in->raw[i].n, sizeof(LINE) - 2);
		assert_memory_equal(in->raw[i].p, LINE, sizeof(LINE) - 3);
		assert_int_equal(in->raw[i].p[sizeof(LINE) - 3], '\n');
	}
	/* the copy of the message (CRLF read as LF), the innermost part's line array (16
	 * octets a line), the parts' headers; the sanitizers' allocator says 0 */
	if (held == 0)
		print_message("malloc does not say what it holds (sanitizers): not checked\n");
	assert_true(held <= 2 * t.n);
	samsg_free(&m);
	free(t.p);
}

/* 20 nested messages, each quoted-printable (plain ASCII lines: valid quoted-printable as
 * they are): each level is decoded, a copy of the rest of the message kept until samsg_free,
 * about 20 times the message. Now the decoded levels stop at twice the message; the next
 * level stays a leaf (a message/rfc822 part with its raw lines, as SA leaves the level past
 * its 20th). */
static void test_nested_encoded_memory(void **state)
{
	struct text t = nested_message("quoted-printable");
	static const char one[] = "Subject: fwd\r\nContent-Type: message/rfc822\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nSubject: inner\r\n"
	    "Content-Type: text/plain\r\n\r\nthe forwarded text=\r\n, one line\r\n";
	struct samsg m;
	size_t before, held, leaves = 0;
	const struct samsg_part *last = NULL;

	(void)state;
	before = heap_in_use();
	samsg_parse(&m, t.p, t.n);
	held = heap_in_use() - before;
	print_message("message %zu octets, 20 nested quoted-printable messages: the parse holds "
	    "%zu octets (%.1fx), %zu parts\n", t.n, held, (double)held / (double)t.n, m.nparts);
	if (held == 0)
		print_message("malloc does not say what it holds (sanitizers): not checked\n");
	/* the copy of the message, two decoded levels; main: 20.6x */
	assert_true(held <= 4 * t.n);
	assert_true(m.nested_limit_exceeded);
	/* the top and two decoded levels (each about the message's size): the second one's
	 * body, a third, stays a leaf */
	assert_int_equal(m.nparts, 3);
	for (size_t i = 0; i < m.nparts; i++)
		if (m.parts[i].nkids == 0) {
			leaves++;
			last = &m.parts[i];
		}
	assert_int_equal(leaves, 1);
	assert_string_equal(last->type, "message/rfc822");
	assert_string_equal(samsg_header(last, "Subject"), "level 2");
	assert_true(last->nraw > LINES);
	samsg_free(&m);
	free(t.p);

	/* a forwarded message in quoted-printable: well under the bound, parsed */
	samsg_parse(&m, one, sizeof(one) - 1);
	assert_false(m.nested_limit_exceeded);
	assert_int_equal(m.nparts, 2);
	assert_string_equal(samsg_header(&m.parts[1], "Subject"), "inner");
	assert_string_equal(m.parts[1].type, "text/plain");
	assert_int_equal(m.parts[1].nraw, 1);
	assert_int_equal(m.parts[1].raw[0].n, strlen("the forwarded text, one line\n"));
	samsg_free(&m);
}

/* ------------------------------------------------ the same tree as the copying parse */

static void dump_add(struct text *d, const char *s, size_t n)
{
	char len[32];

	snprintf(len, sizeof(len), "%zu:", n);
	text_put(d, len);
	text_add(d, s ? s : "(null)", s ? n : 6);
	text_put(d, "|");
}

static void dump_str(struct text *d, const char *s)
{
	dump_add(d, s, s ? strlen(s) : 0);
}

/* Everything of m a reader sees, as one string. */
static struct text dump(const struct samsg *m)
{
	struct text d = { 0 };
	char f[160];

	snprintf(f, sizeof(f), "flags %d%d%d%d%d%d%d head_lines %zu parts %zu\n",
	    m->missing_head_body_separator, m->missing_mime_head_body_separator,
	    m->missing_mime_headers, m->mime_epilogue_exists, m->truncated_header,
	    m->mimepart_limit_exceeded, m->mime_missing_boundary, m->head_lines, m->nparts);
	text_put(&d, f);
	for (size_t i = 0; i < m->nparts; i++) {
		const struct samsg_part *p = &m->parts[i];

		snprintf(f, sizeof(f), "part %zu parent %d depth %d missing %d kids", i, p->parent,
		    p->depth, p->ct_missing);
		text_put(&d, f);
		for (size_t k = 0; k < p->nkids; k++) {
			snprintf(f, sizeof(f), " %d", p->kids[k]);
			text_put(&d, f);
		}
		text_put(&d, "\n");
		dump_str(&d, p->type);
		dump_str(&d, p->boundary);
		dump_str(&d, p->charset);
		dump_str(&d, p->name);
		for (size_t k = 0; k < p->nhdrs; k++) {
			dump_str(&d, p->hdrs[k].name);
			dump_str(&d, p->hdrs[k].value);
			dump_str(&d, p->hdrs[k].raw);
		}
		text_put(&d, "\nraw\n");
		for (size_t k = 0; k < p->nraw; k++)
			dump_add(&d, p->raw[k].p, p->raw[k].n);
		text_put(&d, "\n");
	}
	return d;
}

static void same_tree(const char *label, const char *msg, size_t len)
{
	struct samsg a, b;
	struct text da, db;

	samsg_parse(&a, msg, len);
	samsg_parse_copying(&b, msg, len);
	da = dump(&a);
	db = dump(&b);
	if (da.n != db.n || memcmp(da.p, db.p, da.n) != 0) {
		print_error("%s: the trees differ\n--- samsg_parse\n%s\n--- copying\n%s\n", label,
		    da.p, db.p);
		fail();
	}
	free(da.p);
	free(db.p);
	samsg_free(&a);
	samsg_free(&b);
}

static void test_same_tree(void **state)
{
	struct text nl = { 0 }, blank = { 0 }, longl = { 0 }, qp, b64;
	static const char *const rows[][2] = {
		{ "a nested message in a multipart (its line break before the boundary cut)",
		  "Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\n"
		  "hello\n--b1\nContent-Type: message/rfc822\n\nSubject: inside\n"
		  "Content-Type: text/plain\n\nthe forwarded text\n\n--b1--\n" },
		{ "a nested multipart with its own boundary",
		  "Content-Type: message/rfc822\n\nSubject: in\nContent-Type: multipart/alternative;"
		  " boundary=\"x\"\n\n--x\nContent-Type: text/plain\n\na\n--x\nContent-Type: text/html"
		  "\n\n<p>a</p>\n--x--\nepilogue\n" },
		{ "a nested message whose CR stays after CRLF is read (CR CR LF): split from a copy",
		  "Content-Type: message/rfc822\r\n\r\nSubject: cr\r\r\nX: y\r\r\n\r\r\nbody\r\r\n" },
		{ "an mbox line first in the nested message",
		  "Content-Type: message/rfc822\n\nFrom someone@example.org Mon Sep 2 2002\n"
		  "Subject: mbox\n\nbody\n" },
		{ "a short nested message (Fro)", "Content-Type: message/rfc822\n\nFro" },
		{ "an empty nested message", "Content-Type: message/rfc822\n\n" },
		{ "a digest: parts without a type are messages",
		  "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n--d\n\n"
		  "Subject: two\n\nsecond\n--d--\n" },
		{ "a nested message with an unknown transfer encoding (read as is)",
		  "Content-Type: message/rfc822\nContent-Transfer-Encoding: x-uuencode\n\n"
		  "Subject: u\n\nbody\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		same_tree(rows[i][0], rows[i][1], strlen(rows[i][1]));
	/* a run of more than 20 blank lines (continuation-looking: one space) is cut from the
	 * body: the nested message's lines are no longer one run of octets */
	text_put(&blank, "Content-Type: message/rfc822\n\nSubject: blank\nX-Long: a\n");
	for (int i = 0; i < 30; i++)
		text_put(&blank, " \n");
	text_put(&blank, "\nbody\n");
	same_tree("blank lines cut out of the nested message", blank.p, blank.n);
	/* lines over 2048 octets are cut into pieces, one run of octets still */
	text_put(&longl, "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	    "Content-Type: message/rfc822\n\nSubject: long\n\n");
	for (int i = 0; i < 5000; i++)
		text_put(&longl, "x");
	text_put(&longl, "\n--b--\n");
	same_tree("a nested message with a line of 5000 octets", longl.p, longl.n);
	text_put(&nl, "Content-Type: message/rfc822\n\n");
	for (int i = 0; i < 25; i++)
		text_put(&nl, "Content-Type: message/rfc822\n\n");
	text_put(&nl, "Subject: deepest\n\ntext\n");
	same_tree("more nested messages than SA parses", nl.p, nl.n);
	qp = nested_message("quoted-printable");
	same_tree("nested quoted-printable messages (decoded, kept)", qp.p, qp.n);
	b64 = nested_message("Base64");
	same_tree("nested base64 messages (not base64: decoded to nothing)", b64.p, b64.n);
	free(nl.p);
	free(blank.p);
	free(longl.p);
	free(qp.p);
	free(b64.p);
}

/* The executable's realloc is wrapped: while counting, the calls that grow a block (not
 * realloc(NULL, n), a malloc) are counted. */
static bool counting;
static size_t regrows;

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
	if (counting && p != NULL)
		regrows++;
	return __real_realloc(p, n);
}

/* A message of 20,000 header fields (a forwarding loop's Received lines, or a hostile
 * sender's): the part's header array grew one entry a time, 20,000 reallocs (each
 * copying the array when it moved: quadratic). Now it doubles: 15. */
static void test_many_headers(void **state)
{
	struct text t = { 0 };
	struct samsg m;
	char h[80];

	(void)state;
	for (int i = 0; i < 20000; i++) {
		snprintf(h, sizeof(h), "X-Hop-%d: relay %d\r\n", i, i);
		text_put(&t, h);
	}
	text_put(&t, "Subject: many\r\n\r\nbody\r\n");
	regrows = 0;
	counting = true;
	samsg_parse(&m, t.p, t.n);
	counting = false;
	print_message("20,001 header fields: %zu reallocs of a block during the parse\n", regrows);
	assert_int_equal(m.parts[0].nhdrs, 20001);
	assert_string_equal(samsg_header(&m.parts[0], "Subject"), "many");
	assert_string_equal(samsg_header(&m.parts[0], "X-Hop-19999"), "relay 19999");
	assert_string_equal(m.parts[0].hdrs[12345].name, "X-Hop-12345");
	if (regrows > 200)
		fail_msg("%zu reallocs for 20,001 header fields: the header array grows by one", regrows);
	samsg_free(&m);
	free(t.p);
}

/* A multipart of 450 multipart/alternative parts, each with its own boundary and one text
 * part (901 parts: SA parses up to 1,000): the top part's list of kids, the boundaries'
 * states and the kept buffers each grew one entry a time: 913 reallocs (each copying its
 * array when it moved). Now they double: 26. */
static void test_many_parts(void **state)
{
	struct text t = { 0 };
	struct samsg m;
	char h[200];

	(void)state;
	text_put(&t, "Subject: parts\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"top\"\r\n\r\n");
	for (int i = 0; i < 450; i++) {
		snprintf(h, sizeof(h), "--top\r\nContent-Type: multipart/alternative; boundary=\"b%d\"\r\n"
		    "\r\n--b%d\r\nContent-Type: text/plain\r\n\r\npart %d\r\n--b%d--\r\n", i, i, i, i);
		text_put(&t, h);
	}
	text_put(&t, "--top--\r\n");
	for (int copying = 0; copying < 2; copying++) {
		regrows = 0;
		counting = true;
		if (copying)
			samsg_parse_copying(&m, t.p, t.n);
		else
			samsg_parse(&m, t.p, t.n);
		counting = false;
		print_message("901 parts (%s): %zu reallocs of a block during the parse\n",
		    copying ? "copying" : "in place", regrows);
		assert_int_equal(m.nparts, 901);
		assert_int_equal(m.parts[0].nkids, 450);
		assert_int_equal(m.nbstate, 451);
		assert_string_equal(m.parts[m.parts[0].kids[449]].type, "multipart/alternative");
		if (regrows > 100)
			fail_msg("%zu reallocs for 901 parts: an array grows by one", regrows);
		samsg_free(&m);
	}
	free(t.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nested_memory),
		cmocka_unit_test(test_nested_encoded_memory),
		cmocka_unit_test(test_same_tree),
		cmocka_unit_test(test_many_parts),
		cmocka_unit_test(test_many_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
