/* test_greylist.c — greylisting decisions with an injected clock, triplet keys, and the
 * module through the real chain with the local store and the LMDB store (surviving a new
 * generation; a triplet too long for an LMDB key); the local table out of memory (this
 * executable is linked with -Wl,--wrap=calloc: CMakeLists.txt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "filters/greylist.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/metrics.h"
#include "proxy/netaddr.h"
#include "store/lmdb_store.h"
#include "store/local_table.h"
#include "addr_fixture.h"
#include "greylist_map.h"
#include "lmdb_peer.h"

/* While armed, a calloc of at least fail_min bytes fails: only the local table's entry for
 * the long key below is that large on a RCPT's path. */
static size_t fail_min;
static int failed;
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

void *__wrap_calloc(size_t n, size_t size)
{
	if (fail_min > 0 && size >= fail_min / (n ? n : 1)) {
		failed++;
		return NULL;
	}
	return __real_calloc(n, size);
}

#define MINUTE (60ull * 1000)
#define HOUR (60 * MINUTE)

struct step { uint64_t at_ms; int pass; uint64_t wait_s; };
struct gl_case { const char *label; struct step steps[8]; size_t n; };

/* delay 5m, window 4h, expire 36d */
static const struct gl_case gl_cases[] = {
	{ "first attempt greylisted for the whole delay", { { 1000 * MINUTE, 0, 300 } }, 1 },
	{ "early retry still greylisted, clock not restarted",
	  { { 1000 * MINUTE, 0, 300 }, { 1002 * MINUTE, 0, 180 }, { 1005 * MINUTE, 1, 0 } }, 3 },
	{ "retry exactly at the delay passes", { { 1000 * MINUTE, 0, 300 }, { 1005 * MINUTE, 1, 0 } }, 2 },
	{ "passed triplet passes at once afterwards",
	  { { 1000 * MINUTE, 0, 300 }, { 1010 * MINUTE, 1, 0 }, { 1011 * MINUTE, 1, 0 }, { 1000 * MINUTE + 30 * 24 * HOUR, 1, 0 } }, 4 },
	{ "retry after the window starts over",
	  { { 1000 * MINUTE, 0, 300 }, { 1000 * MINUTE + 5 * HOUR, 0, 300 }, { 1000 * MINUTE + 5 * HOUR + 5 * MINUTE, 1, 0 } }, 3 },
};

static void test_decide(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(gl_cases) / sizeof(gl_cases[0]); c++) {
		struct greylist_entry e = { 0, false };
		bool exists = false;

		for (size_t i = 0; i < gl_cases[c].n; i++) {
			const struct step *st = &gl_cases[c].steps[i];
			uint64_t wait, keep;
			bool pass = greylist_decide(&e, exists, st->at_ms, 5 * MINUTE, 4 * HOUR, 36 * 24 * HOUR,
			    &wait, &keep);

			if ((int)pass != st->pass || wait != st->wait_s)
				fail_msg("%s: step %zu: pass=%d wait=%llu want %d/%llu", gl_cases[c].label, i,
				    pass, (unsigned long long)wait, st->pass, (unsigned long long)st->wait_s);
			assert_true(keep > 0);
			exists = true;
		}
	}
}

static void test_triplet(void **state)
{
	static const struct { const char *ip, *from, *to, *want; } cases[] = {
		{ "198.18.7.7", "A@Example.ORG", "B@Example.Test", "198.18.7.0/24|a@example.org|b@example.test" },
		{ "198.18.7.200", "", "b@x", "198.18.7.0/24|<>|b@x" },
		{ "2001:db8:1:2::9", "a@b", "c@d", "2001:db8:1:2::/64|a@b|c@d" },
		/* a domain's one trailing dot is the same domain (RFC 5321 2.3.5 name, absolute form) */
		{ "198.18.7.7", "a@Example.ORG.", "B@example.test.", "198.18.7.0/24|a@example.org|b@example.test" },
		/* what changes per message or per day for one sender goes, as postgrey drops it */
		{ "198.18.7.7", "prvs=1234abcdef=News@Example.ORG", "b@x", "198.18.7.0/24|news@example.org|b@x" },
		{ "198.18.7.7", "msprvs1=19888aXbYcd=bounces-123@ex.org", "b@x", "198.18.7.0/24|bounces-#@ex.org|b@x" },
		{ "198.18.7.7", "SRS0=HhHh=TT=orig.example=alice@fwd.example", "b@x", "198.18.7.0/24|srs0=orig.example=alice@fwd.example|b@x" },
		/* SRS with '+' or '-' after SRS0 (libsrs2, postsrsd): before, '+' was taken for an
		 * extension and every SRS0+ sender of a forwarder was one ("srs0@fwd") */
		{ "198.18.7.7", "SRS0+HhHh=TT=orig.example=alice@fwd.example", "b@x", "198.18.7.0/24|srs0=orig.example=alice@fwd.example|b@x" },
		{ "198.18.7.7", "SRS0-HhHh=TT=orig.example=alice@fwd.example", "b@x", "198.18.7.0/24|srs0=orig.example=alice@fwd.example|b@x" },
		/* SRS1 (forwarded twice): both hashes and the time go, the first forwarder stays */
		{ "198.18.7.7", "SRS1=XxXx=fwd1.example==HhHh=TT=orig.example=alice@fwd2.example", "b@x", "198.18.7.0/24|srs1=fwd1.example=orig.example=alice@fwd2.example|b@x" },
		{ "198.18.7.7", "SRS1+XxXx=fwd1.example=+HhHh=TT=orig.example=alice@fwd2.example", "b@x", "198.18.7.0/24|srs1=fwd1.example=orig.example=alice@fwd2.example|b@x" },
		{ "198.18.7.7", "srs1=XxXx=fwd1.example", "b@x", "198.18.7.0/24|srs1=xxxx=fwd1.example|b@x" },
		{ "198.18.7.7", "srs0=a=b@x.org", "b@x", "198.18.7.0/24|srs0=a=b@x.org|b@x" },
		/* Barracuda's BATV */
		{ "198.18.7.7", "btv1==1234abcdef==Alice@example.org", "b@x", "198.18.7.0/24|alice@example.org|b@x" },
		{ "198.18.7.7", "btv1==1234abcdef==@example.org", "b@x", "198.18.7.0/24|btv1==1234abcdef==@example.org|b@x" },
		{ "198.18.7.7", "list+bncBDK4HJ7XQ@googlegroups.com", "b@x", "198.18.7.0/24|list@googlegroups.com|b@x" },
		{ "198.18.7.7", "bounce-1234-5@lists.example", "b@x", "198.18.7.0/24|bounce-#-#@lists.example|b@x" },
		{ "198.18.7.7", "12345@qq.example", "b@x", "198.18.7.0/24|#@qq.example|b@x" },
		/* what does not change stays */
		{ "198.18.7.7", "user123@example.org", "b@x", "198.18.7.0/24|user123@example.org|b@x" },
		{ "198.18.7.7", "a1-2b@example.org", "b@x", "198.18.7.0/24|a1-2b@example.org|b@x" },
		{ "198.18.7.7", "prvs=@x.org", "b@x", "198.18.7.0/24|prvs=@x.org|b@x" },
		{ "198.18.7.7", "+x@dom.example", "b@x", "198.18.7.0/24|+x@dom.example|b@x" },
		{ "198.18.7.7", "nodomain", "b@x", "198.18.7.0/24|nodomain|b@x" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(cases[i].ip);
		char out[700];

		assert_int_equal(greylist_triplet((struct sockaddr *)&ss, 24, 64, cases[i].from,
		    cases[i].to, out, sizeof(out)), 0);
		assert_string_equal(out, cases[i].want);
	}
	/* a sender of the longest length taken (299 octets), ending in a dot, without an '@':
	 * the trailing-dot check read the copy before terminating it, past its end (found by
	 * fuzz_ratelimit under ASan); the dot stays, as it is no domain's */
	{
		struct sockaddr_storage ss = sockaddr_of("198.18.7.7");
		char from[300], out[1000], want[400];

		memset(from, 'a', sizeof(from));
		from[298] = '.';
		from[299] = '\0';
		assert_int_equal(greylist_triplet((struct sockaddr *)&ss, 24, 64, from, "b@x", out, sizeof(out)), 0);
		snprintf(want, sizeof(want), "198.18.7.0/24|%s|b@x", from);
		assert_string_equal(out, want);
	}
}

struct chain_result { bool done; struct verdict v; };

static void chain_done_cb(void *arg, const struct verdict *v)
{
	struct chain_result *r = arg;

	r->done = true;
	r->v = *v;
}

static enum verdict_action rcpt(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const char *ip, const char *from, const char *to, struct verdict *out)
{
	struct hook_env env;
	struct chain ch;
	struct chain_result res = { 0 };
	struct sockaddr_storage ss = sockaddr_of(ip);

	memset(&env, 0, sizeof(env));
	env.session_id = "test";
	env.loop = loop;
	env.cfg = cfg;
	memcpy(&env.client, &ss, sizeof(ss));
	snprintf(env.client_ip, sizeof(env.client_ip), "%s", ip);
	env.mail_from = (char *)from;
	env.cur_rcpt = to;
	chain_init(&ch, mods, &env, NULL);
	chain_run(&ch, HOOK_RCPT, chain_done_cb, &res);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_true(res.done);
	chain_release(&ch);
	hook_env_free_outputs(&env);
	if (out)
		*out = res.v;
	return res.v.action;
}

static void module_run(const char *store_line, bool restart)
{
	char dir[] = "/tmp/mxgate-gl-XXXXXX", path[256], cmd[300];
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	struct verdict v;
	uv_loop_t loop;
	FILE *f;
	char long_from[300], long_to[300];

	/* a triplet longer than an LMDB key may be (511 bytes): stored under its hash */
	memset(long_from, 'f', sizeof(long_from));
	memcpy(long_from + 280, "@example.org", 13);
	memset(long_to, 't', sizeof(long_to));
	memcpy(long_to + 280, "@example.test", 14);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mx.yaml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\n"
	    "listen:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\n"
	    "greylist: { enabled: true, delay: 300ms, retry_window: 1h, allow: [198.18.99.0/24]%s%s }\n",
	    store_line ? ", store: " : "", store_line ? store_line : "");
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "a@example.org", "b@example.test", &v),
	    VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_non_null(strstr(v.reply, "4.7.1 greylisted"));
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", long_from, long_to, NULL),
	    VERDICT_TEMPFAIL);
	/* no "too early" retry here: it held only while this thread ran the next rcpt within the
	 * 300 ms delay (test_decide's "early retry still greylisted" has it at given times); a
	 * retry_window of an hour likewise puts no bound on how late the retries below come */
	usleep(350 * 1000);
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", long_from, long_to, NULL),
	    VERDICT_CONTINUE);
	/* the retry passes, from another host of the same /24 too */
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.8", "A@example.org", "b@example.test", NULL),
	    VERDICT_CONTINUE);
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "a@example.org", "b@example.test", NULL),
	    VERDICT_CONTINUE);
	/* another recipient is another triplet */
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "a@example.org", "c@example.test", NULL),
	    VERDICT_TEMPFAIL);
	/* allow list */
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.99.1", "a@example.org", "d@example.test", NULL),
	    VERDICT_CONTINUE);
	if (restart) {
		/* a new generation (or a restarted daemon) still knows the passed triplet */
		chain_modules_free(&mods);
		uv_run(&loop, UV_RUN_DEFAULT);
		/* the retired writer's last batch is written by the store's writer thread */
		assert_true(lmdb_store_wait_written(5000));
		chain_modules_init(&mods, cfg, &loop, 0);
		assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "a@example.org", "b@example.test", NULL),
		    VERDICT_CONTINUE);
		assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "a@example.org", "e@example.test", NULL),
		    VERDICT_TEMPFAIL);
		assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", long_from, long_to, NULL),
		    VERDICT_CONTINUE);
	}

	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_module_local(void **state)
{
	(void)state;
	module_run(NULL, false);
}

static void test_module_lmdb(void **state)
{
	char dir[] = "/tmp/mxgate-gldb-XXXXXX", line[64], cmd[100];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(line, sizeof(line), "\"lmdb:%s\"", dir);
	module_run(line, true);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Records read back from a map or Redis: a round trip, and what is not a live record. */
static void test_records(void **state)
{
	unsigned char rec[GREYLIST_RECORD_LEN], odd[GREYLIST_RECORD_LEN + 1] = { 0 };
	struct greylist_entry e = { 5000, true }, back;
	redisReply i1 = { .type = REDIS_REPLY_INTEGER, .integer = 1 };
	redisReply iw = { .type = REDIS_REPLY_INTEGER, .integer = -7 };
	redisReply st = { .type = REDIS_REPLY_STRING, .str = "1", .len = 1 };
	redisReply *pair[2] = { &i1, &iw }, *bad[2] = { &i1, &st };
	redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = pair };
	redisReply arr_bad = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = bad };
	redisReply arr_one = { .type = REDIS_REPLY_ARRAY, .elements = 1, .element = pair };
	bool pass = false;
	uint64_t wait_s = 99;

	(void)state;
	greylist_record_encode(&e, 10000, rec);
	assert_true(greylist_record_decode(rec, sizeof(rec), 9999, &back));
	assert_int_equal(back.first_ms, 5000);
	assert_true(back.passed);
	assert_false(greylist_record_expired(rec, sizeof(rec), 10000));
	/* expired, another size, nothing */
	assert_false(greylist_record_decode(rec, sizeof(rec), 10000, &back));
	assert_true(greylist_record_expired(rec, sizeof(rec), 10001));
	assert_false(greylist_record_decode(odd, sizeof(odd), 0, &back));
	assert_false(greylist_record_decode(NULL, 0, 0, &back));
	assert_true(greylist_record_expired(rec, 7, 0));
	/* the script's reply {passed, wait}: a negative wait reads 0; other shapes are not one */
	assert_int_equal(greylist_parse_reply(&arr, &pass, &wait_s), 0);
	assert_true(pass);
	assert_int_equal(wait_s, 0);
	assert_int_equal(greylist_parse_reply(&arr_bad, &pass, &wait_s), -1);
	assert_int_equal(greylist_parse_reply(&arr_one, &pass, &wait_s), -1);
	/* {passed, wait, allow} (auto_allow_clients) is one; a third element not a number is not */
	redisReply *three[3] = { &i1, &iw, &i1 }, *three_bad[3] = { &i1, &iw, &st };
	redisReply arr3 = { .type = REDIS_REPLY_ARRAY, .elements = 3, .element = three };
	redisReply arr3_bad = { .type = REDIS_REPLY_ARRAY, .elements = 3, .element = three_bad };

	assert_int_equal(greylist_parse_reply(&arr3, &pass, &wait_s), 0);
	assert_true(pass);
	assert_int_equal(greylist_parse_reply(&arr3_bad, &pass, &wait_s), -1);
	assert_int_equal(greylist_parse_reply(&st, &pass, &wait_s), -1);
	assert_int_equal(greylist_parse_reply(NULL, &pass, &wait_s), -1);
}

/* A client network's passes (auto_allow_clients) as the LMDB batch merges them. */
static void test_awl_records(void **state)
{
	unsigned char a[GREYLIST_RECORD_LEN], b[GREYLIST_RECORD_LEN];
	uint64_t op[3] = { 5000, 1, 0 }, count = 9;
	bool logged = true;
	long n;

	(void)state;
	/* a first pass makes a count of 1; a second, 2; a renewal keeps it, marked logged */
	n = greylist_awl_merge(NULL, 0, op, sizeof(op), a, sizeof(a), 1000, NULL);
	assert_int_equal(n, GREYLIST_RECORD_LEN);
	assert_true(greylist_awl_decode(a, sizeof(a), 1000, &count, &logged));
	assert_int_equal(count, 1);
	assert_false(logged);
	assert_int_equal(greylist_awl_merge(a, sizeof(a), op, sizeof(op), b, sizeof(b), 1000, NULL), n);
	assert_true(greylist_awl_decode(b, sizeof(b), 1000, &count, &logged));
	assert_int_equal(count, 2);
	op[0] = 9000;
	op[1] = 0;
	op[2] = 1;
	assert_int_equal(greylist_awl_merge(b, sizeof(b), op, sizeof(op), a, sizeof(a), 4000, NULL), n);
	assert_true(greylist_awl_decode(a, sizeof(a), 8999, &count, &logged));
	assert_int_equal(count, 2);
	assert_true(logged);
	/* expired: gone, and a renewal does not bring it back; a new pass starts at 1 */
	assert_false(greylist_awl_decode(a, sizeof(a), 9000, &count, &logged));
	assert_int_equal(greylist_awl_merge(a, sizeof(a), op, sizeof(op), b, sizeof(b), 9000, NULL), -1);
	op[0] = 20000;
	op[1] = 1;
	op[2] = 0;
	assert_int_equal(greylist_awl_merge(a, sizeof(a), op, sizeof(op), b, sizeof(b), 9000, NULL), n);
	assert_true(greylist_awl_decode(b, sizeof(b), 9000, &count, &logged));
	assert_int_equal(count, 1);
	assert_false(logged);
	/* a triplet's record is not a count; a short operand is refused */
	struct greylist_entry e = { 5000, true };

	greylist_record_encode(&e, 10000, a);
	assert_false(greylist_awl_decode(a, sizeof(a), 0, &count, &logged));
	assert_int_equal(greylist_awl_merge(NULL, 0, op, 8, b, sizeof(b), 0, NULL), -1);
}

/* allow_names: postgrey's whitelist_clients rules, checked against its Perl expressions
 * ((?:^|\.)\Qdomain\E$ caseless; /re/ caseless; a.b.c = /24; a.b = a.b.0.0/24 as postgrey
 * 1.37 reads it). */
struct nm_case { const char *label; const char *rule; const char *name; const char *ip; bool match; };
static const struct nm_case nm_cases[] = {
	{ "domain: the name itself", "google.com", "google.com", "198.18.1.1", true },
	{ "domain: a host under it", "google.com", "mail-yw1-f170.google.com", "198.18.1.1", true },
	{ "domain: case does not matter", "Google.COM", "MAIL.google.com", "198.18.1.1", true },
	{ "domain: a trailing dot on the name", "google.com", "mx.google.com.", "198.18.1.1", true },
	{ "domain: not a label boundary", "google.com", "notgoogle.com", "198.18.1.1", false },
	{ "domain: the domain further left", "google.com", "google.com.evil.test", "198.18.1.1", false },
	{ "no confirmed name: no name rule", "google.com", NULL, "198.18.1.1", false },
	{ "regex matches", "/^mail\\d+\\.example\\.com$/", "mail12.example.com", "198.18.1.1", true },
	{ "regex caseless", "/^mail\\d+\\.example\\.com$/", "MAIL3.Example.com", "198.18.1.1", true },
	{ "regex anchored: no match", "/^mail\\d+\\.example\\.com$/", "xmail3.example.com", "198.18.1.1", false },
	{ "regex unanchored finds inside", "/outbound/", "a.outbound.protection.outlook.com", "198.18.1.1", true },
	{ "address", "198.18.7.7", NULL, "198.18.7.7", true },
	{ "address: another one", "198.18.7.7", NULL, "198.18.7.8", false },
	{ "network /n", "198.18.0.0/16", "x.test", "198.18.200.1", true },
	{ "a.b.c is /24", "198.18.7", NULL, "198.18.7.200", true },
	{ "a.b.c is /24, not more", "198.18.7", NULL, "198.18.8.1", false },
	{ "a.b is a.b.0.0/24 (postgrey 1.37)", "198.18", NULL, "198.18.0.9", true },
	{ "a.b is not a.b.0.0/16 (postgrey 1.37)", "198.18", NULL, "198.18.1.9", false },
	{ "IPv6 network", "2001:db8::/32", NULL, "2001:db8:1::1", true },
	{ "address rule and a name", "198.18.7.7", "mail.example.com", "198.18.9.9", false },
};

static void test_names(void **state)
{
	char err[300];

	(void)state;
	for (size_t i = 0; i < sizeof(nm_cases) / sizeof(nm_cases[0]); i++) {
		const struct nm_case *c = &nm_cases[i];
		struct greylist_names l = { 0 };
		struct sockaddr_storage ss;

		assert_int_equal(netaddr_sockaddr_from_string(c->ip, &ss), 0);
		if (greylist_names_add(&l, c->rule, err, sizeof(err)) != 0)
			fail_msg("%s: %s", c->label, err);
		if (greylist_names_match(&l, c->name, (struct sockaddr *)&ss) != c->match)
			fail_msg("%s: %s vs %s", c->label, c->rule, c->name ? c->name : "(none)");
		greylist_names_free(&l);
	}
	/* refused rules */
	{
		struct greylist_names l = { 0 };
		static const char *const bad[] = { "", "two words", "/(unclosed/", "198.18.0.0/99", ".", NULL };

		for (size_t i = 0; bad[i]; i++)
			if (greylist_names_add(&l, bad[i], err, sizeof(err)) == 0)
				fail_msg("accepted bad rule \"%s\"", bad[i]);
		assert_int_equal(l.n, 0);
	}
	/* a file: comments, blanks, an error names its line */
	{
		char path[] = "/tmp/test_greylist_namesXXXXXX";
		int fd = mkstemp(path);
		FILE *f = fdopen(fd, "w");
		struct greylist_names l = { 0 };

		fputs("# postgrey's form\n\n  google.com   # trailing comment\n/^mail\\d+\\.x\\.test$/\n198.18.7\n", f);
		fclose(f);
		assert_int_equal(greylist_names_load(&l, path, err, sizeof(err)), 0);
		assert_int_equal(l.n, 3);
		greylist_names_free(&l);
		f = fopen(path, "w");
		fputs("ok.test\n/(bad/\n", f);
		fclose(f);
		assert_int_equal(greylist_names_load(&l, path, err, sizeof(err)), -1);
		assert_non_null(strstr(err, ":2: regex"));
		greylist_names_free(&l);
		unlink(path);
		assert_int_equal(greylist_names_load(&l, path, err, sizeof(err)), -1);

		/* a FIFO named as the file is refused at once, not waited on for a writer (until
		 * session 32 the load's fopen blocked: a reload, or the start, stalled for good;
		 * the alarm turns that into a failure); a device too */
		char dir[] = "/tmp/test_greylist_fifoXXXXXX", fifo[64];
		assert_non_null(mkdtemp(dir));
		snprintf(fifo, sizeof(fifo), "%s/names", dir);
		assert_int_equal(mkfifo(fifo, 0600), 0);
		alarm(10);
		assert_int_equal(greylist_names_load(&l, fifo, err, sizeof(err)), -1);
		alarm(0);
		assert_non_null(strstr(err, "not a regular file"));
		assert_int_equal(greylist_names_load(&l, "/dev/zero", err, sizeof(err)), -1);
		assert_int_equal(l.n, 0);
		unlink(fifo);
		rmdir(dir);

		/* a line at the limit (1,098 octets) is read, one octet more is refused at its line */
		f = fopen(path, "w");
		fprintf(f, "ok.test\nb.test #%01090d\n", 0);
		fclose(f);
		assert_int_equal(greylist_names_load(&l, path, err, sizeof(err)), 0);
		assert_int_equal(l.n, 2);
		greylist_names_free(&l);
		f = fopen(path, "w");
		fprintf(f, "ok.test\nb.test #%01091d", 0);
		fclose(f);
		assert_int_equal(greylist_names_load(&l, path, err, sizeof(err)), -1);
		assert_non_null(strstr(err, ":2: line longer than 1098 bytes"));
		greylist_names_free(&l);
		unlink(path);
	}
}

/* The local table out of memory (its entry's calloc fails): the recipient is let through
 * (never refuse mail for greylisting's own failure), counted as
 * mxgate_greylist_errors_total{reason="no_memory"}, not as a passed triplet (it was). */
static double series(const char *name)
{
	size_t len;
	char *text = metrics_render(NULL, &len), *at, line[200];
	double v = -1;

	assert_non_null(text);
	snprintf(line, sizeof(line), "\n%s ", name);     /* the sample, not its # HELP */
	if ((at = strstr(text, line)) != NULL)
		v = atof(at + strlen(line));
	free(text);
	return v;
}

/* Greytrapping's pieces: the trap list (any case, angle brackets, a trailing dot; each
 * address once; a file with comments; what is no address refused) and a client's record in
 * LMDB and the local table (a triplet's or a network's record is no client record). */
static void test_traps_and_client_records(void **state)
{
	struct greylist_traps t = { 0 };
	char err[300], path[] = "/tmp/test_greylist_traps_XXXXXX";
	unsigned char rec[GREYLIST_RECORD_LEN];
	struct greylist_entry e = { 1000, true };
	uint64_t since, exp;
	int fd;
	FILE *f;

	assert_int_equal(greylist_traps_add(&t, "Trap@Example.ORG", err, sizeof(err)), 0);
	assert_int_equal(greylist_traps_add(&t, "<trap@example.org>", err, sizeof(err)), 0);
	assert_int_equal(greylist_traps_add(&t, "nope", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expected an address"));
	assert_int_equal(greylist_traps_add(&t, "@example.org", err, sizeof(err)), -1);
	assert_int_equal(greylist_traps_add(&t, "a b@example.org", err, sizeof(err)), -1);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("# traps\n  second@example.test  # old address\n\n", f);
	fclose(f);
	assert_int_equal(greylist_traps_load(&t, path, err, sizeof(err)), 0);
	greylist_traps_sort(&t);
	assert_int_equal(t.n, 2);               /* the repeated address kept once */
	assert_true(greylist_traps_match(&t, "trap@example.org"));
	assert_true(greylist_traps_match(&t, "TRAP@example.org."));
	assert_true(greylist_traps_match(&t, "<Second@Example.test>"));
	assert_false(greylist_traps_match(&t, "trap@example.net"));
	assert_false(greylist_traps_match(&t, ""));
	assert_false(greylist_traps_match(&t, NULL));
	f = fopen(path, "w");
	fputs("ok@example.test\nbad line\n", f);
	fclose(f);
	assert_int_equal(greylist_traps_load(&t, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":2: "));
	unlink(path);
	greylist_traps_free(&t);
	greylist_traps_free(&t);                /* twice: a no-op */

	greylist_ip_encode(GREYLIST_IP_TRAPPED, 5000, 9000, rec);
	assert_int_equal(greylist_ip_decode(rec, sizeof(rec), 8999, &since, &exp), GREYLIST_IP_TRAPPED);
	assert_int_equal(since, 5000);
	assert_int_equal(exp, 9000);
	assert_int_equal(greylist_ip_decode(rec, sizeof(rec), 9000, &since, &exp), GREYLIST_IP_NONE);
	greylist_ip_encode(GREYLIST_IP_ALLOWED, 5000, 9000, rec);
	assert_int_equal(greylist_ip_decode(rec, sizeof(rec), 6000, &since, &exp), GREYLIST_IP_ALLOWED);
	assert_int_equal(greylist_ip_decode(rec, sizeof(rec) - 1, 6000, &since, &exp), GREYLIST_IP_NONE);
	greylist_record_encode(&e, 9000, rec);  /* a passed triplet */
	assert_int_equal(greylist_ip_decode(rec, sizeof(rec), 6000, &since, &exp), GREYLIST_IP_NONE);
	assert_int_equal(greylist_ip_local_state(greylist_ip_local_val(GREYLIST_IP_TRAPPED, 1733369000000ull),
	    &since), GREYLIST_IP_TRAPPED);
	assert_int_equal(since, 1733369000000ull);
	assert_int_equal(greylist_ip_local_state(greylist_ip_local_val(GREYLIST_IP_ALLOWED, 7), &since),
	    GREYLIST_IP_ALLOWED);
}

static void test_local_table_oom(void **state)
{
	static const char yaml[] = "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\ngreylist: { enabled: true, delay: 5m }\n";
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	uv_loop_t loop;
	char from[300], to[300];

	(void)state;
	/* a triplet of ~600 octets: its table entry is the only calloc that large */
	memset(from, 'g', sizeof(from));
	memcpy(from + 280, "@example.org", 13);
	memset(to, 'u', sizeof(to));
	memcpy(to + 280, "@example.test", 14);
	greylist_metrics();
	/* the module's counters are process-wide: the earlier tests' decisions are in them */
	double passed = series("mxgate_greylist_passed_total");
	double greylisted = series("mxgate_greylist_greylisted_total");

	assert_int_equal(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	/* a short triplet: greylisted as always */
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", "oom@example.org", "oom@example.test", NULL),
	    VERDICT_TEMPFAIL);
	fail_min = 560;
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", from, to, NULL), VERDICT_CONTINUE);
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", from, to, NULL), VERDICT_CONTINUE);
	fail_min = 0;
	assert_true(failed >= 2);
	assert_true(series("mxgate_greylist_passed_total") == passed);   /* was: 2 more */
	assert_true(series("mxgate_greylist_errors_total{reason=\"no_memory\"}") == 2);
	assert_true(series("mxgate_greylist_greylisted_total") == greylisted + 1);
	/* with memory again it is greylisted */
	assert_int_equal(rcpt(&mods, &loop, cfg, "198.18.7.7", from, to, NULL), VERDICT_TEMPFAIL);

	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
}

/* A client record's conditional delete as the batch merges it: deleted (0) only when live and
 * in the operand's state, else left (-1). */
static void test_ip_del_merge(void **state)
{
	static const struct {
		const char *label;
		int rec;               /* -1: no record */
		uint64_t del_only;
		uint64_t now, mark;
		size_t oplen;
		long want;
	} rows[] = {
		{ "disallow deletes an allow record", GREYLIST_IP_ALLOWED, GREYLIST_IP_ALLOWED, 5000, GREYLIST_IP_DEL_MARK, 16, 0 },
		{ "disallow leaves a trap", GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED, 5000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "untrap deletes a trap", GREYLIST_IP_TRAPPED, GREYLIST_IP_TRAPPED, 5000, GREYLIST_IP_DEL_MARK, 16, 0 },
		{ "untrap leaves an allow record", GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED, 5000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "an expired record is left to the sweep", GREYLIST_IP_ALLOWED, GREYLIST_IP_ALLOWED, 10000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "no record: nothing", -1, GREYLIST_IP_ALLOWED, 5000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "state none is no condition", GREYLIST_IP_ALLOWED, GREYLIST_IP_NONE, 5000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "no record and a state whose low bits are none (fuzz_store_records)", -1, 0x2100000000000000ull, 5000, GREYLIST_IP_DEL_MARK, 16, -1 },
		{ "another mark is not one", GREYLIST_IP_ALLOWED, GREYLIST_IP_ALLOWED, 5000, 1, 16, -1 },
		{ "another size is not one", GREYLIST_IP_ALLOWED, GREYLIST_IP_ALLOWED, 5000, GREYLIST_IP_DEL_MARK, 8, -1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		unsigned char rec[GREYLIST_RECORD_LEN], out[GREYLIST_RECORD_LEN];
		uint64_t op[2] = { rows[i].mark, rows[i].del_only };
		long n;

		if (rows[i].rec >= 0)
			greylist_ip_encode(rows[i].rec, 1000, 10000, rec);
		n = greylist_ip_del_merge(rows[i].rec >= 0 ? rec : NULL, rows[i].rec >= 0 ? sizeof(rec) : 0,
		    op, rows[i].oplen, out, sizeof(out), rows[i].now, NULL);
		if (n != rows[i].want)
			fail_msg("%s: %ld, want %ld", rows[i].label, n, rows[i].want);
	}
}

/* A client record written only where there is none (a worker's trap) as the batch merges
 * it: written (the record's length) when no live record is there, else left (-1). */
static void test_ip_new_merge(void **state)
{
	static const struct {
		const char *label;
		int rec;               /* -1: no record */
		uint64_t rec_exp, state, exp, now, mark;
		size_t oplen;
		long want;
	} rows[] = {
		{ "a trap where there is no record", -1, 0, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, GREYLIST_RECORD_LEN },
		{ "a trap over an expired record", GREYLIST_IP_ALLOWED, 4000, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, GREYLIST_RECORD_LEN },
		{ "an allow record written meanwhile stands", GREYLIST_IP_ALLOWED, 10000, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, -1 },
		{ "a trap written meanwhile stands", GREYLIST_IP_TRAPPED, 10000, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, -1 },
		{ "an allow where there is none", -1, 0, GREYLIST_IP_ALLOWED, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, GREYLIST_RECORD_LEN },
		{ "an operand expired already", -1, 0, GREYLIST_IP_TRAPPED, 5000, 5000, GREYLIST_IP_NEW_MARK, 32, -1 },
		{ "state none is no record", -1, 0, GREYLIST_IP_NONE, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, -1 },
		{ "a state whose low bits are trapped", -1, 0, 0x2100000000000001ull, 20000, 5000, GREYLIST_IP_NEW_MARK, 32, -1 },
		{ "another mark is not one", -1, 0, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_DEL_MARK, 32, -1 },
		{ "another size is not one", -1, 0, GREYLIST_IP_TRAPPED, 20000, 5000, GREYLIST_IP_NEW_MARK, 24, -1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		unsigned char rec[GREYLIST_RECORD_LEN], out[GREYLIST_RECORD_LEN];
		uint64_t op[4] = { rows[i].mark, rows[i].state, 4500, rows[i].exp }, since, exp;
		long n;

		if (rows[i].rec >= 0)
			greylist_ip_encode(rows[i].rec, 1000, rows[i].rec_exp, rec);
		n = greylist_ip_new_merge(rows[i].rec >= 0 ? rec : NULL, rows[i].rec >= 0 ? sizeof(rec) : 0,
		    op, rows[i].oplen, out, sizeof(out), rows[i].now, NULL);
		if (n != rows[i].want)
			fail_msg("%s: %ld, want %ld", rows[i].label, n, rows[i].want);
		if (n > 0 && (greylist_ip_decode(out, (size_t)n, rows[i].now, &since, &exp) != (int)rows[i].state ||
		    since != 4500 || exp != rows[i].exp))
			fail_msg("%s: the record written is not the operand's", rows[i].label);
	}
}

/* ---- a client record's verb across two workers (LMDB): the state it deletes is the one the
 * record has when LMDB applies the delete, not the one a worker saw when it queued it ----- */

static int gl_race_answered;

static void gl_race_done(struct greylist_write *gw)
{
	(void)gw;
	gl_race_answered++;     /* the test's thread: both loops run there */
}

static void gl_race_idle_cb(uv_idle_t *h)
{
	(void)h;
}

/* Runs loop a few times without waiting: a posted write's mailbox run, a writer's batch
 * done. An idle handle keeps it alive meanwhile (a mailbox's and a writer's async handles
 * alone keep no loop running). */
static void gl_race_turn(uv_loop_t *loop)
{
	uv_idle_t idle;

	uv_idle_init(loop, &idle);
	uv_idle_start(&idle, gl_race_idle_cb);
	for (int i = 0; i < 4; i++)
		uv_run(loop, UV_RUN_NOWAIT);
	uv_close((uv_handle_t *)&idle, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* The two-worker tests' daemon: dir (a mkdtemp template, made here) holds mx.yaml, greylist
 * on LMDB at dir/db with `extra` (", key: value" or "") in its block. Returns the loaded
 * config; db gets dir/db. */
static struct mx_config *gl_race_config(char *dir, const char *extra, char *db, size_t cap)
{
	struct mx_config *cfg = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(db, cap, "%s/mx.yaml", dir);
	assert_non_null(f = fopen(db, "w"));
	fprintf(f, "hostname: mx.example.test\n"
	    "listen:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\n"
	    "greylist: { enabled: true, store: \"lmdb:%s/db\"%s }\n", dir, extra);
	fclose(f);
	assert_int_equal(config_load(db, &cfg, stderr), 0);
	snprintf(db, cap, "%s/db", dir);
	return cfg;
}

/* Both workers' modules and loops freed, the writes landed, cfg freed, dir removed. */
static void gl_race_end(struct chain_modules *ma, uv_loop_t *la, struct chain_modules *mb, uv_loop_t *lb,
    struct mx_config *cfg, const char *dir)
{
	char cmd[300];

	chain_modules_free(ma);
	chain_modules_free(mb);
	uv_run(la, UV_RUN_DEFAULT);
	uv_run(lb, UV_RUN_DEFAULT);
	assert_true(lmdb_store_wait_written(5000));
	assert_int_equal(uv_loop_close(la), 0);
	assert_int_equal(uv_loop_close(lb), 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* The row: the map holds `map` for the client; worker A is given `queued` by a verb while B
 * is not there yet (B joins after it: a new worker, or one whose part has not run), and the
 * write lock is held (another process) so A's batch waits in the writer thread; then the
 * verb `del_only` (disallow: ALLOWED, untrap: TRAPPED) goes to A and B, A's part first, so
 * B's batch is applied after A's. B saw the map's record, in the state it deletes. */
struct gl_race_row {
	const char *label;
	int map, queued, del_only, want;
};

static void test_lmdb_conditional_delete_two_workers(void **state)
{
	static const struct gl_race_row rows[] = {
		{ "disallow after a trap queued in another worker keeps the trap",
		  GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED },
		{ "untrap after an allow queued in another worker keeps the allow record",
		  GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED },
		{ "disallow with nothing queued elsewhere deletes the allow record",
		  GREYLIST_IP_ALLOWED, GREYLIST_IP_NONE, GREYLIST_IP_ALLOWED, GREYLIST_IP_NONE },
		{ "untrap with nothing queued elsewhere deletes the trap",
		  GREYLIST_IP_TRAPPED, GREYLIST_IP_NONE, GREYLIST_IP_TRAPPED, GREYLIST_IP_NONE },
		{ "disallow leaves a trap the map holds",
		  GREYLIST_IP_TRAPPED, GREYLIST_IP_NONE, GREYLIST_IP_ALLOWED, GREYLIST_IP_TRAPPED },
	};
	int wrong = 0;

	(void)state;
	(void)lmdb_peer_lock_fds;       /* lmdb_peer.h's, not used here */
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct gl_race_row *row = &rows[i];
		char dir[] = "/tmp/mxgate-glrace-XXXXXX", path[300];
		const char *key = GREYLIST_IP_LMDB "198.18.5.5";
		struct mx_config *cfg;
		struct chain_modules ma, mb;
		struct greylist_write *put = calloc(1, sizeof(*put)), *del = calloc(1, sizeof(*del));
		unsigned char rec[GREYLIST_RECORD_LEN];
		struct lmdb_store_change ch = { key, rec, sizeof(rec) };
		uint64_t now;
		uv_loop_t la, lb;
		int release, got, want_answers = row->queued != GREYLIST_IP_NONE ? 2 : 1;
		pid_t peer;

		assert_non_null(put);
		assert_non_null(del);
		cfg = gl_race_config(dir, "", path, sizeof(path));
		now = (uint64_t)time(NULL) * 1000;
		greylist_ip_encode(row->map, now - 1000, now + HOUR, rec);
		assert_int_equal(lmdb_store_apply(path, 0, "test", &ch, 1), 0);

		uv_loop_init(&la);
		uv_loop_init(&lb);
		chain_modules_init(&ma, cfg, &la, 0);
		peer = lmdb_peer_start(path, LMDB_PEER_WRITE, &release);
		gl_race_answered = 0;
		if (row->queued != GREYLIST_IP_NONE) {
			/* A's own write of the record, waiting for the lock in the writer thread */
			snprintf(put->key, sizeof(put->key), "%s", key);
			greylist_ip_encode(row->queued, now, now + HOUR, put->val);
			put->vlen = sizeof(put->val);
			put->done = gl_race_done;
			assert_int_equal(greylist_write_post(put), 1);
			gl_race_turn(&la);
		}
		chain_modules_init(&mb, cfg, &lb, 1);
		snprintf(del->key, sizeof(del->key), "%s", key);
		del->del_only = row->del_only;
		del->want_seen = true;
		del->done = gl_race_done;
		assert_int_equal(greylist_write_post(del), 2);
		gl_race_turn(&la);      /* A's part first: its batch goes after the one it has */
		gl_race_turn(&lb);      /* B saw the map's record: its batch goes last */
		lmdb_peer_end(peer, release, false);
		/* every batch applied: A's second goes to the writer thread once its first is done */
		for (int ms = 0; ms < 10000 && gl_race_answered < want_answers; ms += 5) {
			gl_race_turn(&la);
			gl_race_turn(&lb);
			usleep(5000);
		}
		assert_int_equal(gl_race_answered, want_answers);

		got = greylist_map_state(path, key, now);
		if (got != row->want) {
			print_error("%s: the record is in state %d, want %d\n", row->label, got, row->want);
			wrong++;
		}

		gl_race_end(&ma, &la, &mb, &lb, cfg, dir);
		free(put);
		free(del);
	}
	assert_int_equal(wrong, 0);
}

/* A worker's trap (its RCPT to a trap address) against an allow written by another writer
 * between the worker's read and its batch — another worker, or another process sharing the
 * environment: another process holds the write lock; worker A is given `greylist allow`'s
 * record (its batch waits in the writer thread); worker B, joining after, reads no record,
 * traps the client and its batch goes after A's. The trap was a put and landed over the
 * allow (the client refused for trap_ttl though the operator allowed it, a state no order
 * of the two gives); now it is written only where there is no live record when the batch is
 * applied (greylist_ip_new_merge), so the allow stands. B's own next RCPT sees its trap
 * before the batch (lmdb_writer_get runs the queued merge). */
static void test_lmdb_trap_after_concurrent_allow(void **state)
{
	char dir[] = "/tmp/mxgate-gltrap-XXXXXX", path[300];
	const char *key = GREYLIST_IP_LMDB "198.18.5.6";
	struct mx_config *cfg;
	struct chain_modules ma, mb;
	struct greylist_write *allow = calloc(1, sizeof(*allow)), *nudge = calloc(1, sizeof(*nudge));
	uint64_t now;
	struct verdict v;
	uv_loop_t la, lb;
	int release, got;
	pid_t peer;

	(void)state;
	assert_non_null(allow);
	assert_non_null(nudge);
	cfg = gl_race_config(dir, ", delay: 1h, traps: [trap@example.test]", path, sizeof(path));
	now = (uint64_t)time(NULL) * 1000;
	uv_loop_init(&la);
	uv_loop_init(&lb);
	chain_modules_init(&ma, cfg, &la, 0);
	peer = lmdb_peer_start(path, LMDB_PEER_WRITE, &release);
	gl_race_answered = 0;
	/* the verb's allow, through A alone: its batch waits for the lock */
	snprintf(allow->key, sizeof(allow->key), "%s", key);
	greylist_ip_encode(GREYLIST_IP_ALLOWED, now, now + HOUR, allow->val);
	allow->vlen = sizeof(allow->val);
	allow->done = gl_race_done;
	assert_int_equal(greylist_write_post(allow), 1);
	gl_race_turn(&la);
	/* B read no record: the trap */
	chain_modules_init(&mb, cfg, &lb, 1);
	assert_int_equal(rcpt(&mb, &lb, cfg, "198.18.5.6", "a@example.org", "trap@example.test", &v),
	    VERDICT_TEMPFAIL);
	assert_int_equal(v.code, 451);
	/* B's next RCPT, its batch not applied yet: refused as trapped */
	assert_int_equal(rcpt(&mb, &lb, cfg, "198.18.5.6", "a@example.org", "b@example.test", &v),
	    VERDICT_REJECT);
	assert_int_equal(v.code, 550);
	/* B's batch goes to the writer thread after A's (a write to both flushes both) */
	snprintf(nudge->key, sizeof(nudge->key), "%s", GREYLIST_IP_LMDB "198.18.5.99");
	greylist_ip_encode(GREYLIST_IP_ALLOWED, now, now + HOUR, nudge->val);
	nudge->vlen = sizeof(nudge->val);
	nudge->done = gl_race_done;
	assert_int_equal(greylist_write_post(nudge), 2);
	gl_race_turn(&la);
	gl_race_turn(&lb);
	lmdb_peer_end(peer, release, false);
	for (int ms = 0; ms < 10000 && gl_race_answered < 2; ms += 5) {
		gl_race_turn(&la);
		gl_race_turn(&lb);
		usleep(5000);
	}
	assert_int_equal(gl_race_answered, 2);
	got = greylist_map_state(path, key, now);
	gl_race_end(&ma, &la, &mb, &lb, cfg, dir);
	free(allow);
	free(nudge);
	if (got != GREYLIST_IP_ALLOWED)
		fail_msg("the client record is in state %d (%s), want allowed: the worker's trap landed over "
		    "the allow", got, got == GREYLIST_IP_TRAPPED ? "trapped" : "none");
}

/* The digest of a message the rules engine greylists by score (greylist_message_digest):
 * the same message retried has the same one, another body, sender or recipient set another. */
struct digest_case {
	const char *label;
	const char *sender, *rcpts[3];
	const char *msg;
	bool same;      /* as the reference message */
};

static const struct digest_case digest_cases[] = {
	{ "the reference itself", "a@example.org", { "u@example.test", "v@example.test" },
	  "Subject: x\r\n\r\nbody\r\n", true },
	{ "other header fields: the same (a retry's Received, a new Date)", "a@example.org",
	  { "u@example.test", "v@example.test" },
	  "Received: from x\r\nSubject: y\r\nDate: now\r\n\r\nbody\r\n", true },
	{ "recipients in another order and case: the same", "A@Example.org",
	  { "V@example.test", "u@EXAMPLE.test" }, "Subject: x\r\n\r\nbody\r\n", true },
	{ "a header block ended by a bare LF blank line", "a@example.org",
	  { "u@example.test", "v@example.test" }, "Subject: x\n\nbody\r\n", true },
	{ "another body", "a@example.org", { "u@example.test", "v@example.test" },
	  "Subject: x\r\n\r\nbody!\r\n", false },
	{ "another sender", "b@example.org", { "u@example.test", "v@example.test" },
	  "Subject: x\r\n\r\nbody\r\n", false },
	{ "the null sender", "", { "u@example.test", "v@example.test" },
	  "Subject: x\r\n\r\nbody\r\n", false },
	{ "one recipient fewer", "a@example.org", { "u@example.test" },
	  "Subject: x\r\n\r\nbody\r\n", false },
	{ "a recipient more", "a@example.org", { "u@example.test", "v@example.test", "w@example.test" },
	  "Subject: x\r\n\r\nbody\r\n", false },
	{ "no blank line: the whole text is hashed", "a@example.org",
	  { "u@example.test", "v@example.test" }, "Subject: x\r\nbody\r\n", false },
};

/* 5,000 recipients (limits.max_recipients allows 20,000), mixed case, in reverse order:
 * the digest is the one of the same set lower-cased in order, and the one the digest's
 * definition gives (python3: sha256 of "a@example.org\0" + each "r%05d@example.test\0" in
 * order + "\nbody\r\n"). */
static void digest_many_rcpts(void)
{
	enum { N = 5000 };
	const char *msg = "Subject: x\r\n\r\nbody\r\n";
	char (*buf)[32] = calloc(2 * N, sizeof(*buf));
	const char **rev = calloc(N, sizeof(*rev)), **fwd = calloc(N, sizeof(*fwd));
	char a[GREYLIST_DIGEST_HEX + 1], b[GREYLIST_DIGEST_HEX + 1];

	assert_non_null(buf);
	assert_non_null(rev);
	assert_non_null(fwd);
	for (int i = 0; i < N; i++) {
		snprintf(buf[i], sizeof(buf[i]), "R%05d@Example.TEST", N - 1 - i);
		rev[i] = buf[i];
		snprintf(buf[N + i], sizeof(buf[N + i]), "r%05d@example.test", i);
		fwd[i] = buf[N + i];
	}
	greylist_message_digest("a@example.org", rev, N, msg, strlen(msg), a);
	greylist_message_digest("a@example.org", fwd, N, msg, strlen(msg), b);
	assert_string_equal(a, b);
	assert_string_equal(a, "fa88628dbb1ffb7084134eaa55b8bc2e5a4610d705b7e96a3c441c9bf5e226a5");
	free(buf);
	free(rev);
	free(fwd);
}

static void test_message_digest(void **state)
{
	const char *ref_rcpts[] = { "u@example.test", "v@example.test" };
	const char *ref = "Subject: x\r\n\r\nbody\r\n";
	char want[GREYLIST_DIGEST_HEX + 1], got[GREYLIST_DIGEST_HEX + 1];

	(void)state;
	greylist_message_digest("a@example.org", ref_rcpts, 2, ref, strlen(ref), want);
	assert_int_equal(strlen(want), GREYLIST_DIGEST_HEX);
	assert_int_equal(strspn(want, "0123456789abcdef"), GREYLIST_DIGEST_HEX);
	for (size_t i = 0; i < sizeof(digest_cases) / sizeof(digest_cases[0]); i++) {
		const struct digest_case *c = &digest_cases[i];
		size_t n = 0;

		while (n < 3 && c->rcpts[n])
			n++;
		greylist_message_digest(c->sender, c->rcpts, n, c->msg, strlen(c->msg), got);
		if ((strcmp(got, want) == 0) != c->same)
			fail_msg("%s: %s, the reference %s", c->label, got, want);
	}
	/* the bytes hashed, pinned: "a@example.org\0u@example.test\0v@example.test\0\nbody\r\n"
	 * (python3 hashlib.sha256 of it), so a faster sort cannot change a digest Redis holds */
	assert_string_equal(want, "5106cdefea5a9d6d6470bed936850f5cb64d6c026117b8ac1c847e4655597e67");
	digest_many_rcpts();
	assert_string_equal(greylist_message_result_name(GREYLIST_MSG_DEFER), "deferred");
	assert_string_equal(greylist_message_result_name(GREYLIST_MSG_PASS), "passed");
	assert_string_equal(greylist_message_result_name(GREYLIST_MSG_ERROR), "error");
}

struct msg_rec_find { const char *key; bool found; uint64_t expires_ns, val; };

static bool msg_rec_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct msg_rec_find *f = arg;

	if (strcmp(key, f->key) != 0)
		return true;
	f->found = true;
	f->expires_ns = rec->expires_ns;
	f->val = rec->val;
	return false;
}

/* The same in an LMDB store: the record's own expiry (its first 8 octets, wall clock ms) read
 * from the map once the writer has written it. */
static void message_record_expire_lmdb(void)
{
	char dir[] = "/tmp/mxgate-glmsg-XXXXXX", yaml[512], cmd[100];
	const char *hex = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	struct greylist_msg_answer a = { 0 };
	struct greylist_msg_req *req = NULL;
	struct hook_env env;
	uv_loop_t loop;
	struct timeval tv;
	uint64_t t0, t1, exp;
	MDB_env *menv;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 0 }, v = { 0 };
	char key[80];

	assert_non_null(mkdtemp(dir));
	snprintf(yaml, sizeof(yaml), "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\ngreylist: { enabled: true, store: \"lmdb:%s\", delay: 0s, "
	    "retry_window: 1h, expire: 30d }\nrules: { greylist_expire: 2h }\n", dir);
	assert_int_equal(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);
	memset(&env, 0, sizeof(env));
	env.session_id = "test";
	env.loop = &loop;
	env.cfg = cfg;
	env.worker = 0;
	assert_int_equal(greylist_message_check(&env, hex, &a, NULL, NULL, &req), 1);
	assert_int_equal(a.result, GREYLIST_MSG_DEFER);
	gettimeofday(&tv, NULL);
	t0 = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	assert_int_equal(greylist_message_check(&env, hex, &a, NULL, NULL, &req), 1);
	gettimeofday(&tv, NULL);
	t1 = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	assert_int_equal(a.result, GREYLIST_MSG_PASS);
	assert_string_equal(a.store, "lmdb");
	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(lmdb_store_wait_written(5000));
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);

	snprintf(key, sizeof(key), "glm:%s", hex);
	k.mv_data = key;
	k.mv_size = strlen(key);
	assert_int_equal(mdb_env_create(&menv), 0);
	assert_int_equal(mdb_env_set_mapsize(menv, 512u << 20), 0);
	assert_int_equal(mdb_env_set_maxreaders(menv, 1022), 0);
	assert_int_equal(mdb_env_open(menv, dir, MDB_NOTLS | MDB_RDONLY, 0640), 0);
	assert_int_equal(mdb_txn_begin(menv, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
	assert_true(v.mv_size == GREYLIST_RECORD_LEN);
	memcpy(&exp, v.mv_data, sizeof(exp));
	mdb_txn_abort(txn);
	mdb_env_close(menv);
	if (exp < t0 + 7200000 || exp > t1 + 7200000)
		fail_msg("the passed message's LMDB record expires in %.0f s, not rules.greylist_expire's 7200",
		    ((double)exp - (double)t1) / 1e3);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* A message that passed greylisting by score keeps its record for rules.greylist_expire
 * (rspamd's day by default), not a triplet's greylist.expire (36 days): its expiry in the
 * local table (the record's own, on uv_hrtime's clock) lies between the call's start and end
 * plus the key's value. No wait: delay 0s passes the second sight. */
static void test_message_record_expire(void **state)
{
	static const char yaml[] = "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\ngreylist: { enabled: true, delay: 0s, retry_window: 1h, "
	    "expire: 30d }\nrules: { greylist_expire: 2h }\n";
	static const char dflt[] = "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\n";
	const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	struct greylist_msg_answer a = { 0 };
	struct greylist_msg_req *req = NULL;
	struct hook_env env;
	struct msg_rec_find f = { "mxgate:glm:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" };
	uv_loop_t loop;
	uint64_t t0, t1;

	(void)state;
	assert_int_equal(config_load_string("t.yaml", dflt, strlen(dflt), &cfg, stderr), 0);
	assert_true(cfg->rules.greylist_expire == 86400000ull);     /* 1d */
	config_free(cfg);
	cfg = NULL;
	assert_int_equal(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);
	memset(&env, 0, sizeof(env));
	env.session_id = "test";
	env.loop = &loop;
	env.cfg = cfg;
	env.worker = 0;
	/* first sight: deferred, kept for the retry window */
	assert_int_equal(greylist_message_check(&env, hex, &a, NULL, NULL, &req), 1);
	assert_int_equal(a.result, GREYLIST_MSG_DEFER);
	t0 = uv_hrtime();
	assert_int_equal(greylist_message_check(&env, hex, &a, NULL, NULL, &req), 1);
	t1 = uv_hrtime();
	assert_int_equal(a.result, GREYLIST_MSG_PASS);
	assert_string_equal(a.store, "local");
	local_table_foreach(greylist_local_table(), t1, msg_rec_fn, &f);
	assert_true(f.found && (f.val >> 63) != 0);                  /* passed */
	if (f.expires_ns < t0 + 7200000000000ull || f.expires_ns > t1 + 7200000000000ull)
		fail_msg("the passed message's record expires in %.0f s, not rules.greylist_expire's 7200",
		    (double)(f.expires_ns - t1) / 1e9);
	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
	message_record_expire_lmdb();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_triplet),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_awl_records),
		cmocka_unit_test(test_module_local),
		cmocka_unit_test(test_module_lmdb),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_traps_and_client_records),
		cmocka_unit_test(test_local_table_oom),
		cmocka_unit_test(test_ip_del_merge),
		cmocka_unit_test(test_ip_new_merge),
		cmocka_unit_test(test_lmdb_conditional_delete_two_workers),
		cmocka_unit_test(test_lmdb_trap_after_concurrent_allow),
		cmocka_unit_test(test_message_digest),
		cmocka_unit_test(test_message_record_expire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
