#!/usr/bin/env python3
"""A non-SMTP command is logged with what the client sent, as postscreen's
"NON-SMTP COMMAND from [198.18.51.1]:40000 after CONNECT: GET /wp-login.php HTTP/1.1".

Before, the log said only `event=non_smtp client=198.18.51.1` (drop) or nothing but
`event=protocol_test test=non_smtp_command` (enforce, score, ignore): an operator could not
tell a web scanner from a monitoring probe pointed at the wrong port, or from an open-proxy
test (CONNECT host:25). Now `event=non_smtp` carries `command=` (the first 100 octets,
escaped) and the command before it (`after=`, CONNECT when it was the first), whatever the
action. A TLS hello on a plaintext port is the same event with its first octets.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
a = mt.Mxgate(mt.proxied_config([be.url], pregreet={'non_smtp_command_action': 'drop'}), 'drop')
b = mt.Mxgate(mt.proxied_config([be.url], pregreet={'non_smtp_command_action': 'enforce'}), 'enforce')

c = mt.Client(a.port, proxy_src='198.18.51.1')
r = c.cmd('GET /wp-login.php HTTP/1.1')
mt.check(r[0] == 421, 'drop: the HTTP command is answered 421 and closed: %r' % (r,))
c.close()
mt.check(a.wait_log(r'event=non_smtp client=198\.18\.51\.1 after=CONNECT command="GET /wp-login\.php HTTP/1\.1"'),
         'drop: the log names the command and that it came first')

c = mt.Client(b.port, proxy_src='198.18.51.2')
c.cmd('EHLO probe.example')
r = c.cmd('CONNECT 198.51.100.7:25 HTTP/1.0')
mt.check(r[0] is not None and r[0] >= 500, 'enforce: the command is refused and the session goes on: %r' % (r,))
c.close()
mt.check(b.wait_log(r'event=non_smtp client=198\.18\.51\.2 after=EHLO command="CONNECT 198\.51\.100\.7:25 HTTP/1\.0"'),
         'enforce: logged too, after EHLO')

s = socket.create_connection(('127.0.0.1', a.port), 5)
s.sendall(mt.proxy_v2('198.18.51.3', a.port))
s.settimeout(mt.slack(5))
buf = b''
while b'\r\n' not in buf:
    buf += s.recv(4096)
s.sendall(b'\x16\x03\x01\x00\x05hello')
s.close()
mt.check(a.wait_log(r'event=non_smtp client=198\.18\.51\.3 after=CONNECT command="\\x16\\x03\\x01'),
         'a TLS hello is logged with its first octets escaped')
mt.finish()
