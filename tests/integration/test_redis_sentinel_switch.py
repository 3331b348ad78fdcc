#!/usr/bin/env python3
"""A redis-sentinel:// store learns a failover from the sentinel's `+switch-master` message
(it subscribes on one sentinel, as redis-py and Lettuce do), not from the old master's
connection failing or answering READONLY later. `SENTINEL FAILOVER` while mxgate is idle:
the store logs `event=redis_switch ... from=M to=R` and counts
mxgate_store_sentinel_switches_total{store="redis:ratelimit"} before any sign of a failure
on the old master's connection (no redis_down, redis_error before the switch line; the
first redis_down after the failover says reason=sentinel_switch), then asks again, is up
on R, and a rate limit's charge lands on R. On main there is no subscription: no such
line, no such series.

Real peers: two redis-servers (a master and its replica) and `redis-server --sentinel`. No
timings: bounded polls on ROLE, the sentinel's view, Redis keys, log lines and /metrics."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
m = mt.redis()
r = mt.redis()


def role(port):
    """ROLE's reply, or [None] when the ask failed (Sentinel reconfiguring a node kills its
    clients, this one too when it is connected just then)."""
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
    for rep in mt.redis_cmd(s.port, 'SENTINEL', 'REPLICAS', 'mymaster'):
        d = dict(zip(rep[::2], rep[1::2]))
        if d.get(b'port') == str(r.port).encode() and d.get(b'master-link-status') == b'ok' \
                and b'disconnected' not in d.get(b'flags', b''):
            return True
    return False


mt.check(mt.wait_for(sentinel_knows_replica, timeout=mt.slack(20)), 'the sentinel knows the replica')

url = 'redis-sentinel://127.0.0.1:%d/mymaster' % s.port
be = mt.Backend()
ratelimit = {'store': url, 'timeout': '1s', 'rules': [
    {'key': 'ip', 'count': 'messages', 'limit': '100/1d', 'action': 'tempfail'}]}
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit=ratelimit,
                                 metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), 'node')
SWITCHES = 'store_sentinel_switches_total{store="redis:ratelimit"}'


def send(tag, src):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


mt.check(mx.wait_log(r'event=redis_master store=\S+ worker=\d+ module=ratelimit master=127\.0\.0\.1:%d'
                     % m.port, timeout=mt.slack(15)), 'the sentinel named M: %s' % mx.tail(8))
mt.check(mx.wait_log(r'event=redis_sentinel_subscribed store=\S+ worker=\d+ module=ratelimit '
                     r'sentinel=127\.0\.0\.1:%d' % s.port, timeout=mt.slack(15)),
         'the store subscribed on the sentinel: %s' % mx.tail(8))
mt.check(send('before', '198.18.92.1')[0] == 250, 'a message before the failover')
mt.check(mt.wait_for(lambda: keys(m.port, '198.18.92.1'), timeout=mt.slack(10)), 'its charge is on M')
mt.check(mx.metric(SWITCHES) == 0, 'no switch yet: %s' % mx.metric(SWITCHES))

start = mx.log_size()
mt.check(mt.redis_cmd(s.port, 'SENTINEL', 'FAILOVER', 'mymaster') == b'OK', 'SENTINEL failover accepted')
sw = mx.wait_log(r'event=redis_switch store=\S+ worker=\d+ module=ratelimit sentinel=127\.0\.0\.1:%d '
                 r'from=127\.0\.0\.1:%d to=127\.0\.0\.1:%d' % (s.port, m.port, r.port),
                 timeout=mt.slack(40), start=start)
mt.check(sw, 'the switch was taken from the sentinel\'s message: %s' % mx.tail(8))
if sw:
    before = mx.log()[start:sw.start()]
    mt.check(not re.search(r'event=(redis_down|redis_error|redis_write_dropped)', before),
             'nothing failed on the old master\'s connection before the switch: %s' % before[-2000:])
    down = re.search(r'event=redis_down store=\S+ worker=\d+ module=ratelimit reason=(\S+)', mx.log()[start:])
    mt.check(down and down.group(1) == 'sentinel_switch',
             'the first redis_down after the failover is the switch\'s: %s' % (down and down.group(0)))
mt.check(mx.metric(SWITCHES) == 1, 'counted: %s=%s' % (SWITCHES, mx.metric(SWITCHES)))
mt.check(mx.wait_log(r'event=redis_master store=\S+ worker=\d+ module=ratelimit master=127\.0\.0\.1:%d' % r.port,
                     timeout=mt.slack(20), start=start), 'the store asked again and was told R: %s' % mx.tail(8))
mt.check(mx.wait_log(r'event=redis_up store=\S+ worker=\d+ module=ratelimit', timeout=mt.slack(20), start=start),
         'and is up on it: %s' % mx.tail(8))
mt.check(mt.wait_for(lambda: role(r.port)[0] == b'master', timeout=mt.slack(40)),
         'R is the master: %s' % role(r.port)[0])
mt.check(send('after', '198.18.92.2')[0] == 250, 'a message after the failover')
mt.check(mt.wait_for(lambda: keys(r.port, '198.18.92.2'), timeout=mt.slack(10)),
         'its charge landed on the new master: %s' % mt.redis_cmd(r.port, 'KEYS', '*'))
mx.stop()
mt.finish()
