/* test_smtp_tx.c — the backend transaction (proxy/smtp_tx.c) with the real relay on a real
 * libuv loop, against scripted SMTP/LMTP backends served on the same loop: MAIL, RCPT and
 * delivery, failover at connect, a dropped connection mid-transaction and a 4xx at end of
 * data (the whole transaction replayed on another backend), 4xx when every backend fails,
 * LMTP per-recipient results, a backend's refusal passed through, maildir and quarantine
 * writes, the client's 250 never before the backend's, and pipelining to the backend (MAIL
 * with the first RCPT and DATA in one group, the refusals that brings, the lone dot). No
 * daemon, no session. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/backend.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/ledger.h"
#include "proxy/log.h"
#include "proxy/msgbuf.h"
#include "proxy/relay.h"
#include "proxy/smtp_tx.h"
#include "proxy/worker.h"
#include "uv_wait.h"

/* ------------------------------------------------------------ a scripted backend */

struct fake {
	uv_tcp_t server;
	int port;
	bool lmtp;
	/* script: 0 = the default reply */
	int greeting, mail_code, rcpt_code, data_code;
	int eom_codes[4];           /* the final reply (LMTP: per recipient, in order) */
	const char *eom_text;       /* text of the final reply (after the code) */
	const char *drop_on;        /* "MAIL", "RCPT", "DATA", "EOM": close instead of replying */
	bool hold_eom;              /* keep the final reply until fake_release() */
	/* what it saw */
	char log[4096];             /* command lines, one per line (message content left out) */
	char msg[16384];            /* the last message, unstuffed */
	size_t msglen;
	int messages, connections, open;
	struct fake_conn *held;
	bool dead;                  /* nothing listens on port (connects are refused) */
};

struct fake_conn {
	uv_tcp_t tcp;
	struct fake *f;
	char line[2048];
	size_t linelen;
	bool in_data;
	int nrcpt;
	size_t msglen;
};

struct fake_wreq { uv_write_t req; char data[]; };

static void fake_write_cb(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

static void fake_send(struct fake_conn *c, const char *text)
{
	size_t n = strlen(text);
	struct fake_wreq *w = malloc(sizeof(*w) + n);
	uv_buf_t b;

	assert_non_null(w);
	memcpy(w->data, text, n);
	b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, fake_write_cb) != 0)
		free(w);
}

static void fake_reply(struct fake_conn *c, int code, int dflt, const char *text)
{
	char line[256];

	snprintf(line, sizeof line, "%d %s\r\n", code ? code : dflt, text);
	fake_send(c, line);
}

static void fake_conn_closed_cb(uv_handle_t *h)
{
	struct fake_conn *c = h->data;

	c->f->open--;
	free(c);
}

static void fake_drop(struct fake_conn *c)
{
	if (c->f->held == c)
		c->f->held = NULL;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, fake_conn_closed_cb);
}

/* The final reply(ies) to the message. */
static void fake_answer_eom(struct fake_conn *c)
{
	struct fake *f = c->f;
	int n = f->lmtp ? c->nrcpt : 1;
	char text[200];

	for (int i = 0; i < n; i++) {
		int code = f->eom_codes[i < 4 ? i : 3] ? f->eom_codes[i < 4 ? i : 3] : 250;
		snprintf(text, sizeof text, "%s", f->eom_text ? f->eom_text : code / 100 == 2 ?
		    "2.0.0 Ok: queued as FAKEQ1" : "5.0.0 no");
		fake_reply(c, code, 250, text);
	}
	c->nrcpt = 0;
}

static void fake_release(struct fake *f)
{
	struct fake_conn *c = f->held;

	assert_non_null(c);
	f->held = NULL;
	fake_answer_eom(c);
}

static void fake_log(struct fake *f, const char *line)
{
	size_t n = strlen(f->log);
	snprintf(f->log + n, sizeof f->log - n, "%s\n", line);
}

static bool fake_drops_on(const struct fake *f, const char *what)
{
	return f->drop_on && strcmp(f->drop_on, what) == 0;
}

/* One line from the relay (without CRLF). False when the connection was dropped. */
static bool fake_line(struct fake_conn *c, const char *line)
{
	struct fake *f = c->f;

	if (c->in_data) {
		if (strcmp(line, ".") != 0) {
			const char *p = line[0] == '.' ? line + 1 : line;   /* unstuff */
			size_t n = strlen(p);
			if (c->msglen + n + 2 < sizeof f->msg) {
				memcpy(f->msg + c->msglen, p, n);
				memcpy(f->msg + c->msglen + n, "\r\n", 2);
				c->msglen += n + 2;
			}
			return true;
		}
		c->in_data = false;
		f->msglen = c->msglen;
		f->messages++;
		fake_log(f, ".");
		if (fake_drops_on(f, "EOM")) {
			fake_drop(c);
			return false;
		}
		if (f->hold_eom) {
			f->held = c;
			return true;
		}
		fake_answer_eom(c);
		return true;
	}
	fake_log(f, line);
	if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "LHLO", 4) == 0) {
		fake_send(c, "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250 8BITMIME\r\n");
	} else if (strncasecmp(line, "MAIL", 4) == 0) {
		if (fake_drops_on(f, "MAIL")) {
			fake_drop(c);
			return false;
		}
		c->nrcpt = 0;
		fake_reply(c, f->mail_code, 250, f->mail_code / 100 == 5 ? "5.7.1 sender refused" : "2.1.0 Ok");
	} else if (strncasecmp(line, "RCPT", 4) == 0) {
		if (fake_drops_on(f, "RCPT")) {
			fake_drop(c);
			return false;
		}
		if (f->rcpt_code == 0 || f->rcpt_code / 100 == 2)
			c->nrcpt++;
		fake_reply(c, f->rcpt_code, 250, f->rcpt_code / 100 == 5 ? "5.1.1 no such user" : "2.1.5 Ok");
	} else if (strncasecmp(line, "DATA", 4) == 0) {
		if (fake_drops_on(f, "DATA")) {
			fake_drop(c);
			return false;
		}
		if (f->data_code && f->data_code != 354) {
			fake_reply(c, f->data_code, 354, "4.3.0 not now");
			return true;
		}
		c->in_data = true;
		c->msglen = 0;
		fake_send(c, "354 go ahead\r\n");
	} else if (strncasecmp(line, "RSET", 4) == 0) {
		fake_send(c, "250 2.0.0 Ok\r\n");
	} else if (strncasecmp(line, "QUIT", 4) == 0) {
		fake_send(c, "221 2.0.0 Bye\r\n");
		fake_drop(c);
		return false;
	} else {
		fake_send(c, "502 5.5.2 what\r\n");
	}
	return true;
}

static void fake_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[65536];
	(void)h;
	(void)hint;
	*buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void fake_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct fake_conn *c = st->data;

	if (n < 0) {
		fake_drop(c);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch != '\n') {
			if (c->linelen < sizeof c->line - 1)
				c->line[c->linelen++] = ch;
			continue;
		}
		if (c->linelen && c->line[c->linelen - 1] == '\r')
			c->linelen--;
		c->line[c->linelen] = '\0';
		c->linelen = 0;
		if (!fake_line(c, c->line))
			return;
	}
}

static void fake_connection_cb(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	struct fake_conn *c = calloc(1, sizeof *c);

	assert_int_equal(status, 0);
	assert_non_null(c);
	c->f = f;
	uv_tcp_init(server->loop, &c->tcp);
	c->tcp.data = c;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
	f->connections++;
	f->open++;
	fake_reply(c, f->greeting, 220, "fake.test ESMTP");
	uv_read_start((uv_stream_t *)&c->tcp, fake_alloc_cb, fake_read_cb);
}

static void fake_start(uv_loop_t *loop, struct fake *f)
{
	struct sockaddr_in sin;
	int len = sizeof sin;

	uv_ip4_addr("127.0.0.1", 0, &sin);
	assert_int_equal(uv_tcp_init(loop, &f->server), 0);
	f->server.data = f;
	assert_int_equal(uv_tcp_bind(&f->server, (const struct sockaddr *)&sin, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, fake_connection_cb), 0);
	assert_int_equal(uv_tcp_getsockname(&f->server, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
}

/* A port nothing listens on. */
static int closed_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

/* ------------------------------------------------------------ the world around a transaction */

#define WAIT_MS 10000            /* a bound for a stuck test, not a timing assertion */

struct world {
	struct worker *w;
	struct worker_gen wg;
	struct shared_gen *sg;
	struct hook_env env;
	struct smtp_tx tx;
	char dir[64];               /* temporary directory for maildirs */
	struct fake *fakes[4];      /* owned: they outlive a failed test's assertions */
	size_t nfakes;
	/* the last step's result */
	int done;
	int code;
	char text[1024];
	char reason[32];
	bool client_error, reusable;
	int drained;
};

static void world_done_cb(void *arg, const struct smtp_tx_result *r)
{
	struct world *wd = arg;

	wd->done++;
	wd->code = r->code;
	snprintf(wd->text, sizeof wd->text, "%s", r->text ? r->text : "");
	snprintf(wd->reason, sizeof wd->reason, "%s", r->reason ? r->reason : "");
	wd->client_error = r->client_error;
	wd->reusable = r->reusable;
}

static void world_drained_cb(void *arg)
{
	((struct world *)arg)->drained++;
}

/* A scripted backend listening on the world's loop (script it before the step); dead: a
 * port where connects are refused instead. Backends are configured in creation order. */
static struct fake *fake_new(struct world *wd, bool dead)
{
	struct fake *f = calloc(1, sizeof *f);

	assert_non_null(f);
	assert_true(wd->nfakes < sizeof wd->fakes / sizeof wd->fakes[0]);
	wd->fakes[wd->nfakes++] = f;
	f->dead = dead;
	if (dead)
		f->port = closed_port();
	else
		fake_start(&wd->w->loop, f);
	return f;
}

/* The config: servers (the `servers:` list items; NULL: every fake, scheme://127.0.0.1:port)
 * and extra YAML at the top level; then the pool, the worker's generation and the client.
 * The backend timeouts are hang guards, not timings: no test waits for one to fire (the fakes
 * answer or close), and test_envelope_changes_bounded's 4,500 pipelined recipients took over
 * 5 s to answer under ASan on a loaded machine (451 reply_timeout; session 28). */
static void world_init(struct world *wd, const char *scheme, const char *servers, const char *extra)
{
	char text[4096], list[1024] = "";
	char *errs = NULL;
	size_t elen = 0;
	const char *err = NULL;
	struct mx_config *cfg = NULL;
	FILE *ef = open_memstream(&errs, &elen);

	for (size_t i = 0; servers == NULL && i < wd->nfakes; i++) {
		size_t n = strlen(list);
		snprintf(list + n, sizeof list - n, "%s{address: \"%s://127.0.0.1:%d\"}", i ? ", " : "", scheme,
		    wd->fakes[i]->port);
	}
	snprintf(text, sizeof text,
	    "hostname: mx.test\n"
	    "listen: [\"127.0.0.1:2525\"]\n"
	    "backends:\n"
	    "  pool_size: 0\n"
	    "  client_identity: none\n"
	    "  starttls: false\n"
	    "  connect_timeout: 60s\n"
	    "  reply_timeout: 60s\n"
	    "  data_timeout: 60s\n"
	    "  servers: [%s]\n"
	    "%s", servers ? servers : list, extra ? extra : "");
	int rc = config_load_string("t.yaml", text, strlen(text), &cfg, ef);
	fclose(ef);
	if (rc != 0)
		fail_msg("config rejected: %s\n%s", errs, text);
	free(errs);
	/* The delivery ledger is the process's: a case whose LMTP server took some recipients
	 * and deferred the others would have the next case's same message skip them. */
	ledger_clear(ledger_process());
	wd->sg = calloc(1, sizeof *wd->sg);
	assert_non_null(wd->sg);
	atomic_init(&wd->sg->refs, 1);
	wd->sg->cfg = cfg;
	wd->sg->pool = pool_new(cfg, &err);
	if (wd->sg->pool == NULL)
		fail_msg("pool_new: %s", err ? err : "?");
	/* A fresh pool picks the first server first (the tests rely on the order). */
	if (wd->sg->pool->nservers > 1)
		assert_ptr_equal(wd->sg->pool->sched[0], &wd->sg->pool->servers[0]);
	wd->wg.shared = wd->sg;
	wd->wg.worker = wd->w;
	wd->w->gen = &wd->wg;

	memset(&wd->env, 0, sizeof wd->env);
	wd->env.session_id = "t00001";
	wd->env.loop = &wd->w->loop;
	wd->env.cfg = cfg;
	struct sockaddr_in *sin = (struct sockaddr_in *)&wd->env.client;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000);
	inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr);
	snprintf(wd->env.client_ip, sizeof wd->env.client_ip, "192.0.2.7");
	snprintf(wd->env.helo, sizeof wd->env.helo, "client.test");
	wd->env.esmtp = true;
	smtp_tx_init(&wd->tx, wd->w, wd->sg->pool, &wd->env, world_drained_cb, wd);
}

static int world_setup(void **state)
{
	struct world *wd = calloc(1, sizeof *wd);

	assert_non_null(wd);
	wd->w = calloc(1, sizeof *wd->w);
	assert_non_null(wd->w);
	assert_int_equal(uv_loop_init(&wd->w->loop), 0);
	snprintf(wd->dir, sizeof wd->dir, "/tmp/test_smtp_tx-XXXXXX");
	assert_non_null(mkdtemp(wd->dir));
	*state = wd;
	return 0;
}

static void rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char sub[1024];
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int world_teardown(void **state)
{
	struct world *wd = *state;

	if (wd->sg) {
		smtp_tx_close(&wd->tx);
		smtp_tx_free(&wd->tx);
		hook_env_free_outputs(&wd->env);
	}
	/* Relays said QUIT (pool_size 0) and close when the fake answers; the listeners close
	 * now; anything a failed test left open goes last. */
	for (size_t i = 0; i < wd->nfakes; i++)
		if (!wd->fakes[i]->dead)
			uv_close((uv_handle_t *)&wd->fakes[i]->server, NULL);
	uv_run(&wd->w->loop, UV_RUN_DEFAULT);
	uv_walk(&wd->w->loop, close_walk_cb, NULL);
	uv_run(&wd->w->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&wd->w->loop), 0);
	if (wd->sg)
		shared_gen_unref(wd->sg);
	for (size_t i = 0; i < wd->nfakes; i++)
		free(wd->fakes[i]);
	rm_tree(wd->dir);
	free(wd->w);
	free(wd);
	return 0;
}

static bool step_done(void *arg) { return ((struct world *)arg)->done > 0; }
static bool world_drained(void *arg) { return ((struct world *)arg)->drained > 0; }
static bool fake_has_message(void *arg) { return ((struct fake *)arg)->held != NULL; }
static bool fake_closed(void *arg) { return ((struct fake *)arg)->open == 0; }
static bool fake_got_lone_dot(void *arg) { return strstr(((struct fake *)arg)->log, "DATA\n.\n") != NULL; }

/* Runs one step to its result; fails the test when none comes. */
static void world_wait(struct world *wd)
{
	assert_true(run_until(&wd->w->loop, step_done, wd, WAIT_MS));
	assert_int_equal(wd->done, 1);
}

static void world_mail(struct world *wd, const char *from)
{
	wd->done = 0;
	smtp_tx_begin(&wd->tx, from, "");
	smtp_tx_mail(&wd->tx, world_done_cb, wd);
	world_wait(wd);
}

static void world_rcpt(struct world *wd, const char *to)
{
	wd->done = 0;
	smtp_tx_set_rcpt(&wd->tx, to, "");
	assert_string_equal(wd->env.cur_rcpt, to);
	smtp_tx_rcpt(&wd->tx, world_done_cb, wd);
	world_wait(wd);
	assert_null(wd->env.cur_rcpt);
}

static const char test_message[] = "Subject: hello\r\nFrom: a@example.org\r\n\r\nline one\r\n.dotted line\r\n";

/* The DATA phase: the message received in two pieces. */
static void world_data(struct world *wd)
{
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	smtp_tx_data_append(&wd->tx, test_message, 20);
	smtp_tx_data_append(&wd->tx, test_message + 20, sizeof test_message - 1 - 20);
	assert_int_equal(smtp_tx_msg_state(&wd->tx), SMTP_TX_MSG_OK);
	assert_int_equal(smtp_tx_msg_size(&wd->tx), sizeof test_message - 1);
	smtp_tx_data_end(&wd->tx);
	assert_non_null(wd->env.msg);
}

static void world_deliver(struct world *wd, bool quarantine)
{
	wd->done = 0;
	smtp_tx_deliver(&wd->tx, quarantine, world_done_cb, wd);
	world_wait(wd);
}

/* A whole transaction from a@example.org to nrcpt of b@, c@, d@example.net, each step
 * expected to pass but the delivery, whose result is left in wd. */
static void world_send(struct world *wd, int nrcpt, bool quarantine)
{
	static const char *const rcpts[] = { "b@example.net", "c@example.net", "d@example.net" };

	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	for (int i = 0; i < nrcpt; i++) {
		world_rcpt(wd, rcpts[i]);
		assert_int_equal(wd->code / 100, 2);
	}
	world_data(wd);
	world_deliver(wd, quarantine);
}

/* Ends the transaction; the relays say QUIT to the fakes, which then close. */
static void world_reset(struct world *wd)
{
	smtp_tx_reset(&wd->tx, wd->reusable);
	assert_null(wd->env.mail_from);
	assert_int_equal(wd->env.nrcpts, 0);
	for (size_t i = 0; i < wd->nfakes; i++)
		assert_true(run_until(&wd->w->loop, fake_closed, wd->fakes[i], WAIT_MS));
}

/* The received message starts with our Received: field and ends with the body as sent. */
static void assert_relayed_message(const struct fake *f)
{
	size_t bl = sizeof test_message - 1;

	assert_true(f->msglen > bl);
	assert_int_equal(strncmp(f->msg, "Received: from client.test", 26), 0);
	assert_memory_equal(f->msg + f->msglen - bl, test_message, bl);
}

#define LOG_TWO_RCPTS "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\n" \
    "RCPT TO:<c@example.net>\nDATA\n.\n"

/* a@example.org to b@example.net, content as received, marked as its own wire form. */
static void world_wire_message(struct world *wd, const char *content, size_t len)
{
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	world_rcpt(wd, "b@example.net");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	smtp_tx_data_append(&wd->tx, content, len);
	smtp_tx_data_end(&wd->tx);
	wd->tx.body_wire = true;
}

/* The content in its own wire form (body_wire: the session found no line to stuff) goes
 * out as it is, after the Received field; the backend reads it back unchanged. */
static void test_body_wire(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	static const char clean[] = "Subject: w\r\n\r\nline one\r\nline. two\r\n\r\nend\r\n";
	size_t cl = sizeof clean - 1;

	world_wire_message(wd, clean, cl);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 1);
	assert_true(f->msglen > cl);
	assert_int_equal(strncmp(f->msg, "Received: from client.test", 26), 0);
	assert_memory_equal(f->msg + f->msglen - cl, clean, cl);
	world_reset(wd);
	assert_false(wd->tx.body_wire);	/* per message */
}

/* With no header edit the header block goes out from the message buffer with the body
 * (body_off 0), in wire form or encoded; with one, the edited block follows the Received
 * field and the body starts after the client's block (body_off its length). The backend
 * gets Received, the header block (edited or not), the body, each line as sent. */
static void header_block_case(struct world *wd, const char *msg, bool wire, bool edit, const char *want)
{
	struct fake *f = fake_new(wd, false);
	size_t wl = strlen(want), hl = (size_t)(strstr(msg, "\r\n\r\n") - msg) + 4;

	world_wire_message(wd, msg, strlen(msg));
	wd->tx.body_wire = wire;
	if (edit)
		hook_env_add_header(&wd->env, "X-Mx", "yes");
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(wd->tx.body_off, edit ? hl : 0);
	assert_int_equal(f->messages, 1);
	assert_true(f->msglen > wl);
	assert_int_equal(strncmp(f->msg, "Received: from client.test", 26), 0);
	assert_memory_equal(f->msg + f->msglen - wl, want, wl);
	/* one Received field, then the block */
	assert_ptr_equal(strstr(f->msg, "\r\nSubject: w\r\n"), f->msg + f->msglen - wl - 2);
	world_reset(wd);
}

static void test_header_block_as_it_came(void **state)
{
	/* not wire form: the ".dot" line goes stuffed, the fake unstuffs it */
	header_block_case(*state, "Subject: w\r\nX-A: 1\r\n\r\n.dot\r\nline\r\n", false, false,
	    "Subject: w\r\nX-A: 1\r\n\r\n.dot\r\nline\r\n");
}

static void test_header_block_edited_wire(void **state)
{
	header_block_case(*state, "Subject: w\r\nX-A: 1\r\n\r\nline\r\n", true, true,
	    "Subject: w\r\nX-A: 1\r\nX-Mx: yes\r\n\r\nline\r\n");
}

/* A module's new body is encoded whatever body_wire says: its dot lines reach the backend
 * stuffed (the fake unstuffs them back), never as an end of data. */
static void test_body_wire_new_body(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	static const char clean[] = "Subject: w\r\n\r\nline one\r\n";
	static const char dotted[] = "Subject: w\r\n\r\n.\r\n..two\r\n.three\r\n";
	size_t dl = sizeof dotted - 1;

	world_wire_message(wd, clean, sizeof clean - 1);
	wd->env.new_body = msgbuf_new(1 << 20, NULL);
	assert_non_null(wd->env.new_body);
	assert_int_equal(msgbuf_append(wd->env.new_body, dotted, dl), 0);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 1);
	assert_true(f->msglen > dl);
	assert_memory_equal(f->msg + f->msglen - dl, dotted, dl);
	world_reset(wd);
}

/* ------------------------------------------------------------ tests */

/* The plain path: MAIL, two RCPTs, the message; the client's replies are the backend's. */
static void test_deliver_smtp(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	char want[64];

	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	assert_string_equal(wd->text, "2.1.0 Ok");
	assert_string_equal(wd->env.mail_from, "a@example.org");
	assert_int_equal(strlen(wd->env.queue_id), 12);
	assert_int_equal(strspn(wd->env.queue_id, "0123456789BCDFGHJKLMNPQRSTVWXYZ"), 12);
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 250);
	assert_string_equal(wd->text, "250 2.1.5 Ok");    /* the backend's reply, as it is */
	assert_false(wd->client_error);
	world_rcpt(wd, "c@example.net");
	assert_int_equal(wd->env.nrcpts, 2);
	assert_string_equal(wd->env.rcpts[1].addr, "c@example.net");
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_true(wd->reusable);
	assert_string_equal(wd->reason, "");
	snprintf(want, sizeof want, "2.0.0 Ok: queued as %s", wd->env.queue_id);
	assert_string_equal(wd->text, want);
	assert_string_equal(f->log, LOG_TWO_RCPTS);
	assert_int_equal(f->messages, 1);
	assert_relayed_message(f);
	world_reset(wd);
	assert_non_null(strstr(f->log, "QUIT\n"));
}

/* The client's 250 comes only after the backend's: while the backend holds its reply to
 * the final dot, the step is not done. */
static void test_no_250_before_backend(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	f->hold_eom = true;
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	world_rcpt(wd, "b@example.net");
	world_data(wd);
	wd->done = 0;
	smtp_tx_deliver(&wd->tx, false, world_done_cb, wd);
	assert_true(run_until(&wd->w->loop, fake_has_message, f, WAIT_MS));
	assert_int_equal(f->messages, 1);
	uv_run(&wd->w->loop, UV_RUN_NOWAIT);
	assert_int_equal(wd->done, 0);
	fake_release(f);
	world_wait(wd);
	assert_int_equal(wd->code, 250);
	world_reset(wd);
}

/* A backend that refuses the connection: the next one takes the transaction. */
static void test_failover_at_connect(void **state)
{
	struct world *wd = *state;
	struct fake *f;

	fake_new(wd, true);
	f = fake_new(wd, false);
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	assert_int_equal(wd->tx.attempts, 2);
	assert_ptr_equal(wd->tx.backend, &wd->sg->pool->servers[1]);
	world_rcpt(wd, "b@example.net");
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 1);
	world_reset(wd);
}

/* The backend drops the connection at RCPT: the transaction moves to the next backend,
 * replaying MAIL, and the RCPT in flight is answered from there. */
static void test_failover_rcpt_drop(void **state)
{
	struct world *wd = *state;
	struct fake *a = fake_new(wd, false), *b = fake_new(wd, false);

	a->drop_on = "RCPT";
	world_init(wd, "smtp", NULL, NULL);
	world_send(wd, 1, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(a->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\n");
	assert_string_equal(b->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\n.\n");
	assert_int_equal(a->messages, 0);
	assert_int_equal(b->messages, 1);
	world_reset(wd);
}

/* A 4xx to the final dot: the whole transaction (MAIL, every accepted RCPT, the message)
 * is replayed on the next backend; the client gets that backend's 250. */
static void test_failover_replay_at_eom(void **state)
{
	struct world *wd = *state;
	struct fake *a = fake_new(wd, false), *b = fake_new(wd, false);

	a->eom_codes[0] = 451;
	a->eom_text = "4.3.0 try later";
	world_init(wd, "smtp", NULL, NULL);
	world_send(wd, 2, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(a->log, LOG_TWO_RCPTS);
	assert_string_equal(b->log, LOG_TWO_RCPTS);
	assert_int_equal(a->messages, 1);
	assert_int_equal(b->messages, 1);
	assert_relayed_message(b);
	world_reset(wd);
}

/* Every backend fails before its 250: the client gets a 4xx, never silence or a 250. */
static void test_all_backends_fail(void **state)
{
	struct world *wd = *state;
	struct fake *a = fake_new(wd, false), *b = fake_new(wd, false);

	a->eom_codes[0] = 451;
	b->drop_on = "EOM";
	world_init(wd, "smtp", NULL, NULL);
	world_send(wd, 1, false);
	assert_int_equal(wd->code, 451);
	assert_string_equal(wd->text, "4.4.1 Message not accepted by any backend, try again later");
	assert_string_equal(wd->reason, "no_backend");
	assert_false(wd->reusable);
	assert_int_equal(a->messages + b->messages, 2);
	world_reset(wd);
}

/* No backend answers at MAIL: 451 of ours, a client error, the outcome "backend". */
static void test_no_backend_at_mail(void **state)
{
	struct world *wd = *state;

	fake_new(wd, true);
	fake_new(wd, true);
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 451);
	assert_string_equal(wd->text, "4.4.1 Service temporarily unavailable, try again later");
	assert_string_equal(wd->reason, "backend");
	assert_true(wd->client_error);
	assert_false(wd->reusable);
	world_reset(wd);
}

/* client_identity proxy_v2 and a client the PROXY v2 header cannot name (no IPv4 or IPv6
 * address): no connection is made (without its header the backend would take mxgate for
 * the client), 451 as when no backend answers, and the backends are not at fault. */
static void test_proxy_header_unbuildable(void **state)
{
	struct world *wd = *state;
	struct fake *a = fake_new(wd, false), *b = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	((struct mx_config *)wd->sg->cfg)->backends.client_identity = IDENTITY_PROXY_V2;
	memset(&wd->env.client, 0, sizeof(wd->env.client));
	wd->env.client.ss_family = AF_UNIX;
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 451);
	assert_string_equal(wd->reason, "backend");
	assert_string_equal(a->log, "");
	assert_string_equal(b->log, "");
	for (size_t i = 0; i < wd->sg->pool->nservers; i++)
		assert_int_equal(atomic_load(&backend_health(&wd->sg->pool->servers[i])->fails), 0);
	world_reset(wd);
}

/* The backend's own refusals reach the client as they are: a sender refused at MAIL
 * (not a failover), a recipient refused at RCPT (not added), a message refused for good. */
static void test_backend_refusals(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	fake_new(wd, true);
	f->mail_code = 550;
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 550);
	assert_string_equal(wd->text, "550 5.7.1 sender refused");
	assert_true(wd->client_error);
	assert_int_equal(wd->tx.attempts, 1);
	world_reset(wd);

	f->mail_code = 0;
	f->rcpt_code = 550;
	atomic_store(&wd->sg->pool->rr, 0);
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	world_rcpt(wd, "nobody@example.net");
	assert_int_equal(wd->code, 550);
	assert_string_equal(wd->text, "550 5.1.1 no such user");
	assert_true(wd->client_error);
	assert_int_equal(wd->env.nrcpts, 0);

	f->rcpt_code = 0;
	f->eom_codes[0] = 554;
	f->eom_text = "5.7.1 content refused";
	world_rcpt(wd, "b@example.net");
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 554);
	assert_string_equal(wd->text, "554 5.7.1 content refused");
	assert_string_equal(wd->reason, "backend");
	assert_false(wd->client_error);
	world_reset(wd);
}

/* LMTP answers per recipient: one refused for good and one delivered is delivered (the
 * refusal logged); one deferred sends the message elsewhere, here nowhere: 451. */
static void test_lmtp_partials(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	f->lmtp = true;
	f->eom_codes[0] = 250;
	f->eom_codes[1] = 550;
	world_init(wd, "lmtp", NULL, NULL);
	world_send(wd, 2, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(strncmp(f->log, "LHLO mx.test\n", 13), 0);
	/* each recipient keeps its own reply after the dot: the session counts only the
	 * delivered one as delivered */
	assert_int_equal(wd->env.nrcpts, 2);
	assert_int_equal(wd->env.rcpts[0].status, 250);
	assert_int_equal(wd->env.rcpts[1].status, 550);
	world_reset(wd);

	f->eom_codes[1] = 451;
	world_send(wd, 2, false);
	assert_int_equal(wd->code, 451);
	assert_string_equal(wd->reason, "no_backend");
	assert_int_equal(f->messages, 2);
	world_reset(wd);
}

/* Counts the files in dir/new. */
static int maildir_count(const char *dir)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof path, "%s/new", dir);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* A maildir backend: nothing to open; the message is written (in the thread pool) before
 * the 250. The quarantine goes to its own maildir. */
static void test_maildir_and_quarantine(void **state)
{
	struct world *wd = *state;
	char servers[600], extra[600], box[300], qbox[300];

	snprintf(box, sizeof box, "%s/box", wd->dir);
	snprintf(qbox, sizeof qbox, "%s/quarantine", wd->dir);
	snprintf(servers, sizeof servers, "{address: \"maildir:%s\"}", box);
	snprintf(extra, sizeof extra, "quarantine: \"maildir:%s\"\n", qbox);
	world_init(wd, NULL, servers, extra);

	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 250);
	assert_string_equal(wd->text, "2.1.5 Ok");
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(maildir_count(box), 1);
	assert_int_equal(smtp_tx_pending(&wd->tx), 0);
	world_reset(wd);

	world_send(wd, 1, true);
	assert_int_equal(wd->code, 250);
	assert_int_equal(maildir_count(box), 1);
	assert_int_equal(maildir_count(qbox), 1);
	world_reset(wd);

	/* the quarantine's tmp/ a regular file (root writes anywhere else): not held, 451 4.3.0
	 * saying so, not the 4.4.1 of a backend (none was asked) */
	char qtmp[320];
	snprintf(qtmp, sizeof qtmp, "%s/tmp", qbox);
	assert_int_equal(rmdir(qtmp), 0);
	FILE *fp = fopen(qtmp, "w");
	assert_non_null(fp);
	fclose(fp);
	world_send(wd, 1, true);
	assert_int_equal(wd->code, 451);
	assert_non_null(strstr(wd->text, "4.3.0 Message held for review could not be stored"));
	assert_int_equal(maildir_count(qbox), 1);
	assert_int_equal(maildir_count(box), 1);
	assert_int_equal(smtp_tx_pending(&wd->tx), 0);
	world_reset(wd);
}

/* Filters' envelope changes at end of data: a recipient removed, one added, the sender
 * changed; the backend transaction is established afresh with them. */
static void test_envelope_changes(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	world_rcpt(wd, "b@example.net");
	world_rcpt(wd, "c@example.net");
	world_data(wd);
	hook_env_del_rcpt(&wd->env, "B@example.net");
	hook_env_add_rcpt(&wd->env, "d@example.net", NULL);
	hook_env_set_sender(&wd->env, "bounce@example.org");
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->connections, 2);
	assert_non_null(strstr(f->log, "MAIL FROM:<bounce@example.org>\nRCPT TO:<c@example.net>\n"
	    "RCPT TO:<d@example.net>\nDATA\n.\n"));
	world_reset(wd);
}

/* Many recipients changed at once (limits.max_recipients allows 100,000 on the event loop):
 * the changes cost O(n log n) address comparisons, not n * added; an address deleted twice
 * takes out two copies, an added one the envelope has (in any case) or added twice is sent
 * once, and the envelope keeps its order. */
static void test_envelope_changes_bounded(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	enum { N = 1500 };
	char a[64];
	unsigned long before;

	world_init(wd, "smtp", NULL, "limits:\n  max_recipients: 5000\n");
	world_mail(wd, "a@example.org");
	for (int i = 0; i < N; i++) {
		snprintf(a, sizeof a, "r%d@example.net", i);
		world_rcpt(wd, a);
	}
	world_rcpt(wd, "r7@example.net");   /* a second copy: two deletions take both */
	world_data(wd);
	/* delete every third one (r7 twice), add N new ones, each twice, and N the envelope has */
	for (int i = 0; i < N; i += 3) {
		snprintf(a, sizeof a, "R%d@Example.NET", i);
		hook_env_del_rcpt(&wd->env, a);
	}
	hook_env_del_rcpt(&wd->env, "r7@example.net");
	hook_env_del_rcpt(&wd->env, "r7@example.net");
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < N; i++) {
			snprintf(a, sizeof a, k ? "R%d@example.net" : "n%d@example.net", i);
			hook_env_add_rcpt(&wd->env, a, NULL);
			if (!k) {
				snprintf(a, sizeof a, "N%d@EXAMPLE.net", i);
				hook_env_add_rcpt(&wd->env, a, NULL);
			}
		}
	}
	before = smtp_tx_rcpt_cmps;
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	/* pairwise was N * 4N = 9,000,000; sorting is about (N + 5N) * log2(5N) * 2 */
	assert_true(smtp_tx_rcpt_cmps - before < 400000);
	/* kept: N - N/3 - 1 (r7) of the client's; added: n0..n(N-1) and every deleted R<i>
	 * again (deleted first, so the envelope no longer has them), once each */
	assert_int_equal(wd->env.nrcpts, (N - N / 3 - 1) + N + N / 3 + 1);
	assert_string_equal(wd->env.rcpts[0].addr, "r1@example.net");
	assert_string_equal(wd->env.rcpts[1].addr, "r2@example.net");
	assert_string_equal(wd->env.rcpts[2].addr, "r4@example.net");
	assert_string_equal(wd->env.rcpts[N - N / 3 - 1].addr, "n0@example.net");
	assert_string_equal(wd->env.rcpts[N - N / 3].addr, "n1@example.net");
	assert_string_equal(wd->env.rcpts[2 * N - N / 3 - 1].addr, "R0@example.net");
	assert_string_equal(wd->env.rcpts[2 * N - N / 3].addr, "R3@example.net");
	assert_string_equal(wd->env.rcpts[2 * N - N / 3 + 2].addr, "R7@example.net");
	for (size_t i = 0; i < wd->env.nrcpts; i++)
		assert_true(wd->env.rcpts[i].added == (i >= N - N / 3 - 1));
	assert_int_equal(f->messages, 1);
	world_reset(wd);
}

/* The envelope's storage is kept from one transaction to the next (the sender's block, the
 * candidate's, the first recipient slots): longer and shorter addresses after each other,
 * more recipients than the slots kept, a removal in the middle (its slot moves past the
 * last), an addition and a new sender, a refused candidate; every field reads as sent. */
static void test_envelope_storage_kept(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	char want[1024];
	static const char *const rc[] = { "r1@example.net", "a-much-longer-recipient-2@example.net",
	    "r3@example.net", "r4@example.net", "recipient-five@example.net", "r6@example.net" };

	world_init(wd, "smtp", NULL, NULL);
	for (int round = 0; round < 3; round++) {
		const char *from = round == 1 ? "s@x.org" : "a-long-sender-address@example.org";
		size_t n = round == 1 ? 2 : 6;

		world_mail(wd, from);
		assert_string_equal(wd->env.mail_from, from);
		assert_string_equal(wd->env.mail_params, "");
		for (size_t i = 0; i < n; i++)
			world_rcpt(wd, rc[round == 1 ? 5 - i : i]);
		/* a candidate judged and dropped leaves the envelope as it was */
		smtp_tx_set_rcpt(&wd->tx, "dropped@example.net", "NOTIFY=NEVER");
		assert_string_equal(wd->env.cur_rcpt, "dropped@example.net");
		assert_string_equal(wd->env.cur_rcpt_params, "NOTIFY=NEVER");
		smtp_tx_drop_rcpt(&wd->tx);
		assert_null(wd->env.cur_rcpt);
		assert_int_equal(wd->env.nrcpts, n);
		for (size_t i = 0; i < n; i++) {
			assert_string_equal(wd->env.rcpts[i].addr, rc[round == 1 ? 5 - i : i]);
			assert_string_equal(wd->env.rcpts[i].params, "");
		}
		world_data(wd);
		if (round != 1) {
			hook_env_del_rcpt(&wd->env, "R3@example.net");
			hook_env_add_rcpt(&wd->env, "added@example.net", "ORCPT=rfc822;x@y");
			hook_env_set_sender(&wd->env, round == 0 ? "b@example.org" : "a-longer-new-sender-than-before@example.org");
		}
		world_deliver(wd, false);
		assert_int_equal(wd->code, 250);
		if (round != 1) {
			assert_int_equal(wd->env.nrcpts, 6);
			assert_string_equal(wd->env.rcpts[2].addr, "r4@example.net");
			assert_string_equal(wd->env.rcpts[5].addr, "added@example.net");
			assert_string_equal(wd->env.rcpts[5].params, "ORCPT=rfc822;x@y");
			assert_string_equal(wd->env.mail_params, "");
			snprintf(want, sizeof want, "MAIL FROM:<%s>\nRCPT TO:<r1@example.net>\n"
			    "RCPT TO:<a-much-longer-recipient-2@example.net>\nRCPT TO:<r4@example.net>\n"
			    "RCPT TO:<recipient-five@example.net>\nRCPT TO:<r6@example.net>\n"
			    "RCPT TO:<added@example.net>\nDATA\n.\n", wd->env.mail_from);
			assert_non_null(strstr(f->log, want));
		} else {
			assert_non_null(strstr(f->log, "MAIL FROM:<s@x.org>\nRCPT TO:<r6@example.net>\n"
			    "RCPT TO:<recipient-five@example.net>\nDATA\n.\n"));
		}
		world_reset(wd);
		assert_null(wd->env.mail_params);
	}
}

/* The owner goes away while a relay is being opened: no step callback afterwards, and
 * drained once the open has ended. */
static void test_close_while_opening(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	wd->done = 0;
	smtp_tx_begin(&wd->tx, "a@example.org", "");
	smtp_tx_mail(&wd->tx, world_done_cb, wd);
	assert_int_equal(smtp_tx_pending(&wd->tx), 1);
	smtp_tx_close(&wd->tx);
	assert_true(run_until(&wd->w->loop, world_drained, wd, WAIT_MS));
	assert_int_equal(wd->drained, 1);
	assert_int_equal(wd->done, 0);
	assert_int_equal(smtp_tx_pending(&wd->tx), 0);
	/* The relay opened meanwhile was let go: QUIT. */
	assert_true(run_until(&wd->w->loop, fake_closed, f, WAIT_MS));
	assert_string_equal(f->log, "EHLO mx.test\nQUIT\n");
}

/* Past the size limit the rest is counted, not kept; a reset forgets it. */
static void test_message_limits(void **state)
{
	struct world *wd = *state;
	char chunk[4096];

	fake_new(wd, true);
	world_init(wd, "smtp", NULL, "limits: { max_message_size: 10K }\n");
	memset(chunk, 'x', sizeof chunk);
	smtp_tx_begin(&wd->tx, "a@example.org", "");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	for (int i = 0; i < 4; i++)
		smtp_tx_data_append(&wd->tx, chunk, sizeof chunk);
	assert_int_equal(smtp_tx_msg_state(&wd->tx), SMTP_TX_MSG_TOO_BIG);
	assert_int_equal(smtp_tx_msg_size(&wd->tx), 4 * sizeof chunk);
	smtp_tx_reset(&wd->tx, false);
	assert_int_equal(smtp_tx_msg_state(&wd->tx), SMTP_TX_MSG_OK);
	assert_int_equal(smtp_tx_msg_size(&wd->tx), 0);
}

/* Feeds msg one octet at a time: smtp_tx_headers_take says yes once, right after the octet
 * that completes the header block (want: its length; 0: never). */
static void headers_fed_bytewise(struct world *wd, const char *msg, size_t want)
{
	const char *hdr;
	size_t n = strlen(msg), len = 0, told = 0, at = 0;

	smtp_tx_begin(&wd->tx, "a@example.org", "");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	for (size_t i = 0; i < n; i++) {
		smtp_tx_data_append(&wd->tx, msg + i, 1);
		if (smtp_tx_headers_take(&wd->tx, &hdr, &len)) {
			told++;
			at = i + 1;
			assert_int_equal(len, want);
			assert_memory_equal(hdr, msg, len);
		}
	}
	assert_int_equal(told, want ? 1 : 0);
	assert_int_equal(at, want);
	smtp_tx_reset(&wd->tx, false);
}

/* Feeds msg in two pieces split at `at`: the header block told is want long (0: none),
 * whichever piece completes it (the length comes from the scan, not from the buffer). */
static void headers_fed_split(struct world *wd, const char *msg, size_t at, size_t want)
{
	const char *hdr;
	size_t n = strlen(msg), len = 0;
	bool told;

	smtp_tx_begin(&wd->tx, "a@example.org", "");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	smtp_tx_data_append(&wd->tx, msg, at);
	told = smtp_tx_headers_take(&wd->tx, &hdr, &len);
	smtp_tx_data_append(&wd->tx, msg + at, n - at);
	told = smtp_tx_headers_take(&wd->tx, &hdr, &len) || told;
	assert_int_equal(told, want > 0);
	if (want > 0) {
		assert_int_equal(len, want);
		assert_memory_equal(hdr, msg, len);
	}
	smtp_tx_reset(&wd->tx, false);
}

/* The header block's end is told once per message, as soon as it has arrived, whatever
 * the pieces: not for a message without a blank line, nor one already over the limit. */
static void test_headers_complete(void **state)
{
	struct world *wd = *state;
	char chunk[4096];
	const char *hdr;
	size_t len;

	fake_new(wd, true);
	world_init(wd, "smtp", NULL, "limits: { max_message_size: 10K }\n");
	headers_fed_bytewise(wd, test_message, 39);
	headers_fed_bytewise(wd, "\r\nno header\r\n", 2);
	headers_fed_bytewise(wd, "A: b\r\n\r\r\n\r\nx\r\n", 11);
	headers_fed_bytewise(wd, "Subject: no body\r\nX: y\r\n", 0);
	static const struct { const char *msg; size_t want; } splits[] = {
		{ "A: b\r\n\r\r\n\r\nx\r\n", 11 }, { "\r\nno header\r\n", 2 },
		{ "A: b\r\n c\r\r\n\r\n\r\n\r\nbody\r\n\r\n", 13 }, { "Subject: x\r\n", 0 },
	};
	for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++)
		for (size_t at = 0; at <= strlen(splits[k].msg); at++)
			headers_fed_split(wd, splits[k].msg, at, splits[k].want);
	/* every string of up to 7 octets over CR, LF and 'a', whole and split at every
	 * place, against the first CRLF CRLF after an assumed CRLF at the start */
	char m[8], ref[16];
	for (int n = 0; n <= 7; n++) {
		int count = 1;
		for (int k = 0; k < n; k++)
			count *= 3;
		for (int v = 0; v < count; v++) {
			for (int k = 0, x = v; k < n; k++, x /= 3)
				m[k] = "\r\na"[x % 3];
			m[n] = '\0';
			snprintf(ref, sizeof ref, "\r\n%s", m);
			const char *e = strstr(ref, "\r\n\r\n");
			size_t want = e ? (size_t)(e - ref) + 2 : 0;
			for (size_t at = 0; at <= (size_t)n; at++)
				headers_fed_split(wd, m, at, want);
		}
	}
	/* in pieces as a client sends them: the end straddles two appends */
	smtp_tx_begin(&wd->tx, "a@example.org", "");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	smtp_tx_data_append(&wd->tx, test_message, 38);
	assert_false(smtp_tx_headers_take(&wd->tx, &hdr, &len));
	smtp_tx_data_append(&wd->tx, test_message + 38, sizeof test_message - 1 - 38);
	assert_true(smtp_tx_headers_take(&wd->tx, &hdr, &len));
	assert_int_equal(len, 39);
	assert_false(smtp_tx_headers_take(&wd->tx, &hdr, &len));
	smtp_tx_reset(&wd->tx, false);
	/* over the size limit before the header block ends: nothing to tell */
	memset(chunk, 'x', sizeof chunk);
	smtp_tx_begin(&wd->tx, "a@example.org", "");
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	for (int i = 0; i < 3; i++)
		smtp_tx_data_append(&wd->tx, chunk, sizeof chunk);
	smtp_tx_data_append(&wd->tx, "\r\n\r\n", 4);
	assert_false(smtp_tx_headers_take(&wd->tx, &hdr, &len));
	smtp_tx_reset(&wd->tx, false);
}

/* A pipelining client (RFC 2920): MAIL is answered at once and goes to the backend with the
 * first RCPT and, when the client sent DATA right behind, DATA: one group, each reply
 * mapped back in order; the message then needs no second DATA. */
static void test_pipelined_group(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	wd->tx.mail_deferrable = true;
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->connections, 0);            /* nothing asked of the backend yet */
	wd->tx.data_follows = true;
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 250);
	assert_int_equal(wd->env.nrcpts, 1);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(f->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\n.\n");
	assert_int_equal(f->messages, 1);
	assert_relayed_message(f);
	world_reset(wd);
}

/* The refusals a pipelined group brings: a sender refused at the backend answers the RCPT
 * (the RCPT behind it answered in vain); every RCPT refused while DATA got 354: a lone "."
 * ends it and the connection goes on in step for the next RCPT. */
static void test_pipelined_refusals(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	f->mail_code = 550;
	world_init(wd, "smtp", NULL, NULL);
	wd->tx.mail_deferrable = true;
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 550);
	assert_string_equal(wd->text, "550 5.7.1 sender refused");
	assert_int_equal(wd->env.nrcpts, 0);
	world_reset(wd);

	f->mail_code = 0;
	f->rcpt_code = 550;
	f->log[0] = '\0';
	atomic_store(&wd->sg->pool->rr, 0);
	wd->tx.mail_deferrable = true;
	world_mail(wd, "a@example.org");
	wd->tx.data_follows = true;
	world_rcpt(wd, "nobody@example.net");
	assert_int_equal(wd->code, 550);
	assert_int_equal(wd->env.nrcpts, 0);
	/* the fake answers 354 whatever the recipients: the lone dot follows at once */
	assert_true(run_until(&wd->w->loop, fake_got_lone_dot, f, WAIT_MS));
	f->rcpt_code = 0;
	wd->tx.data_follows = false;
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(f->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<nobody@example.net>\nDATA\n.\n"
	    "RCPT TO:<b@example.net>\nDATA\n.\n");
	assert_int_equal(f->connections, 2);           /* the refused sender's, then this one */
	assert_relayed_message(f);
	world_reset(wd);
}

/* The next transaction (from to `to`, DATA behind) as the session hands it over. */
static void world_set_next(struct world *wd, const char *from, const char *to)
{
	const char *rcpts[1] = { to }, *params[1] = { "" };

	smtp_tx_set_next(&wd->tx, from, "", rcpts, params, 1, true);
}

/* One pipelined message of a@example.org to `to` up to its final dot, with the next
 * transaction (next_from to next_to) handed over; not yet delivered. */
static void world_start_with_next(struct world *wd, const char *to, const char *next_from, const char *next_to)
{
	wd->tx.mail_deferrable = true;
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	wd->tx.data_follows = true;
	world_rcpt(wd, to);
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_set_next(wd, next_from, next_to);
}

/* ... and delivered: the delivery's result is left in wd. */
static void world_send_with_next(struct world *wd, const char *to, const char *next_from, const char *next_to)
{
	world_start_with_next(wd, to, next_from, next_to);
	world_deliver(wd, false);
}

/* The next transaction as the client pipelined it: MAIL answered at once, the RCPT (with
 * DATA behind it); the RCPT's result is left in wd. */
static void world_next_rcpt(struct world *wd, const char *from, const char *to)
{
	wd->tx.mail_deferrable = true;
	world_mail(wd, from);
	assert_int_equal(wd->code, 250);
	wd->tx.data_follows = true;
	world_rcpt(wd, to);
}

static bool fake_saw_next_data(void *arg)
{
	return strstr(((struct fake *)arg)->log, ".\nMAIL FROM:<a2@example.org>\nRCPT TO:<c@example.net>\nDATA\n") != NULL;
}

/* RFC 2920 across messages: the next transaction's MAIL, RCPT and DATA go in the same
 * write as the message's final dot; the connection is kept for it and its commands take
 * the replies already in (one connection, no command sent twice, each reply to its own). */
static void test_pipelined_ahead(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_send_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	assert_true(run_until(&wd->w->loop, fake_saw_next_data, f, WAIT_MS));
	smtp_tx_reset(&wd->tx, wd->reusable);
	world_next_rcpt(wd, "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	assert_int_equal(wd->env.nrcpts, 1);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(f->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\n.\n"
	    "MAIL FROM:<a2@example.org>\nRCPT TO:<c@example.net>\nDATA\n.\n");
	assert_int_equal(f->connections, 1);
	assert_int_equal(f->messages, 2);
	assert_relayed_message(f);
	world_reset(wd);
}

static bool fake_saw_third(void *arg)
{
	return strstr(((struct fake *)arg)->log, ".\nMAIL FROM:<a3@example.org>\nRCPT TO:<d@example.net>\nDATA\n") != NULL;
}

/* The next transaction's RCPT without DATA right behind it (the client waited for the
 * RCPT's reply): the DATA sent ahead is the message's all the same, and the message after
 * it goes ahead again on the same connection. */
static void test_pipelined_ahead_data_later(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_send_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	smtp_tx_reset(&wd->tx, wd->reusable);
	wd->tx.mail_deferrable = true;
	world_mail(wd, "a2@example.org");
	wd->tx.data_follows = false;
	world_rcpt(wd, "c@example.net");
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_set_next(wd, "a3@example.org", "d@example.net");
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_true(run_until(&wd->w->loop, fake_saw_third, f, WAIT_MS));
	smtp_tx_reset(&wd->tx, wd->reusable);
	world_next_rcpt(wd, "a3@example.org", "d@example.net");
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->connections, 1);
	assert_int_equal(f->messages, 3);
	assert_relayed_message(f);
	world_reset(wd);
}

/* The backend refuses the next transaction's recipient sent ahead: the refusal is that
 * RCPT's answer, the DATA behind it (354) is ended by a lone dot; a transaction other than
 * the one sent ahead gets a fresh connection (nothing delivered through the first). */
static void test_pipelined_ahead_refusals(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_start_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	f->rcpt_code = 550;     /* from now on: the RCPT sent ahead */
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	smtp_tx_reset(&wd->tx, wd->reusable);
	world_next_rcpt(wd, "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 550);
	assert_string_equal(wd->text, "550 5.1.1 no such user");
	assert_int_equal(wd->env.nrcpts, 0);
	assert_true(run_until(&wd->w->loop, fake_got_lone_dot, f, WAIT_MS));
	assert_int_equal(f->messages, 2);              /* the message, and the lone dot */
	smtp_tx_reset(&wd->tx, true);
	assert_int_equal(f->connections, 1);

	/* sent ahead for c@, but the client's next transaction is for d@ */
	f->rcpt_code = 0;
	world_send_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	assert_true(run_until(&wd->w->loop, fake_saw_next_data, f, WAIT_MS));
	smtp_tx_reset(&wd->tx, wd->reusable);
	world_next_rcpt(wd, "a2@example.org", "d@example.net");
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->connections, 3);
	assert_int_equal(f->messages, 4);
	assert_non_null(strstr(f->log, "MAIL FROM:<a2@example.org>\nRCPT TO:<d@example.net>\nDATA\n.\n"));
	assert_relayed_message(f);
	world_reset(wd);
}

/* The backend goes away with the next transaction sent ahead, before the final reply: the
 * message is replayed on another backend, the commands sent ahead are gone with the
 * connection. */
static void test_pipelined_ahead_failover(void **state)
{
	struct world *wd = *state;
	struct fake *f1 = fake_new(wd, false), *f2 = fake_new(wd, false);

	world_init(wd, "smtp", NULL, "  max_attempts: 2\n");
	f1->drop_on = "EOM";
	world_send_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	assert_int_equal(f1->messages, 1);
	assert_int_equal(f2->messages, 1);
	assert_relayed_message(f2);
	assert_null(strstr(f2->log, "a2@example.org"));
	world_reset(wd);
}

/* ... and between the final reply and the next MAIL: the message stands (the backend's
 * 250 came), the next transaction opens a connection of its own. */
static void test_pipelined_ahead_lost_after_dot(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_start_with_next(wd, "b@example.net", "a2@example.org", "c@example.net");
	f->drop_on = "MAIL";    /* answers the dot, then drops at the MAIL sent ahead */
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 1);
	assert_true(run_until(&wd->w->loop, fake_closed, f, WAIT_MS));
	smtp_tx_reset(&wd->tx, wd->reusable);
	f->drop_on = NULL;
	world_next_rcpt(wd, "a2@example.org", "c@example.net");
	assert_int_equal(wd->code, 250);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 2);
	assert_int_equal(f->connections, 2);
	world_reset(wd);
}

/* Queue ids: the same second, worker and sequence number in two processes (two daemons, or
 * a restart within the second) gave the same id, which made their logs ambiguous; a process's
 * random salt tells them apart. Within one process ids stay distinct. */
static void test_queue_id_distinct(void **state)
{
	char a[13], b[13], prev[13] = "";
	(void)state;
	smtp_tx_queue_id(a, 1796380000, 0, 1, 0x1234567890abcdefULL);
	smtp_tx_queue_id(b, 1796380000, 0, 1, 0x0fedcba098765432ULL);
	assert_int_equal(strlen(a), 12);
	assert_string_not_equal(a, b);
	for (unsigned w = 0; w < 2; w++) {
		for (uint64_t seq = 1; seq <= 1000; seq++) {
			smtp_tx_queue_id(a, 1796380000, w, seq, 0x1234567890abcdefULL);
			assert_string_not_equal(a, prev);
			for (const char *c = a; *c; c++)
				assert_non_null(strchr("0123456789BCDFGHJKLMNPQRSTVWXYZ", *c));
			memcpy(prev, a, sizeof(prev));
		}
	}
}

/* smtp_tx_backend_qid's full search (no prefilter): the reference. */
static void ref_backend_qid(const char *text, char *qid)
{
	smtp_tx_qid_force_search = true;
	smtp_tx_backend_qid(text, qid);
	smtp_tx_qid_force_search = false;
}

/* The backend's queue id: each MTA's wording, none, and random texts over the markers'
 * pieces give the same id as the reference (the prefilter skips only texts with no marker). */
static void test_backend_qid(void **state)
{
	(void)state;
	static const struct { const char *label, *text, *qid; } rows[] = {
		{ "Postfix", "2.0.0 Ok: queued as 4FXyz12", "4FXyz12" },
		{ "smtp-sink", "2.0.0 Ok", "" },
		{ "Exim", "OK id=1tIxyz-000abc-De", "1tIxyz-000abc-De" },
		{ "Exchange", "2.6.0 <m@h> [InternalId=123, Hostname=X] Queued mail for delivery", "123" },
		{ "Haraka", "Message Queued (8A1E-22)", "8A1E-22" },
		{ "qmail", "ok 1700000000 qp 12345", "12345" },
		{ "Sendmail", "2.0.0 wB3Abc Message accepted for delivery", "wB3Abc" },
		{ "Sendmail, no id", "2.0.0 Message accepted for delivery", "" },
		{ "Dovecot LMTP", "2.0.0 <r@x> Nx8mK0 Saved", "Nx8mK0" },
		{ "marker first", " Saved", "" },
		{ "multi-line", "250-first\r\n2.0.0 Ok: queued as QQ", "QQ" },
		{ "empty", "", "" },
	};
	char got[64], want[64];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		smtp_tx_backend_qid(rows[i].text, got);
		ref_backend_qid(rows[i].text, want);
		if (strcmp(got, rows[i].qid) != 0 || strcmp(want, rows[i].qid) != 0)
			fail_msg("%s: got \"%s\", reference \"%s\", want \"%s\"", rows[i].label, got, want, rows[i].qid);
	}
	smtp_tx_backend_qid(NULL, got);
	assert_string_equal(got, "");
	/* random texts over the markers' pieces and the octets around an id */
	static const char *const pieces[] = { "queued as ", "OK id=", "InternalId=", "Queued (", " qp ",
		" Message accepted for delivery", " Saved", "2.0.0", " ", "<a@b>", "Ok", "x", "ID7", ",", ")",
		"]", "\r\n", "Queued", "queued", "Message", "Save", "d", "s", "=", "(", "p", "y", "q" };
	unsigned seed = 12345;
	for (int t = 0; t < 20000; t++) {
		char text[400];
		size_t k = 0;
		int n = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
		for (int j = 0; j < n; j++) {
			const char *p = pieces[((seed = seed * 1103515245u + 12345u) >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
			size_t l = strlen(p);
			memcpy(text + k, p, l);
			k += l;
		}
		text[k] = '\0';
		smtp_tx_backend_qid(text, got);
		ref_backend_qid(text, want);
		if (strcmp(got, want) != 0)
			fail_msg("\"%s\": got \"%s\", reference \"%s\"", text, got, want);
	}
}

/* The delivered line's text is snprintf's of its form, byte for byte: ordinary values,
 * empty ones, NULL, long ones cut at every room, the integer limits, scores that are and
 * are not halves (-0.0, 0.05, 1e300, NaN, -inf). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void test_delivered_text(void **state)
{
	(void)state;
	static const double scores[] = { 0.0, -0.0, 2.5, -3.0, 7.25, 0.05, 1e20, 1e300, -1e300,
		4503599627370495.5, 9007199254740993.0, 0.0 / 0.0, 1.0 / 0.0, -1.0 / 0.0 };
	static const unsigned long long sizes[] = { 0, 1, 4147, 18446744073709551615ULL };
	char longv[1500];
	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	const char *vals[] = { "a1B2c3D4e5F6", "", NULL, "smtp://127.0.0.1:2526", "<a@example.test>", longv };
	const size_t caps[] = { 1, 2, 30, 200, 1800, 2048 };
	char got[2048], want[2048];

	for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++)
		for (size_t si = 0; si < sizeof(scores) / sizeof(scores[0]); si++)
			for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
				for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
					const char *a = vals[v], *b = vals[(v + 1) % 6], *d = vals[(v + 3) % 6];
					size_t nr = z == 3 ? (size_t)-1 : z * 7;
					size_t n = smtp_tx_delivered_text(got, caps[c], a, b, d, a, nr, sizes[z], b,
					    scores[si]);
					int w = snprintf(want, caps[c], smtp_tx_delivered_form, a, b, d, a, nr,
					    sizes[z], b, scores[si]);
					size_t wl = (size_t)w < caps[c] ? (size_t)w : caps[c] - 1;
					if (n != wl || strcmp(got, want) != 0)
						fail_msg("values %zu score %g size %llu cap %zu: got \"%.80s\" (%zu), want \"%.80s\" (%zu)",
						    v, scores[si], sizes[z], caps[c], got, n, want, wl);
				}
}
#pragma GCC diagnostic pop

static bool fake_has_data(void *arg)
{
	const char *l = ((struct fake *)arg)->log;
	size_t n = strlen(l);

	return n >= 5 && strcmp(l + n - 5, "DATA\n") == 0;
}

/* How often line (with its newline) occurs in a fake's log. */
static int log_count(const char *log, const char *line)
{
	int n = 0;

	for (const char *p = log; (p = strstr(p, line)) != NULL; p += strlen(line))
		n++;
	return n;
}

/* MAIL and RCPT in lock-step, then the client's DATA: smtp_tx_data_early sends DATA to the
 * backend before any content (the fake's log ends with it). */
static void world_lockstep_to_data(struct world *wd, struct fake *f)
{
	world_mail(wd, "a@example.org");
	assert_int_equal(wd->code, 250);
	world_rcpt(wd, "b@example.net");
	assert_int_equal(wd->code, 250);
	smtp_tx_data_early(&wd->tx);
	assert_true(run_until(&wd->w->loop, fake_has_data, f, WAIT_MS));
}

/* A lock-step client's DATA goes to the backend at once (smtp_tx_data_early): the message
 * then streams into that open DATA, DATA sent once. A message refused after it (the owner
 * resets the transaction, not reusable, or the session goes) closes that connection with
 * no dot: nothing delivered; the next transaction opens a fresh one. */
static void test_lockstep_data_early(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	world_init(wd, "smtp", NULL, NULL);
	world_lockstep_to_data(wd, f);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_string_equal(f->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\n.\n");
	assert_int_equal(f->messages, 1);
	assert_relayed_message(f);
	world_reset(wd);

	/* refused here after the early DATA (a size limit, a NUL, a discard): the reset closes
	 * the connection, reusable or not, with no dot and no QUIT */
	f->log[0] = '\0';
	world_lockstep_to_data(wd, f);
	assert_int_equal(smtp_tx_data_open(&wd->tx), 0);
	smtp_tx_data_append(&wd->tx, test_message, 20);
	smtp_tx_reset(&wd->tx, true);
	assert_true(run_until(&wd->w->loop, fake_closed, f, WAIT_MS));
	assert_int_equal(f->messages, 1);
	assert_string_equal(f->log, "EHLO mx.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\nDATA\n");

	/* the next transaction: a fresh connection, delivered */
	f->log[0] = '\0';
	world_lockstep_to_data(wd, f);
	assert_int_equal(f->connections, 3);
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 2);
	world_reset(wd);
}

/* The early DATA answered (the connection no longer waits for it, or has gone). */
static bool relay_data_answered(void *arg)
{
	const struct world *wd = arg;

	return wd->tx.relay == NULL || !relay_data_pending(wd->tx.relay);
}

/* The backend refuses the early DATA: the client hears a refusal at its dot (the backend's
 * 5xx, or 451 once no attempt is left for a 4xx), never 250; nothing delivered. Whether the
 * refusal is read while the message waits for it or before the message is complete (a real
 * client's content takes longer than the backend's answer), it is the message's reply:
 * DATA is not sent again for the same answer. */
static void test_lockstep_data_refused(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	static const int codes[] = { 554, 451 };

	world_init(wd, "smtp", NULL, NULL);
	for (int first = 0; first < 2; first++) {
		for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
			f->data_code = codes[i];
			f->log[0] = '\0';
			atomic_store(&wd->sg->pool->rr, 0);
			world_mail(wd, "a@example.org");
			world_rcpt(wd, "b@example.net");
			smtp_tx_data_early(&wd->tx);
			if (first)
				assert_true(run_until(&wd->w->loop, relay_data_answered, wd, WAIT_MS));
			world_data(wd);
			world_deliver(wd, false);
			assert_int_equal(wd->code / 100, codes[i] / 100);
			assert_int_equal(f->messages, 0);
			assert_int_equal(log_count(f->log, "DATA\n"), 1);
			world_reset(wd);
		}
	}
}

/* The backend drops the connection at the early DATA: the delivery replays the transaction
 * on the next server (250 after its 250), or 4xx when there is none. */
static void test_lockstep_data_dropped(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);

	f->drop_on = "DATA";
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	world_rcpt(wd, "b@example.net");
	smtp_tx_data_early(&wd->tx);
	assert_true(run_until(&wd->w->loop, fake_closed, f, WAIT_MS));
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code / 100, 4);
	assert_int_equal(f->messages, 0);
	world_reset(wd);
}

static void test_lockstep_data_dropped_failover(void **state)
{
	struct world *wd = *state;
	struct fake *f = fake_new(wd, false);
	struct fake *g = fake_new(wd, false);

	f->drop_on = "DATA";
	world_init(wd, "smtp", NULL, NULL);
	world_mail(wd, "a@example.org");
	world_rcpt(wd, "b@example.net");
	assert_int_equal(f->connections, 1);
	smtp_tx_data_early(&wd->tx);
	assert_true(run_until(&wd->w->loop, fake_closed, f, WAIT_MS));
	world_data(wd);
	world_deliver(wd, false);
	assert_int_equal(wd->code, 250);
	assert_int_equal(f->messages, 0);
	assert_int_equal(g->messages, 1);
	assert_relayed_message(g);
	world_reset(wd);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_id_distinct),
		cmocka_unit_test(test_backend_qid),
		cmocka_unit_test(test_delivered_text),
		WORLD_TEST(test_deliver_smtp),
		WORLD_TEST(test_body_wire),
		WORLD_TEST(test_body_wire_new_body),
		WORLD_TEST(test_header_block_as_it_came),
		WORLD_TEST(test_header_block_edited_wire),
		WORLD_TEST(test_no_250_before_backend),
		WORLD_TEST(test_failover_at_connect),
		WORLD_TEST(test_failover_rcpt_drop),
		WORLD_TEST(test_failover_replay_at_eom),
		WORLD_TEST(test_all_backends_fail),
		WORLD_TEST(test_no_backend_at_mail),
		WORLD_TEST(test_proxy_header_unbuildable),
		WORLD_TEST(test_backend_refusals),
		WORLD_TEST(test_lmtp_partials),
		WORLD_TEST(test_envelope_storage_kept),
		WORLD_TEST(test_maildir_and_quarantine),
		WORLD_TEST(test_envelope_changes),
		WORLD_TEST(test_envelope_changes_bounded),
		WORLD_TEST(test_close_while_opening),
		WORLD_TEST(test_message_limits),
		WORLD_TEST(test_headers_complete),
		WORLD_TEST(test_pipelined_group),
		WORLD_TEST(test_pipelined_refusals),
		WORLD_TEST(test_pipelined_ahead),
		WORLD_TEST(test_pipelined_ahead_data_later),
		WORLD_TEST(test_pipelined_ahead_refusals),
		WORLD_TEST(test_pipelined_ahead_failover),
		WORLD_TEST(test_pipelined_ahead_lost_after_dot),
		WORLD_TEST(test_lockstep_data_early),
		WORLD_TEST(test_lockstep_data_refused),
		WORLD_TEST(test_lockstep_data_dropped),
		WORLD_TEST(test_lockstep_data_dropped_failover),
	};

	signal(SIGPIPE, SIG_IGN);   /* as the daemon: a peer gone mid-write is an error, not a signal */
	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
