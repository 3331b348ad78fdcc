#!/usr/bin/env python3
"""README "In front of real mail servers": "allow mxgate's address to send ... PROXY v2
(`client_identity: proxy_v2`, Postfix: `smtpd_upstream_proxy_protocol = haproxy`) so they log
and judge the real client". Done as written, in front of a real Postfix 3.x:

- the backend stays up: such a Postfix waits for a PROXY header on every connection, the
  health probes' included (was: the probes sent none, Postfix waited, every probe failed
  "timeout during greeting" and the backend went down with /readyz at 503 — mail still got
  through because a set whose servers are all down is tried anyway, which hid it). A probe
  now starts with a PROXY v2 LOCAL header (HAProxy's check-send-proxy), which Postfix takes as
  "no client to announce" and which carries no made-up address;
- a client coming in through a PROXY-protocol listener (a load balancer in front, swaks
  --proxy-source 198.18.0.9) is the client Postfix logs: client=unknown[198.18.0.9]."""
import os
import re
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'postfix')
mt.need_postfix()

pport = mt.free_port()
# As README says, plus a short wait for the header so a probe without one fails fast.
mt.postfix_instance('pfproxy', pport, '''smtpd_upstream_proxy_protocol = haproxy
smtpd_upstream_proxy_timeout = 2s
relay_domains = example.org
relayhost = [127.0.0.1]:9
smtpd_recipient_restrictions = reject_unauth_destination
''')


def pflog():
    return mt.log_of('pfproxy')


cfg = mt.config(['smtp://127.0.0.1:%d' % pport], workers=1,
                listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'], metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                backends={'client_identity': 'proxy_v2',
                          'health_check': {'interval': '200ms', 'timeout': '%gs' % mt.slack(5),
                                           'fall': 2, 'rise': 1}})
cfg['log'] = {'level': 'debug'}
mx = mt.Mxgate(cfg, name='mx-pfproxy')

# Three probe results, whatever they are, then judge them.
mt.check(mt.wait_for(lambda: mx.count_log(r'event=health_check backend=smtp://127\.0\.0\.1:%d result=' % pport) >= 3
                     or mx.count_log(r'event=backend_down') > 0, mt.slack(30)),
         'three health probes of the Postfix backend ran')
mt.check(mx.count_log(r'event=health_check backend=\S+ result=fail') == 0 and mx.count_log(r'event=backend_down') == 0,
         'the health probes pass against a Postfix with smtpd_upstream_proxy_protocol = haproxy (%s)'
         % ' | '.join(re.findall(r'event=(?:health_check|backend_down)[^\n]*', mx.log())[:2]))
mport = mx.metrics_port
try:
    with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % mport, timeout=10) as resp:
        ready = resp.status
except urllib.error.HTTPError as e:
    ready = e.code
mt.check(ready == 200, '/readyz is 200 with the Postfix backend behind PROXY v2 (%s)' % ready)
# (one "haproxy read: EOF" is the test's own wait for the port: it connects and closes)
mt.check(not re.search(r'haproxy read: (?!EOF)', pflog()) and re.search(r'disconnect from \S+ ehlo=1 quit=1', pflog()),
         'Postfix saw the probes as EHLO + QUIT, no PROXY trouble (%s)'
         % ' | '.join(re.findall(r'warning: haproxy[^\n]*', pflog())[:2]))

r = mt.swaks(mx.port, '--proxy-version', '2', '--proxy-family', 'AF_INET', '--proxy-source', '198.18.0.9',
             '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1', '--proxy-dest-port', str(mx.port),
             '--from', 'a@example.net', '--to', 'b@example.org')
mt.check(r.returncode == 0 and re.search(r'<-  250 .*queued as', r.stdout),
         'a message through mxgate to Postfix: 250 (%s)' % r.stdout[-300:])
mt.check(mt.wait_for(lambda: re.search(r'\]: [0-9A-F]+: client=\S*\[198\.18\.0\.9\]', pflog()), 10),
         'Postfix logs the real client, 198.18.0.9, from the PROXY v2 header')
mt.finish()
