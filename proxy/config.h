/* config.h — the daemon's configuration: `struct mx_config` and how it is loaded.
 *
 * config_load() parses the YAML (libfyaml), fills a fresh `struct mx_config` from the tables
 * (the core ones in config.c and each module's own, listed in modules.def) with the engine
 * of cfg.h, validates all of it and reports every error as
 *     FILE:LINE:COL: key.path: reason
 * A config is immutable once loaded; reload builds a new one and swaps it in only if valid. */
#ifndef MX_CONFIG_H
#define MX_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>

#include "cfg.h"
#include "netaddr.h"

struct domain_set;
struct hostres_set;

/* ---------------------------------------------------------------- the daemon's config */

enum listen_tls { LISTEN_TLS_NONE = 0, LISTEN_TLS_STARTTLS, LISTEN_TLS_IMPLICIT };
struct listen_config {
	char *address;              /* "127.0.0.1:2525", "[::]:25", ":25" */
	int tls;                    /* enum listen_tls */
	bool proxy_protocol;
	bool submission;            /* AUTH offered (after TLS) and required before MAIL */
	bool auth;                  /* AUTH offered (after TLS), not required */
	bool require_tls;           /* MAIL only inside TLS (Postfix's encrypt level) */
	struct sockaddr_storage sa; /* resolved by validate */
	socklen_t salen;
};

struct tls_sni_config { char *certificate; char *key; char *second_certificate; char *second_key; };
struct tls_config { char *certificate; char *key; char *second_certificate; char *second_key; char *ciphers;
	int min_version; /* 0=1.2 1=1.3 */
	char *ciphersuites;     /* TLS 1.3 suites (SSL_CTX_set_ciphersuites); NULL = OpenSSL's */
	int client_certificate; /* enum tls_ccert: none, ask, require */
	char *client_ca_file;   /* PEM CAs that client certificates verify against */
	struct cfg_list sni; /* struct tls_sni_config: certificates chosen by the client's SNI */ };

enum bare_lf_policy { BARE_LF_REJECT = 0, BARE_LF_NORMALIZE };
enum nul_policy { NUL_REJECT = 0, NUL_STRIP };
/* What a message whose end-of-data filters ran past limits.filter_deadline gets. */
enum filter_deadline_action { FILTER_DEADLINE_TEMPFAIL = 0, FILTER_DEADLINE_ACCEPT, FILTER_DEADLINE_TAG };
struct limits_config {
	long max_connections;
	long max_connections_per_ip;
	struct cfg_cidrlist connection_limit_exceptions; /* not capped by max_connections_per_ip */
	long client_ipv6_prefix;    /* an IPv6 client is this network wherever a client is a key */
	uint64_t max_message_size;
	long max_recipients;
	uint64_t command_timeout;   /* ms */
	uint64_t data_timeout;      /* ms */
	uint64_t proxy_timeout;     /* ms, a PROXY header after the connect (listen[].proxy_protocol) */
	uint64_t data_deadline;     /* ms, the whole DATA phase */
	uint64_t session_deadline;  /* ms, a session from its connect (ended between transactions) */
	uint64_t filter_deadline;   /* ms, the whole end-of-data chain (every filter together) */
	int filter_deadline_action; /* enum filter_deadline_action */
	uint64_t drain_timeout;     /* ms */
	int bare_lf;                /* enum bare_lf_policy */
	int nul;                    /* enum nul_policy: NUL octets in DATA (never relayed) */
	long max_line_length;       /* command line incl. CRLF, >= 512 (RFC 5321 4.5.3.1.4) */
	long max_errors;            /* errors per session before 421 and disconnect */
	long max_junk_commands;     /* NOOP/RSET/VRFY/HELP before each is an error */
	long max_mail_commands;     /* MAILs without a delivered message before 421 and close */
	long max_recipient_overshoot; /* RCPTs past max_recipients before each is an error */
	uint64_t memory_threshold;  /* message bytes held in memory before spilling to a file */
	uint64_t memory_budget;     /* message bytes in memory, all sessions together (0: no bound) */
	char *spool_dir;            /* where spilled messages go */
};

enum balance_mode { BALANCE_ROUND_ROBIN = 0, BALANCE_LEAST_CONN, BALANCE_SOURCE_HASH };
enum client_identity { IDENTITY_NONE = 0, IDENTITY_XCLIENT, IDENTITY_PROXY_V2 };

struct backend_server_config {
	char *address; long weight; bool backup; long max_connections;
	uint64_t connect_timeout, reply_timeout, data_timeout;	/* ms; 0: the backends.* ones */
	uint64_t data_deadline;     /* ms; 0: backends.data_deadline */
	char *tls_verify_name;      /* backends.tls_verify: the name its certificate must carry
	                             * (NULL: the URL's host) */
};
struct backend_route_config {
	struct cfg_strlist domains; struct cfg_strlist servers;
	struct domain_set *match;   /* built at load from domains, file: items read (the pool borrows it) */
};
struct health_check_config { uint64_t interval; uint64_t timeout; long fall; long rise; };
struct retry_ledger_config {
	uint64_t ttl;               /* ms */
	long max_entries;           /* 0: off */
	char *store;                /* "memory", "lmdb:/dir" (ledger_store.h) or "redis://..."
	                             * (ledger_redis.h) */
	uint64_t timeout;           /* ms: a Redis lookup's bound */
};
struct backends_config {
	int balance;                /* enum balance_mode */
	int client_identity;        /* enum client_identity */
	struct health_check_config health_check;
	struct cfg_list servers;    /* struct backend_server_config */
	struct cfg_list routes;     /* struct backend_route_config */
	uint64_t connect_timeout;   /* ms */
	uint64_t reply_timeout;     /* ms, per command */
	uint64_t data_timeout;      /* ms, for the reply after the final dot */
	uint64_t data_deadline;     /* ms, a whole message: first octet to the last reply */
	uint64_t resolve_interval;  /* ms: longest time a host name's addresses are kept before
	                             * it is resolved again (backendres.h); 0: never */
	long max_attempts;          /* backends tried per message before 4xx */
	long pool_size;             /* idle connections kept per backend per worker */
	long lmtp_recipient_limit;  /* recipients per transaction to an LMTP server (0 = any) */
	bool starttls;              /* use STARTTLS when the backend offers it */
	bool require_tls;           /* never in clear: no STARTTLS or a failed one is a failure */
	bool tls_verify;            /* verify the certificate (chain and name); sets require_tls */
	bool require_xclient;       /* client_identity xclient: an smtp:// server that does not
	                             * offer XCLIENT or refuses it refuses the gateway (gwrefuse.h) */
	char *tls_ca_file;          /* PEM CAs for tls_verify (NULL: the system's) */
	struct retry_ledger_config retry_ledger; /* the delivery ledger (ledger.h, smtp_tx.c) */
	struct cfg_strlist gateway_refusals; /* replies that refuse the gateway, not the message
	                                      * (gwrefuse.h), beyond the ones built in */
};

struct log_config { int level; /* enum log_level */ bool syslog; int facility; /* enum log_facility */
	int format; /* enum log_format */
	char *file; /* NULL: standard error */ };

/* The module registry: each module's config struct (filters/, plugins/, rules/). */
#include "modules.h"

struct mx_config {
	char *path;                 /* the file it came from */
	struct cfg_marks *marks;    /* where the keys config_key_where names are (config.c) */
	char *hostname;
	long workers;               /* 0 = auto (number of CPUs) */
	char *user;                 /* drop privileges to this user after binding */
	struct cfg_list listen;     /* struct listen_config */
	struct cfg_cidrlist trusted_proxies;
	struct cfg_cidrlist xclient_hosts;  /* may send XCLIENT (session_xclient.c) */
	struct netaddr_nat64 nat64_prefixes; /* their addresses carry an IPv4 client (netaddr.c; at start) */
	struct tls_config tls;
	struct limits_config limits;
	struct backends_config backends;
	struct log_config log;
	int log_level;              /* top-level alias `log_level:` (enum log_level) */
	struct metrics_config { char *listen; } metrics;
	char *quarantine;           /* maildir:PATH for quarantined messages (only maildir: config_check refuses others) */
	char *quarantine_dir;       /* quarantine's PATH, parsed once when loaded (NULL without one) */
	uint64_t quarantine_expire; /* ms: held files older are removed (quarantine.expire); 0 = kept */
	struct cfg_strlist accept_domains; /* patterns and "file:PATH" items, as written */
	struct domain_set *accept_set; /* built from accept_domains (files read); NULL = every domain */
	struct cfg_cidrlist relay_networks; /* clients that may send outside accept_domains (session.c) */
	bool reject_non_fqdn_sender;    /* 504 5.5.2 for MAIL FROM:<a@dotless> (session.c) */
	bool reject_non_fqdn_recipient; /* 504 5.5.2 for RCPT TO:<a@dotless> */
	struct cfg_strlist exempt_recipients; /* local parts or addresses a refused client may reach (session.c) */
	struct cfg_list bypass;     /* struct bypass_entry: checks not run for some recipients (bypass.h, chain.c) */
	struct cfg_list deny_senders;  /* struct bypass_entry: senders refused at RCPT for some recipients (bypass.h) */
	int bypass_mixed;           /* enum bypass_mixed: split (452 at RCPT) or check a mixed message fully */
	struct hostres_set *resolved;  /* the backend host names, resolved once by the load
	                                * (config_resolve_hosts on; hostres.h), NULL otherwise */
	/* every module's section, in the order of modules.def: dns, dnsbl, ratelimit, ... */
#define MX_SECTION(type, name) type name;
#define MX_LIST(type, name) struct cfg_list name;   /* items: type */
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, doc) kind(type, name)
#include "modules.def"
#undef MX_MODULE
#undef MX_LIST
#undef MX_SECTION
};

/* Loads and validates path. On success returns 0 and *out (free with config_free).
 * On failure returns -1, prints each error line to err_fp (FILE:LINE:COL: key: reason),
 * and *out is NULL. */
int config_load(const char *path, struct mx_config **out, void *err_fp /* FILE * */);
void config_free(struct mx_config *cfg);
/* "FILE:LINE:COL" of key in cfg's file (its value's position; an absent key's section's)
 * into buf (cap octets, PATH_MAX + 32 will do), returned: the head of the messages of the
 * checks made on a loaded config (mxgate -t, the start, a reload), which read as the
 * loader's own errors, `FILE:LINE:COL: key: reason`. key is any key path, indexes
 * concrete ("tls.sni[1].key", "plugins[2].timeout"); one not in the file is at its nearest
 * enclosing key that is (cfg_marks_where), FILE:1:1 only when none is. */
const char *config_key_where(const struct mx_config *cfg, const char *key, char *buf, size_t cap);
/* Whether the rules engine runs for cfg: rule files (`rules.files`), or a spamd plugin
 * even with no rule file, whose SPAMD_SCORE then meets rules.actions and gets X-Spam-* (an
 * empty rule set). rspamd does not count: its reply's action and milter headers already
 * decide and tag (the engine's X-Spam-* would replace rspamd's X-Spam-Flag). A shared-object
 * plugin does not either: whether it scores is its own business (an empty rules file turns
 * the engine on for both). The one test of "is the rules engine on" (rules, greylist by
 * score, the classifier, -t warnings). */
bool config_rules_engine_wanted(const struct mx_config *cfg);
/* `mxgate -t` warnings that do not make the config invalid (an empty accept_domains: the
 * backends alone then decide relaying). Prints them to err_fp; returns how many. */
int config_warnings(const struct mx_config *cfg, void *err_fp /* FILE * */);
/* Whether `user` may, as the kernel's mode bits decide, search every directory of path and
 * have the permission want (S_IROTH: read, S_IWOTH: write) on it; path as named and, when a
 * link, where it leads. Returns 1 yes, 0 no (why gets "<noun> /x is not readable by it
 * (mode 0600, uid 0, gid 0)" or the directory that is not searchable), -1 cannot tell (no
 * such user or file). Mode bits only: ACLs are not read. */
int config_user_may(const char *user, const char *path, mode_t want, const char *noun, char *why, size_t cap);
/* When running as root with `user:` set (-t, the start): one warning to err_fp (FILE *; NULL:
 * count only) per TLS file (tls.*, tls.sni[], backends.tls_ca_file) that user cannot read —
 * the config's check reads it as root, but the start and every reload as that user.
 * Returns how many. */
int config_tls_access_warnings(const struct mx_config *cfg, void *err_fp /* FILE * */);
/* `mxgate -t`: one warning to err_fp (FILE *; NULL: count only) per path mxgate writes at
 * run time without which the start goes on (limits.spool_dir, quarantine, the pass stores'
 * lmdb:/dir) whose directory (or nearest existing parent) is read-only or not writable by
 * the user running -t, or, as root with `user:`, by that user. Returns how many. */
int config_write_access_warnings(const struct mx_config *cfg, void *err_fp /* FILE * */);
/* `mxgate -t`: the same for the paths without which the start refuses (log.file,
 * control.socket's directory, a required lmdb:/dir store: config_lmdb_stores), one error
 * line each (`FILE:LINE:COL: KEY: PATH: USER cannot write in DIR (REASON), where ...`): -t exits 1 when
 * there is one, as the start would. Returns how many. */
int config_start_refusals(const struct mx_config *cfg, void *err_fp /* FILE * */);
/* The start's refusal of log.file it could not open (err: the errno), the same line as
 * -t's for it (config_start_refusals): `FILE:LINE:COL: log.file: cannot open PATH: REASON
 * ...; the start fails`. */
void config_log_file_error(const struct mx_config *cfg, int err, void *err_fp /* FILE * */);
/* The LMDB stores cfg's modules open (an "lmdb:/dir" store in use: pregreet.pass_store,
 * reputation.store, dnsbl.pass_store, greylist.store), in the order the workers open them
 * (the registry's: the first opener's map_size wins). Fills out[0..n) (key, dir and what are
 * borrowed from cfg or static) and returns n. required: the module's verdicts depend on the
 * store (greylisting without its triplets passes every message, reputation without its
 * records forgets), so the start and a reload refuse one that cannot be opened; the pass
 * stores are caches (without one a client is tested or looked up again), logged only. */
#define CONFIG_LMDB_STORES_MAX 5
struct config_lmdb_store {
	const char *key;            /* "greylist.store" */
	const char *dir;            /* the directory of its "lmdb:/dir" */
	uint64_t map_size;          /* 0: the store's default */
	const char *what;           /* what mxgate keeps there, for messages */
	bool required;              /* see above */
};
size_t config_lmdb_stores(const struct mx_config *cfg, struct config_lmdb_store *out);
/* Event-loop threads to start: cfg->workers, or the number of online CPUs for `auto` (0);
 * 1..64. */
int config_worker_count(const struct mx_config *cfg);
/* With on, config_load checks that the host name of every smtp:// and lmtp:// backend URL
 * (servers, routes) resolves, as the pool needs at start and on a reload: the
 * daemon (-t, the start, SIGHUP) turns it on; tests and fuzzers leave it off. */
void config_resolve_hosts(bool on);
/* Names already resolved (or given up on) that config_load takes instead of asking again
 * (hostres_set_adopt); NULL: none. The set must outlive the loads made while it is set. */
void config_resolve_seed(const struct hostres_set *seed);
/* The host names config_load would resolve for cfg (backends.servers, routes,
 * plugins[].address), none resolved except numeric ones, and the DNS servers to ask
 * ("ip:port,..."; "" for /etc/resolv.conf) into servers. NULL when out of memory. */
struct hostres_set *config_host_names(const struct mx_config *c, char *servers, size_t cap);
/* The DNS servers of c's dns.resolvers as hostres_set_resolve takes them ("ip:port,...";
 * "" for /etc/resolv.conf) into servers[0..cap). */
void config_dns_servers(const struct mx_config *c, char *servers, size_t cap);
/* A config loaded with config_resolve_hosts off takes set (config_host_names of it,
 * resolved since: a reload resolves off the main loop) as the load would have made it,
 * owning it from here, and publishes the filter peers' addresses (plugins/pconn.h). 0 when
 * every name resolved; -1 when one did not (or set is NULL): load the file again with set as
 * the seed for the FILE:LINE:COL lines. */
int config_take_resolved(struct mx_config *c, struct hostres_set *set);
/* config_load from memory: name is used for cfg->path and error lines. */
int config_load_string(const char *name, const char *text, size_t len, struct mx_config **out,
		       void *err_fp /* FILE * */);
/* Writes the Markdown reference of every key (docs/config.md) generated from the tables. */
void config_write_docs(void *out /* FILE * */);

/* The top table, for docs generation and tests. */
extern const struct cfg_table config_table;

#endif
