/* bench_ratelimit.c — rate-limit checks per second: the local table (1 and 2 threads) and
 * Redis (one at a time, and pipelined 256 deep on one connection) with the real GCRA script.
 * Usage: bench_ratelimit [redis_port] ; prints one line per figure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "filters/gcra.h"
#include "filters/ratelimit.h"
#include "filters/ratelimit_local.h"
#include "store/redis.h"
#include "proxy/log.h"

#define NKEYS 10000

static struct local_table *tbl;
static double seconds = 2.0;

struct th { uint64_t n; unsigned seed; };

static void *local_thread(void *arg)
{
	struct th *t = arg;
	struct gcra_limit l = { 100, 60ull * 1000000000ull };
	struct gcra_result r;
	char key[64];
	uint64_t end = uv_hrtime() + (uint64_t)(seconds * 1e9), now, n = 0;
	unsigned seed = t->seed;

	/* Counters stay in registers: adjacent struct th entries would share a cache line. */
	do {
		for (int i = 0; i < 1000; i++) {
			seed = seed * 1103515245u + 12345u;
			snprintf(key, sizeof(key), "mxgate:rl:messages:ip:100/60s:198.18.%u.%u",
			    (seed >> 8) % 40, (seed >> 16) % 250);
			now = uv_hrtime();
			ratelimit_local_gcra(tbl, key, &l, 1, now, &r);
			n++;
		}
	} while (uv_hrtime() < end);
	t->n = n;
	return NULL;
}

static double bench_local(int threads)
{
	pthread_t tid[8];
	struct th t[8];
	uint64_t total = 0, t0 = uv_hrtime();

	for (int i = 0; i < threads; i++) {
		t[i].n = 0;
		t[i].seed = (unsigned)i * 7919u + 1;
		pthread_create(&tid[i], NULL, local_thread, &t[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		total += t[i].n;
	}
	return (double)total / ((double)(uv_hrtime() - t0) / 1e9);
}

struct rbench {
	struct redis_store *rs;
	int script;
	int depth, inflight;
	uint64_t done, errors, end_ns;
	unsigned seed;
	uv_loop_t *loop;
};

static void rb_send(struct rbench *b);

static void rb_reply_cb(void *arg, const redisReply *reply)
{
	struct rbench *b = arg;

	b->inflight--;
	if (reply && reply->type == REDIS_REPLY_ARRAY)
		b->done++;
	else
		b->errors++;
	if (uv_hrtime() < b->end_ns)
		rb_send(b);
	else if (b->inflight == 0)
		uv_stop(b->loop);
}

static void rb_send(struct rbench *b)
{
	char key[80];
	const char *argv[4];

	while (b->inflight < b->depth) {
		b->seed = b->seed * 1103515245u + 12345u;
		snprintf(key, sizeof(key), "mxgate:rl:messages:ip:100/60s:198.18.%u.%u",
		    (b->seed >> 8) % 40, (b->seed >> 16) % 250);
		argv[0] = key;
		argv[1] = "60000";
		argv[2] = "100";
		argv[3] = "1";
		if (redis_store_eval(b->rs, b->script, 1, 3, argv, NULL, rb_reply_cb, b, NULL) < 0) {
			b->errors++;
			if (b->inflight == 0)
				uv_stop(b->loop);
			return;
		}
		b->inflight++;
	}
}

static void rb_start_cb(uv_timer_t *t)
{
	struct rbench *b = t->data;

	b->end_ns = uv_hrtime() + (uint64_t)(seconds * 1e9);
	rb_send(b);
}

static double bench_redis(int port, int depth, uint64_t *errors)
{
	uv_loop_t loop;
	uv_timer_t start;
	struct rbench b;
	char url[64];
	uint64_t t0;
	double rate;

	memset(&b, 0, sizeof(b));
	uv_loop_init(&loop);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	b.loop = &loop;
	b.rs = redis_store_new(&loop, url, 2000, 0);
	if (b.rs == NULL)
		return 0;
	b.script = redis_store_add_script(b.rs, ratelimit_lua_gcra);
	b.depth = depth;
	b.seed = 42;
	uv_timer_init(&loop, &start);
	start.data = &b;
	uv_timer_start(&start, rb_start_cb, 200, 0);   /* connected and scripts loaded by then */
	t0 = uv_hrtime() + 200000000ull;
	uv_run(&loop, UV_RUN_DEFAULT);
	rate = (double)b.done / ((double)(uv_hrtime() - t0) / 1e9);
	*errors = b.errors;
	redis_store_free(b.rs);
	uv_close((uv_handle_t *)&start, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return rate;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 0;
	uint64_t err = 0;

	log_set_level(LOG_LVL_WARNING);
	if (getenv("BENCH_SECONDS"))
		seconds = atof(getenv("BENCH_SECONDS"));
	tbl = local_table_new(100000);
	if (!getenv("BENCH_SKIP_LOCAL")) {
		printf("ratelimit local  1 thread : %10.0f checks/s\n", bench_local(1));
		printf("ratelimit local  2 threads: %10.0f checks/s\n", bench_local(2));
	}
	if (port > 0) {
		double r1 = bench_redis(port, 1, &err);

		printf("ratelimit redis  sequential (1 in flight): %8.0f checks/s (errors %llu)\n", r1,
		    (unsigned long long)err);
		r1 = bench_redis(port, 256, &err);
		printf("ratelimit redis  pipelined (256 in flight): %7.0f checks/s (errors %llu)\n", r1,
		    (unsigned long long)err);
	} else {
		printf("ratelimit redis  skipped (no redis-server)\n");
	}
	local_table_free(tbl);
	return 0;
}
