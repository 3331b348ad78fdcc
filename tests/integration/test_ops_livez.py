#!/usr/bin/env python3
"""The liveness probe under the name Kubernetes gives it: /livez (the API server's own
liveness endpoint; /healthz is its deprecated name) answers as /healthz does, 200 `ok` while
the process runs, also while it drains. An operator who points a livenessProbe at /livez,
as for every other component, must not get 404 (which restarts the pod in a loop).
/readyz stays the readiness probe (503 while starting, shutting down or with no backend)."""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')


sink = mt.Sink()
mx = mt.Mxgate(mt.config([sink.url], metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                         limits={'drain_timeout': '10s'}))
mport = mx.metrics_port
mt.check(mt.wait_for(lambda: mt.http_get(mport, '/readyz')[0] == 200, mt.slack(10)), '/readyz 200 once a backend is up')
for path in ('/healthz', '/livez'):
    mt.check(mt.http_get(mport, path) == (200, 'ok\n'), '%s: 200 ok (%r)' % (path, mt.http_get(mport, path)))
held = mt.Client(mx.port)
held.ehlo()
mx.send_signal(signal.SIGTERM)
mt.check(mt.wait_for(lambda: mt.http_get(mport, '/readyz')[0] == 503, mt.slack(5)), 'draining: /readyz 503')
mt.check(mt.http_get(mport, '/livez') == (200, 'ok\n'), 'draining: /livez still 200 ok (%r)' % (mt.http_get(mport, '/livez'),))
held.close()
mx.stop()
mt.finish()
