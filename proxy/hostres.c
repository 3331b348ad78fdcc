/* hostres.c — backend host names resolved with c-ares within one deadline (hostres.h). */
#include "hostres.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_once_t hostres_once = PTHREAD_ONCE_INIT;
static int hostres_lib_status = -1;

static void hostres_lib_init(void)
{
	hostres_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

struct hostres_set *hostres_set_new(void)
{
	return calloc(1, sizeof(struct hostres_set));
}

const struct hostres_entry *hostres_set_find(const struct hostres_set *s, const char *name)
{
	for (size_t i = 0; s != NULL && i < s->n; i++)
		if (strcasecmp(s->v[i].name, name) == 0)
			return &s->v[i];
	return NULL;
}

/* A numeric address: its one sockaddr (port 0). 1 when name is one. */
static int hostres_numeric(struct hostres_entry *e)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&e->sa[0];
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&e->sa[0];

	memset(&e->sa[0], 0, sizeof(e->sa[0]));
	if (inet_pton(AF_INET, e->name, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		e->salen[0] = sizeof(*in);
	} else if (inet_pton(AF_INET6, e->name, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		e->salen[0] = sizeof(*in6);
	} else {
		return 0;
	}
	e->n = 1;
	e->done = 1;
	return 1;
}

int hostres_set_add(struct hostres_set *s, const char *name)
{
	if (hostres_set_find(s, name) != NULL)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct hostres_entry *v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	struct hostres_entry *e = &s->v[s->n];
	memset(e, 0, sizeof(*e));
	if ((e->name = strdup(name)) == NULL)
		return -1;
	s->n++;
	(void)hostres_numeric(e);
	return 0;
}

/* Orders two addresses (AF_INET before AF_INET6, then by their octets): a set's order
 * that does not depend on the DNS answer's. */
static int hostres_addr_cmp(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
	if (x->ss_family != y->ss_family)
		return x->ss_family == AF_INET ? -1 : 1;
	if (x->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)(const void *)x)->sin_addr,
		    &((const struct sockaddr_in *)(const void *)y)->sin_addr, sizeof(struct in_addr));
	return memcmp(&((const struct sockaddr_in6 *)(const void *)x)->sin6_addr,
	    &((const struct sockaddr_in6 *)(const void *)y)->sin6_addr, sizeof(struct in6_addr));
}

/* Sorts e's addresses by hostres_addr_cmp (insertion sort: 8 at most). */
static void hostres_addrs_sort(struct hostres_entry *e)
{
	for (size_t i = 1; i < e->n; i++)
		for (size_t k = i; k > 0 && hostres_addr_cmp(&e->sa[k - 1], &e->sa[k]) > 0; k--) {
			struct sockaddr_storage t = e->sa[k];
			socklen_t tl = e->salen[k];
			e->sa[k] = e->sa[k - 1];
			e->salen[k] = e->salen[k - 1];
			e->sa[k - 1] = t;
			e->salen[k - 1] = tl;
		}
}

static void hostres_answer_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct hostres_entry *e = arg;

	(void)timeouts;
	e->done = 1;
	if (status != ARES_SUCCESS || res == NULL) {
		switch (status) {
		case ARES_ENOTFOUND: case ARES_ENODATA: case ARES_ENONAME:
			e->err = "cannot resolve host: no such name (no A/AAAA record)";
			break;
		case ARES_ETIMEOUT: case ARES_ECANCELLED: case ARES_EDESTRUCTION:
			e->err = "cannot resolve host: no answer from the DNS in time (dns.timeout)";
			break;
		default:
			e->err = "cannot resolve host: DNS failure (server failure, refused or unreachable)";
			break;
		}
		if (res != NULL)
			ares_freeaddrinfo(res);
		return;
	}
	bool over = false;
	for (struct ares_addrinfo_node *a = res->nodes; a != NULL; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addr == NULL ||
		    (size_t)a->ai_addrlen > sizeof(e->sa[0]))
			continue;
		/* the same address twice (A from /etc/hosts and the DNS): once */
		int dup = 0;
		for (size_t k = 0; k < e->n; k++)
			if (e->salen[k] == (socklen_t)a->ai_addrlen && memcmp(&e->sa[k], a->ai_addr, a->ai_addrlen) == 0)
				dup = 1;
		if (dup)
			continue;
		size_t at = e->n;
		if (at == HOSTRES_MAX_ADDRS) {
			/* More addresses than kept (a headless Service of many pods, answered in
			 * a shuffled order each time): keep the lowest ones, so every answer of
			 * the same set keeps the same ones and a re-resolution sees no change. */
			over = true;
			at = 0;
			for (size_t k = 1; k < e->n; k++)
				if (hostres_addr_cmp(&e->sa[k], &e->sa[at]) > 0)
					at = k;
			if (hostres_addr_cmp((const struct sockaddr_storage *)(const void *)a->ai_addr, &e->sa[at]) >= 0)
				continue;
		} else {
			e->n++;
		}
		if (a->ai_ttl > 0 && (e->ttl == 0 || (uint32_t)a->ai_ttl < e->ttl))
			e->ttl = (uint32_t)a->ai_ttl;
		memset(&e->sa[at], 0, sizeof(e->sa[0]));
		memcpy(&e->sa[at], a->ai_addr, a->ai_addrlen);
		e->salen[at] = (socklen_t)a->ai_addrlen;
	}
	if (over)
		hostres_addrs_sort(e);
	if (e->n == 0)
		e->err = "cannot resolve host: no usable address";
	ares_freeaddrinfo(res);
}

/* See hostres.h. */
void hostres_addrs_format(const struct sockaddr_storage *sa, size_t n, char *out, size_t cap)
{
	size_t used = 0;

	if (cap == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN];
		const void *src = sa[i].ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)&sa[i])->sin_addr :
		    (const void *)&((const struct sockaddr_in6 *)&sa[i])->sin6_addr;
		if (inet_ntop(sa[i].ss_family, src, a, sizeof(a)) == NULL)
			snprintf(a, sizeof(a), "?");
		int k = snprintf(out + used, cap - used, "%s%s", i ? "," : "", a);
		if (k < 0 || (size_t)k >= cap - used)
			break;
		used += (size_t)k;
	}
}

static uint64_t hostres_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hostres_set_fail_pending(struct hostres_set *s, const char *why)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].done) {
			s->v[i].done = 1;
			s->v[i].err = why;
		}
}

void hostres_set_resolve(struct hostres_set *s, const char *servers, uint64_t timeout_ms, int tries)
{
	ares_channel ch;
	struct ares_options opt;
	size_t pending = 0;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].done)
			pending++;
	if (pending == 0)
		return;
	if (atomic_load(&s->cancelled)) {
		hostres_set_fail_pending(s, "cannot resolve host: resolution cancelled");
		return;
	}
	pthread_once(&hostres_once, hostres_lib_init);
	if (hostres_lib_status != ARES_SUCCESS) {
		hostres_set_fail_pending(s, "cannot resolve host: resolver library failed to start");
		return;
	}
	if (timeout_ms == 0)
		timeout_ms = 2000;
	if (tries < 1)
		tries = 1;
	memset(&opt, 0, sizeof(opt));
	opt.timeout = (int)(timeout_ms / (uint64_t)tries);
	if (opt.timeout < 50)
		opt.timeout = 50;
	opt.tries = tries;
	/* resolv.conf's search list and ndots apply, as they did with getaddrinfo: a short
	 * name ("mx1") an operator relied on still resolves */
	if (ares_init_options(&ch, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) != ARES_SUCCESS) {
		hostres_set_fail_pending(s, "cannot resolve host: resolver failed to start (/etc/resolv.conf?)");
		return;
	}
	if (servers != NULL && *servers != '\0' && ares_set_servers_ports_csv(ch, servers) != ARES_SUCCESS) {
		ares_destroy(ch);
		hostres_set_fail_pending(s, "cannot resolve host: bad dns.resolvers");
		return;
	}
	struct ares_addrinfo_hints hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].done)
			ares_getaddrinfo(ch, s->v[i].name, NULL, &hints, hostres_answer_cb, &s->v[i]);

	uint64_t deadline = hostres_now_ms() + timeout_ms;
	for (;;) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		nfds_t nfd = 0;
		int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
		uint64_t now = hostres_now_ms();

		pending = 0;
		for (size_t i = 0; i < s->n; i++)
			if (!s->v[i].done)
				pending++;
		if (pending == 0)
			break;
		if (now >= deadline || atomic_load(&s->cancelled)) {
			ares_cancel(ch);	/* the callbacks run: ARES_ECANCELLED */
			break;
		}
		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;
			/* c-ares's ARES_GETSOCK_WRITABLE shifts a signed 1 by up to 31 (UB): the
			 * same bits, unsigned */
			if ((unsigned)bits & (1u << i))
				ev |= POLLIN;
			if ((unsigned)bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
				ev |= POLLOUT;
			if (ev == 0)
				continue;
			pfd[nfd].fd = socks[i];
			pfd[nfd].events = ev;
			pfd[nfd].revents = 0;
			nfd++;
		}
		struct timeval maxtv, tv, *tvp;
		uint64_t left = deadline - now;
		maxtv.tv_sec = (time_t)(left / 1000);
		maxtv.tv_usec = (suseconds_t)((left % 1000) * 1000);
		tvp = ares_timeout(ch, &maxtv, &tv);
		int ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
		if (ms > HOSTRES_CANCEL_MS)
			ms = HOSTRES_CANCEL_MS;	/* hostres_set_cancel is seen this soon */
		int rc = poll(pfd, nfd, ms);
		if (rc <= 0) {
			ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);	/* timeouts */
			continue;
		}
		for (nfds_t i = 0; i < nfd; i++) {
			if (pfd[i].revents == 0)
				continue;
			ares_socket_t r = (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD;
			ares_socket_t w = (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
			ares_process_fd(ch, r, w);
		}
	}
	ares_destroy(ch);
	hostres_set_fail_pending(s, atomic_load(&s->cancelled) ? "cannot resolve host: resolution cancelled" :
	    "cannot resolve host: no answer from the DNS in time (dns.timeout)");
}

void hostres_set_cancel(struct hostres_set *s)
{
	if (s != NULL)
		atomic_store(&s->cancelled, true);
}

/* See hostres.h. */
void hostres_set_adopt(struct hostres_set *s, const struct hostres_set *src)
{
	for (size_t i = 0; s != NULL && src != NULL && i < s->n; i++) {
		struct hostres_entry *e = &s->v[i];
		const struct hostres_entry *f = hostres_set_find(src, e->name);
		if (e->done || f == NULL || !f->done)
			continue;
		e->err = f->err;
		e->n = f->n;
		e->ttl = f->ttl;
		memcpy(e->sa, f->sa, sizeof(e->sa));
		memcpy(e->salen, f->salen, sizeof(e->salen));
		e->done = 1;
	}
}

void hostres_set_free(struct hostres_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].name);
	free(s->v);
	free(s);
}
