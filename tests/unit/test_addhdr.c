/* test_addhdr.c — SpamAssassin's add_header fields: template tags, Util::wrap, the folding
 * of a field and the RFC 2047 encoding of a line that is not printable ASCII. The expected
 * strings are what SpamAssassin 4.0.1's own functions return for the same input (perl
 * -MMail::SpamAssassin::PerMsgStatus: mime_encode_header, Util::wrap). Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "headers.h"
#include "rules/addhdr.h"

static const char *const tests3[] = { "LOC_SPAM", "NO_RECEIVED", "NO_RELAYS" };
static const double scores3[] = { 20, -0.001, -0.001 };

static struct addhdr_vals vals(double score)
{
	struct addhdr_vals v = { .score = score, .required = 5.0, .tests = tests3,
		.test_scores = scores3, .ntests = 3, .autolearn = "disabled",
		.version = "mxgate-9.9", .hostname = "mx.example.test", .bayes = -1,
		.report = "*  1.0 A desc\n", .now = 0 };
	return v;
}

struct tag_row { const char *label; double score; const char *tmpl, *want; };

static const struct tag_row tag_rows[] = {
	{ "yes/no", 20, "_YESNO_ _YESNOCAPS_", "Yes YES" },
	{ "yes/no of ham", 1, "_YESNO_ _YESNOCAPS_", "No NO" },
	{ "yes/no with its words", 20, "_YESNO(spammy,hammy)_", "spammy" },
	{ "yes/no with its words, ham", 1, "_YESNO(spammy,hammy)_ _YESNOCAPS(s,h)_", "hammy H" },
	{ "yes/no with a spam word alone: ham says No", 1, "_YESNO(spammy)_", "No" },
	{ "score, hits and required", 20, "_SCORE_/_HITS_/_REQD_", "20.0/20.0/5.0" },
	{ "score padded with zeros", 1.5, "_SCORE(00)_", "001.5" },
	{ "score padded with spaces", 1.5, "[_SCORE(  )_]", "[  1.5]" },
	{ "a pad of mixed characters is none", 1.5, "_SCORE(0 )_", "1.5" },
	{ "a ham score never reaches required", 4.96, "_SCORE_", "4.9" },
	{ "negative zero as Perl prints it", -0.002, "_SCORE_", "-0.0" },
	{ "stars", 3.9, "_STARS_|_STARS(+)_|_STARS()_", "***|+++|***" },
	{ "stars of a negative score", -3, "[_STARS_]", "[]" },
	{ "stars at most 50", 1000, "_STARS(ab)_",
	  "abababababababababababababababababababababababababababababababababababababababababababababababababab" },
	{ "tests", 20, "_TESTS_ _TESTS(+)_", "LOC_SPAM,NO_RECEIVED,NO_RELAYS LOC_SPAM+NO_RECEIVED+NO_RELAYS" },
	{ "tests with scores", 20, "_TESTSSCORES(, )_", "LOC_SPAM=20, NO_RECEIVED=-0.001, NO_RELAYS=-0.001" },
	{ "version, hostname, autolearn, bayes", 20, "_VERSION_ _HOSTNAME_ _AUTOLEARN_ _BAYES_",
	  "mxgate-9.9 mx.example.test disabled 0.5" },
	{ "report", 20, "_REPORT_", "\n*  1.0 A desc\n" },
	{ "unknown tags as written", 20, "_PREVIEW_ _HEADER(From)_ _lower_ __ _", "_PREVIEW_ _HEADER(From)_ _lower_ __ _" },
	/* Perl's s{_([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:\(.*?\))?)_}{...}ge on the same text */
	{ "a tag's name with inner underscores", 20, "_SCORE_REQD_ _SCORE__REQD_", "_SCORE_REQD_ 20.05.0" },
	{ "adjacent tags", 20, "_YESNO__SCORE_", "Yes20.0" },
	{ "an argument ends at the first )_", 20, "_YESNO(x)_(y)_", "x(y)_" },
	{ "ADDEDHEADER is refused (SpamAssassin's bug 6278)", 20, "_ADDEDHEADER_", "_ADDEDHEADER_" },
};

static void test_tags(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(tag_rows) / sizeof(tag_rows[0]); i++) {
		struct addhdr_vals v = vals(tag_rows[i].score);
		char *got = addhdr_expand(tag_rows[i].tmpl, &v);

		if (strcmp(got, tag_rows[i].want) != 0)
			fail_msg("%s: \"%s\" != \"%s\"", tag_rows[i].label, got, tag_rows[i].want);
		free(got);
	}
}

static void test_bayes_and_unknown(void **state)
{
	struct addhdr_vals v = vals(1);
	char *got, buf[128];

	(void)state;
	v.bayes = 0.98765;
	got = addhdr_expand("_BAYES_", &v);
	assert_string_equal(got, "0.9877");
	free(got);
	assert_int_equal(addhdr_unknown_tags("_YESNO_ _PREVIEW_ x _HEADER(From)_ _LANGUAGES_ "
	    "_SUBVERSION_ _RELAYSTRUSTED_ _LASTEXTERNALIP_ _LASTEXTERNALREVIP_", buf, sizeof(buf)), 2);
	assert_string_equal(buf, "_LANGUAGES_, _LASTEXTERNALREVIP_");
	assert_int_equal(addhdr_unknown_tags("_YESNO_ _SCORE(0)_", buf, sizeof(buf)), 0);
}

/* The header view's tags: each template's tags collected once (their exact text), then
 * expanded from the values the caller read; _SUBVERSION_ from the vals. */
static void test_message_tags(void **state)
{
	struct addhdr_vals v = vals(1);
	struct addhdr_mtag *m = NULL;
	size_t n = 0;
	char *got;

	(void)state;
	addhdr_mtags_collect("_HEADER(From)_ _RELAYSTRUSTED_ _YESNO_ _HEADER(From:addr)_", &m, &n);
	addhdr_mtags_collect("_HEADER(From)_ _LASTEXTERNALIP_ _LANGUAGES_", &m, &n);
	addhdr_mtags_collect(NULL, &m, &n);
	assert_int_equal(n, 4);
	assert_string_equal(m[0].tag, "HEADER(From)");
	assert_string_equal(m[1].tag, "RELAYSTRUSTED");
	assert_string_equal(m[2].tag, "HEADER(From:addr)");
	assert_string_equal(m[3].tag, "LASTEXTERNALIP");
	m[0].value = strdup("Alice <a@example.org>\n");
	m[1].value = strdup("[ ip=10.0.0.1 ]");
	m[2].value = strdup("a@example.org");
	/* m[3] left unread: written as is */
	v.mtags = m;
	v.nmtags = n;
	v.subversion = "1.2.3";
	got = addhdr_expand("_HEADER(From:addr)_|_RELAYSTRUSTED_|_LASTEXTERNALIP_|_SUBVERSION_|"
	    "_HEADER(To)_", &v);
	assert_string_equal(got, "a@example.org|[ ip=10.0.0.1 ]|_LASTEXTERNALIP_|1.2.3|_HEADER(To)_");
	free(got);
	addhdr_mtags_free(m, n);
}

struct field_row { const char *label, *name, *tmpl, *want; };

static const struct field_row field_rows[] = {
	{ "folded after a comma at 79 columns", "Custom",
	  "spammy score=_SCORE_/_REQD_ hits=_HITS_ tests=_TESTSSCORES(,)_",
	  "spammy score=20.0/5.0 hits=20.0 tests=LOC_SPAM=20,\n\tNO_RECEIVED=-0.001,NO_RELAYS=-0.001" },
	{ "a line break folds, white space around it dropped", "Multi", "first  \n  second _YESNO_\n",
	  "first\n\tsecond Yes" },
	{ "the report starts on the next line", "Report", "_REPORT_", "\n\t*  1.0 A desc" },
	{ "a line not printable ASCII: Q encoding", "X", "caf\xc3\xa9 au lait",
	  "=?UTF-8?Q?caf=C3=A9?= au lait" },
	{ "mostly 8-bit: B encoding, ASCII around it kept", "X",
	  "Subject is \xc3\xa4\xc3\xb6\xc3\xbc\xc3\xa4\xc3\xb6\xc3\xbc\xc3\xa4\xc3\xb6\xc3\xbc tail end\nplain line",
	  "Subject is =?UTF-8?B?w6TDtsO8w6TDtsO8w6TDtsO8?= tail end\n\tplain line" },
	{ "Q's specials counted: B", "X", "\xc3\xa4=?_", "=?UTF-8?B?w6Q9P18=?=" },
	{ "an empty value", "Level", "_STARS_", "" },
};

static void test_fields(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(field_rows) / sizeof(field_rows[0]); i++) {
		struct addhdr_vals v = vals(i == sizeof(field_rows) / sizeof(field_rows[0]) - 1 ? 0.5 : 20);
		char *got = addhdr_value(field_rows[i].name, field_rows[i].tmpl, &v);

		if (strcmp(got, field_rows[i].want) != 0)
			fail_msg("%s: \"%s\" != \"%s\"", field_rows[i].label, got, field_rows[i].want);
		free(got);
	}
}

static void test_report_lines(void **state)
{
	char *buf = NULL;
	size_t len = 0;

	(void)state;
	/* check_cleanup: %4.0f from 10 on, %4.1f below; the description wrapped at 75 */
	addhdr_report_add(&buf, &len, 20, "LOC_SPAM", "", "A local test rule whose description "
	    "is long enough to be wrapped by SpamAssassin report at 75 columns");
	addhdr_report_add(&buf, &len, -0.001, "NO_RELAYS", "BODY: ", "x");
	addhdr_report_add(&buf, &len, 2.5, "R", "URI: ", "");
	assert_string_equal(buf, "*   20 LOC_SPAM A local test rule whose description is long "
	    "enough to be\n*      wrapped by SpamAssassin report at 75 columns\n"
	    "* -0.0 NO_RELAYS BODY: x\n*  2.5 R URI: \n");
	assert_int_equal(len, strlen(buf));
	free(buf);
}

struct wrap_row { const char *s, *prefix, *first; size_t width; bool after_comma; const char *want; };

static const struct wrap_row wrap_rows[] = {
	{ "a  b\tc,d ,e", "\t", "X-Spam: ", 10, true, "X-Spam: a\n\n\tb\n\tc,\n\td\n\t,e" },
	{ "a  b\tc,d ,e", "\t", "X-Spam: ", 10, false, "X-Spam: a\n\t b\n\n\tc,d\n\n\t,e" },
	{ "word  word\t\tword   ", ">", "", 6, false, "word\n>word\n>\n>\n>\n>word\n>  " },
	{ "a,,b, ,c", ">", "", 2, true, "a,\n>,\n>b,\n>\n>,\n>c" },
	{ " , ", "  ", "", 0, true, "\n\n  ,\n\n   " },
	{ "tests=A,B,C_LONG_RULE_NAME,D", "\t", "tests=", 12, true,
	  "tests=tests=A,\n\tB,\n\tC_LONG_RULE_NAME,\n\tD" },
};

static void test_wrap(void **state)
{
	char *w;

	(void)state;
	w = addhdr_wrap("aaa bbb ccc", ">", "", 7, false);
	assert_string_equal(w, "aaa bbb\n> ccc");   /* as Util::wrap: the blank stays */
	free(w);
	/* a prefix wider than the width: SpamAssassin's wrap never ends there, ours does */
	w = addhdr_wrap("aaa bbb ccc", "\t", "", 7, false);
	assert_non_null(strstr(w, "ccc"));
	free(w);
	w = addhdr_wrap("", "\t", "", 7, true);
	assert_string_equal(w, "");
	free(w);
	w = addhdr_wrap("a,b,c,", ">", "", 3, true);
	assert_string_equal(w, "a,\n>b,\n>c,");
	free(w);
	/* runs of blanks, tabs (8 columns), empty pieces after commas, a line of the prefix
	 * and blanks trimmed to nothing (the callers drop such lines): the output of the
	 * piece-list implementation before the one-buffer one, octet for octet */
	for (size_t i = 0; i < sizeof(wrap_rows) / sizeof(wrap_rows[0]); i++) {
		w = addhdr_wrap(wrap_rows[i].s, wrap_rows[i].prefix, wrap_rows[i].first,
		    wrap_rows[i].width, wrap_rows[i].after_comma);
		assert_string_equal(w, wrap_rows[i].want);
		free(w);
	}
}

/* get_content_preview over the body lines (the Subject's left out), and the summary lines
 * of PerMsgStatus::_build_summary: SpamAssassin 4.0.1's code run on the same input (perl,
 * Util::wrap). */
struct preview_row { const char *label; const char *lines[5]; size_t n; const char *want; };

static const struct preview_row preview_rows[] = {
	{ "three lines, an Original Message and a rule of underscores cut",
	  { "Hello Bob,", "the minutes -----Original Message----- From: x", "______________ end",
	    "fourth" }, 4, "Hello Bob, the minutes end " },
	{ "a line over 200 characters cut there, the rest wrapped at 75",
	  { "word word word word word word word word word word word word word word word word "
	    "word word word word word word word word word word word word word word word word "
	    "word word word word word word word word word word word word word word word word "
	    "word word word word word word word word word word word word", "two" }, 2,
	  "word word word word word word word word word word word word\n   word word word word "
	  "word word word word word word word word word word word\n   word word word word word word "
	  "word word word word word word word [...] " },
	{ "the MIME preamble dropped, two long words each on a line",
	  { "This is a multi-part message in MIME format.",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }, 2,
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	  "   bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n   " },
	{ "no body text", { NULL }, 0, "" },
};

static void test_preview(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(preview_rows) / sizeof(*preview_rows); i++) {
		const struct preview_row *r = &preview_rows[i];
		size_t lens[5];
		char *got;

		for (size_t k = 0; k < r->n; k++)
			lens[k] = strlen(r->lines[k]);
		got = addhdr_preview(r->lines, lens, r->n);
		if (strcmp(got, r->want) != 0)
			fail_msg("%s:\n got  [%s]\n want [%s]", r->label, got, r->want);
		free(got);
	}
}

static void test_summary(void **state)
{
	char *buf = NULL;
	size_t len = 0;

	(void)state;
	addhdr_summary_add(&buf, &len, 20, "LOC_SPAM", "", "A local test rule whose description "
	    "is long enough to be wrapped by SpamAssassin's report at 75 columns");
	addhdr_summary_add(&buf, &len, -0.001, "NO_RELAYS", "BODY: ",
	    "Informational: message was not relayed via SMTP");
	addhdr_summary_add(&buf, &len, 2.5, "A_VERY_LONG_RULE_NAME_OVER_22", "URI: ", "short");
	assert_string_equal(buf,
	    "  20 LOC_SPAM               A local test rule whose description is long enough to be\n"
	    "                            wrapped by SpamAssassin's report at 75 columns\n"
	    "-0.0 NO_RELAYS              BODY: Informational: message was not relayed via SMTP\n"
	    " 2.5 A_VERY_LONG_RULE_NAME_OVER_22 URI: short\n");
	assert_int_equal(len, strlen(buf));
	free(buf);
}

/* rewrite_report_safe's message (the byte-for-byte comparison with spamd is
 * test_rules_reportsafe): the field order, the Subject tagged once, the line ending of the
 * message, the disposition, the boundary kept unique, the original inside intact. */
static void test_safe_build(void **state)
{
	static const char msg[] = "Received: from a\r\n\tby b\r\nFrom: x@y\r\nX-Copy: 1\r\n"
	    "Subject: [S] hi\r\nsubject : second\r\nContent-Type: text/html\r\nX-Copy: 2\r\n"
	    "\r\n------------=_00000001.00000002\r\nbody\r\n";
	char *copy[] = { "Received", "X-Copy", "from", "x-copy" };
	struct addhdr_safe c = { .mode = 1, .copy = copy, .ncopy = 4 };
	size_t n;
	char *got = addhdr_safe_build(&c, msg, sizeof(msg) - 1, "REPORT\n\n", "UNSAFE\n",
	    "X-Spam-Flag: YES\n", &(struct addhdr_rewrite){ .subject = "[S]", .from = "SP\nAM",
	    .to = "T\nO" }, "Received: from localhost by h\n\twith x;\n\tD\n", 1, 2, &n);
	const char *b, *want;

	(void)state;
	assert_int_equal(n, strlen(got));
	b = strstr(got, "MIME-Version");
	assert_non_null(b);
	/* get_pristine_header: the last Subject ("subject : second"), tagged; From's and To's
	 * tag a comment at the end (the From tag's newline dropped, To's a blank; a To made),
	 * before the CRLF */
	want = "Received: from localhost by h\r\n\twith x;\r\n\tD\r\n"
	    "Received: from a\r\n\tby b\r\nFrom: x@y\t(SPAM)\r\nTo: \t(T O)\r\n"
	    "Subject: [S] second\r\n"
	    "X-Spam-Flag: YES\r\nX-Copy: 1\r\nX-Copy: 2\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"----------=_00000001.00000002/";
	if (strncmp(got, want, strlen(want)) != 0)
		fail_msg("got [%.*s]", (int)strlen(want), got);
	assert_non_null(strstr(got, "\r\n\r\nREPORT\r\n\r\nUNSAFE\r\n\r\n\r\n--"));
	assert_non_null(strstr(got, "Content-Type: message/rfc822; x-spam-type=original\r\n"
	    "Content-Description: original message before SpamAssassin\r\n"
	    "Content-Disposition: attachment\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"));
	b = strstr(got, "8bit\r\n\r\nReceived: from a");
	assert_non_null(b);
	assert_memory_equal(b + 8, msg, sizeof(msg) - 1);
	assert_true(strncmp(b + 8 + sizeof(msg) - 1, "\r\n--" "----------=_00000001.00000002/", 34) == 0);
	assert_string_equal(got + n - 6, "--\r\n\r\n");
	free(got);
}

/* addhdr_safe_build_parts: the message in two pieces, cut anywhere after its header block
 * (a line, a CRLF, the boundary's line split across them), gives what addhdr_safe_build
 * makes of it in one: the line ending read off the first and last lines of both, the
 * boundary kept unique over both. */
static void test_safe_build_parts(void **state)
{
	static const struct { const char *label, *msg; } rows[] = {
		{ "CRLF", "From: x@y\r\nSubject: s\r\nContent-Type: text/html\r\n\r\nbody\r\nline\r\n" },
		{ "LF", "From: x@y\nSubject: s\n\nbody\nline\n" },
		{ "LF header, last line CRLF", "From: x@y\n\nbody\nlast\r\n" },
		{ "the boundary in the body", "From: x@y\r\n\r\n------------=_00000001.00000002\r\n"
		  "--" "----------=_00000001.00000002/2C5E2A9E\r\nend" },
		{ "the boundary as the last line, no line end", "From: x@y\n\na\n"
		  "----------=_00000001.00000002" },
		{ "no header", "\r\nonly a body\r\n" },
		{ "no blank line", "From: x@y\r\nSubject: s\r\n" },
		{ "empty", "" },
	};
	struct addhdr_safe c = { .mode = 2 };

	(void)state;
	for (size_t r = 0; r < sizeof(rows) / sizeof(*rows); r++) {
		const char *m = rows[r].msg;
		size_t len = strlen(m), hl = 0, n;
		char *want = addhdr_safe_build(&c, m, len, "REPORT\n\n", "", "X-Spam-Flag: YES\n",
		    NULL, "Received: from localhost\n", 1, 2, &n);

		while (hl < len && m[hl] != '\n' && !(m[hl] == '\r' && hl + 1 < len && m[hl + 1] == '\n')) {
			const char *lf = memchr(m + hl, '\n', len - hl);

			hl = lf ? (size_t)(lf - m) + 1 : len;
		}
		hl += hl < len ? (m[hl] == '\r' ? 2 : 1) : 0;
		for (size_t k = hl; k <= len; k++) {
			struct addhdr_safe_parts p = { 0 };
			struct strbuf got = { 0 };

			addhdr_safe_build_parts(&c, m, k, m + k, len - k, "REPORT\n\n", "",
			    "X-Spam-Flag: YES\n", NULL, "Received: from localhost\n", 1, 2, &p);
			strbuf_append(&got, p.head, p.head_len);
			strbuf_append(&got, m, len);
			strbuf_append(&got, p.tail, p.tail_len);
			if (got.len != n || memcmp(got.v, want, n) != 0)
				fail_msg("%s, cut at %zu: got [%.*s] want [%s]", rows[r].label, k,
				    (int)got.len, got.v, want);
			strbuf_free(&got);
			addhdr_safe_parts_free(&p);
		}
		free(want);
	}
}

/* What report_safe's message costs to build, printed (the figure in the commit): a CRLF
 * message of 40 header fields (3.4 KB) and a 20 KB body, a report of 30 lines; the fields,
 * the report and the MIME parts' heads are written with the message's line ending. Checks
 * that every line of the headers and the report came out CRLF-ended, none LF alone. */
static void test_safe_build_cost(void **state)
{
	struct strbuf msg = { 0 }, rep = { 0 };
	struct addhdr_safe c = { .mode = 1 };
	struct timespec a, b;
	const int runs = 3000;
	size_t n = 0;
	char *got;

	(void)state;
	strbuf_printf(&msg, "Received: from a.example.org (a.example.org [198.51.100.7])\r\n\tby mx.example.net "
	    "(Postfix) with ESMTP id 1\r\n");
	for (int i = 0; i < 38; i++)
		strbuf_printf(&msg, "X-Header-%02d: a value of some length, %d, as lists and mailers write\r\n", i, i);
	strbuf_printf(&msg, "Subject: hello\r\n\r\n");
	for (int i = 0; i < 300; i++)
		strbuf_printf(&msg, "body line %03d of the message, long enough to look like text...\r\n", i);
	strbuf_printf(&rep, "Spam detection software has identified this message as spam.\n\n");
	for (int i = 0; i < 28; i++)
		strbuf_printf(&rep, " %d.%d RULE_NAME_%02d      a description of the rule that hit here\n",
		    i % 5, i % 10, i);
	got = addhdr_safe_build(&c, msg.v, msg.len, rep.v, "", "X-Spam-Flag: YES\n", NULL,
	    "Received: from localhost by h\n\twith x;\n\tD\n", 1, 2, &n);
	assert_non_null(got);
	{
		const char *end = strstr(got, "8bit\r\n\r\nReceived: from a.example.org");

		assert_non_null(end);
		for (const char *p = got; p < end; p++)
			if (*p == '\n' && (p == got || p[-1] != '\r'))
				fail_msg("a bare LF at %zu of the headers/report", (size_t)(p - got));
		assert_memory_equal(end + 8, msg.v, msg.len);
	}
	free(got);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	for (int r = 0; r < runs; r++)
		free(addhdr_safe_build(&c, msg.v, msg.len, rep.v, "", "X-Spam-Flag: YES\n", NULL,
		    "Received: from localhost by h\n\twith x;\n\tD\n", 1, 2, &n));
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	printf("# report_safe build, %zu-octet message: %.2f us of CPU a message (%d runs)\n", msg.len,
	    ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / runs / 1e3, runs);
	strbuf_free(&msg);
	strbuf_free(&rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_bayes_and_unknown),
		cmocka_unit_test(test_message_tags),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_report_lines),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_preview),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_safe_build),
		cmocka_unit_test(test_safe_build_parts),
		cmocka_unit_test(test_safe_build_cost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
