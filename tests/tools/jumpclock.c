/* jumpclock.c — an LD_PRELOAD that makes CLOCK_MONOTONIC jump, imitating a descheduled process.
 *
 * Each clock_gettime(CLOCK_MONOTONIC*) of the process returns the real time plus n times
 * MX_JUMPCLOCK_MS (60 by default), n counting the calls so far: every look at the clock
 * finds that much more time gone, as a process stopped between two looks on a loaded
 * machine would. A test that passes only when little time goes between two of its steps
 * (an upper bound on a duration, a deadline or a TTL it must beat) fails under it; one that
 * asserts on what happened does not. Kernel waits (poll, a timed condition wait) still run
 * on the real clock: only what the process reads jumps. A timed condition wait's deadline
 * on CLOCK_MONOTONIC, though, was read from the jumped clock: it is taken back by the jumps
 * so far (pthread_cond_timedwait below), else each such wait would last every jump of the
 * process so far (at 20 ms a read, seconds after a few hundred reads: a test's alarm()
 * fires, a hang that is the tool's). Not built with the project (a tool
 * for looking for flaky tests, docs/testing.md):
 *
 *   cc -shared -fPIC -O2 -o build/jumpclock.so tests/tools/jumpclock.c -ldl
 *   cd build && LD_PRELOAD=$PWD/jumpclock.so ./test_dns
 *
 * Statically resolved or vDSO calls made without libc's clock_gettime are not seen. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
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

/* A deadline on CLOCK_MONOTONIC (by its size: an uptime, not a date after 1973; a condition
 * on CLOCK_REALTIME, glibc's default, gets a date) comes from the jumped clock: back by the
 * jumps so far, to the real clock the kernel waits on. */
int pthread_cond_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *at)
{
	static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
	struct timespec t;
	unsigned long long ns, back;

	if (real == NULL)
		real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlsym(
		    RTLD_NEXT, "pthread_cond_timedwait");
	if (at->tv_sec >= 100000000)
		return real(cv, mu, at);
	ns = (unsigned long long)at->tv_sec * 1000000000ull + (unsigned long long)at->tv_nsec;
	back = (unsigned long long)atomic_load(&jumps) * (unsigned long long)jumpclock_step_ns();
	ns = ns > back ? ns - back : 0;
	t.tv_sec = (time_t)(ns / 1000000000ull);
	t.tv_nsec = (long)(ns % 1000000000ull);
	return real(cv, mu, &t);
}
