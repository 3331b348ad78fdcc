/* test_ratelimit.c — key building (prefix masks v4/v6, lowercase sender domain), limit
 * parsing, GCRA and concurrency in the local table (state, expiry of idle keys), the module
 * through the chain. The table itself (bounds, eviction) is tested in test_local_table.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "filters/ratelimit.h"
#include "filters/ratelimit_local.h"
#include "proxy/hook.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/msgbuf.h"
#include "addr_fixture.h"
#include <stdlib.h>
#include <unistd.h>

#define S 1000000000ull

static void set_client(struct hook_env *env, const char *ip)
{
	env->client = sockaddr_of(ip);
	snprintf(env->client_ip, sizeof(env->client_ip), "%s", ip);
}

struct key_case {
	const char *label;
	int key;
	int p4, p6;
	const char *ip, *helo, *mail_from, *rcpt;
	const char *want;      /* NULL = rule does not apply */
};

static const struct key_case key_cases[] = {
	{ "ip v4", RATELIMIT_KEY_IP, 24, 64, "198.18.7.7", "", NULL, NULL, "198.18.7.7" },
	{ "ip v4-mapped v6 is v4", RATELIMIT_KEY_IP, 24, 64, "::ffff:198.18.7.7", "", NULL, NULL, "198.18.7.7" },
	{ "ip v6", RATELIMIT_KEY_IP, 24, 64, "2001:db8::1", "", NULL, NULL, "2001:db8::1" },
	{ "prefix /24", RATELIMIT_KEY_IP_PREFIX, 24, 64, "198.18.7.77", "", NULL, NULL, "198.18.7.0/24" },
	{ "prefix /20 masks inside an octet", RATELIMIT_KEY_IP_PREFIX, 20, 64, "198.18.77.7", "", NULL, NULL, "198.18.64.0/20" },
	{ "prefix /32", RATELIMIT_KEY_IP_PREFIX, 32, 64, "198.18.7.7", "", NULL, NULL, "198.18.7.7/32" },
	{ "prefix /0", RATELIMIT_KEY_IP_PREFIX, 0, 64, "198.18.7.7", "", NULL, NULL, "0.0.0.0/0" },
	{ "prefix v6 /64", RATELIMIT_KEY_IP_PREFIX, 24, 64, "2001:db8:1:2:3:4:5:6", "", NULL, NULL, "2001:db8:1:2::/64" },
	{ "prefix v6 /56 inside a group", RATELIMIT_KEY_IP_PREFIX, 24, 56, "2001:db8:1:2ff:3:4:5:6", "", NULL, NULL, "2001:db8:1:200::/56" },
	{ "prefix v4-mapped uses prefix_v4", RATELIMIT_KEY_IP_PREFIX, 16, 64, "::ffff:198.18.7.7", "", NULL, NULL, "198.18.0.0/16" },
	{ "helo lowercased", RATELIMIT_KEY_HELO, 24, 64, "198.18.7.7", "Mail.Example.ORG", NULL, NULL, "mail.example.org" },
	{ "no helo yet", RATELIMIT_KEY_HELO, 24, 64, "198.18.7.7", "", NULL, NULL, NULL },
	{ "sender lowercased", RATELIMIT_KEY_SENDER, 24, 64, "198.18.7.7", "", "Alice@Example.ORG", NULL, "alice@example.org" },
	{ "null sender: every bounce is no one sender", RATELIMIT_KEY_SENDER, 24, 64, "198.18.7.7", "", "", NULL, NULL },
	{ "no MAIL yet", RATELIMIT_KEY_SENDER, 24, 64, "198.18.7.7", "", NULL, NULL, NULL },
	{ "sender domain lowercased", RATELIMIT_KEY_SENDER_DOMAIN, 24, 64, "198.18.7.7", "", "Bob@Sub.Example.ORG", NULL, "sub.example.org" },
	{ "sender domain after the last @", RATELIMIT_KEY_SENDER_DOMAIN, 24, 64, "198.18.7.7", "", "\"a@b\"@Example.org", NULL, "example.org" },
	{ "null sender has no domain", RATELIMIT_KEY_SENDER_DOMAIN, 24, 64, "198.18.7.7", "", "", NULL, NULL },
	{ "sender without domain", RATELIMIT_KEY_SENDER_DOMAIN, 24, 64, "198.18.7.7", "", "postmaster", NULL, NULL },
	{ "recipient lowercased", RATELIMIT_KEY_RECIPIENT, 24, 64, "198.18.7.7", "", "a@b", "User@Example.TEST", "user@example.test" },
	{ "no recipient", RATELIMIT_KEY_RECIPIENT, 24, 64, "198.18.7.7", "", "a@b", NULL, NULL },
	{ "recipient domain lowercased", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "User@Sub.A.TEST", "sub.a.test" },
	{ "recipient domain root dot removed", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "u@A.Test.", "a.test" },
	{ "recipient domain after the last @", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "\"x@y\"@B.test", "b.test" },
	{ "recipient domain U-label as A-label", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "u@B\xc3\x9c" "CHER.example", "xn--bcher-kva.example" },
	{ "recipient without domain", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "Postmaster", NULL },
	{ "recipient domain empty", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", "u@", NULL },
	{ "no recipient for its domain", RATELIMIT_KEY_RECIPIENT_DOMAIN, 24, 64, "198.18.7.7", "", "a@b", NULL, NULL },
};

static void test_key_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		const struct key_case *kc = &key_cases[i];
		struct ratelimit_rule_config r = { .key = kc->key, .prefix_v4 = kc->p4, .prefix_v6 = kc->p6 };
		struct hook_env env;
		char out[520];
		int rc;

		memset(&env, 0, sizeof(env));
		set_client(&env, kc->ip);
		snprintf(env.helo, sizeof(env.helo), "%s", kc->helo);
		env.mail_from = (char *)kc->mail_from;
		env.cur_rcpt = kc->rcpt;
		rc = ratelimit_key_value(&r, &env, NULL, out, sizeof(out));
		if (kc->want == NULL) {
			if (rc != -1)
				fail_msg("%s: applied with value %s", kc->label, out);
			continue;
		}
		if (rc != 0 || strcmp(out, kc->want) != 0)
			fail_msg("%s: got rc=%d '%s' want '%s'", kc->label, rc, rc ? "" : out, kc->want);
	}
}

/* A rule that asks for the null sender counts <> as the one value "<>" on the sender keys
 * (an every-sender rule of those keys does not count it at all: test_key_values). */
static void test_key_null_sender_rule(void **state)
{
	(void)state;
	struct ratelimit_rule_config r = { .key = RATELIMIT_KEY_SENDER, .sender = RATELIMIT_SENDER_NULL };
	struct hook_env env;
	char out[64];

	memset(&env, 0, sizeof(env));
	set_client(&env, "198.18.7.7");
	env.mail_from = "";
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "<>");
	r.key = RATELIMIT_KEY_SENDER_DOMAIN;
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "<>");
	env.mail_from = "a@example.org";      /* and a real sender is not its business */
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, out, sizeof(out)), -1);
	r.sender = RATELIMIT_SENDER_ANY;
	assert_int_equal(ratelimit_key_value(&r, &env, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "example.org");
}

struct limit_case { const char *label, *text; int plain_ok; int rc; uint64_t count, period_ms; };

static const struct limit_case limit_cases[] = {
	{ "rate in seconds", "10/60s", 0, 0, 10, 60000 },
	{ "rate in hours", "1000/1h", 0, 0, 1000, 3600000 },
	{ "rate in minutes", "5/2m", 0, 0, 5, 120000 },
	{ "plain N for concurrency", "10", 1, 0, 10, 0 },
	{ "plain N where a rate is needed", "10", 0, -1, 0, 0 },
	{ "zero count", "0/60s", 0, -1, 0, 0 },
	{ "zero plain", "0", 1, -1, 0, 0 },
	{ "garbage", "ten/60s", 0, -1, 0, 0 },
	{ "empty", "", 1, -1, 0, 0 },
	{ "missing period", "10/", 0, -1, 0, 0 },
	{ "size suffix for bytes", "2K/60s", 0, 0, 2048, 60000 },
	{ "size suffix M per hour", "50M/1h", 0, 0, 50ull << 20, 3600000 },
	{ "bad size suffix", "2X/60s", 0, -1, 0, 0 },
};

static void test_limit_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *lc = &limit_cases[i];
		struct ratelimit_limit l;
		int rc = ratelimit_limit_parse(lc->text, lc->plain_ok, &l);

		if (rc != lc->rc)
			fail_msg("%s: rc %d want %d", lc->label, rc, lc->rc);
		if (rc == 0 && (l.count != lc->count || l.period_ms != lc->period_ms))
			fail_msg("%s: %llu/%llu", lc->label, (unsigned long long)l.count,
			    (unsigned long long)l.period_ms);
	}
}

static void test_safe_copy(void **state)
{
	static const struct { const char *in, *want; size_t cap; } cases[] = {
		{ "mail.example.org", "mail.example.org", 64 },
		{ "evil event=reject x", "evil?event=reject?x", 64 },
		{ "a\"b\tc\x01\xff", "a?b?c??", 64 },
		{ "truncated-here", "trunc", 6 },
		{ "", "", 4 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];

		ratelimit_safe_copy(cases[i].in, out, cases[i].cap);
		assert_string_equal(out, cases[i].want);
	}
}

static void test_local_gcra_and_expiry(void **state)
{
	struct local_table *s = local_table_new(1000);
	struct gcra_limit l = { 3, 30 * S };
	struct gcra_result r;
	uint64_t t0 = 1000 * S;

	(void)state;
	assert_non_null(s);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ratelimit_local_gcra(s, "k1", &l, 1, t0, &r), 0);
		assert_true(r.allowed);
	}
	assert_int_equal(ratelimit_local_gcra(s, "k1", &l, 1, t0, &r), 0);
	assert_false(r.allowed);
	/* another key is independent */
	assert_int_equal(ratelimit_local_gcra(s, "k2", &l, 1, t0, &r), 0);
	assert_true(r.allowed);
	assert_int_equal(local_table_size(s), 2);
	/* nothing idle yet */
	assert_int_equal(local_table_expire(s, t0 + 5 * S), 0);
	/* k2 idle after 10 s (one cell), k1 after 30 s */
	assert_int_equal(local_table_expire(s, t0 + 10 * S), 1);
	assert_int_equal(local_table_size(s), 1);
	assert_int_equal(local_table_expire(s, t0 + 30 * S), 1);
	assert_int_equal(local_table_size(s), 0);
	/* after expiry k1 is fresh: a full burst again */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ratelimit_local_gcra(s, "k1", &l, 1, t0 + 31 * S, &r), 0);
		assert_true(r.allowed);
	}
	/* an invalid limit is refused, not decided */
	l.count = 0;
	assert_int_equal(ratelimit_local_gcra(s, "k1", &l, 1, t0 + 31 * S, &r), -1);
	local_table_free(s);
}

static void test_local_concurrency(void **state)
{
	struct local_table *s = local_table_new(100);

	(void)state;
	assert_int_equal(ratelimit_local_acquire(s, "c", 2, S), 1);
	assert_int_equal(ratelimit_local_acquire(s, "c", 2, S), 1);
	assert_int_equal(ratelimit_local_acquire(s, "c", 2, S), 0);
	assert_int_equal(ratelimit_local_current(s, "c", S), 2);
	/* a held counter is never expired */
	assert_int_equal(local_table_expire(s, 1000 * S), 0);
	ratelimit_local_release(s, "c", S);
	assert_int_equal(ratelimit_local_acquire(s, "c", 2, S), 1);
	ratelimit_local_release(s, "c", S);
	ratelimit_local_release(s, "c", S);
	ratelimit_local_release(s, "c", S);     /* extra release: stays at 0 */
	assert_int_equal(ratelimit_local_current(s, "c", S), 0);
	ratelimit_local_release(s, "unknown", S);
	assert_int_equal(ratelimit_local_current(s, "unknown", S), 0);
	/* the last release left nothing to remember: the key is gone at once */
	assert_int_equal(local_table_size(s), 0);
	local_table_free(s);
}

/* ---- the module through the real chain (local store) ------------------------------------ */

struct chain_result { bool done; struct verdict v; };

static void chain_done_cb(void *arg, const struct verdict *v)
{
	struct chain_result *r = arg;

	r->done = true;
	r->v = *v;
}

struct sess { struct hook_env env; struct chain ch; };

static void sess_open(struct sess *s, struct chain_modules *mods, uv_loop_t *loop,
    const struct mx_config *cfg, const char *ip, const char *id)
{
	memset(s, 0, sizeof(*s));
	s->env.session_id = id;
	s->env.loop = loop;
	s->env.cfg = cfg;
	set_client(&s->env, ip);
	chain_init(&s->ch, mods, &s->env, NULL);
}

static struct verdict stage(struct sess *s, enum hook_stage st, uv_loop_t *loop)
{
	struct chain_result res = { 0 };

	chain_run(&s->ch, st, chain_done_cb, &res);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_true(res.done);
	return res.v;
}

static void sess_close(struct sess *s)
{
	chain_release(&s->ch);
	hook_env_free_outputs(&s->env);
}

static void test_module_local(void **state)
{
	char dir[] = "/tmp/mxgate-rlmod-XXXXXX", path[256], cmd[300];
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	struct sess a, b, c;
	struct verdict v;
	struct rcpt rc[2] = { { "R1@Example.test", "", 0 }, { "r2@example.test", "", 0 } };
	uv_loop_t loop;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mx.yaml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("hostname: mx.example.test\n"
	    "listen:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\n"
	    "ratelimit:\n  rules:\n"
	    "    - { key: ip, count: concurrency, limit: 1 }\n"
	    "    - { key: helo, count: connections, limit: 1/1h, action: reject }\n"
	    "    - { key: recipient, count: messages, limit: 1/1h, action: delay, delay: 2s }\n"
	    "    - { key: sender, count: messages, limit: 2/1h }\n", f);
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	/* concurrency 1: a second session of the same IP is refused at connect with 421 4.7.0 */
	sess_open(&a, &mods, &loop, cfg, "198.18.30.1", "a");
	assert_int_equal(stage(&a, HOOK_CONNECT, &loop).action, VERDICT_CONTINUE);
	sess_open(&b, &mods, &loop, cfg, "198.18.30.1", "b");
	v = stage(&b, HOOK_CONNECT, &loop);
	assert_int_equal(v.action, VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 421);
	assert_string_equal(v.reply, "4.7.0 rate limit exceeded for ip 198.18.30.1: 1, try again later");
	sess_close(&b);

	/* helo connections 1/1h, reject: counted once per session, at the first HELO */
	snprintf(a.env.helo, sizeof(a.env.helo), "Client.Example");
	assert_int_equal(stage(&a, HOOK_HELO, &loop).action, VERDICT_CONTINUE);
	assert_int_equal(stage(&a, HOOK_HELO, &loop).action, VERDICT_CONTINUE);

	/* messages per recipient (delay) and per sender (tempfail), counted at DATA */
	a.env.mail_from = "s@example.org";
	a.env.rcpts = rc;
	a.env.nrcpts = 2;
	v = stage(&a, HOOK_DATA, &loop);
	assert_int_equal(v.action, VERDICT_CONTINUE);
	assert_int_equal(v.delay_ms, 0);
	v = stage(&a, HOOK_DATA, &loop);         /* recipients over their limit: tarpit */
	assert_int_equal(v.action, VERDICT_CONTINUE);
	assert_int_equal(v.delay_ms, 2000);
	v = stage(&a, HOOK_DATA, &loop);         /* sender over 2/1h: tempfail wins over delay */
	assert_int_equal(v.action, VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.reply, "4.7.1 rate limit exceeded for sender s@example.org: 2/1h, try again later");
	a.env.rcpts = NULL;
	a.env.nrcpts = 0;
	sess_close(&a);

	/* the concurrency slot came back when session a was freed; the HELO count did not */
	sess_open(&c, &mods, &loop, cfg, "198.18.30.1", "c");
	assert_int_equal(stage(&c, HOOK_CONNECT, &loop).action, VERDICT_CONTINUE);
	snprintf(c.env.helo, sizeof(c.env.helo), "client.example");
	v = stage(&c, HOOK_HELO, &loop);
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.reply, "5.7.1 rate limit exceeded for helo client.example: 1/1h");
	sess_close(&c);

	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_values),
		cmocka_unit_test(test_key_null_sender_rule),
		cmocka_unit_test(test_limit_parse),
		cmocka_unit_test(test_safe_copy),
		cmocka_unit_test(test_local_gcra_and_expiry),
		cmocka_unit_test(test_local_concurrency),
		cmocka_unit_test(test_module_local),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
