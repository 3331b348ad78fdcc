#!/usr/bin/env python3
"""Connections turned away before a session serves them, as an operator coming from HAProxy
(`denied_conn`, `ereq` on its stats page) or Postfix (postscreen's `warning: accept
connection`, anvil's `max connection count`) looks for them: /metrics, /status.json and
`mxgatectl status` say how many and why, by reason:

- max_connections_per_ip: a client holding its connections gets 421 for the next ones;
- max_connections: the listener-wide limit;
- draining and accept_error are there too (a connection accepted between SIGTERM and the
  listeners' close; accept(2) errors libuv reports), at 0 here: neither can be provoked
  from outside on demand (libuv closes a client it cannot accept for want of a file
  descriptor without telling the program: see test_ops_fd_limit.py).

Each is also checked to appear in the exposition with every reason present from the start
(0 before the first), as Prometheus wants for a labelled counter."""
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from mxtest import fail  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()
REASONS = ('max_connections', 'max_connections_per_ip', 'draining', 'accept_error')
SAMPLE = re.compile(r'^mxgate_connections_refused_total\{reason="([a-z_]+)"\} (\S+)$', re.M)


def scrape(mport, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (mport, path), timeout=mt.slack(5)) as r:
        return r.read().decode()


def refused(mport):
    text = scrape(mport)
    if '# TYPE mxgate_connections_refused_total counter' not in text:
        return None
    return {m.group(1): float(m.group(2)) for m in SAMPLE.finditer(text)}


def connect(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(5))
    return s


def first_line(s):
    buf = b''
    while not buf.endswith(b'\n'):
        try:
            b = s.recv(512)
        except (ConnectionResetError, socket.timeout):
            return buf
        if not b:
            return buf
        buf += b
    return buf


sink = mt.Sink()


def limits_case():
    mx = mt.Mxgate(mt.config([sink.url], limits={'max_connections': 3, 'max_connections_per_ip': 2},
                             metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                             control={'socket': os.path.join(mt.TMP, 'ctl-limits.sock')}),
                   name='limits')
    mport = mx.metrics_port
    r = refused(mport)
    mt.check(r is not None, 'mxgate_connections_refused_total is exposed as a counter')
    if r is None:
        return
    mt.check(all(r.get(k) == 0 for k in REASONS), 'every reason is there from the start, at 0: %r' % r)
    # the other side of max_connections_per_ip: clients let in without a per-IP count (their
    # slot window full; logged event=conncount_crowded) were only in the log
    text = scrape(mport)
    mt.check('# TYPE mxgate_connections_uncounted_total counter' in text and
             re.search(r'^mxgate_connections_uncounted_total 0$', text, re.M) is not None,
             'clients admitted without a per-IP count: mxgate_connections_uncounted_total, at 0')
    held = [connect(mx.port), connect(mx.port)]
    for s in held:
        mt.check(first_line(s).startswith(b'220'), 'the first two connections get their greeting')
    for _ in range(3):
        s = connect(mx.port)
        line = first_line(s)
        mt.check(line.startswith(b'421'), 'a third connection from 127.0.0.1 gets 421: %r' % line)
        s.close()
        # until it is closed the refused session counts towards max_connections (3)
        mt.check(mt.wait_for(lambda: re.search(r'^mxgate_sessions_active 2$', scrape(mport), re.M), mt.slack(10)),
                 'the refused session is closed: 2 open')
    mt.check(mt.wait_for(lambda: (refused(mport) or {}).get('max_connections_per_ip') == 3, mt.slack(5)),
             'three refusals counted as max_connections_per_ip: %r' % refused(mport))
    # the listener-wide limit: a third connection from another address (127.0.0.2), once
    # the refused sessions are gone (until closed they count towards max_connections)
    mt.check(mt.wait_for(lambda: re.search(r'^mxgate_sessions_active 2$', scrape(mport), re.M), mt.slack(10)),
             'the refused sessions are closed: 2 open')
    s = socket.socket()
    s.settimeout(mt.slack(5))
    s.bind(('127.0.0.2', 0))
    s.connect(('127.0.0.1', mx.port))
    held.append(s)
    mt.check(first_line(s).startswith(b'220'), 'a connection from 127.0.0.2 is the third: served')
    s = socket.socket()
    s.settimeout(mt.slack(5))
    s.bind(('127.0.0.3', 0))
    s.connect(('127.0.0.1', mx.port))
    line = first_line(s)
    s.close()
    mt.check(line.startswith(b'421'), 'a fourth connection past max_connections gets 421: %r' % line)
    mt.check(mt.wait_for(lambda: (refused(mport) or {}).get('max_connections') == 1, mt.slack(5)),
             'one refusal counted as max_connections: %r' % refused(mport))
    st = json.loads(scrape(mport, '/status.json'))
    mt.check(st.get('connections_refused', {}).get('max_connections_per_ip') == 3 and
             st['connections_refused'].get('max_connections') == 1,
             '/status.json has connections_refused by reason: %r' % st.get('connections_refused'))
    out = subprocess.run([CTL, '--socket', os.path.join(mt.TMP, 'ctl-limits.sock'), 'status'],
                         capture_output=True, text=True, timeout=mt.slack(10))
    mt.check(out.returncode == 0 and re.search(r'connections refused: 4 \(.*max_connections_per_ip 3', out.stdout),
             'mxgatectl status says how many connections were refused and why: %r' % out.stdout)
    for s in held:
        s.close()
    mx.stop()


if mt.case_wanted('limits'):
    limits_case()
mt.finish()
