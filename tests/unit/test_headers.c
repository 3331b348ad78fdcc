/* test_headers.c — proxy/headers.c: header edits (add, insert, change n-th, delete-all) on
 * folded fields, blocks with and without the blank line, LF-only blocks; field encoding
 * (folding at 78 columns, CR/LF stripping); the Received: trace field.
 *
 * Rows that document behaviour the code does not have yet are marked `bug` and run only
 * with MX_KNOWN_BUGS=1 in the environment (each names the bug; see the report in the
 * commit log / lead's notes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/headers.h"
#include "proxy/ownfields.h"
#include "proxy/hook.h"
#include "proxy/tls.h"

static bool known_bugs(void)
{
	return getenv("MX_KNOWN_BUGS") != NULL;
}

/* Renders s[0..n) with CR and LF visible, for failure messages. */
static const char *vis(const char *s, size_t n)
{
	static char buf[4][2048];
	static int k;
	char *o = buf[k++ & 3];
	size_t j = 0;

	for (size_t i = 0; i < n && j + 5 < sizeof(buf[0]); i++) {
		if (s[i] == '\r') {
			memcpy(o + j, "\\r", 2);
			j += 2;
		} else if (s[i] == '\n') {
			memcpy(o + j, "\\n", 2);
			j += 2;
		} else if (s[i] == '\t') {
			memcpy(o + j, "\\t", 2);
			j += 2;
		} else {
			o[j++] = s[i];
		}
	}
	o[j] = '\0';
	return o;
}

#define E(op_, name_, value_, index_) { (op_), (char *)(name_), (char *)(value_), (index_) }

/* ------------------------------------------------------------ headers_apply_edits */

struct edit_row {
	const char *label;
	const char *in;
	struct hdr_edit e[4];
	size_t n;
	const char *want;
	const char *bug;     /* non-NULL: known bug, run only with MX_KNOWN_BUGS */
};

static const struct edit_row edit_rows[] = {
	{ "no edits: byte-identical copy",
	  "A: 1\r\nB: 2\r\n\r\n", { { 0 } }, 0,
	  "A: 1\r\nB: 2\r\n\r\n", NULL },
	{ "no edits: LF-only block copied as is",
	  "A: 1\nB: 2\n\n", { { 0 } }, 0,
	  "A: 1\nB: 2\n\n", NULL },
	{ "add goes after the last field, before the blank line",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "A: 1\r\nB: 2\r\nX-Add: v\r\n\r\n", NULL },
	{ "add to a block without blank line (message is only headers)",
	  "A: 1\r\n", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "A: 1\r\nX-Add: v\r\n", NULL },
	{ "add to a block starting with the blank line (no header at all)",
	  "\r\n", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "X-Add: v\r\n\r\n", NULL },
	{ "add to an empty block",
	  "", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "X-Add: v\r\n", NULL },
	{ "two adds keep their order",
	  "A: 1\r\n\r\n", { E(HDR_ADD, "X-1", "a", 0), E(HDR_ADD, "X-2", "b", 0) }, 2,
	  "A: 1\r\nX-1: a\r\nX-2: b\r\n\r\n", NULL },
	{ "add after a folded last field keeps the folding",
	  "A: 1\r\nS: x\r\n y\r\n\r\n", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "A: 1\r\nS: x\r\n y\r\nX-Add: v\r\n\r\n", NULL },
	{ "add to an LF-only block: the new field is CRLF, the block end kept",
	  "A: 1\n\n", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "A: 1\nX-Add: v\r\n\n", NULL },
	{ "add to a last field without line end starts a new line",
	  "A: 1", { E(HDR_ADD, "X-Add", "v", 0) }, 1,
	  "A: 1\r\nX-Add: v\r\n",
	  NULL /* fixed */ },
	{ "insert at 0 goes first",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", 0) }, 1,
	  "X-Ins: v\r\nA: 1\r\nB: 2\r\n\r\n", NULL },
	{ "insert at 1 goes between",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", 1) }, 1,
	  "A: 1\r\nX-Ins: v\r\nB: 2\r\n\r\n", NULL },
	{ "insert at the field count goes last",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", 2) }, 1,
	  "A: 1\r\nB: 2\r\nX-Ins: v\r\n\r\n", NULL },
	{ "insert past the end goes last",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", 99) }, 1,
	  "A: 1\r\nB: 2\r\nX-Ins: v\r\n\r\n", NULL },
	{ "insert at a negative index goes first",
	  "A: 1\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", -5) }, 1,
	  "X-Ins: v\r\nA: 1\r\nB: 2\r\n\r\n", NULL },
	{ "insert into a block that is only the blank line",
	  "\r\n", { E(HDR_INSERT, "X-Ins", "v", 0) }, 1,
	  "X-Ins: v\r\n\r\n", NULL },
	{ "insert does not split a folded field",
	  "S: x\r\n y\r\nB: 2\r\n\r\n", { E(HDR_INSERT, "X-Ins", "v", 1) }, 1,
	  "S: x\r\n y\r\nX-Ins: v\r\nB: 2\r\n\r\n", NULL },
	/* Edits apply in order, each on the result of the last (milter semantics): the
	 * second insert at index 0 lands before the first. */
	{ "two inserts at the same index: the later one is first",
	  "A: 1\r\n\r\n", { E(HDR_INSERT, "X-1", "a", 0), E(HDR_INSERT, "X-2", "b", 0) }, 2,
	  "X-2: b\r\nX-1: a\r\nA: 1\r\n\r\n", NULL },
	{ "change the first occurrence",
	  "S: a\r\nX: 1\r\nX: 2\r\n\r\n", { E(HDR_CHANGE, "X", "new", 1) }, 1,
	  "S: a\r\nX: new\r\nX: 2\r\n\r\n", NULL },
	{ "change the second occurrence",
	  "S: a\r\nX: 1\r\nX: 2\r\n\r\n", { E(HDR_CHANGE, "X", "new", 2) }, 1,
	  "S: a\r\nX: 1\r\nX: new\r\n\r\n", NULL },
	{ "change index 0 means the first",
	  "X: 1\r\nX: 2\r\n\r\n", { E(HDR_CHANGE, "X", "new", 0) }, 1,
	  "X: new\r\nX: 2\r\n\r\n", NULL },
	{ "change an occurrence that is not there adds it",
	  "X: 1\r\n\r\n", { E(HDR_CHANGE, "X", "new", 3) }, 1,
	  "X: 1\r\nX: new\r\n\r\n", NULL },
	{ "change a missing header adds it",
	  "A: 1\r\n\r\n", { E(HDR_CHANGE, "X", "new", 1) }, 1,
	  "A: 1\r\nX: new\r\n\r\n", NULL },
	{ "change with NULL value deletes that occurrence only",
	  "X: 1\r\nX: 2\r\nX: 3\r\n\r\n", { E(HDR_CHANGE, "X", NULL, 2) }, 1,
	  "X: 1\r\nX: 3\r\n\r\n", NULL },
	{ "change with NULL value of a missing header is a no-op",
	  "A: 1\r\n\r\n", { E(HDR_CHANGE, "X", NULL, 1) }, 1,
	  "A: 1\r\n\r\n", NULL },
	{ "change matches names case-insensitively and keeps the original spelling",
	  "subject: old\r\n\r\n", { E(HDR_CHANGE, "Subject", "new", 1) }, 1,
	  "subject: new\r\n\r\n", NULL },
	{ "change replaces every line of a folded field",
	  "Subject: a\r\n b\r\n\tc\r\nX: 1\r\n\r\n", { E(HDR_CHANGE, "Subject", "new", 1) }, 1,
	  "Subject: new\r\nX: 1\r\n\r\n", NULL },
	{ "change does not match a longer name with the same prefix",
	  "X-Spam-Flag: y\r\n\r\n", { E(HDR_CHANGE, "X-Spam", "n", 1) }, 1,
	  "X-Spam-Flag: y\r\nX-Spam: n\r\n\r\n", NULL },
	{ "change value CR/LF is stripped (no header injection)",
	  "X: 1\r\n\r\n", { E(HDR_CHANGE, "X", "a\r\nBcc: evil@example.org", 1) }, 1,
	  "X: aBcc: evil@example.org\r\n\r\n", NULL },
	{ "delete-all removes every occurrence",
	  "X: 1\r\nA: 1\r\nX: 2\r\n\r\n", { E(HDR_DELETE_ALL, "X", NULL, 0) }, 1,
	  "A: 1\r\n\r\n", NULL },
	{ "delete-all removes folded continuation lines too",
	  "X: 1\r\n more\r\n\tand more\r\nA: 1\r\n\r\n", { E(HDR_DELETE_ALL, "x", NULL, 0) }, 1,
	  "A: 1\r\n\r\n", NULL },
	{ "delete-all matches a name with space before the colon",
	  "Subject : a\r\nA: 1\r\n\r\n", { E(HDR_DELETE_ALL, "Subject", NULL, 0) }, 1,
	  "A: 1\r\n\r\n", NULL },
	{ "delete-all keeps longer names with the same prefix",
	  "X-Spam: 1\r\nX-Spam-Flag: y\r\nX-Spa: 2\r\n\r\n", { E(HDR_DELETE_ALL, "X-Spam", NULL, 0) }, 1,
	  "X-Spam-Flag: y\r\nX-Spa: 2\r\n\r\n", NULL },
	{ "delete-all of every field leaves only the blank line",
	  "X: 1\r\nX: 2\r\n\r\n", { E(HDR_DELETE_ALL, "X", NULL, 0) }, 1,
	  "\r\n", NULL },
	{ "delete-all in a block without blank line",
	  "X: 1\r\nA: 1\r\n", { E(HDR_DELETE_ALL, "X", NULL, 0) }, 1,
	  "A: 1\r\n", NULL },
	{ "delete-all in an LF-only block",
	  "X: 1\nA: 1\n\n", { E(HDR_DELETE_ALL, "X", NULL, 0) }, 1,
	  "A: 1\n\n", NULL },
	{ "a line without colon is kept and never matches",
	  "garbage\r\nA: 1\r\n\r\n", { E(HDR_DELETE_ALL, "A", NULL, 0) }, 1,
	  "garbage\r\n\r\n", NULL },
	{ "delete-all then add: only the new field",
	  "X: old\r\nA: 1\r\n\r\n", { E(HDR_DELETE_ALL, "X", NULL, 0), E(HDR_ADD, "X", "new", 0) }, 2,
	  "A: 1\r\nX: new\r\n\r\n", NULL },
	{ "change then delete-all: gone",
	  "X: 1\r\nA: 1\r\n\r\n", { E(HDR_CHANGE, "X", "new", 1), E(HDR_DELETE_ALL, "X", NULL, 0) }, 2,
	  "A: 1\r\n\r\n", NULL },
	{ "delete-all then change: the change adds (milter semantics)",
	  "X: 1\r\n\r\n", { E(HDR_DELETE_ALL, "X", NULL, 0), E(HDR_CHANGE, "X", "new", 1) }, 2,
	  "X: new\r\n\r\n", NULL },
	{ "mixed edits: insert, change, delete, add",
	  "Received: r\r\nSubject: s\r\nX-Old: o\r\n\r\n",
	  { E(HDR_INSERT, "X-First", "f", 0), E(HDR_CHANGE, "Subject", "t", 1),
	    E(HDR_DELETE_ALL, "X-Old", NULL, 0), E(HDR_ADD, "X-Last", "l", 0) }, 4,
	  "X-First: f\r\nReceived: r\r\nSubject: t\r\nX-Last: l\r\n\r\n", NULL },
	{ "edits apply in order: add then delete-all removes the added field",
	  "A: 1\r\n\r\n", { E(HDR_ADD, "X-Spam", "yes", 0), E(HDR_DELETE_ALL, "X-Spam", NULL, 0) }, 2,
	  "A: 1\r\n\r\n",
	  NULL /* fixed */ },
	{ "delete by prefix, but the exception's: every X-Spam-* but X-Spam-Prev-*, any case, folded too",
	  "X-Spam-Status: No\r\nA: 1\r\nx-spam-made-up: 1\r\n\tfolded\r\nX-Spam-Prev-Subject: s\r\nX-Spamy: 2\r\n"
	  "X-Spam: 3\r\nX-Spam-: 4\r\n\r\n",
	  { E(HDR_DELETE_PREFIX, "X-Spam-", "X-Spam-Prev-", 0) }, 1,
	  "A: 1\r\nX-Spam-Prev-Subject: s\r\nX-Spamy: 2\r\nX-Spam: 3\r\n\r\n", NULL },
	{ "delete by prefix, no exception; an added field with the prefix goes too",
	  "X-A-1: 1\r\nB: 2\r\n\r\n", { E(HDR_ADD, "X-A-2", "v", 0), E(HDR_DELETE_PREFIX, "x-a-", NULL, 0) }, 2,
	  "B: 2\r\n\r\n", NULL },
	{ "delete by the empty prefix: every line, one that is no field too; an add after stays",
	  "A: 1\r\nno field\r\nSubject : s\r\n\tfolded\r\n\r\n",
	  { E(HDR_DELETE_PREFIX, "", NULL, 0), E(HDR_ADD, "X", "v", 0) }, 2, "X: v\r\n\r\n", NULL },
	{ "edits apply in order: add then change the 1st changes the added field",
	  "A: 1\r\n\r\n", { E(HDR_ADD, "X", "v", 0), E(HDR_CHANGE, "X", "new", 1) }, 2,
	  "A: 1\r\nX: new\r\n\r\n",
	  NULL /* fixed */ },
};

static void test_apply_edits(void **state)
{
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(edit_rows) / sizeof(edit_rows[0]); i++) {
		const struct edit_row *r = &edit_rows[i];
		struct strbuf out = { 0 };

		if (r->bug && !known_bugs())
			continue;
		assert_int_equal(headers_apply_edits(r->in, strlen(r->in), r->e, r->n, &out), 0);
		size_t wl = strlen(r->want);
		if ((out.len != wl || memcmp(out.v ? out.v : "", r->want, wl) != 0) && ++failed)
			print_error("row \"%s\"%s%s:\n  in   %s\n  want %s\n  got  %s\n", r->label,
			    r->bug ? " — known bug: " : "", r->bug ? r->bug : "",
			    vis(r->in, strlen(r->in)), vis(r->want, wl), vis(out.v ? out.v : "", out.len));
		strbuf_free(&out);
	}
	if (failed)
		fail_msg("%d row(s) failed", failed);
}

/* The output of apply goes after what is already in out (the Received: field). */
static void test_apply_edits_appends(void **state)
{
	struct strbuf out = { 0 };
	const struct hdr_edit e[] = { E(HDR_ADD, "X", "v", 0) };

	(void)state;
	strbuf_append(&out, "Received: r\r\n", 13);
	headers_apply_edits("A: 1\r\n\r\n", 8, NULL, 0, &out);
	assert_string_equal(out.v, "Received: r\r\nA: 1\r\n\r\n");
	headers_apply_edits("A: 1\r\n\r\n", 8, e, 1, &out);
	assert_string_equal(out.v, "Received: r\r\nA: 1\r\n\r\nA: 1\r\nX: v\r\n\r\n");
	strbuf_free(&out);
	strbuf_free(&out);    /* twice: a freed strbuf is empty */
	assert_null(out.v);
}

/* HDR_INSERT_DELIVERED (a milter's insheader) counts the block as delivered, our Received
 * included: 0 above it, 1 just below it; fields above it go to top_at, the others after. */
static void test_apply_edits_delivered(void **state)
{
	static const struct {
		const char *label;
		struct hdr_edit e[4];
		size_t n;
		const char *want;
	} rows[] = {
		{ "0 goes above the Received", { E(HDR_INSERT_DELIVERED, "X", "0", 0) }, 1,
		  "X: 0\r\nReceived: r\r\nA: 1\r\nB: 2\r\n\r\n" },
		{ "1 just below it, 2 after one header", { E(HDR_INSERT_DELIVERED, "X", "1", 1),
		  E(HDR_INSERT_DELIVERED, "Y", "2", 3) }, 2,
		  "Received: r\r\nX: 1\r\nA: 1\r\nY: 2\r\nB: 2\r\n\r\n" },
		{ "a second 0 above the first; 1 between them", { E(HDR_INSERT_DELIVERED, "X", "a", 0),
		  E(HDR_INSERT_DELIVERED, "Y", "b", 0), E(HDR_INSERT_DELIVERED, "Z", "c", 1) }, 3,
		  "Y: b\r\nZ: c\r\nX: a\r\nReceived: r\r\nA: 1\r\nB: 2\r\n\r\n" },
		{ "a top field deleted is not counted; an insert below the Received stays there",
		  { E(HDR_INSERT_DELIVERED, "X", "a", 0), E(HDR_CHANGE, "X", NULL, 1),
		  E(HDR_INSERT_DELIVERED, "Y", "b", 1), E(HDR_INSERT, "W", "w", 0) }, 4,
		  "Received: r\r\nW: w\r\nY: b\r\nA: 1\r\nB: 2\r\n\r\n" },
		{ "a top field changed stays on top; past the end appends",
		  { E(HDR_INSERT_DELIVERED, "X", "a", 0), E(HDR_CHANGE, "X", "new", 1),
		  E(HDR_INSERT_DELIVERED, "Y", "b", 99) }, 3,
		  "X: new\r\nReceived: r\r\nA: 1\r\nB: 2\r\nY: b\r\n\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct strbuf out = { 0 };

		strbuf_append(&out, "Received: r\r\n", 13);
		assert_int_equal(headers_apply_edits_at("A: 1\r\nB: 2\r\n\r\n", 14, rows[i].e, rows[i].n, &out, 0), 0);
		if (strcmp(out.v, rows[i].want) != 0)
			fail_msg("row \"%s\": want %s got %s", rows[i].label, vis(rows[i].want, strlen(rows[i].want)),
			    vis(out.v, out.len));
		strbuf_free(&out);
	}
}

/* The fields mxgate owns (ownfields.h): a sender's copies go before the edits, any case, a
 * blank before the colon, folded; a field an edit adds stays (whatever stage asked for it);
 * an edit's index does not count the dropped field (no filter is shown it); look-alikes stay.
 * Without edits the block is rewritten only when it holds one (ownfields_block_has). */
static void test_apply_edits_owned(void **state)
{
	const char in[] = "A: 1\r\nx-mxgate-quarantine: forged\r\nX-Mxgate-Filter-Error: a;\r\n\tstage=x\r\n"
	    "X-MXGATE-GREYLIST : passed\r\nX-Mxgate-Other: kept\r\nX-Mxgate-Greylisted: kept\r\nB: 2\r\n\r\n";
	const struct hdr_edit add[] = { E(HDR_ADD, "X-Mxgate-Filter-Error", "clamd; stage=eom; error=x", 0),
		E(HDR_INSERT, "I", "i", 2) };
	const char *body = "A: 1\r\nX-Mxgate-Other: 1\r\n\r\nX-Mxgate-Quarantine: body\r\n";
	const char *cont = "A: 1\r\n X-Mxgate-Quarantine: a continuation\r\n\r\n";
	struct strbuf out = { 0 };

	(void)state;
	assert_true(ownfields_block_has(in, sizeof(in) - 1));
	assert_true(ownfields_is("x-MXGATE-greylist", 17));
	assert_false(ownfields_is("X-Mxgate-Greylisted", 19));
	assert_false(ownfields_block_has(body, strlen(body)));    /* in the body: not ours to touch */
	assert_false(ownfields_block_has(cont, strlen(cont)));    /* a continuation line */
	headers_apply_edits_owned(in, sizeof(in) - 1, NULL, 0, &out, 0);
	assert_string_equal(out.v, "A: 1\r\nX-Mxgate-Other: kept\r\nX-Mxgate-Greylisted: kept\r\nB: 2\r\n\r\n");
	out.len = 0;
	/* the insert at 2 lands after "A" and X-Mxgate-Other, the two fields its filter was shown */
	headers_apply_edits_owned(in, sizeof(in) - 1, add, 2, &out, 0);
	assert_string_equal(out.v, "A: 1\r\nX-Mxgate-Other: kept\r\nI: i\r\nX-Mxgate-Greylisted: kept\r\nB: 2\r\n"
	    "X-Mxgate-Filter-Error: clamd; stage=eom; error=x\r\n\r\n");
	out.len = 0;
	/* headers_apply_edits_at keeps them (a released message's are mxgate's own) */
	headers_apply_edits_at(in, sizeof(in) - 1, NULL, 0, &out, 0);
	assert_string_equal(out.v, in);
	strbuf_free(&out);
}

/* The block is given by length, not by NUL: bytes past len are never read or copied, and
 * NUL bytes inside are copied through. */
static void test_apply_edits_length_bounded(void **state)
{
	const char in[] = "A: 1\r\nB: \0x\r\n\r\nBODY: not a header\r\n";
	size_t hlen = 15;   /* up to and including the blank line */
	const struct hdr_edit e[] = { E(HDR_DELETE_ALL, "BODY", NULL, 0), E(HDR_ADD, "X", "v", 0) };
	struct strbuf out = { 0 };

	(void)state;
	headers_apply_edits(in, hlen, e, 2, &out);
	assert_int_equal(out.len, hlen + 6);
	assert_memory_equal(out.v, "A: 1\r\nB: \0x\r\nX: v\r\n\r\n", out.len);
	strbuf_free(&out);
}

/* Many fields (past the split's initial capacity) and many edits. */
static void test_apply_edits_many(void **state)
{
	struct strbuf in = { 0 }, out = { 0 }, want = { 0 };
	struct hdr_edit e[300];

	(void)state;
	for (int i = 0; i < 500; i++)
		strbuf_printf(&in, "%s: %d\r\n", i % 2 ? "Odd" : "Even", i);
	strbuf_append(&in, "\r\n", 2);
	for (int i = 0; i < 300; i++)
		e[i] = (struct hdr_edit)E(HDR_ADD, "X-N", "v", 0);
	e[0] = (struct hdr_edit)E(HDR_DELETE_ALL, "odd", NULL, 0);
	e[1] = (struct hdr_edit)E(HDR_CHANGE, "Even", "last", 250);
	headers_apply_edits(in.v, in.len, e, 300, &out);
	/* the Odd fields go, the 250th Even (i = 498) changes, the 298 adds come last */
	for (int i = 0; i < 500; i += 2) {
		if (i == 498)
			strbuf_printf(&want, "Even: last\r\n");
		else
			strbuf_printf(&want, "Even: %d\r\n", i);
	}
	for (int i = 2; i < 300; i++)
		strbuf_printf(&want, "X-N: v\r\n");
	strbuf_append(&want, "\r\n", 2);
	assert_int_equal(out.len, want.len);
	assert_memory_equal(out.v, want.v, want.len);
	strbuf_free(&in);
	strbuf_free(&out);
	strbuf_free(&want);
}

/* A filter's edit by index (HDR_CHANGE: a milter's SMFIR_CHGHEADER, rspamd's remove_headers,
 * a plugin's change_header) counts the fields of the message the filter was shown: the
 * block with the edits before it applied (plugins.c's view), as Postfix counts the fields
 * it sent the milter. Property: for any edits e[0..k) and any n, applying e[0..k) plus
 * CHANGE name n changes the n-th field called name of apply(e[0..k)) (the view), or adds
 * one at the end when the view holds fewer than n. */

/* The offset of the n-th (1-based) field called name in the header block v[0..len), or
 * len when there are fewer; *end gets where that field ends. Names as a filter counts
 * them: the octets before the colon, any case. */
static size_t view_field(const char *v, size_t len, const char *name, int n, size_t *end)
{
	size_t i = 0, nl = strlen(name);
	int seen = 0;

	while (i < len && v[i] != '\r' && v[i] != '\n') {
		size_t s = i;
		for (;;) {
			const char *lf = memchr(v + i, '\n', len - i);
			i = lf ? (size_t)(lf - v) + 1 : len;
			if (i >= len || (v[i] != ' ' && v[i] != '\t'))
				break;
		}
		if (i - s > nl && v[s + nl] == ':' && strncasecmp(v + s, name, nl) == 0 && ++seen == n) {
			*end = i;
			return s;
		}
	}
	*end = i;
	return i;
}

static uint32_t lcg_next(uint32_t *x)
{
	*x = *x * 1664525u + 1013904223u;
	return *x >> 8;
}

static void test_change_index_counts_view(void **state)
{
	static const char *const names[] = { "Authentication-Results", "authentication-results", "Subject",
	    "X-A" };
	static const char *const values[] = { "ours", "v", "forged", "1" };
	uint32_t x = 17;
	int failed = 0;

	(void)state;
	for (int round = 0; round < 20000 && failed < 5; round++) {
		struct strbuf in = { 0 }, view = { 0 }, got = { 0 }, want = { 0 };
		struct hdr_edit e[9];
		size_t k = lcg_next(&x) % 8, nf = lcg_next(&x) % 6, at, end;
		const char *name = names[lcg_next(&x) % 4];
		const char *value = lcg_next(&x) % 3 ? "MARK" : NULL;
		int n = 1 + (int)(lcg_next(&x) % 4);

		for (size_t i = 0; i < nf; i++)
			strbuf_printf(&in, "%s: %s\r\n", names[lcg_next(&x) % 4], values[lcg_next(&x) % 4]);
		strbuf_append(&in, "\r\n", 2);
		for (size_t i = 0; i < k; i++) {
			static const enum hdr_edit_op ops[] = { HDR_ADD, HDR_INSERT, HDR_CHANGE, HDR_DELETE_ALL,
			    HDR_INSERT_DELIVERED, HDR_CHANGE };
			enum hdr_edit_op op = ops[lcg_next(&x) % 6];
			const char *v = op == HDR_CHANGE && lcg_next(&x) % 2 ? NULL : values[lcg_next(&x) % 4];
			e[i] = (struct hdr_edit)E(op, names[lcg_next(&x) % 4], v, (int)(lcg_next(&x) % 4));
		}
		e[k] = (struct hdr_edit)E(HDR_CHANGE, name, value, n);
		headers_apply_edits(in.v, in.len, e, k, &view);
		headers_apply_edits(in.v, in.len, e, k + 1, &got);
		at = view_field(view.v, view.len, name, n, &end);
		strbuf_append(&want, view.v, at);
		if (value != NULL && at < end) {
			const char *colon = memchr(view.v + at, ':', end - at);
			strbuf_append(&want, view.v + at, (size_t)(colon - (view.v + at)));
			strbuf_printf(&want, ": %s\r\n", value);
		} else if (value != NULL) {
			strbuf_printf(&want, "%s: %s\r\n", name, value);
		}
		strbuf_append(&want, view.v + end, view.len - end);
		if ((got.len != want.len || memcmp(got.v, want.v, want.len) != 0) && ++failed)
			print_error("round %d, change %s %d (%s) after %zu edits:\n  view %s\n  want %s\n"
			    "  got  %s\n", round, name, n, value ? value : "delete", k, vis(view.v, view.len),
			    vis(want.v, want.len), vis(got.v, got.len));
		strbuf_free(&in);
		strbuf_free(&view);
		strbuf_free(&got);
		strbuf_free(&want);
	}
	if (failed)
		fail_msg("%d round(s) failed", failed);
}

/* The case the rspamd lane met (docs/plugins.md, "Coming from rspamd's milter"): mxgate's
 * own Authentication-Results is inserted at the top before the plugins run, so rspamd is
 * shown it first and its remove_headers {"Authentication-Results": 1} names it. A filter
 * shown only the forged field (no edit before its own) removes the forged one. */
static void test_change_index_authres(void **state)
{
	const char *in = "Authentication-Results: mx.example.test; spf=pass\r\nSubject: s\r\n\r\n";
	const struct hdr_edit shown[] = { E(HDR_INSERT, "Authentication-Results", "mx.example.test; spf=fail", 0),
	    E(HDR_CHANGE, "Authentication-Results", NULL, 1) };
	struct strbuf out = { 0 };

	(void)state;
	headers_apply_edits(in, strlen(in), shown, 2, &out);
	assert_string_equal(out.v, "Authentication-Results: mx.example.test; spf=pass\r\nSubject: s\r\n\r\n");
	out.len = 0;
	headers_apply_edits(in, strlen(in), shown + 1, 1, &out);
	assert_string_equal(out.v, "Subject: s\r\n\r\n");
	strbuf_free(&out);
}

/* ------------------------------------------------------------ headers_field_name_len */

/* A field's name as SpamAssassin's Message.pm reads it (split at the first ':', the blanks
 * before it stripped) and Postfix's milter client passes it: "Subject : x" is Subject. */
static void test_field_name_len(void **state)
{
	static const struct { const char *line; size_t want; } rows[] = {
		{ "Subject: x\r\n", 7 }, { "Subject : x\r\n", 7 }, { "Subject\t \t:x", 7 },
		{ "Subject:", 7 }, { "X-A:b:c", 3 }, { "no colon\r\n", 0 },
		{ ": empty name", 0 }, { "  : blanks", 0 }, { " Subject: continuation", 0 },
		{ "\tSubject: continuation", 0 }, { "Foo\r\n bar: x", 0 }, { "\r\n", 0 }, { "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		assert_int_equal(headers_field_name_len(rows[i].line, strlen(rows[i].line)), rows[i].want);
	/* the length bounds the search: a colon past it does not count */
	assert_int_equal(headers_field_name_len("Subject: x", 7), 0);
}

/* ------------------------------------------------------------ headers_append_field */

struct field_row {
	const char *label;
	const char *name, *value;
	const char *want;
	const char *bug;
};

static const struct field_row field_rows[] = {
	{ "short value", "X-A", "v", "X-A: v\r\n", NULL },
	{ "NULL value gives an empty field", "X-A", NULL, "X-A: \r\n", NULL },
	{ "empty value", "X-A", "", "X-A: \r\n", NULL },
	{ "runs of blanks collapse to one space", "X-A", "a   b\t\tc", "X-A: a b c\r\n", NULL },
	{ "trailing blanks dropped", "X-A", "a  \t", "X-A: a\r\n", NULL },
	{ "an author's fold (CRLF + WSP) is kept exactly (DKIM signs it)", "X-A", "a\r\n\tb", "X-A: a\r\n\tb\r\n", NULL },
	/* RFC 5322 3.2.2: a line of white space alone is obsolete syntax, never to be generated,
	 * and readers differ on it (some end the header block there): a peer's line break
	 * folds only when its continuation line holds a visible character */
	{ "a fold onto a line of blanks alone is no fold", "X-A", "a\n \n b", "X-A: a  \r\n b\r\n", NULL },
	{ "a fold onto a line of tabs alone, then Bcc, is no fold", "X-A", "a\r\n\t\r\n\tBcc: x@y",
	  "X-A: a \t\r\n\tBcc: x@y\r\n", NULL },
	{ "blank lines only: no fold at all (folded at 78 by mxgate)", "X-A", "a\r\n \r\n\t\r\nb",
	  "X-A: a b\r\n", NULL },
	{ "a bare CR before a blank folds only onto a visible character", "X-A", "a\r \rb\r\n\tc",
	  "X-A: a   b\r\n\tc\r\n", NULL },
	{ "CRLF without WSP is removed (no header injection)", "X-A", "a\r\nBcc: x@y",
	  "X-A: aBcc: x@y\r\n", NULL },
	{ "bare LF is removed", "X-A", "a\nb", "X-A: ab\r\n", NULL },
	{ "bare CR is removed", "X-A", "a\rb", "X-A: ab\r\n", NULL },
	{ "value of only CR/LF", "X-A", "\r\n\r\n", "X-A: \r\n", NULL },
	{ "a trailing CRLF in the value is not doubled", "X-A", "v\r\n", "X-A: v\r\n", NULL },
	{ "leading blanks dropped", "X-A", "  v", "X-A: v\r\n",
	  NULL /* fixed */ },
	/* SpamAssassin's X-Spam-Report starts on the line below its name: that fold is kept */
	{ "a value starting with a fold keeps it", "X-A", "\n\t* 1.0 A\n\t* 2.0 B",
	  "X-A: \r\n\t* 1.0 A\r\n\t* 2.0 B\r\n", NULL },
	{ "a leading line break onto blanks alone is no fold", "X-A", "\n \n\tv", "X-A: v\r\n", NULL },
	{ "a name with CR/LF gives no field (no header injection)", "X-A\r\nBcc", "v", "", NULL },
	{ "an empty name gives no field", "", "v", "",
	  NULL /* fixed */ },
	{ "a name with a colon gives no field", "X-A: forged", "v", "",
	  NULL /* fixed */ },
};

static void test_append_field(void **state)
{
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(field_rows) / sizeof(field_rows[0]); i++) {
		const struct field_row *r = &field_rows[i];
		struct strbuf out = { 0 };

		if (r->bug && !known_bugs())
			continue;
		headers_append_field(&out, r->name, r->value);
		if (strcmp(out.v, r->want) != 0 && ++failed)
			print_error("row \"%s\"%s%s:\n  want %s\n  got  %s\n", r->label,
			    r->bug ? " — known bug: " : "", r->bug ? r->bug : "",
			    vis(r->want, strlen(r->want)), vis(out.v, out.len));
		strbuf_free(&out);
	}
	if (failed)
		fail_msg("%d row(s) failed", failed);
}

/* Checks the folding of one encoded field: CRLF only as line ends, every continuation
 * starts with a tab, lines stay within 78 columns unless one word is longer, and unfolding
 * gives back the words of value. */
static void check_folding(const char *label, const char *name, const char *value, const char *got)
{
	char want[4096], unf[4096];
	size_t wl = 0, ul = 0;
	const char *line = got;
	int lines = 0;

	/* expected unfolded value: words joined by one space */
	for (const char *p = value; *p;) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (wl)
			want[wl++] = ' ';
		while (*p && *p != ' ')
			want[wl++] = *p++;
	}
	want[wl] = '\0';
	while (*line) {
		const char *e = strstr(line, "\r\n");
		if (e == NULL)
			fail_msg("%s: no CRLF at the end: %s", label, vis(got, strlen(got)));
		size_t ll = (size_t)(e - line);
		if (memchr(line, '\r', ll) || memchr(line, '\n', ll))
			fail_msg("%s: bare CR/LF in %s", label, vis(got, strlen(got)));
		if (lines > 0 && line[0] != '\t')
			fail_msg("%s: continuation without WSP: %s", label, vis(got, strlen(got)));
		size_t tl = ll;    /* a blank before the fold does not count as a fold point */
		while (tl > 0 && (line[tl - 1] == ' ' || line[tl - 1] == '\t'))
			tl--;
		size_t from = lines == 0 ? strlen(name) + 2 : 1;   /* not right after "Name: " */
		if (ll > 78 && tl > from && memchr(line + from, ' ', tl - from) != NULL)
			fail_msg("%s: line of %zu columns with a fold point: %s", label, ll, vis(line, ll));
		/* unfold (RFC 5322 2.2.3: drop the CRLF), then runs of WSP count as one space */
		const char *s = lines == 0 ? line + strlen(name) + 2 : line;
		for (; s < e; s++) {
			bool ws = *s == ' ' || *s == '\t';
			if (ws && (ul == 0 || unf[ul - 1] == ' '))
				continue;
			unf[ul++] = ws ? ' ' : *s;
		}
		lines++;
		line = e + 2;
	}
	while (ul > 0 && unf[ul - 1] == ' ')
		ul--;
	unf[ul] = '\0';
	if (strcmp(unf, want) != 0)
		fail_msg("%s: unfolded \"%s\" != \"%s\"", label, unf, want);
}

static void test_append_field_folding(void **state)
{
	static const struct { const char *label, *name, *value; int min_lines; } rows[] = {
		{ "fits on one line", "Subject", "a short subject", 1 },
		{ "exactly 78 columns stays one line", "X-Ab",
		  "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 012345", 1 },
		{ "79 columns folds", "X-Ab",
		  "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456", 2 },
		{ "long list folds many times", "X-Spam-Symbols",
		  "BAYES_99 DNSBL_SPAMHAUS URIBL_BLACK HTML_MESSAGE MIME_HTML_ONLY RDNS_NONE "
		  "FROM_EXCESS_BASE64 SUBJ_ALL_CAPS TO_NO_BRKTS_MSFT FORGED_OUTLOOK_HTML "
		  "MISSING_MID DATE_IN_FUTURE_96_XX HELO_DYNAMIC_IPADDR SPF_FAIL DKIM_INVALID", 3 },
		{ "a word longer than a line is not split", "X-Long",
		  "short aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa end", 3 },
		{ "a first word longer than a line stays after the name", "X-Long",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct strbuf out = { 0 };
		headers_append_field(&out, rows[i].name, rows[i].value);
		check_folding(rows[i].label, rows[i].name, rows[i].value, out.v);
		int lines = 0;
		for (const char *p = out.v; (p = strstr(p, "\r\n")) != NULL; p += 2)
			lines++;
		if (lines < rows[i].min_lines || (rows[i].min_lines == 1 && lines != 1))
			fail_msg("%s: %d lines: %s", rows[i].label, lines, vis(out.v, out.len));
		strbuf_free(&out);
	}
}

/* ------------------------------------------------------------ headers_build_received */

static void env_fill(struct hook_env *env)
{
	memset(env, 0, sizeof(*env));
	snprintf(env->client_ip, sizeof(env->client_ip), "192.0.2.7");
	snprintf(env->helo, sizeof(env->helo), "client.example.net");
	snprintf(env->client_name, sizeof(env->client_name), "mail.example.net");
	snprintf(env->queue_id, sizeof(env->queue_id), "4Q2BxYz");
}

static void check_received_shape(const char *got)
{
	/* CRLF only, continuation lines start with a tab, ends with "; <date>\r\n" */
	assert_true(strncmp(got, "Received: ", 10) == 0);
	size_t n = strlen(got);
	assert_true(n > 2 && got[n - 2] == '\r' && got[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		if (got[i] == '\n')
			assert_true(i > 0 && got[i - 1] == '\r');
		if (got[i] == '\r')
			assert_true(got[i + 1] == '\n');
		if (got[i] == '\n' && i + 1 < n)
			assert_true(got[i + 1] == '\t' || got[i + 1] == ' ');
	}
	const char *semi = strrchr(got, ';');
	assert_non_null(semi);
	/* RFC 5322 date: "Wed, 25 Nov 2026 02:44:03 +0000" */
	int d, y, h, m, s;
	char wd[4], mon[4], zone[6];
	assert_int_equal(sscanf(semi + 1, " %3[A-Za-z], %d %3s %d %d:%d:%d %5s", wd, &d, mon, &y, &h, &m, &s, zone), 8);
	assert_true(zone[0] == '+' || zone[0] == '-');
}

static void test_received(void **state)
{
	struct hook_env env;
	struct strbuf out = { 0 };
	struct rcpt one[1] = { { (char *)"user@example.org", (char *)"", 0 } };
	struct rcpt two[2] = { { (char *)"a@example.org", (char *)"", 0 }, { (char *)"b@example.org", (char *)"", 0 } };

	(void)state;
	/* one recipient: named; plain ESMTP */
	env_fill(&env);
	env.rcpts = one;
	env.nrcpts = 1;
	headers_build_received(&out, &env, "mx.example.com", "ESMTP");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "from client.example.net (mail.example.net [192.0.2.7])"));
	assert_non_null(strstr(out.v, "by mx.example.com"));
	assert_non_null(strstr(out.v, "with ESMTP id 4Q2BxYz"));
	assert_non_null(strstr(out.v, "for <user@example.org>"));
	assert_null(strstr(out.v, "cipher"));
	strbuf_free(&out);

	/* two recipients: none named (privacy, RFC 5321 7.2) */
	env.rcpts = two;
	env.nrcpts = 2;
	headers_build_received(&out, &env, "mx.example.com", "ESMTP");
	check_received_shape(out.v);
	assert_null(strstr(out.v, "for <"));
	strbuf_free(&out);

	/* no HELO, no reverse name: "unknown" for both; TLS details */
	env_fill(&env);
	env.helo[0] = env.client_name[0] = '\0';
	env.tls = true;
	snprintf(env.tls_version, sizeof(env.tls_version), "TLSv1.3");
	snprintf(env.tls_cipher, sizeof(env.tls_cipher), "TLS_AES_256_GCM_SHA384");
	headers_build_received(&out, &env, "mx.example.com", "ESMTPS");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "from unknown (unknown [192.0.2.7])"));
	assert_non_null(strstr(out.v, "with ESMTPS id"));
	assert_non_null(strstr(out.v, "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)"));
	assert_null(strstr(out.v, "Client"));	/* no certificate asked for: nothing said */
	strbuf_free(&out);

	/* a client certificate asked for (tls.client_certificate), as Postfix's
	 * smtpd_tls_received_header words it: verified, not verified, none sent */
	env.tls_cert = TLSCONN_CERT_VERIFIED;
	env.tls_cert_subject = "client.example.net";
	env.tls_cert_issuer = "Example CA";
	env.tls_cert_fingerprint = "AB:CD";
	headers_build_received(&out, &env, "mx.example.com", "ESMTPS");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "TLS_AES_256_GCM_SHA384)\r\n\t(Client CN \"client.example.net\", "
	    "Issuer \"Example CA\" (verified OK)); "));
	strbuf_free(&out);
	env.tls_cert = TLSCONN_CERT_UNVERIFIED;
	env.tls_cert_issuer = "";
	headers_build_received(&out, &env, "mx.example.com", "ESMTPS");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "(Client CN \"client.example.net\", Issuer \"\" (not verified))"));
	strbuf_free(&out);
	env.tls_cert = TLSCONN_CERT_NONE;
	headers_build_received(&out, &env, "mx.example.com", "ESMTPS");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "\r\n\t(Client did not present a certificate); "));
	strbuf_free(&out);
	env.tls = false;	/* never without TLS */
	env.tls_cert = TLSCONN_CERT_VERIFIED;
	headers_build_received(&out, &env, "mx.example.com", "ESMTP");
	assert_null(strstr(out.v, "Client"));
	strbuf_free(&out);

	/* IPv6 client */
	env_fill(&env);
	snprintf(env.client_ip, sizeof(env.client_ip), "2001:db8::1");
	headers_build_received(&out, &env, "mx.example.com", "SMTP");
	check_received_shape(out.v);
	assert_non_null(strstr(out.v, "[2001:db8::1]"));
	strbuf_free(&out);

	/* The Received: field goes before the edited block without disturbing it. */
	env_fill(&env);
	const struct hdr_edit e[] = { E(HDR_ADD, "X", "v", 0) };
	headers_build_received(&out, &env, "mx.example.com", "ESMTP");
	size_t rl = out.len;
	headers_apply_edits("A: 1\r\n\r\n", 8, e, 1, &out);
	assert_string_equal(out.v + rl, "A: 1\r\nX: v\r\n\r\n");
	strbuf_free(&out);
}

/* The field as the stdio version built it (snprintf + strftime), to byte-compare with. */
static void received_old(char *buf, size_t cap, const struct hook_env *env, const char *hostname,
    const char *with, time_t now)
{
	char date[64];
	struct tm tm;
	size_t n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	n = (size_t)snprintf(buf, cap, "Received: from %s (%s [%s])\r\n\tby %s (mxgate) with %s id %s",
	    env->helo[0] ? env->helo : "unknown", env->client_name[0] ? env->client_name : "unknown",
	    env->client_ip, hostname, with, env->queue_id);
	if (env->tls)
		n += (size_t)snprintf(buf + n, cap - n, "\r\n\t(using %s with cipher %s)", env->tls_version, env->tls_cipher);
	if (env->nrcpts == 1)
		n += (size_t)snprintf(buf + n, cap - n, "\r\n\tfor <%s>", env->rcpts[0].addr);
	snprintf(buf + n, cap - n, "; %s\r\n", date);
}

/* The stdio-free builder gives the old bytes: each optional part, several times (the date
 * cached per second, then a new second, then back), in UTC and in a zone with DST. */
static void test_received_bytes(void **state)
{
	static const char *zones[] = { "UTC", "America/New_York", "Asia/Kolkata" };
	static const time_t times[] = { 1796000000, 1796000000, 1796000001, 1781000000, 1796000000, 0 };
	struct rcpt one[1] = { { (char *)"user@example.org", (char *)"", 0 } };
	struct rcpt two[2] = { { (char *)"a@example.org", (char *)"", 0 }, { (char *)"b@example.org", (char *)"", 0 } };
	char want[2048];
	const char *old_tz = getenv("TZ");
	char *saved = old_tz ? strdup(old_tz) : NULL;

	(void)state;
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		setenv("TZ", zones[z], 1);
		tzset();
		for (int v = 0; v < 4; v++) {
			struct hook_env env;
			env_fill(&env);
			env.rcpts = v == 1 ? two : one;
			env.nrcpts = v == 1 ? 2 : v == 3 ? 0 : 1;
			if (v == 2) {
				env.helo[0] = env.client_name[0] = '\0';
				env.tls = true;
				snprintf(env.tls_version, sizeof(env.tls_version), "TLSv1.3");
				snprintf(env.tls_cipher, sizeof(env.tls_cipher), "TLS_AES_256_GCM_SHA384");
			}
			for (size_t t = 0; t < sizeof(times) / sizeof(times[0]); t++) {
				struct strbuf out = { 0 };
				/* a new zone: leave the second cached under the old one behind first */
				if (t == 0)
					headers_build_received_at(&out, &env, "mx", "SMTP", 12345 + (time_t)z);
				out.len = 0;
				headers_build_received_at(&out, &env, "mx.example.com", v == 2 ? "ESMTPS" : "ESMTP", times[t]);
				received_old(want, sizeof(want), &env, "mx.example.com", v == 2 ? "ESMTPS" : "ESMTP", times[t]);
				assert_int_equal(out.len, strlen(want));
				assert_memory_equal(out.v, want, out.len);
				strbuf_free(&out);
			}
		}
	}
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
}

/* headers_build_received_cached: the same octets as headers_build_received_at after every
 * change of what the session-constant parts are built from, each made in place in env as the
 * session does it (HELO again, XCLIENT, STARTTLS, AUTH, a reverse name found late), and
 * twice each (the second from the cache); one cache throughout. */
static void test_received_cached(void **state)
{
	struct rcpt one[1] = { { (char *)"user@example.org", (char *)"", 0 } };
	struct rcpt two[2] = { { (char *)"a@example.org", (char *)"", 0 }, { (char *)"b@example.org", (char *)"", 0 } };
	struct received_cache *cache = NULL;
	struct hook_env env;
	const char *host = "mx.example.com", *with = "ESMTP";
	char other_host[] = "mx.example.com", subject[64] = "client.example.net", issuer[64] = "Example CA";

	(void)state;
	env_fill(&env);
	env.rcpts = one;
	env.nrcpts = 1;
	for (int step = 0; step < 20; step++) {
		switch (step) {
		case 1: env.helo[17] = 'x'; break;                                   /* same length */
		case 2: snprintf(env.helo, sizeof(env.helo), "client.example.net.longer"); break;
		case 3: env.helo[3] = '\0'; break;                                  /* shorter, old tail left */
		case 4: env.helo[0] = '\0'; break;                                  /* none: "unknown" */
		case 5: snprintf(env.client_name, sizeof(env.client_name), "late.example.net"); break;
		case 6: snprintf(env.client_ip, sizeof(env.client_ip), "198.18.0.9"); break;
		case 7: with = "ESMTPA"; break;
		case 8: host = other_host; break;                                    /* same text elsewhere */
		case 9:
			env.tls = true;
			snprintf(env.tls_version, sizeof(env.tls_version), "TLSv1.3");
			snprintf(env.tls_cipher, sizeof(env.tls_cipher), "TLS_AES_256_GCM_SHA384");
			with = "ESMTPS";
			break;
		case 10: env.tls_cipher[4] = 'C'; break;
		case 11:
			env.tls_cert = TLSCONN_CERT_VERIFIED;
			env.tls_cert_subject = subject;
			env.tls_cert_issuer = issuer;
			break;
		case 12: issuer[0] = 'e'; break;                                     /* in place */
		case 13: snprintf(subject, sizeof(subject), "c"); break;
		case 14: env.tls_cert = TLSCONN_CERT_UNVERIFIED; break;
		case 15: env.tls_cert = TLSCONN_CERT_NONE; break;
		case 16: env.tls = false; with = "ESMTP"; break;
		case 17: memset(env.helo, 'h', sizeof(env.helo) - 1); env.helo[sizeof(env.helo) - 1] = '\0'; break;
		case 18: env.rcpts = two; env.nrcpts = 2; snprintf(env.queue_id, sizeof(env.queue_id), "Q2"); break;
		case 19: env.client_name[0] = '\0'; env.rcpts = one; env.nrcpts = 1; break;
		default: break;
		}
		for (int again = 0; again < 2; again++) {
			struct strbuf want = { 0 }, got = { 0 };

			strbuf_append(&got, "X: y\r\n", 6);	/* appended after what out holds */
			strbuf_append(&want, "X: y\r\n", 6);
			headers_build_received_at(&want, &env, host, with, 1796000000);
			headers_build_received_cached_at(&got, &cache, &env, host, with, 1796000000);
			if (got.len != want.len || memcmp(got.v, want.v, got.len) != 0)
				fail_msg("step %d (%d): %s\nwant %s", step, again, got.v, want.v);
			strbuf_free(&want);
			strbuf_free(&got);
		}
	}
	headers_received_cache_free(&cache);
	assert_null(cache);
	headers_received_cache_free(&cache);
}

/* The HELO name in the Received field, every octet between two letters: space, <>()\";@
 * and the controls (DEL too) become '?', as the strchr form wrote them; every other
 * octet (0x80 and up too) stays. */
static void test_received_helo_every_octet(void **state)
{
	(void)state;
	for (int c = 1; c < 256; c++) {
		struct hook_env env;
		struct strbuf out = { 0 };
		env_fill(&env);
		snprintf(env.helo, sizeof(env.helo), "a%cb", c);
		headers_build_received_at(&out, &env, "mx.example.com", "ESMTP", 1796000000);
		bool neuter = c <= ' ' || c == 0x7f || strchr("<>()\\\";@", c) != NULL;
		char want[16];
		snprintf(want, sizeof(want), "from a%cb (", neuter ? '?' : c);
		if (memcmp(out.v + strlen("Received: "), want, strlen(want)) != 0)
			fail_msg("octet 0x%02x: %.20s", c, out.v);
		strbuf_free(&out);
	}
}

/* ------------------------------------------------------------ strbuf */

static void test_strbuf(void **state)
{
	struct strbuf b = { 0 };
	char big[3000];

	(void)state;
	strbuf_append(&b, "", 0);
	assert_non_null(b.v);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.v, "");
	/* printf longer than its stack buffer */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	strbuf_printf(&b, "<%s>%d", big, 42);
	assert_int_equal(b.len, sizeof(big) - 1 + 4);
	assert_int_equal(b.v[0], '<');
	assert_string_equal(b.v + b.len - 3, ">42");
	assert_true(b.cap > b.len);
	strbuf_free(&b);
	assert_null(b.v);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
}

/* headers_end_block: a blank line after a header block that has none, never a second. */
static void test_end_block(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n\r\n" },
		{ "A: 1\r\nB: 2", "A: 1\r\nB: 2\r\n\r\n" },      /* last line without CRLF */
		{ "A: 1\r\n\r\n", "A: 1\r\n\r\n" },
		{ "A: 1\n\n", "A: 1\n\n" },
		{ "\r\n", "\r\n" },                            /* an empty header block */
		{ "", "\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf b = { 0 };

		strbuf_append(&b, cases[i].in, strlen(cases[i].in));
		headers_end_block(&b);
		assert_int_equal(b.len, strlen(cases[i].out));
		assert_memory_equal(b.v, cases[i].out, b.len);
		strbuf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply_edits),
		cmocka_unit_test(test_apply_edits_appends),
		cmocka_unit_test(test_apply_edits_delivered),
		cmocka_unit_test(test_apply_edits_length_bounded),
		cmocka_unit_test(test_apply_edits_many),
		cmocka_unit_test(test_change_index_counts_view),
		cmocka_unit_test(test_change_index_authres),
		cmocka_unit_test(test_field_name_len),
		cmocka_unit_test(test_append_field),
		cmocka_unit_test(test_append_field_folding),
		cmocka_unit_test(test_received),
		cmocka_unit_test(test_received_bytes),
		cmocka_unit_test(test_received_cached),
		cmocka_unit_test(test_received_helo_every_octet),
		cmocka_unit_test(test_strbuf),
		cmocka_unit_test(test_end_block),
		cmocka_unit_test(test_apply_edits_owned),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
