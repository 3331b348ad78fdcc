#!/usr/bin/env python3
"""greylist.spf_key (OpenSMTPD's filter-spfgreylist, as a postgrey operator would look for
it): a sender whose SPF passes is greylisted by (spf:<domain>, sender, recipient), so a big
sender's retry from another network its SPF record names passes; a sender without an SPF
pass keeps the network triplet. SPF from a real DNS peer (dns_peer.py). Before the key,
-t refused it and the retry from the other network was greylisted again."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DELAY = 1.0


def txt(*parts):
    return {'txt': list(parts)}


dns = mt.dns_peer({'pool.example': [txt('v=spf1 ip4:198.18.80.0/22 -all')],
                   'nospf.example': [txt('some other text')]})
be = mt.Backend()
gw = mt.Mxgate(mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s'},
                                 spf={'enabled': True},
                                 greylist={'enabled': True, 'delay': '1s', 'retry_window': '1h',
                                           'spf_key': True}))


def code(src, sender, rcpt='u@example.test'):
    return mt.rcpt_code(gw.port, src, sender, rcpt)


mt.check(code('198.18.80.1', 'news@pool.example') == 451, 'SPF pass: the first attempt is greylisted')
mt.check(code('198.18.80.2', 'other@nospf.example') == 451, 'no SPF pass: the first attempt is greylisted')
first = time.time()
time.sleep(max(0, first + DELAY + 0.3 - time.time()))
mt.check(code('198.18.82.7', 'news@pool.example') == 250,
         'SPF pass: the retry from another /24 its SPF record names passes (keyed by the domain)')
mt.check(code('198.18.82.7', 'other@nospf.example') == 451,
         'no SPF pass: the retry from another /24 is a new triplet (keyed by the network)')
mt.check(gw.wait_log(r'event=greylist client=198\.18\.80\.1 ', timeout=5), 'greylisting logged')
gw.stop()

cfg = mt.proxied_config([be.url], listen=[{'address': '127.0.0.1:%d' % mt.free_port(), 'proxy_protocol': True}],
                        greylist={'enabled': True, 'spf_key': True})
rc, out = mt.config_check(cfg, 'nospf')
mt.check(rc == 0 and 'warning: greylist.spf_key without spf.enabled' in out,
         '-t warns when spf is off: %r' % out)
mt.finish()
