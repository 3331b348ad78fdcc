#!/usr/bin/env python3
"""One domain list zone listed twice with different reply filters and weights (postscreen
style, as docs/filters-dns.md shows for IP lists), checked on the HELO name, with action
score: both listings reach the rules engine, as they do for IP lists and the MAIL FROM
domain. Before, the second list's symbol (the same default DNSBL_<ZONE>) was taken for a
repeated EHLO's and dropped at the first HELO: the rules engine saw 2 of the 3 points the
dnsbl sum had. A repeated EHLO still scores the listing once.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
rbl = mt.rbldnsd({'dbl.test': ('dnset', ':127.0.1.2:listed\nspam-helo.example\n')})
CF = os.path.join(mt.TMP, 'one.cf')
with open(CF, 'w') as f:
    f.write('header NEVER_MATCHES Subject =~ /never-ever-matches/\nscore NEVER_MATCHES 1\n')
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 10, 'action': 'score', 'lists': [
                            {'zone': 'dbl.test', 'type': 'domain', 'weight': 2, 'codes': ['127.0.1.[2..99]']},
                            {'zone': 'dbl.test', 'type': 'domain', 'weight': 1, 'codes': ['127.0.1.2']}]},
                        rules={'files': [CF], 'actions': {'add_header': 0.1, 'reject': 100}})
mx = mt.Mxgate(cfg, 'mx-helo-twice')


def status(tag):
    got = be.by_tag(tag)
    if not got:
        return ''
    text = got[0]['data'].decode('utf-8', 'replace').replace('\r\n\t', ' ').replace('\r\n ', ' ')
    return next((ln for ln in text.split('\r\n') if ln.startswith('X-Spam-Status:')), '')


r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('twice'), ehlo='spam-helo.example',
                 proxy_src='198.18.93.1')
st = mt.wait_for(lambda: status('twice'), 5)
mt.check(r[0] == 250 and 'score=3.0' in st, 'both listings of the HELO name are scored (2 + 1): %s' % st)

c = mt.Client(mx.port, proxy_src='198.18.93.2')
c.ehlo('spam-helo.example')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('again'), ehlo='spam-helo.example', client=c)
c.close()
st = mt.wait_for(lambda: status('again'), 5)
mt.check(r[0] == 250 and 'score=3.0' in st, 'a repeated EHLO with the same name scores them once: %s' % st)
mx.stop()
mt.finish()
