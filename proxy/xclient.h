/* xclient.h — the arguments of an inbound XCLIENT command (Postfix's XCLIENT_README):
 * a trusted front end (nginx's mail module, another proxy) names the client it relays; and
 * mxgate's own XCLIENT to a backend, rewritten after a 501 (xclient_mark_unavailable).
 * Pure: no I/O, no allocation; the session decides who may send it and what it changes
 * (session_xclient.c). */
#ifndef MX_XCLIENT_H
#define MX_XCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The attributes mxgate takes, in the order EHLO names them. */
#define XCLIENT_EHLO_ATTRS "ADDR PORT NAME REVERSE_NAME HELO PROTO LOGIN DESTADDR DESTPORT"

enum xclient_attr {
	XCLIENT_ADDR = 1u << 0,
	XCLIENT_PORT = 1u << 1,
	XCLIENT_NAME = 1u << 2,
	XCLIENT_REVERSE_NAME = 1u << 3,
	XCLIENT_HELO = 1u << 4,
	XCLIENT_PROTO = 1u << 5,
	XCLIENT_LOGIN = 1u << 6,
	XCLIENT_DESTADDR = 1u << 7,
	XCLIENT_DESTPORT = 1u << 8,
};

/* A name's status as the front end knows it: a name, or why there is none. */
enum xclient_name_status {
	XCLIENT_NAME_OK = 0,
	XCLIENT_NAME_UNAVAILABLE,   /* [UNAVAILABLE]: the lookup failed for good */
	XCLIENT_NAME_TEMPUNAVAIL,   /* [TEMPUNAVAIL]: the lookup failed for now */
};

struct xclient_attrs {
	unsigned has;                       /* enum xclient_attr: the attributes sent */
	/* ADDR: an IPv4 address, IPV6:addr or a bare IPv6 address (nginx sends that); a
	 * v4-mapped IPv6 address is its IPv4 address. Port 0 (PORT sets it). [UNAVAILABLE]:
	 * addr_unavailable, addr untouched. */
	struct sockaddr_storage addr;
	bool addr_unavailable;
	int port;                           /* PORT: 0..65535; [UNAVAILABLE]: 0 */
	char name[256];                     /* NAME: a host name, "" with its status otherwise */
	int name_status;                    /* enum xclient_name_status */
	char reverse_name[256];             /* REVERSE_NAME: as NAME */
	int reverse_name_status;
	char helo[256];                     /* HELO: "" for [UNAVAILABLE] */
	bool esmtp;                         /* PROTO: ESMTP (true) or SMTP */
	char login[256];                    /* LOGIN: "" for [UNAVAILABLE] (logged out) */
	struct sockaddr_storage destaddr;   /* DESTADDR: as ADDR (the address the client reached) */
	bool destaddr_unavailable;
	int destport;                       /* DESTPORT: as PORT */
};

/* Parses XCLIENT's argument text arg (what follows "XCLIENT "): 1*(SP name=value), names
 * without case, values xtext (RFC 3461 4: "+XX" hex escapes; printable ASCII otherwise),
 * at most 255 octets raw, a repeated name's last value winning. Returns 0 with *x filled,
 * or -1 with reply (cap octets) set to the 501 reply line Postfix gives for the same
 * error (*x then holds what was parsed before it). */
int xclient_parse(const char *arg, struct xclient_attrs *x, char *reply, size_t cap);

/* The other way: line is an XCLIENT command mxgate sent a backend (relay.c's: "XCLIENT" then
 * 1*(SP NAME=xtext), the attribute names upper-case, each at most once) and text the 501 reply
 * it got. Writes the line once more into out (cap octets) with what the reply blames as
 * "[UNAVAILABLE]", the other attributes as they were, in their order; the names of those it
 * changed go into names (ncap octets), comma-separated. Returns how many it changed: 0 when
 * none (the reply names PROTO, or an attribute that is unavailable already: the line would be
 * refused again), when line is not such a line, or when out or names would be cut. Pure: no
 * I/O; out and names are NUL-terminated whenever cap and ncap are not 0. */
int xclient_mark_unavailable(const char *line, const char *text, char *out, size_t cap, char *names, size_t ncap);

#endif
