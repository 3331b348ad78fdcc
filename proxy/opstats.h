/* opstats.h — what the operator's views (status page, mxgatectl) show beyond the counters:
 *   - per worker, bounded top-K tables (topk.h) of clients by sessions, clients by refusals
 *     and refusal reasons, merged on read;
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

/* ------------------------------------------------------------ reader side */

struct opstats_top {
	struct topk sessions;        /* client IP -> sessions */
	struct topk refusals;        /* client IP -> refusals and tempfails */
	struct topk reasons;         /* "stage/reason" -> refusals and tempfails */
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
