#!/usr/bin/env python3
"""After a server answers FORMERR to EDNS0, c-ares 1.18 leaves EDNS0 off for the whole
channel (the worker's resolver) until a reload makes a new one. Pinned here: a DNS list's
answer over 512 octets is not lost then; it comes truncated over UDP and is asked again
over TCP (a round trip and a handshake more, and lost where a firewall drops TCP/53).

- before: a listing of 40 A records (about 700 octets) comes in one UDP answer to an EDNS0
  query (1232 octets), no TCP;
- a name whose server answers FORMERR to EDNS0 (dns_peer.py no_edns): asked again without,
  the listing counts;
- after it: another 700-octet listing is asked without EDNS0, truncated, asked over TCP,
  and still refuses the client (nothing lost);
- after a reload (a new resolver): EDNS0 again, one UDP answer.
c-ares turned EDNS0 off in silence: mxgate now logs it once per resolver,
`event=dns_edns_off server=IP:PORT reason="..."` (warning), naming the server.
A worker (workers: 1) and no DNS cache: each lookup is a query on the one channel.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
many = [{'a': '127.0.0.%d' % i} for i in range(2, 42)]      # 40 A records: ~700 octets
dns = mt.dns_peer({
    '22.0.18.198.bl.test': many,
    '20.0.18.198.bl.test': [{'no_edns': True}, {'a': '127.0.0.2'}],
    '21.0.18.198.bl.test': many,
    '23.0.18.198.bl.test': many,
}, name='dns-formerr-edns')
be = mt.Backend(name='FE')


def cfg(hostname='mx.test'):
    return mt.proxied_config([be.url], workers=1, hostname=hostname, accept_domains=['example.test'],
                             dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '3s', 'tries': 1,
                                  'cache_size': 0},
                             dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '0s',
                                    'lists': [{'zone': 'bl.test', 'weight': 3, 'reason': 'listed {ip}'}]})


def refused(mx, ip):
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('fe'), proxy_src=ip)
    return r.code is not None and r.code >= 500, '%s %s' % (r.code, r.text)


def queries(name):
    """The query lines of name's A queries: ' edns=1232', '', ' tcp' ..."""
    return re.findall(r'(?m)^query %s A(.*)$' % re.escape(name), mt.log_of(dns.name))


mx = mt.Mxgate(cfg(), name='mx-formerr-edns')
ok, why = refused(mx, '198.18.0.22')
q = queries('22.0.18.198.bl.test')
mt.check(ok and q == [' edns=1232'], 'before: a 700-octet listing in one UDP answer to EDNS0 (%s; %s)' % (why, q))

mt.check(mx.count_log(r'event=dns_edns_off') == 0, 'before: EDNS0 on, nothing logged')

ok, why = refused(mx, '198.18.0.20')
q = queries('20.0.18.198.bl.test')
mt.check(ok and q[:1] == [' edns=1232'] and '' in q,
         'FORMERR to EDNS0: asked again without it, the listing counts (%s; %s)' % (why, q))
# the operator is told, once, which server made c-ares turn EDNS0 off (it was silent)
mt.check(mx.wait_log(r'warning - event=dns_edns_off server=127\.0\.0\.1:%d reason="[^"]*until a reload' % dns.port, 5)
         is not None, 'FORMERR to EDNS0: event=dns_edns_off names the server\n%s' % mx.tail())

ok, why = refused(mx, '198.18.0.21')
q = queries('21.0.18.198.bl.test')
mt.check(ok and q == ['', ' tcp'],
         'after the FORMERR: no EDNS0, the 700-octet answer truncated and asked over TCP, not lost (%s; %s)'
         % (why, q))

mark = mx.log_size()
mx.reload(cfg('mx2.test'))
mt.check(mx.wait_log(r'event=reloaded generation=2', 10, mark) is not None, 'reloaded\n%s' % mx.tail())
ok, why = refused(mx, '198.18.0.23')
q = queries('23.0.18.198.bl.test')
mt.check(ok and q == [' edns=1232'], 'after a reload: EDNS0 again, one UDP answer (%s; %s)' % (why, q))
mt.check(mx.count_log(r'event=dns_edns_off') == 1, 'logged once: %d lines' % mx.count_log(r'event=dns_edns_off'))
mx.stop()
mt.finish()
