/* chain.c — one stage of the module chain for one session. */
#include "chain.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct hook_call {
	struct chain *chain;       /* NULL once abandoned */
	struct hook_call *next;    /* on chain->orphans */
	struct hook_env *env;
	enum hook_stage stage;
	size_t module;
	bool completed;
};

enum hook_stage hook_call_stage(const struct hook_call *c) { return c->stage; }
struct hook_env *hook_call_env(const struct hook_call *c) { return c->env; }

int chain_modules_init(struct chain_modules *m, const struct mx_config *cfg, uv_loop_t *loop, int worker)
{
	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < hook_nmodules && i < 32; i++) {
		const struct hook_module *mod = hook_modules[i];
		void *ws = NULL;

		if (mod->worker_init && mod->worker_init(cfg, loop, worker, &ws) != 0) {
			log_event(LOG_LVL_ERROR, NULL, "event=module_init_failed module=%s", mod->name);
			continue;
		}
		if (ws == NULL)
			continue;
		m->wstate[i] = ws;
		m->stages[i] = mod->stages ? mod->stages(ws) : 0;
		m->any_stages |= m->stages[i];
	}
	return 0;
}

void chain_modules_free(struct chain_modules *m)
{
	for (size_t i = 0; i < hook_nmodules && i < 32; i++) {
		if (m->wstate[i] && hook_modules[i]->worker_free)
			hook_modules[i]->worker_free(m->wstate[i]);
		m->wstate[i] = NULL;
	}
}

void chain_init(struct chain *c, const struct chain_modules *mods, struct hook_env *env, uv_timer_t *timer)
{
	memset(c, 0, sizeof(*c));
	c->mods = mods;
	c->env = env;
	c->timer = timer;
}

bool chain_wants(const struct chain_modules *m, enum hook_stage st)
{
	return m && (m->any_stages & (1u << st)) != 0;
}

static void chain_step(struct chain *c);

static void chain_finish(struct chain *c)
{
	c->running = false;
	c->done(c->arg, &c->result);
}

/* Applies module i's verdict v (NULL = continue) to the chain's result. Returns true when
 * the stage is decided. */
static bool chain_apply(struct chain *c, const struct verdict *v)
{
	if (v == NULL || v->action == VERDICT_CONTINUE) {
		if (v && v->delay_ms > c->result.delay_ms)
			c->result.delay_ms = v->delay_ms;
		return false;
	}
	uint32_t delay = c->result.delay_ms;
	c->result = *v;
	if (delay > c->result.delay_ms)
		c->result.delay_ms = delay;
	return true;
}

void hook_call_done(struct hook_call *call, const struct verdict *v)
{
	struct chain *c = call->chain;

	/* A completed call is freed at once when the chain still waited for it: a module must
	 * not complete a call twice (it would be a use after free). An abandoned call (after a
	 * timeout, or at release) stays owned by the orphan list and may be completed once. */
	if (call->completed)
		return;
	call->completed = true;
	if (c == NULL)
		return;
	c->cur = NULL;
	if (c->timer)
		uv_timer_stop(c->timer);
	free(call);
	bool decided = chain_apply(c, v);
	if (decided || c->result.action == VERDICT_ACCEPT)
		c->next = hook_nmodules;	/* stop here */
	if (!c->in_step)
		chain_step(c);
}

static void chain_timeout_cb(uv_timer_t *t)
{
	chain_on_timeout(t->data);
}

void chain_on_timeout(struct chain *c)
{
	struct hook_call *call = c->cur;

	if (call == NULL)
		return;
	const struct hook_module *mod = hook_modules[call->module];
	void *ws = c->mods->wstate[call->module];
	enum verdict_action a = mod->on_error ? mod->on_error(ws) : VERDICT_CONTINUE;
	struct verdict v;

	static const char *const stage_names[] = { "connect", "helo", "mail", "rcpt", "data", "eom", "close" };
	log_event(LOG_LVL_WARNING, c->env->session_id, "event=module_timeout module=%s stage=%s action=%s",
	    mod->name, call->stage < HOOK_NSTAGES ? stage_names[call->stage] : "?",
	    a == VERDICT_TEMPFAIL ? "tempfail" : a == VERDICT_REJECT ? "reject" : "continue");
	/* Keep the call: the module may still complete it later (ignored then). */
	call->chain = NULL;
	call->next = c->orphans;
	c->orphans = call;
	c->cur = NULL;
	if (a == VERDICT_TEMPFAIL)
		verdict_set(&v, a, 451, mod->name, "4.7.1 Temporary failure in %s, try again later", mod->name);
	else if (a == VERDICT_REJECT)
		verdict_set(&v, a, 550, mod->name, "5.7.1 Rejected by %s", mod->name);
	else
		verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	if (chain_apply(c, &v))
		c->next = hook_nmodules;
	chain_step(c);
}

static void chain_step(struct chain *c)
{
	c->in_step = true;
	while (c->cur == NULL) {
		if (c->next >= hook_nmodules || c->next >= 32) {
			c->in_step = false;
			chain_finish(c);
			return;
		}
		size_t i = c->next++;
		if ((c->mods->stages[i] & (1u << c->stage)) == 0)
			continue;
		const struct hook_module *mod = hook_modules[i];
		struct hook_call *call = calloc(1, sizeof(*call));
		if (call == NULL)
			abort();
		call->chain = c;
		call->env = c->env;
		call->stage = c->stage;
		call->module = i;
		c->cur = call;
		uint64_t to = mod->timeout_ms ? mod->timeout_ms(c->mods->wstate[i]) : 0;
		if (to && c->timer) {
			c->timer->data = c;
			uv_timer_start(c->timer, chain_timeout_cb, to, 0);
		}
		mod->run(c->mods->wstate[i], (int)i, call);
		/* If run completed synchronously, hook_call_done cleared c->cur: loop on. */
	}
	c->in_step = false;
}

void chain_run(struct chain *c, enum hook_stage st, chain_done_fn done, void *arg)
{
	c->stage = st;
	c->next = 0;
	c->done = done;
	c->arg = arg;
	c->running = true;
	memset(&c->result, 0, sizeof(c->result));
	if (!chain_wants(c->mods, st)) {
		chain_finish(c);
		return;
	}
	chain_step(c);
}

void chain_release(struct chain *c)
{
	/* The call in flight is abandoned first, so a module that completes it from its
	 * session_free cannot resume the chain of a session being freed. */
	if (c->cur) {
		c->cur->chain = NULL;
		c->cur->next = c->orphans;
		c->orphans = c->cur;
		c->cur = NULL;
	}
	if (c->timer)
		uv_timer_stop(c->timer);
	if (c->mods) {
		for (size_t i = 0; i < hook_nmodules && i < 32; i++)
			if (c->mods->stages[i] && hook_modules[i]->session_free)
				hook_modules[i]->session_free(c->mods->wstate[i], (int)i, c->env);
	}
	while (c->orphans) {
		struct hook_call *n = c->orphans->next;
		free(c->orphans);
		c->orphans = n;
	}
	c->running = false;
}
