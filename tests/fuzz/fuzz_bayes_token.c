/* fuzz_bayes_token.c — the classifier's tokenizer on arbitrary messages and lines (every
 * region), with and without word pairs. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rules/bayes_token.h"

static void fuzz_cb(const char *tok, size_t len, void *arg)
{
	size_t *n = arg;

	if (len == 0 || tok == NULL)
		__builtin_trap();
	*n += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bayes_token_opts o = { .pairs = size & 1, .max_tokens = 2000 };
	struct bayes_tokens t;
	size_t n = 0;

	bayes_tokenize((const char *)data, size, &o, &t);
	for (size_t i = 1; i < t.n; i++)
		if (t.v[i - 1] >= t.v[i])
			__builtin_trap();
	bayes_tokens_free(&t);
	for (int region = 0; region < 3; region++)
		bayes_tokenize_line((const char *)data, size, region ? "" : "Hx:", region, fuzz_cb, &n);
	return 0;
}
