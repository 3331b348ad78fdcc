#!/usr/bin/env python3
"""The client's name reaches a real Postfix: a private Postfix 3.x instance (own config dir
and queue, high port) as the backend, with `smtpd_client_restrictions =
reject_unknown_client_hostname` and XCLIENT allowed from 127.0.0.0/8; dnsmasq as the DNS
server holding the clients' PTR and A records; swaks as the client, presenting a public-looking
client address with the PROXY protocol.

Before the fix every message through mxgate was refused there (NAME=[UNAVAILABLE] always);
now a client with forward-confirmed reverse DNS is accepted, one without is refused as it
would be directly (550, permanent), and a DNS failure is a 4xx ([TEMPUNAVAIL]). Mixed clients
over the backend connection pool are each announced as themselves (Postfix refuses a second
XCLIENT on one connection: mxgate must not carry on under the previous client's name)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'dnsmasq', 'postfix')
mt.need_postfix()

# ---------------------------------------------------------------- DNS: dnsmasq
dns_port = mt.free_port()
mt.spawn(['dnsmasq', '-k', '-C', '/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces',
          '--listen-address=127.0.0.1', '--port=%d' % dns_port, '--user=nobody', '--group=nogroup',
          '--pid-file=', '--log-facility=-', '--log-queries',
          '--local=/18.198.in-addr.arpa/', '--local=/client.test/',
          # confirmed: PTR and A agree
          '--ptr-record=7.0.18.198.in-addr.arpa,mail.client.test',
          '--host-record=mail.client.test,198.18.0.7',
          # 198.18.0.8: no PTR at all
          # a PTR whose name points elsewhere
          '--ptr-record=9.0.18.198.in-addr.arpa,liar.client.test',
          '--host-record=liar.client.test,192.0.2.1'], 'dnsmasq')


def dns_up():
    import socket
    import struct
    q = struct.pack('>HHHHHH', 7, 0x0100, 1, 0, 0, 0) + b'\x04mail\x06client\x04test\x00' + struct.pack('>HH', 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(q, ('127.0.0.1', dns_port))
        return len(s.recv(512)) > 12
    except OSError:
        return False
    finally:
        s.close()


if not mt.wait_for(dns_up, 10):
    mt.fail('dnsmasq did not answer on port %d' % dns_port)

# ---------------------------------------------------------------- the backend: Postfix
pf_port = mt.free_port()
mt.postfix_instance('postfix', pf_port, '''relay_domains = local.test
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_client_restrictions = reject_unknown_client_hostname
unknown_client_reject_code = 550
smtpd_recipient_restrictions = permit_auth_destination, reject
''', hostname='backend.test')


def mx_config(resolver_port, servers=None, **extra):
    return mt.config(servers or ['smtp://127.0.0.1:%d' % pf_port],
                     listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                     trusted_proxies=['127.0.0.0/8'],
                     accept_domains=['local.test'],
                     dns={'resolvers': ['127.0.0.1:%d' % resolver_port], 'timeout': '1s', 'tries': 1},
                     backends={'client_identity': 'xclient', 'pool_size': 4},
                     workers=1, **extra)


mx = mt.Mxgate(mx_config(dns_port))


def send(port, client_ip, tag):
    """One message from client_ip (PROXY v1 header); returns (code of the first refusal or of
    the end of data, swaks output)."""
    p = mt.swaks(port, '--from', 'sender@example.org', '--to', 'user@local.test', '--helo', 'client.test',
                 '--header', 'Subject: %s' % tag,
                 '--proxy-version', '1', '--proxy-family', 'TCP4', '--proxy-source', client_ip,
                 '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1', '--proxy-dest-port', '25')
    out = p.stdout + p.stderr
    m = re.search(r'^<\*\* +(\d{3}) ', out, re.M)
    if m:
        return int(m.group(1)), out
    m = re.findall(r'^<- +(\d{3}) .*queued as', out, re.M)
    return (int(m[-1]) if m else None), out


code, out = send(mx.port, '198.18.0.7', 'confirmed')
mt.check(code == 250, 'FCrDNS client (198.18.0.7 = mail.client.test): Postfix with '
         'reject_unknown_client_hostname accepts it through mxgate (%s)\n%s' % (code, out[-600:]))
code, out = send(mx.port, '198.18.0.8', 'no-ptr')
mt.check(code == 550 and '4.7.25' not in out and '5.7.25' in out,
         'client without PTR: refused as directly, 550 5.7.25 (%s)' % code)
code, out = send(mx.port, '198.18.0.9', 'liar')
mt.check(code == 550, 'client whose PTR name does not resolve back: 550 (%s)' % code)

# CHUNKING: Postfix offers it, so mxgate hands messages to it as one BDAT LAST chunk; a
# client's own BDAT chunks (a CRLF split between them, a dot line inside) arrive as one message
c = mt.Client(pf_port)
code, text = c.ehlo()
mt.check(code == 250 and 'CHUNKING' in text, 'Postfix offers CHUNKING (mxgate sends it BDAT)')
c.close()
c = mt.Client(mx.port, proxy_src='198.18.0.7')
c.ehlo()
parts = [b'From: a@example.org\r\nSubject: bdat-postfix\r\n\r\nline\r', b'\n.\r\nend\r\n']
c.send(b'MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@local.test>\r\n' +
       b'BDAT %d\r\n' % len(parts[0]) + parts[0] + b'BDAT %d LAST\r\n' % len(parts[1]) + parts[1])
r = [c.reply() for _ in range(4)]
mt.check([x[0] for x in r] == [250, 250, 250, 250] and 'queued as' in r[3][1],
         'BDAT from a client through mxgate to Postfix over BDAT: 250 after Postfix\'s (%r)' % (r,))
c.cmd('QUIT')
c.close()

# mixed clients over the pool: each is announced as itself
results = []
for i, ip in enumerate(['198.18.0.7', '198.18.0.8', '198.18.0.7', '198.18.0.9', '198.18.0.7', '198.18.0.7']):
    results.append((ip, send(mx.port, ip, 'mixed-%d' % i)[0]))
mt.check(all((c == 250) == (ip == '198.18.0.7') for ip, c in results),
         'mixed clients over pooled backend connections: only the confirmed client is accepted, every time (%r)'
         % results)
pflog = lambda: open(os.path.join(mt.TMP, 'postfix.log'), errors='replace').read()  # noqa: E731
mt.check(mt.wait_for(lambda: len(re.findall(r'client=mail\.client\.test\[198\.18\.0\.7\]', pflog())) >= 5, 5),
         'Postfix logged every accepted message as client=mail.client.test[198.18.0.7]')
mt.check(not re.search(r'client=\S*\[198\.18\.0\.[89]\]', pflog()),
         'no message from an unconfirmed client was queued under any name')
mt.check(mx.count_log(r'event=xclient_refused') == 0,
         'mxgate never carried on after a refused XCLIENT (under another client\'s name)')
mx.stop()

# ---------------------------------------------------------------- DNS down: [TEMPUNAVAIL] -> 4xx
dead = mt.free_port()   # nothing answers there
mx2 = mt.Mxgate(mx_config(dead), name='mx-dnsdown')
code, out = send(mx2.port, '198.18.0.7', 'dns-down')
mt.check(code == 450 and '4.7.25' in out,
         'DNS down: NAME=[TEMPUNAVAIL], Postfix answers 450 4.7.25, never a 5xx (%s)\n%s' % (code, out[-400:]))
mx2.stop()

# ---------------------------------------------------------------- milter macros, as Postfix sends them
if subprocess.run(['/usr/bin/python3', '-c', 'import Milter'], capture_output=True).returncode != 0:
    mt.check(not os.environ.get('CI'), 'python3-milter is installed (for the milter macro checks)')
else:
    mport = mt.hold_port().port
    mt.spawn(['/usr/bin/python3', os.path.join(mt.SRC, 'tests', 'peers', 'mx_milter.py'),
              'inet:%d@127.0.0.1' % mport], 'milter')
    if not mt.wait_port(mport, 15):
        mt.fail('the test milter did not start')
    be = mt.Backend(name='milter-backend')
    mx3 = mt.Mxgate(mx_config(dns_port, servers=[be.url], plugins=[
        {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mport, 'on_error': 'tempfail', 'timeout': '10s'}]),
        name='mx-milter')
    for ip, want in (('198.18.0.7', ['_=mail.client.test [198.18.0.7]', '{client_name}=mail.client.test']),
                     ('198.18.0.9', ['_=liar.client.test [198.18.0.9] (may be forged)', '{client_name}=unknown']),
                     ('198.18.0.8', ['_=unknown [198.18.0.8]', '{client_name}=unknown'])):
        before = len(be.messages)
        code, out = send(mx3.port, ip, 'milter-' + ip)
        got = be.messages[before:]
        hdr = ''
        if got:
            m = re.search(rb'X-Milter-Macros: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', got[0]['data'])
            hdr = m.group(1).decode('utf-8', 'replace').replace('\r\n', '') if m else ''
        mt.check(code == 250 and all(w in hdr for w in want),
                 'milter macros for %s: %s (got %s: %s)' % (ip, ' '.join(want), code, hdr[:300]))
    mx3.stop()
mt.finish()
