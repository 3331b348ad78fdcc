/* test_eval_header.c — SpamAssassin's HeaderEval tests (rules/eval_header.c) and the FreeMail
 * ones (rules/eval_misc.c) on crafted messages, with the stock rules' names and arguments. */
#include "eval_testlib.h"

static const char rules[] =
    "header MISSING_HEADERS eval:check_for_missing_to_header()\n"
    "header DATE_IN_PAST_96_XX eval:check_for_shifted_date('undef', '-96')\n"
    "header DATE_IN_FUTURE_06_12 eval:check_for_shifted_date('6', '12')\n"
    "header SUBJ_ALL_CAPS eval:subject_is_all_caps()\n"
    "header HEADER_FROM_DIFFERENT_DOMAINS eval:check_equal_from_domains()\n"
    "header MSGID_OUTLOOK_INVALID eval:check_outlook_message_id()\n"
    "header SUSPICIOUS_RECIPS eval:similar_recipients('0.65','undef')\n"
    "header SORTED_RECIPS eval:sorted_recipients()\n"
    "header SUBJ_ILLEGAL_CHARS eval:check_illegal_chars('Subject','0.2','2')\n"
    "header __MANY_FROM eval:check_header_count_range('From','2','999')\n"
    "header UNRESOLVED_TEMPLATE eval:check_unresolved_template()\n"
    "header FORGED_YAHOO_RCVD eval:check_for_forged_yahoo_received_headers()\n"
    "header TO_IN_SUBJ eval:check_for_to_in_subject('user')\n"
    "header __ENV_AND_HDR_FROM_MATCH eval:check_for_matching_env_and_hdr_from()\n"
    "header FREEMAIL_FROM eval:check_freemail_from()\n"
    "header FREEMAIL_ENVFROM_END_DIGIT eval:check_freemail_header('EnvelopeFrom', '\\d@')\n"
    "header __freemail_replyto eval:check_freemail_replyto('replyto')\n"
    "header __freemail_reply eval:check_freemail_replyto('reply')\n"
    "freemail_domains gmail.com yahoo.com aol.*\n"
    "util_rb_tld com net org fr\n";

#define RCVD "Received: from mail.example.org (mail.example.org [198.51.100.7])\n" \
	"\tby mx.example.net (Postfix) with ESMTP id 1234\n" \
	"\tfor <bob@example.net>; Mon, 2 Sep 2002 10:00:00 +0000\n"

static const struct et_case cases[] = {
	{ "no To: missing headers",
	  "From: a@example.org\nSubject: hi\nDate: Mon, 2 Sep 2002 10:00:00 +0000\n\nbody\n",
	  "MISSING_HEADERS", NULL },
	{ "Apparently-To counts as To",
	  "From: a@example.org\nApparently-To: b@example.net\nSubject: hi\n\nbody\n",
	  NULL, "MISSING_HEADERS" },
	{ "Date five days before the Received date",
	  RCVD "From: a@example.org\nTo: b@example.net\nDate: Wed, 28 Aug 2002 10:00:00 +0000\n"
	  "Subject: hi\n\nbody\n", "DATE_IN_PAST_96_XX", "DATE_IN_FUTURE_06_12" },
	{ "Date eight hours after the Received date",
	  RCVD "From: a@example.org\nTo: b@example.net\nDate: Mon, 2 Sep 2002 18:00:00 +0000\n"
	  "Subject: hi\n\nbody\n", "DATE_IN_FUTURE_06_12", "DATE_IN_PAST_96_XX" },
	{ "Date in another time zone, same instant",
	  RCVD "From: a@example.org\nTo: b@example.net\nDate: Mon, 2 Sep 2002 06:00:00 -0400\n"
	  "Subject: hi\n\nbody\n", NULL, "DATE_IN_FUTURE_06_12,DATE_IN_PAST_96_XX" },
	{ "subject in capitals",
	  "From: a@example.org\nTo: b@example.net\nSubject: FREE MONEY FOR YOU NOW\n\nbody\n",
	  "SUBJ_ALL_CAPS", NULL },
	{ "one-word capitals and a Re: prefix",
	  "From: a@example.org\nTo: b@example.net\nSubject: Re: HELLOWORLDFRIEND\n\nbody\n",
	  NULL, "SUBJ_ALL_CAPS" },
	{ "From and Return-Path in other domains",
	  "Return-Path: <bounce@lists.example.com>\nFrom: a@mail.example.org\nTo: b@example.net\n"
	  "Subject: hi\n\nbody\n", "HEADER_FROM_DIFFERENT_DOMAINS", "__ENV_AND_HDR_FROM_MATCH" },
	{ "same second-level domain",
	  "Return-Path: <a@example.org>\nFrom: A <a@example.org>\nTo: b@example.net\nSubject: hi\n\n"
	  "body\n", "__ENV_AND_HDR_FROM_MATCH", "HEADER_FROM_DIFFERENT_DOMAINS" },
	{ "Outlook Message-Id far from the Date",
	  "From: a@example.org\nTo: b@example.net\nDate: Mon, 2 Sep 2002 10:00:00 +0000\n"
	  "Message-ID: <000001c2aaaa$12345678$0a00a8c0@host>\nSubject: hi\n\nbody\n",
	  "MSGID_OUTLOOK_INVALID", NULL },
	{ "similar, sorted recipients",
	  "From: a@example.org\nTo: aa1@example.net, aa2@example.net, aa3@example.net, "
	  "aa4@example.net, aa5@example.net, aa6@example.net, aa7@example.net\nSubject: hi\n\nbody\n",
	  "SUSPICIOUS_RECIPS,SORTED_RECIPS", NULL },
	{ "different recipients",
	  "From: a@example.org\nTo: bob@example.net, carol@foo.test, dave@bar.test\nSubject: hi\n\n"
	  "body\n", NULL, "SUSPICIOUS_RECIPS,SORTED_RECIPS" },
	{ "8-bit junk in the Subject",
	  "From: a@example.org\nTo: b@example.net\nSubject: \xa9\xb2\xc8\xd1\xf0\n\nbody\n",
	  "SUBJ_ILLEGAL_CHARS", NULL },
	{ "UTF-8 in the Subject is fine",
	  "From: a@example.org\nTo: b@example.net\nSubject: caf\xc3\xa9 cr\xc3\xa8me\n\nbody\n",
	  NULL, "SUBJ_ILLEGAL_CHARS" },
	{ "two From: fields",
	  "From: a@example.org\nFrom: b@example.org\nTo: b@example.net\nSubject: hi\n\nbody\n",
	  "__MANY_FROM", NULL },
	{ "a %TEMPLATE left in a header",
	  "From: a@example.org\nTo: b@example.net\nSubject: hi\nX-Mailer: %MAILER_NAME\n\nbody\n",
	  "UNRESOLVED_TEMPLATE", NULL },
	{ "yahoo.com sender without a Yahoo relay",
	  RCVD "From: someone@yahoo.com\nTo: b@example.net\nSubject: hi\n\nbody\n",
	  "FORGED_YAHOO_RCVD,FREEMAIL_FROM", NULL },
	{ "the recipient's name in the Subject",
	  "From: a@example.org\nTo: bob@example.net\nSubject: bob, your offer\n\nbody\n",
	  "TO_IN_SUBJ", NULL },
	{ "freemail wildcard domain and an envelope sender ending in a digit",
	  "Return-Path: <joe1999@aol.fr>\nFrom: joe1999@aol.fr\nTo: b@example.net\n"
	  "Subject: hi\n\nbody\n", "FREEMAIL_FROM,FREEMAIL_ENVFROM_END_DIGIT", NULL },
	{ "freemail From and another freemail Reply-To",
	  "From: joe@gmail.com\nReply-To: jim@yahoo.com\nTo: b@example.net\nSubject: hi\n\nbody\n",
	  "__freemail_replyto", NULL },
	{ "a freemail From and another freemail in an <a href=mailto:> of the body",
	  "From: joe@gmail.com\nTo: b@example.net\nSubject: hi\nContent-Type: text/html\n\n"
	  "<html><body><a href=\"mailto:jim@yahoo.com?subject=x\">write</a></body></html>\n",
	  "__freemail_reply", NULL },
	{ "... but not in a <form action=mailto:> (SA's uri type form, not a)",
	  "From: joe@gmail.com\nTo: b@example.net\nSubject: hi\nContent-Type: text/html\n\n"
	  "<html><body><form action=mailto:jim@yahoo.com?subject=x>go</form></body></html>\n",
	  NULL, "__freemail_reply" },
	{ "role addresses are not freemail",
	  "From: support@gmail.com\nTo: b@example.net\nSubject: hi\n\nbody\n",
	  NULL, "FREEMAIL_FROM" },
};

static void test_header_evals(void **state)
{
	(void)state;
	et_run_cases(rules, cases, sizeof(cases) / sizeof(cases[0]));
}

/* SA's get() selectors: :addr and :name through parse_header_addresses (its Email::Address::XS
 * fall-back too), raw values, list values joined with "\n" (checked with spamassassin 4.0.1) */
static const char sel_rules[] =
    "header T_FROM_ADDR From:addr =~ /^jd\\@example\\.com$/\n"
    "header T_FROM_NAME From:name =~ /^Doe, John$/\n"
    "header T_TO_ADDRS To:addr =~ /^a\\@example\\.com\\nb\\@example\\.com$/\n"
    "header T_CC_NAME Cc:name =~ /^John Doe$/\n"
    "header T_RT_NAME Reply-To:name =~ /^J\\xc3\\xb6rg$/\n"
    "header T_RT_NAMERAW Reply-To:name:raw =~ /^=\\?utf-8\\?q\\?J=C3=B6rg\\?= $/\n"
    "header T_ENVFROM EnvelopeFrom =~ /^ngdgpfwxsw\\@\\[1086695621\\]$/\n"
    "header T_TO_RAW To:raw =~ /^ a\\@example\\.com, \"B\" <b\\@example\\.com>$/\n";

static const struct et_case sel_cases[] = {
	{ "address selectors",
	  "From: \"Doe, John\" <jd@example.com>\nTo: a@example.com, \"B\" <b@example.com>\n"
	  "Cc: jd@example.com (John Doe)\nReply-To: =?utf-8?q?J=C3=B6rg?= <j@example.org>\n"
	  "Return-Path: <ngdgpfwxsw@[1086695621] [pi]>\nSubject: hi\n\nbody\n",
	  "T_FROM_ADDR,T_FROM_NAME,T_TO_ADDRS,T_CC_NAME,T_RT_NAME,T_RT_NAMERAW,T_ENVFROM,T_TO_RAW",
	  NULL },
};

static void test_selectors(void **state)
{
	(void)state;
	et_run_cases(sel_rules, sel_cases, sizeof(sel_cases) / sizeof(sel_cases[0]));
}

/* An address field whose phrase is many empty quoted strings ("" "" ... ""): the quoted
 * string's pattern matched "" two ways (its empty alternative and its possessive loop taken
 * no times), so a phrase not followed by <...> backtracked over 2^k ways of reading k of
 * them and hit PCRE2's match limit: the field parsed as nothing (the fuzz_rules_scan corpus
 * had inputs at 30-80 times the median's CPU from it). SpamAssassin 4.0.1 reads it as the
 * name "x" and the address b@example.com (checked with its get()). */
static const char qs_rules[] =
    "header T_QS_ADDR To:addr =~ /^b\\@example\\.com$/\n"
    "header T_QS_NAME To:name =~ /^x$/\n";

static const struct et_case qs_cases[] = {
	{ "thirty empty quoted strings before the name",
	  "From: a@example.org\nTo: \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" "
	  "\"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" \"\" x, b@example.com\n"
	  "Subject: hi\n\nbody\n",
	  "T_QS_ADDR,T_QS_NAME", NULL },
};

static void test_empty_quoted_strings(void **state)
{
	(void)state;
	et_run_cases(qs_rules, qs_cases, sizeof(qs_cases) / sizeof(qs_cases[0]));
}

/* A message that does not start with a header: SA skips up to three lines that are not
 * fields (a line with a ':' still becomes one) and starts the body at the fourth. */
static const char hl_rules[] =
    "body T_PILLS /pills/\n"
    "body T_VIAGRA /viagra/\n"
    "body T_FIFTHB /fifth/\n"
    "header T_FIFTH exists:fifth\n"
    "header T_HELLO Hello =~ /there/\n"
    "header MISSING_HB_SEP eval:check_msg_parse_flags('missing_head_body_separator')\n";

static const struct et_case hl_cases[] = {
	{ "no header at all",
	  "Hello there\nBuy cheap pills now\nthird line\nfourth line viagra\nfifth: line\n",
	  "T_VIAGRA,T_FIFTHB,MISSING_HB_SEP", "T_PILLS,T_FIFTH,T_HELLO" },
	{ "a field, a stray line, then the body",
	  "Hello: there\nBuy cheap pills now\n\nbody viagra\n",
	  "T_HELLO,T_VIAGRA", "T_PILLS,MISSING_HB_SEP" },
	{ "an mbox From line is skipped",
	  "From someone@example.org Mon Sep  2 10:00:00 2002\nHello: there\n\npills\n",
	  "T_HELLO,T_PILLS", NULL },
};

static void test_headerless(void **state)
{
	(void)state;
	et_run_cases(hl_rules, hl_cases, sizeof(hl_cases) / sizeof(hl_cases[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_evals),
		cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_headerless),
		cmocka_unit_test(test_empty_quoted_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
