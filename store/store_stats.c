/* store_stats.c — per-user write-queue counters of the stores, see store_stats.h. */
#include "store_stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy/metrics.h"

#define SS_SLOTS 32

struct store_stats {
	char label[64];                /* "redis:reputation" */
	atomic_ullong dropped;
	atomic_long queued;
	atomic_ullong evicted;
	atomic_ullong reads_waited;    /* Redis: reads that waited for a first connect ... */
	atomic_ullong read_wait_timeouts; /* ... and those whose deadline passed meanwhile */
	atomic_ullong sentinel_switches; /* Redis Sentinel: +switch-master messages taken */
};

static struct store_stats ss_slots[SS_SLOTS];
static atomic_int ss_n;                /* slots in use; published after a slot is filled */
static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ss_once = PTHREAD_ONCE_INIT;

enum { SS_DROPPED = 0, SS_QUEUED, SS_EVICTED, SS_READS_WAITED, SS_READ_WAIT_TIMEOUTS,
	SS_SENTINEL_SWITCHES };

/* The collector of the families: one sample per slot; arg: which one (SS_*, as a pointer). */
static void ss_collect(void *arg, struct metrics_out *out)
{
	int n = atomic_load(&ss_n);
	intptr_t which = (intptr_t)arg;

	for (int i = 0; i < n; i++) {
		struct store_stats *s = &ss_slots[i];

		/* the read counters are of Redis stores only: a sample per Redis user */
		if ((which == SS_READS_WAITED || which == SS_READ_WAIT_TIMEOUTS ||
		    which == SS_SENTINEL_SWITCHES) &&
		    strncmp(s->label, "redis:", 6) != 0)
			continue;
		metrics_out_sample(out, "store", s->label,
		    which == SS_QUEUED ? (double)atomic_load(&s->queued) :
		    which == SS_EVICTED ? (double)atomic_load(&s->evicted) :
		    which == SS_READS_WAITED ? (double)atomic_load(&s->reads_waited) :
		    which == SS_READ_WAIT_TIMEOUTS ? (double)atomic_load(&s->read_wait_timeouts) :
		    which == SS_SENTINEL_SWITCHES ? (double)atomic_load(&s->sentinel_switches) :
		    (double)atomic_load(&s->dropped));
	}
}

static void ss_register(void)
{
	metrics_register_family("store_writes_dropped_total",
	    "state updates given up by a store's write queue (full, retries exhausted, shutdown during an outage, failed batch)",
	    "counter", ss_collect, NULL);
	metrics_register_family("store_writes_queued",
	    "state updates waiting for their store (an outage, a backlog being sent)", "gauge",
	    ss_collect, (void *)(intptr_t)SS_QUEUED);
	metrics_register_family("store_evictions_total",
	    "records a bounded store removed before their time to make room (a full local table, an LMDB map near its size)",
	    "counter", ss_collect, (void *)(intptr_t)SS_EVICTED);
	metrics_register_family("store_reads_waited_total",
	    "reads that waited for their Redis store's first connect (at start, after a reload: a Sentinel's answer, the connect, the handshake), or just after it behind its writes or reads still queued, instead of failing fast",
	    "counter", ss_collect, (void *)(intptr_t)SS_READS_WAITED);
	metrics_register_family("store_read_wait_timeouts_total",
	    "of those reads, the ones whose deadline passed while they waited (they failed: the caller fell back)",
	    "counter", ss_collect, (void *)(intptr_t)SS_READ_WAIT_TIMEOUTS);
	metrics_register_family("store_sentinel_switches_total",
	    "failovers a redis-sentinel:// store learned from a sentinel's +switch-master message (it dropped the old master's connection and asked for the new one)",
	    "counter", ss_collect, (void *)(intptr_t)SS_SENTINEL_SWITCHES);
}

struct store_stats *store_stats_get(const char *kind, const char *name)
{
	char label[64];
	struct store_stats *s = NULL;
	int n;

	pthread_once(&ss_once, ss_register);
	snprintf(label, sizeof(label), "%s:%s", kind ? kind : "?", name ? name : "?");
	pthread_mutex_lock(&ss_lock);
	n = atomic_load(&ss_n);
	for (int i = 0; i < n; i++)
		if (strcmp(ss_slots[i].label, label) == 0) {
			s = &ss_slots[i];
			break;
		}
	if (s == NULL && n < SS_SLOTS) {
		s = &ss_slots[n];
		memcpy(s->label, label, sizeof(label));
		atomic_store(&ss_n, n + 1);
	}
	pthread_mutex_unlock(&ss_lock);
	return s;
}

void store_stats_add_dropped(struct store_stats *s, uint64_t n)
{
	if (s)
		atomic_fetch_add(&s->dropped, n);
}

void store_stats_add_evicted(struct store_stats *s, uint64_t n)
{
	if (s)
		atomic_fetch_add(&s->evicted, n);
}

void store_stats_add_reads_waited(struct store_stats *s, uint64_t n)
{
	if (s)
		atomic_fetch_add(&s->reads_waited, n);
}

void store_stats_add_read_wait_timeouts(struct store_stats *s, uint64_t n)
{
	if (s)
		atomic_fetch_add(&s->read_wait_timeouts, n);
}

void store_stats_add_sentinel_switches(struct store_stats *s, uint64_t n)
{
	if (s)
		atomic_fetch_add(&s->sentinel_switches, n);
}

void store_stats_add_queued(struct store_stats *s, long delta)
{
	if (s)
		atomic_fetch_add(&s->queued, delta);
}

uint64_t store_stats_dropped(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->dropped) : 0;
}

long store_stats_queued(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->queued) : 0;
}

uint64_t store_stats_evicted(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->evicted) : 0;
}

uint64_t store_stats_reads_waited(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->reads_waited) : 0;
}

uint64_t store_stats_read_wait_timeouts(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->read_wait_timeouts) : 0;
}

uint64_t store_stats_sentinel_switches(const struct store_stats *s)
{
	return s ? atomic_load(&((struct store_stats *)s)->sentinel_switches) : 0;
}
