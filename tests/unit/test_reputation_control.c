/* test_reputation_control.c — `flush reputation IP` with no worker holding the store (none
 * started here): outside the drain it says so (an init failure, event=module_error); during
 * the drain (the last worker just ended) the main loop does the flush and the records go:
 * LMDB's with its own writer, Redis's (a real redis-server) on its own connection, with the
 * flush time the workers leave; a Redis that cannot be reached is said as such. Before, a
 * Redis flush then answered "mxgate is shutting down" and the records stayed. The map the
 * last worker closed is opened on a thread of its own, never on the loop: with another
 * process holding lock.mdb's lock the verb answers after 5 s, nothing flushed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_ask.h"
#include "lmdb_peer.h"
#include "redis_peer.h"
#include "filters/reputation.h"
#include "proxy/config.h"
#include "proxy/control.h"
#include "proxy/ops.h"
#include "proxy/worker.h"
#include "store/lmdb_store.h"

static struct shared_gen gen;
static uv_loop_t loop;
static char dir[] = "/tmp/mxgate-repctl-XXXXXX";

static struct shared_gen *fake_current(void)
{
	return &gen;
}

static struct mx_config *make_config(const char *store)
{
	char text[700];
	struct mx_config *cfg = NULL;

	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\nreputation: { store: \"%s\" }\n", store);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &gen.cfg, stderr), 0);
	cfg = gen.cfg;
	return cfg;
}

/* Runs line through the control verbs on the loop until it is answered. */
static void ask(const char *line, struct ctl_answer *a)
{
	ctl_ask_start(&loop, line, a);
	for (int i = 0; i < 100 && !a->done; i++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(a->done);
}

/* Writes a record under key in the map at dir. */
static void seed(const char *key)
{
	struct lmdb_store *st = lmdb_store_open(dir, 0);
	struct lmdb_writer_config wc = { .name = "test" };
	struct lmdb_writer *w;
	struct reputation_counts rc = { .c = { 3 }, .t_ms = 1 };
	size_t len;

	assert_non_null(st);
	w = lmdb_writer_new(st, NULL, &wc);
	assert_non_null(w);
	lmdb_writer_put(w, key, strlen(key), &rc, sizeof(rc));
	assert_true(lmdb_writer_flush(w, NULL, NULL) >= 0);
	lmdb_writer_free(w);
	assert_int_equal(lmdb_store_get(st, key, strlen(key), &rc, sizeof(rc), &len), 1);
	lmdb_store_close(st);
}

static int held(const char *key)
{
	struct lmdb_store *st = lmdb_store_open(dir, 0);
	struct reputation_counts rc;
	size_t len;
	int r;

	assert_non_null(st);
	r = lmdb_store_get(st, key, strlen(key), &rc, sizeof(rc), &len);
	lmdb_store_close(st);
	return r;
}

static void test_no_worker(void **state)
{
	static const struct ops_host host = { .current = fake_current };
	char store[100];
	struct ctl_answer a;
	int release;
	pid_t peer;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(store, sizeof(store), "lmdb:%s", dir);
	uv_loop_init(&loop);
	make_config(store);
	ops_start(&loop, &host);
	seed("ip:192.0.2.1");
	seed("net:192.0.2.0/24");

	/* in service: no worker holds the store only when every one failed to open it */
	ask("flush reputation 192.0.2.1", &a);
	assert_int_equal(a.rc, -1);
	assert_non_null(strstr(a.text, "no worker holds the reputation store"));
	assert_int_equal(held("ip:192.0.2.1"), 1);

	/* the drain's end: the last worker has freed its writer; the main loop flushes */
	ops_set_stopping();
	ask("flush reputation 192.0.2.1", &a);
	if (a.rc != 0 || strstr(a.text, "reputation of 192.0.2.1 flushed: 2 records removed") == NULL)
		fail_msg("during the drain with no worker left: rc %d, \"%s\"", a.rc, a.text);
	assert_int_equal(held("ip:192.0.2.1"), 0);
	assert_int_equal(held("net:192.0.2.0/24"), 0);
	ask("flush reputation 192.0.2.1 --json", &a);
	assert_int_equal(a.rc, 0);
	assert_non_null(strstr(a.text, "\"draining\":true"));

	/* another process holds lock.mdb's lock (in life one stopped inside its own open):
	 * mdb_env_open waits as long; the loop does not (on main's reputation_control.c it
	 * waited in lmdb_store_open, the alarm ended the test) */
	seed("ip:192.0.2.1");
	/* the verbs' environment closed: the answered verb's handles closed on the loop (it
	 * holds its map until then), its writer's closer on its way */
	for (int i = 0; i < 1000 && lmdb_peer_lock_fds(dir) > 0; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(10 * 1000);
	}
	assert_int_equal(lmdb_peer_lock_fds(dir), 0);
	peer = lmdb_peer_start(dir, LMDB_PEER_EXCL, &release);
	alarm(60);
	ask("flush reputation 192.0.2.1", &a);
	alarm(0);
	if (a.rc != -1 || strstr(a.text, "nothing flushed") == NULL)
		fail_msg("the map not opened within 5 s: rc %d, \"%s\"", a.rc, a.text);
	lmdb_peer_end(peer, release, false);
	assert_int_equal(held("ip:192.0.2.1"), 1);

	/* Redis not reachable: said, nothing flushed */
	config_free(gen.cfg);
	make_config("redis://127.0.0.1:1");
	ask("flush reputation 192.0.2.1", &a);
	assert_int_equal(a.rc, -1);
	if (strstr(a.text, "mxgate is shutting down and Redis could not be reached") == NULL ||
	    strstr(a.text, "nothing flushed") == NULL)
		fail_msg("Redis unreachable, no worker left: \"%s\"", a.text);

	/* Redis: the main loop's own connection (was: "no worker is left to reach the store") */
	if (redis_peer_available()) {
		int port = redis_peer_hold_port();
		pid_t pid = redis_peer_start(port, dir);
		redisContext *rc = redisConnect("127.0.0.1", port);
		redisReply *r;

		assert_true(rc && !rc->err);
		freeReplyObject(redisCommand(rc, "HSET mxgate:rep:ip:192.0.2.1 a 3"));
		freeReplyObject(redisCommand(rc, "HSET mxgate:rep:net:192.0.2.0/24 a 3"));
		config_free(gen.cfg);
		snprintf(store, sizeof(store), "redis://127.0.0.1:%d", port);
		make_config(store);
		ask("flush reputation 192.0.2.1", &a);
		if (a.rc != 0 || strstr(a.text, "reputation of 192.0.2.1 flushed: 2 records removed") == NULL)
			fail_msg("Redis during the drain with no worker left: rc %d, \"%s\"", a.rc, a.text);
		r = redisCommand(rc, "EXISTS mxgate:rep:ip:192.0.2.1 mxgate:rep:net:192.0.2.0/24");
		assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
		freeReplyObject(r);
		/* the flush time, so another node's queued outcome from before is not added back */
		r = redisCommand(rc, "PTTL mxgate:repdel:ip:192.0.2.1");
		assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0);
		freeReplyObject(r);
		ask("flush reputation 192.0.2.1 --json", &a);
		assert_int_equal(a.rc, 0);
		assert_non_null(strstr(a.text, "\"entries\":0"));
		assert_non_null(strstr(a.text, "\"draining\":true"));
		redisFree(rc);
		redis_peer_kill(pid, SIGKILL);
	}

	ops_stop();
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(gen.cfg);
	snprintf(store, sizeof(store), "rm -rf %s", dir);
	assert_int_equal(system(store), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_worker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
