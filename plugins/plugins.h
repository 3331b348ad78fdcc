/* plugins.h — the `plugins:` config section, the dlopen loader, and the adapter that makes
 * each entry its own chain entry (hook_plugin_entries in proxy/hook.h):
 *
 *   plugins:
 *     - { name: clamd,  address: "127.0.0.1:3310", on_error: tempfail, timeout: 30s }
 *     - { name: milter, address: "inet:127.0.0.1:8891", on_error: accept }
 *     - { name: spamd,  address: "127.0.0.1:783", options: { max_size: 1M } }
 *     - { name: mine,   path: "/usr/lib/mxgate/plugins/mine.so", options: { word: x } }
 *
 * `name` selects a built-in (clamd, milter, spamd, rspamd) unless `path` is given: then the
 * shared object is loaded with dlopen (at config check too: a wrong ABI version is a config
 * error). Entries run in config order at each stage they take part in, after the filters
 * and before the rules engine; the chain gives each call the entry's `timeout` and applies
 * its `on_error`.
 *
 * Verdicts map one to one onto the chain's (enum verdict_action):
 *   MXGATE_CONTINUE -> VERDICT_CONTINUE     MXGATE_TEMPFAIL   -> VERDICT_TEMPFAIL (451)
 *   MXGATE_ACCEPT   -> VERDICT_ACCEPT       MXGATE_REJECT     -> VERDICT_REJECT (550)
 *   MXGATE_DISCARD  -> VERDICT_DISCARD      MXGATE_QUARANTINE -> VERDICT_QUARANTINE
 *   MXGATE_ERROR    -> VERDICT_ERROR (the entry's on_error)
 * ACCEPT skips the later filters and plugins of that stage; the rules engine still runs.
 *
 * `options:` of a built-in is typed (sizes with units, bounds, unknown keys are errors at
 * `mxgate -t`); a shared object gets its options as strings (struct mxgate_option). */
#ifndef MX_PLUGINS_H
#define MX_PLUGINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "plugin.h"

struct cfg_table;

enum plugin_on_error { PLUGIN_ON_ERROR_TEMPFAIL = 0, PLUGIN_ON_ERROR_ACCEPT, PLUGIN_ON_ERROR_REJECT,
	PLUGIN_ON_ERROR_TAG /* accept, and say so in a header of the message */ };

/* `path:` — the loaded shared object (handle released with the config). */
struct plugin_so {
	char *path;
	void *handle;
	const struct mxgate_plugin *desc;
	size_t desc_size;   /* the descriptor's bytes the host may read (MXGATE_DESC_HAS) */
};
/* `options:` — typed for a built-in, strings for a shared object. */
struct plugin_options {
	struct mxgate_option *v;       /* shared objects: every key, value as written */
	size_t n;
	const struct cfg_table *table; /* built-ins: the table typed was filled by (defaults too) */
	void *typed;
};

struct plugin_config {
	char *name;
	struct plugin_so so;
	char *address;
	int on_error;               /* enum plugin_on_error */
	uint64_t timeout;           /* ms, per call */
	uint64_t connect_timeout;   /* ms, a TCP connect to one of the peer's addresses */
	char *action;               /* clamd: reject | quarantine | tempfail (= options.action) */
	uint64_t max_size;          /* bytes (= options.max_size); 0 = the plugin's default */
	struct plugin_options options;
};

/* The table for one list item; config.c lists `plugins` as a CFG_STRUCT_LIST of it. */
extern const struct cfg_table plugin_config_table;

/* A built-in: the plugin ABI's hooks, and an init that takes its typed options. */
struct plugin_builtin {
	const struct mxgate_plugin *desc;   /* hooks (desc->init is not used) */
	const struct cfg_table *options;    /* its `options:` */
	/* Like mxgate_plugin.init; options is a struct filled by the options table (never NULL;
	 * borrowed for the call only). */
	int (*init)(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
	    const void *options, void **instance, char *err, size_t errlen);
};

extern const struct plugin_builtin clamd_builtin, milter_builtin, spamd_builtin, rspamd_builtin;
extern const struct cfg_table clamd_options_table, milter_options_table, spamd_options_table,
    rspamd_options_table;

struct mx_config;
struct hook_env;
/* `mxgate -t` (modules.def): warnings about the entries that only show with the whole
 * config (a clamd `action: quarantine` without a top-level `quarantine`). 0. */
int plugins_check_config(const struct mx_config *cfg, FILE *err);

/* Looks a built-in up by name; NULL if none. */
const struct plugin_builtin *plugins_find_builtin(const char *name);
/* Loads path and checks its descriptor; *desc_size: its bytes the host may read
 * (MXGATE_DESC_HAS). 0, or -1 with a reason in err. */
int plugins_load_so(const char *path, void **handle, const struct mxgate_plugin **desc,
    size_t *desc_size, char *err, size_t errlen);

/* For tests/fuzz/fuzz_plugin_output.c only: the checks a plugin's (or milter's) edits pass
 * before they reach the message and the backend, on s: ok[0] an envelope address (recipient),
 * ok[1] the same with empty allowed (sender), ok[2] ESMTP parameters, ok[3] a header name;
 * *clean the header value as it is written (free it). */
void plugins_output_check_fuzz(const char *s, bool ok[4], char **clean);
/* For tests/fuzz/fuzz_plugin_output.c only: a plugin's reply text as done() keeps it (cut
 * to its buffer, cleaned) and as the client gets it for an action of class cls (4 or 5):
 * into out, every line opening with an enhanced status code of that class. Returns the
 * SMTP code (code, or cls50 when code is of another class). */
int plugins_reply_fuzz(const char *reply, int code, int cls, char *out, size_t outlen);

struct msgbuf;
/* For the built-ins (the milter's SMFIR_REPLBODY chunks): an empty message buffer for a new
 * body of the call's message, as the limits say (memory_threshold, spool_dir), counted in
 * limits.memory_budget or spooled past it. NULL when out of memory or the call has no
 * message. */
struct msgbuf *plugins_body_new(struct mxgate_call *c);
/* host->replace_body with the new body in mb, handed over (no copy): the host takes mb,
 * freed on failure (NULL, or the message would pass limits.max_message_size). 0 or -1. */
int plugins_replace_body_buf(struct mxgate_call *c, struct msgbuf *mb);

/* For tests/fuzz/fuzz_milter_mods.c only: runs fn with the host and a plugin call of an
 * entry named name at end of data (HOOK_EOM) on env, as the host's functions see it (their
 * checks, the header value cleaner, the size and recipient bounds, env's outputs). The call
 * is not part of a chain: the host given to fn is the plugins' own but for done, which is
 * the caller's. The call is freed when fn returns. */
void plugins_eom_call_fuzz(struct hook_env *env, const char *name,
    void (*done)(struct mxgate_call *c, enum mxgate_action a, int code, const char *reply, const char *reason),
    void (*fn)(const struct mxgate_host *host, struct mxgate_call *c, void *arg), void *arg);

#endif
