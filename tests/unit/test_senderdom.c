/* test_senderdom.c — the sender-domain check's decision table (senderdom_decide), one row
 * per case of what the DNS said, and its helpers: which addresses are public, how an MX
 * answer item reads. The module against a real DNS server: tests/integration/
 * test_sender_domain.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "filters/senderdom.h"

#define OK DNS_S_OK
#define NX DNS_S_NXDOMAIN
#define ND DNS_S_NODATA
#define SF DNS_S_SERVFAIL
#define TO DNS_S_TIMEOUT

struct row {
	const char *what;
	bool check;                     /* check_mx_hosts */
	struct senderdom_facts f;
	enum senderdom_result want;
	enum senderdom_phase next;      /* when want is PENDING */
};

#define MXP SENDERDOM_PHASE_MX
#define ADP SENDERDOM_PHASE_ADDR
#define HOP SENDERDOM_PHASE_HOSTS

static const struct row rows[] = {
	/* the MX answer */
	{ "an MX: found, no more asked", false, { MXP, OK, false, 1 }, SENDERDOM_OK, MXP },
	{ "NXDOMAIN: not found at once, no A/AAAA asked", false, { MXP, NX }, SENDERDOM_UNKNOWN, MXP },
	{ "NODATA for MX: the A and AAAA next", false, { MXP, ND }, SENDERDOM_PENDING, ADP },
	{ "SERVFAIL for MX: an address still proves the domain", false, { MXP, SF }, SENDERDOM_PENDING, ADP },
	{ "timeout for MX: the A and AAAA next", false, { MXP, TO }, SENDERDOM_PENDING, ADP },
	{ "null MX", false, { MXP, OK, true, 0 }, SENDERDOM_NULL_MX, MXP },
	{ "null MX with check_mx_hosts", true, { MXP, OK, true, 0 }, SENDERDOM_NULL_MX, MXP },
	{ "check_mx_hosts: the hosts next", true, { MXP, OK, false, 2 }, SENDERDOM_PENDING, HOP },
	{ "check_mx_hosts: only '.' beside addresses, no host", true, { MXP, OK, false, 0 },
	  SENDERDOM_BAD_MX, MXP },
	/* the domain's own addresses (no MX) */
	{ "A only", false, { ADP, ND, .found_public = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "A answered, AAAA pending: decided already", false, { ADP, ND, .pending = 1, .found_public = 1 },
	  SENDERDOM_OK, ADP },
	{ "a private address is an address without check_mx_hosts", false,
	  { ADP, ND, .found_private = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "implicit MX on loopback with check_mx_hosts", true, { ADP, ND, .found_private = 1, .none = 1 },
	  SENDERDOM_BAD_MX, ADP },
	{ "implicit MX public with check_mx_hosts", true, { ADP, ND, .found_public = 1, .none = 1 },
	  SENDERDOM_OK, ADP },
	{ "one answer still to come", false, { ADP, ND, .pending = 1, .none = 1 }, SENDERDOM_PENDING, ADP },
	{ "NODATA for MX, A and AAAA: not found", false, { ADP, ND, .none = 2 }, SENDERDOM_UNKNOWN, ADP },
	{ "MX failed, no A/AAAA: cannot tell", false, { ADP, SF, .none = 2 }, SENDERDOM_TEMPERROR, ADP },
	{ "MX failed, A found: found", false, { ADP, TO, .found_public = 1, .none = 1 }, SENDERDOM_OK, ADP },
	{ "AAAA failed, A none: cannot tell", false, { ADP, ND, .temp = 1, .none = 1 },
	  SENDERDOM_TEMPERROR, ADP },
	{ "private A, failed AAAA, check_mx_hosts: cannot tell", true,
	  { ADP, ND, .found_private = 1, .temp = 1 }, SENDERDOM_TEMPERROR, ADP },
	/* the MX hosts' addresses (check_mx_hosts) */
	{ "an MX host with a public address", true, { HOP, OK, false, 2, .pending = 3, .found_public = 1 },
	  SENDERDOM_OK, HOP },
	{ "MX hosts that resolve to nothing", true, { HOP, OK, false, 2, .none = 4 }, SENDERDOM_BAD_MX, HOP },
	{ "MX hosts on private addresses only", true, { HOP, OK, false, 1, .found_private = 1, .none = 1 },
	  SENDERDOM_BAD_MX, HOP },
	{ "an MX host's lookup failed, none public", true, { HOP, OK, false, 2, .temp = 1, .none = 3 },
	  SENDERDOM_TEMPERROR, HOP },
	{ "MX hosts pending", true, { HOP, OK, false, 1, .pending = 2 }, SENDERDOM_PENDING, HOP },
};

static void test_decide(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		enum senderdom_phase next = (enum senderdom_phase)99;
		enum senderdom_result r = senderdom_decide(&rows[i].f, rows[i].check, &next);

		if (r != rows[i].want || (r == SENDERDOM_PENDING && next != rows[i].next))
			fail_msg("%s: got %s next %d, want %s next %d", rows[i].what,
			    senderdom_result_name(r), (int)next, senderdom_result_name(rows[i].want),
			    (int)rows[i].next);
	}
}

static void test_public(void **state)
{
	static const struct { const char *ip; bool pub; } t[] = {
		{ "198.51.100.7", true }, { "192.0.2.1", true }, { "2001:db8::25", true },
		{ "127.0.0.1", false }, { "127.9.9.9", false }, { "10.1.2.3", false },
		{ "172.16.0.1", false }, { "172.31.255.255", false }, { "172.32.0.1", true },
		{ "192.168.1.1", false }, { "169.254.1.1", false }, { "100.64.0.1", false },
		{ "0.0.0.0", false }, { "255.255.255.255", false }, { "224.0.0.1", false },
		{ "::1", false }, { "::", false }, { "fd00::1", false }, { "fe80::1", false },
		{ "ff02::1", false }, { "::ffff:127.0.0.1", false }, { "::ffff:198.51.100.7", true },
		{ "not an address", false }, { "", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (senderdom_addr_is_public(t[i].ip) != t[i].pub)
			fail_msg("%s: want %s", t[i].ip, t[i].pub ? "public" : "not public");
	assert_false(senderdom_addr_is_public(NULL));
}

static void test_mx_item(void **state)
{
	char name[64];
	unsigned pref = 99;

	(void)state;
	assert_int_equal(senderdom_mx_item("10 mx.example.org", &pref, name, sizeof(name)), 0);
	assert_int_equal(pref, 10);
	assert_string_equal(name, "mx.example.org");
	assert_int_equal(senderdom_mx_item("0 .", &pref, name, sizeof(name)), 0);
	assert_int_equal(pref, 0);
	assert_string_equal(name, ".");
	assert_int_equal(senderdom_mx_item("65535 a", &pref, name, sizeof(name)), 0);
	assert_int_equal(senderdom_mx_item("65536 a", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("10", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("10 ", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("x a", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("", &pref, name, sizeof(name)), -1);
	assert_int_equal(senderdom_mx_item("1 0123456789", &pref, name, 8), -1);   /* does not fit */
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(senderdom_result_name(SENDERDOM_OK), "ok");
	assert_string_equal(senderdom_result_name(SENDERDOM_UNKNOWN), "unknown");
	assert_string_equal(senderdom_result_name(SENDERDOM_NULL_MX), "null_mx");
	assert_string_equal(senderdom_result_name(SENDERDOM_BAD_MX), "bad_mx");
	assert_string_equal(senderdom_result_name(SENDERDOM_TEMPERROR), "temperror");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_public),
		cmocka_unit_test(test_mx_item),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
