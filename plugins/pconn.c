/* pconn.c — a stream connection to a filter peer (TCP or unix socket) on a libuv loop. */
#include "pconn.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct pconn {
	uv_shutdown_t sreq;
	union { uv_handle_t h; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } u;
	uv_connect_t creq;
	pconn_event_cb cb;
	void *arg;
	bool closing, connected;
	bool switching;               /* the handle closes to connect to the next address */
	bool dead;                    /* no handle open (a new one could not be made) */
	size_t queued;
	uv_loop_t *loop;
	struct sockaddr_storage addrs[PCONN_MAX_ADDRS];
	size_t naddrs, addr_i;
	/* the connect timer (addr->connect_ms): one address's time, then the next */
	uv_timer_t ctimer;
	uint64_t connect_ms;
	bool has_timer;
	unsigned refs;                /* open handles (the stream's, the timer's): freed at 0 */
	char name[256];               /* the host name the addresses are of, or "" */
};

/* One read buffer per loop thread, not per connection: data is handed on during the read
 * callback only (PCONN_DATA), and libuv reads one stream at a time on a loop, so a buffer
 * per thread is enough. Per connection it cost 64 KiB for every session holding a milter
 * connection (the milter joins at connect): a burst of idle clients took gigabytes. */
static _Thread_local char pconn_rbuf[65536];

struct pconn_wreq {
	uv_write_t req;
	struct pconn *c;
	void *owned;
	size_t len;
};

/* The peers' host names as the last config load resolved them (config.c, through
 * dns.resolvers within dns.timeout, as the backends' names): the workers' plugin instances
 * read them here and never look a name up on their loops. */
struct pconn_name { char name[256]; struct sockaddr_storage sa[PCONN_MAX_ADDRS]; size_t n; };
static pthread_mutex_t pconn_names_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pconn_name *pconn_names;
static size_t pconn_nnames;
/* Set around a config check's plugin init (plugins.c): a name is taken as it is, the load
 * resolves it afterwards (config.c), when dns.* is known. */
static _Thread_local bool pconn_checking;

void pconn_names_checking(bool on)
{
	pconn_checking = on;
}

void pconn_names_publish(const char *name, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, sa, len <= sizeof(ss) ? len : sizeof(ss));
	pconn_names_publish_all(name, &ss, 1);
}

/* Whether a and b hold the same addresses, in any order (ports ignored: the load's answer has
 * none, the user's address sets it). */
static bool pconn_addr_set_same(const struct sockaddr_storage *a, size_t na, const struct sockaddr_storage *b,
    size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		bool in = false;
		for (size_t j = 0; j < nb && !in; j++) {
			if (a[i].ss_family != b[j].ss_family)
				continue;
			if (a[i].ss_family == AF_INET)
				in = memcmp(&((const struct sockaddr_in *)&a[i])->sin_addr,
				    &((const struct sockaddr_in *)&b[j])->sin_addr, sizeof(struct in_addr)) == 0;
			else if (a[i].ss_family == AF_INET6)
				in = memcmp(&((const struct sockaddr_in6 *)&a[i])->sin6_addr,
				    &((const struct sockaddr_in6 *)&b[j])->sin6_addr, sizeof(struct in6_addr)) == 0;
		}
		if (!in)
			return false;
	}
	return true;
}

int pconn_names_publish_all(const char *name, const struct sockaddr_storage *sa, size_t n)
{
	if (n == 0)
		return 0;
	if (n > PCONN_MAX_ADDRS)
		n = PCONN_MAX_ADDRS;
	pthread_mutex_lock(&pconn_names_lock);
	size_t i;
	for (i = 0; i < pconn_nnames; i++)
		if (strcasecmp(pconn_names[i].name, name) == 0)
			break;
	if (i == pconn_nnames) {
		struct pconn_name *v = realloc(pconn_names, (pconn_nnames + 1) * sizeof(*v));
		if (v == NULL || strlen(name) >= sizeof(v->name)) {
			if (v != NULL)
				pconn_names = v;
			pthread_mutex_unlock(&pconn_names_lock);
			return 0;
		}
		pconn_names = v;
		snprintf(v[i].name, sizeof(v[i].name), "%s", name);
		v[i].n = 0;
		pconn_nnames++;
	}
	int changed = !pconn_addr_set_same(pconn_names[i].sa, pconn_names[i].n, sa, n);
	if (changed) {
		memset(pconn_names[i].sa, 0, sizeof(pconn_names[i].sa));
		memcpy(pconn_names[i].sa, sa, n * sizeof(*sa));
		pconn_names[i].n = n;
	}
	pthread_mutex_unlock(&pconn_names_lock);
	return changed;
}

size_t pconn_names_get(const char *name, struct sockaddr_storage *sa, size_t cap)
{
	size_t n = 0;

	pthread_mutex_lock(&pconn_names_lock);
	for (size_t i = 0; i < pconn_nnames; i++)
		if (strcasecmp(pconn_names[i].name, name) == 0) {
			n = pconn_names[i].n < cap ? pconn_names[i].n : cap;
			memcpy(sa, pconn_names[i].sa, n * sizeof(*sa));
			break;
		}
	pthread_mutex_unlock(&pconn_names_lock);
	return n;
}

/* out's addresses: name's as last published, port p. false when name is not known. */
static bool pconn_addr_from_names(const char *name, uint16_t p, struct pconn_addr *out)
{
	struct sockaddr_storage v[PCONN_MAX_ADDRS];
	size_t n = pconn_names_get(name, v, PCONN_MAX_ADDRS);

	if (n == 0)
		return false;
	out->sa = v[0];
	out->nmore = n - 1;
	memcpy(out->more, v + 1, out->nmore * sizeof(out->more[0]));
	for (size_t k = 0; k <= out->nmore; k++) {
		struct sockaddr_storage *a = k == 0 ? &out->sa : &out->more[k - 1];
		if (a->ss_family == AF_INET)
			((struct sockaddr_in *)a)->sin_port = htons(p);
		else
			((struct sockaddr_in6 *)a)->sin6_port = htons(p);
	}
	return true;
}

static bool pconn_name_chars(const char *h, size_t hlen)
{
	return strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == hlen &&
	    strspn(h, "0123456789.") != hlen;
}

/* Fills sa from host text and port; 0 or -1 (*why set when the reason is more precise than
 * the caller's). A host name other than localhost is the one the config load resolved
 * (pconn_names_publish): never looked up here, on a worker's loop. */
static int pconn_addr_ip(const char *host, size_t hlen, const char *port, struct pconn_addr *out,
    const char **why)
{
	static _Thread_local char reason[320];
	char h[256];     /* a DNS name: at most 253 octets */
	char *end;
	long p = strtol(port, &end, 10);

	if (*port == '\0' || *end != '\0' || p <= 0 || p > 65535 || hlen == 0 || hlen >= sizeof(h))
		return -1;
	memcpy(h, host, hlen);
	h[hlen] = '\0';
	if (strcmp(h, "localhost") == 0)
		snprintf(h, sizeof(h), "127.0.0.1");
	if (uv_ip4_addr(h, (int)p, (struct sockaddr_in *)&out->sa) == 0)
		return 0;
	if (uv_ip6_addr(h, (int)p, (struct sockaddr_in6 *)&out->sa) == 0)
		return 0;
	if (pconn_name_chars(h, hlen)) {
		if (pconn_checking)
			return 0;	/* the load resolves it next (config.c) */
		if (pconn_addr_from_names(h, (uint16_t)p, out)) {
			snprintf(out->name, sizeof(out->name), "%s", h);	/* looked at again by pconn_new */
			return 0;
		}
		snprintf(reason, sizeof(reason), "host \"%s\" was not resolved when the configuration "
		    "was loaded", h);
		*why = reason;
	}
	return -1;
}

int pconn_addr_host(const char *s, char *host, size_t hostlen)
{
	const char *h = NULL, *e = NULL;

	if (s == NULL || strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0 || s[0] == '/')
		return 0;
	if (strncmp(s, "inet6:", 6) == 0)
		s += 6;
	else if (strncmp(s, "inet:", 5) == 0)
		s += 5;
	if (strchr(s, '@')) {
		h = strchr(s, '@') + 1;
		e = h + strlen(h);
	} else if (s[0] == '[') {
		return 0;	/* a bracketed IPv6 address */
	} else if (strrchr(s, ':')) {
		h = s;
		e = strrchr(s, ':');
	}
	if (h == NULL || e <= h || (size_t)(e - h) >= hostlen || !pconn_name_chars(h, (size_t)(e - h)))
		return 0;
	memcpy(host, h, (size_t)(e - h));
	host[e - h] = '\0';
	return strcmp(host, "localhost") != 0;
}

int pconn_addr_parse(const char *s, struct pconn_addr *out, const char **why)
{
	const char *colon, *at;

	memset(out, 0, sizeof(*out));
	*why = "bad address (want HOST:PORT, inet:HOST:PORT, inet:PORT@HOST or unix:/path)";
	if (s == NULL || *s == '\0') {
		*why = "address missing";
		return -1;
	}
	if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0 || s[0] == '/') {
		const char *path = s[0] == '/' ? s : strchr(s, ':') + 1;

		if (*path == '\0' || strlen(path) >= sizeof(out->path)) {
			*why = "unix socket path empty or too long";
			return -1;
		}
		if (*path != '/') {
			/* Postfix takes it from its queue directory; mxgate's working directory is
			 * whatever started it (systemd: /), so it would name another file. */
			*why = "unix socket path must be absolute (a relative one would depend on the working directory)";
			return -1;
		}
		out->is_unix = true;
		snprintf(out->path, sizeof(out->path), "%s", path);
		return 0;
	}
	if (strncmp(s, "inet6:", 6) == 0)
		s += 6;
	else if (strncmp(s, "inet:", 5) == 0)
		s += 5;
	at = strchr(s, '@');
	if (at) {   /* sendmail's PORT@HOST */
		char port[8];

		if ((size_t)(at - s) >= sizeof(port))
			return -1;
		memcpy(port, s, (size_t)(at - s));
		port[at - s] = '\0';
		return pconn_addr_ip(at + 1, strlen(at + 1), port, out, why);
	}
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -1;
		return pconn_addr_ip(s + 1, (size_t)(rb - s - 1), rb + 2, out, why);
	}
	colon = strrchr(s, ':');
	if (colon == NULL)
		return -1;
	return pconn_addr_ip(s, (size_t)(colon - s), colon + 1, out, why);
}

static void pconn_unref(struct pconn *c)
{
	if (--c->refs == 0)
		free(c);
}

static void pconn_free_cb(uv_handle_t *h)
{
	pconn_unref(h->data);
}

/* The connect timer is not needed any more (connected, closing, the last address failed). */
static void pconn_timer_drop(struct pconn *c)
{
	if (!c->has_timer)
		return;
	c->has_timer = false;
	uv_close((uv_handle_t *)&c->ctimer, pconn_free_cb);
}

static void pconn_connect_timeout_cb(uv_timer_t *t);

/* The connect to c->addrs[c->addr_i] has begun: its own time starts. */
static void pconn_timer_arm(struct pconn *c)
{
	if (c->has_timer)
		uv_timer_start(&c->ctimer, pconn_connect_timeout_cb, c->connect_ms, 0);
}

static void pconn_emit(struct pconn *c, enum pconn_event ev, const char *data, size_t len, int err)
{
	if (!c->closing)
		c->cb(c, ev, data, len, err, c->arg);
}

static void pconn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	buf->base = pconn_rbuf;
	buf->len = sizeof(pconn_rbuf);
}

static void pconn_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct pconn *c = s->data;

	if (n > 0)
		pconn_emit(c, PCONN_DATA, buf->base, (size_t)n, 0);
	else if (n == UV_EOF) {
		uv_read_stop(s);
		pconn_emit(c, PCONN_EOF, NULL, 0, 0);
	} else if (n < 0) {
		uv_read_stop(s);
		pconn_emit(c, PCONN_ERROR, NULL, 0, (int)n);
	}
}

static void pconn_connect_cb(uv_connect_t *req, int status);

/* The handle to the address that failed is closed: the same memory, a new handle, the
 * next address (unless pconn_close came meanwhile: then it is freed). The owner writes only
 * after PCONN_CONNECTED, so nothing was queued on the old handle. */
static void pconn_switched_cb(uv_handle_t *h)
{
	struct pconn *c = h->data;
	int rc;

	c->switching = false;
	if (c->closing) {
		pconn_unref(c);
		return;
	}
	c->addr_i++;
	rc = uv_tcp_init(c->loop, &c->u.tcp);
	if (rc < 0) {
		/* no handle open: pconn_close/pconn_finish then free at once */
		c->dead = true;
		pconn_timer_drop(c);
		pconn_emit(c, PCONN_ERROR, NULL, 0, rc);
		return;
	}
	c->u.h.data = c;
	uv_tcp_nodelay(&c->u.tcp, 1);
	rc = uv_tcp_connect(&c->creq, &c->u.tcp, (const struct sockaddr *)&c->addrs[c->addr_i], pconn_connect_cb);
	if (rc < 0 && c->addr_i + 1 < c->naddrs) {
		c->switching = true;
		uv_close(&c->u.h, pconn_switched_cb);
	} else if (rc < 0) {
		pconn_timer_drop(c);
		pconn_emit(c, PCONN_ERROR, NULL, 0, rc);
	} else {
		pconn_timer_arm(c);
	}
}

/* The address being connected to took connect_ms: the next one, or the error. The pending
 * connect request completes with UV_ECANCELED when its handle closes (ignored while
 * switching). */
static void pconn_connect_timeout_cb(uv_timer_t *t)
{
	struct pconn *c = t->data;

	if (c->closing || c->connected || c->switching || c->dead)
		return;
	if (c->addr_i + 1 < c->naddrs) {
		c->switching = true;
		uv_close(&c->u.h, pconn_switched_cb);
		return;
	}
	pconn_timer_drop(c);
	pconn_emit(c, PCONN_ERROR, NULL, 0, UV_ETIMEDOUT);
}

static void pconn_connect_cb(uv_connect_t *req, int status)
{
	struct pconn *c = req->data;

	if (c->closing || c->switching)
		return;	/* switching: the connect timer gave this address up */
	if (c->has_timer)
		uv_timer_stop(&c->ctimer);
	if (status < 0 && status != UV_ECANCELED && c->addr_i + 1 < c->naddrs) {
		c->switching = true;
		uv_close(&c->u.h, pconn_switched_cb);
		return;
	}
	pconn_timer_drop(c);
	if (status < 0) {
		pconn_emit(c, PCONN_ERROR, NULL, 0, status);
		return;
	}
	c->connected = true;
	if (uv_read_start(&c->u.s, pconn_alloc_cb, pconn_read_cb) < 0) {
		pconn_emit(c, PCONN_ERROR, NULL, 0, UV_EIO);
		return;
	}
	pconn_emit(c, PCONN_CONNECTED, NULL, 0, 0);
}

struct pconn *pconn_new(uv_loop_t *loop, const struct pconn_addr *addr, pconn_event_cb cb,
    void *arg)
{
	struct pconn *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return NULL;
	c->cb = cb;
	c->arg = arg;
	c->refs = 1;
	c->creq.data = c;
	if (addr->is_unix) {
		if (uv_pipe_init(loop, &c->u.pipe, 0) < 0)
			goto fail;
		c->u.h.data = c;
		uv_pipe_connect(&c->creq, &c->u.pipe, addr->path, pconn_connect_cb);
		return c;
	}
	c->loop = loop;
	/* a host name: its addresses as now published (a re-resolution, proxy/backendres.h) */
	struct pconn_addr now;
	if (addr->name[0]) {
		now = *addr;
		uint16_t port = ntohs(addr->sa.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&addr->sa)->sin6_port :
		    ((const struct sockaddr_in *)&addr->sa)->sin_port);
		if (pconn_addr_from_names(addr->name, port, &now))
			addr = &now;
	}
	snprintf(c->name, sizeof(c->name), "%s", addr->name);
	c->addrs[0] = addr->sa;
	c->naddrs = 1;
	for (size_t i = 0; i < addr->nmore && c->naddrs < PCONN_MAX_ADDRS; i++)
		c->addrs[c->naddrs++] = addr->more[i];
	if (uv_tcp_init(loop, &c->u.tcp) < 0)
		goto fail;
	c->u.h.data = c;
	uv_tcp_nodelay(&c->u.tcp, 1);
	rc = uv_tcp_connect(&c->creq, &c->u.tcp, (const struct sockaddr *)&addr->sa, pconn_connect_cb);
	if (rc < 0) {
		/* Report asynchronously-like: close now, caller sees NULL. */
		c->closing = true;
		uv_close(&c->u.h, pconn_free_cb);
		return NULL;
	}
	if (addr->connect_ms && uv_timer_init(loop, &c->ctimer) == 0) {
		c->ctimer.data = c;
		c->connect_ms = addr->connect_ms;
		c->has_timer = true;
		c->refs++;
		pconn_timer_arm(c);
	}
	return c;
fail:
	free(c);
	return NULL;
}

static void pconn_write_cb(uv_write_t *req, int status)
{
	struct pconn_wreq *w = req->data;
	struct pconn *c = w->c;

	c->queued -= w->len;
	free(w->owned);
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		pconn_emit(c, PCONN_ERROR, NULL, 0, status);
}

int pconn_write(struct pconn *c, const void *data, size_t len, void *owned)
{
	struct pconn_wreq *w;
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);

	if (c->closing || c->switching || c->dead || len > UINT32_MAX)
		goto fail;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		goto fail;
	w->c = c;
	w->owned = owned;
	w->len = len;
	w->req.data = w;
	if (uv_write(&w->req, &c->u.s, &b, 1, pconn_write_cb) < 0) {
		free(w);
		goto fail;
	}
	c->queued += len;
	return 0;
fail:
	free(owned);
	return -1;
}

bool pconn_address_left(const struct pconn *c)
{
	struct sockaddr_storage v[PCONN_MAX_ADDRS];
	size_t n;

	if (c == NULL || !c->connected || c->name[0] == '\0' ||
	    (n = pconn_names_get(c->name, v, PCONN_MAX_ADDRS)) == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (pconn_addr_set_same(&v[i], 1, &c->addrs[c->addr_i], 1))
			return false;
	return true;
}

size_t pconn_write_queue(const struct pconn *c)
{
	return c->queued;
}

void pconn_close(struct pconn *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	pconn_timer_drop(c);
	if (c->switching)
		return;   /* pconn_switched_cb frees it */
	if (c->dead) {
		pconn_unref(c);
		return;
	}
	/* Pending writes complete with UV_ECANCELED before the close callback; they free their
	 * own requests; pconn_free_cb runs last. */
	uv_close(&c->u.h, pconn_free_cb);
}

static void pconn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct pconn *c = req->data;

	uv_close(&c->u.h, pconn_free_cb);
}

void pconn_finish(struct pconn *c)
{
	if (c == NULL || c->closing)
		return;
	c->closing = true;
	pconn_timer_drop(c);
	if (c->switching)
		return;   /* pconn_switched_cb frees it */
	if (c->dead) {
		pconn_unref(c);
		return;
	}
	c->sreq.data = c;
	if (!c->connected || uv_shutdown(&c->sreq, &c->u.s, pconn_shutdown_cb) < 0)
		uv_close(&c->u.h, pconn_free_cb);
}
