#!/usr/bin/env python3
"""The Redis delivery ledger across a reload (the review's case): a reload gives each worker
a new Redis connection, and every message uses it at once. A lookup made before that
connection is up used to be refused (store_down): the retry of a message whose first attempt
reached some recipients was delivered as without the ledger, a second copy to each. Now the
lookup waits behind the first connection (within retry_ledger.timeout).

Node A delivers to r1 and r2 (r3 gets 452, the client hears 451) and writes the keys; node B,
whose Redis is 100 ms away (a forwarder that delays replies), is reloaded; the client's retry
reaches B at once: r1 and r2 get no second copy, and no ledger_store_error is logged.

A lookup out when a second reload comes (node C): a session opened before a reload asked the
worker's current generation's store, which has no session of its own; the next reload freed
it with the lookup out, whose answer was then a false event=ledger_store_error
reason=timeout (and the message went on without the ledger). The session's MGET is held at
a forwarder (no timing: it waits for the test) while C is reloaded again; then the reply
goes on: the message is delivered once, and no ledger_store_error is logged. A session now
asks its own generation's store, which lives as long as the session."""
import os
import re
import sys
import threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM = 's@example.org'
R = ['r1@example.test', 'r2@example.test', 'r3@example.test']
A = mt.message('ledgerRW', body='Hello redis ledger reload.\r\n')


def ledger(port):
    return {'retry_ledger': {'store': 'redis://127.0.0.1:%d/0' % port, 'timeout': '2s'}}


red = mt.redis()
fw = mt.TcpForwarder(red.port, reply_delay=0.1)
be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-rw')
mxa = mt.Mxgate(mt.config([be.url], workers=1, backends=ledger(red.port)), name='mx-rw-a')
cfgb = lambda: mt.config([be.url], workers=1, backends=ledger(fw.port))  # noqa: E731
mxb = mt.Mxgate(cfgb(), name='mx-rw-b')

code, text = mt.send_mail(mxa.port, FROM, R, A, timeout=30)
mt.check(code is not None and code // 100 == 4, 'first try at A: the client hears 4xx (%s %s)' % (code, text))
mt.check(mxa.wait_log(r'event=ledger_stored', timeout=30) is not None, 'A stored the delivered recipients')
at = mxb.log_size()
mxb.reload(cfgb())
mt.check(mxb.wait_log(r'event=reloaded', timeout=30, start=at) is not None, 'B reloaded')
code, text = mt.send_mail(mxb.port, FROM, R, A, timeout=30)
copies = mt.copies(be, b'Hello redis ledger reload.')
mt.check(copies.get(R[0]) == 1 and copies.get(R[1]) == 1,
         'the retry at B right after its reload: no second copy to r1, r2 (%s)' % copies)
errs = re.findall(r'event=ledger_store_error[^\n]*', mxb.log())
mt.check(not errs, 'no false ledger_store_error at B: %s' % errs[:2])
mxa.stop()
mxb.stop()

# Node C: the session's lookup held at the forwarder across a second reload.
armed, seen, release = threading.Event(), threading.Event(), threading.Event()


def hold_mget(direction, data):
    """The first MGET sent while armed waits here until the test releases it."""
    if direction == 'up' and armed.is_set() and b'MGET' in data:
        armed.clear()
        seen.set()
        release.wait(mt.slack(60))
    return None


fwc = mt.TcpForwarder(red.port, on_chunk=hold_mget)
cfgc = lambda: mt.config([be.url], workers=1,  # noqa: E731
                         backends={'retry_ledger': {'store': 'redis://127.0.0.1:%d/0' % fwc.port,
                                                    'timeout': '60s'}})
mxc = mt.Mxgate(cfgc(), name='mx-rw-c')
C = mt.message('ledgerRC', body='Hello redis ledger second reload.\r\n')
cl = mt.Client(mxc.port, timeout=60)
mt.check(cl.ehlo()[0] == 250, 'C: a session opened under generation 1')
at = mxc.log_size()
mxc.reload(cfgc())
mt.check(mxc.wait_log(r'event=reloaded', timeout=30, start=at) is not None, 'C reloaded (generation 2)')
armed.set()
codes = [cl.cmd('MAIL FROM:<%s>' % FROM)[0], cl.cmd('RCPT TO:<%s>' % R[0])[0], cl.cmd('DATA')[0]]
mt.check(codes == [250, 250, 354], 'C: the session\'s envelope (%s)' % codes)
cl.send(mt.stuff(C))
mt.check(seen.wait(mt.slack(30)), 'C: the message\'s ledger lookup (MGET) reached Redis\'s forwarder')
at = mxc.log_size()
mxc.reload(cfgc())
mt.check(mxc.wait_log(r'event=reloaded', timeout=30, start=at) is not None,
         'C reloaded again (generation 3) while the lookup was out')
release.set()
code, text = cl.reply()
mt.check(code == 250, 'C: the message accepted once the lookup was answered (%s %s)' % (code, text))
cl.cmd('QUIT')
copies = mt.copies(be, b'Hello redis ledger second reload.')
mt.check(copies == {R[0]: 1}, 'C: one copy (%s)' % copies)
errs = re.findall(r'event=ledger_store_error[^\n]*', mxc.log())
mt.check(not errs, 'C: no false ledger_store_error for the lookup out at the second reload: %s' % errs[:2])
mxc.stop()
be.stop()
red.terminate()
red.wait()
mt.finish()
