#!/usr/bin/env python3
"""SPF as an operator coming from Postfix + policyd-spf sets it up: the policies live in a
DNS server on 127.0.0.1 at a port of its own (dns_peer.py, dnspython), named once in
`dns.resolvers` like every other lookup of mxgate, and no `spf.records`:

- pass / fail / softfail through a real DNS answer, with the record split into several
  TXT character-strings (joined without a space, RFC 7208 3.3), an include: and a
  redirect=, a:/mx:/ptr mechanisms and an exists: macro (%{ir}, %{l}, %{d}, RFC 7208 7);
- IPv6 clients against ip6: mechanisms and AAAA records;
- a record that does not compile (unknown mechanism, bad ip4 literal): permerror;
- an include: loop, more than 10 DNS-querying terms and more than 2 void lookups:
  permerror (RFC 7208 4.6.4);
- two SPF records: permerror; none: no record at all;
- SERVFAIL from the DNS server (over UDP, over TCP after a truncated answer, or for an
  include:d record), or no answer at all: temperror, and 451 4.7.24 with tempfail_temperror;
- a forged SERVFAIL with another id before the answer: ignored, the answer counts;
- the null sender checked by its HELO name; every result in the one Authentication-Results
  field, parsed back by python3-authres.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
HERE = os.path.dirname(os.path.abspath(__file__))
if subprocess.run([PY, '-c', 'import dns.message, authres'], capture_output=True).returncode != 0:
    mt.skip('python3-dnspython / python3-authres not installed')


def txt(*parts):
    return {'txt': list(parts)}


zone = {
    'pass.example': [txt('v=spf1 ip4:198.18.0.0/15 ', '-all')],           # two strings, joined as is
    'soft.example': [txt('v=spf1 ~all')],
    'inc.example': [txt('v=spf1 include:pass.example -all')],
    'red.example': [txt('v=spf1 redirect=pass.example')],
    'amx.example': [txt('v=spf1 a mx -all'), {'a': '198.51.100.10'}, {'mx': 'mail.amx.example'}],
    'mail.amx.example': [{'a': '198.51.100.20'}],
    'macro.example': [txt('v=spf1 exists:%{ir}.%{l}._spf.%{d} -all')],
    '7.1.18.198.alice._spf.macro.example': [{'a': '127.0.0.2'}],
    'v6.example': [txt('v=spf1 ip6:2001:db8:1::/48 a:host.v6.example -all')],
    'host.v6.example': [{'aaaa': '2001:db8:2::25'}],
    'mech.example': [txt('v=spf1 ip4:198.18.1.7 foo:bar -all')],
    'ip4bad.example': [txt('v=spf1 ip4:300.1.1.1 -all')],
    'loop1.example': [txt('v=spf1 include:loop2.example -all')],
    'loop2.example': [txt('v=spf1 include:loop1.example -all')],
    'many.example': [txt('v=spf1 ' + ' '.join('a:h%d.many.example' % i for i in range(11)) + ' ip4:198.18.1.7 -all')],
    'two.example': [txt('v=spf1 -all'), txt('v=spf1 +all')],
    'norec.example': [txt('some other text')],
    'sfail.example': 'servfail',
    'drop.example': 'drop',
    # RFC 7208 5.2: a DNS error in an include:'s record is the include's temperror
    'incsf.example': [txt('v=spf1 include:sfail.example -all')],
    'tcpsf.example': 'tcp_servfail',         # truncated over UDP, SERVFAIL over TCP
    # a forged SERVFAIL with another id before the answer: not the answer (spf_dns_matches)
    'spoof.example': [{'spoof': 'servfail'}, txt('v=spf1 ip4:198.18.0.0/15 -all')],
    'helo.example': [txt('v=spf1 a -all'), {'a': '198.18.1.7'}],
    'ptr.example': [txt('v=spf1 ptr -all')],
    # over the 1232 octets of EDNS0 (a 700-octet SPF record beside the site-verification
    # records a domain's apex collects): the UDP answer is truncated, the lookup is
    # repeated over TCP
    'big.example': [txt(*['v=spf1'] + [' ip4:203.0.113.%d' % i for i in range(1, 41)] + [' ip4:198.18.1.7 -all']),
                    txt('site-verification=' + 'x' * 230, 'y' * 250), txt('z' * 250)],
    # libspf2 keeps 511 octets of compiled mechanisms (about 63 ip4 terms) and drops the rest
    # without an error: 70 ip4 terms, then the client's and -all
    'long.example': [txt(*['v=spf1'] + [' ip4:203.0.113.%d' % i for i in range(1, 71)] + [' ip4:198.18.1.7 -all'])],
    'longinc.example': [txt('v=spf1 include:long.example -all')],
    # 200 bytes of ip6 terms (20 compiled octets each): cut after 25
    'long6.example': [txt(*['v=spf1'] + [' ip6:2001:db8:%x::/48' % i for i in range(1, 31)] + [' -all'])],
    # RFC 7208 4.6.4: three terms whose lookups find nothing (NXDOMAIN, NODATA): permerror
    'void3.example': [txt('v=spf1 a:n1.void3.example mx:n2.void3.example exists:%{l}.void3.example '
                          'ip4:198.18.1.7 -all')],
    'void2.example': [txt('v=spf1 a:n1.void3.example a:nodata.void3.example ip4:198.18.1.7 -all')],
    'nodata.void3.example': [txt('no address here')],
    '7.1.18.198.in-addr.arpa': [{'ptr': 'host.ptr.example'}],
    'host.ptr.example': [{'a': '198.18.1.7'}],
}
for i in range(11):
    zone['h%d.many.example' % i] = [{'a': '203.0.113.%d' % (i + 1)}]
dns_peer = mt.dns_peer(zone)
dns_port = dns_peer.port

be = mt.Backend()


def daemon(name, **spf):
    cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                    trusted_proxies=['127.0.0.1/32'],
                    dns={'resolvers': ['127.0.0.1:%d' % dns_port], 'timeout': '2s', 'tries': 1},
                    spf=dict({'enabled': True, 'timeout': '5s'}, **spf))
    return mt.Mxgate(cfg, name=name)


mx = daemon('mx-spf-dns')
ars = []


def via(tag, sender, client='198.18.1.7', helo='client.example', port=None):
    """One message from client (PROXY v1); returns (code, text, the Authentication-Results
    field of ours as delivered, or None)."""
    c = mt.Client(port or mx.port, greet=False)
    try:
        fam, dst = ('TCP6', '::1') if ':' in client else ('TCP4', '127.0.0.1')
        c.send('PROXY %s %s %s 40000 25\r\n' % (fam, client, dst))
        if c.reply()[0] != 220:
            return None, 'no greeting', None
        c.ehlo(helo)
        data = ('From: x@example.test\r\nTo: b@example.test\r\nSubject: spfdns %s\r\n\r\nbody\r\n' % tag).encode()
        code, text = mt.send_mail(port or mx.port, sender, ['b@example.test'], data, client=c)
    finally:
        c.close()
    got = [m for m in be.messages if ('Subject: spfdns %s\r\n' % tag).encode() in m['data']]
    ar = None
    if got:
        head = got[-1]['data'].decode('latin-1').split('\r\n\r\n', 1)[0].replace('\r\n\t', ' ').replace('\r\n ', ' ')
        mine = [h for h in head.split('\r\n') if h.startswith('Authentication-Results: mx.test;')]
        ar = mine[0][len('Authentication-Results: '):] if len(mine) == 1 else None
        if ar:
            ars.append(ar)
    return code, text, ar


rows = [
    ('pass', 'a@pass.example', '198.18.1.7', 'spf=pass smtp.mailfrom=pass.example', 'a record in two strings'),
    ('fail', 'a@pass.example', '192.0.2.9', 'spf=fail smtp.mailfrom=pass.example', '-all'),
    ('soft', 'a@soft.example', '192.0.2.9', 'spf=softfail smtp.mailfrom=soft.example', '~all'),
    ('inc', 'a@inc.example', '198.18.200.1', 'spf=pass smtp.mailfrom=inc.example', 'include:'),
    ('red', 'a@red.example', '192.0.2.9', 'spf=fail smtp.mailfrom=red.example', 'redirect='),
    ('a', 'a@amx.example', '198.51.100.10', 'spf=pass smtp.mailfrom=amx.example', 'the a mechanism'),
    ('mx', 'a@amx.example', '198.51.100.20', 'spf=pass smtp.mailfrom=amx.example', 'the mx mechanism'),
    ('macro', 'alice@macro.example', '198.18.1.7', 'spf=pass smtp.mailfrom=macro.example', 'exists: with %{ir}.%{l}'),
    ('macrono', 'bob@macro.example', '198.18.1.7', 'spf=fail smtp.mailfrom=macro.example', 'exists: finds no name'),
    ('v6', 'a@v6.example', '2001:db8:1::9', 'spf=pass smtp.mailfrom=v6.example', 'ip6: from an IPv6 client'),
    ('v6aaaa', 'a@v6.example', '2001:db8:2::25', 'spf=pass', 'a: matches an IPv6 client by the AAAA record'),
    ('v6no', 'a@v6.example', '2001:db8:9::1', 'spf=fail', 'an IPv6 client outside'),
    ('big', 'a@big.example', '198.18.1.7', 'spf=pass smtp.mailfrom=big.example', 'a 700-octet record beside 750 octets of other TXT records (over 1232: TC, then TCP)'),
    ('ptr', 'a@ptr.example', '198.18.1.7', 'spf=pass smtp.mailfrom=ptr.example', 'ptr: PTR then A confirms'),
    ('void3', 'a@void3.example', '198.18.1.7', 'spf=permerror smtp.mailfrom=void3.example',
     'three void lookups before the match'),
    ('void2', 'a@void2.example', '198.18.1.7', 'spf=pass smtp.mailfrom=void2.example', 'two void lookups are allowed'),
    ('mech', 'a@mech.example', '198.18.1.7', 'spf=permerror smtp.mailfrom=mech.example', 'an unknown mechanism'),
    ('ip4bad', 'a@ip4bad.example', '198.18.1.7', 'spf=permerror', 'ip4:300.1.1.1'),
    ('loop', 'a@loop1.example', '198.18.1.7', 'spf=permerror', 'an include: loop'),
    ('many', 'a@many.example', '198.18.1.7', 'spf=permerror', 'eleven a: terms (limit 10)'),
    ('two', 'a@two.example', '198.18.1.7', 'spf=permerror', 'two SPF records'),
    ('none', 'a@norec.example', '198.18.1.7', 'spf=none smtp.mailfrom=norec.example', 'a TXT record that is not SPF'),
    ('nx', 'a@nxdomain.example', '198.18.1.7', 'spf=none', 'no such domain'),
    ('sfail', 'a@sfail.example', '198.18.1.7', 'spf=temperror smtp.mailfrom=sfail.example', 'SERVFAIL'),
    ('drop', 'a@drop.example', '198.18.1.7', 'spf=temperror smtp.mailfrom=drop.example',
     'no answer at all: dns.timeout, then temperror'),
    ('incsf', 'a@incsf.example', '198.18.1.7', 'spf=temperror smtp.mailfrom=incsf.example',
     'SERVFAIL for an include:d record'),
    ('tcpsf', 'a@tcpsf.example', '198.18.1.7', 'spf=temperror smtp.mailfrom=tcpsf.example',
     'truncated over UDP, SERVFAIL over TCP'),
    ('spoof', 'a@spoof.example', '198.18.1.7', 'spf=pass smtp.mailfrom=spoof.example',
     'a forged SERVFAIL (another id) before the answer is not taken'),
    ('long', 'a@long.example', '198.18.1.7', 'spf=permerror smtp.mailfrom=long.example',
     'the client listed after 70 ip4 terms: not neutral from a cut record'),
    ('longfail', 'a@long.example', '192.0.2.9', 'spf=permerror smtp.mailfrom=long.example',
     'a client not listed: not neutral (the -all was cut)'),
    ('longearly', 'a@long.example', '203.0.113.5', 'spf=pass smtp.mailfrom=long.example',
     'the client matched before the cut: pass'),
    ('longinc', 'a@longinc.example', '192.0.2.9', 'spf=permerror smtp.mailfrom=longinc.example',
     'an include: of a cut record'),
    ('long6', 'a@long6.example', '2001:db8:99::1', 'spf=permerror smtp.mailfrom=long6.example',
     '30 ip6 terms and -all'),
    ('helo', '', '198.18.1.7', 'spf=pass smtp.helo=helo.example', 'the null sender: its HELO name'),
]
for tag, sender, client, want, what in rows:
    code, text, ar = via(tag, sender, client, helo='helo.example' if tag == 'helo' else 'client.example')
    mt.check(code == 250 and ar is not None and want in ar, '%s: %s -> %s (%s %s)' % (tag, what, want, code, ar or text))

# the policy was asked of the DNS server named in dns.resolvers
mt.check(mt.wait_log_of(dns_peer.name, r'query pass\.example TXT', 5, dns_peer),
         'libspf2\'s lookups went to the dns.resolvers server')
mt.check(mt.wait_log_of(dns_peer.name, r'query big\.example TXT tcp', 5, dns_peer),
         'a truncated answer was asked again over TCP')
mt.check(mt.wait_log_of(dns_peer.name, r'spoofed spoof\.example', 5, dns_peer),
         'the forged SERVFAIL was sent before the answer')
mt.check(mx.wait_log(r'event=spf_record_too_large domain=long\.example record_of=long\.example '
                     r'result=neutral action=permerror', 5),
         'the cut record is logged with the result libspf2 gave')
mt.check(mx.wait_log(r'event=spf_record_too_large domain=longinc\.example record_of=long\.example', 5),
         'the cut record reached by include: is named')

# the results as a downstream reader sees them: python3-authres parses each field
r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'authres', '-', '-', '-'],
                   input='\r\n'.join(ars).encode(), capture_output=True, timeout=60)
parsed = [json.loads(x) if x.startswith('{') else {'error': x} for x in r.stdout.decode().splitlines()]
bad = [(a, p) for a, p in zip(ars, parsed) if 'error' in p or p['id'] != 'mx.test' or
       [(m, res) for m, res, _ in p['results']] != [('spf', a.split('spf=', 1)[1].split()[0])]]
mt.check(len(parsed) == len(ars) == len(rows) and not bad,
         'python3-authres reads all %d fields as written (%s)' % (len(ars), bad[:1]))
mx.stop()

# SERVFAIL with tempfail_temperror: the sender is asked to come back (451 4.7.24)
mx = daemon('mx-spf-dns-tempfail', tempfail_temperror=True)
code, text, _ = via('sfail451', 'a@sfail.example', port=mx.port)
mt.check(code == 451 and '4.7.24' in text, 'SERVFAIL with tempfail_temperror: 451 4.7.24 (%s %s)' % (code, text[:80]))
code, text, _ = via('mech451', 'a@mech.example', port=mx.port)
mt.check(code == 250, 'a broken record (permerror) is not tempfailed as if DNS were down (%s %s)' % (code, text[:80]))
mx.stop()
mt.finish()
