/* test_rdns.c — the client-name module through the chain against a fake DNS server: PTR and
 * forward confirmation statuses (OK / PERM / TEMP, as Postfix's XCLIENT takes them), which
 * stage waits, one lookup per client thanks to the cache, sessions freed mid-lookup, and
 * when a config wants the lookup at all. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/dns.h"
#include "filters/greylist.h"
#include "filters/rdns.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "dns_fixture.h"
#include "stage_fixture.h"

static const struct fake_rr zone[] = {
	/* confirmed */
	{ "7.1.18.198.in-addr.arpa", 12, "Host.Test.", 300 },
	{ "host.test", 1, "198.18.1.7", 300 },
	/* the PTR's A is elsewhere */
	{ "7.3.18.198.in-addr.arpa", 12, "liar.test", 300 },
	{ "liar.test", 1, "192.0.2.1", 300 },
	/* two PTRs, the second confirms */
	{ "7.4.18.198.in-addr.arpa", 12, "first.test", 300 },
	{ "7.4.18.198.in-addr.arpa", 12, "second.test", 300 },
	{ "first.test", 1, "192.0.2.9", 300 },
	{ "second.test", 1, "198.18.4.7", 300 },
	/* the forward lookup fails temporarily */
	{ "7.5.18.198.in-addr.arpa", 12, "servfail.fwd.test", 300 },
	/* a malformed PTR name, and one that is an address */
	{ "7.6.18.198.in-addr.arpa", 12, "bad-.name.test", 300 },
	{ "7.7.18.198.in-addr.arpa", 12, "198.18.7.7", 300 },
	/* the PTR exists, its name has no A */
	{ "7.8.18.198.in-addr.arpa", 12, "noaddr.test", 300 },
	/* the PTR lookup itself never answers */
	{ "7.9.18.198.in-addr.arpa", 5, "drop.cname.test", 300 },
	/* IPv6 */
	{ "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", 12, "six.test", 300 },
	{ "six.test", 28, "2001:db8::7", 300 },
};

struct fixture {
	struct dns_fixture dns;
	struct mx_config cfg;
	struct chain_modules mods;
	struct chain_entry entry;
	int slot;
};

static int setup_cfg(void **state, bool at_connect, const char *server)
{
	struct fixture *f = calloc(1, sizeof(*f));
	void *ws = NULL;

	dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
	if (server)
		snprintf(f->dns.resolver, sizeof(f->dns.resolver), "%s", server);
	f->cfg.dns.cache_size = 1000;
	/* a timeout no test here tests (a dead server refuses at once; a dropped name's session
	 * is freed mid-lookup): one a stalled machine meets (300 ms timed out lookups the fake
	 * answers at once, seen after a stall) */
	f->cfg.dns.timeout = 30000;
	f->cfg.backends.client_identity = IDENTITY_XCLIENT;
	if (at_connect) {
		f->cfg.helo_checks.enabled = true;
		f->cfg.helo_checks.fcrdns.enabled = true;
	}
	f->slot = -1;
	for (size_t i = 0; i < hook_nmodules; i++)
		if (hook_modules[i] == &rdns_module)
			f->slot = (int)i;
	assert_true(f->slot >= 0);
	assert_int_equal(rdns_module.worker_init(&f->cfg, &f->dns.loop, 0, &ws), 0);
	assert_non_null(ws);
	f->slot = 0;   /* the only entry */
	chain_modules_single(&f->mods, &f->entry, &rdns_module, ws);
	*state = f;
	return 0;
}

static int setup(void **state) { return setup_cfg(state, true, NULL); }
static int setup_mail(void **state) { return setup_cfg(state, false, NULL); }
/* a resolver nobody answers on: every query fails temporarily */
static int setup_dead(void **state) { return setup_cfg(state, true, "127.0.0.1:9"); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	rdns_module.worker_free(f->entry.wstate);
	dns_fixture_stop(&f->dns);
	free(f);
	return 0;
}

/* Runs a stage to completion (CONTINUE: a name never refuses); true when it completed
 * without the loop running (the module did not wait). */
static bool run_stage(struct fixture *f, struct stage_sess *s, enum hook_stage st)
{
	struct verdict v;
	bool at_once = stage_run(&f->dns.loop, s, st, &v);

	assert_int_equal(v.action, VERDICT_CONTINUE);
	return at_once;
}

static void sess_init(struct fixture *f, struct stage_sess *s, const char *ip)
{
	stage_sess_init(s, &f->dns.loop, &f->cfg, &f->mods, &f->dns.timer, ip, "192.0.2.25");
}

static void test_statuses(void **state)
{
	static const struct {
		const char *label, *ip, *name, *ptr;
		enum hook_name_status name_st, ptr_st;
	} rows[] = {
		{ "confirmed (case and root dot dropped)", "198.18.1.7", "Host.Test", "Host.Test", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "no PTR", "198.18.2.7", "", "", HOOK_NAME_PERM, HOOK_NAME_PERM },
		{ "PTR whose A is elsewhere", "198.18.3.7", "", "liar.test", HOOK_NAME_PERM, HOOK_NAME_OK },
		{ "second PTR confirms", "198.18.4.7", "second.test", "second.test", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "forward lookup fails", "198.18.5.7", "", "servfail.fwd.test", HOOK_NAME_TEMP, HOOK_NAME_OK },
		{ "malformed PTR name", "198.18.6.7", "", "", HOOK_NAME_PERM, HOOK_NAME_PERM },
		{ "PTR name is an address", "198.18.7.7", "", "", HOOK_NAME_PERM, HOOK_NAME_PERM },
		{ "PTR name without A", "198.18.8.7", "", "noaddr.test", HOOK_NAME_PERM, HOOK_NAME_OK },
		{ "IPv6 by nibbles", "2001:db8::7", "six.test", "six.test", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "v4-mapped client is IPv4", "::ffff:198.18.1.7", "Host.Test", "Host.Test", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "loopback is localhost", "127.0.0.1", "localhost", "localhost", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "any 127/8", "127.3.2.1", "localhost", "localhost", HOOK_NAME_OK, HOOK_NAME_OK },
		{ "IPv6 loopback", "::1", "localhost", "localhost", HOOK_NAME_OK, HOOK_NAME_OK },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stage_sess s;

		sess_init(f, &s, rows[i].ip);
		run_stage(f, &s, HOOK_CONNECT);
		if (strcasecmp(s.env.client_name, rows[i].name) != 0 || s.env.client_name_status != (int)rows[i].name_st)
			fail_msg("%s: name \"%s\" status %d", rows[i].label, s.env.client_name, s.env.client_name_status);
		if (strcasecmp(s.env.client_ptr, rows[i].ptr) != 0 || s.env.client_ptr_status != (int)rows[i].ptr_st)
			fail_msg("%s: ptr \"%s\" status %d", rows[i].label, s.env.client_ptr, s.env.client_ptr_status);
		/* a later stage does not look again */
		int before = f->dns.fd.queries;
		run_stage(f, &s, HOOK_MAIL);
		assert_int_equal(f->dns.fd.queries, before);
		stage_sess_free(&s);
	}
}

static void test_cache_one_lookup_per_client(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	int before;

	sess_init(f, &s, "198.18.4.7");
	run_stage(f, &s, HOOK_CONNECT);
	stage_sess_free(&s);
	before = f->dns.fd.queries;
	/* the next session of the same client is answered from the cache, at once */
	sess_init(f, &s, "198.18.4.7");
	assert_true(run_stage(f, &s, HOOK_CONNECT));
	assert_string_equal(s.env.client_name, "second.test");
	assert_int_equal(f->dns.fd.queries, before);
	stage_sess_free(&s);
}

static void test_waits_at_mail(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;

	assert_false(rdns_waits_at_connect(&f->cfg));
	sess_init(f, &s, "198.18.3.8");   /* not cached */
	/* connect completes at once (the greeting is not held), the lookup goes on */
	assert_true(run_stage(f, &s, HOOK_CONNECT));
	assert_int_equal(s.env.client_name_status, HOOK_NAME_UNKNOWN);
	/* MAIL waits for the answer: the backend connection comes after it */
	assert_false(run_stage(f, &s, HOOK_MAIL));
	assert_int_equal(s.env.client_name_status, HOOK_NAME_PERM);
	stage_sess_free(&s);
}

static void test_dns_down(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;

	sess_init(f, &s, "198.18.11.7");
	run_stage(f, &s, HOOK_CONNECT);
	assert_int_equal(s.env.client_name_status, HOOK_NAME_TEMP);
	assert_int_equal(s.env.client_ptr_status, HOOK_NAME_TEMP);
	assert_string_equal(s.env.client_name, "");
	stage_sess_free(&s);
}

static void test_freed_mid_lookup(void **state)
{
	struct fixture *f = *state;
	struct stage_result r = { 0 };
	struct stage_sess s;

	sess_init(f, &s, "198.18.9.7");
	chain_run(&s.chain, HOOK_CONNECT, stage_done_cb, &r);
	stage_sess_free(&s);
	uv_run(&f->dns.loop, UV_RUN_NOWAIT);
	assert_int_equal(r.done, 0);
}

static void test_known_name_kept(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	int before = f->dns.fd.queries;

	sess_init(f, &s, "198.18.12.7");
	snprintf(s.env.client_name, sizeof(s.env.client_name), "given.test");
	s.env.client_name_status = HOOK_NAME_OK;
	assert_true(run_stage(f, &s, HOOK_CONNECT));
	assert_string_equal(s.env.client_name, "given.test");
	assert_int_equal(f->dns.fd.queries, before);
	stage_sess_free(&s);
}

static void wait_name_cb(void *arg)
{
	(*(int *)arg)++;
}

/* rdns_wait_name: a module before rdns (reputation.forwarders at connect) waits for the name
 * of a lookup rdns_prefetch / the connect stage started; the waiter hears it once, or not at
 * all once withdrawn; without a lookup the name will not be known. */
static void test_wait_name(void **state)
{
	struct fixture *f = *state;
	struct stage_sess s;
	int heard = 0;

	sess_init(f, &s, "198.18.13.7");   /* no PTR, not cached */
	assert_int_equal(rdns_wait_name(&s.env, wait_name_cb, &heard), -1);   /* no lookup yet */
	assert_true(run_stage(f, &s, HOOK_CONNECT));
	assert_int_equal(s.env.client_name_status, HOOK_NAME_UNKNOWN);
	assert_int_equal(rdns_wait_name(&s.env, wait_name_cb, &heard), 0);
	assert_int_equal(rdns_wait_name(&s.env, wait_name_cb, &heard), -1);   /* one waiter */
	assert_false(run_stage(f, &s, HOOK_MAIL));
	assert_int_equal(heard, 1);
	assert_int_equal(s.env.client_name_status, HOOK_NAME_PERM);
	assert_int_equal(rdns_wait_name(&s.env, wait_name_cb, &heard), 1);    /* settled now */
	stage_sess_free(&s);
	assert_null(s.env.rdns_lookup);

	sess_init(f, &s, "198.18.14.7");   /* withdrawn: never called */
	assert_true(run_stage(f, &s, HOOK_CONNECT));
	assert_int_equal(rdns_wait_name(&s.env, wait_name_cb, &heard), 0);
	rdns_wait_cancel(&s.env);
	assert_false(run_stage(f, &s, HOOK_MAIL));
	assert_int_equal(heard, 1);
	stage_sess_free(&s);
}

static void test_wanted(void **state)
{
	(void)state;
	struct mx_config c;

	memset(&c, 0, sizeof(c));
	c.backends.client_identity = IDENTITY_NONE;
	assert_false(rdns_wanted(&c));              /* nobody uses the name */
	c.backends.client_identity = IDENTITY_XCLIENT;
	assert_true(rdns_wanted(&c));
	assert_false(rdns_waits_at_connect(&c));
	c.backends.client_identity = IDENTITY_PROXY_V2;
	c.plugins.n = 1;                            /* a milter sees the connection */
	assert_true(rdns_wanted(&c));
	assert_true(rdns_waits_at_connect(&c));
	c.plugins.n = 0;
	c.helo_checks.enabled = c.helo_checks.fcrdns.enabled = true;
	assert_true(rdns_waits_at_connect(&c));
	c.rdns.lookup = RDNS_LOOKUP_NEVER;
	assert_false(rdns_wanted(&c));
	c.helo_checks.enabled = false;
	c.backends.client_identity = IDENTITY_NONE;
	c.rdns.lookup = RDNS_LOOKUP_ALWAYS;
	assert_true(rdns_wanted(&c));
	/* reputation.forwarders: a name rule wants the name, an address rule does not */
	char err[200];
	c.rdns.lookup = RDNS_LOOKUP_AUTO;
	assert_int_equal(greylist_names_add(&c.reputation.forwarders, "192.0.2.0/24", err, sizeof(err)), 0);
	assert_false(rdns_wanted(&c));
	assert_int_equal(greylist_names_add(&c.reputation.forwarders, "google.com", err, sizeof(err)), 0);
	assert_true(rdns_wanted(&c));
	assert_false(rdns_waits_at_connect(&c));   /* only a bad client waits, in reputation */
	c.rdns.lookup = RDNS_LOOKUP_NEVER;
	assert_false(rdns_wanted(&c));
	greylist_names_free(&c.reputation.forwarders);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_one_lookup_per_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waits_at_mail, setup_mail, teardown),
		cmocka_unit_test_setup_teardown(test_wait_name, setup_mail, teardown),
		cmocka_unit_test_setup_teardown(test_dns_down, setup_dead, teardown),
		cmocka_unit_test_setup_teardown(test_freed_mid_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_known_name_kept, setup, teardown),
		cmocka_unit_test(test_wanted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
