/* bench_log_json.c — log lines per second, text and log.format: json, written to /dev/null
 * by one thread and by two at once: the cost of the JSON form (logkv_json) per line.
 * Built and run by bench_log_json.sh. Prints one line per figure. */
#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double bench_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long bench_lines = 200000;

/* A session's typical line: a relay's, with numbers, a quoted reason and a peer's text. */
static void *bench_run(void *arg)
{
	(void)arg;
	for (long i = 0; i < bench_lines; i++)
		log_event(LOG_LVL_INFO, "7f3a21", "event=relayed backend=%s queue_id=%s size=%ld rcpts=%d "
		    "delay_ms=%ld code=%d reply=\"%s\" client=%s helo=%s", "smtp://127.0.0.1:2526",
		    "4XYZ12ab", 4096 + i % 100, 2, i % 50, 250, "2.0.0 Ok: queued as 4XYZ12ab",
		    "198.18.0.2", "mta.example.org");
	return NULL;
}

static void bench_figure(const char *name, int threads)
{
	pthread_t t[2];
	double t0 = bench_now(), dt;

	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, bench_run, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	dt = bench_now() - t0;
	printf("%-6s threads=%d lines=%ld seconds=%.3f lines_per_s=%.0f\n", name, threads,
	    bench_lines * threads, dt, (double)(bench_lines * threads) / dt);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int null = open("/dev/null", O_WRONLY);

	if (argc > 1)
		bench_lines = atol(argv[1]);
	if (null < 0 || dup2(null, STDERR_FILENO) < 0)
		return 1;
	for (int threads = 1; threads <= 2; threads++) {
		log_set_format(LOG_FORMAT_TEXT);
		bench_figure("text", threads);
		log_set_format(LOG_FORMAT_JSON);
		bench_figure("json", threads);
	}
	return 0;
}
