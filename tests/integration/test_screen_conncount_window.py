#!/usr/bin/env python3
"""limits.max_connections_per_ip against a client that crowds its own slot window. The
per-IP table probes 64 slots from a client's home slot, and a client whose 64 slots are all
held by other clients is admitted uncounted (fail open, so the table never refuses for its
own bookkeeping). The home slot was an unkeyed FNV-1a hash of the address: anyone could
compute it, pick 64 addresses (here IPv4 ones, from a /12; with IPv6 a /48 gives far more
than needed) whose homes fill the window of a 65th, hold one connection from each, and then
open as many connections as it liked from the 65th. Now the hash is keyed with a secret
drawn at start: the same 64 addresses land anywhere, the 65th is counted, and its second
connection is refused 421 as max_connections_per_ip 1 says."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
mx = mt.Mxgate(mt.proxied_config([be.url], limits={'max_connections_per_ip': 1}), 'node')


def fnv_home(v4):
    """The old home slot: FNV-1a over ::ffff:a.b.c.d, 65536 slots (what an attacker computes)."""
    h = 2166136261
    for b in bytes(10) + b'\xff\xff' + v4.to_bytes(4, 'big'):
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h & 65535


def ip(v4):
    return '%d.%d.%d.%d' % (v4 >> 24, (v4 >> 16) & 255, (v4 >> 8) & 255, v4 & 255)


base = 0xac100000   # 172.16.0.0
target = fnv_home(base)
crowd = []
a = base + 1
while len(crowd) < 64:
    if fnv_home(a) == target:
        crowd.append(a)
    a += 1

held = []
for v4 in crowd:
    c = mt.Client(mx.port, proxy_src=ip(v4), timeout=10)
    held.append(c)
mt.check(len(held) == 64, '64 clients holding a connection each')
first = mt.Client(mx.port, proxy_src=ip(base), timeout=10)
second = mt.Client(mx.port, proxy_src=ip(base), greet=False, timeout=10)
line = second._line()
mt.check(line is not None and line.startswith('421 ') and 'too many connections' in line,
         'the crowded client\'s second connection is refused (max_connections_per_ip 1): %r' % line)
second.close()
first.close()
for c in held:
    c.close()
mx.stop()
mt.finish()
