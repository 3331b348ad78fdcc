#!/usr/bin/env python3
"""clamd plugin against a real clamd (custom EICAR-only signatures) and scripted faults:
EICAR in a base64 MIME attachment is refused with the virus name, clean mail passes, the
unix socket works, a clamd that dies mid-scan / answers garbage / stalls costs one verdict
(on_error), clamd down with on_error tempfail delivers nothing unscanned, on_error accept
lets mail through."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers'))
import mxpeers as t

cl = t.clamd()
be = t.Backend()
m = t.mxgate('  - { name: clamd, address: "127.0.0.1:%d", on_error: tempfail, timeout: 10s }\n'
             '  - { name: clamd, address: "unix:%s", on_error: tempfail, timeout: 10s }' % (cl.port, cl.sock), be.port)

code, text, _ = t.send(m.port, t.eicar_message('virus1'))
t.check(code == 554 and 'MxGate.Test.EICAR' in text, 'EICAR attachment refused with the name: %d %s' % (code, text))
t.check(not be.find('virus1'), 'EICAR message not delivered')
code, text, _ = t.send(m.port, t.message('clean1'))
t.check(code == 250 and len(be.find('body of clean1')) == 1, 'clean message delivered once: %d %s' % (code, text))
big = 'x' * 76 + '\r\n'
code, text, _ = t.send(m.port, t.message('big1', big * 30000))   # ~2.3 MB: many INSTREAM chunks
t.check(code == 250 and be.find('body of big1'), 'large clean message passes: %d' % code)

# action: quarantine -> 250, delivered to the quarantine maildir only, with the reason.
import glob
qd = os.path.join(t.TMP, 'quarantine')
mq = t.mxgate('  - { name: clamd, address: "127.0.0.1:%d", action: quarantine }' % cl.port, be.port,
              name='mx-quarantine', extra='quarantine: "maildir:%s"\n' % qd)
code, text, _ = t.send(mq.port, t.eicar_message('quar1'))
time.sleep(0.3)
held = [open(f, 'rb').read() for f in glob.glob(qd + '/new/*')]
t.check(code == 250 and not be.find('body of quar1'), 'quarantined virus: 250, not at the backend (%d)' % code)
t.check(len(held) == 1 and b'body of quar1' in held[0] and b'MxGate.Test.EICAR' in held[0],
        'quarantined virus in the quarantine maildir with the reason')
t.stop(mq)

# Faults, each behind its own daemon.
for mode, on_error, want in (('clamd-close', 'tempfail', 451), ('clamd-garbage', 'tempfail', 451),
                             ('clamd-garbage', 'reject', 550), ('clamd-close', 'accept', 250)):
    bp = t.bad_peer(mode)
    mm = t.mxgate('  - { name: clamd, address: "127.0.0.1:%d", on_error: %s, timeout: 5s }' % (bp.port, on_error),
                  be.port, name='mx-%s-%s' % (mode, on_error))
    mid = '%s-%s' % (mode, on_error)
    code, text, _ = t.send(mm.port, t.message(mid))
    t.check(code == want, '%s with on_error %s -> %d (want %d) %s' % (mode, on_error, code, want, text))
    t.check(bool(be.find('body of ' + mid + '\r')) == (want == 250), '%s: delivered only when accepted' % mid)
    t.stop(mm)
    t.stop(bp)

bp = t.bad_peer('clamd-stall')
mm = t.mxgate('  - { name: clamd, address: "127.0.0.1:%d", on_error: tempfail, timeout: 2s }' % bp.port,
              be.port, name='mx-stall')
start = time.time()
code, text, _ = t.send(mm.port, t.message('stall1'))
took = time.time() - start
t.check(code == 451 and took < 6, 'stalled clamd bounded by timeout: %d after %.1fs' % (code, took))
t.stop(mm)

# clamd down: nothing delivered unscanned.
t.stop(cl)
code, text, _ = t.send(m.port, t.message('down1'))
t.check(code == 451 and not be.find('body of down1'), 'clamd down -> %d, not delivered' % code)
t.check('event=plugin_error' in t.logtext('mxgate'), 'plugin error logged')

# A real clamd killed mid-scan: frozen (SIGSTOP) so the scan is surely in flight, then
# SIGKILLed; the connection resets and the message gets on_error at once, not the timeout.
import signal, threading
cl2 = t.clamd()
mk = t.mxgate('  - { name: clamd, address: "127.0.0.1:%d", on_error: tempfail, timeout: 20s }' % cl2.port,
              be.port, name='mx-kill')
code, _, _ = t.send(mk.port, t.message('prekill'))
t.check(code == 250, 'second clamd scans (%d)' % code)
cl2.send_signal(signal.SIGSTOP)
res = {}
def run():
    s = time.time()
    res['code'] = t.send(mk.port, t.message('kill1', 'y' * 200000))[0]
    res['took'] = time.time() - s
th = threading.Thread(target=run)
th.start()
time.sleep(1.5)
cl2.send_signal(signal.SIGKILL)
th.join(30)
t.check(res.get('code') == 451 and res.get('took', 99) < 10 and not be.find('body of kill1'),
        'clamd killed mid-scan -> %s after %.1fs, not delivered' % (res.get('code'), res.get('took', 99)))
t.finish()
