#!/usr/bin/env python3
"""A milter that answers a command it negotiated no reply for (SMFIP_NR_*): the stray reply
is never taken as the verdict of a later command.

libmilter never sends one (its sendreply turns any answer in a no-reply stage into none,
logging "milter claimed not to reply ... but did anyway", since the MTA cannot tell it
apart); Sendmail's and Postfix's milter clients read replies only when they wait for one,
so a stray reply answers the next command they wait on and every later verdict is one
step off. mxgate judges what it can see: a reply that arrives while none is awaited, or
in the same read as the awaited one after commands sent without a reply, is the filter's
error (on_error, event=milter_error says why), never a verdict.

Each filter here (tests/peers/neg_milter.py) answers SMFIR_REJECT to a command it said it
would not answer, and SMFIR_CONTINUE to the others."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

ADDHDRS = 0x1
NR_MAIL, NR_BODY = 0x4000, 0x80000


def neg_milter(name, proto, *args):
    return t.neg_milter('stray-' + name, ADDHDRS, proto, *args)


def entry(port):
    return {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': 'tempfail', 'timeout': '10s'}


be = t.Backend()

# --- the stray reject of MAIL reaches mxgate together with RCPT's continue: mxgate took the
# reject as RCPT's verdict (550 for a recipient the filter accepted) and dropped the rest
mport, _ = neg_milter('mail', NR_MAIL, 'stray=M', 'mods=h')
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(mport)]))
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('stray-m', 'x\r\n'),
                ehlo='client.example.org', timeout=30)
t.check(r[0] == 451 and r.stage == 'rcpt', 'a stray reply with the awaited one: on_error tempfail at RCPT, '
        'not the stray reject as its verdict (%s %s at %s)' % (r[0], r[1], r.stage))
t.check(mx.count_log(r'event=milter_error .*error="reply to a command sent without one expected \(SMFIP_NR_\*\)"')
        == 1, '  logged: event=milter_error ... SMFIP_NR_*')
t.check(mx.count_log(r'event=plugin_error .*stage=rcpt error=milter-protocol') == 1, '  plugin_error milter-protocol')
t.check(not be.find('Message-ID: <stray-m@'), '  not delivered')

# --- the stray reject of a body chunk reaches mxgate with the end of message's replies
# (a header and accept): mxgate took it as the message's verdict (550) and dropped the rest
bport, _ = neg_milter('body', NR_BODY, 'stray=B', 'mods=h')
mxb = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(bport)]), name='mx-body')
r = t.send_mail(mxb.port, 'a@example.org', ['b@example.test'], t.message('stray-b', 'x\r\n'),
                ehlo='client.example.org', timeout=30)
t.check(r[0] == 451 and r.stage == 'eom', 'a body chunk\'s stray reply with the end of message\'s: on_error '
        'tempfail, not a reject (%s %s at %s)' % (r[0], r[1], r.stage))
t.check(not be.find('Message-ID: <stray-b@'), '  not delivered')
mxb.stop()

# --- the stray reject arrives while nothing is awaited (MAIL was answered at once): the
# filter's error for the rest of the transaction, and the detail logged with it (it went
# nowhere: there was no call to log it on)
nport, nlog = neg_milter('now', NR_MAIL, 'stray_now=M', 'mods=h')
mxn = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(nport)]), name='mx-now')
c = t.Client(mxn.port, timeout=30)
c.ehlo('client.example.org')
code_m, _ = c.cmd('MAIL FROM:<a@example.org>')
sent = t.wait_for(lambda: re.search(r'^(\d+) stray-sent$', open(nlog).read(), re.M), 10)
# mxgate reads it before the RCPT below is sent on: once read, it drops the filter's
# connection (the filter's error), which the filter sees as that connection closed
dropped = sent and t.wait_for(lambda: '\n%s closed\n' % sent.group(1) in '\n' + open(nlog).read(), 10)
code_r, text_r = c.cmd('RCPT TO:<b@example.test>')
c.cmd('QUIT')
c.close()
t.check(sent and dropped and code_m == 250 and code_r == 451, 'a stray reply while none is awaited: on_error tempfail at the '
        'next step (MAIL %s, RCPT %s %s)' % (code_m, code_r, text_r))
t.check(mxn.count_log(r'event=milter_error .*error="reply while none was expected"') == 1,
        '  and the detail logged (event=milter_error ... reply while none was expected)')
mxn.stop()

t.check(mx.alive(), 'daemon alive')
mx.stop()
t.finish()
