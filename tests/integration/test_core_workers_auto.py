#!/usr/bin/env python3
"""Proxy core: `workers: auto` starts one event loop per CPU the daemon may run on.

A daemon started on fewer CPUs than the machine has (taskset, a cpuset cgroup such as
docker's --cpuset-cpus, systemd's CPUAffinity=) counts the CPUs of its affinity mask, as
HAProxy's default nbthread and libuv's uv_available_parallelism() do. It counted the
machine's online CPUs, so on one CPU of a two-CPU machine it ran two loops that could only
take turns on that CPU (each woken for its own connections: more sleeps and wake-ups a
message than one loop seeing all of them). An explicit count is the operator's and is kept.

The count is read from `event=listening ... workers=N`; each daemon delivers a message."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

LISTENING = re.compile(r'event=listening address=\S+ workers=(\d+) ')
be = mt.Backend(name='workers-auto')
mine = sorted(os.sched_getaffinity(0))


def started_with(workers, cpus, name):
    """(workers= of the daemon started on cpus with `workers: workers`, delivery result)."""
    os.sched_setaffinity(0, cpus)       # the daemon inherits the mask
    try:
        mx = mt.Mxgate(mt.config([be.url], workers=workers), name=name)
    finally:
        os.sched_setaffinity(0, mine)
    m = mx.wait_log(LISTENING.pattern, 10)
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(name))
    mx.stop()
    return (int(m.group(1)) if m else None), r


one = {mine[0]}
n, r = started_with('auto', one, 'mx-auto-one-cpu')
mt.check(n == 1, 'workers: auto on CPU %d only (of %d usable): 1 worker (got workers=%s)'
         % (mine[0], len(mine), n))
mt.check(r.code == 250, 'it delivers (%s %s)' % (r.code, r.text))

n, r = started_with(2, one, 'mx-two-one-cpu')
mt.check(n == 2, 'workers: 2 on one CPU: 2 workers, the operator\'s count (got workers=%s)' % n)
mt.check(r.code == 250, 'it delivers (%s %s)' % (r.code, r.text))

n, r = started_with('auto', set(mine), 'mx-auto-all')
mt.check(n == min(64, len(mine)), 'workers: auto on all %d usable CPUs: %d workers (got workers=%s)'
         % (len(mine), min(64, len(mine)), n))
mt.check(r.code == 250, 'it delivers (%s %s)' % (r.code, r.text))

mt.finish()
