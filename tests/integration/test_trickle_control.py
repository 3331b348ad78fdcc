#!/usr/bin/env python3
"""A control socket client cannot hold its connection by trickling (docs/operations.md,
"Timeouts: what bounds each peer"): the connection's idle timer (60 s, fixed: CONTROL_IDLE_MS)
runs from the connect or the last answer, never from a read, so a request line trickled an
octet every 2 s, or a request body announced by --length and trickled, is closed 60 s after
the connect, unanswered. The two run side by side: the test takes a minute.

The close is the event, and the daemon's line for it, event=control_closed reason=idle (one
per connection; before, an idle close logged nothing): the trickle never finishes and stays
inside any per-read timer, so only the idle bound can end it (a timer reset on reads never
would: the case's own limit, twice the bound, ends it and the check fails). Not before the bound: counted from before the connect, which is before
the daemon's timer starts, a loaded machine can only make it later. How much later is not
checked.
"""
import itertools
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

IDLE = 60.0
TICK = 2.0
sock_path = os.path.join(mt.TMP, 'control.sock')
be = mt.Backend(name='be-ctl')
mx = mt.Mxgate(mt.config([be.url], control={'socket': sock_path}), name='mx-ctl')
mt.check(mt.wait_for(lambda: os.path.exists(sock_path), 10), 'the control socket is there')
results = {}


def run(name, first, rest):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.monotonic()
    s.connect(sock_path)
    closed, took, got = mt.trickle(s, itertools.chain([first], itertools.repeat(rest)), TICK, IDLE * 2 + 10)
    results[name] = closed, took, time.monotonic() - t0, got
    s.close()


threads = [threading.Thread(target=run, args=('request_line', b'sta', b't')),
           threading.Thread(target=run, args=('request_body', b'learn spam --length=1000000\n', b'x'))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for name, (closed, took, since, got) in sorted(results.items()):
    mt.say('%s: closed=%s after %.1fs (%.1fs from before the connect) %r' % (name, closed, took, since, got[:60]))
    mt.check(closed and since >= IDLE - 0.05 and not got.startswith(b'OK'),
             '%s trickled: closed by the 60 s idle bound, not before it, unanswered (%.1fs, %r)' % (name, since, got[:60]))
closes = mt.wait_for(lambda: re.findall(r'event=control_closed reason=idle idle_ms=(\d+)', mx.log()), 5)
mt.check(len(closes or []) == 2 and all(int(ms) >= IDLE * 1000 - 50 for ms in closes),
         'the daemon logs each idle close: event=control_closed reason=idle idle_ms>=60000 (%s)' % closes)
code, out, err = mt.ctl(sock_path, 'status')
mt.check(code == 0, 'the control socket still answers (%s %s)' % (code, err[-100:]))
mt.finish()
