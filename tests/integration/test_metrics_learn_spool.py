#!/usr/bin/env python3
"""POST /learn and a small spool (proxy/metrics.c, docs/classifier.md "Teaching it"): a body
past limits.memory_threshold is held in limits.spool_dir as a message is, so the spool's
space bounds it as it bounds messages. A tmpfs of 1M is the spool, the threshold 64K.

1. A head announcing 600K (more than half the spool's free space: Postfix's rule, as MAIL
   SIZE= meets it) with "Expect: 100-continue" is answered 503 at once, no 100 Continue, so
   the client sends nothing for nothing; logged event=metrics_refused reason=spool_space. On
   main: 100 Continue, then 200 learned (the body in plain memory).
2. A 200K body fits: 200 learned.
3. The spool fills up after a 200K head was taken (its 100 Continue received): the body
   cannot be written, 503, logged reason=spool with detail "No space left on device", and
   nothing of it is learned. On main: 200 learned.
4. The space back, the next body is learned.

Needs root (mount); CI runs as root. No timing is asserted."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learn_http as lh  # noqa: E402
import mxtest as mt  # noqa: E402

if os.geteuid() != 0:
    mt.skip('mounting a tmpfs needs root')
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', spool], check=True)
mt.at_finish(lambda: subprocess.run(['umount', spool], stderr=subprocess.DEVNULL))  # after mxgate stops

THRESHOLD = 64 << 10
be = mt.Backend()
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], limits={'memory_threshold': str(THRESHOLD), 'spool_dir': spool},
                         metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
                                'bayes': {'enabled': True, 'max_learn_size': '8M',
                                          'store': 'lmdb:' + os.path.join(mt.TMP, 'bayes'),
                                          'learn_from': ['127.0.0.1/32']}}))
mt.check(mx.metrics_port == mport, 'the metrics listener is up on %d' % mport)


def message(i, size):
    return lh.spam_message('spool', i, size)


def read_head(sk):
    """What arrives up to the end of the first head (a 100 Continue or the answer's)."""
    got = b''
    try:
        while b'\r\n\r\n' not in got:
            d = sk.recv(4096)
            if not d:
                break
            got += d
    except (ConnectionResetError, socket.timeout):
        pass
    return got


def head(size):
    return (b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n'
            b'Content-Length: %d\r\n\r\n' % size)


def post(body):
    """A POST with Expect: 100-continue, its body sent after the 100: the answer."""
    sk = lh.connect(mport)
    sk.sendall(head(len(body)))
    got = read_head(sk)
    if got.startswith(b'HTTP/1.1 100 '):
        sk.sendall(body)
        got = lh.read_all(sk, got.split(b'\r\n\r\n', 1)[1])
    else:
        got = lh.read_all(sk, got)
    sk.close()
    return got


def learned():
    return mx.count_log(r'event=bayes_learn via=http class=spam result=learned')


# ---- 1. more than half the spool announced: 503 at the head
start = mx.log_size()
r = post(message(1, 600 << 10))
mt.check(r.startswith(b'HTTP/1.0 503 ') and b'spool_dir' in r,
         '600K announced, a 1M spool: 503 at the head, no 100 Continue (%r)' % r[:100])
m = mx.wait_log(r'event=metrics_refused [^\n]*reason=spool_space [^\n]*', timeout=mt.slack(10), start=start)
mt.check(m is not None and 'size=614400' in m.group(0) and 'avail=' in m.group(0),
         'logged: %s' % (m.group(0) if m else None))

# ---- 2. a body that fits
r = post(message(2, 200 << 10))
mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'), '200K: 200 learned (%r)' % r[-40:])

# ---- 3. the spool fills after the head was taken
n0 = learned()
start = mx.log_size()
sk = lh.connect(mport)
sk.sendall(head(200 << 10))
got = read_head(sk)
mt.check(got.startswith(b'HTTP/1.1 100 '), 'a 200K head taken: 100 Continue (%r)' % got[:40])
fill = os.path.join(spool, 'fill')
fd = os.open(fill, os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, b'x' * 4096)
except OSError:
    pass
os.close(fd)
try:
    sk.sendall(message(3, 200 << 10))
except OSError:
    pass
r = lh.read_all(sk, got.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in got else b'')
sk.close()
mt.check(r.startswith(b'HTTP/1.0 503 ') and b'spool_dir' in r,
         'the spool full while the body arrives: 503 (%r)' % r[:120])
m = mx.wait_log(r'event=metrics_refused [^\n]*reason=spool [^\n]*', timeout=mt.slack(10), start=start)
mt.check(m is not None and 'No space left on device' in m.group(0), 'logged: %s' % (m.group(0) if m else None))
mt.check(learned() == n0, 'nothing of it learned')

# ---- 4. the space back
os.unlink(fill)
r = post(message(4, 200 << 10))
mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'), 'space back: 200 learned (%r)' % r[-40:])
mt.finish()
