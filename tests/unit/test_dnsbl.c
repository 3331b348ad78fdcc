/* test_dnsbl.c — code filters, answer classification, symbol names, reason templates, and
 * the module end to end through the chain against a fake DNS server in the test's loop:
 * listed, unlisted, whitelisted (weights summed), error codes, filtered codes, bitmask,
 * timeout, domain lists at HELO and MAIL, tempfail action, pass cache, session freed with
 * lookups in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/dnsbl.h"
#include "filters/dns.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "dns_fixture.h"
#include "uv_wait.h"

/* ---- pure pieces -------------------------------------------------------------------- */

static uint32_t ip4(const char *s)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return ntohl(a.s_addr);
}

static void test_code_filters(void **state)
{
	static const struct { const char *label, *code, *answer; bool match; } rows[] = {
		{ "range low end", "127.0.0.2-127.0.0.11", "127.0.0.2", true },
		{ "range high end", "127.0.0.2-127.0.0.11", "127.0.0.11", true },
		{ "range below", "127.0.0.2-127.0.0.11", "127.0.0.1", false },
		{ "range above", "127.0.0.2-127.0.0.11", "127.0.0.12", false },
		{ "single hit", "127.0.0.4", "127.0.0.4", true },
		{ "single miss", "127.0.0.4", "127.0.0.5", false },
		{ "bitmask hex hit", "0x04/bitmask", "127.0.0.6", true },
		{ "bitmask hex miss", "0x04/bitmask", "127.0.0.3", false },
		{ "bitmask decimal", "8/bitmask", "127.0.0.8", true },
		{ "bitmask dotted", "127.0.0.2/bitmask", "127.0.0.3", true },
		{ "cidr", "127.0.1.0/24", "127.0.1.200", true },
		{ "cidr miss", "127.0.1.0/24", "127.0.2.1", false },
		{ "spaces before", "  127.0.0.2", "127.0.0.2", true },
		/* postscreen's reply filters (postscreen_dnsbl_sites zone=FILTER*WEIGHT) */
		{ "postscreen range", "127.0.0.[2..11]", "127.0.0.11", true },
		{ "postscreen range low", "127.0.0.[2..11]", "127.0.0.2", true },
		{ "postscreen range miss", "127.0.0.[2..11]", "127.0.0.12", false },
		{ "postscreen list", "127.0.0.[17;18]", "127.0.0.18", true },
		{ "postscreen list miss", "127.0.0.[17;18]", "127.0.0.19", false },
		{ "postscreen dnswl", "127.0.[2..15].1", "127.0.9.1", true },
		{ "postscreen dnswl other trust", "127.0.[2..15].1", "127.0.9.2", false },
		{ "postscreen dnswl other category", "127.0.[2..15].1", "127.0.16.1", false },
		{ "postscreen mixed", "127.0.0.[2;4..6]", "127.0.0.5", true },
		{ "postscreen mixed miss", "127.0.0.[2;4..6]", "127.0.0.3", false },
		{ "postscreen one octet bracketed", "127.0.0.[4]", "127.0.0.4", true },
	};
	struct dnsbl_code c;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (dnsbl_code_parse(rows[i].code, &c) != 0)
			fail_msg("%s: \"%s\" did not parse", rows[i].label, rows[i].code);
		if (dnsbl_code_match(&c, 1, ip4(rows[i].answer)) != rows[i].match)
			fail_msg("%s: %s vs %s", rows[i].label, rows[i].code, rows[i].answer);
	}
	static const char *const bad[] = { "", "127.0.0.11-127.0.0.2", "x", "0/bitmask",
		"127.0.0.2-", "127.0.0.0/33", "zz/bitmask", "127.0.0.256", "127.0.0.[2..]",
		"127.0.0.[11..2]", "127.0.0.[256]", "127.0.0.[2", "127.0.0.[]", "127.0.0.[2;]",
		"127.0.[2..15]", "127.0.0.2.[3]", "127.0.0.[2..3..4]", "127.0.0.[x]", "127.0.0.[2]x",
		"127.0.0.2]", "127.0..[2]", NULL };
	for (size_t i = 0; bad[i]; i++)
		if (dnsbl_code_parse(bad[i], &c) == 0)
			fail_msg("\"%s\" parsed", bad[i]);
	/* several entries: any match counts; none = every 127/8 listing */
	struct dnsbl_code two[2];
	assert_int_equal(dnsbl_code_parse("127.0.0.2", &two[0]), 0);
	assert_int_equal(dnsbl_code_parse("127.0.0.10", &two[1]), 0);
	assert_true(dnsbl_code_match(two, 2, ip4("127.0.0.10")));
	assert_false(dnsbl_code_match(two, 2, ip4("127.0.0.3")));
	assert_true(dnsbl_code_match(NULL, 0, ip4("127.0.0.3")));
}

static void test_answer_classes(void **state)
{
	static const struct { const char *label, *answer; enum dnsbl_answer_class want; } rows[] = {
		{ "listing", "127.0.0.2", DNSBL_ANSWER_LISTED },
		{ "outside the filter", "127.0.0.12", DNSBL_ANSWER_FILTERED },
		{ "query refused", "127.255.255.254", DNSBL_ANSWER_ERROR },
		{ "public resolver", "127.255.255.252", DNSBL_ANSWER_ERROR },
		{ "excessive queries", "127.255.255.255", DNSBL_ANSWER_ERROR },
		{ "hijacked NXDOMAIN", "198.51.100.1", DNSBL_ANSWER_ERROR },
		{ "zero address", "0.0.0.0", DNSBL_ANSWER_ERROR },
		{ "127.255.254.x is still a listing range", "127.255.254.1", DNSBL_ANSWER_FILTERED },
	};
	struct dnsbl_code c;

	(void)state;
	assert_int_equal(dnsbl_code_parse("127.0.0.2-127.0.0.11", &c), 0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (dnsbl_answer_classify(&c, 1, ip4(rows[i].answer)) != rows[i].want)
			fail_msg("%s: %s", rows[i].label, rows[i].answer);
	assert_int_equal(dnsbl_answer_classify(NULL, 0, ip4("127.255.255.254")), DNSBL_ANSWER_ERROR);
	assert_int_equal(dnsbl_answer_classify(NULL, 0, ip4("127.0.0.200")), DNSBL_ANSWER_LISTED);
}

static void test_symbols_and_reasons(void **state)
{
	char out[64], r[128];

	(void)state;
	dnsbl_symbol_name("zen.spamhaus.org", out, sizeof(out));
	assert_string_equal(out, "DNSBL_ZEN_SPAMHAUS_ORG");
	dnsbl_symbol_name("b-l.test", out, sizeof(out));
	assert_string_equal(out, "DNSBL_B_L_TEST");
	dnsbl_symbol_name("a.very.long.zone.name.that.does.not.fit.into.the.buffer.test", out, 20);
	assert_int_equal(strlen(out), 19);
	dnsbl_reason_format("{zone} says {ip}: {txt}!", "198.18.1.7", "bl.test", "bad\r\nhost", r,
	    sizeof(r));
	assert_string_equal(r, "bl.test says 198.18.1.7: bad  host!");
	dnsbl_reason_format(NULL, "1.2.3.4", "z", "plain txt", r, sizeof(r));
	assert_string_equal(r, "plain txt");
	dnsbl_reason_format("{ip}{ip}{ip}", "198.18.100.100", "z", "", r, 20);
	assert_int_equal(strlen(r), 19);
}

/* ---- the module through the chain --------------------------------------------------- */

static const struct fake_rr zone[] = {
	{ "7.1.18.198.bl.test", 1, "127.0.0.2", 300 },
	{ "7.1.18.198.bl.test", 16, "Listed in bl.test for 198.18.1.7", 300 },
	{ "7.3.18.198.bl.test", 1, "127.0.0.2", 300 },
	{ "7.3.18.198.wl.test", 1, "127.0.0.2", 300 },
	{ "7.4.18.198.bl.test", 1, "127.255.255.254", 300 },
	{ "7.5.18.198.bl.test", 1, "127.0.0.12", 300 },
	{ "7.6.18.198.bl.test", 1, "192.0.2.99", 300 },
	{ "7.7.18.198.bm.test", 1, "127.0.0.6", 300 },
	{ "7.8.18.198.bm.test", 1, "127.0.0.3", 300 },
	{ "7.9.18.198.bm.test", 1, "127.0.0.4", 300 },
	{ "7.9.18.198.bl.test", 1, "127.0.0.3", 300 },
	{ "spam.example.dbl.test", 1, "127.0.1.2", 300 },
	{ "spam.example.dbl.test", 16, "spam domain", 300 },
};

struct fixture {
	struct dns_fixture dns;
	struct mx_config cfg;
	struct dnsbl_list_config lists[4];
	char *codes_bl[1], *codes_bm[1];
	struct chain_modules mods;
	struct chain_entry entry;
	int slot;
};

struct run_result {
	int done;
	struct verdict v;
};

static void done_cb(void *arg, const struct verdict *v)
{
	struct run_result *r = arg;

	r->done++;
	r->v = *v;
}

/* The dnsbl section, after dns_fixture_start (its dns section: no cache, every run asks the
 * server: the pass cache is what we test). */
static void fixture_config(struct fixture *f, int action, uint64_t pass_ttl)
{
	struct mx_config *c = &f->cfg;

	/* a timeout the tests but one do not test: one a stalled machine meets (400 ms timed out
	 * lookups the fake answers at once, seen after a stall); test_timeout_and_release has
	 * its own (setup_timeout) */
	c->dns.timeout = 30000;
	f->codes_bl[0] = "127.0.0.2-127.0.0.11";
	f->codes_bm[0] = "0x04/bitmask";
	memset(f->lists, 0, sizeof(f->lists));
	f->lists[0] = (struct dnsbl_list_config){ .zone = "bl.test", .weight = 3,
		.codes = { f->codes_bl, 1 } };
	f->lists[1] = (struct dnsbl_list_config){ .zone = "wl.test", .weight = -5 };
	f->lists[2] = (struct dnsbl_list_config){ .zone = "bm.test", .weight = 1,
		.codes = { f->codes_bm, 1 } };
	f->lists[3] = (struct dnsbl_list_config){ .zone = "dbl.test", .weight = 3,
		.type = DNSBL_TYPE_DOMAIN };
	c->dnsbl.threshold = 3;
	c->dnsbl.action = action;
	c->dnsbl.lists.v = f->lists;
	c->dnsbl.lists.n = 4;
	c->dnsbl.pass_ttl = pass_ttl;
	c->dnsbl.error_flag_after = 2;
}

/* Builds the chain modules with only dnsbl on. */
static void fixture_modules(struct fixture *f)
{
	void *ws = NULL;

	memset(&f->mods, 0, sizeof(f->mods));
	f->slot = -1;
	for (size_t i = 0; i < hook_nmodules; i++)
		if (hook_modules[i] == &dnsbl_module)
			f->slot = (int)i;
	assert_true(f->slot >= 0);
	assert_int_equal(dnsbl_module.worker_init(&f->cfg, &f->dns.loop, 0, &ws), 0);
	assert_non_null(ws);
	f->slot = 0;   /* the only entry */
	chain_modules_single(&f->mods, &f->entry, &dnsbl_module, ws);
}

static int setup_action(void **state, int action, uint64_t pass_ttl, double allow_threshold)
{
	struct fixture *f = calloc(1, sizeof(*f));

	dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
	fixture_config(f, action, pass_ttl);
	f->cfg.dnsbl.allow_threshold = allow_threshold;
	fixture_modules(f);
	*state = f;
	return 0;
}

static int setup(void **state) { return setup_action(state, DNSBL_ACTION_REJECT, 0, 0); }
static int setup_tempfail(void **state) { return setup_action(state, DNSBL_ACTION_TEMPFAIL, 0, 0); }
static int setup_pass(void **state) { return setup_action(state, DNSBL_ACTION_REJECT, 3600000, 0); }
static int setup_delay(void **state)
{
	int rc = setup_action(state, DNSBL_ACTION_DELAY, 0, 0);

	((struct fixture *)*state)->cfg.dnsbl.delay = 7000;
	return rc;
}

/* dns.timeout 400 ms: the test of it */
static int setup_timeout(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
	fixture_config(f, DNSBL_ACTION_REJECT, 0);
	f->cfg.dns.timeout = 400;
	fixture_modules(f);
	*state = f;
	return 0;
}

/* postscreen_dnsbl_whitelist_threshold -1, with the pass cache */
static int setup_allow(void **state) { return setup_action(state, DNSBL_ACTION_REJECT, 3600000, -1); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	dnsbl_module.worker_free(f->entry.wstate);
	dns_fixture_stop(&f->dns);
	free(f);
	return 0;
}

struct sess {
	struct hook_env env;
	struct chain chain;
};

static void sess_init(struct fixture *f, struct sess *s, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&s->env.client;

	memset(s, 0, sizeof(*s));
	s->env.session_id = "t";
	s->env.loop = &f->dns.loop;
	s->env.cfg = &f->cfg;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin->sin_addr);
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "%s", ip);
	chain_init(&s->chain, &f->mods, &s->env, &f->dns.timer);
}

static void sess_free(struct sess *s)
{
	chain_release(&s->chain);
	hook_env_free_outputs(&s->env);
}

static struct verdict run_stage(struct fixture *f, struct sess *s, enum hook_stage st)
{
	struct run_result r = { 0 };

	chain_run(&s->chain, st, done_cb, &r);
	run_until_count(&f->dns.loop, &r.done, 1, 3000);
	assert_int_equal(r.done, 1);
	return r.v;
}

static double sym(const struct hook_env *env, const char *name, bool *found)
{
	const struct hook_symbol *s = hook_env_find_symbol(env, name);

	*found = s != NULL;
	return s ? s->score : 0;
}

static void test_connect_rows(void **state)
{
	static const struct {
		const char *label, *ip;
		enum verdict_action want;
		const char *reply_has;      /* substring of the reply, or NULL */
		double score;               /* env->score afterwards */
	} rows[] = {
		{ "listed: 550 naming the zone and TXT", "198.18.1.7", VERDICT_REJECT,
		  "blocked using bl.test; Listed in bl.test for 198.18.1.7", 3 },
		{ "unlisted", "198.18.2.7", VERDICT_CONTINUE, NULL, 0 },
		{ "whitelist pulls the sum below", "198.18.3.7", VERDICT_CONTINUE, NULL, -2 },
		{ "127.255.255.254 is an error, not a listing", "198.18.4.7", VERDICT_CONTINUE, NULL, 0 },
		{ "answer outside the codes", "198.18.5.7", VERDICT_CONTINUE, NULL, 0 },
		{ "answer outside 127/8", "198.18.6.7", VERDICT_CONTINUE, NULL, 0 },
		{ "bitmask hit alone is below threshold", "198.18.7.7", VERDICT_CONTINUE, NULL, 1 },
		{ "bitmask miss", "198.18.8.7", VERDICT_CONTINUE, NULL, 0 },
		{ "two lists summed reach the threshold", "198.18.9.7", VERDICT_REJECT, "bl.test", 4 },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sess s;
		struct verdict v;

		sess_init(f, &s, rows[i].ip);
		v = run_stage(f, &s, HOOK_CONNECT);
		if (v.action != rows[i].want)
			fail_msg("%s: action %d reply \"%s\"", rows[i].label, v.action, v.reply);
		if (rows[i].reply_has && strstr(v.reply, rows[i].reply_has) == NULL)
			fail_msg("%s: reply \"%s\"", rows[i].label, v.reply);
		if (rows[i].want == VERDICT_REJECT && (v.code != 550 || strncmp(v.reply, "5.7.1 ", 6)))
			fail_msg("%s: code %d reply \"%s\"", rows[i].label, v.code, v.reply);
		if (s.env.score != rows[i].score)
			fail_msg("%s: score %g want %g", rows[i].label, s.env.score, rows[i].score);
		sess_free(&s);
	}
	/* the two error answers (127.255.255.254, 192.0.2.99) were counted for bl.test */
	assert_true(dnsbl_list_errors("bl.test") >= 2);
	assert_int_equal(dnsbl_list_errors("wl.test"), 0);
	assert_int_equal(dnsbl_list_errors("never.configured"), 0);
}

static void test_symbols(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	bool found;

	sess_init(f, &s, "198.18.3.7");
	run_stage(f, &s, HOOK_CONNECT);
	assert_true(sym(&s.env, "DNSBL_BL_TEST", &found) == 3 && found);
	assert_true(sym(&s.env, "DNSBL_WL_TEST", &found) == -5 && found);
	sym(&s.env, "DNSBL_BM_TEST", &found);
	assert_false(found);
	sess_free(&s);
}

static void test_domain_lists(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct verdict v;

	sess_init(f, &s, "198.18.2.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	snprintf(s.env.helo, sizeof(s.env.helo), "good.example");
	assert_int_equal(run_stage(f, &s, HOOK_HELO).action, VERDICT_CONTINUE);
	s.env.mail_from = "a@spam.example";
	v = run_stage(f, &s, HOOK_MAIL);
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_non_null(strstr(v.reply, "dbl.test"));
	assert_non_null(strstr(v.reply, "spam domain"));
	s.env.mail_from = "";	/* null sender: nothing to look up */
	assert_int_equal(run_stage(f, &s, HOOK_MAIL).action, VERDICT_CONTINUE);
	s.env.mail_from = NULL;
	sess_free(&s);

	sess_init(f, &s, "198.18.2.7");
	snprintf(s.env.helo, sizeof(s.env.helo), "spam.example.");	/* trailing dot */
	v = run_stage(f, &s, HOOK_HELO);
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_non_null(strstr(v.reply, "dbl.test"));
	assert_true(s.env.score == 3);
	v = run_stage(f, &s, HOOK_HELO);	/* EHLO again (after STARTTLS): counted once */
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_true(s.env.score == 3);
	snprintf(s.env.helo, sizeof(s.env.helo), "[198.18.2.7]");	/* literals are not looked up */
	assert_int_equal(run_stage(f, &s, HOOK_HELO).action, VERDICT_CONTINUE);
	s.env.mail_from = "a@good.example";	/* the new HELO replaced the listed one */
	assert_int_equal(run_stage(f, &s, HOOK_MAIL).action, VERDICT_CONTINUE);
	s.env.mail_from = NULL;
	sess_free(&s);
}

static void test_tempfail_action(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct verdict v;

	sess_init(f, &s, "198.18.1.7");
	v = run_stage(f, &s, HOOK_CONNECT);
	assert_int_equal(v.action, VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 450);
	assert_non_null(strstr(v.reply, "4.7.1"));
	assert_non_null(strstr(v.reply, "bl.test"));
	sess_free(&s);
}

/* action: delay, as reputation's deny_action: delay (spamd's tarpit for its blacklists):
 * the listed client's reply is held `delay` (at connect: the greeting), and it is refused as
 * with reject, never served. A client the lists do not name is not held. */
static void test_delay_action(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct verdict v;

	sess_init(f, &s, "198.18.1.7");
	v = run_stage(f, &s, HOOK_CONNECT);
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_int_equal(v.delay_ms, 7000);
	assert_non_null(strstr(v.reply, "5.7.1"));
	assert_non_null(strstr(v.reply, "bl.test"));
	sess_free(&s);
	sess_init(f, &s, "198.18.2.7");         /* not listed */
	v = run_stage(f, &s, HOOK_CONNECT);
	assert_int_equal(v.action, VERDICT_CONTINUE);
	assert_int_equal(v.delay_ms, 0);
	sess_free(&s);
}

static void test_pass_cache(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	int q0;
	bool found;

	sess_init(f, &s, "198.18.3.7");	/* whitelisted: passes */
	run_stage(f, &s, HOOK_CONNECT);
	sess_free(&s);
	q0 = f->dns.fd.queries;
	sess_init(f, &s, "198.18.3.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	assert_int_equal(f->dns.fd.queries, q0);	/* not asked again */
	sym(&s.env, "DNSBL_WL_TEST", &found);
	assert_true(found);	/* the pass remembers the zones that hit */
	assert_true(s.env.score == -2);
	sess_free(&s);
	/* a listed client is never pass-cached */
	sess_init(f, &s, "198.18.1.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_REJECT);
	sess_free(&s);
	q0 = f->dns.fd.queries;
	sess_init(f, &s, "198.18.1.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_REJECT);
	assert_true(f->dns.fd.queries > q0);
	sess_free(&s);
}

static void test_allow_threshold(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	bool found;
	int q0;

	/* whitelisted (sum -2 <= -1): allow-listed, the other connect checks are skipped */
	sess_init(f, &s, "198.18.3.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_ACCEPT);
	sym(&s.env, DNSBL_ALLOW_SYMBOL, &found);
	assert_true(found);
	sess_free(&s);
	/* the same from the pass cache, without a query */
	q0 = f->dns.fd.queries;
	sess_init(f, &s, "198.18.3.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_ACCEPT);
	assert_int_equal(f->dns.fd.queries, q0);
	sym(&s.env, DNSBL_ALLOW_SYMBOL, &found);
	assert_true(found);
	sess_free(&s);
	/* an unlisted client (sum 0) is not */
	sess_init(f, &s, "198.18.2.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	sym(&s.env, DNSBL_ALLOW_SYMBOL, &found);
	assert_false(found);
	sess_free(&s);
	/* a listed one is refused as before */
	sess_init(f, &s, "198.18.1.7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_REJECT);
	sess_free(&s);
}

static void test_timeout_and_release(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct run_result r = { 0 };

	/* a server that never answers: bounded by dns.timeout, the client is served */
	f->dns.fd.rrs = NULL;
	f->dns.fd.nrrs = 0;
	fake_dns_stop(&f->dns.fd);
	{
		uv_udp_t *blackhole = calloc(1, sizeof(*blackhole));
		struct sockaddr_in sa;

		uv_run(&f->dns.loop, UV_RUN_NOWAIT);
		uv_udp_init(&f->dns.loop, blackhole);
		uv_ip4_addr("127.0.0.1", f->dns.fd.port, &sa);
		uv_udp_bind(blackhole, (const struct sockaddr *)&sa, 0);	/* bound, never reads */
		/* the server never answers: only the lookups' timeout ends the stage (its own
		 * bound, 3 s in run_stage, is a hang guard; no wall clock asserted) */
		sess_init(f, &s, "198.18.10.7");
		assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
		sess_free(&s);

		/* freed with lookups in flight: nothing fires afterwards */
		sess_init(f, &s, "198.18.11.7");
		chain_run(&s.chain, HOOK_CONNECT, done_cb, &r);
		sess_free(&s);
		run_until_count(&f->dns.loop, &r.done, 1, 800);
		assert_int_equal(r.done, 0);
		uv_close((uv_handle_t *)blackhole, (uv_close_cb)free);
	}
	uv_udp_init(&f->dns.loop, &f->dns.fd.udp);	/* teardown closes it again */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_filters),
		cmocka_unit_test(test_answer_classes),
		cmocka_unit_test(test_symbols_and_reasons),
		cmocka_unit_test_setup_teardown(test_connect_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symbols, setup, teardown),
		cmocka_unit_test_setup_teardown(test_domain_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tempfail_action, setup_tempfail, teardown),
		cmocka_unit_test_setup_teardown(test_delay_action, setup_delay, teardown),
		cmocka_unit_test_setup_teardown(test_pass_cache, setup_pass, teardown),
		cmocka_unit_test_setup_teardown(test_allow_threshold, setup_allow, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_and_release, setup_timeout, teardown),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
