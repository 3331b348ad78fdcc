#!/usr/bin/env python3
"""A classifier whose Redis store does not answer never holds a worker's event loop
(docs/classifier.md, "Stores": a Redis store that is down). A reload (SIGHUP) makes each
worker take the new generation's classifier; the store is connected on the thread pool,
never on the loop, so the sessions of that worker are answered meanwhile.

The store is a black hole past the handshake: a listener (Silent, below) that accepts and
reads every connection and never answers, rules.bayes.timeout 10 s. Two cases: a
redis-sentinel:// store with two such sentinels (each asked in turn, each within the
timeout), and a redis://HOST:PORT/1 store (its SELECT is the unanswered command).

- start: the store is checked; when it gives up (the test closes the silent connections),
  `event=bayes_error ... reason="(redis|sentinel) 127.0.0.1:PORT..."` is logged and the
  daemon runs on;
- reload: a client with EHLO done; SIGHUP; once the store is being asked (the silent peer
  got a command), NOOP: it is answered while that command still waits (no bayes_error in the
  log yet), and `event=reloaded` comes before the store's error too;
- after: a message is delivered (250) and the classifier abstains (`bayes=store_error`): a
  store that is down costs the message its BAYES_xx symbol, nothing else.
- stop (first): SIGTERM while the start's check still waits for a silent store (timeout
  20 s, drain_timeout 1 s): event=stopped and exit 0, no drain_overrun (the check runs on a
  detached thread, not as a job on worker 0's loop).

The assertions are orders of events, no durations. On main the worker's reload opened the
store on its loop (rules_worker_init -> bayes_acquire -> ... -> redis_store_connect_sync):
the NOOP was answered only after the store's timeouts, after its bayes_error (10 s for the
SELECT, 20 s for the two sentinels), and the classifier was left out of the generation (no
`bayes=` on the message's line)."""
import os
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

TIMEOUT = 10
ERR = r'event=bayes_error [^\n]*reason="(redis|sentinel) 127\.0\.0\.1:\d+'


class Silent:
    """A peer that never answers: a listener on a held port that accepts every connection and
    reads it, silent. .asks counts the connections that sent something (a command waiting
    for its answer). .release() closes them and then each new connection at once (every
    wait for this peer ends); .hold() makes it silent again."""

    def __init__(self):
        self.port = mt.hold_port().port
        self.asks = 0
        self.conns = []
        self.silent = True
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(('127.0.0.1', self.port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        mt.at_finish(self.close)

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if not self.silent:
                    c.close()
                    continue
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        counted = False
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not counted:
                counted = True
                with self.lock:
                    self.asks += 1

    def release(self):
        with self.lock:
            self.silent = False
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def hold(self):
        with self.lock:
            self.silent = True

    def close(self):
        self.release()
        try:
            self.sock.close()
        except OSError:
            pass


def asks(peers):
    return sum(p.asks for p in peers)


def run_case(name, peers, store):
    be = mt.Backend()

    def cfg(min_spam):
        return mt.config([be.url], workers=1, rules={
            'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
            'bayes': {'enabled': True, 'store': store, 'timeout': '%ds' % TIMEOUT,
                      'min_spam': min_spam, 'min_ham': 1}})

    # start: the store may be checked (logged when it gives up); the start goes on
    mx = mt.Mxgate(cfg(1), name='mx-' + name)
    mt.check(mt.wait_for(lambda: asks(peers) >= 1, mt.slack(30)),
             '%s: at start the store is asked' % name)
    for p in peers:
        p.release()
    mt.check(mx.wait_log(ERR, timeout=mt.slack(30)) is not None,
             '%s: the start-up check logs the store that gave up\n%s' % (name, mx.tail(5)))

    # reload: a session in the middle (EHLO done) is answered while the store is asked
    for p in peers:
        p.hold()
    c = mt.Client(mx.port, timeout=6 * TIMEOUT)
    mt.check(c.ehlo()[0] == 250, '%s: EHLO' % name)
    before = asks(peers)
    at = mx.log_size()
    mx.reload(cfg(2))
    mt.check(mt.wait_for(lambda: asks(peers) > before, mt.slack(30)),
             '%s: after the HUP the store is asked again' % name)
    code = c.cmd('NOOP')[0]
    since = mx.log()[at:]
    mt.check(code == 250 and 'event=bayes_error' not in since,
             '%s: NOOP after the HUP answered (%s) while the store still has not answered '
             '(no bayes_error yet)\n%s' % (name, code, since.strip()[-600:]))
    rel = mx.wait_log(r'event=reloaded', timeout=mt.slack(30), start=at)
    err_then = mx.log()[at:rel.start() if rel else None]
    mt.check(rel is not None and 'event=bayes_error' not in err_then,
             '%s: event=reloaded before the store gave up\n%s' % (name, mx.tail(8)))

    # the store gives up: logged; a message passes, the classifier abstains
    for p in peers:
        p.release()
    mt.check(mx.wait_log(ERR, timeout=mt.slack(30), start=at) is not None,
             '%s: the reload\'s store error is logged\n%s' % (name, mx.tail(5)))
    codes = c.transaction('%s-after' % name)
    c.cmd('QUIT')
    c.close()
    mt.check(codes[-1:] == [250], '%s: a message after the reload is delivered (%s)' % (name, codes))
    mt.check(mx.wait_log(r'event=rules [^\n]* bayes=store_error', timeout=mt.slack(10), start=at)
             is not None, '%s: ... with bayes=store_error (the classifier is there and abstains)\n%s'
             % (name, mx.tail(5)))
    mx.stop()
    be.stop()


def stop_case():
    """A stop soon after the start: the store's check is still waiting for a silent store
    (rules.bayes.timeout 20 s, limits.drain_timeout 1 s). The check never keeps a worker's
    loop alive, so SIGTERM ends in event=stopped and exit 0, not in event=exit
    reason=drain_overrun (main: the check was a job on worker 0's loop, whose uv_run waited
    for the connect past drain_timeout + 5 s, and main _exit()ed without event=stopped)."""
    peer = Silent()
    be = mt.Backend()
    cfg = mt.config([be.url], workers=1, limits={'drain_timeout': '1s'}, rules={
        'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
        'bayes': {'enabled': True, 'store': 'redis://127.0.0.1:%d/1' % peer.port,
                  'timeout': '20s'}})
    mx = mt.Mxgate(cfg, name='mx-stop')
    mt.check(mt.wait_for(lambda: peer.asks >= 1, mt.slack(30)),
             'stop: at start the store is asked')
    mx.stop(timeout=mt.slack(60), settle=0)
    log = mx.log()
    mt.check('event=stopped' in log and 'drain_overrun' not in log,
             'stop: SIGTERM while the store check waits: event=stopped, no drain_overrun\n%s'
             % mx.tail(6))
    peer.release()
    be.stop()


stop_case()
s1, s2 = Silent(), Silent()
run_case('sentinel', [s1, s2],
         'redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster' % (s1.port, s2.port))
r1 = Silent()
run_case('redis', [r1], 'redis://127.0.0.1:%d/1' % r1.port)
mt.finish()
