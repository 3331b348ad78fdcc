/* rspamd.h — rspamd's HTTP protocol (POST /checkv2) as a built-in plugin.
 *
 * The message goes with the envelope as request headers (IP, Helo, From, Rcpt, Queue-Id,
 * Hostname); the JSON reply's "score", "required_score", "action" and "symbols" come back:
 *   - RSPAMD_SCORE carries rspamd's total score (adds to mxgate's score like SPAMD_SCORE),
 *   - every rspamd symbol is added with score 0 (listed in X-Spam-Status tests=).
 * With option `use_action: true` rspamd's own action applies too: "reject" -> 550 5.7.1,
 * "soft reject" -> 451 4.7.1 (the reply text from messages.smtp_message when given),
 * "rewrite subject" -> the first Subject field replaced by the reply's "subject" (added when
 * the message has none), as rspamd's own milter does (CHGHEADER Subject 1), and the reply's
 * "milter" block (remove_headers, then add_headers: milter_headers' fields, dkim_signing's
 * DKIM-Signature) applied as rspamd's milter gateway applies it.
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
};

/* Called for each symbol of the reply (name NUL-terminated, borrowed). */
typedef void (*rspamd_symbol_cb)(void *arg, const char *name, double score);

/* One header operation of the reply's "milter" block (rspamd's milter_headers, dkim_signing
 * and task:set_milter_reply put them there): remove_headers {"Name": N} (N > 0 the N-th field
 * of that name, 0 all of them, N < 0 counted from the last), add_headers {"Name": "value"},
 * {"Name": {"value": V, "order": N}} or an array of either (order: inserted at N, else
 * appended). value NULL for a remove; order -1 when absent. A value longer than the reader
 * holds (8 KiB) is reported cut (not to be applied). */
struct rspamd_header_op {
	bool remove, cut;
	const char *name, *value;
	long index;              /* remove: N; add: order, -1 when absent */
};
typedef void (*rspamd_header_cb)(void *arg, const struct rspamd_header_op *op);

/* Reports the "milter" block's removes (removes true) or its adds (false), in the reply's
 * order: rspamd's milter applies the removes first. 0 or -1 (malformed). */
int rspamd_json_milter(const char *json, size_t len, bool removes, rspamd_header_cb cb, void *arg);

/* Parses a /checkv2 JSON body. Bounded (nesting depth 32), no allocation beyond the
 * result. 0 or -1 (malformed, or no "score"). */
int rspamd_json_parse(const char *json, size_t len, struct rspamd_result *out,
    rspamd_symbol_cb cb, void *arg);

/* Splits an HTTP/1.x response: status code and body. 0, 1 (incomplete: need more), -1. */
int rspamd_http_parse(const char *resp, size_t len, bool eof, int *status, const char **body,
    size_t *blen);

#endif
