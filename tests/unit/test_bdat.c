/* test_bdat.c — CHUNKING framing: verdicts (no MAIL, no recipients, size, after a refused
 * chunk, too big to read), chunk accounting split at every byte, content normalised like
 * DATA (CRLF across chunk boundaries, bare CR/LF, NUL) or passed as is for BINARYMIME, and
 * no smuggling: dots and "<CRLF>.<CRLF>" inside chunks are content, and the relay's
 * re-stuffed form ends only at its own terminator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bdat.h"
#include "dataparse.h"

struct sink { char buf[4096]; size_t len; int fail; };

static int sink_cb(void *arg, const char *data, size_t len)
{
	struct sink *s = arg;

	if (s->fail)
		return -1;
	assert_true(s->len + len <= sizeof(s->buf));
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return 0;
}

/* One transaction: chunks as (size, last, bytes) with the wire after each BDAT line. */
struct chunk { uint64_t size; bool last; const char *bytes; size_t blen; enum bdat_verdict want; };

struct txn_row {
	const char *label;
	bool binary;
	uint64_t max;
	size_t nrcpts;
	struct chunk chunks[4];
	size_t nchunks;
	const char *content;
	size_t clen;
	bool complete, bad_eol, nul;
};

#define C(size, last, bytes, want) { size, last, bytes, sizeof(bytes) - 1, want }
#define S(x) x, sizeof(x) - 1

static const struct txn_row rows[] = {
	{ "one LAST chunk", false, 1000, 1, { C(14, true, "Subject: x\r\n\r\n", BDAT_ACCEPT) }, 1,
	  S("Subject: x\r\n\r\n"), true },
	{ "two chunks", false, 1000, 1, { C(3, false, "a\r\n", BDAT_ACCEPT), C(3, true, "b\r\n", BDAT_ACCEPT) }, 2,
	  S("a\r\nb\r\n"), true },
	{ "empty LAST chunk ends it", false, 1000, 1, { C(3, false, "a\r\n", BDAT_ACCEPT), C(0, true, "", BDAT_ACCEPT) }, 2,
	  S("a\r\n"), true },
	{ "dots are content", false, 1000, 1, { C(21, true, ".\r\n..x\r\n\r\n.\r\nMAIL x\r\n", BDAT_ACCEPT) }, 1,
	  S(".\r\n..x\r\n\r\n.\r\nMAIL x\r\n"), true },
	{ "CRLF split across chunks", false, 1000, 1, { C(2, false, "a\r", BDAT_ACCEPT), C(2, true, "\nb", BDAT_ACCEPT) }, 2,
	  S("a\r\nb"), true },
	{ "bare LF normalised", false, 1000, 1, { C(4, true, "a\nb\n", BDAT_ACCEPT) }, 1, S("a\r\nb\r\n"), true, true },
	{ "bare CR normalised", false, 1000, 1, { C(3, true, "a\rb", BDAT_ACCEPT) }, 1, S("a\r\nb"), true, true },
	{ "CR at the very end", false, 1000, 1, { C(2, true, "a\r", BDAT_ACCEPT) }, 1, S("a\r\n"), true, true },
	{ "CR at a chunk end, then a letter", false, 1000, 1, { C(2, false, "a\r", BDAT_ACCEPT), C(1, true, "b", BDAT_ACCEPT) }, 2,
	  S("a\r\nb"), true, true },
	{ "NUL dropped", false, 1000, 1, { C(4, true, "a\0b\n", BDAT_ACCEPT) }, 1, S("ab\r\n"), true, true, true },
	{ "BINARYMIME as is", true, 1000, 1, { C(6, false, "a\0\n\rb\r", BDAT_ACCEPT), C(2, true, "\n.", BDAT_ACCEPT) }, 2,
	  S("a\0\n\rb\r\n."), true },
	{ "no recipients", false, 1000, 0, { C(3, true, "a\r\n", BDAT_NO_RCPT) }, 1, S(""), false },
	{ "over the limit", false, 10, 1, { C(6, false, "123456", BDAT_ACCEPT), C(6, true, "789012", BDAT_TOO_BIG) }, 2,
	  S("123456"), false },
	{ "pipelined after a refused chunk", false, 10, 1,
	  { C(11, false, "12345678901", BDAT_TOO_BIG), C(2, false, "ab", BDAT_AFTER_FAILURE), C(2, true, "cd", BDAT_AFTER_FAILURE) }, 3,
	  S(""), false },
	{ "exactly the limit", false, 10, 1, { C(5, false, "12345", BDAT_ACCEPT), C(5, true, "67890", BDAT_ACCEPT) }, 2,
	  S("1234567890"), true },
};

/* Runs a row, feeding each chunk's bytes followed by a fake next command, in pieces of
 * step octets. */
static void run_row(const struct txn_row *r, size_t step)
{
	struct bdat b;
	struct sink s = { .len = 0 };

	bdat_init(&b, r->max, 4 * r->max, r->binary);
	for (size_t c = 0; c < r->nchunks; c++) {
		const struct chunk *ch = &r->chunks[c];
		enum bdat_verdict v = bdat_begin(&b, ch->size, ch->last, true, r->nrcpts);
		char wire[64];
		size_t wl = ch->blen, pos = 0;
		int done = 0;

		if (v != ch->want)
			fail_msg("%s (step %zu) chunk %zu: verdict %d", r->label, step, c, v);
		memcpy(wire, ch->bytes, ch->blen);
		memcpy(wire + wl, "NOOP\r\n", 6);   /* the next command follows at once */
		wl += 6;
		while (!done) {
			size_t n = wl - pos < step ? wl - pos : step;
			ssize_t k = bdat_feed(&b, wire + pos, n, sink_cb, &s, &done);
			assert_true(k >= 0 && (size_t)k <= n);
			pos += (size_t)k;
			if (!done)
				assert_int_equal((size_t)k, n);
		}
		if (pos != ch->blen)
			fail_msg("%s (step %zu) chunk %zu: consumed %zu", r->label, step, c, pos);
	}
	if (s.len != r->clen || memcmp(s.buf, r->content, r->clen) != 0)
		fail_msg("%s (step %zu): content (%zu octets)", r->label, step, s.len);
	if (b.complete != r->complete || b.bad_line_ending != r->bad_eol || b.nul_seen != r->nul)
		fail_msg("%s (step %zu): complete %d bad_eol %d nul %d", r->label, step, b.complete,
		    b.bad_line_ending, b.nul_seen);
	assert_true(bdat_in_use(&b));
}

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		for (size_t step = 1; step <= 32; step++)
			run_row(&rows[i], step);
}

static void test_verdicts(void **state)
{
	(void)state;
	struct bdat b;
	struct sink s = { .len = 0 };
	int done;

	bdat_init(&b, 1000, 5000, false);
	/* no MAIL: refused, read and thrown away, the transaction state untouched */
	assert_int_equal(bdat_begin(&b, 4, true, false, 0), BDAT_NO_MAIL);
	assert_int_equal(bdat_feed(&b, "abcdXX", 6, sink_cb, &s, &done), 4);
	assert_int_equal(done, 1);
	assert_int_equal(s.len, 0);
	assert_false(b.failed);
	assert_false(bdat_in_use(&b));
	/* a chunk too large to be worth reading: close */
	assert_int_equal(bdat_begin(&b, 5001, false, true, 1), BDAT_TOO_BIG_CLOSE);
	assert_int_equal(bdat_begin(&b, UINT64_MAX, true, true, 1), BDAT_AFTER_FAILURE);
	bdat_init(&b, 1000, 0, false);
	assert_int_equal(bdat_begin(&b, UINT64_MAX, true, true, 1), BDAT_TOO_BIG_CLOSE);
	bdat_init(&b, 1000, 0, false);
	assert_int_equal(bdat_begin(&b, 1001, true, true, 1), BDAT_TOO_BIG_CLOSE);   /* limit = max */
	/* replies */
	assert_null(bdat_reply(BDAT_ACCEPT));
	assert_string_equal(bdat_reply(BDAT_TOO_BIG), "552 5.3.4 Message size exceeds fixed limit");
	assert_string_equal(bdat_reply(BDAT_NO_MAIL), "503 5.5.1 Error: need MAIL command");
	assert_string_equal(bdat_reply(BDAT_NO_RCPT), "554 5.5.1 Error: no valid recipients");
	assert_non_null(strstr(bdat_reply(BDAT_AFTER_FAILURE), "554 5.5.0"));
	/* the sink failing stops the parser */
	bdat_init(&b, 1000, 0, false);
	assert_int_equal(bdat_begin(&b, 3, true, true, 1), BDAT_ACCEPT);
	s.fail = 1;
	assert_int_equal(bdat_feed(&b, "abc", 3, sink_cb, &s, &done), -1);
}

/* What a backend without CHUNKING gets: the BDAT content re-stuffed as DATA; a strict
 * reader ends only at the final "." line, whatever the chunks held. */
static int wire_cb(void *arg, const char *data, size_t len)
{
	return sink_cb(arg, data, len);
}

static void test_relay_as_data(void **state)
{
	(void)state;
	static const char *const payloads[] = {
		"a\r\n.\r\nMAIL FROM:<evil@x>\r\n",
		"a\n.\nMAIL FROM:<evil@x>\n",
		"a\r.\rMAIL\r",
		"\r\n.\r\n",
		".",
		"a\r\n\0.\r\nRCPT TO:<v@x>\r\n",
	};

	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		size_t plen = strlen(payloads[i]);
		if (i == 5)
			plen = 21;
		for (size_t cut = 0; cut <= plen; cut++) {
			struct bdat b;
			struct sink content = { .len = 0 }, wire = { .len = 0 };
			struct dotstuff d;
			int done;

			bdat_init(&b, 1000, 0, false);
			assert_int_equal(bdat_begin(&b, cut, false, true, 1), BDAT_ACCEPT);
			assert_int_equal(bdat_feed(&b, payloads[i], cut, sink_cb, &content, &done), (ssize_t)cut);
			assert_int_equal(bdat_begin(&b, plen - cut, true, true, 1), BDAT_ACCEPT);
			assert_int_equal(bdat_feed(&b, payloads[i] + cut, plen - cut, sink_cb, &content, &done),
			    (ssize_t)(plen - cut));
			assert_true(b.complete);
			assert_null(memchr(content.buf, '\0', content.len));
			dotstuff_init(&d);
			assert_int_equal(dotstuff_encode(&d, content.buf, content.len, wire_cb, &wire), 0);
			assert_int_equal(dotstuff_finish(&d, wire_cb, &wire), 0);
			/* strict reader */
			for (size_t k = 0, start = 0; k + 1 < wire.len; k++)
				if (wire.buf[k] == '\r' && wire.buf[k + 1] == '\n') {
					if (k - start == 1 && wire.buf[start] == '.' && k + 2 != wire.len)
						fail_msg("payload %zu cut %zu: ends early", i, cut);
					start = k + 2;
				}
			/* and only CRLF line endings */
			for (size_t k = 0; k < wire.len; k++)
				if ((wire.buf[k] == '\n' && (k == 0 || wire.buf[k - 1] != '\r')) ||
				    (wire.buf[k] == '\r' && (k + 1 >= wire.len || wire.buf[k + 1] != '\n')))
					fail_msg("payload %zu cut %zu: bare line ending on the wire", i, cut);
		}
	}
}

/* The way out: "BDAT <n> LAST" content normalised like the dot-stuffer's (minus stuffing),
 * split at every byte, and its precomputed length exact. */
static void test_crlf_encoder(void **state)
{
	static const struct { const char *label, *in, *want; } rows[] = {
		{ "CRLF lines pass", "a\r\nb\r\n", "a\r\nb\r\n" },
		{ "bare LF becomes CRLF", "a\nb\n", "a\r\nb\r\n" },
		{ "bare CR becomes CRLF", "a\rb\r", "a\r\nb\r\n" },
		{ "CR CR LF", "a\r\r\n", "a\r\n\r\n" },
		{ "last line gets its CRLF", "a\r\nlast", "a\r\nlast\r\n" },
		{ "dots are content, unstuffed", ".\r\n..x\r\n", ".\r\n..x\r\n" },
		{ "empty content", "", "" },
		{ "lone LF", "\n", "\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t n = strlen(rows[i].in);
		for (size_t split = 0; split <= n; split++) {
			struct bdat_crlf c;
			struct sink out = { .len = 0 };

			bdat_crlf_init(&c);
			assert_int_equal(bdat_crlf_encode(&c, rows[i].in, split, sink_cb, &out), 0);
			assert_int_equal(bdat_crlf_encode(&c, rows[i].in + split, n - split, sink_cb, &out), 0);
			assert_int_equal(bdat_crlf_finish(&c, sink_cb, &out), 0);
			if (out.len != strlen(rows[i].want) || memcmp(out.buf, rows[i].want, out.len) != 0)
				fail_msg("%s (split %zu): got %.*s", rows[i].label, split, (int)out.len, out.buf);
			assert_int_equal(bdat_crlf_length(rows[i].in, split, rows[i].in + split, n - split), out.len);
		}
	}
}

/* A backend's refusal of the BDAT chunk the relay sent for a DATA client (session 23: until
 * then "552 5.3.4 Chunk exceeds message size limit" reached a client that sent no chunk). */
static void test_reply_for_data(void **state)
{
	static const struct { const char *label; int code; const char *text, *want; } rows[] = {
		{ "Postfix's chunk size refusal, as the reply reader gives it", 552,
		  "552 5.3.4 Chunk exceeds message size limit", "5.3.4 Message size exceeds fixed limit" },
		{ "without the code", 552, "5.3.4 Chunk exceeds message size limit",
		  "5.3.4 Message size exceeds fixed limit" },
		{ "several lines with their codes", 552, "552-5.3.4 Chunk exceeds\r\n552 5.3.4 the limit",
		  "5.3.4 Message size exceeds fixed limit" },
		{ "code, no enhanced code", 552, "552 Chunk too large", "Message size exceeds fixed limit" },
		{ "an enhanced code of another class is none", 552, "552 4.3.4 chunk", "Message size exceeds fixed limit" },
		{ "temporary, X.3.4", 452, "4.3.4 chunk too big", "4.3.4 Message size exceeds fixed limit" },
		{ "no enhanced code, 552", 552, "Chunk too large", "Message size exceeds fixed limit" },
		{ "no enhanced code, other code", 554, "BDAT refused", "Message not accepted" },
		{ "another enhanced code", 554, "5.5.0 Error: BDAT not allowed here", "5.5.0 Message not accepted" },
		{ "three-digit parts", 550, "5.7.123 no chunks", "5.7.123 Message not accepted" },
		{ "X.3.40 is not X.3.4", 552, "5.3.40 chunk", "5.3.40 Message not accepted" },
		{ "a word after the code is no code", 552, "5.3.4x chunk", "Message size exceeds fixed limit" },
		{ "case does not matter", 552, "5.3.4 CHUNK", "5.3.4 Message size exceeds fixed limit" },
		{ "several lines", 552, "5.3.4 Chunk exceeds\r\n5.3.4 message size limit",
		  "5.3.4 Message size exceeds fixed limit" },
		{ "DATA's words pass", 552, "5.3.4 Message size exceeds fixed limit", NULL },
		{ "a content refusal passes", 550, "5.7.1 Spam detected", NULL },
		{ "empty", 554, "", NULL },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *got = bdat_reply_for_data(rows[i].code, rows[i].text, out, sizeof(out));
		const char *want = rows[i].want ? rows[i].want : rows[i].text;
		if (strcmp(got, want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rows[i].label, got, want);
		if (rows[i].want == NULL && got != rows[i].text)
			fail_msg("%s: not the text itself", rows[i].label);
	}
	assert_null(bdat_reply_for_data(552, NULL, out, sizeof(out)));
	/* cut to the buffer, NUL-terminated */
	char small[8];
	assert_string_equal(bdat_reply_for_data(552, "5.3.4 chunk", small, sizeof(small)), "5.3.4 M");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_relay_as_data),
		cmocka_unit_test(test_crlf_encoder),
		cmocka_unit_test(test_reply_for_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
