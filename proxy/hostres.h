/* hostres.h — the host names of a config's backend URLs (servers, routes, quarantine),
 * resolved with c-ares, all at once, within one deadline.
 *
 * Config loading runs on the main thread (-t, the start, a reload: never on a worker loop),
 * so the set is resolved there with a poll() loop of its own; the deadline bounds it
 * whatever the DNS servers do (a TCP server that accepts and never answers included), and
 * each name is asked once per load: the pool (backend.c) reads the set the config check
 * filled.
 *
 *     struct hostres_set *s = hostres_set_new();
 *     hostres_set_add(s, "mx1.example.org");          // numeric literals need no query
 *     hostres_set_resolve(s, "127.0.0.1:53", 2000, 2); // "" = /etc/resolv.conf
 *     const struct hostres_entry *e = hostres_set_find(s, "mx1.example.org");
 *     ... e->err == NULL: e->n addresses in e->sa[] (port 0)
 *     hostres_set_free(s);
 */
#ifndef MX_HOSTRES_H
#define MX_HOSTRES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Addresses kept per name (the first ones, in the resolver's order: RFC 6724). */
#define HOSTRES_MAX_ADDRS 8

struct hostres_entry {
	char *name;                                   /* as given (compared without case) */
	const char *err;                              /* NULL: resolved; else a static reason */
	size_t n;                                     /* addresses in sa[] */
	struct sockaddr_storage sa[HOSTRES_MAX_ADDRS];/* port 0 */
	socklen_t salen[HOSTRES_MAX_ADDRS];
	uint32_t ttl;                                 /* the smallest TTL of the answer's records
	                                               * kept (s); 0: none known (a numeric name,
	                                               * /etc/hosts) */
	int done;                                     /* internal: answered or given up */
};

struct hostres_set {
	struct hostres_entry *v;
	size_t n, cap;
	atomic_bool cancelled;        /* hostres_set_cancel: the resolution gives up */
};

struct hostres_set *hostres_set_new(void);
/* Adds name once (any case). A numeric IPv4/IPv6 address is resolved at once. 0 or -1 (out
 * of memory). */
int hostres_set_add(struct hostres_set *s, const char *name);
/* Resolves every name not resolved yet: A and AAAA (and /etc/hosts), all queries at once,
 * servers "ip:port,..." ("" or NULL: /etc/resolv.conf), the whole within timeout_ms (tries
 * attempts per server in it). A name without an answer in time gets err "no answer from the
 * DNS within ...". Never blocks longer than timeout_ms (plus one poll step). */
void hostres_set_resolve(struct hostres_set *s, const char *servers, uint64_t timeout_ms, int tries);
/* From another thread: a hostres_set_resolve running on s gives up within
 * HOSTRES_CANCEL_MS (its pending names get err "resolution cancelled"), and a later one
 * asks nothing. The daemon's SIGTERM abandons a reload's resolution so (main.c). */
#define HOSTRES_CANCEL_MS 50
void hostres_set_cancel(struct hostres_set *s);
/* The entry for name (any case), or NULL when it was never added. */
const struct hostres_entry *hostres_set_find(const struct hostres_set *s, const char *name);
/* Takes the results (addresses or error) of src's resolved names into the same names of s
 * not resolved yet, so that hostres_set_resolve asks only for the others: a reload resolves
 * its names off the main loop first (main.c), then loads the file with them. NULL src ok. */
void hostres_set_adopt(struct hostres_set *s, const struct hostres_set *src);
/* Ends every name of s not resolved yet with why (a static text), asking no DNS. */
void hostres_set_fail_pending(struct hostres_set *s, const char *why);
void hostres_set_free(struct hostres_set *s);
/* n addresses as text without the port, comma-separated ("10.0.0.7,10.0.0.9"), into
 * out[0..cap) (cut at an address that does not fit). */
void hostres_addrs_format(const struct sockaddr_storage *sa, size_t n, char *out, size_t cap);

#endif
