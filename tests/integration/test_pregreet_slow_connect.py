#!/usr/bin/env python3
"""postscreen's pregreet test while the connect stage is still running: a bot that talks after
pregreet.delay but before the final `220 ` line has still talked before the greeting.

The greeting's final line waits for both the delay and the connect stage's checks. With a DNS
list behind a slow resolver (here one that never answers, dns.timeout 3s) the teaser `220-`
goes out, the delay (0.5s) ends, and the greeting is still held by the lookup. Before, the
talk test looked only while the delay's timer ran: a bot that sent EHLO in that gap was
served as a polite client (no event=pregreet, no refusal). postscreen counts anything sent
before its final 220 line (PREGREET). Now it is refused as any early talker (550 5.5.1 at
MAIL), logged and counted; a client that waits for the whole greeting is served.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(('127.0.0.1', 0))      # bound, never read: every query waits for dns.timeout
cfg = mt.proxied_config([be.url], pregreet={'delay': '500ms', 'action': 'reject'},
                        dns={'resolvers': ['127.0.0.1:%d' % silent.getsockname()[1]], 'timeout': '3s'},
                        dnsbl={'lists': [{'zone': 'bl.test', 'weight': 1}]})
mx = mt.Mxgate(cfg, 'mx-pregreet-slow')

# The bot: reads the teaser, lets the pregreet delay pass (the scenario itself: talking after
# the delay's end, while the lookup still holds the final line), then sends EHLO.
c = mt.Client(mx.port, proxy_src='198.18.72.1', greet=False)
teaser = c._line()
mt.check(teaser is not None and teaser.startswith('220-'), 'the teaser line came first: %r' % (teaser,))
time.sleep(1.2)
c.send(b'EHLO bot.example\r\n')
g = c.reply()
mt.check(g[0] == 220 and '220-' not in g[1], 'then the final greeting line: %r' % (g,))
e = c.reply()
m = c.cmd('MAIL FROM:<bot@example.org>')
c.close()
mt.check(m[0] == 550 and '5.5.1' in m[1],
         'EHLO after the delay but before the final 220 line: MAIL refused 550 5.5.1: %r' % (m,))
m = mx.wait_log(r'event=pregreet client=198\.18\.72\.1 port=40000 bytes=18 after_ms=(\d+) data="EHLO bot\.example\\r\\n"')
mt.check(m and int(m.group(1)) >= 1000,
         'logged as event=pregreet with postscreen\'s details (port, bytes, after, what was sent): %s' % (m and m.group(0)))

# A client that waits for the whole greeting is served.
c = mt.Client(mx.port, proxy_src='198.18.72.2')
mt.check(c.greeting[0] == 220, 'a patient client gets the greeting: %r' % (c.greeting,))
c.ehlo('client.example.org')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('patient'), client=c)
c.close()
mt.check(r[0] == 250 and be.by_tag('patient'), 'and its mail is delivered: %r' % (r,))
mt.check(not mx.wait_log(r'event=pregreet client=198\.18\.72\.2 ', timeout=0.1), 'and it is no early talker')
mx.stop()
mt.finish()
