#!/usr/bin/env python3
"""A client's read that arrives while a Redis store's first connect is under way waits for
it, then is answered by Redis (not the local fallback), and /metrics says so:
mxgate_store_reads_waited_total{store="redis:greylist"} counts it and
mxgate_store_read_wait_timeouts_total stays 0.

The store is redis-sentinel:// with a scripted Python sentinel that holds every
SENTINEL get-master-addr-by-name until the test lets it answer (then names a real
redis-server): the client's RCPT is sent while the ask is held, the test waits until the
metric shows its read waiting (the RCPT unanswered), releases the sentinel, and the
greylist decides through Redis: 451 with store=redis and the triplet in Redis. No timings:
the hold ends on the metric, every wait is a bounded poll."""
import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
release = threading.Event()
asked = []


def read_cmd(f):
    """One RESP array of bulk strings from f, or None at EOF."""
    line = f.readline()
    if not line.startswith(b'*'):
        return None
    words = []
    for _ in range(int(line[1:])):
        n = int(f.readline()[1:])
        words.append(f.read(n + 2)[:n])
    return words


def serve(conn):
    with conn, conn.makefile('rb') as f:
        while True:
            words = read_cmd(f)
            if words is None:
                return
            asked.append(words)
            if words[0].upper() == b'SENTINEL':
                release.wait(60)
                port = str(red.port).encode()
                conn.sendall(b'*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n' % (len(port), port))
            else:
                conn.sendall(b'-ERR unknown command\r\n')


lsock = socket.socket()
lsock.bind(('127.0.0.1', 0))
lsock.listen(8)


def accept_loop():
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(c,), daemon=True).start()


threading.Thread(target=accept_loop, daemon=True).start()
url = 'redis-sentinel://127.0.0.1:%d/mymaster' % lsock.getsockname()[1]
be = mt.Backend()
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1,
    greylist={'enabled': True, 'store': url, 'timeout': '20s', 'delay': '1h',
              'retry_window': '2h', 'skip_good': False},
    metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))

WAITED = 'store_reads_waited_total{store="redis:greylist"}'
TIMEDOUT = 'store_read_wait_timeouts_total{store="redis:greylist"}'
mt.check(mt.wait_for(lambda: any(w[0].upper() == b'SENTINEL' for w in asked), mt.slack(20)),
         'the store asks the sentinel (held): %r' % asked)
mt.check(mx.metric(WAITED) == 0, 'nothing waited yet: %s' % mx.metric(WAITED))

result = []
client = threading.Thread(target=lambda: result.append(mt.send_mail(
    mx.port, 'a@example.org', ['v@example.test'], mt.message('w1'), ehlo='client.example.org',
    proxy_src='198.18.40.1', timeout=60)))
client.start()
mt.check(mt.wait_for(lambda: (mx.metric(WAITED) or 0) >= 1, mt.slack(20)),
         'the RCPT\'s greylist read waits for the first connect: %s=%s' % (WAITED, mx.metric(WAITED)))
mt.check(client.is_alive() and not result, 'the client has no answer to its RCPT yet: %r' % result)
mt.check(not re.search(r'event=redis_up|event=redis_down', mx.log()), 'the store is not up yet')

release.set()
client.join(60)
mt.check(result and result[0][0] == 451 and result[0].stage == 'rcpt',
         'after the connect the read is answered: greylisted: %r' % result)
mt.check(re.search(r'event=greylist client=198\.18\.40\.1 .*store=redis', mx.log()),
         'Redis decided it (store=redis, not the local fallback): %s' % mx.tail(8))
mt.check(mt.wait_for(lambda: [k for k in mt.redis_cmd(red.port, 'KEYS', 'mxgate:gl:*')
                              if b'a@example.org' in k], mt.slack(10)),
         'the triplet is in Redis: %r' % mt.redis_cmd(red.port, 'KEYS', '*'))
mt.check(mx.metric(WAITED) == 1, '%s is 1: %s' % (WAITED, mx.metric(WAITED)))
mt.check(mx.metric(TIMEDOUT) == 0, '%s is 0: %s' % (TIMEDOUT, mx.metric(TIMEDOUT)))
mt.check('greylist_error' not in mx.log(), 'no greylist_error: %s' % mx.tail(8))
mx.stop()
lsock.close()
mt.finish()
