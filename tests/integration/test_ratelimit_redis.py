#!/usr/bin/env python3
"""Two mxgate nodes enforce ONE message limit through a real redis-server (10/60s for one
client IP across both, not 10 per node); replies and log lines carry the contract's text;
then Redis is killed mid-run: both nodes keep serving, fall back to their local limits (still
enforced), log the outage once, and go back to Redis when it returns. A hung Redis
(SIGSTOP) costs a session at most the configured timeout."""
import os, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratelimit_harness as h

h.need('redis-server')
red = h.redis()
be = h.Backend()
extra = ('ratelimit:\n  store: "redis://127.0.0.1:%d"\n  timeout: 200ms\n  rules:\n'
         '    - { key: ip, count: messages, limit: 10/60s, action: tempfail }\n') % red.port
p1, p2 = h.free_port(), h.free_port()
n1 = h.mxgate(h.config(p1, be.port, extra), 'node1', p1)
n2 = h.mxgate(h.config(p2, be.port, extra), 'node2', p2)
time.sleep(0.3)   # both nodes connected to Redis

t0 = time.time()
results = [h.send(p1 if i % 2 else p2, '198.18.7.7', 'rl%d' % i) for i in range(30)]
through = sum(1 for i in range(30) if be.has('rl%d' % i))
refill = int((time.time() - t0) * 10 / 60) + 1
if not 10 <= through <= 10 + refill:
    h.fail('shared 10/60s let %d of 30 through (want 10..%d): %r' % (through, 10 + refill, results[:12]))
refused = [r for r in results if r[0] != 250]
if not refused or any(r[0] != 451 or r[2] != 'data' for r in refused):
    h.fail('refusals should be 451 at DATA: %r' % refused[:3])
want = '4.7.1 rate limit exceeded for ip 198.18.7.7: 10/60s'
if want not in refused[0][1]:
    h.fail('reply text %r lacks %r' % (refused[0][1], want))
logs = h.logtext('node1') + h.logtext('node2')
if 'event=ratelimit key=ip value=198.18.7.7 count=messages limit=10/60s action=tempfail' not in logs:
    h.fail('no event=ratelimit log line')
if 'store=redis' not in logs:
    h.fail('checks did not go through Redis')

# A different client is not limited.
if h.send(p1, '198.18.8.8', 'other')[0] != 250:
    h.fail('another client was limited too')

# Redis hangs (SIGSTOP): each check waits at most `timeout` (200ms), then the local table
# decides; the store is marked down and later checks do not wait at all.
red.send_signal(signal.SIGSTOP)
t = time.time()
hung = [h.send(p1, '198.18.11.%d' % i, 'hang%d' % i)[0] for i in range(4)]
took = time.time() - t
red.send_signal(signal.SIGCONT)
if hung != [250] * 4:
    h.fail('with Redis hung the node refused mail: %r' % hung)
if took > 3:
    h.fail('sessions stalled behind a hung Redis: %.1fs for 4 messages' % took)
if 'reason=timeout' not in h.logtext('node1'):
    h.fail('the Redis timeout was not logged')
deadline = time.time() + 12
while time.time() < deadline and 'event=redis_up' not in h.logtext('node1'):
    time.sleep(0.2)
if 'event=redis_up' not in h.logtext('node1'):
    h.fail('node1 did not come back to Redis after the hang')

# Redis dies mid-run: nodes keep serving at once, the local table takes over and still limits.
h.stop(red, signal.SIGKILL)
t1 = time.time()
after = [h.send(n.port, '198.18.9.%d' % i, 'noredis%d' % i)[0] for i, n in enumerate((n1, n2, n1))]
if after != [250, 250, 250] or n1.poll() is not None or n2.poll() is not None:
    h.fail('with Redis down the nodes stopped serving: %r' % after)
if time.time() - t1 > 5:
    h.fail('sessions stalled while Redis was down (%.1fs for 3 messages)' % (time.time() - t1))
local = sum(1 for i in range(12) if h.send(p1, '198.18.10.10', 'loc%d' % i)[0] == 250)
if not 10 <= local <= 11:
    h.fail('local fallback let %d of 12 through on one node (want 10)' % local)
logs = h.logtext('node1')
if 'event=redis_down' not in logs:
    h.fail('the outage was not logged')
if logs.count('event=redis_down') > 4:
    h.fail('the outage was logged %d times (want once per worker)' % logs.count('event=redis_down'))

# Redis comes back on the same port: the nodes reconnect (backoff starts at 1 s).
ups = h.logtext('node1').count('event=redis_up')
red2 = h.redis(red.port)
deadline = time.time() + 35
while time.time() < deadline and h.logtext('node1').count('event=redis_up') <= ups:
    time.sleep(0.2)
if h.logtext('node1').count('event=redis_up') <= ups:
    h.fail('node1 did not reconnect to Redis')
# SIGTERM drains and exits 0 promptly: the Redis connection does not keep a worker alive.
t = time.time()
h.stop(n1)
if n1.returncode != 0 or time.time() - t > 10:
    h.fail('node1 did not exit cleanly on SIGTERM (rc %r after %.1fs)' % (n1.returncode, time.time() - t))
h.ok('%d/30 through a shared 10/60s across 2 nodes; 3/3 served and %d/12 locally limited with Redis down; reconnected' % (through, local))
