#!/usr/bin/env python3
"""Sentinels with a password (`requirepass` in a Sentinel's config, Redis 5.0.1+): a
`redis-sentinel://:PASSWORD@HOST:PORT/MASTER` store authenticates to the sentinels with the
URL's credentials, as to the master (Lettuce's redis-sentinel:// and redis-rb's default; the
same password on every node, docs/operations.md "Redis: one master, failover and Sentinel").
A sentinel without a password refuses the AUTH and is asked all the same (the form before
stays working); a wrong password is said (`event=redis_error reply="sentinel ...: AUTH: ..."`)
and the store stays down (`reason=no_master`). Before session 35 the sentinels were asked
without AUTH: a sentinel with requirepass answered NOAUTH and the store never came up.

Real peers: redis-server with requirepass (the master) and `redis-server --sentinel` with
requirepass and `sentinel auth-pass`. No timings: bounded waits on log lines and keys."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
PW = 'sentinel-and-master-pw'
m = mt.redis(args=['--requirepass', PW])
s = mt.redis_sentinel(m.port, extra='requirepass %s\nsentinel auth-pass mymaster %s\n' % (PW, PW))
open_sentinel = mt.redis_sentinel(m.port, extra='sentinel auth-pass mymaster %s\n' % PW)


def keys(ip):
    return [k for k in mt.redis_cmd_auth(m.port, PW, 'KEYS', 'mxgate:rl:*') if ip.encode() in k]


be = mt.Backend()
for name, url, ip in (
        ('sentinel-pw', 'redis-sentinel://:%s@127.0.0.1:%d/mymaster' % (PW, s.port), '198.18.92.1'),
        ('sentinel-open', 'redis-sentinel://:%s@127.0.0.1:%d/mymaster' % (PW, open_sentinel.port), '198.18.92.2')):
    ratelimit = {'store': url, 'timeout': '1s', 'rules': [
        {'key': 'ip', 'count': 'messages', 'limit': '100/1d', 'action': 'tempfail'}]}
    mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit=ratelimit), name)
    mt.check(mx.wait_log(r'event=redis_master store=redis-sentinel://\S+ worker=\d+ module=ratelimit master=127\.0\.0\.1:%d'
                         % m.port, timeout=mt.slack(15)), '%s: the sentinel named the master: %s' % (name, mx.tail(6)))
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(name), ehlo='client.example.org',
                     proxy_src=ip, timeout=15)
    mt.check(r[0] == 250, '%s: a message (%s)' % (name, r))
    mt.check(mt.wait_for(lambda: keys(ip), timeout=mt.slack(10)), '%s: its charge is on the master' % name)
    mt.check(mx.count_log(r'event=redis_down ') == 0, '%s: the store was never down: %s' % (name, mx.tail(6)))
    mx.stop()

# a wrong password: said, and no master
url = 'redis-sentinel://:wrong@127.0.0.1:%d/mymaster' % s.port
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit={'store': url, 'timeout': '1s', 'rules': [
    {'key': 'ip', 'count': 'messages', 'limit': '100/1d', 'action': 'tempfail'}]}), 'sentinel-wrong')
m1 = mx.wait_log(r'event=redis_error store=\S+ worker=\d+ module=ratelimit reply="sentinel 127\.0\.0\.1:%d: AUTH: [^"]*"'
                 % s.port, timeout=mt.slack(15))
mt.check(m1 is not None, 'a wrong password is said: %s' % mx.tail(6))
mt.check(mx.wait_log(r'event=redis_down store=\S+ worker=\d+ module=ratelimit reason=no_master', timeout=mt.slack(15)),
         'and the store is down for want of a master: %s' % mx.tail(6))
mx.stop()
mt.finish()
