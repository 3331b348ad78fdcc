#!/usr/bin/env python3
"""A Redis store cannot hold a session by trickling (docs/operations.md, "Timeouts: what
bounds each peer"). A scripted Redis on 127.0.0.1 answers at a trickle, an octet every TICK:
- its PING at the connect's handshake: the handshake deadline (5 x the module's `timeout`, at
  least 1 s) ends it, event=redis_down reason=handshake_timeout;
- a check's reply, once up: the module's `timeout` from the request (ratelimit.timeout),
  event=redis_down reason=timeout, and the local table decides (the module's on_error).
Either way the client's session goes on at once: its greeting comes within the module's
timeout, never held by the store. Each case prints how long it took; what is checked is the
daemon's event=redis_down with the bound's reason (a bound reset on every read never fires:
the trickled reply would end whole, the session go on with no redis_down).
"""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402

TIMEOUT = 0.2           # ratelimit.timeout
HANDSHAKE = 1.0         # 5 x TIMEOUT, at least 1 s
TICK = 0.3
LIMIT = 10.0
figures = {}


read_command = hp.resp_command


def redis(mode):
    """'ping': the PING's +PONG an octet every TICK; 'reply': the handshake answered at
    once, every later command's reply an octet every TICK."""
    def handler(srv, p, n):
        p.sock.settimeout(LIMIT + 5)
        while True:
            cmd = read_command(p)
            if cmd is None:
                return
            verb = cmd[0].upper()
            srv.note(verb)
            if verb == 'PING':
                if mode == 'ping':
                    mt.drip(p.sock, b'+PONG\r\n', TICK, LIMIT + 5)
                    return
                p.send(b'+PONG\r\n')
            elif verb == 'SCRIPT':
                sha = hashlib.sha1(cmd[2].encode('utf-8', 'surrogateescape')).hexdigest().encode() if len(cmd) > 2 else b'0' * 40
                p.send(b'$40\r\n' + sha + b'\r\n')
            elif verb in ('AUTH', 'SELECT', 'CLIENT'):
                p.send(b'+OK\r\n')
            elif verb == 'ROLE':            # the handshake asks it before the PING
                p.send(b'*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n')
            elif mode == 'reply':
                mt.drip(p.sock, b':1000000000000\r\n', TICK, LIMIT + 5)
                return
            else:
                p.send(b':1\r\n')
    return hp.Script(handler, 'redis-' + mode)


for mode, reason, bound in (('ping', 'handshake_timeout', HANDSHAKE), ('reply', 'timeout', TIMEOUT)):
    rs = redis(mode)
    be = mt.Backend(name='be-' + mode)
    mx = mt.Mxgate(mt.config([be.url], ratelimit={
        'store': 'redis://127.0.0.1:%d' % rs.port, 'timeout': '%dms' % (TIMEOUT * 1000),
        'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1000/60s', 'action': 'tempfail'}]}),
        name='mx-redis-' + mode)
    t0 = time.time()
    if mode == 'ping':
        m = mx.wait_log(r'event=redis_down store=\S+ worker=\d+ module=\S+ reason=%s' % reason, timeout=LIMIT)
    else:
        # up once each worker's PING is answered (the first up is not logged): the trickle
        # begins at the first check, the client's connect
        mt.check(mt.wait_for(lambda: rs.events.count('PING') >= 2, 10), 'reply: both workers connected')
        time.sleep(0.2)
        n0 = mx.log_size()
        t0 = time.time()
        c = mt.Client(mx.port, timeout=LIMIT + 5)
        greet_took = time.time() - t0
        code = c.greeting[0]
        c.close()
        m = mx.wait_log(r'event=redis_down store=\S+ worker=\d+ module=\S+ reason=%s' % reason, timeout=LIMIT,
                        start=n0)
        mt.say('reply: greeting %s after %.2fs' % (code, greet_took))
        # the trickled reply would be whole after ~5 s: a 220 with redis_down reason=timeout
        # (below) is the session going on at ratelimit.timeout, not at the reply's end
        mt.check(code == 220, 'reply: the session goes on (%s after %.2fs)' % (code, greet_took))
    took = time.time() - t0
    figures['redis_' + mode] = took
    mt.say('%s: redis_down reason=%s after %.2fs (bound %.1fs)' % (mode, reason, took, bound))
    mt.check(m is not None, '%s trickled: ended by its bound, event=redis_down reason=%s (took %.2fs)%s'
             % (mode, reason, took, '' if m else '\n' + mx.tail(8)))
    mx.stop()
    rs.stop()

mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
