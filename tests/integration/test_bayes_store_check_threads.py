#!/usr/bin/env python3
"""At most one check of a Redis store runs at a time (rules/rules.c, rules_bayes_check_start;
docs/classifier.md "A Redis store at start and at reload"). Each start and reload checks the
classifier's store on a detached thread of its own; against a silent store (a listener that
accepts and never answers: the SELECT of redis://HOST:PORT/1 waits out rules.bayes.timeout,
300 s here, the most it may be, so that no count depends on how fast
reloads go) each reload left one more such thread, and many SIGHUPs piled them up. Now a
reload while a check of the same store URL is under way starts none
(`event=bayes_check_skipped` at debug level; that generation's first scan connects).

- start: the store is asked once (the check waits);
- one reload first (the thread pool starts on a reload's name resolution), then the thread
  count of the process (/proc/PID/task) is taken; 16 more reloads, each waited for
  (`event=reloaded generation=N`): the count grew by less than 8 (other threads may come and
  go: the bound is not exact), one thread named mx-bayes-check is there, the silent store
  was asked by one connection in all, and 17 checks were skipped. On main's binary each
  reload made a thread before its event=reloaded (8 reloads: 5 threads, then 14).
- the store gives up (the test closes its connections): the check's error is logged; a
  message is delivered, the classifier abstaining (bayes=store_error); a reload after that
  checks the store again (the check's place was given back).
Counts and orders of events; no durations."""
import os
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

ERR = r'event=bayes_error [^\n]*reason="redis 127\.0\.0\.1:\d+'
RELOADS = 16


class Silent:
    """A listener that accepts and reads every connection, never answering; .asks counts the
    connections that sent something. .release() closes them and every later one at once;
    .hold() makes it silent again."""

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
        self.sock.listen(64)
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


peer = Silent()
be = mt.Backend()


def cfg(min_spam):
    return mt.config([be.url], workers=1, log={'level': 'debug'}, rules={
        'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
        'bayes': {'enabled': True, 'store': 'redis://127.0.0.1:%d/1' % peer.port,
                  'timeout': '300s', 'min_spam': min_spam, 'min_ham': 1}})


def tasks():
    return len(os.listdir('/proc/%d/task' % mx.pid))


def checks():
    """The threads named mx-bayes-check (rules_bayes_check_main names itself)."""
    n = 0
    for t in os.listdir('/proc/%d/task' % mx.pid):
        try:
            with open('/proc/%d/task/%s/comm' % (mx.pid, t)) as f:
                n += f.read().strip() == 'mx-bayes-check'
        except OSError:
            pass
    return n


def reload_to(gen):
    at = mx.log_size()
    mx.reload(cfg(gen))
    mt.check(mx.wait_log(r'event=reloaded generation=%d\b' % gen, timeout=mt.slack(30), start=at)
             is not None, 'reload to generation %d\n%s' % (gen, mx.tail(6)))


mx = mt.Mxgate(cfg(1), name='mx-threads')
mt.check(mt.wait_for(lambda: peer.asks >= 1, mt.slack(30)), 'at start the store is asked')
reload_to(2)
base = tasks()
for g in range(3, 3 + RELOADS):
    reload_to(g)
after = tasks()
mt.say('threads: %d after the first reload, %d after %d more' % (base, after, RELOADS))
# other threads may come and go meanwhile (seen under ASan: 4 more at one count), so the
# bound is half a thread a reload; each check that piled up was one a reload
mt.check(after - base < RELOADS // 2, 'not a thread more a reload: %d reloads against the silent '
         'store (%d threads, then %d)' % (RELOADS, base, after))
mt.check(checks() == 1, 'one check thread waits for the store (%d)' % checks())
mt.check(peer.asks == 1, 'the silent store was asked by one connection in all (%d)' % peer.asks)
skipped = mx.count_log(r'event=bayes_check_skipped store=redis')
mt.check(skipped == RELOADS + 1, 'each reload\'s check skipped, said at debug level (%d of %d)'
         % (skipped, RELOADS + 1))

# the store gives up: the check ends with its error; a message passes, the classifier abstains
peer.release()
mt.check(mx.wait_log(ERR, timeout=mt.slack(30)) is not None,
         'the check logs the store that gave up\n%s' % mx.tail(5))
c = mt.Client(mx.port, timeout=mt.slack(30))
mt.check(c.ehlo()[0] == 250, 'EHLO')
codes = c.transaction('after-reloads')
c.cmd('QUIT')
c.close()
mt.check(codes[-1:] == [250], 'a message after the reloads is delivered (%s)' % codes)
mt.check(mx.wait_log(r'event=rules [^\n]* bayes=store_error', timeout=mt.slack(10)) is not None,
         '... the classifier abstaining (bayes=store_error)\n%s' % mx.tail(5))

# the check's place was given back: the next reload checks the store again
peer.hold()
before = peer.asks
reload_to(3 + RELOADS)
mt.check(mt.wait_for(lambda: peer.asks > before, mt.slack(30)),
         'a reload after the check ended checks the store again')
peer.release()
mx.stop()
be.stop()
mt.finish()
