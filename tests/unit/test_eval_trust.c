/* test_eval_trust.c — Received headers into relays (rules/received.c) the way SpamAssassin
 * parses them, the trust path (inferred, trusted_networks, mxgate's own client as the newest
 * relay), the X-Spam-Relays-* pseudo-headers and EnvelopeFrom, and the RelayEval tests. */
#include "eval_testlib.h"

#include "rules/match.h"
#include "rules/received.h"

#include <time.h>
#include <unistd.h>

struct rcvd_case {
	const char *label, *line;
	int rc;                               /* 1 relay, 0 skipped, -1 unparseable */
	const char *ip, *rdns, *helo, *by, *auth;
};

static const struct rcvd_case rcvd_cases[] = {
	{ "Postfix", "from mail.example.org (mail.example.org [198.51.100.7]) by mx.example.net "
	  "(Postfix) with ESMTP id 1234 for <b@example.net>; Mon, 2 Sep 2002 10:00:00 +0000",
	  1, "198.51.100.7", "mail.example.org", "mail.example.org", "mx.example.net", "" },
	{ "Postfix, no rDNS", "from helo.test (unknown [203.0.113.9]) by mx.example.net (Postfix) "
	  "with SMTP id X; Mon, 2 Sep 2002 10:00:00 +0000",
	  1, "203.0.113.9", "", "helo.test", "mx.example.net", "" },
	{ "sendmail", "from rev.net (natpool62.rev.net [63.148.93.62] (may be forged)) by "
	  "mail.rev.net (8.11.4/8.11.4) with ESMTP id h0KKa7d32306",
	  1, "63.148.93.62", "natpool62.rev.net", "rev.net", "mail.rev.net", "" },
	{ "Exim", "from dsl092-072-213.bos1.dsl.speakeasy.net ([66.92.72.213] helo=blazing.arsecandle.org) "
	  "by sc8-sf-list1.sourceforge.net with esmtp (Exim 3.31-VA-mm2 #1 (Debian)) id 18lyuU-0007TI-00",
	  1, "66.92.72.213", "dsl092-072-213.bos1.dsl.speakeasy.net", "blazing.arsecandle.org",
	  "sc8-sf-list1.sourceforge.net", "" },
	{ "qmail", "from unknown (HELO feux01a-isp) (213.199.4.210) by totor.bouissou.net with SMTP; "
	  "1 Nov 2003 07:05:19 -0000", 1, "213.199.4.210", "", "feux01a-isp", "totor.bouissou.net", "" },
	{ "Microsoft SMTPSVC", "from inet-vrs-05.redmond.corp.microsoft.com ([157.54.6.157]) by "
	  "INET-IMC-05.redmond.corp.microsoft.com with Microsoft SMTPSVC(5.0.2195.6624); "
	  "Thu, 6 Mar 2003 12:02:35 -0800", 1, "157.54.6.157", "",
	  "inet-vrs-05.redmond.corp.microsoft.com", "INET-IMC-05.redmond.corp.microsoft.com", "" },
	{ "authenticated submission", "from [192.0.2.5] (pc.example.org [192.0.2.5]) by "
	  "smtp.example.org (Postfix) with ESMTPSA id AB12; Mon, 2 Sep 2002 10:00:00 +0000",
	  1, "192.0.2.5", "pc.example.org", "[192.0.2.5]", "smtp.example.org", "ESMTPSA" },
	{ "a local Postfix handover is a relay (trusted: a private address)",
	  "from localhost (localhost [127.0.0.1]) by mail.example.org (Postfix) with ESMTP id 1",
	  1, "127.0.0.1", "localhost", "localhost", "mail.example.org", "" },
	{ "sendmail's local submission is skipped", "from raptor.research.att.com "
	  "(bala@localhost) by raptor.research.att.com (SGI-8.9.3/8.8.7) with ESMTP id KAA14788",
	  0, NULL, NULL, NULL, NULL, NULL },
	{ "qmail invoked by uid", "(qmail 12345 invoked by uid 1000); 2 Sep 2002 10:00:00 -0000",
	  0, NULL, NULL, NULL, NULL, NULL },
	{ "no IP anywhere", "from somewhere by nowhere-at-all", -1, NULL, NULL, NULL, NULL, NULL },
};

static void test_received_lines(void **state)
{
	struct match_scratch *ms = match_scratch_new();

	(void)state;
	for (size_t i = 0; i < sizeof(rcvd_cases) / sizeof(rcvd_cases[0]); i++) {
		const struct rcvd_case *c = &rcvd_cases[i];
		struct rcvd_relay r;
		bool fetch;
		int rc = received_parse_line(c->line, &r, &fetch, ms);

		if (rc != c->rc) {
			print_error("%s: rc %d, want %d\n", c->label, rc, c->rc);
			fail();
		}
		if (rc != 1)
			continue;
		/* SA replaces [ ] ( ) < > in helo/rdns/ip/by with '!' */
		if (strcmp(r.ip, c->ip) || strcmp(r.rdns, c->rdns) || strcmp(r.by, c->by) ||
		    strcmp(r.auth, c->auth) ||
		    (strcmp(r.helo, c->helo) && !(c->helo[0] == '[' && r.helo[0] == '!'))) {
			print_error("%s: ip=%s rdns=%s helo=%s by=%s auth=%s\n", c->label, r.ip, r.rdns,
			    r.helo, r.by, r.auth);
			fail();
		}
		free(r.as_string);
	}
	match_scratch_free(ms);
}

static const char relay_rules[] =
    "header ALL_TRUSTED eval:check_all_trusted()\n"
    "header NO_RELAYS eval:check_no_relays()\n"
    "header UNPARSEABLE_RELAY eval:check_relays_unparseable()\n"
    "header RCVD_HELO_IP_MISMATCH eval:helo_ip_mismatch()\n"
    "header NO_RDNS_DOTCOM_HELO eval:check_for_no_rdns_dotcom_helo()\n"
    "header __RP_MATCHES_RCVD eval:check_mailfrom_matches_rcvd()\n"
    "header RDNS_NONE X-Spam-Relays-External =~ /^[^\\]]+ rdns= /\n"
    "header __EF_EXAMPLE EnvelopeFrom =~ /\\@example\\.org$/\n";

static const struct et_case relay_cases[] = {
	{ "no Received at all", "From: a@example.org\nSubject: x\n\nbody\n",
	  "NO_RELAYS", "ALL_TRUSTED,UNPARSEABLE_RELAY" },
	{ "one public relay without rDNS",
	  "Received: from helo.example.com (unknown [203.0.113.9]) by mx.example.net (Postfix) "
	  "with SMTP id X; Mon, 2 Sep 2002 10:00:00 +0000\nFrom: a@example.org\nSubject: x\n\nb\n",
	  "RDNS_NONE", "ALL_TRUSTED,NO_RELAYS" },
	{ "private relays only: all trusted (SA's inference)",
	  "Received: from pc (pc.lan [192.168.1.5]) by gw.lan (Postfix) with SMTP id Y; "
	  "Mon, 2 Sep 2002 10:00:00 +0000\nFrom: a@example.org\nSubject: x\n\nb\n",
	  "ALL_TRUSTED", "RDNS_NONE,NO_RELAYS" },
	{ "an unparseable Received",
	  "Received: from somewhere by nowhere-at-all\nFrom: a@example.org\nSubject: x\n\nb\n",
	  "UNPARSEABLE_RELAY", "ALL_TRUSTED" },
	{ "HELO an address of another network",
	  "Received: from 198.51.100.20 (host.example.com [203.0.113.9]) by mx.example.net "
	  "(Postfix) with SMTP id X; Mon, 2 Sep 2002 10:00:00 +0000\nFrom: a@x.test\n\nb\n",
	  "RCVD_HELO_IP_MISMATCH", NULL },
	{ "HELO hotmail.com with no rDNS",
	  "Received: from hotmail.com (unknown [203.0.113.9]) by mx.example.net (Postfix) with "
	  "SMTP id X; Mon, 2 Sep 2002 10:00:00 +0000\nFrom: a@x.test\n\nb\n",
	  "NO_RDNS_DOTCOM_HELO", NULL },
	{ "Return-Path domain = the relay's rDNS domain",
	  "Return-Path: <a@example.org>\n"
	  "Received: from out.example.org (out.example.org [198.51.100.7]) by mx.example.net "
	  "(Postfix) with ESMTP id 1; Mon, 2 Sep 2002 10:00:00 +0000\nFrom: a@example.org\n\nb\n",
	  "__RP_MATCHES_RCVD,__EF_EXAMPLE", "RDNS_NONE" },
	{ "Return-Path below a Received is not the envelope sender",
	  "Received: from out.example.com (out.example.com [198.51.100.7]) by mx.example.net "
	  "(Postfix) with ESMTP id 1; Mon, 2 Sep 2002 10:00:00 +0000\n"
	  "Return-Path: <a@example.org>\nFrom: a@example.org\n\nb\n",
	  NULL, "__EF_EXAMPLE,__RP_MATCHES_RCVD" },
};

static void test_relay_evals(void **state)
{
	(void)state;
	et_run_cases(relay_rules, relay_cases, sizeof(relay_cases) / sizeof(relay_cases[0]));
}

/* mxgate is the MX: its SMTP client is the newest relay, with MAIL FROM as envelope-from;
 * rules.trusted_networks moves the trust boundary. */
static void test_client_relay(void **state)
{
	const char *msg = "From: a@example.org\nSubject: x\n\nbody\n";
	struct rules_envelope env = { .helo = "pc.example.org", .mail_from = "a@example.org",
		.client_ip = "203.0.113.9", .rdns = NULL };
	struct et *t = et_load(relay_rules);
	struct cfg_cidrlist tn = { 0 };
	struct cfg_cidr cidr;
	struct rules_opts o = { .trusted = &tn, .client_relay = true, .hostname = "mx.test" };
	struct rules_set *rs;

	(void)state;
	et_scan_env(t, msg, &env);
	assert_true(et_hit(t, "RDNS_NONE"));        /* the client has no rDNS */
	assert_true(et_hit(t, "__EF_EXAMPLE"));     /* envelope sender from MAIL FROM */
	assert_false(et_hit(t, "NO_RELAYS"));
	env.client_ip = "192.168.1.9";              /* a private client: trusted */
	et_scan_env(t, msg, &env);
	assert_true(et_hit(t, "ALL_TRUSTED"));
	et_free(t);

	/* trusted_networks from the config: the public client is trusted too */
	assert_int_equal(cfg_parse_cidr("203.0.113.0/24", &cidr), 0);
	tn.v = &cidr;
	tn.n = 1;
	{
		char path[] = "/tmp/test_eval_trust.XXXXXX";
		int fd = mkstemp(path);
		const char *glob_one[] = { path };
		struct rules_scratch *sc;
		struct rules_result res;

		assert_true(fd >= 0);
		assert_int_equal(write(fd, relay_rules, strlen(relay_rules)), (ssize_t)strlen(relay_rules));
		close(fd);
		assert_int_equal(rules_set_load_opts(glob_one, 1, &rs, stderr, RULES_PREFILTER_NONE, &o), 0);
		unlink(path);
		sc = rules_scratch_new(rs);
		env.client_ip = "203.0.113.9";
		rules_set_scan(rs, sc, msg, strlen(msg), &env, NULL, 0, &res);
		{
			bool all_trusted = false;

			for (size_t i = 0; i < res.n; i++)
				if (strcmp(res.v[i].name, "ALL_TRUSTED") == 0)
					all_trusted = true;
			assert_true(all_trusted);
		}
		rules_result_free(&res);
		rules_scratch_free(sc);
		rules_set_free(rs);
	}
}

/* Loopback is always in trusted_networks and internal_networks (SpamAssassin adds 127/8 and
 * ::1 to both), never in msa_networks: a local handover (Postfix to a content filter on
 * 127.0.0.1, amavis's reinjection) does not make the relay before it trusted. SpamAssassin
 * 4.0.1 on this message with `trusted_networks 10.1.0.0/16`: 198.51.100.7 untrusted, msa=0
 * on 127.0.0.1; mxgate took 127.0.0.1 for an MSA and trusted 198.51.100.7 (ALL_TRUSTED). */
static void test_loopback_not_msa(void **state)
{
	char rules[1024];
	const char *msg =
	    "Received: from localhost (localhost [127.0.0.1]) by mx.example.net (Postfix) "
	    "with ESMTP id 2; Mon, 2 Sep 2002 10:00:01 +0000\n"
	    "Received: from mail.example.org (mail.example.org [198.51.100.7]) by mx.example.net "
	    "(Postfix) with ESMTP id 1; Mon, 2 Sep 2002 10:00:00 +0000\n"
	    "From: a@example.org\nSubject: x\n\nbody\n";
	struct et *t;

	(void)state;
	snprintf(rules, sizeof(rules), "%strusted_networks 10.1.0.0/16\n"
	    "header __UNTRUSTED_ORG X-Spam-Relays-Untrusted =~ /ip=198\\.51\\.100\\.7 /\n"
	    "header __LOOPBACK_MSA X-Spam-Relays-Trusted =~ /ip=127\\.0\\.0\\.1 .* msa=1 /\n", relay_rules);
	t = et_load(rules);
	et_scan(t, msg);
	assert_false(et_hit(t, "ALL_TRUSTED"));
	assert_true(et_hit(t, "__UNTRUSTED_ORG"));
	assert_false(et_hit(t, "__LOOPBACK_MSA"));
	et_free(t);
	/* listed in msa_networks, it is one: the relay before it is trusted */
	snprintf(rules, sizeof(rules), "%strusted_networks 10.1.0.0/16\nmsa_networks 127.0.0.0/8\n",
	    relay_rules);
	t = et_load(rules);
	et_scan(t, msg);
	assert_true(et_hit(t, "ALL_TRUSTED"));
	et_free(t);
}

/* A site's trusted_networks of 1,000 prefixes from the rule files (/16 to /32, IPv4 and
 * IPv6, over several lines, the ones the hops are in listed last), eight public hops: every
 * hop is looked up in the list, so the trust path is the same whichever order the entries
 * are kept in, and one hop outside it ends ALL_TRUSTED. Prints what a scan costs (the
 * figure in the commit: the entries walked per hop before they were sorted). */
static void test_trusted_networks_many(void **state)
{
	size_t cap = 64 * 1024, n = 0;
	char *rules = malloc(cap), msg_in[4096], msg_out[4096];
	size_t mi = 0, mo = 0;
	struct et *t;

	(void)state;
	assert_non_null(rules);
	n += (size_t)snprintf(rules + n, cap - n, "%s", relay_rules);
	for (int i = 0; i < 1000; i++) {
		if (i % 100 == 0)
			n += (size_t)snprintf(rules + n, cap - n, "%strusted_networks", i ? "\n" : "");
		if (i >= 992)
			n += (size_t)snprintf(rules + n, cap - n, " 203.0.%d.0/24", i - 990);
		else if (i % 4 == 3)
			n += (size_t)snprintf(rules + n, cap - n, " 2001:db8:%x::/48", i);
		else if (i % 4 == 2)
			n += (size_t)snprintf(rules + n, cap - n, " 100.%d.%d.7", 64 + i / 250, i % 250);
		else
			n += (size_t)snprintf(rules + n, cap - n, " 198.%d.%d.0/%d", 18 + (i / 250) % 2, i % 250,
			    i % 4 ? 24 : 25);
	}
	n += (size_t)snprintf(rules + n, cap - n, "\n");
	assert_true(n < cap - 1);
	t = et_load(rules);
	for (int h = 0; h < 8; h++) {
		int net = 2 + (h % 6);     /* 203.0.2.0/24 .. 203.0.7.0/24 (entries 992 and after) */

		mi += (size_t)snprintf(msg_in + mi, sizeof(msg_in) - mi, "Received: from h%d.example.com "
		    "(h%d.example.com [203.0.%d.%d]) by r%d.example.net (Postfix) with ESMTP id X%d; "
		    "Mon, 2 Sep 2002 10:00:0%d +0000\n", h, h, net, 10 + h, h, h, h);
		mo += (size_t)snprintf(msg_out + mo, sizeof(msg_out) - mo, "Received: from h%d.example.com "
		    "(h%d.example.com [%s%d]) by r%d.example.net (Postfix) with ESMTP id X%d; "
		    "Mon, 2 Sep 2002 10:00:0%d +0000\n", h, h, h == 7 ? "192.0.2." : "203.0.3.", 10 + h,
		    h, h, h);
	}
	snprintf(msg_in + mi, sizeof(msg_in) - mi, "From: a@example.org\nSubject: x\n\nb\n");
	snprintf(msg_out + mo, sizeof(msg_out) - mo, "From: a@example.org\nSubject: x\n\nb\n");
	et_scan(t, msg_in);
	assert_true(et_hit(t, "ALL_TRUSTED"));
	et_scan(t, msg_out);
	assert_false(et_hit(t, "ALL_TRUSTED"));     /* its oldest hop, 192.0.2.17, is not in it */
	{
		struct timespec a, b;
		const int runs = 2000;

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
		for (int r = 0; r < runs; r++)
			et_scan(t, msg_in);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
		printf("# trusted_networks of 1000, 8 hops: %.1f us of CPU a scan (%d scans)\n",
		    ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / runs / 1e3, runs);
	}
	et_free(t);
	free(rules);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_received_lines),
		cmocka_unit_test(test_relay_evals),
		cmocka_unit_test(test_client_relay),
		cmocka_unit_test(test_loopback_not_msa),
		cmocka_unit_test(test_trusted_networks_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
