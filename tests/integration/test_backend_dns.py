#!/usr/bin/env python3
"""Backend host names follow the DNS while running, as in a container platform (a Kubernetes
Service whose MTA pod is rescheduled to another address), as HAProxy's `resolvers`, nginx's
`resolve` and Envoy's STRICT_DNS do. Against a real DNS server (dns_peer.py) on 127.0.0.1
and two backends on 127.0.0.1 and 127.0.0.2, one port:

- the name's address changes in the zone (TTL 1 s): mxgate resolves it again
  (backends.resolve_interval bounds the TTL), logs event=backend_addrs_changed with the new
  addresses, and the next message lands on the new backend: the idle pooled connection to
  the old address is closed (event=backend_pool_dropped reason="address no longer
  resolved"), not reused. Before, the name was resolved once per load and mail kept going
  to the old address until a reload;
- the name vanishes (NXDOMAIN), then the DNS server stops: the last addresses stay, mail
  keeps flowing to them, event=backend_resolve_failed is logged once, the failures counted
  in mxgate_backend_resolve_failures_total.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
NAME = 'mta.k8s.test'
dns = mt.dns_peer({NAME: [{'a': '127.0.0.1'}, {'ttl': 1}]}, name='dns-backend')


a = mt.Backend(name='A')
b = mt.Backend(name='B', host='127.0.0.2', port=a.port)
mx = mt.Mxgate(mt.config(['smtp://%s:%d' % (NAME, a.port)], workers=1,
                         backends={'resolve_interval': '2s'},
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name='mx-backend-dns')
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 30) is not None, 'ready:\n' + mx.tail())


def send(tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag)).code


def landed(backend, tag):
    return len([m for m in backend.messages if tag.encode() in m['data']])


mt.check(send('first') == 250 and landed(a, 'first') == 1, 'first: delivered to 127.0.0.1')

# The pod moves: the name now has 127.0.0.2.
start = mx.log_size()
dns.set_zone({NAME: [{'a': '127.0.0.2'}, {'ttl': 1}]})
mt.check(mx.wait_log(r'event=backend_addrs_changed backend=smtp://%s:%d name=%s addrs=127\.0\.0\.2 ttl=1'
                     % (re.escape(NAME), a.port, re.escape(NAME)), 30, start) is not None,
         'changed: the new address logged:\n' + mx.tail())
mt.check(send('second') == 250 and landed(b, 'second') == 1 and landed(a, 'second') == 0,
         'changed: the next message lands on 127.0.0.2 (A %d, B %d)' % (landed(a, 'second'), landed(b, 'second')))
mt.check(mx.count_log(r'event=backend_pool_dropped backend=\S+ connections=1 reason="address no longer resolved"', start) == 1,
         'changed: the idle connection to 127.0.0.1 closed, not reused:\n' + mx.tail())

# The name vanishes (NXDOMAIN), then the DNS server stops: the last address stays.
start = mx.log_size()
dns.set_zone({'other.k8s.test': [{'a': '127.0.0.1'}]})
mt.check(mx.wait_log(r'event=backend_resolve_failed backend=smtp://%s:%d name=%s reason="cannot resolve host: no such '
                     r'name[^"]*" addrs=127\.0\.0\.2' % (re.escape(NAME), a.port, re.escape(NAME)), 30, start) is not None,
         'nxdomain: logged, the last address kept:\n' + mx.tail())
mt.check(send('third') == 250 and landed(b, 'third') == 1, 'nxdomain: mail still goes to 127.0.0.2')
failures = mx.metric('backend_resolve_failures_total')
dns.kill()
dns.wait()
mt.check(mt.wait_for(lambda: (mx.metric('backend_resolve_failures_total') or 0) >= (failures or 0) + 2, 30) is True,
         'stopped: the failed resolutions counted (%s, then %s)' % (failures, mx.metric('backend_resolve_failures_total')))
mt.check(send('fourth') == 250 and landed(b, 'fourth') == 1, 'stopped: mail still goes to 127.0.0.2')
mt.check(mx.count_log(r'event=backend_resolve_failed', start) == 1,
         'stopped: backend_resolve_failed logged once while the name fails:\n' + mx.tail())
mt.check((mx.metric('backend_resolves_total') or 0) >= 4, 'resolutions counted')
mt.check(not mx.malformed_log_lines(), 'log lines well formed: %s' % mx.malformed_log_lines()[:3])
mt.finish()
