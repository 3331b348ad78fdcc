/* worker.c — worker threads: loop, listeners, config generations, drain. */
#include "worker.h"
#include "auth.h"
#include "backend.h"
#include "config.h"
#include "counters.h"
#include "ledger_redis.h"
#include "ledger_store.h"
#include "log.h"
#include "opstats.h"
#include "relay.h"
#include "session.h"
#include "store/lmdb_store.h"
#include "rules/bayes_db.h"
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
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
	/* after the workers' own references (worker_gen_free): the last one syncs, as theirs did */
	for (size_t i = 0; i < g->nstores; i++)
		lmdb_store_close(g->stores[i]);
	bayes_db_close(g->bayes_db);
	config_free(g->cfg);
	free(g);
}

static pthread_mutex_t shared_gen_failed_mu = PTHREAD_MUTEX_INITIALIZER;

/* Whether the comma-separated list has the name name[0..n) as one of its items. */
static bool shared_gen_list_has(const char *list, const char *name, size_t n)
{
	for (const char *p = list; *p; ) {
		size_t k = strcspn(p, ",");

		if (k == n && memcmp(p, name, n) == 0)
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

/* Adds the comma-separated names to g's failed modules (each once). */
static void shared_gen_note_failed(struct shared_gen *g, const char *names)
{
	pthread_mutex_lock(&shared_gen_failed_mu);
	for (const char *p = names; *p; ) {
		size_t n = strcspn(p, ","), len = strlen(g->failed);

		if (n > 0 && !shared_gen_list_has(g->failed, p, n))
			snprintf(g->failed + len, sizeof(g->failed) - len, "%s%.*s", len ? "," : "", (int)n, p);
		p += n + (p[n] == ',');
	}
	pthread_mutex_unlock(&shared_gen_failed_mu);
}

bool shared_gen_failed(struct shared_gen *g, char *out, size_t cap)
{
	pthread_mutex_lock(&shared_gen_failed_mu);
	snprintf(out, cap, "%s", g ? g->failed : "");
	pthread_mutex_unlock(&shared_gen_failed_mu);
	return out[0] != '\0';
}

static void worker_gen_free(struct worker_gen *wg)
{
	chain_modules_free(&wg->mods);
	auth_worker_free(wg->auth);
	lmdb_writer_free(wg->ledger_wr);   /* what it has queued goes to its thread first */
	ledger_redis_free(wg->ledger_rd);  /* its queued writes go to the next generation's store */
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
	if (chain_modules_init(&wg->mods, sg->cfg, &w->loop, w->index) < 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=module_init_failed worker=%d reason=out_of_memory",
		    w->index);
		shared_gen_note_failed(sg, "chain");
	}
	if (wg->mods.failed[0] != '\0')
		shared_gen_note_failed(sg, wg->mods.failed);
	wg->auth = auth_worker_new(sg->cfg, &w->loop, w->index);
	wg->ledger_wr = ledger_store_writer_new(sg->cfg, &w->loop);
	wg->ledger_rd = ledger_redis_new(sg->cfg, &w->loop, w->index);
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

static void worker_accepted(struct acceptor *a, int fd, void *ldata)
{
	worker_dispatch(a->data, fd, ldata);
}

/* Not one descriptor left and a client waiting (acceptor.c gave up its reserve for it):
 * 421 at once (a fresh socket's buffer takes the line; nothing is read), counted and
 * logged like a session refused for fd_limit. */
static void worker_refuse(struct acceptor *a, int fd, const char *ip, void *ldata)
{
	struct worker *w = a->data;
	const struct listen_config *lc = ldata;
	char line[300];
	int n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: too many connections, try again later\r\n",
	    w->gen ? w->gen->shared->cfg->hostname : "mxgate");

	if (n > 0 && (size_t)n < sizeof(line))
		(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	counter_conn_refused(CONN_REFUSED_FD_LIMIT);
	opstats_refusal(&(struct opstats_refusal){ .worker = w->index, .client_ip = ip, .stage = "connect",
	    .reason = "fd_limit", .code = 421 }, "client=%s listener=%s reserve=1", ip, lc && lc->address ? lc->address : "?");
}

/* No descriptor, not even the reserve (or no kernel memory): the listeners stop for
 * ACCEPTOR_RETRY_MS at a time; clients wait in the backlog meanwhile, unrefused. */
static void worker_accept_paused(struct acceptor *a, int err, void *ldata)
{
	struct worker *w = a->data;
	const struct listen_config *lc = ldata;

	log_event(LOG_LVL_WARNING, NULL, "event=accept_paused listener=%s reason=\"%s\" retry_ms=%d worker=%d",
	    lc && lc->address ? lc->address : "?", strerror(err), ACCEPTOR_RETRY_MS, w->index);
}

static void worker_accept_error(struct acceptor *a, int err, void *ldata)
{
	worker_note_accept_error(a->data, ldata, err);
}

/* mxgate accepts itself rather than through uv_listen (acceptor.h says why). */
static const struct acceptor_ops worker_acceptor_ops = {
	.accepted = worker_accepted,
	.refuse = worker_refuse,
	.paused = worker_accept_paused,
	.error = worker_accept_error,
};

static void worker_drain_timer_cb(uv_timer_t *t)
{
	struct worker *w = t->data;

	log_event(LOG_LVL_INFO, NULL, "event=drain_timeout worker=%d sessions=%d", w->index, w->sessions);
	session_drain_all(w, 1);
}

/* event=reloaded: the reloads' generation ids handed to the workers, oldest first; each is
 * logged once every worker runs it or a newer one (a pending generation replaced before a
 * worker took it never runs there: the newer one stands for it). Ids grow. */
#define WR_MAX 64
static pthread_mutex_t wr_lock = PTHREAD_MUTEX_INITIALIZER;
static struct worker_reload {
	unsigned id;
	size_t accept_domains, routes_domains;   /* for the line (worker.h) */
} wr_ids[WR_MAX];
static int wr_n;

/* Logs the ids up to upto and drops them; wr_lock held. */
static void worker_reloaded_log(unsigned upto)
{
	int k = 0;

	for (; k < wr_n && wr_ids[k].id <= upto; k++)
		log_event(LOG_LVL_INFO, NULL, "event=reloaded generation=%u accept_domains=%zu routes_domains=%zu",
		    wr_ids[k].id, wr_ids[k].accept_domains, wr_ids[k].routes_domains);
	memmove(wr_ids, wr_ids + k, (size_t)(wr_n - k) * sizeof(wr_ids[0]));
	wr_n -= k;
}

void worker_note_reload(unsigned id, size_t accept_domains, size_t routes_domains)
{
	pthread_mutex_lock(&wr_lock);
	if (wr_n == WR_MAX)             /* 64 reloads no worker took: the oldest goes as it is */
		worker_reloaded_log(wr_ids[0].id);
	wr_ids[wr_n++] = (struct worker_reload){ id, accept_domains, routes_domains };
	pthread_mutex_unlock(&wr_lock);
}

/* Worker's thread, once w runs its new generation: the reloads every worker has taken. */
static void worker_reloaded_check(struct worker *w)
{
	unsigned low = atomic_load(&w->gen_id);

	pthread_mutex_lock(&wr_lock);
	for (int i = 0; i < w->npeers; i++) {
		unsigned id = atomic_load(&w->peers[i].gen_id);

		if (id < low)
			low = id;
	}
	worker_reloaded_log(low);
	pthread_mutex_unlock(&wr_lock);
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
			atomic_store(&w->gen_id, wg->shared->id);
			worker_reloaded_check(w);
		}
	}
	if (atomic_exchange(&w->sweep, 0))
		relay_sweep_vanished(w);
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
	acceptor_close(&w->acceptor);
	/* No more hand-offs; those already queued are refused (421) like a drained accept. */
	struct worker_handoff *queued = worker_handoff_take(w, true);
	session_drain_all(w, 0);
	worker_handoff_run(w, queued);
	relay_close_idle(w);
	uint64_t ms = w->gen ? w->gen->shared->cfg->limits.drain_timeout : 25000;
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
	atomic_store(&w->gen_id, g->id);
	if (acceptor_init(&w->acceptor, &w->loop, &worker_acceptor_ops, w) != 0)
		return -1;
	/* main_bind made them listening and non-blocking */
	for (int i = 0; i < n && i < WORKER_MAX_LISTENERS; i++) {
		if (acceptor_add(&w->acceptor, fds[i], (void *)lcs[i]) != 0)
			return -1;
	}
	w->listening = true;
	acceptor_start(&w->acceptor);
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

void worker_post_sweep(struct worker *w)
{
	if (atomic_load(&w->stop))
		return;
	atomic_store(&w->sweep, 1);
	uv_async_send(&w->wakeup);
}

void worker_post_stop(struct worker *w)
{
	atomic_store(&w->stop, 1);
	uv_async_send(&w->wakeup);
}
