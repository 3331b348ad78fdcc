/* fuzz_host_names.c — the host names a load resolves before the pool starts
 * (config_host_names: backend servers, route servers, the quarantine URL, the filter peers'
 * addresses, the dns.resolvers list written into a buffer of any size) and the name check of
 * SPF's own DNS transport (dns_name_askable, then res_nmkquery as filters/spf_dns.c builds its
 * query). Input: lines; the first octet of each says where its rest goes (s: a backend server,
 * r: a route's server, q: the quarantine, p: a plugin address, d: a resolver, any other: a
 * name SPF asks for); the input's first octet is the resolvers buffer's size. Nothing may
 * crash or leak; every name collected is found again, none twice, and the resolvers text is
 * a terminated string inside its buffer. No I/O: numeric names are taken, others wait for a
 * resolve this target does not start. */
#include <arpa/nameser.h>
#include <resolv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/dns.h"
#include "proxy/config.h"
#include "proxy/hostres.h"

#define FUZZ_MAX 16

static void fuzz_spf_name(const char *name)
{
	struct __res_state st;
	unsigned char q[NS_PACKETSZ];
	int qlen;

	if (!dns_name_askable(name, strlen(name)))
		return;
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0)
		return;
	st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
	qlen = res_nmkquery(&st, ns_o_query, name, ns_c_in, ns_t_txt, NULL, 0, NULL, q, sizeof(q));
	res_nclose(&st);
	if (qlen > (int)sizeof(q))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend_server_config sv[FUZZ_MAX];
	struct backend_route_config rt[1];
	struct plugin_config pc[FUZZ_MAX];
	char *route_servers[FUZZ_MAX], *resolvers[FUZZ_MAX];
	struct mx_config *c;
	struct hostres_set *s;
	char *text, *line, *save = NULL, *servers;
	size_t cap;

	if (size < 1 || size > 8192)
		return 0;
	cap = data[0] * 4u;
	c = calloc(1, sizeof(*c));
	text = malloc(size);
	servers = malloc(cap ? cap : 1);
	if (c == NULL || text == NULL || servers == NULL)
		goto out;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	memset(sv, 0, sizeof(sv));
	memset(rt, 0, sizeof(rt));
	memset(pc, 0, sizeof(pc));
	c->backends.servers.v = sv;
	c->backends.routes.v = rt;
	rt[0].servers.v = route_servers;
	c->plugins.v = pc;
	c->dns.resolvers.v = resolvers;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *v = line + 1;

		switch (line[0]) {
		case 's':
			if (c->backends.servers.n < FUZZ_MAX)
				sv[c->backends.servers.n++].address = v;
			break;
		case 'r':
			c->backends.routes.n = 1;
			if (rt[0].servers.n < FUZZ_MAX)
				route_servers[rt[0].servers.n++] = v;
			break;
		case 'q':
			c->quarantine = v;
			break;
		case 'p':
			if (c->plugins.n < FUZZ_MAX)
				pc[c->plugins.n++].address = v;
			break;
		case 'd':
			if (c->dns.resolvers.n < FUZZ_MAX)
				resolvers[c->dns.resolvers.n++] = v;
			break;
		default:
			fuzz_spf_name(line);
			break;
		}
	}
	if (cap > 0)
		memset(servers, 'x', cap);
	s = config_host_names(c, servers, cap);
	if (s != NULL) {
		for (size_t i = 0; i < s->n; i++) {
			if (s->v[i].name == NULL || hostres_set_find(s, s->v[i].name) != &s->v[i])
				abort();	/* lost, or the same name (any case) twice */
			fuzz_spf_name(s->v[i].name);
		}
		if (cap > 0 && memchr(servers, '\0', cap) == NULL)
			abort();
		hostres_set_free(s);
	}
out:
	free(c);
	free(text);
	free(servers);
	return 0;
}
