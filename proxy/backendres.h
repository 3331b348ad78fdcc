/* backendres.h — the host names of a pool's backends resolved again while running, as
 * HAProxy's `resolvers`, nginx's `resolve` and Envoy's STRICT_DNS do: a Kubernetes Service
 * or a container's name whose address changes (the MTA's pod rescheduled) takes the new
 * connections without a reload.
 *
 * Runs on the main loop beside the health checks (health.h), for the current generation's
 * pool. Each round asks every name of the pool's smtp:// and lmtp:// servers (servers and
 * route servers; numeric addresses never) exactly as the load does (hostres.h: c-ares,
 * dns.resolvers, dns.timeout and dns.tries, resolv.conf's search list, /etc/hosts, A and
 * AAAA) on a libuv pool thread, so nothing on the loop waits for the DNS. The next round is
 * after the smallest TTL of the answers, at least BACKENDRES_MIN_MS and at most
 * backends.resolve_interval (when no TTL is known: the interval); a round with a name
 * without a usable answer comes again within BACKENDRES_RETRY_MS.
 *
 * The filter peers' names (plugins[].address: milter, clamd, spamd, rspamd; pconn.h) are
 * asked in the same rounds.
 *
 * An answer with another set of addresses (the order alone is none) replaces the backend's
 * (backend_addrs_update: the new connections go to it; the changed callback has each worker
 * close its idle pooled ones to an address that left, relay_sweep_vanished) and logs
 * `event=backend_addrs_changed backend=URL name=NAME addrs=A,B ttl=S`; a filter peer's is
 * published (pconn_names_publish_all: the next connection to it goes there, one open stays)
 * and logged `event=backend_addrs_changed plugin=PLUGIN name=NAME addrs=A,B ttl=S`. A failed
 * or empty answer keeps the last addresses and logs `event=backend_resolve_failed
 * backend=URL|plugin=PLUGIN name=NAME reason="..." addrs=A,B` once until the name resolves
 * again. Counters: mxgate_backend_resolves_total, mxgate_backend_resolve_failures_total. */
#ifndef MX_BACKENDRES_H
#define MX_BACKENDRES_H

#include <uv.h>

struct pool;
struct mx_config;
struct backendres;

enum { BACKENDRES_MIN_MS = 1000, BACKENDRES_RETRY_MS = 10000, BACKENDRES_MAX_PLUGINS = 32 };

/* Called on loop after a round that changed some backend's addresses: the workers are told
 * to close their idle connections to an address that left (relay_sweep_vanished). */
typedef void (*backendres_changed_fn)(void *arg);

/* Starts re-resolving the named backends of pool (cfg: its generation's config, read here
 * only) on loop, the first round when the load's first answer (cfg->resolved) expires. NULL when there is nothing to do
 * (no name, backends.resolve_interval 0) or on failure (logged). pool must outlive it
 * until backendres_stop. */
struct backendres *backendres_start(uv_loop_t *loop, struct pool *pool, const struct mx_config *cfg,
    backendres_changed_fn changed, void *changed_arg);
/* Stops: the pool is not touched after this returns; a round in flight is cancelled
 * (hostres_set_cancel) and the memory freed when its work and the timer have closed (run
 * the loop). NULL ok. */
void backendres_stop(struct backendres *r);

#endif
