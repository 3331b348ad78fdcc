/* fuzz_plugin_output.c — the output hygiene of plugins/plugins.c: what a plugin or a milter
 * (smfi_addrcpt, smfi_chgfrom, smfi_addheader ...) hands back before it reaches the relayed
 * message and the SMTP commands to the backend (plugins_output_check_fuzz: the envelope
 * address check with its RFC 5321 quoted local part, the ESMTP parameter check, the header
 * name check, the header value cleaner). Input: the text up to the first NUL. Nothing may
 * crash or read out of bounds, and what passes cannot break a line: an address taken has no
 * space outside its quotes, no control character, '<' or '>'; a header name taken is printable
 * ASCII without ':' (an address may carry UTF-8 outside its quotes); a cleaned value has no control character but HTAB, and CR only as CRLF
 * followed by SP or HTAB (a fold). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/plugins.h"

static void fuzz_addr_check(const unsigned char *a)
{
	bool quoted = false;

	for (const unsigned char *p = a; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || (quoted && *p > 0x7e))
			abort();	/* UTF-8 outside quotes is taken (SMTPUTF8) */
		if (quoted && *p == '\\') {
			p++;
			if (*p < 0x20 || *p > 0x7e)
				abort();
			continue;
		}
		if (*p == '"' && (p == a || quoted)) {
			quoted = !quoted;
			continue;
		}
		if (!quoted && (*p == ' ' || *p == '<' || *p == '>' || *p == '"'))
			abort();
	}
	if (quoted)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool ok[4];
	char *text = malloc(size + 1), *clean = NULL;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	plugins_output_check_fuzz(text, ok, &clean);
	if (ok[0] && !ok[1])
		abort();	/* the sender check takes every recipient it takes */
	if (ok[1])
		fuzz_addr_check((const unsigned char *)text);
	if (ok[2])
		for (const unsigned char *p = (const unsigned char *)text; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				abort();
	if (ok[3])
		for (const unsigned char *p = (const unsigned char *)text; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f || *p == ':')
				abort();
	if (clean == NULL)
		abort();
	for (const unsigned char *p = (const unsigned char *)clean; *p; p++) {
		if (*p == '\r') {
			if (p[1] != '\n' || (p[2] != ' ' && p[2] != '\t'))
				abort();
			p++;
		} else if (*p < 0x20 && *p != '\t') {
			abort();
		}
	}
	free(clean);
	free(text);
	return 0;
}
