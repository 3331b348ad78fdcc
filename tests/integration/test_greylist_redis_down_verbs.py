#!/usr/bin/env python3
"""greylist allow|trap|untrap with the Redis store down: one outcome, said (filters/
limits_control.c). On main `greylist trap IP` changed the local table first (the workers'
fallback while Redis does not answer), then failed on Redis and answered ERR "the local table
was changed": the operator got an error while this node refused the client and the other
nodes did not. Now a client record's verb asks Redis first and changes the local table only
once Redis has the change: with Redis down it answers ERR "nothing changed" and nothing is —
the client is greylisted (451) by this node's fallback, not refused as trapped (550). Once
Redis is back the same verb changes both.

Peers: redis-server behind mt.TcpForwarder (cut() is the outage), the recording Backend.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
relay = mt.TcpForwarder(red.port)
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
IP = '198.18.12.1'
mx = mt.Mxgate(mt.proxied_config([be.url], control={'socket': sock},
                                 greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % relay.port,
                                           'timeout': '300ms', 'delay': '1h', 'trap_ttl': '1h'}))


def ctl(*args):
    r = subprocess.run([CTL, '-s', sock] + list(args), capture_output=True, text=True, timeout=mt.slack(30))
    return r.returncode, (r.stdout + r.stderr).strip()


def rcpt_code(rcpt):
    c = mt.Client(mx.port, proxy_src=IP)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    code, _ = c.cmd('RCPT TO:<%s>' % rcpt)
    c.cmd('QUIT')
    c.close()
    return code


relay.cut()
mt.check(mx.wait_log(r'event=redis_down ', 10) is not None, 'the workers see Redis down')
rc, out = ctl('greylist', 'trap', IP)
mt.say('trap with Redis down: rc=%d %s' % (rc, out))
mt.check(rc != 0 and 'nothing changed' in out, 'trap with Redis down: ERR, nothing changed: %s' % out)
code = rcpt_code('u1@example.test')
mt.check(code == 451, 'the failed trap changed nothing here either: greylisted, not refused (%s)' % code)
rc, out = ctl('greylist', 'allow', IP)
mt.check(rc != 0 and 'nothing changed' in out, 'allow with Redis down: ERR, nothing changed: %s' % out)
code = rcpt_code('u2@example.test')
mt.check(code == 451, 'the failed allow changed nothing here: greylisted, not passed (%s)' % code)

relay.open = True
rc, out = ctl('greylist', 'trap', IP)
mt.check(rc == 0 and 'trapped for 3600s' in out, 'trap with Redis back: %s' % out)
code = rcpt_code('u3@example.test')
mt.check(code == 550, 'trapped: refused (%s)' % code)
rc, out = ctl('greylist', 'untrap', IP)
mt.check(rc == 0 and 'record deleted (was trapped)' in out, 'untrap with Redis back: %s' % out)
relay.cut()
mt.check(mt.wait_for(lambda: rcpt_code('u4@example.test') == 451, timeout=5),
         'untrapped in the local table too: with Redis down again the fallback greylists, not refuses')
mx.stop()
mt.finish()
