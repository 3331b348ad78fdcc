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
#include <cmocka.h>

#include "config_fixture.h"
#include "config.h"
#include "rules/recipient_actions.h"

#define MINIMAL "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"

static const char CONFIG[] = MINIMAL
    "rules:\n"
    "  actions: { add_header: 5, tempfail: 9, reject: 15 }\n"
    "  recipient_actions:\n"
    "    - { recipients: [strict.example, ceo@corp.example], add_header: 3, reject: 5 }\n"
    "    - { recipients: [\"*.lenient.example\", abuse], reject: 0, tempfail: ~ }\n"
    "    - { recipients: [strict.example, corp.example], quarantine: 12 }\n";

struct row {
	const char *label;
	const char *addr;
	size_t entry;           /* 3: none */
	double add_header, tempfail, reject, quarantine, required;
};

static const struct row rows[] = {
	{ "a domain", "u@strict.example", 0, 3, 9, 5, 0, 3 },
	{ "an address, before its domain's entry", "ceo@corp.example", 0, 3, 9, 5, 0, 3 },
	{ "the first entry wins: the domain's", "u@corp.example", 2, 5, 9, 15, 12, 5 },
	{ "a wildcard, reject 0 off, tempfail null: actions'", "u@a.lenient.example", 1, 5, 9, 0, 0, 5 },
	{ "a wildcard does not match its own name", "u@lenient.example", 3, 5, 9, 15, 0, 5 },
	{ "a local part of any domain", "Abuse@other.example", 1, 5, 9, 0, 0, 5 },
	{ "no entry: rules.actions", "u@other.example", 3, 5, 9, 15, 0, 5 },
	{ "case and a root dot", "U@STRICT.Example.", 0, 3, 9, 5, 0, 3 },
};

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
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		const struct recipient_actions_entry *v = rc->recipient_actions.v;
		size_t k = recipient_actions_find(v, rc->recipient_actions.n, r->addr);
		struct actions_thresholds t;

		recipient_actions_thresholds(k < 3 ? &v[k] : NULL, &base, rc->required_score, &t);
		if (k != r->entry || t.add_header != r->add_header || t.tempfail != r->tempfail ||
		    t.reject != r->reject || t.quarantine != r->quarantine || t.required != r->required)
			fail_msg("%s: entry %zu thresholds %g/%g/%g/%g required %g", r->label, k,
			    t.add_header, t.tempfail, t.reject, t.quarantine, t.required);
	}
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
		cmocka_unit_test(test_required_score),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
