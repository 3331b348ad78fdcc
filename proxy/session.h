/* session.h — the SMTP server side: one state machine per client connection. */
#ifndef MX_SESSION_H
#define MX_SESSION_H

#include <uv.h>

struct worker;
struct listen_config;

/* Runs the session of a connection accepted from lc, by w or by another worker that handed
 * it to w (fd: connected, non-blocking; w->load already counts it). Takes fd, closes it
 * on failure. */
void session_accept_fd(struct worker *w, int fd, const struct listen_config *lc);
/* Worker drain: idle sessions get 421 and close now; busy ones after their transaction. */
void session_drain_all(struct worker *w, int force);

#endif
