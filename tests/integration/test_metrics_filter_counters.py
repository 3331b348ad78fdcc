#!/usr/bin/env python3
"""The filters' counters of /metrics move with what the filters do, as an operator coming
from rspamd (its per-symbol and per-action counters) or postscreen (its DNSBL log lines)
graphs them: docs/operations.md lists

  mxgate_dnsbl_hits_total      DNS list lookups that listed the client
  mxgate_ratelimit_hits_total  Rate limit rules that fired
  mxgate_spf_fail_total        SPF checks with a fail or softfail result
  mxgate_spam_found_total      Messages scored as spam

Before the fix the four were declared and exported but nothing ever counted them: they
read 0 while a real rbldnsd listed the client, a rate limit deferred it, SPF said softfail
and the rules engine judged every message spam (the log said so each time)."""
import os
import re
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:listed\n198.18.75.1\n')})
rules = os.path.join(mt.TMP, 'spammy.cf')
with open(rules, 'w') as f:      # every message is spam (score 10, add_header at 5)
    f.write('header MXT_ALWAYS exists:Message-ID\nscore MXT_ALWAYS 10\n')
be = mt.Backend()
cfg = mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                        dnsbl={'threshold': 100, 'action': 'reject', 'lists': [{'zone': 'bl.test', 'weight': 1}]},
                        spf={'enabled': True, 'timeout': '5s',
                             'records': ['example.org TXT v=spf1 ip4:198.18.0.0/15 -all',
                                         'soft.example TXT v=spf1 ip4:192.0.2.1 ~all']},
                        ratelimit={'store': 'local', 'rules': [
                            {'key': 'ip', 'count': 'messages', 'limit': '2/1h', 'action': 'tempfail'}]},
                        rules={'files': [rules], 'actions': {'add_header': 5, 'reject': 100}},
                        metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg, 'mx-filters')
mport = mx.metrics_port


def metric(name):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=mt.slack(5)) as r:
        m = re.search(r'^mxgate_%s (\S+)$' % name, r.read().decode(), re.M)
    return float(m.group(1)) if m else None


def send(src, sender, tag):
    return mt.send_mail(mx.port, sender, ['b@example.test'], mt.message(tag), ehlo='client.example.org',
                        proxy_src=src)


r = send('198.18.75.1', 'a@example.org', 'listed')
mt.check(r[0] == 250, 'a client on bl.test (weight 1, threshold 100) is served: %r' % (r,))
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.75\.1 .*lists=bl\.test') is not None,
         'the log says bl.test listed it')
r = send('198.18.75.2', 'a@soft.example', 'softfail')
mt.check(r[0] == 250, 'a softfail sender is served: %r' % (r,))
mt.check(mx.wait_log(r'event=spf result=softfail') is not None, 'the log says softfail')
for i in range(3):
    r = send('198.18.75.3', 'a@example.org', 'rl%d' % i)
mt.check(r[0] == 451, 'the third message from one client is deferred by the rate limit: %r' % (r,))
mt.check(mx.wait_log(r'event=ratelimit key=ip ') is not None, 'the log says the rate limit fired')

mt.check(metric('dnsbl_hits_total') == 1, 'mxgate_dnsbl_hits_total is 1 (%s)' % metric('dnsbl_hits_total'))
mt.check(metric('spf_fail_total') == 1, 'mxgate_spf_fail_total is 1 (%s)' % metric('spf_fail_total'))
mt.check(metric('ratelimit_hits_total') == 1, 'mxgate_ratelimit_hits_total is 1 (%s)' % metric('ratelimit_hits_total'))
mt.check(metric('spam_found_total') == 4, 'mxgate_spam_found_total counts the 4 messages judged spam (%s)'
         % metric('spam_found_total'))
mt.check(len(be.messages) == 4 and all(b'X-Spam-Flag: YES' in m['data'] or b'X-Spam' in m['data']
                                       for m in be.messages),
         'the 4 delivered messages carry the spam header (%d)' % len(be.messages))
mx.stop()
mt.finish()
