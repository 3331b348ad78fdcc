/* quarantine_control.h — what the main loop calls into the quarantine's control side
 * besides the verbs (control_verbs.c lists those): quarantine.expire's sweep. */
#ifndef MX_QUARANTINE_CONTROL_H
#define MX_QUARANTINE_CONTROL_H

#include <uv.h>

struct mx_config;

/* How often quarantine.expire's sweep runs (and at the first tick, and at the first tick
 * after a reload that changed the quarantine or its expire). */
#define QUARANTINE_SWEEP_MS (3600u * 1000)

/* Main loop, once a second (ops.c's tick), with the config in force (NULL: none yet):
 * queues the expiry sweep (quarantine_expire, in the thread pool) when one is due and none
 * runs. It logs event=quarantine_expired count=N and adds N to
 * mxgate_quarantine_expired_total when it removed any. */
void quarantine_expire_tick(uv_loop_t *loop, const struct mx_config *cfg);

#endif
