#!/usr/bin/env python3
"""SPF's answers go into mxgate's DNS cache: two messages from one domain, every DNS query
counted at the server (dns_peer.py). The SPF record (TXT), the `mx` term's MX and the `a`
term's address are asked for the first message only; the second check reads them from the
cache.

SPF's lookups (libspf2 through filters/spf_dns.c) read mxgate's cache (dns_cache_for)
since session 29 but did not write to it: what libspf2 asked itself (the TXT record, the
MX and A of `mx` and `a` terms) stayed in libspf2's own cache, one per worker and config
generation, so a message from the domain on another worker, or after a reload, asked it all
again. Which worker takes a connection is the kernel's choice; a reload is not: one worker,
and a reload between the two messages (a new generation, a new libspf2 cache; mxgate's
cache is the process's and stays).
"""
import collections
import os
import re
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mxtest as mt  # noqa: E402

dns = mt.dns_peer({
    'example.org': [{'txt': ['v=spf1 a:web.example.org mx -all']}, {'mx': 'mail.example.org'}],
    'web.example.org': [{'a': '198.18.1.20'}],
    'mail.example.org': [{'a': '198.18.1.9'}],
}, name='dns-spf-cache-back')
be = mt.Backend(name='SCB')

def config():
    return mt.proxied_config([be.url], hostname='mx.test', accept_domains=['example.test'],
                             dns={'resolvers': ['127.0.0.1:%d' % dns.port]},
                             spf={'enabled': True}, workers=1)


mx = mt.Mxgate(config(), name='mx-spf-cache-back')
for i in (1, 2):
    if i == 2:
        mark = len(mx.log())
        mx.reload(config())
        mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(20), mark) is not None, 'reloaded')
    m = ('From: a@example.org\r\nTo: bob@example.test\r\nSubject: back %d\r\n'
         'Date: Fri, 04 Dec 2026 05:00:00 +0000\r\nMessage-ID: <back%d@x>\r\n\r\nbody.\r\n' % (i, i)).encode()
    res = mt.send_mail(mx.port, 'a@example.org', ['bob@example.test'], m, proxy_src='198.18.1.9',
                       ehlo='mail.example.org')
    ar = mt.our_authres(be.messages, ('Subject: back %d\r\n' % i).encode()) or ''
    mt.check(res.code == 250 and 'spf=pass' in ar,
             'message %d delivered, spf=pass through the mx term (%s %s; %s)' % (i, res.code, res.text, ar))
asked = collections.Counter(re.findall(r'(?m)^query (\S+ \S+)', mt.log_of(dns.name)))
for q in ('example.org TXT', 'example.org MX', 'web.example.org A', 'mail.example.org A'):
    mt.check(asked[q] == 1, '%s asked once for both messages (%s)' % (q, dict(asked)))
mx.stop()
mt.finish()
