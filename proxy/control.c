/* control.c — the control socket server and its config section (see control.h). */
#include "control.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "acceptor.h"
#include "counters.h"
#include "log.h"

/* ------------------------------------------------------------ config */

static int control_parse_mode(const char *s, mode_t *out)
{
	unsigned v = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 4)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return -1;
		v = v * 8 + (unsigned)(*s - '0');
	}
	*out = (mode_t)v;
	return 0;
}

/* The socket's directory: 0 when it exists, or when only it is missing and its parent
 * exists (made, mode 0755, when made is not NULL: *made is then 1), else -1 with errno. Under
 * systemd RuntimeDirectory= makes /run/mxgate; run by hand, mxgate makes it. */
static int control_socket_dir(const char *path, int *made)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (made)
		*made = 0;
	if (slash == NULL || slash == path)
		return 0;            /* the working directory, or / */
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : (errno = ENOTDIR, -1);
	if (errno != ENOENT)
		return -1;
	char *up = strrchr(dir, '/');
	if (up && up != dir) {
		*up = '\0';
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			return errno = ENOENT, -1;
		*up = '/';
	}
	if (made == NULL)
		return 0;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -1;
	*made = 1;
	return 0;
}

static int control_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct control_config *cc = obj;
	struct sockaddr_un sun;
	mode_t m;
	int rc = 0;

	if (cc->socket && (cc->socket[0] == '\0' || strlen(cc->socket) >= sizeof(sun.sun_path)))
		rc = cfg_error_key(p, n, "socket", -1, "a socket path of 1..%zu bytes", sizeof(sun.sun_path) - 1);
	else if (cc->socket && control_socket_dir(cc->socket, NULL) != 0 && (errno == ENOENT || errno == ENOTDIR))
		rc = cfg_error_key(p, n, "socket", -1, "%s: no such directory (mxgate makes the socket's own "
		    "directory, not its parents)", cc->socket);
	if (control_parse_mode(cc->mode, &m) != 0)
		rc = cfg_error_key(p, n, "mode", -1, "octal permission bits such as \"0660\", got \"%s\"",
		    cc->mode ? cc->mode : "");
	if (cc->owner && getpwnam(cc->owner) == NULL)
		rc = cfg_error_key(p, n, "owner", -1, "no such user: \"%s\"", cc->owner);
	if (cc->group && getgrnam(cc->group) == NULL)
		rc = cfg_error_key(p, n, "group", -1, "no such group: \"%s\"", cc->group);
	return rc;
}

static const struct cfg_field control_fields[] = {
	{ "socket", CFG_STRING, offsetof(struct control_config, socket),
	  .doc = "path of the control socket mxgatectl talks to, e.g. /run/mxgate/control.sock (off when unset)" },
	{ "mode", CFG_STRING, offsetof(struct control_config, mode), "0660",
	  .doc = "permission bits of the socket, octal: who may connect may drain backends and reload" },
	{ "owner", CFG_STRING, offsetof(struct control_config, owner),
	  .doc = "user owning the socket (default: the user mxgate starts as)" },
	{ "group", CFG_STRING, offsetof(struct control_config, group),
	  .doc = "group owning the socket (default: the owner's)" },
	{ "idle_timeout", CFG_DURATION, offsetof(struct control_config, idle_timeout), "60s", 1000, 3600000,
	  .doc = "a connection is closed when it has sent no complete request for this long since it "
		 "connected or was last answered (a reload applies it to the next wait). With all 16 "
		 "connections in use, a new one takes over the one idle longest instead of being refused: "
		 "a client that keeps a connection open between requests never locks mxgatectl out" },
	{ NULL }
};
const struct cfg_table control_config_table = {
	"control", sizeof(struct control_config), control_fields, control_validate
};

/* ------------------------------------------------------------ server */

struct control_conn {
	struct control *c;
	struct control_conn *prev, *next;
	uv_pipe_t pipe;
	uint64_t idle_since;          /* uv_now of the connect or the last answer */
	uint64_t idle_seq;            /* the order of those (uv_now is the same within a loop pass) */
	uv_timer_t timer;
	int open_handles;
	bool closing;
	bool close_after_write;       /* a bad request was answered */
	bool reading;
	int writes;                   /* replies in flight */
	struct ctl_parser parser;
	/* A module verb answering later: reading pauses, and what was read after its request
	 * (pipelined requests) waits in buf[held_off, held_off + held_len) until it answers. */
	struct control_reply *pending;
	uint64_t pending_since;       /* uv_now when it was asked (control_closed's waited_ms) */
	char pending_verb[16];        /* its verb, for the same line */
	size_t held_off, held_len;
	/* MXGATE_TEST_CONTROL_HOLD_ANSWERS (tests only): an answer that came, held back until
	 * the socket closes; reading stays paused as for a pending one. */
	bool late;
	int late_rc;
	struct strbuf late_out;
	char buf[16384];
};

struct control {
	uv_loop_t *loop;
	struct acceptor acceptor;     /* the listening socket (acceptor.h: no uv_listen) */
	bool server_open;
	bool stopping;
	struct control_conn *conns;
	int nconns;
	int nclosing;                 /* of nconns: closed, waiting for their close callbacks */
	uint64_t idle_ms;             /* control.idle_timeout */
	uint64_t idle_seq;            /* the last control_conn_idle_start's number */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Tests only: MXGATE_TEST_CONTROL_HOLD_ANSWERS=1 holds every answer given later (a reload,
 * a module verb) back until control_stop, which then sends it: the end of the drain's race,
 * an answer arriving in the loop pass that closes the socket, made certain
 * (test_control_drain_end.py). Unset in service. */
static bool control_hold_answers;
/* Tests only: MXGATE_TEST_CONTROL_PENDING_MS shortens CONTROL_PENDING_MS (a verb that breaks
 * its bound is closed on, logged, within a test's time: test_control_no_answer.py). */
static uint64_t control_pending_ms = CONTROL_PENDING_MS;

struct control_wreq {
	uv_write_t req;
	struct control_conn *conn;
	struct strbuf data;
};

static void control_maybe_free(struct control *c)
{
	if (c->stopping && !c->server_open && c->nconns == 0)
		free(c);
}

static void control_conn_closed_cb(uv_handle_t *h)
{
	struct control_conn *k = h->data;
	struct control *c = k->c;

	if (--k->open_handles > 0)
		return;
	if (k->prev)
		k->prev->next = k->next;
	else
		c->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	c->nconns--;
	c->nclosing--;
	ctl_parser_reset(&k->parser);
	free(k);
	control_maybe_free(c);
}

static void control_conn_close(struct control_conn *k)
{
	if (k->closing)
		return;
	k->closing = true;
	k->c->nclosing++;
	/* a verb still working answers into the void */
	control_reply_detach(k->pending);
	k->pending = NULL;
	k->late = false;
	strbuf_free(&k->late_out);
	uv_timer_stop(&k->timer);
	uv_close((uv_handle_t *)&k->pipe, control_conn_closed_cb);
	uv_close((uv_handle_t *)&k->timer, control_conn_closed_cb);
}

static void control_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void control_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void control_send(struct control_conn *k, bool ok, struct strbuf *payload);
static void control_conn_wind_down(struct control_conn *k);

/* The idle timeout; while the socket closes (control_stop), the bound of what is left: an
 * answer that has not come is refused in its place, a reply the client does not read is
 * given up. */
static void control_timeout_cb(uv_timer_t *t)
{
	struct control_conn *k = t->data;

	if (k->c->stopping && k->pending != NULL) {
		struct strbuf out = { 0 };

		control_reply_detach(k->pending);
		k->pending = NULL;
		strbuf_printf(&out, "mxgate is shutting down: no answer came before the control socket "
		    "closed (what was asked may still have been done: check after the restart)\n");
		control_send(k, false, &out);
		control_conn_wind_down(k);
		return;
	}
	if (!k->c->stopping && k->pending == NULL)
		log_event(LOG_LVL_INFO, NULL, "event=control_closed reason=idle idle_ms=%llu",
		    (unsigned long long)(uv_now(k->c->loop) - k->idle_since));
	else if (!k->c->stopping)
		/* CONTROL_PENDING_MS passed with no answer: the client is left unanswered (its
		 * mxgatectl reports the close), the operator reads why here */
		log_event(LOG_LVL_WARNING, NULL, "event=control_closed reason=no_answer verb=%s waited_ms=%llu",
		    k->pending_verb, (unsigned long long)(uv_now(k->c->loop) - k->pending_since));
	control_conn_close(k);
}

/* Waiting for the next request: control.idle_timeout from now. */
static void control_conn_idle_start(struct control_conn *k)
{
	k->idle_since = uv_now(k->c->loop);
	k->idle_seq = ++k->c->idle_seq;
	uv_timer_start(&k->timer, control_timeout_cb, k->c->idle_ms, 0);
}

/* Reading pauses while replies are in flight past this much (a client that does not read). */
#define CONTROL_MAX_QUEUED (1u << 20)

static void control_write_cb(uv_write_t *req, int status)
{
	struct control_wreq *w = (struct control_wreq *)req;
	struct control_conn *k = w->conn;

	strbuf_free(&w->data);
	free(w);
	k->writes--;
	if (k->closing)
		return;
	if (status < 0) {
		control_conn_close(k);
		return;
	}
	if (k->close_after_write && k->writes == 0) {
		control_conn_close(k);
		return;
	}
	if (!k->reading && !k->close_after_write && k->pending == NULL && !k->late &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&k->pipe) < CONTROL_MAX_QUEUED) {
		k->reading = uv_read_start((uv_stream_t *)&k->pipe, control_alloc_cb, control_read_cb) == 0;
		if (!k->reading)
			control_conn_close(k);
	}
}

/* Queues "OK|ERR LEN\n" + payload. Takes payload's contents. */
static void control_send(struct control_conn *k, bool ok, struct strbuf *payload)
{
	struct control_wreq *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		strbuf_free(payload);
		control_conn_close(k);
		return;
	}
	w->conn = k;
	strbuf_printf(&w->data, "%s %zu\n", ok ? "OK" : "ERR", payload->len);
	if (payload->len)
		strbuf_append(&w->data, payload->v, payload->len);
	strbuf_free(payload);
	uv_buf_t b = uv_buf_init(w->data.v, (unsigned)w->data.len);
	if (uv_write(&w->req, (uv_stream_t *)&k->pipe, &b, 1, control_write_cb) != 0) {
		strbuf_free(&w->data);
		free(w);
		control_conn_close(k);
		return;
	}
	k->writes++;
}

static void control_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct control_conn *k = h->data;
	*buf = uv_buf_init(k->buf, sizeof(k->buf));
}

static void control_conn_process(struct control_conn *k);

/* A verb's answer that came later goes out (after the earlier ones: nothing else was sent
 * meanwhile), then the held requests are answered and reading resumes; while the socket
 * closes, the connection winds down instead. Takes payload's contents. */
static void control_conn_answer(struct control_conn *k, int rc, struct strbuf *payload)
{
	struct strbuf out = *payload;

	memset(payload, 0, sizeof(*payload));
	control_send(k, rc == 0, &out);
	if (k->closing)
		return;
	if (k->c->stopping) {
		control_conn_process(k);        /* the held requests: refused */
		control_conn_wind_down(k);
		return;
	}
	control_conn_idle_start(k);     /* the idle timeout counts again from the answer */
	control_conn_process(k);
	if (k->closing || k->pending || k->close_after_write || k->reading ||
	    uv_stream_get_write_queue_size((uv_stream_t *)&k->pipe) >= CONTROL_MAX_QUEUED)
		return;
	k->reading = uv_read_start((uv_stream_t *)&k->pipe, control_alloc_cb, control_read_cb) == 0;
	if (!k->reading)
		control_conn_close(k);
}

/* Tests only: the held answer goes out now (control_stop). */
static void control_late_cb(uv_timer_t *t)
{
	struct control_conn *k = t->data;

	k->late = false;
	control_conn_answer(k, k->late_rc, &k->late_out);
}

static void control_conn_done_cb(void *arg, int rc, struct strbuf *payload)
{
	struct control_conn *k = arg;

	k->pending = NULL;
	if (control_hold_answers && !k->c->stopping) {
		k->late = true;         /* sent by control_stop */
		k->late_rc = rc;
		k->late_out = *payload;
		memset(payload, 0, sizeof(*payload));
		uv_timer_stop(&k->timer);
		return;
	}
	control_conn_answer(k, rc, payload);
}

/* Answers the requests in the held bytes until they are used up, a verb answers later
 * (reading pauses, the rest stays held), or the connection is to close. */
static void control_conn_process(struct control_conn *k)
{
	uv_stream_t *s = (uv_stream_t *)&k->pipe;

	while (k->held_len > 0 && !k->close_after_write && !k->closing) {
		size_t used = 0;
		enum ctl_parse_status st = ctl_parser_feed(&k->parser, k->buf + k->held_off, k->held_len, &used);
		k->held_off += used;
		k->held_len -= used;
		if (st == CTL_NEED_MORE)
			break;
		struct strbuf out = { 0 };
		if (st == CTL_BAD) {
			strbuf_printf(&out, "bad request: %s\n", k->parser.err);
			k->close_after_write = true;
			if (k->reading)
				uv_read_stop(s);
			k->reading = false;
			k->held_len = 0;
			control_send(k, false, &out);
			return;
		}
		if (k->c->stopping) {
			/* read as the socket closes (control_stop): refused, not dropped */
			ctl_parser_reset(&k->parser);
			strbuf_printf(&out, "mxgate is shutting down: the control socket is closing (ask "
			    "again after the restart)\n");
			control_send(k, false, &out);
			if (k->closing)
				return;
			continue;
		}
		struct control_reply *pending = NULL;
		snprintf(k->pending_verb, sizeof(k->pending_verb), "%s",
		    k->parser.req.argc > 0 ? k->parser.req.argv[0] : "-");
		int rc = control_dispatch_start(&k->parser.req, &out, k->c->loop, control_conn_done_cb, k,
		    &pending);
		ctl_parser_reset(&k->parser);
		if (rc == 1) {
			/* The verb's own bound holds the connection now (a reload: dns.timeout per
			 * name, the reloads queued before it), not the idle timeout; CONTROL_PENDING_MS
			 * only stops a verb that broke that promise from holding a slot for good. */
			k->pending = pending;
			k->pending_since = uv_now(k->c->loop);
			uv_timer_start(&k->timer, control_timeout_cb, control_pending_ms, 0);
			if (k->reading)
				uv_read_stop(s);
			k->reading = false;
			return;
		}
		control_send(k, rc == 0, &out);
		if (k->closing)
			return;
		/* answered: the idle timeout counts again from now (as control_conn_answer) */
		control_conn_idle_start(k);
		if (uv_stream_get_write_queue_size(s) >= CONTROL_MAX_QUEUED) {
			/* The rest of this read is dropped with the pause: a client this far behind
			 * on its replies is not pipelining in good faith. */
			if (k->reading)
				uv_read_stop(s);
			k->reading = false;
			k->close_after_write = true;
			k->held_len = 0;
			return;
		}
	}
	k->held_len = 0;
}

static void control_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct control_conn *k = s->data;

	if (k->closing)
		return;
	if (nread < 0) {
		/* EOF: answer what is in flight, then close. */
		uv_read_stop(s);
		k->reading = false;
		if (k->writes == 0)
			control_conn_close(k);
		else
			k->close_after_write = true;
		return;
	}
	/* No timer restart here: the idle timeout runs from the connect or the last answer
	 * (control_conn_answer), so a client trickling a request line or its body an octet at
	 * a time is closed control.idle_timeout after it, not held (with its slot of the
	 * CONTROL_MAX_CONNS) for as long as it keeps sending. */
	k->held_off = 0;
	k->held_len = (size_t)nread;
	control_conn_process(k);
	if (k->c->stopping)
		control_conn_wind_down(k);
}

/* Is k only waiting for its next request: owed no answer and no reply in flight, nothing
 * read and not yet answered, and nothing waiting to be read on its socket (a request that
 * arrived in this loop pass is not dropped)? */
static bool control_conn_is_idle(struct control_conn *k)
{
	uv_os_fd_t fd;
	char octet;

	if (k->closing || k->pending != NULL || k->late || k->writes > 0 || k->close_after_write ||
	    k->held_len > 0 || !k->reading)
		return false;
	if (uv_fileno((uv_handle_t *)&k->pipe, &fd) != 0)
		return false;
	return recv(fd, &octet, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Every slot is in use and fresh wants one: the connection idle the longest gives its slot
 * up (closed; a client keeping its connection between requests connects again), as nginx
 * reuses keep-alive connections when it runs out. Without this, CONTROL_MAX_CONNS clients
 * each asking once per idle_timeout held every slot for good and the operator's mxgatectl
 * was refused. A connection owed an answer is never taken; with all of them owed one, the
 * newcomer is refused as before. */
static void control_take_over_idle(struct control *c, struct control_conn *fresh)
{
	struct control_conn *victim = NULL;

	for (struct control_conn *k = c->conns; k; k = k->next)
		if (k != fresh && control_conn_is_idle(k) && (victim == NULL || k->idle_seq < victim->idle_seq))
			victim = k;
	if (victim == NULL)
		return;
	log_event(LOG_LVL_INFO, NULL, "event=control_takeover idle_ms=%llu",
	    (unsigned long long)(uv_now(c->loop) - victim->idle_since));
	control_conn_close(victim);
}

/* A connection on fd (taken); NULL when out of memory or it cannot be opened. Its handles
 * are set up, nothing is read yet. */
static struct control_conn *control_conn_new(struct control *c, int fd)
{
	struct control_conn *k = calloc(1, sizeof(*k));

	if (k == NULL) {
		close(fd);
		return NULL;
	}
	k->c = c;
	ctl_parser_init(&k->parser);
	uv_pipe_init(c->loop, &k->pipe, 0);
	uv_timer_init(c->loop, &k->timer);
	k->pipe.data = k->timer.data = k;
	k->open_handles = 2;
	k->next = c->conns;
	if (c->conns)
		c->conns->prev = k;
	c->conns = k;
	c->nconns++;
	if (uv_pipe_open(&k->pipe, fd) != 0) {
		close(fd);      /* not taken by a failed uv_pipe_open */
		control_conn_close(k);
		return NULL;
	}
	if (c->nconns - c->nclosing > CONTROL_MAX_CONNS && !c->stopping)
		control_take_over_idle(c, k);
	if (c->nconns - c->nclosing > CONTROL_MAX_CONNS) {
		struct strbuf out = { 0 };
		strbuf_printf(&out, "too many control connections (at most %d)\n", CONTROL_MAX_CONNS);
		k->close_after_write = true;
		control_send(k, false, &out);
		if (!k->closing)
			uv_timer_start(&k->timer, control_timeout_cb, CONTROL_STOP_MS, 0);
		return NULL;
	}
	return k;
}

static void control_accepted(struct acceptor *a, int fd, void *ldata)
{
	struct control *c = a->data;
	struct control_conn *k;

	(void)ldata;
	if (c->stopping) {
		close(fd);
		return;
	}
	if ((k = control_conn_new(c, fd)) == NULL)
		return;
	control_conn_idle_start(k);
	k->reading = uv_read_start((uv_stream_t *)&k->pipe, control_alloc_cb, control_read_cb) == 0;
	if (!k->reading)
		control_conn_close(k);
}

/* No descriptor left: the client accepted with the acceptor's reserve gets an ERR answer
 * at once. */
static void control_refuse(struct acceptor *a, int fd, const char *ip, void *ldata)
{
	static const char msg[] = "no file descriptor left in mxgate, try again\n";
	struct control *c = a->data;
	char line[128];
	int n = snprintf(line, sizeof(line), "ERR %zu\n%s", sizeof(msg) - 1, msg);

	(void)ip;
	(void)ldata;
	if (n > 0 && (size_t)n < sizeof(line))
		acceptor_answer(fd, line, (size_t)n);
	counter_inc(COUNTER_OPERATOR_REFUSED);
	log_event(LOG_LVL_WARNING, NULL, "event=control_refused socket=%s reason=fd_limit", c->path);
}

static void control_accept_paused(struct acceptor *a, int err, void *ldata)
{
	struct control *c = a->data;

	(void)ldata;
	log_event(LOG_LVL_WARNING, NULL, "event=accept_paused listener=control socket=%s reason=\"%s\" retry_ms=%d",
	    c->path, strerror(err), ACCEPTOR_RETRY_MS);
}

static void control_server_closed(struct acceptor *a);

static const struct acceptor_ops control_acceptor_ops = {
	.accepted = control_accepted,
	.refuse = control_refuse,
	.paused = control_accept_paused,
	.closed = control_server_closed,
};

/* While the socket closes (control_stop): a connection ends once what it was owed is
 * written. An answer still to come (a module verb, a reload) is waited for up to
 * CONTROL_STOP_MS (the timer set at the stop), then refused in its place; a request read
 * now is refused (control_conn_process); a connection with nothing asked yet gets
 * CONTROL_STOP_IDLE_MS for a request already on its way; a reply not read within
 * CONTROL_STOP_MS is given up. */
static void control_conn_wind_down(struct control_conn *k)
{
	if (k->closing || k->pending != NULL || k->late)
		return;
	if (k->writes > 0 || k->close_after_write) {
		if (k->reading)
			uv_read_stop((uv_stream_t *)&k->pipe);
		k->reading = false;
		k->close_after_write = true;
		if (k->writes == 0) {
			control_conn_close(k);
			return;
		}
		uv_timer_start(&k->timer, control_timeout_cb, CONTROL_STOP_MS, 0);
		return;
	}
	if (!k->reading) {
		k->reading = uv_read_start((uv_stream_t *)&k->pipe, control_alloc_cb, control_read_cb) == 0;
		if (!k->reading) {
			control_conn_close(k);
			return;
		}
	}
	uv_timer_start(&k->timer, control_timeout_cb, CONTROL_STOP_IDLE_MS, 0);
}

/* Refuses a socket another local user could take over, before anything is removed or
 * made: in a directory every user may write to (sticky or not: anyone may put a socket of
 * theirs at the name first, and where it is not sticky rename ours away between its bind and
 * its chmod, which would then follow their symlink). 0 or -1 with why. */
static int control_dir_safe(const char *path, char *why, size_t cap)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *slash = strrchr(path, '/');
	struct stat st;

	snprintf(dir, sizeof(dir), "%.*s", slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path),
	    slash == NULL ? "." : path);
	if (stat(dir, &st) != 0) {
		snprintf(why, cap, "directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(why, cap, "directory %s is writable by every user (mode %04o): another could take "
		    "the socket's name over; use one only root and mxgate can write, such as /run/mxgate", dir,
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/* Removes a socket file left by a process that is gone. Refuses a live socket (another
 * mxgate answers there), anything that is not a socket, and a socket owned by another user
 * than mxgate's own or control.owner (owner; -1: none): that one is someone else's, live or
 * not, and a mxgatectl would talk to whoever listens there. 0 or -1 with why. */
static int control_clear_stale(const char *path, uid_t owner, char *why, size_t cap)
{
	struct stat st;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, live;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, cap, "%s", strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, cap, "exists and is not a socket");
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != owner) {
		snprintf(why, cap, "a socket of uid %u is there, not of mxgate's user or control.owner: not "
		    "taken over (remove it if it is stale)", (unsigned)st.st_uid);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, cap, "%s", strerror(errno));
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	if (live) {
		snprintf(why, cap, "another process answers on it");
		return -1;
	}
	if (unlink(path) != 0) {
		snprintf(why, cap, "%s", strerror(errno));
		return -1;
	}
	return 0;
}

static void control_server_closed(struct acceptor *a)
{
	struct control *c = a->data;
	c->server_open = false;
	control_maybe_free(c);
}

/* A unix stream socket bound to path (what uv_pipe_bind did), non-blocking: 0 and *fd,
 * or a negative errno (*fd -1). */
static int control_bind_fd(const char *path, int *fd)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int e;

	*fd = -1;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return -errno;
	if (bind(*fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return 0;
	e = errno;
	close(*fd);
	*fd = -1;
	return -e;
}

struct control *control_start(uv_loop_t *loop, const struct control_config *cc)
{
	struct control *c;
	char why[300];
	mode_t mode = 0660;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int r;

	if (cc == NULL || cc->socket == NULL)
		return NULL;
	control_parse_mode(cc->mode ? cc->mode : "0660", &mode);
	if (cc->owner) {
		struct passwd *pw = getpwnam(cc->owner);
		if (pw) {
			uid = pw->pw_uid;
			gid = pw->pw_gid;
		}
	}
	if (cc->group) {
		struct group *gr = getgrnam(cc->group);
		if (gr)
			gid = gr->gr_gid;
	}
	int made;
	if (control_socket_dir(cc->socket, &made) != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=control_error socket=%s reason=\"directory: %s\"", cc->socket,
		    strerror(errno));
		return NULL;
	}
	if (made)
		log_event(LOG_LVL_INFO, NULL, "event=control_mkdir socket=%s mode=0755", cc->socket);
	if (control_dir_safe(cc->socket, why, sizeof(why)) != 0 ||
	    control_clear_stale(cc->socket, cc->owner ? uid : (uid_t)-1, why, sizeof(why)) != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=control_error socket=%s reason=\"%s\"", cc->socket, why);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->idle_ms = cc->idle_timeout ? cc->idle_timeout : CONTROL_IDLE_MS;
	control_hold_answers = getenv("MXGATE_TEST_CONTROL_HOLD_ANSWERS") != NULL;
	if (getenv("MXGATE_TEST_CONTROL_PENDING_MS") && atoll(getenv("MXGATE_TEST_CONTROL_PENDING_MS")) > 0)
		control_pending_ms = (uint64_t)atoll(getenv("MXGATE_TEST_CONTROL_PENDING_MS"));
	snprintf(c->path, sizeof(c->path), "%s", cc->socket);
	/* Create it with no access, then open it up: no window with a wider mode. */
	mode_t old = umask(0777);
	int fd = -1;
	r = control_bind_fd(cc->socket, &fd);
	umask(old);
	if (r == 0 && (uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(cc->socket, uid, gid) != 0) {
		log_event(LOG_LVL_WARNING, NULL, "event=control_warning socket=%s reason=\"chown: %s\"",
		    cc->socket, strerror(errno));
	}
	if (r == 0 && chmod(cc->socket, mode) != 0)
		r = -errno;
	if (r == 0 && listen(fd, 16) != 0)
		r = -errno;
	if (r == 0 && acceptor_init(&c->acceptor, loop, &control_acceptor_ops, c) != 0)
		r = -errno;
	if (r != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=control_error socket=%s reason=\"%s\"", cc->socket, uv_strerror(r));
		if (fd >= 0)
			close(fd);
		free(c);
		return NULL;
	}
	c->server_open = true;
	if (acceptor_add(&c->acceptor, fd, NULL) != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=control_error socket=%s reason=\"poll\"", cc->socket);
		c->stopping = true;
		acceptor_close(&c->acceptor);
		return NULL;
	}
	acceptor_start(&c->acceptor);
	log_event(LOG_LVL_INFO, NULL, "event=control_listen socket=%s mode=%04o", cc->socket, (unsigned)mode);
	return c;
}

void control_set_config(struct control *c, const struct control_config *cc)
{
	if (c != NULL && cc != NULL && cc->idle_timeout > 0)
		c->idle_ms = cc->idle_timeout;
}

void control_stop(struct control *c)
{
	int sfd;

	if (c == NULL || c->stopping)
		return;
	c->stopping = true;
	sfd = acceptor_fd(&c->acceptor, 0);
	/* No new connection from here (connect: no such file); the ones the kernel completed
	 * but the loop has not accepted yet are taken now and refused like any request read
	 * from here on, rather than reset with their request unanswered. */
	unlink(c->path);
	if (sfd >= 0) {
		for (int fd; c->nconns <= CONTROL_MAX_CONNS &&
		    (fd = accept4(sfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
			control_conn_new(c, fd);
	}
	acceptor_close(&c->acceptor);
	for (struct control_conn *k = c->conns, *next; k; k = next) {
		next = k->next;
		if (k->closing)
			continue;
		if (k->pending != NULL)
			uv_timer_start(&k->timer, control_timeout_cb, CONTROL_STOP_MS, 0);
		else if (k->late)
			uv_timer_start(&k->timer, control_late_cb, 0, 0);   /* tests: the held answer */
		else
			control_conn_wind_down(k);
	}
}
