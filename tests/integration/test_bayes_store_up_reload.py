#!/usr/bin/env python3
"""A Redis store said down (event=bayes_error) is said up again (event=bayes_store_up, once)
even when a reload comes between the outage and the recovery (rules/bayes_redis.c,
br_said_*; docs/classifier.md "A Redis store that is down").

- start: the store's port refuses connects: the start's check logs event=bayes_error;
- redis-server starts on that port; SIGHUP (event=reloaded generation=2): the new
  generation's handle of the same store URL;
- a message is delivered and scanned with the classifier on (its event=rules line has no
  bayes=store_error): exactly one event=bayes_store_up in the log, after the bayes_error.

On the code before, "said down" was a flag of the handle that logged the bayes_error: the
reload's new handle had never said down, so its answers said nothing and no bayes_store_up
was ever logged. Counts and orders of events; no durations."""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
hold = mt.hold_port()          # refused until redis-server listens there
be = mt.Backend()


def cfg(min_spam):
    return mt.config([be.url], workers=1, log={'level': 'debug'}, rules={
        'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
        'bayes': {'enabled': True, 'store': 'redis://127.0.0.1:%d' % hold.port,
                  'timeout': '10s', 'min_spam': min_spam, 'min_ham': 1}})


mx = mt.Mxgate(cfg(1), name='mx-store-up')
mt.check(mx.wait_log(r'event=bayes_error store=redis reason="[^"]*127\.0\.0\.1:%d' % hold.port,
                     timeout=mt.slack(30)) is not None,
         'the refused store is said down at start\n%s' % mx.tail(6))
mt.check(mx.count_log(r'event=bayes_store_up') == 0, 'not said up while refused')
red = mt.redis(port=hold.port)
at = mx.log_size()
mx.reload(cfg(2))
mt.check(mx.wait_log(r'event=reloaded generation=2\b', timeout=mt.slack(30), start=at) is not None,
         'reloaded\n%s' % mx.tail(6))
c = mt.Client(mx.port, timeout=mt.slack(30))
mt.check(c.ehlo()[0] == 250, 'EHLO')
codes = c.transaction('after-the-outage')
c.cmd('QUIT')
c.close()
mt.check(codes[-1:] == [250], 'the message is delivered (%s)' % codes)
line = mx.wait_log(r'event=rules [^\n]*', timeout=mt.slack(30), start=at)
mt.check(line is not None, 'the message is scanned\n%s' % mx.tail(6))
rules_line = [ln for ln in mx.log()[at:].splitlines() if 'event=rules ' in ln][-1:]
mt.check(rules_line and 'bayes=store_error' not in rules_line[0],
         'the classifier is on for the message: %s' % rules_line)
up = mx.count_log(r'event=bayes_store_up store=redis')
mt.check(up == 1, 'the store is said up once after the bayes_error line, across the reload '
         '(%d bayes_store_up lines)\n%s' % (up, mx.tail(10)))
log = mx.log()
mt.check(log.find('event=bayes_error') < log.find('event=bayes_store_up'),
         'bayes_store_up comes after bayes_error')
mx.stop()
be.stop()
mt.finish()
