#!/usr/bin/env python3
"""Proxy core: accepted connections are spread evenly over the workers.

Each worker has its own SO_REUSEPORT listening socket; the kernel's 4-tuple hash splits a few
long-lived connections unevenly (20 connections over 2 workers: 13/7, 16/4 ...). mxgate hands
a connection to the least loaded worker, so with k connections open over W workers no worker
holds more than ceil(k/W)+1 of them, on a plain, an implicit-TLS and a PROXY-protocol listener.

The worker is read from the session id in each event=connect line (its first two hex digits
are the worker index). All connections stay open: the checks are cumulative, after each batch
of 20, so that on a kernel hash alone they pass with odds well under 1% (10 checkpoints).
Also: limits.max_connections_per_ip counts a handed-off connection exactly once (the 120th
from one address is served, the 121st refused); the drain closes every one and exits 0."""
import collections
import math
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

WORKERS = 2
BATCH = 20
PER_IP = 120
CONNECT = re.compile(r'^\S+ info ([0-9a-f]{2})[0-9a-f]{6} event=connect ', re.M)

crt, key = mt.cert()
be = mt.Backend(name='balance')
cfg = mt.config([be.url], workers=WORKERS,
                listen=[{'address': '127.0.0.1:0'},
                        {'address': '127.0.0.1:0', 'tls': 'implicit'},
                        {'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                tls={'certificate': crt, 'key': key},
                limits={'max_connections_per_ip': PER_IP})
mx = mt.Mxgate(cfg, name='mx-balance')
plain, implicit, proxied = mx.ports
clients = []


def per_worker(n):
    """Waits until n event=connect lines are logged; their count per worker index."""
    mt.wait_for(lambda: len(CONNECT.findall(mx.log())) >= n, mt.slack(10))
    return collections.Counter(int(w, 16) for w in CONNECT.findall(mx.log()))


def checkpoint(what):
    n = len(clients)
    got = per_worker(n)
    bound = math.ceil(n / WORKERS) + 1
    mt.check(sum(got.values()) == n and max(got.values()) <= bound and set(got) <= set(range(WORKERS)),
             '%s: %d connections open, no worker holds more than %d (%s)'
             % (what, n, bound, dict(sorted(got.items()))))


def batch(what, make):
    for i in range(BATCH):
        c = make(i)
        mt.check(c.greeting and c.greeting[0] == 220, '%s: connection %d greeted 220 (%s)' % (what, len(clients), c.greeting))
        clients.append(c)
    checkpoint(what)


# ---------------------------------------------------------------- plain listener
for r in range(PER_IP // BATCH):
    batch('plain', lambda i: mt.Client(plain))
# Counted once however it reached its worker: the limit is met exactly.
extra = mt.Client(plain)
mt.check(extra.greeting and extra.greeting[0] == 421,
         'connection %d from one address: 421 max_connections_per_ip (%s)' % (PER_IP + 1, extra.greeting))
extra.close()
mt.check(mx.wait_log(r'event=reject stage=connect reason=max_connections_per_ip', 5) is not None,
         'the refusal is logged as max_connections_per_ip')

# ---------------------------------------------------------------- implicit TLS and PROXY listeners
batch('implicit TLS', lambda i: mt.Client(implicit, tls=True, source='127.0.0.2'))
batch('PROXY v2', lambda i: mt.Client(proxied, proxy_src='198.18.1.%d' % (i + 1)))
# A handed-off session works end to end: one of them delivers a message.
c = clients[-1]
c.ehlo()
code, text = mt.send_mail(proxied, 'a@example.org', ['b@example.test'], mt.message('balanced'), client=c)
mt.check(code == 250, 'a session on the PROXY listener delivers (%s)' % text)

# ---------------------------------------------------------------- drain
mx.stop()
codes = collections.Counter(c.reply()[0] for c in clients)
mt.check(codes == {421: len(clients)}, 'the drain told every open session 421 (%s)' % dict(codes))
for c in clients:
    c.close()
mt.finish()
