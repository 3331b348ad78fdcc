/* redis_peer.h — unit tests against a real redis-server (PEERS.md): a free port, the server
 * started on it (and waited for), stopped or signalled, and whether it is installed. */
#ifndef MX_TEST_REDIS_PEER_H
#define MX_TEST_REDIS_PEER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <hiredis/hiredis.h>

/* A loopback TCP port free a moment ago (bound, read, closed). */
static inline int redis_peer_free_port(void)
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

/* redis-server on 127.0.0.1:port with an append-only file fsynced on every write in dir (what
 * it applied survives a SIGKILL); its pid once it accepts (20 s bound). */
static inline pid_t redis_peer_start(int port, const char *dir)
{
	char portstr[16];
	pid_t pid;
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull;

	snprintf(portstr, sizeof(portstr), "%d", port);
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", portstr,
		    "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
		    dir, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	while (uv_hrtime() < end) {
		redisContext *c = redisConnect("127.0.0.1", port);
		bool ok = c && !c->err;

		redisFree(c);
		if (ok)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			fail_msg("redis-server exited at start");
		usleep(20000);
	}
	fail_msg("redis-server did not listen on %d", port);
	return -1;
}

/* Sends sig; after SIGKILL or SIGTERM waits for the exit. */
static inline void redis_peer_kill(pid_t pid, int sig)
{
	kill(pid, sig);
	if (sig == SIGKILL || sig == SIGTERM)
		waitpid(pid, NULL, 0);
}

/* Whether redis-server is installed (the test then skips: exit 77 through main); under
 * CI=true its absence fails instead. */
static inline bool redis_peer_available(void)
{
	const char *ci = getenv("CI");

	if (system("command -v redis-server >/dev/null 2>&1") == 0)
		return true;
	if (ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0))
		fail_msg("redis-server not installed (CI=true: no skips)");
	return false;
}

#endif
