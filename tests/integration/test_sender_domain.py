#!/usr/bin/env python3
"""sender_domain (Postfix's reject_unknown_sender_domain) against a real DNS server on
127.0.0.1 (dns_peer.py, dnspython), named in dns.resolvers as an operator would:

- NXDOMAIN: 450 4.1.8 "Domain not found" at MAIL (Postfix's default code), without asking
  A or AAAA; NODATA for MX, A and AAAA: the same; a null MX (RFC 7505 "0 ."): 550 5.7.27;
- MX only, A only, AAAA only: accepted, and a domain with an MX asks nothing more (cached:
  its second sender asks nothing at all);
- SERVFAIL and no answer at all (a timeout): 451 4.4.3, within the DNS time limits, logged
  temperror with dns=servfail / dns=timeout; on_error: accept lets them through;
- a trailing dot and any case are the same domain; a U-label domain is looked up as its
  A-label (SMTPUTF8);
- not checked: the null sender, an address literal, a domain of accept_domains, a client in
  `allow`, a client authenticated by SMTP AUTH against a real Dovecot;
- action: score refuses nothing and logs action=score; unknown_code: 550 gives 550 5.1.8;
- check_mx_hosts: an MX host on loopback, one that does not resolve, and a domain whose own
  (implicit MX) address is private are refused; a public MX host passes;
- mxgate_sender_domain_checks_total{result} counts what was decided.
"""
import base64
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

zone = {
    'nodata.example': [{'txt': ['no mail here']}],
    'nullmx.example': [{'mx': '0 .'}],
    'mxonly.example': [{'mx': 'mail.mxonly.example'}],
    'aonly.example': [{'a': '198.51.100.7'}],
    'aaaaonly.example': [{'aaaa': '2001:db8::7'}],
    'sfail.example': 'servfail',
    'drop.example': 'drop',
    'xn--bcher-kva.example': [{'mx': 'mail.xn--bcher-kva.example'}],
    'ours.example': 'servfail',              # would fail if it were asked
    # check_mx_hosts
    'goodmx.example': [{'mx': 'mail.goodmx.example'}],
    'mail.goodmx.example': [{'a': '198.51.100.25'}],
    'loopmx.example': [{'mx': 'mail.loopmx.example'}],
    'mail.loopmx.example': [{'a': '127.0.0.1'}],
    'nohostmx.example': [{'mx': 'missing.nohostmx.example'}],
    'privonly.example': [{'a': '10.1.2.3'}],
    'twomx.example': [{'mx': '20 mail.goodmx.example'}, {'mx': '10 mail.loopmx.example'}],
}
dns = mt.dns_peer(zone)
be = mt.Backend()
CLIENT = '198.18.1.7'


def daemon(name, **sd):
    cfg = mt.proxied_config([be.url], accept_domains=['example.test', 'ours.example'],
                            dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                            metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                            sender_domain=dict({'enabled': True}, **sd))
    return mt.Mxgate(cfg, name=name)


def mail_from(mx, sender, client=CLIENT, params=''):
    """MAIL FROM from client (PROXY v2): (code, text, seconds)."""
    c = mt.Client(mx.port, proxy_src=client)
    try:
        c.ehlo('client.example')
        t0 = time.monotonic()
        code, text = c.cmd('MAIL FROM:<%s>%s' % (sender, params))
        return code, text, time.monotonic() - t0
    finally:
        c.close()


def asked(name, qtype):
    return len(re.findall(r'(?m)^query %s %s\b' % (re.escape(name), qtype), mt.log_of(dns.name)))


mx = daemon('mx-senderdom')
rows = [
    ('a@nx.example', 450, '4.1.8 Sender address rejected: Domain not found', 'NXDOMAIN'),
    ('a@nodata.example', 450, '4.1.8', 'NODATA for MX, A and AAAA'),
    ('a@nullmx.example', 550, '5.7.27 Sender address rejected: Domain nullmx.example does not accept mail',
     'a null MX (RFC 7505)'),
    ('a@mxonly.example', 250, '', 'MX only'),
    ('a@aonly.example', 250, '', 'A only'),
    ('a@aaaaonly.example', 250, '', 'AAAA only'),
    ('a@sfail.example', 451, '4.4.3', 'SERVFAIL: on_error tempfail'),
    ('a@drop.example', 451, '4.4.3', 'no answer at all: the timeout, then on_error'),
    ('a@MxOnly.EXAMPLE.', 250, '', 'a trailing dot and another case: the same domain'),
    ('a@NX.Example.', 450, '4.1.8', 'NXDOMAIN in another case with a trailing dot'),
    ('', 250, '', 'the null sender is not checked'),
    ('a@[192.0.2.1]', 250, '', 'an address literal is not looked up (Postfix)'),
    ('a@ours.example', 250, '', 'a domain of accept_domains is not looked up (Postfix: its final destinations)'),
]
for sender, want, text_want, what in rows:
    code, text, secs = mail_from(mx, sender)
    mt.check(code == want and text_want in text, '%s: %s -> %d %s (%s %s, %.1fs)'
             % (what, sender or '<>', want, text_want, code, text, secs))

mt.check(asked('nx.example', 'MX') >= 1 and asked('nx.example', 'A') == 0 and asked('nx.example', 'AAAA') == 0,
         'NXDOMAIN for MX asks no A or AAAA (%d MX, %d A)' % (asked('nx.example', 'MX'), asked('nx.example', 'A')))
mt.check(asked('nodata.example', 'A') >= 1 and asked('nodata.example', 'AAAA') >= 1,
         'NODATA for MX asks A and AAAA')
mt.check(asked('mxonly.example', 'MX') == 1 and asked('mxonly.example', 'A') == 0,
         'an MX answers it: no A asked, and the second sender of the domain came from the cache (%d MX queries)'
         % asked('mxonly.example', 'MX'))
mt.check(asked('ours.example', 'MX') == 0, 'accept_domains: no query')
# No answer at all: each type asked once (dns.tries 1, no round past it), the lookup ended by
# the resolver's timeout and the sender told 451 above; the daemon's line says temperror and
# which failure it was, dns=timeout, where a SERVFAIL says dns=servfail or failed (before: the two lines
# were the same, the operator could not tell a dead resolver from a zone's broken servers).
mt.check([asked('drop.example', q) for q in ('MX', 'A', 'AAAA')] == [1, 1, 1] and
         mx.count_log(r'event=sender_domain result=temperror domain=drop\.example .*action=tempfail dns=timeout') == 1,
         'no answer: MX, then A and AAAA, each asked once (dns.tries 1), then temperror dns=timeout: %s'
         % [asked('drop.example', q) for q in ('MX', 'A', 'AAAA')])
# (c-ares 1.18 ends a SERVFAIL on every try as it does an ICMP refusal: dns=failed before,
# now told apart by filters/dns.c, which saw the SERVFAIL answers)
mt.check(mx.count_log(r'event=sender_domain result=temperror domain=sfail\.example .*action=tempfail '
                      r'dns=servfail\n') == 1,
         'SERVFAIL: temperror dns=servfail\n%s' % '\n'.join(l for l in mx.log().splitlines() if 'sfail' in l))
mt.check(mx.wait_log(r'event=sender_domain result=unknown domain=nx\.example client=198\.18\.1\.7 action=tempfail', 5),
         'the refusal is logged: event=sender_domain result=unknown ... action=tempfail')
mt.check(mx.wait_log(r'event=tempfail stage=mail reason=sender_domain result=unknown client=198\.18\.1\.7 code=450', 5)
         and mx.wait_log(r'event=reject stage=mail reason=sender_domain result=null_mx client=\S+ code=550', 5),
         'the session logs the refusal: reason=sender_domain result=...')

# IDNA: a U-label domain is looked up as its A-label (RFC 5890), as domain.c compares it
code, text, _ = mail_from(mx, 'a@b\u00fccher.example', params=' SMTPUTF8')
mt.check(code == 250 and asked('xn--bcher-kva.example', 'MX') == 1,
         'a@bücher.example (SMTPUTF8) is asked as xn--bcher-kva.example (%s %s)' % (code, text))

# allow: the operator's own relays are not checked
mx.stop()
mx = daemon('mx-senderdom-allow', allow=['198.18.0.0/15'])
code, text, _ = mail_from(mx, 'a@nx2.example')
mt.check(code == 250 and asked('nx2.example', 'MX') == 0, 'a client in allow: not checked (%s %s)' % (code, text))
code, text, _ = mail_from(mx, 'a@nx2.example', client='203.0.113.9')
mt.check(code == 450, 'a client outside allow: checked (%s %s)' % (code, text))
mx.stop()

# action: score, on_error: accept: nothing refused, the symbol logged; the metric counts
mx = daemon('mx-senderdom-score', action='score', on_error='accept')
for sender in ('a@nx.example', 'a@nullmx.example', 'a@sfail.example'):
    code, text, _ = mail_from(mx, sender)
    mt.check(code == 250, 'action: score / on_error: accept: %s accepted (%s %s)' % (sender, code, text))
mt.check(mx.wait_log(r'event=sender_domain result=null_mx domain=nullmx\.example client=\S+ action=score', 5),
         'the null MX is scored and logged action=score')
mt.check(mx.wait_log(r'event=sender_domain result=temperror domain=sfail\.example client=\S+ action=accept', 5),
         'the SERVFAIL is logged action=accept')
r = mt.send_mail(mx.port, 'a@nx.example', ['b@example.test'], b'Subject: sd\r\n\r\nbody\r\n', proxy_src=CLIENT)
mt.check(r.code == 250, 'a message from an unknown domain is delivered under action: score (%s %s)' % (r.code, r.text))
for result, least in (('unknown', 2), ('null_mx', 1), ('temperror', 1)):
    v = mx.metric('sender_domain_checks_total{result="%s"}' % result)
    mt.check(v is not None and v >= least, 'mxgate_sender_domain_checks_total{result="%s"} = %s' % (result, v))
mx.stop()

# unknown_code: 550 -> 550 5.1.8
mx = daemon('mx-senderdom-550', unknown_code=550)
code, text, _ = mail_from(mx, 'a@nx.example')
mt.check(code == 550 and '5.1.8 ' in text, 'unknown_code: 550 -> 550 5.1.8 (%s %s)' % (code, text))
mx.stop()

# check_mx_hosts (Haraka's MX and implicit-MX checks)
mx = daemon('mx-senderdom-hosts', check_mx_hosts=True)
for sender, want, what in (
        ('a@goodmx.example', 250, 'an MX host with a public address'),
        ('a@twomx.example', 250, 'the best MX on loopback, the next one public'),
        ('a@loopmx.example', 450, 'the only MX host on loopback'),
        ('a@nohostmx.example', 450, 'the MX host does not resolve'),
        ('a@privonly.example', 450, 'no MX, the domain\'s own address private (implicit MX)'),
        ('a@aonly.example', 250, 'no MX, a public address (implicit MX)')):
    code, text, _ = mail_from(mx, sender)
    mt.check(code == want and (want == 250 or 'no usable mail exchanger' in text),
             'check_mx_hosts: %s -> %d (%s %s)' % (what, want, code, text))
mx.stop()

# without check_mx_hosts the same domains pass: the MX is enough (Postfix)
mx = daemon('mx-senderdom-nohosts')
for sender in ('a@loopmx.example', 'a@nohostmx.example', 'a@privonly.example'):
    code, text, _ = mail_from(mx, sender)
    mt.check(code == 250, 'without check_mx_hosts: %s accepted (%s %s)' % (sender, code, text))
mx.stop()
# an authenticated client (SMTP AUTH, Dovecot) is not checked; the same daemon checks an
# unauthenticated one
dv = mt.dovecot({'alice': 'secret'})
crt, key = mt.cert()
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True},
                                  {'address': '127.0.0.1:0'}],
                tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock, 'timeout': '10s'},
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                sender_domain={'enabled': True})
mx = mt.Mxgate(cfg, name='mx-senderdom-auth')
c = mt.Client(mx.ports[0], tls=True)
try:
    c.ehlo('client.example')
    code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())
    mt.check(code == 235, 'AUTH PLAIN against Dovecot (%s %s)' % (code, text))
    code, text = c.cmd('MAIL FROM:<a@nx3.example>')
    mt.check(code == 250 and asked('nx3.example', 'MX') == 0,
             'an authenticated client: its sender is not looked up (%s %s)' % (code, text))
finally:
    c.close()
c = mt.Client(mx.ports[1])
try:
    c.ehlo('client.example')
    code, text = c.cmd('MAIL FROM:<a@nx3.example>')
    mt.check(code == 450, 'the same sender unauthenticated: 450 (%s %s)' % (code, text))
finally:
    c.close()
mx.stop()
mt.finish()
