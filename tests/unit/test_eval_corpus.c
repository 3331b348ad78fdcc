/* test_eval_corpus.c — the committed sample of the SpamAssassin public corpus
 * (tests/data/corpus/, see its README) scored with the stock rules, against the spamd
 * results pinned in spamd-hits.tsv: every rule mxgate fires must be one spamd fired too, and
 * the sample's exact agreement (same rules, same score) must not drop below the pinned floor.
 * Skipped when the stock rules (/usr/share/spamassassin) are not installed. */
#include "eval_testlib.h"

#include <math.h>
#include <unistd.h>

#define CORPUS_MIN_EXACT 35      /* of 35 messages: hits and score identical to spamd's */

struct hits { char list[8192]; };

static void collect(const char *name, double value, void *arg)
{
	struct hits *h = arg;
	size_t n = strlen(h->list);

	if (strncmp(name, "__", 2) == 0 || value != value)
		return;
	snprintf(h->list + n, sizeof(h->list) - n, "%s,", name);
}

static void test_corpus_sample(void **state)
{
	const char *g[1] = { "/usr/share/spamassassin/*.cf" };
	struct rules_opts o = { .client_relay = false, .hostname = "localhost" };
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	char path[1024], line[8192];
	size_t nmsg = 0, exact = 0, extra = 0;
	FILE *tsv;

	(void)state;
	if (access("/usr/share/spamassassin/50_scores.cf", R_OK) != 0)
		skip();
	rules_set_load_opts(g, 1, &rs, NULL, RULES_PREFILTER_SYNC, &o);
	assert_non_null(rs);
	sc = rules_scratch_new(rs);
	assert_non_null(sc);
	snprintf(path, sizeof(path), "%s/tests/data/corpus/spamd-hits.tsv", et_srcdir());
	tsv = fopen(path, "r");
	assert_non_null(tsv);
	while (fgets(line, sizeof(line), tsv)) {
		char *name, *score, *tests, *save = NULL, want[8192];
		struct rules_result res;
		struct hits got = { "," };
		size_t len = 0;
		char *msg;
		bool same = true;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\n")] = '\0';
		name = strtok_r(line, "\t", &save);
		score = strtok_r(NULL, "\t", &save);
		tests = strtok_r(NULL, "\t", &save);
		assert_non_null(score);
		snprintf(want, sizeof(want), ",%s,", tests ? tests : "");
		snprintf(path, sizeof(path), "%s/tests/data/corpus/%s", et_srcdir(), name);
		msg = et_slurp(path, &len);
		assert_non_null(msg);
		rules_set_scan(rs, sc, msg, len, NULL, NULL, 0, &res);
		rules_scratch_foreach_hit(rs, sc, collect, &got);
		nmsg++;
		/* mxgate's hits are spamd's hits */
		for (char *p = got.list + 1, *e; *p; p = e + 1) {
			e = strchr(p, ',');
			*e = '\0';
			if (!et_in_list(want, p)) {
				print_message("%s: %s hit, spamd did not\n", name, p);
				extra++;
				same = false;
			}
			*e = ',';
		}
		/* and the other way round, for the agreement figure */
		for (char *p = want + 1, *e; *p; p = e + 1) {
			e = strchr(p, ',');
			*e = '\0';
			if (*p && !et_in_list(got.list, p)) {
				print_message("%s: spamd hit %s, mxgate did not\n", name, p);
				same = false;
			}
			*e = ',';
		}
		if (fabs(res.score - strtod(score, NULL)) > 0.051) {
			print_message("%s: score %.2f, spamd %s\n", name, res.score, score);
			same = false;
		}
		exact += same;
		rules_result_free(&res);
		free(msg);
	}
	fclose(tsv);
	print_message("corpus sample: %zu messages, %zu scored exactly as spamd\n", nmsg, exact);
	assert_true(nmsg >= 30);
	assert_int_equal(extra, 0);
	assert_true(exact >= CORPUS_MIN_EXACT);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_sample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
