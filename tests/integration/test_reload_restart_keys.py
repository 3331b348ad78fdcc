#!/usr/bin/env python3
"""A reload (SIGHUP, mxgatectl reload) of a config whose start-only keys changed: listen,
workers, user, metrics.listen (and control, already warned about). The listeners, the
workers and the metrics listener are made once at start; a reload cannot move them. The
operator must be told, not left to believe the new port is live: each such key is logged
as event=config_unchanged key=KEY reason="takes effect at the next start" (a warning), and
`mxgatectl reload` names them after the new generation. Before this test the reload said
"reloaded: generation N" and silently kept the old port."""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()

sock = os.path.join(mt.TMP, 'control.sock')
sink = mt.Sink(name='sink')
p1, p2, m1, m2 = (mt.hold_port() for _ in range(4))
cfg = mt.config([sink.url], listen=[{'address': '127.0.0.1:%d' % p1.port}], workers=1,
                metrics={'listen': '127.0.0.1:%d' % m1.port}, control={'socket': sock})
mx = mt.Mxgate(cfg, name='mx-restart-keys')

# the same file again: nothing to say
r = subprocess.run([CTL, '-s', sock, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and 'next start' not in r.stdout, 'an unchanged file reloads quietly (%r)' % r.stdout)

cfg2 = mt.config([sink.url], listen=[{'address': '127.0.0.1:%d' % p2.port}], workers=2,
                 metrics={'listen': '127.0.0.1:%d' % m2.port}, control={'socket': sock})
mx._write(cfg2)
start = mx.log_size()
r = subprocess.run([CTL, '-s', sock, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
out = r.stdout
mt.check(r.returncode == 0 and re.search(r'reloaded: generation \d+', out), 'the reload itself succeeds (%r)' % out)
for key in ('listen', 'workers', 'metrics.listen'):
    mt.check(re.search(r'next start.*\b%s\b' % re.escape(key), out, re.S) is not None,
             'mxgatectl reload names %s as taking effect at the next start (%r)' % (key, out.strip()))
    mt.check(mx.wait_log(r'warning - event=config_unchanged key=%s reason="takes effect at the next start"' %
                         re.escape(key), 5, start) is not None,
             'event=config_unchanged key=%s logged as a warning' % key)
r = subprocess.run([CTL, '-s', sock, '--json', 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
import json  # noqa: E402
try:
    j = json.loads(r.stdout)
except ValueError:
    j = {}
mt.check(j.get('reloaded') is True and set(j.get('next_start', [])) >= {'listen', 'workers', 'metrics.listen'},
         'mxgatectl --json reload: "next_start" lists the keys (%r)' % r.stdout.strip()[:200])
code, _ = mt.send_mail(p1.port, 'a@example.test', ['b@example.test'], mt.message('old-port'))
mt.check(code == 250, 'the running listener is still the old one (%s)' % code)
mx.stop()

# metrics.listen added by a reload where none ran: started now, so not named
sock3 = os.path.join(mt.TMP, 'control3.sock')
m3 = mt.hold_port()
mx3 = mt.Mxgate(mt.config([sink.url], workers=1, control={'socket': sock3}), name='mx-metrics-later')
cfg3 = mt.config([sink.url], workers=1, control={'socket': sock3}, metrics={'listen': '127.0.0.1:%d' % m3.port})
cfg3['listen'] = [{'address': '127.0.0.1:%d' % mx3.port}]
mx3._write(cfg3)
r = subprocess.run([CTL, '-s', sock3, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and 'next start' not in r.stdout,
         'metrics.listen added by a reload (none ran): not named as waiting (%r)' % r.stdout.strip())
mt.check(mt.wait_port(m3.port, 10), 'and the metrics listener runs after the reload')
mx3.stop()
mt.finish()
