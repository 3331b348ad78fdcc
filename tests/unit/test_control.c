/* test_control.c — the control socket's verbs without a socket (control_dispatch over a
 * real pool), the drain set across a new pool, the JSON writer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/backend.h"
#include "proxy/config.h"
#include "proxy/control.h"
#include "proxy/jsonw.h"
#include "proxy/ops.h"
#include "proxy/worker.h"

static struct shared_gen gen;
static unsigned reload_result;
static const char *reload_errors;
static const char *reload_later;   /* keys that wait for the next start, on success */

static struct shared_gen *fake_current(void)
{
	return &gen;
}

/* ops_host.reload: answers at once (the daemon's answers later: test_control_reload_async.py) */
static void fake_reload(void (*done)(void *arg, unsigned gen, char *errors), void *arg)
{
	char *errors = NULL;

	if (reload_result == 0 && reload_errors)
		errors = strdup(reload_errors);
	if (reload_result != 0 && reload_later)
		errors = strdup(reload_later);
	done(arg, reload_result, errors);
}

static struct mx_config *make_config(const char *servers)
{
	char text[512];
	struct mx_config *cfg = NULL;

	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: %s }\n"
	    "dnsbl: { lists: [ { zone: bl.test } ] }\n", servers);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, stderr), 0);
	return cfg;
}

static struct pool *make_pool(const char *servers)
{
	struct mx_config *cfg = make_config(servers);
	const char *err = NULL;
	struct pool *p = pool_new(cfg, &err);

	assert_non_null(p);
	config_free(cfg);
	return p;
}

static uv_loop_t loop;

static int setup(void **state)
{
	static const struct ops_host host = { .current = fake_current, .reload = fake_reload };
	uv_loop_init(&loop);
	gen.id = 3;
	gen.cfg = make_config("[\"smtp://127.0.0.1:2526\"]");
	gen.pool = make_pool("[\"smtp://127.0.0.1:2526\", \"smtp://127.0.0.1:2527\", \"lmtp://127.0.0.1:2424\"]");
	ops_start(&loop, &host);
	return 0;
}

static int teardown(void **state)
{
	ops_stop();
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	ops_reset_drains();
	pool_free(gen.pool);
	config_free(gen.cfg);
	return 0;
}

/* Runs one request line; returns rc and leaves the payload in *out (caller frees). */
static int run(const char *line, struct strbuf *out)
{
	struct ctl_parser p;
	size_t used;
	char buf[256];
	int rc;

	snprintf(buf, sizeof(buf), "%s\n", line);
	ctl_parser_init(&p);
	assert_int_equal(ctl_parser_feed(&p, buf, strlen(buf), &used), CTL_REQUEST);
	memset(out, 0, sizeof(*out));
	rc = control_dispatch(&p.req, out);
	ctl_parser_reset(&p);
	if (out->v == NULL)
		strbuf_append(out, "", 0);
	return rc;
}

static void expect(const char *line, int rc, const char *needle)
{
	struct strbuf out;
	int got = run(line, &out);
	if (got != rc || strstr(out.v, needle) == NULL)
		fail_msg("\"%s\": rc %d (want %d), reply %s (want \"%s\")", line, got, rc, out.v, needle);
	strbuf_free(&out);
}

static void test_verbs_table(void **state)
{
	static const struct { const char *line; int rc; const char *needle; } rows[] = {
		{ "help", 0, "drain BACKEND" },
		{ "status", 0, "config generation 3" },
		{ "status --json", 0, "\"generation\":3" },
		{ "status --json", 0, "\"dnsbl_errors\":[{\"zone\":\"bl.test\",\"errors\":0}]" },
		{ "backends", 0, "smtp://127.0.0.1:2527" },
		{ "backends --json", 0, "\"url\":\"lmtp://127.0.0.1:2424\"" },
		{ "status now", -1, "usage: status" },
		{ "drain", -1, "usage: drain BACKEND" },
		{ "frobnicate", -1, "unknown command \"frobnicate\"" },
		{ "drain smtp://192.0.2.1:25", -1, "no such backend" },
		{ "enable smtp://192.0.2.1:25", -1, "no such backend" },
		{ "flush", -1, "usage: flush" },
		{ "flush reputation 192.0.2.1", -1, "no history is kept" },
		{ "flush reputation", -1, "usage: flush reputation IP" },
		{ "flush reputation 192.0.2.1 198.51.100.1", -1, "usage: flush reputation IP" },
		{ "flush reputation 192.0.2.300", -1, "is not an IP address" },
		{ "learn spam", -1, "not available" },
		{ "flush dns", 0, "flushed" },
		{ "flush passcache --json", 0, "\"flushed\":\"passcache\"" },
		{ "top clients", 0, "clients by refusals" },
		{ "top reasons --json", 0, "\"reasons\":[" },
		{ "top rules 3", 0, "rules by hits" },
		{ "top clients 65", -1, "N must be 1..64" },
		{ "top clients x", -1, "N must be" },
		{ "top everything", -1, "expected clients, reasons, rules, senders, recipients or domains" },
		{ "top senders", 0, "sender domains by RCPT refused" },
		{ "top recipients 2", 0, "recipients by spam found" },
		{ "top domains --json", 0, "\"rcpt_accepted\":[" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		expect(rows[i].line, rows[i].rc, rows[i].needle);
}

static void test_drain_enable(void **state)
{
	struct backend *a = &gen.pool->servers[0], *b = &gen.pool->servers[1];

	expect("drain 127.0.0.1:2526", 0, "smtp://127.0.0.1:2526: drained");
	assert_int_equal(atomic_load(&a->drained), 1);
	assert_string_equal(ops_backend_state(a), "drained");
	backend_active_add(a, 2);	/* connections in use, of any generation */
	assert_string_equal(ops_backend_state(a), "draining");
	backend_active_add(a, -2);
	expect("drain SMTP://127.0.0.1:2526", 0, "already drained");
	/* the pool never picks it, whatever the rotation */
	for (int i = 0; i < 20; i++) {
		struct backend *x = pool_pick_backend(gen.pool, NULL, "192.0.2.9", 0);
		assert_ptr_not_equal(x, a);
	}
	/* a new pool (reload) gets the drain by URL */
	struct pool *np = make_pool("[\"smtp://127.0.0.1:2527\", \"smtp://127.0.0.1:2526\"]");
	ops_apply_drains(np);
	assert_int_equal(atomic_load(&np->servers[1].drained), 1);
	assert_int_equal(atomic_load(&np->servers[0].drained), 0);
	assert_true(backend_is_drained(&np->servers[1]));
	/* every backend drained: nothing is picked (the client gets a 4xx) */
	expect("drain smtp://127.0.0.1:2527", 0, "drained");
	expect("drain lmtp://127.0.0.1:2424", 0, "drained");
	assert_null(pool_pick_backend(gen.pool, NULL, "192.0.2.9", 0));
	assert_false(ops_is_ready());
	expect("enable smtp://127.0.0.1:2527", 0, "enabled");
	expect("enable smtp://127.0.0.1:2527", 0, "was not drained");
	assert_ptr_equal(pool_pick_backend(gen.pool, NULL, "192.0.2.9", 0), b);
	expect("enable smtp://127.0.0.1:2526", 0, "enabled");
	expect("enable lmtp://127.0.0.1:2424", 0, "enabled");
	assert_null(ops_drained_url(0));
	/* the enable holds in a pool made while it was drained (sessions of that generation
	 * still pick from it) */
	assert_false(backend_is_drained(&np->servers[1]));
	int seen = 0;
	for (int i = 0; i < 4; i++)
		seen += pool_pick_backend(np, NULL, NULL, 0) == &np->servers[1];
	assert_int_equal(seen, 2);
	pool_free(np);
}

static void test_ambiguous_host(void **state)
{
	struct pool *p = make_pool("[\"smtp://127.0.0.1:2600\", \"lmtp://127.0.0.1:2600\"]");
	const char *err = NULL;
	assert_null(ops_find_backend(p, "127.0.0.1:2600", &err));
	assert_string_equal(err, "several backends have that address: give the URL");
	assert_non_null(ops_find_backend(p, "lmtp://127.0.0.1:2600", &err));
	pool_free(p);
}

static void test_reload(void **state)
{
	reload_result = 0;
	reload_errors = "t.yaml:3:9: limits.max_message_size: expected a size\n";
	expect("reload", -1, "t.yaml:3:9: limits.max_message_size");
	expect("reload", -1, "generation 3 stays");
	expect("reload --json", -1, "\"reloaded\":false");
	reload_result = 4;
	expect("reload", 0, "reloaded: generation 4");
	expect("reload --json", 0, "{\"reloaded\":true,\"generation\":4}");
	reload_later = "listen,workers";
	expect("reload", 0, "kept until the next start (restart to apply): listen,workers");
	expect("reload --json", 0, "{\"reloaded\":true,\"generation\":4,\"next_start\":[\"listen\",\"workers\"]}");
	reload_later = NULL;
}

static void test_readiness(void **state)
{
	assert_false(ops_is_started());
	ops_set_listening();
	assert_false(ops_is_ready());	/* no health round yet */
	ops_set_checked();
	assert_true(ops_is_started());
	assert_true(ops_is_ready());
	for (size_t i = 0; ops_pool_backend(gen.pool, i); i++)
		atomic_store(&backend_health(ops_pool_backend(gen.pool, i))->up, 0);
	assert_false(ops_is_ready());
	atomic_store(&backend_health(&gen.pool->servers[2])->up, 1);
	assert_true(ops_is_ready());
}

static void test_jsonw(void **state)
{
	static const struct { const char *label, *in, *out; } rows[] = {
		{ "plain", "abc", "\"abc\"" },
		{ "quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "controls", "\n\r\t\x01\x1f", "\"\\n\\r\\t\\u0001\\u001f\"" },
		{ "valid UTF-8 kept", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
		{ "stray continuation", "a\x80z", "\"a\xef\xbf\xbdz\"" },
		{ "truncated sequence", "a\xe2\x82", "\"a\xef\xbf\xbd\xef\xbf\xbd\"" },
		{ "overlong", "\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },
		{ "surrogate", "\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct strbuf b = { 0 };
		struct jsonw j;
		jsonw_init(&j, &b);
		jsonw_str(&j, NULL, rows[i].in);
		if (strcmp(b.v, rows[i].out) != 0)
			fail_msg("row \"%s\": %s", rows[i].label, b.v);
		strbuf_free(&b);
	}
	struct strbuf b = { 0 };
	struct jsonw j;
	jsonw_init(&j, &b);
	jsonw_obj(&j, NULL);
	jsonw_int(&j, "a", -5);
	jsonw_arr(&j, "l");
	jsonw_num(&j, NULL, 0.5);
	jsonw_num(&j, NULL, 0.0 / 0.0);
	jsonw_obj(&j, NULL);
	jsonw_end(&j);
	jsonw_bool(&j, NULL, true);
	jsonw_str(&j, NULL, NULL);
	jsonw_end(&j);
	jsonw_obj(&j, "o");
	jsonw_end(&j);
	jsonw_end(&j);
	assert_string_equal(b.v, "{\"a\":-5,\"l\":[0.5,null,{},true,null],\"o\":{}}");
	strbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs_table),
		cmocka_unit_test(test_drain_enable),
		cmocka_unit_test(test_ambiguous_host),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_readiness),
		cmocka_unit_test(test_jsonw),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
