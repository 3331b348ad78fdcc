#!/usr/bin/env python3
"""A health probe that cannot connect to one address of a backend's name and goes on to the
next logs it, as a delivery does: `event=backend_address_failed backend=... address=127.0.0.2
reason="connection refused" next=127.0.0.1 stage=health`. Once per change of the address's
state, not once per probe: a probe every 300 ms that meets the same dead address logs it
once; a check that connects to it again logs `event=backend_address_recovered ... stage=health`
and a later failure is logged anew.

Before the fix the probe moved on in silence: the check passed through the second address
and nothing told the operator that the first one was dead (proxy/health.c probe_fail_stage).

- first: two.health.test is 127.0.0.2 (refuses) then 127.0.0.1 (the backend): the first
  probe logs 127.0.0.2 with next=127.0.0.1; the backend is up;
- dead: both addresses refuse, a probe every 300 ms: each probe tries 127.0.0.2 then
  127.0.0.3; after several failed probes (counted by mxgate_backend_probe_failures_total)
  127.0.0.2 was logged once (the last address is the check's failure: event=backend_down);
- flap: 127.0.0.1 (the backend) then 127.0.0.2 (nothing): 127.0.0.1 is stopped, the probes
  try it and go on to 127.0.0.2 (logged once over several probes); a backend then listens
  on 127.0.0.2: the next probe reaches it, and 127.0.0.1 stays logged failed (no second
  line while it refuses); then 127.0.0.1 answers again and 127.0.0.2 goes: the next probe
  begins at 127.0.0.2 (the address that last answered), logs it and reaches 127.0.0.1,
  logged recovered.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted

mt.need()
dns = mt.dns_peer({
    'two.health.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.1'}, {'in_order': True}],
    'dead.health.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.3'}, {'in_order': True}],
    'flap.health.test': [{'a': '127.0.0.1'}, {'a': '127.0.0.2'}, {'in_order': True}],
}, name='dns-health-addr')
DNS = {'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s', 'tries': 1}


def failed_line(name, port, addr, nxt):
    return (r'event=backend_address_failed backend=smtp://%s:%d address=%s reason="connection refused" '
            r'next=%s stage=health' % (re.escape(name), port, re.escape(addr), re.escape(nxt)))


def probe_fails(mx, url):
    return mx.metric('backend_probe_failures_total{backend="%s",stage="connect"}' % url) or 0


def daemon(url, name):
    return mt.Mxgate(mt.config([url], workers=1, dns=DNS, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                               backends={'health_check': {'interval': '300ms', 'timeout': '5s', 'fall': 100,
                                                          'rise': 1}}),
                     name=name)


if want('first'):
    b = mt.Backend(name='HA1')          # 127.0.0.1 only: 127.0.0.2 refuses
    mx = daemon('smtp://two.health.test:%d' % b.port, 'mx-health-addr-first')
    mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None,
             'first: the probe passed through the second address: ready\n%s' % mx.tail())
    mt.check(mx.wait_log(failed_line('two.health.test', b.port, '127.0.0.2', '127.0.0.1'), 10) is not None,
             'first: the probe logged the address it could not connect to\n%s' % mx.tail())
    mt.check(mx.count_log(r'event=backend_down') == 0, 'first: the backend stays up\n%s' % mx.tail())
    mx.stop()

if want('dead'):
    b = mt.Backend(name='HA2')          # 127.0.0.1 only: 127.0.0.2 and .3 refuse
    url = 'smtp://dead.health.test:%d' % b.port
    mx = daemon(url, 'mx-health-addr-dead')
    mt.check(mt.wait_for(lambda: probe_fails(mx, url) >= 5, 20),
             'dead: five probes failed (%s)\n%s' % (probe_fails(mx, url), mx.tail()))
    n = mx.count_log(failed_line('dead.health.test', b.port, '127.0.0.2', '127.0.0.3'))
    mt.check(n == 1, 'dead: 127.0.0.2 logged once over %d probes, not per probe (%d lines)\n%s'
             % (probe_fails(mx, url), n, mx.tail()))
    mt.check(mx.count_log(r'event=backend_address_failed .*address=127\.0\.0\.3 ') == 0,
             'dead: the last address is the check\'s failure (backend_down), not moved on from\n%s' % mx.tail())
    mt.check(mx.count_log(r'event=backend_down backend=%s ' % re.escape(url)) == 1, 'dead: down once\n%s' % mx.tail())
    mx.stop()

if want('flap'):
    b = mt.Backend(name='HA3')          # 127.0.0.1
    url = 'smtp://flap.health.test:%d' % b.port
    mx = daemon(url, 'mx-health-addr-flap')
    mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None, 'flap: ready\n%s' % mx.tail())
    mt.check(mx.count_log(r'event=backend_address_') == 0, 'flap: nothing to say while 127.0.0.1 answers\n%s' % mx.tail())
    b.stop()
    mark = probe_fails(mx, url)
    mt.check(mt.wait_for(lambda: probe_fails(mx, url) >= mark + 4, 20),
             'flap: probes fail with the backend stopped (%s)\n%s' % (probe_fails(mx, url), mx.tail()))
    line = failed_line('flap.health.test', b.port, '127.0.0.1', '127.0.0.2')
    n = mx.count_log(line)
    mt.check(n == 1, 'flap: 127.0.0.1 logged once over %d failed probes (%d lines)\n%s'
             % (probe_fails(mx, url) - mark, n, mx.tail()))
    b2 = mt.Backend(name='HA4', host='127.0.0.2', port=b.port)
    mt.check(mt.wait_for(lambda: b2.connections >= 1, 10),
             'flap: a probe reached 127.0.0.2\n%s' % mx.tail())
    mt.check(mx.count_log(line) == 1 and mx.count_log(r'event=backend_address_recovered') == 0,
             'flap: 127.0.0.1 still refuses: no second line, no recovery\n%s' % mx.tail())
    # 127.0.0.2 now takes the checks; 127.0.0.1 back and 127.0.0.2 gone: a check begins at
    # 127.0.0.2 (the address that last answered), fails there and reaches 127.0.0.1 again
    start = mx.log_size()
    b3 = mt.Backend(name='HA5', port=b.port)
    b2.stop()
    mt.check(mx.wait_log(r'event=backend_address_recovered backend=%s address=127\.0\.0\.1 stage=health'
                         % re.escape(url), 10, start) is not None,
             'flap: 127.0.0.1 answers again: logged as recovered\n%s' % mx.tail())
    mt.check(mx.wait_log(failed_line('flap.health.test', b.port, '127.0.0.2', '127.0.0.1'), 10, start) is not None,
             'flap: 127.0.0.2 gone: logged\n%s' % mx.tail())
    mt.check(mx.count_log(r'event=backend_down') == 0, 'flap: fall 100: never down\n%s' % mx.tail())
    mx.stop()
    b3.stop()

mt.finish()
