#!/usr/bin/env python3
"""The pass cache lasts no longer than the lists vouch for the client, as postscreen's since
Postfix 3.1 (postscreen_dnsbl_min_ttl / postscreen_dnsbl_max_ttl): the smallest TTL of the
lists' answers (a listing's, or an NXDOMAIN's from its SOA), at least `pass_min_ttl`, at
most `pass_ttl`.

Before, every pass was remembered for `pass_ttl` (1h): a client allow-listed by an answer
with a TTL of 2 s kept its DNSBL_ALLOW (no greylisting) for an hour after the list dropped
it, and a client that passed with "not listed" stayed unlooked-up for an hour after a
block list listed it. Here rbldnsd answers with a TTL of 2 s ($TTL) and pass_min_ttl is
1 s: once the 2 s are over the client is looked up again (seen when the list is gone:
the next connection logs dnsbl_error for it). That the pass cache answers at all is shown
by a second mxgate whose pass_min_ttl (1h) raises the same answer's TTL: when the list is
gone, it still serves the client with no lookup (before, the first mxgate showed it
"right away", within the 2 s: a machine stalled that long failed the test).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
rbl = mt.rbldnsd({
    'short.test': ('ip4set', '$TTL 2\n:127.0.0.2:allowed for 2 seconds\n198.18.85.1\n'),
})
rbl_port = rbl.port
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl_port], 'timeout': '1s', 'tries': 1},
                        dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_min_ttl': '1s',
                               'lists': [{'zone': 'short.test', 'weight': -1}]})
mx = mt.Mxgate(cfg, 'mx-pass-ttl')
# no DNS cache: the answer (TTL 2 s) must come from the pass cache, not from a DNS cache the
# first connection filled (the review showed the check passing with no pass cache at all)
cfg_long = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl_port], 'timeout': '1s', 'tries': 1,
                                           'cache_size': 0},
                             dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_min_ttl': '1h',
                                    'lists': [{'zone': 'short.test', 'weight': -1}]})
mx_long = mt.Mxgate(cfg_long, 'mx-pass-ttl-long')


def greet(src, port=None):
    c = mt.Client(port or mx.port, proxy_src=src)
    c.cmd('QUIT')
    c.close()
    return c.greeting


mt.check(greet('198.18.85.1')[0] == 220, 'the allow-listed client is served')
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.85\.1 .*lists=short\.test'),
         'its listing (TTL 2 s) is logged')
mt.check(greet('198.18.85.2')[0] == 220, 'an unlisted client is served too')
mt.check(greet('198.18.85.1', mx_long.port)[0] == 220, 'the second mxgate serves the allow-listed client')
mt.check(mx_long.wait_log(r'event=dnsbl stage=connect client=198\.18\.85\.1 .*lists=short\.test'),
         'the second mxgate logs its listing too')
mt.stop_proc(rbl)
mark = mx.log_size()
mark_long = mx_long.log_size()
greet('198.18.85.1', mx_long.port)
mt.check(not mx_long.wait_log(r'event=dnsbl_error .*client=198\.18\.85\.1 ', timeout=0.2, start=mark_long),
         'with pass_min_ttl 1h the pass cache answers once the list is gone (no lookup, no error)')
mx_long.stop()


def looked_up_again():
    greet('198.18.85.1')
    return mx.wait_log(r'event=dnsbl_error list=short\.test .*client=198\.18\.85\.1 ', timeout=0.01, start=mark)


mt.check(mt.wait_for(looked_up_again, timeout=15, step=0.3),
         'once the answer\'s 2 s TTL is over, the client is looked up again (not after pass_ttl, 1h)')
mx.stop()

rc, out = mt.config_check(mt.proxied_config([be.url], dnsbl={'pass_min_ttl': '0s', 'lists': [{'zone': 'x.test'}]}),
                          'min-ttl-zero')
mt.check(rc != 0 and 'pass_min_ttl' in out, 'mxgate -t refuses a pass_min_ttl under 1s: %s' % out.strip()[:200])
mt.finish()
