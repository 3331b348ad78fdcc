#!/usr/bin/env python3
"""A front end in xclient_hosts is not the client: its own address is not judged at connect.

Postfix's smtpd leaves a peer in smtpd_authorized_xclient_hosts out of its connection count
and rate limits (anvil) and judges the client XCLIENT names. mxgate ran the whole connect
stage on the front end's address first: a front end in a DNS list was logged refused at
every connection, and a `connections` rate limit over its address counted every client it
relayed and closed the front end's connections 421 once over — every client behind it
refused for the front end's sake.

Here the front end (198.18.0.50, through a PROXY header) is in the DNS list and under a
connection rate limit of 2 a minute, with no allow list:

- four connections, each naming a client by XCLIENT: each is greeted at once, each message
  is delivered, the front end is never logged refused at connect (was: the third connection
  closed 421 by the rate limit, and a dnsbl refusal logged for the front end each time);
- a front end that mails as itself (MAIL without XCLIENT) is judged then, as any client is
  at connect: its MAIL is refused 550 by the DNS list (event=connect_judged);
- a peer not in xclient_hosts is judged at connect as ever (the teaser-free refusal at MAIL).
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')

FRONT = '198.18.0.50'       # the front end: in the DNS list
OTHER = '198.18.0.51'       # listed too, not a front end
rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:listed\n%s\n%s\n' % (FRONT, OTHER))})
be = mt.Backend(name='be')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, xclient_hosts=[FRONT + '/32'],
    dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
    dnsbl={'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'bl.test', 'weight': 1}]},
    ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '2/60s', 'action': 'tempfail'}]}),
    name='mx')


def session(tag, client):
    """A front-end connection naming client by XCLIENT, one message: (greeting, final code)."""
    c = mt.Client(mx.port, proxy_src=FRONT)
    greeting = c.greeting
    if greeting[0] != 220:
        c.close()
        return greeting, None
    c.ehlo('front.example.test')
    code, text = c.cmd('XCLIENT ADDR=%s' % client)
    if code != 220:
        c.close()
        return greeting, code
    c.ehlo('client.example.net')
    for line in ('MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test>'):
        code, _ = c.cmd(line)
        if code != 250:
            c.close()
            return greeting, code
    code, _ = c.cmd('DATA')
    if code == 354:
        c.send('Message-ID: <%s@mxtest.example>\r\nSubject: x\r\n\r\nHello.\r\n.\r\n' % tag)
        code = c.reply()[0]
    c.cmd('QUIT')
    c.close()
    return greeting, code


for i in range(4):
    greeting, code = session('fe%d' % i, '198.18.0.%d' % (60 + i))
    mt.check(greeting[0] == 220 and code == 250,
             'front-end connection %d (over its own rate limit of 2/60s, in the DNS list): '
             'greeted %s, the named client delivered (%s)' % (i + 1, greeting, code))
mt.check(len([m for m in be.messages if b'@mxtest.example>' in m['data']]) == 4, 'four messages delivered')
log = open(mx.logpath).read()
mt.check(re.search(r'event=(reject|tempfail) stage=connect [^\n]*client=%s' % re.escape(FRONT), log) is None,
         'the front end itself is never judged at connect (no dnsbl or ratelimit refusal logged for it)')
mt.check(re.search(r'event=connect client=198\.18\.0\.63 ', log) is not None,
         'the connect stage ran for each named client')

# mailing as itself: judged at its MAIL
c = mt.Client(mx.port, proxy_src=FRONT)
c.ehlo('front.example.test')
code, text = c.cmd('MAIL FROM:<own@example.org>')
mt.check(code == 550, 'a front end mailing as itself is judged then: its DNS list refuses the MAIL (%s %s)'
         % (code, text))
mt.check(mx.wait_log(r'event=connect_judged reason=mail_without_xclient client=%s' % re.escape(FRONT), 3)
         is not None, 'logged event=connect_judged')
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl[^\n]*client=%s' % re.escape(FRONT), 3)
         is not None, 'and the refusal is logged as a connect refusal')
code, text = c.cmd('XCLIENT ADDR=198.18.0.70')
mt.check(code == 220, 'XCLIENT after that still names a client (%s %s)' % (code, text))
code, _ = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code == 503, 'whose session starts over: MAIL without EHLO is 503 (%s)' % code)
c.ehlo('client.example.net')
code, _ = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code == 250, 'and the named client is not refused for the front end (%s)' % code)
c.cmd('QUIT')
c.close()

# a peer not in xclient_hosts is judged at connect as before
c = mt.Client(mx.port, proxy_src=OTHER)
c.ehlo('other.example.test')
code, text = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code == 550, 'a listed peer not in xclient_hosts is refused at MAIL (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl[^\n]*client=%s' % re.escape(OTHER), 3)
         is not None, 'judged at its connect')
c.close()

mx.stop()
mt.finish()
