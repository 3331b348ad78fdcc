#!/usr/bin/env python3
"""A control verb that asks Redis never holds the main loop (docs/operations.md, "Timeouts:
what bounds each peer"). The greylist verbs on a Redis store, ratelimit show|reset on a Redis
store and flush passcache's marker ask Redis on a connection of the verb's own, off the main
loop: meanwhile the control socket (`mxgatectl status`), the metrics listener (/metrics, the
probes) and a reload answer at once, and the sessions on the worker loops are not held.

Behind a slow Redis (mt.TcpForwarder holding each reply DELAY s, under the modules' timeouts:
nothing fails) each verb takes its steps' time (greylist show: HMGET, PTTL, TIME, 1.5 s); a
/metrics request and an `mxgatectl status` sent while it is pending must answer before it,
not held by it (no figure: a loaded machine answers late, not never). Against a Redis that never answers (the forwarder holding replies 30 s) the verb ends
at its first step's timeout with ERR; against no Redis at all (a closed port) at once. Each
step is bounded by the module's timeout, the verb by its steps (checked: within 5 x the
timeout, at least 1 s, for the connect plus 3 x for the steps). Prints the figures for the
docs' table.

On main before the verbs went off the main loop: /metrics waited 1.31 s behind greylist show.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
be = mt.Backend()
DELAY, TIMEOUT = 0.5, 1.0
figures = {}
SRC = '198.18.0.1'
VERBS = [
    ('greylist show', ['greylist', 'show', SRC, 'a@example.org', 'b@example.test']),
    ('greylist pass', ['greylist', 'pass', SRC, 'a@example.org', 'b@example.test']),
    ('greylist list', ['greylist', 'list']),
    ('greylist trap', ['greylist', 'trap', SRC]),
    ('greylist untrap', ['greylist', 'untrap', SRC]),
    ('ratelimit show', ['ratelimit', 'show', 'ip', SRC]),
    ('ratelimit reset', ['ratelimit', 'reset', 'ip', SRC]),
    ('flush passcache', ['flush', 'passcache']),
]


def start(name, port):
    sock = os.path.join(mt.TMP, name + '.sock')
    store = 'redis://127.0.0.1:%d' % port
    ms = '%dms' % (TIMEOUT * 1000)
    mx = mt.Mxgate(mt.config([be.url], control={'socket': sock}, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                             greylist={'enabled': True, 'store': store, 'timeout': ms},
                             ratelimit={'store': store, 'timeout': ms,
                                        'rules': [{'key': 'ip', 'count': 'messages', 'limit': '5/1h'}]},
                             pregreet={'delay': '1s', 'action': 'score', 'pass_store': store,
                                       'pass_store_timeout': ms}), name='mx-' + name)
    return mx, sock


def timed_verb(sock, args, got):
    t = time.time()
    r = subprocess.run([CTL, '-s', sock] + args, capture_output=True, text=True, timeout=mt.slack(60))
    got['verb'] = (time.time() - t, r.returncode, (r.stdout + r.stderr).strip()[:200])
    got['verb_end'] = time.time()


def meanwhile(mx, sock, name, label, args, expect_ok):
    """Runs the verb in a thread; while it is pending, /metrics and status are timed."""
    got = {}
    th = threading.Thread(target=timed_verb, args=(sock, args, got))
    th.start()
    time.sleep(0.2)
    pending = th.is_alive()

    def status_ask():
        t = time.time()
        got['status_rc'] = subprocess.run([CTL, '-s', sock, 'status'], capture_output=True, text=True,
                                          timeout=mt.slack(60)).returncode
        got['status'] = time.time() - t
        got['status_end'] = time.time()
    st = threading.Thread(target=status_ask)      # side by side with /metrics
    st.start()
    t = time.time()
    status, _ = mt.http_get(mx.metrics_port, '/metrics', timeout=mt.slack(60))
    got['metrics'] = time.time() - t
    got['metrics_end'] = time.time()
    st.join()
    th.join()
    took, rc, text = got['verb']
    mt.say('%s: %s %.2fs rc=%d (%s); meanwhile /metrics %.2fs (%s), status %.2fs rc=%d'
           % (name, label, took, rc, text, got['metrics'], status, got['status'], got['status_rc']))
    key = name + '_' + label.replace(' ', '_')
    figures.update({key: took, key + '_metrics': got['metrics'], key + '_status': got['status']})
    mt.check((rc == 0) == expect_ok, '%s: %s %s (rc %d: %s)' % (name, label, 'answers' if expect_ok else 'fails', rc, text))
    bound = max(5 * TIMEOUT, 1.0) + 3 * TIMEOUT
    mt.check(took <= bound + mt.slack(1.0), '%s: %s within its bound %.1fs (%.2fs)' % (name, label, bound, took))
    if pending:
        # answered before the verb was (on main both waited for it); no figure on how soon:
        # a loaded machine answers late, not never (an absolute 0.2/0.5 s failed under load)
        mt.check(status == 200 and got['metrics_end'] < got['verb_end'],
                 '%s: /metrics answers while %s is pending (%.2fs)' % (name, label, got['metrics']))
        mt.check(got['status_rc'] == 0 and got['status_end'] < got['verb_end'],
                 '%s: mxgatectl status answers while %s is pending (%.2fs)' % (name, label, got['status']))
    return took, rc, text


def slow():
    relay = mt.TcpForwarder(red.port, reply_delay=DELAY)
    mx, sock = start('slow', relay.port)
    for label, args in VERBS:
        took, rc, text = meanwhile(mx, sock, 'slow', label, args, True)
        mt.check(took >= DELAY, 'slow: %s waited for Redis (%.2fs): %s' % (label, took, text))
    # a session on a worker loop, while a verb is pending
    # (greeted first: pregreet.delay is 1 s, the verb's 3 steps 1.5 s; the EHLO goes at +0.2 s)
    c = mt.Client(mx.port, timeout=mt.slack(30))
    c.greeting
    got = {}
    th = threading.Thread(target=timed_verb, args=(sock, VERBS[0][1], got))
    th.start()
    time.sleep(0.2)
    pending = th.is_alive()
    t = time.time()
    code, _ = c.ehlo('client.test')
    ehlo_end = time.time()
    ehlo = ehlo_end - t
    c.close()
    th.join()
    figures['slow_ehlo'] = ehlo
    mt.check(code == 250 and (not pending or ehlo_end < got['verb_end']),
             'slow: a session on a worker is not held: EHLO answered while the verb was pending (%.2fs)' % ehlo)
    mx.stop()


def silent():
    relay = mt.TcpForwarder(red.port, reply_delay=30)
    mx, sock = start('silent', relay.port)
    for label, args in VERBS:
        took, rc, text = meanwhile(mx, sock, 'silent', label, args, False)
        mt.check('no reply within' in text or 'reply too slow' in text,
                 'silent: %s says why: %s' % (label, text))
    mx.stop()


def down():
    port = mt.free_port()           # nothing listens there
    mx, sock = start('down', port)
    for label, args in VERBS:
        got = {}
        timed_verb(sock, args, got)
        took, rc, text = got['verb']
        mt.say('down: %s %.2fs rc=%d (%s)' % (label, took, rc, text))
        figures['down_' + label.replace(' ', '_')] = took
        # bounded as every verb is (a refused connect fails at once; a loaded machine has
        # taken 4.2 s to run mxgatectl and get the ERR, so no tighter figure)
        bound = max(5 * TIMEOUT, 1.0) + 3 * TIMEOUT
        mt.check(rc != 0 and took <= bound + mt.slack(1.0), 'down: %s ERR within its bound (%.2fs): %s'
                 % (label, took, text))
        if label == 'flush passcache':
            # on main: "pass stores: 1 forget what they held; failed: ..." — it forgot nothing
            mt.check('forget what they held' not in text and 'not reached' in text,
                     'down: flush passcache says the store was not reached: %s' % text)
    mx.stop()


slow()
silent()
down()
mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
