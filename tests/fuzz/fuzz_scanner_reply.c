/* fuzz_scanner_reply.c — what content-filter peers send back and how they are addressed:
 * bytes as a whole spamd reply (headers and body) and as a clamd reply line, and the text
 * up to the first NUL as a peer address (`inet:`, `unix:`, `[v6]:port`, sendmail's
 * `inet:port@host` ...). Nothing may crash, read out of bounds or hang; a parsed spamd
 * symbol list must lie inside the reply. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/clamd.h"
#include "plugins/pconn.h"
#include "plugins/spamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spamd_result sr;
	struct pconn_addr pa;
	const char *why;
	char name[128], *copy, *text;

	/* exact-size copies: ASan sees any read past the reply */
	copy = malloc(size ? size : 1);
	text = malloc(size + 1);
	if (copy == NULL || text == NULL) {
		free(copy);
		free(text);
		return 0;
	}
	memcpy(copy, data, size);
	if (spamd_reply_parse(copy, size, &sr) == 0 && sr.symbols != NULL &&
	    (sr.symbols < copy || sr.symbols + sr.symbols_len > copy + size))
		abort();
	clamd_reply_parse(copy, size, name, sizeof(name));
	clamd_reply_parse(copy, size, name, 1);
	memcpy(text, data, size);
	text[size] = '\0';
	pconn_addr_parse(text, &pa, &why);
	free(copy);
	free(text);
	return 0;
}
