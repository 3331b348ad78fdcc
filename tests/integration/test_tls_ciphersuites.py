#!/usr/bin/env python3
"""tls.ciphersuites: the TLS 1.3 cipher suites (tls.ciphers sets only TLS 1.2's list, so an
operator could not narrow or order TLS 1.3's at all; Postfix leaves them to OpenSSL's
configuration too, tls_config_file).

- a suite OpenSSL does not offer, a TLS 1.2 cipher name, or a typo beside a known suite
  (OpenSSL alone skips it silently) is refused at -t with FILE:LINE:COL at the key;
- the server's order wins: a TLS 1.3 client preferring ChaCha20 gets the first configured;
- a client offering only suites outside the list fails the handshake;
- a reload (SIGHUP) with another list takes effect for new connections.
Peers: openssl s_client."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')

crt, key = mt.cert()
be = mt.Backend(name='suites')


def cfg_with(suites, port=0, **tls):
    t = {'certificate': crt, 'key': key, 'ciphersuites': suites}
    t.update(tls)
    return mt.config([be.url], listen=[{'address': '127.0.0.1:%d' % port, 'tls': 'implicit'}], tls=t)


# ------------------------------------------------------------------ mxgate -t
for bad, what in (('TLS_AES_128_GCM_SHA512', 'no such suite'),
                  ('TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305', 'a typo beside a known suite'),
                  ('ECDHE-RSA-AES128-GCM-SHA256', 'a TLS 1.2 cipher name')):
    rc, out = mt.config_check(cfg_with(bad, port=2525), 'bad-suites')
    m = re.search(r'bad-suites\.yaml:(\d+):(\d+): tls\.ciphersuites: ciphersuites', out)
    mt.check(rc != 0 and m is not None, '-t refuses %s at the key, FILE:LINE:COL (%r)' % (what, out[-300:]))
rc, out = mt.config_check(cfg_with('TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256', port=2525), 'good-suites')
mt.check(rc == 0, '-t takes two known suites (%r)' % out[-300:])

# ------------------------------------------------------------------ the handshake


def negotiated(port, suites):
    r = mt.s_client(port, 'QUIT\n', starttls=False, extra=('-tls1_3', '-ciphersuites', suites))
    m = re.search(r'^New, (\S+), Cipher is (\S+)', r.stdout, re.M)
    return m.group(2) if m else None


cfg = cfg_with('TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256', min_version='1.3')
mx = mt.Mxgate(cfg, name='mx-suites')
got = negotiated(mx.port, 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256')
mt.check(got == 'TLS_AES_128_GCM_SHA256', 'TLS 1.3: the server\'s order wins over the client\'s (%s)' % got)
got = negotiated(mx.port, 'TLS_AES_256_GCM_SHA384')
mt.check(got in (None, '(NONE)'), 'TLS 1.3: a suite outside tls.ciphersuites fails the handshake (%s)' % got)
mt.check(mx.alive(), 'the daemon is unharmed')

# ------------------------------------------------------------------ reload
cfg['tls']['ciphersuites'] = 'TLS_AES_256_GCM_SHA384'
mx.reload(cfg)
mt.check(mx.wait_log(r'event=reloaded generation=2', 10) is not None, 'SIGHUP: reloaded')
got = negotiated(mx.port, 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256')
mt.check(got == 'TLS_AES_256_GCM_SHA384', 'after a reload the new list is offered (%s)' % got)
got = negotiated(mx.port, 'TLS_AES_128_GCM_SHA256')
mt.check(got in (None, '(NONE)'), 'after a reload the old suite is gone (%s)' % got)
mx.stop()
mt.finish()
