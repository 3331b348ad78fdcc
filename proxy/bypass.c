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

/* Adds one recipient item (not file:) to e. NULL, or the reason it is refused (static). */
static const char *bypass_add_item(struct bypass_entry *e, const char *item)
{
	const char *at = strchr(item, '@'), *why;

	if (item[0] == '\0' || strpbrk(item, " \t<>\"") != NULL)
		return "not a domain, a local part nor an address";
	if (item[0] == '@' || (at == NULL && bypass_item_is_domain(item))) {
		if (e->domains == NULL && (e->domains = domain_set_new()) == NULL)
			return "out of memory";
		return domain_set_add(e->domains, item[0] == '@' ? item + 1 : item, &why) != 0 ? why : NULL;
	}
	if (at != NULL && (at[1] == '\0' || strchr(at + 1, '@') != NULL))
		return "not an address (user@example.org)";
	char **v = realloc(e->locals.v, (e->locals.n + 1) * sizeof(*v));
	if (v == NULL)
		return "out of memory";
	e->locals.v = v;
	if ((v[e->locals.n] = strdup(item)) == NULL)
		return "out of memory";
	e->locals.n++;
	return NULL;
}

/* bypass_add_item as a cfg_read_list_file callback. */
static const char *bypass_file_add(void *e, const char *item)
{
	return bypass_add_item(e, item);
}

static void bypass_entry_clear(struct bypass_entry *e)
{
	domain_set_free(e->domains);
	e->domains = NULL;
	for (size_t i = 0; i < e->locals.n; i++)
		free(e->locals.v[i]);
	free(e->locals.v);
	e->locals = (struct cfg_strlist){ 0 };
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
	for (size_t i = 0; i < e->recipients.n; i++) {
		const char *item = e->recipients.v[i], *why;

		if (strncmp(item, "file:", 5) == 0) {
			if (cfg_read_list_file(p, n, "recipients", i, item + 5, bypass_file_add, e) < 0)
				rc = -1;
		} else if ((why = bypass_add_item(e, item)) != NULL) {
			rc = cfg_error_key(p, n, "recipients", (long)i, "\"%s\": %s", item, why);
		}
	}
	return rc;
}

static const struct cfg_field bypass_entry_fields[] = {
	{ "recipients", CFG_STRLIST, offsetof(struct bypass_entry, recipients), .flags = CFG_REQUIRED,
	  .doc = "who: domains (example.org, \"*.example.org\", \"@example.org\"), local parts (abuse: abuse@ "
	         "of every domain), addresses (spamtrap@example.org), \"file:/etc/mxgate/nofilter\" (one a "
	         "line, re-read on SIGHUP); an item without @ is a domain when it has a dot" },
	{ "checks", CFG_STRLIST, offsetof(struct bypass_entry, checks), .flags = CFG_REQUIRED,
	  .doc = "what is not run for them: rules, greylist, clamd, spamd, rspamd (-t warns of clamd)" },
	{ NULL }
};

const struct cfg_table bypass_entry_table = {
	"bypass[]", sizeof(struct bypass_entry), bypass_entry_fields, bypass_entry_validate
};

static bool bypass_entry_covers(const struct bypass_entry *e, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at != NULL && e->domains != NULL && domain_set_match(e->domains, at + 1))
		return true;
	/* as exempt_recipients: an item with @ is the address, one without a local part */
	return domain_address_listed(e->locals.v, e->locals.n, addr);
}

bool bypass_rcpt_covered(const struct bypass_entry *v, size_t n, const char *addr, int check)
{
	if (addr == NULL || check < 0 || check >= BYPASS_NCHECKS)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((v[i].mask & (1u << check)) && bypass_entry_covers(&v[i], addr))
			return true;
	return false;
}

unsigned bypass_message_mask(const struct bypass_entry *v, size_t n, const struct rcpt *r, size_t nr)
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
			if ((v[i].mask & mask & ~has) && bypass_entry_covers(&v[i], r[j].addr))
				has |= v[i].mask;
		mask &= has;
	}
	return mask;
}
