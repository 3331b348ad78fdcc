#!/usr/bin/env python3
"""Greylisting a message to many recipients: each RCPT of the first attempt gets 451 4.7.1,
and these deferrals are not the client's errors. Before, each counted towards
limits.max_errors (10 by default): the 11th greylisted recipient of one transaction got
"421 4.7.0 too many errors", the session ended, the remaining triplets were never recorded,
and a 15-recipient list message needed three attempts (three greylist delays). A client
that makes real errors is still cut off at max_errors."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DELAY = 1.0
mt.need()
be = mt.Backend()
n = mt.Mxgate(mt.proxied_config([be.url], greylist={'enabled': True, 'store': 'local', 'delay': '1s',
                                                     'retry_window': '1h'},
                                limits={'max_connections': 2000, 'max_connections_per_ip': 2000, 'max_errors': 3}),
              'node')
RCPTS = ['u%d@example.test' % i for i in range(8)]


def attempt(tag):
    c = mt.Client(n.port, proxy_src='198.18.66.1')
    c.ehlo('mail.example.org')
    codes = []
    try:
        codes.append(c.cmd('MAIL FROM:<list@example.org>')[0])
        for r in RCPTS:
            codes.append(c.cmd('RCPT TO:<%s>' % r)[0])
        if codes[-1] == 250:
            codes.append(c.cmd('DATA')[0])
            c.send(mt.stuff(mt.message(tag)))
            codes.append(c.reply()[0])
        codes.append(c.cmd('QUIT')[0])
    except OSError as e:     # the session was closed (421 too many errors)
        codes.append('closed: %s' % e)
    c.close()
    return codes


codes = attempt('first')
# each triplet's first attempt is recorded before its 451 is sent: once every 451 is back, a
# wait of the delay from now ends after every triplet's delay (the delay is counted from each
# RCPT, not from the connect: a loaded machine can take more than the delay over 8 RCPTs)
first_done = time.time()
mt.check(codes == [250] + [451] * 8 + [221],
         'first attempt: 8 recipients greylisted with max_errors 3, no 421, the session goes on: %s' % codes)
time.sleep(max(0, first_done + DELAY + 0.2 - time.time()))
codes = attempt('retry')
mt.check(codes == [250] + [250] * 8 + [354, 250, 221], 'retry after the delay: every recipient passes at once: %s' % codes)
mt.check(len(be.by_tag('retry')) == 1 and be.by_tag('retry')[0]['accepted_rcpts'] == RCPTS,
         'the message reached all 8 recipients')
# real errors still count: unknown commands end the session at max_errors
c = mt.Client(n.port, proxy_src='198.18.66.2')
c.ehlo('mail.example.org')
got = [c.cmd('BOGUS')[0] for _ in range(3)]
mt.check(got[-1] == 421 or c.cmd('NOOP')[0] in (421, None), 'three real errors: 421 (%s)' % got)
c.close()
n.stop()
mt.finish()
