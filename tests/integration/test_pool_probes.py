#!/usr/bin/env python3
"""Health probes judged against what delivery needs, as an operator coming from HAProxy
(`option smtpchk`, `check inter/rise/fall`) reads /readyz and `mxgatectl backends`: a server
the probes call up must be one a message can go to.

- backends.require_tls with a server that offers no STARTTLS: every delivery fails there
  ("STARTTLS not offered"), so the probe must fail too. Before the fix the probe (connect,
  220, EHLO 250) passed: traffic took the server down, the next `rise` probes brought it back
  up, over and over, and /readyz said ready while no message could be delivered.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


mt.need()

# ---------------------------------------------------------------- require_tls, no STARTTLS
if want('requiretls'):
    plain = mt.Backend(name='plain')            # no STARTTLS in its EHLO reply
    tls = mt.Backend(name='tls', starttls=True)
    cfg = mt.config([plain.url], workers=1, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                    backends={'require_tls': True,
                              'health_check': {'interval': '200ms', 'timeout': '1s', 'fall': 1, 'rise': 1}})
    mx = mt.Mxgate(cfg, name='mx-requiretls')
    mp = mx.metrics_port
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'requiretls: started')
    # several probe rounds: each one is a connection to the server
    base = plain.connections
    mt.check(mt.wait_for(lambda: plain.connections >= base + 5, timeout=mt.slack(10)),
             'requiretls: the probes run (%d connections)' % plain.connections)
    st = mt.http_get(mp, '/readyz')
    mt.check(st[0] == 503, 'requiretls: a server offering no STARTTLS is not ready under require_tls (%s %r)' % st)
    down = mx.wait_log(r'event=backend_down backend=%s reason="health check: STARTTLS not offered[^"]*"' % plain.url, 1)
    mt.check(down is not None, 'requiretls: logged down by the probe, reason STARTTLS not offered')
    body = mt.http_get(mp, '/metrics')[1]
    mt.check(re.search(r'^mxgate_backend_probe_failures_total\{backend="%s",stage="ehlo"\} [1-9]' % re.escape(plain.url),
                       body, re.M) and re.search(r'^mxgate_backend_probe_failures_total\{backend="%s",stage="tls"\} 0$'
                                                 % re.escape(plain.url), body, re.M),
             'requiretls: counted in mxgate_backend_probe_failures_total, stage ehlo (tls 0):\n%s' %
             '\n'.join(x for x in body.splitlines() if 'probe_failures' in x))
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('rt-plain'))
    mt.check(r.code is not None and r.code // 100 == 4 and not plain.messages,
             'requiretls: its mail gets 4xx, nothing in clear (%s %s)' % (r.code, r.text[:60]))
    base = plain.connections
    mt.wait_for(lambda: plain.connections >= base + 4, timeout=mt.slack(10))
    mt.check(mx.count_log(r'event=backend_up backend=%s' % plain.url) == 0,
             'requiretls: never brought back up by a probe (no event=backend_up)')
    mt.check(mt.http_get(mp, '/readyz')[0] == 503, 'requiretls: still not ready after the delivery and more probes')
    # a server that offers STARTTLS is up, and takes the mail over TLS
    mark = mx.log_size()
    mx.reload(dict(cfg, backends=dict(cfg['backends'], servers=[tls.url])))
    mt.check(mx.wait_log(r'event=reloaded', 10, start=mark) is not None, 'requiretls: reloaded with a TLS server')
    mt.check(mt.wait_for(lambda: mt.http_get(mp, '/readyz')[0] == 200, timeout=mt.slack(10)),
             'requiretls: a server offering STARTTLS is ready (%s %r)' % mt.http_get(mp, '/readyz'))
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('rt-tls'))
    mt.check(r.code == 250 and tls.messages and tls.messages[0].get('tls'),
             'requiretls: delivered over TLS (%s %s)' % (r.code, r.text[:60]))
    mx.stop()
    plain.stop()
    tls.stop()

# ---------------------------------------------------------------- health_check.timeout
# The probe's timeout bounds the whole probe (connect, 220, the EHLO reply), not only the
# greeting: a server that greets at once and answers EHLO after 2 s fails a 1 s probe.
def slow_ehlo_server():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.1', 0))
    ls.listen(16)

    def serve(c):
        with c:
            try:
                c.sendall(b'220 slow ESMTP\r\n')
                f = c.makefile('rb')
                while True:
                    line = f.readline()
                    if not line:
                        return
                    if line[:4].upper() in (b'EHLO', b'LHLO'):
                        time.sleep(2)
                        c.sendall(b'250-slow\r\n250 PIPELINING\r\n')
                    elif line[:4].upper() == b'QUIT':
                        c.sendall(b'221 bye\r\n')
                        return
                    else:
                        c.sendall(b'250 ok\r\n')
            except OSError:
                pass

    def loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return ls, ls.getsockname()[1]


if want('probetimeout'):
    ls, port = slow_ehlo_server()
    url = 'smtp://127.0.0.1:%d' % port
    mx = mt.Mxgate(mt.config([url], workers=1, backends={'health_check': {'interval': '5s', 'timeout': '1s'}}),
                   name='mx-probetimeout')
    mt.check(mx.wait_log(r'event=backend_down backend=%s reason="health check: timeout during ehlo"' % url, 10) is not None,
             'probetimeout: greeting at once, EHLO reply after 2 s: a 1 s probe fails (timeout during ehlo)')
    mx.stop()
    ls.close()

# ---------------------------------------------------------------- tls_verify, a refused certificate
# A server whose certificate fails verification gets no message (relay.c refuses it), so the
# probe must not call it up: before the fix the probes never spoke STARTTLS, every delivery
# took the server down (fall) and the next `rise` probes brought it back, over and over, while
# /readyz said ready. HAProxy's check-ssl judges the handshake; the probe now does STARTTLS and
# verifies the certificate as a delivery does.
if want('verify'):
    mt.need('openssl')
    crt = mt.cert()[0]                               # the backends' self-signed mx.test certificate
    good = mt.Backend(name='vgood', starttls=True, xclient=False)
    bad = mt.Backend(name='vbad', starttls=True, xclient=False)
    sock = os.path.join(mt.TMP, 'verify-control.sock')
    cfg = mt.config([{'address': bad.url, 'tls_verify_name': 'mx9.test'}], workers=1, control={'socket': sock},
                    metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                    backends={'client_identity': 'none', 'tls_verify': True, 'tls_ca_file': crt,
                              'health_check': {'interval': '200ms', 'timeout': '2s', 'fall': 1, 'rise': 1}})
    mx = mt.Mxgate(cfg, name='mx-verify')
    mp = mx.metrics_port
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'verify: started')
    down = mx.wait_log(r'event=backend_down backend=%s reason="health check: TLS [^"]*certificate verify '
                       r'failed: [Hh]ostname mismatch[^"]*"' % bad.url, 10)
    mt.check(down is not None, 'verify: the probe takes a server with a refused certificate down, saying why\n%s'
             % mx.tail())
    mt.check(re.search(r'^mxgate_backend_probe_failures_total\{backend="%s",stage="tls"\} [1-9]' % re.escape(bad.url),
                       mt.http_get(mp, '/metrics')[1], re.M), 'verify: counted in mxgate_backend_probe_failures_total, stage tls')
    st = mt.http_get(mp, '/readyz')
    mt.check(st[0] == 503, 'verify: not ready with only a server whose certificate is refused (%s %r)' % st)
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('vf-bad'))
    mt.check(r.code is not None and r.code // 100 == 4 and not bad.messages,
             'verify: its mail gets 4xx, nothing delivered (%s %s)' % (r.code, r.text[:60]))
    base = bad.connections
    mt.check(mt.wait_for(lambda: bad.connections >= base + 4, timeout=mt.slack(10)),
             'verify: the probes go on (%d connections)' % bad.connections)
    mt.check(mx.count_log(r'event=backend_up backend=%s' % bad.url) == 0,
             'verify: never brought back up by a probe (no event=backend_up)\n%s' % mx.tail())
    mt.check(mt.http_get(mp, '/readyz')[0] == 503, 'verify: still not ready after the delivery and more probes')
    out = subprocess.run([mt.mxgatectl(), '-s', sock, 'backends'], capture_output=True, text=True,
                         timeout=30).stdout
    mt.check(bad.url in out and 'down' in out, 'verify: mxgatectl backends says down:\n%s' % out)
    # the same certificate, verified against its right name: up, ready, delivered over TLS
    mark = mx.log_size()
    mx.reload(dict(cfg, backends=dict(cfg['backends'], servers=[{'address': good.url, 'tls_verify_name': 'mx.test'}])))
    mt.check(mx.wait_log(r'event=reloaded', 10, start=mark) is not None, 'verify: reloaded with a good name')
    mt.check(mt.wait_for(lambda: mt.http_get(mp, '/readyz')[0] == 200, timeout=mt.slack(10)),
             'verify: a server whose certificate verifies is ready (%s %r)' % mt.http_get(mp, '/readyz'))
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('vf-good'))
    mt.check(r.code == 250 and good.messages and good.messages[0].get('tls'),
             'verify: delivered over verified TLS (%s %s)' % (r.code, r.text[:60]))
    mt.check(mx.count_log(r'event=backend_down backend=%s' % good.url) == 0,
             'verify: the good server was never taken down by a probe\n%s' % mx.tail())
    mx.stop()
    good.stop()
    bad.stop()

# ---------------------------------------------------------------- TLS session resumption
# A probe under require_tls/tls_verify resumes the TLS session of the probe before it (a TLS
# 1.3 ticket): the backend signs nothing and sends no certificate, mxgate verifies no chain,
# every interval. Before, every probe was a full handshake. A backend whose certificate
# changed, with new ticket keys (a restart, here a new server context), refuses the ticket:
# the probe's handshake is a full one, and a certificate that does not verify takes it down.
if want('tlsresume'):
    mt.need('openssl')
    crt = mt.cert()[0]
    be = mt.Backend(name='resume', starttls=True, xclient=False)
    cfg = mt.config([{'address': be.url, 'tls_verify_name': 'mx.test'}], workers=1,
                    backends={'client_identity': 'none', 'tls_verify': True, 'tls_ca_file': crt,
                              'health_check': {'interval': '100ms', 'timeout': '2s', 'fall': 1, 'rise': 1}})
    mx = mt.Mxgate(cfg, name='mx-resume')
    mt.check(mt.wait_for(lambda: len(be.tls_handshakes) >= 8, timeout=mt.slack(10)),
             'tlsresume: the probes do STARTTLS (%d handshakes)' % len(be.tls_handshakes))
    hs = list(be.tls_handshakes[:8])
    mt.check(hs[0] is False and all(hs[1:]), 'tlsresume: the first probe\'s handshake is a full one, the '
             'next ones resume its session (%s)' % hs)
    mt.check(mx.count_log(r'event=backend_down') == 0, 'tlsresume: the backend stays up')
    # another certificate for the same name, not signed by the CA mxgate trusts
    crt2, key2 = os.path.join(mt.TMP, 'other.pem'), os.path.join(mt.TMP, 'other.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mx.test',
                    '-addext', 'subjectAltName=DNS:mx.test', '-keyout', key2, '-out', crt2],
                   capture_output=True, check=True, timeout=mt.slack(60))
    # A probe runs every 100 ms: one may have taken the old context (STARTTLS read before
    # the swap) and resume with it after n is read, so the handshakes after n are those
    # (resumed, True), then the first with the new context (full, False: its keys do not
    # know the ticket), whose certificate is refused. The server records that one when its
    # side of the handshake fails, which may be after mxgate logged the probe's failure.
    n = len(be.tls_handshakes)
    be.starttls = (crt2, key2)
    down = mx.wait_log(r'event=backend_down backend=%s reason="health check: TLS [^"]*certificate verify failed'
                       % be.url, 10)
    mt.check(down is not None, 'tlsresume: a new certificate (new ticket keys) is verified, and refused: down\n%s'
             % mx.tail())
    mt.wait_for(lambda: False in be.tls_handshakes[n:], timeout=10)
    after = list(be.tls_handshakes[n:])
    full = after.index(False) if False in after else None
    mt.check(full is not None and all(after[:full]),
             'tlsresume: the first probe on the new certificate made a full handshake, the ones before it '
             'resumed on the old one (%s)' % after)
    # after a failure the next probe does not offer a session either (nothing to resume)
    be.starttls = True
    up = mt.wait_for(lambda: mx.count_log(r'event=backend_up backend=%s' % be.url) >= 1, timeout=10)
    mt.check(up, 'tlsresume: the first certificate back: up again')
    mx.stop()
    be.stop()

mt.finish()
