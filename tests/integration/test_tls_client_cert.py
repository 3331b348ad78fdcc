#!/usr/bin/env python3
"""Client certificates, as a Postfix operator sets them up with smtpd_tls_ask_ccert,
smtpd_tls_req_ccert and smtpd_tls_CAfile: `tls.client_certificate: ask|require` and
`tls.client_ca_file`. Until session 13 mxgate never asked a client for a certificate.

- ask: the certificate request names the CA; a client with a certificate from it is
  "verified", one with a self-signed certificate "unverified", one without "none"; every one
  delivers. The Received field says so in the words of Postfix's smtpd_tls_received_header,
  the event=tls line names the subject and issuer CNs and the SHA-256 fingerprint (as
  `openssl x509 -fingerprint -sha256` prints it), a milter gets {cert_subject} and
  {cert_issuer} for a verified certificate only (as Postfix), {cert_fingerprint} when it asks.
  A resumed TLS session keeps its first handshake's certificate and verdict.
- reload: a new client_ca_file and SIGHUP; new handshakes verify against it; a broken one
  fails the reload and the old CAs stay.
- require: a handshake without a certificate that verifies fails (openssl s_client, swaks,
  Python's ssl); with one the message goes; the daemon is unharmed.
- reputation.allow_client_certificates: a client presenting a listed certificate (by its
  SHA-256 fingerprint) is allow-listed, as Postfix's permit_tls_clientcerts: not greylisted,
  over STARTTLS and implicit TLS; other clients are.
- -t: require without client_ca_file, require beside a STARTTLS listener without
  require_tls, a CA file that is not PEM or cannot be read: errors at their key.
Peers: openssl (certificates, s_client), swaks, Python's ssl, python3-milter."""
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'openssl')
mt.need_python_milter()

D = os.path.join(mt.TMP, 'ccert')
os.makedirs(D, exist_ok=True)


def openssl(*args):
    r = subprocess.run(['openssl'] + list(args), capture_output=True, text=True, timeout=mt.slack(60))
    if r.returncode != 0:
        mt.fail('openssl %s: %s' % (args[0], r.stderr[-300:]))
    return r.stdout


def path(name):
    return os.path.join(D, name)


# a CA, a client certificate it issued, a self-signed one with the same names
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/O=mxtest/CN=mxtest-ca',
        '-keyout', path('ca.key'), '-out', path('ca.pem'))
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=client.example.org', '-keyout', path('client.key'),
        '-out', path('client.csr'))
openssl('x509', '-req', '-in', path('client.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'),
        '-CAcreateserial', '-days', '2', '-out', path('client.pem'))
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=client.example.org',
        '-keyout', path('rogue.key'), '-out', path('rogue.pem'))
with open(path('garbage.pem'), 'w') as f:
    f.write('not a certificate\n')
FP = openssl('x509', '-in', path('client.pem'), '-noout', '-fingerprint', '-sha256').strip().split('=', 1)[1]
mt.check(re.fullmatch(r'([0-9A-F]{2}:){31}[0-9A-F]{2}', FP) is not None, 'the client certificate\'s fingerprint (%s)' % FP)

crt, key = mt.cert()
be = mt.Backend(name='ccert')


def macro_milter(mode=''):
    port = mt.hold_port().port
    log = path('macros%s.txt' % mode)
    p = mt.start_peer(['/usr/bin/python3', os.path.join(mt.PEERS, 'mx_milter_macros.py'),
                       'inet:%d@127.0.0.1' % port, log] + ([mode] if mode else []), 'macro-milter' + mode, port)
    p.log = log
    return p


def helo_macros(m=None):
    """The macros the milter saw at HELO in the last session: {name: value}."""
    try:
        lines = [ln for ln in open((m or milter).log).read().splitlines() if ln.startswith('helo ')]
    except OSError:
        return {}
    if not lines:
        return {}
    return dict(re.findall(r'(\S+?)=(.*?)(?= \S+=|$)', lines[-1][5:]))


class CertClient(mt.Client):
    """mt.Client whose TLS side presents a certificate (cert=(pem, key) or None)."""

    def __init__(self, port, cert=None, session=None, ctx=None, **kw):
        self.cert, self.session = cert, session
        self.ctx = ctx or self.make_ctx(cert)
        super().__init__(port, **kw)

    @staticmethod
    def make_ctx(cert):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(*cert)
        return ctx

    def _wrap(self):
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname='mx.test', session=self.session)


def deliver(port, tag, cert=None, implicit=False, session=None, ctx=None):
    """One message over STARTTLS (or implicit TLS); returns (reply, client)."""
    c = CertClient(port, cert=cert, session=session, ctx=ctx, tls=implicit)
    c.ehlo()
    if not implicit:
        code, text = c.starttls()
        if code != 220:
            return (code, text), c
    c.ehlo()
    r = mt.send_mail(port, 'sender@example.org', ['rcpt@example.test'], mt.message(tag), client=c)
    return (r[0], r[1]), c


def received_of(tag):
    got = be.by_tag(tag)
    if len(got) != 1:
        return ''
    head = got[0]['data'].split(b'\r\n\r\n')[0].decode(errors='replace')
    m = re.search(r'Received: from .*?(?=\r\n\S)', head, re.S)
    return m.group(0) if m else ''


GOOD, ROGUE = (path('client.pem'), path('client.key')), (path('rogue.pem'), path('rogue.key'))

# ------------------------------------------------------------------ ask
milter = macro_milter()
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                  {'address': '127.0.0.1:0', 'tls': 'implicit'}],
                tls={'certificate': crt, 'key': key, 'client_certificate': 'ask', 'client_ca_file': path('ca.pem')},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port, 'on_error': 'tempfail',
                          'timeout': '10s'}])
mx = mt.Mxgate(cfg, name='mx-ask')
st_port, imp_port = mx.ports

r = mt.s_client(st_port, 'QUIT\n')
mt.check(re.search(r'Acceptable client certificate CA names\s*\n\s*O\s*=\s*mxtest, CN\s*=\s*mxtest-ca', r.stdout) is not None,
         'ask: the certificate request names the CA of client_ca_file (%s)' %
         re.findall(r'Acceptable client certificate CA names\n.*', r.stdout))

(code, text), c = deliver(st_port, 'verified', GOOD)
c.close()
mt.check(code == 250, 'ask: a client with a certificate from the CA delivers (%s %s)' % (code, text))
rcv = received_of('verified')
mt.check('(Client CN "client.example.org", Issuer "mxtest-ca" (verified OK))' in rcv,
         'ask: Received says "(Client CN ..., Issuer ... (verified OK))" (%r)' % rcv)
line = mx.wait_log(r'event=tls version=\S+ cipher=\S+ client_cert=verified cert_subject="client\.example\.org" '
                   r'cert_issuer="mxtest-ca" cert_fingerprint=(\S+)', 5)
mt.check(line is not None and line.group(1) == FP,
         'ask: event=tls names the verified certificate and its SHA-256 fingerprint (%s)' % (line and line.group(0)))
hm = helo_macros()
mt.check(hm.get('{cert_subject}') == 'client.example.org' and hm.get('{cert_issuer}') == 'mxtest-ca',
         'ask: the milter gets {cert_subject} and {cert_issuer} at HELO (%s)' % hm)

(code, text), c = deliver(st_port, 'unverified', ROGUE)
c.close()
mt.check(code == 250, 'ask: a client with a self-signed certificate delivers too (%s %s)' % (code, text))
rcv = received_of('unverified')
mt.check('(Client CN "client.example.org", Issuer "client.example.org" (not verified))' in rcv,
         'ask: Received says "(not verified)" (%r)' % rcv)
mt.check(mx.wait_log(r'event=tls .*client_cert=unverified cert_subject="client\.example\.org" '
                     r'cert_issuer="client\.example\.org" cert_fingerprint=\S+ verify_error="[^"]+"', 5) is not None,
         'ask: event=tls says unverified, with OpenSSL\'s reason')
hm = helo_macros()
mt.check('{cert_subject}' not in hm and '{cert_issuer}' not in hm and hm.get('{tls_version}'),
         'ask: no {cert_subject} / {cert_issuer} for a certificate that did not verify, as Postfix (%s)' % hm)

(code, text), c = deliver(imp_port, 'nocert', None, implicit=True)
c.close()
mt.check(code == 250, 'ask: a client without a certificate delivers (implicit TLS) (%s %s)' % (code, text))
rcv = received_of('nocert')
mt.check('(Client did not present a certificate)' in rcv, 'ask: Received says the client sent none (%r)' % rcv)
mt.check(mx.wait_log(r'event=tls version=\S+ cipher=\S+ client_cert=none\b', 5) is not None,
         'ask: event=tls says client_cert=none')

r = mt.swaks(st_port, '--tls', '--tls-cert', GOOD[0], '--tls-key', GOOD[1], '--from', 'sender@example.org',
             '--to', 'rcpt@example.test', '--header', 'Message-ID: <swaksccert@mxtest.example>')
mt.check(r.returncode == 0 and len(be.by_tag('swaksccert')) == 1, 'ask: swaks --tls-cert delivers (rc=%d)' % r.returncode)
mt.check('(verified OK)' in received_of('swaksccert'), 'ask: swaks\'s certificate verified')

# resumption: the second handshake is abbreviated and keeps the first one's certificate
ctx = CertClient.make_ctx(GOOD)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2    # a session is there right after the handshake
(code, text), c = deliver(imp_port, 'resume1', implicit=True, ctx=ctx)
sess = c.sock.session
c.close()
(code2, text2), c = deliver(imp_port, 'resume2', implicit=True, ctx=ctx, session=sess)
reused = c.sock.session_reused
c.close()
mt.check(code == 250 and code2 == 250 and reused, 'ask: a TLS session resumed (%s, %s, reused=%s)' % (code, code2, reused))
mt.check('(verified OK)' in received_of('resume2'),
         'ask: the resumed session keeps the verified certificate (%r)' % received_of('resume2'))
mx.stop()
mt.stop_proc(milter)

# {cert_fingerprint}: no default macro; a filter that asks for it at HELO gets it
fpm = macro_milter('certfp')
cfg['plugins'][0]['address'] = 'inet:127.0.0.1:%d' % fpm.port
mx = mt.Mxgate(cfg, name='mx-ask-fp')
(code, text), c = deliver(mx.ports[0], 'fpmacro', ROGUE)
c.close()
hm = helo_macros(fpm)
rogue_fp = openssl('x509', '-in', ROGUE[0], '-noout', '-fingerprint', '-sha256').strip().split('=', 1)[1]
mt.check(code == 250 and hm.get('{cert_fingerprint}') == rogue_fp and '{cert_subject}' not in hm,
         'a filter asking for {cert_fingerprint} gets it for an unverified certificate too (%s)' % hm)
mx.stop()
mt.stop_proc(fpm)

# a new CA file and SIGHUP: new handshakes verify against it (the old CA's certificate no longer)
shutil.copy(path('ca.pem'), path('ca-live.pem'))
cfg_live = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit'}],
                     tls={'certificate': crt, 'key': key, 'client_certificate': 'ask', 'client_ca_file': path('ca-live.pem')})
mx = mt.Mxgate(cfg_live, name='mx-ask-reload')
(code, text), c = deliver(mx.port, 'before-reload', GOOD, implicit=True)
c.close()
mt.check(code == 250 and '(verified OK)' in received_of('before-reload'), 'reload: before, the CA\'s certificate verifies')
shutil.copy(ROGUE[0], path('ca-live.pem'))     # now only the self-signed one is a CA
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reloaded generation=2', 10) is not None, 'reload: SIGHUP reloaded')
(code, text), c = deliver(mx.port, 'after-reload', GOOD, implicit=True)
c.close()
mt.check(code == 250 and '(not verified)' in received_of('after-reload'),
         'reload: after, the old CA\'s certificate does not verify (%r)' % received_of('after-reload'))
(code, text), c = deliver(mx.port, 'after-reload-rogue', ROGUE, implicit=True)
c.close()
mt.check(code == 250 and '(verified OK)' in received_of('after-reload-rogue'),
         'reload: the certificate of the new CA file verifies')
with open(path('ca-live.pem'), 'w') as f:
    f.write('broken\n')
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reload_failed .*keeping=old', 10) is not None, 'reload: a CA file that is not PEM fails the reload')
(code, text), c = deliver(mx.port, 'after-bad-reload', ROGUE, implicit=True)
c.close()
mt.check(code == 250 and '(verified OK)' in received_of('after-bad-reload'), 'reload: ... and the old CAs stay in force')
mx.stop()

# without client_certificate: no request, nothing said (as before)
cfg_none = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                     tls={'certificate': crt, 'key': key})
mx = mt.Mxgate(cfg_none, name='mx-nocc')
r = mt.s_client(mx.port, 'QUIT\n', extra=('-cert', GOOD[0], '-key', GOOD[1]))
mt.check('No client certificate CA names sent' in r.stdout, 'default: no certificate request')
(code, text), c = deliver(mx.port, 'notasked', GOOD)
c.close()
mt.check(code == 250 and 'Client' not in received_of('notasked'),
         'default: Received says nothing of a client certificate (%r)' % received_of('notasked'))
mx.stop()

# ------------------------------------------------------------------ require
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit'},
                                  {'address': '127.0.0.1:0', 'tls': 'starttls', 'require_tls': True}],
                tls={'certificate': crt, 'key': key, 'client_certificate': 'require',
                     'client_ca_file': path('ca.pem')})
mx = mt.Mxgate(cfg, name='mx-require')
imp_port, st_port = mx.ports
for what, extra in (('no certificate', ()), ('a self-signed certificate', ('-cert', ROGUE[0], '-key', ROGUE[1]))):
    r = mt.s_client(imp_port, 'EHLO x\nQUIT\n', starttls=False, extra=extra)
    mt.check('220 mx.test' not in r.stdout and not re.search(r'^221 ', r.stdout, re.M),
             'require: s_client with %s gets no greeting (the handshake fails)' % what)
    r = mt.s_client(st_port, 'EHLO x\nMAIL FROM:<a@example.org>\nQUIT\n', extra=extra)
    mt.check(not re.search(r'^250 2\.1\.0', r.stdout, re.M), 'require: STARTTLS with %s gets no MAIL through' % what)
r = mt.s_client(imp_port, 'EHLO x\nQUIT\n', starttls=False, extra=('-cert', GOOD[0], '-key', GOOD[1]))
mt.check('220 mx.test' in r.stdout and re.search(r'^221 ', r.stdout, re.M),
         'require: s_client with the CA\'s certificate gets the greeting and 221')
(code, text), c = deliver(imp_port, 'required', GOOD, implicit=True)
c.close()
mt.check(code == 250 and '(verified OK)' in received_of('required'), 'require: a client with the CA\'s certificate delivers')
(code, text), c = deliver(st_port, 'required-st', GOOD)
c.close()
mt.check(code == 250 and '(verified OK)' in received_of('required-st'), 'require: over STARTTLS too (%s %s)' % (code, text))
try:
    (code, text), c = deliver(imp_port, 'pyrogue', ROGUE, implicit=True)
    c.close()
except (ssl.SSLError, OSError) as e:
    code, text = None, str(e)
mt.check(code != 250 and not be.by_tag('pyrogue'), 'require: Python\'s ssl with a self-signed certificate does not deliver (%s)' % text)
r = mt.swaks(imp_port, '--tlsc', '--tls-cert', GOOD[0], '--tls-key', GOOD[1], '--from', 'sender@example.org',
             '--to', 'rcpt@example.test', '--header', 'Message-ID: <swaksreq@mxtest.example>')
mt.check(r.returncode == 0 and len(be.by_tag('swaksreq')) == 1, 'require: swaks --tlsc --tls-cert delivers (rc=%d)' % r.returncode)
r = mt.swaks(imp_port, '--tlsc', '--from', 'sender@example.org', '--to', 'rcpt@example.test',
             '--header', 'Message-ID: <swaksnocert@mxtest.example>')
mt.check(r.returncode != 0 and not be.by_tag('swaksnocert'), 'require: swaks --tlsc without a certificate does not deliver')
mt.check(mx.alive(), 'require: the daemon is unharmed')
mx.stop()

# ------------------------------------------------------------------ allow-listed by fingerprint
# reputation.allow_client_certificates (Postfix's permit_tls_clientcerts with
# relay_clientcerts): a client presenting a listed certificate — verified or not, its key
# proves it holds it — counts as allow-listed (REP_ALLOW): greylisting skips it.
ROGUE_FP = openssl('x509', '-in', ROGUE[0], '-noout', '-fingerprint', '-sha256').strip().split('=', 1)[1]
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                  {'address': '127.0.0.1:0', 'tls': 'implicit'}],
                tls={'certificate': crt, 'key': key, 'client_certificate': 'ask'},
                greylist={'enabled': True, 'delay': '1h'},
                reputation={'allow_client_certificates': [ROGUE_FP.lower()]})
mx = mt.Mxgate(cfg, name='mx-fpallow')
st_port, imp_port = mx.ports
for what, port, cert, implicit, want in (('STARTTLS, listed certificate', st_port, ROGUE, False, 250),
                                         ('STARTTLS, another certificate', st_port, GOOD, False, 451),
                                         ('STARTTLS, no certificate', st_port, None, False, 451),
                                         ('implicit TLS, listed certificate', imp_port, ROGUE, True, 250)):
    (code, text), c = deliver(port, 'fp-' + what.replace(' ', '').replace(',', '-'), cert, implicit=implicit)
    c.close()
    mt.check(code == want, 'allow_client_certificates: %s: %s (%s %s)' % (what, want, code, text))
mt.check(mx.count_log(r'event=reputation client=127\.0\.0\.1 class=allow reason=client_certificate') == 2,
         'allow_client_certificates: logged event=reputation class=allow reason=client_certificate twice')
mx.stop()
rc, out = mt.config_check(mt.config([be.url], reputation={'allow_client_certificates': ['AB:CD']}), 'fp-bad')
mt.check(rc != 0 and re.search(r'reputation\.allow_client_certificates\[0\]: .*SHA-256', out),
         '-t: a fingerprint that is not SHA-256 (%s)' % out.strip())

# ------------------------------------------------------------------ -t
def tls_cfg(listen=None, **tls):
    t = {'certificate': crt, 'key': key}
    t.update(tls)
    return mt.config([be.url], listen=listen or [{'address': '127.0.0.1:2465', 'tls': 'implicit'}], tls=t)


rc, out = mt.config_check(tls_cfg(client_certificate='require'), 'cc-noca')
mt.check(rc != 0 and re.search(r'tls\.client_ca_file: .*require', out), '-t: require without client_ca_file (%s)' % out.strip())
rc, out = mt.config_check(tls_cfg([{'address': '127.0.0.1:2525', 'tls': 'starttls'}], client_certificate='require',
                                  client_ca_file=path('ca.pem')), 'cc-starttls')
mt.check(rc != 0 and re.search(r'listen\[0\]\.require_tls: .*client_certificate', out),
         '-t: require beside a STARTTLS listener without require_tls (%s)' % out.strip())
rc, out = mt.config_check(tls_cfg(client_certificate='ask', client_ca_file=path('garbage.pem')), 'cc-garbage')
mt.check(rc != 0 and re.search(r'tls\.client_ca_file: client_ca_file ', out), '-t: a CA file that is not PEM (%s)' % out.strip())
rc, out = mt.config_check(tls_cfg(client_certificate='ask', client_ca_file=path('missing.pem')), 'cc-missing')
mt.check(rc != 0 and re.search(r'tls\.client_ca_file: cannot read', out), '-t: a CA file that cannot be read (%s)' % out.strip())
rc, out = mt.config_check(tls_cfg(client_certificate='ask'), 'cc-ask-noca')
mt.check(rc == 0, '-t: ask without a CA file is fine (nothing verifies) (%s)' % out.strip())
mt.finish()
