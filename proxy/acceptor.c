/* acceptor.c — accepting connections ourselves, a reserve descriptor for the client met
 * with none left, a pause instead of a spin. See acceptor.h. */
#include "acceptor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The descriptor kept aside for answering a client when none is left (nginx's and
 * libuv's trick). -1 when it cannot be had now (the descriptors are gone). */
static int acceptor_reserve_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void acceptor_handle_closed_cb(uv_handle_t *h)
{
	struct acceptor *a = h->data;

	if (h != (uv_handle_t *)&a->timer && h != (uv_handle_t *)&a->uv_reserve) {
		int i = (int)((uv_poll_t *)h - a->polls);

		close(a->fds[i]);
		a->fds[i] = -1;
	}
	if (--a->open_handles == 0 && a->ops->closed != NULL)
		a->ops->closed(a);
}

int acceptor_init(struct acceptor *a, uv_loop_t *loop, const struct acceptor_ops *ops, void *data)
{
	memset(a, 0, sizeof(*a));
	a->loop = loop;
	a->ops = ops;
	a->data = data;
	a->reserve_fd = acceptor_reserve_open();
	if (a->reserve_fd < 0)
		return -1;
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	/* libuv opens a descriptor of its own (/dev/null, for uv_listen's EMFILE trick, which
	 * never runs here: we accept ourselves) at a loop's first stream handle. Taken now, with
	 * the loop's other descriptors, and not at the worker's first session, mid-flight: a
	 * number taken there when none is spare (the moment a reserve is given up) is one no
	 * client is answered from, and a count of the process's descriptors changed by one
	 * (test_plugin_reload's). A stream handle that never opens a socket does it. */
	uv_tcp_init(loop, &a->uv_reserve);
	a->uv_reserve.data = a;
	a->open_handles = 2;
	return 0;
}

int acceptor_add(struct acceptor *a, int fd, void *ldata)
{
	if (a->n >= ACCEPTOR_MAX || uv_poll_init_socket(a->loop, &a->polls[a->n], fd) != 0) {
		close(fd);
		return -1;
	}
	a->polls[a->n].data = a;
	a->fds[a->n] = fd;
	a->ldata[a->n] = ldata;
	a->n++;
	a->open_handles++;
	return 0;
}

void acceptor_answer(int fd, const char *data, size_t len)
{
	char junk[4096];

	(void)send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)shutdown(fd, SHUT_WR);
	for (int i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		;
}

int acceptor_fd(const struct acceptor *a, int i)
{
	return i >= 0 && i < a->n ? a->fds[i] : -1;
}

static void acceptor_poll_cb(uv_poll_t *p, int status, int events);

/* Starts (or stops) polling every socket. */
static void acceptor_poll_all(struct acceptor *a, bool on)
{
	for (int i = 0; i < a->n; i++) {
		if (on)
			uv_poll_start(&a->polls[i], UV_READABLE, acceptor_poll_cb);
		else
			uv_poll_stop(&a->polls[i]);
	}
}

void acceptor_start(struct acceptor *a)
{
	a->running = true;
	acceptor_poll_all(a, true);
}

void acceptor_close(struct acceptor *a)
{
	if (a->closing)
		return;
	a->closing = true;
	a->running = false;
	for (int i = 0; i < a->n; i++)
		uv_close((uv_handle_t *)&a->polls[i], acceptor_handle_closed_cb);
	uv_close((uv_handle_t *)&a->timer, acceptor_handle_closed_cb);
	uv_close((uv_handle_t *)&a->uv_reserve, acceptor_handle_closed_cb);
	if (a->reserve_fd >= 0) {
		close(a->reserve_fd);
		a->reserve_fd = -1;
	}
}

/* Whether a connection waits on the listening socket lfd (its accept queue is not empty). */
static bool acceptor_is_waiting(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Not one descriptor left (EMFILE, ENFILE) and a client waiting: the reserve is given up
 * for it, the owner answers it at once (a fresh socket's buffer takes the line; nothing is
 * read), and the reserve is taken again. The accept's errno (0 when a client was answered):
 * EAGAIN when none is waiting (accept(2) fails with EMFILE before it looks at the queue,
 * so after each client answered the next accept of the batch says EMFILE too): the reserve
 * is kept, for each time it is given up is a moment in which another thread (another
 * worker's accept, a backend connection) can take its number, and then no client is
 * answered until that one is closed: the caller stops; EMFILE or
 * ENFILE when that did not help (no reserve to give up, or the accept still found no
 * descriptor: another thread took it in between, or the limit is below the reserve's
 * number): the caller pauses rather than spin on EMFILE. */
static int acceptor_refuse_unheard(struct acceptor *a, int lfd, void *ldata)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	char ip[INET6_ADDRSTRLEN] = "?";
	int fd, e;

	if (!acceptor_is_waiting(lfd))
		return EAGAIN;
	if (a->reserve_fd < 0 && (a->reserve_fd = acceptor_reserve_open()) < 0)
		return EMFILE;
	close(a->reserve_fd);
	a->reserve_fd = -1;
	fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	e = errno;
	if (fd >= 0) {
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, ip, sizeof(ip));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, ip, sizeof(ip));
		else if (sa.ss_family == AF_UNIX)
			snprintf(ip, sizeof(ip), "local");
		if (a->ops->refuse != NULL)
			a->ops->refuse(a, fd, ip, ldata);
		/* The client's number becomes the reserve (a copy of the listening socket, never
		 * polled): dup3 closes the client and takes the number in one step, so no other
		 * thread's accept can get it in between, as with a close and an open. */
		if (dup3(lfd, fd, O_CLOEXEC) >= 0) {
			a->reserve_fd = fd;
			return 0;
		}
		close(fd);
	}
	/* fd < 0 otherwise: gone (ECONNABORTED), or none waiting (EAGAIN): nothing to answer */
	a->reserve_fd = acceptor_reserve_open();
	return fd >= 0 ? 0 : e;
}

static void acceptor_timer_cb(uv_timer_t *t)
{
	struct acceptor *a = t->data;

	if (!a->running || !a->paused)
		return;
	if (a->reserve_fd < 0 && (a->reserve_fd = acceptor_reserve_open()) < 0) {
		uv_timer_start(&a->timer, acceptor_timer_cb, ACCEPTOR_RETRY_MS, 0);
		return;
	}
	a->paused = false;
	acceptor_poll_all(a, true);
}

/* No descriptor, not even the reserve (or no kernel memory): the polls stop for
 * ACCEPTOR_RETRY_MS instead of spinning on accept's error; clients wait in the backlog
 * meanwhile, unrefused. The owner hears of it at most once a second. */
static void acceptor_pause(struct acceptor *a, int err, void *ldata)
{
	uint64_t now = uv_now(a->loop);

	if (a->paused)
		return;
	a->paused = true;
	acceptor_poll_all(a, false);
	uv_timer_start(&a->timer, acceptor_timer_cb, ACCEPTOR_RETRY_MS, 0);
	if (a->paused_logged_ms != 0 && now - a->paused_logged_ms < 1000)
		return;
	a->paused_logged_ms = now ? now : 1;
	if (a->ops->paused != NULL)
		a->ops->paused(a, err, ldata);
}

/* A socket is readable: accept its connections, ACCEPTOR_BATCH at most per wakeup, so one
 * busy listener cannot hold the loop (the poll is level-triggered: what is left wakes it
 * again). */
static void acceptor_poll_cb(uv_poll_t *p, int status, int events)
{
	struct acceptor *a = p->data;
	int i = (int)(p - a->polls);
	int lfd = a->fds[i];
	void *ldata = a->ldata[i];

	(void)events;
	if (status < 0) {
		if (a->ops->error != NULL)
			a->ops->error(a, status, ldata);
		return;
	}
	for (int k = 0; k < ACCEPTOR_BATCH && a->running && !a->paused; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), e = errno;

		if (fd >= 0) {
			a->ops->accepted(a, fd, ldata);
			continue;
		}
		switch (e) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
			break;
		case EMFILE:
		case ENFILE:
			switch (acceptor_refuse_unheard(a, lfd, ldata)) {
			case EMFILE:
			case ENFILE:
				acceptor_pause(a, e, ldata);
				break;
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return;
			default:
				break;
			}
			break;
		case ENOBUFS:
		case ENOMEM:
			acceptor_pause(a, e, ldata);
			break;
		default:
			/* the connection is gone with the error (EPERM by a firewall, EPROTO) */
			if (a->ops->error != NULL)
				a->ops->error(a, uv_translate_sys_error(e), ldata);
			break;
		}
	}
}
