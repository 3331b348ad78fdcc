/* fuzz_plugin_output.c — the output hygiene of plugins/plugins.c: what a plugin or a milter
 * (smfi_addrcpt, smfi_chgfrom, smfi_addheader ...) hands back before it reaches the relayed
 * message and the SMTP commands to the backend (plugins_output_check_fuzz: the envelope
 * address check with its RFC 5321 quoted local part, the ESMTP parameter check, the header
 * name check, the header value cleaner). Input: the text up to the first NUL. Nothing may
 * crash or read out of bounds, and what passes cannot break a line: an address taken has no
 * space outside its quotes, no control character, '<' or '>'; a header name taken is printable
 * ASCII without ':' (an address may carry UTF-8 outside its quotes); a cleaned value has no control character but HTAB, and CR only as CRLF
 * followed by SP or HTAB (a fold). A plugin's reply text (plugins_reply_fuzz, for a
 * tempfail and a reject) goes out as whole lines, CRLF between them only, none empty, each
 * opening with an enhanced status code of the reply's class, printable ASCII and UTF-8 only
 * (no control character, no C1 control in UTF-8: smtp_reply_printable),
 * within its buffer, and the SMTP code of that class. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "plugins/plugins.h"

/* Whether p opens with "C.d{1,3}.d{1,3}" followed by a blank or the end of the line. */
static bool fuzz_enhanced(const char *p, int cls)
{
	size_t a, b;

	if (p[0] != '0' + cls || p[1] != '.')
		return false;
	a = strspn(p + 2, "0123456789");
	if (a < 1 || a > 3 || p[2 + a] != '.')
		return false;
	b = strspn(p + 3 + a, "0123456789");
	return b >= 1 && b <= 3 && (p[3 + a + b] == ' ' || p[3 + a + b] == '\r' || p[3 + a + b] == '\0');
}

static void fuzz_reply_check(const char *text, int cls)
{
	char out[400];
	int code = plugins_reply_fuzz(text, 250 + cls * 50, cls, out, sizeof(out));

	if (code / 100 != cls || strlen(out) >= sizeof(out))
		abort();
	for (const char *line = out; *line; ) {
		const char *e = strstr(line, "\r\n");

		if (!fuzz_enhanced(line, cls))
			abort();	/* every line, the first included, opens with one of its class */
		/* printable ASCII and UTF-8 past the C1 controls only, as a backend's reply text
		 * (smtp_reply_printable): no bare CR or LF, no control character, TAB included */
		size_t ll = e ? (size_t)(e - line) : strlen(line);
		for (size_t i = 0; i < ll;) {
			const unsigned char *u = (const unsigned char *)line + i;
			size_t k = 1;

			if (u[0] >= 0x80 && ((k = domain_utf8_seq(u, ll - i)) == 0 || (u[0] == 0xc2 && u[1] < 0xa0)))
				abort();
			else if (u[0] < 0x80 && (u[0] < 0x20 || u[0] == 0x7f))
				abort();
			i += k;
		}
		if (e == NULL)
			break;
		if (e[2] == '\0')
			abort();	/* a CRLF at the end: the last line would go out as "NNN-" */
		line = e + 2;
	}
}

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
	fuzz_reply_check(text, 4);
	fuzz_reply_check(text, 5);
	free(text);
	return 0;
}
