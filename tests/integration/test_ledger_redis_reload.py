#!/usr/bin/env python3
"""The Redis delivery ledger across a reload (the review's case): a reload gives each worker
a new Redis connection, and every message uses it at once. A lookup made before that
connection is up used to be refused (store_down): the retry of a message whose first attempt
reached some recipients was delivered as without the ledger, a second copy to each. Now the
lookup waits behind the first connection (within retry_ledger.timeout).

Node A delivers to r1 and r2 (r3 gets 452, the client hears 451) and writes the keys; node B,
whose Redis is 100 ms away (a forwarder that delays replies), is reloaded; the client's retry
reaches B at once: r1 and r2 get no second copy, and no ledger_store_error is logged."""
import os
import re
import sys
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
be.stop()
red.terminate()
red.wait()
mt.finish()
