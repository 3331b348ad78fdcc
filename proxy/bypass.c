/* bypass.c — per-recipient bypass of content checks (bypass.h). */
#include "bypass.h"

#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "hook.h"
#include "plugins/plugins.h"

/* The checks that need no `plugins:` entry of their name to be named: the rules engine,
 * greylisting (registry modules) and the built-in plugins' types (plugins.h). */
static bool bypass_check_builtin(const char *name)
{
	return strcmp(name, "rules") == 0 || strcmp(name, "greylist") == 0 || plugins_find_builtin(name) != NULL;
}

/* Sender authentication: a fact about the message for every recipient (Authentication-
 * Results, DMARC's policy), not a recipient's choice; amavis bypasses spam checks, not DKIM. */
static bool bypass_check_is_senderauth(const char *name)
{
	static const char *const auth[] = { "spf", "dkim", "arc", "dmarc", NULL };

	for (size_t i = 0; auth[i]; i++)
		if (strcmp(name, auth[i]) == 0)
			return true;
	return false;
}

/* A filter of the registry that judges the client before any recipient (dnsbl, rdns, ...). */
static bool bypass_check_is_screen(const char *name)
{
	for (size_t i = 0; i < hook_nmodules; i++)
		if (strcmp(hook_modules[i]->name, name) == 0)
			return !bypass_check_builtin(name);
	return false;
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

/* See bypass.h. */
void bypass_match_clear(struct bypass_match *m)
{
	domain_set_free(m->domains);
	m->domains = NULL;
	for (size_t i = 0; i < m->locals.n; i++)
		free(m->locals.v[i]);
	free(m->locals.v);
	m->locals = (struct cfg_strlist){ 0 };
}

/* See bypass.h. */
int bypass_match_build(struct cfg_parse *p, struct fy_node *n, const char *key,
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

/* See bypass.h. */
bool bypass_match_has(const struct bypass_match *m, const char *addr)
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
}

void bypass_entries_free(void *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bypass_entry_clear((struct bypass_entry *)v + i);
}

/* Both matchers of e, each error reported: 0 or -1. */
static int bypass_entry_build(struct cfg_parse *p, struct fy_node *n, struct bypass_entry *e)
{
	int rc = bypass_match_build(p, n, "recipients", &e->recipients, &e->rcpt);

	if (bypass_match_build(p, n, "senders", &e->senders, &e->from) < 0)
		rc = -1;
	return rc;
}

/* Builds the matchers (files read now: a SIGHUP, which loads a new config, re-reads them);
 * refuses a check that cannot be bypassed (a name no plugin has: bypass_check_plugin_names). */
static int bypass_entry_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct bypass_entry *e = obj;
	int rc = 0;

	bypass_entry_clear(e);
	for (size_t i = 0; i < e->checks.n; i++) {
		const char *c = e->checks.v[i];

		if (bypass_check_is_senderauth(c))
			rc = cfg_error_key(p, n, "checks", (long)i, "\"%s\": sender authentication is not "
			    "bypassed: its result is the message's, for every recipient (Authentication-Results, "
			    "DMARC's policy), not a recipient's choice", c);
		else if (bypass_check_is_screen(c))
			rc = cfg_error_key(p, n, "checks", (long)i, "\"%s\": not a check that can be bypassed "
			    "(rules, greylist, clamd, spamd, rspamd, milter or a plugins: entry's name); the DNS "
			    "lists, reputation and rate limits judge the client before any recipient "
			    "(exempt_recipients)", c);
	}
	if (e->recipients.n == 0 && e->senders.n == 0)
		rc = cfg_error_key(p, n, "recipients", -1, "an entry needs recipients, senders or both");
	return bypass_entry_build(p, n, e) < 0 ? -1 : rc;
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
	  .doc = "what is not run for them, by chain entry name: rules, greylist, clamd, spamd, rspamd, milter "
	         "(a milter is sent ABORT instead of the message), or a plugins: entry's name (a shared "
	         "object); not the DNS lists, reputation, rate limits nor sender authentication (spf, "
	         "dkim, arc, dmarc); -t warns of clamd" },
	{ NULL }
};

const struct cfg_table bypass_entry_table = {
	"bypass[]", sizeof(struct bypass_entry), bypass_entry_fields, bypass_entry_validate
};

/* deny_senders[]: the same lists, senders required, no checks. */
static int bypass_deny_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	bypass_entry_clear(obj);
	return bypass_entry_build(p, n, obj);
}

static const struct cfg_field bypass_deny_fields[] = {
	{ "recipients", CFG_STRLIST, offsetof(struct bypass_entry, recipients),
	  .doc = "whose list this is: the same items as bypass's recipients (domains, \"*.example.org\", "
	         "local parts, addresses, \"file:/etc/mxgate/deny/customer.example\" re-read on SIGHUP). "
	         "Empty: every recipient" },
	{ "senders", CFG_STRLIST, offsetof(struct bypass_entry, senders), .flags = CFG_REQUIRED,
	  .doc = "the envelope senders (MAIL FROM) refused for them, the same items (a domain, \"*.domain\", "
	         "an address, a local part, file:). The null sender <> matches none" },
	{ NULL }
};

const struct cfg_table bypass_deny_table = {
	"deny_senders[]", sizeof(struct bypass_entry), bypass_deny_fields, bypass_deny_validate
};

/* The entry applies to mail from sender (NULL before MAIL, "" for <>) to addr. */
static bool bypass_entry_covers(const struct bypass_entry *e, const char *sender, const char *addr)
{
	if (e->senders.n > 0 && (sender == NULL || sender[0] == '\0' || !bypass_match_has(&e->from, sender)))
		return false;
	return e->recipients.n == 0 || bypass_match_has(&e->rcpt, addr);
}

int bypass_check_plugin_names(struct cfg_parse *p, struct fy_node *root, const struct bypass_entry *v,
    size_t n, const char *const *names, size_t nnames)
{
	struct fy_node *list = n ? fy_node_pair_value(cfg_map_pair(root, "bypass")) : NULL;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < v[i].checks.n; j++) {
			const char *c = v[i].checks.v[j];
			size_t k = 0;

			if (bypass_check_builtin(c) || bypass_check_is_senderauth(c) || bypass_check_is_screen(c))
				continue;	/* known, or refused by the entry's validate */
			while (k < nnames && strcmp(names[k], c) != 0)
				k++;
			if (k < nnames)
				continue;
			struct fy_node *item = list ? cfg_seq_item(list, i) : NULL;
			size_t old = cfg_path_push_key(p, "bypass", 6);

			cfg_path_push_index(p, i);
			rc = cfg_error_key(p, item && fy_node_is_mapping(item) ? item : root, "checks", (long)j,
			    "\"%s\": no check nor plugins: entry by that name (rules, greylist, clamd, spamd, "
			    "rspamd, milter or a plugin's name:)", c);
			cfg_path_pop(p, old);
		}
	return rc;
}

bool bypass_names(const struct bypass_entry *v, size_t n, const char *check)
{
	for (size_t i = 0; check && i < n; i++)
		for (size_t j = 0; j < v[i].checks.n; j++)
			if (strcmp(v[i].checks.v[j], check) == 0)
				return true;
	return false;
}

bool bypass_rcpt_covered(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    const char *check)
{
	if (addr == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (bypass_names(&v[i], 1, check) && bypass_entry_covers(&v[i], sender, addr))
			return true;
	return false;
}

bool bypass_message_covered(const struct bypass_entry *v, size_t n, const char *sender, const struct rcpt *r,
    size_t nr, const char *check)
{
	if (nr == 0 || !bypass_names(v, n, check))
		return false;
	for (size_t j = 0; j < nr; j++)
		if (!bypass_rcpt_covered(v, n, sender, r[j].addr, check))
			return false;	/* a mixed message (bypass_mixed: check) is checked fully */
	return true;
}

bool bypass_denies(const struct bypass_entry *v, size_t n, const char *sender, const char *addr)
{
	if (addr == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (bypass_entry_covers(&v[i], sender, addr))
			return true;
	return false;
}
