#!/usr/bin/env python3
"""Learning into a silent Redis does not jam the scans (docs/classifier.md, "Learning through
the daemon"). The classifier learns with blocking hiredis calls in libuv's thread pool (16
threads), the pool that also scans every message: behind a Redis that never answers each
learn holds its thread for rules.bayes.timeout.

Here Redis sits behind mt.TcpForwarder (counting the connections) and is SIGSTOPped once the
start's check of the store had its PING answered (silent: a store silent from the start is
set down at that check, and the learns would fail at once without holding a thread; the
forwarder held the replies 30 s before, from the start), bayes.timeout 3 s;
20 POST /learn/spam are sent at once, then a message. The rule set has no BAYES rule, so its
scan never asks Redis: it must be answered (250) before the first learn is (no figure: an
order of events). Learns beyond the share of the pool they may hold (a quarter, 4 of 16) are
refused at once with 503 "busy", the others end with 503 "store error" at the timeout.

On main the message waited behind the first 16 learns: its 250 came after them (5.2 s with
bayes.timeout 5s), and the last 4 learns, queued behind the first 16, were cut unanswered by the
metrics listener's 5 s."""
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
N = 20
red = mt.redis()
relay = mt.TcpForwarder(red.port)
be = mt.Backend()
rules = os.path.join(mt.TMP, 'nobayes.rules')
with open(rules, 'w') as f:
    f.write('header   MX_T_SUBJ  Subject =~ /never-matches-zzz/\nscore    MX_T_SUBJ  1.0\n')
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], metrics={'listen': '127.0.0.1:%d' % mport},
                         rules={'files': [rules],
                                'bayes': {'enabled': True, 'store': 'redis://127.0.0.1:%d' % relay.port,
                                          'timeout': '3s'}}))
# the start's check answered (its connection pooled), then Redis silent
mt.check(mt.wait_for(lambda: b'cmd=ping' in (mt.redis_cmd(red.port, 'CLIENT', 'LIST') or b''),
                     mt.slack(30)), 'the start-up check of the store was answered')
red.send_signal(signal.SIGSTOP)
mt.at_finish(lambda: red.send_signal(signal.SIGCONT))
MSG = (b'From: a@example.org\r\nTo: b@example.test\r\nSubject: learn %d\r\n'
       b'Message-ID: <learn-%d@pool.test>\r\n\r\nbuy cheap pills now %d\r\n')
answers = []        # (time answered, code, text)


def learn(i):
    req = urllib.request.Request('http://127.0.0.1:%d/learn/spam' % mport, data=MSG % (i, i, i),
                                 method='POST')
    try:
        with urllib.request.urlopen(req, timeout=mt.slack(120)) as r:
            code, text = r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read().decode().strip()
    except OSError as e:        # closed unanswered (main before session 23: the listener's 5 s per connection)
        code, text = 0, str(e)
    answers.append((time.time(), code, text))


threads = [threading.Thread(target=learn, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
# the learns are in the pool once they hold connections to Redis (at least the share's 4)
mt.check(mt.wait_for(lambda: len(relay.conns) >= 2 * 4, timeout=mt.slack(30)),
         'the learns reached Redis (%d connections)' % (len(relay.conns) // 2))
t0 = time.time()
code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('scan me'))
sent = time.time()
mt.say('the message: %s %s after %.2fs; learns answered so far: %d' % (code, text, sent - t0, len(answers)))
mt.check(code == 250, 'the message is delivered: %s %s' % (code, text))
first = min((a[0] for a in answers if 'busy' not in a[2]), default=None)
mt.check(first is None or sent < first,
         'the message was not held behind the learns: answered before the first learn ended '
         '(%.2fs, first learn %s)' % (sent - t0, '%.2fs' % (first - t0) if first else 'pending'))
for t in threads:
    t.join()
red.send_signal(signal.SIGCONT)
codes = sorted(a[1] for a in answers)
mt.say('learn answers: %s' % ', '.join('%d' % c for c in codes))
mt.check(all(c == 503 for c in codes), 'every learn failed, none hung: %s' % codes)
busy = [a for a in answers if 'busy' in a[2]]
mt.check(all(a[2] == 'store error' for a in answers if 'busy' not in a[2]),
         'the learns that ran: 503 store error (%s)' % [a[2] for a in answers if 'busy' not in a[2]])
mt.check(len(busy) >= N - 4,
         'learns beyond the pool share are refused at once with 503 busy (%d: %s)'
         % (len(busy), busy[0][2] if busy else ''))
# the answer goes out before the log line is written: wait for the lines
mt.check(mt.wait_for(lambda: mx.count_log(r'event=bayes_learn via=http class=spam result=error') == N - len(busy),
                     timeout=mt.slack(10)), 'the learns that ran ended with a store error, logged')
mx.stop()
mt.finish()
