#!/usr/bin/env python3
"""DMARC np= (RFC 9091, kept by DMARCbis): the policy for From domains that do not exist
under an organisational domain. A forger writes `From: ceo@payments.bank.example` (no such
name) where bank.example publishes `p=reject; sp=none; np=reject`: the subdomain policy
`sp=none` let it through; np= applies to a name that does not exist (NXDOMAIN).

mxgate asks the A record of a From domain that is a subdomain, in parallel with the policy
records; only NXDOMAIN counts as non-existent (a name with other records, or an answer that
does not come, is treated as existing: np never refuses a domain that may exist).

Peers: dns_peer.py (dnspython) serving the DMARC records and the names that exist.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need_sys_python('dns.message')

zone = {
    '_dmarc.bank.example': [{'txt': ['v=DMARC1; p=reject; sp=none; np=reject']}],
    'www.bank.example': [{'a': '192.0.2.80'}],
    'mx.bank.example': [{'mx': 'in.bank.example'}],       # exists, but has no A record (NODATA)
    '_dmarc.quar.example': [{'txt': ['v=DMARC1; p=none; np=quarantine']}],
    '_dmarc.plain.example': [{'txt': ['v=DMARC1; p=reject; sp=none']}],   # no np=: sp= applies
    'slow.bank.example': 'drop',                           # no answer: not known not to exist
    'other.example': [{'txt': ['v=spf1 +all']}],
}
dnsp = mt.dns_peer(zone)
be = mt.Backend()
cfg = mt.proxied_config([be.url], hostname='mx.test',
                        dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '1s', 'tries': 1},
                        spf={'enabled': True, 'timeout': '4s'}, dkim={'enabled': True, 'timeout': '3s'},
                        dmarc={'enabled': True})
mx = mt.Mxgate(cfg, name='mx-dmnp')


def send(tag, frm):
    data = ('From: %s\r\nTo: bob@example.test\r\nSubject: dmnp %s\r\n\r\npay this.\r\n' % (frm, tag)).encode()
    res = mt.send_mail(mx.port, 'eve@other.example', ['bob@example.test'], data, proxy_src='198.18.1.7')
    return res.code, res.text, mt.our_authres(be.messages, ('Subject: dmnp %s\r\n' % tag).encode())


rows = [
    ('ghost', 'ceo@payments.bank.example', 550, '5.7.1 Email rejected per DMARC policy for payments.bank.example',
     'a From subdomain that does not exist: np=reject'),
    ('www', 'ceo@www.bank.example', 250, 'dmarc=fail (p=none dis=none)', 'one that exists: sp=none'),
    ('mxonly', 'ceo@mx.bank.example', 250, 'dmarc=fail (p=none dis=none)',
     'one with an MX record only (no A): exists, sp=none'),
    ('slow', 'ceo@slow.bank.example', 250, 'dmarc=fail (p=none dis=none)',
     'one whose lookup never answers: not known not to exist, sp=none'),
    ('org', 'ceo@bank.example', 550, '5.7.1', 'the organisational domain itself: p=reject'),
    ('quar', 'x@ghost.quar.example', 250, 'dmarc=fail (p=quarantine dis=quarantine)',
     'np=quarantine over p=none (no quarantine backend: score)'),
    ('nonp', 'x@ghost.plain.example', 250, 'dmarc=fail (p=none dis=none)', 'no np=: sp= as before'),
]
for tag, frm, want, part, what in rows:
    code, text, ar = send(tag, frm)
    seen = text if code != 250 else ar
    mt.check(code == want and part in seen, '%s: %s -> %s %s (%s %s)' % (tag, what, want, part, code, (ar or text)[:200]))
mt.finish()
