/* passcache.c — pass caches in a shared store, see passcache.h. */
#include "filters/passcache.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "proxy/log.h"
#include "store/lmdb_store.h"
#include "store/redis.h"
#include "store/store.h"

#define PASSCACHE_ERROR_LOG_EVERY_MS 60000
#define PASSCACHE_MARKER "#flushed"
/* A marker outlives every pass noted before it (pass_ttl: at most 30 days). */
#define PASSCACHE_MARKER_TTL_MS (31ull * 86400000)

/* The LMDB record: then the payload. */
struct passcache_rec {
	uint64_t expires_ms;
	uint64_t noted_ms;
};

struct passcache {
	char name[16];
	char spec[300];
	char prefix[48];               /* PASSCACHE_{REDIS,LMDB}_PREFIX + name + ":" */
	struct redis_store *rs;
	struct lmdb_store *st;
	struct lmdb_writer *wr;
	int script;                    /* Redis: passcache_lua */
	uint64_t marked_ms;            /* LMDB: the flush time this writer last wrote */
	struct log_rated *errors;
	int mi;                        /* passcache_module_index */
};

struct passcache_req {
	struct passcache *pc;
	struct redis_req *req;
	passcache_cb cb;
	void *arg;
};

/* The process's own flush time (wall ms): passes noted before it are not known. */
static atomic_ullong passcache_flushed_ms;

/* One per module name, for the rated log (a worker's store and the next generation's
 * share it). */
static struct log_rated passcache_err_pregreet, passcache_err_dnsbl;

uint64_t passcache_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

bool passcache_spec_ok(const char *spec)
{
	int k = store_kind_of(spec);

	return k == STORE_NONE || k == STORE_LOCAL || k == STORE_LMDB || k == STORE_REDIS;
}

bool passcache_spec_shared(const char *spec)
{
	int k = store_kind_of(spec);

	return k == STORE_LMDB || k == STORE_REDIS;
}

bool passcache_answers_inline(const struct passcache *pc)
{
	return pc != NULL && pc->wr != NULL;
}

/* This process's answers per module (0 pregreet, 1 dnsbl), every worker and generation
 * together: a pass known, not known, a failure. */
static atomic_ullong passcache_hits[2], passcache_misses[2], passcache_errors[2];

static int passcache_module_index(const char *name)
{
	return strcmp(name, "dnsbl") == 0;
}

static void passcache_count(struct passcache *pc, bool known)
{
	atomic_fetch_add(known ? &passcache_hits[pc->mi] : &passcache_misses[pc->mi], 1);
}

void passcache_stats(const char *name, struct passcache_stats *out)
{
	int i = passcache_module_index(name);

	out->hits = atomic_load(&passcache_hits[i]);
	out->misses = atomic_load(&passcache_misses[i]);
	out->errors = atomic_load(&passcache_errors[i]);
	out->flushed_ms = atomic_load(&passcache_flushed_ms);
}

void passcache_describe(const char *spec, const char *name, struct passcache_desc *d)
{
	int kind = store_kind_of(spec);

	memset(d, 0, sizeof(*d));
	d->map_records = d->map_bytes = -1;
	d->kind = kind == STORE_LMDB ? "lmdb" : kind == STORE_REDIS ? "redis" : "local";
	if (kind == STORE_REDIS) {
		struct redis_url u;

		snprintf(d->prefix, sizeof(d->prefix), "%s%s:", PASSCACHE_REDIS_PREFIX, name);
		if (redis_url_parse(spec, &u) == 0)
			redis_url_shown(&u, d->shown, sizeof(d->shown));
		else
			snprintf(d->shown, sizeof(d->shown), "redis://?");
		memset(u.password, 0, sizeof(u.password));
	} else if (kind == STORE_LMDB) {
		/* the main loop's verb: the map this process has open, never one opened here */
		struct lmdb_store *st = lmdb_store_open_existing(store_lmdb_dir(spec));
		uint64_t rec, bytes;

		snprintf(d->prefix, sizeof(d->prefix), "%s%s:", PASSCACHE_LMDB_PREFIX, name);
		snprintf(d->shown, sizeof(d->shown), "%s", spec);
		if (st != NULL && lmdb_store_usage(st, &rec, &bytes, NULL) == 0) {
			d->map_records = (long long)rec;
			d->map_bytes = (long long)bytes;
		}
		lmdb_store_close_async(st);     /* a last reference: synced and closed off the loop */
	} else {
		snprintf(d->shown, sizeof(d->shown), "local");
	}
}

/* Counts a failure and logs it at most once a minute per module. */
static void passcache_error(struct passcache *pc, const char *reason)
{
	atomic_fetch_add(&passcache_errors[pc->mi], 1);
	bool log_now;
	unsigned long long n = log_rated_note(pc->errors, PASSCACHE_ERROR_LOG_EVERY_MS, &log_now);
	char sv[320];

	if (log_now)
		log_event(LOG_LVL_WARNING, NULL, "event=passcache_error module=%s store=%s reason=%s "
		    "errors=%llu action=test", pc->name, log_val(sv, sizeof(sv), pc->spec), reason, n);
}

/* A lookup in one round trip: the pass, the flush marker and the pass's time left. */
static const char passcache_lua[] =
    "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[1])}";

/* The LMDB sweep rule and eviction rank: the expiry (the marker's too). */
static bool passcache_lmdb_expired(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx)
{
	struct passcache_rec r;

	(void)key, (void)klen, (void)ctx;
	if (vlen < sizeof(r))
		return true;
	memcpy(&r, val, sizeof(r));
	return r.expires_ms <= now_ms;
}

static uint64_t passcache_lmdb_rank(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx)
{
	struct passcache_rec r = { 0, 0 };

	(void)key, (void)klen, (void)ctx;
	if (vlen >= sizeof(r))
		memcpy(&r, val, sizeof(r));
	return r.expires_ms;
}

struct passcache *passcache_new(const char *spec, const char *name, uint64_t timeout_ms,
    uv_loop_t *loop, int worker)
{
	int kind = store_kind_of(spec);
	bool dnsbl = strcmp(name, "dnsbl") == 0;
	/* the store's user in its logs and metric labels (store="redis:dnsbl_pass") */
	const char *user = dnsbl ? "dnsbl_pass" : "pregreet_pass";
	struct passcache *pc;

	if (kind != STORE_LMDB && kind != STORE_REDIS)
		return NULL;
	pc = calloc(1, sizeof(*pc));
	if (pc == NULL)
		goto fail;
	snprintf(pc->name, sizeof(pc->name), "%s", name);
	snprintf(pc->spec, sizeof(pc->spec), "%s", spec);
	pc->errors = dnsbl ? &passcache_err_dnsbl : &passcache_err_pregreet;
	pc->mi = passcache_module_index(name);
	snprintf(pc->prefix, sizeof(pc->prefix), "%s%s:",
	    kind == STORE_REDIS ? PASSCACHE_REDIS_PREFIX : PASSCACHE_LMDB_PREFIX, pc->name);
	if (kind == STORE_REDIS) {
		pc->rs = redis_store_new(loop, spec, timeout_ms, worker);
		if (pc->rs == NULL)
			goto fail;
		redis_store_set_name(pc->rs, user);
		/* for logs: the URL without its password */
		snprintf(pc->spec, sizeof(pc->spec), "%s", redis_store_url(pc->rs));
		pc->script = redis_store_add_script(pc->rs, passcache_lua);
		if (pc->script < 0)
			goto fail;
	} else {
		const char *prefixes[] = { pc->prefix, NULL };
		struct lmdb_writer_config wc = {
			.sweep_prefixes = prefixes, .expired = passcache_lmdb_expired,
			.rank = passcache_lmdb_rank, .name = user,
		};
		pc->st = lmdb_store_open(store_lmdb_dir(spec), 0);
		if (pc->st == NULL || (pc->wr = lmdb_writer_new(pc->st, loop, &wc)) == NULL)
			goto fail;
	}
	return pc;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=%s worker=%d reason=pass_store",
	    name, worker);
	if (pc != NULL) {
		redis_store_free(pc->rs);
		lmdb_store_close(pc->st);
		free(pc);
	}
	return NULL;
}

/* LMDB: the process's flush time not yet in this writer's marker goes into it. */
static void passcache_lmdb_mark(struct passcache *pc)
{
	uint64_t f = atomic_load(&passcache_flushed_ms);
	char key[80];
	struct passcache_rec r;

	if (pc->wr == NULL || f <= pc->marked_ms)
		return;
	r.noted_ms = f;
	r.expires_ms = f + PASSCACHE_MARKER_TTL_MS;
	snprintf(key, sizeof(key), "%s%s", pc->prefix, PASSCACHE_MARKER);
	if (lmdb_writer_put(pc->wr, key, strlen(key), &r, sizeof(r)) == 0)
		pc->marked_ms = f;
}

void passcache_free(struct passcache *pc)
{
	if (pc == NULL)
		return;
	passcache_lmdb_mark(pc);
	redis_store_free(pc->rs);
	lmdb_writer_free(pc->wr);      /* the last passes are written now */
	lmdb_store_close(pc->st);
	free(pc);
}

/* The newest flush a store's marker (noted_ms) and this process know of. */
static uint64_t passcache_flushed(uint64_t marker_ms)
{
	uint64_t f = atomic_load(&passcache_flushed_ms);

	return marker_ms > f ? marker_ms : f;
}

static int passcache_lookup_lmdb(struct passcache *pc, const char *key, passcache_cb cb, void *arg)
{
	char k[300], mk[80];
	unsigned char buf[sizeof(struct passcache_rec) + PASSCACHE_VALUE_MAX];
	struct passcache_rec r, m = { 0, 0 };
	size_t len = 0, mlen = 0;
	uint64_t now = passcache_wall_ms();
	int rc;

	passcache_lmdb_mark(pc);
	if ((size_t)snprintf(k, sizeof(k), "%s%s", pc->prefix, key) >= sizeof(k) ||
	    strlen(k) > lmdb_store_max_key(pc->st)) {
		passcache_error(pc, "key");
		return -1;
	}
	snprintf(mk, sizeof(mk), "%s%s", pc->prefix, PASSCACHE_MARKER);
	/* read-your-writes: this worker's passes not yet applied count too */
	rc = lmdb_writer_get(pc->wr, k, strlen(k), buf, sizeof(buf), &len);
	if (rc < 0) {
		passcache_error(pc, "read");
		return -1;
	}
	if (rc == 0 || len < sizeof(r) || len > sizeof(buf)) {
		if (rc == 1)
			passcache_error(pc, "record");
		else
			passcache_count(pc, false);
		cb(arg, false, NULL, 0, 0);
		return 0;
	}
	memcpy(&r, buf, sizeof(r));
	if (lmdb_writer_get(pc->wr, mk, strlen(mk), &m, sizeof(m), &mlen) != 1 || mlen != sizeof(m))
		m.noted_ms = 0;
	if (r.expires_ms <= now || r.noted_ms < passcache_flushed(m.noted_ms)) {
		passcache_count(pc, false);
		cb(arg, false, NULL, 0, 0);
		return 0;
	}
	passcache_count(pc, true);
	cb(arg, true, (const char *)buf + sizeof(r), len - sizeof(r), r.expires_ms - now);
	return 0;
}

bool passcache_value_parse(const char *s, size_t len, uint64_t *noted, const char **val, size_t *vlen)
{
	uint64_t n = 0;
	size_t i = 0;

	/* at most 19 digits: no wrap-around makes an old pass look newer than a flush */
	for (; i < len && i < 19 && s[i] >= '0' && s[i] <= '9'; i++)
		n = n * 10 + (uint64_t)(s[i] - '0');
	if (i == 0 || i >= len || s[i] != ':' || len - i - 1 > PASSCACHE_VALUE_MAX)
		return false;
	*noted = n;
	*val = s + i + 1;
	*vlen = len - i - 1;
	return true;
}

size_t passcache_value_format(char *out, size_t cap, uint64_t noted, const void *val, size_t vlen)
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)noted);

	if (n < 1 || n > 19 || vlen > PASSCACHE_VALUE_MAX || (size_t)n + 1 + vlen > cap)
		return 0;
	memcpy(out, digits, (size_t)n);
	out[n] = ':';
	if (vlen)
		memcpy(out + n + 1, val, vlen);
	return (size_t)n + 1 + vlen;
}

static void passcache_redis_cb(void *arg, const redisReply *reply)
{
	struct passcache_req *q = arg;
	struct passcache *pc = q->pc;
	passcache_cb cb = q->cb;
	void *cbarg = q->arg;
	uint64_t noted = 0, mnoted = 0;
	const char *val = NULL, *mval;
	size_t vlen = 0, mvlen;
	long long pttl;

	free(q);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[2]->type != REDIS_REPLY_INTEGER) {
		passcache_error(pc, reply == NULL ? "no_reply" : reply->type == REDIS_REPLY_ERROR ?
		    "error_reply" : "reply");
		cb(cbarg, false, NULL, 0, 0);
		return;
	}
	pttl = reply->element[2]->integer;
	if (reply->element[0]->type != REDIS_REPLY_STRING || pttl <= 0) {
		passcache_count(pc, false);
		cb(cbarg, false, NULL, 0, 0);   /* not known (nil: Lua's false) */
		return;
	}
	if (!passcache_value_parse(reply->element[0]->str, reply->element[0]->len, &noted, &val, &vlen)) {
		passcache_error(pc, "record");
		cb(cbarg, false, NULL, 0, 0);
		return;
	}
	if (reply->element[1]->type == REDIS_REPLY_STRING &&
	    !passcache_value_parse(reply->element[1]->str, reply->element[1]->len, &mnoted, &mval, &mvlen))
		mnoted = 0;
	if (noted < passcache_flushed(mnoted)) {
		passcache_count(pc, false);
		cb(cbarg, false, NULL, 0, 0);
		return;
	}
	passcache_count(pc, true);
	cb(cbarg, true, val, vlen, (uint64_t)pttl);
}

int passcache_lookup(struct passcache *pc, const char *key, passcache_cb cb, void *arg,
    struct passcache_req **reqp)
{
	struct passcache_req *q;
	char k[300], mk[80];
	const char *argv[2] = { k, mk };

	*reqp = NULL;
	if (pc->wr != NULL)
		return passcache_lookup_lmdb(pc, key, cb, arg);
	if ((size_t)snprintf(k, sizeof(k), "%s%s", pc->prefix, key) >= sizeof(k)) {
		passcache_error(pc, "key");
		return -1;
	}
	snprintf(mk, sizeof(mk), "%s%s", pc->prefix, PASSCACHE_MARKER);
	if (!redis_store_is_up(pc->rs)) {
		passcache_error(pc, "store_down");
		return -1;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		passcache_error(pc, "no_memory");
		return -1;
	}
	q->pc = pc;
	q->cb = cb;
	q->arg = arg;
	if (redis_store_eval(pc->rs, pc->script, 2, 0, argv, NULL, passcache_redis_cb, q,
	    &q->req) < 0) {
		free(q);
		passcache_error(pc, "store_down");
		return -1;
	}
	*reqp = q;
	return 0;
}

void passcache_cancel(struct passcache_req *req)
{
	if (req == NULL)
		return;
	redis_req_cancel(req->req);
	free(req);
}

void passcache_note(struct passcache *pc, const char *key, const void *val, size_t vlen,
    uint64_t ttl_ms)
{
	char k[300];
	uint64_t now = passcache_wall_ms();

	if (pc == NULL || ttl_ms < 1000 || vlen > PASSCACHE_VALUE_MAX)
		return;
	if ((size_t)snprintf(k, sizeof(k), "%s%s", pc->prefix, key) >= sizeof(k)) {
		passcache_error(pc, "key");
		return;
	}
	if (pc->wr != NULL) {
		unsigned char buf[sizeof(struct passcache_rec) + PASSCACHE_VALUE_MAX];
		struct passcache_rec r = { now + ttl_ms, now };

		passcache_lmdb_mark(pc);
		memcpy(buf, &r, sizeof(r));
		if (vlen)
			memcpy(buf + sizeof(r), val, vlen);
		if (strlen(k) > lmdb_store_max_key(pc->st) ||
		    lmdb_writer_put(pc->wr, k, strlen(k), buf, sizeof(r) + vlen) < 0)
			passcache_error(pc, "write");
		return;
	}
	char v[24 + PASSCACHE_VALUE_MAX], px[24];
	size_t n = passcache_value_format(v, sizeof(v), now, val, vlen);
	const char *argv[5] = { "SET", k, v, "PX", px };
	size_t lens[5];

	snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
	for (int i = 0; i < 5; i++)     /* v has no NUL: its length is n */
		lens[i] = i == 2 ? n : strlen(argv[i]);
	/* a pass is not state that must survive an outage: a failed SET is only counted */
	if (redis_store_command(pc->rs, 5, argv, lens, NULL, NULL, NULL) < 0)
		passcache_error(pc, "store_down");
}

/* One passcache_flush_lmdb_start: the stores still to answer; freed by the last. */
struct passcache_lmdb_flush {
	uv_async_t async;              /* done is never called from inside the start */
	int left, failed;
	passcache_flush_done_fn done;
	void *arg;
	char err[300];
	size_t el;
	struct passcache_lmdb_flush_one {
		struct passcache_lmdb_flush *fl;
		char dir[300];
		unsigned modules;      /* bit m: names[m]'s spec names dir */
		int pending, rc;       /* its modules' batches still to answer; the first failure */
	} one[];
};

static void passcache_lmdb_flush_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void passcache_lmdb_flush_end(struct passcache_lmdb_flush *fl)
{
	fl->done(fl->arg, fl->failed, fl->err);
	uv_close((uv_handle_t *)&fl->async, passcache_lmdb_flush_closed_cb);
}

static void passcache_lmdb_flush_fail(struct passcache_lmdb_flush *fl, const char *dir, int rc)
{
	fl->failed++;
	if (fl->el < sizeof(fl->err))
		fl->el += (size_t)snprintf(fl->err + fl->el, sizeof(fl->err) - fl->el, "%s%s: %s",
		    fl->el ? "; " : "", dir, rc == LMDB_APPLY_TIMEOUT ? "not written in time" :
		    rc == LMDB_APPLY_NO_MAP ? "not open in this process (its module is off, or its "
		    "store did not open: event=module_error)" : "write failed");
}

/* A directory's last batch answered: it is marked, or failed once (whatever its batches). */
static void passcache_lmdb_flush_one_cb(void *arg, int rc)
{
	struct passcache_lmdb_flush_one *o = arg;
	struct passcache_lmdb_flush *fl = o->fl;

	if (rc != 0 && o->rc == 0)
		o->rc = rc;
	if (--o->pending > 0)
		return;
	if (o->rc != 0)
		passcache_lmdb_flush_fail(fl, o->dir, o->rc);
	if (--fl->left == 0)
		passcache_lmdb_flush_end(fl);
}

/* Only the stores that could not start are in: they answer now, on the loop. */
static void passcache_lmdb_flush_async_cb(uv_async_t *a)
{
	struct passcache_lmdb_flush *fl = a->data;

	if (--fl->left == 0)
		passcache_lmdb_flush_end(fl);
}

int passcache_flush_lmdb_start(uv_loop_t *loop, const char *const *specs,
    const char *const *names, size_t n, uint64_t timeout_ms, passcache_flush_done_fn done,
    void *arg)
{
	uint64_t f = atomic_load(&passcache_flushed_ms);
	struct passcache_rec r = { f + PASSCACHE_MARKER_TTL_MS, f };
	struct passcache_lmdb_flush *fl;
	size_t nd = 0;
	int started = 0;

	if (n > 8)
		return 0;
	fl = calloc(1, sizeof(*fl) + n * sizeof(fl->one[0]));
	if (fl == NULL)
		return 0;
	fl->done = done;
	fl->arg = arg;
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		if (store_kind_of(specs[i]) != STORE_LMDB)
			continue;
		while (j < nd && strcmp(fl->one[j].dir, store_lmdb_dir(specs[i])) != 0)
			j++;
		if (j == nd) {
			fl->one[nd].fl = fl;
			snprintf(fl->one[nd].dir, sizeof(fl->one[nd].dir), "%s", store_lmdb_dir(specs[i]));
			nd++;
		}
		fl->one[j].modules |= 1u << i;
	}
	if (nd == 0 || uv_async_init(loop, &fl->async, passcache_lmdb_flush_async_cb) != 0) {
		free(fl);
		return 0;
	}
	fl->async.data = fl;
	/* one more for the start itself: done waits for the end of this call */
	fl->left = (int)nd + 1;
	for (size_t i = 0; i < nd; i++) {
		struct passcache_lmdb_flush_one *o = &fl->one[i];
		/* the map this process has open (a module's): the main loop opens none (no mkdir,
		 * no mdb_env_open there); one that is not open is not marked, and the verb says so */
		struct lmdb_store *st = lmdb_store_open_existing(o->dir);
		int rc = st == NULL ? LMDB_APPLY_NO_MAP : 0;

		started++;
		/* each module's marker in a batch of its own, labelled as that module's writer
		 * (store="lmdb:dnsbl_pass", module=dnsbl_pass in its log lines) */
		o->pending = 1;                /* the loop's own, dropped below */
		for (size_t m = 0; st != NULL && m < n; m++) {
			char key[80], user[40];
			struct lmdb_store_change ch;
			int mrc;

			if (!(o->modules & (1u << m)))
				continue;
			snprintf(key, sizeof(key), "%s%s:%s", PASSCACHE_LMDB_PREFIX, names[m], PASSCACHE_MARKER);
			snprintf(user, sizeof(user), "%s_pass", names[m]);
			ch = (struct lmdb_store_change){ key, &r, sizeof(r) };
			o->pending++;
			mrc = lmdb_store_apply_start_on(loop, st, user, &ch, 1, timeout_ms,
			    passcache_lmdb_flush_one_cb, o);
			if (mrc != 0) {
				o->pending--;
				if (rc == 0)
					rc = mrc;
			}
		}
		lmdb_store_close_async(st);     /* a last reference: synced and closed off the loop */
		if (rc != 0 && o->rc == 0)
			o->rc = rc;
		if (--o->pending == 0) {       /* nothing started: answered on the loop */
			if (o->rc != 0)
				passcache_lmdb_flush_fail(fl, o->dir, o->rc);
			fl->left--;
		}
	}
	/* the start's own count goes on the loop: done is called after this returns */
	uv_async_send(&fl->async);
	return started;
}

int passcache_flush_all(const char *const *specs, size_t n, uint64_t timeout_ms, char *err,
    size_t errlen)
{
	static const char *const names[] = { "pregreet", "dnsbl" };
	uint64_t now = passcache_wall_ms();
	size_t el = 0;
	int failed = 0;

	if (errlen)
		err[0] = '\0';
	atomic_store(&passcache_flushed_ms, now);
	for (size_t i = 0; i < n; i++) {
		char why[128] = "";
		redisContext *c;
		bool dup = false;

		if (store_kind_of(specs[i]) != STORE_REDIS)
			continue;
		for (size_t j = 0; j < i; j++)
			dup |= specs[j] != NULL && strcmp(specs[j], specs[i]) == 0;
		if (dup)
			continue;
		c = redis_store_connect_sync(specs[i], timeout_ms, why, sizeof(why));
		for (size_t m = 0; c != NULL && m < 2; m++) {
			char key[80], val[32];
			redisReply *r;

			snprintf(key, sizeof(key), "%s%s:%s", PASSCACHE_REDIS_PREFIX, names[m], PASSCACHE_MARKER);
			snprintf(val, sizeof(val), "%llu:", (unsigned long long)now);
			r = redis_store_sync_command(c, "SET %s %s PX %llu", key, val,
			    (unsigned long long)PASSCACHE_MARKER_TTL_MS);
			if (r == NULL || r->type == REDIS_REPLY_ERROR) {
				snprintf(why, sizeof(why), "%s", r ? r->str : c->errstr);
				freeReplyObject(r);
				redisFree(c);
				c = NULL;
				break;
			}
			freeReplyObject(r);
		}
		if (c == NULL) {
			failed++;
			if (el < errlen)
				el += (size_t)snprintf(err + el, errlen - el, "%s%s", el ? "; " : "", why);
			continue;
		}
		redisFree(c);
	}
	return failed;
}
