/* test_greylist_control.c — `greylist disallow|untrap IP` on LMDB with no worker holding the
 * store (none started here: the daemon before its workers, or at the drain's end) but its
 * environment open in the process (here the test's reference: the verb reads and writes only
 * a map open here, never one it opens on the main loop; in the daemon its own reference,
 * taken before the last worker closed theirs, or another module's on the directory), while
 * another process writes the client's record between the verb's read and its write (it holds
 * LMDB's write lock with its put when the verb asks, and commits as it lets go: the verb's
 * batch, waiting for the lock in the directory's writer thread, comes after it). The verb
 * read the record in the state it deletes; the other process wrote the other state. Before,
 * the verb's write was a plain delete there (the condition was checked only by the workers'
 * batches) and removed the other's record: disallow deleted a trap, untrap an allow. Now the
 * condition goes with the delete (greylist_ip_del_merge, in the batch's write transaction),
 * the record stays, and the answer says what is there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_ask.h"
#include "greylist_map.h"
#include "lmdb_peer.h"
#include "filters/greylist.h"
#include "proxy/config.h"
#include "proxy/control.h"
#include "proxy/ops.h"
#include "proxy/worker.h"
#include "store/lmdb_store.h"

static struct shared_gen gen;
static uv_loop_t loop;
static char dir[] = "/tmp/mxgate-glctl-XXXXXX";

static struct shared_gen *fake_current(void)
{
	return &gen;
}

static void keep_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until a is answered (bounded: 20 s). */
static void wait_answer(struct ctl_answer *a)
{
	uv_timer_t keep;

	uv_timer_init(&loop, &keep);
	uv_timer_start(&keep, keep_cb, 1, 1);
	for (int i = 0; i < 20000 && !a->done; i++)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&keep, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_true(a->done);
}

static const char *const state_names[] = { "none", "trapped", "allowed" };

struct row {
	const char *label;
	const char *verb;
	int map, other;         /* the record the verb reads; the one the other process writes */
	const char *says;       /* in the answer */
};

static void test_no_worker_verb_after_other_write(void **state)
{
	static const struct ops_host host = { .current = fake_current };
	static const struct row rows[] = {
		{ "disallow, a trap written meanwhile", "disallow", GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED,
		  "trapped for" },
		{ "untrap, an allow written meanwhile", "untrap", GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED,
		  "allowed for" },
		{ "disallow, nothing written meanwhile", "disallow", GREYLIST_IP_ALLOWED, GREYLIST_IP_NONE,
		  "record deleted (was allowed)" },
	};
	struct lmdb_store *held;
	char text[400];
	int wrong = 0;

	(void)state;
	(void)lmdb_peer_lock_fds;       /* lmdb_peer.h's, not used here */
	(void)lmdb_peer_start;
	alarm(60);
	assert_non_null(mkdtemp(dir));
	uv_loop_init(&loop);
	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\ngreylist: { enabled: true, store: \"lmdb:%s\" }\n", dir);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &gen.cfg, stderr), 0);
	ops_start(&loop, &host);
	held = lmdb_store_open(dir, 0);
	assert_non_null(held);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		char ip[32], key[64], line[100];
		unsigned char seed[GREYLIST_RECORD_LEN], other[GREYLIST_RECORD_LEN];
		uint64_t now = (uint64_t)time(NULL) * 1000;
		struct lmdb_store_change ch = { key, seed, sizeof(seed) };
		struct lmdb_peer_put put = { key, other, sizeof(other) };
		struct ctl_answer a;
		int release, got;
		pid_t peer;

		snprintf(ip, sizeof(ip), "198.18.5.%zu", 10 + i);
		snprintf(key, sizeof(key), "%s%s", GREYLIST_IP_LMDB, ip);
		greylist_ip_encode(r->map, now - 1000, now + 3600000, seed);
		assert_int_equal(lmdb_store_apply(dir, 0, "test", &ch, 1), 0);
		greylist_ip_encode(r->other, now, now + 3600000, other);
		peer = lmdb_peer_start_put(dir, LMDB_PEER_WRITE, r->other != GREYLIST_IP_NONE ? &put : NULL,
		    &release);
		snprintf(line, sizeof(line), "greylist %s %s", r->verb, ip);
		/* the verb read the map's record; its write waits for the lock */
		assert_int_equal(ctl_ask_start(&loop, line, &a), 1);
		lmdb_peer_end(peer, release, false);
		wait_answer(&a);
		got = greylist_map_state(dir, key, (uint64_t)time(NULL) * 1000);
		if (a.rc != 0 || got != (r->other != GREYLIST_IP_NONE ? r->other : GREYLIST_IP_NONE) ||
		    strstr(a.text, r->says) == NULL) {
			print_error("%s: rc %d, the record %s (want %s), answer \"%s\" (want \"%s\" in it)\n",
			    r->label, a.rc, state_names[got], state_names[r->other], a.text, r->says);
			wrong++;
		}
	}
	/* the map closed (the last reference gone): the verb opens none on the main loop, it
	 * answers at once naming the store (before, it opened the directory there) */
	assert_true(lmdb_store_wait_written(5000));
	lmdb_store_close(held);
	for (int i = 0; i < 3000 && lmdb_peer_lock_fds(dir) > 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);   /* the verbs' writers freed, their closes done */
		usleep(10 * 1000);
	}
	assert_int_equal(lmdb_peer_lock_fds(dir), 0);
	{
		struct ctl_answer a;
		int rc = ctl_ask_start(&loop, "greylist trap 198.18.5.99", &a);

		if (rc == 1)
			wait_answer(&a);
		if (rc == 1 || a.rc == 0 || strstr(a.text, "not open in this process") == NULL) {
			print_error("trap with the map closed: rc %d/%d, answer \"%s\" (want it at once, "
			    "\"not open in this process\")\n", rc, a.rc, a.text);
			wrong++;
		}
	}
	ops_stop();
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(lmdb_store_wait_written(5000));
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(gen.cfg);
	snprintf(text, sizeof(text), "rm -rf %s", dir);
	assert_int_equal(system(text), 0);
	alarm(0);
	assert_int_equal(wrong, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_worker_verb_after_other_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
