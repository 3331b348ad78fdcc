#!/usr/bin/env python3
"""Recipients a milter adds at end of data (smfi_addrcpt, a real python3-milter filter:
tests/peers/mx_milter_ops.py) past the recipients one LMTP transaction can answer.

An LMTP server answers each recipient after the dot (RFC 2033 4.2); mxgate keeps 1,000 such
replies per transaction (RELAY_LMTP_MAX_RCPT, relay.c) and caps the client's RCPTs there
(452 4.5.3), but a milter's recipients come after that check. Postfix's queue would split
such a list into transactions; mxgate has none: the message fails with 451 4.5.3 before its
DATA (nothing delivered, nothing lost: the client keeps it and in the end tells the sender),
with event=tempfail stage=data reason=lmtp_too_many_recipients (warning) naming the counts for
the operator. Before: 1,001 recipients went to the server, the first one's reply stood for
all, a recipient the server refused after the dot counted delivered and the client heard
250 (a silent loss). At the cap (1,000) the message goes, each recipient with its own reply.
No timing decides a check."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()

FROM = 'a@example.org'
m1 = t.milter_ops('one')
milter = {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '30s'}
REFUSED = 'add0500@example.test'        # refused by the server after the dot
lm = t.Backend(lmtp=True, xclient=False, lmtp_codes={REFUSED: 552}, name='lmtp-cap')
mx = t.Mxgate(t.config([lm.url], hostname='mx.example.test', plugins=[dict(milter)], workers=1,
                       backends={'client_identity': 'none'}, limits={'max_recipients': 2000}),
              name='mx-lmtp-cap')


def send(tag, n):
    data = t.message(tag, 'body of %s\r\n' % tag, headers=['X-Ops-one: addrcpts,%d,example.test ; noseen' % n])
    return t.send_mail(mx.port, FROM, ['b@example.test'], data, ehlo='client.example.org', timeout=60)


def reached(tag):
    return [a for a in lm.attempts if ('<%s@' % tag).encode() in a['data']]


# 1 + 1,000 added: one past the cap.
r = send('over1', 1000)
t.check(r.code == 451 and ' 4.5.3 ' in r.text,
        'the client\'s recipient and 1,000 added ones: 451 4.5.3 to the client (%s %s)' % (r.code, r.text))
t.check(not reached('over1'), 'nothing went to the LMTP server past RCPT (%d transactions)' % len(reached('over1')))
t.check(mx.wait_log(r'warning \S+ event=tempfail stage=data reason=lmtp_too_many_recipients backend=\S+ rcpts=1001 '
                    r'added=1000 limit=1000 queue_id=\S+ ') is not None,
        'a warning names the counts (event=tempfail reason=lmtp_too_many_recipients)')
t.check(mx.count_log(r'event=lmtp_rcpt_refused') == 0 and mx.count_log(r'event=partial_reject') == 0,
        'no partial delivery reported')

# 1 + 999 added: at the cap, delivered; the one the server refuses is reported by its own reply.
n0 = mx.count_log(r'reason=lmtp_too_many_recipients')
r = send('at1', 999)
got = reached('at1')
t.check(r.code == 250, '1,000 recipients (999 added): 250 (%s %s)' % (r.code, r.text))
t.check(len(got) == 1 and len(got[0]['rcpts']) == 1000, 'one transaction of 1,000 recipients at the server (%s)'
        % [len(a['rcpts']) for a in got])
t.check(mx.wait_log(r'event=partial_reject backend=\S+ rejected=1 accepted=999') is not None and
        mx.wait_log(r'event=lmtp_rcpt_refused backend=\S+ rcpt=<%s> code=552 .* added=yes ' % REFUSED) is not None,
        'the recipient refused after the dot is reported refused by its own reply, marked added')
t.check(mx.count_log(r'reason=lmtp_too_many_recipients') == n0, 'no limit tempfail at the cap')
mx.stop()
t.stop_proc(m1)
t.finish()
