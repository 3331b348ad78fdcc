#!/usr/bin/env python3
"""A Redis concurrency slot lives as long as its session: concurrency_ttl is for the slots
of a node that died (docs/config.md), not a cap on a live session. Before, the slot was
written once at connect with the ttl and never renewed, so a client that kept a session
open past concurrency_ttl (a NOOP now and then is enough) no longer counted, and opened
as many more: the slow, connection-holding client the limit is for. Here the ttl is 1 s
and a session lives 4 s; the slot is given back when it ends. A slot whose node is gone
(SIGKILL) still goes after the ttl."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()
rl = {'store': 'redis://127.0.0.1:%d' % red.port, 'concurrency_ttl': '1s', 'rules': [
    {'key': 'ip', 'count': 'concurrency', 'limit': 1}]}
n = mt.Mxgate(mt.proxied_config([be.url], ratelimit=rl), 'node')
SRC = '198.18.64.1'


def greet():
    c = mt.Client(n.port, proxy_src=SRC)
    return c, c.greeting[0]


def greet_code(src=SRC):
    c = mt.Client(n.port, proxy_src=src)
    c.close()
    return c.greeting[0]


a, g = greet()
mt.check(g == 220, 'the first session is admitted')
codes = []
end = time.time() + 4
while time.time() < end:
    mt.check(a.cmd('NOOP')[0] == 250, 'the first session is alive')
    c, g = greet()
    codes.append(g)
    c.close()
    time.sleep(0.5)
mt.check(codes and set(codes) == {421}, 'while it lives (4 s, ttl 1 s) a second one is refused: %s' % codes)
a.cmd('QUIT')
a.close()
mt.check(mt.wait_for(lambda: greet_code() == 220, 10), 'the slot is given back when the session ends')

# a node that dies holding a slot: the slot is gone after the ttl
n2 = mt.Mxgate(mt.proxied_config([be.url], ratelimit=rl), 'node2')
d = mt.Client(n2.port, proxy_src='198.18.64.2')
mt.check(d.greeting[0] == 220, 'a session on node2')
n2.kill()
d.close()
t = time.time()
mt.check(mt.wait_for(lambda: greet_code('198.18.64.2') == 220, 10), 'the dead node\'s slot is gone after the ttl (%.1fs)' % (time.time() - t))
n.stop()
mt.finish()
