#!/usr/bin/env python3
"""A DNS list whose zone carries a secret (Spamhaus DQS: KEY.zen.dq.spamhaus.net) must not
hand it to every client it refuses, as postscreen_dnsbl_reply_map lets a postscreen operator
hide it ("hide 'password' information in DNSBL domain names"). Before, the reply always
named the zone ("550 5.7.1 Service unavailable; client [198.18.92.1] blocked using
s3cr3tk3y.zen.dq.test"), and so did the symbol in X-Spam-Status (DNSBL_S3CR3TK3Y_...), with
no way to hide it. Now `reply_name` is what the client and the mail see (the reply, the
reason template's {zone}, the symbol's default name); the log keeps the zone for the
operator.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
ZONE = 's3cr3tk3y.zen.dq.test'
rbl = mt.rbldnsd({ZONE: ('ip4set', ':127.0.0.2:Listed by zen, see https://check.example/$\n198.18.92.1\n198.18.92.2\n')})
CF = os.path.join(mt.TMP, 'one.cf')
with open(CF, 'w') as f:
    f.write('header NEVER_MATCHES Subject =~ /never-ever-matches/\nscore NEVER_MATCHES 1\n')


def gate(action, name, reason=None):
    lst = {'zone': ZONE, 'weight': 3, 'reply_name': 'zen.spamhaus.test'}
    if reason:
        lst['reason'] = reason
    be = mt.Backend()
    cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                            dnsbl={'threshold': 3, 'action': action, 'lists': [lst]},
                            rules={'files': [CF], 'actions': {'add_header': 0.1, 'reject': 100}})
    return be, mt.Mxgate(cfg, name)


be, mx = gate('reject', 'mx-reply-name')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('listed'), proxy_src='198.18.92.1')
mt.check(r[0] == 550 and 'blocked using zen.spamhaus.test' in r[1], 'the reply names reply_name: %r' % (r,))
mt.check('s3cr3tk3y' not in r[1], 'and not the zone with its key: %r' % (r,))
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl list=s3cr3tk3y\.zen\.dq\.test '),
         'the log keeps the zone for the operator')
mx.stop()

be, mx = gate('reject', 'mx-reply-name-reason', reason='{zone} lists {ip}')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('listed2'), proxy_src='198.18.92.2')
mt.check(r[0] == 550 and 'zen.spamhaus.test lists 198.18.92.2' in r[1] and 's3cr3tk3y' not in r[1],
         'the reason template\'s {zone} is reply_name too: %r' % (r,))
mx.stop()

be, mx = gate('score', 'mx-reply-name-score')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('scored'), proxy_src='198.18.92.1')
got = be.by_tag('scored')
head = got[0]['data'].split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace') if got else ''
mt.check(r[0] == 250 and 'DNSBL_ZEN_SPAMHAUS_TEST' in head, 'action score: the symbol is named after reply_name: %r' % (r,))
mt.check('S3CR3TK3Y' not in head.upper(), 'and the key is nowhere in the delivered header')
mx.stop()

rc, out = mt.config_check(mt.proxied_config([mt.Backend().url], dnsbl={'lists': [{'zone': 'x.test', 'reply_name': 'a b'}]}),
                          'bad-reply-name')
mt.check(rc != 0 and 'reply_name' in out, 'mxgate -t refuses a reply_name with a blank: %s' % out.strip()[:200])
mt.finish()
