/* conncount.h — process-wide connection accounting: the total (max_connections) and per
 * client IP (max_connections_per_ip), shared by all workers. */
#ifndef MX_CONNCOUNT_H
#define MX_CONNCOUNT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum conncount_result { CONNCOUNT_REFUSED = 0, CONNCOUNT_COUNTED, CONNCOUNT_UNCOUNTED };
/* Counts one more connection from sa (an IPv6 client: its network of prefix_v6,
 * limits.client_ipv6_prefix) unless that would exceed per_ip (0 = unlimited).
 * COUNTED: conncount_release() with the same prefix_v6 must follow. UNCOUNTED: admitted but
 * the table was too crowded to count it; do not release. REFUSED: over the limit. */
enum conncount_result conncount_acquire(const struct sockaddr *sa, long per_ip, long prefix_v6);
void conncount_release(const struct sockaddr *sa, long prefix_v6);
/* Admissions left uncounted since start (each also logged, at most once a minute:
 * event=conncount_crowded). */
unsigned long conncount_uncounted(void);
/* For tests: the home slot of sa's key, and a fixed hash secret in place of the random one
 * drawn at first use (home slots are not computable from outside otherwise). */
uint32_t conncount_home(const struct sockaddr *sa, long prefix_v6);
void conncount_set_key(uint64_t k0, uint64_t k1);
/* Total sessions: increments and returns the new total. */
long conncount_total_add(long delta);
long conncount_total(void);
/* The sessions the process's file descriptors hold (main.c works it out at start from
 * RLIMIT_NOFILE); 0 = no cap beyond limits.max_connections. */
void conncount_set_fd_cap(long cap);
long conncount_fd_cap(void);

#endif
