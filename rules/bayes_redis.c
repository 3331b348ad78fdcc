/* bayes_redis.c — the classifier's Redis store (a cluster's nodes learn into and read from
 * one Redis). Synchronous hiredis with a timeout on connect and on every request: callers
 * are pool threads (scans, learning) or the offline `learn` command, never an event loop.
 * Connections are kept in a small pool and dropped on any error (the next call reconnects).
 *
 * Opening connects nothing: the daemon opens its classifier on a worker's event loop (at
 * start and at every reload), where a connect to a silent Redis or Sentinel would hold the
 * loop's sessions for its timeouts. The first call that needs a connection makes it, on its
 * own thread. A connect that fails marks the store down: until its next try (1 s later, then
 * twice as long each time, at most 30 s) every call fails at once, and one call makes the
 * try while the others go on failing. A try is a connect and a PING answered: a frozen
 * server's kernel still completes connects from its listen backlog. Calls that come while
 * the first connect of the store is under way wait for it, at most the timeout.
 *
 * A request that times out on an open connection (a Redis that accepts and never answers)
 * drops the connection; BR_TIMEOUTS_DOWN of them in a row, no request answered between,
 * mark the store down as a failed connect does (same back-off, same log line): else each
 * call would connect again and wait its whole timeout on a pool thread, and the pool would
 * fill with scans waiting for nothing. One timeout alone does not: a single slow request
 * (a big learn's script) leaves the classifier on. Any answered request (a try's PING
 * too) ends the count and the back-off; after a bayes_error line the first answer is
 * logged once, event=bayes_store_up store=redis. "Said down" is kept per store URL for the
 * process, not per handle: a reload between the outage and the recovery opens a new handle
 * of the same URL, and its first answer still says up (br_said_*).
 *
 * Keys (prefix "mxbayes:" by default):
 *   PREFIX t:<16 hex>  hash { s: spam count, h: ham count }, TTL = ttl_s when set
 *   PREFIX s:<40 hex>  the seen-db: "s" or "h", same TTL
 *   PREFIX totals      hash { s: messages learned as spam, h: as ham }
 * Learning is one Lua script (atomic, like the LMDB transaction). Expiry is Redis's own:
 * every learn or scan that uses a token renews its TTL; a size bound is Redis's maxmemory
 * with a volatile-* eviction policy. */
#include "bayes_db_int.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/redis.h"
#include "log.h"

#define BR_POOL 16
#define BR_BACKOFF_MIN_MS 1000        /* the first try after a failed connect */
#define BR_BACKOFF_MAX_MS 30000       /* the longest wait between tries */
#define BR_TIMEOUTS_DOWN 3            /* request timeouts in a row that set the store down */

enum br_state {
	BR_UNKNOWN = 0,               /* never connected yet */
	BR_UP,                        /* the last connect worked */
	BR_DOWN,                      /* the last connect failed: next try at retry_at */
};

struct bayes_redis {
	char *url;                    /* redis:// or redis-sentinel:// (store/redis.h) */
	char prefix[64];
	uint64_t timeout_ms;
	uint32_t ttl_s;
	pthread_mutex_t mu;           /* all below */
	pthread_cond_t cv;            /* signalled when a try (connecting) ends or a connection
	                               * comes back to the pool */
	redisContext *pool[BR_POOL];
	int npool;
	int nlent;                    /* connections taken and not yet given back */
	bool quiet;                   /* a one-shot command's: no log line (it reports err) */
	enum br_state state;
	bool connecting;              /* a try of a store not up is under way (one at a time) */
	uint64_t retry_at;            /* BR_DOWN: ms (br_now_ms) of the next try */
	uint64_t backoff_ms;          /* BR_DOWN: the wait before that try */
	char why[200];                /* BR_DOWN: the failed connect's reason */
	int timeouts;                 /* request timeouts since the last answered request */
};

/* The store URLs a bayes_error line said down, no bayes_store_up since, all handles of the
 * process (a reload's new handle of the same URL clears what an old one marked). Its own
 * mutex, never held together with a handle's mu: marked and cleared after r->mu is let go. */
struct br_said {
	struct br_said *next;
	char url[];
};

static pthread_mutex_t br_said_mu = PTHREAD_MUTEX_INITIALIZER;
static struct br_said *br_said_head;
static atomic_int br_said_n;          /* entries: an answer looks at the list only if any */

static void br_said_mark(const char *url)
{
	struct br_said *e;

	pthread_mutex_lock(&br_said_mu);
	for (e = br_said_head; e != NULL; e = e->next)
		if (strcmp(e->url, url) == 0)
			break;
	if (e == NULL && (e = malloc(sizeof(*e) + strlen(url) + 1)) != NULL) {
		strcpy(e->url, url);
		e->next = br_said_head;
		br_said_head = e;
		atomic_fetch_add(&br_said_n, 1);
	}
	pthread_mutex_unlock(&br_said_mu);
}

/* A request of a store at url was answered: if a bayes_error line said it down, the first
 * answer says it up, once for the process. */
static void br_said_up(const char *url)
{
	struct br_said **pp, *e = NULL;

	if (atomic_load(&br_said_n) == 0)
		return;
	pthread_mutex_lock(&br_said_mu);
	for (pp = &br_said_head; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->url, url) == 0) {
			e = *pp;
			*pp = e->next;
			atomic_fetch_sub(&br_said_n, 1);
			break;
		}
	pthread_mutex_unlock(&br_said_mu);
	if (e != NULL) {
		log_event(LOG_LVL_INFO, NULL, "event=bayes_store_up store=redis");
		free(e);
	}
}

static uint64_t br_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t (*br_now_ms)(void) = br_clock_ms;

void bayes_redis_set_clock(uint64_t (*now_ms)(void))
{
	br_now_ms = now_ms ? now_ms : br_clock_ms;
}

static const char br_learn_lua[] =
	"local prev = redis.call('GET', KEYS[1])\n"
	"local c = ARGV[1]\n"
	"if prev == c then return 0 end\n"
	"if prev and ARGV[4] == '0' then return 3 end\n"
	"local ttl = tonumber(ARGV[2])\n"
	"if prev then\n"
	"  for i = 3, #KEYS do\n"
	"    if redis.call('HINCRBY', KEYS[i], prev, -1) <= 0 then redis.call('HDEL', KEYS[i], prev) end\n"
	"  end\n"
	"  if redis.call('HINCRBY', KEYS[2], prev, -1) < 0 then redis.call('HSET', KEYS[2], prev, 0) end\n"
	"end\n"
	"for i = 3, #KEYS do\n"
	"  redis.call('HINCRBY', KEYS[i], c, 1)\n"
	"  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end\n"
	"end\n"
	"redis.call('HINCRBY', KEYS[2], c, 1)\n"
	"if ttl > 0 then redis.call('SET', KEYS[1], c, 'EX', ttl) else redis.call('SET', KEYS[1], c) end\n"
	"if prev then return 2 end\n"
	"return 1\n";

/* A connection as a control verb's: a Sentinel store's master asked first, AUTH (the URL's
 * user too) and SELECT, every step within the timeout. */
static redisContext *br_connect(struct bayes_redis *r, char *err, size_t errlen)
{
	return redis_store_connect_sync(r->url, r->timeout_ms, err, errlen);
}

/* A try's connection: connected, and a PING answered within the timeout (else NULL, the
 * reason in err). */
static redisContext *br_connect_try(struct bayes_redis *r, char *err, size_t errlen)
{
	redisContext *c = br_connect(r, err, errlen);
	redisReply *rep;

	if (c == NULL)
		return NULL;
	rep = redis_store_sync_command(c, "PING");
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis %s:%d: PING: %s", c->tcp.host ? c->tcp.host : "?",
		    c->tcp.port, rep ? rep->str : c->errstr[0] ? c->errstr : "no reply");
		if (rep)
			freeReplyObject(rep);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(rep);
	return c;
}

/* The store is down from now (r->mu held): the wait before its next try doubles (1 s at
 * first, at most 30 s), one line logged. True when that line was logged: the caller marks
 * the URL said down (br_said_mark) once it has let r->mu go. */
static bool br_set_down(struct bayes_redis *r, const char *why)
{
	r->backoff_ms = r->backoff_ms == 0 ? BR_BACKOFF_MIN_MS :
	    r->backoff_ms * 2 > BR_BACKOFF_MAX_MS ? BR_BACKOFF_MAX_MS : r->backoff_ms * 2;
	r->state = BR_DOWN;
	r->retry_at = br_now_ms() + r->backoff_ms;
	r->timeouts = 0;
	/* the idle connections go too: they lead to the server that stopped answering */
	while (r->npool > 0)
		redisFree(r->pool[--r->npool]);
	snprintf(r->why, sizeof(r->why), "%s", why);
	if (!r->quiet) {
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=redis reason=\"%s; "
		    "the classifier abstains until it answers, next try in %llu ms\"", r->why,
		    (unsigned long long)r->backoff_ms);
		return true;
	}
	return false;
}

/* A request was answered (r->mu held): the store is up (one sent before it was set down
 * may be answered after), the timeouts' count and the back-off end. True when the caller,
 * once it has let r->mu go, is to say so if a bayes_error line said down (br_said_up). */
static bool br_answered(struct bayes_redis *r)
{
	r->state = BR_UP;
	r->timeouts = 0;
	r->backoff_ms = 0;
	return !r->quiet;
}

/* Tests: the calls waiting for a first connect's outcome, all stores */
static atomic_int br_waiting;

int bayes_redis_waiting(void)
{
	return atomic_load(&br_waiting);
}

/* The connection a call uses: a pooled one, else a new one when the store may be tried
 * (see the header). NULL with the reason in err (may be NULL) when there is none. */
static redisContext *br_take(struct bayes_redis *r, char *err, size_t errlen)
{
	redisContext *c = NULL;
	char why[sizeof(r->why)];
	bool trying = false;          /* this call makes the try of a store not up */
	bool up = false, down = false; /* to say, r->mu let go */
	uint64_t now;

	pthread_mutex_lock(&r->mu);
	if (r->state == BR_UNKNOWN && r->connecting) {
		/* the first connect is under way: its outcome, rather than a second connect */
		struct timespec until;
		uint64_t at = br_clock_ms() + r->timeout_ms;

		until.tv_sec = (time_t)(at / 1000);
		until.tv_nsec = (long)(at % 1000) * 1000000;
		/* and once it is up, a connection given back by the calls ahead, rather than a
		 * connect each: the calls that waited for the first connect share it */
		atomic_fetch_add(&br_waiting, 1);
		while (r->npool == 0 && ((r->state == BR_UNKNOWN && r->connecting) ||
		    (r->state == BR_UP && r->nlent > 0)))
			if (pthread_cond_timedwait(&r->cv, &r->mu, &until) != 0)
				break;
		atomic_fetch_sub(&br_waiting, 1);
	}
	if (r->npool > 0) {
		c = r->pool[--r->npool];
		r->nlent++;
		pthread_mutex_unlock(&r->mu);
		return c;
	}
	now = br_now_ms();
	if (r->state != BR_UP) {
		if (r->connecting) {
			if (err)
				snprintf(err, errlen, "the store is being connected to");
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		if (r->state == BR_DOWN && now < r->retry_at) {
			if (err)
				snprintf(err, errlen, "%s (the store is down: next try in %llu ms)", r->why,
				    (unsigned long long)(r->retry_at - now));
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		r->connecting = trying = true;
	}
	pthread_mutex_unlock(&r->mu);

	why[0] = '\0';
	c = trying ? br_connect_try(r, why, sizeof(why)) : br_connect(r, why, sizeof(why));

	pthread_mutex_lock(&r->mu);
	if (trying) {
		r->connecting = false;
		pthread_cond_broadcast(&r->cv);
	}
	if (c != NULL) {
		/* only an answer puts the store up (br_answered): a plain connect that ends
		 * after another call set the store down leaves it down (its back-off holds) */
		r->nlent++;
		if (trying)
			up = br_answered(r);  /* its PING */
	} else if (trying || r->state == BR_UP) {
		/* the try failed, or a connect to a store up did: down from now (a call
		 * failing after another set it down changes nothing) */
		down = br_set_down(r, why[0] ? why : "connect failed");
	}
	pthread_mutex_unlock(&r->mu);
	if (up)
		br_said_up(r->url);
	if (down)
		br_said_mark(r->url);
	if (c == NULL && err)
		snprintf(err, errlen, "%s", why[0] ? why : "connect failed");
	return c;
}

/* Whether c's request failed for want of an answer within the timeout (store/redis.c's
 * words for it), rather than a closed or broken connection. */
static bool br_timed_out(const redisContext *c)
{
	return c->err != 0 && (strncmp(c->errstr, "no reply", 8) == 0 ||
	    strcmp(c->errstr, "reply too slow") == 0);
}

/* Returns c to the pool, or drops it after an error (ok false). A request answered (ok, or
 * a reply that was not the one expected: c->err 0) ends the timeouts' count; one that timed
 * out adds to it, and BR_TIMEOUTS_DOWN in a row set the store down. */
static void br_give(struct bayes_redis *r, redisContext *c, bool ok)
{
	bool up = false, down = false;

	if (c == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->nlent--;
	if (c->err == 0) {
		up = br_answered(r);
	} else if (br_timed_out(c) && ++r->timeouts >= BR_TIMEOUTS_DOWN && r->state == BR_UP) {
		char why[sizeof(r->why)];

		snprintf(why, sizeof(why), "redis %s:%d: %s, %d requests in a row",
		    c->tcp.host ? c->tcp.host : "?", c->tcp.port, c->errstr, r->timeouts);
		down = br_set_down(r, why);
	}
	if (ok && c->err == 0 && r->npool < BR_POOL) {
		r->pool[r->npool++] = c;
		c = NULL;
	}
	/* calls waiting for a connection (see br_take): this one, or none left to wait for */
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	redisFree(c);
	if (up)
		br_said_up(r->url);
	if (down)
		br_said_mark(r->url);
}

void *bayes_redis_open(const char *url, const struct bayes_db_options *o, char *err,
    size_t errlen)
{
	struct bayes_redis *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!redis_url_is_store(url)) {
		snprintf(err, errlen, "bad redis URL");
		free(r);
		return NULL;
	}
	if ((r->url = strdup(url)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(r);
		return NULL;
	}
	r->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
	r->ttl_s = o->ttl_s;
	r->quiet = o->quiet;
	snprintf(r->prefix, sizeof(r->prefix), "%s", o->prefix ? o->prefix : "mxbayes:");
	pthread_mutex_init(&r->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&r->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	/* no connect here: the first call makes it (see the header); bayes_redis_ops.check
	 * tells whether the store answers */
	return r;
}

/* A connection and a PING answered (a try PINGs twice: the check's second costs one round
 * trip once a generation); the connection is pooled for the first scan. */
static int br_check(void *h, char *err, size_t errlen)
{
	struct bayes_redis *r = h;
	redisContext *c = br_take(r, err, errlen);
	redisReply *rep;
	int rc = 0;

	if (c == NULL)
		return -1;
	rep = redis_store_sync_command(c, "PING");
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		if (err)
			snprintf(err, errlen, "PING: %s", rep ? rep->str : c->errstr);
		rc = -1;
	}
	if (rep)
		freeReplyObject(rep);
	br_give(r, c, rc == 0);
	return rc;
}

static void br_close(void *h)
{
	struct bayes_redis *r = h;

	for (int i = 0; i < r->npool; i++)
		redisFree(r->pool[i]);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->url);
	free(r);
}

static int br_tok_key(const struct bayes_redis *r, uint64_t k, char *buf, size_t cap)
{
	return snprintf(buf, cap, "%st:%016llx", r->prefix, (unsigned long long)k);
}

static uint32_t br_uint(const redisReply *e)
{
	long long v;

	if (e == NULL || e->type != REDIS_REPLY_STRING)
		return 0;
	v = strtoll(e->str, NULL, 10);
	return v <= 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int br_lookup(void *h, const uint64_t *keys, size_t n, struct bayes_counts *out,
    struct bayes_totals *tot)
{
	struct bayes_redis *r = h;
	redisContext *c = br_take(r, NULL, 0);
	char key[96];
	int rc = 0;
	redisReply *rep;

	if (c == NULL)
		return -1;
	/* one round trip: the totals and every token, pipelined */
	snprintf(key, sizeof(key), "%stotals", r->prefix);
	redisAppendCommand(c, "HMGET %s s h", key);
	for (size_t i = 0; i < n; i++) {
		br_tok_key(r, keys[i], key, sizeof(key));
		redisAppendCommand(c, "HMGET %s s h", key);
	}
	for (size_t i = 0; i <= n; i++) {
		if (redis_store_sync_reply(c, &rep) != REDIS_OK || rep == NULL) {
			rc = -1;
			break;
		}
		if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
			if (i == 0 && tot) {
				tot->nspam = br_uint(rep->element[0]);
				tot->nham = br_uint(rep->element[1]);
				tot->ntokens = 0;
			} else if (i > 0) {
				out[i - 1].spam = br_uint(rep->element[0]);
				out[i - 1].ham = br_uint(rep->element[1]);
				out[i - 1].atime = 0;
			}
		} else {
			rc = -1;
		}
		freeReplyObject(rep);
	}
	br_give(r, c, rc == 0);
	return rc;
}

static int br_learn(void *h, const uint8_t id[BAYES_ID_LEN], enum bayes_class cls,
    const uint64_t *keys, size_t n, uint32_t now, bool relearn, enum bayes_learn_result *res)
{
	struct bayes_redis *r = h;
	redisContext *c;
	size_t argc = 3 + 2 + n + 4, a = 0;
	const char **argv = calloc(argc, sizeof(char *));
	size_t *lens = calloc(argc, sizeof(size_t));
	char *kbuf = malloc((n + 2) * 96), nk[24], ttl[24], nowb[24];
	redisReply *rep = NULL;
	int rc = -1;

	if (argv == NULL || lens == NULL || kbuf == NULL)
		goto out;
	argv[a++] = "EVAL";
	argv[a++] = br_learn_lua;
	snprintf(nk, sizeof(nk), "%zu", n + 2);
	argv[a++] = nk;
	{
		char *k = kbuf;
		int l = snprintf(k, 96, "%ss:", r->prefix);

		for (int i = 0; i < BAYES_ID_LEN; i++)
			l += snprintf(k + l, 96 - (size_t)l, "%02x", id[i]);
		argv[a++] = k;
		k += 96;
		snprintf(k, 96, "%stotals", r->prefix);
		argv[a++] = k;
		k += 96;
		for (size_t i = 0; i < n; i++, k += 96) {
			br_tok_key(r, keys[i], k, 96);
			argv[a++] = k;
		}
	}
	argv[a++] = cls == BAYES_SPAM ? "s" : "h";
	snprintf(ttl, sizeof(ttl), "%u", r->ttl_s);
	argv[a++] = ttl;
	snprintf(nowb, sizeof(nowb), "%u", now);
	argv[a++] = nowb;
	argv[a++] = relearn ? "1" : "0";
	for (size_t i = 0; i < a; i++)
		lens[i] = strlen(argv[i]);
	c = br_take(r, NULL, 0);
	if (c == NULL)
		goto out;
	rep = redis_store_sync_argv(c, (int)a, argv, lens);
	if (rep && rep->type == REDIS_REPLY_INTEGER) {
		*res = rep->integer == 0 ? BAYES_ALREADY : rep->integer == 2 ? BAYES_MOVED :
		    rep->integer == 3 ? BAYES_OPPOSITE : BAYES_LEARNED;
		rc = 0;
	} else if (rep && rep->type == REDIS_REPLY_ERROR) {
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error store=redis reason=\"%s\"",
		    rep->str);
	}
	br_give(r, c, rc == 0);
out:
	if (rep)
		freeReplyObject(rep);
	free(argv);
	free(lens);
	free(kbuf);
	return rc;
}

static int br_touch(void *h, const uint64_t *keys, size_t n, uint32_t now)
{
	struct bayes_redis *r = h;
	redisContext *c;
	char key[96];
	int rc = 0;

	if (r->ttl_s == 0)
		return 0;
	c = br_take(r, NULL, 0);
	if (c == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		br_tok_key(r, keys[i], key, sizeof(key));
		redisAppendCommand(c, "EXPIRE %s %u", key, r->ttl_s);
	}
	for (size_t i = 0; i < n; i++) {
		redisReply *rep;

		if (redis_store_sync_reply(c, &rep) != REDIS_OK || rep == NULL) {
			rc = -1;
			break;
		}
		freeReplyObject(rep);
	}
	br_give(r, c, rc == 0);
	return rc;
}

static int br_expire(void *h, uint64_t max_tokens, uint32_t max_age_s, uint32_t now,
    uint64_t *removed)
{
	return 0;       /* TTLs expire tokens; maxmemory bounds the size */
}

const struct bayes_db_ops bayes_redis_ops = {
	"redis", br_lookup, br_learn, br_touch, br_expire, br_close, br_check
};
