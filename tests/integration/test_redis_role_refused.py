#!/usr/bin/env python3
"""A Redis whose ACL refuses ROLE and that answers every write -READONLY (a replica behind
the store's address, an app user without @admin: docs/operations.md, "Redis: one master,
failover and Sentinel"). The handshake cannot tell it is a replica (ROLE refused: the PING
decides, as before ROLE was asked), so each connect is `redis_up` and each write's READONLY a
drop. What must hold: the write is given up after its strikes (event=redis_write_dropped
reason=no_reply), not re-sent on every reconnect for ever, and the reconnects back off instead
of a redis_up/redis_down pair every second. Before the fix the write never dropped (this
test's wait for it ran out) and the store flapped at 1 s.
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402


def redis():
    def handler(srv, p, n):
        p.sock.settimeout(60)
        while True:
            cmd = hp.resp_command(p)
            if cmd is None:
                return
            verb = cmd[0].upper()
            srv.note(verb)
            if verb == 'PING':
                p.send(b'+PONG\r\n')
            elif verb == 'SCRIPT':
                sha = hashlib.sha1(cmd[2].encode('utf-8', 'surrogateescape')).hexdigest().encode() if len(cmd) > 2 else b'0' * 40
                p.send(b'$40\r\n' + sha + b'\r\n')
            elif verb in ('AUTH', 'SELECT', 'CLIENT'):
                p.send(b'+OK\r\n')
            elif verb == 'ROLE':
                p.send(b"-NOPERM this user has no permissions to run the 'role' command\r\n")
            else:                           # EVALSHA, EVAL, anything that writes
                p.send(b"-READONLY You can't write against a read only replica.\r\n")
    return hp.Script(handler, 'redis-readonly')


rs = redis()
be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config([be.url], ratelimit={
    'store': 'redis://127.0.0.1:%d' % rs.port, 'timeout': '500ms',
    'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1000/60s', 'action': 'tempfail'}]}),
    name='mx-role-refused')
mt.check(mt.wait_for(lambda: rs.events.count('PING') >= 2, 10), 'both workers connected')
n0 = mx.log_size()
c = mt.Client(mx.port)
code = c.greeting[0]
c.close()
mt.check(code == 220, 'the session goes on (%s)' % code)
# three strikes, the reconnects between them 1 s then 2 s apart (4 s doubling on the old code
# would never end: no drop)
m = mx.wait_log(r'event=redis_write_dropped store=\S+ worker=\d+ module=ratelimit reason=no_reply',
                timeout=mt.slack(30), start=n0)
mt.check(m is not None, 'the refused write is given up after its strikes%s' % ('' if m else '\n' + mx.tail(12)))
ups = mx.count_log(r'event=redis_up ', start=n0)
mt.check(ups <= 4, 'the store came up %d times before the write was given up (<= 4: one per strike)' % ups)
mx.stop()
rs.stop()
be.stop()
mt.finish()
