#!/usr/bin/env python3
"""Greylisting with the LMDB store: a retry after the delay passes, and the map must then
hold the triplet as passed (kept for greylist.expire). The worker's writer overwrote an
existing record with MDB_NOOVERWRITE first, and LMDB then points the data at the existing
item: the second put wrote the old record back. So the triplet stayed "waiting" in the map
(only the worker's 500 ms queue knew better): every later message passed only because its
first attempt was within retry_window, and once that was over (4 h by default) a sender
that had passed was greylisted again, and again every retry_window. Also after a restart.

delay 1s: first attempt, the worker's batch (seen with `greylist show`), the retry after
the delay passes; after the next batch the map says passed."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
be = mt.Backend()
SRC = '198.18.67.1'
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, control={'socket': sock},
    greylist={'enabled': True, 'store': 'lmdb:' + os.path.join(mt.TMP, 'gl'), 'delay': '1s',
              'retry_window': '1h'}), 'node')


def show(r):
    r = subprocess.run([CTL, '-s', sock, 'greylist', 'show', SRC, 'a@example.org', r], capture_output=True,
                       text=True, timeout=mt.slack(30))
    return r.stdout


def rcpt(r):
    return mt.send_mail(mx.port, 'a@example.org', [r], mt.message('m'), ehlo='client.example.org', proxy_src=SRC)[0]


mt.check(rcpt('p@example.test') == 451, 'first attempt greylisted')
first = time.time()
mt.check(mt.wait_for(lambda: ': waiting' in show('p@example.test'), timeout=10), 'the first attempt is in the map')
time.sleep(max(0, first + 1.2 - time.time()))      # greylist.delay
mt.check(rcpt('p@example.test') == 250, 'the retry after the delay passes')
# the next batch holds the retry's record: a new triplet written after it shows it applied
mt.check(rcpt('q@example.test') == 451, 'another triplet greylisted')
mt.check(mt.wait_for(lambda: ': waiting' in show('q@example.test'), timeout=10), 'the worker wrote its batch')
out = show('p@example.test')
mt.check(': passed' in out, 'the map holds the triplet passed (was: still waiting): %r' % out)
mx.stop()
mt.finish()
