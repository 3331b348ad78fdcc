/* test_greylist_oom.c — greylisting's local table out of memory (its entry's calloc fails,
 * this executable is linked with -Wl,--wrap=calloc: CMakeLists.txt): the recipient is let
 * through (never refuse mail for greylisting's own failure), counted as
 * mxgate_greylist_errors_total{reason="no_memory"} and not as a passed triplet. Before, the
 * pass was counted in mxgate_greylist_passed_total and nothing was logged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/greylist.h"
#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/metrics.h"

/* While armed, a calloc of at least fail_min bytes fails: only the local table's entry for
 * the long key below is that large on a RCPT's path. */
static size_t fail_min;
static int failed;
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

void *__wrap_calloc(size_t n, size_t size)
{
	if (fail_min > 0 && size >= fail_min / (n ? n : 1)) {
		failed++;
		return NULL;
	}
	return __real_calloc(n, size);
}

struct chain_result { bool done; struct verdict v; };

static void chain_done_cb(void *arg, const struct verdict *v)
{
	struct chain_result *r = arg;

	r->done = true;
	r->v = *v;
}

static enum verdict_action rcpt(struct chain_modules *mods, uv_loop_t *loop, const struct mx_config *cfg,
    const char *from, const char *to)
{
	struct hook_env env;
	struct chain ch;
	struct chain_result res = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&env.client;

	memset(&env, 0, sizeof(env));
	env.session_id = "test";
	env.loop = loop;
	env.cfg = cfg;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "198.18.7.7", &sin->sin_addr);
	snprintf(env.client_ip, sizeof(env.client_ip), "198.18.7.7");
	env.mail_from = (char *)from;
	env.cur_rcpt = to;
	chain_init(&ch, mods, &env, NULL);
	chain_run(&ch, HOOK_RCPT, chain_done_cb, &res);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_true(res.done);
	chain_release(&ch);
	hook_env_free_outputs(&env);
	return res.v.action;
}

static double series(const char *name)
{
	size_t len;
	char *text = metrics_render(NULL, &len), *at, line[200];
	double v = -1;

	assert_non_null(text);
	snprintf(line, sizeof(line), "\n%s ", name);     /* the sample, not its # HELP */
	if ((at = strstr(text, line)) != NULL)
		v = atof(at + strlen(line));
	free(text);
	return v;
}

static void test_local_table_oom(void **state)
{
	static const char yaml[] = "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: "
	    "[\"smtp://127.0.0.1:2526\"] }\ngreylist: { enabled: true, delay: 5m }\n";
	struct mx_config *cfg = NULL;
	struct chain_modules mods;
	uv_loop_t loop;
	char from[300], to[300];

	(void)state;
	/* a triplet of ~600 octets: its table entry is the only calloc that large */
	memset(from, 'f', sizeof(from));
	memcpy(from + 280, "@example.org", 13);
	memset(to, 't', sizeof(to));
	memcpy(to + 280, "@example.test", 14);
	greylist_metrics();
	assert_int_equal(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, stderr), 0);
	uv_loop_init(&loop);
	chain_modules_init(&mods, cfg, &loop, 0);

	/* a short triplet: greylisted as always */
	assert_int_equal(rcpt(&mods, &loop, cfg, "a@example.org", "b@example.test"), VERDICT_TEMPFAIL);
	fail_min = 560;
	assert_int_equal(rcpt(&mods, &loop, cfg, from, to), VERDICT_CONTINUE);
	assert_int_equal(rcpt(&mods, &loop, cfg, from, to), VERDICT_CONTINUE);
	fail_min = 0;
	assert_true(failed >= 2);
	assert_true(series("mxgate_greylist_passed_total") == 0);   /* main's: 2 */
	assert_true(series("mxgate_greylist_errors_total{reason=\"no_memory\"}") == 2);
	assert_true(series("mxgate_greylist_greylisted_total") == 1);
	/* with memory again it is greylisted */
	assert_int_equal(rcpt(&mods, &loop, cfg, from, to), VERDICT_TEMPFAIL);

	chain_modules_free(&mods);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local_table_oom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
