#!/usr/bin/env python3
"""The default drain fits the stop budgets mxgate is run under.

After SIGTERM mxgate lets sessions finish for limits.drain_timeout, cuts the rest (421) and
gives its workers 5 s more before it exits anyway (event=exit reason=drain_overrun). So the
longest stop is drain_timeout + 5 s:

- Kubernetes' terminationGracePeriodSeconds defaults to 30 s: the default drain_timeout plus
  5 s must fit in it (it was 30 s + 5 s: the kubelet's SIGKILL cut the last sessions);
- the unit's TimeoutStopSec (debian/mxgate.service) must be above it, or systemd kills the
  drain;
- the shipped configs (examples/mxgate.yaml, debian/mxgate.yaml) and the containers'
  example in docs/operations.md say the default, not another value.

The default is read from the daemon itself: event=shutdown drain_timeout_ms=N of a config
without limits.drain_timeout."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

K8S_GRACE_S = 30      # terminationGracePeriodSeconds' default
OVERRUN_S = 5         # what mxgate adds to drain_timeout before it exits anyway

be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], workers=1), 'mx')
mx.stop()
m = re.search(r'event=shutdown signal=15 drain_timeout_ms=(\d+)', mx.log())
mt.check(m is not None, 'event=shutdown names drain_timeout_ms\n' + mx.tail(5))
drain_s = int(m.group(1)) / 1000 if m else 0
mt.check(drain_s + OVERRUN_S <= K8S_GRACE_S,
         'the default drain_timeout (%gs) + %ds fits in Kubernetes\' default %ds grace'
         % (drain_s, OVERRUN_S, K8S_GRACE_S))


def read(rel):
    with open(os.path.join(mt.SRC, rel)) as f:
        return f.read()


unit = read('debian/mxgate.service')
m = re.search(r'^TimeoutStopSec=(\d+)s?$', unit, re.M)
mt.check(m is not None and int(m.group(1)) > drain_s + OVERRUN_S,
         'the unit\'s TimeoutStopSec (%s) is above drain_timeout + %ds (%gs)'
         % (m and m.group(1), OVERRUN_S, drain_s + OVERRUN_S))
for rel in ('examples/mxgate.yaml', 'debian/mxgate.yaml', 'docs/operations.md'):
    vals = re.findall(r'^\s*drain_timeout:\s*(\d+)s\b', read(rel), re.M)
    mt.check(vals and all(int(v) == drain_s for v in vals),
             '%s says the default drain_timeout (%gs): %s' % (rel, drain_s, vals))
mt.finish()
