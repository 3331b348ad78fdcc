#!/usr/bin/env python3
"""Concurrency shared through Redis: at most 2 simultaneous sessions of one client IP
across two mxgate nodes; a slot comes back when a session ends (on either node); a
per-prefix connection rate shared the same way."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()
ratelimit = {'store': 'redis://127.0.0.1:%d' % red.port, 'rules': [
    {'key': 'ip', 'count': 'concurrency', 'limit': 2},
    {'key': 'ip_prefix', 'count': 'connections', 'limit': '6/60s', 'prefix_v4': 24}]}
n1 = mt.Mxgate(mt.proxied_config([be.url], ratelimit=ratelimit), 'node1')
n2 = mt.Mxgate(mt.proxied_config([be.url], ratelimit=ratelimit), 'node2')


def greeting(node, src):
    c = mt.Client(node.port, proxy_src=src)
    return c, c.greeting


def slots_held():
    """Concurrency slots in Redis (members of the mxgate:rl:concurrency:* sets)."""
    return sum(mt.redis_cmd(red.port, 'ZCARD', k) for k in mt.redis_cmd(red.port, 'KEYS', 'mxgate:rl:concurrency:*'))


a, ga = greeting(n1, '198.18.50.1')
b, gb = greeting(n2, '198.18.50.1')
mt.check(ga[0] == 220 and gb[0] == 220, 'the first two sessions across the nodes are served: %s %s' % (ga, gb))
c, (code, text) = greeting(n1, '198.18.50.1')
c.close()
mt.check(code == 421 and '4.7.0 rate limit exceeded for ip 198.18.50.1: 2' in text,
         'a third simultaneous session across the nodes is refused: %s %r' % (code, text))
b.cmd('QUIT')
b.close()
# node2 gives the slot back when the session ends (a ZREM sent after the disconnect)
mt.check(mt.wait_for(lambda: slots_held() == 1, 10), 'the slot of the ended session was given back in Redis')
d, gd = greeting(n1, '198.18.50.1')
d.close()
mt.check(gd[0] == 220, 'the slot released on node2 is reusable on node1: %s' % (gd,))
a.close()
# connections 6/60s per /24, shared: 3 were admitted above (the refused third session gave
# its connection charge back: only what is accepted is charged); 3 more pass, then 421
codes = []
for i in range(4):
    c, g = greeting(n2 if i % 2 else n1, '198.18.50.%d' % (10 + i))
    codes.append(g[0])
    c.close()
mt.check(codes == [220, 220, 220, 421], 'shared per-prefix connection rate: %s' % codes)
mt.check('store=redis' in n1.log() + n2.log(), 'the checks went through Redis')
n1.stop()
n2.stop()
mt.finish()
