/* milter_proto.h — the milter wire format (protocol version 6), MTA side, without I/O.
 *
 * A frame is a 4-byte big-endian length (command byte + data), the command byte, the data.
 * Encoders append whole frames to a growable buffer; the decoder is a bounded, resumable
 * parser fed arbitrary slices of the byte stream; reply payloads are validated by
 * milter_reply_parse(). Constants are libmilter's (<libmilter/mfdef.h>). */
#ifndef MX_MILTER_PROTO_H
#define MX_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#define MILTER_FRAME_MAX_DEFAULT (1024u * 1024u)  /* largest reply frame we accept */
#define MILTER_BODY_CHUNK 65535u                  /* MILTER_CHUNK_SIZE */

/* ------------------------------------------------------------------- encoding */

struct milter_buf { unsigned char *data; size_t len, cap; };

void milter_buf_init(struct milter_buf *b);
void milter_buf_free(struct milter_buf *b);
void milter_buf_clear(struct milter_buf *b);
/* Appends raw bytes (no framing). 0 or -1. */
int milter_buf_append(struct milter_buf *b, const void *data, size_t len);

/* Each appends one frame to b; 0 or -1 (out of memory). Strings are NUL-terminated. */
int milter_put_frame(struct milter_buf *b, char cmd, const void *data, size_t len);
int milter_put_optneg(struct milter_buf *b, uint32_t version, uint32_t actions, uint32_t protocol);
/* SMFIC_MACRO for stage command `stage` ('C', 'H', 'M', 'R', 'T', 'L', 'N', 'E'):
 * kv holds n name/value pairs (kv[2i] name, kv[2i+1] value); pairs with a NULL value are
 * skipped. */
int milter_put_macros(struct milter_buf *b, char stage, const char *const *kv, size_t n);
/* family: 'U' (no port/address), '4', '6', 'L'. */
int milter_put_connect(struct milter_buf *b, const char *hostname, char family, uint16_t port,
    const char *addr);
int milter_put_helo(struct milter_buf *b, const char *helo);
/* addr without angle brackets (they are added); params: space separated ESMTP args or "". */
int milter_put_envaddr(struct milter_buf *b, char cmd, const char *addr, const char *params);
int milter_put_header(struct milter_buf *b, const char *name, const char *value);
int milter_put_body(struct milter_buf *b, const void *data, size_t len);  /* <= 65535 */
int milter_put_simple(struct milter_buf *b, char cmd);   /* EOH, EOB, DATA, ABORT, QUIT */

/* ------------------------------------------------------------------- decoding */

enum milter_parse_state { MILTER_PS_LEN = 0, MILTER_PS_BODY, MILTER_PS_ERROR };

struct milter_parser {
	enum milter_parse_state state;
	uint32_t max_frame;      /* frames whose length exceeds this are an error */
	unsigned char lenbuf[4];
	size_t lenhave;
	uint32_t framelen;       /* length field: command + data */
	unsigned char *frame;    /* command byte + data, allocated to framelen */
	size_t have;
	const char *err;         /* reason when state == MILTER_PS_ERROR */
};

void milter_parser_init(struct milter_parser *p, uint32_t max_frame);
void milter_parser_free(struct milter_parser *p);
/* Consumes bytes from data until one frame is complete or the input ends. *used is set to
 * the bytes consumed. Returns 1 with cmd, payload and plen set (payload borrowed until the
 * next call), 0 when more input is needed, -1 on a malformed stream (zero length, frame
 * over max_frame); the parser then stays in error. */
int milter_parser_feed(struct milter_parser *p, const void *data, size_t len, size_t *used,
    char *cmd, const unsigned char **payload, size_t *plen);

/* A decoded reply. Strings point into the payload (borrowed). */
struct milter_reply {
	char cmd;                 /* SMFIR_* or SMFIC_OPTNEG */
	uint32_t version, actions, protocol;   /* OPTNEG */
	uint32_t index;           /* INSHEADER / CHGHEADER */
	const char *name;         /* header name; rcpt/sender address; quarantine reason */
	const char *value;        /* header value (CHGHEADER: "" = delete); ESMTP args */
	int code;                 /* REPLYCODE: 4xx/5xx */
	const char *text;         /* REPLYCODE: the rest after "NNN " */
	const unsigned char *data; size_t len;   /* REPLBODY chunk; OPTNEG: the macro lists
	                                          * after the three words (v6, SMFIR_SETSYMLIST) */
};

/* The filter's macro lists of an OPTNEG reply (r->data, r->len), one at a time: each is a
 * 32-bit stage (SMFIM_CONNECT 0, HELO 1, ENVFROM 2, ENVRCPT 3, DATA 4, EOM 5, EOH 6) and a
 * NUL-terminated list of macro names separated by spaces. Returns 1 with *stage and *names
 * (borrowed from the payload) and *off past it, 0 at the end, -1 when malformed (a cut
 * entry, no NUL). Start with *off = 0. */
int milter_symlist_next(const unsigned char *data, size_t len, size_t *off, uint32_t *stage, const char **names);

/* Validates and splits a reply frame. 0 or -1 (unknown command, missing NUL, bad code). */
int milter_reply_parse(char cmd, const unsigned char *payload, size_t len, struct milter_reply *r);

/* The protocol bits an MTA offers (what mxgate can skip / does not need replies for). */
uint32_t milter_proto_offer(void);
/* The steps skipped and replies left out for a filter that answered the option
 * negotiation with version and protocol (its SMFIP_* bits), as Postfix's milter8 takes
 * them: whatever it asked for within what we offered, at any version (Sendmail 8.13's
 * version 4 libmilter has SMFIP_NOHREPL, SMFIP_NR_HDR), and DATA skipped for a filter
 * older than version 4, which does not know the command. */
uint32_t milter_proto_negotiated(uint32_t version, uint32_t protocol);
/* The actions mxgate allows a filter. */
uint32_t milter_actions_offer(void);
/* Checks the filter's OPTNEG reply: version 2 to 6, no action asked for that we did not
 * offer (Postfix's "request mask conflict"). Returns 0 or -1 with *why set. */
int milter_optneg_check(const struct milter_reply *r, const char **why);

/* The action (SMFIF_*, <libmilter/mfapi.h>) a filter must have asked for in its option
 * negotiation to send the modification reply cmd (SMFIR_ADDHEADER and INSHEADER:
 * SMFIF_ADDHDRS, CHGHEADER: CHGHDRS, REPLBODY: CHGBODY, ADDRCPT, ADDRCPT_PAR, DELRCPT,
 * CHGFROM, QUARANTINE: their own), as libmilter's smfi_* refuse to send one not
 * negotiated; 0 for a reply that needs none. *name is set to the action's name. */
uint32_t milter_action_needed(char cmd, const char **name);

#endif
