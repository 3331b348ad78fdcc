#!/usr/bin/env python3
"""postscreen_dnsbl_action = drop: a client whose IP lists reach the threshold gets
"521 5.7.1 Service unavailable; client [ip] blocked using zone" in place of the greeting and
the connection is closed (postscreen: PSC_DROP_SESSION_STATE with its DNSBL format, code 521).

Before, dnsbl.action knew reject, tempfail and score only: a postscreen operator's `drop`
was refused by `mxgate -t`, and the nearest choice (reject) greets the bot and keeps the
connection through EHLO and MAIL before refusing it. Now `action: drop` ends it at once (RFC
7504's 521 "does not accept mail" in place of the 220). Domain lists at HELO and MAIL refuse
with 550 under drop, as there is no greeting left to replace. Other clients are untouched.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:Listed, see https://bl.example/$\n198.18.93.1\n'),
                  'dbl.test': ('dnset', ':127.0.1.2:Bad domain\nbad.example\n')})
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'action': 'drop',
                               'lists': [{'zone': 'bl.test', 'weight': 3},
                                         {'zone': 'dbl.test', 'type': 'domain', 'weight': 3}]})
mx = mt.Mxgate(cfg, 'mx-dnsbl-drop')     # fails before: dnsbl.action: expected one of reject, ...

c = mt.Client(mx.port, proxy_src='198.18.93.1', greet=False, timeout=8)
g = c.reply()
mt.check(g[0] == 521 and g[1].startswith('521 5.7.1 Service unavailable; client [198.18.93.1] blocked using bl.test'),
         'a listed client gets 521 in place of the greeting: %r' % (g,))
mt.check('220' not in g[1], 'and no 220 before it: %r' % (g,))
e = c.reply()
mt.check(e[0] is None and e[1] == '', 'the connection is closed after the 521: %r' % (e,))
c.close()
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl list=bl\.test client=198\.18\.93\.1 .*521'),
         'the refusal is logged once, naming the list and the code')

r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('unlisted'), proxy_src='198.18.93.2')
mt.check(r[0] == 250 and be.by_tag('unlisted'), 'an unlisted client is greeted and delivered: %r' % (r,))

r = mt.send_mail(mx.port, 'a@bad.example', ['u@example.test'], mt.message('baddomain'), proxy_src='198.18.93.3')
mt.check(r[0] == 550 and 'sender [bad.example] blocked using dbl.test' in r[1] and not be.by_tag('baddomain'),
         'a listed sender domain is refused 550 under drop (no greeting left to replace): %r' % (r,))
mx.stop()

# With the pregreet teaser out, the greeting ends as 220 (one reply, one code) and the 521
# follows at once, then the close.
cfg['pregreet'] = {'delay': '1s', 'pass_ttl': '0s'}
mx = mt.Mxgate(cfg, 'mx-dnsbl-drop-teaser')
c = mt.Client(mx.port, proxy_src='198.18.93.1', greet=False, timeout=8)
g = c.reply()
d = c.reply()
e = c.reply()
c.close()
mt.check(g[0] == 220 and g[1].startswith('220-') and d[0] == 521 and 'blocked using bl.test' in d[1] and e[0] is None,
         'after the teaser: 220 ended, then 521, then closed: %r %r %r' % (g, d, e))
mx.stop()
mt.finish()
