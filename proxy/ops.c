/* ops.c — host hooks, readiness, the drain set and the history tick (see ops.h). */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "counters.h"
#include "log.h"
#include "quarantine_control.h"
#include "sdnotify.h"
#include "worker.h"

#define OPS_MAX_DRAINS 64

static struct ops_host ops_h;
static uv_timer_t ops_tick_timer;
static bool ops_tick_running;
static struct ophist ops_hist;
static uint64_t ops_start_ms;
static uv_loop_t *ops_loop;
static bool ops_listening, ops_checked, ops_stopping;
static char *ops_drains[OPS_MAX_DRAINS];
static size_t ops_ndrains;

static void ops_tick_cb(uv_timer_t *t)
{
	long cur[OPS__NSERIES], received;

	ophist_read_counters(cur, &received);
	ophist_tick(&ops_hist, uv_now(t->loop), cur, received);
}

/* Once a second: the history, the quarantine's expiry when due, and every 10 s a STATUS= line for `systemctl status`. */
static void ops_timer_cb(uv_timer_t *t)
{
	static unsigned n;
	struct shared_gen *g = ops_h.current ? ops_h.current() : NULL;

	ops_tick_cb(t);
	if (g)
		quarantine_expire_tick(t->loop, g->cfg);   /* quarantine.expire: hourly, off the loop */
	if (++n % 10 == 0 && ops_is_started() && g)
		sdnotify_printf("STATUS=%s: %ld sessions, %.1f msg/s, config generation %u",
		    ops_is_ready() ? "ready" : "no backend up", counter_get(COUNTER_SESSIONS_ACTIVE),
		    ophist_rate(&ops_hist), g->id);
}

int ops_start(uv_loop_t *loop, const struct ops_host *host)
{
	ops_h = *host;
	ops_loop = loop;
	ops_start_ms = uv_now(loop);
	if (uv_timer_init(loop, &ops_tick_timer) != 0)
		return -1;
	ops_tick_running = true;
	ops_tick_cb(&ops_tick_timer);
	uv_timer_start(&ops_tick_timer, ops_timer_cb, 1000, 1000);
	return 0;
}

void ops_stop(void)
{
	if (!ops_tick_running)
		return;
	ops_tick_running = false;
	uv_close((uv_handle_t *)&ops_tick_timer, NULL);
}

const struct ops_host *ops_host(void)
{
	return &ops_h;
}

const struct ophist *ops_history(void)
{
	if (ops_tick_running)
		ops_tick_cb(&ops_tick_timer);
	return &ops_hist;
}

double ops_uptime(void)
{
	return ops_loop ? (double)(uv_now(ops_loop) - ops_start_ms) / 1000.0 : 0;
}

/* ------------------------------------------------------------ readiness */

void ops_set_listening(void)
{
	ops_listening = true;
}

void ops_set_checked(void)
{
	ops_checked = true;
}

bool ops_is_started(void)
{
	return ops_listening && ops_checked;
}

void ops_set_stopping(void)
{
	ops_stopping = true;
}

bool ops_is_stopping(void)
{
	return ops_stopping;
}

bool ops_is_ready(void)
{
	struct shared_gen *g = ops_h.current ? ops_h.current() : NULL;

	char failed[128];

	if (!ops_is_started() || ops_stopping || g == NULL)
		return false;
	/* a module configured but not running (event=module_init_failed): the node is not
	 * what was configured (greylisting would pass every message); a reload that sets
	 * them up makes it ready again */
	if (shared_gen_failed(g, failed, sizeof(failed)))
		return false;
	/* backends.servers only: they take every domain without a route, so a route's own
	 * server being up does not make the node fit for mail while they are all down. */
	for (size_t i = 0; i < g->pool->nservers; i++) {
		struct backend *b = &g->pool->servers[i];
		if (backend_is_up(b) && !backend_is_drained(b))
			return true;
	}
	return false;
}

const char *ops_not_ready_reason(void)
{
	static char why[192];     /* the main loop's (the probes, mxgatectl status) */
	char failed[128];

	if (ops_is_ready())
		return NULL;
	if (ops_stopping)
		return "shutting down";
	if (!ops_is_started())
		return "starting";
	if (shared_gen_failed(ops_h.current ? ops_h.current() : NULL, failed, sizeof(failed))) {
		snprintf(why, sizeof(why), "module not running: %s (event=module_init_failed)", failed);
		return why;
	}
	return "no backend up";
}

/* ------------------------------------------------------------ backends and drains */

struct backend *ops_pool_backend(const struct pool *p, size_t i)
{
	if (p == NULL)
		return NULL;
	if (i < p->nservers)
		return &p->servers[i];
	if (i - p->nservers < p->nextra)
		return &p->extra[i - p->nservers];
	return NULL;
}

struct backend *ops_find_backend(const struct pool *p, const char *name, const char **err)
{
	struct backend *b, *found = NULL;
	int nhost = 0;

	for (size_t i = 0; (b = ops_pool_backend(p, i)) != NULL; i++)
		if (b->url && backend_url_equal(b->url, name))
			return b;
	for (size_t i = 0; (b = ops_pool_backend(p, i)) != NULL; i++)
		if (strcasecmp(b->host, name) == 0) {
			found = b;
			nhost++;
		}
	if (nhost == 1)
		return found;
	*err = nhost ? "several backends have that address: give the URL" : "no such backend";
	return NULL;
}

const char *ops_backend_state(const struct backend *b)
{
	if (backend_is_drained(b))
		return backend_active_all(b) > 0 ? "draining" : "drained";
	return backend_is_up(b) ? "up" : "down";
}

static long ops_drain_index(const char *url)
{
	for (size_t i = 0; i < ops_ndrains; i++)
		if (backend_url_equal(ops_drains[i], url))
			return (long)i;
	return -1;
}

bool ops_is_drained(const char *url)
{
	return url && ops_drain_index(url) >= 0;
}

/* Sets every backend of the current pool with this URL to on. */
static void ops_flag(const char *url, int on)
{
	struct shared_gen *g = ops_h.current ? ops_h.current() : NULL;
	struct backend *b;

	for (size_t i = 0; g && (b = ops_pool_backend(g->pool, i)) != NULL; i++)
		if (b->url && backend_url_equal(b->url, url))
			atomic_store(&b->drained, on);
	backend_drain_url(url, on);	/* older generations' pools too */
}

int ops_drain(const char *url)
{
	int changed = 0;

	if (ops_drain_index(url) < 0) {
		char *c = ops_ndrains < OPS_MAX_DRAINS ? strdup(url) : NULL;
		if (c == NULL)
			return -1;
		ops_drains[ops_ndrains++] = c;
		changed = 1;
	}
	ops_flag(url, 1);
	if (changed)
		log_event(LOG_LVL_INFO, NULL, "event=backend_drain backend=%s", url);
	return changed;
}

int ops_enable(const char *url)
{
	long i = ops_drain_index(url);

	ops_flag(url, 0);
	if (i < 0)
		return 0;
	free(ops_drains[i]);
	ops_drains[i] = ops_drains[--ops_ndrains];
	log_event(LOG_LVL_INFO, NULL, "event=backend_enable backend=%s", url);
	return 1;
}

void ops_apply_drains(struct pool *p)
{
	struct backend *b;

	for (size_t i = 0; (b = ops_pool_backend(p, i)) != NULL; i++) {
		int on = ops_is_drained(b->url) ? 1 : 0;
		atomic_store(&b->drained, on);
		if (b->counts)
			atomic_store(&b->counts->drained, on);	/* read by every generation's pool */
	}
}

/* The backend of p whose URL is url (case-insensitive, as configured), or NULL. */
static const struct backend *ops_same_server(const struct pool *p, const char *url)
{
	const struct backend *b;

	for (size_t i = 0; (b = ops_pool_backend(p, i)) != NULL; i++)
		if (strcasecmp(b->url, url) == 0)
			return b;
	return NULL;
}

void ops_carry_addr_memory(struct pool *p, const struct pool *old)
{
	struct backend *b;

	for (size_t i = 0; old && (b = ops_pool_backend(p, i)) != NULL; i++) {
		const struct backend *o = ops_same_server(old, b->url);
		if (o == NULL || o->kind != b->kind)
			continue;
		size_t pref = (size_t)atomic_load(&o->addr_pref);
		for (size_t k = 0; k < b->naddrs && k < BACKEND_MAX_ADDRS; k++)
			for (size_t j = 0; j < o->naddrs && j < BACKEND_MAX_ADDRS; j++) {
				if (o->addrlens[j] != b->addrlens[k] ||
				    memcmp(&o->addrs[j], &b->addrs[k], b->addrlens[k]) != 0)
					continue;
				atomic_store(&b->addr_retry_at[k], atomic_load(&o->addr_retry_at[j]));
				if (j == pref)
					atomic_store(&b->addr_pref, (int)k);
				break;
			}
	}
}

const char *ops_drained_url(size_t i)
{
	return i < ops_ndrains ? ops_drains[i] : NULL;
}

void ops_reset_drains(void)
{
	while (ops_ndrains)
		free(ops_drains[--ops_ndrains]);
}
