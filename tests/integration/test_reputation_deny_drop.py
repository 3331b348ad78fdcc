#!/usr/bin/env python3
"""postscreen_blacklist_action = drop (postscreen_access_list's `reject` entries) as
reputation.deny_action: drop: a client on the deny list gets 521 in place of the greeting
and the connection closes (postscreen: "521 5.3.2 Service currently unavailable" and
disconnect).

Before, deny_action knew tempfail, reject, delay and score: `mxgate -t` refused drop, and
reject greets the client and holds it through EHLO and MAIL before refusing it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
cfg = mt.proxied_config([be.url], reputation={'deny': ['198.18.94.0/24'], 'deny_action': 'drop'})
mx = mt.Mxgate(cfg, 'mx-deny-drop')     # fails before: deny_action: expected one of tempfail, ...

c = mt.Client(mx.port, proxy_src='198.18.94.1', greet=False, timeout=8)
g = c.reply()
e = c.reply()
c.close()
mt.check(g[0] == 521 and '198.18.94.1' in g[1] and '220' not in g[1],
         'a denied client gets 521 in place of the greeting: %r' % (g,))
mt.check(e[0] is None and e[1] == '', 'and the connection is closed: %r' % (e,))
mt.check(mx.wait_log(r'event=reject stage=connect reason=reputation client=198\.18\.94\.1 code=521'),
         'logged as a connect refusal with its code')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('other'), proxy_src='198.18.95.1')
mt.check(r[0] == 250 and be.by_tag('other'), 'another client is served: %r' % (r,))
mt.finish()
