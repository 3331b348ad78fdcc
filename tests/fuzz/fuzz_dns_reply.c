/* fuzz_dns_reply.c — the hand-written DNS reply scanners (negative TTL from the SOA in the
 * authority section, smallest answer TTL) on arbitrary bytes: no crash, no read past len. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* copy into an exact-size heap buffer so ASan sees any overread */
	unsigned char *buf = malloc(size ? size : 1);
	uint32_t ttl;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	(void)dns_reply_negative_ttl(buf, size, &ttl);
	(void)dns_reply_answer_ttl(buf, size, &ttl);
	free(buf);
	return 0;
}
