/* logkv.h — a log line's `key=value ...` text back into its fields, and those fields as one
 * JSON object (log.format: json). Pure functions, no I/O: log.c formats every line as text
 * first (288 call sites write printf formats), and a JSON line is this parse of that text,
 * so both forms carry the same fields by construction.
 *
 * The text is what log.c writes past the session id: words separated by blanks, each
 * `key=value`, `key="quoted"` (log_val's escapes: \" \\ \r \n \t \xHH), `key=` (empty) or a
 * word with no '=' (kept in the member "unparsed", as are fields past LOGKV_MAX). A quote
 * left open (a line cut at its room) ends at the end of the text. */
#ifndef MX_LOGKV_H
#define MX_LOGKV_H

#include <stdbool.h>
#include <stddef.h>

#include "headers.h"

#define LOGKV_MAX 128                 /* fields of one line; the rest goes to "unparsed" */

struct logkv_field {
	const char *key;  size_t klen;   /* within the text; klen 0: a word with no '=' */
	const char *val;  size_t vlen;   /* the value decoded (quoted: in scratch; else the text) */
	bool quoted;                     /* written in double quotes: always a string */
};

/* Parses text[0..len) into f[0..nf), decoding quoted values into scratch (scap >= len
 * octets is always enough). Returns the number of fields; *rest / *rest_len: the text from
 * the first word that did not fit into f (NULL, 0 when all did). Borrowed pointers stay
 * valid as long as text and scratch. */
size_t logkv_parse(const char *text, size_t len, struct logkv_field *f, size_t nf, char *scratch,
    size_t scap, const char **rest, size_t *rest_len);

/* Whether v[0..n) is written as a JSON number: an unquoted -?(0|[1-9][0-9]*)(.[0-9]+)? of at
 * most 20 octets whose key is no peer's text (helo, from, rcpt, user, reply, queue_id, ...:
 * a HELO name "123" stays a string, so a field keeps one type for a log store's index). */
bool logkv_is_number(const struct logkv_field *f);

/* Appends to out one JSON object, no newline: {"ts":ts,"level":level,"session":id (omitted
 * when id is "-" or empty),"event":...,every field of text[0..len) in order}. A key seen more
 * than once becomes an array of its values in order; a field named ts, level or session is
 * written as field_ts ...; words with no '=' join in "unparsed". */
void logkv_json(struct strbuf *out, const char *ts, const char *level, const char *id, const char *text,
    size_t len);

#endif
