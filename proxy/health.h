/* health.h — active, SMTP-aware health checks of a backend pool (proxy/backend.h).
 *
 * Runs on one loop (the main thread's). Each check of an SMTP/LMTP backend connects, reads
 * the 220 greeting, sends EHLO (LHLO for LMTP) and expects 250, then QUITs, all within the
 * timeout; a maildir backend is checked for writability in the thread pool. Results update
 * the backend's health (backend_health(): for a backend made by a pool its URL's record,
 * which every generation's pool reads, so a reload carries the state over by itself and
 * one checker, the current generation's, probes each URL). Workers read it lock-free. */
#ifndef MX_HEALTH_H
#define MX_HEALTH_H

#include <stdint.h>
#include <uv.h>

struct pool;
struct health;
struct tls_ctx;

/* Starts checking every backend of pool (pool->servers and pool->extra) on loop every
 * interval_ms, the first round right away. A check has timeout_ms in all. Records
 * latency_us (time to the EHLO reply); a failure increments fails and after pool->fall
 * of them sets up = 0 (logs `event=backend_down backend=<url> reason="..."`); while
 * down, pool->rise consecutive successes set up = 1, fails = 0 (logs
 * `event=backend_up`). hostname (NULL/"" = the system's) is copied. pool must outlive the checker until
 * health_stop. With pool->require_tls (implied by tls_verify) an smtp:// or lmtp:// check also
 * sends STARTTLS, wants 220 and completes the TLS handshake with tls_client (the context
 * deliveries use, a reference is taken; with pool->tls_verify the certificate must name the
 * server's tls_verify_name or host), as a delivery must: a server whose certificate is
 * refused fails its checks ("health check: TLS handshake: certificate verify failed: ...
 * during tls"); tls_client NULL: no TLS in the checks. Returns NULL on allocation or libuv failure. */
struct health *health_start(uv_loop_t *loop, struct pool *pool, uint64_t interval_ms,
    uint64_t timeout_ms, const char *hostname, struct tls_ctx *tls_client);
/* Calls cb(arg) once on the loop when every backend has its first check result (pass or
 * fail): the daemon is ready to say so only then. With no backends, on the next check
 * tick. Replaces an earlier registration; NULL h ignored. */
void health_on_first_round(struct health *h, void (*cb)(void *arg), void *arg);
/* Stops: the pool is not touched after this returns; handles close asynchronously and
 * the memory is freed in their close callbacks (run the loop to let them finish). NULL ok. */
void health_stop(struct health *h);

#endif
