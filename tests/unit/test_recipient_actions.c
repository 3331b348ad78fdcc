/* test_recipient_actions.c — rules.recipient_actions (rules/recipient_actions.c): the entries
 * as the config loads them (a key left out or null is rules.actions', 0 turns one off, an
 * entry without a threshold is refused), the first entry that lists a recipient, and the
 * thresholds and required= it gives. Table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "config.h"
#include "rules/recipient_actions.h"

#define MINIMAL "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"

static const char CONFIG[] = MINIMAL
    "rules:\n"
    "  actions: { add_header: 5, tempfail: 9, reject: 15, greylist: 4 }\n"
    "  recipient_actions:\n"
    "    - { recipients: [strict.example, ceo@corp.example], add_header: 3, reject: 5, greylist: 2 }\n"
    "    - { recipients: [\"*.lenient.example\", abuse], reject: 0, tempfail: ~, greylist: 0 }\n"
    "    - { recipients: [strict.example, corp.example], quarantine: 12 }\n";

struct row {
	const char *label;
	const char *addr;
	size_t entry;           /* 3: none */
	double add_header, tempfail, reject, quarantine, required, greylist;
};

static const struct row rows[] = {
	{ "a domain", "u@strict.example", 0, 3, 9, 5, 0, 3, 2 },
	{ "an address, before its domain's entry", "ceo@corp.example", 0, 3, 9, 5, 0, 3, 2 },
	{ "the first entry wins: the domain's", "u@corp.example", 2, 5, 9, 15, 12, 5, 4 },
	{ "a wildcard, reject 0 off, tempfail null: actions', greylist 0 off", "u@a.lenient.example", 1, 5, 9, 0, 0, 5, 0 },
	{ "a wildcard does not match its own name", "u@lenient.example", 3, 5, 9, 15, 0, 5, 4 },
	{ "a local part of any domain", "Abuse@other.example", 1, 5, 9, 0, 0, 5, 0 },
	{ "no entry: rules.actions", "u@other.example", 3, 5, 9, 15, 0, 5, 4 },
	{ "case and a root dot", "U@STRICT.Example.", 0, 3, 9, 5, 0, 3, 2 },
};

/* recipient_actions_find without the index (the scan every answer is held to): v[0]'s index
 * moved aside for the call. */
static size_t find_scan(struct recipient_actions_entry *v, size_t n, const char *addr)
{
	struct bypass_index *x = v[0].index;
	size_t got;

	v[0].index = NULL;
	got = recipient_actions_find(v, n, addr);
	v[0].index = x;
	return got;
}

static void test_find_and_thresholds(void **state)
{
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	const struct rules_config *rc;
	struct actions_thresholds base = { 0 };

	(void)state;
	if (config_fixture_load(CONFIG, &cfg, &errs) != 0)
		fail_msg("config refused: %s", errs);
	free(errs);
	rc = &cfg->rules;
	assert_int_equal(rc->recipient_actions.n, 3);
	base.add_header = rc->actions.add_header;
	base.tempfail = rc->actions.tempfail;
	base.reject = rc->actions.reject;
	base.quarantine = rc->actions.quarantine;
	base.greylist = rc->actions.greylist;
	assert_true(recipient_actions_greylist(rc->recipient_actions.v, rc->recipient_actions.n));
	assert_false(recipient_actions_greylist(&((struct recipient_actions_entry *)rc->recipient_actions.v)[1], 2));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		const struct recipient_actions_entry *v = rc->recipient_actions.v;
		size_t k = recipient_actions_find(v, rc->recipient_actions.n, r->addr);
		size_t scan = find_scan(rc->recipient_actions.v, rc->recipient_actions.n, r->addr);
		struct actions_thresholds t;

		assert_non_null(v[0].index);
		recipient_actions_thresholds(k < 3 ? &v[k] : NULL, &base, rc->required_score, &t);
		if (k != r->entry || scan != r->entry || t.add_header != r->add_header || t.tempfail != r->tempfail ||
		    t.reject != r->reject || t.quarantine != r->quarantine || t.required != r->required ||
		    t.greylist != r->greylist)
			fail_msg("%s: entry %zu (scan %zu) thresholds %g/%g/%g/%g required %g greylist %g", r->label, k,
			    scan, t.add_header, t.tempfail, t.reject, t.quarantine, t.required, t.greylist);
	}
	config_free(cfg);
}

/* Thousands of customers' entries (docs/operations.md "Hosting many domains"): domains
 * repeated across entries, wildcards, local parts, addresses, a file: list, an empty one (/dev/null);
 * the index (recipient_actions_index_build, at load) and the scan give the first entry that
 * lists each recipient alike. */
static void test_find_many(void **state)
{
	enum { N = 3000, NAMES = 700, WILD = 7 };
	size_t cap = 4096 + (size_t)N * 160, len;
	char *text = malloc(cap), path[] = "/tmp/test_recipient_actions-XXXXXX";
	int fd = mkstemp(path);
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	FILE *f;

	(void)state;
	assert_non_null(text);
	assert_true(fd >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	fprintf(f, "# a customer's list\nc3.example\n*.w2.example\nU7@C9.Example.\nboss\n");
	fclose(f);
	len = (size_t)snprintf(text, cap, MINIMAL "rules:\n  recipient_actions:\n"
	    "    - { recipients: [\"file:/dev/null\"], reject: 1 }\n"
	    "    - { recipients: [\"file:%s\"], reject: 2 }\n", path);
	for (int i = 2; i < N; i++)
		len += (size_t)snprintf(text + len, cap - len, "    - { recipients: [c%d.example, \"*.w%d.example\", u%d%s], reject: %d }\n",
		    i % NAMES, i % WILD, i % 50, i % 13 == 0 ? ", \"x@[192.0.2.1]\"" : i % 17 == 0 ? ", \"@d.example\"" : "",
		    i % 90 + 3);
	if (config_fixture_load(text, &cfg, &errs) != 0)
		fail_msg("config refused: %s", errs);
	free(errs);
	free(text);
	unlink(path);
	struct recipient_actions_entry *v = cfg->rules.recipient_actions.v;
	assert_int_equal(cfg->rules.recipient_actions.n, N);
	assert_non_null(v[0].index);
	for (int k = 0; k < NAMES + 20; k++) {
		char addr[8][80];

		snprintf(addr[0], sizeof(addr[0]), "x@C%d.example.", k);
		snprintf(addr[1], sizeof(addr[1]), "x@s.w%d.example", k % (WILD + 2));
		snprintf(addr[2], sizeof(addr[2]), "U%d@c%d.example", k % 60, k + NAMES);
		snprintf(addr[3], sizeof(addr[3]), "u%d", k % 60);
		snprintf(addr[4], sizeof(addr[4]), "x%d@[192.0.2.%d]", k % 3, k % 3);
		snprintf(addr[5], sizeof(addr[5]), "Boss@q%d.d.example", k);
		snprintf(addr[6], sizeof(addr[6]), "u%d@C%d.EXAMPLE", k % 12, k % 12);
		snprintf(addr[7], sizeof(addr[7]), "x@d.example");
		for (int a = 0; a < 8; a++) {
			size_t got = recipient_actions_find(v, N, addr[a]), scan = find_scan(v, N, addr[a]);

			if (got != scan)
				fail_msg("%s: entry %zu, by the scan %zu", addr[a], got, scan);
		}
	}
	/* spot values: the lowest entry, not any; the file's; the empty list lists none */
	assert_int_equal(recipient_actions_find(v, N, "x@c3.example"), 1);
	assert_int_equal(recipient_actions_find(v, N, "x@c5.example"), 5);
	assert_int_equal(recipient_actions_find(v, N, "u7@c9.example"), 1);
	assert_int_equal(recipient_actions_find(v, N, "x@a.w2.example"), 1);
	assert_int_equal(recipient_actions_find(v, N, "x@a.w3.example"), 3);
	assert_int_equal(recipient_actions_find(v, N, "BOSS"), 1);
	assert_int_equal(recipient_actions_find(v, N, "y@nowhere.example"), N);
	assert_int_equal(recipient_actions_find(v, N, NULL), N);
	config_free(cfg);
}

static void test_required_score(void **state)
{
	struct actions_thresholds base = { 5, 0, 15, 0, 0 }, t;

	(void)state;
	recipient_actions_thresholds(NULL, &base, 6, &t);
	assert_true(t.required == 6);
	base.add_header = 0;
	recipient_actions_thresholds(NULL, &base, 0, &t);
	assert_true(t.required == 5);       /* add_header off: SpamAssassin's 5 */
}

static void test_errors(void **state)
{
	static const struct {
		const char *label, *entries, *want;
	} cases[] = {
		{ "no threshold", "    - { recipients: [a.example] }\n",
		  "rules.recipient_actions[0]: an entry needs a threshold" },
		{ "only nulls", "    - { recipients: [a.example], reject: ~ }\n",
		  "rules.recipient_actions[0]: an entry needs a threshold" },
		{ "no recipients", "    - { reject: 5 }\n", "rules.recipient_actions[0].recipients" },
		{ "a bad item", "    - { recipients: [a.example, \"*\"], reject: 5 }\n",
		  "rules.recipient_actions[0].recipients[1]: \"*\"" },
		{ "out of bounds", "    - { recipients: [a.example], reject: 1e9 }\n",
		  "rules.recipient_actions[0].reject" },
		{ "greylist out of bounds", "    - { recipients: [a.example], greylist: -1e9 }\n",
		  "rules.recipient_actions[0].greylist" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[1024];
		struct mx_config *cfg = NULL;
		char *errs = NULL;

		snprintf(text, sizeof(text), MINIMAL "rules:\n  recipient_actions:\n%s", cases[i].entries);
		if (config_fixture_load(text, &cfg, &errs) == 0 || errs == NULL || strstr(errs, cases[i].want) == NULL ||
		    strncmp(errs, "t.yaml:", 7) != 0)
			fail_msg("%s: %s", cases[i].label, errs ? errs : "(accepted)");
		free(errs);
		config_free(cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_and_thresholds),
		cmocka_unit_test(test_find_many),
		cmocka_unit_test(test_required_score),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
