/* fuzz_dns_reply.c — the hand-written DNS reply scanners (negative TTL from the SOA in the
 * authority section, smallest answer TTL, the PTR names, a message's header and question,
 * the messages of a TCP stream) on arbitrary bytes: no crash, no read past len. */
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
	struct dns_msg_head h;
	(void)dns_msg_question(buf, size, name, sizeof(name), &h);
	/* the same bytes as a TCP stream, in pieces of 1, 2, 3 ... octets */
	struct dns_frame f;
	memset(&f, 0, sizeof(f));
	for (size_t off = 0, piece = 1; off < size; piece++) {
		size_t n = size - off < piece ? size - off : piece;
		bool done;

		for (size_t used = 0; used < n;) {
			used += dns_frame_feed(&f, buf + off + used, n - used, &done);
			if (done)
				(void)dns_msg_question(f.head, f.have, name, sizeof(name), &h);
		}
		off += n;
	}
	memset(&res, 0, sizeof(res));
	(void)dns_reply_ptr_names(buf, size, &res, 16, NULL);
	for (size_t i = 0; i < res.n; i++)
		free(res.v[i]);
	free(res.v);
	free(buf);
	return 0;
}
