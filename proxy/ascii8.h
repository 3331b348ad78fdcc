/* ascii8.h — eight octets at a time: whether a word holds printable US-ASCII only. */
#ifndef MX_ASCII8_H
#define MX_ASCII8_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Whether the eight octets at p are all printable US-ASCII (0x20-0x7e): no octet below 0x20
 * ((w - 0x20..) & ~w & 0x80.., exact for "any"), none with the high bit (w & 0x80..), and,
 * those ruled out, none equal to 0x7f ((w + 0x01..) carries into the high bit only there).
 * Reads p[0..8), any alignment. */
static inline bool ascii8_printable(const void *p)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t w;

	memcpy(&w, p, 8);
	return ((((w - 0x20 * ones) & ~w) | (w + ones) | w) & highs) == 0;
}

#endif
