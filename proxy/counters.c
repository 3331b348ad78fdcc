/* counters.c — the counter table: storage plus name, help and type of each entry. */
#include "counters.h"

atomic_long counter_values[COUNTER__COUNT];
static atomic_long counter_conn_refused_values[CONN_REFUSED__COUNT];

struct counter_desc {
	const char *name;
	const char *help;
	bool gauge;
};

/* Indexed by enum counter; designated initialisers keep the table and the enum in step. */
static const struct counter_desc counter_table[COUNTER__COUNT] = {
	[COUNTER_SESSIONS_TOTAL] = { "sessions_total", "Client connections accepted.", false },
	[COUNTER_SESSIONS_ACTIVE] = { "sessions_active", "Client sessions open now.", true },
	[COUNTER_SESSIONS_REJECTED_LIMIT] = { "sessions_rejected_limit_total",
	    "Client connections refused with 421 before any check: max_connections, max_connections_per_ip, the file limit, the drain (reasons: connections_refused_total).", false },
	[COUNTER_SESSIONS_TIMEOUT] = { "sessions_timeout_total",
	    "Client sessions closed on a command or data timeout.", false },
	[COUNTER_PROXY_REFUSED] = { "proxy_refused_total",
	    "Connections refused for a missing, invalid or untrusted PROXY header.", false },
	[COUNTER_TLS_SESSIONS] = { "tls_sessions_total", "Client TLS handshakes completed.", false },
	[COUNTER_TLS_FAILURES] = { "tls_failures_total", "Client TLS handshakes failed.", false },
	[COUNTER_PREGREET] = { "pregreet_total", "Clients that talked before the greeting.", false },
	[COUNTER_AUTH_OK] = { "auth_success_total", "SMTP AUTH exchanges that succeeded.", false },
	[COUNTER_AUTH_FAILED] = { "auth_failed_total", "SMTP AUTH exchanges refused for bad credentials.", false },
	[COUNTER_PROTOCOL_ERRORS] = { "protocol_errors_total",
	    "SMTP protocol errors by clients (syntax, sequence, over-long lines).", false },
	[COUNTER_BARE_LF] = { "bare_lf_total", "Messages with a bare LF or CR in DATA.", false },
	[COUNTER_RECIPIENTS_ACCEPTED] = { "recipients_accepted_total", "RCPT TO commands accepted.", false },
	[COUNTER_RECIPIENTS_REJECTED] = { "recipients_rejected_total", "RCPT TO commands refused.", false },
	[COUNTER_MESSAGES_RECEIVED] = { "messages_received_total",
	    "Messages received up to the end of data.", false },
	[COUNTER_MESSAGES_DELIVERED] = { "messages_delivered_total",
	    "Messages accepted by a backend.", false },
	[COUNTER_MESSAGES_REJECTED] = { "messages_rejected_total",
	    "Messages refused with 5xx at the end of data.", false },
	[COUNTER_MESSAGES_TEMPFAILED] = { "messages_tempfailed_total",
	    "Messages refused with 4xx at the end of data.", false },
	[COUNTER_MESSAGES_DISCARDED] = { "messages_discarded_total",
	    "Messages accepted and silently dropped.", false },
	[COUNTER_MESSAGES_QUARANTINED] = { "messages_quarantined_total",
	    "Messages diverted to quarantine.", false },
	[COUNTER_QUARANTINE_EXPIRED] = { "quarantine_expired_total",
	    "Held messages removed from the quarantine by its expiry (quarantine.expire).", false },
	[COUNTER_QUARANTINE_FILES_READ] = { "quarantine_files_read_total",
	    "Held files whose envelope block was read: listings, and lookups by ID of files without the ID in their name.",
	    false },
	[COUNTER_SPOOL_ERRORS] = { "spool_errors_total",
	    "Messages that could not be held in limits.spool_dir (full, unwritable, removed): 4xx at the end of data, "
	    "or at MAIL when SIZE= asked for half or more of its free space.", false },
	[COUNTER_OPERATOR_REFUSED] = { "operator_refused_total",
	    "Metrics and control connections answered 503 or ERR and closed: no file descriptor left.", false },
	[COUNTER_BYTES_RECEIVED] = { "bytes_received_total", "Message bytes received from clients.", false },
	[COUNTER_BYTES_DELIVERED] = { "bytes_delivered_total", "Message bytes accepted by backends.", false },
	[COUNTER_REPLIES_2XX] = { "replies_2xx_total", "2xx replies sent to clients.", false },
	[COUNTER_REPLIES_3XX] = { "replies_3xx_total", "3xx replies sent to clients.", false },
	[COUNTER_REPLIES_4XX] = { "replies_4xx_total", "4xx replies sent to clients.", false },
	[COUNTER_REPLIES_5XX] = { "replies_5xx_total", "5xx replies sent to clients.", false },
	[COUNTER_BACKEND_CONNECTS] = { "backend_connects_total", "Connections opened to backends.", false },
	[COUNTER_BACKEND_FAILURES] = { "backend_failures_total",
	    "Backend delivery steps that failed (connect, timeout, drop, unexpected reply).", false },
	[COUNTER_BACKEND_FAILOVERS] = { "backend_failovers_total",
	    "Transactions replayed on another backend.", false },
	[COUNTER_BACKEND_CONNECTIONS_REUSED] = { "backend_connections_reused_total",
	    "Transactions sent over an already open backend connection.", false },
	[COUNTER_BACKEND_RESOLVES] = { "backend_resolves_total",
	    "Backend and filter peer (plugins[].address) host names resolved again while running (backends.resolve_interval).", false },
	[COUNTER_BACKEND_RESOLVE_FAILURES] = { "backend_resolve_failures_total",
	    "Re-resolutions of a backend or filter peer host name without a usable answer (the last addresses kept).", false },
	[COUNTER_LEDGER_ADDS] = { "ledger_adds_total",
	    "Recipients remembered in the delivery ledger: a backend took the message for them, the client heard 4xx.", false },
	[COUNTER_LEDGER_HITS] = { "ledger_hits_total",
	    "Recipients of a client's retry answered from the delivery ledger, not sent again.", false },
	[COUNTER_LEDGER_EVICTIONS] = { "ledger_evictions_total",
	    "Recipients dropped from the delivery ledger before their ttl (backends.retry_ledger.max_entries).", false },
	[COUNTER_DNSBL_HITS] = { "dnsbl_hits_total", "DNS list lookups that listed the client.", false },
	[COUNTER_DNSBL_ERRORS] = { "dnsbl_errors_total", "DNS list lookups that failed or timed out.", false },
	[COUNTER_RATELIMIT_HITS] = { "ratelimit_hits_total", "Rate limit rules that fired.", false },
	[COUNTER_SPF_FAIL] = { "spf_fail_total", "SPF checks with a fail or softfail result.", false },
	[COUNTER_VIRUSES_FOUND] = { "viruses_found_total", "Messages an antivirus scanner flagged.", false },
	[COUNTER_SPAM_FOUND] = { "spam_found_total", "Messages scored as spam.", false },
	[COUNTER_PLUGIN_ERRORS] = { "plugin_errors_total",
	    "Content filter calls that failed or timed out (on_error applied).", false },
	[COUNTER_REFUSALS] = { "refusals_total",
	    "Connections, senders, recipients or messages refused with 5xx (filters, limits, backends).", false },
	[COUNTER_TEMPFAILS] = { "tempfails_total",
	    "Connections, senders, recipients or messages deferred with 4xx (filters, limits, no backend).", false },
};

static inline bool counter_valid(enum counter c)
{
	return (unsigned)c < COUNTER__COUNT;
}

/* See counters.h. */
void counter_add(enum counter c, long n)
{
	if (counter_valid(c))
		atomic_fetch_add_explicit(&counter_values[c], n, memory_order_relaxed);
}

long counter_get(enum counter c)
{
	return counter_valid(c) ? atomic_load_explicit(&counter_values[c], memory_order_relaxed) : 0;
}

void counter_count_reply(int code)
{
	if (code >= 200 && code < 600)
		counter_inc((enum counter)(COUNTER_REPLIES_2XX + code / 100 - 2));
}

const char *counter_name(enum counter c)
{
	return counter_valid(c) && counter_table[c].name ? counter_table[c].name : "";
}

const char *counter_help(enum counter c)
{
	return counter_valid(c) && counter_table[c].help ? counter_table[c].help : "";
}

bool counter_is_gauge(enum counter c)
{
	return counter_valid(c) && counter_table[c].gauge;
}

void counter_reset_all(void)
{
	for (int i = 0; i < COUNTER__COUNT; i++)
		atomic_store_explicit(&counter_values[i], 0, memory_order_relaxed);
	for (int i = 0; i < CONN_REFUSED__COUNT; i++)
		atomic_store_explicit(&counter_conn_refused_values[i], 0, memory_order_relaxed);
}

/* ------------------------------------------------------------ connections refused */

static const char *const counter_conn_refused_reasons[CONN_REFUSED__COUNT] = {
	[CONN_REFUSED_MAX_CONNECTIONS] = "max_connections",
	[CONN_REFUSED_MAX_CONNECTIONS_PER_IP] = "max_connections_per_ip",
	[CONN_REFUSED_DRAINING] = "draining",
	[CONN_REFUSED_ACCEPT_ERROR] = "accept_error",
	[CONN_REFUSED_FD_LIMIT] = "fd_limit",
};

void counter_conn_refused(enum conn_refusal r)
{
	if ((unsigned)r < CONN_REFUSED__COUNT)
		atomic_fetch_add_explicit(&counter_conn_refused_values[r], 1, memory_order_relaxed);
}

long counter_conn_refused_get(enum conn_refusal r)
{
	return (unsigned)r < CONN_REFUSED__COUNT ?
	    atomic_load_explicit(&counter_conn_refused_values[r], memory_order_relaxed) : 0;
}

const char *counter_conn_refused_reason(enum conn_refusal r)
{
	return (unsigned)r < CONN_REFUSED__COUNT ? counter_conn_refused_reasons[r] : "";
}

long counter_conn_refused_total(void)
{
	long n = 0;
	for (int i = 0; i < CONN_REFUSED__COUNT; i++)
		n += counter_conn_refused_get((enum conn_refusal)i);
	return n;
}
