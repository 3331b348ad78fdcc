/* ownfields.h — the header fields mxgate owns: the ones it writes into a delivered message
 * to say what it did (a filter given up, a release from the quarantine, a greylisting by
 * score passed). A mailbox filter may trust them, so a sender's own copy never reaches a
 * backend, nor a filter: at the end of data smtp_tx looks once whether the header block holds
 * one; when it does, the filters are shown a copy of the message without them (env->msg,
 * smtp_tx_data_end), and the delivery leaves them out of the header block as the client sent
 * it before the edits of the filters (mxgate's own fields among them) apply, whether or not
 * mxgate adds one this time (headers_apply_edits_owned).
 *
 * Not here: Received (a trace field: the sender's stay, mxgate adds its own above them),
 * Authentication-Results (senderauth removes those naming our authserv-id, RFC 8601 5),
 * X-Spam-* (the rules engine's, SpamAssassin's rule: removed whatever it adds, X-Spam-Prev-*
 * kept), and the fields a plugin writes for its peer, each removed by that plugin when it
 * writes one (X-Virus-Scanned, X-Rspamd-Action, rspamd's spam_header): filters see them.
 * Pure functions, no I/O. */
#ifndef MX_OWNFIELDS_H
#define MX_OWNFIELDS_H

#include <stdbool.h>
#include <stddef.h>

#define OWNFIELD_FILTER_ERROR "X-Mxgate-Filter-Error"   /* chain.c: on_error: tag */
#define OWNFIELD_QUARANTINE "X-Mxgate-Quarantine"       /* session.c: the held copy's reason */
#define OWNFIELD_GREYLIST "X-Mxgate-Greylist"           /* rules.c: greylisting by score */

/* True when name[0..n) is one of the fields mxgate owns (any case). */
bool ownfields_is(const char *name, size_t n);

/* True when the header block hdr[0..len) holds a field mxgate owns (any case, a blank
 * before its colon too: headers_field_name_len's reading of a name). */
bool ownfields_block_has(const char *hdr, size_t len);

#endif
