#!/usr/bin/env python3
"""Recipients a milter adds (smfi_addrcpt) that the backend refuses, against a real
python3-milter filter (tests/peers/mx_milter_ops.py) and scripted backends.

Postfix's cleanup puts an added recipient in the queue file; a 5xx from the next hop
bounces that recipient to the sender and the others are delivered; a 4xx defers it in
the queue. mxgate has no queue: a 5xx for an added recipient drops it with a warning
naming it and the others are delivered (before: every retry tempfailed the whole message,
event=replay_refused, so it was never delivered); a 4xx tempfails the message (nothing is
lost, the client retries and the milter adds it again). The client's own recipients are
never answered 250 before the backend's 250 for the message."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()


def send(port, tag, ops, rcpts=('b@example.test',)):
    data = t.message(tag, 'body of %s\r\n' % tag, headers=['X-Ops-one: %s' % ops])
    return t.send_mail(port, 'a@example.org', list(rcpts), data, ehlo='client.example.org', timeout=30)


def delivered(be, tag):
    return be.find('Message-ID: <%s@' % tag)


m1 = t.milter_ops('one')
milter = {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '10s'}

# --- One SMTP backend that refuses one address (550) and tempfails another (450).
be = t.Backend(reject_rcpt={'nobody@example.test'}, tempfail_rcpt={'later@example.test'})
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[dict(milter)]))

code, text = send(mx.port, 'ref1', 'addrcpt,<nobody@example.test> ; addrcpt,<archive@example.test> ; noseen')
got = delivered(be, 'ref1')
t.check(code == 250, 'an added recipient refused 550 by the backend: the message is still accepted (%s %s)'
        % (code, text))
t.check(len(got) == 1 and sorted(got[0]['rcpt']) == ['archive@example.test', 'b@example.test'],
        'delivered once to the client\'s recipient and the other added one: %s' % [g['rcpt'] for g in got])
t.check(mx.wait_log(r'warning \S+ event=added_rcpt_refused backend=\S+ rcpt=<nobody@example.test> code=550 ')
        is not None, 'the dropped recipient is logged as a warning naming it')
t.check(mx.count_log(r'event=replay_refused') == 0, 'no replay_refused for an added recipient')

# A 4xx for an added recipient: the message is tempfailed (the client retries), nothing is
# delivered to anyone (the client's recipients never see a 250 for a message not delivered).
code, text = send(mx.port, 'temp1', 'addrcpt,<later@example.test> ; noseen')
t.check(code == 451 and not delivered(be, 'temp1'),
        'an added recipient tempfailed 450: 451 to the client, nothing delivered (%s %s)' % (code, text))
t.check(mx.wait_log(r'warning \S+ event=added_rcpt_tempfail backend=\S+ rcpt=<later@example.test> code=450')
        is not None, 'and the added recipient is named in a warning')

# Every client recipient deleted, the only added one refused: nothing left to deliver, the
# client gets the refusal (550), nothing reaches DATA.
code, text = send(mx.port, 'none1', 'delrcpt,<b@example.test> ; addrcpt,<nobody@example.test> ; noseen')
t.check(code == 550 and not [a for a in be.attempts if b'<none1@' in a['data']],
        'the client\'s recipient deleted and the added one refused: 550, no DATA (%s %s)' % (code, text))
mx.stop()

# --- Two backends, both refusing the added recipient (before: each tried in turn, then 451
# to the client at every retry): delivered once by one of them, without it.
be2 = t.Backend(reject_rcpt={'nobody@example.test'})
mx = t.Mxgate(t.config([be.url, be2.url], hostname='mx.example.test', plugins=[dict(milter)]), name='mx-two')
for i in range(2):
    tag = 'two%d' % i
    code, text = send(mx.port, tag, 'addrcpt,<nobody@example.test> ; noseen', rcpts=('b@example.test', 'c@example.test'))
    got = delivered(be, tag) + delivered(be2, tag)
    t.check(code == 250 and len(got) == 1 and sorted(got[0]['rcpt']) == ['b@example.test', 'c@example.test'],
            'two backends: delivered once to the client\'s recipients (%s %s, %s)' % (code, text,
                                                                                    [g['rcpt'] for g in got]))

# The failover path: the first backend tempfails at DATA after taking the added recipient,
# the second refuses it. Whichever is picked first, the message is delivered once, to the
# client's recipient, by the second.
be_bad = t.Backend(mode='tempfail_data')
mx.stop()
mx = t.Mxgate(t.config([be_bad.url, be2.url], hostname='mx.example.test', plugins=[dict(milter)]), name='mx-fo')
for i in range(2):
    tag = 'fo%d' % i
    code, text = send(mx.port, tag, 'addrcpt,<nobody@example.test> ; addrcpt,<archive@example.test> ; noseen')
    got = delivered(be2, tag)
    t.check(code == 250 and len(got) == 1 and sorted(got[0]['rcpt']) == ['archive@example.test', 'b@example.test'],
            'failover: delivered once by the second backend without the refused recipient (%s %s, %s)'
            % (code, text, [g['rcpt'] for g in got]))
mx.stop()

# --- LMTP: the same at RCPT.
lm = t.Backend(lmtp=True, reject_rcpt={'nobody@example.test'})
mx = t.Mxgate(t.config([lm.url], hostname='mx.example.test', plugins=[dict(milter)]), name='mx-lmtp')
code, text = send(mx.port, 'lmtp1', 'addrcpt,<nobody@example.test> ; addrcpt,<archive@example.test> ; noseen')
got = delivered(lm, 'lmtp1')
t.check(code == 250 and len(got) == 1 and sorted(got[0]['rcpt']) == ['archive@example.test', 'b@example.test'],
        'LMTP: the refused added recipient is dropped, the rest delivered (%s %s, %s)'
        % (code, text, [g['rcpt'] for g in got]))
mx.stop()

# --- LMTP: the added recipient tempfailed after the final dot while the client's recipient
# took the message. Nothing is lost: the client reads 451 (no other backend for the one still
# owed) and its retry brings the message again (the milter adds the recipient again); the
# log names the recipient still owed and that a filter added it.
lm2 = t.Backend(lmtp=True, lmtp_codes={'archive@example.test': 451})
mx = t.Mxgate(t.config([lm2.url], hostname='mx.example.test', plugins=[dict(milter)]), name='mx-lmtp2')
code, text = send(mx.port, 'lmtp2', 'addrcpt,<archive@example.test> ; noseen')
t.check(code == 451, 'LMTP: an added recipient tempfailed after the dot: 451 to the client (%s %s)' % (code, text))
t.check(mx.wait_log(r'warning \S+ event=lmtp_rcpt_tempfail backend=\S+ rcpt=<archive@example.test> code=451 added=yes')
        is not None, 'the recipient still owed is named, marked as added by a filter')
mx.stop()

# --- Quoted local parts (RFC 5321 4.1.2 Quoted-string), as Postfix's cleanup takes them
# from smfi_addrcpt: relayed exactly as given (before: dropped with event=plugin_bad_output).
qb = t.Backend()
mx = t.Mxgate(t.config([qb.url], hostname='mx.example.test', plugins=[dict(milter)]), name='mx-quoted')
code, text = send(mx.port, 'q1', 'addrcpt,<"A B"@example.test> ; addrcpt,"x\\"y"@example.test ; noseen')
rcpt_lines = [c for c in qb.commands if c.upper().startswith('RCPT')]
t.check(code == 250 and len(delivered(qb, 'q1')) == 1, 'quoted added recipients: 250, delivered (%s %s)' % (code, text))
t.check('RCPT TO:<"A B"@example.test>' in rcpt_lines and 'RCPT TO:<"x\\"y"@example.test>' in rcpt_lines,
        'each sent to the backend as given, quotes and backslash kept: %s' % rcpt_lines)
t.check(mx.count_log(r'event=plugin_bad_output') == 0, 'no bad-output warning for them')
# A client's quoted recipient deleted by the milter.
code, text = send(mx.port, 'q2', 'delrcpt,<"c d"@example.test> ; noseen', rcpts=('b@example.test', '"c d"@example.test'))
got = delivered(qb, 'q2')
t.check(code == 250 and len(got) == 1 and got[0]['rcpt'] == ['b@example.test'],
        'a quoted recipient deleted by smfi_delrcpt: %s %s %s' % (code, text, [g['rcpt'] for g in got]))
# Still refused: an unterminated quote, a control character inside the quotes, a quoted
# local part without a domain.
n0 = mx.count_log(r'warning \S+ event=plugin_bad_output plugin=milter what=recipient')
code, text = send(mx.port, 'q3', 'addrcpt,<"open@example.test> ; addrcpt,<"a\tb"@example.test> ; addrcpt,<"ab"> ; noseen')
got = delivered(qb, 'q3')
t.check(code == 250 and len(got) == 1 and got[0]['rcpt'] == ['b@example.test'],
        'malformed quoted recipients are not added: %s' % [g['rcpt'] for g in got])
t.check(mx.wait_log(r'(?s)(event=plugin_bad_output plugin=milter what=recipient.*){%d}' % (n0 + 3)) is not None,
        'each with a warning (%d)' % mx.count_log(r'event=plugin_bad_output plugin=milter what=recipient'))
mx.stop()

t.stop_proc(m1)
t.finish()
