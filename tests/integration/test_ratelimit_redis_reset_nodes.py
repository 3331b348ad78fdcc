#!/usr/bin/env python3
"""`mxgatectl ratelimit reset` on one node of two sharing a Redis, while the other node
cannot reach Redis (its path cut: mxtest.TcpForwarder). What that node admitted meanwhile
(from its local table) waits in its write queue as charges and was added to the shared
bucket when its connection came back, after the reset: the bucket the operator had just
emptied was full again, and the client refused on every node. Now a reset leaves its time
in Redis (mxgate:rlreset:<bucket>, kept for one period) and the charge script drops a charge
made before it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.mxgatectl()                  # skipped when not built
red = mt.redis()
PORT = red.port
SRC = '198.18.98.1'
KEY = 'mxgate:rl:messages:ip:3/1h:' + SRC
fwd = mt.TcpForwarder(PORT)
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
RULES = [{'key': 'ip', 'count': 'messages', 'limit': '3/1h'}]
A = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock}, ratelimit={
    'store': 'redis://127.0.0.1:%d' % PORT, 'timeout': '500ms', 'rules': RULES}), 'A')
B = mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit={
    'store': 'redis://127.0.0.1:%d' % fwd.port, 'timeout': '500ms', 'rules': RULES}), 'B')


def send(node):
    return mt.send_mail(node.port, 'a@example.org', ['b@example.test'], mt.message('t'),
                        ehlo='mail.example.org', proxy_src=SRC, timeout=15)[0]


mt.check(send(B) == 250, 'node B delivers with Redis reachable')
mt.check(mt.wait_for(lambda: mt.redis_cmd(PORT, 'EXISTS', KEY) == 1, timeout=10), 'the charge is in Redis')
start = B.log_size()
fwd.cut()
mt.check(send(B) == 250, 'B delivers from its local table while cut off')
mt.check(B.wait_log(r'event=redis_down .*module=ratelimit', start=start, timeout=10), 'B lost Redis')
codes = [send(B) for _ in range(2)]
mt.check(codes == [250, 250], 'B\'s local table admits them (3 charges queued for Redis): %s' % codes)
rc, out, err = mt.ctl(sock, 'ratelimit', 'reset', 'ip', SRC)
mt.check(rc == 0 and 'reset' in out, 'reset on node A: %r %r' % (out, err))
mt.check(mt.redis_cmd(PORT, 'EXISTS', KEY) == 0, 'the bucket is gone from Redis')
fwd.open = True
mt.check(mt.wait_for(lambda: B.count_log(r'event=redis_up .*module=ratelimit queued=[1-9]', start) >= 1,
                     timeout=mt.slack(40)), 'node B reconnected with its queued charges')
mt.wait_for(lambda: False, timeout=0.5)   # what it held is sent right after the connect
codes = [send(A) for _ in range(4)]
mt.check(codes == [250, 250, 250, 451], 'after the reset the client has its whole limit again on node A '
         '(B\'s charges from before the reset are not added): %s' % codes)
A.stop()
B.stop()
mt.finish()
