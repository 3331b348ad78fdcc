/* test_sentinel_watch.c — a Redis store's +switch-master subscription (store/sentinel_watch.c)
 * against a scripted sentinel on loopback: the message text's parser (table), a store that
 * learns a failover from the message alone (the old master's connection stays open and
 * writable, as a real one is until Sentinel reconfigures it) and moves its writes to the new
 * master, a message for another master ignored, AUTH with the URL's credentials first, and a
 * sentinel sending garbage, a huge bulk or a huge array: the connection closed, the next
 * attempt after the back-off, never a crash. No timing assertions: waits are bounded polls
 * on counters (hang guards). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store/redis.h"
#include "store/sentinel_watch.h"
#include "store/store_stats.h"

/* ---- the parser ---- */

static void test_switch_parse(void **state)
{
	static const struct { const char *label, *msg; int rc; } rows[] = {
		{ "ours", "mymaster 127.0.0.1 6379 127.0.0.2 6380", 1 },
		{ "a name and v6", "mymaster redis-a.example 6379 ::1 1", 1 },
		{ "another master", "other 127.0.0.1 6379 127.0.0.2 6380", 0 },
		{ "a prefix of ours", "mymaste 127.0.0.1 6379 127.0.0.2 6380", 0 },
		{ "four words", "mymaster 127.0.0.1 6379 127.0.0.2", -1 },
		{ "six words", "mymaster 127.0.0.1 6379 127.0.0.2 6380 x", -1 },
		{ "two spaces", "mymaster  127.0.0.1 6379 127.0.0.2 6380", -1 },
		{ "trailing space", "mymaster 127.0.0.1 6379 127.0.0.2 6380 ", -1 },
		{ "port 0", "mymaster 127.0.0.1 6379 127.0.0.2 0", -1 },
		{ "port 65536", "mymaster 127.0.0.1 6379 127.0.0.2 65536", -1 },
		{ "port signed", "mymaster 127.0.0.1 +6379 127.0.0.2 6380", -1 },
		{ "port with letters", "mymaster 127.0.0.1 63a9 127.0.0.2 6380", -1 },
		{ "host with '='", "mymaster 127.0.0.1 6379 a=b 6380", -1 },
		{ "host with CR", "mymaster 127.0.0.1 6379 a\rb 6380", -1 },
		{ "empty", "", -1 },
	};
	struct sentinel_switch sw;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = sentinel_switch_parse(rows[i].msg, strlen(rows[i].msg), "mymaster", &sw);

		if (rc != rows[i].rc)
			fail_msg("%s: %d, not %d", rows[i].label, rc, rows[i].rc);
	}
	assert_int_equal(sentinel_switch_parse("mymaster 10.0.0.1 1 10.0.0.2 65535", 34, "mymaster",
	    &sw), 1);
	assert_string_equal(sw.old_host, "10.0.0.1");
	assert_int_equal(sw.old_port, 1);
	assert_string_equal(sw.new_host, "10.0.0.2");
	assert_int_equal(sw.new_port, 65535);
	/* a NUL inside the text (a bulk string may hold one) */
	assert_int_equal(sentinel_switch_parse("mymaster 1.2.3.4 1 1\0.2.3.4 2", 29, "mymaster", &sw), -1);
}

/* ---- scripted peers: a thread per connection ---- */

/* Reads one RESP array of bulk strings: the first word into verb, the second into arg. 1, or
 * 0 at EOF. */
static int peer_read_cmd(FILE *in, char *verb, size_t vlen, char *arg, size_t alen)
{
	char line[512];
	long n, len;

	if (!fgets(line, sizeof(line), in) || line[0] != '*')
		return 0;
	n = strtol(line + 1, NULL, 10);
	verb[0] = arg[0] = '\0';
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
			snprintf(verb, vlen, "%.*s", (int)len, buf);
		else if (i == 1)
			snprintf(arg, alen, "%.*s", (int)len, buf);
		free(buf);
	}
	return 1;
}

/* A sentinel (is_master 0: SENTINEL answered with 127.0.0.1:master_port, SUBSCRIBE confirmed
 * and its socket kept in sub_fd for the test to push messages on, AUTH +OK) or a master
 * (ROLE master, PING, SET counted, anything else +OK). after_sub: what a sentinel sends right
 * after the subscribe confirmation (NULL: nothing; len octets, then bulk_more octets of 'x'). */
struct peer {
	int lfd, port, is_master;
	atomic_int master_port, accepts, subscribes, sets, auths, sub_fd;
	atomic_int live;              /* connection threads not ended yet */
	pthread_mutex_t lock;
	int fds[64], nfds;            /* their sockets, for peer_stop */
	const char *after_sub;
	size_t after_len, bulk_more;
	char first_verb[16];
	pthread_t th;
};

struct peer_conn { struct peer *p; int fd; };

static void *peer_conn_main(void *arg)
{
	struct peer_conn *pc = arg;
	struct peer *p = pc->p;
	FILE *in = fdopen(dup(pc->fd), "r"), *out = fdopen(pc->fd, "w");
	char verb[32], a1[64];
	int first = 1;

	free(pc);
	while (peer_read_cmd(in, verb, sizeof(verb), a1, sizeof(a1))) {
		if (first && !p->is_master)
			snprintf(p->first_verb, sizeof(p->first_verb), "%.15s", verb);
		first = 0;
		if (strcasecmp(verb, "AUTH") == 0) {
			atomic_fetch_add(&p->auths, 1);
			fputs("+OK\r\n", out);
		} else if (!p->is_master && strcasecmp(verb, "SUBSCRIBE") == 0) {
			fprintf(out, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", strlen(a1), a1);
			fflush(out);
			if (p->after_sub) {
				static char chunk[1 << 16];

				send(fileno(out), p->after_sub, p->after_len, MSG_NOSIGNAL);
				memset(chunk, 'x', sizeof(chunk));
				for (size_t sent = 0; sent < p->bulk_more; sent += sizeof(chunk))
					if (send(fileno(out), chunk, sizeof(chunk), MSG_NOSIGNAL) < 0)
						break;  /* the client closed */
			}
			atomic_store(&p->sub_fd, fileno(out));
			atomic_fetch_add(&p->subscribes, 1);
			continue;
		} else if (!p->is_master) {
			char port[16];

			snprintf(port, sizeof(port), "%d", atomic_load(&p->master_port));
			fprintf(out, "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n", strlen(port), port);
		} else if (strcasecmp(verb, "PING") == 0) {
			fputs("+PONG\r\n", out);
		} else if (strcasecmp(verb, "ROLE") == 0) {
			fputs("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", out);
		} else {
			if (strcasecmp(verb, "SET") == 0)
				atomic_fetch_add(&p->sets, 1);
			fputs("+OK\r\n", out);
		}
		fflush(out);
	}
	if (atomic_load(&p->sub_fd) == fileno(out))
		atomic_store(&p->sub_fd, -1);
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < p->nfds; i++)
		if (p->fds[i] == fileno(out))
			p->fds[i] = -1;
	pthread_mutex_unlock(&p->lock);
	fclose(in);
	fclose(out);
	atomic_fetch_sub(&p->live, 1);  /* last: p may go once it is 0 */
	return NULL;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int c;

	while ((c = accept(p->lfd, NULL, NULL)) >= 0) {
		struct peer_conn *pc = malloc(sizeof(*pc));
		pthread_t th;

		atomic_fetch_add(&p->accepts, 1);
		atomic_fetch_add(&p->live, 1);
		pthread_mutex_lock(&p->lock);
		if (p->nfds < 64)
			p->fds[p->nfds++] = c;
		pthread_mutex_unlock(&p->lock);
		pc->p = p;
		pc->fd = c;
		pthread_create(&th, NULL, peer_conn_main, pc);
		pthread_detach(th);
	}
	return NULL;
}

static void peer_start(struct peer *p, int is_master, int master_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->is_master = is_master;
	atomic_store(&p->master_port, master_port);
	atomic_store(&p->sub_fd, -1);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->lfd, 16), 0);
	getsockname(p->lfd, (struct sockaddr *)&sa, &len);
	p->port = ntohs(sa.sin_port);
	pthread_create(&p->th, NULL, peer_main, p);
}

/* Stops accepting, ends the connections still open and waits for their threads (they
 * touch p to the end). */
static void peer_stop(struct peer *p)
{
	shutdown(p->lfd, SHUT_RDWR);
	close(p->lfd);
	pthread_join(p->th, NULL);
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < p->nfds; i++)
		if (p->fds[i] >= 0)
			shutdown(p->fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&p->lock);
	while (atomic_load(&p->live) > 0)
		usleep(1000);
	pthread_mutex_destroy(&p->lock);
}

/* Pushes a +switch-master message with text msg on the sentinel's subscriber. */
static void peer_publish(struct peer *p, const char *msg)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
	    strlen(msg), msg);

	assert_true(atomic_load(&p->sub_fd) >= 0);
	assert_int_equal(send(atomic_load(&p->sub_fd), buf, (size_t)n, MSG_NOSIGNAL), n);
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

/* Spins until *flag (an int) is non-zero, at most 20 s (a hang guard). */
#define SPIN_UNTIL(loop, cond) do { \
		uint64_t end_ = uv_hrtime() + 20ull * 1000000000ull; \
		while (!(cond) && uv_hrtime() < end_) \
			spin((loop), 5); \
		assert_true(cond); \
	} while (0)

struct counted { int ok, failed; };

static void counted_cb(void *arg, int status)
{
	struct counted *c = arg;

	if (status == 0)
		c->ok++;
	else
		c->failed++;
}

/* The store learns the failover from the message: its old master (A) still answers as a
 * master and its connection stays open, yet the store drops it, asks the sentinel again,
 * is up on B, and a write made after lands on B, none on A. A message for another master
 * first: ignored (the count moves by one). The URL's password goes to the sentinel's
 * subscriber first (AUTH). On main there is no subscription: the store stays on A, B is
 * never connected to. */
static void test_switch_taken(void **state)
{
	struct peer a, b, s;
	uv_loop_t loop;
	struct redis_store *rs;
	struct counted c = { 0 };
	struct store_stats *st = store_stats_get("redis", "switch");
	uint64_t before = store_stats_sentinel_switches(st);
	const char *set[3] = { "SET", "k", "v" };
	char url[160], msg[160];

	(void)state;
	peer_start(&a, 1, 0);
	peer_start(&b, 1, 0);
	peer_start(&s, 0, a.port);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis-sentinel://:pw@127.0.0.1:%d/mymaster", s.port);
	rs = redis_store_new(&loop, url, 1000, 0);
	assert_non_null(rs);
	redis_store_set_name(rs, "switch");
	SPIN_UNTIL(&loop, redis_store_is_up(rs) && atomic_load(&s.subscribes) == 1);
	assert_string_equal(s.first_verb, "AUTH");   /* the subscriber's (the last connection) */
	assert_int_equal(redis_store_write(rs, -1, 1, 2, set, NULL, counted_cb, &c), 0);
	SPIN_UNTIL(&loop, c.ok == 1);
	assert_int_equal(atomic_load(&a.sets), 1);

	atomic_store(&s.master_port, b.port);
	peer_publish(&s, "other 127.0.0.1 1 127.0.0.1 2");
	snprintf(msg, sizeof(msg), "mymaster 127.0.0.1 %d 127.0.0.1 %d", a.port, b.port);
	peer_publish(&s, msg);
	SPIN_UNTIL(&loop, store_stats_sentinel_switches(st) - before == 1 &&
	    atomic_load(&b.accepts) == 1 && redis_store_is_up(rs));
	assert_int_equal(redis_store_write(rs, -1, 1, 2, set, NULL, counted_cb, &c), 0);
	SPIN_UNTIL(&loop, c.ok == 2);
	assert_int_equal(atomic_load(&b.sets), 1);
	assert_int_equal(atomic_load(&a.sets), 1);
	assert_int_equal(c.failed, 0);
	/* the same message again (a second sentinel's): counted, the store stays on B */
	peer_publish(&s, msg);
	SPIN_UNTIL(&loop, store_stats_sentinel_switches(st) - before == 2);
	spin(&loop, 50);
	assert_true(redis_store_is_up(rs));
	assert_int_equal(atomic_load(&b.accepts), 1);

	redis_store_free(rs);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	peer_stop(&s);
	peer_stop(&a);
	peer_stop(&b);
}

static void no_switch_cb(void *arg, const struct sentinel_switch *sw, const char *sentinel)
{
	(void)sw;
	(void)sentinel;
	(*(int *)arg)++;
}

/* A sentinel that follows its subscribe confirmation with garbage, a bulk of 100 MB (64 KB
 * sent past the bound), an array of 100 million elements, or a message not of five words:
 * the connection is closed (counted), the watch comes back after the back-off (a second
 * connection) and the callback is never called. The last row: a subscribe confirmation of
 * another channel. */
static void test_garbage_closed(void **state)
{
	static const struct { const char *label, *after; size_t more; } rows[] = {
		{ "not RESP", "hello\r\n", 0 },
		{ "a huge bulk", "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$100000000\r\n",
		  1 << 17 },
		{ "a huge array", "*100000000\r\n", 0 },
		{ "a message of three words",
		  "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$10\r\nmymaster a\r\n", 0 },
		{ "an error", "-ERR boom\r\n", 0 },
		{ "a nested array", "*3\r\n*1\r\n:1\r\n$14\r\n+switch-master\r\n:1\r\n", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct peer s;
		struct redis_url u;
		struct sentinel_watch *w;
		uv_loop_t loop;
		uint64_t connects = 0, bad = 0;
		int called = 0;
		char url[128];

		peer_start(&s, 0, 1);
		s.after_sub = rows[i].after;
		s.after_len = strlen(rows[i].after);
		s.bulk_more = rows[i].more;
		uv_loop_init(&loop);
		snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d/mymaster", s.port);
		assert_int_equal(redis_url_parse(url, &u), 0);
		w = sentinel_watch_new(&loop, &u, 200, "test", "garbage", 0, no_switch_cb, &called);
		assert_non_null(w);
		SPIN_UNTIL(&loop, (sentinel_watch_stats(w, &connects, &bad), connects >= 2 && bad >= 1));
		if (called != 0)
			fail_msg("%s: the callback was called", rows[i].label);
		sentinel_watch_free(w);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(uv_loop_close(&loop), 0);
		peer_stop(&s);
	}
}

/* No sentinel listens: the watch tries the next one of the URL after the back-off (the
 * second here subscribes); freed while connecting or subscribed, nothing is left. */
static void test_next_sentinel(void **state)
{
	struct peer s;
	struct redis_url u;
	struct sentinel_watch *w;
	uv_loop_t loop;
	int called = 0, dead;
	char url[160];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &len);
	dead = ntohs(sa.sin_port);          /* bound, not listening: refused */
	peer_start(&s, 0, 1);
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster", dead, s.port);
	assert_int_equal(redis_url_parse(url, &u), 0);
	w = sentinel_watch_new(&loop, &u, 200, "test", "next", 0, no_switch_cb, &called);
	SPIN_UNTIL(&loop, sentinel_watch_is_subscribed(w));
	sentinel_watch_free(w);
	/* freed at once, while its connect is under way */
	w = sentinel_watch_new(&loop, &u, 200, "test", "next", 0, no_switch_cb, &called);
	sentinel_watch_free(w);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(called, 0);
	peer_stop(&s);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_switch_parse),
		cmocka_unit_test(test_switch_taken),
		cmocka_unit_test(test_garbage_closed),
		cmocka_unit_test(test_next_sentinel),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
