/* reputation.h — what this site has seen from a client IP and its network (/24, /64):
 * decayed counts of accepted, rejected, tempfailed, spam and virus messages, a score in
 * [-1, 1] (+1 good), and static allow/deny CIDR lists.
 *
 * At HOOK_CONNECT: allow list -> ACCEPT (the rest of the connect chain is skipped) and
 * symbol REP_ALLOW; deny list -> deny_action (550 5.7.1 by default) and REP_DENY; otherwise
 * the score: >= good_threshold -> symbol REP_GOOD (negative score, for the rules engine and
 * other filters to exempt the client); <= bad_threshold -> REP_BAD and bad_action
 * (tempfail 421 4.7.0 | reject 550 5.7.1 | delay | score only).
 *
 * Stores: "lmdb:/dir" (default /var/lib/mxgate/reputation; survives restarts; records
 * "ip:…" and "net:…" in the store/lmdb_store.h environment: reads inline from the map,
 * writes batched per worker and applied in the libuv thread pool) or
 * "redis://host:port[/db]" (shared by every node; one script per update, decay on the
 * server's clock; unreachable -> no score, never a delay beyond `timeout`).
 *
 * Learning: the module's outcome notifier (struct hook_module.outcome) counts every
 * message that reached the end of data — delivered (accepted, or spam when the rules or a
 * spam filter marked it: HOOK_FLAG_SPAM), refused 5xx (rejected / spam), 4xx (tempfailed),
 * virus (HOOK_FLAG_VIRUS, from clamd or a milter); discarded messages and refusals before
 * the end of data do not count.
 *
 * The authenticated sender domain (filters/senderauth.c: DKIM- or SPF-aligned with From,
 * senderauth_auth_domain(); never an unauthenticated From) has a history of its own, record
 * "authdom:<domain>" in the same store, with the same counts and decay (auth_domain: true).
 * At HOOK_EOM (senderauth runs first there) its score gives REP_DOMAIN_GOOD (>=
 * domain_good_threshold) or REP_DOMAIN_BAD (<= domain_bad_threshold); a good domain also
 * lifts the IP's connect-stage penalties (REP_BAD and the positive DNS-list symbols of the
 * dnsbl section's IP lists; never REP_DENY) with REP_DOMAIN_LIFT, a negative score of at
 * most domain_lift_max. Refusals at connect happen before the domain is known: only
 * score-only penalties can be lifted. The domain counts the message's outcome like the IP,
 * except that a bad outcome (rejected, tempfailed, spam) is not held against the domain
 * while the IP's penalties were in the score and not lifted: the IP may have decided it;
 * and a message whose penalties were lifted counts for the domain only (the IP and its
 * network are neither credited nor blamed for the domain's mail).
 *
 * Near max_connections the session sets env->overloaded before the connect stage: then a
 * client that is not on the allow list and does not score >= good_threshold (unknown, no
 * answer, deny list, bad) is refused with 421 4.7.0 (reason=overload) so the known-good ones
 * keep being served. Only with a store or an allow list (otherwise nobody is known). */
#ifndef MX_REPUTATION_H
#define MX_REPUTATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "filters/greylist.h"
#include "proxy/cfg.h"

struct hook_env;
struct hook_module;

enum reputation_outcome {
	REPUTATION_ACCEPTED = 0,  /* delivered (backend 250), not spam */
	REPUTATION_REJECTED,      /* refused with 5xx by us or the backend */
	REPUTATION_TEMPFAILED,    /* refused with 4xx */
	REPUTATION_SPAM,          /* delivered or refused with score >= rules add_header */
	REPUTATION_VIRUS,         /* the antivirus found something */
	REPUTATION_NOUTCOMES
};

enum reputation_action { REPUTATION_ACTION_TEMPFAIL = 0, REPUTATION_ACTION_REJECT,
	REPUTATION_ACTION_DELAY, REPUTATION_ACTION_SCORE, REPUTATION_ACTION_DROP };

struct reputation_config {
	char *store;                /* "lmdb:/dir" | "redis://..."; NULL = static lists only */
	uint64_t half_life;         /* ms */
	double good_threshold, bad_threshold;
	int bad_action;             /* enum reputation_action */
	int deny_action;            /* enum reputation_action */
	uint64_t delay;             /* ms, for action delay */
	double good_score, bad_score, deny_score; /* symbol scores for the rules engine */
	double prior;               /* pseudo-count pulling a thin history towards 0 */
	double prefix_weight;       /* how much the network's history counts next to the IP's */
	long prefix_v4, prefix_v6;
	struct cfg_cidrlist allow, deny;
	struct cfg_strlist allow_client_certificates; /* SHA-256 fingerprints "AB:CD:...": a TLS
	                                               client presenting one is allow-listed */
	uint64_t map_size;          /* LMDB map size */
	uint64_t flush_interval;    /* ms between batched LMDB writes */
	uint64_t timeout;           /* ms per Redis lookup */
	bool auth_domain;           /* history per authenticated sender domain */
	double domain_good_threshold, domain_bad_threshold;
	double domain_good_score, domain_bad_score;
	double domain_lift_max;     /* the most REP_DOMAIN_LIFT takes off; 0 = no lift */
	/* Forwarders (mailing-list hosts, big providers' outbound pools): never judged bad by
	 * their address's history, and their messages' outcomes not added to it. Rules as
	 * greylist.allow_names: a domain (the forward-confirmed client name is it or ends in
	 * .domain), a /regex/, or an address/network. */
	struct greylist_names forwarders;
};
extern const struct cfg_table reputation_config_table;
extern const struct hook_module reputation_module;
/* Registers mxgate_reputation_errors_total (the modules' metrics hook, modules.def). */
void reputation_metrics(void);

struct hook_env;
/* Whether c allow-lists env's client at connect (allow, allow_client_certificates): its
 * connect stage ends in accept. The ratelimit entry, before reputation in the chain, asks
 * it so such a client is not counted at connect, as when reputation's accept came first. */
bool reputation_allows_client(const struct reputation_config *c, const struct hook_env *env);
/* The config has a forwarders rule by name: rdns looks the client's name up (rdns.lookup
 * auto, filters/rdns.c). */
bool reputation_wants_client_name(const struct reputation_config *c);

/* ---- pure pieces, exposed for tests ------------------------------------------------ */

struct reputation_counts {
	double c[REPUTATION_NOUTCOMES];
	uint64_t t_ms;              /* wall clock of the last update (ms since the epoch) */
};

/* Ages rc to now_ms: every count times 2^(-(now - t) / half_life); t becomes now. A t in
 * the future (clock step) ages nothing. */
void reputation_decay(struct reputation_counts *rc, uint64_t now_ms, uint64_t half_life_ms);

/* Counts one outcome at now_ms: decays rc (reputation_decay), then adds 1 to o's count.
 * This is the LMDB update (store/lmdb_store.h merge) and the Redis script's arithmetic. */
void reputation_add(struct reputation_counts *rc, enum reputation_outcome o, uint64_t now_ms,
    uint64_t half_life_ms);

/* Score in [-1, 1] from the IP's and its network's (already decayed) counts:
 * (good - bad) / (good + bad + prior), good = accepted, bad = rejected + 0.25 tempfailed +
 * spam + 2 virus, the network's counts weighted by prefix_weight. net may be NULL. */
double reputation_score(const struct reputation_counts *ip, const struct reputation_counts *net,
    double prefix_weight, double prior);

/* Store keys: "ip:198.18.7.7" and "net:198.18.7.0/24" (v4-mapped IPv6 as IPv4); an IPv6
 * client's own record is its network of client_v6 (limits.client_ipv6_prefix),
 * "ip:2001:db8:1:2::/64", or its address with 128. 0 or -1. */
int reputation_keys(const struct sockaddr *sa, long prefix_v4, long prefix_v6, long client_v6,
    char *ipkey, size_t iplen, char *netkey, size_t netlen);

/* The store key of an authenticated domain: "authdom:" + the domain lowercased, without a
 * trailing dot. 0, or -1 when domain is empty or the key does not fit. */
int reputation_domain_key(const char *domain, char *key, size_t keylen);

/* The client IP's penalties among env's session symbols (those before txn_symbols_start:
 * the connect and HELO stages), as they stand now: the positive scores of REP_BAD and of
 * the symbols of the dnsbl section's IP lists (env->cfg), plus REP_DENY's when with_deny.
 * The names found are written to names (comma separated; may be NULL). */
double reputation_ip_penalty(const struct hook_env *env, bool with_deny, char *names,
    size_t nameslen);

/* How much REP_DOMAIN_LIFT takes off (a value >= 0; the symbol's score is its negative):
 * the penalty, at most lift_max. */
double reputation_domain_lift(double penalty, double lift_max);

/* What a transaction's outcome o counts for its authenticated domain: o itself, or -1 (not
 * counted) when o is bad (rejected, tempfailed, spam) and residual, the IP's penalties left
 * in the score after the lift, is above 0: the message may have been refused or marked for
 * the IP's history, not for what the domain sent. Accepted and virus always count. */
int reputation_domain_outcome(enum reputation_outcome o, double residual);

struct redisReply;
/* One record as Redis returns it: the 6 elements of an HMGET of a r t s v ts (strings, or
 * nil for an absent field) into out; false when the whole record is absent. Any element
 * text is safe (a count that is not a finite number >= 0 reads 0, so does a time that is
 * not a wall clock in ms). */
bool reputation_parse_redis_counts(const struct redisReply *const *el,
    struct reputation_counts *out);

/* ---- forgetting a client (the control socket's `flush reputation IP`) -------------------- */

#define REPUTATION_FORGET_KEYS 2

/* A request to delete store records ("ip:…", "net:…") in every worker: the worker states of
 * every generation in use that have a store (LMDB: the delete is queued after what that
 * worker queued before and its batch is pushed at once; Redis: that worker's updates of the
 * key not yet written are dropped, then a DEL per key on its connection, so the sum over
 * workers is what was removed). */
struct reputation_forget {
	char keys[REPUTATION_FORGET_KEYS][80];
	size_t nkeys;
	/* Called once, when every worker has done its part: on the thread of the last one
	 * (a worker's loop), or inside reputation_forget_post when no worker has a store. */
	void (*done)(struct reputation_forget *f);
	/* results, valid in done */
	atomic_int removed[REPUTATION_FORGET_KEYS];  /* Redis: DELs that removed the key */
	atomic_int failed;          /* deletes a store did not confirm (Redis down, batch failed) */
	size_t workers;             /* worker states the request went to */
	atomic_int parts;           /* internal */
};

/* Hands f to every live worker state (f must stay valid until done); returns how many. */
size_t reputation_forget_post(struct reputation_forget *f);

/* Redis, no worker left to do it (the drain's end: the last worker has ended, its queue
 * gone with it): f's deletes on a blocking connection of the caller's own (a thread of the
 * control verb's, redis_store_connect_sync; every step bounded by timeout_ms), each key's flush time first
 * as the workers write it (kept 8 half-lives), then its DEL: removed[i] when the DEL removed
 * the key, failed counts the deletes not confirmed. 0, or -1 with err when Redis could not
 * be reached (nothing done). Blocks up to a few timeout_ms. */
int reputation_forget_redis_sync(const char *url, uint64_t timeout_ms, uint64_t half_life_ms,
    struct reputation_forget *f, char *err, size_t errlen);

/* The control verb "flush reputation IP" (filters/reputation_control.c, listed in
 * proxy/control_verbs.c). */
struct control_verb;
extern const struct control_verb reputation_flush_control_verb;

#endif
