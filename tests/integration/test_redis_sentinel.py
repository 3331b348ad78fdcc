#!/usr/bin/env python3
"""A store behind Redis Sentinel: `redis-sentinel://HOST:PORT[,HOST:PORT...]/MASTER`. Before
each connect the store asks the sentinels in turn (a dead one first here: the next is asked)
for MASTER's address, connects to it and checks its ROLE; after `SENTINEL failover` the old
master is reconfigured as a replica (Sentinel closes its clients' connections), the store asks
again and the rate limit's charges land on the new master. The form is accepted where a
redis:// store is (`mxgate -t`, the start).

Real peers: two redis-servers (a master and its replica) and `redis-server --sentinel`. No
timings: bounded polls on ROLE, the sentinel's view, Redis keys and log lines."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
m = mt.redis()
r = mt.redis()


def role(port):
    """ROLE's reply, or [None] when the ask failed: Sentinel reconfiguring the old master kills
    its clients (CLIENT KILL TYPE normal), this one too when it is connected just then."""
    try:
        return mt.redis_cmd(port, 'ROLE')
    except (RuntimeError, OSError):
        return [None]


def keys(port, ip):
    return [k for k in mt.redis_cmd(port, 'KEYS', 'mxgate:rl:*') if ip.encode() in k]


mt.redis_cmd(r.port, 'REPLICAOF', '127.0.0.1', m.port)
mt.check(mt.wait_for(lambda: role(r.port)[0] == b'slave' and role(r.port)[3:4] == [b'connected'],
                     timeout=mt.slack(15)), 'R replicates M: %s' % role(r.port))
s = mt.redis_sentinel(m.port)


def sentinel_knows_replica():
    reps = mt.redis_cmd(s.port, 'SENTINEL', 'REPLICAS', 'mymaster')
    for rep in reps:
        d = dict(zip(rep[::2], rep[1::2]))
        if d.get(b'port') == str(r.port).encode() and d.get(b'master-link-status') == b'ok' \
                and b'disconnected' not in d.get(b'flags', b''):
            return True
    return False


mt.check(mt.wait_for(sentinel_knows_replica, timeout=mt.slack(20)), 'the sentinel knows the replica')

dead = mt.dead_port()
url = 'redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster' % (dead, s.port)
be = mt.Backend()
ratelimit = {'store': url, 'timeout': '1s', 'rules': [
    {'key': 'ip', 'count': 'messages', 'limit': '100/1d', 'action': 'tempfail'}]}
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit=ratelimit), 'node')


def send(tag, src):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


mt.check(mx.wait_log(r'event=redis_master store=redis-sentinel://\S+ worker=\d+ module=ratelimit master=127\.0\.0\.1:%d'
                     % m.port, timeout=mt.slack(15)), 'the sentinel named M: %s' % mx.tail(8))
mt.check(send('before', '198.18.91.1')[0] == 250, 'a message before the failover')
mt.check(mt.wait_for(lambda: keys(m.port, '198.18.91.1'), timeout=mt.slack(10)), 'its charge is on M')

start = mx.log_size()
mt.check(mt.redis_cmd(s.port, 'SENTINEL', 'FAILOVER', 'mymaster') == b'OK', 'SENTINEL failover accepted')
mt.check(mt.wait_for(lambda: role(r.port)[0] == b'master' and role(m.port)[0] == b'slave',
                     timeout=mt.slack(40)), 'R is the master, M its replica: %s %s' % (role(r.port)[0], role(m.port)[0]))
mt.check(mx.wait_log(r'event=redis_master store=\S+ worker=\d+ module=ratelimit master=127\.0\.0\.1:%d' % r.port,
                     timeout=mt.slack(40), start=start), 'the store asked again and was told R: %s' % mx.tail(8))
mt.check(mx.wait_log(r'event=redis_up store=\S+ worker=\d+ module=ratelimit', timeout=mt.slack(20), start=start),
         'and is up on it: %s' % mx.tail(8))
mt.check(send('after', '198.18.91.2')[0] == 250, 'a message after the failover')
mt.check(mt.wait_for(lambda: keys(r.port, '198.18.91.2'), timeout=mt.slack(10)),
         'its charge landed on the new master: %s' % mt.redis_cmd(r.port, 'KEYS', '*'))
mx.stop()
mt.finish()
