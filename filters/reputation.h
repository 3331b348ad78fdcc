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
 * Near max_connections the session sets env->overloaded before the connect stage: then a
 * client that is not on the allow list and does not score >= good_threshold (unknown, no
 * answer, deny list, bad) is refused with 421 4.7.0 (reason=overload) so the known-good ones
 * keep being served. Only with a store or an allow list (otherwise nobody is known). */
#ifndef MX_REPUTATION_H
#define MX_REPUTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/cfg.h"

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
	REPUTATION_ACTION_DELAY, REPUTATION_ACTION_SCORE };

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
	uint64_t map_size;          /* LMDB map size */
	uint64_t flush_interval;    /* ms between batched LMDB writes */
	uint64_t timeout;           /* ms per Redis lookup */
};
extern const struct cfg_table reputation_config_table;
extern const struct hook_module reputation_module;

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

/* Store keys: "ip:198.18.7.7" and "net:198.18.7.0/24" (v4-mapped IPv6 as IPv4). 0 or -1. */
int reputation_keys(const struct sockaddr *sa, long prefix_v4, long prefix_v6, char *ipkey,
    size_t iplen, char *netkey, size_t netlen);

#endif
