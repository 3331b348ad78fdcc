/* sdnotify.c — sd_notify(3) datagrams by hand (see sdnotify.h). */
#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int sdnotify_warned;

/* Fills sun from $NOTIFY_SOCKET: "/path" or "@abstract". Returns the address length, 0 when
 * unset, -1 when malformed. */
static int sdnotify_address(struct sockaddr_un *sun)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t n;

	if (e == NULL || *e == '\0')
		return 0;
	n = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || n >= sizeof(sun->sun_path) || n < 2)
		return -1;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, e, n);
	if (e[0] == '@')
		sun->sun_path[0] = '\0';	/* Linux abstract namespace: no NUL terminator counted */
	else
		n++;
	return (int)(offsetof(struct sockaddr_un, sun_path) + n);
}

int sdnotify_send(const char *state)
{
	struct sockaddr_un sun;
	int len = sdnotify_address(&sun), fd, rc = 1;

	if (len == 0)
		return 0;
	if (len < 0) {
		if (!sdnotify_warned++)
			log_event(LOG_LVL_WARNING, NULL, "event=sdnotify_error reason=\"bad NOTIFY_SOCKET\"");
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, (socklen_t)len) < 0) {
		if (!sdnotify_warned++)
			log_event(LOG_LVL_WARNING, NULL, "event=sdnotify_error reason=\"%s\"", strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

int sdnotify_printf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sdnotify_send(buf);
}

int sdnotify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return sdnotify_printf("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
}

uint64_t sdnotify_watchdog_usec(void)
{
	const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (us == NULL || *us == '\0')
		return 0;
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(us, &end, 10);
	if (errno || *end || v == 0)
		return 0;
	return v;
}

static void sdnotify_watchdog_cb(uv_timer_t *t)
{
	(void)t;
	sdnotify_send("WATCHDOG=1");
}

int sdnotify_watchdog_start(uv_loop_t *loop, uv_timer_t *timer)
{
	uint64_t us = sdnotify_watchdog_usec();
	uint64_t ms = us / 2000;

	uv_timer_init(loop, timer);
	if (us == 0 || getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	if (ms == 0)
		ms = 1;
	uv_timer_start(timer, sdnotify_watchdog_cb, ms, ms);
	return 1;
}
