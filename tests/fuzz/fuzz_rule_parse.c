/* fuzz_rule_parse.c — the rule-file parser and meta expressions on arbitrary bytes:
 * rule_src_feed + finish, then every meta expression compiled and evaluated, and every
 * regex through match_re_compile's Perl check (the scan for an unescaped "{"), and a
 * `rewrite_header Subject` template expanded before the input's first line as the old
 * Subject and before none, and every add_header field (spam and ham lists) written as spamd
 * writes it (tags, folding, RFC 2047), its REPORT and SUMMARY over the input's first line
 * as a description, PREVIEW over its lines; then report_safe's message built (the report
 * templates read, the input as the original message, its fields copied); and what a load
 * hands on after it (session 37: no accessor of these ran before): the warnings
 * ("FILE:LINE:COL: warning: "), the ignored directives as `mxgate -t` lists them ("NAME N"
 * by count then name, once each, their counts within rule_src_ignored), the settings the
 * evals read, the bayes_ignore_header names (lower case, none empty, none twice). */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/actions.h"
#include "rules/addhdr.h"
#include "rules/match.h"
#include "rules/meta.h"
#include "rules/rule_parse.h"

static int fuzz_resolve_cb(const char *name, size_t len, void *arg)
{
	return (int)(len % 16);
}

/* `include`: a fixed text in place of a file (no I/O), which includes again, so the
 * nesting bound is reached too. */
static void fuzz_include_cb(struct rule_src *s, const char *path, const char *file, int line,
    int col, void *arg)
{
	static const char inc[] = "body INC_X /x/\ninclude again.cf\nif (version > 3)\n";

	(void)path; (void)file; (void)line; (void)col; (void)arg;
	rule_src_feed(s, "inc.cf", inc, sizeof(inc) - 1);
}

static int fuzz_strp_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "NAME N, NAME N, ...": each name once, no blank in it, N >= 1, by count (down) then
 * name; the counts sum to at most rule_src_ignored (names past the 256th are counted only) */
static void fuzz_check_ignored(const struct rule_src *s)
{
	char *list = rule_src_ignored_list(s), *p = list, *prev = NULL;
	size_t sum = 0, last = SIZE_MAX, prevlen = 0;

	if (list == NULL)
		return;
	if (rule_src_ignored(s) == 0 || *list == '\0')
		abort();
	while (*p) {
		char *name = p, *sp = strchr(p, ' ');
		size_t nl, n = 0;

		if (sp == NULL || sp == name)
			abort();
		nl = (size_t)(sp - name);
		for (p = sp + 1; isdigit((unsigned char)*p); p++)
			n = n * 10 + (size_t)(*p - '0');
		if (p == sp + 1 || n == 0 || n > last)
			abort();
		if (n == last) {
			/* the same count: by name, and never the same name twice */
			int c = memcmp(prev, name, prevlen < nl ? prevlen : nl);

			if (c > 0 || (c == 0 && prevlen >= nl))
				abort();
		}
		sum += n;
		last = n;
		prev = name;
		prevlen = nl;
		if (*p == ',' && p[1] == ' ' && p[2] != '\0')
			p += 2;
		else if (*p != '\0')
			abort();
	}
	if (sum > rule_src_ignored(s))
		abort();
	free(list);
}

static void fuzz_check_results(const struct rule_src *s)
{
	const char *const *ih;
	const char **sorted;
	size_t n;

	for (size_t i = 0; i < rule_src_nwarnings(s); i++)
		if (strstr(rule_src_warning(s, i), ": warning: ") == NULL)
			abort();
	fuzz_check_ignored(s);
	for (size_t i = 0; i < rule_src_nsettings(s); i++) {
		const char *k = NULL, *v = NULL;

		rule_src_setting(s, i, &k, &v);
		if (k == NULL || v == NULL || *k == '\0')
			abort();
	}
	ih = rule_src_ignore_headers(s, &n);
	if (n == 0)
		return;
	if ((sorted = malloc(n * sizeof(*sorted))) == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (ih[i][0] == '\0')
			abort();
		for (const char *c = ih[i]; *c; c++)
			if (isupper((unsigned char)*c))
				abort();
		sorted[i] = ih[i];
	}
	qsort(sorted, n, sizeof(*sorted), fuzz_strp_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i - 1], sorted[i]) == 0)
			abort();
	free(sorted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_src *s = rule_src_new();
	double values[16] = { 1, 0, 2, 0, 1, 1, 0, 3, 0, 1, 0, 0, 1, 5, 0, 1 };

	if (s == NULL)
		return 0;
	if (size && data[0] & 1)
		rule_src_set_include(s, fuzz_include_cb, NULL);
	rule_src_feed(s, "fuzz.cf", (const char *)data, size);
	rule_src_finish(s);
	fuzz_check_results(s);
	for (size_t i = 0; i < rule_src_count(s); i++) {
		struct rule_def *d = rule_src_get(s, i);
		struct meta_expr *e = NULL;
		const char *err;
		int col;

		if (d->expr && meta_compile(d->expr, fuzz_resolve_cb, NULL, &e, &col, &err) == 0) {
			(void)meta_eval(e, values);
			meta_free(e);
		}
		if (d->re) {
			struct match_re *re = NULL;
			char ebuf[160];

			if (match_re_compile(d->re, d->re_flags | MATCH_PERL_CHECK | MATCH_NO_JIT, &re,
			    ebuf, sizeof(ebuf)) == 0)
				match_re_free(re);
		}
	}
	if (rule_src_rewrite_subject(s)) {
		const uint8_t *nl = memchr(data, '\n', size);
		char *old = strndup((const char *)data, nl ? (size_t)(nl - data) : size);
		char *v = old ? actions_rewrite_subject(rule_src_rewrite_subject(s), size % 7 * 1.7,
		    5, old) : NULL;

		free(v);
		free(old);
		free(actions_rewrite_subject(rule_src_rewrite_subject(s), -1e9, 5, NULL));
	}
	{
		static const char *const tests[] = { "A_RULE", "B_RULE", "B_RULE" };
		static const double scores[] = { 2.5, -0.001, 10 };
		const uint8_t *nl = memchr(data, '\n', size);
		char *desc = strndup((const char *)data, nl ? (size_t)(nl - data) : size), *rep = NULL;
		size_t rl = 0;
		struct addhdr_vals v = { .score = size % 11 * 1.3 - 2, .required = 5, .tests = tests,
			.test_scores = scores, .ntests = size % 4, .autolearn = "no autolearn_force=no",
			.version = "mxgate-0", .hostname = "mx.test", .bayes = size % 3 ? 0.5 : -1 };

		char *sum = NULL, *pv, *rt, *ut, *msg;
		size_t sl = 0, np = 0, ml, lens[4];
		const char *lines[4];
		struct addhdr_safe sf = { 0 };
		struct addhdr_mtag *mtg = NULL;   /* the header view's tags, a value of the input */
		size_t nmtg = 0;

		if (desc) {
			addhdr_report_add(&rep, &rl, scores[size % 3], "A_RULE", "BODY: ", desc);
			addhdr_report_add(&rep, &rl, 12, "B_RULE", "", desc);
			addhdr_summary_add(&sum, &sl, scores[size % 3], "A_RULE", "URI: ", desc);
		}
		for (const uint8_t *p = data; np < 4 && p < data + size;) {
			const uint8_t *e = memchr(p, '\n', (size_t)(data + size - p));

			lines[np] = (const char *)p;
			lens[np++] = e ? (size_t)(e - p) : (size_t)(data + size - p);
			p = e ? e + 1 : data + size;
		}
		pv = addhdr_preview(lines, lens, np);
		v.report = rep;
		v.summary = sum;
		v.preview = pv;
		rule_src_safe(s, &sf);
		addhdr_mtags_collect(sf.report, &mtg, &nmtg);
		addhdr_mtags_collect(sf.unsafe_report, &mtg, &nmtg);
		for (int k = 0; k < 2; k++) {
			const struct addhdr_spec *h;
			size_t nh = rule_src_headers(s, k == 1, &h);

			for (size_t i = 0; i < nh; i++)
				addhdr_mtags_collect(h[i].tmpl, &mtg, &nmtg);
		}
		for (size_t i = 0; i < nmtg; i++)
			if ((mtg[i].value = strdup(i % 2 && desc ? desc : "")) == NULL)
				abort();
		v.mtags = mtg;
		v.nmtags = nmtg;
		v.subversion = "0";
		rt = addhdr_expand(sf.report ? sf.report : "", &v);
		ut = addhdr_expand(sf.unsafe_report ? sf.unsafe_report : "", &v);
		sf.mode = size % 3;
		msg = addhdr_safe_build(&sf, (const char *)data, size, rt, ut, "X-Spam-Flag: YES\n",
		    &(struct addhdr_rewrite){ size % 2 ? desc : NULL, size % 3 ? desc : NULL,
		    size % 5 ? "T" : NULL }, "Received: from localhost\n", size, size * 7, &ml);
		{
			/* the same in two pieces, cut after the header block (the rules engine's
			 * report_safe: the body is not copied): the same octets */
			const char *m = (const char *)data;
			struct addhdr_safe_parts pt = { 0 };
			size_t hl = 0, k;

			while (hl < size && m[hl] != '\n' && !(m[hl] == '\r' && hl + 1 < size &&
			    m[hl + 1] == '\n')) {
				const char *lf = memchr(m + hl, '\n', size - hl);

				hl = lf ? (size_t)(lf - m) + 1 : size;
			}
			hl += hl < size ? (m[hl] == '\r' ? 2 : 1) : 0;
			k = hl + (size * 31) % (size - hl + 1);
			addhdr_safe_build_parts(&sf, m, k, m + k, size - k, rt, ut, "X-Spam-Flag: YES\n",
			    &(struct addhdr_rewrite){ size % 2 ? desc : NULL, size % 3 ? desc : NULL,
			    size % 5 ? "T" : NULL }, "Received: from localhost\n", size, size * 7, &pt);
			if (pt.head_len + size + pt.tail_len != ml || memcmp(pt.head, msg, pt.head_len) != 0 ||
			    memcmp(pt.tail, msg + ml - pt.tail_len, pt.tail_len) != 0)
				abort();
			addhdr_safe_parts_free(&pt);
		}
		free(msg);
		free(rt);
		free(ut);
		addhdr_safe_clear(&sf);
		for (int k = 0; k < 2; k++) {
			const struct addhdr_spec *h;
			size_t nh = rule_src_headers(s, k == 1, &h);

			for (size_t i = 0; i < nh; i++)
				free(addhdr_value(h[i].name, h[i].tmpl, &v));
		}
		addhdr_mtags_free(mtg, nmtg);
		free(rep);
		free(pv);
		free(sum);
		free(desc);
	}
	for (size_t i = 0; i < rule_src_nerrors(s); i++)
		(void)strlen(rule_src_error(s, i));
	rule_src_free(s);
	return 0;
}
