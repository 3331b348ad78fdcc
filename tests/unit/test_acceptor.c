/* test_acceptor.c — proxy/acceptor.c with not one descriptor left: the process's own soft
 * RLIMIT_NOFILE is set to its lowest free descriptor number, so every accept fails with
 * EMFILE as in a daemon whose limit an operator lowered. The executable's accept4 is
 * wrapped (CMakeLists.txt) to play another thread of the process: one that takes any
 * descriptor free in the moment, as another worker's accept or a backend connection does.
 * The clients' sockets are made before the limit is lowered (a connect needs none more). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/acceptor.h"
#include "uv_wait.h"

/* ------------------------------------------------------------ the other thread */

static bool thief_armed;
static int thief_fd = -1;

int __real_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);

/* Before each of the acceptor's accepts, while armed and no client waits on fd: the other
 * thread opens a descriptor, which it gets only when one is free (the reserve given up). A
 * reserve given up for a client waiting is the window no acceptor can close alone; one
 * given up with none waiting is the acceptor's own doing. */
int __wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (thief_armed && thief_fd < 0 && !(poll(&p, 1, 0) > 0 && (p.revents & POLLIN)))
		thief_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return __real_accept4(fd, sa, len, flags);
}

/* ------------------------------------------------------------ fixture */

#define CLIENTS 3

struct fixture {
	uv_loop_t loop;
	struct acceptor a;
	int port;
	int clients[CLIENTS];
	int refused;
	int accepted;
	struct rlimit saved;
};

static void fx_accepted(struct acceptor *a, int fd, void *ldata)
{
	struct fixture *fx = a->data;

	(void)ldata;
	fx->accepted++;
	close(fd);
}

static void fx_refuse(struct acceptor *a, int fd, const char *ip, void *ldata)
{
	struct fixture *fx = a->data;

	(void)ldata;
	assert_string_equal(ip, "127.0.0.1");
	acceptor_answer(fd, "421 full\r\n", 10);
	fx->refused++;
}

static const struct acceptor_ops fx_ops = { .accepted = fx_accepted, .refuse = fx_refuse };

static int listen_any(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The lowest descriptor number not in use: what the next open would get. */
static int lowest_free(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	close(fd);
	return fd;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* the DIR's own */
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(acceptor_init(&fx->a, &fx->loop, &fx_ops, fx), 0);
	assert_int_equal(acceptor_add(&fx->a, listen_any(&fx->port), NULL), 0);
	acceptor_start(&fx->a);
	for (int i = 0; i < CLIENTS; i++)
		assert_true((fx->clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &fx->saved), 0);
	thief_armed = false;
	thief_fd = -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	thief_armed = false;
	setrlimit(RLIMIT_NOFILE, &fx->saved);
	if (thief_fd >= 0)
		close(thief_fd);
	for (int i = 0; i < CLIENTS; i++)
		close(fx->clients[i]);
	acceptor_close(&fx->a);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
	return 0;
}

/* No descriptor free from here: the soft limit at the lowest free number. */
static void exhaust(struct fixture *fx)
{
	struct rlimit rl = { (rlim_t)lowest_free(), fx->saved.rlim_max };

	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(open("/dev/null", O_RDONLY | O_CLOEXEC), -1);
	assert_int_equal(errno, EMFILE);
}

static void client_connect(struct fixture *fx, int i)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	    .sin_port = htons((uint16_t)fx->port) };

	assert_int_equal(connect(fx->clients[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
}

/* What client i hears first (blocking; the acceptor answers before it returns to the loop). */
static void client_hears(struct fixture *fx, int i, const char *want)
{
	char buf[64];
	ssize_t n = recv(fx->clients[i], buf, sizeof(buf) - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static int refused_n;
static bool refused_reaches(void *arg)
{
	return ((struct fixture *)arg)->refused >= refused_n;
}

/* Each client with no descriptor left is answered from the reserve, one after the other,
 * and the reserve is back after each (the next is answered too). */
static void test_refused_from_reserve(void **state)
{
	struct fixture *fx = *state;

	exhaust(fx);
	for (int i = 0; i < CLIENTS; i++) {
		client_connect(fx, i);
		refused_n = i + 1;
		assert_true(run_until(&fx->loop, refused_reaches, fx, 5000));
		client_hears(fx, i, "421 full\r\n");
	}
	assert_int_equal(fx->refused, CLIENTS);
	assert_int_equal(fx->accepted, 0);
}

/* The reserve is given up only for a client waiting. Before, after each client answered
 * the batch's next accept met EMFILE again (accept(2) says so before it looks at the queue)
 * and the reserve was closed and reopened for nobody: a moment in which another thread
 * could take its number (the cross-worker window of session 22, which this made one after
 * every refusal), after which no client was answered (the worker paused, clients waited
 * unrefused) until that descriptor was closed. Here the other thread keeps what it took:
 * the second client waited until the bound. */
static void test_reserve_kept_while_none_waits(void **state)
{
	struct fixture *fx = *state;

	exhaust(fx);
	thief_armed = true;
	client_connect(fx, 0);
	refused_n = 1;
	assert_true(run_until(&fx->loop, refused_reaches, fx, 5000));
	client_hears(fx, 0, "421 full\r\n");
	client_connect(fx, 1);
	refused_n = 2;
	assert_true(run_until(&fx->loop, refused_reaches, fx, 5000));
	client_hears(fx, 1, "421 full\r\n");
	assert_int_equal(thief_fd, -1);	/* never a descriptor free while none waited */
}

/* libuv opens a descriptor of its own at a loop's first stream handle; acceptor_init has it
 * taken then, so a worker's first session (uv_tcp_init) takes none more. Before, it did,
 * mid-flight (seen with strace -k from session_accept_fd; test_plugin_reload's count). */
static void test_libuv_descriptor_taken_at_init(void **state)
{
	uv_loop_t loop;
	struct acceptor a;
	uv_tcp_t tcp;
	int before;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(acceptor_init(&a, &loop, &fx_ops, NULL), 0);
	before = open_fds();
	assert_int_equal(uv_tcp_init(&loop, &tcp), 0);
	assert_int_equal(open_fds(), before);
	uv_close((uv_handle_t *)&tcp, NULL);
	acceptor_close(&a);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_refused_from_reserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_kept_while_none_waits, setup, teardown),
		cmocka_unit_test(test_libuv_descriptor_taken_at_init),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
