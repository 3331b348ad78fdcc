#!/usr/bin/env python3
"""dnsbl `action: reject` with a milter in `plugins:`, a real rbldnsd and the test milter
(tests/peers/mx_milter.py). A client listed at connect is refused postscreen-style: 250 to
EHLO, the listing at MAIL. The refusal stopped the connect chain before the milter, which
therefore never opened its session: it is not asked about HELO or anything later (Postfix
contacts no milter for a rejected client), so EHLO is not answered with the milter's
on_error (451 4.7.1 Content filter unavailable). An unlisted client still goes through
the milter."""
import os
import re
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('rbldnsd')
mil = mt.milter()
rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:Listed in bl.test for $\n198.18.1.0/24\n')})
be = mt.Backend()
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                dnsbl={'threshold': 3, 'action': 'reject',
                       'lists': [{'zone': 'bl.test', 'weight': 3}]},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mil.port,
                          'on_error': 'tempfail', 'timeout': '10s'}],
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg)

# A listed client: refused at MAIL, not at EHLO.
start = mx.log_size()
c = mt.Client(mx.port, proxy_src='198.18.1.7')
mt.check(c.greeting[0] == 220, 'listed: greeted (postscreen-style refusal)')
code, text = c.ehlo('client.example')
mt.check(code == 250, 'listed: EHLO is answered 250, not the milter\'s on_error (%s %s)' % (code, text))
code, text = c.cmd('MAIL FROM:<a@example.org>')
mt.check(code is not None and code // 100 == 5 and 'bl.test' in text,
         'listed: MAIL carries the connect refusal (%s %s)' % (code, text))
code2, _ = c.cmd('MAIL FROM:<b@example.org>')
mt.check(code2 == code, 'listed: a second MAIL gets it too (%s)' % code2)
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=disconnect client=198\.18\.1\.7', start=start) is not None, 'listed: session ended')
log = mx.log()[start:]
# the contract's form (INTERFACE.md: reason=dnsbl list=bl.test); the decision logged and
# counted once, at connect; each MAIL that is refused for it logs stage=mail
mt.check(len(re.findall(r'event=reject stage=connect reason=dnsbl list=bl\.test client=198\.18\.1\.7 ', log)) == 1,
         'listed: the refusal is logged once at connect, naming the list (%s)' % re.findall(r'.*event=reject.*', log))
mt.check(len(re.findall(r'event=reject stage=mail reason=dnsbl list=bl\.test client=198\.18\.1\.7 code=5\d\d ', log)) == 2,
         'listed: each refused MAIL logs stage=mail with the list')
with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mx.metrics_port, timeout=5) as r:
    m = re.search(r'^mxgate_refusals_total (\S+)$', r.read().decode(), re.M)
mt.check(m is not None and float(m.group(1)) == 1, 'listed: one refusal counted for the session (%s)' % (m and m.group(1)))
mt.check('Content filter unavailable' not in log and 'milter' not in log.replace('name=milter', ''),
         'listed: the milter was not contacted, no milter error logged')

# An unlisted client: the milter sees the session and adds its header.
c = mt.Client(mx.port, proxy_src='198.18.2.7')
mt.check(c.ehlo('client.example')[0] == 250, 'unlisted: EHLO 250')
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'unlisted: MAIL 250')
mt.check(c.cmd('RCPT TO:<b@example.test>')[0] == 250, 'unlisted: RCPT 250')
mt.check(c.cmd('DATA')[0] == 354, 'unlisted: DATA 354')
c.send(mt.stuff(mt.message('unlisted', 'hello\r\n')))
code, text = c.reply()
mt.check(code == 250, 'unlisted: delivered (%s %s)' % (code, text))
c.cmd('QUIT')
c.close()
mt.check(any(b'X-Test-Milter: passed' in m['data'] for m in be.messages), 'unlisted: the milter saw the message')
mx.stop()
mt.finish()
