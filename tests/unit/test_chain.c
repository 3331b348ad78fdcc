/* test_chain.c — proxy/chain.c with fake hook modules: synchronous and asynchronous
 * completion, first decisive verdict wins, ACCEPT ends the stage except for the scorer,
 * delays kept, per-entry timeouts with on_error (and VERDICT_ERROR), cancel and progress,
 * late and double completions, discard/quarantine decided before EOM, chain_release with
 * calls still outstanding, the entry vector (filters, plugin entries, scorer), and the
 * outcome notifications (once per transaction, once at session end).
 *
 * chain.c is compiled into this test with hook_modules/hook_nmodules/hook_plugin_entries
 * renamed, so the chain runs over the fake modules below instead of the real registry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define hook_modules test_hook_modules
#define hook_nmodules test_hook_nmodules
#define hook_plugin_entries test_plugin_entries
#include "../../proxy/chain.c"

/* ------------------------------------------------------------ fake modules */

enum fake_mode { FAKE_SYNC = 0, FAKE_ASYNC };

struct fake_mod {
	unsigned stages;
	enum fake_mode mode;
	bool null_verdict;            /* complete with v == NULL */
	struct verdict v;
	uint64_t timeout_ms;
	enum verdict_action on_error;
	bool finish_in_free;          /* session_free completes the pending call */
	const char *symbol;           /* run adds this symbol (score 1) */
	int init_rc;                  /* worker_init's return */
	bool init_null;               /* worker_init leaves *wstate NULL */
	bool done_in_cancel;          /* cancel completes the call (must be ignored) */
	uint64_t answer_ms;           /* FAKE_ASYNC: answer_timer completes the call this late */
	bool progress_only;           /* ... or only reports progress then, again and again */
	bool tag;                     /* on_error_tag's answer */
	/* observed */
	int runs, session_frees, worker_frees, cancels;
	int slot;
	enum hook_stage stage;
	struct hook_env *env;
	struct hook_call *pending;
	int prefetches;               /* hook_module.prefetch heard */
	int skips;                    /* hook_module.skipped heard (bypass:) */
	enum hook_stage skip_stage;
	int runs_at_prefetch;         /* every fake's runs together when it was last heard */
	enum hook_stage prefetch_stage;
	int outcomes;                 /* transaction outcomes heard */
	int session_outcomes;
	struct hook_outcome last;     /* the last one (reason copied) */
	char last_reason[48];
};

/* 0..5 filters, 6 the scorer; plugin entries come from plugfakes[] */
#define NFAKE 7
#define NPLUG 3
static struct fake_mod fakes[NFAKE];
static struct fake_mod plugfakes[NPLUG];
static size_t nplug;              /* plugin entries configured */
static int order[64], norder;
static int porder[64], nporder;   /* the prefetches heard, by slot */

/* Completes (or reports progress on) the call of the fake in its data, answer_ms late. */
static uv_timer_t answer_timer;

static void answer_cb(uv_timer_t *t)
{
	struct fake_mod *f = t->data;
	struct hook_call *c = f->pending;

	if (c == NULL)
		return;
	if (f->progress_only) {
		hook_call_progress(c);
		uv_timer_start(&answer_timer, answer_cb, f->answer_ms, 0);
		return;
	}
	f->pending = NULL;
	hook_call_done(c, f->null_verdict ? NULL : &f->v);
}

static void fake_run(void *ws, int slot, struct hook_call *call)
{
	struct fake_mod *f = ws;

	f->runs++;
	f->slot = slot;
	f->stage = hook_call_stage(call);
	f->env = hook_call_env(call);
	if (norder < 64)
		order[norder++] = slot;
	if (f->symbol)
		hook_env_add_symbol(f->env, f->symbol, 1, hook_stage_name(f->stage));
	if (f->mode == FAKE_SYNC) {
		hook_call_done(call, f->null_verdict ? NULL : &f->v);
		return;
	}
	f->pending = call;
	if (f->answer_ms) {
		answer_timer.data = f;
		uv_timer_start(&answer_timer, answer_cb, f->answer_ms, 0);
	}
}

static void fake_session_free(void *ws, int slot, struct hook_env *env)
{
	struct fake_mod *f = ws;

	f->session_frees++;
	if (f->finish_in_free && f->pending) {
		struct hook_call *c = f->pending;
		f->pending = NULL;
		hook_call_done(c, NULL);
	}
}

static void fake_cancel(void *ws, int slot, struct hook_call *call)
{
	struct fake_mod *f = ws;

	f->cancels++;
	assert_ptr_equal(call, f->pending);
	if (answer_timer.data == f)
		uv_timer_stop(&answer_timer);
	if (f->done_in_cancel)
		hook_call_done(call, &f->v);   /* ignored: the chain gave up on it */
}

static void fake_outcome(void *ws, int slot, struct hook_env *env, const struct hook_outcome *o)
{
	struct fake_mod *f = ws;

	if (o->session)
		f->session_outcomes++;
	else
		f->outcomes++;
	f->last = *o;
	snprintf(f->last_reason, sizeof(f->last_reason), "%s", o->reason);
	f->last.reason = f->last_reason;
}

static void fake_prefetch(void *ws, int slot, struct hook_env *env, enum hook_stage st)
{
	struct fake_mod *f = ws;

	f->prefetches++;
	f->prefetch_stage = st;
	f->runs_at_prefetch = 0;
	for (int i = 0; i < NFAKE; i++)
		f->runs_at_prefetch += fakes[i].runs;
	if (nporder < 64)
		porder[nporder++] = slot;
	f->runs_at_prefetch += norder * 1000;   /* the runs recorded so far, as a check */
}

static void fake_skipped(void *ws, int slot, struct hook_env *env, enum hook_stage st)
{
	struct fake_mod *f = ws;

	f->skips++;
	f->skip_stage = st;
}

static unsigned fake_stages(void *ws) { return ((struct fake_mod *)ws)->stages; }
static uint64_t fake_timeout_ms(void *ws) { return ((struct fake_mod *)ws)->timeout_ms; }
static enum verdict_action fake_on_error(void *ws) { return ((struct fake_mod *)ws)->on_error; }
static bool fake_on_error_tag(void *ws) { return ((struct fake_mod *)ws)->tag; }
static void fake_worker_free(void *ws) { ((struct fake_mod *)ws)->worker_frees++; }

#define FAKE_INIT(i) \
	static int fake_init_##i(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **ws) \
	{ \
		if (fakes[i].init_rc != 0) \
			return fakes[i].init_rc; \
		*ws = fakes[i].init_null ? NULL : &fakes[i]; \
		return 0; \
	}
FAKE_INIT(0)
FAKE_INIT(1)
FAKE_INIT(2)
FAKE_INIT(3)
FAKE_INIT(4)
FAKE_INIT(5)
FAKE_INIT(6)

#define FAKE_MODULE(i, nm) \
	static const struct hook_module fake_module_##i = { \
		.name = nm, .worker_init = fake_init_##i, .worker_free = fake_worker_free, \
		.stages = fake_stages, .run = fake_run, .session_free = fake_session_free, \
		.timeout_ms = fake_timeout_ms, .on_error = fake_on_error, .on_error_tag = fake_on_error_tag, \
		.outcome = fake_outcome, .prefetch = fake_prefetch, .skipped = fake_skipped }
FAKE_MODULE(0, "fake0");
FAKE_MODULE(1, "fake1");
FAKE_MODULE(2, "fake2");
FAKE_MODULE(3, "fake3");
FAKE_MODULE(4, "fake4");
/* The last one leaves every optional function out. */
static const struct hook_module fake_module_5 = {
	.name = "bare", .worker_init = fake_init_5, .stages = fake_stages, .run = fake_run,
};

/* The scorer: listed first here, the chain still puts it last. */
static const struct hook_module fake_module_6 = {
	.name = "scorer", .flags = HOOK_MODULE_SCORER, .worker_init = fake_init_6,
	.worker_free = fake_worker_free, .stages = fake_stages, .run = fake_run,
	.session_free = fake_session_free, .timeout_ms = fake_timeout_ms, .on_error = fake_on_error,
	.outcome = fake_outcome,
};

const struct hook_module *const test_hook_modules[] = {
	&fake_module_6, &fake_module_0, &fake_module_1, &fake_module_2, &fake_module_3, &fake_module_4,
	&fake_module_5, NULL
};
const size_t test_hook_nmodules = NFAKE;

/* Plugin entries: one shared module, instances told apart by wstate (plugfakes[i]). */
static const struct hook_module fake_plugin_module = {
	.name = "plugin", .flags = HOOK_MODULE_CONTENT, .worker_free = fake_worker_free,
	.stages = fake_stages, .run = fake_run, .session_free = fake_session_free,
	.timeout_ms = fake_timeout_ms, .on_error = fake_on_error, .cancel = fake_cancel,
	.outcome = fake_outcome,
};

static size_t fake_plugin_count(const struct mx_config *cfg) { return nplug; }

static int fake_plugin_init(const struct mx_config *cfg, size_t i, uv_loop_t *loop, int worker,
    void **ws, const char **name)
{
	static const char *const names[NPLUG] = { "plug0", "plug1", "plug2" };

	if (plugfakes[i].init_rc != 0)
		return plugfakes[i].init_rc;
	*ws = plugfakes[i].init_null ? NULL : &plugfakes[i];
	*name = names[i];
	return 0;
}

const struct hook_instances test_plugin_entries = {
	.module = &fake_plugin_module, .count = fake_plugin_count, .instance_init = fake_plugin_init,
};

/* ------------------------------------------------------------ fixture */

struct done_rec {
	int calls;
	struct verdict v;
	void (*then)(struct done_rec *d);   /* runs inside the done callback */
	struct chain *chain;
};

static void done_cb(void *arg, const struct verdict *v)
{
	struct done_rec *d = arg;

	d->calls++;
	d->v = *v;
	if (d->then)
		d->then(d);
}

struct fx {
	uv_loop_t loop;
	uv_timer_t timer;
	struct hook_env env;
	struct chain_modules mods;
	struct chain chain;
	struct done_rec done;
};

#define ALL_STAGES ((1u << HOOK_NSTAGES) - 1)

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	memset(fakes, 0, sizeof(fakes));
	memset(plugfakes, 0, sizeof(plugfakes));
	nplug = 0;
	norder = 0;
	nporder = 0;
	uv_loop_init(&fx->loop);
	uv_timer_init(&fx->loop, &fx->timer);
	fx->env.session_id = "t0001";
	fx->env.loop = &fx->loop;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	uv_close((uv_handle_t *)&fx->timer, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
	return 0;
}

/* Sets the modules up from fakes[] through chain_modules_init and a chain over them. */
static void fx_start(struct fx *fx)
{
	assert_int_equal(chain_modules_init(&fx->mods, NULL, &fx->loop, 0), 0);
	chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
	fx->done.chain = &fx->chain;
}

static void fx_stop(struct fx *fx)
{
	chain_release(&fx->chain);
	chain_modules_free(&fx->mods);
}

static void set_verdict(int i, enum verdict_action a, int code, const char *reason, uint32_t delay)
{
	verdict_set(&fakes[i].v, a, code, reason, reason ? "5.7.1 by %s" : NULL, reason);
	fakes[i].v.delay_ms = delay;
}

/* ------------------------------------------------------------ verdict rows (all sync) */

struct vrow {
	const char *label;
	struct { unsigned stages; enum verdict_action a; int code; uint32_t delay; bool null_v; } m[NFAKE];
	enum hook_stage stage;
	enum verdict_action want;
	int want_code;
	const char *want_reason;
	uint32_t want_delay;
	int want_runs[NFAKE];
};

#define S_ALL ALL_STAGES
#define S_(st) (1u << (st))

static const struct vrow vrows[] = {
	{ "nobody wants the stage: continue, nothing runs",
	  { { S_(HOOK_HELO) }, { S_(HOOK_MAIL) } }, HOOK_RCPT,
	  VERDICT_CONTINUE, 0, "", 0, { 0, 0, 0, 0, 0, 0 } },
	{ "all continue: every wanting module runs once, in order",
	  { { S_ALL }, { S_ALL, .null_v = true }, { 0 }, { S_(HOOK_RCPT) }, { S_(HOOK_HELO) }, { S_ALL } }, HOOK_RCPT,
	  VERDICT_CONTINUE, 0, "", 0, { 1, 1, 0, 1, 0, 1 } },
	{ "first non-continue wins: reject before tempfail",
	  { { S_ALL }, { S_ALL, VERDICT_REJECT, 554 }, { S_ALL, VERDICT_TEMPFAIL, 451 } }, HOOK_MAIL,
	  VERDICT_REJECT, 554, "fake1", 0, { 1, 1, 0, 0, 0, 0 } },
	{ "first non-continue wins: tempfail before reject",
	  { { S_ALL, VERDICT_TEMPFAIL, 421 }, { S_ALL, VERDICT_REJECT, 554 } }, HOOK_CONNECT,
	  VERDICT_TEMPFAIL, 421, "fake0", 0, { 1, 0, 0, 0, 0, 0 } },
	{ "accept ends the stage: later reject never runs",
	  { { S_ALL }, { S_ALL, VERDICT_ACCEPT }, { S_ALL, VERDICT_REJECT, 550 } }, HOOK_RCPT,
	  VERDICT_ACCEPT, 0, "fake1", 0, { 1, 1, 0, 0, 0, 0 } },
	{ "discard at EOM wins",
	  { { S_(HOOK_EOM), VERDICT_DISCARD }, { S_ALL, VERDICT_REJECT } }, HOOK_EOM,
	  VERDICT_DISCARD, 0, "fake0", 0, { 1, 0, 0, 0, 0, 0 } },
	{ "quarantine at EOM wins",
	  { { S_ALL }, { S_ALL }, { S_ALL, VERDICT_QUARANTINE } }, HOOK_EOM,
	  VERDICT_QUARANTINE, 0, "fake2", 0, { 1, 1, 1, 0, 0, 0 } },
	{ "delays of continuing modules: the longest is kept",
	  { { S_ALL, VERDICT_CONTINUE, 0, 100 }, { S_ALL, VERDICT_CONTINUE, 0, 300 }, { S_ALL, VERDICT_CONTINUE, 0, 50 } },
	  HOOK_HELO, VERDICT_CONTINUE, 0, "", 300, { 1, 1, 1, 0, 0, 0 } },
	{ "a delay before a reject without one is kept",
	  { { S_ALL, VERDICT_CONTINUE, 0, 2000 }, { S_ALL, VERDICT_REJECT, 550, 0 } },
	  HOOK_RCPT, VERDICT_REJECT, 550, "fake1", 2000, { 1, 1, 0, 0, 0, 0 } },
	{ "a reject's own longer delay wins",
	  { { S_ALL, VERDICT_CONTINUE, 0, 100 }, { S_ALL, VERDICT_REJECT, 550, 900 } },
	  HOOK_RCPT, VERDICT_REJECT, 550, "fake1", 900, { 1, 1, 0, 0, 0, 0 } },
	{ "delays after the decision are not collected",
	  { { S_ALL, VERDICT_TEMPFAIL, 451, 10 }, { S_ALL, VERDICT_CONTINUE, 0, 5000 } },
	  HOOK_RCPT, VERDICT_TEMPFAIL, 451, "fake0", 10, { 1, 0, 0, 0, 0, 0 } },
	{ "the module without optional functions runs like the others",
	  { { 0 }, { 0 }, { 0 }, { 0 }, { 0 }, { S_ALL, VERDICT_REJECT, 550 } }, HOOK_DATA,
	  VERDICT_REJECT, 550, "fake5", 0, { 0, 0, 0, 0, 0, 1 } },
};

static void test_verdict_rows(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(vrows) / sizeof(vrows[0]); i++) {
		const struct vrow *r = &vrows[i];

		memset(fakes, 0, sizeof(fakes));
		memset(&fx->done, 0, sizeof(fx->done));
		norder = 0;
		for (int k = 0; k < NFAKE; k++) {
			fakes[k].stages = r->m[k].stages;
			fakes[k].null_verdict = r->m[k].null_v;
			char name[8];
			snprintf(name, sizeof(name), "fake%d", k);
			set_verdict(k, r->m[k].a, r->m[k].code, r->m[k].a ? name : NULL, r->m[k].delay);
		}
		fx_start(fx);
		chain_run(&fx->chain, r->stage, done_cb, &fx->done);
		/* all synchronous: decided before chain_run returns */
		if (fx->done.calls != 1)
			fail_msg("row \"%s\": done called %d times", r->label, fx->done.calls);
		if (fx->done.v.action != r->want || fx->done.v.code != r->want_code ||
		    strcmp(fx->done.v.reason, r->want_reason) != 0 || fx->done.v.delay_ms != r->want_delay)
			fail_msg("row \"%s\": action %d code %d reason \"%s\" delay %u; want %d %d \"%s\" %u", r->label,
			    fx->done.v.action, fx->done.v.code, fx->done.v.reason, fx->done.v.delay_ms,
			    r->want, r->want_code, r->want_reason, r->want_delay);
		for (int k = 0; k < NFAKE; k++) {
			if (fakes[k].runs != r->want_runs[k])
				fail_msg("row \"%s\": module %d ran %d times, want %d", r->label, k, fakes[k].runs, r->want_runs[k]);
			if (fakes[k].runs) {
				assert_int_equal(fakes[k].stage, r->stage);
				assert_ptr_equal(fakes[k].env, &fx->env);
				assert_int_equal(fakes[k].slot, k);
			}
		}
		for (int k = 1; k < norder; k++)
			assert_true(order[k] > order[k - 1]);
		assert_false(fx->chain.running);
		assert_false(uv_is_active((uv_handle_t *)&fx->timer));
		fx_stop(fx);
	}
}

/* ------------------------------------------------------------ asynchronous completion */

static void test_async(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = fakes[1].stages = fakes[2].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[2].mode = FAKE_ASYNC;
	set_verdict(2, VERDICT_REJECT, 550, "fake2", 0);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 0);
	assert_true(fx->chain.running);
	assert_int_equal(fakes[0].runs, 1);
	assert_int_equal(fakes[1].runs, 0);
	/* module 0 completes later: module 1 (sync) and module 2 (async) run */
	struct hook_call *c = fakes[0].pending;
	fakes[0].pending = NULL;
	hook_call_done(c, NULL);
	assert_int_equal(fakes[1].runs, 1);
	assert_int_equal(fakes[2].runs, 1);
	assert_int_equal(fx->done.calls, 0);
	c = fakes[2].pending;
	fakes[2].pending = NULL;
	hook_call_done(c, &fakes[2].v);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_REJECT);
	assert_false(fx->chain.running);
	/* the chain runs again for the next stage */
	fakes[2].mode = FAKE_SYNC;
	fakes[0].mode = FAKE_SYNC;
	chain_run(&fx->chain, HOOK_DATA, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 2);
	assert_int_equal(fakes[0].runs, 2);
	fx_stop(fx);
}

/* The session may start the next stage from inside the done callback (pipelined commands). */
static void next_stage_then(struct done_rec *d)
{
	if (d->calls == 1)
		chain_run(d->chain, HOOK_MAIL, done_cb, d);
}

static void test_run_from_done(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[1].stages = ALL_STAGES;
	fx_start(fx);
	fx->done.then = next_stage_then;
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	hook_call_done(fakes[0].pending, NULL);   /* HELO done -> MAIL starts, module 0 pends */
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fakes[0].runs, 2);
	assert_int_equal(fakes[0].stage, HOOK_MAIL);
	assert_true(fx->chain.running);
	hook_call_done(fakes[0].pending, NULL);
	assert_int_equal(fx->done.calls, 2);
	assert_int_equal(fakes[1].runs, 2);
	assert_int_equal(fakes[1].stage, HOOK_MAIL);
	fx_stop(fx);
}

/* ------------------------------------------------------------ timeouts */

struct trow {
	const char *label;
	enum verdict_action on_error;
	enum verdict_action want;
	int want_code;
	bool next_runs;
};

static const struct trow trows[] = {
	{ "on_error tempfail: 451, the stage ends", VERDICT_TEMPFAIL, VERDICT_TEMPFAIL, 451, false },
	{ "on_error reject: 550, the stage ends", VERDICT_REJECT, VERDICT_REJECT, 550, false },
	{ "on_error continue: the next module decides", VERDICT_CONTINUE, VERDICT_REJECT, 554, true },
	{ "on_error accept: treated as no objection, the next module decides", VERDICT_ACCEPT, VERDICT_REJECT, 554, true },
};

static void test_timeout_rows(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(trows) / sizeof(trows[0]); i++) {
		const struct trow *r = &trows[i];

		memset(fakes, 0, sizeof(fakes));
		memset(&fx->done, 0, sizeof(fx->done));
		fakes[0].stages = fakes[1].stages = ALL_STAGES;
		fakes[0].mode = FAKE_ASYNC;
		fakes[0].timeout_ms = 5000;
		fakes[0].on_error = r->on_error;
		set_verdict(0, VERDICT_REJECT, 550, "late", 0);   /* what it would say too late */
		set_verdict(1, VERDICT_REJECT, 554, "fake1", 0);
		fx_start(fx);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		assert_true(uv_is_active((uv_handle_t *)&fx->timer));
		assert_int_equal(fx->done.calls, 0);
		/* the session forwards its timer */
		chain_on_timeout(&fx->chain);
		if (fx->done.calls != 1 || fx->done.v.action != r->want || fx->done.v.code != r->want_code)
			fail_msg("row \"%s\": %d calls, action %d code %d", r->label, fx->done.calls,
			    fx->done.v.action, fx->done.v.code);
		if (!r->next_runs) {
			assert_string_equal(fx->done.v.reason, "fake0");
			assert_true(fx->done.v.reply[0] != '\0');
			assert_non_null(strstr(fx->done.v.reply, "fake0"));
		}
		assert_int_equal(fakes[1].runs, r->next_runs ? 1 : 0);
		/* a second timeout event with nothing in progress is a no-op */
		chain_on_timeout(&fx->chain);
		assert_int_equal(fx->done.calls, 1);
		/* the late completion is accepted and ignored */
		hook_call_done(fakes[0].pending, &fakes[0].v);
		fakes[0].pending = NULL;
		assert_int_equal(fx->done.calls, 1);
		assert_int_equal(fx->done.v.action, r->want);
		fx_stop(fx);   /* frees the orphaned call (ASan: no leak) */
	}
}

/* A real libuv timer: the module never answers. */
static void test_timeout_real_timer(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = fakes[1].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 20;
	fakes[0].on_error = VERDICT_TEMPFAIL;
	fakes[1].timeout_ms = 20;      /* completes at once: its timer must not fire */
	fx_start(fx);
	uint64_t t0 = uv_now(&fx->loop);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	assert_int_equal(fx->done.v.code, 451);
	assert_true(uv_now(&fx->loop) - t0 >= 19);
	assert_int_equal(fakes[1].runs, 0);
	struct hook_call *late = fakes[0].pending;

	/* next stage on the same timer: module 0 answers at once now, module 1 too */
	fakes[0].mode = FAKE_SYNC;
	chain_run(&fx->chain, HOOK_DATA, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 2);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_int_equal(fx->done.calls, 2);
	/* the HOOK_RCPT call completes during a later stage: ignored */
	fakes[0].mode = FAKE_ASYNC;
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	struct hook_call *cur = fakes[0].pending;
	hook_call_done(late, NULL);
	assert_int_equal(fx->done.calls, 2);
	assert_true(fx->chain.running);
	hook_call_done(cur, NULL);
	assert_int_equal(fx->done.calls, 3);
	fx_stop(fx);
}

/* A module that completes in time stops the timer; none fires afterwards. */
static void test_timer_stopped_on_completion(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 30;
	fakes[0].on_error = VERDICT_REJECT;
	fx_start(fx);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_true(uv_is_active((uv_handle_t *)&fx->timer));
	hook_call_done(fakes[0].pending, NULL);
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	fx_stop(fx);
}

/* Without a timer the chain waits as long as the module takes. */
static void test_no_timer(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 10;
	assert_int_equal(chain_modules_init(&fx->mods, NULL, &fx->loop, 0), 0);
	chain_init(&fx->chain, &fx->mods, &fx->env, NULL);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	assert_int_equal(fx->done.calls, 0);
	hook_call_done(fakes[0].pending, NULL);
	assert_int_equal(fx->done.calls, 1);
	fx_stop(fx);
}

/* ------------------------------------------------------------ release */

static void test_release_outstanding(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[1].stages = ALL_STAGES;
	fakes[1].mode = FAKE_ASYNC;
	fakes[1].timeout_ms = 1000;
	fakes[2].stages = 0;           /* off for every stage: no session_free */
	fakes[3].stages = S_(HOOK_EOM);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_non_null(fakes[1].pending);
	chain_release(&fx->chain);
	/* every module with stages hears of it, the call is freed, done never comes */
	assert_int_equal(fakes[0].session_frees, 1);
	assert_int_equal(fakes[1].session_frees, 1);
	assert_int_equal(fakes[2].session_frees, 0);
	assert_int_equal(fakes[3].session_frees, 1);
	assert_int_equal(fx->done.calls, 0);
	assert_null(fx->chain.cur);
	assert_false(fx->chain.running);
	/* the session stops its timer when it closes; a forwarded tick finds nothing to do */
	chain_on_timeout(&fx->chain);
	assert_int_equal(fx->done.calls, 0);
	uv_timer_stop(&fx->timer);
	chain_modules_free(&fx->mods);
}

static void test_release_with_orphans(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 1000;
	fx_start(fx);
	/* three stages, each timing out: three orphaned calls plus a current one */
	for (int i = 0; i < 3; i++) {
		chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
		chain_on_timeout(&fx->chain);
	}
	assert_int_equal(fx->done.calls, 3);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_non_null(fx->chain.orphans);
	chain_release(&fx->chain);   /* ASan: all four freed */
	assert_null(fx->chain.orphans);
	assert_int_equal(fx->done.calls, 3);
	uv_timer_stop(&fx->timer);
	chain_modules_free(&fx->mods);
}

/* A module whose session_free completes its outstanding call (cancel -> complete, as
 * c-ares does for cancelled queries). The chain must not resume: no further module may
 * run and done must not be called while the session is being freed. */
static void test_release_completion_in_session_free(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].finish_in_free = true;
	fakes[1].stages = ALL_STAGES;
	fx_start(fx);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	chain_release(&fx->chain);
	int runs = fakes[1].runs, calls = fx->done.calls;
	uv_timer_stop(&fx->timer);
	chain_modules_free(&fx->mods);
	if (runs != 0 || calls != 0)
		fail_msg("during chain_release: module 1 ran %d time(s), done called %d time(s)", runs, calls);
}

/* hook.h on hook_call_done: a second completion of a call is ignored. The call stays
 * allocated after the first (until the next stage starts or the session is freed), so the
 * second one is recognised instead of reading freed memory. */
static void double_run(void *ws, int slot, struct hook_call *call)
{
	hook_call_done(call, NULL);
	hook_call_done(call, NULL);   /* use after free of call */
}

static void test_double_completion(void **state)
{
	struct fx *fx = *state;

	static const struct hook_module dbl = { .name = "double", .run = double_run };
	fakes[0].stages = ALL_STAGES;
	fx_start(fx);
	/* run the buggy module by hand in place of module 0 */
	struct hook_call *call = calloc(1, sizeof(*call));
	call->chain = &fx->chain;
	call->env = &fx->env;
	call->stage = HOOK_RCPT;
	fx->chain.cur = call;
	fx->chain.stage = HOOK_RCPT;
	fx->chain.next = 1;
	fx->chain.done = done_cb;
	fx->chain.arg = &fx->done;
	fx->chain.running = true;
	dbl.run(NULL, 0, call);
	assert_int_equal(fx->done.calls, 1);
	fx_stop(fx);
}

/* ------------------------------------------------------------ module init / free */

static void test_modules_init(void **state)
{
	struct fx *fx = *state;
	struct chain_modules m;

	fakes[0].stages = S_(HOOK_CONNECT) | S_(HOOK_RCPT);
	fakes[1].stages = S_(HOOK_EOM);
	fakes[1].init_rc = -1;         /* failed: left off */
	fakes[2].stages = S_(HOOK_DATA);
	fakes[2].init_null = true;     /* not configured: left off */
	fakes[3].stages = 0;           /* configured, wants nothing */
	fakes[4].init_null = true;
	fakes[5].stages = S_(HOOK_HELO);
	fakes[6].stages = S_(HOOK_EOM);   /* the scorer */
	nplug = 3;
	plugfakes[0].stages = S_(HOOK_EOM);
	plugfakes[1].init_rc = -1;     /* failed: left off */
	plugfakes[2].stages = S_(HOOK_MAIL);
	assert_int_equal(chain_modules_init(&m, NULL, &fx->loop, 3), 0);
	/* filters in registry order, plugin entries in config order, then the scorer (listed
	 * first in the registry) */
	static const struct { struct fake_mod *f; const char *name; } want[] = {
		{ &fakes[0], "fake0" }, { &fakes[3], "fake3" }, { &fakes[5], "bare" },
		{ &plugfakes[0], "plug0" }, { &plugfakes[2], "plug2" }, { &fakes[6], "scorer" },
	};
	assert_int_equal(m.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < m.n; i++) {
		if (m.v[i].wstate != want[i].f || strcmp(m.v[i].name, want[i].name) != 0)
			fail_msg("entry %zu: %s, want %s", i, m.v[i].name, want[i].name);
		assert_int_equal(m.v[i].stages, want[i].f->stages);
	}
	assert_ptr_equal(m.v[3].mod, &fake_plugin_module);
	assert_int_equal(m.any_stages, S_(HOOK_CONNECT) | S_(HOOK_RCPT) | S_(HOOK_HELO) | S_(HOOK_EOM) |
	    S_(HOOK_MAIL));
	assert_true(chain_wants(&m, HOOK_CONNECT));
	assert_true(chain_wants(&m, HOOK_HELO));
	assert_true(chain_wants(&m, HOOK_EOM));
	assert_false(chain_wants(&m, HOOK_DATA));
	assert_false(chain_wants(NULL, HOOK_CONNECT));
	/* a failed module never runs; the others run in vector order, slot = index */
	chain_init(&fx->chain, &m, &fx->env, &fx->timer);
	assert_non_null(fx->env.module_ctx);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fakes[1].runs, 0);
	assert_int_equal(plugfakes[1].runs, 0);
	assert_int_equal(norder, 2);
	assert_int_equal(order[0], 3);
	assert_int_equal(order[1], 5);
	assert_int_equal(plugfakes[0].slot, 3);
	assert_int_equal(fakes[6].slot, 5);
	chain_release(&fx->chain);
	assert_null(fx->env.module_ctx);
	chain_modules_free(&m);
	/* worker_free for the configured ones only; the bare module has none */
	assert_int_equal(fakes[0].worker_frees, 1);
	assert_int_equal(fakes[1].worker_frees, 0);
	assert_int_equal(fakes[2].worker_frees, 0);
	assert_int_equal(fakes[3].worker_frees, 1);
	assert_int_equal(fakes[6].worker_frees, 1);
	assert_int_equal(plugfakes[0].worker_frees, 1);
	assert_int_equal(plugfakes[1].worker_frees, 0);
	assert_int_equal(plugfakes[2].worker_frees, 1);
	assert_null(m.v);
	assert_int_equal(m.n, 0);
	chain_modules_free(&m);   /* twice: nothing left to free */
	assert_int_equal(fakes[0].worker_frees, 1);
}

/* No module configured at all: an empty vector, every stage continues at once. */
static void test_modules_none(void **state)
{
	struct fx *fx = *state;

	for (int i = 0; i < NFAKE; i++)
		fakes[i].init_null = true;
	fx_start(fx);
	assert_int_equal(fx->mods.n, 0);
	assert_null(fx->env.module_ctx);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	fx_stop(fx);
}

/* chain_modules_single: one module, slot 0, nothing allocated. */
static void test_modules_single(void **state)
{
	struct fx *fx = *state;
	struct chain_modules m;
	struct chain_entry e;

	fakes[2].stages = S_(HOOK_RCPT);
	set_verdict(2, VERDICT_REJECT, 550, "fake2", 0);
	chain_modules_single(&m, &e, &fake_module_2, &fakes[2]);
	assert_int_equal(m.n, 1);
	assert_ptr_equal(m.v, &e);
	assert_string_equal(e.name, "fake2");
	chain_init(&fx->chain, &m, &fx->env, &fx->timer);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_REJECT);
	assert_int_equal(fakes[2].slot, 0);
	chain_release(&fx->chain);
}

/* ------------------------------------------------------------ the scorer and ACCEPT */

struct arow {
	const char *label;
	enum verdict_action filter, plugin, scorer;   /* fake0, plug0, the scorer */
	enum verdict_action want;
	const char *want_reason;
	int runs_filter1, runs_plug1, runs_scorer;
};

static const struct arow arows[] = {
	{ "filter accepts: later filters and plugins skipped, the scorer runs",
	  VERDICT_ACCEPT, VERDICT_REJECT, VERDICT_CONTINUE, VERDICT_ACCEPT, "fake0", 0, 0, 1 },
	{ "plugin accepts: the later plugin skipped, the scorer runs",
	  VERDICT_CONTINUE, VERDICT_ACCEPT, VERDICT_CONTINUE, VERDICT_ACCEPT, "plug0", 1, 0, 1 },
	{ "the scorer may still refuse after an accept",
	  VERDICT_CONTINUE, VERDICT_ACCEPT, VERDICT_REJECT, VERDICT_REJECT, "scorer", 1, 0, 1 },
	{ "a plugin's reject ends the stage: the scorer does not run",
	  VERDICT_CONTINUE, VERDICT_REJECT, VERDICT_CONTINUE, VERDICT_REJECT, "plug0", 1, 0, 0 },
	{ "nobody objects: everyone runs",
	  VERDICT_CONTINUE, VERDICT_CONTINUE, VERDICT_CONTINUE, VERDICT_CONTINUE, "", 1, 1, 1 },
};

static void test_accept_rows(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(arows) / sizeof(arows[0]); i++) {
		const struct arow *r = &arows[i];

		memset(fakes, 0, sizeof(fakes));
		memset(plugfakes, 0, sizeof(plugfakes));
		memset(&fx->done, 0, sizeof(fx->done));
		nplug = 2;
		fakes[0].stages = fakes[1].stages = fakes[6].stages = ALL_STAGES;
		plugfakes[0].stages = plugfakes[1].stages = ALL_STAGES;
		verdict_set(&fakes[0].v, r->filter, 0, r->filter ? "fake0" : NULL, NULL);
		verdict_set(&plugfakes[0].v, r->plugin, 0, r->plugin ? "plug0" : NULL, NULL);
		verdict_set(&fakes[6].v, r->scorer, 0, r->scorer ? "scorer" : NULL, NULL);
		fx_start(fx);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		if (fx->done.calls != 1 || fx->done.v.action != r->want || strcmp(fx->done.v.reason, r->want_reason) != 0)
			fail_msg("row \"%s\": %d calls, action %d reason \"%s\"", r->label, fx->done.calls,
			    fx->done.v.action, fx->done.v.reason);
		if (fakes[1].runs != r->runs_filter1 || plugfakes[1].runs != r->runs_plug1 ||
		    fakes[6].runs != r->runs_scorer)
			fail_msg("row \"%s\": runs filter1 %d plug1 %d scorer %d", r->label, fakes[1].runs,
			    plugfakes[1].runs, fakes[6].runs);
		fx_stop(fx);
	}
}

/* A discard decided before the end of data ends that stage like an accept and answers at
 * EOM without running anything; the next transaction (MAIL) starts clean. */
static void test_discard_before_eom(void **state)
{
	struct fx *fx = *state;

	nplug = 2;
	fakes[6].stages = ALL_STAGES;
	plugfakes[0].stages = plugfakes[1].stages = ALL_STAGES;
	set_verdict(0, VERDICT_CONTINUE, 0, NULL, 0);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	verdict_set(&plugfakes[0].v, VERDICT_QUARANTINE, 0, "milter", NULL);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_ACCEPT);
	assert_int_equal(plugfakes[1].runs, 1);   /* at MAIL only */
	assert_int_equal(fakes[6].runs, 2);       /* the scorer still runs */
	/* a second one does not replace the first */
	verdict_set(&plugfakes[0].v, VERDICT_DISCARD, 0, "other", NULL);
	chain_run(&fx->chain, HOOK_DATA, done_cb, &fx->done);
	int runs0 = plugfakes[0].runs, runs6 = fakes[6].runs;
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_QUARANTINE);
	assert_string_equal(fx->done.v.reason, "milter");
	assert_int_equal(plugfakes[0].runs, runs0);   /* nothing ran at EOM */
	assert_int_equal(fakes[6].runs, runs6);
	/* used up; and a new MAIL forgets one that was left */
	verdict_set(&plugfakes[0].v, VERDICT_CONTINUE, 0, NULL, NULL);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	verdict_set(&plugfakes[0].v, VERDICT_DISCARD, 0, "milter", NULL);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	verdict_set(&plugfakes[0].v, VERDICT_CONTINUE, 0, NULL, NULL);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	/* at EOM itself a discard is the stage's verdict */
	verdict_set(&plugfakes[0].v, VERDICT_DISCARD, 0, "milter", NULL);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_DISCARD);
	fx_stop(fx);
}

/* ------------------------------------------------------------ errors and on_error */

struct erow {
	const char *label;
	bool plugin;                     /* the failing entry is a plugin entry (content) */
	enum verdict_action on_error;
	enum verdict_action want;
	int want_code;
	const char *want_reason, *want_reply;
	bool next_runs;
};

static const struct erow erows[] = {
	{ "filter error, on_error tempfail: 451 naming the filter", false, VERDICT_TEMPFAIL,
	  VERDICT_TEMPFAIL, 451, "fake0", "4.7.1 Temporary failure in fake0, try again later", false },
	{ "filter error, on_error reject", false, VERDICT_REJECT, VERDICT_REJECT, 550, "fake0",
	  "5.7.1 Rejected by fake0", false },
	{ "filter error, on_error continue: the next decides", false, VERDICT_CONTINUE,
	  VERDICT_REJECT, 554, "next", "5.7.1 by next", true },
	{ "plugin error, on_error tempfail: the content filter is not named", true, VERDICT_TEMPFAIL,
	  VERDICT_TEMPFAIL, 451, "plugin", "4.7.1 Content filter unavailable, please try again later", false },
	{ "plugin error, on_error reject", true, VERDICT_REJECT, VERDICT_REJECT, 550, "plugin",
	  "5.7.1 Message content rejected", false },
	{ "plugin error, on_error accept (continue): the next decides", true, VERDICT_CONTINUE,
	  VERDICT_REJECT, 554, "next", "5.7.1 by next", true },
};

static void test_error_rows(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(erows) / sizeof(erows[0]); i++) {
		const struct erow *r = &erows[i];
		struct fake_mod *f, *next;

		memset(fakes, 0, sizeof(fakes));
		memset(plugfakes, 0, sizeof(plugfakes));
		memset(&fx->done, 0, sizeof(fx->done));
		nplug = r->plugin ? 2 : 0;
		f = r->plugin ? &plugfakes[0] : &fakes[0];
		next = r->plugin ? &plugfakes[1] : &fakes[1];
		f->stages = next->stages = ALL_STAGES;
		f->on_error = r->on_error;
		verdict_set(&f->v, VERDICT_ERROR, 0, "peer-gone", NULL);
		verdict_set(&next->v, VERDICT_REJECT, 554, "next", "5.7.1 by next");
		fx_start(fx);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		if (fx->done.calls != 1 || fx->done.v.action != r->want || fx->done.v.code != r->want_code ||
		    strcmp(fx->done.v.reason, r->want_reason) != 0 || strcmp(fx->done.v.reply, r->want_reply) != 0)
			fail_msg("row \"%s\": %d calls, action %d code %d reason \"%s\" reply \"%s\"", r->label,
			    fx->done.calls, fx->done.v.action, fx->done.v.code, fx->done.v.reason, fx->done.v.reply);
		assert_int_equal(next->runs, r->next_runs ? 1 : 0);
		fx_stop(fx);
	}
}

/* A plugin that fails with on_error tempfail: the client reads what was being checked, not
 * "Content filter unavailable" for a recipient (RCPT) or a sender (MAIL). */
struct stagerow { const char *label; enum hook_stage stage; const char *want_reply; };

static const struct stagerow stagerows[] = {
	{ "at connect: the client check", HOOK_CONNECT, "4.3.0 Client check unavailable, please try again later" },
	{ "at HELO", HOOK_HELO, "4.3.0 HELO check unavailable, please try again later" },
	{ "at MAIL: the sender check", HOOK_MAIL, "4.3.0 Sender check unavailable, please try again later" },
	{ "at RCPT: the recipient check", HOOK_RCPT, "4.3.0 Recipient check unavailable, please try again later" },
	{ "at DATA: the content filter", HOOK_DATA, "4.7.1 Content filter unavailable, please try again later" },
	{ "at end of data: the content filter", HOOK_EOM, "4.7.1 Content filter unavailable, please try again later" },
};

static void test_error_stage_words(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(stagerows) / sizeof(stagerows[0]); i++) {
		const struct stagerow *r = &stagerows[i];

		memset(fakes, 0, sizeof(fakes));
		memset(plugfakes, 0, sizeof(plugfakes));
		memset(&fx->done, 0, sizeof(fx->done));
		nplug = 1;
		plugfakes[0].stages = ALL_STAGES;
		plugfakes[0].on_error = VERDICT_TEMPFAIL;
		verdict_set(&plugfakes[0].v, VERDICT_ERROR, 0, "peer-gone", NULL);
		fx_start(fx);
		chain_run(&fx->chain, r->stage, done_cb, &fx->done);
		if (fx->done.calls != 1 || fx->done.v.action != VERDICT_TEMPFAIL || fx->done.v.code != 451 ||
		    strcmp(fx->done.v.reply, r->want_reply) != 0)
			fail_msg("row \"%s\": %d calls, action %d code %d reply \"%s\"", r->label,
			    fx->done.calls, fx->done.v.action, fx->done.v.code, fx->done.v.reply);
		fx_stop(fx);
	}
}

/* on_error: tag writes `NAME; stage=STAGE; error=WHY`: a reason (or a plugin's name from the
 * config) holding the field's own structure — `;`, `=`, blanks, quotes — goes in as a
 * quoted-string, so a reader splitting at `;` finds the three parts it expects. Before, a
 * reason "bad; stage=connect" made the field say two stages. */
struct tagrow { const char *label, *why, *want; };

static const struct tagrow tagrows[] = {
	{ "a plain word", "clamd-unreachable", "fake0; stage=mail; error=clamd-unreachable" },
	{ "a colon stays unquoted", "milter-unreachable:ECONNREFUSED",
	  "fake0; stage=mail; error=milter-unreachable:ECONNREFUSED" },
	{ "a semicolon and a parameter", "bad; stage=connect", "fake0; stage=mail; error=\"bad; stage=connect\"" },
	{ "blanks", "out of memory", "fake0; stage=mail; error=\"out of memory\"" },
	{ "an equals sign", "k=v", "fake0; stage=mail; error=\"k=v\"" },
	{ "quotes and a backslash escaped", "say \"hi\" \\", "fake0; stage=mail; error=\"say \\\"hi\\\" \\\\\"" },
	{ "a comment's parenthesis", "x(y)", "fake0; stage=mail; error=\"x(y)\"" },
	{ "a comma", "a,b", "fake0; stage=mail; error=\"a,b\"" },
	{ "CR LF and a header after it", "a\r\nBcc: x", "fake0; stage=mail; error=\"a??Bcc: x\"" },
	{ "non-ASCII octets", "caf\xc3\xa9", "fake0; stage=mail; error=caf??" },
};

static void test_tag_value(void **state)
{
	struct fx *fx = *state;

	for (size_t i = 0; i < sizeof(tagrows) / sizeof(tagrows[0]); i++) {
		const struct tagrow *r = &tagrows[i];
		const struct hdr_edit *e;

		memset(fakes, 0, sizeof(fakes));
		memset(&fx->done, 0, sizeof(fx->done));
		fakes[0].stages = ALL_STAGES;
		fakes[0].on_error = VERDICT_CONTINUE;
		fakes[0].tag = true;
		verdict_set(&fakes[0].v, VERDICT_ERROR, 0, r->why, NULL);
		fx_start(fx);
		chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
		assert_int_equal(fx->done.calls, 1);
		if (fx->env.nhdr_edits != 1)
			fail_msg("row \"%s\": %zu header edits", r->label, fx->env.nhdr_edits);
		e = &fx->env.hdr_edits[0];
		if (strcmp(e->name, "X-Mxgate-Filter-Error") != 0 || strcmp(e->value, r->want) != 0)
			fail_msg("row \"%s\": %s: %s\n  want %s", r->label, e->name, e->value, r->want);
		fx_stop(fx);
		hook_env_reset_txn(&fx->env);
	}
}

/* The value is bounded and stays well formed when cut: the closing quote is kept. */
static void test_tag_value_bounded(void **state)
{
	char why[600], val[CHAIN_TAG_MAX];
	size_t n;

	memset(why, ';', sizeof(why) - 1);
	why[sizeof(why) - 1] = '\0';
	chain_tag_value(val, sizeof(val), "fake0", "eom", why);
	n = strlen(val);
	assert_true(n < sizeof(val));
	assert_true(n > 100);
	assert_memory_equal(val, "fake0; stage=eom; error=\";", 26);
	assert_int_equal(val[n - 1], '"');
	/* a name that is no token (a plugin's name from the config) is quoted too */
	chain_tag_value(val, sizeof(val), "my plugin;x", "rcpt", "timeout");
	assert_string_equal(val, "\"my plugin;x\"; stage=rcpt; error=timeout");
	/* an escape is never cut in half: a value of backslashes ends in \\ pairs and the quote */
	memset(why, '\\', sizeof(why) - 1);
	chain_tag_value(val, sizeof(val), "fake0", "eom", why);
	n = strlen(val);
	assert_int_equal(val[n - 1], '"');
	assert_int_equal((n - 1 - strlen("fake0; stage=eom; error=\"")) % 2, 0);
}

/* A plugin entry that times out: cancel runs once, a completion from inside cancel and a
 * late one are ignored, the entry's on_error answers. */
static void test_plugin_timeout_cancel(void **state)
{
	struct fx *fx = *state;

	nplug = 2;
	plugfakes[0].stages = plugfakes[1].stages = ALL_STAGES;
	plugfakes[0].mode = FAKE_ASYNC;
	plugfakes[0].timeout_ms = 5000;
	plugfakes[0].on_error = VERDICT_TEMPFAIL;
	plugfakes[0].done_in_cancel = true;
	set_verdict(0, VERDICT_CONTINUE, 0, NULL, 0);
	verdict_set(&plugfakes[0].v, VERDICT_REJECT, 550, "late", "5.7.1 late");
	fx_start(fx);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_true(uv_is_active((uv_handle_t *)&fx->timer));
	chain_on_timeout(&fx->chain);
	assert_int_equal(plugfakes[0].cancels, 1);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	assert_string_equal(fx->done.v.reason, "plugin");
	assert_int_equal(plugfakes[1].runs, 0);
	hook_call_done(plugfakes[0].pending, &plugfakes[0].v);   /* late: ignored */
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	fx_stop(fx);
	assert_int_equal(plugfakes[0].cancels, 1);   /* release does not cancel an orphan again */
}

/* A module that answers at once has no timer left running; the next one, answering
 * later, has its own timeout from when it was asked. */
static void test_sync_no_timer(void **state)
{
	struct fx *fx = *state;

	static const struct { enum fake_mode mode; uint32_t timeout_ms; } cfg[] = {
		{ FAKE_SYNC, 7000 }, { FAKE_ASYNC, 3000 },
	};
	for (size_t i = 0; i < 2; i++) {
		fakes[i].stages = ALL_STAGES;
		fakes[i].mode = cfg[i].mode;
		fakes[i].timeout_ms = cfg[i].timeout_ms;
	}
	fx_start(fx);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	assert_int_equal(fakes[0].runs, 1);
	assert_true(uv_is_active((uv_handle_t *)&fx->timer));
	assert_int_equal(uv_timer_get_due_in(&fx->timer), 3000);
	hook_call_done(fakes[1].pending, NULL);
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	assert_int_equal(fx->done.calls, 1);
	fx_stop(fx);
}

/* hook_call_progress restarts the timer of the call in progress, and only of that one. */
static void test_progress(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 5000;
	fx_start(fx);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	struct hook_call *c = fakes[0].pending;
	assert_true(uv_is_active((uv_handle_t *)&fx->timer));
	uv_timer_stop(&fx->timer);            /* as if it had run down */
	hook_call_progress(c);
	assert_true(uv_is_active((uv_handle_t *)&fx->timer));
	assert_int_equal(uv_timer_get_repeat(&fx->timer), 0);
	hook_call_done(c, NULL);
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	hook_call_progress(c);                /* completed: nothing */
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	/* an abandoned call neither */
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	c = fakes[0].pending;
	chain_on_timeout(&fx->chain);
	hook_call_progress(c);
	assert_false(uv_is_active((uv_handle_t *)&fx->timer));
	fx_stop(fx);
}

/* limits.filter_deadline bounds the end-of-data chain as a whole: three plugins each
 * answering well within their own timeout (25 of 30 ms) used to hold the client 75 ms
 * against a 60 ms deadline; the one running at the deadline is given up (cancelled) and the
 * message tempfailed 451 4.3.0, not its on_error. A plugin's progress restarts its own
 * timeout, never the deadline. With filter_deadline_action accept the filters left are
 * skipped, the scorer still runs. Other stages have no deadline. */
static void test_filter_deadline(void **state)
{
	struct fx *fx = *state;
	static struct mx_config dcfg;

	memset(&dcfg, 0, sizeof(dcfg));
	dcfg.limits.filter_deadline = 240;
	fx->env.cfg = &dcfg;
	uv_timer_init(&fx->loop, &answer_timer);
	nplug = 3;
	for (int i = 0; i < 3; i++) {
		plugfakes[i].stages = ALL_STAGES;
		plugfakes[i].mode = FAKE_ASYNC;
		plugfakes[i].timeout_ms = 120;
		plugfakes[i].answer_ms = 100;
		plugfakes[i].null_verdict = true;
		plugfakes[i].on_error = VERDICT_CONTINUE;
	}
	fakes[6].stages = ALL_STAGES;     /* the scorer, sync */
	fakes[6].null_verdict = true;
	fx_start(fx);

	/* not at RCPT: 300 ms, each within its timeout, all three answered */
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_int_equal(plugfakes[2].runs, 1);

	/* at EOM: the third is given up at the deadline */
	uint64_t t0 = uv_now(&fx->loop);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 2);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	assert_int_equal(fx->done.v.code, 451);
	assert_string_equal(fx->done.v.reason, "filter-deadline");
	assert_true(strncmp(fx->done.v.reply, "4.3.0 ", 6) == 0);
	assert_true(uv_now(&fx->loop) - t0 >= 239);
	/* the third is given up when the loop keeps time (100 + 100, the deadline at 240); on a
	 * busy machine a late wake-up can bring the deadline while the second runs or before
	 * it starts — which one is scheduling, not the chain's rule: the first always answered */
	assert_int_equal(plugfakes[0].cancels, 0);
	assert_true(plugfakes[1].cancels + plugfakes[2].cancels <= 1);
	int runs1 = plugfakes[1].runs;
	assert_int_equal(fakes[6].runs, 1);   /* decided: the scorer is not asked */

	/* progress restarts the call's 120 ms, never the deadline */
	plugfakes[0].progress_only = true;
	plugfakes[0].answer_ms = 40;
	t0 = uv_now(&fx->loop);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 3);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	assert_string_equal(fx->done.v.reason, "filter-deadline");
	assert_true(uv_now(&fx->loop) - t0 >= 239);
	assert_int_equal(plugfakes[0].cancels, 1);
	assert_int_equal(plugfakes[1].runs, runs1);   /* the second never started */

	/* accept: the filters left are skipped, the scorer runs, the message goes on */
	dcfg.limits.filter_deadline_action = FILTER_DEADLINE_ACCEPT;
	set_verdict(6, VERDICT_CONTINUE, 0, NULL, 0);
	plugfakes[1].mode = FAKE_SYNC;
	plugfakes[1].null_verdict = false;
	verdict_set(&plugfakes[1].v, VERDICT_REJECT, 550, "plug1", "5.7.1 no");
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(fx->done.calls, 4);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_int_equal(plugfakes[1].runs, runs1);
	assert_int_equal(fakes[6].runs, 2);
	fx_stop(fx);
	uv_close((uv_handle_t *)&answer_timer, NULL);
	answer_timer.data = NULL;    /* the fakes of later tests never stop it */
}

/* A module answering with a verdict outside the set: treated as its error. */
static void test_bad_verdict(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = ALL_STAGES;
	fakes[0].on_error = VERDICT_TEMPFAIL;
	fakes[0].v.action = (enum verdict_action)42;
	fx_start(fx);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	fx_stop(fx);
}

/* ------------------------------------------------------------ outcomes */

static void assert_outcomes(int txn, int sess)
{
	for (int i = 0; i < NFAKE; i++)
		if (i != 5 &&   /* "bare" has no outcome function */
		    (fakes[i].outcomes != txn || fakes[i].session_outcomes != sess))
			fail_msg("fake%d heard %d/%d outcomes, want %d/%d", i, fakes[i].outcomes,
			    fakes[i].session_outcomes, txn, sess);
	for (size_t i = 0; i < nplug; i++)
		if (plugfakes[i].outcomes != txn || plugfakes[i].session_outcomes != sess)
			fail_msg("plug%zu heard %d/%d outcomes, want %d/%d", i, plugfakes[i].outcomes,
			    plugfakes[i].session_outcomes, txn, sess);
}

/* Every configured module hears each transaction's end once and the session's end once,
 * whatever the stages it takes part in. */
static void test_outcomes(void **state)
{
	struct fx *fx = *state;

	nplug = 1;
	fakes[1].stages = ALL_STAGES;          /* the others want no stage: they hear it too */
	fx_start(fx);
	/* no transaction open: nothing to report */
	assert_false(chain_txn_end(&fx->chain, 250, HOOK_EOM, NULL));
	chain_txn_abandon(&fx->chain);
	assert_outcomes(0, 0);

	/* delivered, with the flags modules set */
	chain_txn_begin(&fx->chain);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	fx->env.flags = HOOK_FLAG_SPAM;
	assert_true(chain_txn_end(&fx->chain, 250, HOOK_EOM, "x"));
	assert_false(chain_txn_end(&fx->chain, 451, HOOK_EOM, "again"));   /* once */
	chain_txn_abandon(&fx->chain);
	assert_outcomes(1, 0);
	assert_false(fakes[3].last.session);
	assert_int_equal(fakes[3].last.code, 250);
	assert_int_equal(fakes[3].last.stage, HOOK_EOM);
	assert_int_equal(fakes[3].last.flags, HOOK_FLAG_SPAM);
	assert_string_equal(fakes[3].last.reason, "x");

	/* abandoned (RSET after RCPT): code 0 at the last stage it reached */
	fx->env.flags = 0;
	chain_txn_begin(&fx->chain);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
	chain_txn_abandon(&fx->chain);
	chain_txn_abandon(&fx->chain);
	assert_outcomes(2, 0);
	assert_int_equal(plugfakes[0].last.code, 0);
	assert_int_equal(plugfakes[0].last.stage, HOOK_RCPT);
	assert_string_equal(plugfakes[0].last.reason, "");

	/* a new MAIL while one is open: the old one is reported abandoned first */
	chain_txn_begin(&fx->chain);
	chain_txn_begin(&fx->chain);
	assert_outcomes(3, 0);
	assert_int_equal(fakes[0].last.stage, HOOK_MAIL);

	/* the session ends with a transaction open: abandoned, then the session, once */
	chain_session_end(&fx->chain, 421, HOOK_CONNECT, "overload");
	assert_outcomes(4, 1);
	assert_true(fakes[4].last.session);
	assert_int_equal(fakes[4].last.code, 421);
	assert_int_equal(fakes[4].last.stage, HOOK_CONNECT);
	assert_string_equal(fakes[4].last.reason, "overload");
	chain_session_end(&fx->chain, 0, HOOK_CLOSE, NULL);
	assert_outcomes(4, 1);
	fx_stop(fx);
	assert_outcomes(4, 1);                 /* release reports nothing */
}

/* Symbols of the connect and HELO stages belong to the session: the transaction resets the
 * session does (at EHLO, MAIL, RSET, after each message) keep them; a transaction's go; a
 * new EHLO's replace the earlier EHLO's. */
static void test_session_symbols_kept(void **state)
{
	struct fx *fx = *state;
	static const enum hook_stage before[] = { HOOK_CONNECT, HOOK_HELO };

	fakes[1].stages = ALL_STAGES;
	fakes[1].symbol = "SYM";
	fx_start(fx);
	for (size_t i = 0; i < 2; i++) {
		chain_run(&fx->chain, before[i], done_cb, &fx->done);
		hook_env_reset_txn(&fx->env);          /* EHLO resets the transaction first */
	}
	assert_int_equal(fx->env.nsymbols, 2);
	assert_int_equal(fx->env.txn_symbols_start, 2);
	assert_true(fx->env.score == 2);
	for (int msg = 0; msg < 2; msg++) {
		chain_txn_begin(&fx->chain);
		chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		assert_int_equal(fx->env.nsymbols, 4);
		assert_true(fx->env.score == 4);
		assert_true(chain_txn_end(&fx->chain, 250, HOOK_EOM, NULL));
		hook_env_reset_txn(&fx->env);          /* after the message */
		assert_int_equal(fx->env.nsymbols, 2);
		assert_string_equal(fx->env.symbols[0].desc, "connect");
		assert_string_equal(fx->env.symbols[1].desc, "helo");
		assert_true(fx->env.score == 2);
	}
	/* a second EHLO (after STARTTLS) replaces the first one's symbols, keeps connect's */
	fakes[1].symbol = "SYM2";
	hook_env_reset_txn(&fx->env);
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	assert_int_equal(fx->env.nsymbols, 2);
	assert_string_equal(fx->env.symbols[0].name, "SYM");
	assert_string_equal(fx->env.symbols[0].desc, "connect");
	assert_string_equal(fx->env.symbols[1].name, "SYM2");
	assert_string_equal(fx->env.symbols[1].desc, "helo");
	assert_int_equal(fx->env.txn_symbols_start, 2);
	assert_true(fx->env.score == 2);
	hook_env_free_outputs(&fx->env);
	fx_stop(fx);
}

/* A session without any transaction still gets its one session outcome. */
static void test_outcome_session_only(void **state)
{
	struct fx *fx = *state;

	fx_start(fx);
	chain_session_end(&fx->chain, 0, HOOK_CLOSE, NULL);
	assert_outcomes(0, 1);
	assert_int_equal(fakes[0].last.code, 0);
	assert_int_equal(fakes[0].last.stage, HOOK_CLOSE);
	fx_stop(fx);
}

/* ------------------------------------------------------------ a refusal at connect */

/* Starts the session with fakes[i] refusing it at connect (REJECT, reason "fake<i>"). */
static void refuse_at_connect(struct fx *fx, int i)
{
	char reason[8];

	snprintf(reason, sizeof(reason), "fake%d", i);
	set_verdict(i, VERDICT_REJECT, 550, reason, 0);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_CONNECT, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_REJECT);
}

/* fake1 refuses the client at connect (postscreen-style: the session goes on to be refused
 * at MAIL). fake2 (a milter: connect and HELO) never saw the connect, so it is asked about
 * nothing later; fake0 (before the refusal) and fake3 (no connect stage) still are. */
static void test_connect_refusal_cuts(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = fakes[2].stages = S_(HOOK_CONNECT) | S_(HOOK_HELO) | S_(HOOK_MAIL);
	fakes[1].stages = S_(HOOK_CONNECT);
	fakes[3].stages = S_(HOOK_HELO);
	refuse_at_connect(fx, 1);
	assert_int_equal(fakes[2].runs, 0);
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 2);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_int_equal(fakes[0].runs, 2);
	assert_int_equal(fakes[2].runs, 0);
	assert_int_equal(fakes[3].runs, 1);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	assert_int_equal(fakes[0].runs, 3);
	assert_int_equal(fakes[2].runs, 0);
	fx_stop(fx);

	/* The same with the refusal an on_error after a timeout. */
	memset(fakes, 0, sizeof(fakes));
	memset(&fx->done, 0, sizeof(fx->done));
	fakes[0].stages = S_(HOOK_CONNECT);
	fakes[0].mode = FAKE_ASYNC;
	fakes[0].timeout_ms = 5000;
	fakes[0].on_error = VERDICT_REJECT;
	fakes[1].stages = S_(HOOK_CONNECT) | S_(HOOK_HELO);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_CONNECT, done_cb, &fx->done);
	chain_on_timeout(&fx->chain);
	assert_int_equal(fx->done.v.action, VERDICT_REJECT);
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	assert_int_equal(fakes[1].runs, 0);
	fx_stop(fx);

	/* A refusal at a later stage cuts nothing off. */
	memset(fakes, 0, sizeof(fakes));
	memset(&fx->done, 0, sizeof(fx->done));
	fakes[0].stages = S_(HOOK_HELO);
	fakes[1].stages = S_(HOOK_CONNECT) | S_(HOOK_HELO) | S_(HOOK_MAIL);
	set_verdict(0, VERDICT_REJECT, 550, "fake0", 0);
	fx_start(fx);
	chain_run(&fx->chain, HOOK_CONNECT, done_cb, &fx->done);
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_REJECT);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	assert_int_equal(fakes[1].runs, 2);
	fx_stop(fx);
}

/* hook_module.prefetch: each entry that will be asked at the stage hears it first, in
 * chain order, before the first one runs (so its slow lookup overlaps the entries before
 * it); not an entry without the stage, one without the callback (fake5) or one cut off at
 * connect; chain_run_cut tells the cut-off entries it asks. */
static void test_prefetch(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = fakes[2].stages = fakes[5].stages = S_(HOOK_CONNECT) | S_(HOOK_MAIL);
	fakes[1].stages = S_(HOOK_MAIL);
	fakes[3].stages = S_(HOOK_CONNECT);
	fakes[0].mode = FAKE_ASYNC;
	fx_start(fx);
	chain_run(&fx->chain, HOOK_CONNECT, done_cb, &fx->done);
	assert_int_equal(fakes[0].runs, 1);
	assert_int_equal(fakes[2].runs, 0);          /* waits for fake0 */
	assert_int_equal(fakes[0].prefetches, 1);
	assert_int_equal(fakes[2].prefetches, 1);    /* heard before fake0 answered */
	assert_int_equal(fakes[3].prefetches, 1);
	assert_int_equal(fakes[1].prefetches, 0);    /* no connect stage */
	assert_int_equal(fakes[4].prefetches, 0);
	assert_int_equal(fakes[2].prefetch_stage, HOOK_CONNECT);
	assert_int_equal(fakes[0].runs_at_prefetch + fakes[2].runs_at_prefetch +
	    fakes[3].runs_at_prefetch, 0);            /* before any run */
	assert_int_equal(nporder, 3);                 /* in chain order */
	assert_true(porder[0] == fakes[0].slot && porder[0] < porder[1] && porder[1] < porder[2]);
	assert_int_equal(norder, 1);                  /* then the first run */
	hook_call_done(fakes[0].pending, NULL);
	assert_int_equal(fx->done.calls, 1);
	assert_int_equal(fakes[2].runs + fakes[3].runs + fakes[5].runs, 3);
	fx_stop(fx);

	/* fake2 refuses the client at connect: fake3 is cut off, then asked after AUTH */
	memset(fakes, 0, sizeof(fakes));
	memset(&fx->done, 0, sizeof(fx->done));
	fakes[0].stages = fakes[2].stages = fakes[3].stages = S_(HOOK_CONNECT) | S_(HOOK_MAIL);
	set_verdict(2, VERDICT_REJECT, 550, "fake2", 0);
	refuse_at_connect(fx, 2);
	assert_int_equal(fakes[3].prefetches, 1);    /* heard: the refusal came later */
	assert_int_equal(fakes[3].runs, 0);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	assert_int_equal(fakes[3].prefetches, 1);    /* cut off: not told of MAIL */
	assert_int_equal(fakes[0].prefetches, 2);
	chain_run_cut(&fx->chain, done_cb, &fx->done);
	assert_int_equal(fakes[3].prefetches, 2);
	assert_int_equal(fakes[3].prefetch_stage, HOOK_CONNECT);
	assert_int_equal(fakes[3].runs, 1);
	assert_int_equal(fakes[0].prefetches, 2);    /* not asked again */
	fx_stop(fx);
}

/* The refusal is lifted (AUTH): chain_run_cut asks the entries the refusal cut off that
 * take part in the connect stage (fake2, async like a milter; fake4) and no others (fake0
 * before the refusal, fake1 the refuser, fake3 without a connect stage); afterwards they
 * take part in the later stages. One that refuses now is the verdict and cuts again. */
static void test_connect_cut_lifted(void **state)
{
	struct fx *fx = *state;

	fakes[0].stages = fakes[2].stages = fakes[4].stages = S_(HOOK_CONNECT) | S_(HOOK_HELO) | S_(HOOK_MAIL);
	fakes[1].stages = S_(HOOK_CONNECT);
	fakes[3].stages = S_(HOOK_MAIL);
	fakes[2].mode = FAKE_ASYNC;
	fakes[2].timeout_ms = 5000;
	refuse_at_connect(fx, 1);
	assert_int_equal(fakes[2].runs, 0);
	chain_run(&fx->chain, HOOK_HELO, done_cb, &fx->done);
	assert_int_equal(fakes[2].runs + fakes[4].runs, 0);

	chain_run_cut(&fx->chain, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 2);          /* async: not answered yet */
	assert_int_equal(fakes[2].runs, 1);
	assert_int_equal(fakes[2].stage, HOOK_CONNECT);
	hook_call_done(fakes[2].pending, NULL);
	assert_int_equal(fx->done.calls, 3);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_int_equal(fakes[4].runs, 1);
	assert_int_equal(fakes[4].stage, HOOK_CONNECT);
	assert_int_equal(fakes[0].runs, 2);           /* connect, HELO: not asked again */
	assert_int_equal(fakes[1].runs, 1);
	assert_int_equal(fakes[3].runs, 0);

	fakes[2].mode = FAKE_SYNC;
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	assert_int_equal(fakes[2].runs, 2);
	assert_int_equal(fakes[2].stage, HOOK_MAIL);
	assert_int_equal(fakes[4].runs, 2);
	assert_int_equal(fakes[3].runs, 1);
	/* no cut left: another call answers at once, asking nobody */
	chain_run_cut(&fx->chain, done_cb, &fx->done);
	assert_int_equal(fx->done.calls, 5);
	assert_int_equal(fx->done.v.action, VERDICT_CONTINUE);
	assert_int_equal(fakes[2].runs + fakes[4].runs, 4);
	fx_stop(fx);

	/* A cut-off entry that refuses when asked: its refusal, and the ones after it stay cut. */
	memset(fakes, 0, sizeof(fakes));
	memset(&fx->done, 0, sizeof(fx->done));
	fakes[0].stages = S_(HOOK_CONNECT);
	fakes[1].stages = fakes[2].stages = S_(HOOK_CONNECT) | S_(HOOK_MAIL);
	set_verdict(1, VERDICT_TEMPFAIL, 451, "fake1", 0);
	refuse_at_connect(fx, 0);
	chain_run_cut(&fx->chain, done_cb, &fx->done);
	assert_int_equal(fx->done.v.action, VERDICT_TEMPFAIL);
	assert_string_equal(fx->done.v.reason, "fake1");
	assert_int_equal(fakes[1].runs, 1);
	assert_int_equal(fakes[2].runs, 0);
	chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
	assert_int_equal(fakes[1].runs, 2);
	assert_int_equal(fakes[2].runs, 0);
	fx_stop(fx);
}

/* ------------------------------------------------------------ bypass (proxy/bypass.c) */

/* `bypass:` leaves out the entries a stage's recipients are all covered for: at RCPT the
 * candidate alone, at DATA and EOM every accepted recipient; a skipped entry is neither
 * prefetched nor run, and a mixed message runs everything. Entries by name and stages, as
 * the chain builds them: greylist, two clamd, spamd, rules. */
static void test_bypass_entries(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass:\n"
	    "  - { recipients: [nofilter.example], checks: [greylist, clamd, rules] }\n"
	    "  - { recipients: [abuse], checks: [rules, spamd] }\n";
	static const char *const names[5] = { "greylist", "clamd", "clamd", "spamd", "rules" };
	static const struct {
		const char *label;
		enum hook_stage st;
		const char *rcpts[3];   /* at RCPT: rcpts[0] is the candidate */
		int want_runs[5];
	} rows[] = {
		{ "RCPT: a bypassed candidate is not greylisted", HOOK_RCPT, { "u@nofilter.example" }, { 0, 0, 0, 0, 0 } },
		{ "RCPT: another candidate is", HOOK_RCPT, { "u@example.org" }, { 1, 0, 0, 0, 0 } },
		{ "EOM: every recipient bypassed: both clamd and rules skipped",
		  HOOK_EOM, { "u@nofilter.example", "v@NOFILTER.example." }, { 0, 0, 0, 1, 0 } },
		{ "EOM: a mixed message runs everything", HOOK_EOM, { "u@nofilter.example", "u@example.org" }, { 0, 1, 1, 1, 1 } },
		{ "EOM: abuse@ alone skips spamd and rules", HOOK_EOM, { "abuse@example.org" }, { 0, 1, 1, 0, 0 } },
		{ "EOM: abuse@ and a bypassed domain share rules only",
		  HOOK_EOM, { "abuse@example.org", "u@nofilter.example" }, { 0, 1, 1, 1, 0 } },
		{ "DATA (greylist's defer_at: data): every recipient bypassed", HOOK_DATA, { "u@nofilter.example" }, { 0, 0, 0, 0, 0 } },
		{ "DATA: a mixed message is greylisted", HOOK_DATA, { "u@nofilter.example", "abuse@nofilter.example", "u@example.org" },
		  { 1, 0, 0, 0, 0 } },
		{ "EOM: no recipient: nothing skipped", HOOK_EOM, { NULL }, { 0, 1, 1, 1, 1 } },
	};
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;
	struct chain_entry entries[5];

	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	fx->env.cfg = cfg;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct rcpt r[3];
		size_t n = 0;

		memset(fakes, 0, sizeof(fakes));
		memset(&fx->done, 0, sizeof(fx->done));
		memset(r, 0, sizeof(r));
		for (int k = 0; k < 5; k++) {
			/* the stages of the real modules: greylist at RCPT (and DATA), the rest at EOM */
			unsigned st = k == 0 ? S_(HOOK_RCPT) | S_(HOOK_DATA) : S_(HOOK_EOM);

			fakes[k].stages = st;
			fakes[k].null_verdict = true;
			entries[k] = (struct chain_entry){ &fake_module_0, &fakes[k], st, names[k] };
		}
		fx->mods = (struct chain_modules){ entries, 5, S_(HOOK_RCPT) | S_(HOOK_DATA) | S_(HOOK_EOM) };
		while (n < 3 && rows[i].rcpts[n]) {
			r[n].addr = (char *)rows[i].rcpts[n];
			n++;
		}
		fx->env.rcpts = rows[i].st == HOOK_RCPT ? NULL : r;
		fx->env.nrcpts = rows[i].st == HOOK_RCPT ? 0 : n;
		fx->env.cur_rcpt = rows[i].st == HOOK_RCPT ? rows[i].rcpts[0] : NULL;
		chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
		chain_run(&fx->chain, rows[i].st, done_cb, &fx->done);
		assert_int_equal(fx->done.calls, 1);
		for (int k = 0; k < 5; k++) {
			if (fakes[k].runs != rows[i].want_runs[k])
				fail_msg("row \"%s\": %s ran %d times, want %d", rows[i].label, names[k],
				    fakes[k].runs, rows[i].want_runs[k]);
			if (fakes[k].prefetches != rows[i].want_runs[k])
				fail_msg("row \"%s\": %s prefetched %d times, want %d", rows[i].label, names[k],
				    fakes[k].prefetches, rows[i].want_runs[k]);
			/* an entry of the stage not run was bypassed: it heard so, once */
			int want_skips = (fakes[k].stages & S_(rows[i].st)) && !rows[i].want_runs[k];
			if (fakes[k].skips != want_skips || (want_skips && fakes[k].skip_stage != rows[i].st))
				fail_msg("row \"%s\": %s heard skipped %d times, want %d", rows[i].label, names[k],
				    fakes[k].skips, want_skips);
		}
		chain_release(&fx->chain);
	}
	fx->env.rcpts = NULL;
	fx->env.nrcpts = 0;
	fx->env.cur_rcpt = NULL;
	fx->env.cfg = NULL;
	config_free(cfg);
}

/* No limit on the entries bypass can leave out (session 27 had a 64-bit mask: entries from
 * the 65th on always ran): 70 entries, the clamd ones at 3, 64, 65 and 69 skipped at EOM for
 * a bypassed recipient, the spamd ones run; for a mixed message every one runs. */
#define MANY 70
static void test_bypass_many_entries(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass: [{ recipients: [nofilter.example], checks: [clamd] }]\n";
	static struct fake_mod many[MANY];
	static struct chain_entry entries[MANY];
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;
	struct rcpt r[2];

	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	fx->env.cfg = cfg;
	memset(r, 0, sizeof(r));
	r[0].addr = (char *)"u@nofilter.example";
	r[1].addr = (char *)"u@example.org";
	for (size_t nr = 1; nr <= 2; nr++) {
		memset(many, 0, sizeof(many));
		for (int k = 0; k < MANY; k++) {
			bool clamd = k == 3 || k == 64 || k == 65 || k == MANY - 1;

			many[k].stages = S_(HOOK_EOM);
			many[k].null_verdict = true;
			entries[k] = (struct chain_entry){ &fake_module_0, &many[k], S_(HOOK_EOM), clamd ? "clamd" : "spamd" };
		}
		fx->mods = (struct chain_modules){ entries, MANY, S_(HOOK_EOM) };
		fx->env.rcpts = r;
		fx->env.nrcpts = nr;
		chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		for (int k = 0; k < MANY; k++) {
			int want = nr == 1 && strcmp(entries[k].name, "clamd") == 0 ? 0 : 1;

			if (many[k].runs != want || many[k].skips != 1 - want)
				fail_msg("%zu recipient(s): entry %d (%s) ran %d times, skipped %d, want %d run(s)",
				    nr, k, entries[k].name, many[k].runs, many[k].skips, want);
		}
		chain_release(&fx->chain);
	}
	fx->env.rcpts = NULL;
	fx->env.nrcpts = 0;
	fx->env.cfg = NULL;
	config_free(cfg);
}

/* on_error: tag tags the message once per failing entry and transaction, whatever the
 * entry's index (session 28 found a 64-bit mask: the 65th entry on tagged at every stage it
 * failed). 70 entries, each failing at MAIL and RCPT with on_error: tag: 70 headers, one each;
 * the next transaction tags again. */
static void test_tag_many_entries(void **state)
{
	static struct fake_mod many[MANY];
	static struct chain_entry entries[MANY];
	struct fx *fx = *state;
	unsigned st = S_(HOOK_MAIL) | S_(HOOK_RCPT);

	memset(many, 0, sizeof(many));
	for (int k = 0; k < MANY; k++) {
		many[k].stages = st;
		many[k].on_error = VERDICT_CONTINUE;
		many[k].tag = true;
		verdict_set(&many[k].v, VERDICT_ERROR, 0, "down", NULL);
		entries[k] = (struct chain_entry){ &fake_module_0, &many[k], st, "fake0" };
	}
	fx->mods = (struct chain_modules){ entries, MANY, st };
	chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
	for (int txn = 1; txn <= 2; txn++) {
		chain_run(&fx->chain, HOOK_MAIL, done_cb, &fx->done);
		chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
		chain_run(&fx->chain, HOOK_RCPT, done_cb, &fx->done);
		for (int k = 0; k < MANY; k++)
			if (many[k].runs != 3 * txn)
				fail_msg("transaction %d: entry %d ran %d times", txn, k, many[k].runs);
		if (fx->env.nhdr_edits != MANY)
			fail_msg("transaction %d: %zu X-Mxgate-Filter-Error headers for %d failing entries",
			    txn, fx->env.nhdr_edits, MANY);
		hook_env_reset_txn(&fx->env);
	}
	chain_release(&fx->chain);
}

/* event=bypass checks=: the list is bounded (128 octets) and a cut says so with "..."
 * (session 28: cut silently, the log named fewer checks than were skipped). */
static void test_bypass_names_cut(void **state)
{
	char n40[41], n200[201];
	struct chain_names l;

	(void)state;
	memset(n40, 'a', 40);
	n40[40] = '\0';
	memset(n200, 'b', 200);
	n200[200] = '\0';
	/* a few short names: as they are */
	l = (struct chain_names){ .len = 0 };
	chain_names_add(&l, "clamd");
	chain_names_add(&l, "rules");
	assert_string_equal(l.v, "clamd,rules");
	assert_false(l.cut);
	/* three of 40 fit (122 octets and room for ",..."), the fourth is "..." and the fifth,
	 * short as it is, is not added after the cut */
	l = (struct chain_names){ .len = 0 };
	for (int i = 0; i < 4; i++)
		chain_names_add(&l, n40);
	chain_names_add(&l, "x");
	assert_true(l.cut);
	assert_int_equal(strlen(l.v), 3 * 41 - 1 + 4);
	assert_int_equal(l.len, strlen(l.v));
	assert_string_equal(l.v + strlen(l.v) - 4, ",...");
	assert_int_equal(l.v[strlen(l.v) - 5], 'a');
	/* a first name longer than the buffer: "..." alone */
	l = (struct chain_names){ .len = 0 };
	chain_names_add(&l, n200);
	assert_string_equal(l.v, "...");
	/* a name that fits only without the room for ",...": cut before it */
	l = (struct chain_names){ .len = 0 };
	n200[CHAIN_NAMES_MAX - 4] = '\0';   /* 124 octets: 124 + 4 is not below 128 */
	chain_names_add(&l, n200);
	assert_string_equal(l.v, "...");
	n200[CHAIN_NAMES_MAX - 5] = '\0';   /* 123: fits */
	l = (struct chain_names){ .len = 0 };
	chain_names_add(&l, n200);
	assert_false(l.cut);
	assert_int_equal(strlen(l.v), 123);
}

/* The event=bypass line of a stage that skips more names than fit: it ends in ",..." (on
 * session 28's code the fourth name was cut in the middle, silently). Five entries of
 * 40-octet names, every one bypassed for every recipient; the log goes to a file here. */
static void test_bypass_log_cut(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass: [{ recipients: [nofilter.example], checks: [clamd] }]\n";
	static char names[5][41];
	static char *checks[5];
	static struct fake_mod five[5];
	static struct chain_entry entries[5];
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;
	struct bypass_entry be;
	struct cfg_list saved;
	struct rcpt r = { .addr = (char *)"u@example.org" };
	char path[] = "/tmp/test_chain_log.XXXXXX", line[1024];
	const char *want = NULL;
	int fd = mkstemp(path), err2 = dup(2);   /* log_open_file takes stderr too: given back */
	FILE *f;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	memset(&be, 0, sizeof(be));
	for (int k = 0; k < 5; k++) {
		memset(names[k], 'a' + k, 40);
		names[k][40] = '\0';
		checks[k] = names[k];
		five[k] = (struct fake_mod){ .stages = S_(HOOK_EOM), .null_verdict = true };
		entries[k] = (struct chain_entry){ &fake_module_0, &five[k], S_(HOOK_EOM), names[k] };
	}
	be.checks = (struct cfg_strlist){ checks, 5 };   /* no recipients: every recipient */
	saved = cfg->bypass;
	cfg->bypass = (struct cfg_list){ &be, 1 };
	fx->env.cfg = cfg;
	fx->env.rcpts = &r;
	fx->env.nrcpts = 1;
	fx->mods = (struct chain_modules){ entries, 5, S_(HOOK_EOM) };
	assert_int_equal(log_open_file(path, -1, -1), 0);
	log_set_level(LOG_LVL_INFO);
	chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
	chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
	for (int k = 0; k < 5; k++)
		assert_int_equal(five[k].skips, 1);
	chain_release(&fx->chain);
	log_set_level(LOG_LVL_ERROR);
	dup2(err2, 2);
	close(err2);
	assert_non_null(f = fopen(path, "r"));
	while (want == NULL && fgets(line, sizeof(line), f))
		want = strstr(line, "event=bypass stage=eom checks=");
	fclose(f);
	unlink(path);
	if (want == NULL)
		fail_msg("no event=bypass line");
	/* three names (3 * 41 - 1 octets) and ",...", then the recipients */
	if (strstr(want, ",... rcpts=1") == NULL || strstr(want, names[2]) == NULL || strstr(want, "ddd") != NULL)
		fail_msg("the names are cut without saying so: %s", want);
	cfg->bypass = saved;
	fx->env.rcpts = NULL;
	fx->env.nrcpts = 0;
	fx->env.cfg = NULL;
	config_free(cfg);
}

/* bypass_mixed: split (chain_bypass_splits): a recipient joins a transaction only when every
 * content check (a plugin entry, the scorer; at DATA, EOM) is bypassed for it as for the
 * first recipient; greylisting splits nothing (at RCPT it judges each recipient, at DATA it
 * only defers: session 29's first run split greylist-only bypasses, whose DATA stage is
 * there for the null sender); bypass_mixed: check never splits. */
static void test_bypass_splits(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass:\n"
	    "  - { recipients: [nofilter.example], checks: [greylist, clamd, rules] }\n"
	    "  - { recipients: [abuse], checks: [rules] }\n"
	    "  - { recipients: [gl.example], checks: [greylist] }\n"
	    "  - { recipients: [corp.example], senders: [partner.example], checks: [rules] }\n";
	static const char *const names[3] = { "greylist", "clamd", "rules" };
	static const struct {
		const char *label, *sender, *first, *addr;
		bool want;
	} rows[] = {
		{ "no recipient yet", "a@b.example", NULL, "u@nofilter.example", false },
		{ "two ordinary recipients", "a@b.example", "u@example.org", "v@example.org", false },
		{ "two covered alike", "a@b.example", "u@nofilter.example", "v@NOFILTER.example", false },
		{ "covered, then ordinary", "a@b.example", "u@nofilter.example", "b@example.org", true },
		{ "ordinary, then covered", "a@b.example", "b@example.org", "u@nofilter.example", true },
		{ "abuse@ (rules) and a customer (clamd too)", "a@b.example", "abuse@example.org", "u@nofilter.example", true },
		{ "abuse@ of a customer: both entries, as the customer", "a@b.example", "abuse@nofilter.example",
		  "u@nofilter.example", false },
		{ "greylist (RCPT, and DATA for the null sender) splits nothing", "a@b.example", "u@gl.example",
		  "b@example.org", false },
		{ "nor for the null sender", "", "u@gl.example", "b@example.org", false },
		{ "a sender entry: from the partner, corp.example is covered", "ap@partner.example", "u@corp.example",
		  "b@example.org", true },
		{ "from another sender it is not", "x@other.example", "u@corp.example", "b@example.org", false },
		{ "the null sender matches no sender entry", "", "u@corp.example", "b@example.org", false },
	};
	static struct fake_mod three[3];
	static struct chain_entry entries[3];
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;

	for (int k = 0; k < 3; k++) {
		unsigned st = k == 0 ? S_(HOOK_RCPT) : S_(HOOK_EOM);

		/* as the chain has them: greylist a filter, clamd a plugin entry, rules the scorer;
		 * greylist at DATA too (its null_sender: data) */
		const struct hook_module *mod = k == 0 ? &fake_module_0 : k == 1 ? &fake_plugin_module : &fake_module_6;

		if (k == 0)
			st |= S_(HOOK_DATA);
		three[k] = (struct fake_mod){ .stages = st, .null_verdict = true };
		entries[k] = (struct chain_entry){ mod, &three[k], st, names[k] };
	}
	fx->mods = (struct chain_modules){ entries, 3, S_(HOOK_RCPT) | S_(HOOK_EOM) };
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	fx->env.cfg = cfg;
	chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (chain_bypass_splits(&fx->chain, rows[i].sender, rows[i].first, rows[i].addr) != rows[i].want)
			fail_msg("row \"%s\": want %s", rows[i].label, rows[i].want ? "a split" : "no split");
	/* bypass_mixed: check: one transaction whatever the recipients */
	cfg->bypass_mixed = BYPASS_MIXED_CHECK;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (chain_bypass_splits(&fx->chain, rows[i].sender, rows[i].first, rows[i].addr))
			fail_msg("row \"%s\": split under bypass_mixed: check", rows[i].label);
	chain_release(&fx->chain);
	fx->env.cfg = NULL;
	config_free(cfg);
	/* the key as written */
	static const char check[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass: [{ recipients: [nofilter.example], checks: [rules] }]\nbypass_mixed: check\n";
	assert_int_equal(config_load_string("t.yaml", check, strlen(check), &cfg, NULL), 0);
	assert_int_equal(cfg->bypass_mixed, BYPASS_MIXED_CHECK);
	config_free(cfg);
}

/* A content check that the connect stage's refusal cut off (connect_cut: exempt_recipients
 * holds the refusal, the entries after it never saw the session) judges no message: its
 * bypass splits nothing (session 29's split counted it). */
static void test_bypass_split_cut(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass: [{ recipients: [nofilter.example], checks: [milter] }]\n";
	static struct fake_mod one;
	static struct chain_entry entry;
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;
	const unsigned st = S_(HOOK_CONNECT) | S_(HOOK_EOM);

	one = (struct fake_mod){ .stages = st, .null_verdict = true };
	entry = (struct chain_entry){ &fake_plugin_module, &one, st, "milter" };
	fx->mods = (struct chain_modules){ &entry, 1, st };
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	fx->env.cfg = cfg;
	chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
	assert_true(chain_bypass_splits(&fx->chain, "a@b.example", "u@nofilter.example", "b@example.org"));
	chain_cut_connect(&fx->chain);
	if (chain_bypass_splits(&fx->chain, "a@b.example", "u@nofilter.example", "b@example.org"))
		fail_msg("a milter cut off at connect still splits the transaction");
	chain_release(&fx->chain);
	fx->env.cfg = NULL;
	config_free(cfg);
}

/* event=bypass checks=: a plugin's name: is the operator's text, written as any value from
 * outside: a name with a blank (or a quote) quotes the list, so does one with '=' or ','
 * (session 29: checks=my plugin,a=b rcpts=1, which no key=value reader parses back). */
static void test_bypass_log_quoted(void **state)
{
	static const char text[] =
	    "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"
	    "bypass: [{ recipients: [nofilter.example], checks: [clamd] }]\n";
	static const struct {
		const char *a, *b, *want;
	} rows[] = {
		{ "clamd", "mine", " checks=clamd,mine rcpts=1" },
		{ "my plugin", "clamd", " checks=\"my plugin,clamd\" rcpts=1" },
		{ "clamd", "a=b", " checks=\"clamd,a=b\" rcpts=1" },
		{ "x,y", "clamd", " checks=\"x,y,clamd\" rcpts=1" },
		{ "say \"hi\"", "clamd", " checks=\"say \\\"hi\\\",clamd\" rcpts=1" },
	};
	static char *checks[2];
	static struct fake_mod two[2];
	static struct chain_entry entries[2];
	struct fx *fx = *state;
	struct mx_config *cfg = NULL;
	struct bypass_entry be;
	struct cfg_list saved;
	struct rcpt r = { .addr = (char *)"u@example.org" };
	int err2 = dup(2);

	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, NULL), 0);
	saved = cfg->bypass;
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
		char path[] = "/tmp/test_chain_log.XXXXXX", line[1024];
		const char *got = NULL;
		int fd = mkstemp(path);
		FILE *f;

		assert_true(fd >= 0);
		close(fd);
		memset(&be, 0, sizeof(be));
		checks[0] = (char *)rows[k].a;
		checks[1] = (char *)rows[k].b;
		for (int j = 0; j < 2; j++) {
			two[j] = (struct fake_mod){ .stages = S_(HOOK_EOM), .null_verdict = true };
			entries[j] = (struct chain_entry){ &fake_module_0, &two[j], S_(HOOK_EOM), checks[j] };
		}
		be.checks = (struct cfg_strlist){ checks, 2 };   /* no recipients: every recipient */
		cfg->bypass = (struct cfg_list){ &be, 1 };
		fx->env.cfg = cfg;
		fx->env.rcpts = &r;
		fx->env.nrcpts = 1;
		fx->mods = (struct chain_modules){ entries, 2, S_(HOOK_EOM) };
		assert_int_equal(log_open_file(path, -1, -1), 0);
		log_set_level(LOG_LVL_INFO);
		chain_init(&fx->chain, &fx->mods, &fx->env, &fx->timer);
		chain_run(&fx->chain, HOOK_EOM, done_cb, &fx->done);
		chain_release(&fx->chain);
		log_set_level(LOG_LVL_ERROR);
		dup2(err2, 2);
		assert_non_null(f = fopen(path, "r"));
		while (got == NULL && fgets(line, sizeof(line), f))
			got = strstr(line, "event=bypass stage=eom");
		fclose(f);
		unlink(path);
		if (got == NULL || strstr(got, rows[k].want) == NULL)
			fail_msg("row %zu: want \"%s\" in %s", k, rows[k].want, got ? got : "(no line)");
	}
	close(err2);
	cfg->bypass = saved;
	fx->env.rcpts = NULL;
	fx->env.nrcpts = 0;
	fx->env.cfg = NULL;
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_verdict_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_from_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_real_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_stopped_on_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_outstanding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_with_orphans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_completion_in_session_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules_single, setup, teardown),
		cmocka_unit_test_setup_teardown(test_double_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_before_eom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_stage_words, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tag_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tag_value_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plugin_timeout_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_no_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_verdict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_symbols_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outcome_session_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refusal_cuts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_cut_lifted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bypass_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bypass_many_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tag_many_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bypass_splits, setup, teardown),
		cmocka_unit_test(test_bypass_names_cut),
		cmocka_unit_test_setup_teardown(test_bypass_log_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bypass_split_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bypass_log_quoted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
