#!/usr/bin/env python3
"""mxgate_sessions_rejected_limit_total says what it counts. Its HELP (and docs/operations.md)
read "Client connections refused by connection or rate limits", but a client refused at
connect by a rate limit (ratelimit `count: connections`) was never in it: rate limits are
mxgate_ratelimit_hits_total, and the connections refused before a session are
mxgate_connections_refused_total{reason}. An operator summing the two for "clients turned
away by limits" counted the rate-limited ones twice or not at all depending on which HELP
they believed. The HELP now names what the counter holds, and this test drives both kinds:
the connection limit moves it, the connect rate limit does not."""
import os
import re
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
cfg = mt.proxied_config([be.url],
                        ratelimit={'store': 'local', 'rules': [
                            {'key': 'ip', 'count': 'connections', 'limit': '1/1h', 'action': 'tempfail'}]},
                        metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg, 'mx-help')
mport = mx.metrics_port


def text():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=mt.slack(5)) as r:
        return r.read().decode()


def value(name):
    m = re.search(r'^mxgate_%s (\S+)$' % name, text(), re.M)
    return float(m.group(1)) if m else None


r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('one'), proxy_src='198.18.76.1')
mt.check(r[0] == 250, 'the first connection of 198.18.76.1 is served: %r' % (r,))
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('two'), proxy_src='198.18.76.1')
mt.check(r[0] == 421 and 'rate limit' in r[1], 'its second connection in the hour: the rate limit (%r)' % (r,))
mt.check(value('ratelimit_hits_total') == 1, 'counted in ratelimit_hits_total (%s)' % value('ratelimit_hits_total'))
mt.check(value('sessions_rejected_limit_total') == 0, 'not in sessions_rejected_limit_total (%s)'
         % value('sessions_rejected_limit_total'))
help_line = re.search(r'^# HELP mxgate_sessions_rejected_limit_total (.*)$', text(), re.M).group(1)
mt.check('rate' not in help_line and 'max_connections' in help_line,
         'its HELP names the connection limits, not rate limits: %r' % help_line)
with open(os.path.join(mt.SRC, 'docs', 'operations.md')) as f:
    row = [l for l in f if l.startswith('| `mxgate_sessions_rejected_limit_total`')]
mt.check(row and 'rate' not in row[0], 'docs/operations.md says the same: %r' % row)
mx.stop()
mt.finish()
