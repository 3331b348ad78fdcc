/* test_xclient.c — XCLIENT's attribute list (proxy/xclient.c) over labelled rows: what each
 * attribute sets, xtext, the forms of ADDR, and the 501 reply of each error; and mxgate's own
 * XCLIENT to a backend rewritten after a 501 (xclient_mark_unavailable): each attribute a
 * reply names, a reply naming none, xtext values, lines too long for the room given. */
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

/* mxgate's line to a Postfix 3.7 that announces every attribute (relay.c's order). */
#define L_V6 "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=IPV6:::1 PORT=40001 " \
	"DESTADDR=IPV6:::1 DESTPORT=25 PROTO=ESMTP HELO=client.test LOGIN=[UNAVAILABLE]"
#define L_V4 "XCLIENT NAME=mail.client.test REVERSE_NAME=mail.client.test ADDR=198.18.0.7 PORT=40001 " \
	"DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=helo+2Bx.test LOGIN=alice+40example.org"

struct mark_row {
	const char *label;
	const char *line;
	const char *reply;      /* the backend's 501 */
	int changed;            /* what xclient_mark_unavailable returns */
	const char *out;        /* the line once more (changed > 0) */
	const char *names;
};

static const struct mark_row mark_rows[] = {
	{ "ADDR of an IPv6 client (inet_protocols = ipv4): the IPv6 DESTADDR too", L_V6,
	  "501 5.5.4 Bad ADDR syntax: IPV6:::1", 2,
	  "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PORT=40001 "
	  "DESTADDR=[UNAVAILABLE] DESTPORT=25 PROTO=ESMTP HELO=client.test LOGIN=[UNAVAILABLE]", "ADDR,DESTADDR" },
	{ "DESTADDR alone (an IPv6 listener, an IPv4 client)",
	  "XCLIENT ADDR=198.18.0.7 PORT=1 DESTADDR=IPV6:2001:db8::25 DESTPORT=25",
	  "501 5.5.4 Bad DESTADDR syntax: IPV6:2001:db8::25", 1,
	  "XCLIENT ADDR=198.18.0.7 PORT=1 DESTADDR=[UNAVAILABLE] DESTPORT=25", "DESTADDR" },
	{ "ADDR of an IPv4 client: only the IPv4 addresses",
	  "XCLIENT ADDR=198.18.0.7 DESTADDR=IPV6:::1", "501 5.5.4 Bad ADDR syntax: 198.18.0.7", 1,
	  "XCLIENT ADDR=[UNAVAILABLE] DESTADDR=IPV6:::1", "ADDR" },
	{ "NAME: REVERSE_NAME of the same name too, the address kept", L_V4,
	  "501 5.5.4 Bad NAME syntax: mail.client.test", 2,
	  "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7 PORT=40001 "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=helo+2Bx.test LOGIN=alice+40example.org", "NAME,REVERSE_NAME" },
	{ "REVERSE_NAME of another name: NAME kept",
	  "XCLIENT NAME=a.client.test REVERSE_NAME=b.client.test ADDR=198.18.0.7",
	  "501 5.5.4 Bad REVERSE_NAME syntax: b.client.test", 1,
	  "XCLIENT NAME=a.client.test REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7", "REVERSE_NAME" },
	{ "PORT", L_V4, "501 5.5.4 Bad PORT syntax: 40001", 1,
	  "XCLIENT NAME=mail.client.test REVERSE_NAME=mail.client.test ADDR=198.18.0.7 PORT=[UNAVAILABLE] "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=helo+2Bx.test LOGIN=alice+40example.org", "PORT" },
	{ "DESTPORT", "XCLIENT ADDR=198.18.0.7 DESTPORT=25", "501 5.5.4 Bad DESTPORT syntax: 25", 1,
	  "XCLIENT ADDR=198.18.0.7 DESTPORT=[UNAVAILABLE]", "DESTPORT" },
	{ "HELO in xtext", L_V4, "501 5.5.4 Bad HELO syntax: helo+x.test", 1,
	  "XCLIENT NAME=mail.client.test REVERSE_NAME=mail.client.test ADDR=198.18.0.7 PORT=40001 "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=alice+40example.org", "HELO" },
	{ "LOGIN only when named", L_V4, "501 5.5.4 Bad LOGIN syntax: alice@example.org", 1,
	  "XCLIENT NAME=mail.client.test REVERSE_NAME=mail.client.test ADDR=198.18.0.7 PORT=40001 "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=helo+2Bx.test LOGIN=[UNAVAILABLE]", "LOGIN" },
	{ "PROTO is never unavailable: nothing to change", L_V4, "501 5.5.4 Bad PROTO syntax: ESMTP", 0, NULL, NULL },
	{ "naming none: the client's names (NAME, REVERSE_NAME, HELO), never the address or LOGIN", L_V4,
	  "501 5.5.4 Error: attribute value too long", 3,
	  "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7 PORT=40001 "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=alice+40example.org", "NAME,REVERSE_NAME,HELO" },
	{ "naming none from an IPv6 client: its addresses kept", L_V6, "501 5.5.4 Error: attribute value too long", 1,
	  "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=IPV6:::1 PORT=40001 "
	  "DESTADDR=IPV6:::1 DESTPORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=[UNAVAILABLE]", "HELO" },
	{ "a name in lower case is no name (Postfix writes it upper-case)", L_V4, "501 5.5.4 Bad addr syntax: x", 3,
	  "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7 PORT=40001 "
	  "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=alice+40example.org", "NAME,REVERSE_NAME,HELO" },
	{ "a name inside a word is no name", "XCLIENT ADDR=198.18.0.7 HELO=h", "501 5.5.4 xADDR syntax", 1,
	  "XCLIENT ADDR=198.18.0.7 HELO=[UNAVAILABLE]", "HELO" },
	{ "an attribute the line has not", "XCLIENT ADDR=198.18.0.7", "501 5.5.4 Bad HELO syntax: x", 0, NULL, NULL },
	{ "unavailable already: refused again, nothing to change", L_V6, "501 5.5.4 Bad NAME syntax: [UNAVAILABLE]",
	  0, NULL, NULL },
	{ "[TEMPUNAVAIL] stays, the other name goes",
	  "XCLIENT NAME=[TEMPUNAVAIL] REVERSE_NAME=[TEMPUNAVAIL] HELO=h.test", "501 5.5.4 Error: bad", 1,
	  "XCLIENT NAME=[TEMPUNAVAIL] REVERSE_NAME=[TEMPUNAVAIL] HELO=[UNAVAILABLE]", "HELO" },
	{ "a blamed address already unavailable names no family: the other addresses stay",
	  "XCLIENT ADDR=[UNAVAILABLE] DESTADDR=127.0.0.1", "501 5.5.4 Bad ADDR syntax: [UNAVAILABLE]", 0, NULL, NULL },
	{ "not mxgate's line: an unknown attribute", "XCLIENT TLS=yes ADDR=1.2.3.4", "501 5.5.4 Bad ADDR syntax", 0,
	  NULL, NULL },
	{ "not mxgate's line: no '='", "XCLIENT ADDR", "501 5.5.4 Bad ADDR syntax", 0, NULL, NULL },
	{ "not mxgate's line: two spaces", "XCLIENT  ADDR=1.2.3.4", "501 5.5.4 Bad ADDR syntax", 0, NULL, NULL },
	{ "not mxgate's line: no attribute", "XCLIENT", "501 5.5.4 Error: bad", 0, NULL, NULL },
	{ "not mxgate's line: another command", "XFORWARD HELO=h", "501 5.5.4 Error: bad", 0, NULL, NULL },
	{ "an attribute name in lower case is not mxgate's", "XCLIENT addr=1.2.3.4", "501 5.5.4 Bad ADDR syntax", 0,
	  NULL, NULL },
	{ "more attributes than mxgate sends", "XCLIENT HELO=a HELO=a HELO=a HELO=a HELO=a HELO=a HELO=a HELO=a HELO=a "
	  "HELO=a", "501 5.5.4 Error: bad", 0, NULL, NULL },
};

static void test_mark_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(mark_rows) / sizeof(mark_rows[0]); i++) {
		const struct mark_row *r = &mark_rows[i];
		char out[2048], names[96];

		print_message("%s\n", r->label);
		memset(out, 'x', sizeof(out));
		int n = xclient_mark_unavailable(r->line, r->reply, out, sizeof(out), names, sizeof(names));
		assert_int_equal(n, r->changed);
		if (r->changed == 0)
			continue;
		assert_string_equal(out, r->out);
		assert_string_equal(names, r->names);
		/* what it wrote parses as an inbound XCLIENT would (xtext kept as it was) */
		struct xclient_attrs x;
		char reply[256];
		assert_int_equal(xclient_parse(out + strlen("XCLIENT "), &x, reply, sizeof(reply)), 0);
	}
}

/* The room for the line or the names: the line as long as it gets (relay.c's RELAY_XCLIENT_MAX,
 * 3,400) fits; one octet short of it is 0, never a line cut short; a NUL always ends both. */
static void test_mark_room(void **state)
{
	static const char want[] = "XCLIENT NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7 PORT=40001 "
	    "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=alice+40example.org";
	const char *text = "501 5.5.4 Error: attribute value too long";
	char out[sizeof(want)], names[sizeof("NAME,REVERSE_NAME,HELO")], line[3400], lout[3400];

	(void)state;
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, sizeof(out), names, sizeof(names)), 3);
	assert_string_equal(out, want);
	assert_string_equal(names, "NAME,REVERSE_NAME,HELO");
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, sizeof(out) - 1, names, sizeof(names)), 0);
	assert_true(strlen(out) < sizeof(out) - 1);
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, sizeof(out), names, sizeof(names) - 1), 0);
	assert_true(strlen(names) < sizeof(names) - 1);
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, 0, names, sizeof(names)), 0);
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, sizeof(out), names, 0), 0);
	assert_int_equal(xclient_mark_unavailable(L_V4, text, out, 1, names, 1), 0);
	assert_string_equal(out, "");
	assert_string_equal(names, "");

	/* four values of 450 octets each (150 escapes): a line of 1,900 octets, each token
	 * copied whole */
	size_t o = (size_t)snprintf(line, sizeof(line), "XCLIENT ADDR=198.18.0.7");
	const char *attrs[] = { "NAME", "REVERSE_NAME", "HELO", "LOGIN" };
	for (size_t a = 0; a < 4; a++) {
		o += (size_t)snprintf(line + o, sizeof(line) - o, " %s=", attrs[a]);
		for (int k = 0; k < 150 && o + 4 < sizeof(line); k++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "+2B");
	}
	assert_true(o < sizeof(line) - 1);
	assert_int_equal(xclient_mark_unavailable(line, "501 5.5.4 Bad LOGIN syntax: +++", lout, sizeof(lout), names,
	    sizeof(names)), 1);
	assert_non_null(strstr(lout, " LOGIN=[UNAVAILABLE]"));
	assert_non_null(strstr(lout, " HELO=+2B+2B"));
	assert_int_equal(xclient_mark_unavailable(line, "501 5.5.4 Error: too long", lout, sizeof(lout), names,
	    sizeof(names)), 3);
	assert_int_equal(strncmp(lout, "XCLIENT ADDR=198.18.0.7 NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] "
	    "HELO=[UNAVAILABLE] LOGIN=+2B", 98), 0);
	assert_int_equal(strlen(lout), strlen(line) - 3 * 450 + 3 * 13);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_mark_rows),
		cmocka_unit_test(test_mark_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
