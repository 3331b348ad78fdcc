/* sdnotify.h — the systemd service notification protocol without libsystemd: one datagram
 * per state change on the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for an
 * abstract socket), as sd_notify(3) describes: "READY=1", "RELOADING=1\nMONOTONIC_USEC=...",
 * "STOPPING=1", "STATUS=...", "WATCHDOG=1".
 *
 * Not under systemd (no $NOTIFY_SOCKET) every call is a no-op. Call from one thread (the
 * main loop's). */
#ifndef MX_SDNOTIFY_H
#define MX_SDNOTIFY_H

#include <stdint.h>
#include <uv.h>

/* Sends state (several "KEY=VALUE" lines separated by '\n'). Returns 1 when sent, 0 when
 * there is no $NOTIFY_SOCKET, -1 on error (bad address, send failure; logged once). */
int sdnotify_send(const char *state);
int sdnotify_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "RELOADING=1" with MONOTONIC_USEC (systemd 253 Type=notify-reload wants it; older ones
 * ignore it). */
int sdnotify_reloading(void);
/* The watchdog interval systemd asked for ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or
 * ours), in microseconds; 0 when none. */
uint64_t sdnotify_watchdog_usec(void);
/* Starts a timer on loop that sends WATCHDOG=1 at half the interval (nothing without a
 * watchdog). timer must stay valid until uv_close'd by the caller; returns 1 when armed. */
int sdnotify_watchdog_start(uv_loop_t *loop, uv_timer_t *timer);

#endif
