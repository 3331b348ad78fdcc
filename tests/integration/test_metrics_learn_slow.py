#!/usr/bin/env python3
"""The metrics listener's bounds, phase by phase (proxy/metrics.c, docs/classifier.md
"Teaching it"): the request head within 5 s of the accept however it trickles in, a POST
body 30 s between two reads (not in all, as nginx's client_body_timeout), and a POST the
handler would refuse (a client outside learn_from) answered at its head, before the body.

1. An mbox POSTed to /learn/spam a chunk a second over about 8 s (curl --data-binary on a
   slow link) is learned: 200 and the learned count. On main the listener's 5 s for the
   whole connection cut it unanswered.
2. A client outside learn_from that announces a body and sends none gets its 403 at once.
   On main the body was awaited first: no answer, cut at 5 s (and with a body bound between
   reads, held as long as it trickled).
3. A head trickled a byte every half second (GET and POST), and a POST body that stops
   half way, are cut: the connection is closed by the daemon, no answer. No timing is
   asserted: each wait is a bounded wait for the close."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learn_http as lh  # noqa: E402
import mxtest as mt  # noqa: E402

SPAM_WORDS = 'cheap pills viagra casino winner lottery prize'


def msg(i):
    return (b'From: spam%d@example.org\nTo: user@example.test\nSubject: offer %d\n'
            b'Message-ID: <slow-%d@learn.test>\n\n%s word%d\n'
            % (i, i, i, SPAM_WORDS.encode(), i))


NMSG = 8
mbox = b''.join(b'From spam%d@example.org Mon Jan  1 00:00:00 2024\n' % i + msg(i) + b'\n'
                for i in range(NMSG))
be = mt.Backend()
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
                                'bayes': {'enabled': True,
                                          'store': 'lmdb:' + os.path.join(mt.TMP, 'bayes'),
                                          'learn_from': ['127.0.0.1/32']}}))
mt.check(mx.metrics_port == mport, 'the metrics listener is up on %d' % mport)


def read_until_close(sk, timeout):
    """What the daemon sends until it closes (b'' if it closes unanswered); None if it is
    still open after timeout seconds."""
    sk.settimeout(mt.slack(timeout))
    got = b''
    try:
        while True:
            d = sk.recv(65536)
            if not d:
                return got
            got += d
    except ConnectionResetError:
        return got
    except socket.timeout:
        return None


# ---- 1. a slow upload: one chunk a second, the whole body taking longer than the head's 5 s
head = (b'POST /learn/spam HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/mbox\r\n'
        b'Content-Length: %d\r\n\r\n' % len(mbox))
sk = lh.connect(mport, '127.0.0.1', timeout=None)
sk.sendall(head)
NCHUNK = 8
step = (len(mbox) + NCHUNK - 1) // NCHUNK
t0 = time.time()
cut = None
for k in range(0, len(mbox), step):
    time.sleep(1)
    try:
        sk.sendall(mbox[k:k + step])
    except OSError as e:        # main: closed at 5 s while the body was still coming
        cut = e
        break
mt.say('body sent over %.1fs in %d chunks%s' % (time.time() - t0, NCHUNK,
                                                 ' (cut: %s)' % cut if cut else ''))
resp = read_until_close(sk, 60)
sk.close()
line = resp.split(b'\r\n', 1)[0] if resp else resp
body = resp.split(b'\r\n\r\n', 1)[1].decode().strip() if resp and b'\r\n\r\n' in resp else ''
mt.check(cut is None and line == b'HTTP/1.0 200 OK' and body.startswith('learned %d spam' % NMSG),
         'an mbox uploaded a chunk a second for ~%d s: 200 and its count (%r %r)'
         % (NCHUNK, line, body))
mt.check(mx.wait_log(r'event=bayes_learn via=http class=spam result=mbox learned=%d ' % NMSG,
                     timeout=10) is not None, 'logged with its counts')

# ---- 2. outside learn_from: 403 at the head, the body never awaited
sk = lh.connect(mport, '127.0.0.2', timeout=None)
sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n')
resp = read_until_close(sk, 30)
sk.close()
mt.check(resp is not None and resp.startswith(b'HTTP/1.0 403 ') and b'learn_from' in resp,
         'a client outside learn_from is answered 403 before its body (%r)'
         % (resp[:80] if resp else resp))

# ---- 3. cut: a head that trickles forever, a body that stops
for start in (b'GET /metrics HTTP/1.1\r\n', b'POST /learn/spam HTTP/1.1\r\nContent-Length: 10\r\n'):
    sk = lh.connect(mport, '127.0.0.1', timeout=None)
    t0 = time.time()
    sk.sendall(start)
    sk.settimeout(0.5)
    closed, sent, deadline = False, 0, time.time() + mt.slack(60)
    while not closed and time.time() < deadline:
        try:
            sk.sendall(b'X-Drip-%d: y\r\n' % sent)
            sent += 1
            if sk.recv(4096) == b'':
                closed = True
        except socket.timeout:
            pass
        except OSError:
            closed = True
    sk.close()
    mt.say('closed %.2fs after the connect' % (time.time() - t0))
    mt.check(closed, 'a head trickled a line every 0.5 s is cut by the daemon (%s..., %d lines sent)'
             % (start.split(b' ')[0].decode(), sent))

sk = lh.connect(mport, '127.0.0.1', timeout=None)
sk.sendall(head + mbox[:len(mbox) // 2])
t0 = time.time()
resp = read_until_close(sk, 120)
mt.say('the stopped body: closed %.2fs after its last octet' % (time.time() - t0))
sk.close()
mt.check(resp == b'', 'a POST body that stops half way is cut, unanswered (%r)'
         % (resp[:80] if resp else resp))
# the listener still serves
status, text = mt.http_get(mport, '/metrics')
mt.check(status == 200 and 'mxgate_bayes_learned_spam_total %d' % NMSG in text,
         'GET /metrics after all of it: %s, learned_spam_total %d' % (status, NMSG))
mx.stop()
mt.finish()
