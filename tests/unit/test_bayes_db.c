/* test_bayes_db.c — the classifier's stores (memory and LMDB; Redis runs in the integration
 * test): learning with the seen-db in one transaction, batched lookups, totals, touch,
 * expiry by age and by the size bound (a bulk learn's tokens tied in one second too), an LMDB
 * round trip across close/open, and a write while another process holds LMDB's write lock
 * (a bounded wait, then -1; reads go on meanwhile); closed and opened again while the writer
 * waits (one environment); the classifier and a pass cache's lmdb_store on one directory
 * (one environment too); another process holding the reader table's mutex, or killed
 * with every read slot taken (lmdb_peer.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lmdb.h>
#include <signal.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rules/bayes_db.h"
#include "store/lmdb_rtx.h"
#include "store/lmdb_store.h"
#include "lmdb_peer.h"
#include "stderr_capture.h"

static char lmdb_spec[256];

static void id_of(int n, uint8_t id[BAYES_ID_LEN])
{
	memset(id, 0, BAYES_ID_LEN);
	id[0] = (uint8_t)n;
	id[19] = 0x5a;
}

static void check_counts(struct bayes_db *db, uint64_t k, uint32_t s, uint32_t h)
{
	struct bayes_counts c;

	assert_int_equal(bayes_db_lookup(db, &k, 1, &c, NULL), 0);
	assert_int_equal(c.spam, s);
	assert_int_equal(c.ham, h);
}

static void check_totals(struct bayes_db *db, uint64_t ns, uint64_t nh, uint64_t nt)
{
	struct bayes_totals t;

	assert_int_equal(bayes_db_totals(db, &t), 0);
	assert_int_equal(t.nspam, ns);
	assert_int_equal(t.nham, nh);
	assert_int_equal(t.ntokens, nt);
}

/* The same script on every store. */
static void run_store(const char *spec)
{
	char err[256];
	struct bayes_db *db = bayes_db_open(spec, NULL, err, sizeof(err));
	const uint64_t k1[] = { 11, 12, 13 }, k2[] = { 13, 14 };
	uint8_t id[BAYES_ID_LEN];
	enum bayes_learn_result res;
	struct bayes_counts c[4];
	struct bayes_totals t;
	uint64_t removed;
	const uint64_t all[] = { 11, 12, 13, 14 };

	assert_non_null(db);
	id_of(1, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, k1, 3, 1000, &res), 0);
	assert_int_equal(res, BAYES_LEARNED);
	check_totals(db, 1, 0, 3);
	check_counts(db, 12, 1, 0);
	/* twice as the same class: nothing changes */
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, k1, 3, 1100, &res), 0);
	assert_int_equal(res, BAYES_ALREADY);
	check_totals(db, 1, 0, 3);
	check_counts(db, 12, 1, 0);
	/* as the other class: moved */
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, k1, 3, 1500, &res), 0);
	assert_int_equal(res, BAYES_MOVED);
	check_totals(db, 0, 1, 3);
	check_counts(db, 12, 0, 1);
	/* learned once (autolearn, SA's no_relearn): what was learned as the other class stays */
	assert_int_equal(bayes_db_learn_once(db, id, BAYES_SPAM, k1, 3, 1600, &res), 0);
	assert_int_equal(res, BAYES_OPPOSITE);
	check_totals(db, 0, 1, 3);
	check_counts(db, 12, 0, 1);
	assert_int_equal(bayes_db_learn_once(db, id, BAYES_HAM, k1, 3, 1600, &res), 0);
	assert_int_equal(res, BAYES_ALREADY);
	check_totals(db, 0, 1, 3);
	id_of(2, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, k2, 2, 2000, &res), 0);
	check_totals(db, 0, 2, 4);
	/* one batched read, totals consistent with it */
	assert_int_equal(bayes_db_lookup(db, all, 4, c, &t), 0);
	assert_int_equal(c[0].ham, 1);
	assert_int_equal(c[2].ham, 2);
	assert_int_equal(c[2].atime, 2000);
	assert_int_equal(c[0].atime, 1500);
	assert_int_equal(t.nham, 2);
	/* an unknown token reads as zeros */
	{
		const uint64_t u = 999;

		assert_int_equal(bayes_db_lookup(db, &u, 1, c, NULL), 0);
		assert_int_equal(c[0].spam + c[0].ham, 0);
	}
	/* touch keeps token 11 young */
	assert_int_equal(bayes_db_touch(db, &k1[0], 1, 2500), 0);
	/* age: unused for 600 s at 2600 -> atime < 2000 goes (token 12 only) */
	assert_int_equal(bayes_db_expire(db, 0, 600, 2600, &removed), 0);
	assert_int_equal(removed, 1);
	check_counts(db, 12, 0, 0);
	check_counts(db, 11, 0, 1);
	check_totals(db, 0, 2, 3);
	/* size bound 2 over 3 tokens: one goes, one of the two tied at 2000 */
	assert_int_equal(bayes_db_expire(db, 2, 0, 2600, &removed), 0);
	assert_int_equal(removed, 1);
	check_counts(db, 11, 0, 1);      /* atime 2500: the youngest stays */
	check_totals(db, 0, 2, 2);
	bayes_db_close(db);
}

/* A bulk learn (`mxgate learn` of a big folder) gives thousands of tokens the same atime:
 * the size bound must still keep 3/4 of max_tokens, not empty the store. */
static void run_bulk_expire(const char *spec)
{
	char err[256];
	struct bayes_db *db = bayes_db_open(spec, NULL, err, sizeof(err));
	uint64_t k[40], removed;
	uint8_t id[BAYES_ID_LEN];
	enum bayes_learn_result res;

	assert_non_null(db);
	for (int i = 0; i < 40; i++)
		k[i] = 1000 + (uint64_t)i;
	id_of(7, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, k, 10, 5000, &res), 0);
	id_of(8, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, k + 10, 30, 6000, &res), 0);
	/* bound 20, keep 15: the 10 of 5000 and 15 of the 30 tied at 6000 go */
	assert_int_equal(bayes_db_expire(db, 20, 0, 6000, &removed), 0);
	assert_int_equal(removed, 25);
	check_totals(db, 2, 0, 15);
	check_counts(db, 1000, 0, 0);
	/* all tied: keep 15 of 30 */
	for (int i = 0; i < 15; i++)
		k[i] = 2000 + (uint64_t)i;
	id_of(9, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, k, 15, 6000, &res), 0);
	check_totals(db, 2, 1, 30);
	assert_int_equal(bayes_db_expire(db, 20, 0, 6000, &removed), 0);
	assert_int_equal(removed, 15);
	check_totals(db, 2, 1, 15);
	bayes_db_close(db);
}

static void test_memory_bulk(void **state)
{
	run_bulk_expire("memory");
}

static void test_lmdb_bulk(void **state)
{
	run_bulk_expire(lmdb_spec);
}

static void test_memory(void **state)
{
	run_store("memory");
}

static void test_lmdb(void **state)
{
	run_store(lmdb_spec);
}

static void test_lmdb_round_trip(void **state)
{
	char err[256];
	struct bayes_db *db = bayes_db_open(lmdb_spec, NULL, err, sizeof(err)), *db2;
	uint8_t id[BAYES_ID_LEN];
	const uint64_t k = 77;
	enum bayes_learn_result res;

	assert_non_null(db);
	/* a second open in the process shares the environment */
	db2 = bayes_db_open(lmdb_spec, NULL, err, sizeof(err));
	assert_non_null(db2);
	id_of(9, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 3000, &res), 0);
	check_counts(db2, 77, 1, 0);
	bayes_db_close(db);
	bayes_db_close(db2);
	db = bayes_db_open(lmdb_spec, NULL, err, sizeof(err));
	assert_non_null(db);
	check_counts(db, 77, 1, 0);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 3100, &res), 0);
	assert_int_equal(res, BAYES_ALREADY);        /* the seen-db persisted */
	bayes_db_close(db);
}

/* This process's descriptors on path (LMDB opens lock.mdb once per environment). */
static int fds_on(const char *path)
{
	char link[300], to[512];
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(dir);
	while ((d = readdir(dir)) != NULL) {
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", d->d_name);
		len = readlink(link, to, sizeof(to) - 1);
		if (len <= 0)
			continue;
		to[len] = '\0';
		n += strcmp(to, path) == 0;
	}
	closedir(dir);
	return n;
}

/* The classifier and an lmdb_store user (a pass cache) on one directory share the process's
 * one environment (store/lmdb_env.h): one descriptor on lock.mdb, each sees the other's
 * commits, and either outlives the other's close. Failed on main's code (each module kept
 * its own list: two environments, two descriptors on lock.mdb). */
static void test_lmdb_shared_with_store(void **state)
{
	char err[256], lock[300], v[64];
	const char *dir = lmdb_spec + 5;
	const struct lmdb_store_change ch = { "pc:dnsbl:192.0.2.1", "x", 1 };
	struct bayes_db *db = bayes_db_open(lmdb_spec, NULL, err, sizeof(err));
	struct lmdb_store *st;
	uint8_t id[BAYES_ID_LEN];
	const uint64_t k = 5;
	size_t len;

	assert_non_null(db);
	st = lmdb_store_open(dir, 0);
	assert_non_null(st);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
	assert_int_equal(fds_on(lock), 1);
	id_of(3, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, &k, 1, 4000, NULL), 0);
	assert_int_equal(lmdb_store_get(st, "bm:totals", 9, v, sizeof(v), &len), 1);
	assert_int_equal(len, 24);
	bayes_db_close(db);
	/* the store goes on alone, and the classifier comes back to its records and the store's */
	assert_int_equal(lmdb_store_apply(dir, 0, "test", &ch, 1), 0);
	db = bayes_db_open(lmdb_spec, NULL, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(fds_on(lock), 1);
	check_counts(db, 5, 0, 1);
	check_totals(db, 0, 1, 1);
	lmdb_store_close(st);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 4100, NULL), 0);
	check_counts(db, 5, 1, 0);
	st = lmdb_store_open(dir, 0);
	assert_non_null(st);
	assert_int_equal(lmdb_store_get(st, ch.key, strlen(ch.key), v, sizeof(v), &len), 1);
	lmdb_store_close(st);
	bayes_db_close(db);
	/* The last close is the writer thread's when it is inside a job (the atime refresh the
	 * lookups above queued: store/lmdb_wthr.h, "Closing"): the descriptor goes when the job
	 * ends, so wait for it (bounded) rather than look once. A clean-clone CI run saw 1 here. */
	for (int i = 0; i < 500 && fds_on(lock) != 0; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	assert_int_equal(fds_on(lock), 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_lmdb_lock_held(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 300 };
	char err[256];
	struct bayes_db *db;
	uint8_t id[BAYES_ID_LEN];
	const uint64_t k = 5;
	enum bayes_learn_result res;
	int release;
	double t0, dt;
	pid_t pid;

	/* on a wait without a bound this test never ends: fail it rather than ctest's timeout */
	alarm(30);
	/* learn something first, so the lookup below has a token to read */
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	id_of(1, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 1000, &res), 0);
	bayes_db_close(db);

	pid = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_WRITE, &release);
	/* opening needs no write lock */
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	/* reads go on while another process writes */
	check_counts(db, 5, 1, 0);
	/* a learn waits at most timeout_ms, then fails */
	id_of(2, id);
	t0 = now_s();
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, &k, 1, 1001, &res), -1);
	dt = now_s() - t0;
	assert_true(dt >= 0.25);
	assert_true(dt < 5.0);
	/* a scan's atime refresh is optional: it waits less than the timeout */
	t0 = now_s();
	assert_int_equal(bayes_db_touch(db, &k, 1, 2000000), -1);
	dt = now_s() - t0;
	assert_true(dt >= 0.09);
	assert_true(dt < 5.0);
	check_counts(db, 5, 1, 0);
	/* the lock is free again: the next learn goes through */
	lmdb_peer_end(pid, release, false);
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, &k, 1, 1002, &res), 0);
	assert_int_equal(res, BAYES_LEARNED);
	check_counts(db, 5, 1, 1);

	/* closed while the writer still waits for the lock: the writer frees it later */
	pid = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_WRITE, &release);
	id_of(3, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_HAM, &k, 1, 1003, &res), -1);
	bayes_db_close(db);
	lmdb_peer_end(pid, release, false);
	usleep(200000);                        /* let it free the environment (LeakSanitizer) */
	alarm(0);
}

/* Closed while its writer waits for the write lock, then opened again (a reload that drops
 * the store and one that brings it back): the environment still closing is taken back, not
 * a second one opened on the same files (LMDB: closing either drops the other's locks). */
static void test_lmdb_reopen_while_writer_waits(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 200 };
	char err[256];
	struct bayes_db *db;
	uint8_t id[BAYES_ID_LEN];
	const uint64_t k = 5;
	enum bayes_learn_result res;
	int release;
	pid_t pid;

	alarm(30);
	pid = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_WRITE, &release);
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	id_of(1, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 1000, &res), -1);
	bayes_db_close(db);                    /* its writer still waits in mdb_txn_begin */
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(lmdb_peer_lock_fds(lmdb_spec + 5), 1);
	bayes_db_close(db);
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(lmdb_peer_lock_fds(lmdb_spec + 5), 1);
	/* the lock comes: the environment taken back writes */
	lmdb_peer_end(pid, release, false);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 1001, &res), 0);
	check_counts(db, 5, 1, 0);
	bayes_db_close(db);
	/* closed while waiting, and nobody takes it back: freed when the lock comes */
	pid = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_WRITE, &release);
	db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(db);
	id_of(2, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 1002, &res), -1);
	bayes_db_close(db);
	lmdb_peer_end(pid, release, false);
	for (int i = 0; i < 100 && lmdb_peer_lock_fds(lmdb_spec + 5) > 0; i++)
		usleep(10000);
	assert_int_equal(lmdb_peer_lock_fds(lmdb_spec + 5), 0);
	alarm(0);
}

/* Opens the LMDB store and learns token 5 as spam: where the reader-table tests start. */
static struct bayes_db *open_learned(void)
{
	struct bayes_db_options o = { .timeout_ms = 200 };
	char err[256];
	struct bayes_db *db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	uint8_t id[BAYES_ID_LEN];
	const uint64_t k = 5;
	enum bayes_learn_result res;

	assert_non_null(db);
	id_of(1, id);
	assert_int_equal(bayes_db_learn(db, id, BAYES_SPAM, &k, 1, 1000, &res), 0);
	check_counts(db, 5, 1, 0);
	return db;
}

/* Another process holds the reader table's mutex (stopped while it took a read slot): reads
 * that have a slot go on, one that needs a new slot fails within the bound — and at once
 * while the slot is still being made — rather than wait for ever. */
static void test_lmdb_reader_table_locked(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 200 };
	char err[256];
	struct bayes_db *db;
	int release, rel_open;
	pid_t pid, opener;
	uint64_t waits;
	double t0;

	alarm(30);                             /* the wait without a bound: fail, not hang */
	/* another process keeps the environment open: no opener resets the lock file */
	opener = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_OPEN, &rel_open);
	db = open_learned();
	pid = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_RMUTEX, &release);
	/* the slot of the last read is kept and renewed: no lock to take */
	check_counts(db, 5, 1, 0);
	check_counts(db, 5, 1, 0);
	bayes_db_close(db);
	/* a new environment needs a new slot: the open fails, the holder still holding (it goes
	 * only below: an open that waited for the mutex would wait for ever, alarm(30) fails it),
	 * and says why; by the wall clock its bound (LMDB_RTX_WAIT_MS by the pool thread's clock,
	 * up to 2 s more for that thread to be scheduled) says nothing on a loaded machine */
	assert_null(bayes_db_open(lmdb_spec, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "reader table"));
	/* and again: the slot is still being made, it fails at once, no wait for the pool's
	 * thread (counted, not timed) */
	waits = lmdb_rtx_waits();
	assert_null(bayes_db_open(lmdb_spec, &o, err, sizeof(err)));
	assert_int_equal(lmdb_rtx_waits(), waits);
	assert_int_equal(lmdb_peer_lock_fds(lmdb_spec + 5), 1);
	/* the holder goes (LMDB's robust mutex): once the pool's thread has its slot, the
	 * store opens and reads */
	lmdb_peer_end(pid, release, false);
	t0 = now_s();
	while ((db = bayes_db_open(lmdb_spec, &o, err, sizeof(err))) == NULL && now_s() - t0 < 10)
		usleep(20000);
	assert_non_null(db);
	check_counts(db, 5, 1, 0);
	bayes_db_close(db);
	lmdb_peer_end(opener, rel_open, false);
	alarm(0);
}

/* A process killed while it held every read slot (1022): its stale slots are cleared
 * (mdb_reader_check) and the store opens and reads, instead of MDB_READERS_FULL until the
 * last process closes the directory. */
static void test_lmdb_readers_stale(void **state)
{
	int rel_fill, rel_open;
	pid_t filler, opener;
	struct bayes_db *db;

	alarm(30);
	opener = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_OPEN, &rel_open);
	filler = lmdb_peer_start(lmdb_spec + 5, LMDB_PEER_READERS, &rel_fill);
	lmdb_peer_end(filler, rel_fill, true);
	db = open_learned();
	bayes_db_close(db);
	lmdb_peer_end(opener, rel_open, false);
	alarm(0);
}

/* A directory shared by the store and the classifier, opened by the store first: a classifier
 * read that fails (it needs a new read slot while another process holds the reader table's
 * mutex) is logged as the classifier's, event=bayes_error — the reads are the one pool's,
 * which logged every failure as its first opener's (event=lmdb_error) before. */
struct shared_read { struct bayes_db *db; int rc, calls; };

static bool shared_read_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct shared_read *r = arg;
	struct bayes_totals tot;

	(void)key, (void)klen, (void)val, (void)vlen;
	r->calls++;
	/* the store's read holds the kept slot: this one needs a new slot */
	r->rc = bayes_db_totals(r->db, &tot);
	return false;
}

static void test_lmdb_shared_read_error_is_callers(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 200 };
	const char *dir = lmdb_spec + 5;
	struct lmdb_store_change ch = { "x:1", "1", 1 };
	struct shared_read r = { NULL, 0, 0 };
	struct stderr_capture cap;
	char err[256], text[8192];
	struct lmdb_store *st;
	int release, rel_open;
	pid_t pid, opener;

	(void)state;
	alarm(30);
	opener = lmdb_peer_start(dir, LMDB_PEER_OPEN, &rel_open);
	assert_int_equal(lmdb_store_apply(dir, 0, "test", &ch, 1), 0);
	st = lmdb_store_open(dir, 0);          /* the store first: the environment is its */
	assert_non_null(st);
	r.db = bayes_db_open(lmdb_spec, &o, err, sizeof(err));
	assert_non_null(r.db);
	pid = lmdb_peer_start(dir, LMDB_PEER_RMUTEX, &release);
	stderr_capture_start(&cap);
	assert_int_equal(lmdb_store_foreach(st, "x:", shared_read_cb, &r), 0);
	stderr_capture_end(&cap, text, sizeof(text));
	lmdb_peer_end(pid, release, false);
	bayes_db_close(r.db);
	lmdb_store_close(st);
	lmdb_peer_end(opener, rel_open, false);
	alarm(0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, -1);
	if (strstr(text, "event=bayes_error") == NULL || strstr(text, "reader table locked") == NULL ||
	    strstr(text, "event=lmdb_error") != NULL)
		fail_msg("the classifier's failed read is not logged as the classifier's:\n%s", text);
}

static void test_cutoff(void **state)
{
	uint32_t a[] = { 5, 1, 3, 2, 4 }, b[] = { 7, 7, 7, 1 }, c[] = { 1, 2 };

	size_t ties;

	assert_int_equal(bayes_db_expire_cutoff(a, 5, 2, &ties), 4);   /* keeps 4 and 5 */
	assert_int_equal(ties, 0);
	assert_int_equal(bayes_db_expire_cutoff(b, 4, 2, &ties), 7);   /* 1 and one 7 go */
	assert_int_equal(ties, 1);
	assert_int_equal(bayes_db_expire_cutoff(c, 2, 5, &ties), 0);   /* under the bound */
	assert_int_equal(ties, 0);
}

static void test_bad_specs(void **state)
{
	char err[256];

	assert_null(bayes_db_open("nonsense", NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "store"));
	/* a Redis store opens without a connect: test_bayes_redis.c */
	assert_null(bayes_db_open("redis://", NULL, err, sizeof(err)));
	assert_null(bayes_db_open("lmdb:/proc/no/such/dir", NULL, err, sizeof(err)));
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/test_bayes_db.XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		return -1;
	snprintf(lmdb_spec, sizeof(lmdb_spec), "lmdb:%s/a", tmpl);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strrchr(lmdb_spec, '/') - lmdb_spec - 5),
	    lmdb_spec + 5);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory),
		cmocka_unit_test_setup_teardown(test_lmdb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_shared_with_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_lock_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_reopen_while_writer_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_reader_table_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_readers_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lmdb_shared_read_error_is_callers, setup, teardown),
		cmocka_unit_test(test_memory_bulk),
		cmocka_unit_test_setup_teardown(test_lmdb_bulk, setup, teardown),
		cmocka_unit_test(test_cutoff),
		cmocka_unit_test(test_bad_specs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
