/* auth_guard.c — failed-AUTH counts per address and per user, see auth_guard.h. */
#include "auth_guard.h"
#include "auth_config.h"
#include "log.h"
#include "netaddr.h"
#include "store/local_table.h"
#include "store/redis.h"
#include "store/store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_GUARD_KEY_MAX 320

const char auth_guard_lua[] =
	"local cost = tonumber(ARGV[1])\n"
	"local out = {}\n"
	"for i, k in ipairs(KEYS) do\n"
	"  if cost > 0 then\n"
	"    out[i] = redis.call('INCRBY', k, cost)\n"
	"    redis.call('PEXPIRE', k, tonumber(ARGV[2]))\n"
	"  else\n"
	"    out[i] = tonumber(redis.call('GET', k) or '0')\n"
	"  end\n"
	"end\n"
	"return out\n";

struct auth_guard {
	const struct auth_config *cfg;
	int prefix_v6;               /* limits.client_ipv6_prefix */
	struct local_table *local;
	struct redis_store *rs;      /* NULL for store: local */
	int lua;
};

struct auth_guard_req {
	struct auth_guard *g;
	struct redis_req *req;
	auth_guard_cb cb;
	void *arg;
	unsigned cost;
	char ipkey[AUTH_GUARD_KEY_MAX], userkey[AUTH_GUARD_KEY_MAX];
};

int auth_guard_key(const char *kind, const char *value, char *out, size_t cap)
{
	int n = snprintf(out, cap, "mxgate:authfail:%s:", kind);
	size_t i = (size_t)n;

	if (n < 0 || (size_t)n >= cap)
		return -1;
	for (const char *p = value; *p; p++) {
		if (i + 1 >= cap)
			return -1;      /* never count on a truncation */
		out[i++] = (char)tolower((unsigned char)*p);
	}
	out[i] = '\0';
	return 0;
}

uint64_t auth_guard_delay_ms(const struct auth_config *cfg, uint64_t n)
{
	uint64_t d = cfg->failure_delay;

	if (n == 0 || d == 0)
		return 0;
	for (uint64_t i = 1; i < n && d < cfg->max_delay; i++)
		d *= 2;
	return d < cfg->max_delay ? d : cfg->max_delay;
}

struct auth_guard *auth_guard_new(uv_loop_t *loop, const struct auth_config *cfg, int prefix_v6,
    int worker)
{
	struct auth_guard *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->cfg = cfg;
	g->prefix_v6 = prefix_v6;
	g->local = local_table_shared(0);
	if (g->local == NULL) {
		free(g);
		return NULL;
	}
	if (store_spec_is_redis(cfg->store)) {
		g->rs = redis_store_new(loop, cfg->store, 200, worker);
		if (g->rs == NULL) {
			free(g);
			return NULL;
		}
		g->lua = redis_store_add_script(g->rs, auth_guard_lua);
	}
	return g;
}

void auth_guard_free(struct auth_guard *g)
{
	if (g == NULL)
		return;
	redis_store_free(g->rs);
	free(g);
}

/* ---- the local table ------------------------------------------------------------------ */

struct auth_guard_local { unsigned cost; uint64_t window_ns; uint64_t count; };

/* Under the key's lock: val counts failures, alive until window after the last one. */
static int auth_guard_local_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct auth_guard_local *a = arg;

	if (!exists) {
		rec->val = 0;
		rec->expires_ns = 0;
	}
	if (a->cost) {
		rec->val += a->cost;
		rec->expires_ns = now_ns + a->window_ns;
	}
	a->count = rec->val;
	return 0;
}

static uint64_t auth_guard_local_count(struct auth_guard *g, const char *key, unsigned cost)
{
	struct auth_guard_local a = { cost, g->cfg->failure_window * 1000000ull, 0 };

	if (key[0] == '\0')
		return 0;
	/* fail open on no memory: the guard only ever adds refusals */
	if (local_table_update(g->local, key, uv_hrtime(), cost > 0, auth_guard_local_fn, &a) < 0)
		return 0;
	return a.count;
}

/* ---- Redis ---------------------------------------------------------------------------- */

static void auth_guard_redis_cb(void *arg, const redisReply *reply)
{
	struct auth_guard_req *q = arg;
	uint64_t n[2] = { 0, 0 };
	bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1;

	q->req = NULL;
	for (size_t i = 0; ok && i < reply->elements && i < 2; i++)
		if (reply->element[i]->type == REDIS_REPLY_INTEGER && reply->element[i]->integer >= 0)
			n[i] = (uint64_t)reply->element[i]->integer;
		else
			ok = false;
	if (!ok) {
		/* unreachable, slow or a script error: the local table decides this one */
		if (reply && reply->type == REDIS_REPLY_ERROR)
		{
			char rv[160];

			log_event(LOG_LVL_WARNING, NULL, "event=redis_error module=auth reply=%s",
			    log_val(rv, sizeof(rv), reply->str));
		}
		n[0] = auth_guard_local_count(q->g, q->ipkey, q->cost);
		n[1] = auth_guard_local_count(q->g, q->userkey, q->cost);
	}
	q->cb(q->arg, n[0], q->userkey[0] ? n[1] : 0);
	free(q);
}

/* What an address's failures are counted under: the client as every other client key
 * (limits.client_ipv6_prefix): an IPv4 address itself, an IPv6 address's network
 * ("2001:db8:1:2::/64" by default): a site gets a /64 at least, and an attacker holding one
 * would otherwise have 2^64 fresh addresses. */
static const char *auth_guard_ip_unit(const char *ip, int prefix_v6, char *out, size_t cap)
{
	struct netaddr a;
	char addr[INET6_ADDRSTRLEN];
	int n;

	if (ip == NULL)
		return "";
	if (strchr(ip, ':') == NULL || netaddr_from_string(ip, &a) != 0 || a.family != AF_INET6 ||
	    prefix_v6 <= 0 || prefix_v6 >= 128)
		return ip;
	netaddr_mask(&a, prefix_v6);
	if (netaddr_to_string(&a, addr, sizeof(addr)) != 0)
		return ip;
	n = snprintf(out, cap, "%s/%d", addr, prefix_v6);
	return n > 0 && (size_t)n < cap ? out : ip;
}

struct auth_guard_req *auth_guard_count(struct auth_guard *g, const char *ip, const char *user,
    unsigned cost, auth_guard_cb cb, void *arg)
{
	struct auth_guard_req *q = calloc(1, sizeof(*q));
	uint64_t nip, nuser;
	char unit[INET6_ADDRSTRLEN + 4];

	if (q == NULL) {
		cb(arg, 0, 0);
		return NULL;
	}
	q->g = g;
	q->cb = cb;
	q->arg = arg;
	q->cost = cost;
	if (auth_guard_key("ip", auth_guard_ip_unit(ip, g->prefix_v6, unit, sizeof(unit)), q->ipkey,
	    sizeof(q->ipkey)) < 0 || !ip || !ip[0])
		q->ipkey[0] = '\0';
	if (!user || !user[0] || auth_guard_key("user", user, q->userkey, sizeof(q->userkey)) < 0)
		q->userkey[0] = '\0';
	if (g->rs != NULL && q->ipkey[0]) {
		char cs[16], ws[24];
		const char *argv[4];
		int nk = 0;

		snprintf(cs, sizeof(cs), "%u", cost);
		snprintf(ws, sizeof(ws), "%llu", (unsigned long long)g->cfg->failure_window);
		argv[nk++] = q->ipkey;
		if (q->userkey[0])
			argv[nk++] = q->userkey;
		argv[nk] = cs;
		argv[nk + 1] = ws;
		if (redis_store_eval(g->rs, g->lua, nk, 2, argv, NULL, auth_guard_redis_cb, q, &q->req) == 0)
			return q;
	}
	nip = auth_guard_local_count(g, q->ipkey, cost);
	nuser = auth_guard_local_count(g, q->userkey, cost);
	free(q);
	cb(arg, nip, nuser);
	return NULL;
}

void auth_guard_cancel(struct auth_guard_req *q)
{
	if (q == NULL)
		return;
	redis_req_cancel(q->req);
	free(q);
}
