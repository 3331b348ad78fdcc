/* pregreet.h — the pregreet test's configuration (the test itself lives in the session:
 * it watches the socket before the greeting), and its pass cache (postscreen_greet_ttl): a
 * client that waited for the greeting without talking is not tested again for pass_ttl: this
 * process remembers it, and with pass_store so does LMDB or Redis (filters/passcache.h). */
#ifndef MX_PREGREET_H
#define MX_PREGREET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pregreet_action { PREGREET_SCORE = 0, PREGREET_REJECT, PREGREET_TEMPFAIL, PREGREET_DROP };

/* What an after-220 protocol test's failure does (postscreen's *_action): score (the symbol
 * only), enforce (the symbol, and every MAIL of the session is refused 550 5.5.1), drop
 * (521 5.5.1 and the connection closes; a non-SMTP command: 421 as always) or ignore
 * (logged only). */
enum protocol_action { PROTOCOL_SCORE = 0, PROTOCOL_ENFORCE, PROTOCOL_DROP, PROTOCOL_IGNORE };

struct pregreet_config {
	uint64_t delay;   /* ms the final greeting line waits; 0 = test off */
	int action;       /* enum pregreet_action */
	double score;     /* symbol PREGREET's score */
	uint64_t pass_ttl; /* ms a client that passed is not tested again; 0 = no pass cache */
	char *pass_store;  /* "local", "lmdb:/dir" or a redis:// URL (filters/passcache.h) */
	uint64_t pass_store_timeout; /* ms: a Redis pass lookup's deadline */
	/* after the greeting (enum protocol_action) */
	int pipelining_action;       /* commands pipelined without EHLO */
	int bare_newline_action;     /* a command line ended by a bare LF */
	int non_smtp_command_action; /* an HTTP or proxy command */
};

struct cfg_table;
extern const struct cfg_table pregreet_config_table;

/* The pass cache: process-wide (every worker), at most PREGREET_PASS_MAX client addresses
 * (a full cache evicts the one closest to expiring), on the monotonic clock (ns). ip is the
 * client's address as logged. Thread-safe. */
#define PREGREET_PASS_MAX 100000
/* True when ip passed the test within its pass_ttl at now_ns. */
bool pregreet_pass_known(const char *ip, uint64_t now_ns);
/* ip passed the test at now_ns: remembered for ttl_ms (0: not at all). */
void pregreet_pass_note(const char *ip, uint64_t ttl_ms, uint64_t now_ns);
/* Forgets every pass noted before now_ns (the control socket's `flush passcache`); returns
 * how many live ones that was. */
size_t pregreet_pass_flush(uint64_t now_ns);
/* How many live passes the cache holds at now_ns (the control socket's `passcache`). */
size_t pregreet_pass_count(uint64_t now_ns);

/* The hook module (proxy/modules.def): with pass_store lmdb or redis, a connect-stage entry
 * that looks the client up in a Redis store while the teaser's delay runs (an LMDB store was
 * asked before the teaser: pregreet_store_known_now) (the session sets
 * env->pregreet_pass TESTING before the chain; KNOWN lets the session greet as soon as the
 * connect stage is done) and writes the passes the session noted (PASSED) at the end of the
 * client's first transaction or of the session. Not in the chain otherwise. */
struct hook_module;
extern const struct hook_module pregreet_module;

/* With an LMDB pass_store, which answers inline (a read of the map): true when it knows ip
 * passed — then this process remembers it too, for the time the pass has left. The session
 * asks before the teaser, so such a client gets no teaser at all, as from this process's own
 * cache. False for a Redis store (asked by the module during the delay), without one, or
 * when not known. mods: the session's chain entries (the module's worker state). */
struct chain_modules;
bool pregreet_store_known_now(const struct chain_modules *mods, const char *ip);

#endif
