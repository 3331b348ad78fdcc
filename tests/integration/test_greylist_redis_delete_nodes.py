#!/usr/bin/env python3
"""`mxgatectl greylist delete` on one node of two sharing a Redis, after an outage during
which the other node greylisted the triplet from its local table. That node's decision
waits in its own write queue (the verb's node cannot reach into it) and was merged into
Redis when its connection came back, after the delete: the deleted triplet was back,
waiting, with its old first attempt. Now the delete leaves the time it was made
(mxgate:gldel:<triplet>, kept for greylist.expire) and the merge script drops a merge of
an attempt made before it; an attempt made after the delete is greylisted as a first one.

Redis is kept down through the third reconnect attempt of both nodes (its port answered by a
listener that counts them: mt.knocks), so that node B's next comes 8 s after Redis is back: the
delete on node A lands in that gap."""
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
SRC = '198.18.69.1'
sock = os.path.join(mt.TMP, 'ctl.sock')
GL = {'enabled': True, 'store': 'redis://127.0.0.1:%d' % PORT, 'timeout': '500ms', 'delay': '1h',
      'retry_window': '4h'}
A = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock}, greylist=GL), 'A')
B = mt.Mxgate(mt.proxied_config([be.url], workers=1, greylist=GL), 'B')
KEY = 'mxgate:gl:198.18.69.0/24|a@example.org|d@example.test'


mt.check(mt.rcpt_code(B.port, SRC, 'a@example.org', 'up@example.test') == 451, 'node B greylists with Redis up')
mt.check(B.wait_log(r'event=greylist .*rcpt=<up@example.test> .*store=redis', timeout=10), 'B decided in Redis')
start = B.log_size()
mt.stop_proc(red, signal.SIGKILL)
kn = mt.knocks(PORT)            # the nodes' reconnect attempts, counted
mt.check(mt.rcpt_code(B.port, SRC, 'a@example.org', 'd@example.test') == 451, 'node B greylists from its local table while Redis is down')
mt.check(B.wait_log(r'event=redis_down .*module=greylist', start=start, timeout=10), 'B saw the outage')
# each node's worker reconnects 1, 3, 7, 15 s after the outage: once both third attempts have
# failed, B's next is 8 s away
mt.check(kn.wait(6, timeout=30), 'the nodes tried to reconnect three times each (%d)' % kn.count)
kn.close()
red = mt.redis(PORT)            # back, empty
rc, out, err = mt.ctl(sock, 'greylist', 'delete', SRC, 'a@example.org', 'd@example.test')
mt.check(rc == 0 and 'deleted' in out, 'greylist delete on node A: %r %r' % (out, err))
mt.check(B.count_log(r'event=redis_up .*module=greylist', start) == 0,
         'the delete came before node B reconnected (else this run proves nothing)')
mt.check(mt.wait_for(lambda: B.count_log(r'event=redis_up .*module=greylist queued=1', start) >= 1,
                     timeout=mt.slack(40)), 'node B reconnected with its queued write')
# what it had queued is sent right after the connect, before anything B asks later on that
# connection: a triplet B decides in Redis now comes after it
mt.check(mt.rcpt_code(B.port, SRC, 'a@example.org', 'later@example.test') == 451, 'node B greylists a later triplet')
mt.check(B.wait_log(r'event=greylist .*rcpt=<later@example.test> .*store=redis', start=start, timeout=10),
         'decided in Redis, after what B had queued')
mt.check(mt.redis_cmd(PORT, 'EXISTS', KEY) == 0,
         'node B\'s write queued during the outage does not bring the deleted triplet back')
rc, out, err = mt.ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'd@example.test')
mt.check(': unknown' in out, 'greylist show: %r %r' % (out, err))
# an attempt after the delete is a first attempt, as usual
mt.check(mt.rcpt_code(B.port, SRC, 'a@example.org', 'd@example.test') == 451, 'the next attempt is greylisted')
mt.check(B.wait_log(r'event=greylist .*rcpt=<d@example.test> wait=3600 store=redis', timeout=10),
         'as a first attempt (wait 3600 s) in Redis')
mt.check(mt.redis_cmd(PORT, 'EXISTS', KEY) == 1, 'and the triplet is in Redis again')
A.stop()
B.stop()
mt.finish()
