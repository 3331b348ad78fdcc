/* spf_dns.c — libspf2 lookups sent to the servers of `dns.resolvers` (see spf_dns.h). */
#include "filters/spf_dns.h"
#include "filters/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <spf2/spf_dns_rr.h>

#define SPF_DNS_ANSWER_MAX 65535	/* a TCP answer (after a truncated UDP one) */

struct spf_dns_hook {
	struct sockaddr_storage ns[MAXNS];   /* IPv4 or IPv6 */
	socklen_t nslen[MAXNS];
	int nns;
	uint64_t timeout_ms;             /* one lookup, all tries and servers */
	int tries;
	struct dns_cache *cache;         /* mxgate's resolvers' answers (NULL: none) */
	uint64_t negative_ttl_ms, max_ttl_ms; /* for what this layer stores there */
};

/* The end of the check running on this thread (ms, CLOCK_MONOTONIC; 0: none): a lookup
 * started after it fails at once, one running is cut there. */
static __thread uint64_t spf_dns_check_end;

static uint64_t spf_dns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void spf_dns_check_deadline(uint64_t ms_from_now)
{
	spf_dns_check_end = ms_from_now ? spf_dns_now_ms() + ms_from_now : 0;
}

/* ---- the transport: UDP, then TCP after a truncated answer, every wait bounded ---------- */

/* Why not glibc's res_nquery: after a truncated UDP answer it asks again over TCP and
 * blocks in connect() and read() without any timeout, so a server that accepts and never
 * answers (or announces 65535 octets and sends ten) held a pool thread for ever, and with
 * it mxgate's shutdown. */

/* Waits until fd is ready for events or end (ms); 1 ready, 0 time is up, -1 error. */
static int spf_dns_wait(int fd, short events, uint64_t end)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		uint64_t now = spf_dns_now_ms();
		int rc;

		if (now >= end)
			return 0;
		rc = poll(&pfd, 1, (int)(end - now > 60000 ? 60000 : end - now));
		if (rc > 0)
			return pfd.revents & (events | POLLHUP | POLLERR) ? 1 : -1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* Whether ans (len) answers query q, whose header and question section are q[0..qend): same
 * id, QR set, the same question. */
static bool spf_dns_matches(const unsigned char *q, int qend, const unsigned char *ans, int len)
{
	if (len < qend || qend < 12)
		return false;
	if (ans[0] != q[0] || ans[1] != q[1] || (ans[2] & 0x80) == 0)
		return false;
	if (ans[4] != 0 || ans[5] != 1)
		return false;
	/* the question section: a byte compare ignoring case (no compression in it; label
	 * lengths, the root's 0 and QTYPE/QCLASS are compared too) */
	for (int i = 12; i < qend; i++)
		if (tolower(ans[i]) != tolower(q[i]))
			return false;
	return true;
}

/* EDNS0 (RFC 6891 6.1.2): the OPT pseudo-RR appended to a query, advertising a UDP payload of
 * 1232 octets (DNS flag day 2020), as filters/dns.c does: a long SPF record comes in one
 * datagram instead of a truncated answer and a TCP retry. */
#define SPF_DNS_EDNS_SIZE 1232
#define SPF_DNS_OPT_LEN 11

/* Appends the OPT RR to the query q[0..qlen) (room for it checked by the caller). */
static int spf_dns_add_opt(unsigned char *q, int qlen)
{
	static const unsigned char opt[SPF_DNS_OPT_LEN] = {
		0,                                                /* the root name */
		0, 41,                                            /* TYPE OPT */
		SPF_DNS_EDNS_SIZE >> 8, SPF_DNS_EDNS_SIZE & 0xff, /* CLASS: UDP payload size */
		0, 0, 0, 0,                                       /* extended RCODE, version 0, flags */
		0, 0                                              /* RDLEN */
	};

	memcpy(q + qlen, opt, sizeof(opt));
	q[10] = 0;
	q[11] = 1;	/* ARCOUNT */
	return qlen + SPF_DNS_OPT_LEN;
}

/* One UDP exchange with server ns until end: the answer's length, 0 no answer, -1 error. */
static int spf_dns_udp(const struct sockaddr *ns, socklen_t nslen, const unsigned char *q, int qlen,
    int qend, unsigned char *ans, int anslen, uint64_t end)
{
	int fd = socket(ns->sa_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), n = -1;

	if (fd < 0)
		return -1;
	if (connect(fd, ns, nslen) != 0 || send(fd, q, (size_t)qlen, 0) != qlen)
		goto out;
	for (;;) {
		int w = spf_dns_wait(fd, POLLIN, end);

		if (w <= 0) {
			n = w;
			goto out;
		}
		n = (int)recv(fd, ans, (size_t)anslen, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			goto out;	/* ICMP unreachable: refused */
		if (spf_dns_matches(q, qend, ans, n))
			goto out;
		/* a stray datagram (another id): keep waiting */
	}
out:
	close(fd);
	return n;
}

/* Reads exactly len octets from fd until end; 0 or -1. */
static int spf_dns_read_full(int fd, unsigned char *buf, size_t len, uint64_t end)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n;

		if (spf_dns_wait(fd, POLLIN, end) <= 0)
			return -1;
		n = recv(fd, buf + got, len - got, 0);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* One TCP exchange (RFC 1035 4.2.2, RFC 7766) until end: the answer's length or -1. */
static int spf_dns_tcp(const struct sockaddr *ns, socklen_t nslen, const unsigned char *q, int qlen,
    int qend, unsigned char *ans, int anslen, uint64_t end)
{
	int fd = socket(ns->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), n = -1, err = 0;
	unsigned char lenbuf[2], out[2 + NS_PACKETSZ * 2];
	socklen_t elen = sizeof(err);
	size_t sent = 0;

	if (fd < 0 || qlen > (int)sizeof(out) - 2)
		goto out;
	if (connect(fd, ns, nslen) != 0 && errno != EINPROGRESS)
		goto out;
	if (spf_dns_wait(fd, POLLOUT, end) <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
		goto out;
	out[0] = (unsigned char)(qlen >> 8);
	out[1] = (unsigned char)qlen;
	memcpy(out + 2, q, (size_t)qlen);
	while (sent < (size_t)qlen + 2) {
		ssize_t k;

		if (spf_dns_wait(fd, POLLOUT, end) <= 0)
			goto out;
		k = send(fd, out + sent, (size_t)qlen + 2 - sent, MSG_NOSIGNAL);
		if (k < 0 && errno != EAGAIN && errno != EINTR)
			goto out;
		if (k > 0)
			sent += (size_t)k;
	}
	if (spf_dns_read_full(fd, lenbuf, 2, end) != 0)
		goto out;
	n = lenbuf[0] << 8 | lenbuf[1];
	if (n > anslen || spf_dns_read_full(fd, ans, (size_t)n, end) != 0 ||
	    !spf_dns_matches(q, qend, ans, n))
		n = -1;
out:
	if (fd >= 0)
		close(fd);
	return n;
}

/* Asks the servers for (name, type) until an answer or the lookup's end. Returns the answer's
 * length with *rcode; -1 with *herr TRY_AGAIN when none came, or HOST_NOT_FOUND when the
 * name cannot be asked. */
static int spf_dns_query(const struct spf_dns_hook *h, const char *name, ns_type type,
    unsigned char *ans, int anslen, int *rcode, int *herr)
{
	struct __res_state st;
	unsigned char q[NS_PACKETSZ + SPF_DNS_OPT_LEN];
	uint64_t start = spf_dns_now_ms(), end = start + h->timeout_ms;
	uint64_t per_try = h->timeout_ms / (uint64_t)(h->tries * h->nns);
	int qlen, qend;
	uint16_t id;

	*herr = TRY_AGAIN;
	if (spf_dns_check_end != 0 && spf_dns_check_end < end)
		end = spf_dns_check_end;
	/* a name that cannot be asked cannot exist: what the check hears (RFC 7208 4.3, 7.3) */
	if (!dns_name_askable(name, strlen(name))) {
		*herr = HOST_NOT_FOUND;
		return -1;
	}
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0)
		return -1;
	st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
	qend = res_nmkquery(&st, ns_o_query, name, ns_c_in, type, NULL, 0, NULL, q, NS_PACKETSZ);
	res_nclose(&st);
	if (qend < 12) {
		*herr = HOST_NOT_FOUND;
		return -1;
	}
	qlen = spf_dns_add_opt(q, qend);
	if (getrandom(&id, sizeof(id), 0) == sizeof(id)) {
		q[0] = (unsigned char)(id >> 8);
		q[1] = (unsigned char)id;
	}
	if (per_try < 50)
		per_try = 50;
	for (int t = 0; t < h->tries; t++) {
		for (int i = 0; i < h->nns; i++) {
			uint64_t now = spf_dns_now_ms(), try_end = now + per_try;
			int n;

			if (now >= end)
				return -1;
			if (try_end > end || (t == h->tries - 1 && i == h->nns - 1))
				try_end = end;
			n = spf_dns_udp((const struct sockaddr *)&h->ns[i], h->nslen[i], q, qlen, qend, ans,
			    anslen, try_end);
			if (n >= 12 && (ans[3] & 0x0f) == ns_r_formerr && qlen > qend) {
				/* RFC 6891 7: a server that does not know EDNS0: the same query without */
				qlen = qend;
				q[11] = 0;
				n = spf_dns_udp((const struct sockaddr *)&h->ns[i], h->nslen[i], q, qlen, qend,
				    ans, anslen, try_end);
			}
			if (n > 0 && (ans[2] & 0x02) != 0)	/* TC: the whole answer over TCP */
				n = spf_dns_tcp((const struct sockaddr *)&h->ns[i], h->nslen[i], q, qlen, qend,
				    ans, anslen, end);
			if (n < 12)
				continue;
			*rcode = ans[3] & 0x0f;
			if (*rcode == ns_r_servfail || *rcode == ns_r_refused || *rcode == ns_r_notimpl ||
			    *rcode == ns_r_formerr)
				continue;	/* the next server may know better */
			return n;
		}
	}
	return -1;
}

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

/* The cache's type of a libspf2 lookup's; -1 for one the cache does not hold. */
static int spf_dns_cache_type(ns_type type)
{
	switch (type) {
	case ns_t_a: return DNS_T_A;
	case ns_t_aaaa: return DNS_T_AAAA;
	case ns_t_txt: return DNS_T_TXT;
	case ns_t_mx: return DNS_T_MX;
	case ns_t_ptr: return DNS_T_PTR;
	default: return -1;
	}
}

/* (domain, type) from the answers mxgate's resolvers cached (filters/dns.c: A/AAAA as text,
 * TXT records with their character-strings joined, MX "PREFERENCE NAME", PTR names): NULL on
 * a miss. A name the FCrDNS test (the client's name and its address) or the sender-domain
 * check (MX) asked at connect or MAIL is not asked again by an a: or mx: term. */
static SPF_dns_rr_t *spf_dns_cached(SPF_dns_server_t *layer, const char *domain, ns_type type)
{
	const struct spf_dns_hook *h = layer->hook;
	int t = spf_dns_cache_type(type);
	struct dns_result *c = h->cache != NULL && t >= 0 ?
	    dns_cache_get(h->cache, (enum dns_type)t, domain, dns_cache_now_ms()) : NULL;
	SPF_dns_rr_t *spfrr = NULL;
	int n = 0;

	if (c == NULL)
		return NULL;
	if (c->status == DNS_S_NXDOMAIN || c->status == DNS_S_NODATA) {
		spfrr = SPF_dns_rr_new_init(layer, domain, type, c->ttl,
		    c->status == DNS_S_NXDOMAIN ? HOST_NOT_FOUND : NO_DATA);
		goto out;
	}
	if (c->status != DNS_S_OK)
		goto out;	/* only answers are cached; anything else is asked */
	spfrr = SPF_dns_rr_new_init(layer, domain, type, c->ttl, NETDB_SUCCESS);
	for (size_t i = 0; spfrr != NULL && i < c->n; i++) {
		const char *v = c->v[i];
		size_t need;

		if (type == ns_t_mx) {
			v = strchr(v, ' ');
			v = v == NULL ? "" : v + 1;
			if (strcmp(v, ".") == 0)
				v = "";	/* the root, as dn_expand gives it (spf_dns_store) */
		}
		need = type == ns_t_a ? sizeof(struct in_addr) : type == ns_t_aaaa ? sizeof(struct in6_addr) :
		    strlen(v) + 1;
		if (SPF_dns_rr_buf_realloc(spfrr, n, need) != SPF_E_SUCCESS)
			continue;
		if (type == ns_t_a ? inet_pton(AF_INET, v, &spfrr->rr[n]->a) == 1 :
		    type == ns_t_aaaa ? inet_pton(AF_INET6, v, &spfrr->rr[n]->aaaa) == 1 :
		    (memcpy(spfrr->rr[n]->txt, v, need), true))
			n++;
	}
	if (spfrr != NULL) {
		spfrr->num_rr = n;
		if (n == 0)
			spfrr->herrno = NO_DATA;
	}
out:
	dns_result_free(c);
	return spfrr;
}

static SPF_dns_rr_t *spf_dns_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	const struct spf_dns_hook *h = layer->hook;
	unsigned char *ans;
	SPF_dns_rr_t *spfrr;
	int len = -1, herr = TRY_AGAIN, rcode = 0;

	(void)should_cache;
	if (dns_name_askable(domain, strlen(domain)) && (spfrr = spf_dns_cached(layer, domain, type)) != NULL)
		return spfrr;
	ans = malloc(SPF_DNS_ANSWER_MAX);
	if (ans != NULL)
		len = spf_dns_query(h, domain, type, ans, SPF_DNS_ANSWER_MAX, &rcode, &herr);
	if (len >= 0 && h->cache != NULL && spf_dns_cache_type(type) >= 0)
		/* for the next message from the domain (and mxgate's own lookups of the name) */
		dns_cache_put_reply(h->cache, (enum dns_type)spf_dns_cache_type(type), domain, ans, len,
		    h->negative_ttl_ms, h->max_ttl_ms);
	if (len >= 0 && rcode == ns_r_nxdomain) {
		herr = HOST_NOT_FOUND;
		len = -1;
	} else if (len >= 0 && rcode != ns_r_noerror) {
		herr = TRY_AGAIN;
		len = -1;
	}
	if (len < 0) {
		/* NXDOMAIN (or a name that cannot exist) is an answer; anything else (SERVFAIL,
		 * no reply in time) a temporary error */
		spfrr = SPF_dns_rr_new_init(layer, domain, type, 0, herr);
	} else {
		spfrr = spf_dns_reply_read(layer, domain, type, ans, len);
	}
	free(ans);
	return spfrr;
}

/* See spf_dns.h. */
SPF_dns_rr_t *spf_dns_reply_read(SPF_dns_server_t *layer, const char *domain, ns_type type,
    const unsigned char *ans, int len)
{
	SPF_dns_rr_t *spfrr;
	ns_msg msg;
	int n = 0;
	uint32_t ttl = 0;

	if (ns_initparse(ans, len, &msg) < 0)
		return SPF_dns_rr_new_init(layer, domain, type, 0, TRY_AGAIN);
	spfrr = SPF_dns_rr_new_init(layer, domain, type, 0, NETDB_SUCCESS);
	if (spfrr == NULL)
		return NULL;
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
	return spfrr;
}

static void spf_dns_destroy(SPF_dns_server_t *layer)
{
	if (layer == NULL)
		return;
	free(layer->hook);
	free(layer);
}

int spf_dns_parse_server(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *host = s, *port_s = NULL;
	size_t hl;
	unsigned long port = 53;

	if (s == NULL)
		return -1;
	if (s[0] == '[') {			/* "[v6]" or "[v6]:port" */
		const char *close = strchr(s, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return -1;
		host = s + 1;
		hl = (size_t)(close - host);
		port_s = close[1] == ':' ? close + 2 : NULL;
	} else if (strchr(s, ':') != NULL && strchr(s, ':') == strrchr(s, ':')) {	/* "v4:port" */
		hl = (size_t)(strchr(s, ':') - s);
		port_s = strchr(s, ':') + 1;
	} else {				/* "v4" or a bare "v6" */
		hl = strlen(s);
	}
	if (hl == 0 || hl >= sizeof(ip))
		return -1;
	memcpy(ip, host, hl);
	ip[hl] = '\0';
	if (port_s != NULL) {
		char *end;

		port = strtoul(port_s, &end, 10);
		if (*port_s == '\0' || *end != '\0' || port == 0 || port > 65535)
			return -1;
	}
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		((struct sockaddr_in *)ss)->sin_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in6);
		return 0;
	}
	return -1;
}

SPF_dns_server_t *spf_dns_layer_new(const struct cfg_strlist *resolvers, uint64_t timeout_ms,
    int tries, struct dns_cache *cache, uint64_t negative_ttl_ms, uint64_t max_ttl_ms)
{
	SPF_dns_server_t *layer;
	struct spf_dns_hook *h;

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	for (size_t i = 0; resolvers != NULL && i < resolvers->n && h->nns < MAXNS; i++)
		if (spf_dns_parse_server(resolvers->v[i], &h->ns[h->nns], &h->nslen[h->nns]) == 0)
			h->nns++;
	if (h->nns == 0 && (resolvers == NULL || resolvers->n == 0)) {
		/* no dns.resolvers: resolv.conf's IPv4 servers, through the same bounded transport */
		struct __res_state st;

		memset(&st, 0, sizeof(st));
		if (res_ninit(&st) == 0) {
			for (int i = 0; i < st.nscount && i < MAXNS; i++)
				if (st.nsaddr_list[i].sin_family == AF_INET) {
					memcpy(&h->ns[h->nns], &st.nsaddr_list[i], sizeof(st.nsaddr_list[i]));
					h->nslen[h->nns++] = sizeof(struct sockaddr_in);
				}
			res_nclose(&st);
		}
	}
	if (h->nns == 0) {
		free(h);
		return NULL;
	}
	if (tries < 1)
		tries = 1;
	h->tries = tries;
	h->timeout_ms = timeout_ms ? timeout_ms : 2000;
	h->cache = cache;
	h->negative_ttl_ms = negative_ttl_ms;
	h->max_ttl_ms = max_ttl_ms;
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

static void spf_dns_size_note_clear(void);

/* One check runs on one thread from start to end (spf_engine_check), so a thread-local count
 * is the check's own. */
static __thread int spf_dns_voids;

void spf_dns_void_reset(void)
{
	spf_dns_voids = 0;
	spf_dns_size_note_clear();
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

/* ---- records libspf2 cuts short (SPF_MAX_MECH_LEN) ------------------------------------------ */

int spf_dns_size_terms(const char *txt, bool *redirect)
{
	const char *p = txt;
	int n = 0;

	*redirect = false;
	if (strncasecmp(p, "v=spf1", 6) != 0 || (p[6] != '\0' && p[6] != ' '))
		return -1;
	p += 6;
	for (;;) {
		const char *name;
		size_t len;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			return n;
		if (*p == '+' || *p == '-' || *p == '~' || *p == '?')
			p++;
		name = p;
		while (isalnum((unsigned char)*p) || *p == '_' || *p == '-')
			p++;
		len = (size_t)(p - name);
		/* as SPF_record_compile: a name followed by ':', '/', ' ' or the end is a
		 * mechanism, redirect= is one too; other modifiers are kept apart */
		if (*p == ':' || *p == '/' || *p == ' ' || *p == '\0') {
			n++;
		} else if (*p == '=' && len == 8 && strncasecmp(name, "redirect", 8) == 0) {
			n++;
			*redirect = true;
		}
		p += strcspn(p, " ");
	}
}

static __thread struct {
	bool cut, redirect;
	char name[256];
} spf_dns_size_note;

static void spf_dns_size_note_clear(void)
{
	spf_dns_size_note.cut = false;
	spf_dns_size_note.redirect = false;
	spf_dns_size_note.name[0] = '\0';
}

bool spf_dns_size_cut(char *name, size_t namesz, bool *redirect)
{
	if (spf_dns_size_note.cut) {
		snprintf(name, namesz, "%s", spf_dns_size_note.name);
		*redirect = spf_dns_size_note.redirect;
	}
	return spf_dns_size_note.cut;
}

int spf_dns_size_kept(SPF_server_t *srv, const char *txt, int *terms, bool *redirect)
{
	SPF_response_t *resp;
	SPF_record_t *rec = NULL;
	int kept = -1;

	*terms = spf_dns_size_terms(txt, redirect);
	if (*terms < 0 || srv == NULL)
		return -1;
	resp = SPF_response_new(NULL);
	if (resp == NULL)
		return -1;
	if (SPF_record_compile(srv, resp, &rec, txt) == SPF_E_SUCCESS && rec != NULL &&
	    SPF_response_errors(resp) == 0)
		kept = rec->num_mech;
	SPF_record_free(rec);
	SPF_response_free(resp);
	return kept;
}

/* Whether libspf2 drops mechanisms of txt: it compiles without an error (a record with
 * errors is permerror anyway) into fewer mechanisms than the text has. */
static bool spf_dns_size_check(SPF_server_t *srv, const char *txt, bool *redirect)
{
	int terms, kept = spf_dns_size_kept(srv, txt, &terms, redirect);

	return kept >= 0 && kept < terms;
}

static SPF_dns_rr_t *spf_dns_size_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	SPF_dns_rr_t *rr = SPF_dns_lookup(layer->layer_below, domain, type, should_cache);

	if (rr == NULL || type != ns_t_txt || rr->herrno != NETDB_SUCCESS)
		return rr;
	for (int i = 0; i < rr->num_rr; i++) {
		bool redirect;

		if (rr->rr[i] == NULL || !spf_dns_size_check(layer->hook, rr->rr[i]->txt, &redirect))
			continue;
		if (!spf_dns_size_note.cut)
			snprintf(spf_dns_size_note.name, sizeof(spf_dns_size_note.name), "%s", domain);
		spf_dns_size_note.cut = true;
		spf_dns_size_note.redirect |= redirect;
	}
	return rr;
}

static void spf_dns_size_destroy(SPF_dns_server_t *layer)
{
	free(layer);
}

SPF_dns_server_t *spf_dns_size_layer_new(SPF_dns_server_t *below)
{
	SPF_dns_server_t *layer = calloc(1, sizeof(*layer));

	if (layer == NULL)
		return NULL;
	layer->destroy = spf_dns_size_destroy;
	layer->lookup = spf_dns_size_lookup;
	layer->layer_below = below;
	layer->name = "size";
	return layer;
}

void spf_dns_size_layer_server(SPF_dns_server_t *layer, SPF_server_t *srv)
{
	if (layer != NULL)
		layer->hook = srv;
}
