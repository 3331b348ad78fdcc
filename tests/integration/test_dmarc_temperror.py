#!/usr/bin/env python3
"""DMARC when an aligned check could not finish, as an operator coming from OpenDMARC /
rspamd sets it up (dmarc.action honor, nothing else): a forger signs a p=reject domain's
From with a selector whose key lookup fails (no answer at all, SERVFAIL), SPF not aligned.

RFC 7489 6.6.2 lets a receiver defer (4xx) when the checks had temporary errors. Accepting
is what let the forgery through: the DKIM temperror made DMARC temperror, and the old
default `on_temperror: accept` accepted it where the policy says reject. The default
(`on_temperror: policy`) answers 451 4.4.3 when the policy that would apply is reject or
quarantine, and accepts (score, header) under p=none or when the policy itself could not be
looked up (nothing known to enforce). `accept` and `tempfail` keep their meaning.

Peers: dns_peer.py (dnspython) serving the keys, the DMARC and SPF records; dkimpy
(dkim_signer.py) signing; keys from openssl.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = mt.need_sys_python('dkim', 'dns.message')
mt.need('openssl')

key, rec = mt.dkim_rsa_key('dmtmp')
rec = mt.txt_strings(rec)
zone = {
    '_dmarc.rej.example': [{'txt': ['v=DMARC1; p=reject']}],
    '_dmarc.quar.example': [{'txt': ['v=DMARC1; p=quarantine']}],
    '_dmarc.none.example': [{'txt': ['v=DMARC1; p=none']}],
    '_dmarc.pct0.example': [{'txt': ['v=DMARC1; p=reject; pct=0']}],   # sampled out: quarantine
    '_dmarc.sub.example': [{'txt': ['v=DMARC1; p=reject; sp=none']}],
    '_dmarc.sfail.example': 'servfail',                                  # the policy itself
    'good._domainkey.rej.example': [{'txt': rec}],
    'drop._domainkey.rej.example': 'drop',
    'sf._domainkey.rej.example': 'servfail',
    'sf._domainkey.quar.example': 'servfail',
    'sf._domainkey.none.example': 'servfail',
    'sf._domainkey.pct0.example': 'servfail',
    'sf._domainkey.a.sub.example': 'servfail',
    'good._domainkey.sfail.example': [{'txt': rec}],
    'other.example': [{'txt': ['v=spf1 +all']}],                       # the forger's own domain
    'spf.rej.example': 'servfail',                                     # an aligned SPF temperror
}
dnsp = mt.dns_peer(zone)
be = mt.Backend()


def daemon(name, **dmarc):
    cfg = mt.proxied_config([be.url], hostname='mx.test', dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '1s', 'tries': 1},
                    spf={'enabled': True, 'timeout': '4s'}, dkim={'enabled': True, 'timeout': '4s'},
                    dmarc=dict({'enabled': True}, **dmarc))
    return mt.Mxgate(cfg, name=name)


def signed(tag, frm, sel, dom):
    m = ('From: Boss <boss@%s>\r\nTo: bob@example.test\r\nSubject: dmtmp %s\r\n'
         'Date: Fri, 04 Dec 2026 05:00:00 +0000\r\nMessage-ID: <%s@x>\r\n\r\npay this.\r\n' % (frm, tag, tag))
    r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'sign', key, sel, dom],
                       input=m.encode(), capture_output=True, timeout=60)
    if r.returncode != 0:
        mt.fail('dkim_signer.py: %s' % r.stderr.decode(errors='replace')[-300:])
    return r.stdout


def send(mx, tag, frm, sel, dom, mail_from='forger@other.example'):
    # from 198.18.1.7 (PROXY v2): libspf2 passes loopback clients without a lookup
    res = mt.send_mail(mx.port, mail_from, ['bob@example.test'], signed(tag, frm, sel, dom),
                       proxy_src='198.18.1.7')
    got = [m for m in be.messages if ('Subject: dmtmp %s\r\n' % tag).encode() in m['data']]
    ar = None
    if got:
        head = got[-1]['data'].decode('latin-1').split('\r\n\r\n', 1)[0].replace('\r\n ', ' ').replace('\r\n\t', ' ')
        ar = ([h for h in head.split('\r\n') if h.startswith('Authentication-Results: mx.test;')] or [None])[0]
    return res.code, res.text, ar


mx = daemon('mx-dmtmp')
rows = [
    # tag, From domain, selector, d=, MAIL FROM, want code, text or A-R part, what
    ('drop', 'rej.example', 'drop', 'rej.example', None, 451, '4.4.3',
     'p=reject, the key lookup never answered: 451, not accepted'),
    ('sf', 'rej.example', 'sf', 'rej.example', None, 451, '4.4.3', 'p=reject, key SERVFAIL: 451'),
    ('quar', 'quar.example', 'sf', 'quar.example', None, 451, '4.4.3', 'p=quarantine, key SERVFAIL: 451'),
    ('pct0', 'pct0.example', 'sf', 'pct0.example', None, 451, '4.4.3',
     'p=reject pct=0 (quarantine after the sample), key SERVFAIL: 451'),
    ('none', 'none.example', 'sf', 'none.example', None, 250, 'dmarc=temperror',
     'p=none, key SERVFAIL: accepted with dmarc=temperror'),
    ('spnone', 'a.sub.example', 'sf', 'a.sub.example', None, 250, 'dmarc=temperror',
     'a subdomain under sp=none, key SERVFAIL: accepted'),
    ('good', 'rej.example', 'good', 'rej.example', None, 250, 'dmarc=pass', 'the key answers: pass'),
    ('forged', 'rej.example', 'good', 'other.example', None, 550, '5.7.1',
     'not aligned, nothing temporary: 550 as before'),
    ('spftmp', 'rej.example', 'good', 'other.example', 'x@spf.rej.example', 451, '4.4.3',
     'an aligned SPF temperror and a foreign signature under p=reject: 451'),
    ('polsf', 'sfail.example', 'good', 'sfail.example', None, 250, 'dmarc=temperror',
     'the policy lookup itself failed: nothing known to enforce, accepted'),
]
for tag, frm, sel, dom, mf, want, part, what in rows:
    code, text, ar = send(mx, tag, frm, sel, dom, **({'mail_from': mf} if mf else {}))
    seen = text if code != 250 else (ar or '')
    mt.check(code == want and part in seen, '%s: %s (%s %s)' % (tag, what, code, (ar or text)[:160]))
mt.check(mx.wait_log(r'event=senderauth .*from_domain=rej\.example .*dmarc=temperror policy=reject '
                     r'disposition=reject .*action=tempfail', 5),
         'the log line names the policy that would apply and the tempfail')
mx.stop()

# the old behaviour, chosen: accept
mx = daemon('mx-dmtmp-accept', on_temperror='accept')
code, text, ar = send(mx, 'acc', 'rej.example', 'sf', 'rej.example')
mt.check(code == 250 and ar and 'dmarc=temperror' in ar, 'on_temperror: accept takes it (%s %s)' % (code, ar or text))
mx.stop()

# tempfail: every temperror, the policy lookup's too
mx = daemon('mx-dmtmp-tempfail', on_temperror='tempfail')
code, text, _ = send(mx, 'tfpol', 'sfail.example', 'good', 'sfail.example')
mt.check(code == 451 and '4.4.3' in text, 'on_temperror: tempfail defers a failed policy lookup (%s %s)' % (code, text))
code, text, _ = send(mx, 'tfnone', 'none.example', 'sf', 'none.example')
mt.check(code == 451, 'on_temperror: tempfail defers under p=none too (%s %s)' % (code, text))
mx.stop()
mt.finish()
