#!/usr/bin/env python3
"""exempt_recipients: postmaster@ and abuse@ reachable by a refused client (RFC 5321 4.5.1,
RFC 2142), against a real rbldnsd and smtp-sink, clients posing as 198.18.x.y by PROXY v2.

- without the key: a DNS-listed client is refused at MAIL (550 naming bl.test), as before;
  a rate-limited one (connections over a reject rule) at MAIL with the limit's 550
- with `exempt_recipients: [postmaster, abuse@example.test]`: MAIL 250; RCPT user@ gets the
  very refusal (550, bl.test / rate limit); RCPT postmaster@ (any accepted domain, and
  <Postmaster>) and abuse@example.test 250, delivered to smtp-sink with only those; the
  connect refusal is logged as before plus event=exempt_recipient naming the recipient;
  postmaster@ of a domain outside accept_domains is still relaying denied
- the DNS lists' tempfail: without the key 421 in place of the greeting (as before); with
  it RCPT user@ 450, postmaster@ delivered
- the DNS lists' drop stays a 521 in place of the greeting
- a client that talked before the greeting (pregreet reject) is not exempt: MAIL refused
- a milter after the DNS list (cut off by the connect refusal) sees the exempt message
- a front end in xclient_hosts mailing as itself (judged at that MAIL): held the same way,
  and its milter sees the exempt message
- a bad item (`<postmaster>`, `a@`) fails `mxgate -t` naming the key
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'rbldnsd')

rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:Listed in bl.test for $\n198.18.1.0/24\n')})
LISTED, CLEAN = '198.18.1.5', '198.18.2.5'
EXEMPT = ['postmaster', 'abuse@example.test']


def gate(name, exempt=None, action='reject', ratelimit=None, pregreet=None):
    sink = mt.Sink(name=name + '-sink')
    extra = {
        'accept_domains': ['example.test', 'example.org'],
        'dns': {'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
        'dnsbl': {'threshold': 3, 'action': action,
                  'lists': [{'zone': 'bl.test', 'weight': 3, 'codes': ['127.0.0.2']}]},
    }
    if exempt is not None:
        extra['exempt_recipients'] = exempt
    if ratelimit:
        extra['ratelimit'] = ratelimit
    if pregreet:
        extra['pregreet'] = pregreet
    return sink, mt.Mxgate(mt.proxied_config([sink.url], **extra), name=name)


def dialogue(mx, src, rcpts, tag):
    """EHLO, MAIL, each RCPT, DATA when one was taken; (mail reply, [rcpt replies], eom code)."""
    c = mt.Client(mx.port, proxy_src=src)
    mt.check(c.greeting[0] == 220, '%s: greeted (%s)' % (tag, c.greeting[1]))
    c.ehlo('mta.sender.example')
    mail = c.cmd('MAIL FROM:<someone@sender.example>')
    rr = [c.cmd('RCPT TO:<%s>' % r) for r in rcpts] if mail[0] == 250 else []
    eom = None
    if any(r[0] == 250 for r in rr):
        if c.cmd('DATA')[0] == 354:
            c.send(mt.stuff(mt.message(tag)))
            eom = c.reply()[0]
    c.cmd('QUIT')
    c.close()
    return mail, rr, eom


def delivered(sink, tag):
    return [m for m in sink.messages() if tag.encode() in m['data']]


# ---- DNS list, reject ---------------------------------------------------------------
sink, mx = gate('plain')
mail, rr, _ = dialogue(mx, LISTED, ['postmaster@example.test'], 'plain1')
mt.check(mail[0] == 550 and 'bl.test' in mail[1], 'no key: listed client refused at MAIL (%s)' % (mail,))
mt.check(sink.count() == 0, 'no key: nothing delivered')
mx.stop()

sink, mx = gate('exempt', exempt=EXEMPT)
mail, rr, eom = dialogue(mx, LISTED, ['user@example.test', 'postmaster@example.test', 'Postmaster',
                                      'POSTMASTER@example.org', 'abuse@example.test', 'abuse@example.org',
                                      'postmaster@elsewhere.example'], 'exempt1')
codes = [r[0] for r in rr]
mt.check(mail[0] == 250, 'key: MAIL taken (%s)' % (mail,))
mt.check(codes == [550, 250, 250, 250, 250, 550, 550], 'key: RCPT codes (%s)' % (rr,))
mt.check(len(rr) == 7 and 'bl.test' in rr[0][1] and 'bl.test' in rr[5][1],
         'key: user@ and abuse@ of another domain get the DNS list refusal (%s)' % (rr[:1] + rr[5:6],))
mt.check(len(rr) == 7 and 'relaying denied' in rr[6][1], 'key: postmaster@ outside accept_domains: relaying denied')
mt.check(eom == 250, 'key: message to the exempt recipients accepted (%s)' % eom)
got = delivered(sink, 'exempt1')
mt.check(len(got) == 1 and sorted(r.lower().strip('<>') for r in got[0]['rcpts']) ==
         ['abuse@example.test', 'postmaster', 'postmaster@example.org', 'postmaster@example.test'],
         'key: at smtp-sink for the exempt recipients only (%s)' % ([m['rcpts'] for m in got],))
log = mx.log()
mt.check('event=reject stage=connect reason=dnsbl' in log, 'key: the connect refusal logged as before')
mt.check(mx.count_log(r'event=exempt_recipient rcpt=<postmaster@example\.test> held=dnsbl list=bl\.test client=%s'
                      % LISTED.replace('.', r'\.')) == 1, 'key: event=exempt_recipient names the recipient')
mt.check(mx.count_log(r'event=reject stage=rcpt reason=dnsbl') >= 2, 'key: each RCPT refusal logged')
mail, rr, eom = dialogue(mx, CLEAN, ['user@example.test'], 'exempt2')
mt.check(mail[0] == 250 and [r[0] for r in rr] == [250] and eom == 250, 'key: an unlisted client as before')
mt.check(len(delivered(sink, 'exempt2')) == 1, 'key: unlisted client delivered')
mx.stop()

# ---- DNS list, tempfail ---------------------------------------------------------------
sink, mx = gate('tempfail-plain', action='tempfail')
c = mt.Client(mx.port, proxy_src=LISTED)
mt.check(c.greeting[0] == 421, 'tempfail, no key: 421 in place of the greeting (%s)' % (c.greeting,))
c.close()
mx.stop()
sink, mx = gate('tempfail-exempt', exempt=EXEMPT, action='tempfail')
mail, rr, eom = dialogue(mx, LISTED, ['user@example.test', 'postmaster@example.test'], 'temp1')
mt.check(mail[0] == 250 and [r[0] for r in rr] == [450, 250] and eom == 250,
         'tempfail, key: user@ 450, postmaster@ delivered (%s %s %s)' % (mail, rr, eom))
mt.check(len(delivered(sink, 'temp1')) == 1, 'tempfail, key: at smtp-sink')
mx.stop()

# ---- DNS list, drop: unchanged --------------------------------------------------------
sink, mx = gate('drop-exempt', exempt=EXEMPT, action='drop')
c = mt.Client(mx.port, proxy_src=LISTED)
mt.check(c.greeting[0] == 521, 'drop, key: 521 in place of the greeting (%s)' % (c.greeting,))
c.close()
mx.stop()

# ---- rate limit over its limit ---------------------------------------------------------
RL = {'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h', 'action': 'reject'}]}
for exempt in (None, EXEMPT):
    name = 'ratelimit-' + ('exempt' if exempt else 'plain')
    sink, mx = gate(name, exempt=exempt, ratelimit=RL)
    first = dialogue(mx, CLEAN, ['user@example.test'], name + '-first')
    mt.check(first[0][0] == 250 and first[2] == 250, '%s: the first connection delivered' % name)
    mail, rr, eom = dialogue(mx, CLEAN, ['user@example.test', 'postmaster@example.test'], name + '-over')
    if exempt is None:
        mt.check(mail[0] == 550 and 'rate limit' in mail[1], '%s: refused at MAIL (%s)' % (name, mail))
        mt.check(not delivered(sink, name + '-over'), '%s: nothing delivered' % name)
    else:
        mt.check(mail[0] == 250 and [r[0] for r in rr] == [550, 250] and 'rate limit' in rr[0][1],
                 '%s: user@ refused with the limit, postmaster@ taken (%s %s)' % (name, mail, rr))
        got = delivered(sink, name + '-over')
        mt.check(eom == 250 and len(got) == 1 and [r.strip('<>') for r in got[0]['rcpts']] == ['postmaster@example.test'],
                 '%s: delivered to postmaster@ only' % name)
        mt.check(mx.count_log(r'event=exempt_recipient rcpt=<postmaster@example\.test> held=ratelimit') == 1,
                 '%s: exempt recipient logged' % name)
    mx.stop()

# ---- pregreet: not exempt --------------------------------------------------------------
sink, mx = gate('pregreet-exempt', exempt=EXEMPT, pregreet={'delay': '1s', 'action': 'reject'})
c = mt.Client(mx.port, proxy_src=LISTED, greet=False)
c.send('EHLO early.example\r\n')       # before the greeting
code, text = c.reply()                  # the teaser and, after the delay, the final 220
mt.check(code == 220, 'pregreet: greeted at last')
mt.check(c.reply()[0] == 250, 'pregreet: the early EHLO answered')
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl'), 'pregreet: the listing logged')
mail = c.cmd('MAIL FROM:<someone@sender.example>')
mt.check(mail[0] // 100 == 5, 'pregreet, key: a listed client that talked first refused at MAIL (%s)' % (mail,))
c.close()
mx.stop()

# ---- a milter after the DNS list: it sees the exempt message -------------------------------
# The connect refusal stops the chain before the milter (test_dnsbl_milter); held, the cut-off
# entries are given the connect at once, so the milter judges the exempt recipient's message.
mil = mt.milter()
sink = mt.Sink(name='milter-sink')
cfg = mt.proxied_config([sink.url], accept_domains=['example.test'], exempt_recipients=EXEMPT,
                        dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'action': 'reject',
                               'lists': [{'zone': 'bl.test', 'weight': 3, 'codes': ['127.0.0.2']}]},
                        plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mil.port,
                                  'on_error': 'tempfail', 'timeout': '10s'}])
mx = mt.Mxgate(cfg, name='milter-exempt')
mail, rr, eom = dialogue(mx, LISTED, ['user@example.test', 'postmaster@example.test'], 'milter1')
mt.check(mail[0] == 250 and [r[0] for r in rr] == [550, 250] and eom == 250,
         'milter: user@ refused, postmaster@ taken (%s %s %s)' % (mail, rr, eom))
got = delivered(sink, 'milter1')
mt.check(len(got) == 1 and b'X-Test-Milter: passed' in got[0]['data'], 'milter: it saw the exempt message')
mx.stop()

# ---- a front end mailing as itself (xclient_hosts, MAIL without XCLIENT) ----------------------
# Judged at that MAIL (session_apply_front_end_connect); until late in session 26 the MAIL was
# refused even with the key (a second MAIL was then held, the first not).
FRONT = '198.18.1.7'                    # listed (198.18.1.0/24)
sink = mt.Sink(name='front-sink')
cfg = mt.proxied_config([sink.url], accept_domains=['example.test'], exempt_recipients=EXEMPT,
                        xclient_hosts=[FRONT + '/32'],
                        dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'action': 'reject',
                               'lists': [{'zone': 'bl.test', 'weight': 3, 'codes': ['127.0.0.2']}]},
                        plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mil.port,
                                  'on_error': 'tempfail', 'timeout': '10s'}])
mx = mt.Mxgate(cfg, name='front-exempt')
mail, rr, eom = dialogue(mx, FRONT, ['user@example.test', 'postmaster@example.test'], 'front1')
mt.check(mail[0] == 250 and [r[0] for r in rr] == [550, 250] and eom == 250,
         'front end as itself: MAIL held, user@ refused, postmaster@ taken (%s %s %s)' % (mail, rr, eom))
mt.check(mx.wait_log(r'event=connect_judged reason=mail_without_xclient client=%s' % FRONT.replace('.', r'\.'))
         is not None, 'front end: judged at its MAIL')
got = delivered(sink, 'front1')
mt.check(len(got) == 1 and b'X-Test-Milter: passed' in got[0]['data'],
         'front end: the exempt message delivered, the milter (cut off by the refusal) saw it')
mail, rr, eom = dialogue(mx, FRONT, ['user@example.test'], 'front2')
mt.check(mail[0] == 250 and [r[0] for r in rr] == [550] and eom is None,
         'front end, a second session: MAIL held, user@ refused (%s %s)' % (mail, rr))
mx.stop()

# ---- bad items ---------------------------------------------------------------------------
for bad in ('<postmaster>', 'abuse@', '@example.test', 'a@b@c'):
    cfg = mt.config(['smtp://127.0.0.1:25'], listen=['127.0.0.1:2525'], exempt_recipients=[bad])
    rc, out = mt.config_check(cfg, 'bad')
    mt.check(rc == 1 and 'exempt_recipients' in out, 'bad item %r refused by -t (%s)' % (bad, out.strip()[:200]))
rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:25'], listen=['127.0.0.1:2525'], exempt_recipients=EXEMPT),
                          'good')
mt.check(rc == 0, 'good items pass -t (%s)' % out.strip()[:200])

mt.finish()
