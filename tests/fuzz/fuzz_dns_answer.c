/* fuzz_dns_answer.c — a DNS reply message read as an answer, by both of mxgate's readers:
 * dns_reply_parse (filters/dns.c: A/AAAA through c-ares, TXT records with their
 * character-strings joined at any length, PTR names through dns_reply_ptr_names, MX records
 * through dns_reply_mx_names) and SPF's own
 * transport, spf_dns_reply_read (filters/spf_dns.c: A, AAAA, TXT, MX, PTR through glibc's
 * ns_parserr into libspf2's records). Every input is read as each type. Checks: no crash, no
 * read past the reply (an exact-size heap copy), no leak; a TXT string (either reader) is
 * never longer than the reply, an A/AAAA text parses back as an address, SPF's records
 * number no more than the answer section and hold NUL-terminated names of at most
 * NS_MAXDNAME. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dns.h"
#include "filters/spf_dns.h"

#include <spf2/spf_dns_rr.h>

static SPF_dns_server_t layer;	/* only the records' owner: spf_dns_reply_read asks nothing */

static void fuzz_dns(const unsigned char *buf, size_t size, enum dns_type t)
{
	struct dns_result res;
	uint32_t ttl;
	unsigned char bin[16];

	memset(&res, 0, sizeof(res));
	(void)dns_reply_parse(t, buf, (int)size, &res, &ttl);
	for (size_t i = 0; i < res.n; i++) {
		size_t n = strlen(res.v[i]);

		if (t == DNS_T_TXT && n > size)
			abort();
		if (t == DNS_T_A && inet_pton(AF_INET, res.v[i], bin) != 1)
			abort();
		if (t == DNS_T_AAAA && inet_pton(AF_INET6, res.v[i], bin) != 1)
			abort();
		/* "PREFERENCE NAME": a number of at most 5 digits, one space, a name */
		if (t == DNS_T_MX && (strspn(res.v[i], "0123456789") - 1 > 4 ||
		    res.v[i][strspn(res.v[i], "0123456789")] != ' ' || n > DNS_NAME_TEXT_MAX + 6))
			abort();
		free(res.v[i]);
	}
	free(res.v);
}

static void fuzz_spf(const unsigned char *buf, size_t size, ns_type t)
{
	SPF_dns_rr_t *rr = spf_dns_reply_read(&layer, "example.test", t, buf, (int)size);

	if (rr == NULL)
		return;
	if (rr->herrno == NETDB_SUCCESS && (rr->num_rr < 1 || (size_t)rr->num_rr > size / 11))
		abort();
	for (int i = 0; i < rr->num_rr; i++) {
		if (t == ns_t_txt && strlen(rr->rr[i]->txt) > size)
			abort();
		if ((t == ns_t_mx || t == ns_t_ptr) && strnlen(rr->rr[i]->mx, NS_MAXDNAME) >= NS_MAXDNAME)
			abort();
	}
	SPF_dns_rr_free(rr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy, so ASan sees any read past the reply */
	unsigned char *buf = malloc(size ? size : 1);

	if (buf == NULL || size > 65535) {
		free(buf);
		return 0;
	}
	memcpy(buf, data, size);
	fuzz_dns(buf, size, DNS_T_A);
	fuzz_dns(buf, size, DNS_T_AAAA);
	fuzz_dns(buf, size, DNS_T_TXT);
	fuzz_dns(buf, size, DNS_T_PTR);
	fuzz_dns(buf, size, DNS_T_MX);
	fuzz_spf(buf, size, ns_t_a);
	fuzz_spf(buf, size, ns_t_aaaa);
	fuzz_spf(buf, size, ns_t_txt);
	fuzz_spf(buf, size, ns_t_mx);
	fuzz_spf(buf, size, ns_t_ptr);
	free(buf);
	return 0;
}
