/* test_hostres.c — hostres_set_cancel: a resolution against a DNS server that never answers
 * gives up at the cancel (the daemon's SIGTERM abandons a reload's resolution so), not at its
 * deadline; a cancelled set asks nothing more. No clock: the cancel comes once the server has
 * the query, the deadline is an hour (a cancel not seen: the test runs into ctest's timeout),
 * and the server's socket shows what was asked. It bounded the time taken (700 ms, then
 * 100 ms), which a loaded machine can exceed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/hostres.h"

#define HOUR_MS 3600000u     /* a deadline no run reaches */

/* A UDP socket on 127.0.0.1 that reads nothing: a DNS server that drops every query. */
static int silent_server(char *servers, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(servers, cap, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
	return fd;
}

struct cancel_arg {
	int fd;                      /* the silent server's socket */
	struct hostres_set *s;
};

/* Cancels s once the server has a query: the resolution is waiting for its answer then. */
static void *cancel_at_query(void *arg)
{
	struct cancel_arg *a = arg;
	char buf[512];

	assert_true(recv(a->fd, buf, sizeof(buf), 0) > 0);
	hostres_set_cancel(a->s);
	return NULL;
}

/* The queries the server got and has not read yet (none waiting: 0). */
static int queries_waiting(int fd)
{
	char buf[512];
	int n = 0;

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		n++;
	return n;
}

static void test_cancel_ends_the_wait(void **state)
{
	char servers[64];
	int fd = silent_server(servers, sizeof(servers));
	struct hostres_set *s = hostres_set_new();
	struct cancel_arg a = { fd, s };
	pthread_t t;

	(void)state;
	assert_int_equal(hostres_set_add(s, "never.answered.test"), 0);
	assert_int_equal(hostres_set_add(s, "192.0.2.7"), 0);   /* numeric: resolved already */
	assert_int_equal(pthread_create(&t, NULL, cancel_at_query, &a), 0);
	hostres_set_resolve(s, servers, HOUR_MS, 1);
	pthread_join(t, NULL);
	const struct hostres_entry *e = hostres_set_find(s, "never.answered.test");
	assert_non_null(e);
	assert_non_null(e->err);
	assert_int_equal(e->n, 0);
	e = hostres_set_find(s, "192.0.2.7");
	assert_null(e->err);
	assert_int_equal(e->n, 1);

	/* cancelled: a later resolution asks nothing */
	queries_waiting(fd);                                    /* the first's other tries, if any */
	assert_int_equal(hostres_set_add(s, "another.test"), 0);
	hostres_set_resolve(s, servers, HOUR_MS, 1);
	assert_int_equal(queries_waiting(fd), 0);
	e = hostres_set_find(s, "another.test");
	assert_non_null(e->err);
	assert_non_null(strstr(e->err, "cancelled"));
	hostres_set_free(s);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_ends_the_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
