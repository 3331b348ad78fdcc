#!/usr/bin/env python3
"""`event=dns_edns_off` is logged whenever c-ares 1.18 turns EDNS0 off, not only for the
FORMERR without any additional record that test_dns_formerr_edns.py pins.

c-ares 1.18 (process_answer) turns EDNS0 off for the whole channel at a FORMERR answer to an
EDNS0 query, taken (its id and question matching), that has no OPT record: none in the
additional section, another record there, or an additional section it cannot read; over
UDP or TCP. mxgate looked for a FORMERR with ARCOUNT 0 in UDP datagrams only, so two of
those went unlogged: EDNS0 off in silence. It now notes any FORMERR c-ares takes (UDP, or
the TCP stream reassembled) and asks c-ares whether EDNS0 is still on.

- a FORMERR with an A record in its additional section (no OPT): logged, the listing counts;
- a FORMERR over TCP (the UDP answer was truncated, 80 A records): logged, the listing
  counts (asked again over TCP without EDNS0).
One worker and no cache each; a new daemon for each case (logged once per resolver).
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
many = [{'a': '127.0.0.%d' % i} for i in range(2, 82)]      # 80 A records: ~1,330 octets
dns = mt.dns_peer({
    '50.0.18.198.bl.test': [{'no_edns': 'additional'}, {'a': '127.0.0.2'}],
    '51.0.18.198.bl.test': [{'no_edns': 'tcp'}] + many,
}, name='dns-edns-off-cases')
be = mt.Backend(name='EO')


def daemon(name):
    return mt.Mxgate(mt.proxied_config([be.url], workers=1, accept_domains=['example.test'],
                                       dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '3s',
                                            'tries': 1, 'cache_size': 0},
                                       dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '0s',
                                              'lists': [{'zone': 'bl.test', 'weight': 3}]}),
                     name=name)


def queries(name):
    return re.findall(r'(?m)^query %s A(.*)$' % re.escape(name), mt.log_of(dns.name))


for ip, name, what, want in (
        ('198.18.0.50', '50.0.18.198.bl.test', 'a FORMERR with a record in its additional section',
         [' edns=1232', '']),
        ('198.18.0.51', '51.0.18.198.bl.test', 'a FORMERR over TCP',
         [' edns=1232', ' tcp edns=1232', ' tcp'])):
    mx = daemon('mx-edns-off-%s' % ip.rsplit('.', 1)[1])
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('eo'), proxy_src=ip)
    q = queries(name)
    mt.check(r.code is not None and r.code >= 500 and q == want,
             '%s: asked again without EDNS0, the listing counts (%s %s; %s)' % (what, r.code, r.text, q))
    mt.check(mx.wait_log(r'warning - event=dns_edns_off server=127\.0\.0\.1:%d reason=' % dns.port, 5)
             is not None, '%s: event=dns_edns_off logged\n%s' % (what, mx.tail()))
    mx.stop()
mt.finish()
