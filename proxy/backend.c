/* backend.c — backend URLs, the pool, balancing and passive failure tracking. */
#include "backend.h"
#include "config.h"
#include "domain.h"
#include "hostres.h"
#include "log.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <ctype.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

_Static_assert(BACKEND_MAX_ADDRS == HOSTRES_MAX_ADDRS, "backend.h and hostres.h keep as many addresses");

/* Whether host is a numeric IPv4 or IPv6 address (nothing to re-resolve). */
static bool backend_host_is_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Parses "host[:port]" / "[v6][:port]" into sa (defport when no port is given). A numeric
 * address as it is; a name from names (the set the config load resolved, hostres.h: once
 * per name per load, within dns.timeout), or, without a set, resolved here the same way
 * (c-ares, /etc/resolv.conf, 2 s): never the system's getaddrinfo, which waits for ever on
 * a DNS server that does not answer. The name's further addresses go to b->addrs. */
static int backend_parse_hostport(const char *s, struct backend *b, const char *defport,
    const struct hostres_set *names, const char **err)
{
	char host[256];
	const char *port = defport;
	const struct hostres_entry *ent;
	struct hostres_set *own = NULL;

	if (*s == '[') {
		const char *e = strchr(s, ']');
		if (e == NULL || (e[1] != ':' && e[1] != '\0') || (size_t)(e - s - 1) >= sizeof(host)) {
			*err = "expected [address]:port";
			return -1;
		}
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		if (e[1] == ':')
			port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		size_t hl = c ? (size_t)(c - s) : strlen(s);
		if (hl == 0 || hl >= sizeof(host)) {
			*err = "expected host:port";
			return -1;
		}
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (c)
			port = c + 1;
	}
	if (*port == '\0' || strspn(port, "0123456789") != strlen(port) || atoi(port) <= 0 || atoi(port) > 65535) {
		*err = "bad port";
		return -1;
	}
	ent = hostres_set_find(names, host);
	if (ent == NULL) {
		if ((own = hostres_set_new()) == NULL || hostres_set_add(own, host) != 0) {
			hostres_set_free(own);
			*err = "out of memory";
			return -1;
		}
		hostres_set_resolve(own, NULL, 2000, 2);
		ent = hostres_set_find(own, host);
	}
	if (ent == NULL || ent->err != NULL || ent->n == 0) {
		*err = ent && ent->err ? ent->err : "cannot resolve host";
		hostres_set_free(own);
		return -1;
	}
	b->naddrs = ent->n;
	for (size_t i = 0; i < ent->n; i++) {
		b->addrs[i] = ent->sa[i];
		b->addrlens[i] = ent->salen[i];
		if (b->addrs[i].ss_family == AF_INET)
			((struct sockaddr_in *)&b->addrs[i])->sin_port = htons((uint16_t)atoi(port));
		else
			((struct sockaddr_in6 *)&b->addrs[i])->sin6_port = htons((uint16_t)atoi(port));
	}
	if (!backend_host_is_numeric(host))
		snprintf(b->dns_name, sizeof(b->dns_name), "%s", host);
	b->port = (uint16_t)atoi(port);
	hostres_set_free(own);
	memcpy(&b->sa, &b->addrs[0], sizeof(b->sa));
	b->salen = b->addrlens[0];
	snprintf(b->host, sizeof(b->host), "%s", s);
	return 0;
}

/* b's address lock: held for a copy of the addresses, never across a call. */
static void backend_addr_lock(struct backend *b)
{
	while (atomic_exchange_explicit(&b->addr_lock, 1, memory_order_acquire) != 0)
		;
}

static void backend_addr_unlock(struct backend *b)
{
	atomic_store_explicit(&b->addr_lock, 0, memory_order_release);
}

/* See backend.h. */
bool backend_addr_get(struct backend *b, size_t i, struct sockaddr_storage *sa, socklen_t *len)
{
	bool ok = false;

	backend_addr_lock(b);
	if (i < b->naddrs && i < BACKEND_MAX_ADDRS) {
		memcpy(sa, &b->addrs[i], sizeof(*sa));
		*len = b->addrlens[i];
		ok = true;
	}
	backend_addr_unlock(b);
	return ok;
}

/* Whether sa[0..len) is among the n addresses of v/lens. */
static bool backend_addr_among(const struct sockaddr_storage *v, const socklen_t *lens, size_t n,
    const struct sockaddr_storage *sa, socklen_t len)
{
	for (size_t i = 0; i < n; i++)
		if (lens[i] == len && memcmp(&v[i], sa, len) == 0)
			return true;
	return false;
}

/* See backend.h. */
bool backend_addr_is_current(struct backend *b, const struct sockaddr_storage *sa, socklen_t len)
{
	backend_addr_lock(b);
	bool in = backend_addr_among(b->addrs, b->addrlens, b->naddrs, sa, len);
	backend_addr_unlock(b);
	return in;
}

/* See backend.h. */
int backend_addrs_update(struct backend *b, const struct sockaddr_storage *sa, const socklen_t *len, size_t n)
{
	struct sockaddr_storage v[BACKEND_MAX_ADDRS];
	socklen_t lens[BACKEND_MAX_ADDRS];
	size_t m = 0;

	for (size_t i = 0; i < n && m < BACKEND_MAX_ADDRS; i++) {
		if (sa[i].ss_family != AF_INET && sa[i].ss_family != AF_INET6)
			continue;
		memcpy(&v[m], &sa[i], sizeof(v[m]));
		lens[m] = len[i];
		if (v[m].ss_family == AF_INET)
			((struct sockaddr_in *)&v[m])->sin_port = htons(b->port);
		else
			((struct sockaddr_in6 *)&v[m])->sin6_port = htons(b->port);
		if (!backend_addr_among(v, lens, m, &v[m], lens[m]))
			m++;
	}
	if (m == 0)
		return 0;
	/* the same set in another order: no change (only this thread writes: read unlocked) */
	bool same = m == b->naddrs;
	for (size_t i = 0; same && i < m; i++)
		same = backend_addr_among(b->addrs, b->addrlens, b->naddrs, &v[i], lens[i]);
	if (same)
		return 0;
	backend_addr_lock(b);
	memcpy(b->addrs, v, m * sizeof(v[0]));
	memcpy(b->addrlens, lens, m * sizeof(lens[0]));
	b->naddrs = m;
	backend_addr_unlock(b);
	/* b->sa stays the load's first address: workers read its family unlocked (relay.c) */
	atomic_store(&b->addr_pref, 0);
	for (size_t i = 0; i < BACKEND_MAX_ADDRS; i++)
		atomic_store(&b->addr_retry_at[i], 0);
	atomic_fetch_add(&b->addr_gen, 1);
	return 1;
}

/* See backend.h. */
void backend_addrs_format(struct backend *b, char *out, size_t cap)
{
	struct sockaddr_storage v[BACKEND_MAX_ADDRS];
	socklen_t len;
	size_t n = 0;

	while (n < BACKEND_MAX_ADDRS && backend_addr_get(b, n, &v[n], &len))
		n++;
	hostres_addrs_format(v, n, out, cap);
}

/* See backend.h. */
size_t backend_addr_first(struct backend *b, long long now_ms)
{
	size_t n = b->naddrs, pref;

	if (n == 0)
		return 0;
	pref = (size_t)atomic_load(&b->addr_pref);
	if (pref >= n)
		pref = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = (pref + k) % n;
		if (atomic_load(&b->addr_retry_at[i]) <= now_ms)
			return i;
	}
	return pref;
}

/* See backend.h. */
void backend_addr_result(struct backend *b, size_t i, bool ok, long long now_ms)
{
	if (i >= b->naddrs || i >= BACKEND_MAX_ADDRS)
		return;
	if (ok) {
		atomic_store(&b->addr_retry_at[i], 0);
		atomic_store(&b->addr_pref, (int)i);
	} else {
		atomic_store(&b->addr_retry_at[i], now_ms + BACKEND_ADDR_RETRY_MS);
	}
}

void backend_addr_result_gen(struct backend *b, size_t i, unsigned gen, bool ok, long long now_ms)
{
	if (gen == atomic_load(&b->addr_gen))
		backend_addr_result(b, i, ok, now_ms);
}

int backend_parse_url(const char *url, struct backend *b, const char **err)
{
	return backend_parse_url_in(url, b, NULL, err);
}

int backend_parse_url_in(const char *url, struct backend *b, const struct hostres_set *names,
    const char **err)
{
	memset(b, 0, sizeof(*b));
	b->weight = 1;
	if (strncasecmp(url, "smtp://", 7) == 0) {
		b->kind = BACKEND_SMTP;
		return backend_parse_hostport(url + 7, b, "25", names, err);
	}
	if (strncasecmp(url, "lmtp://", 7) == 0) {
		b->kind = BACKEND_LMTP;
		return backend_parse_hostport(url + 7, b, "24", names, err);
	}
	if (strncasecmp(url, "lmtp:unix:", 10) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&b->sa;
		b->kind = BACKEND_LMTP;
		if (strlen(url + 10) >= sizeof(sun->sun_path) || url[10] != '/') {
			*err = "bad unix socket path";
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, url + 10);
		b->salen = sizeof(*sun);
		snprintf(b->host, sizeof(b->host), "%s", url + 10);
		return 0;
	}
	if (strncasecmp(url, "maildir:", 8) == 0) {
		b->kind = BACKEND_MAILDIR;
		if (url[8] == '\0') {
			*err = "maildir: needs a path";
			return -1;
		}
		snprintf(b->host, sizeof(b->host), "%s", url + 8);
		return 0;
	}
	*err = "expected smtp://host:port, lmtp://host:port, lmtp:unix:/path or maildir:/path";
	return -1;
}

/* The process-wide records of struct backend_counts, one per server URL (backend_url_equal:
 * the scheme and host without case, a path with it; the metrics label is the spelling of
 * the URL's first configuration). They are never freed: a retired generation's pool may still
 * count into them, and there is one per URL ever configured. */
struct backend_counts_rec {
	struct backend_counts c;
	struct backend_counts_rec *next;
	char url[];
};
static struct backend_counts_rec *backend_counts_list;
static pthread_mutex_t backend_counts_lock = PTHREAD_MUTEX_INITIALIZER;

bool backend_url_equal(const char *a, const char *b)
{
	static const char *const schemes[] = { "smtp://", "lmtp://", "lmtp:unix:", "maildir:" };

	if (a == NULL || b == NULL)
		return false;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i]);
		if (strncasecmp(a, schemes[i], n) != 0)
			continue;
		if (strncasecmp(b, schemes[i], n) != 0)
			return false;
		/* host[:port] has no case; a path has */
		return i < 2 ? strcasecmp(a + n, b + n) == 0 : strcmp(a + n, b + n) == 0;
	}
	return strcmp(a, b) == 0;
}

static struct backend_counts *backend_counts_for(const char *url)
{
	struct backend_counts_rec *r;
	size_t len = strlen(url);

	pthread_mutex_lock(&backend_counts_lock);
	for (r = backend_counts_list; r; r = r->next)
		if (backend_url_equal(r->url, url))
			break;
	if (r == NULL && (r = calloc(1, sizeof(*r) + len + 1)) != NULL) {
		memcpy(r->url, url, len + 1);
		atomic_store(&r->c.health.up, 1);	/* in rotation until the probes say otherwise */
		r->next = backend_counts_list;
		backend_counts_list = r;
	}
	pthread_mutex_unlock(&backend_counts_lock);
	return r ? &r->c : NULL;
}

static int pool_add_server(struct backend **v, size_t *n, const char *url, long weight, bool backup,
    long max_conns, const struct hostres_set *names, const char **err)
{
	struct backend *nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (nv == NULL) {
		*err = "out of memory";
		return -1;
	}
	*v = nv;
	if (backend_parse_url_in(url, &nv[*n], names, err) != 0) {
		/* which server: "smtp://mx.example:25: cannot resolve host" (pools are made on the
		 * main thread; the text lives until the next failure) */
		static char why[600];
		snprintf(why, sizeof(why), "%s: %s", url, *err);
		*err = why;
		return -1;
	}
	nv[*n].url = strdup(url);
	nv[*n].counts = backend_counts_for(url);
	nv[*n].path = nv[*n].kind == BACKEND_MAILDIR ? strdup(url + 8) : NULL;
	nv[*n].weight = weight > 0 ? (int)weight : 1;
	nv[*n].backup = backup;
	nv[*n].max_conns = (int)max_conns;
	nv[*n].index = (int)*n;	/* extras are renumbered after all servers are known */
	atomic_store(&nv[*n].own.up, 1);
	(*n)++;
	return 0;
}

static struct backend *pool_find_url(struct pool *p, const char *url)
{
	for (size_t i = 0; i < p->nservers; i++)
		if (backend_url_equal(p->servers[i].url, url))
			return &p->servers[i];
	for (size_t i = 0; i < p->nextra; i++)
		if (backend_url_equal(p->extra[i].url, url))
			return &p->extra[i];
	return NULL;
}

#define POOL_MAX_SCHED 4096

/* Smooth weighted round robin (as nginx does it), computed once: each backend appears
 * weight times, spread out (weights 5:5 alternate, 3:1 gives a a b a ...). Sets whose
 * weights sum past POOL_MAX_SCHED get no schedule (the picker then hands out blocks).
 * Backup servers are left out: the schedule is for the set's non-backup servers. */
static void pool_build_schedule(struct backend *const *all, size_t nall, struct backend ***out, size_t *nout)
{
	long sum = 0, cur[64] = { 0 };
	struct backend *set[64];
	size_t n = 0;

	*out = NULL;
	*nout = 0;
	for (size_t i = 0; i < nall && i < 64; i++)
		if (!all[i]->backup)
			set[n++] = all[i];
	if (n == 0 || nall > 64)
		return;
	for (size_t i = 0; i < n; i++)
		sum += set[i]->weight;
	if (sum <= 0 || sum > POOL_MAX_SCHED)
		return;
	*out = calloc((size_t)sum, sizeof(**out));
	if (*out == NULL)
		return;
	for (long k = 0; k < sum; k++) {
		size_t best = 0;
		for (size_t i = 0; i < n; i++) {
			cur[i] += set[i]->weight;
			if (cur[i] > cur[best])
				best = i;
		}
		cur[best] -= sum;
		(*out)[k] = set[best];
	}
	*nout = (size_t)sum;
}

struct pool *pool_new(const struct mx_config *cfg, const char **err)
{
	const struct backends_config *bc = &cfg->backends;
	const struct backend_server_config *sv = bc->servers.v;
	const struct backend_route_config *rv = bc->routes.v;
	struct pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->balance = bc->balance;
	p->fall = bc->health_check.fall > 0 ? (int)bc->health_check.fall : 2;
	p->rise = bc->health_check.rise > 0 ? (int)bc->health_check.rise : 2;
	p->client_identity = (int)bc->client_identity;
	p->require_tls = bc->require_tls;
	p->require_xclient = bc->require_xclient;
	p->tls_verify = bc->tls_verify;
	for (size_t i = 0; i < bc->servers.n; i++) {
		if (pool_add_server(&p->servers, &p->nservers, sv[i].address, sv[i].weight, sv[i].backup,
		    sv[i].max_connections, cfg->resolved, err) != 0)
			goto fail;
		if (sv[i].connect_timeout || sv[i].reply_timeout || sv[i].data_timeout || sv[i].data_deadline) {
			/* a shallow copy: the strings and lists stay the config's (freed with it,
			 * after the pool) */
			struct backends_config *t = malloc(sizeof(*t));
			if (t == NULL) {
				*err = "out of memory";
				goto fail;
			}
			*t = *bc;
			if (sv[i].connect_timeout)
				t->connect_timeout = sv[i].connect_timeout;
			if (sv[i].reply_timeout)
				t->reply_timeout = sv[i].reply_timeout;
			if (sv[i].data_timeout)
				t->data_timeout = sv[i].data_timeout;
			if (sv[i].data_deadline)
				t->data_deadline = sv[i].data_deadline;
			p->servers[p->nservers - 1].tcfg = t;
		}
		p->servers[p->nservers - 1].verify_name = sv[i].tls_verify_name;
	}
	/* Route servers first go to `extra`; pointers into arrays are taken after all adds. */
	for (size_t r = 0; r < bc->routes.n; r++)
		for (size_t j = 0; j < rv[r].servers.n; j++)
			if (pool_find_url(p, rv[r].servers.v[j]) == NULL &&
			    pool_add_server(&p->extra, &p->nextra, rv[r].servers.v[j], 1, false, 0, cfg->resolved, err) != 0)
				goto fail;
	/* One index space over the whole pool: the `tried` mask of a message names backends. */
	for (size_t k = 0; k < p->nextra; k++) {
		p->extra[k].index = (int)(p->nservers + k);
		p->extra[k].pool = p;
	}
	for (size_t k = 0; k < p->nservers; k++)
		p->servers[k].pool = p;
	if (p->nservers + p->nextra > 64) {
		*err = "at most 64 backends in all (servers and route servers)";
		goto fail;
	}
	p->routes = calloc(bc->routes.n ? bc->routes.n : 1, sizeof(*p->routes));
	if (p->routes == NULL)
		goto fail;
	p->nroutes = bc->routes.n;
	for (size_t r = 0; r < bc->routes.n; r++) {
		struct backend_route *rt = &p->routes[r];
		rt->domains = calloc(rv[r].domains.n + 1, sizeof(char *));
		rt->servers = calloc(rv[r].servers.n + 1, sizeof(struct backend *));
		/* the config's set (its file: items read at load; one generation frees both) */
		rt->match_borrowed = rv[r].match != NULL;
		rt->match = rt->match_borrowed ? rv[r].match : domain_set_new();
		if (rt->domains == NULL || rt->servers == NULL || rt->match == NULL)
			goto fail;
		for (size_t j = 0; j < rv[r].domains.n; j++) {
			rt->domains[j] = strdup(rv[r].domains.v[j]);
			if (rt->domains[j] == NULL)
				goto fail;
			rt->ndomains = j + 1;
			for (char *c = rt->domains[j]; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			if (!rt->match_borrowed && domain_set_add(rt->match, rv[r].domains.v[j], err) != 0)
				goto fail;
		}
		for (size_t j = 0; j < rv[r].servers.n; j++)
			rt->servers[j] = pool_find_url(p, rv[r].servers.v[j]);
		rt->nservers = rv[r].servers.n;
		pool_build_schedule(rt->servers, rt->nservers, &rt->sched, &rt->nsched);
	}
	{
		struct backend *set[64];
		size_t n = p->nservers < 64 ? p->nservers : 64;
		for (size_t i = 0; i < n; i++)
			set[i] = &p->servers[i];
		pool_build_schedule(set, n, &p->sched, &p->nsched);
	}
	return p;
fail:
	pool_free(p);
	return NULL;
}

void pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nservers; i++) {
		free(p->servers[i].url);
		free(p->servers[i].path);
		free(p->servers[i].tcfg);
	}
	for (size_t i = 0; i < p->nextra; i++) {
		free(p->extra[i].url);
		free(p->extra[i].path);
	}
	for (size_t r = 0; r < p->nroutes; r++) {
		for (size_t j = 0; j < p->routes[r].ndomains; j++)
			free(p->routes[r].domains[j]);
		free(p->routes[r].domains);
		if (!p->routes[r].match_borrowed)
			domain_set_free(p->routes[r].match);
		free(p->routes[r].servers);
		free(p->routes[r].sched);
	}
	free(p->routes);
	free(p->sched);
	free(p->servers);
	free(p->extra);
	free(p);
}

int pool_route_for(const struct pool *p, const char *rcpt_domain)
{
	if (rcpt_domain == NULL)
		return 0;
	for (size_t r = 0; r < p->nroutes; r++)
		if (domain_set_match(p->routes[r].match, rcpt_domain))
			return (int)r + 1;
	return 0;
}

/* FNV-1a, for rendezvous hashing of the client address over backends. */
static uint64_t pool_hash(const char *s, int salt)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)salt * 0x9E3779B97F4A7C15ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* The place a pick on this thread (a worker's loop) took at a server with max_connections:
 * its URL record's `active`, counted at the pick, so that a worker picking at the same
 * moment sees the server full; the connection the pick leads to (relay_open, on this thread,
 * right after) takes it over in backend_active_add instead of counting again. The records
 * are never freed, so the pointer stays valid. NULL: none held. */
static _Thread_local atomic_int *backend_reserved;

/* A place held and not taken over (the pick led to no connection): given back. */
static void backend_release_reserved(void)
{
	atomic_int *a = backend_reserved;

	backend_reserved = NULL;
	if (a == NULL)
		return;
	int v = atomic_load(a);
	while (v > 0 && !atomic_compare_exchange_weak(a, &v, v - 1))
		;
}

/* Takes one of b's max_connections places unless they are all in use. */
static bool backend_reserve(struct backend *b)
{
	atomic_int *a = &b->counts->active;
	int v = atomic_load(a);

	do {
		if (v >= b->max_conns)
			return false;
	} while (!atomic_compare_exchange_weak(a, &v, v + 1));
	backend_reserved = a;
	return true;
}

static struct backend *pool_pick_candidate(struct pool *p, const char *rcpt_domain, const char *client_ip,
    uint64_t tried);

struct backend *pool_pick_backend(struct pool *p, const char *rcpt_domain, const char *client_ip,
    uint64_t tried)
{
	backend_release_reserved();
	for (int k = 0; k < 64; k++) {
		struct backend *b = pool_pick_candidate(p, rcpt_domain, client_ip, tried);
		if (b == NULL || b->max_conns <= 0 || b->counts == NULL || b->kind == BACKEND_MAILDIR ||
		    backend_reserve(b))
			return b;
		/* another worker took its last place since the check: as full, the next one */
		if (b->index >= 64)
			return NULL;	/* past the `tried` mask (pool_pick_candidate sees 64 at most) */
		tried |= 1ULL << b->index;
	}
	return NULL;
}

static struct backend *pool_pick_candidate(struct pool *p, const char *rcpt_domain, const char *client_ip,
    uint64_t tried)
{
	struct backend *cand[64];
	size_t n = 0, total;
	int route = pool_route_for(p, rcpt_domain);
	atomic_uint *rr = route ? &p->routes[route - 1].rr : &p->rr;

	total = route ? p->routes[route - 1].nservers : p->nservers;
	if (total > 64)
		total = 64;
	/* Untried and not drained: the non-backup servers that are up (pass 0), else the
	 * backup ones that are up (1); if none is up, the non-backup ones (2), then the backup
	 * ones (3), regardless of state. */
	size_t nprim = 0, nfull = 0;
	int pass;
	for (pass = 0; pass < 4 && n == 0; pass++) {
		for (size_t i = 0; i < total; i++) {
			struct backend *b = route ? p->routes[route - 1].servers[i] : &p->servers[i];
			if (pass == 0 && !b->backup)
				nprim++;
			if ((tried & (1ULL << b->index)) || backend_is_drained(b))
				continue;
			if (backend_is_full(b)) {
				nfull += pass == 0;
				continue;
			}
			if (b->backup != (pass == 1 || pass == 3) || (pass < 2 && !backend_is_up(b)))
				continue;
			cand[n++] = b;
		}
	}
	pass--;	/* the pass that found them */
	if (n == 0) {
		if (nfull > 0)
			log_event(LOG_LVL_WARNING, NULL, "event=backends_full route=%d full=%zu reason=\"every server "
			    "left is at its max_connections\"", route, nfull);
		return NULL;
	}
	if (n == 1)
		return cand[0];

	switch (p->balance) {
	case BALANCE_LEAST_CONN: {
		/* The lowest load, connections / weight (compared as a1 * w2 < a2 * w1). The
		 * connections are the URL's, from sessions of every generation: a session begun
		 * before a reload still holds its own. */
		unsigned start = atomic_fetch_add(rr, 1);
		struct backend *best = cand[start % n];
		long besta = backend_active_all(best);
		uint64_t lowest = 0;
		for (size_t k = 0; k < n; k++) {
			struct backend *b = cand[(start + k) % n];
			long a = backend_active_all(b);
			if (a * best->weight < besta * b->weight) {
				best = b;
				besta = a;
			}
		}
		/* Ties (at light load every server is idle at each pick: all of them) go by the
		 * set's smooth weighted schedule, so the weights still set the shares there, as
		 * round_robin's; equal weights rotate. */
		struct backend **sched = route ? p->routes[route - 1].sched : p->sched;
		size_t nsched = route ? p->routes[route - 1].nsched : p->nsched;
		for (size_t k = 0; k < n; k++)
			if ((long)backend_active_all(cand[k]) * best->weight == besta * cand[k]->weight)
				lowest |= 1ULL << cand[k]->index;
		if (sched && (lowest & (lowest - 1)) != 0)
			for (size_t k = 0; k < nsched; k++) {
				struct backend *b = sched[(start + k) % nsched];
				if (lowest & (1ULL << b->index))
					return b;
			}
		return best;
	}
	case BALANCE_SOURCE_HASH: {
		/* Rendezvous hashing: a backend leaving moves only its own clients. */
		struct backend *best = NULL;
		double bests = -1;
		for (size_t k = 0; k < n; k++) {
			uint64_t h = pool_hash(client_ip ? client_ip : "", cand[k]->index + 1);
			/* Weighted rendezvous: -w / ln(U) gives shares proportional to weights. */
			double u = ((double)(h >> 11) + 0.5) / (double)(1ULL << 53);
			double s = -(double)cand[k]->weight / log(u);
			if (s > bests) {
				bests = s;
				best = cand[k];
			}
		}
		return best;
	}
	default: {
		/* Every non-backup server of the set available: walk the smooth schedule. */
		struct backend **sched = route ? p->routes[route - 1].sched : p->sched;
		size_t nsched = route ? p->routes[route - 1].nsched : p->nsched;
		if (pass == 0 && n == nprim && sched)
			return sched[atomic_fetch_add(rr, 1) % nsched];
		/* Some are down or tried: weighted blocks over the candidates left. */
		unsigned sum = 0;
		for (size_t k = 0; k < n; k++)
			sum += (unsigned)cand[k]->weight;
		unsigned x = atomic_fetch_add(rr, 1) % sum;
		for (size_t k = 0; k < n; k++) {
			if (x < (unsigned)cand[k]->weight)
				return cand[k];
			x -= (unsigned)cand[k]->weight;
		}
		return cand[0];
	}
	}
}

void backend_report_failure(struct pool *p, struct backend *b, const char *why)
{
	struct backend_health *h = backend_health(b);
	int f = atomic_fetch_add(&h->fails, 1) + 1;

	if (b->counts)
		atomic_fetch_add(&b->counts->failed, 1);
	atomic_store(&h->oks, 0);
	/* the URL's state: a session of an older generation that sees the server fail takes
	 * it out of every generation's rotation, and only the first to see it logs it */
	if (f >= p->fall && atomic_exchange(&h->up, 0) == 1)
		log_event(LOG_LVL_WARNING, NULL, "event=backend_down backend=%s reason=\"%s\" fails=%d",
		    b->url, why ? why : "", f);
}

void backend_report_refused(struct pool *p, struct backend *b, const char *why)
{
	struct backend_health *h = backend_health(b);
	int f = atomic_fetch_add(&h->fails, 1) + 1;

	if (f < p->fall)
		atomic_store(&h->fails, p->fall);
	atomic_store(&h->refused_until, (long long)(uv_hrtime() / 1000000) + BACKEND_REFUSED_HOLD_MS);
	if (b->counts)
		atomic_fetch_add(&b->counts->failed, 1);
	atomic_store(&h->oks, 0);
	if (atomic_exchange(&h->up, 0) == 1)
		log_event(LOG_LVL_WARNING, NULL, "event=backend_down backend=%s reason=\"%s\" fails=%d",
		    b->url, why ? why : "", f < p->fall ? p->fall : f);
}

long long backend_refused_log_due(struct backend *b, long long now_ms)
{
	struct backend_health *h = backend_health(b);
	long long due = atomic_load(&h->refused_logged_until);

	/* one line per hold period, whichever worker's refusal comes first */
	if (now_ms < due || !atomic_compare_exchange_strong(&h->refused_logged_until, &due,
	    now_ms + BACKEND_REFUSED_HOLD_MS)) {
		atomic_fetch_add(&h->refused_unlogged, 1);
		return -1;
	}
	return atomic_exchange(&h->refused_unlogged, 0);
}

bool backend_is_refused(const struct backend *b, long long now_ms)
{
	return atomic_load(&backend_health(b)->refused_until) > now_ms;
}

void backend_report_success(struct pool *p, struct backend *b)
{
	(void)p;
	atomic_store(&backend_health(b)->fails, 0);
	if (b->counts)
		atomic_fetch_add(&b->counts->delivered, 1);
}

void backend_report_deferral(struct backend *b)
{
	atomic_store(&backend_health(b)->fails, 0);
	if (b->counts)
		atomic_fetch_add(&b->counts->failed, 1);
}

long long backend_delivered(const struct backend *b)
{
	return b->counts ? atomic_load(&b->counts->delivered) : 0;
}

long long backend_failed(const struct backend *b)
{
	return b->counts ? atomic_load(&b->counts->failed) : 0;
}

void backend_active_add(struct backend *b, int delta)
{
	atomic_int *a = b->counts ? &b->counts->active : &b->active;

	if (delta > 0 && a == backend_reserved) {
		/* the connection of this thread's pick: the place was counted at the pick */
		backend_reserved = NULL;
		delta--;
	}
	if (delta != 0)
		atomic_fetch_add(a, delta);
}

int backend_active_all(const struct backend *b)
{
	return b->counts ? atomic_load(&b->counts->active) : atomic_load(&b->active);
}

bool backend_is_drained(const struct backend *b)
{
	/* by URL when the pool made a record: a drain or an enable since this pool was built
	 * holds in it too */
	return b->counts ? atomic_load(&b->counts->drained) != 0 : atomic_load(&b->drained) != 0;
}

void backend_drain_url(const char *url, int on)
{
	pthread_mutex_lock(&backend_counts_lock);
	for (struct backend_counts_rec *r = backend_counts_list; r; r = r->next)
		if (backend_url_equal(r->url, url))
			atomic_store(&r->c.drained, on);
	pthread_mutex_unlock(&backend_counts_lock);
}
