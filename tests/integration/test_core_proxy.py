#!/usr/bin/env python3
"""Proxy core, client identity: the PROXY protocol in front of mxgate and behind it.

- a listener with proxy_protocol: true takes PROXY v1 and v2 (swaks --proxy-version, raw
  headers incl. IPv6, LOCAL and a header split across writes) from trusted_proxies; the client
  address reaches the backend (XCLIENT ADDR/PORT) and the log.
- from an untrusted source, without a header, or with a malformed one: refused, nothing
  delivered, the daemon unharmed.
- backends.client_identity: proxy_v2 - the backend (a scripted server that parses the
  header) gets a PROXY v2 header naming the real client, also behind a PROXY-in listener,
  and never another client's identity on a reused connection."""
import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'
SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def v2_header(src, dst, sport, dport, command=1):
    if ':' in src:
        addr = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        addr = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    body = addr + struct.pack('!HH', sport, dport) if command == 1 else b''
    return SIG + bytes([0x20 | command, fam if command == 1 else 0]) + struct.pack('!H', len(body)) + body


be = mt.Backend(name='pp')
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                         trusted_proxies=['127.0.0.1/32', '127.0.0.2']), name='mx-pp')


def by_tag(tag, backend=be):
    return [m for m in backend.messages if ('<%s@' % tag).encode() in m['data']]


def swaks_pp(version, src, client_ip, tag):
    fam = 'AF_INET' if version == 2 else 'TCP4'
    return mt.swaks(mx.port, '--local-interface', src, '--proxy-version', str(version), '--proxy-family', fam,
                    '--proxy-source', client_ip, '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1',
                    '--proxy-dest-port', str(mx.port), '--from', FROM, '--to', RCPT,
                    '--header', 'Message-ID: <%s@mxtest.example>' % tag)


# ---------------------------------------------------------------- trusted
r = swaks_pp(2, '127.0.0.1', '198.18.0.9', 'ppv2')
got = by_tag('ppv2')
mt.check(r.returncode == 0 and len(got) == 1, 'PROXY v2 (swaks) from a trusted source delivers (rc=%d)' % r.returncode)
mt.check(bool(got) and got[0]['xclient'].get('ADDR') == '198.18.0.9' and got[0]['xclient'].get('PORT') == '40000',
         'PROXY v2: XCLIENT ADDR=198.18.0.9 PORT=40000 at the backend (%s)' % (got[0]['xclient'] if got else None))
mt.check(mx.wait_log(r'event=connect client=198\.18\.0\.9 port=40000', 3) is not None, 'the log names the proxied client')
mt.check(bool(got) and b'[198.18.0.9]' in got[0]['data'].split(b'\r\n\r\n')[0], 'the Received header names the proxied client')
r = swaks_pp(1, '127.0.0.2', '198.18.0.10', 'ppv1')
got = by_tag('ppv1')
mt.check(r.returncode == 0 and len(got) == 1 and got[0]['xclient'].get('ADDR') == '198.18.0.10',
         'PROXY v1 (swaks) from trusted 127.0.0.2: ADDR=198.18.0.10 at the backend (%s)' % (got[0]['xclient'] if got else r.stdout[-200:]))

c = mt.Client(mx.port, greet=False)
hdr = b'PROXY TCP4 198.18.0.11 127.0.0.1 5555 25\r\n'
for i in range(len(hdr)):
    c.send(hdr[i:i + 1])
    time.sleep(0.002)
c.greeting = c.reply()
mt.check(c.greeting[0] == 220, 'a PROXY v1 header written byte by byte is accepted (%s)' % (c.greeting,))
c.ehlo()
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('ppv1raw'), client=c)
got = by_tag('ppv1raw')
mt.check(code == 250 and got and got[0]['xclient'].get('ADDR') == '198.18.0.11' and got[0]['xclient'].get('PORT') == '5555',
         'raw PROXY v1: ADDR=198.18.0.11 PORT=5555')
c.close()

c = mt.Client(mx.port, greet=False)
c.send(v2_header('2001:db8::7', '2001:db8::1', 6000, 25))
c.greeting = c.reply()
c.ehlo()
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('ppv6'), client=c)
got = by_tag('ppv6')
mt.check(code == 250 and got and '2001:db8::7' in got[0]['xclient'].get('ADDR', '').lower(),
         'PROXY v2 with IPv6: the IPv6 client reaches the backend (%s)' % (got[0]['xclient'] if got else None))
c.close()

c = mt.Client(mx.port, greet=False)
c.send(v2_header('0.0.0.0', '0.0.0.0', 0, 0, command=0))
c.greeting = c.reply()
mt.check(c.greeting[0] == 220, 'PROXY v2 LOCAL (a load balancer health check) is accepted (%s)' % (c.greeting,))
c.ehlo()
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('pplocal'), client=c)
got = by_tag('pplocal')
mt.check(code == 250 and got and got[0]['xclient'].get('ADDR') == '127.0.0.1', 'PROXY v2 LOCAL: the real peer address is used')
c.close()

# ---------------------------------------------------------------- refused
n = len(be.attempts)
r = swaks_pp(2, '127.0.0.5', '198.18.0.66', 'untrusted')
mt.check(r.returncode != 0 and not by_tag('untrusted'), 'PROXY v2 from untrusted 127.0.0.5: refused, nothing delivered (rc=%d)' % r.returncode)
mt.check(mx.wait_log(r'event=proxy_refused peer=127\.0\.0\.5 reason=untrusted', 3) is not None, 'logged as event=proxy_refused')
r = swaks_pp(1, '127.0.0.5', '198.18.0.67', 'untrusted1')
mt.check(r.returncode != 0 and not by_tag('untrusted1'), 'PROXY v1 from untrusted 127.0.0.5: refused')
mt.check(not any('198.18.0.66' in x or '198.18.0.67' in x for x in be.commands), 'no untrusted identity reached the backend')

for what, data in (('no header, plain EHLO', b'EHLO direct.test\r\n'),
                   ('a malformed v1 header', b'PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n'),
                   ('a v2 signature with a bad version', SIG + b'\x31\x11\x00\x0c' + b'\x00' * 12),
                   ('a v2 header with an absurd length', SIG + b'\x21\x11\xff\xff' + b'\x00' * 64),
                   ('an over-long v1 line', b'PROXY TCP4 ' + b'1' * 200 + b'\r\n')):
    c = mt.Client(mx.port, greet=False)
    c.send(data)
    code, text = c.reply()
    closed = c.is_closed(3)
    mt.check(code != 220 and code != 250 and closed, 'trusted peer sending %s: refused and closed (%s %r)' % (what, code, text[:50]))
    c.close()
mt.check(len(be.attempts) == n, 'nothing was delivered from the refused connections')
mt.check(mx.alive(), 'mxgate survived the malformed PROXY headers')
c = mt.Client(mx.port, greet=False)
c.send(b'PROXY TCP4 198.18.0.12 127.0.0.1 5556 25\r\n')
mt.check(c.reply()[0] == 220, 'a good PROXY header still works afterwards')
c.close()
mx.stop()

# ---------------------------------------------------------------- client_identity: proxy_v2 to the backend
pb = mt.Backend(name='pp2', expect_proxy=True, xclient=False)
mx = mt.Mxgate(mt.config([pb.url], workers=1, backends={'client_identity': 'proxy_v2'},
                         listen=[{'address': '127.0.0.1:0'}, {'address': '127.0.0.1:0', 'proxy_protocol': True}]),
               name='mx-pp2')
plain, ppin = mx.ports
for src in ('127.0.0.3', '127.0.0.4', '127.0.0.3'):
    c = mt.Client(plain, source=src)
    sport = c.sock.getsockname()[1]
    c.ehlo()
    tag = 'idv2-%s-%d' % (src, sport)
    code, text = mt.send_mail(plain, FROM, [RCPT], mt.message(tag), client=c)
    c.cmd('QUIT')
    c.close()
    got = by_tag(tag, pb)
    mt.check(code == 250 and len(got) == 1, 'client_identity proxy_v2: delivered from %s (%s)' % (src, text))
    if got:
        p = got[0]['proxy'] or {}
        mt.check(p.get('version') == 2 and p.get('command') == 1 and p.get('src') == src and p.get('sport') == sport,
                 'the backend got PROXY v2 PROXY src=%s sport=%d (%s)' % (src, sport, {k: v for k, v in p.items() if k != 'raw'}))
        mt.check(p.get('dst') == '127.0.0.1' and p.get('dport') == plain,
                 'PROXY v2 dst is the address the client connected to (%s:%s)' % (p.get('dst'), p.get('dport')))
c = mt.Client(ppin, greet=False)
c.send(v2_header('198.18.0.20', '192.0.2.25', 41000, 25))
c.reply()
c.ehlo()
code, text = mt.send_mail(ppin, FROM, [RCPT], mt.message('idv2chain'), client=c)
c.close()
got = by_tag('idv2chain', pb)
mt.check(code == 250 and got and (got[0]['proxy'] or {}).get('src') == '198.18.0.20' and got[0]['proxy'].get('sport') == 41000,
         'PROXY in, PROXY v2 out: the original client 198.18.0.20:41000 reaches the backend (%s)' % (
             {k: v for k, v in (got[0]['proxy'] or {}).items() if k != 'raw'} if got else text))
mt.check(all(h is not None for h in pb.proxy_headers), 'every connection to the backend (health checks too) starts with a PROXY header')
mx.stop()

mt.finish()
