/* backendres.c — backend host names resolved again while running (backendres.h). */
#include "backendres.h"
#include "backend.h"
#include "config.h"
#include "counters.h"
#include "hostres.h"
#include "log.h"
#include "plugins/pconn.h"
#include "plugins/plugins.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct backendres {
	uv_loop_t *loop;
	struct pool *pool;              /* not dereferenced once stopping */
	uv_timer_t timer;
	uv_work_t work;
	struct hostres_set *set;        /* the round in flight (the work's), or NULL */
	bool busy;                      /* a round's work is queued or running */
	bool stopping;
	bool timer_open;
	char servers[1024];             /* dns.resolvers as hostres_set_resolve takes them */
	uint64_t timeout_ms, interval_ms;
	int tries;
	bool failing[64];               /* by backend index: backend_resolve_failed logged, no
	                                 * usable answer since */
	/* the filter peers' host names (plugins[].address), copied from the config */
	struct backendres_plugin {
		char plugin[64];        /* plugins[].name */
		char host[256];         /* pconn_addr_host's */
		bool failing;
	} plugins[BACKENDRES_MAX_PLUGINS];
	size_t nplugins;
	backendres_changed_fn changed;  /* after a round that changed a backend's addresses */
	void *changed_arg;
};

/* The pool's backend i (servers, then route servers), or NULL past the last. */
static struct backend *backendres_backend(struct pool *p, size_t i)
{
	if (i < p->nservers)
		return &p->servers[i];
	if (i - p->nservers < p->nextra)
		return &p->extra[i - p->nservers];
	return NULL;
}

static void backendres_timer_cb(uv_timer_t *t);

/* next lowered to e's TTL when e has one (a round comes when the first answer expires). */
static void backendres_ttl_bound(const struct hostres_entry *e, uint64_t *next)
{
	uint64_t ttl_ms = (uint64_t)e->ttl * 1000u;

	if (e->err == NULL && e->n > 0 && ttl_ms > 0 && ttl_ms < *next)
		*next = ttl_ms;
}

static void backendres_free_if_done(struct backendres *r)
{
	if (r->stopping && !r->busy && !r->timer_open)
		free(r);
}

static void backendres_timer_closed_cb(uv_handle_t *h)
{
	struct backendres *r = h->data;

	r->timer_open = false;
	backendres_free_if_done(r);
}

static void backendres_work_cb(uv_work_t *w)
{
	struct backendres *r = w->data;

	hostres_set_resolve(r->set, r->servers, r->timeout_ms, r->tries);
}

/* A filter peer's name answered (e, NULL when not asked): its new addresses published for
 * the workers' next connections (pconn_names_publish_all), logged as a backend's. */
static void backendres_plugin_answer(struct backendres_plugin *p, const struct hostres_entry *e, uint64_t *next)
{
	struct sockaddr_storage v[PCONN_MAX_ADDRS];
	char addrs[8 * 48];

	if (e == NULL)
		return;
	counter_inc(COUNTER_BACKEND_RESOLVES);
	if (e->err != NULL || e->n == 0) {
		counter_inc(COUNTER_BACKEND_RESOLVE_FAILURES);
		if (*next > BACKENDRES_RETRY_MS)
			*next = BACKENDRES_RETRY_MS;
		if (!p->failing) {
			p->failing = true;
			hostres_addrs_format(v, pconn_names_get(p->host, v, PCONN_MAX_ADDRS), addrs, sizeof(addrs));
			log_event(LOG_LVL_WARNING, NULL, "event=backend_resolve_failed plugin=%s name=%s reason=\"%s\" addrs=%s",
			    p->plugin, p->host, e->err ? e->err : "no address", addrs);
		}
		return;
	}
	p->failing = false;
	backendres_ttl_bound(e, next);
	if (pconn_names_publish_all(p->host, e->sa, e->n) == 1) {
		hostres_addrs_format(v, pconn_names_get(p->host, v, PCONN_MAX_ADDRS), addrs, sizeof(addrs));
		log_event(LOG_LVL_INFO, NULL, "event=backend_addrs_changed plugin=%s name=%s addrs=%s ttl=%u",
		    p->plugin, p->host, addrs, (unsigned)e->ttl);
	}
}

/* The round's answers applied to the pool; the next round armed. */
static void backendres_after_work_cb(uv_work_t *w, int status)
{
	struct backendres *r = w->data;
	struct hostres_set *set = r->set;
	uint64_t next = r->interval_ms;
	struct backend *b;
	char addrs[8 * 48];
	bool changed = false;

	r->set = NULL;
	r->busy = false;
	for (size_t i = 0; status == 0 && !r->stopping && r->pool != NULL && (b = backendres_backend(r->pool, i)) != NULL; i++) {
		const struct hostres_entry *e = b->dns_name[0] ? hostres_set_find(set, b->dns_name) : NULL;
		/* past the marks' table (a pool of more servers): re-resolved the same, a failure
		 * logged at each round rather than once */
		bool once = i < sizeof(r->failing) / sizeof(r->failing[0]);
		if (e == NULL)
			continue;
		counter_inc(COUNTER_BACKEND_RESOLVES);
		if (e->err != NULL || e->n == 0) {
			counter_inc(COUNTER_BACKEND_RESOLVE_FAILURES);
			if (next > BACKENDRES_RETRY_MS)
				next = BACKENDRES_RETRY_MS;
			if (!once || !r->failing[i]) {
				if (once)
					r->failing[i] = true;
				backend_addrs_format(b, addrs, sizeof(addrs));
				log_event(LOG_LVL_WARNING, NULL, "event=backend_resolve_failed backend=%s name=%s "
				    "reason=\"%s\" addrs=%s", b->url, b->dns_name, e->err ? e->err : "no address",
				    addrs);
			}
			continue;
		}
		if (once)
			r->failing[i] = false;
		backendres_ttl_bound(e, &next);
		if (backend_addrs_update(b, e->sa, e->salen, e->n) == 1) {
			changed = true;
			backend_addrs_format(b, addrs, sizeof(addrs));
			log_event(LOG_LVL_INFO, NULL, "event=backend_addrs_changed backend=%s name=%s addrs=%s ttl=%u",
			    b->url, b->dns_name, addrs, (unsigned)e->ttl);
		}
	}
	for (size_t i = 0; status == 0 && !r->stopping && i < r->nplugins; i++)
		backendres_plugin_answer(&r->plugins[i], hostres_set_find(set, r->plugins[i].host), &next);
	hostres_set_free(set);
	if (r->stopping) {
		backendres_free_if_done(r);
		return;
	}
	if (changed && r->changed != NULL)
		r->changed(r->changed_arg);
	if (next < BACKENDRES_MIN_MS)
		next = BACKENDRES_MIN_MS;
	uv_timer_start(&r->timer, backendres_timer_cb, next, 0);
}

/* A round: every name of the pool's backends, asked on a pool thread. */
static void backendres_timer_cb(uv_timer_t *t)
{
	struct backendres *r = t->data;
	struct backend *b;

	if (r->busy || r->stopping)
		return;
	if ((r->set = hostres_set_new()) == NULL)
		goto again;
	for (size_t i = 0; r->pool != NULL && (b = backendres_backend(r->pool, i)) != NULL; i++)
		if (b->dns_name[0] && hostres_set_add(r->set, b->dns_name) != 0)
			goto again;
	for (size_t i = 0; i < r->nplugins; i++)
		if (hostres_set_add(r->set, r->plugins[i].host) != 0)
			goto again;
	r->work.data = r;
	if (uv_queue_work(r->loop, &r->work, backendres_work_cb, backendres_after_work_cb) != 0)
		goto again;
	r->busy = true;
	return;
again:
	hostres_set_free(r->set);
	r->set = NULL;
	uv_timer_start(&r->timer, backendres_timer_cb, BACKENDRES_RETRY_MS, 0);
}

/* See backendres.h. */
struct backendres *backendres_start(uv_loop_t *loop, struct pool *pool, const struct mx_config *cfg,
    backendres_changed_fn changed, void *changed_arg)
{
	const struct backends_config *bc = &cfg->backends;
	const struct plugin_config *pcs = cfg->plugins.v;
	bool named = false;
	struct backend *b;
	char host[256];

	for (size_t i = 0; pool != NULL && (b = backendres_backend(pool, i)) != NULL; i++)
		named |= b->dns_name[0] != '\0';
	for (size_t i = 0; i < cfg->plugins.n; i++)
		named |= pconn_addr_host(pcs[i].address, host, sizeof(host)) == 1;
	if (!named || bc->resolve_interval == 0)
		return NULL;
	struct backendres *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=backend_resolve_failed reason=\"out of memory: backend names not resolved again\"");
		return NULL;
	}
	r->loop = loop;
	r->pool = pool;
	r->changed = changed;
	r->changed_arg = changed_arg;
	for (size_t i = 0; i < cfg->plugins.n && r->nplugins < BACKENDRES_MAX_PLUGINS; i++) {
		struct backendres_plugin *p = &r->plugins[r->nplugins];
		if (pconn_addr_host(pcs[i].address, p->host, sizeof(p->host)) != 1)
			continue;
		snprintf(p->plugin, sizeof(p->plugin), "%s", pcs[i].name ? pcs[i].name : "?");
		r->nplugins++;
	}
	config_dns_servers(cfg, r->servers, sizeof(r->servers));
	r->timeout_ms = cfg->dns.timeout ? cfg->dns.timeout : 2000;
	r->tries = cfg->dns.tries ? (int)cfg->dns.tries : 2;
	r->interval_ms = bc->resolve_interval < BACKENDRES_MIN_MS ? BACKENDRES_MIN_MS : bc->resolve_interval;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	r->timer_open = true;
	/* the load resolved the names just now: the first round when its first answer expires */
	uint64_t first = r->interval_ms;
	for (size_t i = 0; pool != NULL && (b = backendres_backend(pool, i)) != NULL; i++) {
		const struct hostres_entry *e = b->dns_name[0] ? hostres_set_find(cfg->resolved, b->dns_name) : NULL;
		if (e != NULL)
			backendres_ttl_bound(e, &first);
	}
	for (size_t i = 0; i < r->nplugins; i++) {
		const struct hostres_entry *e = hostres_set_find(cfg->resolved, r->plugins[i].host);
		if (e != NULL)
			backendres_ttl_bound(e, &first);
	}
	uv_timer_start(&r->timer, backendres_timer_cb, first < BACKENDRES_MIN_MS ? BACKENDRES_MIN_MS : first, 0);
	return r;
}

/* See backendres.h. */
void backendres_stop(struct backendres *r)
{
	if (r == NULL)
		return;
	r->stopping = true;
	r->pool = NULL;
	if (r->set != NULL)
		hostres_set_cancel(r->set);	/* the work ends within HOSTRES_CANCEL_MS */
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, backendres_timer_closed_cb);
}
