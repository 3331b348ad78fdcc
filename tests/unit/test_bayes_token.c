/* test_bayes_token.c — the classifier's tokenizer: labelled rows of one line -> tokens
 * (SpamAssassin's _tokenize_line rules), header tokens of a whole message, bayes_ignore_header,
 * bounds, and the variants bench/bayes_cv measured (OSB window, meta tokens, list footers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/bayes_token.h"

struct toks { char buf[8192]; size_t n, count; };

static void collect_cb(const char *t, size_t len, void *arg)
{
	struct toks *k = arg;

	if (k->n + len + 2 < sizeof(k->buf)) {
		if (k->n)
			k->buf[k->n++] = ' ';
		memcpy(k->buf + k->n, t, len);
		k->n += len;
		k->buf[k->n] = '\0';
	}
	k->count++;
}

struct line_case { const char *label, *line, *prefix; int region; const char *want; };

static const struct line_case line_cases[] = {
	{ "title case at the start is lowered", "Hello Planet", "", 1, "hello planet Planet" },
	{ "stop words match in any case", "World WORK", "", 1, "" },
	{ "punctuation and capitals decompose", "FREE!!! money", "", 1,
	  "FREE free!!! free FREE!!! money" },
	{ "stop words and short words go", "the and you a an it", "", 1, "" },
	{ "domains give UD: tokens", "www.example.com", "", 2,
	  "UD:www.example.com UD:example.com UD:com wwwexamplecom www.example.com" },
	{ "addresses give U* and D* tokens", "joe@example.org", "", 1,
	  "U*joe D*example.org D*org joeexampleorg joe@example.org" },
	{ "long body token is skipped to 7", "abcdefghijklmnopqrst", "", 1, "sk:abcdefg" },
	{ "long URI token is kept", "abcdefghijklmnopqrst", "", 2, "abcdefghijklmnopqrst" },
	{ "ellipsis splits words", "wait...what", "", 1, "wait what" },
	{ "quotes and dots trimmed", "\"quoted\", end.", "", 1, "quoted end" },
	{ "header tokens: prefix, no decomposition", "Foo Bar!", "HX-Test:", 0,
	  "HX-Test:Foo HX-Test:Bar!" },
	{ "control characters are separators", "cat\x01" "dog\x7f" "bird", "", 1, "cat dog bird" },
	{ "UTF-8 letters stay in words", "gr\xc3\xbc\xc3\x9f" "e", "", 1, "gr\xc3\xbc\xc3\x9f" "e" },
	{ "long UTF-8 runs become characters", "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
	  "\xe4\xbd\xa0\xe5\xa5\xbd", "", 1,
	  "u8:\xe4\xbd\xa0 u8:\xe5\xa5\xbd u8:\xe4\xb8\x96 u8:\xe7\x95\x8c u8:\xe4\xbd\xa0 u8:\xe5\xa5\xbd" },
};

static void test_line_rows(void **state)
{
	for (size_t i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
		const struct line_case *c = &line_cases[i];
		struct toks k = { .n = 0 };

		k.buf[0] = '\0';
		bayes_tokenize_line(c->line, strlen(c->line), c->prefix, c->region, collect_cb, &k);
		if (strcmp(k.buf, c->want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", c->label, k.buf, c->want);
	}
}

static const char msg1[] =
	"From sender@example.net  Sat Jan  1 00:00:00 2000\n"
	"Received: from relay.example.net (relay.example.net [203.0.113.9]) by mx.example.org\n"
	"\twith ESMTP id ABC123XYZ for <bob@example.org>; Mon, 10 Jun 2002 14:18:05 +0100\n"
	"Received: from pc (unknown [198.51.100.7]) by relay.example.net with SMTP id QQQQQQQQ\n"
	"From: Alice Smith <alice@mail.example.com>\n"
	"To: bob@example.org\n"
	"Subject: Cheap watches\n"
	"Date: Mon, 10 Jun 2002 14:18:05 +0100\n"
	"Message-ID: <abc.123@mail.example.com>\n"
	"X-Mailer: SpamTool 2.0\n"
	"List-Id: <ignored.example.org>\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\n"
	"\n"
	"--b1\n"
	"Content-Type: text/plain\n"
	"\n"
	"Buy watches today\n"
	"--b1\n"
	"Content-Type: text/html\n"
	"\n"
	"<p>Visit <a href=\"http://shop.example.net/x\">our shop</a></p>\n"
	"--b1--\n";

static bool has(const struct toks *k, const char *t)
{
	size_t n = strlen(t);

	for (const char *p = k->buf; (p = strstr(p, t)) != NULL; p += n)
		if ((p == k->buf || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

static void test_message_tokens(void **state)
{
	struct toks k = { .n = 0 };
	static const char *const want[] = {
		"watches", "cheap",                 /* Subject is body text, first */
		"today", "visit", "shop",           /* text and rendered HTML parts */
		"UD:shop.example.net",              /* the link target */
		"H*F:N*Alice", "H*F:U*alice", "H*F:D*mail.example.com", "H*F:D*com",
		"H*Ad:U*bob", "HTo:D*example.org",
		"H*M:abc", "H*MI:abc",              /* Message-ID split at non-word characters */
		"H*x:SpamTool", "H*UA:SpamTool",
		"H*r:ip*198.51.100.7", "H*r:198.51.100",   /* the oldest Received, IP cut to /24 */
		"H*r:sk:relay.e",                   /* 17 characters: skipped to 7 */
		"MIME:text/html",
		NULL
	};
	static const char *const unwanted[] = {
		"HDate:Mon", "HSubject:Cheap", "HList-Id:ignored.example.org", "H*r:QQQQQQQQ",
		"H*r:ABC123XYZ", "H*r:ESMTP", NULL
	};

	k.buf[0] = '\0';
	bayes_tokenize_cb(msg1, sizeof(msg1) - 1, NULL, collect_cb, &k);
	for (int i = 0; want[i]; i++)
		if (!has(&k, want[i]))
			fail_msg("missing %s in: %s", want[i], k.buf);
	for (int i = 0; unwanted[i]; i++)
		if (has(&k, unwanted[i]))
			fail_msg("unexpected %s in: %s", unwanted[i], k.buf);
}

static void test_pairs(void **state)
{
	struct toks k = { .n = 0 };
	struct bayes_token_opts o = { .pairs = true };
	const char *m = "Subject: x\n\ncheap rolex watches\n";

	k.buf[0] = '\0';
	bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &k);
	assert_true(has(&k, "P:cheap rolex"));
	assert_true(has(&k, "P:rolex watches"));
}

/* rspamd's OSB window: each word with the window - 1 before it, the distance in the
 * prefix; pairs do not cross lines; the default (window 0) is adjacent pairs only. */
static void test_osb_window(void **state)
{
	struct toks k = { .n = 0 };
	struct bayes_token_opts o = { .pairs = true, .window = 3 };
	const char *m = "Subject: x\n\ncheap rolex watches today\nnext line\n";

	k.buf[0] = '\0';
	bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &k);
	assert_true(has(&k, "P:cheap rolex"));
	assert_true(has(&k, "P:rolex watches"));
	assert_true(has(&k, "P2:cheap watches"));
	assert_true(has(&k, "P2:rolex today"));
	assert_false(has(&k, "P3:cheap today"));      /* window 3: at most one word between */
	assert_true(has(&k, "P:next line"));
	assert_false(has(&k, "P2:today line"));       /* not across lines */
	o.window = 0;
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &k);
	assert_true(has(&k, "P:cheap rolex"));
	assert_false(has(&k, "P2:cheap watches"));
}

/* Meta tokens: rows of (message, a token it must give, one it must not). */
struct meta_case { const char *label, *msg, *want, *unwanted; };

static const struct meta_case meta_cases[] = {
	{ "header order of the structural fields",
	  "Received: x\nFrom: a@b.example\nTo: c@d.example\nSubject: s\n"
	  "Date: Mon, 10 Jun 2002 14:18:05 +0100\nMessage-ID: <1@b>\n\nbody text\n",
	  "M:order:RFTSDI", "M:nomessageid" },
	{ "missing MIME-Version, mailer and Message-ID",
	  "From: a@b.example\nSubject: s\n\nbody\n", "M:nomimeversion", "M:nomimeversion?" },
	{ "no Message-ID", "From: a@b.example\n\nbody\n", "M:nomessageid", "M:order:FI" },
	{ "a mailer", "X-Mailer: Foo 1\nFrom: a@b.example\n\nbody\n", "M:hdrs0",
	  "M:nomailer" },
	{ "Date with a numeric zone", "Date: Mon, 10 Jun 2002 14:18:05 +0100\n\nx\n",
	  "M:date:ok", "M:date:none" },
	{ "Date without a zone", "Date: 10 Jun 2002 14:18:05\n\nx\n", "M:date:nozone",
	  "M:date:ok" },
	{ "Date with a named zone", "Date: Mon, 10 Jun 2002 14:18 EST\n\nx\n",
	  "M:date:zonename", "M:date:ok" },
	{ "Date with a two-digit year", "Date: Mon, 10 Jun 02 14:18:05 +0100\n\nx\n",
	  "M:date:2digit", "M:date:ok" },
	{ "Date not a date", "Date: yesterday\n\nx\n", "M:date:odd", "M:date:ok" },
	{ "no Date", "From: a@b.example\n\nx\n", "M:date:none", "M:date:odd" },
	{ "size bucket (rspamd's bounds)", "Subject: s\n\nx\n", "M:size0", "M:size1" },
	{ "top Content-Type and parts",
	  "Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n"
	  "Content-Type: text/html\n\n<p>Hi <a href=\"http://x.example/\">there</a></p>\n--b\n"
	  "Content-Type: image/gif\nContent-Disposition: attachment; filename=a.gif\n"
	  "Content-Transfer-Encoding: base64\n\nR0lGODlh\n--b--\n",
	  "M:ct:multipart/mixed", "M:ct:none" },
	{ "an image part", NULL, "M:img1", "M:img0" },
	{ "an attachment", NULL, "M:att1", "M:att0" },
	{ "an HTML part, no text part", NULL, "M:html1", "M:text1" },
	{ "one URL", NULL, "M:urls1", "M:urls0" },
	{ "HTML's text share: about a fifth of the part", NULL, "M:htmltext2", "M:htmltext9" },
};

static void test_meta_rows(void **state)
{
	const char *m = NULL;

	for (size_t i = 0; i < sizeof(meta_cases) / sizeof(meta_cases[0]); i++) {
		const struct meta_case *c = &meta_cases[i];
		struct bayes_token_opts o = { .meta = BAYES_META_ON };
		struct toks k = { .n = 0 }, off = { .n = 0 };

		if (c->msg)
			m = c->msg;             /* NULL: the row before's message */
		k.buf[0] = off.buf[0] = '\0';
		bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &k);
		if (!has(&k, c->want))
			fail_msg("%s: no %s in: %s", c->label, c->want, k.buf);
		if (has(&k, c->unwanted))
			fail_msg("%s: unexpected %s in: %s", c->label, c->unwanted, k.buf);
		bayes_tokenize_cb(m, strlen(m), NULL, collect_cb, &off);
		if (strstr(off.buf, "M:") != NULL && strstr(off.buf, "MIME:") == NULL)
			fail_msg("%s: meta tokens without opts.meta: %s", c->label, off.buf);
		o.meta = BAYES_META_ON | BAYES_META_NO_ORDER;
		k.n = 0;
		k.buf[0] = '\0';
		bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &k);
		if (strstr(k.buf, "M:order:") != NULL)
			fail_msg("%s: M:order: with BAYES_META_NO_ORDER", c->label);
	}
}

/* List footers: after a separator the body's lines are left out or prefixed "F:"; the
 * Subject never starts a footer; LISTS: only in mail with list headers. */
static void test_footer(void **state)
{
	static const char list[] = "List-Id: <l.example.org>\nSubject: unsubscribe me\n\n"
	    "real words here\n_______________________________________________\n"
	    "Mailinglist footer words\n";
	static const char plain[] = "Subject: hi\n\nreal words here\n-- \nsignature words\n";
	struct bayes_token_opts o = { .footer = BAYES_FOOTER_DROP };
	struct toks k = { .n = 0 };

	k.buf[0] = '\0';
	bayes_tokenize_cb(list, strlen(list), &o, collect_cb, &k);
	assert_true(has(&k, "real"));
	assert_true(has(&k, "unsubscribe"));          /* the Subject */
	assert_false(has(&k, "footer"));
	assert_false(has(&k, "F:footer"));
	o.footer = BAYES_FOOTER_PREFIX;
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(list, strlen(list), &o, collect_cb, &k);
	assert_true(has(&k, "F:footer"));
	assert_false(has(&k, "footer"));
	assert_false(has(&k, "F:real"));
	o.footer = BAYES_FOOTER_DROP;
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(plain, strlen(plain), &o, collect_cb, &k);
	assert_false(has(&k, "signature"));           /* "-- " is a separator */
	o.footer = BAYES_FOOTER_DROP | BAYES_FOOTER_LISTS;
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(plain, strlen(plain), &o, collect_cb, &k);
	assert_true(has(&k, "signature"));            /* not list mail */
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(list, strlen(list), &o, collect_cb, &k);
	assert_false(has(&k, "footer"));
}

static void test_footer_last_lines(void **state)
{
	/* LAST20: a separator with more than 20 lines after it starts no footer */
	char m[2048];
	size_t n = (size_t)snprintf(m, sizeof(m), "Subject: s\n\nbefore\n-- \nearly\n");
	struct bayes_token_opts o = { .footer = BAYES_FOOTER_DROP | BAYES_FOOTER_LAST20 };
	struct toks k = { .n = 0 };

	for (int i = 0; i < 25; i++)
		n += (size_t)snprintf(m + n, sizeof(m) - n, "line%02d text\n", i);
	k.buf[0] = '\0';
	bayes_tokenize_cb(m, n, &o, collect_cb, &k);
	assert_true(has(&k, "early"));
	assert_true(has(&k, "line24"));
	n += (size_t)snprintf(m + n, sizeof(m) - n, "-- \nlate\n");
	k.n = 0;
	k.buf[0] = '\0';
	bayes_tokenize_cb(m, n, &o, collect_cb, &k);
	assert_true(has(&k, "line24"));
	assert_false(has(&k, "late"));
}

static void test_hashes_sorted_unique(void **state)
{
	struct bayes_tokens t;

	bayes_tokenize(msg1, sizeof(msg1) - 1, NULL, &t);
	assert_true(t.n > 20);
	for (size_t i = 1; i < t.n; i++)
		assert_true(t.v[i - 1] < t.v[i]);
	bayes_tokens_free(&t);
	assert_int_equal(bayes_token_hash("abc", 3), bayes_token_hash("abc", 3));
	assert_int_not_equal(bayes_token_hash("abc", 3), bayes_token_hash("abd", 3));
}

/* 200k distinct words: the unique tokens kept are bounded. */
/* SpamAssassin's bayes_ignore_header: the named fields give no tokens (any case), the
 * Received lines too when named; the others are unchanged. */
static void test_ignore_headers(void **state)
{
	static const char m[] = "Received: from relay.example.net (relay [192.0.2.1])\r\n"
	    "Precedence: list\r\nX-Campaign: spring\r\nSubject: hi\r\n\r\nbody words\r\n";
	char *names[] = { "precedence", "received" };
	struct bayes_token_opts o = { .ignore = names, .nignore = 1 };
	struct toks all = { .n = 0 }, some = { .n = 0 }, none = { .n = 0 };

	bayes_tokenize_cb(m, strlen(m), NULL, collect_cb, &all);
	assert_non_null(strstr(all.buf, "HPrecedence:list"));
	assert_non_null(strstr(all.buf, "H*r:"));
	bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &some);
	assert_null(strstr(some.buf, "HPrecedence:"));
	assert_non_null(strstr(some.buf, "HX-Campaign:spring"));
	assert_non_null(strstr(some.buf, "H*r:"));
	o.nignore = 2;
	bayes_tokenize_cb(m, strlen(m), &o, collect_cb, &none);
	assert_null(strstr(none.buf, "H*r:"));
	assert_non_null(strstr(none.buf, "body"));
}

static void test_bounded(void **state)
{
	size_t cap = 3u << 20, n = 0;
	char *m = malloc(cap);
	struct bayes_tokens t;
	struct bayes_token_opts o = { .max_tokens = 5000 };

	assert_non_null(m);
	n += (size_t)snprintf(m, cap, "Subject: big\n\n");
	for (int i = 0; n + 32 < cap && i < 200000; i++)
		n += (size_t)snprintf(m + n, cap - n, "w%07dq%s", i, i % 10 ? " " : "\n");
	bayes_tokenize(m, n, &o, &t);
	assert_true(t.n <= 5000);
	assert_true(t.truncated);
	bayes_tokens_free(&t);
	free(m);
}

static void test_garbage(void **state)
{
	/* no header block, NULs, lone bytes: no crash, some tokens */
	static const char g[] = "\x00\xff\xfe Hello there\r\n\r\n\x80\x80\x80 world wide\n";
	struct bayes_tokens t;

	bayes_tokenize(g, sizeof(g) - 1, NULL, &t);
	bayes_tokens_free(&t);
	bayes_tokenize("", 0, NULL, &t);
	assert_int_equal(t.n, 0);
	bayes_tokens_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_rows),
		cmocka_unit_test(test_message_tokens),
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_osb_window),
		cmocka_unit_test(test_meta_rows),
		cmocka_unit_test(test_footer),
		cmocka_unit_test(test_footer_last_lines),
		cmocka_unit_test(test_hashes_sorted_unique),
		cmocka_unit_test(test_ignore_headers),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
