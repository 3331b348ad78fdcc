/* fuzz_dns_names.c — the text parsers of the DNS filters on arbitrary input: HELO syntax
 * (peer input), DNSBL code filters (config), reason templates with a peer's TXT record,
 * reverse-name building from a textual address. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dns.h"
#include "filters/dnsbl.h"
#include "filters/helo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), addr[64], out[300];
	struct dnsbl_code code;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)helo_syntax_classify(s, addr, sizeof(addr));
	if (dnsbl_code_parse(s, &code) == 0)
		(void)dnsbl_code_match(&code, 1, 0x7f000002u);
	dnsbl_reason_format(s, "198.18.1.7", "bl.test", s, out, sizeof(out));
	dnsbl_reason_format("{txt}", "198.18.1.7", "bl.test", s, out, sizeof(out));
	dnsbl_symbol_name(s, out, 64);
	(void)dns_name_reverse_str(s, "bl.test", out, sizeof(out));
	free(s);
	return 0;
}
