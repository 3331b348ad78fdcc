#!/usr/bin/env python3
"""postscreen's pregreet test, black-box: the greeting starts with a `220-` teaser line and
its final `220 ` line waits `pregreet.delay`; a client that talks meanwhile is a bot.

- a client that waits is served (one multi-line greeting), and its mail delivered
- a bot that sends EHLO at once: 550 5.5.1 at MAIL, logged event=pregreet, nothing delivered
- the same bot behind a PROXY-protocol load balancer, its EHLO in the header's segment
  (HAProxy forwards what the client sent right behind the header): refused alike
- a bot that speaks half-way through the delay: refused alike
- action drop: the teaser's greeting ended as 220, then 521 and the connection closed; action score: served, PREGREET scored
- a tempfail at connect while the teaser is out: the greeting ends as 220, then 421
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()


def gate(action, name):
    cfg = mt.proxied_config([be.url], pregreet={'delay': '1s', 'action': action})
    cfg['listen'].append({'address': '127.0.0.1:0'})    # a plain listener too
    return mt.Mxgate(cfg, name)


def raw(port, first=b'', later=b'', pause=0.0):
    """A client that sends `first` at once after connecting, then `later` after `pause`."""
    c = mt.Client(port, greet=False)
    if first:
        c.send(first)
    if later:
        time.sleep(pause)
        c.send(later)
    return c


def bot_result(c):
    """(greeting, EHLO reply, MAIL reply) of a client that sent EHLO before the greeting."""
    g = c.reply()
    e = c.reply()
    m = c.cmd('MAIL FROM:<bot@example.org>')
    c.close()
    return g, e, m


mx = gate('reject', 'mx-reject')
plain = mx.ports[1]
proxied = mx.ports[0]

t0 = time.time()
c = mt.Client(proxied, proxy_src='198.18.70.1')
waited = time.time() - t0
mt.check(c.greeting[0] == 220 and c.greeting[1].startswith('220-') and c.greeting[1].count('\n') == 1,
         'the greeting is a 220- teaser then the final 220 line: %r' % (c.greeting,))
mt.check(waited >= 0.9, 'the final line came after pregreet.delay (%.2fs)' % waited)
c.ehlo('client.example.org')
r = mt.send_mail(proxied, 'a@example.org', ['b@example.test'], mt.message('polite'), client=c)
c.close()
mt.check(r[0] == 250 and be.by_tag('polite'), 'a client that waited is served: %r' % (r,))

g, e, m = bot_result(raw(plain, b'EHLO bot.example\r\n'))
mt.check(g[0] == 220 and m[0] == 550 and '5.5.1' in m[1], 'EHLO at once: MAIL refused 550 5.5.1: %r' % (m,))

segment = mt.proxy_v2('198.18.70.2', proxied) + b'EHLO bot.example\r\n'
g, e, m = bot_result(raw(proxied, segment))
mt.check(m[0] == 550 and '5.5.1' in m[1],
         'EHLO in the PROXY header\'s segment: MAIL refused 550 5.5.1: %r' % (m,))
mt.check(mx.wait_log(r'event=pregreet client=198\.18\.70\.2 '), 'and logged as event=pregreet with the real client')

g, e, m = bot_result(raw(proxied, mt.proxy_v2('198.18.70.3', proxied), b'EHLO bot.example\r\n', 0.5))
mt.check(m[0] == 550, 'EHLO half-way through the delay: MAIL refused: %r' % (m,))
mt.check(not be.by_tag('bot'), 'nothing from the bots was delivered')
mx.stop()

mx = gate('drop', 'mx-drop')
c = raw(mx.ports[0], mt.proxy_v2('198.18.70.4', mx.ports[0]) + b'EHLO bot.example\r\n')
g = c.reply()
d = c.reply()
mt.check(g[0] == 220 and g[1].split('\n')[-1].startswith('220 ') and d[0] == 521 and '220' not in d[1]
         and c.is_closed(3),
         'action drop: the greeting ends as 220 (one code per reply), then 521 and the connection closed: %r %r'
         % (g, d))
c.close()
mx.stop()

mx = gate('score', 'mx-score')
c = raw(mx.ports[1], b'EHLO bot.example\r\n')
g, e = c.reply(), c.reply()
r = mt.send_mail(mx.ports[1], 'a@example.org', ['b@example.test'], mt.message('scored'), client=c)
c.close()
mt.check(r[0] == 250 and be.by_tag('scored'), 'action score: the early talker is served: %r' % (r,))
mt.check(mx.wait_log(r'event=pregreet client=127\.0\.0\.1'), 'action score: the pregreet is logged')
mx.stop()

# A tempfail at connect (a milter down, on_error tempfail) while the teaser is out: the
# greeting is one reply with one code (RFC 5321 4.2.1), so it ends as 220, and the 421
# answers the client's first command.
cfg = mt.config([be.url], pregreet={'delay': '1s', 'action': 'reject'},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mt.dead_port(), 'on_error': 'tempfail'}])
mx = mt.Mxgate(cfg, 'mx-teaser-421')
c = mt.Client(mx.port)
lines = c.greeting[1].split('\n')
e = c.cmd('EHLO client.example.org')
mt.check(len(lines) == 2 and all(ln.startswith('220') for ln in lines),
         'teaser then a tempfail at connect: every greeting line is 220: %r' % (c.greeting,))
mt.check(e[0] == 421 and c.is_closed(3), 'the 421 answers the first command, then the connection closes: %r' % (e,))
c.close()
mx.stop()
mt.finish()
