/* auth_config.h — the `auth:` section: SMTP AUTH (RFC 4954) on submission listeners, checked
 * by Dovecot's authentication service, and the brute-force guard on failed attempts. The
 * verb is proxy/auth.c, the guard proxy/auth_guard.c, the Dovecot client sasl_dovecot.c. */
#ifndef MX_AUTH_CONFIG_H
#define MX_AUTH_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "cfg_value.h"

/* auth.on_error: the authentication service cannot answer (down, timeout, protocol error). */
enum auth_on_error {
	AUTH_ON_ERROR_TEMPFAIL = 0,   /* 454 4.7.0, the session goes on (RFC 4954 6) */
	AUTH_ON_ERROR_DISCONNECT,     /* 421 4.7.0 and close */
};

struct auth_config {
	char *dovecot;              /* "unix:/run/dovecot/auth-client" or "inet:host:port"; NULL: no AUTH */
	uint64_t timeout;           /* ms for each answer of the service (connect included) */
	bool allow_plaintext;       /* offer AUTH without TLS too */
	int on_error;               /* enum auth_on_error */
	char *store;                /* failure counts: "local" or "redis://host:port[/db]" */
	long max_failures;          /* per client address and per user name within failure_window */
	uint64_t failure_window;    /* ms a failure is remembered (from the last one) */
	uint64_t failure_delay;     /* ms the first failure's 535 is held; doubles per failure */
	uint64_t max_delay;         /* ms, the cap of that delay */
	struct cfg_cidrlist allow;  /* clients whose address count blocks no one (a campus NAT):
	                             * counted and logged, never enforced; the user's count is */
};

struct cfg_table;
extern const struct cfg_table auth_config_table;

/* `mxgate -t`'s warnings about auth (config_warnings): a unix: socket in auth.dovecot that
 * `user` (the account mxgate drops to before it opens the socket) could not open — a
 * directory on the way it may not search, or a socket it may not write. Prints each to
 * err_fp (a FILE *; NULL: count only) as "PATH: warning: ..."; returns how many. A path
 * that does not exist yet (Dovecot not started) or an unknown user says nothing. */
struct mx_config;
int auth_config_warnings(const struct mx_config *cfg, void *err_fp);

#endif
