/* statuspage.h — the live status page and the load balancer probes on the metrics
 * listener (metrics.h routes every path other than /metrics here):
 *   /, /index.html   self-contained HTML that shows backends and their health, sessions,
 *                    accepted/refused/tempfailed per minute over the last hour (SVG plot),
 *                    top refused clients and reasons, top rule hits, DNS list errors; it
 *                    refreshes itself from /status.json every 5 s
 *   /status.json     status.h's full JSON
 *   /healthz         200 "ok" while the process runs
 *   /readyz          200 when listeners are bound, the first health checks ran and at
 *                    least one backend is up (and not drained); 503 otherwise */
#ifndef MX_STATUSPAGE_H
#define MX_STATUSPAGE_H

#include <stddef.h>

/* The router for metrics_set_router(). */
int statuspage_route(const char *path, int *code, const char **ctype, char **body, size_t *len);

extern const char statuspage_html_head[];
extern const char statuspage_html_tail[];

#endif
