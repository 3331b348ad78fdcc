#!/usr/bin/env python3
"""An allow-listed client skips the pregreet test, as postscreen's access list
(permit_mynetworks, permit CIDRs) and its DNS allow lists (postscreen_dnsbl_whitelist_threshold:
"skip 'before' and 'after 220 greeting' protocol tests") let a client skip it.

Before, the teaser went out and the greeting waited the whole pregreet.delay for every
client, and an allow-listed client (reputation.allow, or a DNS allow list summing to
dnsbl.allow_threshold) that talked early was refused at MAIL like a bot: an operator's own
hosts, or a partner on a DNSWL, paid the delay on every connection and could be refused.
Now a connect stage that allow-lists the client (VERDICT_ACCEPT) ends the test: the
greeting's final line goes out at once and early talk is not held against it. Other clients
are still tested.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
rbl = mt.rbldnsd({'wl.test': ('ip4set', ':127.0.0.2:allowed\n198.18.90.0/24\n')})
be = mt.Backend()
cfg = mt.proxied_config([be.url], pregreet={'delay': '20s', 'action': 'reject'},
                        reputation={'allow': ['198.18.89.0/24']},
                        dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'allow_threshold': -1, 'lists': [{'zone': 'wl.test', 'weight': -2}]})
mx = mt.Mxgate(cfg, 'mx-pregreet-allow')


def early_talker(src, tag):
    """Sends EHLO right behind the PROXY header (before any greeting) then a transaction;
    the replies, read with a deadline well under the 20 s pregreet delay."""
    c = mt.Client(mx.port, proxy_src=src, greet=False, timeout=8)
    c.send(b'EHLO partner.example\r\n')
    g = c.reply()
    e = c.reply()
    r = mt.send_mail(mx.port, 'a@partner.example', ['u@example.test'], mt.message(tag), client=c)
    c.close()
    return g, e, r


for src, what in (('198.18.89.1', 'reputation.allow'), ('198.18.90.1', 'a DNS allow list')):
    tag = 'allowed-' + src
    g, e, r = early_talker(src, tag)
    mt.check(g[0] == 220, '%s: the greeting comes without waiting the 20 s delay: %r' % (what, g))
    mt.check(r[0] == 250 and be.by_tag(tag), '%s: talking early is not held against it, delivered: %r' % (what, r))

# Another client is still tested (its greeting waits: read it with a short deadline).
c = mt.Client(mx.port, proxy_src='198.18.91.1', greet=False, timeout=2)
t = c._line()
mt.check(t is not None and t.startswith('220-'), 'another client gets the teaser: %r' % (t,))
rest = c._line()
mt.check(rest is None, 'and still waits for the final line: %r' % (rest,))
c.close()
mx.stop()
mt.finish()
