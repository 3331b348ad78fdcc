/* fuzz_authres.c — Authentication-Results (RFC 8601): the check that removes fields
 * claiming our authserv-id (the raw, possibly folded value a client sent), and the builder
 * fed what a peer influences (a DKIM domain or selector, a reason in a comment; the method
 * and result names are mxgate's own constants, picked from a list). The input is split at
 * NUL bytes: id, a selector byte, comment, property value, another value, then the rest as a
 * field value. A field we build must hold no CR or LF (a value or comment must never end or
 * fold the field), and one built with a plain host-name id must be recognised as ours. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/authres.h"

/* The next NUL-terminated piece of [*p, end) (the last one may run to end). */
static char *far_piece(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nul ? n + 1 : n;
	return s;
}

static bool far_is_hostname(const char *s)
{
	if (*s == '\0' || strlen(s) > 253)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		    *s == '.' || *s == '-'))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *part[6], out[256], *v;
	struct authres_builder b;

	for (int i = 0; i < 6; i++)
		part[i] = far_piece(&p, end);
	if (part[0] && part[5]) {
		authres_is_ours(part[5], strlen(part[5]), part[0]);
		/* a raw value with every byte, NULs included */
		authres_is_ours((const char *)data, size, part[0]);
	}
	if (part[4])
		authres_quote_value(part[4], out, sizeof(out));
	if (part[0] && part[1] && part[2] && part[3] && part[4]) {
		static const char *const methods[] = { "dkim", "arc", "dmarc", "spf" };
		static const char *const results[] = { "pass", "fail", "none", "temperror", "permerror",
			"neutral", "policy" };
		unsigned sel = (unsigned char)part[1][0];

		memset(&b, 0, sizeof(b));
		authres_begin(&b, part[0]);
		authres_method(&b, methods[sel & 3], results[(sel >> 2) % 7], part[2][0] ? part[2] : NULL);
		authres_prop(&b, "header.d", part[3]);
		authres_prop(&b, "header.s", part[4]);
		authres_method(&b, "spf", "pass", NULL);
		authres_prop(&b, "smtp.mailfrom", part[3]);
		v = authres_finish(&b);
		if (v) {
			if (strpbrk(v, "\r\n") != NULL)
				abort();
			if (far_is_hostname(part[0]) && !authres_is_ours(v, strlen(v), part[0]))
				abort();
			free(v);
		}
		authres_free(&b);
	}
	for (int i = 0; i < 6; i++)
		free(part[i]);
	return 0;
}
