/* growbuf.c — see growbuf.h. */
#include "growbuf.h"

#include <stdlib.h>
#include <string.h>

void growbuf_append(char **buf, size_t *len, size_t *cap, size_t first, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : first;

		while (*len + n + 1 > nc)
			nc *= 2;
		*buf = realloc(*buf, nc);
		if (*buf == NULL)
			abort();
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}
