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

#include <stdlib.h>
#include <string.h>

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

static void worker_connection_cb(uv_stream_t *server, int status)
{
	struct worker *w = server->loop->data;

	if (status < 0) {
		worker_note_accept_error(w, server->data, status);
		return;
	}
	session_accept(w, server, server->data);
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
		uv_close((uv_handle_t *)&w->listeners[i], worker_close_cb);
	session_drain_all(w, 0);
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
	for (int i = 0; i < n && i < WORKER_MAX_LISTENERS; i++) {
		uv_tcp_init(&w->loop, &w->listeners[i]);
		w->listeners[i].data = (void *)lcs[i];
		if (uv_tcp_open(&w->listeners[i], fds[i]) != 0 ||
		    uv_listen((uv_stream_t *)&w->listeners[i], 4096, worker_connection_cb) != 0)
			return -1;
		w->nlisteners++;
	}
	w->listening = true;
	return 0;
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
