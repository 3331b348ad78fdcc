#!/usr/bin/env python3
"""Greytrapping with greylist.store: redis through a Redis outage, two nodes sharing it.

A greylisted client that sends RCPT to a trap address while Redis does not answer is
trapped in the node's local table (the fallback). It stayed there: once Redis was back the
trap was in that one process only — the other nodes let the client through greylisting as
if nothing had happened, and the trapping node too once it read Redis again. Now the trap
also goes into the node's Redis write queue (bounded, as the triplets it decides during an
outage) and is written when the connection returns, for what is left of trap_ttl.

And `mxgatectl greylist untrap` on one node, after Redis is back but before another node
has reconnected with a trap still queued, is not undone by that trap arriving: the untrap
leaves its time in Redis (mxgate:glipun:<client>, kept trap_ttl) and a queued trap made
before it is dropped (as greylist delete's mxgate:gldel: does for triplets).

Redis is kept down through the third reconnect attempt of both nodes (its port answered by a
listener that counts them: mt.knocks), so that their next comes 8 s after it is back: the
untrap lands in that gap (failed first on main: the trap never reached Redis). It was a sleep
of 8 s from a moment after the outage, which kept the gap only while the checks before it
took less than the 7 s up to the third attempt."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.mxgatectl()                  # skipped when not built
red = mt.redis()
PORT = red.port
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
GL = {'enabled': True, 'store': 'redis://127.0.0.1:%d' % PORT, 'timeout': '500ms', 'delay': '1h',
      'retry_window': '4h', 'traps': ['trap@example.test'], 'trap_ttl': '1h', 'trap_delay': '0s'}
A = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock}, greylist=GL), 'A')
B = mt.Mxgate(mt.proxied_config([be.url], workers=1, greylist=GL), 'B')
X, Y = '198.18.90.1', '198.18.91.1'


def codes(m, src, rcpts):
    lines = ['MAIL FROM:<spam@example.org>'] + ['RCPT TO:<%s>' % r for r in rcpts]
    return mt.session_codes(m.port, src, lines)[-len(rcpts):]


for m in (A, B):
    mt.check(mt.rcpt_code(m.port, '198.18.92.1', 'a@example.org', 'up-%s@example.test' % m.name) == 451,
             '%s greylists with Redis up' % m.name)
    mt.check(m.wait_log(r'event=greylist .*store=redis', timeout=10), '%s decided in Redis' % m.name)
start = {m.name: m.log_size() for m in (A, B)}
mt.stop_proc(red, signal.SIGKILL)
kn = mt.knocks(PORT)            # the nodes' reconnect attempts, counted
# X trapped on A, Y on B, from their local tables
mt.check(codes(A, X, ['trap@example.test', 'x@example.test']) == [451, 550], 'A traps X while Redis is down')
mt.check(codes(B, Y, ['trap@example.test', 'y@example.test']) == [451, 550], 'B traps Y while Redis is down')
mt.check(A.wait_log(r'event=greylist_trap client=198\.18\.90\.1 .*store=local', timeout=10) is not None and
         B.wait_log(r'event=greylist_trap client=198\.18\.91\.1 .*store=local', timeout=10) is not None,
         'both logged store=local')
# each node's worker reconnects 1, 3, 7, 15 s after the outage: once both third attempts have
# failed, the next are 8 s away
mt.check(kn.wait(6, timeout=30), 'the nodes tried to reconnect three times each (%d)' % kn.count)
kn.close()
red = mt.redis(PORT)            # back, empty
rc, out, err = mt.ctl(sock, 'greylist', 'untrap', Y)
mt.check(rc == 0, 'greylist untrap Y on node A, Redis back: %r %r' % (out, err))
mt.check(B.count_log(r'event=redis_up .*module=greylist', start['B']) == 0,
         'the untrap came before node B reconnected (else this run proves nothing)')
for m in (A, B):
    mt.check(mt.wait_for(lambda: m.count_log(r'event=redis_up .*module=greylist queued=[1-9]', start[m.name]) >= 1,
                         timeout=mt.slack(40)), 'node %s reconnected with its queued writes' % m.name)
# what a node had queued is sent after its redis_up line: wait for it, not a fixed time
ipkey = 'mxgate:glip:' + X
mt.wait_for(lambda: mt.redis_cmd(PORT, 'HGET', ipkey, 's') == b'1', timeout=mt.slack(10))
mt.check(mt.redis_cmd(PORT, 'HGET', ipkey, 's') == b'1',
         "A's trap of X, set during the outage, is in Redis once it is back (was: only in A's process): %r"
         % mt.redis_cmd(PORT, 'HGET', ipkey, 's'))
ttl = mt.redis_cmd(PORT, 'PTTL', ipkey)
mt.check(isinstance(ttl, int) and 3500000 < ttl <= 3600000, 'for what is left of trap_ttl (1h): %r ms' % ttl)
# the other node sees it: X's RCPT on B refused (trapped, in Redis)
mt.check(codes(B, X, ['z@example.test']) == [550], 'node B refuses X, trapped on node A during the outage')
mt.check(B.wait_log(r'event=greylist_trapped client=198\.18\.90\.1 .*store=redis', timeout=10) is not None,
         'B logged it, store=redis')
mt.check(mt.redis_cmd(PORT, 'EXISTS', 'mxgate:glip:' + Y) == 0,
         "B's trap of Y, queued before the untrap on A, was dropped when it arrived")
mt.check(codes(A, Y, ['w@example.test']) == [451], 'Y is greylisted again on A, not refused')
A.stop()
B.stop()
mt.finish()
