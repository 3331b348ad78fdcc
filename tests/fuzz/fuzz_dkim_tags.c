/* fuzz_dkim_tags.c — the RFC 6376 3.2 tag-list parser, base64 with FWS, the list walker and
 * the signature / key-record parsers built on them (DKIM-Signature, ARC-Message-Signature,
 * ARC-Seal, key records). Invariants: nothing crashes or reads outside the input (the
 * input is copied to an exact-size buffer for ASan); every tag's name and value lie inside
 * the input; a value never contains ';'; base64 output never exceeds 3/4 of the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dkim.h"
#include "filters/dkim_tags.h"

static int walk_cb(const char *item, size_t n, void *arg)
{
	size_t *total = arg;

	*total += n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);
	struct dkim_tags t;
	unsigned char out[1024];
	struct dkim_sig sig;
	struct dkim_key key;
	struct dkim_limits lim;
	long n;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	dkim_tags_parse(s, size, &t);
	for (size_t i = 0; i < t.n; i++) {
		const struct dkim_tag *g = &t.v[i];
		size_t total = 0;
		unsigned long long u;
		char copy[64];

		if (g->name < s || g->name + g->name_len > s + size || g->value < s ||
		    g->value + g->value_len > s + size || g->after_eq > g->value)
			abort();
		if (memchr(g->value, ';', g->value_len) != NULL)
			abort();
		dkim_tag_each(g, ':', 64, walk_cb, &total);
		if (total > g->value_len)
			abort();
		dkim_tag_uint(g, 18, &u);
		dkim_tag_copy_nows(g, copy, sizeof(copy));
		dkim_tag_copy(g, copy, sizeof(copy));
	}
	n = dkim_base64_decode(s, size, out, sizeof(out));
	if (n > 0 && (size_t)n > (size * 3) / 4 + 3)
		abort();
	for (int k = DKIM_SIG_DKIM; k <= DKIM_SIG_ARC_SEAL; k++) {
		dkim_sig_parse((enum dkim_sig_kind)k, s, size, &sig);
		if (sig.blen > sizeof(sig.b) || strlen(sig.d) >= sizeof(sig.d))
			abort();
		dkim_sig_clear(&sig);
	}
	dkim_limits_default(&lim);
	dkim_key_parse(s, size, &lim, &key);
	dkim_key_clear(&key);
	free(s);
	return 0;
}
