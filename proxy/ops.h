/* ops.h — the daemon's state as the operator's tools see it (control socket, status page):
 * what main.c lends them (struct ops_host), the drain set, readiness, and the history tick.
 * Everything here runs on the main loop's thread. */
#ifndef MX_OPS_H
#define MX_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "opstats.h"

struct shared_gen;
struct pool;
struct backend;

/* What main.c provides. Every function is called on the main loop's thread. */
struct ops_host {
	/* The generation in force (never NULL once the daemon runs). */
	struct shared_gen *(*current)(void);
	/* Reloads the config as SIGHUP does (the backend names resolved off the main loop; a
	 * reload under way first: this one is queued after it) and calls done(arg, gen, errors)
	 * once, on the main loop's thread, when it is over: at once from inside this call or
	 * later. gen: the new generation id, or 0 with errors the malloc'd text of one
	 * "FILE:LINE:COL: key: reason" line per error (or why there was no reload: shutting
	 * down). On success errors is NULL or the malloc'd comma-separated keys that changed
	 * but take effect only at the next start ("listen,workers"). done frees errors. */
	void (*reload)(void (*done)(void *arg, unsigned gen, char *errors), void *arg);
	/* A worker that does not run generation gen (or a newer one) yet: its index, *runs its
	 * generation; -1 when every worker runs it (`reload` answers only then). NULL ok. */
	int (*behind)(unsigned gen, unsigned *runs);
};

/* Starts the ops state on loop: keeps host (copied), starts the one-second history tick.
 * Returns 0 or -1. */
int ops_start(uv_loop_t *loop, const struct ops_host *host);
/* Stops the tick (its handle closes on the loop). */
void ops_stop(void);
const struct ops_host *ops_host(void);
/* The history fed by the tick (see opstats.h), brought up to date with the counters
 * first (a view rendered right after traffic shows it). */
const struct ophist *ops_history(void);
/* Seconds since ops_start. */
double ops_uptime(void);

/* ------------------------------------------------------------ readiness */

/* Listeners are bound and the workers run. */
void ops_set_listening(void);
/* The first round of health checks has completed (every backend checked once). */
void ops_set_checked(void);
/* Both of the above. */
bool ops_is_started(void);
/* SIGTERM/SIGINT: the daemon drains its sessions and takes no new ones (never ready again). */
void ops_set_stopping(void);
bool ops_is_stopping(void);
/* Started, not stopping, and at least one backend of the current pool is up and not drained. */
bool ops_is_ready(void);
/* Why the daemon is not ready: "starting", "shutting down" or "no backend up"; NULL when ready. */
const char *ops_not_ready_reason(void);

/* ------------------------------------------------------------ backends and drains */

/* The i-th backend of p counting servers, then route-only servers; NULL past the end. */
struct backend *ops_pool_backend(const struct pool *p, size_t i);
/* Finds a backend by its URL (case-insensitive) or, failing that, by host ("127.0.0.1:25",
 * a maildir path). NULL with *err when none or several match. */
struct backend *ops_find_backend(const struct pool *p, const char *name, const char **err);
/* "up", "down", "draining" (drained, transactions still open) or "drained". */
const char *ops_backend_state(const struct backend *b);
/* Adds/removes url to/from the drain set and flags the backends of the current pool. The
 * set is kept by URL in the main process, so it outlives reloads until ops_enable. Returns
 * 1 when the set changed, 0 when it already was so, -1 when the set is full (64 URLs). */
int ops_drain(const char *url);
int ops_enable(const char *url);
bool ops_is_drained(const char *url);
/* Flags the drained backends of a new pool (call on reload, before workers see it). */
void ops_apply_drains(struct pool *p);
/* What old's servers learnt of their addresses (backend.h: the address that last took a
 * connection, those passed over for BACKEND_ADDR_RETRY_MS) goes to p's servers of the same
 * URL, address by address (one the DNS no longer gives is forgotten): a reload does not
 * send the first connections to a dead address again. Call on reload, before workers see
 * p. NULL old ok. */
void ops_carry_addr_memory(struct pool *p, const struct pool *old);
/* The drain set, for listings: url i (NULL past the end). */
const char *ops_drained_url(size_t i);
/* Forgets the drain set (tests). */
void ops_reset_drains(void);

#endif
