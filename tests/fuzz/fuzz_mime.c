/* fuzz_mime.c — MIME decoding, HTML rendering and URL extraction on arbitrary messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/mime.h"
#include "rules/uri.h"

static void fuzz_uri_cb(const char *uri, size_t len, void *arg)
{
	uri_add(arg, uri, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_limits lim = { .max_parts = 64, .max_depth = 8, .max_text = 1 << 20 };
	struct mime_result r;
	struct uri_list ul = { .max = 100 };

	mime_parse((const char *)data, size, &lim, &r);
	for (size_t i = 0; i < r.nparts; i++) {
		size_t n;
		char *t = mime_html_to_text(r.parts[i].text, r.parts[i].len, &n, fuzz_uri_cb, &ul);

		uri_extract_text(&ul, t, n);
		free(t);
	}
	mime_result_free(&r);
	uri_list_free(&ul);
	return 0;
}
