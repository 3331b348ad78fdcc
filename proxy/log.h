/* log.h — one line per event: session id first, then key=value pairs.
 *
 *   log_event(LOG_INFO, sess_id, "event=reject stage=rcpt reason=dnsbl list=%s", zone);
 *
 * Lines go to stderr (and syslog when configured). Thread-safe. Never log bodies or AUTH data. */
#ifndef MX_LOG_H
#define MX_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR };

/* Sets the minimum level printed (default LOG_LVL_INFO). */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* log.format: text (default) or json: one JSON object a line on standard error or log.file
 * (logkv.h: the text line's fields); syslog stays text. */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };
extern const char *const log_format_names[];   /* "text", "json", NULL */
void log_set_format(enum log_format fmt);
/* Syslog facilities a config may name (log.facility), in log_facility_names order. */
enum log_facility { LOG_FAC_MAIL = 0, LOG_FAC_DAEMON, LOG_FAC_LOCAL0, LOG_FAC_LOCAL1, LOG_FAC_LOCAL2,
	LOG_FAC_LOCAL3, LOG_FAC_LOCAL4, LOG_FAC_LOCAL5, LOG_FAC_LOCAL6, LOG_FAC_LOCAL7 };
extern const char *const log_facility_names[];   /* "mail", "daemon", "local0" ... NULL */
/* Turns syslog on (ident "mxgate", facility mail) in addition to stderr. */
void log_enable_syslog(int on);
/* The same with a facility (enum log_facility); a change reopens the connection. */
void log_enable_syslog_facility(int on, int facility);

/* log.file: the lines go to path (appended; made with mode 0640 when missing) instead of
 * standard error. The file takes the place of fd 2, so whatever else writes to standard
 * error (a sanitizer, libuv's diagnostics) lands there too. uid/gid >= 0: the file is given
 * to them (the `user:` mxgate drops to, who must be able to reopen it). Returns 0, or -1
 * with errno (nothing changed). Call once at start, before the threads. */
int log_open_file(const char *path, long uid, long gid);
/* Reopens the file of log_open_file at its path (logrotate moved it away): 0 done, 1 no
 * log file is set, -1 with errno (the old file stays in use). Main thread only. */
int log_reopen_file(void);
/* The path of log_open_file, or NULL. */
const char *log_file_path(void);

/* Prints "<id> <formatted>" at lvl. id may be NULL or "" for process events ("-" is printed). */
void log_event(enum log_level lvl, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* log_event(lvl, id, "%s", text) for a text of tlen octets with no NUL, built by the caller
 * (the one line every delivered message writes, smtp_tx.c): the same line, cut and escaped
 * alike, without a format to read. */
void log_event_text(enum log_level lvl, const char *id, const char *text, size_t tlen);
/* Pieces of such a text as log_event's formats write them: v in decimal at the end of b[24],
 * *start its first octet, its length ("%llu"); %.1f of v into out (cap octets, NUL-terminated),
 * its length, or -1 when it does not fit ("%.1f" as snprintf writes it). */
size_t log_fmt_u64(char b[24], unsigned long long v, const char **start);
int log_fmt_1f(char *out, size_t cap, double v);

/* Values of key=value pairs that come from outside (addresses, HELO names, user names,
 * backend replies): v as it is when it is non-empty and has no blank, control octet, '"' or
 * '\' and is UTF-8 past the C1 controls; else in double quotes with \" \\ \r \n \t and \xHH
 * escapes (well-formed UTF-8 stays as it is; a C1 control, raw or in UTF-8, and every octet
 * that is no UTF-8 is \xHH, so no peer's text reaches a terminal as a control sequence),
 * cut to fit cap with "..." before the closing quote. log_addr does the same for the address
 * in angle brackets: from=<a@b.example>, from="<\"a b\"@b.example>". They return buf;
 * cap >= 16. */
const char *log_val(char *buf, size_t cap, const char *v);
const char *log_valn(char *buf, size_t cap, const char *v, size_t len);
const char *log_addr(char *buf, size_t cap, const char *addr);
/* log_val, and in quotes also when quote is set though v is plain: a list value whose items
 * hold '=' or the list's separator (event=bypass checks=). */
const char *log_val_quoted(char *buf, size_t cap, const char *v, bool quote);
/* log_event's in-place escaping of a line (a C0 or C1 control, or an octet of no UTF-8, as
 * \r \n \t or \xHH; the tail cut to stay within cap), for tests/fuzz/fuzz_log_val.c:
 * line is a string in a buffer of cap octets. */
void log_escape_controls_fuzz(char *line, size_t cap);

/* A cause of failure counted, and logged at most once every every_ms (the first at once),
 * so a dependency that is down fills no disk: zero-initialised (a static one is ready). */
struct log_rated {
	atomic_ullong count;        /* every one noted (a metric's value) */
	atomic_ullong logged_ms;    /* monotonic ms + 1 of the last one let through; 0: never */
};
/* Counts one more and returns the count; *log_now says whether this one is to be logged
 * (the first, then the first one every_ms or more after the last logged). Thread-safe: of
 * threads noting at once, one is let through. */
unsigned long long log_rated_note(struct log_rated *r, unsigned long long every_ms, bool *log_now);
/* The same at now_ms (monotonic ms, above 0) rather than the clock's time: log_rated_note's
 * arithmetic, for a caller (a unit test) that must not depend on how fast it runs. */
unsigned long long log_rated_note_at(struct log_rated *r, unsigned long long every_ms,
    unsigned long long now_ms, bool *log_now);

static inline int log_is_debug(void) { return log_get_level() == LOG_LVL_DEBUG; }

#endif
