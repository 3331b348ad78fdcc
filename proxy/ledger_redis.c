/* ledger_redis.c — the delivery ledger in Redis (ledger_redis.h). */
#include "ledger_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ledger_store.h"
#include "log.h"
#include "store/redis.h"
#include "store/store.h"

struct ledger_redis {
	struct redis_store *rs;
	int script;                  /* ledger_redis_lua */
	bool freeing;                /* ledger_redis_free: a lookup answered now is "retired" */
};

/* Each key set to ARGV[1] for ARGV[2] ms unless it is there (a live record keeps its first
 * expiry): a write sent twice (a lost reply, store/redis.h) changes nothing the second time. */
static const char ledger_redis_lua[] =
    "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2], 'NX') end return #KEYS";

size_t ledger_redis_key(char out[LEDGER_REDIS_KEY_LEN + 1], const uint8_t key[LEDGER_KEY_LEN])
{
	static const char hex[] = "0123456789abcdef";
	const size_t n = sizeof(LEDGER_REDIS_PREFIX) - 1;

	memcpy(out, LEDGER_REDIS_PREFIX, n);
	for (size_t i = 0; i < LEDGER_KEY_LEN; i++) {
		out[n + 2 * i] = hex[key[i] >> 4];
		out[n + 2 * i + 1] = hex[key[i] & 15];
	}
	out[LEDGER_REDIS_KEY_LEN] = '\0';
	return LEDGER_REDIS_KEY_LEN;
}

const char *ledger_redis_url(const struct mx_config *cfg)
{
	const struct retry_ledger_config *c = &cfg->backends.retry_ledger;

	return c->max_entries > 0 && store_kind_of(c->store) == STORE_REDIS ? c->store : NULL;
}

struct ledger_redis *ledger_redis_new(const struct mx_config *cfg, uv_loop_t *loop, int worker)
{
	const char *url = ledger_redis_url(cfg);
	struct ledger_redis *lr;

	if (url == NULL)
		return NULL;
	if ((lr = calloc(1, sizeof(*lr))) == NULL)
		goto fail;
	if ((lr->rs = redis_store_new(loop, url, cfg->backends.retry_ledger.timeout, worker)) == NULL)
		goto fail;
	redis_store_set_name(lr->rs, "ledger");
	if ((lr->script = redis_store_add_script(lr->rs, ledger_redis_lua)) < 0)
		goto fail;
	return lr;
fail:
	ledger_store_note("redis", false, "not_open");
	ledger_redis_free(lr);
	return NULL;
}

void ledger_redis_free(struct ledger_redis *lr)
{
	if (lr == NULL)
		return;
	lr->freeing = true;          /* lookups out learn NULL inside: no timeout of Redis's */
	redis_store_free(lr->rs);
	free(lr);
}

const char *ledger_redis_name(const struct ledger_redis *lr)
{
	return redis_store_url(lr->rs);
}

/* A lookup in flight: its keys' count and where the answer goes. */
struct ledger_redis_req {
	struct ledger_redis *lr;     /* valid until the answer: ledger_redis_free answers first */
	ledger_redis_cb cb;
	void *arg;
	size_t n;
	bool held[];
};

/* MGET's reply: an array of n, a string where a record is. A value that is no ledger record
 * (another program's key under the prefix) counts as absent; Redis's expiry decides the
 * rest (the record's own expiry is for people reading it: the nodes' clocks may differ). */
static void ledger_redis_lookup_cb(void *arg, const redisReply *reply)
{
	struct ledger_redis_req *q = arg;
	const char *reason = NULL;
	uint64_t e;

	if (reply == NULL)
		reason = q->lr->freeing ? "retired" : "timeout";
	else if (reply->type == REDIS_REPLY_ERROR)
		reason = "error_reply";
	else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != q->n)
		reason = "reply";
	for (size_t i = 0; reason == NULL && i < q->n; i++) {
		const redisReply *r = reply->element[i];

		q->held[i] = r->type == REDIS_REPLY_STRING && ledger_record_decode(r->str, r->len, &e) == 0;
	}
	q->cb(q->arg, reason ? -1 : 0, reason, reason ? NULL : q->held);
	free(q);
}

/* The argument vector of a command then n keys: argv[0] is cmd, the keys' text in one
 * block after the vectors; lens set. Free with free(). NULL when out of memory. */
static void *ledger_redis_argv(const char *cmd, const uint8_t (*keys)[LEDGER_KEY_LEN], size_t n,
    size_t extra, const char ***argv, size_t **lens)
{
	size_t words = 1 + n + extra;
	char *blk = malloc(words * (sizeof(char *) + sizeof(size_t)) + n * (LEDGER_REDIS_KEY_LEN + 1));

	if (blk == NULL)
		return NULL;
	*argv = (const char **)(void *)blk;
	*lens = (size_t *)(void *)(blk + words * sizeof(char *));
	char *text = blk + words * (sizeof(char *) + sizeof(size_t));
	(*argv)[0] = cmd;
	(*lens)[0] = strlen(cmd);
	for (size_t i = 0; i < n; i++) {
		char *k = text + i * (LEDGER_REDIS_KEY_LEN + 1);

		(*lens)[1 + i] = ledger_redis_key(k, keys[i]);
		(*argv)[1 + i] = k;
	}
	return blk;
}

int ledger_redis_lookup(struct ledger_redis *lr, const uint8_t (*keys)[LEDGER_KEY_LEN], size_t n,
    ledger_redis_cb cb, void *arg, const char **reason)
{
	struct ledger_redis_req *q;
	const char **argv;
	size_t *lens;
	void *blk;

	*reason = "too_many_keys";
	if (n == 0 || n > LEDGER_REDIS_LOOKUP_MAX)
		return -1;     /* no redis_store_is_up: redis_store_command queues behind a first connect */
	*reason = "out_of_memory";
	if ((q = calloc(1, sizeof(*q) + n * sizeof(q->held[0]))) == NULL)
		return -1;
	if ((blk = ledger_redis_argv("MGET", keys, n, 0, &argv, &lens)) == NULL) {
		free(q);
		return -1;
	}
	q->lr = lr;
	q->cb = cb;
	q->arg = arg;
	q->n = n;
	*reason = "store_down";
	int rc = redis_store_command(lr->rs, (int)(1 + n), argv, lens, ledger_redis_lookup_cb, q, NULL);
	free(blk);       /* the store copied it */
	if (rc < 0)
		free(q);
	return rc;
}

int ledger_redis_add(struct ledger_redis *lr, const uint8_t (*keys)[LEDGER_KEY_LEN], size_t n,
    uint64_t now_ms, uint64_t ttl, const char *queue_id, size_t rcpts)
{
	uint8_t rec[LEDGER_RECORD_LEN];
	char px[24];
	const char **argv;
	size_t *lens;
	void *blk = NULL;
	struct ledger_store_write *c = ledger_store_write_new(ledger_redis_name(lr), queue_id, rcpts);

	if (c == NULL || (blk = ledger_redis_argv("", keys, n, 2, &argv, &lens)) == NULL)
		goto fail;
	ledger_record_encode(rec, now_ms + ttl);
	snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl);
	argv[1 + n] = (const char *)rec;
	lens[1 + n] = sizeof(rec);
	argv[2 + n] = px;
	lens[2 + n] = strlen(px);
	/* argv[0] is the command's slot: redis_store_write takes the keys and arguments alone */
	if (redis_store_write(lr->rs, lr->script, (int)n, 2, argv + 1, lens + 1, ledger_store_written, c) < 0)
		goto fail;
	free(blk);
	return 0;
fail:
	ledger_store_note(ledger_redis_name(lr), false, "write_dropped");
	free(blk);
	free(c);
	return -1;
}
