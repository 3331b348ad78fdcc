#!/usr/bin/env python3
"""A control socket client cannot hold its connection by trickling (docs/operations.md,
"Timeouts: what bounds each peer"): the connection's idle timer (60 s, fixed: CONTROL_IDLE_MS)
runs from the connect or the last answer, never from a read, so a request line trickled an
octet every 2 s, or a request body announced by --length and trickled, is closed 60 s after
the connect, unanswered. The two run side by side: the test takes a minute.
"""
import itertools
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

IDLE = 60.0
TICK = 2.0
TOLERANCE = 3.0
sock_path = os.path.join(mt.TMP, 'control.sock')
be = mt.Backend(name='be-ctl')
mx = mt.Mxgate(mt.config([be.url], control={'socket': sock_path}), name='mx-ctl')
mt.check(mt.wait_for(lambda: os.path.exists(sock_path), 10), 'the control socket is there')
results = {}


def run(name, first, rest):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    results[name] = mt.trickle(s, itertools.chain([first], itertools.repeat(rest)), TICK, IDLE * 2 + 10)
    s.close()


threads = [threading.Thread(target=run, args=('request_line', b'sta', b't')),
           threading.Thread(target=run, args=('request_body', b'learn spam --length=1000000\n', b'x'))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for name, (closed, took, got) in sorted(results.items()):
    mt.say('%s: closed=%s after %.1fs %r' % (name, closed, took, got[:60]))
    mt.check(closed and IDLE - TICK <= took <= IDLE + mt.slack(TOLERANCE) and not got.startswith(b'OK'),
             '%s trickled: closed at the 60 s idle bound, unanswered (%.1fs, %r)' % (name, took, got[:60]))
code, out, err = mt.ctl(sock_path, 'status')
mt.check(code == 0, 'the control socket still answers (%s %s)' % (code, err[-100:]))
mt.finish()
