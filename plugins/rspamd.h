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

/* Which operations rspamd_json_milter reports, one part a call, in the reply's order
 * within it: rspamd's milter applies the removes, then the adds, then the envelope's
 * changes, then spam_header, then the DKIM-Signature. */
enum rspamd_milter_part {
	RSPAMD_MILTER_ADDS = 0,
	RSPAMD_MILTER_REMOVES = 1,
	RSPAMD_MILTER_ENVELOPE,
	RSPAMD_MILTER_SPAM_HEADER,
	RSPAMD_MILTER_DKIM,
};

/* Reports one part of the reply's operations. 0 or -1 (malformed). */
int rspamd_json_milter(const char *json, size_t len, enum rspamd_milter_part part, rspamd_header_cb cb,
    void *arg);

/* Parses a /checkv2 JSON body. Bounded (nesting depth 32), no allocation beyond the
 * result. 0 or -1 (malformed, or no "score"). */
int rspamd_json_parse(const char *json, size_t len, struct rspamd_result *out,
    rspamd_symbol_cb cb, void *arg);

/* Splits an HTTP/1.x response: status code and body, and into *offset (may be NULL) its
 * Message-Offset (rspamd's body block with Flags: body_block: the JSON is body[0, offset),
 * the rewritten body follows), -1 when absent. 0, 1 (incomplete: need more), -1 (malformed,
 * an offset past the body too). */
int rspamd_http_parse(const char *resp, size_t len, bool eof, int *status, const char **body,
    size_t *blen, long *offset);

#endif
