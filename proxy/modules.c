/* modules.c — the module registry generated from modules.def: the chain (hook_modules[])
 * and module_list[] with the daemon's per-module calls. */
#include "modules.h"

#include <limits.h>
#include <string.h>

#include "hook.h"
#include "config.h"
#include "metrics.h"
#include "rules/bayes_http.h"
#include "rules/bayes_learn.h"

/* ---- the chain: every entry with a hook module, in list order ----------------------- */

#define MX_HOOK(sym) extern const struct hook_module sym;
#define MX_NO_HOOK
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, doc) hook
#include "modules.def"
#undef MX_MODULE
#undef MX_NO_HOOK
#undef MX_HOOK

const struct hook_module *const hook_modules[] = {
#define MX_HOOK(sym) &sym,
#define MX_NO_HOOK
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, doc) hook
#include "modules.def"
#undef MX_MODULE
#undef MX_NO_HOOK
#undef MX_HOOK
	NULL
};
const size_t hook_nmodules = sizeof(hook_modules) / sizeof(hook_modules[0]) - 1;

/* ---- glue for modules that do not register their own metrics ------------------------ */

static void modules_rule_hit_cb(const char *name, uint64_t hits, void *arg)
{
	metrics_out_sample(arg, "rule", name, (double)hits);
}

/* Per-rule hit counters of the rules engine, as mxgate_rule_hits_total{rule="..."}. */
static void modules_collect_rule_hits(void *arg, struct metrics_out *out)
{
	(void)arg;
	rules_foreach_counter(modules_rule_hit_cb, out);
}

static void modules_rules_metrics(void)
{
	metrics_register_family("rule_hits_total", "messages each scoring rule hit", "counter",
	    modules_collect_rule_hits, NULL);
}

/* ---- the registry ------------------------------------------------------------------- */

const struct module_info module_list[MODULES_COUNT] = {
#define MX_SECTION MODULE_SECTION
#define MX_LIST MODULE_LIST
#define MX_HOOK(sym) &sym
#define MX_NO_HOOK NULL
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, doc) \
	{ #name, kind, &table, sizeof(type), hook, check, metrics, order, doc },
#include "modules.def"
#undef MX_MODULE
#undef MX_NO_HOOK
#undef MX_HOOK
#undef MX_LIST
#undef MX_SECTION
};

int modules_check_config(const struct mx_config *cfg, FILE *err)
{
	int rc = 0;

	for (size_t i = 0; i < MODULES_COUNT; i++)
		if (module_list[i].check && module_list[i].check(cfg, err) != 0)
			rc = -1;
	return rc;
}

void modules_register_metrics(const struct mx_config *cfg)
{
	for (size_t i = 0; i < MODULES_COUNT; i++)
		if (module_list[i].metrics)
			module_list[i].metrics();
	bayes_http_register(cfg->rules.bayes.max_learn_size);
}

/* mxgate -c FILE learn: a config that neither enables the classifier nor names its store
 * has none (the daemon classifies nothing): the learn would fill the default store
 * (/var/lib/mxgate/bayes) that no daemon of this config reads. That is an error naming the
 * key, exit 2 (as a wrong learn command line), before a store is opened. A store named with
 * enabled false is learned into (learn first, then enable: the note bayes_learn_main adds). */
int modules_learn_main(const struct mx_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
	bool usage_ok = argc >= 3 && (strcmp(argv[1], "spam") == 0 || strcmp(argv[1], "ham") == 0);

	/* a wrong command line: bayes_learn_main's usage line first */
	if (usage_ok && !cfg->rules.bayes.enabled && !cfg_marks_has(cfg->marks, "rules.bayes.store")) {
		char where[PATH_MAX + 32];

		fprintf(err, "%s: rules.bayes.store: not set, and rules.bayes.enabled is not true: this "
		    "config has no classifier, the learn would fill a store (%s) its daemon never reads; "
		    "set rules.bayes.store (and rules.bayes.enabled: true to use it)\n",
		    config_key_where(cfg, "rules.bayes.store", where, sizeof(where)),
		    cfg->rules.bayes.store ? cfg->rules.bayes.store : "the default");
		return 2;
	}
	return bayes_learn_main(&cfg->rules.bayes, &cfg->rules.files, argc, argv, out, err);
}
