#!/usr/bin/env python3
"""No state lost to a Redis outage (store/redis.c's write queue), end to end: with Redis
killed, the reputation, greylist and rate-limit modules decide locally and queue what they
learned; the queue shows in mxgate_store_writes_queued; when Redis is back on its port the
queue is sent: the client's reputation counts the messages of the outage (exactly once), a
triplet first seen during the outage passes on time through Redis instead of being
greylisted again, and messages admitted by the local rate limit count against the shared
one (the next message is refused by Redis). Nothing is dropped
(mxgate_store_writes_dropped_total stays 0)."""
import os
import re
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
PORT = red.port
URL = 'redis://127.0.0.1:%d' % PORT
DELAY = 2.0
GREY = '198.18.30.1'     # greylisted
RATED = '198.18.31.1'    # never greylisted; its sender is rate limited 3/1h
WORKERS = 2
MODULES = ('reputation', 'greylist', 'ratelimit')
be = mt.Backend()
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=WORKERS,
    reputation={'store': URL},
    greylist={'enabled': True, 'store': URL, 'delay': '2s', 'retry_window': '1h',
              'skip_good': False, 'allow': ['198.18.31.0/24']},
    ratelimit={'store': URL, 'rules': [
        {'key': 'sender', 'count': 'messages', 'limit': '3/1h', 'action': 'tempfail'}]},
    metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))
MPORT = mx.metrics_port


def metric(name, store):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % MPORT, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^mxgate_%s\{store="%s"\} (\S+)$' % (name, re.escape(store)), text, re.M)
    return float(m.group(1)) if m else None


def every_store(event, start):
    """Whether each worker's store of each module logged event (redis_down, redis_up) after
    log offset start. Every worker has its own connection per module, with its own retry
    timer: one back says nothing of the others (the next retry of one that tried just
    before Redis was back may be seconds later)."""
    seen = re.findall(r'event=%s store=\S+ worker=(\d+)(?: module=(\w+))?' % event, mx.log()[start:])
    return {(int(w), m) for w, m in seen} >= {(w, m) for w in range(WORKERS) for m in MODULES}


def send(src, tag, sender, rcpt='v@example.test'):
    return mt.send_mail(mx.port, sender, [rcpt], mt.message(tag), ehlo='client.example.org',
                        proxy_src=src, timeout=15)


# Redis answers first: every store is up.
r = send('198.18.32.1', 'warm', 'w@example.org')
mt.check(r[0] == 451 and r.stage == 'rcpt', 'with Redis up a new triplet is greylisted: %r' % (r,))

mark = mx.log_size()
mt.stop_proc(red, signal.SIGKILL)
mt.check(mt.wait_for(lambda: every_store('redis_down', mark), 20),
         'Redis killed: every worker\'s stores see the connection go')
r = send(GREY, 'g1', 'a@example.org')
first = time.time()
mt.check(r[0] == 451 and r.stage == 'rcpt' and 'store=local' in mx.log(),
         'Redis down: the first attempt is greylisted by the local table: %r' % (r,))
for i in range(3):
    r = send(RATED, 'r%d' % i, 'r@example.org')
    mt.check(r[0] == 250, 'Redis down: message %d of the rate-limited sender passes locally: %r' % (i + 1, r))
queued = sum(metric('store_writes_queued', 'redis:' + m) or 0 for m in MODULES)
mt.check(queued >= 3 + 1 + 3, 'the outage\'s writes wait in the queues (mxgate_store_writes_queued: %s)' % queued)

mark = mx.log_size()
red = mt.redis(PORT)
mt.check(mt.wait_for(lambda: every_store('redis_up', mark), 70),
         'Redis back: every worker\'s stores reconnect (event=redis_up for each)')
mt.check(mt.wait_for(lambda: sum(metric('store_writes_queued', 'redis:' + m) or 0
                                 for m in MODULES) == 0, 20),
         'the queues are empty again: the outage\'s writes are sent')


def rep_accepted():
    rec = mt.redis_cmd(PORT, 'HGETALL', 'mxgate:rep:ip:' + RATED) or []
    d = dict(zip(rec[::2], rec[1::2]))
    return float(d[b'a']) if b'a' in d else None


mt.check(mt.wait_for(lambda: (rep_accepted() or 0) > 2.99, 20),
         'Redis back: the reputation updates of the outage arrive')
a = rep_accepted()
mt.check(a is not None and 2.99 < a < 3.01, 'the client\'s history counts the 3 messages once each: a=%s' % a)
gkeys = mt.wait_for(lambda: [k for k in mt.redis_cmd(PORT, 'KEYS', 'mxgate:gl:*') if b'a@example.org' in k], 20)
mt.check(gkeys, 'the triplet first seen during the outage is in Redis: %r' % gkeys)
rkeys = mt.wait_for(lambda: mt.redis_cmd(PORT, 'KEYS', 'mxgate:rl:*r@example.org'), 20)
mt.check(rkeys, 'the locally admitted messages are charged in Redis: %r' % rkeys)

# The shared limit knows the 3 messages: the 4th is refused by Redis's count.
start = len(mx.log())
r = send(RATED, 'r3', 'r@example.org')
mt.check(r[0] == 451 and r.stage == 'data', 'the 4th message of the sender is over the shared limit: %r' % (r,))
mt.check(re.search(r'event=ratelimit key=sender .* store=redis', mx.log()[start:]),
         'and Redis decided it')

# The retry after the delay passes through Redis (not greylisted as a first attempt).
time.sleep(max(0, first + DELAY + 0.3 - time.time()))
r = send(GREY, 'g2', 'a@example.org')
mt.check(r[0] == 250 and be.by_tag('g2'), 'the retry after the delay passes: %r' % (r,))
mt.check(mt.redis_cmd(PORT, 'HGET', gkeys[0], 'pass') == b'1' if gkeys else False,
         'Redis decided it: the triplet is marked passed there')

for m in MODULES:
    mt.check(metric('store_writes_dropped_total', 'redis:' + m) == 0,
             'mxgate_store_writes_dropped_total{store="redis:%s"} is 0' % m)
mx.stop()
mt.finish()
