/* sentinel_watch.h — a Redis store's subscription to its sentinels' `+switch-master`
 * channel: the failover is learned the moment a sentinel announces it, as redis-py, Lettuce
 * and the hiredis-based clients do, not when the old master's connection fails or answers
 * READONLY (writes in between would go to a demoted master).
 *
 * One connection on the store's loop (a non-blocking socket on a uv_poll handle, no request
 * keeps the loop alive), to one sentinel of the URL at a time: connect and handshake (AUTH
 * with the URL's credentials when it has a password, as redis_sentinel_ask does; a refused
 * AUTH is not fatal, the SUBSCRIBE decides) within a deadline, then it waits for messages.
 * Replies are read through hiredis's reader (a parser doing no I/O) bounded to 64 KiB unparsed
 * and redis_reader_bound's sizes. Anything else than the handshake's replies, the subscribe
 * confirmation and `message` arrays of the channel (garbage, an error, a huge bulk) closes the
 * connection; a lost, refused or timed-out one is retried on the next sentinel with back-off
 * 1 s doubling to 30 s (reset by a confirmed subscription). A sentinel host that is a name is
 * resolved on a thread (redis_store_job_start), never on the loop. Not thread-safe: use on
 * the loop's thread. */
#ifndef MX_STORE_SENTINEL_WATCH_H
#define MX_STORE_SENTINEL_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"

struct sentinel_watch;

/* A `+switch-master` message's text: `<master-name> <old-ip> <old-port> <new-ip> <new-port>`. */
struct sentinel_switch {
	char old_host[256], new_host[256];
	int old_port, new_port;
};

/* Parses the message text msg (len octets, no I/O): 1 when it is well formed and names
 * master (sw filled), 0 when well formed for another master, -1 when malformed (not five
 * words, a port out of 1..65535, a host with other characters than a host name's or an
 * address literal's). */
int sentinel_switch_parse(const char *msg, size_t len, const char *master, struct sentinel_switch *sw);

/* Called on the loop's thread for each switch of the watched master; sentinel names the
 * announcing sentinel ("HOST:PORT", for logs). The callback may free the watch. */
typedef void (*sentinel_watch_switch_cb)(void *arg, const struct sentinel_switch *sw,
    const char *sentinel);

/* Starts watching u's master (u->sentinel must be set; copied) on loop; timeout_ms bounds the
 * connect and the handshake (5 x, at least 1 s). store and module name the store in log lines
 * (copied). NULL when out of memory. */
struct sentinel_watch *sentinel_watch_new(uv_loop_t *loop, const struct redis_url *u,
    uint64_t timeout_ms, const char *store, const char *module, int worker,
    sentinel_watch_switch_cb cb, void *arg);
/* Stops: the callback is never called again, the connection closes; memory goes in close
 * callbacks (the loop must run on). NULL is a no-op. */
void sentinel_watch_free(struct sentinel_watch *w);
/* The module name for log lines (copied). */
void sentinel_watch_set_module(struct sentinel_watch *w, const char *module);

/* For tests: whether a subscription is confirmed now; connections made (accepted by a
 * sentinel) and closed for a reply out of protocol or over the bounds since start. */
bool sentinel_watch_is_subscribed(const struct sentinel_watch *w);
void sentinel_watch_stats(const struct sentinel_watch *w, uint64_t *connects, uint64_t *bad_replies);

#endif
