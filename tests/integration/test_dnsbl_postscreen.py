#!/usr/bin/env python3
"""postscreen_dnsbl_sites as an operator coming from Postfix writes it, against a real
rbldnsd: reply filters with octet ranges and lists (`=127.0.0.[2..11]`, `=127.0.0.[17;18]`,
dnswl's `=127.0.[2..15].1`), one zone listed several times with different filters and
weights, negative weights for allow lists, the threshold reached exactly; and
postscreen_dnsbl_whitelist_threshold (`allow_threshold`): a client whose summed weight is at
or below it skips the remaining connect checks and greylisting.

    zen.test=127.0.0.[2..11]*3     dnswl.test=127.0.[2..15].1*-3     mspike.test=127.0.0.[17;18]*-1
    zen.test=127.0.0.[10;11]*1     (policy block list: below the threshold alone)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')

rbl = mt.rbldnsd({
    'zen.test': ('ip4set', ':127.0.0.4:zen XBL\n198.18.40.1\n198.18.40.4\n'
                 '198.18.40.2 :127.0.0.11:zen PBL\n198.18.40.3 :127.0.0.12:zen unknown code\n'),
    'dnswl.test': ('ip4set', '198.18.40.4 :127.0.5.1:dnswl medium\n198.18.40.5 :127.0.5.0:dnswl none\n'
                   '198.18.40.6 :127.0.16.1:dnswl reserved\n'),
    'mspike.test': ('ip4set', '198.18.40.2 :127.0.0.18:mailspike good\n'),
})
lists = [
    {'zone': 'zen.test', 'weight': 3, 'codes': ['127.0.0.[2..11]']},
    {'zone': 'zen.test', 'weight': 1, 'codes': ['127.0.0.[10;11]'], 'symbol': 'ZEN_PBL'},
    {'zone': 'dnswl.test', 'weight': -3, 'codes': ['127.0.[2..15].1']},
    {'zone': 'mspike.test', 'weight': -1, 'codes': ['127.0.0.[17;18]']},
]
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'action': 'reject', 'pass_ttl': 0, 'lists': lists})
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]),
                          'postscreen')
mt.check(rc == 0, 'mxgate -t accepts postscreen reply filters: %s %s' % (rc, out.strip()[:300]))
if rc != 0:
    mt.finish()
mx = mt.Mxgate(cfg, 'mx')


def send(src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src)


r = send('198.18.40.1', 'xbl')
mt.check(r[0] == 550 and 'zen.test' in r[1] and 'zen XBL' in r[1],
         '127.0.0.4 is in 127.0.0.[2..11]: weight 3 reaches the threshold: %r' % (r,))
r = send('198.18.40.2', 'pbl')
mt.check(r[0] == 550, '127.0.0.11 matches both zen filters, 3 + 1 - 1 (mailspike 127.0.0.18) = 3: %r' % (r,))
r = send('198.18.40.3', 'unknown')
mt.check(r[0] == 250, '127.0.0.12 is outside every zen filter: served %r' % (r,))
r = send('198.18.40.4', 'dnswl')
mt.check(r[0] == 250, 'dnswl 127.0.5.1 (in 127.0.[2..15].1) offsets the zen listing: 3 - 3 = 0: %r' % (r,))
r = send('198.18.40.5', 'dnswl-none')
mt.check(r[0] == 250, 'dnswl trust 0 is outside the filter, nothing listed: %r' % (r,))
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.40\.2 .*score=3 .*lists='),
         'the log shows the summed weight of 198.18.40.2')
mx.stop()

# ---------------------------------------------------------------- allow_threshold
greylist = {'enabled': True, 'store': 'local', 'delay': '1h'}
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 3, 'allow_threshold': -1, 'pass_ttl': '1h', 'lists': lists},
                        greylist=greylist)
mx = mt.Mxgate(cfg, 'mx-allow')
r = send('198.18.40.6', 'unknown-grey')
mt.check(r[0] == 451 and 'greylisted' in r[1], 'a client with no allow listing is greylisted: %r' % (r,))
r = send('198.18.40.4', 'dnswl-zen')
mt.check(r[0] == 451, 'zen 3 + dnswl -3 = 0 is above allow_threshold -1: greylisted: %r' % (r,))
r = send('198.18.40.2', 'allowed')
mt.check(r[0] == 550, 'allow_threshold never outweighs a block at the threshold: %r' % (r,))
lists.append({'zone': 'dnswl.test', 'weight': -2, 'codes': ['127.0.5.0'], 'symbol': 'DNSWL_NONE'})
mark = mx.log_size()
mx.reload(cfg)
mt.check(mx.wait_log(r'event=reloaded', start=mark), 'reloaded with dnswl trust 0 as an allow list')
r = send('198.18.40.5', 'allow-listed')
mt.check(r[0] == 250 and be.by_tag('allow-listed'), 'sum -2 <= allow_threshold -1: not greylisted, delivered: %r' % (r,))
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.40\.5 .*allow'),
         'the allow-listing is logged')
r = send('198.18.40.5', 'allow-cached')
mt.check(r[0] == 250, 'from the pass cache too: %r' % (r,))
mx.stop()
mt.finish()
