/* pregreet.c — the `pregreet:` config table and the pass cache, see pregreet.h. */
#include "config.h"
#include "pregreet.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "filters/passcache.h"
#include "proxy/chain.h"
#include "proxy/hook.h"
#include "store/local_table.h"

static const char *const pregreet_actions[] = { "score", "reject", "tempfail", "drop", NULL };
static const char *const protocol_actions[] = { "score", "enforce", "drop", "ignore", NULL };

static const struct cfg_field pregreet_fields[] = {
	{ "delay", CFG_DURATION, offsetof(struct pregreet_config, delay), "0s", 0, 60000,
	  .doc = "how long the greeting's last line waits at least (0 = test off); a client talking before that line (also while the connect checks still hold it) fails the test; not on submission listeners" },
	{ "action", CFG_ENUM, offsetof(struct pregreet_config, action), "reject", .choices = pregreet_actions,
	  .doc = "score | reject (550 at MAIL) | tempfail (450 at MAIL) | drop (521 and disconnect)" },
	{ "score", CFG_DOUBLE, offsetof(struct pregreet_config, score), "5", -100, 100,
	  .doc = "score of the PREGREET symbol handed to the rules engine" },
	{ "pass_ttl", CFG_DURATION, offsetof(struct pregreet_config, pass_ttl), "1d", 0, 30.0 * 86400000,
	  .doc = "a client that waited for the greeting without talking is greeted at once (no teaser, no wait) for this long (postscreen_greet_ttl; this process, at most 100000 addresses, and pass_store); 0 = test every connection" },
	{ "pass_store", CFG_STRING, offsetof(struct pregreet_config, pass_store), "local",
	  .doc = "where passes are kept besides this process's memory: local (only there: a restart or another node tests again) | lmdb:/dir (this host, survives a restart; may be the reputation directory; asked before the teaser: a client it knows gets no teaser) | redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db] (every node sharing it; asked while the teaser's delay runs: a client it knows is greeted as soon as the connect checks are done), as postscreen_cache_map; a store that fails or does not answer in pass_store_timeout means not known: the test runs" },
	{ "pass_store_timeout", CFG_DURATION, offsetof(struct pregreet_config, pass_store_timeout), "100ms", 1, 5000,
	  .doc = "Redis answer deadline of a pass_store lookup (the greeting of a client the store knows waits at most this long)" },
	{ "pipelining_action", CFG_ENUM, offsetof(struct pregreet_config, pipelining_action), "score", .choices = protocol_actions,
	  .doc = "commands pipelined without EHLO (postscreen_pipelining_action): score (PIPELINING_UNANNOUNCED) | enforce (and 550 5.5.1 at every later MAIL, RCPT, DATA and BDAT: a transaction under way delivers nothing) | drop (521 and disconnect) | ignore (logged only); every listener" },
	{ "bare_newline_action", CFG_ENUM, offsetof(struct pregreet_config, bare_newline_action), "score", .choices = protocol_actions,
	  .doc = "a command line ended by a bare LF (postscreen_bare_newline_action): score (BARE_LF_COMMAND) | enforce (as pipelining_action) | drop | ignore" },
	{ "non_smtp_command_action", CFG_ENUM, offsetof(struct pregreet_config, non_smtp_command_action), "drop", .choices = protocol_actions,
	  .doc = "an HTTP or proxy command (postscreen_non_smtp_command_action): drop (421 and disconnect, NON_SMTP_COMMAND) | enforce (and 550 5.5.1 at every later MAIL, RCPT, DATA and BDAT; the session goes on) | score | ignore (the command is answered 500 and the session goes on)" },
	{ .key = NULL }
};

static int pregreet_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct pregreet_config *c = obj;

	if (!passcache_spec_ok(c->pass_store))
		return cfg_error_key(p, n, "pass_store", -1, "expected local, lmdb:/dir, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	return 0;
}

const struct cfg_table pregreet_config_table = {
	.name = "pregreet", .size = sizeof(struct pregreet_config), .fields = pregreet_fields,
	.validate = pregreet_validate,
};

/* ---- the pass cache ---------------------------------------------------------------------- */

/* Records: expiry, val = when the pass was noted; passes noted before pg_flushed_ns are
 * forgotten (a flush without walking the shards). */
static struct local_table *pg_table;
static pthread_once_t pg_once = PTHREAD_ONCE_INIT;
static atomic_ullong pg_flushed_ns;

static void pg_table_make(void)
{
	pg_table = local_table_new(PREGREET_PASS_MAX);
	if (pg_table)
		local_table_set_name(pg_table, "pregreet");
}

static struct local_table *pg_pass_table(void)
{
	pthread_once(&pg_once, pg_table_make);
	return pg_table;        /* NULL when out of memory: no cache */
}

static int pg_known_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	(void)now_ns;
	(void)arg;
	return exists && rec->val >= atomic_load(&pg_flushed_ns);
}

static int pg_note_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	(void)exists;
	rec->expires_ns = now_ns + *(const uint64_t *)arg * 1000000;
	rec->val = now_ns;
	return 1;
}

struct pg_count { uint64_t before; size_t n; };

static bool pg_count_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct pg_count *c = arg;

	(void)key;
	c->n += rec->val >= atomic_load(&pg_flushed_ns) && rec->val < c->before;
	return true;
}

size_t pregreet_pass_flush(uint64_t now_ns)
{
	struct pg_count c = { now_ns, 0 };
	struct local_table *t = pg_pass_table();

	if (t == NULL)
		return 0;
	local_table_foreach(t, now_ns, pg_count_fn, &c);
	atomic_store(&pg_flushed_ns, now_ns);
	return c.n;
}

size_t pregreet_pass_count(uint64_t now_ns)
{
	struct pg_count c = { UINT64_MAX, 0 };
	struct local_table *t = pg_pass_table();

	if (t != NULL)
		local_table_foreach(t, now_ns, pg_count_fn, &c);
	return c.n;
}

bool pregreet_pass_known(const char *ip, uint64_t now_ns)
{
	struct local_table *t = pg_pass_table();

	return t != NULL && local_table_update(t, ip, now_ns, false, pg_known_cb, NULL) == 1;
}

void pregreet_pass_note(const char *ip, uint64_t ttl_ms, uint64_t now_ns)
{
	struct local_table *t = ttl_ms ? pg_pass_table() : NULL;

	if (t != NULL)
		local_table_update(t, ip, now_ns, true, pg_note_cb, &ttl_ms);
}

/* ---- the pass store (the hook module) ---------------------------------------------------- */

struct pg_worker {
	struct passcache *pc;
	uint64_t pass_ttl;
};

struct pg_session {
	struct hook_call *call;
	struct hook_env *env;
	struct passcache_req *req;
};

static int pg_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct pregreet_config *pg = &cfg->pregreet;
	struct pg_worker *w;

	*wstate = NULL;
	if (pg->delay == 0 || pg->pass_ttl < 1000 || !passcache_spec_shared(pg->pass_store))
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->pass_ttl = pg->pass_ttl;
	w->pc = passcache_new(pg->pass_store, "pregreet", pg->pass_store_timeout, loop, worker);
	if (w->pc == NULL) {       /* logged: the passes stay in this process's memory, as the
	                            * DNS lists' do (a cache: not a module that failed) */
		free(w);
		return 0;
	}
	*wstate = w;
	return 0;
}

static void pg_worker_free(void *wstate)
{
	struct pg_worker *w = wstate;

	if (w == NULL)
		return;
	passcache_free(w->pc);
	free(w);
}

static unsigned pg_stages(void *wstate)
{
	return wstate ? 1u << HOOK_CONNECT : 0;
}

static uint64_t pg_timeout_ms(void *wstate)
{
	(void)wstate;
	return 6000;    /* the store's own deadline (at most 5 s) fires first */
}

static enum verdict_action pg_on_error(void *wstate)
{
	(void)wstate;
	return VERDICT_CONTINUE;        /* not known: the test runs */
}

static void pg_store_cb(void *arg, bool known, const char *val, size_t vlen, uint64_t left_ms)
{
	struct pg_session *ps = arg;
	struct hook_call *call = ps->call;

	(void)val, (void)vlen;
	ps->req = NULL;
	ps->call = NULL;
	if (known && ps->env->pregreet_pass == HOOK_PREGREET_TESTING) {
		ps->env->pregreet_pass = HOOK_PREGREET_KNOWN;
		/* this process knows it too from now on, for the time the pass has left */
		pregreet_pass_note(ps->env->client_ip, left_ms, uv_hrtime());
	}
	hook_call_done(call, NULL);
}

struct pg_now { bool known; uint64_t left_ms; };

static void pg_now_cb(void *arg, bool known, const char *val, size_t vlen, uint64_t left_ms)
{
	struct pg_now *a = arg;

	(void)val, (void)vlen;
	a->known = known;
	a->left_ms = left_ms;
}

bool pregreet_store_known_now(const struct chain_modules *mods, const char *ip)
{
	for (size_t i = 0; mods != NULL && i < mods->n; i++) {
		const struct pg_worker *w = mods->v[i].wstate;
		struct pg_now a = { false, 0 };
		struct passcache_req *req;

		if (mods->v[i].mod != &pregreet_module || w == NULL)
			continue;
		if (!passcache_answers_inline(w->pc) || passcache_lookup(w->pc, ip, pg_now_cb, &a, &req) < 0 ||
		    !a.known)
			return false;
		pregreet_pass_note(ip, a.left_ms, uv_hrtime());
		return true;
	}
	return false;
}

/* At connect, while the teaser's delay runs: is the client known to the store? */
static void pg_run(void *wstate, int slot, struct hook_call *call)
{
	struct pg_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct pg_session *ps = env->module_ctx[slot];
	struct passcache_req *req;

	/* an LMDB store was asked before the teaser (pregreet_store_known_now) */
	if (hook_call_stage(call) != HOOK_CONNECT || env->pregreet_pass != HOOK_PREGREET_TESTING ||
	    passcache_answers_inline(w->pc))
		goto done;
	if (ps == NULL) {
		ps = calloc(1, sizeof(*ps));
		if (ps == NULL)
			goto done;
		ps->env = env;
		env->module_ctx[slot] = ps;
	}
	if (ps->req != NULL)
		goto done;             /* cannot happen: one connect stage at a time */
	ps->call = call;
	if (passcache_lookup(w->pc, env->client_ip, pg_store_cb, ps, &req) == 0) {
		ps->req = req;         /* NULL when it answered inline (LMDB) */
		return;
	}
	ps->call = NULL;
done:
	hook_call_done(call, NULL);
}

static void pg_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct pg_session *ps = hook_call_env(call)->module_ctx[slot];

	(void)wstate;
	if (ps != NULL && ps->call == call) {
		passcache_cancel(ps->req);
		ps->req = NULL;
		ps->call = NULL;
	}
}

static void pg_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct pg_session *ps = env->module_ctx[slot];

	(void)wstate;
	if (ps == NULL)
		return;
	passcache_cancel(ps->req);
	free(ps);
	env->module_ctx[slot] = NULL;
}

/* The session noted a pass: into the store, once (at the first transaction's end or the
 * session's, whichever comes first). */
static void pg_outcome(void *wstate, int slot, struct hook_env *env, const struct hook_outcome *o)
{
	struct pg_worker *w = wstate;

	(void)slot, (void)o;
	if (w != NULL && env->pregreet_pass == HOOK_PREGREET_PASSED) {
		env->pregreet_pass = HOOK_PREGREET_NOTED;
		passcache_note(w->pc, env->client_ip, "", 0, w->pass_ttl);
	}
}

const struct hook_module pregreet_module = {
	.name = "pregreet",
	.worker_init = pg_worker_init,
	.worker_free = pg_worker_free,
	.stages = pg_stages,
	.run = pg_run,
	.session_free = pg_session_free,
	.timeout_ms = pg_timeout_ms,
	.on_error = pg_on_error,
	.cancel = pg_cancel,
	.outcome = pg_outcome,
};
