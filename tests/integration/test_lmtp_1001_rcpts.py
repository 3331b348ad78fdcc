#!/usr/bin/env python3
"""An LMTP server answers each recipient after the dot (RFC 2033 4.2); mxgate keeps at most
1,000 such replies per transaction (relay.c, RELAY_LMTP_MAX_RCPT) while limits.max_recipients
goes to 100,000 and backends.lmtp_recipient_limit 0 means no limit of its own. A transaction of
1,001 recipients to an LMTP backend: the 1,001st RCPT gets 452 4.5.3 (the client sends it in a
new transaction, RFC 5321 4.5.3.1.10), and every recipient's result is its own reply: the one
the server refuses after the dot (the 1,000th) is reported refused, not 250 by the first
one's reply (main: 1,001 recipients taken, the replies kept for 1,000, so the first one's 250
stood for all: the refused recipient counted delivered, no event=lmtp_rcpt_refused for it, and
the 1,001st reported by the first one's reply).
The same with lmtp_recipient_limit 1000 (its maximum). No timing decides a check."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM = 'sender@example.org'
RCPTS = ['r%04d@example.test' % i for i in range(1, 1002)]
REFUSED = RCPTS[999]                    # the 1,000th: within the transaction
lm = mt.Backend(lmtp=True, xclient=False, lmtp_codes={REFUSED: 552}, name='lmtp-1001')


def run(name, backends):
    b = {'client_identity': 'none'}
    b.update(backends)
    mx = mt.Mxgate(mt.config([lm.url], workers=1, backends=b, limits={'max_recipients': 2000}), name=name)
    before = len(lm.attempts)
    c = mt.Client(mx.port)
    c.ehlo()
    c.cmd('MAIL FROM:<%s>' % FROM)
    codes = [c.cmd('RCPT TO:<%s>' % r)[0] for r in RCPTS]
    mt.check(codes[:1000] == [250] * 1000 and codes[1000] == 452,
             '%s: 1,000 recipients taken, the 1,001st 452 (%s)' % (name, sorted(set(codes[:1000])) + codes[1000:]))
    code, _ = c.cmd('DATA')
    c.send(mt.stuff(mt.message(name)))
    code, text = c.reply()
    mt.check(code == 250, '%s: 250 (the others have it) (%s %s)' % (name, code, text))
    mt.check(mx.wait_log(r'event=partial_reject backend=\S+ rejected=1 accepted=999') is not None and
             mx.wait_log(r'event=lmtp_rcpt_refused backend=\S+ rcpt=\S*r1000@example\.test\S* code=552 ') is not None,
             '%s: the recipient refused after the dot is reported refused, by its own reply (lmtp_rcpt_refused)' % name)
    got = lm.attempts[before:]
    mt.check(len(got) == 1 and len(got[0]['rcpts']) == 1000 and RCPTS[1000] not in got[0]['rcpts'],
             '%s: one transaction of 1,000 recipients at the server (%s)' % (name, [len(a['rcpts']) for a in got]))
    # the client sends the rest in a new transaction
    r = mt.send_mail(mx.port, FROM, [RCPTS[1000]], mt.message(name + '-rest'), client=c)
    mt.check(r.code == 250, '%s: the 1,001st in a transaction of its own: 250 (%s %s)' % (name, r.code, r.text))
    c.cmd('QUIT')
    c.close()
    mt.check(mx.count_log(r'event=backend_error') == 0, '%s: no backend error' % name)
    mx.stop()


run('mx-lmtp-1001', {})
run('mx-lmtp-1001-limit', {'lmtp_recipient_limit': 1000})
mt.finish()
