/* reputation.c — per-IP / per-network / per-authenticated-domain reputation with decay, see
 * reputation.h. */
#include "reputation.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "filters/dnsbl.h"
#include "filters/greylist.h"
#include "filters/rdns.h"
#include "filters/senderauth.h"
#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/netaddr.h"
#include "proxy/tls.h"
#include "store/mailbox.h"
#include "store/lmdb_store.h"
#include "store/redis.h"
#include "store/store.h"

#define REP_KEY_MAX 80
#define REP_DOM_PREFIX "authdom:"
#define REP_DOM_KEY_MAX (sizeof(REP_DOM_PREFIX) + 256)
#define REP_REDIS_PREFIX "mxgate:rep:"

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

int reputation_keys(const struct sockaddr *sa, long prefix_v4, long prefix_v6, long client_v6,
    char *ipkey, size_t iplen, char *netkey, size_t netlen)
{
	char ip[NETADDR_PREFIX_STRLEN], net[NETADDR_PREFIX_STRLEN];

	if (netaddr_client_string(sa, (int)client_v6, ip, sizeof(ip)) < 0 ||
	    netaddr_prefix_string(sa, (int)prefix_v4, (int)prefix_v6, net, sizeof(net)) < 0)
		return -1;
	if ((size_t)snprintf(ipkey, iplen, "ip:%s", ip) >= iplen ||
	    (size_t)snprintf(netkey, netlen, "net:%s", net) >= netlen)
		return -1;
	return 0;
}

int reputation_domain_key(const char *domain, char *key, size_t keylen)
{
	size_t n = domain != NULL ? strlen(domain) : 0, o = sizeof(REP_DOM_PREFIX) - 1;

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || keylen < o + n + 1)
		return -1;
	memcpy(key, REP_DOM_PREFIX, o);
	for (size_t i = 0; i < n; i++)
		key[o++] = (char)tolower((unsigned char)domain[i]);
	key[o] = '\0';
	return 0;
}

/* Is name the symbol of one of the dnsbl section's IP lists (named as dnsbl.c names it)? */
static bool rep_is_ip_list_symbol(const struct mx_config *cfg, const char *name)
{
	const struct dnsbl_list_config *lists;
	char sym[sizeof(((struct hook_symbol *)0)->name)];

	if (cfg == NULL)
		return false;
	lists = cfg->dnsbl.lists.v;
	for (size_t i = 0; i < cfg->dnsbl.lists.n; i++) {
		if (lists[i].type != DNSBL_TYPE_IP)
			continue;
		if (lists[i].symbol != NULL && lists[i].symbol[0] != '\0')
			snprintf(sym, sizeof(sym), "%s", lists[i].symbol);
		else
			dnsbl_symbol_name(lists[i].reply_name ? lists[i].reply_name : lists[i].zone, sym, sizeof(sym));
		if (strcmp(sym, name) == 0)
			return true;
	}
	return false;
}

double reputation_ip_penalty(const struct hook_env *env, bool with_deny, char *names,
    size_t nameslen)
{
	size_t end = env->txn_symbols_start < env->nsymbols ? env->txn_symbols_start : env->nsymbols;
	size_t o = 0;
	double sum = 0;

	if (names != NULL && nameslen > 0)
		names[0] = '\0';
	for (size_t i = 0; i < end; i++) {
		const struct hook_symbol *sy = &env->symbols[i];

		if (!(sy->score > 0))
			continue;
		if (strcmp(sy->name, "REP_BAD") != 0 && !(with_deny && strcmp(sy->name, "REP_DENY") == 0) &&
		    !rep_is_ip_list_symbol(env->cfg, sy->name))
			continue;
		sum += sy->score;
		if (names != NULL && o < nameslen) {
			int k = snprintf(names + o, nameslen - o, "%s%s", o ? "," : "", sy->name);

			o = k < 0 || (size_t)k >= nameslen - o ? nameslen : o + (size_t)k;
		}
	}
	return sum;
}

double reputation_domain_lift(double penalty, double lift_max)
{
	if (!(penalty > 0) || !(lift_max > 0))
		return 0;
	return penalty < lift_max ? penalty : lift_max;
}

int reputation_domain_outcome(enum reputation_outcome o, double residual)
{
	if ((unsigned)o >= REPUTATION_NOUTCOMES)
		return -1;
	if (o == REPUTATION_ACCEPTED || o == REPUTATION_VIRUS)
		return (int)o;
	/* a hair of floating-point residue after a full lift is no penalty */
	return residual > 1e-9 ? -1 : (int)o;
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

/* The eviction rank when the map is near full: the last update (the stalest goes first, as
 * Haraka's karma lets a TTL forget); a record of another shape goes before any. */
static uint64_t rep_rank(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx)
{
	struct reputation_counts c;

	if (vlen != sizeof(c))
		return 0;
	memcpy(&c, val, sizeof(c));
	return c.t_ms;
}

/* One value of rep_read_counts's snapshot: zeroes when absent or of another shape. */
static void rep_read_value_cb(void *arg, size_t i, const void *val, size_t len)
{
	struct reputation_counts *out = arg;

	memset(&out[i], 0, sizeof(out[i]));
	if (val && len == sizeof(out[i]))
		memcpy(&out[i], val, len);
}

/* Reads the counts of n keys (an IP and its network, or a domain) in one snapshot into
 * out[0..n-1] (inline: the memory map). 0 or -1. */
static int rep_read_counts(struct lmdb_store *st, const char *const *keys, size_t n,
    struct reputation_counts *out)
{
	struct lmdb_key lk[2];

	if (n > 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		lk[i].data = keys[i];
		lk[i].len = strlen(keys[i]);
		memset(&out[i], 0, sizeof(out[i]));
	}
	return lmdb_store_get_many(st, lk, n, rep_read_value_cb, out);
}

/* ---- configuration --------------------------------------------------------------------- */

static const char *const rep_action_names[] = { "tempfail", "reject", "delay", "score", "drop", NULL };

/* The section: a known store form and thresholds in order. */
/* "AB:CD:..." : 32 hex pairs joined by colons (any case), as event=tls logs it. */
static bool rep_fingerprint_ok(const char *f)
{
	for (int i = 0; i < 32; i++, f += 3)
		if (!isxdigit((unsigned char)f[0]) || !isxdigit((unsigned char)f[1]) || f[2] != (i < 31 ? ':' : '\0'))
			return false;
	return true;
}

static int rep_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct reputation_config *c = obj;
	int kind = store_kind_of(c->store);

	if (c->store && strcmp(c->store, "lmdb:") == 0)
		return cfg_error_key(p, n, "store", -1, "lmdb: needs a directory");
	if (kind != STORE_NONE && kind != STORE_LMDB && kind != STORE_REDIS)
		return cfg_error_key(p, n, "store", -1, "expected lmdb:/dir, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	for (size_t i = 0; i < c->allow_client_certificates.n; i++)
		if (!rep_fingerprint_ok(c->allow_client_certificates.v[i]))
			return cfg_error_key(p, n, "allow_client_certificates", (long)i,
			    "\"%s\": expected a SHA-256 fingerprint, 32 hex pairs joined by ':'",
			    c->allow_client_certificates.v[i]);
	if (c->good_threshold <= c->bad_threshold)
		return cfg_error(p, n, "good_threshold must be above bad_threshold");
	if (c->domain_good_threshold <= c->domain_bad_threshold)
		return cfg_error(p, n, "domain_good_threshold must be above domain_bad_threshold");
	return 0;
}

static const struct cfg_field rep_fields[] = {
	{ "store", CFG_STRING, offsetof(struct reputation_config, store), NULL,
	  .doc = "lmdb:/dir (this host, survives restarts) or redis://host:port[/db] | redis-sentinel://host:port[,...]/master[/db] (all nodes); unset = allow/deny lists only" },
	{ "half_life", CFG_DURATION, offsetof(struct reputation_config, half_life), "7d", 60000, 3650.0 * 86400000,
	  .doc = "counts halve over this time" },
	{ "good_threshold", CFG_DOUBLE, offsetof(struct reputation_config, good_threshold), "0.5", -1, 1,
	  .doc = "score (-1..1) at or above which a client is known good (symbol REP_GOOD)" },
	{ "bad_threshold", CFG_DOUBLE, offsetof(struct reputation_config, bad_threshold), "-0.5", -1, 1,
	  .doc = "score at or below which a client is bad (symbol REP_BAD and bad_action)" },
	{ "bad_action", CFG_ENUM, offsetof(struct reputation_config, bad_action), "tempfail",
	  .choices = rep_action_names, .doc = "for bad clients at connect: tempfail, reject, delay, score or drop (521 in place of the greeting, closed)" },
	{ "deny_action", CFG_ENUM, offsetof(struct reputation_config, deny_action), "reject",
	  .choices = rep_action_names, .doc = "for clients on the deny list (drop: 521 in place of the greeting and closed, as postscreen_blacklist_action = drop; delay: the greeting held `delay`, spamd's tarpit, then refused as with reject)" },
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
	{ "allow_client_certificates", CFG_STRLIST, offsetof(struct reputation_config, allow_client_certificates), NULL,
	  .doc = "SHA-256 fingerprints (\"AB:CD:...\", as event=tls logs them) of TLS client certificates "
		 "(tls.client_certificate: ask) whose clients are allow-listed as by allow (REP_ALLOW: implicit TLS at "
		 "connect, STARTTLS from the EHLO inside TLS on; Postfix's permit_tls_clientcerts)" },
	{ "deny", CFG_CIDRLIST, offsetof(struct reputation_config, deny), NULL,
	  .doc = "CIDRs refused at connect (deny_action)" },
	{ "map_size", CFG_SIZE, offsetof(struct reputation_config, map_size), "256M", 1 << 20, 1099511627776.0,
	  .doc = "LMDB map size (the most the database may grow to)" },
	{ "flush_interval", CFG_DURATION, offsetof(struct reputation_config, flush_interval), "500ms", 10, 60000,
	  .doc = "LMDB writes are batched per worker this long" },
	{ "timeout", CFG_DURATION, offsetof(struct reputation_config, timeout), "200ms", 1, 60000,
	  .doc = "Redis lookup deadline; then the client is treated as unknown" },
	{ "auth_domain", CFG_BOOL, offsetof(struct reputation_config, auth_domain), "true",
	  .doc = "also keep a history per authenticated sender domain (DKIM/SPF-aligned From, from dkim/dmarc/spf) and judge it at end of data" },
	{ "domain_good_threshold", CFG_DOUBLE, offsetof(struct reputation_config, domain_good_threshold), "0.8", -1, 1,
	  .doc = "domain score at or above which the domain is good (REP_DOMAIN_GOOD and the lift)" },
	{ "domain_bad_threshold", CFG_DOUBLE, offsetof(struct reputation_config, domain_bad_threshold), "-0.5", -1, 1,
	  .doc = "domain score at or below which the domain is bad (REP_DOMAIN_BAD)" },
	{ "domain_good_score", CFG_DOUBLE, offsetof(struct reputation_config, domain_good_score), "-1", -1000, 1000,
	  .doc = "score of symbol REP_DOMAIN_GOOD" },
	{ "domain_bad_score", CFG_DOUBLE, offsetof(struct reputation_config, domain_bad_score), "3", -1000, 1000,
	  .doc = "score of symbol REP_DOMAIN_BAD" },
	{ "domain_lift_max", CFG_DOUBLE, offsetof(struct reputation_config, domain_lift_max), "10", 0, 1000,
	  .doc = "a good domain cancels the IP's score-only penalties (REP_BAD, DNS-list IP symbols) up to this much (REP_DOMAIN_LIFT); 0 = no lift" },
	{ "forwarders", CFG_CUSTOM, offsetof(struct reputation_config, forwarders), NULL,
	  .custom = greylist_names_cfg_parse, .free_custom = greylist_names_cfg_free,
	  .doc = "forwarders (mailing-list hosts, big providers' outbound pools that forward spam with ham): never judged bad by their address's history (no REP_BAD, no bad_action) and their messages' outcomes not added to it (the authenticated domain still learns). Rules as greylist.allow_names: a domain (the client's forward-confirmed name is it or ends in .domain), a /regex/ (caseless) or an address/network; a name is looked up only for a client whose history is bad, and no confirmed name (none, or a DNS failure or timeout) matches no name rule" },
	{ .key = NULL }
};

const struct cfg_table reputation_config_table = {
	.name = "reputation", .size = sizeof(struct reputation_config), .fields = rep_fields,
	.validate = rep_validate,
};

/* ---- Redis scripts --------------------------------------------------------------------- */

/* KEYS ip, net (connect) or the domain (end of data). Returns every hash's fields a r t s v
 * ts (nil when absent), as strings, 6 per key. */
static const char rep_lua_get[] =
	"local f = {'a','r','t','s','v','ts'}\n"
	"local out = {}\n"
	"for k = 1, #KEYS do\n"
	"  local v = redis.call('HMGET', KEYS[k], unpack(f))\n"
	"  for i = 1, 6 do out[#out + 1] = v[i] end\n"
	"end\n"
	"return out\n";

/* KEYS ip, net[, domain]; ARGV outcome field, half_life_ms, ttl_ms, the outcome's time (ms,
 * the node's wall clock). Decays on the server's clock. A key flushed by the control verb
 * (REP_REDIS_FLUSHED + the key: the time of the flush) does not take an outcome from
 * before the flush: one a node queued through an outage, sent after the flush, would bring
 * the forgotten history back (the key is derived here, not passed in KEYS, so that
 * redis_store_write_forget cuts a key out of the write cleanly). */
#define REP_REDIS_FLUSHED "mxgate:repdel:"
static const char rep_lua_add[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local hl = tonumber(ARGV[2])\n"
	"local at = tonumber(ARGV[4])\n"
	"local f = {'a','r','t','s','v'}\n"
	"for k = 1, #KEYS do\n"
	"  local del = at and tonumber(redis.call('GET', '" REP_REDIS_FLUSHED "' .. "
	"string.sub(KEYS[k], string.len('" REP_REDIS_PREFIX "') + 1)))\n"
	"  if not (del and at <= del) then\n"
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
	"  end\n"
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
	bool domains;                   /* auth_domain, with a store to keep it in */
	uint64_t name_wait_ms;          /* forwarders by name: the most the name may take */
	/* with a store: on rep_board, with a mailbox for forget requests */
	struct mailbox mb;
};

struct rep_session {
	struct rep_worker *w;
	struct hook_call *call;
	struct redis_req *req;
	char domain[256];               /* HOOK_EOM: the authenticated domain looked up */
	/* connect: a bad client waiting for its name (forwarders by name: rdns_wait_name) */
	struct hook_call *name_call;
	double name_score;
	int slot;
};

static struct mailbox_board rep_board = MAILBOX_BOARD_INIT("reputation");
static void rep_forget_run(void *owner, void *msg);

static int rep_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct reputation_config *c = &cfg->reputation;
	struct rep_worker *w;

	*wstate = NULL;
	if ((c->store == NULL || c->store[0] == '\0') && c->allow.n == 0 && c->deny.n == 0 &&
	    c->allow_client_certificates.n == 0)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = c;
	w->loop = loop;
	w->worker = worker;
	if (store_kind_of(c->store) == STORE_LMDB) {
		static const char *const prefixes[] = { "ip:", "net:", REP_DOM_PREFIX, NULL };
		uint64_t half_life = c->half_life;
		struct lmdb_writer_config wc = {
			.sweep_prefixes = prefixes, .merge = rep_merge, .expired = rep_expired,
			.rank = rep_rank, .ctx = &half_life, .ctx_len = sizeof(half_life),
			.flush_interval = c->flush_interval, .max_queued = 200000, .name = "reputation",
		};

		w->st = lmdb_store_open(store_lmdb_dir(c->store), c->map_size);
		if (w->st == NULL || (w->wr = lmdb_writer_new(w->st, loop, &wc)) == NULL)
			goto fail;
	} else if (store_kind_of(c->store) == STORE_REDIS) {
		w->rs = redis_store_new(loop, c->store, c->timeout, worker);
		if (w->rs == NULL)
			goto fail;
		redis_store_set_name(w->rs, "reputation");
		w->lua_get = redis_store_add_script(w->rs, rep_lua_get);
		w->lua_add = redis_store_add_script(w->rs, rep_lua_add);
	}
	w->domains = c->auth_domain && (w->st != NULL || w->rs != NULL);
	if (reputation_wants_client_name(c))
		w->name_wait_ms = 2 * rdns_query_timeout(cfg) + 1000;
	/* on failure forget requests will not reach this worker */
	if (w->st != NULL || w->rs != NULL)
		mailbox_open(&w->mb, &rep_board, loop, rep_forget_run, w);
	*wstate = w;
	return 0;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=reputation worker=%d reason=init", worker);
	lmdb_store_close(w->st);
	free(w);
	return -1;
}

static void rep_forget_inbox_queued(struct rep_worker *w);

static void rep_worker_closed(void *owner)
{
	free(owner);
}

static void rep_worker_free(void *wstate)
{
	struct rep_worker *w = wstate;
	bool live;

	if (w == NULL)
		return;
	/* Off the board first; forget requests still in the mailbox are then done here:
	 * LMDB deletes go into the writer's last batch, a Redis DEL is left to the live
	 * generation's connection (this one is going). */
	live = mailbox_leave(&w->mb);
	if (live)
		rep_forget_inbox_queued(w);  /* before its queue goes to the live generation */
	redis_store_free(w->rs);
	w->rs = NULL;
	if (live)
		mailbox_drain(&w->mb);
	/* The last updates are written now (the writer copied what it needs of the config). */
	lmdb_writer_free(w->wr);
	lmdb_store_close(w->st);
	if (live)
		mailbox_close(&w->mb, rep_worker_closed);
	else
		free(w);
}

static unsigned rep_stages(void *wstate)
{
	struct rep_worker *w = wstate;

	if (w == NULL)
		return 0;
	/* the authenticated domain is known at end of data (senderauth runs first there) */
	return 1u << HOOK_CONNECT | (w->domains ? 1u << HOOK_EOM : 0) |
	    (w->cfg->allow_client_certificates.n ? 1u << HOOK_HELO : 0);
}

static uint64_t rep_timeout_ms(void *wstate)
{
	struct rep_worker *w = wstate;

	/* a bad client may then wait for its name: the PTR, then the forward lookups */
	return w ? w->cfg->timeout * 2 + 100 + (w->name_wait_ms ? w->name_wait_ms : 0) : 0;
}

/* ---- forgetting a client (reputation_forget_post) -----------------------------------------
 * Every worker state with a store is on rep_board, with a mailbox on its loop: a forget
 * request is handed to each and done there, after what that worker has queued (an LMDB
 * writer applies in order; a Redis connection answers in order). */

/* One worker's part is over (any thread: its loop's); the last one completes f. */
static void rep_forget_part_end(struct reputation_forget *f)
{
	if (atomic_fetch_sub(&f->parts, 1) == 1)
		f->done(f);
}

/* The LMDB batch holding the deletes was applied (status 0) or failed. */
static void rep_forget_lmdb_cb(void *arg, int status)
{
	struct reputation_forget *f = arg;

	if (status != 0)
		atomic_fetch_add(&f->failed, 1);
	rep_forget_part_end(f);
}

struct rep_forget_del {
	struct reputation_forget *f;
	size_t key;
	atomic_int *left;               /* DELs of this part still unanswered */
};

/* One Redis DEL answered: an integer (0 or 1), or nothing (unreachable, timed out). */
static void rep_forget_redis_cb(void *arg, const redisReply *reply)
{
	struct rep_forget_del *d = arg;
	struct reputation_forget *f = d->f;
	atomic_int *left = d->left;

	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
		if (reply->integer > 0)
			atomic_fetch_add(&f->removed[d->key], 1);
	} else {
		atomic_fetch_add(&f->failed, 1);
	}
	free(d);
	if (atomic_fetch_sub(left, 1) == 1) {
		free(left);
		rep_forget_part_end(f);
	}
}

/* Drops w's Redis updates of f's keys not written yet: queued behind an outage or a full
 * window, they would come after the DEL and bring the record back. */
static void rep_forget_redis_queued(struct rep_worker *w, const struct reputation_forget *f)
{
	char rk[REP_DOM_KEY_MAX + sizeof(REP_REDIS_PREFIX)];

	for (size_t i = 0; w->rs != NULL && i < f->nkeys; i++) {
		snprintf(rk, sizeof(rk), REP_REDIS_PREFIX "%s", f->keys[i]);
		redis_store_write_forget(w->rs, rk, strlen(rk));
	}
}

/* Does f's part on w's loop: LMDB deletes queued after w's earlier updates, then the batch
 * pushed to the pool; or one Redis DEL per key on w's connection, once the store's queued
 * updates of the key are forgotten (redis_store_write_forget). */
static void rep_forget_run(void *owner, void *msg)
{
	struct rep_worker *w = owner;
	struct reputation_forget *f = msg;

	if (w->wr != NULL) {
		for (size_t i = 0; i < f->nkeys; i++)
			if (lmdb_writer_del(w->wr, f->keys[i], strlen(f->keys[i])) < 0)
				atomic_fetch_add(&f->failed, 1);
		int rc = lmdb_writer_flush(w->wr, rep_forget_lmdb_cb, f);
		if (rc == 0)
			return;
		if (rc < 0)
			atomic_fetch_add(&f->failed, 1);
	} else if (w->rs != NULL && f->nkeys > 0) {
		atomic_int *left = malloc(sizeof(*left));
		size_t sent = 0;

		rep_forget_redis_queued(w, f);
		if (left == NULL) {
			atomic_fetch_add(&f->failed, 1);
			rep_forget_part_end(f);
			return;
		}
		atomic_init(left, (int)f->nkeys + 1);   /* + 1 while sending */
		for (size_t i = 0; i < f->nkeys; i++) {
			char rk[REP_DOM_KEY_MAX + sizeof(REP_REDIS_PREFIX)];
			const char *argv[2] = { "DEL", rk };
			struct rep_forget_del *d = malloc(sizeof(*d));

			char tomb[REP_DOM_KEY_MAX + sizeof(REP_REDIS_FLUSHED)], now[32], px[32];
			const char *sargv[5] = { "SET", tomb, now, "PX", px };

			snprintf(rk, sizeof(rk), REP_REDIS_PREFIX "%s", f->keys[i]);
			/* the time of the flush first, on the same connection: an outcome from before
			 * it that another node queued through an outage is not added back */
			snprintf(tomb, sizeof(tomb), REP_REDIS_FLUSHED "%s", f->keys[i]);
			snprintf(now, sizeof(now), "%llu", (unsigned long long)rep_wall_ms());
			snprintf(px, sizeof(px), "%llu", (unsigned long long)w->cfg->half_life * 8);
			redis_store_command(w->rs, 5, sargv, NULL, NULL, NULL, NULL);
			if (d != NULL) {
				*d = (struct rep_forget_del){ .f = f, .key = i, .left = left };
				if (redis_store_command(w->rs, 2, argv, NULL, rep_forget_redis_cb, d, NULL) == 0) {
					sent++;
					continue;
				}
				free(d);
			}
			atomic_fetch_add(&f->failed, 1);
		}
		/* the unsent ones and the sending guard */
		if (atomic_fetch_sub(left, (int)(f->nkeys - sent) + 1) == (int)(f->nkeys - sent) + 1) {
			free(left);
			rep_forget_part_end(f);
		}
		return;
	}
	rep_forget_part_end(f);
}

/* See reputation.h. */
int reputation_forget_redis_sync(const char *url, uint64_t timeout_ms, uint64_t half_life_ms,
    struct reputation_forget *f, char *err, size_t errlen)
{
	redisContext *rc = redis_store_connect_sync(url, timeout_ms, err, errlen);

	if (rc == NULL)
		return -1;
	for (size_t i = 0; i < f->nkeys; i++) {
		char rk[REP_DOM_KEY_MAX + sizeof(REP_REDIS_PREFIX)], tomb[REP_DOM_KEY_MAX + sizeof(REP_REDIS_FLUSHED)];
		redisReply *t, *d = NULL;

		snprintf(rk, sizeof(rk), REP_REDIS_PREFIX "%s", f->keys[i]);
		snprintf(tomb, sizeof(tomb), REP_REDIS_FLUSHED "%s", f->keys[i]);
		t = redis_store_sync_command(rc, "SET %s %llu PX %llu", tomb, (unsigned long long)rep_wall_ms(),
		    (unsigned long long)half_life_ms * 8);
		if (t != NULL && t->type != REDIS_REPLY_ERROR)
			d = redis_store_sync_command(rc, "DEL %s", rk);
		if (d != NULL && d->type == REDIS_REPLY_INTEGER) {
			if (d->integer > 0)
				atomic_store(&f->removed[i], 1);
		} else {
			atomic_fetch_add(&f->failed, 1);
		}
		freeReplyObject(t);
		freeReplyObject(d);
	}
	redisFree(rc);
	return 0;
}

/* A store going with forget requests still in the inbox: its queued updates of their keys
 * are dropped before the queue is handed over (the live generation's DEL may come first). */
static void rep_forget_queued_one(void *arg, void *msg)
{
	rep_forget_redis_queued(arg, msg);
}

static void rep_forget_inbox_queued(struct rep_worker *w)
{
	mailbox_foreach_queued(&w->mb, rep_forget_queued_one, w);
}

size_t reputation_forget_post(struct reputation_forget *f)
{
	size_t n, full;

	for (size_t i = 0; i < REPUTATION_FORGET_KEYS; i++)
		atomic_init(&f->removed[i], 0);
	atomic_init(&f->failed, 0);
	atomic_init(&f->parts, 1);      /* held while posting */
	n = mailbox_post_all(&rep_board, f, &f->parts, &full);
	atomic_fetch_add(&f->failed, (int)full);
	f->workers = n;
	rep_forget_part_end(f);
	return n;
}

/* ---- connect-time decision -------------------------------------------------------------- */

/* The length of an IPv6 client's network in its record (limits.client_ipv6_prefix). */
static long rep_client_v6(const struct hook_env *env)
{
	return env->cfg ? env->cfg->limits.client_ipv6_prefix : 64;
}

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
	case REPUTATION_ACTION_DROP:    /* 521 in place of the greeting, closed (postscreen's drop) */
		verdict_set(v, VERDICT_REJECT, 521, "reputation", "5.7.1 %s of %s", why, ip);
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

/* See reputation.h. */
bool reputation_wants_client_name(const struct reputation_config *c)
{
	for (size_t i = 0; i < c->forwarders.n; i++)
		if (c->forwarders.v[i].prefix < 0)
			return true;
	return false;
}

/* Is env's client a forwarder: its address on an address rule, or its forward-confirmed
 * name (never the bare PTR: anyone can write any PTR for their own addresses, nor the
 * HELO: anyone can say any name) on a name rule. */
static bool rep_is_forwarder(const struct reputation_config *c, const struct hook_env *env)
{
	const char *name = env->client_name_status == HOOK_NAME_OK ? env->client_name : NULL;

	return c->forwarders.n > 0 && greylist_names_match(&c->forwarders, name, (const struct sockaddr *)&env->client);
}

/* Completes the call for a bad client (score s): a forwarder is let go as unknown, any
 * other gets REP_BAD and bad_action. */
static void rep_decide_bad(struct rep_worker *w, struct hook_call *call, double s)
{
	struct hook_env *env = hook_call_env(call);
	const struct reputation_config *c = w->cfg;
	struct verdict v;
	char desc[64];

	verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	if (rep_is_forwarder(c, env)) {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=reputation client=%s score=%.3f class=forwarder client_name=%s action=none", env->client_ip, s,
		    env->client_name_status == HOOK_NAME_OK ? env->client_name : "unknown");
		rep_done_unknown(w, call, NULL);
		return;
	}
	snprintf(desc, sizeof(desc), "reputation %.2f", s);
	hook_env_add_symbol(env, "REP_BAD", c->bad_score, desc);
	rep_apply_action(&v, c->bad_action, c->delay, "poor reputation", env->client_ip);
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=reputation client=%s score=%.3f class=bad action=%s", env->client_ip, s,
	    rep_action_names[c->bad_action]);
	rep_done_unknown(w, call, &v);
}

/* The name a bad client waited for is settled (rdns_wait_name). */
static void rep_name_cb(void *arg)
{
	struct rep_session *s = arg;
	struct hook_call *call = s->name_call;

	s->name_call = NULL;
	if (call != NULL)
		rep_decide_bad(s->w, call, s->name_score);
}

/* Scores the counts and completes the call (a bad client with forwarders by name: once its
 * name is settled). */
static void rep_decide(struct rep_worker *w, int slot, struct hook_call *call, struct reputation_counts *ip,
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
	if (s >= c->good_threshold) {
		snprintf(desc, sizeof(desc), "reputation %.2f", s);
		hook_env_add_symbol(env, "REP_GOOD", c->good_score, desc);
		log_event(LOG_LVL_DEBUG, env->session_id, "event=reputation client=%s score=%.3f class=good",
		    env->client_ip, s);
		hook_call_done(call, &v);
		return;
	}
	if (s > c->bad_threshold) {
		rep_done_unknown(w, call, &v);
		return;
	}
	/* Bad: is it a forwarder? Only now is its name worth the wait (the PTR query went out
	 * when the stage began, rdns_prefetch); an address rule needs none. */
	if (w->name_wait_ms && !greylist_names_match(&c->forwarders, NULL, (const struct sockaddr *)&env->client)) {
		struct rep_session *rs = env->module_ctx[slot];

		if (rs == NULL && (rs = calloc(1, sizeof(*rs))) != NULL) {
			rs->w = w;
			rs->slot = slot;
			env->module_ctx[slot] = rs;
		}
		if (rs != NULL && rs->name_call == NULL) {
			rs->name_call = call;
			rs->name_score = s;
			if (rdns_wait_name(env, rep_name_cb, rs) == 0)
				return;
			rs->name_call = NULL;
		}
	}
	rep_decide_bad(w, call, s);
}

/* Reads one HMGET block (a r t s v ts) into out; false when the record is absent. */
bool reputation_parse_redis_counts(const redisReply *const *el, struct reputation_counts *out)
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
		else	/* a time past 2^63 ms is no wall clock (and would not convert: UB) */
			out->t_ms = d < 9223372036854775808.0 ? (uint64_t)d : 0;
		any = true;
	}
	return any;
}

/* ---- end of data: the authenticated domain ------------------------------------------------ */

/* Judges the authenticated domain from its counts (not yet decayed) and completes the call:
 * REP_DOMAIN_GOOD and the lift of the IP's penalties, or REP_DOMAIN_BAD. Never refuses by
 * itself: the rules engine sums the symbols. */
static void rep_domain_decide(struct rep_worker *w, struct hook_call *call, const char *domain,
    struct reputation_counts *rc)
{
	struct hook_env *env = hook_call_env(call);
	const struct reputation_config *c = w->cfg;
	double s, penalty = 0, lift = 0;
	char desc[320], names[200] = "";
	const char *cls = "neutral";

	reputation_decay(rc, rep_wall_ms(), c->half_life);
	s = reputation_score(rc, NULL, 0, c->prior);
	if (s >= c->domain_good_threshold) {
		cls = "good";
		snprintf(desc, sizeof(desc), "%s reputation %.2f", domain, s);
		hook_env_add_symbol(env, "REP_DOMAIN_GOOD", c->domain_good_score, desc);
		penalty = reputation_ip_penalty(env, false, names, sizeof(names));
		lift = reputation_domain_lift(penalty, c->domain_lift_max);
		if (lift > 0) {
			snprintf(desc, sizeof(desc), "%s lifts %s", domain, names);
			hook_env_add_symbol(env, "REP_DOMAIN_LIFT", -lift, desc);
		}
	} else if (s <= c->domain_bad_threshold) {
		cls = "bad";
		snprintf(desc, sizeof(desc), "%s reputation %.2f", domain, s);
		hook_env_add_symbol(env, "REP_DOMAIN_BAD", c->domain_bad_score, desc);
	}
	log_event(s >= c->domain_good_threshold || s <= c->domain_bad_threshold ? LOG_LVL_INFO :
	    LOG_LVL_DEBUG, env->session_id,
	    "event=reputation_domain queue_id=%s auth_domain=%s score=%.3f class=%s lift=%g lifted=%s client=%s",
	    env->queue_id, domain, s, cls, lift, lift > 0 ? names : "-", env->client_ip);
	hook_call_done(call, NULL);
}

/* ---- fail-open: the history could not be read ---------------------------------------------
 * A client whose history cannot be read is treated as unknown (at connect: not refused for
 * it, though near max_connections not known to be good either; at the end of data: no
 * domain score), never refused for reputation's own failure — but not silently: each
 * cause is counted (mxgate_reputation_errors_total{reason}) and logged as
 * event=reputation_error at most once a minute per cause, as greylisting's
 * event=greylist_error (it can repeat for every connection). Process-wide, any thread. */
enum rep_error {
	REP_ERR_STORE_READ = 0,     /* LMDB: the read of the records failed */
	REP_ERR_REDIS,              /* Redis: no answer (unreachable, timed out, an error reply) */
	REP_ERR__N
};
static const char *const rep_error_reasons[REP_ERR__N] = {
	[REP_ERR_STORE_READ] = "store_read", [REP_ERR_REDIS] = "redis",
};
static const char *const rep_error_texts[REP_ERR__N] = {
	[REP_ERR_STORE_READ] = "the LMDB map could not be read (damaged or unreadable: stop mxgate "
	    "and move it away)",
	[REP_ERR_REDIS] = "Redis did not answer the lookup (event=redis_down or redis_error says why)",
};
static struct log_rated rep_errors[REP_ERR__N];
#define REP_ERROR_LOG_EVERY_MS 60000

/* Counts the cause of a lookup that failed for env's client at stage (HOOK_CONNECT: the IP
 * and its network, HOOK_EOM: the authenticated domain) and logs it, at most once a minute
 * per cause (errors= the total so far). The caller then goes on as without a history. */
static void rep_error_note(const struct hook_env *env, enum rep_error e, enum hook_stage stage)
{
	bool log_now;
	unsigned long long n = log_rated_note(&rep_errors[e], REP_ERROR_LOG_EVERY_MS, &log_now);

	if (log_now)
		log_event(LOG_LVL_WARNING, env->session_id, "event=reputation_error reason=%s store=%s "
		    "stage=%s client=%s action=%s errors=%llu detail=\"%s\"", rep_error_reasons[e],
		    e == REP_ERR_REDIS ? "redis" : "lmdb", stage == HOOK_EOM ? "eom" : "connect", env->client_ip,
		    stage == HOOK_EOM ? "no_domain_score" : "unknown_client", n, rep_error_texts[e]);
}

static void rep_error_collect(void *arg, struct metrics_out *out)
{
	(void)arg;
	for (int i = 0; i < REP_ERR__N; i++)
		metrics_out_sample(out, "reason", rep_error_reasons[i], (double)atomic_load(&rep_errors[i].count));
}

void reputation_metrics(void)
{
	metrics_register_family("reputation_errors_total",
	    "lookups of a client's history that failed, the client treated as unknown, by reason "
	    "(event=reputation_error)", "counter", rep_error_collect, NULL);
}

/* ---- Redis lookups ----------------------------------------------------------------------- */

/* The Redis answer for a connect (IP and network: decide, or treat the client as unknown)
 * or for the end of data (the domain: judge it, or add nothing). */
static void rep_redis_get_cb(void *arg, const redisReply *reply)
{
	struct rep_session *s = arg;
	struct hook_call *call = s->call;
	size_t n = hook_call_stage(call) == HOOK_EOM ? 1 : 2;
	struct reputation_counts rc[2];
	bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 6 * n;

	s->req = NULL;
	s->call = NULL;
	for (size_t i = 0; ok && i < n; i++)
		reputation_parse_redis_counts((const redisReply *const *)reply->element + 6 * i, &rc[i]);
	if (!ok)
		rep_error_note(hook_call_env(call), REP_ERR_REDIS, hook_call_stage(call));
	if (n == 1) {
		if (ok)
			rep_domain_decide(s->w, call, s->domain, &rc[0]);
		else
			hook_call_done(call, NULL);
	} else if (ok) {
		rep_decide(s->w, s->slot, call, &rc[0], &rc[1]);
	} else {
		/* No answer: the client is unknown, which is never a reason to refuse it (but
		 * near max_connections it is not known to be good either). */
		rep_done_unknown(s->w, call, NULL);
	}
}

/* Starts the Redis lookup of n (1 or 2) store keys for call (domain: what HOOK_EOM looks
 * up, for the answer). Returns 0, or -1 when it could not start (the call is not done). */
static int rep_redis_lookup(struct rep_worker *w, int slot, struct hook_call *call,
    const char *const *keys, size_t n, const char *domain)
{
	struct hook_env *env = hook_call_env(call);
	struct rep_session *s = env->module_ctx[slot];
	char rk[2][REP_DOM_KEY_MAX + sizeof(REP_REDIS_PREFIX)];
	const char *rkeys[2];

	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->w = w;
		s->slot = slot;
		env->module_ctx[slot] = s;
	}
	for (size_t i = 0; i < n && i < 2; i++) {
		snprintf(rk[i], sizeof(rk[i]), REP_REDIS_PREFIX "%s", keys[i]);
		rkeys[i] = rk[i];
	}
	snprintf(s->domain, sizeof(s->domain), "%s", domain ? domain : "");
	s->call = call;
	if (redis_store_eval(w->rs, w->lua_get, (int)n, 0, rkeys, NULL, rep_redis_get_cb, s, &s->req) == 0)
		return 0;
	s->call = NULL;
	return -1;
}

/* HOOK_EOM: looks up the authenticated domain's history, if the message has one. */
static void rep_run_eom(struct rep_worker *w, int slot, struct hook_call *call)
{
	struct hook_env *env = hook_call_env(call);
	const char *domain = w->domains ? senderauth_auth_domain(env) : NULL;
	char key[REP_DOM_KEY_MAX];
	const char *keys[1] = { key };
	struct reputation_counts rc;

	if (domain == NULL || reputation_domain_key(domain, key, sizeof(key)) < 0) {
		hook_call_done(call, NULL);
		return;
	}
	if (w->st) {
		if (rep_read_counts(w->st, keys, 1, &rc) < 0) {
			rep_error_note(env, REP_ERR_STORE_READ, HOOK_EOM);
			hook_call_done(call, NULL);
		} else {
			rep_domain_decide(w, call, domain, &rc);
		}
		return;
	}
	if (rep_redis_lookup(w, slot, call, keys, 1, domain) < 0) {
		rep_error_note(env, REP_ERR_REDIS, HOOK_EOM);
		hook_call_done(call, NULL);
	}
}

/* The client presented a certificate (verified or not: its key proved it holds it) whose
 * fingerprint is on allow_client_certificates. */
static bool rep_cert_allowed(const struct reputation_config *c, const struct hook_env *env)
{
	if (c->allow_client_certificates.n == 0 || !env->tls || env->tls_cert < TLSCONN_CERT_UNVERIFIED ||
	    env->tls_cert_fingerprint == NULL)
		return false;
	for (size_t i = 0; i < c->allow_client_certificates.n; i++)
		if (strcasecmp(c->allow_client_certificates.v[i], env->tls_cert_fingerprint) == 0)
			return true;
	return false;
}

bool reputation_allows_client(const struct reputation_config *c, const struct hook_env *env)
{
	return rep_cert_allowed(c, env) ||
	    (c->allow.n && cfg_cidrlist_match(&c->allow, (const struct sockaddr *)&env->client));
}

static void rep_run(void *wstate, int slot, struct hook_call *call)
{
	struct rep_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	const struct sockaddr *sa = (const struct sockaddr *)&env->client;
	const struct reputation_config *c = w->cfg;
	struct reputation_counts rc[2];
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];
	const char *keys[2] = { ipkey, netkey };
	struct verdict v;

	if (hook_call_stage(call) == HOOK_EOM) {
		rep_run_eom(w, slot, call);
		return;
	}
	if (hook_call_stage(call) == HOOK_HELO) {
		/* after STARTTLS the certificate is known from the EHLO inside TLS on: the
		 * stages after it (greylisting) see the client as allow-listed */
		if (rep_cert_allowed(c, env) && !hook_env_find_symbol(env, "REP_ALLOW")) {
			hook_env_add_symbol(env, "REP_ALLOW", c->good_score, "allow-listed client certificate");
			log_event(LOG_LVL_INFO, env->session_id, "event=reputation client=%s class=allow "
			    "reason=client_certificate", env->client_ip);
		}
		hook_call_done(call, NULL);
		return;
	}
	if (hook_call_stage(call) != HOOK_CONNECT) {
		hook_call_done(call, NULL);
		return;
	}
	if (rep_cert_allowed(c, env)) {
		/* implicit TLS: the handshake came before the connect stage */
		hook_env_add_symbol(env, "REP_ALLOW", c->good_score, "allow-listed client certificate");
		log_event(LOG_LVL_INFO, env->session_id, "event=reputation client=%s class=allow "
		    "reason=client_certificate", env->client_ip);
		verdict_set(&v, VERDICT_ACCEPT, 0, "reputation", NULL);
		hook_call_done(call, &v);
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
		if (c->deny_action == REPUTATION_ACTION_DELAY) {
			/* spamd's tarpit for its blacklist: the greeting is held, and then the
			 * client is refused as with reject: a deny-listed client never reaches a
			 * backend (bad_action's delay, for a client that is only suspect, serves
			 * it after the wait). */
			rep_apply_action(&v, REPUTATION_ACTION_REJECT, 0, "deny list entry", env->client_ip);
			v.delay_ms = c->delay > 600000 ? 600000 : (uint32_t)c->delay;
		} else {
			rep_apply_action(&v, c->deny_action, c->delay, "deny list entry", env->client_ip);
		}
		log_event(LOG_LVL_INFO, env->session_id, "event=reputation client=%s class=deny action=%s",
		    env->client_ip, rep_action_names[c->deny_action]);
		rep_done_unknown(w, call, &v);
		return;
	}
	if (reputation_keys(sa, c->prefix_v4, c->prefix_v6, rep_client_v6(env), ipkey,
	    sizeof(ipkey), netkey, sizeof(netkey)) < 0) {
		rep_done_unknown(w, call, NULL);
		return;
	}
	if (w->st) {
		/* A read is a lookup in the memory map: done inline. */
		if (rep_read_counts(w->st, keys, 2, rc) < 0) {
			rep_error_note(env, REP_ERR_STORE_READ, HOOK_CONNECT);
			rep_done_unknown(w, call, NULL);
			return;
		}
		rep_decide(w, slot, call, &rc[0], &rc[1]);
		return;
	}
	if (w->rs && rep_redis_lookup(w, slot, call, keys, 2, NULL) == 0)
		return;
	if (w->rs)
		rep_error_note(env, REP_ERR_REDIS, HOOK_CONNECT);
	rep_done_unknown(w, call, NULL);
}

/* The chain gave up on call (timeout): a bad client's wait for its name ends uncalled. */
static void rep_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct hook_env *env = hook_call_env(call);
	struct rep_session *s = env->module_ctx[slot];

	(void)wstate;
	if (s != NULL && s->name_call == call) {
		s->name_call = NULL;
		rdns_wait_cancel(env);
	}
}

static void rep_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rep_session *s = env->module_ctx[slot];

	(void)wstate;
	if (s == NULL)
		return;
	redis_req_cancel(s->req);
	if (s->name_call != NULL)
		rdns_wait_cancel(env);
	free(s);
	env->module_ctx[slot] = NULL;
}

/* ---- outcomes --------------------------------------------------------------------------- */

/* Adds one message outcome to the history of env's client (IP and network) when ip, and of
 * its authenticated domain when domkey is not NULL: merged by the LMDB writer, or one Redis
 * script through the store's write queue. */
static void rep_record(struct rep_worker *w, const struct hook_env *env, enum reputation_outcome o,
    bool ip, const char *domkey)
{
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];
	const char *keys[3];
	size_t nkeys = 0;

	if (ip && reputation_keys((const struct sockaddr *)&env->client, w->cfg->prefix_v4,
	    w->cfg->prefix_v6, rep_client_v6(env), ipkey, sizeof(ipkey), netkey, sizeof(netkey)) == 0) {
		keys[nkeys++] = ipkey;
		keys[nkeys++] = netkey;
	}
	if (domkey != NULL)
		keys[nkeys++] = domkey;
	if (w->wr) {
		unsigned char op = (unsigned char)o;

		/* dropped (and logged) only when the pool is stuck and the queue full */
		for (size_t i = 0; i < nkeys; i++)
			lmdb_writer_merge(w->wr, keys[i], strlen(keys[i]), &op, 1);
	} else if (w->rs && nkeys > 0) {
		char hl[32], ttl[32], at[32], rk[3][REP_DOM_KEY_MAX + sizeof(REP_REDIS_PREFIX)];
		const char *argv[7];

		for (size_t i = 0; i < nkeys; i++) {
			snprintf(rk[i], sizeof(rk[i]), REP_REDIS_PREFIX "%s", keys[i]);
			argv[i] = rk[i];
		}
		snprintf(hl, sizeof(hl), "%llu", (unsigned long long)w->cfg->half_life);
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)w->cfg->half_life * 8);
		argv[nkeys] = rep_fields_short[o];
		argv[nkeys + 1] = hl;
		argv[nkeys + 2] = ttl;
		snprintf(at, sizeof(at), "%llu", (unsigned long long)rep_wall_ms());
		argv[nkeys + 3] = at;
		/* The store's write queue keeps it through an outage (a full queue: counted in
		 * mxgate_store_writes_dropped_total and logged by the store). */
		redis_store_write(w->rs, w->lua_add, (int)nkeys, 4, argv, NULL, NULL, NULL);
	}
}

/* A temporary failure of our own at end of data: no backend took the message or one
 * answered 4xx, a content filter was unavailable, the spool or the quarantine store
 * failed. It says nothing of the client (a backend outage must not turn its clients bad). */
static bool rep_own_failure(const struct hook_outcome *o)
{
	static const char *const own[] = { "no_backend", "backend", "plugin", "spool", "quarantine",
		"unreadable" };

	if (o->code / 100 != 4 || o->reason == NULL)
		return false;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strcmp(o->reason, own[i]) == 0)
			return true;
	return false;
}

/* The outcome notifier: what a message that reached the end of data did. Refusals at MAIL,
 * RCPT or DATA judge the envelope rather than the client, and a filter's discard says
 * nothing either way: neither counts (as before the notifier). The authenticated domain
 * (only what senderauth aligned: never a bare From) counts it too, unless the IP's unlifted
 * penalties may have decided a bad outcome (reputation_domain_outcome). A message whose IP
 * penalties a good domain lifted was judged as the domain's: the IP and its network are
 * not credited (or blamed) for it. */
static void rep_outcome(void *wstate, int slot, struct hook_env *env, const struct hook_outcome *o)
{
	struct rep_worker *w = wstate;
	enum reputation_outcome r;
	const char *domain;
	char domkey[REP_DOM_KEY_MAX];
	bool counted = false, lifted = false, forwarder;

	(void)slot;
	if (o->session || o->stage != HOOK_EOM || o->code == 0 || (o->flags & HOOK_FLAG_DISCARDED) ||
	    rep_own_failure(o))
		return;
	if (o->flags & HOOK_FLAG_VIRUS)
		r = REPUTATION_VIRUS;
	else if (o->code / 100 == 2)
		r = o->flags & HOOK_FLAG_SPAM ? REPUTATION_SPAM : REPUTATION_ACCEPTED;
	else if (o->code / 100 == 4)
		r = REPUTATION_TEMPFAILED;
	else
		r = o->flags & HOOK_FLAG_SPAM ? REPUTATION_SPAM : REPUTATION_REJECTED;
	domain = w->domains ? senderauth_auth_domain(env) : NULL;
	if (domain != NULL && reputation_domain_key(domain, domkey, sizeof(domkey)) == 0) {
		double residual = reputation_ip_penalty(env, true, NULL, 0);

		for (size_t i = env->txn_symbols_start; i < env->nsymbols; i++)
			if (strcmp(env->symbols[i].name, "REP_DOMAIN_LIFT") == 0 && env->symbols[i].score < 0) {
				residual += env->symbols[i].score;
				lifted = true;
			}
		counted = reputation_domain_outcome(r, residual) >= 0;
	} else {
		domain = NULL;
	}
	/* a forwarder's forwarded spam is not held against its address (nor its ham credited) */
	forwarder = rep_is_forwarder(w->cfg, env);
	log_event(LOG_LVL_DEBUG, env->session_id,
	    "event=reputation_record client=%s outcome=%s ip=%s auth_domain=%s domain=%s", env->client_ip,
	    rep_outcome_names[r], forwarder ? "forwarder" : lifted ? "not_counted" : "counted", domain ? domain : "-",
	    domain == NULL ? "-" : counted ? "counted" : "not_counted");
	rep_record(w, env, r, !lifted && !forwarder, counted ? domkey : NULL);
}

const struct hook_module reputation_module = {
	.name = "reputation",
	.worker_init = rep_worker_init,
	.worker_free = rep_worker_free,
	.stages = rep_stages,
	.run = rep_run,
	.session_free = rep_session_free,
	.cancel = rep_cancel,
	.timeout_ms = rep_timeout_ms,
	.outcome = rep_outcome,
};
