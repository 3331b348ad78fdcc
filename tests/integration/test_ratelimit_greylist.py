#!/usr/bin/env python3
"""Greylisting shared through Redis by two nodes: the first attempt of a triplet on node1 is
refused 451 4.7.1, an early retry too, a retry after the delay on node2 passes (another host
of the same /24), and the triplet then passes at once; with Redis gone the nodes greylist
locally and keep serving."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DELAY = 1.0     # greylist.delay

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()
greylist = {'enabled': True, 'store': 'redis://127.0.0.1:%d' % red.port, 'delay': '1s', 'retry_window': '1h'}
n1 = mt.Mxgate(mt.proxied_config([be.url], greylist=greylist), 'node1')
n2 = mt.Mxgate(mt.proxied_config([be.url], greylist=greylist), 'node2')


def send(node, src, tag, sender, rcpt):
    return mt.send_mail(node.port, sender, [rcpt], mt.message(tag), ehlo='client.example.org', proxy_src=src)


r = send(n1, '198.18.20.1', 'g1', 'news@example.org', 'u@example.test')
first = time.time()
mt.check(r[0] == 451 and r.stage == 'rcpt' and '4.7.1 greylisted' in r[1], 'first attempt greylisted at RCPT: %r' % (r,))
r = send(n2, '198.18.20.1', 'g2', 'news@example.org', 'u@example.test')
# "early" only if it really came before the delay (a slow machine may take longer)
if time.time() - first < DELAY:
    mt.check(r[0] == 451, 'early retry on the other node greylisted: %r' % (r,))
time.sleep(max(0, first + DELAY + 0.2 - time.time()))
r = send(n2, '198.18.20.2', 'g3', 'News@Example.org', 'u@example.test')
mt.check(r[0] == 250 and be.by_tag('g3'), 'retry after the delay from the same /24 on node2 passes: %r' % (r,))
r = send(n1, '198.18.20.1', 'g4', 'news@example.org', 'u@example.test')
mt.check(r[0] == 250, 'known triplet on node1 passes: %r' % (r,))
mt.check('store=redis' in n1.log(), 'greylisting went through Redis')

mt.stop_proc(red, signal.SIGKILL)
r = send(n1, '198.18.21.1', 'g5', 'a@example.org', 'v@example.test')
first = time.time()
mt.check(r[0] == 451 and n1.alive(), 'with Redis down: greylisted locally: %r' % (r,))
time.sleep(max(0, first + DELAY + 0.2 - time.time()))
r = send(n1, '198.18.21.1', 'g6', 'a@example.org', 'v@example.test')
mt.check(r[0] == 250, 'local greylisting: retry after the delay passes: %r' % (r,))
n1.stop()
n2.stop()
mt.finish()
