/* config_fixture.h — a unit test's config loaded from text: config_load_string with its
 * errors caught in a string (the FILE:LINE:COL lines -t prints), for the tests of config
 * tables (test_config, test_bypass, test_domain, test_recipient_actions). */
#ifndef MX_TEST_CONFIG_FIXTURE_H
#define MX_TEST_CONFIG_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "config.h"

/* Loads text as "t.yaml" into *cfg; *errs gets what the load reported (malloc'd, the
 * caller frees it). Returns config_load_string's result. */
static inline int config_fixture_load(const char *text, struct mx_config **cfg, char **errs)
{
	size_t len = 0;
	FILE *f = open_memstream(errs, &len);
	int rc;

	assert_non_null(f);
	rc = config_load_string("t.yaml", text, strlen(text), cfg, f);
	fclose(f);
	return rc;
}

#endif
