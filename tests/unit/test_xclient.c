/* test_xclient.c — XCLIENT's attribute list (proxy/xclient.c) over labelled rows: what each
 * attribute sets, xtext, the forms of ADDR, and the 501 reply of each error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxy/xclient.h"

struct row {
	const char *label;
	const char *arg;
	const char *reply;      /* NULL: parses */
	unsigned has;
	const char *addr;       /* the address as text (ADDR), NULL: not checked */
	int family;
};

static const struct row rows[] = {
	{ "nginx's XCLIENT", "ADDR=198.51.100.7 LOGIN=user NAME=[UNAVAILABLE]", NULL,
	  XCLIENT_ADDR | XCLIENT_LOGIN | XCLIENT_NAME, "198.51.100.7", AF_INET },
	{ "names without case", "addr=198.51.100.7 Port=25", NULL, XCLIENT_ADDR | XCLIENT_PORT, "198.51.100.7", AF_INET },
	{ "IPv6 as Postfix sends it", "ADDR=IPV6:2001:db8::1", NULL, XCLIENT_ADDR, "2001:db8::1", AF_INET6 },
	{ "IPv6 bare, as nginx sends it", "ADDR=2001:db8::2", NULL, XCLIENT_ADDR, "2001:db8::2", AF_INET6 },
	{ "v4-mapped IPv6 is its IPv4", "ADDR=IPV6:::ffff:192.0.2.9", NULL, XCLIENT_ADDR, "192.0.2.9", AF_INET },
	{ "IPv6 prefix on an IPv4 address", "ADDR=IPV6:192.0.2.9", "501 5.5.4 Bad ADDR syntax: IPV6:192.0.2.9", 0, NULL, 0 },
	{ "ADDR unavailable", "ADDR=[UNAVAILABLE]", NULL, XCLIENT_ADDR, NULL, 0 },
	{ "every attribute", "ADDR=192.0.2.1 PORT=1 NAME=a.example REVERSE_NAME=[TEMPUNAVAIL] HELO=h PROTO=SMTP "
	  "LOGIN=u DESTADDR=192.0.2.2 DESTPORT=25", NULL, 0x1ff, "192.0.2.1", AF_INET },
	{ "extra spaces", "  ADDR=192.0.2.1   PORT=2  ", NULL, XCLIENT_ADDR | XCLIENT_PORT, "192.0.2.1", AF_INET },
	{ "empty", "", "501 5.5.4 Syntax: XCLIENT attribute=value...", 0, NULL, 0 },
	{ "no value", "ADDR=", "501 5.5.4 Error: attribute=value expected", 0, NULL, 0 },
	{ "no '='", "ADDR", "501 5.5.4 Error: attribute=value expected", 0, NULL, 0 },
	{ "no name", "=1.2.3.4", "501 5.5.4 Bad XCLIENT attribute name: \"\"", 0, NULL, 0 },
	{ "unknown name", "TLS=yes", "501 5.5.4 Bad XCLIENT attribute name: TLS", 0, NULL, 0 },
	{ "port too large", "PORT=65536", "501 5.5.4 Bad PORT syntax: 65536", 0, NULL, 0 },
	{ "port not digits", "PORT=-1", "501 5.5.4 Bad PORT syntax: -1", 0, NULL, 0 },
	{ "port unavailable", "PORT=[UNAVAILABLE]", NULL, XCLIENT_PORT, NULL, 0 },
	{ "name not a host name", "NAME=a..b", "501 5.5.4 Bad NAME syntax: a..b", 0, NULL, 0 },
	{ "name an address literal", "NAME=[192.0.2.1]", "501 5.5.4 Bad NAME syntax: [192.0.2.1]", 0, NULL, 0 },
	{ "PROTO", "PROTO=LMTP", "501 5.5.4 Bad PROTO syntax: LMTP", 0, NULL, 0 },
	{ "xtext escape", "LOGIN=a+2Bb+3Dc", NULL, XCLIENT_LOGIN, NULL, 0 },
	{ "xtext cut escape", "LOGIN=a+2", "501 5.5.4 Error: malformed value: a+2", 0, NULL, 0 },
	{ "xtext control octet", "HELO=a+0Db", "501 5.5.4 Error: malformed value: a+0Db", 0, NULL, 0 },
	{ "xtext NUL", "HELO=a+00", "501 5.5.4 Error: malformed value: a+00", 0, NULL, 0 },
	/* a TAB passes the command parser: the reply shows it as '?' (fuzz_xclient's finding) */
	{ "a TAB in a value, shown as ?", "HELO=a\tb", "501 5.5.4 Error: malformed value: a?b", 0, NULL, 0 },
	{ "a TAB in a name", "AD\tDR=1", "501 5.5.4 Bad XCLIENT attribute name: AD?DR", 0, NULL, 0 },
	{ "a value of 255", "HELO=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  NULL, XCLIENT_HELO, NULL, 0 },
	{ "a value of 256", "HELO=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  "501 5.5.4 Error: attribute value too long", 0, NULL, 0 },
};

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct xclient_attrs x;
		char reply[256] = "", ip[64] = "";
		int rc = xclient_parse(r->arg, &x, reply, sizeof(reply));

		print_message("%s\n", r->label);
		if (r->reply) {
			assert_int_equal(rc, -1);
			assert_string_equal(reply, r->reply);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(x.has, r->has);
		if (r->addr) {
			assert_int_equal(x.addr.ss_family, r->family);
			inet_ntop(r->family, r->family == AF_INET ? (void *)&((struct sockaddr_in *)&x.addr)->sin_addr :
			    (void *)&((struct sockaddr_in6 *)&x.addr)->sin6_addr, ip, sizeof(ip));
			assert_string_equal(ip, r->addr);
		}
	}
}

static void test_values(void **state)
{
	struct xclient_attrs x;
	char reply[256];

	(void)state;
	assert_int_equal(xclient_parse("ADDR=192.0.2.1 PORT=40001 NAME=mail.example.org REVERSE_NAME=[UNAVAILABLE] "
	    "HELO=a+20b PROTO=smtp LOGIN=alice+40example.org DESTPORT=587", &x, reply, sizeof(reply)), 0);
	assert_int_equal(x.port, 40001);
	assert_string_equal(x.name, "mail.example.org");
	assert_int_equal(x.name_status, XCLIENT_NAME_OK);
	assert_string_equal(x.reverse_name, "");
	assert_int_equal(x.reverse_name_status, XCLIENT_NAME_UNAVAILABLE);
	assert_string_equal(x.helo, "a?b");     /* a space would split it where it is written */
	assert_false(x.esmtp);
	assert_string_equal(x.login, "alice@example.org");
	assert_int_equal(x.destport, 587);
	/* [UNAVAILABLE] logs out; a repeated name's last value wins */
	assert_int_equal(xclient_parse("LOGIN=bob LOGIN=[UNAVAILABLE] NAME=[TEMPUNAVAIL]", &x, reply, sizeof(reply)), 0);
	assert_string_equal(x.login, "");
	assert_int_equal(x.name_status, XCLIENT_NAME_TEMPUNAVAIL);
	assert_true(x.esmtp);   /* no PROTO: ESMTP */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
