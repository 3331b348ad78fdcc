#!/usr/bin/env python3
"""A tarpit asked for at connect holds the greeting, as docs/config.md says of
reputation.delay ("how long action delay holds the greeting") and docs/filters-limits.md of
the rate limits' delay action (the reply is held): spamd's way of making a listed client pay
for its connection in time.

Before, a connect-stage delay was dropped (`bad_action: delay`, `deny_action: delay`, a
`connections` rule with `action: delay` were accepted by mxgate -t and did nothing: the
greeting went out at once). Now:

- reputation deny list with deny_action delay (1.5s): the 220 comes after the delay, then the
  client's MAIL is refused as with reject (spamd's tarpit for its blacklist: a listed client
  never reaches a backend; until session 18 it was then served, the delay its whole penalty,
  though docs/config.md says the deny list's CIDRs are "refused at connect");
- a rate limit on connections with action delay: the second connection's greeting is held;
- with the pregreet test on (teaser, 0.5s), the teaser goes out at once, the final line waits
  for the longer tarpit, and a bot that talks while it waits is an early talker;
- an unlisted client is not held (no event=tarpit).

Held time is checked from below only (at least the delay).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend()
cfg = mt.proxied_config([be.url], reputation={'deny': ['198.18.75.0/24'], 'deny_action': 'delay', 'delay': '1500ms'},
                        ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h',
                                              'action': 'delay', 'delay': '1500ms'}],
                                   'allow': ['198.18.75.0/24']},
                        log={'level': 'debug'})
mx = mt.Mxgate(cfg, 'mx-delay')


def timed_greeting(src):
    t0 = time.time()
    c = mt.Client(mx.port, proxy_src=src)
    return c, time.time() - t0


c, held = timed_greeting('198.18.75.1')
mt.check(c.greeting[0] == 220 and held >= 1.4,
         'deny_action delay: the greeting is held %.2fs (want 1.5s): %r' % (held, c.greeting))
c.ehlo('client.example.org')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('delayed-deny'), client=c)
c.close()
mt.check(r[0] == 550 and 'deny list entry of 198.18.75.1' in r[1] and not be.by_tag('delayed-deny'),
         'then the client is refused, as with reject: %r' % (r,))
mt.check(mx.wait_log(r'event=tarpit ms=1500'), 'the tarpit is logged')

c, held = timed_greeting('198.18.76.1')
c.close()
mark = mx.log_size()
c, held = timed_greeting('198.18.76.1')
mt.check(c.greeting[0] == 220 and held >= 1.4,
         'a connections rule with action delay: the second greeting is held %.2fs: %r' % (held, c.greeting))
c.close()
mt.check(mx.wait_log(r'event=ratelimit key=ip value=198\.18\.76\.1 count=connections .*action=delay', start=0),
         'the rate limit is logged')
c, held = timed_greeting('198.18.77.1')
c.close()
mt.check(c.greeting[0] == 220, 'an unknown client is greeted: %r' % (c.greeting,))
mt.check(mx.count_log(r'event=tarpit ') == 2, 'only the two delayed clients were held')
mx.stop()

# With the pregreet test on: the teaser at once, the final line after the tarpit, and a
# client talking while it waits has talked before the greeting.
cfg = mt.proxied_config([be.url], reputation={'deny': ['198.18.75.0/24'], 'deny_action': 'delay', 'delay': '1500ms'},
                        pregreet={'delay': '500ms', 'action': 'reject'})
mx = mt.Mxgate(cfg, 'mx-delay-pregreet')
t0 = time.time()
c = mt.Client(mx.port, proxy_src='198.18.75.2', greet=False)
teaser = c._line()
mt.check(teaser is not None and teaser.startswith('220-'), 'the teaser comes first: %r' % (teaser,))
time.sleep(0.9)       # past the pregreet delay, inside the tarpit: the scenario itself
c.send(b'EHLO bot.example\r\n')
g = c.reply()
held = time.time() - t0
e = c.reply()
m = c.cmd('MAIL FROM:<bot@example.org>')
c.close()
mt.check(g[0] == 220 and held >= 1.4, 'the final line waits for the tarpit (%.2fs): %r' % (held, g))
mt.check(m[0] == 550 and mx.wait_log(r'event=pregreet client=198\.18\.75\.2 '),
         'talking during the tarpit is talking before the greeting (logged; MAIL gets the deny list\'s 550): %r'
         % (m,))
mx.stop()
mt.finish()
