#!/usr/bin/env python3
"""A backend drained with `mxgatectl drain` shows in /metrics, as HAProxy's exporter shows a
server in DRAIN or MAINT (haproxy_server_status{state=...}). mxgate_backend_up's HELP says
"1 if the backend is in rotation", yet a drained backend (out of rotation: no new
transaction goes to it) read 1, and nothing else in the exposition said it was drained: a
backend left drained after maintenance could not be alerted on.

Now mxgate_backend_drained{backend} is 1 while it is drained (0 after `enable`), and
mxgate_backend_up's HELP says what it is: the health state (probes and deliveries)."""
import os
import re
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()
a, b = mt.Sink(name='a'), mt.Sink(name='b')
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.config([a.url, b.url], control={'socket': sock},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))
mport = mx.metrics_port


def text():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=mt.slack(5)) as r:
        return r.read().decode()


def series(name, url):
    m = re.search(r'^mxgate_%s\{backend="%s"\} (\S+)$' % (name, re.escape(url)), text(), re.M)
    return float(m.group(1)) if m else None


mt.check(mt.wait_for(lambda: series('backend_up', a.url) == 1 and series('backend_up', b.url) == 1, mt.slack(10)),
         'both backends up')
mt.check('# TYPE mxgate_backend_drained gauge' in text(), 'mxgate_backend_drained is a gauge')
mt.check(series('backend_drained', a.url) == 0 and series('backend_drained', b.url) == 0, 'neither drained: 0')
r = subprocess.run([CTL, '-s', sock, 'drain', a.url], capture_output=True, text=True, timeout=mt.slack(10))
mt.check(r.returncode == 0, 'mxgatectl drain %s (%r)' % (a.url, r.stdout))
mt.check(series('backend_drained', a.url) == 1 and series('backend_drained', b.url) == 0,
         'the drained one reads 1 (%s), the other 0' % series('backend_drained', a.url))
r = subprocess.run([CTL, '-s', sock, 'enable', a.url], capture_output=True, text=True, timeout=mt.slack(10))
mt.check(series('backend_drained', a.url) == 0, 'enabled again: 0 (%s)' % series('backend_drained', a.url))
up_help = re.search(r'^# HELP mxgate_backend_up (.*)$', text(), re.M).group(1)
mt.check('rotation' not in up_help, 'backend_up does not claim to be the rotation: %r' % up_help)
mx.stop()
mt.finish()
