#!/usr/bin/env python3
"""A DNS list query whose UDP answer comes truncated (TC) and whose TCP answer is SERVFAIL is
logged `answer=servfail`, as one answered SERVFAIL over UDP is (test_dns_servfail_word.py).

c-ares 1.18 ends a query whose every try got SERVFAIL with ECONNREFUSED, the status of a
refusal by ICMP; filters/dns.c tells the two apart by reading the answers c-ares receives.
It read UDP datagrams only: c-ares reads a TCP answer in pieces (the 2-octet length, then
the message), so a SERVFAIL over TCP was `failed` ("the resolver is unreachable") and asked
once more as a reset connection is. dns.c now reassembles the TCP stream c-ares reads.

- dns.tries 2: answer=servfail; asked once over UDP, once over TCP (c-ares 1.18 does not ask
  again on the TCP connection that answered) and no round more (read as a reset connection,
  it was asked all over again: 4 queries);
- a name whose TCP connection is closed unanswered (dns_peer tcp_close) stays failed.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({
    '30.0.18.198.bl.test': 'tcp_servfail',
    '31.0.18.198.bl.test': 'tcp_close',
}, name='dns-servfail-tcp')
be = mt.Backend(name='ST')
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, accept_domains=['example.test'],
                                 dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '3s', 'tries': 2,
                                      'cache_size': 0},
                                 dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '0s',
                                        'lists': [{'zone': 'bl.test', 'weight': 3}]}),
               name='mx-servfail-tcp')


def answer(ip):
    """Sends from ip (PROXY v2): the dnsbl_error line's answer= for it, or None."""
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('st'), proxy_src=ip)
    mt.check(r.code == 250, '%s: a list that fails lets the client through (%s %s)' % (ip, r.code, r.text))
    m = mx.wait_log(r'event=dnsbl_error list=bl\.test answer=(\S+) client=%s ' % re.escape(ip), 5)
    return m.group(1) if m else None


def queries(name):
    return re.findall(r'(?m)^query %s A(.*)$' % re.escape(name), mt.log_of(dns.name))


got = answer('198.18.0.30')
q = queries('30.0.18.198.bl.test')
mt.check(got == 'servfail', 'truncated over UDP, SERVFAIL over TCP: answer=servfail, not failed (%s)\n%s'
         % (got, mx.tail()))
mt.check(q == [' edns=1232', ' tcp edns=1232'],
         'asked over UDP, then over TCP after the truncated answer, no round more (%s)' % q)

got = answer('198.18.0.31')
mt.check(got == 'failed', 'a TCP connection closed unanswered stays answer=failed (%s)\n%s' % (got, mx.tail()))
mx.stop()
mt.finish()
