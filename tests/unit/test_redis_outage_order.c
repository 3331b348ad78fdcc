/* test_redis_outage_order.c — after an outage (not a store's first connect) the writes queued
 * meanwhile and a read issued once the store is back leave in the order they were issued:
 * 100 SETs of one key queued while the real redis-server is down, a GET from the up callback
 * (right after the PING's answer, the queue still behind the 64-write window) reads the last
 * one. The code before kept that order for a first connect only (start_seq), and the GET went
 * out at once behind the window's first 64 SETs: it read v64. Waits are bounded polls (hang
 * guards), no timings. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "redis_peer.h"
#include "store/redis.h"
#include "store/store_stats.h"

static char redis_dir[128];
static int skipped;
static pid_t redis_pid;             /* the server started, for the teardown */

/* Kills the server and removes its files, also after a failed assertion. */
static int outage_teardown(void **state)
{
	char cmd[256];

	(void)state;
	if (redis_pid > 0)
		redis_peer_kill(redis_pid, SIGKILL);
	redis_pid = 0;
	if (redis_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", redis_dir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

static void spin_done_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop for ms (a referenced timer: the store's handles are not). */
static void spin(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t t;

	uv_timer_init(loop, &t);
	uv_timer_start(&t, spin_done_cb, ms, 0);
	while (uv_is_active((uv_handle_t *)&t))
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

#define SPIN_UNTIL(loop, cond) do { \
		uint64_t end_ = uv_hrtime() + 60ull * 1000000000ull; \
		while (!(cond) && uv_hrtime() < end_) \
			spin((loop), 5); \
		assert_true(cond); \
	} while (0)

struct up_read { struct redis_store *rs; int armed, issued, calls, null_reply; char str[32]; };

static void got_cb(void *arg, const redisReply *r)
{
	struct up_read *u = arg;

	u->calls++;
	if (r == NULL)
		u->null_reply = 1;
	else if (r->type == REDIS_REPLY_STRING)
		snprintf(u->str, sizeof(u->str), "%s", r->str);
}

static void up_cb(void *arg)
{
	struct up_read *u = arg;
	const char *get[2] = { "GET", "mx:order" };

	if (!u->armed || u->issued++)
		return;
	assert_int_equal(redis_store_command(u->rs, 2, get, NULL, got_cb, u, NULL), 0);
}

struct counted { int pending, ok, failed; };

static void counted_cb(void *arg, int status)
{
	struct counted *c = arg;

	c->pending--;
	if (status == 0)
		c->ok++;
	else
		c->failed++;
}

static void test_outage_backlog_order(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct counted c = { 0 };
	struct up_read u = { 0 };
	char url[128], val[16];
	pid_t pid;
	int port = redis_peer_hold_port();

	(void)state;
	if (!redis_peer_available()) {
		skipped = 1;
		skip();
	}
	snprintf(redis_dir, sizeof(redis_dir), "/tmp/test_redis_outage_order.%d", (int)getpid());
	mkdir(redis_dir, 0700);
	pid = redis_pid = redis_peer_start(port, redis_dir);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", port);
	rs = redis_store_new(&loop, url, 5000, 0);
	assert_non_null(rs);
	u.rs = rs;
	redis_store_set_up_cb(rs, up_cb, &u);
	SPIN_UNTIL(&loop, redis_store_is_up(rs));

	redis_peer_kill(pid, SIGKILL);
	redis_pid = 0;
	SPIN_UNTIL(&loop, !redis_store_is_up(rs));      /* the outage */
	for (int i = 1; i <= 100; i++) {
		const char *set[3] = { "SET", "mx:order", val };

		snprintf(val, sizeof(val), "v%d", i);
		assert_int_equal(redis_store_write(rs, -1, 1, 2, set, NULL, counted_cb, &c), 0);
		c.pending++;
	}
	u.armed = 1;
	redis_pid = redis_peer_start(port, redis_dir);
	SPIN_UNTIL(&loop, u.calls == 1 && c.pending == 0);
	assert_int_equal(c.ok, 100);
	assert_int_equal(u.null_reply, 0);
	assert_string_equal(u.str, "v100");

	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_outage_backlog_order, outage_teardown),
	};

	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc == 0 && skipped ? 77 : rc;
}
