/* reputation_control.c — the control socket's `flush reputation IP` (proxy/control_verbs.h):
 * the client's records go from the reputation store in every worker (reputation_forget_post),
 * and the reply says how many records were removed.
 *
 * What goes: the IP's record ("ip:198.18.5.5") and its network's ("net:198.18.5.0/24",
 * prefix_v4 / prefix_v6), because the IP's score reads both: with its network's history
 * left, a client that turned bad would still score bad. The network's record holds its
 * neighbours' messages too; they are forgotten with it. An authenticated domain's record
 * ("authdom:…") is not the IP's and stays. The allow and deny lists are config, not history:
 * a denied client stays denied.
 *
 * Counted as removed: LMDB, the records the map held when the flush began (a record that
 * existed only in a worker's queue is deleted too, but not counted); Redis, the keys a DEL
 * removed. */
#include "reputation.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "proxy/jsonw.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "proxy/ops.h"
#include "store/lmdb_store.h"
#include "store/redis.h"
#include "store/store.h"

struct rep_flush {
	struct reputation_forget f;     /* first member: done gets &f */
	uv_async_t async;               /* on the main loop: every worker has done its part */
	struct control_reply *reply;
	bool json, lmdb;
	bool held[REPUTATION_FORGET_KEYS]; /* LMDB: in the map when the flush began */
	char ip[INET6_ADDRSTRLEN];
	/* the store, for the deletes done here when no worker holds it: LMDB's map, or Redis's
	 * URL with the module's timeout and half-life (its flush time's lifetime) */
	char dir[512];
	uint64_t map_size;
	struct lmdb_store *st;          /* LMDB: the map the workers have open, a reference held
	                                 * from the start (the main loop opens none); or the one
	                                 * opened off the loop at the drain's end */
	char url[512];
	uint64_t timeout, half_life;
	char err[160];                  /* Redis: why it could not be reached */
	uv_timer_t timer;               /* LMDB: the answer's bound (LMDB_APPLY_VERB_MS) */
	int handles;                    /* open of async and timer: fl is freed when none is */
	bool timed, answered;           /* the timer is open / ran out first: answered ERR */
	int here_rc;                    /* LMDB here: lmdb_store_apply_start's answer */
	bool here_asked;                /* ... asked (the answer follows in rep_flush_answer) */
	int redis_rc;                   /* Redis here: rep_flush_redis_here's answer */
	bool redis_asked;               /* ... asked (off the main loop: rep_flush_redis_work) */
};

/* Any thread (the last worker's loop): hands the answer to the main loop. */
static void rep_flush_done(struct reputation_forget *f)
{
	struct rep_flush *fl = (struct rep_flush *)f;

	uv_async_send(&fl->async);
}

static void rep_flush_closed_cb(uv_handle_t *h)
{
	struct rep_flush *fl = h->data;

	if (--fl->handles == 0) {
		lmdb_store_close_async(fl->st); /* a last reference: synced and closed off the loop */
		free(fl);
	}
}

static void rep_flush_close(struct rep_flush *fl)
{
	uv_close((uv_handle_t *)&fl->async, rep_flush_closed_cb);
	if (fl->timed)
		uv_close((uv_handle_t *)&fl->timer, rep_flush_closed_cb);
}

/* Main loop: LMDB deletes through the workers not written within LMDB_APPLY_VERB_MS
 * (another process holds the write lock: the workers' batches wait in the store's writer
 * thread): answered ERR now, the deletes stay queued and are written when the lock comes;
 * the workers' answer, when it comes, only frees fl. Done here at the drain's end, the
 * deletes have their own bound (lmdb_store_apply_start). */
static void rep_flush_timeout_cb(uv_timer_t *t)
{
	struct rep_flush *fl = t->data;

	if (fl->here_asked)
		return;
	fl->answered = true;
	strbuf_printf(control_reply_out(fl->reply), "flush reputation %s: not written within %ds: another "
	    "process holds the write lock of %s (the deletes are queued in the workers and written when it "
	    "lets go)\n", fl->ip, LMDB_APPLY_VERB_MS / 1000, fl->dir);
	control_reply_done(fl->reply, -1);
}

static void rep_flush_answer(struct rep_flush *fl);

static void rep_flush_lmdb_applied_cb(void *arg, int rc)
{
	struct rep_flush *fl = arg;

	fl->here_rc = rc;
	rep_flush_answer(fl);
}

static void rep_flush_lmdb_held(struct rep_flush *fl);

/* The deletes on fl->st, through its writer thread (rep_flush_lmdb_here). */
static int rep_flush_lmdb_apply(struct rep_flush *fl)
{
	struct lmdb_store_change ch[REPUTATION_FORGET_KEYS];

	for (size_t i = 0; i < fl->f.nkeys; i++)
		ch[i] = (struct lmdb_store_change){ .key = fl->f.keys[i] };
	return lmdb_store_apply_start_on(fl->async.loop, fl->st, "reputation", ch, fl->f.nkeys,
	    LMDB_APPLY_VERB_MS, rep_flush_lmdb_applied_cb, fl);
}

/* The map opened off the loop (the drain's end, no module holding it): which keys it held,
 * then the deletes; NULL: not opened (failed, or not within LMDB_APPLY_VERB_MS), nothing
 * flushed. */
static void rep_flush_lmdb_opened_cb(void *arg, struct lmdb_store *st, bool timed_out)
{
	struct rep_flush *fl = arg;

	(void)timed_out;
	fl->st = st;
	rep_flush_lmdb_held(fl);
	fl->here_rc = st != NULL ? rep_flush_lmdb_apply(fl) : LMDB_APPLY_NO_MAP;
	if (fl->here_rc != 0)
		rep_flush_answer(fl);
}

/* LMDB, no worker holding the store (the drain's end: the last one has freed its writer,
 * so none writes beside this one): the deletes handed to the directory's writer thread,
 * answered when written or after LMDB_APPLY_VERB_MS (another process holding the write
 * lock must not stall the main loop: the control socket, the metrics listener, the drain
 * watch), as the greylist verb writes its change. The map: the reference taken at the
 * start, or (the environment closed with the last worker) one opened on a thread of its own
 * (lmdb_store_open_start: mdb_env_open may wait for another process's lock, never on this
 * loop). 1: asked, rep_flush_answer follows; -1: nothing started (fl->here_rc). */
static int rep_flush_lmdb_here(struct rep_flush *fl)
{
	fl->here_asked = true;
	if (fl->st != NULL)
		fl->here_rc = rep_flush_lmdb_apply(fl);
	else
		fl->here_rc = lmdb_store_open_start(fl->async.loop, fl->dir, fl->map_size, LMDB_APPLY_VERB_MS,
		    rep_flush_lmdb_opened_cb, fl) == 0 ? 0 : LMDB_APPLY_NO_MEMORY;
	return fl->here_rc == 0 ? 1 : -1;
}

/* Redis, no worker holding the store (the drain's end: the last worker's connection and
 * write queue are gone): the deletes done here on a connection of the verb's own, off the
 * main loop (rep_flush_redis_work), as the greylist verbs ask Redis. 0, or -1 when Redis
 * could not be reached (fl->err). */
static int rep_flush_redis_here(struct rep_flush *fl)
{
	return reputation_forget_redis_sync(fl->url, fl->timeout, fl->half_life, &fl->f, fl->err, sizeof(fl->err));
}

/* The job's thread (redis_store_job_start): the Redis deletes at the drain's end, each step
 * within the module's timeout; the main loop goes on meanwhile (the control socket, the
 * metrics listener, the drain watch). */
static void rep_flush_redis_work(void *arg)
{
	struct rep_flush *fl = arg;

	fl->redis_rc = rep_flush_redis_here(fl);
}

static void rep_flush_redis_done(void *arg)
{
	rep_flush_answer(arg);
}

/* Main loop: every worker is done; the reply (during the drain: once the deletes done here
 * are written, or their bound passed). */
static void rep_flush_answer_cb(uv_async_t *a)
{
	struct rep_flush *fl = a->data;

	if (fl->answered) {
		rep_flush_close(fl);
		return;
	}
	if (fl->f.workers == 0 && ops_is_stopping() && fl->lmdb && !fl->here_asked &&
	    rep_flush_lmdb_here(fl) == 1)
		return;
	if (fl->f.workers == 0 && ops_is_stopping() && !fl->lmdb && !fl->redis_asked) {
		fl->redis_asked = true;
		if (redis_store_job_start(fl->async.loop, rep_flush_redis_work, rep_flush_redis_done, fl) == 0)
			return;         /* answered once Redis has done (or not answered) */
		rep_flush_redis_work(fl);       /* no thread: here, bounded */
	}
	rep_flush_answer(fl);
}

static void rep_flush_answer(struct rep_flush *fl)
{
	struct strbuf *out = control_reply_out(fl->reply);
	const struct reputation_forget *f = &fl->f;
	bool removed[REPUTATION_FORGET_KEYS];
	/* No worker holds the store: during the drain (its last worker just ended) the flush is
	 * done here, LMDB's by the main loop's writer, Redis's on a connection of its own.
	 * Outside the drain none holding it is an init failure (event=module_error), said as
	 * such. */
	bool here = f->workers == 0 && ops_is_stopping() &&
	    (fl->lmdb ? fl->here_asked && fl->here_rc == 0 : fl->redis_asked && fl->redis_rc == 0);
	int n = 0, failed = atomic_load(&f->failed);
	char names[2 * sizeof(f->keys[0]) + 2] = "", lognames[sizeof(names)] = "";

	for (size_t i = 0; i < f->nkeys; i++) {
		/* none holding the store and not done here: nothing was removed */
		removed[i] = (f->workers > 0 || here) &&
		    (fl->lmdb ? fl->held[i] : atomic_load(&f->removed[i]) > 0);
		if (removed[i]) {
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", n ? " " : "",
			    f->keys[i]);
			snprintf(lognames + strlen(lognames), sizeof(lognames) - strlen(lognames), "%s%s",
			    n ? "," : "", f->keys[i]);
			n++;
		}
	}
	log_event(LOG_LVL_INFO, NULL, "event=reputation_flush client=%s records=%d removed=%s workers=%zu "
	    "failed=%d%s", fl->ip, n, n ? lognames : "-", f->workers, failed,
	    here ? " by=main_loop reason=draining" : "");
	if (f->workers == 0 && !here && ops_is_stopping() && fl->lmdb && fl->here_rc == LMDB_APPLY_TIMEOUT) {
		strbuf_printf(out, "flush reputation %s: mxgate is shutting down and the deletes were not "
		    "written within %ds: another process holds the write lock of %s (they are written "
		    "when it lets go, unless mxgate has exited by then)\n", fl->ip, LMDB_APPLY_VERB_MS / 1000,
		    fl->dir);
		control_reply_done(fl->reply, -1);
	} else if (f->workers == 0 && !here && ops_is_stopping() && !fl->lmdb) {
		strbuf_printf(out, "flush reputation %s: mxgate is shutting down and Redis could not be "
		    "reached from the main loop (%s): nothing flushed (ask again after the restart)\n", fl->ip,
		    fl->err[0] ? fl->err : "no answer");
		control_reply_done(fl->reply, -1);
	} else if (f->workers == 0 && !here && ops_is_stopping()) {
		strbuf_printf(out, "flush reputation %s: mxgate is shutting down and no worker is left to "
		    "reach the store: nothing flushed (ask again after the restart)\n", fl->ip);
		control_reply_done(fl->reply, -1);
	} else if (f->workers == 0 && !here) {
		strbuf_printf(out, "flush reputation: no worker holds the reputation store (see the log for "
		    "event=module_error module=reputation)\n");
		control_reply_done(fl->reply, -1);
	} else if (failed > 0) {
		strbuf_printf(out, "flush reputation %s: the store did not confirm %d delete(s) (unreachable "
		    "or failing, see the log); %d record(s) known removed\n", fl->ip, failed, n);
		control_reply_done(fl->reply, -1);
	} else if (fl->json) {
		struct jsonw j;

		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_str(&j, "flushed", "reputation");
		jsonw_str(&j, "ip", fl->ip);
		jsonw_int(&j, "entries", n);
		jsonw_arr(&j, "records");
		for (size_t i = 0; i < f->nkeys; i++)
			if (removed[i])
				jsonw_str(&j, NULL, f->keys[i]);
		jsonw_end(&j);
		jsonw_int(&j, "workers", (long long)f->workers);
		if (here)
			jsonw_bool(&j, "draining", true);
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
		control_reply_done(fl->reply, 0);
	} else {
		strbuf_printf(out, "reputation of %s flushed: %d record%s removed%s%s%s\n", fl->ip, n,
		    n == 1 ? "" : "s", n ? " (" : " (none was held)", names, n ? ")" : "");
		control_reply_done(fl->reply, 0);
	}
	rep_flush_close(fl);
}

/* LMDB: which of the keys the map holds now (read inline on fl->st; none held without it). */
static void rep_flush_lmdb_held(struct rep_flush *fl)
{
	struct reputation_counts rc;
	size_t len;

	for (size_t i = 0; fl->st && i < fl->f.nkeys; i++)
		fl->held[i] = lmdb_store_get(fl->st, fl->f.keys[i], strlen(fl->f.keys[i]), &rc, sizeof(rc), &len) == 1;
}

static void rep_flush_start(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct control_reply *r)
{
	const struct reputation_config *c = &cfg->reputation;
	struct strbuf *out = control_reply_out(r);
	struct sockaddr_storage ss;
	struct rep_flush *fl;
	int kind = store_kind_of(c->store);

	if (argc != 1 || body != NULL) {
		strbuf_printf(out, "usage: flush reputation IP\n");
		control_reply_done(r, -1);
		return;
	}
	if (netaddr_sockaddr_from_string(argv[0], &ss) < 0) {
		strbuf_printf(out, "flush reputation: \"%.64s\" is not an IP address\n", argv[0]);
		control_reply_done(r, -1);
		return;
	}
	if (kind != STORE_LMDB && kind != STORE_REDIS) {
		strbuf_printf(out, "flush reputation: no history is kept (reputation.store is not set)\n");
		control_reply_done(r, -1);
		return;
	}
	fl = calloc(1, sizeof(*fl));
	if (fl == NULL || reputation_keys((struct sockaddr *)&ss, c->prefix_v4, c->prefix_v6,
	    cfg->limits.client_ipv6_prefix, fl->f.keys[0], sizeof(fl->f.keys[0]), fl->f.keys[1], sizeof(fl->f.keys[1])) < 0 ||
	    uv_async_init(control_reply_loop(r), &fl->async, rep_flush_answer_cb) != 0) {
		free(fl);
		strbuf_printf(out, "flush reputation: out of memory\n");
		control_reply_done(r, -1);
		return;
	}
	fl->async.data = fl;
	fl->reply = r;
	fl->json = json;
	fl->lmdb = kind == STORE_LMDB;
	if (fl->lmdb)
		snprintf(fl->dir, sizeof(fl->dir), "%s", store_lmdb_dir(c->store));
	fl->map_size = c->map_size;
	if (!fl->lmdb)
		snprintf(fl->url, sizeof(fl->url), "%s", c->store);
	fl->timeout = c->timeout;
	fl->half_life = c->half_life;
	fl->f.nkeys = 2;
	fl->f.done = rep_flush_done;
	/* the key's form of the address (an IPv4-mapped IPv6 one reads as IPv4) */
	snprintf(fl->ip, sizeof(fl->ip), "%s", fl->f.keys[0] + 3);
	if (fl->lmdb) {
		/* the environment the workers have open, never one opened here: mkdir and
		 * mdb_env_open may wait for another process's lock on lock.mdb, and this is the
		 * main loop (the control socket, /metrics, the drain watch) */
		fl->st = lmdb_store_open_existing(fl->dir);
		rep_flush_lmdb_held(fl);
	}
	fl->handles = 1;
	reputation_forget_post(&fl->f);
	if (fl->lmdb) {
		/* the workers' answer comes on this loop, after this return: the timer is in place */
		uv_timer_init(control_reply_loop(r), &fl->timer);
		fl->timer.data = fl;
		fl->timed = true;
		fl->handles = 2;
		uv_timer_start(&fl->timer, rep_flush_timeout_cb, LMDB_APPLY_VERB_MS, 0);
	}
}

/* During the drain too (an operator clearing a client while sessions finish): the workers
 * still running take their part; one that ends with the request in its mailbox does it as
 * it frees its store (rep_worker_free), so the answer comes; asked after the last one
 * ended, the main loop does it (LMDB: its own writer; Redis: its own connection). */
const struct control_verb reputation_flush_control_verb = {
	.words = "flush reputation", .usage = "flush reputation IP", .start = rep_flush_start,
	.during_drain = true,
};
