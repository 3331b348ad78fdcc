/* test_senderauth.c — the senderauth module through the chain against a fake DNS server
 * (tests/unit/fake_dns.h) with a dkimpy-signed Ed25519 fixture: pass with the one
 * Authentication-Results field, SpamAssassin's symbols and AUTH_DOMAIN (and ratelimit's
 * auth_domain key reading it); a tampered body refused per DMARC p=reject, or only scored
 * with action log; a key lookup that never answers (temperror, DMARC temperror: no
 * rejection on a DNS hiccup); forged Authentication-Results removed; several From fields (each domain checked);
 * the session going away with lookups in flight (nothing fires, nothing leaks); the
 * lookups started when the header block arrives (before end of data) and taken over at
 * HOOK_EOM, or dropped when they were another message's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/dns.h"
#include "filters/ratelimit.h"
#include "filters/senderauth.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/msgbuf.h"
#include "dns_fixture.h"
#include "dkim_fixture.h"

static char ed_txt[256];
static struct fake_rr zone[] = {
	{ "ed._domainkey.example.org", 16, ed_txt, 300 },
	{ "_dmarc.example.org", 16, "v=DMARC1; p=reject", 300 },
};

struct fixture {
	struct dns_fixture dns;
	struct mx_config cfg;
	struct chain_modules mods;
	struct chain_entry entry;
	int slot;
};

/* timeout_ms: the DNS and DKIM key lookups' bound. 300 ms (the fixture's) only where a lookup
 * must go unanswered to its end (test_key_timeout_is_temperror); elsewhere a bound no run
 * reaches: a test that expects an answer, or a lookup still in flight after a few loop
 * passes, failed whenever the process was descheduled for 300 ms in between (shown with
 * tests/tools/jumpclock.c at 20 ms a clock read: test_session_gone_mid_lookup, test_pass). */
static int setup_mode(void **state, int action, uint64_t timeout_ms)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct mx_config *c = &f->cfg;
	void *ws = NULL;
	size_t len;
	char *t = fixture_slurp("ed.txt", &len);

	snprintf(ed_txt, sizeof(ed_txt), "%.*s", (int)strcspn(t, "\r\n"), t);
	free(t);
	dns_fixture_start(&f->dns, c, zone, sizeof(zone) / sizeof(zone[0]));
	c->dns.timeout = timeout_ms;
	c->dkim.enabled = true;
	c->dkim.timeout = timeout_ms < 2000 ? 2000 : timeout_ms;
	c->dkim.max_signatures = 8;
	c->dkim.max_headers = 1000;
	c->dkim.min_key_bits = 1024;
	c->dkim.max_key_bits = 4096;
	c->dkim.clock_skew = 300000;
	c->dkim.scores = (struct dkim_scores_config){ 0.1, -0.1, -0.1, -0.1, 0.1 };
	c->arc.enabled = true;
	c->arc.max_instances = 16;
	c->dmarc.enabled = true;
	c->dmarc.action = action;
	c->dmarc.scores = (struct dmarc_scores_config){ -0.001, 1.797, 1.198, 0.898, 0.001 };
	f->slot = 0;   /* the only entry */
	assert_int_equal(senderauth_module.worker_init(c, &f->dns.loop, 0, &ws), 0);
	assert_non_null(ws);
	chain_modules_single(&f->mods, &f->entry, &senderauth_module, ws);
	*state = f;
	return 0;
}

#define LONG_MS 60000

static int setup(void **state) { return setup_mode(state, DMARC_ACTION_HONOR, LONG_MS); }
static int setup_log(void **state) { return setup_mode(state, DMARC_ACTION_LOG, LONG_MS); }
static int setup_short(void **state) { return setup_mode(state, DMARC_ACTION_HONOR, 300); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	senderauth_module.worker_free(f->entry.wstate);
	dns_fixture_stop(&f->dns);
	free(f);
	return 0;
}

struct sess { struct hook_env env; struct chain chain; };
struct run_result { int done; struct verdict v; };

static void done_cb(void *arg, const struct verdict *v)
{
	struct run_result *r = arg;

	r->done++;
	r->v = *v;
}

/* A session holding the fixture message with from -> to replaced (from NULL: as is). */
static void sess_init(struct fixture *f, struct sess *s, const char *file, const char *from, const char *to)
{
	size_t len;
	char *m = fixture_slurp(file, &len), *p;

	memset(s, 0, sizeof(*s));
	s->env.session_id = "t";
	s->env.loop = &f->dns.loop;
	s->env.cfg = &f->cfg;
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "198.18.1.7");
	s->env.mail_from = "bounce@other.example";
	snprintf(s->env.queue_id, sizeof(s->env.queue_id), "Q1");
	s->env.msg = msgbuf_new(1 << 20, NULL);
	if (from != NULL) {
		p = strstr(m, from);
		assert_non_null(p);
		assert_int_equal(msgbuf_append(s->env.msg, m, (size_t)(p - m)), 0);
		assert_int_equal(msgbuf_append(s->env.msg, to, strlen(to)), 0);
		p += strlen(from);
		assert_int_equal(msgbuf_append(s->env.msg, p, len - (size_t)(p - m)), 0);
	} else {
		assert_int_equal(msgbuf_append(s->env.msg, m, len), 0);
	}
	free(m);
	chain_init(&s->chain, &f->mods, &s->env, &f->dns.timer);
}

static struct verdict run_eom(struct fixture *f, struct sess *s)
{
	struct run_result r = { 0 };

	chain_run(&s->chain, HOOK_EOM, done_cb, &r);
	for (int i = 0; i < 20000 && !r.done; i++)
		uv_run(&f->dns.loop, UV_RUN_ONCE);
	assert_int_equal(r.done, 1);
	return r.v;
}

static void sess_free(struct sess *s)
{
	chain_release(&s->chain);
	s->env.mail_from = NULL;
	msgbuf_free(s->env.msg);
	s->env.msg = NULL;
	hook_env_free_outputs(&s->env);
}

static const char *authres(const struct hook_env *env)
{
	const char *v = NULL;

	for (size_t i = 0; i < env->nhdr_edits; i++)
		if (env->hdr_edits[i].op == HDR_INSERT && strcmp(env->hdr_edits[i].name, "Authentication-Results") == 0) {
			assert_null(v);	/* one field */
			v = env->hdr_edits[i].value;
		}
	return v;
}

static void expect_in(const char *hay, const char *needle)
{
	if (hay == NULL || strstr(hay, needle) == NULL)
		fail_msg("\"%s\" not in \"%s\"", needle, hay ? hay : "(null)");
}

static void test_pass(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct ratelimit_rule_config rule = { .key = RATELIMIT_KEY_AUTH_DOMAIN, .count = RATELIMIT_COUNT_MESSAGES };
	char value[256];

	sess_init(f, &s, "ed25519.eml", NULL, NULL);
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	expect_in(authres(&s.env), "mx.example.test; dkim=pass (256-bit ed25519 key) header.d=example.org header.i=@example.org "
	    "header.a=ed25519-sha256 header.s=ed header.b=");
	expect_in(authres(&s.env), "; arc=none; dmarc=pass (p=reject dis=none) header.from=example.org");
	assert_non_null(hook_env_find_symbol(&s.env, "DKIM_SIGNED"));
	assert_non_null(hook_env_find_symbol(&s.env, "DKIM_VALID"));
	assert_non_null(hook_env_find_symbol(&s.env, "DKIM_VALID_AU"));
	assert_null(hook_env_find_symbol(&s.env, "DKIM_VALID_EF"));	/* envelope: other.example */
	assert_null(hook_env_find_symbol(&s.env, "DKIM_INVALID"));
	assert_non_null(hook_env_find_symbol(&s.env, "DMARC_PASS"));
	assert_string_equal(senderauth_auth_domain(&s.env), "example.org");
	assert_int_equal(ratelimit_key_value(&rule, &s.env, NULL, value, sizeof(value)), 0);
	assert_string_equal(value, "example.org");
	sess_free(&s);
}

static void test_tampered_rejected(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct verdict v;
	struct ratelimit_rule_config rule = { .key = RATELIMIT_KEY_AUTH_DOMAIN, .count = RATELIMIT_COUNT_MESSAGES };
	char value[256];

	sess_init(f, &s, "ed25519.eml", "Hello Bob", "Hello Eve");
	v = run_eom(f, &s);
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.reply, "5.7.1 Email rejected per DMARC policy for example.org");
	assert_non_null(hook_env_find_symbol(&s.env, "DKIM_INVALID"));
	assert_non_null(hook_env_find_symbol(&s.env, "DMARC_REJECT"));
	assert_null(senderauth_auth_domain(&s.env));	/* the From domain is not authenticated */
	assert_int_equal(ratelimit_key_value(&rule, &s.env, NULL, value, sizeof(value)), -1);
	sess_free(&s);
}

static void test_tampered_logged_only(void **state)
{
	struct fixture *f = *state;
	struct sess s;

	sess_init(f, &s, "ed25519.eml", "Hello Bob", "Hello Eve");
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	expect_in(authres(&s.env), "dkim=fail (body hash did not verify)");
	expect_in(authres(&s.env), "dmarc=fail (p=reject dis=reject) header.from=example.org");
	assert_non_null(hook_env_find_symbol(&s.env, "DMARC_REJECT"));
	sess_free(&s);
}

static void test_key_timeout_is_temperror(void **state)
{
	struct fixture *f = *state;
	struct sess s;

	/* "drop." names are never answered by the fake server */
	sess_init(f, &s, "ed25519.eml", "s=ed;", "s=drop;");
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	expect_in(authres(&s.env), "dkim=temperror (key lookup timed out) header.d=example.org header.i=@example.org "
	    "header.a=ed25519-sha256 header.s=drop");
	expect_in(authres(&s.env), "dmarc=temperror");
	sess_free(&s);
}

static void test_forged_authres_removed(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	bool removed = false;

	sess_init(f, &s, "ed25519.eml", "To: bob@example.net",
	    "Authentication-Results: x.example; spf=pass\r\nAuthentication-Results: (c) MX.example.test;\r\n dkim=pass\r\nTo: bob@example.net");
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	for (size_t i = 0; i < s.env.nhdr_edits; i++) {
		const struct hdr_edit *e = &s.env.hdr_edits[i];

		if (e->op == HDR_CHANGE && strcmp(e->name, "Authentication-Results") == 0) {
			assert_null(e->value);
			assert_int_equal(e->index, 2);	/* the second one claims us; x.example's stays */
			removed = true;
		}
	}
	assert_true(removed);
	sess_free(&s);
}

static void test_several_from(void **state)
{
	struct fixture *f = *state;
	struct sess s;

	sess_init(f, &s, "ed25519.eml", "To: bob@example.net", "From: mallory@evil.example\r\nTo: bob@example.net");
	/* RFC 7489 6.6.1: each From domain is checked; example.org's p=reject fails (it was
	 * permerror and delivered: a bypass of the policy) */
	assert_int_equal(run_eom(f, &s).action, VERDICT_REJECT);
	expect_in(authres(&s.env), "dkim=fail");	/* the added From is signed (h= from) */
	expect_in(authres(&s.env), "dmarc=fail (p=reject dis=reject; several From fields) header.from=example.org");
	assert_null(senderauth_auth_domain(&s.env));
	sess_free(&s);
}

static void test_session_gone_mid_lookup(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct run_result r = { 0 };

	sess_init(f, &s, "ed25519.eml", "s=ed;", "s=drop;");
	chain_run(&s.chain, HOOK_EOM, done_cb, &r);
	for (int i = 0; i < 5; i++)
		uv_run(&f->dns.loop, UV_RUN_NOWAIT);
	assert_int_equal(r.done, 0);
	senderauth_module.session_free(f->entry.wstate, f->slot, &s.env);
	sess_free(&s);
	uv_run(&f->dns.loop, UV_RUN_NOWAIT);
	assert_int_equal(r.done, 0);
}

/* The header block as the session tells it during DATA: env->msg is not set yet. */
static void headers_arrive(struct sess *s, const char *hdr, size_t len)
{
	struct msgbuf *msg = s->env.msg;

	s->env.msg = NULL;
	chain_headers(&s->chain, hdr, len);
	s->env.msg = msg;
}

/* The header block arrives before the end of data: the key and DMARC lookups go out then
 * (the server has both before HOOK_EOM runs), and HOOK_EOM judges with their answers
 * without asking again. */
static void test_lookups_start_at_headers(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	const char *d;
	size_t len;

	sess_init(f, &s, "ed25519.eml", NULL, NULL);
	d = msgbuf_data(s.env.msg, &len);
	headers_arrive(&s, d, msgbuf_header_len(s.env.msg));
	for (int i = 0; i < 20000 && f->dns.fd.queries < 2; i++)
		uv_run(&f->dns.loop, UV_RUN_ONCE);
	assert_int_equal(f->dns.fd.queries, 2);	/* ed._domainkey.example.org, _dmarc.example.org */
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	expect_in(authres(&s.env), "dkim=pass (256-bit ed25519 key) header.d=example.org header.i=@example.org "
	    "header.a=ed25519-sha256 header.s=ed");
	expect_in(authres(&s.env), "dmarc=pass (p=reject dis=none) header.from=example.org");
	assert_string_equal(senderauth_auth_domain(&s.env), "example.org");
	assert_int_equal(f->dns.fd.queries, 2);	/* nothing asked twice */
	sess_free(&s);
}

/* Lookups started for an earlier message (refused before its end of data, its key still
 * unanswered) are dropped: the next message is judged on its own header block. */
static void test_early_lookups_of_another_message(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	const char *d, *sel;
	size_t len, hl;
	char hdr[8192];

	sess_init(f, &s, "ed25519.eml", NULL, NULL);
	d = msgbuf_data(s.env.msg, &len);
	hl = msgbuf_header_len(s.env.msg);
	sel = memmem(d, hl, "s=ed;", 5);
	assert_non_null(sel);
	assert_true(hl + 2 < sizeof(hdr));
	snprintf(hdr, sizeof(hdr), "%.*ss=drop;%.*s", (int)(sel - d), d, (int)(hl - (size_t)(sel - d) - 5), sel + 5);
	headers_arrive(&s, hdr, hl + 2);
	for (int i = 0; i < 20000 && f->dns.fd.queries < 2; i++)
		uv_run(&f->dns.loop, UV_RUN_ONCE);
	snprintf(s.env.queue_id, sizeof(s.env.queue_id), "Q2");
	assert_int_equal(run_eom(f, &s).action, VERDICT_CONTINUE);
	expect_in(authres(&s.env), "dkim=pass (256-bit ed25519 key) header.d=example.org header.i=@example.org "
	    "header.a=ed25519-sha256 header.s=ed");
	/* asked again for Q2's key; its DMARC query may join Q1's, still on its way (dns.c
	 * sends one query per name in flight) */
	assert_true(f->dns.fd.queries >= 3);
	sess_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_logged_only, setup_log, teardown),
		cmocka_unit_test_setup_teardown(test_key_timeout_is_temperror, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_forged_authres_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_several_from, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_gone_mid_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookups_start_at_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_lookups_of_another_message, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
