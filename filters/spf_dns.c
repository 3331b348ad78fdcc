/* spf_dns.c — libspf2 lookups sent to the servers of `dns.resolvers` (see spf_dns.h). */
#include "filters/spf_dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf_dns_rr.h>

#define SPF_DNS_ANSWER_MAX 65535	/* a TCP answer (after a truncated UDP one) */

struct spf_dns_hook {
	struct sockaddr_in ns[MAXNS];
	int nns;
	int retrans;                     /* seconds per try, as glibc counts */
	int retry;
};

/* Copies one answer RR's data into slot idx of spfrr; 0 when stored, 1 when skipped. */
static int spf_dns_store(SPF_dns_rr_t *spfrr, int idx, const ns_msg *msg, const ns_rr *rr)
{
	const unsigned char *rd = ns_rr_rdata(*rr);
	size_t rdlen = ns_rr_rdlen(*rr);
	char name[NS_MAXDNAME];

	switch (spfrr->rr_type) {
	case ns_t_a:
		if (rdlen != 4 || SPF_dns_rr_buf_realloc(spfrr, idx, sizeof(struct in_addr)) != SPF_E_SUCCESS)
			return 1;
		memcpy(&spfrr->rr[idx]->a, rd, 4);
		return 0;
	case ns_t_aaaa:
		if (rdlen != 16 || SPF_dns_rr_buf_realloc(spfrr, idx, sizeof(struct in6_addr)) != SPF_E_SUCCESS)
			return 1;
		memcpy(&spfrr->rr[idx]->aaaa, rd, 16);
		return 0;
	case ns_t_txt: {
		/* RFC 7208 3.3: the character-strings joined without anything between them */
		size_t in = 0, out = 0;
		char *t;

		if (SPF_dns_rr_buf_realloc(spfrr, idx, rdlen + 1) != SPF_E_SUCCESS)
			return 1;
		t = spfrr->rr[idx]->txt;
		while (in < rdlen) {
			size_t n = rd[in++];

			if (n > rdlen - in)
				return 1;
			memcpy(t + out, rd + in, n);
			in += n;
			out += n;
		}
		t[out] = '\0';
		return 0;
	}
	case ns_t_mx:
	case ns_t_ptr: {
		const unsigned char *p = spfrr->rr_type == ns_t_mx ? rd + 2 : rd;

		if (rdlen < (spfrr->rr_type == ns_t_mx ? 3u : 1u) ||
		    dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), p, name, sizeof(name)) < 0 ||
		    SPF_dns_rr_buf_realloc(spfrr, idx, strlen(name) + 1) != SPF_E_SUCCESS)
			return 1;
		memcpy(spfrr->rr[idx]->mx, name, strlen(name) + 1);
		return 0;
	}
	default:
		return 1;
	}
}

static SPF_dns_rr_t *spf_dns_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	const struct spf_dns_hook *h = layer->hook;
	struct __res_state st;
	unsigned char *ans;
	SPF_dns_rr_t *spfrr;
	ns_msg msg;
	int len, herr = TRY_AGAIN, n = 0;
	uint32_t ttl = 0;

	(void)should_cache;
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0)
		return SPF_dns_rr_new_init(layer, domain, type, 0, TRY_AGAIN);
	/* our servers instead of resolv.conf's; the name is absolute: no search list */
	for (int i = 0; i < h->nns; i++)
		st.nsaddr_list[i] = h->ns[i];
	st.nscount = h->nns;
	st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
	st.retrans = h->retrans;
	st.retry = h->retry;
	ans = malloc(SPF_DNS_ANSWER_MAX);
	len = ans != NULL ? res_nquery(&st, domain, ns_c_in, type, ans, SPF_DNS_ANSWER_MAX) : -1;
	if (len < 0) {
		/* NXDOMAIN and NODATA are answers; anything else (SERVFAIL, no reply) a temporary error */
		herr = st.res_h_errno == HOST_NOT_FOUND || st.res_h_errno == NO_DATA ? st.res_h_errno : TRY_AGAIN;
		spfrr = SPF_dns_rr_new_init(layer, domain, type, 0, herr);
		goto done;
	}
	if (len > SPF_DNS_ANSWER_MAX)
		len = SPF_DNS_ANSWER_MAX;
	if (ns_initparse(ans, len, &msg) < 0) {
		spfrr = SPF_dns_rr_new_init(layer, domain, type, 0, TRY_AGAIN);
		goto done;
	}
	spfrr = SPF_dns_rr_new_init(layer, domain, type, 0, NETDB_SUCCESS);
	if (spfrr == NULL)
		goto done;
	for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
		ns_rr rr;

		/* a CNAME chain comes first: only the records of the asked type count */
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != type)
			continue;
		if (spf_dns_store(spfrr, n, &msg, &rr) == 0) {
			ttl = n == 0 || ns_rr_ttl(rr) < ttl ? ns_rr_ttl(rr) : ttl;
			n++;
		}
	}
	spfrr->num_rr = n;
	spfrr->ttl = ttl;
	if (n == 0)
		spfrr->herrno = NO_DATA;
done:
	free(ans);
	res_nclose(&st);
	return spfrr;
}

static void spf_dns_destroy(SPF_dns_server_t *layer)
{
	if (layer == NULL)
		return;
	free(layer->hook);
	free(layer);
}

SPF_dns_server_t *spf_dns_layer_new(const struct cfg_strlist *resolvers, uint64_t timeout_ms,
    int tries)
{
	SPF_dns_server_t *layer;
	struct spf_dns_hook *h;

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	for (size_t i = 0; resolvers != NULL && i < resolvers->n && h->nns < MAXNS; i++) {
		const char *s = resolvers->v[i], *colon = strrchr(s, ':');
		char ip[INET_ADDRSTRLEN];
		unsigned long port = 53;
		struct in_addr a;

		/* "ip" or "ip:port"; IPv6 ("[::1]:53", "::1") is left to resolv.conf */
		if (s[0] == '[' || (colon != NULL && strchr(s, ':') != colon))
			continue;
		if (colon != NULL) {
			char *end;

			port = strtoul(colon + 1, &end, 10);
			if (*end != '\0' || port == 0 || port > 65535)
				continue;
		}
		if (snprintf(ip, sizeof(ip), "%.*s", (int)(colon ? colon - s : (long)strlen(s)), s) >=
		        (int)sizeof(ip) || inet_pton(AF_INET, ip, &a) != 1)
			continue;
		h->ns[h->nns].sin_family = AF_INET;
		h->ns[h->nns].sin_port = htons((uint16_t)port);
		h->ns[h->nns].sin_addr = a;
		h->nns++;
	}
	if (h->nns == 0) {
		free(h);
		return NULL;
	}
	if (tries < 1)
		tries = 1;
	/* glibc counts whole seconds per try: at least one */
	h->retry = tries;
	h->retrans = (int)(timeout_ms / 1000 / (uint64_t)tries);
	if (h->retrans < 1)
		h->retrans = 1;
	layer = calloc(1, sizeof(*layer));
	if (layer == NULL) {
		free(h);
		return NULL;
	}
	layer->destroy = spf_dns_destroy;
	layer->lookup = spf_dns_lookup;
	layer->name = "mxgate";
	layer->hook = h;
	return layer;
}

/* ---- void lookups (RFC 7208 4.6.4) ---------------------------------------------------------- */

/* One check runs on one thread from start to end (spf_engine_check), so a thread-local count
 * is the check's own. */
static __thread int spf_dns_voids;

void spf_dns_void_reset(void)
{
	spf_dns_voids = 0;
}

int spf_dns_void_count(void)
{
	return spf_dns_voids;
}

/* Passes the lookup down and counts the answers with no record: NXDOMAIN, or NOERROR with
 * none of the type. Only A, AAAA, MX and PTR: the lookups of a, mx, ptr and exists. TXT is
 * left out: a missing include/redirect target is permerror in libspf2 already, and the
 * exp= lookup after a fail must not turn the fail into permerror. */
static SPF_dns_rr_t *spf_dns_void_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	SPF_dns_rr_t *rr = SPF_dns_lookup(layer->layer_below, domain, type, should_cache);

	if (rr != NULL && (type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx || type == ns_t_ptr) &&
	    (rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA ||
	     (rr->herrno == NETDB_SUCCESS && rr->num_rr == 0)))
		spf_dns_voids++;
	return rr;
}

static void spf_dns_void_destroy(SPF_dns_server_t *layer)
{
	free(layer);
}

SPF_dns_server_t *spf_dns_void_layer_new(SPF_dns_server_t *below)
{
	SPF_dns_server_t *layer = calloc(1, sizeof(*layer));

	if (layer == NULL)
		return NULL;
	layer->destroy = spf_dns_void_destroy;
	layer->lookup = spf_dns_void_lookup;
	layer->layer_below = below;
	layer->name = "voids";
	return layer;
}
