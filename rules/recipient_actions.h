/* recipient_actions.h — rules.recipient_actions: score thresholds of some recipients
 * (MailScanner's `Required SpamAssassin Score` / `High SpamAssassin Score` rulesets,
 * amavisd-new's spam_tag2_level_maps / spam_kill_level_maps, PMG's rules at other spam
 * levels per domain).
 *
 * A list of entries { recipients: [...], add_header, greylist, tempfail, quarantine, reject }; the
 * recipients are written as bypass's (bypass.h: "example.org", "*.example.org",
 * "@example.org", a local part, an address, "file:PATH" re-read on SIGHUP). A recipient's
 * thresholds are those of the first entry that lists it, each key the entry does not write
 * taken from rules.actions; a recipient no entry lists has rules.actions. mxgate does not
 * split a message: the message takes the mildest of its recipients' decisions
 * (actions_decide_recipients). No I/O but the files, read when the config is built. */
#ifndef MX_RECIPIENT_ACTIONS_H
#define MX_RECIPIENT_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/bypass.h"
#include "proxy/cfg.h"
#include "rules/actions.h"

/* recipient_actions_entry.given: the threshold keys the entry writes */
enum {
	RECIPIENT_ACTIONS_ADD_HEADER = 1u << 0,
	RECIPIENT_ACTIONS_TEMPFAIL = 1u << 1,
	RECIPIENT_ACTIONS_REJECT = 1u << 2,
	RECIPIENT_ACTIONS_QUARANTINE = 1u << 3,
	RECIPIENT_ACTIONS_GREYLIST = 1u << 4,
};

/* One `rules.recipient_actions` item; `given` and `rcpt` are built by its validate. */
struct recipient_actions_entry {
	struct cfg_strlist recipients;  /* as written */
	double add_header, tempfail, reject, quarantine, greylist;
	unsigned given;                 /* RECIPIENT_ACTIONS_*: the keys written */
	struct bypass_match rcpt;       /* the recipients' matcher (files read) */
	struct bypass_index *index;     /* v[0] of the whole list only: recipient_actions_index_build's */
};

/* The table of one list item; rules.c lists `recipient_actions` as a CFG_STRUCT_LIST of it. */
extern const struct cfg_table recipient_actions_entry_table;

/* Releases what validate built in the n entries at v (config_free; the table's own fields
 * go with cfg_table_free). */
void recipient_actions_entries_free(void *v, size_t n);

/* Indexes the n entries at v (the whole list, each built by its validate; rules.c, once the
 * list is read) by what their recipients name (bypass_index_new), hung on v[0] for v and n
 * alone: a recipient is then compared with the entries that name its domain, a "*." parent,
 * its local part or its address, not with all n. 0, or -1 out of memory (no index: the scan).
 * Released by recipient_actions_entries_free. */
int recipient_actions_index_build(struct recipient_actions_entry *v, size_t n);

/* The index of the first of the n entries at v that lists addr (a recipient's path without
 * <>), or n when none does (addr NULL: n). Through v[0]'s index when it was built for these
 * n, else by a scan; the same answer either way. */
size_t recipient_actions_find(const struct recipient_actions_entry *v, size_t n, const char *addr);

/* True when one of the n entries at v greylists (its greylist written, above 0): the
 * greylist store is opened for the rules engine (greylist_message_wanted). */
bool recipient_actions_greylist(const struct recipient_actions_entry *v, size_t n);

/* The thresholds of entry e's recipients (e NULL: of the others): each key e writes, else
 * base's (rules.actions). required: required_score when it is above 0, else add_header when
 * that is above 0, else 5 (as rules.required_score says). */
void recipient_actions_thresholds(const struct recipient_actions_entry *e, const struct actions_thresholds *base,
    double required_score, struct actions_thresholds *out);

#endif
