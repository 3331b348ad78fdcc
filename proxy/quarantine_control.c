/* quarantine_control.c — the control verbs on the quarantine maildir (control.h):
 *
 *   quarantine list [N] [FILTER...] the newest N (default 20, at most QUARANTINE_LIST_MAX)
 *                                   that match rcpt=, from=, subject=, older= (all of them)
 *   quarantine show ID              envelope and header block
 *   quarantine release ID [RCPT...] re-injected through the backend pool; with RCPTs named the
 *                                   file stays for the held recipients not named
 *   quarantine delete ID [RCPT...]  the file, or those recipients from it
 *
 * list, show and delete read the maildir in the libuv thread pool. release runs on a thread
 * of its own with a loop of its own: a transaction (smtp_tx.c, the one sessions use: the
 * backend pool's pick, failover, LMTP, maildir backends) with the held envelope (or the
 * recipients named), the message read from the file in bounded chunks there — the main
 * loop never touches the file. No filter runs: what held the message is not asked again.
 * The file goes into the maildir's released/ folder only after a backend said 250 (as
 * amavisd-new keeps a released file); any failure leaves it where it is and answers why.
 * One release at a time (a second is refused: "a release is under way"). release, delete
 * and the expiry sweep lock the held file (quarantine_find_locked: here and in any process
 * sharing the folder): a delete meeting a release answers busy at once (the thread pool is
 * no place to wait), a release meeting a delete waits for it up to QC_LOCK_WAIT_MS on its
 * own thread, the sweep leaves the file for its next run. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "control_verbs.h"
#include "config.h"
#include "counters.h"
#include "hook.h"
#include "jsonw.h"
#include "log.h"
#include "msgbuf.h"
#include "ops.h"
#include "quarantine.h"
#include "quarantine_control.h"
#include "relay.h"
#include "smtp_tx.h"
#include "worker.h"

#define QC_LIST_DEFAULT 20
#define QC_CHUNK (64u * 1024)          /* the message is read in chunks of this size */
#define QC_WORKER_INDEX 63             /* the release loop's worker index (queue ids, opstats) */
#define QC_LOCK_WAIT_MS 10000          /* a release waits this long for another operation's lock */

/* ------------------------------------------------------------ output helpers */

/* buf[sp] with control octets as '?' (for text replies). */
static void qc_put_span(struct strbuf *out, const char *buf, struct quarantine_span sp)
{
	for (size_t i = 0; i < sp.len; i++) {
		unsigned char c = (unsigned char)buf[sp.off + i];
		strbuf_append(out, c < 0x20 || c == 0x7f ? "?" : buf + sp.off + i, 1);
	}
}

/* buf[sp] as a NUL-terminated string in tmp (cut to cap - 1). */
static const char *qc_span_str(char *tmp, size_t cap, const char *buf, struct quarantine_span sp)
{
	size_t n = sp.len < cap - 1 ? sp.len : cap - 1;

	memcpy(tmp, buf + sp.off, n);
	tmp[n] = '\0';
	return tmp;
}

static void qc_date(char *d, size_t cap, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(d, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One held message: JSON fields into the open object, or a text line. */
static void qc_item_json(struct jsonw *j, const struct quarantine_item *it)
{
	char tmp[1024], date[32];
	const struct quarantine_envelope *e = &it->env;

	qc_date(date, sizeof(date), it->mtime);
	jsonw_str(j, "id", qc_span_str(tmp, sizeof(tmp), it->head, e->id));
	jsonw_str(j, "date", date);
	jsonw_str(j, "from", qc_span_str(tmp, sizeof(tmp), it->head, e->sender));
	jsonw_arr(j, "rcpts");
	for (size_t i = 0; i < e->nrcpts; i++)
		jsonw_str(j, NULL, qc_span_str(tmp, sizeof(tmp), it->head, e->rcpts[i]));
	jsonw_end(j);
	jsonw_str(j, "reason", qc_span_str(tmp, sizeof(tmp), it->head, e->reason));
	jsonw_int(j, "size", (long long)it->size);
}

static void qc_item_text(struct strbuf *out, const struct quarantine_item *it)
{
	char date[32];
	const struct quarantine_envelope *e = &it->env;

	qc_date(date, sizeof(date), it->mtime);
	qc_put_span(out, it->head, e->id);
	strbuf_printf(out, " %s <", date);
	qc_put_span(out, it->head, e->sender);
	strbuf_append(out, "> ", 2);
	for (size_t i = 0; i < e->nrcpts; i++) {
		strbuf_append(out, i ? ",<" : "<", i ? 2 : 1);
		qc_put_span(out, it->head, e->rcpts[i]);
		strbuf_append(out, ">", 1);
	}
	strbuf_printf(out, " %llu ", (unsigned long long)it->size);
	if (e->reason.len)
		qc_put_span(out, it->head, e->reason);
	else
		strbuf_append(out, "-", 1);
	strbuf_append(out, "\n", 1);
}

/* Tests only: the variable env names a FIFO (MXGATE_TEST_QUARANTINE_RELEASE_HOLD: a release,
 * MXGATE_TEST_QUARANTINE_DELETE_HOLD: a delete): the operation holds once it has found and
 * locked its file, until the test has opened FIFO for writing and closed it (open blocks until
 * both ends are open: the test knows the operation is there), so another runs in between,
 * without a sleep (test_quarantine_release_race.py). */
static void qc_test_hold(const char *env)
{
	const char *fifo = getenv(env);
	char c;
	int fd;

	if (fifo == NULL || (fd = open(fifo, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	for (;;) {
		ssize_t n = read(fd, &c, 1);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		break;
	}
	close(fd);
}

/* Tests only: MXGATE_TEST_QUARANTINE_LOCK_WAIT_MS (digits) replaces QC_LOCK_WAIT_MS, so that a
 * test of a release waiting for a delete does not depend on the delete ending within 10 s on
 * a loaded machine (test_quarantine_release_race.py sets an hour: it lets the delete go). */
static unsigned qc_lock_wait_ms(void)
{
	const char *v = getenv("MXGATE_TEST_QUARANTINE_LOCK_WAIT_MS");
	char *end;
	long ms;

	if (v == NULL || *v == '\0')
		return QC_LOCK_WAIT_MS;
	errno = 0;
	ms = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || ms < 0 || ms > 86400000L)
		return QC_LOCK_WAIT_MS;
	return (unsigned)ms;
}

static const char qc_busy_text[] = "busy: another operation on it is under way (a release, a delete or the "
	"expiry sweep, here or on a node sharing the folder): try again when it has answered";

/* ------------------------------------------------------------ list, show, delete */

enum qc_op { QC_LIST = 0, QC_SHOW, QC_DELETE, QC_RELEASE };

struct qc_job {
	uv_work_t req;
	struct control_reply *r;
	enum qc_op op;
	char *root;
	char id[QUARANTINE_ID_MAX + 1];
	size_t n;
	bool json;
	int rc;
	struct strbuf out;
	size_t nrcpts;               /* delete: for the log line (the recipients deleted) */
	size_t nkept;                /* delete RCPT...: the recipients the file still names */
	struct quarantine_filter f;  /* list: strings into fstore */
	char *fstore[3];
	char **rcpts;                /* delete RCPT...: the recipients named (NULL: all) */
	size_t nnamed;
};

static void qc_not_found(struct strbuf *out, const char *id)
{
	strbuf_printf(out, "quarantine: %s: no held message with this ID\n", id);
}

static void qc_work_list(struct qc_job *j)
{
	struct quarantine_item *items = calloc(j->n ? j->n : 1, sizeof(*items));
	char err[600] = "";
	size_t count = 0;

	if (items == NULL || quarantine_list(j->root, j->n, &j->f, items, &count, err, sizeof(err)) != 0) {
		strbuf_printf(&j->out, "quarantine list: %s\n", items ? err : "out of memory");
		free(items);
		j->rc = -1;
		return;
	}
	if (j->json) {
		struct jsonw w;
		jsonw_init(&w, &j->out);
		jsonw_obj(&w, NULL);
		jsonw_arr(&w, "held");
		for (size_t i = 0; i < count; i++) {
			jsonw_obj(&w, NULL);
			qc_item_json(&w, &items[i]);
			jsonw_end(&w);
		}
		jsonw_end(&w);
		jsonw_end(&w);
		strbuf_append(&j->out, "\n", 1);
	} else {
		for (size_t i = 0; i < count; i++)
			qc_item_text(&j->out, &items[i]);
		if (count == 0)
			strbuf_printf(&j->out, quarantine_filter_is_set(&j->f) ? "quarantine: none matches\n" :
			    "quarantine: empty\n");
	}
	for (size_t i = 0; i < count; i++)
		quarantine_item_free(&items[i]);
	free(items);
	j->rc = 0;
}

/* The held recipients of it except the ones whose index has skip[i] set, into left (it's
 * nrcpts slots; addr malloc'd: qc_rcpts_free). Returns how many, or -1 out of memory. */
static long qc_rcpts_except(const struct quarantine_item *it, const bool *skip, struct rcpt *left)
{
	size_t n = 0;

	for (size_t i = 0; i < it->env.nrcpts; i++) {
		if (skip[i])
			continue;
		left[n].addr = strndup(it->head + it->env.rcpts[i].off, it->env.rcpts[i].len);
		if (left[n++].addr == NULL)
			return -1;
	}
	return (long)n;
}

static void qc_rcpts_free(struct rcpt *r, size_t cap)
{
	for (size_t i = 0; r && i < cap; i++)
		free(r[i].addr);
	free(r);
}

/* delete ID RCPT...: the named recipients leave the held file (rewritten to name the others,
 * quarantine_rewrite_rcpts), the file goes when none is left; a name the file does not hold
 * refuses it all. */
static void qc_delete_rcpts(struct qc_job *j, const struct quarantine_item *it)
{
	size_t held = it->env.nrcpts;
	bool *skip = calloc(held, sizeof(*skip));
	struct rcpt *left = calloc(held, sizeof(*left));
	char err[600] = "";
	long nleft;

	if (skip == NULL || left == NULL) {
		strbuf_printf(&j->out, "quarantine delete: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < j->nnamed; i++) {
		long k = quarantine_item_rcpt_index(it, j->rcpts[i]);
		if (k < 0) {
			strbuf_printf(&j->out, "quarantine delete %s: <%s> is not a recipient it is held for\n", j->id,
			    j->rcpts[i]);
			goto out;
		}
		skip[k] = true;
	}
	nleft = qc_rcpts_except(it, skip, left);
	if (nleft < 0) {
		strbuf_printf(&j->out, "quarantine delete: out of memory\n");
		goto out;
	}
	/* none left: the file goes; else it names only the others, or is as it was */
	int fail = 0;
	if (nleft == 0 && unlink(it->path) != 0)
		fail = snprintf(err, sizeof(err), "unlink %.400s: %s", it->path, strerror(errno)) != 0;
	else if (nleft > 0)
		fail = quarantine_rewrite_rcpts(j->root, it, left, (size_t)nleft, err, sizeof(err)) != 0;
	if (fail) {
		strbuf_printf(&j->out, "quarantine delete %s: %s (the file is as it was)\n", j->id, err);
		goto out;
	}
	j->rc = 0;
	j->nrcpts = held - (size_t)nleft;
	j->nkept = (size_t)nleft;
	if (j->json)
		strbuf_printf(&j->out, "{\"deleted\":\"%s\",\"rcpts\":%zu,\"kept\":%zu}\n", j->id, j->nrcpts, j->nkept);
	else if (nleft == 0)
		strbuf_printf(&j->out, "%s: deleted\n", j->id);
	else
		strbuf_printf(&j->out, "%s: deleted for %zu recipient%s, still held for %zu\n", j->id, j->nrcpts,
		    j->nrcpts == 1 ? "" : "s", j->nkept);
out:
	free(skip);
	qc_rcpts_free(left, held);
}

static void qc_work_show_delete(struct qc_job *j)
{
	struct quarantine_item *it = calloc(1, sizeof(*it));
	char err[600] = "";
	int f;

	if (it == NULL) {
		strbuf_printf(&j->out, "quarantine: out of memory\n");
		j->rc = -1;
		return;
	}
	/* a delete locks the file (a release or the sweep under way: busy, at once: this is the
	 * thread pool's thread, no place to wait); show only reads */
	if (j->op == QC_DELETE)
		f = quarantine_find_locked(j->root, j->id, it, 0, NULL, NULL, err, sizeof(err));
	else
		f = quarantine_find(j->root, j->id, it, err, sizeof(err));
	j->rc = -1;
	if (f == 1 && j->op == QC_DELETE)
		qc_test_hold("MXGATE_TEST_QUARANTINE_DELETE_HOLD");
	if (f == QUARANTINE_BUSY)
		strbuf_printf(&j->out, "quarantine delete %s: %s\n", j->id, qc_busy_text);
	else if (f < 0)
		strbuf_printf(&j->out, "quarantine: %s\n", err);
	else if (f == 0)
		qc_not_found(&j->out, j->id);
	else if (j->op == QC_DELETE && j->rcpts)
		qc_delete_rcpts(j, it);
	else if (j->op == QC_DELETE) {
		if (unlink(it->path) != 0)
			strbuf_printf(&j->out, "quarantine delete: %s: %s\n", it->path, strerror(errno));
		else {
			j->rc = 0;
			j->nrcpts = it->env.nrcpts;
			if (j->json)
				strbuf_printf(&j->out, "{\"deleted\":\"%s\"}\n", j->id);
			else
				strbuf_printf(&j->out, "%s: deleted\n", j->id);
		}
	} else {
		size_t hl;
		const char *h = quarantine_item_headers(it, &hl);
		j->rc = 0;
		if (j->json) {
			struct jsonw w;
			char *hs = strndup(h, hl);
			jsonw_init(&w, &j->out);
			jsonw_obj(&w, NULL);
			qc_item_json(&w, it);
			jsonw_str(&w, "file", it->path);
			jsonw_str(&w, "headers", hs ? hs : "");
			jsonw_end(&w);
			strbuf_append(&j->out, "\n", 1);
			free(hs);
		} else {
			qc_item_text(&j->out, it);
			strbuf_printf(&j->out, "file: %s\n\n", it->path);
			for (size_t i = 0; i < hl; i++) {
				unsigned char c = (unsigned char)h[i];
				if (c == '\r')
					continue;
				strbuf_append(&j->out, (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? "?" : h + i, 1);
			}
		}
	}
	quarantine_item_free(it);
	free(it);
}

static void qc_work_cb(uv_work_t *req)
{
	struct qc_job *j = req->data;

	if (j->op == QC_LIST)
		qc_work_list(j);
	else
		qc_work_show_delete(j);
}

static void qc_job_free(struct qc_job *j)
{
	strbuf_free(&j->out);
	free(j->root);
	for (size_t i = 0; i < 3; i++)
		free(j->fstore[i]);
	for (size_t i = 0; i < j->nnamed; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j);
}

static void qc_after_cb(uv_work_t *req, int status)
{
	struct qc_job *j = req->data;
	struct strbuf *out = control_reply_out(j->r);

	if (status == UV_ECANCELED) {
		strbuf_printf(out, "quarantine: cancelled\n");
		j->rc = -1;
	} else if (j->out.len)
		strbuf_append(out, j->out.v, j->out.len);
	if (j->op == QC_DELETE && j->rc == 0 && j->nkept)
		log_event(LOG_LVL_INFO, NULL, "event=quarantine_deleted id=%s rcpts=%zu via=control kept=%zu", j->id,
		    j->nrcpts, j->nkept);
	else if (j->op == QC_DELETE && j->rc == 0)
		log_event(LOG_LVL_INFO, NULL, "event=quarantine_deleted id=%s rcpts=%zu via=control", j->id, j->nrcpts);
	control_reply_done(j->r, j->rc);
	qc_job_free(j);
}

/* ------------------------------------------------------------ expiry */

struct qc_sweep {
	uv_work_t req;
	char *root;
	uint64_t expire_ms;
	struct quarantine_expired n;
	int rc;
	char err[600];
};

/* main loop only */
static bool qc_sweep_running;
static uint64_t qc_sweep_due;           /* uv_now() when the next sweep is due */
static char *qc_sweep_root;             /* what the last sweep ran with (a reload changing */
static uint64_t qc_sweep_expire;        /* either sweeps at the next tick) */

static void qc_sweep_work_cb(uv_work_t *req)
{
	struct qc_sweep *s = req->data;
	/* the wall clock, as the files' times and `quarantine list older=` are */
	time_t before = s->expire_ms ? time(NULL) - (time_t)(s->expire_ms / 1000) : 0;   /* 0: tmp/ only */

	s->rc = quarantine_expire(s->root, before, time(NULL) - QUARANTINE_TMP_STALE_S, &s->n, s->err, sizeof(s->err));
}

static void qc_sweep_after_cb(uv_work_t *req, int status)
{
	struct qc_sweep *s = req->data;
	char ev[40], rv[700];

	qc_sweep_running = false;
	if (s->expire_ms)
		cfg_format_duration(s->expire_ms, ev, sizeof(ev));
	else
		snprintf(ev, sizeof(ev), "none");   /* no quarantine.expire: tmp/ swept alone */
	if (s->n.held || s->n.released || s->n.stale_tmp || s->n.busy) {
		char bv[40] = "";
		if (s->n.busy)   /* old enough, but a release or delete held them: the next sweep's */
			snprintf(bv, sizeof(bv), " busy=%zu", s->n.busy);
		counter_add(COUNTER_QUARANTINE_EXPIRED, (long)s->n.held);
		log_event(LOG_LVL_INFO, NULL, "event=quarantine_expired count=%zu released=%zu stale_tmp=%zu%s expire=%s "
		    "dir=%s", s->n.held, s->n.released, s->n.stale_tmp, bv, ev, log_val(rv, sizeof(rv), s->root));
	}
	if (s->n.lock_failed) {   /* once a sweep: the files it could not lock, and the first reason */
		char dv[700];

		log_event(LOG_LVL_WARNING, NULL, "event=quarantine_expire_lock_failed files=%zu reason=%s dir=%s",
		    s->n.lock_failed, log_val(rv, sizeof(rv), strerror(s->n.lock_errno)),
		    log_val(dv, sizeof(dv), s->root));
	}
	if (status == UV_ECANCELED)
		snprintf(s->err, sizeof(s->err), "cancelled");
	if (status == UV_ECANCELED || s->rc != 0)
		log_event(LOG_LVL_WARNING, NULL, "event=quarantine_expire_failed reason=%s",
		    log_val(rv, sizeof(rv), s->err));
	free(s->root);
	free(s);
}

void quarantine_expire_tick(uv_loop_t *loop, const struct mx_config *cfg)
{
	uint64_t now = uv_now(loop);
	struct qc_sweep *s;

	/* without quarantine.expire the sweep still empties tmp/ of what a crash left */
	if (qc_sweep_running || cfg == NULL || cfg->quarantine_dir == NULL || ops_is_stopping())
		return;
	if (qc_sweep_root && strcmp(qc_sweep_root, cfg->quarantine_dir) == 0 &&
	    qc_sweep_expire == cfg->quarantine_expire && now < qc_sweep_due)
		return;
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->root = strdup(cfg->quarantine_dir)) == NULL) {
		free(s);
		return;   /* out of memory: the next tick tries again */
	}
	s->expire_ms = cfg->quarantine_expire;
	s->req.data = s;
	if (uv_queue_work(loop, &s->req, qc_sweep_work_cb, qc_sweep_after_cb) != 0) {
		free(s->root);
		free(s);
		return;
	}
	qc_sweep_running = true;
	free(qc_sweep_root);
	qc_sweep_root = strdup(cfg->quarantine_dir);   /* NULL: the next tick sweeps again */
	qc_sweep_expire = cfg->quarantine_expire;
	qc_sweep_due = now + QUARANTINE_SWEEP_MS;
}

/* ------------------------------------------------------------ release */

struct qc_release {
	/* main loop */
	uv_async_t async;
	uv_timer_t watch;            /* sees the process stopping: sets stop */
	int closing;                 /* async and watch closing: freed when both are */
	uv_thread_t thread;
	struct control_reply *r;
	struct shared_gen *g;
	bool json;
	char id[QUARANTINE_ID_MAX + 1];
	char **rcpts;                /* the recipients named (NULL: the held envelope's) */
	size_t nrcpts_named;
	_Atomic int stop;            /* main loop -> release thread: mxgate is stopping */
	/* the release thread's; read on the main loop after the async */
	uv_timer_t stop_timer;       /* on the release loop: ends it limits.drain_timeout after stop */
	uint64_t stop_seen_ms;       /* 0 or when the release loop first saw stop (+1) */
	bool dot_sent;
	struct worker *w;
	struct worker_gen wg;
	struct hook_env env;
	struct smtp_tx tx;
	struct quarantine_item it;
	char **to;                   /* the recipients of the transaction */
	size_t nto, next_rcpt;
	int rc;                      /* 0 released, -1 failed, -2 delivered but the file stays
	                              * as it was, -3 delivered to some, the file stays for the
	                              * ones refused after the dot (rewritten to name only them) */
	char why[1200];
	char backend[300];
	char queue_id[24];
	struct strbuf refused;       /* "<addr> code text" of each refused after the dot, ", " */
	size_t nrefused;             /* recipients refused after the dot (a delivered release) */
	size_t ndelivered;           /* recipients delivered (a failed release: before the failure) */
	size_t nkept;                /* held recipients the file still names after it */
	bool file_gone;              /* released, and the file had gone meanwhile (expired) */
	bool waited;                 /* for another operation's lock on the file (logged) */
};

static bool qc_release_running;        /* main loop only */

/* Release thread: the transaction failed at `what`; the file stays. */
static void qc_release_fail(struct qc_release *rel, const char *what, const struct smtp_tx_result *res)
{
	char tv[600];

	if (res)
		snprintf(rel->why, sizeof(rel->why), "%s: %d %s", what, res->code,
		    log_val(tv, sizeof(tv), res->text ? res->text : ""));
	else
		snprintf(rel->why, sizeof(rel->why), "%s", what);
	rel->rc = -1;
	smtp_tx_reset(&rel->tx, false);
	relay_close_idle(rel->w);
}

/* Release thread: a recipient's own reply after the dot (smtp_tx's rcpt_result): the
 * refused ones are named in the answer. */
static void qc_release_rcpt_result_cb(void *arg, const struct rcpt *r, int code, const char *text)
{
	struct qc_release *rel = arg;
	char av[400], tv[400];

	if (code / 100 != 5 || rel->refused.len > 800)
		return;
	/* the backend's line as it came ("550 5.2.2 ..."), quoted as any value from outside */
	strbuf_printf(&rel->refused, "%s<%s> %s", rel->refused.len ? ", " : "", log_val(av, sizeof(av), r->addr),
	    log_val(tv, sizeof(tv), text ? text : ""));
}

/* Release thread: after the dot, the recipients the release still owes (the envelope's:
 * after a 250 the ones refused, after a failure every one left, the ones an LMTP server
 * took before a replay having left it) into owed (env->nrcpts slots; their addr valid until
 * the transaction is reset). Returns how many. */
static size_t qc_release_owed(const struct qc_release *rel, bool delivered, struct rcpt *owed)
{
	size_t n = 0;

	for (size_t i = 0; i < rel->env.nrcpts; i++)
		if (!delivered || rel->env.rcpts[i].status / 100 != 2)
			owed[n++] = rel->env.rcpts[i];
	return n;
}

/* Release thread: the held recipients the file is to name after the transaction, into left
 * (the held file's nrcpts slots, addr malloc'd): the ones not in it (not named), and the ones
 * in it still owed (owed[0..nowed)). Returns how many, -1 out of memory. */
static long qc_release_left(const struct qc_release *rel, const struct rcpt *owed, size_t nowed,
    struct rcpt *left)
{
	size_t held = rel->it.env.nrcpts;
	bool *skip = calloc(held ? held : 1, sizeof(*skip));
	long n;

	if (skip == NULL)
		return -1;
	/* held x (named + owed): at most 1000 x 1000 comparisons */
	for (size_t i = 0; i < held; i++) {
		bool in_tx = rel->rcpts == NULL, is_owed = false;
		for (size_t k = 0; !in_tx && k < rel->nrcpts_named; k++)
			in_tx = quarantine_item_rcpt_is(&rel->it, i, rel->rcpts[k]);
		for (size_t k = 0; in_tx && !is_owed && k < nowed; k++)
			is_owed = quarantine_item_rcpt_is(&rel->it, i, owed[k].addr);
		skip[i] = in_tx && !is_owed;   /* the transaction gave it to this one */
	}
	n = qc_rcpts_except(&rel->it, skip, left);
	free(skip);
	return n;
}

static void qc_release_deliver_cb(void *arg, const struct smtp_tx_result *res)
{
	struct qc_release *rel = arg;
	const char *root = rel->g->cfg->quarantine_dir;
	bool delivered = res->code / 100 == 2;
	struct rcpt *owed = calloc(rel->env.nrcpts ? rel->env.nrcpts : 1, sizeof(*owed));
	size_t nowed = owed ? qc_release_owed(rel, delivered, owed) : rel->env.nrcpts;
	size_t held = rel->it.env.nrcpts;
	struct rcpt *left = calloc(held ? held : 1, sizeof(*left));
	long nleft = owed && left ? qc_release_left(rel, owed, nowed, left) : -1;
	char err[600] = "";
	int rw = 0;

	/* Some held recipients have it, some not (not named, or refused): the file stays for
	 * the others and names only them (a second release sends nothing more to the ones that
	 * have it). Before, a release to the ones named moved the file into released/ and the
	 * others lost their copy. */
	if (nleft < 0)
		rw = (snprintf(err, sizeof(err), "out of memory"), -1);
	else if (nleft > 0 && (size_t)nleft < held)
		rw = quarantine_rewrite_rcpts(root, &rel->it, left, (size_t)nleft, err, sizeof(err));
	rel->nkept = nleft > 0 ? (size_t)nleft : 0;
	free(owed);
	qc_rcpts_free(left, held);
	if (!delivered) {
		rel->ndelivered = rel->nto - nowed;
		qc_release_fail(rel, "the backend did not take it", res);
		size_t l = strlen(rel->why);
		if (rel->ndelivered > 0 && rw == 0)
			snprintf(rel->why + l, sizeof(rel->why) - l, "; delivered to %zu of %zu before: the held file "
			    "now names only the %zu not delivered", rel->ndelivered, rel->nto, rel->nkept);
		else if (rel->ndelivered > 0)
			snprintf(rel->why + l, sizeof(rel->why) - l, "; delivered to %zu of %zu before, but the held "
			    "file still names all of them (%s): release it to the others by name or delete it",
			    rel->ndelivered, rel->nto, err);
		return;
	}
	snprintf(rel->backend, sizeof(rel->backend), "%s", rel->tx.backend ? rel->tx.backend->url : "maildir");
	snprintf(rel->queue_id, sizeof(rel->queue_id), "%s", rel->env.queue_id);
	rel->nrefused = nowed;
	if (nowed > 0) {
		/* refused after the dot (an LMTP server's 5xx for them) */
		int k = snprintf(rel->why, sizeof(rel->why), "released as %s to %zu of %zu recipients via %s; refused %s; ",
		    rel->queue_id, rel->nto - nowed, rel->nto, rel->backend, rel->refused.len ? rel->refused.v : "?");
		size_t l = k < 0 ? 0 : (size_t)k >= sizeof(rel->why) ? sizeof(rel->why) - 1 : (size_t)k;
		if (rw == 0)
			snprintf(rel->why + l, sizeof(rel->why) - l, "the file stays for them");
		else
			snprintf(rel->why + l, sizeof(rel->why) - l, "but the held file still names all of them (%s): "
			    "release it to the refused ones by name or delete it (quarantine delete %s)", err, rel->id);
		rel->rc = rw == 0 ? -3 : -2;
	} else if (nleft != 0) {
		/* the ones named have it; the file stays for the held recipients not named */
		if (rw == 0)
			rel->rc = 0;
		else {
			snprintf(rel->why, sizeof(rel->why), "released as %s to %zu recipient%s via %s, but the held "
			    "file still names them (%s): delete it for them (quarantine delete %s RCPT...)",
			    rel->queue_id, rel->nto, rel->nto == 1 ? "" : "s", rel->backend, err, rel->id);
			rel->rc = -2;
		}
	} else if ((rw = quarantine_move_released(root, &rel->it, err, sizeof(err))) > 0) {
		/* delivered; the file went meanwhile (expired, or deleted): nothing is held */
		rel->file_gone = true;
		rel->rc = 0;
	} else if (rw != 0) {
		/* delivered: only now does the file leave the quarantine */
		snprintf(rel->why, sizeof(rel->why), "delivered (queue_id %s via %s) but the held file stays: %s: "
		    "delete it (quarantine delete %s) or it can be released twice", rel->queue_id, rel->backend,
		    err, rel->id);
		rel->rc = -2;
	} else
		rel->rc = 0;
	smtp_tx_reset(&rel->tx, false);
	relay_close_idle(rel->w);
}

/* The held message, without its envelope block, read in QC_CHUNK pieces. */
static void qc_release_data(struct qc_release *rel)
{
	char *buf = malloc(QC_CHUNK);
	/* the file quarantine_find read the block from, open since: an expiry's unlink or a
	 * delete's rewrite meanwhile leaves it whole (before, the name was opened again here:
	 * gone, or another file read from this one's block end) */
	int fd = rel->it.has_fd ? rel->it.fd : -1;
	off_t off = (off_t)rel->it.env.end;
	bool ok = buf != NULL && fd >= 0 && smtp_tx_data_open(&rel->tx) == 0;

	while (ok) {
		ssize_t n = pread(fd, buf, QC_CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ok = n == 0;
			break;
		}
		smtp_tx_data_append(&rel->tx, buf, (size_t)n);
		off += n;
	}
	free(buf);
	if (!ok || smtp_tx_msg_state(&rel->tx) != SMTP_TX_MSG_OK) {
		qc_release_fail(rel, smtp_tx_msg_state(&rel->tx) == SMTP_TX_MSG_TOO_BIG ?
		    "the held message is over limits.max_message_size" : "the held file could not be read", NULL);
		return;
	}
	smtp_tx_data_end(&rel->tx);
	rel->dot_sent = true;
	smtp_tx_deliver(&rel->tx, false, qc_release_deliver_cb, rel);
}

static void qc_release_rcpt_cb(void *arg, const struct smtp_tx_result *res);

static void qc_release_next_rcpt(struct qc_release *rel)
{
	if (rel->next_rcpt == rel->nto) {
		qc_release_data(rel);
		return;
	}
	smtp_tx_set_rcpt(&rel->tx, rel->to[rel->next_rcpt], "");
	smtp_tx_rcpt(&rel->tx, qc_release_rcpt_cb, rel);
}

static void qc_release_rcpt_cb(void *arg, const struct smtp_tx_result *res)
{
	struct qc_release *rel = arg;
	char what[600], av[400];

	if (res->code / 100 != 2) {
		/* all or nothing: a release to some of the recipients would leave the others with a
		 * file that names them all */
		snprintf(what, sizeof(what), "recipient %s refused", log_val(av, sizeof(av), rel->to[rel->next_rcpt]));
		qc_release_fail(rel, what, res);
		return;
	}
	rel->next_rcpt++;
	qc_release_next_rcpt(rel);
}

static void qc_release_mail_cb(void *arg, const struct smtp_tx_result *res)
{
	struct qc_release *rel = arg;

	if (res->code / 100 != 2) {
		/* the backend's refusal of the sender, or none reached (smtp_tx's 451 4.4.1) */
		qc_release_fail(rel, "the transaction could not begin (MAIL)", res);
		return;
	}
	qc_release_next_rcpt(rel);
}

/* Release loop, every 100 ms: once the main loop has seen mxgate stopping (SIGTERM), the
 * release has limits.drain_timeout to end, as a session has; then the transaction is let
 * go (no callback comes: the file stays) and the loop ends. The timer is unref'd: it never
 * keeps the loop alive by itself. */
static void qc_release_stop_cb(uv_timer_t *t)
{
	struct qc_release *rel = t->data;
	uint64_t now = uv_now(t->loop);

	if (!atomic_load(&rel->stop))
		return;
	if (rel->stop_seen_ms == 0)
		rel->stop_seen_ms = now + 1;
	if (now + 1 - rel->stop_seen_ms < rel->g->cfg->limits.drain_timeout)
		return;
	snprintf(rel->why, sizeof(rel->why), "mxgate is shutting down: the release was stopped after "
	    "limits.drain_timeout; the held file stays (%s)", rel->dot_sent ?
	    "the backend had the whole message and had not answered it: see whether it delivered "
	    "before releasing again" : "nothing was delivered");
	rel->rc = -1;
	smtp_tx_close(&rel->tx);
	relay_close_idle(rel->w);
	uv_close((uv_handle_t *)t, NULL);
}

static void qc_close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Release thread, while another operation holds the file: logged once (the operator sees
 * what the release waits for); gives up when mxgate is stopping. */
static bool qc_release_waiting(void *arg)
{
	struct qc_release *rel = arg;

	if (!rel->waited)
		log_event(LOG_LVL_INFO, NULL, "event=quarantine_release_waiting id=%s", rel->id);
	rel->waited = true;
	return atomic_load(&rel->stop) != 0;
}

/* The release thread: find the file, run the transaction on a loop of its own, answer. */
static void qc_release_thread(void *arg)
{
	struct qc_release *rel = arg;
	const struct mx_config *cfg = rel->g->cfg;
	char err[600] = "", *from = NULL;
	int f;

	rel->rc = -1;
	/* the file locked for the whole release: a delete or the sweep meanwhile is refused
	 * (busy) or skipped, here and on a node sharing the folder; one under way is waited for
	 * (this thread is the release's own), within QC_LOCK_WAIT_MS */
	f = quarantine_find_locked(cfg->quarantine_dir, rel->id, &rel->it, qc_lock_wait_ms(), qc_release_waiting, rel,
	    err, sizeof(err));
	if (f == QUARANTINE_BUSY) {
		snprintf(rel->why, sizeof(rel->why), "%s", atomic_load(&rel->stop) ? "mxgate is shutting down: "
		    "nothing was delivered" : qc_busy_text);
		goto answer;
	}
	if (f <= 0) {
		snprintf(rel->why, sizeof(rel->why), f < 0 ? "%s" : "no held message with this ID", err);
		goto answer;
	}
	qc_test_hold("MXGATE_TEST_QUARANTINE_RELEASE_HOLD");
	/* the envelope: the held one, or the recipients named */
	rel->nto = rel->rcpts ? rel->nrcpts_named : rel->it.env.nrcpts;
	rel->to = calloc(rel->nto, sizeof(*rel->to));
	from = strndup(rel->it.head + rel->it.env.sender.off, rel->it.env.sender.len);
	if (rel->to == NULL || from == NULL) {
		snprintf(rel->why, sizeof(rel->why), "out of memory");
		goto answer;
	}
	for (size_t i = 0; i < rel->nto; i++) {
		rel->to[i] = rel->rcpts ? strdup(rel->rcpts[i]) :
		    strndup(rel->it.head + rel->it.env.rcpts[i].off, rel->it.env.rcpts[i].len);
		if (rel->to[i] == NULL) {
			snprintf(rel->why, sizeof(rel->why), "out of memory");
			goto answer;
		}
	}
	/* from this thread (log_event is thread-safe): a release may wait on its backend for
	 * the whole of its timeouts, and the operator sees it begin */
	log_event(LOG_LVL_INFO, NULL, "event=quarantine_release_started id=%s rcpts=%zu", rel->id, rel->nto);
	rel->w = calloc(1, sizeof(*rel->w));
	if (rel->w == NULL || uv_loop_init(&rel->w->loop) != 0) {
		free(rel->w);
		rel->w = NULL;
		snprintf(rel->why, sizeof(rel->why), "no loop for the release");
		goto answer;
	}
	/* a worker of its own for the relay (its idle list, read buffer, the generation's TLS
	 * client context) */
	rel->w->index = QC_WORKER_INDEX;
	/* Each release's worker is new: its queue-id sequence goes on from the last release's,
	 * so two releases in one second differ; quarantine_release_queue_id below makes the id
	 * one no session has (the index shares the id's bits with worker 15 of 16+). */
	static _Atomic uint64_t release_seq;
	rel->w->session_seq = (1ULL << 40) + (atomic_fetch_add(&release_seq, 1) << 8);
	/* a relay let go is closed (QUIT), never kept idle: the loop ends with the release */
	atomic_store(&rel->w->stop, 1);
	rel->wg.shared = rel->g;
	rel->wg.worker = rel->w;
	rel->w->gen = &rel->wg;
	/* the client as the backend sees it (Received, XCLIENT): mxgate itself */
	struct sockaddr_in *sin = (struct sockaddr_in *)&rel->env.client;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memcpy(&rel->env.local, &rel->env.client, sizeof(*sin));
	snprintf(rel->env.client_ip, sizeof(rel->env.client_ip), "127.0.0.1");
	snprintf(rel->env.client_name, sizeof(rel->env.client_name), "localhost");
	rel->env.client_name_status = HOOK_NAME_OK;
	snprintf(rel->env.helo, sizeof(rel->env.helo), "quarantine-release");
	rel->env.esmtp = true;
	rel->env.session_id = "release";
	rel->env.loop = &rel->w->loop;
	rel->env.cfg = cfg;
	rel->env.worker = QC_WORKER_INDEX;
	smtp_tx_init(&rel->tx, rel->w, rel->g->pool, &rel->env, NULL, NULL);
	rel->tx.rcpt_result = qc_release_rcpt_result_cb;
	/* the held file's X-Mxgate-* are mxgate's (the sender's went when it was held): kept */
	rel->tx.own_fields_kept = true;
	rel->tx.rcpt_result_arg = rel;
	bool utf8 = false;
	for (const char *p = from; *p; p++)
		utf8 |= (unsigned char)*p >= 0x80;
	for (size_t i = 0; i < rel->nto; i++)
		for (const char *p = rel->to[i]; *p; p++)
			utf8 |= (unsigned char)*p >= 0x80;
	uv_timer_init(&rel->w->loop, &rel->stop_timer);
	rel->stop_timer.data = rel;
	uv_timer_start(&rel->stop_timer, qc_release_stop_cb, 100, 100);
	uv_unref((uv_handle_t *)&rel->stop_timer);
	smtp_tx_begin(&rel->tx, from, utf8 ? "SMTPUTF8" : "");
	/* the release's own form of queue id (before MAIL: every log line, Received and
	 * XFORWARD of the transaction carries it), never one a session has or gets */
	char sess[sizeof(rel->env.queue_id)];
	snprintf(sess, sizeof(sess), "%s", rel->env.queue_id);
	quarantine_release_queue_id(rel->env.queue_id, sizeof(rel->env.queue_id), sess);
	smtp_tx_mail(&rel->tx, qc_release_mail_cb, rel);
	/* every step has its timeout (relay.c); the loop ends when the last connection closed */
	uv_run(&rel->w->loop, UV_RUN_DEFAULT);
	uv_walk(&rel->w->loop, qc_close_walk_cb, NULL);
	uv_run(&rel->w->loop, UV_RUN_DEFAULT);
	smtp_tx_free(&rel->tx);
	hook_env_free_outputs(&rel->env);
	uv_loop_close(&rel->w->loop);
	msgbuf_warm_release();
answer:
	free(from);
	/* the file's lock goes before the answer: an operator who asks again at once finds it
	 * free (the head stays for qc_release_free_cb) */
	if (rel->it.has_fd)
		close(rel->it.fd);
	rel->it.has_fd = false;
	uv_async_send(&rel->async);
}

static void qc_release_free_cb(uv_handle_t *h)
{
	struct qc_release *rel = h->data;

	for (size_t i = 0; i < rel->nrcpts_named; i++)
		free(rel->rcpts[i]);
	free(rel->rcpts);
	for (size_t i = 0; rel->to && i < rel->nto; i++)
		free(rel->to[i]);
	free(rel->to);
	quarantine_item_free(&rel->it);
	strbuf_free(&rel->refused);
	free(rel->w);
	shared_gen_unref(rel->g);
	free(rel);
	qc_release_running = false;
}

/* Main loop: async and watch closed; the last one frees. */
static void qc_release_closed_cb(uv_handle_t *h)
{
	struct qc_release *rel = h->data;

	if (--rel->closing == 0)
		qc_release_free_cb(h);
}

/* Main loop, every 100 ms while a release runs: tells it when mxgate is stopping. */
static void qc_release_watch_cb(uv_timer_t *t)
{
	struct qc_release *rel = t->data;

	if (ops_is_stopping()) {
		atomic_store(&rel->stop, 1);
		uv_timer_stop(t);
	}
}

/* Main loop: the release thread is done. */
static void qc_release_done_cb(uv_async_t *a)
{
	struct qc_release *rel = a->data;
	struct strbuf *out = control_reply_out(rel->r);
	char bv[400];

	uv_thread_join(&rel->thread);
	char nv[40] = "";
	if (rel->rc != -1) {
		if (rel->nrefused > 0)
			snprintf(nv, sizeof(nv), " refused=%zu", rel->nrefused);
		char kv[40] = "";
		if (rel->nkept > 0 && rel->rc != -2)
			snprintf(kv, sizeof(kv), " kept=%zu", rel->nkept);
		log_event(rel->rc == 0 ? LOG_LVL_INFO : LOG_LVL_WARNING, NULL,
		    "event=quarantine_released id=%s queue_id=%s rcpts=%zu backend=%s%s%s%s", rel->id, rel->queue_id,
		    rel->nto, log_val(bv, sizeof(bv), rel->backend), nv, kv, rel->rc == -2 ? " file=kept" :
		    rel->file_gone ? " file=gone" : "");
	} else {
		if (rel->ndelivered > 0)
			snprintf(nv, sizeof(nv), " delivered=%zu", rel->ndelivered);
		log_event(LOG_LVL_WARNING, NULL, "event=quarantine_release_failed id=%s reason=%s%s", rel->id,
		    log_val(bv, sizeof(bv), rel->why), nv);
	}
	if (rel->rc == 0) {
		if (rel->json) {
			struct jsonw j;
			jsonw_init(&j, out);
			jsonw_obj(&j, NULL);
			jsonw_str(&j, "released", rel->id);
			jsonw_str(&j, "queue_id", rel->queue_id);
			jsonw_int(&j, "rcpts", (long long)rel->nto);
			jsonw_str(&j, "backend", rel->backend);
			jsonw_int(&j, "kept", (long long)rel->nkept);
			jsonw_end(&j);
			strbuf_append(out, "\n", 1);
		} else {
			strbuf_printf(out, "%s: released as %s to %zu recipient%s via %s", rel->id, rel->queue_id,
			    rel->nto, rel->nto == 1 ? "" : "s", rel->backend);
			if (rel->nkept > 0)
				strbuf_printf(out, "; still held for %zu recipient%s not named", rel->nkept,
				    rel->nkept == 1 ? "" : "s");
			strbuf_append(out, "\n", 1);
		}
	} else
		strbuf_printf(out, "quarantine release %s: %s\n", rel->id, rel->why);
	control_reply_done(rel->r, rel->rc == 0 ? 0 : -1);
	rel->closing = 2;
	uv_close((uv_handle_t *)&rel->watch, qc_release_closed_cb);
	uv_close((uv_handle_t *)a, qc_release_closed_cb);
}

/* An address as RCPT takes it: no brackets, spaces or controls. */
static bool qc_is_addr(const char *a)
{
	if (!*a || strlen(a) > 320 || strpbrk(a, "<> \t") || !strchr(a, '@'))
		return false;
	for (; *a; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f)
			return false;
	return true;
}

static void qc_release_start(const struct mx_config *cfg, int argc, char **argv, bool json,
    struct control_reply *r)
{
	struct strbuf *out = control_reply_out(r);
	const struct ops_host *h = ops_host();
	struct qc_release *rel;

	if (qc_release_running) {
		strbuf_printf(out, "quarantine release: a release is under way: try again when it has answered\n");
		control_reply_done(r, -1);
		return;
	}
	for (int i = 2; i < argc; i++)
		if (!qc_is_addr(argv[i])) {
			strbuf_printf(out, "quarantine release: not an address: \"%.80s\"\n", argv[i]);
			control_reply_done(r, -1);
			return;
		}
	rel = calloc(1, sizeof(*rel));
	if (rel == NULL || (argc > 2 && (rel->rcpts = calloc((size_t)argc - 2, sizeof(char *))) == NULL))
		goto oom;
	for (int i = 2; i < argc; i++)
		if ((rel->rcpts[rel->nrcpts_named++] = strdup(argv[i])) == NULL)
			goto oom;
	snprintf(rel->id, sizeof(rel->id), "%s", argv[1]);
	rel->json = json;
	rel->r = r;
	rel->g = h->current ? h->current() : NULL;
	if (rel->g == NULL || rel->g->cfg != cfg)
		goto oom;
	if (uv_async_init(control_reply_loop(r), &rel->async, qc_release_done_cb) != 0)
		goto oom;
	rel->async.data = rel;
	uv_timer_init(control_reply_loop(r), &rel->watch);
	rel->watch.data = rel;
	uv_timer_start(&rel->watch, qc_release_watch_cb, 100, 100);
	shared_gen_ref(rel->g);
	qc_release_running = true;
	if (uv_thread_create(&rel->thread, qc_release_thread, rel) != 0) {
		/* as the thread's own failure: answered through the async */
		snprintf(rel->why, sizeof(rel->why), "no thread for the release");
		rel->rc = -1;
		rel->closing = 2;
		uv_close((uv_handle_t *)&rel->watch, qc_release_closed_cb);
		uv_close((uv_handle_t *)&rel->async, qc_release_closed_cb);
		strbuf_printf(out, "quarantine release %s: no thread for the release\n", rel->id);
		control_reply_done(r, -1);
		return;
	}
	return;
oom:
	if (rel) {
		for (size_t i = 0; i < rel->nrcpts_named; i++)
			free(rel->rcpts[i]);
		free(rel->rcpts);
	}
	free(rel);
	strbuf_printf(out, "quarantine release: out of memory\n");
	control_reply_done(r, -1);
}

/* ------------------------------------------------------------ the verb */

#define QC_USAGE "quarantine list [N] [rcpt=ADDR|@DOMAIN] [from=TEXT] [subject=TEXT] [older=DAYS] | show ID | " \
	"release ID [RCPT...] | delete ID [RCPT...]"
static const char qc_usage[] = "usage: " QC_USAGE "\n";

/* list's words after N: KEY=VALUE filters into j->f. 0, or -1 with the reason in out. */
static int qc_parse_filter(struct qc_job *j, int argc, char **argv, struct strbuf *out)
{
	static const char *const keys[] = { "rcpt=", "from=", "subject=" };

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		size_t k;
		for (k = 0; k < 3; k++)
			if (strncmp(a, keys[k], strlen(keys[k])) == 0)
				break;
		if (k < 3) {
			const char *v = a + strlen(keys[k]);
			if (!*v || strlen(v) > 320 || j->fstore[k]) {
				strbuf_printf(out, "quarantine list: %s needs one value of 1 to 320 octets\n", keys[k]);
				return -1;
			}
			if ((j->fstore[k] = strdup(v)) == NULL) {
				strbuf_printf(out, "quarantine: out of memory\n");
				return -1;
			}
			continue;
		}
		if (strncmp(a, "older=", 6) == 0) {
			char *end;
			long d = strtol(a + 6, &end, 10);
			if (end == a + 6 || (*end && strcmp(end, "d") != 0) || d < 0 || d > 36500) {
				strbuf_printf(out, "quarantine list: older= takes days, 0..36500 (older=14)\n");
				return -1;
			}
			if (d > 0)   /* older=0: any age */
				j->f.older_than = time(NULL) - (time_t)d * 86400;
			continue;
		}
		strbuf_printf(out, "quarantine list: \"%.80s\": not N nor a filter (rcpt=, from=, subject=, older=)\n", a);
		return -1;
	}
	j->f.rcpt = j->fstore[0];
	j->f.from = j->fstore[1];
	j->f.subject = j->fstore[2];
	return 0;
}

static void qc_start(const struct mx_config *cfg, int argc, char **argv, const char *body, size_t body_len,
    bool json, struct control_reply *r)
{
	struct strbuf *out = control_reply_out(r);
	struct qc_job *j;
	enum qc_op op;

	if (argc < 1 || body) {
		strbuf_printf(out, "%s", qc_usage);
		control_reply_done(r, -1);
		return;
	}
	if (strcmp(argv[0], "list") == 0)
		op = QC_LIST;
	else if (strcmp(argv[0], "show") == 0 && argc == 2)
		op = QC_SHOW;
	else if (strcmp(argv[0], "delete") == 0 && argc >= 2)
		op = QC_DELETE;
	else if (strcmp(argv[0], "release") == 0 && argc >= 2)
		op = QC_RELEASE;
	else {
		strbuf_printf(out, "%s", qc_usage);
		control_reply_done(r, -1);
		return;
	}
	if (cfg->quarantine_dir == NULL) {
		strbuf_printf(out, "quarantine: none configured (quarantine: maildir:/path)\n");
		control_reply_done(r, -1);
		return;
	}
	if (op != QC_LIST && !quarantine_id_is_valid(argv[1])) {
		/* never a path: "../x" or "/etc/passwd" reach no file */
		strbuf_printf(out, "quarantine: \"%.80s\" is not an ID (1 to %d letters and digits: the "
		    "X-Quarantine-ID)\n", argv[1], QUARANTINE_ID_MAX);
		control_reply_done(r, -1);
		return;
	}
	if (op == QC_RELEASE) {
		qc_release_start(cfg, argc, argv, json, r);
		return;
	}
	size_t n = QC_LIST_DEFAULT;
	int first = 1;
	if (op == QC_LIST && argc >= 2 && strchr(argv[1], '=') == NULL) {
		char *end;
		long v = strtol(argv[1], &end, 10);
		if (*end || v < 1 || v > QUARANTINE_LIST_MAX) {
			strbuf_printf(out, "quarantine list: N must be 1..%d\n", QUARANTINE_LIST_MAX);
			control_reply_done(r, -1);
			return;
		}
		n = (size_t)v;
		first = 2;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->root = strdup(cfg->quarantine_dir)) == NULL) {
		free(j);
		strbuf_printf(out, "quarantine: out of memory\n");
		control_reply_done(r, -1);
		return;
	}
	if (op == QC_LIST && qc_parse_filter(j, argc - first, argv + first, out) != 0)
		goto refuse;
	if (op == QC_DELETE && argc > 2) {
		if ((j->rcpts = calloc((size_t)argc - 2, sizeof(char *))) == NULL)
			goto oom;
		for (int i = 2; i < argc; i++) {
			if (!qc_is_addr(argv[i])) {
				strbuf_printf(out, "quarantine delete: not an address: \"%.80s\"\n", argv[i]);
				goto refuse;
			}
			if ((j->rcpts[j->nnamed++] = strdup(argv[i])) == NULL)
				goto oom;
		}
	}
	j->op = op;
	j->r = r;
	j->n = n;
	j->json = json;
	if (op != QC_LIST)
		snprintf(j->id, sizeof(j->id), "%s", argv[1]);
	j->req.data = j;
	if (uv_queue_work(control_reply_loop(r), &j->req, qc_work_cb, qc_after_cb) != 0) {
		strbuf_printf(out, "quarantine: the thread pool refused the work\n");
		goto refuse;
	}
	return;
oom:
	strbuf_printf(out, "quarantine: out of memory\n");
refuse:
	control_reply_done(r, -1);
	qc_job_free(j);
}

const struct control_verb quarantine_control_verb = {
	.words = "quarantine",
	.usage = QC_USAGE,
	.start = qc_start,
};
