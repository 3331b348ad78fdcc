/* dkim_canon.h — DKIM canonicalisation (RFC 6376 3.4): header fields (simple, relaxed) and
 * an incremental body canonicaliser with a length limit (`l=`) that hashes as it goes, so
 * the body hash can be computed while DATA streams in or in slices over a held message.
 *
 * Pure: no I/O. The body state machine keeps everything it needs between calls (a CR at
 * the end of one chunk, pending whitespace, pending empty lines), so any split of the input
 * gives the same result. */
#ifndef MX_DKIM_CANON_H
#define MX_DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dkim_canon { DKIM_CANON_SIMPLE = 0, DKIM_CANON_RELAXED };

/* Writes the canonical form of one header field (its raw text "Name: value", folding CRLFs
 * inside, WITHOUT the final CRLF) into out, which must hold len bytes; returns the length
 * written (the caller appends CRLF where the field is not the last one hashed).
 * simple: unchanged. relaxed (3.4.2): name lowercased, unfolded, runs of WSP as one SP,
 * WSP at the ends of the value and around the colon removed. */
size_t dkim_canon_header(enum dkim_canon c, const char *field, size_t len, char *out);

/* Receives canonical body bytes (e.g. a hash update). */
typedef void (*dkim_body_sink)(void *arg, const void *data, size_t len);

struct dkim_body_canon {
	enum dkim_canon canon;
	uint64_t limit;          /* l=: bytes to pass on; UINT64_MAX = all */
	uint64_t passed;         /* bytes given to the sink so far (<= limit) */
	uint64_t total;          /* canonical length so far (without the pending tail) */
	uint64_t pending_crlf;   /* line ends not yet emitted (they may be trailing empty lines) */
	bool pending_wsp;        /* relaxed: whitespace seen in the current line, not yet emitted */
	bool saw_cr;             /* the previous input byte was a CR not yet classified */
	bool nonempty;           /* some non-CRLF content was emitted */
	bool done;
	dkim_body_sink sink;
	void *sink_arg;
};

/* Starts a canonicaliser; limit UINT64_MAX = no l=. */
void dkim_body_canon_init(struct dkim_body_canon *b, enum dkim_canon c, uint64_t limit,
    dkim_body_sink sink, void *arg);
/* Feeds body bytes (any chunking). A bare LF ends a line like CRLF does (the session hands
 * us CRLF text; this keeps the hash stable on anything else). */
void dkim_body_canon_feed(struct dkim_body_canon *b, const char *p, size_t n);
/* Ends the body: applies the end-of-body rules (simple: exactly one CRLF at the end, a
 * lone CRLF for an empty body; relaxed: trailing empty lines dropped, empty stays empty). */
void dkim_body_canon_end(struct dkim_body_canon *b);

#endif
