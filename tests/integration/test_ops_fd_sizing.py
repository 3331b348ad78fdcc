#!/usr/bin/env python3
"""The file-limit warning (event=fd_limit) sizes the sessions at one descriptor each over
three quarters of the limit (after what mxgate holds at start and 64 aside), the last quarter
kept for the backend, milter and scanner descriptors of the sessions in a transaction, and the
default limits.max_connections fits the unit's LimitNOFILE.

An idle session holds 1 descriptor, one with a backend, a milter and a scanner 4
(bench/fd_per_session.py counted 4.03 in /proc/PID/fd). Sizing every session at 4 (session
14 to 20) turned idle clients away at a quarter of the limit: 10,000 idle sessions under a
limit of 20,000 got 4,978 greetings (the acceptance check issue2-memory failed).

- soft = hard = 1000, max_connections 600: 600 x 4/3 + what mxgate holds + 64 fits, no warning;
- max_connections 800 does not fit: the warning says the sessions that fit;
- the default max_connections x 4/3 + 64 + 100 (more than mxgate holds at start) fits the
  unit's LimitNOFILE.
"""
import os
import re
import resource
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
LIMIT = 1000
old = resource.getrlimit(resource.RLIMIT_NOFILE)
if old[1] != resource.RLIM_INFINITY and old[1] < LIMIT:
    mt.skip('the hard file limit (%d) is below what the test needs' % old[1])
a = mt.Backend(name='FS')


# mxgate inherits soft = hard = LIMIT (the test keeps it: a hard limit once lowered stays)
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def start(maxconn, name):
    mx = mt.Mxgate(mt.config([a.url], workers=1, limits={'max_connections': maxconn}), name=name)
    mt.check(mx.wait_log(r'event=ready', mt.slack(10)) is not None, '%s: ready' % name)
    return mx


mx = start(600, 'mx-fd-fits')
mt.check(mx.count_log(r'event=fd_limit') == 0, 'max_connections 600 under %d descriptors: no warning\n%s'
         % (LIMIT, mx.tail(5)))
mx.stop()

mx = start(800, 'mx-fd-short')
m = re.search(r'warning - event=fd_limit nofile=%d open=(\d+) sessions=(\d+) max_connections=800 '
              r'reason="the file limit holds \d+ sessions \(one descriptor each, a quarter kept' % LIMIT, mx.log())
mt.check(m is not None, 'max_connections 800 under %d descriptors: the warning\n%s'
         % (LIMIT, mx.tail(5)))
if m:
    openfds, sessions = int(m.group(1)), int(m.group(2))
    mt.check(sessions == (LIMIT - openfds - 64) * 3 // 4, 'the sessions that fit: (%d - %d - 64) x 3/4 (%d)'
             % (LIMIT, openfds, sessions))
mx.stop()

docs = subprocess.run([mt.BIN, '--dump-config-docs'], capture_output=True, text=True).stdout
d = re.search(r'^\| `max_connections` \| integer \| `(\d+)`', docs, re.M)
unit = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'debian', 'mxgate.service')).read()
u = re.search(r'^LimitNOFILE=(\d+)$', unit, re.M)
mt.check(d is not None and u is not None, 'the default and the unit\'s LimitNOFILE found')
if d and u:
    default, nofile = int(d.group(1)), int(u.group(1))
    mt.check(default * 4 // 3 + 64 + 100 <= nofile, 'the default max_connections %d x 4/3 + 64 + 100 fits LimitNOFILE=%d'
             % (default, nofile))
mt.finish()
