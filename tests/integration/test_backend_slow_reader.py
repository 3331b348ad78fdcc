#!/usr/bin/env python3
"""A backend that takes a message slowly but steadily gets it; one that stops taking it is
cut off at backends.data_timeout (docs/operations.md, "Timeouts: what bounds each peer").

As Postfix's smtp_data_xfer_timeout, backends.data_timeout is a stall timeout while the
message is written (every octet the backend takes starts it again), and the reply to the dot
gets it from the last octet written (smtp_data_done_timeout); backends.data_deadline bounds
the whole. The backend is a real one (mt.Backend: plain, STARTTLS, LMTP) behind
mt.TcpForwarder, which reads mxgate's side at read_rate octets a second (64 KB receive
buffer, so the kernel holds little), or stops reading after stall_after octets.

- steady: 3 MB at 600 KB/s (about 5 s) with data_timeout 2 s: delivered, plain TCP, over
  STARTTLS, and to LMTP (two recipients, one reply each); before, over plain TCP the whole
  transfer and the reply had to fit in data_timeout together: 451 4.4.1 at 2 s for ever;
- stall: the backend stops reading after 512 KB: 451 4.4.1 data_timeout after its last read
  (no sooner; mxgate looks at 1/8 of it, so at most that more on an idle machine: the figure
  printed, not checked), logged as the backend's timeout, nothing delivered, plain and STARTTLS;
- deadline: a steady reader at a quarter of that rate (about 20 s for the message) with
  backends.data_deadline 3 s: 451 4.4.1 at 3 s (no sooner), logged as data_deadline, while the
  reader is still taking the message (what it had passed on when the 451 came back is short
  of the message: the order of events, not a time, so a loaded machine cannot fail it).
Each case prints the client's figures (docs' table).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DATA = 2.0
RATE = 600 * 1024
SIZE = 3 << 20
ONLY = os.environ.get('ONLY')
figures = {}


def case(name, *, tls=False, lmtp=False, stall=None, deadline=None, rcpts=('b@example.test',), rate=RATE):
    if ONLY and name not in ONLY.split(','):
        return
    be = mt.Backend(starttls=tls, lmtp=lmtp)
    passed = [0]      # octets the reader passed on to the backend (mxgate's side to it)

    def count(direction, d):
        if direction == 'up':
            passed[0] += len(d)
    fw = mt.TcpForwarder(be.port, read_rate=0 if stall else rate, stall_after=stall, on_chunk=count)
    url = '%s://127.0.0.1:%d' % ('lmtp' if lmtp else 'smtp', fw.port)
    backends = {'data_timeout': '%dms' % (DATA * 1000), 'max_attempts': 1,
                'health_check': {'interval': '60s', 'timeout': '10s'}}
    if deadline:
        backends['data_deadline'] = '%ds' % deadline
    mx = mt.Mxgate(mt.config([url], backends=backends, limits={'max_message_size': 64 << 20}), name='mx-' + name)
    t0 = time.time()
    r = mt.send_mail(mx.port, 'a@example.org', list(rcpts), mt.message('slow-' + name, size=SIZE), timeout=60)
    took = time.time() - t0
    passed_at_reply = passed[0]
    figures[name] = took
    mt.say('%s: %s %s (stage %s) after %.2fs' % (name, r.code, r.text[:60], r.stage, took))
    if stall is None and deadline is None:
        mt.check(r.code == 250, '%s: a backend reading steadily gets the message (%s %s after %.2fs)'
                 % (name, r.code, r.text, took))
        mt.wait_for(lambda: len(be.messages) == 1, timeout=5)
        mt.check(len(be.messages) == 1 and len(be.messages[0]['data']) >= SIZE,
                 '%s: delivered whole (%s)' % (name, [len(m['data']) for m in be.messages]))
        mt.check(took > DATA * 1.5, '%s: the transfer took longer than data_timeout (%.2fs), as meant' % (name, took))
        if tls:
            mt.check(be.messages and be.messages[0].get('tls'), '%s: over TLS' % name)
        if lmtp:
            mt.check(be.messages and sorted(be.messages[0]['rcpts']) == sorted(rcpts), '%s: every recipient' % name)
    else:
        mt.check(r.code is not None and 400 <= r.code < 500, '%s: the client is told a 4xx (%s %s)' % (name, r.code, r.text))
        mt.check(not be.messages, '%s: nothing delivered' % name)
        if stall is not None:
            waited = time.time() - (fw.stalled_at or t0) if fw.stalled_at else None
            # the reply came at took; the stall began at stalled_at
            since = t0 + took - fw.stalled_at if fw.stalled_at else None
            mt.say('%s: 4xx %.2fs after the backend\'s last read' % (name, since or -1))
            figures[name + '_since_stall'] = since or -1
            # no upper bound in time (a loaded machine answers late): the 4xx is the backend's
            # timeout, and came no sooner than data_timeout after the last read
            mt.check(since is not None and since >= DATA - 0.2,
                     '%s: 4xx data_timeout after the last read (%.2fs, %s)' % (name, since or -1, waited))
            mt.check(mx.wait_log(r'event=backend_error backend=\S+ state=\d+ reason="timeout"', timeout=5) is not None,
                     '%s: logged as the backend\'s timeout' % name)
        else:
            # no upper bound in time (a loaded machine answers late); the order instead: the
            # 4xx came while the reader was still taking the message, at its rate for ~20 s
            mt.check(took >= deadline - 0.2, '%s: 4xx not before data_deadline %ds (%.2fs)' % (name, deadline, took))
            mt.check(passed_at_reply < SIZE, '%s: 4xx while the reader was still taking the message (%d of %d octets '
                     'passed on)' % (name, passed_at_reply, SIZE))
            mt.check(mx.wait_log(r'reason="?data_deadline', timeout=5) is not None, '%s: logged data_deadline' % name)
    mt.check(mx.alive(), '%s: mxgate alive' % name)
    mx.stop()
    fw.cut()
    be.stop()


case('steady')
case('steady_tls', tls=True)
case('steady_lmtp', lmtp=True, rcpts=('b@example.test', 'c@example.test'))
case('stall', stall=512 << 10)
case('stall_tls', tls=True, stall=512 << 10)
case('deadline', deadline=3, rate=RATE // 4)

mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
