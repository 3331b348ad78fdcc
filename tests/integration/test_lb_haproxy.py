#!/usr/bin/env python3
"""HAProxy in front of mxgate, as an operator runs it: the real haproxy, its own PROXY headers.

- `send-proxy` (v1), `send-proxy-v2` with `proxy-v2-options crc32c`, and a TLS frontend that
  terminates TLS and sends `send-proxy-v2-ssl-cn` with every TLV HAProxy 2.6 has (CRC32C,
  authority, unique-id, the SSL TLV and its sub-TLVs): the client behind HAProxy
  (127.0.0.3) is the client mxgate logs and the backend hears (XCLIENT ADDR); TLS passed
  through HAProxy to a `tls: implicit` listener (the header, then the handshake) is TLS
  to mxgate, TLS ended at HAProxy is not (docs/balancing.md).
- a v2 header whose CRC32C does not match, from the trusted balancer's own address: refused
  (event=proxy_error), as HAProxy's accept-proxy resets it; before, it was taken.
- HAProxy's `option smtpchk` with `check-send-proxy` (its checks send a v2 LOCAL header, or
  with `send-proxy` a v1 line naming the check's own connection) against mxgate with
  `pregreet.delay`: the server stays UP. Before, mxgate sent the
  pregreet teaser ("220-") to the check, which HAProxy reads as an invalid reply: the
  whole mxgate was DOWN at the first check. Proxied clients still get the pregreet test.
- those checks, one every `inter`, log nothing at info (event=connect/disconnect at debug)
  and stay out of `mxgatectl top clients`, as HAProxy's dontlognull keeps them out of its
  log; before, each check was two info lines and the balancer the top client.
"""
import json
import os
import re
import socket
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('haproxy', 'swaks')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'
CLIENT = '127.0.0.3'


def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xffffffff


def v2_crc(src, good=True):
    """A v2 PROXY TCP4 header naming src, with a CRC32C TLV (right or off by one bit)."""
    body = socket.inet_aton(src) + socket.inet_aton('127.0.0.1') + struct.pack('!HH', 40000, 25)
    body += b'\x03\x00\x04' + b'\0\0\0\0'
    h = b'\r\n\r\n\x00\r\nQUIT\n\x21\x11' + struct.pack('!H', len(body)) + body
    c = crc32c(h) ^ (0 if good else 1)
    return h[:-4] + struct.pack('!I', c)


be = mt.Backend(name='be')
certfile, keyfile = mt.cert()
mx = mt.Mxgate(mt.config([be.url], workers=1, listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True},
                                                      {'address': '127.0.0.1:0', 'proxy_protocol': True,
                                                       'tls': 'implicit'}],
                         tls={'certificate': certfile, 'key': keyfile},
                         trusted_proxies=['127.0.0.1/32'], pregreet={'delay': '1s', 'pass_ttl': '0s'},
                         log={'level': 'debug'}, control={'socket': os.path.join(mt.TMP, 'ctl.sock')}),
               name='mx-lb')

mx_tls_port = mx.ports[1]
ports = {k: mt.hold_port().port for k in ('v1', 'v2', 'tls', 'pass')}
pem = os.path.join(mt.TMP, 'haproxy.pem')
with open(pem, 'w') as f:
    f.write(open(certfile).read() + open(keyfile).read())
stats = os.path.join(mt.TMP, 'haproxy.sock')
conf = os.path.join(mt.TMP, 'haproxy.cfg')
with open(conf, 'w') as f:
    f.write('''global
  log stderr format short local0 info
  stats socket {stats} level admin
defaults
  mode tcp
  log global
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout check {tcheck}s
frontend smtp_v1
  bind 127.0.0.1:{v1}
  default_backend mx_v1
frontend smtp_v2
  bind 127.0.0.1:{v2}
  default_backend mx_v2
frontend smtps
  bind 127.0.0.1:{tls} ssl crt {pem}
  default_backend mx_ssl
frontend smtps_pass
  bind 127.0.0.1:{pass}
  default_backend mx_pass
backend mx_pass
  server mx 127.0.0.1:{mx_tls} send-proxy-v2
backend mx_v1
  server mx 127.0.0.1:{mx} send-proxy
backend mx_v2
  server mx 127.0.0.1:{mx} send-proxy-v2 proxy-v2-options crc32c
backend mx_ssl
  server mx 127.0.0.1:{mx} send-proxy-v2-ssl-cn proxy-v2-options crc32c,authority,unique-id,ssl,cert-cn,ssl-cipher,cert-sig,cert-key
backend mx_chk
  option smtpchk EHLO lb.example.test
  server mx 127.0.0.1:{mx} send-proxy-v2 check check-send-proxy inter 300ms rise 1 fall 1
backend mx_chk1
  option smtpchk EHLO lb.example.test
  server mx 127.0.0.1:{mx} send-proxy check check-send-proxy inter 300ms rise 1 fall 1
'''.format(stats=stats, tcheck=mt.slack(5), pem=pem, mx=mx.port, mx_tls=mx_tls_port, **ports))
ha = mt.spawn([mt.tool('haproxy'), '-db', '-f', conf], 'haproxy')
for p in ports.values():
    if not mt.wait_port(p, 10, ha):
        mt.fail('haproxy did not listen on %d: %s' % (p, mt.log_of('haproxy')[-800:]))


def delivered(tag):
    return [m for m in be.messages if ('<%s@' % tag).encode() in m['data']]


def through(port, tag, *extra):
    return mt.swaks(port, '--local-interface', CLIENT, '--from', FROM, '--to', RCPT,
                    '--header', 'Message-ID: <%s@mxtest.example>' % tag, *extra)


# ---------------------------------------------------------------- HAProxy's own headers
for name, port, extra in (('send-proxy (v1)', ports['v1'], ()),
                          ('send-proxy-v2 + crc32c', ports['v2'], ()),
                          ('TLS at HAProxy, send-proxy-v2-ssl-cn + every TLV', ports['tls'], ('--tlsc',)),
                          ('TLS passed through to mxgate (tls: implicit), send-proxy-v2', ports['pass'], ('--tlsc',))):
    tag = 'ha-' + re.sub(r'\W+', '-', name)
    r = through(port, tag, *extra)
    got = delivered(tag)
    mt.check(r.returncode == 0 and len(got) == 1, '%s: delivered through HAProxy (rc=%d %s)'
             % (name, r.returncode, r.stdout.strip().splitlines()[-3:] if r.returncode else ''))
    mt.check(bool(got) and got[0]['xclient'].get('ADDR') == CLIENT,
             '%s: the backend hears the client behind HAProxy, %s (%s)' % (name, CLIENT, got[0]['xclient'] if got else None))
mt.check(mx.count_log(r'event=connect client=127\.0\.0\.3 ') == 4, 'mxgate logs the client behind HAProxy each time')
got = delivered('ha-TLS-passed-through-to-mxgate-tls-implicit-send-proxy-v2')
mt.check(bool(got) and b'with ESMTPS' in got[0]['data'].split(b'\r\n\r\n')[0],
         'TLS passed through HAProxy: mxgate terminates it, its Received field says ESMTPS')
got = delivered('ha-TLS-at-HAProxy-send-proxy-v2-ssl-cn-every-TLV')
mt.check(bool(got) and b'with ESMTPS' not in got[0]['data'].split(b'\r\n\r\n')[0],
         'TLS at HAProxy: clear text to mxgate, as docs/balancing.md says (no ESMTPS)')
mt.check(mx.count_log(r'event=proxy_error') == 0, 'no PROXY header of HAProxy was refused')

# ---------------------------------------------------------------- CRC32C
n = len(be.attempts)
for good in (True, False):
    c = mt.Client(mx.port, greet=False)
    c.send(v2_crc('198.18.0.40', good))
    code, text = c.reply()
    if good:
        mt.check(code == 220, 'a v2 header with a right CRC32C is taken (%s %s)' % (code, text[:40]))
    else:
        mt.check(code != 220 and c.is_closed(3), 'a v2 header whose CRC32C does not match: closed, no greeting (%s %r)'
                 % (code, text[:40]))
    c.close()
mt.check(mx.wait_log(r'event=proxy_error peer=127\.0\.0\.1 reason="PROXY v2 CRC32C mismatch"', 3) is not None,
         'logged as event=proxy_error reason="PROXY v2 CRC32C mismatch"')
mt.check(len(be.attempts) == n, 'nothing delivered from the header with a bad checksum')


# ---------------------------------------------------------------- smtpchk with pregreet
def server_status(backend):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(stats)
    s.sendall(b'show stat\n')
    with s.makefile('rb') as f:     # HAProxy closes after the answer
        out = f.read()
    s.close()
    for line in out.decode().splitlines():
        f = line.split(',')
        if len(f) > 17 and f[0] == backend and f[1] == 'mx':
            return f[17]
    return None


mt.check(mt.wait_for(lambda: mx.count_log(r'event=pregreet_skipped reason=proxy_local client=127\.0\.0\.1') >= 3,
                     mt.slack(10)), "HAProxy's checks (v2 LOCAL) are greeted without the pregreet teaser (three logged)")
status = server_status('mx_chk')
mt.check(status == 'UP' and not re.search(r'mx_chk/mx is DOWN', mt.log_of('haproxy')),
         "HAProxy's option smtpchk keeps mxgate UP with pregreet.delay on (status %s; %s)"
         % (status, ' | '.join(re.findall(r'Server mx_chk/mx is DOWN[^\n]*', mt.log_of('haproxy'))[:1])))
# send-proxy (v1): HAProxy's check names its own connection (the spec's getsockname/getpeername
# pair), which is how mxgate tells it from a relayed client
status = server_status('mx_chk1')
mt.check(status == 'UP' and not re.search(r'mx_chk1/mx is DOWN', mt.log_of('haproxy')),
         "the same with send-proxy (v1) checks (status %s; %s)"
         % (status, ' | '.join(re.findall(r'Server mx_chk1/mx is DOWN[^\n]*', mt.log_of('haproxy'))[:1])))
# the checks, every 300 ms, are no news: their sessions are logged at debug
checks = set(re.findall(r' (\S+) event=pregreet_skipped reason=proxy_local', mx.log()))
loud = [ln for ln in mx.log().splitlines() if ' info ' in ln and ln.split(' ')[2] in checks]
mt.check(len(checks) >= 3 and not loud, "HAProxy's checks (v2 LOCAL, %d sessions) log nothing at info (%s)"
         % (len(checks), loud[:1]))
mt.check(re.search(r' debug \S+ event=disconnect client=127\.0\.0\.1 commands=2 messages=0 errors=0', mx.log())
         is not None, 'a check session (EHLO, QUIT) ends with a debug event=disconnect')
rc, out, err = mt.ctl(os.path.join(mt.TMP, 'ctl.sock'), '--json', 'top', 'clients', '50')
try:
    by = {e['client']: e['count'] for e in json.loads(out)['by_sessions']}
except (ValueError, KeyError, TypeError):
    by = None
# 127.0.0.1: only the three connections mt.wait_port made to HAProxy's frontends
mt.check(by is not None and by.get('127.0.0.1', 0) <= 3 and by.get(CLIENT, 0) >= 3,
         "mxgatectl top clients leaves HAProxy's %d checks out (%s)" % (len(checks), by if by is not None else out + err))
# a client relayed by HAProxy is still tested: it gets the teaser
c = mt.Client(ports['v2'], greet=False, source=CLIENT)
first = c.sock.recv(100)
mt.check(first.startswith(b'220-'), 'a client relayed by HAProxy still gets the pregreet teaser (%r)' % first[:20])
c.close()

mx.stop()
mt.finish()
