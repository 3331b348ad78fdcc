/* counters.h — the process-wide counters, kept in one place for the metrics endpoint.
 *
 * A fixed set of atomics: bump them from any thread (relaxed ordering, no locks):
 *     counter_inc(COUNTER_MESSAGES_RECEIVED);
 *     counter_add(COUNTER_BYTES_RECEIVED, (long)len);
 *     counter_add(COUNTER_SESSIONS_ACTIVE, -1);     (gauges go both ways)
 *     counter_count_reply(421);                     (-> COUNTER_REPLIES_4XX)
 * Each entry's exposed name is "mxgate_" + counter_name(c). */
#ifndef MX_COUNTERS_H
#define MX_COUNTERS_H

#include <stdatomic.h>
#include <stdbool.h>

enum counter {
	/* client sessions */
	COUNTER_SESSIONS_TOTAL = 0,       /* connections accepted */
	COUNTER_SESSIONS_ACTIVE,          /* gauge: sessions open now */
	COUNTER_SESSIONS_REJECTED_LIMIT,  /* refused before any check: max_connections, per-IP, fd limit, drain */
	COUNTER_SESSIONS_TIMEOUT,         /* closed on command/data timeout */
	COUNTER_PROXY_REFUSED,            /* PROXY header missing/invalid/untrusted */
	COUNTER_TLS_SESSIONS,             /* client TLS handshakes completed */
	COUNTER_TLS_FAILURES,             /* client TLS handshakes failed */
	COUNTER_PREGREET,                 /* clients talking before the greeting */
	COUNTER_AUTH_OK,                  /* SMTP AUTH succeeded */
	COUNTER_AUTH_FAILED,              /* SMTP AUTH refused (535, or 421 past the limit) */
	COUNTER_PROTOCOL_ERRORS,          /* syntax errors, bad sequence, over-long lines */
	COUNTER_BARE_LF,                  /* DATA with bare LF/CR (rejected or normalised) */
	/* envelope */
	COUNTER_RECIPIENTS_ACCEPTED,
	COUNTER_RECIPIENTS_REJECTED,
	/* messages */
	COUNTER_MESSAGES_RECEIVED,        /* end of data reached */
	COUNTER_MESSAGES_DELIVERED,       /* a backend said 250 */
	COUNTER_MESSAGES_REJECTED,        /* 5xx to the client at end of data */
	COUNTER_MESSAGES_TEMPFAILED,      /* 4xx to the client at end of data */
	COUNTER_MESSAGES_DISCARDED,
	COUNTER_MESSAGES_QUARANTINED,
	COUNTER_QUARANTINE_EXPIRED,       /* held files the expiry sweep removed */
	COUNTER_QUARANTINE_FILES_READ,    /* held files' heads read (list, show, lookups by ID) */
	COUNTER_SPOOL_ERRORS,             /* messages that could not be held in spool_dir */
	COUNTER_OPERATOR_REFUSED,         /* /metrics and control clients refused: no descriptor left */
	COUNTER_BYTES_RECEIVED,           /* message bytes from clients */
	COUNTER_BYTES_DELIVERED,          /* message bytes accepted by backends */
	/* replies to clients, by class */
	COUNTER_REPLIES_2XX,
	COUNTER_REPLIES_3XX,
	COUNTER_REPLIES_4XX,
	COUNTER_REPLIES_5XX,
	/* backends */
	COUNTER_BACKEND_CONNECTS,
	COUNTER_BACKEND_FAILURES,         /* connect errors, timeouts, drops, unexpected replies */
	COUNTER_BACKEND_FAILOVERS,        /* transactions replayed on another backend */
	COUNTER_BACKEND_CONNECTIONS_REUSED,
	COUNTER_BACKEND_RESOLVES,         /* backend host names re-resolved (backendres.h) */
	COUNTER_BACKEND_RESOLVE_FAILURES, /* of them: no usable answer, the last addresses kept */
	/* the delivery ledger (ledger.h): recipients, not messages */
	COUNTER_LEDGER_ADDS,              /* remembered: a backend took them, the client heard 4xx */
	COUNTER_LEDGER_HITS,              /* skipped on the client's retry: they have the message */
	COUNTER_LEDGER_EVICTIONS,         /* forgotten before their ttl: max_entries reached */
	/* filters and plugins */
	COUNTER_DNSBL_HITS,
	COUNTER_DNSBL_ERRORS,
	COUNTER_RATELIMIT_HITS,
	COUNTER_SPF_FAIL,
	COUNTER_VIRUSES_FOUND,
	COUNTER_SPAM_FOUND,
	COUNTER_PLUGIN_ERRORS,            /* timeouts / failures of milter, clamd, spamd, plugins */
	/* outcomes as the operator sees them (opstats.h): every refusal of a connection,
	 * sender, recipient or message, whatever refused it */
	COUNTER_REFUSALS,                 /* 5xx */
	COUNTER_TEMPFAILS,                /* 4xx */
	COUNTER__COUNT
};

/* The storage; use the functions below. */
extern atomic_long counter_values[COUNTER__COUNT];

/* Adds n (may be negative for gauges). Thread-safe. Out-of-range c is ignored. */
void counter_add(enum counter c, long n);
static inline void counter_inc(enum counter c)
{
	if ((unsigned)c < COUNTER__COUNT)
		atomic_fetch_add_explicit(&counter_values[c], 1, memory_order_relaxed);
}
long counter_get(enum counter c);
/* Counts an SMTP reply sent to a client by its class (2xx..5xx; others ignored). */
void counter_count_reply(int code);
/* Exposed name without the "mxgate_" prefix ("sessions_total", "sessions_active"); counters
 * end in _total, gauges do not. Static string; "" for an out-of-range c. */
const char *counter_name(enum counter c);
/* One line of help text for # HELP. Static string. */
const char *counter_help(enum counter c);
/* true for gauges (values that go down), false for monotonic counters. */
bool counter_is_gauge(enum counter c);
/* Sets every counter to 0 (tests). */
void counter_reset_all(void);

/* Connections turned away before a session served them, by reason: the labelled counter
 * mxgate_connections_refused_total{reason="..."} (every reason exposed from the start), in
 * /status.json's connections_refused and in `mxgatectl status`. Any thread. */
enum conn_refusal {
	CONN_REFUSED_MAX_CONNECTIONS = 0,   /* limits.max_connections, all workers together */
	CONN_REFUSED_MAX_CONNECTIONS_PER_IP,/* limits.max_connections_per_ip */
	CONN_REFUSED_DRAINING,              /* accepted while the worker stops (SIGTERM) */
	CONN_REFUSED_ACCEPT_ERROR,          /* accept(2) failed, the kernel dropped the connection */
	CONN_REFUSED_FD_LIMIT,              /* past the sessions RLIMIT_NOFILE holds (conncount_fd_cap) */
	CONN_REFUSED__COUNT
};
#define COUNTER_CONN_REFUSED_NAME "connections_refused_total"
void counter_conn_refused(enum conn_refusal r);
long counter_conn_refused_get(enum conn_refusal r);
/* The reason's label value ("max_connections_per_ip"); "" out of range. */
const char *counter_conn_refused_reason(enum conn_refusal r);
/* Their sum. */
long counter_conn_refused_total(void);

#endif
