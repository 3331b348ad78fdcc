/* chain.c — the chain entries of one stage for one session, and the notifications (a
 * message's header block, outcomes). */
#include "chain.h"
#include "bypass.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "ownfields.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hook_call {
	struct chain *chain;       /* NULL once abandoned (timeout, release) */
	struct hook_call *next;    /* on chain->orphans or chain->spent */
	struct hook_env *env;
	enum hook_stage stage;
	size_t entry;              /* index in chain->mods->v: the module's slot */
	uint64_t timeout_ms;
	bool completed;
};

enum hook_stage hook_call_stage(const struct hook_call *c) { return c->stage; }
struct hook_env *hook_call_env(const struct hook_call *c) { return c->env; }

/* ---- entries ------------------------------------------------------------------------ */

/* Appends an entry for a configured module (ws != NULL). */
static void chain_modules_add(struct chain_modules *m, const struct hook_module *mod, void *ws,
    const char *name)
{
	struct chain_entry *e = &m->v[m->n++];

	e->mod = mod;
	e->wstate = ws;
	e->name = name ? name : mod->name;
	e->stages = mod->stages ? mod->stages(ws) : 0;
	m->any_stages |= e->stages;
}

/* A module configured but not set up: logged, and named in m->failed (the worker's
 * generation then says so: /readyz, mxgatectl status). */
static void chain_modules_failed(struct chain_modules *m, const char *name, long instance)
{
	size_t len = strlen(m->failed);

	if (instance < 0)
		log_event(LOG_LVL_ERROR, NULL, "event=module_init_failed module=%s", name);
	else
		log_event(LOG_LVL_ERROR, NULL, "event=module_init_failed module=%s instance=%ld",
		    name, instance);
	/* a name twice (several `plugins:` entries) is said once by shared_gen_failed */
	snprintf(m->failed + len, sizeof(m->failed) - len, "%s%s", len ? "," : "", name);
}

/* Tests only: MXGATE_TEST_MODULE_INIT_FAIL=NAME makes the registry module NAME's
 * worker_init fail, as an out-of-memory or a thread that cannot start would (nothing a
 * test can cause otherwise since the LMDB stores open at the generation: main.c):
 * test_module_init_failed.py. Unset in service. */
static bool chain_test_fails(const char *name)
{
	const char *f = getenv("MXGATE_TEST_MODULE_INIT_FAIL");

	return f != NULL && strcmp(f, name) == 0;
}

/* The registry modules with (scorers) or without the HOOK_MODULE_SCORER flag, in order. */
static void chain_modules_add_registry(struct chain_modules *m, const struct mx_config *cfg,
    uv_loop_t *loop, int worker, bool scorers)
{
	for (size_t i = 0; i < hook_nmodules; i++) {
		const struct hook_module *mod = hook_modules[i];
		void *ws = NULL;

		if (((mod->flags & HOOK_MODULE_SCORER) != 0) != scorers)
			continue;
		if (mod->worker_init && mod->worker_init(cfg, loop, worker, &ws) != 0) {
			chain_modules_failed(m, mod->name, -1);
			continue;
		}
		if (ws != NULL && chain_test_fails(mod->name)) {
			if (mod->worker_free)
				mod->worker_free(ws);
			chain_modules_failed(m, mod->name, -1);
			continue;
		}
		if (ws != NULL)
			chain_modules_add(m, mod, ws, NULL);
	}
}

int chain_modules_init(struct chain_modules *m, const struct mx_config *cfg, uv_loop_t *loop, int worker)
{
	const struct hook_instances *pl = &hook_plugin_entries;
	size_t nplug = pl->count ? pl->count(cfg) : 0;

	memset(m, 0, sizeof(*m));
	if (hook_nmodules + nplug == 0)
		return 0;
	m->v = calloc(hook_nmodules + nplug, sizeof(*m->v));
	if (m->v == NULL)
		return -1;
	/* filters, then the plugin entries in config order, then the scorer */
	chain_modules_add_registry(m, cfg, loop, worker, false);
	for (size_t i = 0; i < nplug; i++) {
		void *ws = NULL;
		const char *name = NULL;

		if (pl->instance_init(cfg, i, loop, worker, &ws, &name) != 0) {
			chain_modules_failed(m, pl->module->name, (long)i);
			continue;
		}
		if (ws != NULL)
			chain_modules_add(m, pl->module, ws, name);
	}
	chain_modules_add_registry(m, cfg, loop, worker, true);
	return 0;
}

void chain_modules_free(struct chain_modules *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].mod->worker_free)
			m->v[i].mod->worker_free(m->v[i].wstate);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

void chain_modules_single(struct chain_modules *m, struct chain_entry *entry,
    const struct hook_module *mod, void *ws)
{
	memset(m, 0, sizeof(*m));
	m->v = entry;
	chain_modules_add(m, mod, ws, NULL);
}

/* ---- one stage ---------------------------------------------------------------------- */

void chain_init(struct chain *c, const struct chain_modules *mods, struct hook_env *env, uv_timer_t *timer)
{
	memset(c, 0, sizeof(*c));
	c->mods = mods;
	c->env = env;
	c->timer = timer;
	c->connect_cut = SIZE_MAX;
	env->module_ctx = NULL;
	if (mods && mods->n) {
		env->module_ctx = calloc(mods->n, sizeof(*env->module_ctx));
		if (env->module_ctx == NULL)
			abort();	/* out of memory at accept: nothing sane to do */
	}
}

bool chain_wants(const struct chain_modules *m, enum hook_stage st)
{
	return m && (m->any_stages & (1u << st)) != 0;
}

bool chain_settled(const struct chain *c, enum hook_stage st)
{
	if (!chain_wants(c->mods, st))
		return true;
	for (size_t i = 0; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if ((e->stages & (1u << st)) == 0)
			continue;
		if (e->mod->settled == NULL || !e->mod->settled(e->wstate, (int)i, c->env, st))
			return false;
	}
	return true;
}

static void chain_free_calls(struct hook_call **list)
{
	while (*list) {
		struct hook_call *n = (*list)->next;

		free(*list);
		*list = n;
	}
}

#define CHAIN_SPARE_MAX 8

/* The completed calls of list go to c's spares (the rest is freed): a call is never used
 * by its module after it completed (hook_call_done), so it may serve the next step. */
static void chain_recycle_calls(struct chain *c, struct hook_call **list)
{
	while (*list) {
		struct hook_call *n = (*list)->next;

		if (c->nspare < CHAIN_SPARE_MAX) {
			(*list)->next = c->spare;
			c->spare = *list;
			c->nspare++;
		} else {
			free(*list);
		}
		*list = n;
	}
}

static struct hook_call *chain_call_new(struct chain *c)
{
	struct hook_call *call = c->spare;

	if (call != NULL) {
		c->spare = call->next;
		c->nspare--;
		memset(call, 0, sizeof(*call));
		return call;
	}
	call = calloc(1, sizeof(*call));
	if (call == NULL)
		abort();
	return call;
}

static void chain_step(struct chain *c);

static void chain_drop_pending(struct chain *c)
{
	free(c->txn_pending);
	c->txn_pending = NULL;
}

static void chain_bypass_added(struct chain *c);

static void chain_finish(struct chain *c)
{
	c->running = false;
	if (c->stage == HOOK_EOM)
		chain_bypass_added(c);
	/* What a stage outside a transaction (connect, HELO) added belongs to the session: the
	 * transaction resets (hook_env_reset_txn at EHLO, MAIL, RSET, after a message) keep it,
	 * so the rules engine sums it and reputation can lift it at end of data. */
	if (!c->txn_open && c->stage < HOOK_MAIL && c->env != NULL)
		c->env->txn_symbols_start = c->env->nsymbols;
	c->done(c->arg, &c->result);
}

/* Takes v as the stage's result, keeping the longest tarpit delay seen so far. */
static void chain_set_result(struct chain *c, const struct verdict *v)
{
	uint32_t delay = c->result.delay_ms;

	c->result = *v;
	if (delay > c->result.delay_ms)
		c->result.delay_ms = delay;
}

/* Folds one verdict (NULL = continue; never ERROR) into the stage's result. Returns true
 * when the stage is decided. */
static bool chain_apply(struct chain *c, const struct verdict *v)
{
	if (v == NULL)
		return false;
	switch (v->action) {
	case VERDICT_CONTINUE:
		if (v->delay_ms > c->result.delay_ms)
			c->result.delay_ms = v->delay_ms;
		return false;
	case VERDICT_DISCARD:
	case VERDICT_QUARANTINE:
		if (c->stage == HOOK_EOM)
			break;
		/* Decided before the end of data: kept for EOM (the first one counts); the stage
		 * itself ends as an ACCEPT. */
		if (c->txn_pending == NULL) {
			c->txn_pending = malloc(sizeof(*c->txn_pending));
			if (c->txn_pending == NULL)
				abort();
			*c->txn_pending = *v;
		}
		chain_set_result(c, v);
		c->result.action = VERDICT_ACCEPT;
		c->accepted = true;
		return false;
	case VERDICT_ACCEPT:
		chain_set_result(c, v);
		c->accepted = true;     /* only scorers still run */
		return false;
	default:
		break;
	}
	chain_set_result(c, v);
	return true;
}

static const char *chain_on_error_name(enum verdict_action a)
{
	return a == VERDICT_TEMPFAIL ? "tempfail" : a == VERDICT_REJECT ? "reject" : "accept";
}

#define CHAIN_TAG_MAX 256               /* the value's octets, its NUL included */

/* True when s can stand unquoted in the tag's value: printable ASCII other than a blank and
 * the octets that give the field its structure (`;` between the parts, `=` in a parameter,
 * a quoted-string's `"` and `\`, a comment's parentheses, a list's comma). A colon may
 * stand (milter-unreachable:ECONNREFUSED). Other octets are written as '?' anyway. */
static bool chain_tag_is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s == ' ' || strchr(";=\"\\(),", *s) != NULL)
			return false;
	return true;
}

/* Appends s to out[*k..cap): as it is when it is a token, else as a quoted-string (RFC 5322
 * 3.2.4: `"` and `\` escaped), each octet that is not printable ASCII as '?' (no CR/LF
 * reaches the header). Cut to fit, leaving reserve octets after it; a quoted-string cut
 * keeps its closing quote and no escape is split. */
static void chain_tag_put(char *out, size_t cap, size_t *k, const char *s, size_t reserve)
{
	bool quote = !chain_tag_is_token(s);
	size_t lim = cap - 1 - reserve - (quote ? 1 : 0);   /* the NUL, the closing quote */

	if (*k + (quote ? 2 : 1) > cap - 1 - reserve)
		return;                 /* no room at all: left out */
	if (quote)
		out[(*k)++] = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool esc = quote && (c == '"' || c == '\\');

		if (*k + (esc ? 2 : 1) > lim)
			break;
		if (esc)
			out[(*k)++] = '\\';
		out[(*k)++] = c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	if (quote)
		out[(*k)++] = '"';
	out[*k] = '\0';
}

/* The tag's value, "NAME; stage=STAGE; error=WHY", into out (cap octets, at least 64): the
 * name and why as chain_tag_put writes them, so a reader splitting at `;` and `=` finds the
 * three parts whatever a module's reason or a plugin's configured name holds. */
static void chain_tag_value(char *out, size_t cap, const char *name, const char *stage,
    const char *why)
{
	size_t k = 0;

	out[0] = '\0';
	/* the name gets at most a third: the stage and the error always have room */
	chain_tag_put(out, cap, &k, name, cap - cap / 3);
	k += (size_t)snprintf(out + k, cap - k, "; stage=%s; error=", stage);
	if (k >= cap) {
		out[cap - 1] = '\0';
		return;
	}
	chain_tag_put(out, cap, &k, why, 0);
}

/* The message goes on without chain entry `entry`, which failed (why): it says so in a header, once
 * per filter and transaction (a milter that failed at MAIL answers on_error at each later
 * stage too). Outside a transaction (connect, HELO) there is no message to tag: a filter
 * that failed there is asked again at MAIL (a milter reconnects), and tags then if it
 * fails again. */
static void chain_tag(struct chain *c, size_t entry, const char *why)
{
	char val[CHAIN_TAG_MAX];

	if (c->stage < HOOK_MAIL || c->stage > HOOK_EOM || (c->tagged && c->tagged[entry]))
		return;
	/* a flag per entry, however many there are; out of memory: tagged each time */
	if (c->tagged == NULL)
		c->tagged = calloc(c->mods->n, sizeof(*c->tagged));
	if (c->tagged)
		c->tagged[entry] = true;
	chain_tag_value(val, sizeof(val), c->mods->v[entry].name, hook_stage_name(c->stage), why);
	hook_env_add_header(c->env, OWNFIELD_FILTER_ERROR, val);   /* a sender's goes: ownfields.h */
}

/* Entry e failed (why: "timeout" or the module's reason): logs it and fills v from the
 * entry's on_error. */
static void chain_error_verdict(struct chain *c, const struct chain_entry *e, const char *why,
    struct verdict *v)
{
	enum verdict_action a = e->mod->on_error ? e->mod->on_error(e->wstate) : VERDICT_CONTINUE;
	bool content = (e->mod->flags & HOOK_MODULE_CONTENT) != 0;
	bool tag = a != VERDICT_TEMPFAIL && a != VERDICT_REJECT && e->mod->on_error_tag &&
	    e->mod->on_error_tag(e->wstate);
	const char *kind = content ? "plugin" : "module";
	char wv[128];

	/* why is a module's word, possibly with blanks ("out of memory"): quoted and escaped */
	log_event(LOG_LVL_WARNING, c->env->session_id, "event=%s_error %s=%s stage=%s error=%s on_error=%s",
	    kind, kind, e->name, hook_stage_name(c->stage), log_val(wv, sizeof(wv), why),
	    tag ? "tag" : chain_on_error_name(a));
	if (content)
		counter_inc(COUNTER_PLUGIN_ERRORS);
	/* A content filter's name is not the client's business; what was being checked is
	 * (a recipient's check that fails is no "content filter" to the sender's postmaster). */
	if (a == VERDICT_TEMPFAIL && content && c->stage < HOOK_DATA)
		verdict_set(v, a, 451, "plugin", "4.3.0 %s check unavailable, please try again later",
		    c->stage == HOOK_CONNECT ? "Client" : c->stage == HOOK_HELO ? "HELO" :
		    c->stage == HOOK_MAIL ? "Sender" : "Recipient");
	else if (a == VERDICT_TEMPFAIL && content)
		verdict_set(v, a, 451, "plugin", "4.7.1 Content filter unavailable, please try again later");
	else if (a == VERDICT_TEMPFAIL)
		verdict_set(v, a, 451, e->name, "4.7.1 Temporary failure in %s, try again later", e->name);
	else if (a == VERDICT_REJECT && content && c->stage >= HOOK_DATA)
		verdict_set(v, a, 550, "plugin", "5.7.1 Message content rejected");
	else if (a == VERDICT_REJECT && content)     /* no content yet: Postfix's words */
		verdict_set(v, a, 550, "plugin", "5.7.1 Command rejected");
	else if (a == VERDICT_REJECT)
		verdict_set(v, a, 550, e->name, "5.7.1 Rejected by %s", e->name);
	else
		verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
	if (tag)
		chain_tag(c, (size_t)(e - c->mods->v), why);
}

/* Entry i completed its call with v (NULL = continue). Returns true when the stage is
 * decided. */
static bool chain_take(struct chain *c, size_t i, const struct verdict *v)
{
	struct verdict ev;

	if (v && v->action == VERDICT_ERROR) {
		chain_error_verdict(c, &c->mods->v[i], v->reason[0] ? v->reason : "error", &ev);
		return chain_apply(c, &ev);
	}
	if (v && (unsigned)v->action > VERDICT_ERROR) {
		chain_error_verdict(c, &c->mods->v[i], "bad_verdict", &ev);
		return chain_apply(c, &ev);
	}
	return chain_apply(c, v);
}

/* Entry i decided the stage (a refusal): the entries after it are not asked. At connect
 * they never see the session, so they are left out of every later stage too. */
static void chain_stop(struct chain *c, size_t i)
{
	if (c->stage == HOOK_CONNECT && i + 1 < c->connect_cut)
		c->connect_cut = i + 1;
	c->next = c->mods->n;
}

/* An asynchronous step of the connect stage is over and the stage goes on: the session
 * hears it (c->progress) after the entries that answer at once have run. */
static void chain_progressed(struct chain *c)
{
	if (c->progress && c->running && c->stage == HOOK_CONNECT)
		c->progress(c->arg);
}

void chain_on_progress(struct chain *c, chain_progress_fn fn)
{
	c->progress = fn;
}

bool chain_teaser_waits(const struct chain *c)
{
	if (!c->running || c->stage != HOOK_CONNECT || c->mods == NULL)
		return false;
	for (size_t i = c->cur ? c->cur->entry : c->next; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if ((e->mod->flags & HOOK_MODULE_BEFORE_TEASER) && (e->stages & (1u << HOOK_CONNECT)) &&
		    i < c->connect_cut)
			return true;
	}
	return false;
}

void hook_call_done(struct hook_call *call, const struct verdict *v)
{
	struct chain *c = call->chain;

	/* The first completion counts. The call stays allocated (on the spent list, or on the
	 * orphan list once abandoned) so a second completion lands here and is ignored. */
	if (call->completed)
		return;
	call->completed = true;
	if (c == NULL)
		return;	/* abandoned after a timeout or at release: too late, ignored */
	c->cur = NULL;
	if (c->timer)
		uv_timer_stop(c->timer);
	call->next = c->spent;
	c->spent = call;
	c->depth++;
	if (chain_take(c, call->entry, v))
		chain_stop(c, call->entry);
	if (!c->in_step) {
		chain_step(c);
		chain_progressed(c);
	}
	c->depth--;
}

static void chain_timeout_cb(uv_timer_t *t)
{
	chain_on_timeout(t->data);
}

static uint64_t chain_now(const struct chain *c)
{
	return c->timer ? uv_now(c->timer->loop) : 0;
}

/* (Re)starts the timer for the call in progress: its timeout, or what is left of the stage's
 * deadline when that comes first (a call's progress restarts the one, never the other). */
static void chain_arm(struct chain *c, struct hook_call *call)
{
	uint64_t ms = call->timeout_ms;

	c->deadline_armed = false;
	if (c->timer == NULL)
		return;
	if (c->deadline) {
		uint64_t now = chain_now(c), left = c->deadline > now ? c->deadline - now : 0;

		if (ms == 0 || left <= ms) {
			ms = left;
			c->deadline_armed = true;
		}
	} else if (ms == 0) {
		return;
	}
	c->timer->data = c;
	uv_timer_start(c->timer, chain_timeout_cb, ms, 0);
}

/* The stage's deadline passed with entry i running (or next to run): logged with the entry's
 * name; the stage ends with limits.filter_deadline_action. Returns true when the stage is
 * decided (tempfail); after accept only the scorers still run. */
static bool chain_deadline_passed(struct chain *c, size_t i)
{
	const struct mx_config *cfg = c->env->cfg;
	int act = cfg ? cfg->limits.filter_deadline_action : FILTER_DEADLINE_TEMPFAIL;
	bool accept = act == FILTER_DEADLINE_ACCEPT || act == FILTER_DEADLINE_TAG;
	const struct chain_entry *e = &c->mods->v[i];
	struct verdict v;

	log_event(LOG_LVL_WARNING, c->env->session_id,
	    "event=filter_deadline stage=%s plugin=%s elapsed_ms=%llu deadline_ms=%llu action=%s",
	    hook_stage_name(c->stage), e->name, (unsigned long long)(chain_now(c) - c->began),
	    (unsigned long long)(cfg ? cfg->limits.filter_deadline : 0),
	    act == FILTER_DEADLINE_TAG ? "tag" : accept ? "accept" : "tempfail");
	counter_inc(COUNTER_PLUGIN_ERRORS);
	c->deadline = 0;
	if (act == FILTER_DEADLINE_TAG)
		chain_tag(c, i, "deadline");
	if (accept) {
		c->accepted = true;    /* the filters left are skipped, the scorers still run */
		return false;
	}
	verdict_set(&v, VERDICT_TEMPFAIL, 451, "filter-deadline",
	    "4.3.0 Content filters took too long, please try again later");
	return chain_apply(c, &v);
}

void hook_call_progress(struct hook_call *call)
{
	if (call->chain && call->chain->cur == call && !call->completed)
		chain_arm(call->chain, call);
}

void chain_on_timeout(struct chain *c)
{
	struct hook_call *call = c->cur;
	const struct chain_entry *e;
	struct verdict v;

	if (call == NULL)
		return;
	if (c->timer)
		uv_timer_stop(c->timer);   /* when forwarded by hand rather than fired */
	e = &c->mods->v[call->entry];
	bool deadline = c->deadline_armed;
	c->deadline_armed = false;
	/* Abandon the call first: a completion from inside cancel (or any later one) is then
	 * ignored, and the call is freed with the session. */
	call->chain = NULL;
	call->next = c->orphans;
	c->orphans = call;
	c->cur = NULL;
	if (e->mod->cancel) {
		c->depth++;
		e->mod->cancel(e->wstate, (int)call->entry, call);
		c->depth--;
	}
	if (deadline) {
		if (chain_deadline_passed(c, call->entry))
			chain_stop(c, call->entry);
		return chain_step(c);
	}
	chain_error_verdict(c, e, "timeout", &v);
	if (chain_apply(c, &v))
		chain_stop(c, call->entry);
	chain_step(c);
	chain_progressed(c);
}

/* Entry i takes part in the connect stage and was cut from it (connect_cut): it is asked
 * about no stage. */
static bool chain_cut(const struct chain *c, size_t i)
{
	return i >= c->connect_cut && (c->mods->v[i].stages & (1u << HOOK_CONNECT));
}

/* bypass: entry i is not asked at this stage (chain_bypass_begin). */
static bool chain_bypassed(const struct chain *c, size_t i)
{
	return c->nbypassed && c->bypassed[i];
}

static void chain_step(struct chain *c)
{
	c->in_step = true;
	while (c->cur == NULL) {
		if (c->mods == NULL || c->next >= c->mods->n) {
			c->in_step = false;
			chain_finish(c);
			return;
		}
		size_t i = c->next++;
		const struct chain_entry *e = &c->mods->v[i];

		if ((e->stages & (1u << c->stage)) == 0)
			continue;
		if (chain_cut(c, i))
			continue;	/* never saw the connect: nothing to ask it about */
		if (c->accepted && (e->mod->flags & HOOK_MODULE_SCORER) == 0)
			continue;
		if (chain_bypassed(c, i))
			continue;	/* bypass: every recipient it would judge is exempt from it */
		if (c->deadline && chain_now(c) >= c->deadline && (e->mod->flags & HOOK_MODULE_SCORER) == 0) {
			/* passed between two calls (one that answered just in time) */
			if (chain_deadline_passed(c, i))
				chain_stop(c, i);
			continue;
		}
		struct hook_call *call = chain_call_new(c);
		call->chain = c;
		call->env = c->env;
		call->stage = c->stage;
		call->entry = i;
		call->timeout_ms = e->mod->timeout_ms ? e->mod->timeout_ms(e->wstate) : 0;
		c->cur = call;
		c->depth++;
		e->mod->run(e->wstate, (int)i, call);
		c->depth--;
		/* If run completed synchronously, hook_call_done cleared c->cur: loop on (and no
		 * timer was started and stopped for nothing). Otherwise the call's time starts now. */
		if (c->cur == call && !call->completed)
			chain_arm(c, call);
	}
	c->in_step = false;
}

/* Stage st begins at entry from: the entries that will be asked hear it first
 * (hook_module.prefetch), so their slow lookups run together with the entries before them. */
static void chain_prefetch(struct chain *c, size_t from)
{
	if (c->mods == NULL)
		return;
	c->depth++;
	for (size_t i = from; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if (e->mod->prefetch == NULL || (e->stages & (1u << c->stage)) == 0 ||
		    chain_cut(c, i) || chain_bypassed(c, i))
			continue;
		e->mod->prefetch(e->wstate, (int)i, c->env, c->stage);
	}
	c->depth--;
}

/* An entry before i that bypass skips has name too. */
static bool chain_bypass_named(const struct chain *c, size_t i, const char *name)
{
	for (size_t j = 0; j < i; j++)
		if (c->bypassed[j] && strcmp(c->mods->v[j].name, name) == 0)
			return true;
	return false;
}

#define CHAIN_NAMES_MAX 128   /* event=bypass checks=: octets, its NUL included */

/* The names a log line lists, comma-separated and bounded: a name that does not fit (room is
 * always kept for ",...") ends the list in "...", and nothing is added after it, so a cut
 * list says so instead of losing names silently. */
struct chain_names {
	char v[CHAIN_NAMES_MAX];
	size_t len;
	bool cut;
	bool quote;	/* a name holds '=' or ',': the list is written in quotes (chain_names_log) */
};

static void chain_names_add(struct chain_names *l, const char *name)
{
	size_t sep = l->len ? 1 : 0, n = strlen(name);

	if (l->cut)
		return;
	if (strpbrk(name, "=,") != NULL)
		l->quote = true;
	if (l->len + sep + n + 4 < sizeof(l->v)) {   /* ",..." and the NUL stay possible */
		snprintf(l->v + l->len, sizeof(l->v) - l->len, "%s%s", sep ? "," : "", name);
		l->len += sep + n;
		return;
	}
	snprintf(l->v + l->len, sizeof(l->v) - l->len, "%s...", sep ? "," : "");
	l->len += sep + 3;
	l->cut = true;
}

/* l as a log value (buf: CHAIN_NAMES_LOG octets): a plugin's name: is the operator's text,
 * so the list is quoted and escaped as any value from outside (log.h), and also when a name
 * holds '=' or ',' (a list in quotes is read whole; "-" when empty). */
#define CHAIN_NAMES_LOG (4 * CHAIN_NAMES_MAX + 8)
static const char *chain_names_log(char *buf, const struct chain_names *l)
{
	return l->len ? log_val_quoted(buf, CHAIN_NAMES_LOG, l->v, l->quote) : "-";
}

/* `bypass:` (bypass.h): the entries of this stage not run for its recipients, each by its
 * name. At RCPT the candidate alone; at DATA and end of data every accepted recipient must
 * be covered (a mixed message, with bypass_mixed: check, is checked fully). Every entry skipped hears it (skipped: a
 * milter drops the transaction). Logged once per stage that skips something. No limit on
 * the entries: a flag each, allocated at the session's first skip. */
static void chain_bypass_begin(struct chain *c)
{
	const struct mx_config *cfg = c->env ? c->env->cfg : NULL;
	const struct bypass_entry *bv;
	size_t nr = 0;
	struct chain_names names = { .len = 0 };

	if (cfg == NULL || cfg->bypass.n == 0 || c->mods == NULL || c->mods->n == 0)
		return;
	if (c->stage != HOOK_RCPT && c->stage != HOOK_DATA && c->stage != HOOK_EOM)
		return;
	bv = cfg->bypass.v;
	nr = c->stage == HOOK_RCPT ? 1 : c->env->nrcpts;
	for (size_t i = 0; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];
		bool skip;

		if ((e->stages & (1u << c->stage)) == 0 || !bypass_names(bv, cfg->bypass.n, e->name))
			continue;
		if (chain_cut(c, i))
			continue;	/* not asked anyway */
		if (c->bypassed == NULL && (c->bypassed = calloc(c->mods->n, sizeof(*c->bypassed))) == NULL)
			return;	/* out of memory: every check runs */
		/* two entries of one name (two clamd) are decided and named once */
		if (chain_bypass_named(c, i, e->name)) {
			c->bypassed[i] = true;
			c->nbypassed++;
			continue;
		}
		if (c->stage == HOOK_RCPT)
			skip = bypass_rcpt_covered(bv, cfg->bypass.n, c->env->mail_from, c->env->cur_rcpt, e->name);
		else
			skip = bypass_message_covered(bv, cfg->bypass.n, c->env->mail_from, c->env->rcpts, nr, e->name);
		if (!skip)
			continue;
		c->bypassed[i] = true;
		c->nbypassed++;
		chain_names_add(&names, e->name);
	}
	if (c->nbypassed == 0)
		return;
	char nv[CHAIN_NAMES_LOG];
	log_event(LOG_LVL_INFO, c->env->session_id, "event=bypass stage=%s checks=%s rcpts=%zu",
	    hook_stage_name(c->stage), chain_names_log(nv, &names), nr);
	c->depth++;
	for (size_t i = 0; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if (c->bypassed[i] && e->mod->skipped)
			e->mod->skipped(e->wstate, (int)i, c->env, c->stage);
	}
	c->depth--;
}

/* Entry i is a content check that bypass names and that is asked: a plugin entry (clamd,
 * spamd, rspamd, a milter, a shared object) or the scorer (rules) judging the message (DATA,
 * end of data), not cut from the session (connect_cut: a refusal at connect left it out, so
 * no recipient gets its verdict). Greylisting judges each recipient at RCPT, and its deferral
 * of a mixed message at DATA (null_sender, defer_at: data) is a delay, not a verdict on
 * content: not one. */
static bool chain_bypass_content(const struct chain *c, const struct mx_config *cfg, size_t i)
{
	const struct chain_entry *e = &c->mods->v[i];
	const unsigned msg = (1u << HOOK_DATA) | (1u << HOOK_EOM);

	return (e->stages & msg) != 0 && (e->mod->flags & (HOOK_MODULE_CONTENT | HOOK_MODULE_SCORER)) != 0 &&
	    !chain_cut(c, i) && bypass_names(cfg->bypass.v, cfg->bypass.n, e->name);
}

bool chain_bypass_splits(const struct chain *c, const char *sender, const char *first, const char *addr)
{
	const struct mx_config *cfg = c->env ? c->env->cfg : NULL;

	if (first == NULL || addr == NULL || cfg == NULL || cfg->bypass.n == 0 ||
	    cfg->bypass_mixed != BYPASS_MIXED_SPLIT || c->mods == NULL)
		return false;
	for (size_t i = 0; i < c->mods->n; i++) {
		const char *name = c->mods->v[i].name;

		if (chain_bypass_content(c, cfg, i) &&
		    bypass_rcpt_covered(cfg->bypass.v, cfg->bypass.n, sender, first, name) !=
		    bypass_rcpt_covered(cfg->bypass.v, cfg->bypass.n, sender, addr, name))
			return true;
	}
	return false;
}

/* An entry before i has name too. */
static bool chain_name_seen(const struct chain *c, size_t i, const char *name)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(c->mods->v[j].name, name) == 0)
			return true;
	return false;
}

/* The end of data let the message go with recipients a filter added (a milter's
 * SMFIR_ADDRCPT, a plugin's hook_env_add_rcpt; bypass.h): there is no RCPT to split such a
 * recipient off with, and its copy is the message as the filters left it (the filter that
 * added it saw that message; dropping it would lose a copy, an archive's or a
 * compliance BCC's). Each one that bypass covers otherwise than the message was checked is
 * logged (event=added_rcpt_bypass): ran= the content checks the message had that it
 * bypasses, skipped= those the message skipped that it does not. No I/O but the log. */
static void chain_bypass_added(struct chain *c)
{
	const struct hook_env *env = c->env;
	const struct mx_config *cfg = env ? env->cfg : NULL;

	if (cfg == NULL || cfg->bypass.n == 0 || c->mods == NULL || env->nadd_rcpts == 0 || env->nrcpts == 0 ||
	    (c->result.action != VERDICT_CONTINUE && c->result.action != VERDICT_ACCEPT))
		return;
	for (size_t a = 0; a < env->nadd_rcpts; a++) {
		const char *addr = env->add_rcpts[a].addr;
		struct chain_names ran = { .len = 0 }, skipped = { .len = 0 };
		bool had = false;

		for (size_t r = 0; r < env->nrcpts && !had; r++)
			had = strcasecmp(env->rcpts[r].addr, addr) == 0;
		if (had)
			continue;	/* sent once, as the envelope has it (smtp_tx.c) */

		for (size_t i = 0; i < c->mods->n; i++) {
			const char *name = c->mods->v[i].name;

			if (!chain_bypass_content(c, cfg, i) || chain_name_seen(c, i, name))
				continue;
			bool msg = bypass_message_covered(cfg->bypass.v, cfg->bypass.n, env->mail_from, env->rcpts,
			    env->nrcpts, name);
			bool own = bypass_rcpt_covered(cfg->bypass.v, cfg->bypass.n, env->mail_from, addr, name);
			if (own && !msg)
				chain_names_add(&ran, name);
			else if (!own && msg)
				chain_names_add(&skipped, name);
		}
		if (ran.len == 0 && skipped.len == 0)
			continue;
		char av[600], rv[CHAIN_NAMES_LOG], sv[CHAIN_NAMES_LOG];
		log_event(LOG_LVL_INFO, env->session_id, "event=added_rcpt_bypass rcpt=%s ran=%s skipped=%s rcpts=%zu",
		    log_addr(av, sizeof(av), addr), chain_names_log(rv, &ran), chain_names_log(sv, &skipped),
		    env->nrcpts);
	}
}

/* Sets c up to run stage st from entry from on. */
static void chain_begin(struct chain *c, enum hook_stage st, size_t from, chain_done_fn done, void *arg)
{
	/* Calls completed in earlier stages go now, unless a module callback is still on the
	 * stack (the next stage started from a done callback): they wait for a later stage. */
	if (c->depth == 0)
		chain_recycle_calls(c, &c->spent);
	c->stage = st;
	c->next = from;
	c->done = done;
	c->arg = arg;
	c->running = true;
	c->accepted = false;
	if (c->nbypassed) {
		memset(c->bypassed, 0, c->mods->n * sizeof(*c->bypassed));
		c->nbypassed = 0;
	}
	c->deadline = 0;
	c->deadline_armed = false;
	c->began = chain_now(c);
	/* The end of data's filters together: limits.filter_deadline from the final dot. */
	if (st == HOOK_EOM && c->env && c->env->cfg && c->env->cfg->limits.filter_deadline && c->timer)
		c->deadline = c->began + c->env->cfg->limits.filter_deadline;
	verdict_clear(&c->result);	/* a few stores (a memset was 600 octets, each stage) */
}

void chain_run_cut(struct chain *c, chain_done_fn done, void *arg)
{
	size_t from = c->connect_cut;

	chain_begin(c, HOOK_CONNECT, from, done, arg);
	c->connect_cut = SIZE_MAX;   /* chain_stop sets it again on a refusal */
	if (c->mods == NULL || from >= c->mods->n) {
		chain_finish(c);
		return;
	}
	chain_prefetch(c, from);
	chain_step(c);
}

void chain_cut_connect(struct chain *c)
{
	c->connect_cut = 0;
}

void chain_run(struct chain *c, enum hook_stage st, chain_done_fn done, void *arg)
{
	chain_begin(c, st, 0, done, arg);
	if (st == HOOK_MAIL) {   /* a new transaction: nothing kept from an earlier one */
		chain_drop_pending(c);
		if (c->tagged)
			memset(c->tagged, 0, c->mods->n * sizeof(*c->tagged));
	}
	if (st == HOOK_HELO && !c->txn_open) {
		/* a new HELO/EHLO stands for the session in place of the earlier one */
		if (c->helo_seen)
			hook_env_truncate_symbols(c->env, c->helo_symbols);
		c->helo_symbols = c->env->nsymbols;
		c->helo_seen = true;
	}
	if (c->txn_open && st >= HOOK_MAIL && st <= HOOK_EOM)
		c->txn_stage = st;
	if (st == HOOK_EOM && c->txn_pending) {
		c->result = *c->txn_pending;
		chain_drop_pending(c);
		chain_finish(c);
		return;
	}
	if (!chain_wants(c->mods, st)) {
		chain_finish(c);
		return;
	}
	chain_bypass_begin(c);
	chain_prefetch(c, 0);
	chain_step(c);
}

/* ---- outcomes ----------------------------------------------------------------------- */

static void chain_notify(struct chain *c, const struct hook_outcome *o)
{
	if (c->mods == NULL)
		return;
	c->depth++;
	for (size_t i = 0; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if (e->mod->outcome)
			e->mod->outcome(e->wstate, (int)i, c->env, o);
	}
	c->depth--;
}

void chain_headers(struct chain *c, const char *hdr, size_t len)
{
	if (c->mods == NULL)
		return;
	c->depth++;
	for (size_t i = 0; i < c->mods->n; i++) {
		const struct chain_entry *e = &c->mods->v[i];

		if (e->stages && e->mod->headers)
			e->mod->headers(e->wstate, (int)i, c->env, hdr, len);
	}
	c->depth--;
}

void chain_txn_begin(struct chain *c)
{
	chain_txn_abandon(c);
	c->txn_open = true;
	c->txn_stage = HOOK_MAIL;
}

bool chain_txn_end(struct chain *c, int code, enum hook_stage st, const char *reason)
{
	struct hook_outcome o;

	if (!c->txn_open)
		return false;
	c->txn_open = false;
	memset(&o, 0, sizeof(o));
	o.code = code;
	o.stage = st;
	o.reason = reason ? reason : "";
	o.flags = c->env->flags;
	chain_notify(c, &o);
	return true;
}

void chain_txn_abandon(struct chain *c)
{
	chain_txn_end(c, 0, c->txn_stage, NULL);
}

void chain_session_end(struct chain *c, int code, enum hook_stage st, const char *reason)
{
	struct hook_outcome o;

	if (c->session_ended)
		return;
	chain_txn_abandon(c);
	c->session_ended = true;
	memset(&o, 0, sizeof(o));
	o.session = true;
	o.code = code;
	o.stage = st;
	o.reason = reason ? reason : "";
	chain_notify(c, &o);
}

/* ---- release ------------------------------------------------------------------------ */

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
		for (size_t i = 0; i < c->mods->n; i++) {
			const struct chain_entry *e = &c->mods->v[i];

			if (e->stages && e->mod->session_free)
				e->mod->session_free(e->wstate, (int)i, c->env);
		}
	}
	chain_free_calls(&c->orphans);
	chain_free_calls(&c->spent);
	chain_free_calls(&c->spare);
	c->nspare = 0;
	chain_drop_pending(c);
	free(c->bypassed);
	c->bypassed = NULL;
	c->nbypassed = 0;
	free(c->tagged);
	c->tagged = NULL;
	free(c->env->module_ctx);
	c->env->module_ctx = NULL;
	c->running = false;
}
