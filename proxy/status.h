/* status.h — the daemon's state rendered for people (text) and scripts (JSON): shared by
 * the control socket (mxgatectl status/backends/top) and the status page (/status.json).
 * Main loop thread only (reads ops.h state). */
#ifndef MX_STATUS_H
#define MX_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "headers.h"

/* Version, uptime, generation, readiness, sessions, message rates and totals, backends.
 * full adds the last hour per minute, top refused clients and reasons, top rules and DNS
 * list errors (what the status page draws). */
void status_render_json(struct strbuf *out, bool full);
void status_render_text(struct strbuf *out);
/* One row per backend of the current pool, plus drained URLs no longer configured. */
void status_render_backends(struct strbuf *out, bool json);
/* what: "clients" (by sessions and by refusals), "reasons", "rules"; n rows each (1..64).
 * Returns 0, or -1 for an unknown `what` (out says so). */
int status_render_top(struct strbuf *out, const char *what, size_t n, bool json);

#endif
