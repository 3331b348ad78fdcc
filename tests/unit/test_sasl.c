/* test_sasl.c — SMTP AUTH message handling: the AUTH argument, strict base64, the PLAIN
 * split (RFC 4616), LOGIN answers, cancellation. One labelled row per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sasl.h"

struct b64_row {
	const char *label;
	const char *in;
	const char *out;            /* NULL: must fail */
	size_t outlen;
};

static const struct b64_row b64_rows[] = {
	{ "one group", "YWJj", "abc", 3 },
	{ "two pad", "YQ==", "a", 1 },
	{ "one pad", "YWI=", "ab", 2 },
	{ "empty response", "=", "", 0 },
	{ "PLAIN message", "AHVzZXIAcGFzcw==", "\0user\0pass", 10 },
	{ "all the alphabet", "+/+/", "\xfb\xff\xbf", 3 },
	{ "empty", "", NULL },
	{ "no padding", "YQ", NULL },
	{ "three chars", "YWI", NULL },
	{ "space inside", "YW Jj", NULL },
	{ "trailing newline", "YWJj\n", NULL },
	{ "CR LF", "YWJj\r\n", NULL },
	{ "bad char", "YW*j", NULL },
	{ "url alphabet", "YW-_", NULL },
	{ "pad in the middle", "YQ==YWJj", NULL },
	{ "three pads", "Y===", NULL },
	{ "lone pads", "====", NULL },
	{ "non-canonical pad bits (2)", "YR==", NULL },
	{ "non-canonical pad bits (1)", "YWJ=", NULL },
	{ "two equals", "==", NULL },
	{ "NUL inside", "YW\0j", NULL },
};

static void test_base64(void **state)
{
	(void)state;
	unsigned char out[64];
	char enc[128];

	for (size_t i = 0; i < sizeof(b64_rows) / sizeof(b64_rows[0]); i++) {
		const struct b64_row *r = &b64_rows[i];
		size_t n = strcmp(r->label, "NUL inside") == 0 ? 4 : strlen(r->in);
		ssize_t k = sasl_base64_decode(r->in, n, out, sizeof(out));

		if (r->out == NULL) {
			if (k != -1)
				fail_msg("%s: decoded to %zd octets", r->label, k);
			continue;
		}
		if (k != (ssize_t)r->outlen || memcmp(out, r->out, r->outlen) != 0)
			fail_msg("%s: got %zd octets", r->label, k);
		if (r->outlen > 0) {
			/* and back */
			assert_int_equal(sasl_base64_encode(out, (size_t)k, enc, sizeof(enc)), (ssize_t)n);
			assert_memory_equal(enc, r->in, n);
		}
	}
	/* room: exactly enough, one short */
	assert_int_equal(sasl_base64_decode("YWJj", 4, out, 3), 3);
	assert_int_equal(sasl_base64_decode("YWJj", 4, out, 2), -1);
	assert_int_equal(sasl_base64_encode((const unsigned char *)"abc", 3, enc, 4), -1);
	/* longer than any SASL line */
	char *big = malloc(SASL_MAX_B64 + 5);
	memset(big, 'A', SASL_MAX_B64 + 4);
	unsigned char *bo = malloc(SASL_MAX_B64);
	assert_int_equal(sasl_base64_decode(big, SASL_MAX_B64 + 4, bo, SASL_MAX_B64), -1);
	assert_int_equal(sasl_base64_decode(big, SASL_MAX_B64, bo, SASL_MAX_B64), SASL_MAX_B64 / 4 * 3);
	free(big);
	free(bo);
}

struct arg_row {
	const char *label;
	const char *arg;
	enum sasl_mech mech;
	const char *initial;        /* expected initial response, NULL for none */
	const char *reply;          /* NULL: accepted */
};

static const struct arg_row arg_rows[] = {
	{ "PLAIN", "PLAIN", SASL_MECH_PLAIN, NULL, NULL },
	{ "plain lower case", "plain", SASL_MECH_PLAIN, NULL, NULL },
	{ "PLAIN initial", "PLAIN AHVzZXIAcGFzcw==", SASL_MECH_PLAIN, "AHVzZXIAcGFzcw==", NULL },
	{ "PLAIN empty initial", "PLAIN =", SASL_MECH_PLAIN, "=", NULL },
	{ "LOGIN", "LOGIN", SASL_MECH_LOGIN, NULL, NULL },
	{ "LOGIN initial user", "LOGIN dXNlcg==", SASL_MECH_LOGIN, "dXNlcg==", NULL },
	{ "unknown mechanism", "CRAM-MD5", SASL_MECH_NONE, NULL, "504 5.5.4 Unrecognized authentication type" },
	{ "prefix of a mechanism", "PLAI", SASL_MECH_NONE, NULL, "504 5.5.4 Unrecognized authentication type" },
	{ "empty", "", SASL_MECH_NONE, NULL, "501 5.5.4 Syntax: AUTH mechanism [initial-response]" },
	{ "two responses", "PLAIN YWJj YWJj", SASL_MECH_PLAIN, NULL, "501 5.5.4 Syntax: AUTH mechanism [initial-response]" },
	{ "trailing space", "PLAIN ", SASL_MECH_PLAIN, NULL, "501 5.5.4 Syntax: AUTH mechanism [initial-response]" },
	{ "initial not base64", "PLAIN user:pass", SASL_MECH_PLAIN, NULL, "501 5.5.2 Cannot decode the initial response" },
};

static void test_auth_arg(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(arg_rows) / sizeof(arg_rows[0]); i++) {
		const struct arg_row *r = &arg_rows[i];
		enum sasl_mech m = (enum sasl_mech)99;
		const char *ir = (const char *)1, *reply = NULL;
		int rc = sasl_parse_auth_arg(r->arg, &m, &ir, &reply);

		if (r->reply != NULL) {
			if (rc != -1 || reply == NULL || strcmp(reply, r->reply) != 0)
				fail_msg("%s: rc %d reply %s", r->label, rc, reply ? reply : "(null)");
			continue;
		}
		if (rc != 0 || m != r->mech)
			fail_msg("%s: rc %d mech %d (%s)", r->label, rc, m, reply ? reply : "");
		if ((r->initial == NULL) != (ir == NULL) || (ir && strcmp(ir, r->initial) != 0))
			fail_msg("%s: initial %s", r->label, ir ? ir : "(none)");
	}
	assert_string_equal(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN");
	assert_string_equal(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
	assert_true(sasl_is_cancel("*", 1));
	assert_false(sasl_is_cancel("**", 2));
	assert_false(sasl_is_cancel("", 0));
}

struct plain_row {
	const char *label;
	const char *msg;
	size_t len;
	const char *authzid, *authcid, *passwd;   /* NULL authcid: must fail */
};

#define PR(label, msg, z, c, p) { label, msg, sizeof(msg) - 1, z, c, p }
static const struct plain_row plain_rows[] = {
	PR("no authzid", "\0user\0pass", "", "user", "pass"),
	PR("authzid", "admin\0user\0pass", "admin", "user", "pass"),
	PR("UTF-8 fields", "\0j\xc3\xb6rg\0p\xc3\xa4ss", "", "j\xc3\xb6rg", "p\xc3\xa4ss"),
	PR("spaces are fine", "\0a user\0a pass word", "", "a user", "a pass word"),
	PR("one NUL", "user\0pass", NULL, NULL, NULL),
	PR("no NUL", "userpass", NULL, NULL, NULL),
	PR("three NULs", "\0user\0pa\0ss", NULL, NULL, NULL),
	PR("empty authcid", "\0\0pass", NULL, NULL, NULL),
	PR("empty password", "\0user\0", NULL, NULL, NULL),
	PR("empty message", "", NULL, NULL, NULL),
	PR("broken UTF-8", "\0us\xc3r\0pass", NULL, NULL, NULL),
	PR("Latin-1 password", "\0user\0p\xe4ss", NULL, NULL, NULL),
};

static void test_plain(void **state)
{
	(void)state;
	struct sasl_plain p;
	const char *why;

	for (size_t i = 0; i < sizeof(plain_rows) / sizeof(plain_rows[0]); i++) {
		const struct plain_row *r = &plain_rows[i];
		why = NULL;
		int rc = sasl_plain_split((const unsigned char *)r->msg, r->len, &p, &why);

		if (r->authcid == NULL) {
			if (rc != -1 || why == NULL)
				fail_msg("%s: accepted", r->label);
			if (p.passwd[0] || p.authcid[0])
				fail_msg("%s: fields left behind", r->label);
			continue;
		}
		if (rc != 0)
			fail_msg("%s: refused: %s", r->label, why);
		if (strcmp(p.authzid, r->authzid) || strcmp(p.authcid, r->authcid) || strcmp(p.passwd, r->passwd))
			fail_msg("%s: %s / %s / %s", r->label, p.authzid, p.authcid, p.passwd);
	}
	/* names: 255 octets pass, 256 do not; the passwd (a bearer token through PLAIN) up to
	 * SASL_MAX_PASSWD, the most SASL_MAX_B64 base64 can hold with the names */
	static unsigned char msg[SASL_MAX_PASSWD + 600];
	size_t n = 0;
	msg[n++] = 0;
	memset(msg + n, 'u', 255);
	n += 255;
	msg[n++] = 0;
	memset(msg + n, 'p', 255);
	n += 255;
	assert_int_equal(sasl_plain_split(msg, n, &p, &why), 0);
	assert_int_equal(strlen(p.authcid), 255);
	assert_int_equal(strlen(p.passwd), 255);
	msg[n++] = 'p';
	assert_int_equal(sasl_plain_split(msg, n, &p, &why), 0);
	assert_int_equal(strlen(p.passwd), 256);
	n = 0;
	msg[n++] = 0;
	memset(msg + n, 'u', 256);
	n += 256;
	msg[n++] = 0;
	msg[n++] = 'p';
	assert_int_equal(sasl_plain_split(msg, n, &p, &why), -1);
	n = 0;
	msg[n++] = 0;
	msg[n++] = 'u';
	msg[n++] = 0;
	memset(msg + n, 'p', SASL_MAX_PASSWD);
	n += SASL_MAX_PASSWD;
	assert_int_equal(sasl_plain_split(msg, n, &p, &why), 0);
	assert_int_equal(strlen(p.passwd), SASL_MAX_PASSWD);
	msg[n++] = 'p';
	assert_int_equal(sasl_plain_split(msg, n, &p, &why), -1);
	/* sasl_wipe clears */
	memset(&p, 'x', sizeof(p));
	sasl_wipe(&p, sizeof(p));
	for (size_t i = 0; i < sizeof(p); i++)
		assert_int_equal(((unsigned char *)&p)[i], 0);
}

static void test_login(void **state)
{
	(void)state;
	char out[SASL_MAX_FIELD + 1];

	assert_string_equal(sasl_login_user_challenge, "VXNlcm5hbWU6");
	assert_string_equal(sasl_login_pass_challenge, "UGFzc3dvcmQ6");
	assert_int_equal(sasl_login_decode("dXNlcg==", 8, out, sizeof(out)), 0);
	assert_string_equal(out, "user");
	assert_int_equal(sasl_login_decode("=", 1, out, sizeof(out)), -1);       /* empty */
	assert_int_equal(sasl_login_decode("dQB4", 4, out, sizeof(out)), -1);    /* "u\0x" */
	assert_int_equal(sasl_login_decode("dXNlcg", 6, out, sizeof(out)), -1);  /* unpadded */
	assert_string_equal(out, "");
	assert_int_equal(sasl_login_decode("dXNlcg==", 8, out, 4), -1);         /* no room */
	/* 255 octets decode, 256 do not */
	unsigned char raw[256];
	char b64[400];
	memset(raw, 'a', sizeof(raw));
	ssize_t k = sasl_base64_encode(raw, 255, b64, sizeof(b64));
	assert_int_equal(sasl_login_decode(b64, (size_t)k, out, sizeof(out)), 0);
	k = sasl_base64_encode(raw, 256, b64, sizeof(b64));
	assert_int_equal(sasl_login_decode(b64, (size_t)k, out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_auth_arg),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_login),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
