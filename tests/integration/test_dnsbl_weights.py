#!/usr/bin/env python3
"""DNS-list weights with decimals, against a real rbldnsd: the threshold and the allow
threshold are reached when the listed weights add up to them, as docs/filters-dns.md says
("when the sum reaches threshold"), whatever binary floating point makes of the decimals.

Three lists of weight 0.3 and threshold 0.9: a client on all three sums to 0.9. Before, the
sum was 0.8999999999999999 in binary: the log read `score=0.9 threshold=0.9` and the client
was served. Three allow lists of -0.3 and allow_threshold -0.9: the client was not
allow-listed (greylisted instead). Now both fire at the boundary; one list short of it
does not.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')

ZONES = {}
for z in ('a', 'b', 'c'):
    ZONES['%s.bl.test' % z] = ('ip4set', ':127.0.0.2:listed in %s\n198.18.74.1\n198.18.74.2\n' % z)
    ZONES['%s.wl.test' % z] = ('ip4set', ':127.0.0.2:allowed by %s\n198.18.74.3\n198.18.74.4\n' % z)
# 198.18.74.2 and .4 are on two of the three lists only
ZONES['c.bl.test'] = ('ip4set', ':127.0.0.2:listed in c\n198.18.74.1\n')
ZONES['c.wl.test'] = ('ip4set', ':127.0.0.2:allowed by c\n198.18.74.3\n')
rbl = mt.rbldnsd(ZONES)

lists = [{'zone': '%s.bl.test' % z, 'weight': 0.3} for z in 'abc'] + \
        [{'zone': '%s.wl.test' % z, 'weight': -0.3} for z in 'abc']
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 0.9, 'allow_threshold': -0.9, 'action': 'reject',
                               'pass_ttl': '1h', 'lists': lists},
                        greylist={'enabled': True, 'delay': '1h'})
mx = mt.Mxgate(cfg, 'mx-weights')


def send(src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src)


for rnd in ('lookup', 'pass cache'):
    r = send('198.18.74.1', 'three-bl-' + rnd)
    mt.check(r[0] == 550 and 'bl.test' in r[1], '%s: 0.3 + 0.3 + 0.3 reaches threshold 0.9: %r' % (rnd, r))
    r = send('198.18.74.2', 'two-bl-' + rnd)
    mt.check(r[0] == 451 and 'greylisted' in r[1], '%s: 0.3 + 0.3 is below it (greylisted as unknown): %r' % (rnd, r))
    r = send('198.18.74.3', 'three-wl-' + rnd)
    mt.check(r[0] == 250 and be.by_tag('three-wl-' + rnd),
             '%s: -0.3 * 3 reaches allow_threshold -0.9: allow-listed, not greylisted: %r' % (rnd, r))
    r = send('198.18.74.4', 'two-wl-' + rnd)
    mt.check(r[0] == 451, '%s: -0.3 * 2 is above it: greylisted: %r' % (rnd, r))
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.74\.1 .*score=0\.9 threshold=0\.9'),
         'the log shows the sum at the threshold')
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.74\.3 .*score=-0\.9 .*allow=yes'),
         'and the allow-listing at -0.9')
mx.stop()
mt.finish()
