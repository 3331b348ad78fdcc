/* test_plugins.c — the pieces between the plugin chain and its peers: clamd and spamd reply
 * parsers, peer address parsing, and the plugin chain itself driven through the real hook
 * chain (chain.c) on a uv loop with the example plugin loaded by dlopen: header and body
 * hooks, end-of-message verdicts, an async hook, its timeout and on_error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/msgbuf.h"
#include "plugins/clamd.h"
#include "plugins/pconn.h"
#include "plugins/plugins.h"
#include "plugins/spamd.h"
#include "plugins/rspamd.h"

/* ------------------------------------------------------------------- clamd replies */

struct clamd_row { const char *label, *reply; int rc; const char *name; };

static const struct clamd_row clamd_rows[] = {
	{ "clean", "stream: OK", 0, NULL },
	{ "clean with NUL and newline", "stream: OK\n", 0, NULL },
	{ "found", "stream: Eicar-Test-Signature FOUND", 1, "Eicar-Test-Signature" },
	{ "found, session id prefix", "1: stream: Win.Test.EICAR_HDB-1 FOUND", 1, "Win.Test.EICAR_HDB-1" },
	{ "size limit", "INSTREAM size limit exceeded. ERROR", -1, NULL },
	{ "error", "stream: Can't allocate memory ERROR", -1, NULL },
	{ "found without a name", "stream:  FOUND", -1, NULL },
	{ "empty", "", -1, NULL },
	{ "garbage", "HTTP/1.0 400 Bad Request", -1, NULL },
	{ "name with control bytes", "stream: a\tb FOUND", 1, "a_b" },
};

static void test_clamd_replies(void **state)
{
	for (size_t i = 0; i < sizeof(clamd_rows) / sizeof(clamd_rows[0]); i++) {
		const struct clamd_row *r = &clamd_rows[i];
		char name[64] = "";
		int rc = clamd_reply_parse(r->reply, strlen(r->reply), name, sizeof(name));

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (r->name && strcmp(name, r->name) != 0)
			fail_msg("row \"%s\": name \"%s\", want \"%s\"", r->label, name, r->name);
	}
}

/* ------------------------------------------------------------------- spamd replies */

static void test_spamd_replies(void **state)
{
	struct spamd_result r;
	const char *ok = "SPAMD/1.1 0 EX_OK\r\nContent-length: 24\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,MISSING_DATE\r\n";
	const char *ham = "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n";
	const char *bad_status = "SPAMD/1.0 76 Bad header line: x\r\n\r\n";
	const char *no_spam = "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n";
	const char *garbage = "hello";
	const char *bad_score = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n";

	assert_int_equal(spamd_reply_parse(ok, strlen(ok), &r), 0);
	assert_true(r.spam);
	assert_true(r.score > 999.9 && r.threshold == 5.0);
	assert_int_equal(r.symbols_len, strlen("GTUBE,MISSING_DATE"));
	assert_memory_equal(r.symbols, "GTUBE,MISSING_DATE", r.symbols_len);
	assert_int_equal(spamd_reply_parse(ham, strlen(ham), &r), 0);
	assert_false(r.spam);
	assert_true(r.score < 0);
	assert_int_equal(r.symbols_len, 0);
	assert_int_equal(spamd_reply_parse(bad_status, strlen(bad_status), &r), -1);
	assert_int_equal(spamd_reply_parse(no_spam, strlen(no_spam), &r), -1);
	assert_int_equal(spamd_reply_parse(garbage, strlen(garbage), &r), -1);
	assert_int_equal(spamd_reply_parse(bad_score, strlen(bad_score), &r), -1);
}

/* ------------------------------------------------------------------- rspamd replies */

struct sym_acc { char names[256]; double sum; int n; };

static void sym_cb(void *arg, const char *name, double score)
{
	struct sym_acc *a = arg;

	strncat(a->names, name, sizeof(a->names) - strlen(a->names) - 2);
	strcat(a->names, ",");
	a->sum += score;
	a->n++;
}

struct json_row { const char *label, *json; int rc; double score; const char *action; int nsyms; };

static const struct json_row json_rows[] = {
	{ "ham", "{\"score\": 1.2, \"required_score\": 15, \"action\": \"no action\", \"symbols\": "
	  "{\"A\": {\"name\": \"A\", \"score\": 0.5, \"options\": [\"x\", 1, null]}, \"B\": {\"score\": 0.7}}}",
	  0, 1.2, "no action", 2 },
	{ "reject with message", "{\"is_skipped\":false,\"score\":15e0,\"action\":\"reject\",\"symbols\":{},"
	  "\"messages\":{\"smtp_message\":\"Gtube \\\"x\\\" \\u00e9\"}}", 0, 15, "reject", 0 },
	{ "nested unknowns skipped", "{\"milter\":{\"add_headers\":{\"X\":{\"value\":\"v\",\"order\":[0,[1,{}]]}}},"
	  "\"score\":-2,\"flag\":true,\"n\":null}", 0, -2, "", 0 },
	{ "no score", "{\"action\": \"reject\"}", -1, 0, NULL, 0 },
	{ "truncated", "{\"score\": 1.2, \"symbols\": {\"A\": {", -1, 0, NULL, 0 },
	{ "trailing garbage", "{\"score\": 1}x", -1, 0, NULL, 0 },
	{ "not an object", "[1,2]", -1, 0, NULL, 0 },
	{ "control char in string", "{\"score\": 1, \"action\": \"a\nb\"}", -1, 0, NULL, 0 },
	{ "deep nesting", "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"score\":1}",
	  -1, 0, NULL, 0 },
	{ "empty", "", -1, 0, NULL, 0 },
};

static void test_rspamd_json(void **state)
{
	for (size_t i = 0; i < sizeof(json_rows) / sizeof(json_rows[0]); i++) {
		const struct json_row *r = &json_rows[i];
		struct rspamd_result res;
		struct sym_acc acc = { "", 0, 0 };
		int rc = rspamd_json_parse(r->json, strlen(r->json), &res, sym_cb, &acc);

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (rc == 0 && (res.score != r->score || strcmp(res.action, r->action) != 0 || acc.n != r->nsyms))
			fail_msg("row \"%s\": score %g action \"%s\" symbols %d", r->label, res.score, res.action, acc.n);
	}
}

static void test_rspamd_http(void **state)
{
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
	const char *partial = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd";
	const char *noclen = "HTTP/1.0 200 OK\r\n\r\nxyz";
	const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd";
	const char *bad = "SMTP 220 hello\r\n\r\n";
	const char *body;
	size_t blen;
	int status;

	assert_int_equal(rspamd_http_parse(ok, strlen(ok), false, &status, &body, &blen), 0);
	assert_int_equal(status, 200);
	assert_int_equal(blen, 4);
	assert_memory_equal(body, "abcd", 4);
	assert_int_equal(rspamd_http_parse(partial, strlen(partial), false, &status, &body, &blen), 1);
	assert_int_equal(rspamd_http_parse(partial, strlen(partial), true, &status, &body, &blen), -1);
	assert_int_equal(rspamd_http_parse(noclen, strlen(noclen), false, &status, &body, &blen), 1);
	assert_int_equal(rspamd_http_parse(noclen, strlen(noclen), true, &status, &body, &blen), 0);
	assert_int_equal(blen, 3);
	assert_int_equal(rspamd_http_parse(chunked, strlen(chunked), true, &status, &body, &blen), -1);
	assert_int_equal(rspamd_http_parse(bad, strlen(bad), true, &status, &body, &blen), -1);
	assert_int_equal(rspamd_http_parse("HTTP/1.1 2", 10, false, &status, &body, &blen), 1);
}

/* ------------------------------------------------------------------- addresses */

struct addr_row { const char *label, *text; int rc; bool is_unix; int port; };

static const struct addr_row addr_rows[] = {
	{ "host:port", "127.0.0.1:3310", 0, false, 3310 },
	{ "inet:host:port", "inet:127.0.0.1:8891", 0, false, 8891 },
	{ "sendmail port@host", "inet:8891@127.0.0.1", 0, false, 8891 },
	{ "ipv6 brackets", "[::1]:783", 0, false, 783 },
	{ "inet6 sendmail", "inet6:783@::1", 0, false, 783 },
	{ "unix", "unix:/run/clamd.sock", 0, true, 0 },
	{ "local", "local:/run/milter.sock", 0, true, 0 },
	{ "bare path", "/run/x.sock", 0, true, 0 },
	{ "localhost", "localhost:25", 0, false, 25 },
	{ "no port", "127.0.0.1", -1, false, 0 },
	{ "port zero", "127.0.0.1:0", -1, false, 0 },
	{ "port too big", "127.0.0.1:70000", -1, false, 0 },
	{ "hostname", "clamd.example:3310", -1, false, 0 },
	{ "empty unix", "unix:", -1, false, 0 },
	{ "empty", "", -1, false, 0 },
};

static void test_addresses(void **state)
{
	for (size_t i = 0; i < sizeof(addr_rows) / sizeof(addr_rows[0]); i++) {
		const struct addr_row *r = &addr_rows[i];
		struct pconn_addr a;
		const char *why = NULL;
		int rc = pconn_addr_parse(r->text, &a, &why);

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (rc == 0 && a.is_unix != r->is_unix)
			fail_msg("row \"%s\": unix %d", r->label, a.is_unix);
		if (rc == 0 && !a.is_unix) {
			int port = ntohs(((struct sockaddr_in *)&a.sa)->sin_port);

			if (port != r->port)
				fail_msg("row \"%s\": port %d, want %d", r->label, port, r->port);
		}
	}
}

/* ------------------------------------------------------------------- the chain */

struct harness {
	uv_loop_t loop;
	uv_timer_t timer;
	struct mx_config *cfg;
	struct chain_modules mods;
	struct chain chain;
	struct hook_env env;
	bool done;
	struct verdict v;
	char path[256];
};

static int harness_setup(struct harness *h, const char *plugins_yaml)
{
	const char *build = getenv("MX_BUILD_DIR");
	char so[512];
	FILE *f;

	if (build == NULL)
		build = "build";
	snprintf(so, sizeof(so), "%s/example_plugin.so", build);
	if (access(so, R_OK) != 0)
		return -1;
	snprintf(h->path, sizeof(h->path), "/tmp/test_plugins_%d.yaml", (int)getpid());
	f = fopen(h->path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\nlisten:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\nplugins:\n");
	fprintf(f, plugins_yaml, so, so);
	fclose(f);
	assert_int_equal(config_load(h->path, &h->cfg, stderr), 0);
	uv_loop_init(&h->loop);
	uv_timer_init(&h->loop, &h->timer);
	chain_modules_init(&h->mods, h->cfg, &h->loop, 0);
	memset(&h->env, 0, sizeof(h->env));
	h->env.session_id = "t0001";
	h->env.loop = &h->loop;
	h->env.cfg = h->cfg;
	snprintf(h->env.client_ip, sizeof(h->env.client_ip), "192.0.2.1");
	h->env.mail_from = "a@example.org";
	h->env.mail_params = "";
	h->env.cur_rcpt = "b@example.test";
	h->env.cur_rcpt_params = "";
	chain_init(&h->chain, &h->mods, &h->env, &h->timer);
	h->timer.data = &h->chain;
	return 0;
}

static void harness_done_cb(void *arg, const struct verdict *v)
{
	struct harness *h = arg;

	h->done = true;
	h->v = *v;
}

static void harness_timer_cb(uv_timer_t *t)
{
	chain_on_timeout(t->data);
}

/* Runs one stage to completion on the loop. */
static void harness_run(struct harness *h, enum hook_stage st)
{
	h->done = false;
	memset(&h->v, 0, sizeof(h->v));
	(void)harness_timer_cb;
	chain_run(&h->chain, st, harness_done_cb, h);
	while (!h->done)
		uv_run(&h->loop, UV_RUN_ONCE);
}

static void harness_close_cb(uv_handle_t *hd)
{
}

static void harness_teardown(struct harness *h)
{
	harness_run(h, HOOK_CLOSE);
	chain_release(&h->chain);
	hook_env_free_outputs(&h->env);
	msgbuf_free(h->env.msg);
	chain_modules_free(&h->mods);
	uv_close((uv_handle_t *)&h->timer, harness_close_cb);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_loop_close(&h->loop);
	config_free(h->cfg);
	unlink(h->path);
}

static void harness_message(struct harness *h, const char *text)
{
	msgbuf_free(h->env.msg);
	h->env.msg = msgbuf_new(1 << 20, NULL);
	assert_int_equal(msgbuf_append(h->env.msg, text, strlen(text)), 0);
}

static void test_chain_example(void **state)
{
	struct harness h;
	const char *hdr;

	if (harness_setup(&h, "  - { name: ex, path: \"%s\", options: { word: MAGIC, rcpt_delay_ms: 20 } }\n") < 0)
		skip();
	harness_run(&h, HOOK_CONNECT);
	harness_run(&h, HOOK_MAIL);
	harness_run(&h, HOOK_RCPT);           /* completes from a uv timer */
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	harness_message(&h, "Subject: a\r\nX-B: folded\r\n continued\r\n\r\nhello\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	assert_int_equal(h.env.nhdr_edits, 1);
	hdr = h.env.hdr_edits[0].value;
	assert_string_equal(h.env.hdr_edits[0].name, "X-Example-Plugin");
	assert_non_null(strstr(hdr, "headers 2; body 7"));
	hook_env_reset_txn(&h.env);

	harness_run(&h, HOOK_MAIL);
	harness_message(&h, "Subject: b\r\n\r\nthe MAGIC word\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_REJECT);
	assert_int_equal(h.v.code, 550);
	assert_non_null(strstr(h.v.reply, "MAGIC"));
	assert_non_null(hook_env_find_symbol(&h.env, "EXAMPLE_MAGIC"));
	harness_teardown(&h);
}

static void test_chain_timeout(void **state)
{
	struct harness h;
	uint64_t start;

	if (harness_setup(&h, "  - { name: slow, path: \"%s\", timeout: 100ms, on_error: reject, "
	    "options: { rcpt_delay_ms: 5000 } }\n"
	    "  - { name: fast, path: \"%s\", on_error: tempfail }\n") < 0)
		skip();
	harness_run(&h, HOOK_CONNECT);
	start = uv_now(&h.loop);
	harness_run(&h, HOOK_RCPT);
	assert_int_equal(h.v.action, VERDICT_REJECT);
	assert_true(uv_now(&h.loop) - start < 2000);
	/* The cancelled call left nothing behind: the next stage runs normally. */
	harness_message(&h, "Subject: c\r\n\r\nbody\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	assert_int_equal(h.env.nhdr_edits, 2);   /* both instances added their header */
	harness_teardown(&h);
}

static void test_config_errors(void **state)
{
	struct mx_config *cfg = NULL;
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/test_plugins_bad_%d.yaml", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\nlisten:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\nplugins:\n"
	    "  - { name: nosuch, address: \"127.0.0.1:1\" }\n"
	    "  - { name: clamd, address: \"nowhere\" }\n"
	    "  - { name: clamd, address: \"127.0.0.1:3310\", action: explode }\n"
	    "  - { name: milter, address: \"inet:127.0.0.1:8891\", options: { max_frame: 5 } }\n"
	    "  - { name: x, path: \"/nonexistent.so\" }\n");
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), -1);
	assert_null(cfg);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clamd_replies),
		cmocka_unit_test(test_spamd_replies),
		cmocka_unit_test(test_rspamd_json),
		cmocka_unit_test(test_rspamd_http),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_chain_example),
		cmocka_unit_test(test_chain_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
