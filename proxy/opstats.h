/* opstats.h — what the operator's views (status page, mxgatectl) show beyond the counters:
 *   - per worker, bounded top-K tables (topk.h) of clients by sessions, clients by refusals
 *     and refusal reasons, and of sender domains, recipients and recipient domains by
 *     recipients accepted and refused at RCPT, messages delivered and spam found, merged on
 *     read;
 *   - on the main thread, a history of the last hour in minute buckets (accepted, refused,
 *     tempfailed, DNS list errors) and a messages-per-second rate, both fed from the
 *     counters (counters.h) by a periodic tick.
 *
 * Worker side: opstats_note_* are called on the worker's own thread. Each worker's tables
 * sit behind that worker's own mutex, which is only ever held for an O(TOPK_CAP) update or
 * copy: the reader (main loop) never waits on a worker's loop, only on a memcpy. */
#ifndef MX_OPSTATS_H
#define MX_OPSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "topk.h"

/* ------------------------------------------------------------ worker side */

/* A client session began (after the PROXY header, before any check). */
void opstats_note_session(int worker, const char *client_ip);
/* The gateway refused something of client_ip with a 5xx (tempfail false) or a 4xx: a
 * connection, sender, recipient or message. stage: "connect", "rcpt", ...; reason: the
 * verdict's log word ("dnsbl", "ratelimit", "backend", ...). Counts it in
 * COUNTER_REFUSALS / COUNTER_TEMPFAILS and in the worker's top-K tables. */
void opstats_note_refusal(int worker, const char *client_ip, const char *stage, const char *reason,
    bool tempfail);

/* What the mail tables are keyed by (opstats_top.mail's first index). Keys are kept lower
 * case (ASCII; a domain as domain_normalize gives it) and cut to TOPK_KEY_MAX - 1 octets. */
enum opstats_mail_key {
	OPS_BY_SENDER_DOMAIN = 0,    /* the envelope sender's domain; "<>": the null sender; "-":
	                              * an address without a domain */
	OPS_BY_RCPT,                 /* the recipient's address */
	OPS_BY_RCPT_DOMAIN,          /* the recipient's domain ("-": none, as "postmaster") */
	OPS__NKEYS
};
/* What they count (opstats_top.mail's second index). */
enum opstats_mail_count {
	OPS_RCPT_ACCEPTED = 0,       /* a RCPT answered 2xx (a backend took it) */
	OPS_RCPT_REFUSED,            /* a RCPT answered 4xx or 5xx, whoever refused it */
	OPS_MSG_DELIVERED,           /* a message the client got 250 for from a backend's 250
	                              * (as messages_delivered_total): per message for the
	                              * sender's domain, per recipient the backend took (an LMTP
	                              * server's 5xx after the dot for one is not counted; its
	                              * 250 before a replay for the others is) */
	OPS_MSG_SPAM,                /* a message found spam (as spam_found_total), whatever
	                              * became of it: per recipient, per message for the sender */
	OPS__NCOUNTS
};

/* A RCPT of a transaction from sender ("" for <>) was answered: accepted (2xx) or refused.
 * Counted by the sender's domain, the recipient and its domain. NULL sender or rcpt: not
 * counted (no transaction, or no address parsed). */
void opstats_note_rcpt(int worker, const char *sender, const char *rcpt, bool accepted);

struct rcpt;
/* A message from sender to the n recipients at rcpts (hook.h: their addr) was delivered
 * (what: OPS_MSG_DELIVERED) or found spam (OPS_MSG_SPAM): counted once for the sender's
 * domain, once for each recipient and its domain. Delivered: only the recipients whose
 * status (the backend's reply after the dot) is 2xx; an LMTP server may refuse some. */
void opstats_note_message(int worker, const char *sender, const struct rcpt *rcpts, size_t n,
    enum opstats_mail_count what);
/* As opstats_note_message for the recipients alone, the sender's domain not counted: the
 * recipients an LMTP server took before the message was replayed for the others (they
 * leave the envelope; the message is counted once, at its outcome). */
void opstats_note_rcpts(int worker, const struct rcpt *rcpts, size_t n, enum opstats_mail_count what);

/* A refusal the log shows, written and counted in one call: the one place an
 * `event=reject` or `event=tempfail` line is made, so that the count by event, stage and
 * reason (mxgate_refusal_events_total, opstats_refusal_events) is the number of lines
 * whatever the log level. */
struct opstats_refusal {
	int worker;                  /* the worker's index (its top-K tables) */
	const char *id;              /* the session id on the line; NULL: none ("-") */
	const char *client_ip;       /* for the top-K tables (client= is in the caller's fields) */
	const char *stage;           /* connect, helo, mail, rcpt, data, bdat, xclient ... */
	const char *reason;          /* the check's word; NULL or "": "filter" */
	bool tempfail;               /* event=tempfail, else event=reject; when code is set,
	                              * the code's class decides instead */
	int code;                    /* the reply's code: a 4xx is event=tempfail and counts in
	                              * tempfails_total, others event=reject in refusals_total;
	                              * 0: as tempfail says */
	bool repeat;                 /* a refusal decided (and counted) before, given again (a
	                              * connect refusal answered at each MAIL): its line counts by
	                              * reason, not again as a decision (opstats_note_refusal) */
	enum log_level level;        /* 0 (debug) is taken as info: a refusal is never debug */
};
/* Writes `event=E stage=S reason=R` and, when fmt gives any, a blank and the caller's fields
 * (client=, code=, reply=, ... in the caller's order), at r->level; counts the line by event,
 * stage and reason, and unless r->repeat the decision (opstats_note_refusal). Any thread. */
void opstats_refusal(const struct opstats_refusal *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The lines counted so far, one row per (event, stage, reason), in the order first seen.
 * Bounded: reasons are words of the code, but also of plugins. Once OPSTATS_EVENT_ROWS - 2
 * rows are taken, a line of a new key counts in its event's row of stage and reason
 * "other"; words are kept cut to OPSTATS_WORD_MAX - 1 octets. */
#define OPSTATS_EVENT_ROWS 256
#define OPSTATS_WORD_MAX 64
struct opstats_event_row {
	bool tempfail;
	char stage[OPSTATS_WORD_MAX];
	char reason[OPSTATS_WORD_MAX];
	long count;
};
/* Copies up to max rows into out; returns the number copied. Any thread. */
size_t opstats_refusal_events(struct opstats_event_row *out, size_t max);

/* ------------------------------------------------------------ reader side */

struct opstats_top {
	struct topk sessions;        /* client IP -> sessions */
	struct topk refusals;        /* client IP -> refusals and tempfails */
	struct topk reasons;         /* "stage/reason" -> refusals and tempfails */
	struct topk mail[OPS__NKEYS][OPS__NCOUNTS];   /* sender domain, recipient, recipient
	                                              * domain -> what opstats_mail_count says */
};
/* Merges every worker's tables into *out (initialised here). Any thread. */
void opstats_collect(struct opstats_top *out);
/* Forgets everything (tests). */
void opstats_reset(void);

/* ------------------------------------------------------------ history (one thread) */

enum opstats_series {
	OPS_ACCEPTED = 0,            /* messages a backend took (messages_delivered_total) */
	OPS_REFUSED,                 /* refusals_total */
	OPS_TEMPFAILED,              /* tempfails_total */
	OPS_DNSBL_ERRORS,            /* dnsbl_errors_total */
	OPS__NSERIES
};
#define OPS_MINUTES 60
#define OPS_RATE_SAMPLES 16

struct ophist {
	uint64_t minute;                         /* current minute (ms / 60000); 0 = no tick yet */
	long base[OPS__NSERIES];                 /* counter values when the current minute began */
	long last[OPS__NSERIES];                 /* values at the last tick */
	struct { uint64_t minute; long v[OPS__NSERIES]; } b[OPS_MINUTES];
	struct { uint64_t ms; long received; } rate[OPS_RATE_SAMPLES];
	unsigned nrate;
};

/* Records the counter values cur[] seen at now_ms (monotonic or wall clock, but one of them
 * throughout) and received (messages_received_total, for the rate). Ticks may be irregular
 * and far apart: minutes without a tick read as zero. */
void ophist_tick(struct ophist *h, uint64_t now_ms, const long cur[OPS__NSERIES], long received);
/* The last OPS_MINUTES minutes up to the one of the last tick, oldest first; the last row
 * is the current, partial minute. Returns the number of rows written (OPS_MINUTES once
 * ticked, 0 before). */
size_t ophist_minutes(const struct ophist *h, long out[OPS_MINUTES][OPS__NSERIES]);
/* Messages received per second over the last ~10 s of ticks (0 with fewer than 2 ticks). */
double ophist_rate(const struct ophist *h);
/* The counter values the history is fed from, in series order (counters.h). */
void ophist_read_counters(long cur[OPS__NSERIES], long *received);

#endif
