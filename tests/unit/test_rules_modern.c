/* test_rules_modern.c — mail unlike the 2002 public corpus (tests/data/modern/: today's
 * Received chains, DKIM/ARC, RFC 2047/2231, ESP newsletters, DSNs, S/MIME, IDN, phishing;
 * made by gen_modern.py, see its README) scored with the stock rules, against every rule
 * SpamAssassin 4.0.1 hit on it (sa-hits.tsv, __ sub-rules included): each rule mxgate hits
 * is one SA hit, and each rule SA hit is one mxgate hits or cannot know (a "?" rule: only
 * the template rules of SA 4's capture feature and the metas over them, whose result in SA
 * depends on what its process scanned before; docs/rules.md). Skipped when the stock rules
 * are not installed, except under CI=true. */
#include "eval_testlib.h"

#include <unistd.h>

/* The rules mxgate may leave unknown: the stock template rules over %{GB_TO_ADDR} and
 * the meta over them. */
static const char *const may_be_unknown =
    ",GB_CUSTOM_HTM_URI,T_GB_STORAGE_GOOGLE_EMAIL,T_GB_YOUTUBE_EMAIL,__GB_CUSTOM_HTM_URI0,"
    "__GB_CUSTOM_HTM_URI1,__GB_CUSTOM_HTM_URI2,__GB_DRUPAL_URI,";

struct seen { char known[16384], unknown[4096]; };

static void collect(const char *name, double value, void *arg)
{
	struct seen *s = arg;
	char *l = value != value ? s->unknown : s->known;
	size_t cap = value != value ? sizeof(s->unknown) : sizeof(s->known), n = strlen(l);

	snprintf(l + n, cap - n, "%s,", name);
}

static void test_modern_sample(void **state)
{
	const char *g[1] = { "/usr/share/spamassassin/*.cf" };
	struct rules_opts o = { .client_relay = false, .hostname = "localhost" };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	char path[1024];
	static char line[65536];
	size_t nmsg = 0, bad = 0, with_unknown = 0;
	FILE *tsv;

	(void)state;
	if (access("/usr/share/spamassassin/50_scores.cf", R_OK) != 0) {
		const char *ci = getenv("CI");

		if (ci && strcmp(ci, "true") == 0)
			fail_msg("stock SpamAssassin rules not installed (CI=true: no skip)");
		skip();
	}
	rules_set_load_opts(g, 1, &rs, NULL, RULES_PREFILTER_SYNC, &o);
	assert_non_null(rs);
	sc = rules_scratch_new(rs);
	assert_non_null(sc);
	snprintf(path, sizeof(path), "%s/tests/data/modern/sa-hits.tsv", et_srcdir());
	tsv = fopen(path, "r");
	assert_non_null(tsv);
	while (fgets(line, sizeof(line), tsv)) {
		char *name, *score, *tests, *save = NULL;
		static char want[65536];
		static struct seen got;
		struct rules_result res;
		size_t len = 0;
		char *msg;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\n")] = '\0';
		name = strtok_r(line, "\t", &save);
		score = strtok_r(NULL, "\t", &save);
		tests = strtok_r(NULL, "\t", &save);
		assert_non_null(score);
		snprintf(want, sizeof(want), ",%s,", tests ? tests : "");
		snprintf(path, sizeof(path), "%s/tests/data/modern/msg/%s", et_srcdir(), name);
		msg = et_slurp(path, &len);
		assert_non_null(msg);
		strcpy(got.known, ",");
		strcpy(got.unknown, ",");
		rules_set_scan(rs, sc, msg, len, NULL, NULL, 0, &res);
		rules_scratch_foreach_hit(rs, sc, collect, &got);
		nmsg++;
		with_unknown += got.unknown[1] != '\0';
		for (char *p = got.known + 1, *e; *p; p = e + 1) {
			e = strchr(p, ',');
			*e = '\0';
			if (!et_in_list(want, p)) {
				print_message("%s: %s hit, SpamAssassin did not\n", name, p);
				bad++;
			}
			*e = ',';
		}
		for (char *p = got.unknown + 1, *e; *p; p = e + 1) {
			e = strchr(p, ',');
			*e = '\0';
			if (!et_in_list(may_be_unknown, p)) {
				print_message("%s: %s unknown to mxgate\n", name, p);
				bad++;
			}
			*e = ',';
		}
		for (char *p = want + 1, *e; *p; p = e + 1) {
			e = strchr(p, ',');
			*e = '\0';
			if (*p && !et_in_list(got.known, p) && !et_in_list(got.unknown, p)) {
				print_message("%s: SpamAssassin hit %s, mxgate did not\n", name, p);
				bad++;
			}
			*e = ',';
		}
		rules_result_free(&res);
		free(msg);
	}
	fclose(tsv);
	print_message("modern sample: %zu messages, %zu rule disagreements, %zu with unknown "
	    "template rules\n", nmsg, bad, with_unknown);
	assert_true(nmsg >= 70);
	assert_int_equal(bad, 0);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modern_sample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
