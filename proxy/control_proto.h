/* control_proto.h — the control socket's wire format (mxgatectl <-> mxgate), parsed without
 * I/O by bounded, resumable parsers (unit-tested and fuzzed).
 *
 * Request: one line, then an optional body
 *     request = line [body]
 *     line    = word *(1*WSP word) [CR] LF     ; <= CTL_MAX_LINE octets incl. the LF,
 *                                                <= CTL_MAX_ARGS words, printable ASCII
 *     word    = 1*(%x21-7E)
 * Words starting with "--" are options, anywhere on the line: "--json" asks for a JSON
 * reply; "--length=N" says N octets of body follow the LF (N <= CTL_MAX_BODY). Empty lines
 * are skipped. Several requests may follow each other on one connection; they are answered
 * in order.
 *
 * Reply: a head line, then exactly LEN octets of payload:
 *     reply   = ("OK" / "ERR") SP LEN LF payload
 * The payload is text (or JSON with --json); an ERR payload says what was wrong. */
#ifndef MX_CONTROL_PROTO_H
#define MX_CONTROL_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_MAX_LINE 1024
#define CTL_MAX_ARGS 16
#define CTL_MAX_BODY (32u * 1024 * 1024)

/* The `reload` verb answers once every worker runs the new generation; a worker held longer
 * than this (in a slow hook) gets an ERR naming it, logged event=reload_not_in_force, and
 * takes the generation at its next loop pass (event=reloaded). mxgatectl's hint, when its
 * own -t runs out first, names both lines. */
#define CTL_RELOAD_WAIT_MS 5000

struct ctl_request {
	int argc;
	char *argv[CTL_MAX_ARGS];    /* point into line */
	bool json;
	char *body;                  /* malloc'd, body_len octets (+ a NUL); NULL without --length */
	size_t body_len;
	char line[CTL_MAX_LINE + 1];
};

enum ctl_parse_status { CTL_NEED_MORE = 0, CTL_REQUEST = 1, CTL_BAD = -1 };

struct ctl_parser {
	int state;                   /* internal */
	size_t llen;                 /* octets of the current line so far */
	size_t got;                  /* body octets so far */
	const char *err;             /* CTL_BAD: why (static text) */
	struct ctl_request req;      /* CTL_REQUEST: the request (valid until the next feed) */
};

void ctl_parser_init(struct ctl_parser *p);
/* Releases the body of the request (if any) and makes p ready for the next request. */
void ctl_parser_reset(struct ctl_parser *p);
/* Consumes bytes of buf[0..len) until a request is complete (CTL_REQUEST: *used says how far
 * it read; the rest belongs to the next request), everything is used (CTL_NEED_MORE) or the
 * input is bad (CTL_BAD, p->err). After CTL_REQUEST call ctl_parser_reset before feeding
 * more; after CTL_BAD the connection should be answered and closed. */
enum ctl_parse_status ctl_parser_feed(struct ctl_parser *p, const char *buf, size_t len, size_t *used);

/* The reply side (mxgatectl): parses the head in buf[0..len). Returns 1 with *ok and
 * *payload_len and *head_len (octets of the head incl. LF) when complete, 0 while incomplete
 * (shorter than 32 octets without a LF), -1 when malformed. */
int ctl_reply_parse_head(const char *buf, size_t len, bool *ok, size_t *payload_len, size_t *head_len);

#endif
