/* redis.h — the Redis store: one asynchronous connection on a worker's libuv loop (hiredis),
 * used by ratelimit, reputation and greylist (and any module keeping shared state in Redis).
 *
 * hiredis is driven by a small libuv adapter of our own (the stock one ignores poll errors).
 * Every request has its own timer (hiredis 0.14 has no async timeout): when it fires the
 * caller gets a NULL reply at once, the connection is treated as broken, dropped and
 * re-established with backoff (1 s doubling to 30 s). Reads made before the store's very
 * first connection is up (at start, after a reload: a redis-sentinel:// store's ask of its
 * sentinels, the connect, AUTH/SELECT) wait for it, each within its own deadline, at most
 * 10000 of them (the write queue's bound), and once the handshake is answered leave with
 * the writes made meanwhile in the order all were issued (counted: store_stats.h's
 * reads_waited, read_wait_timeouts; after an outage too, a read issued while the writes
 * queued during it are still waiting goes behind them); during an outage requests fail
 * immediately (return -1) so callers fall back without waiting — reads; writes
 * (redis_store_write) wait in a bounded queue and are sent when it is back. An outage is
 * logged once (`event=redis_down store=URL`) and its end once (`event=redis_up`).
 * A server that cannot serve the store now is as one that went away: the handshake's ROLE
 * says a replica (or a sentinel), or a reply is READONLY (a master demoted by a failover
 * while our connection stayed on it), MASTERDOWN or LOADING: the connection is dropped
 * (reason=replica|readonly|masterdown|loading), the request that got it fails (a read: a
 * NULL reply) or stays queued (a write), and the next connect reaches the new master when
 * the address moved. A redis-sentinel:// store asks its sentinels for the master's address
 * before each connect (a job off the loop; event=redis_master when it changed), and
 * subscribes on one of them to +switch-master (sentinel_watch.h): a message naming its
 * master is logged (event=redis_switch), counted (mxgate_store_sentinel_switches_total) and
 * drops the connection (reason=sentinel_switch) for an ask at once, unless the store is up
 * on the new address already.
 * Lua scripts are registered once, loaded with SCRIPT LOAD on every (re)connect and run
 * with EVALSHA, falling back to EVAL on NOSCRIPT. Not thread-safe: one store per loop. */
#ifndef MX_STORE_REDIS_H
#define MX_STORE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <hiredis/hiredis.h>

struct redis_store;
struct redis_req;

/* reply is NULL when Redis is unreachable, timed out or the store is being freed; an error
 * reply (REDIS_REPLY_ERROR) is passed as is. Borrowed: valid only during the call. Called
 * on the loop thread, at most once, never from inside redis_store_command/eval. */
typedef void (*redis_store_reply_cb)(void *arg, const redisReply *reply);

#define REDIS_SENTINELS_MAX 8
#define REDIS_URL_SHOWN_MAX 2400      /* redis_url_shown's longest text, its NUL included */

struct redis_addr { char host[256]; int port; };

/* A store URL taken apart. Two forms:
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]          one server (port 6379, db 0);
 *   redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]
 *     Redis Sentinel (Lettuce's scheme; the master's name in the path, not a #fragment):
 *     up to 8 sentinels (port 26379), asked in turn for MASTER's address; USER and
 *     PASSWORD are the master's and the sentinels' (a sentinel without a password refuses
 *     the AUTH and is asked all the same).
 * IPv6 hosts in brackets. */
struct redis_url {
	bool sentinel;
	char host[256];               /* redis://: the server; sentinel: "" */
	int port, db;
	char user[128], password[128];
	int nsentinels;
	struct redis_addr sentinels[REDIS_SENTINELS_MAX];
	char master[128];             /* printable, no blank */
};

/* 0, or -1 when url is neither form or malformed (u then undefined). */
int redis_url_parse(const char *url, struct redis_url *u);
/* u without its password, as logged: "redis://HOST:PORT/DB", "redis-sentinel://H:P,H:P/MASTER/DB". */
void redis_url_shown(const struct redis_url *u, char *buf, size_t cap);
/* Whether spec is a store URL of either form that parses (store_kind_of's STORE_REDIS). */
bool redis_url_is_store(const char *spec);
/* Parses "redis://[:password@]host[:port][/db]" (port 6379, db 0 by default). 0 or -1
 * (a redis-sentinel:// URL too: it names no one server). */
int redis_store_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db,
    char *password, size_t pwlen);
/* Blocking (a thread's: a job's, a pool's): asks u's sentinels in turn for its master's
 * address (SENTINEL get-master-addr-by-name), each connect and reply within timeout_ms (and
 * a job's deadline, see redis_store_job_start). 0 with host and *port, or -1 with err (the
 * last sentinel's failure). */
int redis_sentinel_ask(const struct redis_url *u, uint64_t timeout_ms, char *host, size_t hostlen,
    int *port, char *err, size_t errlen);

/* A store for url on loop; connecting starts at once. timeout_ms bounds every request (and
 * the connect at 5x, at least 1 s). worker is only for log lines. NULL on a bad URL or out
 * of memory (logged). */
struct redis_store *redis_store_new(uv_loop_t *loop, const char *url, uint64_t timeout_ms,
    int worker);
/* Drops the connection; outstanding requests get a NULL reply (callers should cancel theirs
 * first); memory goes in close callbacks, so the loop must run on. NULL is a no-op. */
void redis_store_free(struct redis_store *rs);

/* Registers a Lua script (call before requests; the text is borrowed, must outlive rs).
 * Returns its index for redis_store_eval, or -1. */
int redis_store_add_script(struct redis_store *rs, const char *lua);

bool redis_store_is_up(const struct redis_store *rs);
const char *redis_store_url(const struct redis_store *rs);

/* Sends a command (argv copied). On success returns 0 and, when reqp is not NULL, a handle
 * valid until cb is called or the request is cancelled. Returns -1 when the store is down
 * or the send failed: cb will not be called. cb may be NULL (fire and forget). */
int redis_store_command(struct redis_store *rs, int argc, const char **argv,
    const size_t *argvlen, redis_store_reply_cb cb, void *arg, struct redis_req **reqp);
/* EVALSHA script keys... args... ; like redis_store_command. lens may be NULL (strlen).
 * Any number of keys and arguments (a message's tokens in one call). */
int redis_store_eval(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_reply_cb cb, void *arg,
    struct redis_req **reqp);

/* status 0: Redis applied the write (a reply that is not an error); -1: it did not or we do
 * not know (an error reply: logged at most once a minute; given up: see below; the store
 * was freed first). Called on the loop thread, at most once, never from inside
 * redis_store_write. */
typedef void (*redis_store_done_cb)(void *arg, int status);

/* A state update that must not be lost to an outage: EVALSHA script keys... args... (script
 * -1: keys_then_args is a plain command of nkeys + nargs words, "ZREM" k m). The write goes
 * into the store's queue and is sent at once while Redis is up, else when the connection
 * comes back (after the scripts are loaded), oldest first, 64 unanswered at most. A write
 * whose reply never came (the connection dropped, a deadline passed) may or may not have
 * been applied: it is sent again on the next connection — so a write is applied at least
 * once unless it is given up, and may be applied twice after a lost reply: make writes
 * idempotent or tolerant of that (counters with decay, ZREM, a first-seen time kept as the
 * minimum).
 * Given up, counted in mxgate_store_writes_dropped_total{store="redis:NAME"} and logged once a
 * minute (event=redis_write_dropped reason=...): a write over the queue's bound (10000 writes
 * or 16 MiB; then redis_store_write returns -1), one whose own deadline passed 3 times
 * (no_reply: a server that chokes on it; the writes behind it are not charged), or one
 * still queued when its store is freed and no sibling takes it (store_closed: a shutdown
 * during an outage). A store freed by a reload hands its queue to the new store for the same
 * server on the same loop, and lets the writes in flight get their replies first.
 * Returns 0 when the write is queued (done, when not NULL, is called exactly once, later), or
 * -1 (bad arguments, the queue full, the store closing: done is never called). Not
 * cancellable: arg must stay valid until done, or pass done NULL (fire and forget). */
int redis_store_write(struct redis_store *rs, int script, int nkeys, int nargs,
    const char **keys_then_args, const size_t *lens, redis_store_done_cb done, void *arg);
/* Forgets key in the writes not applied yet, before the caller deletes it (the delete then
 * undoes every earlier write): a write waiting in the queue, or sent and not answered (its
 * copy for a resend), loses the key; one left with nothing to write is discarded (never sent
 * again; done, when set, gets -1 before this returns — it must not free rs). Cutting one key
 * out of a script write assumes the script updates each key on its own (a loop over KEYS
 * with the same ARGV); a plain command (script -1) with key among any of its words goes
 * whole. Not counted as dropped. Returns how many writes named key. On the loop's thread. */
size_t redis_store_write_forget(struct redis_store *rs, const char *key, size_t klen);
/* Called on the loop thread each time a connection comes up (the first one and every one after
 * an outage: a Redis restarted empty is one), once the scripts are loaded and the writes that
 * waited are sent: the place to put back state the server may have lost (the concurrency
 * slots of live sessions). cb may queue requests and writes; it must not free rs. NULL: none. */
typedef void (*redis_store_up_cb)(void *arg);
void redis_store_set_up_cb(struct redis_store *rs, redis_store_up_cb cb, void *arg);
/* The user of the store for logs and the metric label ("reputation"); "redis" by default. */
void redis_store_set_name(struct redis_store *rs, const char *name);
/* The bound of the write queue in writes (10000 by default; for tests). */
void redis_store_set_queue_limit(struct redis_store *rs, size_t max_writes);
/* Writes waiting now, resent after a lost reply, and given up, since the store was made. */
void redis_store_write_stats(const struct redis_store *rs, size_t *queued, uint64_t *retried,
    uint64_t *dropped);
/* The caller loses interest: cb will not be called. req becomes invalid. */
void redis_req_cancel(struct redis_req *req);

/* Bounds what c's replies may make hiredis allocate: an array of at most 65536 elements, a
 * string of at most 8 MB (larger: an out-of-memory error, the connection is to be dropped).
 * Every connection of ours to a Redis server gets it; thread-safe. */
void redis_store_bound_reader(redisContext *c);
/* The same bounds for a reader of one's own (redisReaderCreate's). NULL is a no-op. */
void redis_reader_bound(redisReader *r);

/* A blocking connection for a control verb, off the main loop (redis_store_job_start; not a
 * worker's store): a redis-sentinel:// URL's master asked first (redis_sentinel_ask), connect,
 * AUTH (user and password as the URL gives them) and SELECT, every step and every later
 * command bounded by timeout_ms. NULL with err set on failure. Free with redisFree. Its
 * commands go through redis_store_sync_* below, not hiredis's redisCommand. */
redisContext *redis_store_connect_sync(const char *url, uint64_t timeout_ms, char *err,
    size_t errlen);

/* A blocking connection's command and reply, bounded: hiredis's own (redisCommand,
 * redisGetReply) buffer a string still arriving until it is whole (a server that announces
 * "$99999999999" and streams never ends the call, its per-read timeout never fires) — these
 * give up once more than 8 MB of the reply is unparsed or the reply took longer than the
 * connection's timeout (redis_store_connect_sync's, or redisConnectWithTimeout's): NULL /
 * REDIS_ERR, c->err set ("reply too large" / "reply too slow"); the connection is then of
 * no more use (free it). The command forms are redisCommand's and redisCommandArgv's. */
redisReply *redis_store_sync_command(redisContext *c, const char *fmt, ...);
redisReply *redis_store_sync_argv(redisContext *c, int argc, const char **argv,
    const size_t *argvlen);
/* The next reply of a pipeline (after redisAppendCommand): REDIS_OK with *reply, or REDIS_ERR. */
int redis_store_sync_reply(redisContext *c, redisReply **reply);

/* Blocking work off a loop: work(arg) runs on a thread of its own — a control verb's
 * connection from redis_store_connect_sync, every step bounded by its timeout, so the loop
 * (the main loop: the control socket, the metrics listener, a reload, the drain watch) never
 * waits for Redis — then done(arg) on loop's thread once work has returned. Call on loop's
 * thread; work must not touch loop's handles nor anything the loop frees meanwhile (copy
 * the config it needs). 0, or -1 when no thread could be made (neither is called). The loop
 * runs on until done: a pending job keeps it alive. The job's Redis work has one deadline
 * besides each step's timeout: 8 x the timeout of its first redis_store_connect_sync, at
 * least 2 s, from that connect; a step waiting past it fails (NULL / REDIS_ERR) with errstr
 * "no reply to CMD within the verb's deadline (N ms in all: 8 x the T ms timeout)", and a
 * later connect of the job gets only what is left. */
int redis_store_job_start(uv_loop_t *loop, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* Requests sent / timed out / failed fast since start (for tests and benchmarks). */
void redis_store_stats(const struct redis_store *rs, uint64_t *sent, uint64_t *timeouts,
    uint64_t *failfast);

#endif
