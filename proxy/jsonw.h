/* jsonw.h — a small streaming JSON writer over struct strbuf (headers.h), for the control
 * socket's --json replies and the status page's /status.json.
 *
 *     struct jsonw j; jsonw_init(&j, &buf);
 *     jsonw_obj(&j, NULL); jsonw_str(&j, "version", MX_VERSION); jsonw_int(&j, "uptime", 5);
 *     jsonw_arr(&j, "backends"); ... jsonw_end(&j); jsonw_end(&j);
 *
 * Inside an object every value takes a key; inside an array keys are NULL. Commas are
 * placed by the writer; strings are escaped (RFC 8259 7; bytes >= 0x80 are passed through,
 * invalid UTF-8 is replaced by U+FFFD so the output always parses). */
#ifndef MX_JSONW_H
#define MX_JSONW_H

#include <stdbool.h>
#include <stdint.h>

#include "headers.h"

#define JSONW_DEPTH 16                /* deeper nesting is flattened (never needed) */

struct jsonw {
	struct strbuf *b;
	int depth;
	bool first[JSONW_DEPTH];
	char kind[JSONW_DEPTH];       /* '{' or '[' per open level */
};

void jsonw_init(struct jsonw *j, struct strbuf *b);
void jsonw_obj(struct jsonw *j, const char *key);   /* { */
void jsonw_arr(struct jsonw *j, const char *key);   /* [ */
void jsonw_end(struct jsonw *j);                    /* } or ] */
void jsonw_str(struct jsonw *j, const char *key, const char *v);   /* NULL -> null */
/* v[0..len) as a string (NULs in it as \u0000). */
void jsonw_strn(struct jsonw *j, const char *key, const char *v, size_t len);
/* v[0..len) as it is: the caller vouches it is one JSON value (a number it checked). */
void jsonw_raw(struct jsonw *j, const char *key, const char *v, size_t len);
void jsonw_int(struct jsonw *j, const char *key, long long v);
void jsonw_num(struct jsonw *j, const char *key, double v);        /* NaN/Inf -> null */
void jsonw_bool(struct jsonw *j, const char *key, bool v);
/* Appends s escaped as a JSON string body (no quotes). */
void jsonw_escape(struct strbuf *b, const char *s);
/* The same for s[0..len), which may hold NULs. */
void jsonw_escapen(struct strbuf *b, const char *s, size_t len);

#endif
