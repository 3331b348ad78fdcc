/* auth_guard.h — the brute-force guard of SMTP AUTH: failed attempts counted per client
 * address (IPv6: per /64) and per user name, in the process-wide local table (store/local_table.h) or in
 * Redis shared by every node (store/redis.h, one atomic script per update), as the rate
 * limiter keeps its counts. A count lives auth.failure_window from its last failure.
 *
 * The session asks before an exchange (cost 0: the client's address is over the limit:
 * 421 and close) and after a failure (cost 1: both counts go up; the 535 is held
 * auth_guard_delay_ms(), past the limit 421 and close). Redis down or slow: the local table
 * answers, as for the rate limiter. */
#ifndef MX_AUTH_GUARD_H
#define MX_AUTH_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct auth_config;
struct auth_guard;
struct auth_guard_req;

/* A guard on loop for cfg (borrowed, must outlive it): local table, plus a Redis store when
 * cfg->store is a redis:// URL. prefix_v6: limits.client_ipv6_prefix, the network an IPv6
 * client's failures count under (128: its address). worker: for log lines. NULL when out of
 * memory. */
struct auth_guard *auth_guard_new(uv_loop_t *loop, const struct auth_config *cfg, int prefix_v6,
    int worker);
/* Outstanding requests must be cancelled first. NULL is a no-op. */
void auth_guard_free(struct auth_guard *g);

/* The counts after the update: failures of the address, and of the user (0 without one). */
typedef void (*auth_guard_cb)(void *arg, uint64_t ip_failures, uint64_t user_failures);

/* Adds cost (0: just read) to the failure counts of ip and of user (NULL or "": none; the
 * name is lowercased). cb runs once: before this returns (local table; NULL is returned),
 * or later from the loop (Redis; a handle is returned for auth_guard_cancel). */
struct auth_guard_req *auth_guard_count(struct auth_guard *g, const char *ip, const char *user,
    unsigned cost, auth_guard_cb cb, void *arg);
/* cb will not run. NULL is a no-op. */
void auth_guard_cancel(struct auth_guard_req *q);

/* How long the reply to the n-th failure (n >= 1) is held: failure_delay doubling per
 * failure, at most max_delay. 0 for n == 0. */
uint64_t auth_guard_delay_ms(const struct auth_config *cfg, uint64_t n);

/* The store keys for ip / user (exposed for tests): "mxgate:authfail:ip:IP" (auth_guard_count
 * passes an IPv6 address as its /64, "2001:db8:1:2::/64"),
 * "mxgate:authfail:user:NAME" (lowercased). Returns -1 when it does not fit. */
int auth_guard_key(const char *kind, const char *value, char *out, size_t cap);

/* The Redis script: KEYS ip-key [user-key]; ARGV cost, window_ms. Returns the counts. */
extern const char auth_guard_lua[];

#endif
