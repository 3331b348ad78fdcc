/* reputation.c — per-IP / per-network reputation with decay, see reputation.h. */
#include "reputation.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "ratelimit.h"
#include "redis_store.h"

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
	char ip[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 8];
	const void *a;
	int fam = sa->sa_family;
	struct in_addr a4;

	if (fam == AF_INET) {
		a = &((const struct sockaddr_in *)sa)->sin_addr;
	} else if (fam == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		a = a6;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(&a4, a6->s6_addr + 12, 4);
			a = &a4;
			fam = AF_INET;
		}
	} else {
		return -1;
	}
	if (inet_ntop(fam, a, ip, sizeof(ip)) == NULL)
		return -1;
	if (ratelimit_prefix_string(sa, (int)prefix_v4, (int)prefix_v6, net, sizeof(net)) < 0)
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

/* ---- LMDB ---------------------------------------------------------------------------------
 * LMDB allows one environment per file per process: environments are shared by path and
 * reference-counted. Transactions use MDB_NOTLS so any thread (loop or pool) may read. */

struct reputation_db {
	struct reputation_db *next;
	int refs;
	char *path;
	MDB_env *env;
	MDB_dbi dbi;
	uint64_t last_cleanup_ms;       /* reputation records (under the writer lock) */
	uint64_t last_sweep_raw_ms;     /* raw records with an expiry header */
	uint64_t last_err_log_ms;       /* write errors (a full map) are logged once a minute */
};

/* Logs a write error at most once a minute per database. */
static void rep_db_log_error(struct reputation_db *db, int rc)
{
	uint64_t now = rep_wall_ms(), last = __atomic_load_n(&db->last_err_log_ms, __ATOMIC_RELAXED);

	if (now - last < 60000 || !__atomic_compare_exchange_n(&db->last_err_log_ms, &last, now, false,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=reputation_error store=lmdb:%s reason=\"%s\"%s",
	    db->path, mdb_strerror(rc), rc == MDB_MAP_FULL ? " hint=raise_map_size" : "");
}

static pthread_mutex_t rep_db_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reputation_db *rep_dbs;

/* mkdir -p; 0 or -1 with errno. */
static int rep_mkdirs(const char *dir)
{
	char buf[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, dir, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0750) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

struct reputation_db *reputation_db_open(const char *dir, uint64_t map_size)
{
	struct reputation_db *db;
	MDB_txn *txn = NULL;
	int rc;

	pthread_mutex_lock(&rep_db_mu);
	for (db = rep_dbs; db; db = db->next)
		if (strcmp(db->path, dir) == 0) {
			db->refs++;
			pthread_mutex_unlock(&rep_db_mu);
			return db;
		}
	db = calloc(1, sizeof(*db));
	if (db == NULL || (db->path = strdup(dir)) == NULL)
		goto fail;
	if (rep_mkdirs(dir) < 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=reputation_error store=lmdb:%s reason=\"mkdir: %s\"",
		    dir, strerror(errno));
		goto fail;
	}
	if ((rc = mdb_env_create(&db->env)) != 0 ||
	    (rc = mdb_env_set_mapsize(db->env, map_size ? map_size : 256u << 20)) != 0 ||
	    (rc = mdb_env_set_maxreaders(db->env, 1022)) != 0 ||
	    /* NOSYNC: the OS writes the map back; a process restart loses nothing, a power
	     * loss at most the last seconds of reputation — not worth an fsync per batch. */
	    (rc = mdb_env_open(db->env, dir, MDB_NOTLS | MDB_NOSYNC, 0640)) != 0 ||
	    (rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &db->dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		log_event(LOG_LVL_ERROR, NULL, "event=reputation_error store=lmdb:%s reason=\"%s\"", dir,
		    mdb_strerror(rc));
		goto fail;
	}
	db->refs = 1;
	db->next = rep_dbs;
	rep_dbs = db;
	pthread_mutex_unlock(&rep_db_mu);
	return db;
fail:
	if (db) {
		if (db->env)
			mdb_env_close(db->env);
		free(db->path);
		free(db);
	}
	pthread_mutex_unlock(&rep_db_mu);
	return NULL;
}

void reputation_db_close(struct reputation_db *db)
{
	struct reputation_db **pp;

	if (db == NULL)
		return;
	pthread_mutex_lock(&rep_db_mu);
	if (--db->refs > 0) {
		pthread_mutex_unlock(&rep_db_mu);
		return;
	}
	for (pp = &rep_dbs; *pp; pp = &(*pp)->next)
		if (*pp == db) {
			*pp = db->next;
			break;
		}
	pthread_mutex_unlock(&rep_db_mu);
	mdb_env_sync(db->env, 1);
	mdb_env_close(db->env);
	free(db->path);
	free(db);
}

int reputation_db_get(struct reputation_db *db, const char *key, struct reputation_counts *out)
{
	MDB_txn *txn;
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc;

	memset(out, 0, sizeof(*out));
	if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	rc = mdb_get(txn, db->dbi, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(*out))
		memcpy(out, v.mv_data, sizeof(*out));
	mdb_txn_abort(txn);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : -1;
}

/* Drops records whose decayed history no longer matters (inside a write txn). */
static void rep_db_cleanup(struct reputation_db *db, MDB_txn *txn, uint64_t now_ms,
    uint64_t half_life_ms)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (mdb_cursor_open(txn, db->dbi, &cur) != 0)
		return;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct reputation_counts c;
		double sum = 0;

		/* Other filters (greylist) keep raw records here that start with their expiry. */
		if (!((k.mv_size > 3 && memcmp(k.mv_data, "ip:", 3) == 0) ||
		    (k.mv_size > 4 && memcmp(k.mv_data, "net:", 4) == 0))) {
			uint64_t exp;

			if (v.mv_size >= sizeof(exp)) {
				memcpy(&exp, v.mv_data, sizeof(exp));
				if (exp < now_ms)
					mdb_cursor_del(cur, 0);
			}
			continue;
		}
		if (half_life_ms == 0)
			continue;
		if (v.mv_size != sizeof(c)) {
			mdb_cursor_del(cur, 0);
			continue;
		}
		memcpy(&c, v.mv_data, sizeof(c));
		reputation_decay(&c, now_ms, half_life_ms);
		for (int i = 0; i < REPUTATION_NOUTCOMES; i++)
			sum += c.c[i];
		if (sum < 0.05)
			mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
}

int reputation_db_apply(struct reputation_db *db, const char *const *keys,
    const enum reputation_outcome *outcomes, size_t n, uint64_t now_ms, uint64_t half_life_ms)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { strlen(keys[i]), (void *)keys[i] }, v;
		struct reputation_counts c;

		memset(&c, 0, sizeof(c));
		rc = mdb_get(txn, db->dbi, &k, &v);
		if (rc == 0 && v.mv_size == sizeof(c))
			memcpy(&c, v.mv_data, sizeof(c));
		else if (rc != 0 && rc != MDB_NOTFOUND)
			goto fail_txn;
		reputation_decay(&c, now_ms, half_life_ms);
		if ((unsigned)outcomes[i] < REPUTATION_NOUTCOMES)
			c.c[outcomes[i]] += 1.0;
		v.mv_size = sizeof(c);
		v.mv_data = &c;
		if ((rc = mdb_put(txn, db->dbi, &k, &v, 0)) != 0)
			goto fail_txn;
	}
	/* About hourly, drop forgotten records so the map does not fill with one-off IPs. Only
	 * one writer runs at a time (LMDB's writer lock), so the stamp needs no other lock. */
	if (now_ms - db->last_cleanup_ms > 3600 * 1000) {
		db->last_cleanup_ms = now_ms;
		rep_db_cleanup(db, txn, now_ms, half_life_ms);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return 0;
fail_txn:
	mdb_txn_abort(txn);
fail:
	rep_db_log_error(db, rc);
	return -1;
}

int reputation_db_get_raw(struct reputation_db *db, const char *key, void *val, size_t cap,
    size_t *len)
{
	MDB_txn *txn;
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc;

	if (mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	rc = mdb_get(txn, db->dbi, &k, &v);
	if (rc == 0) {
		memcpy(val, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
		*len = v.mv_size;
	}
	mdb_txn_abort(txn);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : -1;
}

int reputation_db_put_many(struct reputation_db *db, const char *const *keys,
    const void *const *vals, const size_t *lens, size_t n)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { strlen(keys[i]), (void *)keys[i] }, v = { lens[i], (void *)vals[i] };

		if (lens[i] == 0)
			rc = mdb_del(txn, db->dbi, &k, NULL);
		else
			rc = mdb_put(txn, db->dbi, &k, &v, 0);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			goto fail;
		}
	}
	if (rep_wall_ms() - db->last_sweep_raw_ms > 3600 * 1000) {
		db->last_sweep_raw_ms = rep_wall_ms();
		rep_db_cleanup(db, txn, db->last_sweep_raw_ms, 0);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return 0;
fail:
	rep_db_log_error(db, rc);
	return -1;
}

/* ---- configuration --------------------------------------------------------------------- */

static const char *const rep_action_names[] = { "tempfail", "reject", "delay", "score", NULL };

/* The section: a known store form and thresholds in order. */
static int rep_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct reputation_config *c = obj;
	char host[256], pw[128];
	int port, db;

	if (c->store && c->store[0] && strncmp(c->store, "lmdb:", 5) != 0 &&
	    redis_store_parse_url(c->store, host, sizeof(host), &port, &db, pw, sizeof(pw)) < 0)
		return cfg_error(p, n, "store: expected lmdb:/dir or redis://host:port[/db]");
	if (c->store && strncmp(c->store, "lmdb:", 5) == 0 && c->store[5] == '\0')
		return cfg_error(p, n, "store: lmdb: needs a directory");
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

#define REP_CACHE 4096
#define REP_CACHE_TTL_MS (10 * 60 * 1000)

struct rep_cache_ent { char ip[48]; float score; uint64_t until_ms; };

struct rep_update { char key[REP_KEY_MAX]; enum reputation_outcome o; };

struct rep_batch {                  /* one flush handed to the thread pool */
	uv_work_t work;
	struct rep_worker *w;
	struct rep_update *u;
	size_t n;
};

struct rep_worker {
	const struct reputation_config *cfg;  /* gone once the generation is retired */
	uint64_t half_life;             /* copied: pool threads use it after retirement */
	uv_loop_t *loop;
	int worker;
	struct reputation_db *db;       /* lmdb store */
	struct redis_store *rs;         /* redis store */
	int lua_get, lua_add;
	uv_timer_t flush_timer;
	bool timer_open, closing;
	int in_flight;                  /* batches in the pool */
	struct rep_update *q;           /* queued updates */
	size_t nq, capq;
	struct rep_cache_ent *cache;    /* recent scores, for reputation_is_known_good */
};

/* The worker state of each worker's current config generation, for the functions the
 * session and listener call without a module slot. worker_init may run on the main thread
 * (the first generation, before the worker thread starts), so this is indexed by worker,
 * not thread-local; rep_tls_worker remembers which worker the calling loop thread is. */
#define REP_MAX_WORKERS 256
static struct rep_worker *rep_by_worker[REP_MAX_WORKERS];
static __thread int rep_tls_worker = -1;

static struct rep_worker *rep_current(int worker)
{
	if (worker < 0 || worker >= REP_MAX_WORKERS)
		return NULL;
	return __atomic_load_n(&rep_by_worker[worker], __ATOMIC_ACQUIRE);
}

struct rep_session {
	struct rep_worker *w;
	struct hook_call *call;
	struct redis_req *req;
};

/* The direct-mapped cache slot of an ip key. */
static struct rep_cache_ent *rep_cache_slot(struct rep_worker *w, const char *ip)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *s = ip; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return &w->cache[h % REP_CACHE];
}

/* Remembers a score for reputation_is_known_good (10 minutes). */
static void rep_cache_put(struct rep_worker *w, const char *ipkey, double score)
{
	struct rep_cache_ent *e = rep_cache_slot(w, ipkey);

	snprintf(e->ip, sizeof(e->ip), "%s", ipkey);
	e->score = (float)score;
	e->until_ms = rep_wall_ms() + REP_CACHE_TTL_MS;
}

/* Thread pool: applies one batch in one LMDB write transaction. */
static void rep_flush_work_cb(uv_work_t *req)
{
	struct rep_batch *b = req->data;
	const char **keys = malloc(b->n * sizeof(*keys));
	enum reputation_outcome *os = malloc(b->n * sizeof(*os));

	if (keys && os) {
		for (size_t i = 0; i < b->n; i++) {
			keys[i] = b->u[i].key;
			os[i] = b->u[i].o;
		}
		reputation_db_apply(b->w->db, keys, os, b->n, rep_wall_ms(), b->w->half_life);
	}
	free(keys);
	free(os);
}

static void rep_worker_release(struct rep_worker *w);

/* Loop thread: the batch is written; a retired worker may go now. */
static void rep_flush_after_cb(uv_work_t *req, int status)
{
	struct rep_batch *b = req->data;
	struct rep_worker *w = b->w;

	free(b->u);
	free(b);
	w->in_flight--;
	if (w->closing)
		rep_worker_release(w);
}

/* Hands the queued updates to the thread pool (or applies them here when sync). */
static void rep_flush(struct rep_worker *w, bool sync)
{
	struct rep_batch *b;

	if (w->nq == 0 || w->db == NULL)
		return;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return;
	b->w = w;
	b->u = w->q;
	b->n = w->nq;
	b->work.data = b;
	w->q = NULL;
	w->nq = w->capq = 0;
	if (!sync && uv_queue_work(w->loop, &b->work, rep_flush_work_cb, rep_flush_after_cb) == 0) {
		w->in_flight++;
		return;
	}
	rep_flush_work_cb(&b->work);
	free(b->u);
	free(b);
}

/* Every flush_interval: hands the queued updates to the pool. */
static void rep_flush_timer_cb(uv_timer_t *t)
{
	struct rep_worker *w = t->data;

	/* One batch at a time per worker keeps the order of a client's updates. */
	if (w->in_flight == 0)
		rep_flush(w, false);
}

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
	w->half_life = c->half_life;
	w->loop = loop;
	w->worker = worker;
	w->cache = calloc(REP_CACHE, sizeof(*w->cache));
	if (w->cache == NULL)
		goto fail;
	if (c->store && strncmp(c->store, "lmdb:", 5) == 0) {
		w->db = reputation_db_open(c->store + 5, c->map_size);
		if (w->db == NULL)
			goto fail;
		uv_timer_init(loop, &w->flush_timer);
		w->flush_timer.data = w;
		w->timer_open = true;
		uv_timer_start(&w->flush_timer, rep_flush_timer_cb, c->flush_interval, c->flush_interval);
		uv_unref((uv_handle_t *)&w->flush_timer);
	} else if (c->store && strncmp(c->store, "redis://", 8) == 0) {
		w->rs = redis_store_new(loop, c->store, c->timeout, worker);
		if (w->rs == NULL)
			goto fail;
		w->lua_get = redis_store_add_script(w->rs, rep_lua_get);
		w->lua_add = redis_store_add_script(w->rs, rep_lua_add);
	}
	if (worker >= 0 && worker < REP_MAX_WORKERS)
		__atomic_store_n(&rep_by_worker[worker], w, __ATOMIC_RELEASE);
	*wstate = w;
	return 0;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=reputation worker=%d reason=init", worker);
	reputation_db_close(w->db);
	free(w->cache);
	free(w);
	return -1;
}

/* The flush timer is closed; a retired worker may go now. */
static void rep_timer_close_cb(uv_handle_t *h)
{
	struct rep_worker *w = h->data;

	w->timer_open = false;
	rep_worker_release(w);
}

/* Frees w once its timer is closed and no batch is in the pool (the config may be gone:
 * nothing here reads w->cfg). */
static void rep_worker_release(struct rep_worker *w)
{
	if (w->timer_open || w->in_flight > 0)
		return;
	reputation_db_close(w->db);
	free(w->q);
	free(w->cache);
	free(w);
}

static void rep_worker_free(void *wstate)
{
	struct rep_worker *w = wstate;

	if (w == NULL)
		return;
	if (w->worker >= 0 && w->worker < REP_MAX_WORKERS) {
		struct rep_worker *expect = w;

		__atomic_compare_exchange_n(&rep_by_worker[w->worker], &expect, NULL, false,
		    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
	w->closing = true;
	redis_store_free(w->rs);
	w->rs = NULL;
	/* The last updates are written now, while the config is still there: the daemon may
	 * not run this loop again long enough for a pool round trip. A batch still in the
	 * pool just makes this transaction wait for LMDB's writer lock. */
	rep_flush(w, true);
	if (w->timer_open) {
		uv_timer_stop(&w->flush_timer);
		uv_close((uv_handle_t *)&w->flush_timer, rep_timer_close_cb);
		return;
	}
	rep_worker_release(w);
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

/* Scores the counts and completes the call. */
static void rep_decide(struct rep_worker *w, struct hook_call *call, struct reputation_counts *ip,
    struct reputation_counts *net, const char *ipkey)
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
	rep_cache_put(w, ipkey, s);
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
	hook_call_done(call, &v);
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
		/* No answer: the client is unknown, which is never a reason to refuse it. */
		hook_call_done(call, NULL);
		return;
	}
	rep_parse_counts((const redisReply *const *)reply->element, &ip);
	rep_parse_counts((const redisReply *const *)reply->element + 6, &net);
	rep_decide(s->w, call, &ip, &net, ipkey);
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

	rep_tls_worker = w->worker;
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
		hook_call_done(call, &v);
		return;
	}
	if (reputation_keys(sa, c->prefix_v4, c->prefix_v6, ipkey, sizeof(ipkey), netkey,
	    sizeof(netkey)) < 0) {
		hook_call_done(call, NULL);
		return;
	}
	if (w->db) {
		/* A read is a lookup in the memory map: done inline. */
		if (reputation_db_get(w->db, ipkey, &ip) < 0 || reputation_db_get(w->db, netkey, &net) < 0) {
			hook_call_done(call, NULL);
			return;
		}
		rep_decide(w, call, &ip, &net, ipkey);
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
				hook_call_done(call, NULL);
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
	hook_call_done(call, NULL);
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

const struct hook_module reputation_module = {
	.name = "reputation",
	.worker_init = rep_worker_init,
	.worker_free = rep_worker_free,
	.stages = rep_stages,
	.run = rep_run,
	.session_free = rep_session_free,
	.timeout_ms = rep_timeout_ms,
};

/* ---- called by the session and the listener ---------------------------------------------- */

/* Queues one LMDB update for the next batch (dropped when the queue is far too long). */
static void rep_queue(struct rep_worker *w, const char *key, enum reputation_outcome o)
{
	if (w->nq == w->capq) {
		size_t cap = w->capq ? w->capq * 2 : 64;
		struct rep_update *q;

		if (cap > 200000)
			return;   /* the pool is stuck: drop rather than grow without bound */
		q = realloc(w->q, cap * sizeof(*q));
		if (q == NULL)
			return;
		w->q = q;
		w->capq = cap;
	}
	snprintf(w->q[w->nq].key, sizeof(w->q[w->nq].key), "%s", key);
	w->q[w->nq].o = o;
	w->nq++;
}

void reputation_record(const struct hook_env *env, enum reputation_outcome o)
{
	struct rep_worker *w;
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];

	if (env == NULL || (unsigned)o >= REPUTATION_NOUTCOMES)
		return;
	w = rep_current(env->worker);
	if (w == NULL)
		return;
	rep_tls_worker = env->worker;
	if (reputation_keys((const struct sockaddr *)&env->client, w->cfg->prefix_v4,
	    w->cfg->prefix_v6, ipkey, sizeof(ipkey), netkey, sizeof(netkey)) < 0)
		return;
	log_event(LOG_LVL_DEBUG, env->session_id, "event=reputation_record client=%s outcome=%s",
	    env->client_ip, rep_outcome_names[o]);
	if (w->db) {
		rep_queue(w, ipkey, o);
		rep_queue(w, netkey, o);
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
		redis_store_eval(w->rs, w->lua_add, 2, 3, argv, NULL, NULL, NULL, NULL);
	}
}

bool reputation_is_known_good(const struct sockaddr *sa)
{
	struct rep_worker *w = rep_current(rep_tls_worker);
	const struct reputation_config *c;
	char ipkey[REP_KEY_MAX], netkey[REP_KEY_MAX];
	struct rep_cache_ent *e;

	if (w == NULL || sa == NULL)
		return false;
	c = w->cfg;
	if (c->allow.n && cfg_cidrlist_match(&c->allow, sa))
		return true;
	if (c->deny.n && cfg_cidrlist_match(&c->deny, sa))
		return false;
	if (reputation_keys(sa, c->prefix_v4, c->prefix_v6, ipkey, sizeof(ipkey), netkey,
	    sizeof(netkey)) < 0)
		return false;
	e = rep_cache_slot(w, ipkey);
	if (strcmp(e->ip, ipkey) == 0 && e->until_ms > rep_wall_ms())
		return e->score >= c->good_threshold;
	if (w->db) {
		struct reputation_counts ip, net;
		uint64_t now = rep_wall_ms();
		double s;

		if (reputation_db_get(w->db, ipkey, &ip) < 0 || reputation_db_get(w->db, netkey, &net) < 0)
			return false;
		reputation_decay(&ip, now, c->half_life);
		reputation_decay(&net, now, c->half_life);
		s = reputation_score(&ip, &net, c->prefix_weight, c->prior);
		rep_cache_put(w, ipkey, s);
		return s >= c->good_threshold;
	}
	return false;
}
