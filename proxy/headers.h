/* headers.h — the header block on the way out: the Received trace header and the edits
 * filters asked for, applied in order. Pure functions, no I/O. */
#ifndef MX_HEADERS_H
#define MX_HEADERS_H

#include <stddef.h>
#include <time.h>
#include "growbuf.h"
#include "hook.h"

struct strbuf { char *v; size_t len, cap; };
/* Appends s[0..n); b->v stays NUL-terminated (growbuf_append: doubling from 256 octets,
 * abort when memory runs out). Inline: a few dozen per message, most with a constant n. */
static inline void strbuf_append(struct strbuf *b, const char *s, size_t n)
{
	growbuf_append(&b->v, &b->len, &b->cap, 256, s, n);
}
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(struct strbuf *b);

/* Appends the RFC 5321 4.4 Received: field for env (one recipient named when there is
 * exactly one) to out, CRLF-terminated and folded. with = "ESMTP", "ESMTPS", "SMTP", ... */
void headers_build_received(struct strbuf *out, const struct hook_env *env, const char *hostname,
    const char *with);
/* The same with the time given (tests). */
void headers_build_received_at(struct strbuf *out, const struct hook_env *env, const char *hostname,
    const char *with, time_t now);

/* The Received field's parts that stay the same for a session's messages (client, HELO,
 * server name, protocol, TLS), kept with what they were built from; opaque. */
struct received_cache;
/* headers_build_received (the same octets), the session-constant parts taken from *cache
 * while what they were built from is still env's: compared each time, so a change of any
 * (HELO/EHLO again, STARTTLS, AUTH, XCLIENT, a reverse name found later) rebuilds them, RSET
 * does not. *cache (NULL at first) is allocated here; free it with
 * headers_received_cache_free. */
void headers_build_received_cached(struct strbuf *out, struct received_cache **cache,
    const struct hook_env *env, const char *hostname, const char *with);
void headers_build_received_cached_at(struct strbuf *out, struct received_cache **cache,
    const struct hook_env *env, const char *hostname, const char *with, time_t now);
void headers_received_cache_free(struct received_cache **cache);

/* Rewrites the header block hdr[0..len) (including its blank line, if any) with the edits
 * into out. Without edits, out gets hdr unchanged. Returns 0. */
int headers_apply_edits(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out);
/* The same, with the fields that HDR_INSERT_DELIVERED put above mxgate's own Received put
 * into out at offset top_at (where that Received starts; top_at <= out->len) instead of
 * before the others. headers_apply_edits is this with top_at = out->len (a message without
 * our Received: every field in order). */
int headers_apply_edits_at(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at);

/* headers_apply_edits_at, the header block's fields mxgate owns (ownfields.h: a sender's
 * copies) left out before the edits apply: a field an edit adds stays. An edit's index does
 * not count them: the filters were shown the block without them (smtp_tx_data_end), so this
 * is headers_apply_edits_at over that block. */
int headers_apply_edits_owned(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at);

/* Ends a header block that has no blank line yet (a message of headers only) with one,
 * so that a body put after it (a filter's replacement) is a body. */
void headers_end_block(struct strbuf *out);

/* The length of the name of the header field that starts at line[0..len): the octets before
 * the line's first ':', the blanks before the colon left out (RFC 5322 4.5.8's obsolete
 * "Subject : x", which SpamAssassin's Message.pm and Postfix's milter client read as a field
 * named "Subject"). 0 when the line starts no field: a continuation line (it starts with a
 * blank), no ':' before the line's LF, or nothing but blanks before it. The one reader of a
 * field's name for the header edits, the plugin adapter and rspamd's field counts. */
size_t headers_field_name_len(const char *line, size_t len);

/* Encodes a header value for a field: folds long values at spaces, strips CR/LF. */
void headers_append_field(struct strbuf *out, const char *name, const char *value);

#endif
