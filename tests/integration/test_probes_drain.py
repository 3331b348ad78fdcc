#!/usr/bin/env python3
"""The probes and /metrics while mxgate drains after SIGTERM (docs/operations.md, "Status
page and probes"): the process still runs, so /healthz stays 200 ok; it takes no new mail,
so /readyz is 503 (a load balancer or Kubernetes takes it out of rotation); /metrics and
/status.json keep answering, so the drain can be watched. Once the last session has ended
the process exits 0 and the listener is gone.

Before this test the metrics listener closed at the SIGTERM itself: during a drain of up to
limits.drain_timeout every probe was refused (a liveness probe then reads "dead")."""
import json
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM, RCPT = 'alice@example.test', 'bob@example.test'


be = mt.Backend(name='drain')
cfg = mt.config([be.url], limits={'drain_timeout': '20s'},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg, name='mx-probes-drain')
mport = mx.metrics_port
mt.check(mt.wait_for(lambda: mt.http_get(mport, '/readyz')[0] == 200, 15), '/readyz: 200 before the drain')

# a session in the middle of a transaction keeps the daemon draining
busy = mt.Client(mx.port)
busy.ehlo()
busy.cmd('MAIL FROM:<%s>' % FROM)
code, _ = busy.cmd('RCPT TO:<%s>' % RCPT)
mt.check(code == 250, 'a transaction is open (RCPT %s)' % code)

mx.send_signal(signal.SIGTERM)
mt.check(mx.wait_log(r'event=shutdown signal=15', 5) is not None, 'SIGTERM: event=shutdown logged')
mt.check(mx.alive(), 'the daemon drains: it waits for the open transaction')

code, text = mt.http_get(mport, '/healthz')
mt.check(code == 200 and text.strip() == 'ok', 'during the drain /healthz is 200 ok (%s %r)' % (code, text[:80]))
code, text = mt.http_get(mport, '/readyz')
mt.check(code == 503 and 'shutting down' in text, 'during the drain /readyz is 503 "shutting down" (%s %r)' % (code, text[:80]))
code, text = mt.http_get(mport, '/metrics')
mt.check(code == 200 and 'mxgate_sessions_active 1' in text,
         'during the drain /metrics answers, one session active (%s)' % code)
code, text = mt.http_get(mport, '/status.json')
try:
    st = json.loads(text) if code == 200 else {}
except ValueError:
    st = {}
mt.check(st.get('ready') is False and st.get('stopping') is True,
         'during the drain /status.json says ready false, stopping true (%s %s)' %
         (code, {k: st.get(k) for k in ('ready', 'stopping')}))

# the transaction finishes, then the process goes
code, _ = busy.cmd('DATA')
busy.send(mt.stuff(mt.message('drained')))
code, text = busy.reply()
mt.check(code == 250, 'the open transaction is delivered during the drain (%s %s)' % (code, text))
busy.cmd('QUIT')
busy.close()
rc = mx.stop(sig=None, timeout=mt.slack(15), settle=0)
mt.check(rc == 0, 'the daemon exits 0 after the last session (%s)' % rc)
code, _ = mt.http_get(mport, '/healthz')
mt.check(code is None, 'after the exit the metrics listener is gone (%s)' % code)

# ---------------------------------------------------------------- readiness and routes
# /readyz says whether the node can take mail: backends.servers take every domain without a
# route, so a route's own server being up does not make the node ready while they are all down
# (a load balancer would send it mail it can only answer 4xx).
dead = 'smtp://127.0.0.1:%d' % mt.dead_port()
rbe = mt.Backend(name='route')
cfg = mt.config([dead], backends={'routes': [{'domains': ['route.test'], 'servers': [rbe.url]}]},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg, name='mx-probes-route', wait=False)
mport = mx.metrics_port
mt.check(mx.wait_log(r'event=backend_down backend=%s' % dead, 20) is not None, 'the dead server is marked down')
# until the first round of checks is in (the route's server's too) /readyz says "starting":
# the dead server's event=backend_down can come before that round ends (seen under ASan)
mt.check(mx.wait_log(r'event=ready ', 20) is not None, 'the first round of health checks is in (event=ready)')
code, text = mt.http_get(mport, '/readyz')
mt.check(code == 503 and 'no backend up' in text,
         'every server of backends.servers down, a route-only server up: /readyz 503 (%s %r)' % (code, text[:80]))
code, _ = mt.send_mail(mx.port, FROM, ['carol@route.test'], mt.message('routed'))
mt.check(code == 250, '... while mail for the routed domain still goes to its server (%s)' % code)
mx.stop()
mt.finish()
