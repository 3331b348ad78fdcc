/* fuzz_config.c — random bytes as a YAML config through config_load_string(), and as text
 * through every value parser. Nothing may crash, leak or hang. A config that loads has a
 * nat64_prefixes table in normal form (RFC 6052 lengths, no overlap, bits 64-71 of a /96
 * zero, nothing under ::/64), and an IPv4 address placed behind each of its prefixes as RFC
 * 6052 2.2 places it comes back out of netaddr_client_from_sockaddr. A config that loads
 * also goes through what `mxgate -t` and the start say of it (session 37: no input reached
 * them before): config_warnings and config_start_refusals, each line at its key's
 * FILE:LINE:COL (config_key_where over the load's marks), the same count printed or not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "netaddr.h"
#include "fuzz_libfyaml.h"

static void fz_check_nat64(const struct netaddr_nat64 *t, const uint8_t *data, size_t size)
{
	static const uint8_t zero[8];
	uint8_t v4[4] = { 198, 18, 7, 7 };

	if (t->n > NETADDR_NAT64_MAX)
		abort();
	for (size_t i = 0; i < size && i < 4; i++)
		v4[i] = data[i];
	netaddr_nat64_set(t);
	for (size_t i = 0; i < t->n; i++) {
		int len = t->v[i].len;
		struct sockaddr_in6 sa;
		struct netaddr a;

		if (len != 32 && len != 40 && len != 48 && len != 56 && len != 64 && len != 96)
			abort();
		if (memcmp(t->v[i].b, zero, (size_t)(len < 64 ? len : 64) / 8) == 0 || (len == 96 && t->v[i].b[8]))
			abort();
		for (size_t k = (size_t)len / 8; k < sizeof(t->v[i].b); k++)
			if (t->v[i].b[k])
				abort();
		for (size_t k = 0; k < i; k++) {
			size_t shorter = (size_t)(t->v[k].len < len ? t->v[k].len : len) / 8;

			if (memcmp(t->v[k].b, t->v[i].b, shorter) == 0)
				abort();
		}
		/* RFC 6052 2.2: the IPv4 octets after the prefix, octet 8 (bits 64-71) skipped */
		memset(&sa, 0, sizeof(sa));
		sa.sin6_family = AF_INET6;
		memcpy(sa.sin6_addr.s6_addr, t->v[i].b, (size_t)len / 8);
		for (size_t o = (size_t)len / 8, k = 0; k < 4; o++)
			if (o != 8)
				sa.sin6_addr.s6_addr[o] = v4[k++];
		if (netaddr_client_from_sockaddr((struct sockaddr *)&sa, &a) != 0 || a.family != AF_INET ||
		    memcmp(a.b, v4, 4) != 0)
			abort();
		/* the u octet set: no IPv4-embedded address, left as it came */
		if (len != 96) {
			sa.sin6_addr.s6_addr[8] = 1;
			if (netaddr_client_from_sockaddr((struct sockaddr *)&sa, &a) != 0 || a.family != AF_INET6)
				abort();
		}
	}
	netaddr_nat64_set(NULL);
}

/* -t's warnings and the start's refusals (stat and access on the config's paths, nothing
 * written): printed, they are as many as counted, and text only when there are some */
static void fz_check_warnings(const struct mx_config *cfg)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	int n, m;

	if (fp == NULL)
		abort();
	n = config_warnings(cfg, NULL);
	m = config_warnings(cfg, fp);
	m += config_start_refusals(cfg, fp);
	n += config_start_refusals(cfg, NULL);
	if (fclose(fp) != 0)
		abort();
	if (n < 0 || n != m || (n == 0) != (len == 0))
		abort();
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	/* the value parsers take C strings: feed the text up to its first NUL */
	uint64_t u;
	struct cfg_rate r;
	struct cfg_cidr c;
	struct cfg_backend_url url;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *err;
	bool b;
	cfg_parse_size(text, &u);
	cfg_parse_duration(text, &u);
	cfg_parse_rate(text, &r);
	cfg_parse_bool(text, &b);
	if (cfg_parse_cidr(text, &c) == 0) {
		struct cfg_cidrlist l = { &c, 1 };
		cfg_cidrlist_match(&l, (struct sockaddr *)&ss);
	}
	cfg_parse_backend_url(text, &url, &err);
	if (cfg_parse_listen_address(text, &ss, &sl, &err) == 0) {
		struct cfg_cidrlist l = { &c, 0 };
		cfg_cidrlist_match(&l, (struct sockaddr *)&ss);
	}

	/* the whole engine, errors discarded */
	struct mx_config *cfg = NULL;
	if (!fuzz_libfyaml_known_crash(data, size) && config_load_string("fuzz.yaml", text, size, &cfg, NULL) == 0) {
		fz_check_nat64(&cfg->nat64_prefixes, data, size);
		fz_check_warnings(cfg);
		config_free(cfg);
	}
	free(text);
	return 0;
}
