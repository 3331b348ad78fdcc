/* test_sasl_dovecot.c — the Dovecot auth-client protocol: the server-line parser (table),
 * addresses, and the asynchronous client against a scripted server thread (unix: and inet:)
 * — OK, FAIL, temp, LOGIN and PLAIN challenges, many requests on one connection, timeouts,
 * a lost connection, a dead service, a bad handshake, cancellation.
 *
 * `test_sasl_dovecot --probe ADDRESS MECH USER PASS [secured] [rip=IP]` authenticates once through the
 * client and prints OK/FAIL/TEMPFAIL: tests/integration/test_edge_dovecot.py drives a real
 * Dovecot with it (the AUTH verb that will use the client comes with the session rewrite). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sasl.h"
#include "sasl_dovecot.h"

/* ---- the parser ------------------------------------------------------------------------- */

struct parse_row {
	const char *label;
	const char *line;
	bool ready_before;          /* parser state before the line */
	enum sd_event want;
	unsigned id;
	const char *data, *user, *reason;
	bool temp;
};

static const struct parse_row parse_rows[] = {
	{ "VERSION 1.2", "VERSION\t1\t2", false, SD_EV_NONE },
	{ "VERSION 2 refused", "VERSION\t2\t0", false, SD_EV_ERROR },
	{ "VERSION without minor", "VERSION\t1", false, SD_EV_ERROR },
	{ "MECH", "MECH\tPLAIN\tplaintext", false, SD_EV_NONE },
	{ "SPID", "SPID\t1234", false, SD_EV_NONE },
	{ "COOKIE", "COOKIE\t0123abcd", false, SD_EV_NONE },
	{ "unknown handshake line", "FUTURE\tthing", false, SD_EV_NONE },
	{ "reply before DONE", "OK\t1\tuser=a", false, SD_EV_ERROR },
	{ "OK", "OK\t7\tuser=alice", true, SD_EV_OK, 7, "", "alice" },
	{ "OK with CR", "OK\t7\tuser=alice\r", true, SD_EV_OK, 7, "", "alice" },
	{ "OK unknown params", "OK\t8\tfoo=bar\tuser=bob\tflag", true, SD_EV_OK, 8, "", "bob" },
	{ "OK tab-escaped user", "OK\t9\tuser=a\001tb\001\001c", true, SD_EV_OK, 9, "", "a?b?c" },
	{ "OK no user", "OK\t10", true, SD_EV_OK, 10, "", "" },
	{ "CONT", "CONT\t3\tVXNlcm5hbWU6", true, SD_EV_CONT, 3, "VXNlcm5hbWU6" },
	{ "CONT empty", "CONT\t3\t", true, SD_EV_CONT, 3, "" },
	{ "CONT without data", "CONT\t3", true, SD_EV_ERROR },
	{ "CONT not base64", "CONT\t3\tno way", true, SD_EV_ERROR },
	{ "FAIL", "FAIL\t4\tuser=alice\treason=Password mismatch", true, SD_EV_FAIL, 4, "", "alice", "Password mismatch" },
	{ "FAIL temp", "FAIL\t5\ttemp\treason=db down", true, SD_EV_FAIL, 5, "", "", "db down", true },
	{ "FAIL bare", "FAIL\t6", true, SD_EV_FAIL, 6 },
	{ "id missing", "OK", true, SD_EV_ERROR },
	{ "id not a number", "OK\tx1", true, SD_EV_ERROR },
	{ "id negative", "FAIL\t-1", true, SD_EV_ERROR },
	{ "id too big", "OK\t4294967296", true, SD_EV_ERROR },
	{ "id max", "OK\t4294967295", true, SD_EV_OK, 4294967295u, "", "" },
	{ "other line after DONE", "MECH\tLOGIN", true, SD_EV_NONE },
};

static void test_parser(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_rows) / sizeof(parse_rows[0]); i++) {
		const struct parse_row *r = &parse_rows[i];
		struct sd_parser p;
		struct sd_reply rep;

		sd_parser_init(&p);
		if (r->ready_before) {
			assert_int_equal(sd_parse_line(&p, "VERSION\t1\t2", 11, &rep), SD_EV_NONE);
			assert_int_equal(sd_parse_line(&p, "DONE", 4, &rep), SD_EV_READY);
		}
		enum sd_event ev = sd_parse_line(&p, r->line, strlen(r->line), &rep);
		if (ev != r->want)
			fail_msg("%s: event %d, want %d (%s)", r->label, ev, r->want, rep.error ? rep.error : "");
		if (ev == SD_EV_ERROR && rep.error == NULL)
			fail_msg("%s: error without a reason", r->label);
		if (ev != SD_EV_OK && ev != SD_EV_FAIL && ev != SD_EV_CONT)
			continue;
		if (rep.id != r->id)
			fail_msg("%s: id %u", r->label, rep.id);
		if (r->data && (rep.data_len != strlen(r->data) || memcmp(rep.data, r->data, rep.data_len) != 0))
			fail_msg("%s: data", r->label);
		if (strcmp(rep.user, r->user ? r->user : "") != 0 || strcmp(rep.reason, r->reason ? r->reason : "") != 0)
			fail_msg("%s: user '%s' reason '%s'", r->label, rep.user, rep.reason);
		if (rep.temp != r->temp)
			fail_msg("%s: temp", r->label);
	}
	/* the handshake: mechanisms, DONE needs VERSION, NUL and length limits */
	struct sd_parser p;
	struct sd_reply rep;
	sd_parser_init(&p);
	assert_int_equal(sd_parse_line(&p, "DONE", 4, &rep), SD_EV_ERROR);
	sd_parser_init(&p);
	sd_parse_line(&p, "VERSION\t1\t3", 11, &rep);
	sd_parse_line(&p, "MECH\tplain", 10, &rep);
	sd_parse_line(&p, "MECH\tCRAM-MD5", 13, &rep);
	sd_parse_line(&p, "MECH\tLOGIN\tplaintext", 20, &rep);
	assert_int_equal(sd_parse_line(&p, "DONE", 4, &rep), SD_EV_READY);
	assert_int_equal(p.mechs, (1u << SASL_MECH_PLAIN) | (1u << SASL_MECH_LOGIN));
	assert_int_equal(sd_parse_line(&p, "OK\t1\0x", 6, &rep), SD_EV_ERROR);
	char *big = malloc(SASL_DOVECOT_MAX_LINE + 10);
	memset(big, 'A', SASL_DOVECOT_MAX_LINE + 10);
	memcpy(big, "CONT\t1\t", 7);
	assert_int_equal(sd_parse_line(&p, big, SASL_DOVECOT_MAX_LINE, &rep), SD_EV_CONT);
	assert_int_equal(sd_parse_line(&p, big, SASL_DOVECOT_MAX_LINE + 1, &rep), SD_EV_ERROR);
	free(big);
}

static void test_addr(void **state)
{
	(void)state;
	struct sasl_dovecot_addr a;
	const char *why;

	assert_int_equal(sasl_dovecot_parse_addr("unix:/run/dovecot/auth-client", &a, &why), 0);
	assert_true(a.unix_socket);
	assert_string_equal(a.path, "/run/dovecot/auth-client");
	assert_int_equal(sasl_dovecot_parse_addr("inet:127.0.0.1:12345", &a, &why), 0);
	assert_false(a.unix_socket);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 12345);
	assert_int_equal(sasl_dovecot_parse_addr("inet:[::1]:12345", &a, &why), 0);
	assert_string_equal(a.host, "::1");
	static const char *const bad[] = { "unix:relative", "unix:", "inet:127.0.0.1", "inet:127.0.0.1:0",
		"inet:127.0.0.1:65536", "inet:localhost:12345", "inet::12345", "inet:[::1]12345",
		"tcp:127.0.0.1:1", "/run/dovecot/auth-client", "inet:127.0.0.1:12x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sasl_dovecot_parse_addr(bad[i], &a, &why) == 0)
			fail_msg("accepted %s", bad[i]);
	char longp[200] = "unix:/";
	memset(longp + 6, 'x', 150);
	longp[156] = '\0';
	assert_int_equal(sasl_dovecot_parse_addr(longp, &a, &why), -1);
}

/* ---- a scripted Dovecot ----------------------------------------------------------------- */

enum fake_mode { FAKE_NORMAL = 0, FAKE_BAD_VERSION, FAKE_NO_DONE, FAKE_PLAIN_ONLY, FAKE_EARLY_REPLY };

struct fake {
	int lfd;
	char path[108];
	int port;
	pthread_t th;
	volatile int mode;
	volatile int stop;
	char last_auth[1024];       /* the last AUTH line received */
	volatile int conns;
	pthread_mutex_t mu;
};

static void fake_send(int fd, const char *s)
{
	ssize_t r = write(fd, s, strlen(s));
	(void)r;
}

/* Checks a PLAIN message and answers for request id. */
static void fake_answer(struct fake *f, int fd, const char *id, const char *user, const char *pass)
{
	char out[600];

	if (strcmp(user, "stall") == 0)
		return;
	if (strcmp(user, "close") == 0) {
		shutdown(fd, SHUT_RDWR);
		return;
	}
	if (strcmp(user, "temp") == 0)
		snprintf(out, sizeof(out), "FAIL\t%s\ttemp\treason=db down\n", id);
	else if (strcmp(pass, "secret") == 0)
		snprintf(out, sizeof(out), "OK\t%s\tuser=%s\n", id, user);
	else
		snprintf(out, sizeof(out), "FAIL\t%s\tuser=%s\treason=Password mismatch\n", id, user);
	fake_send(fd, out);
	(void)f;
}

struct fake_login { char id[16]; int step; char user[256]; };

static void fake_serve(struct fake *f, int fd)
{
	char buf[20000];
	size_t len = 0;
	struct fake_login logins[16];
	size_t nlogins = 0;

	switch (f->mode) {
	case FAKE_BAD_VERSION:
		fake_send(fd, "VERSION\t2\t0\nDONE\n");
		break;
	case FAKE_NO_DONE:
		fake_send(fd, "VERSION\t1\t2\nMECH\tPLAIN\n");
		break;
	case FAKE_EARLY_REPLY:
		fake_send(fd, "VERSION\t1\t2\nOK\t1\tuser=x\nDONE\n");
		break;
	case FAKE_PLAIN_ONLY:
		fake_send(fd, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tc0ffee\nDONE\n");
		break;
	default:
		fake_send(fd, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tc0ffee\nDONE\n");
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = '\0';
		char *nl;
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			char line[20000];
			snprintf(line, sizeof(line), "%s", buf);
			memmove(buf, nl + 1, len - (size_t)(nl + 1 - buf) + 1);
			len -= strlen(line) + 1;
			char *fld[40];
			int nf = 0;
			char orig[20000];
			memcpy(orig, line, strlen(line) + 1);
			for (char *p = line, *t; nf < 40 && (t = strsep(&p, "\t")) != NULL;)
				fld[nf++] = t;
			if (strcmp(fld[0], "AUTH") == 0 && nf >= 3) {
				pthread_mutex_lock(&f->mu);
				snprintf(f->last_auth, sizeof(f->last_auth), "%s", orig);
				pthread_mutex_unlock(&f->mu);
				const char *resp = NULL;
				for (int k = 3; k < nf; k++)
					if (strncmp(fld[k], "resp=", 5) == 0)
						resp = fld[k] + 5;
				if (strcmp(fld[2], "PLAIN") == 0) {
					if (resp == NULL) {
						char out[64];
						snprintf(out, sizeof(out), "CONT\t%s\t\n", fld[1]);
						fake_send(fd, out);
						if (nlogins < 16) {
							snprintf(logins[nlogins].id, sizeof(logins[0].id), "%s", fld[1]);
							logins[nlogins++].step = 10;   /* PLAIN after an empty challenge */
						}
						continue;
					}
					unsigned char msg[600];
					struct sasl_plain pl;
					const char *why;
					ssize_t k = sasl_base64_decode(resp, strlen(resp), msg, sizeof(msg));
					if (k < 0 || sasl_plain_split(msg, (size_t)k, &pl, &why) != 0)
						fake_answer(f, fd, fld[1], "?", "");
					else
						fake_answer(f, fd, fld[1], pl.authcid, pl.passwd);
				} else if (strcmp(fld[2], "LOGIN") == 0 && nlogins < 16) {
					char out[64];
					snprintf(logins[nlogins].id, sizeof(logins[0].id), "%s", fld[1]);
					logins[nlogins++].step = 1;
					snprintf(out, sizeof(out), "CONT\t%s\t%s\n", fld[1], sasl_login_user_challenge);
					fake_send(fd, out);
				}
			} else if (strcmp(fld[0], "CONT") == 0 && nf >= 3) {
				for (size_t k = 0; k < nlogins; k++) {
					struct fake_login *l = &logins[k];
					if (strcmp(l->id, fld[1]) != 0)
						continue;
					if (l->step == 10) {
						unsigned char msg[600];
						struct sasl_plain pl;
						const char *why;
						ssize_t m = sasl_base64_decode(fld[2], strlen(fld[2]), msg, sizeof(msg));
						if (m < 0 || sasl_plain_split(msg, (size_t)m, &pl, &why) != 0)
							fake_answer(f, fd, fld[1], "?", "");
						else
							fake_answer(f, fd, fld[1], pl.authcid, pl.passwd);
						l->id[0] = '\0';
					} else if (l->step == 1) {
						char out[64];
						sasl_login_decode(fld[2], strlen(fld[2]), l->user, sizeof(l->user));
						l->step = 2;
						snprintf(out, sizeof(out), "CONT\t%s\t%s\n", fld[1], sasl_login_pass_challenge);
						fake_send(fd, out);
					} else {
						char pass[256];
						sasl_login_decode(fld[2], strlen(fld[2]), pass, sizeof(pass));
						fake_answer(f, fd, fld[1], l->user, pass);
						l->id[0] = '\0';
					}
					break;
				}
			}
		}
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	while (!f->stop) {
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (f->stop) {
			close(fd);
			break;
		}
		f->conns++;
		fake_serve(f, fd);
		close(fd);
	}
	return NULL;
}

static void fake_start(struct fake *f, bool inet)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	if (inet) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);
		f->lfd = socket(AF_INET, SOCK_STREAM, 0);
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
		f->port = ntohs(sa.sin_port);
	} else {
		struct sockaddr_un su = { .sun_family = AF_UNIX };
		snprintf(f->path, sizeof(f->path), "/tmp/test_sasl_dovecot.%d.sock", (int)getpid());
		unlink(f->path);
		snprintf(su.sun_path, sizeof(su.sun_path), "%s", f->path);
		f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_int_equal(bind(f->lfd, (struct sockaddr *)&su, sizeof(su)), 0);
	}
	assert_int_equal(listen(f->lfd, 8), 0);
	pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	f->stop = 1;
	shutdown(f->lfd, SHUT_RDWR);
	/* wake accept() */
	if (f->path[0]) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un su = { .sun_family = AF_UNIX };
		snprintf(su.sun_path, sizeof(su.sun_path), "%s", f->path);
		connect(fd, (struct sockaddr *)&su, sizeof(su));
		close(fd);
	}
	pthread_join(f->th, NULL);
	close(f->lfd);
	if (f->path[0])
		unlink(f->path);
}

/* ---- the client ------------------------------------------------------------------------- */

struct outcome {
	int calls;
	enum sasl_dovecot_status status;
	char user[256], reason[256], challenge[256];
	struct sasl_dovecot_req *q;
	const char *answers[3];     /* for challenges, in order */
	int nanswered;
};

static void outcome_cb(void *arg, const struct sasl_dovecot_result *res)
{
	struct outcome *o = arg;

	o->calls++;
	o->status = res->status;
	snprintf(o->user, sizeof(o->user), "%s", res->user ? res->user : "");
	snprintf(o->reason, sizeof(o->reason), "%s", res->reason ? res->reason : "");
	if (res->status == SASL_DOVECOT_CONTINUE) {
		snprintf(o->challenge, sizeof(o->challenge), "%s", res->challenge);
		if (o->answers[o->nanswered] != NULL)
			assert_int_equal(sasl_dovecot_continue(o->q, o->answers[o->nanswered++]), 0);
	}
}

struct fix {
	uv_loop_t loop;
	struct fake fake;
	struct sasl_dovecot *d;
	char addr[160];
};

static void guard_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until o has a final status (or 5 s pass: then the test fails). */
static void wait_final(struct fix *x, struct outcome *o)
{
	uv_timer_t guard;
	int fired = 0;

	uv_timer_init(&x->loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, guard_cb, 5000, 0);
	while ((o->calls == 0 || o->status == SASL_DOVECOT_CONTINUE) && !fired)
		uv_run(&x->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&x->loop, UV_RUN_NOWAIT);
	assert_false(fired);
}

static void sleep_loop(struct fix *x, uint64_t ms)
{
	uv_timer_t t;
	int fired = 0;

	uv_timer_init(&x->loop, &t);
	t.data = &fired;
	uv_timer_start(&t, guard_cb, ms, 0);
	while (!fired)
		uv_run(&x->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&x->loop, UV_RUN_NOWAIT);
}

static int setup_with(void **state, bool inet, int mode, uint64_t timeout)
{
	struct fix *x = calloc(1, sizeof(*x));

	uv_loop_init(&x->loop);
	fake_start(&x->fake, inet);
	x->fake.mode = mode;
	if (inet)
		snprintf(x->addr, sizeof(x->addr), "inet:127.0.0.1:%d", x->fake.port);
	else
		snprintf(x->addr, sizeof(x->addr), "unix:%s", x->fake.path);
	x->d = sasl_dovecot_new(&x->loop, x->addr, timeout);
	assert_non_null(x->d);
	*state = x;
	return 0;
}

static int setup_unix(void **state) { return setup_with(state, false, FAKE_NORMAL, 2000); }
static int setup_inet(void **state) { return setup_with(state, true, FAKE_NORMAL, 2000); }
static int setup_short(void **state) { return setup_with(state, false, FAKE_NORMAL, 300); }

static int teardown(void **state)
{
	struct fix *x = *state;

	sasl_dovecot_free(x->d);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	fake_stop(&x->fake);
	free(x);
	return 0;
}

static const char *plain_b64(const char *user, const char *pass, char *out, size_t cap)
{
	unsigned char msg[600];
	size_t n = 0;

	msg[n++] = 0;
	memcpy(msg + n, user, strlen(user));
	n += strlen(user);
	msg[n++] = 0;
	memcpy(msg + n, pass, strlen(pass));
	n += strlen(pass);
	sasl_base64_encode(msg, n, out, cap);
	return out;
}

static void test_plain_outcomes(void **state)
{
	struct fix *x = *state;
	struct sasl_dovecot_info info = { "smtp", "192.0.2.25", "198.51.100.7", 587, 40000, true };
	char b64[400];
	static const struct { const char *label, *user, *pass; enum sasl_dovecot_status want; const char *reason; } rows[] = {
		{ "good password", "alice", "secret", SASL_DOVECOT_OK, "" },
		{ "wrong password", "alice", "guess", SASL_DOVECOT_FAIL, "Password mismatch" },
		{ "Dovecot's temporary failure", "temp", "x", SASL_DOVECOT_TEMPFAIL, "db down" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct outcome o = { 0 };
		o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, &info, plain_b64(rows[i].user, rows[i].pass, b64, sizeof(b64)),
		    outcome_cb, &o);
		assert_non_null(o.q);
		wait_final(x, &o);
		if (o.calls != 1 || o.status != rows[i].want || strcmp(o.reason, rows[i].reason) != 0)
			fail_msg("%s: calls %d status %d reason %s", rows[i].label, o.calls, o.status, o.reason);
		if (o.status == SASL_DOVECOT_OK)
			assert_string_equal(o.user, "alice");
	}
	/* what Dovecot was told */
	pthread_mutex_lock(&x->fake.mu);
	assert_non_null(strstr(x->fake.last_auth, "\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.25\trip=198.51.100.7\tlport=587\trport=40000\tsecured\tresp="));
	pthread_mutex_unlock(&x->fake.mu);
	assert_int_equal(x->fake.conns, 1);     /* one connection for all of them */
	assert_int_equal(sasl_dovecot_pending(x->d), 0);
}

static void test_challenges(void **state)
{
	struct fix *x = *state;
	char b64[400], u[64], p[64];
	struct outcome o = { 0 };

	/* LOGIN: Username:, Password:, then the verdict */
	sasl_base64_encode((const unsigned char *)"bob", 3, u, sizeof(u));
	sasl_base64_encode((const unsigned char *)"secret", 6, p, sizeof(p));
	o.answers[0] = u;
	o.answers[1] = p;
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_LOGIN, NULL, NULL, outcome_cb, &o);
	assert_non_null(o.q);
	wait_final(x, &o);
	assert_int_equal(o.calls, 3);
	assert_int_equal(o.status, SASL_DOVECOT_OK);
	assert_string_equal(o.user, "bob");

	/* PLAIN without an initial response: an empty challenge first */
	memset(&o, 0, sizeof(o));
	o.answers[0] = plain_b64("carol", "secret", b64, sizeof(b64));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, NULL, outcome_cb, &o);
	wait_final(x, &o);
	assert_int_equal(o.calls, 2);
	assert_string_equal(o.challenge, "");
	assert_int_equal(o.status, SASL_DOVECOT_OK);

	/* "=": an empty initial response goes as resp= */
	memset(&o, 0, sizeof(o));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, "=", outcome_cb, &o);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_FAIL);
	pthread_mutex_lock(&x->fake.mu);
	size_t n = strlen(x->fake.last_auth);
	assert_true(n > 5 && strcmp(x->fake.last_auth + n - 5, "resp=") == 0);
	pthread_mutex_unlock(&x->fake.mu);

	/* continue() when no challenge is pending is refused */
	memset(&o, 0, sizeof(o));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("alice", "secret", b64, sizeof(b64)), outcome_cb, &o);
	assert_int_equal(sasl_dovecot_continue(o.q, "YWJj"), -1);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_OK);
}

static void test_many_on_one_connection(void **state)
{
	struct fix *x = *state;
	char b64[8][400];
	struct outcome o[8];

	memset(o, 0, sizeof(o));
	for (int i = 0; i < 8; i++) {
		char user[16];
		snprintf(user, sizeof(user), "user%d", i);
		o[i].q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL,
		    plain_b64(user, i % 2 ? "secret" : "wrong", b64[i], sizeof(b64[i])), outcome_cb, &o[i]);
		assert_non_null(o[i].q);
	}
	assert_int_equal(sasl_dovecot_pending(x->d), 8);
	for (int i = 0; i < 8; i++) {
		char user[16];
		snprintf(user, sizeof(user), "user%d", i);
		wait_final(x, &o[i]);
		assert_int_equal(o[i].status, i % 2 ? SASL_DOVECOT_OK : SASL_DOVECOT_FAIL);
		assert_string_equal(o[i].user, user);   /* each reply reached its own request */
	}
	assert_int_equal(x->fake.conns, 1);
}

static void test_timeout_and_cancel(void **state)
{
	struct fix *x = *state;
	char b64[400];
	struct outcome o = { 0 }, c = { 0 };

	/* no answer: TEMPFAIL at the timeout; the connection stays for the next request */
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("stall", "x", b64, sizeof(b64)), outcome_cb, &o);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_TEMPFAIL);
	assert_string_equal(o.reason, "timeout");
	/* cancelled: the callback never runs, even when the answer comes */
	c.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("alice", "secret", b64, sizeof(b64)), outcome_cb, &c);
	sasl_dovecot_cancel(c.q);
	memset(&o, 0, sizeof(o));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("alice", "secret", b64, sizeof(b64)), outcome_cb, &o);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_OK);
	assert_int_equal(c.calls, 0);
	assert_int_equal(x->fake.conns, 1);
	/* freed with requests in flight: no callback (teardown frees) */
	memset(&c, 0, sizeof(c));
	c.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("stall", "x", b64, sizeof(b64)), outcome_cb, &c);
	sasl_dovecot_cancel(NULL);
	uv_run(&x->loop, UV_RUN_NOWAIT);
	assert_int_equal(c.calls, 0);
}

/* Runs the loop until o has had n callbacks (5 s bound: then the test fails). */
static void wait_calls(struct fix *x, struct outcome *o, int n)
{
	uv_timer_t guard;
	int fired = 0;

	uv_timer_init(&x->loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, guard_cb, 5000, 0);
	while (o->calls < n && !fired)
		uv_run(&x->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&x->loop, UV_RUN_NOWAIT);
	assert_false(fired);
}

/* The time a challenge waits for the client (a person typing, the session's own command
 * timeout) is not the service's: twice the timeout later the request still waits, and
 * each answer gives the service a fresh timeout. */
static void test_client_time_not_counted(void **state)
{
	struct fix *x = *state;
	char u[64], p[64];
	struct outcome o = { 0 };

	sasl_base64_encode((const unsigned char *)"bob", 3, u, sizeof(u));
	sasl_base64_encode((const unsigned char *)"secret", 6, p, sizeof(p));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_LOGIN, NULL, NULL, outcome_cb, &o);
	assert_non_null(o.q);
	wait_calls(x, &o, 1);
	assert_int_equal(o.status, SASL_DOVECOT_CONTINUE);
	sleep_loop(x, 600);                       /* timeout 300 ms (setup_short) */
	assert_int_equal(o.calls, 1);
	assert_int_equal(sasl_dovecot_continue(o.q, u), 0);
	wait_calls(x, &o, 2);
	assert_int_equal(o.status, SASL_DOVECOT_CONTINUE);
	sleep_loop(x, 600);
	assert_int_equal(o.calls, 2);
	assert_int_equal(sasl_dovecot_continue(o.q, p), 0);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_OK);
	assert_string_equal(o.user, "bob");
}

static void test_lost_connection(void **state)
{
	struct fix *x = *state;
	char b64[400];
	struct outcome o = { 0 }, other = { 0 };

	/* two in flight; the server drops the connection: both TEMPFAIL */
	other.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("stall", "x", b64, sizeof(b64)), outcome_cb, &other);
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("close", "x", b64, sizeof(b64)), outcome_cb, &o);
	wait_final(x, &o);
	wait_final(x, &other);
	assert_int_equal(o.status, SASL_DOVECOT_TEMPFAIL);
	assert_int_equal(other.status, SASL_DOVECOT_TEMPFAIL);
	/* right after, a request fails at once (no hammering a broken service) ... */
	memset(&o, 0, sizeof(o));
	assert_null(sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("alice", "secret", b64, sizeof(b64)), outcome_cb, &o));
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, SASL_DOVECOT_TEMPFAIL);
	/* ... and a moment later the client reconnects */
	sleep_loop(x, 1100);
	memset(&o, 0, sizeof(o));
	o.q = sasl_dovecot_auth(x->d, SASL_MECH_PLAIN, NULL, plain_b64("alice", "secret", b64, sizeof(b64)), outcome_cb, &o);
	wait_final(x, &o);
	assert_int_equal(o.status, SASL_DOVECOT_OK);
	assert_int_equal(x->fake.conns, 2);
}

static void test_bad_servers(void **state)
{
	struct fix *x = *state;
	char b64[400];
	static const struct { const char *label; int mode; enum sasl_mech mech; } rows[] = {
		{ "major version 2", FAKE_BAD_VERSION, SASL_MECH_PLAIN },
		{ "no DONE (handshake timeout)", FAKE_NO_DONE, SASL_MECH_PLAIN },
		{ "a reply inside the handshake", FAKE_EARLY_REPLY, SASL_MECH_PLAIN },
		{ "mechanism not offered", FAKE_PLAIN_ONLY, SASL_MECH_LOGIN },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct outcome o = { 0 };
		x->fake.mode = rows[i].mode;
		sleep_loop(x, 1100);            /* past the retry pause of the previous row */
		o.q = sasl_dovecot_auth(x->d, rows[i].mech, NULL,
		    rows[i].mech == SASL_MECH_PLAIN ? plain_b64("alice", "secret", b64, sizeof(b64)) : NULL, outcome_cb, &o);
		wait_final(x, &o);
		if (o.calls != 1 || o.status != SASL_DOVECOT_TEMPFAIL)
			fail_msg("%s: calls %d status %d", rows[i].label, o.calls, o.status);
	}
}

static void test_service_down(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct outcome o = { 0 };
	char b64[400];

	uv_loop_init(&loop);
	struct sasl_dovecot *d = sasl_dovecot_new(&loop, "unix:/nonexistent/auth-client", 1000);
	assert_non_null(d);
	o.q = sasl_dovecot_auth(d, SASL_MECH_PLAIN, NULL, plain_b64("a", "b", b64, sizeof(b64)), outcome_cb, &o);
	while (o.calls == 0)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(o.status, SASL_DOVECOT_TEMPFAIL);
	/* a bad request never reaches the wire */
	memset(&o, 0, sizeof(o));
	assert_null(sasl_dovecot_auth(d, SASL_MECH_PLAIN, NULL, "bad\tinput", outcome_cb, &o));
	assert_int_equal(o.status, SASL_DOVECOT_TEMPFAIL);
	sasl_dovecot_free(d);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_null(sasl_dovecot_new(&loop, "tcp:1.2.3.4:5", 1000));
	sasl_dovecot_free(NULL);
}

/* ---- probe mode for the integration test ------------------------------------------------ */

static int probe(int argc, char **argv)
{
	uv_loop_t loop;
	struct outcome o = { 0 };
	char b64[1200], u[400], p[400];
	enum sasl_mech mech;
	struct sasl_dovecot_info info = { "smtp", "192.0.2.25", "198.51.100.7", 587, 40000, false };

	if (argc < 6)
		return 3;
	mech = strcmp(argv[3], "LOGIN") == 0 ? SASL_MECH_LOGIN : SASL_MECH_PLAIN;
	for (int i = 6; i < argc; i++) {
		if (strcmp(argv[i], "secured") == 0)
			info.secured = true;
		else if (strncmp(argv[i], "rip=", 4) == 0)
			info.remote_ip = argv[i] + 4;
	}
	uv_loop_init(&loop);
	struct sasl_dovecot *d = sasl_dovecot_new(&loop, argv[2], 5000);
	if (d == NULL)
		return 3;
	if (mech == SASL_MECH_LOGIN) {
		sasl_base64_encode((const unsigned char *)argv[4], strlen(argv[4]), u, sizeof(u));
		sasl_base64_encode((const unsigned char *)argv[5], strlen(argv[5]), p, sizeof(p));
		o.answers[0] = u;
		o.answers[1] = p;
		o.q = sasl_dovecot_auth(d, mech, &info, NULL, outcome_cb, &o);
	} else {
		o.q = sasl_dovecot_auth(d, mech, &info, plain_b64(argv[4], argv[5], b64, sizeof(b64)), outcome_cb, &o);
	}
	while (o.calls == 0 || o.status == SASL_DOVECOT_CONTINUE)
		uv_run(&loop, UV_RUN_ONCE);
	printf("%s user=%s reason=%s\n", o.status == SASL_DOVECOT_OK ? "OK" : o.status == SASL_DOVECOT_FAIL ? "FAIL" : "TEMPFAIL",
	    o.user, o.reason);
	sasl_dovecot_free(d);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return o.status == SASL_DOVECOT_OK ? 0 : o.status == SASL_DOVECOT_FAIL ? 1 : 2;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);   /* as the daemon: a closed peer is an error code, not a death */
	if (argc > 1 && strcmp(argv[1], "--probe") == 0)
		return probe(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser),
		cmocka_unit_test(test_addr),
		cmocka_unit_test_setup_teardown(test_plain_outcomes, setup_unix, teardown),
		cmocka_unit_test_setup_teardown(test_plain_outcomes, setup_inet, teardown),
		cmocka_unit_test_setup_teardown(test_challenges, setup_unix, teardown),
		cmocka_unit_test_setup_teardown(test_many_on_one_connection, setup_inet, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_and_cancel, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_client_time_not_counted, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_lost_connection, setup_unix, teardown),
		cmocka_unit_test_setup_teardown(test_bad_servers, setup_short, teardown),
		cmocka_unit_test(test_service_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
