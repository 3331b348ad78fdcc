/* fuzz_bayes_token.c — the classifier's tokenizer on arbitrary messages (headers, MIME,
 * HTML, URLs), and on arbitrary lines in one region chosen by the first byte. (Hashing and
 * sorting are left to test_bayes_token: comparing random 64-bit hashes only slows the
 * fuzzer down.) */
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
	/* the variants bench/bayes_cv measures too: the OSB window, meta tokens, footers */
	struct bayes_token_opts o = { .pairs = size & 1, .window = size & 2 ? 5 : 0,
		.meta = size & 4 ? BAYES_META_ON : 0, .footer = (int)(size >> 3) & 15 };
	size_t n = 0;

	/* the first 512 bytes: work per byte is what costs here (the bounds on big input are
	 * test_bayes_token's), and the smoke run must finish its 200,000 inputs in time */
	if (size > 512)
		size = 512;
	if (size > 0 && data[0] < 3) {
		bayes_tokenize_line((const char *)data + 1, size - 1, data[0] ? "" : "Hx:", data[0],
		    fuzz_cb, &n);
		return 0;
	}
	bayes_tokenize_cb((const char *)data, size, &o, fuzz_cb, &n);
	return 0;
}
