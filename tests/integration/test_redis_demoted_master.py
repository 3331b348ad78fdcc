#!/usr/bin/env python3
"""A failover demotes the Redis mxgate talks to: the old master comes back as a replica while
the address the store names (a VIP, a Service: here a forwarder) now leads to the new master,
and the store's TCP connection stays on the old server. Every write there answers
`-READONLY You can't write against a read only replica.`; the store used to take that as one
failed request and keep the connection, so its writes failed forever and the new master never
saw one. Now READONLY (and MASTERDOWN, LOADING) drops the connection (event=redis_down
reason=readonly, once), the check that got it is decided as in an outage (locally, its charge
kept for Redis), a reconnect that finds a replica (ROLE) stays down without another line, and
the one that reaches the new master is up: the kept charge and the new ones land there.

Two real redis-servers, A and B; the failover is `REPLICAOF` at runtime, observed by ROLE.
No timings: every wait is a bounded poll on observable state (ROLE, the forwarder's accepted
connections, the keys on B, a log line)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
a = mt.redis()
b = mt.redis()
fwd = mt.TcpForwarder(a.port)
be = mt.Backend()
ratelimit = {'store': 'redis://127.0.0.1:%d' % fwd.port, 'timeout': '1s', 'rules': [
    {'key': 'ip', 'count': 'messages', 'limit': '100/1d', 'action': 'tempfail'}]}
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit=ratelimit), 'node')


def keys(port):
    return mt.redis_cmd(port, 'KEYS', 'mxgate:rl:*')


def role(port):
    """ROLE's reply, or [None] when the server answered an error or closed the connection."""
    try:
        return mt.redis_cmd(port, 'ROLE')
    except (RuntimeError, OSError):
        return [None]


def send(tag, src):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


def accepted():
    return len(fwd.conns) // 2     # each accepted connection holds two sockets


mt.check(send('before', '198.18.90.1')[0] == 250, 'a message before the failover')
mt.check(mt.wait_for(lambda: keys(a.port), timeout=mt.slack(10)), 'its charge is on A, the master: %s' % keys(a.port))

# The failover: A becomes B's replica (its data replaced by B's: none); the address still
# leads to A for the connection already open.
start = mx.log_size()
mt.redis_cmd(a.port, 'REPLICAOF', '127.0.0.1', b.port)
mt.check(mt.wait_for(lambda: role(a.port)[0] == b'slave' and role(a.port)[3:4] == [b'connected'],
                     timeout=mt.slack(15)), 'A is a replica of B: %s' % role(a.port))
mt.check(role(b.port)[0] == b'master' and not keys(b.port), 'B is a master and holds nothing yet')
conns = accepted()
r = send('demoted', '198.18.90.2')
mt.check(r[0] == 250, 'a message while the store talks to the demoted master is not refused: %r' % (r,))
mt.check(mx.wait_log(r'event=redis_down store=\S+ worker=\d+ module=ratelimit reason=readonly',
                     timeout=mt.slack(10), start=start),
         'READONLY drops the connection, logged as such: %s' % mx.tail(8))
# The store reconnects (backoff from 1 s) and still finds A, a replica: it stays down.
mt.check(mt.wait_for(lambda: accepted() >= conns + 2, timeout=mt.slack(15)),
         'the store reconnected twice (accepted %d, was %d)' % (accepted(), conns))
mt.check(mx.count_log(r'event=redis_up', start) == 0, 'a replica is not taken as up: %s' % mx.tail(8))
mt.check(not keys(b.port), 'nothing reached B yet')

# The address moves to the new master: the next reconnect reaches it.
fwd.target = b.port
mt.check(mx.wait_log(r'event=redis_up store=\S+ worker=\d+ module=ratelimit', timeout=mt.slack(40),
                     start=start), 'the store is up again, on B: %s' % mx.tail(8))
# 100/1d: each message moves the bucket 864 s ahead, so the charge decided locally during
# the outage is still worth a key when it is sent
mt.check(mt.wait_for(lambda: any(b'198.18.90.2' in k for k in keys(b.port)), timeout=mt.slack(10)),
         'the charge kept during the outage landed on the new master: %s' % keys(b.port))
r = send('after', '198.18.90.3')
mt.check(r[0] == 250, 'a message after the failover: %r' % (r,))
mt.check(mt.wait_for(lambda: any(b'198.18.90.3' in k for k in keys(b.port)), timeout=mt.slack(10)),
         'a new check writes to the new master: %s' % keys(b.port))
downs = re.findall(r'event=redis_down [^\n]*', mx.log()[start:])
mt.check(len(downs) == 1, 'the outage is logged once: %s' % downs)
mx.stop()
mt.finish()
