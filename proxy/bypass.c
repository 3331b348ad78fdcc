/* bypass.c — per-recipient bypass of content checks (bypass.h). */
#include "bypass.h"

#include <ctype.h>
#include <libfyaml.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "siphash.h"
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
	struct bypass_entry *e = v;

	if (n > 0) {
		bypass_index_free(e[0].index);
		e[0].index = NULL;
	}
	for (size_t i = 0; i < n; i++)
		bypass_entry_clear(e + i);
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

/* ---- the index: a list's entries by what their recipients name -------------------------- */

/* A local part longer than this is not indexed (an item's: it is looked at for every
 * recipient; an address's: only such items can be its). RFC 5321 4.5.3.1.1: 64 octets. */
#define BYPASS_LOCAL_MAX 256

/* Entry numbers, ascending, each once. */
struct bypass_ids {
	uint32_t *v;
	size_t n, cap;
};

struct bypass_slot {
	char *key;                      /* NULL: empty */
	struct bypass_ids ids;
};

/* Open addressing over the keys, at most half full. */
struct bypass_map {
	struct bypass_slot *slot;
	size_t cap;                     /* a power of two, or 0 */
	size_t n;
};

struct bypass_index {
	size_t n;                       /* the entries it was built for */
	struct bypass_ids every;        /* entries without recipients, and long local parts */
	struct bypass_map exact;        /* domain items in normal form ("example.org") */
	struct bypass_map below;        /* "*.example.org" as "example.org" */
	struct bypass_map local;        /* local part items, case folded ("abuse") */
	struct bypass_map addr;         /* address items: local part folded, '@', domain normal */
	const char **checks;            /* the names the entries' checks give, each once (borrowed) */
	size_t nchecks;
};

/* Appends id (entries are added in order: a repeat is the last one). 0 or -1. */
static int bypass_ids_add(struct bypass_ids *l, uint32_t id)
{
	if (l->n > 0 && l->v[l->n - 1] == id)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 2;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
	return 0;
}

/* The slot of k[0..n), or the empty one where it goes. m->cap > 0. The home slot is keyed
 * (siphash.h): a recipient's domain and local part are a client's to choose, and the items
 * may come from a list others feed. */
static size_t bypass_map_find(const struct bypass_map *m, const char *k, size_t n)
{
	size_t i = (size_t)siphash_mem(k, n) & (m->cap - 1);

	while (m->slot[i].key != NULL && (strncmp(m->slot[i].key, k, n) != 0 || m->slot[i].key[n] != '\0'))
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* The entries under k[0..n), or NULL. */
static const struct bypass_ids *bypass_map_get(const struct bypass_map *m, const char *k, size_t n)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	i = bypass_map_find(m, k, n);
	return m->slot[i].key ? &m->slot[i].ids : NULL;
}

static int bypass_map_grow(struct bypass_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct bypass_map nm = { calloc(cap, sizeof(struct bypass_slot)), cap, m->n };

	if (nm.slot == NULL)
		return -1;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slot[i].key != NULL)
			nm.slot[bypass_map_find(&nm, m->slot[i].key, strlen(m->slot[i].key))] = m->slot[i];
	free(m->slot);
	*m = nm;
	return 0;
}

/* Adds entry id under key (copied). 0 or -1. */
static int bypass_map_add(struct bypass_map *m, const char *key, uint32_t id)
{
	size_t n = strlen(key), i;

	if ((m->n + 1) * 2 > m->cap && bypass_map_grow(m) != 0)
		return -1;
	i = bypass_map_find(m, key, n);
	if (m->slot[i].key == NULL) {
		if ((m->slot[i].key = strdup(key)) == NULL)
			return -1;
		m->n++;
	}
	return bypass_ids_add(&m->slot[i].ids, id);
}

static void bypass_map_free(struct bypass_map *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		free(m->slot[i].key);
		free(m->slot[i].ids.v);
	}
	free(m->slot);
}

/* See bypass.h. */
void bypass_index_free(struct bypass_index *x)
{
	if (x == NULL)
		return;
	free(x->every.v);
	bypass_map_free(&x->exact);
	bypass_map_free(&x->below);
	bypass_map_free(&x->local);
	bypass_map_free(&x->addr);
	free(x->checks);
	free(x);
}

/* The key of a local part lp[0..n) (n < BYPASS_LOCAL_MAX) into out: folded as strncasecmp
 * compares (domain_address_listed); with domain (a normal form, may be NULL) "@domain" after.
 * out holds BYPASS_LOCAL_MAX + DOMAIN_MAX + 2 octets. */
static void bypass_local_key(char *out, const char *lp, size_t n, const char *domain)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)lp[i]);
	out[n] = '\0';
	if (domain != NULL) {
		out[n] = '@';
		strcpy(out + n + 1, domain);
	}
}

struct bypass_index_add {
	struct bypass_index *x;
	uint32_t id;
};

/* domain_set_each's fn: one domain item of entry a->id. */
static int bypass_index_domain_cb(void *arg, const char *name, bool below)
{
	struct bypass_index_add *a = arg;

	return bypass_map_add(below ? &a->x->below : &a->x->exact, name, a->id);
}

/* Entry id's local part and address items (as domain_address_listed reads them). 0 or -1. */
static int bypass_index_locals(struct bypass_index *x, const struct bypass_match *m, uint32_t id)
{
	char key[BYPASS_LOCAL_MAX + DOMAIN_MAX + 2], dom[DOMAIN_MAX + 1];

	for (size_t j = 0; j < m->locals.n; j++) {
		const char *item = m->locals.v[j], *at = strrchr(item, '@');
		size_t n = at ? (size_t)(at - item) : strlen(item);

		if (n >= BYPASS_LOCAL_MAX) {
			if (bypass_ids_add(&x->every, id) != 0)
				return -1;
			continue;
		}
		if (at != NULL && domain_normalize(at + 1, strlen(at + 1), dom, sizeof(dom)) < 0)
			continue;	/* domain_equal is false for it: never matches */
		bypass_local_key(key, item, n, at ? dom : NULL);
		if (bypass_map_add(at ? &x->addr : &x->local, key, id) != 0)
			return -1;
	}
	return 0;
}

/* See bypass.h. */
struct bypass_index *bypass_index_new(const void *v, size_t n, bypass_index_match_fn match)
{
	struct bypass_index *x;

	if (n > UINT32_MAX || (x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	x->n = n;
	for (size_t i = 0; i < n; i++) {
		struct bypass_index_add a = { x, (uint32_t)i };
		const struct bypass_match *m = match(v, i);

		if (m == NULL) {
			if (bypass_ids_add(&x->every, a.id) != 0)
				goto fail;
		} else if (domain_set_each(m->domains, bypass_index_domain_cb, &a) != 0 ||
		    bypass_index_locals(x, m, a.id) != 0) {
			goto fail;
		}
	}
	return x;
fail:
	bypass_index_free(x);
	return NULL;
}

/* bypass_index_new's match for a bypass: or deny_senders: list: NULL (every recipient) for
 * an entry without recipients. */
static const struct bypass_match *bypass_entry_rcpt(const void *v, size_t i)
{
	const struct bypass_entry *e = (const struct bypass_entry *)v + i;

	return e->recipients.n == 0 ? NULL : &e->rcpt;
}

/* See bypass.h. */
int bypass_index_replace(struct bypass_index **at, const void *v, size_t n, bypass_index_match_fn match)
{
	bypass_index_free(*at);
	*at = NULL;
	if (n == 0 || n > UINT32_MAX)
		return 0;	/* the scan */
	return (*at = bypass_index_new(v, n, match)) != NULL ? 0 : -1;
}

/* See bypass.h. */
int bypass_index_build(struct bypass_entry *v, size_t n)
{
	struct bypass_index *x;

	if (n == 0 || bypass_index_replace(&v[0].index, v, n, bypass_entry_rcpt) < 0)
		return n == 0 ? 0 : -1;
	if ((x = v[0].index) == NULL)
		return 0;	/* the scan */
	v[0].index = NULL;	/* hung again once the checks are read */
	for (size_t i = 0; i < n; i++) {
		const struct bypass_entry *e = &v[i];

		for (size_t j = 0; j < e->checks.n; j++) {
			size_t k = 0;

			while (k < x->nchecks && strcmp(x->checks[k], e->checks.v[j]) != 0)
				k++;
			if (k < x->nchecks)
				continue;
			const char **c = realloc(x->checks, (x->nchecks + 1) * sizeof(*c));
			if (c == NULL)
				goto fail;
			x->checks = c;
			x->checks[x->nchecks++] = e->checks.v[j];
		}
	}
	v[0].index = x;
	return 0;
fail:
	bypass_index_free(x);
	return -1;
}

/* v[0]'s index when it was built for these n entries, else NULL. */
static const struct bypass_index *bypass_index_of(const struct bypass_entry *v, size_t n)
{
	return n > 0 && v[0].index != NULL && v[0].index->n == n ? v[0].index : NULL;
}

/* Entry i is the answer bypass_first looks for. */
static bool bypass_entry_is(const struct bypass_entry *v, size_t i, const char *sender, const char *addr,
    const char *check)
{
	return (check == NULL || bypass_names(&v[i], 1, check)) && bypass_entry_covers(&v[i], sender, addr);
}

/* The candidate lists of addr in x (the entries without recipients, its domain's, each "*."
 * parent's, its local part's, its address's) into l (4 + DOMAIN_MAX); their number. */
static size_t bypass_index_lists(const struct bypass_index *x, const char *addr, const struct bypass_ids **l)
{
	char dom[DOMAIN_MAX + 1], key[BYPASS_LOCAL_MAX + DOMAIN_MAX + 2];
	const char *at = strrchr(addr, '@');
	size_t nl = 0, lp = at ? (size_t)(at - addr) : strlen(addr);
	int nd = at ? domain_normalize(at + 1, strlen(at + 1), dom, sizeof(dom)) : -1;

	l[nl++] = &x->every;
	if (nd >= 0) {	/* as domain_set_match */
		l[nl++] = bypass_map_get(&x->exact, dom, (size_t)nd);
		for (int i = 0; dom[0] != '[' && x->below.n > 0 && i < nd; i++)
			if (dom[i] == '.')
				l[nl++] = bypass_map_get(&x->below, dom + i + 1, (size_t)(nd - i - 1));
	}
	if (lp < BYPASS_LOCAL_MAX) {	/* as domain_address_listed */
		bypass_local_key(key, addr, lp, NULL);
		l[nl++] = bypass_map_get(&x->local, key, lp);
		if (nd >= 0) {
			bypass_local_key(key, addr, lp, dom);
			l[nl++] = bypass_map_get(&x->addr, key, lp + 1 + (size_t)nd);
		}
	}
	return nl;
}

/* See bypass.h. */
size_t bypass_index_size(const struct bypass_index *x)
{
	return x ? x->n : 0;
}

/* The longest probe a lookup of a key m holds takes (slots looked at). */
static size_t bypass_map_longest_probe(const struct bypass_map *m)
{
	size_t most = 0;

	for (size_t i = 0; i < m->cap; i++) {
		if (m->slot[i].key == NULL)
			continue;
		size_t home = (size_t)siphash_str(m->slot[i].key) & (m->cap - 1);
		size_t probe = ((i - home) & (m->cap - 1)) + 1;

		if (probe > most)
			most = probe;
	}
	return most;
}

size_t bypass_index_longest_probe(const struct bypass_index *x)
{
	const struct bypass_map *m[4] = { &x->exact, &x->below, &x->local, &x->addr };
	size_t most = 0;

	for (size_t i = 0; i < 4; i++) {
		size_t p = bypass_map_longest_probe(m[i]);

		if (p > most)
			most = p;
	}
	return most;
}

/* See bypass.h. */
long bypass_index_first(const struct bypass_index *x, const char *addr, bypass_index_is_fn is, const void *arg)
{
	const struct bypass_ids *l[4 + DOMAIN_MAX];
	size_t pos[4 + DOMAIN_MAX] = { 0 }, nl;

	if (addr == NULL)
		return -1;
	/* the candidates in entry order: merge the lists, lowest first */
	nl = bypass_index_lists(x, addr, l);
	for (;;) {
		uint32_t id = UINT32_MAX;
		bool any = false;

		for (size_t k = 0; k < nl; k++)
			if (l[k] != NULL && pos[k] < l[k]->n && (!any || l[k]->v[pos[k]] < id)) {
				id = l[k]->v[pos[k]];
				any = true;
			}
		if (!any)
			return -1;
		if (is(arg, id))
			return (long)id;
		for (size_t k = 0; k < nl; k++)
			if (l[k] != NULL && pos[k] < l[k]->n && l[k]->v[pos[k]] == id)
				pos[k]++;
	}
}

struct bypass_first_arg {
	const struct bypass_entry *v;
	const char *sender, *addr, *check;
};

/* bypass_index_first's is for bypass_first. */
static bool bypass_first_is(const void *arg, size_t i)
{
	const struct bypass_first_arg *a = arg;

	return bypass_entry_is(a->v, i, a->sender, a->addr, a->check);
}

/* See bypass.h. */
long bypass_first(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    const char *check)
{
	const struct bypass_index *x = bypass_index_of(v, n);
	struct bypass_first_arg a = { v, sender, addr, check };

	if (addr == NULL)
		return -1;
	if (x != NULL)
		return bypass_index_first(x, addr, bypass_first_is, &a);
	for (size_t i = 0; i < n; i++)
		if (bypass_entry_is(v, i, sender, addr, check))
			return (long)i;
	return -1;
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
	const struct bypass_index *x = bypass_index_of(v, n);

	if (x != NULL) {
		for (size_t k = 0; check && k < x->nchecks; k++)
			if (strcmp(x->checks[k], check) == 0)
				return true;
		return false;
	}
	for (size_t i = 0; check && i < n; i++)
		for (size_t j = 0; j < v[i].checks.n; j++)
			if (strcmp(v[i].checks.v[j], check) == 0)
				return true;
	return false;
}

bool bypass_rcpt_covered(const struct bypass_entry *v, size_t n, const char *sender, const char *addr,
    const char *check)
{
	return check != NULL && bypass_first(v, n, sender, addr, check) >= 0;
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
	return bypass_first(v, n, sender, addr, NULL) >= 0;
}
