#!/usr/bin/env python3
"""relay_networks (Postfix's permit_mynetworks, Haraka's relay_acl_allow): a client whose
address is in the list may send to recipients outside accept_domains; everyone else gets
550 5.7.1 as before. The address judged is the real client's: the connection's own, the one
a PROXY header names, the one XCLIENT names. Each relayed recipient is logged with
event=relay relay=network. The list takes file:PATH items (one CIDR per line, '#' comments),
re-read on SIGHUP; a bad line is PATH:LINE:COL in `mxgate -t` and keeps the running config on
a reload. The same file: items work in every list of CIDRs (ratelimit.allow here).
Peers: smtp-sink behind, swaks and raw clients in front."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'swaks')
sink = mt.Sink(name='sink-relaynet')
relay_file = os.path.join(mt.TMP, 'relay.cidr')
allow_file = os.path.join(mt.TMP, 'limits-allow.cidr')


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)


# as an operator keeps it: a comment, a blank line, an entry with a comment, CRLF, IPv6
write(relay_file, '# our own hosts\n\n198.18.50.0/24   # office\r\n2001:db8:50::/48\n127.0.0.3\n')
write(allow_file, '# monitoring\n198.18.60.7\n')


def cfg(**extra):
    c = mt.config([sink.url],
                  listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}, {'address': '127.0.0.1:0'}],
                  trusted_proxies=['127.0.0.1/32'], xclient_hosts=['127.0.0.1/32', '127.0.0.3/32'],
                  hostname='mx.example.test',
                  limits={'max_connections_per_ip': 1000, 'max_errors': 1000},
                  accept_domains=['example.test'],
                  relay_networks=['192.0.2.0/28', 'file:' + relay_file],
                  ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h'}],
                             'allow': ['127.0.0.0/8', 'file:' + allow_file]})
    c.update(extra)
    return c


mx = mt.Mxgate(cfg(), 'mx-relaynet')
PROXY, PLAIN = mx.ports[0], mx.ports[1]


def rcpt(src, to='u@other.example', port=None, xclient=None, source=None):
    """One session: PROXY from src (or a plain connection from source, with XCLIENT ADDR=
    xclient first), EHLO, MAIL, RCPT; the RCPT's code."""
    if xclient or source:
        c = mt.Client(port or PLAIN, source=source)
        if xclient:
            c.ehlo('front.example.test')
            code = c.cmd('XCLIENT ADDR=%s' % xclient)[0]
            mt.check(code == 220, 'XCLIENT ADDR=%s: 220 (%s)' % (xclient, code))
    else:
        c = mt.Client(port or PROXY, proxy_src=src)
    c.ehlo('mta.example.org')
    c.cmd('MAIL FROM:<s@example.org>')
    code = c.cmd('RCPT TO:<%s>' % to)[0]
    c.cmd('QUIT')
    c.close()
    return code


# ---------------------------------------------------------------- who relays
ROWS = [
    # label, src (PROXY), want
    ('a listed /24, from its file', '198.18.50.9', 250),
    ('the inline /28', '192.0.2.5', 250),
    ('just outside the inline /28', '192.0.2.16', 550),
    ('a neighbour /24', '198.18.51.9', 550),
    ('IPv6 inside the file\'s /48', '2001:db8:50:1::25', 250),
    ('IPv6 outside it', '2001:db8:51::25', 550),
    ('v4-mapped IPv6 matched as IPv4', '::ffff:198.18.50.10', 250),
]
for label, src, want in ROWS:
    got = rcpt(src)
    mt.check(got == want, '%s (PROXY %s): RCPT to another domain %s (%s)' % (label, src, want, got))
mt.check(rcpt('198.18.51.8', to='u@example.test') == 250, 'a client not listed still sends to accept_domains')
mt.check(mx.wait_log(r'event=relay rcpt=<u@other\.example> domain=other\.example relay=network '
                     r'client=198\.18\.50\.9'), 'the relayed recipient is logged with relay=network')
mt.check(mx.count_log(r'event=relay .*client=198\.18\.51\.9') == 0, 'a refused client logs no relay line')

# XCLIENT: the named client is judged, not the front end that named it
mt.check(rcpt(None, xclient='198.18.50.11') == 250, 'XCLIENT naming a listed client: relayed')
mt.check(rcpt(None, xclient='198.18.52.11') == 550, 'XCLIENT naming a client not listed: 550')
mt.check(rcpt(None, xclient='198.18.52.12', source='127.0.0.3') == 550,
         'a front end that is itself in relay_networks, naming a client not listed: 550')
# the connection's own address (127.0.0.3 is in the file), and a real message through swaks
mt.check(rcpt(None, source='127.0.0.3') == 250, 'a listed connecting address relays')
mt.check(rcpt(None, source='127.0.0.4') == 550, 'an address not listed does not')


def delivered_to(rcpt):
    """The sink's dumps of a whole message to rcpt. Not sink.count(): smtp-sink makes a dump
    file at MAIL and removes it at RSET, so the MAIL/RCPT-only sessions above leave one until
    mxgate's pooled backend connection is reset, which may come after this test reads."""
    n = 0
    for f in sink.files():
        try:
            data = open(f, 'rb').read()
        except FileNotFoundError:
            continue
        n += ('<%s>' % rcpt).encode() in data and b'This is a test mailing' in data
    return n


p = mt.swaks(PLAIN, '--local-interface', '127.0.0.3', '--from', 's@example.org', '--to', 'far@other.example',
             '--helo', 'host.example.test')
mt.check(p.returncode == 0 and mt.wait_for(lambda: delivered_to('far@other.example') == 1, mt.slack(10)),
         'swaks from a listed address: the message to another domain reaches the backend (rc %d, %s)'
         % (p.returncode, p.stdout[-300:]))
p = mt.swaks(PLAIN, '--local-interface', '127.0.0.4', '--from', 's@example.org', '--to', 'far@other.example',
             '--helo', 'host.example.test')
mt.check(p.returncode != 0 and '550 5.7.1 relaying denied' in p.stdout,
         'swaks from an address not listed: 550 5.7.1 relaying denied (rc %d)' % p.returncode)

# relaying only: a relay client's other checks stay (its connection rate here: every
# client above connected once, its limit; loopback is in ratelimit.allow for XCLIENT and swaks)
mt.check(rcpt('198.18.50.20') == 250, 'first connection of a listed client')
c = mt.Client(PROXY, proxy_src='198.18.50.20')
mt.check(c.greeting[0] == 421, 'relay_networks exempts from no limit: the second connection is 421 (%s)'
         % (c.greeting,))
c.close()
# ... and ratelimit.allow read from its file exempts its client
codes = [mt.Client(PROXY, proxy_src='198.18.60.7').greeting[0] for _ in range(3)]
mt.check(codes == [220, 220, 220], 'ratelimit.allow from file: its client is never limited (%s)' % codes)

# ---------------------------------------------------------------- SIGHUP re-reads the file
write(relay_file, '198.18.51.0/24\n')
start = mx.log_size()
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reloaded', start=start), 'reload with the new file')
mt.check(rcpt('198.18.51.30') == 250 and rcpt('198.18.50.30') == 550,
         'after SIGHUP the file\'s new network relays and the old one no longer does')

# a bad line: the reload keeps the running config and names the file's line and column
write(relay_file, '198.18.53.0/24\n# ok\n  198.18.999.0/24\n198.18.54.0/24 OK\n')
start = mx.log_size()
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reload_failed .*keeping=old', start=start), 'a bad file fails the reload')
log = mx.log()[start:]
mt.check('relay.cidr:3:3: relay_networks[1]: expected an address or prefix' in log,
         'the bad prefix is logged as FILE:LINE:COL (%s)' % log[-600:])
mt.check('relay.cidr:4:16: relay_networks[1]: one address or prefix per line' in log,
         'a second token on a line (a Postfix cidr: table\'s result) is refused at its column')
mt.check(rcpt('198.18.51.31') == 250 and rcpt('198.18.53.31') == 550,
         'after the failed reload the old list is in force')

# mxgate -t: the same errors, and a missing file


def checked(**extra):
    return dict(cfg(**extra), listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}])


rc, out = mt.config_check(checked(), 'relaynet-bad')
mt.check(rc == 1 and 'relay.cidr:3:3: relay_networks[1]:' in out, 'mxgate -t: exit 1 and FILE:LINE:COL (%s)' % out[:400])
rc, out = mt.config_check(checked(relay_networks=['file:' + relay_file + '.missing']), 'relaynet-missing')
mt.check(rc == 1 and 'relay_networks[0]: cannot read ' in out and 'No such file' in out,
         'mxgate -t: a missing file is an error at its item (%s)' % out[:400])
rc, out = mt.config_check(checked(relay_networks=['198.18.0.0/33']), 'relaynet-inline')
mt.check(rc == 1 and 'relay_networks[0]: expected an address or prefix' in out,
         'mxgate -t: a bad inline prefix (%s)' % out[:400])
write(relay_file, '198.18.51.0/24\n')
rc, out = mt.config_check(checked(), 'relaynet-good')
mt.check(rc == 0, 'mxgate -t: the good file passes (%s)' % out[:400])

mx.stop()
mt.finish()
