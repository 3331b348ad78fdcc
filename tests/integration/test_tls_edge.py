#!/usr/bin/env python3
"""The TLS edge from the outside, as a Postfix smtpd operator tries it in the first week
(what test_core_tls.py does not cover):

- a client that speaks TLS first on a STARTTLS (plaintext) port — a sender configured for
  implicit TLS on port 25 — sends a ClientHello before or after the greeting. Postfix
  (smtpd_forbidden_commands' default `regexp:{{/^[^A-Z]/ Bogus}}`) answers a non-SMTP
  command and disconnects at once; mxgate answered three 500s and then held the connection
  until limits.command_timeout (5 minutes by default). Now: one 500, 421, closed.
- STARTTLS inside implicit TLS: 503, the session goes on.
- renegotiation (TLS 1.2, s_client's R): refused, the daemon unharmed.
- tls.ciphers and the server's order: a TLS 1.2 client preferring ChaCha20 gets the
  configured first cipher; one offering only ciphers outside the list fails the handshake.
- tls.min_version 1.3: a TLS 1.2 client fails, a TLS 1.3 one delivers.
- session resumption: TLS 1.2 session ids (the cache) and TLS 1.3 tickets resume; a
  reload (SIGHUP) ends it once.
- a handshake that stalls is bounded by limits.command_timeout (whole handshake, not per read).
Peers: openssl s_client, Python's ssl."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')

crt, key = mt.cert()
be = mt.Backend(name='tlsedge')
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                                  {'address': '127.0.0.1:0', 'tls': 'implicit'}],
                tls={'certificate': crt, 'key': key,
                     'ciphers': 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305'},
                limits={'command_timeout': '60s'})
mx = mt.Mxgate(cfg, name='mx-tlsedge')
st_port, imp_port = mx.ports


HELLO = mt.tls_client_hello()
mt.check(len(HELLO) > 100 and HELLO[0] == 0x16, 'a ClientHello made (%d octets)' % len(HELLO))

# ------------------------------------------------------------------ TLS first on a plaintext port
for when in ('after the greeting', 'before the greeting'):
    c = mt.Client(st_port, greet=(when == 'after the greeting'))
    n0 = mx.log_size()
    c.send(HELLO)
    closed = c.is_closed(10)
    replies = c.buf.decode('latin-1')
    if when == 'before the greeting':
        mt.check(replies.startswith('220 '), '%s: the greeting first (%r)' % (when, replies[:60]))
    mt.check(closed, '%s: a ClientHello on a STARTTLS port ends the session at once (%r)' % (when, replies[-200:]))
    mt.check(replies.count('500 ') <= 1 and re.search(r'^421 4\.7\.0 .*non-SMTP', replies, re.M) is not None,
             '%s: one 500 at most, then 421 non-SMTP (%r)' % (when, replies))
    mt.check(mx.wait_log(r'event=non_smtp client=127\.0\.0\.1', 5, start=n0) is not None,
             '%s: logged as event=non_smtp' % when)
    c.close()
r = mt.send_mail(st_port, 'a@example.org', ['b@example.test'], mt.message('after-hello'))
mt.check(r[0] == 250, 'the daemon serves the next client (%r)' % (r,))

# ------------------------------------------------------------------ STARTTLS inside implicit TLS
c = mt.Client(imp_port, tls=True)
c.ehlo()
code, text = c.cmd('STARTTLS')
mt.check(code == 503, 'STARTTLS inside implicit TLS: 503 (%s %s)' % (code, text))
mt.check(c.cmd('NOOP')[0] == 250, '... and the session goes on')
c.close()

# ------------------------------------------------------------------ renegotiation
# R only once the EHLO's reply is in: a reply that reaches s_client after its renegotiation
# began fails it with "unexpected record" instead of the server's refusal (seen under load)
p = subprocess.Popen(['openssl', 's_client', '-connect', '127.0.0.1:%d' % imp_port, '-tls1_2'],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = []


def read_out():
    for ln in p.stdout:
        lines.append(ln)


reader = threading.Thread(target=read_out, daemon=True)
reader.start()
p.stdin.write('EHLO x\r\n')
p.stdin.flush()
mt.check(mt.wait_for(lambda: any(ln.startswith('250 ') for ln in list(lines)), 20),
         'renegotiation: the EHLO answered over TLS 1.2 first (%r)' % ''.join(lines)[-300:])
p.stdin.write('R\nNOOP\r\n')
p.stdin.close()
try:
    p.wait(timeout=mt.slack(20))
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
reader.join(mt.slack(10))
out = ''.join(lines)
mt.check('RENEGOTIATING' in out and re.search(r'no renegotiation|handshake failure|alert', out) is not None,
         'renegotiation is refused (%r)' % out[-300:])
mt.check(mx.alive() and mt.send_mail(st_port, 'a@example.org', ['b@example.test'], mt.message('after-reneg'))[0] == 250,
         'the daemon is unharmed by the renegotiation attempt')

# ------------------------------------------------------------------ ciphers and the server's order


def negotiated(port, *args):
    r = mt.s_client(port, 'QUIT\n', starttls=False, extra=args)
    m = re.search(r'^New, (\S+), Cipher is (\S+)', r.stdout, re.M)
    return m.groups() if m else (None, None)


v, ciph = negotiated(imp_port, '-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256')
mt.check(ciph == 'ECDHE-RSA-AES128-GCM-SHA256', 'TLS 1.2: the server\'s order wins over the client\'s (%s)' % ciph)
v, ciph = negotiated(imp_port, '-tls1_2', '-cipher', 'AES256-SHA')
mt.check(ciph in (None, '(NONE)'), 'TLS 1.2: a cipher outside tls.ciphers fails the handshake (%s)' % ciph)

# ------------------------------------------------------------------ resumption
sess = os.path.join(mt.TMP, 'sess-%s.pem')
for ver in ('-tls1_2', '-tls1_3'):
    r1 = mt.s_client(imp_port, 'QUIT\n', starttls=False, extra=(ver, '-sess_out', sess % ver))
    r2 = mt.s_client(imp_port, 'QUIT\n', starttls=False, extra=(ver, '-sess_in', sess % ver))
    mt.check(re.search(r'^New, TLSv', r1.stdout, re.M) and re.search(r'^Reused, TLSv', r2.stdout, re.M),
             '%s: a session resumes' % ver)
r1 = mt.s_client(imp_port, 'QUIT\n', starttls=False, extra=('-tls1_2', '-no_ticket', '-sess_out', sess % 'cache'))
r2 = mt.s_client(imp_port, 'QUIT\n', starttls=False, extra=('-tls1_2', '-no_ticket', '-sess_in', sess % 'cache'))
mt.check(re.search(r'^Reused, TLSv1\.2', r2.stdout, re.M), 'TLS 1.2 without tickets: the session cache resumes')
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reloaded generation=2', 10) is not None, 'SIGHUP: reloaded')
r3 = mt.s_client(imp_port, 'QUIT\n', starttls=False, extra=('-tls1_3', '-sess_in', sess % '-tls1_3'))
mt.check(re.search(r'^New, TLSv1\.3', r3.stdout, re.M), 'after a reload a ticket of the old generation is a new handshake')

# ------------------------------------------------------------------ a stalled handshake
mx.stop()
cfg['limits']['command_timeout'] = '2s'
mx = mt.Mxgate(cfg, name='mx-tlsedge-stall')
st_port, imp_port = mx.ports
s = socket.create_connection(('127.0.0.1', imp_port), mt.slack(10))
n0 = mx.log_size()
# the ClientHello an octet at a time, each read well inside the timeout: the handshake as a
# whole is still bounded
closed = False
for i in range(len(HELLO) - 1):
    try:
        s.sendall(HELLO[i:i + 1])
    except OSError:
        closed = True
        break
    if mx.wait_log(r'event=(timeout|disconnect)', 0.05, start=n0):
        closed = True
        break
mt.check(closed and mx.wait_log(r'event=timeout state=tls', 5, start=n0) is not None,
         'a ClientHello trickled an octet at a time times out (limits.command_timeout for the whole handshake)')
s.close()
# STARTTLS, then silence: the handshake is bounded the same way
c = mt.Client(st_port)
c.ehlo()
n0 = mx.log_size()
code, text = c.cmd('STARTTLS')
mt.check(code == 220 and c.is_closed(10) and mx.wait_log(r'event=timeout state=starttls', 5, start=n0) is not None,
         'STARTTLS and then no ClientHello: closed after limits.command_timeout')
c.close()

# ------------------------------------------------------------------ min_version 1.3
mx.stop()
cfg['tls']['min_version'] = '1.3'
cfg['limits']['command_timeout'] = '60s'
mx = mt.Mxgate(cfg, name='mx-tlsedge-13')
st_port, imp_port = mx.ports
v, ciph = negotiated(imp_port, '-tls1_2')
mt.check(v in (None, '(NONE)'), 'min_version 1.3: a TLS 1.2 client fails (%s)' % v)
v, ciph = negotiated(imp_port, '-tls1_3')
mt.check(v == 'TLSv1.3', 'min_version 1.3: a TLS 1.3 client connects (%s)' % v)
mx.stop()

# ------------------------------------------------------------------ -t: settings accepted but without effect
# tls.ciphers is the TLS 1.2 list: with min_version 1.3 it does nothing; client_ca_file does
# nothing while client_certificate is none. Both were taken in silence.
base = {'certificate': crt, 'key': key}
for what, extra, want in (('ciphers with min_version 1.3', {'ciphers': 'ECDHE+AESGCM', 'min_version': '1.3'},
                           r'warning: tls\.ciphers .*TLS 1\.2'),
                          ('client_ca_file without client_certificate', {'client_ca_file': crt},
                           r'warning: tls\.client_ca_file .*client_certificate')):
    t = dict(base)
    t.update(extra)
    rc, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:2465', 'tls': 'implicit'}], tls=t),
                              'warn-' + what.split()[0])
    mt.check(rc == 0 and re.search(want, out) is not None, '-t: %s is a warning (%s)' % (what, out.strip()))
mt.finish()
