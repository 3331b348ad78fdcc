#!/usr/bin/env python3
"""Verified STARTTLS to the backends, as a Postfix operator sets it up
(`smtp_tls_security_level = verify`, `smtp_tls_CAfile`) or a HAProxy one (`server ... ssl
verify required ca-file ... verifyhost ...`): `backends.tls_verify: true`,
`backends.tls_ca_file`, `backends.servers[].tls_verify_name`. A CA made here signs the good
backend's certificate (subjectAltName DNS:mx1.verify.test, IP:127.0.0.1); another CA signs an
impostor's with the same names.

- the good backend gets the message over TLS, by its IP address or by tls_verify_name;
- the impostor (a chain to an unknown CA), a certificate for another name, a self-signed one,
  a backend that offers no STARTTLS: the attempt fails (event=backend_error with why), the
  client gets 4xx, and nothing reaches the backend in clear: never a fallback to plaintext;
- `-t`: a CA file that cannot be loaded is an error at tls_ca_file; tls_ca_file or
  tls_verify_name without tls_verify (a key that would be ignored) is an error.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')


good_ca, bad_ca = mt.own_ca('good'), mt.own_ca('bad')
SAN = 'DNS:mx1.verify.test,IP:127.0.0.1'
good = mt.ca_leaf('mx1-good', good_ca, SAN)
impostor = mt.ca_leaf('mx1-impostor', bad_ca, SAN)
other = mt.ca_leaf('mx2-other', good_ca, 'DNS:mx2.verify.test')


def run(backend, name, server=None, **bk):
    b = {'client_identity': 'none', 'tls_verify': True, 'tls_ca_file': good_ca[0],
         'health_check': {'interval': '60s', 'timeout': '2s', 'fall': 5, 'rise': 1}}
    b.update(bk)
    srv = dict(server or {})
    srv['address'] = backend.url
    return mt.Mxgate(mt.config([srv], workers=1, backends=b), name=name)


def send(mx, tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag))


# the good backend, by address and by name
bk = mt.Backend(starttls=good, xclient=False, name='V-good')
mx = run(bk, 'mx-verify-good')
r = send(mx, 'vgood1')
mt.check(r.code == 250, 'good: delivered over verified TLS (%s %s)\n%s' % (r.code, r.text, mx.tail()))
mt.check([m['tls'] for m in bk.messages if b'vgood1' in m['data']] not in ([], [None]),
         'good: the backend has it, over TLS (%s)' % [m.get('tls') for m in bk.messages])
mx.stop()
mx = run(bk, 'mx-verify-name', server={'tls_verify_name': 'mx1.verify.test'})
r = send(mx, 'vgood2')
mt.check(r.code == 250, 'name: delivered, the certificate names tls_verify_name (%s %s)\n%s' % (r.code, r.text, mx.tail()))
mx.stop()

# refused certificates: 4xx, nothing in clear
cases = [
    ('impostor', mt.Backend(starttls=impostor, xclient=False, name='V-imp'), {},
     r'certificate verify failed: (unable to get local issuer certificate|self.signed certificate in certificate chain)'),
    ('othername', mt.Backend(starttls=other, xclient=False, name='V-other'), {},
     r'certificate verify failed: [Hh]ostname mismatch|certificate verify failed: IP address mismatch'),
    ('wrongname', mt.Backend(starttls=good, xclient=False, name='V-wrong'), {'tls_verify_name': 'mx9.verify.test'},
     r'certificate verify failed: [Hh]ostname mismatch'),
    ('selfsigned', mt.Backend(starttls=True, xclient=False, name='V-self'), {},
     r'certificate verify failed: self.signed certificate'),
    ('notls', mt.Backend(starttls=False, xclient=False, name='V-none'), {},
     r'STARTTLS not offered'),
]
for label, b, server, why in cases:
    mx = run(b, 'mx-verify-' + label, server=server)
    start = mx.log_size()
    r = send(mx, 'v' + label)
    mt.check(r.code is not None and 400 <= r.code < 500, '%s: 4xx to the client (%s %s)' % (label, r.code, r.text))
    mt.check(b.messages == [] and not any(c.upper().startswith('MAIL') for c in b.commands),
             '%s: nothing reached the backend in clear (%s)' % (label, b.commands))
    mt.check(mx.wait_log(r'event=backend_error backend=%s state=\d+ reason="[^"]*(%s)' % (re.escape(b.url), why), 5, start)
             is not None, '%s: event=backend_error says why\n%s' % (label, mx.tail()))
    mt.check(mx.count_log(r'fallback=plaintext') == 0, '%s: no fallback to plaintext' % label)
    mx.stop()

# -t
base = {'client_identity': 'none'}
code, out = mt.config_check(mt.config(['smtp://127.0.0.1:25'], listen=[{'address': '127.0.0.1:2525'}],
                                      backends=dict(base, tls_verify=True, tls_ca_file='/nonexistent/ca.pem')),
                            name='verify-noca')
mt.check(code == 1 and re.search(r'verify-noca\.yaml:\d+:\d+: backends\.tls_ca_file: cannot load CA file /nonexistent/ca\.pem', out),
         'check: a CA file that does not load is an error at its place:\n%s' % out)
code, out = mt.config_check(mt.config(['smtp://127.0.0.1:25'], listen=[{'address': '127.0.0.1:2525'}],
                                      backends=dict(base, tls_ca_file=good_ca[0])), name='verify-ignored')
mt.check(code == 1 and re.search(r'backends\.tls_ca_file: has no effect without backends\.tls_verify', out),
         'check: tls_ca_file without tls_verify is refused, not ignored:\n%s' % out)
code, out = mt.config_check(mt.config([{'address': 'smtp://127.0.0.1:25', 'tls_verify_name': 'a.test'}],
                                      listen=[{'address': '127.0.0.1:2525'}], backends=base), name='verify-ignored2')
mt.check(code == 1 and re.search(r'backends\.servers\[0\]\.tls_verify_name: has no effect without backends\.tls_verify', out),
         'check: tls_verify_name without tls_verify is refused:\n%s' % out)
code, out = mt.config_check(mt.config(['smtp://127.0.0.1:25'], listen=[{'address': '127.0.0.1:2525'}],
                                      backends=dict(base, tls_verify=True, tls_ca_file=good_ca[0])), name='verify-ok')
mt.check(code == 0, 'check: tls_verify with a CA file is valid:\n%s' % out)

mt.finish()
