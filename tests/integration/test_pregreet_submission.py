#!/usr/bin/env python3
"""The pregreet test is for port 25, not for an operator's own users on the submission
port: postscreen sits on the smtp service only (master.cf), never on submission. Before, a
`pregreet.delay` held every greeting on a `submission: true` listener too (the teaser, then
the delay, on every connection of every user's mail program) and an MUA that talked early
was refused. Now a submission listener greets at once with one 220 line; the port-25
listener of the same daemon keeps the test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0'},
                                  {'address': '127.0.0.1:0', 'submission': True}],
                pregreet={'delay': '20s', 'action': 'reject'},
                auth={'dovecot': 'unix:' + os.path.join(mt.TMP, 'no-dovecot.sock'), 'allow_plaintext': True})
mx = mt.Mxgate(cfg, 'mx-pregreet-submission')
mx25, sub = mx.ports[0], mx.ports[1]

c = mt.Client(sub, greet=False, timeout=5)
c.send(b'EHLO laptop.example\r\n')        # an MUA that does not wait
g = c.reply()
e = c.reply()
c.close()
mt.check(g[0] == 220 and '220-' not in g[1], 'submission: one 220 line, no teaser, no delay: %r' % (g,))
mt.check(e[0] == 250, 'and its EHLO is answered: %r' % (e,))
mt.check(not mx.wait_log(r'event=pregreet ', timeout=0.2), 'no pregreet is noted on the submission port')

c = mt.Client(mx25, greet=False, timeout=2)
t = c._line()
mt.check(t is not None and t.startswith('220-'), 'port 25 still gets the teaser: %r' % (t,))
c.close()
mx.stop()
mt.finish()
