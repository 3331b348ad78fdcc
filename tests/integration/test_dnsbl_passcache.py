#!/usr/bin/env python3
"""The DNS-list pass cache as a postscreen operator uses it, against a real rbldnsd:

- one zone listed twice with different reply filters and weights (postscreen's
  `zen=127.0.0.[10..11]*-2` next to `zen=127.0.0.4*2`): a client served from the pass cache
  carries the same symbols and score as on its first connection, not every list of the zone
- a reload that adds a block list: a client that passed before the reload is looked up in
  the new list, not waved through by the old configuration's pass cache
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')

rbl = mt.rbldnsd({
    'z.test': ('ip4set', ':127.0.0.4:policy listed\n198.18.31.0/24\n'
               '198.18.30.0/24 :127.0.0.10:allow listed\n'),
    'b2.test': ('ip4set', ':127.0.0.2:Listed in b2.test\n198.18.32.0/24\n'),
})


RULES = os.path.join(mt.TMP, 'none.rules')
with open(RULES, 'w') as f:
    f.write('# no rules: the DNS-list symbols alone make the score\n')


def cfg(be, extra_lists=()):
    return mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                             dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': '1h', 'lists': [
                                 {'zone': 'z.test', 'weight': 2, 'codes': ['127.0.0.4'], 'symbol': 'Z_POLICY'},
                                 {'zone': 'z.test', 'weight': -1, 'codes': ['127.0.0.10'], 'symbol': 'Z_ALLOW'},
                             ] + list(extra_lists)},
                             rules={'files': [RULES], 'actions': {'add_header': 100}})


def spam_status(be, tag):
    m = be.by_tag(tag)
    if not m:
        return None
    data = m[0]['data'] if isinstance(m[0], dict) else m[0]
    if isinstance(data, bytes):
        data = data.decode('utf-8', 'replace')
    found = re.search(r'X-Spam-Status: ([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)', data)
    return re.sub(r'\s+', ' ', found.group(1)) if found else ''


def send(mx, src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src)


be = mt.Backend()
mx = mt.Mxgate(cfg(be), 'mx')

# ---------------------------------------------------------------- one zone, two filters
r1 = send(mx, '198.18.30.1', 'first')
r2 = send(mx, '198.18.30.1', 'again')
s1, s2 = spam_status(be, 'first'), spam_status(be, 'again')
mt.check(r1[0] == 250 and r2[0] == 250, 'the allow-listed client is served twice: %r %r' % (r1, r2))
mt.check(s1 is not None and 'Z_ALLOW' in s1 and 'Z_POLICY' not in s1,
         'first connection: only the matching filter of z.test scores: %r' % s1)
mt.check(s1 == s2, 'from the pass cache the same symbols and score come back: %r vs %r' % (s1, s2))

# ---------------------------------------------------------------- a reload adds a list
r = send(mx, '198.18.32.7', 'before')
mt.check(r[0] == 250, 'before the reload b2.test is not configured: served %r' % (r,))
mark = mx.log_size()
mx.reload(cfg(be, [{'zone': 'b2.test', 'weight': 3}]))
mt.check(mx.wait_log(r'event=reloaded', start=mark), 'the reload is done')
r = send(mx, '198.18.32.7', 'after')
mt.check(r[0] == 550 and 'b2.test' in r[1],
         'after the reload the passed client is looked up in the new list and refused: %r' % (r,))
mx.stop()
mt.finish()
