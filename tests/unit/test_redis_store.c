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
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redis_peer.h"
#include "store/redis.h"
#include "store/store_stats.h"

/* Every mode but FAKE_MUTE answers the store's handshake (up to its first PING) as Redis
 * does; FAKE_HANG then answers nothing more (a server frozen after it was up), FAKE_MUTE nothing
 * at all (a frozen server whose kernel still completes TCP handshakes); FAKE_BIG_ARRAY answers
 * the first script with an array of 100 million elements (its header only), FAKE_BIG_BULK
 * with a 100 MB string of which it sends 16 MB. */
enum fake_mode { FAKE_HANG = 0, FAKE_NOSCRIPT, FAKE_ERROR, FAKE_SLOW, FAKE_MUTE, FAKE_BIG_ARRAY,
	FAKE_BIG_BULK, FAKE_ENDLESS_BULK, FAKE_LAGGED };
/* FAKE_LAGGED answers every command +OK, each 100 ms late (a slow Redis, within timeouts). */
/* FAKE_ENDLESS_BULK answers its first command (AUTH, GET ...) with a string of 99,999,999,999
 * octets and streams it, 64 KB at a time, until the client drops or FAKE_ENDLESS_MAX went. */
#define FAKE_ENDLESS_MAX (64l << 20)

struct fake {
	int lfd, port;
	enum fake_mode mode;
	pthread_t th;
	int evalsha, eval, script_load;
	int pinged;                    /* the handshake's PING was answered */
	long last_words;               /* words of the last command */
	long sent;                     /* FAKE_ENDLESS_BULK: octets of the string sent */
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
		if (f->mode == FAKE_MUTE)
			continue;
		if (f->mode == FAKE_LAGGED) {
			usleep(100 * 1000);
			fputs("+OK\r\n", out);
			fflush(out);
			continue;
		}
		if (f->mode == FAKE_ENDLESS_BULK) {
			static char chunk[1 << 16];

			fputs("$99999999999\r\n", out);
			fflush(out);
			memset(chunk, 'x', sizeof(chunk));
			while (f->sent < FAKE_ENDLESS_MAX &&
			    send(fileno(out), chunk, sizeof(chunk), MSG_NOSIGNAL) > 0)
				f->sent += (long)sizeof(chunk);
			break;                 /* then the connection closes */
		}
		if (!f->pinged && strcasecmp(verb, "PING") == 0 && f->mode != FAKE_SLOW) {
			f->pinged = 1;
			fputs("+PONG\r\n", out);
			fflush(out);
			continue;
		}
		if (f->mode == FAKE_HANG && f->pinged)
			continue;
		if (f->mode == FAKE_SLOW && strcasecmp(verb, "PING") == 0)
			usleep(300 * 1000);    /* after the client looked (its deadline: 100 ms) */
		if ((f->mode == FAKE_BIG_ARRAY || f->mode == FAKE_BIG_BULK) &&
		    strncasecmp(verb, "EVAL", 4) == 0) {
			static char chunk[1 << 16];

			fputs(f->mode == FAKE_BIG_ARRAY ? "*100000000\r\n" : "$100000000\r\n", out);
			fflush(out);
			memset(chunk, 'x', sizeof(chunk));
			for (int i = 0; f->mode == FAKE_BIG_BULK && i < 256; i++)
				if (send(fileno(out), chunk, sizeof(chunk), MSG_NOSIGNAL) < 0)
					break;         /* the client dropped the connection */
			continue;
		}
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

/* redis-sentinel://: the sentinels (26379 by default, IPv6 in brackets), the master's name,
 * the db, the master's user and password; the shown form has no password; malformed lists,
 * names and a redis:// URL's parser refusing it (it names no one server). */
static void test_sentinel_url_parse(void **state)
{
	static const char *bad[] = {
		"redis-sentinel://h:26379", "redis-sentinel://h:26379/", "redis-sentinel:///m",
		"redis-sentinel://h,/m", "redis-sentinel://,h/m", "redis-sentinel://h:0/m",
		"redis-sentinel://h/m/x", "redis-sentinel://h/m n", "redis-sentinel://[::1/m",
		"redis-sentinel://a,b,c,d,e,f,g,h,i/m", "redis+sentinel://h/m",
	};
	struct redis_url u;
	char shown[REDIS_URL_SHOWN_MAX], host[256], pw[64];
	int port, db;

	(void)state;
	assert_int_equal(redis_url_parse("redis-sentinel://u:pw@10.0.0.1,10.0.0.2:26380,[::1]:5000/mymaster/2", &u), 0);
	assert_true(u.sentinel);
	assert_int_equal(u.nsentinels, 3);
	assert_string_equal(u.sentinels[0].host, "10.0.0.1");
	assert_int_equal(u.sentinels[0].port, 26379);
	assert_string_equal(u.sentinels[1].host, "10.0.0.2");
	assert_int_equal(u.sentinels[1].port, 26380);
	assert_string_equal(u.sentinels[2].host, "::1");
	assert_int_equal(u.sentinels[2].port, 5000);
	assert_string_equal(u.master, "mymaster");
	assert_int_equal(u.db, 2);
	assert_string_equal(u.user, "u");
	assert_string_equal(u.password, "pw");
	redis_url_shown(&u, shown, sizeof(shown));
	assert_string_equal(shown, "redis-sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]:5000/mymaster/2");
	assert_int_equal(redis_url_parse("redis-sentinel://s1/m", &u), 0);
	assert_int_equal(u.db, 0);
	assert_true(redis_url_is_store("redis-sentinel://s1/m"));
	assert_true(redis_url_is_store("redis://h"));
	assert_int_equal(redis_store_parse_url("redis-sentinel://s1/m", host, sizeof(host), &port, &db,
	    pw, sizeof(pw)), -1);
	assert_int_equal(redis_url_parse("redis://:x@[::1]:6390/4", &u), 0);
	redis_url_shown(&u, shown, sizeof(shown));
	assert_string_equal(shown, "redis://[::1]:6390/4");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (redis_url_parse(bad[i], &u) == 0 || redis_url_is_store(bad[i]))
			fail_msg("%s: accepted", bad[i]);
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
	uint64_t sent, timeouts, failfast, dropped;
	size_t queued;
	struct store_stats *st = store_stats_get("redis", "redis");
	uint64_t dropped_before = store_stats_dropped(st);
	int sc;

	(void)state;
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_peer_hold_port());
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
	/* during the outage reads fail at once; a write waits in the queue */
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), -1);
	assert_int_equal(redis_store_write(rs, sc, 1, 3, kargs, NULL, NULL, NULL), 0);
	redis_store_stats(rs, &sent, &timeouts, &failfast);
	assert_int_equal(failfast, 1);
	redis_store_write_stats(rs, &queued, NULL, &dropped);
	assert_int_equal(queued, 1);
	assert_int_equal(dropped, 0);
	/* freed with no sibling to take it: given up and counted */
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(store_stats_dropped(st) - dropped_before, 1);
}

/* Waits (bounded) for the store to come up. */
static void spin_until_up(uv_loop_t *loop, struct redis_store *rs)
{
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull;

	while (!redis_store_is_up(rs) && uv_hrtime() < end)
		spin(loop, 5);
	assert_true(redis_store_is_up(rs));
}

/* A store on a fresh loop for the fake f (started in mode), up; `script` registered as *sc
 * when sc is not NULL. */
static struct redis_store *fake_store(uv_loop_t *loop, struct fake *f, enum fake_mode mode,
    uint64_t timeout_ms, int *sc)
{
	char url[64];
	struct redis_store *rs;

	fake_start(f, mode);
	uv_loop_init(loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->port);
	rs = redis_store_new(loop, url, timeout_ms, 0);
	assert_non_null(rs);
	if (sc)
		*sc = redis_store_add_script(rs, script);
	spin_until_up(loop, rs);
	return rs;
}

/* Frees rs, runs its loop dry and closes it, stops f. */
static void fake_store_done(uv_loop_t *loop, struct redis_store *rs, struct fake *f)
{
	redis_store_free(rs);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
	fake_stop(f);
}

static void test_hang_timeout(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct got g = { 0 }, g2 = { 0 };
	struct redis_req *req;
	struct fake f;
	uint64_t sent, timeouts, failfast;
	int sc;

	(void)state;
	rs = fake_store(&loop, &f, FAKE_HANG, 100, &sc);
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
	fake_store_done(&loop, rs, &f);
}

/* A reply whose size the server makes up: an array of 100 million elements, a 100 MB string
 * streamed: the connection is dropped at once (the request gets no reply, the store is down)
 * instead of 800 MB allocated or the buffer grown until the request's deadline (3 s). */
static void test_reply_too_large(void **state)
{
	static const enum fake_mode modes[] = { FAKE_BIG_ARRAY, FAKE_BIG_BULK };

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		uv_loop_t loop;
		struct redis_store *rs;
		struct got g = { 0 };
		struct fake f;
		uint64_t sent, timeouts, failfast;
		int sc;

		rs = fake_store(&loop, &f, modes[i], 3000, &sc);
		assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), 0);
		spin_until(&loop, &g.calls);
		assert_int_equal(g.calls, 1);
		assert_true(g.null_reply);
		/* ended by the size, not by its deadline (what a clock said before: a loaded
		 * machine can take the 1.5 s the bound was) */
		redis_store_stats(rs, &sent, &timeouts, &failfast);
		assert_int_equal(timeouts, 0);
		assert_false(redis_store_is_up(rs));
		fake_store_done(&loop, rs, &f);
	}
}

/* A blocking connection (a control verb's, `mxgate learn`'s) whose server announces an
 * endless string and streams it: at connect, the AUTH's reply; on a connection that is up, a
 * GET's. The call gives up past 8 MB unparsed (the server had sent less than 16 MB, the rest
 * is the sockets' buffers) instead of reading until the server stops: on main,
 * redis_store_connect_sync read all 64 MB the fake sends (hiredis buffers a string until it
 * is whole, and a server that keeps sending never trips the per-read timeout). */
static void test_sync_reply_bounded(void **state)
{
	char url[64], err[160];
	redisContext *c;
	struct fake f;

	/* 10 s: the bound is on size; on a loaded machine (or under ASan) 8 MB took over 2 s
	 * to stream and the call gave up on time first ("reply too slow") */
	(void)state;
	fake_start(&f, FAKE_ENDLESS_BULK);
	snprintf(url, sizeof(url), "redis://:pw@127.0.0.1:%d", f.port);
	assert_null(redis_store_connect_sync(url, 10000, err, sizeof(err)));
	fake_stop(&f);
	assert_true(f.sent > 0);
	assert_true(f.sent < (16l << 20));
	assert_non_null(strstr(err, "reply too large"));

	fake_start(&f, FAKE_ENDLESS_BULK);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	assert_non_null(c = redis_store_connect_sync(url, 10000, err, sizeof(err)));
	assert_null(redis_store_sync_command(c, "GET %s", "k"));
	assert_int_not_equal(c->err, 0);
	assert_string_equal(c->errstr, "reply too large");
	redisFree(c);
	fake_stop(&f);
	assert_true(f.sent < (16l << 20));
}

/* A server that accepts the connection but never answers (frozen: its kernel completes the
 * TCP handshake from the listen backlog) is not up: the store waits for its PING's answer,
 * then gives up at the handshake deadline. */
static void test_handshake_unanswered(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct fake f;
	char url[64];

	(void)state;
	fake_start(&f, FAKE_MUTE);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	rs = redis_store_new(&loop, url, 100, 0);
	assert_non_null(rs);
	spin(&loop, 1500);            /* past the handshake deadline (1 s) */
	assert_false(redis_store_is_up(rs));
	fake_store_done(&loop, rs, &f);
}

static void test_noscript_fallback(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct got g = { 0 };
	struct fake f;
	int sc;

	(void)state;
	rs = fake_store(&loop, &f, FAKE_NOSCRIPT, 500, &sc);
	assert_int_equal(redis_store_eval(rs, sc, 1, 3, kargs, NULL, got_cb, &g, NULL), 0);
	spin_until(&loop, &g.calls);
	assert_int_equal(g.calls, 1);
	assert_false(g.null_reply);
	assert_int_equal(g.v0, 1);
	assert_int_equal(f.evalsha, 1);
	assert_int_equal(f.eval, 1);
	assert_int_equal(f.script_load, 1);
	assert_true(redis_store_is_up(rs));
	fake_store_done(&loop, rs, &f);
}

/* A reply that waits in the socket while the loop was busy past the request's deadline is
 * read, not called a timeout (libuv runs due timers before it polls). */
static void test_late_loop_not_timeout(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct got g = { 0 };
	struct fake f;
	const char *ping[1] = { "PING" };
	uint64_t timeouts;

	(void)state;
	rs = fake_store(&loop, &f, FAKE_SLOW, 100, NULL);
	assert_int_equal(redis_store_command(rs, 1, ping, NULL, got_cb, &g, NULL), 0);
	spin(&loop, 1);                        /* the command goes out */
	assert_int_equal(g.calls, 0);
	usleep(900 * 1000);                    /* a busy loop: the deadline passes, the reply lands */
	spin_until(&loop, &g.calls);
	assert_false(g.null_reply);
	redis_store_stats(rs, NULL, &timeouts, NULL);
	assert_int_equal(timeouts, 0);
	assert_true(redis_store_is_up(rs));
	fake_store_done(&loop, rs, &f);
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
		struct redis_store *rs;
		struct done d = { 0, 99 }, d2 = { 0, 99 };
		const char *zrem[3] = { "ZREM", "k", "member" };
		struct fake f;
		int sc;

		rs = fake_store(&loop, &f, modes[m], 5000, &sc);
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
		fake_store_done(&loop, rs, &f);
	}
}

/* A script with 300 keys and an argument (a message's tokens) goes out whole. */
static void test_many_keys(void **state)
{
	uv_loop_t loop;
	char keys[300][16];
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
	rs = fake_store(&loop, &f, FAKE_NOSCRIPT, 5000, &sc);
	assert_int_equal(redis_store_eval(rs, sc, 300, 1, argv, NULL, got_cb, &g, NULL), 0);
	spin_until(&loop, &g.calls);
	assert_false(g.null_reply);
	assert_int_equal(f.eval, 1);
	assert_int_equal(f.last_words, 3 + 301);   /* EVAL text 300 keys... 1 */
	fake_store_done(&loop, rs, &f);
}

/* ---- the write queue against a real redis-server ----------------------------------------
 * Killed (SIGKILL) and restarted, stopped (SIGSTOP) past the request deadline, and a store
 * freed during an outage: every write lands at least once, none is given up, and a write is
 * applied twice only when its reply was lost (counted as retried). The server keeps an
 * append-only file fsynced on every write, so what it applied survives the SIGKILL. */

static char redis_dir[256];

/* GET key as a number (synchronous, for checking what the store wrote). */
static long long redis_get_num(int port, const char *key)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	redisReply *r;
	long long v = -1;

	assert_true(c && !c->err);
	r = redisCommand(c, "GET %s", key);
	if (r && r->type == REDIS_REPLY_STRING)
		v = atoll(r->str);
	else if (r && r->type == REDIS_REPLY_NIL)
		v = 0;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

static int skipped;

static const char *incr_script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
static const char *incr_each_script =
    "for k = 1, #KEYS do redis.call('INCRBY', KEYS[k], ARGV[1]) end return 1";

/* Spins until the store has nothing queued or unanswered. */
static void spin_until_drained(uv_loop_t *loop, struct redis_store *rs, const int *pending)
{
	uint64_t end = uv_hrtime() + 30ull * 1000000000ull;
	size_t queued = 1;

	while (uv_hrtime() < end) {
		redis_store_write_stats(rs, &queued, NULL, NULL);
		if (queued == 0 && *pending == 0)
			return;
		spin(loop, 5);
	}
	fail_msg("writes still queued (%zu) or unanswered (%d) after 30 s", queued, *pending);
}

/* redis_dir made, or the test skipped (77 from main; a failure under CI=true) when
 * redis-server is missing. */
static void redis_test_dir(void)
{
	if (!redis_peer_available()) {
		skipped = 1;
		skip();
	}
	snprintf(redis_dir, sizeof(redis_dir), "/tmp/test_redis_store.%d", (int)getpid());
	mkdir(redis_dir, 0700);
}

/* Every real-redis test's set-up: a redis-server on port (redis_peer_hold_port's) with its
 * files in redis_dir, answering as itself; its pid. Killed by redis_test_end, or at exit
 * when an assertion ended the test first (redis_peer.h). */
static pid_t redis_test_server(int port)
{
	redis_test_dir();
	return redis_peer_start(port, redis_dir);
}

/* A loop, and url for a redis-server on port (not started) with its files in redis_dir. */
static void redis_test_begin(uv_loop_t *loop, char *url, size_t urllen, int port)
{
	redis_test_dir();
	uv_loop_init(loop);
	snprintf(url, urllen, "redis://127.0.0.1:%d", port);
}

/* Removes this process's redis_dir only: a glob over /tmp/test_redis_store.* took the
 * directory of another suite running at the same time (an ASan run beside a normal one), and
 * its redis-server, restarted after a SIGKILL, could not chdir there ("exited at start"). */
static void rm_redis_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' 2>/dev/null", redis_dir);
	(void)system(cmd);
}

/* Frees rs, runs loop out and closes it, kills the server, removes its files. */
static void redis_test_end(uv_loop_t *loop, struct redis_store *rs, pid_t pid)
{
	redis_store_free(rs);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
	redis_peer_kill(pid, SIGKILL);
	rm_redis_dir();
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

static void write_n(struct redis_store *rs, int sc, int n, struct counted *c)
{
	const char *args[2] = { "mx:counter", "1" };

	for (int i = 0; i < n; i++) {
		assert_int_equal(redis_store_write(rs, sc, 1, 1, args, NULL, counted_cb, c), 0);
		c->pending++;
	}
}

static void test_queue_real_redis(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *rs;
	struct counted c = { 0 };
	uint64_t retried, dropped;
	long long v;
	pid_t pid;
	int port = redis_peer_hold_port(), sc;

	(void)state;
	pid = redis_test_server(port);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	/* a deadline a loaded machine meets; SIGSTOP below outlasts it on purpose */
	rs = redis_store_new(&loop, url, 1000, 0);
	redis_store_set_name(rs, "test");
	sc = redis_store_add_script(rs, incr_script);
	spin_until_up(&loop, rs);

	/* 1. up: applied once each */
	write_n(rs, sc, 200, &c);
	spin_until_drained(&loop, rs, &c.pending);
	assert_int_equal(c.ok, 200);
	assert_int_equal(redis_get_num(port, "mx:counter"), 200);

	/* 2. killed with writes in flight, more written during the outage, restarted on the
	 * same port: nothing is given up, and only a lost reply can make a duplicate */
	write_n(rs, sc, 500, &c);
	spin(&loop, 1);                           /* some out, some answered, some queued */
	redis_peer_kill(pid, SIGKILL);
	write_n(rs, sc, 300, &c);                 /* queued: the store is (or soon is) down */
	spin(&loop, 50);
	pid = redis_peer_start(port, redis_dir);
	spin_until_drained(&loop, rs, &c.pending);
	redis_store_write_stats(rs, NULL, &retried, &dropped);
	v = redis_get_num(port, "mx:counter");
	assert_int_equal(dropped, 0);
	assert_int_equal(c.failed, 0);
	assert_int_equal(c.ok, 1000);
	if (v < 1000 || v > 1000 + (long long)retried)
		fail_msg("counter %lld after 1000 writes with %llu resent", v, (unsigned long long)retried);

	/* 3. stopped past the deadline with writes in flight: they are resent on the next
	 * connection once it answers again */
	redis_peer_kill(pid, SIGSTOP);
	write_n(rs, sc, 100, &c);
	spin(&loop, 1500);                        /* the deadline passes: connection dropped */
	redis_peer_kill(pid, SIGCONT);
	spin_until_drained(&loop, rs, &c.pending);
	redis_store_write_stats(rs, NULL, &retried, &dropped);
	v = redis_get_num(port, "mx:counter");
	assert_int_equal(dropped, 0);
	assert_true(retried >= 1);                /* the stopped server's writes went again */
	assert_int_equal(c.ok, 1100);
	if (v < 1100 || v > 1100 + (long long)retried)
		fail_msg("counter %lld after 1100 writes with %llu resent", v, (unsigned long long)retried);

	redis_test_end(&loop, rs, pid);
}

/* A reload during an outage: the old store hands its queue to the new one for the same
 * server on the same loop; the bound counts what does not fit. */
static void test_queue_handover_and_bound(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *old, *cur;
	struct counted c = { 0 };
	const char *args[2] = { "mx:handover", "1" };
	size_t queued;
	uint64_t dropped;
	pid_t pid;
	int port = redis_peer_hold_port(), sc_old, sc_new;

	(void)state;
	redis_test_begin(&loop, url, sizeof(url), port);
	old = redis_store_new(&loop, url, 1000, 0);
	sc_old = redis_store_add_script(old, incr_script);
	redis_store_set_queue_limit(old, 50);
	spin(&loop, 50);                          /* refused: down */
	assert_false(redis_store_is_up(old));
	for (int i = 0; i < 50; i++)
		assert_int_equal(redis_store_write(old, sc_old, 1, 1, args, NULL, NULL, NULL), 0);
	/* the bound: the 51st is refused now and counted */
	assert_int_equal(redis_store_write(old, sc_old, 1, 1, args, NULL, NULL, NULL), -1);
	redis_store_write_stats(old, &queued, NULL, &dropped);
	assert_int_equal(queued, 50);
	assert_int_equal(dropped, 1);
	/* the new generation's store (a script registered in another order), then the old goes */
	cur = redis_store_new(&loop, url, 1000, 0);
	redis_store_add_script(cur, script);
	sc_new = redis_store_add_script(cur, incr_script);
	assert_int_not_equal(sc_new, sc_old);
	redis_store_free(old);
	redis_store_write_stats(cur, &queued, NULL, &dropped);
	assert_int_equal(queued, 50);
	assert_int_equal(dropped, 0);
	assert_int_equal(redis_store_write(cur, sc_new, 1, 1, args, NULL, counted_cb, &c), 0);
	c.pending++;
	pid = redis_peer_start(port, redis_dir);
	spin_until_drained(&loop, cur, &c.pending);
	assert_int_equal(c.ok, 1);
	assert_int_equal(redis_get_num(port, "mx:handover"), 51);
	redis_test_end(&loop, cur, pid);
}

/* A flush during an outage (mxgatectl flush reputation): the queued writes forget the key
 * before the caller deletes it, so none brings the record back when Redis returns. A write
 * of that key alone, or a plain command naming it, is discarded (done gets -1); a write of
 * several keys keeps the others. */
static void test_queue_forget_key(void **state)
{
	uv_loop_t loop;
	char url[64];
	struct redis_store *rs;
	struct counted c = { 0 };
	const char *both[3] = { "mx:flushed", "mx:kept", "1" };
	const char *kept_first[3] = { "mx:kept", "mx:flushed", "1" };
	const char *alone[2] = { "mx:flushed", "1" };
	const char *plain[3] = { "INCRBY", "mx:flushed", "1" };
	const char *only_kept[2] = { "mx:kept", "1" };
	size_t queued;
	uint64_t dropped;
	pid_t pid;
	int port = redis_peer_hold_port(), sc;

	(void)state;
	redis_test_begin(&loop, url, sizeof(url), port);
	rs = redis_store_new(&loop, url, 1000, 0);
	sc = redis_store_add_script(rs, incr_each_script);
	spin(&loop, 50);                          /* refused: down */
	assert_false(redis_store_is_up(rs));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(redis_store_write(rs, sc, 2, 1, both, NULL, counted_cb, &c), 0);
		assert_int_equal(redis_store_write(rs, sc, 1, 1, alone, NULL, counted_cb, &c), 0);
		assert_int_equal(redis_store_write(rs, sc, 2, 1, kept_first, NULL, counted_cb, &c), 0);
		assert_int_equal(redis_store_write(rs, -1, 0, 3, plain, NULL, NULL, NULL), 0);
		assert_int_equal(redis_store_write(rs, sc, 1, 1, only_kept, NULL, counted_cb, &c), 0);
		c.pending += 4;
	}
	/* the flush: 12 writes named the key; the 3 alone and the 3 plain commands go now */
	assert_int_equal(redis_store_write_forget(rs, "mx:flushed", 10), 12);
	assert_int_equal(c.failed, 3);
	redis_store_write_stats(rs, &queued, NULL, &dropped);
	assert_int_equal(queued, 9);
	assert_int_equal(dropped, 0);
	assert_int_equal(redis_store_write_forget(rs, "mx:flushed", 10), 0);
	/* an update after the flush is new history: it stays */
	assert_int_equal(redis_store_write(rs, sc, 1, 1, alone, NULL, counted_cb, &c), 0);
	c.pending++;
	pid = redis_peer_start(port, redis_dir);
	spin_until_drained(&loop, rs, &c.pending);
	assert_int_equal(c.ok, 10);
	assert_int_equal(redis_get_num(port, "mx:flushed"), 1);
	assert_int_equal(redis_get_num(port, "mx:kept"), 9);
	redis_test_end(&loop, rs, pid);
}

/* A blocking connection whose server accepts and never answers: the command ends at the
 * connection's timeout, said as such — on main the error was hiredis's strerror(EAGAIN),
 * "Resource temporarily unavailable", which a control verb's ERR passed on to the operator. */
static void test_sync_timeout_said(void **state)
{
	char url[64], err[160];
	redisContext *c;
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_MUTE);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f.port);
	assert_non_null(c = redis_store_connect_sync(url, 300, err, sizeof(err)));
	assert_null(redis_store_sync_command(c, "GET %s", "k"));
	assert_int_not_equal(c->err, 0);
	assert_string_equal(c->errstr, "no reply within 300 ms (timeout)");
	redisFree(c);
	fake_stop(&f);
}

/* A job's Redis work has one deadline (8 x the timeout, from its connect): a server answering
 * each step 100 ms late, well within the 400 ms timeout, ends the job at 3.2 s with the step
 * named — on main 100 such steps all went through (10 s), the verb bounded by steps x timeout
 * alone. */
struct job_lag {
	char url[64];
	int ok;                         /* steps answered */
	char err[160];
};

static void job_lag_work(void *arg)
{
	struct job_lag *l = arg;
	redisContext *c = redis_store_connect_sync(l->url, 400, l->err, sizeof(l->err));

	if (c == NULL)
		return;
	for (int i = 0; i < 100; i++) {
		redisReply *r = redis_store_sync_command(c, "GET k%d", i);

		if (r == NULL) {
			snprintf(l->err, sizeof(l->err), "%s", c->errstr);
			break;
		}
		freeReplyObject(r);
		l->ok++;
	}
	redisFree(c);
}

static void job_lag_done(void *arg) { (void)arg; }

static void test_job_deadline(void **state)
{
	struct job_lag l = { .ok = 0 };
	uv_loop_t loop;
	struct fake f;

	(void)state;
	fake_start(&f, FAKE_LAGGED);
	snprintf(l.url, sizeof(l.url), "redis://127.0.0.1:%d", f.port);
	uv_loop_init(&loop);
	assert_int_equal(redis_store_job_start(&loop, job_lag_work, job_lag_done, &l), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_true(l.ok > 0 && l.ok < 100);
	assert_string_equal(l.err, "no reply to GET within the verb's deadline (3200 ms in all: "
	    "8 x the 400 ms timeout)");
	fake_stop(&f);
}

/* redis_store_job_start: the work on a thread of its own while the loop runs on (a timer
 * fires meanwhile), then done on the loop's thread, after the work. */
struct job_probe {
	pthread_t loop_thread, work_thread, done_thread;
	int order;                      /* 1: work ran; 2: then done */
	int ticks;                      /* the loop's timer while the work blocked */
};

static void job_probe_work(void *arg)
{
	struct job_probe *p = arg;

	p->work_thread = pthread_self();
	usleep(200000);                 /* a Redis step taking its time */
	p->order = 1;
}

static void job_probe_done(void *arg)
{
	struct job_probe *p = arg;

	p->done_thread = pthread_self();
	p->order = p->order == 1 ? 2 : -1;
}

static void job_probe_tick(uv_timer_t *t)
{
	struct job_probe *p = t->data;

	if (++p->ticks >= 3 || p->order == 2)
		uv_timer_stop(t);
}

static void test_job_off_loop(void **state)
{
	struct job_probe p = { .loop_thread = pthread_self() };
	uv_loop_t loop;
	uv_timer_t t;

	(void)state;
	uv_loop_init(&loop);
	uv_timer_init(&loop, &t);
	t.data = &p;
	uv_timer_start(&t, job_probe_tick, 20, 20);
	assert_int_equal(redis_store_job_start(&loop, job_probe_work, job_probe_done, &p), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(p.order, 2);
	assert_true(p.ticks >= 3);      /* the loop ran while the work blocked */
	assert_false(pthread_equal(p.work_thread, p.loop_thread));
	assert_true(pthread_equal(p.done_thread, p.loop_thread));
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A scripted Sentinel: every connection's every command is answered with the address
 * 127.0.0.1:master_port (SENTINEL get-master-addr-by-name's reply). */
/* A scripted sentinel (every command answered with 127.0.0.1:master_port) or, with
 * is_master, a master answering ROLE, PING and anything else ("ok"); each answer after
 * delay_ms. */
struct fake_sentinel { int lfd, port, master_port, asked, accepts, delay_ms, is_master; pthread_t th;
	int slow_first;               /* > 0: only the first slow_first commands are delayed */
};

static void *fake_sentinel_main(void *arg)
{
	struct fake_sentinel *f = arg;
	int c;

	while ((c = accept(f->lfd, NULL, NULL)) >= 0) {
		FILE *in = fdopen(dup(c), "r"), *out = fdopen(c, "w");
		char verb[32];
		long words;

		f->accepts++;
		while (fake_read_cmd(in, verb, sizeof(verb), &words)) {
			char port[16];

			f->asked++;
			if (f->delay_ms && (f->slow_first == 0 || f->asked <= f->slow_first))
				usleep((useconds_t)f->delay_ms * 1000);
			snprintf(port, sizeof(port), "%d", f->master_port);
			if (!f->is_master)
				fprintf(out, "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n", strlen(port), port);
			else if (strcasecmp(verb, "PING") == 0)
				fprintf(out, "+PONG\r\n");
			else if (strcasecmp(verb, "ROLE") == 0)
				fprintf(out, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
			else
				fprintf(out, "$2\r\nok\r\n");
			fflush(out);
		}
		fclose(in);
		fclose(out);
	}
	return NULL;
}

static void fake_peer_start(struct fake_sentinel *f, int master_port, int delay_ms,
    int is_master)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->master_port = master_port;
	f->delay_ms = delay_ms;
	f->is_master = is_master;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
	pthread_create(&f->th, NULL, fake_sentinel_main, f);
}

static void fake_sentinel_start(struct fake_sentinel *f, int master_port)
{
	fake_peer_start(f, master_port, 0, 0);
}

static void fake_sentinel_stop(struct fake_sentinel *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	close(f->lfd);
	pthread_join(f->th, NULL);
}

struct got_str { int calls, null_reply; char str[32]; };

static void got_str_cb(void *arg, const redisReply *r)
{
	struct got_str *g = arg;

	g->calls++;
	if (r == NULL)
		g->null_reply = 1;
	else if (r->type == REDIS_REPLY_STRING)
		snprintf(g->str, sizeof(g->str), "%s", r->str);
}

/* GET key on a store made just now, before its loop ran: the read waits for the first
 * connect (the sentinels' answer, the connect, SELECT) and gets the value. */
static void first_read_waits(uv_loop_t *loop, const char *url, const char *want)
{
	struct redis_store *rs = redis_store_new(loop, url, 2000, 0);
	const char *argv[2] = { "GET", "mx:first" };
	struct got_str g = { 0 };
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull, failfast;

	assert_non_null(rs);
	assert_false(redis_store_is_up(rs));
	/* the code before: -1 at once (a Sentinel store asking, a redis:// one with a /DB) */
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g, NULL), 0);
	while (g.calls == 0 && uv_hrtime() < end)
		spin(loop, 5);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.null_reply, 0);
	assert_string_equal(g.str, want);
	redis_store_stats(rs, NULL, NULL, &failfast);
	assert_int_equal(failfast, 0);
	redis_store_free(rs);
	spin(loop, 1);
}

/* Reads made while a store's first connect is under way wait for it (up to their deadline),
 * whatever the form: redis-sentinel:// (the sentinels asked on a thread first), redis://
 * with a database or a password (AUTH/SELECT go first); a first ask that finds no master
 * ends them at once (NULL, not their deadline), and during that outage reads fail fast. */
static void test_first_connect_reads_wait(void **state)
{
	uv_loop_t loop;
	struct fake_sentinel fs;
	struct redis_store *rs;
	struct got_str g = { 0 };
	const char *argv[2] = { "GET", "mx:first" };
	char url[160];
	redisContext *c;
	uint64_t timeouts, end;
	pid_t pid;
	int port = redis_peer_hold_port(), dead = redis_peer_hold_port();

	(void)state;
	pid = redis_test_server(port);
	c = redisConnect("127.0.0.1", port);
	assert_true(c && !c->err);
	freeReplyObject(redisCommand(c, "SET mx:first db0"));
	freeReplyObject(redisCommand(c, "SELECT 3"));
	freeReplyObject(redisCommand(c, "SET mx:first db3"));
	redisFree(c);
	fake_sentinel_start(&fs, port);
	uv_loop_init(&loop);

	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", fs.port);
	first_read_waits(&loop, url, "db0");
	assert_true(fs.asked >= 1);
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster/3", dead,
	    fs.port);
	first_read_waits(&loop, url, "db3");
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", port);
	first_read_waits(&loop, url, "db3");

	/* no sentinel answers: the waiting read learns when the ask fails */
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", dead);
	rs = redis_store_new(&loop, url, 2000, 0);
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g, NULL), 0);
	end = uv_hrtime() + 20ull * 1000000000ull;
	while (g.calls == 0 && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.null_reply, 1);
	redis_store_stats(rs, NULL, &timeouts, NULL);
	assert_int_equal(timeouts, 0);           /* ended by the failed ask, not its deadline */
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g, NULL), -1);

	/* a read cancelled while it waits is never called */
	redis_store_free(rs);
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", fs.port);
	rs = redis_store_new(&loop, url, 2000, 0);
	{
		struct redis_req *req = NULL;
		struct got_str g2 = { 0 };

		assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g2, &req), 0);
		assert_non_null(req);
		redis_req_cancel(req);
		spin_until_up(&loop, rs);
		assert_int_equal(g2.calls, 0);
	}
	fake_sentinel_stop(&fs);
	redis_test_end(&loop, rs, pid);
}

/* A read that waited through a slow Sentinel ask is sent with what is left of its deadline
 * (here about 50 ms of 2 s) to a master that answers every command after 30 ms: the read may
 * fail, but the healthy master's connection stays (one connection, the store up). The code
 * before dropped it at the read's deadline (redis_down reason=timeout) and asked again: a
 * second connection (the review's finding). */
static void test_waited_read_keeps_connection(void **state)
{
	uv_loop_t loop;
	struct fake_sentinel master, sent;
	struct redis_store *rs;
	struct got_str g = { 0 };
	const char *argv[2] = { "GET", "k" };
	char url[128];
	uint64_t end;

	(void)state;
	fake_peer_start(&master, 0, 30, 1);
	fake_peer_start(&sent, master.port, 1950, 0);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", sent.port);
	rs = redis_store_new(&loop, url, 2000, 0);
	assert_non_null(rs);
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g, NULL), 0);
	end = uv_hrtime() + 20ull * 1000000000ull;
	while ((g.calls == 0 || !redis_store_is_up(rs)) && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(g.calls, 1);
	spin(&loop, 300);            /* the master answers GET 30 ms after ROLE and PING */
	assert_true(redis_store_is_up(rs));
	assert_int_equal(master.accepts, 1);
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	fake_sentinel_stop(&sent);
	fake_sentinel_stop(&master);
}

/* A write then a read of one key, twice, issued while a store's first connect is under way
 * (a Sentinel answering after 300 ms): the reads see the writes issued before them, as
 * commands leave in the order they were issued once the handshake is done. The code before
 * sent the waiting reads behind the handshake's PING and the writes only once it was
 * answered: both reads found the old value. Counted: mxgate_store_reads_waited_total
 * {store="redis:order"} by 2, none timed out. */
static void test_first_connect_order(void **state)
{
	uv_loop_t loop;
	struct fake_sentinel fs;
	struct redis_store *rs;
	struct got_str g1 = { 0 }, g2 = { 0 };
	struct counted c = { 0 };
	const char *set1[3] = { "SET", "mx:order", "new1" }, *set2[3] = { "SET", "mx:order", "new2" };
	const char *get[2] = { "GET", "mx:order" };
	struct store_stats *st = store_stats_get("redis", "order");
	uint64_t waited = store_stats_reads_waited(st), wait_to = store_stats_read_wait_timeouts(st);
	uint64_t end;
	char url[128];
	redisContext *rc;
	pid_t pid;
	int port = redis_peer_hold_port();

	(void)state;
	pid = redis_test_server(port);
	rc = redisConnect("127.0.0.1", port);
	assert_true(rc && !rc->err);
	freeReplyObject(redisCommand(rc, "SET mx:order old"));
	redisFree(rc);
	fake_peer_start(&fs, port, 300, 0);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", fs.port);
	rs = redis_store_new(&loop, url, 5000, 0);
	assert_non_null(rs);
	redis_store_set_name(rs, "order");
	assert_false(redis_store_is_up(rs));
	assert_int_equal(redis_store_write(rs, -1, 1, 2, set1, NULL, counted_cb, &c), 0);
	c.pending++;
	assert_int_equal(redis_store_command(rs, 2, get, NULL, got_str_cb, &g1, NULL), 0);
	assert_int_equal(redis_store_write(rs, -1, 1, 2, set2, NULL, counted_cb, &c), 0);
	c.pending++;
	assert_int_equal(redis_store_command(rs, 2, get, NULL, got_str_cb, &g2, NULL), 0);
	end = uv_hrtime() + 20ull * 1000000000ull;
	while ((g1.calls == 0 || g2.calls == 0 || c.pending) && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(c.ok, 2);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);
	assert_string_equal(g1.str, "new1");
	assert_string_equal(g2.str, "new2");
	assert_int_equal(store_stats_reads_waited(st) - waited, 2);
	assert_int_equal(store_stats_read_wait_timeouts(st) - wait_to, 0);
	fake_sentinel_stop(&fs);
	redis_test_end(&loop, rs, pid);
}

/* A read waiting for a first connect that does not come within its deadline (a server
 * answering the handshake's ROLE and PING 400 ms late each, the read's deadline 300 ms)
 * fails alone (NULL), counted in mxgate_store_read_wait_timeouts_total; the handshake goes
 * on (its own deadline: 1.5 s) and a later read is answered. */
static void test_first_connect_wait_timeout(void **state)
{
	uv_loop_t loop;
	struct fake_sentinel master;
	struct redis_store *rs;
	struct got_str g = { 0 }, g2 = { 0 };
	const char *argv[2] = { "GET", "k" };
	struct store_stats *st = store_stats_get("redis", "waitto");
	uint64_t waited = store_stats_reads_waited(st), wait_to = store_stats_read_wait_timeouts(st);
	uint64_t end;
	char url[128];

	(void)state;
	fake_peer_start(&master, 0, 400, 1);
	master.slow_first = 2;
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", master.port);
	rs = redis_store_new(&loop, url, 300, 0);
	assert_non_null(rs);
	redis_store_set_name(rs, "waitto");
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g, NULL), 0);
	end = uv_hrtime() + 20ull * 1000000000ull;
	while (g.calls == 0 && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.null_reply, 1);
	assert_int_equal(store_stats_reads_waited(st) - waited, 1);
	assert_int_equal(store_stats_read_wait_timeouts(st) - wait_to, 1);
	spin_until_up(&loop, rs);
	assert_int_equal(redis_store_command(rs, 2, argv, NULL, got_str_cb, &g2, NULL), 0);
	while (g2.calls == 0 && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(g2.null_reply, 0);
	assert_string_equal(g2.str, "ok");
	assert_int_equal(store_stats_reads_waited(st) - waited, 1);
	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	fake_sentinel_stop(&master);
}

/* More writes queued during the first connect than the 64-write window sends at once; a
 * read issued right after the PING's answer (from the up callback) reads the last of them:
 * it waits behind the first connect's writes still queued (on the code before it went out
 * at once and read v64; the review's finding) */
struct up_read { struct redis_store *rs; struct got_str g; int issued; };

static void up_read_cb(void *arg)
{
	struct up_read *u = arg;
	const char *get[2] = { "GET", "mx:order" };

	if (u->issued++)
		return;
	assert_int_equal(redis_store_command(u->rs, 2, get, NULL, got_str_cb, &u->g, NULL), 0);
}

static void test_first_connect_backlog_order(void **state)
{
	uv_loop_t loop;
	struct redis_store *rs;
	struct counted c = { 0 };
	struct up_read u = { 0 };
	uint64_t end;
	char url[128], val[16];
	pid_t pid;
	int port = redis_peer_hold_port();

	(void)state;
	pid = redis_test_server(port);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", port);
	rs = redis_store_new(&loop, url, 5000, 0);
	assert_non_null(rs);
	u.rs = rs;
	redis_store_set_up_cb(rs, up_read_cb, &u);
	for (int i = 1; i <= 100; i++) {
		const char *set[3] = { "SET", "mx:order", val };

		snprintf(val, sizeof(val), "v%d", i);
		assert_int_equal(redis_store_write(rs, -1, 1, 2, set, NULL, counted_cb, &c), 0);
		c.pending++;
	}
	end = uv_hrtime() + 60ull * 1000000000ull;      /* a hang guard, not a timing */
	while ((u.g.calls == 0 || c.pending) && uv_hrtime() < end)
		spin(&loop, 5);
	assert_int_equal(c.ok, 100);
	assert_int_equal(u.g.calls, 1);
	assert_int_equal(u.g.null_reply, 0);
	assert_string_equal(u.g.str, "v100");
	redis_test_end(&loop, rs, pid);
}

int main(void)
{
	int rc;

	signal(SIGPIPE, SIG_IGN);	/* as the daemon does (main.c): a closed peer is EPIPE, not death */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse),
		cmocka_unit_test(test_sentinel_url_parse),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_hang_timeout),
		cmocka_unit_test(test_reply_too_large),
		cmocka_unit_test(test_sync_reply_bounded),
		cmocka_unit_test(test_sync_timeout_said),
		cmocka_unit_test(test_job_off_loop),
		cmocka_unit_test(test_job_deadline),
		cmocka_unit_test(test_noscript_fallback),
		cmocka_unit_test(test_late_loop_not_timeout),
		cmocka_unit_test(test_write_done),
		cmocka_unit_test(test_handshake_unanswered),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_queue_real_redis),
		cmocka_unit_test(test_queue_handover_and_bound),
		cmocka_unit_test(test_queue_forget_key),
		cmocka_unit_test(test_first_connect_reads_wait),
		cmocka_unit_test(test_waited_read_keeps_connection),
		cmocka_unit_test(test_first_connect_order),
		cmocka_unit_test(test_first_connect_wait_timeout),
		cmocka_unit_test(test_first_connect_backlog_order),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc == 0 && skipped ? 77 : rc;
}
