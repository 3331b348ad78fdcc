#!/usr/bin/env python3
"""Proxy core: accepted connections are spread evenly over the workers.

Each worker has its own SO_REUSEPORT listening socket; the kernel's 4-tuple hash splits a few
long-lived connections unevenly (20 connections over 2 workers: 13/7, 16/4 ...). mxgate hands
a connection to the least loaded worker, so with k connections open over W workers no worker
holds more than ceil(k/W)+1 of them, on a plain, an implicit-TLS and a PROXY-protocol listener,
and after a reload (the new generation greets).

The worker is read from the session id in each event=connect line (its first two hex digits
are the worker index). All connections stay open: the checks are cumulative, after each batch
of 20, so that on a kernel hash alone they pass with odds well under 1% (10 checkpoints).
Also: limits.max_connections_per_ip counts a handed-off connection exactly once (the 120th
from one address is served, the 121st refused); the drain closes every one and exits 0.
A SIGTERM while connections keep arriving (hand-offs in flight, queues shut by the drain):
every connection that got anything ends with 421, the process exits 0, no sanitizer report
(a queued descriptor or hand-off left behind would leak)."""
import collections
import math
import os
import re
import signal
import socket
import sys
import threading

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


def balance_config(hostname):
    return mt.config([be.url], workers=WORKERS, hostname=hostname,
                     listen=[{'address': '127.0.0.1:0'},
                             {'address': '127.0.0.1:0', 'tls': 'implicit'},
                             {'address': '127.0.0.1:0', 'proxy_protocol': True}],
                     trusted_proxies=['127.0.0.1/32'],
                     tls={'certificate': crt, 'key': key},
                     limits={'max_connections_per_ip': PER_IP})


mx = mt.Mxgate(balance_config('mx.test'), name='mx-balance')
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


def batch(what, make, greeting='220 mx.test ESMTP'):
    got = []
    for i in range(BATCH):
        c = make(i)
        got.append(c.greeting[1] if c.greeting and c.greeting[0] else str(c.greeting))
        clients.append(c)
    bad = [g for g in got if not g.startswith(greeting)]
    mt.check(not bad, '%s: all %d greeted %r (%s)' % (what, BATCH, greeting, bad[:3]))
    checkpoint(what)


# ---------------------------------------------------------------- plain listener
for r in range(PER_IP // BATCH):
    batch('plain', lambda i: mt.Client(plain))
# Counted once however it reached its worker: the limit is met exactly.
extra = mt.Client(plain)
mt.check(extra.greeting and extra.greeting[0] == 421,
         'connection %d from one address: 421 max_connections_per_ip (%s)' % (PER_IP + 1, extra.greeting))
extra.close()
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=max_connections_per_ip', 5) is not None,
         'the refusal is logged as max_connections_per_ip')

# ---------------------------------------------------------------- implicit TLS and PROXY listeners
batch('implicit TLS', lambda i: mt.Client(implicit, tls=True, source='127.0.0.2'))
batch('PROXY v2', lambda i: mt.Client(proxied, proxy_src='198.18.1.%d' % (i + 1)))
# A handed-off session works end to end: one of them delivers a message.
c = clients[-1]
c.ehlo()
code, text = mt.send_mail(proxied, 'a@example.org', ['b@example.test'], mt.message('balanced'), client=c)
mt.check(code == 250, 'a session on the PROXY listener delivers (%s)' % text)

# ---------------------------------------------------------------- reload
# Sessions started after a reload run under the new generation, handed off or not.
mark = mx.log_size()
mx.reload(balance_config('mx2.test'))
mt.check(mx.wait_log(r'event=reloaded', 5, start=mark) is not None, 'SIGHUP: event=reloaded logged')
batch('after the reload', lambda i: mt.Client(plain, source='127.0.0.3'), greeting='220 mx2.test ESMTP')

# ---------------------------------------------------------------- drain
mx.stop()
codes = collections.Counter(c.reply()[0] for c in clients)
mt.check(codes == {421: len(clients)}, 'the drain told every open session 421 (%s)' % dict(codes))
for c in clients:
    c.close()

# ---------------------------------------------------------------- drain while connections arrive
mx = mt.Mxgate(balance_config('mx3.test'), name='mx-balance-drain')
socks = []
lock = threading.Lock()


def connector(src):
    for _ in range(100):
        try:
            s = socket.create_connection(('127.0.0.1', mx.port), mt.slack(10), source_address=(src, 0))
        except OSError:
            return                      # the listeners are closed: the drain has begun
        with lock:
            socks.append(s)


threads = [threading.Thread(target=connector, args=('127.0.0.%d' % (4 + i),)) for i in range(4)]
for t in threads:
    t.start()
mt.check(mt.wait_for(lambda: len(socks) >= 40, mt.slack(10)), 'connections arriving (%d)' % len(socks))
mx.send_signal(signal.SIGTERM)
mx.stop(sig=None)
for t in threads:
    t.join()


def ending(s):
    data = b''
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass                            # reset: it was in a listener's backlog when it closed
    s.close()
    lines = data.decode(errors='replace').splitlines()
    return lines[-1][:3] if lines else 'nothing'


ends = collections.Counter(ending(s) for s in socks)
mt.check(set(ends) <= {'421', 'nothing'} and ends['421'] > 0,
         'drain while connections arrive: every connection that was answered ends with 421 (%s of %d)'
         % (dict(ends), len(socks)))
mt.finish()
