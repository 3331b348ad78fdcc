#!/usr/bin/env python3
"""AUTH cannot be held open by trickling, from either side (docs/operations.md, "Timeouts:
what bounds each peer"):
- the client's response line to a 334, an octet every TICK: limits.command_timeout from the
  line's first octet (421 4.4.2, closed);
- Dovecot's auth service (a scripted one on 127.0.0.1, inet:) trickling its handshake, or its
  answer to an AUTH request: auth.timeout from the request (the client is told 454 4.7.0, a
  temporary failure, never an authentication).
Each case prints how long it took (the figure in the docs' table); what is checked is the
daemon's line for the bound that ended it (event=timeout state=auth for the client's line,
event=auth_service_error reason=timeout for Dovecot's side) with the client's answer — a bound
reset on every read never fires, and the trickle's own end (LIMIT) would be another end.
"""
import base64
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402

CMD_TIMEOUT, AUTH_TIMEOUT = 2.0, 1.0
TICK = 0.3
LIMIT = 10.0
figures = {}

HANDSHAKE = (b'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\n'
             b'COOKIE\t0123456789abcdef0123456789abcdef\nDONE\n')


def dovecot(mode):
    """'handshake': the handshake an octet every TICK, then more MECH lines, never DONE;
    'reply': the handshake at once, then each AUTH answered an octet every TICK;
    'cont': the handshake at once, each AUTH answered CONT (the username prompt) at once."""
    def handler(srv, p, n):
        p.sock.settimeout(LIMIT + 5)
        if mode == 'handshake':
            data = HANDSHAKE[:-5]
            t0 = time.time()
            while time.time() - t0 < LIMIT + 5 and mt.drip(p.sock, data, TICK, LIMIT + 5):
                data = b'MECH\tX-MORE\n'
            return
        p.send(HANDSHAKE)
        while True:
            ln = p.line()
            if ln is None:
                return
            if ln.startswith('AUTH\t'):
                rid = ln.split('\t')[1]
                if mode == 'cont':
                    p.send('CONT\t%s\tVXNlcm5hbWU6\n' % rid)
                    continue
                mt.drip(p.sock, ('OK\t%s\tuser=alice\n' % rid).encode() * 20, TICK, LIMIT + 5)
                return
    return hp.Script(handler, 'dovecot-' + mode)


def server(name, dv_port):
    be = mt.Backend(name='be-' + name)
    crt, key = mt.cert()
    cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True}],
                    tls={'certificate': crt, 'key': key},
                    limits={'command_timeout': '%gs' % CMD_TIMEOUT},
                    auth={'dovecot': 'inet:127.0.0.1:%d' % dv_port, 'timeout': '%dms' % (AUTH_TIMEOUT * 1000)})
    return mt.Mxgate(cfg, name='mx-' + name)


def tls_client(mx):
    c = mt.Client(mx.port, timeout=LIMIT + 5)
    c.ehlo()
    mt.check(c.starttls()[0] == 220, 'STARTTLS 220')
    c.ehlo()
    return c


# ------------------------------------------------------------------- the client's response trickled
dv = dovecot('cont')
mx = server('client', dv.port)
c = tls_client(mx)
code, text = c.cmd('AUTH LOGIN')
mt.check(code == 334, 'AUTH LOGIN: 334 (%s %s)' % (code, text))
closed, took, got = mt.trickle(c.sock, itertools.chain([b'YWxp'], itertools.repeat(b'Y')), TICK, LIMIT)
figures['client_response'] = took
mt.say('client_response: closed=%s after %.2fs (bound %.1fs) %r' % (closed, took, CMD_TIMEOUT, got[-60:]))
m = mx.wait_log(r'event=timeout state=auth client=\S+', 5)
mt.check(closed and m is not None and b'421 4.4.2' in got,
         'the response line trickled: 421 4.4.2 and closed by command_timeout (%.2fs, %r, %s)'
         % (took, got[-60:], m.group(0) if m else 'no event=timeout state=auth'))
c.close()
mx.stop()

# ------------------------------------------------------------------- Dovecot trickling
for mode in ('handshake', 'reply'):
    dv = dovecot(mode)
    mx = server('dovecot-' + mode, dv.port)
    c = tls_client(mx)
    t0 = time.time()
    code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())
    took = time.time() - t0
    figures['dovecot_' + mode] = took
    mt.say('dovecot_%s: %s %s after %.2fs (bound %.1fs)' % (mode, code, text, took, AUTH_TIMEOUT))
    mt.check(code is not None and 400 <= code < 500, 'dovecot %s trickled: a 4xx, no authentication (%s %s)'
             % (mode, code, text))
    m = mx.wait_log(r'event=auth_service_error service=\S+ reason="?timeout\b', 5)
    mt.check(m is not None, 'dovecot %s trickled: answered by auth.timeout (%.2fs, %s)'
             % (mode, took, m.group(0) if m else 'no event=auth_service_error reason=timeout'))
    c.close()
    mx.stop()
    dv.stop()

mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
