#!/usr/bin/env python3
"""A DNS server cannot hold a session by trickling its answer (docs/operations.md, "Timeouts:
what bounds each peer"): a PTR query answered truncated over UDP, then over TCP an octet
every 0.3 s (dns_peer.py's tcp_trickle; the answer would take some 10 s), ends within
dns.timeout (c-ares's own timer, from the query, not from its last read): XCLIENT
NAME=[TEMPUNAVAIL], as Postfix says for a name that cannot be had now, and the message is
delivered. The figure is how long the client's whole message took, not checked: the order
of events is — the message was delivered while the peer was still trickling (its
"trickle sent=M/M" line, the whole answer some 14 s on, not yet logged). The trickled answer
is a SERVFAIL, so [TEMPUNAVAIL] alone would not tell a timer reset on every read from
dns.timeout; the daemon logs the lookup's status only at debug level (event=rdns status=), so
no line of its own names the timeout.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DNS_TIMEOUT = 2.0
peer = mt.dns_peer({'20.2.18.198.in-addr.arpa': 'tcp_trickle'})
be = mt.Backend(xclient=True, name='be-dns')
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                dns={'resolvers': ['127.0.0.1:%d' % peer.port], 'timeout': '%gs' % DNS_TIMEOUT, 'tries': 1})
cfg['backends']['client_identity'] = 'xclient'
cfg['rdns'] = {'lookup': 'always'}
mx = mt.Mxgate(cfg, name='mx-dns')

t0 = time.time()
c = mt.Client(mx.port, greet=False, timeout=30)
c.send('PROXY TCP4 198.18.2.20 127.0.0.1 40000 25\r\n')
greeting = c.reply()
c.ehlo('client.example')
r = mt.send_mail(mx.port, 'a@example.test', ['b@example.test'], mt.message('trickle-dns'), client=c)
took = time.time() - t0
trickle = re.findall(r'(?m)^trickle sent=(\d+)/(\d+)$', mt.log_of('dns_peer'))
c.close()
got = be.by_tag('trickle-dns')
name = got[0]['xclient'].get('NAME') if got else None
mt.say('dns tcp_trickle: %s, %s %s, NAME=%s after %.2fs (bound %.1fs)' % (greeting[0], r.code, r.text[:40], name, took,
                                                                         DNS_TIMEOUT))
mt.check(r.code == 250 and name == '[TEMPUNAVAIL]', 'the PTR answer trickled over TCP: XCLIENT NAME=[TEMPUNAVAIL], '
         'delivered (%s %s, NAME=%s)' % (r.code, r.text, name))
mt.check(not any(a == b for a, b in trickle), 'delivered before the trickled answer was whole (%s)' % trickle)
mt.check(any(' tcp' in ln for ln in mt.log_of('dns_peer').splitlines() if ln.startswith('query 20.2')),
         'the query went over TCP (the trickle was read)')
mt.finish()
