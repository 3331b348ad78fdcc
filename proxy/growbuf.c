/* growbuf.c — see growbuf.h. */
#include "growbuf.h"

#include <stdlib.h>

void growbuf_grow(char **buf, size_t *cap, size_t first, size_t need)
{
	size_t nc = *cap ? *cap : first;

	while (need > nc)
		nc *= 2;
	*buf = realloc(*buf, nc);
	if (*buf == NULL)
		abort();
	*cap = nc;
}
