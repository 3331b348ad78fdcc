#!/usr/bin/env python3
"""DKIM, ARC and DMARC through the real daemon, with real signers and a real DNS server:

- keys made by opendkim-genkey (RSA) and by openssl / PyNaCl (RSA, Ed25519); messages signed
  by the opendkim milter (behind a second mxgate), by opendkim-testmsg (rsa-sha1: refused per
  RFC 8301) and by dkimpy (python3-dkim: also l=, x=, Ed25519 and ARC sealing);
- the key, DMARC and policy records served by dnsmasq (--txt-record) on 127.0.0.1, which
  mxgate reaches through `dns.resolvers`; one zone is forwarded to a UDP socket that never
  answers (the DNS timeout case);
- a scripted backend records what is delivered, so the one Authentication-Results field,
  the verdicts (550 5.7.1 for DMARC p=reject, the quarantine for p=quarantine) and the logs
  are checked.

Cases: pass (dkimpy RSA relaxed, dkimpy RSA simple, opendkim), body tampered, header
tampered, expired (x=), revoked key (p=), missing key, DNS timeout, the key asked for
before the final dot (as soon as the header block is in), two signatures one bad,
l= with text appended, Ed25519, ARC chain valid / broken, DMARC p=reject passing by SPF
alignment only and failing, the subdomain policy (sp=), pct=0, the local override, a
trusted ARC sealer overriding a DMARC failure, a forged Authentication-Results removed.
Downstream: every Authentication-Results field written is parsed by the authres module
(RFC 8601 grammar, results as written), and dkimpy re-verifies the DKIM and ARC of what
mxgate delivered (its added fields must not break a later verifier).
"""
import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
SIGNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dkim_signer.py')

mt.need('dnsmasq', 'opendkim', 'opendkim-genkey', 'opendkim-testmsg', 'openssl')
if subprocess.run([PY, '-c', 'import dkim, nacl, authres'], capture_output=True).returncode != 0:
    mt.skip('python3-dkim / python3-nacl / python3-authres not installed')

T = mt.TMP


def run(args, data=None):
    r = subprocess.run(args, input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        mt.fail('%s failed: %s' % (args[0], r.stderr.decode(errors='replace')[:300]))
    return r.stdout


# ---------------------------------------------------------------- keys and records
records = {}   # name -> TXT text


rsa_key = mt.dkim_rsa_key


def ed_key(name):
    out = run([PY, '-c', 'import nacl.signing, nacl.encoding as e; k = nacl.signing.SigningKey.generate(); '
               'print(k.encode(e.Base64Encoder).decode()); print(k.verify_key.encode(e.Base64Encoder).decode())'])
    priv, pub = out.decode().split()
    path = os.path.join(T, name + '.private')
    open(path, 'w').write(priv + '\n')
    return path, 'v=DKIM1; k=ed25519; p=' + pub


rsa_path, records['py._domainkey.example.org'] = rsa_key('py')
ed_path, records['ed._domainkey.example.org'] = ed_key('ed')
list_path, records['lists._domainkey.lists.example.com'] = rsa_key('lists')
fwd_path, records['fwd._domainkey.fwd.example.net'] = rsa_key('fwd')
records['revoked._domainkey.example.org'] = 'v=DKIM1; k=rsa; p='
# two signatures, one bad: selector "other" publishes a different key
_, records['other._domainkey.example.org'] = rsa_key('other')

# opendkim-genkey writes NAME.private and NAME.txt in zone-file form: "( "v=DKIM1; ..." "p=..." )"
run(['opendkim-genkey', '-b', '2048', '-d', 'example.org', '-s', 'odk', '-D', T])
zone = open(os.path.join(T, 'odk.txt')).read()
records['odk._domainkey.example.org'] = ''.join(re.findall(r'"([^"]*)"', zone))
odk_path = os.path.join(T, 'odk.private')

records['_dmarc.example.org'] = 'v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.org'
records['_dmarc.strict.example'] = 'v=DMARC1; p=reject'
records['_dmarc.pct.example'] = 'v=DMARC1; p=reject; pct=0'
records['_dmarc.lists.example.com'] = 'v=DMARC1; p=none'

# ---------------------------------------------------------------- DNS: dnsmasq + a black hole
hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hole.bind(('127.0.0.1', 0))            # receives the forwarded queries, never answers
dns_port = mt.dnsmasq(records, local=['example.org', 'example.com', 'example.net', 'strict.example', 'pct.example',
                                      'other.example'],
                      args=['--server=/slow.example/127.0.0.1#%d' % hole.getsockname()[1]]).port

# ---------------------------------------------------------------- config errors
bad = os.path.join(T, 'bad.yaml')
open(bad, 'w').write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], dkim={'enabled': True, 'min_key_bits': 4096,
                                                                        'max_key_bits': 2048},
                                          dmarc={'enabled': True, 'action': 'bogus'},
                                          arc={'max_instances': 99})))
r = mt.run_mxgate('-t', '-c', bad)
out = r.stdout + r.stderr
mt.check(r.returncode == 1 and re.search(r'bad\.yaml:\d+:\d+: dkim\.min_key_bits: larger than max_key_bits', out)
         and 'dmarc.action: expected one of honor, log' in out and 'arc.max_instances' in out,
         'mxgate -t names every bad dkim/arc/dmarc key with FILE:LINE:COL (%s)' % out.strip()[:200])

# ---------------------------------------------------------------- mxgate
be = mt.Backend()
qdir = os.path.join(T, 'quarantine')
for sub in ('tmp', 'new', 'cur'):
    os.makedirs(os.path.join(qdir, sub))
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                dns={'resolvers': ['127.0.0.1:%d' % dns_port], 'timeout': '1s', 'tries': 1},
                spf={'enabled': True, 'timeout': '3s',
                     # every MAIL FROM domain used has a static record: no lookup leaves the machine
                     'records': ['spf.example.org TXT v=spf1 ip4:198.18.0.0/15 -all',
                                 'strict.example TXT v=spf1 ip4:198.18.0.0/15 -all',
                                 'other.example TXT v=spf1 ?all',
                                 'lists.example.com TXT v=spf1 ?all']},
                dkim={'enabled': True, 'timeout': '3s'},
                arc={'enabled': True},
                dmarc={'enabled': True, 'action': 'honor', 'override_domains': ['override.example.org'],
                       'trusted_arc_sealers': ['fwd.example.net']},
                quarantine='maildir:' + qdir)
mx = mt.Mxgate(cfg, name='mx-senderauth')


def base(tag, frm='Alice <alice@example.org>', extra=''):
    return ('From: %s\r\nTo: bob@example.test\r\nSubject: senderauth %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n%s'
            '\r\nHello Bob,\r\n\r\nthis is case %s.   With  spaces.\r\n' % (frm, tag, tag, extra, tag)).encode()


def sign(msg, key, sel, dom='example.org', *opts):
    return run([PY, SIGNER, 'sign', key, sel, dom] + list(opts), msg)


# opendkim itself signs too: the milter (Mode s, rsa-sha256) behind a second mxgate whose
# milter client hands it the message; what reaches that mxgate's backend is the signed mail.
odk_milter_port = mt.free_port()
odk_conf = os.path.join(T, 'opendkim.conf')
open(odk_conf, 'w').write('\n'.join([
    'Syslog no', 'Background no', 'Mode s', 'Domain example.org', 'Selector odk',
    'KeyFile %s' % odk_path, 'Socket inet:%d@127.0.0.1' % odk_milter_port,
    'SignatureAlgorithm rsa-sha256', 'Canonicalization relaxed/simple', 'InternalHosts 127.0.0.1',
    'PidFile %s/opendkim.pid' % T, 'RequireSafeKeys no', '']))
odk = mt.spawn([mt.tool('opendkim') or '/usr/sbin/opendkim', '-f', '-x', odk_conf], 'opendkim')
if not mt.wait_port(odk_milter_port, 20, odk):   # its port taken meanwhile: it exits, a clear failure
    mt.fail('opendkim did not start on %d (exit status %s):\n%s' % (odk_milter_port, odk.poll(),
                                                                   mt.log_of('opendkim')[-2000:]))
signed_be = mt.Backend()
signer_mx = mt.Mxgate(mt.config([signed_be.url], plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % odk_milter_port, 'on_error': 'tempfail',
     'timeout': '10s'}]), name='mx-signer')


def odk_milter_sign(msg, tag):
    code, text = mt.send_mail(signer_mx.port, 'alice@example.org', ['bob@example.test'], msg)
    got = [m for m in signed_be.messages if ('senderauth %s\r\n' % tag).encode() in m['data']]
    if code != 250 or not got:
        mt.fail('the opendkim signer did not deliver: %s %s' % (code, text))
    return got[-1]['data']


def odk_sign(msg):
    out = run(['opendkim-testmsg', '-C', '-d', 'example.org', '-k', odk_path, '-s', 'odk'], msg)
    return out.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')


def send(data, sender, client_ip):
    """One transaction from client_ip (a PROXY v1 header: libspf2 passes loopback clients
    unconditionally, so SPF needs a realistic address)."""
    c = mt.Client(mx.port, greet=False)
    try:
        c.send('PROXY TCP4 %s 127.0.0.1 40000 25\r\n' % client_ip)
        code, text = c.reply()
        if code != 220:
            return code, text
        c.ehlo('client.example')
        return mt.send_mail(mx.port, sender, ['bob@example.test'], data, client=c)
    finally:
        c.close()


def deliver(tag, data, sender='bounce@other.example', source='192.0.2.9'):
    code, text = send(data, sender, source)
    got = [m for m in be.messages if ('senderauth %s\r\n' % tag).encode() in m['data']]
    return code, text, (got[-1]['data'].decode('latin-1') if got else None)


def authres(msg):
    """The Authentication-Results fields of a delivered message, unfolded."""
    head = msg.split('\r\n\r\n', 1)[0].replace('\r\n ', ' ').replace('\r\n\t', ' ')
    return [line[len('Authentication-Results: '):] for line in head.split('\r\n')
            if line.lower().startswith('authentication-results:')]


delivered, all_ars = {}, []   # tag -> message as delivered; every A-R field of ours


def case(tag, data, want_code, want_ar=(), sender='bounce@other.example', source='192.0.2.9', what=''):
    code, text, msg = deliver(tag, data, sender, source)
    ok = code == want_code
    ars = authres(msg) if msg else []
    mine = [a for a in ars if a.startswith('mx.test;')]
    delivered[tag] = msg
    all_ars.extend(mine)
    if want_code == 250:
        ok = ok and msg is not None and len(mine) == 1
        for pat in want_ar:
            ok = ok and bool(mine) and re.search(pat, mine[0]) is not None
    mt.check(ok, '%s: %s -> %s %s | %s' % (tag, what, code, text[:60], mine[0] if mine else ars))
    return code, text, msg


# --- DKIM
m = base('pass')
case('pass', sign(m, rsa_path, 'py'), 250,
     [r'dkim=pass \(2048-bit rsa key\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=py header\.b=',
      r'dmarc=pass', r'arc=none', r'spf=neutral smtp\.mailfrom=other\.example'],
     what='dkimpy RSA relaxed/relaxed passes, DMARC passes by DKIM')
mt.check(mx.wait_log(r'event=senderauth .*from_domain=example\.org .*dkim=pass:example\.org .*dmarc=pass .*auth_domain=example\.org'),
         'one log line per message with every verdict and the authenticated domain')
case('simple', sign(base('simple'), rsa_path, 'py', 'example.org', '--canon', 'simple/simple'), 250,
     [r'dkim=pass .*header\.s=py'], what='dkimpy RSA simple/simple passes')
case('odk', odk_sign(base('odk', 'Carol <carol@other.example>')), 250,
     [r'dkim=permerror \(rsa-sha1 not accepted RFC 8301\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=odk'],
     what='opendkim-testmsg signs rsa-sha1: refused per RFC 8301')
signed = odk_milter_sign(base('odkm'), 'odkm')
mt.check(b'DKIM-Signature:' in signed and b'a=rsa-sha256' in signed, 'opendkim (milter) signed rsa-sha256')
case('odkm', signed, 250, [r'dkim=pass \(2048-bit rsa key\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=odk', r'dmarc=pass'],
     what='a signature made by the opendkim milter passes')
signed = odk_milter_sign(base('odkmt'), 'odkmt')
case('odkmt', signed.replace(b'this is case odkmt', b'this is case ODKMT'), 550,
     what='the opendkim-signed message with its body changed fails and is refused per DMARC')
case('odkkey', sign(base('odkkey'), odk_path, 'odk'), 250, [r'dkim=pass .*header\.s=odk'],
     what='a key made by opendkim-genkey, as published in its zone file, verifies')
s = sign(base('body'), rsa_path, 'py')
case('body', s.replace(b'this is case body', b'this is case BODY'), 550, what='body tampered: dkim=fail, DMARC p=reject')
s = sign(base('hdr'), rsa_path, 'py', 'example.org', '--headers', 'from,to,subject,date,message-id')
s = s.replace(b'To: bob@example.test', b'To: eve@example.test')
code, text, _ = case('hdr', s, 550, what='signed header tampered: refused per DMARC')
mt.check('5.7.1' in text and 'DMARC' in text, 'the refusal is 550 5.7.1 naming DMARC (%s)' % text[:80])
mt.check(mx.wait_log(r'event=senderauth .*dkim=fail:example\.org .*dmarc=fail policy=reject disposition=reject .*action=reject'),
         'the tampered header is logged as dkim=fail, dmarc=fail, reject')
# the rest use a From domain without DMARC policy so the DKIM result alone is visible
nopol = 'Carol <carol@other.example>'
case('expired', sign(base('expired', nopol), rsa_path, 'py', 'example.org', '--expire', '1600000000', '1600003600'),
     250, [r'dkim=permerror \(signature expired\)', r'dmarc=none'], what='x= in the past')
case('revoked', sign(base('revoked', nopol), rsa_path, 'revoked'), 250, [r'dkim=permerror \(key revoked\)'],
     what='a revoked key (p=)')
case('missing', sign(base('missing', nopol), rsa_path, 'nokey'), 250, [r'dkim=permerror \(no key\)'],
     what='no key record (NXDOMAIN)')
case('timeout', sign(base('timeout', nopol), rsa_path, 'py', 'slow.example'), 250,
     [r'dkim=temperror \(key lookup timed out\) header\.d=slow\.example'], what='the key lookup times out')


# The key lookup starts as soon as the header block has arrived, while the body is still
# on its way: the query for early._domainkey.slow.example reaches the black hole (through
# dnsmasq) before the client has sent its final dot.
def hole_wait_query(qname, timeout=20):
    """Reads the black hole's forwarded queries until one asks for qname; True if one did."""
    want = b''.join(bytes([len(p)]) + p.encode() for p in qname.split('.')) + b'\0'
    hole.settimeout(timeout)
    try:
        while True:
            pkt, _ = hole.recvfrom(2048)
            if want in pkt[12:].lower():
                return True
    except socket.timeout:
        return False
    finally:
        hole.settimeout(None)


early = sign(base('early', nopol), rsa_path, 'early', 'slow.example')
head, body = early.split(b'\r\n\r\n', 1)
c = mt.Client(mx.port, greet=False)
c.send('PROXY TCP4 192.0.2.9 127.0.0.1 40000 25\r\n')
steps = [c.reply()[0], c.ehlo('client.example')[0], c.cmd('MAIL FROM:<bounce@other.example>')[0],
         c.cmd('RCPT TO:<bob@example.test>')[0], c.cmd('DATA')[0]]
c.send(head + b'\r\n\r\n' + body[:10])
asked = hole_wait_query('early._domainkey.slow.example')
c.send(body[10:] + b'.\r\n')
code, text = c.reply()
c.close()
got = [m for m in be.messages if b'senderauth early\r\n' in m['data']]
ars = authres(got[-1]['data'].decode('latin-1')) if got else []
mt.check(steps == [220, 250, 250, 250, 354] and asked and code == 250 and
         any(re.search(r'dkim=temperror \(key lookup timed out\) header\.d=slow\.example header\.i=\S+ header\.a=\S+ header\.s=early', a) for a in ars),
         'the key lookup is asked for when the header block is in, before the final dot, and its '
         'answer (none: temperror) judges the message (%s, asked=%s, %s %s, %s)' % (steps, asked, code, text[:60], ars))

s = sign(base('two', nopol), rsa_path, 'py')
s = sign(s, rsa_path, 'other')   # signed with py's key, published key is another one
case('two', s, 250, [r'dkim=fail \(signature did not verify\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=other',
                     r'dkim=pass \(2048-bit rsa key\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=py'],
     what='two signatures, one bad: both reported')
s = sign(base('len', nopol), rsa_path, 'py', 'example.org', '--length', '--canon', 'relaxed/simple')
case('len', s + b'--\r\nA footer the list added.\r\n', 250, [r'dkim=pass'], what='l= with text appended to the body')
case('ed', sign(base('ed', nopol), ed_path, 'ed', 'example.org', '--alg', 'ed25519-sha256'), 250,
     [r'dkim=pass \(256-bit ed25519 key\) header\.d=example\.org header\.i=\S+ header\.a=\S+ header\.s=ed'], what='Ed25519-SHA256 (RFC 8463)')
case('unsigned', base('unsigned', nopol), 250, [r'dkim=none', r'dmarc=none'], what='an unsigned message')

# --- ARC: signed at the origin; a list checks it, changes subject and body, seals (i=1);
# a forwarder seals again (i=2). late=True: the list changes the message after sealing.
def arc_chain(tag, frm, tamper=None, late=False):
    def list_edit(m):
        m = m.replace(b'Subject: senderauth %s' % tag.encode(), b'Subject: [list] senderauth %s' % tag.encode())
        return m.replace(b'this is case', b'this is, the list says, case')
    m = sign(base(tag, frm), rsa_path, 'py')
    m = b'Authentication-Results: lists.example.com; dkim=pass header.d=example.org\r\n' + m
    if not late:
        m = list_edit(m)
    m = run([PY, SIGNER, 'arc', list_path, 'lists', 'lists.example.com', 'lists.example.com'], m)
    if late:
        m = list_edit(m)
    m = b'Authentication-Results: fwd.example.net; arc=pass\r\n' + m
    m = run([PY, SIGNER, 'arc', fwd_path, 'fwd', 'fwd.example.net', 'fwd.example.net'], m)
    return tamper(m) if tamper else m


def deliver_list(tag, data, want_code, want_ar, what):
    code, text = send(data, 'bounce@lists.example.com', '192.0.2.9')
    got = [m for m in be.messages if ('senderauth %s\r\n' % tag).encode() in m['data']]
    msg = got[-1]['data'].decode('latin-1') if got else None
    mine = [a for a in (authres(msg) if msg else []) if a.startswith('mx.test;')]
    delivered[tag] = msg
    all_ars.extend(mine)
    ok = code == want_code and (want_code != 250 or (len(mine) == 1 and all(re.search(p, mine[0]) for p in want_ar)))
    mt.check(ok, '%s: %s -> %s %s | %s' % (tag, what, code, text[:60], mine[0] if mine else ''))


deliver_list('arcok', arc_chain('arcok', nopol), 250,
             [r'arc=pass \(i=2, sealed by fwd\.example\.net\) header\.oldest-pass=0 smtp\.remote-ip=192\.0\.2\.9',
              r'dkim=fail'], 'a valid two-hop ARC chain passes (the origin signature broke on the way)')
deliver_list('arclate', arc_chain('arclate', nopol, late=True), 250, [r'arc=pass .*header\.oldest-pass=2'],
             'changed after the first seal: the chain holds, oldest-pass=2 (RFC 8617 5.2 step 6)')
deliver_list('arcbad', arc_chain('arcbad', nopol, lambda m: m.replace(b'i=1; lists.example.com; dkim=pass',
                                                                      b'i=1; lists.example.com; dkim=none')),
             250, [r'arc=fail \(ARC-Seal did not verify\)'], 'a broken ARC chain fails')
# DMARC p=reject from example.org broken by the list, but the last sealer is trusted
deliver_list('arctrust', arc_chain('arctrust', 'Alice <alice@example.org>'), 250,
             [r'arc=pass', r'dmarc=fail \(p=reject dis=none; trusted ARC sealer\) header\.from=example\.org'],
             'a DMARC failure under a trusted ARC sealer is delivered')

# --- DMARC
nosig = base('spfonly', 'Dave <dave@example.org>')
case('spfonly', nosig, 250, [r'spf=pass smtp\.mailfrom=spf\.example\.org', r'dkim=none',
                             r'dmarc=pass \(p=reject dis=none\) header\.from=example\.org'],
     sender='bounce@spf.example.org', source='198.18.1.7', what='p=reject passes on SPF alignment alone')
code, text, _ = case('spffail', base('spffail', 'Eve <eve@strict.example>'), 550,
                     sender='bounce@strict.example', what='p=reject, SPF fails, no DKIM: refused')
mt.check(text.startswith('550 5.7.1'), 'with 5.7.1 (%s)' % text[:60])
def quarantined(tag):
    for f in os.listdir(os.path.join(qdir, 'new')):
        if ('senderauth %s\r\n' % tag).encode() in open(os.path.join(qdir, 'new', f), 'rb').read():
            return True
    return False


code, text, msg = deliver('sub', base('sub', 'News <news@news.example.org>'))
mt.check(code == 250 and msg is None and mt.wait_for(lambda: quarantined('sub'), 5),
         'a subdomain without a record takes the org domain\'s sp=quarantine: quarantined (%s %s)' % (code, text[:60]))
mt.check(mx.wait_log(r'event=senderauth .*from_domain=news\.example\.org .*dmarc=fail policy=quarantine disposition=quarantine'),
         'logged with policy quarantine')
code, text, msg = deliver('pct', base('pct', 'P <p@pct.example>'))
mt.check(code == 250 and msg is None and mt.wait_for(lambda: quarantined('pct'), 5),
         'p=reject pct=0: one step milder, quarantined (%s %s)' % (code, text[:60]))
mt.check(mx.wait_log(r'event=senderauth .*from_domain=pct\.example .*policy=reject disposition=quarantine'),
         'pct=0 turns reject into quarantine in the log')
case('override', base('override', 'O <o@override.example.org>'), 250,
     [r'dmarc=fail \(p=quarantine dis=none; local override\)'], what='the local override list')

# --- a forged Authentication-Results claiming our authserv-id is removed
forged = sign(base('forged', nopol, extra='Authentication-Results: mx.test; dkim=pass header.d=bank.example\r\n'),
              rsa_path, 'py', 'example.org', '--headers', 'from,to,subject')
code, text, msg = deliver('forged', forged)
ars = authres(msg) if msg else []
mt.check(code == 250 and len(ars) == 1 and 'bank.example' not in ars[0] and 'dkim=pass' in ars[0],
         'a forged Authentication-Results claiming mx.test is dropped, ours stays (%s)' % ars)

# --- what mxgate wrote, read by real tools downstream
# every Authentication-Results field of ours parses with the authres module (RFC 8601
# grammar), names mx.test, and each method's result word is the one written
out = run([PY, SIGNER, 'authres', '-', '-', '-'], '\r\n'.join(all_ars).encode()).decode().splitlines()
parsed = [json.loads(line) if line.startswith('{') else {'error': line} for line in out]
bad = [(a, p) for a, p in zip(all_ars, parsed) if 'error' in p or p['id'] != 'mx.test' or
       [m for m, _, _ in p['results']] != re.findall(r'(?:^|; )(spf|dkim|arc|dmarc)=', a) or
       [r for _, r, _ in p['results']] != re.findall(r'(?:^|; )(?:spf|dkim|arc|dmarc)=(\w+)', a)]
mt.check(len(parsed) == len(all_ars) >= 15 and not bad,
         'the authres parser reads all %d Authentication-Results fields as written (%s)' %
         (len(all_ars), bad[:1]))
dkp = [p for p in parsed if 'results' in p and any(m == 'dkim' and r == 'pass' for m, r, _ in p['results'])]
mt.check(dkp and all(any(m == 'dkim' and {'header.d=example.org'} <= set(props) and
                         any(x.startswith('header.b=') for x in props) for m, _, props in p['results'])
                     for p in dkp), 'a dkim=pass result carries header.d and header.b properties')
# a verifier after mxgate (the backend's own, a mailbox's) still verifies what mxgate passed on
recfile = os.path.join(T, 'records.json')
open(recfile, 'w').write(json.dumps(records))
for tag, want in (('pass', 'dkim=pass'), ('simple', 'dkim=pass'), ('ed', 'dkim=pass'), ('arcok', 'arc=pass')):
    msg = delivered.get(tag)
    got = run([PY, SIGNER, 'verify', recfile, '-', '-'], msg.encode('latin-1')).decode().strip() if msg else 'not delivered'
    mt.check(want in got, 'dkimpy downstream: the %s message as mxgate delivered it: %s (%s)' % (tag, want, got))

mx.stop()

# --- rate limits keyed on the authenticated domain: signed mail from example.org counts,
# mail that only claims example.org in From (no aligned DKIM/SPF) never does
cfg2 = dict(cfg)
cfg2['dmarc'] = dict(cfg['dmarc'], action='log')
cfg2['ratelimit'] = {'rules': [{'key': 'auth_domain', 'count': 'messages', 'limit': '2/1h',
                                'action': 'tempfail'}]}
mx = mt.Mxgate(cfg2, name='mx-senderauth-rl')
codes = [deliver('rl%d' % i, sign(base('rl%d' % i), rsa_path, 'py'))[0] for i in range(3)]
mt.check(codes == [250, 250, 451], 'auth_domain limit 2/1h: two signed messages pass, the third is tempfailed (%s)' % codes)
mt.check(mx.wait_log(r'event=ratelimit key=auth_domain value=example\.org count=messages'), 'the limit logs key=auth_domain')
codes = [deliver('rlu%d' % i, base('rlu%d' % i))[0] for i in range(3)]
mt.check(codes == [250, 250, 250], 'unsigned mail claiming the same From is not counted against it (%s)' % codes)
mx.stop()
mt.finish()
