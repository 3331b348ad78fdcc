/* authres.h — the Authentication-Results header field (RFC 8601): a builder for the one
 * field mxgate adds, and the check for fields that claim our authserv-id (forged or stale:
 * they are removed from incoming mail, 5).
 *
 * Pure: no I/O. Values are quoted where RFC 8601 / RFC 2045 token syntax needs it;
 * comments are sanitised so peer-supplied text cannot break out of them. */
#ifndef MX_AUTHRES_H
#define MX_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

struct authres_builder {
	char *v;        /* NUL-terminated value so far (owned) */
	size_t len, cap;
	size_t nmethods;
	bool oom;
};

/* Starts "authserv-id" (a token or quoted if need be). */
void authres_begin(struct authres_builder *b, const char *authserv_id);
/* Appends "; method=result" and, when comment is non-NULL, " (comment)". */
void authres_method(struct authres_builder *b, const char *method, const char *result,
    const char *comment);
/* Appends " ptype.property=value" to the current method (value quoted when needed). */
void authres_prop(struct authres_builder *b, const char *ptype_prop, const char *value);
/* Returns the value (caller frees): "id; none" when no method was added (2.2). NULL when
 * memory ran out. The builder is reset. */
char *authres_finish(struct authres_builder *b);
void authres_free(struct authres_builder *b);

/* Does the Authentication-Results value (raw, may be folded) start with authserv-id id,
 * compared case-insensitively after leading CFWS? Bounded; any input is safe. */
bool authres_is_ours(const char *value, size_t len, const char *id);

/* Writes v into out as an RFC 8601 pvalue: bare when every byte is a token character or
 * '@', else a quoted-string. Returns 0 or -1 (too long). */
int authres_quote_value(const char *v, char *out, size_t cap);

#endif
