/* redis_peer.h — unit tests against a real redis-server (PEERS.md): a port held for the
 * process, the server started on it (and waited for until it answers as itself), stopped or
 * signalled, killed at exit if a failed test left it, and whether it is installed. */
#ifndef MX_TEST_REDIS_PEER_H
#define MX_TEST_REDIS_PEER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <hiredis/hiredis.h>

/* A loopback TCP port held for the rest of the process: bound (SO_REUSEADDR), never listening,
 * its socket left open. No other process's bind(0) gets it; redis-server (SO_REUSEADDR too)
 * binds it alongside, again after a restart; while nothing listens a connect is refused. A
 * port merely free a moment ago (bound, read, closed) could be taken by another test's server
 * before ours bound it: ours then exited at start, or the test talked to the other one. */
static inline int redis_peer_hold_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		fail_msg("cannot hold a loopback port");
	return ntohs(sa.sin_port);
}

/* The servers started and not yet killed: killed at exit (a failed assertion leaves its
 * test by longjmp, past the test's own kill) and, should this process die without exit
 * handlers (an abort), by the kernel (PR_SET_PDEATHSIG). */
static pid_t redis_peer_pids[32];

static inline void redis_peer_forget(pid_t pid)
{
	for (size_t i = 0; i < sizeof(redis_peer_pids) / sizeof(redis_peer_pids[0]); i++)
		if (redis_peer_pids[i] == pid)
			redis_peer_pids[i] = 0;
}

static inline void redis_peer_kill_left(void)
{
	for (size_t i = 0; i < sizeof(redis_peer_pids) / sizeof(redis_peer_pids[0]); i++)
		if (redis_peer_pids[i] > 0) {
			kill(redis_peer_pids[i], SIGCONT);
			kill(redis_peer_pids[i], SIGKILL);
			waitpid(redis_peer_pids[i], NULL, 0);
			redis_peer_pids[i] = 0;
		}
}

/* Whether the server answering on port is process pid (INFO's process_id): not another
 * test's on a port it took. */
static inline bool redis_peer_is(int port, pid_t pid)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	redisReply *r = c && !c->err ? redisCommand(c, "INFO server") : NULL;
	char want[32];
	bool ok;

	snprintf(want, sizeof(want), "process_id:%d\r\n", (int)pid);
	ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, want) != NULL;
	freeReplyObject(r);
	redisFree(c);
	return ok;
}

/* redis-server on 127.0.0.1:port (held: redis_peer_hold_port) with an append-only file
 * fsynced on every write in dir (what it applied survives a SIGKILL), its log in
 * dir/redis-PORT.log; its pid once it answers as itself (20 s bound, a hang guard). Fails
 * the test, naming the log, if it exited at start or another process answers there. */
static inline pid_t redis_peer_start(int port, const char *dir)
{
	static bool at_exit;
	char portstr[16], logf[300];
	pid_t pid, parent = getpid();
	uint64_t end = uv_hrtime() + 20ull * 1000000000ull;
	size_t i;

	if (!at_exit)
		at_exit = atexit(redis_peer_kill_left) == 0;
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(logf, sizeof(logf), "%s/redis-%d.log", dir, port);
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", portstr,
		    "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
		    dir, "--logfile", logf, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	for (i = 0; i < sizeof(redis_peer_pids) / sizeof(redis_peer_pids[0]); i++)
		if (redis_peer_pids[i] == 0) {
			redis_peer_pids[i] = pid;
			break;
		}
	while (uv_hrtime() < end) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			redis_peer_forget(pid);
			fail_msg("redis-server exited at start on port %d (see %s)", port, logf);
		}
		if (redis_peer_is(port, pid))
			return pid;
		usleep(20000);
	}
	fail_msg("redis-server %d did not answer as itself on %d (see %s)", (int)pid, port, logf);
	return -1;
}

/* Sends sig; after SIGKILL or SIGTERM waits for the exit. */
static inline void redis_peer_kill(pid_t pid, int sig)
{
	kill(pid, sig);
	if (sig == SIGKILL || sig == SIGTERM) {
		waitpid(pid, NULL, 0);
		redis_peer_forget(pid);
	}
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
