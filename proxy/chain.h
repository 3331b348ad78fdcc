/* chain.h — runs the hook modules of one stage for one session, in order, one at a time,
 * with each module's timeout and on_error, and reports one verdict.
 *
 * A session runs at most one chain at a time. The chain owns the calls it starts; a call a
 * module has not completed (timed out, or outstanding when the session closes) is kept on
 * the chain's list until the module completes it or the session is freed. */
#ifndef MX_CHAIN_H
#define MX_CHAIN_H

#include "hook.h"

/* Per-worker state of the modules for one config generation. */
struct chain_modules {
	void *wstate[32];
	unsigned stages[32];     /* stage bitmask per module (0 = module off) */
	unsigned any_stages;     /* union */
};

typedef void (*chain_done_fn)(void *arg, const struct verdict *v);

struct chain {
	const struct chain_modules *mods;
	struct hook_env *env;
	enum hook_stage stage;
	size_t next;              /* next module index */
	chain_done_fn done;
	void *arg;
	struct hook_call *cur;    /* the call in progress (NULL when none) */
	struct hook_call *orphans;/* calls abandoned after a timeout, still owned */
	uv_timer_t *timer;        /* borrowed from the session */
	bool running, in_step;
	struct verdict result;
};

/* Initialises modules for this worker; returns 0. Modules that fail are left off. */
int chain_modules_init(struct chain_modules *m, const struct mx_config *cfg, uv_loop_t *loop, int worker);
void chain_modules_free(struct chain_modules *m);

void chain_init(struct chain *c, const struct chain_modules *mods, struct hook_env *env, uv_timer_t *timer);
/* True when at least one module wants this stage. */
bool chain_wants(const struct chain_modules *m, enum hook_stage st);
/* Runs the stage; done is called exactly once (possibly before chain_run returns). */
void chain_run(struct chain *c, enum hook_stage st, chain_done_fn done, void *arg);
/* The timer callback the session forwards to when the chain owns the timer. */
void chain_on_timeout(struct chain *c);
/* The session goes away: modules' session_free, then every call is released. */
void chain_release(struct chain *c);

#endif
