#!/usr/bin/env python3
"""greylist.allow_names_file against postgrey itself on the same input: Debian's
/etc/postgrey/whitelist_clients as it ships (domains, Perl regexes, a.b.c, a.b.c.d/n and
IPv6 networks) read by mxgate and by a real postgrey policy server, then the same clients
asked of both. postgrey gets from Postfix the verified client name or "unknown"; mxgate
looks the name up itself (real DNS peer: PTR and A records), so a PTR that does not resolve
back is "unknown" to both. Every answer must agree: postgrey DUNNO = mxgate 250 at RCPT,
DEFER_IF_PERMIT = 451."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

LIST = '/etc/postgrey/whitelist_clients'
mt.need('postgrey')
if not os.path.exists(LIST):
    mt.skip('no ' + LIST + ' (Debian package postgrey)')


def rev(ip):
    return '.'.join(reversed(ip.split('.'))) + '.in-addr.arpa'


CASES = [   # (client address, its PTR name or None, the name's A record when not the client)
    ('198.18.70.1', 'mail3.telekom.de', None),            # /^mail\d+\.telekom\.de$/
    ('198.18.70.2', 'bendel.debian.org', None),           # debian.org
    ('198.18.70.3', 'debian.org.evil.test', None),        # not under debian.org
    ('198.18.70.4', 'smtp12-g21.free.fr', None),          # /^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$/
    ('198.18.70.5', 'MAIL7.Telekom.DE', None),            # regexes are caseless
    ('198.18.70.6', 'mail.example.test', None),           # on no list
    ('198.18.70.7', 'x.debian.org', '192.0.2.1'),         # a PTR that does not resolve back
    ('198.18.70.8', None, None),                          # no PTR
    ('195.235.39.7', None, None),                         # 195.235.39 (a /24)
    ('51.4.80.5', None, None),                            # 51.4.80.0/27
    ('51.4.80.40', None, None),                           # outside it
]
zone = {'in-addr.arpa': [{'txt': ['zone']}]}
for ip, name, a in CASES:
    if name:
        zone[rev(ip)] = [{'ptr': name}]
        zone[name.lower()] = [{'a': a or ip}]
dns = mt.dns_peer(zone)

pgport = mt.free_port()
dbdir = os.path.join(mt.TMP, 'postgrey')
os.makedirs(dbdir)
os.chmod(mt.TMP, 0o755)
os.chmod(dbdir, 0o777)          # postgrey drops to its own user
pg = mt.spawn([mt.tool('postgrey'), '--inet=127.0.0.1:%d' % pgport, '--dbdir=' + dbdir,
               '--whitelist-clients=' + LIST, '--whitelist-recipients=/dev/null', '--delay=3600'],
              'postgrey')
if not mt.wait_port(pgport, 20, pg):
    mt.peer_failed('postgrey', 'did not listen on %d' % pgport)


def postgrey(ip, name, rcpt):
    s = socket.create_connection(('127.0.0.1', pgport), mt.slack(10))
    s.sendall(('request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=%s\n'
               'client_name=%s\nsender=news@sender.test\nrecipient=%s\n\n' % (ip, name, rcpt)).encode())
    data = b''
    while not data.endswith(b'\n\n'):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode().split('\n')[0]


be = mt.Backend()
gw = mt.Mxgate(mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s'},
                                 greylist={'enabled': True, 'delay': '1h', 'retry_window': '2h',
                                           'allow_names_file': LIST}))
for i, (ip, name, a) in enumerate(CASES):
    rcpt = 'u%d@example.test' % i
    verified = name if name and not a else 'unknown'
    want = postgrey(ip, verified, rcpt)
    got = mt.rcpt_code(gw.port, ip, 'news@sender.test', rcpt)
    same = (want == 'action=DUNNO' and got == 250) or (want.startswith('action=DEFER_IF_PERMIT') and got == 451)
    mt.check(same, '%s %s: postgrey %s, mxgate %s' % (ip, name, want[:40], got))
gw.stop()
mt.finish()
