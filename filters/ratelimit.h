/* ratelimit.h — rate limits per client IP, IP prefix, HELO, sender, sender domain,
 * recipient or recipient domain, counting connections, concurrency, messages, recipients or bytes (GCRA), in a
 * local in-process table or in Redis shared by every node (one atomic script per check).
 *
 * Where each count is taken:
 *   connections  HOOK_CONNECT (key ip / ip_prefix), HOOK_HELO (key helo, first HELO only)
 *   concurrency  HOOK_CONNECT, released when the session ends (key ip / ip_prefix)
 *   messages     HOOK_DATA: a message counts once DATA is reached, so attempts refused at
 *                MAIL/RCPT consume nothing (key recipient: once per accepted recipient);
 *                key auth_domain: HOOK_EOM, once filters/senderauth.c knows the domain
 *                key recipient_domain: HOOK_RCPT, at the first RCPT of each domain in a
 *                transaction (that RCPT gets the refusal; the domain's other recipients
 *                of the message are free)
 *   recipients   HOOK_RCPT, per candidate recipient
 *   bytes        HOOK_EOM, the message size (a message larger than the whole limit passes
 *                only when the bucket is full, and empties it)
 * Actions: tempfail (421 4.7.0 at connect, 451 4.7.1 later), reject (550 5.7.1), delay
 * (continue, the reply held `delay` — a tarpit).
 * Redis down: the check runs in the local table instead; the store reconnects by itself. */
#ifndef MX_RATELIMIT_H
#define MX_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"

struct hook_env;
struct hook_module;

enum ratelimit_key {
	RATELIMIT_KEY_IP = 0, RATELIMIT_KEY_IP_PREFIX, RATELIMIT_KEY_HELO, RATELIMIT_KEY_SENDER,
	RATELIMIT_KEY_SENDER_DOMAIN, RATELIMIT_KEY_RECIPIENT,
	RATELIMIT_KEY_AUTH_DOMAIN,  /* DKIM/SPF-aligned From domain (senderauth), never a bare From */
	RATELIMIT_KEY_AUTH_USER,    /* the SMTP AUTH user (proxy/auth.c); unauthenticated: no count */
	RATELIMIT_KEY_RECIPIENT_DOMAIN  /* the recipient's domain in domain.c's normal form */
};
enum ratelimit_count {
	RATELIMIT_COUNT_CONNECTIONS = 0, RATELIMIT_COUNT_CONCURRENCY, RATELIMIT_COUNT_MESSAGES,
	RATELIMIT_COUNT_RECIPIENTS, RATELIMIT_COUNT_BYTES
};
enum ratelimit_action { RATELIMIT_ACTION_TEMPFAIL = 0, RATELIMIT_ACTION_REJECT, RATELIMIT_ACTION_DELAY };
enum ratelimit_sender { RATELIMIT_SENDER_ANY = 0, RATELIMIT_SENDER_NULL };
enum ratelimit_on_error { RATELIMIT_ON_ERROR_ACCEPT = 0, RATELIMIT_ON_ERROR_TEMPFAIL,
	RATELIMIT_ON_ERROR_REJECT };

/* `limit:` — "N/DURATION", or plain "N" for concurrency (period_ms 0). */
struct ratelimit_limit {
	uint64_t count;
	uint64_t period_ms;
	char text[32];              /* as written, for logs and replies */
};

struct ratelimit_rule_config {
	int key;                    /* enum ratelimit_key */
	int count;                  /* enum ratelimit_count */
	struct ratelimit_limit limit;
	int action;                 /* enum ratelimit_action */
	long prefix_v4, prefix_v6;  /* for key ip_prefix */
	uint64_t delay;             /* ms, action delay */
	int sender;                 /* enum ratelimit_sender: null = only mail from <> (bounces) */
};

struct ratelimit_config {
	char *store;                /* "local" or "redis://host:port[/db]" */
	uint64_t timeout;           /* ms per Redis check before falling back to local */
	long max_keys;              /* bound of the local table */
	uint64_t concurrency_ttl;   /* ms a Redis concurrency slot lives without release */
	int on_error;               /* enum ratelimit_on_error, if the chain times us out */
	struct cfg_list rules;      /* struct ratelimit_rule_config */
	struct cfg_cidrlist allow;  /* clients no rule counts nor refuses */
};
extern const struct cfg_table ratelimit_config_table;
extern const struct hook_module ratelimit_module;

/* ---- pure pieces, exposed for tests ------------------------------------------------ */

/* Parses a limit: "10/60s", "1000/1h", or "10" when plain is allowed. 0 or -1. */
int ratelimit_limit_parse(const char *s, bool plain_ok, struct ratelimit_limit *out);

/* Writes the value a rule keys on for this session into out: the client address, its
 * prefix, the lowercased HELO, sender ("<>" for the null sender), sender domain,
 * recipient (rcpt; NULL = env->cur_rcpt) or authenticated domain (senderauth's
 * AUTH_DOMAIN). Returns 0, or -1 when the session has no such value yet (no HELO, no
 * sender domain...) or the rule is for the null sender (sender: null) and the sender is not
 * <>, and the rule does not apply. */
int ratelimit_key_value(const struct ratelimit_rule_config *r, const struct hook_env *env,
    const char *rcpt, char *out, size_t outlen);

/* Copies a peer-supplied value for a log line or reply text: bytes outside printable
 * ASCII, spaces and quotes become '?', so a HELO or address cannot forge log fields. */
void ratelimit_safe_copy(const char *in, char *out, size_t outlen);

/* Names for logs: "ip", "messages", "tempfail". */
const char *ratelimit_key_name(int key);
const char *ratelimit_count_name(int count);
const char *ratelimit_action_name(int action);

/* The Lua scripts run in Redis (exposed for the benchmark). */
extern const char ratelimit_lua_gcra[];
extern const char ratelimit_lua_acquire[];

/* ---- for the control verbs (filters/limits_control.c) ------------------------------ */

struct local_table;
/* + the store key after "mxgate:" (rl:...): Redis, the time (µs, Redis's clock) the control
 * verb reset that bucket; a charge made before it and queued through an outage is dropped */
#define RATELIMIT_RESET_PREFIX "mxgate:rlreset:"
/* The store key of rule r for value: "mxgate:rl:<count>:<key>:<limit>:<value>" (<key> is
 * "<key>+null" for a sender: null rule, a bucket of its own), or
 * "mxgate:rl:concurrency:<key>:<value>" (the local table and Redis use the same keys). */
void ratelimit_store_key(const struct ratelimit_rule_config *r, const char *value, char *out,
    size_t outlen);
/* The reset mark's key of a store key ("mxgate:rl:..." -> RATELIMIT_RESET_PREFIX "rl:..."),
 * in Redis and in the local table alike. */
void ratelimit_reset_key(const char *store_key, char *out, size_t outlen);
/* The rate limits' process-wide local table (NULL before a worker made it). Its times are
 * uv_hrtime() ns: a GCRA record's expires_ns is its TAT, a concurrency record's val its count. */
struct local_table *ratelimit_local_table(void);
#endif
