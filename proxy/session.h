/* session.h — the SMTP server side: one state machine per client connection. */
#ifndef MX_SESSION_H
#define MX_SESSION_H

#include <uv.h>

struct worker;
struct listen_config;

/* Accepts one connection from server (a listening handle of w) and runs its session. */
void session_accept(struct worker *w, uv_stream_t *server, const struct listen_config *lc);
/* Worker drain: idle sessions get 421 and close now; busy ones after their transaction. */
void session_drain_all(struct worker *w, int force);

#endif
