#!/usr/bin/env python3
"""Milter replies libmilter itself will not produce, from a hand-written wire-protocol peer
(tests/peers/raw_milter.py), judged as Postfix's milter client judges them: a reply code
whose enhanced status code is of another class and a 2xx reply code are malformed (the
entry's on_error, Postfix's milter_default_action), 421 ends the session, SMFIR_SKIP stops
the body, header indexes past the end (32-bit values) append instead of landing at the
top, a filter hanging up mid-body costs that message only, and a reply nobody asked for
never answers the next message."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

port = t.hold_port().port
rm = t.start_peer([sys.executable, os.path.join(t.PEERS, 'raw_milter.py'), str(port)], 'raw-milter-%d' % port, port)
be = t.Backend()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': 'tempfail', 'timeout': '10s'}]))


def send(tag, body, size=0):
    return t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message(tag, body, size=size),
                       ehlo='client.example.org', timeout=30)


def one(tag):
    got = be.find('Message-ID: <%s@' % tag)
    t.check(len(got) == 1, '%s delivered once (%d)' % (tag, len(got)))
    return got[0]['data'] if got else b''


def headers_of(d):
    return d.split(b'\r\n\r\n', 1)[0].split(b'\r\n')


code, text = send('mis1', 'REPLY_MISMATCH\r\n')
t.check(code == 451 and '4.7.1 class mismatch' not in text,
        '550 with a 4.x.x enhanced code is malformed: on_error tempfail (%s %s)' % (code, text))
t.check(not be.find('Message-ID: <mis1@'), 'mismatched reply: not delivered')

code, text = send('ok1', 'REPLY_250\r\n')
t.check(code == 451 and not be.find('Message-ID: <ok1@'),
        'a 250 reply code from a milter is malformed: on_error tempfail, not delivered (%s %s)' % (code, text))

code, text = send('q1', 'REPLY_QUOTE\r\n')
t.check(code == 550 and 'refused "spam"' in text, 'a reply text with quotes reaches the client (%s %s)' % (code, text))
t.check(mx.count_log(r'event=reject stage=\S+ .*reply="5\.7\.1 refused \\"spam\\" event=delivered x=y"') == 1 and
        not mx.malformed_log_lines(), 'and stays inside reply="..." in the log, escaped: %s' % mx.malformed_log_lines()[:2])

c = t.Client(mx.port, timeout=30)
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
c.cmd('DATA')
c.send(t.message('c421', 'REPLY_421\r\n') + b'\r\n.\r\n')
code, text = c.reply()
closed = c.is_closed(5)
c.close()
t.check(code == 421 and closed, '421 from the milter: 421 to the client and the session ends (%s %s, closed %s)'
        % (code, text, closed))
t.check(not be.find('Message-ID: <c421@'), '421: not delivered')

code, text = send('skip1', 'SKIPBODY\r\n', size=300000)
h = headers_of(one('skip1'))
t.check(code == 250 and b'X-Raw-Chunks: 1' in h,
        'SMFIR_SKIP after the first body chunk: no more chunks sent (%s %s)' % (code, [x for x in h if b'Raw' in x]))

code, text = send('ins1', 'INS_HUGE\r\n')
h = headers_of(one('ins1'))
names = [x.split(b':', 1)[0] for x in h]
t.check(code == 250 and b'X-Huge-Index' in names and names.index(b'X-Huge-Index') == len(names) - 1,
        'insheader index 0xffffffff appends at the end, not the top: %s' % names)

code, text = send('chg1', 'CHG_HUGE\r\n')
h = headers_of(one('chg1'))
subj = [x for x in h if x.startswith(b'Subject:')]
t.check(code == 250 and subj[:1] == [b'Subject: test chg1'],
        'chgheader index 0x80000000 leaves the first Subject alone: %s' % subj)

# Dying while the body of a 2 MB message streams: on_error for that message, the next
# message of the same session reconnects and passes.
c = t.Client(mx.port, timeout=30)
c.ehlo('client.example.org')
r1 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('die1', 'DIE_IN_BODY\r\n', size=2000000),
                 client=c, timeout=30)
r2 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('die2', 'fine\r\n'), client=c, timeout=30)
c.close()
t.check(r1[0] == 451 and not be.find('Message-ID: <die1@'), 'milter hangs up mid-body: 451, not delivered (%s)' % (r1,))
t.check(r2[0] == 250 and len(be.find('Message-ID: <die2@')) == 1, 'next message of the session passes (%s)' % (r2,))

# A reply nobody asked for after the verdict: the message it accepted is delivered; the
# filter is out of step, so the next message gets a fresh connection, never the stray reply.
c = t.Client(mx.port, timeout=30)
c.ehlo('client.example.org')
r1 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('xtra1', 'EXTRA_REPLY\r\n'), client=c, timeout=30)
r2 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('xtra2', 'INS_HUGE\r\n'), client=c,
                 timeout=30)
r3 = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('xtra3', 'fine\r\n'), client=c, timeout=30)
c.close()
t.check(r1[0] == 250 and len(be.find('Message-ID: <xtra1@')) == 1, 'accepted before the stray reply: delivered (%s)' % (r1,))
t.check(r2[0] == 250 and b'X-Huge-Index: bottom' in b''.join(m['data'] for m in be.find('Message-ID: <xtra2@')),
        'the next message is judged by the filter (its header added), not by the stray accept (%s)' % (r2,))
t.check(r3[0] == 250 and len(be.find('Message-ID: <xtra3@')) == 1, 'and the one after passes (%s)' % (r3,))

# A milter that is down when the client connects, on_error tempfail: a greeting refusal
# can only be 421 (RFC 5321 3.1, 4.2.3: 220, 554 or 421 closing), never 451.
closed_port = t.hold_port().port
mdown = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % closed_port, 'on_error': 'tempfail', 'timeout': '3s'}]),
    name='mx-down')
c = t.Client(mdown.port, timeout=30, greet=False)
code, text = c.reply()
closed = c.is_closed(5)
c.close()
t.check(code == 421 and closed, 'milter down at connect, on_error tempfail: 421 greeting and close (%s %s)' % (code, text))
mdown.stop()

t.check(mx.alive(), 'daemon alive')
mx.stop()
t.stop_proc(rm)
t.finish()
