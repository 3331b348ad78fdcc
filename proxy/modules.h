/* modules.h — the module registry (the list is modules.def): what the daemon knows of its
 * filters, plugins and rules engine without naming any of them.
 *
 * From the one list come hook_modules[] (hook.h: the chain, in list order), the module
 * members of struct mx_config and the entries of the top config table (config.h,
 * config.c), and module_list[] below for the daemon's other uses (`mxgate -t`, metrics,
 * tests). This header is the only place in proxy/ that includes a header from filters/,
 * plugins/ or rules/: config.h needs each module's config struct. */
#ifndef MX_MODULES_H
#define MX_MODULES_H

#include <stddef.h>
#include <stdio.h>

#include "proxy/cfg.h"

/* Each module's header (its config struct and table), one line per module. */
#include "proxy/pregreet.h"
#include "proxy/auth_config.h"
#include "proxy/control_config.h"
#include "filters/dns.h"
#include "filters/dnsbl.h"
#include "filters/greylist.h"
#include "filters/helo.h"
#include "filters/rdns.h"
#include "filters/ratelimit.h"
#include "filters/reputation.h"
#include "filters/senderauth.h"
#include "filters/senderdom.h"
#include "filters/spf.h"
#include "plugins/plugins.h"
#include "rules/rules.h"

struct mx_config;
struct hook_module;

/* MODULE_ID_<name>: an entry's index in module_list[] (= its place in modules.def). */
enum module_id {
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, doc) MODULE_ID_##name,
#include "modules.def"
#undef MX_MODULE
	MODULES_COUNT
};

enum module_kind { MODULE_SECTION = 0, MODULE_LIST };

struct module_info {
	const char *name;                 /* config key and hook module name */
	enum module_kind kind;
	const struct cfg_table *table;    /* the section's table (one item's for a list) */
	size_t size;                      /* sizeof its config struct: table->size must match */
	const struct hook_module *hook;   /* NULL: a config section only */
	int (*check)(const struct mx_config *cfg, FILE *err);
	void (*metrics)(void);
	int order;                        /* place in the top table, after the core keys */
	const char *doc;
};

/* Every entry of modules.def, in its order. */
extern const struct module_info module_list[MODULES_COUNT];

/* `mxgate -t`: runs every module's check on cfg (already loaded and valid), printing to
 * err. 0 when all passed, else -1 (every check still ran). */
int modules_check_config(const struct mx_config *cfg, FILE *err);
/* Registers the metric families of every module that has some (metrics.h); called by the
 * daemon when it starts the metrics endpoint, with the modules' own handlers on it (the
 * classifier's POST /learn). */
void modules_register_metrics(const struct mx_config *cfg);
/* `mxgate -c FILE learn spam|ham PATH...`: the classifier's command line (rules/bayes_learn.c);
 * argv[0] is "learn". Returns the process exit status. */
int modules_learn_main(const struct mx_config *cfg, int argc, char **argv, FILE *out, FILE *err);

#endif
