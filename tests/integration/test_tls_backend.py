#!/usr/bin/env python3
"""STARTTLS towards a backend, and TLS towards clients, with real peers.

A scripted ESMTP backend (Python's ssl module, i.e. OpenSSL on the other side) offers
STARTTLS; mxgate must upgrade before MAIL FROM and the message must arrive intact over TLS.
A second backend offers no STARTTLS: mail still flows in clear (opportunistic). The health
checks (EHLO, QUIT without STARTTLS) must not disturb either. On the client side,
openssl s_client negotiates STARTTLS (TLS 1.3 and forced 1.2) and implicit TLS, and a TLS 1.1
client is refused with a protocol_version alert."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl', 'swaks')
crt, key = mt.cert()


def run_mxgate(backend, name):
    return mt.Mxgate(mt.config([backend.url], workers=1,
                               listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                       {'address': '127.0.0.1:0', 'tls': 'implicit'}],
                               tls={'certificate': crt, 'key': key},
                               backends={'client_identity': 'none',
                                         'health_check': {'interval': '500ms', 'timeout': '2s'}}), name)


def swaks(port, subject, tls=False):
    r = mt.swaks(port, '--from', 'a@example.org', '--to', 'b@example.test', '--header', 'Subject: ' + subject,
                 '--body', 'line one\n.leading dot\nend', *(['--tls'] if tls else []))
    mt.check(r.returncode == 0, 'swaks %r%s: %s' % (subject, ' (STARTTLS)' if tls else '',
                                                     (r.stdout + r.stderr).strip().splitlines()[-1:]))


def s_client(port, *args):
    r = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % port, '-brief'] + list(args),
                       input='QUIT\n', capture_output=True, text=True, timeout=mt.slack(20))
    return r.stdout + r.stderr


# ---------------------------------------------------------------- backend offers STARTTLS
be = mt.Backend(starttls=True, xclient=False)
mx = run_mxgate(be, 'mxgate')
port, iport = mx.ports
swaks(port, 'to a TLS backend')
swaks(port, 'TLS on both legs', tls=True)
got = [m for m in be.messages if b'Subject: ' in m['data']]
mt.check(len(got) == 2, 'the STARTTLS backend got both messages (%d)' % len(got))
for m in got:
    mt.check(m['tls'] in ('TLSv1.3', 'TLSv1.2'), 'message reached the STARTTLS backend over TLS (tls=%r)' % m['tls'])
    mt.check(b'\r\n.leading dot\r\n' in m['data'], 'dot-stuffing across the TLS leg kept the body: %r' % m['data'][-80:])
# a couple of health probes (EHLO + QUIT, no STARTTLS) go by without disturbing anything
probes = be.connections
mt.check(mt.wait_for(lambda: be.connections >= probes + 2, 10), 'health probes reach the backend')
mt.check(mx.alive(), 'mxgate alive after the health probes')

# ---------------------------------------------------------------- client side TLS
out = s_client(port, '-starttls', 'smtp')
mt.check('Protocol version: TLSv1.3' in out, 's_client -starttls smtp negotiates TLS 1.3: %r' % out[-300:])
out = s_client(iport, '-tls1_2')
mt.check('Protocol version: TLSv1.2' in out, 's_client implicit TLS 1.2: %r' % out[-300:])
out = s_client(iport, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0')
mt.check('alert protocol version' in out or 'no protocols available' in out,
         'a TLS 1.1 client is refused: %r' % out[-300:])
mt.check(mx.alive(), 'mxgate alive after the TLS clients')
mx.stop()

# ---------------------------------------------------------------- backend without STARTTLS
plain = mt.Backend(starttls=False, xclient=False)
mx = run_mxgate(plain, 'mxgate-clear')
swaks(mx.port, 'to a clear backend', tls=True)
got = [m for m in plain.messages if b'Subject: to a clear backend' in m['data']]
mt.check(len(got) == 1 and got[0]['tls'] is None, 'opportunistic: the clear backend got it in clear: %r' % got)
mx.stop()
mt.finish()
