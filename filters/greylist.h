/* greylist.h — greylisting at RCPT: the first delivery attempt of an unknown triplet
 * (client network, sender, recipient) is refused with 451 4.7.1; a retry after `delay` and
 * within `retry_window` passes, and the triplet then passes at once for `expire` (renewed
 * by every use). Clients on `allow`, and clients the reputation filter marked good
 * (symbols REP_GOOD / REP_ALLOW), are not greylisted; with auto_allow_clients N, neither is
 * a client network that passed greylisting N times (postgrey's --auto-whitelist-clients),
 * nor clients allowed by host name (allow_names: postgrey's whitelist_clients). With spf_key
 * a sender whose SPF passed is keyed by "spf:<domain>" instead of its network.
 *
 * Stores: local (this process, shared by the workers), lmdb:/dir (this host, survives
 * restarts; reads inline, writes batched in the thread pool; the directory may be the
 * reputation one) or redis://… (all nodes; one script per check on the server's clock;
 * unreachable -> the local table decides). */
#ifndef MX_GREYLIST_H
#define MX_GREYLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cfg.h"
#include "proxy/netaddr.h"

struct hook_env;
struct hook_module;
struct sockaddr;

/* Clients allowed by host name (postgrey's whitelist_clients): each rule is a domain (the
 * client's name equals it or ends in "." + it), a /regex/ (PCRE2, caseless, on the name) or
 * an address or network (as postgrey's file: a.b.c.d[/n], a.b.c = /24, IPv6[/n]). Names
 * are matched against the forward-confirmed client name only (filters/rdns.c). */
struct greylist_name_rule {
	char *domain;               /* lower case, no trailing dot; or NULL */
	void *re;                   /* pcre2_code *; or NULL */
	int prefix;                 /* >= 0: an address rule (net/prefix) */
	struct netaddr net;
};
struct greylist_names { struct greylist_name_rule *v; size_t n; };

/* Where mail from the null sender <> is greylisted: at each RCPT as any sender, or at DATA
 * by its first recipient (a callout, MAIL FROM:<> and RCPT with no DATA, then passes). */
enum greylist_null_sender { GREYLIST_NULL_RCPT = 0, GREYLIST_NULL_DATA };
/* Where the other senders are greylisted (defer_at): the same two places. At DATA the
 * backend has answered every RCPT first, so a recipient that does not exist gets its 550,
 * and the deferral comes before any of the message reaches it. */

/* Spam trap addresses (greylist.traps, spamd's `spamdb -T -a`): lower case, sorted, each
 * once; from the list's addresses and the files its "file:PATH" items name. */
struct greylist_traps { char **v; size_t n; };

struct greylist_config {
	bool enabled;
	char *store;                /* "local" | "lmdb:/dir" | "redis://host:port[/db]" */
	uint64_t delay;             /* ms before a retry passes */
	uint64_t retry_window;      /* ms a first attempt waits for its retry */
	uint64_t expire;            /* ms a passed triplet stays known */
	long prefix_v4, prefix_v6;
	bool skip_good;             /* skip clients with REP_GOOD / REP_ALLOW */
	struct cfg_cidrlist allow;
	bool spf_key;               /* key an SPF-passing sender by its domain, not its network */
	int null_sender;            /* enum greylist_null_sender: where <> is greylisted */
	int defer_at;               /* enum greylist_null_sender: where other senders are */
	uint64_t timeout;           /* ms per Redis check */
	long max_keys;              /* bound of the local triplet table */
	long auto_allow_clients;    /* passes after which a client network is not greylisted; 0 = off */
	uint64_t auto_allow_expire; /* ms it stays so after its last mail */
	struct greylist_names allow_names;       /* from the config file's list */
	struct greylist_names allow_names_file;  /* from the files it names (read at load) */
	struct greylist_traps traps; /* a greylisted client mailing one is trapped (spamd) */
	uint64_t trap_ttl;          /* ms a trapped client stays refused (spamd's trapexp, 24 h) */
	uint64_t trap_delay;        /* ms a trapped client's refusal is held (the tarpit) */
};
extern const struct cfg_table greylist_config_table;
extern const struct hook_module greylist_module;

/* Registers greylisting's series on the metrics endpoint (modules.def): per recipient,
 * mxgate_greylist_greylisted_total (451), mxgate_greylist_passed_total (its triplet passed)
 * and mxgate_greylist_allowed_total{reason="allow|allow_names|allow_names_file|skip_good|
 * auto_allow|auth"} (let through without a triplet, each logged event=greylist_allow
 * reason=...). */
void greylist_metrics(void);

/* ---- message greylisting: the rules engine's greylist action (rules.actions.greylist) ---
 * The greylist store keeps the messages the rules engine greylists by score, each by its
 * digest, decided as a triplet is (greylist_decide with greylist.delay and retry_window; a
 * passed record kept rules.greylist_expire, not greylist.expire): the first sight is deferred,
 * a retry after delay passes. greylist.store is opened
 * for it also with greylist.enabled false (then nothing is greylisted at RCPT). */
struct mx_config;
struct hook_env;
/* True when cfg's rules greylist by score (the rules engine on, config_rules_engine_wanted:
 * rules.files or a spamd plugin; and rules.actions.greylist > 0 or a
 * rules.recipient_actions entry's greylist > 0). */
bool greylist_message_wanted(const struct mx_config *cfg);

/* A message's digest: SHA-256 of the sender (lower case, "<>" for the null sender), the
 * recipients as a set (lower case, sorted) and the body (after the header block's blank
 * line; the whole text when there is none), as GREYLIST_DIGEST_HEX hex digits. The headers
 * are left out: a retry's own Received or a Date the queue rewrote changes nothing. No I/O. */
#define GREYLIST_DIGEST_HEX 64
#define GREYLIST_DIGEST_SHORT 16   /* its short form in logs and headers */
void greylist_message_digest(const char *sender, const char *const *rcpts, size_t n,
    const char *msg, size_t len, char hex[GREYLIST_DIGEST_HEX + 1]);

enum greylist_msg_result { GREYLIST_MSG_DEFER = 0, GREYLIST_MSG_PASS, GREYLIST_MSG_ERROR,
	GREYLIST_MSG__N };
/* "deferred", "passed", "error". */
const char *greylist_message_result_name(int result);
struct greylist_msg_answer {
	int result;                 /* enum greylist_msg_result */
	uint64_t wait_s;            /* deferred: seconds until a retry passes */
	const char *store;          /* "local", "lmdb", "redis"; "none": no store (init failed) */
};
typedef void (*greylist_msg_cb)(void *arg, const struct greylist_msg_answer *a);
struct greylist_msg_req;
/* Asks the greylist store of env's worker and config generation about the message with
 * digest hex, and records this attempt. Returns 1 with *a filled when decided at once
 * (local, LMDB, an error, Redis down: the local table), or 0 with *req set: cb(arg, answer)
 * comes later on env's loop thread (Redis; no answer in greylist.timeout: the local table
 * decides), unless greylist_message_cancel(*req) comes first. Counted in
 * mxgate_greylist_messages_total{result}. */
int greylist_message_check(const struct hook_env *env, const char *hex,
    struct greylist_msg_answer *a, greylist_msg_cb cb, void *arg, struct greylist_msg_req **req);
/* The caller loses interest: cb is not called; req is freed. NULL: nothing. */
void greylist_message_cancel(struct greylist_msg_req *req);

/* ---- pure pieces, exposed for tests ------------------------------------------------ */

/* One triplet's state: first attempt time (ms) and whether it passed. */
struct greylist_entry { uint64_t first_ms; bool passed; };

/* Decides an attempt at now_ms. exists: e holds a live entry. Updates e; returns true when
 * the attempt passes, false when greylisted (*wait_s: seconds until a retry passes).
 * *keep_ms: how long the entry must be kept from now. */
bool greylist_decide(struct greylist_entry *e, bool exists, uint64_t now_ms, uint64_t delay_ms,
    uint64_t window_ms, uint64_t expire_ms, uint64_t *wait_s, uint64_t *keep_ms);

/* The triplet key: "<network>|<sender lowercased or <>>|<recipient lowercased>", the
 * sender without what changes per message or day (BATV tag, SRS0 hash and time, +extension,
 * numbers standing alone: postgrey's normal form). 0 or -1. */
int greylist_triplet(const struct sockaddr *sa, long prefix_v4, long prefix_v6,
    const char *sender, const char *rcpt, char *out, size_t outlen);

/* One rule of postgrey's whitelist_clients syntax (see struct greylist_name_rule) added to
 * l. 0, or -1 with a reason in err. */
int greylist_names_add(struct greylist_names *l, const char *entry, char *err, size_t errlen);
/* Every rule of a file in that syntax (# comments, blank lines); 0, or -1 with
 * "PATH:LINE: reason" (or the open error) in err. */
int greylist_names_load(struct greylist_names *l, const char *path, char *err, size_t errlen);
/* True when a rule of l allows the client: name is its forward-confirmed name (NULL or ""
 * when there is none: only the address rules can match), sa its address. */
bool greylist_names_match(const struct greylist_names *l, const char *name,
    const struct sockaddr *sa);
void greylist_names_free(struct greylist_names *l);
/* A config key of such rules (CFG_CUSTOM: .custom / .free_custom; dst a struct
 * greylist_names): a list of rules, or one; FILE:LINE:COL errors per item. Used by
 * greylist.allow_names and reputation.forwarders. */
struct cfg_parse;
struct fy_node;
int greylist_names_cfg_parse(struct cfg_parse *p, struct fy_node *n, void *dst);
void greylist_names_cfg_free(void *dst);
/* The config uses the client's name (rdns looks it up when so: filters/rdns.c). */
bool greylist_wants_client_name(const struct greylist_config *c);

/* Greytrapping (spamd(8) GREYTRAPPING). One address, or "<address>", added to t (copied,
 * lower case); 0, or -1 with a reason in err. */
int greylist_traps_add(struct greylist_traps *t, const char *addr, char *err, size_t errlen);
/* Every address of a file, one a line (# comments, blank lines); 0, or -1 with
 * "PATH:LINE: reason" (or the open error) in err. */
int greylist_traps_load(struct greylist_traps *t, const char *path, char *err, size_t errlen);
/* Sorts t and drops the repeated addresses (after the adds, before a match). */
void greylist_traps_sort(struct greylist_traps *t);
/* True when rcpt (any case, with or without angle brackets or one trailing dot) is a trap. */
bool greylist_traps_match(const struct greylist_traps *t, const char *rcpt);
void greylist_traps_free(struct greylist_traps *t);

/* A client's own record (per IP: an IPv6 client is its limits.client_ipv6_prefix network):
 * trapped (it mailed a trap address while greylisted, or `mxgatectl greylist trap`: every
 * RCPT refused until it expires) or allowed (`mxgatectl greylist allow`: it passes
 * greylisting as a passed client until it expires). One record per client: the later
 * decision replaces the earlier. */
enum greylist_ip_state { GREYLIST_IP_NONE = 0, GREYLIST_IP_TRAPPED, GREYLIST_IP_ALLOWED };
#define GREYLIST_IP_PREFIX "mxgate:glip:"  /* + client: local table and Redis (hash s, t) */
#define GREYLIST_IP_LMDB "glip:"           /* + client: LMDB */
/* The LMDB value of a client record (a triplet's layout: expiry, since, the state's mark):
 * its state at now_ms (GREYLIST_IP_NONE for an expired record or another one) with *since_ms
 * and *expires_ms. */
int greylist_ip_decode(const void *val, size_t len, uint64_t now_ms, uint64_t *since_ms,
    uint64_t *expires_ms);
/* Encodes a client record (state TRAPPED or ALLOWED) into out (GREYLIST_RECORD_LEN bytes). */
void greylist_ip_encode(int state, uint64_t since_ms, uint64_t expires_ms, void *out);
/* The local table's val of a client record (state in the top two bits, since_ms below), and
 * back: the state, with *since_ms. */
uint64_t greylist_ip_local_val(int state, uint64_t since_ms);
int greylist_ip_local_state(uint64_t val, uint64_t *since_ms);
/* The client key of sa (its address, an IPv6 one its ipv6_prefix network). 0 or -1. */
int greylist_ip_client(const struct sockaddr *sa, long ipv6_prefix, char *out, size_t outlen);
/* The local table's record of client (process-wide: store local, and Redis's fallback):
 * read (set 0), written (set GREYLIST_IP_TRAPPED or _ALLOWED, kept ttl_ms) or deleted (set
 * -1). Returns the state it had, with *left_ms (how long it had yet). Thread-safe. */
int greylist_ip_local(const char *client, int set, uint64_t ttl_ms, uint64_t *left_ms);
/* Greytrapping's metrics counts (the control verb's trap counts as trapped). */
void greylist_count_trapped(void);

/* ---- records as stored: bytes from the LMDB map, replies from Redis (any input is safe) */

/* The LMDB value of a triplet (expiry, first attempt, passed; the layout is on disk): true
 * with *e set when val holds a live triplet at now_ms (wall clock); false for an expired
 * record or one of another size. */
bool greylist_record_decode(const void *val, size_t len, uint64_t now_ms,
    struct greylist_entry *e);
/* Encodes e kept until expires_ms into out (at least GREYLIST_RECORD_LEN bytes). */
#define GREYLIST_RECORD_LEN 24
void greylist_record_encode(const struct greylist_entry *e, uint64_t expires_ms, void *out);
/* The LMDB sweep rule: true when the record may go at now_ms (expired, or not a record). */
bool greylist_record_expired(const void *val, size_t len, uint64_t now_ms);
/* A client network's passes (auto_allow_clients, LMDB key "gla:" + network): true with
 * *count (and *logged: a worker logged it allowed) when val holds a live count at now_ms. */
bool greylist_awl_decode(const void *val, size_t len, uint64_t now_ms, uint64_t *count,
    bool *logged);
/* The batch's merge of an operand {expires_ms, add, logged} (uint64_t each) into such a
 * record (lmdb_merge_fn): the count plus add, kept until expires_ms, marked logged when the
 * operand or the record says so; add 0 renews a live count and leaves an absent or expired
 * one absent (-1). */
long greylist_awl_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx);

/* A client record's conditional delete (a control verb's disallow or untrap) as the LMDB
 * batch's merge: the operand is {GREYLIST_IP_DEL_MARK, state} (uint64_t each); the record is
 * deleted (0) when it is live and in state at now_ms, else left as it is (-1). Run inside
 * the batch's write transaction, so the state is the record's when LMDB applies the delete,
 * whatever another worker's batch wrote before it. */
#define GREYLIST_IP_DEL_MARK 0x676c6970646f6e6cull    /* "glipdonl" */
long greylist_ip_del_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx);

/* A client record written only where there is none (a worker's trap: it read no live record
 * and decided on that) as the LMDB batch's merge: the operand is {GREYLIST_IP_NEW_MARK,
 * state, since_ms, expires_ms} (uint64_t each, state TRAPPED or ALLOWED); the record is
 * written (GREYLIST_RECORD_LEN) when cur holds no live client record at now_ms, else left as
 * it is (-1): an allow or a trap another worker, process or verb wrote after the worker's
 * read stands (a client the worker would have seen allowed is not trapped over it). */
#define GREYLIST_IP_NEW_MARK 0x676c69706e657772ull    /* "glipnewr" */
long greylist_ip_new_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx);

struct redisReply;
/* The check script's reply {passed, wait_s} or {passed, wait_s, allow} (allow: 1 when this
 * pass made the client network allowed, 2 when it passed as allowed): 0 with *pass and
 * *wait_s (negative waits read as 0), or -1 for anything else (an error, another shape: the
 * local table decides). */
int greylist_parse_reply(const struct redisReply *r, bool *pass, uint64_t *wait_s);

/* ---- for the control verbs (filters/limits_control.c) ------------------------------ */

#define GREYLIST_KEY_PREFIX "mxgate:gl:"   /* + triplet: local table and Redis keys */
/* + a message's digest (greylisting by score, greylist_message_check): local table and Redis
 * keys, LMDB keys; the record is a triplet's, kept rules.greylist_expire once passed */
#define GREYLIST_MSG_PREFIX "mxgate:glm:"
#define GREYLIST_MSG_LMDB "glm:"
/* + triplet: Redis, the time (ms, Redis's clock) the control verb deleted the triplet; a
 * merge of an earlier attempt queued through an outage is dropped (kept for greylist.expire) */
#define GREYLIST_DELETED_PREFIX "mxgate:gldel:"
/* + client: the time (Redis's clock, ms) `mxgatectl greylist untrap` deleted its trap in
 * Redis, kept trap_ttl: a trap any node set from its local table during an outage, made
 * before it and written when Redis is back (gl_lua_trap), is dropped */
#define GREYLIST_UNTRAPPED_PREFIX "mxgate:glipun:"
#define GREYLIST_AWL_PREFIX "mxgate:gla:"  /* + client network: its passes (auto_allow_clients);
                                            * LMDB "gla:" + network */
struct local_table;
/* The local triplet table (NULL before a worker made it): expires_ns and val's first attempt
 * (ms, bit 63 = passed) on uv_hrtime()'s clock. */
struct local_table *greylist_local_table(void);
/* The LMDB key of a triplet: "gl:<triplet>", or "gl:#<SHA-256 of it>" when that is longer
 * than max_key (long addresses: a too-long key would fail its whole batch). 0 or -1. */
int greylist_lmdb_key(size_t max_key, const char *triplet, char *out, size_t outlen);

/* A control verb's write of one LMDB triplet (a put of val, or a delete with vlen 0), done
 * through every worker's writer after what it has queued (so a worker's update in flight
 * cannot land over it, and its next read sees it). With redis set, key is the triplet's
 * Redis key and each worker with a Redis store forgets its writes of it not applied yet
 * (queued through an outage: redis_store_write_forget), so the verb's own change, made
 * after done, is not undone by them when the connection is back. */
struct greylist_write {
	char key[720];
	unsigned char val[GREYLIST_RECORD_LEN];
	size_t vlen;
	bool redis;
	/* A client record's verb (LMDB): each worker reads key before its write, its queue
	 * first (lmdb_writer_get_merged: a trap it made in the last batch interval is there, not in the
	 * map yet); the live record with the latest since is kept in seen (seen_len 0: none),
	 * valid in done. */
	bool want_seen;
	unsigned char seen[GREYLIST_RECORD_LEN];
	size_t seen_len;
	/* A client record's delete (vlen 0) only when the record is in this state when LMDB
	 * applies the delete (enum greylist_ip_state: untrap deletes a trap, disallow an allow
	 * record, never the other's), checked inside the batch's write transaction
	 * (greylist_ip_del_merge); 0: whatever it is. The worker's reads of a client record see
	 * the delete's outcome at once (lmdb_writer_get_merged). */
	int del_only;
	/* Called once every worker's part is done (an LMDB batch applied or failed, a Redis
	 * queue's writes of key forgotten): on the thread of the last worker's loop. */
	void (*done)(struct greylist_write *gw);
	/* results, valid in done */
	atomic_int failed;          /* workers whose write or batch failed */
	size_t workers;             /* workers the write went to */
	atomic_int parts;           /* internal */
};
/* Hands gw to every worker holding the store (LMDB, or Redis when gw->redis; gw must stay
 * valid until done); returns how many. 0: no worker holds it, done will not be called (the
 * caller writes itself). */
size_t greylist_write_post(struct greylist_write *gw);

#endif
