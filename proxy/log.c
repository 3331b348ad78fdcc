/* log.c — key=value event lines to stderr (with syslog priorities when it is the journal)
 * and optionally syslog. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/time.h>

static volatile int log_level = LOG_LVL_INFO;
static volatile int log_syslog;
static pthread_once_t log_journal_once = PTHREAD_ONCE_INIT;
static int log_to_journal;

/* systemd connects standard error to the journal and says so in $JOURNAL_STREAM
 * ("DEVICE:INODE" of that stream). Then each line starts with its syslog priority ("<6>"),
 * which journald turns into the entry's level (sd-daemon(3)). */
static void log_journal_detect(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		log_to_journal = 1;
}

void log_set_level(enum log_level lvl) { log_level = lvl; }
enum log_level log_get_level(void) { return (enum log_level)log_level; }

const char *const log_facility_names[] = { "mail", "daemon", "local0", "local1", "local2",
	"local3", "local4", "local5", "local6", "local7", NULL };
static const int log_facility_values[] = { LOG_MAIL, LOG_DAEMON, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
	LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7 };
static int log_facility = -1;

void log_enable_syslog_facility(int on, int facility)
{
	if (facility < 0 || facility > LOG_FAC_LOCAL7)
		facility = LOG_FAC_MAIL;
	if (on && (!log_syslog || facility != log_facility)) {
		if (log_syslog)
			closelog();
		openlog("mxgate", LOG_PID | LOG_NDELAY, log_facility_values[facility]);
		log_facility = facility;
	}
	log_syslog = on;
}

void log_enable_syslog(int on)
{
	log_enable_syslog_facility(on, LOG_FAC_MAIL);
}

static const char *const level_names[] = { "debug", "info", "warning", "error" };

void log_event(enum log_level lvl, const char *id, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if ((int)lvl < log_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)(tv.tv_usec / 1000), level_names[lvl], id && *id ? id : "-");
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	pthread_once(&log_journal_once, log_journal_detect);
	/* One write per line so lines from worker threads do not interleave. */
	if (log_to_journal)
		fprintf(stderr, "<%d>%s\n", prio[lvl], line);
	else
		fprintf(stderr, "%s\n", line);
	if (log_syslog)
		syslog(prio[lvl], "%s", line + n - (int)strlen(id && *id ? id : "-") - 1);
}
