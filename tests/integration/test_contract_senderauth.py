#!/usr/bin/env python3
"""The contract's sender-authentication row, written from INTERFACE.md alone: "`dkim:`,
`arc:`, `dmarc: { action: honor | log }` -- sender authentication; results in
Authentication-Results". An operator who writes `dmarc: { action: honor }` means DMARC on:
a From domain publishing p=reject, with nothing aligned passing, is refused 550 5.7.1;
`dmarc: { action: log }` delivers it with dmarc=fail in Authentication-Results; `dkim: {}`
and `arc: {}` write their results there too, and so do `dkim: { action: log }` and
`arc: { action: honor }` (the row read the other way). `enabled: false` still turns a
section off.

Before: those sections parsed, `mxgate -t` said ok, and nothing was checked (the key
`enabled` defaults to false): the forged p=reject mail was delivered, with no
Authentication-Results field at all; and `dkim: { action: ... }` was refused as an unknown
key, so the daemon did not start.

A section written with nothing after it (`dkim:` alone, `dkim: ~`, `arc: null`, `dmarc:`)
is on as well: it reaches the table's check as no node at all, like an absent section, and
stayed off without a word until cfg_section_written told the two apart. `dkim: {}` alone (no
dmarc:, which turns DKIM verification on by itself) verifies a signed message: dkim=pass.

Peers: dns_peer.py (dnspython) serving the DMARC record and a DKIM key; dkimpy
(dkim_signer.py under /usr/bin/python3) signing; the recording Backend.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = mt.need_sys_python('dns.message', 'dkim')
SIGNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dkim_signer.py')
key_path, key_rec = mt.dkim_rsa_key('contract')

zone = {
    '_dmarc.bank.example': [{'txt': ['v=DMARC1; p=reject']}],
    'other.example': [{'txt': ['v=spf1 -all']}],
    'sel._domainkey.bank.example': [{'txt': mt.txt_strings(key_rec)}],
}
dnsp = mt.dns_peer(zone)
be = mt.Backend()
dns = {'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '1s'}


def run(name, raw='', **sections):
    """raw: YAML lines appended as written (the null forms a dict cannot say)."""
    cfg = mt.proxied_config([be.url], hostname='mx.test', dns=dns, **sections)
    mx = mt.Mxgate(mt.to_yaml(cfg) + raw if raw else cfg, name=name)
    r = mt.run_mxgate('-t', '-c', mx.conf)
    mt.check(r.returncode == 0, '%s: mxgate -t accepts %s (%s)' % (name, sections, (r.stdout + r.stderr).strip()[:200]))
    return mx


def send(mx, tag, sign=False):
    data = ('From: ceo@bank.example\r\nTo: bob@example.test\r\nSubject: contract %s\r\n\r\npay this.\r\n'
            % tag).encode()
    if sign:
        r = subprocess.run([PY, SIGNER, 'sign', key_path, 'sel', 'bank.example'], input=data,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            mt.fail('dkim_signer.py sign failed: %s' % r.stderr.decode(errors='replace')[:300])
        data = r.stdout
    res = mt.send_mail(mx.port, 'eve@other.example', ['bob@example.test'], data, proxy_src='198.18.1.7')
    return res.code, res.text, mt.our_authres(be.messages, ('Subject: contract %s\r\n' % tag).encode())


mx = run('mx-honor', dmarc={'action': 'honor'})
code, text, ar = send(mx, 'honor')
mt.check(code == 550 and '5.7.1' in text,
         'dmarc: { action: honor }: a p=reject forgery is refused 550 5.7.1 (%s %s)' % (code, (text or ar)[:200]))
mx.stop()

mx = run('mx-log', dmarc={'action': 'log'}, dkim={}, arc={})
code, text, ar = send(mx, 'log')
mt.check(code == 250 and 'dmarc=fail' in ar,
         'dmarc: { action: log }: delivered, dmarc=fail in Authentication-Results (%s %s)' % (code, ar or text))
mt.check('dkim=none' in ar and 'arc=none' in ar,
         'dkim: {} and arc: {}: their results in Authentication-Results (%s)' % ar)
mx.stop()

# the row read as `dkim: { action: ... }` too: accepted (DKIM and ARC have no policy of their
# own; dmarc.action decides refusals), and the results are the same
mx = run('mx-actions', dkim={'action': 'log'}, arc={'action': 'honor'}, dmarc={'action': 'log'})
code, text, ar = send(mx, 'actions')
mt.check(code == 250 and 'dkim=none' in ar and 'arc=none' in ar and 'dmarc=fail' in ar,
         'dkim: { action: log }, arc: { action: honor }: results in Authentication-Results (%s %s)'
         % (code, ar or text))
mx.stop()

# dkim: {} alone: nothing else turns DKIM verification on, a signed message passes
mx = run('mx-dkim-only', dkim={})
code, text, ar = send(mx, 'dkim-only', sign=True)
mt.check(code == 250 and 'dkim=pass' in ar and 'header.d=bank.example' in ar and 'dmarc=' not in ar,
         'dkim: {} alone verifies DKIM: dkim=pass (%s %s)' % (code, ar or text))
mx.stop()

# the null forms: `dkim:` alone with `arc:` alone, then `dkim: ~` with `arc: null`
for name, raw in [('mx-null-bare', 'dkim:\narc:\n'), ('mx-null-tilde', 'dkim: ~\narc: null\n')]:
    mx = run(name, raw=raw)
    code, text, ar = send(mx, name, sign=True)
    mt.check(code == 250 and 'dkim=pass' in ar and 'arc=none' in ar,
             '%s: a section written with nothing after it is on: dkim=pass arc=none (%s %s)'
             % (raw.replace('\n', ' ').strip(), code, ar or text))
    mx.stop()

# `dmarc:` alone: on, action honor by default: the p=reject forgery is refused
mx = run('mx-dmarc-bare', raw='dmarc:\n')
code, text, ar = send(mx, 'dmarc-bare')
mt.check(code == 550 and '5.7.1' in text,
         'dmarc: alone is on: a p=reject forgery is refused 550 5.7.1 (%s %s)' % (code, (text or ar)[:200]))
mx.stop()

mx = run('mx-off', dmarc={'enabled': False, 'action': 'honor'}, dkim={'enabled': False})
code, text, ar = send(mx, 'off')
mt.check(code == 250 and 'dmarc=' not in ar and 'dkim=' not in ar,
         'enabled: false keeps a section off (%s %s)' % (code, ar or text))
mx.stop()
mt.finish()
