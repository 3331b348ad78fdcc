/* fuzz_dns_reply.c — the hand-written DNS reply scanners (negative TTL from the SOA in the
 * authority section, smallest answer TTL, the PTR names, the question of a SERVFAIL answer)
 * on arbitrary bytes: no crash, no read past len. */
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
	struct dns_result res;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	(void)dns_reply_negative_ttl(buf, size, &ttl);
	(void)dns_reply_answer_ttl(buf, size, &ttl);
	char name[DNS_NAME_TEXT_MAX];
	unsigned qtype;
	(void)dns_reply_failed_question(buf, size, name, sizeof(name), &qtype);
	memset(&res, 0, sizeof(res));
	(void)dns_reply_ptr_names(buf, size, &res, 16, NULL);
	for (size_t i = 0; i < res.n; i++)
		free(res.v[i]);
	free(res.v);
	free(buf);
	return 0;
}
