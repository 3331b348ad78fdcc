/* ownfields.c — the header fields mxgate owns (ownfields.h). */
#include "ownfields.h"
#include "headers.h"

#include <string.h>
#include <strings.h>

static const char *const ownfields_names[] = {
	OWNFIELD_FILTER_ERROR, OWNFIELD_QUARANTINE, OWNFIELD_GREYLIST,
};

#define OWNFIELDS_PREFIX "X-Mxgate-"

bool ownfields_is(const char *name, size_t n)
{
	if (n < sizeof(OWNFIELDS_PREFIX) - 1 || strncasecmp(name, OWNFIELDS_PREFIX, sizeof(OWNFIELDS_PREFIX) - 1) != 0)
		return false;
	for (size_t i = 0; i < sizeof(ownfields_names) / sizeof(ownfields_names[0]); i++)
		if (strlen(ownfields_names[i]) == n && strncasecmp(ownfields_names[i], name, n) == 0)
			return true;
	return false;
}

bool ownfields_block_has(const char *hdr, size_t len)
{
	size_t i = 0;

	/* each line's start: a field's name, a continuation line (a blank: headers_field_name_len
	 * says 0) or the blank line that ends the block */
	while (i < len) {
		const char *lf;

		if (hdr[i] == '\n' || (hdr[i] == '\r' && i + 1 < len && hdr[i + 1] == '\n'))
			return false;
		if ((hdr[i] == 'X' || hdr[i] == 'x') && ownfields_is(hdr + i, headers_field_name_len(hdr + i, len - i)))
			return true;
		if ((lf = memchr(hdr + i, '\n', len - i)) == NULL)
			return false;
		i = (size_t)(lf - hdr) + 1;
	}
	return false;
}
