/* test_redis_store.c — the async Redis store (store/redis.c) against scripted fake servers on
 * loopback: connection refused, a server that never answers (per-request timeout, fail-fast
 * after), NOSCRIPT answered by resending the script with EVAL, cancellation, writes reporting
 * whether they were applied, and scripts with many keys. No timing assertions: which of the
 * two ways a request ended (a refused connect or its own deadline) is read from the store's
 * counters. */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store/redis.h"

enum fake_mode { FAKE_HANG = 0, FAKE_NOSCRIPT, FAKE_ERROR };

struct fake {
	int lfd, port;
	enum fake_mode mode;
	pthread_t th;
	int evalsha, eval, script_load;
	long last_words;               /* words of the last command */
	volatile int stop;
};

/* Reads one RESP array of bulk strings (first word kept, *words set). 1, or 0 at EOF. */
static int fake_read_cmd(FILE *in, char *verb, size_t vlen, long *words)
{
	char line[512];
	long n, len;

	if (!fgets(line, sizeof(line), in) || line[0] != '*')
		return 0;
	n = strtol(line + 1, NULL, 10);
	*words = n;
	verb[0] = '\0';
	for (long i = 0; i < n; i++) {
		char *buf;

		if (!fgets(line, sizeof(line), in) || line[0] != '$')
			return 0;
		len = strtol(line + 1, NULL, 10);
		buf = malloc((size_t)len + 2);
		if (buf == NULL || fread(buf, 1, (size_t)len + 2, in) != (size_t)len + 2) {
			free(buf);
			return 0;
		}
		if (i == 0)
			snprintf(verb, vlen, "%.*s", (int)(len < (long)vlen - 1 ? len : (long)vlen - 1), buf);
		free(buf);
	}
	return 1;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	FILE *in, *out;
	char verb[32];

	if (c < 0)
		return NULL;
	in = fdopen(dup(c), "r");
	out = fdopen(c, "w");
	while (!f->stop && fake_read_cmd(in, verb, sizeof(verb), &f->last_words)) {
		if (f->mode == FAKE_HANG)
			continue;
		if (f->mode == FAKE_ERROR && strcasecmp(verb, "SCRIPT") != 0) {
			fputs("-ERR boom\r\n", out);
		} else if (strcasecmp(verb, "SCRIPT") == 0) {
			f->script_load++;
			fputs("$40\r\n0000000000000000000000000000000000000000\r\n", out);
		} else if (strcasecmp(verb, "EVALSHA") == 0) {
			f->evalsha++;
			fputs("-NOSCRIPT No matching script. Please use EVAL.\r\n", out);
		} else if (strcasecmp(verb, "EVAL") == 0) {
			f->eval++;
			fputs("*2\r\n:1\r\n:0\r\n", out);
		} else {
			fputs("+OK\r\n", out);
		}
		fflush(out);
	}
	fclose(in);
	fclose(out);
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
	pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	f->stop = 1;
	shutdown(f->lfd, SHUT_RDWR);
	close(f->lfd);
	pthread_join(f->th, NULL);
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &len);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

struct got { int calls; int null_reply; long long v0; uint64_t at_ns; };

static void got_cb(void *arg, const redisReply *r)
{
	struct got *g = arg;

	g->calls++;
	g->at_ns = uv_hrtime();
	if (r == NULL)
		g->null_reply = 1;
	else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0)
		g->v0 = r->element[0]->integer;
}

static void spin_done_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop for ms. The store's own handles are unreferenced (they must not keep a
 * draining daemon alive), so a referenced timer stands in for the daemon's listeners. */
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

static const char *script = "return {1, 0}";
static const char *kargs[4] = { "k", "60000", "10", "1" };

static void test_url_parse(void **state)
{
	static const struct { const char *url; int rc; const char *host; int port, db; const char *pw; } cases[] = {
		{ "redis://127.0.0.1:6380", 0, "127.0.0.1", 6380, 0, "" },
		{ "redis://localhost", 0, "localhost", 6379, 0, "" },
		{ "redis://:secret@10.0.0.1:7000/3", 0, "10.0.0.1", 7000, 3, "secret" },
		{ "redis://[::1]:6390/1", 0, "::1", 6390, 1, "" },
		{ "redis://h:0", -1, NULL, 0, 0, NULL },
		{ "redis://h:99999", -1, NULL, 0, 0, NULL },
		{ "redis://", -1, NULL, 0, 0, NULL },
		{ "http://h", -1, NULL, 0, 0, NULL },
		{ "redis://h/x", -1, NULL, 0, 0, NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[256], pw[64];
		int port, db, rc = redis_store_parse_url(cases[i].url, host, sizeof(host), &port, &db, pw, sizeof(pw));

		if (rc != cases[i].rc)
			fail_msg("%s: rc %d", cases[i].url, rc);
		if (rc == 0 && (strcmp(host, cases[i].host) || port != cases[i].port ||
		    db != cases[i].db || strcmp(pw, cases[i].pw)))
			fail_msg("%s: %s %d %d %s", cases[i].url, host, port, db, pw);
	}
}

/* Runs the loop until *flag is set (a safety bound of 20 s fails the test). */
static void spin_until(uv_loop_t *loop, const int *flag)
{
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull;

	while (!*flag && uv_hrtime() < end)
		spin(loop, 5);
	if (!*flag)
		fail_msg("no callback within 20 s");
}

static void test_refused(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *rs;
	struct got g = { 0 };
	uint64_t sent, timeouts, failfast;
	int sc;

	(void)state;
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
	/* a request deadline far beyond the test: an answer means the refusal was noticed */
	rs = redis_store_new(&loop, url, 60000, 0);
	assert_non_null(rs);
	sc = redis_store_add_script(rs, script);
	/* queued behind the first connect, answered NULL as soon as it is refused */
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), 0);
	spin_until(&loop, &g.calls);
	assert_int_equal(g.calls, 1);
	assert_true(g.null_reply);
	redis_store_stats(rs, &sent, &timeouts, &failfast);
	assert_int_equal(timeouts, 0);
	assert_false(redis_store_is_up(rs));
	/* during the outage requests and writes fail at once */
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), -1);
	assert_int_equal(redis_store_write(rs, sc, 1, 3, kargs, NULL, NULL, NULL), -1);
	redis_store_stats(rs, &sent, &timeouts, &failfast);
	assert_int_equal(failfast, 2);
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* Waits (bounded) for the store to come up. */
static void spin_until_up(uv_loop_t *loop, struct redis_store *rs)
{
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull;

	while (!redis_store_is_up(rs) && uv_hrtime() < end)
		spin(loop, 5);
	assert_true(redis_store_is_up(rs));
}

static void test_hang_timeout(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *rs;
	struct got g = { 0 }, g2 = { 0 };
	struct redis_req *req;
	struct fake f;
	uint64_t sent, timeouts, failfast;
	int sc;

	(void)state;
	fake_start(&f, FAKE_HANG);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	rs = redis_store_new(&loop, url, 100, 0);
	sc = redis_store_add_script(rs, script);
	spin_until_up(&loop, rs);
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), 0);
	/* a second request is cancelled: its callback must never run */
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g2, &req), 0);
	redis_req_cancel(req);
	spin_until(&loop, &g.calls);
	assert_int_equal(g.calls, 1);
	assert_true(g.null_reply);
	redis_store_stats(rs, &sent, &timeouts, &failfast);
	assert_true(timeouts >= 1);       /* ended by its own deadline, not by the server */
	assert_int_equal(g2.calls, 0);
	assert_false(redis_store_is_up(rs));
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), -1);
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	fake_stop(&f);
}

static void test_noscript_fallback(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *rs;
	struct got g = { 0 };
	struct fake f;
	int sc;

	(void)state;
	fake_start(&f, FAKE_NOSCRIPT);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	rs = redis_store_new(&loop, url, 500, 0);
	sc = redis_store_add_script(rs, script);
	spin_until_up(&loop, rs);
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), 0);
	spin_until(&loop, &g.calls);
	assert_int_equal(g.calls, 1);
	assert_false(g.null_reply);
	assert_int_equal(g.v0, 1);
	assert_int_equal(f.evalsha, 1);
	assert_int_equal(f.eval, 1);
	assert_int_equal(f.script_load, 1);
	assert_true(redis_store_is_up(rs));
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	fake_stop(&f);
}

struct done { int calls, status; };

static void done_cb(void *arg, int status)
{
	struct done *d = arg;

	d->calls++;
	d->status = status;
}

/* redis_store_write: applied (after the NOSCRIPT fallback) -> 0; an error reply -> -1; a
 * plain command; fire and forget. */
static void test_write_done(void **state)
{
	static const enum fake_mode modes[2] = { FAKE_NOSCRIPT, FAKE_ERROR };
	static const int want[2] = { 0, -1 };

	(void)state;
	for (int m = 0; m < 2; m++) {
		uv_loop_t loop;
		char url[64];
		struct redis_store *rs;
		struct done d = { 0, 99 }, d2 = { 0, 99 };
		const char *zrem[3] = { "ZREM", "k", "member" };
		struct fake f;
		int sc;

		fake_start(&f, modes[m]);
		uv_loop_init(&loop);
		snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
		rs = redis_store_new(&loop, url, 5000, 0);
		sc = redis_store_add_script(rs, script);
		spin_until_up(&loop, rs);
		assert_int_equal(redis_store_write(rs, sc, 1, 3, kargs, NULL, done_cb, &d), 0);
		assert_int_equal(d.calls, 0);     /* never from inside the call */
		spin_until(&loop, &d.calls);
		if (d.status != want[m])
			fail_msg("mode %d: write status %d, want %d", m, d.status, want[m]);
		assert_int_equal(redis_store_write(rs, -1, 0, 3, zrem, NULL, done_cb, &d2), 0);
		spin_until(&loop, &d2.calls);
		assert_int_equal(d2.status, m == 0 ? 0 : -1);
		assert_int_equal(f.last_words, 3);
		assert_int_equal(redis_store_write(rs, sc, 1, 3, kargs, NULL, NULL, NULL), 0);
		assert_int_equal(redis_store_write(rs, -1, 0, 0, zrem, NULL, NULL, NULL), -1);
		assert_true(redis_store_is_up(rs));
		redis_store_free(rs);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(uv_loop_close(&loop), 0);
		fake_stop(&f);
	}
}

/* A script with 300 keys and an argument (a message's tokens) goes out whole. */
static void test_many_keys(void **state)
{
	uv_loop_t loop;
	char url[64], keys[300][16];
	const char *argv[301];
	struct redis_store *rs;
	struct got g = { 0 };
	struct fake f;
	int sc;

	(void)state;
	for (int i = 0; i < 300; i++) {
		snprintf(keys[i], sizeof(keys[i]), "tok:%d", i);
		argv[i] = keys[i];
	}
	argv[300] = "1";
	fake_start(&f, FAKE_NOSCRIPT);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	rs = redis_store_new(&loop, url, 5000, 0);
	sc = redis_store_add_script(rs, script);
	spin_until_up(&loop, rs);
	assert_int_equal(redis_store_eval(rs, sc, 300, 1, argv, NULL, got_cb, &g, NULL), 0);
	spin_until(&loop, &g.calls);
	assert_false(g.null_reply);
	assert_int_equal(f.eval, 1);
	assert_int_equal(f.last_words, 3 + 301);   /* EVAL text 300 keys... 1 */
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	fake_stop(&f);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);	/* as the daemon does (main.c): a closed peer is EPIPE, not death */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_hang_timeout),
		cmocka_unit_test(test_noscript_fallback),
		cmocka_unit_test(test_write_done),
		cmocka_unit_test(test_many_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
