#!/usr/bin/env python3
"""A hostile or broken DNS against the parts of mxgate that resolve, as an attacker who
controls the answers for the client's address and the sender's domain (or an operator whose
resolver misbehaves) would drive it. The answers come from dns_peer.py (dnspython) on
127.0.0.1, named in `dns.resolvers`; a scripted backend records what is delivered.

- rdns (XCLIENT NAME / REVERSE_NAME, the Received: field): PTR names holding a space, CR LF,
  '<', '[', non-ASCII octets are no names (Postfix: "unknown", a permanent status), never a
  "try again"; a good PTR name next to a malformed one is still found and confirmed; a
  255-octet name, twenty PTR names, a PTR whose A record does not confirm, a CNAME loop,
  a wrong owner name, the wrong type, SERVFAIL / REFUSED / no answer / a TCP server that
  stalls after a truncated answer: each ends within dns.timeout with the status Postfix
  would give; nothing hostile reaches the backend; 300 sessions from one client whose PTR
  answer takes a second cost one query per worker, not one per session (queries in flight
  for the same name are coalesced), and each session gets the name;
- SPF: a truncated answer whose TCP server accepts and never answers (or announces 65535
  octets and sends 12): temperror within dns.timeout, the pool thread comes back (glibc's
  res_nquery waited for ever there, and mxgate could not stop); a macro expanding to a
  label over 63 octets is a name that cannot exist (RFC 7208 7.3, 4.3), not a temperror;
- DKIM: a key record over 1024 octets (a 2048-bit key with an n= note, in 255-octet
  strings) is read whole;
- DMARC: a forged signature of the From domain whose key name cannot be asked (a selector
  label of 64 octets, a name over 253 characters) has no key (permerror, RFC 6376 6.1.2):
  p=reject refuses the message; it was a temperror, which let the forgery through.
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
SIGNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dkim_signer.py')
if subprocess.run([PY, '-c', 'import dns.message, dkim'], capture_output=True).returncode != 0:
    mt.skip('python3-dnspython / python3-dkim not installed')
mt.need('openssl')

L63 = 'a' * 63
LONG = '.'.join([L63, L63, L63, 'b' * 61])          # 253 characters, 255 octets on the wire
key_path, key_rec = mt.dkim_rsa_key('hostile', 2048)
# RFC 6376 3.6.1: n= is a note for humans; the record is then > 1024 octets
key_rec = key_rec.replace('k=rsa; ', 'k=rsa; n=' + 'x' * 700 + '; ')
key_parts = [key_rec[i:i + 255] for i in range(0, len(key_rec), 255)]

zone = {
    # rdns: 198.18.2.N
    '1.2.18.198.in-addr.arpa': [{'ptr': 'sp\\032ace.example'}],
    '2.2.18.198.in-addr.arpa': [{'ptr': 'crlf\\013\\010x.example'}],
    '3.2.18.198.in-addr.arpa': [{'ptr': '\\<x\\>.example'}],
    '4.2.18.198.in-addr.arpa': [{'ptr': '\\[x\\].example'}],
    '5.2.18.198.in-addr.arpa': [{'ptr': LONG}],
    LONG: [{'a': '198.18.2.5'}],
    '6.2.18.198.in-addr.arpa': [{'ptr': 'h\\195\\169.example'}],
    '7.2.18.198.in-addr.arpa': [{'ptr': 'n%d.many.example' % i} for i in range(20)],
    '8.2.18.198.in-addr.arpa': [{'ptr': 'liar.example'}],
    'liar.example': [{'a': '192.0.2.1'}],
    '9.2.18.198.in-addr.arpa': 'servfail',
    '10.2.18.198.in-addr.arpa': 'drop',
    '11.2.18.198.in-addr.arpa': 'tcp_stall',
    '12.2.18.198.in-addr.arpa': 'refused',
    '13.2.18.198.in-addr.arpa': [{'cname': 'loop.13.example'}],
    'loop.13.example': [{'cname': '13.2.18.198.in-addr.arpa'}],
    '14.2.18.198.in-addr.arpa': [{'ptr': 'good.example'}, {'owner': 'other.example'}],
    '15.2.18.198.in-addr.arpa': [{'!a': '198.18.2.15'}],
    '16.2.18.198.in-addr.arpa': [{'ptr': 'sp\\032ace.example'}, {'ptr': 'good.example'}],
    '17.2.18.198.in-addr.arpa': [{'delay': 1}, {'ptr': 'slow.example'}],
    'slow.example': [{'a': '198.18.2.17'}],
    'good.example': [{'a': '198.18.2.16'}],
    # SPF
    'ok.example': [{'txt': ['v=spf1 ip4:198.18.1.7 -all']}],
    'stall.example': 'tcp_stall',
    'huge.example': 'tcp_huge',
    'macro.example': [{'txt': ['v=spf1 exists:%{l}.%{d} ip4:198.18.1.7 -all']}],
    # DKIM
    'big._domainkey.example.org': [{'txt': key_parts}],
    # DMARC
    '_dmarc.victim.example': [{'txt': ['v=DMARC1; p=reject']}],
}
peer = mt.dns_peer(zone)
be = mt.Backend(xclient=True)


def daemon(name, **kw):
    cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                    trusted_proxies=['127.0.0.1/32'],
                    dns={'resolvers': ['127.0.0.1:%d' % peer.port], 'timeout': '2s', 'tries': 1})
    cfg['backends']['client_identity'] = 'xclient'
    cfg['rdns'] = {'lookup': 'always'}
    cfg.update(kw)
    return mt.Mxgate(cfg, name=name)


def send(mx, tag, client, sender='a@example.test', data=None):
    """One message from client (PROXY v1): (code, text, seconds, delivered message or None)."""
    t0 = time.monotonic()
    c = mt.Client(mx.port, greet=False)
    try:
        c.send('PROXY TCP4 %s 127.0.0.1 40000 25\r\n' % client)
        if c.reply()[0] != 220:
            return None, 'no greeting', 0, None
        c.ehlo('client.example')
        body = data or ('From: x@example.test\r\nTo: b@example.test\r\nSubject: hostile %s\r\n\r\nbody\r\n' % tag).encode()
        code, text = mt.send_mail(mx.port, sender, ['b@example.test'], body, client=c)
    finally:
        c.close()
    got = [m for m in be.messages if ('Subject: hostile %s\r\n' % tag).encode() in m['data']]
    return code, text, time.monotonic() - t0, got[-1] if got else None


def ar_of(m):
    """Our Authentication-Results field of a delivered message, unfolded ('' if none)."""
    head = m['data'].split(b'\r\n\r\n', 1)[0].replace(b'\r\n\t', b' ').replace(b'\r\n ', b' ')
    for line in head.split(b'\r\n'):
        if line.startswith(b'Authentication-Results: mx.test;'):
            return line.decode('latin-1')
    return ''


def received(m):
    head = m['data'].split(b'\r\n\r\n', 1)[0]
    return head.split(b'\r\nFrom:', 1)[0]


# ---------------------------------------------------------------- rdns
mx = daemon('mx-hostile-rdns')
rows = [
    (1, '[UNAVAILABLE]', 'a PTR name with a space'),
    (2, '[UNAVAILABLE]', 'a PTR name with CR LF'),
    (3, '[UNAVAILABLE]', 'a PTR name with < >'),
    (4, '[UNAVAILABLE]', 'a PTR name with [ ]'),
    (5, LONG, 'a 253-character PTR name, confirmed'),
    (6, '[UNAVAILABLE]', 'a PTR name with non-ASCII octets'),
    (7, '[UNAVAILABLE]', 'twenty PTR names, none confirmed'),
    (8, '[UNAVAILABLE]', 'a PTR whose A record does not confirm'),
    (9, '[TEMPUNAVAIL]', 'SERVFAIL'),
    (10, '[TEMPUNAVAIL]', 'no answer at all (dns.timeout)'),
    (11, '[TEMPUNAVAIL]', 'truncated, then a TCP server that never answers'),
    (12, '[TEMPUNAVAIL]', 'REFUSED'),
    (13, '[UNAVAILABLE]', 'a CNAME loop'),
    (14, '[UNAVAILABLE]', 'a PTR under another owner name'),
    (15, '[UNAVAILABLE]', 'an A record answered to a PTR query'),
    (16, 'good.example', 'a malformed PTR name next to a good, confirmed one'),
]
for n, want, what in rows:
    ip = '198.18.2.%d' % n
    code, text, secs, m = send(mx, 'rdns%d' % n, ip)
    name = m['xclient'].get('NAME') if m else None
    rec = received(m) if m else b''
    mt.check(code == 250 and name == want,
             'rdns %s: XCLIENT NAME=%s (got %s %s, %.1fs)' % (what, want, code, name, secs))
    bad = [c for c in (b' ace', b'crlf\r', b'\r\nx.', b'<x>', b'[x]', b'\xc3\xa9', b'\\') if c in rec]
    mt.check(not bad, 'rdns %s: nothing hostile in the Received: field (%r)' % (what, bad))
mt.check(mx.wait_log(r'event=dns_malformed_name type=ptr skipped=1 kept=1', 5),
         'the log says a malformed PTR name was skipped')
mx.stop()

# a crowd waiting on one slow name: the PTR is asked once per worker (two), not per session
mx = daemon('mx-hostile-crowd', limits={'max_connections_per_ip': 1000})
socks = []
for i in range(300):
    s = socket.create_connection(('127.0.0.1', mx.port), timeout=mt.slack(10))
    s.sendall(b'PROXY TCP4 198.18.2.17 127.0.0.1 40000 25\r\n')
    socks.append(s)
greeted = sum(1 for s in socks if s.recv(100).startswith(b'220'))
for s in socks:
    s.close()
code, text, secs, m = send(mx, 'crowd', '198.18.2.17')
asked = open(os.path.join(mt.TMP, peer.name + '.log')).read().count('query 17.2.18.198.in-addr.arpa PTR')
mt.check(greeted == 300 and m is not None and m['xclient'].get('NAME') == 'slow.example',
         'a crowd on a slow PTR: all greeted, the name found (%d, %s)' % (greeted, m['xclient'] if m else text))
mt.check(1 <= asked <= 4, '301 sessions waiting on one slow PTR: %d queries sent (one per worker)' % asked)
mx.stop()

# ---------------------------------------------------------------- SPF
mx = daemon('mx-hostile-spf', spf={'enabled': True, 'timeout': '5s'})


code, text, secs, m = send(mx, 'spfok', '198.18.1.7', 'a@ok.example')
mt.check(m is not None and 'spf=pass' in ar_of(m), 'SPF pass through dns_peer (%s)' % (ar_of(m) if m else text))
# more stalled TCP answers than the libuv pool has threads (4): each must come back
res = []


def stalled(i, dom):
    res.append(send(mx, 'stall%d' % i, '198.18.1.7', 'a@%s' % dom))


ths = [threading.Thread(target=stalled, args=(i, 'stall.example' if i % 2 else 'huge.example')) for i in range(8)]
for t in ths:
    t.start()
for t in ths:
    t.join()
for code, text, secs, m in res:
    mt.check(code == 250 and m is not None and 'spf=temperror' in ar_of(m),
             'SPF: truncated, then a TCP server that stalls: temperror (%s %s, %.1fs)' % (code, ar_of(m) if m else text, secs))
# the pool is free again: a plain check answers at once, not after spf.timeout
code, text, secs, m = send(mx, 'spfok2', '198.18.1.7', 'a@ok.example')
mt.check(m is not None and 'spf=pass' in ar_of(m),
         'SPF after the stalls: the pool threads are back, pass (%s, %.1fs)' % (ar_of(m) if m else text, secs))
code, text, secs, m = send(mx, 'macro', '198.18.1.7', 'a' * 64 + '@macro.example')
mt.check(m is not None and 'spf=pass' in ar_of(m),
         'SPF: %%{l} expanding to a 64-octet label is no name, the next term matches (%s)' % (ar_of(m) if m else text))
# stops at once: no thread is left blocked in a TCP read
mx.stop()

# ---------------------------------------------------------------- DKIM
mx = daemon('mx-hostile-dkim', dkim={'enabled': True, 'timeout': '5s'})
msg = ('From: a@example.org\r\nTo: b@example.test\r\nSubject: hostile dkimbig\r\n'
       'Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <big@example.org>\r\n\r\nbody\r\n').encode()
r = subprocess.run([PY, SIGNER, 'sign', key_path, 'big', 'example.org'], input=msg, capture_output=True, timeout=60)
mt.check(r.returncode == 0, 'dkimpy signs (%s)' % r.stderr.decode(errors='replace')[:200])
code, text, secs, m = send(mx, 'dkimbig', '198.18.1.7', 'a@example.org', data=r.stdout)
ar = ar_of(m) if m else ''
mt.check(code == 250 and 'dkim=pass' in ar,
         'DKIM: a %d-octet key record in %d strings is read whole (%s)' % (len(key_rec), len(key_parts), ar or text))
mx.stop()

# ---------------------------------------------------------------- DMARC
mx = daemon('mx-hostile-dmarc', dmarc={'enabled': True})
for tag, sel in (('nokey', 'nokey'), ('label64', 'a' * 64), ('name254', '.'.join(['s' * 60] * 4))):
    forged = ('DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=victim.example; s=%s;\r\n'
              ' h=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n'
              'From: ceo@victim.example\r\nTo: b@example.test\r\nSubject: hostile dmarc%s\r\n\r\nbody\r\n'
              % (sel, tag)).encode()
    code, text, secs, m = send(mx, 'dmarc' + tag, '198.18.1.7', 'a@example.test', data=forged)
    mt.check(code == 550 and m is None,
             'DMARC p=reject: a forged signature with a key name that cannot be asked (%s) is refused (%s %s)'
             % (tag, code, text[:100]))
mx.stop()
mt.finish()
