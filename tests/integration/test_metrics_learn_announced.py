#!/usr/bin/env python3
"""POST /learn's body costs what arrives, not what is announced, and a refused client is
refused before anything else (proxy/metrics.c, docs/classifier.md "Teaching it").

1. N clients each announce the largest body (Content-Length = rules.bayes.max_learn_size,
   64M here) with "Expect: 100-continue", get their 100 (the head taken: the daemon is in
   the body phase) and send nothing. The process's data segment (VmData: its anonymous
   mappings, what the commit charge, RLIMIT_DATA and a strict overcommit count) grows by
   less than a quarter of the announced total (by about 100 kB here). On main the whole Content-Length was allocated at
   the head: N x 64M more VmData, held until the body's 30 s idle bound, a client at a time
   able to hold max_learn_size. (RssAnon, printed, barely moves on either: the pages of an
   allocation nothing wrote to are not resident.)
2. A client outside learn_from announcing more than max_learn_size gets 403, not 413: an
   outsider is not told the size limit. On main: 413.
3. The idle announcers are dropped; a body of several reads (300K, past the first 16K
   allocation) and a small message are learned: 200. No timing is asserted."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exhaustion as ex  # noqa: E402
import learn_http as lh  # noqa: E402
import mxtest as mt  # noqa: E402

MAX = 64 << 20
N = 8


def vm_data_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmData:'):
                return int(line.split()[1])
    return 0


be = mt.Backend()
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
                                'bayes': {'enabled': True, 'max_learn_size': '64M',
                                          'store': 'lmdb:' + os.path.join(mt.TMP, 'bayes'),
                                          'learn_from': ['127.0.0.1/32']}}))
mt.check(mx.metrics_port == mport, 'the metrics listener is up on %d' % mport)


mt.http_get(mport, '/metrics')
data0, anon0 = vm_data_kb(mx.pid), ex.anon_kb(mx.pid)

# ---- 1. N announcers of the largest body, each in its body phase, sending nothing
idle = []
for i in range(N):
    sk = lh.connect(mport, '127.0.0.1')
    sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n'
               b'Content-Length: %d\r\n\r\n' % MAX)
    got = b''
    try:
        while b'\r\n\r\n' not in got:
            d = sk.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    mt.check(got.startswith(b'HTTP/1.1 100 Continue'), 'announcer %d: its head taken, 100 (%r)'
             % (i, got[:40]))
    idle.append(sk)
data1, anon1 = vm_data_kb(mx.pid), ex.anon_kb(mx.pid)
mt.say('%d idle announcers of %dM: VmData %+d kB, RssAnon %+d kB' % (N, MAX >> 20, data1 - data0,
                                                                     anon1 - anon0))
# a quarter of the announced total: room for what else may map memory meanwhile (a thread's
# stack is 8M), far below what allocating the announced bodies takes
mt.check(data1 - data0 < N * (MAX >> 10) // 4,
         'the %d announced bodies (%d kB) hold a fraction of that in VmData: %+d kB'
         % (N, N * (MAX >> 10), data1 - data0))

# ---- 2. an outsider announcing too much: 403 first
sk = lh.connect(mport, '127.0.0.2')
sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % (MAX + 1))
r = lh.read_all(sk)
sk.close()
mt.check(r.startswith(b'HTTP/1.0 403 ') and b'learn_from' in r,
         'outside learn_from, an oversized body announced: 403, not the size limit (%r)' % r[:60])
sk = lh.connect(mport, '127.0.0.1')
sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % (MAX + 1))
r = lh.read_all(sk)
sk.close()
mt.check(r.startswith(b'HTTP/1.0 413 '), 'a client it teaches, the same head: 413 (%r)' % r[:60])

# ---- 3. the announcers go; bodies of one and of many reads are learned
for sk in idle:
    sk.close()
words = b'cheap pills casino winner lottery prize offer '
big = (b'From: a@example.org\nTo: u@example.test\nSubject: big\nMessage-ID: <big@announced.test>\n\n'
       + b''.join(words + b'w%d\n' % i for i in range(300 * 1024 // 50)))
r = lh.post(mport, b'/learn/spam', big, '127.0.0.1')
mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'),
         'a %d-octet body, many reads: 200 learned (%r)' % (len(big), r[-40:]))
small = b'From: b@example.org\nSubject: hi\nMessage-ID: <small@announced.test>\n\nhello there friend\n'
r = lh.post(mport, b'/learn/ham', small, '127.0.0.1')
mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'), 'a small body: 200 learned (%r)'
         % r[-40:])
mx.stop()
mt.finish()
