/* actions.h — from a total score and the rules that hit to one verdict and the
 * X-Spam-* header values (SpamAssassin's form). Pure functions: unit-tested directly. */
#ifndef MX_ACTIONS_H
#define MX_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "hook.h"
#include "rule_parse.h"

struct actions_thresholds {
	double add_header;   /* <= 0: off */
	double tempfail;     /* <= 0: off */
	double reject;       /* <= 0: off */
	double required;     /* shown as required=; "Yes" at or above it */
	double quarantine;   /* <= 0: off */
	double greylist;     /* <= 0: off (rspamd's greylist action: rules.actions.greylist) */
};

/* What the score and the per-rule immediate action say. immediate is the strongest
 * `action RULE ...` among the hits (RULE_ACT_NONE when none); immediate_rule names it.
 * Fills v (VERDICT_CONTINUE when the message goes on) and returns the action word for the
 * log: "reject", "tempfail", "greylist", "add_header", "discard", "quarantine", "accept" or
 * "none". The thresholds: reject first; then of quarantine and tempfail the higher one the
 * score reaches (rspamd's rule: the highest threshold reached acts; at equal ones,
 * quarantine); then greylist, then add_header. "greylist" fills v with the first sight's
 * reply, 451 4.7.1 "greylisted, try again later" (reason "greylist", not the client's
 * error): the caller asks the greylist store (greylist_message_check) whether this is a
 * retry that passes. */
const char *actions_decide(const struct actions_thresholds *t, double score,
    enum rule_action immediate, const char *immediate_rule, struct verdict *v);

/* A message whose recipients have different thresholds (rules.recipient_actions): t[0..n)
 * the thresholds of its recipients (n >= 1; one per distinct policy is enough), each decided
 * as actions_decide does. mxgate does not split a message, so it takes the mildest of those
 * decisions: delivered, then greylisted (delivered on its retry), then quarantine (kept),
 * then tempfail, then reject. It is refused only
 * at a score every recipient's policy refuses; among deliveries the word is "add_header" when
 * any recipient's is (a header loses no mail). An immediate action is the same for all.
 * *required (may be NULL): the lowest t[i].required, X-Spam-Status's for the message. Fills
 * v and returns the word as actions_decide does. */
const char *actions_decide_recipients(const struct actions_thresholds *t, size_t n, double score,
    enum rule_action immediate, const char *immediate_rule, struct verdict *v, double *required);

/* The 451 of a message greylisted by score: v as actions_decide fills it for "greylist". */
void actions_greylist_verdict(struct verdict *v);

/* Ranks immediate actions: reject > tempfail > quarantine > discard > accept > none. */
int actions_rank(enum rule_action a);

/* Formats SpamAssassin's X-Spam-Status value: "Yes, score=7.5 required=5.0 tests=A,B"
 * with the tests in the order given (callers sort them), then " " and tail when tail is
 * not NULL or empty ("autolearn=no autolearn_force=no version=..."), folded where
 * SpamAssassin folds the same text (79 columns, "\n\t" after white space or a comma).
 * Returns bytes written (truncated to len-1). */
size_t actions_format_status(char *buf, size_t len, double score, double required,
    const char *const *tests, size_t ntests, const char *tail);

/* Formats the score as SA does ("%.1f", "-0.0" shown as "0.0"). */
void actions_format_score(char *buf, size_t len, double score);

/* SpamAssassin's _SCORE_ and _REQD_ (s, r: 32 bytes each): the score rounded to 3 decimals
 * decides; the shown one (2.1f) never contradicts the verdict (_get_tag_value_for_score).
 * Returns whether the message is spam. */
bool actions_shown_score(char *s, char *r, double score, double required);

/* "A=2.500, B=1.000" folded like the status; returns bytes written. */
size_t actions_format_symbols(char *buf, size_t len, const char *const *names,
    const double *scores, size_t n);

/* SpamAssassin's rewrite_header Subject (report_safe 0: PerMsgStatus::rewrite_no_report_safe)
 * on a spam message: the tag, tmpl with _SCORE_ (_HITS_), _REQD_, _YESNO_ and _YESNOCAPS_
 * expanded as in X-Spam-Status (other tags as written, line breaks as spaces), then a space,
 * then old: the Subject's value as received after the ':' (folds and encoded words kept),
 * its leading blanks dropped and the tag not repeated when it already starts with it and a
 * space (any case); NULL when the message has no Subject (SA creates one: "TAG "). Returns
 * the new value (malloc'd). */
char *actions_rewrite_subject(const char *tmpl, double score, double required, const char *old);

#endif
