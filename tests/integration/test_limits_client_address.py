#!/usr/bin/env python3
"""Which address the limits key on: the client's from the PROXY v2 header (IPv4 and IPv6),
not the balancer's. `key: ip` is the whole address (an IPv4-mapped IPv6 address is its IPv4
one: one bucket; an IPv6 one with limits.client_ipv6_prefix 128, as here: its /64 by default,
see test_limits_ipv6_prefix.py), `key: ip_prefix` the /24 or /64; limits.max_connections_per_ip counts the
PROXY header's address too. A trusted peer's XCLIENT is refused (550 5.7.0): mxgate takes
the client's address from PROXY headers only, so XCLIENT cannot move a client into another
bucket (docs/config.md's trusted_proxies used to say it could send XCLIENT)."""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
rl = {'store': 'local', 'rules': [
    {'key': 'ip', 'count': 'connections', 'limit': '2/1h'},
    {'key': 'ip_prefix', 'count': 'connections', 'limit': '3/1h', 'prefix_v4': 24, 'prefix_v6': 64}]}
n = mt.Mxgate(mt.proxied_config([be.url], ratelimit=rl, limits={'max_connections_per_ip': 1,
                                                                                  'client_ipv6_prefix': 128}), 'node')


def proxy_v2(src, dst_port, sport=40000):
    """A PROXY v2 header from src (IPv4 or IPv6) to the listener."""
    if ':' in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, '::1')
        fam = 0x21
    else:
        body = socket.inet_aton(src) + socket.inet_aton('127.0.0.1')
        fam = 0x11
    body += struct.pack('!HH', sport, dst_port)
    return b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, fam]) + struct.pack('!H', len(body)) + body


def greet(src):
    c = mt.Client(n.port, greet=False)
    c.send(proxy_v2(src, n.port))
    c.greeting = c.reply()
    c.close()
    return c.greeting[0]


def greet_all(srcs):
    """Each session ends before the next begins (max_connections_per_ip is 1 here)."""
    codes = []
    for src in srcs:
        start = n.log_size()
        codes.append(greet(src))
        n.wait_log(r'event=disconnect ', 10, start)
    return codes


codes = greet_all(('198.18.66.1', '::ffff:198.18.66.1', '198.18.66.1'))
mt.check(codes == [220, 220, 421], 'key ip: 198.18.66.1 and ::ffff:198.18.66.1 share one bucket (2/1h): %s' % codes)
codes = greet_all(('198.18.66.2', '198.18.66.3', '198.18.67.1'))
# the refused third connection of 198.18.66.1 gave its ip_prefix charge back: the /24 has 1 left
mt.check(codes == [220, 421, 220], 'key ip_prefix: the /24 had its 3 (3/1h); the next /24 is its own: %s' % codes)

codes = greet_all(('2001:db8:66:1::1', '2001:db8:66:1::2', '2001:db8:66:1::3', '2001:db8:66:1::4', '2001:db8:66:2::1'))
mt.check(codes == [220, 220, 220, 421, 220], 'IPv6: ip_prefix per /64 (3 in 2001:db8:66:1::/64, then another /64): %s' % codes)
codes = greet_all(('2001:db8:67:1::1',) * 3)
mt.check(codes == [220, 220, 421] and 'key=ip value=2001:db8:67:1::1 ' in n.log(),
         'IPv6: key ip per address (2/1h, its /64 would take 3): %s' % codes)
mt.check('event=connect client=2001:db8:66:1::1 ' in n.log(), 'the IPv6 client is logged as itself')

# max_connections_per_ip 1 counts the PROXY header's client, not the balancer (127.0.0.1)
a = mt.Client(n.port, proxy_src='198.18.68.1')
b = mt.Client(n.port, proxy_src='198.18.68.2')
c = mt.Client(n.port, proxy_src='198.18.68.1')
mt.check((a.greeting[0], b.greeting[0], c.greeting[0]) == (220, 220, 421),
         'max_connections_per_ip per PROXY client: %s' % [x.greeting for x in (a, b, c)])

# XCLIENT from a trusted peer (127.0.0.1 is in trusted_proxies) is refused: the client stays
a.ehlo('client.example.org')
code, text = a.cmd('XCLIENT ADDR=198.18.69.1')
mt.check(code == 550 and '5.7.0' in text, 'XCLIENT from a trusted peer: %s %r' % (code, text))
r = mt.send_mail(n.port, 'a@example.org', ['b@example.test'], mt.message('xclient'), client=a)
mt.check(r[0] == 250 and be.by_tag('xclient') and
         be.by_tag('xclient')[0]['xclient'].get('ADDR') == '198.18.68.1',
         'the message is the PROXY client\'s: %r %s' % (r, be.by_tag('xclient')[0]['xclient'] if be.by_tag('xclient') else None))
for x in (a, b, c):
    x.close()
line = [ln for ln in mt.run_mxgate('--dump-config-docs').stdout.splitlines() if ln.startswith('| `trusted_proxies`')]
mt.check(line and 'and XCLIENT' not in line[0], 'the trusted_proxies line does not promise XCLIENT: %r' % line)
n.stop()
mt.finish()
