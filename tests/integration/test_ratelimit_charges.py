#!/usr/bin/env python3
"""A rate limit charges only what was accepted ("a refused attempt consumes nothing").
Before: (1) when one rule refused a command, the other rules checked at the same stage had
been charged already: a sender over its own recipient limit used up its IP's recipient
budget with refused RCPTs, and another sender from that IP was refused; (2) a RCPT that a
later filter refused (greylisting's 451) still charged the recipient rules, so a sender
retrying a greylisted message as it should ran into "rate limit exceeded" after a few
retries. Now the charges of a refused stage, and of a RCPT the session did not accept, are
given back (local table and Redis alike). What is accepted still counts."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()


def run(store):
    mx = mt.Mxgate(mt.proxied_config(
        [be.url], limits={'max_errors': 100},
        greylist={'enabled': True, 'store': 'local', 'delay': '1h', 'retry_window': '4h',
                  'allow': ['198.18.84.0/24', '198.18.85.0/24']},
        ratelimit={'store': store, 'timeout': '2s', 'rules': [
            {'key': 'sender', 'count': 'recipients', 'limit': '2/1h'},
            {'key': 'ip', 'count': 'recipients', 'limit': '3/1h'}]}), 'node-' + store[:5])

    def rcpts(src, sender, names):
        c = mt.Client(mx.port, proxy_src=src, timeout=15)
        c.ehlo('mail.example.org')
        c.cmd('MAIL FROM:<%s>' % sender)
        out = [c.cmd('RCPT TO:<%s>' % r) for r in names]
        c.cmd('QUIT')
        c.close()
        return out

    # (1) one rule refusing does not charge the others
    got = rcpts('198.18.84.1', 's1@example.org', ['a@example.test', 'b@example.test', 'c@example.test'])
    mt.check([g[0] for g in got] == [250, 250, 451] and 'rate limit exceeded for sender' in got[2][1],
             '%s: the sender\'s third recipient is over its 2/1h: %s' % (store, got))
    got = rcpts('198.18.84.1', 's2@example.org', ['d@example.test', 'e@example.test'])
    mt.check([g[0] for g in got] == [250, 451] and 'rate limit exceeded for ip' in got[1][1],
             '%s: the IP had 2 of its 3 used (the refused RCPT gave its IP charge back): %s' % (store, got))

    # (2) greylisted RCPTs give their charge back: the sender retries without hitting the limit
    for i in range(5):
        got = rcpts('198.18.86.1', 'list@example.org', ['u@example.test'])
        mt.check(got[0][0] == 451 and 'greylisted' in got[0][1],
                 '%s: attempt %d is greylisted, not rate limited: %s' % (store, i + 1, got))
    # accepted recipients still count (a client the greylist lets through)
    got = rcpts('198.18.85.1', 'x@example.org', ['p@example.test', 'q@example.test'])
    got += rcpts('198.18.85.1', 'y@example.org', ['r@example.test', 's@example.test'])
    mt.check([g[0] for g in got] == [250, 250, 250, 451], '%s: accepted RCPTs count (3/1h per ip): %s'
             % (store, [g[0] for g in got]))
    # delivered messages: their recipients count too (the charge is settled at the end of the
    # transaction when no later command of it runs the rate limits)
    codes = []
    for i in range(2):
        r = mt.send_mail(mx.port, 'z%d@example.org' % i, ['m%d@example.test' % i, 'n%d@example.test' % i],
                         mt.message('%s-z%d' % (store[:5], i)), ehlo='mail.example.org', proxy_src='198.18.84.200')
        codes.append((r[0], r.rcpt_codes))
    mt.check(codes == [(250, [250, 250]), (250, [250, 451])],
             '%s: a delivered message\'s 2 recipients count: the next message gets 1 of 3: %s' % (store, codes))
    mx.stop()


run('local')
run('redis://127.0.0.1:%d' % red.port)
mt.finish()
