/* smtp_reply.h — the replies an SMTP/LMTP server sends (RFC 5321 4.2), read as a client
 * reads them: the relay's connections to a backend (relay.c) and the health checks' probes
 * (health.c) use this one reader. Bounded, resumable (the bytes may come split anywhere),
 * no I/O: unit tests and the fuzz target (fuzz_backend_reply) drive it directly.
 *
 * Also the EHLO reply's keywords (RFC 5321 4.1.1.1, the extensions mxgate uses) as a pure
 * function of the reply's text. */
#ifndef MX_SMTP_REPLY_H
#define MX_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* A reply line's octets before its line end. RFC 5321 4.5.3.1.5 allows 512 with the CRLF;
 * more is kept to read servers that exceed it, but a line longer than this is an error,
 * never cut off (its code would be taken with its text lost). */
#define SMTP_REPLY_LINE_MAX 1023
/* A multi-line reply's text: its lines joined by CRLF, with the final NUL. */
#define SMTP_REPLY_TEXT_MAX 8192
/* Lines of one reply (an EHLO reply has about twenty). */
#define SMTP_REPLY_LINES_MAX 1000

enum smtp_reply_err {
	SMTP_REPLY_OK = 0,
	SMTP_REPLY_LINE_TOO_LONG,   /* a line past SMTP_REPLY_LINE_MAX */
	SMTP_REPLY_MALFORMED,       /* not three digits (the first 1-5) then SP, "-" or the end */
	SMTP_REPLY_CODE_CHANGED,    /* RFC 5321 4.2.1: every line of a reply has the same code */
	SMTP_REPLY_TOO_LONG,        /* the reply's text past SMTP_REPLY_TEXT_MAX */
	SMTP_REPLY_TOO_MANY_LINES,  /* more than SMTP_REPLY_LINES_MAX lines */
	SMTP_REPLY_BARE_LF,         /* a line ended by LF alone (SMTP_REPLY_STRICT_LF only) */
};

/* smtp_reply_init flags. By default a bare LF ends a line as CRLF does (as Postfix's smtp
 * client reads replies); STRICT_LF makes it an error. */
enum { SMTP_REPLY_STRICT_LF = 1u << 0 };

struct smtp_reply_reader {
	/* private; the scalars first, so that a short reply's state and its line's first
	 * octets share a cache line or two (not the two ends of a kilobyte) */
	size_t linelen;
	char *text;                          /* a multi-line reply's lines so far (lazy) */
	size_t textlen, textcap;
	unsigned nlines;                     /* lines of the reply being read */
	int code;                            /* their code */
	bool bare_lf;                        /* one of them ended by a bare LF */
	bool done;                           /* the last feed returned a reply: start a new one */
	unsigned flags;
	enum smtp_reply_err err;             /* sticky: the reader is of no use after an error */
	char line[SMTP_REPLY_LINE_MAX + 2];  /* the line being read: its octets, a CR, a NUL */
};

struct smtp_reply {
	int code;               /* 100..599 */
	const char *text;       /* every line with its code, joined by CRLF, no final CRLF;
	                         * NUL-terminated; printable ASCII and UTF-8 only besides
	                         * the CRLFs between lines (a NUL or any other octet the
	                         * server sent that is no text is '?'), valid until the
	                         * next smtp_reply_* call */
	size_t len;
	unsigned nlines;
	bool bare_lf;           /* a line of it ended by a bare LF */
};

void smtp_reply_init(struct smtp_reply_reader *rd, unsigned flags);
/* Frees what the reader holds; it may be initialised again. */
void smtp_reply_free(struct smtp_reply_reader *rd);
/* Drops a partial reply and any error (a new dialogue on the same reader: after STARTTLS,
 * a new health check). */
void smtp_reply_reset(struct smtp_reply_reader *rd);
/* Reads in[0..len). Returns 1 when a reply completed: *out holds it and *used the octets
 * taken from in (through the LF ending its last line; call again with in + *used for the
 * rest). Returns 0 when all of in was taken (*used = len) and no reply completed. Returns
 * -err (enum smtp_reply_err) on a protocol error, at once (a line too long fails at its
 * 1024th octet, not at a newline that may never come); the reader then stays failed.
 * Never reads past in + len; keeps at most SMTP_REPLY_LINE_MAX + 2 + SMTP_REPLY_TEXT_MAX
 * octets. */
int smtp_reply_feed(struct smtp_reply_reader *rd, const char *in, size_t len, size_t *used,
    struct smtp_reply *out);
/* The RFC 3463 enhanced status code ("c.s.d") of rep's last line into out, its class the
 * reply code's first digit (2, 4 or 5): true; else out is "" and false. Asked for, not
 * parsed with every reply (the relay's hot path does not need it). */
bool smtp_reply_enhanced(const struct smtp_reply *rep, char out[12]);
/* Shows what is not text in a reply line l[0..ll) as '?', in place (the length stays): every
 * octet that is no printable US-ASCII (RFC 5321 4.2) or well-formed UTF-8 (RFC 6531) — NUL,
 * CR, LF, TAB, ESC, DEL, a C1 octet, a byte that is no UTF-8 — and a C1 control written in
 * UTF-8 (U+0080-U+009F). The one censor of reply text: a backend's (smtp_reply_feed) and a
 * filter's (plugins.c: a plugin's, a milter's, clamd's) before it reaches a client or a log. */
void smtp_reply_printable(char *l, size_t ll);
/* Octets of a reply begun and not complete (a line or lines held). */
size_t smtp_reply_pending(const struct smtp_reply_reader *rd);
/* The error's words for logs ("reply line too long", "malformed reply", ...); err may be
 * negative, as smtp_reply_feed returns it. */
const char *smtp_reply_strerror(int err);

/* ---- the EHLO reply ------------------------------------------------------------------ */

enum smtp_cap {
	SMTP_CAP_PIPELINING = 1u << 0, SMTP_CAP_SIZE = 1u << 1, SMTP_CAP_8BITMIME = 1u << 2,
	SMTP_CAP_SMTPUTF8 = 1u << 3, SMTP_CAP_XCLIENT = 1u << 4, SMTP_CAP_STARTTLS = 1u << 5,
	SMTP_CAP_ENHANCED = 1u << 6, SMTP_CAP_DSN = 1u << 7, SMTP_CAP_CHUNKING = 1u << 8,
};

struct smtp_caps {
	unsigned bits;              /* enum smtp_cap */
	char xclient_attrs[256];    /* XCLIENT's attribute list, upper case, space separated
	                             * (cut at a word's end within 255 octets) */
};

/* The keywords of an EHLO reply's text (as smtp_reply_feed gives it: lines with their
 * "250-"/"250 " joined by CRLF). A keyword is the line's word after its code, in any case,
 * on every line but the first (RFC 5321 4.1.1.1: the server's name and greeting); unknown
 * ones are ignored. Never fails. */
void smtp_caps_parse(const char *text, struct smtp_caps *out);
/* attr (upper case) is one of the XCLIENT attributes in c: a whole word of the list; "" and
 * a text with a blank are none. */
bool smtp_caps_xclient_has(const struct smtp_caps *c, const char *attr);

#endif
