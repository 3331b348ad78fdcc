/* fuzz_log_val.c — the log's escaping of text from outside (proxy/log.c): a value of a
 * key=value pair (log_valn, and log_addr for the text up to the first NUL) and a whole line
 * as log_event escapes it in place (log_escape_controls, through log_escape_controls_fuzz).
 * Input: octet 0 picks the values' buffer size (16 + octet % 240, then a buffer large enough
 * for any escaping), octet 1 the room the line has past its text (0-255, then room for any
 * escaping), the rest is the text. Each buffer is allocated at its exact size (ASan sees
 * a write past it).
 *
 * Oracle, written apart from the code (its own RFC 3629 decoder):
 *  - every output is one line within its buffer: printable ASCII and well-formed UTF-8 that
 *    is no C1 control (U+0080-U+009F) only, no C0 control, DEL or stray octet;
 *  - a value is as it is (pre + text + post, not empty) with no blank, '"' or '\', or in
 *    double quotes whose inside unescapes (\" \\ \r \n \t \xhh) to the text; cut to fit, the
 *    inside ends in "..." and unescapes to a prefix of the text; a buffer large enough for
 *    the whole escaped text is never cut, and valid UTF-8 is kept, never \x-escaped (the
 *    inside is the reference escaping below);
 *  - a line is the reference escaping of its text when that fits the buffer, else of a
 *    prefix of its text (the tail goes, the line stays one line). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The length of the well-formed UTF-8 sequence (RFC 3629 4) of two to four octets at
 * s[0..n) that is not a C1 control; 0 for anything else. */
static size_t fz_utf8(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t k;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;          /* no surrogates */
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;          /* nothing past U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	if (s[0] == 0xc2 && s[1] < 0xa0)
		return 0;           /* U+0080-U+009F */
	return k;
}

/* Printable ASCII and UTF-8 past the C1 controls only; no NUL before n. */
static void fz_check_line(const char *o, size_t n)
{
	const unsigned char *u = (const unsigned char *)o;

	for (size_t i = 0; i < n; i++) {
		size_t k;

		if (u[i] >= 0x20 && u[i] < 0x7f)
			continue;
		if ((k = fz_utf8(u + i, n - i)) == 0)
			abort();
		i += k - 1;
	}
}

/* The reference escaping of s[0..n) into out (room for 4 n + 1), its length. quoted: a
 * value's inside (also \" and \\), else a line's (only controls and stray octets). */
static size_t fz_escape(const unsigned char *s, size_t n, char *out, int quoted)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		size_t u8 = s[i] >= 0x80 ? fz_utf8(s + i, n - i) : 0;

		if (u8 > 0) {
			memcpy(out + k, s + i, u8);
			k += u8;
			i += u8 - 1;
		} else if (quoted && (s[i] == '"' || s[i] == '\\')) {
			out[k++] = '\\';
			out[k++] = (char)s[i];
		} else if (s[i] == '\r' || s[i] == '\n' || s[i] == '\t') {
			out[k++] = '\\';
			out[k++] = s[i] == '\r' ? 'r' : s[i] == '\n' ? 'n' : 't';
		} else if (s[i] < 0x20 || s[i] >= 0x7f) {
			out[k++] = '\\';
			out[k++] = 'x';
			out[k++] = hex[s[i] >> 4];
			out[k++] = hex[s[i] & 15];
		} else {
			out[k++] = (char)s[i];
		}
	}
	out[k] = '\0';
	return k;
}

static int fz_hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Unescapes a value's inside in[0..n) into out; its length, or aborts on a raw '"', a lone
 * '\' or an escape the log does not write. */
static size_t fz_unescape(const char *in, size_t n, unsigned char *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '"')
			abort();
		if (in[i] != '\\') {
			out[k++] = (unsigned char)in[i];
			continue;
		}
		if (++i >= n)
			abort();
		switch (in[i]) {
		case '"': case '\\': out[k++] = (unsigned char)in[i]; break;
		case 'r': out[k++] = '\r'; break;
		case 'n': out[k++] = '\n'; break;
		case 't': out[k++] = '\t'; break;
		case 'x':
			if (i + 2 >= n || fz_hex(in[i + 1]) < 0 || fz_hex(in[i + 2]) < 0)
				abort();
			out[k++] = (unsigned char)(fz_hex(in[i + 1]) * 16 + fz_hex(in[i + 2]));
			i += 2;
			break;
		default:
			abort();
		}
	}
	return k;
}

/* One value: whole = pre + text + post (wn octets), through log_valn or log_addr into a
 * buffer of cap octets. */
static void fz_value(const unsigned char *whole, size_t wn, size_t cap, int addr, const char *text,
    size_t tn)
{
	char *buf = malloc(cap), *ref = malloc(4 * wn + 1);
	unsigned char *back = malloc(wn + 4);
	const char *o;
	size_t n, rn;

	if (buf == NULL || ref == NULL || back == NULL)
		abort();
	o = addr ? log_addr(buf, cap, text) : log_valn(buf, cap, text, tn);
	if (o != buf)
		abort();
	n = strnlen(buf, cap);
	if (n >= cap)
		abort();                        /* no NUL within the buffer */
	fz_check_line(buf, n);
	rn = fz_escape(whole, wn, ref, 1);
	if (buf[0] != '"') {
		/* as it is: the whole text, nothing to quote in it */
		if (n != wn || wn == 0 || memcmp(buf, whole, wn) != 0)
			abort();
		for (size_t i = 0; i < n; i++)
			if (buf[i] == ' ' || buf[i] == '"' || buf[i] == '\\')
				abort();
	} else {
		if (n < 2 || buf[n - 1] != '"')
			abort();
		const char *in = buf + 1;
		size_t inn = n - 2;
		if (inn == rn && memcmp(in, ref, rn) == 0) {
			/* whole; it unescapes to the text */
			if (fz_unescape(in, inn, back) != wn || memcmp(back, whole, wn) != 0)
				abort();
		} else {
			/* cut: "..." at the end, a prefix of the reference before it, the buffer too
			 * small for the whole (the writer keeps 9 octets of room per character) */
			if (inn < 3 || memcmp(in + inn - 3, "...", 3) != 0)
				abort();
			inn -= 3;
			if (inn > rn || memcmp(in, ref, inn) != 0)
				abort();
			size_t bn = fz_unescape(in, inn, back);
			if (bn > wn || memcmp(back, whole, bn) != 0)
				abort();
			if (1 + rn + 9 <= cap)
				abort();                /* room enough, yet cut */
		}
	}
	free(buf);
	free(ref);
	free(back);
}

/* The line s[0..n) (no NUL) escaped in place in a buffer of n + 1 + room octets. */
static void fz_line(const unsigned char *s, size_t n, size_t room)
{
	size_t cap = n + 1 + room, ln, rn, m0 = 0, k = 0;
	char *line = malloc(cap), *ref = malloc(4 * n + 1);

	if (line == NULL || ref == NULL)
		abort();
	memcpy(line, s, n);
	line[n] = '\0';
	log_escape_controls_fuzz(line, cap);
	ln = strnlen(line, cap);
	if (ln >= cap)
		abort();
	fz_check_line(line, ln);
	rn = fz_escape(s, n, ref, 0);
	if (rn < cap) {
		if (ln != rn || memcmp(line, ref, rn) != 0)
			abort();                /* room enough: the whole text, escaped */
	} else {
		/* cut: the escaping of a prefix of the text. m0: the octets whose escaping the
		 * line opens with; the cut may fall inside a character a few octets on, whose
		 * remaining octets are then stray ones */
		for (size_t i = 0; i < n; ) {
			char one[20];
			size_t u8 = s[i] >= 0x80 ? fz_utf8(s + i, n - i) : 0;
			size_t step = u8 ? u8 : 1;
			size_t en = fz_escape(s + i, step, one, 0);
			if (k + en > ln || memcmp(line + k, one, en) != 0)
				break;
			k += en;
			i += step;
			m0 = i;
		}
		int found = 0;
		for (size_t m = m0; m <= n && m <= m0 + 4 && !found; m++)
			found = fz_escape(s, m, ref, 0) == ln && memcmp(ref, line, ln) == 0;
		if (!found)
			abort();
	}
	free(line);
	free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 8192)
		return 0;
	const unsigned char *t = data + 2;
	size_t tn = size - 2, zn = strnlen((const char *)t, tn);
	size_t small = 16 + data[0] % 240;
	char *text = malloc(tn + 1);
	unsigned char *whole = malloc(tn + 3);

	if (text == NULL || whole == NULL)
		abort();
	memcpy(text, t, tn);
	text[tn] = '\0';
	/* a value: the text as log_valn takes it (NULs too), at a small and a large buffer */
	fz_value(t, tn, small, 0, text, tn);
	fz_value(t, tn, 4 * tn + 16, 0, text, tn);
	/* an address: the text up to its first NUL, in angle brackets */
	whole[0] = '<';
	memcpy(whole + 1, t, zn);
	whole[zn + 1] = '>';
	fz_value(whole, zn + 2, small, 1, text, zn);
	fz_value(whole, zn + 2, 4 * zn + 24, 1, text, zn);
	/* a line: the text up to its first NUL, with a little room and with enough */
	fz_line(t, zn, data[1]);
	fz_line(t, zn, 3 * zn + 1);
	free(text);
	free(whole);
	return 0;
}
