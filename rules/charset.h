/* charset.h — text into UTF-8 the way SpamAssassin 4.0.1 does it with its default
 * normalize_charset 1 (Message::Node::_normalize, without Encode::Detect): valid UTF-8 kept,
 * else the declared charset (ISO-8859-1 read as Windows-1252), else Windows-1252; and
 * header fields decoded as Node::_decode_header does (RFC 6532 UTF-8, RFC 2047 encoded
 * words merged per charset). The decoding itself is iconv's. Thread-safe. */
#ifndef MX_CHARSET_H
#define MX_CHARSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Strictly valid UTF-8 (no overlong forms, surrogates or code points over U+10FFFF)? */
bool charset_utf8_valid(const char *s, size_t n);

/* _normalize(s, declared): s[0..n) as UTF-8, malloc'd (NUL-terminated, *outlen bytes).
 * declared may be NULL ("us-ascii"). insist: the declared charset only, decoded leniently
 * (what RFC 2047 words get). *decoded (may be NULL): whether Perl would hold the result as
 * a character string (it was decoded) rather than the bytes it got. */
char *charset_normalize(const char *s, size_t n, const char *declared, bool insist,
    size_t *outlen, bool *decoded);
/* The same text (*outlen bytes), not copied when it is s's octets as they are (ASCII, valid
 * UTF-8 kept): then *owned is NULL and the result is s (NUL-terminated only if s is). Else
 * a malloc'd, NUL-terminated result, also in *owned for the caller to free. */
const char *charset_normalize_view(const char *s, size_t n, const char *declared, bool insist,
    size_t *outlen, bool *decoded, char **owned);
/* Does the UTF-8 text hold a character above U+00FF? */
bool charset_has_wide(const char *s, size_t n);
/* A UTF-8 text with its characters U+0080..U+00FF as single bytes (what a Perl byte string
 * holds); malloc'd. */
char *charset_to_latin1(const char *s, size_t n, size_t *outlen);
/* The same, over s itself (a Latin-1 text is never longer than the UTF-8 it comes from):
 * returns its length; the octets from there to n are left over. No NUL is added. */
size_t charset_to_latin1_inplace(char *s, size_t n);

/* _decode_header(value, name): an unfolded, trimmed field body decoded; malloc'd. */
char *charset_decode_header(const char *value, const char *name);

/* Perl's \s on a UTF-8 text at s (n bytes left): the length of the white-space character
 * there (ASCII white space, U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F,
 * U+205F, U+3000), 0 when there is none. */
size_t charset_space_len(const char *s, size_t n);

/* Encodes code point cp (at most U+10FFFF; no check for surrogates) as UTF-8 into u;
 * returns the length, 1-4. */
size_t charset_utf8_encode(uint32_t cp, char u[4]);
/* The number of characters of a UTF-8 text (invalid bytes count one each). */
size_t charset_utf8_chars(const char *s, size_t n);
/* The byte offset of character k (n when the text is shorter). */
size_t charset_utf8_offset(const char *s, size_t n, size_t k);

#endif
