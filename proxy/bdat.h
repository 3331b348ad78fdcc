/* bdat.h — CHUNKING (RFC 3030): the framing of "BDAT <size> [LAST]" chunks for one mail
 * transaction. No I/O, no allocation; resumable at any byte; a dot means nothing here.
 *
 * The session (phase B: the command table) parses the BDAT line with smtp_cmd_parse, asks
 * bdat_begin() whether the chunk goes into the message or is read and thrown away (RFC 3030
 * 2: a refused chunk is still read, and chunks already pipelined after a refused one are
 * discarded too), then hands bytes to bdat_feed() until the chunk is complete; what follows
 * is the next command. The content that comes out is what DATA would produce: with CRLF
 * line endings only (a bare CR or LF becomes CRLF and sets bad_line_ending, for the
 * limits.bare_lf policy) and without NUL octets (nul_seen, for limits.nul) — except under
 * BODY=BINARYMIME, where the octets pass exactly as sent. The relay then re-stuffs it for a
 * backend without CHUNKING (dataparse.h's dotstuff) or sends it in BDAT chunks to one with
 * it, so no chunk boundary can end a message early anywhere. */
#ifndef MX_BDAT_H
#define MX_BDAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum bdat_verdict {
	BDAT_ACCEPT = 0,          /* read the chunk into the message */
	BDAT_NO_MAIL,             /* 503 5.5.1: no MAIL yet; the chunk is discarded */
	BDAT_NO_RCPT,             /* 554 5.5.1: no valid recipients; discarded, transaction failed */
	BDAT_AFTER_FAILURE,       /* 554 5.5.0: an earlier chunk was refused; discarded */
	BDAT_TOO_BIG,             /* 552 5.3.4: over the size limit; discarded, transaction failed */
	BDAT_TOO_BIG_CLOSE,       /* 552 5.3.4: one chunk larger than anything worth reading:
	                           * reply and close the connection (the stream cannot be kept) */
};

struct bdat {
	uint64_t max_size;        /* message size limit (limits.max_message_size) */
	uint64_t discard_limit;   /* largest chunk read just to be discarded */
	bool binary;              /* BODY=BINARYMIME: octets pass as sent */
	bool used;                /* a BDAT was seen in this transaction (DATA is then refused) */
	bool failed;              /* a chunk was refused: the rest is discarded */
	bool last;                /* the chunk in progress (or the last one) is LAST */
	bool discarding;          /* the chunk in progress is being thrown away */
	bool complete;            /* the LAST chunk was read in full and accepted */
	uint64_t remaining;       /* octets of the chunk in progress still to come */
	uint64_t size;            /* message octets accepted so far, as received */
	uint64_t chunks;          /* chunks begun */
	bool bad_line_ending;     /* a bare CR or LF was normalised (not in binary mode) */
	bool nul_seen;            /* NUL octets were dropped (not in binary mode) */
	uint64_t nuls;
	bool cr_pending;          /* private: the content so far ends with a CR */
};

/* Prepares b for a transaction (at MAIL): the size limit, how large a refused chunk may be
 * and still be read to keep the stream in sync (0: max_size), and BODY=BINARYMIME. */
void bdat_init(struct bdat *b, uint64_t max_size, uint64_t discard_limit, bool binary);

/* A BDAT command for this transaction: have_mail / nrcpts describe the envelope so far.
 * Returns the verdict; bdat_feed() then reads the chunk (into the message, or thrown away
 * for every verdict but BDAT_TOO_BIG_CLOSE). A LAST chunk that is accepted and read in full
 * makes the message complete. */
enum bdat_verdict bdat_begin(struct bdat *b, uint64_t size, bool last, bool have_mail,
    size_t nrcpts);

/* The full reply for a refusing verdict ("552 5.3.4 ..."); NULL for BDAT_ACCEPT. */
const char *bdat_reply(enum bdat_verdict v);

/* out receives content in order; it returns 0 or -1 (then bdat_feed stops with -1). */
typedef int (*bdat_out_fn)(void *arg, const char *data, size_t len);

/* Consumes chunk octets from in[0..len). Returns how many belong to the chunk in progress
 * (the rest is the next command), with *done = 1 when the chunk is complete; -1 when out
 * failed. Splitting the input anywhere gives the same content. Call it for an empty chunk
 * too ("BDAT 0 LAST", len may be 0): that completes it. */
ssize_t bdat_feed(struct bdat *b, const char *in, size_t len, bdat_out_fn out, void *arg,
    int *done);

/* True when DATA must be refused in this transaction (503 5.5.1: BDAT was used). */
static inline bool bdat_in_use(const struct bdat *b) { return b->used; }

/* ---- the way out: a held message as one "BDAT <n> LAST" chunk (relay.c) ----------------
 * To a backend that offers CHUNKING the content goes without dot-stuffing, so its exact
 * length must be known first. The encoder writes what dataparse.h's dotstuff writes minus
 * the stuffing and the final dot: every CR or LF that is not part of a CRLF pair becomes
 * CRLF (so no content, a plugin's or milter's included, reaches the backend with bare line
 * endings), and the content ends with CRLF. Stateful across calls (a CRLF may be split). */
struct bdat_crlf { bool last_cr; bool line_start; };
void bdat_crlf_init(struct bdat_crlf *c);
/* Writes the normalised form of in[0..len) to out. 0 or -1 (out failed). */
int bdat_crlf_encode(struct bdat_crlf *c, const char *in, size_t len, bdat_out_fn out, void *arg);
/* Ends the content: a CR held back, or a last line without CRLF, gets its CRLF. */
int bdat_crlf_finish(struct bdat_crlf *c, bdat_out_fn out, void *arg);
/* The octets bdat_crlf_* write for a[0..alen) then b[0..blen), finish included: the size of
 * the chunk. */
uint64_t bdat_crlf_length(const char *a, size_t alen, const char *b, size_t blen);

/* A backend's refusal of a message the relay sent it as one BDAT chunk, for a client that
 * sent DATA (text: the reply as smtp_reply_feed gives it, "552 5.3.4 words", lines joined
 * by CRLF, each with its code; or without the code; may be NULL). A text that speaks of
 * chunks or BDAT ("552 5.3.4 Chunk exceeds message size limit", Postfix's) names a command
 * that client never sent: returns out (cap octets) holding the enhanced code its first
 * line starts with, if any (of the code's class), and DATA's words: X.3.4 (or a 552 without an enhanced code)
 * "Message size exceeds fixed limit", mxgate's own reply to a DATA message over its limit,
 * else "Message not accepted". Any other text is returned as it is. */
const char *bdat_reply_for_data(int code, const char *text, char *out, size_t cap);

#endif
