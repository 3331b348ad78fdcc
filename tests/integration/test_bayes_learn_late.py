#!/usr/bin/env python3
"""A learn into Redis that timed out may still be applied when Redis wakes, and a retry of it
then counts nothing twice (docs/classifier.md "Teaching it", rules/bayes_redis.c): the
seen-db check and the counting are one Lua script, atomic in Redis, so whichever of the
late EVAL and the retry runs second finds the message's seen key and is "already".

A real redis-server is SIGSTOPped, POST /learn/spam of one message answers 503 store error
(rules.bayes.timeout 1 s); hiredis gave up but the EVAL sat in Redis's socket buffer. After
SIGCONT the test waits (bounded) for Redis to have run it, POSTs the same message again, and
finds: the answer "already" when the late one ran ("learned" if it did not), the spam total
1, and every token key of the message at s = 1. No timing is asserted.

One request timeout does not set the store down (it takes 3 in a row, rules/bayes_redis.c):
so the retry, right after, reaches Redis and means what it says. Redis is stopped only once
the start's check has had its PING answered."""
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
MSG = (b'From: late@example.org\nTo: user@example.test\nSubject: late offer\n'
       b'Message-ID: <late-1@learn.test>\n\ncheap pills casino winner lottery prize latecomer\n')


def post(data):
    req = urllib.request.Request('http://127.0.0.1:%d/learn/spam' % mport, data=data, method='POST')
    try:
        with urllib.request.urlopen(req, timeout=mt.slack(60)) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()
    except OSError as e:
        return 0, str(e)


def spam_total():
    v = mt.redis_cmd(red.port, 'HGET', 'mxbayes:totals', 's')
    return int(v) if v is not None else 0


red = mt.redis()
mport = mt.hold_port().port
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
                                'bayes': {'enabled': True, 'timeout': '1s',
                                          'store': 'redis://127.0.0.1:%d' % red.port}}))

# the start's check of the store ends with a PING answered (its connection then pooled):
# Redis stopped before that answer would set the store down at the check, and the learn
# below would fail at once, never reaching Redis
mt.check(mt.wait_for(lambda: b'cmd=ping' in (mt.redis_cmd(red.port, 'CLIENT', 'LIST') or b''),
                     mt.slack(30)), 'the start-up check of the store was answered')
red.send_signal(signal.SIGSTOP)
try:
    status, text = post(MSG)
finally:
    red.send_signal(signal.SIGCONT)
mt.check(status == 503 and text == 'store error', 'Redis stopped: 503 store error (%s %s)' % (status, text))

deadline = time.time() + mt.slack(10)
while spam_total() == 0 and time.time() < deadline:
    time.sleep(0.1)
late = spam_total() == 1
mt.say('the timed-out learn was %s by Redis after it woke' % ('applied' if late else 'not applied'))

status, text = post(MSG)
mt.check(status == 200 and text == ('already' if late else 'learned'),
         'the retry: 200 %s (%s %s)' % ('already' if late else 'learned', status, text))
mt.check(spam_total() == 1, 'the spam total is 1, the message counted once (%d)' % spam_total())
keys = mt.redis_cmd(red.port, 'KEYS', 'mxbayes:t:*') or []
counts = [mt.redis_cmd(red.port, 'HGET', k, 's') for k in keys]
mt.check(keys and all(c == b'1' for c in counts),
         'each of its %d token keys counts it once (%s)' % (len(keys), sorted(set(counts))))
mx.stop()
mt.finish()
