/* smtp_tx.h — the backend side of one SMTP transaction, as its own object (OpenSMTPD's
 * smtp_tx next to its smtp_session).
 *
 * The session's command layer fills in the envelope and the message and, after each
 * command's filters, asks for the step: smtp_tx_mail, smtp_tx_rcpt, smtp_tx_deliver. The
 * transaction picks a backend from the pool, opens a relay to it (relay.c), relays MAIL
 * and RCPT live so the backend's verdicts reach the client, and hands the held message over
 * at the end of data (or writes it into a maildir, or the quarantine). When a backend fails
 * before its final reply (connection lost, timeout, 4xx), the whole transaction is replayed
 * on another, up to backends.max_attempts: MAIL, the accepted RCPTs, then the message.
 *
 * Each step ends with exactly one callback (possibly before the call returns) carrying the
 * reply for the client: a 2xx only after a backend's 2xx (or a finished maildir write);
 * otherwise the backend's own refusal, or a 4xx of ours when no backend took it. The
 * transaction never writes to the client and never runs the filter chain.
 *
 * The envelope lives in the session's hook_env, where modules read it: the transaction
 * sets env->mail_from, mail_params, queue_id (smtp_tx_begin), cur_rcpt (smtp_tx_set_rcpt),
 * appends to env->rcpts (a backend accepted one), sets env->msg (smtp_tx_data_end), applies
 * the modules' envelope changes at delivery, and clears all of it together with the
 * modules' per-transaction outputs in smtp_tx_reset. */
#ifndef MX_SMTP_TX_H
#define MX_SMTP_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "headers.h"
#include "ledger.h"

struct worker;
struct worker_gen;
struct pool;
struct backend;
struct relay;
struct hook_env;
struct rcpt;
struct mx_config;
struct msgbuf;

/* How a step ended: the reply the client gets and what the session does with it. */
struct smtp_tx_result {
	int code;             /* the client's reply code: 2xx, 4xx or 5xx (never 0) */
	const char *text;     /* its text without the code ("2.1.0 Ok"); a backend's multi-line
	                       * reply keeps its lines, joined by CRLF. Valid during the call. */
	const char *reason;   /* a refusal: the outcome word ("backend", "no_backend"); else NULL */
	bool client_error;    /* counts against the client's limits.max_errors */
	bool reusable;        /* when this ends the transaction: its connection may be pooled */
	size_t line_len;      /* > 0: text is one line of this many octets with no CR, LF or NUL
	                       * (mxgate's own texts: the reader need not scan it); 0: not known */
};
/* r and everything it points to are valid during the call only. The callback may reset
 * the transaction and start the next step. */
typedef void (*smtp_tx_done_fn)(void *arg, const struct smtp_tx_result *r);

/* The held message, while the client sends it. */
enum smtp_tx_msg_state {
	SMTP_TX_MSG_OK = 0,
	SMTP_TX_MSG_TOO_BIG,      /* over limits.max_message_size: the rest was counted, not kept */
	SMTP_TX_MSG_WRITE_ERROR,  /* the spool failed: the rest was not kept */
};

/* Embedded in its owner (the session); the fields are the transaction's own. */
struct smtp_tx {
	/* borrowed for the transaction's life (smtp_tx_init) */
	struct worker *w;
	/* the owner's generation, w->gen at smtp_tx_init (a session's: it lives as long as the
	 * session, so a store of its own outlives every request the transaction has out) */
	struct worker_gen *gen;
	struct pool *pool;
	struct hook_env *env;             /* env->cfg: the config */
	void (*drained)(void *arg);       /* after smtp_tx_close: the last pending work ended */
	void *drained_arg;
	/* the backend */
	struct relay *relay;
	struct backend *backend;
	int route;                        /* pool route id of the transaction */
	uint64_t tried;                   /* backends tried for this message (bit per index) */
	uint64_t stale;                   /* backends whose pooled connection turned out dead for
	                                   * this message: the next one to them is fresh */
	int attempts;
	int rcpts_done;                   /* LMTP recipients a failed attempt delivered (left env) */
	/* set by the owner after smtp_tx_init (the quarantine release; NULL for a session):
	 * told each recipient's own reply after the dot (an LMTP server's one per recipient),
	 * before the message's result; r is valid during the call */
	void (*rcpt_result)(void *arg, const struct rcpt *r, int code, const char *text);
	void *rcpt_result_arg;
	char *mail_line;                  /* the MAIL command for the backend (in mail_buf) */
	struct strbuf mail_buf, ahead_buf;  /* the MAIL lines' storage, kept between messages */
	char *rcpt, *rcpt_params;         /* the recipient in flight (env->cur_rcpt), in rcpt_blk */
	/* the envelope's storage, kept between messages (smtp_tx_env_clear): env->mail_params
	 * and env->mail_from as "params\0from\0"; the candidate recipient "addr\0params\0";
	 * env->rcpts' slots (each with its own block, struct rcpt's cap) */
	char *from_blk, *rcpt_blk;
	size_t from_cap, rcpt_cap, rcpts_cap;
	/* the message */
	struct msgbuf *msg;
	struct msgbuf *msg_spare;         /* the last message's buffer, emptied, for the next */
	/* the message as the filters are shown it (env->msg) when msg's header block holds a
	 * sender's copy of a field mxgate owns: msg without those fields, made once at the end
	 * of data (smtp_tx_data_end); NULL when msg has none (env->msg is msg) */
	struct msgbuf *filter_view;
	bool drop_owned;                  /* msg's header block holds a sender's owned field */
	/* set by the owner at the end of data: msg holds the content in its own dot-stuffed
	 * form (dataparse's restuff false; never for BDAT), so it goes out unencoded unless a
	 * module replaced the body */
	bool body_wire;
	/* set by the owner at the end of data: the client sent the message with BDAT (a
	 * backend's refusal worded for chunks then goes to it as it is: bdat_reply_for_data) */
	bool client_bdat;
	uint64_t msg_size;
	enum smtp_tx_msg_state msg_state;
	uint8_t hdr_match;                /* octets of the CRLF CRLF that ends the header block
	                                   * seen so far (2 at the start, 4: complete) */
	bool hdr_told;                    /* smtp_tx_headers_take said so for this message */
	/* set by the owner: the header block's fields mxgate owns are its own (a release from
	 * the quarantine), not left out as a sender's (ownfields.h) */
	bool own_fields_kept;
	size_t hdr_len;                   /* the header block's length once hdr_match is 4 */
	struct strbuf prefix;             /* Received + the header block when edited (or ended
	                                   * for a new body) */
	struct received_cache *received;  /* the Received field's session-constant parts
	                                   * (headers.h), NULL before the first message */
	size_t body_off;                  /* where in the message what follows prefix starts: 0
	                                   * (the header block as it came), or the header
	                                   * block's length */
	/* the step in flight */
	smtp_tx_done_fn done;
	void *done_arg;
	/* establishing a backend transaction (open, MAIL, replay RCPTs) */
	void (*est_done)(struct smtp_tx *tx, int code, const char *text);
	size_t est_rcpt;                  /* replayed RCPTs answered so far */
	size_t est_queued;                /* replayed RCPTs sent with MAIL in one write */
	const char *est_url;              /* the url of the backend whose refusal est_done
	                                   * carries (its refusal's line); NULL: none answered */
	bool mail_sent;                   /* this relay has the transaction's MAIL */
	bool rcpt_queued;                 /* the recipient in flight went with MAIL in one write */
	/* set by the owner before smtp_tx_mail: the client sent more commands behind MAIL (it
	 * pipelines and does not wait for MAIL's reply): MAIL may wait for the first RCPT and
	 * go to the backend with it in one write */
	bool mail_deferrable;
	/* set by the owner before smtp_tx_rcpt: the client sent DATA right behind this RCPT: to
	 * a backend with PIPELINING (and without CHUNKING) DATA goes with it, so the message
	 * needs no round trip for the 354 at the end of data */
	bool data_follows;
	/* the client's next transaction, already held behind this message's final dot
	 * (smtp_tx_set_next): sent ahead with the dot when the relay can take it */
	char *next_from, *next_params;
	char **next_rcpts, **next_rcpt_params;
	size_t next_nrcpts;
	void *next_block;                 /* their storage, kept between messages when small */
	size_t next_cap;
	bool next_data;
	bool ahead_sent;                  /* this message's relay took the next group */
	struct relay *next_relay;         /* ... kept for the next transaction (smtp_tx_begin) */
	int next_resets;
	/* the delivery ledger (ledger.h): the message's digest once computed (the client's
	 * octets), and the keys of the recipients a backend took in this transaction while
	 * others are still owed: they go into the ledger if the client hears 4xx in the end */
	uint8_t ledger_digest[LEDGER_KEY_LEN];
	bool ledger_digested;
	struct smtp_tx_ledger_key { uint8_t key[LEDGER_KEY_LEN]; uint64_t pair; } *ledger_keys;
	size_t ledger_nkeys, ledger_cap;
	struct strbuf ledger_rcpts;       /* their addresses for event=ledger_add: "<a>,<b>" */
	/* a Redis ledger (ledger_redis.h) looked up before the message goes out: the keys it
	 * asks about, then (ledger_nheld) those it holds; quarantine: smtp_tx_deliver's */
	uint8_t (*ledger_held)[LEDGER_KEY_LEN];
	size_t ledger_nheld, ledger_held_cap, ledger_asked;
	bool ledger_quarantine;
	int pending;                      /* relay opens, maildir writes, ledger lookups outstanding */
	bool closed;                      /* the owner went away: nothing more is reported */
};

/* Sets tx up for a session: w (relays, loop), pool (the session's generation), env (the
 * envelope, env->cfg the config). drained(arg) is called once the last pending work ends
 * after smtp_tx_close (never when none was pending at the close). */
void smtp_tx_init(struct smtp_tx *tx, struct worker *w, struct pool *pool, struct hook_env *env,
    void (*drained)(void *arg), void *arg);

/* A queue id (12 characters of Postfix's alphabet and a NUL into q) for message seq of worker
 * at time now, distinct per process by salt (random per process: two daemons, or one
 * restarted within the second, give other ids). Pure; smtp_tx_begin calls it. */
void smtp_tx_queue_id(char q[13], uint64_t now, unsigned worker, uint64_t seq, uint64_t salt);

/* MAIL accepted for filtering: the sender (copied), its parameters and a new queue id; the
 * connection the last message kept for it (smtp_tx_set_next) becomes the transaction's. */
void smtp_tx_begin(struct smtp_tx *tx, const char *from, const char *params);
/* After MAIL's filters: a backend transaction is established (open, MAIL; failover on a
 * dead or failing backend). With routes the backend waits for the first recipient and
 * this answers 250 at once; so it does when mail_deferrable is set (a pipelining client):
 * MAIL then goes with the first RCPT, and a backend's refusal of the sender is the answer
 * to that RCPT (as with routes). */
void smtp_tx_mail(struct smtp_tx *tx, smtp_tx_done_fn cb, void *arg);

/* The candidate recipient (copied) the RCPT filters judge: env->cur_rcpt. */
void smtp_tx_set_rcpt(struct smtp_tx *tx, const char *addr, const char *params);
/* The filters refused it: forgotten. */
void smtp_tx_drop_rcpt(struct smtp_tx *tx);
/* After RCPT's filters: relayed to the backend (established now at the first recipient
 * with routes or a deferred MAIL, or again after a loss, replaying the transaction). To a
 * backend that offers PIPELINING, MAIL, the recipients to replay and this one go in one
 * write (RFC 2920) and each reply is mapped back in order. A 2xx adds it to env->rcpts;
 * either way the candidate is forgotten before cb. */
void smtp_tx_rcpt(struct smtp_tx *tx, smtp_tx_done_fn cb, void *arg);

/* The client's DATA is accepted and nothing of it went with the last RCPT (a lock-step
 * client; data_follows is the pipelining client's way): DATA goes to the backend now, on
 * its own, so its 354 comes back while the client sends the content and the message
 * streams at the end of data with one round trip (the dot's) instead of two. Only on a
 * relay with the transaction's recipients, nothing in flight, no DATA sent already and no
 * CHUNKING (relay_can_data); otherwise nothing happens and the message goes as before.
 * The cost is the owner's to weigh: a message refused after this (end-of-data filters, a
 * limit, the client gone) can only be aborted by closing the backend connection (the reset
 * or close releases it: relay_release), never by a dot; nothing is delivered. A backend's
 * refusal of this DATA is heard at the end of data (DATA is sent again there). */
void smtp_tx_data_early(struct smtp_tx *tx);

/* The DATA phase: a message buffer (-1 when none can be had). */
int smtp_tx_data_open(struct smtp_tx *tx);
/* Appends message content (a dataparse_out_fn: arg is the transaction). Past the size
 * limit or a spool error the rest is counted only. Returns 0. */
int smtp_tx_data_append(void *tx, const char *data, size_t len);
uint64_t smtp_tx_msg_size(const struct smtp_tx *tx);
/* The backend's queue id in its 250 text (the MTAs' wordings: "queued as ID", "OK id=ID",
 * "ID Message accepted for delivery", ...) into qid[64]; "" when it names none or text is
 * NULL. Public for tests. */
void smtp_tx_backend_qid(const char *text, char *qid);
/* Tests: smtp_tx_backend_qid searches every text for the markers, never skipping one that
 * holds none of their last octets (the reference its quick answer must equal). */
extern bool smtp_tx_qid_force_search;
/* The "delivered" line's text (after the head log_event writes), as snprintf(out, cap,
 * smtp_tx_delivered_form, ...) writes it (cut at cap - 1, NUL-terminated; cap > 0); its
 * length. Public for tests. */
extern const char smtp_tx_delivered_form[];
size_t smtp_tx_delivered_text(char *out, size_t cap, const char *queue_id, const char *backend,
    const char *backend_qid, const char *from, size_t nrcpts, unsigned long long size,
    const char *client, double score);
enum smtp_tx_msg_state smtp_tx_msg_state(const struct smtp_tx *tx);
/* SMTP_TX_MSG_WRITE_ERROR's errno (msgbuf_error: ENOSPC when the spool is full), or 0. */
int smtp_tx_msg_error(const struct smtp_tx *tx);
/* Once per message, as soon as the held message's header block is complete (the first
 * empty line has arrived, msgbuf_header_len's rule): true with *hdr (valid until the next
 * append) and *len set; false before, after, and for a message over the size limit or
 * failing the spool. */
bool smtp_tx_headers_take(struct smtp_tx *tx, const char **hdr, size_t *len);
/* The message is complete: modules see it as env->msg, the sender's copies of the fields
 * mxgate owns left out (ownfields.h: a filter is not fooled by them any more than a mailbox
 * is), and as env->msg_sent as it came. A message without such a field is one buffer for
 * both (no copy); one with them is copied once, for every filter. When that copy cannot be
 * made (out of memory, the spool) the message state becomes SMTP_TX_MSG_WRITE_ERROR: the
 * owner tempfails it as any spool failure. */
void smtp_tx_data_end(struct smtp_tx *tx);
/* Before smtp_tx_deliver: the client's next transaction is already held behind the final
 * dot (MAIL from/params, the RCPTs, DATA right behind them when data), and the owner has
 * found that its commands pass their checks and that no module judges the MAIL, RCPT or
 * DATA stages (so nothing can change them before they reach a backend). When the message
 * goes to a backend connection that pipelines (relay_can_ahead), those commands go in the
 * same write as the final dot (RFC 2920) and the connection is kept for the next
 * transaction: smtp_tx_begin takes it over, and MAIL, RCPT and DATA take the replies
 * already on the way instead of a round trip of their own. A transaction that turns out
 * different (a check or a backend refusal on the way) gets a fresh connection; one that
 * never comes drops it (the next reset but one). Copied. */
void smtp_tx_set_next(struct smtp_tx *tx, const char *from, const char *params, const char *const *rcpts,
    const char *const *rcpt_params, size_t nrcpts, bool data);
/* After the end-of-data filters: the modules' envelope and header changes are applied,
 * the outgoing header block is built (Received: first) and the message goes to a backend
 * (replayed elsewhere on failure), or to the quarantine maildir. cb gets 250 "queued as"
 * only after the backend's 250 (LMTP: at least one recipient's, none deferred). */
void smtp_tx_deliver(struct smtp_tx *tx, bool quarantine, smtp_tx_done_fn cb, void *arg);
/* Address comparisons made applying filters' recipient changes at delivery (a count for
 * the unit test that bounds their cost; per thread, never reset). */
extern _Thread_local unsigned long smtp_tx_rcpt_cmps;

/* Ends the transaction: the relay is released (pooled when reusable), the envelope, the
 * message and the modules' per-transaction outputs are cleared. No step may be in flight. */
void smtp_tx_reset(struct smtp_tx *tx, bool reusable);
/* The owner goes away: the relay is let go (RSET and pooled, or QUIT, when nothing is in
 * flight; closed otherwise), no callback comes any more; pending work (an open, a maildir
 * write) ends later and then calls drained. */
void smtp_tx_close(struct smtp_tx *tx);
/* Work outstanding outside the loop's handles: the owner's memory must stay until 0. */
int smtp_tx_pending(const struct smtp_tx *tx);
/* Releases what tx owns, the envelope in env included. */
void smtp_tx_free(struct smtp_tx *tx);

#endif
