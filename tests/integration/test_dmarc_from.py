#!/usr/bin/env python3
"""DMARC with more than one author, as a forger tries it against a p=reject domain and an
operator coming from OpenDMARC checks it (dmarc.action honor, the defaults).

RFC 7489 6.6.1: a From field naming several domains is checked for each of them, and the
strictest policy among those that fail applies; several From fields (forbidden by RFC 5322)
are "typically rejected". mxgate made every such message `dmarc=permerror` and delivered it,
so `From: boss@rej.example, x@other.example` (or the same in two From fields, or with a
second mailbox that has no domain) got a p=reject domain's forgery through. Now each domain
is looked up and judged; the field names the one that decided.

Peers: dns_peer.py (dnspython) serving DMARC records, SPF and a DKIM key; dkimpy
(dkim_signer.py) signing for the cases with a real signature.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = mt.need_sys_python('dkim', 'dns.message')
mt.need('openssl')

key, rec = mt.dkim_rsa_key('dmfrom')
rec = mt.txt_strings(rec)
zone = {
    '_dmarc.rej.example': [{'txt': ['v=DMARC1; p=reject']}],
    '_dmarc.quar.example': [{'txt': ['v=DMARC1; p=quarantine']}],
    '_dmarc.none.example': [{'txt': ['v=DMARC1; p=none']}],
    'good._domainkey.rej.example': [{'txt': rec}],
    'other.example': [{'txt': ['v=spf1 +all']}],
}
dnsp = mt.dns_peer(zone)
be = mt.Backend()
cfg = mt.proxied_config([be.url], hostname='mx.test',
                        dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '1s', 'tries': 1},
                        spf={'enabled': True, 'timeout': '4s'}, dkim={'enabled': True, 'timeout': '4s'},
                        dmarc={'enabled': True})
mx = mt.Mxgate(cfg, name='mx-dmfrom')


def send(tag, froms, sign=False):
    m = ''.join('From: %s\r\n' % f for f in froms)
    m += ('To: bob@example.test\r\nSubject: dmfrom %s\r\nDate: Fri, 04 Dec 2026 05:00:00 +0000\r\n'
          'Message-ID: <%s@x>\r\n\r\npay this.\r\n' % (tag, tag))
    data = m.encode()
    if sign:
        r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'sign', key, 'good', 'rej.example',
                            '--headers', 'from,to,subject'], input=data, capture_output=True, timeout=60)
        if r.returncode != 0:
            mt.fail('dkim_signer.py: %s' % r.stderr.decode(errors='replace')[-300:])
        data = r.stdout
    res = mt.send_mail(mx.port, 'eve@other.example', ['bob@example.test'], data, proxy_src='198.18.1.7')
    return res.code, res.text, mt.our_authres(be.messages, ('Subject: dmfrom %s\r\n' % tag).encode())


rows = [
    ('first', ['Boss <boss@rej.example>, Eve <eve@other.example>'], False, 550, '5.7.1 Email rejected per DMARC policy for rej.example',
     'the p=reject domain first of two'),
    ('second', ['Eve <eve@other.example>, Boss <boss@rej.example>'], False, 550, 'rej.example',
     'the p=reject domain second of two'),
    ('twofields', ['eve@other.example', 'boss@rej.example'], False, 550, 'rej.example',
     'two From fields, the second in the p=reject domain'),
    ('nodomain', ['boss@rej.example, undisclosed-recipients'], False, 550, 'rej.example',
     'a second mailbox without a domain'),
    ('quar', ['boss@quar.example, x@none.example'], False, 250, 'dmarc=fail (p=quarantine dis=quarantine',
     'p=quarantine and p=none both fail: the stricter is reported (no quarantine backend: score)'),
    ('signed', ['Boss <boss@rej.example>, Ann <ann@none.example>'], True, 250, 'dmarc=fail (p=none dis=none',
     'rej.example passes (signed), none.example fails under p=none: delivered'),
    ('signedonly', ['Boss <boss@rej.example>, x@nodmarc.example'], True, 250, 'dmarc=pass',
     'rej.example passes, the other has no record'),
    ('same', ['a@rej.example, b@rej.example'], True, 250, 'dmarc=pass (p=reject dis=none) header.from=rej.example',
     'two mailboxes of one domain: one check, as before'),
    ('toomany', [', '.join('x@d%d.example' % i for i in range(8)) + ', boss@rej.example'], False, 550,
     '5.7.1 Email rejected: From names more than 8 domains', 'nine domains, the p=reject one last'),
    ('group', ['undisclosed:;'], False, 250, 'dmarc=permerror (no usable From)', 'no address at all'),
]
for tag, froms, sign, want, part, what in rows:
    code, text, ar = send(tag, froms, sign)
    seen = text if code != 250 else ar
    mt.check(code == want and part in seen, '%s: %s -> %s %s (%s %s)' % (tag, what, want, part, code, (ar or text)[:220]))
mt.check(mx.wait_log(r'event=senderauth .*from_domain=rej\.example .*dmarc=fail policy=reject .*action=reject', 5),
         'the log line names the domain that decided')
mt.finish()
