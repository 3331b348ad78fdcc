/* relay.h — one SMTP/LMTP client connection to a backend.
 *
 * The session drives it step by step: open (greeting, EHLO/LHLO, STARTTLS when offered,
 * client identity by XCLIENT or PROXY v2), then MAIL, RCPT, the message, and release
 * (RSET and back to the worker's idle list, or QUIT). Every step has a timeout; every
 * failure reaches the callback as code 0 (no reply: connect error, drop, timeout) or the
 * backend's own reply. Callbacks are never called after relay_abort(). */
#ifndef MX_RELAY_H
#define MX_RELAY_H

#include <stddef.h>
#include <stdbool.h>

struct worker;
struct backend;
struct hook_env;
struct msgbuf;
struct relay;

/* The most recipients of one LMTP transaction: each gets its own reply after the dot (RFC 2033
 * 4.2), kept until the last. smtp_tx answers RCPTs past it 452 (backends.lmtp_recipient_limit
 * is at most this too), so no recipient is reported by another one's reply. */
#define RELAY_LMTP_MAX_RCPT 1000

/* code: the reply code (0 = no reply: the connection failed; text says why). text: the
 * reply, lines joined by "\r\n" without the final CRLF; valid during the call only. */
typedef void (*relay_reply_fn)(void *arg, int code, const char *text);
/* For open: r is the ready relay (code 250) or NULL (code/text say why). */
typedef void (*relay_open_fn)(void *arg, struct relay *r, int code, const char *text);
/* For the message: one reply per recipient for LMTP (n = nrcpt), one for SMTP (n = 1). */
typedef void (*relay_data_fn)(void *arg, int n, const int *codes, const char *const *texts);

/* Gets a connection to b for env's client: an idle one (re-identified) or a new one. */
void relay_open(struct worker *w, struct backend *b, const struct hook_env *env, relay_open_fn cb, void *arg);
/* relay_open with a new connection, never an idle one: after a pooled connection turned out
 * dead (relay_text_is_stale), the retry does not take the next one, which may be as dead. */
void relay_open_fresh(struct worker *w, struct backend *b, const struct hook_env *env, relay_open_fn cb, void *arg);
/* Sends one command line (no CRLF) and reports its reply: relay_queue + relay_flush. */
void relay_command(struct relay *r, const char *line, relay_reply_fn cb, void *arg);
/* Queues one command line (no CRLF, copied) whose reply goes to cb(arg); nothing is written
 * before relay_flush, which sends everything queued in one write. The replies come back in
 * order (a FIFO of pending replies). More than one command in flight needs a backend that
 * offers PIPELINING (relay_has_ext), and a group ends with a command that changes nothing
 * the rest depends on (RFC 2920 3.1: MAIL and RCPTs, never DATA). After a failure (code 0)
 * or a 421 the connection closes: only the first command still wanted hears of it. */
void relay_queue(struct relay *r, const char *line, relay_reply_fn cb, void *arg);
void relay_flush(struct relay *r);
/* Commands sent ahead for the owner's next transaction (RFC 2920: a message's content
 * may start a group): true when r can take them now, i.e. a DATA sent earlier is open
 * (354), the backend offers PIPELINING (not CHUNKING, not LMTP) and nothing else is in
 * flight. relay_queue_ahead queues one line of n octets (no CRLF, no NUL inside, copied),
 * before relay_send_message, which writes the queued lines together with the message's
 * final dot; their replies are kept in order until the owner claims them: relay_queue
 * (and relay_queue_data) with the same line takes the next one over instead of sending it
 * again, and its callback gets the reply as soon as it is in (at relay_flush if it came
 * before). A command that differs from the next one sent ahead must not be queued: check
 * relay_ahead_match first (the relay fails otherwise, as a stale connection).
 * relay_send_message takes an unclaimed DATA sent ahead as its own; relay_release drops
 * the ones never claimed (an answered transaction is RSET, anything unanswered or an open
 * DATA closes the connection). */
bool relay_can_ahead(const struct relay *r);
void relay_queue_ahead(struct relay *r, const char *line, size_t n);
/* An unclaimed DATA sent ahead (the next one) is the coming message's: relay_send_message
 * does it too; before relay_can_ahead it lets that message's dot take the next group. */
void relay_take_data_ahead(struct relay *r);
/* The next command sent ahead and not claimed yet, or NULL. */
const char *relay_ahead_next(const struct relay *r);
/* lines[0..n) are the next unclaimed commands sent ahead (as far as there are any). */
bool relay_ahead_match(const struct relay *r, const char *const *lines, size_t n);
/* Queues DATA behind the last RCPT of a group (RFC 2920: DATA may end one), for a client
 * that pipelined DATA: cb gets its reply. On 354 the backend reads a message from then
 * on: relay_send_message streams it without another round trip, or relay_data_abandon
 * ends it when no recipient was accepted, or releasing the relay closes it (nothing is
 * delivered). relay_send_message called before the reply waits for it. */
void relay_queue_data(struct relay *r, relay_reply_fn cb, void *arg);
/* True when DATA may go now on its own, for a message that is still arriving (a lock-step
 * client's DATA: smtp_tx_data_early): a transaction is open, no reply is outstanding, no
 * DATA went already, nothing was sent ahead, and the backend does not offer CHUNKING (BDAT
 * has no 354 to wait for). */
bool relay_can_data(const struct relay *r);
/* DATA sent ahead got 354 but no recipient was accepted: a lone "." ends it. */
void relay_data_abandon(struct relay *r);
/* A DATA sent ahead is unanswered or open: no other command may go now. */
bool relay_data_pending(const struct relay *r);
/* The replies of the commands in flight are read and dropped, no callback (the owner gave
 * up on them, e.g. the RCPTs queued behind a refused MAIL). */
void relay_cancel(struct relay *r);
/* The message: prefix (raw header text already final, may be empty), then body[0..len) of
 * the message content. To a backend that offers CHUNKING as one "BDAT <n> LAST" chunk
 * (RFC 3030: CRLF-normalised, no stuffing, no 354 to wait for); else DATA, the content
 * dot-stuffed, the final dot. Reports the reply (or LMTP's replies for nrcpt recipients).
 * body must stay valid until the callback. body_wire: body is its own dot-stuffed form
 * (CRLF lines, none starting with ".": dataparse's restuff false), so DATA sends it as it is
 * instead of through dotstuff_encode (the prefix is always encoded).
 * prefix must end at a line end for that (it does: CRLF); otherwise the body is encoded. */
void relay_send_message(struct relay *r, const char *prefix, size_t prefix_len, const char *body,
    size_t len, bool body_wire, int nrcpt, relay_data_fn cb, void *arg);
/* Done with it: reusable -> RSET and keep idle (or QUIT if the pool is full); otherwise
 * QUIT/close. No callback. Given back by its owner (relay_set_owner) after a transaction's
 * final reply, it is kept for the owner's session beyond pool_size until relay_session_end. */
void relay_release(struct relay *r, bool reusable);
/* Registers the owner's pointer to r: it is set to NULL if r closes on its own (the
 * backend went away between commands), so the owner never uses a dead relay. */
void relay_set_owner(struct relay *r, struct relay **owner);
/* True when a failure text says a reused idle connection turned out dead before its first
 * reply (the backend had closed it): retry on a fresh one, not a backend failure. */
bool relay_text_is_stale(const char *text);
/* Drops it now (no QUIT); no callback afterwards. */
void relay_abort(struct relay *r);

struct backend *relay_backend(const struct relay *r);
/* EHLO keywords the backend announced, as bits (asked several times per message: a test
 * of a bit, no string compare). */
enum relay_ext {
	RELAY_EXT_PIPELINING = 1u << 0, RELAY_EXT_SIZE = 1u << 1, RELAY_EXT_8BITMIME = 1u << 2,
	RELAY_EXT_SMTPUTF8 = 1u << 3, RELAY_EXT_DSN = 1u << 7, RELAY_EXT_CHUNKING = 1u << 8,
};
bool relay_offers(const struct relay *r, enum relay_ext ext);
bool relay_is_lmtp(const struct relay *r);
/* The message of relay_send_message went as one "BDAT <n> LAST" chunk (the backend offers
 * CHUNKING and no DATA went ahead), until the next message; false for NULL. */
bool relay_sent_bdat(const struct relay *r);

/* env's session ends: the idle connections it gave back are no longer kept for it; one
 * parked beyond pool_size for it stays when the pool has room now, else it is sent QUIT. */
void relay_session_end(struct worker *w, const struct hook_env *env);
/* Worker shutdown: QUIT every idle connection. */
void relay_close_idle(struct worker *w);
/* Closes w's idle connections to an address that left its backend's set (a re-resolution,
 * backendres.h), each backend's logged event=backend_pool_dropped reason="address no longer
 * resolved". Worker's thread. */
void relay_sweep_vanished(struct worker *w);

#endif
