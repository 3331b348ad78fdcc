#!/usr/bin/python3
"""Makes the messages, keys and DNS records of test_senderauth_outsider.py with dkimpy
(Debian's python3-dkim) and records dkimpy's own verdict on each message, so the test can
hold mxgate's results against an outside verifier.

    senderauth_cases.py OUTDIR

Writes OUTDIR/zone.json (for dns_peer.py) and OUTDIR/cases.json: a list of
{tag, msg (latin-1), dkimpy: [per-signature "pass"/"fail"], arc: "pass"/"fail"/"none"}."""
import base64
import json
import os
import subprocess
import sys

import dkim
from dkim.crypto import parse_pem_private_key

out = sys.argv[1]
zone = {}
cases = []


_rsa = {}


def rsa(name, bits=2048, rec='v=DKIM1; k=rsa; p=%s', dom='example.org'):
    """The key of selector name (its PEM, also written as OUTDIR/name.pem) and its record in
    the zone. One key per size for the whole run, shared by every selector of that size: no
    case needs two selectors' keys to differ (each signs with its own selector's key), and
    RSA key generation was most of this script's CPU (22 openssl genrsa, now 4)."""
    if bits not in _rsa:
        path = os.path.join(out, 'rsa%d.pem' % bits)
        subprocess.run(['openssl', 'genrsa', '-traditional', '-out', path, str(bits)], check=True,
                       capture_output=True)
        der = subprocess.run(['openssl', 'rsa', '-in', path, '-pubout', '-outform', 'DER'], check=True,
                             capture_output=True).stdout
        _rsa[bits] = (open(path, 'rb').read(), base64.b64encode(der).decode())
    pem, pub = _rsa[bits]
    with open(os.path.join(out, name + '.pem'), 'wb') as f:
        f.write(pem)
    txt = rec % pub
    # split into 255-byte character-strings, as a zone file has to
    zone['%s._domainkey.%s' % (name, dom)] = [{'txt': [txt[i:i + 255] for i in range(0, len(txt), 255)]}]
    return pem


def ed(name, dom='example.org'):
    import nacl.encoding
    import nacl.signing
    k = nacl.signing.SigningKey.generate()
    zone['%s._domainkey.%s' % (name, dom)] = [
        {'txt': ['v=DKIM1; k=ed25519; p=' + k.verify_key.encode(nacl.encoding.Base64Encoder).decode()]}]
    return k.encode(nacl.encoding.Base64Encoder)


def dns(name, timeout=5):
    n = (name.decode() if isinstance(name, bytes) else name).lower().rstrip('.')
    e = zone.get(n)
    if not isinstance(e, list):
        return b''
    return b''.join(''.join(x['txt']).encode() for x in e if 'txt' in x)


def msg(tag, frm='Alice <alice@example.org>', body=None, extra=''):
    if body is None:
        body = 'Hello Bob,\r\n\r\nthis is case %s.\r\n' % tag
    return ('From: %s\r\nTo: bob@example.test\r\nSubject: outsider %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n%s\r\n%s'
            % (frm, tag, tag, extra, body)).encode('latin-1')


H = [b'from', b'to', b'subject', b'date', b'message-id']


def sign(m, key, sel, dom=b'example.org', canon=(b'relaxed', b'relaxed'), alg=b'rsa-sha256', heads=H, **kw):
    return dkim.sign(m, sel, dom, key, canonicalize=canon, signature_algorithm=alg, include_headers=heads,
                     **kw) + m


def add(tag, m, **extra):
    """Records a case with dkimpy's verdict on every signature (in header order)."""
    d = dkim.DKIM(m)
    n = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
    verdicts = []
    for i in range(n):
        try:
            verdicts.append('pass' if dkim.DKIM(m).verify(idx=i, dnsfunc=dns) else 'fail')
        except Exception:  # noqa: BLE001 (dkimpy raises on records it refuses)
            verdicts.append('fail')
    try:
        cv = dkim.arc_verify(m, dnsfunc=dns)[0]
        cv = (cv.decode() if isinstance(cv, bytes) else cv) or 'fail'
    except Exception:  # noqa: BLE001
        cv = 'fail'
    cases.append(dict(extra, tag=tag, msg=m.decode('latin-1'), dkimpy=verdicts, arc=cv.lower()))


k2048 = rsa('k2048')
k1024 = rsa('k1024', 1024)
k4096 = rsa('k4096', 4096)
k512 = rsa('k512', 512)
ked = ed('ked')
kts = rsa('kts', rec='v=DKIM1; k=rsa; t=s; p=%s')
kty = rsa('kty', rec='v=DKIM1; k=rsa; t=y; p=%s')
ksha1 = rsa('ksha1', rec='v=DKIM1; k=rsa; h=sha1; p=%s')
kh256 = rsa('kh256', rec='v=DKIM1; h=sha1:sha256; p=%s')                 # no k=: rsa by default
kspace = rsa('kspace', rec=' v = DKIM1 ;\tk = rsa ; n = some notes ; x_new = tag ; p = %s ; ')
knov = rsa('knov', rec='k=rsa; p=%s')                                      # v= is optional
kedtype = rsa('kedtype', rec='v=DKIM1; k=ed25519; p=%s')                   # k= says ed25519, key is rsa
kv2 = rsa('kv2', rec='v=DKIM2; k=rsa; p=%s')
kdot = rsa('a.b')
zone['twice._domainkey.example.org'] = zone['k2048._domainkey.example.org'] * 2   # two TXT records
zone['sfail._domainkey.example.org'] = 'servfail'
zone['refused._domainkey.example.org'] = 'refused'
zone['_dmarc.example.org'] = [{'txt': ['v=DMARC1; p=reject']}]
zone['_dmarc.strict.example'] = [{'txt': ['v=DMARC1; p=reject; adkim=s; aspf=s']}]
zone['_dmarc.none.example'] = [{'txt': ['v=DMARC1; p=none']}]
zone['_dmarc.quar.example'] = [{'txt': ['v=DMARC1;p=quarantine']}]
zone['_dmarc.sfail.example'] = 'servfail'
zone['_dmarc.two.example'] = [{'txt': ['v=DMARC1; p=reject']}, {'txt': ['v=DMARC1; p=none']}]
zone['_dmarc.norec.example'] = [{'txt': ['v=spf1 -all']}]        # a TXT record that is not DMARC
zone['_dmarc.split.example'] = [{'txt': ['v=DMARC1; ', 'p=reject']}]
zone['_dmarc.ruaonly.example'] = [{'txt': ['v=DMARC1; rua=mailto:d@ruaonly.example']}]  # p= missing
zone['_dmarc.example.co.uk'] = [{'txt': ['v=DMARC1; p=reject']}]
zone['_dmarc.caps.example'] = [{'txt': ['v=DMARC1; p=Reject']}]
zone['_dmarc.vlast.example'] = [{'txt': ['p=reject; v=DMARC1']}]
zone['_dmarc.vlower.example'] = [{'txt': ['v=dmarc1; p=reject']}]
zone['_dmarc.pbogus.example'] = [{'txt': ['v=DMARC1; p=bogus']}]
zone['_dmarc.spdiff.example'] = [{'txt': ['v=DMARC1; p=none; sp=reject']}]
zone['_dmarc.drop.example'] = 'drop'
# SPF policies for the DMARC SPF-alignment cases (sent from 198.18.1.7 by the test)
zone['other.example'] = [{'txt': ['v=spf1 ?all']}]
zone['mail.example.org'] = [{'txt': ['v=spf1 ip4:198.18.0.0/15 -all']}]
zone['mail.strict.example'] = [{'txt': ['v=spf1 ip4:198.18.0.0/15 -all']}]
zone['_dmarc.xn--bcher-kva.example'] = [{'txt': ['v=DMARC1; p=reject']}]
zone['_dmarc.upper.example'] = [{'txt': ['v=DMARC1; p=reject']}]
ku = rsa('k', dom='example.co.uk')
kupper = rsa('k', dom='upper.example')
kstrict = rsa('k', dom='strict.example')
kidn = rsa('k', dom='xn--bcher-kva.example')

P = 'Carol <carol@other.example>'
A0 = 'Alice <alice@example.org>'   # a From domain without DMARC record: DKIM alone is visible

# --- canonicalisation corners (dkimpy signs, both verify)
ws = 'Trailing   \r\nspaces\t \r\n  lead and   inner\t\tspace  \r\n\r\n\r\n\r\n'
add('relaxws', sign(msg('relaxws', P, body=ws, extra='X-Folded: one\r\n\t two  \r\n   three \r\n'),
                    k2048, b'k2048', heads=H + [b'x-folded']))
add('simplews', sign(msg('simplews', P, body=ws), k2048, b'k2048', canon=(b'simple', b'simple')))
add('emptyrel', sign(msg('emptyrel', P, body=''), k2048, b'k2048'))
add('emptysim', sign(msg('emptysim', P, body=''), k2048, b'k2048', canon=(b'simple', b'simple')))
add('blanksim', sign(msg('blanksim', P, body='\r\n\r\n\r\n'), k2048, b'k2048', canon=(b'simple', b'simple')))
m = sign(msg('trailadd', P), k2048, b'k2048', canon=(b'simple', b'simple'))
add('trailadd', m + b'\r\n\r\n')             # empty lines added at the end: simple ignores them
m = sign(msg('wsadd', P, body='a b\r\n'), k2048, b'k2048')
add('wsadd', m.replace(b'a b\r\n', b'a    b   \r\n'))   # relaxed body: whitespace runs are one space
m = sign(msg('wssim', P, body='a b\r\n'), k2048, b'k2048', canon=(b'relaxed', b'simple'))
add('wssim', m.replace(b'a b\r\n', b'a  b\r\n'))          # simple body: the same change breaks it
add('longline', sign(msg('longline', P, body='x' * 1500 + ' \r\n' + 'y ' * 800 + '\r\n'), k2048, b'k2048'))
m = sign(msg('hdrcase', P), k2048, b'k2048')
add('hdrcase', m.replace(b'Subject: outsider hdrcase', b'SUBJECT:    outsider hdrcase'))   # relaxed header
add('lowersig', sign(msg('lowersig', P), k2048, b'k2048').replace(b'DKIM-Signature:', b'dkim-signature:'))
add('absent', sign(msg('absent', P), k2048, b'k2048', heads=H + [b'reply-to', b'cc']))
m = sign(msg('absentadd', P), k2048, b'k2048', heads=H + [b'reply-to'])
add('absentadd', m.replace(b'To: bob', b'Reply-To: eve@evil.example\r\nTo: bob'))   # a signed-absent field added
# oversigning: From listed twice; a second From added later must break it
m = sign(msg('oversign', P), k2048, b'k2048', heads=H + [b'from', b'subject'])
add('oversign', m)
add('oversignadd', m.replace(b'To: bob', b'From: Mallory <m@evil.example>\r\nTo: bob').replace(
    b'outsider oversign', b'outsider oversignadd'))
# duplicate Subject, signed once: the bottom-most instance is the one signed
m = msg('dupsub', P, extra='Subject: second\r\n')
add('dupsub', sign(m, k2048, b'k2048'))
m = sign(msg('dupsubtop', P, extra='Subject: bottom\r\n'), k2048, b'k2048')
add('dupsubtop', m.replace(b'Subject: bottom', b'Subject: changed'))
# l=: text appended after signing still passes
m = sign(msg('lappend', P), k2048, b'k2048', length=True)
add('lappend', m + b'appended by a list\r\n')
add('lempty', sign(msg('lempty', P, body=''), k2048, b'k2048', length=True) + b'appended\r\n')

# --- keys
add('k1024', sign(msg('k1024', P), k1024, b'k1024'))
add('k4096', sign(msg('k4096', P), k4096, b'k4096'))       # 4096-bit record > 512 bytes: TC, then TCP
add('k512', sign(msg('k512', P), k512, b'k512'))
add('ed', sign(msg('ed', P), ked, b'ked', alg=b'ed25519-sha256'))
m = sign(msg('dual', P), k2048, b'k2048')
add('dual', sign(m, ked, b'ked', alg=b'ed25519-sha256'))
add('tsok', sign(msg('tsok', P), kts, b'kts', identity=b'@example.org'))
add('tssub', sign(msg('tssub', P), kts, b'kts', identity=b'@sub.example.org'))
add('tsnoi', sign(msg('tsnoi', P), kts, b'kts'))
add('ty', sign(msg('ty', 'Alice <alice@example.org>'), kty, b'kty'))
add('ksha1', sign(msg('ksha1', P), ksha1, b'ksha1'))
add('kh256', sign(msg('kh256', P), kh256, b'kh256'))
add('kspace', sign(msg('kspace', P), kspace, b'kspace'))
add('knov', sign(msg('knov', P), knov, b'knov'))
add('kedtype', sign(msg('kedtype', P), kedtype, b'kedtype'))
add('kv2', sign(msg('kv2', P), kv2, b'kv2'))
add('twice', sign(msg('twice', P), k2048, b'twice'))
add('sfail', sign(msg('sfail', P), k2048, b'sfail'))
add('refused', sign(msg('refused', P), k2048, b'refused'))
add('isub', sign(msg('isub', P), k2048, b'k2048', identity=b'user@mail.example.org'))

# --- more signature corners
add('dupper', sign(msg('dupper', A0), k2048, b'k2048', dom=b'EXAMPLE.Org'))   # d= in other case: key and alignment
m = sign(msg('lshort', P), k2048, b'k2048', length=True)
add('lshort', m.replace(b'this is case lshort.\r\n', b'this is\r\n'))           # body now shorter than l=
add('latin1', sign(msg('latin1', P, body='Gr\xfc\xdfe, caf\xe9 \xa0 \r\n'), k2048, b'k2048'))
add('empty_hdr', sign(msg('empty_hdr', P, extra='X-Empty:\r\nX-Spaces:    \r\n'), k2048, b'k2048',
                      heads=H + [b'x-empty', b'x-spaces']))
add('simplehdr', sign(msg('simplehdr', P, extra='X-Trail: value  \r\n'), k2048, b'k2048',
                      canon=(b'simple', b'relaxed'), heads=H + [b'x-trail']))
m = sign(msg('simplehdrws', P, extra='X-Trail: value\r\n'), k2048, b'k2048', canon=(b'simple', b'relaxed'),
         heads=H + [b'x-trail'])
add('simplehdrws', m.replace(b'X-Trail: value', b'X-Trail:  value'))            # simple header: broken
add('longhdr', sign(msg('longhdr', P, extra='X-Long: ' + ' '.join(['word'] * 300) + '\r\n'), k2048, b'k2048',
                    heads=H + [b'x-long']))
add('dotsel', sign(msg('dotsel', P), kdot, b'a.b'))
add('dotbody', sign(msg('dotbody', P, body='.leading dot\r\n..two\r\n.\r\n'), k2048, b'k2048'))

# --- DMARC
A = 'Alice <alice@example.org>'
add('dm_pass', sign(msg('dm_pass', A), k2048, b'k2048'))
add('dm_sub', sign(msg('dm_sub', 'A <a@deep.sub.example.org>'), k2048, b'k2048'))   # relaxed: org domain
add('dm_strict', sign(msg('dm_strict', 'S <s@mail.strict.example>'), kstrict, b'k', dom=b'strict.example'))
add('dm_strictok', sign(msg('dm_strictok', 'S <s@strict.example>'), kstrict, b'k', dom=b'strict.example'))
add('dm_psl', sign(msg('dm_psl', 'U <u@shop.example.co.uk>'), ku, b'k', dom=b'example.co.uk'))
add('dm_upper', sign(msg('dm_upper', 'U <u@UPPER.Example>'), kupper, b'k', dom=b'upper.example'))
add('dm_fail', msg('dm_fail', A))
add('dm_caps', msg('dm_caps', 'C <c@caps.example>'))
add('dm_vlast', msg('dm_vlast', 'C <c@vlast.example>'))
add('dm_vlower', msg('dm_vlower', 'C <c@vlower.example>'))
add('dm_pbogus', msg('dm_pbogus', 'C <c@pbogus.example>'))
add('dm_spdiff', msg('dm_spdiff', 'C <c@spdiff.example>'))
add('dm_spsub', msg('dm_spsub', 'C <c@x.spdiff.example>'))
add('dm_psfrom', msg('dm_psfrom', 'C <c@co.uk>'))
add('dm_none', msg('dm_none', 'N <n@none.example>'))
add('dm_quar', msg('dm_quar', 'Q <q@quar.example>'))
add('dm_sfail', msg('dm_sfail', 'S <s@sfail.example>'))
add('dm_two', msg('dm_two', 'T <t@two.example>'))
add('dm_norec', msg('dm_norec', 'T <t@norec.example>'))
add('dm_split', msg('dm_split', 'T <t@split.example>'))
add('dm_ruaonly', msg('dm_ruaonly', 'T <t@ruaonly.example>'))
add('dm_quoted', sign(msg('dm_quoted', '"Bank, Inc. <security@bank.example>" <alice@example.org>'),
                      k2048, b'k2048'))
add('dm_comment', sign(msg('dm_comment', 'alice@example.org (Alice, at bank.example)'), k2048, b'k2048'))
add('dm_encoded', sign(msg('dm_encoded', '=?utf-8?q?Alice_=40_bank?= <alice@example.org>'), k2048, b'k2048'))
add('dm_multi_same', sign(msg('dm_multi_same', 'a@example.org, b@example.org'), k2048, b'k2048'))
add('dm_multi_diff', msg('dm_multi_diff', 'a@example.org, b@other.example'))
add('dm_group', msg('dm_group', 'undisclosed-recipients:;'))
add('dm_nodomain', msg('dm_nodomain', 'alice'))
add('dm_twofrom', msg('dm_twofrom', A, extra='From: Other <o@other.example>\r\n'))
m = msg('dm_nofromhdr', A).replace(b'From: Alice <alice@example.org>\r\n', b'')
add('dm_nofromhdr', m)
add('dm_drop', msg('dm_drop', 'D <d@drop.example>'))
add('dm_spfrel', msg('dm_spfrel', A), sender='bounce@mail.example.org')            # relaxed SPF alignment
add('dm_spfstrict', msg('dm_spfstrict', 'S <s@strict.example>'), sender='bounce@mail.strict.example')
# an SMTPUTF8 From domain in U-labels: its policy is at the A-label name (RFC 8616 5)
idn = 'B <b@b\u00fccher.example>'
add('dm_idn', msg('dm_idn', 'x').replace(b'From: x', ('From: ' + idn).encode()))
m = msg('dm_idnsig', 'x').replace(b'From: x', ('From: ' + idn).encode())
add('dm_idnsig', sign(m, kidn, b'k', dom=b'xn--bcher-kva.example'))

# --- ARC: chains of 1..N hops sealed by dkimpy
for name in ('hop1', 'hop2', 'hop3', 'hop4', 'hop5'):
    rsa(name, dom='%s.example.net' % name)


def seal(m, hop, srv, cv=b'pass'):
    # what the sealer found: arc=<cv> from the second hop on (dkimpy takes cv= from it)
    arc = b'' if b'ARC-Seal:' not in m else b'; arc=' + cv
    m = (b'Authentication-Results: %s; dkim=pass header.d=example.org%s\r\n' % (srv, arc)) + m
    key = open(os.path.join(out, hop + '.pem'), 'rb').read()
    return b''.join(dkim.arc_sign(m, hop.encode(), b'%s.example.net' % hop.encode(), key, srv)) + m


def chain(tag, n):
    m = sign(msg(tag, P), k2048, b'k2048')
    for i in range(1, n + 1):
        m = seal(m, 'hop%d' % i, b'hop%d.example.net' % i)
    return m


for n in (1, 3, 5):
    add('arc%d' % n, chain('arc%d' % n, n))
# a gap: the set with i=2 taken out of a 3-hop chain
m = chain('arcgap', 3)
lines, keep, skip = m.split(b'\r\n'), [], False
for ln in lines:
    if ln[:1] not in (b' ', b'\t'):
        skip = ln.lower().startswith((b'arc-seal:', b'arc-message-signature:', b'arc-authentication-results:')) \
            and (b'i=2;' in ln.replace(b' ', b'') or b'i=2' == ln.split(b':', 1)[1].strip()[:3])
    if not skip:
        keep.append(ln)
add('arcgap', b'\r\n'.join(keep))
# the newest seal says cv=fail: dkimpy seals that when the chain it got had already failed
m = chain('arcfailed', 1)
m = m.replace(b'this is case arcfailed', b'this is case ARCFAILED')
add('arcfailed', seal(m, 'hop2', b'hop2.example.net', b'fail'))

json.dump(zone, open(os.path.join(out, 'zone.json'), 'w'), indent=1)
json.dump(cases, open(os.path.join(out, 'cases.json'), 'w'))
print(len(cases))
