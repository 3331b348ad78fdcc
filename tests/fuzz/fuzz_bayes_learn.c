/* fuzz_bayes_learn.c — `mxgate learn`'s reading of a file (rules/bayes_learn.c): one
 * message or an mbox split at SpamAssassin's From_ lines, ">From " unquoting, blank parts
 * skipped, each part learned into a memory store. Every part must be accounted for. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rules/bayes.h"
#include "rules/bayes_learn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bayes_config c = { .enabled = true, .store = "memory", .min_spam = 1,
		.min_ham = 1 };
	struct bayes_learn_counts n = { 0 };
	struct bayes_totals t;
	char err[128];
	struct bayes *b;

	/* the splitting is what is fuzzed; tokenizing long parts is fuzz_bayes_token's */
	if (size > 2048)
		size = 2048;
	b = bayes_open(&c, err, sizeof(err));
	if (b == NULL)
		__builtin_trap();
	bayes_learn_buffer(b, size & 1 ? BAYES_SPAM : BAYES_HAM, (const char *)data, size,
	    size & 2 ? 64 : 0, "fuzz", NULL, &n);
	if (n.errors != 0 || bayes_totals(b, &t) != 0 || t.nspam + t.nham != n.learned)
		__builtin_trap();
	bayes_free(b);
	return 0;
}
