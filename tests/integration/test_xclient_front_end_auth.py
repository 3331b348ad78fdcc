#!/usr/bin/env python3
"""A front end in xclient_hosts that authenticates and mails as itself (AUTH, then MAIL
without XCLIENT) is judged at that MAIL, as any client is at connect — and, having
authenticated, has that refusal lifted as any client's is after AUTH (Postfix's
permit_sasl_authenticated before reject_rbl_client): event=auth_lifts_refusal.

mxgate applied the connect refusal to the front end's MAIL although it had authenticated:
the same user from the same listed address was refused through the front end and let
through when it connected straight. Here:

- straight from a listed address (not a front end), AUTH then MAIL: delivered (the lift);
- the listed front end, AUTH then MAIL without XCLIENT: delivered, the refusal logged as a
  connect refusal and then lifted (was: 550);
- the listed front end without AUTH on a listener without AUTH: still refused at MAIL;
- the front end naming a client by XCLIENT: the client is judged, not the front end;
- a listed client the front end names as authenticated (XCLIENT LOGIN=, nginx's smtp_auth,
  or the front end's own AUTH, which XCLIENT without LOGIN keeps as in Postfix): its connect
  refusal lifted where AUTH may lift it (was: 550 at MAIL for a user nginx authenticated).
"""
import base64
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('dovecot', 'rbldnsd')

FRONT = '127.0.0.12'        # the front end, in the list
DIRECT = '127.0.0.13'       # a listed client, no front end
dv = mt.dovecot({'alice': 'secret'})
rbl = mt.rbldnsd({'pbl.test': ('ip4set', ':127.0.0.10:dynamic range\n127.0.0.12/31\n198.18.0.71\n')})
be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config(
    [be.url], workers=1, xclient_hosts=[FRONT + '/32'],
    listen=[{'address': '127.0.0.1:0', 'submission': True}, {'address': '127.0.0.1:0'}],
    auth={'dovecot': dv.sock, 'allow_plaintext': True},
    dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
    dnsbl={'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'pbl.test', 'weight': 1}]}),
    name='mx')
SUB, MX = mx.ports


def plain(user, password):
    return base64.b64encode(('\0%s\0%s' % (user, password)).encode()).decode()


def authed_mail(source, tag):
    """AUTH PLAIN as alice from source on the submission listener, then one message without
    XCLIENT: (AUTH's code, the MAIL's code, the final code)."""
    c = mt.Client(SUB, source=source)
    c.ehlo('front.example.test')
    acode, _ = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
    r = mt.send_mail(SUB, 'alice@example.org', ['b@example.test'], mt.message(tag), client=c)
    c.close()
    return acode, r.stage, r[0], r[1]


acode, stage, code, text = authed_mail(DIRECT, 'direct')
mt.check(acode == 235 and code == 250,
         'a listed client straight, AUTH then MAIL: delivered, the refusal lifted (%s, %s %s %s)'
         % (acode, stage, code, text))
mt.check(mx.wait_log(r'event=auth_lifts_refusal client=%s user=alice reason=dnsbl' % re.escape(DIRECT), 3)
         is not None, 'event=auth_lifts_refusal for it')

start = mx.log_size()
acode, stage, code, text = authed_mail(FRONT, 'front')
mt.check(acode == 235 and code == 250,
         'the listed front end, AUTH then MAIL without XCLIENT: delivered as for any authenticated '
         'client (%s, %s %s %s)' % (acode, stage, code, text))
mt.check(mx.wait_log(r'event=connect_judged reason=mail_without_xclient client=%s' % re.escape(FRONT), 3)
         is not None, 'judged at its MAIL (event=connect_judged)')
mt.check(mx.count_log(r'event=reject stage=connect reason=dnsbl[^\n]*client=%s' % re.escape(FRONT), start=start) == 1
         and mx.count_log(r'event=auth_lifts_refusal client=%s user=alice reason=dnsbl' % re.escape(FRONT),
                          start=start) == 1,
         'its refusal logged as a connect refusal, then lifted (event=auth_lifts_refusal)')
mt.check(len(be.by_tag('front')) == 1, 'the message reached the backend')

# a client the front end names as authenticated (XCLIENT LOGIN=, nginx's smtp_auth), from a
# listed address: lifted as after its own AUTH, where AUTH may lift (the listener offers it)
NAMED = '198.18.0.71'       # listed: a dynamic range


def named(port, xclient, auth=False):
    """From the front end: [AUTH as alice,] XCLIENT xclient, EHLO, MAIL: the MAIL's code."""
    c = mt.Client(port, source=FRONT)
    c.ehlo('front.example.test')
    if auth:
        c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
    code, text = c.cmd('XCLIENT ' + xclient)
    if code != 220:
        c.close()
        return code, text
    c.ehlo('client.example.net')
    code, text = c.cmd('MAIL FROM:<a@example.org>')
    c.close()
    return code, text


start = mx.log_size()
code, text = named(SUB, 'ADDR=%s LOGIN=alice' % NAMED)
mt.check(code == 250, 'a listed client named with LOGIN=alice on the AUTH listener: its MAIL taken (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=auth_lifts_refusal client=%s user=alice reason=dnsbl' % re.escape(NAMED), 3,
                     start=start) is not None, 'event=auth_lifts_refusal for the named client')
code, text = named(SUB, 'ADDR=%s' % NAMED, auth=True)
mt.check(code == 250, "the front end's own AUTH, kept through XCLIENT without LOGIN (as in Postfix): the named "
         "client's MAIL taken (%s %s)" % (code, text))
code, text = named(SUB, 'ADDR=%s LOGIN=[UNAVAILABLE]' % NAMED, auth=True)
mt.check(code == 530, 'LOGIN=[UNAVAILABLE] ends the authentication: AUTH required again (%s %s)' % (code, text))
code, text = named(MX, 'ADDR=%s LOGIN=alice' % NAMED)
mt.check(code == 550, 'on a listener without AUTH a LOGIN= lifts nothing, as AUTH could not (%s %s)' % (code, text))

# without AUTH (a listener that offers none): refused at MAIL as before
c = mt.Client(MX, source=FRONT)
c.ehlo('front.example.test')
code, text = c.cmd('MAIL FROM:<own@example.org>')
mt.check(code == 550, 'the listed front end without AUTH: its MAIL refused (%s %s)' % (code, text))
# naming a client: the client is judged
code, _ = c.cmd('XCLIENT ADDR=198.18.0.70')
c.ehlo('client.example.net')
code, text = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code == 250, 'after XCLIENT the named client is not refused for the front end (%s %s)' % (code, text))
c.close()

mx.stop()
mt.finish()
