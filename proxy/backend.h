/* backend.h — the backend pool: parsed server URLs, balancing, routes, health state.
 *
 * A pool is built from one config generation and shared read-mostly by all workers; the
 * fields that change (up/down, active connections, failure counts, latency) are atomics. */
#ifndef MX_BACKEND_H
#define MX_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct mx_config;
struct backends_config;
struct hook_env;
struct pool;
struct shared_gen;
struct hostres_set;

/* Addresses kept of a backend's host name (= HOSTRES_MAX_ADDRS, hostres.h). */
#define BACKEND_MAX_ADDRS 8

/* The step a failed health probe failed at (mxgate_backend_probe_failures_total's stage). */
enum backend_probe_step {
	BACKEND_PROBE_CONNECT = 0, BACKEND_PROBE_GREETING, BACKEND_PROBE_EHLO, BACKEND_PROBE_STARTTLS,
	BACKEND_PROBE_TLS, BACKEND_PROBE_MAILDIR, BACKEND_PROBE__COUNT
};
/* "connect", "greeting", ...: the label value of step s. */
static inline const char *backend_probe_step_name(int s)
{
	static const char *const names[BACKEND_PROBE__COUNT] = { "connect", "greeting", "ehlo", "starttls", "tls",
		"maildir" };
	return s >= 0 && s < BACKEND_PROBE__COUNT ? names[s] : "connect";
}

/* A server's health as the probes (health.c) and passive failure tracking see it. */
struct backend_health {
	atomic_int up;                   /* 1 = in rotation */
	atomic_int fails;                /* consecutive failures (passive + active checks) */
	atomic_int oks;                  /* consecutive successful checks while down */
	atomic_llong latency_us;         /* last health-check latency */
	atomic_int checked;              /* 1 = has had a health-check result (this process) */
	atomic_llong probe_fails[BACKEND_PROBE__COUNT];   /* failed probes by step, since the start */
	atomic_llong refused_until;      /* uv_hrtime() ms: refused the gateway itself
	                                  * (backend_report_refused); probes do not bring it
	                                  * back before then */
	atomic_llong refused_logged_until; /* uv_hrtime() ms: the next refusal of the gateway
	                                  * logged no sooner (backend_refused_log_due) */
	atomic_llong refused_unlogged;   /* refusals of the gateway counted, not logged, since
	                                  * the last line */
};

/* Messages a backend accepted and delivery attempts that failed, since the start. One
 * record per URL for the whole process, shared by every pool that names the URL: a reload
 * builds a new pool but keeps counting (mxgate_backend_delivered_total is a counter), and
 * a transaction that finishes on the old generation's pool counts in the same record. */
struct backend_counts {
	atomic_llong delivered, failed;
	/* Also by URL, so that every generation's pool sees them: the connections in use to the
	 * server from sessions of any generation (a session begun before a reload keeps its
	 * pool), and the operator's drain (mxgatectl drain: no new transaction from any of
	 * them). */
	atomic_int active, drained;
	/* Up or down, by URL too: the probes run on the current generation's pool, and a
	 * session begun before a reload picks from its own; both read and write this one state,
	 * so every generation sees one truth and a transition is logged once. */
	struct backend_health health;
};

enum backend_kind { BACKEND_SMTP = 0, BACKEND_LMTP, BACKEND_MAILDIR };

struct backend {
	char *url;                       /* as configured */
	enum backend_kind kind;
	struct sockaddr_storage sa;      /* SMTP/LMTP over TCP: the first of addrs (or the unix
	                                  * socket) */
	socklen_t salen;
	/* Every address of the host name (a numeric one: itself), in the resolver's order, port
	 * set: a connection that cannot be made to one is tried to the next (relay.c). */
	struct sockaddr_storage addrs[BACKEND_MAX_ADDRS];
	socklen_t addrlens[BACKEND_MAX_ADDRS];
	_Atomic size_t naddrs;
	/* A host name's addresses follow the DNS (backendres.h: the main loop re-resolves it and
	 * changes them with backend_addrs_update): a worker reads them through backend_addr_get,
	 * under addr_lock; addr_gen counts the changes. dns_name: the name ("" for a numeric
	 * address, a unix socket or a maildir); port: the URL's, host order. */
	atomic_int addr_lock;
	atomic_uint addr_gen;
	char dns_name[256];
	uint16_t port;
	/* Which address a new connection begins at (backend_addr_first): the one that last took
	 * a connection, and one that could not be connected to is passed over for
	 * BACKEND_ADDR_RETRY_MS (uv_hrtime() ms until then), so a dead first address does not
	 * cost connect_timeout on every connection. Deliveries (every worker) and probes share
	 * them. */
	atomic_int addr_pref;
	atomic_llong addr_retry_at[BACKEND_MAX_ADDRS];
	char *path;                      /* MAILDIR: the maildir root; LMTP over unix: socket path */
	char host[256];                  /* for logs; with backends.tls_verify the name its
	                                  * certificate must carry unless verify_name is set */
	const char *verify_name;         /* backends.servers[].tls_verify_name (the config's
	                                  * string, which outlives the pool), or NULL */
	int weight;
	bool backup;                     /* backends.servers[].backup: only when no other can */
	int max_conns;                   /* backends.servers[].max_connections (0: no limit) */
	struct backends_config *tcfg;    /* backends.* with this server's own timeouts, NULL
	                                  * when it has none (backend_config) */
	struct pool *pool;               /* the pool it belongs to (NULL: not from a pool) */
	int index;                       /* unique in the pool: servers first, then route-only servers */
	/* The state below is by URL (counts) for a backend made by a pool; these copies serve
	 * one that is not (the quarantine's, smtp_tx.c). Read them through backend_health(),
	 * backend_active_all() and backend_is_drained(). */
	struct backend_health own;
	atomic_int active;               /* connections in use (not from a pool) */
	struct backend_counts *counts;   /* by URL, process-wide (NULL: not from a pool) */
	atomic_int drained;              /* 1 = operator drain (ops.h): never picked for a new
	                                  * transaction, running ones finish */
	atomic_int xclient_once;         /* refused a second XCLIENT on one connection (Postfix
	                                  * authorizes the announced client, not us, after the
	                                  * first): pooled connections are reused only for the
	                                  * client they already announce */
	atomic_llong tls_fallback_until; /* uv_hrtime() ms: a STARTTLS handshake failed, the
	                                  * connections opened before then go in clear text
	                                  * (relay.c, opportunistic TLS) */
};

struct domain_set;
struct backend_route {
	char **domains; size_t ndomains;  /* as configured, lower-cased (logs, tests) */
	struct domain_set *match;         /* the same patterns in domain.c's matcher: "*.example.org"
	                                   * matches subdomains; case and one trailing dot ignored */
	bool match_borrowed;              /* match is the config's (file: items read), freed with it */
	struct backend **servers; size_t nservers;
	atomic_uint rr;                   /* this set's round-robin cursor */
	struct backend **sched; size_t nsched; /* smooth weighted order of the non-backup
	                                        * servers, NULL if too long */
};

struct pool {
	struct backend *servers; size_t nservers;        /* the default set */
	struct backend *extra; size_t nextra;            /* servers only named in routes */
	struct backend_route *routes; size_t nroutes;
	struct backend **sched; size_t nsched;           /* default set's smooth weighted order
	                                                  * (its non-backup servers) */
	int balance;                                     /* enum balance_mode */
	int fall, rise;
	int client_identity;                             /* backends.client_identity (config.h) */
	bool require_tls;                                /* backends.require_tls: the probes want
	                                                  * STARTTLS offered, as delivery does,
	                                                  * and a TLS handshake (health.c) */
	bool require_xclient;                            /* backends.require_xclient: with
	                                                  * client_identity xclient the probes of
	                                                  * an smtp:// server want XCLIENT offered,
	                                                  * as delivery does (relay.c) */
	bool tls_verify;                                 /* backends.tls_verify: the probes'
	                                                  * handshake verifies the certificate */
	atomic_uint rr;                                  /* round-robin cursor */
	struct shared_gen *gen;                          /* the generation owning the pool
	                                                  * (worker.h; set by its maker): a
	                                                  * connection to one of its backends
	                                                  * holds it, so the backend outlives
	                                                  * the connection */
};

/* Parses one backend URL ("smtp://host:port", "lmtp://host:port", "lmtp:unix:/path",
 * "maildir:/path") into b. Returns 0 or -1 with *err set to a static reason. */
int backend_parse_url(const char *url, struct backend *b, const char **err);
/* The same, host names taken from names (the set config_load resolved: cfg->resolved) when
 * they are in it; one that is not is resolved on the spot (c-ares, bounded). */
int backend_parse_url_in(const char *url, struct backend *b, const struct hostres_set *names,
    const char **err);

/* How long an address that could not be connected to is passed over (backend_addr_first). */
#define BACKEND_ADDR_RETRY_MS 60000
/* The address of b a new connection begins at: the one that last took a connection unless
 * it failed within BACKEND_ADDR_RETRY_MS, else the next one in the resolver's order that has
 * not; when every one has, the last that worked. now_ms: uv_hrtime() / 1e6. 0 when b has
 * no addresses. */
size_t backend_addr_first(struct backend *b, long long now_ms);
/* A connection to b->addrs[i] was made (ok) or could not be (refused, unreachable, no
 * answer within connect_timeout). */
void backend_addr_result(struct backend *b, size_t i, bool ok, long long now_ms);
/* The same for a connection that took address i when b->addr_gen was gen: ignored when a
 * re-resolution changed the set since (i may name another address now). */
void backend_addr_result_gen(struct backend *b, size_t i, unsigned gen, bool ok, long long now_ms);

/* Address i of b as it is now into *sa and *len (a re-resolution may change b's set at any
 * time: a copy, taken under its lock). false when b has no address i now. Any thread. */
bool backend_addr_get(struct backend *b, size_t i, struct sockaddr_storage *sa, socklen_t *len);
/* Whether sa is one of b's addresses now (a pooled connection to one that left the set is
 * closed rather than reused: relay.c). Any thread. */
bool backend_addr_is_current(struct backend *b, const struct sockaddr_storage *sa, socklen_t len);
/* Replaces b's addresses with the n of sa (port 0: b's port is set on them) when they are
 * another set (the order alone is no change: a round-robin DNS shuffles it): the preference
 * and the addresses passed over (backend_addr_first) start afresh, addr_gen is incremented.
 * Returns 1 when changed, 0 when not (n 0 changes nothing: the last good ones stay). Only
 * the thread that re-resolves (the main loop's). */
int backend_addrs_update(struct backend *b, const struct sockaddr_storage *sa, const socklen_t *len, size_t n);
/* b's addresses as text without the port, comma-separated ("10.0.0.7,10.0.0.9"), into
 * out[0..cap). */
void backend_addrs_format(struct backend *b, char *out, size_t cap);

/* Builds the pool from cfg->backends. Returns NULL with *err on failure. */
struct pool *pool_new(const struct mx_config *cfg, const char **err);
void pool_free(struct pool *p);

/* Picks a healthy backend for a transaction. rcpt_domain selects a route (NULL = default
 * set). tried: backends already tried for this message are skipped (bit b->index).
 * client_ip feeds source_hash. Returns NULL when none is left. In order: the set's
 * non-backup servers that are up; then its backup servers that are up (every other one
 * down, drained or tried for this message); when none is up, the non-backup ones, then the
 * backup ones, regardless of state (a pool that is entirely "down" is more likely wrong
 * about itself than the backends all being dead). Drained backends are never picked, nor
 * full ones (backend_is_full); when only full ones are left it logs event=backends_full.
 * A server with max_connections is counted in use from the pick (atomically: two workers
 * never take its last place both); the connection this thread opens to it next
 * (backend_active_add) takes that place over, and a pick not followed by one gives it back
 * at the thread's next pick. */
struct backend *pool_pick_backend(struct pool *p, const char *rcpt_domain, const char *client_ip,
    uint64_t tried);
/* Which set a domain routes to: returns a stable id (0 = default set, i+1 = route i). The
 * domain is compared in domain.c's normal form (case, one trailing dot). */
int pool_route_for(const struct pool *p, const char *rcpt_domain);

/* b's health: its URL's record for a backend made by a pool (every generation's pool and
 * the probes share it), b->own otherwise. */
static inline struct backend_health *backend_health(const struct backend *b)
{
	return b->counts ? &b->counts->health : (struct backend_health *)&b->own;
}
static inline bool backend_is_up(const struct backend *b)
{
	return atomic_load(&backend_health(b)->up) != 0;
}

/* The backends.* settings for a connection to b: the generation's (cfg), or the copy of
 * them with b's own connect_timeout, reply_timeout, data_timeout or data_deadline. */
static inline const struct backends_config *backend_config(const struct backend *b,
    const struct backends_config *cfg)
{
	return b->tcfg ? b->tcfg : cfg;
}

/* At its max_connections: connections in use from every worker and generation. */
static inline bool backend_is_full(const struct backend *b)
{
	if (b->max_conns <= 0)
		return false;
	return (b->counts ? atomic_load(&b->counts->active) : atomic_load(&b->active)) >= b->max_conns;
}

/* Passive failure tracking: trouble with the session (connect error, timeout, drop, a
 * greeting or EHLO refused, a TLS handshake that failed, 421 to a command (MAIL, RCPT,
 * DATA) or after the dot)
 * or a message accepted. After `fall` consecutive failures the backend leaves the rotation until health
 * checks see it `rise` times healthy. A 4xx to MAIL, DATA or after the dot is the
 * message's (a filter's tempfail for one sender's content, a full mailbox): the server
 * answered, so it is a deferral (backend_report_deferral), not a failure, as Postfix's
 * smtp client tells smtp_mesg_fail (no throttle) from smtp_site_fail and
 * smtp_stream_except (the destination is throttled). */
/* Whether a libuv error from making a connection is mxgate's own shortage (descriptors,
 * socket buffers, memory), which says nothing of the backend: not its failure. */
static inline bool backend_err_is_local(int uv_err)
{
	return uv_err == UV_EMFILE || uv_err == UV_ENFILE || uv_err == UV_ENOBUFS || uv_err == UV_ENOMEM;
}
void backend_report_failure(struct pool *p, struct backend *b, const char *why);
void backend_report_success(struct pool *p, struct backend *b);
/* How long a backend that refused the gateway itself stays out of the rotation. */
#define BACKEND_REFUSED_HOLD_MS 300000
/* b refused the gateway itself (gwrefuse.h: its address banned, a submission endpoint, a
 * greeting or EHLO refused with 5xx): out of the rotation at once (event=backend_down with
 * why, once), a failed delivery attempt counted, and the health probes, which only see the
 * greeting and EHLO, bring it back no sooner than BACKEND_REFUSED_HOLD_MS from now. Picked
 * still when no server is up (pool_pick_backend). */
void backend_report_refused(struct pool *p, struct backend *b, const char *why);
/* Whether a refusal of the gateway by b at now_ms (uv_hrtime() ms) is to be logged: the
 * first, then at most one per BACKEND_REFUSED_HOLD_MS (a server that goes on refusing while
 * every other is down too is still tried for each message: one error line per message and
 * backend before). Returns how many went unlogged since the last line, or -1: this one is
 * only counted (for the next line's unlogged=). */
long long backend_refused_log_due(struct backend *b, long long now_ms);
/* Whether b is held out by backend_report_refused at now_ms (uv_hrtime() ms). */
bool backend_is_refused(const struct backend *b, long long now_ms);
/* A message deferred by b (4xx to DATA or after the dot): counts a failed delivery
 * attempt (backend_failed) and ends b's run of consecutive failures, as an answer from a
 * live server; never takes b out of the rotation. */
void backend_report_deferral(struct backend *b);
/* The counts since the start of the backend's URL (0 for one not made by a pool). */
long long backend_delivered(const struct backend *b);
long long backend_failed(const struct backend *b);
/* A connection to b taken (+1) or given back (-1): counts the URL's (every generation's,
 * which least_conn compares), b->active for a backend not made by a pool. */
void backend_active_add(struct backend *b, int delta);
/* Connections in use to b's server from every generation (b->active for a backend not made
 * by a pool). */
int backend_active_all(const struct backend *b);
/* Drained by the operator: its URL's record (backend_drain_url; ops_apply_drains), so a
 * drain or an enable made after this pool was built holds in it; b->drained for a backend
 * not made by a pool. */
bool backend_is_drained(const struct backend *b);
/* Sets the drain flag of every record whose URL is url (backend_url_equal), so that the pools of
 * older generations, which sessions begun before a reload still pick from, honour it. */
void backend_drain_url(const char *url, int on);
/* Whether two backend URLs name the same server: the scheme and an smtp:// or lmtp:// host
 * (and port) compared without case (RFC 3986 3.1, 3.2.2), a path (lmtp:unix:, maildir:)
 * with case, as the config check counts servers. The records by URL, drains and the
 * control socket's look-ups all compare this way. */
bool backend_url_equal(const char *a, const char *b);

#endif
