/* ratelimit.c — the rate-limit filter module, see ratelimit.h. */
#include "ratelimit.h"

#include <ctype.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/domain.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/msgbuf.h"
#include "proxy/netaddr.h"
#include "gcra.h"
#include "ratelimit_local.h"
#include "store/redis.h"
#include "store/store.h"
#include "senderauth.h"

/* ---- configuration ------------------------------------------------------------------- */

static const char *const rl_key_names[] = { "ip", "ip_prefix", "helo", "sender",
	"sender_domain", "recipient", "auth_domain", "auth_user", "recipient_domain", NULL };
static const char *const rl_count_names[] = { "connections", "concurrency", "messages",
	"recipients", "bytes", NULL };
static const char *const rl_action_names[] = { "tempfail", "reject", "delay", NULL };
static const char *const rl_on_error_names[] = { "accept", "tempfail", "reject", NULL };
static const char *const rl_sender_names[] = { "any", "null", NULL };

const char *ratelimit_key_name(int key)
{
	return key >= 0 && key <= RATELIMIT_KEY_RECIPIENT_DOMAIN ? rl_key_names[key] : "?";
}

const char *ratelimit_count_name(int count)
{
	return count >= 0 && count <= RATELIMIT_COUNT_BYTES ? rl_count_names[count] : "?";
}

const char *ratelimit_action_name(int action)
{
	return action >= 0 && action <= RATELIMIT_ACTION_DELAY ? rl_action_names[action] : "?";
}

int ratelimit_limit_parse(const char *s, bool plain_ok, struct ratelimit_limit *out)
{
	struct cfg_rate rate;
	char *end;
	unsigned long long n;

	memset(out, 0, sizeof(*out));
	if (s == NULL || *s == '\0' || strlen(s) >= sizeof(out->text))
		return -1;
	if (strchr(s, '/') == NULL) {
		if (!plain_ok || !isdigit((unsigned char)*s))
			return -1;
		n = strtoull(s, &end, 10);
		if (*end || n == 0)
			return -1;
		out->count = n;
		out->period_ms = 0;
	} else {
		const char *slash = strchr(s, '/');
		char num[32], one[48];
		uint64_t size;

		/* Byte limits may use size suffixes: "50M/1h" = 50 MiB per hour. */
		if ((size_t)(slash - s) < sizeof(num) && slash > s &&
		    strchr("kKmMgG", slash[-1]) != NULL) {
			memcpy(num, s, (size_t)(slash - s));
			num[slash - s] = '\0';
			snprintf(one, sizeof(one), "1%s", slash);
			if (cfg_parse_size(num, &size) < 0 || size == 0 ||
			    cfg_parse_rate(one, &rate) < 0 || rate.period_ms == 0)
				return -1;
			rate.count = size;
		} else if (cfg_parse_rate(s, &rate) < 0 || rate.count == 0 || rate.period_ms == 0) {
			return -1;
		}
		out->count = rate.count;
		out->period_ms = rate.period_ms;
	}
	snprintf(out->text, sizeof(out->text), "%s", s);
	return 0;
}

/* CFG_CUSTOM parser of `limit:`; an absent key leaves count 0 for the rule validate to
 * report. */
static int rl_limit_custom(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct ratelimit_limit *l = dst;
	const char *s;
	size_t len;
	char buf[64];

	memset(l, 0, sizeof(*l));
	if (n == NULL)
		return 0;            /* the rule's validate reports a missing limit */
	if (!fy_node_is_scalar(n))
		return cfg_error(p, n, "expected a rate like 10/60s (or a number for concurrency)");
	s = fy_node_get_scalar(n, &len);
	if (s == NULL || len == 0 || len >= sizeof(buf))
		return cfg_error(p, n, "expected a rate like 10/60s (or a number for concurrency)");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (ratelimit_limit_parse(buf, true, l) < 0)
		return cfg_error(p, n, "bad limit '%s': expected N/DURATION like 10/60s, or N", buf);
	return 0;
}

/* Checks one rule; returns NULL or a reason (also used at worker_init as a fallback). */
static const char *rl_rule_problem(const struct ratelimit_rule_config *r)
{
	if (r->limit.count == 0)
		return "limit is required (N/DURATION, or N for concurrency)";
	if (r->count == RATELIMIT_COUNT_CONCURRENCY) {
		if (r->limit.period_ms != 0)
			return "concurrency takes a plain number, not a rate";
		if (r->key != RATELIMIT_KEY_IP && r->key != RATELIMIT_KEY_IP_PREFIX)
			return "concurrency is counted per ip or ip_prefix only";
	} else if (r->limit.period_ms == 0) {
		return "limit needs a period: N/DURATION like 10/60s";
	}
	if (r->count == RATELIMIT_COUNT_CONNECTIONS && r->key != RATELIMIT_KEY_IP &&
	    r->key != RATELIMIT_KEY_IP_PREFIX && r->key != RATELIMIT_KEY_HELO)
		return "connections are counted per ip, ip_prefix or helo";
	if (r->key == RATELIMIT_KEY_AUTH_DOMAIN && r->count != RATELIMIT_COUNT_MESSAGES &&
	    r->count != RATELIMIT_COUNT_BYTES)
		return "auth_domain is known at end of data: count messages or bytes";
	if (r->key == RATELIMIT_KEY_RECIPIENT_DOMAIN && r->count != RATELIMIT_COUNT_MESSAGES &&
	    r->count != RATELIMIT_COUNT_RECIPIENTS)
		return "recipient_domain is judged at RCPT: count messages or recipients";
	if (r->sender == RATELIMIT_SENDER_NULL && (r->count == RATELIMIT_COUNT_CONNECTIONS ||
	    r->count == RATELIMIT_COUNT_CONCURRENCY))
		return "sender: null is known at MAIL FROM: count messages, recipients or bytes";
	return NULL;
}

/* Cross-field check of one rule (limit form versus count, key versus count). */
static int rl_rule_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const char *why = rl_rule_problem(obj);

	return why ? cfg_error(p, n, "%s", why) : 0;
}

/* The section: store must be local or a redis:// URL. */
static int rl_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct ratelimit_config *c = obj;

	if (c->store && strcmp(c->store, "local") != 0 && !store_spec_is_redis(c->store))
		return cfg_error_key(p, n, "store", -1, "expected local, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	/* Two concurrency rules on one key would count each session twice in one counter. */
	for (size_t i = 0; i < c->rules.n; i++) {
		const struct ratelimit_rule_config *a = (const struct ratelimit_rule_config *)c->rules.v + i;

		for (size_t j = 0; j < i && a->count == RATELIMIT_COUNT_CONCURRENCY; j++) {
			const struct ratelimit_rule_config *b = (const struct ratelimit_rule_config *)c->rules.v + j;

			if (b->count == a->count && b->key == a->key && (a->key != RATELIMIT_KEY_IP_PREFIX ||
			    (a->prefix_v4 == b->prefix_v4 && a->prefix_v6 == b->prefix_v6)))
				return cfg_error_key(p, n, "rules", (long)i, "a second concurrency limit on "
				    "key %s (rule %zu has one): a session would count twice", rl_key_names[a->key], j);
		}
	}
	return 0;
}

static const struct cfg_field rl_rule_fields[] = {
	{ "key", CFG_ENUM, offsetof(struct ratelimit_rule_config, key), "ip", .choices = rl_key_names,
	  .doc = "what is counted per: ip, ip_prefix, helo, sender, sender_domain (the null sender <> is counted by these two only with sender: null, as the one value <>), recipient, recipient_domain (the recipient's domain, compared as accept_domains; messages count each domain of a message once, at its first RCPT, which gets the refusal), auth_domain (DKIM/SPF-aligned From domain, at end of data), auth_user (the SMTP AUTH user; unauthenticated sessions are not counted)" },
	{ "count", CFG_ENUM, offsetof(struct ratelimit_rule_config, count), "messages",
	  .choices = rl_count_names,
	  .doc = "what is counted: connections, concurrency, messages, recipients, bytes" },
	{ "limit", CFG_CUSTOM, offsetof(struct ratelimit_rule_config, limit), NULL,
	  .custom = rl_limit_custom, .doc = "N/DURATION (token bucket, burst N), or N for concurrency" },
	{ "action", CFG_ENUM, offsetof(struct ratelimit_rule_config, action), "tempfail",
	  .choices = rl_action_names, .doc = "over the limit: tempfail, reject or delay (tarpit)" },
	{ "prefix_v4", CFG_INT, offsetof(struct ratelimit_rule_config, prefix_v4), "24", 0, 32,
	  .doc = "IPv4 prefix length for key ip_prefix" },
	{ "prefix_v6", CFG_INT, offsetof(struct ratelimit_rule_config, prefix_v6), "64", 0, 128,
	  .doc = "IPv6 prefix length for key ip_prefix" },
	{ "delay", CFG_DURATION, offsetof(struct ratelimit_rule_config, delay), "5s", 0, 600000,
	  .doc = "how long action delay holds the reply" },
	{ "sender", CFG_ENUM, offsetof(struct ratelimit_rule_config, sender), "any",
	  .choices = rl_sender_names,
	  .doc = "any, or null: the rule counts only mail from the null sender <> (bounces; Haraka's rate_rcpt_null is { key: recipient, count: recipients, sender: null }), in a bucket of its own" },
	{ .key = NULL }
};

static const struct cfg_table rl_rule_table = {
	.name = "ratelimit.rules[]", .size = sizeof(struct ratelimit_rule_config),
	.fields = rl_rule_fields, .validate = rl_rule_validate,
};

static const struct cfg_field rl_fields[] = {
	{ "store", CFG_STRING, offsetof(struct ratelimit_config, store), "local",
	  .doc = "local (this process), redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db] (shared by all nodes)" },
	{ "timeout", CFG_DURATION, offsetof(struct ratelimit_config, timeout), "200ms", 1, 60000,
	  .doc = "Redis answer deadline per check; then the local table decides" },
	{ "max_keys", CFG_INT, offsetof(struct ratelimit_config, max_keys), "100000", 16, 100000000,
	  .doc = "keys held by the rate limits' local table (idle keys expire, the idlest is evicted); made at start: a change waits for a restart" },
	{ "concurrency_ttl", CFG_DURATION, offsetof(struct ratelimit_config, concurrency_ttl), "1h",
	  1000, 86400000, .doc = "lifetime of a Redis concurrency slot a crashed node never released (a live session's slot is renewed every third of it)" },
	{ "on_error", CFG_ENUM, offsetof(struct ratelimit_config, on_error), "accept",
	  .choices = rl_on_error_names, .doc = "verdict if a check overruns the module timeout" },
	{ "rules", CFG_STRUCT_LIST, offsetof(struct ratelimit_config, rules), NULL,
	  .sub = &rl_rule_table, .doc = "the limits: { key, count, limit, action, prefix_v4, prefix_v6, delay, sender }" },
	{ "allow", CFG_CIDRLIST, offsetof(struct ratelimit_config, allow), NULL,
	  .doc = "clients no rule counts nor refuses (as Postfix exempts $mynetworks from anvil's limits)" },
	{ .key = NULL }
};

const struct cfg_table ratelimit_config_table = {
	.name = "ratelimit", .size = sizeof(struct ratelimit_config), .fields = rl_fields,
	.validate = rl_validate,
};

void ratelimit_safe_copy(const char *in, char *out, size_t outlen)
{
	size_t i;

	if (outlen == 0)
		return;
	for (i = 0; in && in[i] && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = c > ' ' && c < 0x7f && c != '"' ? (char)c : '?';
	}
	out[i] = '\0';
}

/* ---- key values ------------------------------------------------------------------------ */

/* Lowercases s into out; -1 when it does not fit (never key on a truncation). */
static int rl_copy_lower(const char *s, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	if (s[i])
		return -1;   /* longer than any valid value: do not key on a truncation */
	/* domain.c's normal form: "a@Example.ORG." and "a@example.org" share one bucket */
	if (i > 1 && out[i - 1] == '.')
		i--;
	out[i] = '\0';
	return 0;
}

int ratelimit_key_value(const struct ratelimit_rule_config *r, const struct hook_env *env,
    const char *rcpt, char *out, size_t outlen)
{
	const struct sockaddr *sa = (const struct sockaddr *)&env->client;
	const char *at;

	if (r->sender == RATELIMIT_SENDER_NULL && (env->mail_from == NULL || env->mail_from[0] != '\0'))
		return -1;
	switch (r->key) {
	case RATELIMIT_KEY_IP:
		/* an IPv6 client is its network (limits.client_ipv6_prefix) */
		if (netaddr_client_string(sa, env->cfg ? (int)env->cfg->limits.client_ipv6_prefix : 128,
		    out, outlen) >= 0)
			return 0;
		if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6 && env->client_ip[0])
			return rl_copy_lower(env->client_ip, out, outlen);
		return -1;
	case RATELIMIT_KEY_IP_PREFIX:
		return netaddr_prefix_string(sa, (int)r->prefix_v4, (int)r->prefix_v6, out, outlen);
	case RATELIMIT_KEY_HELO:
		if (env->helo[0] == '\0')
			return -1;
		return rl_copy_lower(env->helo, out, outlen);
	case RATELIMIT_KEY_SENDER:
		/* <> is every bounce, DSN and auto-reply in the world, from any server: counted
		 * as one sender it would be one bucket for all of them, and a backscatter run
		 * would use it up for every customer's legitimate DSNs. Only a rule that asks for
		 * the null sender (sender: null) counts it, as the one value "<>". */
		if (env->mail_from == NULL || (env->mail_from[0] == '\0' && r->sender != RATELIMIT_SENDER_NULL))
			return -1;
		return rl_copy_lower(env->mail_from[0] ? env->mail_from : "<>", out, outlen);
	case RATELIMIT_KEY_SENDER_DOMAIN:
		/* the null sender has no domain (as "postmaster" has none): not counted, but by
		 * a sender: null rule, which asked for it */
		if (env->mail_from == NULL || (env->mail_from[0] == '\0' && r->sender != RATELIMIT_SENDER_NULL))
			return -1;
		if (env->mail_from[0] == '\0')
			return rl_copy_lower("<>", out, outlen);
		at = strrchr(env->mail_from, '@');
		if (at == NULL || at[1] == '\0')
			return -1;
		return rl_copy_lower(at + 1, out, outlen);
	case RATELIMIT_KEY_RECIPIENT:
		if (rcpt == NULL)
			rcpt = env->cur_rcpt;
		if (rcpt == NULL || rcpt[0] == '\0')
			return -1;
		return rl_copy_lower(rcpt, out, outlen);
	case RATELIMIT_KEY_RECIPIENT_DOMAIN:
		if (rcpt == NULL)
			rcpt = env->cur_rcpt;
		at = rcpt ? domain_of_address(rcpt) : NULL;
		/* accept_domains' normal form: "A.Test." and "a.test" are one bucket */
		if (at == NULL || at[0] == '\0')
			return -1;
		return domain_normalize(at, strlen(at), out, outlen) < 0 ? -1 : 0;
	case RATELIMIT_KEY_AUTH_DOMAIN:
		/* only what DKIM or SPF authenticated: an unauthenticated From never keys */
		at = senderauth_auth_domain(env);
		return at != NULL ? rl_copy_lower(at, out, outlen) : -1;
	case RATELIMIT_KEY_AUTH_USER:
		return env->auth_user ? rl_copy_lower(env->auth_user, out, outlen) : -1;
	}
	return -1;
}

/* ---- Redis scripts --------------------------------------------------------------------- */

/* GCRA with the server's clock, in microseconds (Lua numbers are doubles: exact to 2^53).
 * KEYS[1] key; ARGV period_ms, count, cost. Returns {allowed, retry_ms}. The key lives only
 * as long as its TAT is in the future (at most one period). A little slack (half a cell, at
 * most 1 ms) absorbs the rounding of the stored TAT. */
const char ratelimit_lua_gcra[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local period = tonumber(ARGV[1]) * 1000\n"
	"local limit = tonumber(ARGV[2])\n"
	"local cost = tonumber(ARGV[3])\n"
	"if cost > limit then cost = limit end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
	"if tat < now then tat = now end\n"
	"local inc = cost * period / limit\n"
	"local new = tat + inc\n"
	"if new - now > period + math.min(inc * 0.5, 1000) then\n"
	"  return {0, math.ceil((new - now - period) / 1000)}\n"
	"end\n"
	"local ttl = math.ceil((new - now) / 1000)\n"
	"if ttl < 1 then ttl = 1 end\n"
	"redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', ttl)\n"
	"return {1, 0}\n";

/* A charge the local table admitted while Redis gave no answer, added when it is back (the
 * write queue) so the shared count does not forget it: KEYS[1]; ARGV period_ms, count, cost,
 * at_us (the wall clock of the local decision). The TAT moves as if the charge had been made
 * at at_us, capped at one period ahead (a whole burst used up): a late charge never blocks a
 * sender longer than the limit itself would. A charge whose eval timed out may have been
 * applied already; counting it twice is the cheaper error. A bucket reset by the control
 * verb (RATELIMIT_RESET_PREFIX + the key after "mxgate:": the time of the reset, µs) takes
 * no charge made before the reset: one a node held through an outage would otherwise fill
 * the bucket the operator just emptied. Returns 1 (charged) or 0 (it had expired, or came
 * before a reset). */
static const char rl_lua_charge[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local period = tonumber(ARGV[1]) * 1000\n"
	"local limit = tonumber(ARGV[2])\n"
	"local cost = tonumber(ARGV[3])\n"
	"local at = tonumber(ARGV[4])\n"
	"local reset = tonumber(redis.call('GET', '" RATELIMIT_RESET_PREFIX "' .. "
	"string.sub(KEYS[1], string.len('mxgate:') + 1)))\n"
	"if reset and at <= reset then return 0 end\n"
	"if cost > limit then cost = limit end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1])) or at\n"
	"if tat < at then tat = at end\n"
	"local new = tat + cost * period / limit\n"
	"if new > now + period then new = now + period end\n"
	"local ttl = math.ceil((new - now) / 1000)\n"
	"if ttl < 1 then return 0 end\n"
	"redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', ttl)\n"
	"return 1\n";

/* Concurrency slots as a sorted set of session ids scored by expiry (ms): a node that dies
 * without releasing leaks nothing beyond concurrency_ttl. KEYS[1]; ARGV limit, member,
 * ttl_ms. Returns {acquired, current}. */
const char ratelimit_lua_acquire[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"local n = redis.call('ZCARD', KEYS[1])\n"
	"if n >= tonumber(ARGV[1]) then return {0, n} end\n"
	"redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])\n"
	"redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))\n"
	"return {1, n + 1}\n";

/* Renews a live session's slot (KEYS[1]; ARGV member, ttl_ms) on the server's clock: a slot
 * lives as long as its session, concurrency_ttl only bounds the slots of a node that died.
 * A slot already expired (an outage longer than the ttl) is added back: the session is
 * open. */
static const char rl_lua_renew[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
	"redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))\n"
	"return 1\n";

/* Gives back a charge the GCRA script made (the command was refused after all): KEYS[1];
 * ARGV period_ms, count, cost, at_us (the wall clock when the charge was asked for). The
 * TAT moves back by the charge, never before now. Through the write queue, after the charge
 * itself. A charge from before a reset of the bucket (RATELIMIT_RESET_PREFIX, as in
 * rl_lua_charge) was emptied with it: giving it back would take off charges made after the
 * reset. Returns 1, or 0 (the key had expired, or the charge came before a reset). */
static const char rl_lua_refund[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local period = tonumber(ARGV[1]) * 1000\n"
	"local limit = tonumber(ARGV[2])\n"
	"local cost = tonumber(ARGV[3])\n"
	"local at = tonumber(ARGV[4])\n"
	"local reset = tonumber(redis.call('GET', '" RATELIMIT_RESET_PREFIX "' .. "
	"string.sub(KEYS[1], string.len('mxgate:') + 1)))\n"
	"if reset and at and at <= reset then return 0 end\n"
	"if cost > limit then cost = limit end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1]))\n"
	"if not tat then return 0 end\n"
	"local new = tat - cost * period / limit\n"
	"if new <= now then redis.call('DEL', KEYS[1]) return 1 end\n"
	"local ttl = math.ceil((new - now) / 1000)\n"
	"if ttl < 1 then ttl = 1 end\n"
	"redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', ttl)\n"
	"return 1\n";

/* ---- module state ---------------------------------------------------------------------- */

#define RL_KEY_MAX 640

struct rl_worker {
	const struct ratelimit_config *cfg;
	const struct ratelimit_rule_config *rules;
	bool *rule_ok;
	size_t nrules;
	uv_loop_t *loop;
	int worker;
	struct local_table *local;
	struct redis_store *rs;        /* NULL for store: local */
	int lua_gcra, lua_acquire, lua_charge, lua_renew, lua_refund;
	unsigned stages;
	uv_timer_t *renew_timer;       /* renews the Redis slots of live sessions */
	struct rl_session *renew_list; /* sessions holding Redis slots */
};

struct rl_charge {                 /* a rate charge that may have to be given back */
	size_t rule;
	uint64_t cost;
	bool local, redis;             /* made in the local table / in Redis (or queued for it) */
	uint64_t at_us;                /* wall clock when it was asked for (rl_lua_refund) */
	char key[RL_KEY_MAX];
};

struct rl_held {                   /* a concurrency slot to give back */
	char key[RL_KEY_MAX];
	bool in_redis;
};

struct rl_op;

struct rl_session {
	struct rl_worker *w;
	struct rl_op *ops;             /* stage runs in flight */
	struct rl_held *held;
	size_t nheld;
	bool helo_counted;
	/* The charges of the last admitted RCPT, until the session has accepted it or not (a
	 * later filter, greylisting, may refuse it): given back when it was not. */
	struct rl_charge *rcpt_ch;
	size_t nrcpt_ch;
	size_t rcpt_before;            /* env->nrcpts when that RCPT was judged */
	bool renewed;                  /* linked in w->renew_list */
	struct rl_session *rnext, *rprev;
	char member[96];               /* this session in Redis concurrency sets */
};

struct rl_check {
	struct rl_op *op;
	size_t rule;
	char key[RL_KEY_MAX];          /* store key */
	char value[520];               /* what the rule keyed on, for logs */
	uint64_t cost;
	struct redis_req *req;
	bool done;
	bool charged_local, charged_redis;   /* an admitted rate charge: where it was made */
	uint64_t at_us;                /* wall clock when the check started (before Redis saw it) */
};

struct rl_op {
	struct rl_op *next;
	struct rl_session *s;
	struct hook_call *call;
	enum hook_stage stage;
	int pending;
	bool dispatching;
	struct verdict v;
	int rank;                      /* 0 none, 1 delay, 2 tempfail, 3 reject */
	size_t nchecks;
	struct rl_check *checks;
};

/* The rate limits' own process-wide table, shared by every worker and generation, made
 * with the first generation's max_keys. Not local_table_shared(): the greylist's triplets
 * (waiting hours for a retry) would evict the limits' buckets, and the first module to ask
 * would set its size. */
static struct local_table *rl_table;
static size_t rl_table_max;
static pthread_mutex_t rl_table_mu = PTHREAD_MUTEX_INITIALIZER;

static struct local_table *rl_table_get(size_t max_keys, int worker)
{
	struct local_table *t;

	pthread_mutex_lock(&rl_table_mu);
	if (rl_table == NULL) {
		rl_table = local_table_new(max_keys);
		rl_table_max = max_keys;
		if (rl_table)
			local_table_set_name(rl_table, "ratelimit");
	} else if (max_keys != rl_table_max && worker == 0) {
		log_event(LOG_LVL_WARNING, NULL, "event=config_unchanged key=ratelimit.max_keys "
		    "reason=\"takes effect at the next start\" running=%zu", rl_table_max);
	}
	t = rl_table;
	pthread_mutex_unlock(&rl_table_mu);
	return t;
}

struct local_table *ratelimit_local_table(void)
{
	struct local_table *t;

	pthread_mutex_lock(&rl_table_mu);
	t = rl_table;
	pthread_mutex_unlock(&rl_table_mu);
	return t;
}

static char rl_node_id[24];
static pthread_once_t rl_node_once = PTHREAD_ONCE_INIT;

/* A random id for this process, naming its sessions in shared Redis concurrency sets. */
static void rl_node_init(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint64_t)uv_hrtime() ^ (uint64_t)getpid();
	snprintf(rl_node_id, sizeof(rl_node_id), "%016llx", (unsigned long long)r);
}

/* The local table's clock: monotonic ns (the same for every key of the table). */
static uint64_t rl_now_ns(void)
{
	return uv_hrtime();
}

/* See ratelimit.h. */
void ratelimit_reset_key(const char *store_key, char *out, size_t outlen)
{
	const size_t skip = sizeof("mxgate:") - 1;

	snprintf(out, outlen, "%s%s", RATELIMIT_RESET_PREFIX,
	    strncmp(store_key, "mxgate:", skip) == 0 ? store_key + skip : store_key);
}

/* The wall clock in µs: the time a charge was asked for, compared with a reset's time on
 * Redis's clock (the nodes and Redis are expected to keep time by NTP). */
static uint64_t rl_wall_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000ull + (uint64_t)tv.tv_usec;
}

/* The stages a rule counts at (bitmask of 1u << HOOK_x). */
static unsigned rl_rule_stages(const struct ratelimit_rule_config *r)
{
	switch (r->count) {
	case RATELIMIT_COUNT_CONNECTIONS:
		return r->key == RATELIMIT_KEY_HELO ? 1u << HOOK_HELO : 1u << HOOK_CONNECT;
	case RATELIMIT_COUNT_CONCURRENCY:
		return (1u << HOOK_CONNECT) | (1u << HOOK_CLOSE);
	case RATELIMIT_COUNT_MESSAGES:
		/* the authenticated domain exists only once senderauth has judged the message; a
		 * recipient domain is counted at its first RCPT, so that RCPT alone is refused */
		if (r->key == RATELIMIT_KEY_RECIPIENT_DOMAIN)
			return 1u << HOOK_RCPT;
		return r->key == RATELIMIT_KEY_AUTH_DOMAIN ? 1u << HOOK_EOM : 1u << HOOK_DATA;
	case RATELIMIT_COUNT_RECIPIENTS:
		return 1u << HOOK_RCPT;
	case RATELIMIT_COUNT_BYTES:
		return 1u << HOOK_EOM;
	}
	return 0;
}

/* Renews (or puts back) the Redis slots of this worker's live sessions, through the write
 * queue. */
static void rl_renew_all(struct rl_worker *w)
{
	char ttl[24];

	snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)w->cfg->concurrency_ttl);
	for (struct rl_session *s = w->renew_list; s; s = s->rnext)
		for (size_t i = 0; i < s->nheld; i++) {
			const char *argv[3] = { s->held[i].key, s->member, ttl };

			if (s->held[i].in_redis)
				redis_store_write(w->rs, w->lua_renew, 1, 2, argv, NULL, NULL, NULL);
		}
}

/* Every third of concurrency_ttl: the Redis slots of this worker's live sessions get a
 * new lifetime (only while the store is up: an outage's renewals would be stale; the
 * connection coming back puts them back, rl_store_up_cb). */
static void rl_renew_cb(uv_timer_t *t)
{
	struct rl_worker *w = t->data;

	if (redis_store_is_up(w->rs))
		rl_renew_all(w);
}

/* The connection is up (again): a Redis restarted empty, or one that expired the slots
 * during a long outage, holds none of the live sessions' slots. They are put back now rather
 * than at their next renewal (up to a third of concurrency_ttl away, while up to the limit
 * more sessions would get in on every node). Idempotent (ZADD of the same member). */
static void rl_store_up_cb(void *arg)
{
	struct rl_worker *w = arg;

	if (w->renew_list)
		rl_renew_all(w);
}

static void rl_renew_closed_cb(uv_handle_t *h)
{
	free(h);
}

/* The renewal timer, when a concurrency rule uses Redis; it does not keep the loop alive. */
static int rl_renew_start(struct rl_worker *w)
{
	uint64_t every = w->cfg->concurrency_ttl / 3;
	bool any = false;

	for (size_t i = 0; i < w->nrules; i++)
		any |= w->rule_ok[i] && w->rules[i].count == RATELIMIT_COUNT_CONCURRENCY;
	if (!any)
		return 0;
	w->renew_timer = malloc(sizeof(*w->renew_timer));
	if (w->renew_timer == NULL || uv_timer_init(w->loop, w->renew_timer) != 0) {
		free(w->renew_timer);
		w->renew_timer = NULL;
		return -1;
	}
	w->renew_timer->data = w;
	uv_timer_start(w->renew_timer, rl_renew_cb, every ? every : 1, every ? every : 1);
	uv_unref((uv_handle_t *)w->renew_timer);
	return 0;
}

static int rl_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct ratelimit_config *c = &cfg->ratelimit;
	struct rl_worker *w;

	*wstate = NULL;
	if (c->rules.n == 0)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = c;
	w->rules = c->rules.v;
	w->nrules = c->rules.n;
	w->loop = loop;
	w->worker = worker;
	w->rule_ok = calloc(w->nrules, sizeof(*w->rule_ok));
	w->local = rl_table_get((size_t)c->max_keys, worker);
	if (w->rule_ok == NULL || w->local == NULL)
		goto fail;
	pthread_once(&rl_node_once, rl_node_init);
	for (size_t i = 0; i < w->nrules; i++) {
		const char *why = rl_rule_problem(&w->rules[i]);

		if (why) {
			if (worker == 0)
				log_event(LOG_LVL_ERROR, NULL, "event=config_error module=ratelimit rule=%zu reason=\"%s\"",
				    i, why);
			continue;
		}
		w->rule_ok[i] = true;
		w->stages |= rl_rule_stages(&w->rules[i]);
	}
	if (store_spec_is_redis(c->store)) {
		w->rs = redis_store_new(loop, c->store, c->timeout, worker);
		if (w->rs == NULL)
			goto fail;
		redis_store_set_name(w->rs, "ratelimit");
		w->lua_gcra = redis_store_add_script(w->rs, ratelimit_lua_gcra);
		w->lua_acquire = redis_store_add_script(w->rs, ratelimit_lua_acquire);
		w->lua_charge = redis_store_add_script(w->rs, rl_lua_charge);
		w->lua_refund = redis_store_add_script(w->rs, rl_lua_refund);
		w->lua_renew = redis_store_add_script(w->rs, rl_lua_renew);
		redis_store_set_up_cb(w->rs, rl_store_up_cb, w);
		if (rl_renew_start(w) < 0)
			goto fail;
	}
	*wstate = w;
	return 0;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=ratelimit worker=%d reason=init", worker);
	redis_store_free(w->rs);
	free(w->rule_ok);
	free(w);
	return -1;
}

static void rl_worker_free(void *wstate)
{
	struct rl_worker *w = wstate;

	if (w == NULL)
		return;
	if (w->renew_timer) {
		uv_timer_stop(w->renew_timer);
		uv_close((uv_handle_t *)w->renew_timer, rl_renew_closed_cb);
	}
	redis_store_free(w->rs);
	free(w->rule_ok);
	free(w);
}

static unsigned rl_stages(void *wstate)
{
	struct rl_worker *w = wstate;

	return w ? w->stages : 0;
}

static uint64_t rl_timeout_ms(void *wstate)
{
	struct rl_worker *w = wstate;

	/* Our own Redis deadline falls back locally first; this is only a backstop. */
	return w ? w->cfg->timeout * 2 + 100 : 0;
}

static enum verdict_action rl_on_error(void *wstate)
{
	struct rl_worker *w = wstate;

	if (w && w->cfg->on_error == RATELIMIT_ON_ERROR_TEMPFAIL)
		return VERDICT_TEMPFAIL;
	if (w && w->cfg->on_error == RATELIMIT_ON_ERROR_REJECT)
		return VERDICT_REJECT;
	return VERDICT_CONTINUE;
}

/* ---- checks ---------------------------------------------------------------------------- */

/* Store key: the rule's identity (so a reload with the same rule keeps its state) + value.
 * A rate's state is only meaningful under its own limit (a changed limit starts over); a
 * concurrency count is the sessions open now, whatever the limit: its key has no limit, so
 * sessions opened under an older limit (a reload, another node) count against a new one. */
void ratelimit_store_key(const struct ratelimit_rule_config *r, const char *value, char *out,
    size_t outlen)
{
	if (r->count == RATELIMIT_COUNT_CONCURRENCY)
		snprintf(out, outlen, "mxgate:rl:concurrency:%s:%s", rl_key_names[r->key], value);
	else
		snprintf(out, outlen, "mxgate:rl:%s:%s%s:%s:%s", rl_count_names[r->count],
		    rl_key_names[r->key], r->sender == RATELIMIT_SENDER_NULL ? "+null" : "", r->limit.text,
		    value);
}

/* Records a decision about one check; over the limit it may raise the op's verdict. */
static void rl_check_decide(struct rl_check *ck, bool allowed, const char *store)
{
	struct rl_op *op = ck->op;
	struct rl_session *s = op->s;
	const struct ratelimit_rule_config *r = &s->w->rules[ck->rule];
	struct hook_env *env = hook_call_env(op->call);
	int rank;

	char value[200];

	ck->done = true;
	if (allowed) {
		if (r->count != RATELIMIT_COUNT_CONCURRENCY) {
			if (strcmp(store, "redis") == 0)
				ck->charged_redis = true;
			else
				ck->charged_local = true;
		}
		return;
	}
	ratelimit_safe_copy(ck->value, value, sizeof(value));
	counter_inc(COUNTER_RATELIMIT_HITS);	/* mxgate_ratelimit_hits_total */
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=ratelimit key=%s%s value=%s count=%s limit=%s action=%s store=%s client=%s",
	    rl_key_names[r->key], r->sender == RATELIMIT_SENDER_NULL ? " sender=null" : "", value,
	    rl_count_names[r->count], r->limit.text,
	    rl_action_names[r->action], store, env->client_ip);
	rank = r->action == RATELIMIT_ACTION_REJECT ? 3 : r->action == RATELIMIT_ACTION_TEMPFAIL ? 2 : 1;
	if (rank < op->rank || (rank == op->rank && rank != 1))
		return;
	if (rank == 1) {
		uint32_t d = r->delay > 600000 ? 600000 : (uint32_t)r->delay;

		if (op->rank == 1 && op->v.delay_ms >= d)
			return;
		verdict_set(&op->v, VERDICT_CONTINUE, 0, "ratelimit", NULL);
		op->v.delay_ms = d;
	} else if (rank == 2) {
		if (op->stage == HOOK_CONNECT)
			verdict_set(&op->v, VERDICT_TEMPFAIL, 421, "ratelimit",
			    "4.7.0 rate limit exceeded for %s %s: %s, try again later",
			    rl_key_names[r->key], value, r->limit.text);
		else    /* count: recipients too: not RFC 5321 4.5.3.1.10's 452, which asks for the
			 * rest in another transaction at once; a rate refuses that one too (a policy
			 * deferral, Postfix's anvil 450 4.7.1, rspamd 451 4.7.1) */
			verdict_set(&op->v, VERDICT_TEMPFAIL, 451, "ratelimit",
			    "4.7.1 rate limit exceeded for %s %s: %s, try again later",
			    rl_key_names[r->key], value, r->limit.text);
	} else {
		/* 550 everywhere: a refusal at connect is given at MAIL/RCPT by the session
		 * (postscreen-style), where 550 is the code for a refused command. */
		verdict_set(&op->v, VERDICT_REJECT, 550, "ratelimit",
		    "5.7.1 rate limit exceeded for %s %s: %s", rl_key_names[r->key], value,
		    r->limit.text);
	}
	op->rank = rank;
}

/* Remembers a concurrency slot the session must give back when it ends. */
static void rl_session_hold(struct rl_session *s, const char *key, bool in_redis)
{
	struct rl_held *h = realloc(s->held, (s->nheld + 1) * sizeof(*s->held));

	if (h == NULL)
		return;     /* the slot leaks until concurrency_ttl (Redis) or forever (local) */
	s->held = h;
	snprintf(h[s->nheld].key, sizeof(h[s->nheld].key), "%s", key);
	h[s->nheld].in_redis = in_redis;
	s->nheld++;
	if (in_redis && !s->renewed && s->w->renew_timer) {
		s->rprev = NULL;
		s->rnext = s->w->renew_list;
		if (s->rnext)
			s->rnext->rprev = s;
		s->w->renew_list = s;
		s->renewed = true;
	}
}

/* Decides a check in the local table, synchronously. Returns whether it was allowed. */
static bool rl_check_local(struct rl_check *ck)
{
	struct rl_session *s = ck->op->s;
	const struct ratelimit_rule_config *r = &s->w->rules[ck->rule];
	struct gcra_result res;
	struct gcra_limit l;
	int rc;

	if (r->count == RATELIMIT_COUNT_CONCURRENCY) {
		rc = ratelimit_local_acquire(s->w->local, ck->key, r->limit.count, rl_now_ns());
		if (rc == 1)
			rl_session_hold(s, ck->key, false);
		rl_check_decide(ck, rc != 0, "local");   /* -1 (no memory): fail open */
		return rc != 0;
	}
	l.count = r->limit.count;
	l.period_ns = r->limit.period_ms * 1000000ull;
	if (ratelimit_local_gcra(s->w->local, ck->key, &l, ck->cost, rl_now_ns(), &res) < 0)
		res.allowed = true;
	rl_check_decide(ck, res.allowed, "local");
	return res.allowed;
}

/* Redis gave no answer (down: never sent; sent: timed out): the local table decides, and
 * what it admitted is not lost to the shared count — a rate charge is queued for Redis
 * (rl_lua_charge); a concurrency slot the timed-out script may have taken there is
 * given back (ZREM) with the session's others. */
static void rl_check_fallback(struct rl_check *ck, bool was_sent)
{
	struct rl_session *s = ck->op->s;
	struct rl_worker *w = s->w;
	const struct ratelimit_rule_config *r = &w->rules[ck->rule];
	char a1[32], a2[32], a3[32], a4[32];
	const char *argv[5] = { ck->key, a1, a2, a3, a4 };

	if (r->count == RATELIMIT_COUNT_CONCURRENCY) {
		if (was_sent)
			rl_session_hold(s, ck->key, true);
		rl_check_local(ck);
		return;
	}
	if (!rl_check_local(ck))
		return;                /* GCRA charges only what it admits */
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)r->limit.period_ms);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)r->limit.count);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)ck->cost);
	/* the time the check started: the refund of this charge names the same one */
	snprintf(a4, sizeof(a4), "%llu", (unsigned long long)ck->at_us);
	/* a full queue is counted and logged by the store */
	if (redis_store_write(w->rs, w->lua_charge, 1, 4, argv, NULL, NULL, NULL) == 0)
		ck->charged_redis = true;
}

/* Gives back one rate charge: in the local table and/or Redis (through the write queue,
 * behind the charge if that is still queued). */
static void rl_refund(struct rl_worker *w, size_t rule, const char *key, uint64_t cost,
    bool local, bool redis, uint64_t at_us)
{
	const struct ratelimit_rule_config *r;
	struct gcra_limit l;
	char a1[32], a2[32], a3[32], a4[32];
	const char *argv[5] = { key, a1, a2, a3, a4 };

	if (rule >= w->nrules)
		return;
	r = &w->rules[rule];
	if (local) {
		char mark[RL_KEY_MAX + 16];
		uint64_t now = rl_now_ns();

		l.count = r->limit.count;
		l.period_ns = r->limit.period_ms * 1000000ull;
		/* a charge the control verb's reset emptied with the bucket is not given back:
		 * that would take off a charge made after the reset */
		ratelimit_reset_key(key, mark, sizeof(mark));
		if (at_us > ratelimit_local_reset_at(w->local, mark, now))
			ratelimit_local_refund(w->local, key, &l, cost, now);
	}
	if (redis && w->rs) {
		snprintf(a1, sizeof(a1), "%llu", (unsigned long long)r->limit.period_ms);
		snprintf(a2, sizeof(a2), "%llu", (unsigned long long)r->limit.count);
		snprintf(a3, sizeof(a3), "%llu", (unsigned long long)cost);
		snprintf(a4, sizeof(a4), "%llu", (unsigned long long)at_us);
		redis_store_write(w->rs, w->lua_refund, 1, 4, argv, NULL, NULL, NULL);
	}
}

/* The last admitted RCPT is decided: accepted when env holds more recipients than when it
 * was judged (the transaction's end, RSET included, is seen before its recipients go);
 * otherwise a later filter refused it and its charges are given back. */
static void rl_settle_rcpt(struct rl_session *s, const struct hook_env *env)
{
	if (s->nrcpt_ch == 0)
		return;
	if (env->nrcpts <= s->rcpt_before)
		for (size_t i = 0; i < s->nrcpt_ch; i++)
			rl_refund(s->w, s->rcpt_ch[i].rule, s->rcpt_ch[i].key, s->rcpt_ch[i].cost,
			    s->rcpt_ch[i].local, s->rcpt_ch[i].redis, s->rcpt_ch[i].at_us);
	free(s->rcpt_ch);
	s->rcpt_ch = NULL;
	s->nrcpt_ch = 0;
}

/* After a stage run: a refusal (tempfail, reject) gives back what its other rules were
 * charged ("a refused attempt consumes nothing"); an admitted RCPT keeps its charges aside
 * until the session has accepted it (rl_settle_rcpt). */
static void rl_op_settle(struct rl_op *op)
{
	struct rl_session *s = op->s;
	size_t n = 0;

	for (size_t i = 0; i < op->nchecks; i++)
		n += op->checks[i].charged_local || op->checks[i].charged_redis;
	if (n == 0)
		return;
	if (op->rank >= 2) {
		for (size_t i = 0; i < op->nchecks; i++) {
			struct rl_check *ck = &op->checks[i];

			if (ck->charged_local || ck->charged_redis)
				rl_refund(s->w, ck->rule, ck->key, ck->cost, ck->charged_local,
				    ck->charged_redis, ck->at_us);
		}
		return;
	}
	if (op->stage != HOOK_RCPT)
		return;
	rl_settle_rcpt(s, hook_call_env(op->call));
	s->rcpt_ch = calloc(n, sizeof(*s->rcpt_ch));
	if (s->rcpt_ch == NULL)
		return;             /* kept: counted as accepted */
	for (size_t i = 0; i < op->nchecks; i++) {
		struct rl_check *ck = &op->checks[i];
		struct rl_charge *c;

		if (!ck->charged_local && !ck->charged_redis)
			continue;
		c = &s->rcpt_ch[s->nrcpt_ch++];
		c->rule = ck->rule;
		c->cost = ck->cost;
		c->local = ck->charged_local;
		c->redis = ck->charged_redis;
		c->at_us = ck->at_us;
		memcpy(c->key, ck->key, sizeof(c->key));
	}
	s->rcpt_before = hook_call_env(op->call)->nrcpts;
}

/* All checks of a stage run are decided: unlink and free the op, then complete the call
 * with the worst verdict (last: the chain may run on synchronously). */
static void rl_op_finish(struct rl_op *op)
{
	struct rl_session *s = op->s;
	struct rl_op **pp;
	struct hook_call *call = op->call;
	struct verdict v = op->v;
	bool have = op->rank > 0;

	/* A HELO is counted once per session, when it is admitted (or only delayed): a refused
	 * one consumed nothing, and the next HELO of the session is checked again. */
	if (op->stage == HOOK_HELO && op->rank < 2)
		s->helo_counted = true;
	rl_op_settle(op);
	for (pp = &s->ops; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	free(op->checks);
	free(op);
	hook_call_done(call, have ? &v : NULL);
}

/* A Redis decision for one check; no usable answer means the local table decides. */
static void rl_redis_reply_cb(void *arg, const redisReply *reply)
{
	struct rl_check *ck = arg;
	struct rl_op *op = ck->op;
	const struct ratelimit_rule_config *r = &op->s->w->rules[ck->rule];

	ck->req = NULL;
	if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER) {
		bool allowed = reply->element[0]->integer != 0;

		if (allowed && r->count == RATELIMIT_COUNT_CONCURRENCY)
			rl_session_hold(op->s, ck->key, true);
		rl_check_decide(ck, allowed, "redis");
	} else if (reply && reply->type == REDIS_REPLY_ERROR) {
		/* A script error: this check is decided locally. */
		char rv[160];

		log_event(LOG_LVL_WARNING, hook_call_env(op->call)->session_id,
		    "event=redis_error module=ratelimit reply=%s", log_val(rv, sizeof(rv), reply->str));
		rl_check_local(ck);
	} else {
		/* Unreachable or timed out: decided locally, kept for Redis. */
		rl_check_fallback(ck, true);
	}
	if (--op->pending == 0 && !op->dispatching)
		rl_op_finish(op);
}

/* Sends one check to Redis (async) or decides it in the local table (sync). */
static void rl_check_start(struct rl_check *ck)
{
	struct rl_op *op = ck->op;
	struct rl_session *s = op->s;
	struct rl_worker *w = s->w;
	const struct ratelimit_rule_config *r = &w->rules[ck->rule];
	char a1[32], a2[32], a3[32];
	const char *argv[4];
	int rc;

	ck->at_us = rl_wall_us();
	/* redis_store_eval fails fast (-1) during an outage: no waiting at all then. */
	if (w->rs == NULL)
		goto local;
	argv[0] = ck->key;
	if (r->count == RATELIMIT_COUNT_CONCURRENCY) {
		snprintf(a1, sizeof(a1), "%llu", (unsigned long long)r->limit.count);
		snprintf(a3, sizeof(a3), "%llu", (unsigned long long)w->cfg->concurrency_ttl);
		argv[1] = a1;
		argv[2] = s->member;
		argv[3] = a3;
		rc = redis_store_eval(w->rs, w->lua_acquire, 1, 3, argv, NULL, rl_redis_reply_cb, ck,
		    &ck->req);
	} else {
		snprintf(a1, sizeof(a1), "%llu", (unsigned long long)r->limit.period_ms);
		snprintf(a2, sizeof(a2), "%llu", (unsigned long long)r->limit.count);
		snprintf(a3, sizeof(a3), "%llu", (unsigned long long)ck->cost);
		argv[1] = a1;
		argv[2] = a2;
		argv[3] = a3;
		rc = redis_store_eval(w->rs, w->lua_gcra, 1, 3, argv, NULL, rl_redis_reply_cb, ck,
		    &ck->req);
	}
	if (rc == 0) {
		op->pending++;
		return;
	}
	rl_check_fallback(ck, false);
	return;
local:
	rl_check_local(ck);
}

/* Appends a check of rule for value with cost; NULL when out of memory (the check is
 * skipped). */
static struct rl_check *rl_op_add(struct rl_op *op, size_t rule, const char *value, uint64_t cost)
{
	struct rl_check *c = realloc(op->checks, (op->nchecks + 1) * sizeof(*op->checks));
	struct rl_check *ck;

	if (c == NULL)
		return NULL;
	op->checks = c;
	ck = &c[op->nchecks++];
	memset(ck, 0, sizeof(*ck));
	ck->rule = rule;
	ck->cost = cost ? cost : 1;
	snprintf(ck->value, sizeof(ck->value), "%s", value);
	ratelimit_store_key(&op->s->w->rules[rule], value, ck->key, sizeof(ck->key));
	return ck;
}

/* Does rule r count at this stage (for this session)? */
static bool rl_rule_counts_at(const struct ratelimit_rule_config *r, enum hook_stage st,
    const struct rl_session *s)
{
	if (st == HOOK_CLOSE)
		return false;
	if (!(rl_rule_stages(r) & (1u << st)))
		return false;
	if (st == HOOK_HELO && s->helo_counted)
		return false;
	return true;
}

/* Gives back the session's concurrency slots (Redis: through the store's write queue). */
static void rl_release_held(struct rl_session *s)
{
	struct rl_worker *w = s->w;

	for (size_t i = 0; i < s->nheld; i++) {
		if (s->held[i].in_redis) {
			const char *argv[3] = { "ZREM", s->held[i].key, s->member };

			/* Through the write queue: given back when Redis is back, not only after
			 * concurrency_ttl (a full queue: counted and logged by the store). */
			if (w->rs)
				redis_store_write(w->rs, -1, 0, 3, argv, NULL, NULL, NULL);
		} else {
			ratelimit_local_release(w->local, s->held[i].key, rl_now_ns());
		}
	}
	free(s->held);
	s->held = NULL;
	s->nheld = 0;
	if (s->renewed) {
		if (s->rprev)
			s->rprev->rnext = s->rnext;
		else
			w->renew_list = s->rnext;
		if (s->rnext)
			s->rnext->rprev = s->rprev;
		s->renewed = false;
	}
}

/* Messages per recipient domain: whether this transaction already holds an accepted
 * recipient of domain (normal form) — the message was counted for it at that RCPT. */
static bool rl_domain_counted(const struct ratelimit_rule_config *r, const struct hook_env *env,
    const char *domain)
{
	char d[DOMAIN_MAX + 1];

	for (size_t j = 0; j < env->nrcpts; j++)
		if (ratelimit_key_value(r, env, env->rcpts[j].addr, d, sizeof(d)) == 0 &&
		    strcmp(d, domain) == 0)
			return true;
	return false;
}

static void rl_run(void *wstate, int slot, struct hook_call *call)
{
	struct rl_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	enum hook_stage st = hook_call_stage(call);
	struct rl_session *s = env->module_ctx[slot];
	struct rl_op *op;
	char value[520];
	uint64_t cost = 1;

	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			hook_call_done(call, NULL);
			return;
		}
		s->w = w;
		snprintf(s->member, sizeof(s->member), "%s:%s", rl_node_id, env->session_id);
		env->module_ctx[slot] = s;
	}
	rl_settle_rcpt(s, env);     /* a new stage: the last RCPT was accepted or not */
	if (st == HOOK_CLOSE) {
		rl_release_held(s);
		hook_call_done(call, NULL);
		return;
	}
	if (w->cfg->allow.n && cfg_cidrlist_match(&w->cfg->allow, (const struct sockaddr *)&env->client)) {
		hook_call_done(call, NULL);   /* never counted: nothing held, nothing to give back */
		return;
	}
	if (st == HOOK_CONNECT && env->cfg && reputation_allows_client(&env->cfg->reputation, env)) {
		/* reputation.allow skips the connect stage's checks (connections, concurrency):
		 * reputation's accept would end the stage after this entry (modules.def) */
		hook_call_done(call, NULL);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	op->s = s;
	op->call = call;
	op->stage = st;
	if (st == HOOK_EOM && env->msg)
		cost = msgbuf_len(env->msg);
	for (size_t i = 0; i < w->nrules; i++) {
		const struct ratelimit_rule_config *r = &w->rules[i];

		if (!w->rule_ok[i] || !rl_rule_counts_at(r, st, s))
			continue;
		if (r->key == RATELIMIT_KEY_RECIPIENT && st != HOOK_RCPT) {
			/* messages / bytes per recipient: once for each accepted recipient */
			for (size_t j = 0; j < env->nrcpts; j++)
				if (ratelimit_key_value(r, env, env->rcpts[j].addr, value, sizeof(value)) == 0)
					rl_op_add(op, i, value, r->count == RATELIMIT_COUNT_BYTES ? cost : 1);
			continue;
		}
		if (ratelimit_key_value(r, env, NULL, value, sizeof(value)) < 0)
			continue;
		if (r->key == RATELIMIT_KEY_RECIPIENT_DOMAIN && r->count == RATELIMIT_COUNT_MESSAGES &&
		    rl_domain_counted(r, env, value))
			continue;
		rl_op_add(op, i, value, r->count == RATELIMIT_COUNT_BYTES ? cost : 1);
	}
	op->next = s->ops;
	s->ops = op;
	op->dispatching = true;
	for (size_t i = 0; i < op->nchecks; i++) {
		op->checks[i].op = op;
		rl_check_start(&op->checks[i]);
	}
	op->dispatching = false;
	if (op->pending == 0)
		rl_op_finish(op);
}

static void rl_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rl_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	while (s->ops) {
		struct rl_op *op = s->ops;

		s->ops = op->next;
		for (size_t i = 0; i < op->nchecks; i++)
			redis_req_cancel(op->checks[i].req);
		free(op->checks);
		free(op);
	}
	rl_release_held(s);
	free(s->rcpt_ch);
	free(s);
	env->module_ctx[slot] = NULL;
}

/* A transaction (or the session) ended: its last RCPT is decided. */
static void rl_outcome(void *wstate, int slot, struct hook_env *env, const struct hook_outcome *o)
{
	struct rl_session *s = env->module_ctx[slot];

	(void)wstate;
	(void)o;
	if (s)
		rl_settle_rcpt(s, env);
}

const struct hook_module ratelimit_module = {
	.name = "ratelimit",
	.flags = HOOK_MODULE_BEFORE_TEASER,    /* a Redis store's 421 is heard alone too */
	.worker_init = rl_worker_init,
	.worker_free = rl_worker_free,
	.stages = rl_stages,
	.run = rl_run,
	.session_free = rl_session_free,
	.timeout_ms = rl_timeout_ms,
	.on_error = rl_on_error,
	.outcome = rl_outcome,
};
