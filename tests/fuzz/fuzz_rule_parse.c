/* fuzz_rule_parse.c — the rule-file parser and meta expressions on arbitrary bytes:
 * rule_src_feed + finish, then every meta expression compiled and evaluated, and every
 * regex through match_re_compile's Perl check (the scan for an unescaped "{"), and a
 * `rewrite_header Subject` template expanded before the input's first line as the old
 * Subject and before none. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/actions.h"
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
	for (size_t i = 0; i < rule_src_nerrors(s); i++)
		(void)strlen(rule_src_error(s, i));
	rule_src_free(s);
	return 0;
}
