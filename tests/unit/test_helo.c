/* test_helo.c — the HELO syntax table, and the module through the chain: claims-to-be-us,
 * address-literal mismatch, per-test actions, FCrDNS (the rdns module's lookup, judged by
 * helo) against a fake DNS server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/helo.h"
#include "filters/dns.h"
#include "filters/rdns.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "dns_fixture.h"
#include "stage_fixture.h"

static void test_syntax_table(void **state)
{
	static const struct { const char *label, *helo; enum helo_syntax want; const char *addr; } rows[] = {
		{ "plain FQDN", "mail.example.org", HELO_SYNTAX_FQDN, NULL },
		{ "trailing root dot", "mail.example.org.", HELO_SYNTAX_FQDN, NULL },
		{ "digits in labels", "mx1.2example.org", HELO_SYNTAX_FQDN, NULL },
		{ "hyphen inside", "my-host.example", HELO_SYNTAX_FQDN, NULL },
		{ "underscore tolerated", "my_host.example", HELO_SYNTAX_FQDN, NULL },
		{ "single label", "localhost", HELO_SYNTAX_NAME, NULL },
		{ "IPv4 literal", "[198.18.1.7]", HELO_SYNTAX_LITERAL4, "198.18.1.7" },
		{ "IPv6 literal", "[IPv6:2001:db8::1]", HELO_SYNTAX_LITERAL6, "2001:db8::1" },
		{ "IPv6 tag any case", "[ipv6:::1]", HELO_SYNTAX_LITERAL6, "::1" },
		{ "empty", "", HELO_SYNTAX_BAD, NULL },
		{ "bare IPv4 without brackets", "198.18.1.7", HELO_SYNTAX_BAD, NULL },
		{ "all-numeric TLD", "host.123", HELO_SYNTAX_BAD, NULL },
		{ "empty label", "a..example", HELO_SYNTAX_BAD, NULL },
		{ "leading dot", ".example.org", HELO_SYNTAX_BAD, NULL },
		{ "label starts with hyphen", "-a.example", HELO_SYNTAX_BAD, NULL },
		{ "label ends with hyphen", "a-.example", HELO_SYNTAX_BAD, NULL },
		{ "space", "a b.example", HELO_SYNTAX_BAD, NULL },
		{ "unclosed literal", "[198.18.1.7", HELO_SYNTAX_BAD, NULL },
		{ "bad literal", "[198.18.1.300]", HELO_SYNTAX_BAD, NULL },
		{ "IPv6 without tag", "[2001:db8::1]", HELO_SYNTAX_BAD, NULL },
		{ "64-octet label",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
		  HELO_SYNTAX_BAD, NULL },
		{ "shell junk", "$(reboot).example", HELO_SYNTAX_BAD, NULL },
	};
	char addr[64];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		enum helo_syntax got;

		addr[0] = '\0';
		got = helo_syntax_classify(rows[i].helo, addr, sizeof(addr));
		if (got != rows[i].want)
			fail_msg("%s: \"%s\" -> %d, want %d", rows[i].label, rows[i].helo, got, rows[i].want);
		if (rows[i].addr && strcmp(addr, rows[i].addr) != 0)
			fail_msg("%s: addr \"%s\"", rows[i].label, addr);
	}
	assert_int_equal(helo_syntax_classify(NULL, NULL, 0), HELO_SYNTAX_BAD);
}

/* ---- the module --------------------------------------------------------------------- */

static const struct fake_rr zone[] = {
	{ "7.1.18.198.in-addr.arpa", 12, "host.test", 300 },
	{ "host.test", 1, "198.18.1.7", 300 },
	{ "7.3.18.198.in-addr.arpa", 12, "liar.test", 300 },
	{ "liar.test", 1, "192.0.2.1", 300 },
	{ "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", 12, "six.test", 300 },
	{ "six.test", 28, "2001:db8::7", 300 },
	/* a PTR whose name's A query gets SERVFAIL: the name is a temporary failure */
	{ "7.5.18.198.in-addr.arpa", 12, "servfail.host.test", 300 },
};

struct fixture {
	struct dns_fixture dns;
	struct mx_config cfg;
	struct chain_modules mods;
	struct chain_entry entries[2];
	int slot, rdns_slot;
};

static int setup_with(void **state, int fcrdns_action)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct helo_config *h = &f->cfg.helo_checks;
	void *ws = NULL;

	dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
	/* a timeout no test here tests: one a stalled machine meets (a lookup the fake answers at
	 * once, seen after a 400 ms stall, timed out: the FCrDNS row failed) */
	f->cfg.dns.timeout = 30000;
	h->enabled = true;
	h->syntax = (struct helo_test_config){ true, HELO_ACTION_SCORE, 2 };
	h->not_fqdn = (struct helo_test_config){ true, HELO_ACTION_SCORE, 0.5 };
	h->claims_us = (struct helo_test_config){ true, HELO_ACTION_REJECT, 3 };
	h->literal_mismatch = (struct helo_test_config){ true, HELO_ACTION_SCORE, 1 };
	h->fcrdns = (struct helo_test_config){ true, fcrdns_action, 1 };
	f->slot = f->rdns_slot = -1;
	for (size_t i = 0; i < hook_nmodules; i++) {
		if (hook_modules[i] == &helo_module)
			f->slot = (int)i;
		if (hook_modules[i] == &rdns_module)
			f->rdns_slot = (int)i;
	}
	/* the FCrDNS test judges the answer of the rdns module, earlier in the chain */
	assert_true(f->slot >= 0 && f->rdns_slot >= 0 && f->rdns_slot < f->slot);
	assert_int_equal(helo_module.worker_init(&f->cfg, &f->dns.loop, 0, &ws), 0);
	/* two entries, as in the chain: rdns first, then helo_checks */
	f->entries[1] = (struct chain_entry){ &helo_module, ws, helo_module.stages(ws), "helo_checks" };
	assert_int_equal(rdns_module.worker_init(&f->cfg, &f->dns.loop, 0, &ws), 0);
	assert_non_null(ws);
	f->entries[0] = (struct chain_entry){ &rdns_module, ws, rdns_module.stages(ws), "rdns" };
	f->mods.v = f->entries;
	f->mods.n = 2;
	f->mods.any_stages = f->entries[0].stages | f->entries[1].stages;
	f->slot = 1;
	f->rdns_slot = 0;
	*state = f;
	return 0;
}

static int setup(void **state) { return setup_with(state, HELO_ACTION_SCORE); }
static int setup_reject(void **state) { return setup_with(state, HELO_ACTION_TEMPFAIL); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	helo_module.worker_free(f->entries[1].wstate);
	rdns_module.worker_free(f->entries[0].wstate);
	dns_fixture_stop(&f->dns);
	free(f);
	return 0;
}

static struct verdict run_stage(struct fixture *f, struct stage_sess *s, enum hook_stage st)
{
	struct verdict v;

	stage_run(&f->dns.loop, s, st, &v);
	return v;
}

static void sess_init(struct fixture *f, struct stage_sess *s, const char *ip, const char *local)
{
	stage_sess_init(s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, ip, local);
}

static void test_helo_rows(void **state)
{
	static const struct {
		const char *label, *helo, *symbol;
		enum verdict_action want;
	} rows[] = {
		{ "good name", "client.example", NULL, VERDICT_CONTINUE },
		{ "bad syntax scores", "bad..name", "HELO_BAD_SYNTAX", VERDICT_CONTINUE },
		{ "no dot", "localhost", "HELO_NOT_FQDN", VERDICT_CONTINUE },
		{ "claims our hostname: reject", "MX.example.test", "HELO_CLAIMS_US", VERDICT_REJECT },
		{ "claims our address", "[192.0.2.25]", "HELO_CLAIMS_US", VERDICT_REJECT },
		{ "literal of someone else", "[192.0.2.99]", "HELO_LITERAL_MISMATCH", VERDICT_CONTINUE },
		{ "literal of the client", "[198.18.2.7]", NULL, VERDICT_CONTINUE },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stage_sess s;
		struct verdict v;

		sess_init(f, &s, "198.18.2.7", "192.0.2.25");
		snprintf(s.env.helo, sizeof(s.env.helo), "%s", rows[i].helo);
		v = run_stage(f, &s, HOOK_HELO);
		if (v.action != rows[i].want)
			fail_msg("%s: action %d", rows[i].label, v.action);
		if (rows[i].symbol && hook_env_find_symbol(&s.env, rows[i].symbol) == NULL)
			fail_msg("%s: no %s", rows[i].label, rows[i].symbol);
		if (!rows[i].symbol && s.env.nsymbols != 0)
			fail_msg("%s: unexpected %s", rows[i].label, s.env.symbols[0].name);
		if (v.action == VERDICT_REJECT && (v.code != 550 || strncmp(v.reply, "5.7.1", 5)))
			fail_msg("%s: %d %s", rows[i].label, v.code, v.reply);
		stage_sess_free(&s);
	}
}

static void test_fcrdns(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;

	sess_init(f, &s, "198.18.1.7", "192.0.2.25");	/* PTR host.test -> A matches */
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	assert_string_equal(s.env.client_name, "host.test");
	assert_null(hook_env_find_symbol(&s.env, "NO_FCRDNS"));
	stage_sess_free(&s);

	sess_init(f, &s, "198.18.2.7", "192.0.2.25");	/* no PTR */
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	assert_string_equal(s.env.client_name, "");
	assert_non_null(hook_env_find_symbol(&s.env, "NO_FCRDNS"));
	stage_sess_free(&s);

	sess_init(f, &s, "198.18.3.7", "192.0.2.25");	/* PTR whose A is elsewhere */
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	assert_string_equal(s.env.client_name, "");
	assert_non_null(hook_env_find_symbol(&s.env, "NO_FCRDNS"));
	stage_sess_free(&s);
}

static void test_fcrdns_v6(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	struct sockaddr_in6 *sin6;

	sess_init(f, &s, "198.18.9.9", "192.0.2.25");
	sin6 = (struct sockaddr_in6 *)&s.env.client;
	memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::7", &sin6->sin6_addr);
	snprintf(s.env.client_ip, sizeof(s.env.client_ip), "2001:db8::7");
	assert_int_equal(run_stage(f, &s, HOOK_CONNECT).action, VERDICT_CONTINUE);
	assert_string_equal(s.env.client_name, "six.test");	/* PTR by nibbles, AAAA back */
	stage_sess_free(&s);
}

/* A refused name of bad syntax is the command's syntax error (501 5.5.2, as Postfix's
 * reject_invalid_helo_hostname); a refused dotless name gets 504 5.5.2, as Postfix's
 * reject_non_fqdn_helo_hostname (550 5.7.1 until session 22). Until session 21 both were
 * 550 5.7.1. */
static void test_helo_reject_codes(void **state)
{
	static const struct {
		const char *helo;
		int code;
		const char *enh;
	} rows[] = {
		{ "bad_name!.example", 501, "5.5.2" },
		{ "[999.0.0.1]", 501, "5.5.2" },
		{ "one.example two.example", 501, "5.5.2" },
		{ "localname", 504, "5.5.2" },
	};
	struct fixture *f = *state;

	f->cfg.helo_checks.syntax.action = HELO_ACTION_REJECT;
	f->cfg.helo_checks.not_fqdn.action = HELO_ACTION_REJECT;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stage_sess s;
		struct verdict v;

		sess_init(f, &s, "198.18.2.7", "192.0.2.25");
		snprintf(s.env.helo, sizeof(s.env.helo), "%s", rows[i].helo);
		v = run_stage(f, &s, HOOK_HELO);
		if (v.action != VERDICT_REJECT || v.code != rows[i].code || strncmp(v.reply, rows[i].enh, 5) != 0)
			fail_msg("%s: %d %d %s, want %d %s", rows[i].helo, v.action, v.code, v.reply, rows[i].code,
			    rows[i].enh);
		stage_sess_free(&s);
	}
}

static void test_fcrdns_action(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	struct verdict v;

	sess_init(f, &s, "198.18.2.7", "192.0.2.25");
	v = run_stage(f, &s, HOOK_CONNECT);
	assert_int_equal(v.action, VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 450);
	/* RFC 7372 3.3 (until session 21: 4.7.1) */
	assert_memory_equal(v.reply, "4.7.25 ", 7);
	stage_sess_free(&s);
	/* freed while the PTR is in flight: nothing fires later */
	{
		struct stage_result r = { 0 };

		sess_init(f, &s, "198.18.4.7", "192.0.2.25");
		chain_run(&s.chain, HOOK_CONNECT, stage_done_cb, &r);
		stage_sess_free(&s);
		uv_run(&f->dns.loop, UV_RUN_NOWAIT);
		assert_int_equal(r.done, 0);
	}
}

/* A name lookup that failed (here the PTR name's A query: SERVFAIL) is no NO_FCRDNS: with
 * on_error: accept (the default) the client goes on unscored, with tempfail it is deferred
 * (450 4.7.25, as Postfix's reject_unknown_client_hostname), whatever the test's action.
 * Until session 22 such a client always went on. */
static void test_fcrdns_on_error(void **state)
{
	static const struct {
		int action, on_error;
		enum verdict_action want;
	} rows[] = {
		{ HELO_ACTION_TEMPFAIL, HELO_ON_ERROR_ACCEPT, VERDICT_CONTINUE },
		{ HELO_ACTION_TEMPFAIL, HELO_ON_ERROR_TEMPFAIL, VERDICT_TEMPFAIL },
		{ HELO_ACTION_REJECT, HELO_ON_ERROR_TEMPFAIL, VERDICT_TEMPFAIL },
		{ HELO_ACTION_SCORE, HELO_ON_ERROR_TEMPFAIL, VERDICT_TEMPFAIL },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stage_sess s;
		struct verdict v;

		f->cfg.helo_checks.fcrdns.action = rows[i].action;
		f->cfg.helo_checks.fcrdns.on_error = rows[i].on_error;
		sess_init(f, &s, "198.18.5.7", "192.0.2.25");
		v = run_stage(f, &s, HOOK_CONNECT);
		assert_int_equal(s.env.client_name_status, HOOK_NAME_TEMP);
		if (v.action != rows[i].want)
			fail_msg("row %zu: verdict %d, want %d", i, v.action, rows[i].want);
		if (v.action == VERDICT_TEMPFAIL) {
			assert_int_equal(v.code, 450);
			assert_memory_equal(v.reply, "4.7.25 ", 7);
		}
		assert_null(hook_env_find_symbol(&s.env, "NO_FCRDNS"));
		stage_sess_free(&s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syntax_table),
		cmocka_unit_test_setup_teardown(test_helo_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helo_reject_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fcrdns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fcrdns_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fcrdns_action, setup_reject, teardown),
		cmocka_unit_test_setup_teardown(test_fcrdns_on_error, setup, teardown),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
