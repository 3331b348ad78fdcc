/* test_spf.c — libspf2 over an in-memory zone (SPF_dns_zone, offline: no DNS at all):
 * pass / fail / softfail / neutral / none / permerror, the HELO identity for <>, record
 * parsing; then the module through the chain in the libuv thread pool: the symbol that
 * hands the result over (description = the domain), 550 5.7.23 with reject_fail, and at
 * end of data the one Authentication-Results field filters/senderauth.c builds from it,
 * in the contract's form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <spf2/spf.h>

#include "filters/senderauth.h"
#include "filters/spf.h"
#include "filters/spf_dns.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/msgbuf.h"

static char *records[] = {
	"example.org TXT v=spf1 ip4:198.18.0.0/15 -all",
	"soft.example TXT v=spf1 ip4:192.0.2.1 ~all",
	"neutral.example TXT v=spf1 ?all",
	"perm.example TXT v=spf1 ip4:198.18.0.0/15 include:",
	"inc.example TXT v=spf1 include:example.org -all",
	"helo.example TXT v=spf1 a -all",
	"helo.example A 198.18.1.7",
	"expl.example TXT v=spf1 -all exp=why.expl.example",
	"why.expl.example TXT %{i}_is_not_permitted",
	/* records libspf2 cannot compile: RFC 7208 4.6 syntax errors, permerror */
	"mech.example TXT v=spf1 ip4:192.0.2.9 foo:bar -all",
	"ip4.example TXT v=spf1 ip4:300.1.1.1 -all",
	"cidr.example TXT v=spf1 ip4:192.0.2.0/33 -all",
	"macro.example TXT v=spf1 a:%{z}.macro.example -all",
};
static const struct cfg_strlist recs = { records, sizeof(records) / sizeof(records[0]) };

static void test_engine_results(void **state)
{
	static const struct { const char *label, *ip, *helo, *sender; enum spf_result want; } rows[] = {
		{ "pass by ip4", "198.18.1.7", "c.test", "a@example.org", SPF_R_PASS },
		{ "fail by -all", "192.0.2.9", "c.test", "a@example.org", SPF_R_FAIL },
		{ "softfail", "198.18.1.7", "c.test", "a@soft.example", SPF_R_SOFTFAIL },
		{ "neutral", "198.18.1.7", "c.test", "a@neutral.example", SPF_R_NEUTRAL },
		{ "no record: none", "198.18.1.7", "c.test", "a@norecord.example", SPF_R_NONE },
		{ "syntax error: permerror", "192.0.2.9", "c.test", "a@perm.example", SPF_R_PERMERROR },
		{ "unknown mechanism: permerror", "192.0.2.9", "c.test", "a@mech.example", SPF_R_PERMERROR },
		{ "bad ip4 literal: permerror", "192.0.2.9", "c.test", "a@ip4.example", SPF_R_PERMERROR },
		{ "bad CIDR length: permerror", "192.0.2.9", "c.test", "a@cidr.example", SPF_R_PERMERROR },
		{ "unknown macro letter: permerror", "192.0.2.9", "c.test", "a@macro.example", SPF_R_PERMERROR },
		{ "include passes", "198.18.5.5", "c.test", "a@inc.example", SPF_R_PASS },
		{ "include fails", "192.0.2.9", "c.test", "a@inc.example", SPF_R_FAIL },
		{ "null sender: HELO identity passes", "198.18.1.7", "helo.example", "", SPF_R_PASS },
		{ "null sender: HELO identity fails", "192.0.2.9", "helo.example", "", SPF_R_FAIL },
		{ "IPv6 client against ip4-only policy", "2001:db8::1", "c.test", "a@example.org", SPF_R_FAIL },
		/* RFC 7208 4.3: a HELO that is not a multi-label domain name is none, no lookup */
		{ "null sender, HELO an address literal", "192.0.2.9", "[192.0.2.9]", "", SPF_R_NONE },
		{ "null sender, HELO one label", "192.0.2.9", "localhost", "", SPF_R_NONE },
	};
	struct spf_engine *e = spf_engine_new(&recs, true, NULL);

	(void)state;
	assert_non_null(e);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct spf_check c;

		memset(&c, 0, sizeof(c));
		snprintf(c.ip, sizeof(c.ip), "%s", rows[i].ip);
		snprintf(c.helo, sizeof(c.helo), "%s", rows[i].helo);
		snprintf(c.sender, sizeof(c.sender), "%s", rows[i].sender);
		spf_engine_check(e, &c);
		if (c.result != rows[i].want)
			fail_msg("%s: got %s want %s", rows[i].label, spf_result_name(c.result),
			    spf_result_name(rows[i].want));
	}
	spf_engine_free(e);
}

static void test_explanation(void **state)
{
	struct spf_engine *e = spf_engine_new(&recs, true, NULL);
	struct spf_check c;

	(void)state;
	memset(&c, 0, sizeof(c));
	snprintf(c.ip, sizeof(c.ip), "192.0.2.9");
	snprintf(c.helo, sizeof(c.helo), "c.test");
	snprintf(c.sender, sizeof(c.sender), "a@expl.example");
	spf_engine_check(e, &c);
	assert_int_equal(c.result, SPF_R_FAIL);
	assert_string_equal(c.explanation, "192.0.2.9_is_not_permitted");
	/* libspf2's own default text is dropped */
	snprintf(c.sender, sizeof(c.sender), "a@example.org");
	spf_engine_check(e, &c);
	assert_int_equal(c.result, SPF_R_FAIL);
	assert_string_equal(c.explanation, "");
	spf_engine_free(e);
}

/* What libspf2 says goes into the log escaped as every value from outside (log_val): its
 * warnings hold what DNS answered (a record's text, a name), which the sender's domain
 * writes; a '"' in it closed the quoted msg= early and the rest read as fields of its own.
 * A record of spf.records that does not parse, the same. Each line is read back whole. */
static void test_log_escaped(void **state)
{
	static char *bad[] = { "q\"x.test BOGUS a\"b" };
	static const struct cfg_strlist badrecs = { bad, 1 };
	char path[] = "/tmp/test_spf.XXXXXX", buf[4096];
	int fd = mkstemp(path), saved = dup(2);
	enum log_level lvl = log_get_level();
	struct spf_engine *e;
	ssize_t n;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	log_set_level(LOG_LVL_DEBUG);
	e = spf_engine_new(&badrecs, true, NULL);	/* the handlers are ours from here */
	/* as libspf2 reports a DNS answer it warns about */
	SPF_warningx(__FILE__, __LINE__, "%s", "record \"v=spf1 a:x\" evil=1\nlast=2");
	fflush(stderr);
	log_set_level(lvl);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	spf_engine_free(e);
	assert_true(n > 0);
	buf[n] = '\0';
	if (strstr(buf, "event=spf_warning msg=\"record \\\"v=spf1 a:x\\\" evil=1\\nlast=2\"\n") == NULL)
		fail_msg("spf_warning not escaped:\n%s", buf);
	if (strstr(buf, "event=spf_error record=\"q\\\"x.test BOGUS a\\\"b\" reason=unparsable\n") == NULL)
		fail_msg("spf_error's record not escaped:\n%s", buf);
}

static void test_records_and_names(void **state)
{
	struct spf_engine *e = spf_engine_new(NULL, true, NULL);
	struct spf_check c;

	(void)state;
	assert_int_equal(spf_engine_add_record(e, "a.test TXT v=spf1 -all"), 0);
	assert_int_equal(spf_engine_add_record(e, "a.test A 192.0.2.1"), 0);
	assert_int_equal(spf_engine_add_record(e, "a.test A not-an-ip"), -1);
	assert_int_equal(spf_engine_add_record(e, "a.test BOGUS x"), -1);
	assert_int_equal(spf_engine_add_record(e, "a.test TXT"), -1);
	assert_int_equal(spf_engine_add_record(e, ""), -1);
	spf_engine_free(e);
	assert_string_equal(spf_result_name(SPF_R_SOFTFAIL), "softfail");
	assert_string_equal(spf_result_name(SPF_R_TEMPERROR), "temperror");
	memset(&c, 0, sizeof(c));
	snprintf(c.helo, sizeof(c.helo), "h.test");
	assert_string_equal(spf_check_domain(&c), "h.test");
	snprintf(c.sender, sizeof(c.sender), "x@y.test");
	assert_string_equal(spf_check_domain(&c), "y.test");
}

/* libspf2 drops the mechanisms past 511 compiled octets without an error: a static record
 * of 70 ip4 terms is checked the same way as one from DNS (the size layer is on top). */
static enum spf_result check_one(struct spf_engine *e, const char *ip, const char *sender)
{
	struct spf_check c;

	memset(&c, 0, sizeof(c));
	snprintf(c.ip, sizeof(c.ip), "%s", ip);
	snprintf(c.helo, sizeof(c.helo), "c.test");
	snprintf(c.sender, sizeof(c.sender), "%s", sender);
	spf_engine_check(e, &c);
	return c.result;
}

static void test_record_cut_short(void **state)
{
	struct spf_engine *e = spf_engine_new(NULL, true, NULL);
	char rec[2048] = "long.test TXT v=spf1";
	bool redirect;

	(void)state;
	for (int i = 1; i <= 70; i++)
		snprintf(rec + strlen(rec), sizeof(rec) - strlen(rec), " ip4:203.0.113.%d", i);
	snprintf(rec + strlen(rec), sizeof(rec) - strlen(rec), " ip4:198.18.1.7 -all");
	assert_int_equal(spf_engine_add_record(e, rec), 0);
	assert_int_equal(spf_engine_add_record(e, "red.test TXT v=spf1 ip4:203.0.113.9 redirect=long.test"), 0);
	assert_int_equal(spf_engine_add_record(e, "fine.test TXT v=spf1 ip4:203.0.113.1 ip4:198.18.1.7 -all"), 0);
	assert_int_equal(check_one(e, "198.18.1.7", "a@long.test"), SPF_R_PERMERROR);	/* was neutral */
	assert_int_equal(check_one(e, "192.0.2.9", "a@long.test"), SPF_R_PERMERROR);	/* was neutral */
	assert_int_equal(check_one(e, "203.0.113.5", "a@long.test"), SPF_R_PASS);	/* before the cut */
	assert_int_equal(check_one(e, "203.0.113.9", "a@red.test"), SPF_R_PASS);
	assert_int_equal(check_one(e, "192.0.2.9", "a@red.test"), SPF_R_PERMERROR);
	/* the note is the check's own: the next one is not tainted */
	assert_int_equal(check_one(e, "192.0.2.9", "a@fine.test"), SPF_R_FAIL);
	spf_engine_free(e);

	/* the term count as libspf2's compiler sees it */
	assert_int_equal(spf_dns_size_terms("v=spf1 -all", &redirect), 1);
	assert_int_equal(spf_dns_size_terms("V=SPF1  a  mx/24 exp=x.%{d} foo=bar ~all ", &redirect), 3);
	assert_false(redirect);
	assert_int_equal(spf_dns_size_terms("v=spf1 ip4:192.0.2.1 redirect=x.test", &redirect), 2);
	assert_true(redirect);
	assert_int_equal(spf_dns_size_terms("v=spf10 -all", &redirect), -1);
	assert_int_equal(spf_dns_size_terms("some text", &redirect), -1);
	assert_int_equal(spf_dns_size_terms("v=spf1", &redirect), 0);
}

/* dns.resolvers as dns.c takes them, IPv6 included (the SPF transport asked IPv4 only) */
static void test_resolver_forms(void **state)
{
	static const struct { const char *s; int rc, family, port; } rows[] = {
		{ "127.0.0.1", 0, AF_INET, 53 }, { "127.0.0.1:5353", 0, AF_INET, 5353 },
		{ "[::1]:5353", 0, AF_INET6, 5353 }, { "[::1]", 0, AF_INET6, 53 },
		{ "2001:db8::53", 0, AF_INET6, 53 }, { "[::1]:0", -1, 0, 0 }, { "[::1]x", -1, 0, 0 },
		{ "127.0.0.1:", -1, 0, 0 }, { "host.example", -1, 0, 0 }, { "[127.0.0.1", -1, 0, 0 },
		{ "1.2.3.4:99999", -1, 0, 0 }, { "", -1, 0, 0 },
	};
	struct sockaddr_storage ss;
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int rc = spf_dns_parse_server(rows[i].s, &ss, &len);

		if (rc != rows[i].rc)
			fail_msg("%s: rc %d", rows[i].s, rc);
		if (rc != 0)
			continue;
		assert_int_equal(ss.ss_family, rows[i].family);
		assert_int_equal(ntohs(rows[i].family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)&ss)->sin6_port), rows[i].port);
		assert_int_equal(len, rows[i].family == AF_INET ? sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6));
	}
}

/* ---- the module --------------------------------------------------------------------- */

struct fixture {
	uv_loop_t loop;
	struct mx_config cfg;
	struct chain_modules mods;
	struct chain_entry entries[2];   /* spf, then senderauth (it writes Authentication-Results) */
	uv_timer_t timer;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	void *ws = NULL;

	uv_loop_init(&f->loop);
	f->cfg.hostname = "mx.example.test";
	f->cfg.spf.enabled = true;
	f->cfg.spf.reject_fail = true;
	f->cfg.spf.helo = true;
	f->cfg.spf.timeout = 5000;
	f->cfg.spf.scores.fail = 3;
	f->cfg.spf.scores.pass = -0.5;
	f->cfg.spf.records = recs;
	assert_int_equal(spf_module.worker_init(&f->cfg, &f->loop, 0, &ws), 0);
	f->entries[0] = (struct chain_entry){ &spf_module, ws, spf_module.stages(ws), "spf" };
	/* senderauth writes the Authentication-Results field at end of data */
	f->cfg.dkim.timeout = 5000;
	ws = NULL;
	assert_int_equal(senderauth_module.worker_init(&f->cfg, &f->loop, 0, &ws), 0);
	assert_non_null(ws);
	f->entries[1] = (struct chain_entry){ &senderauth_module, ws,
	    senderauth_module.stages(ws), "senderauth" };
	f->mods = (struct chain_modules){ f->entries, 2,
	    f->entries[0].stages | f->entries[1].stages };
	uv_timer_init(&f->loop, &f->timer);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	spf_module.worker_free(f->entries[0].wstate);
	senderauth_module.worker_free(f->entries[1].wstate);
	uv_close((uv_handle_t *)&f->timer, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
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

static void sess_init(struct fixture *f, struct sess *s, const char *ip, const char *helo)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&s->env.client;

	memset(s, 0, sizeof(*s));
	s->env.session_id = "t";
	s->env.loop = &f->loop;
	s->env.cfg = &f->cfg;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin->sin_addr);
	snprintf(s->env.client_ip, sizeof(s->env.client_ip), "%s", ip);
	snprintf(s->env.helo, sizeof(s->env.helo), "%s", helo);
	chain_init(&s->chain, &f->mods, &s->env, &f->timer);
}

static struct verdict run_mail(struct fixture *f, struct sess *s, char *from)
{
	struct run_result r = { 0 };

	s->env.mail_from = from;
	chain_run(&s->chain, HOOK_MAIL, done_cb, &r);
	for (int i = 0; i < 5000 && !r.done; i++)
		uv_run(&f->loop, UV_RUN_ONCE);	/* the work request keeps the loop alive */
	assert_int_equal(r.done, 1);
	return r.v;
}

/* End of data with a small message: senderauth adds the Authentication-Results field. */
static void run_eom(struct fixture *f, struct sess *s)
{
	static const char msg[] = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
	struct run_result r = { 0 };

	s->env.msg = msgbuf_new(1 << 16, NULL);
	assert_int_equal(msgbuf_append(s->env.msg, msg, sizeof(msg) - 1), 0);
	chain_run(&s->chain, HOOK_EOM, done_cb, &r);
	for (int i = 0; i < 5000 && !r.done; i++)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.v.action, VERDICT_CONTINUE);
}

static void sess_free(struct sess *s)
{
	chain_release(&s->chain);
	s->env.mail_from = NULL;
	msgbuf_free(s->env.msg);
	s->env.msg = NULL;
	hook_env_free_outputs(&s->env);
}

static const char *header_value(const struct hook_env *env, const char *name)
{
	for (size_t i = 0; i < env->nhdr_edits; i++)
		if ((env->hdr_edits[i].op == HDR_ADD || env->hdr_edits[i].op == HDR_INSERT) &&
		    strcmp(env->hdr_edits[i].name, name) == 0)
			return env->hdr_edits[i].value;
	return NULL;
}

static void test_module_pass(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	const struct hook_symbol *sym;

	sess_init(f, &s, "198.18.1.7", "c.test");
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	assert_null(header_value(&s.env, "Authentication-Results"));	/* one field, at EOM */
	sym = hook_env_find_symbol(&s.env, "SPF_PASS");
	assert_non_null(sym);
	assert_true(sym->score == -0.5);
	assert_string_equal(sym->desc, "example.org");
	run_eom(f, &s);
	assert_string_equal(header_value(&s.env, "Authentication-Results"),
	    "mx.example.test; spf=pass smtp.mailfrom=example.org");
	sess_free(&s);
}

static void test_module_fail_rejects(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct verdict v;

	sess_init(f, &s, "192.0.2.9", "c.test");
	v = run_mail(f, &s, "a@example.org");
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_int_equal(strncmp(v.reply, "5.7.23 ", 7), 0);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_FAIL"));
	sess_free(&s);

	f->cfg.spf.reject_fail = false;	/* read at run time: score only */
	sess_init(f, &s, "192.0.2.9", "c.test");
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	assert_true(s.env.score == 3);
	run_eom(f, &s);
	assert_string_equal(header_value(&s.env, "Authentication-Results"),
	    "mx.example.test; spf=fail smtp.mailfrom=example.org");
	sess_free(&s);
}

static void test_module_null_sender(void **state)
{
	struct fixture *f = *state;
	struct sess s;

	sess_init(f, &s, "198.18.1.7", "helo.example");
	assert_int_equal(run_mail(f, &s, "").action, VERDICT_CONTINUE);
	run_eom(f, &s);
	assert_string_equal(header_value(&s.env, "Authentication-Results"),
	    "mx.example.test; spf=pass smtp.helo=helo.example");
	sess_free(&s);
}

/* helo_always: the HELO identity is checked beside MAIL FROM (SPF_HELO_<RESULT>, as
 * SpamAssassin's SPF plugin and policyd-spf do), once per session and HELO name; its fail is
 * refused with reject_helo_fail (policyd-spf's HELO_reject); the Authentication-Results field
 * keeps the MAIL FROM result alone. */
static void test_module_helo_always(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	const struct hook_symbol *sym;
	struct verdict v;

	f->cfg.spf.helo_always = true;
	f->cfg.spf.helo_scores.fail = 2;
	f->cfg.spf.helo_scores.pass = -0.25;
	sess_init(f, &s, "198.18.1.7", "helo.example");
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	sym = hook_env_find_symbol(&s.env, "SPF_HELO_PASS");
	assert_non_null(sym);
	assert_true(sym->score == -0.25);
	assert_string_equal(sym->desc, "helo.example");
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_PASS"));
	run_eom(f, &s);
	assert_string_equal(header_value(&s.env, "Authentication-Results"),
	    "mx.example.test; spf=pass smtp.mailfrom=example.org");
	sess_free(&s);

	/* the HELO fails, MAIL FROM passes: scored, not refused without reject_helo_fail */
	f->cfg.spf.records = recs;
	sess_init(f, &s, "198.18.9.9", "helo.example");
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_HELO_FAIL"));
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_PASS"));
	assert_true(s.env.score == 2 - 0.5);
	sess_free(&s);

	f->cfg.spf.reject_helo_fail = true;
	sess_init(f, &s, "198.18.9.9", "helo.example");
	v = run_mail(f, &s, "a@example.org");
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	assert_non_null(strstr(v.reply, "5.7.23 "));
	assert_non_null(strstr(v.reply, "helo.example"));
	sess_free(&s);

	/* a HELO that is no domain name: none, not checked */
	sess_init(f, &s, "198.18.9.9", "[198.18.9.9]");
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_HELO_NONE"));
	sess_free(&s);

	/* the null sender: the HELO identity is the check; one symbol, refused as a HELO fail */
	sess_init(f, &s, "198.18.9.9", "helo.example");
	v = run_mail(f, &s, "");
	assert_int_equal(v.action, VERDICT_REJECT);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_FAIL"));
	assert_null(hook_env_find_symbol(&s.env, "SPF_HELO_FAIL"));
	sess_free(&s);
	f->cfg.spf.reject_helo_fail = false;
	f->cfg.spf.helo_always = false;
}

/* The HELO result is kept for the session: a second transaction gets the symbol again
 * without a second check (the cached result survives a record change). */
static void test_module_helo_cached(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct spf_worker_stats st;

	f->cfg.spf.helo_always = true;
	sess_init(f, &s, "198.18.1.7", "helo.example");
	spf_worker_get_stats(f->entries[0].wstate, &st);
	unsigned long before = st.helo_checks;
	assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_HELO_PASS"));
	hook_env_free_outputs(&s.env);
	assert_int_equal(run_mail(f, &s, "b@example.org").action, VERDICT_CONTINUE);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_HELO_PASS"));
	spf_worker_get_stats(f->entries[0].wstate, &st);
	assert_int_equal(st.helo_checks - before, 1);
	/* a new HELO is checked again */
	snprintf(s.env.helo, sizeof(s.env.helo), "%s", "c.test");
	hook_env_free_outputs(&s.env);
	assert_int_equal(run_mail(f, &s, "b@example.org").action, VERDICT_CONTINUE);
	assert_non_null(hook_env_find_symbol(&s.env, "SPF_HELO_NONE"));
	spf_worker_get_stats(f->entries[0].wstate, &st);
	assert_int_equal(st.helo_checks - before, 2);
	sess_free(&s);
	f->cfg.spf.helo_always = false;
}

static void test_module_session_gone(void **state)
{
	struct fixture *f = *state;
	struct sess s;
	struct run_result r = { 0 };

	/* the session goes away while the check runs in the pool: nothing fires, no leak */
	sess_init(f, &s, "198.18.1.7", "c.test");
	s.env.mail_from = "a@example.org";
	chain_run(&s.chain, HOOK_MAIL, done_cb, &r);
	sess_free(&s);
	uv_timer_stop(&f->timer);	/* the session's timer: the session stops it as it goes */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r.done, 0);
}

static void test_module_timeout(void **state)
{
	struct fixture *f = *state;
	int temperrors = 0;

	/* a 1 ms budget: the pool usually loses the race, the result is temperror and the late
	 * worker result must be dropped without touching the (possibly freed) session */
	f->cfg.spf.timeout = 1;
	for (int i = 0; i < 20; i++) {
		struct sess s;
		const struct hook_symbol *sym;

		sess_init(f, &s, "198.18.1.7", "c.test");
		assert_int_equal(run_mail(f, &s, "a@example.org").action, VERDICT_CONTINUE);
		sym = hook_env_find_symbol(&s.env, "SPF_TEMPERROR");
		temperrors += sym != NULL;
		if (sym == NULL)
			assert_non_null(hook_env_find_symbol(&s.env, "SPF_PASS"));
		sess_free(&s);	/* often while the check still runs */
	}
	uv_timer_stop(&f->timer);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	print_message("%d of 20 checks timed out\n", temperrors);
	f->cfg.spf.timeout = 5000;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_results),
		cmocka_unit_test(test_explanation),
		cmocka_unit_test(test_records_and_names),
		cmocka_unit_test(test_log_escaped),
		cmocka_unit_test(test_record_cut_short),
		cmocka_unit_test(test_resolver_forms),
		cmocka_unit_test_setup_teardown(test_module_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_fail_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_null_sender, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_helo_always, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_helo_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_session_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_timeout, setup, teardown),
	};

	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
