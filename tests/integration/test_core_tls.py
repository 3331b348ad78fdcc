#!/usr/bin/env python3
"""Proxy core, TLS (RFC 3207, OpenSSL): STARTTLS and implicit-TLS listeners.

- openssl s_client -starttls smtp and swaks --tls deliver; EHLO offers STARTTLS on a
  starttls listener only before TLS; the Received header says ESMTPS and names the cipher.
- implicit TLS (`tls: implicit`): swaks --tlsc, s_client and a raw TLS client deliver;
  plaintext on that port gets nowhere and does not hurt the daemon.
- plaintext pipelined after STARTTLS (CVE-2011-0411 class) is discarded: one reply before the
  handshake, nothing of it answered inside TLS.
- TLS 1.0/1.1 refused; a second STARTTLS inside TLS gets 503.
- renewal: new certificate files + SIGHUP: new handshakes (both listener kinds) get the new
  certificate, a session already inside TLS goes on."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'openssl')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'

crt, key = mt.cert()
be = mt.Backend(name='tls')
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                  {'address': '127.0.0.1:0', 'tls': 'implicit'},
                                  {'address': '127.0.0.1:0'}],
                tls={'certificate': crt, 'key': key})
mx = mt.Mxgate(cfg, name='mx-tls')
st_port, imp_port, plain_port = mx.ports


def delivered(tag):
    return [m for m in be.messages if ('<%s@' % tag).encode() in m['data']]


# ---------------------------------------------------------------- EHLO
c = mt.Client(st_port)
code, text = c.ehlo()
mt.check('STARTTLS' in text, 'a starttls listener announces STARTTLS')
code, _ = c.starttls()
mt.check(code == 220, 'STARTTLS 220')
mt.check(c.sock.version() in ('TLSv1.2', 'TLSv1.3'), 'handshake: %s' % c.sock.version())
code, text = c.ehlo()
mt.check(code == 250 and 'STARTTLS' not in text, 'EHLO inside TLS no longer offers STARTTLS')
code, text = c.cmd('STARTTLS')
mt.check(code == 503, 'a second STARTTLS inside TLS: 503 (%s)' % text)
code, text = mt.send_mail(st_port, FROM, [RCPT], mt.message('rawtls'), client=c)
mt.check(code == 250, 'a message over STARTTLS from a raw client (%s)' % text)
c.close()
got = delivered('rawtls')
mt.check(len(got) == 1 and re.search(rb'with ESMTPS[A]? id', got[0]['data'].split(b'\r\n\r\n')[0]) is not None,
         'Received: says "with ESMTPS" for a TLS session (RFC 3848)')
mt.check(len(got) == 1 and b'using TLSv1.' in got[0]['data'].split(b'\r\n\r\n')[0], 'Received: names the TLS version and cipher')
mt.check(mx.wait_log(r'event=tls version=TLSv1\.[23] cipher=\S+', 3) is not None, 'event=tls logged with version and cipher')
c = mt.Client(plain_port)
mt.check('STARTTLS' not in c.ehlo()[1], 'a listener without tls does not offer STARTTLS')
mt.check(c.cmd('STARTTLS')[0] in (502, 503, 454), 'STARTTLS where not offered is refused')
c.close()

# ---------------------------------------------------------------- openssl s_client -starttls smtp
script = ('EHLO sclient.test\nMAIL FROM:<%s>\nRCPT TO:<%s>\nDATA\n' % (FROM, RCPT)
          + mt.message('sclient').decode().replace('\r\n', '\n') + '.\nQUIT\n')
r = mt.s_client(st_port, script, starttls=True)
queued = re.search(r'^250 2\.0\.0 .*$', r.stdout, re.M)
mt.check(queued is not None and re.search(r'^221 ', r.stdout, re.M), 'openssl s_client -starttls smtp delivers (%s)' % (
    queued.group(0) if queued else r.stdout[-300:]))
mt.check(len(delivered('sclient')) == 1, 'the s_client message is at the backend')
mt.check(re.search(r'Protocol\s*:\s*TLSv1\.[23]', r.stdout) is not None or 'TLSv1.3' in r.stdout or 'TLSv1.2' in r.stdout,
         's_client negotiated TLS 1.2+')
r = mt.s_client(st_port, 'QUIT\n', starttls=True, extra=['-tls1_1'])
# A reply line, not the digits: s_client prints its Start Time (a Unix time) too.
mt.check(not re.search(r'^221 ', r.stdout, re.M), 'TLS 1.1 is refused')

# ---------------------------------------------------------------- swaks --tls
r = mt.swaks(st_port, '--tls', '--from', FROM, '--to', RCPT, '--header', 'Message-ID: <swakstls@mxtest.example>')
mt.check(r.returncode == 0 and len(delivered('swakstls')) == 1, 'swaks --tls delivers (rc=%d)' % r.returncode)
r = mt.swaks(st_port, '--tls', '--pipeline', '--from', FROM, '--to', RCPT, '--header', 'Message-ID: <swakspipe@mxtest.example>')
mt.check(r.returncode == 0 and len(delivered('swakspipe')) == 1, 'swaks --tls --pipeline delivers (rc=%d)' % r.returncode)

# ---------------------------------------------------------------- implicit TLS
r = mt.swaks(imp_port, '--tlsc', '--from', FROM, '--to', RCPT, '--header', 'Message-ID: <tlsc@mxtest.example>')
mt.check(r.returncode == 0 and len(delivered('tlsc')) == 1, 'implicit TLS: swaks --tlsc delivers (rc=%d)' % r.returncode)
c = mt.Client(imp_port, tls=True)
mt.check(c.greeting[0] == 220, 'implicit TLS: greeting inside TLS (%s)' % (c.greeting,))
# a session's first line is its event=connect (who, which port), then its event=tls
m = mx.wait_log(r'\S+ info (\w+) event=connect client=\S+ port=\d+ tls=implicit', 3)
sid = m.group(1) if m else None
sess = [l for l in mx.log().splitlines() if sid and l.split(' ')[2:3] == [sid]]
mt.check(len(sess) >= 2 and 'event=connect ' in sess[0] and 'event=tls ' in sess[1],
         'implicit TLS: event=connect is the session\'s first line, event=tls the next (%s)' % sess[:2])
code, text = c.ehlo()
mt.check(code == 250 and 'STARTTLS' not in text, 'implicit TLS: EHLO does not offer STARTTLS')
code, text = mt.send_mail(imp_port, FROM, [RCPT], mt.message('imp'), client=c)
mt.check(code == 250 and len(delivered('imp')) == 1, 'implicit TLS: a raw TLS client delivers (%s)' % text)
c.close()
r = mt.s_client(imp_port, 'EHLO sc.test\nQUIT\n', starttls=False)
mt.check('220 ' in r.stdout and re.search(r'^221 ', r.stdout, re.M), 'implicit TLS: openssl s_client gets the greeting and 221')
s = socket.create_connection(('127.0.0.1', imp_port), 5)
s.sendall(b'EHLO plain.test\r\n')
s.settimeout(mt.slack(5))
try:
    data = s.recv(4096)
except (socket.timeout, OSError):
    data = b'(timeout)'
s.close()
mt.check(not data.startswith(b'250') and not data.startswith(b'220 '), 'implicit TLS: plaintext gets no SMTP reply (%r)' % data[:40])
c = mt.Client(imp_port, tls=True)
mt.check(c.greeting[0] == 220, 'implicit TLS still works after a plaintext client')
c.close()

# ---------------------------------------------------------------- STARTTLS injection
for extra in ('NOOP\r\n', 'MAIL FROM:<injected@example.org>\r\nRCPT TO:<%s>\r\n' % RCPT):
    c = mt.Client(st_port)
    c.ehlo()
    c.send('STARTTLS\r\n' + extra)
    code, text = c.reply()
    pend = c.pending(0.5)
    mt.check(code == 220 and pend == b'', 'STARTTLS+%s in one write: only one reply (220) before the handshake (%r)' % (
        extra.split()[0], pend[:60]))
    try:
        c._wrap()
        ok = True
    except (ssl.SSLError, OSError) as e:
        ok = False
        mt.check(False, 'handshake after injected plaintext: %s' % e)
    if ok:
        code, text = c.ehlo('after.test')
        mt.check(code == 250 and text.startswith('250-'),
                 'the first reply inside TLS is the EHLO reply, nothing answers the injected %s (%r)' % (extra.split()[0], text[:40]))
        code, text = c.cmd('RCPT TO:<%s>' % RCPT)
        mt.check(code == 503, 'the injected MAIL was not executed: RCPT inside TLS gets 503 (%s)' % text)
        mt.check(c.cmd('NOOP')[0] == 250, 'the TLS session goes on normally')
    c.close()
mt.check(mx.wait_log(r'event=starttls_injection', 3) is not None, 'the injection is logged (event=starttls_injection)')
mt.check(not any('injected@' in x for x in be.commands), 'the injected MAIL never reached a backend')

# ---------------------------------------------------------------- renewal: new files + SIGHUP
# docs/operations.md: "To renew a certificate, replace the files and send SIGHUP" (certbot's
# deploy hook). New handshakes get the new certificate on both kinds of listener; a session
# already inside TLS goes on.
def peer_cert(port, starttls):
    c = mt.Client(port, tls=not starttls)
    if starttls:
        c.ehlo()
        c.starttls()
    der = c.sock.getpeercert(binary_form=True)
    c.ehlo()
    return c, der


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


rcrt, rkey = os.path.join(mt.TMP, 'renew.pem'), os.path.join(mt.TMP, 'renew.key')
shutil.copy(crt, rcrt)
shutil.copy(key, rkey)
cfg2 = dict(cfg, tls={'certificate': rcrt, 'key': rkey})
mx.reload(cfg2)
held, der = peer_cert(st_port, True)
mt.check(der == der_of(crt), 'before the renewal: the first certificate')
r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '90', '-subj', '/CN=mx.test',
                    '-keyout', rkey + '.new', '-out', rcrt + '.new'], capture_output=True, timeout=60)
mt.check(r.returncode == 0, 'a second certificate made')
os.replace(rkey + '.new', rkey)           # as certbot does: new files in place
os.replace(rcrt + '.new', rcrt)
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reloaded generation=3', 10) is not None, 'SIGHUP: reloaded')
for port, starttls, what in ((st_port, True, 'STARTTLS'), (imp_port, False, 'implicit TLS')):
    c, der = peer_cert(port, starttls)
    mt.check(der == der_of(rcrt) and der != der_of(crt), '%s: a new handshake gets the renewed certificate' % what)
    code, text = mt.send_mail(port, FROM, [RCPT], mt.message('renew-%s' % starttls), client=c)
    mt.check(code == 250, '... and delivers (%s)' % text)
    c.close()
code, text = mt.send_mail(st_port, FROM, [RCPT], mt.message('renew-held'), client=held)
mt.check(code == 250, 'a session that was inside TLS before the renewal goes on (%s)' % text)
held.close()

mx.stop()

# ---------------------------------------------------------------- a second (ECDSA) certificate
ecrt, ekey = os.path.join(mt.TMP, 'ec.pem'), os.path.join(mt.TMP, 'ec.key')
r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                    '-days', '2', '-subj', '/CN=mx.test', '-keyout', ekey, '-out', ecrt], capture_output=True, timeout=60)
mt.check(r.returncode == 0, 'an ECDSA certificate made')
os.chmod(ekey, 0o644)
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key, 'second_certificate': ecrt, 'second_key': ekey}),
               name='mx-dualcert')
for sigalgs, want, what in (('ECDSA+SHA256', ecrt, 'ECDSA'), ('RSA-PSS+SHA256:RSA+SHA256', crt, 'RSA')):
    for ver in ('-tls1_2', '-tls1_3'):
        r = mt.s_client(mx.port, 'QUIT\n', extra=(ver, '-sigalgs', sigalgs, '-showcerts'))
        m = re.search(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', r.stdout, re.S)
        got = ssl.PEM_cert_to_DER_cert(m.group(0)) if m else None
        mt.check(got == der_of(want), 'second certificate: a client taking only %s (%s) gets the %s certificate'
                 % (sigalgs, ver, what))
c = mt.Client(mx.port)
c.ehlo()
c.starttls()
c.ehlo()
code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('dualcert'), client=c)
mt.check(code == 250 and len(delivered('dualcert')) == 1, 'second certificate: a message over STARTTLS (%s)' % text)
c.close()
mx.stop()
rc, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:25', 'tls': 'starttls'}],
                                    tls={'certificate': crt, 'key': key, 'second_certificate': crt, 'second_key': key}),
                          name='dual-same')
mt.check(rc != 0 and 'second_certificate' in out and 'same type' in out,
         '-t: a second certificate with a key of the same type is an error (%s)' % out.strip())

# ---------------------------------------------------------------- certificates chosen by SNI
ocrt, okey = os.path.join(mt.TMP, 'other.pem'), os.path.join(mt.TMP, 'other.key')
r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mx.other.example',
                    '-addext', 'subjectAltName=DNS:mx.other.example,DNS:*.wild.example',
                    '-keyout', okey, '-out', ocrt], capture_output=True, timeout=60)
mt.check(r.returncode == 0, 'a certificate for mx.other.example and *.wild.example made')
os.chmod(okey, 0o644)
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                           {'address': '127.0.0.1:0', 'tls': 'implicit'}],
                         tls={'certificate': crt, 'key': key, 'second_certificate': ecrt, 'second_key': ekey,
                              'sni': [{'certificate': ocrt, 'key': okey}]}),
               name='mx-sni')


def served(port, starttls, servername):
    extra = ('-servername', servername) if servername else ('-noservername',)
    argv = ['openssl', 's_client', '-connect', '127.0.0.1:%d' % port, '-crlf', '-ign_eof', '-showcerts',
            '-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256'] + list(extra) + (['-starttls', 'smtp'] if starttls else [])
    out = subprocess.run(argv, input='QUIT\n', capture_output=True, text=True, timeout=mt.slack(30)).stdout
    m = re.search(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', out, re.S)
    return ssl.PEM_cert_to_DER_cert(m.group(0)) if m else None


for port, starttls in ((mx.ports[0], True), (mx.ports[1], False)):
    for name, want, what in (('mx.other.example', ocrt, 'its certificate'), ('a.wild.example', ocrt, 'the wildcard\'s'),
                             ('MX.OTHER.EXAMPLE', ocrt, 'its certificate (any case)'),
                             ('mx.test', crt, 'the default'), ('unknown.example', crt, 'the default'),
                             (None, crt, 'the default')):
        mt.check(served(port, starttls, name) == der_of(want), 'SNI %s (%s): %s' % (
            name or '(none)', 'STARTTLS' if starttls else 'implicit', what))
c = mt.Client(mx.ports[1], tls=True)
c.ehlo()
code, text = mt.send_mail(mx.ports[1], FROM, [RCPT], mt.message('sni'), client=c)
mt.check(code == 250 and len(delivered('sni')) == 1, 'SNI: a message through (%s)' % text)
c.close()
mx.stop()
rc, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:25', 'tls': 'starttls'}],
                                    tls={'certificate': crt, 'key': key, 'sni': [{'certificate': ocrt, 'key': key}]}),
                          name='sni-bad')
mt.check(rc != 0 and re.search(r'sni-bad\.yaml:\d+:\d+: tls\.sni\[0\]\.key: .*mismatch', out),
         '-t: an SNI certificate with the wrong key: FILE:LINE:COL at tls.sni[0] (%s)' % out.strip())

# ---------------------------------------------------------------- require_tls (Postfix's encrypt level)
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'require_tls': True}],
                         tls={'certificate': crt, 'key': key}), name='mx-reqtls')
c = mt.Client(mx.port)
code, text = c.ehlo()
mt.check(code == 250 and 'STARTTLS' in text, 'require_tls: EHLO offers STARTTLS')
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 530 and '5.7.0' in text and 'STARTTLS' in text,
         'require_tls: MAIL before STARTTLS gets 530 5.7.0 (%s)' % text)
code, _ = c.starttls()
c.ehlo()
code, text = mt.send_mail(mx.port, FROM, [RCPT], mt.message('reqtls'), client=c)
mt.check(code == 250 and len(delivered('reqtls')) == 1, 'require_tls: after STARTTLS the message goes (%s)' % text)
c.close()
mx.stop()
for lst, what in (([{'address': '127.0.0.1:0', 'require_tls': True}], 'tls: none'),):
    rc, out = mt.config_check(mt.config([be.url], listen=lst, tls={'certificate': crt, 'key': key}), name='reqtls-bad')
    mt.check(rc != 0 and 'require_tls' in out, '-t: require_tls with %s is an error (%s)' % (what, out.strip()))
mt.finish()
