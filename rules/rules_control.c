/* rules_control.c — the rules engine's figures for the status views
 * (proxy/control_verbs.h): messages each scoring rule hit. */
#include "proxy/control_verbs.h"
#include "rules.h"

static void rule_hits_foreach(const struct mx_config *cfg,
    void (*cb)(const char *rule, uint64_t hits, void *arg), void *arg)
{
	(void)cfg;
	rules_foreach_counter(cb, arg);
}

const struct control_figures rule_hits_control_figures = { "rule_hits", rule_hits_foreach };
