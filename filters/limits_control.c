/* limits_control.c — the control socket's verbs for rate-limit buckets and greylist triplets
 * (proxy/control_verbs.h), as postgrey's postgreyreport, spamd's spamdb and Haraka karma's
 * Redis keys let an operator see and clear them:
 *
 *   ratelimit show KEY VALUE      every rule of KEY: what VALUE used, what is left, when full
 *   ratelimit reset KEY VALUE     VALUE's buckets of every rule of KEY go (a full bucket)
 *   greylist list [N]             up to N records (100 by default) with their state: the
 *                                 triplets, the message records (greylisting by score,
 *                                 "message DIGEST"), the client records
 *   greylist show IP SENDER RCPT  the triplet: unknown, waiting (since, passes in) or passed
 *   greylist pass IP SENDER RCPT  the triplet passes from now on (as after a retry)
 *   greylist delete IP SENDER RCPT  the triplet is forgotten (the next attempt is a first)
 *   greylist allow IP [TTL]       the client passes greylisting until TTL (spamdb -a IP)
 *   greylist disallow IP          its allow record goes
 *   greylist trap IP [TTL]        the client is trapped until TTL: every RCPT refused (spamdb -t -a)
 *   greylist untrap IP            its trap record goes (spamdb -t -d)
 *
 * KEY is a rule key (ip, ip_prefix, helo, sender, sender_domain, recipient, auth_domain,
 * auth_user); VALUE is normalised as a session's is (an IP: an IPv6 client is its
 * limits.client_ipv6_prefix network, ip_prefix each rule's network; the rest lowercased).
 * The triplet is made as greylisting makes it (network, sender form, recipient; "<>" is the
 * null sender). The store is the configured one: the process's local tables (read and
 * changed in place, thread-safe), the LMDB directory (read inline; a pass or delete goes
 * through every worker's writer after what it queued, answered when the batches are applied:
 * greylist_write_post), or Redis (one blocking connection per request on a thread of its own,
 * redis_store_job_start, every step bounded by the module's timeout: the main loop never
 * waits for Redis; a change goes to Redis first and to the local table once Redis has it).
 * Concurrency counts are sessions open now: shown, never reset. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "proxy/cfg_value.h"
#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "proxy/domain.h"
#include "proxy/headers.h"
#include "proxy/jsonw.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "greylist.h"
#include "ratelimit.h"
#include "ratelimit_local.h"
#include "store/lmdb_store.h"
#include "store/local_table.h"
#include "store/redis.h"
#include "store/store.h"

#define LC_KEY_MAX 700
/* An LMDB store no module has open here: the main loop's verbs open none (mkdir and
 * mdb_env_open may wait without a bound for another process's lock on lock.mdb). */
#define LC_LMDB_NOT_OPEN "%s is not open in this process (no greylist worker holds it: " \
	"event=module_error, or starting or stopping)"

/* ---- shared pieces ------------------------------------------------------------------------ */

/* Drops what was written to out (an error replaces a half-written JSON answer). */
static void lc_out_reset(struct strbuf *out)
{
	out->len = 0;
	if (out->v)
		out->v[0] = '\0';
}

/* s lowercased into out, without one trailing dot (domain.c's normal form). 0 or -1. */
static int lc_lower(const char *s, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	if (s[i])
		return -1;
	if (i > 1 && out[i - 1] == '.')
		i--;
	out[i] = '\0';
	return 0;
}

/* "<a@b>" -> "a@b" in place; "<>" -> "" (the null sender). */
static const char *lc_unbracket(char *s)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s[n - 1] = '\0';
		return s + 1;
	}
	return s;
}

static uint64_t lc_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* greylisting's client records (greylist.h: enum greylist_ip_state) and their verbs */
enum { GLIP_ALLOW = 0, GLIP_DISALLOW, GLIP_TRAP, GLIP_UNTRAP };
static const char *const lc_ip_ops[] = { "allow", "disallow", "trap", "untrap", NULL };
static const char *const lc_ip_states[] = { "none", "trapped", "allowed" };

/* ---- local table access ------------------------------------------------------------------ */

struct lc_rec { struct local_rec rec; bool reset; };

static int lc_rec_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct lc_rec *a = arg;

	a->rec = *rec;
	if (a->reset)
		memset(rec, 0, sizeof(*rec));      /* idle: dropped */
	return 1;
}

/* Reads (and with reset, clears) key's live record: 1 found, 0 absent. */
static int lc_local(struct local_table *t, const char *key, bool reset, struct local_rec *out)
{
	struct lc_rec a = { { 0, 0, 0 }, reset };

	if (t == NULL || local_table_update(t, key, uv_hrtime(), false, lc_rec_fn, &a) != 1)
		return 0;
	*out = a.rec;
	return 1;
}

/* ---- ratelimit show / reset -------------------------------------------------------------- */

/* A reset's time in the local table (kept one period), before the bucket goes: a refund
 * of a charge made before it (an RCPT admitted, then refused by greylisting) is dropped. */
static void lc_rl_local_mark(const struct ratelimit_rule_config *r, const char *key)
{
	char mark[700];
	struct timeval tv;

	gettimeofday(&tv, NULL);
	ratelimit_reset_key(key, mark, sizeof(mark));
	ratelimit_local_reset_mark(ratelimit_local_table(), mark, r->limit.period_ms * 1000000ull,
	    (uint64_t)tv.tv_sec * 1000000ull + (uint64_t)tv.tv_usec, uv_hrtime());
}

static int lc_rl_key_of(const char *name)
{
	for (int k = 0; k < 16; k++)
		if (strcmp(ratelimit_key_name(k), "?") == 0)
			return -1;
		else if (strcmp(ratelimit_key_name(k), name) == 0)
			return k;
	return -1;
}

/* The value a session would key rule r on: 0 or -1 (not an IP where one is needed). */
static int lc_rl_value(long v6prefix, const struct ratelimit_rule_config *r,
    const char *arg, char *out, size_t outlen)
{
	struct sockaddr_storage ss;

	if (r->key == RATELIMIT_KEY_IP || r->key == RATELIMIT_KEY_IP_PREFIX) {
		if (netaddr_sockaddr_from_string(arg, &ss) < 0)
			return -1;
		if (r->key == RATELIMIT_KEY_IP)
			return netaddr_client_string((struct sockaddr *)&ss, (int)v6prefix,
			    out, outlen) < 0 ? -1 : 0;
		return netaddr_prefix_string((struct sockaddr *)&ss, (int)r->prefix_v4, (int)r->prefix_v6,
		    out, outlen);
	}
	if (r->key == RATELIMIT_KEY_SENDER || r->key == RATELIMIT_KEY_RECIPIENT) {
		/* an address as SMTP writes it, <a@b>, is the one a session keys on (a@b), as the
		 * greylist verbs take it; the null sender <> is "<>" there */
		char addr[520];
		const char *a;

		if (strlen(arg) >= sizeof(addr))
			return -1;
		memcpy(addr, arg, strlen(arg) + 1);
		a = lc_unbracket(addr);
		return lc_lower(*a || r->key == RATELIMIT_KEY_RECIPIENT ? a : "<>", out, outlen);
	}
	if (r->key == RATELIMIT_KEY_RECIPIENT_DOMAIN)   /* the session's normal form */
		return domain_normalize(arg, strlen(arg), out, outlen) < 0 ? -1 : 0;
	return lc_lower(arg, out, outlen);
}

struct lc_bucket {
	bool found;
	uint64_t used, left, full_ms;   /* GCRA: cells in use, left now, ms until full again */
	uint64_t current;               /* concurrency: sessions open */
};

/* GCRA state from a TAT (any unit, with now and period in the same unit). */
static void lc_gcra_state(const struct ratelimit_rule_config *r, double tat, double now,
    double period, double unit_ms, struct lc_bucket *b)
{
	double emission = period / (double)r->limit.count, ahead = tat - now;
	uint64_t used;

	if (ahead <= 0)
		return;
	b->found = true;
	used = (uint64_t)((ahead + emission - 1e-9) / emission);
	if (used > r->limit.count)
		used = r->limit.count;
	b->used = used;
	b->left = r->limit.count - used;
	b->full_ms = (uint64_t)(ahead * unit_ms + 0.5);
}

/* One rule's bucket in Redis: GET/ZCOUNT with the server's TIME; reset: DEL. 0 or -1. */
static int lc_rl_redis(redisContext *c, const struct ratelimit_rule_config *r, const char *key,
    bool reset, struct lc_bucket *b, int *deleted)
{
	redisReply *t = redis_store_sync_command(c, "TIME"), *v = NULL;
	double now_us;
	int rc = -1;

	if (t == NULL || t->type != REDIS_REPLY_ARRAY || t->elements != 2)
		goto out;
	now_us = atof(t->element[0]->str) * 1e6 + atof(t->element[1]->str);
	if (r->count == RATELIMIT_COUNT_CONCURRENCY) {
		v = redis_store_sync_command(c, "ZCOUNT %s %.0f +inf", key, now_us / 1000);
		if (v == NULL || v->type != REDIS_REPLY_INTEGER)
			goto out;
		b->found = v->integer > 0;
		b->current = (uint64_t)v->integer;
		rc = 0;
		goto out;
	}
	if (reset) {
		char mark[700];        /* as lc_rl_local_mark: the store key (640) and the prefix */

		/* the time of the reset first: a charge from before it that a node queued through
		 * an outage is dropped by the charge script, also one run between these two */
		ratelimit_reset_key(key, mark, sizeof(mark));
		v = redis_store_sync_command(c, "SET %s %.0f PX %llu", mark, now_us,
		    (unsigned long long)r->limit.period_ms);
		if (v == NULL || v->type == REDIS_REPLY_ERROR)
			goto out;
		freeReplyObject(v);
	}
	v = redis_store_sync_command(c, reset ? "DEL %s" : "GET %s", key);
	if (v == NULL || v->type == REDIS_REPLY_ERROR)
		goto out;
	if (reset)
		*deleted += v->type == REDIS_REPLY_INTEGER && v->integer > 0;
	else if (v->type == REDIS_REPLY_STRING)
		lc_gcra_state(r, atof(v->str), now_us, (double)r->limit.period_ms * 1000, 0.001, b);
	rc = 0;
out:
	if (t)
		freeReplyObject(t);
	if (v)
		freeReplyObject(v);
	return rc;
}

/* ratelimit show|reset with c (a copy of the config's, off the main loop for Redis). */
static int lc_ratelimit_run(const struct ratelimit_config *c, long v6prefix, int argc, char **argv,
    const char *body, bool json, struct strbuf *out)
{
	const struct ratelimit_rule_config *rules = c->rules.v;
	bool reset, redis = store_kind_of(c->store) == STORE_REDIS;
	redisContext *rc = NULL;
	struct jsonw j;
	char err[200], value[520], key[LC_KEY_MAX];
	int k, n = 0, deleted = 0;

	if (argc != 3 || body != NULL || (strcmp(argv[0], "show") != 0 && strcmp(argv[0], "reset") != 0)) {
		strbuf_printf(out, "usage: ratelimit show|reset KEY VALUE (KEY: ip, ip_prefix, helo, sender, "
		    "sender_domain, recipient, auth_domain, auth_user)\n");
		return -1;
	}
	reset = argv[0][0] == 'r';
	if ((k = lc_rl_key_of(argv[1])) < 0) {
		strbuf_printf(out, "ratelimit: \"%.40s\" is not a rule key\n", argv[1]);
		return -1;
	}
	for (size_t i = 0; i < c->rules.n; i++)
		n += rules[i].key == k;
	if (n == 0) {
		strbuf_printf(out, "ratelimit: no rule counts by %s\n", argv[1]);
		return -1;
	}
	if (redis && (rc = redis_store_connect_sync(c->store, c->timeout, err, sizeof(err))) == NULL) {
		strbuf_printf(out, "ratelimit %s: %s\n", argv[0], err);
		return -1;
	}
	if (json) {
		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_str(&j, "key", argv[1]);
		jsonw_str(&j, "store", redis ? "redis" : "local");
		jsonw_arr(&j, "rules");
	}
	for (size_t i = 0; i < c->rules.n; i++) {
		const struct ratelimit_rule_config *r = &rules[i];
		struct lc_bucket b = { 0 };
		struct local_rec rec;
		bool conc = r->count == RATELIMIT_COUNT_CONCURRENCY;

		if (r->key != k)
			continue;
		if (lc_rl_value(v6prefix, r, argv[2], value, sizeof(value)) < 0) {
			if (json)
				lc_out_reset(out);
			strbuf_printf(out, "ratelimit: \"%.64s\" is %s\n", argv[2], r->key == RATELIMIT_KEY_IP ||
			    r->key == RATELIMIT_KEY_IP_PREFIX ? "not an IP address" : "too long");
			redisFree(rc);
			return -1;
		}
		ratelimit_store_key(r, value, key, sizeof(key));
		/* the local table: the store itself, or what it decided while Redis was down */
		if (reset && !conc)
			lc_rl_local_mark(r, key);
		if (lc_local(ratelimit_local_table(), key, reset && !conc, &rec)) {
			if (conc) {
				b.found = rec.val > 0;
				b.current = rec.val;
			} else {
				deleted += reset && !redis;
				if (!redis)
					lc_gcra_state(r, (double)rec.expires_ns, (double)uv_hrtime(),
					    (double)r->limit.period_ms * 1e6, 1e-6, &b);
			}
		}
		if (rc && lc_rl_redis(rc, r, key, reset && !conc, &b, &deleted) < 0) {
			if (json)
				lc_out_reset(out);
			strbuf_printf(out, "ratelimit %s: redis: %s\n", argv[0], rc->err ? rc->errstr : "error reply");
			redisFree(rc);
			return -1;
		}
		if (json) {
			jsonw_obj(&j, NULL);
			jsonw_str(&j, "value", value);
			jsonw_str(&j, "count", ratelimit_count_name(r->count));
			jsonw_str(&j, "limit", r->limit.text);
			if (conc) {
				jsonw_int(&j, "current", (long long)b.current);
			} else if (!reset) {
				jsonw_int(&j, "used", (long long)b.used);
				jsonw_int(&j, "left", (long long)(b.found ? b.left : r->limit.count));
				jsonw_int(&j, "full_in_ms", (long long)b.full_ms);
			}
			jsonw_end(&j);
		} else if (conc) {
			strbuf_printf(out, "%s %s concurrency %s: %llu session(s) open%s\n", argv[1], value,
			    r->limit.text, (unsigned long long)b.current, reset ? " (a count of open sessions: not reset)" : "");
		} else if (reset) {
			strbuf_printf(out, "%s %s %s %s: reset\n", argv[1], value, ratelimit_count_name(r->count),
			    r->limit.text);
		} else if (!b.found) {
			strbuf_printf(out, "%s %s %s %s: unused (%llu left)\n", argv[1], value,
			    ratelimit_count_name(r->count), r->limit.text, (unsigned long long)r->limit.count);
		} else {
			strbuf_printf(out, "%s %s %s %s: %llu used, %llu left, full again in %llus\n", argv[1],
			    value, ratelimit_count_name(r->count), r->limit.text, (unsigned long long)b.used,
			    (unsigned long long)b.left, (unsigned long long)((b.full_ms + 999) / 1000));
		}
	}
	redisFree(rc);
	if (json) {
		jsonw_end(&j);
		if (reset)
			jsonw_int(&j, "reset", deleted);
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
	}
	if (reset)
		log_event(LOG_LVL_INFO, NULL, "event=ratelimit_reset key=%s value=%s buckets=%d store=%s",
		    argv[1], value, deleted, redis ? "redis" : "local");
	return 0;
}

/* ---- a verb's Redis work off the main loop ------------------------------------------------ */

/* A verb asking Redis: its work (on a connection of its own, each step within the module's
 * timeout) runs on a thread of its own (redis_store_job_start) with copies of what it reads
 * of the config (a reload may free it meanwhile) and of its words; the answer, written to
 * out there, is handed to the reply on the main loop, which never waits for Redis. */
struct lc_job {
	struct control_reply *reply;
	struct strbuf out;              /* the job's answer (its thread's) */
	int rc;
	bool json;
	int argc;
	char *argv[8];
	char words[1400];               /* argv's text */
	int (*run)(struct lc_job *j);   /* on the job's thread: 0 or -1, out says */
	long v6prefix;
	struct ratelimit_config rl;     /* rl.rules.v: rules */
	struct ratelimit_rule_config *rules;
	struct greylist_config gc;      /* its store: store */
	char store[512];
	/* a triplet's or a client record's verb */
	int op;
	char key[LC_KEY_MAX], item[LC_KEY_MAX];
	char client[80];                /* a client record's: greylist_ip_client's form */
	uint64_t ttl_ms;
};

static void lc_job_free(struct lc_job *j)
{
	strbuf_free(&j->out);
	free(j->rules);
	free(j);
}

static void lc_job_work(void *arg)
{
	struct lc_job *j = arg;

	j->rc = j->run(j);
}

static void lc_job_done(void *arg)
{
	struct lc_job *j = arg;

	if (j->out.len)
		strbuf_append(control_reply_out(j->reply), j->out.v, j->out.len);
	control_reply_done(j->reply, j->rc);
	lc_job_free(j);
}

/* A job for r with argv copied (at most 8 words), or NULL (out of memory: r answered). */
static struct lc_job *lc_job_new(int argc, char **argv, bool json, struct control_reply *r,
    int (*run)(struct lc_job *j))
{
	struct lc_job *j = calloc(1, sizeof(*j));
	size_t off = 0;

	for (int i = 0; j && i < argc && i < 8; i++) {
		size_t n = strlen(argv[i]) + 1;

		if (off + n > sizeof(j->words)) {
			free(j);
			j = NULL;
			break;
		}
		memcpy(j->words + off, argv[i], n);
		j->argv[i] = j->words + off;
		off += n;
	}
	if (j == NULL) {
		strbuf_printf(control_reply_out(r), "out of memory\n");
		control_reply_done(r, -1);
		return NULL;
	}
	j->argc = argc < 8 ? argc : 8;
	j->json = json;
	j->reply = r;
	j->run = run;
	return j;
}

/* j's greylist config: c's, the store copied (the config may go). */
static void lc_job_greylist(struct lc_job *j, const struct greylist_config *c)
{
	j->gc = *c;
	snprintf(j->store, sizeof(j->store), "%s", c->store);
	j->gc.store = j->store;
}

/* Runs j's work off the main loop; r answered when it is done (or now: no thread). */
static void lc_job_start(struct lc_job *j)
{
	if (redis_store_job_start(control_reply_loop(j->reply), lc_job_work, lc_job_done, j) == 0)
		return;
	strbuf_printf(control_reply_out(j->reply), "%s: cannot start a thread for Redis\n", j->argc ? j->argv[0] : "");
	control_reply_done(j->reply, -1);
	lc_job_free(j);
}

static int lc_ratelimit_job(struct lc_job *j)
{
	return lc_ratelimit_run(&j->rl, j->v6prefix, j->argc, j->argv, NULL, j->json, &j->out);
}

static void ratelimit_verb_start(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct control_reply *r)
{
	const struct ratelimit_config *c = &cfg->ratelimit;
	struct lc_job *j;

	if (store_kind_of(c->store) != STORE_REDIS || argc != 3 || body != NULL) {
		control_reply_done(r, lc_ratelimit_run(c, cfg->limits.client_ipv6_prefix, argc, argv, body, json,
		    control_reply_out(r)));
		return;
	}
	if ((j = lc_job_new(argc, argv, json, r, lc_ratelimit_job)) == NULL)
		return;
	j->rl = *c;
	snprintf(j->store, sizeof(j->store), "%s", c->store);
	j->rl.store = j->store;
	j->v6prefix = cfg->limits.client_ipv6_prefix;
	if (c->rules.n && (j->rules = malloc(c->rules.n * sizeof(*j->rules))) == NULL) {
		lc_job_free(j);
		strbuf_printf(control_reply_out(r), "out of memory\n");
		control_reply_done(r, -1);
		return;
	}
	if (c->rules.n)
		memcpy(j->rules, c->rules.v, c->rules.n * sizeof(*j->rules));
	j->rl.rules.v = j->rules;
	j->rl.allow = (struct cfg_cidrlist){ 0 };
	lc_job_start(j);
}

/* During the drain too: the process-wide table, or Redis on a connection of its own off the
 * main loop. */
const struct control_verb ratelimit_control_verb = {
	.words = "ratelimit", .usage = "ratelimit show|reset KEY VALUE", .start = ratelimit_verb_start,
	.during_drain = true,
};

/* ---- greylist show / pass / delete ------------------------------------------------------- */

enum { GL_SHOW = 0, GL_PASS, GL_DELETE };

struct lc_triplet {
	bool found, passed;
	uint64_t age_ms, expires_ms;    /* since the first attempt / until forgotten */
};

/* The local table: read, pass (passed, kept for expire) or delete. */
struct lc_gl_arg { int op; uint64_t expire_ms; struct lc_triplet *t; };

static int lc_gl_local_fn(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct lc_gl_arg *a = arg;
	uint64_t first = rec->val & ~(1ull << 63);

	a->t->found = exists;
	if (exists) {
		a->t->passed = (rec->val >> 63) != 0;
		a->t->age_ms = now_ns / 1000000 > first ? now_ns / 1000000 - first : 0;
		a->t->expires_ms = (rec->expires_ns - now_ns) / 1000000;
	}
	if (a->op == GL_DELETE) {
		memset(rec, 0, sizeof(*rec));
	} else if (a->op == GL_PASS) {
		rec->val = (exists ? first : now_ns / 1000000) | (1ull << 63);
		rec->expires_ns = now_ns + a->expire_ms * 1000000;
	}
	return 1;
}

/* LMDB: reads the triplet into t; for pass and delete, the write (key, and the record or
 * vlen 0) into gw, done by the workers (greylist_write_post) or lc_gl_lmdb_write_later.
 * keep (may be NULL): on success the reference read through is the caller's (its write
 * goes to that environment, none opened here), to drop with lmdb_store_close_async. */
static int lc_gl_lmdb(const struct greylist_config *c, const char *triplet, int op,
    struct lc_triplet *t, struct greylist_write *gw, struct lmdb_store **keep, char *err, size_t errlen)
{
	/* the map the workers have open, never one opened on the main loop (mdb_env_open may
	 * wait for another process's lock on lock.mdb) */
	struct lmdb_store *st = lmdb_store_open_existing(store_lmdb_dir(c->store));
	unsigned char val[GREYLIST_RECORD_LEN];
	struct greylist_entry e;
	char *key = gw->key;
	uint64_t now = lc_wall_ms();
	size_t len = 0;
	int rc = -1;

	if (st == NULL) {
		snprintf(err, errlen, LC_LMDB_NOT_OPEN, c->store);
		return -1;
	}
	if (greylist_lmdb_key(lmdb_store_max_key(st), triplet, key, sizeof(gw->key)) < 0 ||
	    lmdb_store_get(st, key, strlen(key), val, sizeof(val), &len) < 0) {
		snprintf(err, errlen, "read failed");
		goto out;
	}
	if (len == sizeof(val) && greylist_record_decode(val, len, now, &e)) {
		uint64_t exp;

		memcpy(&exp, val, sizeof(exp));
		t->found = true;
		t->passed = e.passed;
		t->age_ms = now > e.first_ms ? now - e.first_ms : 0;
		t->expires_ms = exp > now ? exp - now : 0;
	}
	gw->vlen = 0;
	if (op == GL_PASS) {
		struct greylist_entry ne = { t->found ? now - t->age_ms : now, true };

		greylist_record_encode(&ne, now + c->expire, gw->val);
		gw->vlen = sizeof(gw->val);
	}
	rc = 0;
	if (keep != NULL) {
		*keep = st;
		return 0;
	}
out:
	/* a last reference (the workers closed theirs meanwhile): synced and closed off the
	 * main loop */
	lmdb_store_close_async(st);
	return rc;
}

/* A write whose key then gets its expiry: v (the write's reply) freed and replaced by
 * PEXPIRE's when the write succeeded; returned as is (NULL, an error reply) when not. */
static redisReply *lc_redis_expire_after(redisContext *rc, redisReply *v, const char *key,
    uint64_t ms)
{
	if (v && v->type != REDIS_REPLY_ERROR) {
		freeReplyObject(v);
		v = redis_store_sync_command(rc, "PEXPIRE %s %llu", key, (unsigned long long)ms);
	}
	return v;
}

static int lc_gl_redis(const struct greylist_config *c, const char *key, int op,
    struct lc_triplet *t, char *err, size_t errlen)
{
	redisContext *rc = redis_store_connect_sync(c->store, c->timeout, err, errlen);
	redisReply *v = NULL, *ttl = NULL, *tm = NULL;
	int ret = -1;

	if (rc == NULL)
		return -1;
	v = redis_store_sync_command(rc, "HMGET %s first pass", key);
	ttl = redis_store_sync_command(rc, "PTTL %s", key);
	tm = redis_store_sync_command(rc, "TIME");
	if (v == NULL || v->type != REDIS_REPLY_ARRAY || v->elements != 2 || ttl == NULL ||
	    ttl->type != REDIS_REPLY_INTEGER || tm == NULL || tm->type != REDIS_REPLY_ARRAY ||
	    tm->elements != 2)
		goto fail;
	if (v->element[0]->type == REDIS_REPLY_STRING) {
		double now = atof(tm->element[0]->str) * 1000 + atof(tm->element[1]->str) / 1000;
		double first = atof(v->element[0]->str);

		t->found = true;
		t->passed = v->element[1]->type == REDIS_REPLY_STRING;
		t->age_ms = now > first ? (uint64_t)(now - first) : 0;
		t->expires_ms = ttl->integer > 0 ? (uint64_t)ttl->integer : 0;
	}
	freeReplyObject(v);
	v = NULL;
	if (op == GL_DELETE) {
		/* the time of the delete first: a node's merge of an earlier attempt, queued through
		 * an outage, is dropped by the merge script, also one run between these two */
		char tomb[LC_KEY_MAX + sizeof(GREYLIST_DELETED_PREFIX)];

		snprintf(tomb, sizeof(tomb), "%s%s", GREYLIST_DELETED_PREFIX,
		    key + sizeof(GREYLIST_KEY_PREFIX) - 1);
		v = redis_store_sync_command(rc, "SET %s %.0f PX %llu", tomb, atof(tm->element[0]->str) * 1000 +
		    atof(tm->element[1]->str) / 1000, (unsigned long long)c->expire);
		if (v && v->type != REDIS_REPLY_ERROR) {
			freeReplyObject(v);
			v = redis_store_sync_command(rc, "DEL %s", key);
		}
	} else if (op == GL_PASS) {
		char first[32];

		snprintf(first, sizeof(first), "%.0f", atof(tm->element[0]->str) * 1000 +
		    atof(tm->element[1]->str) / 1000 - (double)t->age_ms);
		v = lc_redis_expire_after(rc, redis_store_sync_command(rc, "HSET %s first %s pass 1", key, first),
		    key, c->expire);
	}
	if (op != GL_SHOW && (v == NULL || v->type == REDIS_REPLY_ERROR))
		goto fail;
	ret = 0;
	goto out;
fail:
	snprintf(err, errlen, "redis: %s", rc->err ? rc->errstr : "error reply");
out:
	if (v)
		freeReplyObject(v);
	if (ttl)
		freeReplyObject(ttl);
	if (tm)
		freeReplyObject(tm);
	redisFree(rc);
	return ret;
}

/* ---- greylist list ------------------------------------------------------------------------ */

#define LC_LIST_DEFAULT 100
#define LC_LIST_MAX 10000
#define LC_SCAN_CALLS 200               /* Redis SCAN calls at most per list */
#define LC_LIST_BUDGET_MS 1000          /* Redis work per list at most (the verb's thread) */

struct lc_list {
	struct strbuf *out;
	struct jsonw j;
	bool json;
	size_t n, max;
	size_t msgs;                    /* message records listed (after the triplets) */
	size_t clients;                 /* client records listed (after the messages) */
	bool msg;                       /* listing message records now (lc_list_add) */
	bool truncated;
	uint64_t delay_ms, now_ms, now_ns;
};

/* A triplet's record, or with l->msg a message's (name: its digest, "message " before it in
 * the text form, "digest" in JSON). */
static void lc_list_add(struct lc_list *l, const char *name, const struct lc_triplet *t)
{
	const char *state = t->passed ? "passed" : "waiting";

	if (l->json) {
		jsonw_obj(&l->j, NULL);
		jsonw_str(&l->j, l->msg ? "digest" : "triplet", name);
		jsonw_str(&l->j, "state", state);
		jsonw_int(&l->j, "first_seen_ms_ago", (long long)t->age_ms);
		jsonw_int(&l->j, "expires_in_ms", (long long)t->expires_ms);
		jsonw_end(&l->j);
	} else {
		strbuf_printf(l->out, "%s%s %s first_seen=%llus expires=%llus\n", l->msg ? "message " : "", name,
		    state, (unsigned long long)(t->age_ms / 1000), (unsigned long long)(t->expires_ms / 1000));
	}
	if (l->msg)
		l->msgs++;
	else
		l->n++;
}

/* false once max entries are listed (the walk stops; truncated). */
static bool lc_list_room(struct lc_list *l)
{
	if (l->n + l->msgs < l->max)
		return true;
	l->truncated = true;
	return false;
}

/* A message record of the local table (greylisting by score). */
static bool lc_list_msgs_local_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct lc_list *l = arg;
	uint64_t first = rec->val & ~(1ull << 63), now_ms = l->now_ns / 1000000;
	struct lc_triplet t = { true, (rec->val >> 63) != 0, now_ms > first ? now_ms - first : 0,
		rec->expires_ns > l->now_ns ? (rec->expires_ns - l->now_ns) / 1000000 : 0 };

	if (strncmp(key, GREYLIST_MSG_PREFIX, sizeof(GREYLIST_MSG_PREFIX) - 1) != 0)
		return true;
	if (!lc_list_room(l))
		return false;
	lc_list_add(l, key + sizeof(GREYLIST_MSG_PREFIX) - 1, &t);
	return true;
}

static bool lc_list_local_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct lc_list *l = arg;
	uint64_t first = rec->val & ~(1ull << 63), now_ms = l->now_ns / 1000000;
	struct lc_triplet t = { true, (rec->val >> 63) != 0, now_ms > first ? now_ms - first : 0,
		rec->expires_ns > l->now_ns ? (rec->expires_ns - l->now_ns) / 1000000 : 0 };

	if (strncmp(key, GREYLIST_KEY_PREFIX, sizeof(GREYLIST_KEY_PREFIX) - 1) != 0)
		return true;                /* a client network's passes (auto_allow_clients) */
	if (!lc_list_room(l))
		return false;
	lc_list_add(l, key + sizeof(GREYLIST_KEY_PREFIX) - 1, &t);
	return true;
}

static bool lc_list_lmdb_fn(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct lc_list *l = arg;
	struct greylist_entry e;
	struct lc_triplet t = { true };
	char triplet[LC_KEY_MAX];
	uint64_t exp;

	if (!greylist_record_decode(val, vlen, l->now_ms, &e))
		return true;                /* expired, not swept yet */
	if (!lc_list_room(l))
		return false;
	memcpy(&exp, val, sizeof(exp));
	t.passed = e.passed;
	t.age_ms = l->now_ms > e.first_ms ? l->now_ms - e.first_ms : 0;
	t.expires_ms = exp > l->now_ms ? exp - l->now_ms : 0;
	size_t pl = l->msg ? sizeof(GREYLIST_MSG_LMDB) - 1 : 3;   /* "glm:" or "gl:" */

	if (klen < pl)
		return true;
	klen -= pl;
	if (klen >= sizeof(triplet))
		klen = sizeof(triplet) - 1;
	memcpy(triplet, (const char *)key + pl, klen);
	triplet[klen] = '\0';
	lc_list_add(l, triplet, &t);
	return true;
}

/* One key a SCAN found, read and listed (or skipped). */
typedef void (*lc_scan_fn)(redisContext *rc, const char *key, struct lc_list *l);

/* Redis: SCAN for the keys under prefix (bounded), each handed to each while room(l) says
 * there is room, for at most LC_LIST_BUDGET_MS after the connection (each step within the
 * timeout too), on the verb's thread (lc_gl_list_job); past the budget the list ends, truncated.
 * 0 or -1. */
static int lc_scan_redis(const struct greylist_config *c, struct lc_list *l, const char *prefix,
    bool (*room)(struct lc_list *l), lc_scan_fn each, char *err, size_t errlen)
{
	redisContext *rc = redis_store_connect_sync(c->store, c->timeout, err, errlen);
	uint64_t deadline = uv_hrtime() + (uint64_t)LC_LIST_BUDGET_MS * 1000000;
	char cursor[32] = "0";
	int ret = -1;

	if (rc == NULL)
		return -1;
	for (int calls = 0; calls < LC_SCAN_CALLS; calls++) {
		redisReply *r = redis_store_sync_command(rc, "SCAN %s MATCH %s* COUNT 200", cursor, prefix);

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING) {
			if (r)
				freeReplyObject(r);
			goto fail;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			if (!room(l))
				break;
			if (uv_hrtime() > deadline) {
				l->truncated = true;    /* the time budget is spent */
				break;
			}
			each(rc, r->element[1]->element[i]->str, l);
		}
		freeReplyObject(r);
		if (l->truncated || strcmp(cursor, "0") == 0)
			break;
		if (calls + 1 == LC_SCAN_CALLS || uv_hrtime() > deadline)
			l->truncated = true;
		if (l->truncated)
			break;
	}
	ret = 0;
	goto out;
fail:
	snprintf(err, errlen, "redis: %s", rc->err ? rc->errstr : "error reply");
out:
	redisFree(rc);
	return ret;
}

/* A triplet's key: HMGET first pass, PTTL. */
static void lc_list_redis_triplet(redisContext *rc, const char *key, struct lc_list *l)
{
	redisReply *v = redis_store_sync_command(rc, "HMGET %s first pass", key), *ttl = redis_store_sync_command(rc, "PTTL %s", key);
	struct lc_triplet t = { true };

	if (v && v->type == REDIS_REPLY_ARRAY && v->elements == 2 &&
	    v->element[0]->type == REDIS_REPLY_STRING && ttl && ttl->type == REDIS_REPLY_INTEGER) {
		double first = atof(v->element[0]->str);

		t.passed = v->element[1]->type == REDIS_REPLY_STRING;
		t.age_ms = (double)l->now_ms > first ? (uint64_t)((double)l->now_ms - first) : 0;
		t.expires_ms = ttl->integer > 0 ? (uint64_t)ttl->integer : 0;
		lc_list_add(l, key + (l->msg ? sizeof(GREYLIST_MSG_PREFIX) : sizeof(GREYLIST_KEY_PREFIX)) - 1, &t);
	}
	if (v)
		freeReplyObject(v);
	if (ttl)
		freeReplyObject(ttl);
}

/* ---- the client records (trapped, allowed) in the list ---------------------------------- */

static void lc_list_client(struct lc_list *l, const char *client, int state, uint64_t left_ms)
{
	if (l->json) {
		jsonw_obj(&l->j, NULL);
		jsonw_str(&l->j, "client", client);
		jsonw_str(&l->j, "state", lc_ip_states[state]);
		jsonw_int(&l->j, "expires_in_ms", (long long)left_ms);
		jsonw_end(&l->j);
	} else {
		strbuf_printf(l->out, "client %s %s expires=%llus\n", client, lc_ip_states[state],
		    (unsigned long long)(left_ms / 1000));
	}
	l->clients++;
}

static bool lc_list_clients_room(struct lc_list *l)
{
	if (l->n + l->msgs + l->clients < l->max)
		return true;
	l->truncated = true;
	return false;
}

static bool lc_list_clients_local_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct lc_list *l = arg;
	uint64_t since;
	int state = greylist_ip_local_state(rec->val, &since);

	if (strncmp(key, GREYLIST_IP_PREFIX, sizeof(GREYLIST_IP_PREFIX) - 1) != 0 || state == GREYLIST_IP_NONE)
		return true;
	if (!lc_list_clients_room(l))
		return false;
	lc_list_client(l, key + sizeof(GREYLIST_IP_PREFIX) - 1, state,
	    rec->expires_ns > l->now_ns ? (rec->expires_ns - l->now_ns) / 1000000 : 0);
	return true;
}

static bool lc_list_clients_lmdb_fn(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct lc_list *l = arg;
	uint64_t since, exp;
	int state = greylist_ip_decode(val, vlen, l->now_ms, &since, &exp);
	char client[100];
	size_t pl = sizeof(GREYLIST_IP_LMDB) - 1;

	if (state == GREYLIST_IP_NONE || klen <= pl || klen - pl >= sizeof(client))
		return true;
	if (!lc_list_clients_room(l))
		return false;
	memcpy(client, (const char *)key + pl, klen - pl);
	client[klen - pl] = '\0';
	lc_list_client(l, client, state, exp - l->now_ms);
	return true;
}

/* A client record's key: HGET s, PTTL. */
static void lc_list_redis_client(redisContext *rc, const char *key, struct lc_list *l)
{
	redisReply *v = redis_store_sync_command(rc, "HGET %s s", key), *ttl = redis_store_sync_command(rc, "PTTL %s", key);

	if (v && v->type == REDIS_REPLY_STRING && ttl && ttl->type == REDIS_REPLY_INTEGER &&
	    (strcmp(v->str, "1") == 0 || strcmp(v->str, "2") == 0))
		lc_list_client(l, key + sizeof(GREYLIST_IP_PREFIX) - 1, v->str[0] - '0',
		    ttl->integer > 0 ? (uint64_t)ttl->integer : 0);
	if (v)
		freeReplyObject(v);
	if (ttl)
		freeReplyObject(ttl);
}

/* One part of the list (the triplets, the message records, the client records): its key
 * prefix and the function listing one record, in each kind of store. */
struct lc_walk {
	const char *lmdb_prefix;
	lmdb_store_each_fn lmdb_each;
	const char *redis_prefix;
	bool (*room)(struct lc_list *l);
	lc_scan_fn redis_each;
	local_table_each_fn local_each;
};

static const struct lc_walk lc_walk_triplets = {
	"gl:", lc_list_lmdb_fn, GREYLIST_KEY_PREFIX, lc_list_room, lc_list_redis_triplet, lc_list_local_fn,
};
static const struct lc_walk lc_walk_messages = {
	GREYLIST_MSG_LMDB, lc_list_lmdb_fn, GREYLIST_MSG_PREFIX, lc_list_room, lc_list_redis_triplet,
	lc_list_msgs_local_fn,
};
static const struct lc_walk lc_walk_clients = {
	GREYLIST_IP_LMDB, lc_list_clients_lmdb_fn, GREYLIST_IP_PREFIX, lc_list_clients_room,
	lc_list_redis_client, lc_list_clients_local_fn,
};

/* Lists w's records of c's store (kind) into l, unless an earlier part could not be read
 * (err set) or filled the list (truncated). */
static void lc_list_walk(const struct greylist_config *c, int kind, const struct lc_walk *w,
    struct lc_list *l, char *err, size_t errlen)
{
	if (err[0] || l->truncated)
		return;
	if (kind == STORE_LMDB) {
		struct lmdb_store *st = lmdb_store_open_existing(store_lmdb_dir(c->store));

		if (st == NULL)
			snprintf(err, errlen, LC_LMDB_NOT_OPEN, c->store);
		else if (lmdb_store_foreach(st, w->lmdb_prefix, w->lmdb_each, l) < 0)
			snprintf(err, errlen, "cannot read %s", c->store);
		lmdb_store_close_async(st);
	} else if (kind == STORE_REDIS) {
		lc_scan_redis(c, l, w->redis_prefix, w->room, w->redis_each, err, errlen);
	} else if (greylist_local_table()) {
		local_table_foreach(greylist_local_table(), l->now_ns, w->local_each, l);
	}
}

/* greylist list [N]: up to N records (100 by default) of the store, in its order: the
 * triplets, then the message records (greylisting by score), then the client records. */
static int lc_greylist_list(const struct greylist_config *c, int argc, char **argv, bool json,
    struct strbuf *out)
{
	struct lc_list l = { .out = out, .json = json, .max = LC_LIST_DEFAULT, .delay_ms = c->delay };
	int kind = store_kind_of(c->store);
	const char *store = kind == STORE_LMDB ? "lmdb" : kind == STORE_REDIS ? "redis" : "local";
	char err[200] = "";
	char *e;

	if (argc == 2) {
		long v = strtol(argv[1], &e, 10);

		if (*e || v < 1 || v > LC_LIST_MAX) {
			strbuf_printf(out, "usage: greylist list [N] (1..%d, default %d)\n", LC_LIST_MAX,
			    LC_LIST_DEFAULT);
			return -1;
		}
		l.max = (size_t)v;
	}
	l.now_ms = lc_wall_ms();
	l.now_ns = uv_hrtime();
	if (json) {
		jsonw_init(&l.j, out);
		jsonw_obj(&l.j, NULL);
		jsonw_str(&l.j, "store", store);
		jsonw_arr(&l.j, "triplets");
	}
	lc_list_walk(c, kind, &lc_walk_triplets, &l, err, sizeof(err));
	/* then the message records (greylisting by score), within the same N */
	if (json && !err[0]) {
		jsonw_end(&l.j);
		jsonw_arr(&l.j, "messages");
	}
	l.msg = true;
	lc_list_walk(c, kind, &lc_walk_messages, &l, err, sizeof(err));
	l.msg = false;
	/* then the client records (trapped, allowed), within the same N */
	if (json && !err[0]) {
		jsonw_end(&l.j);
		jsonw_arr(&l.j, "clients");
	}
	lc_list_walk(c, kind, &lc_walk_clients, &l, err, sizeof(err));
	if (err[0]) {
		lc_out_reset(out);
		strbuf_printf(out, "greylist list: %s\n", err);
		return -1;
	}
	if (json) {
		jsonw_end(&l.j);
		jsonw_int(&l.j, "count", (long long)l.n);
		jsonw_int(&l.j, "message_count", (long long)l.msgs);
		jsonw_int(&l.j, "client_count", (long long)l.clients);
		jsonw_bool(&l.j, "truncated", l.truncated);
		jsonw_end(&l.j);
		strbuf_append(out, "\n", 1);
	} else {
		char cl[64] = "", ms[64] = "";

		if (l.msgs)
			snprintf(ms, sizeof(ms), ", %zu message record%s", l.msgs, l.msgs == 1 ? "" : "s");
		if (l.clients)
			snprintf(cl, sizeof(cl), ", %zu client record%s", l.clients, l.clients == 1 ? "" : "s");
		strbuf_printf(out, "%zu triplet%s (%s)%s%s%s\n", l.n, l.n == 1 ? "" : "s", store, ms, cl,
		    l.truncated ? ", more not listed" : "");
	}
	return 0;
}

static const char *const lc_gl_ops[] = { "show", "pass", "delete" };

/* The answer about triplet t (as it was before op), and the log line of a pass or delete. */
static void lc_gl_reply(struct strbuf *out, bool json, int op, const char *triplet, const char *store,
    const struct lc_triplet *t, uint64_t delay)
{
	const char *const *ops = lc_gl_ops;

	if (op != GL_SHOW) {
		/* the operator's sender and recipient, quotes and blanks included: escaped, and
		 * in quotes either way (the form the line always had) */
		char tv[1100];
		const char *q = log_val(tv, sizeof(tv), triplet), *dq = *q == '"' ? "" : "\"";

		log_event(LOG_LVL_INFO, NULL, "event=greylist_%s triplet=%s%s%s was=%s store=%s", ops[op],
		    dq, q, dq, !t->found ? "unknown" : t->passed ? "passed" : "waiting", store);
	}
	if (json) {
		struct jsonw j;

		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_str(&j, "triplet", triplet);
		jsonw_str(&j, "store", store);
		jsonw_str(&j, "state", !t->found ? "unknown" : t->passed ? "passed" : "waiting");
		if (t->found) {
			jsonw_int(&j, "first_seen_ms_ago", (long long)t->age_ms);
			jsonw_int(&j, "expires_in_ms", (long long)t->expires_ms);
			if (!t->passed)
				jsonw_int(&j, "passes_in_ms", (long long)(t->age_ms < delay ? delay - t->age_ms : 0));
		}
		if (op != GL_SHOW)
			jsonw_str(&j, "done", ops[op]);
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
		return;
	}
	if (!t->found)
		strbuf_printf(out, "%s: unknown", triplet);
	else if (t->passed)
		strbuf_printf(out, "%s: passed (first seen %llus ago, forgotten in %llus unless used)", triplet,
		    (unsigned long long)(t->age_ms / 1000), (unsigned long long)(t->expires_ms / 1000));
	else
		strbuf_printf(out, "%s: waiting (first seen %llus ago, a retry passes in %llus, forgotten in %llus)",
		    triplet, (unsigned long long)(t->age_ms / 1000),
		    (unsigned long long)(t->age_ms < delay ? (delay - t->age_ms + 999) / 1000 : 0),
		    (unsigned long long)(t->expires_ms / 1000));
	strbuf_printf(out, "%s\n", op == GL_PASS ? "; now passed" : op == GL_DELETE ? "; deleted" : "");
}

/* An LMDB pass or delete on its way through the workers' writers; or a Redis one waiting
 * for the workers to forget their queued writes of the key (then done here: gc, store). */
struct lc_gl_pending {
	struct greylist_write gw;       /* first member: done gets &gw */
	uv_async_t async;               /* on the main loop: every worker has done its part */
	uv_timer_t timer;               /* LMDB: the answer's bound (LMDB_APPLY_VERB_MS) */
	int handles;                    /* open of the two: p is freed when none is */
	bool timed;                     /* the timer is one of them */
	bool answered;                  /* the bound ran out first: answered ERR already */
	struct control_reply *reply;
	bool json;
	int op;
	struct lc_triplet t;
	uint64_t delay;
	char triplet[LC_KEY_MAX];
	struct greylist_config gc;      /* Redis: store, timeout, expire (the config may go) */
	char store[512];
	int ipop;                       /* a client record's verb: GLIP_* + 1; 0: a triplet's */
	int was;                        /* its state before (enum greylist_ip_state) */
	uint64_t was_left_ms, ttl_ms;
	struct lmdb_store *st;          /* lc_gl_lmdb_write_later's copy: the map the verb read
	                                 * (its reference), written and read again there */
};

static void lc_ip_reply(struct strbuf *out, bool json, int op, const char *client, const char *store,
    int was, uint64_t was_left_ms, uint64_t ttl_ms);

static void lc_gl_redis_finish(const struct greylist_config *c, const char *key, const char *triplet,
    int op, bool json, struct control_reply *r);

/* Any thread (the last worker's loop): hands the answer to the main loop. */
static void lc_gl_pending_done(struct greylist_write *gw)
{
	struct lc_gl_pending *p = (struct lc_gl_pending *)gw;

	uv_async_send(&p->async);
}

static void lc_gl_pending_closed_cb(uv_handle_t *h)
{
	struct lc_gl_pending *p = h->data;

	if (--p->handles == 0)
		free(p);
}

/* The verb's name, for its answer. */
static const char *lc_gl_verb(const struct lc_gl_pending *p);

/* Main loop: an LMDB change through the workers not written within LMDB_APPLY_VERB_MS
 * (another process holds the write lock: the workers' batches wait for it in the store's
 * writer thread): the verb is answered ERR now, the change stays queued and is written when
 * the lock comes; the workers' answer, when it comes, only frees p. */
static void lc_gl_pending_timeout_cb(uv_timer_t *t)
{
	struct lc_gl_pending *p = t->data;

	p->answered = true;
	strbuf_printf(control_reply_out(p->reply), "greylist %s: not written within %ds: another process holds "
	    "the write lock of %s (the change is queued in the workers and written when it lets go)\n",
	    lc_gl_verb(p), LMDB_APPLY_VERB_MS / 1000, p->store);
	control_reply_done(p->reply, -1);
}

/* A client record's verb: the state it found is the workers' (what they had queued, newer
 * than the map the verb read first) when one had a live record. */
static void lc_ip_seen(struct lc_gl_pending *p)
{
	uint64_t since, exp, wall = lc_wall_ms();
	int was = greylist_ip_decode(p->gw.seen, p->gw.seen_len, wall, &since, &exp);

	if (was == GREYLIST_IP_NONE)
		return;
	p->was = was;
	p->was_left_ms = exp > wall ? exp - wall : 0;
}

/* p's verb answered: every worker's batch with the write is applied (failed of them not),
 * or the change written here (lc_gl_lmdb_write_later). */
static void lc_gl_pending_answer(struct lc_gl_pending *p, int failed)
{
	struct strbuf *out = control_reply_out(p->reply);

	if (failed > 0) {
		strbuf_printf(out, "greylist %s: %s failed in %d of %zu workers (see the log)\n",
		    lc_gl_ops[p->op], p->gw.redis ? "dropping the queued writes" : "write", failed,
		    p->gw.workers);
		control_reply_done(p->reply, -1);
	} else if (p->ipop) {
		lc_ip_seen(p);
		lc_ip_reply(out, p->json, p->ipop - 1, p->triplet, "lmdb", p->was, p->was_left_ms, p->ttl_ms);
		control_reply_done(p->reply, 0);
	} else if (p->gw.redis) {
		lc_gl_redis_finish(&p->gc, p->gw.key, p->triplet, p->op, p->json, p->reply);
	} else {
		lc_gl_reply(out, p->json, p->op, p->triplet, "lmdb", &p->t, p->delay);
		control_reply_done(p->reply, 0);
	}
}

/* Main loop: every worker's batch with the write is applied (or failed); the reply. */
static void lc_gl_pending_answer_cb(uv_async_t *a)
{
	struct lc_gl_pending *p = a->data;

	if (!p->answered)
		lc_gl_pending_answer(p, atomic_load(&p->gw.failed));
	uv_close((uv_handle_t *)&p->async, lc_gl_pending_closed_cb);
	if (p->timed)
		uv_close((uv_handle_t *)&p->timer, lc_gl_pending_closed_cb);
}

static const char *lc_gl_verb(const struct lc_gl_pending *p)
{
	return p->ipop ? lc_ip_ops[p->ipop - 1] : lc_gl_ops[p->op];
}

/* Main loop: a client record's conditional delete written by lc_gl_lmdb_write_later: a
 * record still there (another process wrote one in another state between the verb's read
 * and its write, which the delete left) is what the answer says it found. Read in the map
 * the verb holds (q->st), never one opened here. */
static void lc_ip_written(struct lc_gl_pending *q)
{
	size_t len = 0;

	if (lmdb_store_get(q->st, q->gw.key, strlen(q->gw.key), q->gw.seen, sizeof(q->gw.seen),
	    &len) == 1 && len == sizeof(q->gw.seen))
		q->gw.seen_len = len;
}

/* Main loop: the change lc_gl_lmdb_write_later handed over is written, failed, or was not
 * written within LMDB_APPLY_VERB_MS; q (a copy of the verb's pending state) freed. */
static void lc_gl_applied_cb(void *arg, int rc)
{
	struct lc_gl_pending *q = arg;
	const char *verb = lc_gl_verb(q);

	if (rc == 0 && q->ipop && q->gw.del_only != 0)
		lc_ip_written(q);

	if (rc == LMDB_APPLY_TIMEOUT) {
		strbuf_printf(control_reply_out(q->reply), "greylist %s: not written within %ds: another process "
		    "holds the write lock of %s (the change is written when it lets go)\n", verb,
		    LMDB_APPLY_VERB_MS / 1000, q->store);
		control_reply_done(q->reply, -1);
	} else if (rc < 0) {
		strbuf_printf(control_reply_out(q->reply), "greylist %s: write failed (see the log)\n", verb);
		control_reply_done(q->reply, -1);
	} else {
		lc_gl_pending_answer(q, 0);
	}
	lmdb_store_close_async(q->st);
	free(q);
}

/* p's change when no worker holds the store (none started yet, the drain's end): handed to
 * the directory's writer thread and answered when it is written or after LMDB_APPLY_VERB_MS
 * (lc_gl_applied_cb), never waited for here: another process holding LMDB's write lock
 * would stall the main loop (every control client, the metrics listener, a reload). p's
 * handle is closing (lc_gl_pending_post): a copy waits. A client record's delete (disallow,
 * untrap) carries its condition as the workers' does (greylist_ip_del_merge, checked in the
 * batch's write transaction): the verb read the map before, and another process may write
 * the record before the batch — a trap that disallow deleted. st: the reference the verb
 * read through (taken: the change goes to that environment, none is opened here even when
 * the workers closed theirs since). 1: answered later; -1: err says why. */
static int lc_gl_lmdb_write_later(const struct greylist_config *c, const struct lc_gl_pending *p,
    struct lmdb_store *st, char *err, size_t errlen)
{
	struct lmdb_store_change ch = { .key = p->gw.key, .val = p->gw.val, .vlen = p->gw.vlen };
	uint64_t del[2] = { GREYLIST_IP_DEL_MARK, (uint64_t)p->gw.del_only };
	struct lc_gl_pending *q = malloc(sizeof(*q));
	int rc;

	if (p->gw.vlen == 0 && p->gw.del_only != 0) {
		ch.val = del;
		ch.vlen = sizeof(del);
		ch.merge = greylist_ip_del_merge;
	}

	if (q == NULL) {
		lmdb_store_close_async(st);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(q, p, sizeof(*q));       /* its async handle is p's, never used through q */
	q->st = st;
	snprintf(q->store, sizeof(q->store), "%s", store_lmdb_dir(c->store));
	rc = lmdb_store_apply_start_on(control_reply_loop(p->reply), st, "greylist", &ch, 1,
	    LMDB_APPLY_VERB_MS, lc_gl_applied_cb, q);
	if (rc == 0)
		return 1;
	lmdb_store_close_async(st);
	free(q);
	if (rc == LMDB_APPLY_NO_MAP)
		snprintf(err, errlen, "cannot open %s", c->store);
	else if (rc == LMDB_APPLY_NO_MEMORY)
		snprintf(err, errlen, "out of memory");
	else
		snprintf(err, errlen, "write failed (see the log)");
	return -1;
}

/* Fills in p's answer and hands p->gw to the workers (greylist_write_post). 1: posted, the
 * answer comes from lc_gl_pending_answer_cb; 0: no worker holds the store, p's handle is
 * closing and p stays valid until the main loop runs on (the caller does the change itself
 * now); -1: err says why, p is freed. */
static int lc_gl_pending_post(struct lc_gl_pending *p, const struct greylist_config *c,
    const char *triplet, int op, bool json, struct control_reply *r, char *err, size_t errlen)
{
	p->reply = r;
	p->json = json;
	p->op = op;
	p->delay = c->delay;
	snprintf(p->triplet, sizeof(p->triplet), "%s", triplet);
	p->gw.done = lc_gl_pending_done;
	if (uv_async_init(control_reply_loop(r), &p->async, lc_gl_pending_answer_cb) != 0) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->async.data = p;
	p->handles = 1;
	if (!p->gw.redis)
		snprintf(p->store, sizeof(p->store), "%s", store_lmdb_dir(c->store));
	if (greylist_write_post(&p->gw) > 0) {
		/* LMDB: answered when written, or ERR at the bound (the workers' answer comes on
		 * this loop, after this return: the timer is in place before it) */
		if (!p->gw.redis) {
			uv_timer_init(control_reply_loop(r), &p->timer);
			p->timer.data = p;
			p->timed = true;
			p->handles = 2;
			uv_timer_start(&p->timer, lc_gl_pending_timeout_cb, LMDB_APPLY_VERB_MS, 0);
		}
		return 1;
	}
	uv_close((uv_handle_t *)&p->async, lc_gl_pending_closed_cb);
	return 0;
}

/* LMDB pass/delete: through every worker's writer, answered when their batches are applied
 * (greylist_write_post); without a worker holding the store, written from here
 * (lc_gl_lmdb_write_later). 1: answered later; -1: err says why. */
static int lc_gl_lmdb_change(const struct greylist_config *c, const char *triplet, int op, bool json,
    struct lc_triplet *t, struct control_reply *r, char *err, size_t errlen)
{
	struct lc_gl_pending *p = calloc(1, sizeof(*p));
	struct lmdb_store *st = NULL;

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (lc_gl_lmdb(c, triplet, op, t, &p->gw, &st, err, errlen) < 0) {
		free(p);
		return -1;
	}
	p->t = *t;
	int rc = lc_gl_pending_post(p, c, triplet, op, json, r, err, errlen);

	if (rc != 0) {
		lmdb_store_close_async(st);
		return rc;
	}
	/* no worker holds the store (none started yet, the drain's end): written from here,
	 * to the map read (held since: the workers may have closed theirs) */
	return lc_gl_lmdb_write_later(c, p, st, err, errlen);
}

/* The job's thread: a triplet's show, pass or delete in Redis, on a connection of the
 * verb's own; a pass or delete then changes the local table (the fallback during an outage)
 * as Redis was — only then: with Redis not answering nothing is changed but the workers'
 * queued writes of the triplet (dropped before, lc_gl_redis_change). */
static int lc_gl_redis_job(struct lc_job *j)
{
	struct local_table *tb = greylist_local_table();
	struct lc_triplet t = { 0 }, lt = { 0 };
	struct lc_gl_arg a = { j->op, j->gc.expire, &lt };
	char err[200] = "";

	if (lc_gl_redis(&j->gc, j->key, j->op, &t, err, sizeof(err)) < 0) {
		if (j->op == GL_SHOW)
			strbuf_printf(&j->out, "greylist show: %s\n", err);
		else
			strbuf_printf(&j->out, "greylist %s: %s: not changed (the workers' queued writes of the "
			    "triplet were dropped; run it again once Redis answers)\n", lc_gl_ops[j->op], err);
		return -1;
	}
	if (j->op != GL_SHOW && tb)
		local_table_update(tb, j->key, uv_hrtime(), j->op == GL_PASS, lc_gl_local_fn, &a);
	lc_gl_reply(&j->out, j->json, j->op, j->item, "redis", &t, j->gc.delay);
	return 0;
}

/* A triplet's verb in Redis, off the main loop (lc_gl_redis_job); r answered when done. */
static void lc_gl_redis_finish(const struct greylist_config *c, const char *key, const char *triplet,
    int op, bool json, struct control_reply *r)
{
	struct lc_job *j = lc_job_new(0, NULL, json, r, lc_gl_redis_job);

	if (j == NULL)
		return;
	lc_job_greylist(j, c);
	j->op = op;
	snprintf(j->key, sizeof(j->key), "%s", key);
	snprintf(j->item, sizeof(j->item), "%s", triplet);
	lc_job_start(j);
}

static int lc_gl_list_job(struct lc_job *j)
{
	return lc_greylist_list(&j->gc, j->argc, j->argv, j->json, &j->out);
}

/* Redis pass/delete: first every worker forgets its writes of the key not applied yet
 * (queued through an outage, they would be merged back after the verb's change when its
 * connection returns), through the module's mailbox; then lc_gl_redis_finish on the main
 * loop. 1: answered later; 0: no worker holds a Redis store, done here. -1: err. A write
 * a worker had already sent is applied by Redis before the verb's, or in the rare case
 * that both arrive in one of Redis's reads, in either order. */
static int lc_gl_redis_change(const struct greylist_config *c, const char *key, const char *triplet,
    int op, bool json, struct control_reply *r, char *err, size_t errlen)
{
	struct lc_gl_pending *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->gc = *c;
	snprintf(p->store, sizeof(p->store), "%s", c->store);
	p->gc.store = p->store;
	snprintf(p->gw.key, sizeof(p->gw.key), "%s", key);
	p->gw.redis = true;
	int rc = lc_gl_pending_post(p, c, triplet, op, json, r, err, errlen);

	if (rc == 0)
		lc_gl_redis_finish(c, key, triplet, op, json, r);
	return rc;
}

/* ---- greylist allow / disallow / trap / untrap: a client's own record ------------------- */


/* The state an op leaves: allow/trap write theirs; disallow/untrap delete only their own. */
static int lc_ip_after(int op, int was)
{
	if (op == GLIP_ALLOW)
		return GREYLIST_IP_ALLOWED;
	if (op == GLIP_TRAP)
		return GREYLIST_IP_TRAPPED;
	if ((op == GLIP_DISALLOW && was == GREYLIST_IP_ALLOWED) || (op == GLIP_UNTRAP && was == GREYLIST_IP_TRAPPED))
		return GREYLIST_IP_NONE;
	return was;
}

/* The answer and the log line of a client record's verb. */
static void lc_ip_reply(struct strbuf *out, bool json, int op, const char *client, const char *store,
    int was, uint64_t was_left_ms, uint64_t ttl_ms)
{
	int now = lc_ip_after(op, was);
	bool changed = op == GLIP_ALLOW || op == GLIP_TRAP || now != was;

	log_event(LOG_LVL_INFO, NULL, "event=greylist_ip op=%s client=%s was=%s state=%s ttl=%llu store=%s",
	    lc_ip_ops[op], client, lc_ip_states[was], lc_ip_states[now],
	    (unsigned long long)(now != GREYLIST_IP_NONE && changed ? ttl_ms / 1000 : 0), store);
	if (json) {
		struct jsonw j;

		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_str(&j, "client", client);
		jsonw_str(&j, "store", store);
		jsonw_str(&j, "was", lc_ip_states[was]);
		jsonw_str(&j, "state", lc_ip_states[now]);
		if (now != GREYLIST_IP_NONE)
			jsonw_int(&j, "expires_in_ms", (long long)(changed ? ttl_ms : was_left_ms));
		jsonw_str(&j, "done", changed ? lc_ip_ops[op] : "nothing");
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
		return;
	}
	if (now == GREYLIST_IP_NONE)
		strbuf_printf(out, "%s: %s (was %s)\n", client, changed ? "record deleted" : "no record", lc_ip_states[was]);
	else if (!changed)
		strbuf_printf(out, "%s: %s for %llus more: not changed (%s removes it)\n", client,
		    lc_ip_states[was], (unsigned long long)(was_left_ms / 1000),
		    was == GREYLIST_IP_TRAPPED ? "untrap" : "disallow");
	else
		strbuf_printf(out, "%s: %s for %llus (was %s)\n", client, lc_ip_states[now],
		    (unsigned long long)(ttl_ms / 1000), lc_ip_states[was]);
}

/* untrap in Redis: the time of it first (Redis's clock, kept trap_ttl), so that a trap a
 * node set during an outage before it, still in that node's write queue, is dropped when it
 * arrives (greylist.c gl_lua_trap). The reply, or NULL. */
static redisReply *lc_ip_untrapped(redisContext *rc, const struct greylist_config *c, const char *client)
{
	redisReply *tm = redis_store_sync_command(rc, "TIME"), *v = NULL;

	if (tm != NULL && tm->type == REDIS_REPLY_ARRAY && tm->elements == 2 &&
	    tm->element[0]->type == REDIS_REPLY_STRING && tm->element[1]->type == REDIS_REPLY_STRING)
		v = redis_store_sync_command(rc, "SET %s%s %.0f PX %llu", GREYLIST_UNTRAPPED_PREFIX, client,
		    atof(tm->element[0]->str) * 1000 + atof(tm->element[1]->str) / 1000,
		    (unsigned long long)c->trap_ttl);
	if (tm)
		freeReplyObject(tm);
	return v;
}

/* disallow|untrap's delete in Redis: the record only when it is still in the state the verb
 * read (ARGV[1]), checked and deleted in one step — a plain DEL after the read removed a
 * record written in between (another node's queued trap, gl_lua_trap; another verb). Returns
 * {1} when deleted, else {0, the state there ('' none), its PTTL}. */
static const char lc_ip_del_lua[] =
	"local s = redis.call('HGET', KEYS[1], 's')\n"
	"if s == ARGV[1] then redis.call('DEL', KEYS[1]) return {1} end\n"
	"return {0, s or '', redis.call('PTTL', KEYS[1])}\n";

/* Redis: the record read (HGET s, PTTL) and changed on a connection of the verb's own. The
 * workers' script reads it at each check; nothing of it is queued in their write queues. */
static int lc_ip_redis(const struct greylist_config *c, const char *client, int op, uint64_t ttl_ms,
    int *was, uint64_t *left_ms, char *err, size_t errlen)
{
	redisContext *rc = redis_store_connect_sync(c->store, c->timeout, err, errlen);
	redisReply *v = NULL, *ttl = NULL;
	char key[sizeof(GREYLIST_IP_PREFIX) + 80];
	int ret = -1, now;

	if (rc == NULL)
		return -1;
	snprintf(key, sizeof(key), "%s%s", GREYLIST_IP_PREFIX, client);
	v = redis_store_sync_command(rc, "HGET %s s", key);
	ttl = redis_store_sync_command(rc, "PTTL %s", key);
	if (v == NULL || v->type == REDIS_REPLY_ERROR || ttl == NULL || ttl->type != REDIS_REPLY_INTEGER)
		goto fail;
	*was = v->type == REDIS_REPLY_STRING && strcmp(v->str, "1") == 0 ? GREYLIST_IP_TRAPPED :
	    v->type == REDIS_REPLY_STRING && strcmp(v->str, "2") == 0 ? GREYLIST_IP_ALLOWED : GREYLIST_IP_NONE;
	*left_ms = ttl->integer > 0 ? (uint64_t)ttl->integer : 0;
	freeReplyObject(v);
	v = NULL;
	now = lc_ip_after(op, *was);
	if (op == GLIP_UNTRAP) {
		/* also with no record here: the trap may wait in another node's queue */
		v = lc_ip_untrapped(rc, c, client);
		if (v == NULL || v->type == REDIS_REPLY_ERROR)
			goto fail;
		freeReplyObject(v);
		v = NULL;
	}
	if (now == GREYLIST_IP_NONE && *was != GREYLIST_IP_NONE) {
		v = redis_store_sync_command(rc, "EVAL %s 1 %s %d", lc_ip_del_lua, key, *was);
		if (v != NULL && v->type == REDIS_REPLY_ARRAY && v->elements == 3 &&
		    v->element[0]->type == REDIS_REPLY_INTEGER && v->element[0]->integer == 0 &&
		    v->element[1]->type == REDIS_REPLY_STRING && v->element[2]->type == REDIS_REPLY_INTEGER) {
			/* changed since the read: the answer is what is there (left as it is) */
			*was = strcmp(v->element[1]->str, "1") == 0 ? GREYLIST_IP_TRAPPED :
			    strcmp(v->element[1]->str, "2") == 0 ? GREYLIST_IP_ALLOWED : GREYLIST_IP_NONE;
			*left_ms = v->element[2]->integer > 0 ? (uint64_t)v->element[2]->integer : 0;
		}
	} else if (op == GLIP_ALLOW || op == GLIP_TRAP) {
		v = lc_redis_expire_after(rc, redis_store_sync_command(rc, "HSET %s s %d t %llu", key, now,
		    (unsigned long long)lc_wall_ms()), key, ttl_ms);
	} else {
		ret = 0;                /* nothing to change */
		goto out;
	}
	if (v == NULL || v->type == REDIS_REPLY_ERROR)
		goto fail;
	ret = 0;
	goto out;
fail:
	snprintf(err, errlen, "redis: %s", rc->err ? rc->errstr : "error reply");
out:
	if (v)
		freeReplyObject(v);
	if (ttl)
		freeReplyObject(ttl);
	redisFree(rc);
	return ret;
}

/* The local table's record of client changed by op as a store's is; *was: its state before. */
static void lc_ip_local_apply(const char *client, int op, uint64_t ttl_ms, int *was, uint64_t *left_ms)
{
	int w = greylist_ip_local(client, 0, 0, left_ms), now = lc_ip_after(op, w);

	if (now != GREYLIST_IP_NONE && (op == GLIP_ALLOW || op == GLIP_TRAP))
		greylist_ip_local(client, now, ttl_ms, left_ms);
	else if (now == GREYLIST_IP_NONE && w != GREYLIST_IP_NONE)
		greylist_ip_local(client, -1, 0, left_ms);
	*was = w;
}

/* The job's thread: a client record's verb in Redis; once Redis has it, the local table (the
 * fallback a worker decides by while Redis does not answer) the same way. Redis not
 * answering: nothing is changed, and the answer says so — the operator's change is in every
 * store or in none. */
static int lc_ip_redis_job(struct lc_job *j)
{
	uint64_t left_ms = 0, local_left;
	int was = GREYLIST_IP_NONE, local_was;
	char err[200] = "";

	if (lc_ip_redis(&j->gc, j->client, j->op, j->ttl_ms, &was, &left_ms, err, sizeof(err)) < 0) {
		strbuf_printf(&j->out, "greylist %s: %s: nothing changed (run it again once Redis answers)\n",
		    lc_ip_ops[j->op], err);
		return -1;
	}
	lc_ip_local_apply(j->client, j->op, j->ttl_ms, &local_was, &local_left);
	if (j->op == GLIP_TRAP)
		greylist_count_trapped();
	lc_ip_reply(&j->out, j->json, j->op, j->client, "redis", was, left_ms, j->ttl_ms);
	return 0;
}

/* greylist allow|disallow|trap|untrap IP [TTL]: the client's record in the configured store
 * (spamdb -a IP, -t -a IP). A client is its address, an IPv6 one its
 * limits.client_ipv6_prefix network, as greylisting keys it. */
static void lc_ip_verb(const struct mx_config *cfg, int op, int argc, char **argv, bool json,
    struct control_reply *r)
{
	const struct greylist_config *c = &cfg->greylist;
	struct strbuf *out = control_reply_out(r);
	struct sockaddr_storage ss;
	char client[80], err[200] = "";
	uint64_t ttl_ms = op == GLIP_TRAP ? c->trap_ttl : c->expire, left_ms = 0;
	int kind = store_kind_of(c->store), was = GREYLIST_IP_NONE, now;
	const char *store = kind == STORE_LMDB ? "lmdb" : kind == STORE_REDIS ? "redis" : "local";

	if (argc < 2 || argc > 3 || (argc == 3 && op != GLIP_ALLOW && op != GLIP_TRAP)) {
		strbuf_printf(out, "usage: greylist allow|trap IP [TTL] | greylist disallow|untrap IP\n");
		control_reply_done(r, -1);
		return;
	}
	if (!c->enabled) {
		strbuf_printf(out, "greylist: not enabled\n");
		control_reply_done(r, -1);
		return;
	}
	if (netaddr_sockaddr_from_string(argv[1], &ss) < 0 ||
	    greylist_ip_client((struct sockaddr *)&ss, cfg->limits.client_ipv6_prefix, client, sizeof(client)) < 0) {
		strbuf_printf(out, "greylist: \"%.64s\" is not an IP address\n", argv[1]);
		control_reply_done(r, -1);
		return;
	}
	if (argc == 3 && (cfg_parse_duration(argv[2], &ttl_ms) < 0 || ttl_ms < 1000 ||
	    ttl_ms > 365ull * 86400000)) {
		strbuf_printf(out, "greylist %s: TTL \"%.32s\": expected a duration from 1s to 365d (3600s, 24h, 36d)\n",
		    lc_ip_ops[op], argv[2]);
		control_reply_done(r, -1);
		return;
	}
	if (kind == STORE_LMDB) {
		struct lc_gl_pending *p = calloc(1, sizeof(*p));
		/* the map the workers have open, never one opened on the main loop (mdb_env_open
		 * may wait for another process's lock on lock.mdb); kept for a write from here */
		struct lmdb_store *st = lmdb_store_open_existing(store_lmdb_dir(c->store));
		unsigned char val[GREYLIST_RECORD_LEN];
		uint64_t since, exp, wall = lc_wall_ms();
		size_t len = 0;
		int rc;

		if (p == NULL || st == NULL) {
			if (p == NULL)
				snprintf(err, sizeof(err), "out of memory");
			else
				snprintf(err, sizeof(err), LC_LMDB_NOT_OPEN, c->store);
			free(p);
			lmdb_store_close_async(st);
			goto fail;
		}
		snprintf(p->gw.key, sizeof(p->gw.key), "%s%s", GREYLIST_IP_LMDB, client);
		if (lmdb_store_get(st, p->gw.key, strlen(p->gw.key), val, sizeof(val), &len) < 0) {
			snprintf(err, sizeof(err), "read failed");
			free(p);
			lmdb_store_close_async(st);
			goto fail;
		}
		was = greylist_ip_decode(val, len, wall, &since, &exp);
		left_ms = exp > wall ? exp - wall : 0;
		now = lc_ip_after(op, was);
		/* disallow and untrap always go through the writers, whatever the map holds: a
		 * trap a worker made in the last batch interval, or one a verb queued behind
		 * another process's write lock, is in their queues, not in the map yet; each
		 * deletes only a record in its own state as LMDB applies it (del_only, checked in
		 * the batch's write transaction: untrap never deletes an allow record nor
		 * disallow a trap, whichever worker's batch lands first), and the answer is the
		 * newest record a worker saw (lc_ip_seen) */
		p->gw.vlen = 0;
		if (op == GLIP_DISALLOW || op == GLIP_UNTRAP)
			p->gw.del_only = op == GLIP_UNTRAP ? GREYLIST_IP_TRAPPED : GREYLIST_IP_ALLOWED;
		else if (now != GREYLIST_IP_NONE) {
			greylist_ip_encode(now, wall, wall + ttl_ms, p->gw.val);
			p->gw.vlen = sizeof(p->gw.val);
		}
		p->ipop = op + 1;
		p->gw.want_seen = true;
		p->was = was;
		p->was_left_ms = left_ms;
		p->ttl_ms = ttl_ms;
		if (op == GLIP_TRAP)
			greylist_count_trapped();
		rc = lc_gl_pending_post(p, c, client, GL_SHOW, json, r, err, sizeof(err));
		if (rc != 0 || (p->gw.del_only != 0 && was != p->gw.del_only))
			lmdb_store_close_async(st);
		if (rc == 1)
			return;                 /* answered when the workers' batches are applied */
		/* no worker holds the store: the map is all there is (p's handle is closing) */
		if (rc == 0 && p->gw.del_only != 0 && was != p->gw.del_only)
			goto answer;            /* not the record the verb deletes: nothing to do */
		if (rc < 0 || lc_gl_lmdb_write_later(c, p, st, err, sizeof(err)) < 0)
			goto fail;
		return;                         /* answered when written (lc_gl_applied_cb) */
	}
	if (kind == STORE_REDIS) {
		struct lc_job *j = lc_job_new(0, NULL, json, r, lc_ip_redis_job);

		if (j == NULL)
			return;
		lc_job_greylist(j, c);
		j->op = op;
		j->ttl_ms = ttl_ms;
		snprintf(j->client, sizeof(j->client), "%s", client);
		lc_job_start(j);        /* answered off the main loop */
		return;
	}
	/* the local table: the store itself */
	lc_ip_local_apply(client, op, ttl_ms, &was, &left_ms);
	if (op == GLIP_TRAP)
		greylist_count_trapped();
answer:
	lc_ip_reply(out, json, op, client, store, was, left_ms, ttl_ms);
	control_reply_done(r, 0);
	return;
fail:
	strbuf_printf(out, "greylist %s: %s\n", lc_ip_ops[op], err);
	control_reply_done(r, -1);
}

static void greylist_verb_start(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct control_reply *r)
{
	const char *const *ops = lc_gl_ops;
	const struct greylist_config *c = &cfg->greylist;
	struct strbuf *out = control_reply_out(r);
	struct sockaddr_storage ss;
	struct lc_triplet t = { 0 };
	char key[LC_KEY_MAX], err[200] = "", snd[300];
	const size_t plen = sizeof(GREYLIST_KEY_PREFIX) - 1;
	const char *triplet = key + plen, *store;
	int op = -1, kind = store_kind_of(c->store);

	for (int i = 0; i < 3; i++)
		if (argc >= 1 && strcmp(argv[0], ops[i]) == 0)
			op = i;
	bool list = body == NULL && argc >= 1 && argc <= 2 && strcmp(argv[0], "list") == 0;

	for (int i = 0; body == NULL && argc >= 1 && lc_ip_ops[i]; i++)
		if (strcmp(argv[0], lc_ip_ops[i]) == 0) {
			lc_ip_verb(cfg, i, argc, argv, json, r);
			return;
		}
	/* the store holds message records too when the rules engine greylists by score, with
	 * greylist.enabled false as well (greylist.h): listed then */
	bool listable = c->enabled || greylist_message_wanted(cfg);

	if (list && listable && kind == STORE_REDIS) {
		struct lc_job *j = lc_job_new(argc, argv, json, r, lc_gl_list_job);

		if (j != NULL) {
			lc_job_greylist(j, c);
			lc_job_start(j);        /* SCAN off the main loop */
		}
		return;
	}
	if (list && listable) {
		control_reply_done(r, lc_greylist_list(c, argc, argv, json, out));
		return;
	}
	if (!list && (argc != 4 || body != NULL || op < 0)) {
		strbuf_printf(out, "usage: greylist list [N] | greylist show|pass|delete IP SENDER RCPT "
		    "(SENDER <> for the null sender) | greylist allow|trap IP [TTL] | greylist disallow|untrap IP\n");
		control_reply_done(r, -1);
		return;
	}
	if (!c->enabled) {
		strbuf_printf(out, "greylist: not enabled\n");
		control_reply_done(r, -1);
		return;
	}
	if (netaddr_sockaddr_from_string(argv[1], &ss) < 0) {
		strbuf_printf(out, "greylist: \"%.64s\" is not an IP address\n", argv[1]);
		control_reply_done(r, -1);
		return;
	}
	snprintf(snd, sizeof(snd), "%s", argv[2]);
	memcpy(key, GREYLIST_KEY_PREFIX, plen);
	if (greylist_triplet((struct sockaddr *)&ss, c->prefix_v4, c->prefix_v6, lc_unbracket(snd),
	    lc_unbracket(argv[3]), key + plen, sizeof(key) - plen) < 0) {
		strbuf_printf(out, "greylist: sender or recipient too long\n");
		control_reply_done(r, -1);
		return;
	}
	if (kind == STORE_LMDB) {
		store = "lmdb";
		if (op == GL_SHOW) {
			struct greylist_write gw;

			if (lc_gl_lmdb(c, triplet, op, &t, &gw, NULL, err, sizeof(err)) < 0)
				goto fail;
		} else {
			int rc = lc_gl_lmdb_change(c, triplet, op, json, &t, r, err, sizeof(err));

			if (rc == 1)
				return;         /* answered when the workers' batches are applied */
			if (rc < 0)
				goto fail;
		}
	} else if (kind == STORE_REDIS) {
		store = "redis";
		if (op != GL_SHOW) {
			if (lc_gl_redis_change(c, key, triplet, op, json, r, err, sizeof(err)) < 0)
				goto fail;
			return;         /* answered by lc_gl_redis_finish */
		}
		lc_gl_redis_finish(c, key, triplet, op, json, r);
		return;                 /* answered off the main loop */
	} else {
		struct lc_gl_arg a = { op, c->expire, &t };
		struct local_table *tb = greylist_local_table();

		store = "local";
		if (tb)
			local_table_update(tb, key, uv_hrtime(), op == GL_PASS, lc_gl_local_fn, &a);
	}
	lc_gl_reply(out, json, op, triplet, store, &t, c->delay);
	control_reply_done(r, 0);
	return;
fail:
	strbuf_printf(out, "greylist %s: %s\n", ops[op], err);
	control_reply_done(r, -1);
}

/* During the drain too: an LMDB or Redis change goes through the workers still running; one
 * that ends with it in its mailbox does its part as it frees its store (gl_worker_free:
 * mailbox_drain, then lmdb_writer_free calls the batch's callback), and with none left the
 * change is written here. */
const struct control_verb greylist_control_verb = {
	.words = "greylist",
	.usage = "greylist list [N] | greylist show|pass|delete IP SENDER RCPT | greylist allow|trap IP [TTL] | greylist disallow|untrap IP",
	.start = greylist_verb_start, .during_drain = true,
};
