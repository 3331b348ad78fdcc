#!/usr/bin/env python3
"""`mxgatectl flush reputation IP` on one node of two sharing a Redis, while the other node
cannot reach Redis (its path to the server cut: a forwarder in between that the test stops).
The other node's outcomes of that time wait in its write queue, and were added to the
client's records when its connection came back, after the flush: the history the operator
had just forgotten (here: rejections that make the client bad) was back, and the client was
refused again on every node. Now a flush leaves its time in Redis (mxgate:repdel:<key>,
kept as long as a record) and the add script does not take an outcome from before it.

Node A talks to redis-server directly; node B through a TCP forwarder (mxtest.TcpForwarder)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.mxgatectl()                  # skipped when not built
red = mt.redis()
PORT = red.port
SRC = '198.18.99.1'
IPKEY = 'mxgate:rep:ip:' + SRC


fwd = mt.TcpForwarder(PORT)
be = mt.Backend(mode='reject_data')
sock = os.path.join(mt.TMP, 'ctl.sock')
REP = {'half_life': '1h', 'timeout': '500ms'}
A = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock},
                                 reputation=dict(REP, store='redis://127.0.0.1:%d' % PORT)), 'A')
B = mt.Mxgate(mt.proxied_config([be.url], workers=1,
                                 reputation=dict(REP, store='redis://127.0.0.1:%d' % fwd.port)), 'B')


def send(node):
    c = mt.Client(node.port, proxy_src=SRC, timeout=15)
    if c.greeting[0] != 220:
        c.close()
        return c.greeting[0]
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('DATA')
    code = c.cmd('Subject: t\r\n\r\nhi\r\n.')[0]
    c.cmd('QUIT')
    c.close()
    return code


mt.check(send(B) == 554, 'node B relays the backend\'s 554 (Redis reachable)')
mt.check(mt.wait_for(lambda: mt.redis_cmd(PORT, 'EXISTS', IPKEY) == 1, timeout=10), 'B recorded it')
start = B.log_size()
fwd.cut()
mt.check(B.wait_log(r'event=redis_down .*module=reputation', start=start, timeout=10), 'B lost Redis')
codes = [send(B) for _ in range(3)]
mt.check(codes == [554] * 3, 'three more rejected messages through B, queued there: %s' % codes)
rc, out, err = mt.ctl(sock, 'flush', 'reputation', SRC)
mt.check(rc == 0 and 'flushed' in out, 'flush on node A: %r %r' % (out, err))
mt.check(mt.redis_cmd(PORT, 'EXISTS', IPKEY) == 0, 'the record is gone')
fwd.open = True
mt.check(mt.wait_for(lambda: B.count_log(r'event=redis_up .*module=reputation queued=[1-9]', start) >= 1,
                     timeout=mt.slack(40)), 'node B reconnected with its queued outcomes')
time.sleep(0.5)
h = mt.redis_cmd(PORT, 'HGETALL', IPKEY)
mt.check(not h, 'node B\'s outcomes from before the flush are not added back: %r' % (h,))
be.mode = 'ok'
mt.check(send(A) == 250, 'the client is not refused (its history was forgotten)')
mt.check(mt.wait_for(lambda: mt.redis_cmd(PORT, 'EXISTS', IPKEY) == 1, timeout=10),
         'an outcome after the flush is recorded as usual')
A.stop()
B.stop()
mt.finish()
