/* test_auth.c — SMTP AUTH's session side (proxy/auth.c) and its guard (proxy/auth_guard.c)
 * without a daemon: the AUTH checks over labelled rows (listener x TLS x session x line ->
 * decision and reply), where EHLO offers AUTH and where MAIL needs it, the `auth:` config
 * errors, the guard's doubling delay, its keys and its counts in the local table. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/auth.h"
#include "proxy/auth_guard.h"
#include "proxy/config.h"
#include "proxy/session_int.h"
#include "proxy/worker.h"

enum {
	A_SUB = 1 << 0,         /* listen[].submission */
	A_AUTH = 1 << 1,        /* listen[].auth */
	A_TLS = 1 << 2,         /* TLS is on */
	A_HELO = 1 << 3,
	A_MAIL = 1 << 4,        /* in a transaction */
	A_DONE = 1 << 5,        /* authenticated */
	A_PLAIN_OK = 1 << 6,    /* auth.allow_plaintext */
	A_NO_DOVECOT = 1 << 7,  /* no auth section */
};

struct row {
	const char *label;
	unsigned set;
	const char *line;
	enum session_check want;
	const char *reply;
};

#define NOT_ENABLED "503 5.5.1 Error: authentication not enabled"
#define NEED_TLS "538 5.7.11 Encryption required for requested authentication mechanism"
#define NEED_AUTH "530 5.7.0 Authentication required"

static const struct row rows[] = {
	{ "port 25: no AUTH", A_HELO | A_TLS, "AUTH PLAIN AGFAAGI=", SESSION_CHECK_ERROR, NOT_ENABLED },
	{ "submission without auth.dovecot", A_SUB | A_HELO | A_TLS | A_NO_DOVECOT, "AUTH PLAIN AGFAAGI=",
	  SESSION_CHECK_ERROR, NOT_ENABLED },
	{ "submission before TLS", A_SUB | A_HELO, "AUTH PLAIN AGFAAGI=", SESSION_CHECK_ERROR, NEED_TLS },
	{ "submission before TLS, plaintext allowed", A_SUB | A_HELO | A_PLAIN_OK, "AUTH PLAIN AGFAAGI=",
	  SESSION_CHECK_OK, "" },
	{ "submission over TLS, initial response", A_SUB | A_HELO | A_TLS, "AUTH PLAIN AGFAAGI=", SESSION_CHECK_OK, "" },
	{ "submission over TLS, empty initial response", A_SUB | A_HELO | A_TLS, "AUTH PLAIN =", SESSION_CHECK_OK, "" },
	{ "LOGIN without initial response", A_SUB | A_HELO | A_TLS, "AUTH LOGIN", SESSION_CHECK_OK, "" },
	{ "mechanism in lower case", A_SUB | A_HELO | A_TLS, "AUTH login", SESSION_CHECK_OK, "" },
	{ "auth: true listener over TLS", A_AUTH | A_HELO | A_TLS, "AUTH LOGIN", SESSION_CHECK_OK, "" },
	{ "before EHLO", A_SUB | A_TLS, "AUTH LOGIN", SESSION_CHECK_ERROR, "503 5.5.1 Error: send HELO/EHLO first" },
	{ "a second AUTH", A_SUB | A_HELO | A_TLS | A_DONE, "AUTH LOGIN", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: already authenticated" },
	{ "inside a transaction", A_AUTH | A_HELO | A_TLS | A_MAIL, "AUTH LOGIN", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: MAIL transaction in progress" },
	{ "unknown mechanism", A_SUB | A_HELO | A_TLS, "AUTH CRAM-MD5", SESSION_CHECK_ERROR,
	  "504 5.5.4 Unrecognized authentication type" },
	{ "initial response not base64", A_SUB | A_HELO | A_TLS, "AUTH PLAIN !!!!", SESSION_CHECK_ERROR,
	  "501 5.5.2 Cannot decode the initial response" },
	{ "extra words", A_SUB | A_HELO | A_TLS, "AUTH PLAIN AGFAAGI= more", SESSION_CHECK_ERROR, "" },
	{ "MAIL before AUTH on submission", A_SUB | A_HELO | A_TLS, "MAIL FROM:<a@b.example>", SESSION_CHECK_ERROR,
	  NEED_AUTH },
	{ "MAIL before AUTH and TLS on submission", A_SUB | A_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_ERROR,
	  NEED_AUTH },
	{ "MAIL after AUTH on submission", A_SUB | A_HELO | A_TLS | A_DONE, "MAIL FROM:<a@b.example>",
	  SESSION_CHECK_OK, "" },
	{ "MAIL without AUTH on an auth: true listener", A_AUTH | A_HELO | A_TLS, "MAIL FROM:<a@b.example>",
	  SESSION_CHECK_OK, "" },
	{ "MAIL without AUTH on port 25", A_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_OK, "" },
	/* RFC 4954 5: MAIL's AUTH= where AUTH is offered (xtext), unsupported elsewhere */
	{ "MAIL AUTH=<> after AUTH", A_SUB | A_HELO | A_TLS | A_DONE, "MAIL FROM:<a@b.example> AUTH=<>",
	  SESSION_CHECK_OK, "" },
	{ "MAIL AUTH=xtext mailbox", A_SUB | A_HELO | A_TLS | A_DONE, "MAIL FROM:<a@b.example> AUTH=a+2Bb@b.example",
	  SESSION_CHECK_OK, "" },
	{ "MAIL AUTH=<> without AUTH on an auth: true listener", A_AUTH | A_HELO | A_TLS,
	  "MAIL FROM:<a@b.example> AUTH=<>", SESSION_CHECK_OK, "" },
	{ "MAIL AUTH= bad hexchar", A_SUB | A_HELO | A_TLS | A_DONE, "MAIL FROM:<a@b.example> AUTH=a+zz",
	  SESSION_CHECK_ERROR, "501 5.5.4 Syntax: AUTH=<mailbox> or AUTH=<> (xtext)" },
	{ "MAIL AUTH= truncated hexchar", A_SUB | A_HELO | A_TLS | A_DONE, "MAIL FROM:<a@b.example> AUTH=a+2",
	  SESSION_CHECK_ERROR, "501 5.5.4 Syntax: AUTH=<mailbox> or AUTH=<> (xtext)" },
	{ "MAIL AUTH=<> on port 25", A_HELO, "MAIL FROM:<a@b.example> AUTH=<>", SESSION_CHECK_ERROR,
	  "555 5.5.4 Unsupported option: AUTH" },
};

struct fixture {
	struct mx_config *cfg, *cfg_plain, *cfg_none;
	struct listen_config lc;
	struct shared_gen sg;
	struct worker_gen wg;
	struct worker *w;
	struct session s;
	int tls_stand_in;
};

static struct mx_config *load(const char *extra)
{
	char text[1024];
	struct mx_config *cfg = NULL;

	snprintf(text, sizeof text,
	    "hostname: mx.test\n"
	    "listen: [\"127.0.0.1:2525\"]\n"
	    "backends: { servers: [{address: \"smtp://127.0.0.1:2526\"}] }\n%s", extra);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, stderr), 0);
	return cfg;
}

static int fixture_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	assert_non_null(fx);
	fx->cfg = load("auth: { dovecot: \"unix:/nonexistent/auth-client\" }\n");
	fx->cfg_plain = load("auth: { dovecot: \"inet:127.0.0.1:1\", allow_plaintext: true }\n");
	fx->cfg_none = load("");
	fx->w = calloc(1, sizeof *fx->w);
	assert_non_null(fx->w);
	*state = fx;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *fx = *state;

	strbuf_free(&fx->s.out);
	config_free(fx->cfg);
	config_free(fx->cfg_plain);
	config_free(fx->cfg_none);
	free(fx->w);
	free(fx);
	return 0;
}

static struct session *fixture_session(struct fixture *fx, unsigned set)
{
	struct session *s = &fx->s;
	struct mx_config *cfg = set & A_NO_DOVECOT ? fx->cfg_none : set & A_PLAIN_OK ? fx->cfg_plain : fx->cfg;
	static char from[] = "a@b.example", no_params[] = "";

	strbuf_free(&s->out);
	memset(s, 0, sizeof *s);
	memset(&fx->lc, 0, sizeof fx->lc);
	memset(&fx->sg, 0, sizeof fx->sg);
	fx->sg.cfg = cfg;
	fx->wg.shared = &fx->sg;
	s->w = fx->w;
	s->cfg = cfg;
	s->lc = &fx->lc;
	s->wg = &fx->wg;
	s->state = SESSION_COMMAND;
	snprintf(s->id, sizeof s->id, "t00001");
	s->env.session_id = s->id;
	s->env.cfg = cfg;
	fx->lc.submission = (set & A_SUB) != 0;
	fx->lc.auth = (set & A_AUTH) != 0;
	fx->lc.tls = LISTEN_TLS_STARTTLS;
	if (set & A_TLS)
		s->tls = (struct tlsconn *)(void *)&fx->tls_stand_in;
	if (set & A_HELO)
		snprintf(s->env.helo, sizeof s->env.helo, "client.example");
	if (set & A_MAIL) {
		s->env.mail_from = from;
		s->env.mail_params = no_params;
	}
	if (set & A_DONE) {
		s->env.auth_user = "alice";
		s->env.auth_mech = "PLAIN";
	}
	return s;
}

/* ------------------------------------------------------------ the checks */

static void test_check_rows(void **state)
{
	struct fixture *fx = *state;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct row *r = &rows[i];
		struct session *s = fixture_session(fx, r->set);
		struct smtp_cmd cmd;
		const char *err = NULL;
		char reply[1024];

		print_message("row: %s\n", r->label);
		if (smtp_cmd_parse(r->line, strlen(r->line), &cmd, &err) != 0)
			fail_msg("row \"%s\": the line does not parse: %s", r->label, err);
		enum session_check got = session_cmd_check(s, &cmd, reply, sizeof reply);
		if (got != r->want)
			fail_msg("row \"%s\": %d, want %d (reply \"%s\")", r->label, got, r->want, reply);
		if (r->reply[0] || got == SESSION_CHECK_OK)
			assert_string_equal(reply, r->reply);
		else
			assert_true(strncmp(reply, "50", 2) == 0);   /* a syntax refusal: 501/504 */
		assert_int_equal(s->out.len, 0);
	}
}

/* Where EHLO offers AUTH: a submission or auth listener, over TLS (or allow_plaintext),
 * not after a successful AUTH; never without auth.dovecot. */
static void test_offered(void **state)
{
	static const struct { const char *label; unsigned set; bool want; } offer[] = {
		{ "port 25", A_TLS, false },
		{ "submission before TLS", A_SUB, false },
		{ "submission over TLS", A_SUB | A_TLS, true },
		{ "submission, plaintext allowed", A_SUB | A_PLAIN_OK, true },
		{ "auth listener over TLS", A_AUTH | A_TLS, true },
		{ "authenticated", A_SUB | A_TLS | A_DONE, false },
		{ "no auth section", A_SUB | A_TLS | A_NO_DOVECOT, false },
	};
	struct fixture *fx = *state;

	for (size_t i = 0; i < sizeof offer / sizeof offer[0]; i++) {
		print_message("offer: %s\n", offer[i].label);
		assert_int_equal(auth_is_offered(fixture_session(fx, offer[i].set)), offer[i].want);
	}
	assert_true(auth_is_required(fixture_session(fx, A_SUB)));
	assert_false(auth_is_required(fixture_session(fx, A_SUB | A_DONE)));
	assert_false(auth_is_required(fixture_session(fx, A_AUTH)));
}

/* EHLO's reply names AUTH PLAIN LOGIN where it is offered. */
static void test_ehlo_line(void **state)
{
	static const struct verdict go_on = { .action = VERDICT_CONTINUE };
	struct fixture *fx = *state;
	struct session *s = fixture_session(fx, A_SUB | A_TLS);
	const struct session_cmd *c = session_cmd_find(SMTP_EHLO);

	s->cmd = c;
	c->apply(s, &go_on);
	assert_non_null(strstr(s->out.v, "\r\n250-AUTH PLAIN LOGIN\r\n"));
	s = fixture_session(fx, A_SUB);
	s->cmd = c;
	c->apply(s, &go_on);
	assert_null(strstr(s->out.v, "AUTH"));
}

/* ------------------------------------------------------------ config */

static void test_config_errors(void **state)
{
	static const struct { const char *label; const char *text; const char *want; } bad[] = {
		{ "submission without auth.dovecot",
		  "listen: [{address: \"127.0.0.1:2587\", submission: true}]\n", "listen[0].submission: AUTH needs auth.dovecot" },
		{ "auth listener without auth.dovecot",
		  "listen: [{address: \"127.0.0.1:2587\", auth: true}]\n", "listen[0].auth: AUTH needs auth.dovecot" },
		{ "a bad service address",
		  "listen: [\"127.0.0.1:2525\"]\nauth: { dovecot: \"tcp:127.0.0.1:1\" }\n", "auth.dovecot:" },
		{ "a delay cap below the first delay",
		  "listen: [\"127.0.0.1:2525\"]\nauth: { dovecot: \"unix:/x\", failure_delay: 5s, max_delay: 1s }\n",
		  "auth.max_delay: shorter than failure_delay" },
		{ "a store that is neither",
		  "listen: [\"127.0.0.1:2525\"]\nauth: { dovecot: \"unix:/x\", store: \"memcached://x\" }\n", "auth.store:" },
		{ "max_failures 0", "listen: [\"127.0.0.1:2525\"]\nauth: { dovecot: \"unix:/x\", max_failures: 0 }\n",
		  "auth.max_failures" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[1024], *out = NULL;
		size_t outlen = 0;
		struct mx_config *cfg = NULL;
		FILE *err = open_memstream(&out, &outlen);

		print_message("config: %s\n", bad[i].label);
		snprintf(text, sizeof text, "hostname: mx.test\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n%s",
		    bad[i].text);
		assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, err), -1);
		fclose(err);
		if (strstr(out, bad[i].want) == NULL)
			fail_msg("config \"%s\": want \"%s\" in:\n%s", bad[i].label, bad[i].want, out);
		assert_true(strncmp(out, "t.yaml:", 7) == 0);   /* FILE:LINE:COL */
		free(out);
	}
}

/* ------------------------------------------------------------ the guard */

static void test_guard_delay(void **state)
{
	struct auth_config c = { .failure_delay = 1000, .max_delay = 30000 };
	static const struct { uint64_t n, want; } d[] = {
		{ 0, 0 }, { 1, 1000 }, { 2, 2000 }, { 3, 4000 }, { 5, 16000 }, { 6, 30000 }, { 64, 30000 }, { 1000000, 30000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
		assert_int_equal(auth_guard_delay_ms(&c, d[i].n), d[i].want);
	c.failure_delay = 0;
	assert_int_equal(auth_guard_delay_ms(&c, 3), 0);
}

static void test_guard_key(void **state)
{
	char key[64], big[400];

	(void)state;
	assert_int_equal(auth_guard_key("user", "Alice@Example.ORG", key, sizeof key), 0);
	assert_string_equal(key, "mxgate:authfail:user:alice@example.org");
	assert_int_equal(auth_guard_key("ip", "192.0.2.1", key, sizeof key), 0);
	assert_string_equal(key, "mxgate:authfail:ip:192.0.2.1");
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(auth_guard_key("user", big, key, sizeof key), -1);   /* never a truncated key */
}

struct counts { int calls; uint64_t ip, user; };

static void counts_cb(void *arg, uint64_t ip, uint64_t user)
{
	struct counts *c = arg;

	c->calls++;
	c->ip = ip;
	c->user = user;
}

/* The local table: reads do not count, failures count per address and per user. */
static void test_guard_local(void **state)
{
	struct auth_config c = { .failure_window = 60000, .failure_delay = 10, .max_delay = 100 };
	struct auth_guard *g;
	struct counts n = { 0 };
	uv_loop_t loop;

	(void)state;
	uv_loop_init(&loop);
	g = auth_guard_new(&loop, &c, 64, 0);
	assert_non_null(g);
	assert_null(auth_guard_count(g, "192.0.2.77", NULL, 0, counts_cb, &n));
	assert_int_equal(n.calls, 1);
	assert_int_equal(n.ip, 0);
	assert_null(auth_guard_count(g, "192.0.2.77", "Mallory", 1, counts_cb, &n));
	assert_int_equal(n.ip, 1);
	assert_int_equal(n.user, 1);
	assert_null(auth_guard_count(g, "192.0.2.78", "mallory", 1, counts_cb, &n));
	assert_int_equal(n.ip, 1);       /* another address */
	assert_int_equal(n.user, 2);     /* the same user, any case */
	assert_null(auth_guard_count(g, "192.0.2.77", "", 0, counts_cb, &n));
	assert_int_equal(n.ip, 1);
	assert_int_equal(n.user, 0);     /* no user named: no user count */
	assert_int_equal(n.calls, 4);
	/* IPv6: one count per /64, as the rate limiter's network keys: an attacker holding a
	 * /64 does not get 2^64 fresh addresses */
	assert_null(auth_guard_count(g, "2001:db8:1:2::a", NULL, 1, counts_cb, &n));
	assert_int_equal(n.ip, 1);
	assert_null(auth_guard_count(g, "2001:db8:1:2:ffff::9", NULL, 1, counts_cb, &n));
	assert_int_equal(n.ip, 2);
	assert_null(auth_guard_count(g, "2001:db8:1:3::a", NULL, 1, counts_cb, &n));
	assert_int_equal(n.ip, 1);       /* the next /64 */
	auth_guard_free(g);
	/* limits.client_ipv6_prefix decides the network, as for every other client key: /48
	 * groups the two /64s above, 128 counts each address */
	g = auth_guard_new(&loop, &c, 48, 0);
	assert_null(auth_guard_count(g, "2001:db8:7:2::a", NULL, 1, counts_cb, &n));
	assert_null(auth_guard_count(g, "2001:db8:7:3::a", NULL, 1, counts_cb, &n));
	assert_int_equal(n.ip, 2);
	auth_guard_free(g);
	g = auth_guard_new(&loop, &c, 128, 0);
	assert_null(auth_guard_count(g, "2001:db8:8:2::a", NULL, 1, counts_cb, &n));
	assert_null(auth_guard_count(g, "2001:db8:8:2::b", NULL, 1, counts_cb, &n));
	assert_int_equal(n.ip, 1);
	auth_guard_free(g);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A client refused at connect (postscreen style: 550 at MAIL) that authenticates: the lift
 * takes the refusal off the session's outcome too, so the modules hear at close that the
 * session was not refused; STARTTLS (the user forgotten) puts both back; a reset at close
 * leaves the outcome as the client got it. */
static void connect_refusal(struct session *s)
{
	s->state = SESSION_REJECTED;
	s->conn_verdict.action = VERDICT_REJECT;
	snprintf(s->conn_verdict.reason, sizeof s->conn_verdict.reason, "dnsbl");
	session_note_refusal(s, 550, "dnsbl");
}

static void test_lift_outcome(void **state)
{
	struct session *s = fixture_session(*state, A_SUB | A_HELO | A_TLS);

	connect_refusal(s);
	assert_int_equal(s->refused_code, 550);
	auth_session_lift_refusal(s);
	assert_int_equal(s->conn_verdict.action, VERDICT_CONTINUE);
	assert_int_equal(s->refused_code, 0);            /* the close hook: not refused */
	assert_string_equal(s->refused_reason, "");

	/* STARTTLS after the lift: the user is forgotten, the refusal stands again */
	s->state = SESSION_COMMAND;
	auth_session_reset(s);
	assert_int_equal(s->conn_verdict.action, VERDICT_REJECT);
	assert_int_equal(s->refused_code, 550);
	assert_string_equal(s->refused_reason, "dnsbl");

	/* lifted again, then the session closes: the outcome stays "not refused" */
	auth_session_lift_refusal(s);
	s->state = SESSION_CLOSING;
	auth_session_reset(s);
	assert_int_equal(s->refused_code, 0);
	auth_session_free(s);
	assert_null(s->auth);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_rows),
		cmocka_unit_test(test_offered),
		cmocka_unit_test(test_ehlo_line),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_guard_delay),
		cmocka_unit_test(test_guard_key),
		cmocka_unit_test(test_guard_local),
		cmocka_unit_test(test_lift_outcome),
	};

	return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
