/* helo.h — HELO/EHLO checks and forward-confirmed reverse DNS.
 *
 * HOOK_CONNECT: NO_FCRDNS when filters/rdns.c (earlier in the chain, the one lookup of the
 * client's name) found no forward-confirmed name.
 * HOOK_HELO: syntax (RFC 5321 4.1.2 Domain / address literal), a name or literal claiming to
 * be us, a literal that is not the client. Each test adds a symbol with a score and has an
 * action (score by default; reject or tempfail optional). */
#ifndef MX_HELO_H
#define MX_HELO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"

enum helo_action { HELO_ACTION_SCORE = 0, HELO_ACTION_REJECT, HELO_ACTION_TEMPFAIL };
/* fcrdns.on_error: a name lookup that failed (not NXDOMAIN) */
enum helo_on_error { HELO_ON_ERROR_ACCEPT = 0, HELO_ON_ERROR_TEMPFAIL };

struct helo_test_config {
	bool enabled;
	int action;     /* enum helo_action */
	double score;
	int on_error;   /* enum helo_on_error; fcrdns only (the other tests look nothing up) */
};

struct helo_config {
	bool enabled;
	struct helo_test_config syntax;            /* HELO_BAD_SYNTAX */
	struct helo_test_config not_fqdn;          /* HELO_NOT_FQDN: a name without a dot */
	struct helo_test_config claims_us;         /* HELO_CLAIMS_US */
	struct helo_test_config literal_mismatch;  /* HELO_LITERAL_MISMATCH */
	struct helo_test_config fcrdns;            /* NO_FCRDNS */
	uint64_t timeout;                          /* ms per rdns query when rdns.timeout is 0; 0 = dns.timeout */
};
extern const struct cfg_table helo_config_table;

enum helo_syntax {
	HELO_SYNTAX_FQDN = 0,     /* a domain with at least one dot */
	HELO_SYNTAX_NAME,         /* a valid single-label name ("localhost", "mail") */
	HELO_SYNTAX_LITERAL4,     /* [192.0.2.1] */
	HELO_SYNTAX_LITERAL6,     /* [IPv6:2001:db8::1] */
	HELO_SYNTAX_BAD,          /* anything else, including empty */
};
/* Classifies a HELO argument per RFC 5321 4.1.2 / 4.1.3. When it is an address literal and
 * addr is not NULL, the address (without brackets / "IPv6:") is copied to addr. */
enum helo_syntax helo_syntax_classify(const char *helo, char *addr, size_t addrlen);

struct hook_module;
extern const struct hook_module helo_module;

#endif
