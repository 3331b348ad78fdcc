#!/usr/bin/env python3
"""The replies that say a Redis server cannot serve the store now, each from a scripted Redis
(hostile_peer.resp_command; docs/operations.md, "Redis: one master, failover and Sentinel"):
`-MASTERDOWN` (a replica cut off from its master), `-LOADING` (a server loading its data) and
Redis 6's form of a script's error (`-ERR Error running script ...: -READONLY ...`). The first
request after the handshake gets the error: the store drops that connection once
(`event=redis_down reason=masterdown|loading|readonly`), connects again, and the write that
got the error is sent again on the new connection and applied there (nothing lost). The
server's ROLE says master: only the reply tells.

No timings: bounded waits on log lines and on what the scripted server saw."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402

CASES = [
    ('masterdown', b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"),
    ('loading', b'-LOADING Redis is loading the dataset in memory\r\n'),
    ('readonly', b"-ERR Error running script (call to f_0123456789abcdef0123456789abcdef01234567): "
                 b"@user_script:1: @user_script: 1: -READONLY You can't write against a read only replica.\r\n"),
]


def redis(error):
    """Connection 0 answers its first command after the handshake with error, then drops
    nothing itself; every other command of every connection is answered as a master would."""
    def handler(srv, p, n):
        p.sock.settimeout(60)
        refused = False
        while True:
            cmd = hp.resp_command(p)
            if cmd is None:
                return
            verb = cmd[0].upper()
            srv.note((n, verb))
            if verb == 'PING':
                p.send(b'+PONG\r\n')
            elif verb == 'SCRIPT':
                sha = hashlib.sha1(cmd[2].encode('utf-8', 'surrogateescape')).hexdigest().encode() if len(cmd) > 2 else b'0' * 40
                p.send(b'$40\r\n' + sha + b'\r\n')
            elif verb in ('AUTH', 'SELECT', 'CLIENT'):
                p.send(b'+OK\r\n')
            elif verb == 'ROLE':
                p.send(b'*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n')
            elif n == 0 and not refused:
                refused = True
                p.send(error)
            else:
                p.send(b':1\r\n')
    return hp.Script(handler, 'redis-unusable')


be = mt.Backend(name='be')
for reason, error in CASES:
    rs = redis(error)
    mx = mt.Mxgate(mt.config([be.url], workers=1, ratelimit={
        'store': 'redis://127.0.0.1:%d' % rs.port, 'timeout': '2s',
        'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1000/60s', 'action': 'tempfail'}]}),
        name='mx-' + reason)
    mt.check(mt.wait_for(lambda: (0, 'PING') in rs.events, 10), '%s: the store connected' % reason)
    n0 = mx.log_size()
    c = mt.Client(mx.port)
    code = c.greeting[0]
    c.close()
    mt.check(code == 220, '%s: the session goes on (%s)' % (reason, code))
    down = mx.wait_log(r'event=redis_down store=\S+ worker=\d+ module=ratelimit reason=(\w+)',
                       timeout=mt.slack(15), start=n0)
    mt.check(down is not None and down.group(1) == reason,
             '%s: the connection is dropped with reason=%s: %s' % (reason, reason, down.group(0) if down else mx.tail(8)))
    mt.check(mx.wait_log(r'event=redis_up store=\S+ worker=\d+ module=ratelimit queued=1', timeout=mt.slack(15),
                         start=n0), '%s: and made again, the write that got the error waiting for it: %s' % (reason, mx.tail(4)))
    mt.check(mt.wait_for(lambda: [e for e in rs.events if e[0] == 1 and e[1] in ('EVALSHA', 'EVAL')], 10),
             '%s: the refused request went again on the new connection: %s' % (reason, rs.events))
    mt.check(mx.count_log(r'event=redis_down ', start=n0) == 1, '%s: one drop: %s' % (reason, mx.tail(8)))
    mt.check(mx.count_log(r'event=redis_write_dropped ', start=n0) == 0, '%s: nothing given up' % reason)
    mt.check(rs.n == 2, '%s: two connections (%d)' % (reason, rs.n))
    mx.stop()
    rs.stop()
be.stop()
mt.finish()
