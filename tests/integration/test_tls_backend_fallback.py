#!/usr/bin/env python3
"""Opportunistic STARTTLS to a backend whose TLS does not work (RFC 7435).

A backend may offer STARTTLS and then fail the handshake: it answers 220 and closes (a
Postfix whose key went missing does that on some builds), sends something that is not TLS,
or speaks only TLS 1.0/1.1 (old appliances) while mxgate requires 1.2. Encryption to the
backend is opportunistic, so the message must still be delivered, in clear, as Postfix's
smtp client does (`smtp_tls_security_level = may`: "When TLS handshake fails for an
opportunistic TLS session, rather than give up on mail delivery, the Postfix SMTP client
will try again with TLS disabled", TLS_README). The health probes (EHLO + QUIT) never try
STARTTLS, so such a backend stays "up".

Before the fix every message got 451 4.4.1 for as long as the backend's TLS stayed broken
(one attempt, "TLS error" or "connection closed", then "no backend available"): mail to a
backend Postfix delivers to never arrived.

Also here: a backend answering STARTTLS with 454 (RFC 3207: TLS not available) gets the
message in clear, and a working STARTTLS backend still gets TLS (the fallback is kept to
the backend that failed)."""
import os
import socket
import ssl
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

crt, key = mt.cert()


class BrokenTLS:
    """An ESMTP backend offering STARTTLS that breaks it in `mode`: 'close' (220, then
    closes), 'garbage' (220, then plaintext), 'tls11' (220, then a TLS server capped at
    TLS 1.1), '454' (refuses STARTTLS), 'plain' (does not offer it), 'inject' (220 and a
    reply in clear in one write, then a working TLS). Records (tls, data) per message and the STARTTLS
    commands it got."""

    def __init__(self, mode):
        self.mode, self.messages, self.starttls = mode, [], 0
        self.hold = mt.hold_port()
        self.port = self.hold.port
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.s.bind(('127.0.0.1', self.port))
        self.s.listen(64)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return 'smtp://127.0.0.1:%d' % self.port

    def _accept(self):
        while True:
            c, _ = self.s.accept()
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self._session(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def _session(self, c):
        f, w, tls = c.makefile('rb'), c.sendall, False
        w(b'220 broken.test ESMTP\r\n')
        while True:
            line = f.readline(10000)
            if not line:
                return
            verb = line.split(b' ', 1)[0].strip().upper()
            if verb == b'EHLO':
                w(b'250-broken.test\r\n' + (b'' if tls or self.mode == 'plain' else b'250-STARTTLS\r\n') +
                  b'250 PIPELINING\r\n')
            elif verb == b'STARTTLS':
                with self.lock:
                    self.starttls += 1
                if self.mode == '454':
                    w(b'454 4.7.0 TLS not available due to local problem\r\n')
                    continue
                if self.mode == 'inject':
                    # a reply in clear behind the 220, in the same write: RFC 3207 5, nothing
                    # before the handshake may be taken as the TLS session's (CVE-2011-0411's
                    # injection, seen from the client)
                    w(b'220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 PIPELINING\r\n')
                else:
                    w(b'220 2.0.0 Ready to start TLS\r\n')
                if self.mode == 'close':
                    return
                if self.mode == 'garbage':
                    w(b'this is not TLS\r\n' * 8)
                    f.readline(10000)      # the client's alert or EOF
                    return
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(crt, key)
                if self.mode == 'tls11':
                    ctx.minimum_version = ssl.TLSVersion.TLSv1
                    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
                    ctx.set_ciphers('ALL:@SECLEVEL=0')
                c = ctx.wrap_socket(c, server_side=True)   # fails for tls11: the session ends
                f, w, tls = c.makefile('rb'), c.sendall, True
            elif verb in (b'MAIL', b'RCPT', b'RSET', b'NOOP'):
                w(b'250 2.0.0 Ok\r\n')
            elif verb == b'DATA':
                w(b'354 go ahead\r\n')
                data = b''
                while True:
                    ln = f.readline(100000)
                    if not ln or ln == b'.\r\n':
                        break
                    data += ln
                with self.lock:
                    self.messages.append((tls, data))
                w(b'250 2.0.0 Ok: queued\r\n')
            elif verb == b'QUIT':
                w(b'221 2.0.0 Bye\r\n')
                return
            else:
                w(b'502 5.5.2 Error: command not recognized\r\n')


for mode in ('close', 'garbage', 'tls11', '454'):
    be = BrokenTLS(mode)
    good = mt.Backend(starttls=True, xclient=False, name='good-' + mode)
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends={'client_identity': 'none', 'pool_size': 0,
                                                         'routes': [{'domains': ['good.test'], 'servers': [good.url]}]}),
                   name='mx-' + mode)
    for i in (1, 2):
        tag = '%s-%d' % (mode, i)
        r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag))
        got = [m for m in be.messages if ('<%s@' % tag).encode() in m[1]]
        mt.check(r[0] == 250 and len(got) == 1 and got[0][0] is False,
                 'backend STARTTLS %s, message %d: delivered in clear (%s, %d copies)' % (mode, i, r, len(got)))
    # after a failed handshake the next connection does not try TLS again (a 454 is no
    # failure: each connection asks)
    want = 2 if mode == '454' else 1
    mt.check(be.starttls == want, 'backend STARTTLS %s: %d STARTTLS for the two messages (%d)' % (mode, want, be.starttls))
    if mode != '454':
        mt.check(mx.wait_log(r'event=backend_tls_failed backend=smtp://127\.0\.0\.1:%d reason="' % be.port, 3) is not None,
                 'backend STARTTLS %s: the failed handshake is logged (event=backend_tls_failed)' % mode)
    # another backend that speaks TLS still gets it
    r = mt.send_mail(mx.port, 'a@example.org', ['b@good.test'], mt.message('good-' + mode))
    got = good.by_tag('good-' + mode)
    mt.check(r[0] == 250 and len(got) == 1 and got[0]['tls'] in ('TLSv1.2', 'TLSv1.3'),
             'backend STARTTLS %s: a working backend still gets TLS (%s)' % (mode, got and got[0]['tls']))
    mx.stop()

# A backend (or a man in the middle) that puts a reply in clear behind its 220 to STARTTLS,
# in the same write: those octets are not read (RFC 3207 5; the health probe dropped them
# already), the handshake goes on and the message goes over TLS. The relay read them as a
# reply during the handshake and closed the connection without a word to the session, whose
# transaction then waited for an open that never came (the client timed out).
be = BrokenTLS('inject')
mx = mt.Mxgate(mt.config([be.url], workers=1, backends={'client_identity': 'none', 'pool_size': 0,
                                                     'max_attempts': 1, 'reply_timeout': '3s'}),
               name='mx-inject')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('inject-1'), timeout=20)
got = [m for m in be.messages if b'<inject-1@' in m[1]]
mt.check(r[0] == 250 and len(got) == 1 and got[0][0] is True,
         'backend STARTTLS with a reply injected behind its 220: delivered over TLS (%s, %s)'
         % (r, [g[0] for g in got]))
mx.stop()

# backends.require_tls (Postfix's smtp_tls_security_level = encrypt): never in clear. Each
# broken backend, and one that offers no STARTTLS, gets no message; the client gets 4xx
# (it retries) and a working TLS backend still takes the mail.
for mode in ('close', 'garbage', 'tls11', '454', 'plain'):
    be = BrokenTLS(mode)
    good = mt.Backend(starttls=True, xclient=False, name='rgood-' + mode)
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends={'client_identity': 'none', 'pool_size': 0, 'require_tls': True,
                                                         'max_attempts': 1,
                                                         'routes': [{'domains': ['good.test'], 'servers': [good.url]}]}),
                   name='mx-req-' + mode)
    for i in (1, 2):
        tag = 'req-%s-%d' % (mode, i)
        r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag))
        got = [m for m in be.messages if ('<%s@' % tag).encode() in m[1]]
        mt.check(r[0] is not None and 400 <= r[0] < 500 and not got,
                 'require_tls, backend STARTTLS %s, message %d: 4xx, nothing sent in clear (%s, %d copies)'
                 % (mode, i, r, len(got)))
    r = mt.send_mail(mx.port, 'a@example.org', ['b@good.test'], mt.message('rgood-' + mode))
    got = good.by_tag('rgood-' + mode)
    mt.check(r[0] == 250 and len(got) == 1 and got[0]['tls'] in ('TLSv1.2', 'TLSv1.3'),
             'require_tls: a working TLS backend gets the message over TLS (%s)' % (got and got[0]['tls']))
    mx.stop()
mt.finish()
