/* reputation.c — per-IP / per-network reputation with decay, see reputation.h. */
#include "reputation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "store/lmdb_store.h"
#include "store/redis.h"
#include "store/store.h"

#define REP_KEY_MAX 80

/* ---- pure pieces ------------------------------------------------------------------------ */

void reputation_decay(struct reputation_counts *rc, uint64_t now_ms, uint64_t half_life_ms)
{
	double f;

	if (rc->t_ms == 0 || now_ms <= rc->t_ms || half_life_ms == 0) {
		if (rc->t_ms == 0 || now_ms > rc->t_ms)
			rc->t_ms = now_ms;
		return;
	}
	f = exp2(-(double)(now_ms - rc->t_ms) / (double)half_life_ms);
	for (int i = 0; i < REPUTATION_NOUTCOMES; i++)
		rc->c[i] *= f;
	rc->t_ms = now_ms;
}

/* The good and bad weights of one record (see reputation_score). */
static void rep_good_bad(const struct reputation_counts *rc, double *good, double *bad)
{
	*good = rc->c[REPUTATION_ACCEPTED];
	*bad = rc->c[REPUTATION_REJECTED] + 0.25 * rc->c[REPUTATION_TEMPFAILED] +
	    rc->c[REPUTATION_SPAM] + 2.0 * rc->c[REPUTATION_VIRUS];
}

double reputation_score(const struct reputation_counts *ip, const struct reputation_counts *net,
    double prefix_weight, double prior)
{
	double g = 0, b = 0, g2, b2, s;

	if (ip)
		rep_good_bad(ip, &g, &b);
	if (net) {
		rep_good_bad(net, &g2, &b2);
		g += prefix_weight * g2;
		b += prefix_weight * b2;
	}
	if (prior < 0)
		prior = 0;
	if (g + b + prior <= 0)
		return 0;
	s = (g - b) / (g + b + prior);
	return s > 1 ? 1 : s < -1 ? -1 : s;
}

int reputation_keys(const struct sockaddr *sa, long prefix_v4, long prefix_v6, char *ipkey,
    size_t iplen, char *netkey, size_t netlen)
{
	char ip[NETADDR_STRLEN], net[NETADDR_PREFIX_STRLEN];

	if (netaddr_sockaddr_string(sa, ip, sizeof(ip)) < 0 ||
	    netaddr_prefix_string(sa, (int)prefix_v4, (int)prefix_v6, net, sizeof(net)) < 0)
		return -1;
	if ((size_t)snprintf(ipkey, iplen, "ip:%s", ip) >= iplen ||
	    (size_t)snprintf(netkey, netlen, "net:%s", net) >= netlen)
		return -1;
	return 0;
}

/* Wall clock in ms: records are compared across restarts and nodes. */
static uint64_t rep_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* ---- the LMDB records -------------------------------------------------------------------
 * "ip:<addr>" and "net:<prefix>" hold a struct reputation_counts each, in the environment
 * store/lmdb_store.c shares with greylisting. Updates are merges: decay, then count one. */

void reputation_add(struct reputation_counts *rc, enum reputation_outcome o, uint64_t now_ms,
    uint64_t half_life_ms)
{
	reputation_decay(rc, now_ms, half_life_ms);
	if ((unsigned)o < REPUTATION_NOUTCOMES)
		rc->c[o] += 1.0;
}

/* The writer's merge (pool thread): the operand is one outcome byte; ctx the half-life. */
static long rep_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	struct reputation_counts c;
	uint64_t half_life;

	if (oplen != 1 || cap < sizeof(c))
		return -1;
	memset(&c, 0, sizeof(c));
	if (cur && curlen == sizeof(c))
		memcpy(&c, cur, sizeof(c));
	memcpy(&half_life, ctx, sizeof(half_life));
	reputation_add(&c, (enum reputation_outcome)*(const unsigned char *)operand, now_ms, half_life);
	memcpy(out, &c, sizeof(c));
	return (long)sizeof(c);
}

/* The sweep rule (about hourly): records whose decayed history no longer matters, and
 * records of another shape, go. */
static bool rep_expired(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx)
{
	struct reputation_counts c;
	uint64_t half_life;
	double sum = 0;

	if (vlen != sizeof(c))
		return true;
	memcpy(&half_life, ctx, sizeof(half_life));
	if (half_life == 0)
		return false;
	memcpy(&c, val, sizeof(c));
	reputation_decay(&c, now_ms, half_life);
	for (int i = 0; i < REPUTATION_NOUTCOMES; i++)
		sum += c.c[i];
	return sum < 0.05;
}

struct rep_read { struct reputation_counts *out[2]; };

/* One value of rep_read_counts's snapshot: zeroes when absent or of another shape. */
static void rep_read_value_cb(void *arg, size_t i, const void *val, size_t len)
{
	struct rep_read *r = arg;

	memset(r->out[i], 0, sizeof(*r->out[i]));
	if (val && len == sizeof(*r->out[i]))
		memcpy(r->out[i], val, len);
}

/* Reads the IP's and the network's counts in one snapshot (inline: the memory map). */
static int rep_read_counts(struct lmdb_store *st, const char *ipkey, const char *netkey,
    struct reputation_counts *ip, struct reputation_counts *net)
{
	struct lmdb_key keys[2] = { { ipkey, strlen(ipkey) }, { netkey, strlen(netkey) } };
	struct rep_read r = { { ip, net } };

	memset(ip, 0, sizeof(*ip));
	memset(net, 0, sizeof(*net));
	return lmdb_store_get_many(st, keys, 2, rep_read_value_cb, &r);
}

/* ---- configuration --------------------------------------------------------------------- */

static const char *const rep_action_names[] = { "tempfail", "reject", "delay", "score", NULL };

/* The section: a known store form and thresholds in order. */
static int rep_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct reputation_config *c = obj;
	int kind = store_kind_of(c->store);

	if (c->store && strcmp(c->store, "lmdb:") == 0)
		return cfg_error(p, n, "store: lmdb: needs a directory");
	if (kind != STORE_NONE && kind != STORE_LMDB && kind != STORE_REDIS)
		return cfg_error(p, n, "store: expected lmdb:/dir or redis://host:port[/db]");
	if (c->good_threshold <= c->bad_threshold)
		return cfg_error(p, n, "good_threshold must be above bad_threshold");
	return 0;
}

static const struct cfg_field rep_fields[] = {
	{ "store", CFG_STRING, offsetof(struct reputation_config, store), NULL,
	  .doc = "lmdb:/dir (this host, survives restarts) or redis://host:port[/db] (all nodes); unset = allow/deny lists only" },
	{ "half_life", CFG_DURATION, offsetof(struct reputation_config, half_life), "7d", 60000, 3650.0 * 86400000,
	  .doc = "counts halve over this time" },
	{ "good_threshold", CFG_DOUBLE, offsetof(struct reputation_config, good_threshold), "0.5", -1, 1,
	  .doc = "score (-1..1) at or above which a client is known good (symbol REP_GOOD)" },
	{ "bad_threshold", CFG_DOUBLE, offsetof(struct reputation_config, bad_threshold), "-0.5", -1, 1,
	  .doc = "score at or below which a client is bad (symbol REP_BAD and bad_action)" },
	{ "bad_action", CFG_ENUM, offsetof(struct reputation_config, bad_action), "tempfail",
	  .choices = rep_action_names, .doc = "for bad clients at connect: tempfail, reject, delay or score" },
	{ "deny_action", CFG_ENUM, offsetof(struct reputation_config, deny_action), "reject",
	  .choices = rep_action_names, .doc = "for clients on the deny list" },
	{ "delay", CFG_DURATION, offsetof(struct reputation_config, delay), "5s", 0, 600000,
	  .doc = "how long action delay holds the greeting" },
	{ "good_score", CFG_DOUBLE, offsetof(struct reputation_config, good_score), "-2", -1000, 1000,
	  .doc = "score of symbol REP_GOOD / REP_ALLOW" },
	{ "bad_score", CFG_DOUBLE, offsetof(struct reputation_config, bad_score), "3", -1000, 1000,
	  .doc = "score of symbol REP_BAD" },
	{ "deny_score", CFG_DOUBLE, offsetof(struct reputation_config, deny_score), "10", -1000, 1000,
	  .doc = "score of symbol REP_DENY" },
	{ "prior", CFG_DOUBLE, offsetof(struct reputation_config, prior), "3", 0, 1000000,
	  .doc = "pseudo-count: how many messages of history it takes to move the score" },
	{ "prefix_weight", CFG_DOUBLE, offsetof(struct reputation_config, prefix_weight), "0.25", 0, 1,
	  .doc = "weight of the network's history next to the IP's" },
	{ "prefix_v4", CFG_INT, offsetof(struct reputation_config, prefix_v4), "24", 8, 32,
	  .doc = "IPv4 network prefix length" },
	{ "prefix_v6", CFG_INT, offsetof(struct reputation_config, prefix_v6), "64", 16, 128,
	  .doc = "IPv6 network prefix length" },
	{ "allow", CFG_CIDRLIST, offsetof(struct reputation_config, allow), NULL,
	  .doc = "CIDRs always accepted at connect (rest of the connect checks skipped)" },
	{ "deny", CFG_CIDRLIST, offsetof(struct reputation_config, deny), NULL,
	  .doc = "CIDRs refused at connect (deny_action)" },
	{ "map_size", CFG_SIZE, offsetof(struct reputation_config, map_size), "256M", 1 << 20, 1099511627776.0,
	  .doc = "LMDB map size (the most the database may grow to)" },
	{ "flush_interval", CFG_DURATION, offsetof(struct reputation_config, flush_interval), "500ms", 10, 60000,
	  .doc = "LMDB writes are batched per worker this long" },
	{ "timeout", CFG_DURATION, offsetof(struct reputation_config, timeout), "200ms", 1, 60000,
	  .doc = "Redis lookup deadline; then the client is treated as unknown" },
	{ .key = NULL }
};

const struct cfg_table reputation_config_table = {
	.name = "reputation", .size = sizeof(struct reputation_config), .fields = rep_fields,
	.validate = rep_validate,
};

/* ---- Redis scripts --------------------------------------------------------------------- */

/* KEYS ip, net. Returns both hashes' fields a r t s v ts (nil when absent), as strings. */
static const char rep_lua_get[] =
	"local f = {'a','r','t','s','v','ts'}\n"
	"local out = {}\n"
	"for k = 1, 2 do\n"
	"  local v = redis.call('HMGET', KEYS[k], unpack(f))\n"
	"  for i = 1, 6 do out[#out + 1] = v[i] end\n"
	"end\n"
	"return out\n";

/* KEYS ip, net; ARGV outcome field, half_life_ms, ttl_ms. Decays on the server's clock. */
static const char rep_lua_add[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local hl = tonumber(ARGV[2])\n"
	"local f = {'a','r','t','s','v'}\n"
	"for k = 1, #KEYS do\n"
	"  local v = redis.call('HMGET', KEYS[k], 'a','r','t','s','v','ts')\n"
	"  local ts = tonumber(v[6]) or now\n"
	"  local d = 1\n"
	"  if now > ts then d = math.pow(2, -(now - ts) / hl) end\n"
	"  local out = {}\n"
	"  for i = 1, 5 do\n"
	"    local x = (tonumber(v[i]) or 0) * d\n"
	"    if f[i] == ARGV[1] then x = x + 1 end\n"
	"    out[#out + 1] = f[i]\n"
	"    out[#out + 1] = string.format('%.6g', x)\n"
	"  end\n"
	"  out[#out + 1] = 'ts'\n"
	"  out[#out + 1] = string.format('%.0f', now)\n"
	"  redis.call('HSET', KEYS[k], unpack(out))\n"
	"  redis.call('PEXPIRE', KEYS[k], ARGV[3])\n"
	"end\n"
	"return 1\n";

static const char *const rep_fields_short[REPUTATION_NOUTCOMES] = { "a", "r", "t", "s", "v" };
static const char *const rep_outcome_names[REPUTATION_NOUTCOMES] = { "accepted", "rejected",
	"tempfailed", "spam", "virus" };

/* ---- per-worker state ------------------------------------------------------------------- */

struct rep_worker {
	const struct reputation_config *cfg;  /* gone once the generation is retired */
	uv_loop_t *loop;
	int worker;
	struct lmdb_store *st;          /* lmdb store: reads inline ... */
	struct lmdb_writer *wr;         /* ... writes batched in the pool */
	struct redis_store *rs;         /* redis store */
	int lua_get, lua_add;
};

struct rep_session {
	struct rep_worker *w;
	struct hook_call *call;
	struct redis_req *req;
};

static int rep_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct reputation_config *c = &cfg->reputation;
	struct rep_worker *w;

	*wstate = NULL;
	if ((c->store == NULL || c->store[0] == '\0') && c->allow.n == 0 && c->deny.n == 0)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = c;
	w->loop = loop;
	w->worker = worker;
	if (store_kind_of(c->store) == STORE_LMDB) {
		static const char *const prefixes[] = { "ip:", "net:", NULL };
		uint64_t half_life = c->half_life;
		struct lmdb_writer_config wc = {
			.sweep_prefixes = prefixes, .merge = rep_merge, .expired = rep_expired,
			.ctx = &half_life, .ctx_len = sizeof(half_life),
			.flush_interval = c->flush_interval, .max_queued = 200000, .name = "reputation",
		};

		w->st = lmdb_store_open(store_lmdb_dir(c->store), c->map_size);
		if (w->st == NULL || (w->wr = lmdb_writer_new(w->st, loop, &wc)) == NULL)
			goto fail;
	} else if (store_kind_of(c->store) == STORE_REDIS) {
		w->rs = redis_store_new(loop, c->store, c->timeout, worker);
		if (w->rs == NULL)
			goto fail;
		w->lua_get = redis_store_add_script(w->rs, rep_lua_get);
		w->lua_add = redis_store_add_script(w->rs, rep_lua_add);
	}
	*wstate = w;
	return 0;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=reputation worker=%d reason=init", worker);
	lmdb_store_close(w->st);
	free(w);
	return -1;
}

static void rep_worker_free(void *wstate)
{
	struct rep_worker *w = wstate;

	if (w == NULL)
		return;
	redis_store_free(w->rs);
	/* The last updates are written now (the writer copied what it needs of the config). */
	lmdb_writer_free(w->wr);
	lmdb_store_close(w->st);
	free(w);
}

static unsigned rep_stages(void *wstate)
{
	return wstate ? 1u << HOOK_CONNECT : 0;
}

static uint64_t rep_timeout_ms(void *wstate)
{
	struct rep_worker *w = wstate;

	return w ? w->cfg->timeout * 2 + 100 : 0;
}

/* ---- connect-time decision -------------------------------------------------------------- */

/* Fills v for action against ip (why: "poor reputation", "deny list entry"). */
static void rep_apply_action(struct verdict *v, int action, uint64_t delay, const char *why,
    const char *ip)
{
	switch (action) {
	case REPUTATION_ACTION_TEMPFAIL:
		verdict_set(v, VERDICT_TEMPFAIL, 421, "reputation",
		    "4.7.0 %s of %s, try again later", why, ip);
		break;
	case REPUTATION_ACTION_REJECT:
		verdict_set(v, VERDICT_REJECT, 550, "reputation", "5.7.1 %s of %s", why, ip);
		break;
	case REPUTATION_ACTION_DELAY:
		verdict_set(v, VERDICT_CONTINUE, 0, "reputation", NULL);
		v->delay_ms = delay > 600000 ? 600000 : (uint32_t)delay;
		break;
	default:
		verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
		break;
	}
}

/* Completes the call for a client not known to be good: near max_connections
 * (env->overloaded) such a client is turned away with 421 so the known ones keep being
 * served; otherwise v (NULL = continue). Shedding needs a way to know good clients: a
 * store or an allow list. */
static void rep_done_unknown(struct rep_worker *w, struct hook_call *call, const struct verdict *v)
{
	struct hook_env *env = hook_call_env(call);
	struct verdict shed;

	if (env->overloaded && (w->st || w->rs || w->cfg->allow.n)) {
		counter_inc(COUNTER_SESSIONS_REJECTED_LIMIT);
		verdict_set(&shed, VERDICT_TEMPFAIL, 421, "overload", "4.7.0 %s Service busy, try again later",
		    env->cfg && env->cfg->hostname ? env->cfg->hostname : "");
		hook_call_done(call, &shed);
		return;
	}
	hook_call_done(call, v);
}

/* Scores the counts and completes the call. */
static void rep_decide(struct rep_worker *w, struct hook_call *call, struct reputation_counts *ip,
    struct reputation_counts *net)
{
	struct hook_env *env = hook_call_env(call);
	const struct reputation_config *c = w->cfg;
	uint64_t now = rep_wall_ms();
	struct verdict v;
	double s;
	char desc[64];

	reputation_decay(ip, now, c->half_life);
	reputation_decay(net, now, c->half_life);
	s = reputation_score(ip, net, c->prefix_weight, c->prior);
	verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	snprintf(desc, sizeof(desc), "reputation %.2f", s);
	if (s >= c->good_threshold) {
		hook_env_add_symbol(env, "REP_GOOD", c->good_score, desc);
		log_event(LOG_LVL_DEBUG, env->session_id, "event=reputation client=%s score=%.3f class=good",
		    env->client_ip, s);
	} else if (s <= c->bad_threshold) {
		hook_env_add_symbol(env, "REP_BAD", c->bad_score, desc);
		rep_apply_action(&v, c->bad_action, c->delay, "poor reputation", env->client_ip);
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=reputation client=%s score=%.3f class=bad action=%s", env->client_ip, s,
		    rep_action_names[c->bad_action]);
	}
	if (s >= c->good_threshold)
		hook_call_done(call, &v);
	else
		rep_done_unknown(w, call, &v);
}

/* Reads one HMGET block (a r t s v ts) into out; false when the record is absent. */
static bool rep_parse_counts(const redisReply *const *el, struct reputation_counts *out)
{
	bool any = false;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 6; i++) {
		double d;

		if (el[i]->type != REDIS_REPLY_STRING)
			continue;
		d = strtod(el[i]->str, NULL);
		if (!isfinite(d) || d < 0)
			d = 0;
		if (i < 5)
			out->c[i] = d;
		else
			out->t_ms = (uint64_t)d;
		any = true;
	}
	return any;
}

/* The Redis lookup for a connect: decide, or treat the client as unknown. */
static void rep_redis_get_cb(void *arg, const redisReply *reply)
{
	struct rep_session *s = arg;
	struct hook_call *call = s->call;
	struct hook_env *env = hook_call_env(call);
	struct reputation_counts ip, net;
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];

	s->req = NULL;
	s->call = NULL;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 12 ||
	    reputation_keys((const struct sockaddr *)&env->client, s->w->cfg->prefix_v4,
	    s->w->cfg->prefix_v6, ipkey, sizeof(ipkey), netkey, sizeof(netkey)) < 0) {
		/* No answer: the client is unknown, which is never a reason to refuse it (but
		 * near max_connections it is not known to be good either). */
		rep_done_unknown(s->w, call, NULL);
		return;
	}
	rep_parse_counts((const redisReply *const *)reply->element, &ip);
	rep_parse_counts((const redisReply *const *)reply->element + 6, &net);
	rep_decide(s->w, call, &ip, &net);
}

static void rep_run(void *wstate, int slot, struct hook_call *call)
{
	struct rep_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	const struct sockaddr *sa = (const struct sockaddr *)&env->client;
	const struct reputation_config *c = w->cfg;
	struct reputation_counts ip, net;
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];
	struct verdict v;

	if (hook_call_stage(call) != HOOK_CONNECT) {
		hook_call_done(call, NULL);
		return;
	}
	if (c->allow.n && cfg_cidrlist_match(&c->allow, sa)) {
		hook_env_add_symbol(env, "REP_ALLOW", c->good_score, "allow list");
		verdict_set(&v, VERDICT_ACCEPT, 0, "reputation", NULL);
		hook_call_done(call, &v);
		return;
	}
	if (c->deny.n && cfg_cidrlist_match(&c->deny, sa)) {
		hook_env_add_symbol(env, "REP_DENY", c->deny_score, "deny list");
		rep_apply_action(&v, c->deny_action, c->delay, "deny list entry", env->client_ip);
		log_event(LOG_LVL_INFO, env->session_id, "event=reputation client=%s class=deny action=%s",
		    env->client_ip, rep_action_names[c->deny_action]);
		rep_done_unknown(w, call, &v);
		return;
	}
	if (reputation_keys(sa, c->prefix_v4, c->prefix_v6, ipkey, sizeof(ipkey), netkey,
	    sizeof(netkey)) < 0) {
		rep_done_unknown(w, call, NULL);
		return;
	}
	if (w->st) {
		/* A read is a lookup in the memory map: done inline. */
		if (rep_read_counts(w->st, ipkey, netkey, &ip, &net) < 0) {
			rep_done_unknown(w, call, NULL);
			return;
		}
		rep_decide(w, call, &ip, &net);
		return;
	}
	if (w->rs) {
		struct rep_session *s = env->module_ctx[slot];
		char rk1[REP_KEY_MAX + 16], rk2[REP_KEY_MAX + 16];
		const char *keys[2] = { rk1, rk2 };

		snprintf(rk1, sizeof(rk1), "mxgate:rep:%s", ipkey);
		snprintf(rk2, sizeof(rk2), "mxgate:rep:%s", netkey);

		if (s == NULL) {
			s = calloc(1, sizeof(*s));
			if (s == NULL) {
				rep_done_unknown(w, call, NULL);
				return;
			}
			s->w = w;
			env->module_ctx[slot] = s;
		}
		s->call = call;
		if (redis_store_eval(w->rs, w->lua_get, 2, 0, keys, NULL, rep_redis_get_cb, s, &s->req) == 0)
			return;
		s->call = NULL;
	}
	rep_done_unknown(w, call, NULL);
}

static void rep_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rep_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	redis_req_cancel(s->req);
	free(s);
	env->module_ctx[slot] = NULL;
}

/* ---- outcomes --------------------------------------------------------------------------- */

/* Adds one message outcome to the history of env's client (IP and network): merged by the
 * LMDB writer, or one Redis script (fire and forget). */
static void rep_record(struct rep_worker *w, const struct hook_env *env, enum reputation_outcome o)
{
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];

	if (reputation_keys((const struct sockaddr *)&env->client, w->cfg->prefix_v4,
	    w->cfg->prefix_v6, ipkey, sizeof(ipkey), netkey, sizeof(netkey)) < 0)
		return;
	log_event(LOG_LVL_DEBUG, env->session_id, "event=reputation_record client=%s outcome=%s",
	    env->client_ip, rep_outcome_names[o]);
	if (w->wr) {
		unsigned char op = (unsigned char)o;

		/* dropped (and logged) only when the pool is stuck and the queue full */
		lmdb_writer_merge(w->wr, ipkey, strlen(ipkey), &op, 1);
		lmdb_writer_merge(w->wr, netkey, strlen(netkey), &op, 1);
	} else if (w->rs) {
		const char *argv[5];
		char hl[32], ttl[32], rk1[REP_KEY_MAX + 16], rk2[REP_KEY_MAX + 16];

		snprintf(hl, sizeof(hl), "%llu", (unsigned long long)w->cfg->half_life);
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)w->cfg->half_life * 8);
		snprintf(rk1, sizeof(rk1), "mxgate:rep:%s", ipkey);
		snprintf(rk2, sizeof(rk2), "mxgate:rep:%s", netkey);
		argv[0] = rk1;
		argv[1] = rk2;
		argv[2] = rep_fields_short[o];
		argv[3] = hl;
		argv[4] = ttl;
		/* Fire and forget: a lost update while Redis is down costs little. */
		redis_store_write(w->rs, w->lua_add, 2, 3, argv, NULL, NULL, NULL);
	}
}

/* The outcome notifier: what a message that reached the end of data did. Refusals at MAIL,
 * RCPT or DATA judge the envelope rather than the client, and a filter's discard says
 * nothing either way: neither counts (as before the notifier). */
static void rep_outcome(void *wstate, int slot, struct hook_env *env, const struct hook_outcome *o)
{
	enum reputation_outcome r;

	(void)slot;
	if (o->session || o->stage != HOOK_EOM || o->code == 0 || (o->flags & HOOK_FLAG_DISCARDED))
		return;
	if (o->flags & HOOK_FLAG_VIRUS)
		r = REPUTATION_VIRUS;
	else if (o->code / 100 == 2)
		r = o->flags & HOOK_FLAG_SPAM ? REPUTATION_SPAM : REPUTATION_ACCEPTED;
	else if (o->code / 100 == 4)
		r = REPUTATION_TEMPFAILED;
	else
		r = o->flags & HOOK_FLAG_SPAM ? REPUTATION_SPAM : REPUTATION_REJECTED;
	rep_record(wstate, env, r);
}

const struct hook_module reputation_module = {
	.name = "reputation",
	.worker_init = rep_worker_init,
	.worker_free = rep_worker_free,
	.stages = rep_stages,
	.run = rep_run,
	.session_free = rep_session_free,
	.timeout_ms = rep_timeout_ms,
	.outcome = rep_outcome,
};
