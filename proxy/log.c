/* log.c — key=value event lines to stderr (with syslog priorities when it is the journal)
 * and optionally syslog. */
#include "log.h"
#include "ascii8.h"
#include "domain.h"
#include "logkv.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <sys/stat.h>
#include <sys/time.h>

static volatile int log_level = LOG_LVL_INFO;
static volatile int log_syslog;
static volatile int log_json;
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
const char *const log_format_names[] = { "text", "json", NULL };
void log_set_format(enum log_format fmt) { log_json = fmt == LOG_FORMAT_JSON; }
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

/* Whether the eight octets at p are all log_plain: printable ASCII (ascii8_printable) with
 * no blank, '"' or '\\' (each a zero octet of w ^ that octet; (x - 0x01..) & ~x & 0x80.. is
 * exact for "any"). */
static inline bool log_plain8(const void *p)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t w, b, q, s;

	if (!ascii8_printable(p))
		return false;
	memcpy(&w, p, 8);
	b = w ^ (0x20 * ones), q = w ^ (0x22 * ones), s = w ^ (0x5c * ones);
	return ((((b - ones) & ~b) | ((q - ones) & ~q) | ((s - ones) & ~s)) & highs) == 0;
}

/* Whether v[0..len) may stand unquoted: printable ASCII but blank, '"' and '\\', and
 * well-formed UTF-8 past the C1 controls. A value of eight octets or more that is plain
 * ASCII (nearly every address, host name and queue id) is seen eight octets at a time, its
 * last few as its last eight; the octet loop decides the rest. */
static int log_plain_text(const char *v, size_t len)
{
	const unsigned char *u = (const unsigned char *)v;

	if (len >= 8) {
		size_t i = 0;
		while (i + 8 <= len && log_plain8(u + i))
			i += 8;
		if (i == len || (i + 8 > len && log_plain8(u + len - 8)))
			return 1;
	}
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

/* pre, v[0..len) and post as one value (see log.h); quote: in quotes even when plain. */
static const char *log_val_parts(char *buf, size_t cap, const char *pre, const char *v, size_t len,
    const char *post, bool quote)
{
	size_t np = strlen(pre), nq = strlen(post), k = 0;
	int plain = !quote && np + len + nq > 0 && log_plain_text(v, len);

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
	return log_val_parts(buf, cap, "", v ? v : "", v ? len : 0, "", false);
}

const char *log_val(char *buf, size_t cap, const char *v)
{
	return log_valn(buf, cap, v, v ? strlen(v) : 0);
}

const char *log_addr(char *buf, size_t cap, const char *addr)
{
	return log_val_parts(buf, cap, "<", addr ? addr : "", addr ? strlen(addr) : 0, ">", false);
}

const char *log_val_quoted(char *buf, size_t cap, const char *v, bool quote)
{
	return log_val_parts(buf, cap, "", v ? v : "", v ? strlen(v) : 0, "", quote);
}

/* One line per event: a control octet that reached the text (a value not passed through
 * log_val) is written as \r, \n, \t or \xHH in place, within the line's room; so is an
 * octet of a C1 control or of invalid UTF-8 (well-formed UTF-8 text stays). line[0..len) is
 * the line (NUL-terminated); returns its length after. Printable ASCII, nearly every line
 * whole, is passed over eight octets at a time. */
#if defined(__SSE2__)
/* Whether the 32 octets at p are all printable US-ASCII (0x20-0x7e), 16 at a time: as
 * signed octets those are exactly the ones above 0x1f (0x80-0xff are negative) but 0x7f.
 * SSE2 is part of every x86-64. */
static inline bool log_printable32(const char *p)
{
	const __m128i lo = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
	__m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
	__m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(a, lo), _mm_cmpeq_epi8(a, del)),
	    _mm_or_si128(_mm_cmplt_epi8(b, lo), _mm_cmpeq_epi8(b, del)));
	return _mm_movemask_epi8(bad) == 0;
}
#endif

static size_t log_escape_controls(char *line, size_t len, size_t cap)
{
	for (size_t i = 0; i < len; i++) {
#if defined(__SSE2__)
		/* 32 octets a turn, and a tail of printable ASCII known by the line's last 32
		 * (everything before i is printable or escaped already) */
		while (len - i >= 32 && log_printable32(line + i))
			i += 32;
		if (len >= 32 && len - i < 32 && log_printable32(line + len - 32))
			break;
#endif
		while (len - i >= 8 && ascii8_printable(line + i))
			i += 8;
		if (i == len)
			break;
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
			return i;
		}
		if (len + n - 1 >= cap)
			len = cap - n;    /* the tail goes: the line stays one line */
		memmove(line + i + n, line + i + 1, len - i - 1);
		memcpy(line + i, esc, n);
		len += n - 1;
		line[len] = '\0';
		i += n - 1;
	}
	return len;
}

/* Appends p[0..n) to out (cap octets) at *k, as far as it fits below cap - 1; *k counts
 * what vsnprintf would have written. */
static inline void log_put(char *out, size_t cap, size_t *k, const char *p, size_t n)
{
	if (*k + 1 < cap) {
		size_t room = cap - 1 - *k;
		memcpy(out + *k, p, n < room ? n : room);
	}
	*k += n;
}

/* v in decimal, a '-' first when neg (v is then the magnitude), into the end of b[24]. */
static size_t log_decimal(char b[24], unsigned long long v, bool neg, const char **start)
{
	char *e = b + 24, *q = e;

	do {
		*--q = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	if (neg)
		*--q = '-';
	*start = q;
	return (size_t)(e - q);
}

/* See log.h. */
size_t log_fmt_u64(char b[24], unsigned long long v, const char **start)
{
	return log_decimal(b, v, false, start);
}

/* %.1f of v into out (cap octets, NUL-terminated when cap > 0) as snprintf writes it; its
 * length, or -1 when it does not fit. A multiple of one half below 2^52 (a score of 0, 2.5,
 * -3) is exact and written here; any other value through snprintf. */
static int log_fmt_1f_in(char *out, size_t cap, double v)
{
	double t = v * 2;

	if (t > -4503599627370496.0 && t < 4503599627370496.0 && t == (double)(long long)t) {
		char b[24];
		const char *q;
		long long h = (long long)t;
		unsigned long long m = (unsigned long long)(h < 0 ? -h : h) / 2;
		size_t n = log_decimal(b, m, signbit(v) != 0, &q);
		if (n + 3 > cap)
			return -1;
		memcpy(out, q, n);
		memcpy(out + n, (h % 2 != 0) ? ".5" : ".0", 3);
		return (int)n + 2;
	}
	int r = snprintf(out, cap, "%.1f", v);
	return r < 0 || (size_t)r >= cap ? -1 : r;
}

/* See log.h. */
int log_fmt_1f(char *out, size_t cap, double v)
{
	return log_fmt_1f_in(out, cap, v);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
/* vsnprintf(out, cap, fmt, ap) as glibc writes it, with the common conversions of log
 * formats done here: text between conversions copied, %s, %d, %i, %u with none, l, ll, z
 * or j as length and no flag, width or precision; any other conversion of one argument
 * (%.1f, %02x, %-8s, ...) through snprintf of that conversion alone, and a format with
 * '*' or a conversion this does not know (%p, %n, %m) through vsnprintf whole. Returns
 * what vsnprintf returns (the length the whole output has; out holds its first cap - 1
 * octets and a NUL). */
static int log_vformat(char *out, size_t cap, const char *fmt, va_list ap)
{
	va_list whole;
	size_t k = 0;
	const char *f = fmt;

	va_copy(whole, ap);
	for (;;) {
		const char *pct = strchrnul(f, '%');
		char b[24];
		const char *q;

		log_put(out, cap, &k, f, (size_t)(pct - f));
		if (*pct == '\0')
			break;
		f = pct + 1;
		/* the plain conversions log formats use most: %s, %d, %u, %zu, %ld, %llu ... */
		int len = 0;	/* 0 none, 'H' hh, 'h', 'l', 'q' ll, 'z', 'j', 't', 'L' */
		const char *c = f;
		if (*c == 's') {
			const char *v = va_arg(ap, const char *);
			if (v == NULL)
				v = "(null)";
			log_put(out, cap, &k, v, strlen(v));
			f = c + 1;
			continue;
		}
		if (*c == 'z' || *c == 'j')
			len = *c++;
		else if (c[0] == 'l' && c[1] == 'l')
			len = 'q', c += 2;
		else if (*c == 'l')
			len = *c++;
		if (*c == 'd' || *c == 'i' || *c == 'u') {
			unsigned long long m;
			bool neg = false;
			if (*c != 'u') {
				long long v = len == 0 ? va_arg(ap, int) : len == 'l' ? va_arg(ap, long) :
				    len == 'q' ? va_arg(ap, long long) : len == 'z' ? va_arg(ap, ssize_t) : (long long)va_arg(ap, intmax_t);
				neg = v < 0;
				m = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
			} else {
				m = len == 0 ? va_arg(ap, unsigned) : len == 'l' ? va_arg(ap, unsigned long) :
				    len == 'q' ? va_arg(ap, unsigned long long) : len == 'z' ? va_arg(ap, size_t) : (unsigned long long)va_arg(ap, uintmax_t);
			}
			size_t n = log_decimal(b, m, neg, &q);
			log_put(out, cap, &k, q, n);
			f = c + 1;
			continue;
		}
		if (f[0] == '.' && f[1] == '1' && f[2] == 'f') {
			char tmp[400];
			int r = log_fmt_1f_in(tmp, sizeof(tmp), va_arg(ap, double));
			if (r < 0)
				goto general;
			log_put(out, cap, &k, tmp, (size_t)r);
			f += 3;
			continue;
		}
		len = 0;
		/* flags, width, precision, length: the spec is pct..conversion */
		const char *flags = f;
		while (*f == '-' || *f == '+' || *f == ' ' || *f == '#' || *f == '0' || *f == '\'')
			f++;
		bool plain = f == flags;
		while (*f >= '0' && *f <= '9')
			f++, plain = false;
		if (*f == '.') {
			plain = false;
			f++;
			while (*f >= '0' && *f <= '9')
				f++;
		}
		if (*f == '*')
			goto general;
		if (f[0] == 'h' && f[1] == 'h')
			len = 'H', f += 2;
		else if (f[0] == 'l' && f[1] == 'l')
			len = 'q', f += 2;
		else if (*f == 'h' || *f == 'l' || *f == 'z' || *f == 'j' || *f == 't' || *f == 'L')
			len = *f++;
		char conv = *f++;
		if (conv == '%' && plain && len == 0) {
			log_put(out, cap, &k, "%", 1);
			continue;
		}
		bool sgn = conv == 'd' || conv == 'i';
		bool uns = conv == 'u' || conv == 'x' || conv == 'X' || conv == 'o';
		/* one conversion through snprintf: its spec copied, its argument of its type */
		char spec[32], tmp[128];
		size_t sl = (size_t)(f - pct);
		int r;
		if (sl >= sizeof(spec))
			goto general;
		memcpy(spec, pct, sl);
		spec[sl] = '\0';
		if (conv == 's' && len == 0)
			r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, const char *));
		else if (conv == 'c' && len == 0)
			r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, int));
		else if (sgn || uns) {
			switch (len) {
			case 0: case 'h': case 'H': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, int)); break;
			case 'l': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, long)); break;
			case 'q': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, long long)); break;
			case 'z': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, size_t)); break;
			case 'j': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, intmax_t)); break;
			case 't': r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, ptrdiff_t)); break;
			default: goto general;
			}
		} else if (strchr("feEgGaA", conv) != NULL && conv != '\0' && (len == 0 || len == 'l'))
			r = snprintf(tmp, sizeof(tmp), spec, va_arg(ap, double));
		else
			goto general;
		/* a %c of NUL is an octet of the output as vsnprintf writes it; a longer
		 * conversion than tmp holds: the whole format again */
		if (r < 0 || (size_t)r >= sizeof(tmp))
			goto general;
		log_put(out, cap, &k, tmp, (size_t)r);
	}
	if (cap > 0)
		out[k < cap ? k : cap - 1] = '\0';
	va_end(whole);
	return k > INT_MAX ? -1 : (int)k;
general:;
	int r = vsnprintf(out, cap, fmt, whole);
	va_end(whole);
	return r;
}
#pragma GCC diagnostic pop

/* A line's time stamp up to the second ("2026-12-05T06:34:36."), per thread, formatted
 * again only when the second changes: gmtime_r and the six numbers' formatting once a
 * second instead of once a line. */
static _Thread_local struct {
	time_t sec;
	bool set;
	char text[80];      /* 19 octets in use; room for what the compiler counts */
} log_stamp;

/* "YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ID " into line (cap octets, cap > 64), as the snprintf
 * "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s " writes it; its length. */
static size_t log_head(char *line, size_t cap, const struct timeval *tv, const char *level, const char *id)
{
	size_t nl = strlen(level), ni = strlen(id), k = 19;
	unsigned ms = (unsigned)(tv->tv_usec / 1000);

	if (!log_stamp.set || log_stamp.sec != tv->tv_sec) {
		struct tm tm;

		gmtime_r(&tv->tv_sec, &tm);
		/* a year past 9999 would be wider than 19 octets: the general form */
		if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
			goto general;
		snprintf(log_stamp.text, sizeof(log_stamp.text), "%04d-%02d-%02dT%02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		log_stamp.sec = tv->tv_sec;
		log_stamp.set = true;
	}
	if (k + 6 + nl + 1 + ni + 1 >= cap || ms > 999)
		goto general;
	memcpy(line, log_stamp.text, k);
	line[k++] = '.';
	line[k++] = (char)('0' + ms / 100);
	line[k++] = (char)('0' + ms / 10 % 10);
	line[k++] = (char)('0' + ms % 10);
	line[k++] = 'Z';
	line[k++] = ' ';
	memcpy(line + k, level, nl);
	k += nl;
	line[k++] = ' ';
	memcpy(line + k, id, ni);
	k += ni;
	line[k++] = ' ';
	line[k] = '\0';
	return k;
general:;
	struct tm tm;
	gmtime_r(&tv->tv_sec, &tm);
	int n = snprintf(line, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)(tv->tv_usec / 1000), level, id);
	return n < 0 ? 0 : (size_t)n;
}

/* Writes p[0..n) to standard error in one write where the kernel takes it whole (as an
 * unbuffered stderr's fprintf did): a partial write goes on with the rest, EINTR again. */
static void log_write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* See log.h. */
void log_escape_controls_fuzz(char *line, size_t cap)
{
	log_escape_controls(line, strlen(line), cap);
}

/* A line's room (LOG_LINE_CAP octets with its NUL), with 4 octets before it for the
 * journal's "<N>" and one after it for the newline. */
#define LOG_LINE_CAP 2048

/* log.format: json: the text line line[0..len) (head of n octets: "TS LEVEL ID ", escaped)
 * as one JSON object (logkv_json) and a newline, in one write; "<N>" first for the journal. */
static void log_write_json(enum log_level lvl, const char *line, size_t n, size_t len, const char *idt)
{
	static const char prio[] = { '0' + LOG_DEBUG, '0' + LOG_INFO, '0' + LOG_WARNING, '0' + LOG_ERR };
	struct strbuf b = { 0 };
	char ts[40];
	const char *sp = memchr(line, ' ', n);
	size_t tl = sp ? (size_t)(sp - line) : 0;

	if (tl >= sizeof(ts))
		tl = sizeof(ts) - 1;
	memcpy(ts, line, tl);
	ts[tl] = '\0';
	if (log_to_journal) {
		char p[3] = { '<', prio[lvl], '>' };
		strbuf_append(&b, p, 3);
	}
	logkv_json(&b, ts, level_names[lvl], idt, line + n, len > n ? len - n : 0);
	strbuf_append(&b, "\n", 1);
	log_write_all(b.v, b.len);
	strbuf_free(&b);
}

/* One line: the head, then the text of fmt and *ap (fmt non-NULL) or text[0..tlen) as
 * log_vformat's "%s" of it would put it (as much as fits below the room's last octet),
 * escaped in place, written, and sent to syslog. */
static void log_line(enum log_level lvl, const char *id, const char *fmt, va_list *ap, const char *text,
    size_t tlen)
{
	char buf[4 + LOG_LINE_CAP + 1];
	char *line = buf + 4;
	const size_t cap = LOG_LINE_CAP;
	const char *idt = id && *id ? id : "-";
	struct timeval tv;
	size_t n, len;

	gettimeofday(&tv, NULL);
	n = log_head(line, cap, &tv, level_names[lvl], idt);
	len = n < cap ? n : strlen(line);
	if (n < cap && fmt != NULL) {
		int m = log_vformat(line + n, cap - n, fmt, *ap);
		len = m < 0 ? strlen(line) : (size_t)m < cap - n ? n + (size_t)m : cap - 1;
	} else if (n < cap) {
		size_t m = tlen < cap - 1 - n ? tlen : cap - 1 - n;
		memcpy(line + n, text, m);
		len = n + m;
		line[len] = '\0';
	}
	len = log_escape_controls(line, len, cap);
	static const char prio[] = { '0' + LOG_DEBUG, '0' + LOG_INFO, '0' + LOG_WARNING, '0' + LOG_ERR };
	static const int prio_values[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	pthread_once(&log_journal_once, log_journal_detect);
	/* One write per line so lines from worker threads do not interleave. */
	if (log_json) {
		log_write_json(lvl, line, n < len ? n : len, len, idt);
	} else {
		line[len] = '\n';
		if (log_to_journal) {
			line[-3] = '<';
			line[-2] = prio[lvl];
			line[-1] = '>';
			log_write_all(line - 3, len + 4);
		} else {
			log_write_all(line, len + 1);
		}
		line[len] = '\0';
	}
	/* syslog keeps the text form (its own framing; a syslog server parses key=value) */
	if (log_syslog)
		syslog(prio_values[lvl], "%s", line + n - strlen(idt) - 1);
}

void log_event(enum log_level lvl, const char *id, const char *fmt, ...)
{
	va_list ap;

	if ((int)lvl < log_level)
		return;
	va_start(ap, fmt);
	log_line(lvl, id, fmt, &ap, NULL, 0);
	va_end(ap);
}

/* See log.h. */
void log_event_text(enum log_level lvl, const char *id, const char *text, size_t tlen)
{
	if ((int)lvl < log_level)
		return;
	log_line(lvl, id, NULL, NULL, text, tlen);
}

/* See log.h. */
unsigned long long log_rated_note_at(struct log_rated *r, unsigned long long every_ms,
    unsigned long long now_ms, bool *log_now)
{
	unsigned long long n = atomic_fetch_add(&r->count, 1) + 1;
	unsigned long long last = atomic_load(&r->logged_ms);

	*log_now = (last == 0 || now_ms - last >= every_ms) &&
	    atomic_compare_exchange_strong(&r->logged_ms, &last, now_ms);
	return n;
}

/* See log.h. */
unsigned long long log_rated_note(struct log_rated *r, unsigned long long every_ms, bool *log_now)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* + 1: logged_ms 0 means never, whatever the clock's origin */
	return log_rated_note_at(r, every_ms,
	    (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000 + 1, log_now);
}
