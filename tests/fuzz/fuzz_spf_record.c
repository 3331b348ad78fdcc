/* fuzz_spf_record.c — the SPF text parsers of filters/spf_dns.c on arbitrary input: the term
 * count of a record (checked against libspf2's own compiler: a record it compiles without
 * errors never has more mechanisms than counted, else a cut record would go unnoticed) and
 * the forms of a dns.resolvers server. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/spf_dns.h"

static SPF_server_t *fz_srv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 8);
	struct sockaddr_storage ss;
	socklen_t len;
	bool redirect;
	int terms;

	if (s == NULL)
		return 0;
	memcpy(s, "v=spf1 ", 7);
	memcpy(s + 7, data, size);
	s[size + 7] = '\0';
	if (strlen(s) != size + 7) {	/* a TXT record cannot hold NUL for libspf2 either */
		free(s);
		return 0;
	}
	if (fz_srv == NULL)
		fz_srv = SPF_server_new(SPF_DNS_CACHE, 0);
	terms = spf_dns_size_terms(s, &redirect);
	if (terms < 0)
		abort();
	if (fz_srv != NULL) {
		SPF_response_t *resp = SPF_response_new(NULL);
		SPF_record_t *rec = NULL;

		if (resp != NULL && SPF_record_compile(fz_srv, resp, &rec, s) == SPF_E_SUCCESS &&
		    rec != NULL && SPF_response_errors(resp) == 0 && rec->num_mech > terms)
			abort();
		SPF_record_free(rec);
		SPF_response_free(resp);
	}
	(void)spf_dns_parse_server(s + 7, &ss, &len);
	free(s);
	return 0;
}
