#!/usr/bin/env python3
"""From the outside: the postmaster of a big legitimate sender (an ESP, a list server, a
provider's outbound pool) delivering to a site that put mxgate in front of its MX with the
screening of examples/mxgate.yaml (its `limits`, `ratelimit` rules, `pregreet`, `spf`,
`sender_domain`), as README.md tells an operator to. What must hold for bulk mail:

- nothing lost: every recipient a client got 250 for is at the backend, and the sender's
  Postfix (smtp_destination_recipient_limit = 1000, pipelining, connection cache, TLS) gets
  a message with 1,000 recipients and a null-sender DSN through without a bounce;
- every refusal a big sender meets for volume is a 4xx with an enhanced code it retries on
  (452 4.5.3 past max_recipients, 451 4.7.1 for a rate, 421 4.7.0 for concurrency), never 5xx;
- the example takes 1,000 recipients a transaction (Postfix smtpd's; RFC 5321 4.5.3.1.8's
  100 is a minimum): a Postfix that sends 1,000 a message has none deferred;
- a burst of 200 from a Postfix at its default concurrency (20) meets no refused connection;
- 8BITMIME, SMTPUTF8, a 998-octet line, SIZE up to max_message_size, IPv6 pass untouched;
- a forger cannot use up a real domain's budget (the example counts `auth_domain`, which
  only a sender that SPF/DKIM authenticated is charged to);
- greylisting (not in the example; an operator who turns it on): a 451 4.7.1 a Postfix
  retries, a retry from another host of the same /24 passes, a list's VERP senders of one
  list are one sender, a DSN is deferred at DATA, not refused.

The rate limits are the example's rules with the message counts divided by 25 (500/1h per
/24 is 20/1h here) so that a test reaches them in a few hundred transactions; their shape,
keys and actions are the example's (the burst runs against the connect-stage rules as they
are). Clients are sockets and Postfix bound to 127.0.0.N (one /24: 127.0.0.0/24; the pool's
other /24: 127.0.1.N), [::1], and PROXY v2 sources 198.18.N.9 where SPF must judge (libspf2
passes every loopback client). docs/filters-limits.md
"A big sender's view" is the table of what was seen."""
import copy
import os
import re
import smtplib
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix', 'dnsmasq')
mt.need_postfix()

EXAMPLE = yaml.safe_load(open(os.path.join(mt.SRC, 'examples', 'mxgate.yaml')))
SCALE = 25

SENDERS = ('esp.example', 'lists.example.org', 'mail.provider.example')
# SPF: the senders send from 198.18.1.0/24 (PROXY v2 sources: libspf2 passes every loopback
# client, "localhost is always allowed"); a forger in 198.18.3-9.N is not in it
SPF = 'v=spf1 ip4:198.18.1.0/24 -all'
dns = mt.dnsmasq({d: SPF for d in SENDERS},
                 local=SENDERS + ('site.test',),
                 args=['--mx-host=%s,mx.esp.example,10' % d for d in SENDERS] +
                      ['--host-record=mx.esp.example,192.0.2.25'])

be = mt.Backend(name='site', dsn=True, smtputf8=True)


def scaled_rules(rules):
    out = []
    for r in copy.deepcopy(rules):
        m = re.fullmatch(r'(\d+)([KMG]?)/(\S+)', str(r.get('limit', '')))
        if m and r.get('count', 'messages') in ('messages', 'recipients'):
            r['limit'] = '%d%s/%s' % (max(1, int(m.group(1)) // SCALE), m.group(2), m.group(3))
        out.append(r)
    return out


RULES = scaled_rules(EXAMPLE['ratelimit']['rules'])
LIMITS = dict(EXAMPLE['limits'])
LIMITS['spool_dir'] = mt.TMP
BACKENDS = {'client_identity': 'xclient', 'connect_timeout': '10s', 'reply_timeout': '60s',
            'data_timeout': '300s'}
CERT, KEY = mt.cert()


def site_config(**extra):
    cfg = mt.config([be.url], hostname='mx.site.test', workers=1,
                    listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}, {'address': '[::1]:0'},
                            {'address': '127.0.0.1:0', 'proxy_protocol': True}],
                    trusted_proxies=['127.0.0.1/32'],
                    tls={'certificate': CERT, 'key': KEY},
                    limits=LIMITS, backends=BACKENDS, accept_domains=['site.test'],
                    dns={'resolvers': ['127.0.0.1:%d' % dns.port]},
                    pregreet=EXAMPLE['pregreet'], spf=EXAMPLE['spf'],
                    sender_domain=EXAMPLE['sender_domain'],
                    ratelimit={'store': 'local', 'rules': RULES})
    cfg.update(extra)
    return cfg


mx = mt.Mxgate(site_config(), 'mx-bulk')
mt.say('rules: %s' % RULES)


def msg(tag, frm='news@esp.example', extra=b''):
    return (b'From: ' + frm.encode() + b'\r\nTo: list@site.test\r\nSubject: ' + tag.encode() +
            b'\r\nMessage-ID: <' + tag.encode() + b'@esp.example>\r\nDate: Sat, 5 Dec 2026 20:00:00 +0000\r\n\r\n' +
            extra + b'body of ' + tag.encode() + b'\r\n')


def arrived(tag):
    with be.lock:
        return [m for m in be.messages if tag.encode() in m['data']]


def rcpts_of(tag):
    out = []
    for m in arrived(tag):
        out += list(m.get('accepted_rcpts') or m['rcpts'])
    return out


def enhanced(text):
    """The enhanced status code (RFC 3463) of a reply's last line, its basic code aside."""
    last = (text or '').splitlines()[-1:] or ['']
    m = re.match(r'\s*(?:\d{3}[ -])?(\d\.\d{1,3}\.\d{1,3})\b', last[0])
    return m.group(1) if m else None


def session(source, host='127.0.0.1', port=None, proxy_src=None):
    c = mt.Client(port or mx.port, host=host, source=source, timeout=30, proxy_src=proxy_src)
    code, text = c.greeting
    if code != 220:
        return c, (code, text)
    return c, c.ehlo('out.esp.example')


# ---------------------------------------------------------------- 1. max_recipients, then 452 4.5.3
MAXR = int(LIMITS.get('max_recipients', 100))
mt.check(MAXR >= 1000, 'the example takes 1,000 recipients in a transaction, as Postfix\'s smtpd '
         '(smtpd_recipient_limit = 1000): a sender tuned for Postfix MXes is not cut to 100 (%d)' % MAXR)
c, (code, text) = session('127.0.0.2')
mt.check(code == 250, 'EHLO from the ESP: %s' % code)
mt.check(c.cmd('MAIL FROM:<bounce+r101=site.test@esp.example>')[0] == 250, 'MAIL of a VERP sender')
codes = [c.cmd('RCPT TO:<u%d@site.test>' % i) for i in range(MAXR + 1)]
mt.check(all(x[0] == 250 for x in codes[:MAXR]), 'the first %d recipients are taken (RFC 5321 4.5.3.1.8: at least 100)' % MAXR)
mt.check(codes[MAXR][0] == 452 and enhanced(codes[MAXR][1]) == '4.5.3',
         'the next: 452 4.5.3, which a sender retries in another transaction (%s %s)' % codes[MAXR])
mt.check(c.cmd('DATA')[0] == 354, 'DATA after an over-limit RCPT')
c.send(mt.stuff(msg('r101')))
code, text = c.reply()
mt.check(code == 250, 'the %d delivered: %s %s' % (MAXR, code, text[:60]))
mt.check(sorted(rcpts_of('r101')) == sorted('u%d@site.test' % i for i in range(MAXR)),
         'the backend has exactly the accepted recipients')
# the sender sends the one left at once on the same connection
c.cmd('MAIL FROM:<bounce+r101=site.test@esp.example>')
c.cmd('RCPT TO:<u%d@site.test>' % MAXR)
c.cmd('DATA')
c.send(mt.stuff(msg('r101b')))
mt.check(c.reply()[0] == 250 and rcpts_of('r101b') == ['u%d@site.test' % MAXR], 'the one left in a second transaction')

# ---------------------------------------------------------------- 2. many messages on one connection
# the example's per-/24 message rule (scaled): 250 up to it, then 451 4.7.1, nothing lost
prefix_rule = [r for r in RULES if r.get('key') == 'ip_prefix' and r.get('count', 'messages') == 'messages']
mt.check(len(prefix_rule) == 1, 'the example limits messages per /24 (%s)' % prefix_rule)
N = int(prefix_rule[0]['limit'].split('/')[0]) - 2     # the two messages above were charged
ok, deferred = 0, []
for i in range(N + 3):
    r = mt.send_mail(mx.port, 'bounce+m%d=site.test@esp.example' % i, ['list%d@site.test' % (i % 7)],
                     msg('vol-%03d' % i), client=c)
    if r.code == 250:
        ok += 1
    else:
        deferred.append((r.stage, r.code, r.text))
        c.cmd('RSET')
mt.check(ok == N, 'one connection: %d messages delivered up to the per-/24 rate (%d)' % (ok, N))
mt.check(len(deferred) == 3 and all(d[1] == 451 and enhanced(d[2]) == '4.7.1' for d in deferred),
         'past it: 451 4.7.1, never 5xx (%s)' % deferred[:1])
mt.check(sum(len(arrived('vol-%03d' % i)) for i in range(N + 3)) == ok, 'every 250 is at the backend, nothing more')
c.close()
# another host of the same /24 is the same budget: the pool shares it, as the example says
r = mt.send_mail(mx.port, 'bounce@esp.example', ['list@site.test'], msg('same24'), source='127.0.0.3')
mt.check(r.code == 451 and enhanced(r.text) == '4.7.1', 'another IP of the /24: the same budget, 451 4.7.1 (%s %s)' % (r.code, r.text))
# the ESP's other /24 has its own
r = mt.send_mail(mx.port, 'bounce@esp.example', ['list@site.test'], msg('other24'), source='127.0.1.3')
mt.check(r.code == 250, 'the pool\'s other /24: delivered (%s %s)' % (r.code, r.text))

# ---------------------------------------------------------------- 3. concurrency from one IP
conc = [r for r in RULES if r.get('key') == 'ip' and r.get('count') == 'concurrency']
limit = int(conc[0]['limit']) if conc else 0
opened = [mt.Client(mx.port, source='127.0.0.4', timeout=30, greet=False) for _ in range(limit + 1)]


def heard(cc):
    """Every line a connection hears through QUIT to EOF. With pregreet on, the teaser (220-)
    is out before the connect checks end, so a refused client hears the whole greeting, then
    421, then EOF (postscreen refuses an over-limit client before its teaser)."""
    lines = cc.reply()[1].splitlines()
    try:
        cc.send('QUIT\r\n')
    except OSError:
        pass
    while True:
        ln = cc._line()
        if ln is None:
            return lines
        lines.append(ln)


answers = [heard(cc) for cc in opened]
over = [a for a in answers if any(ln.startswith('421 ') for ln in a)]
mt.check(limit and len(over) == 1 and enhanced([ln for ln in over[0] if ln.startswith('421 ')][0]) == '4.7.0'
         and not any(ln[:1] == '5' for ln in over[0]),
         'connection %d of one IP at once: 421 4.7.0, a deferral, no 5xx (%s)' % (limit + 1, over))
for cc in opened:
    cc.close()

# ---------------------------------------------------------------- 4. 8BITMIME, SMTPUTF8, long line, SIZE, IPv6
c, (code, text) = session('127.0.1.4')
mt.check('SMTPUTF8' in text and '8BITMIME' in text and 'SIZE' in text, 'EHLO offers SMTPUTF8, 8BITMIME, SIZE')
maxsize = [int(x.split()[1]) for x in text.splitlines() if x[4:].startswith('SIZE ')]
maxsize = maxsize[0] if maxsize else 0
mt.check(c.cmd('MAIL FROM:<bounce@esp.example> SIZE=%d' % maxsize)[0] == 250, 'SIZE= exactly the announced %d: 250' % maxsize)
c.cmd('RSET')
r = c.cmd('MAIL FROM:<bounce@esp.example> SIZE=%d' % (maxsize + 1))
mt.check(r[0] == 552 and enhanced(r[1]) == '5.3.4', 'SIZE= one over: 552 5.3.4, as Postfix (%s %s)' % r)
line = b'x' * 996 + b'\r\n'
body8 = 'Grüße aus Zürich\r\n'.encode() + line
mt.check(c.cmd('MAIL FROM:<bounce@esp.example> BODY=8BITMIME SMTPUTF8')[0] == 250, 'MAIL BODY=8BITMIME SMTPUTF8')
mt.check(c.cmd('RCPT TO:<jürgen@site.test>')[0] == 250, 'a UTF-8 local part')
c.cmd('DATA')
data8 = msg('utf8', extra=body8)
c.send(mt.stuff(data8))
mt.check(c.reply()[0] == 250, '8-bit body with a 998-octet line delivered')
got = arrived('utf8')
mt.check(len(got) == 1 and got[0]['data'].endswith(data8) and 'BODY=8BITMIME' in got[0]['mail'] and
         'SMTPUTF8' in got[0]['mail'], 'at the backend: the same octets, BODY and SMTPUTF8 kept')
c.close()
c6 = mt.Client(mx.ports[1], host='::1', timeout=30)
mt.check(c6.greeting[0] == 220, 'IPv6 client greeted')
r = mt.send_mail(mx.ports[1], 'bounce@esp.example', ['list@site.test'], msg('v6'), client=c6) \
    if c6.ehlo('out.esp.example')[0] == 250 else None
mt.check(r is not None and r.code == 250 and arrived('v6'), 'IPv6 sender delivered')
c6.close()

# ---------------------------------------------------------------- 5. a forger and the sender's domain budget
dom_rule = [r for r in RULES if r.get('key') in ('sender_domain', 'auth_domain')]
if dom_rule:
    dn = int(dom_rule[0]['limit'].split('/')[0])
    # the forger spreads over /24s outside the domain's SPF (198.18.3-9.N), each under the
    # per-/24 rule, as a botnet does
    forged, net = 0, 3
    while forged < dn + 2 and net < 10:
        fc, _ = session(None, port=mx.ports[2], proxy_src='198.18.%d.9' % net)
        for i in range(10):
            r = mt.send_mail(mx.port, 'news@mail.provider.example', ['list@site.test'],
                             msg('forged-%d-%d' % (net, i), frm='news@mail.provider.example'), client=fc)
            forged += r.code == 250
            if r.code != 250:
                fc.cmd('RSET')
        fc.close()
        net += 1
    mt.say('forged messages delivered: %d' % forged)
    r = mt.send_mail(mx.ports[2], 'news@mail.provider.example', ['list@site.test'],
                     msg('real-provider', frm='news@mail.provider.example'), proxy_src='198.18.1.5')
    mt.check(r.code == 250, 'after a forger sent %d as mail.provider.example from outside its SPF, '
             'the real one still delivers (%s %s; rule %s)' % (forged, r.code, r.text, dom_rule[0]))

# ---------------------------------------------------------------- 6. a real Postfix: 1000 recipients, a DSN
snd = mt.hold_port().port
mt.postfix_instance('sender', snd, '''mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
local_header_rewrite_clients =
relayhost = [127.0.0.1]:%d
smtp_bind_address = 127.0.1.20
smtp_destination_recipient_limit = 1000
default_destination_recipient_limit = 1000
smtp_tls_security_level = may
smtp_tls_loglevel = 1
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
smtp_connection_cache_on_demand = yes
''' % mx.port, hostname='out.esp.example')
RC = ['p%04d@site.test' % i for i in range(1000)]
s = smtplib.SMTP('127.0.0.1', snd, timeout=60)
s.ehlo('inject.esp.example')
s.sendmail('bounce+pf=site.test@esp.example', RC, msg('pf1000'))
s.sendmail('', ['postmaster@site.test'], msg('pfdsn', frm='MAILER-DAEMON@esp.example'))
s.quit()
t0 = time.time()
mt.wait_for(lambda: len(set(rcpts_of('pf1000'))) == 1000 and arrived('pfdsn'), 120, step=0.5)
took = time.time() - t0
got = rcpts_of('pf1000')
mt.check(sorted(got) == sorted(RC), 'Postfix with a 1000-recipient limit: all 1000 at the backend, once each (%d, %d distinct, %d messages)'
         % (len(got), len(set(got)), len(arrived('pf1000'))))
mt.check(len(arrived('pfdsn')) == 1 and arrived('pfdsn')[0]['mail'].startswith('<>'),
         'the null-sender DSN delivered with MAIL FROM:<>')
plog = mt.log_of('sender')
mt.check('status=bounced' not in plog, 'nothing bounced at the sender')
# Postfix's smtp client does not send recipients refused with 452 4.5.3 in a new transaction:
# it defers them to a later queue run (minimal_backoff_time, 300 s by default, doubling), so
# 1,000 recipients at 100 a transaction took 9 retries (4,500 deferred lines; with Postfix's
# default backoff, 300 s doubling up to 4,000 s, about 7 hours for the last 100)
mt.check(plog.count('status=deferred') == 0, 'the sender\'s Postfix deferred no recipient (%d deferred lines)'
         % plog.count('status=deferred'))
mt.say('postfix: %d recipients in %.1fs; deferred lines %d; sent lines %d; TLS %s' % (
    len(got), took, plog.count('status=deferred'), plog.count('status=sent'),
    'Trusted TLS' in plog or 'Untrusted TLS' in plog or 'Anonymous TLS' in plog))
for ln in plog.splitlines():
    if 'status=deferred' in ln:
        mt.say('  ' + ln[ln.find('status='):][:160])
        break

# ---------------------------------------------------------------- 6b. a Postfix burst, many connections
# The example's connect-stage rules as they are (connections, concurrency: not scaled) against
# a Postfix with its default destination concurrency (20) and 200 messages queued at once; the
# backend holds each final dot 0.3 s so that Postfix opens its connections.
burst_be = mt.Backend(name='burst', delay=0.3)
CONNECT_RULES = [r for r in EXAMPLE['ratelimit']['rules'] if r.get('count') in ('connections', 'concurrency')]
mxc = mt.Mxgate(mt.config([burst_be.url], hostname='mx.site.test', workers=1, limits=LIMITS,
                          backends=dict(BACKENDS, pool_size=32), accept_domains=['site.test'],
                          pregreet=EXAMPLE['pregreet'], ratelimit={'store': 'local', 'rules': CONNECT_RULES}),
                'mx-burst')
snd2 = mt.hold_port().port
mt.postfix_instance('burst-sender', snd2, '''mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:%d
smtp_bind_address = 127.0.2.21
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
''' % mxc.port, hostname='out2.esp.example')
s = smtplib.SMTP('127.0.0.1', snd2, timeout=60)
s.ehlo('inject.esp.example')
for i in range(200):
    s.sendmail('bounce@esp.example', ['b%03d@site.test' % i], msg('burst-%03d' % i))
s.quit()
t0 = time.time()
mt.wait_for(lambda: len(burst_be.messages) >= 200, 180, step=0.5)
blog = mt.log_of('burst-sender')
mt.check(len(burst_be.messages) == 200 and 'status=bounced' not in blog, 'a burst of 200: all delivered, none bounced')
mt.say('burst: 200 in %.1fs; %d deferred lines; mxgate refused %d connections (%s)' % (
    time.time() - t0, blog.count('status=deferred'), mxc.count_log('event=ratelimit'), CONNECT_RULES))
# Postfix's default_destination_concurrency_limit is 20: a per-IP concurrency under it sends
# a burst's messages to the deferred queue (300 s and more), 109 of 200 at 10 (session 24)
mt.check(blog.count('refused to talk to me') == 0, 'no connection of Postfix\'s 20 refused (%d deferred for it)'
         % blog.count('refused to talk to me'))
mxc.stop()

# ---------------------------------------------------------------- 7. greylisting a provider's pool
mxg = mt.Mxgate(site_config(greylist={'enabled': True, 'delay': '2s'},
                            ratelimit={'store': 'local', 'rules': []}), 'mx-grey')


def rcpt_once(source, sender, rcpt='list@site.test', data=True, tag=None):
    cc, (code, _) = session(source, port=mxg.port)
    if code != 250:
        return code, 'ehlo %s' % code
    r = mt.send_mail(mxg.port, sender, [rcpt], msg(tag or 'g'), client=cc)
    cc.close()
    return r.code, r.text


code, text = rcpt_once('127.0.0.30', 'bounce+u1=site.test@lists.example.org', tag='g1')
mt.check(code == 451 and enhanced(text) == '4.7.1', 'greylisted: 451 4.7.1 (%s %s)' % (code, text))
mt.check(rcpt_once('127.0.0.30', 'bounce+u1=site.test@lists.example.org', tag='g1-early')[0] == 451,
         'retry before the delay: still 451')
time.sleep(2.2)    # greylist.delay must pass (a wait for the clock, not a timing check)
code, text = rcpt_once('127.0.0.31', 'bounce+u1=site.test@lists.example.org', tag='g1-retry')
mt.check(code == 250, 'the retry from another host of the /24 passes (%s %s)' % (code, text))
code, text = rcpt_once('127.0.0.32', 'bounce+u2=site.test@lists.example.org', tag='g2')
mt.check(code == 250, 'the list\'s next VERP sender (bounce+u2=) is the same sender: passes (%s %s)' % (code, text))
# a cached connection: Postfix sends RSET before each reuse; 110 messages with an RSET and a
# NOOP each pass max_junk_commands (100) in sum, and a delivered message starts its count over
jc, _ = session('127.0.0.34', port=mxg.port)
junk_ok = 0
for i in range(110):
    if jc.cmd('RSET')[0] == 250 and jc.cmd('NOOP')[0] == 250:
        r = mt.send_mail(mxg.port, 'bounce+u1=site.test@lists.example.org', ['list@site.test'],
                         msg('cached-%03d' % i), client=jc)
        junk_ok += r.code == 250
jc.close()
mt.check(junk_ok == 110, 'one connection, 110 messages each behind RSET and NOOP: all delivered (%d)' % junk_ok)
code, text = rcpt_once('127.0.1.30', 'bounce+u1=site.test@lists.example.org', tag='g1-pool')
mt.say('retry from the pool\'s other /24: %s %s' % (code, text))
mt.check(code in (250, 451), 'from the pool\'s other /24: a 4xx at worst (%s)' % code)
code, text = rcpt_once('127.0.0.33', '', rcpt='postmaster@site.test', tag='gdsn')
mt.check(code == 451 and enhanced(text) == '4.7.1', 'a DSN from an unknown network: 451 4.7.1, a retry (%s %s)' % (code, text))
mt.check(code != 550 and not str(code).startswith('5'), 'a DSN is never refused for being new')

mx.stop()
mxg.stop()
mt.finish()
