/* control_verbs.c — the control verbs modules offer (see control_verbs.h). */
#include "control_verbs.h"

#include <string.h>

extern const struct control_verb dns_flush_control_verb;      /* filters/filters_control.c */
extern const struct control_verb passcache_flush_control_verb; /* filters/filters_control.c */
extern const struct control_verb passcache_show_control_verb; /* filters/filters_control.c */
extern const struct control_verb reputation_flush_control_verb; /* filters/reputation_control.c */
extern const struct control_verb learn_control_verb;          /* rules/rules_control.c */
extern const struct control_verb ratelimit_control_verb;      /* filters/limits_control.c */
extern const struct control_verb greylist_control_verb;       /* filters/limits_control.c */
extern const struct control_verb quarantine_control_verb;     /* proxy/quarantine_control.c */

const struct control_verb *const control_module_verbs[] = {
	&dns_flush_control_verb,
	&passcache_flush_control_verb,
	&passcache_show_control_verb,
	&reputation_flush_control_verb,
	&learn_control_verb,
	&ratelimit_control_verb,
	&greylist_control_verb,
	&quarantine_control_verb,
	NULL
};

extern const struct control_figures dnsbl_errors_control_figures;  /* filters/filters_control.c */
extern const struct control_figures rule_hits_control_figures;     /* rules/rules_control.c */

const struct control_figures *const control_module_figures[] = {
	&dnsbl_errors_control_figures,
	&rule_hits_control_figures,
	NULL
};

const struct control_figures *control_figures_find(const char *name)
{
	for (const struct control_figures *const *f = control_module_figures; *f; f++)
		if (strcmp((*f)->name, name) == 0)
			return *f;
	return NULL;
}
