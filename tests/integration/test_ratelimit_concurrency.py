#!/usr/bin/env python3
"""Concurrency shared through Redis: at most 2 simultaneous sessions of one client IP
across two mxgate nodes; a slot comes back when a session ends (on either node); a
per-prefix connection rate shared the same way."""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratelimit_harness as h

h.need('redis-server')
red = h.redis()
be = h.Backend()
extra = ('ratelimit:\n  store: "redis://127.0.0.1:%d"\n  rules:\n'
         '    - { key: ip, count: concurrency, limit: 2 }\n'
         '    - { key: ip_prefix, count: connections, limit: 6/60s, prefix_v4: 24 }\n') % red.port
p1, p2 = h.free_port(), h.free_port()
n1 = h.mxgate(h.config(p1, be.port, extra), 'node1', p1)
n2 = h.mxgate(h.config(p2, be.port, extra), 'node2', p2)
time.sleep(0.3)

a = h.Client(p1, '198.18.50.1')
b = h.Client(p2, '198.18.50.1')
if a.reply()[0] != 220 or b.reply()[0] != 220:
    h.fail('the first two sessions were refused')
c = h.Client(p1, '198.18.50.1')
code, text = c.reply()
c.close()
if code != 421 or '4.7.0 rate limit exceeded for ip 198.18.50.1: 2' not in text:
    h.fail('a third simultaneous session across the nodes got %d %r' % (code, text))
b.cmd('QUIT')
b.close()
time.sleep(0.3)
d = h.Client(p1, '198.18.50.1')
if d.reply()[0] != 220:
    h.fail('the slot released on node2 was not reusable on node1')
d.close()
a.close()
time.sleep(0.3)
# connections 6/60s per /24, shared: 4 were made above; 2 more pass, then 421
codes = []
for i in range(4):
    c = h.Client(p2 if i % 2 else p1, '198.18.50.%d' % (10 + i))
    codes.append(c.reply()[0])
    c.close()
    time.sleep(0.1)
if codes != [220, 220, 421, 421]:
    h.fail('shared per-prefix connection rate: %r' % codes)
if 'store=redis' not in h.logtext('node1') + h.logtext('node2'):
    h.fail('the checks did not go through Redis')
h.ok('concurrency 2 and a /24 connection rate enforced across 2 nodes through Redis')
