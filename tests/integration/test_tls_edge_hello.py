#!/usr/bin/env python3
"""A TLS ClientHello on a plaintext (STARTTLS) port is told from its record header, not at a
line end (pregreet.non_smtp_command_action: drop, the default).

mxgate took a ClientHello for a command line and judged it at its first LF: a hello with no
0x0a octet (an older client's: RSA suites, no extensions), or one whose first segment holds
none, left the client and mxgate waiting for limits.command_timeout; before the greeting the
hello waited out the whole pregreet delay. Now the record header (0x16 0x03 0x0N) where a
command starts ends the session at once: the greeting (ended, if the pregreet teaser began it),
421 non-SMTP, closed. Every deadline below is far under the configured timeout and delay.
Peers: Python's ssl (MemoryBIO: the hello's octets), openssl s_client -connect (no -starttls)."""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')

crt, key = mt.cert()
be = mt.Backend(name='hello')
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                tls={'certificate': crt, 'key': key}, limits={'command_timeout': '60s'})
mx = mt.Mxgate(cfg, name='mx-hello')
QUICK = mt.slack(5)     # the timeout is 60 s, the pregreet delay 60 s


# An older client's ClientHello: TLS 1.2 in a TLS 1.0 record, three RSA suites, no extensions.
body = b'\x03\x03' + b'\x11' * 32 + b'\x00' + b'\x00\x06\x00\x2f\x00\x35\x00\x3c' + b'\x01\x00'
OLD_HELLO = b'\x16\x03\x01' + (len(body) + 4).to_bytes(2, 'big') + b'\x01' + len(body).to_bytes(3, 'big') + body
mt.check(b'\n' not in OLD_HELLO, 'the old-style ClientHello holds no LF')
PY_HELLO = mt.tls_client_hello()
mt.check(PY_HELLO[:2] == b'\x16\x03' and b'\n' in PY_HELLO, 'a Python ClientHello made (%d octets)' % len(PY_HELLO))
PY_FIRST = PY_HELLO[:PY_HELLO.index(b'\n')]     # its first segment, up to its first LF


def dropped(port, data, what, greet=True):
    c = mt.Client(port, greet=greet)
    n0 = mx.log_size()
    c.send(data)
    closed = c.is_closed(QUICK)
    replies = c.buf.decode('latin-1')
    mt.check(closed, '%s: the session ends at once, not at command_timeout (%r)' % (what, replies[-200:]))
    mt.check(re.search(r'^421 4\.7\.0 .*non-SMTP command\r\n\Z', replies, re.M) is not None and '500 ' not in replies,
             '%s: 421 non-SMTP, no 500 before it (%r)' % (what, replies))
    mt.check(mx.wait_log(r'event=non_smtp client=127\.0\.0\.1', QUICK, start=n0) is not None,
             '%s: logged as event=non_smtp' % what)
    mt.check(mx.count_log(r'test=bare_newline|test=pipelining', start=n0) == 0,
             '%s: no bare-LF or pipelining test failed on the hello\'s octets' % what)
    c.close()
    return replies


# ------------------------------------------------------------------ after the greeting
dropped(mx.port, OLD_HELLO, 'an LF-free ClientHello after the greeting')
dropped(mx.port, PY_FIRST, 'a Python ClientHello\'s first segment (no LF yet)')
dropped(mx.port, PY_HELLO[:3], 'only the record header\'s first three octets')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('after-hello'))
mt.check(r[0] == 250, 'the daemon serves the next client (%r)' % (r,))

# an octet that only starts like a record is no TLS record: judged at its line end, as a
# line not starting with a letter (postscreen's /^[^A-Z]/ non-SMTP command: 421, closed)
c = mt.Client(mx.port)
c.send(b'\x16\x02 x')
c.sock.settimeout(1)
early = c._line()
c.sock.settimeout(c.timeout)
c.send(b'\r\n')
mt.check(early is None and c.reply()[0] == 421, '0x16 0x02: not taken for a record, judged at the line end (%r)' % (early,))
c.close()

# ------------------------------------------------------------------ before the greeting (pregreet)
mx.stop()
cfg['pregreet'] = {'delay': '60s'}
mx = mt.Mxgate(cfg, name='mx-hello-pregreet')
replies = dropped(mx.port, PY_HELLO, 'a Python ClientHello during the pregreet delay', greet=False)
mt.check(replies.startswith('220-') and re.search(r'^220 ', replies, re.M) is not None,
         'the teaser\'s greeting ends before the 421 (%r)' % replies[:80])
dropped(mx.port, OLD_HELLO, 'an LF-free ClientHello during the pregreet delay', greet=False)

# openssl s_client -connect (TLS first): it gives up on the 220; mxgate tells the hello apart
n0 = mx.log_size()
p = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % mx.port, '-servername', 'mx.test'],
                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=mt.slack(30))
mt.check(p.returncode != 0, 'openssl s_client -connect to a STARTTLS port fails (%r)' % p.stdout[-200:])
mt.check(mx.wait_log(r'event=non_smtp client=127\.0\.0\.1', QUICK, start=n0) is not None,
         's_client: its ClientHello is logged as event=non_smtp (not only a closed connection)')

# non_smtp_command_action score: not dropped at the header, judged as a line (as before)
mx.stop()
cfg.pop('pregreet')
cfg['pregreet'] = {'non_smtp_command_action': 'score'}
mx = mt.Mxgate(cfg, name='mx-hello-score')
c = mt.Client(mx.port)
c.send(OLD_HELLO)
mt.check(not c.is_closed(0.5), 'score: an LF-free hello waits for its line end')
c.send(b'\r\n')
mt.check(c.reply()[0] == 500 and c.cmd('NOOP')[0] == 250, 'score: then 500 and the session goes on')
c.close()
mx.stop()
mt.finish()
