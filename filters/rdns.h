/* rdns.h — the client's name: PTR lookup and forward confirmation (FCrDNS) on c-ares
 * (filters/dns.c, cached process-wide), once per session, for every consumer.
 *
 * Sets env->client_ptr (the PTR name) and env->client_name (the name whose A/AAAA records
 * hold the client address) with their enum hook_name_status, as Postfix's smtpd does for
 * its own clients:
 *   - PTR answered with a valid host name: client_ptr, status OK; NXDOMAIN / no PTR / only
 *     malformed names: PERM; DNS failure or timeout: TEMP (and client_name TEMP too);
 *   - the first of those names (at most RDNS_MAX_NAMES) whose addresses include the
 *     client's becomes client_name, status OK; none, with a forward lookup that failed
 *     temporarily: TEMP; else PERM.
 * A loopback client is "localhost" without a query (RFC 6761 6.3; what /etc/hosts gives
 * the system resolver an MTA in front would use).
 * Consumers: XCLIENT NAME= / REVERSE_NAME= (proxy/relay.c: the name, or [UNAVAILABLE] /
 * [TEMPUNAVAIL]), the milter macros `_`, {client_name}, {client_ptr}, helo_checks' NO_FCRDNS
 * test, the Received: header and the rules.
 *
 * The lookup starts at HOOK_CONNECT. The module holds the connect stage until it is done
 * when a connect-stage consumer needs the answer (helo_checks.fcrdns, content plugins that
 * see the connection); otherwise the greeting goes out at once and the module waits, if it
 * still must, at HOOK_MAIL — before any backend connection is opened for the session.
 * `rdns.lookup: auto` looks up only when something uses the name: XCLIENT to the backends,
 * greylist.allow_names or reputation.forwarders (a name rule),
 * plugins, or helo_checks.fcrdns. */
#ifndef MX_RDNS_H
#define MX_RDNS_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/cfg.h"

struct mx_config;

#define RDNS_MAX_NAMES 4       /* PTR names forward-checked per client */

enum rdns_lookup { RDNS_LOOKUP_AUTO = 0, RDNS_LOOKUP_ALWAYS, RDNS_LOOKUP_NEVER };

/* Config section `rdns`. */
struct rdns_config {
	int lookup;                 /* enum rdns_lookup */
	uint64_t timeout;           /* ms per query; 0 = helo_checks.timeout, else dns.timeout */
};
extern const struct cfg_table rdns_config_table;

/* Whether sessions under cfg look the client name up, and whether the connect stage waits
 * for it (see above). */
bool rdns_wanted(const struct mx_config *cfg);
bool rdns_waits_at_connect(const struct mx_config *cfg);
/* The time limit of each query (rdns.timeout, else helo_checks.timeout, else dns.timeout,
 * else 2 s): the PTR, then the forward lookups together, each ends by it. */
uint64_t rdns_query_timeout(const struct mx_config *cfg);

/* For a module before rdns in the chain that needs the client's confirmed name at a stage
 * where rdns has not held the session for it (reputation.forwarders at connect): returns 1
 * when the name is settled now (env->client_name_status says how), 0 when the lookup runs
 * and cb(arg) will be called once, on the loop thread, when it is settled (OK, TEMP after a
 * DNS failure or timeout, PERM), or -1 when no lookup runs for the session (rdns off, or
 * another waiter): the name will not be known. rdns_wait_cancel withdraws the waiter (the
 * waiting module's session_free or cancel); rdns's own session_free drops it uncalled. */
struct hook_env;
int rdns_wait_name(struct hook_env *env, void (*cb)(void *arg), void *arg);
void rdns_wait_cancel(struct hook_env *env);

struct hook_module;
extern const struct hook_module rdns_module;

#endif
