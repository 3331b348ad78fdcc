/* test_hostres.c — hostres_set_cancel: a resolution against a DNS server that never answers
 * gives up within HOSTRES_CANCEL_MS of the cancel (the daemon's SIGTERM abandons a reload's
 * resolution so), not at its deadline; a cancelled set asks nothing more. */
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

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

static void *cancel_later(void *arg)
{
	usleep(200 * 1000);
	hostres_set_cancel(arg);
	return NULL;
}

static void test_cancel_ends_the_wait(void **state)
{
	char servers[64];
	int fd = silent_server(servers, sizeof(servers));
	struct hostres_set *s = hostres_set_new();
	pthread_t t;

	(void)state;
	assert_int_equal(hostres_set_add(s, "never.answered.test"), 0);
	assert_int_equal(hostres_set_add(s, "192.0.2.7"), 0);   /* numeric: resolved already */
	uint64_t t0 = now_ms();
	assert_int_equal(pthread_create(&t, NULL, cancel_later, s), 0);
	hostres_set_resolve(s, servers, 20000, 1);
	uint64_t took = now_ms() - t0;
	pthread_join(t, NULL);
	assert_true(took < 200 + 10 * HOSTRES_CANCEL_MS);     /* not the 20 s deadline */
	const struct hostres_entry *e = hostres_set_find(s, "never.answered.test");
	assert_non_null(e);
	assert_non_null(e->err);
	assert_int_equal(e->n, 0);
	e = hostres_set_find(s, "192.0.2.7");
	assert_null(e->err);
	assert_int_equal(e->n, 1);

	/* cancelled: a later resolution asks nothing, at once */
	assert_int_equal(hostres_set_add(s, "another.test"), 0);
	t0 = now_ms();
	hostres_set_resolve(s, servers, 20000, 1);
	assert_true(now_ms() - t0 < 100);
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
