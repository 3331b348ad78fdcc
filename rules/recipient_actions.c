/* recipient_actions.c — rules.recipient_actions: per-recipient score thresholds
 * (recipient_actions.h). */
#include "recipient_actions.h"

#include <libfyaml.h>
#include <stdlib.h>

static const struct {
	const char *key;
	unsigned bit;
} recipient_actions_keys[] = {
	{ "add_header", RECIPIENT_ACTIONS_ADD_HEADER },
	{ "tempfail", RECIPIENT_ACTIONS_TEMPFAIL },
	{ "reject", RECIPIENT_ACTIONS_REJECT },
	{ "quarantine", RECIPIENT_ACTIONS_QUARANTINE },
	{ "greylist", RECIPIENT_ACTIONS_GREYLIST },
};

void recipient_actions_entries_free(void *v, size_t n)
{
	if (n > 0) {
		bypass_index_free(((struct recipient_actions_entry *)v)[0].index);
		((struct recipient_actions_entry *)v)[0].index = NULL;
	}
	for (size_t i = 0; i < n; i++)
		bypass_match_clear(&((struct recipient_actions_entry *)v)[i].rcpt);
}

/* Notes the thresholds written (a key left out, or null, is rules.actions') and builds the
 * matcher (files read now: a SIGHUP, which loads a new config, re-reads them). */
static int recipient_actions_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct recipient_actions_entry *e = obj;
	int rc = 0;

	bypass_match_clear(&e->rcpt);
	e->given = 0;
	for (size_t i = 0; i < sizeof(recipient_actions_keys) / sizeof(recipient_actions_keys[0]); i++) {
		struct fy_node_pair *kv = cfg_map_pair(n, recipient_actions_keys[i].key);

		if (kv != NULL && !cfg_node_is_null(fy_node_pair_value(kv)))
			e->given |= recipient_actions_keys[i].bit;
	}
	if (e->given == 0)
		rc = cfg_error(p, n, "an entry needs a threshold to change: add_header, greylist, "
		    "tempfail, quarantine or reject (the others are rules.actions')");
	if (bypass_match_build(p, n, "recipients", &e->recipients, &e->rcpt) < 0)
		rc = -1;
	return rc;
}

static const struct cfg_field recipient_actions_fields[] = {
	{ "recipients", CFG_STRLIST, offsetof(struct recipient_actions_entry, recipients), .flags = CFG_REQUIRED,
	  .doc = "whose thresholds these are, written as bypass's: domains (shop.example, \"*.shop.example\", "
	         "\"@shop.example\"), local parts (abuse: abuse@ of every domain), addresses "
	         "(ceo@corp.example), \"file:/etc/mxgate/lenient\" (one a line, re-read on SIGHUP). A "
	         "recipient takes the first entry that lists it" },
	{ "add_header", CFG_DOUBLE, offsetof(struct recipient_actions_entry, add_header), NULL, -1000, 100000,
	  .doc = "as rules.actions.add_header, for these recipients (left out: rules.actions'); a message "
	         "to several recipients is tagged at the lowest of theirs" },
	{ "tempfail", CFG_DOUBLE, offsetof(struct recipient_actions_entry, tempfail), NULL, -1000, 100000,
	  .doc = "as rules.actions.tempfail, for these recipients (left out: rules.actions'; 0 = off)" },
	{ "reject", CFG_DOUBLE, offsetof(struct recipient_actions_entry, reject), NULL, -1000, 100000,
	  .doc = "as rules.actions.reject, for these recipients (left out: rules.actions'; 0 = off); a "
	         "message to several recipients is refused only where every one's policy refuses it" },
	{ "quarantine", CFG_DOUBLE, offsetof(struct recipient_actions_entry, quarantine), NULL, -1000, 100000,
	  .doc = "as rules.actions.quarantine, for these recipients (left out: rules.actions'; 0 = off)" },
	{ "greylist", CFG_DOUBLE, offsetof(struct recipient_actions_entry, greylist), NULL, -1000, 100000,
	  .doc = "as rules.actions.greylist, for these recipients (left out: rules.actions'; 0 = off); a "
	         "message to several recipients is greylisted only where no recipient's policy delivers it "
	         "at once" },
	{ .key = NULL }
};

const struct cfg_table recipient_actions_entry_table = {
	"rules.recipient_actions[]", sizeof(struct recipient_actions_entry), recipient_actions_fields,
	recipient_actions_validate
};

/* bypass_index_new's match: every entry names its recipients (an empty matcher: none). */
static const struct bypass_match *recipient_actions_rcpt(const void *v, size_t i)
{
	return &((const struct recipient_actions_entry *)v)[i].rcpt;
}

int recipient_actions_index_build(struct recipient_actions_entry *v, size_t n)
{
	return n == 0 ? 0 : bypass_index_replace(&v[0].index, v, n, recipient_actions_rcpt);
}

struct recipient_actions_is_arg {
	const struct recipient_actions_entry *v;
	const char *addr;
};

/* bypass_index_first's is: entry i lists the address. */
static bool recipient_actions_is(const void *arg, size_t i)
{
	const struct recipient_actions_is_arg *a = arg;

	return bypass_match_has(&a->v[i].rcpt, a->addr);
}

size_t recipient_actions_find(const struct recipient_actions_entry *v, size_t n, const char *addr)
{
	if (addr == NULL)
		return n;
	if (n > 0 && bypass_index_size(v[0].index) == n) {	/* built for these n */
		struct recipient_actions_is_arg a = { v, addr };
		long i = bypass_index_first(v[0].index, addr, recipient_actions_is, &a);

		return i < 0 ? n : (size_t)i;
	}
	for (size_t i = 0; i < n; i++)
		if (bypass_match_has(&v[i].rcpt, addr))
			return i;
	return n;
}

bool recipient_actions_greylist(const struct recipient_actions_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((v[i].given & RECIPIENT_ACTIONS_GREYLIST) && v[i].greylist > 0)
			return true;
	return false;
}

void recipient_actions_thresholds(const struct recipient_actions_entry *e, const struct actions_thresholds *base,
    double required_score, struct actions_thresholds *out)
{
	*out = *base;
	if (e != NULL) {
		if (e->given & RECIPIENT_ACTIONS_ADD_HEADER)
			out->add_header = e->add_header;
		if (e->given & RECIPIENT_ACTIONS_TEMPFAIL)
			out->tempfail = e->tempfail;
		if (e->given & RECIPIENT_ACTIONS_REJECT)
			out->reject = e->reject;
		if (e->given & RECIPIENT_ACTIONS_QUARANTINE)
			out->quarantine = e->quarantine;
		if (e->given & RECIPIENT_ACTIONS_GREYLIST)
			out->greylist = e->greylist;
	}
	out->required = required_score > 0 ? required_score : out->add_header > 0 ? out->add_header : 5.0;
}
