#!/usr/bin/env python3
"""HAProxy with a dual-stack bind in front, Postfix with the PROXY protocol behind.

HAProxy's `bind :::25` (Linux's default: IPv4 clients arrive as ::ffff:a.b.c.d) sends an
IPv4 client in a v2 PROXY header of family TCP over IPv6 with v4-mapped addresses (these
exact bytes were captured from HAProxy 2.6). mxgate with `client_identity: proxy_v2` passed
the mapped pair on, and a Postfix with `smtpd_upstream_proxy_protocol = haproxy` and
`inet_protocols = ipv4` (an IPv4-only host) answers such a header `421 4.3.0 Server local
error` ("haproxy read: Postfix IPv6 support is disabled"): every message of every IPv4
client was deferred, and each 421 counted toward the backend's fall. Now a v4-mapped pair
goes out as TCP over IPv4: Postfix delivers and logs the client."""
import os
import re
import socket
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix')
mt.need_postfix()

pport = mt.free_port()
mt.postfix_instance('pfmapped', pport, '''smtpd_upstream_proxy_protocol = haproxy
smtpd_upstream_proxy_timeout = 2s
relay_domains = example.org
relayhost = [127.0.0.1]:9
smtpd_recipient_restrictions = reject_unauth_destination
''')
mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % pport], workers=1,
                         listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                         trusted_proxies=['127.0.0.1/32'], backends={'client_identity': 'proxy_v2'}),
               name='mx-mapped')


def v2_mapped(src, sport):
    """HAProxy 2.6's header for an IPv4 client accepted on `bind :::25`."""
    a = socket.inet_pton(socket.AF_INET6, '::ffff:' + src) + socket.inet_pton(socket.AF_INET6, '::ffff:127.0.0.1')
    body = a + struct.pack('!HH', sport, 25)
    return b'\r\n\r\n\x00\r\nQUIT\n\x21\x21' + struct.pack('!H', len(body)) + body


c = mt.Client(mx.port, greet=False)
c.send(v2_mapped('198.18.0.9', 40001))
c.greeting = c.reply()
c.ehlo()
code, text = mt.send_mail(mx.port, 'sender@example.net', ['rcpt@example.org'], mt.message('mapped'), client=c)
c.close()
mt.check(code == 250, 'a client named v4-mapped by the balancer is delivered through Postfix (%s %s)' % (code, text))
log = mt.wait_log_of('pfmapped', r'connect from \S+\[198\.18\.0\.9\]', mt.slack(5))
mt.check(log is not None, 'Postfix logs the client 198.18.0.9 from the PROXY v2 header mxgate sent')
mt.check(not re.search(r'IPv6 support is disabled', mt.log_of('pfmapped')),
         'Postfix saw no IPv6 header (%s)' % ' | '.join(re.findall(r'warning: haproxy read: Postfix IPv6[^\n]*', mt.log_of('pfmapped'))[:1]))
mt.check(mx.count_log(r'event=backend_down') == 0, 'the backend stayed up')
mx.stop()
mt.finish()
