#!/usr/bin/env python3
"""`mxgatectl greylist delete` with the Redis store, around an outage. While Redis is down
the local table decides and the decision waits in the worker's write queue, to be merged
into Redis when the connection is back (so a sender's first attempt during the outage
counts). The verb deleted the triplet in Redis over a connection of its own, beside the
workers: Redis back, the verb reached it before the worker reconnected (its backoff), and
the worker's queued write then recreated the deleted triplet, waiting again; the local
table, which decides during the next outage, kept it too. Now the verb first has every
worker drop its queued writes of the key (through the module's mailbox, in order with what
the worker queued) and deletes the local entry, then deletes in Redis.

Redis is kept down through the worker's third reconnect attempt (its port answered by a
listener that counts them: mt.knocks), so that its next is 8 s away when Redis is back: the
delete lands in that gap."""
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
SRC = '198.18.68.1'
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, control={'socket': sock},
    greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % PORT, 'timeout': '500ms',
              'delay': '1h', 'retry_window': '4h'}), 'node')
KEY = 'mxgate:gl:198.18.68.0/24|a@example.org|d@example.test'


def in_redis(key):
    try:
        return mt.redis_cmd(PORT, 'EXISTS', key) == 1
    except OSError:
        return None


mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'up@example.test') == 451, 'greylisted with Redis up')
mt.check(mx.wait_log(r'event=greylist .*rcpt=<up@example.test> .*store=redis', timeout=10),
         'decided in Redis: the worker is connected')
start = mx.log_size()
mt.stop_proc(red, signal.SIGKILL)
kn = mt.knocks(PORT)            # the worker's reconnect attempts, counted
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'd@example.test') == 451, 'greylisted by the local table while Redis is down')
mt.check(mx.wait_log(r'event=redis_down', start=start, timeout=10), 'the outage is seen')
# reconnects 1, 3, 7, 15 s after the outage: once the third has failed the next is 8 s away
mt.check(kn.wait(3, timeout=30), 'the worker tried to reconnect three times (%d)' % kn.count)
kn.close()
red = mt.redis(PORT)            # back, empty
mt.check(mx.count_log(r'event=redis_up .*module=greylist', start) == 0,
         'the worker has not reconnected yet (the delete must land before it does)')
rc, out, err = mt.ctl(sock, 'greylist', 'delete', SRC, 'a@example.org', 'd@example.test')
mt.check(rc == 0 and 'deleted' in out, 'greylist delete: %r %r' % (out, err))
mt.check(mx.count_log(r'event=redis_up .*module=greylist', start) == 0,
         'the delete came before the worker\'s reconnect (else this run proves nothing)')
mt.check(mt.wait_for(lambda: mx.count_log(r'event=redis_up .*module=greylist', start) >= 1,
                     timeout=mt.slack(40)), 'the worker reconnected')
# what it had queued is sent right after the connect, before anything the worker asks
# later on that connection: a triplet decided in Redis now comes after it
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'later@example.test') == 451, 'a later triplet greylisted')
mt.check(mx.wait_log(r'event=greylist .*rcpt=<later@example.test> .*store=redis', start=start, timeout=10),
         'decided in Redis, after what the worker had queued')
mt.check(not in_redis(KEY), 'the deleted triplet is not recreated by the write queued during the outage')
rc, out, err = mt.ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'd@example.test')
mt.check(': unknown' in out, 'greylist show after the reconnect: %r %r' % (out, err))

# the local table (the fallback of the next outage) forgot it too: down again, the next
# attempt is a first one there, and its record is the one merged when Redis is back
start = mx.log_size()
mt.stop_proc(red, signal.SIGKILL)
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'd@example.test') == 451, 'greylisted again during a second outage')
mt.check(mx.wait_log(r'event=greylist .*rcpt=<d@example.test> wait=3600 store=local', start=start, timeout=10),
         'a first attempt in the local table (wait 3600 s, not less: the deleted entry is gone)')
red = mt.redis(PORT)
mx.stop()
mt.finish()
