#!/usr/bin/env python3
"""A shutdown (SIGTERM) while the pregreet teaser is out: the greeting is one reply, and every
line of one reply has one code (RFC 5321 4.2.1). Before, the drain's 421 followed the
`220-` teaser as the greeting's last line (`220-... / 421 4.3.2 ...`: one reply with two
codes). Now the greeting ends as 220 and the 421 follows as its own reply (answering the
client's first command, RFC 5321 3.8), as a tempfail at connect does after the teaser;
the connection then closes. Both the pregreet delay and a tarpit holding the greeting
(reputation deny_action delay) are drained so.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()
cfg = mt.proxied_config([be.url], pregreet={'delay': '1m', 'action': 'reject'},
                        reputation={'deny': ['198.18.78.0/24'], 'deny_action': 'delay', 'delay': '10m'})
mx = mt.Mxgate(cfg, 'mx-pregreet-drain')
clients = [mt.Client(mx.port, proxy_src=src, greet=False) for src in ('198.18.79.1', '198.18.78.1')]
for c in clients:
    t = c._line()
    mt.check(t is not None and t.startswith('220-'), 'the teaser is out: %r' % (t,))
mt.check(mx.wait_log(r'event=connect client=198\.18\.78\.1 '), 'both clients are in')
mx.stop()
for c, what in zip(clients, ('pregreet delay', 'tarpit')):
    g = c.reply()
    r = c.reply()
    mt.check(g[0] == 220 and all(ln.startswith('220') for ln in g[1].split('\n')),
             '%s: the greeting ends as a 220 reply: %r' % (what, g))
    mt.check(r[0] == 421 and '4.3.2' in r[1] and c.is_closed(3),
             '%s: then 421 4.3.2 on its own and the connection closes: %r' % (what, r))
    c.close()
mt.finish()
