/* test_health.c — health checks against a tiny SMTP responder running in a thread, a
 * closed port, a stalling server and maildir directories. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/backend.h"
#include "proxy/health.h"
#include "uv_wait.h"

/* ------------------------------------------------------------ the responder */

enum responder_mode { MODE_OK = 0, MODE_REJECT_GREETING, MODE_STALL, MODE_EHLO_502, MODE_GARBAGE, MODE_EHLO_MIXED };

struct responder {
	int fd;
	int port;
	pthread_t thread;
	atomic_int mode;
	atomic_int stop;
	atomic_int sessions;
	char last_hello[128];       /* the EHLO/LHLO line seen last (guarded by lock) */
	pthread_mutex_t lock;
};

/* Reads one line (up to LF) with a 2 s limit. Returns its length or -1. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 2000) <= 0)
			return -1;
		if (read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

/* The checker may have gone (a probe stopped or timed out mid-reply): MSG_NOSIGNAL, or the
 * second write to the closed socket raises SIGPIPE and kills the whole test (it did, now and
 * then under load, in test_lmtp_unix: health_stop() closes the probe between the two writes
 * of the split 250 reply; on a unix socket even the first write after the close fails). */
static void send_str(int fd, const char *s)
{
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) < 0) { /* EPIPE/ECONNRESET: the checker left */ }
}

static void serve_one(struct responder *r, int c)
{
	char line[256];
	int mode = atomic_load(&r->mode);

	atomic_fetch_add(&r->sessions, 1);
	switch (mode) {
	case MODE_REJECT_GREETING:
		send_str(c, "554 5.3.2 go away\r\n");
		return;
	case MODE_STALL: {
		struct pollfd pfd = { c, POLLIN, 0 };
		poll(&pfd, 1, 1500);   /* say nothing until the checker gives up */
		return;
	}
	case MODE_GARBAGE:
		send_str(c, "hello there\r\n");
		return;
	default:
		break;
	}
	send_str(c, "220 sink.test ESMTP\r\n");
	if (read_line(c, line, sizeof line) < 0)
		return;
	pthread_mutex_lock(&r->lock);
	snprintf(r->last_hello, sizeof r->last_hello, "%.120s", line);
	pthread_mutex_unlock(&r->lock);
	if (mode == MODE_EHLO_502) {
		send_str(c, "502 5.5.1 no\r\n");
		return;
	}
	if (mode == MODE_EHLO_MIXED) {
		/* RFC 5321 4.2.1: one code a reply; the last line's 250 is not an answer */
		send_str(c, "550-5.7.1 no\r\n250 ok\r\n");
		return;
	}
	/* A multi-line reply split over two writes, ending like smtp-sink's with "250 ". */
	send_str(c, "250-sink.test\r\n250-PIPELINING\r\n");
	send_str(c, "250 \r\n");
	if (read_line(c, line, sizeof line) > 0 && strncmp(line, "QUIT", 4) == 0)
		send_str(c, "221 2.0.0 bye\r\n");
}

static void *responder_main(void *arg)
{
	struct responder *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd pfd = { r->fd, POLLIN, 0 };
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		int c = accept(r->fd, NULL, NULL);
		if (c < 0)
			continue;
		serve_one(r, c);
		close(c);
	}
	return NULL;
}

static int listen_any(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 16) != 0)
		return -1;
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void responder_run(struct responder *r)
{
	assert_true(r->fd >= 0);
	assert_int_equal(pthread_create(&r->thread, NULL, responder_main, r), 0);
}

static void responder_start(struct responder *r)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->lock, NULL);
	r->fd = listen_any(&r->port);
	responder_run(r);
}

/* The same responder on a unix socket at path. */
static void responder_start_unix(struct responder *r, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->lock, NULL);
	assert_true(strlen(path) < sizeof sun.sun_path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	r->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(r->fd, (struct sockaddr *)&sun, sizeof sun), 0);
	assert_int_equal(listen(r->fd, 16), 0);
	responder_run(r);
}

static void responder_stop(struct responder *r)
{
	atomic_store(&r->stop, 1);
	pthread_join(r->thread, NULL);
	close(r->fd);
	pthread_mutex_destroy(&r->lock);
}

/* A port nothing listens on: bind, read the port, close. */
static int closed_port(void)
{
	int port;
	int fd = listen_any(&port);
	assert_true(fd >= 0);
	close(fd);
	return port;
}

/* ------------------------------------------------------------ pool by hand */

static void backend_init_tcp(struct backend *b, enum backend_kind kind, int port, int index)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&b->sa;
	char url[64];
	memset(b, 0, sizeof *b);
	snprintf(url, sizeof url, "%s://127.0.0.1:%d", kind == BACKEND_LMTP ? "lmtp" : "smtp", port);
	b->url = strdup(url);
	b->kind = kind;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	b->salen = sizeof *sin;
	snprintf(b->host, sizeof b->host, "127.0.0.1:%d", port);
	b->weight = 1;
	b->index = index;
	atomic_init(&b->own.up, 1);
}

static void backend_init_maildir(struct backend *b, const char *path, int index)
{
	char url[600];
	memset(b, 0, sizeof *b);
	snprintf(url, sizeof url, "maildir:%s", path);
	b->url = strdup(url);
	b->kind = BACKEND_MAILDIR;
	b->path = strdup(path);
	b->index = index;
	b->weight = 1;
	atomic_init(&b->own.up, 1);
}

/* lmtp:unix:/path as backend_parse_url leaves it: the socket in sa, no path. */
static void backend_init_unix(struct backend *b, const char *path, int index)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&b->sa;
	char url[200];
	memset(b, 0, sizeof *b);
	snprintf(url, sizeof url, "lmtp:unix:%s", path);
	b->url = strdup(url);
	b->kind = BACKEND_LMTP;
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
	b->salen = sizeof *sun;
	b->index = index;
	b->weight = 1;
	atomic_init(&b->own.up, 1);
}

static struct pool *pool_by_hand(size_t n, int fall, int rise)
{
	struct pool *p = calloc(1, sizeof *p);
	p->servers = calloc(n, sizeof *p->servers);
	p->nservers = n;
	p->fall = fall;
	p->rise = rise;
	return p;
}

static void pool_by_hand_free(struct pool *p)
{
	for (size_t i = 0; i < p->nservers; i++) {
		free(p->servers[i].url);
		free(p->servers[i].path);
	}
	for (size_t i = 0; i < p->nextra; i++) {
		free(p->extra[i].url);
		free(p->extra[i].path);
	}
	free(p->servers);
	free(p->extra);
	free(p);
}

/* ------------------------------------------------------------ running the loop */

static bool is_down(void *b) { return atomic_load(&backend_health((struct backend *)b)->up) == 0; }
static bool is_up(void *b) { return atomic_load(&backend_health((struct backend *)b)->up) == 1; }
static bool has_failed(void *b) { return atomic_load(&backend_health((struct backend *)b)->fails) >= 1; }
static bool has_ok_while_down(void *b) { return atomic_load(&backend_health((struct backend *)b)->oks) >= 1; }
static bool has_latency(void *b) { return atomic_load(&backend_health((struct backend *)b)->latency_us) > 0; }
static bool responder_seen_2(void *r) { return atomic_load(&((struct responder *)r)->sessions) >= 2; }

/* Drives the loop until health_stop's handles are closed. */
static void stop_and_drain(uv_loop_t *loop, struct health *h)
{
	health_stop(h);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* ------------------------------------------------------------ tests */

/* Healthy -> down after `fall` failures -> up after `rise` successes. */
static void test_fall_and_rise(void **state)
{
	struct responder r;
	uv_loop_t loop;
	responder_start(&r);
	struct pool *p = pool_by_hand(1, 2, 2);
	struct backend *b = &p->servers[0];
	backend_init_tcp(b, BACKEND_SMTP, r.port, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	/* a check's timeout this test does not test: one a stalled machine meets (with 500 ms
	 * a check answered at once but seen after a stall counted as a failure) */
	struct health *h = health_start(&loop, p, 40, 30000, "mx.test", NULL);
	assert_non_null(h);

	assert_true(run_until(&loop, responder_seen_2, &r, 3000));
	assert_true(run_until(&loop, has_latency, b, 3000));
	assert_int_equal(atomic_load(&backend_health(b)->up), 1);
	assert_int_equal(atomic_load(&backend_health(b)->fails), 0);
	pthread_mutex_lock(&r.lock);
	assert_string_equal(r.last_hello, "EHLO mx.test\r\n");
	pthread_mutex_unlock(&r.lock);

	static const struct { const char *label; int mode; } bad[] = {
		{ "greeting 554", MODE_REJECT_GREETING },
		{ "EHLO answered 502", MODE_EHLO_502 },
		{ "garbage instead of a reply", MODE_GARBAGE },
		{ "EHLO reply whose code changes (550- then 250)", MODE_EHLO_MIXED },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		print_message("row: %s\n", bad[i].label);
		atomic_store(&r.mode, bad[i].mode);
		assert_true(run_until(&loop, has_failed, b, 3000));
		/* One failure is not enough with fall = 2. */
		if (atomic_load(&backend_health(b)->fails) == 1)
			assert_int_equal(atomic_load(&backend_health(b)->up), 1);
		assert_true(run_until(&loop, is_down, b, 3000));
		assert_true(atomic_load(&backend_health(b)->fails) >= 2);

		atomic_store(&r.mode, MODE_OK);
		assert_true(run_until(&loop, has_ok_while_down, b, 3000));
		/* One success is not enough with rise = 2. */
		if (atomic_load(&backend_health(b)->oks) == 1)
			assert_int_equal(atomic_load(&backend_health(b)->up), 0);
		assert_true(run_until(&loop, is_up, b, 3000));
		assert_int_equal(atomic_load(&backend_health(b)->fails), 0);
	}
	stop_and_drain(&loop, h);
	responder_stop(&r);
	pool_by_hand_free(p);
}

/* A closed port and a server that never greets (the 150 ms timeout: the feature) both go
 * down. Only going down is asserted: the timeout is a lower bound, a loaded machine meets it. */
static void test_closed_stall(void **state)
{
	struct responder stall;
	uv_loop_t loop;
	responder_start(&stall);
	atomic_store(&stall.mode, MODE_STALL);
	struct pool *p = pool_by_hand(2, 1, 1);
	backend_init_tcp(&p->servers[0], BACKEND_SMTP, closed_port(), 0);
	backend_init_tcp(&p->servers[1], BACKEND_SMTP, stall.port, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 50, 150, "mx.test", NULL);
	assert_non_null(h);
	assert_true(run_until(&loop, is_down, &p->servers[0], 3000));
	assert_true(run_until(&loop, is_down, &p->servers[1], 3000));
	stop_and_drain(&loop, h);
	responder_stop(&stall);
	pool_by_hand_free(p);
}

/* An LMTP backend is greeted with LHLO; extra (route-only) servers are checked too. Its
 * checks have a timeout no run reaches: with the 150 ms of test_closed_stall (where they
 * were checked before), a check answered after a 150 ms stall of this process failed, and
 * under tests/tools/jumpclock.c at 5 ms a clock read none was ever answered in time. */
static void test_lmtp_extra(void **state)
{
	struct responder ok;
	uv_loop_t loop;
	responder_start(&ok);
	struct pool *p = pool_by_hand(1, 1, 1);
	backend_init_tcp(&p->servers[0], BACKEND_SMTP, closed_port(), 0);
	p->extra = calloc(1, sizeof *p->extra);
	p->nextra = 1;
	backend_init_tcp(&p->extra[0], BACKEND_LMTP, ok.port, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 50, 30000, "mx.test", NULL);
	assert_non_null(h);
	/* hang guards, not timings */
	assert_true(run_until(&loop, has_latency, &p->extra[0], 30000));
	assert_true(run_until(&loop, is_up, &p->extra[0], 30000));
	pthread_mutex_lock(&ok.lock);
	assert_string_equal(ok.last_hello, "LHLO mx.test\r\n");
	pthread_mutex_unlock(&ok.lock);
	stop_and_drain(&loop, h);
	responder_stop(&ok);
	pool_by_hand_free(p);
}

static void test_lmtp_unix(void **state)
{
	char dir[] = "/tmp/mx_test_health_XXXXXX", sock[200], missing[200];
	struct responder r;
	uv_loop_t loop;
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof sock, "%s/lmtp.sock", dir);
	snprintf(missing, sizeof missing, "%s/none.sock", dir);
	responder_start_unix(&r, sock);
	struct pool *p = pool_by_hand(2, 1, 1);
	backend_init_unix(&p->servers[0], sock, 0);
	backend_init_unix(&p->servers[1], missing, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 50, 30000, "mx.test", NULL);   /* not under test */
	assert_non_null(h);
	assert_true(run_until(&loop, has_latency, &p->servers[0], 3000));
	assert_true(run_until(&loop, is_down, &p->servers[1], 3000));
	assert_int_equal(atomic_load(&backend_health(&p->servers[0])->up), 1);
	pthread_mutex_lock(&r.lock);
	assert_string_equal(r.last_hello, "LHLO mx.test\r\n");
	pthread_mutex_unlock(&r.lock);
	stop_and_drain(&loop, h);
	responder_stop(&r);
	pool_by_hand_free(p);
	unlink(sock);
	rmdir(dir);
}

static void test_maildir(void **state)
{
	char root[] = "/tmp/mx_test_health_XXXXXX";
	char good[600], bad[600], file[600], cmd[700];
	uv_loop_t loop;

	assert_non_null(mkdtemp(root));
	snprintf(good, sizeof good, "%s/Maildir", root);
	snprintf(file, sizeof file, "%s/file", root);
	snprintf(bad, sizeof bad, "%s/file/Maildir", root);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	struct pool *p = pool_by_hand(2, 1, 1);
	backend_init_maildir(&p->servers[0], good, 0);
	backend_init_maildir(&p->servers[1], bad, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 30, 1000, "mx.test", NULL);
	assert_non_null(h);
	assert_true(run_until(&loop, is_down, &p->servers[1], 3000));
	assert_true(run_until(&loop, has_latency, &p->servers[0], 3000));
	assert_int_equal(atomic_load(&backend_health(&p->servers[0])->up), 1);
	/* The bad one comes back once the obstacle is gone. */
	unlink(file);
	assert_true(run_until(&loop, is_up, &p->servers[1], 3000));
	stop_and_drain(&loop, h);
	pool_by_hand_free(p);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

/* Stop while checks are in flight, free the pool at once: nothing may touch it after
 * (ASan would see it), and every handle closes. */
static void test_stop_in_flight(void **state)
{
	struct responder stall;
	uv_loop_t loop;
	char root[] = "/tmp/mx_test_health_XXXXXX";
	assert_non_null(mkdtemp(root));
	responder_start(&stall);
	atomic_store(&stall.mode, MODE_STALL);
	struct pool *p = pool_by_hand(3, 1, 1);
	backend_init_tcp(&p->servers[0], BACKEND_SMTP, stall.port, 0);
	backend_init_tcp(&p->servers[1], BACKEND_SMTP, closed_port(), 1);
	backend_init_maildir(&p->servers[2], root, 2);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 1000, 1000, NULL, NULL);
	assert_non_null(h);
	uv_run(&loop, UV_RUN_NOWAIT);   /* first round started: connects and work queued */
	health_stop(h);
	pool_by_hand_free(p);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	health_stop(NULL);
	responder_stop(&stall);
	rmdir(root);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

/* backends.require_tls: a server whose EHLO reply offers no STARTTLS gets no message
 * (relay.c), so its probe fails too and it stays down. */
static void test_require_tls(void **state)
{
	struct responder r;
	uv_loop_t loop;
	responder_start(&r);
	struct pool *p = pool_by_hand(1, 1, 1);
	p->require_tls = true;
	backend_init_tcp(&p->servers[0], BACKEND_SMTP, r.port, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, p, 30, 30000, "mx.test", NULL);   /* not under test */
	assert_non_null(h);
	assert_true(run_until(&loop, is_down, &p->servers[0], 3000));
	assert_true(run_until(&loop, responder_seen_2, &r, 3000));
	assert_int_equal(atomic_load(&backend_health(&p->servers[0])->up), 0);
	stop_and_drain(&loop, h);
	responder_stop(&r);
	pool_by_hand_free(p);
}

/* The probes of the current generation's pool write the URL's record, which an older
 * generation's pool (a session begun before a reload) reads: it sees the server go down and
 * come back, and the transitions are the record's, logged once. */
static void test_state_by_url(void **state)
{
	struct responder r;
	uv_loop_t loop;
	struct backend_counts *rec = calloc(1, sizeof *rec);
	responder_start(&r);
	struct pool *old = pool_by_hand(1, 1, 1), *cur = pool_by_hand(1, 1, 1);
	backend_init_tcp(&old->servers[0], BACKEND_SMTP, r.port, 0);
	backend_init_tcp(&cur->servers[0], BACKEND_SMTP, r.port, 0);
	atomic_init(&rec->health.up, 1);
	old->servers[0].counts = cur->servers[0].counts = rec;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct health *h = health_start(&loop, cur, 40, 30000, "mx.test", NULL);   /* not under test */
	assert_non_null(h);
	assert_true(run_until(&loop, has_latency, &old->servers[0], 3000));
	atomic_store(&r.mode, MODE_REJECT_GREETING);
	assert_true(run_until(&loop, is_down, &old->servers[0], 3000));
	assert_false(backend_is_up(&cur->servers[0]));
	atomic_store(&r.mode, MODE_OK);
	assert_true(run_until(&loop, is_up, &old->servers[0], 3000));
	/* the pool's own copies are not the state */
	assert_int_equal(atomic_load(&old->servers[0].own.up), 1);
	assert_int_equal(atomic_load(&old->servers[0].own.fails), 0);
	stop_and_drain(&loop, h);
	responder_stop(&r);
	pool_by_hand_free(old);
	pool_by_hand_free(cur);
	free(rec);
}

int main(void)
{
	/* As proxy/main.c does: libuv writes without MSG_NOSIGNAL, so a probe writing to a
	 * responder that closed first must get EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fall_and_rise),
		cmocka_unit_test(test_closed_stall),
		cmocka_unit_test(test_lmtp_extra),
		cmocka_unit_test(test_lmtp_unix),
		cmocka_unit_test(test_maildir),
		cmocka_unit_test(test_stop_in_flight),
		cmocka_unit_test(test_require_tls),
		cmocka_unit_test(test_state_by_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
