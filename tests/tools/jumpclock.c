/* jumpclock.c — an LD_PRELOAD that makes CLOCK_MONOTONIC jump, imitating a descheduled process.
 *
 * Each clock_gettime(CLOCK_MONOTONIC*) of the process returns the real time plus n times
 * MX_JUMPCLOCK_MS (60 by default), n counting the calls so far: every look at the clock
 * finds that much more time gone, as a process stopped between two looks on a loaded
 * machine would. A test that passes only when little time goes between two of its steps
 * (an upper bound on a duration, a deadline or a TTL it must beat) fails under it; one that
 * asserts on what happened does not. Kernel waits (poll, a timed condition wait) still run
 * on the real clock: only what the process reads jumps. Not built with the project (a tool
 * for looking for flaky tests, docs/testing.md):
 *
 *   cc -shared -fPIC -O2 -o build/jumpclock.so tests/tools/jumpclock.c -ldl
 *   cd build && LD_PRELOAD=$PWD/jumpclock.so ./test_dns
 *
 * Statically resolved or vDSO calls made without libc's clock_gettime are not seen. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static atomic_ulong jumps;
static long jump_ns = -1;

static long jumpclock_step_ns(void)
{
	const char *v;
	long ms = 60;

	if (jump_ns >= 0)
		return jump_ns;
	v = getenv("MX_JUMPCLOCK_MS");
	if (v != NULL && *v != '\0')
		ms = strtol(v, NULL, 10);
	if (ms < 0 || ms > 10000)
		ms = 60;
	jump_ns = ms * 1000000L;
	return jump_ns;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	unsigned long n;
	unsigned long long add;
	int rc;

	if (real_clock_gettime == NULL)
		real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	rc = real_clock_gettime(id, ts);
	if (rc != 0 || (id != CLOCK_MONOTONIC && id != CLOCK_MONOTONIC_COARSE && id != CLOCK_MONOTONIC_RAW &&
	    id != CLOCK_BOOTTIME))
		return rc;
	n = atomic_fetch_add(&jumps, 1) + 1;
	add = (unsigned long long)n * (unsigned long long)jumpclock_step_ns();
	add += (unsigned long long)ts->tv_nsec;
	ts->tv_sec += (time_t)(add / 1000000000ull);
	ts->tv_nsec = (long)(add % 1000000000ull);
	return rc;
}
