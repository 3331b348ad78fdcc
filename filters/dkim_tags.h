/* dkim_tags.h — the tag=value list of RFC 6376 3.2, shared by DKIM-Signature, DKIM key
 * records, ARC-Seal / ARC-Message-Signature (RFC 8617 4.1) and DMARC records (RFC 7489 6.4),
 * plus the base64 decoder those values need (FWS allowed inside, RFC 6376 2.4).
 *
 * Pure: no I/O, no allocation. Results point into the caller's text and stay valid as long
 * as that text does. Bounded: at most DKIM_TAGS_MAX tags, one pass over the input. */
#ifndef MX_DKIM_TAGS_H
#define MX_DKIM_TAGS_H

#include <stdbool.h>
#include <stddef.h>

#define DKIM_TAGS_MAX 32

struct dkim_tag {
	const char *name;      /* tag-name (ALPHA *(ALPHA / DIGIT / "_")), case-sensitive */
	size_t name_len;
	const char *value;     /* tag-value without surrounding FWS; may be empty */
	size_t value_len;
	const char *after_eq;  /* the byte just after '=' (where a "b=" value starts for
	                          stripping: RFC 6376 3.7 removes the value and the FWS before it) */
};

struct dkim_tags {
	struct dkim_tag v[DKIM_TAGS_MAX];
	size_t n;
};

enum dkim_tags_status {
	DKIM_TAGS_OK = 0,
	DKIM_TAGS_SYNTAX = -1,      /* not a tag-list */
	DKIM_TAGS_DUPLICATE = -2,   /* a tag name twice (RFC 6376 3.2: the list is invalid) */
	DKIM_TAGS_TOO_MANY = -3,    /* more than DKIM_TAGS_MAX tags */
};

/* Parses s[0..len) as tag-list = tag-spec *(";" tag-spec) [";"]. Whitespace (SP, HTAB, CR,
 * LF: folded FWS) around names, '=' and values is skipped; a value may contain inner
 * whitespace but no ';' and no control or 8-bit bytes. An empty list is valid (n = 0).
 * Returns DKIM_TAGS_OK or a negative status; out is filled as far as parsing got. */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tags *out);

/* The tag named name, or NULL. */
const struct dkim_tag *dkim_tags_find(const struct dkim_tags *t, const char *name);

/* Does the tag's value equal word (case-insensitively when nocase)? */
bool dkim_tag_value_is(const struct dkim_tag *t, const char *word, bool nocase);

/* Copies the value into out (cap bytes incl. NUL) with all whitespace removed. Returns the
 * length, or -1 when it does not fit. */
long dkim_tag_copy_nows(const struct dkim_tag *t, char *out, size_t cap);

/* Copies the value into out (cap bytes incl. NUL) unchanged. Returns the length or -1. */
long dkim_tag_copy(const struct dkim_tag *t, char *out, size_t cap);

/* Decodes base64 s[0..len) into out (cap bytes); whitespace is skipped, '=' padding only at
 * the end, anything else is an error. Returns the decoded length or -1. */
long dkim_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap);

/* Parses a decimal value of at most max_digits digits (no sign, no spaces) into *out.
 * 0 or -1. */
int dkim_tag_uint(const struct dkim_tag *t, unsigned max_digits, unsigned long long *out);

/* Walks a colon-separated list value (h=, k's h=, s=, DMARC has none): calls
 * each(item, item_len, arg) for every element with whitespace trimmed; stops when it
 * returns non-zero and returns that; 0 after the last element. At most max items (the
 * rest: -1). */
int dkim_tag_each(const struct dkim_tag *t, char sep, size_t max,
    int (*each)(const char *item, size_t item_len, void *arg), void *arg);

#endif
