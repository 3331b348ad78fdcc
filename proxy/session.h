/* session.h — the SMTP server side: one state machine per client connection. */
#ifndef MX_SESSION_H
#define MX_SESSION_H

#include <uv.h>

struct worker;
struct listen_config;

/* Accepts one connection from server (a listening handle of w) and runs its session. */
void session_accept(struct worker *w, uv_stream_t *server, const struct listen_config *lc);
/* Runs the session of a connection another worker accepted from lc and handed to w (fd:
 * connected, non-blocking; w->load already counts it). Takes fd, closes it on failure. */
void session_accept_fd(struct worker *w, int fd, const struct listen_config *lc);
/* Worker drain: idle sessions get 421 and close now; busy ones after their transaction. */
void session_drain_all(struct worker *w, int force);

#endif
