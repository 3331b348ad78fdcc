/* pregreet.c — the `pregreet:` config table. */
#include "config.h"
#include "pregreet.h"

static const char *const pregreet_actions[] = { "score", "reject", "tempfail", "drop", NULL };

static const struct cfg_field pregreet_fields[] = {
	{ "delay", CFG_DURATION, offsetof(struct pregreet_config, delay), "0s", 0, 60000,
	  .doc = "how long the greeting's last line waits at least (0 = test off); a client talking before that line (also while the connect checks still hold it) fails the test; not on submission listeners" },
	{ "action", CFG_ENUM, offsetof(struct pregreet_config, action), "reject", .choices = pregreet_actions,
	  .doc = "score | reject (550 at MAIL) | tempfail (450 at MAIL) | drop (521 and disconnect)" },
	{ "score", CFG_DOUBLE, offsetof(struct pregreet_config, score), "5", -100, 100,
	  .doc = "score of the PREGREET symbol handed to the rules engine" },
	{ .key = NULL }
};

const struct cfg_table pregreet_config_table = {
	.name = "pregreet", .size = sizeof(struct pregreet_config), .fields = pregreet_fields,
};
