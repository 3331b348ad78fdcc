/* bypass.h — per-recipient bypass of content checks (`bypass:`; amavis's
 * bypass_spam_checks_maps / bypass_virus_checks_maps, rspamd's settings on rcpt).
 *
 * The config is a list of entries { recipients: [...], senders: [...], checks: [...] }; an
 * entry with senders applies to mail from one of them only (a per-domain sender whitelist:
 * PMG's Whitelist rule with a To object, MailScanner's spam.whitelist.rules), one without
 * recipients to every recipient (at least one of the two). An item, of either list, is
 * a domain pattern as accept_domains takes it ("example.org", "*.example.org", "@example.org"
 * too), a local part ("abuse": abuse@ of every domain, and <Abuse> alone), a full address
 * ("spamtrap@example.org"), or "file:PATH" (one such item per line, '#' comments; re-read on
 * SIGHUP). An item without '@' is a domain when it holds a dot, starts "*." or "[", else a
 * local part; a local part with a dot is written with its domain. Local parts compare
 * case-insensitively, domains as accept_domains compares them (domain.h).
 *
 * A check is skipped where a stage judges recipients: at RCPT the candidate alone decides
 * (greylisting: per recipient), at DATA and end of data the message is skipped only when
 * EVERY accepted recipient of the transaction is covered by an entry naming the check. So
 * that a covered recipient's copy is never refused nor changed by the check it bypasses
 * (amavis's and PMG's promise), `bypass_mixed: split` (the default) keeps every transaction
 * of one kind: a recipient covered for a message check (DATA, end of data) otherwise than the
 * transaction's first recipient gets 452 4.5.3 at RCPT (chain_bypass_splits, session.c) and
 * comes in a transaction of its own, as the routes do; `check` keeps one transaction and
 * checks a mixed message fully. A recipient a filter adds at end of data cannot be split off:
 * it gets the message as it is, logged when covered otherwise (chain.c, added_rcpt_bypass). A milter, which sees the transaction from MAIL on, is not
 * shown a covered recipient at RCPT and is sent SMFIC_ABORT instead of the message when every
 * recipient is covered; a shared object is told by its on_abort (chain.c tells the entry,
 * hook_module.skipped). No I/O but the files, read when the config is built. */
#ifndef MX_BYPASS_H
#define MX_BYPASS_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"

struct bypass_index;
struct domain_set;
struct rcpt;

/* A check an entry may name is a chain entry's name: the rules engine (rules), greylisting
 * (greylist), a built-in plugin's type (clamd, spamd, rspamd, milter) or the `name:` of a
 * `plugins:` entry (a shared object's, "mine"). Every chain entry of that name is skipped
 * (two milters by one name: both). Refused at -t: the other filters' names (they judge the
 * client before any recipient, or authenticate the sender: a fact about the message, not a
 * recipient's choice) and a name no plugin has. */

/* `bypass_mixed:` what a transaction whose recipients are not covered alike becomes. */
enum bypass_mixed {
	BYPASS_MIXED_SPLIT = 0,   /* a recipient covered otherwise than the first gets 452 4.5.3 */
	BYPASS_MIXED_CHECK,       /* one transaction, the message checked fully (session 27's) */
};

/* The addresses one list names. */
struct bypass_match {
	struct domain_set *domains;     /* domain items (files read); NULL when none */
	struct cfg_strlist locals;      /* local parts and addresses (files' too), owned */
};

/* One `bypass:` item, as parsed; `rcpt` and `from` are built by its validate. */
struct bypass_entry {
	struct cfg_strlist recipients;  /* as written; empty: every recipient */
	struct cfg_strlist senders;     /* as written; empty: every sender */
	struct cfg_strlist checks;      /* as written: the chain entries' names */
	struct bypass_match rcpt;       /* recipients' matcher */
	struct bypass_match from;       /* senders' matcher */
	struct bypass_index *index;     /* v[0] of a whole list only: bypass_index_build's */
};

/* The recipient (or sender) matcher, also rules.recipient_actions' (rules/recipient_actions.h):
 * builds m (zeroed, or cleared) from the items of list, as recipients: takes them, "file:"
 * items read now (a SIGHUP, which builds a new config, re-reads them); a refused item is an
 * error at key[i] of the mapping n (FILE:LINE:COL). 0, or -1 after reporting. Release with
 * bypass_match_clear (also after -1). */
int bypass_match_build(struct cfg_parse *p, struct fy_node *n, const char *key,
    const struct cfg_strlist *list, struct bypass_match *m);

/* True when addr (a path without <>, "Postmaster" alone too) is one m lists: its domain, its
 * local part or the address itself. */
bool bypass_match_has(const struct bypass_match *m, const char *addr);

/* Releases what bypass_match_build built; m is empty after (clearing twice is harmless). */
void bypass_match_clear(struct bypass_match *m);

/* The table for one list item; config.c lists `bypass` as a CFG_STRUCT_LIST of it. */
extern const struct cfg_table bypass_entry_table;

/* Releases what validate built in the n entries at v (the table's own fields stay for
 * cfg_table_free). */
void bypass_entries_free(void *v, size_t n);

/* -t, once every section is read (config.c): each check an entry names that is not a
 * built-in one is the name of a `plugins:` entry (names[0..nnames)), else an error at
 * bypass[i].checks[j] of root. 0 or -1. */
int bypass_check_plugin_names(struct cfg_parse *p, struct fy_node *root, const struct bypass_entry *v,
    size_t n, const char *const *names, size_t nnames);

/* Indexes the n entries at v (a whole `bypass:` or `deny_senders:` list, each built by its
 * validate; config.c, once the lists are read) by what their recipients name, hung on v[0]
 * for v and n alone: a recipient is then compared with the entries its domain (a name, each
 * "*." parent), its local part or its address names, and those without recipients, instead
 * of all n, lowest first: the answers are the scan's. 0, or -1 out of memory (no index: the
 * scan). Released by bypass_entries_free. */
int bypass_index_build(struct bypass_entry *v, size_t n);

/* The index itself, for any list of recipient matchers (bypass's, deny_senders',
 * rules.recipient_actions'): match(v, i) gives item i's recipients matcher, or NULL when the
 * item applies to every recipient. A recipient's candidates are then the items its domain
 * (a name, each "*." parent), its local part or its address names, and the NULL ones: a
 * superset of those whose matcher has it, in order. The matchers are read while it is built
 * only. NULL out of memory (or n above 2^32). Release with bypass_index_free (NULL: no-op). */
typedef const struct bypass_match *(*bypass_index_match_fn)(const void *v, size_t i);
struct bypass_index *bypass_index_new(const void *v, size_t n, bypass_index_match_fn match);
void bypass_index_free(struct bypass_index *x);

/* Frees *at and puts there bypass_index_new's index of v (none when n is 0 or above 2^32:
 * the scan). 0, or -1 out of memory (*at NULL). */
int bypass_index_replace(struct bypass_index **at, const void *v, size_t n, bypass_index_match_fn match);

/* The n x was built for (x NULL: 0). */
size_t bypass_index_size(const struct bypass_index *x);
/* The most slots a lookup of a name, local part or address x holds looks at (tests: the
 * slots are keyed, siphash.h). */
size_t bypass_index_longest_probe(const struct bypass_index *x);

/* The lowest candidate i of addr (a path without <>, "Postmaster" alone too) in x for
 * which is(arg, i) holds, or -1 (addr NULL: -1). With is the caller's full test (the
 * matcher's bypass_match_has and any other condition), the answer is a scan's of i = 0..n. */
typedef bool (*bypass_index_is_fn)(const void *arg, size_t i);
long bypass_index_first(const struct bypass_index *x, const char *addr, bypass_index_is_fn is, const void *arg);

/* The lowest i < n such that entry v[i] applies to mail from sender (as below) to addr and,
 * check not NULL, names check; -1 when none (addr NULL: -1). Through v[0]'s index when it
 * was built for these n, else by a scan; the same answer either way. */
long bypass_first(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    const char *check);

/* True when one of the n entries at v names check. */
bool bypass_names(const struct bypass_entry *v, size_t n, const char *check);

/* True when addr (a recipient's path without <>, or "Postmaster" alone) is covered for
 * check by one of the n entries at v, for mail from sender (the envelope sender without <>,
 * "" for the null sender, NULL before MAIL: an entry with senders covers neither of the
 * last two). */
bool bypass_rcpt_covered(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    const char *check);

/* True when a message from sender (as above) with recipients r[0..nr) skips check: every
 * recipient is covered for it. nr == 0: false. */
bool bypass_message_covered(const struct bypass_entry *v, size_t n, const char *sender, const struct rcpt *r,
    size_t nr, const char *check);

/* `deny_senders:` a list of { recipients, senders } of the same struct (checks empty): a
 * recipient's own sender deny list, answered 550 5.7.1 at its RCPT alone (Postfix's
 * check_recipient_access to a restriction class with check_sender_access, Proxmox Mail
 * Gateway's Blacklist rule with a To object). config.c lists it with this table. */
extern const struct cfg_table bypass_deny_table;

/* True when one of the n deny_senders entries at v refuses mail from sender (as above: ""
 * and NULL match no senders list) to addr. */
bool bypass_denies(const struct bypass_entry *v, size_t n, const char *sender, const char *addr);

#endif
