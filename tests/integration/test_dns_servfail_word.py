#!/usr/bin/env python3
"""A DNS list query whose server answers SERVFAIL (or REFUSED) on every try is logged
`answer=servfail`; one whose server refuses by ICMP (nothing on the port) `answer=failed`.

c-ares 1.18 ends both the same way (ECONNREFUSED after its tries), so every path through
filters/dns.c said `failed` for a real SERVFAIL: the DNS lists (event=dnsbl_error answer=),
sender_domain (dns=), the FCrDNS test (rdns=ptr_failed), DKIM, DMARC (SPF has its own
resolver, filters/spf_dns.c). The operator read
"the resolver is unreachable" where the zone's servers were broken. dns.c now reads the
answers c-ares receives and tells the two apart.

- one resolver (dns_peer.py), dns.tries 2: a SERVFAIL name and a REFUSED name are
  answer=servfail, each try asked (c-ares' retries kept) and no round more (read as a
  refusal, each was asked again: 4 queries);
- two resolvers, the first with nothing on its port (ICMP), the second answering SERVFAIL:
  answer=servfail (an answer came);
- one resolver with nothing on its port: answer=failed, as before.

Over TCP (session 29): dns.c read UDP datagrams only; c-ares reads a TCP answer in pieces
(the 2-octet length, then the message), so a SERVFAIL over TCP after a truncated UDP answer
was `failed` and asked once more as a reset connection is. dns.c now reassembles the TCP
stream c-ares reads:
- truncated over UDP, SERVFAIL over TCP: answer=servfail, asked once over UDP, once over TCP
  (c-ares 1.18 does not ask again on the TCP connection that answered), no round more (4
  queries before);
- a TCP connection closed unanswered (tcp_close) stays failed.

Only an answer c-ares takes counts (session 29): dns.c read the rcode and the question
before c-ares had checked the id, so a forged SERVFAIL to the question with another id (an
off-path sender that guessed the port, not the id; c-ares drops it) marked the query, and
one that failed for another reason was `servfail` and not asked again. dns.c now notes the
id c-ares sends each query with and counts only an answer carrying it:
- a forged SERVFAIL (wrong id), then a truncated answer, TCP closed: answer=failed, asked
  once more as a reset query is (dns.tries 1: UDP, TCP, twice);
- a forged SERVFAIL (wrong id), then the listing: the client is refused.
"""
import os
import re
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({
    '10.0.18.198.bl.test': 'servfail',
    '11.0.18.198.bl.test': 'refused',
    '30.0.18.198.bl.test': 'tcp_servfail',
    '31.0.18.198.bl.test': 'tcp_close',
    '40.0.18.198.bl.test': [{'spoof': 'servfail'}, 'tcp_close'],
    '41.0.18.198.bl.test': [{'spoof': 'servfail'}, {'a': '127.0.0.2'}],
}, name='dns-servfail-word')
be = mt.Backend(name='SW')
# A UDP port where a query is refused by ICMP (port unreachable): held by a socket connected
# elsewhere, which takes no other datagram, so nothing else binds the port meanwhile.
hold = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hold.bind(('127.0.0.1', 0))
hold.connect(('127.0.0.1', 9))
dead = hold.getsockname()[1]


def daemon(resolvers, name, tries=2):
    return mt.Mxgate(mt.proxied_config([be.url], workers=1, accept_domains=['example.test'],
                                       dns={'resolvers': resolvers, 'timeout': '3s', 'tries': tries,
                                            'cache_size': 0},
                                       dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '0s',
                                              'lists': [{'zone': 'bl.test', 'weight': 3}]}),
                     name=name)


def answer(mx, ip):
    """Sends from ip (PROXY v2): the dnsbl_error line's answer= for it, or None."""
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('sw'), proxy_src=ip)
    mt.check(r.code == 250, '%s: a list that fails lets the client through (%s %s)' % (ip, r.code, r.text))
    m = mx.wait_log(r'event=dnsbl_error list=bl\.test answer=(\S+) client=%s ' % re.escape(ip), 5)
    return m.group(1) if m else None


def asked(name):
    return len(re.findall(r'(?m)^query %s A\b' % re.escape(name), mt.log_of(dns.name)))


def queries(name):
    """The query lines of name's A queries: ' edns=1232', ' tcp edns=1232' ..."""
    return re.findall(r'(?m)^query %s A(.*)$' % re.escape(name), mt.log_of(dns.name))


mx = daemon(['127.0.0.1:%d' % dns.port], 'mx-servfail-word')
for ip, name, what in (('198.18.0.10', '10.0.18.198.bl.test', 'SERVFAIL'),
                       ('198.18.0.11', '11.0.18.198.bl.test', 'REFUSED')):
    got = answer(mx, ip)
    mt.check(got == 'servfail', '%s answered on every try: answer=servfail, not failed (%s)\n%s'
             % (what, got, mx.tail()))
    # dns.tries rounds (c-ares' retries kept), and not asked once more as a refusal is (dns.c's
    # ECONNREFUSED retry): 4 queries before, when a SERVFAIL was read as a refusal
    mt.check(asked(name) == 2, '%s: asked dns.tries (2) times, no round more (%d)' % (what, asked(name)))

got = answer(mx, '198.18.0.30')
q = queries('30.0.18.198.bl.test')
mt.check(got == 'servfail', 'truncated over UDP, SERVFAIL over TCP: answer=servfail, not failed (%s)\n%s'
         % (got, mx.tail()))
mt.check(q == [' edns=1232', ' tcp edns=1232'],
         'asked over UDP, then over TCP after the truncated answer, no round more (%s)' % q)
got = answer(mx, '198.18.0.31')
mt.check(got == 'failed', 'a TCP connection closed unanswered stays answer=failed (%s)\n%s' % (got, mx.tail()))
mx.stop()

# forged SERVFAILs with another id, sent before each answer (dns.tries 1)
mx = daemon(['127.0.0.1:%d' % dns.port], 'mx-servfail-word-spoof', tries=1)
got = answer(mx, '198.18.0.40')
mt.check(got == 'failed', 'a forged SERVFAIL with a wrong id does not make the failure servfail (%s)\n%s'
         % (got, mx.tail()))
mt.check(mt.log_of(dns.name).count('spoofed 40.0.18.198.bl.test') >= 1, 'the forgery was sent')
mt.check(asked('40.0.18.198.bl.test') == 4,
         'asked once more after the reset, as any reset query (UDP, TCP, twice: %d)' % asked('40.0.18.198.bl.test'))
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('sw'), proxy_src='198.18.0.41')
mt.check(r.code is not None and r.code >= 500, 'a forged SERVFAIL, then the listing: refused (%s %s)'
         % (r.code, r.text))
mt.check(mx.count_log(r'event=dnsbl_error list=bl\.test answer=\S+ client=198\.18\.0\.41 ') == 0,
         'no dnsbl_error for the listed client\n%s' % mx.tail())
mx.stop()

# the first server refuses by ICMP, the second answers SERVFAIL: an answer came
mx = daemon(['127.0.0.1:%d' % dead, '127.0.0.1:%d' % dns.port], 'mx-servfail-word-mixed', tries=1)
got = answer(mx, '198.18.0.10')
mt.check(got == 'servfail', 'a refusing server, then SERVFAIL: answer=servfail (%s)\n%s' % (got, mx.tail()))
mx.stop()

# nothing on the resolver's port: the ICMP refusal stays failed
mx = daemon(['127.0.0.1:%d' % dead], 'mx-servfail-word-dead')
got = answer(mx, '198.18.0.10')
mt.check(got == 'failed', 'a resolver that refuses by ICMP: answer=failed (%s)\n%s' % (got, mx.tail()))
mx.stop()
mt.finish()
