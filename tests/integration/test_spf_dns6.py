#!/usr/bin/env python3
"""SPF through an IPv6 resolver: `dns.resolvers: ["[::1]:PORT"]`, the form dns.c (c-ares)
takes for DKIM, DMARC and the DNS lists. filters/spf_dns.c took IPv4 servers only and
fell back to libspf2's glibc layer, which asks /etc/resolv.conf's servers: the configured
resolver was silently not asked for SPF (policies it serves were "none", or temperror).
Now the SPF transport asks IPv6 servers too (UDP, then TCP after a truncated answer), and
also a bare "::1" (port 53).

Peer: dns_peer.py (dnspython) listening on ::1 only.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
HERE = os.path.dirname(os.path.abspath(__file__))
if subprocess.run([PY, '-c', 'import dns.message'], capture_output=True).returncode != 0:
    mt.skip('python3-dnspython not installed')
try:
    import socket
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(('::1', 0))
except OSError:
    mt.skip('no IPv6 loopback')

zone = {
    'six.example': [{'txt': ['v=spf1 ip4:198.18.0.0/15 -all']}],
    # over 512 octets: TC over UDP, then TCP to the IPv6 server
    'big6.example': [{'txt': ['v=spf1'] + [' ip4:203.0.113.%d' % i for i in range(1, 41)] + [' ip4:198.18.1.7 -all']},
                     {'txt': ['site-verification=' + 'x' * 230, 'y' * 250]}, {'txt': ['z' * 250]}],   # over 1232
}
zfile = os.path.join(mt.TMP, 'dns6.json')
with open(zfile, 'w') as f:
    import json
    json.dump(zone, f)
# port 0: it binds a port of its own on ::1 and says which (no free_port() race)
peer = mt.spawn([PY, os.path.join(HERE, 'dns_peer.py'), zfile, '0', '::1'], 'dns6')
m = mt.wait_log_of('dns6', r'(?m)^port (\d+)\n(?:.*\n)*?ready$', 15, peer)
if not m:
    mt.peer_failed('dns6', 'dns_peer.py on [::1] did not start')
port = int(m.group(1)) if m else 0

be = mt.Backend()
cfg = mt.proxied_config([be.url], hostname='mx.test',
                        dns={'resolvers': ['[::1]:%d' % port], 'timeout': '1s', 'tries': 1},
                        spf={'enabled': True, 'timeout': '4s'})
mx = mt.Mxgate(cfg, name='mx-spf6')


def via(tag, sender, client='198.18.1.7'):
    data = ('From: a@x.test\r\nTo: b@example.test\r\nSubject: spf6 %s\r\n\r\nbody\r\n' % tag).encode()
    res = mt.send_mail(mx.port, sender, ['b@example.test'], data, proxy_src=client)
    got = [m for m in be.messages if ('Subject: spf6 %s\r\n' % tag).encode() in m['data']]
    if not got:
        return res.code, res.text
    head = got[-1]['data'].decode('latin-1').split('\r\n\r\n', 1)[0].replace('\r\n\t', ' ').replace('\r\n ', ' ')
    return res.code, ([h for h in head.split('\r\n') if h.startswith('Authentication-Results: mx.test;')] or [''])[0]


code, ar = via('pass', 'a@six.example')
mt.check(code == 250 and 'spf=pass smtp.mailfrom=six.example' in ar, 'pass through [::1] (%s %s)' % (code, ar))
code, ar = via('fail', 'a@six.example', client='192.0.2.9')
mt.check(code == 250 and 'spf=fail smtp.mailfrom=six.example' in ar, 'fail through [::1] (%s %s)' % (code, ar))
code, ar = via('big', 'a@big6.example')
mt.check(code == 250 and 'spf=pass smtp.mailfrom=big6.example' in ar, 'a truncated answer, then TCP over IPv6 (%s %s)' % (code, ar))
mt.check(mt.wait_log_of('dns6', r'query six\.example TXT', 5, peer), 'the lookups reached the IPv6 server')
mt.check(mt.wait_log_of('dns6', r'query big6\.example TXT tcp', 5, peer), 'over TCP after TC')
mx.stop()
mt.finish()
