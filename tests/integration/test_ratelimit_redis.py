#!/usr/bin/env python3
"""Two mxgate nodes enforce ONE message limit through a real redis-server (10/60s for one
client IP across both, not 10 per node); replies and log lines carry the contract's text;
then Redis is killed mid-run: both nodes keep serving, fall back to their local limits (still
enforced), log the outage once, and go back to Redis when it returns. A hung Redis
(SIGSTOP) costs a session at most the configured timeout."""
import os
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
t = time.time()
hung = [send(n1, '198.18.11.%d' % i, 'hang%d' % i)[0] for i in range(4)]
took = time.time() - t
# still hung: the stores reconnect (backoff from 1 s) and the kernel completes the TCP
# handshake for the frozen server (its listen backlog); that is no Redis answering
time.sleep(3)
hung += [send(n1, '198.18.12.%d' % i, 'hang-more%d' % i)[0] for i in range(2)]
false_ups = n1.log().count('event=redis_up') - ups0
red.send_signal(signal.SIGCONT)
mt.check(hung == [250] * 6, 'with Redis hung the node serves mail: %s' % hung)
mt.check(took < mt.slack(3), 'sessions do not stall behind a hung Redis: %.1fs for 4 messages' % took)
mt.check('reason=timeout' in n1.log(), 'the Redis timeout is logged')
mt.check(false_ups == 0, 'no event=redis_up while Redis is frozen: a TCP connect is not an answer (%d logged)' % false_ups)
mt.check(mt.wait_for(lambda: redis_up_logged(n1, ups0), 15), 'node1 comes back to Redis after the hang')

# Redis dies mid-run: nodes keep serving at once, the local table takes over and still limits.
mt.stop_proc(red, signal.SIGKILL)
t1 = time.time()
after = [send(n, '198.18.9.%d' % i, 'noredis%d' % i)[0] for i, n in enumerate((n1, n2, n1))]
mt.check(after == [250, 250, 250] and n1.alive() and n2.alive(), 'with Redis down the nodes serve: %s' % after)
mt.check(time.time() - t1 < mt.slack(5), 'sessions do not stall while Redis is down (%.1fs for 3 messages)' % (time.time() - t1))
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
# SIGTERM drains and exits 0 promptly: the Redis connection does not keep a worker alive.
t = time.time()
n1.stop()
mt.check(time.time() - t < mt.slack(10), 'node1 exits on SIGTERM promptly (%.1fs)' % (time.time() - t))
n2.stop()
mt.finish()
