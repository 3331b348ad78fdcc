#!/usr/bin/env python3
"""POST /learn bodies are message bytes like any other: held in a message buffer
(proxy/msgbuf.c), in memory up to limits.memory_threshold and within limits.memory_budget,
in limits.spool_dir past them (proxy/metrics.c, docs/classifier.md "Teaching it").

1. N clients each send all but the last 64K of a 3M message to POST /learn/spam and hold
   the rest back: N bodies held at once. Once the daemon has read them (its read(2) octets,
   /proc/PID/io rchar, grew by at least that much: an event, not a wait), each body is an
   (unlinked) file in spool_dir that the daemon holds open, the gauge
   mxgate_message_memory_bytes stays within memory_budget, and the process's anonymous
   memory (RssAnon) grows by less than half the held total. On main the bodies were
   plain malloc, outside the budget and the spool: no spool file, RssAnon up by N x 3M.
2. The rest of each body is sent, one client after the other (learning's share of the thread
   pool answers 503 busy to more at once; those waiting get an octet every 5 s, so the
   body's 30 s bound between reads is not met): every one is 200 learned, the classifier's
   learned_spam counter says N, and then nothing is held (no memory, no spool file).
3. spool_dir removed under the running daemon: a body past memory_threshold cannot be held;
   503 (the listener's answer when it runs out of something) and event=metrics_refused
   reason=spool, not a learn of a part; a body under the threshold is still learned. On main:
   200 learned (the body never went near the spool).
No timing is asserted."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exhaustion as ex  # noqa: E402
import learn_http as lh  # noqa: E402
import mxtest as mt  # noqa: E402

N = 6
SIZE = 3 << 20
HOLD = 64 << 10
BUDGET = 1 << 20
THRESHOLD = 64 << 10


def rchar(pid):
    """The octets process pid passed to read(2) and friends, sockets included."""
    with open('/proc/%d/io' % pid) as f:
        for line in f:
            if line.startswith('rchar:'):
                return int(line.split()[1])
    return 0


def spool_files(pid, spool):
    """The files in spool (unlinked or not) process pid holds open."""
    return len(ex.spool_sizes(pid, spool))


def message(i, size):
    return lh.spam_message('budget', i, size)


spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
be = mt.Backend()
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], limits={'memory_threshold': str(THRESHOLD), 'memory_budget': str(BUDGET),
                                           'spool_dir': spool},
                         metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
                                'bayes': {'enabled': True, 'max_learn_size': '8M',
                                          'store': 'lmdb:' + os.path.join(mt.TMP, 'bayes'),
                                          'learn_from': ['127.0.0.1/32']}}))
mt.check(mx.metrics_port == mport, 'the metrics listener is up on %d' % mport)
learned0 = mx.metric('bayes_learned_spam_total') or 0

# ---- 1. N bodies held at once, all but their last HOLD octets sent
msgs = [message(i, SIZE) for i in range(N)]
anon0, read0 = ex.anon_kb(mx.pid), rchar(mx.pid)
held = []
for i, m in enumerate(msgs):
    sk = lh.connect(mport, timeout=60)
    sk.sendall(b'POST /learn/spam HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % len(m) + m[:-HOLD])
    held.append(sk)
mt.check(mt.wait_for(lambda: rchar(mx.pid) - read0 >= N * (SIZE - HOLD), mt.slack(60)),
         'the daemon read the %d held bodies (%d octets read)' % (N, rchar(mx.pid) - read0))
files, gauge, anon = spool_files(mx.pid, spool), ex.message_memory(mx), ex.anon_kb(mx.pid)
mt.say('%d bodies of %d kB held: %d spool files open, message memory %d B, RssAnon %+d kB'
       % (N, (SIZE - HOLD) >> 10, files, gauge, anon - anon0))
mt.check(files == N, 'each held body is a file in spool_dir: %d of %d' % (files, N))
mt.check(0 <= gauge <= BUDGET, 'the message memory gauge stays within memory_budget: %d B' % gauge)
# half the held total: far below the N x SIZE that holding the bodies in memory takes. Under the
# sanitizers their allocator (quarantine of freed read buffers, shadow pages) grew RssAnon by
# 5-10 MB in CI: there the spool files and the gauge above are the evidence.
if mt.SANITIZED:
    mt.say('anonymous memory not bounded under the sanitizers (their allocator)')
else:
    mt.check(anon - anon0 < N * (SIZE >> 10) // 2,
             'the held bodies (%d kB) are not in anonymous memory: RssAnon %+d kB'
             % (N * (SIZE >> 10), anon - anon0))

# ---- 2. each body finished, one at a time: all learned. The ones waiting their turn get an
# octet of their rest every 5 s, so none meets the body's 30 s bound between two reads while
# the others are learned (seconds each under a sanitizer)
sent = [SIZE - HOLD] * N
lock = threading.Lock()
done = threading.Event()


def keep_alive():
    while not done.wait(5):
        with lock:
            for k, sk in enumerate(held):
                if sk is not None and sent[k] < SIZE - 1:
                    try:
                        sk.sendall(msgs[k][sent[k]:sent[k] + 1])
                        sent[k] += 1
                    except OSError:
                        pass        # closed: its check below says so


ka = threading.Thread(target=keep_alive)
ka.start()
for i in range(N):
    with lock:
        sk, held[i] = held[i], None
        sk.sendall(msgs[i][sent[i]:])
    r = lh.read_all(sk)
    sk.close()
    mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'),
             'body %d finished: 200 learned (%r)' % (i, r[-40:]))
done.set()
ka.join()
learned = (mx.metric('bayes_learned_spam_total') or 0) - learned0
mt.check(learned == N, 'the classifier counted every message: %d of %d' % (learned, N))
mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0 and spool_files(mx.pid, spool) == 0, mt.slack(10)),
         'nothing held after: message memory %d B, %d spool files'
         % (ex.message_memory(mx), spool_files(mx.pid, spool)))

# ---- 3. the spool gone: a body past the threshold cannot be held, 503
os.rmdir(spool)
start = mx.log_size()
r = lh.post(mport, b'/learn/spam', message(100, 4 * THRESHOLD), timeout=60)
mt.check(r.startswith(b'HTTP/1.0 503 ') and b'spool_dir' in r,
         'spool_dir removed, a body past memory_threshold: 503 (%r)' % r[:120])
line = mx.wait_log(r'event=metrics_refused [^\n]*reason=spool [^\n]*', timeout=mt.slack(10), start=start)
mt.check(line is not None and 'status=503' in line.group(0) and 'path=/learn/spam' in line.group(0),
         'logged: %s' % (line.group(0) if line else None))
r = lh.post(mport, b'/learn/spam', message(101, THRESHOLD // 4), timeout=60)
mt.check(r.startswith(b'HTTP/1.0 200 ') and r.endswith(b'learned\n'),
         'a body under memory_threshold needs no spool: 200 learned (%r)' % r[-40:])
n = mx.count_log(r'event=bayes_learn via=http', start)
mt.check(n == 1, 'the refused body taught nothing: one learn logged since the removal, %d' % n)
mx.stop()
mt.finish()
