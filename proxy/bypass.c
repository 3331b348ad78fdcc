/* bypass.c — per-recipient bypass of content checks (bypass.h). */
#include "bypass.h"

#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "hook.h"

static const char *const bypass_names[BYPASS_NCHECKS] = {
	[BYPASS_RULES] = "rules",
	[BYPASS_GREYLIST] = "greylist",
	[BYPASS_CLAMD] = "clamd",
	[BYPASS_SPAMD] = "spamd",
	[BYPASS_RSPAMD] = "rspamd",
};

int bypass_check_index(const char *name)
{
	for (int i = 0; i < BYPASS_NCHECKS; i++)
		if (name && strcmp(name, bypass_names[i]) == 0)
			return i;
	return -1;
}

const char *bypass_check_name(int i)
{
	return i >= 0 && i < BYPASS_NCHECKS ? bypass_names[i] : "?";
}

/* An item without '@' names a domain when it looks like one: a dot, a wildcard, a literal. */
static bool bypass_item_is_domain(const char *item)
{
	return strchr(item, '.') != NULL || item[0] == '[' || item[0] == '*';
}

/* Adds one item (not file:) to the matcher m. NULL, or the reason it is refused (static). */
static const char *bypass_add_item(struct bypass_match *m, const char *item)
{
	const char *at = strchr(item, '@'), *why;

	if (item[0] == '\0' || strpbrk(item, " \t<>\"") != NULL)
		return "not a domain, a local part nor an address";
	if (item[0] == '@' || (at == NULL && bypass_item_is_domain(item))) {
		if (m->domains == NULL && (m->domains = domain_set_new()) == NULL)
			return "out of memory";
		return domain_set_add(m->domains, item[0] == '@' ? item + 1 : item, &why) != 0 ? why : NULL;
	}
	if (at != NULL && (at[1] == '\0' || strchr(at + 1, '@') != NULL))
		return "not an address (user@example.org)";
	char **v = realloc(m->locals.v, (m->locals.n + 1) * sizeof(*v));
	if (v == NULL)
		return "out of memory";
	m->locals.v = v;
	if ((v[m->locals.n] = strdup(item)) == NULL)
		return "out of memory";
	m->locals.n++;
	return NULL;
}

/* bypass_add_item as a cfg_read_list_file callback. */
static const char *bypass_file_add(void *m, const char *item)
{
	return bypass_add_item(m, item);
}

static void bypass_match_clear(struct bypass_match *m)
{
	domain_set_free(m->domains);
	m->domains = NULL;
	for (size_t i = 0; i < m->locals.n; i++)
		free(m->locals.v[i]);
	free(m->locals.v);
	m->locals = (struct cfg_strlist){ 0 };
}

/* Builds m from the items of list (key, for errors): files read now. 0 or -1 (reported). */
static int bypass_match_build(struct cfg_parse *p, struct fy_node *n, const char *key,
    const struct cfg_strlist *list, struct bypass_match *m)
{
	int rc = 0;

	for (size_t i = 0; i < list->n; i++) {
		const char *item = list->v[i], *why;

		if (strncmp(item, "file:", 5) == 0) {
			if (cfg_read_list_file(p, n, key, i, item + 5, bypass_file_add, m) < 0)
				rc = -1;
		} else if ((why = bypass_add_item(m, item)) != NULL) {
			rc = cfg_error_key(p, n, key, (long)i, "\"%s\": %s", item, why);
		}
	}
	return rc;
}

/* True when addr (a path without <>) is one m lists: its domain, its local part or itself. */
static bool bypass_match_has(const struct bypass_match *m, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at != NULL && m->domains != NULL && domain_set_match(m->domains, at + 1))
		return true;
	/* as exempt_recipients: an item with @ is the address, one without a local part */
	return domain_address_listed(m->locals.v, m->locals.n, addr);
}

static void bypass_entry_clear(struct bypass_entry *e)
{
	bypass_match_clear(&e->rcpt);
	bypass_match_clear(&e->from);
	e->mask = 0;
}

void bypass_entries_free(void *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bypass_entry_clear((struct bypass_entry *)v + i);
}

/* Builds the matcher (files read now: a SIGHUP, which loads a new config, re-reads them)
 * and the mask; refuses a check that cannot be bypassed. */
static int bypass_entry_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct bypass_entry *e = obj;
	int rc = 0;

	bypass_entry_clear(e);
	for (size_t i = 0; i < e->checks.n; i++) {
		int k = bypass_check_index(e->checks.v[i]);

		if (k < 0)
			rc = cfg_error_key(p, n, "checks", (long)i, "\"%s\": not a check that can be bypassed "
			    "(rules, greylist, clamd, spamd, rspamd); the DNS lists, reputation and rate limits "
			    "judge the client before any recipient (exempt_recipients), a milter sees the "
			    "whole transaction", e->checks.v[i]);
		else
			e->mask |= 1u << k;
	}
	if (e->recipients.n == 0 && e->senders.n == 0)
		rc = cfg_error_key(p, n, "recipients", -1, "an entry needs recipients, senders or both");
	if (bypass_match_build(p, n, "recipients", &e->recipients, &e->rcpt) < 0)
		rc = -1;
	if (bypass_match_build(p, n, "senders", &e->senders, &e->from) < 0)
		rc = -1;
	return rc;
}

static const struct cfg_field bypass_entry_fields[] = {
	{ "recipients", CFG_STRLIST, offsetof(struct bypass_entry, recipients),
	  .doc = "who: domains (example.org, \"*.example.org\", \"@example.org\"), local parts (abuse: abuse@ "
	         "of every domain), addresses (spamtrap@example.org), \"file:/etc/mxgate/nofilter\" (one a "
	         "line, re-read on SIGHUP); an item without @ is a domain when it has a dot. Empty: every "
	         "recipient (then senders is required)" },
	{ "senders", CFG_STRLIST, offsetof(struct bypass_entry, senders),
	  .doc = "and only from these envelope senders (MAIL FROM), the same items as recipients: a "
	         "per-domain sender whitelist (Proxmox Mail Gateway's Whitelist rule, MailScanner's "
	         "spam.whitelist.rules). The null sender <> matches none. Empty (the default): any sender. "
	         "MAIL FROM is the client's word: a forger writes it too" },
	{ "checks", CFG_STRLIST, offsetof(struct bypass_entry, checks), .flags = CFG_REQUIRED,
	  .doc = "what is not run for them: rules, greylist, clamd, spamd, rspamd (-t warns of clamd)" },
	{ NULL }
};

const struct cfg_table bypass_entry_table = {
	"bypass[]", sizeof(struct bypass_entry), bypass_entry_fields, bypass_entry_validate
};

/* The entry applies to mail from sender (NULL before MAIL, "" for <>) to addr. */
static bool bypass_entry_covers(const struct bypass_entry *e, const char *sender, const char *addr)
{
	if (e->senders.n > 0 && (sender == NULL || sender[0] == '\0' || !bypass_match_has(&e->from, sender)))
		return false;
	return e->recipients.n == 0 || bypass_match_has(&e->rcpt, addr);
}

bool bypass_rcpt_covered(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    int check)
{
	if (addr == NULL || check < 0 || check >= BYPASS_NCHECKS)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((v[i].mask & (1u << check)) && bypass_entry_covers(&v[i], sender, addr))
			return true;
	return false;
}

unsigned bypass_message_mask(const struct bypass_entry *v, size_t n, const char *sender, const struct rcpt *r,
    size_t nr)
{
	unsigned mask = 0;

	if (nr == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		mask |= v[i].mask;
	/* a check stays skipped only while every recipient so far is covered for it */
	for (size_t j = 0; j < nr && mask; j++) {
		unsigned has = 0;

		for (size_t i = 0; i < n; i++)
			if ((v[i].mask & mask & ~has) && bypass_entry_covers(&v[i], sender, r[j].addr))
				has |= v[i].mask;
		mask &= has;
	}
	return mask;
}
