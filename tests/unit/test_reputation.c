/* test_reputation.c — decay math, counting, score, keys, CIDR allow/deny matching, and the
 * module through the real chain with the LMDB store (surviving a new config generation):
 * learning from the outcome notifier (which outcomes count), and shedding unknown clients
 * at connect when the session says it is overloaded. The authenticated sender domain:
 * store keys, the IP penalties a good domain lifts and by how much, which outcomes the
 * domain counts, and the module at end of data (recorded only for what senderauth
 * authenticated, REP_DOMAIN_GOOD / _LIFT / _BAD). Forgetting a client in every worker state
 * (flush reputation): after the updates a worker still holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "filters/reputation.h"
#include "filters/senderauth.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "store/lmdb_store.h"
#include "addr_fixture.h"

#define DAY (86400ull * 1000)

struct decay_case { const char *label; double start; uint64_t t0, now, hl; double want; };

static const struct decay_case decay_cases[] = {
	{ "no time passed", 8, 1000 * DAY, 1000 * DAY, 7 * DAY, 8 },
	{ "one half-life halves", 8, 1000 * DAY, 1007 * DAY, 7 * DAY, 4 },
	{ "two half-lives quarter", 8, 1000 * DAY, 1014 * DAY, 7 * DAY, 2 },
	{ "half a half-life: 1/sqrt(2)", 8, 1000 * DAY, 1000 * DAY + 84 * 3600000ull, 7 * DAY, 8 / 1.41421356237 },
	{ "clock stepped back: nothing ages", 8, 1000 * DAY, 999 * DAY, 7 * DAY, 8 },
	{ "one-day half-life over 10 days", 1024, 1000 * DAY, 1010 * DAY, DAY, 1 },
};

static void test_decay(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(decay_cases) / sizeof(decay_cases[0]); i++) {
		const struct decay_case *dc = &decay_cases[i];
		struct reputation_counts c;

		memset(&c, 0, sizeof(c));
		for (int k = 0; k < REPUTATION_NOUTCOMES; k++)
			c.c[k] = dc->start;
		c.t_ms = dc->t0;
		reputation_decay(&c, dc->now, dc->hl);
		for (int k = 0; k < REPUTATION_NOUTCOMES; k++)
			if (fabs(c.c[k] - dc->want) > 1e-6)
				fail_msg("%s: %f want %f", dc->label, c.c[k], dc->want);
		assert_int_equal(c.t_ms, dc->now > dc->t0 ? dc->now : dc->t0);
	}
}

struct score_case { const char *label; double ip[5]; double net[5]; double w, prior; double lo, hi; };

static const struct score_case score_cases[] = {
	{ "no history: 0", {0}, {0}, 0.5, 3, 0, 0 },
	{ "one accepted is not yet good", {1}, {0}, 0.5, 3, 0.24, 0.26 },
	{ "many accepted: good", {100}, {0}, 0.5, 3, 0.97, 0.98 },
	{ "many rejected: bad", {0, 100}, {0}, 0.5, 3, -0.98, -0.97 },
	{ "tempfails weigh a quarter", {0, 0, 12}, {0}, 0.5, 3, -0.51, -0.49 },
	{ "a virus weighs two", {2, 0, 0, 0, 1}, {0}, 0.5, 0, -0.01, 0.01 },
	{ "bad network drags a new IP down", {0}, {0, 20}, 0.5, 3, -0.77, -0.76 },
	{ "network ignored at weight 0", {0}, {0, 20}, 0, 3, 0, 0 },
	{ "spam counts as bad", {5, 0, 0, 5}, {0}, 0.5, 0, 0, 0 },
};

static void test_score(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(score_cases) / sizeof(score_cases[0]); i++) {
		const struct score_case *sc = &score_cases[i];
		struct reputation_counts ip, net;
		double s;

		memset(&ip, 0, sizeof(ip));
		memset(&net, 0, sizeof(net));
		memcpy(ip.c, sc->ip, sizeof(ip.c));
		memcpy(net.c, sc->net, sizeof(net.c));
		s = reputation_score(&ip, &net, sc->w, sc->prior);
		if (s < sc->lo - 1e-9 || s > sc->hi + 1e-9)
			fail_msg("%s: score %f not in [%f, %f]", sc->label, s, sc->lo, sc->hi);
	}
}

static void test_keys(void **state)
{
	static const struct { const char *ip; long p4, p6, c6; const char *k1, *k2; } cases[] = {
		{ "198.18.7.7", 24, 64, 64, "ip:198.18.7.7", "net:198.18.7.0/24" },
		{ "::ffff:198.18.7.7", 24, 64, 64, "ip:198.18.7.7", "net:198.18.7.0/24" },
		/* an IPv6 client is its /64 (limits.client_ipv6_prefix), or its address with 128 */
		{ "2001:db8:1:2:3:4:5:6", 24, 48, 64, "ip:2001:db8:1:2::/64", "net:2001:db8:1::/48" },
		{ "2001:db8:1:2:3:4:5:6", 24, 64, 128, "ip:2001:db8:1:2:3:4:5:6", "net:2001:db8:1:2::/64" },
		{ "198.18.200.9", 16, 64, 64, "ip:198.18.200.9", "net:198.18.0.0/16" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(cases[i].ip);
		char k1[80], k2[80];

		assert_int_equal(reputation_keys((struct sockaddr *)&ss, cases[i].p4, cases[i].p6,
		    cases[i].c6, k1, sizeof(k1), k2, sizeof(k2)), 0);
		assert_string_equal(k1, cases[i].k1);
		assert_string_equal(k2, cases[i].k2);
	}
}

static void test_cidr_allow_deny(void **state)
{
	static const struct { const char *cidr, *ip; bool match; } cases[] = {
		{ "198.18.0.0/15", "198.19.255.255", true },
		{ "198.18.0.0/15", "198.20.0.1", false },
		{ "198.18.7.7", "198.18.7.7", true },
		{ "198.18.7.7", "198.18.7.8", false },
		{ "198.18.0.0/15", "::ffff:198.18.1.1", true },
		{ "2001:db8::/32", "2001:db8:ffff::1", true },
		{ "2001:db8::/32", "2001:db9::1", false },
		{ "2001:db8::/32", "198.18.1.1", false },
		{ "0.0.0.0/0", "203.0.113.5", true },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg_cidr c;
		struct cfg_cidrlist l = { &c, 1 };
		struct sockaddr_storage ss = sockaddr_of(cases[i].ip);

		assert_int_equal(cfg_parse_cidr(cases[i].cidr, &c), 0);
		if (cfg_cidrlist_match(&l, (struct sockaddr *)&ss) != cases[i].match)
			fail_msg("%s in %s: want %d", cases[i].ip, cases[i].cidr, cases[i].match);
	}
}

/* reputation_add: what the LMDB merge applies per update (decay, then count one). */
static void test_add(void **state)
{
	struct reputation_counts c;
	uint64_t t0 = 20000 * DAY;

	(void)state;
	memset(&c, 0, sizeof(c));
	reputation_add(&c, REPUTATION_REJECTED, t0, 7 * DAY);
	reputation_add(&c, REPUTATION_VIRUS, t0, 7 * DAY);
	assert_true(fabs(c.c[REPUTATION_REJECTED] - 1.0) < 1e-9);
	assert_int_equal(c.t_ms, t0);
	/* one half-life later: the history halves before the new count */
	reputation_add(&c, REPUTATION_REJECTED, t0 + 7 * DAY, 7 * DAY);
	assert_true(fabs(c.c[REPUTATION_REJECTED] - 1.5) < 1e-9);
	assert_true(fabs(c.c[REPUTATION_VIRUS] - 0.5) < 1e-9);
	assert_int_equal(c.t_ms, t0 + 7 * DAY);
	/* an out-of-range outcome only ages */
	reputation_add(&c, REPUTATION_NOUTCOMES, t0 + 14 * DAY, 7 * DAY);
	assert_true(fabs(c.c[REPUTATION_REJECTED] - 0.75) < 1e-9);
}

/* ---- the module through the real chain, with a real loop and the LMDB store -------------- */

struct chain_result { bool done; struct verdict v; };

static void chain_done_cb(void *arg, const struct verdict *v)
{
	struct chain_result *r = arg;

	r->done = true;
	r->v = *v;
}

static void noop_timer_cb(uv_timer_t *t) { (void)t; }

/* Runs the loop for ms (a referenced timer keeps it alive; thread-pool work finishes too). */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t t;

	uv_timer_init(loop, &t);
	uv_timer_start(&t, noop_timer_cb, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* A session's env for a client at ip. */
static void env_for(struct hook_env *env, uv_loop_t *loop, const struct mx_config *cfg, const char *ip)
{
	struct sockaddr_storage ss = sockaddr_of(ip);

	memset(env, 0, sizeof(*env));
	env->session_id = "test";
	env->loop = loop;
	env->cfg = cfg;
	memcpy(&env->client, &ss, sizeof(ss));
	snprintf(env->client_ip, sizeof(env->client_ip), "%s", ip);
}

/* One connect of ip through the real chain (overloaded: near max_connections). */
static void connect_verdict(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const char *ip, bool overloaded, struct chain_result *res, struct hook_env *env)
{
	struct chain ch;
	uv_timer_t timer;

	env_for(env, loop, cfg, ip);
	env->overloaded = overloaded;
	memset(res, 0, sizeof(*res));
	uv_timer_init(loop, &timer);
	chain_init(&ch, mods, env, &timer);
	chain_run(&ch, HOOK_CONNECT, chain_done_cb, res);
	run_for(loop, 20);
	assert_true(res->done);
	chain_session_end(&ch, 0, HOOK_CLOSE, NULL);
	chain_release(&ch);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* One session of ip with n transactions that each end with code at stage, with flags set by
 * the modules: what the session reports through the outcome notifier. */
static void messages(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const char *ip, int n, int code, enum hook_stage stage, unsigned flags)
{
	struct chain ch;
	struct hook_env env;

	env_for(&env, loop, cfg, ip);
	chain_init(&ch, mods, &env, NULL);
	for (int i = 0; i < n; i++) {
		chain_txn_begin(&ch);
		env.flags = flags;
		assert_true(chain_txn_end(&ch, code, stage, "test"));
		env.flags = 0;
	}
	chain_session_end(&ch, 0, HOOK_CLOSE, NULL);
	chain_release(&ch);
	run_for(loop, 100);   /* the batch timer writes them into LMDB */
}

/* A config with the reputation section's body and extra top-level sections (may be ""). */
static struct mx_config *load_config_with(const char *dir, const char *reputation, const char *extra)
{
	char path[256], yaml[2048];
	struct mx_config *cfg = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/mx.yaml", dir);
	snprintf(yaml, sizeof(yaml),
	    "hostname: mx.example.test\n"
	    "listen:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\n"
	    "%s"
	    "reputation:\n%s", extra, reputation);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(yaml, f);
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	return cfg;
}

static struct mx_config *load_config(const char *dir, const char *reputation)
{
	return load_config_with(dir, reputation, "");
}

/* A verdict row: ip connecting, overloaded or not. */
struct crow {
	const char *label, *ip;
	bool overloaded;
	enum verdict_action want;
	int code;
	const char *reply_has, *symbol, *reason;
};

static void check_rows(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const struct crow *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct crow *r = &rows[i];
		struct chain_result res;
		struct hook_env env;

		connect_verdict(mods, loop, cfg, r->ip, r->overloaded, &res, &env);
		if (res.v.action != r->want || (r->code && res.v.code != r->code) ||
		    (r->reply_has && !strstr(res.v.reply, r->reply_has)) ||
		    (r->symbol && !hook_env_find_symbol(&env, r->symbol)) ||
		    (r->reason && strcmp(res.v.reason, r->reason) != 0))
			fail_msg("row \"%s\": action %d code %d reply \"%s\" reason \"%s\"", r->label,
			    res.v.action, res.v.code, res.v.reply, res.v.reason);
		hook_env_free_outputs(&env);
	}
}

static void test_module_lmdb(void **state)
{
	char dir[] = "/tmp/mxgate-repmod-XXXXXX";
	char conf[512], cmd[300];
	struct mx_config *cfg;
	struct chain_modules mods;
	uv_loop_t loop;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s/db\"\n  flush_interval: 10ms\n"
	    "  allow: [198.18.77.0/24]\n  deny: [198.18.66.0/24]\n", dir);
	cfg = load_config(dir, conf);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	/* what the sessions tell the module through the outcome notifier */
	messages(&mods, &loop, cfg, "198.18.5.5", 8, 550, HOOK_EOM, 0);          /* refused at EOM */
	messages(&mods, &loop, cfg, "198.18.9.9", 20, 250, HOOK_EOM, 0);         /* delivered */
	messages(&mods, &loop, cfg, "198.18.11.1", 8, 250, HOOK_EOM, HOOK_FLAG_SPAM);   /* spam */
	messages(&mods, &loop, cfg, "198.18.12.1", 4, 451, HOOK_EOM, HOOK_FLAG_VIRUS);  /* virus */
	messages(&mods, &loop, cfg, "198.18.13.1", 4, 451, HOOK_EOM, 0);         /* tempfailed: light */
	/* outcomes that do not count: refusals before the end of data, discards, abandoned */
	messages(&mods, &loop, cfg, "198.18.14.1", 20, 550, HOOK_MAIL, 0);
	messages(&mods, &loop, cfg, "198.18.14.2", 20, 554, HOOK_DATA, HOOK_FLAG_SPAM);
	messages(&mods, &loop, cfg, "198.18.14.3", 20, 250, HOOK_EOM, HOOK_FLAG_DISCARDED);
	messages(&mods, &loop, cfg, "198.18.14.4", 20, 0, HOOK_RCPT, HOOK_FLAG_VIRUS);

	static const struct crow rows[] = {
		{ "unknown: no verdict", "198.18.3.3", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "eight refused messages: bad, 421", "198.18.5.5", false, VERDICT_TEMPFAIL, 421,
		  "4.7.0 poor reputation of 198.18.5.5", "REP_BAD", "reputation" },
		{ "a /24 neighbour inherits part of it, not refused", "198.18.5.6", false, VERDICT_CONTINUE,
		  0, NULL, NULL, NULL },
		{ "twenty delivered: good", "198.18.9.9", false, VERDICT_CONTINUE, 0, NULL, "REP_GOOD", NULL },
		{ "delivered spam counts as spam", "198.18.11.1", false, VERDICT_TEMPFAIL, 421, NULL, "REP_BAD", NULL },
		{ "viruses weigh double", "198.18.12.1", false, VERDICT_TEMPFAIL, 421, NULL, "REP_BAD", NULL },
		{ "tempfails weigh a quarter: not bad yet", "198.18.13.1", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "refusals at MAIL do not count", "198.18.14.1", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "refusals at DATA do not count", "198.18.14.2", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "discards do not count (not good either)", "198.18.14.3", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "abandoned transactions do not count", "198.18.14.4", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "deny list", "198.18.66.1", false, VERDICT_REJECT, 550, "5.7.1 deny list entry of 198.18.66.1",
		  "REP_DENY", NULL },
		{ "allow list: the rest of the connect stage skipped", "198.18.77.1", false, VERDICT_ACCEPT, 0,
		  NULL, "REP_ALLOW", NULL },
		/* near max_connections: the known-good are served, everyone else gets 421 */
		{ "overloaded: a known-good client is served", "198.18.9.9", true, VERDICT_CONTINUE, 0, NULL,
		  "REP_GOOD", NULL },
		{ "overloaded: the allow list is served", "198.18.77.1", true, VERDICT_ACCEPT, 0, NULL, NULL, NULL },
		{ "overloaded: an unknown client is shed", "198.18.3.3", true, VERDICT_TEMPFAIL, 421,
		  "4.7.0 mx.example.test Service busy, try again later", NULL, "overload" },
		{ "overloaded: a bad client is shed", "198.18.5.5", true, VERDICT_TEMPFAIL, 421,
		  "Service busy", NULL, "overload" },
		{ "overloaded: the deny list is shed at once", "198.18.66.1", true, VERDICT_TEMPFAIL, 421,
		  "Service busy", NULL, "overload" },
		{ "overloaded: a client that is only not bad is shed", "198.18.13.1", true, VERDICT_TEMPFAIL,
		  421, NULL, NULL, "overload" },
	};
	check_rows(&mods, &loop, cfg, rows, sizeof(rows) / sizeof(rows[0]));

	/* a new generation after the old one is retired: the state is in the file */
	chain_modules_free(&mods);
	run_for(&loop, 20);
	chain_modules_init(&mods, cfg, &loop, 0);
	check_rows(&mods, &loop, cfg, rows + 1, 1);
	chain_modules_free(&mods);
	run_for(&loop, 20);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Without a store: an allow list still tells the known clients (shedding the others), a
 * deny list alone knows nobody good (no shedding at all). */
static void test_module_lists_only(void **state)
{
	char dir[] = "/tmp/mxgate-replist-XXXXXX";
	char cmd[300];
	struct mx_config *cfg;
	struct chain_modules mods;
	uv_loop_t loop;

	(void)state;
	assert_non_null(mkdtemp(dir));
	uv_loop_init(&loop);
	cfg = load_config(dir, "  allow: [198.18.77.0/24]\n");
	chain_modules_init(&mods, cfg, &loop, 0);
	static const struct crow allow_rows[] = {
		{ "allow only, overloaded: allowed served", "198.18.77.2", true, VERDICT_ACCEPT, 0, NULL, NULL, NULL },
		{ "allow only, overloaded: others shed", "198.18.3.3", true, VERDICT_TEMPFAIL, 421, NULL, NULL, "overload" },
		{ "allow only, not overloaded: others served", "198.18.3.3", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
	};
	check_rows(&mods, &loop, cfg, allow_rows, sizeof(allow_rows) / sizeof(allow_rows[0]));
	chain_modules_free(&mods);
	config_free(cfg);

	cfg = load_config(dir, "  deny: [198.18.66.0/24]\n");
	chain_modules_init(&mods, cfg, &loop, 0);
	static const struct crow deny_rows[] = {
		{ "deny only, overloaded: nobody is known, nobody shed", "198.18.3.3", true, VERDICT_CONTINUE, 0,
		  NULL, NULL, NULL },
		{ "deny only, overloaded: the deny action", "198.18.66.3", true, VERDICT_REJECT, 550, NULL, NULL, NULL },
	};
	check_rows(&mods, &loop, cfg, deny_rows, sizeof(deny_rows) / sizeof(deny_rows[0]));
	chain_modules_free(&mods);
	config_free(cfg);

	/* deny_action: delay is spamd's tarpit for its blacklist: the greeting held, then the
	 * client refused as with reject (it was served after the wait) */
	cfg = load_config(dir, "  deny: [198.18.66.0/24]\n  deny_action: delay\n  delay: 2s\n");
	chain_modules_init(&mods, cfg, &loop, 0);
	static const struct crow tarpit_rows[] = {
		{ "deny, delay: refused as reject", "198.18.66.4", false, VERDICT_REJECT, 550,
		  "5.7.1 deny list entry of 198.18.66.4", "REP_DENY", "reputation" },
		{ "deny, delay: others go on", "198.18.3.3", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
	};
	check_rows(&mods, &loop, cfg, tarpit_rows, sizeof(tarpit_rows) / sizeof(tarpit_rows[0]));
	{
		struct chain_result res;
		struct hook_env env;

		connect_verdict(&mods, &loop, cfg, "198.18.66.5", false, &res, &env);
		assert_int_equal(res.v.action, VERDICT_REJECT);
		assert_int_equal(res.v.delay_ms, 2000);      /* the greeting is held first */
		hook_env_free_outputs(&env);
	}
	chain_modules_free(&mods);
	config_free(cfg);
	run_for(&loop, 20);
	assert_int_equal(uv_loop_close(&loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- the authenticated sender domain ------------------------------------------------------ */

static void test_domain_key(void **state)
{
	static const struct { const char *label, *domain; size_t cap; int rc; const char *key; } cases[] = {
		{ "lowercased", "Example.ORG", 64, 0, "authdom:example.org" },
		{ "trailing dot dropped", "example.org.", 64, 0, "authdom:example.org" },
		{ "empty", "", 64, -1, NULL },
		{ "only a dot", ".", 64, -1, NULL },
		{ "exactly fits", "a.bc", 13, 0, "authdom:a.bc" },
		{ "one short", "a.bc", 12, -1, NULL },
	};
	char key[300];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = reputation_domain_key(cases[i].domain, key, cases[i].cap);

		if (rc != cases[i].rc || (rc == 0 && strcmp(key, cases[i].key) != 0))
			fail_msg("%s: rc %d key %s", cases[i].label, rc, rc == 0 ? key : "-");
	}
	assert_int_equal(reputation_domain_key(NULL, key, sizeof(key)), -1);
}

/* Which session symbols are the IP's penalties (what a good domain may lift). */
static void test_ip_penalty(void **state)
{
	char dir[] = "/tmp/mxgate-reppen-XXXXXX", cmd[300], names[200];
	struct mx_config *cfg;
	struct hook_env env;

	(void)state;
	assert_non_null(mkdtemp(dir));
	cfg = load_config_with(dir, "  deny: [198.18.66.0/24]\n",
	    "dnsbl:\n  action: score\n  lists:\n"
	    "    - { zone: bl.test, weight: 3 }\n"
	    "    - { zone: pbl.test, weight: 1.5, symbol: MY_PBL }\n"
	    "    - { zone: wl.test, weight: -5 }\n"
	    "    - { zone: dbl.test, type: domain, weight: 2 }\n");
	env_for(&env, NULL, cfg, "198.18.5.5");
	/* connect and HELO stage: the session's symbols */
	hook_env_add_symbol(&env, "REP_BAD", 3, "reputation -0.77");
	hook_env_add_symbol(&env, "DNSBL_BL_TEST", 3, "bl.test");
	hook_env_add_symbol(&env, "MY_PBL", 1.5, "pbl.test");             /* a list's own symbol name */
	hook_env_add_symbol(&env, "DNSBL_WL_TEST", -5, "wl.test");        /* an allow list: no penalty */
	hook_env_add_symbol(&env, "DNSBL_DBL_TEST", 2, "dbl.test");       /* HELO domain: not the IP's */
	hook_env_add_symbol(&env, "HELO_BOGUS", 1, "helo");               /* another filter's */
	hook_env_add_symbol(&env, "REP_DENY", 10, "deny list");
	env.txn_symbols_start = env.nsymbols;
	/* the transaction's: a message-stage symbol of the same name is not the IP's */
	hook_env_add_symbol(&env, "DNSBL_BL_TEST", 3, "bl.test");

	assert_true(fabs(reputation_ip_penalty(&env, false, names, sizeof(names)) - 7.5) < 1e-9);
	assert_string_equal(names, "REP_BAD,DNSBL_BL_TEST,MY_PBL");
	assert_true(fabs(reputation_ip_penalty(&env, true, NULL, 0) - 17.5) < 1e-9);
	/* a names buffer too small is cut, never overrun */
	reputation_ip_penalty(&env, false, names, 10);
	assert_true(strlen(names) < 10);
	/* nothing before the transaction: no penalty */
	env.txn_symbols_start = 0;
	assert_true(reputation_ip_penalty(&env, true, names, sizeof(names)) == 0);
	assert_string_equal(names, "");
	hook_env_free_outputs(&env);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_domain_lift_and_outcome(void **state)
{
	static const struct { const char *label; double penalty, max, want; } lifts[] = {
		{ "no penalty: no lift", 0, 10, 0 },
		{ "the whole penalty", 6, 10, 6 },
		{ "at most lift_max", 16, 10, 10 },
		{ "lift_max 0: off", 6, 0, 0 },
		{ "a negative penalty lifts nothing", -3, 10, 0 },
	};
	static const struct { const char *label; enum reputation_outcome o; double residual; int want; } outs[] = {
		{ "accepted counts", REPUTATION_ACCEPTED, 0, REPUTATION_ACCEPTED },
		{ "accepted counts despite the IP's penalty", REPUTATION_ACCEPTED, 6, REPUTATION_ACCEPTED },
		{ "virus always counts", REPUTATION_VIRUS, 6, REPUTATION_VIRUS },
		{ "rejected counts without penalty", REPUTATION_REJECTED, 0, REPUTATION_REJECTED },
		{ "rejected with the IP's penalty left: not counted", REPUTATION_REJECTED, 3, -1 },
		{ "spam with the IP's penalty left: not counted", REPUTATION_SPAM, 0.5, -1 },
		{ "tempfailed with the IP's penalty left: not counted", REPUTATION_TEMPFAILED, 3, -1 },
		{ "spam after a full lift counts", REPUTATION_SPAM, 6 - 6.0000000000001, REPUTATION_SPAM },
		{ "an allow-list bonus is no penalty", REPUTATION_SPAM, -5, REPUTATION_SPAM },
		{ "out of range", REPUTATION_NOUTCOMES, 0, -1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(lifts) / sizeof(lifts[0]); i++)
		if (fabs(reputation_domain_lift(lifts[i].penalty, lifts[i].max) - lifts[i].want) > 1e-9)
			fail_msg("%s: %f", lifts[i].label, reputation_domain_lift(lifts[i].penalty, lifts[i].max));
	for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++)
		if (reputation_domain_outcome(outs[i].o, outs[i].residual) != outs[i].want)
			fail_msg("%s: %d", outs[i].label, reputation_domain_outcome(outs[i].o, outs[i].residual));
}

/* A session of ip: session symbols (name, score pairs, NULL-terminated) as the connect stage
 * would leave them, then n transactions ending with code at end of data; auth is what
 * senderauth hands over for each (NULL: nothing authenticated); lift, when not 0, is the
 * REP_DOMAIN_LIFT the end-of-data stage added. */
static void domain_messages(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const char *ip, const char *const *session_syms, int n, int code, unsigned flags, const char *auth,
    double lift)
{
	struct chain ch;
	struct hook_env env;

	env_for(&env, loop, cfg, ip);
	chain_init(&ch, mods, &env, NULL);
	for (size_t i = 0; session_syms && session_syms[i]; i += 2)
		hook_env_add_symbol(&env, session_syms[i], atof(session_syms[i + 1]), NULL);
	for (int i = 0; i < n; i++) {
		chain_txn_begin(&ch);
		env.txn_symbols_start = env.nsymbols;
		if (auth)
			hook_env_add_symbol(&env, "AUTH_DOMAIN", 0, auth);
		if (lift != 0)
			hook_env_add_symbol(&env, "REP_DOMAIN_LIFT", lift, NULL);
		env.flags = flags;
		assert_true(chain_txn_end(&ch, code, HOOK_EOM, "test"));
		hook_env_reset_txn(&env);
	}
	chain_session_end(&ch, 0, HOOK_CLOSE, NULL);
	chain_release(&ch);
	hook_env_free_outputs(&env);
	run_for(loop, 100);   /* the batch timer writes them into LMDB */
}

/* An end-of-data row: a message from ip whose session carries REP_BAD 3 and DNSBL_BL_TEST 3
 * (bad), or nothing, authenticated as auth (or not). */
struct erow {
	const char *label, *ip, *auth;
	bool listed;
	double want_good, want_lift, want_bad;   /* the symbols' scores; 0 = absent */
};

static void check_eom_rows(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const struct erow *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct erow *r = &rows[i];
		struct chain_result res = { 0 };
		struct hook_env env;
		struct chain ch;
		const struct hook_symbol *g, *l, *b;

		env_for(&env, loop, cfg, r->ip);
		chain_init(&ch, mods, &env, NULL);
		if (r->listed) {
			hook_env_add_symbol(&env, "REP_BAD", 3, NULL);
			hook_env_add_symbol(&env, "DNSBL_BL_TEST", 3, "bl.test");
		}
		chain_txn_begin(&ch);
		env.txn_symbols_start = env.nsymbols;
		if (r->auth)
			hook_env_add_symbol(&env, "AUTH_DOMAIN", 0, r->auth);
		chain_run(&ch, HOOK_EOM, chain_done_cb, &res);
		run_for(loop, 20);
		assert_true(res.done);
		g = hook_env_find_symbol(&env, "REP_DOMAIN_GOOD");
		l = hook_env_find_symbol(&env, "REP_DOMAIN_LIFT");
		b = hook_env_find_symbol(&env, "REP_DOMAIN_BAD");
		if (res.v.action != VERDICT_CONTINUE || (g ? g->score : 0) != r->want_good ||
		    (l ? l->score : 0) != r->want_lift || (b ? b->score : 0) != r->want_bad)
			fail_msg("row \"%s\": action %d good %g lift %g bad %g", r->label, res.v.action,
			    g ? g->score : 0, l ? l->score : 0, b ? b->score : 0);
		chain_txn_abandon(&ch);
		chain_session_end(&ch, 0, HOOK_CLOSE, NULL);
		chain_release(&ch);
		hook_env_free_outputs(&env);
	}
}

static void test_module_domains(void **state)
{
	char dir[] = "/tmp/mxgate-repdom-XXXXXX";
	char conf[512], cmd[300];
	struct mx_config *cfg;
	struct chain_modules mods;
	uv_loop_t loop;
	static const char *const listed[] = { "REP_BAD", "3", "DNSBL_BL_TEST", "3", NULL };

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s/db\"\n  flush_interval: 10ms\n"
	    "  bad_action: score\n  domain_lift_max: 5\n", dir);
	cfg = load_config_with(dir, conf, "dnsbl:\n  action: score\n  lists:\n    - { zone: bl.test, weight: 3 }\n");
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	/* what senderauth authenticated, delivered from clean IPs: a good history */
	domain_messages(&mods, &loop, cfg, "198.18.9.9", NULL, 20, 250, 0, "good.example", 0);
	/* refused at end of data from a clean IP: held against the domain */
	domain_messages(&mods, &loop, cfg, "198.18.20.1", NULL, 8, 550, 0, "bad.example", 0);
	/* refused / marked spam while the IP's penalties were in the score, unlifted: the
	 * shared IP may have decided it, the domain is not blamed */
	domain_messages(&mods, &loop, cfg, "198.18.5.5", listed, 8, 550, 0, "shared.example", 0);
	domain_messages(&mods, &loop, cfg, "198.18.5.5", listed, 8, 250, HOOK_FLAG_SPAM, "shared.example", 0);
	/* ... only partly lifted (lift_max 5 of 6): still not blamed */
	domain_messages(&mods, &loop, cfg, "198.18.5.5", listed, 8, 550, 0, "partly.example", -5);
	/* ... fully lifted: the content was judged alone, the spam counts */
	domain_messages(&mods, &loop, cfg, "198.18.5.5", listed, 8, 250, HOOK_FLAG_SPAM, "lifted.example", -6);
	/* delivered thanks to the lift: the domain's mail, not the IP's (the IP is not credited) */
	domain_messages(&mods, &loop, cfg, "198.18.22.1", listed, 20, 250, 0, "good.example", -5);
	/* a virus always counts */
	domain_messages(&mods, &loop, cfg, "198.18.5.5", listed, 4, 550, HOOK_FLAG_VIRUS, "virus.example", 0);
	/* mail that only claims a domain (no AUTH_DOMAIN: nothing aligned) never touches it,
	 * nor does an AUTH_DOMAIN that is not a domain name (a rule or plugin's) */
	domain_messages(&mods, &loop, cfg, "198.18.21.1", NULL, 8, 550, 0, NULL, 0);
	domain_messages(&mods, &loop, cfg, "198.18.21.1", NULL, 8, 550, 0, "not a domain", 0);

	static const struct erow rows[] = {
		{ "good domain, clean IP: the bonus only", "198.18.3.3", "good.example", false, -1, 0, 0 },
		{ "good domain, listed IP: bonus and lift (at most lift_max)", "198.18.3.3", "good.example", true,
		  -1, -5, 0 },
		{ "case does not matter", "198.18.3.3", "GOOD.Example", true, -1, -5, 0 },
		{ "bad domain", "198.18.3.3", "bad.example", false, 0, 0, 3 },
		{ "bad domain, listed IP: no lift", "198.18.3.3", "bad.example", true, 0, 0, 3 },
		{ "refusals under the IP's penalties were not counted", "198.18.3.3", "shared.example", true, 0, 0, 0 },
		{ "nor under a partial lift", "198.18.3.3", "partly.example", true, 0, 0, 0 },
		{ "spam after a full lift counted", "198.18.3.3", "lifted.example", false, 0, 0, 3 },
		{ "viruses counted", "198.18.3.3", "virus.example", false, 0, 0, 3 },
		{ "unknown domain", "198.18.3.3", "new.example", true, 0, 0, 0 },
		{ "not authenticated: nothing", "198.18.3.3", NULL, true, 0, 0, 0 },
	};
	check_eom_rows(&mods, &loop, cfg, rows, sizeof(rows) / sizeof(rows[0]));
	/* the IP's history is kept as before, next to the domain's */
	{
		static const struct crow iprows[] = {
			{ "the IP of the refused messages turned bad", "198.18.20.1", false, VERDICT_CONTINUE, 0, NULL,
			  "REP_BAD", NULL },
			{ "the IP of unauthenticated refusals turned bad", "198.18.21.1", false, VERDICT_CONTINUE, 0, NULL,
			  "REP_BAD", NULL },
		};
		struct chain_result res;
		struct hook_env env;

		check_rows(&mods, &loop, cfg, iprows, 2);
		connect_verdict(&mods, &loop, cfg, "198.18.22.1", false, &res, &env);
		assert_null(hook_env_find_symbol(&env, "REP_GOOD"));
		hook_env_free_outputs(&env);
	}
	chain_modules_free(&mods);
	run_for(&loop, 20);
	config_free(cfg);

	/* auth_domain: false: no end-of-data stage, nothing recorded per domain */
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s/db\"\n  flush_interval: 10ms\n  auth_domain: false\n", dir);
	cfg = load_config(dir, conf);
	chain_modules_init(&mods, cfg, &loop, 0);
	assert_false(chain_wants(&mods, HOOK_EOM));
	domain_messages(&mods, &loop, cfg, "198.18.9.12", NULL, 20, 550, 0, "off.example", 0);
	chain_modules_free(&mods);
	run_for(&loop, 20);
	config_free(cfg);
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s/db\"\n", dir);
	cfg = load_config_with(dir, conf, "dnsbl:\n  action: score\n  lists:\n    - { zone: bl.test, weight: 3 }\n");
	chain_modules_init(&mods, cfg, &loop, 0);
	{
		static const struct erow offrows[] = {
			{ "auth_domain off: not recorded", "198.18.3.3", "off.example", false, 0, 0, 0 },
			{ "default lift_max 10 lifts both penalties", "198.18.3.3", "good.example", true, -1, -6, 0 },
		};
		check_eom_rows(&mods, &loop, cfg, offrows, 2);
	}
	chain_modules_free(&mods);
	run_for(&loop, 20);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- forgetting a client (the control socket's flush reputation) ------------------------ */

static bool forget_finished;

static void forget_done(struct reputation_forget *f)
{
	(void)f;
	forget_finished = true;
}

/* Posts a forget of ip's records ("ip:", "net:") and runs the loop until every worker state
 * has done its part. */
static void forget(uv_loop_t *loop, const char *ip, const char *net, struct reputation_forget *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->keys[0], sizeof(f->keys[0]), "ip:%s", ip);
	snprintf(f->keys[1], sizeof(f->keys[1]), "net:%s", net);
	f->nkeys = 2;
	f->done = forget_done;
	forget_finished = false;
	reputation_forget_post(f);
	for (int i = 0; i < 100 && !forget_finished; i++)
		run_for(loop, 10);
	assert_true(forget_finished);
}

static bool held(struct lmdb_store *st, const char *key)
{
	char buf[256];
	size_t len;

	return lmdb_store_get(st, key, strlen(key), buf, sizeof(buf), &len) == 1;
}

/* Two worker states on one store: one writes its batches at once, the other holds its
 * updates (a long flush_interval). A forget reaches both; the held updates are applied
 * before the deletes (a record must not come back when that worker writes later); the
 * client is unknown afterwards; the records of another client stay. */
static void test_module_forget(void **state)
{
	char dir[] = "/tmp/mxgate-repforget-XXXXXX";
	char conf[512], cmd[300], dbdir[300];
	struct mx_config *fast, *slow;
	struct chain_modules m0, m1;
	struct reputation_forget f;
	struct lmdb_store *st;
	uv_loop_t loop;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(dbdir, sizeof(dbdir), "%s/db", dir);
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s\"\n  flush_interval: 10ms\n", dbdir);
	fast = load_config(dir, conf);
	snprintf(conf, sizeof(conf), "  store: \"lmdb:%s\"\n  flush_interval: 60s\n", dbdir);
	slow = load_config(dir, conf);
	uv_loop_init(&loop);
	chain_modules_init(&m0, fast, &loop, 0);
	chain_modules_init(&m1, slow, &loop, 1);
	st = lmdb_store_open(dbdir, 0);
	assert_non_null(st);

	messages(&m0, &loop, fast, "198.18.5.5", 8, 550, HOOK_EOM, 0);
	messages(&m0, &loop, fast, "198.18.9.9", 8, 550, HOOK_EOM, 0);
	messages(&m1, &loop, slow, "198.18.5.5", 8, 550, HOOK_EOM, 0);   /* held in m1's queue */
	assert_true(held(st, "ip:198.18.5.5") && held(st, "net:198.18.5.0/24"));
	static const struct crow bad[] = {
		{ "before the forget: bad", "198.18.5.5", false, VERDICT_TEMPFAIL, 421, NULL, "REP_BAD", NULL },
		{ "another client: bad", "198.18.9.9", false, VERDICT_TEMPFAIL, 421, NULL, "REP_BAD", NULL },
	};
	check_rows(&m0, &loop, fast, bad, 2);

	forget(&loop, "198.18.5.5", "198.18.5.0/24", &f);
	assert_int_equal(f.workers, 2);
	assert_int_equal(atomic_load(&f.failed), 0);
	assert_false(held(st, "ip:198.18.5.5"));
	assert_false(held(st, "net:198.18.5.0/24"));
	assert_true(held(st, "ip:198.18.9.9"));
	static const struct crow after[] = {
		{ "after the forget: unknown", "198.18.5.5", false, VERDICT_CONTINUE, 0, NULL, NULL, NULL },
		{ "another client: still bad", "198.18.9.9", false, VERDICT_TEMPFAIL, 421, NULL, "REP_BAD", NULL },
	};
	check_rows(&m0, &loop, fast, after, 2);
	check_rows(&m1, &loop, slow, after, 1);

	/* the slow worker's last batch (at free) brings nothing back */
	chain_modules_free(&m1);
	run_for(&loop, 20);
	assert_false(held(st, "ip:198.18.5.5"));
	chain_modules_free(&m0);
	run_for(&loop, 20);

	/* no worker state with a store left: done at once, nobody did it */
	forget(&loop, "198.18.9.9", "198.18.9.0/24", &f);
	assert_int_equal(f.workers, 0);
	assert_true(held(st, "ip:198.18.9.9"));

	lmdb_store_close(st);
	run_for(&loop, 20);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(fast);
	config_free(slow);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* What senderauth hands over: only the transaction's AUTH_DOMAIN, only a domain name. */
static void test_auth_domain_handover(void **state)
{
	static const struct { const char *label, *desc; bool ok; } cases[] = {
		{ "a domain", "example.org", true },
		{ "mixed case (lowercased by the key)", "Example.ORG", true },
		{ "underscore label", "my_host.example", true },
		{ "no dot", "localhost", false },
		{ "empty label", "a..example", false },
		{ "leading dot", ".example.org", false },
		{ "a description, not a name", "authenticated domain", false },
		{ "a 64-octet label", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org", false },
		{ "empty", "", false },
	};
	struct hook_env env;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got;

		memset(&env, 0, sizeof(env));
		hook_env_add_symbol(&env, "AUTH_DOMAIN", 0, cases[i].desc);
		got = senderauth_auth_domain(&env);
		if ((got != NULL) != cases[i].ok)
			fail_msg("%s: %s", cases[i].label, got ? got : "NULL");
		hook_env_free_outputs(&env);
	}
	/* the session's symbols (an earlier stage or message) are not this message's */
	memset(&env, 0, sizeof(env));
	hook_env_add_symbol(&env, "AUTH_DOMAIN", 0, "leftover.example");
	env.txn_symbols_start = env.nsymbols;
	assert_null(senderauth_auth_domain(&env));
	hook_env_add_symbol(&env, "AUTH_DOMAIN", 0, "this.example");
	assert_string_equal(senderauth_auth_domain(&env), "this.example");
	hook_env_free_outputs(&env);
	memset(&env, 0, sizeof(env));
	assert_null(senderauth_auth_domain(&env));
}

/* A record as Redis returns it (HMGET a r t s v ts): numbers, nil fields, and values no
 * record of ours holds (a hostile or corrupted server) read safely. */
static void test_parse_redis(void **state)
{
	static const struct { const char *label; const char *v[6]; bool any; double a; uint64_t t; } rows[] = {
		{ "a record", { "3", "1", NULL, NULL, "0.5", "1700000000000" }, true, 3, 1700000000000ull },
		{ "absent", { NULL, NULL, NULL, NULL, NULL, NULL }, false, 0, 0 },
		{ "not numbers", { "x", "-2", "nan", "inf", "1e400", "soon" }, true, 0, 0 },
		{ "a time past 2^63 ms (UB to convert)", { "1", NULL, NULL, NULL, NULL, "7e100" }, true, 1, 0 },
		{ "a negative time", { "1", NULL, NULL, NULL, NULL, "-5" }, true, 1, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		redisReply el[6], *pel[6];
		struct reputation_counts rc;

		for (int k = 0; k < 6; k++) {
			memset(&el[k], 0, sizeof(el[k]));
			el[k].type = rows[i].v[k] ? REDIS_REPLY_STRING : REDIS_REPLY_NIL;
			el[k].str = (char *)rows[i].v[k];
			el[k].len = rows[i].v[k] ? strlen(rows[i].v[k]) : 0;
			pel[k] = &el[k];
		}
		if (reputation_parse_redis_counts((const redisReply *const *)pel, &rc) != rows[i].any ||
		    rc.c[REPUTATION_ACCEPTED] != rows[i].a || rc.t_ms != rows[i].t)
			fail_msg("%s: any %d a %g t %llu", rows[i].label, !rows[i].any, rc.c[0],
			    (unsigned long long)rc.t_ms);
		for (int k = 0; k < REPUTATION_NOUTCOMES; k++)
			if (!isfinite(rc.c[k]) || rc.c[k] < 0)
				fail_msg("%s: count %d is %g", rows[i].label, k, rc.c[k]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decay),
		cmocka_unit_test(test_score),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_parse_redis),
		cmocka_unit_test(test_cidr_allow_deny),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_module_lmdb),
		cmocka_unit_test(test_module_lists_only),
		cmocka_unit_test(test_module_forget),
		cmocka_unit_test(test_domain_key),
		cmocka_unit_test(test_ip_penalty),
		cmocka_unit_test(test_domain_lift_and_outcome),
		cmocka_unit_test(test_module_domains),
		cmocka_unit_test(test_auth_domain_handover),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
