/* textbuf.c — see textbuf.h. */
#include "textbuf.h"

#include <stdlib.h>

void textbuf_grow_within(char **buf, size_t *cap, size_t first, size_t need, size_t limit)
{
	size_t nc = *cap ? *cap * 2 : first;

	if (need <= *cap)
		return;
	if (limit >= need && limit < nc)
		nc = limit;
	while (nc < need)
		nc *= 2;
	*buf = realloc(*buf, nc);
	if (*buf == NULL)
		abort();
	*cap = nc;
}
