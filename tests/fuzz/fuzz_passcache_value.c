/* fuzz_passcache_value.c — a pass store's Redis record, "NOTED_MS:PAYLOAD", as the store
 * writes it (passcache_value_format) and reads it back (passcache_value_parse: any bytes
 * another node, an older version or an operator's SET left under the key).
 *
 * Input: the whole input is a record to read; then octets 0-7 (little endian, zero padded)
 * are a noted time and the rest a payload to write and read back.
 *
 * Oracle, written apart from the code:
 *  - a record is read exactly when it is 1 to 19 ASCII digits, ':', then at most
 *    PASSCACHE_VALUE_MAX octets (anything, NUL included); the time is the digits' decimal
 *    value (19 digits never wrap), the payload the octets after the first ':', pointing
 *    into the input;
 *  - what was read, written again, is read again as the same time and payload (the writer
 *    drops leading zeros: the record may differ, never what it says);
 *  - a write succeeds exactly when the time has at most 19 digits (< 10^19) and the payload
 *    at most PASSCACHE_VALUE_MAX octets, and reads back as exactly that time and payload;
 *    a buffer one octet short makes it fail, never writes past the buffer (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/passcache.h"

#define FZ_REC_MAX (20 + PASSCACHE_VALUE_MAX)

/* The reference reader. */
static bool fz_parse(const uint8_t *s, size_t n, uint64_t *noted, size_t *off)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < n && s[i] >= '0' && s[i] <= '9') {
		if (i == 19)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0 || i == n || s[i] != ':' || n - i - 1 > PASSCACHE_VALUE_MAX)
		return false;
	*noted = v;
	*off = i + 1;
	return true;
}

/* Writes (noted, val) into a buffer of exactly cap octets and checks the result; returns
 * the length (0: refused). */
static size_t fz_write(uint64_t noted, const uint8_t *val, size_t vlen, size_t cap)
{
	char *out = malloc(cap ? cap : 1);
	uint64_t rn = 0;
	const char *rv = NULL;
	size_t rl = 0, n;

	if (out == NULL)
		abort();
	n = passcache_value_format(out, cap, noted, val, vlen);
	if (n > cap)
		abort();
	if (n > 0) {
		if (!passcache_value_parse(out, n, &rn, &rv, &rl) || rn != noted || rl != vlen ||
		    rv != out + n - vlen || (vlen && memcmp(rv, val, vlen) != 0))
			abort();
	}
	free(out);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t noted = 0, want_noted = 0;
	const char *val = NULL;
	size_t vlen = 0, off = 0;
	bool ok = passcache_value_parse((const char *)data, size, &noted, &val, &vlen);

	/* 1. reading any bytes */
	if (ok != fz_parse(data, size, &want_noted, &off))
		abort();
	if (ok) {
		if (noted != want_noted || val != (const char *)data + off || vlen != size - off)
			abort();
		/* what was read reads again the same once written (no leading zeros then) */
		if (fz_write(noted, (const uint8_t *)val, vlen, FZ_REC_MAX) == 0)
			abort();
	}

	/* 2. writing: the time from the first 8 octets, the payload after them */
	uint64_t t = 0;
	size_t k = size < 8 ? size : 8;

	for (size_t i = 0; i < k; i++)
		t |= (uint64_t)data[i] << (8 * i);
	/* small times too, not only 20-digit ones: octet 0's low bits pick a shift */
	if (size > 0)
		t >>= (data[0] & 0x3f);
	const uint8_t *p = data + k;
	size_t plen = size - k;
	bool fits = t < 10000000000000000000ull && plen <= PASSCACHE_VALUE_MAX;
	size_t n = fz_write(t, p, plen, FZ_REC_MAX);

	if ((n > 0) != fits)
		abort();
	if (n > 0) {
		/* the exact size is enough, one octet less is refused */
		if (fz_write(t, p, plen, n) != n || fz_write(t, p, plen, n - 1) != 0)
			abort();
	}
	return 0;
}
