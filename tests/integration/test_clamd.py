#!/usr/bin/env python3
"""clamd plugin against a real clamd (custom EICAR-only signatures) and scripted faults:
EICAR in a base64 MIME attachment is refused with the virus name, clean mail passes, the
unix socket works, a clamd that dies mid-scan / answers garbage / stalls costs one verdict
(on_error), clamd down with on_error tempfail delivers nothing unscanned, on_error accept
lets mail through."""
import glob
import os
import re
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('clamd')


def gate(plugins, name='mxgate', **top):
    return mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=plugins, **top), name=name)


def send(port, data):
    return mt.send_mail(port, 'a@example.org', ['b@example.test'], data, timeout=30)


def clamd_plugin(address, **kw):
    return dict({'name': 'clamd', 'address': address}, **kw)


cl = mt.clamd()
be = mt.Backend()
m = gate([clamd_plugin('127.0.0.1:%d' % cl.port, on_error='tempfail', timeout='10s'),
          clamd_plugin('unix:' + cl.sock, on_error='tempfail', timeout='10s')])

code, text = send(m.port, mt.eicar_message('virus1'))
mt.check(code == 554 and 'MxGate.Test.EICAR' in text, 'EICAR attachment refused with the name: %s %s' % (code, text))
mt.check(not be.by_tag('virus1'), 'EICAR message not delivered')
code, text = send(m.port, mt.message('clean1'))
mt.check(code == 250 and len(be.by_tag('clean1')) == 1, 'clean message delivered once: %s %s' % (code, text))
code, text = send(m.port, mt.message('big1', size=2300000))   # ~2.3 MB: many INSTREAM chunks
mt.check(code == 250 and be.by_tag('big1'), 'large clean message passes: %s' % code)

# action: quarantine -> 250, delivered to the quarantine maildir only, with the reason.
qd = os.path.join(mt.TMP, 'quarantine')
mq = gate([clamd_plugin('127.0.0.1:%d' % cl.port, action='quarantine')], 'mx-quarantine',
          quarantine='maildir:' + qd)
code, text = send(mq.port, mt.eicar_message('quar1'))


def held():
    out = []
    for f in glob.glob(qd + '/new/*'):
        with open(f, 'rb') as fh:
            out.append(fh.read())
    return out


mt.check(code == 250 and not be.by_tag('quar1'), 'quarantined virus: 250, not at the backend (%s)' % code)
q = held()
mt.check(len(q) == 1 and b'body of quar1' in q[0] and b'MxGate.Test.EICAR' in q[0],
         'quarantined virus in the quarantine maildir with the reason')
mq.stop()

# Faults, each behind its own daemon.
for mode, on_error, want in (('clamd-close', 'tempfail', 451), ('clamd-garbage', 'tempfail', 451),
                             ('clamd-garbage', 'reject', 550), ('clamd-close', 'accept', 250)):
    bp = mt.bad_peer(mode)
    mid = '%s-%s' % (mode, on_error)
    mm = gate([clamd_plugin('127.0.0.1:%d' % bp.port, on_error=on_error, timeout='5s')], 'mx-' + mid)
    code, text = send(mm.port, mt.message(mid))
    mt.check(code == want, '%s with on_error %s -> %s (want %d) %s' % (mode, on_error, code, want, text))
    mt.check(bool(be.by_tag(mid)) == (want == 250), '%s: delivered only when accepted' % mid)
    mm.stop()
    mt.stop_proc(bp)

bp = mt.bad_peer('clamd-stall')
mm = gate([clamd_plugin('127.0.0.1:%d' % bp.port, on_error='tempfail', timeout='2s')], 'mx-stall')
code, text = send(mm.port, mt.message('stall1'))
mt.check(code == 451 and mm.count_log(r'event=plugin_error plugin=clamd stage=eom error=timeout on_error=tempfail') == 1,
         'stalled clamd bounded by its timeout: %s, logged error=timeout on_error=tempfail' % code)
mm.stop()

# clamd down: nothing delivered unscanned.
mt.stop_proc(cl)
code, text = send(m.port, mt.message('down1'))
mt.check(code == 451 and not be.by_tag('down1'), 'clamd down -> %s, not delivered' % code)
mt.check('event=plugin_error' in m.log(), 'plugin error logged')

# A real clamd killed mid-scan: frozen (SIGSTOP) so the scan is surely in flight, then
# SIGKILLed; the connection resets and the message gets on_error at once, not the timeout.
cl2 = mt.clamd()
mk = gate([clamd_plugin('127.0.0.1:%d' % cl2.port, on_error='tempfail', timeout='20s')], 'mx-kill')
code, _ = send(mk.port, mt.message('prekill'))
mt.check(code == 250, 'second clamd scans (%s)' % code)
cl2.send_signal(signal.SIGSTOP)
res = {}


def run():
    res['code'] = send(mk.port, mt.message('kill1', 'y' * 200000))[0]


def queued_bytes(port):
    """Bytes received but not read by the listener on port (ESTABLISHED sockets, /proc/net/tcp)."""
    total = 0
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            p = line.split()
            if int(p[1].rsplit(':', 1)[1], 16) == port and p[3] == '01':
                total += int(p[4].split(':')[1], 16)
    return total


th = threading.Thread(target=run)
th.start()
# The scan is in flight once message bytes wait, unread, in the frozen clamd's socket.
mt.check(mt.wait_for(lambda: queued_bytes(cl2.port) > 0, 20), 'the scan reached the frozen clamd')
cl2.send_signal(signal.SIGKILL)
th.join(60)
# "At once" is the error's kind: the reset (clamd-unreachable), not the 20 s timeout's.
errors = re.findall(r'event=plugin_error plugin=clamd stage=eom error=(\S+)', mk.log())
mt.check(res.get('code') == 451 and errors == ['clamd-unreachable'] and not be.by_tag('kill1'),
         'clamd killed mid-scan -> %s from the reset (%s), not the 20 s timeout; not delivered'
         % (res.get('code'), errors))
m.stop()
mk.stop()
mt.finish()
