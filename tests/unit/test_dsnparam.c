/* test_dsnparam.c — the DSN parameters' syntax (RFC 3461 4) as Postfix's smtpd judges it:
 * RET=FULL|HDRS, ENVID=xtext, NOTIFY=NEVER or SUCCESS/FAILURE/DELAY, ORCPT=type;xtext,
 * each at most once; parsed by smtp_cmd_parse first, as the session does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dsnparam.h"
#include "smtp_cmd.h"

static const char *check(const char *line)
{
	static struct smtp_cmd cmd;
	const char *reply = NULL;

	memset(&cmd, 0, sizeof(cmd));
	if (smtp_cmd_parse(line, strlen(line), &cmd, &reply) != 0)
		fail_msg("%s: parse error %s", line, reply);
	return cmd.verb == SMTP_MAIL ? dsnparam_check_mail(&cmd) : dsnparam_check_rcpt(&cmd);
}

static void test_mail(void **state)
{
	static const char *const good[] = {
		"MAIL FROM:<a@b.example>", "MAIL FROM:<a@b.example> RET=FULL", "MAIL FROM:<a@b.example> ret=hdrs",
		"MAIL FROM:<a@b.example> ENVID=QQ314159", "MAIL FROM:<a@b.example> ENVID=a+2Bb+3dc RET=HDRS SIZE=10",
		"MAIL FROM:<> RET=HDRS ENVID=x",
	};
	static const char *const bad_ret[] = {
		"MAIL FROM:<a@b.example> RET=HDRS RET=FULL", "MAIL FROM:<a@b.example> RET=BOGUS",
		"MAIL FROM:<a@b.example> RET", "MAIL FROM:<a@b.example> RET=FULLX",
	};
	static const char *const bad_envid[] = {
		"MAIL FROM:<a@b.example> ENVID=a ENVID=b", "MAIL FROM:<a@b.example> ENVID",
		"MAIL FROM:<a@b.example> ENVID=a+", "MAIL FROM:<a@b.example> ENVID=a+4", "MAIL FROM:<a@b.example> ENVID=a+GG",
		"MAIL FROM:<a@b.example> ENVID=a+0Ab", "MAIL FROM:<a@b.example> ENVID=a+7F",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (check(good[i]) != NULL)
			fail_msg("%s: refused (%s)", good[i], check(good[i]));
	for (size_t i = 0; i < sizeof(bad_ret) / sizeof(bad_ret[0]); i++)
		assert_string_equal(check(bad_ret[i]) ? check(bad_ret[i]) : bad_ret[i], "501 5.5.4 Bad RET parameter syntax");
	for (size_t i = 0; i < sizeof(bad_envid) / sizeof(bad_envid[0]); i++)
		assert_string_equal(check(bad_envid[i]) ? check(bad_envid[i]) : bad_envid[i],
		    "501 5.5.4 Bad ENVID parameter syntax");
}

static void test_rcpt(void **state)
{
	static const char *const good[] = {
		"RCPT TO:<a@b.example>", "RCPT TO:<a@b.example> NOTIFY=NEVER", "RCPT TO:<a@b.example> notify=never",
		"RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE,DELAY", "RCPT TO:<a@b.example> NOTIFY=delay",
		"RCPT TO:<a@b.example> ORCPT=rfc822;a@b.example", "RCPT TO:<a@b.example> ORCPT=RFC822;a+2Bx@b.example NOTIFY=FAILURE",
		"RCPT TO:<a@b.example> ORCPT=utf-8;a\\x{E9}@b.example", "RCPT TO:<Postmaster> NOTIFY=SUCCESS",
		/* what Postfix 3.7's smtp client sends for a UTF-8 local part (SMTPUTF8 transaction):
		 * rfc822 with the UTF-8 octets xtext-encoded; Postfix's smtpd takes it */
		"RCPT TO:<a@b.example> ORCPT=rfc822;+CE+B4+CE+BF+CE+BA+CE+B9+CE+BC+CE+AE@b.example",
	};
	static const char *const bad_notify[] = {
		"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", "RCPT TO:<a@b.example> NOTIFY=SUCCESS,NEVER",
		"RCPT TO:<a@b.example> NOTIFY=BOGUS", "RCPT TO:<a@b.example> NOTIFY=SUCCESS,SUCCESS",
		"RCPT TO:<a@b.example> NOTIFY=SUCCESS,", "RCPT TO:<a@b.example> NOTIFY=,SUCCESS", "RCPT TO:<a@b.example> NOTIFY",
		"RCPT TO:<a@b.example> NOTIFY=DELAY NOTIFY=FAILURE",
	};
	static const char *const bad_orcpt[] = {
		"RCPT TO:<a@b.example> ORCPT=bogus", "RCPT TO:<a@b.example> ORCPT=;a@b.example",
		"RCPT TO:<a@b.example> ORCPT=rfc822;", "RCPT TO:<a@b.example> ORCPT=rfc822;a+0Db@b.example",
		"RCPT TO:<a@b.example> ORCPT=rfc822;a+Zb@b.example", "RCPT TO:<a@b.example> ORCPT",
		"RCPT TO:<a@b.example> ORCPT=rfc822;a@b ORCPT=rfc822;c@d", "RCPT TO:<a@b.example> ORCPT=utf-8;a+2Bb",
		"RCPT TO:<a@b.example> ORCPT=rfc822;a+7Fb@b.example",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (check(good[i]) != NULL)
			fail_msg("%s: refused (%s)", good[i], check(good[i]));
	for (size_t i = 0; i < sizeof(bad_notify) / sizeof(bad_notify[0]); i++)
		assert_string_equal(check(bad_notify[i]) ? check(bad_notify[i]) : bad_notify[i],
		    "501 5.5.4 Error: Bad NOTIFY parameter syntax");
	for (size_t i = 0; i < sizeof(bad_orcpt) / sizeof(bad_orcpt[0]); i++)
		assert_string_equal(check(bad_orcpt[i]) ? check(bad_orcpt[i]) : bad_orcpt[i],
		    "501 5.5.4 Error: Bad ORCPT parameter syntax");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_rcpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
