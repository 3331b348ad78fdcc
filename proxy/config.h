/* config.h — the YAML configuration: a declarative table engine plus the daemon's config.
 *
 * Every module describes its section as a `struct cfg_table` (key, type, default, bounds,
 * one-line doc). config_load() parses the YAML (libfyaml), fills a fresh `struct mx_config`
 * from the tables, validates all of it and reports every error as
 *     FILE:LINE:COL: key.path: reason
 * A config is immutable once loaded; reload builds a new one and swaps it in only if valid. */
#ifndef MX_CONFIG_H
#define MX_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <netinet/in.h>

struct fy_node;
struct cfg_parse;

enum cfg_type {
	CFG_BOOL = 0,     /* bool */
	CFG_INT,          /* long, bounds min..max */
	CFG_DOUBLE,       /* double, bounds min..max */
	CFG_SIZE,         /* uint64_t bytes; "50M", "4K", "1G", plain number */
	CFG_DURATION,     /* uint64_t milliseconds; "300s", "5m", "1h", "250ms", plain number = s */
	CFG_STRING,       /* char * (malloc'd, NULL when unset and no default) */
	CFG_ENUM,         /* int index into .choices */
	CFG_RATE,         /* struct cfg_rate; "30/60s", "1000/1h" */
	CFG_STRLIST,      /* struct cfg_strlist; a YAML sequence of scalars (a lone scalar = 1 item) */
	CFG_STRUCT,       /* nested mapping described by .sub, stored inline at offset */
	CFG_STRUCT_LIST,  /* struct cfg_list of items of .sub->size each, described by .sub */
	CFG_CIDRLIST,     /* struct cfg_cidrlist; ["127.0.0.0/8", "::1"] */
	CFG_CUSTOM,       /* .custom parses the node into dst */
};

#define CFG_REQUIRED 0x1u  /* error when the key is missing */

struct cfg_rate { uint64_t count; uint64_t period_ms; };
struct cfg_strlist { char **v; size_t n; };
struct cfg_list { void *v; size_t n; };   /* v: n items of the element table's size */

struct cfg_cidr { int family; uint8_t addr[16]; int prefix; };
struct cfg_cidrlist { struct cfg_cidr *v; size_t n; };

struct cfg_field {
	const char *key;
	enum cfg_type type;
	size_t offset;              /* offsetof(struct ..., member) */
	const char *defval;         /* default as YAML-ish text, parsed like a value; NULL = none */
	double min, max;            /* bounds for INT/DOUBLE/SIZE/DURATION (ignored if min == max);
	                             * SIZE in bytes, DURATION in milliseconds */
	const char *const *choices; /* CFG_ENUM: NULL-terminated names */
	const struct cfg_table *sub;/* CFG_STRUCT / CFG_STRUCT_LIST */
	/* CFG_CUSTOM: parse n (may be NULL when the key is absent) into dst; 0 or -1 after
	 * cfg_error(). free_custom releases what it allocated (may be NULL). */
	int (*custom)(struct cfg_parse *p, struct fy_node *n, void *dst);
	void (*free_custom)(void *dst);
	unsigned flags;
	const char *doc;            /* one line for docs/config.md */
};

/* Engine rules worth knowing when writing a table:
 *  - an absent key (or `key:` / `~` / null) takes .defval, parsed like a value; REQUIRED
 *    keys error instead; a REQUIRED list must have at least one item;
 *  - where a list is expected, a lone value is a list of one; in a CFG_STRUCT_LIST whose
 *    first field is a CFG_STRING, a plain scalar item sets that first field (the rest take
 *    defaults) and the table's validate then gets the scalar node as n;
 *  - validate runs only when the table's own fields (and sub-tables) parsed without error,
 *    so REQUIRED strings are non-NULL there; n may be NULL (section absent). */
struct cfg_table {
	const char *name;            /* for docs */
	size_t size;                 /* sizeof the struct it fills */
	const struct cfg_field *fields; /* terminated by { .key = NULL } */
	/* Optional cross-field check after all fields parsed; report with cfg_error(). */
	int (*validate)(struct cfg_parse *p, struct fy_node *n, void *obj);
};

/* Reports an error at node n (or the section when n is NULL) for the current key path.
 * Always returns -1 so callers can `return cfg_error(...)`. */
int cfg_error(struct cfg_parse *p, struct fy_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Value parsers shared with custom fields and rule files. 0 on success, -1 on bad text. */
int cfg_parse_size(const char *s, uint64_t *out);
int cfg_parse_duration(const char *s, uint64_t *out_ms);
int cfg_parse_rate(const char *s, struct cfg_rate *out);
int cfg_parse_cidr(const char *s, struct cfg_cidr *out);
/* 1 when sa (AF_INET or AF_INET6; v4-mapped v6 treated as v4) is inside any entry. */
bool cfg_cidrlist_match(const struct cfg_cidrlist *l, const struct sockaddr *sa);
bool cfg_cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa);

/* Releases everything a table filled in obj (not obj itself). */
void cfg_table_free(const struct cfg_table *t, void *obj);

/* Like cfg_error() for the key `key` of mapping `section` (a validate hook's n): the path
 * gets ".key" (and "[index]" when index >= 0) and the position is that value's (or the
 * item's). Always returns -1. */
int cfg_error_key(struct cfg_parse *p, struct fy_node *section, const char *key, long index,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* true/false/yes/no/on/off/y/n/1/0, case-insensitive. 0 or -1. */
int cfg_parse_bool(const char *s, bool *out);

/* Backend URLs: smtp://host[:port] (25), lmtp://host[:port] (24), lmtp:unix:/path,
 * maildir:/path. host: IPv4, [IPv6] or a DNS name. 0, or -1 with *errstr (static text). */
enum cfg_backend_kind { CFG_BACKEND_SMTP = 0, CFG_BACKEND_LMTP, CFG_BACKEND_LMTP_UNIX,
			CFG_BACKEND_MAILDIR };
struct cfg_backend_url {
	int kind;                   /* enum cfg_backend_kind */
	char host[256];             /* SMTP/LMTP: host without brackets */
	uint16_t port;
	char path[4096];            /* LMTP_UNIX / MAILDIR */
};
int cfg_parse_backend_url(const char *s, struct cfg_backend_url *out, const char **errstr);

/* Listen addresses: "127.0.0.1:2525", "[::1]:25", ":25" / "*:25" (every IPv4 address),
 * "[::]:25" (every IPv6 address), "localhost:25". Numeric only (no DNS). 0, or -1 with
 * *errstr. */
int cfg_parse_listen_address(const char *s, struct sockaddr_storage *ss, socklen_t *len,
			     const char **errstr);

/* Generic loader: parses YAML `text` (len bytes; text NULL = read the file `name`) into obj
 * (zeroed by the caller, sizeof t->size) by table t. name is used in error lines. 0, or -1
 * after printing every error to err_fp (FILE *, may be NULL); obj may then be partially
 * filled: release with cfg_table_free either way. */
int cfg_table_load(const char *name, const char *text, size_t len, const struct cfg_table *t,
		   void *obj, void *err_fp);

/* ---------------------------------------------------------------- the daemon's config */

enum listen_tls { LISTEN_TLS_NONE = 0, LISTEN_TLS_STARTTLS, LISTEN_TLS_IMPLICIT };
struct listen_config {
	char *address;              /* "127.0.0.1:2525", "[::]:25", ":25" */
	int tls;                    /* enum listen_tls */
	bool proxy_protocol;
	struct sockaddr_storage sa; /* resolved by validate */
	socklen_t salen;
};

struct tls_config { char *certificate; char *key; char *ciphers; int min_version; /* 0=1.2 1=1.3 */ };

enum bare_lf_policy { BARE_LF_REJECT = 0, BARE_LF_NORMALIZE };
struct limits_config {
	long max_connections;
	long max_connections_per_ip;
	uint64_t max_message_size;
	long max_recipients;
	uint64_t command_timeout;   /* ms */
	uint64_t data_timeout;      /* ms */
	uint64_t data_deadline;     /* ms, the whole DATA phase */
	uint64_t drain_timeout;     /* ms */
	int bare_lf;                /* enum bare_lf_policy */
	long max_line_length;       /* command line incl. CRLF, >= 512 (RFC 5321 4.5.3.1.4) */
	long max_errors;            /* errors per session before 421 and disconnect */
	uint64_t memory_threshold;  /* message bytes held in memory before spilling to a file */
	char *spool_dir;            /* where spilled messages go */
};

enum balance_mode { BALANCE_ROUND_ROBIN = 0, BALANCE_LEAST_CONN, BALANCE_SOURCE_HASH };
enum client_identity { IDENTITY_NONE = 0, IDENTITY_XCLIENT, IDENTITY_PROXY_V2 };

struct backend_server_config { char *address; long weight; };
struct backend_route_config { struct cfg_strlist domains; struct cfg_strlist servers; };
struct health_check_config { uint64_t interval; uint64_t timeout; long fall; long rise; };
struct backends_config {
	int balance;                /* enum balance_mode */
	int client_identity;        /* enum client_identity */
	struct health_check_config health_check;
	struct cfg_list servers;    /* struct backend_server_config */
	struct cfg_list routes;     /* struct backend_route_config */
	uint64_t connect_timeout;   /* ms */
	uint64_t reply_timeout;     /* ms, per command */
	uint64_t data_timeout;      /* ms, for the reply after the final dot */
	long max_attempts;          /* backends tried per message before 4xx */
	long pool_size;             /* idle connections kept per backend per worker */
	bool starttls;              /* use STARTTLS when the backend offers it */
};

struct log_config { int level; /* enum log_level */ bool syslog; };

/* Sections owned by filters/, plugins/ and rules/ are declared in their headers and added
 * here as members; their tables are listed in config.c's top table. */
#include "module_sections.h"

struct mx_config {
	char *path;                 /* the file it came from */
	char *hostname;
	long workers;               /* 0 = auto (number of CPUs) */
	char *user;                 /* drop privileges to this user after binding */
	struct cfg_list listen;     /* struct listen_config */
	struct cfg_cidrlist trusted_proxies;
	struct tls_config tls;
	struct limits_config limits;
	struct backends_config backends;
	struct log_config log;
	int log_level;              /* top-level alias `log_level:` (enum log_level) */
	struct metrics_config { char *listen; } metrics;
	char *quarantine;           /* backend URL for quarantined messages (e.g. maildir:/var/spool/mxgate/quarantine) */
	MX_CONFIG_MODULE_SECTIONS   /* from module_sections.h: dns, dnsbl, ratelimit, ... */
};

/* Loads and validates path. On success returns 0 and *out (free with config_free).
 * On failure returns -1, prints each error line to err_fp (FILE:LINE:COL: key: reason),
 * and *out is NULL. */
int config_load(const char *path, struct mx_config **out, void *err_fp /* FILE * */);
void config_free(struct mx_config *cfg);
/* Event-loop threads to start: cfg->workers, or the number of online CPUs for `auto` (0);
 * 1..64. */
int config_worker_count(const struct mx_config *cfg);
/* Checks a table tree for programming errors (every default parses and fits its bounds,
 * enums have choices, sections have tables, offsets fit, keys unique, docs present).
 * 0, or -1 after printing the problems to err_fp. For unit tests. */
int cfg_table_selfcheck(const struct cfg_table *t, void *err_fp);
/* config_load from memory: name is used for cfg->path and error lines. */
int config_load_string(const char *name, const char *text, size_t len, struct mx_config **out,
		       void *err_fp /* FILE * */);
/* Writes the Markdown reference of every key (docs/config.md) generated from the tables. */
void config_write_docs(void *out /* FILE * */);

/* The top table, for docs generation and tests. */
extern const struct cfg_table config_table;

#endif
