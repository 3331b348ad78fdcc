#!/usr/bin/env python3
"""Every control connection held by a verb waiting for a silent Redis (docs/operations.md,
"Timeouts: what bounds each peer"): the control socket serves 16 connections
(CONTROL_MAX_CONNS); 16 `mxgatectl greylist show` wait on a Redis that never answers
(mt.TcpForwarder holding replies 30 s, greylist.timeout 10s), each on a thread of its own.
The 17th request must be refused at once with a clear reason ("too many control
connections"), answered before any of the 16 ends (no figure: an order of events), and the
16 then end with ERR naming the timeout, none hung."""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
mt.need('ss')
CTL = mt.mxgatectl()
red = mt.redis()
relay = mt.TcpForwarder(red.port, reply_delay=30)
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
# greylist.timeout 10 s: the verbs stay pending through a loaded machine's waits, and the workers'
# own connection's handshake (5 x) does not end within the test
mx = mt.Mxgate(mt.config([be.url], control={'socket': sock},
                         greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % relay.port,
                                   'timeout': '10s'}))
N = 16
ends = []


def verb(i):
    r = subprocess.run([CTL, '-s', sock, 'greylist', 'show', '198.18.0.%d' % (i + 1), 'a@example.org',
                        'b@example.test'], capture_output=True, text=True, timeout=mt.slack(60))
    ends.append((time.time(), r.returncode, (r.stdout + r.stderr).strip()))


base = len(relay.conns)
threads = [threading.Thread(target=verb, args=(i,)) for i in range(N)]
for t in threads:
    t.start()


def held():
    """The control connections the daemon has accepted (ss: its end's address is the path)."""
    r = subprocess.run(['ss', '-xH', 'state', 'established'], capture_output=True, text=True)
    return sum(1 for line in r.stdout.splitlines() if sock in line.split())


# each verb holds a control connection and waits on Redis (its own connection to the relay)
mt.check(mt.wait_for(lambda: held() >= N and len(relay.conns) >= base + 2 * N, timeout=mt.slack(30)),
         'the %d verbs each hold a control connection (%d) and one to Redis' % (N, held()))
t0 = time.time()
r = subprocess.run([CTL, '-s', sock, 'status'], capture_output=True, text=True, timeout=mt.slack(60))
t17 = time.time()
text = (r.stdout + r.stderr).strip()
mt.say('the 17th: rc=%d after %.2fs: %s; verbs ended so far: %d' % (r.returncode, t17 - t0, text[:120], len(ends)))
mt.check(r.returncode != 0 and 'too many control connections' in text,
         'the 17th request is refused with its reason: %s' % text[:200])
mt.check(not ends or t17 < min(e[0] for e in ends), 'the 17th is answered before any pending verb ends')
for t in threads:
    t.join()
mt.say('the verbs: %s' % '; '.join(sorted(set(e[2][:100] for e in ends))))
mt.check(len(ends) == N and all(e[1] != 0 and 'no reply within 10000 ms' in e[2] for e in ends),
         'each of the %d pending verbs ends with ERR naming the timeout' % N)
r = subprocess.run([CTL, '-s', sock, 'status'], capture_output=True, text=True, timeout=mt.slack(60))
mt.check(r.returncode == 0, 'then the control socket answers again (%d)' % r.returncode)
mx.stop()
mt.finish()
