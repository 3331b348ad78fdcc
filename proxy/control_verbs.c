/* control_verbs.c — the control verbs modules offer (see control_verbs.h). */
#include "control_verbs.h"

extern const struct control_verb dns_flush_control_verb;      /* filters/filters_control.c */
extern const struct control_verb passcache_flush_control_verb; /* filters/filters_control.c */

const struct control_verb *const control_module_verbs[] = {
	&dns_flush_control_verb,
	&passcache_flush_control_verb,
	NULL
};
