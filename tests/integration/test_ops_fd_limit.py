#!/usr/bin/env python3
"""The file descriptor limit, as an operator running mxgate by hand (a shell's `ulimit -n`
of 1024) or under a unit with a small LimitNOFILE= meets it. HAProxy raises its own limit
to what maxconn needs and warns when it cannot ("FD limit (N) too low for maxconn=M");
Postfix's master logs `warning: accept connection: Too many open files`.

Before the fix mxgate kept the soft limit it was given and, once its descriptors ran out,
libuv accepted and closed every further client itself (its EMFILE trick) without telling
the program: clients were cut off in silence, no log line, no counter, while
max_connections promised far more sessions.

Now mxgate raises its soft limit to the hard one at start, and when that still cannot hold
limits.max_connections sessions (one descriptor each over 3/4 of what is left beside what it holds at start and a
reserve) it says so (event=fd_limit, warning) and turns the sessions past what fits away
with 421, counted as mxgate_connections_refused_total{reason="fd_limit"}: every client gets
an answer."""
import os
import re
import resource
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
SOFT, HARD = 200, 400
N = 260

sink = mt.Sink()
old = resource.getrlimit(resource.RLIMIT_NOFILE)
if old[1] != resource.RLIM_INFINITY and old[1] < HARD + 200:
    mt.skip('the hard file limit (%d) is below what the test needs' % old[1])
# mxgate inherits soft 200, hard 400; the test itself takes the hard limit back afterwards
resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))
mx = mt.Mxgate(mt.config([sink.url], workers=1,
                         limits={'max_connections': 20000, 'max_connections_per_ip': 20000},
                         backends={'health_check': {'interval': '1h', 'timeout': '5s'}},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))
resource.setrlimit(resource.RLIMIT_NOFILE, (HARD, HARD))
mport = mx.metrics_port
mt.check(mx.wait_log(r'event=ready', mt.slack(10)) is not None, 'ready')
with open('/proc/%d/limits' % mx.pid) as f:
    soft = int(re.search(r'Max open files\s+(\d+)', f.read()).group(1))
mt.check(soft == HARD, 'the soft limit raised to the hard one at start (%d)' % soft)
m = mx.wait_log(r'warning - event=fd_limit nofile=%d open=\d+ sessions=(\d+) max_connections=20000 ' % HARD,
                mt.slack(5))
mt.check(m is not None, 'a warning says how many sessions the limit holds: %s' % mx.tail(8))
cap = int(m.group(1)) if m else 0

held, answers = [], {'220': 0, '421': 0, 'none': 0}
for i in range(N):
    s, key = mt.connect_answer(mx.port, mt.slack(5))
    answers[key] += 1
    if key == '220':
        held.append(s)
    else:
        s.close()
mt.check(answers['none'] == 0, 'every client gets an answer, none is cut off in silence: %r' % answers)
mt.check(answers['421'] > 0 and answers['220'] >= cap - 2, 'up to the limit served, past it 421: %r (cap %d)'
         % (answers, cap))


def refused():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=mt.slack(5)) as r:
        m = re.search(r'^mxgate_connections_refused_total\{reason="fd_limit"\} (\d+)$', r.read().decode(), re.M)
    return int(m.group(1)) if m else None


mt.check(refused() == answers['421'], 'counted as reason fd_limit: %r' % refused())
for s in held:
    s.close()
mt.check(not mx.malformed_log_lines(), 'log lines in the contract form: %r' % mx.malformed_log_lines()[:3])
mx.stop()
mt.finish()
