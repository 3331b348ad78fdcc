#!/usr/bin/env python3
"""test_backend_dns_many.py — a backend name with more addresses than mxgate keeps (8): a
headless Kubernetes Service of 12 pods, whose DNS answers in a shuffled order each time
(dnspython shuffles, as CoreDNS's loadbalance). mxgate keeps the lowest 8, so every
re-resolution of the same 12 sees the same set: no event=backend_addrs_changed round after
round (before: the first 8 of each shuffled answer, a "change" nearly every round, which reset
the address preference and closed idle pooled connections each time)."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
NAME = 'pods.k8s.test'
dns = mt.dns_peer({NAME: [{'a': '127.0.0.%d' % i} for i in range(10, 22)] + [{'ttl': 1}]}, name='dns-many')
a = mt.Backend(name='A')
mx = mt.Mxgate(mt.config(['smtp://%s:%d' % (NAME, a.port)], workers=1,
                         backends={'resolve_interval': '1s'},
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name='mx-backend-dns-many')
mt.check(mt.wait_for(lambda: (mx.metric('backend_resolves_total') or 0) >= 6, 60) is True,
         'six re-resolutions (%s)' % mx.metric('backend_resolves_total'))
mt.check(mx.count_log(r'event=backend_addrs_changed') == 0,
         'the same 12 addresses, shuffled: no change seen in any round (%d):\n%s'
         % (mx.count_log(r'event=backend_addrs_changed'), mx.tail()))
mt.check((mx.metric('backend_resolve_failures_total') or 0) == 0, 'no failed resolution')
mx.stop()
mt.finish()
