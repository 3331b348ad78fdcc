/* pconn.h — one stream connection to a content-filter peer (TCP or unix socket) on a libuv
 * loop, under the scanner client (clamd, spamd, rspamd: scanner.h) and the milter client.
 *
 * Events arrive through one callback until pconn_close(); after that none arrives, and the
 * memory is released once libuv has closed the handle. */
#ifndef MX_PCONN_H
#define MX_PCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* A parsed peer address: "127.0.0.1:3310", "[::1]:783", "inet:127.0.0.1:8891",
 * "inet:8891@127.0.0.1" (sendmail form), "inet6:...", "unix:/path", "local:/path", "/path". */
/* Addresses kept of a peer's host name (= HOSTRES_MAX_ADDRS, proxy/hostres.h). */
#define PCONN_MAX_ADDRS 8

struct pconn_addr {
	bool is_unix;
	char path[108];
	struct sockaddr_storage sa;   /* the first address */
	/* the host name's other addresses, in the resolver's order, port set: a connection that
	 * cannot be made to one goes to the next (pconn_new), as a backend's (relay.c) */
	struct sockaddr_storage more[PCONN_MAX_ADDRS - 1];
	size_t nmore;
	/* how long a TCP connect to one address may take before the next is tried (the last
	 * one's failure: PCONN_ERROR, UV_ETIMEDOUT); 0: no bound of its own (the caller's
	 * timeout bounds them all, and a dead first address eats it). Not set by the parser. */
	uint64_t connect_ms;
	/* the host name the addresses are of ("" for an IP address, localhost, a unix socket):
	 * pconn_new takes its addresses as published then (pconn_names_publish_all), so a
	 * re-resolution (proxy/backendres.h) reaches the next connection */
	char name[256];                 /* a DNS name: at most 253 octets */
};

/* Parses s; 0 or -1 with *why. A host name (other than localhost) is taken from the names
 * the config load resolved (pconn_names_publish); one it did not is an error. */
int pconn_addr_parse(const char *s, struct pconn_addr *out, const char **why);
/* The host name of address s that needs a look-up (not an IP address, localhost or a unix
 * socket) into host: 1, else 0. */
int pconn_addr_host(const char *s, char *host, size_t hostlen);
/* The config load's answer for name (its first address; the port is the address's own). */
void pconn_names_publish(const char *name, const struct sockaddr *sa, socklen_t len);
/* The same with every address of the name (n up to PCONN_MAX_ADDRS, the rest ignored): 1
 * when the set changed (the order alone is no change; a name not known before is one), else
 * 0. The next connection to the name takes them (pconn_new); one open stays where it is. */
int pconn_names_publish_all(const char *name, const struct sockaddr_storage *sa, size_t n);
/* name's addresses as last published into sa (at most cap; port 0): how many, 0 unknown. */
size_t pconn_names_get(const char *name, struct sockaddr_storage *sa, size_t cap);
/* On (this thread) while a config check creates plugin instances: a host name passes as it
 * is; the load resolves it afterwards. */
void pconn_names_checking(bool on);

enum pconn_event {
	PCONN_CONNECTED = 0,
	PCONN_DATA,       /* data/len valid during the callback */
	PCONN_EOF,        /* the peer closed its side */
	PCONN_ERROR,      /* connect/read/write failure; err is the libuv code */
};

struct pconn;
typedef void (*pconn_event_cb)(struct pconn *c, enum pconn_event ev, const char *data,
    size_t len, int err, void *arg);

/* Starts connecting; returns NULL on immediate failure (bad loop state / memory). A
 * connection that cannot be made to addr->sa (refused, unreachable, or not made within
 * addr->connect_ms) goes to addr->more[0], and so on; PCONN_ERROR when the last one fails.
 * The caller's own timeout bounds them all. */
struct pconn *pconn_new(uv_loop_t *loop, const struct pconn_addr *addr, pconn_event_cb cb,
    void *arg);
/* Queues bytes. When owned is non-NULL it is free()d after the write completes (data may
 * point into it); otherwise data must stay valid until the write completes or the
 * connection is closed. 0 or -1. */
int pconn_write(struct pconn *c, const void *data, size_t len, void *owned);
/* True when c is connected to an address of a host name (pconn_addr.name) that the name no
 * longer has as last published (pconn_names_publish_all: a re-resolution, backendres.h);
 * false for an IP address, a unix socket, a name not known, or before it is connected. A
 * connection kept across messages (a milter's, for its session) is made again to the new
 * address at the next transaction. */
bool pconn_address_left(const struct pconn *c);
/* Bytes queued and not yet written. */
size_t pconn_write_queue(const struct pconn *c);
/* Lets queued writes drain (bounded by the peer reading them), then closes; no events
 * afterwards. NULL is a no-op. */
void pconn_finish(struct pconn *c);
/* Closes now, dropping queued writes; no events afterwards. NULL is a no-op. */
void pconn_close(struct pconn *c);

#endif
