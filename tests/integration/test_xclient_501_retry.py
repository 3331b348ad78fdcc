#!/usr/bin/env python3
"""A 501 to XCLIENT is permanent for that client: mxgate sends the XCLIENT once more with the
attribute the reply names as [UNAVAILABLE] and goes on when that is taken (session 31 made
every such 501 a 451, which fails every message of that client until its queue gives up):
- a real Postfix (3.7) with inet_protocols = ipv4 answers an IPv6 client's ADDR=IPV6:::1 with
  "501 5.5.4 Bad ADDR syntax" (then the IPv6 listener's DESTADDR with "Bad DESTADDR syntax"):
  a client over ::1 gets 250, event=xclient_refused ... action=retry attrs=ADDR,DESTADDR, and
  Postfix logs it as client=localhost[unknown] (mxgate names ::1 localhost), never as mxgate
  (localhost[127.0.0.1]); the unknown address matches no network in its mynetworks
  (127.0.0.0/8, mxgate's): relaying to a domain not its own is refused, 554 Relay access
  denied (main: 451 for both);
  backends.require_xclient: false the same (main: the message went on as from mxgate,
  relayed by permit_mynetworks);
- a server that answers 501 to both tries (mxtest Backend): 451 to the client, no MAIL
  ever sent there, the second XCLIENT with ADDR=[UNAVAILABLE] DESTADDR=[UNAVAILABLE] (ADDR
  never left out: mxgate's address would stand for the client), then action=tempfail;
  "Bad NAME syntax" (a PTR name Postfix finds bad; mxgate's own checks of a PTR name, as
  Postfix's, keep a real Postfix from answering it here): NAME and REVERSE_NAME of the same
  name as [UNAVAILABLE] (Postfix would refuse REVERSE_NAME next), the address kept; a 501
  that names no attribute: the client names (HELO) go as [UNAVAILABLE], the address stays,
  IPv6 too (Exim's XCLIENT takes ADDR=[UNAVAILABLE] as no address: a local submission);
- a 501 on a pooled connection (one announced for a client Postfix authorizes too) is
  retried in place, as on a new one: no second connection, no event=xclient_once (main: a
  new connection, and xclient_once kept every pooled connection to its own client after).
No timing decides a check."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix')
mt.need_postfix()


def send6(port, tag, rcpt='bob@local.test'):
    """One message from a client over ::1 to mxgate's [::1] listener."""
    c = mt.Client(port, host='::1')
    try:
        code, text = c.ehlo('client.test')
        if code != 250:
            return mt.Result(code, text, 'helo')
        return mt.send_mail(port, 'alice@example.org', [rcpt], mt.message(tag), client=c)
    finally:
        c.close()


dns = mt.dns_peer({
    '7.0.18.198.in-addr.arpa': [{'ptr': 'mail.client.test'}],
    'mail.client.test': [{'a': '198.18.0.7'}],
}, name='dns-xclient-501')

pf_port = mt.free_port()
mt.postfix_instance('pf-ipv4', pf_port, '''inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = local.test
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
''', hostname='backend.test')
PF = 'smtp://127.0.0.1:%d' % pf_port


def mxgate(name, backends=None, servers=(PF,)):
    b = {'client_identity': 'xclient', 'require_xclient': True}
    b.update(backends or {})
    return mt.Mxgate(mt.config(list(servers), listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True},
                                                      {'address': '[::1]:0'}],
                               trusted_proxies=['127.0.0.0/8'], backends=b, workers=1,
                               dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s', 'tries': 1}),
                     name)


# --------------------------------------------- a Postfix with inet_protocols = ipv4, a client over ::1
mx = mxgate('mx-xclient-501')
r = send6(mx.ports[1], 'v6-local')
mt.check(r.code == 250,
         'a client over ::1, Postfix with inet_protocols = ipv4 (501 Bad ADDR syntax): 250 (%s %s at %s)'
         % (r.code, r.text, r.stage))
mt.check(mx.wait_log(r'warning \S+ event=xclient_refused backend=%s reply="501 5\.5\.4 Bad ADDR syntax: IPV6:::1" '
                     r'action=retry attrs=ADDR,DESTADDR' % re.escape(PF)) is not None,
         'event=xclient_refused ... action=retry attrs=ADDR,DESTADDR (the IPv6 listener\'s DESTADDR too)')
mt.check(mt.wait_for(lambda: re.search(r'client=localhost\[unknown\]', mt.log_of('pf-ipv4'))) and
         mt.wait_for(lambda: re.search(r'to=<bob@local\.test>.*status=sent', mt.log_of('pf-ipv4'))) and
         not re.search(r'\]: \w+: client=localhost\[127\.0\.0\.1\]', mt.log_of('pf-ipv4')),
         'Postfix took it from client=localhost[unknown] (::1 is named localhost, its address unknown), '
         'never as from mxgate (localhost[127.0.0.1])')
r = send6(mx.ports[1], 'v6-relay', rcpt='bob@elsewhere.test')
mt.check(r.code == 554 and r.stage == 'rcpt' and 'Relay access denied' in r.text,
         'the unknown address matches no network of mynetworks (127.0.0.0/8, mxgate\'s): relaying '
         'elsewhere refused (%s %s at %s)' % (r.code, r.text, r.stage))
mt.check(mx.count_log(r'event=gateway_refused') == 0 and mx.count_log(r'action=tempfail') == 0,
         'no gateway_refused, no tempfail')

mx.stop()

mx = mxgate('mx-xclient-501-optional', {'require_xclient': False})
r = send6(mx.ports[1], 'v6-optional', rcpt='bob@elsewhere.test')
mt.check(r.code == 554 and r.stage == 'rcpt' and mx.count_log(r'action=retry attrs=ADDR,DESTADDR') == 1,
         'backends.require_xclient: false: retried the same, the client judged as unknown, not relayed as '
         'from mxgate (%s %s at %s)' % (r.code, r.text, r.stage))
mx.stop()

# ------------------------------------- a 501 on a pooled connection: retried in place, no new one
# A connection announced for a client Postfix authorizes too (127.0.0.5, in
# smtpd_authorized_xclient_hosts: XCLIENT offered again after it) is reused for an IPv6
# client: the 501 to its ADDR is retried on that connection, not on a new one (main: a new
# connection, and event=xclient_once marked the backend as taking one XCLIENT per
# connection, so from then on no pooled connection served another client: one connection
# per message of every other client, for good).
cfg = mt.config([PF], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}, {'address': '[::1]:0'}],
                trusted_proxies=['127.0.0.0/8'], workers=1,
                backends={'client_identity': 'xclient', 'pool_size': 4,
                          'health_check': {'interval': '1h', 'timeout': '%gs' % mt.slack(10), 'fall': 2, 'rise': 1}},
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s', 'tries': 1})
cfg['metrics'] = {'listen': '127.0.0.1:%d' % mt.hold_port().port}
mx = mt.Mxgate(cfg, 'mx-xclient-501-pooled')


def connects():
    return mx.metric('backend_connects_total')


r = mt.send_mail(mx.port, 'alice@example.org', ['bob@local.test'], mt.message('pooled-v4'), proxy_src='127.0.0.5')
mt.check(r.code == 250 and connects() == 1, 'a client 127.0.0.5: 250, one connection (%s %s; %s)'
         % (r.code, r.text, connects()))
mt.check(mx.wait_log(r'event=disconnect') is not None, 'its session ended: the connection back in the pool')
r = send6(mx.ports[1], 'pooled-v6')
mt.check(r.code == 250, 'an IPv6 client on the pooled connection: 250 (%s %s at %s)' % (r.code, r.text, r.stage))
mt.check(mx.metric('backend_connections_reused_total') == 1 and connects() == 1 and
         mx.count_log(r'action=retry attrs=ADDR,DESTADDR') == 1,
         'the 501 retried on the pooled connection: reused, still one connection (%s connects, %s reused)'
         % (connects(), mx.metric('backend_connections_reused_total')))
mt.check(mx.count_log(r'event=xclient_once') == 0 and mx.count_log(r'event=backend_error') == 0,
         'no xclient_once: a 501 refuses an attribute, not a second XCLIENT (%s)'
         % [l for l in mx.log().splitlines() if 'xclient_once' in l or 'backend_error' in l])
mt.check(mt.wait_for(lambda: re.search(r'to=<bob@local\.test>.*status=sent', mt.log_of('pf-ipv4')) and
                     len(re.findall(r'client=localhost\[unknown\]', mt.log_of('pf-ipv4'))) >= 2),
         'Postfix took it from client=localhost[unknown], as on a new connection')
mx.stop()

# ------------------------------------------------------------------ 501 to both tries: the same 451
x5 = mt.Backend(name='xclient-501-twice', xclient='NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT')
x5.xclient_reply = '501 5.5.4 Bad ADDR syntax: IPV6:::1'
mx = mxgate('mx-xclient-501-twice', servers=[x5.url])
r = send6(mx.ports[1], 'twice')
xc = [c for c in x5.commands if c.upper().startswith('XCLIENT')]
mt.check(r.code == 451 and not x5.messages and not any(c.upper().startswith('MAIL') for c in x5.commands),
         'a 501 to the retry too: 451, nothing sent there (%s %s; %s)' % (r.code, r.text, x5.commands))
mt.check(len(xc) == 2 and 'ADDR=IPV6:::1' in xc[0] and ' ADDR=[UNAVAILABLE]' in xc[1] and
         ' DESTADDR=[UNAVAILABLE]' in xc[1] and 'PORT=' in xc[1],
         'the XCLIENT once more with ADDR and DESTADDR as [UNAVAILABLE], never without ADDR (%s)' % xc)
mt.check(mx.wait_log(r'event=xclient_refused backend=\S+ reply="501 5\.5\.4 Bad ADDR syntax: IPV6:::1" '
                     r'action=tempfail') is not None and mx.count_log(r'action=retry attrs=ADDR,DESTADDR') == 1,
         'action=retry, then action=tempfail')

# a 501 naming NAME: NAME and REVERSE_NAME of the same value (Postfix checks both alike), the
# address kept
x5.xclient_reply = '501 5.5.4 Bad NAME syntax: mail.client.test'
del x5.commands[:]
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@local.test'], mt.message('name'), proxy_src='198.18.0.7')
xc = [c for c in x5.commands if c.upper().startswith('XCLIENT')]
mt.check(r.code == 451 and len(xc) == 2 and 'NAME=mail.client.test REVERSE_NAME=mail.client.test' in xc[0] and
         ' NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] ADDR=198.18.0.7 ' in xc[1],
         'a 501 naming NAME: NAME and REVERSE_NAME (the same name) as [UNAVAILABLE], ADDR kept (%s; %s)' % (r.code, xc))
mt.check(mx.count_log(r'(?m)reply="501 5\.5\.4 Bad NAME syntax: mail\.client\.test" action=retry attrs=NAME,REVERSE_NAME$') == 1,
         'action=retry attrs=NAME,REVERSE_NAME')

# a 501 that names no attribute: the client's names as [UNAVAILABLE], an IPv4 address kept
x5.xclient_reply = '501 5.5.4 Error: attribute value too long'
del x5.commands[:]
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@local.test'], mt.message('noname'), ehlo='helo.client.test',
                 proxy_src='198.18.0.8')
xc = [c for c in x5.commands if c.upper().startswith('XCLIENT')]
mt.check(r.code == 451 and len(xc) == 2 and 'HELO=helo.client.test' in xc[0] and ' HELO=[UNAVAILABLE]' in xc[1] and
         ' ADDR=198.18.0.8 ' in xc[1],
         'a 501 naming none: HELO as [UNAVAILABLE], ADDR=198.18.0.8 kept, then 451 (%s; %s)' % (r.code, xc))
mt.check(mx.count_log(r'(?m)reply="501 5\.5\.4 Error: attribute value too long" action=retry attrs=HELO$') == 1,
         'action=retry attrs=HELO (the name is unknown already)')
del x5.commands[:]
r = send6(mx.ports[1], 'noname6')
xc = [c for c in x5.commands if c.upper().startswith('XCLIENT')]
mt.check(r.code == 451 and len(xc) == 2 and ' ADDR=IPV6:::1 ' in xc[1] and ' DESTADDR=IPV6:::1 ' in xc[1] and
         ' HELO=[UNAVAILABLE]' in xc[1],
         'a 501 naming none from an IPv6 client: its addresses kept, never marked unless named (%s; %s)' % (r.code, xc))
mx.stop()

# ------------------- a server that answers 501 to every second XCLIENT of a connection
# The pooled connection's XCLIENT for another client gets 501, its retry 501 too: dropped as
# stale, and the backend marked as taking one XCLIENT per connection (xclient_once), so the
# next client's message does not take a pooled connection and two round trips to find that
# out again (main before this: every message of another client did).
xo = mt.Backend(name='xclient-501-again')
xo.xclient_again_reply = '501 5.5.4 Error: bad command'
mx = mxgate('mx-xclient-501-again', servers=[xo.url], backends={'pool_size': 4})
for i, src in enumerate(('198.18.1.1', '198.18.1.2', '198.18.1.3')):
    r = mt.send_mail(mx.port, 'alice@example.org', ['bob@local.test'], mt.message('again%d' % i), proxy_src=src)
    mt.check(r.code == 250 and mt.wait_for(lambda: mx.count_log(r'event=disconnect') >= i + 1),
             'client %s: 250 (%s %s)' % (src, r.code, r.text))
mt.check(len(xo.messages) == 3, 'three messages there (%d)' % len(xo.messages))
mt.check(mx.count_log(r'event=xclient_once') == 1 and mx.count_log(r'action=retry attrs=') == 1,
         'the retry refused too: xclient_once once, and the third client no pooled try (%d xclient_once, %d retries)'
         % (mx.count_log(r'event=xclient_once'), mx.count_log(r'action=retry attrs=')))
mx.stop()
mt.finish()
