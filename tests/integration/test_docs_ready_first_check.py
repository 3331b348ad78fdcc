#!/usr/bin/env python3
"""README, "Operating it": under systemd mxgate is "ready once the listeners are bound and the
backends checked"; docs/operations.md: /readyz is 200 when "the first health checks have run
and a server of backends.servers is up". The first check of a backend that refuses is a
verdict on it: as HAProxy's default (init-state up: "a health check that can turn it to the
DOWN state immediately if it fails"), a backend whose first probe fails is down at once.

Was: the first failed probe was one of `fall` (2), so the daemon announced
`event=ready ... backends_up=yes` (and READY=1 "backends up", /readyz 200) in front of a
backend that had just refused the connection, and only the next probe took it down.

- the only backend refuses: ready says backends_up=no, the backend_down line comes with the
  first probe (fails=1), /readyz is 503 "no backend up"; mail still gets 451 (not lost);
- a backend that answers: backends_up=yes, /readyz 200;
- a reload does not make a first check of a known backend: one that is up stays up."""
import os
import re
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402


def readyz(port):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % port, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def daemon(name, url):
    cfg = mt.config([url], workers=1, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
    # a probe every 10 s: only the first round can have run by the time we look
    cfg['backends']['health_check'] = {'interval': '10s', 'timeout': '%gs' % mt.slack(5), 'fall': 2, 'rise': 2}
    return mt.Mxgate(cfg, name=name)


dead = mt.dead_port()
mx = daemon('mx-dead', 'smtp://127.0.0.1:%d' % dead)
m = mx.wait_log(r'event=ready generation=1 backends_up=(\w+)', timeout=mt.slack(15))
mt.check(m is not None and m.group(1) == 'no',
         'the only backend refused its first probe: event=ready says backends_up=no (%s)' % (m and m.group(0)))
mt.check(re.search(r'event=backend_down backend=smtp://127\.0\.0\.1:%d reason="health check: ECONNREFUSED during connect" fails=1' % dead,
                   mx.log()) is not None, 'backend_down with the first probe, fails=1')
code, text = readyz(mx.metrics_port)
mt.check(code == 503 and 'no backend up' in text, '/readyz: 503 no backend up (%s %s)' % (code, text.strip()))
c = mt.Client(mx.port)
c.ehlo('client.example')
code, text = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code == 451, 'MAIL with no backend: 451, the client retries (%s %s)' % (code, text))
c.close()
mx.stop()

be = mt.Sink(name='live')
mx = daemon('mx-live', be.url)
m = mx.wait_log(r'event=ready generation=1 backends_up=(\w+)', timeout=mt.slack(15))
mt.check(m is not None and m.group(1) == 'yes', 'a backend that answers: backends_up=yes (%s)' % (m and m.group(0)))
mt.check(readyz(mx.metrics_port)[0] == 200, '/readyz: 200')
start = mx.log_size()
mx.send_signal(__import__('signal').SIGHUP)
mt.check(mx.wait_log(r'event=reloaded', timeout=mt.slack(10), start=start) is not None, 'reloaded')
mt.check(readyz(mx.metrics_port)[0] == 200 and 'backend_down' not in mx.log(),
         'after a reload the backend stays up (no first-check verdict again)')
mt.finish()
