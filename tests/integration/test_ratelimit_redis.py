#!/usr/bin/env python3
"""Two mxgate nodes enforce ONE message limit through a real redis-server (10/60s for one
client IP across both, not 10 per node); replies and log lines carry the contract's text;
then Redis is killed mid-run: both nodes keep serving, fall back to their local limits (still
enforced), log the outage once, and go back to Redis when it returns. A hung Redis
(SIGSTOP) costs a session at most the configured timeout.

Waits are events, not clock readings (a loaded machine answers late): the 250s within the
client's patience, and the store's own lines. A check waits on Redis only while the store is
up; its timeout marks the store down (event=redis_down reason=timeout, logged once per
outage and worker) and until event=redis_up every later check is decided by the local table
at once: with Redis hung the sessions are answered before it comes back, the timeout logged
by then; with Redis dead (connections refused or closed) no check meets a timeout."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()
ratelimit = {'store': 'redis://127.0.0.1:%d' % red.port, 'timeout': '200ms', 'rules': [
    {'key': 'ip', 'count': 'messages', 'limit': '10/60s', 'action': 'tempfail'}]}
n1 = mt.Mxgate(mt.proxied_config([be.url], ratelimit=ratelimit), 'node1')
n2 = mt.Mxgate(mt.proxied_config([be.url], ratelimit=ratelimit), 'node2')


def send(node, src, tag):
    return mt.send_mail(node.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


def redis_up_logged(node, more_than=0):
    return node.log().count('event=redis_up') > more_than


DOWN = re.compile(r'event=redis_down store=\S+ worker=(\d+) module=ratelimit reason=(\w+)')


def downs(node, start):
    """[(worker, reason)] of node's event=redis_down lines from log offset start."""
    return DOWN.findall(node.log()[start:])


# both nodes connected to Redis: each worker's first request waits for its connect anyway
t0 = time.time()
results = [send(n1 if i % 2 else n2, '198.18.7.7', 'rl%d' % i) for i in range(30)]
through = sum(1 for i in range(30) if be.by_tag('rl%d' % i))
refill = int((time.time() - t0) * 10 / 60) + 1
mt.check(10 <= through <= 10 + refill, 'shared 10/60s let %d of 30 through (want 10..%d): %r' % (through, 10 + refill, results[:12]))
refused = [r for r in results if r[0] != 250]
mt.check(refused and all(r[0] == 451 and r.stage == 'data' for r in refused), 'refusals are 451 at DATA: %r' % refused[:3])
want = '4.7.1 rate limit exceeded for ip 198.18.7.7: 10/60s'
mt.check(refused and want in refused[0][1], 'reply text %r has %r' % (refused[0][1] if refused else None, want))
logs = n1.log() + n2.log()
mt.check('event=ratelimit key=ip value=198.18.7.7 count=messages limit=10/60s action=tempfail' in logs,
         'an event=ratelimit log line')
mt.check('store=redis' in logs, 'the checks went through Redis')

# A different client is not limited.
mt.check(send(n1, '198.18.8.8', 'other')[0] == 250, 'another client is not limited')

# Redis hangs (SIGSTOP): each check waits at most `timeout` (200ms), then the local table
# decides; the store is marked down and later checks do not wait at all.
red.send_signal(signal.SIGSTOP)
ups0 = n1.log().count('event=redis_up')
mark = n1.log_size()
hung = [send(n1, '198.18.11.%d' % i, 'hang%d' % i)[0] for i in range(4)]
# still hung: the stores reconnect (backoff from 1 s) and the kernel completes the TCP
# handshake for the frozen server (its listen backlog); that is no Redis answering
time.sleep(3)
hung += [send(n1, '198.18.12.%d' % i, 'hang-more%d' % i)[0] for i in range(2)]
false_ups = n1.log().count('event=redis_up') - ups0
hang_downs = downs(n1, mark)
red.send_signal(signal.SIGCONT)
mt.check(hung == [250] * 6, 'with Redis hung the node serves mail: %s' % hung)
# the order of events: all six were answered before SIGCONT, each check that met the hung
# Redis ended at the store's timeout, logged by then (it marks the store down: the later
# checks fail fast); none waited for Redis to come back
mt.check(hung == [250] * 6 and 'timeout' in [r for _, r in hang_downs],
         'sessions do not stall behind a hung Redis: answered while it is still hung, its timeout '
         'logged before SIGCONT (event=redis_down reason=timeout: %s)' % hang_downs)
mt.check(false_ups == 0, 'no event=redis_up while Redis is frozen: a TCP connect is not an answer (%d logged)' % false_ups)
mt.check(mt.wait_for(lambda: redis_up_logged(n1, ups0), 15), 'node1 comes back to Redis after the hang')

# Redis dies mid-run: nodes keep serving at once, the local table takes over and still limits.
marks = (n1.log_size(), n2.log_size())
mt.stop_proc(red, signal.SIGKILL)
after = [send(n, '198.18.9.%d' % i, 'noredis%d' % i)[0] for i, n in enumerate((n1, n2, n1))]
mt.check(after == [250, 250, 250] and n1.alive() and n2.alive(), 'with Redis down the nodes serve: %s' % after)
dead_downs = downs(n1, marks[0]) + downs(n2, marks[1])
mt.check(all(r != 'timeout' for _, r in dead_downs),
         'sessions do not stall while Redis is down: no check waits for a Redis timeout (%s)' % dead_downs)
local = sum(1 for i in range(12) if send(n1, '198.18.10.10', 'loc%d' % i)[0] == 250)
mt.check(10 <= local <= 11, 'local fallback let %d of 12 through on one node (want 10)' % local)
logs = n1.log()
mt.check('event=redis_down' in logs, 'the outage is logged')
mt.check(logs.count('event=redis_down') <= 4, 'the outage logged %d times (at most once per worker and outage)'
         % logs.count('event=redis_down'))

# Redis comes back on the same port (held for the test): the nodes reconnect (backoff from 1 s).
ups = n1.log().count('event=redis_up')
red2 = mt.redis(red.port)
mt.check(mt.wait_for(lambda: redis_up_logged(n1, ups), 35), 'node1 reconnects to Redis')
# SIGTERM drains and exits 0 promptly: the Redis connection does not keep a worker alive (a
# worker that does not end is event=exit reason=drain_overrun, with no event=stopped).
t = time.time()
n1.stop(timeout=mt.slack(60))
ends = re.findall(r'event=(?:drain_timeout|exit reason=\S+|stopped)', n1.log())
mt.check(ends == ['event=stopped'], 'node1 exits on SIGTERM by itself: no drain_timeout or drain_overrun, '
         'event=stopped (%s, %.1fs)' % (ends, time.time() - t))
n2.stop()
mt.finish()
