/* test_lmdb_store.c — the shared LMDB store (store/lmdb_store.c): one environment per
 * directory, reads of one key and of many in one snapshot, the write-behind writer (put,
 * delete, merge, read-your-writes, flush callbacks, order of batches, the queue bound, what
 * free writes), the per-prefix sweep, and the state surviving a reopen. Synchronous writers
 * (no loop) and writers on a real loop with the thread pool. Another process on the
 * directory (lmdb_peer.h): holding the write lock while the store opens, holding the reader
 * table's mutex, killed with every read slot taken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "store/lmdb_rtx.h"
#include "store/lmdb_store.h"
#include "store/store_stats.h"
#include "lmdb_peer.h"
#include "stderr_capture.h"

struct dir { char path[64]; };

/* pthread_create is wrapped (CMakeLists.txt): with start_delay_ms set, a new thread runs
 * that much later — what a loaded machine does to a thread that has just been started. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

static unsigned start_delay_ms;

/* mdb_env_sync is wrapped too (CMakeLists.txt): each call is counted, and those made on the
 * test's own thread (the loop's: a last close's sync there held every client of the loop
 * for as long as the disk took). */
int __real_mdb_env_sync(MDB_env *env, int force);
int __wrap_mdb_env_sync(MDB_env *env, int force);

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls, on_test_thread;
	pthread_t test_thread;
} syncs = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

int __wrap_mdb_env_sync(MDB_env *env, int force)
{
	int rc = __real_mdb_env_sync(env, force);

	pthread_mutex_lock(&syncs.mu);
	syncs.calls++;
	if (pthread_equal(pthread_self(), syncs.test_thread))
		syncs.on_test_thread++;
	pthread_cond_broadcast(&syncs.cv);
	pthread_mutex_unlock(&syncs.mu);
	return rc;
}

static void syncs_reset(void)
{
	pthread_mutex_lock(&syncs.mu);
	syncs.calls = syncs.on_test_thread = 0;
	syncs.test_thread = pthread_self();
	pthread_mutex_unlock(&syncs.mu);
}

/* Waits (up to 30 s: a bound for the event, not a figure) for n syncs; how many there were. */
static int syncs_wait(int n)
{
	struct timespec until;
	int got;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&syncs.mu);
	while (syncs.calls < n && pthread_cond_timedwait(&syncs.cv, &syncs.mu, &until) == 0)
		;
	got = syncs.calls;
	pthread_mutex_unlock(&syncs.mu);
	return got;
}

struct late_start { void *(*fn)(void *); void *arg; unsigned ms; };

static void *late_start_cb(void *p)
{
	struct late_start l = *(struct late_start *)p;

	free(p);
	usleep(l.ms * 1000);
	return l.fn(l.arg);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	struct late_start *l;

	if (start_delay_ms == 0 || (l = malloc(sizeof(*l))) == NULL)
		return __real_pthread_create(t, a, fn, arg);
	*l = (struct late_start){ fn, arg, start_delay_ms };
	return __real_pthread_create(t, a, late_start_cb, l);
}

static void dir_make(struct dir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/mxgate-lmdb-XXXXXX");
	assert_non_null(mkdtemp(d->path));
}

static void dir_remove(struct dir *d)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
	assert_int_equal(system(cmd), 0);
}

/* The value of key as a string ("" when absent, "<error>" on error). */
static const char *get_str(struct lmdb_store *st, const char *key, char *buf, size_t cap)
{
	size_t len = 0;
	int rc = lmdb_store_get(st, key, strlen(key), buf, cap - 1, &len);

	if (rc < 0)
		return "<error>";
	buf[rc == 1 ? (len < cap - 1 ? len : cap - 1) : 0] = '\0';
	return buf;
}

/* Merge: the value is a decimal counter, the operand a number to add; "0" deletes. */
static long add_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	char a[32] = "0", b[32];
	long long v;

	if (curlen >= sizeof(a) || oplen >= sizeof(b))
		return -1;
	if (cur) {
		memcpy(a, cur, curlen);
		a[curlen] = '\0';
	}
	memcpy(b, operand, oplen);
	b[oplen] = '\0';
	v = atoll(a) + atoll(b) * *(const int *)ctx;     /* ctx: a multiplier, copied */
	if (v == 0)
		return 0;
	return snprintf(out, cap, "%lld", v);
}

static void test_open_shared(void **state)
{
	struct dir d;
	struct lmdb_store *a, *b;
	uint64_t recs = 99, used = 0, map = 0;

	(void)state;
	dir_make(&d);
	a = lmdb_store_open(d.path, 1 << 20);
	b = lmdb_store_open(d.path, 0);
	assert_non_null(a);
	assert_ptr_equal(a, b);                  /* one environment per directory */
	assert_string_equal(lmdb_store_path(a), d.path);
	assert_true(lmdb_store_max_key(a) >= 100);
	assert_int_equal(lmdb_store_usage(a, &recs, &used, &map), 0);
	assert_int_equal(recs, 0);
	assert_true(used > 0 && map == 1 << 20);
	lmdb_store_close(b);
	lmdb_store_close(a);
	lmdb_store_close(NULL);
	assert_null(lmdb_store_open("", 0));
	dir_remove(&d);
}

static void test_sync_writer(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	int mult = 1;
	struct lmdb_writer_config wc = { .merge = add_merge, .ctx = &mult, .ctx_len = sizeof(mult),
		.name = "test" };
	struct lmdb_writer_stats ws;
	char buf[64], big[LMDB_STORE_VALUE_MAX + 1];
	size_t len;

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, NULL, &wc);
	assert_non_null(w);
	mult = 1000;                             /* the writer has its own copy */
	assert_int_equal(lmdb_writer_put(w, "a", 1, "one", 3), 0);
	assert_int_equal(lmdb_writer_merge(w, "n", 1, "5", 1), 0);
	assert_int_equal(lmdb_writer_merge(w, "n", 1, "7", 1), 0);
	/* queued, not in the map yet; the writer reads its own put, and with _merged its merges
	 * run on what it reads (here nothing: 5 + 7) */
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "");
	assert_int_equal(lmdb_writer_get(w, "a", 1, buf, sizeof(buf), &len), 1);
	assert_int_equal(len, 3);
	assert_int_equal(lmdb_writer_get_merged(w, "a", 1, buf, sizeof(buf), &len), 1);
	assert_int_equal(len, 3);
	assert_int_equal(lmdb_writer_get(w, "n", 1, buf, sizeof(buf), &len), 0);
	assert_int_equal(lmdb_writer_get_merged(w, "n", 1, buf, sizeof(buf), &len), 1);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "12", 2);
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	assert_string_equal(get_str(st, "n", buf, sizeof(buf)), "12");
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 1);    /* nothing queued */
	/* a queued delete hides the map's value from the writer */
	assert_int_equal(lmdb_writer_del(w, "a", 1), 0);
	assert_int_equal(lmdb_writer_get(w, "a", 1, buf, sizeof(buf), &len), 0);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	/* a merge to zero deletes; a merge queued after a put runs on the put's value */
	assert_int_equal(lmdb_writer_merge(w, "n", 1, "3", 1), 0);
	assert_int_equal(lmdb_writer_get_merged(w, "n", 1, buf, sizeof(buf), &len), 1);
	assert_memory_equal(buf, "15", 2);     /* the map's 12 + 3 */
	assert_int_equal(lmdb_writer_get(w, "n", 1, buf, sizeof(buf), &len), 1);
	assert_memory_equal(buf, "12", 2);     /* the map's */
	assert_int_equal(lmdb_writer_merge(w, "n", 1, "-15", 3), 0);
	assert_int_equal(lmdb_writer_get_merged(w, "n", 1, buf, sizeof(buf), &len), 0);
	assert_int_equal(lmdb_writer_put(w, "m", 1, "40", 2), 0);
	assert_int_equal(lmdb_writer_merge(w, "m", 1, "2", 1), 0);
	assert_int_equal(lmdb_writer_get_merged(w, "m", 1, buf, sizeof(buf), &len), 1);
	assert_memory_equal(buf, "42", 2);
	assert_int_equal(lmdb_writer_get(w, "m", 1, buf, sizeof(buf), &len), 1);
	assert_memory_equal(buf, "40", 2);     /* the put's */
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	assert_string_equal(get_str(st, "m", buf, sizeof(buf)), "42");
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "");
	assert_string_equal(get_str(st, "n", buf, sizeof(buf)), "");
	/* refused: empty key, key over the limit, value over the limit */
	memset(big, 'x', sizeof(big));
	assert_int_equal(lmdb_writer_put(w, "", 0, "v", 1), -1);
	assert_int_equal(lmdb_writer_put(w, big, lmdb_store_max_key(st) + 1, "v", 1), -1);
	assert_int_equal(lmdb_writer_put(w, big, lmdb_store_max_key(st), "v", 1), 0);
	assert_int_equal(lmdb_writer_put(w, "k", 1, big, sizeof(big)), -1);
	lmdb_writer_stats(w, &ws);
	assert_int_equal(ws.batches, 2);
	assert_int_equal(ws.failed, 0);
	lmdb_writer_free(w);                     /* writes the long key */
	assert_int_equal(lmdb_store_get(st, big, lmdb_store_max_key(st), buf, sizeof(buf), &len), 1);
	lmdb_store_close(st);
	dir_remove(&d);
}

static void test_merge_refused_without_fn(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .name = "test" };

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, NULL, &wc);
	assert_int_equal(lmdb_writer_merge(w, "k", 1, "1", 1), -1);
	lmdb_writer_free(w);
	lmdb_store_close(st);
	dir_remove(&d);
}

struct many { int calls; char vals[4][16]; int absent[4]; };

static void many_cb(void *arg, size_t i, const void *val, size_t len)
{
	struct many *m = arg;

	m->calls++;
	m->absent[i] = val == NULL;
	if (val)
		snprintf(m->vals[i], sizeof(m->vals[i]), "%.*s", (int)len, (const char *)val);
}

static void test_get_many(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .name = "test" };
	struct lmdb_key keys[4] = { { "x", 1 }, { "missing", 7 }, { "y", 1 }, { "", 0 } };
	struct many m;

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, NULL, &wc);
	lmdb_writer_put(w, "x", 1, "10", 2);
	lmdb_writer_put(w, "y", 1, "20", 2);
	lmdb_writer_flush(w, NULL, NULL);
	memset(&m, 0, sizeof(m));
	assert_int_equal(lmdb_store_get_many(st, keys, 4, many_cb, &m), 0);
	assert_int_equal(m.calls, 4);
	assert_string_equal(m.vals[0], "10");
	assert_true(m.absent[1]);
	assert_string_equal(m.vals[2], "20");
	assert_true(m.absent[3]);               /* an empty key is simply absent */
	lmdb_writer_free(w);
	lmdb_store_close(st);
	dir_remove(&d);
}

static bool old_expired(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx)
{
	return vlen == 3 && memcmp(val, "old", 3) == 0;
}

static void test_sweep(void **state)
{
	static const char *const prefixes[] = { "t:", "u:", NULL };
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *plain, *sw;
	struct lmdb_writer_config pc = { .name = "plain" };
	struct lmdb_writer_config sc = { .sweep_prefixes = prefixes, .expired = old_expired,
		.name = "sweeper" };
	char buf[16];

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	plain = lmdb_writer_new(st, NULL, &pc);
	sw = lmdb_writer_new(st, NULL, &sc);
	/* another module's records, and records of the swept prefixes */
	lmdb_writer_put(plain, "o:1", 3, "old", 3);
	lmdb_writer_put(plain, "t:1", 3, "old", 3);
	lmdb_writer_put(plain, "t:2", 3, "new", 3);
	lmdb_writer_put(plain, "t:3", 3, "old", 3);
	lmdb_writer_put(plain, "u:1", 3, "old", 3);
	lmdb_writer_put(plain, "v:1", 3, "old", 3);
	lmdb_writer_flush(plain, NULL, NULL);
	/* the first batch of the sweeping writer sweeps its prefixes */
	lmdb_writer_put(sw, "t:4", 3, "new", 3);
	lmdb_writer_flush(sw, NULL, NULL);
	assert_string_equal(get_str(st, "o:1", buf, sizeof(buf)), "old");
	assert_string_equal(get_str(st, "t:1", buf, sizeof(buf)), "");
	assert_string_equal(get_str(st, "t:2", buf, sizeof(buf)), "new");
	assert_string_equal(get_str(st, "t:3", buf, sizeof(buf)), "");
	assert_string_equal(get_str(st, "t:4", buf, sizeof(buf)), "new");
	assert_string_equal(get_str(st, "u:1", buf, sizeof(buf)), "");
	assert_string_equal(get_str(st, "v:1", buf, sizeof(buf)), "old");
	/* the next batch within the interval does not sweep again */
	lmdb_writer_put(plain, "t:5", 3, "old", 3);
	lmdb_writer_flush(plain, NULL, NULL);
	lmdb_writer_put(sw, "t:6", 3, "new", 3);
	lmdb_writer_flush(sw, NULL, NULL);
	assert_string_equal(get_str(st, "t:5", buf, sizeof(buf)), "old");
	lmdb_writer_free(plain);
	lmdb_writer_free(sw);
	lmdb_store_close(st);
	dir_remove(&d);
}

/* The rank of a test record: its first 8 bytes (a sequence number: the stalest first). */
static uint64_t seq_rank(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx)
{
	uint64_t r = 0;

	(void)key;
	(void)klen;
	(void)ctx;
	if (vlen >= sizeof(r))
		memcpy(&r, val, sizeof(r));
	return r;
}

static void status_cb(void *arg, int status)
{
	*(int *)arg = status;
}

static void test_map_full_evicts(void **state)
{
	/* 20,000 records of ~150 bytes (3 MB) through a writer with a rank, into a 1 MiB map,
	 * in batches of 250 whose keys are spread over the key space: no batch fails, the
	 * stalest records are the ones that went, the newest are all there. Before, the map
	 * filled after ~5,000 and every later batch failed (MDB_MAP_FULL), for good. A writer
	 * without a rank still fails its batches in a full map. */
	static const char *const prefixes[] = { "e:", NULL };
	struct lmdb_writer_config ec = { .sweep_prefixes = prefixes, .rank = seq_rank,
		.name = "evictor" };
	struct lmdb_writer_config pc = { .name = "plain" };
	struct lmdb_writer_stats ws;
	struct lmdb_store *st;
	struct lmdb_writer *ew, *pw;
	struct dir d;
	unsigned char val[140], buf[160];
	char key[32];
	uint64_t records, used, map;
	int status, failed = 0, old_left = 0;
	size_t len;
	const uint64_t N = 20000;

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	ew = lmdb_writer_new(st, NULL, &ec);
	assert_non_null(ew);
	memset(val, 'v', sizeof(val));
	for (uint64_t i = 0; i < N; i++) {
		/* key order unrelated to age: a multiplicative scramble of i */
		snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((i * 2654435761u) & 0xffffffffu));
		memcpy(val, &i, sizeof(i));
		assert_int_equal(lmdb_writer_put(ew, key, strlen(key), val, sizeof(val)), 0);
		if (i % 250 == 249) {
			status = 1;
			assert_int_equal(lmdb_writer_flush(ew, status_cb, &status), 0);
			if (status != 0)
				failed++;
		}
	}
	lmdb_writer_stats(ew, &ws);
	assert_int_equal(failed, 0);
	assert_int_equal(ws.failed, 0);
	assert_true(ws.evicted > 0);
	assert_int_equal(lmdb_store_usage(st, &records, &used, &map), 0);
	assert_true(records + ws.evicted == N);
	/* the last batch is all there; the first thousand are gone (a few may survive in the
	 * bucket the cut fell in) */
	for (uint64_t i = N - 250; i < N; i++) {
		snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((i * 2654435761u) & 0xffffffffu));
		assert_int_equal(lmdb_store_get(st, key, strlen(key), buf, sizeof(buf), &len), 1);
	}
	for (uint64_t i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((i * 2654435761u) & 0xffffffffu));
		old_left += lmdb_store_get(st, key, strlen(key), buf, sizeof(buf), &len);
	}
	assert_int_equal(old_left, 0);
	/* a writer without a rank: its batches fail once the map is full, as before */
	pw = lmdb_writer_new(st, NULL, &pc);
	failed = 0;
	for (uint64_t i = 0; i < N && failed == 0; i++) {
		snprintf(key, sizeof(key), "p:%08llx", (unsigned long long)i);
		assert_int_equal(lmdb_writer_put(pw, key, strlen(key), val, sizeof(val)), 0);
		if (i % 250 == 249) {
			status = 1;
			lmdb_writer_flush(pw, status_cb, &status);
			failed += status != 0;
		}
	}
	assert_int_equal(failed, 1);
	lmdb_writer_free(pw);
	lmdb_writer_free(ew);
	lmdb_store_close(st);
	dir_remove(&d);
}

static void test_rank_overwrite(void **state)
{
	/* A writer with a rank (greylist, AUTH guard ...) overwriting a record: the new value
	 * lands, in a later batch and twice in one. Before, its put tried MDB_NOOVERWRITE first
	 * (to count new records), and LMDB answers MDB_KEYEXIST with the data pointed at the
	 * existing item: the second put wrote the old value back, so a record once written
	 * never changed (a greylisted triplet whose retry passed stayed waiting in the map). */
	static const char *const prefixes[] = { "r:", NULL };
	struct lmdb_writer_config rc = { .sweep_prefixes = prefixes, .rank = seq_rank, .name = "ranked" };
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct dir d;
	char buf[64];

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, NULL, &rc);
	assert_non_null(w);
	assert_int_equal(lmdb_writer_put(w, "r:k", 3, "00000001-one", 12), 0);
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	assert_string_equal(get_str(st, "r:k", buf, sizeof(buf)), "00000001-one");
	assert_int_equal(lmdb_writer_put(w, "r:k", 3, "00000002-two", 12), 0);
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	assert_string_equal(get_str(st, "r:k", buf, sizeof(buf)), "00000002-two");
	assert_int_equal(lmdb_writer_put(w, "r:j", 3, "00000003-a", 10), 0);
	assert_int_equal(lmdb_writer_put(w, "r:j", 3, "00000004-b", 10), 0);
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	assert_string_equal(get_str(st, "r:j", buf, sizeof(buf)), "00000004-b");
	lmdb_writer_free(w);
	lmdb_store_close(st);
	dir_remove(&d);
}

static void test_bad_config(void **state)
{
	static const char *const too_many[] = { "a", "b", "c", "d", "e", NULL };
	static const char *const empty[] = { "", NULL };
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer_config wc = { .sweep_prefixes = too_many };

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	assert_null(lmdb_writer_new(st, NULL, &wc));
	wc.sweep_prefixes = empty;
	assert_null(lmdb_writer_new(st, NULL, &wc));
	wc.sweep_prefixes = NULL;
	wc.ctx_len = 4;                          /* a length without a context */
	assert_null(lmdb_writer_new(st, NULL, &wc));
	assert_null(lmdb_writer_new(NULL, NULL, &wc));
	lmdb_store_close(st);
	dir_remove(&d);
}

/* ---- on a loop, with the thread pool ------------------------------------------------------- */

struct flushed { int calls, status, order; };
static int flush_seq;

static void flushed_cb(void *arg, int status)
{
	struct flushed *f = arg;

	/* from the loop, or the writer thread for a closing writer: calls last */
	f->status = status;
	f->order = __atomic_add_fetch(&flush_seq, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&f->calls, f->calls + 1, __ATOMIC_RELEASE);
}

static void keepalive_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until *flag. A batch with the writer thread does not keep a loop alive (a
 * draining worker's loop ends; lmdb_writer_free then hands its callbacks to that thread): a
 * timer stands for the daemon's listeners and sessions. */
static void run_until(uv_loop_t *loop, const int *flag)
{
	uv_timer_t keep;

	uv_timer_init(loop, &keep);
	uv_timer_start(&keep, keepalive_cb, 1, 1);
	for (int i = 0; i < 20000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&keep, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	if (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
		fail_msg("no flush callback");
}

/* Waits (without the loop) until *flag: a closing writer's callbacks come from the store's
 * writer thread. */
static void wait_flag(const int *flag)
{
	for (int i = 0; i < 10000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	if (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
		fail_msg("no flush callback");
}

static void test_loop_writer(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .flush_interval = 3600000, .name = "test" };
	struct flushed f1 = { 0 }, f2 = { 0 }, f3 = { 0 };
	uv_loop_t loop;
	char buf[16];
	size_t len;

	(void)state;
	dir_make(&d);
	uv_loop_init(&loop);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, &loop, &wc);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f1), 1);   /* nothing to do */
	lmdb_writer_put(w, "k", 1, "1", 1);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f1), 0);
	assert_int_equal(f1.calls, 0);           /* never from inside the call */
	/* in the pool now; the writer still reads its own value */
	assert_int_equal(lmdb_writer_get(w, "k", 1, buf, sizeof(buf), &len), 1);
	assert_int_equal(buf[0], '1');
	/* a second flush while the first batch is in the pool waits its turn */
	lmdb_writer_put(w, "k", 1, "2", 1);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f2), 0);
	run_until(&loop, &f2.calls);
	assert_int_equal(f1.calls, 1);
	assert_int_equal(f1.status, 0);
	assert_true(f1.order < f2.order);
	assert_string_equal(get_str(st, "k", buf, sizeof(buf)), "2");
	/* a flush with nothing new waits for the batch in the pool */
	lmdb_writer_put(w, "k", 1, "3", 1);
	lmdb_writer_flush(w, NULL, NULL);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f3), 0);
	run_until(&loop, &f3.calls);
	assert_string_equal(get_str(st, "k", buf, sizeof(buf)), "3");
	lmdb_writer_free(w);
	uv_run(&loop, UV_RUN_DEFAULT);
	lmdb_store_close(st);
	assert_int_equal(uv_loop_close(&loop), 0);
	dir_remove(&d);
}

/* Freed with a batch in the pool and more queued: the newer value wins, the callbacks run. */
static void test_free_keeps_order(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	uv_loop_t loop;
	char buf[16];

	(void)state;
	dir_make(&d);
	uv_loop_init(&loop);
	st = lmdb_store_open(d.path, 1 << 20);
	for (int round = 0; round < 50; round++) {
		struct lmdb_writer_config wc = { .name = "test" };
		struct lmdb_writer *w = lmdb_writer_new(st, &loop, &wc);
		struct flushed f1 = { 0 }, f2 = { 0 };
		char v1[8], v2[8];

		snprintf(v1, sizeof(v1), "a%d", round);
		snprintf(v2, sizeof(v2), "b%d", round);
		lmdb_writer_put(w, "k", 1, v1, strlen(v1));
		lmdb_writer_flush(w, flushed_cb, &f1);
		lmdb_writer_put(w, "k", 1, v2, strlen(v2));
		lmdb_writer_flush(w, flushed_cb, &f2);
		lmdb_writer_free(w);
		/* the queued part goes after the batch with the writer thread */
		wait_flag(&f2.calls);
		uv_run(&loop, UV_RUN_DEFAULT);      /* the handles' close; the writer goes */
		assert_int_equal(f1.calls, 1);
		assert_int_equal(f1.status, 0);
		assert_true(f1.order < f2.order);
		assert_string_equal(get_str(st, "k", buf, sizeof(buf)), v2);
	}
	lmdb_store_close(st);
	assert_int_equal(uv_loop_close(&loop), 0);
	dir_remove(&d);
}

static void test_queue_bound(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .max_queued = 3, .name = "test" };
	struct lmdb_writer_stats ws;
	uv_loop_t loop;
	char buf[16];

	(void)state;
	dir_make(&d);
	uv_loop_init(&loop);
	st = lmdb_store_open(d.path, 1 << 20);
	/* on a loop: a full queue drops (the pool is stuck) */
	w = lmdb_writer_new(st, &loop, &wc);
	for (int i = 0; i < 3; i++)
		assert_int_equal(lmdb_writer_put(w, "k", 1, "v", 1), 0);
	assert_int_equal(lmdb_writer_put(w, "k", 1, "v", 1), -1);
	lmdb_writer_stats(w, &ws);
	assert_int_equal(ws.queued, 3);
	assert_int_equal(ws.dropped, 1);
	lmdb_writer_free(w);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* without a loop: a full queue is written and the update taken */
	w = lmdb_writer_new(st, NULL, &wc);
	for (int i = 0; i < 10; i++) {
		char k[8];

		snprintf(k, sizeof(k), "s%d", i);
		assert_int_equal(lmdb_writer_put(w, k, strlen(k), "v", 1), 0);
	}
	lmdb_writer_stats(w, &ws);
	assert_int_equal(ws.dropped, 0);
	assert_int_equal(ws.batches, 3);
	assert_string_equal(get_str(st, "s8", buf, sizeof(buf)), "v");
	assert_string_equal(get_str(st, "s9", buf, sizeof(buf)), "");   /* still queued */
	lmdb_writer_free(w);
	assert_string_equal(get_str(st, "s9", buf, sizeof(buf)), "v");
	lmdb_store_close(st);
	assert_int_equal(uv_loop_close(&loop), 0);
	dir_remove(&d);
}

static void test_reopen(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .name = "test" };
	char buf[16];

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	w = lmdb_writer_new(st, NULL, &wc);
	lmdb_writer_put(w, "kept", 4, "yes", 3);
	lmdb_writer_free(w);
	lmdb_store_close(st);
	st = lmdb_store_open(d.path, 1 << 20);
	assert_string_equal(get_str(st, "kept", buf, sizeof(buf)), "yes");
	lmdb_store_close(st);
	dir_remove(&d);
}

/* lmdb_store_apply, the control verbs' change when no worker holds the store: puts and
 * deletes in one batch, written when it returns; a map that cannot be opened is said. */
static void test_apply_here(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	char buf[16];
	const struct lmdb_store_change put[] = {
		{ .key = "a", .val = "1", .vlen = 1 }, { .key = "b", .val = "22", .vlen = 2 },
	};
	const struct lmdb_store_change del[] = { { .key = "a" }, { .key = "never" } };

	(void)state;
	dir_make(&d);
	assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", put, 2), 0);
	st = lmdb_store_open(d.path, 1 << 20);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "1");
	assert_string_equal(get_str(st, "b", buf, sizeof(buf)), "22");
	lmdb_store_close(st);
	assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", del, 2), 0);
	st = lmdb_store_open(d.path, 1 << 20);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "");
	assert_string_equal(get_str(st, "b", buf, sizeof(buf)), "22");
	lmdb_store_close(st);
	assert_int_equal(lmdb_store_apply("/proc/mxgate-no-such-dir", 1 << 20, "test", put, 1),
	    LMDB_APPLY_NO_MAP);
	dir_remove(&d);
}

/* A file system that fills up: the log names a full disk, not "Input/output error" (LMDB
 * turns the short write a full file system gives into EIO). Needs a tmpfs of its own
 * (a private mount namespace: root or CAP_SYS_ADMIN); skipped without one. */
static void test_disk_full_reason(void **state)
{
	(void)state;
	struct dir d;
	struct lmdb_store *st;
	struct lmdb_writer *w;
	struct lmdb_writer_config wc = { .name = "full" };
	struct stderr_capture cap;
	char key[32], val[1000], text[8192];

	dir_make(&d);
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", d.path, "tmpfs", 0, "size=512k") != 0) {
		dir_remove(&d);
		skip();
	}
	stderr_capture_start(&cap);
	st = lmdb_store_open(d.path, 64u << 20);
	assert_non_null(st);
	w = lmdb_writer_new(st, NULL, &wc);
	assert_non_null(w);
	memset(val, 'v', sizeof(val));
	/* batches of 100 kB: the write that meets the end of the room is a short one */
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "k%05d", i);
		assert_int_equal(lmdb_writer_put(w, key, strlen(key), val, sizeof(val)), 0);
		if (i % 100 == 99)
			lmdb_writer_flush(w, NULL, NULL);
	}
	lmdb_writer_free(w);
	lmdb_store_close(st);
	stderr_capture_end(&cap, text, sizeof(text));
	umount2(d.path, MNT_DETACH);
	dir_remove(&d);
	if (strstr(text, "event=lmdb_error") == NULL)     /* 2 MB into 512 kB */
		fail_msg("no batch failed:\n%s", text);
	if (strstr(text, "reason=\"no space left on device") == NULL)
		fail_msg("the log does not say the disk is full:\n%s", text);
}

/* Eight writers with a rank on one prefix (eight workers' reputation writers): the map fills,
 * one of them evicts; then each of the others writes a small batch. Each eviction drops a
 * sixth of the records, so the others are not to evict again while the map holds fewer
 * records than when it was found full: about one sixth goes in all, not 1 - (5/6)^8.
 * (Measured on main too: full at 2,600 records, 425 evicted in all — a guard, not a fix.) */
static void test_map_full_writers_evict_once(void **state)
{
	static const char *const prefixes[] = { "e:", NULL };
	struct lmdb_writer_config ec = { .sweep_prefixes = prefixes, .rank = seq_rank,
		.name = "evictor" };
	struct lmdb_writer *w[8];
	struct lmdb_writer_stats ws;
	struct lmdb_store *st;
	struct dir d;
	unsigned char val[140];
	char key[32];
	uint64_t records, before = 0, evicted = 0, seq = 0;
	int status;

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 1 << 20);
	for (int i = 0; i < 8; i++)
		assert_non_null(w[i] = lmdb_writer_new(st, NULL, &ec));
	memset(val, 'v', sizeof(val));
	/* writer 0 fills the map until its first eviction */
	for (;;) {
		for (int j = 0; j < 50; j++, seq++) {
			snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((seq * 2654435761u) & 0xffffffffu));
			memcpy(val, &seq, sizeof(seq));
			assert_int_equal(lmdb_writer_put(w[0], key, strlen(key), val, sizeof(val)), 0);
		}
		assert_int_equal(lmdb_store_usage(st, &before, NULL, NULL), 0);
		status = 1;
		assert_int_equal(lmdb_writer_flush(w[0], status_cb, &status), 0);
		assert_int_equal(status, 0);
		lmdb_writer_stats(w[0], &ws);
		if (ws.evicted > 0)
			break;
		assert_true(seq < 100000);
	}
	before += 50;
	/* each of the others: a batch of 10 new records */
	for (int i = 1; i < 8; i++) {
		for (int j = 0; j < 10; j++, seq++) {
			snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((seq * 2654435761u) & 0xffffffffu));
			memcpy(val, &seq, sizeof(seq));
			assert_int_equal(lmdb_writer_put(w[i], key, strlen(key), val, sizeof(val)), 0);
		}
		status = 1;
		assert_int_equal(lmdb_writer_flush(w[i], status_cb, &status), 0);
		assert_int_equal(status, 0);
	}
	for (int i = 0; i < 8; i++) {
		lmdb_writer_stats(w[i], &ws);
		evicted += ws.evicted;
		lmdb_writer_free(w[i]);
	}
	assert_int_equal(lmdb_store_usage(st, &records, NULL, NULL), 0);
	assert_true(evicted <= before / 4);
	assert_true(records + evicted >= before);
	lmdb_store_close(st);
	dir_remove(&d);
}

/* A map whose tree reaches LMDB_STORE_EVICT_HIGH % of its pages (small batches: little room
 * needed beside the tree for the copied pages) before it is ever full: the first eviction is
 * by the pages (high_water), and it frees room inside pages, not pages (the records are
 * spread over the key space: no page empties). From then on the record count is the mark:
 * the next batches, adding far fewer records than went, evict nothing. Before, the page
 * trigger still held after the eviction, so every batch of new records evicted another
 * sixth of them and lowered the mark each time. */
/* Four records with the sequence numbers from *seq on (keys spread over the key space,
 * the number as the rank), in one batch. */
static void put_four_ranked(struct lmdb_writer *w, uint64_t *seq)
{
	unsigned char val[140];
	char key[32];

	memset(val, 'v', sizeof(val));
	for (int j = 0; j < 4; j++, (*seq)++) {
		snprintf(key, sizeof(key), "e:%08llx", (unsigned long long)((*seq * 2654435761u) & 0xffffffffu));
		memcpy(val, seq, sizeof(*seq));
		assert_int_equal(lmdb_writer_put(w, key, strlen(key), val, sizeof(val)), 0);
	}
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
}

static void test_evict_held_by_record_mark(void **state)
{
	static const char *const prefixes[] = { "e:", NULL };
	struct lmdb_writer_config ec = { .sweep_prefixes = prefixes, .rank = seq_rank,
		.name = "evictor" };
	struct lmdb_writer_stats ws;
	struct lmdb_writer *w;
	struct lmdb_store *st;
	struct dir d;
	uint64_t records, after, first, seq = 0;

	(void)state;
	dir_make(&d);
	st = lmdb_store_open(d.path, 2 << 20);
	assert_non_null(w = lmdb_writer_new(st, NULL, &ec));
	for (ws.evicted = 0; ws.evicted == 0; ) {
		put_four_ranked(w, &seq);
		lmdb_writer_stats(w, &ws);
		assert_int_equal(ws.failed, 0);
		assert_true(seq < 100000);
	}
	first = ws.evicted;
	assert_int_equal(lmdb_store_usage(st, &after, NULL, NULL), 0);
	/* 50 batches of 4 new records: 200, far under the sixth that went */
	assert_true(first > 400);
	for (int b = 0; b < 50; b++)
		put_four_ranked(w, &seq);
	lmdb_writer_stats(w, &ws);
	assert_int_equal(lmdb_store_usage(st, &records, NULL, NULL), 0);
	assert_int_equal(ws.failed, 0);
	assert_int_equal(ws.evicted, first);
	assert_int_equal(records, after + 200);
	lmdb_writer_free(w);
	lmdb_store_close(st);
	dir_remove(&d);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A store with "a" = "one" in it, read once (its read slot is kept). */
static struct lmdb_store *open_with_a(const char *dir)
{
	struct lmdb_writer_config wc = { .name = "test" };
	struct lmdb_store *st = lmdb_store_open(dir, 1 << 20);
	struct lmdb_writer *w;
	char buf[64];

	assert_non_null(st);
	w = lmdb_writer_new(st, NULL, &wc);
	assert_non_null(w);
	assert_int_equal(lmdb_writer_put(w, "a", 1, "one", 3), 0);
	assert_int_equal(lmdb_writer_flush(w, NULL, NULL), 0);
	lmdb_writer_free(w);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	return st;
}

/* Another process holds the write lock (a `mxgate learn` stopped in its transaction): the
 * store opens all the same (the database handle needs no write transaction) and reads. */
static void test_open_while_write_locked(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	char buf[64];
	int release;
	pid_t pid;

	(void)state;
	alarm(30);                                 /* the wait without a bound: fail, not hang */
	dir_make(&d);
	lmdb_store_close(open_with_a(d.path));
	pid = lmdb_peer_start(d.path, LMDB_PEER_WRITE, &release);
	st = lmdb_store_open(d.path, 1 << 20);
	assert_non_null(st);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	lmdb_store_close(st);
	lmdb_peer_end(pid, release, false);
	dir_remove(&d);
	alarm(0);
}

/* Another process holds the reader table's mutex: a read with a kept slot goes on (a worker
 * loop reads inline), an open that needs a new slot fails within the bound, and at once
 * while that slot is still being made, on the one environment still closing. */
static void test_reader_table_locked(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	char buf[64];
	int release, rel_open;
	pid_t pid, opener;
	uint64_t waits;
	double t0;

	(void)state;
	alarm(30);
	dir_make(&d);
	opener = lmdb_peer_start(d.path, LMDB_PEER_OPEN, &rel_open);
	st = open_with_a(d.path);
	pid = lmdb_peer_start(d.path, LMDB_PEER_RMUTEX, &release);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	lmdb_store_close(st);
	/* it fails with the holder still holding (it goes only below): an open that waited for
	 * the mutex would wait for ever (alarm(30) fails it); by the wall clock its bound
	 * (LMDB_RTX_WAIT_MS by the pool thread's clock, up to 2 s more for that thread to be
	 * scheduled) says nothing on a loaded machine */
	assert_null(lmdb_store_open(d.path, 1 << 20));
	/* and again: it fails at once, no wait for the pool's thread (counted, not timed) */
	waits = lmdb_rtx_waits();
	assert_null(lmdb_store_open(d.path, 1 << 20));
	assert_int_equal(lmdb_rtx_waits(), waits);
	assert_int_equal(lmdb_peer_lock_fds(d.path), 1);
	lmdb_peer_end(pid, release, false);
	t0 = now_s();
	while ((st = lmdb_store_open(d.path, 1 << 20)) == NULL && now_s() - t0 < 10)
		usleep(20000);
	assert_non_null(st);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	lmdb_store_close(st);
	lmdb_peer_end(opener, rel_open, false);
	dir_remove(&d);
	alarm(0);
}

/* ---- another process holds LMDB's write lock ------------------------------------------------ */

struct releaser { int fd; unsigned ms; };

/* A store with "a" in it, a loop, and another process holding the write lock for ms (0:
 * until locked_release). */
struct locked {
	struct dir d;
	struct lmdb_store *st;
	uv_loop_t loop;
	struct releaser rel;
	pthread_t thr;
	bool timed;                  /* thr lets the holder go after rel.ms */
	pid_t pid;
};

/* Lets a write-lock peer go after ms (the test's main thread may be stuck until then). */
static void *release_later(void *arg)
{
	struct releaser *r = arg;

	usleep(r->ms * 1000);
	close(r->fd);
	return NULL;
}

static void *release_later(void *arg);

static void locked_start(struct locked *l, unsigned ms)
{
	alarm(30);
	dir_make(&l->d);
	lmdb_store_close(open_with_a(l->d.path));
	uv_loop_init(&l->loop);
	l->st = lmdb_store_open(l->d.path, 1 << 20);
	l->pid = lmdb_peer_start(l->d.path, LMDB_PEER_WRITE, &l->rel.fd);
	l->rel.ms = ms;
	l->timed = ms > 0;
	if (l->timed)
		assert_int_equal(pthread_create(&l->thr, NULL, release_later, &l->rel), 0);
}

/* Lets an untimed holder (locked_start(l, 0)) go. */
static void locked_release(struct locked *l)
{
	close(l->rel.fd);
}

/* Waits for the holder to have let go and ended. */
static void peer_reap(struct locked *l)
{
	int st;

	if (l->timed)
		pthread_join(l->thr, NULL);
	assert_int_equal(waitpid(l->pid, &st, 0), l->pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void locked_end(struct locked *l)
{
	lmdb_store_close(l->st);
	assert_int_equal(uv_loop_close(&l->loop), 0);
	dir_remove(&l->d);
	alarm(0);
}

static void probe_work(uv_work_t *r)
{
	(void)r;
}

static void probe_after(uv_work_t *r, int status)
{
	(void)status;
	__atomic_store_n((int *)r->data, 1, __ATOMIC_RELEASE);
}

/* Another process holds the write lock (until the test lets it go) while four writers on a
 * loop (four workers' reputation or greylist writers) flush a batch each: other work of
 * libuv's pool (a rules scan, the classifier, SPF; four threads) still runs while the lock is
 * held, and the batches land when the lock goes. Before, each batch held a pool thread in
 * mdb_txn_begin: the probe waited for the lock (here: for ever, run_until fails). */
static void test_write_lock_leaves_pool(void **state)
{
	struct lmdb_writer_config wc = { .flush_interval = 3600000, .name = "test" };
	struct lmdb_writer *w[4];
	struct flushed f[4] = { { 0 } };
	struct locked l;
	uv_work_t probe;
	int probed = 0;
	char key[8], buf[16];

	(void)state;
	locked_start(&l, 0);
	for (int i = 0; i < 4; i++) {
		assert_non_null(w[i] = lmdb_writer_new(l.st, &l.loop, &wc));
		snprintf(key, sizeof(key), "w%d", i);
		assert_int_equal(lmdb_writer_put(w[i], key, strlen(key), "v", 1), 0);
		assert_int_equal(lmdb_writer_flush(w[i], flushed_cb, &f[i]), 0);
	}
	probe.data = &probed;
	assert_int_equal(uv_queue_work(&l.loop, &probe, probe_work, probe_after), 0);
	run_until(&l.loop, &probed);
	/* the probe ran with the lock still held: no batch landed; and
	 * mxgate_store_writes_queued{store="lmdb:test"}: the four updates wait (every earlier
	 * test's updates were written: back to 0 each time) */
	for (int i = 0; i < 4; i++)
		assert_int_equal(f[i].calls, 0);
	assert_int_equal(store_stats_queued(store_stats_get("lmdb", "test")), 4);
	locked_release(&l);
	for (int i = 0; i < 4; i++) {
		run_until(&l.loop, &f[i].calls);
		assert_int_equal(f[i].status, 0);
		snprintf(key, sizeof(key), "w%d", i);
		assert_string_equal(get_str(l.st, key, buf, sizeof(buf)), "v");
		lmdb_writer_free(w[i]);
	}
	uv_run(&l.loop, UV_RUN_DEFAULT);
	assert_int_equal(store_stats_queued(store_stats_get("lmdb", "test")), 0);
	peer_reap(&l);
	locked_end(&l);
}

/* A writer freed (a reload retires its worker's generation) while another process holds the
 * write lock, with a batch waiting for it and more queued: the free returns at once (the
 * worker loop goes on), the store closed and opened again meanwhile is the one environment,
 * the callbacks come and both batches land, in order, when the lock goes; then the
 * environment closes. Before, lmdb_writer_free waited on the loop for the batch in the pool,
 * then wrote the rest there: the loop stalled until the lock went (here the holder goes only
 * after the free and the loop returned: alarm(30) fails it). */
static void test_free_while_write_locked(void **state)
{
	struct lmdb_writer_config wc = { .flush_interval = 3600000, .name = "test" };
	struct flushed f1 = { 0 }, f2 = { 0 };
	struct lmdb_writer *w;
	struct locked l;
	char buf[16];

	(void)state;
	locked_start(&l, 0);
	w = lmdb_writer_new(l.st, &l.loop, &wc);
	assert_int_equal(lmdb_writer_put(w, "k", 1, "late", 4), 0);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f1), 0);
	assert_int_equal(lmdb_writer_put(w, "k", 1, "later", 5), 0);
	assert_int_equal(lmdb_writer_flush(w, flushed_cb, &f2), 0);
	lmdb_writer_free(w);
	uv_run(&l.loop, UV_RUN_DEFAULT);
	assert_int_equal(f1.calls + f2.calls, 0);
	lmdb_store_close(l.st);
	l.st = lmdb_store_open(l.d.path, 1 << 20);
	assert_non_null(l.st);
	assert_int_equal(lmdb_peer_lock_fds(l.d.path), 1);
	lmdb_store_close(l.st);
	locked_release(&l);
	wait_flag(&f2.calls);
	assert_int_equal(f1.calls, 1);
	assert_int_equal(f1.status, 0);
	assert_int_equal(f2.status, 0);
	assert_true(f1.order < f2.order);
	/* the writer's last batch took its store reference with it: the environment closes */
	for (int i = 0; i < 500 && lmdb_peer_lock_fds(l.d.path) > 0; i++)
		usleep(10000);
	assert_int_equal(lmdb_peer_lock_fds(l.d.path), 0);
	peer_reap(&l);
	l.st = lmdb_store_open(l.d.path, 1 << 20);
	assert_string_equal(get_str(l.st, "k", buf, sizeof(buf)), "later");
	locked_end(&l);
}

struct applied {
	int calls, rc;
	double at;
};

static void flag_timer_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

static void applied_cb(void *arg, int rc)
{
	struct applied *a = arg;

	a->calls++;
	a->rc = rc;
	a->at = now_s();
}

/* lmdb_store_apply_start, a control verb's change on the main loop while another process
 * holds the write lock until the test lets it go: the call returns (a call that waited for
 * the lock would never return: alarm), the loop runs on meanwhile (a timer of 100 ms fires),
 * the verb is answered LMDB_APPLY_TIMEOUT at its 300 ms bound (no sooner), and the change
 * lands when the lock goes. Without the lock: answered 0 once written, the records there.
 * Before, the only way was lmdb_store_apply, which waits in the calling thread (the main
 * loop: every control client, the reload) for the lock. The holder held for 1.5 s and the
 * call, the timer and the answer were bounded at 0.1, 0.5 and 1 s: a test descheduled for
 * about a second failed. */
static void test_apply_start_bounded(void **state)
{
	const struct lmdb_store_change put[] = { { .key = "v", .val = "1", .vlen = 1 } };
	const struct lmdb_store_change del[] = { { .key = "v" } };
	struct applied a = { 0 }, b = { 0 };
	struct locked l;
	uv_timer_t tick;
	int ticked = 0;
	double t0;
	char buf[16];

	(void)state;
	locked_start(&l, 0);            /* held until locked_release */
	/* the loop's clock as a running loop has it (it stood still since uv_loop_init, before
	 * the peer took the lock): else the 300 ms bound runs from then, short of t0 + 0.3 s */
	uv_update_time(&l.loop);
	t0 = now_s();
	assert_int_equal(lmdb_store_apply_start(&l.loop, l.d.path, 1 << 20, "test", put, 1, 300,
	    applied_cb, &a), 0);
	assert_int_equal(a.calls, 0);
	uv_timer_init(&l.loop, &tick);
	tick.data = &ticked;
	uv_timer_start(&tick, flag_timer_cb, 100, 0);
	run_until(&l.loop, &ticked);            /* the loop was not held */
	run_until(&l.loop, &a.calls);
	assert_int_equal(a.rc, LMDB_APPLY_TIMEOUT);   /* the lock is still held */
	assert_true(a.at - t0 >= 0.29);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&l.loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	locked_release(&l);
	peer_reap(&l);
	assert_true(lmdb_store_wait_written(5000));
	assert_string_equal(get_str(l.st, "v", buf, sizeof(buf)), "1");
	/* the lock free: answered when written */
	assert_int_equal(lmdb_store_apply_start(&l.loop, l.d.path, 1 << 20, "test", del, 1, 5000,
	    applied_cb, &b), 0);
	run_until(&l.loop, &b.calls);
	assert_int_equal(b.rc, 0);
	assert_string_equal(get_str(l.st, "v", buf, sizeof(buf)), "");
	uv_run(&l.loop, UV_RUN_DEFAULT);
	assert_int_equal(b.calls, 1);
	assert_int_equal(lmdb_store_apply_start(&l.loop, "/proc/mxgate-no-such-dir", 1 << 20, "test", put, 1,
	    300, applied_cb, &b), LMDB_APPLY_NO_MAP);
	locked_end(&l);
}

/* Merges of struct lmdb_store_change (ctx NULL): the record deleted when it holds the
 * operand (a verb's "delete it if it is still what I read"), or the operand written where
 * there is no record. */
static long del_if_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	(void)out;
	(void)cap;
	(void)now_ms;
	assert_null(ctx);
	return cur != NULL && curlen == oplen && memcmp(cur, operand, oplen) == 0 ? 0 : -1;
}

static long new_only_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	(void)curlen;
	(void)now_ms;
	assert_null(ctx);
	if (cur != NULL || oplen > cap)
		return -1;
	memcpy(out, operand, oplen);
	return (long)oplen;
}

/* lmdb_store_apply(_start) with a merge per change, run on the record as it is in the batch's
 * write transaction: two merges and a put in one batch; and the change a control verb makes
 * on what it read while another process writes the record before its batch (that process
 * holds the write lock with its put, then commits as it lets go): the conditional delete
 * leaves the other's value. A plain delete there removed it (filters/limits_control.c's
 * disallow and untrap without a worker, before the merge). */
static void test_apply_merge(void **state)
{
	const struct lmdb_store_change seed[] = { { .key = "k", .val = "old", .vlen = 3 } };
	const struct lmdb_store_change mixed[] = {
		{ .key = "k", .val = "old", .vlen = 3, .merge = del_if_merge },
		{ .key = "n", .val = "first", .vlen = 5, .merge = new_only_merge },
		{ .key = "p", .val = "put", .vlen = 3 },
		{ .key = "n", .val = "second", .vlen = 6, .merge = new_only_merge },
	};
	const struct lmdb_store_change cas[] = { { .key = "k", .val = "old", .vlen = 3, .merge = del_if_merge } };
	const struct lmdb_peer_put other = { "k", "new", 3 };
	struct applied a = { 0 };
	struct lmdb_store *st;
	uv_loop_t loop;
	char buf[16], big[LMDB_STORE_VALUE_MAX];
	struct lmdb_store_change too_big = { .key = "b", .val = big, .vlen = sizeof(big), .merge = new_only_merge };
	int release;
	pid_t pid;

	(void)state;
	alarm(30);
	memset(big, 'x', sizeof(big));
	{
		struct dir d;

		dir_make(&d);
		assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", seed, 1), 0);
		assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", mixed, 4), 0);
		st = lmdb_store_open(d.path, 1 << 20);
		assert_string_equal(get_str(st, "k", buf, sizeof(buf)), "");
		assert_string_equal(get_str(st, "n", buf, sizeof(buf)), "first");
		assert_string_equal(get_str(st, "p", buf, sizeof(buf)), "put");
		/* not what it held: left */
		assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", seed, 1), 0);
		assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", &mixed[1], 1), 0);
		assert_string_equal(get_str(st, "k", buf, sizeof(buf)), "old");
		/* an operand with no room for the function beside it is refused */
		assert_int_equal(lmdb_store_apply(d.path, 1 << 20, "test", &too_big, 1), LMDB_APPLY_FAILED);
		lmdb_store_close(st);

		/* another process writes k between the read ("old") and the batch */
		uv_loop_init(&loop);
		pid = lmdb_peer_start_put(d.path, LMDB_PEER_WRITE, &other, &release);
		st = lmdb_store_open(d.path, 1 << 20);
		assert_string_equal(get_str(st, "k", buf, sizeof(buf)), "old");  /* not committed yet */
		assert_int_equal(lmdb_store_apply_start(&loop, d.path, 1 << 20, "test", cas, 1, 20000,
		    applied_cb, &a), 0);
		lmdb_peer_end(pid, release, false);     /* commits, then lets go of the lock */
		run_until(&loop, &a.calls);
		assert_int_equal(a.rc, 0);
		if (strcmp(get_str(st, "k", buf, sizeof(buf)), "new") != 0)
			fail_msg("the other process's write was deleted: k is \"%s\", want \"new\"", buf);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(a.calls, 1);
		assert_int_equal(uv_loop_close(&loop), 0);
		lmdb_store_close(st);
		dir_remove(&d);
	}
	alarm(0);
}

/* A watchdog for a call that must not wait on another process: if the call has not
 * returned within 30 s (a bound for the event, not a figure), the peer holding the lock is
 * let go, so that a call stuck behind it returns and the test fails instead of hanging. */
struct watchdog {
	pthread_t t;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool returned, stuck;
	int release;                    /* the peer's pipe */
};

static void *watchdog_cb(void *arg)
{
	struct watchdog *w = arg;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&w->mu);
	while (!w->returned && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
		;
	if (!w->returned) {
		w->stuck = true;
		close(w->release);      /* the peer ends: its lock goes */
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* lmdb_store_apply_start on a directory this process does not have open, while another
 * process holds lock.mdb's lock (lmdb_peer.h's LMDB_PEER_EXCL; in life one stopped inside its own open):
 * answered LMDB_APPLY_NO_MAP at once, nothing opened. Before, it opened the directory itself
 * (lmdb_store_open on the caller's thread, the main loop: mdb_env_open waited for the lock
 * for as long as it was held) — what a greylist verb met when the workers closed the map
 * between the verb's read and its write (filters/limits_control.c, lc_gl_lmdb_write_later). */
static void test_apply_start_opens_none(void **state)
{
	const struct lmdb_store_change put[] = { { .key = "v", .val = "1", .vlen = 1 } };
	struct watchdog w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct applied a = { 0 };
	struct dir d;
	uv_loop_t loop;
	bool stuck;
	pid_t pid;
	int rc;

	(void)state;
	alarm(90);
	dir_make(&d);
	uv_loop_init(&loop);
	pid = lmdb_peer_start(d.path, LMDB_PEER_EXCL, &w.release);
	assert_int_equal(pthread_create(&w.t, NULL, watchdog_cb, &w), 0);
	rc = lmdb_store_apply_start(&loop, d.path, 1 << 20, "test", put, 1, 5000, applied_cb, &a);
	pthread_mutex_lock(&w.mu);
	w.returned = true;
	stuck = w.stuck;
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
	pthread_join(w.t, NULL);
	if (stuck) {
		int st;

		waitpid(pid, &st, 0);
	} else {
		assert_int_equal(lmdb_peer_lock_fds(d.path), 0);  /* nothing opened here */
		lmdb_peer_end(pid, w.release, false);
	}
	/* a stuck call opened the map once the peer let go: its batch is answered */
	if (rc == 0)
		run_until(&loop, &a.calls);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_true(lmdb_store_wait_written(5000));
	dir_remove(&d);
	alarm(0);
	if (stuck)
		fail_msg("lmdb_store_apply_start did not return while another process held lock.mdb's lock");
	assert_int_equal(rc, LMDB_APPLY_NO_MAP);
	assert_int_equal(a.calls, 0);
}

/* The last reference of a store dropped on a loop: by a control verb's change
 * (lmdb_store_apply_start_on: its writer is freed on the loop once the batch is written and
 * the verb answered, after the caller closed its own reference) and by
 * lmdb_store_close_async. The environment's sync and close run on a thread of their own,
 * and it is gone (a lookup finds none, the lock file is closed) once they did. Before, the
 * writer's close ran them on the loop (seen: the sync on the test's thread). */
static void test_last_close_off_loop(void **state)
{
	const struct lmdb_store_change put[] = { { .key = "v", .val = "1", .vlen = 1 } };
	struct applied a = { 0 };
	struct lmdb_store *st;
	struct dir d;
	uv_loop_t loop;
	char buf[16];

	(void)state;
	alarm(60);
	dir_make(&d);
	uv_loop_init(&loop);
	syncs_reset();
	st = lmdb_store_open(d.path, 1 << 20);
	assert_non_null(st);
	assert_int_equal(lmdb_store_apply_start_on(&loop, st, "test", put, 1, 5000, applied_cb, &a), 0);
	lmdb_store_close(st);           /* the writer's reference is the last */
	run_until(&loop, &a.calls);
	assert_int_equal(a.rc, 0);
	uv_run(&loop, UV_RUN_DEFAULT);  /* the writer's handles closed: it is freed */
	assert_int_equal(syncs_wait(1), 1);
	pthread_mutex_lock(&syncs.mu);
	int on_loop = syncs.on_test_thread;
	pthread_mutex_unlock(&syncs.mu);
	assert_int_equal(on_loop, 0);
	for (int i = 0; i < 3000 && lmdb_peer_lock_fds(d.path) > 0; i++)
		usleep(10 * 1000);      /* the close after the sync (bounded wait for it) */
	assert_int_equal(lmdb_peer_lock_fds(d.path), 0);
	assert_null(lmdb_store_open_existing(d.path));
	/* written before it closed */
	st = lmdb_store_open(d.path, 1 << 20);
	assert_non_null(st);
	assert_string_equal(get_str(st, "v", buf, sizeof(buf)), "1");
	syncs_reset();
	lmdb_store_close_async(st);
	assert_int_equal(syncs_wait(1), 1);
	pthread_mutex_lock(&syncs.mu);
	on_loop = syncs.on_test_thread;
	pthread_mutex_unlock(&syncs.mu);
	assert_int_equal(on_loop, 0);
	for (int i = 0; i < 3000 && lmdb_peer_lock_fds(d.path) > 0; i++)
		usleep(10 * 1000);
	assert_int_equal(lmdb_peer_lock_fds(d.path), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	dir_remove(&d);
	alarm(0);
}

/* The read pool's thread runs 300 ms after it is started (a loaded machine: here its start
 * is delayed): the open waits for it — the 0.1 s bound is for another process holding the
 * reader table's mutex, counted from when the thread went into LMDB. Before, the open failed
 * after 0.1 s with "LMDB reader table locked" (test_bayes_db's round trip failed so once in
 * a loaded ctest run: the reopen's new thread had not run yet). */
static void test_reader_thread_late(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	char buf[16];
	double t0;

	(void)state;
	dir_make(&d);
	lmdb_store_close(open_with_a(d.path));
	start_delay_ms = 300;
	t0 = now_s();
	st = lmdb_store_open(d.path, 1 << 20);
	start_delay_ms = 0;
	assert_non_null(st);
	assert_true(now_s() - t0 >= 0.25);       /* it did wait for the late thread */
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	lmdb_store_close(st);
	dir_remove(&d);
}

/* A process killed with every read slot taken: the stale slots are cleared at open. */
static void test_readers_stale(void **state)
{
	struct dir d;
	struct lmdb_store *st;
	char buf[64];
	int rel_fill, rel_open;
	pid_t filler, opener;

	(void)state;
	alarm(30);
	dir_make(&d);
	opener = lmdb_peer_start(d.path, LMDB_PEER_OPEN, &rel_open);
	filler = lmdb_peer_start(d.path, LMDB_PEER_READERS, &rel_fill);
	lmdb_peer_end(filler, rel_fill, true);
	st = open_with_a(d.path);
	assert_string_equal(get_str(st, "a", buf, sizeof(buf)), "one");
	lmdb_store_close(st);
	lmdb_peer_end(opener, rel_open, false);
	dir_remove(&d);
	alarm(0);
}

int main(void)
{
	setenv("UV_THREADPOOL_SIZE", "4", 1);      /* libuv's default: what the daemon has */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_shared),
		cmocka_unit_test(test_sync_writer),
		cmocka_unit_test(test_merge_refused_without_fn),
		cmocka_unit_test(test_get_many),
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_map_full_evicts),
		cmocka_unit_test(test_map_full_writers_evict_once),
		cmocka_unit_test(test_evict_held_by_record_mark),
		cmocka_unit_test(test_rank_overwrite),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_loop_writer),
		cmocka_unit_test(test_free_keeps_order),
		cmocka_unit_test(test_queue_bound),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_open_while_write_locked),
		cmocka_unit_test(test_reader_table_locked),
		cmocka_unit_test(test_readers_stale),
		cmocka_unit_test(test_reader_thread_late),
		cmocka_unit_test(test_write_lock_leaves_pool),
		cmocka_unit_test(test_free_while_write_locked),
		cmocka_unit_test(test_apply_here),
		cmocka_unit_test(test_apply_start_bounded),
		cmocka_unit_test(test_apply_merge),
		cmocka_unit_test(test_apply_start_opens_none),
		cmocka_unit_test(test_last_close_off_loop),
		cmocka_unit_test(test_disk_full_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
