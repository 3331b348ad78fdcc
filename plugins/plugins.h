/* plugins.h — the `plugins:` config section and the plugin chain, exposed to the session as
 * ONE hook module (`plugins_module`, listed in hook.c after filters, before rules).
 *
 *   plugins:
 *     - { name: clamd,  address: "127.0.0.1:3310", on_error: tempfail, timeout: 30s }
 *     - { name: milter, address: "inet:127.0.0.1:8891", on_error: accept }
 *     - { name: spamd,  address: "127.0.0.1:783" }
 *     - { name: mine,   path: "/usr/lib/mxgate/plugins/mine.so", options: { word: x } }
 *
 * `name` selects a built-in (clamd, milter, spamd, rspamd) unless `path` is given: then the shared
 * object is loaded with dlopen (at config check too: a wrong ABI version is a config
 * error). Entries run in config order at each stage they take part in. */
#ifndef MX_PLUGINS_H
#define MX_PLUGINS_H

#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

struct cfg_table;
struct hook_module;

enum plugin_on_error { PLUGIN_ON_ERROR_TEMPFAIL = 0, PLUGIN_ON_ERROR_ACCEPT, PLUGIN_ON_ERROR_REJECT };

/* `path:` — the loaded shared object (handle released with the config). */
struct plugin_so { char *path; void *handle; const struct mxgate_plugin *desc; };
/* `options:` — a free mapping of scalars, handed to the plugin's init. */
struct plugin_options { struct mxgate_option *v; size_t n; };

struct plugin_config {
	char *name;
	struct plugin_so so;
	char *address;
	int on_error;               /* enum plugin_on_error */
	uint64_t timeout;           /* ms, per call */
	char *action;               /* clamd: reject | quarantine (what FOUND does) */
	uint64_t max_size;          /* bytes scanned / sent; 0 = the plugin's default */
	struct plugin_options options;
};

/* The table for one list item; config.c lists `plugins` as a CFG_STRUCT_LIST of it. */
extern const struct cfg_table plugin_config_table;
extern const struct hook_module plugins_module;

/* Built-in plugin descriptors (same ABI as loadable ones). */
extern const struct mxgate_plugin clamd_plugin;
extern const struct mxgate_plugin milter_plugin;
extern const struct mxgate_plugin spamd_plugin;
extern const struct mxgate_plugin rspamd_plugin;

/* Looks a built-in up by name; NULL if none. */
const struct mxgate_plugin *plugins_find_builtin(const char *name);
/* The option `key` of args, or NULL. */
const char *plugins_option(const struct mxgate_plugin_args *args, const char *key);
/* Loads path and checks its descriptor. 0, or -1 with a reason in err. */
int plugins_load_so(const char *path, void **handle, const struct mxgate_plugin **desc,
    char *err, size_t errlen);

#endif
