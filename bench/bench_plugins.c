/* bench_plugins.c — the in-process cost of the plugin chain per message: the hook chain at
 * end of data with (a) no plugin and (b) the empty dlopen plugin, N messages each, timed
 * with a monotonic clock. Run by bench/bench_plugins.sh: bench_plugins CONFIG_NONE CONFIG_EMPTY */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/msgbuf.h"

static int done_count;

static void bench_done_cb(void *arg, const struct verdict *v)
{
	done_count++;
}

static double bench_run(const char *path, int n)
{
	struct mx_config *cfg;
	struct chain_modules mods;
	struct chain ch;
	struct hook_env env;
	uv_loop_t loop;
	uv_timer_t timer;
	struct timespec a, b;
	char body[4096];

	if (config_load(path, &cfg, stderr) < 0)
		exit(1);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &timer);
	chain_modules_init(&mods, cfg, &loop, 0);
	memset(&env, 0, sizeof(env));
	env.session_id = "bench";
	env.loop = &loop;
	env.cfg = cfg;
	env.mail_from = "a@example.org";
	env.msg = msgbuf_new(1 << 20, NULL);
	memset(body, 'x', sizeof(body));
	msgbuf_append(env.msg, "Subject: x\r\n\r\n", 14);
	msgbuf_append(env.msg, body, sizeof(body));
	chain_init(&ch, &mods, &env, &timer);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		int before = done_count;

		chain_run(&ch, HOOK_EOM, bench_done_cb, NULL);
		while (done_count == before)
			uv_run(&loop, UV_RUN_ONCE);
		hook_env_reset_txn(&env);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	chain_run(&ch, HOOK_CLOSE, bench_done_cb, NULL);
	chain_release(&ch);
	hook_env_free_outputs(&env);
	msgbuf_free(env.msg);
	chain_modules_free(&mods);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	config_free(cfg);
	return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
}

int main(int argc, char **argv)
{
	int n = 200000;
	double none, empty;

	if (argc < 3)
		return 2;
	log_set_level(LOG_LVL_WARNING);
	none = bench_run(argv[1], n);
	empty = bench_run(argv[2], n);
	printf("chain at end of data, in process: no plugin %.0f ns/msg, empty dlopen plugin %.0f ns/msg "
	    "(+%.0f ns per message)\n", none, empty, empty - none);
	return 0;
}
