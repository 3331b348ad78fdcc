/* fuzz_metrics_http.c — the metrics endpoint's request parser: a bounded set of answers,
 * "incomplete" only below the 4 KiB cap, and a decision, once reached, never changes as
 * more bytes arrive. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);   /* exact size so ASan sees over-reads */
	memcpy(buf, data, size);
	bool head = false;
	int full = metrics_parse_request(buf, size, &head);
	if (full != 0 && full != 200 && full != 400 && full != 404 && full != 405 && full != 431)
		abort();
	if (full == 0 && size >= 4096)
		abort();
	if (head && full != 200 && full != 404)
		abort();
	/* Prefixes: the first complete decision is the final one. */
	for (size_t n = 0; n < size && n < 4096; n += 1 + n / 8) {
		bool h2 = false;
		int r = metrics_parse_request(buf, n, &h2);
		if (r != 0 && r != 431 && (r != full || h2 != head))
			abort();
	}
	free(buf);
	return 0;
}
