#!/usr/bin/env python3
"""Greylisting shared through Redis by two nodes: the first attempt of a triplet on node1 is
refused 451 4.7.1, an early retry too, a retry after the delay on node2 passes (another host
of the same /24), and the triplet then passes at once; with Redis gone the nodes greylist
locally and keep serving."""
import os, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratelimit_harness as h

h.need('redis-server')
red = h.redis()
be = h.Backend()
extra = ('greylist:\n  enabled: true\n  store: "redis://127.0.0.1:%d"\n  delay: 1s\n'
         '  retry_window: 1h\n') % red.port
p1, p2 = h.free_port(), h.free_port()
n1 = h.mxgate(h.config(p1, be.port, extra), 'node1', p1)
n2 = h.mxgate(h.config(p2, be.port, extra), 'node2', p2)
time.sleep(0.3)

r = h.send(p1, '198.18.20.1', 'g1', mail_from='news@example.org', rcpts=('u@example.test',))
if r[0] != 451 or r[2] != 'rcpt' or '4.7.1 greylisted' not in r[1]:
    h.fail('first attempt: %r' % (r,))
r = h.send(p2, '198.18.20.1', 'g2', mail_from='news@example.org', rcpts=('u@example.test',))
if r[0] != 451:
    h.fail('early retry on the other node: %r' % (r,))
time.sleep(1.2)
r = h.send(p2, '198.18.20.2', 'g3', mail_from='News@Example.org', rcpts=('u@example.test',))
if r[0] != 250 or not be.has('g3'):
    h.fail('retry after the delay from the same /24 on node2: %r' % (r,))
r = h.send(p1, '198.18.20.1', 'g4', mail_from='news@example.org', rcpts=('u@example.test',))
if r[0] != 250:
    h.fail('known triplet on node1: %r' % (r,))
if 'store=redis' not in h.logtext('node1'):
    h.fail('greylisting did not go through Redis')

h.stop(red, signal.SIGKILL)
r = h.send(p1, '198.18.21.1', 'g5', mail_from='a@example.org', rcpts=('v@example.test',))
if r[0] != 451 or n1.poll() is not None:
    h.fail('with Redis down: %r' % (r,))
time.sleep(1.2)
r = h.send(p1, '198.18.21.1', 'g6', mail_from='a@example.org', rcpts=('v@example.test',))
if r[0] != 250:
    h.fail('local greylisting retry: %r' % (r,))
h.ok('greylist shared through Redis across 2 nodes; local fallback without Redis')
