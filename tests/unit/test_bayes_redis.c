/* test_bayes_redis.c — the classifier's Redis store (rules/bayes_redis.c): opening connects
 * nothing (the daemon opens it on a worker's event loop), the first call connects, and a
 * store whose connect failed is tried again after a back-off (1 s, doubling, at most 30 s)
 * while every call in between fails at once, without a connect and without a log line.
 *
 * The "Redis" is a listening socket the test accepts from only to count (and close) the
 * connections made to it: a redis://HOST:PORT/1 store's SELECT is never answered, so each
 * connect fails at its 1000 ms timeout (room for a peer thread to answer in time on a loaded
 * machine). The back-off's clock is the test's (bayes_redis_set_clock); nothing here depends
 * on how long a step takes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rules/bayes_db.h"
#include "rules/bayes_db_int.h"
#include "stderr_capture.h"

static uint64_t fake_ms = 1000000;

static uint64_t fake_now(void)
{
	return fake_ms;
}

/* A listener on 127.0.0.1 (non-blocking); its port in *port. */
static int peer_open(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The connections made to the listener since the last call (accepted and closed). */
static int peer_drain(int lfd)
{
	int n = 0, fd;

	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		close(fd);
		n++;
	}
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	return n;
}

/* One connection answered like a Redis for its first three commands (the SELECT, the try's
 * PING, the check's PING: +OK), then closed when the next command comes (a pooled
 * connection that dies). */
static void *peer_answer_once(void *arg)
{
	int lfd = *(int *)arg, fd;
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	char buf[4096];

	if (poll(&p, 1, 30000) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		return NULL;
	for (int i = 0; i < 3; i++)
		if (read(fd, buf, sizeof(buf)) <= 0 || write(fd, "+OK\r\n", 5) != 5)
			break;
	(void)read(fd, buf, sizeof(buf));
	close(fd);
	return NULL;
}

static size_t count(const char *text, const char *what)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static int lookup(struct bayes_db *db)
{
	uint64_t key = 42;
	struct bayes_counts c;
	struct bayes_totals t;

	return bayes_db_lookup(db, &key, 1, &c, &t);
}

static void test_open_connects_nothing_then_backs_off(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 1000 };
	char spec[64], err[256], log[8192];
	struct stderr_capture cap;
	struct bayes_db *db;
	pthread_t th;
	int port, lfd = peer_open(&port);

	(void)state;
	bayes_redis_set_clock(fake_now);
	snprintf(spec, sizeof(spec), "redis://127.0.0.1:%d/1", port);
	/* before: the open connected (and, the SELECT unanswered, failed at its timeout) */
	db = bayes_db_open(spec, &o, err, sizeof(err));
	if (db == NULL)
		fail_msg("open %s: %s", spec, err);
	assert_int_equal(peer_drain(lfd), 0);

	stderr_capture_start(&cap);
	/* the first call connects; the SELECT times out: the store is down */
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_drain(lfd), 1);
	/* until the next try (1 s) every call fails at once, no connect */
	assert_int_equal(lookup(db), -1);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next try in 1000 ms"));
	fake_ms += 999;
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_drain(lfd), 0);
	/* the try: one connect, it fails, the wait doubles */
	fake_ms += 1;
	assert_int_equal(lookup(db), -1);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_drain(lfd), 1);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next try in 2000 ms"));
	fake_ms += 1999;
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_drain(lfd), 0);
	/* ... 4, 8, 16, then 30 s at most */
	for (int i = 0; i < 5; i++) {
		fake_ms += 60000;
		assert_int_equal(lookup(db), -1);
		assert_int_equal(peer_drain(lfd), 1);
	}
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next try in 30000 ms"));
	stderr_capture_end(&cap, log, sizeof(log));
	/* one line a failed connect, none for the calls that failed at once */
	if (count(log, "event=bayes_error store=redis reason=\"redis 127.0.0.1:") != 7)
		fail_msg("a line per failed connect (7):\n%s", log);
	assert_int_equal(count(log, "next try in 30000 ms\""), 2);

	/* the store answers again: the next try connects, and the back-off starts over */
	assert_int_equal(pthread_create(&th, NULL, peer_answer_once, &lfd), 0);
	fake_ms += 60000;
	stderr_capture_start(&cap);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), 0);
	/* after the bayes_error lines, the answer is said once */
	stderr_capture_end(&cap, log, sizeof(log));
	assert_int_equal(count(log, "event=bayes_store_up store=redis"), 1);
	stderr_capture_start(&cap);
	/* its pooled connection dies (the peer closes it at the next command): a failed
	 * request, not a failed connect — the next call connects at once */
	assert_int_equal(lookup(db), -1);
	pthread_join(th, NULL);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_drain(lfd), 1);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	stderr_capture_end(&cap, log, sizeof(log));
	assert_non_null(strstr(err, "next try in 1000 ms"));
	assert_int_equal(count(log, "event=bayes_error store=redis"), 1);

	bayes_db_close(db);
	close(lfd);
	bayes_redis_set_clock(NULL);
}

/* A refused port: the open succeeds, the check says why. */
static void test_check_refused(void **state)
{
	char err[256];
	struct bayes_db *db;

	(void)state;
	db = bayes_db_open("redis://127.0.0.1:1", NULL, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	if (strstr(err, "127.0.0.1:1") == NULL || strstr(err, "refused") == NULL)
		fail_msg("the reason names the address and the refusal: %s", err);
	bayes_db_close(db);
	assert_null(bayes_db_open("redis://", NULL, err, sizeof(err)));
}

/* A Redis that answers +OK to every read, counting the connections it accepts; the first
 * connection's first command (the SELECT) is answered only once gate is set. */
struct peer_ok {
	int lfd;
	atomic_int accepted;
	atomic_bool got_first;        /* the first connection's SELECT was read */
	atomic_bool gate;
	atomic_bool stop;
};

static void *peer_ok_main(void *arg)
{
	struct peer_ok *p = arg;
	struct pollfd f[17];
	int n = 1, first = -1;
	bool first_pending = false;
	char buf[4096];

	f[0].fd = p->lfd;
	f[0].events = POLLIN;
	while (!atomic_load(&p->stop)) {
		if (first_pending && atomic_load(&p->gate)) {
			first_pending = false;
			if (write(first, "+OK\r\n", 5) != 5)
				break;
		}
		if (poll(f, (nfds_t)n, 10) <= 0)
			continue;
		if (f[0].revents & POLLIN) {
			int fd = accept(p->lfd, NULL, NULL);

			if (fd >= 0 && n < 17) {
				f[n].fd = fd;
				f[n].events = POLLIN;
				f[n].revents = 0;
				if (first < 0)
					first = fd;
				n++;
				atomic_fetch_add(&p->accepted, 1);
			} else if (fd >= 0) {
				close(fd);
			}
		}
		for (int i = 1; i < n; i++) {
			if (!(f[i].revents & (POLLIN | POLLHUP)))
				continue;
			if (read(f[i].fd, buf, sizeof(buf)) <= 0) {
				f[i].fd = -1;
				continue;
			}
			if (f[i].fd == first && !atomic_load(&p->got_first)) {
				first_pending = true;
				atomic_store(&p->got_first, true);
			} else if (write(f[i].fd, "+OK\r\n", 5) != 5) {
				f[i].fd = -1;
			}
		}
	}
	for (int i = 1; i < n; i++)
		if (f[i].fd >= 0)
			close(f[i].fd);
	return NULL;
}

static void *check_main(void *arg)
{
	char err[256];

	return (void *)(intptr_t)bayes_db_check(arg, err, sizeof(err));
}

/* Bounded wait for a condition another thread makes true (no timing asserted). */
static bool until_true(bool (*cond)(void *), void *arg)
{
	for (int i = 0; i < 30000; i++) {
		if (cond(arg))
			return true;
		usleep(1000);
	}
	return false;
}

static bool got_first(void *arg)
{
	return atomic_load(&((struct peer_ok *)arg)->got_first);
}

static bool five_wait(void *arg)
{
	(void)arg;
	return bayes_redis_waiting() == 5;
}

/* 1 + 5 concurrent calls while the store's first connect is under way: the 5 wait for its
 * outcome and then share its connection, one connect in all (on the code before, the first
 * woke them before its connection was in the pool, and each connected: 6). */
static void test_first_connect_shared(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 10000 };
	struct peer_ok p = { 0 };
	pthread_t peer, th[6];
	char err[256], url[64];
	struct bayes_db *db;
	int port;

	(void)state;
	bayes_redis_set_clock(NULL);
	p.lfd = peer_open(&port);
	assert_int_equal(pthread_create(&peer, NULL, peer_ok_main, &p), 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/1", port);
	db = bayes_db_open(url, &o, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(pthread_create(&th[0], NULL, check_main, db), 0);
	assert_true(until_true(got_first, &p));
	for (int i = 1; i < 6; i++)
		assert_int_equal(pthread_create(&th[i], NULL, check_main, db), 0);
	assert_true(until_true(five_wait, NULL));
	atomic_store(&p.gate, true);
	for (int i = 0; i < 6; i++) {
		void *rc;

		assert_int_equal(pthread_join(th[i], &rc), 0);
		assert_int_equal((intptr_t)rc, 0);
	}
	assert_int_equal(atomic_load(&p.accepted), 1);
	bayes_db_close(db);
	atomic_store(&p.stop, true);
	assert_int_equal(pthread_join(peer, NULL), 0);
	close(p.lfd);
}

/* A Redis that reads every command (PING and HMGET, the only ones sent here) and counts
 * them; while answer is set it answers each (+PONG, an HMGET's two nils), else it is silent
 * (accepts, reads, never answers: a frozen server). */
struct peer_cmd {
	int lfd;
	atomic_int cmds;
	atomic_bool answer;
	atomic_bool stop;
};

struct peer_conn {
	int fd;
	char buf[8192];
	size_t len, scanned;
};

static void *peer_cmd_main(void *arg)
{
	struct peer_cmd *p = arg;
	struct peer_conn *c = calloc(32, sizeof(*c));
	struct pollfd f[33];
	int n = 0;

	assert_non_null(c);
	while (!atomic_load(&p->stop)) {
		f[0].fd = p->lfd;
		f[0].events = POLLIN;
		for (int i = 0; i < n; i++) {
			f[i + 1].fd = c[i].fd;
			f[i + 1].events = POLLIN;
		}
		if (poll(f, (nfds_t)n + 1, 10) <= 0)
			continue;
		if ((f[0].revents & POLLIN) && n < 32) {
			int fd = accept(p->lfd, NULL, NULL);

			if (fd >= 0)
				c[n++] = (struct peer_conn){ .fd = fd };
		}
		for (int i = 0; i < n; i++) {
			struct peer_conn *k = &c[i];
			ssize_t got;

			if (k->fd < 0 || !(f[i + 1].revents & (POLLIN | POLLHUP)))
				continue;
			got = read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
			if (got <= 0) {
				close(k->fd);
				k->fd = -1;
				continue;
			}
			k->len += (size_t)got;
			k->buf[k->len] = '\0';
			for (;;) {
				char *ping = strstr(k->buf + k->scanned, "\r\nPING\r\n");
				char *hmget = strstr(k->buf + k->scanned, "\r\nHMGET\r\n");
				char *at = ping && (!hmget || ping < hmget) ? ping : hmget;
				const char *ans = at == ping ? "+PONG\r\n" : "*2\r\n$-1\r\n$-1\r\n";

				if (at == NULL)
					break;
				k->scanned = (size_t)(at - k->buf) + 2;
				atomic_fetch_add(&p->cmds, 1);
				if (atomic_load(&p->answer) && write(k->fd, ans, strlen(ans)) < 0)
					break;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (c[i].fd >= 0)
			close(c[i].fd);
	free(c);
	return NULL;
}

/* The commands the peer read since the last call. */
static int peer_cmds(struct peer_cmd *p, int *seen)
{
	int now = atomic_load(&p->cmds), d = now - *seen;

	*seen = now;
	return d;
}

/* A Redis that accepts and never answers: each request times out on its connection (the
 * connect itself works, the kernel completes it). Three in a row, no answer between, set
 * the store down as a failed connect does: the calls fail at once, without a request, until
 * the next try (1 s, doubling); a try is a connect and a PING; an answered request ends the
 * count and the back-off, and the first answer after the bayes_error line is logged once
 * (event=bayes_store_up). On the code before, every call sent its request and waited its
 * timeout: the 5 calls after the third timeout sent 10 commands. Requests counted at the
 * peer; the back-off's clock is the test's; the 1000 ms timeouts (room for the peer thread
 * to answer in time) are never measured. */
static void test_request_timeouts_back_off(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 1000 };
	struct peer_cmd p = { 0 };
	char url[64], err[256], log[8192];
	struct stderr_capture cap;
	struct bayes_db *db;
	pthread_t peer;
	int port, seen = 0;

	(void)state;
	bayes_redis_set_clock(fake_now);
	p.lfd = peer_open(&port);
	atomic_store(&p.answer, true);
	assert_int_equal(pthread_create(&peer, NULL, peer_cmd_main, &p), 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	db = bayes_db_open(url, &o, err, sizeof(err));
	assert_non_null(db);
	stderr_capture_start(&cap);
	/* the check: the try's PING and its own, answered */
	if (bayes_db_check(db, err, sizeof(err)) != 0)
		fail_msg("check: %s", err);
	assert_int_equal(peer_cmds(&p, &seen), 2);
	assert_int_equal(lookup(db), 0);
	assert_int_equal(peer_cmds(&p, &seen), 2);

	/* silent: one timeout, two: each call still asks (a connect, its request) */
	atomic_store(&p.answer, false);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_cmds(&p, &seen), 4);
	/* the third in a row: down */
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_cmds(&p, &seen), 2);
	for (int i = 0; i < 5; i++)
		assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_cmds(&p, &seen), 0);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	if (strstr(err, "next try in 1000 ms") == NULL)
		fail_msg("down until the next try in 1000 ms: %s", err);
	assert_int_equal(peer_cmds(&p, &seen), 0);
	/* the try: a connect and a PING, unanswered: down again, twice as long */
	fake_ms += 1000;
	assert_int_equal(lookup(db), -1);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_cmds(&p, &seen), 1);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next try in 2000 ms"));
	stderr_capture_end(&cap, log, sizeof(log));
	if (count(log, "event=bayes_error store=redis") != 2 ||
	    count(log, "requests in a row; the classifier abstains until it answers, next try in "
	    "1000 ms\"") != 1 || count(log, "PING: ") != 1)
		fail_msg("a line when the timeouts set it down, one for the try:\n%s", log);
	assert_int_equal(count(log, "event=bayes_store_up"), 0);

	/* it answers again: the try's PING; the line says so, once */
	atomic_store(&p.answer, true);
	fake_ms += 2000;
	stderr_capture_start(&cap);
	assert_int_equal(lookup(db), 0);
	assert_int_equal(lookup(db), 0);
	assert_int_equal(peer_cmds(&p, &seen), 5);
	/* two timeouts, an answer, two timeouts: the answer ended the count */
	for (int round = 0; round < 2; round++) {
		atomic_store(&p.answer, false);
		assert_int_equal(lookup(db), -1);
		assert_int_equal(lookup(db), -1);
		atomic_store(&p.answer, true);
		assert_int_equal(lookup(db), 0);
		assert_int_equal(peer_cmds(&p, &seen), 6);
	}
	/* and the back-off: down again, the next try in 1000 ms (not 4000) */
	atomic_store(&p.answer, false);
	for (int i = 0; i < 4; i++)
		assert_int_equal(lookup(db), -1);
	assert_int_equal(peer_cmds(&p, &seen), 6);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next try in 1000 ms"));
	stderr_capture_end(&cap, log, sizeof(log));
	if (count(log, "event=bayes_store_up store=redis") != 1 ||
	    count(log, "event=bayes_error store=redis") != 1)
		fail_msg("one bayes_store_up, then one bayes_error:\n%s", log);

	bayes_db_close(db);
	atomic_store(&p.stop, true);
	assert_int_equal(pthread_join(peer, NULL), 0);
	close(p.lfd);
	bayes_redis_set_clock(NULL);
}

/* A Redis for test_late_connect_stays_down: SELECT answered (+OK) at once, except the one
 * read while hold is set: that one gets "+" half a timeout later (the client's read returns
 * and waits its timeout again) and "OK\r\n" once release is set. PING and HMGET are counted
 * and answered only while answer is set. */
struct peer_sel {
	int lfd;
	uint64_t half_ms;             /* when the held SELECT's first byte goes */
	atomic_int cmds;              /* PING and HMGET read */
	atomic_bool answer;
	atomic_bool hold;
	atomic_bool held;             /* the held SELECT was read */
	atomic_bool release;
	atomic_bool stop;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *peer_sel_main(void *arg)
{
	struct peer_sel *p = arg;
	struct peer_conn *c = calloc(32, sizeof(*c));
	struct pollfd f[33];
	int n = 0, held_fd = -1;
	uint64_t held_at = 0;
	bool plus_sent = false, ok_sent = false;

	assert_non_null(c);
	while (!atomic_load(&p->stop)) {
		if (held_fd >= 0 && !plus_sent && mono_ms() >= held_at + p->half_ms)
			plus_sent = write(held_fd, "+", 1) == 1;
		if (held_fd >= 0 && plus_sent && !ok_sent && atomic_load(&p->release))
			ok_sent = write(held_fd, "OK\r\n", 4) == 4;
		f[0].fd = p->lfd;
		f[0].events = POLLIN;
		for (int i = 0; i < n; i++) {
			f[i + 1].fd = c[i].fd;
			f[i + 1].events = POLLIN;
		}
		if (poll(f, (nfds_t)n + 1, 5) <= 0)
			continue;
		if ((f[0].revents & POLLIN) && n < 32) {
			int fd = accept(p->lfd, NULL, NULL);

			if (fd >= 0)
				c[n++] = (struct peer_conn){ .fd = fd };
		}
		for (int i = 0; i < n; i++) {
			struct peer_conn *k = &c[i];
			ssize_t got;

			if (k->fd < 0 || !(f[i + 1].revents & (POLLIN | POLLHUP)))
				continue;
			got = read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
			if (got <= 0) {
				if (k->fd == held_fd)
					held_fd = -2;
				close(k->fd);
				k->fd = -1;
				continue;
			}
			k->len += (size_t)got;
			k->buf[k->len] = '\0';
			for (;;) {
				char *sel = strstr(k->buf + k->scanned, "\r\nSELECT\r\n");
				char *ping = strstr(k->buf + k->scanned, "\r\nPING\r\n");
				char *hmget = strstr(k->buf + k->scanned, "\r\nHMGET\r\n");
				char *at = sel;

				if (ping && (!at || ping < at))
					at = ping;
				if (hmget && (!at || hmget < at))
					at = hmget;
				if (at == NULL)
					break;
				k->scanned = (size_t)(at - k->buf) + 2;
				if (at == sel && atomic_load(&p->hold) && held_fd == -1) {
					held_fd = k->fd;
					held_at = mono_ms();
					atomic_store(&p->held, true);
				} else if (at == sel) {
					if (write(k->fd, "+OK\r\n", 5) != 5)
						break;
				} else {
					const char *ans = at == ping ? "+PONG\r\n" : "*2\r\n$-1\r\n$-1\r\n";

					atomic_fetch_add(&p->cmds, 1);
					if (atomic_load(&p->answer) && write(k->fd, ans, strlen(ans)) < 0)
						break;
				}
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (c[i].fd >= 0)
			close(c[i].fd);
	free(c);
	return NULL;
}

static bool sel_held(void *arg)
{
	return atomic_load(&((struct peer_sel *)arg)->held);
}

static void *lookup_main(void *arg)
{
	return (void *)(intptr_t)lookup(arg);
}

/* A plain connect (the store up when it began) that ends after another call's third
 * request timeout set the store down leaves it down: only an answer puts it back up. Call X
 * connects while the store is up (two timeouts so far); its SELECT is held by the peer while
 * the main thread's lookup times out a third time (down, next try in 1000 ms on the test's
 * clock, which does not move); then X's connect completes and its HMGET goes unanswered. The
 * next lookup, inside the back-off, must send nothing. On the code before, X's connect set
 * the store up with no PING: that lookup connected and sent its HMGET (1 command) and waited
 * its timeout. The peer sends the held SELECT's first byte half a timeout after reading it so
 * that X's connect outlives the third timeout; that spacing only decides whether the code
 * before is caught — on this code every interleaving gives 0 commands. */
static void test_late_connect_stays_down(void **state)
{
	struct bayes_db_options o = { .timeout_ms = 1000 };
	struct peer_sel p = { .half_ms = 500 };
	char url[64], err[256];
	struct stderr_capture cap;
	char log[8192];
	struct bayes_db *db;
	pthread_t peer, x;
	void *xrc;
	int port;

	(void)state;
	bayes_redis_set_clock(fake_now);
	p.lfd = peer_open(&port);
	atomic_store(&p.answer, true);
	assert_int_equal(pthread_create(&peer, NULL, peer_sel_main, &p), 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/1", port);
	db = bayes_db_open(url, &o, err, sizeof(err));
	assert_non_null(db);
	stderr_capture_start(&cap);
	if (bayes_db_check(db, err, sizeof(err)) != 0)
		fail_msg("check: %s", err);
	/* silent: two timeouts (the pooled connection's, then a new one's) */
	atomic_store(&p.answer, false);
	assert_int_equal(lookup(db), -1);
	assert_int_equal(lookup(db), -1);
	/* X connects while the store is up; its SELECT is held */
	atomic_store(&p.hold, true);
	assert_int_equal(pthread_create(&x, NULL, lookup_main, db), 0);
	assert_true(until_true(sel_held, &p));
	/* the third timeout in a row: down */
	assert_int_equal(lookup(db), -1);
	assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
	if (strstr(err, "next try in 1000 ms") == NULL)
		fail_msg("down after the third timeout: %s", err);
	/* X's connect completes, its request times out */
	atomic_store(&p.release, true);
	assert_int_equal(pthread_join(x, &xrc), 0);
	assert_int_equal((intptr_t)xrc, -1);
	/* inside the back-off: nothing sent */
	{
		int before = atomic_load(&p.cmds);

		assert_int_equal(lookup(db), -1);
		assert_int_equal(bayes_db_check(db, err, sizeof(err)), -1);
		if (atomic_load(&p.cmds) != before)
			fail_msg("a call inside the back-off sent %d commands (a connect that ended "
			    "after the store was set down put it back up)", atomic_load(&p.cmds) - before);
		assert_non_null(strstr(err, "next try in"));
	}
	stderr_capture_end(&cap, log, sizeof(log));
	assert_int_equal(count(log, "event=bayes_store_up"), 0);

	bayes_db_close(db);
	atomic_store(&p.stop, true);
	assert_int_equal(pthread_join(peer, NULL), 0);
	close(p.lfd);
	bayes_redis_set_clock(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_connects_nothing_then_backs_off),
		cmocka_unit_test(test_check_refused),
		cmocka_unit_test(test_first_connect_shared),
		cmocka_unit_test(test_request_timeouts_back_off),
		cmocka_unit_test(test_late_connect_stays_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
