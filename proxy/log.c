/* log.c — key=value event lines to stderr (with syslog priorities when it is the journal)
 * and optionally syslog. */
#include "log.h"
#include "domain.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
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

static char *log_path;

/* Opens path for appending, in place of fd 2 (see log.h). */
static int log_file_take(const char *path, long uid, long gid)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	int saved;

	if (fd < 0)
		return -1;
	if (uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) != 0)
		goto fail;
	fflush(stderr);
	if (fd != STDERR_FILENO && dup2(fd, STDERR_FILENO) < 0)   /* dup2 clears FD_CLOEXEC */
		goto fail;
	if (fd != STDERR_FILENO)
		close(fd);
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int log_open_file(const char *path, long uid, long gid)
{
	char *copy = strdup(path);

	if (copy == NULL)
		return -1;
	if (log_file_take(path, uid, gid) != 0) {
		int saved = errno;
		free(copy);
		errno = saved;
		return -1;
	}
	/* standard error is no longer the journal's stream: no "<6>" prefixes in the file */
	pthread_once(&log_journal_once, log_journal_detect);
	log_to_journal = 0;
	free(log_path);
	log_path = copy;
	return 0;
}

int log_reopen_file(void)
{
	if (log_path == NULL)
		return 1;
	return log_file_take(log_path, -1, -1);
}

const char *log_file_path(void)
{
	return log_path;
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

/* An ASCII octet that may stand in an unquoted value. */
static int log_plain(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '"' && c != '\\';
}

/* The length of the well-formed UTF-8 sequence of two to four octets at s[0..n)
 * (domain_utf8_seq, RFC 3629 4) that is not a C1 control (U+0080-U+009F, which a terminal
 * reads as CSI, OSC and the like; smtp_reply_printable's rule); 0 for anything else: a raw
 * 0x80-0xff octet outside such a sequence is escaped as \xHH, not written to the log. */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] >= 0x80 ? domain_utf8_seq(s, n) : 0;

	return k == 2 && s[0] == 0xc2 && s[1] < 0xa0 ? 0 : k;
}

/* Whether v[0..len) may stand unquoted: printable ASCII but blank, '"' and '\\', and
 * well-formed UTF-8 past the C1 controls. */
static int log_plain_text(const char *v, size_t len)
{
	const unsigned char *u = (const unsigned char *)v;

	for (size_t i = 0; i < len; i++) {
		size_t n;

		if (log_plain(u[i]))
			continue;
		if (u[i] < 0x80 || (n = log_utf8_len(u + i, len - i)) == 0)
			return 0;
		i += n - 1;
	}
	return 1;
}

/* pre, v[0..len) and post as one value (see log.h). */
static const char *log_val_parts(char *buf, size_t cap, const char *pre, const char *v, size_t len,
    const char *post)
{
	size_t np = strlen(pre), nq = strlen(post), k = 0;
	int plain = np + len + nq > 0 && log_plain_text(v, len);

	if (plain && np + len + nq < cap) {
		memcpy(buf, pre, np);
		memcpy(buf + np, v, len);
		memcpy(buf + np + len, post, nq + 1);
		return buf;
	}
	/* quoted: room is kept for an escape (4), "..." (3), the closing quote and NUL */
	buf[k++] = '"';
	for (size_t part = 0; part < 3; part++) {
		const char *s = part == 0 ? pre : part == 1 ? v : post;
		size_t n = part == 0 ? np : part == 1 ? len : nq;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			size_t u8 = c >= 0x80 ? log_utf8_len((const unsigned char *)s + i, n - i) : 0;
			if (k + 4 + 3 + 2 > cap) {
				memcpy(buf + k, "...", 3);
				k += 3;
				goto done;
			}
			if (u8 > 0) {              /* a character whole, never cut in two */
				memcpy(buf + k, s + i, u8);
				k += u8;
				i += u8 - 1;
			} else if (c == '"' || c == '\\') {
				buf[k++] = '\\';
				buf[k++] = (char)c;
			} else if (c == '\r' || c == '\n' || c == '\t') {
				buf[k++] = '\\';
				buf[k++] = c == '\r' ? 'r' : c == '\n' ? 'n' : 't';
			} else if (c < ' ' || c >= 0x7f) {
				k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
			} else {
				buf[k++] = (char)c;
			}
		}
	}
done:
	buf[k++] = '"';
	buf[k] = '\0';
	return buf;
}

const char *log_valn(char *buf, size_t cap, const char *v, size_t len)
{
	return log_val_parts(buf, cap, "", v ? v : "", v ? len : 0, "");
}

const char *log_val(char *buf, size_t cap, const char *v)
{
	return log_valn(buf, cap, v, v ? strlen(v) : 0);
}

const char *log_addr(char *buf, size_t cap, const char *addr)
{
	return log_val_parts(buf, cap, "<", addr ? addr : "", addr ? strlen(addr) : 0, ">");
}

/* One line per event: a control octet that reached the text (a value not passed through
 * log_val) is written as \r, \n, \t or \xHH in place, within the line's room; so is an
 * octet of a C1 control or of invalid UTF-8 (well-formed UTF-8 text stays). */
static void log_escape_controls(char *line, size_t cap)
{
	size_t len = strlen(line);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		char esc[5];
		size_t n;

		if (c >= ' ' && c < 0x7f)
			continue;
		if (c >= 0x80 && (n = log_utf8_len((const unsigned char *)line + i, len - i)) > 0) {
			i += n - 1;
			continue;
		}
		if (c == '\r' || c == '\n' || c == '\t')
			n = (size_t)snprintf(esc, sizeof(esc), "\\%c", c == '\r' ? 'r' : c == '\n' ? 'n' : 't');
		else
			n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
		if (i + n >= cap) {
			line[i] = '\0';
			return;
		}
		if (len + n - 1 >= cap)
			len = cap - n;    /* the tail goes: the line stays one line */
		memmove(line + i + n, line + i + 1, len - i - 1);
		memcpy(line + i, esc, n);
		len += n - 1;
		line[len] = '\0';
		i += n - 1;
	}
}

/* See log.h. */
void log_escape_controls_fuzz(char *line, size_t cap)
{
	log_escape_controls(line, cap);
}

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
	log_escape_controls(line, sizeof(line));
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

/* See log.h. */
unsigned long long log_rated_note(struct log_rated *r, unsigned long long every_ms, bool *log_now)
{
	struct timespec ts;
	unsigned long long n = atomic_fetch_add(&r->count, 1) + 1;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long now = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000 + 1;
	unsigned long long last = atomic_load(&r->logged_ms);
	*log_now = (last == 0 || now - last >= every_ms) && atomic_compare_exchange_strong(&r->logged_ms, &last, now);
	return n;
}
