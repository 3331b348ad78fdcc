/* stage_fixture.h — one session's chain, run stage by stage on a test's loop, for the unit
 * tests of hook modules (test_helo.c, test_rdns.c). Header-only (static).
 *
 *     struct stage_sess s;
 *     stage_sess_init(&s, loop, cfg, &mods, &timer, "198.18.1.7", "192.0.2.25");
 *     struct verdict v;
 *     bool at_once = stage_run(loop, &s, HOOK_CONNECT, &v);   // fails the test after 3 s
 *     stage_sess_free(&s); */
#ifndef STAGE_FIXTURE_H
#define STAGE_FIXTURE_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "proxy/chain.h"
#include "proxy/hook.h"
#include "addr_fixture.h"

struct stage_sess { struct hook_env env; struct chain chain; };
struct stage_result { int done; struct verdict v; };

static void stage_done_cb(void *arg, const struct verdict *v)
{
	struct stage_result *r = arg;

	r->done++;
	r->v = *v;
}

static void stage_guard_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs stage st to its verdict (*v); true when it completed inside chain_run (no module
 * waited for anything). */
static bool stage_run(uv_loop_t *loop, struct stage_sess *s, enum hook_stage st, struct verdict *v)
{
	struct stage_result r = { 0 };
	uv_timer_t guard;
	int fired = 0;
	bool at_once;

	chain_run(&s->chain, st, stage_done_cb, &r);
	at_once = r.done == 1;
	uv_timer_init(loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, stage_guard_cb, 3000, 0);
	while (!r.done && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(r.done, 1);
	*v = r.v;
	return at_once;
}

static void stage_sess_init(struct stage_sess *s, uv_loop_t *loop, const struct mx_config *cfg,
    const struct chain_modules *mods, uv_timer_t *timer, const char *ip, const char *local)
{
	memset(s, 0, sizeof(*s));
	s->env.session_id = "t";
	s->env.loop = loop;
	s->env.cfg = cfg;
	s->env.client = sockaddr_of(ip);
	s->env.local = sockaddr_of(local);
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "%s", ip);
	chain_init(&s->chain, mods, &s->env, timer);
}

static void stage_sess_free(struct stage_sess *s)
{
	chain_release(&s->chain);
	hook_env_free_outputs(&s->env);
}

#endif
