/* test_senderdom.c — the sender-domain check's decision table (senderdom_decide), one row
 * per case of what the DNS said, and its helpers: which addresses are public, how an MX
 * answer item reads; the module through the chain against an in-loop fake DNS server
 * (fake_dns.h): an address only, NXDOMAIN, SERVFAIL, no answer, the skips, a session freed
 * while its lookup runs. The module against a real DNS server: tests/integration/
 * test_sender_domain.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/senderdom.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "dns_fixture.h"
#include "stage_fixture.h"

#define OK DNS_S_OK
#define NX DNS_S_NXDOMAIN
#define ND DNS_S_NODATA
#define SF DNS_S_SERVFAIL
#define TO DNS_S_TIMEOUT

struct row {
	const char *what;
	bool check;                     /* check_mx_hosts */
	struct senderdom_facts f;
	enum senderdom_result want;
	enum senderdom_phase next;      /* when want is PENDING */
};

#define MXP SENDERDOM_PHASE_MX
#define ADP SENDERDOM_PHASE_ADDR
#define HOP SENDERDOM_PHASE_HOSTS

static const struct row rows[] = {
	/* the MX answer */
	{ "an MX: found, no more asked", false, { MXP, OK, false, 1 }, SENDERDOM_OK, MXP },
	{ "NXDOMAIN: not found at once, no A/AAAA asked", false, { MXP, NX }, SENDERDOM_UNKNOWN, MXP },
	{ "NODATA for MX: the A and AAAA next", false, { MXP, ND }, SENDERDOM_PENDING, ADP },
	{ "SERVFAIL for MX: an address still proves the domain", false, { MXP, SF }, SENDERDOM_PENDING, ADP },
	{ "timeout for MX: the A and AAAA next", false, { MXP, TO }, SENDERDOM_PENDING, ADP },
	{ "null MX", false, { MXP, OK, true, 0 }, SENDERDOM_NULL_MX, MXP },
	{ "null MX with check_mx_hosts", true, { MXP, OK, true, 0 }, SENDERDOM_NULL_MX, MXP },
	{ "check_mx_hosts: the hosts next", true, { MXP, OK, false, 2 }, SENDERDOM_PENDING, HOP },
	{ "check_mx_hosts: only '.' beside addresses, no host", true, { MXP, OK, false, 0 },
	  SENDERDOM_BAD_MX, MXP },
	/* the domain's own addresses (no MX) */
	{ "A only", false, { ADP, ND, .found_public = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "A answered, AAAA pending: decided already", false, { ADP, ND, .pending = 1, .found_public = 1 },
	  SENDERDOM_OK, ADP },
	{ "a private address is an address without check_mx_hosts", false,
	  { ADP, ND, .found_private = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "implicit MX on loopback with check_mx_hosts", true, { ADP, ND, .found_private = 1, .none = 1 },
	  SENDERDOM_BAD_MX, ADP },
	{ "implicit MX public with check_mx_hosts", true, { ADP, ND, .found_public = 1, .none = 1 },
	  SENDERDOM_OK, ADP },
	{ "one answer still to come", false, { ADP, ND, .pending = 1, .none = 1 }, SENDERDOM_PENDING, ADP },
	{ "NODATA for MX, A and AAAA: not found", false, { ADP, ND, .none = 2 }, SENDERDOM_UNKNOWN, ADP },
	{ "MX failed, no A/AAAA: cannot tell", false, { ADP, SF, .none = 2 }, SENDERDOM_TEMPERROR, ADP },
	{ "MX failed, A found: found", false, { ADP, TO, .found_public = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "AAAA failed, A none: cannot tell", false, { ADP, ND, .temp = 1, .none = 1 },
	  SENDERDOM_TEMPERROR, ADP },
	{ "private A, failed AAAA, check_mx_hosts: cannot tell", true,
	  { ADP, ND, .found_private = 1, .temp = 1 }, SENDERDOM_TEMPERROR, ADP },
	/* the MX hosts' addresses (check_mx_hosts) */
	{ "an MX host with a public address", true, { HOP, OK, false, 2, .pending = 3, .found_public = 1 },
	  SENDERDOM_OK, HOP },
	{ "MX hosts that resolve to nothing", true, { HOP, OK, false, 2, .none = 4 }, SENDERDOM_BAD_MX, HOP },
	{ "MX hosts on private addresses only", true, { HOP, OK, false, 1, .found_private = 1, .none = 1 },
	  SENDERDOM_BAD_MX, HOP },
	{ "an MX host's lookup failed, none public", true, { HOP, OK, false, 2, .temp = 1, .none = 3 },
	  SENDERDOM_TEMPERROR, HOP },
	{ "MX hosts pending", true, { HOP, OK, false, 1, .pending = 2 }, SENDERDOM_PENDING, HOP },
};

static void test_decide(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		enum senderdom_phase next = (enum senderdom_phase)99;
		enum senderdom_result r = senderdom_decide(&rows[i].f, rows[i].check, &next);

		if (r != rows[i].want || (r == SENDERDOM_PENDING && next != rows[i].next))
			fail_msg("%s: got %s next %d, want %s next %d", rows[i].what,
			    senderdom_result_name(r), (int)next, senderdom_result_name(rows[i].want),
			    (int)rows[i].next);
	}
}

static void test_public(void **state)
{
	static const struct { const char *ip; bool pub; } t[] = {
		{ "198.51.100.7", true }, { "192.0.2.1", true }, { "2001:db8::25", true },
		{ "127.0.0.1", false }, { "127.9.9.9", false }, { "10.1.2.3", false },
		{ "172.16.0.1", false }, { "172.31.255.255", false }, { "172.32.0.1", true },
		{ "192.168.1.1", false }, { "169.254.1.1", false }, { "100.64.0.1", false },
		{ "0.0.0.0", false }, { "255.255.255.255", false }, { "224.0.0.1", false },
		{ "::1", false }, { "::", false }, { "fd00::1", false }, { "fe80::1", false },
		{ "ff02::1", false }, { "::ffff:127.0.0.1", false }, { "::ffff:198.51.100.7", true },
		{ "not an address", false }, { "", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (senderdom_addr_is_public(t[i].ip) != t[i].pub)
			fail_msg("%s: want %s", t[i].ip, t[i].pub ? "public" : "not public");
	assert_false(senderdom_addr_is_public(NULL));
}

static void test_mx_item(void **state)
{
	char name[64];
	unsigned pref = 99;

	(void)state;
	assert_int_equal(senderdom_mx_item("10 mx.example.org", &pref, name, sizeof(name)), 0);
	assert_int_equal(pref, 10);
	assert_string_equal(name, "mx.example.org");
	assert_int_equal(senderdom_mx_item("0 .", &pref, name, sizeof(name)), 0);
	assert_int_equal(pref, 0);
	assert_string_equal(name, ".");
	assert_int_equal(senderdom_mx_item("65535 a", &pref, name, sizeof(name)), 0);
	assert_int_equal(senderdom_mx_item("65536 a", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("10", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("10 ", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("x a", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("1 0123456789", &pref, name, 8), -1);   /* does not fit */
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(senderdom_result_name(SENDERDOM_OK), "ok");
	assert_string_equal(senderdom_result_name(SENDERDOM_UNKNOWN), "unknown");
	assert_string_equal(senderdom_result_name(SENDERDOM_NULL_MX), "null_mx");
	assert_string_equal(senderdom_result_name(SENDERDOM_BAD_MX), "bad_mx");
	assert_string_equal(senderdom_result_name(SENDERDOM_TEMPERROR), "temperror");
}


/* ---- the module through the chain ---------------------------------------------------- */

static const struct fake_rr zone[] = {
	{ "aonly.test", 1, "198.51.100.7", 300 },
};

struct fixture {
	struct dns_fixture dns;
	struct mx_config cfg;
	struct chain_entry entries[1];
	struct chain_modules mods;
};

/* timeout_ms: the lookups' bound. The fixture's 300 ms only where a lookup must go unanswered
 * to its end (setup_short); elsewhere a bound no run reaches: a row that expects an answer
 * failed whenever the process was descheduled 300 ms before it came (shown with
 * tests/tools/jumpclock.c at 60 ms a clock read: test_chain_rows, test_chain_skips). */
static int setup_with(void **state, uint64_t timeout_ms)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct senderdom_config *c = &f->cfg.sender_domain;
	void *ws = NULL;

	dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
	f->cfg.dns.timeout = timeout_ms;
	f->cfg.dns.cache_size = 1000;
	c->enabled = true;
	c->unknown_code = 450;
	c->skip_allowed = true;
	c->scores = (struct senderdom_scores_config){ 3, 5, 2, 0 };
	assert_int_equal(senderdom_module.worker_init(&f->cfg, &f->dns.loop, 0, &ws), 0);
	assert_non_null(ws);
	f->entries[0] = (struct chain_entry){ &senderdom_module, ws, senderdom_module.stages(ws), "sender_domain" };
	f->mods.v = f->entries;
	f->mods.n = 1;
	f->mods.any_stages = f->entries[0].stages;
	*state = f;
	return 0;
}

static int setup(void **state) { return setup_with(state, 60000); }
static int setup_short(void **state) { return setup_with(state, 300); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	senderdom_module.worker_free(f->entries[0].wstate);
	dns_fixture_stop(&f->dns);
	free(f);
	return 0;
}

/* MAIL FROM sender through the chain; the verdict, the queries it cost in *asked. */
static struct verdict mail(struct fixture *f, struct stage_sess *s, const char *sender, int *asked)
{
	struct verdict v;
	int before = f->dns.fd.queries;

	s->env.mail_from = (char *)sender;
	stage_run(&f->dns.loop, s, HOOK_MAIL, &v);
	*asked = f->dns.fd.queries - before;
	return v;
}

struct chain_row {
	const char *label, *sender, *symbol;
	enum verdict_action want;
	int code;
	const char *reply;
	int asked;              /* queries to the server (-1: any) */
};

/* Each row's sender through the chain, in order (a row may find an earlier one's answer in
 * the cache). */
static void check_rows(struct fixture *f, const struct chain_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct stage_sess s;
		struct verdict v;
		int asked;

		stage_sess_init(&s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, "198.18.1.7", "192.0.2.25");
		v = mail(f, &s, rows[i].sender, &asked);
		if (v.action != rows[i].want || (rows[i].code && v.code != rows[i].code) ||
		    strncmp(v.reply, rows[i].reply, strlen(rows[i].reply)) != 0)
			fail_msg("%s: %d %d %s", rows[i].label, v.action, v.code, v.reply);
		if (rows[i].asked >= 0 && asked != rows[i].asked)
			fail_msg("%s: %d queries, want %d", rows[i].label, asked, rows[i].asked);
		if (rows[i].symbol && hook_env_find_symbol(&s.env, rows[i].symbol) == NULL)
			fail_msg("%s: no %s", rows[i].label, rows[i].symbol);
		if (!rows[i].symbol && s.env.nsymbols != 0)
			fail_msg("%s: unexpected %s", rows[i].label, s.env.symbols[0].name);
		stage_sess_free(&s);
	}
}

static void test_chain_rows(void **state)
{
	static const struct chain_row rows[] = {
		{ "no MX, an A record", "a@aonly.test", NULL, VERDICT_CONTINUE, 0, "", -1 },
		{ "NXDOMAIN: MX asked only", "a@nx1.test", "SENDER_DOMAIN_UNKNOWN", VERDICT_TEMPFAIL, 450,
		  "4.1.8 Sender address rejected: Domain not found", 1 },
		{ "the same, another case and a trailing dot: cached", "b@NX1.Test.", "SENDER_DOMAIN_UNKNOWN",
		  VERDICT_TEMPFAIL, 450, "4.1.8", 0 },
		{ "SERVFAIL everywhere: on_error tempfail", "a@servfail.one.test", "SENDER_DOMAIN_TEMPERROR",
		  VERDICT_TEMPFAIL, 451, "4.4.3", -1 },
		{ "the null sender", "", NULL, VERDICT_CONTINUE, 0, "", 0 },
		{ "no domain", "postmaster", NULL, VERDICT_CONTINUE, 0, "", 0 },
		{ "an address literal", "a@[192.0.2.1]", NULL, VERDICT_CONTINUE, 0, "", 0 },
		{ "not a host name (no A-label form): unknown without a query", "a@x\xff.test",
		  "SENDER_DOMAIN_UNKNOWN", VERDICT_TEMPFAIL, 450, "4.1.8", 0 },
	};

	check_rows(*state, rows, sizeof(rows) / sizeof(rows[0]));
}

/* The server never answers (setup_short: 300 ms a query): each query times out, then the
 * action on error. */
static void test_chain_unanswered(void **state)
{
	static const struct chain_row rows[] = {
		{ "no answer at all: the timeouts, then on_error", "a@drop.one.test", "SENDER_DOMAIN_TEMPERROR",
		  VERDICT_TEMPFAIL, 451, "4.4.3", 3 },
	};

	check_rows(*state, rows, sizeof(rows) / sizeof(rows[0]));
}

/* An authenticated client, and one allow-listed by an earlier module, are not checked. */
static void test_chain_skips(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	int asked;

	stage_sess_init(&s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, "198.18.1.7", "192.0.2.25");
	assert_false(chain_settled(&s.chain, HOOK_MAIL));   /* the next sender will be asked */
	s.env.auth_user = "alice";
	assert_true(chain_settled(&s.chain, HOOK_MAIL));    /* never asked: may go ahead */
	assert_int_equal(mail(f, &s, "a@nx2.test", &asked).action, VERDICT_CONTINUE);
	assert_int_equal(asked, 0);
	stage_sess_free(&s);

	stage_sess_init(&s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, "198.18.1.7", "192.0.2.25");
	hook_env_add_symbol(&s.env, "REP_ALLOW", -5, "allow-listed");
	assert_true(chain_settled(&s.chain, HOOK_MAIL));
	assert_int_equal(mail(f, &s, "a@nx2.test", &asked).action, VERDICT_CONTINUE);
	assert_int_equal(asked, 0);
	stage_sess_free(&s);

	/* action: score refuses nothing, the symbol stays */
	f->cfg.sender_domain.action = SENDERDOM_ACTION_SCORE;
	stage_sess_init(&s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, "198.18.1.7", "192.0.2.25");
	assert_int_equal(mail(f, &s, "a@nx2.test", &asked).action, VERDICT_CONTINUE);
	assert_int_equal(asked, 1);
	assert_non_null(hook_env_find_symbol(&s.env, "SENDER_DOMAIN_UNKNOWN"));
	stage_sess_free(&s);
	f->cfg.sender_domain.action = SENDERDOM_ACTION_REJECT;
}

static void stage_ignore_cb(void *arg, const struct verdict *v)
{
	(void)v;
	(*(int *)arg)++;
}

static void test_timer_cb(uv_timer_t *t) { *(int *)t->data = 1; }

/* The session goes away while its lookup waits: nothing is called back into it (ASan). */
static void test_chain_freed_mid_lookup(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	uv_timer_t t;
	int done = 0, fired = 0;

	stage_sess_init(&s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, "198.18.1.7", "192.0.2.25");
	s.env.mail_from = "a@drop.two.test";
	chain_run(&s.chain, HOOK_MAIL, stage_ignore_cb, &done);
	uv_run(&f->dns.loop, UV_RUN_NOWAIT);
	assert_int_equal(done, 0);
	stage_sess_free(&s);
	uv_timer_init(&f->dns.loop, &t);
	t.data = &fired;
	uv_timer_start(&t, test_timer_cb, 800, 0);   /* past the queries' deadlines */
	while (!fired)
		uv_run(&f->dns.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f->dns.loop, UV_RUN_NOWAIT);
	assert_int_equal(done, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_public),
		cmocka_unit_test(test_mx_item),
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_chain_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_skips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_unanswered, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_chain_freed_mid_lookup, setup_short, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
