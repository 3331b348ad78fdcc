/* test_rules_spill.c — rules/rules_view.c's rules_text_spill: the body lines of a paragraph
 * cut as it grows past RULES_TEXT_HOLD (64 KiB) are the lines of the finished paragraph.
 *
 * A paragraph of many parts' texts (joined by single line breaks) is not held whole: once
 * it holds 64 KiB its lines are cut from its start while more than 2048 octets are left.
 * That is the same as cutting the finished paragraph only if a cut reads nothing past the
 * 2049 octets at its start. fuzz_rules_scan reaches it only in its spill mode (a body
 * repeated to 80 KiB, no reference to compare with: its inputs are at most 4096 octets), so
 * here: messages whose one paragraph is 70-200 kB (text/plain and text/html parts, runs
 * of more than 2049 octets without a space, U+00A0 and Latin-1 0xA0, CRLF and bare LF, a
 * part ending at 64 KiB +/- 1), their body lines as the engine gives them
 * (rules_scratch_foreach_line) against the lines a reference splitter here cuts from the
 * text they join to:
 *   - the text: the lines after the Subject's, concatenated (a cut loses no octet);
 *   - its lines: SpamAssassin's split_into_array_of_short_lines on each paragraph (split
 *     after each "\n"): while a line is longer than 2048 octets, cut it after the last
 *     space at or before offset 2048 (rindex($line, ' ', 2048) + 1), or at 2048 if none;
 *     then what is left, an empty line when the cuts took it all;
 *   - and that the text is the message's: its non-space content (white space, U+00A0 and
 *     0xA0 taken out; HTML tags and &nbsp; out of the parts) is the parts', in order, so a
 *     spill that lost or repeated octets fails too. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rules/rules.h"

#define SPLIT 2048                /* SA's MAX_BODY_LINE_LENGTH */
#define HOLD (64u << 10)          /* rules_view.c's RULES_TEXT_HOLD */

struct text { char *p; size_t n, cap; };

static void text_put(struct text *t, const void *s, size_t n)
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

static void text_puts(struct text *t, const char *s) { text_put(t, s, strlen(s)); }

/* the engine's body lines */
struct lines { struct text all; size_t *off, *len, n, cap; };

static void lines_cb(const char *line, size_t len, void *arg)
{
	struct lines *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->off = realloc(l->off, l->cap * sizeof(size_t));
		l->len = realloc(l->len, l->cap * sizeof(size_t));
		assert_true(l->off != NULL && l->len != NULL);
	}
	l->off[l->n] = l->all.n;
	l->len[l->n++] = len;
	text_put(&l->all, line, len);
}

/* The octets that are not white space: ASCII's, U+00A0 (C2 A0), Latin-1's 0xA0; with html,
 * tags and "&nbsp;" out too. */
static void content_put(struct text *c, const char *s, size_t n, int html)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == ' ' || (ch >= '\t' && ch <= '\r') || ch == 0xa0)
			continue;
		if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0) {
			i++;
			continue;
		}
		if (html && ch == '<') {
			while (i < n && s[i] != '>')
				i++;
			continue;
		}
		if (html && n - i >= 6 && memcmp(s + i, "&nbsp;", 6) == 0) {
			i += 5;
			continue;
		}
		text_put(c, s + i, 1);
	}
}

/* A deterministic generator (xorshift64*): the same messages every run. */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static size_t rng_in(size_t lo, size_t hi) { return lo + (size_t)(rng() % (hi - lo + 1)); }

enum part_kind { P_ASCII, P_UTF8, P_LATIN1, P_HTML, P_NKINDS };

struct msg {
	struct text m;            /* the message */
	struct text content;      /* the non-space content its parts should render to */
	const char *nl;           /* "\r\n" or "\n" */
};

static void msg_begin(struct msg *g, int crlf)
{
	memset(g, 0, sizeof(*g));
	g->nl = crlf ? "\r\n" : "\n";
	text_puts(&g->m, "From: a@example.org");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, "To: b@example.test");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, "Subject: notes");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, "MIME-Version: 1.0");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, "Content-Type: multipart/mixed; boundary=\"b\"");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, g->nl);
}

/* One part of kind whose body is body (n octets, the line breaks already g->nl). */
static void msg_part(struct msg *g, enum part_kind kind, const char *body, size_t n)
{
	static const char *const types[P_NKINDS] = {
		"text/plain; charset=us-ascii", "text/plain; charset=utf-8",
		"text/plain; charset=iso-8859-1", "text/html; charset=utf-8",
	};

	text_puts(&g->m, "--b");
	text_puts(&g->m, g->nl);
	text_puts(&g->m, "Content-Type: ");
	text_puts(&g->m, types[kind]);
	text_puts(&g->m, g->nl);
	text_puts(&g->m, g->nl);
	text_put(&g->m, body, n);
	text_puts(&g->m, g->nl);
	content_put(&g->content, body, n, kind == P_HTML);
}

static void msg_end(struct msg *g)
{
	text_puts(&g->m, "--b--");
	text_puts(&g->m, g->nl);
}

static void msg_free(struct msg *g)
{
	free(g->m.p);
	free(g->content.p);
}

/* A part's body of about want octets: words, runs of 2049-6000 octets without a space,
 * separated by a space mostly, else a line break, several spaces, a no-break space of the
 * part's kind; no blank line (the message is to be one paragraph). */
static void gen_body(struct text *b, enum part_kind kind, size_t want, const char *nl)
{
	while (b->n < want) {
		size_t r = rng_in(0, 99), len;

		if (r < 4)
			len = rng_in(SPLIT - 8, 6000);          /* a long run, some of 2049 +/- a few */
		else
			len = rng_in(1, 12);
		for (size_t i = 0; i < len; i++) {
			char c = (char)('a' + rng_in(0, 25));

			text_put(b, &c, 1);
		}
		if (kind == P_HTML && rng_in(0, 9) == 0)
			text_puts(b, rng_in(0, 1) ? "<b>" : "</b>");
		r = rng_in(0, 99);
		if (r < 75)
			text_puts(b, " ");
		else if (r < 85)
			text_puts(b, nl);
		else if (r < 90)
			text_puts(b, "   \t ");
		else if (kind == P_UTF8 || (kind == P_HTML && r < 95))
			text_puts(b, "\xc2\xa0");
		else if (kind == P_HTML)
			text_puts(b, "&nbsp;");
		else if (kind == P_LATIN1)
			text_puts(b, "\xa0");
		else
			text_puts(b, " ");
	}
	text_puts(b, "fin");     /* not a line break before the next part's: a blank line */
}

/* The Subject's line, then the body lines; their concatenation after the Subject's is the
 * text. */
static void scan_lines(const char *msg, size_t len, struct lines *out)
{
	static const char rules[] = "body NOTES /conference/\n";
	struct rules_set *rs;
	struct rules_scratch *sc;
	struct rules_result res;

	assert_int_equal(rules_set_load_text("t.cf", rules, strlen(rules), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	assert_non_null(sc);
	rules_set_scan(rs, sc, msg, len, NULL, NULL, 0, &res);
	assert_false(res.over_budget);
	memset(out, 0, sizeof(*out));
	rules_scratch_foreach_line(sc, RULE_BODY, lines_cb, out);
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

/* Checks the engine's lines of g's message against the reference's; returns the longest
 * paragraph's length. */
static size_t check_message(struct msg *g, const char *what)
{
	struct lines l;
	struct text body = { 0 }, content = { 0 };
	size_t first, i, k, longest = 0;

	msg_end(g);
	scan_lines(g->m.p, g->m.n, &l);
	assert_true(l.n >= 2);
	first = l.off[1];
	text_put(&body, l.all.p + first, l.all.n - first);
	/* the text is the message's */
	content_put(&content, body.p, body.n, 0);
	if (content.n != g->content.n || memcmp(content.p, g->content.p, content.n) != 0) {
		print_error("%s: the body text's content (%zu octets) is not the parts' (%zu)\n",
		    what, content.n, g->content.n);
		fail();
	}
	/* its white space runs one space each, or a paragraph's end */
	for (i = 0; i < body.n; i++) {
		unsigned char c = (unsigned char)body.p[i], d = i + 1 < body.n ?
		    (unsigned char)body.p[i + 1] : 'x';

		if ((c >= '\t' && c <= '\r' && c != '\n') || (c == ' ' && d == ' ') ||
		    (c == '\n' && d == '\n')) {
			print_error("%s: white space at %zu of the body text not made one space\n",
			    what, i);
			fail();
		}
	}
	/* its lines as SA cuts the whole text */
	k = 1;
	for (i = 0; i < body.n;) {
		size_t e, pn, ref;
		const char *nlp = memchr(body.p + i, '\n', body.n - i);

		e = nlp ? (size_t)(nlp - body.p) + 1 : body.n;
		pn = e - i;
		if (pn > longest)
			longest = pn;
		for (bool last = false; !last;) {
			/* SA pushes what is left after the cuts even when they took it all (a
			 * last line of 2049 octets ending in a space: an empty line after it) */
			last = pn <= SPLIT;
			if (pn > SPLIT) {
				size_t j = SPLIT + 1;

				while (j > 0 && body.p[i + j - 1] != ' ')
					j--;
				ref = j ? j : SPLIT;
			} else {
				ref = pn;
			}
			if (k >= l.n || l.off[k] - first != i || l.len[k] != ref) {
				print_error("%s: line %zu: the engine's is %zu octets at %zu, the "
				    "reference's %zu at %zu (%zu lines)\n", what, k,
				    k < l.n ? l.len[k] : 0, k < l.n ? l.off[k] - first : 0, ref, i, l.n);
				fail();
			}
			k++;
			i += ref;
			pn -= ref;
		}
	}
	assert_int_equal(k, l.n);
	free(body.p);
	free(content.p);
	free(l.all.p);
	free(l.off);
	free(l.len);
	msg_free(g);
	return longest;
}

/* Random messages of 70-200 kB of text, each one paragraph: parts of each kind, CRLF and
 * bare LF. */
static void test_spill_random(void **state)
{
	(void)state;
	rng_state = 0x9e3779b97f4a7c15ull;
	for (int t = 0; t < 48; t++) {
		struct msg g;
		size_t target = rng_in(70000, 200000), total = 0, longest;
		char what[64];

		msg_begin(&g, t % 2 == 0);
		while (total < target) {
			/* under body_part_scan_size (50000 characters) a part: not cut */
			enum part_kind kind = (enum part_kind)((t / 2 + rng_in(0, 3)) % P_NKINDS);
			struct text b = { 0 };

			gen_body(&b, kind, rng_in(2000, 40000), g.nl);
			msg_part(&g, kind, b.p, b.n);
			total += b.n;
			free(b.p);
		}
		snprintf(what, sizeof(what), "message %d (%zu octets of text)", t, total);
		longest = check_message(&g, what);
		/* one paragraph, past the hold: the spill ran */
		assert_true(longest > HOLD + 2 * SPLIT);
	}
}

/* A part ends where the paragraph holds 64 KiB +/- a few octets, in a run of 3000 octets
 * without a space (the piece that takes it past the hold): three parts (us-ascii, utf-8,
 * Latin-1 with 0xA0), the second's text one octet longer each message; the third begins
 * with another run of 3000. The paragraph's length where the second part's text ends is
 * found from the third's first word: every length from 64 KiB - 2 to 64 KiB + 2 is met,
 * with CRLF and with bare LF. */
#define FIRST_LEN (HOLD / 2 - 100)       /* the first part's text */

static void test_spill_part_at_hold(void **state)
{
	unsigned covered = 0;

	(void)state;
	for (int crlf = 0; crlf < 2; crlf++) {
		for (size_t n1 = HOLD - FIRST_LEN - 24; n1 <= HOLD - FIRST_LEN + 24; n1++) {
			struct msg g;
			struct text b1 = { 0 }, b2 = { 0 }, b0 = { 0 };
			struct lines l;
			const char *at;
			size_t end;

			rng_state = 0x2545f4914f6cdd1dull + n1;
			msg_begin(&g, crlf);
			while (b0.n < FIRST_LEN)
				text_puts(&b0, b0.n % 7 != 6 ? "z" : " ");
			msg_part(&g, P_ASCII, b0.p, b0.n);
			while (b1.n + 3001 < n1)
				text_puts(&b1, "ab ");
			while (b1.n < n1)
				text_puts(&b1, "q");
			msg_part(&g, P_UTF8, b1.p, b1.n);
			text_puts(&b2, "START");
			for (int i = 0; i < 3000; i++)
				text_puts(&b2, "r");
			text_puts(&b2, " tail of the last part");
			gen_body(&b2, P_LATIN1, 30000, g.nl);
			msg_part(&g, P_LATIN1, b2.p, b2.n);
			msg_end(&g);
			/* the paragraph's length when the second part's text ended: up to the
			 * space before the third's */
			scan_lines(g.m.p, g.m.n, &l);
			at = memmem(l.all.p + l.off[1], l.all.n - l.off[1], " STARTrrr", 9);
			assert_non_null(at);
			end = (size_t)(at - l.all.p) - l.off[1];
			if (end + 2 >= HOLD && end <= HOLD + 2)
				covered |= 1u << (end + 2 - HOLD);
			free(l.all.p);
			free(l.off);
			free(l.len);
			/* check_message ends the message again: take the end off */
			g.m.n -= strlen("--b--") + strlen(g.nl);
			check_message(&g, "a part ending at the hold");
			free(b0.p);
			free(b1.p);
			free(b2.p);
		}
	}
	assert_int_equal(covered, 0x1f);
}

/* Runs of L octets without a space, one space between, L from 2040 to 2056: the lines are
 * whole runs with their space (2049 octets for L 2048), so the paragraph held when the
 * spill comes is cut down to a run that ends it, of 2048 octets for L 2048, 2047 for 2047: a
 * spill that cut such a run (what is left not over 2048 octets) before the space that
 * follows it came cut the line apart from its space. Three parts of about 40 kB. */
static void test_spill_runs(void **state)
{
	(void)state;
	for (int crlf = 0; crlf < 2; crlf++) {
		for (size_t run = SPLIT - 8; run <= SPLIT + 8; run++) {
			struct msg g;
			size_t longest;

			msg_begin(&g, crlf);
			for (int p = 0; p < 3; p++) {
				struct text b = { 0 };

				while (b.n < 40000) {
					if (b.n)
						text_puts(&b, " ");
					for (size_t i = 0; i < run; i++)
						text_puts(&b, (i + b.n) % 5 ? "r" : "s");
				}
				msg_part(&g, p == 1 ? P_HTML : P_ASCII, b.p, b.n);
				free(b.p);
			}
			longest = check_message(&g, "runs");
			assert_true(longest > HOLD + 2 * SPLIT);
		}
	}
}

/* Latin-1 0xA0 (a no-break space) inside the words, where the cuts fall: runs of L octets
 * (2046 to 2050) without a space, one space between, with a 0xA0 at offset q of each
 * (2045 to 2049, or the run's last octet), in three Latin-1 parts of about 40 kB. With
 * those parts alone the text is bytes (0xA0 a word's octet: the cut at 2048 may fall just
 * before or after it, or the spill's hold boundary at it); with a UTF-8 part after them
 * (a character string) 0xA0 is U+00A0, white space, the run cut in two there. Either way
 * the lines cut as the paragraph grows are those of the whole. */
static void test_spill_nbsp_in_word(void **state)
{
	static const size_t qs[] = { SPLIT - 3, SPLIT - 2, SPLIT - 1, SPLIT, SPLIT + 1, 0 };
	int t = 0;

	(void)state;
	for (int wide = 0; wide < 2; wide++) {
		for (size_t run = SPLIT - 2; run <= SPLIT + 2; run++) {
			for (size_t qi = 0; qi < sizeof(qs) / sizeof(qs[0]); qi++, t++) {
				size_t q = qs[qi] ? qs[qi] : run - 1, longest;
				struct msg g;

				if (q >= run)
					continue;
				msg_begin(&g, t % 2);
				for (int p = 0; p < 3; p++) {
					struct text b = { 0 };

					while (b.n < 40000) {
						size_t at = b.n;

						if (b.n)
							text_puts(&b, " ");
						for (size_t i = 0; i < run; i++)
							text_puts(&b, i == q ? "\xa0" : (i + at) % 5 ? "r" : "s");
					}
					msg_part(&g, P_LATIN1, b.p, b.n);
					free(b.p);
				}
				if (wide)
					msg_part(&g, P_UTF8, "caf\xc3\xa9 fin", 9);
				longest = check_message(&g, wide ? "0xA0 in words, wide" : "0xA0 in words");
				assert_true(longest > HOLD + 2 * SPLIT);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spill_random),
		cmocka_unit_test(test_spill_part_at_hold),
		cmocka_unit_test(test_spill_runs),
		cmocka_unit_test(test_spill_nbsp_in_word),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
