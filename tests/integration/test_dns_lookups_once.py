#!/usr/bin/env python3
"""One message through the DNS checks of a usual setup (a DNS list of addresses and one of
domains, the FCrDNS test, SPF, DKIM, DMARC), every DNS query counted at the server
(dns_peer.py): no name is asked twice.

SPF has a resolver of its own (libspf2 through filters/spf_dns.c, blocking, in the thread
pool) with a cache of its own: an `mx` term asked the MX's address again although the
FCrDNS test had asked it at connect (the client's name, then its address) and mxgate's
resolvers had it cached. SPF's lookups now read that cache first (dns_cache_for): 10
queries before, `mail.example.org A` twice; 9 now.
"""
import collections
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mxtest as mt  # noqa: E402

PY = mt.need_sys_python('dkim', 'dns.message')
mt.need('openssl')
key, rec = mt.dkim_rsa_key('lo', 2048)
dns = mt.dns_peer({
    'sel._domainkey.example.org': [{'txt': mt.txt_strings(rec)}],
    '_dmarc.example.org': [{'txt': ['v=DMARC1; p=reject']}],
    'example.org': [{'txt': ['v=spf1 mx -all']}, {'mx': 'mail.example.org'}],
    'mail.example.org': [{'a': '198.18.1.9'}],
    '9.1.18.198.in-addr.arpa': [{'ptr': 'mail.example.org'}],
}, name='dns-lookups-once')
be = mt.Backend(name='LO')
mx = mt.Mxgate(mt.proxied_config([be.url], hostname='mx.test', accept_domains=['example.test'],
                                 dns={'resolvers': ['127.0.0.1:%d' % dns.port]},
                                 dnsbl={'threshold': 3, 'action': 'reject',
                                        'lists': [{'zone': 'bl.test', 'weight': 3},
                                                  {'zone': 'dbl.test', 'type': 'domain', 'weight': 2}]},
                                 spf={'enabled': True}, dkim={'enabled': True}, dmarc={'enabled': True},
                                 helo_checks={'fcrdns': {'action': 'score'}}),
               name='mx-lookups-once')
m = ('From: a@example.org\r\nTo: bob@example.test\r\nSubject: once\r\nDate: Fri, 04 Dec 2026 05:00:00 +0000\r\n'
     'Message-ID: <once@x>\r\n\r\nbody.\r\n').encode()
r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'sign', key, 'sel', 'example.org'],
                   input=m, capture_output=True, timeout=60)
mt.check(r.returncode == 0, 'dkim_signer.py signs (%s)' % r.stderr.decode(errors='replace')[-200:])
res = mt.send_mail(mx.port, 'a@example.org', ['bob@example.test'], r.stdout, proxy_src='198.18.1.9',
                   ehlo='mail.example.org')
ar = mt.our_authres(be.messages, b'Subject: once\r\n') or ''
mt.check(res.code == 250 and 'spf=pass' in ar and 'dkim=pass' in ar and 'dmarc=pass' in ar,
         'delivered, spf=pass (mx), dkim=pass, dmarc=pass (%s %s; %s)' % (res.code, res.text, ar))
asked = collections.Counter(re.findall(r'(?m)^query (\S+ \S+)', mt.log_of(dns.name)))
twice = {q: n for q, n in asked.items() if n > 1}
mt.check(not twice and asked['mail.example.org A'] == 1,
         'no name asked twice: SPF\'s mx term read the address the FCrDNS test had cached (%s)' % dict(asked))
mt.check(asked['example.org MX'] == 1 and asked['example.org TXT'] == 1,
         'SPF asked the record and the MX itself (%s)' % dict(asked))
mx.stop()
mt.finish()
