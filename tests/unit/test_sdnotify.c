/* test_sdnotify.c — datagrams on $NOTIFY_SOCKET: filesystem and abstract ('@') names,
 * no socket, a malformed name, RELOADING with MONOTONIC_USEC, the watchdog interval. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/sdnotify.h"

/* Binds a datagram socket at name ("@x" abstract) and points $NOTIFY_SOCKET at it. */
static int listen_at(const char *name)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	memcpy(sun.sun_path, name, n);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	else
		n++;
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)), 0);
	setenv("NOTIFY_SOCKET", name, 1);
	return fd;
}

static void recv_one(int fd, char *buf, size_t sz)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	ssize_t n = recv(fd, buf, sz - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
}

static void test_path_socket(void **state)
{
	char path[108], buf[256];
	snprintf(path, sizeof(path), "/tmp/mx-sdnotify-%d.sock", (int)getpid());
	unlink(path);
	int fd = listen_at(path);
	assert_int_equal(sdnotify_send("READY=1"), 1);
	recv_one(fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1");
	assert_int_equal(sdnotify_printf("STATUS=%d sessions", 3), 1);
	recv_one(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=3 sessions");
	close(fd);
	unlink(path);
}

static void test_abstract_socket(void **state)
{
	char name[64], buf[256];
	snprintf(name, sizeof(name), "@mx-sdnotify-test-%d", (int)getpid());
	int fd = listen_at(name);
	assert_int_equal(sdnotify_reloading(), 1);
	recv_one(fd, buf, sizeof(buf));
	assert_true(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
	assert_true(strtoull(buf + 27, NULL, 10) > 0);
	close(fd);
}

static void test_no_socket_and_bad_names(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sdnotify_send("READY=1"), -1);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(sdnotify_send("READY=1"), -1);
	setenv("NOTIFY_SOCKET", "/nonexistent/dir/notify", 1);
	assert_int_equal(sdnotify_send("READY=1"), -1);
	unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_interval(void **state)
{
	char pid[32];
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", "1", 1);	/* meant for another process */
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	assert_int_equal(sdnotify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_USEC");
}

static void test_watchdog_timer(void **state)
{
	char name[64], buf[64];
	uv_loop_t loop;
	uv_timer_t t;

	snprintf(name, sizeof(name), "@mx-sdnotify-wd-%d", (int)getpid());
	int fd = listen_at(name);
	setenv("WATCHDOG_USEC", "20000", 1);	/* 20 ms: pings every 10 ms */
	uv_loop_init(&loop);
	assert_int_equal(sdnotify_watchdog_start(&loop, &t), 1);
	uv_run(&loop, UV_RUN_ONCE);
	recv_one(fd, buf, sizeof(buf));
	assert_string_equal(buf, "WATCHDOG=1");
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	unsetenv("WATCHDOG_USEC");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_socket),
		cmocka_unit_test(test_abstract_socket),
		cmocka_unit_test(test_no_socket_and_bad_names),
		cmocka_unit_test(test_watchdog_interval),
		cmocka_unit_test(test_watchdog_timer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
