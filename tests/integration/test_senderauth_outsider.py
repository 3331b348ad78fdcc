#!/usr/bin/env python3
"""DKIM, ARC, DMARC and Authentication-Results black-box, as an operator coming from
OpenDKIM/OpenDMARC/OpenARC would test them, with outside tools as the reference:

- senderauth_cases.py (dkimpy, under /usr/bin/python3) makes the keys, the DNS records and
  ~80 messages, and records dkimpy's own verdict on each signature and ARC chain;
- dns_peer.py (dnspython) serves the records on 127.0.0.1 (split TXT strings, two TXT
  records at one name, SERVFAIL, REFUSED, a 4096-bit key too big for 512-byte UDP
  without EDNS0, in one answer with it), named in `dns.resolvers`;
- every message goes through mxgate; its one Authentication-Results field must agree with
  dkimpy signature by signature (pass vs. not pass), except where RFC 6376 asks more than
  dkimpy checks (a t=s key with i= in a subdomain, a key with h=sha1 only: permerror);
- the reasons, DMARC results and what the client sees (550 5.7.1, 451 4.4.3) are checked
  per case; every field of ours is parsed back by python3-authres; dkimverify and
  arcverify (dkimpy's command-line tools) re-verify what mxgate delivered, with keys served
  by the same DNS server through a private resolv.conf-free lookup (dnsfunc);
- forged Authentication-Results fields carrying our authserv-id in every form RFC 8601
  allows (case, comments, version, folding, no space, the absolute name with its trailing
  dot) are removed; look-alikes stay.

Corners: canonicalisation (trailing whitespace, whitespace runs, empty body, blank lines at
the end, lines over 998 octets, header case, folded fields, a lowercase field name, 8-bit
text, leading dots), h= with absent fields (then added), oversigning (then a second From),
duplicate fields (the bottom one is signed), l= (text appended; body shorter than l=),
1024/2048/4096/512-bit RSA, Ed25519 and dual signing, key records with t=s, t=y, h=, k=,
no v=, v=DKIM2, whitespace, revoked; DMARC strict and relaxed alignment, PSL organisational
domains (co.uk), SPF alignment relaxed and strict (aspf=s), sp=, p= case, v= not first, p= missing with rua=, several records, SERVFAIL, no answer at all,
tricky From fields (quoted display names holding an address, comments, encoded words,
groups, several addresses, several From fields, none, a UTF-8 domain in U-labels); ARC chains of 1, 3 and 5 hops sealed
by dkimpy, an instance gap, a newest seal with cv=fail.
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = mt.need_sys_python('dkim', 'nacl', 'authres', 'dns.message')
mt.need('openssl')

# ~30 RSA keys (one of 4096 bits) and ~90 signed messages: 12 s on an idle machine, 285 s seen
# at load 25. The bound is a hang guard, not a speed check (CMakeLists.txt gives this test
# a longer ctest TIMEOUT to match).
r = subprocess.run([PY, os.path.join(HERE, 'senderauth_cases.py'), mt.TMP], capture_output=True,
                   timeout=1200)
if r.returncode != 0:
    mt.fail('senderauth_cases.py failed: %s' % r.stderr.decode(errors='replace')[-500:])
zone = json.load(open(os.path.join(mt.TMP, 'zone.json')))
cases = json.load(open(os.path.join(mt.TMP, 'cases.json')))
dnsp = mt.dns_peer(zone)

be = mt.Backend()
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '2s', 'tries': 1},
                spf={'enabled': True, 'timeout': '4s'},
                dkim={'enabled': True, 'timeout': '4s'}, arc={'enabled': True},
                dmarc={'enabled': True, 'action': 'honor', 'on_temperror': 'tempfail'})
mx = mt.Mxgate(cfg, name='mx-outsider')

# tag -> (reply code, [regexes the A-R field must match]); A-R checks apply to 250 only.
# "dkimpy" agreement is checked for every case besides these regexes.
PASS = r'dkim=pass \(2048-bit rsa key\) header\.d=example\.org'
NODM = r'dmarc=none \(no DMARC record\) header\.from=other\.example'
want = {
    'relaxws': (250, [PASS, NODM]), 'simplews': (250, [PASS]), 'emptyrel': (250, [PASS]),
    'emptysim': (250, [PASS]), 'blanksim': (250, [PASS]), 'trailadd': (250, [PASS]),
    'wsadd': (250, [PASS]), 'wssim': (250, [r'dkim=fail \(body hash did not verify\)']),
    'longline': (250, [PASS]), 'hdrcase': (250, [PASS]), 'lowersig': (250, [PASS]),
    'absent': (250, [PASS]), 'absentadd': (250, [r'dkim=fail \(signature did not verify\)']),
    'oversign': (250, [PASS]),
    'oversignadd': (250, [r'dkim=fail \(signature did not verify\)', r'dmarc=none \(no DMARC record; several From fields\)']),
    'dupsub': (250, [PASS]), 'dupsubtop': (250, [r'dkim=fail \(signature did not verify\)']),
    'lappend': (250, [PASS]), 'lempty': (250, [PASS]),
    'dupper': (250, [PASS, r'dmarc=pass \(p=reject dis=none\) header\.from=example\.org']),
    'lshort': (250, [r'dkim=fail']), 'latin1': (250, [PASS]), 'empty_hdr': (250, [PASS]),
    'simplehdr': (250, [PASS]), 'simplehdrws': (250, [r'dkim=fail \(signature did not verify\)']),
    'longhdr': (250, [PASS]), 'dotsel': (250, [PASS + r' header\.i=\S+ header\.a=\S+ header\.s=a\.b']), 'dotbody': (250, [PASS]),
    'k1024': (250, [r'dkim=pass \(1024-bit rsa key\)']), 'k4096': (250, [r'dkim=pass \(4096-bit rsa key\)']),
    'k512': (250, [r'dkim=permerror \(key too small\)']),
    'ed': (250, [r'dkim=pass \(256-bit ed25519 key\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=ked']),
    'dual': (250, [r'dkim=pass \(256-bit ed25519 key\).*; dkim=pass \(2048-bit rsa key\)']),
    'tsok': (250, [r'dkim=pass']), 'tsnoi': (250, [r'dkim=pass']),
    'tssub': (250, [r'dkim=permerror \(key t=s: i= must be d=\)']),
    # t=y: verified but no credit: unsigned as far as DMARC p=reject goes (RFC 6376 3.6.1)
    'ty': (550, []),
    'ksha1': (250, [r'dkim=permerror \(key does not allow sha256\)']), 'kh256': (250, [r'dkim=pass']),
    'kspace': (250, [r'dkim=pass']), 'knov': (250, [r'dkim=pass']),
    'kedtype': (250, [r'dkim=permerror']), 'kv2': (250, [r'dkim=permerror \(key record version\)']),
    'twice': (250, [r'dkim=pass']),   # RFC 6376 3.6.2.2: a verifier may pick either record
    'sfail': (250, [r'dkim=temperror \(key lookup']), 'refused': (250, [r'dkim=temperror \(key lookup']),
    'isub': (250, [r'dkim=pass']),
    'dm_pass': (250, [r'dmarc=pass \(p=reject dis=none\) header\.from=example\.org']),
    'dm_sub': (250, [r'dmarc=pass .*header\.from=deep\.sub\.example\.org']),
    'dm_strict': (550, []), 'dm_strictok': (250, [r'dmarc=pass']),
    'dm_psl': (250, [r'dmarc=pass \(p=reject dis=none\) header\.from=shop\.example\.co\.uk']),
    'dm_upper': (250, [r'dmarc=pass']),
    'dm_fail': (550, []), 'dm_caps': (550, []), 'dm_spsub': (550, []),
    'dm_none': (250, [r'dkim=none', r'dmarc=fail \(p=none dis=none\) header\.from=none\.example']),
    'dm_quar': (250, [r'dmarc=fail \(p=quarantine dis=quarantine\)']),   # no quarantine backend: score only
    'dm_sfail': (451, []),
    'dm_two': (250, [r'dmarc=none \(several DMARC records\)']),
    'dm_norec': (250, [r'dmarc=none']), 'dm_vlast': (250, [r'dmarc=none']), 'dm_vlower': (250, [r'dmarc=none']),
    'dm_pbogus': (250, [r'dmarc=none']), 'dm_split': (550, []),
    'dm_ruaonly': (250, [r'dmarc=fail \(p=none dis=none\)']),
    'dm_spdiff': (250, [r'dmarc=fail \(p=none dis=none\)']),
    'dm_psfrom': (250, [r'dmarc=none .*header\.from=co\.uk']),
    'dm_quoted': (250, [r'dmarc=pass .*header\.from=example\.org']),
    'dm_comment': (250, [r'dmarc=pass .*header\.from=example\.org']),
    'dm_encoded': (250, [r'dmarc=pass .*header\.from=example\.org']),
    'dm_multi_same': (250, [r'dmarc=pass .*header\.from=example\.org']),
    'dm_multi_diff': (550, []),   # RFC 7489 6.6.1: each domain checked, example.org's p=reject fails
    'dm_group': (250, [r'dmarc=permerror \(no usable From\)']),
    'dm_nodomain': (250, [r'dmarc=permerror \(no usable From\)']),
    'dm_twofrom': (550, []),      # the same across two From fields
    'dm_nofromhdr': (250, [r'dmarc=permerror \(no usable From\)']),
    'dm_idn': (550, []),
    'dm_drop': (451, []),   # the policy lookup is never answered: temperror, on_temperror: tempfail
    'dm_spfrel': (250, [r'spf=pass smtp\.mailfrom=mail\.example\.org', r'dkim=none',
                        r'dmarc=pass \(p=reject dis=none\) header\.from=example\.org']),
    'dm_spfstrict': (550, []),   # aspf=s: mail.strict.example is not strict.example
    'dm_idnsig': (250, [r'dkim=pass .*header\.d=xn--bcher-kva\.example',
                        r'dmarc=pass \(p=reject dis=none\) header\.from=xn--bcher-kva\.example']),
    'arc1': (250, [r'arc=pass \(i=1, sealed by hop1\.example\.net\) header\.oldest-pass=0 smtp\.remote-ip=198\.18\.1\.7']),
    'arc3': (250, [r'arc=pass \(i=3, sealed by hop3\.example\.net\) header\.oldest-pass=0']),
    'arc5': (250, [r'arc=pass \(i=5, sealed by hop5\.example\.net\) header\.oldest-pass=0']),
    'arcgap': (250, [r'arc=fail \(incomplete ARC sets\)']),
    'arcfailed': (250, [r'arc=fail \(newest seal has cv=fail\)']),
}
# where RFC 6376 asks more than dkimpy checks: mxgate is stricter (or free to differ)
STRICTER = {'tssub', 'ksha1', 'twice'}


def ar_of(data):
    head = data.split('\r\n\r\n', 1)[0].replace('\r\n ', ' ').replace('\r\n\t', ' ')
    return [h.split(':', 1)[1].strip() for h in head.split('\r\n')
            if h.lower().startswith('authentication-results:')]


def send(tag, data, client='198.18.1.7', sender='bounce@other.example'):
    c = mt.Client(mx.port, greet=False)
    try:
        c.send('PROXY TCP4 %s 127.0.0.1 40000 25\r\n' % client)
        if c.reply()[0] != 220:
            return None, 'no greeting', None
        c.ehlo('client.example')
        code, text = mt.send_mail(mx.port, sender, ['bob@example.test'], data, client=c)
    finally:
        c.close()
    got = [m for m in be.messages if ('outsider %s\r\n' % tag).encode() in m['data']]
    return code, text, (got[-1]['data'].decode('latin-1') if got else None)


mine_all, delivered = [], {}
mt.check(set(want) == {c['tag'] for c in cases},
         'every case has an expectation (%s)' % sorted(set(want) ^ {c['tag'] for c in cases}))
for c in cases:
    tag = c['tag']
    code, text, msg = send(tag, c['msg'].encode('latin-1'), sender=c.get('sender', 'bounce@other.example'))
    wcode, pats = want.get(tag, (250, []))
    mine = [a for a in ar_of(msg) if a.startswith('mx.test;')] if msg else []
    ok = code == wcode
    if wcode == 250:
        ok = ok and len(mine) == 1 and all(re.search(p, mine[0]) for p in pats)
    elif code == 550:
        ok = ok and text.startswith('550 5.7.1') and 'DMARC' in text and msg is None
    elif code == 451:
        ok = ok and text.startswith('451 4.4.3') and msg is None
    mt.check(ok, '%s -> %s %s | %s' % (tag, code, text[:70] if code != 250 else '', mine[0] if mine else ''))
    if mine:
        mine_all.append(mine[0])
        delivered[tag] = msg
        got = ['pass' if r == 'pass' else 'fail' for r in re.findall(r'dkim=(\w+)', mine[0]) if r != 'none']
        # mxgate lists signatures in header order, as dkimpy's idx does
        mt.check(tag in STRICTER or got == c['dkimpy'],
                 '%s: dkim verdicts agree with dkimpy (mxgate %s, dkimpy %s)' % (tag, got, c['dkimpy']))
        arc = re.search(r'arc=(\w+)', mine[0])
        mt.check(arc is not None and arc.group(1) == c['arc'],
                 '%s: arc verdict agrees with dkimpy (mxgate %s, dkimpy %s)' % (tag, arc and arc.group(1), c['arc']))

mt.check(mt.wait_log_of(dnsp.name, r'query k4096\._domainkey\.example\.org TXT edns=1232', 5) and
         not re.search(r'query k4096\._domainkey\.example\.org TXT tcp', mt.log_of(dnsp.name)),
         'the 4096-bit key record came in one UDP answer (EDNS0, 1232 octets), no TCP retry')

# --- python3-authres reads every field of ours as written
r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'authres', '-', '-', '-'],
                   input='\r\n'.join(mine_all).encode(), capture_output=True, timeout=60)
parsed = [json.loads(x) if x.startswith('{') else {'error': x} for x in r.stdout.decode().splitlines()]
bad = [(a, p) for a, p in zip(mine_all, parsed) if 'error' in p or p['id'] != 'mx.test' or
       [(m, res) for m, res, _ in p['results']] != re.findall(r'(?:^|; )(spf|dkim|arc|dmarc)=(\w+)', a)]
mt.check(len(parsed) == len(mine_all) > 60 and not bad,
         'python3-authres parses all %d fields as written (%s)' % (len(mine_all), bad[:1]))

# --- dkimpy's command-line verifiers downstream, keys from the same DNS server: what
# mxgate delivered still verifies (its Received and A-R fields break nothing)
verify = r'''
import sys, dkim, dns.resolver
res = dns.resolver.Resolver(configure=False)
res.nameservers = ["127.0.0.1"]; res.port = int(sys.argv[1])
def txt(name, timeout=5):
    try:
        a = res.resolve(name.decode().rstrip("."), "TXT", tcp=True)
    except Exception:
        return b""
    return b"".join(b"".join(r.strings) for r in a)
m = sys.stdin.buffer.read()
print("dkim=%s" % ("pass" if dkim.verify(m, dnsfunc=txt) else "fail"),
      "arc=%s" % dkim.arc_verify(m, dnsfunc=txt)[0].decode())
'''
for tag, w in (('relaxws', 'dkim=pass'), ('emptysim', 'dkim=pass'), ('k4096', 'dkim=pass'),
               ('ed', 'dkim=pass'), ('lappend', 'dkim=pass'), ('arc3', 'arc=pass'), ('arc5', 'arc=pass')):
    msg = delivered.get(tag)
    out = subprocess.run([PY, '-c', verify, str(dnsp.port)], input=msg.encode('latin-1') if msg else b'',
                         capture_output=True, timeout=60).stdout.decode().strip() if msg else 'not delivered'
    mt.check(w in out, 'dkimpy downstream on %s as mxgate delivered it: %s (%s)' % (tag, w, out))

# --- forged Authentication-Results with our authserv-id, in every form RFC 8601 allows
forged = ['mx.test; dkim=pass header.d=f1.example', 'MX.TEST; dkim=pass header.d=f2.example',
          '(comment) mx.test; dkim=pass header.d=f3.example', 'mx.test 1; dkim=pass header.d=f4.example',
          'mx.test/1; dkim=pass header.d=f5.example', 'mx.test;dkim=pass header.d=f6.example',
          '\r\n mx.test;\r\n\tdkim=pass header.d=f7.example', 'mx.test (c) ; dkim=pass header.d=f8.example',
          '"mx.test"; dkim=pass header.d=f9.example', 'mx.test; none', 'mx.test(c); dkim=pass header.d=f11.example',
          'mx.test (x) 1; dkim=pass header.d=f12.example', 'mx.test.; dkim=pass header.d=f13.example']
kept = ['mx.test.evil; dkim=pass header.d=k1.example', 'evil-mx.test; dkim=pass header.d=k2.example',
        'other.example; dkim=pass header.d=k3.example']
for i, f in enumerate(forged + kept):
    tag = 'forged%d' % i
    name = 'authentication-results:' if i % 3 == 0 else 'Authentication-Results: '
    data = ('From: c@other.example\r\nTo: b@example.test\r\nSubject: outsider %s\r\n%s%s\r\n\r\nbody\r\n'
            % (tag, name, f)).encode()
    code, text, msg = send(tag, data)
    ars = ar_of(msg) if msg else []
    if i < len(forged):
        ok = code == 250 and len(ars) == 1 and ars[0].startswith('mx.test; ') and 'header.d=f' not in ars[0]
        what = 'removed'
    else:
        ok = code == 250 and len(ars) == 2 and any(f in a for a in ars)
        what = 'kept (not our authserv-id)'
    mt.check(ok, 'a client\'s A-R field %r: %s (%s)' % (f.strip()[:40], what, ars))

mx.stop()
mt.finish()
