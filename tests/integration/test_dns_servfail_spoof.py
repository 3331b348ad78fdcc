#!/usr/bin/env python3
"""Only an answer c-ares takes (its id and question those of a query sent) makes a DNS
query's failure `servfail`.

filters/dns.c reads the answers c-ares receives to tell SERVFAIL on every try from a refusal
(c-ares 1.18 ends both with ECONNREFUSED). It read the rcode and the question before c-ares
had checked the id: a forged SERVFAIL to the question with another id (an off-path sender
that guessed the port, not the id; c-ares drops it) still marked the query, and one that
failed for another reason (here a TCP connection closed unanswered) was logged
`answer=servfail` and not asked again. dns.c now notes the id c-ares sends each query with
and counts only an answer carrying it.

- a forged SERVFAIL (wrong id), then a truncated answer, TCP closed: answer=failed, asked
  once more as a reset query is;
- a forged SERVFAIL (wrong id), then the listing: the client is refused (c-ares' own check).
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({
    '40.0.18.198.bl.test': [{'spoof': 'servfail'}, 'tcp_close'],
    '41.0.18.198.bl.test': [{'spoof': 'servfail'}, {'a': '127.0.0.2'}],
}, name='dns-servfail-spoof')
be = mt.Backend(name='SS')
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, accept_domains=['example.test'],
                                 dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '3s', 'tries': 1,
                                      'cache_size': 0},
                                 dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '0s',
                                        'lists': [{'zone': 'bl.test', 'weight': 3}]}),
               name='mx-servfail-spoof')

r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('ss'), proxy_src='198.18.0.40')
mt.check(r.code == 250, 'a list that fails lets the client through (%s %s)' % (r.code, r.text))
m = mx.wait_log(r'event=dnsbl_error list=bl\.test answer=(\S+) client=198\.18\.0\.40 ', 5)
got = m.group(1) if m else None
mt.check(got == 'failed', 'a forged SERVFAIL with a wrong id does not make the failure servfail (%s)\n%s'
         % (got, mx.tail()))
mt.check(mt.log_of(dns.name).count('spoofed 40.0.18.198.bl.test') >= 1, 'the forgery was sent')
mt.check(dns.queries('40.0.18.198.bl.test') == 4,
         'asked once more after the reset, as any reset query (UDP, TCP, twice: %d)'
         % dns.queries('40.0.18.198.bl.test'))

r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('ss'), proxy_src='198.18.0.41')
mt.check(r.code is not None and r.code >= 500, 'a forged SERVFAIL, then the listing: refused (%s %s)'
         % (r.code, r.text))
mt.check(mx.count_log(r'event=dnsbl_error list=bl\.test answer=\S+ client=198\.18\.0\.41 ') == 0,
         'no dnsbl_error for the listed client\n%s' % mx.tail())
mx.stop()
mt.finish()
