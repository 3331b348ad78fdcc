/* log.h — one line per event: session id first, then key=value pairs.
 *
 *   log_event(LOG_INFO, sess_id, "event=reject stage=rcpt reason=dnsbl list=%s", zone);
 *
 * Lines go to stderr (and syslog when configured). Thread-safe. Never log bodies or AUTH data. */
#ifndef MX_LOG_H
#define MX_LOG_H

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR };

/* Sets the minimum level printed (default LOG_LVL_INFO). */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Turns syslog on (ident "mxgate", facility mail) in addition to stderr. */
void log_enable_syslog(int on);

/* Prints "<id> <formatted>" at lvl. id may be NULL or "" for process events ("-" is printed). */
void log_event(enum log_level lvl, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline int log_is_debug(void) { return log_get_level() == LOG_LVL_DEBUG; }

#endif
