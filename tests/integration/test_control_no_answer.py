#!/usr/bin/env python3
"""A control request whose answer does not come within CONTROL_PENDING_MS (proxy/control.h:
10 min; a verb's own bound is far shorter, so only a verb that breaks it gets there) has its
connection closed — and the daemon says so: event=control_closed reason=no_answer verb=VERB
waited_ms=N (warning), as the idle close says event=control_closed reason=idle.

Before the fix that close was silent: the client saw its connection end, the log had nothing
to tell the operator which request had been given up, or after how long.

The bound is shortened for the test (MXGATE_TEST_CONTROL_PENDING_MS=1500, tests only), and a
verb made to outlast it by construction: a reload resolving a name the DNS never answers
(dns.timeout 30 s, one try) holds its answer 30 s, 20 x the bound, whatever the load.

- `mxgatectl reload` is closed on unanswered (exit 2), logged reason=no_answer verb=reload
  waited_ms >= 1500;
- `mxgatectl status` answers afterwards (the socket serves on).
"""
import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'no-answer-control.sock')
PENDING_MS = 1500
DNS_TIMEOUT = 30   # the reload's answer comes after this: 20 x PENDING_MS (a fixed DNS bound)

dns = mt.dns_peer({'drop.noanswer.test': 'drop'}, name='dns-no-answer')
a = mt.Backend(name='NA')
cfg = mt.config([a.url], workers=1, control={'socket': SOCK},
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % DNS_TIMEOUT, 'tries': 1})

os.environ['MXGATE_TEST_CONTROL_PENDING_MS'] = str(PENDING_MS)
mx = mt.Mxgate(cfg, name='mx-no-answer')
del os.environ['MXGATE_TEST_CONTROL_PENDING_MS']
mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())

mark = mx.log_size()
mx._write(dict(cfg, backends=dict(cfg['backends'], servers=['smtp://drop.noanswer.test:%d' % a.port])))
r = subprocess.run([CTL, '-s', SOCK, '-t', '120', 'reload'], capture_output=True, text=True, timeout=150)
mt.check(r.returncode == 2 and dns.queries('drop.noanswer.test') > 0,
         'the reload waiting on the DNS is closed on unanswered (rc %s, want 2; DNS asked %d times)\n%s%s'
         % (r.returncode, dns.queries('drop.noanswer.test'), r.stdout, r.stderr))
m = mx.wait_log(r'event=control_closed reason=no_answer verb=reload waited_ms=(\d+)', 5, mark)
mt.check(m is not None and int(m.group(1)) >= PENDING_MS,
         'the close is logged: event=control_closed reason=no_answer verb=reload waited_ms>=%d (%s)\n%s'
         % (PENDING_MS, m and m.group(0), mx.tail()))
mt.check(mx.count_log(r'event=control_closed reason=idle', mark) == 0, 'not logged as an idle close')

r = subprocess.run([CTL, '-s', SOCK, '-t', '10', 'status'], capture_output=True, text=True, timeout=30)
mt.check(r.returncode == 0 and 'generation' in r.stdout, 'status answers afterwards (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
mx.stop()
mt.finish()
