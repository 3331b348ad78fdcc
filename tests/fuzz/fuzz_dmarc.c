/* fuzz_dmarc.c — the DMARC record parser, the From: domain extractor, the organisational
 * domain lookup and the whole decision over peer-controlled text, plus the
 * Authentication-Results pieces (authserv-id detection, value quoting).
 *
 * Input: split at the first two NUL bytes into a DMARC TXT record, a From: value and a
 * domain. Invariants: nothing crashes or reads outside its piece; parsed pct stays in
 * 0..100; an extracted domain is non-empty lowercase [a-z0-9._-]; a quoted value never
 * contains CR or LF. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/authres.h"
#include "filters/dmarc.h"

static char *fz_piece(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p = nul ? nul + 1 : end;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *rec = fz_piece(&p, end), *from = fz_piece(&p, end), *dom = fz_piece(&p, end);
	struct dmarc_record r;
	struct dmarc_input in;
	struct dmarc_outcome out;
	char fd[256], org[256], q[512];
	const char *txt[1] = { rec };
	const char *dk[1] = { dom };

	if (dmarc_record_parse(rec, strlen(rec), &r) == DMARC_REC_OK && (r.pct < 0 || r.pct > 100))
		abort();
	{
		/* every domain of the field (RFC 7489 6.6.1): bounded, distinct, never empty */
		char doms[4][256];
		size_t nd = 0;

		if (dmarc_from_domains(from, strlen(from), doms, 4, &nd) != 0 && nd != 4)
			abort();
		for (size_t i = 0; i < nd; i++) {
			if (doms[i][0] == '\0')
				abort();
			for (size_t j = 0; j < i; j++)
				if (strcmp(doms[i], doms[j]) == 0)
					abort();
		}
		/* a single domain from dmarc_from_domain is the first of them */
		if (dmarc_from_domain(from, strlen(from), fd, sizeof(fd)) == 0 && (nd == 0 || strcmp(fd, doms[0]) != 0))
			abort();
	}
	if (dmarc_from_domain(from, strlen(from), fd, sizeof(fd)) == 0) {
		if (fd[0] == '\0')
			abort();
		for (const char *c = fd; *c; c++)
			if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_'))
				abort();
		if (dmarc_org_domain(fd, org, sizeof(org)) != 0)
			org[0] = '\0';
		memset(&in, 0, sizeof(in));
		in.from_domain = fd;
		in.org_domain = org;
		in.at_from.status = DMARC_DNS_RECORDS;
		in.at_from.txt = txt;
		in.at_from.n = 1;
		in.at_org.status = DMARC_DNS_RECORDS;
		in.at_org.txt = txt;
		in.at_org.n = 1;
		in.dkim_pass = dk;
		in.ndkim_pass = 1;
		in.spf_domain = dom;
		in.roll = size % 100;
		dmarc_evaluate(&in, &out);
	}
	dmarc_aligned(dom, fd, size & 1);
	authres_is_ours(rec, strlen(rec), dom[0] ? dom : "mx.example.test");
	if (authres_quote_value(from, q, sizeof(q)) == 0 && (strchr(q, '\r') || strchr(q, '\n')))
		abort();
	free(rec);
	free(from);
	free(dom);
	return 0;
}
