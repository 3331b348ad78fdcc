/* pregreet.h — the pregreet test's configuration (the test itself lives in the session:
 * it watches the socket before the greeting). */
#ifndef MX_PREGREET_H
#define MX_PREGREET_H

#include <stdint.h>

enum pregreet_action { PREGREET_SCORE = 0, PREGREET_REJECT, PREGREET_TEMPFAIL, PREGREET_DROP };

struct pregreet_config {
	uint64_t delay;   /* ms the final greeting line waits; 0 = test off */
	int action;       /* enum pregreet_action */
	double score;     /* symbol PREGREET's score */
};

struct cfg_table;
extern const struct cfg_table pregreet_config_table;

#endif
