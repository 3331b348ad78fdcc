/* gwrefuse.h — a backend's refusal of the gateway itself (its address, its credentials, the
 * endpoint it was pointed at), told from a refusal of the message.
 *
 * Exchange Online refuses a banned sending IP with `550 5.7.606`..`5.7.649` and a server set
 * to a submission endpoint with `530 5.7.57`: passed on, they tell the sender its mail is
 * refused for good, for a fault of the gateway's. Such a reply is the backend's failure
 * (smtp_tx.c: the next server, 451 to the client when none is left, nothing lost). */
#ifndef MX_GWREFUSE_H
#define MX_GWREFUSE_H

#include <stdbool.h>

struct cfg_strlist;
struct pool;
struct backend;

/* Longest pattern of backends.gateway_refusals, and how many of them. */
#define GWREFUSE_PATTERN_MAX 200
#define GWREFUSE_PATTERNS_MAX 32

/* Whether pat is a valid backends.gateway_refusals item: an enhanced status code of class 5
 * ("5.7.57"), a range of them with one class and subject ("5.7.606-5.7.649"), or else any
 * text of 1..GWREFUSE_PATTERN_MAX octets the reply must contain (case ignored). 0, or -1
 * with *why a static reason. */
int gwrefuse_check_pattern(const char *pat, const char **why);

/* The pattern a reply (code, and text as the relay gives it: every line with its code,
 * joined by CRLF, "550 5.7.606 ...") matches: its enhanced code is its last line's
 * (smtp_reply_enhanced); one built in (gwrefuse_builtin: Exchange Online's 5.7.606-5.7.649 and
 * 5.7.57; Postfix's, Sendmail's and Exchange's "Must issue a STARTTLS command first") or one
 * of extra (may be NULL). Only a 5xx is matched: a 4xx is a deferral already.
 * Returns the pattern (static or extra's, valid while extra is) or NULL. */
const char *gwrefuse_match(int code, const char *text, const struct cfg_strlist *extra);

/* The patterns built in, NULL-terminated (docs, tests). */
extern const char *const gwrefuse_builtin[];

/* A backend refused the gateway at stage ("greeting", "ehlo", "starttls", "xclient", "mail",
 * "rcpt", "data"; code 0: no reply, as XCLIENT not offered): logs
 * event=gateway_refused at error level (sid: the session's id or NULL) and takes b out of
 * the rotation for BACKEND_REFUSED_HOLD_MS (backend_report_refused): a health probe, which
 * cannot see this refusal, does not bring it back before then. pattern: what matched (NULL:
 * the stage alone says it). */
void gwrefuse_report(struct pool *p, struct backend *b, const char *sid, const char *stage, int code,
    const char *text, const char *pattern);

#endif
