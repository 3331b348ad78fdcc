/* rspamd.h — rspamd's HTTP protocol (POST /checkv2) as a built-in plugin.
 *
 * The message goes with the envelope as request headers (IP, Helo, From, Rcpt, Queue-Id,
 * Hostname); the JSON reply's "score", "required_score", "action" and "symbols" come back:
 *   - RSPAMD_SCORE carries rspamd's total score (adds to mxgate's score like SPAMD_SCORE),
 *   - every rspamd symbol is added with score 0 (listed in X-Spam-Status tests=).
 * With option `use_action: true` the reply is applied as rspamd's own milter gateway
 * (rspamd_milter.c) applies it: first the "milter" block (remove_headers, add_headers:
 * milter_headers' fields; change_from, add_rcpt, del_rcpt: the envelope; spam_header with
 * "add header") and the top-level "dkim-signature" (dkim_signing), then the action:
 * "reject" -> 550 5.7.1 (discarded or quarantined instead when the block's reject says so),
 * "soft reject" -> 451 4.7.1 (the reply text from messages.smtp_message when given),
 * "rewrite subject" -> the first Subject field replaced by the reply's "subject" (added when
 * the message has none, CHGHEADER Subject 1), "add header" -> X-Spam: Yes; with the block's
 * no_action none of these, X-Rspamd-Action names it.
 * The actions reject, add header and rewrite subject mark the transaction spam
 * (HOOK_FLAG_SPAM) for reputation. Keys: address, timeout, on_error; options (or the
 * entry's own max_size): max_size (default 20M), use_action, password. The built-in is
 * `rspamd_builtin` (plugins.h). */
#ifndef MX_RSPAMD_H
#define MX_RSPAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

struct rspamd_result {
	double score, required;
	bool has_score;
	char action[32];
	char smtp_message[200];
	/* "subject": the new Subject rspamd's "rewrite subject" action made (its
	 * subject_template with the old one, MIME-encoded by rspamd; \uXXXX escapes decoded to
	 * UTF-8); "" when absent. A value longer than the buffer holds is cut (subject_cut):
	 * not applied, as it may end in half an encoded word. */
	char subject[1024];
	bool subject_cut;
	/* the "milter" block's switches: reject "discard" / "quarantine" (rspamd's milter
	 * discards or quarantines a rejected message instead), no_action (the action is not
	 * applied: X-Rspamd-Action names it), spam_header present */
	bool milter_discard, milter_quarantine, milter_no_action, has_spam_header;
};

/* Called for each symbol of the reply (name NUL-terminated, borrowed). */
typedef void (*rspamd_symbol_cb)(void *arg, const char *name, double score);

/* One operation of the reply, as rspamd's milter gateway (rspamd_milter.c) turns it into
 * milter actions. The "milter" block (rspamd's milter_headers, dkim_signing with
 * use_milter_headers, task:set_milter_reply put them there):
 *   - remove_headers {"Name": N}: N > 0 the N-th field of that name, 0 all of them, N < 0
 *     counted from the last (kind HEADER, remove, index N);
 *   - add_headers {"Name": "value"}, {"Name": {"value": V, "order": N}} or an array of
 *     either (kind HEADER; with an order insert is set and index = N, clamped to
 *     -10000..10000: N >= 0 inserted at N, N < -1 counted from the end of the header block
 *     rspamd was shown and the adds before, -1 appended, as rspamd 3.4's milter does;
 *     without one appended, index -1);
 *   - change_from "addr", add_rcpt ["addr", ...], del_rcpt ["addr", ...] (kinds CHANGE_FROM,
 *     ADD_RCPT, DEL_RCPT; name the key, value the address as rspamd wrote it);
 *   - spam_header "value" (name NULL: the value of rspamd's configured spam_header) or
 *     {"Name": "value", ...} (kind SPAM_HEADER), applied by rspamd only with "add header".
 * And the top-level "dkim-signature" (dkim_signing's default): a string or an array of them
 * (kind HEADER, name "DKIM-Signature", insert, index 1, 2 ...: rspamd inserts them at 1, 2 ...).
 * value NULL for a remove. A value longer than the reader holds (8 KiB) is reported cut (not
 * to be applied). */
enum rspamd_op_kind {
	RSPAMD_OP_HEADER = 0,
	RSPAMD_OP_CHANGE_FROM,
	RSPAMD_OP_ADD_RCPT,
	RSPAMD_OP_DEL_RCPT,
	RSPAMD_OP_SPAM_HEADER,
};
struct rspamd_header_op {
	enum rspamd_op_kind kind;
	bool remove, cut;
	bool insert;             /* add: at index (rspamd's INSHEADER), else appended */
	const char *name, *value;
	long index;              /* remove: N; insert: the order; an append: -1 */
};
typedef void (*rspamd_header_cb)(void *arg, const struct rspamd_header_op *op);

/* The parts of the reply's operations, in the order rspamd's milter applies them: the
 * removes, then the adds, then the envelope's changes, then spam_header, then the
 * DKIM-Signature. */
enum rspamd_milter_part {
	RSPAMD_MILTER_ADDS = 0,
	RSPAMD_MILTER_REMOVES = 1,
	RSPAMD_MILTER_ENVELOPE,
	RSPAMD_MILTER_SPAM_HEADER,
	RSPAMD_MILTER_DKIM,
};

/* A /checkv2 JSON body, read once: the result, and the symbols and the operations kept in
 * the reply's order (their names and values in one buffer of strings, no longer than the
 * JSON; a symbol takes 16 octets more, an operation 20). */
struct rspamd_reply {
	struct rspamd_result r;
	/* private */
	char *str, *syms, *ops;
	size_t str_len, str_cap, syms_len, syms_cap, ops_len, ops_cap;
	bool over;               /* a bound was reached: the parse ends -2 */
};

/* The most symbols and operations one reply may hold: a reply of 1 MiB made of tiny
 * entries ({"add_rcpt": ["", "", ...]}: 3 octets of JSON, 20 kept) held seven times its
 * size while it was read. A real one holds tens of either. */
#define RSPAMD_REPLY_ENTRIES_MAX 4096   /* symbols, and operations, each */

/* Reads the body. Bounded (nesting depth 32, the counts above). 0, or -1 (malformed, or no
 * "score"), or -2 (more symbols or operations than the bounds); nothing is kept on either.
 * rspamd_reply_free frees it (after any). */
int rspamd_reply_parse(const char *json, size_t len, struct rspamd_reply *out);

/* Reports each symbol, in the reply's order (name borrowed from the reply). */
void rspamd_reply_symbols(const struct rspamd_reply *rp, rspamd_symbol_cb cb, void *arg);

/* Reports the operations of one part, in the reply's order within it (the op and its
 * strings borrowed from the reply). */
void rspamd_reply_ops(const struct rspamd_reply *rp, enum rspamd_milter_part part, rspamd_header_cb cb,
    void *arg);

void rspamd_reply_free(struct rspamd_reply *rp);

/* rspamd's HTTP/1.x reply read as it comes, in reads of any size (resumable; bounded; no
 * I/O). Only the head (status line and fields, at most 64 KiB) and the JSON are kept, in buf
 * (at most head_max octets together); with Message-Offset (rspamd's body block, asked with
 * Flags: body_block: the JSON is the body's octets before the offset, the rewritten body
 * those after it) the octets past the offset go to sink as they come, never kept here (at
 * most body_max of them). The body ends at Content-Length (octets after it are ignored), or
 * at the peer's close without one; chunked transfer coding is refused (we ask with
 * Connection: close). The head is parsed once, when its blank line arrives. */
struct rspamd_reader {
	size_t head_max;             /* the head and the JSON kept, at most */
	uint64_t body_max;           /* the body block, at most */
	/* the body block's octets (block_len counts them already); NULL: dropped. 0, or -1:
	 * the read ends (-3) */
	int (*sink)(void *arg, const char *data, size_t len);
	void *arg;
	int status;                  /* the HTTP status, once the head is read (else 0) */
	long offset;                 /* Message-Offset, -1 when absent */
	uint64_t block_len;          /* octets of the body block read */
	char *buf;                   /* the head, then the JSON: len octets, NUL after them; owned */
	size_t len, cap;
	size_t hlen;                 /* the head's octets with its blank line; 0 until it is read */
	/* private */
	long clen;                   /* Content-Length, -1 when absent */
	uint64_t body_seen;          /* octets of the HTTP body read (the JSON and the block) */
	unsigned crlf;               /* how much of CRLF CRLF the head read so far ends in */
	int rc;                      /* 1 while reading, else the outcome */
};

/* An empty reader with its bounds and sink (head_max >= 1). */
void rspamd_reader_init(struct rspamd_reader *r, size_t head_max, uint64_t body_max,
    int (*sink)(void *arg, const char *data, size_t len), void *arg);
/* Reads len octets of the reply (data may be NULL when len is 0); eof: the peer closed after
 * them. 1 (incomplete: more to read), 0 (complete), -1 (malformed: the head, a number, an
 * offset past the body, cut short of Content-Length or of the head at eof), -2 (past
 * head_max or body_max), -3 (the sink failed). Once not 1, every later call returns the same
 * and reads nothing. */
int rspamd_reader_feed(struct rspamd_reader *r, const char *data, size_t len, bool eof);
/* The JSON read so far (NUL-terminated after *len; into buf, valid until the next feed or
 * free). */
const char *rspamd_reader_json(const struct rspamd_reader *r, size_t *len);
/* Frees the reader's buffer (the struct is the caller's); NULL is a no-op. */
void rspamd_reader_free(struct rspamd_reader *r);

/* A whole reply at once (the reader over resp; for the tests and the fuzz harness): status
 * code and body (into resp), and into *offset (may be NULL) its Message-Offset, -1 when
 * absent. 0, 1 (incomplete: need more), -1 (malformed, an offset past the body too). */
int rspamd_http_parse(const char *resp, size_t len, bool eof, int *status, const char **body,
    size_t *blen, long *offset);

#endif
