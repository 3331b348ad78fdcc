/* control.h — the control socket: a unix stream socket on the main loop that answers
 * mxgatectl (tools/mxgatectl.c). Wire format in control_proto.h; verbs in control_cmd.c:
 *
 *   status                      version, uptime, generation, sessions, msg/s, backends
 *   backends                    each backend: state (up/down/draining/drained), latency ...
 *   drain BACKEND / enable BACKEND
 *                               no new transactions for BACKEND (URL or host:port); running
 *                               ones finish; kept across reloads until enable
 *   reload                      as SIGHUP (names resolved off the main loop): answered when
 *                               done, with the new generation or the FILE:LINE:COL errors
 *   flush dns|passcache         empty the DNS cache / the DNS-list pass cache
 *   passcache                   the pass caches: entries, store, this process's hits
 *   flush reputation IP         forget the client's reputation records in every worker
 *                               (answered once the workers have done it)
 *   learn spam|ham (body: the message)
 *                               offered by modules (control_verbs.h); "not available" else
 *   top clients|reasons|rules|senders|recipients|domains [N]
 *   quarantine list [N] | show ID | release ID [RCPT...] | delete ID
 *                               the quarantine maildir (proxy/quarantine_control.c)
 *   help
 *
 * Limits: CONTROL_MAX_CONNS connections, each closed after control.idle_timeout
 * (CONTROL_IDLE_MS by default) without a complete request, counted from the connection or
 * the last answer; with every slot in use a new connection takes over the one idle the
 * longest (one owed nothing: no answer to come, no reply in flight), and only when each is
 * owed something is it refused; while a request waits for such an answer (a reload, a module verb) the
 * idle timeout does not run: the work's own bound holds it (a reload: dns.timeout per name,
 * after the reloads queued before it; control_verbs.h: a verb's work is bounded), up to
 * CONTROL_PENDING_MS. A client that does not read its replies is not read either. A bad
 * request gets an ERR reply and the connection is closed; nothing a client sends can stop
 * or stall the daemon. */
#ifndef MX_CONTROL_H
#define MX_CONTROL_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "control_config.h"
#include "control_proto.h"
#include "headers.h"

#define CONTROL_MAX_CONNS 16
#define CONTROL_IDLE_MS 60000     /* control.idle_timeout's default */
/* A request whose answer comes later (a reload, a module verb) is bounded by its own work;
 * past this the connection is closed all the same (a reload takes at most a few times
 * dns.timeout, whose maximum is 1 min). */
#define CONTROL_PENDING_MS 600000
/* When the socket closes at the end of the drain (control_stop): an answer still to come is
 * waited for this long (then refused in its place), and so is a reply the client has not
 * read; a connection with nothing asked yet gets CONTROL_STOP_IDLE_MS for its request. */
#define CONTROL_STOP_MS 5000
#define CONTROL_STOP_IDLE_MS 250

struct control;

/* Creates the socket at cc->socket (removing a stale socket file left by a dead process,
 * never a live one or a non-socket), applies mode/owner/group and listens on loop. Call it
 * before dropping privileges when owner/group need root. Returns NULL after logging
 * (event=control_error). */
struct control *control_start(uv_loop_t *loop, const struct control_config *cc);
/* Stops listening and removes the socket file (when still allowed); connections end once
 * they are answered: every request read gets an answer or a "shutting down" refusal, never a
 * bare close — an answer still to come (a module verb, a reload) is waited for, bounded by
 * CONTROL_STOP_MS, and a request read from now on is refused. c is freed when the last
 * connection has closed: the caller's loop runs until then. NULL ok.
 *
 * Tests only: MXGATE_TEST_CONTROL_HOLD_ANSWERS=1 in the daemon's environment holds every
 * answer given later back until control_stop, which sends it (test_control_drain_end.py);
 * MXGATE_TEST_CONTROL_PENDING_MS=N puts CONTROL_PENDING_MS at N ms (test_control_no_answer.py:
 * a connection closed on, unanswered, is logged event=control_closed reason=no_answer). */
void control_stop(struct control *c);
/* A reload: control.idle_timeout from cc for each wait that starts from now (the socket's
 * path, mode and owner stay as started). NULL ok. */
void control_set_config(struct control *c, const struct control_config *cc);

/* Runs one request on loop (the main loop's thread) and writes the reply payload to out. Returns 0 for
 * OK, -1 for ERR (out then says why), or 1 when a module verb answers later (struct
 * control_verb.start): then done(arg, rc, payload) is called on the main loop's thread,
 * never from inside this call (payload: take its contents), and *pending is the reply
 * until then, for control_reply_detach. Public for tests. */
typedef void (*control_done_fn)(void *arg, int rc, struct strbuf *payload);
struct control_reply;
int control_dispatch_start(const struct ctl_request *req, struct strbuf *out, uv_loop_t *loop,
    control_done_fn done, void *arg, struct control_reply **pending);
/* The asker of a pending reply went away: its done will not be called. */
void control_reply_detach(struct control_reply *r);
/* control_dispatch_start on the default loop for a caller that cannot wait: a verb that
 * would answer later answers -1 ("answers later") and its work goes on unheard. Public for
 * tests. */
int control_dispatch(const struct ctl_request *req, struct strbuf *out);

#endif
