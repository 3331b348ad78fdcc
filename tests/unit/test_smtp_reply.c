/* test_smtp_reply.c — the backend reply reader (relay.c's and health.c's): every row is fed
 * whole, byte by byte and split at every position, and must give the same replies and the
 * same error each time; and the EHLO keyword parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp_reply.h"

/* Renders the replies of in[0..len) fed in pieces of at most step octets (step 0: split once
 * at split) as "code|enhanced|nlines|bare_lf|text\n" each, then "E:<error words>" after an
 * error or "P:<pending>" at the end. Returns the rendering (static). */
static const char *render(unsigned flags, const char *in, size_t len, size_t step, size_t split)
{
	static char out[65536];
	struct smtp_reply_reader rd;
	size_t o = 0, pos = 0;
	int err = 0;

	smtp_reply_init(&rd, flags);
	out[0] = '\0';
	while (pos < len && err == 0) {
		size_t n = step ? step : (pos < split ? split - pos : len - pos);
		if (n > len - pos)
			n = len - pos;
		const char *p = in + pos;
		size_t left = n;
		while (left > 0) {
			struct smtp_reply rep;
			size_t used = 99999;
			int rc = smtp_reply_feed(&rd, p, left, &used, &rep);
			if (rc < 0) {
				err = rc;
				break;
			}
			assert_true(used <= left);
			if (rc == 0) {
				assert_int_equal(used, left);
			} else {
				assert_int_equal(rc, 1);
				assert_true(used > 0);
				assert_true(strlen(rep.text) <= rep.len && rep.text[rep.len] == '\0');
				assert_true(rep.code >= 100 && rep.code <= 599);
				assert_true(o + rep.len + 64 < sizeof(out));
				char enh[12];
				bool has = smtp_reply_enhanced(&rep, enh);
				assert_int_equal(has, enh[0] != '\0');
				o += (size_t)snprintf(out + o, sizeof(out) - o, "%d|%s|%u|%d|%s\n", rep.code, enh,
				    rep.nlines, rep.bare_lf, rep.text);
			}
			p += used;
			left -= used;
		}
		pos += n;
	}
	if (err) {
		snprintf(out + o, sizeof(out) - o, "E:%s", smtp_reply_strerror(err));
		/* sticky: the reader stays failed */
		struct smtp_reply rep;
		size_t used = 7;
		assert_int_equal(smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep), err);
		assert_int_equal(used, 0);
	} else {
		snprintf(out + o, sizeof(out) - o, "P:%zu", smtp_reply_pending(&rd));
	}
	smtp_reply_free(&rd);
	return out;
}

/* Every way of feeding in gives want. */
static void check_all(const char *label, unsigned flags, const char *in, size_t len, const char *want)
{
	char whole[65536];

	snprintf(whole, sizeof(whole), "%s", render(flags, in, len, len ? len : 1, 0));
	if (strcmp(whole, want) != 0)
		fail_msg("%s: whole\n got: %s\nwant: %s", label, whole, want);
	const char *bytes = render(flags, in, len, 1, 0);
	if (strcmp(bytes, want) != 0)
		fail_msg("%s: octet by octet\n got: %s\nwant: %s", label, bytes, want);
	for (size_t s = 1; len < 4096 && s < len; s++) {
		const char *got = render(flags, in, len, 0, s);
		if (strcmp(got, want) != 0)
			fail_msg("%s: split at %zu\n got: %s\nwant: %s", label, s, got, want);
	}
}

struct row {
	const char *label;
	const char *in;
	unsigned flags;
	const char *want;
};

static const struct row rows[] = {
	{ "greeting", "220 mx.test ESMTP\r\n", 0, "220||1|0|220 mx.test ESMTP\nP:0" },
	{ "multi-line EHLO reply", "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0,
	  "250||3|0|250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\nP:0" },
	{ "code alone ends a reply", "250\r\n", 0, "250||1|0|250\nP:0" },
	{ "code alone in a multi-line reply", "250-a\r\n250\r\n", 0, "250||2|0|250-a\r\n250\nP:0" },
	{ "two replies in one read", "250 2.1.0 ok\r\n354 go\r\n", 0, "250|2.1.0|1|0|250 2.1.0 ok\n354||1|0|354 go\nP:0" },
	{ "bare LF taken", "250-a\n250 b\r\n", 0, "250||2|1|250-a\r\n250 b\nP:0" },
	{ "bare LF refused (strict)", "250-a\n250 b\r\n", SMTP_REPLY_STRICT_LF, "E:bare LF in a reply" },
	{ "CRLF under strict", "250 b\r\n", SMTP_REPLY_STRICT_LF, "250||1|0|250 b\nP:0" },
	{ "RFC 5321 4.2.1: the code changes mid-reply", "250-a\r\n550 b\r\n", 0,
	  "E:reply code changes within a reply" },
	{ "the code changes on a continuation line", "550-a\r\n250-b\r\n250 c\r\n", 0,
	  "E:reply code changes within a reply" },
	{ "a reply before the bad one is given", "220 hi\r\n250-a\r\n251 b\r\n", 0,
	  "220||1|0|220 hi\nE:reply code changes within a reply" },
	{ "non-digit code", "25x ok\r\n", 0, "E:malformed reply" },
	{ "four digits", "2500 ok\r\n", 0, "E:malformed reply" },
	{ "first digit 6", "600 ok\r\n", 0, "E:malformed reply" },
	{ "first digit 0", "099 ok\r\n", 0, "E:malformed reply" },
	{ "first digit 1", "199 ok\r\n", 0, "199||1|0|199 ok\nP:0" },
	{ "short line", "25\r\n", 0, "E:malformed reply" },
	{ "empty line", "\r\n", 0, "E:malformed reply" },
	{ "text without a code", "hello there\r\n", 0, "E:malformed reply" },
	{ "enhanced code", "550 5.7.1 no\r\n", 0, "550|5.7.1|1|0|550 5.7.1 no\nP:0" },
	{ "enhanced code, three-digit parts", "550 5.123.456 x\r\n", 0, "550|5.123.456|1|0|550 5.123.456 x\nP:0" },
	{ "enhanced code alone", "250 2.0.0\r\n", 0, "250|2.0.0|1|0|250 2.0.0\nP:0" },
	{ "enhanced class not the code's", "550 4.7.1 x\r\n", 0, "550||1|0|550 4.7.1 x\nP:0" },
	{ "enhanced part of four digits", "250 2.1234.0 x\r\n", 0, "250||1|0|250 2.1234.0 x\nP:0" },
	{ "enhanced code glued to text", "250 2.1.0ok\r\n", 0, "250||1|0|250 2.1.0ok\nP:0" },
	{ "enhanced code of a 3xx: none", "354 3.0.0 go\r\n", 0, "354||1|0|354 3.0.0 go\nP:0" },
	{ "enhanced code of the last line", "250-2.1.0 a\r\n250 2.1.5 b\r\n", 0,
	  "250|2.1.5|2|0|250-2.1.0 a\r\n250 2.1.5 b\nP:0" },
	{ "a partial reply is pending", "250-a\r\n250", 0, "P:8" },
	{ "a partial line is pending", "220 hel", 0, "P:7" },
};

/* Rows whose input holds NULs: the length from the literal. */
struct nul_row {
	const char *label;
	const char *in;
	size_t len;
	const char *want;
};
#define NUL_ROW(label, in, want) { label, in, sizeof(in) - 1, want }

static const struct nul_row nul_rows[] = {
	NUL_ROW("NUL in place of the separator", "250\0ok\r\n", "E:malformed reply"),
	NUL_ROW("NUL in a code", "2\0000 ok\r\n", "E:malformed reply"),
	/* a NUL in the text is shown as '?' (a C string would end there: the client would see
	 * the text cut short) */
	NUL_ROW("NUL in the text", "250 2.0.0 Ok\0 queued as X1\r\n", "250|2.0.0|1|0|250 2.0.0 Ok? queued as X1\nP:0"),
	NUL_ROW("NULs in a multi-line reply", "250-a\0\0b\r\n250 \0\r\n", "250||2|0|250-a??b\r\n250 ?\nP:0"),
};

/* Every other octet that is not printable text is shown as '?' too, as Postfix's smtp
 * client shows a reply (smtp_chat.c: printable(..., '?'): ASCII isprint or well-formed
 * UTF-8): a backend's ESC sequence, BEL, lone CR, DEL or C1 control must not reach the
 * client's terminal or log viewer. UTF-8 text stays as it is (RFC 6531). */
static const struct row ctl_rows[] = {
	{ "ESC sequence in the text", "550 5.1.1 \x1b[31mno\x1b[0m such user\r\n", 0,
	  "550|5.1.1|1|0|550 5.1.1 ?[31mno?[0m such user\nP:0" },
	{ "BEL and a backspace", "451 4.3.0 wait\x07\x08\r\n", 0, "451|4.3.0|1|0|451 4.3.0 wait??\nP:0" },
	{ "a lone CR inside a line", "250 a\rb\r\n", 0, "250||1|0|250 a?b\nP:0" },
	{ "CR CR LF: the first CR is no text", "250 a\r\r\n", 0, "250||1|0|250 a?\nP:0" },
	{ "a CR before a bare LF", "250-a\r\r\n250 b\n", 0, "250||2|1|250-a?\r\n250 b\nP:0" },
	{ "DEL", "250 a\x7f b\r\n", 0, "250||1|0|250 a? b\nP:0" },
	{ "TAB (not isprint, as in Postfix)", "250 a\tb\r\n", 0, "250||1|0|250 a?b\nP:0" },
	{ "a form feed and a vertical tab", "250 a\x0c\x0b\r\n", 0, "250||1|0|250 a??\nP:0" },
	{ "C1 octets, not UTF-8", "250 a\x9b" "31m\x85\r\n", 0, "250||1|0|250 a?31m?\nP:0" },
	{ "C1 controls written in UTF-8 (U+009B CSI, U+0085 NEL)", "250 a\xc2\x9b" "31m\xc2\x85\r\n", 0,
	  "250||1|0|250 a??31m??\nP:0" },
	{ "UTF-8 text stays", "550 5.1.1 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\r\n", 0,
	  "550|5.1.1|1|0|550 5.1.1 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\nP:0" },
	{ "U+00A0 (the first after C1) stays", "250 a\xc2\xa0" "b\r\n", 0, "250||1|0|250 a\xc2\xa0" "b\nP:0" },
	{ "latin-1, not UTF-8", "550 caf\xe9 ferm\xe9\r\n", 0, "550||1|0|550 caf? ferm?\nP:0" },
	{ "an overlong form", "250 a\xc0\xaf" "b\r\n", 0, "250||1|0|250 a??b\nP:0" },
	{ "a surrogate", "250 a\xed\xa0\x80\r\n", 0, "250||1|0|250 a???\nP:0" },
	{ "a sequence cut by the line's end", "250 a\xe2\x82\r\n", 0, "250||1|0|250 a??\nP:0" },
	{ "a lead octet, then ASCII: the ASCII stays", "250 \xe2" "ab\r\n", 0, "250||1|0|250 ?ab\nP:0" },
	{ "ESC in every line of a multi-line reply", "250-\x1b]0;x\x07\r\n250 ok\x1b\r\n", 0,
	  "250||2|0|250-?]0;x?\r\n250 ok?\nP:0" },
	{ "an ESC in the code: malformed as ever", "2\x1b" "0 ok\r\n", 0, "E:malformed reply" },
};

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		check_all(rows[i].label, rows[i].flags, rows[i].in, strlen(rows[i].in), rows[i].want);
	}
	for (size_t i = 0; i < sizeof(nul_rows) / sizeof(nul_rows[0]); i++)
		check_all(nul_rows[i].label, 0, nul_rows[i].in, nul_rows[i].len, nul_rows[i].want);
	for (size_t i = 0; i < sizeof(ctl_rows) / sizeof(ctl_rows[0]); i++)
		check_all(ctl_rows[i].label, ctl_rows[i].flags, ctl_rows[i].in, strlen(ctl_rows[i].in), ctl_rows[i].want);
}

/* The bounds: a line of SMTP_REPLY_LINE_MAX octets passes (its CR may come in a later read),
 * one more fails at once (no newline needed); the text and line count of a reply. */
static void test_limits(void **state)
{
	static char in[20000], want[20100];
	size_t n;

	(void)state;
	/* exactly 1,023 octets */
	n = (size_t)snprintf(in, sizeof(in), "250 ");
	memset(in + n, 'y', SMTP_REPLY_LINE_MAX - n);
	n = SMTP_REPLY_LINE_MAX;
	in[n] = '\0';
	snprintf(want, sizeof(want), "250||1|0|%s\nP:0", in);
	memcpy(in + n, "\r\n", 3);
	check_all("a line of exactly 1,023 octets", 0, in, n + 2, want);
	check_all("a line of exactly 1,023 octets, no line end yet", 0, in, n, "P:1023");
	in[n] = '\n';
	snprintf(want, sizeof(want), "250||1|1|%.*s\nP:0", (int)n, in);
	check_all("a line of exactly 1,023 octets and a bare LF", 0, in, n + 1, want);
	/* 1,024: fails, with or without its line end */
	memcpy(in + n, "y\r\n", 4);
	check_all("a line of 1,024 octets", 0, in, n + 3, "E:reply line too long");
	check_all("1,024 octets, no newline", 0, in, n + 1, "E:reply line too long");
	/* 1,023 and a CR, then not an LF */
	memcpy(in + n, "\rz\r\n", 5);
	check_all("a CR past the line's bound that does not end it", 0, in, n + 4, "E:reply line too long");
	check_all("a CR past the bound, the LF not yet in", 0, in, n + 1, "P:1024");
	/* the text of a multi-line reply: 8 lines of 1,000 octets and a ninth */
	n = 0;
	for (int i = 0; i < 9; i++) {
		n += (size_t)snprintf(in + n, sizeof(in) - n, "250%c", i == 8 ? ' ' : '-');
		memset(in + n, 'x', 996);
		n += 996;
		memcpy(in + n, "\r\n", 2);
		n += 2;
	}
	check_all("a reply past 8,192 octets", 0, in, n, "E:reply too long");
	/* eight lines fit (8 * 1000 + 7 * 2 < 8192) */
	size_t eight = 8 * 1002;
	in[eight - 1002 + 3] = ' ';
	const char *got = render(0, in, eight, eight, 0);
	assert_true(strncmp(got, "250||8|0|", 9) == 0);
	/* the lines of a reply: 1,000 pass, 1,001 fail */
	n = 0;
	for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "250-\r\n");
	n += (size_t)snprintf(in + n, sizeof(in) - n, "250 \r\n");
	got = render(0, in, n, n, 0);
	assert_true(strncmp(got, "250||1000|0|", 12) == 0);
	got = render(0, in, n, 1, 0);
	assert_true(strncmp(got, "250||1000|0|", 12) == 0);
	n -= 6;
	n += (size_t)snprintf(in + n, sizeof(in) - n, "250-\r\n250 \r\n");
	assert_string_equal(render(0, in, n, n, 0), "E:reply has too many lines");
	assert_string_equal(render(0, in, n, 1, 0), "E:reply has too many lines");
}

/* A reader carries on after a reply, and a reset drops a partial one and an error. */
static void test_reuse(void **state)
{
	struct smtp_reply_reader rd;
	struct smtp_reply rep;
	size_t used;

	(void)state;
	smtp_reply_init(&rd, 0);
	assert_int_equal(smtp_reply_feed(&rd, "250-a\r\n250 b\r\n220", 17, &used, &rep), 1);
	assert_int_equal(used, 14);
	assert_string_equal(rep.text, "250-a\r\n250 b");
	assert_int_equal(smtp_reply_feed(&rd, "220", 3, &used, &rep), 0);
	assert_int_equal(smtp_reply_pending(&rd), 3);
	assert_int_equal(smtp_reply_feed(&rd, " x\r\n", 4, &used, &rep), 1);
	assert_string_equal(rep.text, "220 x");
	assert_int_equal(rep.nlines, 1);
	assert_int_equal(smtp_reply_feed(&rd, "bad\r\n", 5, &used, &rep), -SMTP_REPLY_MALFORMED);
	assert_int_equal(smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep), -SMTP_REPLY_MALFORMED);
	smtp_reply_reset(&rd);
	assert_int_equal(smtp_reply_feed(&rd, "250-a\r\n", 7, &used, &rep), 0);
	smtp_reply_reset(&rd);
	assert_int_equal(smtp_reply_pending(&rd), 0);
	assert_int_equal(smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep), 1);
	assert_string_equal(rep.text, "250 ok");
	assert_int_equal(rep.nlines, 1);
	smtp_reply_free(&rd);
	smtp_reply_free(&rd);	/* twice: a no-op */
}

/* The censoring of a reply's text eight octets at a time (smtp_reply_text8) against the
 * octet-at-a-time rule: every octet at every place of lines of 1 to 40 octets of text ('?'
 * for one that is no printable ASCII, as a lone octet of 0x80 and up is no UTF-8), and a
 * UTF-8 letter (kept) and a C1 control in UTF-8 (both octets '?') at every place. */
static void test_printable_places(void **state)
{
	struct smtp_reply_reader rd;
	struct smtp_reply rep;
	char line[64], want[64];
	size_t used;

	(void)state;
	smtp_reply_init(&rd, 0);
	for (size_t n = 1; n <= 40; n++) {
		for (size_t at = 0; at < n; at++) {
			for (int c = 0; c < 258; c++) {
				size_t k = c < 256 ? 1 : 2;
				if (c == '\n' || at + k > n)
					continue;
				memcpy(line, "250 ", 4);
				memset(line + 4, 'a', n);
				memcpy(want, line, 4 + n);
				if (c == 256) {		/* U+00E9 */
					memcpy(line + 4 + at, "\xc3\xa9", 2);
					memcpy(want + 4 + at, "\xc3\xa9", 2);
				} else if (c == 257) {	/* U+0085 */
					memcpy(line + 4 + at, "\xc2\x85", 2);
					memcpy(want + 4 + at, "??", 2);
				} else {
					line[4 + at] = (char)c;
					want[4 + at] = c >= 0x20 && c < 0x7f ? (char)c : '?';
				}
				memcpy(line + 4 + n, "\r\n", 2);
				want[4 + n] = '\0';
				assert_int_equal(smtp_reply_feed(&rd, line, 4 + n + 2, &used, &rep), 1);
				if (strcmp(rep.text, want) != 0)
					fail_msg("length %zu, octet 0x%x at %zu: \"%s\"", n, c, at, rep.text);
			}
		}
	}
	smtp_reply_free(&rd);
}

static void test_caps(void **state)
{
	struct smtp_caps c;

	(void)state;
	smtp_caps_parse("250-mx.test greets you\r\n250-pipelining\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n"
	    "250 XCLIENT name addr PROTO HELO LOGIN", &c);
	assert_int_equal(c.bits, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 |
	    SMTP_CAP_STARTTLS | SMTP_CAP_ENHANCED | SMTP_CAP_DSN | SMTP_CAP_CHUNKING | SMTP_CAP_XCLIENT);
	assert_string_equal(c.xclient_attrs, " NAME ADDR PROTO HELO LOGIN");
	assert_true(smtp_caps_xclient_has(&c, "NAME"));
	assert_true(smtp_caps_xclient_has(&c, "LOGIN"));
	assert_true(smtp_caps_xclient_has(&c, "ADDR"));
	assert_false(smtp_caps_xclient_has(&c, "PORT"));
	assert_false(smtp_caps_xclient_has(&c, "NAM"));
	/* a word, not a piece of the list: "" and a text with a blank are no attribute (both
	 * were taken, found at the list's start) */
	assert_false(smtp_caps_xclient_has(&c, ""));
	assert_false(smtp_caps_xclient_has(&c, " NAME"));
	assert_false(smtp_caps_xclient_has(&c, "NAME ADDR"));
	/* keywords are words: a prefix or a longer word is not the extension */
	smtp_caps_parse("250-x\r\n250-PIPELININGX\r\n250-SIZ\r\n250 XCLIENTS NAME", &c);
	assert_int_equal(c.bits, 0);
	/* REVERSE_NAME does not offer NAME */
	smtp_caps_parse("250-x\r\n250 XCLIENT REVERSE_NAME", &c);
	assert_int_equal(c.bits, SMTP_CAP_XCLIENT);
	assert_true(smtp_caps_xclient_has(&c, "REVERSE_NAME"));
	assert_false(smtp_caps_xclient_has(&c, "NAME"));
	/* RFC 5321 4.1.1.1: the first line is the server's name and a greeting, never a
	 * keyword: a server named PIPELINING.example, or greeting "mx STARTTLS ready", offers
	 * neither; a one-line reply offers nothing */
	smtp_caps_parse("250-PIPELINING\r\n250 8BITMIME", &c);
	assert_int_equal(c.bits, SMTP_CAP_8BITMIME);
	smtp_caps_parse("250 STARTTLS", &c);
	assert_int_equal(c.bits, 0);
	smtp_caps_parse("250 XCLIENT NAME ADDR", &c);
	assert_int_equal(c.bits, 0);
	assert_string_equal(c.xclient_attrs, "");
	smtp_caps_parse("250-STARTTLS ready, mx.example\r\n250-SIZE 100\r\n250 PIPELINING", &c);
	assert_int_equal(c.bits, SMTP_CAP_SIZE | SMTP_CAP_PIPELINING);
	smtp_caps_parse("250-CHUNKING\r\n250-DSN\r\n250 CHUNKING", &c);
	assert_int_equal(c.bits, SMTP_CAP_DSN | SMTP_CAP_CHUNKING);
	/* an XCLIENT list past its buffer is cut, never overrun */
	char big[2000];
	int n = snprintf(big, sizeof(big), "250-mx.test\r\n250 XCLIENT");
	while (n < 1900)
		n += snprintf(big + n, sizeof(big) - (size_t)n, " NAME");
	smtp_caps_parse(big, &c);
	assert_int_equal(strlen(c.xclient_attrs), sizeof(c.xclient_attrs) - 1);
	/* ... and cut at a word's end: a word across octet 255 is left out, not kept in part
	 * (" ... PROTOCOL" cut to " ... PROTO" offered PROTO) */
	n = snprintf(big, sizeof(big), "250-mx.test\r\n250 XCLIENT");
	for (int w = 0; w < 49; w++)	/* 245 octets, then " ADD": 249 */
		n += snprintf(big + n, sizeof(big) - (size_t)n, " NAME");
	n += snprintf(big + n, sizeof(big) - (size_t)n, " ADD");
	snprintf(big + n, sizeof(big) - (size_t)n, " PROTOCOL HELO");
	smtp_caps_parse(big, &c);
	assert_true(smtp_caps_xclient_has(&c, "NAME"));
	assert_false(smtp_caps_xclient_has(&c, "PROTO"));
	assert_int_equal(strlen(c.xclient_attrs), 249);
	assert_string_equal(c.xclient_attrs + 240, " NAME ADD");
	/* a word ending at octet 255 is kept whole */
	n = snprintf(big, sizeof(big), "250-mx.test\r\n250 XCLIENT");
	for (int w = 0; w < 49; w++)	/* 245 octets, then " ADD": 249 */
		n += snprintf(big + n, sizeof(big) - (size_t)n, " NAME");
	n += snprintf(big + n, sizeof(big) - (size_t)n, " ADD");
	snprintf(big + n, sizeof(big) - (size_t)n, " PROTO HELO");
	smtp_caps_parse(big, &c);
	assert_true(smtp_caps_xclient_has(&c, "PROTO"));
	assert_false(smtp_caps_xclient_has(&c, "HELO"));
	assert_int_equal(strlen(c.xclient_attrs), 255);
	/* one word longer than the buffer: no attribute */
	n = snprintf(big, sizeof(big), "250-mx.test\r\n250 XCLIENT ");
	memset(big + n, 'A', 300);
	big[n + 300] = '\0';
	smtp_caps_parse(big, &c);
	assert_int_equal(c.bits, SMTP_CAP_XCLIENT);
	assert_string_equal(c.xclient_attrs, "");
	/* no text, a code alone, lines of 4 octets */
	smtp_caps_parse("", &c);
	assert_int_equal(c.bits, 0);
	smtp_caps_parse("250", &c);
	assert_int_equal(c.bits, 0);
	smtp_caps_parse("250-\r\n250 ", &c);
	assert_int_equal(c.bits, 0);
	/* a keyword of 63 octets and more is never one we know */
	smtp_caps_parse("250-x\r\n250 PIPELINING_______________________________________________________________", &c);
	assert_int_equal(c.bits, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_printable_places),
		cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
