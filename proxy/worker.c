/* worker.c — worker threads: loop, listeners, config generations, drain. */
#include "worker.h"
#include "auth.h"
#include "backend.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "relay.h"
#include "session.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A connection accepted by one worker for another: its descriptor and listener. */
struct worker_handoff {
	struct worker_handoff *next;
	int fd;
	const struct listen_config *lc;
};

void shared_gen_ref(struct shared_gen *g)
{
	atomic_fetch_add(&g->refs, 1);
}

void shared_gen_unref(struct shared_gen *g)
{
	if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	pool_free(g->pool);
	if (g->tls_server)
		tls_ctx_unref(g->tls_server);
	if (g->tls_client)
		tls_ctx_unref(g->tls_client);
	config_free(g->cfg);
	free(g);
}

static void worker_gen_free(struct worker_gen *wg)
{
	chain_modules_free(&wg->mods);
	auth_worker_free(wg->auth);
	shared_gen_unref(wg->shared);
	free(wg);
}

static struct worker_gen *worker_gen_new(struct worker *w, struct shared_gen *sg)
{
	struct worker_gen *wg = calloc(1, sizeof(*wg));

	if (wg == NULL)
		return NULL;
	wg->shared = sg;
	wg->worker = w;
	shared_gen_ref(sg);
	if (chain_modules_init(&wg->mods, sg->cfg, &w->loop, w->index) < 0)
		log_event(LOG_LVL_ERROR, NULL, "event=module_init_failed worker=%d reason=out_of_memory",
		    w->index);
	wg->auth = auth_worker_new(sg->cfg, &w->loop, w->index);
	return wg;
}

static void worker_maybe_finish(struct worker *w);

void worker_gen_session_release(struct worker_gen *wg)
{
	struct worker *w = wg->worker;

	wg->sessions--;
	if (wg->retired && wg->sessions == 0)
		worker_gen_free(wg);
	worker_maybe_finish(w);
}

static void worker_close_cb(uv_handle_t *h)
{
	(void)h;
}

static void worker_begin_drain(struct worker *w);

/* A listener's poll is closed: its socket goes (a poll handle does not own it). */
static void worker_listener_close_cb(uv_handle_t *h)
{
	struct worker *w = h->loop->data;
	int i = (int)((uv_poll_t *)h - w->listeners);

	close(w->listener_fds[i]);
	w->listener_fds[i] = -1;
}

/* Draining and nothing left: close our own handles so the loop ends. The stop flag may be
 * seen here before the wakeup callback ran (it is set before uv_async_send), so the drain
 * is begun here too: the listeners must close either way. */
static void worker_maybe_finish(struct worker *w)
{
	if (!atomic_load(&w->stop) || w->sessions > 0 || w->gen == NULL)
		return;
	if (w->listening) {
		worker_begin_drain(w);	/* calls back here once it has closed the listeners */
		return;
	}
	relay_close_idle(w);
	if (w->gen->sessions == 0) {
		worker_gen_free(w->gen);
		w->gen = NULL;
	}
	if (!uv_is_closing((uv_handle_t *)&w->wakeup))
		uv_close((uv_handle_t *)&w->wakeup, worker_close_cb);
	if (!uv_is_closing((uv_handle_t *)&w->drain_timer))
		uv_close((uv_handle_t *)&w->drain_timer, worker_close_cb);
	if (!uv_is_closing((uv_handle_t *)&w->accept_timer))
		uv_close((uv_handle_t *)&w->accept_timer, worker_close_cb);
	if (w->reserve_fd >= 0) {
		close(w->reserve_fd);
		w->reserve_fd = -1;
	}
}

void worker_note_accept_error(struct worker *w, const struct listen_config *lc, int err)
{
	uint64_t now = uv_now(&w->loop);

	counter_conn_refused(CONN_REFUSED_ACCEPT_ERROR);
	w->accept_err_unlogged++;
	if (w->accept_err_logged_ms != 0 && now - w->accept_err_logged_ms < 1000)
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=accept_error listener=%s reason=\"%s\" errors=%lu worker=%d",
	    lc && lc->address ? lc->address : "?", uv_strerror(err), w->accept_err_unlogged, w->index);
	w->accept_err_logged_ms = now ? now : 1;
	w->accept_err_unlogged = 0;
}

/* The worker to hand a new connection to: the least loaded one that is not stopping, when
 * keeping it would leave w more than one above it; else NULL (w keeps it). */
static struct worker *worker_pick_target(struct worker *w)
{
	int mine = atomic_load(&w->load), least = mine;
	struct worker *best = NULL;

	for (int i = 0; i < w->npeers; i++) {
		struct worker *p = &w->peers[i];
		int l;

		if (p == w || atomic_load(&p->stop))
			continue;
		l = atomic_load(&p->load);
		if (l < least) {
			least = l;
			best = p;
		}
	}
	return best != NULL && mine + 1 - least > 1 ? best : NULL;
}

/* Queues fd for t and wakes it; false when t no longer takes hand-offs (draining). */
static bool worker_handoff_push(struct worker *t, int fd, const struct listen_config *lc)
{
	struct worker_handoff *h = malloc(sizeof(*h));
	bool ok;

	if (h == NULL)
		return false;
	h->next = NULL;
	h->fd = fd;
	h->lc = lc;
	uv_mutex_lock(&t->handoff_lock);
	ok = t->handoff_open;
	if (ok) {
		if (t->handoff_tail)
			t->handoff_tail->next = h;
		else
			t->handoff_head = h;
		t->handoff_tail = h;
		atomic_fetch_add(&t->load, 1);
		/* Under the lock: t closes its wakeup only after it shut the queue. */
		uv_async_send(&t->wakeup);
	}
	uv_mutex_unlock(&t->handoff_lock);
	if (!ok)
		free(h);
	return ok;
}

/* Takes what was handed to w; shut: no more after this. */
static struct worker_handoff *worker_handoff_take(struct worker *w, bool shut)
{
	struct worker_handoff *h;

	uv_mutex_lock(&w->handoff_lock);
	h = w->handoff_head;
	w->handoff_head = w->handoff_tail = NULL;
	if (shut)
		w->handoff_open = false;
	uv_mutex_unlock(&w->handoff_lock);
	return h;
}

/* Runs the sessions of connections handed to w, in order (a draining w refuses them 421
 * the way its own accept would). */
static void worker_handoff_run(struct worker *w, struct worker_handoff *h)
{
	while (h != NULL) {
		struct worker_handoff *next = h->next;

		session_accept_fd(w, h->fd, h->lc);
		free(h);
		h = next;
	}
}

/* Runs the session of fd, a connection just accepted from lc: here, or on a less loaded
 * worker (its hand-off queue). Takes fd. */
static void worker_dispatch(struct worker *w, int fd, const struct listen_config *lc)
{
	struct worker *t = worker_pick_target(w);

	if (t != NULL && worker_handoff_push(t, fd, lc))
		return;
	atomic_fetch_add(&w->load, 1);
	session_accept_fd(w, fd, lc);
}

/* The descriptor kept aside for answering a client when none is left (nginx's and
 * libuv's trick). -1 when it cannot be had now (the descriptors are gone). */
static int worker_reserve_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Not one descriptor left (EMFILE, ENFILE) and a client waiting: the reserve is given up
 * for it, the client gets 421 at once (a fresh socket's buffer takes the line; nothing is
 * read), is counted and logged like a session refused for fd_limit, and the reserve is
 * taken again. False when that did not help (no reserve to give up, or the accept still
 * found no descriptor: another thread took it in between, or the limit is below the
 * reserve's number): the caller pauses the listeners rather than spin on EMFILE. */
static bool worker_refuse_unheard(struct worker *w, int lfd, const struct listen_config *lc)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	char ip[INET6_ADDRSTRLEN] = "?", line[300];
	int fd, n, e;

	if (w->reserve_fd < 0 && (w->reserve_fd = worker_reserve_open()) < 0)
		return false;
	close(w->reserve_fd);
	w->reserve_fd = -1;
	fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	e = errno;
	if (fd >= 0) {
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, ip, sizeof(ip));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, ip, sizeof(ip));
		n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: too many connections, try again later\r\n",
		    w->gen ? w->gen->shared->cfg->hostname : "mxgate");
		if (n > 0 && (size_t)n < sizeof(line))
			(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		counter_conn_refused(CONN_REFUSED_FD_LIMIT);
		log_event(LOG_LVL_INFO, NULL, "event=reject stage=connect reason=fd_limit client=%s listener=%s reserve=1",
		    ip, lc && lc->address ? lc->address : "?");
	}
	/* fd < 0 otherwise: gone (ECONNABORTED), or none waiting (EAGAIN): nothing to answer */
	w->reserve_fd = worker_reserve_open();
	return fd >= 0 || (e != EMFILE && e != ENFILE);
}

static void worker_listener_cb(uv_poll_t *p, int status, int events);

/* Starts (or stops) polling every listener of w. */
static void worker_listeners_poll(struct worker *w, bool on)
{
	for (int i = 0; i < w->nlisteners; i++) {
		if (on)
			uv_poll_start(&w->listeners[i], UV_READABLE, worker_listener_cb);
		else
			uv_poll_stop(&w->listeners[i]);
	}
}

#define WORKER_ACCEPT_RETRY_MS 100

static void worker_accept_timer_cb(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (!w->listening || !w->accept_paused)
		return;
	if (w->reserve_fd < 0 && (w->reserve_fd = worker_reserve_open()) < 0) {
		uv_timer_start(&w->accept_timer, worker_accept_timer_cb, WORKER_ACCEPT_RETRY_MS, 0);
		return;
	}
	w->accept_paused = false;
	worker_listeners_poll(w, true);
}

/* No descriptor, not even the reserve (or no kernel memory): the listeners stop for
 * WORKER_ACCEPT_RETRY_MS instead of spinning on accept's error; clients wait in the
 * backlog meanwhile, unrefused. Logged event=accept_paused, at most once a second. */
static void worker_accept_pause(struct worker *w, const struct listen_config *lc, int err)
{
	uint64_t now = uv_now(&w->loop);

	if (w->accept_paused)
		return;
	w->accept_paused = true;
	worker_listeners_poll(w, false);
	uv_timer_start(&w->accept_timer, worker_accept_timer_cb, WORKER_ACCEPT_RETRY_MS, 0);
	if (w->accept_paused_logged_ms != 0 && now - w->accept_paused_logged_ms < 1000)
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=accept_paused listener=%s reason=\"%s\" retry_ms=%d worker=%d",
	    lc && lc->address ? lc->address : "?", strerror(err), WORKER_ACCEPT_RETRY_MS, w->index);
	w->accept_paused_logged_ms = now ? now : 1;
}

/* Accepts per wakeup at most, so one busy listener cannot hold the loop (the poll is
 * level-triggered: what is left wakes it again). */
#define WORKER_ACCEPT_BATCH 64

/* A listener is readable: accept its connections. mxgate accepts itself rather than
 * through uv_listen: libuv's answer to EMFILE closes clients unheard, uncounted, and with
 * its reserve gone (another thread took the descriptor) calls back in a loop until a
 * descriptor frees (libuv 1.44 src/unix/stream.c uv__server_io, uv__emfile_trick). */
static void worker_listener_cb(uv_poll_t *p, int status, int events)
{
	struct worker *w = p->loop->data;
	const struct listen_config *lc = p->data;
	int lfd = w->listener_fds[p - w->listeners];

	(void)events;
	if (status < 0) {
		worker_note_accept_error(w, lc, status);
		return;
	}
	for (int i = 0; i < WORKER_ACCEPT_BATCH && w->listening && !w->accept_paused; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), e = errno;

		if (fd >= 0) {
			worker_dispatch(w, fd, lc);
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
			if (!worker_refuse_unheard(w, lfd, lc))
				worker_accept_pause(w, lc, e);
			break;
		case ENOBUFS:
		case ENOMEM:
			worker_accept_pause(w, lc, e);
			break;
		default:
			/* the connection is gone with the error (EPERM by a firewall, EPROTO) */
			worker_note_accept_error(w, lc, uv_translate_sys_error(e));
			break;
		}
	}
}

static void worker_drain_timer_cb(uv_timer_t *t)
{
	struct worker *w = t->data;

	log_event(LOG_LVL_INFO, NULL, "event=drain_timeout worker=%d sessions=%d", w->index, w->sessions);
	session_drain_all(w, 1);
}

static void worker_wakeup_cb(uv_async_t *a)
{
	struct worker *w = a->data;
	struct shared_gen *g = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);

	if (g) {
		struct worker_gen *wg = worker_gen_new(w, g);
		shared_gen_unref(g);	/* the hand-over reference */
		if (wg) {
			struct worker_gen *old = w->gen;
			w->gen = wg;
			if (old) {
				old->retired = true;
				if (old->sessions == 0)
					worker_gen_free(old);
			}
		}
	}
	/* After the generation: a handed-off session starts under the current one. */
	worker_handoff_run(w, worker_handoff_take(w, false));
	if (atomic_load(&w->stop) && w->listening)
		worker_begin_drain(w);
}

/* Stop accepting, tell idle sessions, arm the drain deadline. Once per worker. */
static void worker_begin_drain(struct worker *w)
{
	if (!w->listening)
		return;
	w->listening = false;
	for (int i = 0; i < w->nlisteners; i++)
		uv_close((uv_handle_t *)&w->listeners[i], worker_listener_close_cb);
	/* No more hand-offs; those already queued are refused (421) like a drained accept. */
	struct worker_handoff *queued = worker_handoff_take(w, true);
	session_drain_all(w, 0);
	worker_handoff_run(w, queued);
	relay_close_idle(w);
	uint64_t ms = w->gen ? w->gen->shared->cfg->limits.drain_timeout : 30000;
	if (!uv_is_closing((uv_handle_t *)&w->drain_timer))
		uv_timer_start(&w->drain_timer, worker_drain_timer_cb, ms, 0);
	worker_maybe_finish(w);
}

/* Thread body: listens on the worker's sockets and runs the loop until drained. */
void worker_run(void *arg)
{
	struct worker *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	/* Nothing can be queued after the drain shut the queue; closed here all the same. */
	for (struct worker_handoff *h = worker_handoff_take(w, true), *next; h != NULL; h = next) {
		next = h->next;
		close(h->fd);
		atomic_fetch_sub(&w->load, 1);
		free(h);
	}
	/* Anything still open (module handles) is closed here. */
	if (w->gen) {
		worker_gen_free(w->gen);
		w->gen = NULL;
	}
	uv_run(&w->loop, UV_RUN_NOWAIT);
}

/* Prepares w on the calling thread (before the thread starts). fds: this worker's
 * listening sockets; lcs: their listen configs (must outlive the worker). */
int worker_init(struct worker *w, int index, struct shared_gen *g, const int *fds,
    const struct listen_config *const *lcs, int n)
{
	memset(w, 0, sizeof(*w));
	w->index = index;
	if (uv_mutex_init(&w->handoff_lock) != 0)
		return -1;
	w->handoff_open = true;
	if (uv_loop_init(&w->loop) != 0)
		return -1;
	w->loop.data = w;
	uv_async_init(&w->loop, &w->wakeup, worker_wakeup_cb);
	w->wakeup.data = w;
	uv_timer_init(&w->loop, &w->drain_timer);
	w->drain_timer.data = w;
	w->gen = worker_gen_new(w, g);
	if (w->gen == NULL)
		return -1;
	uv_timer_init(&w->loop, &w->accept_timer);
	w->accept_timer.data = w;
	w->reserve_fd = worker_reserve_open();
	if (w->reserve_fd < 0)
		return -1;
	/* main_bind made them listening and non-blocking */
	for (int i = 0; i < n && i < WORKER_MAX_LISTENERS; i++) {
		if (uv_poll_init_socket(&w->loop, &w->listeners[i], fds[i]) != 0)
			return -1;
		w->listeners[i].data = (void *)lcs[i];
		w->listener_fds[i] = fds[i];
		w->nlisteners++;
	}
	w->listening = true;
	worker_listeners_poll(w, true);
	return 0;
}

void worker_set_peers(struct worker *all, int n)
{
	for (int i = 0; i < n; i++) {
		all[i].peers = all;
		all[i].npeers = n;
	}
}

void worker_post_gen(struct worker *w, struct shared_gen *g)
{
	struct shared_gen *old;

	shared_gen_ref(g);
	old = __atomic_exchange_n(&w->pending, g, __ATOMIC_ACQ_REL);
	if (old)
		shared_gen_unref(old);
	uv_async_send(&w->wakeup);
}

void worker_post_stop(struct worker *w)
{
	atomic_store(&w->stop, 1);
	uv_async_send(&w->wakeup);
}
