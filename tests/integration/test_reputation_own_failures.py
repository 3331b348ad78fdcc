#!/usr/bin/env python3
"""Our own temporary failures are not the client's history: a message refused 451 at end of
data because the backend answered 4xx (or no backend took it, a content filter was down,
the spool failed) counted as "tempfailed" against the client. A client that sent 13
messages during a backend outage scored -0.5 and was refused at connect (421 4.7.0 poor
reputation) once the backend was back, for as long as the counts took to decay (days with
the default half_life). Now those outcomes do not count; a backend's 5xx still does
(rejected), as a refusal the client earned."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend(mode='tempfail_data')
d = os.path.join(mt.TMP, 'rep')
n = mt.Mxgate(mt.proxied_config([be.url], reputation={'store': 'lmdb:' + d, 'flush_interval': '10ms'}, workers=1), 'node')


def send(src, tag):
    return mt.send_mail(n.port, 'a@example.org', ['b@example.test'], mt.message(tag), proxy_src=src)



A, B = '198.18.74.1', '198.18.75.1'
rs = [send(A, 'outage%d' % i) for i in range(13)]
mt.check(all((r[0], r.stage) == (451, 'eom') for r in rs),
         'during the backend\'s trouble: every message 451 at end of data: %s' % [(r[0], r.stage) for r in rs])
# a backend's 5xx is a refusal the client earned: after a few the client is bad
be.mode = 'reject_data'
rs = [send(B, 'rejected%d' % i) for i in range(8)]
codes = [(r[0], r.stage) for r in rs]
mt.check(codes[0] == (554, 'eom') and set(codes) <= {(554, 'eom'), (421, 'connect')},
         'the backend rejects: 554 at end of data (or already 421 at connect): %s' % codes)
mt.check(mt.wait_for(lambda: send(B, 'probe')[0] == 421, 10), 'the rejected client is refused at connect (poor reputation)')
be.mode = 'ok'
# one worker, one write queue: B's history was read back, A's (queued before) is written too
r = send(A, 'after')
mt.check(r[0] == 250 and be.by_tag('after'), 'the backend back, the client of the outage is served (not 421 poor reputation): %r (%s)' % (r, r.stage))
n.stop()
mt.finish()
