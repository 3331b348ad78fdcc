/* ledger_store.c — the delivery ledger in LMDB (ledger_store.h). */
#include "ledger_store.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "store/lmdb_store.h"
#include "store/store.h"

void ledger_record_encode(uint8_t out[LEDGER_RECORD_LEN], uint64_t expires_ms)
{
	out[0] = LEDGER_RECORD_VERSION;
	for (int i = 0; i < 8; i++)
		out[1 + i] = (uint8_t)(expires_ms >> (56 - 8 * i));
}

int ledger_record_decode(const void *val, size_t len, uint64_t *expires_ms)
{
	const uint8_t *v = val;
	uint64_t e = 0;

	if (v == NULL || len != LEDGER_RECORD_LEN || v[0] != LEDGER_RECORD_VERSION)
		return -1;
	for (int i = 0; i < 8; i++)
		e = e << 8 | v[1 + i];
	*expires_ms = e;
	return 0;
}

size_t ledger_store_key(uint8_t out[LEDGER_STORE_KEY_LEN], const uint8_t key[LEDGER_KEY_LEN])
{
	const size_t n = sizeof(LEDGER_STORE_PREFIX) - 1;

	memcpy(out, LEDGER_STORE_PREFIX, n);
	memcpy(out + n, key, LEDGER_KEY_LEN);
	return LEDGER_STORE_KEY_LEN;
}

const char *ledger_store_dir(const struct mx_config *cfg)
{
	const struct retry_ledger_config *c = &cfg->backends.retry_ledger;

	return c->max_entries > 0 ? store_lmdb_dir(c->store) : NULL;
}

/* The record's expiry, or 0 (expired at once) for one that does not decode. */
static uint64_t ledger_store_expiry(const void *val, size_t len)
{
	uint64_t e;

	return ledger_record_decode(val, len, &e) == 0 ? e : 0;
}

/* The merge of an add (operand: the new record): a live record stays as it is (its first
 * expiry holds); an expired, absent or unreadable one takes the operand. */
static long ledger_store_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	(void)ctx;
	if (cur != NULL && ledger_store_expiry(cur, curlen) > now_ms)
		return -1;
	if (oplen != LEDGER_RECORD_LEN || cap < oplen)
		return -1;
	memcpy(out, operand, oplen);
	return (long)oplen;
}

static bool ledger_store_expired(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx)
{
	(void)key, (void)klen, (void)ctx;
	return ledger_store_expiry(val, vlen) <= now_ms;
}

/* A map near full: the records that expire first go first. */
static uint64_t ledger_store_rank(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx)
{
	(void)key, (void)klen, (void)ctx;
	return ledger_store_expiry(val, vlen);
}

struct lmdb_writer *ledger_store_writer_new(const struct mx_config *cfg, uv_loop_t *loop)
{
	static const char *const prefixes[] = { LEDGER_STORE_PREFIX, NULL };
	const char *dir = ledger_store_dir(cfg);
	struct lmdb_store *st;
	struct lmdb_writer *wr;

	if (dir == NULL)
		return NULL;
	if ((st = lmdb_store_open_existing(dir)) == NULL) {
		ledger_store_note(cfg->backends.retry_ledger.store, false, "not_open");
		return NULL;
	}
	struct lmdb_writer_config wc = {
		.sweep_prefixes = prefixes, .merge = ledger_store_merge, .expired = ledger_store_expired,
		.rank = ledger_store_rank, .name = "ledger",
	};
	wr = lmdb_writer_new(st, loop, &wc);
	lmdb_store_close(st);   /* the writer has its own reference */
	if (wr == NULL)
		ledger_store_note(cfg->backends.retry_ledger.store, false, "out_of_memory");
	return wr;
}

int ledger_store_has(struct lmdb_writer *wr, const uint8_t key[LEDGER_KEY_LEN], uint64_t now_ms)
{
	uint8_t k[LEDGER_STORE_KEY_LEN], v[LEDGER_RECORD_LEN];
	size_t len = 0;
	uint64_t e;
	int rc = lmdb_writer_get_merged(wr, k, ledger_store_key(k, key), v, sizeof(v), &len);

	if (rc <= 0)
		return rc;
	return len == sizeof(v) && ledger_record_decode(v, len, &e) == 0 && e > now_ms;
}

int ledger_store_add(struct lmdb_writer *wr, const uint8_t key[LEDGER_KEY_LEN], uint64_t now_ms,
    uint64_t ttl)
{
	uint8_t k[LEDGER_STORE_KEY_LEN], v[LEDGER_RECORD_LEN];

	ledger_record_encode(v, now_ms + ttl);
	return lmdb_writer_merge(wr, k, ledger_store_key(k, key), v, sizeof(v));
}

static atomic_bool ledger_store_down;

void ledger_store_note(const char *store, bool ok, const char *what)
{
	if (ok) {
		if (atomic_load_explicit(&ledger_store_down, memory_order_relaxed) &&
		    atomic_exchange(&ledger_store_down, false))
			log_event(LOG_LVL_INFO, NULL, "event=ledger_store_ok store=%s", store);
		return;
	}
	if (!atomic_exchange(&ledger_store_down, true))
		log_event(LOG_LVL_WARNING, NULL, "event=ledger_store_error store=%s reason=%s "
		    "action=deliver", store, what);
}

struct ledger_store_write {
	char store[4200];
	char queue_id[80];
	size_t n;
};

struct ledger_store_write *ledger_store_write_new(const char *store, const char *queue_id, size_t n)
{
	struct ledger_store_write *c = malloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	snprintf(c->store, sizeof(c->store), "%s", store);
	snprintf(c->queue_id, sizeof(c->queue_id), "%s", queue_id && queue_id[0] ? queue_id : "-");
	c->n = n;
	return c;
}

void ledger_store_written(void *arg, int status)
{
	struct ledger_store_write *c = arg;

	ledger_store_note(c->store, status == 0, "write_failed");
	if (status == 0)
		log_event(LOG_LVL_INFO, NULL, "event=ledger_stored store=%s queue_id=%s keys=%zu",
		    c->store, c->queue_id, c->n);
	free(c);
}

void ledger_store_commit(struct lmdb_writer *wr, const char *dir, const char *queue_id, size_t n)
{
	char store[4200];
	struct ledger_store_write *c;

	snprintf(store, sizeof(store), "lmdb:%s", dir);
	if ((c = ledger_store_write_new(store, queue_id, n)) == NULL) {
		lmdb_writer_flush(wr, NULL, NULL);
		return;
	}
	if (lmdb_writer_flush(wr, ledger_store_written, c) != 0)
		free(c);    /* nothing queued (every add refused: noted) or out of memory */
}
