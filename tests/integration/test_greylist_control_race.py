#!/usr/bin/env python3
"""`mxgatectl greylist pass|delete` with the LMDB store while a worker's batched update of the
same triplet is in flight. The verb wrote the map directly, beside the workers' writers: the
worker, reading its own queue first, still saw the state from before the verb, and its batch
(500 ms later) wrote that state over the verb's. A `greylist pass` right after a first
attempt: the retry was greylisted again and the triplet was back to waiting; a `greylist
delete` right after a passing RCPT: the triplet came back passed. Now the verbs go through
every worker's writer, after what it has queued, and answer once the batches are applied:
the verb's change is the last one, and the next attempt sees it.

One worker, so the retry reads the queue of the worker that holds the in-flight update."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.mxgatectl()                  # skipped when not built
be = mt.Backend()
SRC = '198.18.66.1'
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, control={'socket': sock},
    greylist={'enabled': True, 'store': 'lmdb:' + os.path.join(mt.TMP, 'gl'), 'delay': '1h',
              'retry_window': '4h'}), 'node')


def show(r):
    return mt.ctl(sock, 'greylist', 'show', SRC, 'a@example.org', r)[1]


# pass right after the first attempt (its waiting record still queued in the worker)
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'p@example.test') == 451, 'first attempt greylisted (delay 1h)')
rc, out, err = mt.ctl(sock, 'greylist', 'pass', SRC, 'a@example.org', 'p@example.test')
mt.check(rc == 0 and 'now passed' in out, 'greylist pass: %r %r' % (out, err))
code = mt.rcpt_code(mx.port, SRC, 'a@example.org', 'p@example.test')
mt.check(code == 250, 'the retry right after `greylist pass` passes (was 451: the worker read its queued '
         'waiting record): %s' % code)
# the worker's batches: the renewal the retry queued is applied with the next one; a new
# triplet's record is written after it, so once that shows, the renewal is in the map
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'q@example.test') == 451, 'another triplet greylisted')
mt.check(mt.wait_for(lambda: ': waiting' in show('q@example.test'), timeout=10), 'the worker wrote its batch')
mt.check(': passed' in show('p@example.test'), 'the triplet stays passed after the worker\'s batch: %r'
         % show('p@example.test'))

# delete right after a passing RCPT (its renewal still queued in the worker)
code = mt.rcpt_code(mx.port, SRC, 'a@example.org', 'p@example.test')
mt.check(code == 250, 'a known triplet passes: %s' % code)
rc, out, err = mt.ctl(sock, 'greylist', 'delete', SRC, 'a@example.org', 'p@example.test')
mt.check(rc == 0 and 'deleted' in out and ': passed' in out, 'greylist delete: %r %r' % (out, err))
code = mt.rcpt_code(mx.port, SRC, 'a@example.org', 'p@example.test')
mt.check(code == 451, 'the attempt right after `greylist delete` is a first one (was 250: the worker read '
         'its queued renewal): %s' % code)
mt.check(mt.rcpt_code(mx.port, SRC, 'a@example.org', 'r@example.test') == 451, 'another triplet greylisted')
mt.check(mt.wait_for(lambda: ': waiting' in show('r@example.test'), timeout=10), 'the worker wrote its batch')
out = show('p@example.test')
mt.check(': waiting' in out, 'the deleted triplet is a new first attempt, not passed again: %r' % out)
mx.stop()
mt.finish()
