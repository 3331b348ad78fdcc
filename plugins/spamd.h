/* spamd.h — SpamAssassin's spamd as a built-in plugin (SPAMC/1.5 `SYMBOLS`).
 *
 * At end of data the message (up to max_size, default 512K like spamc; larger messages are
 * not scanned) is sent with Content-length; the reply's `Spam: True ; 7.5 / 5.0` header
 * and its body (the comma-separated rule names) come back as symbols:
 *   - SPAMD_SCORE carrying SpamAssassin's total score (this is what adds to mxgate's score
 *     and so to the rules engine's thresholds and X-Spam-Score),
 *   - every SpamAssassin rule name with score 0 (so they appear in X-Spam-Status tests=).
 * spamd's verdict itself (True/False) rejects nothing: the rules engine's `actions:`
 * thresholds decide; spam=True marks the transaction spam (HOOK_FLAG_SPAM) for reputation.
 * Keys: address, timeout, on_error; options (or the entry's own max_size): max_size, user.
 * The built-in is `spamd_builtin` (plugins.h). */
#ifndef MX_SPAMD_H
#define MX_SPAMD_H

#include <stdbool.h>
#include <stddef.h>

#include "plugin.h"

struct spamd_result {
	bool spam;
	double score, threshold;
	const char *symbols;      /* points into the parsed reply: "A,B,C" (may be "") */
	size_t symbols_len;
};

/* Parses a whole spamd reply (headers + body). 0 or -1 (not EX_OK / malformed). */
int spamd_reply_parse(const char *reply, size_t len, struct spamd_result *out);

#endif
